//! Reaching upstreams: name resolution with the SSRF guard, dialling (direct
//! or through `upstream_proxy`), verified TLS, and a one-connection cache per
//! client connection for keep-alive.
//!
//! The guard vets the addresses a name resolves to and the proxy then dials
//! exactly those addresses, so a DNS answer cannot change between check and
//! use. Resolution and dialling go through the [`Net`] seam so tests can
//! observe that a refusal happens before any connection is attempted.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Mutex;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::addr::{HostKind, is_forbidden};
use crate::error::Deny;
use crate::server::Inner;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Body = BoxBody<Bytes, BoxError>;
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Name resolution and TCP connects; the seam tests use to watch the guard.
pub trait Net: Send + Sync + 'static {
    fn resolve<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> BoxFuture<'a, io::Result<Vec<SocketAddr>>>;
    fn connect(&self, addr: SocketAddr) -> BoxFuture<'static, io::Result<TcpStream>>;
}

/// The operating system's resolver and sockets.
#[derive(Debug, Default)]
pub struct SystemNet;

impl Net for SystemNet {
    fn resolve<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> BoxFuture<'a, io::Result<Vec<SocketAddr>>> {
        Box::pin(async move { Ok(tokio::net::lookup_host((host, port)).await?.collect()) })
    }

    fn connect(&self, addr: SocketAddr) -> BoxFuture<'static, io::Result<TcpStream>> {
        Box::pin(async move {
            let s = TcpStream::connect(addr).await?;
            // Request/response latency matters more than packet count here.
            s.set_nodelay(true)?;
            Ok(s)
        })
    }
}

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}
pub type BoxIo = Box<dyn Io>;

/// Where a request goes, after the route check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// A DNS name or an IP address string; used for SNI and certificate checks.
    pub host: String,
    pub kind: HostKind,
    pub port: u16,
    pub tls: bool,
}

/// Addresses the guard allowed for a target.
#[derive(Debug, Clone)]
pub enum Vetted {
    Direct(Vec<SocketAddr>),
    /// Through `upstream_proxy`, which resolves names itself; the authority to ask for.
    ViaProxy(String),
}

/// Resolves a target and applies the SSRF guard.
pub async fn vet(inner: &Inner, target: &Target) -> Result<Vetted, Deny> {
    let cfg = &inner.cfg;
    let (pinned, name) = match &target.kind {
        HostKind::Name(n) => (cfg.resolve.get(n).copied(), n.as_str()),
        HostKind::Ip(_) => (None, ""),
        HostKind::BadNumeric => return Err(Deny::IpLiteral),
    };
    let direct: Vec<SocketAddr> = if let Some(pin) = pinned {
        // Chosen by the user: exempt from the guard.
        vec![SocketAddr::new(pin.ip, pin.port.unwrap_or(target.port))]
    } else if let HostKind::Ip(ip) = target.kind {
        // Only reachable when a route names this address.
        if !cfg.routes.names_ip(ip) {
            return Err(Deny::IpLiteral);
        }
        vec![SocketAddr::new(ip, target.port)]
    } else if cfg.upstream_proxy.is_some() {
        return Ok(Vetted::ViaProxy(format!("{}:{}", name, target.port)));
    } else {
        let addrs = tokio::time::timeout(cfg.limits.connect, inner.net.resolve(name, target.port))
            .await
            .map_err(|_| Deny::Timeout)?
            .map_err(|_| Deny::UpstreamError)?;
        if addrs.is_empty() {
            return Err(Deny::UpstreamError);
        }
        // One forbidden answer poisons the lot: a name that mixes public and
        // private answers is a rebinding attempt.
        if addrs
            .iter()
            .any(|a| is_forbidden(a.ip()) && !cfg.routes.names_ip(a.ip()))
        {
            return Err(Deny::PrivateAddress);
        }
        addrs
    };
    if cfg.upstream_proxy.is_some() {
        let a = direct.first().ok_or(Deny::UpstreamError)?;
        return Ok(Vetted::ViaProxy(a.to_string()));
    }
    Ok(Vetted::Direct(direct))
}

