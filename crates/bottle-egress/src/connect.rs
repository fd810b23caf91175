//! CONNECT tunnels: the host check (and SSRF guard) before answering, then
//! either a blind byte pipe (passthrough routes) or TLS interception with a
//! leaf from the bottle's CA, where every request inside is checked like a
//! plain one and must name the same host as the CONNECT.

use std::sync::Arc;

use http::{Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::addr::{HostKind, classify_host};
use crate::audit::millis;
use crate::client_hello::{self, Hello};
use crate::error::Deny;
use crate::inject;
use crate::route::{Route, Scheme, Tls};
use crate::scan::{self, Verdict};
use crate::server::{
    Auth, Exchange, Failure, Info, Inner, display_host, exchange, full, redact_for_log,
    serve_client, target_host,
};
use crate::upstream::{self, Body, Pool, Target};

/// What the inside of an intercepted tunnel is bound to.
#[derive(Debug)]
pub struct Tunnel {
    pub host: String,
    pub kind: HostKind,
    pub port: u16,
    pub route: Arc<Route>,
    /// The SNI the client sent, lower-cased.
    pub sni: Option<String>,
}

/// Answers a CONNECT: 200 and a tunnel, or a refusal.
pub async fn handle(
    inner: &Arc<Inner>,
    pool: &Pool,
    req: &mut Request<Incoming>,
    info: &mut Info,
) -> Result<Response<Body>, Failure> {
    info.kind = "connect";
    let auth = req.uri().authority().cloned().ok_or(Deny::Malformed)?;
    if req.uri().scheme().is_some() || auth.as_str().contains('@') {
        return Err(Deny::Malformed.into());
    }
    let port = auth.port_u16().ok_or(Deny::Malformed)?;
    let raw = auth.host();
    let kind = classify_host(raw);
    info.host = Some(display_host(&kind, raw));
    if inner.cfg.is_own(&kind, port) {
        // The proxy serves its own names (and addresses) in clear only; a
        // tunnel to one would be a tunnel to whatever that name resolves to.
        return Err(Deny::NoRoute.into());
    }
    let route = inner.cfg.routes.find(&kind, port, Scheme::Https)?.clone();
    info.rule = Some(route.name.clone());
    if let HostKind::Name(n) = &kind {
        // DNS-style exfiltration (`<secret>.allowed.example`) is caught here,
        // even for tunnels we never decrypt.
        let mut v = Verdict::default();
        if let Err(rule) = scan::scan_host(&inner.dlp, n, &mut v) {
            info.host = Some(redact_for_log(&inner.dlp, n));
            return Err(Failure::with_rule(Deny::Dlp, rule));
        }
        // Vetted only if DLP looked: with `dlp: off` the event redacts.
        info.scrubbed = inner.dlp.active() && v.flagged.is_empty();
    }
    let target = Target {
        host: target_host(&kind, raw),
        kind: kind.clone(),
        port,
        tls: false,
    };
    // The guard runs before the 200, so a refused address is a refused CONNECT.
    let vetted = upstream::vet(inner, &target).await?;
    let slot = inner
        .tunnels
        .clone()
        .try_acquire_owned()
        .map_err(|_| Deny::TooLarge)?;
    let on_upgrade = hyper::upgrade::on(req);
    let started = info.started;
    let ev = info_event(info, inner);
    match route.tls {
        Tls::Passthrough => {
            let up = upstream::dial(inner, &target, &vetted).await?;
            let audit = inner.audit.clone();
            let idle = inner.cfg.limits.tunnel_idle;
            let host = target.host.clone();
            let mut record = TunnelRecord {
                audit,
                ev,
                activity: crate::idle::Activity::new(),
                started,
            };
            tokio::spawn(async move {
                let Ok(client) = on_upgrade.await else {
                    return;
                };
                let activity = record.activity.clone();
                let client = activity.watch(TokioIo::new(client));
                let up = activity.watch(up);
                let relay = passthrough(client, up, &host);
                match activity.until_idle(idle, relay).await {
                    Some(Ok(())) => {}
                    Some(Err(deny)) => record.ended("block", deny),
                    None => record.ended("allow", Deny::Timeout),
                }
                drop(slot);
            });
        }
        Tls::Intercept => {
            let tunnel = Tunnel {
                host: target.host.clone(),
                kind,
                port,
                route,
                sni: None,
            };
            let inner = inner.clone();
            let pool = pool.clone();
            inner.audit.emit(&ev);
            tokio::spawn(async move {
                let Ok(client) = on_upgrade.await else {
                    return;
                };
                intercept(inner, pool, tunnel, client).await;
                drop(slot);
            });
        }
    }
    Ok(Response::new(full("")))
}

/// Relays a passthrough tunnel. The client's first bytes, when they open a
/// TLS handshake, must ask for the CONNECT's `host` (or for no name): a
/// ClientHello for another name is refused before any byte of it goes
/// upstream (`client_hello.rs`). The upstream's bytes flow from the start,
/// so protocols where the server speaks first still work.
async fn passthrough<C, U>(client: C, up: U, host: &str) -> Result<(), Deny>
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let (mut cr, mut cw) = tokio::io::split(client);
    let (mut ur, mut uw) = tokio::io::split(up);
    let down = async {
        let _ = tokio::io::copy(&mut ur, &mut cw).await;
        let _ = cw.shutdown().await;
    };
    let upward = async {
        let mut first = Vec::with_capacity(2048);
        let mut buf = [0u8; 4096];
        loop {
            match client_hello::read(&first) {
                Hello::NeedMore if first.len() <= client_hello::MAX_HELLO + 5 => {}
                Hello::NeedMore | Hello::Malformed => return Err(Deny::Malformed),
                Hello::Name(Some(name)) if !same_host(&name, host) => {
                    return Err(Deny::HostMismatch);
                }
                Hello::NotTls | Hello::Name(_) => break,
            }
            match cr.read(&mut buf).await {
                Ok(0) | Err(_) => return Ok(()),
                Ok(n) => first.extend_from_slice(&buf[..n]),
            }
        }
        if uw.write_all(&first).await.is_ok() {
            let _ = tokio::io::copy(&mut cr, &mut uw).await;
        }
        let _ = uw.shutdown().await;
        Ok(())
    };
    tokio::pin!(down, upward);
    tokio::select! {
        r = &mut upward => {
            if r.is_ok() {
                down.await;
            }
            r
        }
        () = &mut down => upward.await,
    }
}

