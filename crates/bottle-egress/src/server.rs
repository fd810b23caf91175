//! The proxy server: accepting clients, dispatching each request (forward,
//! CONNECT, reverse, internal), forwarding allowed ones, and turning every
//! refusal into a response and an audit event in one place, [`refuse`].

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use bottle_secret::Secret;
use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use zeroize::Zeroizing;

use crate::addr::{HostKind, classify_host};
use crate::audit::{Audit, Event, MemoryLog, millis};
use crate::ca::{Ca, load_roots_pem};
use crate::config::{DlpMode, LogMode, ProxyConfig, Token};
use crate::connect::{self, Tunnel};
use crate::dlp::{BottleDlp, Dlp, Engine};
use crate::echo::{self, EchoMask, MaskedBody};
pub use crate::error::Failure;
use crate::error::{Deny, Error};
use crate::form_method::FormMethod;
use crate::inject;
use crate::limits::{
    FULL_LOG_BODY_BYTES, FULL_LOG_LOOKAHEAD, MAX_HEAD_BYTES, MAX_HEADERS, MAX_TARGET_BYTES,
};
use crate::reverse::{self, Provider};
use crate::route::{Route, Scheme};
use crate::scan::{self, FormMethodBody, ScanBody, SharedVerdict, Verdict};
use crate::upstream::{self, Body, BoxError, Net, Pool, SystemNet, Target};
use crate::websocket;

pub use crate::config::INTERNAL_HOST;
/// The header naming the reason of a refusal.
pub const BLOCK_HEADER: &str = "x-claude-bottle-block";

/// State shared by every connection of one proxy.
pub struct Inner {
    pub cfg: ProxyConfig,
    pub audit: Audit,
    pub dlp: Dlp,
    /// The same engine whatever the mode: audit events (host, path, `log:
    /// full` bodies) are redacted even with `dlp: off` or `log`.
    pub log_redactor: Dlp,
    pub ca: Ca,
    pub client_tls: Arc<rustls::ClientConfig>,
    pub net: Arc<dyn Net>,
    /// Open CONNECT tunnels: they outlive the client connection's slot, so
    /// they are bounded separately.
    pub tunnels: Arc<Semaphore>,
    /// Bytes of request bodies held back for DLP, by all requests.
    pub held: scan::HeldBudget,
    /// Idle upstream connections, shared by all clients.
    pub pool: Pool,
    /// The echo mask of each of `cfg.tokens`, by index.
    pub echo_masks: Vec<Option<Arc<EchoMask>>>,
}

/// Seams for embedding and tests.
#[derive(Default)]
pub struct Options {
    /// The DLP engine; default: exact matching of the config's tokens and known secrets.
    pub engine: Option<Arc<dyn Engine>>,
    /// Resolver and connector; default: the operating system's.
    pub net: Option<Arc<dyn Net>>,
}

/// A configured proxy, ready to [`serve`]. Cheap to clone.
#[derive(Clone)]
pub struct Proxy {
    inner: Arc<Inner>,
    log: Option<MemoryLog>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Proxy(..)")
    }
}

impl Proxy {
    pub fn new(cfg: ProxyConfig) -> Result<Self, Error> {
        Self::with_options(cfg, Options::default())
    }

    pub fn with_options(cfg: ProxyConfig, opts: Options) -> Result<Self, Error> {
        let (audit, log) = Audit::open(&cfg.audit, cfg.log != LogMode::Off)?;
        // DLP off still builds the engine: log lines are redacted with it.
        let engine = match opts.engine {
            Some(e) => Some(e),
            None => Some(default_engine(&cfg)?),
        };
        let dlp = Dlp::new(engine.clone(), cfg.dlp);
        let log_redactor = Dlp::new(engine, crate::config::DlpMode::Log);
        let ca = match &cfg.ca {
            Some(src) => Ca::load(src)?,
            None => Ca::generate()?,
        };
        // One provider for both sides: the CA's (interception) serves upstream TLS too.
        let client_tls = client_config(&cfg, ca.provider().clone())?;
        let net = opts.net.unwrap_or_else(|| Arc::new(SystemNet));
        let tunnels = Arc::new(Semaphore::new(cfg.limits.max_connections.max(1)));
        let held = scan::HeldBudget::new(cfg.limits.held_bytes);
        let echo_masks = cfg.tokens.iter().map(echo_mask_of).collect();
        let inner = Inner {
            echo_masks,
            cfg,
            audit,
            dlp,
            log_redactor,
            ca,
            client_tls,
            net,
            tunnels,
            held,
            pool: Pool::default(),
        };
        Ok(Self {
            inner: Arc::new(inner),
            log,
        })
    }

    /// The CA certificate clients must trust for intercepted routes.
    pub fn ca_pem(&self) -> &str {
        self.inner.ca.cert_pem()
    }

    /// Bytes request bodies hold back for DLP now, beyond each one's free
    /// allowance (`Limits::held_bytes` bounds it).
    pub fn held_bytes(&self) -> usize {
        self.inner.held.used()
    }

    /// Serves one already-accepted client stream (any byte stream) to its end.
    pub async fn serve_connection<I>(&self, io: I)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        serve_client(self.inner.clone(), self.inner.pool.clone(), io, None).await;
    }

    /// The audit sink, for the sidecar's other parts (DNS, git gate).
    pub fn audit(&self) -> Audit {
        self.inner.audit.clone()
    }

    /// The engine that redacts audit events, active whatever the DLP mode
    /// (`dlp: off` included): for the other parts' events (DNS), which must
    /// not carry a secret either.
    pub fn log_redactor(&self) -> Dlp {
        self.inner.log_redactor.clone()
    }

    /// Idle upstream connections kept for reuse by [`serve`] and
    /// [`Proxy::serve_connection`] (each thread of [`serve_sharded`] keeps
    /// its own, not counted here).
    pub fn idle_upstream_connections(&self) -> usize {
        self.inner.pool.idle_count()
    }

    /// The audit lines, when the config's audit target is `Memory`.
    pub fn memory_log(&self) -> Option<MemoryLog> {
        self.log.clone()
    }
}

/// The `bottle-dlp` engine with the config's tokens and known secrets.
fn default_engine(cfg: &ProxyConfig) -> Result<Arc<dyn Engine>, Error> {
    let tokens = cfg.tokens.iter().map(|t| match t {
        Token::Anthropic(s) | Token::Openai(s) => s,
        Token::Http { secret, .. } => secret,
    });
    let mut secrets: Vec<&Secret> = Vec::new();
    for s in tokens.chain(&cfg.known_secrets) {
        // Each value indexed once: the sidecar lists every token of the
        // bottle as a known secret, the injected ones too.
        if !secrets.iter().any(|k| k.expose() == s.expose()) {
            secrets.push(s);
        }
    }
    let engine = BottleDlp::new(secrets).map_err(|e| Error::Invalid(format!("DLP engine: {e}")))?;
    Ok(Arc::new(engine))
}

