//! Plain HTTP forwarding, default deny, route rules, IP literals and the SSRF guard.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use support::*;
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn health_and_ca_are_served_by_the_proxy() {
    let p = Setup::new("allow: []").start().await;
    let mut c = client(p.addr).await;
    let (s, _, body) = send(
        &mut c,
        req("GET", "http://claude-bottle.local/health", &[], ""),
    )
    .await;
    assert_eq!((s, body.as_str()), (200, "ok\n"));
    let (s, _, body) = send(
        &mut c,
        req("GET", "http://claude-bottle.local/ca.pem", &[], ""),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(body, p.proxy.ca_pem());
    assert!(body.starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(!body.contains("PRIVATE"));
}

#[tokio::test]
async fn allowed_request_reaches_upstream_with_hop_by_hop_headers_removed() {
    let (up, rec) = http_upstream().await;
    let p = Setup::new(format!(
        "dlp: off\nallow: [{{host: app.test, ports: [{}]}}]\nresolve: {{app.test: {}}}",
        up.port(),
        up
    ))
    .start()
    .await;
    let mut c = client(p.addr).await;
    let uri = format!("http://app.test:{}/a/b?q=1", up.port());
    let r = req(
        "POST",
        &uri,
        &[
            ("proxy-authorization", "Basic Zm9vOmJhcg=="),
            ("connection", "x-private, keep-alive"),
            ("x-private", "hop"),
            ("x-keep", "end-to-end"),
        ],
        "body!",
    );
    let (s, h, body) = send(&mut c, r).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(h["x-upstream"], "yes");
    // Keep-alive: a second request on the same client connection also works.
    let (s, _, _) = send(&mut c, req("GET", &uri, &[], "")).await;
    assert_eq!(s, 200);
    let seen = rec.all();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].uri, "/a/b?q=1", "origin-form upstream");
    assert_eq!(seen[0].headers["host"], format!("app.test:{}", up.port()));
    assert_eq!(seen[0].body, b"body!");
    assert_eq!(seen[0].headers["x-keep"], "end-to-end");
    assert!(seen[0].headers.get("proxy-authorization").is_none());
    assert!(seen[0].headers.get("x-private").is_none());
    p.event(|e| {
        e["decision"] == "allow"
            && e["host"] == "app.test"
            && e["status"] == 200
            && e["path"] == "/a/b"
    })
    .await;
}

#[tokio::test]
async fn default_deny_answers_403_with_reason_header_and_json() {
    let (up, rec) = http_upstream().await;
    let p = Setup::new(format!(
        "allow: [{{host: app.test}}]\nresolve: {{other.test: {up}}}"
    ))
    .start()
    .await;
    let mut c = client(p.addr).await;
    let (s, h, body) = send(&mut c, req("GET", "http://other.test/x", &[], "")).await;
    assert_eq!(s, 403);
    assert_eq!(h["x-claude-bottle-block"], "no-route");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["blocked"], true);
    assert_eq!(v["reason"], "no-route");
    assert_eq!(v["host"], "other.test");
    assert_eq!(rec.count(), 0);
    assert_eq!(p.net.connect_count(), 0);
    let ev = p.events_without(&[]);
    let e = ev.iter().find(|e| e["reason"] == "no-route").unwrap();
    assert_eq!(e["decision"], "block");
    assert_eq!(e["kind"], "http");
    assert_eq!(e["status"], 403);
    for k in [
        "ts", "kind", "decision", "reason", "host", "method", "path", "status", "bytes", "ms",
    ] {
        assert!(e.get(k).is_some(), "{k} missing in {e}");
    }
}

