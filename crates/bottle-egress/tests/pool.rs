//! The shared pool of idle upstream connections: reuse across clients, and
//! never a connection that is busy, closed or cut short.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &str = "topsecretvalue42";

/// A keep-alive upstream speaking just enough HTTP/1.1 by hand:
/// `/stream` starts a chunked body that never ends, `/close` answers and
/// then closes the connection, `POST` is never answered, anything else is
/// answered `ok`. Counts the connections it accepted.
async fn scripted_upstream() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let n = accepted.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            n.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        let mut b = [0u8; 4096];
                        match s.read(&mut b).await {
                            Ok(0) | Err(_) => return,
                            Ok(k) => buf.extend_from_slice(&b[..k]),
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                    buf.drain(..end + 4);
                    let line = head.lines().next().unwrap_or_default().to_string();
                    if line.contains(" /ignore-body ") {
                        // A handler that never reads the body (CL.0).
                        let _ = s
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                            .await;
                        continue;
                    }
                    if line.starts_with("POST") {
                        // Hold the request open; read whatever comes.
                        let mut b = [0u8; 4096];
                        while let Ok(k) = s.read(&mut b).await {
                            if k == 0 {
                                return;
                            }
                        }
                        return;
                    }
                    if line.contains(" /stream ") {
                        let _ = s
                            .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
                            .await;
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        return;
                    }
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                        .await;
                    if line.contains(" /close ") {
                        return;
                    }
                }
            });
        }
    });
    (addr, accepted)
}

async fn pool_proxy(up: std::net::SocketAddr, dlp: &str) -> Running {
    Setup::new(format!(
        "dlp: {dlp}\nallow: [{{host: app.test}}, {{host: other.test}}]\nresolve: {{app.test: '{up}', other.test: '{up}'}}\nknown_secret_env: [S]"
    ))
    .secrets(&[("S", SECRET)])
    .start()
    .await
}

async fn get(p: &Running, uri: &str) -> (u16, String) {
    let mut c = client(p.addr).await;
    let (s, _, body) = send(&mut c, req("GET", uri, &[], "")).await;
    (s, body)
}

/// Lets the proxy hand a finished connection back before the next request.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(50)).await;
}

