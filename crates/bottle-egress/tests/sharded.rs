//! The proxy on threads of its own (`serve_sharded`), as the sidecar and
//! `claude-bottle proxy` run it: every check still applies, tunnels work,
//! the bound on connections is one for all threads, and a stop ends them
//! all.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use support::*;
use tokio::io::AsyncWriteExt;

/// [`send`] once the client connection is ready for another request:
/// on a runtime of several threads its task may not have taken the last
/// response's end yet.
async fn sent(
    c: &mut hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>,
    r: http::Request<http_body_util::Full<bytes::Bytes>>,
) -> (u16, http::HeaderMap, String) {
    c.ready().await.unwrap();
    send(c, r).await
}

/// A proxy that routes `app.test` to `up`, with `settings` (DLP).
fn app_test<'a>(up: std::net::SocketAddr, settings: &str) -> Setup<'a> {
    Setup::new(format!(
        "{settings}\nallow: [{{host: app.test}}]\nresolve: {{app.test: '{up}'}}"
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_clients_over_two_threads_all_checked() {
    let (up, rec) = http_upstream().await;
    let p = app_test(up, "dlp: block\nknown_secret_env: [S]")
        .secrets(&[("S", SECRET)])
        .sharded(2)
        .start()
        .await;
    let addr = p.addr;
    let clients: Vec<_> = (0..16)
        .map(|i| {
            tokio::spawn(async move {
                let mut c = client(addr).await;
                for j in 0..10 {
                    let uri = format!("http://app.test/c{i}/r{j}");
                    let (s, _, _) =
                        sent(&mut c, req("GET", &uri, &[("host", "app.test")], "")).await;
                    assert_eq!(s, 200, "{uri}");
                }
            })
        })
        .collect();
    for c in clients {
        c.await.unwrap();
    }
    assert_eq!(rec.count(), 160);
    let mut c = client(addr).await;
    let uri = format!("http://app.test/?k={SECRET}");
    let (s, h, _) = sent(&mut c, req("GET", &uri, &[("host", "app.test")], "")).await;
    assert_eq!(
        (s, h["x-claude-bottle-block"].to_str().unwrap()),
        (403, "dlp")
    );
    // A refusal closes its connection.
    let mut c = client(addr).await;
    let (s, h, _) = sent(
        &mut c,
        req("GET", "http://other.test/", &[("host", "other.test")], ""),
    )
    .await;
    assert_eq!(
        (s, h["x-claude-bottle-block"].to_str().unwrap()),
        (403, "no-route")
    );
    assert_eq!(rec.count(), 160);
    p.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intercepted_tunnels_over_two_threads() {
    let ca = TestCa::new("test upstream CA");
    let (up, rec) = https_upstream(&ca, &["api.test"]).await;
    let port = up.port();
    let p = Setup::new(format!(
        "dlp: off\nallow: [{{host: api.test, paths: ['/v1/'], ports: [{port}]}}]\nresolve: {{api.test: '{up}'}}"
    ))
    .upstream_ca(&ca)
    .sharded(2)
    .start()
    .await;
    let host = format!("api.test:{port}");
    for i in 0..8 {
        let (s, _, stream) = connect(p.addr, &host).await;
        assert_eq!(s, 200);
        let mut c = tls_client(stream.unwrap(), p.proxy.ca_pem(), "api.test").await;
        for j in 0..3 {
            let path = format!("/v1/t{i}/{j}");
            let (s, _, body) = sent(&mut c, req("GET", &path, &[("host", &host)], "")).await;
            assert_eq!((s, body), (200, format!("hello {path}")));
        }
        let (s, h, _) = sent(&mut c, req("GET", "/admin", &[("host", &host)], "")).await;
        assert_eq!(
            (s, h["x-claude-bottle-block"].to_str().unwrap()),
            (403, "path")
        );
    }
    assert_eq!(rec.count(), 24);
    p.shut_down().await;
}

/// `max_connections` bounds the proxy, not each thread: with a bound of
/// one, a second client waits for the first even though another thread
/// is idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_bound_is_shared_by_the_threads() {
    let (up, _rec) = http_upstream().await;
    let p = app_test(up, "dlp: off")
        .tweak(|c| c.limits.max_connections = 1)
        .sharded(2)
        .start()
        .await;
    let get = b"GET http://app.test/x HTTP/1.1\r\nHost: app.test\r\n\r\n";
    let mut first = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    first.write_all(get).await.unwrap();
    assert_eq!(read_response(&mut first).await.0, 200);

    let mut second = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    second.write_all(get).await.unwrap();
    let waited = tokio::time::timeout(Duration::from_millis(500), read_response(&mut second)).await;
    assert!(
        waited.is_err(),
        "the second client was served beside the first"
    );
    drop(first);
    let answered = tokio::time::timeout(Duration::from_secs(5), read_response(&mut second))
        .await
        .expect("served once the first left");
    assert_eq!(answered.0, 200);
    p.shut_down().await;
}

/// A stop ends every thread: `serve_sharded` returns, and the listening
/// socket is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_ends_every_thread() {
    let (up, _rec) = http_upstream().await;
    let p = app_test(up, "dlp: off").sharded(3).start().await;
    let addr = p.addr;
    let mut c = client(addr).await;
    let (s, _, _) = sent(
        &mut c,
        req("GET", "http://app.test/", &[("host", "app.test")], ""),
    )
    .await;
    assert_eq!(s, 200);
    drop(c);
    p.shut_down().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

/// A passthrough tunnel's only record is its event, written when it
/// ends; one still open when the proxy stops ends with the stop (its
/// task is dropped with its thread's runtime), and its event must still
/// be written, with the bytes it carried: otherwise stopping the bottle
/// while a tunnel is open would erase what went through it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunnel_open_at_the_stop_is_still_logged() {
    let ca = TestCa::new("test upstream CA");
    let (up, rec) = https_upstream(&ca, &["pass.test"]).await;
    let port = up.port();
    let p = Setup::new(format!(
        "dlp: off\nallow: [{{host: pass.test, tls: passthrough, ports: [{port}]}}]\nresolve: {{pass.test: '{up}'}}"
    ))
    .sharded(2)
    .start()
    .await;
    let (s, _, stream) = connect(p.addr, &format!("pass.test:{port}")).await;
    assert_eq!(s, 200);
    let mut c = tls_client(stream.unwrap(), &ca.pem, "pass.test").await;
    let (s, _, body) = send(&mut c, req("GET", "/hello", &[("host", "pass.test")], "")).await;
    assert_eq!((s, body.as_str()), (200, "hello /hello"));
    assert_eq!(rec.count(), 1);
    let log = p.log.clone();
    let tunnel_events = || {
        log.events()
            .into_iter()
            .filter(|e| e["kind"] == "connect")
            .collect::<Vec<_>>()
    };
    assert_eq!(
        tunnel_events(),
        Vec::<serde_json::Value>::new(),
        "still open"
    );
    p.shut_down().await;
    let events = tunnel_events();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["decision"], "allow");
    assert_eq!(events[0]["host"], "pass.test");
    assert!(events[0]["bytes"].as_u64().unwrap() > 100, "{events:?}");
    drop(c);
}
