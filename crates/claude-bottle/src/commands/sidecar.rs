//! `claude-bottle sidecar`: the bottle's only exit, inside its container.
//!
//! It reads one JSON document on stdin (the proxy's configuration plus
//! `dns`, `gate` and `secrets`, see `sidecar.md`), starts the egress proxy,
//! the DNS responder and the git gate, and prints the bottle CA's
//! certificate and `ready` on stdout only when every part listens. Secrets stay in this process's memory; nothing
//! of them is on a command line, in the environment or in a file the
//! engine can show.

use std::collections::HashMap;
use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use bottle_egress::config::{MapSecrets, RawConfig};
use bottle_egress::{Proxy, ProxyConfig, dns};
use bottle_plan::resolve::SIDECAR_HOST;
use bottle_secret::{Secret, SecretJson};
use serde_json::Value;
use tokio::net::{TcpListener, UdpSocket};

use crate::report::UsageError;

/// Largest configuration accepted on stdin.
const MAX_CONFIG: u64 = 4 * 1024 * 1024;

pub fn run() -> Result<ExitCode> {
    not_dumpable()?;
    // Room for the largest configuration at once: a growing buffer would
    // leave copies of the secrets in the blocks it gave back, which no
    // one zeroes (untouched room costs no memory).
    let mut text = String::with_capacity(MAX_CONFIG as usize + 1);
    std::io::stdin()
        .take(MAX_CONFIG + 1)
        .read_to_string(&mut text)
        .context("cannot read the configuration on stdin")?;
    if text.len() as u64 > MAX_CONFIG {
        return Err(UsageError::new("the sidecar configuration is over 4 MiB").into());
    }
    // Zeroed when dropped: it holds every secret of the bottle.
    let text = Secret::new(text);
    let mut doc: Value = serde_json::from_str(text.expose())
        .map_err(|e| UsageError::new(format!("the sidecar configuration is not JSON: {e}")))?;
    // The credentials, wiped when this process is done with them; the rest
    // of the document names them but holds none.
    let secrets = SecretJson::new(
        doc.as_object_mut()
            .and_then(|o| o.remove("secrets"))
            .unwrap_or(Value::Null),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    drop(text);
    let done = rt.block_on(serve(doc, secrets));
    // Not a plain drop, which waits without bound for blocking work (a
    // name lookup the agent made slow) and would hold the exit past the
    // engine's kill. Tasks still there are dropped (a push's event is
    // written from its drop).
    rt.shutdown_timeout(std::time::Duration::from_millis(200));
    done
}

/// The pre-receive hook the gate runs for each push.
/// Before a secret is read: a process that is not dumpable has its /proc
/// files (mem, environ, root, fd) owned by root, so no other process of
/// the same uid can read its memory or its tmpfs through them. Exec'd
/// children (git) are dumpable again; the sidecar's uid of its own keeps
/// those from host processes.
pub(crate) fn not_dumpable() -> Result<()> {
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
        .context("cannot make this process non-dumpable")
}

pub fn hook(name: &str) -> Result<ExitCode> {
    if name != "pre-receive" {
        return Err(UsageError::new(format!("unknown hook `{name}`")).into());
    }
    // The hook holds the bottle's known secrets (its DLP engine) for the
    // whole scan of a push.
    not_dumpable()?;
    let code = bottle_gitgate::hook::main();
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

/// Where the sidecar keeps the extra upstream roots it was handed (its own
/// tmpfs: the root file system is read-only).
const UPSTREAM_CA_FILE: &str = "/tmp/upstream-ca.pem";

async fn serve(mut doc: Value, mut secrets: SecretJson) -> Result<ExitCode> {
    let Some(obj) = doc.as_object_mut() else {
        return Err(UsageError::new("the sidecar configuration must be a JSON object").into());
    };
    let dns_cfg = obj.remove("dns").map(|d| dns_config(&d)).transpose()?;
    let mut gate = obj.remove("gate");
    // Extra roots arrive as PEM text (no shared file system with the CLI):
    // written to a file both the proxy and the gate read.
    match obj.remove("upstream_ca_pem") {
        Some(Value::String(pem)) => {
            std::fs::write(UPSTREAM_CA_FILE, pem)
                .with_context(|| format!("cannot write {UPSTREAM_CA_FILE}"))?;
            obj.insert("upstream_ca".into(), UPSTREAM_CA_FILE.into());
            if let Some(g) = gate.as_mut().and_then(Value::as_object_mut) {
                g.insert("upstream_ca".into(), UPSTREAM_CA_FILE.into());
            }
        }
        Some(_) => return Err(UsageError::new("upstream_ca_pem must be a string").into()),
        None => {}
    }
    let mut cfg = proxy_config(doc, secrets.expose())?;
    add_own_names(&mut cfg, dns_cfg.as_ref())?;
    let proxy_listener = TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.listen))?;
    // The bound address (port 0 resolved): own addresses count on its port.
    cfg.listen = proxy_listener.local_addr()?;
    let proxy = bottle_egress::Proxy::new(cfg.clone())?;
    let mut addrs = vec![format!("proxy {}", proxy_listener.local_addr()?)];
    let mut tasks = tokio::task::JoinSet::new();
    // A part (DNS, the gate) that stops before the signal, on an error or
    // a panic, stops the sidecar: its health check would otherwise go on
    // answering for a bottle whose gate or DNS is dead.
    let part_stopped = Arc::new(tokio::sync::Notify::new());
    let watched = |n: &Arc<tokio::sync::Notify>| PartStops(n.clone());
    // The parts stop when the sidecar says so, after it has seen the
    // signal: a part that stops on the signal itself could be taken for
    // one that died.
    let (stop_parts, parts_stop) = tokio::sync::watch::channel(false);
    let part_shutdown = move || {
        let mut stop = parts_stop.clone();
        async move {
            let _ = stop.wait_for(|s| *s).await;
        }
    };

    if let Some(d) = dns_cfg {
        let responder = Arc::new(dns_responder(d.names, &proxy));
        let (udp, tcp) = bind_dns(d.listen).await?;
        addrs.push(format!("dns {}", udp.local_addr()?));
        let r = responder.clone();
        let (w1, w2) = (watched(&part_stopped), watched(&part_stopped));
        let (stop1, stop2) = (part_shutdown(), part_shutdown());
        tasks.spawn(async move {
            let _w = w1;
            r.serve_udp(udp, stop1).await
        });
        tasks.spawn(async move {
            let _w = w2;
            responder.serve_tcp(tcp, stop2).await
        });
    }

    if let Some(gate) = gate {
        let (gate_cfg, gate_secrets) = bottle_gitgate::from_sidecar_parts(gate, secrets.take())?;
        let listener = TcpListener::bind(&gate_cfg.listen)
            .await
            .with_context(|| format!("cannot listen on {}", gate_cfg.listen))?;
        addrs.push(format!("gate {}", listener.local_addr()?));
        let exe = std::env::current_exe()?.display().to_string();
        let options = bottle_gitgate::Options {
            hook_command: vec![exe, "sidecar".into(), "hook".into(), "pre-receive".into()],
            audit: Arc::new(GateLog(proxy.audit())),
            limits: bottle_gitgate::Limits::default(),
            http_backend: None,
        };
        // Built before `ready` (state folders, key files, the hook, `git
        // http-backend`, the mirrors): a gate that cannot be set up ends the
        // sidecar here instead of leaving a bottle reported healthy with a
        // dead gate.
        let gate = bottle_gitgate::Gate::new(gate_cfg, gate_secrets, options)
            .await
            .context("cannot set up the git gate")?;
        let w = watched(&part_stopped);
        let stop = part_shutdown();
        tasks.spawn(async move {
            let _w = w;
            if let Err(e) = gate.serve(listener, stop).await {
                stderrln!("error: git gate: {e}");
            }
        });
    }

    // The proxy and the gate hold what they need as `Secret`s now.
    drop(secrets);

    // Every part listens: say so, once, on stdout (the CLI waits for it),
    // after the bottle CA's certificate (public; never the key), which the
    // CLI installs in the agent without a round trip through it.
    crate::output::stdout(&format!("{}ready {}\n", proxy.ca_pem(), addrs.join(", ")))?;
    let audit = proxy.audit();
    let part_died = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let log_lost = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop = {
        let (stopped, died) = (part_stopped.clone(), part_died.clone());
        let (log, lost) = (audit.clone(), log_lost.clone());
        async move {
            tokio::select! {
                () = shutdown() => {}
                () = stopped.notified() => died.store(true, std::sync::atomic::Ordering::SeqCst),
                // Every decision is an event: with no log, nothing is
                // forwarded unrecorded; the bottle loses its egress.
                () = log.lost() => lost.store(true, std::sync::atomic::Ordering::SeqCst),
            }
            let _ = stop_parts.send(true);
        }
    };
    let served = bottle_egress::serve_sharded(
        proxy,
        proxy_listener,
        bottle_egress::limits::proxy_threads(),
        stop,
    )
    .await;
    // The parts were told to stop with the proxy; the gate waits a while
    // for pushes it may be forwarding upstream. Within the engine's 5 s
    // between its stop signal and its kill, whatever is left is dropped
    // (a push's event then says so).
    let _ = tokio::time::timeout(std::time::Duration::from_millis(4500), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    tasks.shutdown().await;
    // Counts of events held back in the last second of a flood: teardown
    // stops the sidecar before it saves the log.
    audit.flush();
    served?;
    if log_lost.load(std::sync::atomic::Ordering::SeqCst) {
        anyhow::bail!("the audit log could not be written; the sidecar stopped");
    }
    if part_died.load(std::sync::atomic::Ordering::SeqCst) {
        anyhow::bail!("the DNS responder or the git gate stopped; the sidecar stopped with it");
    }
    Ok(ExitCode::SUCCESS)
}

/// The git gate's events, on stdout beside the proxy's; a line that
/// cannot be written stops the sidecar as one of the proxy's does.
struct GateLog(bottle_egress::audit::Audit);

impl bottle_gitgate::audit::AuditSink for GateLog {
    fn record(&self, event: bottle_gitgate::audit::Event) {
        use std::io::Write;
        let line = event.to_line();
        let mut out = std::io::stdout().lock();
        if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
            self.0.mark_lost();
        }
    }
}