fn client_config(
    cfg: &ProxyConfig,
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Result<Arc<rustls::ClientConfig>, Error> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = &cfg.upstream_ca {
        let pem = std::fs::read(path).map_err(|source| Error::Read {
            path: path.clone(),
            source,
        })?;
        for c in load_roots_pem(&pem)? {
            roots
                .add(c)
                .map_err(|e| Error::Tls(format!("upstream_ca: {e}")))?;
        }
    }
    let mut c = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(c))
}

/// Serves clients from `listener` until `shutdown` completes, on the
/// runtime it is called from.
pub async fn serve<F>(proxy: Proxy, listener: TcpListener, shutdown: F) -> Result<(), Error>
where
    F: Future<Output = ()> + Send,
{
    let inner = proxy.inner;
    let slots = Arc::new(Semaphore::new(inner.cfg.limits.max_connections.max(1)));
    let pool = inner.pool.clone();
    accept(inner, slots, pool, listener, shutdown).await;
    Ok(())
}

/// How long a proxy thread waits at a stop for its blocking work (name
/// lookups) before leaving it behind.
const SHARD_STOP: std::time::Duration = std::time::Duration::from_millis(100);

/// Serves clients from `listener` on `shards` threads until `shutdown`
/// completes. Each thread is a runtime of its own that accepts from the
/// same socket and keeps its own upstream connections, so a request, its
/// upstream connection and their wake-ups stay on one thread: on a
/// multi-threaded runtime each request crosses threads about twice
/// (client and upstream connections are tasks of their own), and the
/// wake-ups cost more than the proxy's own work (docs/benchmarks.md).
/// Everything else (routes, DLP, the CA's leaves, audit, the bounds on
/// connections and held bytes) is one for all shards. A shard that ends
/// on an error ends them all, with that error.
pub async fn serve_sharded<F>(
    proxy: Proxy,
    listener: TcpListener,
    shards: usize,
    shutdown: F,
) -> Result<(), Error>
where
    F: Future<Output = ()> + Send,
{
    if shards <= 1 {
        return serve(proxy, listener, shutdown).await;
    }
    let inner = proxy.inner;
    let slots = Arc::new(Semaphore::new(inner.cfg.limits.max_connections.max(1)));
    let listener = listener.into_std()?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let (done_tx, mut done) = tokio::sync::mpsc::channel::<Result<(), Error>>(shards);
    let mut started = 0;
    let mut failed = None;
    for i in 0..shards {
        let shard = (
            listener.try_clone(),
            inner.clone(),
            slots.clone(),
            stopped.clone(),
            done_tx.clone(),
        );
        let spawned = std::thread::Builder::new()
            .name(format!("proxy-{i}"))
            .spawn(move || {
                let (listener, inner, slots, mut stopped, done) = shard;
                let run = || -> Result<(), Error> {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    let served = rt.block_on(async move {
                        let listener = TcpListener::from_std(listener?)?;
                        let until = async move {
                            let _ = stopped.wait_for(|s| *s).await;
                        };
                        accept(inner, slots, Pool::default(), listener, until).await;
                        Ok(())
                    });
                    // Not a plain drop, which waits without bound for the
                    // blocking pool: a `getaddrinfo` the agent made slow
                    // (a name whose server never answers) would hold the
                    // stop past the engine's grace, and the audit log's
                    // last flush with it.
                    rt.shutdown_timeout(SHARD_STOP);
                    served
                };
                // A panic ends the proxy too, rather than leave it serving
                // on fewer threads without a word.
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(run))
                    .unwrap_or_else(|_| {
                        Err(Error::Io(std::io::Error::other("a proxy thread panicked")))
                    });
                let _ = done.blocking_send(result);
            });
        match spawned {
            Ok(_) => started += 1,
            Err(e) => {
                failed = Some(Error::from(e));
                break;
            }
        }
    }
    drop(done_tx);
    if failed.is_none() {
        tokio::pin!(shutdown);
        tokio::select! {
            () = &mut shutdown => {}
            Some(r) = done.recv() => {
                started -= 1;
                failed = Some(r.err().unwrap_or_else(|| {
                    Error::Io(std::io::Error::other("a proxy thread ended"))
                }));
            }
        }
    }
    let _ = stop.send(true);
    for _ in 0..started {
        if let Some(Err(e)) = done.recv().await {
            failed.get_or_insert(e);
        }
    }
    failed.map_or(Ok(()), Err)
}

/// Accepts clients until `shutdown` completes, each served on a task of
/// the current runtime while it holds one of `slots`.
async fn accept<F>(
    inner: Arc<Inner>,
    slots: Arc<Semaphore>,
    pool: Pool,
    listener: TcpListener,
    shutdown: F,
) where
    F: Future<Output = ()>,
{
    tokio::pin!(shutdown);
    loop {
        // Take a slot before accepting: at the bound, new clients wait in the
        // kernel's backlog instead of costing memory here.
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, _peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let inner = inner.clone();
        let pool = pool.clone();
        tokio::spawn(async move {
            serve_client(inner, pool, stream, None).await;
            drop(permit);
        });
    }
}

/// Serves HTTP/1.1 on one client stream: the front door, or the decrypted
/// inside of an intercepted tunnel.
pub(crate) async fn serve_client<I>(
    inner: Arc<Inner>,
    pool: Pool,
    io: I,
    tunnel: Option<Arc<Tunnel>>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc_inner = inner.clone();
    let svc = service_fn(move |req| {
        let inner = svc_inner.clone();
        let pool = pool.clone();
        let tunnel = tunnel.clone();
        async move { Ok::<_, Infallible>(handle(inner, pool, tunnel, req).await) }
    });
    let mut b = http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(inner.cfg.limits.header_read)
        .max_buf_size(MAX_HEAD_BYTES * 2)
        .max_header_size(MAX_HEAD_BYTES)
        .max_headers(MAX_HEADERS)
        .keep_alive(true)
        .half_close(false);
    if let Err(e) = b
        .serve_connection(TokioIo::new(io), svc)
        .with_upgrades()
        .await
    {
        // hyper has already answered 400/431 for a bad head; record it.
        let deny = if e.is_parse_too_large() {
            Some(Deny::TooLarge)
        } else if e.is_parse() || e.is_parse_status() {
            Some(Deny::Malformed)
        } else {
            None
        };
        if let Some(d) = deny {
            let mut ev = Event::deny("http", d);
            ev.status = Some(if d == Deny::TooLarge { 431 } else { 400 });
            inner.audit.emit(&ev);
        }
        tracing::debug!("client connection: {e}");
    }
}