/// A route matched the host, only the port is wrong: the refusal names that
/// route, in the body and in the event, for HTTP and for CONNECT.
#[tokio::test]
async fn a_port_refusal_names_the_route_that_matched_the_host() {
    let p = Setup::new("allow: [{host: vm}]").start().await;
    let mut c = client(p.addr).await;
    let (s, h, body) = send(&mut c, req("GET", "http://vm:8080/", &[], "")).await;
    assert_eq!(
        (s, h["x-claude-bottle-block"].to_str().unwrap()),
        (403, "port")
    );
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (v["reason"].as_str(), v["rule"].as_str()),
        (Some("port"), Some("vm"))
    );
    let (s, text, _) = connect(p.addr, "vm:22").await;
    assert_eq!(s, 403);
    assert!(text.contains(r#""rule":"vm""#), "{text}");
    let ev = p.events_without(&[]);
    for kind in ["http", "connect"] {
        let e = ev.iter().find(|e| e["kind"] == kind).unwrap();
        assert_eq!(
            (e["reason"].as_str(), e["rule"].as_str()),
            (Some("port"), Some("vm")),
            "{e}"
        );
    }
    assert_eq!(p.net.connect_count(), 0);
}

#[tokio::test]
async fn method_and_path_rules_with_traversal_attacks() {
    let (up, rec) = http_upstream().await;
    let p = Setup::new(format!(
        "dlp: off\nallow: [{{host: api.test, methods: [GET], paths: ['/repos/acme/', 're:^/user$'], ports: [{}]}}]\nresolve: {{api.test: {up}}}",
        up.port()
    ))
    .start()
    .await;
    let base = format!("http://api.test:{}", up.port());
    let mut c = client(p.addr).await;
    let (s, _, _) = send(
        &mut c,
        req("GET", &format!("{base}/repos/acme/app"), &[], ""),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _, _) = send(&mut c, req("GET", &format!("{base}/user"), &[], "")).await;
    assert_eq!(s, 200);
    let (s, h, _) = send(
        &mut c,
        req("POST", &format!("{base}/repos/acme/app"), &[], "x"),
    )
    .await;
    assert_eq!(
        (s, h["x-claude-bottle-block"].to_str().unwrap()),
        (403, "method")
    );
    for path in [
        "/repos/other/app",
        "/repos/acme/../../admin",
        "/repos/acme/%2e%2e/%2e%2e/admin",
        "/repos/acme/%2E%2E%2fadmin",
        "/repos/acme/..%5c..%5cadmin",
        "/user/",
        "/users",
    ] {
        let mut c = client(p.addr).await;
        let (s, h, _) = send(&mut c, req("GET", &format!("{base}{path}"), &[], "")).await;
        assert_eq!(s / 100, 4, "{path}");
        let reason = h["x-claude-bottle-block"].to_str().unwrap().to_string();
        assert!(
            reason == "path" || reason == "malformed",
            "{path}: {reason}"
        );
    }
    assert_eq!(
        rec.count(),
        2,
        "only the two allowed requests reached upstream"
    );
}

/// Attack: a flood of `/health` requests with a method of 30 KiB each, to
/// rotate the audit log in seconds. The proxy's own answers count against
/// the rate limit (bytes or not), and an event's method is cut.
#[tokio::test]
async fn a_health_flood_with_long_methods_stays_small_in_the_log() {
    const SENT: u64 = 120;
    let p = Setup::new("allow: []").start().await;
    let method = "M".repeat(30 * 1024);
    let mut s = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    let started = std::time::Instant::now();
    for _ in 0..SENT {
        let r = format!(
            "{method} http://claude-bottle.local/health HTTP/1.1\r\nHost: claude-bottle.local\r\n\r\n"
        );
        s.write_all(r.as_bytes()).await.unwrap();
        let (status, head, _) = read_response(&mut s).await;
        assert_eq!(status, 200, "{head}");
    }
    let seconds = started.elapsed().as_secs() + 2;
    drop(s);
    let log = p.log.clone();
    let audit = p.proxy.audit();
    p.shut_down().await;
    // What the sidecar and `proxy` do when they stop.
    audit.flush();
    let lines = log.lines();
    let bytes: usize = lines.iter().map(String::len).sum();
    assert!(
        bytes < 64 * 1024,
        "{bytes} bytes of log for {SENT} requests"
    );
    let events = log.events();
    let written = events
        .iter()
        .filter(|e| e["kind"] == "internal" && e["count"].is_null())
        .count() as u64;
    let counted: u64 = events
        .iter()
        .filter(|e| e["rule"] == "rate-limit:internal")
        .map(|e| e["count"].as_u64().unwrap())
        .sum();
    assert_eq!(
        written + counted,
        SENT,
        "{written} written, {counted} counted"
    );
    assert!(
        written <= u64::from(bottle_egress::limits::REFUSAL_EVENTS_PER_SECOND) * seconds,
        "{written} written in {seconds} s"
    );
    for e in &events {
        assert!(e["method"].as_str().is_none_or(|m| m.len() <= 64), "{e}");
    }
}

/// Attack: a host spelt so that no exact route matches it while it still
/// resolves to that host (`api.test..`), or the apex in disguise under a
/// wildcard (`.app.test` under `*.app.test`), so that `*` (with no rules)
/// takes it and the stricter route's rules are lifted. Refused as
/// `malformed`, at the front door and as a CONNECT, before any route.
#[tokio::test]
async fn hosts_that_are_no_dns_name_are_refused_before_routing() {
    let (up, rec) = http_upstream().await;
    let p = Setup::new(format!(
        "dlp: off\nallow: [{{host: api.test, methods: [GET], ports: [{port}]}}, {{host: '*', ports: [{port}, 443]}}, {{host: '*.app.test', methods: [GET], ports: [{port}]}}]\nresolve: {{api.test: {up}, app.test: {up}}}",
        port = up.port()
    ))
    .start()
    .await;
    let port = up.port();
    for host in [
        "api.test..",
        ".app.test",
        "a..app.test",
        "*.app.test",
        "api_test;x.app.test",
    ] {
        let mut c = client(p.addr).await;
        let (s, h, _) = send(
            &mut c,
            req("POST", &format!("http://{host}:{port}/x"), &[], "x"),
        )
        .await;
        assert_eq!(s, 403, "{host}");
        assert_eq!(h["x-claude-bottle-block"], "malformed", "{host}");
        let (s, head, _) = connect(p.addr, &format!("{host}:443")).await;
        assert_eq!(s, 403, "CONNECT {host}");
        assert!(
            head.to_ascii_lowercase()
                .contains("x-claude-bottle-block: malformed"),
            "{head}"
        );
    }
    // The names as routes write them are judged by their own routes.
    let mut c = client(p.addr).await;
    let (s, h, _) = send(
        &mut c,
        req("POST", &format!("http://api.test.:{port}/x"), &[], "x"),
    )
    .await;
    assert_eq!(
        (s, h["x-claude-bottle-block"].to_str().unwrap()),
        (403, "method")
    );
    let (s, _, _) = send(
        &mut c,
        req("GET", &format!("http://api.test:{port}/x"), &[], ""),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(rec.count(), 1);
}

/// A whole request: its head and a Content-Length body.
fn whole_request(b: &[u8]) -> bool {
    let Some(end) = b.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&b[..end]).to_ascii_lowercase();
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    b.len() >= end + 4 + len
}

/// Attack: a POST form carrying `_method=DELETE` (Rails, Laravel and
/// Symfony take it for a DELETE) on a route that allows GET and POST. The
/// field is refused in urlencoded and multipart bodies, also when it is
/// split over two writes, and the upstream never gets the whole request.
#[tokio::test]
async fn a_method_field_in_a_form_body_is_held_to_the_route() {
    let (up, got) = raw_upstream(whole_request).await;
    let p = Setup::new(format!(
        "dlp: off\nallow: [{{host: api.test, methods: [GET, POST], ports: [{}]}}, {{host: open.test, ports: [{}]}}]\nresolve: {{api.test: {up}, open.test: {up}}}",
        up.port(),
        up.port()
    ))
    .start()
    .await;
    let post = |host: &str, ct: &str, body: &str| {
        format!(
            "POST http://{host}:{}/items/1 HTTP/1.1\r\nHost: {host}:{}\r\nContent-Type: {ct}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            up.port(),
            up.port(),
            body.len()
        )
    };
    let form = "application/x-www-form-urlencoded";
    let multipart = "multipart/form-data; boundary=b";
    let part = "--b\r\nContent-Disposition: form-data; name=\"_method\"\r\n\r\nDELETE\r\n--b--\r\n";
    for (ct, body) in [
        (form, "a=1&_method=DELETE"),
        (form, "a=1&%5Fmethod=delete&b=2"),
        (multipart, part),
        // The type the guard reads is removed on the way up (`Connection`
        // names it): Rack then reads a POST without a type as a form.
        (
            "text/plain\r\nConnection: content-type",
            "a=1&_method=DELETE",
        ),
        // Rack ends the type at `,`; it parses `multipart/mixed` too.
        ("application/x-www-form-urlencoded,x", "a=1&_method=DELETE"),
        ("multipart/mixed; boundary=b", part),
        // Laravel takes `_method` from a JSON body.
        ("application/json", "{\"a\":1,\"_method\":\"DELETE\"}"),
    ] {
        let out = raw(p.addr, post("api.test", ct, body).as_bytes()).await;
        assert!(out.starts_with("HTTP/1.1 403"), "{body}: {out}");
        assert!(
            out.to_ascii_lowercase()
                .contains("x-claude-bottle-block: method"),
            "{out}"
        );
    }
    assert!(
        !String::from_utf8_lossy(&got.lock().unwrap()).contains("DELETE"),
        "no override reached the upstream"
    );

    // Split over two writes 0.3 s apart: the first half is held, not sent.
    let whole = post("api.test", form, "a=1&_method=DELETE");
    let (first, second) = whole.split_at(whole.len() - 3);
    let mut s = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    s.write_all(first.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = String::from_utf8_lossy(&got.lock().unwrap()).into_owned();
    assert!(sent.contains("a=1&") && !sent.contains("_method"), "{sent}");
    s.write_all(second.as_bytes()).await.unwrap();
    let (status, head, _) = read_response(&mut s).await;
    assert_eq!(status, 403, "{head}");
    assert!(!String::from_utf8_lossy(&got.lock().unwrap()).contains("_method"));

    // Allowed: a method of the route, forms without the field, and routes
    // without `methods`.
    got.lock().unwrap().clear();
    for (host, ct, body) in [
        ("api.test", form, "_method=post&a=1"),
        ("api.test", form, "my_method=DELETE"),
        ("api.test", "application/json", "{\"a\":\"_method\"}"),
        ("api.test", "text/plain", "a=1&_method=DELETE"),
        ("open.test", form, "_method=DELETE"),
    ] {
        let out = raw(p.addr, post(host, ct, body).as_bytes()).await;
        assert!(out.starts_with("HTTP/1.1 200"), "{host} {body}: {out}");
        assert!(String::from_utf8_lossy(&got.lock().unwrap()).contains(body));
    }

    // `Expect` stays here: the proxy sends the body at once, and an
    // upstream that answered the expectation early would read the body as
    // the connection's next request.
    got.lock().unwrap().clear();
    let out = raw(
        p.addr,
        post("open.test", "text/plain\r\nExpect: 100-continue", "a=1").as_bytes(),
    )
    .await;
    assert!(out.contains("HTTP/1.1 200"), "{out}");
    let sent = String::from_utf8_lossy(&got.lock().unwrap()).to_ascii_lowercase();
    assert!(sent.contains("a=1") && !sent.contains("expect"), "{sent}");
}

#[tokio::test]
async fn ip_literals_refused_in_every_spelling_before_connecting() {
    let (up, rec) = http_upstream().await;
    let port = up.port();
    let p = Setup::new(format!("dlp: off\nallow: [{{host: '*', ports: [{port}]}}]"))
        .start()
        .await;
    for host in [
        "127.0.0.1",
        "2130706433",
        "0177.0.0.1",
        "0x7f000001",
        "127.1",
        "0x7f.1",
        "[::ffff:127.0.0.1]",
        "[::1]",
        "127.0.0.1.",
    ] {
        let mut c = client(p.addr).await;
        let (s, h, _) = send(
            &mut c,
            req("GET", &format!("http://{host}:{port}/"), &[], ""),
        )
        .await;
        assert_eq!(
            (s, h["x-claude-bottle-block"].to_str().unwrap()),
            (403, "ip-literal"),
            "{host}"
        );
        let (s, _, _) = {
            let (s, body, _) = connect(p.addr, &format!("{host}:{port}")).await;
            (s, body, ())
        };
        assert_eq!(s, 403, "CONNECT {host}");
    }
    assert_eq!(p.net.connect_count(), 0);
    assert_eq!(rec.count(), 0);
}

#[tokio::test]
async fn a_route_naming_the_ip_lets_it_through() {
    let (up, rec) = http_upstream().await;
    let port = up.port();
    let p = Setup::new(format!(
        "dlp: off\nallow: [{{host: 127.0.0.1, ports: [{port}]}}]"
    ))
    .start()
    .await;
    let mut c = client(p.addr).await;
    let (s, _, _) = send(
        &mut c,
        req("GET", &format!("http://2130706433:{port}/x"), &[], ""),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(rec.count(), 1);
}

#[tokio::test]
async fn ssrf_guard_refuses_private_answers_unless_pinned() {
    let (up, rec) = http_upstream().await;
    let port = up.port();
    // `internal.test` resolves (through the resolver, not the pin table) to
    // loopback, and `meta.test` to the metadata address: both refused before
    // any connection; `pinned.test` is in `resolve` and passes.
    let net = FakeNet::with(&[
        ("internal.test", "127.0.0.1"),
        ("meta.test", "169.254.169.254"),
        ("ula.test", "fd00::1"),
    ]);
    let p = Setup::new(format!(
        "dlp: off\nallow: [{{host: '*', ports: [{port}]}}]\nresolve: {{pinned.test: 127.0.0.1}}"
    ))
    .net(net)
    .start()
    .await;
    for host in ["internal.test", "meta.test", "ula.test"] {
        let mut c = client(p.addr).await;
        let (s, h, _) = send(
            &mut c,
            req("GET", &format!("http://{host}:{port}/"), &[], ""),
        )
        .await;
        assert_eq!(
            (s, h["x-claude-bottle-block"].to_str().unwrap()),
            (403, "private-address"),
            "{host}"
        );
        let (s, text, _) = connect(p.addr, &format!("{host}:{port}")).await;
        assert_eq!(s, 403, "{text}");
        assert!(text.contains("private-address"));
    }
    assert_eq!(p.net.connect_count(), 0, "refused before connecting");
    assert_eq!(rec.count(), 0);
    let mut c = client(p.addr).await;
    let (s, _, _) = send(
        &mut c,
        req("GET", &format!("http://pinned.test:{port}/"), &[], ""),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(rec.count(), 1);
}

/// Attack: the agent reaches a service on the machine the bottle runs on
/// through a wildcard route, by a name that resolves to one of the host's
/// public addresses (`ec2-…` names under `*.amazonaws.com` do). The
/// sidecar's connection to that address arrives at the host as local
/// traffic, and no fixed private range covers a public address: the
/// config's `host_addresses` must. 198.51.100.7 stands for the host's
/// address; the fake net takes connects to it to the loopback upstream,
/// as the host would take them to its service.
#[tokio::test]
async fn ssrf_guard_refuses_the_hosts_own_addresses_unless_named() {
    let (up, rec) = http_upstream().await;
    let port = up.port();
    // A proxy with `*` on the upstream's port, `route` after it, and
    // `extra` config lines.
    let proxy = |route: &str, extra: &str| {
        let net = FakeNet::with(&[
            ("ec2-198-51-100-7.compute.test", "198.51.100.7"),
            ("mapped.test", "::ffff:198.51.100.7"),
            ("v6.test", "2001:db8::7"),
        ]);
        net.stand_in("198.51.100.7");
        Setup::new(format!(
            "dlp: off\nallow: [{{host: '*', ports: [{port}]}}{route}]\n{extra}"
        ))
        .net(net)
        .start()
    };
    // The status and block reason of a GET through `p`.
    let get = |p: std::net::SocketAddr, url: String| async move {
        let mut c = client(p).await;
        let (s, h, _) = send(&mut c, req("GET", &url, &[], "")).await;
        let block = h
            .get("x-claude-bottle-block")
            .map(|v| v.to_str().unwrap().to_string());
        (s, block)
    };
    let host = format!("http://ec2-198-51-100-7.compute.test:{port}/");
    let listed = "host_addresses: [198.51.100.7, '2001:db8::7']";

    // Control: without the list the host is reached (the hole).
    let open = proxy("", "").await;
    assert_eq!(
        get(open.addr, host.clone()).await,
        (200, None),
        "the stand-in reaches the upstream"
    );
    assert_eq!(rec.count(), 1);
    drop(open);

    let p = proxy(
        "",
        &format!("{listed}\nresolve: {{pinned.test: 198.51.100.7}}"),
    )
    .await;
    let refused = (403, Some("private-address".to_string()));
    for name in ["ec2-198-51-100-7.compute.test", "mapped.test", "v6.test"] {
        let url = format!("http://{name}:{port}/");
        assert_eq!(get(p.addr, url).await, refused, "{name}");
        let (s, text, _) = connect(p.addr, &format!("{name}:{port}")).await;
        assert_eq!(s, 403, "{name}: {text}");
        assert!(text.contains("private-address"), "{name}: {text}");
    }
    // The address itself, as an IP literal: refused as every literal no
    // route names is.
    let literal = format!("http://198.51.100.7:{port}/");
    assert_eq!(get(p.addr, literal).await, (403, Some("ip-literal".into())));
    assert_eq!(p.net.connect_count(), 0, "refused before connecting");
    assert_eq!(rec.count(), 1, "nothing past the control");

    // Named by `resolve`: the user chose it.
    let pinned = format!("http://pinned.test:{port}/");
    assert_eq!(get(p.addr, pinned).await, (200, None));
    assert_eq!(rec.count(), 2);
    drop(p);

    // Named by a route: so is a name that resolves to it.
    let p = proxy(
        &format!(", {{host: 198.51.100.7, ports: [{port}]}}"),
        listed,
    )
    .await;
    assert_eq!(get(p.addr, host.clone()).await, (200, None));
    assert_eq!(rec.count(), 3);
    drop(p);

    // Attack: the address's route has rules of its own, which a request
    // by name (judged by the `*` route) would not meet: the name does not
    // open the address. Its literal still reaches it, under its rules.
    let p = proxy(
        &format!(", {{host: 198.51.100.7, ports: [{port}], methods: [HEAD]}}"),
        listed,
    )
    .await;
    assert_eq!(
        get(p.addr, host).await,
        (403, Some("private-address".into()))
    );
    let literal = format!("http://198.51.100.7:{port}/");
    assert_eq!(
        get(p.addr, literal).await,
        (403, Some("method".into())),
        "the literal is held to the address's route"
    );
    assert_eq!(rec.count(), 3);
}

#[tokio::test]
async fn resolve_pin_with_port_replaces_the_request_port() {
    let (up, rec) = http_upstream().await;
    let p = Setup::new(format!(
        "dlp: off\nallow: [{{host: site.test}}]\nresolve: {{site.test: '{up}'}}"
    ))
    .start()
    .await;
    let mut c = client(p.addr).await;
    let (s, _, _) = send(&mut c, req("GET", "http://site.test/page", &[], "")).await;
    assert_eq!(s, 200);
    assert_eq!(rec.all()[0].headers["host"], "site.test");
}

#[tokio::test]
async fn userinfo_and_https_absolute_form_are_malformed() {
    let (up, rec) = http_upstream().await;
    let p = Setup::new(format!(
        "allow: [{{host: ok.test}}]\nresolve: {{ok.test: '{up}', evil.test: '{up}'}}"
    ))
    .start()
    .await;
    let out = raw(
        p.addr,
        b"GET http://ok.test@evil.test/ HTTP/1.1\r\nHost: evil.test\r\n\r\n",
    )
    .await;
    assert!(
        out.starts_with("HTTP/1.1 400") || out.starts_with("HTTP/1.1 403"),
        "{out}"
    );
    let out = raw(
        p.addr,
        b"GET https://ok.test/ HTTP/1.1\r\nHost: ok.test\r\n\r\n",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 403"), "{out}");
    assert!(
        out.to_ascii_lowercase()
            .contains("x-claude-bottle-block: malformed"),
        "{out}"
    );
    assert_eq!(rec.count(), 0);
}

#[tokio::test]
async fn upstream_down_is_502_and_silent_upstream_is_504() {
    // A port with nothing listening: a socket bound but never listening holds
    // the port (connections to it are refused) for the whole test. Closing it
    // instead let the proxy's own listener take the same port now and then,
    // and the proxy then answered its own 403 for "dead.test".
    let dead_socket = tokio::net::TcpSocket::new_v4().unwrap();
    dead_socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let dead = dead_socket.local_addr().unwrap();
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let p = Setup::new(format!(
        "dlp: off\nallow: [{{host: dead.test}}, {{host: silent.test}}]\nresolve: {{dead.test: '{dead}', silent.test: '{silent_addr}'}}"
    ))
    .tweak(|c| c.limits.response_head = std::time::Duration::from_millis(300))
    .start()
    .await;
    let mut c = client(p.addr).await;
    let (s, h, _) = send(&mut c, req("GET", "http://dead.test/", &[], "")).await;
    assert_eq!(
        (s, h["x-claude-bottle-block"].to_str().unwrap()),
        (502, "upstream-error")
    );
    let mut c = client(p.addr).await;
    let (s, h, _) = send(&mut c, req("GET", "http://silent.test/", &[], "")).await;
    assert_eq!(
        (s, h["x-claude-bottle-block"].to_str().unwrap()),
        (504, "timeout")
    );
    drop((silent, dead_socket));
}

/// A CONNECT-only upstream proxy on loopback that records what it was asked
/// for and tunnels to loopback addresses only.
async fn corp_proxy() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let a2 = asked.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let asked = a2.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                while !head.ends_with(b"\r\n\r\n") {
                    let b = s.read_u8().await.unwrap();
                    head.push(b);
                }
                let line = String::from_utf8_lossy(&head)
                    .lines()
                    .next()
                    .unwrap()
                    .to_string();
                let authority = line.split(' ').nth(1).unwrap().to_string();
                asked.lock().unwrap().push(line.clone());
                let target: Result<std::net::SocketAddr, _> = authority.parse();
                match target {
                    Ok(t) if t.ip().is_loopback() => {
                        let mut up = tokio::net::TcpStream::connect(t).await.unwrap();
                        s.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                            .await
                            .unwrap();
                        let _ = tokio::io::copy_bidirectional(&mut s, &mut up).await;
                    }
                    _ => {
                        let _ = s
                            .write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n")
                            .await;
                    }
                }
            });
        }
    });
    (addr, asked)
}

