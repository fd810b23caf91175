//! CONNECT tunnels: passthrough, interception, host checks inside, and
//! credential injection on intercepted routes.

#![allow(clippy::unwrap_used)]

mod support;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn connect_without_route_is_refused_by_the_connect_answer() {
    let p = Setup::new("allow: [{host: ok.test}]").start().await;
    let (s, text, stream) = connect(p.addr, "evil.test:443").await;
    assert_eq!(s, 403);
    assert!(stream.is_none());
    assert!(
        text.to_ascii_lowercase()
            .contains("x-claude-bottle-block: no-route"),
        "{text}"
    );
    assert!(text.contains(r#""blocked":true"#));
    let (s, text, _) = connect(p.addr, "ok.test:22").await;
    assert_eq!(s, 403);
    assert!(text.contains("port"), "{text}");
    assert_eq!(p.net.connect_count(), 0);
}

#[tokio::test]
async fn passthrough_tunnels_without_decrypting() {
    let ca = TestCa::new("test upstream CA");
    let (up, rec) = https_upstream(&ca, &["pass.test"]).await;
    let p = Setup::new(format!(
        "dlp: off\nallow: [{{host: pass.test, tls: passthrough, ports: [{}]}}]\nresolve: {{pass.test: '{up}'}}",
        up.port()
    ))
    .start()
    .await;
    let (s, _, stream) = connect(p.addr, &format!("pass.test:{}", up.port())).await;
    assert_eq!(s, 200);
    // The client sees the upstream's own certificate: it trusts only the test CA.
    let mut c = tls_client(stream.unwrap(), &ca.pem, "pass.test").await;
    let (s, _, body) = send(&mut c, req("GET", "/hello", &[("host", "pass.test")], "")).await;
    assert_eq!((s, body.as_str()), (200, "hello /hello"));
    assert_eq!(rec.count(), 1);
}

async fn intercept_setup(
    extra: &str,
    secrets: &'static [(&'static str, &'static str)],
) -> (Running, Recorder, u16, TestCa) {
    let ca = TestCa::new("test upstream CA");
    let (up, rec) = https_upstream(&ca, &["api.test"]).await;
    let port = up.port();
    let p = Setup::new(format!(
        "allow: [{{host: api.test, methods: [GET, POST], paths: ['/v1/'], ports: [{port}]}}]\nresolve: {{api.test: '{up}'}}\n{extra}"
    ))
    .secrets(secrets)
    .upstream_ca(&ca)
    .start()
    .await;
    (p, rec, port, ca)
}

#[tokio::test]
async fn intercepted_requests_follow_route_rules_inside_the_tunnel() {
    let (p, rec, port, _ca) = intercept_setup("dlp: off", &[]).await;
    let (s, _, stream) = connect(p.addr, &format!("api.test:{port}")).await;
    assert_eq!(s, 200);
    // The client trusts only the proxy's CA: the leaf was minted for api.test.
    let mut c = tls_client(stream.unwrap(), p.proxy.ca_pem(), "api.test").await;
    let host = format!("api.test:{port}");
    let (s, _, body) = send(&mut c, req("GET", "/v1/models?x=1", &[("host", &host)], "")).await;
    assert_eq!((s, body.as_str()), (200, "hello /v1/models"));
    let (s, h, _) = send(&mut c, req("DELETE", "/v1/models", &[("host", &host)], "")).await;
    assert_eq!(
        (s, h["x-claude-bottle-block"].to_str().unwrap()),
        (403, "method")
    );
    let (s, h, _) = send(&mut c, req("GET", "/v1/../admin", &[("host", &host)], "")).await;
    assert_eq!(
        (s, h["x-claude-bottle-block"].to_str().unwrap()),
        (403, "path")
    );
    // A method named in the query for the frameworks that read it there.
    let (s, h, _) = send(
        &mut c,
        req("POST", "/v1/models?_method=DELETE", &[("host", &host)], ""),
    )
    .await;
    assert_eq!(
        (s, h["x-claude-bottle-block"].to_str().unwrap()),
        (403, "method")
    );
    assert_eq!(rec.count(), 1);
    assert_eq!(rec.all()[0].uri, "/v1/models?x=1");
}

#[tokio::test]
async fn host_header_or_sni_different_from_connect_is_host_mismatch() {
    let (p, rec, port, _ca) = intercept_setup("dlp: off", &[]).await;
    // A different Host inside the tunnel.
    let (_, _, stream) = connect(p.addr, &format!("api.test:{port}")).await;
    let mut c = tls_client(stream.unwrap(), p.proxy.ca_pem(), "api.test").await;
    let (s, h, _) = send(
        &mut c,
        req(
            "GET",
            "/v1/x",
            &[("host", &format!("evil.test:{port}"))],
            "",
        ),
    )
    .await;
    assert_eq!(
        (s, h["x-claude-bottle-block"].to_str().unwrap()),
        (403, "host-mismatch")
    );
    // A different SNI (the leaf is still api.test's, so accept it by name api.test
    // in the verifier but send SNI evil.test): use a client whose SNI differs.
    let (_, _, stream) = connect(p.addr, &format!("api.test:{port}")).await;
    let mut c = sni_mismatch_client(stream.unwrap(), p.proxy.ca_pem()).await;
    let (s, h, _) = send(
        &mut c,
        req("GET", "/v1/x", &[("host", &format!("api.test:{port}"))], ""),
    )
    .await;
    assert_eq!(
        (s, h["x-claude-bottle-block"].to_str().unwrap()),
        (403, "host-mismatch")
    );
    assert_eq!(rec.count(), 0);
}

/// Verifies the server's certificate as one for any of `self.0`, whatever
/// name the client sent as SNI.
#[derive(Debug)]
struct VerifyAs(
    &'static [&'static str],
    std::sync::Arc<rustls::client::WebPkiServerVerifier>,
);

impl VerifyAs {
    fn new(names: &'static [&'static str], ca_pem: &str) -> Self {
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let v = rustls::client::WebPkiServerVerifier::builder(std::sync::Arc::new(roots))
            .build()
            .unwrap();
        VerifyAs(names, v)
    }
}

