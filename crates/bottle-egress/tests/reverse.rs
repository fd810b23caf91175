//! The model-API reverse proxy: credential swap, headers and query kept,
//! bodies streamed both ways.

#![allow(clippy::unwrap_used)]

mod support;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use support::*;

async fn model_setup(kind: &str, host: &str, token: &'static str) -> (Running, Recorder) {
    let ca = TestCa::new("test upstream CA");
    let (up, rec) = https_upstream(&ca, &[host]).await;
    let secrets: &'static [(&'static str, &'static str)] =
        Box::leak(Box::new([("MODEL_TOKEN", token)]));
    let p = Setup::new(format!(
        "allow: []\ntokens: [{{kind: {kind}, token_ref: MODEL_TOKEN}}]\nresolve: {{{host}: '{up}'}}"
    ))
    .secrets(secrets)
    .upstream_ca(&ca)
    .start()
    .await;
    (p, rec)
}

#[tokio::test]
async fn anthropic_oauth_token_is_injected_as_bearer() {
    let token = "sk-ant-oat01-REALREALREAL";
    let (p, rec) = model_setup("anthropic", "api.anthropic.com", token).await;
    let mut c = client(p.addr).await;
    let r = req(
        "POST",
        "/anthropic/v1/messages?beta=true",
        &[
            ("host", "sidecar:3128"),
            ("authorization", "Bearer placeholder"),
            ("x-api-key", "placeholder"),
            ("anthropic-beta", "oauth-2025-04-20"),
            ("anthropic-version", "2023-06-01"),
            ("content-type", "application/json"),
        ],
        r#"{"model":"claude","messages":[]}"#,
    );
    let (s, _, body) = send(&mut c, r).await;
    assert_eq!((s, body.as_str()), (200, "hello /v1/messages"));
    let seen = &rec.all()[0];
    assert_eq!(seen.uri, "/v1/messages?beta=true");
    assert_eq!(seen.headers["host"], "api.anthropic.com");
    let auth: Vec<_> = seen.headers.get_all("authorization").iter().collect();
    assert_eq!(auth, vec![format!("Bearer {token}").as_str()]);
    assert!(seen.headers.get("x-api-key").is_none());
    assert_eq!(seen.headers["anthropic-beta"], "oauth-2025-04-20");
    assert_eq!(seen.headers["anthropic-version"], "2023-06-01");
    assert_eq!(seen.body, br#"{"model":"claude","messages":[]}"#);
    p.event(|e| {
        e["kind"] == "reverse" && e["decision"] == "allow" && e["host"] == "api.anthropic.com"
    })
    .await;
    p.events_without(&[token]);
}

#[tokio::test]
async fn anthropic_api_key_goes_in_x_api_key() {
    let token = "sk-ant-api03-KEYKEYKEY";
    let (p, rec) = model_setup("anthropic", "api.anthropic.com", token).await;
    let mut c = client(p.addr).await;
    let r = req(
        "GET",
        "/anthropic/v1/models",
        &[("authorization", "Bearer placeholder")],
        "",
    );
    assert_eq!(send(&mut c, r).await.0, 200);
    let seen = &rec.all()[0];
    assert_eq!(seen.headers["x-api-key"], token);
    assert!(seen.headers.get("authorization").is_none());
    p.events_without(&[token]);
}

/// A model API that quotes the key it got (an error message, a debug
/// endpoint) sends it back masked.
#[tokio::test]
async fn a_model_api_echoing_the_key_sends_it_back_masked() {
    let token = "sk-ant-api03-ECHOECHOECHO";
    let (p, _rec) = model_setup("anthropic", "api.anthropic.com", token).await;
    let mut c = client(p.addr).await;
    let r = req(
        "GET",
        "/anthropic/v1/models",
        &[("x-api-key", "placeholder"), ("x-test-echo", "1")],
        "",
    );
    let (s, h, body) = send(&mut c, r).await;
    assert_eq!(s, 200);
    let stars = "*".repeat(token.len());
    assert!(body.contains(&format!("x-api-key: {stars}\n")), "{body}");
    assert!(!body.contains(token), "{body}");
    assert_eq!(h["x-echo-api-key"], stars.as_str());
}

/// The real credential can do more than call the model: an OAuth token
/// can ask for a new API key, which the agent would read in the answer.
/// Only model endpoints are forwarded, however the path is spelt.
#[tokio::test]
async fn only_model_endpoints_are_forwarded_with_the_credential() {
    let (p, rec) = model_setup("anthropic", "api.anthropic.com", "sk-ant-oat01-MINTMINT").await;
    let mut c = client(p.addr).await;
    for (method, path, reason) in [
        (
            "POST",
            "/anthropic/api/oauth/claude_cli/create_api_key",
            "path",
        ),
        (
            "POST",
            "/anthropic/v1/messages/../../api/oauth/claude_cli/create_api_key",
            "path",
        ),
        (
            "POST",
            "/anthropic/v1/messages/%2e%2e/%2e%2e/api/oauth/claude_cli/create_api_key",
            "path",
        ),
        ("POST", "/anthropic/v1/organizations/o/api_keys", "path"),
        ("DELETE", "/anthropic/v1/models/x", "method"),
    ] {
        let (s, h, _) = send(&mut c, req(method, path, &[], "{}")).await;
        assert_eq!(
            (s, h["x-claude-bottle-block"].to_str().unwrap()),
            (403, reason),
            "{method} {path}"
        );
    }
    // Nor through the headers some frameworks take as the real path or method.
    for (name, value, reason) in [
        (
            "x-original-url",
            "/api/oauth/claude_cli/create_api_key",
            "path",
        ),
        (
            "x-rewrite-url",
            "/api/oauth/claude_cli/create_api_key",
            "path",
        ),
        ("x-http-method-override", "DELETE", "method"),
    ] {
        let r = req("POST", "/anthropic/v1/messages", &[(name, value)], "{}");
        let (s, h, _) = send(&mut c, r).await;
        assert_eq!(
            (s, h["x-claude-bottle-block"].to_str().unwrap()),
            (403, reason),
            "{name}: {value}"
        );
    }
    assert_eq!(rec.count(), 0, "nothing reached the API");
    let (s, _, _) = send(
        &mut c,
        req("POST", "/anthropic/v1/messages?beta=true", &[], "{}"),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(rec.count(), 1);
}

#[tokio::test]
async fn openai_is_bearer_and_missing_token_is_no_route() {
    let token = "sk-proj-OPENAIREAL";
    let (p, rec) = model_setup("openai", "api.openai.com", token).await;
    let mut c = client(p.addr).await;
    let r = req(
        "POST",
        "/openai/v1/chat/completions",
        &[("authorization", "Bearer placeholder")],
        "{}",
    );
    assert_eq!(send(&mut c, r).await.0, 200);
    let seen = &rec.all()[0];
    assert_eq!(seen.uri, "/v1/chat/completions");
    assert_eq!(
        seen.headers["authorization"],
        format!("Bearer {token}").as_str()
    );
    // No anthropic token configured: /anthropic is not a route.
    let (s, h, _) = send(&mut c, req("GET", "/anthropic/v1/models", &[], "")).await;
    assert_eq!(
        (s, h["x-claude-bottle-block"].to_str().unwrap()),
        (403, "no-route")
    );
}

/// An SSE upstream that sends the second event only after the test says the
/// client has the first: a buffering proxy would deadlock (and time out).
#[tokio::test]
async fn server_sent_events_stream_through_without_buffering() {
    init();
    let ca = TestCa::new("test upstream CA");
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = l.local_addr().unwrap();
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    let go_rx = Arc::new(tokio::sync::Mutex::new(Some(go_rx)));
    let acceptor = tokio_rustls::TlsAcceptor::from(ca.server_config(&["api.anthropic.com"]));
    tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        let tls = acceptor.accept(s).await.unwrap();
        let svc = hyper::service::service_fn(move |_req| {
            let go_rx = go_rx.clone();
            async move {
                let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
                tokio::spawn(async move {
                    tx.send(Bytes::from_static(b"event: a\ndata: 1\n\n"))
                        .await
                        .unwrap();
                    let go = go_rx.lock().await.take().unwrap();
                    go.await.unwrap();
                    tx.send(Bytes::from_static(b"event: b\ndata: 2\n\n"))
                        .await
                        .unwrap();
                });
                let body = ChannelBody(rx);
                let mut r = http::Response::new(body);
                r.headers_mut()
                    .insert("content-type", "text/event-stream".parse().unwrap());
                Ok::<_, Infallible>(r)
            }
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(tls), svc)
            .await;
    });
    let p = Setup::new(format!(
        "allow: []\ntokens: [{{kind: anthropic, token_ref: T}}]\nresolve: {{api.anthropic.com: '{up}'}}"
    ))
    .secrets(&[("T", "sk-ant-oat01-x")])
    .upstream_ca(&ca)
    .start()
    .await;
    let mut c = client(p.addr).await;
    let resp = c
        .send_request(req("POST", "/anthropic/v1/messages", &[], "{}"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let first = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .expect("first event must arrive before the upstream sends the second")
        .unwrap()
        .unwrap();
    assert_eq!(
        first.into_data().unwrap(),
        Bytes::from_static(b"event: a\ndata: 1\n\n")
    );
    go_tx.send(()).unwrap();
    let rest = tokio::time::timeout(Duration::from_secs(5), body.collect())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        rest.to_bytes(),
        Bytes::from_static(b"event: b\ndata: 2\n\n")
    );
}

/// A response body fed by a channel, one frame per message.
struct ChannelBody(tokio::sync::mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

/// A proxy with the Anthropic token and a forward route to the same API
/// host, both going to one recording HTTPS upstream.
async fn model_and_forward_setup() -> (Running, Recorder) {
    let ca = TestCa::new("test upstream CA");
    let (up, rec) = https_upstream(&ca, &["api.anthropic.com"]).await;
    let p = Setup::new(format!(
        "dlp: block\nallow: [{{host: api.anthropic.com}}]\n\
         tokens: [{{kind: anthropic, token_ref: T}}]\nresolve: {{api.anthropic.com: '{up}'}}"
    ))
    .secrets(&[("T", "sk-ant-oat01-REALREALREAL")])
    .upstream_ca(&ca)
    .start()
    .await;
    (p, rec)
}

/// The agent's own request to the API host leaves its connection in the
/// pool; a body the server did not read (CL.0) would then prefix the next
/// request on it. A model call, with the real token, must never be that
/// next request.
#[tokio::test]
async fn a_model_call_never_reuses_a_connection_of_the_agents_own_requests() {
    let (p, rec) = model_and_forward_setup().await;
    let (_, _, stream) = connect(p.addr, "api.anthropic.com:443").await;
    let mut c = tls_client(stream.unwrap(), p.proxy.ca_pem(), "api.anthropic.com").await;
    let r = req(
        "POST",
        "/some/endpoint",
        &[("host", "api.anthropic.com")],
        "POST /api/oauth/claude_cli/create_api_key HTTP/1.1\r\nX-Pad: ",
    );
    assert_eq!(send(&mut c, r).await.0, 200);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut m = client(p.addr).await;
    let (s, _, _) = send(&mut m, req("POST", "/anthropic/v1/messages", &[], "{}")).await;
    assert_eq!(s, 200);
    let seen = rec.all();
    assert_eq!(seen.len(), 2);
    assert!(seen[0].headers.get("authorization").is_none());
    assert!(seen[1].headers.get("authorization").is_some());
    assert_ne!(
        seen[0].conn, seen[1].conn,
        "the model call reused the agent's connection"
    );
}

/// With a credential injected, only the model calls that read their bodies
/// keep a pooled connection; a body to any other endpoint asks for its
/// connection to close, so nothing can follow it.
#[tokio::test]
async fn a_credentialed_body_to_another_endpoint_gets_a_connection_of_its_own() {
    let (p, rec) = model_and_forward_setup().await;
    let mut m = client(p.addr).await;
    for path in [
        "/anthropic/v1/messages",
        "/anthropic/v1/messages/batches/b1/cancel",
        "/anthropic/v1/messages?beta=true",
    ] {
        let (s, _, _) = send(&mut m, req("POST", path, &[], "{}")).await;
        assert_eq!(s, 200, "{path}");
    }
    let seen = rec.all();
    let close: Vec<_> = seen
        .iter()
        .map(|s| {
            s.headers
                .get("connection")
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"))
        })
        .collect();
    assert_eq!(close, [false, true, false], "{seen:?}");
    assert_eq!(seen[0].conn, 0);
    assert_eq!(seen[2].conn, 1, "a closed connection was reused");
}

/// A model call the API refuses (too large, rate-limited) may have been
/// answered before its body was read: its connection is not reused.
#[tokio::test]
async fn a_refused_model_call_does_not_keep_its_connection() {
    let (p, rec) = model_and_forward_setup().await;
    let mut m = client(p.addr).await;
    for status in ["429", "200", "200"] {
        let r = req(
            "POST",
            "/anthropic/v1/messages",
            &[("x-test-status", status)],
            "{}",
        );
        assert_eq!(send(&mut m, r).await.0.to_string(), status);
    }
    let conns: Vec<_> = rec.all().iter().map(|s| s.conn).collect();
    assert_eq!(conns, [0, 1, 1], "the refused call's connection was reused");
}