#[tokio::test]
async fn upstream_proxy_carries_every_upstream_connection() {
    let (up, rec) = http_upstream().await;
    let (corp, asked) = corp_proxy().await;
    let p = Setup::new(format!(
        "dlp: off\nallow: [{{host: pinned.test}}, {{host: far.test}}]\nresolve: {{pinned.test: '{up}'}}\nupstream_proxy: http://{corp}"
    ))
    .start()
    .await;
    let mut c = client(p.addr).await;
    let (s, _, body) = send(&mut c, req("GET", "http://pinned.test/x", &[], "")).await;
    assert_eq!((s, body.as_str()), (200, "hello /x"));
    assert_eq!(rec.all()[0].headers["host"], "pinned.test");
    // An unpinned name is not resolved here: the upstream proxy gets the name.
    let mut c = client(p.addr).await;
    let (s, _, _) = send(&mut c, req("GET", "http://far.test/y", &[], "")).await;
    assert_eq!(s, 502);
    let asked = asked.lock().unwrap().clone();
    assert_eq!(asked[0], format!("CONNECT {up} HTTP/1.1"));
    assert_eq!(asked[1], "CONNECT far.test:80 HTTP/1.1");
    assert_eq!(p.net.resolves.load(std::sync::atomic::Ordering::SeqCst), 0);
}

