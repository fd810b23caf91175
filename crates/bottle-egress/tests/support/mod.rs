//! Shared fakes for the proxy's in-process tests: upstream servers on
//! loopback, a test CA, a resolver/connector that only knows loopback, and
//! small clients that speak to the proxy.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::type_complexity
)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bottle_egress::audit::MemoryLog;
use bottle_egress::config::{AuditTarget, MapSecrets, ProxyConfig, parse_text};
use bottle_egress::dlp::Engine;
use bottle_egress::upstream::{BoxFuture, Net};
use bottle_egress::{Options, Proxy, serve};
use bottle_secret::Secret;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub fn init() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// The CA of the fake upstreams, standing in for the public roots of
/// "the internet".
pub use bottle_testkit::TestCa;

/// What a fake upstream received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
    /// Which of the upstream's accepted connections it came on (from 0).
    pub conn: usize,
}

#[derive(Clone, Default)]
pub struct Recorder(pub Arc<Mutex<Vec<Seen>>>);

impl Recorder {
    pub fn all(&self) -> Vec<Seen> {
        self.0.lock().unwrap().clone()
    }
    pub fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

async fn record(rec: Recorder, conn: usize, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    rec.0.lock().unwrap().push(Seen {
        method: parts.method.to_string(),
        uri: parts.uri.to_string(),
        headers: parts.headers.clone(),
        body,
        conn,
    });
    let path = parts.uri.path();
    let asked = |name: &str| parts.headers.contains_key(name);
    if asked("x-test-echo") {
        // A debug endpoint: every request field back, in the body and
        // in response fields.
        let mut text = String::new();
        for (name, value) in &parts.headers {
            text.push_str(&format!("{name}: {}\n", value.to_str().unwrap_or("?")));
        }
        let mut r = Response::new(Full::new(Bytes::from(text)));
        for (from, to) in [
            ("authorization", "x-echo-authorization"),
            ("x-api-key", "x-echo-api-key"),
        ] {
            if let Some(v) = parts.headers.get(from) {
                r.headers_mut().insert(to, v.clone());
            }
        }
        return r;
    }
    if asked("x-test-reason") {
        // A server that quotes the credential in its status line.
        let mut r = Response::new(Full::new(Bytes::from_static(b"denied")));
        *r.status_mut() = http::StatusCode::UNAUTHORIZED;
        let quoted = parts
            .headers
            .get("authorization")
            .map_or(&[][..], |v| v.as_bytes());
        if let Ok(reason) = hyper::ext::ReasonPhrase::try_from([b"bad ", quoted].concat()) {
            r.extensions_mut().insert(reason);
        }
        return r;
    }
    if let Some(code) = parts
        .headers
        .get("x-test-status")
        .and_then(|v| v.to_str().ok()?.parse::<u16>().ok())
    {
        // A server that refuses the request.
        let mut r = Response::new(Full::new(Bytes::from_static(b"refused")));
        *r.status_mut() = http::StatusCode::from_u16(code).unwrap();
        return r;
    }
    if asked("x-test-partial") {
        // A server that answers with a range nobody asked for.
        let mut r = Response::new(Full::new(Bytes::from_static(b"slice")));
        *r.status_mut() = http::StatusCode::PARTIAL_CONTENT;
        r.headers_mut()
            .insert("content-range", "bytes 0-4/100".parse().unwrap());
        return r;
    }
    if asked("x-test-gzip") {
        // A server that compresses whatever the client accepts.
        let mut r = Response::new(Full::new(Bytes::from_static(b"\x1f\x8b not really")));
        r.headers_mut()
            .insert("content-encoding", "gzip".parse().unwrap());
        return r;
    }
    let mut r = Response::new(Full::new(Bytes::from(format!("hello {path}"))));
    r.headers_mut().insert("x-upstream", "yes".parse().unwrap());
    r
}

/// A plain HTTP upstream on loopback that records every request.
pub async fn http_upstream() -> (SocketAddr, Recorder) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let rec = Recorder::default();
    let r2 = rec.clone();
    tokio::spawn(async move {
        for conn in 0.. {
            let Ok((s, _)) = l.accept().await else { return };
            let rec = r2.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let rec = rec.clone();
                    async move { Ok::<_, Infallible>(record(rec, conn, req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    (addr, rec)
}

/// An HTTPS upstream for `names` with a certificate from `ca`.
pub async fn https_upstream(ca: &TestCa, names: &[&str]) -> (SocketAddr, Recorder) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(ca.server_config(names));
    let rec = Recorder::default();
    let r2 = rec.clone();
    tokio::spawn(async move {
        for conn in 0.. {
            let Ok((s, _)) = l.accept().await else { return };
            let rec = r2.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(s).await else {
                    return;
                };
                let svc = hyper::service::service_fn(move |req| {
                    let rec = rec.clone();
                    async move { Ok::<_, Infallible>(record(rec, conn, req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (addr, rec)
}

/// Resolver and connector for tests: names come from a fixed table (never a
/// real resolver) and connects are only ever made to loopback.
#[derive(Default)]
pub struct FakeNet {
    pub names: Mutex<HashMap<String, Vec<IpAddr>>>,
    pub resolves: AtomicUsize,
    /// Every address a connect was asked for (a stand-in's own address,
    /// not loopback).
    pub connects: Mutex<Vec<SocketAddr>>,
    /// Non-loopback addresses whose connects go to 127.0.0.1 on the same
    /// port: a public address of the test's choosing that still reaches a
    /// fake upstream (as the host's own public address reaches the host).
    pub stand_ins: Mutex<Vec<IpAddr>>,
}

impl FakeNet {
    pub fn with(names: &[(&str, &str)]) -> Arc<Self> {
        let n = FakeNet::default();
        for (k, v) in names {
            n.names
                .lock()
                .unwrap()
                .insert(k.to_string(), vec![v.parse().unwrap()]);
        }
        Arc::new(n)
    }
    pub fn connect_count(&self) -> usize {
        self.connects.lock().unwrap().len()
    }
    /// Connects to `ip` reach 127.0.0.1 on the same port from now on.
    pub fn stand_in(&self, ip: &str) {
        self.stand_ins.lock().unwrap().push(ip.parse().unwrap());
    }
}

impl Net for FakeNet {
    fn resolve<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> BoxFuture<'a, io::Result<Vec<SocketAddr>>> {
        self.resolves.fetch_add(1, Ordering::SeqCst);
        if host.starts_with("silent-ns.") {
            // A name whose servers never answer.
            return Box::pin(std::future::pending());
        }
        let r = self
            .names
            .lock()
            .unwrap()
            .get(host)
            .map(|ips| ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect())
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "NXDOMAIN (fake)"));
        Box::pin(async move { r })
    }

    fn connect(&self, addr: SocketAddr) -> BoxFuture<'static, io::Result<tokio::net::TcpStream>> {
        self.connects.lock().unwrap().push(addr);
        let addr = if self.stand_ins.lock().unwrap().contains(&addr.ip()) {
            SocketAddr::from(([127, 0, 0, 1], addr.port()))
        } else {
            addr
        };
        Box::pin(async move {
            // The guard under test may be broken: never let a packet leave loopback.
            assert!(addr.ip().is_loopback(), "test tried to connect to {addr}");
            let s = TcpStream::connect(addr).await?;
            s.set_nodelay(true)?;
            Ok(s)
        })
    }
}

/// A running proxy.
pub struct Running {
    pub addr: SocketAddr,
    pub proxy: Proxy,
    pub log: MemoryLog,
    pub net: Arc<FakeNet>,
    pub dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

impl Running {
    /// Stops the proxy and waits (up to 5 s) until its serving returned.
    pub async fn shut_down(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(served) = self.served.take() {
            tokio::time::timeout(std::time::Duration::from_secs(5), served)
                .await
                .expect("the proxy stopped")
                .unwrap();
        }
    }

    /// Waits (up to 5 s) for an event matching `pred`: events of allowed
    /// requests are written when the response body ends on the proxy side,
    /// which may be just after the client has read it.
    pub async fn event(&self, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        for _ in 0..1000 {
            if let Some(e) = self.log.events().into_iter().find(|e| pred(e)) {
                return e;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("no matching event in {:?}", self.log.lines());
    }

    /// Waits (as [`Running::event`]) for an event that has every field of
    /// the JSON object `want`, with the same value.
    pub async fn event_like(&self, want: serde_json::Value) -> serde_json::Value {
        let want = want.as_object().cloned().unwrap_or_default();
        self.event(|e| want.iter().all(|(k, v)| &e[k] == v)).await
    }

    /// Every audit line; asserts none contains any of `secrets`.
    pub fn events_without(&self, secrets: &[&str]) -> Vec<serde_json::Value> {
        for line in self.log.lines() {
            for s in secrets {
                assert!(!line.contains(s), "secret in audit line: {line}");
            }
        }
        self.log.events()
    }
}

pub struct Setup<'a> {
    pub yaml: String,
    pub secrets: &'a [(&'a str, &'a str)],
    pub net: Arc<FakeNet>,
    pub upstream_ca: Option<&'a TestCa>,
    pub tweak: Option<Box<dyn FnOnce(&mut ProxyConfig) + 'a>>,
    pub engine: Option<Arc<dyn Engine>>,
    /// Threads for `serve_sharded`; 0 serves on the test's runtime.
    pub shards: usize,
}

impl<'a> Setup<'a> {
    pub fn new(yaml: impl Into<String>) -> Self {
        Setup {
            yaml: yaml.into(),
            secrets: &[],
            net: FakeNet::with(&[]),
            upstream_ca: None,
            tweak: None,
            engine: None,
            shards: 0,
        }
    }
    pub fn secrets(mut self, s: &'a [(&'a str, &'a str)]) -> Self {
        self.secrets = s;
        self
    }
    pub fn net(mut self, n: Arc<FakeNet>) -> Self {
        self.net = n;
        self
    }
    pub fn upstream_ca(mut self, ca: &'a TestCa) -> Self {
        self.upstream_ca = Some(ca);
        self
    }
    pub fn tweak(mut self, f: impl FnOnce(&mut ProxyConfig) + 'a) -> Self {
        self.tweak = Some(Box::new(f));
        self
    }
    /// Served on `n` threads of its own (`serve_sharded`), as the sidecar
    /// and `claude-bottle proxy` serve.
    pub fn sharded(mut self, n: usize) -> Self {
        self.shards = n;
        self
    }
    /// Another DLP engine than the default one.
    pub fn engine(mut self, e: Arc<dyn Engine>) -> Self {
        self.engine = Some(e);
        self
    }

    pub async fn start(self) -> Running {
        init();
        let dir = tempfile::tempdir().unwrap();
        let mut yaml = self.yaml.clone();
        if let Some(ca) = self.upstream_ca {
            let p = ca.write(dir.path());
            yaml.push_str(&format!("\nupstream_ca: {}\n", p.display()));
        }
        let raw = parse_text(&yaml).unwrap();
        let secrets = MapSecrets(
            self.secrets
                .iter()
                .map(|(k, v)| (k.to_string(), Secret::new(*v)))
                .collect(),
        );
        let mut cfg = ProxyConfig::from_raw(raw, dir.path(), &secrets).unwrap();
        cfg.audit = AuditTarget::Memory;
        // The proxy listens where its configuration says (as the standalone
        // proxy and the sidecar do once bound); a tweak may pretend otherwise.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        cfg.listen = addr;
        if let Some(t) = self.tweak {
            t(&mut cfg);
        }
        let proxy = Proxy::with_options(
            cfg,
            Options {
                engine: self.engine,
                net: Some(self.net.clone() as Arc<dyn Net>),
            },
        )
        .unwrap();
        // `log: off` has no log at all: an empty one stands in.
        let log = proxy.memory_log().unwrap_or_default();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let p2 = proxy.clone();
        let until = async move {
            let _ = rx.await;
        };
        let shards = self.shards;
        let served = tokio::spawn(async move {
            if shards == 0 {
                serve(p2, listener, until).await.unwrap();
            } else {
                bottle_egress::serve_sharded(p2, listener, shards, until)
                    .await
                    .unwrap();
            }
        });
        Running {
            addr,
            proxy,
            log,
            net: self.net,
            dir,
            stop: Some(tx),
            served: Some(served),
        }
    }
}

/// An upstream that records the raw bytes it receives; it answers 200 on a
/// connection once `complete` says the bytes so far are a whole request,
/// and never otherwise.
pub async fn raw_upstream(complete: fn(&[u8]) -> bool) -> (SocketAddr, Arc<Mutex<Vec<u8>>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let g = g.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let mut mine = Vec::new();
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    g.lock().unwrap().extend_from_slice(&buf[..n]);
                    mine.extend_from_slice(&buf[..n]);
                    if complete(&mine) {
                        let _ = s
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                            .await;
                        return;
                    }
                }
            });
        }
    });
    (addr, got)
}

/// The known secret of the DLP tests (as if the agent had found a token).
pub const SECRET: &str = "topsecretvalue42";

/// A proxy with `settings` (`dlp:` and `log:` lines) and [`SECRET`] known,
/// routing app.test and its subdomains to `up`.
pub async fn dlp_proxy_to(settings: &str, up: SocketAddr) -> Running {
    Setup::new(format!(
        "{settings}\nallow: [{{host: app.test}}, {{host: '*.app.test'}}]\nresolve: {{app.test: '{up}'}}\nknown_secret_env: [S]"
    ))
    .secrets(&[("S", SECRET)])
    .start()
    .await
}

/// Sends raw bytes, then reads until the proxy closes or 5 s pass.
pub async fn raw(proxy: SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads one response head (and a Content-Length body) from a stream.
pub async fn read_response<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> (u16, String, String) {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        if s.read(&mut b).await.unwrap() == 0 {
            break;
        }
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let len = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await.unwrap();
    (status, head, String::from_utf8_lossy(&body).into_owned())
}

/// An HTTP/1.1 client connection to the proxy (for absolute-form and reverse requests).
pub async fn client(proxy: SocketAddr) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let s = TcpStream::connect(proxy).await.unwrap();
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}

pub fn req(method: &str, uri: &str, headers: &[(&str, &str)], body: &str) -> Request<Full<Bytes>> {
    let mut b = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Full::new(Bytes::from(body.to_string()))).unwrap()
}

pub async fn send(
    c: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    r: Request<Full<Bytes>>,
) -> (u16, http::HeaderMap, String) {
    let resp = c.send_request(r).await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

/// Opens a CONNECT tunnel; returns the status and, on 200, the stream.
pub async fn connect(proxy: SocketAddr, authority: &str) -> (u16, String, Option<TcpStream>) {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    s.write_all(format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let (status, head, body) = read_response(&mut s).await;
    (
        status,
        format!("{head}{body}"),
        (status == 200).then_some(s),
    )
}

/// TLS over a tunnel, trusting `ca_pem`, with SNI `sni`; then an HTTP/1.1 client.
pub async fn tls_client(
    stream: TcpStream,
    ca_pem: &str,
    sni: &str,
) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let tls = tls_stream(stream, ca_pem, sni).await;
    let (send, c) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(c);
    send
}

/// TLS over `stream` for `sni`, trusting only `ca_pem`: for tests that
/// read the bytes of an answer (its status line) themselves.
pub async fn tls_stream(
    stream: TcpStream,
    ca_pem: &str,
    sni: &str,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let mut cfg = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let conn = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let name = rustls_pki_types::ServerName::try_from(sni.to_string()).unwrap();
    conn.connect(name, stream).await.unwrap()
}
