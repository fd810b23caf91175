//! The smart-HTTP server: `/<name>.git/...` per configured repo, answered by
//! the real `git http-backend` through the CGI bridge.
//!
//! Only the smart endpoints exist (`info/refs?service=…`,
//! `git-upload-pack`, `git-receive-pack`); the dumb protocol's file paths
//! are not served. Before upload-pack (and the receive-pack
//! advertisement) the mirror is refreshed from the upstream; if that fails
//! the client gets `upstream unreachable: …` and no data (fail closed).
//! Pushes to one repo are serialised with its refreshes, so a push always
//! sees the refs it was advertised.
//!
//! The gate shares the sidecar's process with the egress proxy, so nothing
//! a client does may hold its resources without bound: connections are
//! capped (more wait in the backlog), a request head must arrive within
//! the header read timeout, git children are capped (more requests queue),
//! and a request waiting for a busy repository gives up with 503.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bottle_secret::Secret;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::process::Command;
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore};

use crate::Error;
use crate::audit::{AuditSink, Event};
use crate::cgi::{self, Bounds, ChannelBody, Cut, WhenCut};
use crate::config::{GateConfig, GateSecrets};
use crate::credentials::{self, Env};
use crate::guard::{self, Refused};
use crate::hook::{HOOK_ENV, HookConfig, Report};
use crate::limits::Limits;
use crate::mirror;
use crate::stalled::WriteBound;

/// A fetch POST without a discovery request first refreshes again when the
/// last refresh is older than this (a clone's discovery and POSTs come
/// within a second; refreshing three times per clone would triple the
/// upstream round trips).
const REFRESH_REUSE: Duration = Duration::from_secs(10);
/// Upload-pack request bodies (wants and haves) are small; bound them.
const MAX_FETCH_REQUEST: u64 = 256 << 20;

/// How the gate runs, beyond its configuration.
pub struct Options {
    /// The pre-receive hook command: argv of a program that calls
    /// [`crate::hook::main`] (`[claude-bottle, sidecar, hook, pre-receive]`).
    pub hook_command: Vec<String>,
    pub audit: Arc<dyn AuditSink>,
    pub limits: Limits,
    /// `git http-backend`; `None` finds it with `git --exec-path`.
    pub http_backend: Option<PathBuf>,
}

struct RepoState {
    last_refresh: Option<Instant>,
    head_set: bool,
}

struct Inner {
    config: GateConfig,
    secrets: GateSecrets,
    options: Options,
    http_backend: PathBuf,
    repos: BTreeMap<String, Arc<Mutex<RepoState>>>,
    base_env: Env,
    counter: AtomicU64,
    /// The SSRF guard's name lookups ([`guard::SystemResolver`] but in tests).
    resolver: Arc<dyn guard::Resolver>,
    git_slots: GitSlots,
    /// Refusals of requests that cost the agent nothing (see [`Gate::refuse`]).
    refusals: std::sync::Mutex<RefusalWindow>,
    /// Pushes whose outcome is not known yet ([`PushRecord`]).
    pushing: Arc<AtomicU64>,
}

/// How long [`Gate::serve`], once told to stop, waits for the pushes it
/// is running: a hook may be forwarding upstream, and the sidecar's stop
/// gives it 5 s before the engine kills it.
const PUSH_GRACE: Duration = Duration::from_secs(4);

/// A push's event until its outcome is known. Dropped unwritten, when the
/// gate stopped while the push ran (its task dropped with the runtime),
/// it writes the event as cut short: the hook may have been forwarding,
/// and the upstream may have the push.
struct PushRecord {
    audit: Arc<dyn AuditSink>,
    event: Option<Event>,
    pushing: Arc<AtomicU64>,
}

impl PushRecord {
    fn new(audit: Arc<dyn AuditSink>, event: Event, pushing: Arc<AtomicU64>) -> Self {
        pushing.fetch_add(1, Ordering::SeqCst);
        PushRecord {
            audit,
            event: Some(event),
            pushing,
        }
    }

    /// The event, for the caller to complete and write (or drop).
    fn take(&mut self) -> Option<Event> {
        self.event.take()
    }
}

impl Drop for PushRecord {
    fn drop(&mut self) {
        self.pushing.fetch_sub(1, Ordering::SeqCst);
        if let Some(mut e) = self.event.take() {
            e.reason = Some("timeout".into());
            e.message =
                Some("the gate stopped during the push; the upstream may have received it".into());
            self.audit.record(e);
        }
    }
}

