//! Reaching upstreams: name resolution with the SSRF guard, dialling (direct
//! or through `upstream_proxy`), verified TLS, and a pool of idle keep-alive
//! connections shared by the proxy's clients.
//!
//! The guard vets the addresses a name resolves to and the proxy then dials
//! exactly those addresses, so a DNS answer cannot change between check and
//! use. Resolution and dialling go through the [`Net`] seam so tests can
//! observe that a refusal happens before any connection is attempted.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::combinators::BoxBody;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::addr::HostKind;
use crate::error::Deny;
use crate::limits::{POOL_IDLE_TIMEOUT, POOL_MAX_IDLE, POOL_MAX_IDLE_PER_TARGET};
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

/// Name lookups running at once, per process. Each holds a thread of the
/// blocking pool (`getaddrinfo`), and one the resolve timeout gave up on
/// runs on: without a bound, names whose servers never answer (any
/// subdomain under a wide route) would hold hundreds of threads, up to
/// the sidecar's process limit, and leave the gate none to run git with.
/// Past the bound lookups wait, within the same timeout.
static LOOKUPS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(32);

impl Net for SystemNet {
    fn resolve<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> BoxFuture<'a, io::Result<Vec<SocketAddr>>> {
        Box::pin(async move {
            let permit = LOOKUPS.acquire().await.map_err(io::Error::other)?;
            let host = host.to_string();
            // The permit goes with the thread: it is given back when the
            // lookup ends, not when a caller stops waiting for it.
            tokio::task::spawn_blocking(move || {
                let _permit = permit;
                std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))
                    .map(Iterator::collect)
            })
            .await
            .map_err(io::Error::other)?
        })
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