/// Tells the sidecar, when dropped, that one of its parts has stopped
/// (returned or panicked).
struct PartStops(Arc<tokio::sync::Notify>);

impl Drop for PartStops {
    fn drop(&mut self) {
        self.0.notify_one();
    }
}

/// The proxy's configuration: the sidecar document without its `dns`,
/// `gate` and `secrets` parts, `token_ref`s read from `secrets.tokens`.
///
/// Every token value of the bottle is a known secret of the proxy's DLP,
/// not only those the proxy injects: `secrets.tokens` also holds the git
/// gate's HTTPS tokens, which the agent never needs and must not be able to
/// send out through the proxy either.
fn proxy_config(doc: Value, secrets: &Value) -> Result<ProxyConfig> {
    let tokens: HashMap<String, Secret> = secrets
        .get("tokens")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), Secret::new(v.as_str()?.to_string()))))
                .collect()
        })
        .unwrap_or_default();
    let raw: RawConfig = serde_json::from_value(doc)
        .map_err(|e| UsageError::new(format!("proxy configuration: {e}")))?;
    let tokens = MapSecrets(tokens);
    let mut cfg = ProxyConfig::from_raw(raw, Path::new("/"), &tokens)?;
    cfg.known_secrets.extend(tokens.0.into_values());
    Ok(cfg)
}