/// Most refusal events of requests the gate serves nothing for written in
/// one second (as the proxy's); the rest are counted.
const REFUSAL_EVENTS_PER_SECOND: u32 = 40;

/// The current second's refusal events: written, and held back.
#[derive(Default)]
struct RefusalWindow {
    second: u64,
    written: u32,
    held: u64,
}

/// The git children's slots ([`Limits::max_git_processes`]). A fetch takes
/// one of the fewer fetch slots first, so the slots kept for pushes
/// ([`Limits::git_processes_kept_for_pushes`]) are never all held by
/// fetches.
struct GitSlots {
    any: Arc<Semaphore>,
    fetch: Arc<Semaphore>,
}

/// A git child's slot, held until it has exited.
struct Slot {
    _any: OwnedSemaphorePermit,
    _fetch: Option<OwnedSemaphorePermit>,
}

impl GitSlots {
    fn new(limits: &Limits) -> Self {
        let all = limits.max_git_processes.max(1);
        let fetch = all
            .saturating_sub(limits.git_processes_kept_for_pushes)
            .max(1);
        GitSlots {
            any: Arc::new(Semaphore::new(all)),
            fetch: Arc::new(Semaphore::new(fetch)),
        }
    }

    /// Waits for a slot (in order of arrival).
    async fn take(&self, fetch: bool) -> Slot {
        let fetch = if fetch {
            Some(permit(&self.fetch).await)
        } else {
            None
        };
        Slot {
            _any: permit(&self.any).await,
            _fetch: fetch,
        }
    }
}

/// A permit of a semaphore the gate never closes.
async fn permit(s: &Arc<Semaphore>) -> OwnedSemaphorePermit {
    match s.clone().acquire_owned().await {
        Ok(p) => p,
        // Only a closed semaphore fails, and one would have no permit to
        // give: wait as for a busy one.
        Err(_) => std::future::pending().await,
    }
}

/// A prepared gate: state folder, mirrors, key files and hook in place.
#[derive(Clone)]
pub struct Gate(Arc<Inner>);

fn mkdir_private(p: &Path) -> Result<(), Error> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(p)
        .map_err(|e| Error::Io(format!("creating {}: {e}", p.display())))
}

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

async fn find_http_backend(env: &Env) -> Result<PathBuf, Error> {
    let mut c = Command::new("git");
    c.env_clear();
    for (k, v) in env {
        c.env(k, v.expose());
    }
    let out = c
        .arg("--exec-path")
        .output()
        .await
        .map_err(|e| Error::Io(format!("cannot run git: {e}")))?;
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let p = PathBuf::from(dir).join("git-http-backend");
    if !p.exists() {
        return Err(Error::Io(format!("{} not found", p.display())));
    }
    Ok(p)
}

impl Gate {
    pub async fn new(
        config: GateConfig,
        secrets: GateSecrets,
        options: Options,
    ) -> Result<Gate, Error> {
        Gate::with_resolver(config, secrets, options, Arc::new(guard::SystemResolver)).await
    }

    /// [`Gate::new`] with the SSRF guard's name lookups answered by
    /// `resolver` instead of the system's. For tests only: git still asks
    /// the system, so a test can stage DNS rebinding (the guard told one
    /// address, git another) and prove the pin to the vetted address holds.
    pub async fn with_resolver(
        config: GateConfig,
        secrets: GateSecrets,
        options: Options,
        resolver: Arc<dyn guard::Resolver>,
    ) -> Result<Gate, Error> {
        config.validate(&secrets)?;
        if options.hook_command.is_empty() {
            return Err(Error::Config("hook_command is empty".into()));
        }
        let sd = &config.state_dir;
        for sub in ["", "repos", "hooks", "tmp", "home", "keys"] {
            mkdir_private(&sd.join(sub))?;
        }
        credentials::write_key_files(&config, &secrets)?;
        write_hook_script(sd, &options.hook_command)?;
        check_hook_runs(sd)?;
        let base_env = credentials::base_env(sd);
        let http_backend = match &options.http_backend {
            Some(p) => p.clone(),
            None => find_http_backend(&base_env).await?,
        };
        let mut repos = BTreeMap::new();
        for name in config.repos.keys() {
            mirror::ensure(sd, name, &base_env)
                .await
                .map_err(Error::Io)?;
            repos.insert(
                name.clone(),
                Arc::new(Mutex::new(RepoState {
                    last_refresh: None,
                    head_set: false,
                })),
            );
        }
        let git_slots = GitSlots::new(&options.limits);
        Ok(Gate(Arc::new(Inner {
            config,
            secrets,
            options,
            http_backend,
            repos,
            base_env,
            counter: AtomicU64::new(0),
            resolver,
            git_slots,
            refusals: std::sync::Mutex::new(RefusalWindow::default()),
            pushing: Arc::new(AtomicU64::new(0)),
        })))
    }