impl rustls::client::danger::ServerCertVerifier for VerifyAs {
    fn verify_server_cert(
        &self,
        e: &rustls_pki_types::CertificateDer<'_>,
        i: &[rustls_pki_types::CertificateDer<'_>],
        _n: &rustls_pki_types::ServerName<'_>,
        o: &[u8],
        t: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let mut last = Err(rustls::Error::General("no name".into()));
        for n in self.0 {
            let name = rustls_pki_types::ServerName::try_from(*n).unwrap();
            last = self.1.verify_server_cert(e, i, &name, o, t);
            if last.is_ok() {
                break;
            }
        }
        last
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &rustls_pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.1.verify_tls12_signature(m, c, d)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &rustls_pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.1.verify_tls13_signature(m, c, d)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.1.supported_verify_schemes()
    }
}

/// TLS with SNI `evil.test` that accepts the proxy's `api.test` leaf.
async fn sni_mismatch_client(
    stream: tokio::net::TcpStream,
    ca_pem: &str,
) -> hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>> {
    let cfg = rustls::ClientConfig::builder()
        .dangerous()
        .with_custom_certificate_verifier(std::sync::Arc::new(VerifyAs::new(&["api.test"], ca_pem)))
        .with_no_client_auth();
    handshake(stream, std::sync::Arc::new(cfg), "evil.test")
        .await
        .1
}

/// TLS over a tunnel with `cfg` and SNI `sni`: how the handshake went, and an
/// HTTP/1.1 client on the connection.
async fn handshake(
    stream: tokio::net::TcpStream,
    cfg: std::sync::Arc<rustls::ClientConfig>,
    sni: &str,
) -> (
    Option<rustls::HandshakeKind>,
    hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>,
) {
    let name = rustls_pki_types::ServerName::try_from(sni.to_string()).unwrap();
    let tls = tokio_rustls::TlsConnector::from(cfg)
        .connect(name, stream)
        .await
        .unwrap();
    let kind = tls.get_ref().1.handshake_kind();
    let (send, c) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(c);
    (kind, send)
}

/// A client session store (shared by every connection of a test) that
/// counts the TLS 1.3 tickets and the TLS 1.2 sessions it hands out to
/// resume with.
#[derive(Debug)]
struct CountingStore {
    inner: rustls::client::ClientSessionMemoryCache,
    offered: std::sync::atomic::AtomicUsize,
    offered_tls12: std::sync::atomic::AtomicUsize,
}

impl CountingStore {
    fn new() -> std::sync::Arc<Self> {
        std::sync::Arc::new(CountingStore {
            inner: rustls::client::ClientSessionMemoryCache::new(16),
            offered: std::sync::atomic::AtomicUsize::new(0),
            offered_tls12: std::sync::atomic::AtomicUsize::new(0),
        })
    }
    fn offered(&self) -> usize {
        self.offered.load(std::sync::atomic::Ordering::SeqCst)
    }
    fn offered_tls12(&self) -> usize {
        self.offered_tls12.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl rustls::client::ClientSessionStore for CountingStore {
    fn set_kx_hint(&self, n: rustls_pki_types::ServerName<'static>, g: rustls::NamedGroup) {
        self.inner.set_kx_hint(n, g)
    }
    fn kx_hint(&self, n: &rustls_pki_types::ServerName<'_>) -> Option<rustls::NamedGroup> {
        self.inner.kx_hint(n)
    }
    fn set_tls12_session(
        &self,
        n: rustls_pki_types::ServerName<'static>,
        v: rustls::client::Tls12ClientSessionValue,
    ) {
        self.inner.set_tls12_session(n, v)
    }
    fn tls12_session(
        &self,
        n: &rustls_pki_types::ServerName<'_>,
    ) -> Option<rustls::client::Tls12ClientSessionValue> {
        let v = self.inner.tls12_session(n);
        if v.is_some() {
            self.offered_tls12
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        v
    }
    fn remove_tls12_session(&self, n: &rustls_pki_types::ServerName<'static>) {
        self.inner.remove_tls12_session(n)
    }
    fn insert_tls13_ticket(
        &self,
        n: rustls_pki_types::ServerName<'static>,
        v: rustls::client::Tls13ClientSessionValue,
    ) {
        self.inner.insert_tls13_ticket(n, v)
    }
    fn take_tls13_ticket(
        &self,
        n: &rustls_pki_types::ServerName<'static>,
    ) -> Option<rustls::client::Tls13ClientSessionValue> {
        let t = self.inner.take_tls13_ticket(n);
        if t.is_some() {
            self.offered
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        t
    }
}

/// A proxy intercepting two hosts, `a.test` and `b.test`, served by one
/// upstream.
async fn two_host_setup() -> (Running, Recorder, u16, TestCa) {
    let ca = TestCa::new("test upstream CA");
    let (up, rec) = https_upstream(&ca, &["a.test", "b.test"]).await;
    let port = up.port();
    let p = Setup::new(format!(
        "dlp: off\nallow: [{{host: a.test, ports: [{port}], tls: intercept}}, {{host: b.test, ports: [{port}], tls: intercept}}]\nresolve: {{a.test: '{up}', b.test: '{up}'}}"
    ))
    .upstream_ca(&ca)
    .start()
    .await;
    (p, rec, port, ca)
}

/// A client config that trusts the proxy's CA, takes its leaf for a.test or
/// b.test whatever the SNI, and keeps its sessions in `store`. One config
/// (one verifier) for every connection: rustls clients only offer a session
/// to a config with the verifier that accepted it.
fn resuming_client(
    ca_pem: &str,
    store: &std::sync::Arc<CountingStore>,
) -> std::sync::Arc<rustls::ClientConfig> {
    let verifier = VerifyAs::new(&["a.test", "b.test"], ca_pem);
    let mut cfg = rustls::ClientConfig::builder()
        .dangerous()
        .with_custom_certificate_verifier(std::sync::Arc::new(verifier))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    cfg.resumption = rustls::client::Resumption::store(store.clone());
    std::sync::Arc::new(cfg)
}

#[tokio::test]
async fn a_second_tunnel_to_the_same_host_resumes_the_tls_session() {
    let (p, rec, port, _ca) = two_host_setup().await;
    let store = CountingStore::new();
    let cfg = resuming_client(p.proxy.ca_pem(), &store);
    let host = format!("a.test:{port}");
    for (i, want) in [rustls::HandshakeKind::Full, rustls::HandshakeKind::Resumed]
        .into_iter()
        .enumerate()
    {
        let (s, _, stream) = connect(p.addr, &host).await;
        assert_eq!(s, 200);
        let (kind, mut c) = handshake(stream.unwrap(), cfg.clone(), "a.test").await;
        assert_eq!(kind, Some(want), "connection {}", i + 1);
        // Reading the answer also takes in the server's session tickets; and
        // a resumed session is still held to the CONNECT host.
        let (s, _, body) = send(&mut c, req("GET", "/v1/x", &[("host", &host)], "")).await;
        assert_eq!(
            (s, body.as_str()),
            (200, "hello /v1/x"),
            "connection {}",
            i + 1
        );
    }
    assert_eq!(store.offered(), 1);
    assert_eq!(rec.count(), 2);
}

#[tokio::test]
async fn a_session_from_one_host_is_not_resumed_on_another() {
    let (p, rec, port, _ca) = two_host_setup().await;
    let store = CountingStore::new();
    let cfg = resuming_client(p.proxy.ca_pem(), &store);
    let a = format!("a.test:{port}");
    let (_, _, stream) = connect(p.addr, &a).await;
    let (kind, mut c) = handshake(stream.unwrap(), cfg.clone(), "a.test").await;
    assert_eq!(kind, Some(rustls::HandshakeKind::Full));
    let (s, _, _) = send(&mut c, req("GET", "/v1/x", &[("host", &a)], "")).await;
    assert_eq!(s, 200);
    // Control: this client does resume on a.test (and reading the answer
    // takes in fresh a.test tickets).
    let (_, _, stream) = connect(p.addr, &a).await;
    let (kind, mut c) = handshake(stream.unwrap(), cfg.clone(), "a.test").await;
    assert_eq!(kind, Some(rustls::HandshakeKind::Resumed));
    let (s, _, _) = send(&mut c, req("GET", "/v1/x", &[("host", &a)], "")).await;
    assert_eq!(s, 200);
    // Into a tunnel to b.test, the client offers its a.test session (SNI
    // a.test, same config and store): b.test's config must not know it, so
    // the handshake is full and the client gets b.test's leaf.
    let (s, _, stream) = connect(p.addr, &format!("b.test:{port}")).await;
    assert_eq!(s, 200);
    let (kind, mut c) = handshake(stream.unwrap(), cfg, "a.test").await;
    assert_eq!(store.offered(), 2, "an a.test ticket was offered to b.test");
    assert_eq!(kind, Some(rustls::HandshakeKind::Full));
    // The SNI is still refused inside, as for any other mismatch.
    let b = format!("b.test:{port}");
    let (s, h, _) = send(&mut c, req("GET", "/v1/x", &[("host", &b)], "")).await;
    assert_eq!(
        (s, h["x-claude-bottle-block"].to_str().unwrap()),
        (403, "host-mismatch")
    );
    assert_eq!(rec.count(), 2);
}

/// As [`resuming_client`], but TLS 1.2 only and resuming by session ID
/// (no tickets): the server keeps these sessions itself.
fn tls12_session_id_client(
    ca_pem: &str,
    store: &std::sync::Arc<CountingStore>,
) -> std::sync::Arc<rustls::ClientConfig> {
    let verifier = VerifyAs::new(&["a.test", "b.test"], ca_pem);
    let mut cfg = rustls::ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS12])
        .dangerous()
        .with_custom_certificate_verifier(std::sync::Arc::new(verifier))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    cfg.resumption = rustls::client::Resumption::store(store.clone())
        .tls12_resumption(rustls::client::Tls12Resumption::SessionIdOnly);
    std::sync::Arc::new(cfg)
}

#[tokio::test]
async fn a_tls12_session_id_from_one_host_is_not_resumed_on_another() {
    let (p, rec, port, _ca) = two_host_setup().await;
    let store = CountingStore::new();
    let cfg = tls12_session_id_client(p.proxy.ca_pem(), &store);
    let a = format!("a.test:{port}");
    // Control: by session ID, a.test's session resumes on a.test.
    for want in [rustls::HandshakeKind::Full, rustls::HandshakeKind::Resumed] {
        let (_, _, stream) = connect(p.addr, &a).await;
        let (kind, mut c) = handshake(stream.unwrap(), cfg.clone(), "a.test").await;
        assert_eq!(kind, Some(want));
        let (s, _, _) = send(&mut c, req("GET", "/v1/x", &[("host", &a)], "")).await;
        assert_eq!(s, 200);
    }
    assert_eq!(store.offered_tls12(), 1);
    // The attack: the same session ID offered inside a tunnel to b.test.
    // b.test's session cache must not hold it: a full handshake.
    let (s, _, stream) = connect(p.addr, &format!("b.test:{port}")).await;
    assert_eq!(s, 200);
    let (kind, _c) = handshake(stream.unwrap(), cfg, "a.test").await;
    assert_eq!(
        store.offered_tls12(),
        2,
        "a.test's session was offered to b.test"
    );
    assert_eq!(kind, Some(rustls::HandshakeKind::Full));
    assert_eq!(rec.count(), 2);
}

#[tokio::test]
async fn upstream_tls_is_verified() {
    // The upstream's CA is NOT given as upstream_ca: the proxy must refuse it.
    let ca = TestCa::new("test upstream CA");
    let (up, rec) = https_upstream(&ca, &["api.test"]).await;
    let port = up.port();
    let p = Setup::new(format!(
        "dlp: off\nallow: [{{host: api.test, ports: [{port}], tls: intercept}}]\nresolve: {{api.test: '{up}'}}"
    ))
    .start()
    .await;
    let (_, _, stream) = connect(p.addr, &format!("api.test:{port}")).await;
    let mut c = tls_client(stream.unwrap(), p.proxy.ca_pem(), "api.test").await;
    let (s, h, _) = send(
        &mut c,
        req("GET", "/", &[("host", &format!("api.test:{port}"))], ""),
    )
    .await;
    assert_eq!(
        (s, h["x-claude-bottle-block"].to_str().unwrap()),
        (502, "upstream-error")
    );
    assert_eq!(rec.count(), 0);
}

#[tokio::test]
async fn http_token_replaces_the_agents_authorization() {
    let (p, rec, port, _ca) = intercept_setup(
        "dlp: block\ntokens: [{kind: http, host: api.test, scheme: Bearer, token_ref: GH}]",
        &[("GH", "ghp_realtoken123456")],
    )
    .await;
    let (_, _, stream) = connect(p.addr, &format!("api.test:{port}")).await;
    let mut c = tls_client(stream.unwrap(), p.proxy.ca_pem(), "api.test").await;
    let host = format!("api.test:{port}");
    let (s, _, _) = send(
        &mut c,
        req(
            "GET",
            "/v1/repos",
            &[
                ("host", &host),
                ("authorization", "Bearer agent-placeholder"),
            ],
            "",
        ),
    )
    .await;
    assert_eq!(s, 200);
    let seen = rec.all();
    let auth: Vec<_> = seen[0].headers.get_all("authorization").iter().collect();
    assert_eq!(auth, vec!["Bearer ghp_realtoken123456"]);
    p.events_without(&["ghp_realtoken123456"]);
}

/// A proxy with one route (`route_host`, with `rules` before its ports)
/// and a Bearer token for `api.test`, whose HTTPS upstream records what it
/// gets; the CONNECT authority to use.
async fn token_proxy(route_host: &str, rules: &str) -> (Running, Recorder, String) {
    let ca = TestCa::new("test upstream CA");
    let (up, rec) = https_upstream(&ca, &["api.test"]).await;
    let port = up.port();
    let p = Setup::new(format!(
        "allow: [{{host: {route_host}, {rules}ports: [{port}]}}]\nresolve: {{api.test: '{up}'}}\n\
         dlp: block\ntokens: [{{kind: http, host: api.test, scheme: Bearer, token_ref: GH}}]"
    ))
    .secrets(&[("GH", "ghp_realtoken123456")])
    .upstream_ca(&ca)
    .start()
    .await;
    (p, rec, format!("api.test:{port}"))
}

/// On a route without rules the agent may send any request with the
/// token, but a body the server did not read (CL.0) would take the next
/// request's head, credential included, into a request of its own (a body
/// the server stores, for the agent to publish): a body with a credential
/// never shares its connection.
#[tokio::test]
async fn a_body_with_an_injected_token_gets_a_connection_of_its_own() {
    let (p, rec, host) = token_proxy("api.test", "").await;
    let (_, _, stream) = connect(p.addr, &host).await;
    let mut c = tls_client(stream.unwrap(), p.proxy.ca_pem(), "api.test").await;
    for (method, body) in [("PUT", "x"), ("GET", ""), ("GET", "")] {
        let r = req(method, "/user/starred/a/b", &[("host", &host)], body);
        assert_eq!(send(&mut c, r).await.0, 200);
    }
    let seen = rec.all();
    assert_eq!(seen[0].headers["connection"], "close");
    assert_eq!(
        seen.iter().map(|s| s.conn).collect::<Vec<_>>(),
        [0, 1, 1],
        "the connection that carried the body was reused"
    );
}

/// An upstream that sends the request's fields back (a debug endpoint,
/// an error quoting the header): the agent gets `*` where the credential
/// was, in the body and in response fields, of the same length.
#[tokio::test]
async fn an_echo_of_the_injected_token_reaches_the_agent_masked() {
    let (p, rec, host) = token_proxy("api.test", "").await;
    let (_, _, stream) = connect(p.addr, &host).await;
    let mut c = tls_client(stream.unwrap(), p.proxy.ca_pem(), "api.test").await;
    let (s, h, body) = send(
        &mut c,
        req(
            "GET",
            "/",
            &[
                ("host", &host),
                ("accept-encoding", "gzip, br"),
                ("accept-charset", "utf-16"),
                ("x-test-echo", "1"),
            ],
            "",
        ),
    )
    .await;
    assert_eq!(s, 200);
    let seen = rec.all();
    assert_eq!(
        seen[0].headers["authorization"], "Bearer ghp_realtoken123456",
        "the upstream got the real token"
    );
    assert_eq!(seen[0].headers["accept-encoding"], "identity");
    // A charset the agent picks could carry the echo in a form not masked.
    assert!(seen[0].headers.get("accept-charset").is_none());
    let stars = "*".repeat("ghp_realtoken123456".len());
    assert!(
        body.contains(&format!("authorization: Bearer {stars}\n")),
        "{body}"
    );
    assert!(!body.contains("ghp_realtoken123456"), "{body}");
    assert_eq!(
        h["x-echo-authorization"],
        format!("Bearer {stars}").as_str()
    );

    // A server that compresses anyway could hide an echo: refused.
    let (s, h, body) = send(
        &mut c,
        req("GET", "/", &[("host", &host), ("x-test-gzip", "1")], ""),
    )
    .await;
    assert_eq!(
        (s, h["x-claude-bottle-block"].to_str().unwrap()),
        (502, "upstream-error"),
        "{body}"
    );
    assert!(body.contains("compressed-response"), "{body}");

    // A status line quoting the credential: the standard reason instead.
    let (_, _, stream) = connect(p.addr, &host).await;
    let mut raw = tls_stream(stream.unwrap(), p.proxy.ca_pem(), "api.test").await;
    raw.write_all(
        format!("GET / HTTP/1.1\r\nhost: {host}\r\nx-test-reason: 1\r\nconnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut got = Vec::new();
    let _ = raw.read_to_end(&mut got).await;
    let got = String::from_utf8_lossy(&got);
    assert!(got.starts_with("HTTP/1.1 401 Unauthorized\r\n"), "{got}");
    assert!(!got.contains("ghp_realtoken123456"), "{got}");

    // A range request would cut an echo into slices that each look clean:
    // the range goes, and a partial answer is refused.
    let (s, _, body) = send(
        &mut c,
        req(
            "GET",
            "/",
            &[
                ("host", &host),
                ("x-test-echo", "1"),
                ("range", "bytes=0-9,10-19"),
                ("if-range", "x"),
            ],
            "",
        ),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let last = rec.all().pop().unwrap();
    assert!(last.headers.get("range").is_none());
    assert!(last.headers.get("if-range").is_none());
    let (s, h, body) = send(
        &mut c,
        req("GET", "/", &[("host", &host), ("x-test-partial", "1")], ""),
    )
    .await;
    assert_eq!(
        (s, h["x-claude-bottle-block"].to_str().unwrap()),
        (502, "upstream-error"),
        "{body}"
    );
    assert!(body.contains("partial-response"), "{body}");

    // A WebSocket's frames would not be masked: a request with the
    // credential is never upgraded, it goes as a plain request.
    let (s, _, _) = send(
        &mut c,
        req(
            "GET",
            "/",
            &[
                ("host", &host),
                ("connection", "upgrade"),
                ("upgrade", "websocket"),
                ("sec-websocket-version", "13"),
                ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ],
            "",
        ),
    )
    .await;
    assert_eq!(s, 200);
    let last = rec.all().pop().unwrap();
    assert!(last.headers.get("upgrade").is_none());
    assert_eq!(last.headers["authorization"], "Bearer ghp_realtoken123456");
}

/// `Basic` sends `base64(user:password)`: the encoded value and the
/// password alone are masked too.
#[tokio::test]
async fn an_echo_of_an_injected_basic_credential_reaches_the_agent_masked() {
    let ca = TestCa::new("test upstream CA");
    let (up, rec) = https_upstream(&ca, &["api.test"]).await;
    let port = up.port();
    let p = Setup::new(format!(
        "allow: [{{host: api.test, ports: [{port}]}}]\nresolve: {{api.test: '{up}'}}\n\
         tokens: [{{kind: http, host: api.test, scheme: Basic, token_ref: GH}}]"
    ))
    .secrets(&[("GH", "x-access-token:ghp_basicsecret12345")])
    .upstream_ca(&ca)
    .start()
    .await;
    let host = format!("api.test:{port}");
    let (_, _, stream) = connect(p.addr, &host).await;
    let mut c = tls_client(stream.unwrap(), p.proxy.ca_pem(), "api.test").await;
    let (s, h, body) = send(
        &mut c,
        req("GET", "/", &[("host", &host), ("x-test-echo", "1")], ""),
    )
    .await;
    assert_eq!(s, 200);
    let sent = rec.all()[0].headers["authorization"]
        .to_str()
        .unwrap()
        .to_string();
    let encoded = sent.strip_prefix("Basic ").unwrap();
    assert!(!body.contains(encoded), "{body}");
    assert!(body.contains(&format!(
        "authorization: Basic {}\n",
        "*".repeat(encoded.len())
    )));
    assert!(
        !h["x-echo-authorization"]
            .to_str()
            .unwrap()
            .contains(encoded)
    );
}

/// TRACE makes a server echo the request it got, injected credential
/// included, and responses are not scanned: with a token it never leaves.
#[tokio::test]
async fn a_trace_never_carries_the_injected_token() {
    // A route with no method rules: only the token makes TRACE unsafe.
    let (p, rec, host) = token_proxy("api.test", "").await;
    for method in ["TRACE", "trace", "TRACK"] {
        let (_, _, stream) = connect(p.addr, &host).await;
        let mut c = tls_client(stream.unwrap(), p.proxy.ca_pem(), "api.test").await;
        let (s, h, _) = send(&mut c, req(method, "/", &[("host", &host)], "")).await;
        assert_eq!(
            (s, h["x-claude-bottle-block"].to_str().unwrap()),
            (403, "method"),
            "{method}"
        );
    }
    // Nor as a method-override header's value on another method (also
    // spelt with `_`, as Rack and CGI read it), nor as `_method` in the
    // query.
    for (path, name, value) in [
        ("/", "x-http-method-override", "TRACE"),
        ("/", "x-http-method", " track"),
        ("/", "x-method-override", "Trace"),
        ("/", "x_http_method_override", "TRACE"),
        ("/?_method=TRACE", "x-other", "1"),
        ("/?a=1&_Method=tr%61ce", "x-other", "1"),
    ] {
        let (_, _, stream) = connect(p.addr, &host).await;
        let mut c = tls_client(stream.unwrap(), p.proxy.ca_pem(), "api.test").await;
        let (s, h, _) = send(
            &mut c,
            req("POST", path, &[("host", &host), (name, value)], ""),
        )
        .await;
        assert_eq!(
            (s, h["x-claude-bottle-block"].to_str().unwrap()),
            (403, "method"),
            "{path} {name}: {value}"
        );
    }
    assert_eq!(rec.count(), 0, "no TRACE reached the upstream");
}

/// A token's host under a `GET`-only wildcard route: the route the token
/// implies keeps the wildcard's methods, so the agent cannot write with
/// the real token where the bottle only allows reading.
#[tokio::test]
async fn a_token_under_a_read_only_wildcard_route_cannot_write() {
    let (p, rec, host) = token_proxy("'*.test'", "methods: [GET], ").await;
    let (s, _, stream) = connect(p.addr, &host).await;
    assert_eq!(s, 200);
    let mut c = tls_client(stream.unwrap(), p.proxy.ca_pem(), "api.test").await;
    let (s, _, _) = send(&mut c, req("GET", "/repos/x", &[("host", &host)], "")).await;
    assert_eq!(s, 200);
    let (s, h, _) = send(&mut c, req("PATCH", "/repos/x", &[("host", &host)], "{}")).await;
    assert_eq!(
        (s, h["x-claude-bottle-block"].to_str().unwrap()),
        (403, "method")
    );
    assert_eq!(rec.count(), 1);
    assert_eq!(
        rec.all()[0]
            .headers
            .get("authorization")
            .map(|v| v.to_str().unwrap()),
        Some("Bearer ghp_realtoken123456"),
        "the read went with the token"
    );
}

#[tokio::test]
async fn secret_in_host_label_is_blocked_even_for_passthrough() {
    let p = Setup::new(
        "dlp: block\nallow: [{host: '*.exfil.test', tls: passthrough}]\nknown_secret_env: [S]",
    )
    .secrets(&[("S", "topsecretvalue42")])
    .start()
    .await;
    let (s, text, _) = connect(p.addr, "topsecretvalue42.exfil.test:443").await;
    assert_eq!(s, 403, "{text}");
    assert!(text.contains("dlp"));
    assert!(!text.contains("topsecretvalue42"), "{text}");
    p.events_without(&["topsecretvalue42"]);
    assert_eq!(p.net.connect_count(), 0);
    assert_eq!(p.net.resolves.load(std::sync::atomic::Ordering::SeqCst), 0);
}

/// A tunnel nobody uses any more gives its slot back: closed after the
/// idle bound, with an event that says why.
#[tokio::test]
async fn an_idle_passthrough_tunnel_is_closed() {
    use tokio::io::AsyncReadExt;
    let ca = TestCa::new("test upstream CA");
    let (up, _rec) = https_upstream(&ca, &["pass.test"]).await;
    let port = up.port();
    let p = Setup::new(format!(
        "dlp: off\nallow: [{{host: pass.test, tls: passthrough, ports: [{port}]}}]\nresolve: {{pass.test: '{up}'}}"
    ))
    .tweak(|c| c.limits.tunnel_idle = std::time::Duration::from_millis(300))
    .start()
    .await;
    let (s, _, stream) = connect(p.addr, &format!("pass.test:{port}")).await;
    assert_eq!(s, 200);
    let mut stream = stream.unwrap();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(std::time::Duration::from_secs(3), stream.read(&mut buf))
        .await
        .expect("the proxy closes an idle tunnel");
    assert_eq!(read.unwrap_or(0), 0);
    p.event_like(serde_json::json!({"kind": "connect", "reason": "timeout"}))
        .await;
}

#[tokio::test]
async fn open_tunnels_are_bounded() {
    let ca = TestCa::new("test upstream CA");
    let (up, _rec) = https_upstream(&ca, &["pass.test"]).await;
    let port = up.port();
    let p = Setup::new(format!(
        "dlp: off\nallow: [{{host: pass.test, tls: passthrough, ports: [{port}]}}]\nresolve: {{pass.test: '{up}'}}"
    ))
    .tweak(|c| c.limits.max_connections = 2)
    .start()
    .await;
    let (s1, _, t1) = connect(p.addr, &format!("pass.test:{port}")).await;
    let (s2, _, t2) = connect(p.addr, &format!("pass.test:{port}")).await;
    assert_eq!((s1, s2), (200, 200));
    let (s3, text, _) = connect(p.addr, &format!("pass.test:{port}")).await;
    assert_eq!(s3, 403, "{text}");
    assert!(
        text.to_ascii_lowercase()
            .contains("x-claude-bottle-block: too-large"),
        "{text}"
    );
    drop((t1, t2));
}

#[tokio::test]
async fn wildcard_routes_do_not_cover_their_apex() {
    let p = Setup::new("dlp: off\nallow: [{host: '*.corp.test', tls: passthrough}]")
        .start()
        .await;
    let (s, text, _) = connect(p.addr, "corp.test:443").await;
    assert_eq!(s, 403, "{text}");
    assert!(text.contains("no-route"));
    let (s, text, _) = connect(p.addr, "evilcorp.test:443").await;
    assert_eq!(s, 403, "{text}");
    assert_eq!(p.net.connect_count(), 0);
    assert_eq!(p.net.resolves.load(std::sync::atomic::Ordering::SeqCst), 0);
}

/// A passthrough route names one host, but a shared front end (a CDN, a
/// cloud load balancer) routes by the name in the ClientHello: a
/// ClientHello for another name is refused before it reaches the upstream.
#[tokio::test]
async fn passthrough_refuses_a_client_hello_for_another_name() {
    let ca = TestCa::new("test upstream CA");
    // One front end that serves both names.
    let (up, rec) = https_upstream(&ca, &["pass.test", "other.test"]).await;
    let port = up.port();
    let p = Setup::new(format!(
        "dlp: off\nallow: [{{host: pass.test, tls: passthrough, ports: [{port}]}}]\nresolve: {{pass.test: '{up}'}}"
    ))
    .start()
    .await;

    let (s, _, stream) = connect(p.addr, &format!("pass.test:{port}")).await;
    assert_eq!(s, 200);
    let mut c = tls_client(stream.unwrap(), &ca.pem, "pass.test").await;
    let (s, _, _) = send(&mut c, req("GET", "/ok", &[("host", "pass.test")], "")).await;
    assert_eq!(s, 200, "the route's own name goes through");

    let (s, _, stream) = connect(p.addr, &format!("pass.test:{port}")).await;
    assert_eq!(s, 200);
    let mut roots = rustls::RootCertStore::empty();
    {
        use rustls_pki_types::pem::PemObject;
        for c in rustls_pki_types::CertificateDer::pem_slice_iter(ca.pem.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
    }
    let cfg = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let other = rustls_pki_types::ServerName::try_from("other.test").unwrap();
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg))
        .connect(other, stream.unwrap())
        .await;
    assert!(
        tls.is_err(),
        "a TLS session with other.test through pass.test's tunnel"
    );
    assert_eq!(rec.count(), 1);
    p.event_like(serde_json::json!({
        "kind": "connect", "host": "pass.test", "decision": "block", "reason": "host-mismatch"
    }))
    .await;
}

/// Not every passthrough tunnel is TLS, and in some protocols the server
/// speaks first: its greeting reaches the client before the client has
/// sent a byte, and the client's non-TLS bytes then go through.
#[tokio::test]
async fn passthrough_relays_a_server_first_protocol() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = l.local_addr().unwrap();
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let g2 = got.clone();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        s.write_all(b"220 greetings\r\n").await.unwrap();
        let mut buf = [0u8; 64];
        while let Ok(n) = s.read(&mut buf).await {
            if n == 0 {
                break;
            }
            g2.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    let port = up.port();
    let p = Setup::new(format!(
        "dlp: off\nallow: [{{host: mail.test, tls: passthrough, ports: [{port}]}}]\nresolve: {{mail.test: '{up}'}}"
    ))
    .start()
    .await;
    let (s, _, stream) = connect(p.addr, &format!("mail.test:{port}")).await;
    assert_eq!(s, 200);
    let mut stream = stream.unwrap();
    let mut greeting = [0u8; 15];
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        stream.read_exact(&mut greeting),
    )
    .await
    .expect("the server's greeting comes before the client speaks")
    .unwrap();
    assert_eq!(&greeting, b"220 greetings\r\n");
    stream.write_all(b"EHLO me\r\n").await.unwrap();
    for _ in 0..200 {
        if got.lock().unwrap().as_slice() == b"EHLO me\r\n" {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("upstream got {:?}", got.lock().unwrap());
}

/// A raw upstream that records every byte it receives, for passthrough
/// tunnels: its address and what it got.
async fn recording_upstream() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
) {
    use tokio::io::AsyncReadExt;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = l.local_addr().unwrap();
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let g2 = got.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let g = g2.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    g.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            });
        }
    });
    (up, got)
}