/// What is known about a request so far, for its audit event.
#[derive(Debug, Clone)]
pub struct Info {
    pub kind: &'static str,
    pub host: Option<String>,
    pub method: String,
    pub path: Option<String>,
    pub rule: Option<String>,
    pub started: Instant,
    /// DLP has scanned the host and path and they are fit for the log
    /// (clean, or already redacted). Until then an event redacts them
    /// itself: the audit log must not carry what the proxy refused to send
    /// (a secret in a refused host's label, or one `dlp: log` let through),
    /// nor, with `dlp: off`, what nobody scanned.
    pub scrubbed: bool,
}

impl Info {
    /// The audit event of this request, host and path redacted with the log
    /// redactor (whatever the DLP mode) unless DLP vetted them already.
    /// With `log: off` nothing is written, so nothing is scanned for it:
    /// refusals stay as cheap as before.
    pub fn event(&self, decision: &'static str, inner: &Inner) -> Event {
        let mut e = Event::new(self.kind, decision);
        let redact = !self.scrubbed && inner.audit.enabled();
        let scrub = |s: &Option<String>, how: fn(&Dlp, &str) -> String| match s {
            Some(v) if redact => Some(how(&inner.log_redactor, v)),
            other => other.clone(),
        };
        // Each field is cut after redaction: the agent chooses how long
        // they are (an extension method or a host of kilobytes), and every
        // event it causes must stay small for the log's bound to hold.
        e.host = scrub(&self.host, redact_for_log).map(|h| cut(h, LOGGED_HOST_BYTES));
        // Any token is a method: one made of a secret is redacted like the path.
        let method = if redact {
            redact_method_for_log(&inner.log_redactor, &self.method)
        } else {
            self.method.clone()
        };
        e.method = Some(cut(method, LOGGED_METHOD_BYTES));
        e.path = scrub(&self.path, redact_path_for_log).map(|p| cut(p, LOGGED_PATH_BYTES));
        e.rule = self.rule.clone();
        e
    }
}

/// The longest path an event carries (a URL may be 16 KiB).
const LOGGED_PATH_BYTES: usize = 1024;
/// A DNS name's longest form.
const LOGGED_HOST_BYTES: usize = 255;
/// Longer than any method in use, and than a redaction marker.
const LOGGED_METHOD_BYTES: usize = 64;

/// `s` cut to at most `max` bytes, on a character boundary.
fn cut(mut s: String, max: usize) -> String {
    let mut at = max.min(s.len());
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    s.truncate(at);
    s
}

async fn handle(
    inner: Arc<Inner>,
    pool: Pool,
    tunnel: Option<Arc<Tunnel>>,
    req: Request<Incoming>,
) -> Response<Body> {
    let mut info = Info {
        kind: if req.method() == Method::CONNECT {
            "connect"
        } else {
            "http"
        },
        host: None,
        method: req.method().as_str().to_string(),
        // Whole: cut only after redaction (`Info::event`), so a secret
        // that crosses the cut is never logged in part.
        path: Some(req.uri().path().to_string()),
        rule: None,
        started: Instant::now(),
        scrubbed: false,
    };
    if req.method() == Method::CONNECT {
        info.path = None;
    }
    let res = match &tunnel {
        None => front(&inner, &pool, req, &mut info).await,
        Some(t) => connect::inside(&inner, &pool, t, req, &mut info).await,
    };
    match res {
        Ok(r) => r,
        Err(f) => refuse(&inner, &info, f),
    }
}