    /// Accepts connections until `shutdown` resolves, at most
    /// [`Limits::max_connections`] at once.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), Error> {
        tokio::pin!(shutdown);
        let limits = &self.0.options.limits;
        let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
        let header_read = Duration::from_millis(limits.header_read_timeout_ms.max(1));
        // Twice the git child's stall bound: a stalled fetch is cut (and
        // logged as such) by that first, then its connection goes.
        let write_stall =
            Duration::from_millis(limits.response_stall_timeout_ms.max(1)).saturating_mul(2);
        loop {
            // A slot before accepting: at the bound, new clients wait in the
            // kernel's backlog and cost the process no file descriptor.
            let permit = tokio::select! {
                () = &mut shutdown => break,
                p = permit(&slots) => p,
            };
            let (stream, peer) = tokio::select! {
                () = &mut shutdown => break,
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!("git gate accept: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let gate = self.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let gate = gate.clone();
                    async move { Ok::<_, std::convert::Infallible>(gate.handle(req, peer).await) }
                });
                // Without a timer hyper's header read timeout does nothing:
                // a client that never sends a head would hold its slot.
                if let Err(e) = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(header_read)
                    .max_buf_size(64 * 1024)
                    .serve_connection(TokioIo::new(WriteBound::new(stream, write_stall)), svc)
                    .await
                {
                    tracing::debug!("git gate connection: {e}");
                }
                drop(permit);
            });
        }
        // Pushes still running may be forwarding upstream: give them the
        // grace the sidecar's stop allows before their tasks are dropped.
        let deadline = Instant::now() + PUSH_GRACE;
        while self.0.pushing.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.flush_refusals();
        Ok(())
    }

    /// Handles one request (public for in-process use without a socket).
    pub async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<ChannelBody> {
        let inner = &self.0;
        let path = req.uri().path().to_string();
        let query = req.uri().query().unwrap_or("").to_string();
        let Some((name, rest)) = path
            .strip_prefix('/')
            .and_then(|p| p.split_once(".git/"))
            .filter(|(n, _)| inner.repos.contains_key(*n))
            .map(|(n, r)| (n.to_string(), r.to_string()))
        else {
            let r = Refusal::new(req.method(), &path, "no-route", "unknown-repository");
            return self.refuse(r, StatusCode::NOT_FOUND, "no such repository\n");
        };
        let method = req.method().clone();
        let service = match (&method, rest.as_str(), query.as_str()) {
            (&Method::GET, "info/refs", "service=git-upload-pack") => Service::FetchRefs,
            (&Method::GET, "info/refs", "service=git-receive-pack") => Service::PushRefs,
            (&Method::POST, "git-upload-pack", "") => Service::Fetch,
            (&Method::POST, "git-receive-pack", "") => Service::Push,
            (_, "info/refs", _) => {
                let r = Refusal::new(&method, &path, "path", "dumb-http").repo(&name);
                return self.refuse(
                    r,
                    StatusCode::FORBIDDEN,
                    "only the smart HTTP protocol is served\n",
                );
            }
            _ => {
                let r = Refusal::new(&method, &path, "path", "unknown-path").repo(&name);
                return self.refuse(r, StatusCode::NOT_FOUND, "not found\n");
            }
        };
        let started = Instant::now();
        let state = match inner.repos.get(&name) {
            Some(s) => s.clone(),
            None => return text(StatusCode::NOT_FOUND, "no such repository\n"),
        };

        // Refresh first; a push holds the repo lock for its whole run. A
        // waiter gives up after a bound rather than hang the client.
        let wait = Duration::from_secs(inner.options.limits.repo_lock_wait_secs);
        let Ok(mut guard) = tokio::time::timeout(wait, state.lock_owned()).await else {
            let why = format!(
                "the repository `{name}` is busy with another push or mirror refresh; \
                 gave up waiting after {} s; try again",
                wait.as_secs()
            );
            let mut e = self.event(service.kind(), "block", &name, &method, &rest);
            e.reason = Some("timeout".into());
            e.message = Some(why.clone());
            e.status = Some(503);
            e.ms = ms(started);
            inner.options.audit.record(e);
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("git gate: {why}\n"),
            );
        };
        let must_refresh = match service {
            Service::FetchRefs | Service::PushRefs => true,
            // A push is judged against the mirror's refs, and the hook
            // scans only what they do not reach: a client that skips
            // discovery (a hand-made POST) must not be judged on refs the
            // upstream has since dropped.
            Service::Fetch | Service::Push => guard
                .last_refresh
                .is_none_or(|t| t.elapsed() > REFRESH_REUSE),
        };
        // The SSRF guard, each time the gate is about to talk to the
        // upstream; git then connects to the address it vetted.
        let vetted = if must_refresh || service == Service::Push {
            let url = inner.config.repos.get(&name).map_or("", |r| r.url.as_str());
            match guard::vet(url, &inner.config, inner.resolver.as_ref()).await {
                Ok(v) => v,
                Err(refused) => {
                    drop(guard);
                    let mut e = self.event(service.kind(), "block", &name, &method, &rest);
                    let status = match refused {
                        Refused::PrivateAddress(_) => StatusCode::FORBIDDEN,
                        Refused::Unresolved(_) => StatusCode::BAD_GATEWAY,
                    };
                    e.reason = Some(refused.reason().into());
                    e.message = Some(refused.message().to_string());
                    e.status = Some(status.as_u16());
                    e.ms = ms(started);
                    inner.options.audit.record(e);
                    return text(status, &format!("git gate: {}\n", refused.message()));
                }
            }
        } else {
            None
        };
        if must_refresh {
            // The mirror's HEAD only matters to clones (receive-pack does
            // not advertise it): a push's refresh leaves it for the first
            // fetch, saving the push a connection to the upstream.
            let set_head =
                !guard.head_set && matches!(service, Service::FetchRefs | Service::Fetch);
            // In a task of its own, holding the lock: a client that hangs
            // up must not cut a refresh short (a killed `git fetch` can
            // leave ref locks behind, and a refresh stopped before its
            // repack would leave taken-back objects served).
            let gate = self.clone();
            let repo = name.clone();
            let refreshed = tokio::spawn(async move {
                let r = gate.refresh(&repo, set_head, vetted).await;
                if r.is_ok() {
                    guard.last_refresh = Some(Instant::now());
                    guard.head_set |= set_head;
                }
                (guard, r)
            })
            .await;
            let result = match refreshed {
                Ok((g, r)) => {
                    guard = g;
                    r
                }
                Err(e) => {
                    // The task panicked; its lock went with it.
                    return text(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        &format!("git gate: the mirror refresh failed: {e}\n"),
                    );
                }
            };
            match result {
                Ok(()) => {}
                Err(why) => {
                    drop(guard);
                    let mut e = self.event(service.kind(), "block", &name, &method, &rest);
                    e.reason = Some("upstream-error".into());
                    e.message = Some(format!("upstream unreachable: {why}"));
                    e.status = Some(502);
                    e.ms = ms(started);
                    inner.options.audit.record(e);
                    return text(
                        StatusCode::BAD_GATEWAY,
                        &format!(
                            "upstream unreachable: {why}\n\
                             (the git gate serves no stale data; try again when the upstream answers)\n"
                        ),
                    );
                }
            }
        }
        if service != Service::Push {
            drop(guard);
            let cmd = self.cgi_command(&req, peer, &name, &rest, &query);
            let audit = inner.options.audit.clone();
            let mut e = self.event("git-fetch", "allow", &name, &method, &rest);
            let fetch = service == Service::Fetch;
            // Receive-pack's advertisement is a push's: it may use the
            // slots kept for pushes.
            let slot = inner.git_slots.take(service != Service::PushRefs).await;
            // Nothing of a fetch is worth finishing for a client that takes
            // none of it.
            let bounds = self.bounds(MAX_FETCH_REQUEST, WhenCut::Kill);
            let stall_secs = bounds.stall.as_secs_f64();
            return spawn_cgi(slot, cmd, req.into_body(), bounds, move |status, o| {
                // Discovery requests are logged only when they fail (above);
                // each upload-pack POST is one event.
                if !fetch {
                    return;
                }
                e.status = status;
                e.ms = ms(started);
                if let Some(o) = &o {
                    e.bytes = o.bytes_in;
                }
                match o.as_ref().and_then(|o| o.cut) {
                    Some(Cut::ClientStalled) => {
                        e.decision = "block";
                        e.reason = Some("timeout".into());
                        e.message = Some(format!(
                            "the client took none of the fetch's output for {stall_secs} s; \
                             the gate ended git upload-pack"
                        ));
                    }
                    Some(Cut::Deadline) => {
                        e.decision = "block";
                        e.reason = Some("timeout".into());
                        e.message = Some(
                            "the fetch ran past its deadline; the gate ended git \
                                          upload-pack"
                                .into(),
                        );
                    }
                    _ if !o.and_then(|o| o.status).is_some_and(|s| s.success()) => {
                        e.message = Some("git upload-pack ended with an error".into());
                    }
                    _ => {}
                }
                audit.record(e);
            })
            .await;
        }

        // A push: the hook gets its configuration in the environment.
        let n = inner.counter.fetch_add(1, Ordering::Relaxed);
        let report_path = inner
            .config
            .state_dir
            .join("tmp")
            .join(format!("push-{}-{n}.json", std::process::id()));
        let _ = std::fs::remove_file(&report_path);
        let hook_cfg = self.hook_config(&name, report_path.clone(), vetted);
        let mut cmd = self.cgi_command(&req, peer, &name, &rest, &query);
        match serde_json::to_string(&hook_cfg) {
            Ok(json) => {
                let json = Secret::new(json);
                cmd.env(HOOK_ENV, json.expose());
            }
            Err(_) => return text(StatusCode::INTERNAL_SERVER_ERROR, "git gate error\n"),
        }
        let max = inner.options.limits.max_push_bytes.saturating_add(1 << 20);
        let audit = inner.options.audit.clone();
        let slot = inner.git_slots.take(false).await;
        // From here receive-pack runs whether or not the client stays.
        let mut record = PushRecord::new(
            audit.clone(),
            self.event("git-push", "block", &name, &method, &rest),
            inner.pushing.clone(),
        );
        // A push's hook may be halfway through forwarding upstream: it
        // finishes even when its client stops reading.
        let bounds = self.bounds(max, WhenCut::Drain);
        spawn_cgi(
            slot,
            cmd,
            req.into_body(),
            bounds,
            move |status, outcome| {
                // The lock is held until receive-pack (and its hook) ended.
                drop(guard);
                let Some(mut e) = record.take() else {
                    return;
                };
                let report: Option<Report> = std::fs::read(&report_path)
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok());
                let _ = std::fs::remove_file(&report_path);
                e.status = status;
                if let Some(o) = &outcome {
                    e.bytes = o.bytes_in;
                }
                e.ms = ms(started);
                match report {
                    Some(r) => {
                        let ok = outcome
                            .as_ref()
                            .and_then(|o| o.status)
                            .is_some_and(|s| s.success());
                        e.decision = if r.decision == "allow" && ok {
                            "allow"
                        } else {
                            "block"
                        };
                        e.reason = r.reason;
                        e.refs = r.refs;
                        e.commits = Some(r.commits);
                        e.findings = r.findings;
                        e.rule = e.findings.first().map(|f| f.rule.clone());
                        e.message = r.message;
                        e.scan_ms = Some(r.scan_ms);
                        e.upstream_ms = Some(r.upstream_ms);
                        e.timings = Some(r.timings);
                    }
                    None if outcome.as_ref().is_some_and(|o| o.bytes_in <= 4) => {
                        // A lone flush packet: git's probe request before a
                        // large push. No decision was made, nothing to log.
                        return;
                    }
                    None => {
                        // receive-pack stopped before the hook ended: a cut
                        // or malformed upload, or killed at its deadline.
                        let o = outcome.as_ref();
                        e.reason = Some(
                            if o.is_some_and(|o| o.cut == Some(Cut::Deadline)) {
                                "timeout"
                            } else if o.is_some_and(|o| o.truncated) {
                                "too-large"
                            } else {
                                "malformed"
                            }
                            .into(),
                        );
                        e.message = Some("the push ended before the gate's checks ran".into());
                    }
                }
                audit.record(e);
            },
        )
        .await
    }

    async fn refresh(
        &self,
        name: &str,
        set_head: bool,
        vetted: Option<IpAddr>,
    ) -> Result<(), String> {
        let inner = &self.0;
        let Some(repo) = inner.config.repos.get(name) else {
            return Err("unknown repo".into());
        };
        let mut env = inner.base_env.clone();
        env.extend(credentials::upstream_env(
            name,
            &inner.config,
            &inner.secrets,
            vetted,
        ));
        let secrets: Vec<&str> = inner.secrets.tokens.values().map(Secret::expose).collect();
        let _slot = inner.git_slots.take(false).await;
        mirror::refresh(
            &mirror::mirror_path(&inner.config.state_dir, name),
            &repo.url,
            &env,
            Duration::from_secs(inner.options.limits.upstream_timeout_secs),
            &secrets,
            set_head,
        )
        .await
    }

    /// The bounds of one request's git child.
    fn bounds(&self, max_body: u64, when_cut: WhenCut) -> Bounds {
        let limits = &self.0.options.limits;
        Bounds {
            max_body,
            deadline: Duration::from_secs(limits.request_timeout_secs),
            stall: Duration::from_millis(limits.response_stall_timeout_ms.max(1)),
            when_cut,
        }
    }

    fn hook_config(&self, name: &str, report: PathBuf, vetted: Option<IpAddr>) -> HookConfig {
        let inner = &self.0;
        let repo = &inner.config.repos[name];
        HookConfig {
            repo: name.to_string(),
            url: repo.url.clone(),
            push: repo.push.clone(),
            protect: repo.protect.clone(),
            limits: inner.options.limits,
            known_secrets: inner
                .secrets
                .tokens
                .values()
                .map(|s| s.expose().to_string())
                .collect(),
            upstream_env: credentials::upstream_env(name, &inner.config, &inner.secrets, vetted)
                .into_iter()
                .map(|(k, v)| (k, v.expose().to_string()))
                .collect(),
            report: Some(report),
            // The CGI deadline starts a moment later, at `cgi::run`.
            deadline_unix_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .ok()
                .map(|now| now + Duration::from_secs(inner.options.limits.request_timeout_secs))
                .and_then(|d| u64::try_from(d.as_millis()).ok()),
        }
    }

    fn cgi_command(
        &self,
        req: &Request<Incoming>,
        peer: SocketAddr,
        name: &str,
        rest: &str,
        query: &str,
    ) -> Command {
        let inner = &self.0;
        let sd = &inner.config.state_dir;
        let mut cmd = Command::new(&inner.http_backend);
        cmd.env_clear();
        for (k, v) in &inner.base_env {
            cmd.env(k, v.expose());
        }
        let header = |n: &str| {
            req.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        cmd.env("GIT_PROJECT_ROOT", mirror::project_root(sd))
            .env("GIT_HTTP_EXPORT_ALL", "1")
            .env("GATEWAY_INTERFACE", "CGI/1.1")
            .env("SERVER_PROTOCOL", "HTTP/1.1")
            .env("REQUEST_METHOD", req.method().as_str())
            .env("PATH_INFO", format!("/{name}.git/{rest}"))
            .env("QUERY_STRING", query)
            .env("REMOTE_ADDR", peer.ip().to_string());
        if let Some(v) = header("content-type") {
            cmd.env("CONTENT_TYPE", v);
        }
        // No CONTENT_LENGTH on purpose: with it, http-backend (git 2.47)
        // copies a receive-pack body in a loop that spins forever when the
        // body ends early (a client cut off midway). Without it, it reads
        // to EOF, and the bridge closes stdin at the end of the body.
        if let Some(v) = header("content-encoding") {
            cmd.env("HTTP_CONTENT_ENCODING", v);
        }
        if let Some(v) = header("git-protocol").filter(|v| {
            v.len() < 256
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"=:._-".contains(&b))
        }) {
            cmd.env("GIT_PROTOCOL", v);
        }
        // Receive-pack settings, as config in the environment (never in the
        // mirror's config file): our hook, pushes enabled without HTTP
        // auth (the agent is the only client), bounded and fsck-checked
        // packs, and no attributes from anywhere.
        let hooks = sd.join("hooks");
        let cfg: [(&str, String); 6] = [
            ("core.hooksPath", hooks.to_string_lossy().into_owned()),
            ("http.receivepack", "true".into()),
            (
                "receive.maxInputSize",
                inner.options.limits.max_push_bytes.to_string(),
            ),
            ("receive.fsckObjects", "true".into()),
            ("receive.advertisePushOptions", "false".into()),
            ("core.attributesFile", "/dev/null".into()),
        ];
        cmd.env("GIT_CONFIG_COUNT", cfg.len().to_string());
        for (i, (k, v)) in cfg.iter().enumerate() {
            cmd.env(format!("GIT_CONFIG_KEY_{i}"), k);
            cmd.env(format!("GIT_CONFIG_VALUE_{i}"), v);
        }
        cmd
    }

    /// Answers a request the gate serves nothing for with a `block` event:
    /// every decision is one. Such requests cost the agent nothing, so
    /// their events are rate-limited (the proxy's rule: at most
    /// [`REFUSAL_EVENTS_PER_SECOND`] written a second, the rest counted in
    /// one `rate-limit:git` event when that second is over).
    fn refuse(&self, r: Refusal, status: StatusCode, body: &str) -> Response<ChannelBody> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let (write, held) = match self.0.refusals.lock() {
            Ok(mut w) => {
                let held = if w.second == now {
                    0
                } else {
                    let held = w.held;
                    *w = RefusalWindow {
                        second: now,
                        ..RefusalWindow::default()
                    };
                    held
                };
                let write = w.written < REFUSAL_EVENTS_PER_SECOND;
                if write {
                    w.written += 1;
                } else {
                    w.held += 1;
                }
                (write, held)
            }
            Err(_) => (true, 0),
        };
        if held > 0 {
            self.0.options.audit.record(held_back(held));
        }
        if write {
            let mut e = Event::new(r.kind, "block", r.repo.as_deref().unwrap_or(""));
            e.reason = Some(r.reason.into());
            e.rule = Some(r.rule.into());
            e.method = Some(r.method.into());
            e.status = Some(status.as_u16());
            e.host = r.repo.as_deref().and_then(|n| {
                let url = &self.0.config.repos.get(n)?.url;
                upstream_host(url)
            });
            self.0.options.audit.record(e);
        }
        text(status, body)
    }

    /// Writes the count of refusal events held back in the last second.
    fn flush_refusals(&self) {
        let held = match self.0.refusals.lock() {
            Ok(mut w) => std::mem::take(&mut w.held),
            Err(_) => 0,
        };
        if held > 0 {
            self.0.options.audit.record(held_back(held));
        }
    }

    fn event(
        &self,
        kind: &'static str,
        decision: &'static str,
        name: &str,
        method: &Method,
        rest: &str,
    ) -> Event {
        let mut e = Event::new(kind, decision, name);
        e.method = Some(method.to_string());
        e.path = Some(format!("/{name}.git/{rest}"));
        e.host = self
            .0
            .config
            .repos
            .get(name)
            .and_then(|r| upstream_host(&r.url));
        e
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Service {
    FetchRefs,
    PushRefs,
    Fetch,
    Push,
}

impl Service {
    fn kind(self) -> &'static str {
        match self {
            Service::FetchRefs | Service::Fetch => "git-fetch",
            Service::PushRefs | Service::Push => "git-push",
        }
    }
}