/// Handshake records: each chunk of `message` in a record of its own.
fn records(message: &[u8], per_record: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in message.chunks(per_record) {
        out.extend_from_slice(&[0x16, 0x03, 0x01]);
        out.extend_from_slice(&u16::try_from(chunk.len()).unwrap().to_be_bytes());
        out.extend_from_slice(chunk);
    }
    out
}

/// A ClientHello the proxy cannot read (one that does not parse, one over
/// the 64 KiB bound) is refused in the tunnel as malformed: not a byte of
/// it reaches the upstream, where a front end might read a name from it
/// that the proxy did not.
#[tokio::test]
async fn passthrough_refuses_a_client_hello_it_cannot_read() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (up, got) = recording_upstream().await;
    let port = up.port();
    let p = Setup::new(format!(
        "dlp: off\nallow: [{{host: pass.test, tls: passthrough, ports: [{port}]}}]\nresolve: {{pass.test: '{up}'}}"
    ))
    .start()
    .await;

    // A ClientHello whose body stops inside the cipher suites.
    let mut garbled = vec![1u8, 0, 0, 38];
    garbled.extend_from_slice(&[3, 3]);
    garbled.extend_from_slice(&[7; 32]);
    garbled.extend_from_slice(&[0, 0xff, 0xff, 0]);
    // One that says it is 70,000 bytes long, sent in full records.
    let mut huge = vec![1u8, 0x01, 0x11, 0x70];
    huge.extend(std::iter::repeat_n(0x41, 70_000));
    for (what, bytes) in [
        ("garbled", records(&garbled, 1 << 14)),
        ("over the bound", records(&huge, 1 << 14)),
    ] {
        let (s, _, stream) = connect(p.addr, &format!("pass.test:{port}")).await;
        assert_eq!(s, 200, "{what}");
        let mut stream = stream.unwrap();
        // The proxy may close before all of it is written.
        let _ = stream.write_all(&bytes).await;
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            stream.read_to_end(&mut rest),
        )
        .await;
        assert!(closed.is_ok(), "{what}: the tunnel stayed open");
        assert!(rest.is_empty(), "{what}: {rest:?}");
    }
    p.event_like(serde_json::json!({
        "kind": "connect", "host": "pass.test", "decision": "block", "reason": "malformed"
    }))
    .await;
    // The upstream was connected to (the CONNECT's answer comes first) but
    // got nothing.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(
        got.lock().unwrap().is_empty(),
        "{:?}",
        got.lock().unwrap().len()
    );
}