/// An upstream that accepts WebSocket-style upgrades and then echoes bytes.
async fn upgrade_upstream() -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let svc = hyper::service::service_fn(
                |mut req: http::Request<hyper::body::Incoming>| async move {
                    assert_eq!(req.headers()["upgrade"], "websocket");
                    let on = hyper::upgrade::on(&mut req);
                    tokio::spawn(async move {
                        let mut io = hyper_util::rt::TokioIo::new(on.await.unwrap());
                        let mut buf = [0u8; 4];
                        io.read_exact(&mut buf).await.unwrap();
                        io.write_all(&buf).await.unwrap();
                    });
                    let mut r = http::Response::new(http_body_util::Empty::<bytes::Bytes>::new());
                    *r.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
                    r.headers_mut()
                        .insert("upgrade", "websocket".parse().unwrap());
                    r.headers_mut()
                        .insert("connection", "upgrade".parse().unwrap());
                    Ok::<_, std::convert::Infallible>(r)
                },
            );
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                    .with_upgrades(),
            );
        }
    });
    addr
}

#[tokio::test]
async fn websocket_upgrade_passes_after_the_route_check() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = upgrade_upstream().await;
    let p = Setup::new(format!(
        "dlp: off\nallow: [{{host: ws.test, paths: ['/chat']}}]\nresolve: {{ws.test: '{up}'}}"
    ))
    .start()
    .await;
    // Outside the allowed path: refused like any request.
    let out = raw(
        p.addr,
        b"GET http://ws.test/admin HTTP/1.1\r\nHost: ws.test\r\nConnection: Upgrade, close\r\nUpgrade: websocket\r\n\r\n",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 403"), "{out}");
    let mut s = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"GET http://ws.test/chat HTTP/1.1\r\nHost: ws.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").await.unwrap();
    let (status, head, _) = read_response(&mut s).await;
    assert_eq!(status, 101, "{head}");
    assert!(head.to_ascii_lowercase().contains("upgrade: websocket"));
    s.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");
}