impl std::hash::Hash for Target {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // `kind` is derived from `host`: equal targets hash alike without it.
        self.host.hash(state);
        self.port.hash(state);
        self.tls.hash(state);
    }
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
        // private answers is a rebinding attempt. Forbidden: the fixed
        // private ranges and the addresses of the machine the bottle runs on.
        if addrs.iter().any(|a| {
            cfg.host_addresses.forbids(a.ip()) && !cfg.routes.opens_ip_to_names(a.ip(), target.port)
        }) {
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

/// Idle keep-alive upstream connections, shared by every client connection
/// of one proxy and keyed by the whole [`Target`] (host, address kind, port,
/// TLS), so a connection is only reused for the destination it was vetted
/// and dialled for, and by the credential its requests carry ([`PoolKey`]).
/// Cheap to clone.
///
/// A connection goes back in only once its response body has been read to
/// the end ([`Pooled`]); one whose exchange was cut short (a body stopped
/// by DLP, a client gone mid-response, an upgrade) is never reused. Idle
/// connections are bounded per target and in total and closed after
/// [`POOL_IDLE_TIMEOUT`].
#[derive(Clone, Default)]
pub struct Pool {
    shared: Arc<Mutex<PoolState>>,
}

/// A target and the index of the token whose credential the proxy injects
/// into requests to it, if any. A connection that carried the agent's own
/// requests never carries an injected credential after them: a body the
/// upstream did not read (CL.0) would be taken for the start of the next
/// request, whose head, credential included, would then complete a
/// request of the agent's choosing (an endpoint the reverse proxy refuses,
/// or a body the server stores). Nor one token's after another's.
pub type PoolKey = (Target, Option<usize>);

#[derive(Default)]
struct PoolState {
    idle: HashMap<PoolKey, Vec<Idle>>,
    count: usize,
    /// A sweeper task is running.
    sweeping: bool,
}

struct Idle {
    sender: SendRequest<Body>,
    since: Instant,
}

impl Pool {
    /// The most recently used live, ready connection for `key`, if any.
    fn take(&self, key: &PoolKey) -> Option<SendRequest<Body>> {
        let mut st = self.shared.lock().ok()?;
        let st = &mut *st;
        let list = st.idle.get_mut(key)?;
        let mut found = None;
        let mut busy = Vec::new();
        while let Some(c) = list.pop() {
            st.count -= 1;
            if c.sender.is_closed() || c.since.elapsed() >= POOL_IDLE_TIMEOUT {
                continue;
            }
            if c.sender.is_ready() {
                found = Some(c.sender);
                break;
            }
            // Still finishing its last exchange (a request body the upstream
            // answered early): leave it for later rather than wait.
            busy.push(c);
        }
        st.count += busy.len();
        list.extend(busy.into_iter().rev());
        // An emptied list stays (the sweeper drops it): the next `put` for a
        // busy target then costs no allocation.
        found
    }

    fn put(&self, key: PoolKey, sender: SendRequest<Body>) {
        if sender.is_closed() {
            return;
        }
        let Ok(mut st) = self.shared.lock() else {
            return;
        };
        if st.count >= POOL_MAX_IDLE {
            return;
        }
        if !st.sweeping {
            // No runtime (a body dropped while it shuts down): nothing to keep.
            let Ok(rt) = tokio::runtime::Handle::try_current() else {
                return;
            };
            st.sweeping = true;
            rt.spawn(sweep(Arc::downgrade(&self.shared)));
        }
        let list = st.idle.entry(key).or_default();
        if list.len() >= POOL_MAX_IDLE_PER_TARGET {
            return;
        }
        list.push(Idle {
            sender,
            since: Instant::now(),
        });
        st.count += 1;
    }

    /// Idle connections held, for tests.
    pub fn idle_count(&self) -> usize {
        self.shared.lock().map(|s| s.count).unwrap_or(0)
    }
}

/// Closes idle connections past [`POOL_IDLE_TIMEOUT`]; ends when the pool is
/// empty (the next `put` starts another) or gone.
async fn sweep(pool: Weak<Mutex<PoolState>>) {
    loop {
        tokio::time::sleep(POOL_IDLE_TIMEOUT / 2).await;
        let Some(shared) = pool.upgrade() else {
            return;
        };
        let Ok(mut st) = shared.lock() else {
            return;
        };
        let st = &mut *st;
        let mut count = 0;
        st.idle.retain(|_, list| {
            list.retain(|c| !c.sender.is_closed() && c.since.elapsed() < POOL_IDLE_TIMEOUT);
            count += list.len();
            !list.is_empty()
        });
        st.count = count;
        if count == 0 {
            st.sweeping = false;
            return;
        }
    }
}

/// A response body that hands its upstream connection back to the [`Pool`]
/// once it has been read to the end.
pub struct Pooled {
    body: Incoming,
    back: Option<(Pool, PoolKey, SendRequest<Body>)>,
}

impl Pooled {
    fn give_back(&mut self) {
        if let Some((pool, key, sender)) = self.back.take() {
            pool.put(key, sender);
        }
    }
}

impl HttpBody for Pooled {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let r = Pin::new(&mut self.body).poll_frame(cx);
        match &r {
            Poll::Ready(None) => self.give_back(),
            Poll::Ready(Some(Err(_))) => self.back = None,
            Poll::Ready(Some(Ok(_))) if self.body.is_end_stream() => self.give_back(),
            _ => {}
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        // Bodies the server never polls (HEAD, 204, 304, empty) end here.
        if self.body.is_end_stream() {
            self.give_back();
        }
    }
}

/// Opens a new vetted upstream connection.
async fn connect_new(inner: &Inner, target: &Target) -> Result<SendRequest<Body>, Deny> {
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
    Ok(sender)
}

/// Sends a request upstream, reusing an idle pooled connection when there is
/// one. The pre-flight guard runs only when a new connection is needed: a
/// pooled one was vetted for the same target. A pooled connection the
/// upstream closed while idle gives the request back unsent; it is then
/// sent once on a new connection.
pub async fn send(
    inner: &Inner,
    pool: &Pool,
    target: &Target,
    credential: Option<usize>,
    req: Request<Body>,
    sending: &std::sync::atomic::AtomicBool,
) -> Result<Response<Pooled>, Deny> {
    let mut req = req;
    // A credentialed body the server refused (413, 429, …) may not have
    // been read: the connection goes, so no leftover of it can become the
    // start of the next credentialed request.
    let credentialed_body = credential.is_some() && !req.body().is_end_stream();
    // A request that asks for its connection to close leaves none to reuse.
    let reusable = !req
        .headers()
        .get(http::header::CONNECTION)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
    let key = (target.clone(), credential);
    let mut reused = pool.take(&key);
    let (sender, resp) = loop {
        let fresh = reused.is_none();
        let mut sender = match reused.take() {
            Some(s) => s,
            None => connect_new(inner, target).await?,
        };
        // From here the upstream may get the request.
        sending.store(true, std::sync::atomic::Ordering::Relaxed);
        let sent =
            tokio::time::timeout(inner.cfg.limits.response_head, sender.try_send_request(req))
                .await
                .map_err(|_| Deny::Timeout)?;
        match sent {
            Ok(resp) => break (sender, resp),
            Err(mut e) => match e.take_message() {
                Some(unsent) if !fresh => {
                    tracing::debug!("pooled upstream connection closed: {}", e.error());
                    req = unsent;
                }
                _ => {
                    // A body stopped by DLP also lands here; the caller
                    // checks its verdict first.
                    tracing::debug!("upstream request failed: {}", e.error());
                    return Err(Deny::UpstreamError);
                }
            },
        }
    };
    // An upgraded connection is no longer HTTP: never reuse it.
    let back = (reusable
        && resp.status() != http::StatusCode::SWITCHING_PROTOCOLS
        && (!credentialed_body || resp.status().is_success()))
    .then(|| (pool.clone(), key, sender));
    Ok(resp.map(|body| Pooled { body, back }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// With every lookup slot taken (lookups stuck on silent name
    /// servers), another waits instead of taking one more thread.
    #[tokio::test]
    async fn name_lookups_are_bounded() {
        let held = LOOKUPS.acquire_many(32).await.unwrap();
        let lookup = tokio::spawn(async { SystemNet.resolve("127.0.0.1", 80).await });
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(!lookup.is_finished(), "a lookup ran past the bound");
        drop(held);
        let addrs = tokio::time::timeout(std::time::Duration::from_secs(5), lookup)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(addrs, ["127.0.0.1:80".parse::<SocketAddr>().unwrap()]);
    }
}