/// The names that are the sidecar itself, which its proxy serves (health,
/// the model-API reverse proxy) instead of forwarding: `sidecar`, its alias
/// on the internal network, and every name its DNS answers (the sidecar's
/// aliases, `sidecar.md`). `claude-bottle.local` always is one. The
/// addresses its DNS gives for those names are the sidecar's own too, on
/// the proxy's listen port only (`ProxyConfig::is_own`: the same address on
/// port 53 or the gate's port stays an ordinary, refused, IP literal); a
/// concrete listen address counts by itself, and the unspecified or a
/// loopback address is never added.
fn add_own_names(cfg: &mut ProxyConfig, dns: Option<&DnsConfig>) -> Result<()> {
    cfg.own_names.add(SIDECAR_HOST)?;
    for (name, ip) in dns.into_iter().flat_map(|d| &d.names) {
        cfg.own_names.add(name)?;
        cfg.own_names.add_addr(*ip);
    }
    Ok(())
}

/// The `dns` part of the configuration: `{listen, names: {name: address}}`.
struct DnsConfig {
    listen: SocketAddr,
    names: HashMap<String, IpAddr>,
}

fn dns_config(d: &Value) -> Result<DnsConfig> {
    let listen: SocketAddr = d
        .get("listen")
        .and_then(Value::as_str)
        .unwrap_or("0.0.0.0:53")
        .parse()
        .map_err(|_| UsageError::new("dns.listen is not ADDR:PORT"))?;
    let mut names = HashMap::new();
    if let Some(m) = d.get("names").and_then(Value::as_object) {
        for (name, addr) in m {
            let ip: IpAddr = addr
                .as_str()
                .and_then(|a| a.parse().ok())
                .ok_or_else(|| anyhow!("dns.names.{name} is not an IP address"))?;
            names.insert(name.clone(), ip);
        }
    }
    Ok(DnsConfig { listen, names })
}