/// The one place a refusal becomes a response and an audit event.
pub fn refuse(inner: &Inner, info: &Info, f: Failure) -> Response<Body> {
    let status = f.deny.status();
    let rule = f.rule.or_else(|| info.rule.clone());
    let body = serde_json::json!({
        "blocked": true,
        "reason": f.deny.as_str(),
        "rule": rule.clone().unwrap_or_default(),
        "host": info.host.clone().unwrap_or_default(),
    });
    let mut ev = Event::new(info.kind, "block");
    ev.reason = Some(f.deny.as_str());
    ev.status = Some(status.as_u16());
    ev.ms = millis(info.started.elapsed());
    // Host, method and path are redacted (DLP passes over up to 16 KiB)
    // only for an event that is written, not for each of a flood of
    // refusals the rate limit only counts.
    inner.audit.emit_finished(ev, |ev| {
        let full = info.event("block", inner);
        ev.host = full.host;
        ev.method = full.method;
        ev.path = full.path;
        ev.rule = rule;
    });
    let mut resp = Response::new(full(body.to_string()));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(BLOCK_HEADER, HeaderValue::from_static(f.deny.as_str()));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if matches!(
        f.deny,
        Deny::Malformed | Deny::HostField | Deny::TooLarge | Deny::Dlp
    ) {
        // The rest of the request may still be on the wire; do not parse it as a new one.
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

/// Checks that hold for every request, whatever the door.
pub(crate) fn check_head(req: &Request<Incoming>) -> Result<(), Deny> {
    if req.headers().get_all(header::HOST).iter().count() > 1 {
        return Err(Deny::HostField);
    }
    let uri = req.uri();
    let target_len = uri.path_and_query().map_or(0, |p| p.as_str().len())
        + uri.authority().map_or(0, |a| a.as_str().len());
    if target_len > MAX_TARGET_BYTES {
        return Err(Deny::TooLarge);
    }
    if req.version() != Version::HTTP_11 && req.version() != Version::HTTP_10 {
        return Err(Deny::Malformed);
    }
    Ok(())
}

async fn front(
    inner: &Arc<Inner>,
    pool: &Pool,
    mut req: Request<Incoming>,
    info: &mut Info,
) -> Result<Response<Body>, Failure> {
    check_head(&req)?;
    if req.method() == Method::CONNECT {
        return connect::handle(inner, pool, &mut req, info).await;
    }
    let uri = req.uri().clone();
    if let Some(scheme) = uri.scheme_str() {
        // `https://` absolute-form would ask us to originate TLS for a request
        // the client sent in clear: clients use CONNECT for https.
        if scheme != "http" {
            return Err(Deny::Malformed.into());
        }
        let auth = uri.authority().ok_or(Deny::Malformed)?;
        if auth.as_str().contains('@') {
            // `http://allowed@evil/`: never guess which part the user meant.
            return Err(Deny::Malformed.into());
        }
        let host = auth.host();
        let port = auth.port_u16().unwrap_or(80);
        let kind = classify_host(host);
        info.host = Some(display_host(&kind, host));
        if inner.cfg.is_own(&kind, port) {
            // The proxy's own name, or own address on its listen port (a
            // client whose HTTP_PROXY covers the proxy's URL too): served
            // as in origin form, never forwarded.
            return own(inner, pool, req, info).await;
        }
        let route = inner.cfg.routes.find(&kind, port, Scheme::Http)?.clone();
        info.rule = Some(route.name.clone());
        let auth = inject::http_token(&inner.cfg.tokens, &kind).map_or(Auth::None, Auth::Token);
        let target = Target {
            host: target_host(&kind, host),
            kind,
            port,
            tls: false,
        };
        let pq = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
        return exchange(
            inner,
            pool,
            req,
            Exchange {
                target,
                route: Some(route),
                auth,
                pq,
            },
            info,
        )
        .await;
    }
    own(inner, pool, req, info).await
}

/// A request to the proxy itself, origin-form or absolute-form to one of
/// its own names or addresses ([`ProxyConfig::is_own`]): the reverse proxy, `/health`, `/ca.pem`, else `no-route`.
async fn own(
    inner: &Arc<Inner>,
    pool: &Pool,
    req: Request<Incoming>,
    info: &mut Info,
) -> Result<Response<Body>, Failure> {
    let pq = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    if let Some((provider, upstream_pq)) = reverse::route(&pq) {
        info.kind = "reverse";
        let token = inner.cfg.tokens.iter().position(|t| {
            matches!(
                (t, provider),
                (Token::Anthropic(_), Provider::Anthropic) | (Token::Openai(_), Provider::Openai)
            )
        });
        let host = provider.host();
        info.host = Some(host.to_string());
        let token = token.ok_or(Deny::NoRoute)?;
        provider
            .check_request(req.method().as_str(), &upstream_pq, req.headers())
            .map_err(|deny| Failure::with_rule(deny, provider.name()))?;
        let kind = HostKind::Name(host.to_string());
        let target = Target {
            host: host.to_string(),
            kind,
            port: 443,
            tls: true,
        };
        let auth = Auth::Token(token);
        return exchange(
            inner,
            pool,
            req,
            Exchange {
                target,
                route: None,
                auth,
                pq: upstream_pq,
            },
            info,
        )
        .await;
    }
    internal(inner, req.uri().path(), info)
}

/// `GET http://claude-bottle.local/health` and `/ca.pem` (or origin-form);
/// any other path is `no-route`.
fn internal(inner: &Inner, path: &str, info: &mut Info) -> Result<Response<Body>, Failure> {
    let (ctype, body) = match path {
        "/health" => ("text/plain", Bytes::from_static(b"ok\n")),
        "/ca.pem" => (
            "application/x-pem-file",
            Bytes::copy_from_slice(inner.ca.cert_pem().as_bytes()),
        ),
        _ => return Err(Deny::NoRoute.into()),
    };
    info.kind = "internal";
    info.host.get_or_insert_with(|| INTERNAL_HOST.to_string());
    let status = StatusCode::OK;
    let mut ev = info.event("allow", inner);
    ev.status = Some(status.as_u16());
    ev.bytes = body.len() as u64;
    inner.audit.emit(&ev);
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    Ok(resp)
}

/// How an IP or a name is shown in events and refusals.
pub fn display_host(kind: &HostKind, raw: &str) -> String {
    match kind {
        HostKind::Name(n) => n.clone(),
        HostKind::Ip(ip) => ip.to_string(),
        HostKind::BadNumeric => raw.chars().take(64).collect(),
    }
}

/// The host string used to dial and for SNI (`[v6]` without brackets): the
/// name as classified, so routing, resolving and the leaf all read one.
pub fn target_host(kind: &HostKind, raw: &str) -> String {
    match kind {
        HostKind::Ip(ip) => ip.to_string(),
        HostKind::Name(n) => n.clone(),
        HostKind::BadNumeric => raw.to_ascii_lowercase().trim_end_matches('.').to_string(),
    }
}

/// The credential to put on a request: none, or the token at this index
/// of the configuration's `tokens`.
#[derive(Clone, Copy)]
pub enum Auth {
    None,
    Token(usize),
}

impl Auth {
    /// The token's index, for the connection pool ([`upstream::PoolKey`]).
    fn index(self) -> Option<usize> {
        match self {
            Auth::None => None,
            Auth::Token(i) => Some(i),
        }
    }

    fn token(self, inner: &Inner) -> Option<&Token> {
        match self {
            Auth::None => None,
            Auth::Token(i) => inner.cfg.tokens.get(i),
        }
    }

    /// Headers the proxy replaces, so they are neither forwarded nor DLP-scanned.
    fn replaced(self, inner: &Inner) -> Vec<HeaderName> {
        match self.token(inner) {
            None => vec![],
            Some(Token::Http { scheme, .. }) => vec![scheme.header()],
            Some(Token::Anthropic(_) | Token::Openai(_)) => inject::MODEL_AUTH_HEADERS.to_vec(),
        }
    }

    /// What a response to a request carrying this credential must not
    /// carry back (`echo`), made once per token when the proxy starts.
    fn echo_mask(self, inner: &Inner) -> Option<Arc<EchoMask>> {
        match self {
            Auth::None => None,
            Auth::Token(i) => inner.echo_masks.get(i).cloned().flatten(),
        }
    }

    fn apply(self, inner: &Inner, h: &mut HeaderMap) {
        match self.token(inner) {
            None => {}
            Some(Token::Http { scheme, secret, .. }) => {
                inject::apply_http_token(h, scheme, secret);
            }
            Some(Token::Anthropic(v)) => {
                inject::apply_anthropic(h, v);
            }
            Some(Token::Openai(v)) => {
                inject::apply_openai(h, v);
            }
        }
    }
}

/// The echo mask of a token: the secret, and for `Basic` the encoded value
/// the proxy sends and the password alone.
fn echo_mask_of(token: &Token) -> Option<Arc<EchoMask>> {
    let (secret, basic) = match token {
        Token::Http { scheme, secret, .. } => {
            (secret, matches!(scheme, crate::config::AuthScheme::Basic))
        }
        Token::Anthropic(secret) | Token::Openai(secret) => (secret, false),
    };
    let v = secret.expose().as_bytes();
    let mut values: Vec<Zeroizing<Vec<u8>>> = vec![Zeroizing::new(v.to_vec())];
    if basic {
        values.push(Zeroizing::new(inject::base64(v).into_bytes()));
        if let Some(colon) = v.iter().position(|&b| b == b':') {
            values.push(Zeroizing::new(v[colon + 1..].to_vec()));
        }
    }
    EchoMask::new(values.iter().map(|v| v.as_slice())).map(Arc::new)
}

/// One request on its way upstream.
pub struct Exchange {
    pub target: Target,
    /// `None` for the reverse proxy (its destination is fixed).
    pub route: Option<Arc<Route>>,
    pub auth: Auth,
    /// Origin-form path and query to send upstream.
    pub pq: String,
}

const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("proxy-connection"),
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::UPGRADE,
];

/// Removes hop-by-hop headers, including those named by `Connection`.
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
    // One pass over the names instead of a hashed removal per listed name:
    // most messages carry none, the rest one or two. Headers named by
    // `Connection` only count when a `Connection` header (itself in the
    // list) is present.
    let is_hop = |n: &HeaderName| HOP_BY_HOP.contains(n) || n == header::TRANSFER_ENCODING;
    if !h.keys().any(is_hop) {
        return;
    }
    let named: Vec<&str> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let present: Vec<HeaderName> = h
        .keys()
        .filter(|n| is_hop(n) || named.iter().any(|t| t.eq_ignore_ascii_case(n.as_str())))
        .cloned()
        .collect();
    for n in present {
        h.remove(n);
    }
}