/// An open WebSocket has left its client connection's slot: it holds a
/// tunnel slot instead, so open ones are bounded like CONNECT tunnels.
#[tokio::test]
async fn open_websockets_are_bounded() {
    use tokio::io::AsyncWriteExt;
    let up = upgrade_upstream().await;
    let p = Setup::new(format!(
        "dlp: off\nallow: [{{host: ws.test}}]\nresolve: {{ws.test: '{up}'}}"
    ))
    .tweak(|c| c.limits.max_connections = 2)
    .start()
    .await;
    let upgrade = b"GET http://ws.test/chat HTTP/1.1\r\nHost: ws.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    let mut open = Vec::new();
    for _ in 0..2 {
        let mut s = tokio::net::TcpStream::connect(p.addr).await.unwrap();
        s.write_all(upgrade).await.unwrap();
        let (status, head, _) = read_response(&mut s).await;
        assert_eq!(status, 101, "{head}");
        open.push(s);
    }
    let mut s = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    s.write_all(upgrade).await.unwrap();
    let (status, head, _) =
        tokio::time::timeout(std::time::Duration::from_secs(5), read_response(&mut s))
            .await
            .expect("an answer, not a wait");
    assert_eq!(status, 403, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("x-claude-bottle-block: too-large")
    );
    // One closed: its slot is free again (once the relay has seen the end).
    drop(open.pop());
    let mut again = 0;
    for _ in 0..50 {
        let mut s = tokio::net::TcpStream::connect(p.addr).await.unwrap();
        s.write_all(upgrade).await.unwrap();
        again = read_response(&mut s).await.0;
        if again == 101 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(again, 101);
}

/// Attack: the agent asks for a token host over plain HTTP so that the
/// proxy would put the real credential on the wire in clear. The request is
/// refused before any connection, and the credential reaches nobody.
#[tokio::test]
async fn a_token_host_is_never_reached_in_clear() {
    let (up, rec) = http_upstream().await;
    let p = Setup::new(format!(
        "dlp: off\nallow: [{{host: api.test, ports: [{port}]}}, {{host: other.test, ports: [{port}]}}]\nresolve: {{api.test: {up}, other.test: {up}}}\ntokens: [{{kind: http, host: api.test, scheme: Bearer, token_ref: GH}}]",
        port = up.port(),
    ))
    .secrets(&[("GH", "ghp_realtoken123456")])
    .start()
    .await;
    let mut c = client(p.addr).await;
    let uri = format!("http://api.test:{}/v1/repos", up.port());
    let (s, h, _) = send(
        &mut c,
        req("GET", &uri, &[("authorization", "Bearer placeholder")], ""),
    )
    .await;
    assert_eq!(
        (s, h["x-claude-bottle-block"].to_str().unwrap()),
        (403, "port")
    );
    assert_eq!(rec.count(), 0, "nothing reached the upstream");
    // A route without a token still works over plain HTTP.
    let mut c = client(p.addr).await;
    let uri = format!("http://other.test:{}/x", up.port());
    let (s, _, _) = send(&mut c, req("GET", &uri, &[], "")).await;
    assert_eq!(s, 200);
    let seen = rec.all();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].headers.get("authorization").is_none());
    p.events_without(&["ghp_realtoken123456"]);
}