#[tokio::test]
async fn one_upstream_connection_serves_successive_clients_of_the_same_target() {
    let (up, accepted) = scripted_upstream().await;
    let p = pool_proxy(up, "block").await;
    for _ in 0..3 {
        assert_eq!(get(&p, "http://app.test/a").await, (200, "ok".into()));
        settle().await;
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "reused across clients");
    assert_eq!(p.net.connect_count(), 1);
    assert_eq!(p.proxy.idle_upstream_connections(), 1);
    // Another name is another target, even at the same address.
    assert_eq!(get(&p, "http://other.test/a").await, (200, "ok".into()));
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_connection_still_streaming_is_not_lent_to_another_client() {
    let (up, accepted) = scripted_upstream().await;
    let p = pool_proxy(up, "off").await;
    let mut a = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    a.write_all(b"GET http://app.test/stream HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).contains("first") {
        let mut b = [0u8; 1024];
        let k = a.read(&mut b).await.unwrap();
        assert!(k > 0);
        got.extend_from_slice(&b[..k]);
    }
    // The stream is open; another client must not wait for it.
    let r = tokio::time::timeout(Duration::from_secs(5), get(&p, "http://app.test/b")).await;
    assert_eq!(r.unwrap(), (200, "ok".into()));
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    drop(a);
}

#[tokio::test]
async fn a_body_on_a_get_gets_a_connection_of_its_own() {
    // This upstream reads no body on a GET (CL.0): on a shared connection
    // the body would start the next request, which the agent's next
    // request (its credential injected) would complete.
    let (up, accepted) = scripted_upstream().await;
    let p = pool_proxy(up, "off").await;
    let smuggled = "DELETE /admin HTTP/1.1\r\nX: ";
    let len = smuggled.len().to_string();
    let mut c = client(p.addr).await;
    let r = req(
        "GET",
        "http://app.test/a",
        &[("Content-Length", &len)],
        smuggled,
    );
    assert_eq!(send(&mut c, r).await.0, 200);
    settle().await;
    assert_eq!(get(&p, "http://app.test/b").await, (200, "ok".into()));
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        2,
        "not on the GET's connection"
    );
    // A GET without a body keeps its connection.
    settle().await;
    assert_eq!(get(&p, "http://app.test/c").await, (200, "ok".into()));
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_body_on_a_route_with_rules_gets_a_connection_of_its_own() {
    // A POST to an endpoint that ignores its body (CL.0): on a route with
    // rules, a shared connection would let the body's request line, or a
    // whole request in it, past them.
    let (up, accepted) = scripted_upstream().await;
    let p = Setup::new(format!(
        "dlp: off\nallow: [{{host: ruled.test, methods: [GET, POST]}}, {{host: app.test}}]\nresolve: {{ruled.test: '{up}', app.test: '{up}'}}"
    ))
    .start()
    .await;
    let smuggled = "DELETE /admin HTTP/1.1\r\nX: ";
    let len = smuggled.len().to_string();
    let post = |host: &str| {
        let uri = format!("http://{host}/ignore-body");
        req("POST", &uri, &[("Content-Length", &len)], smuggled)
    };
    let mut c = client(p.addr).await;
    assert_eq!(send(&mut c, post("ruled.test")).await.0, 200);
    settle().await;
    assert_eq!(get(&p, "http://ruled.test/b").await, (200, "ok".into()));
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        2,
        "not on the POST's connection"
    );
    // A route without rules allows any request anyway: its POSTs keep
    // their connections (model calls and uploads stay fast).
    let mut c = client(p.addr).await;
    assert_eq!(send(&mut c, post("app.test")).await.0, 200);
    settle().await;
    assert_eq!(accepted.load(Ordering::SeqCst), 3);
    let mut c = client(p.addr).await;
    let r = req(
        "POST",
        "http://app.test/ignore-body",
        &[("Content-Length", "2")],
        "{}",
    );
    assert_eq!(send(&mut c, r).await.0, 200);
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        3,
        "the POST's connection was reused"
    );
}

#[tokio::test]
async fn a_connection_the_upstream_closed_is_not_reused() {
    let (up, accepted) = scripted_upstream().await;
    let p = pool_proxy(up, "off").await;
    assert_eq!(get(&p, "http://app.test/close").await, (200, "ok".into()));
    settle().await;
    assert_eq!(get(&p, "http://app.test/a").await, (200, "ok".into()));
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_connection_whose_body_dlp_stopped_is_never_reused() {
    let (up, accepted) = scripted_upstream().await;
    let p = pool_proxy(up, "block").await;
    let mut c = client(p.addr).await;
    let (s, h, _) = send(
        &mut c,
        req("POST", "http://app.test/up", &[], &format!("k={SECRET}")),
    )
    .await;
    assert_eq!(
        (s, h["x-claude-bottle-block"].to_str().unwrap()),
        (403, "dlp")
    );
    settle().await;
    assert_eq!(get(&p, "http://app.test/a").await, (200, "ok".into()));
    assert_eq!(accepted.load(Ordering::SeqCst), 2, "a fresh connection");
    p.events_without(&[SECRET]);
}

#[tokio::test]
async fn a_client_gone_mid_response_does_not_return_the_connection() {
    let (up, accepted) = scripted_upstream().await;
    let p = pool_proxy(up, "off").await;
    let mut a = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    a.write_all(b"GET http://app.test/stream HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .await
        .unwrap();
    let mut b = [0u8; 1024];
    assert!(a.read(&mut b).await.unwrap() > 0);
    drop(a);
    settle().await;
    assert_eq!(p.proxy.idle_upstream_connections(), 0);
    assert_eq!(get(&p, "http://app.test/a").await, (200, "ok".into()));
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}