/// Runs the CGI program in a task of its own and calls `on_done` when it has
/// exited. Detached from the request future on purpose: a client that hangs
/// up before the response headers must not cancel the supervision of the
/// child (its audit event, the push lock). The slot, taken in the request
/// (a client that leaves while queued starts no child), is held until the
/// child has exited.
async fn spawn_cgi<F>(
    slot: Slot,
    cmd: Command,
    body: Incoming,
    bounds: Bounds,
    on_done: F,
) -> Response<ChannelBody>
where
    F: FnOnce(Option<u16>, Option<cgi::Outcome>) + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        match cgi::run(cmd, body, bounds).await {
            Ok((resp, done)) => {
                let status = resp.status().as_u16();
                let _ = tx.send(resp);
                let outcome = done.await.ok();
                drop(slot);
                on_done(Some(status), outcome);
            }
            Err(err) => {
                tracing::warn!("git gate: http-backend: {err}");
                let _ = tx.send(text(StatusCode::INTERNAL_SERVER_ERROR, "git gate error\n"));
                drop(slot);
                on_done(None, None);
            }
        }
    });
    rx.await
        .unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, "git gate error\n"))
}

fn ms(t: Instant) -> u64 {
    u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX)
}

fn text(status: StatusCode, body: &str) -> Response<ChannelBody> {
    let mut r = Response::new(ChannelBody::full(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// A request refused before any git runs. Its path is not logged: the
/// agent chose it, and it may carry anything (the gate runs no DLP on it).
struct Refusal {
    kind: &'static str,
    method: &'static str,
    reason: &'static str,
    rule: &'static str,
    /// The configured repository it named, if any.
    repo: Option<String>,
}

impl Refusal {
    fn new(method: &Method, path: &str, reason: &'static str, rule: &'static str) -> Self {
        Refusal {
            kind: if path.contains("receive-pack") {
                "git-push"
            } else {
                "git-fetch"
            },
            // The agent's method only when it is a known one (the others
            // are tokens it chose).
            method: match *method {
                Method::GET => "GET",
                Method::POST => "POST",
                Method::HEAD => "HEAD",
                Method::PUT => "PUT",
                Method::DELETE => "DELETE",
                Method::OPTIONS => "OPTIONS",
                Method::PATCH => "PATCH",
                _ => "other",
            },
            reason,
            rule,
            repo: None,
        }
    }

    fn repo(mut self, name: &str) -> Self {
        self.repo = Some(name.to_string());
        self
    }
}

/// The event counting refusal events held back.
fn held_back(count: u64) -> Event {
    // `internal`, as the proxy's counts: the summary reads them so.
    let mut e = Event::new("internal", "block", "");
    e.rule = Some("rate-limit:git".into());
    e.count = Some(count);
    e
}

/// The host of an upstream URL, for audit events.
pub fn upstream_host(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or_else(
        // scp-like: user@host:path
        || url.split(':').next().unwrap_or(""),
        |(_, r)| r.split('/').next().unwrap_or(""),
    );
    let host = rest.rsplit('@').next().unwrap_or(rest);
    let host = if host.starts_with('[') {
        host.split(']').next().map(|h| h.trim_start_matches('['))
    } else {
        host.split(':').next()
    };
    host.filter(|h| !h.is_empty()).map(str::to_string)
}

fn write_hook_script(state_dir: &Path, command: &[String]) -> Result<(), Error> {
    let path = state_dir.join("hooks").join("pre-receive");
    let argv: Vec<String> = command.iter().map(|a| sh_quote(a)).collect();
    let script = format!("#!/bin/sh\nexec {}\n", argv.join(" "));
    let _ = std::fs::remove_file(&path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o700)
        .open(&path)
        .map_err(|e| Error::Io(format!("creating {}: {e}", path.display())))?;
    std::io::Write::write_all(&mut f, script.as_bytes())
        .map_err(|e| Error::Io(format!("writing {}: {e}", path.display())))
}

/// Git silently skips a hook it cannot execute and then accepts the push
/// unchecked, so the gate refuses to start instead (fail closed): a hook
/// started without its configuration must run and refuse.
fn check_hook_runs(state_dir: &Path) -> Result<(), Error> {
    let path = state_dir.join("hooks").join("pre-receive");
    let run = || {
        std::process::Command::new(&path)
            .env_clear()
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
    };
    // A file just written can be briefly "busy" (ETXTBSY) when another
    // thread of a multi-threaded host (the gate's own tests, say) forked
    // while it was open for writing: retry that only.
    let mut result = run();
    for _ in 0..20 {
        match &result {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                std::thread::sleep(std::time::Duration::from_millis(25));
                result = run();
            }
            _ => break,
        }
    }
    let status = result.map_err(|e| {
        Error::Config(format!(
            "the pre-receive hook {} cannot run ({e}); the state folder must be on a file \
                 system that allows executables (not `noexec`)",
            path.display()
        ))
    })?;
    if status.success() {
        return Err(Error::Config(format!(
            "the pre-receive hook {} accepted a push without its configuration",
            path.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hook git could not execute would let pushes through unchecked.
    #[test]
    fn a_hook_that_cannot_run_stops_the_gate() {
        #![allow(clippy::unwrap_used)]
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("hooks")).unwrap();
        write_hook_script(d.path(), &["/bin/false".into()]).unwrap();
        check_hook_runs(d.path()).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let hook = d.path().join("hooks/pre-receive");
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = check_hook_runs(d.path()).unwrap_err().to_string();
        assert!(e.contains("cannot run"), "{e}");
        std::fs::remove_file(&hook).unwrap();
        write_hook_script(d.path(), &["/bin/true".into()]).unwrap();
        assert!(check_hook_runs(d.path()).is_err(), "a hook that allows all");
    }

    #[test]
    fn hosts() {
        assert_eq!(
            upstream_host("git@github.com:a/b.git").as_deref(),
            Some("github.com")
        );
        assert_eq!(
            upstream_host("ssh://git@127.0.0.1:2222/x.git").as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(
            upstream_host("https://h.example/x.git").as_deref(),
            Some("h.example")
        );
        assert_eq!(
            upstream_host("https://[::1]:8443/x").as_deref(),
            Some("::1")
        );
    }
}
