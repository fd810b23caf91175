//! Hostile clients: broken heads, oversize, smuggling shapes, slow and idle
//! connections. Each is refused or closed, never forwarded unchecked, and the
//! proxy keeps serving others.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn setup() -> (Running, Recorder) {
    let (up, rec) = http_upstream().await;
    let p = Setup::new(format!(
        "dlp: off\nallow: [{{host: app.test}}]\nresolve: {{app.test: '{up}'}}"
    ))
    .tweak(|c| {
        c.limits.header_read = Duration::from_millis(300);
        c.limits.max_connections = 8;
    })
    .start()
    .await;
    (p, rec)
}

async fn still_serving(p: &Running) {
    let mut c = client(p.addr).await;
    let (s, _, _) = send(&mut c, req("GET", "http://app.test/alive", &[], "")).await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn malformed_heads_are_400_and_never_forwarded() {
    let (p, rec) = setup().await;
    let cases: &[&[u8]] = &[
        b"\x16\x03\x01\x00\xa5garbage\r\n\r\n",
        b"GET\r\n\r\n",
        b"GET http://app.test/ HTTP/9.9\r\nHost: app.test\r\n\r\n",
        b"GET http://app.test/ HTTP/1.1\r\nHost: app.test\r\nX-Folded: a\r\n  continued\r\n\r\n",
        b"GET http://app.test/ HTTP/1.1\r\nHost: app.test\r\nHost: evil.test\r\n\r\n",
        b"POST http://app.test/ HTTP/1.1\r\nHost: app.test\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabc",
        b"POST http://app.test/ HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"GET http://app.test/\x00 HTTP/1.1\r\nHost: app.test\r\n\r\n",
        b"GET http://app.test/ HTTP/1.1\r\nBad Header: x\r\n\r\n",
    ];
    for c in cases {
        let out = raw(p.addr, c).await;
        assert!(
            out.starts_with("HTTP/1.1 400") || out.is_empty(),
            "{:?} -> {out}",
            String::from_utf8_lossy(c)
        );
    }
    assert_eq!(rec.count(), 0);
    still_serving(&p).await;
}

/// The JSON body of a raw answer (after the head).
fn json_body(out: &str) -> serde_json::Value {
    let body = out.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// The proxy's own checks of form and bounds are refusals like any other
/// (sidecar.md): 403 with `X-Claude-Bottle-Block` and the JSON body. A
/// `Host` field error keeps the 400 RFC 9112 requires, with the same
/// header and body.
#[tokio::test]
async fn own_malformed_and_too_large_refusals_are_403_with_the_block_header() {
    let (p, rec) = setup().await;
    let long_target = format!(
        "GET http://app.test/{} HTTP/1.1\r\nHost: app.test\r\n\r\n",
        "a".repeat(20_000)
    );
    let cases: [(&[u8], &str, &str); 3] = [
        (
            b"GET https://app.test/ HTTP/1.1\r\nHost: app.test\r\n\r\n",
            "403",
            "malformed",
        ),
        (long_target.as_bytes(), "403", "too-large"),
        (
            b"GET http://app.test/ HTTP/1.1\r\nHost: app.test\r\nHost: evil.test\r\n\r\n",
            "400",
            "malformed",
        ),
    ];
    for (bytes, status, reason) in cases {
        let out = raw(p.addr, bytes).await;
        let head = out.to_ascii_lowercase();
        assert!(
            out.starts_with(&format!("HTTP/1.1 {status} ")),
            "{reason}: {}",
            &out[..out.len().min(300)]
        );
        assert!(
            head.contains(&format!("x-claude-bottle-block: {reason}\r\n")),
            "{out}"
        );
        assert_eq!(json_body(&out)["reason"], reason, "{out}");
        assert_eq!(json_body(&out)["blocked"], true, "{out}");
    }
    assert_eq!(rec.count(), 0);
    still_serving(&p).await;
}

#[tokio::test]
async fn oversized_head_is_refused() {
    let (p, rec) = setup().await;
    let mut big = b"GET http://app.test/ HTTP/1.1\r\nHost: app.test\r\n".to_vec();
    for i in 0..80 {
        big.extend_from_slice(format!("X-Pad-{i}: {}\r\n", "a".repeat(1000)).as_bytes());
    }
    big.extend_from_slice(b"\r\n");
    let out = raw(p.addr, &big).await;
    assert!(out.starts_with("HTTP/1.1 431") || out.is_empty(), "{out}");
    let long_url = format!(
        "GET http://app.test/{} HTTP/1.1\r\nHost: app.test\r\n\r\n",
        "a".repeat(70_000)
    );
    let out = raw(p.addr, long_url.as_bytes()).await;
    assert!(
        out.starts_with("HTTP/1.1 4") || out.is_empty(),
        "{}",
        &out[..out.len().min(200)]
    );
    assert_eq!(rec.count(), 0);
    still_serving(&p).await;
}

#[tokio::test]
async fn te_and_cl_together_cannot_smuggle_a_second_request() {
    let (p, rec) = setup().await;
    // Classic CL.TE: a front end using Content-Length would forward the
    // smuggled GET as part of the body; one using TE would see two requests.
    let attack = b"POST http://app.test/a HTTP/1.1\r\nHost: app.test\r\nContent-Length: 60\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET http://evil.test/smuggled HTTP/1.1\r\nHost: evil.test\r\n\r\n";
    let out = raw(p.addr, attack).await;
    // Whatever the first answer, the smuggled request never reaches upstream
    // as a request of its own and the connection is closed after the first.
    assert!(!out.contains("hello /smuggled"), "{out}");
    for s in rec.all() {
        assert_ne!(s.uri, "/smuggled");
        assert!(!String::from_utf8_lossy(&s.body).contains("smuggled"));
        assert!(s.headers.get("content-length").is_none_or(|v| v != "60"));
    }
    let ev = p.events_without(&[]);
    assert!(
        !ev.iter()
            .any(|e| e["host"] == "evil.test" && e["decision"] == "allow")
    );
    still_serving(&p).await;
}

#[tokio::test]
async fn slow_client_is_cut_off_by_the_header_timeout() {
    let (p, rec) = setup().await;
    let mut s = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"GET http://app.test/ HTTP/1.1\r\nHost: app")
        .await
        .unwrap();
    // Never finish the head: the proxy must close (or answer 408) on its own.
    let mut out = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    assert!(r.is_ok(), "connection was not closed");
    assert!(
        out.is_empty() || out.starts_with(b"HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    assert_eq!(rec.count(), 0);
    still_serving(&p).await;
}

#[tokio::test]
async fn idle_connections_are_bounded_and_released() {
    let (p, _rec) = setup().await;
    // Fill every slot (8) with idle sockets, then show a new client waits...
    let mut idle = Vec::new();
    for _ in 0..8 {
        idle.push(tokio::net::TcpStream::connect(p.addr).await.unwrap());
    }
    let waiting = tokio::spawn({
        let addr = p.addr;
        async move {
            let mut c = client(addr).await;
            send(&mut c, req("GET", "http://app.test/late", &[], ""))
                .await
                .0
        }
    });
    // ...and is served once the idle ones time out (header_read = 300 ms).
    let status = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, 200);
    drop(idle);
}

#[tokio::test]
async fn half_closed_client_gets_no_forwarding_of_a_partial_request() {
    let (p, rec) = setup().await;
    let mut s = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"POST http://app.test/p HTTP/1.1\r\nHost: app.test\r\nContent-Length: 100\r\n\r\nonly-part").await.unwrap();
    s.shutdown().await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    for seen in rec.all() {
        assert_ne!(
            seen.body, b"only-part",
            "a truncated body must not be delivered as complete"
        );
    }
    still_serving(&p).await;
}