/// A passthrough tunnel's event (its only record), written when the
/// tunnel ends however it ends: closed, idle, refused for its
/// ClientHello, or dropped with its runtime when the proxy stops. Written
/// from `drop` because the last case runs no more code of the task: a
/// tunnel still open at shutdown would otherwise leave no trace of the
/// bytes it carried.
struct TunnelRecord {
    audit: crate::audit::Audit,
    ev: crate::audit::Event,
    activity: crate::idle::Activity,
    started: std::time::Instant,
}

impl TunnelRecord {
    /// The tunnel ended for a reason (a refused ClientHello, the idle bound).
    fn ended(&mut self, decision: &'static str, why: Deny) {
        self.ev.decision = decision;
        self.ev.reason = Some(why.as_str());
    }
}

impl Drop for TunnelRecord {
    fn drop(&mut self) {
        self.ev.bytes = self.activity.bytes() / 2;
        self.ev.ms = millis(self.started.elapsed());
        self.audit.emit(&self.ev);
    }
}

fn info_event(info: &Info, inner: &Inner) -> crate::audit::Event {
    let mut e = info.event("allow", inner);
    e.path = None;
    e.status = Some(StatusCode::OK.as_u16());
    e
}

/// Boxed with an explicit `Send` type: the tunnel serves requests that may
/// themselves be CONNECTs, and the compiler cannot prove `Send` for that cycle.
fn intercept(
    inner: Arc<Inner>,
    pool: Pool,
    tunnel: Tunnel,
    client: hyper::upgrade::Upgraded,
) -> crate::upstream::BoxFuture<'static, ()> {
    Box::pin(intercept_inner(inner, pool, tunnel, client))
}

