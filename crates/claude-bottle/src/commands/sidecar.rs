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
use bottle_secret::Secret;
use serde_json::Value;
use tokio::net::{TcpListener, UdpSocket};

use crate::report::UsageError;

/// Largest configuration accepted on stdin.
const MAX_CONFIG: u64 = 4 * 1024 * 1024;

pub fn run() -> Result<ExitCode> {
    let mut text = String::new();
    std::io::stdin()
        .take(MAX_CONFIG + 1)
        .read_to_string(&mut text)
        .context("cannot read the configuration on stdin")?;
    if text.len() as u64 > MAX_CONFIG {
        return Err(UsageError::new("the sidecar configuration is over 4 MiB").into());
    }
    // Zeroed when dropped: it holds every secret of the bottle.
    let text = Secret::new(text);
    let doc: Value = serde_json::from_str(text.expose())
        .map_err(|e| UsageError::new(format!("the sidecar configuration is not JSON: {e}")))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    drop(text);
    rt.block_on(serve(doc))
}

/// The pre-receive hook the gate runs for each push.
pub fn hook(name: &str) -> Result<ExitCode> {
    if name != "pre-receive" {
        return Err(UsageError::new(format!("unknown hook `{name}`")).into());
    }
    let code = bottle_gitgate::hook::main();
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

/// Where the sidecar keeps the extra upstream roots it was handed (its own
/// tmpfs: the root file system is read-only).
const UPSTREAM_CA_FILE: &str = "/tmp/upstream-ca.pem";

async fn serve(mut doc: Value) -> Result<ExitCode> {
    let Some(obj) = doc.as_object_mut() else {
        return Err(UsageError::new("the sidecar configuration must be a JSON object").into());
    };
    let dns_cfg = obj.remove("dns");
    let mut gate = obj.remove("gate");
    let secrets = obj.remove("secrets").unwrap_or(Value::Null);
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
    let cfg = ProxyConfig::from_raw(raw, Path::new("/"), &MapSecrets(tokens))?;
    let proxy = bottle_egress::Proxy::new(cfg.clone())?;
    let proxy_listener = TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.listen))?;
    let mut addrs = vec![format!("proxy {}", proxy_listener.local_addr()?)];
    let mut tasks = tokio::task::JoinSet::new();

    if let Some(d) = dns_cfg {
        let (listen, responder) = dns_responder(&d, &proxy)?;
        let responder = Arc::new(responder);
        let (udp, tcp) = bind_dns(listen).await?;
        addrs.push(format!("dns {}", udp.local_addr()?));
        let r = responder.clone();
        tasks.spawn(async move { r.serve_udp(udp, shutdown()).await });
        tasks.spawn(async move { responder.serve_tcp(tcp, shutdown()).await });
    }

    if let Some(gate) = gate {
        let (gate_cfg, gate_secrets) = bottle_gitgate::from_sidecar_parts(gate, secrets)?;
        let listener = TcpListener::bind(&gate_cfg.listen)
            .await
            .with_context(|| format!("cannot listen on {}", gate_cfg.listen))?;
        addrs.push(format!("gate {}", listener.local_addr()?));
        let exe = std::env::current_exe()?.display().to_string();
        let options = bottle_gitgate::Options {
            hook_command: vec![exe, "sidecar".into(), "hook".into(), "pre-receive".into()],
            audit: Arc::new(bottle_gitgate::audit::JsonLines::new(std::io::stdout())),
            limits: bottle_gitgate::Limits::default(),
            http_backend: None,
        };
        tasks.spawn(async move {
            if let Err(e) =
                bottle_gitgate::serve(gate_cfg, gate_secrets, options, listener, shutdown()).await
            {
                stderrln!("error: git gate: {e}");
            }
        });
    }

    // Every part listens: say so, once, on stdout (the CLI waits for it),
    // after the bottle CA's certificate (public; never the key), which the
    // CLI installs in the agent without a round trip through it.
    crate::output::stdout(&format!("{}ready {}\n", proxy.ca_pem(), addrs.join(", ")))?;
    bottle_egress::serve(proxy, proxy_listener, shutdown()).await?;
    tasks.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// The DNS responder of `dns` (`{listen, names}`) and where it listens. Its
/// events go to the proxy's audit log, redacted by the proxy's log redactor:
/// a refused name may carry a secret (`<token>.attacker.example`), and the
/// log must not, whatever the DLP mode (`dlp: off` included).
fn dns_responder(d: &Value, proxy: &Proxy) -> Result<(SocketAddr, dns::Responder)> {
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
    let responder = dns::Responder::new(names, proxy.audit(), Some(proxy.log_redactor()));
    Ok((listen, responder))
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

    /// A proxy of `doc` whose audit lines stay in memory.
    fn proxy(doc: Value, secrets: &[(&str, &str)]) -> Proxy {
        let raw: RawConfig = serde_json::from_value(doc).unwrap();
        let secrets = secrets
            .iter()
            .map(|(k, v)| (k.to_string(), Secret::new(*v)))
            .collect();
        let mut cfg = ProxyConfig::from_raw(raw, Path::new("/"), &MapSecrets(secrets)).unwrap();
        cfg.audit = AuditTarget::Memory;
        Proxy::new(cfg).unwrap()
    }

    #[test]
    fn dns_events_never_carry_a_secret_even_with_dlp_off() {
        for mode in ["off", "log", "block"] {
            let p = proxy(
                serde_json::json!({"dlp": mode, "known_secret_env": ["S"]}),
                &[("S", SECRET)],
            );
            let d = serde_json::json!({"listen": "127.0.0.1:0", "names": {"sidecar": "10.0.0.2"}});
            let (_, r) = dns_responder(&d, &p).unwrap();
            let name = format!("{SECRET}.evil.test");
            let reply = r.answer(&dns::query(1, &name, 1)).unwrap();
            assert_eq!(reply[3] & 0x0f, 3, "NXDOMAIN");
            let lines = p.memory_log().unwrap().lines();
            assert_eq!(lines.len(), 1, "{mode}: the refusal is an event");
            assert!(lines[0].contains("dns-refused"), "{}", lines[0]);
            assert!(!lines[0].contains(SECRET), "{mode}: {}", lines[0]);
        }
    }
}