/// The DNS responder for `names`. Its events go to the proxy's audit log,
/// redacted by the proxy's log redactor: a refused name may carry a secret
/// (`<token>.attacker.example`), and the log must not, whatever the DLP
/// mode (`dlp: off` included).
fn dns_responder(names: HashMap<String, IpAddr>, proxy: &Proxy) -> dns::Responder {
    dns::Responder::new(names, proxy.audit(), Some(proxy.log_redactor()))
}

/// DNS answers on one port over UDP and TCP. With port 0 (tests) the
/// kernel picks the UDP port, which may be taken for TCP by someone else:
/// then another pair is tried.
async fn bind_dns(listen: SocketAddr) -> Result<(UdpSocket, TcpListener)> {
    for _ in 0..20 {
        let udp = UdpSocket::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}/udp"))?;
        match TcpListener::bind(udp.local_addr()?).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if listen.port() == 0 && e.kind() == std::io::ErrorKind::AddrInUse => {}
            Err(e) => return Err(e).with_context(|| format!("cannot listen on {listen}/tcp")),
        }
    }
    Err(anyhow!(
        "no free port for DNS on {} (UDP and TCP)",
        listen.ip()
    ))
}

async fn shutdown() {
    bottle_egress::standalone::shutdown_signal().await;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test: a failed step is a failed test

    use super::*;
    use bottle_egress::config::AuditTarget;

    const SECRET: &str = "topsecretvalue42";

    /// A proxy of `doc` and `secrets` whose audit lines stay in memory.
    fn proxy(doc: Value, secrets: &Value) -> Proxy {
        let mut cfg = proxy_config(doc, secrets).unwrap();
        cfg.audit = AuditTarget::Memory;
        Proxy::new(cfg).unwrap()
    }

    /// Attack: `CONNECT example.com:80` (a blind tunnel on a passthrough
    /// route) and plain HTTP to port 443, on a route the bottle gave no
    /// ports. The document `bottle-docker` renders for such a route has no
    /// `ports` (`unlisted_ports_keep_their_schemes`); read here, each
    /// default port is allowed for its own scheme only.
    #[test]
    fn unlisted_ports_open_each_default_port_for_its_scheme_only() {
        use bottle_egress::addr::classify_host;
        use bottle_egress::route::Scheme;
        let cfg = proxy_config(
            serde_json::json!({"allow": [{"host": "example.com", "tls": "passthrough"}]}),
            &serde_json::json!({}),
        )
        .unwrap();
        let host = classify_host("example.com");
        let allowed = |port, scheme| cfg.routes.find(&host, port, scheme).is_ok();
        assert!(allowed(443, Scheme::Https));
        assert!(allowed(80, Scheme::Http));
        assert!(!allowed(80, Scheme::Https), "CONNECT to port 80");
        assert!(!allowed(443, Scheme::Http), "plain HTTP to port 443");
    }

    #[test]
    fn dns_events_never_carry_a_secret_even_with_dlp_off() {
        for mode in ["off", "log", "block"] {
            let p = proxy(
                serde_json::json!({"dlp": mode, "known_secret_env": ["S"]}),
                &serde_json::json!({"tokens": {"S": SECRET}}),
            );
            let d = serde_json::json!({"listen": "127.0.0.1:0", "names": {"sidecar": "10.0.0.2"}});
            let r = dns_responder(dns_config(&d).unwrap().names, &p);
            let name = format!("{SECRET}.evil.test");
            let reply = r.answer(&dns::query(1, &name, 1)).unwrap();
            assert_eq!(reply[3] & 0x0f, 3, "NXDOMAIN");
            let lines = p.memory_log().unwrap().lines();
            assert_eq!(lines.len(), 1, "{mode}: the refusal is an event");
            assert!(lines[0].contains("dns-refused"), "{}", lines[0]);
            assert!(!lines[0].contains(SECRET), "{mode}: {}", lines[0]);
        }
    }

    /// A git gate's HTTPS token is in `secrets.tokens` but in no proxy
    /// route: a body carrying it is still refused before its end reaches
    /// the upstream.
    #[tokio::test]
    async fn a_body_carrying_a_git_token_is_blocked() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        const GIT_TOKEN: &str = "gate-https-Vq8Zr2Lm5Xw9Tb3N";
        let body = format!("{{\"note\": \"{GIT_TOKEN}\"}}");
        // An upstream that answers only once it has the whole body.
        let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let up = upstream.local_addr().unwrap();
        let whole = body.clone();
        tokio::spawn(async move {
            let (mut s, _) = upstream.accept().await.unwrap();
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = s.read(&mut buf).await {
                seen.extend_from_slice(&buf[..n]);
                if seen.ends_with(whole.as_bytes()) {
                    let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
                    let _ = s.write_all(ok).await;
                }
            }
        });
        let cfg = proxy_config(
            serde_json::json!({
                "dlp": "block",
                "log": "off",
                "allow": [{"host": "up.test"}],
                "resolve": {"up.test": up.to_string()},
            }),
            &serde_json::json!({"tokens": {"GIT_TOKEN": GIT_TOKEN}}),
        )
        .unwrap();
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let p = Proxy::new(cfg).unwrap();
        tokio::spawn(async move { p.serve_connection(server).await });
        let head = format!(
            "POST http://up.test/ HTTP/1.1\r\nhost: up.test\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        client.write_all(head.as_bytes()).await.unwrap();
        client.write_all(body.as_bytes()).await.unwrap();
        let answer = response_head(&mut client).await;
        assert!(answer.starts_with("http/1.1 403"), "{answer}");
        assert!(answer.contains("x-claude-bottle-block: dlp"), "{answer}");
    }

    /// The head of the next response on `client`, lower-cased.
    async fn response_head(client: &mut tokio::io::DuplexStream) -> String {
        use tokio::io::AsyncReadExt;

        let mut answer = Vec::new();
        let read = async {
            let mut buf = [0u8; 1024];
            while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
                match client.read(&mut buf).await {
                    Ok(n @ 1..) => answer.extend_from_slice(&buf[..n]),
                    _ => break,
                }
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(10), read)
            .await
            .unwrap();
        String::from_utf8_lossy(&answer).to_ascii_lowercase()
    }

    /// The host's addresses, as `bottle-docker` renders them (the top
    /// level for the proxy, `gate` for the gate), are refused by both.
    #[test]
    fn the_hosts_addresses_reach_the_proxy_and_the_gate() {
        let host: IpAddr = "198.51.100.7".parse().unwrap();
        let cfg = proxy_config(
            serde_json::json!({"host_addresses": [host]}),
            &serde_json::json!({}),
        )
        .unwrap();
        assert!(cfg.host_addresses.forbids(host));
        let (gate, _) = bottle_gitgate::from_sidecar_parts(
            serde_json::json!({"host_addresses": [host]}),
            Value::Null,
        )
        .unwrap();
        assert!(gate.host_addresses.forbids(host));
    }

    /// `sidecar`, the names the sidecar's DNS answers and, on the proxy's
    /// port, the address it answers them with are the proxy itself: an
    /// absolute-form request to one is served, not forwarded (here it
    /// would be refused: there is no route at all). That address on
    /// another port, and loopback, stay ordinary IP literals.
    #[tokio::test]
    async fn the_sidecars_own_names_are_served_by_its_proxy() {
        use tokio::io::AsyncWriteExt;

        let mut cfg = proxy_config(
            serde_json::json!({"allow": [], "log": "off", "listen": "0.0.0.0:3128"}),
            &serde_json::json!({}),
        )
        .unwrap();
        let d = serde_json::json!({"listen": "127.0.0.1:0", "names": {"gw.bottle": "10.0.0.2"}});
        add_own_names(&mut cfg, Some(&dns_config(&d).unwrap())).unwrap();
        let p = Proxy::new(cfg).unwrap();
        let ok = None;
        let no_route = Some("no-route");
        let ip_literal = Some("ip-literal");
        for (target, block) in [
            ("http://sidecar:3128/health", ok),
            ("http://gw.bottle/health", ok),
            ("http://claude-bottle.local/health", ok),
            ("http://10.0.0.2:3128/health", ok),
            ("http://10.0.0.2:3128/nope", no_route),
            ("http://10.0.0.2:53/health", ip_literal),
            ("http://10.0.0.2:8418/health", ip_literal),
            ("http://10.0.0.2/health", ip_literal),
            ("http://127.0.0.1:3128/health", ip_literal),
            ("http://0.0.0.0:3128/health", ip_literal),
        ] {
            let (mut client, server) = tokio::io::duplex(64 * 1024);
            let p = p.clone();
            tokio::spawn(async move { p.serve_connection(server).await });
            let head = format!("GET {target} HTTP/1.1\r\nhost: x\r\n\r\n");
            client.write_all(head.as_bytes()).await.unwrap();
            let answer = response_head(&mut client).await;
            match block {
                None => assert!(answer.starts_with("http/1.1 200"), "{target}: {answer}"),
                Some(reason) => {
                    assert!(answer.starts_with("http/1.1 403"), "{target}: {answer}");
                    let header = format!("x-claude-bottle-block: {reason}");
                    assert!(answer.contains(&header), "{target}: {answer}");
                }
            }
        }
    }
}