/// Opens a (TLS, when the target says so) connection to vetted addresses.
pub async fn dial(inner: &Inner, target: &Target, vetted: &Vetted) -> Result<BoxIo, Deny> {
    let limits = inner.cfg.limits;
    let tcp = match vetted {
        Vetted::Direct(addrs) => {
            let mut last = Deny::UpstreamError;
            let mut got = None;
            for a in addrs {
                match tokio::time::timeout(limits.connect, inner.net.connect(*a)).await {
                    Ok(Ok(s)) => {
                        got = Some(s);
                        break;
                    }
                    Ok(Err(_)) => last = Deny::UpstreamError,
                    Err(_) => last = Deny::Timeout,
                }
            }
            got.ok_or(last)?
        }
        Vetted::ViaProxy(authority) => {
            tokio::time::timeout(limits.connect, via_proxy(inner, authority))
                .await
                .map_err(|_| Deny::Timeout)??
        }
    };
    if !target.tls {
        return Ok(Box::new(tcp));
    }
    let name = ServerName::try_from(target.host.clone()).map_err(|_| Deny::Malformed)?;
    let connector = tokio_rustls::TlsConnector::from(inner.client_tls.clone());
    let tls = tokio::time::timeout(limits.tls_handshake, connector.connect(name, tcp))
        .await
        .map_err(|_| Deny::Timeout)?
        .map_err(|e| {
            tracing::debug!("upstream TLS to {} failed: {e}", target.host);
            Deny::UpstreamError
        })?;
    Ok(Box::new(tls))
}

/// Opens a CONNECT tunnel through the configured upstream proxy.
async fn via_proxy(inner: &Inner, authority: &str) -> Result<TcpStream, Deny> {
    let Some(p) = &inner.cfg.upstream_proxy else {
        return Err(Deny::UpstreamError);
    };
    // The upstream proxy was named by the user: no SSRF guard on it.
    let addrs = match p.host.parse::<std::net::IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, p.port)],
        Err(_) => inner
            .net
            .resolve(&p.host, p.port)
            .await
            .map_err(|_| Deny::UpstreamError)?,
    };
    let mut stream = None;
    for a in addrs {
        if let Ok(s) = inner.net.connect(a).await {
            stream = Some(s);
            break;
        }
    }
    let mut s = stream.ok_or(Deny::UpstreamError)?;
    let req = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n");
    s.write_all(req.as_bytes())
        .await
        .map_err(|_| Deny::UpstreamError)?;
    // Read the response head byte by byte so nothing after it is consumed.
    let mut head = Vec::with_capacity(256);
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 8192 {
            return Err(Deny::UpstreamError);
        }
        let b = s.read_u8().await.map_err(|_| Deny::UpstreamError)?;
        head.push(b);
    }
    let ok = head.starts_with(b"HTTP/1.1 200") || head.starts_with(b"HTTP/1.0 200");
    if !ok {
        return Err(Deny::UpstreamError);
    }
    Ok(s)
}

/// Keeps the last upstream connection of one client connection for reuse.
#[derive(Default)]
pub struct Pool {
    slot: Mutex<Option<(Target, SendRequest<Body>)>>,
}

impl Pool {
    fn take(&self, target: &Target) -> Option<SendRequest<Body>> {
        let mut slot = self.slot.lock().ok()?;
        match slot.take() {
            Some((t, s)) if &t == target && !s.is_closed() => Some(s),
            _ => None,
        }
    }

    fn put(&self, target: Target, sender: SendRequest<Body>) {
        if let Ok(mut slot) = self.slot.lock() {
            *slot = Some((target, sender));
        }
    }
}

/// Sends a request upstream, reusing the pooled connection when it fits. The
/// pre-flight guard runs only when a new connection is needed: a pooled one
/// was vetted for the same target.
pub async fn send(
    inner: &Inner,
    pool: &Pool,
    target: &Target,
    req: Request<Body>,
) -> Result<Response<Incoming>, Deny> {
    let pooled = match pool.take(target) {
        Some(mut s) => s.ready().await.is_ok().then_some(s),
        None => None,
    };
    let mut sender = match pooled {
        Some(s) => s,
        None => {
            let vetted = vet(inner, target).await?;
            let io = dial(inner, target, &vetted).await?;
            let (sender, conn) = hyper::client::conn::http1::Builder::new()
                .handshake(TokioIo::new(io))
                .await
                .map_err(|_| Deny::UpstreamError)?;
            tokio::spawn(async move {
                if let Err(e) = conn.with_upgrades().await {
                    tracing::debug!("upstream connection ended: {e}");
                }
            });
            sender
        }
    };
    let fut = sender.send_request(req);
    let res = tokio::time::timeout(inner.cfg.limits.response_head, fut)
        .await
        .map_err(|_| Deny::Timeout)?;
    match res {
        Ok(resp) => {
            // An upgraded connection is no longer HTTP: never reuse it.
            if resp.status() != http::StatusCode::SWITCHING_PROTOCOLS {
                pool.put(target.clone(), sender);
            }
            Ok(resp)
        }
        Err(e) => {
            // A body stopped by DLP also lands here; the caller checks its verdict first.
            tracing::debug!("upstream request failed: {e}");
            Err(Deny::UpstreamError)
        }
    }
}