/// Route rules, DLP, credential, then upstream; the shared path of forward,
/// intercepted and reverse requests.
pub async fn exchange(
    inner: &Arc<Inner>,
    pool: &Pool,
    mut req: Request<Incoming>,
    mut ex: Exchange,
    info: &mut Info,
) -> Result<Response<Body>, Failure> {
    // A credential the proxy injects travels inside TLS only, whichever
    // door the request came through: injecting it into plain HTTP would put
    // the real token on the wire in clear, and forwarding without it would
    // fail in a way nobody can read. The refusal is `port`: the agent asked
    // for the cleartext port of a host whose token needs https.
    if !ex.target.tls && !matches!(ex.auth, Auth::None) {
        return Err(Deny::Port.into());
    }
    // TRACE (and IIS's TRACK) asks the server to send the whole request
    // back, the injected credential included, in whatever form it likes
    // (the echo mask knows a few): never with a credential, neither as the
    // method nor as a method-override header's value. Methods are case-sensitive, but not every server
    // treats them so.
    let echoing = |m: &str| {
        ["TRACE", "TRACK"]
            .iter()
            .any(|t| m.trim().eq_ignore_ascii_case(t))
    };
    if !matches!(ex.auth, Auth::None)
        && (echoing(req.method().as_str())
            || crate::route::method_overrides(req.headers(), &ex.pq)
                .iter()
                .any(|v| v.as_deref().is_none_or(echoing)))
    {
        return Err(Deny::Method.into());
    }
    // WebSocket upgrades pass on routed requests after the route and DLP
    // checks of the handshake; with DLP on, the agent's frames are scanned
    // after it (`websocket.rs`).
    // Never with a credential: the upstream's frames would reach the agent
    // unmasked (`echo`). The upgrade fields are hop-by-hop and go, so the
    // upstream gets a plain request.
    let ws = ex.route.is_some() && matches!(ex.auth, Auth::None) && is_websocket(req.headers());
    let upgrade_slot = if ws {
        let slot = inner.tunnels.clone().try_acquire_owned();
        Some(slot.map_err(|_| Deny::TooLarge)?)
    } else {
        None
    };
    let client_upgrade = ws.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    // Before any check: a header `Connection` names is removed on the way
    // up, so a check that saw it (a `Content-Type` the form guard reads)
    // would judge another request than the one the upstream gets.
    strip_hop_by_hop(&mut parts.headers);
    // The proxy never waits for `100 Continue` (hyper sends the body at
    // once): an upstream that answered the expectation early would read
    // the body as the next request on the connection.
    parts.headers.remove(header::EXPECT);
    if let Some(route) = &ex.route {
        route
            .check_request(
                parts.method.as_str(),
                parts.uri.path_and_query().map_or("/", |p| p.as_str()),
                &parts.headers,
            )
            .map_err(|d| Failure::with_rule(d, route.name.clone()))?;
    }
    // Read before DLP, which may rewrite header values in `redact` mode.
    let form_method = ex.route.as_ref().and_then(|r| {
        FormMethod::for_request(parts.method.as_str(), r.methods.as_deref(), &parts.headers)
    });
    let mut verdict = Verdict::default();
    let dlp = &inner.dlp;
    if dlp.active() {
        if ex.route.is_some()
            && let HostKind::Name(n) = &ex.target.kind
        {
            scan::scan_host(dlp, n, &mut verdict).map_err(|rule| {
                info.host = Some(redact_for_log(dlp, n));
                Failure::with_rule(Deny::Dlp, rule)
            })?;
        }
        // Before the target, so a finding `log` lets through keeps the
        // event unscrubbed.
        scan::scan_method(dlp, parts.method.as_str(), &mut verdict).map_err(|rule| {
            info.method = redact_method_for_log(dlp, parts.method.as_str());
            Failure::with_rule(Deny::Dlp, rule)
        })?;
        match scan::scan_target(dlp, &ex.pq, &mut verdict) {
            Ok(Some(redacted)) => {
                info.path = Some(redact_path_for_log(dlp, parts.uri.path()));
                ex.pq = redacted;
            }
            // Clean, unless `log` mode let a finding through: then the
            // event redacts host and path itself.
            Ok(None) => info.scrubbed = verdict.flagged.is_empty(),
            Err(rule) => {
                info.path = Some(redact_path_for_log(dlp, parts.uri.path()));
                return Err(Failure::with_rule(Deny::Dlp, rule));
            }
        }
        let replaced = ex.auth.replaced(inner);
        let skip = |name: &HeaderName| {
            // Hop-by-hop headers are gone already (`strip_hop_by_hop` above).
            name == header::HOST || replaced.contains(name)
        };
        scan::scan_headers(dlp, &mut parts.headers, skip, &mut verdict)
            .map_err(|rule| Failure::with_rule(Deny::Dlp, rule))?;
    }
    if ws {
        set_upgrade_headers(&mut parts.headers);
        if dlp.active() {
            // The frames are scanned: no extension (permessage-deflate)
            // may turn them into something the scan cannot read.
            parts.headers.remove(header::SEC_WEBSOCKET_EXTENSIONS);
        }
    }
    ex.auth.apply(inner, &mut parts.headers);
    if !matches!(ex.auth, Auth::None) {
        // The response is searched for the credential as it streams
        // (`echo`), which it cannot do inside a compressed body, nor across
        // the pieces of a range request (the echo cut into slices that
        // each look clean).
        parts.headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
        parts.headers.remove(header::RANGE);
        parts.headers.remove(header::IF_RANGE);
        // Nor in a charset the agent picks (UTF-16 is masked too, but
        // there are more charsets than forms).
        parts.headers.remove(header::ACCEPT_CHARSET);
    }
    let host_header = host_header(&ex.target);
    parts.headers.insert(header::HOST, host_header);

    let has_body = !body.is_end_stream();
    // A body the server does not read (CL.0: a method that usually
    // carries none, or an endpoint that ignores it, such as a static file)
    // is taken for the start of the connection's next request: a request
    // line of the agent's, which the agent's next request (credential
    // injected) would complete, or a whole request past the route's
    // rules. Such requests get an upstream connection of their own: every
    // body on a route with method or path rules, and on any route a body
    // on a method other than POST, PUT or PATCH. With a credential injected
    // the next request's head would carry it into the agent's request (an
    // endpoint the reverse proxy refuses; a body the server stores, for the
    // agent to read or publish): only the model calls every turn makes,
    // which read their bodies, keep their connections (`reads_body`).
    let ruled = ex
        .route
        .as_ref()
        .is_some_and(|r| r.methods.is_some() || r.paths.is_some());
    let expected = matches!(parts.method, Method::POST | Method::PUT | Method::PATCH);
    let credential_safe = match ex.auth.token(inner) {
        None => true,
        Some(Token::Anthropic(_)) => Provider::Anthropic.reads_body(&ex.pq),
        Some(Token::Openai(_)) => Provider::Openai.reads_body(&ex.pq),
        Some(Token::Http { .. }) => false,
    };
    if has_body && (ruled || !expected || !credential_safe) {
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    let scanner = has_body.then(|| dlp.stream()).flatten();
    let inflater = match scanner {
        Some(_) => scan::body_coding(dlp, &parts.headers, &mut verdict)
            .map_err(|rule| Failure::with_rule(Deny::Dlp, rule))?,
        None => None,
    };
    let body: Body = body.map_err(|e| Box::new(e) as BoxError).boxed();
    let shared = Arc::new(Mutex::new(verdict));
    let body = match form_method {
        Some(guard) if has_body => FormMethodBody::new(body, guard, shared.clone()).boxed(),
        _ => body,
    };
    let body = match scanner {
        Some(scanner) => {
            if dlp.mode == crate::config::DlpMode::Redact && inflater.is_none() {
                // Redaction changes the length; let hyper chunk it.
                parts.headers.remove(header::CONTENT_LENGTH);
            }
            ScanBody::new(body, scanner, dlp.mode, shared.clone(), inner.held.clone())
                .inflating(inflater)
                .boxed()
        }
        None => body,
    };
    let capture = (inner.cfg.log == LogMode::Full).then(Capture::default);
    let body = match &capture {
        Some(c) => Watched::new(body, c.clone()).boxed(),
        None => body,
    };
    let ctx = SendCtx {
        shared,
        client_upgrade,
        upgrade_slot,
        capture,
    };
    send_and_wrap(inner, pool, parts, body, ex, info, ctx).await
}

fn is_websocket(h: &HeaderMap) -> bool {
    let has = |name: HeaderName, token: &str| {
        h.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    has(header::UPGRADE, "websocket") && has(header::CONNECTION, "upgrade")
}

fn set_upgrade_headers(h: &mut HeaderMap) {
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
}

fn host_header(t: &Target) -> HeaderValue {
    use std::fmt::Write;
    let default = if t.tls { 443 } else { 80 };
    // Exact capacity: the string becomes the value's bytes without a copy.
    let port_len = match t.port {
        p if p == default => 0,
        0..=9 => 2,
        10..=99 => 3,
        100..=999 => 4,
        1000..=9999 => 5,
        _ => 6,
    };
    let v6 = matches!(t.kind, HostKind::Ip(std::net::IpAddr::V6(_)));
    let mut s = String::with_capacity(t.host.len() + if v6 { 2 } else { 0 } + port_len);
    if v6 {
        s.push('[');
        s.push_str(&t.host);
        s.push(']');
    } else {
        s.push_str(&t.host);
    }
    if t.port != default {
        let _ = write!(s, ":{}", t.port);
    }
    HeaderValue::from_maybe_shared(Bytes::from(s))
        .unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// Host name `s` with every finding replaced, for events and refusal
/// bodies: the content rules, then the host checks (labels, known secrets
/// across dots).
pub fn redact_for_log(dlp: &Dlp, s: &str) -> String {
    // Both checks, always: a decoy the content rules catch must not keep
    // the label checks from blanking a secret split across labels.
    let mut findings = dlp.scan(s.as_bytes());
    findings.extend(dlp.scan_host(s));
    let out = crate::dlp::apply_redactions(s.as_bytes(), &findings);
    String::from_utf8_lossy(&out).into_owned()
}

/// Request path `s` with every finding replaced, for events. The content
/// rules only, as for the URL DLP scans: the host-label checks would take
/// any long or random-looking path (a commit hash) for exfiltration and
/// blank it from the log.
pub fn redact_path_for_log(dlp: &Dlp, s: &str) -> String {
    let out = crate::dlp::apply_redactions(s.as_bytes(), &dlp.scan(s.as_bytes()));
    String::from_utf8_lossy(&out).into_owned()
}

/// Request method `m` with every finding replaced, for events. Methods
/// recur (`GET`, `POST`): a clean one is remembered, not rescanned.
pub fn redact_method_for_log(dlp: &Dlp, m: &str) -> String {
    let findings = dlp.scan_recurring(m.as_bytes());
    if findings.is_empty() {
        return m.to_string();
    }
    let out = crate::dlp::apply_redactions(m.as_bytes(), &findings);
    String::from_utf8_lossy(&out).into_owned()
}

async fn send_and_wrap(
    inner: &Arc<Inner>,
    pool: &Pool,
    mut parts: http::request::Parts,
    body: Body,
    ex: Exchange,
    info: &mut Info,
    ctx: SendCtx,
) -> Result<Response<Body>, Failure> {
    let SendCtx {
        shared,
        client_upgrade,
        upgrade_slot,
        capture,
    } = ctx;
    parts.uri = Uri::try_from(ex.pq.as_str()).map_err(|_| Deny::Malformed)?;
    parts.version = Version::HTTP_11;
    // The request body may still be streaming (and be scanned) after the
    // response, and with it the event, has ended. A request without a body
    // (most of them) has its verdict settled already: nothing to share.
    let late = inner.audit.enabled() && inner.dlp.active() && !body.is_end_stream();
    let report = late.then(|| {
        Arc::new(Report {
            audit: inner.audit.clone(),
            verdict: shared.clone(),
            mode: inner.dlp.mode,
            written: Mutex::new(None),
        })
    });
    let body = match &report {
        Some(r) => Watched::new(body, LateFindings(r.clone())).boxed(),
        None => body,
    };
    let req = Request::from_parts(parts, body);
    // The event is made before the request goes: if this exchange is
    // dropped while it waits for the answer (the client went away, the
    // sidecar is stopping), the upstream may have had the whole request,
    // and the log must say so.
    let sending = std::sync::atomic::AtomicBool::new(false);
    let unanswered = Unanswered(
        &sending,
        inner.audit.enabled().then(|| {
            let mut ev = info.event("allow", inner);
            if report.is_none()
                && let Ok(v) = shared.lock()
            {
                // No body left to scan: the verdict is settled.
                judge_event(&mut ev, &v, inner.dlp.mode);
            }
            Tracked {
                bytes: 0,
                pending: Some((inner.audit.clone(), ev, info.started)),
                full_log: None,
                report: report.clone(),
            }
        }),
    );
    let sent = upstream::send(inner, pool, &ex.target, ex.auth.index(), req, &sending).await;
    // Answered or refused: from here the response body or the refusal
    // writes the event.
    let ev = unanswered.answered();
    let verdict = shared.lock().map(|v| v.clone()).unwrap_or_default();
    let mut resp = match sent {
        Ok(r) => r,
        Err(deny) => {
            if let Some(rule) = verdict.blocked {
                return Err(Failure::with_rule(Deny::Dlp, rule));
            }
            if verdict.too_large {
                return Err(Deny::TooLarge.into());
            }
            if verdict.method_override {
                let rule = ex
                    .route
                    .as_ref()
                    .map(|r| r.name.clone())
                    .unwrap_or_default();
                return Err(Failure::with_rule(Deny::Method, rule));
            }
            return Err(deny.into());
        }
    };
    let echo_mask = ex.auth.echo_mask(inner);
    if let Some(mask) = &echo_mask {
        if echo::compressed(resp.headers()) && !resp.body().is_end_stream() {
            // Asked for `identity`, sent compressed: an echo of the
            // credential inside could not be masked.
            return Err(Failure::with_rule(
                Deny::UpstreamError,
                echo::COMPRESSED_RULE,
            ));
        }
        if resp.status() == StatusCode::PARTIAL_CONTENT {
            // No range was asked for; a part could hold a slice of an echo.
            return Err(Failure::with_rule(Deny::UpstreamError, echo::PARTIAL_RULE));
        }
        mask.mask_headers(resp.headers_mut());
        // A reason phrase other than the standard one is kept by hyper and
        // sent on: a server may put request data in it.
        resp.extensions_mut().remove::<hyper::ext::ReasonPhrase>();
    }
    let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
    if switching {
        // Only a client that asked for an upgrade gets one.
        let Some(client_upgrade) = client_upgrade else {
            return Err(Deny::UpstreamError.into());
        };
        let scanned = inner.dlp.active();
        if scanned
            && resp
                .headers()
                .contains_key(header::SEC_WEBSOCKET_EXTENSIONS)
        {
            // An extension nobody asked for: its frames could not be read.
            return Err(Deny::UpstreamError.into());
        }
        let upstream_upgrade = hyper::upgrade::on(&mut resp);
        let report = inner.audit.enabled().then(|| {
            (
                inner.audit.clone(),
                info.event("allow", inner),
                info.started,
            )
        });
        let dlp = inner.dlp.clone();
        let mode = dlp.mode;
        let idle = inner.cfg.limits.tunnel_idle;
        tokio::spawn(async move {
            if let (Ok(c), Ok(u)) = (client_upgrade.await, upstream_upgrade.await) {
                let activity = crate::idle::Activity::new();
                let (mut c, mut u) = (
                    activity.watch(TokioIo::new(c)),
                    activity.watch(TokioIo::new(u)),
                );
                let ended = if scanned {
                    let mut frames = websocket::ClientFrames::new(dlp);
                    if let Some((audit, ev, started)) = report.clone() {
                        frames = frames.on_flag(move |rule| {
                            report_websocket(
                                &audit,
                                ev,
                                started,
                                websocket::Ended::Flagged(mode, rule),
                            );
                        });
                    }
                    let relay = websocket::relay(c, u, frames);
                    match activity.until_idle(idle, relay).await {
                        Some(stop) => stop.map(websocket::Ended::Stopped),
                        None => Some(websocket::Ended::Idle),
                    }
                } else {
                    let relay = tokio::io::copy_bidirectional(&mut c, &mut u);
                    let idled = activity.until_idle(idle, relay).await.is_none();
                    idled.then_some(websocket::Ended::Idle)
                };
                if let (Some(ended), Some((audit, ev, started))) = (ended, report) {
                    report_websocket(&audit, ev, started, ended);
                }
            }
            drop(upgrade_slot);
        });
    }
    let (mut rp, rbody) = resp.into_parts();
    strip_hop_by_hop(&mut rp.headers);
    if switching {
        set_upgrade_headers(&mut rp.headers);
    }
    let rbody = rbody.map_err(|e| Box::new(e) as BoxError).boxed();
    let rbody = match echo_mask {
        Some(mask) => MaskedBody::new(rbody, mask).boxed(),
        None => rbody,
    };
    let Some(mut ev) = ev else {
        // No event to write (and so no `log: full` capture): pass the body on.
        return Ok(Response::from_parts(rp, rbody));
    };
    judge_event(&mut ev, &verdict, inner.dlp.mode);
    ev.status = Some(rp.status.as_u16());
    let full_log = capture.map(|req| FullLog {
        dlp: inner.log_redactor.clone(),
        request: req,
        response: Capture::default(),
    });
    let tracked = Tracked {
        bytes: 0,
        pending: Some((inner.audit.clone(), ev, info.started)),
        full_log,
        report,
    };
    Ok(Response::from_parts(
        rp,
        Watched::new(rbody, tracked).boxed(),
    ))
}

/// An allowed request's event as its request's DLP verdict says now: a
/// block or finding the body scan made after the response head counts.
fn judge_event(ev: &mut Event, v: &Verdict, mode: DlpMode) {
    if let Some(rule) = &v.blocked {
        ev.decision = "block";
        ev.reason = Some(Deny::Dlp.as_str());
        ev.rule = Some(rule.clone());
    } else if v.too_large {
        ev.decision = "block";
        ev.reason = Some(Deny::TooLarge.as_str());
    } else if let Some(rule) = v.flagged.first() {
        if mode == DlpMode::Redact {
            ev.decision = "redact";
        }
        ev.reason = Some(Deny::Dlp.as_str());
        ev.rule = Some(rule.clone());
    }
}

/// What a request's response body and request body share about its event:
/// whichever ends last makes sure the log has what the scan found.
struct Report {
    audit: Audit,
    verdict: SharedVerdict,
    mode: DlpMode,
    /// The event as the response body wrote it, once written.
    written: Mutex<Option<Event>>,
}

/// Held by a request body: when the body is done (sent or dropped), writes
/// a second event if the scan found something after the request's event
/// was written. An upstream that answers before reading the whole body
/// would otherwise leave a block, or a finding `log` let through, unlogged.
struct LateFindings(Arc<Report>);

impl Watch for LateFindings {}

impl Drop for LateFindings {
    fn drop(&mut self) {
        let r = &self.0;
        let Ok(written) = r.written.lock() else {
            return;
        };
        let Some(ev) = written.as_ref() else {
            // Not written yet: the response body reads the final verdict.
            return;
        };
        let Ok(verdict) = r.verdict.lock() else {
            return;
        };
        let mut late = ev.clone();
        judge_event(&mut late, &verdict, r.mode);
        if (late.decision, &late.rule) != (ev.decision, &ev.rule) {
            late.bytes = 0;
            r.audit.emit(&late);
        }
    }
}

/// The event of a WebSocket the frame scan stopped or let a finding
/// through, or that the idle bound closed (its handshake has an event of
/// its own already); nothing for a clean one that ended by itself.
fn report_websocket(audit: &Audit, mut ev: Event, started: Instant, what: websocket::Ended<'_>) {
    match what {
        websocket::Ended::Stopped(websocket::Stop::Dlp(rule)) => {
            ev.decision = "block";
            ev.reason = Some(Deny::Dlp.as_str());
            ev.rule = Some(rule);
        }
        websocket::Ended::Stopped(websocket::Stop::TooLarge) => {
            ev.decision = "block";
            ev.reason = Some(Deny::TooLarge.as_str());
        }
        websocket::Ended::Stopped(websocket::Stop::Malformed(what)) => {
            ev.decision = "block";
            ev.reason = Some(Deny::Malformed.as_str());
            ev.rule = Some(what.to_string());
        }
        websocket::Ended::Idle => {
            ev.reason = Some(Deny::Timeout.as_str());
        }
        websocket::Ended::Flagged(mode, rule) => {
            if mode == DlpMode::Redact {
                ev.decision = "redact";
            }
            ev.reason = Some(Deny::Dlp.as_str());
            ev.rule = Some(rule.to_string());
        }
    }
    ev.ms = millis(started.elapsed());
    audit.emit(&ev);
}

/// An allowed request's event while its exchange waits for the upstream's
/// answer; dropped with the exchange once the request may have gone
/// (a connection was there to send it on), it writes the event (no
/// status). Dropped before, while the name was looked up or the
/// connection made, nothing went: no event.
struct Unanswered<'a>(&'a std::sync::atomic::AtomicBool, Option<Tracked>);

impl Unanswered<'_> {
    /// The event, now that an answer or a refusal will write it.
    fn answered(mut self) -> Option<Event> {
        let mut t = self.1.take()?;
        t.pending.take().map(|(_, ev, _)| ev)
    }
}

impl Drop for Unanswered<'_> {
    fn drop(&mut self) {
        if !self.0.load(std::sync::atomic::Ordering::Relaxed)
            && let Some(t) = self.1.as_mut()
        {
            t.pending = None;
        }
    }
}

