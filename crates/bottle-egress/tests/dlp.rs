//! DLP on the way out: URL, headers, streamed bodies; block, redact, log.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;

use bottle_egress::dlp::{Engine, Finding, StreamScan};

use support::*;
use tokio::io::AsyncWriteExt;

/// [`dlp_proxy_to`] a recording upstream; also its base URL.
async fn dlp_proxy(settings: &str) -> (Running, Recorder, String) {
    let (up, rec) = http_upstream().await;
    let p = dlp_proxy_to(settings, up).await;
    (p, rec, "http://app.test".to_string())
}

#[tokio::test]
async fn secrets_in_url_and_headers_are_blocked() {
    let (p, rec, base) = dlp_proxy("dlp: block").await;
    let mut c = client(p.addr).await;
    let (s, h, body) = send(&mut c, req("GET", &format!("{base}/x?k={SECRET}"), &[], "")).await;
    assert_eq!(
        (s, h["x-claude-bottle-block"].to_str().unwrap()),
        (403, "dlp")
    );
    assert!(!body.contains(SECRET));
    let mut c = client(p.addr).await;
    let (s, _, _) = send(&mut c, req("GET", &format!("{base}/p/{SECRET}/q"), &[], "")).await;
    assert_eq!(s, 403);
    let mut c = client(p.addr).await;
    let (s, _, _) = send(
        &mut c,
        req(
            "GET",
            &format!("{base}/"),
            &[("x-note", &format!("v={SECRET}"))],
            "",
        ),
    )
    .await;
    assert_eq!(s, 403);
    let mut c = client(p.addr).await;
    let (s, _, _) = send(
        &mut c,
        req(
            "POST",
            &format!("{base}/"),
            &[],
            &format!("{{\"k\":\"{SECRET}\"}}"),
        ),
    )
    .await;
    assert_eq!(s, 403);
    assert_eq!(rec.count(), 0);
    let ev = p.events_without(&[SECRET]);
    assert!(ev.iter().filter(|e| e["reason"] == "dlp").count() >= 4);
    // A clean request still passes.
    let mut c = client(p.addr).await;
    assert_eq!(
        send(&mut c, req("POST", &format!("{base}/ok"), &[], "clean"))
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn secret_split_across_body_chunks_is_refused_before_the_body_ends() {
    let (up, got) = raw_upstream(|_| false).await;
    let p = dlp_proxy_to("dlp: block", up).await;
    let mut s = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    let (a, b) = SECRET.split_at(7);
    // Filler on both sides: engines may scan in steps of some KiB and hold a
    // match until a few hundred bytes past it.
    let chunk1 = format!("{}{a}", "x ".repeat(10_000));
    let chunk2 = format!("{b}{}", " y".repeat(10_000));
    let head = "POST http://app.test/upload HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n";
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(format!("{:x}\r\n{chunk1}\r\n", chunk1.len()).as_bytes())
        .await
        .unwrap();
    s.write_all(format!("{:x}\r\n{chunk2}\r\n", chunk2.len()).as_bytes())
        .await
        .unwrap();
    // The body is still open (no last chunk): the answer must come anyway.
    let (status, head, body) =
        tokio::time::timeout(std::time::Duration::from_secs(5), read_response(&mut s))
            .await
            .expect("refused before the body ended");
    assert_eq!(status, 403, "{head}{body}");
    assert!(
        head.to_ascii_lowercase()
            .contains("x-claude-bottle-block: dlp")
    );
    drop(s);
    let seen = String::from_utf8_lossy(&got.lock().unwrap()).into_owned();
    assert!(!seen.contains(SECRET), "upstream saw the secret: {seen}");
    assert!(
        !seen.contains(a) || !seen.contains(b),
        "no part-secret pair reached upstream"
    );
    p.events_without(&[SECRET]);
}

/// The upstream has the whole request, with a secret `log` lets through;
/// the client goes away before the answer. The log must still say so.
#[tokio::test]
async fn a_request_whose_client_left_before_the_answer_is_logged() {
    let body = format!("k={SECRET}&end=1");
    let (up, got) = raw_upstream(|_| false).await;
    let p = dlp_proxy_to("dlp: log", up).await;
    let mut s = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    let head = format!(
        "POST http://app.test/slow HTTP/1.1\r\nHost: app.test\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body.as_bytes()).await.unwrap();
    for _ in 0..500 {
        if String::from_utf8_lossy(&got.lock().unwrap()).contains("end=1") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(String::from_utf8_lossy(&got.lock().unwrap()).contains("end=1"));
    drop(s);
    let ev = p
        .event(|e| e["path"] == "/slow" && e["kind"] == "http")
        .await;
    assert_eq!(ev["decision"], "allow");
    assert_eq!(ev["reason"], "dlp", "{ev}");
    assert!(ev["status"].is_null(), "{ev}");
    p.events_without(&[SECRET]);
}

/// A client that leaves while the proxy still looks the name up sent
/// nothing anywhere: no event says a request went.
#[tokio::test]
async fn a_request_that_never_left_has_no_event() {
    let (up, _) = raw_upstream(|_| false).await;
    let p = dlp_proxy_to("dlp: log", up).await;
    let mut s = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"GET http://silent-ns.app.test/x HTTP/1.1\r\nHost: silent-ns.app.test\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    drop(s);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let events = p.log.events();
    assert!(!events.iter().any(|e| e["path"] == "/x"), "{events:?}");
}

#[tokio::test]
async fn redact_mode_replaces_secrets_and_forwards() {
    let (p, rec, base) = dlp_proxy("dlp: redact").await;
    let mut c = client(p.addr).await;
    let body = format!("a={SECRET}&b={SECRET}");
    let (s, _, _) = send(
        &mut c,
        req(
            "POST",
            &format!("{base}/f?q={SECRET}"),
            &[("x-h", SECRET)],
            &body,
        ),
    )
    .await;
    assert_eq!(s, 200);
    let seen = &rec.all()[0];
    assert_eq!(
        String::from_utf8_lossy(&seen.body),
        "a=[REDACTED:known-secret]&b=[REDACTED:known-secret]"
    );
    assert_eq!(seen.uri, "/f?q=%5BREDACTED:known-secret%5D");
    assert_eq!(seen.headers["x-h"], "[REDACTED:known-secret]");
    p.event(|e| e["decision"] == "redact" && e["rule"] == "known-secret")
        .await;
    p.events_without(&[SECRET]);
}

/// A header name or a method cannot be redacted (a marker is neither, and
/// renaming would change the request): redact mode blocks them.
#[tokio::test]
async fn redact_mode_blocks_secrets_in_header_names_and_methods() {
    let (p, rec, base) = dlp_proxy("dlp: redact").await;
    let name = format!("x-{SECRET}");
    let mut c = client(p.addr).await;
    let (s, h, _) = send(&mut c, req("GET", &format!("{base}/"), &[(&name, "1")], "")).await;
    assert_eq!(
        (s, h["x-claude-bottle-block"].to_str().unwrap()),
        (403, "dlp")
    );
    let mut c = client(p.addr).await;
    let (s, h, _) = send(&mut c, req(SECRET, &format!("{base}/"), &[], "")).await;
    assert_eq!(
        (s, h["x-claude-bottle-block"].to_str().unwrap()),
        (403, "dlp")
    );
    assert_eq!(rec.count(), 0);
    p.events_without(&[SECRET]);
}

/// `log` forwards a secret in a header name or the method, records the
/// finding, and the event shows the method redacted.
#[tokio::test]
async fn log_mode_records_secrets_in_header_names_and_methods() {
    let (p, rec, base) = dlp_proxy("dlp: log").await;
    let name = format!("x-{SECRET}");
    let mut c = client(p.addr).await;
    let (s, _, _) = send(
        &mut c,
        req("GET", &format!("{base}/n"), &[(&name, "1")], ""),
    )
    .await;
    assert_eq!(s, 200);
    p.event(|e| e["path"] == "/n" && e["reason"] == "dlp").await;
    let mut c = client(p.addr).await;
    let (s, _, _) = send(&mut c, req(SECRET, &format!("{base}/m"), &[], "")).await;
    assert_eq!(s, 200);
    assert_eq!(rec.count(), 2);
    p.event(|e| {
        e["path"] == "/m" && e["reason"] == "dlp" && e["method"] == "[REDACTED:known-secret]"
    })
    .await;
    p.events_without(&[SECRET]);
}

#[tokio::test]
async fn log_mode_forwards_and_records() {
    let (p, rec, base) = dlp_proxy("dlp: log").await;
    let mut c = client(p.addr).await;
    let (s, _, _) = send(&mut c, req("POST", &format!("{base}/f"), &[], SECRET)).await;
    assert_eq!(s, 200);
    assert_eq!(rec.all()[0].body, SECRET.as_bytes());
    p.event(|e| e["decision"] == "allow" && e["reason"] == "dlp")
        .await;
    p.events_without(&[SECRET]);
}

#[tokio::test]
async fn off_mode_does_not_scan() {
    let (p, rec, base) = dlp_proxy("dlp: off").await;
    let mut c = client(p.addr).await;
    let (s, _, _) = send(
        &mut c,
        req("POST", &format!("{base}/f?{SECRET}"), &[], SECRET),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(rec.count(), 1);
}

#[tokio::test]
async fn log_full_records_bodies_with_secrets_redacted() {
    let (p, rec, _) = dlp_proxy("dlp: log\nlog: full").await;
    let mut c = client(p.addr).await;
    let (s, _, _) = send(
        &mut c,
        req(
            "POST",
            "http://app.test/f",
            &[],
            &format!("note {SECRET} end"),
        ),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(rec.count(), 1);
    let e = p.event(|e| e["path"] == "/f").await;
    p.events_without(&[SECRET]);
    assert_eq!(e["request_body"], "note [REDACTED:known-secret] end");
    assert_eq!(e["response_body"], "hello /f");
}

/// Attack: a secret that straddles the logged body's 8 KiB cut. Cut, it
/// no longer matches; its start must not be logged as is.
#[tokio::test]
async fn log_full_redacts_a_secret_across_the_cut() {
    let (p, rec, _) = dlp_proxy("dlp: log\nlog: full").await;
    let mut c = client(p.addr).await;
    let half = SECRET.len() / 2;
    let body = format!("{}{SECRET} end", "a".repeat(8 * 1024 - half));
    let (s, _, _) = send(&mut c, req("POST", "http://app.test/cut", &[], &body)).await;
    assert_eq!(s, 200);
    assert_eq!(rec.count(), 1);
    let e = p.event(|e| e["path"] == "/cut").await;
    let logged = e["request_body"].as_str().unwrap();
    assert!(
        logged.ends_with("[REDACTED:known-secret]"),
        "{}",
        &logged[logged.len() - 40..]
    );
    assert!(
        !logged.contains(&SECRET[..half]),
        "the secret's start is logged"
    );
    p.events_without(&[SECRET]);
}

/// The status of a GET through the proxy, on a connection of its own.
async fn get(p: &Running, url: &str) -> u16 {
    let mut c = client(p.addr).await;
    send(&mut c, req("GET", url, &[], "")).await.0
}

/// `log` forwards and `off` does not even look, but the audit log itself
/// must not become the leak: a secret in the path, in an allowed host's
/// label, or in the name of a host that is refused anyway is redacted in
/// every event, whatever the DLP mode.
#[tokio::test]
async fn no_dlp_mode_writes_the_secret_into_events() {
    for mode in ["log", "off"] {
        let (p, rec, _) = dlp_proxy(&format!("dlp: {mode}")).await;
        let s = get(&p, &format!("http://app.test/p/{SECRET}/q")).await;
        assert_eq!((mode, s), (mode, 200));
        assert_eq!(rec.count(), 1);
        let (s, _, _) = connect(p.addr, &format!("{SECRET}.denied.test:443")).await;
        assert_eq!((mode, s), (mode, 403));
        let s = get(&p, &format!("http://{SECRET}.nowhere.test/x")).await;
        assert_eq!((mode, s), (mode, 403));
        // Routed, then refused later (the name does not resolve): the
        // event still shows the host redacted.
        let (s, _, _) = connect(p.addr, &format!("{SECRET}.app.test:443")).await;
        assert_ne!((mode, s), (mode, 200));
        p.event(|e| e["path"] == "/p/[REDACTED:known-secret]/q")
            .await;
        p.event(|e| e["decision"] == "block" && e["kind"] == "connect")
            .await;
        let ev = p.events_without(&[SECRET]);
        assert_eq!(ev.len(), 4, "{mode}: {ev:?}");
    }
}

/// An engine that must never be asked: a scan fails the request (and so
/// the test) loudly.
struct NeverScan;

impl Engine for NeverScan {
    fn scan(&self, _: &[u8]) -> Vec<Finding> {
        panic!("scanned although no event is written")
    }
    fn scan_host(&self, _: &str) -> Vec<Finding> {
        panic!("host scanned although no event is written")
    }
    fn stream(&self) -> Box<dyn StreamScan> {
        panic!("stream scanned although DLP is off")
    }
}

/// An engine that finds nothing and counts what it is asked.
#[derive(Default)]
struct Counting(std::sync::atomic::AtomicUsize);

impl Engine for Counting {
    fn scan(&self, _: &[u8]) -> Vec<Finding> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Vec::new()
    }
    fn scan_host(&self, _: &str) -> Vec<Finding> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Vec::new()
    }
    fn stream(&self) -> Box<dyn StreamScan> {
        panic!("stream scanned although DLP is off")
    }
}

/// Refusals past the rate limit are only counted: the agent chooses how
/// many there are (and how long their hosts and paths, 16 KiB each), so
/// redacting each for an event never written would be its lever on the
/// proxy's CPU.
#[tokio::test]
async fn refusals_past_the_limit_cost_no_redaction() {
    let engine = Arc::new(Counting::default());
    let p = Setup::new("dlp: off\nallow: []")
        .engine(engine.clone())
        .start()
        .await;
    let mut c = client(p.addr).await;
    let started = std::time::Instant::now();
    for i in 0..200 {
        let (s, _, _) = send(
            &mut c,
            req("GET", &format!("http://h{i}.nowhere.test/x"), &[], ""),
        )
        .await;
        assert_eq!(s, 403);
    }
    let scans = engine.0.load(std::sync::atomic::Ordering::SeqCst);
    // 40 events a second are written (each redacts its host, method and
    // path: three scans), in the seconds the refusals took, not 200.
    let seconds = started.elapsed().as_secs() as usize + 2;
    assert!(
        scans <= 40 * 3 * seconds,
        "{scans} scans for 200 refusals in {seconds} s"
    );
    assert!(scans > 0, "no event was redacted at all");
}

/// With `log: off` (and `dlp: off`) no event is written, so nothing is
/// scanned to redact one: refusals and forwarded requests cost no DLP work.
#[tokio::test]
async fn log_off_scans_nothing_for_events() {
    let (up, rec) = http_upstream().await;
    let p = Setup::new(format!(
        "dlp: off\nlog: off\nallow: [{{host: app.test}}]\nresolve: {{app.test: '{up}'}}"
    ))
    .engine(Arc::new(NeverScan))
    .start()
    .await;
    let s = get(&p, &format!("http://app.test/{SECRET}")).await;
    assert_eq!((s, rec.count()), (200, 1));
    let s = get(&p, &format!("http://{SECRET}.nowhere.test/x")).await;
    assert_eq!(s, 403);
    let (s, _, _) = connect(p.addr, &format!("{SECRET}.denied.test:443")).await;
    assert_eq!(s, 403);
    assert!(p.log.lines().is_empty());
}

/// An upstream that answers as soon as it has the head, and records the
/// body bytes that reach it afterwards.
async fn early_answering_upstream() -> (std::net::SocketAddr, Arc<std::sync::Mutex<Vec<u8>>>) {
    use tokio::io::AsyncReadExt;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let got = Arc::new(std::sync::Mutex::new(Vec::new()));
    let g2 = got.clone();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut buf = vec![0u8; 4096];
        let mut seen = Vec::new();
        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).await.unwrap();
            if n == 0 {
                return;
            }
            seen.extend_from_slice(&buf[..n]);
        }
        s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            .await
            .unwrap();
        g2.lock().unwrap().extend_from_slice(&seen);
        while let Ok(n) = s.read(&mut buf).await {
            if n == 0 {
                break;
            }
            g2.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    (addr, got)
}

/// The response (and so the request's event) can end before the request
/// body does. A secret later in that body is still cut out, and the log
/// says so in an event of its own, not only `allow`.
#[tokio::test]
async fn a_finding_after_the_response_is_in_the_log() {
    use tokio::io::AsyncReadExt;
    let (up, got) = early_answering_upstream().await;
    let p = dlp_proxy_to("dlp: block", up).await;
    let mut s = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    s.write_all(
        b"POST http://app.test/up HTTP/1.1\r\nhost: app.test\r\n\
          transfer-encoding: chunked\r\n\r\n5\r\nclean\r\n",
    )
    .await
    .unwrap();
    let mut resp = [0u8; 64];
    let n = s.read(&mut resp).await.unwrap();
    assert!(resp[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &resp[..n]);
    p.event_like(serde_json::json!({"kind": "http", "decision": "allow"}))
        .await;

    let chunk = format!("k={SECRET}");
    s.write_all(format!("{:x}\r\n{chunk}\r\n0\r\n\r\n", chunk.len()).as_bytes())
        .await
        .unwrap();
    let ev = p
        .event(|e| e["decision"] == "block" && e["reason"] == "dlp")
        .await;
    assert_eq!(
        (&ev["host"], &ev["path"]),
        (&"app.test".into(), &"/up".into())
    );
    assert!(!String::from_utf8_lossy(&got.lock().unwrap()).contains(SECRET));
    p.events_without(&[SECRET]);
}

/// A body in a character set whose letters are not ASCII bytes (EBCDIC,
/// which Java servers decode form bodies from; UTF-7; UTF-32) carries a
/// secret the scan cannot see: refused. ASCII supersets and UTF-16 (which
/// the engine reads) pass.
#[tokio::test]
async fn a_body_in_an_unreadable_charset_is_refused() {
    let (p, rec, base) = dlp_proxy("dlp: block").await;
    let mut c = client(p.addr).await;
    for (params, want) in [
        ("charset=IBM037", 403),
        ("charset=\"utf-7\"", 403),
        ("charset=UTF-32LE", 403),
        // Read as Tomcat and Django read them.
        ("x=charset=IBM037", 403),
        ("xcharset=IBM037", 403),
        ("charset*=utf-8''cp037", 403),
        ("charset=utf-8", 200),
        ("charset=ISO-8859-1", 200),
        ("charset=Shift_JIS", 200),
    ] {
        let ct = format!("application/x-www-form-urlencoded; {params}");
        let charset = params;
        let (s, h, _) = send(
            &mut c,
            req(
                "POST",
                &format!("{base}/f"),
                &[("content-type", &ct)],
                "k=v",
            ),
        )
        .await;
        assert_eq!(s, want, "{charset}");
        if want == 403 {
            assert_eq!(h["x-claude-bottle-block"], "dlp", "{charset}");
            c = client(p.addr).await;
        }
    }
    assert_eq!(rec.count(), 3);
}