async fn intercept_inner(
    inner: Arc<Inner>,
    pool: Pool,
    mut tunnel: Tunnel,
    client: hyper::upgrade::Upgraded,
) {
    // One config per host, cached with its leaf: a client reconnecting to
    // this host can resume its session; no other host's config knows it.
    let cfg = match inner.ca.server_config(&tunnel.host) {
        Ok(cfg) => cfg,
        Err(e) => {
            tracing::warn!("TLS config for {}: {e}", tunnel.host);
            return;
        }
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
    let accepted = tokio::time::timeout(
        inner.cfg.limits.tls_handshake,
        acceptor.accept(TokioIo::new(client)),
    )
    .await;
    let Ok(Ok(tls)) = accepted else {
        tracing::debug!("client TLS handshake for {} failed", tunnel.host);
        return;
    };
    tunnel.sni = tls
        .get_ref()
        .1
        .server_name()
        .map(|s| s.strip_suffix('.').unwrap_or(s).to_ascii_lowercase());
    serve_client(inner, pool, tls, Some(Arc::new(tunnel))).await;
}

fn same_host(a: &str, b: &str) -> bool {
    // As the CONNECT authority was read: one trailing dot at most, so
    // `pass.test..` is not `pass.test`.
    match (classify_host(a), classify_host(b)) {
        (HostKind::Ip(x), HostKind::Ip(y)) => x == y,
        (HostKind::Name(x), HostKind::Name(y)) => x == y,
        _ => false,
    }
}

/// One request inside an intercepted tunnel.
pub async fn inside(
    inner: &Arc<Inner>,
    pool: &Pool,
    tunnel: &Tunnel,
    req: Request<Incoming>,
    info: &mut Info,
) -> Result<Response<Body>, Failure> {
    info.kind = "http";
    info.host = Some(display_host(&tunnel.kind, &tunnel.host));
    info.rule = Some(tunnel.route.name.clone());
    // The bounds of the front door (target length, HTTP version) hold in
    // a tunnel too.
    crate::server::check_head(&req)?;
    let mismatch = || Failure::with_rule(Deny::HostMismatch, tunnel.route.name.clone());
    if let Some(sni) = &tunnel.sni
        && !same_host(sni, &tunnel.host)
    {
        return Err(mismatch());
    }
    let hosts: Vec<_> = req.headers().get_all(header::HOST).iter().collect();
    if hosts.len() != 1 {
        return Err(Deny::HostField.into());
    }
    let host_auth: http::uri::Authority = hosts[0]
        .to_str()
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(Deny::HostField)?;
    if !same_host(host_auth.host(), &tunnel.host)
        || host_auth.port_u16().unwrap_or(443) != tunnel.port
    {
        return Err(mismatch());
    }
    if let Some(a) = req.uri().authority()
        && (!same_host(a.host(), &tunnel.host) || a.port_u16().unwrap_or(443) != tunnel.port)
    {
        return Err(mismatch());
    }
    if req.method() == http::Method::CONNECT {
        return Err(Deny::Malformed.into());
    }
    let auth = inject::http_token(&inner.cfg.tokens, &tunnel.kind).map_or(Auth::None, Auth::Token);
    let target = Target {
        host: tunnel.host.clone(),
        kind: tunnel.kind.clone(),
        port: tunnel.port,
        tls: true,
    };
    let pq = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let ex = Exchange {
        target,
        route: Some(tunnel.route.clone()),
        auth,
        pq,
    };
    exchange(inner, pool, req, ex, info).await
}