/// Held by a response body: writes the request's audit event when the body
/// ends, with the byte count and total time.
struct Tracked {
    bytes: u64,
    pending: Option<(Audit, Event, Instant)>,
    full_log: Option<FullLog>,
    report: Option<Arc<Report>>,
}

/// What `send_and_wrap` needs besides the request itself.
pub struct SendCtx {
    shared: Arc<Mutex<Verdict>>,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    /// A WebSocket outlives its client connection's slot, as a tunnel
    /// does: it holds a tunnel slot while it is open.
    upgrade_slot: Option<tokio::sync::OwnedSemaphorePermit>,
    capture: Option<Capture>,
}

/// The first [`FULL_LOG_BODY_BYTES`] of a body, for `log: full`.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    fn add(&self, data: &[u8]) {
        if let Ok(mut v) = self.0.lock() {
            let room = (FULL_LOG_BODY_BYTES + FULL_LOG_LOOKAHEAD).saturating_sub(v.len());
            v.extend_from_slice(&data[..room.min(data.len())]);
        }
    }

    /// The first [`FULL_LOG_BODY_BYTES`] with every DLP finding replaced.
    /// Scanned with the bytes after them: a secret that straddles the cut
    /// no longer matches once cut, and its start would be logged as is.
    fn redacted(&self, dlp: &Dlp) -> Option<String> {
        let v = self.0.lock().ok()?;
        if v.is_empty() {
            return None;
        }
        let shown = &v[..v.len().min(FULL_LOG_BODY_BYTES)];
        let findings: Vec<_> = dlp
            .scan(&v)
            .into_iter()
            .filter(|f| f.range.start < shown.len() as u64)
            .collect();
        let out = crate::dlp::apply_redactions(shown, &findings);
        Some(String::from_utf8_lossy(&out).into_owned())
    }
}

struct FullLog {
    dlp: Dlp,
    request: Capture,
    response: Capture,
}

/// Copies the start of a body as it passes.
impl Watch for Capture {
    fn data(&mut self, d: &[u8]) {
        self.add(d);
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if let Some((audit, mut ev, started)) = self.pending.take() {
            ev.bytes = self.bytes;
            ev.ms = millis(started.elapsed());
            if let Some(full) = &self.full_log {
                ev.request_body = full.request.redacted(&full.dlp);
                ev.response_body = full.response.redacted(&full.dlp);
            }
            match &self.report {
                Some(r) => {
                    // Judged and written under the report's lock, so the
                    // request body either sees it written or leaves the
                    // verdict for this event to read.
                    let Ok(mut written) = r.written.lock() else {
                        return;
                    };
                    if let Ok(v) = r.verdict.lock() {
                        judge_event(&mut ev, &v, r.mode);
                    }
                    audit.emit(&ev);
                    ev.request_body = None;
                    ev.response_body = None;
                    *written = Some(ev);
                }
                None => audit.emit(&ev),
            }
        }
    }
}

impl Watch for Tracked {
    fn data(&mut self, d: &[u8]) {
        self.bytes += d.len() as u64;
        if let Some(full) = &self.full_log {
            full.response.add(d);
        }
    }
}

/// Sees a body's data frames as they pass; what it does when the body ends
/// is its own `Drop` (a body is dropped whether it was read to the end,
/// cut off, or never polled).
trait Watch: Send + Sync + Unpin + 'static {
    fn data(&mut self, _data: &[u8]) {}
}

/// A body passed on unchanged, watched by `W`.
struct Watched<W> {
    inner: Body,
    watch: W,
}

impl<W: Watch> Watched<W> {
    fn new(inner: Body, watch: W) -> Self {
        Watched { inner, watch }
    }
}

impl<W: Watch> HttpBody for Watched<W> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(f))) = &r
            && let Some(d) = f.data_ref()
        {
            self.watch.data(d);
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
