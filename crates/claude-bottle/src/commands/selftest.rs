//! `doctor --self-test`: a throw-away bottle on this machine's engine,
//! attacked from inside by this very executable, copied into the agent as
//! a probe (it needs nothing from the agent image). It checks what
//! cli.md names: no route out, a denied host refused, DNS refused, no
//! token in the agent, and no egress once the sidecar is dead; each is
//! printed as `enforced` or `NOT ENFORCED`.
//!
//! The probe aims only at the host's own addresses (every bridge gateway
//! the engine knows, where this process listens), at the bottle's own
//! sidecar and at names under `.invalid`, never at a public address.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Result;
use bottle_docker::image::hex;
use bottle_docker::{Engine, exec};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::progress::Progress;
use crate::settings::Settings;

/// Where the probe lives in the agent: this executable, brought in as
/// provisioning's helper (root's, 0755, on the writable root file system).
const PROBE: &str = bottle_docker::helper::PATH;
/// A name the proxy has no route for and DNS must not answer.
const DENIED: &str = "denied.self-test.invalid";

/// One verdict.
struct Check {
    name: String,
    enforced: bool,
    detail: String,
}

pub fn run(settings: &Settings) -> Result<ExitCode> {
    let home = settings
        .bottle_home
        .join(format!("self-test-{}", std::process::id()));
    let outcome = run_in(settings, &home);
    let _ = std::fs::remove_dir_all(&home);
    let checks = outcome?;
    let mut failed = 0;
    for c in &checks {
        let word = if c.enforced {
            "enforced    "
        } else {
            "NOT ENFORCED"
        };
        failed += usize::from(!c.enforced);
        stderrln!("{word} {}: {}", c.name, c.detail);
    }
    if failed == 0 {
        stderrln!("self-test: all {} checks enforced", checks.len());
        Ok(ExitCode::SUCCESS)
    } else {
        stderrln!(
            "self-test: {failed} of {} checks NOT ENFORCED: do not run agents unsupervised on this machine until they are",
            checks.len()
        );
        Ok(ExitCode::from(1))
    }
}

/// A home folder holding only the throw-away bottle, its agent and a
/// random token (0600 in a 0700 folder, removed by the caller).
fn write_home(home: &Path) -> Result<String> {
    let mut random = [0u8; 24];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut random)?;
    let token = format!("sk-ant-oat01-selftest-{}", hex(&random));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(home.join("bottles"))?;
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(home.join("agents"))?;
    let token_file = home.join("token");
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&token_file)?
        .write_all(token.as_bytes())?;
    std::fs::write(
        home.join("bottles/self-test.md"),
        format!(
            "---\ntokens:\n  - kind: anthropic\n    token_ref: file:{}\negress:\n  allow:\n    - host: allowed.self-test.invalid\n---\nThe bottle of `doctor --self-test`.\n",
            token_file.display()
        ),
    )?;
    std::fs::write(
        home.join("agents/self-test.md"),
        "---\nbottle: self-test\n---\nThe agent of `doctor --self-test`.\n",
    )?;
    Ok(token)
}

fn run_in(settings: &Settings, home: &Path) -> Result<Vec<Check>> {
    let token = write_home(home)?;
    let test = Settings {
        user_home: settings.user_home.clone(),
        bottle_home: home.to_path_buf(),
        cwd: home.to_path_buf(),
        version: settings.version,
    };
    let loaded = super::plan::load(&test, "self-test", None)?;
    let rt = super::launch::runtime()?;
    let connected = rt.block_on(Engine::connect());
    let facts = rt.block_on(super::plan::engine_facts(&connected));
    let resolved =
        super::plan::resolve(&test, &loaded, facts.ok(), &bottle_plan::Options::default())?;
    let plan = &resolved.plan;
    rt.block_on(async {
        let engine = connected?;
        super::launch::ensure_images(&test, &engine, plan).await?;
        let (claimed, base) = super::launch::claim(&test, &engine, plan, false).await?;
        let plan = &claimed;
        let mut interrupts = super::launch::Interrupts::new()?;
        let work = attack(&engine, plan, &resolved.secrets, &base, &token);
        let outcome = tokio::select! {
            r = work => r,
            _ = interrupts.next_signal() => Err(anyhow::anyhow!("interrupted")),
        };
        // Nothing of a throw-away bottle is worth saving: remove it.
        let removal = match super::finish::objects(&engine, Some(&plan.slug)).await {
            Ok(objects) => bottle_docker::teardown::remove(&engine, &objects).await,
            Err(e) => vec![e],
        };
        for failure in &removal {
            stderrln!("warning: removing the throw-away bottle: {failure}");
        }
        let _ = crate::state::remove(&test, &plan.slug);
        outcome
    })
}

async fn attack(
    engine: &Engine,
    plan: &bottle_plan::Plan,
    secrets: &bottle_plan::Secrets,
    base: &HashMap<String, String>,
    token: &str,
) -> Result<Vec<Check>> {
    // Configured as a real bottle's sidecar is.
    let host_addresses = super::launch::host_addresses(plan);
    let progress = Progress::start("launching a throw-away bottle");
    let mut on = |step: &str| progress.detail(step);
    let launched = bottle_docker::launch::launch(
        engine,
        plan,
        secrets,
        bottle_docker::launch::Inputs {
            env: bottle_docker::provision::env_file(&BTreeMap::new())?,
            prompt: String::new(),
            skills: None,
            host_addresses,
        },
        base,
        &mut on,
    )
    .await?;
    progress.detail("copying the probe into the agent");
    bottle_docker::provision::bring_helper(engine, &launched.agent_id).await?;
    progress.finish("attacking it from inside");

    let listener = HostListener::start()?;
    let sidecar_ip = launched.sidecar_ip.clone();
    let mut host_addrs = engine.gateway_addresses().await?;
    // Unreadable tables (not Linux) leave the bridges' gateways to aim at.
    let own = crate::addresses::local().unwrap_or_default();
    host_addrs.extend(own.iter().map(IpAddr::to_string));
    host_addrs.sort();
    host_addrs.dedup();
    let spec = json!({
        "host_addrs": host_addrs,
        "port": listener.port,
        "sidecar": sidecar_ip,
        "token": {
            "prefix": &token[..token.len().min(16)],
            "len": token.len(),
            "sha256": hex(&Sha256::digest(token.as_bytes())),
        },
    });
    let mut checks = probe(engine, &launched.agent_id, "live", &spec).await?;
    checks.push(listener.check("no route out (host listener)"));

    engine.kill(&launched.sidecar_id).await?;
    let dead = probe(engine, &launched.agent_id, "dead", &spec).await?;
    let all_closed = dead.iter().all(|c| c.enforced);
    let detail = dead
        .iter()
        .map(|c| format!("{}: {}", c.name, c.detail))
        .collect::<Vec<_>>()
        .join("; ");
    checks.push(Check {
        name: "sidecar death means no egress".into(),
        enforced: all_closed && listener.seen() == 0,
        detail,
    });
    Ok(checks)
}

/// How long one phase of the probe may take: its own steps are bounded
/// (a few seconds each), so this only ends a probe stuck in a call the
/// sandbox does not time out.
const PROBE_TIMEOUT: Duration = Duration::from_secs(120);

/// Run the probe in the agent as the agent's user; its verdicts.
async fn probe(engine: &Engine, agent: &str, phase: &str, spec: &Value) -> Result<Vec<Check>> {
    let run = exec::run(
        engine,
        agent,
        exec::Exec {
            cmd: vec![
                PROBE.into(),
                "self-test-probe".into(),
                phase.into(),
                spec.to_string(),
            ],
            user: Some("1000".into()),
            ..Default::default()
        },
    );
    let Ok(out) = tokio::time::timeout(PROBE_TIMEOUT, run).await else {
        anyhow::bail!(
            "the probe in the agent did not finish its `{phase}` checks within {} s; \
             the bottle's sandbox may not honour a timeout the probe relies on",
            PROBE_TIMEOUT.as_secs()
        );
    };
    let out = out?;
    let checks: Vec<Check> = out
        .stdout_text()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| Check {
            name: v["check"].as_str().unwrap_or("?").to_string(),
            enforced: v["enforced"].as_bool().unwrap_or(false),
            detail: v["detail"].as_str().unwrap_or("").to_string(),
        })
        .collect();
    if checks.is_empty() {
        anyhow::bail!(
            "the probe in the agent reported nothing (exit {}): {}",
            out.code,
            out.stderr_text().trim()
        );
    }
    Ok(checks)
}

/// Listens on every address of the host, one port, and counts arrivals.
struct HostListener {
    port: u16,
    seen: Arc<AtomicUsize>,
}

impl HostListener {
    fn start() -> std::io::Result<HostListener> {
        let l = TcpListener::bind("[::]:0").or_else(|_| TcpListener::bind("0.0.0.0:0"))?;
        let port = l.local_addr()?.port();
        let seen = Arc::new(AtomicUsize::new(0));
        let counter = seen.clone();
        // The thread ends with the process (doctor exits right after).
        std::thread::spawn(move || {
            for c in l.incoming() {
                if c.is_ok() {
                    counter.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        Ok(HostListener { port, seen })
    }

    fn seen(&self) -> usize {
        self.seen.load(Ordering::SeqCst)
    }

    fn check(&self, name: &str) -> Check {
        let n = self.seen();
        Check {
            name: name.into(),
            enforced: n == 0,
            detail: format!("{n} connection(s) from the bottle reached this host"),
        }
    }
}

// ---- the probe, run inside the agent ------------------------------------

/// `claude-bottle self-test-probe PHASE SPEC`: the checks of one phase, as
/// JSON lines on stdout.
pub fn probe_main(phase: &str, spec: &str) -> ExitCode {
    let Ok(spec) = serde_json::from_str::<Value>(spec) else {
        stderrln!("self-test-probe: the spec is not JSON");
        return ExitCode::from(2);
    };
    let sidecar = spec["sidecar"].as_str().unwrap_or("").to_string();
    let port = spec["port"].as_u64().unwrap_or(0) as u16;
    let hosts: Vec<String> = spec["host_addrs"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let mut out = Vec::new();
    let reached: Vec<&String> = hosts.iter().filter(|h| tcp_reaches(h, port)).collect();
    out.push(json!({
        "check": "no route out",
        "enforced": reached.is_empty(),
        "detail": format!("{} host address(es) tried, reached: {reached:?}", hosts.len()),
    }));
    let name = format!("p{}.{DENIED}", std::process::id());
    let dns: Vec<(String, Option<u16>)> = nameservers(&sidecar)
        .into_iter()
        .map(|ns| {
            let answers = dns_answers(&ns, &name);
            (ns, answers)
        })
        .collect();
    out.push(json!({
        "check": "DNS refused",
        "enforced": dns.iter().all(|(_, a)| a.unwrap_or(0) == 0),
        "detail": dns.iter().map(|(ns, a)| match a {
            Some(n) => format!("{ns}: {n} answer(s)"),
            None => format!("{ns}: no reply"),
        }).collect::<Vec<_>>().join(", "),
    }));
    if phase == "live" {
        let http = proxy_says(
            &sidecar,
            &format!("GET http://{DENIED}/ HTTP/1.1\r\nHost: {DENIED}\r\n\r\n"),
        );
        let tunnel = proxy_says(
            &sidecar,
            &format!("CONNECT {DENIED}:443 HTTP/1.1\r\nHost: {DENIED}:443\r\n\r\n"),
        );
        let refused = |r: &str| {
            r.starts_with("HTTP/1.1 403")
                && r.to_ascii_lowercase().contains("x-claude-bottle-block")
        };
        out.push(json!({
            "check": "denied host refused",
            "enforced": refused(&http) && refused(&tunnel),
            "detail": format!("HTTP: {}; CONNECT: {}", first_line(&http), first_line(&tunnel)),
        }));
        let found = token_places(&spec["token"]);
        out.push(json!({
            "check": "no token in the agent",
            "enforced": found.is_empty(),
            "detail": if found.is_empty() {
                "env, every process's environ and cmdline, and the files under /run, /tmp, /home, /workspace, /etc hold no copy".to_string()
            } else {
                format!("found in {found:?}")
            },
        }));
    } else {
        let alive = TcpStream::connect_timeout(
            &SocketAddr::new(sidecar.parse().unwrap_or([0, 0, 0, 0].into()), 3128),
            Duration::from_secs(2),
        )
        .is_ok();
        out.push(json!({
            "check": "proxy gone",
            "enforced": !alive,
            "detail": if alive { "the proxy still answers" } else { "the proxy does not answer" },
        }));
    }
    let mut stdout = std::io::stdout().lock();
    for line in out {
        let _ = writeln!(stdout, "{line}");
    }
    ExitCode::SUCCESS
}

/// Whether a TCP connection to `host` got an answer: accepted, or refused
/// (a reset means a route there exists; nothing needed to listen). Only a
/// timeout or an unreachable network is no route. Counting connections
/// alone said "no route out" for an engine on another machine or a host
/// listener bound to IPv6 only, where nothing listens on the port tried.
fn tcp_reaches(host: &str, port: u16) -> bool {
    let Ok(ip) = host.parse::<std::net::IpAddr>() else {
        return false;
    };
    match TcpStream::connect_timeout(&SocketAddr::new(ip, port), Duration::from_secs(2)) {
        Ok(_) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionRefused,
    }
}

/// The sidecar, the resolvers of /etc/resolv.conf and Docker's own.
fn nameservers(sidecar: &str) -> Vec<String> {
    let mut out = vec![sidecar.to_string(), "127.0.0.11".to_string()];
    let conf = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    for l in conf.lines() {
        if let Some(ns) = l.strip_prefix("nameserver") {
            out.push(ns.trim().to_string());
        }
    }
    out.sort();
    out.dedup();
    out.retain(|s| s.parse::<std::net::IpAddr>().is_ok());
    out
}

/// How many answers a resolver gives for `name` (type A), None without a reply.
fn dns_answers(server: &str, name: &str) -> Option<u16> {
    let ip: std::net::IpAddr = server.parse().ok()?;
    let sock = UdpSocket::bind(if ip.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" }).ok()?;
    // Polled, not a read timeout: gVisor's host network mode (runsc
    // 2022-12) ignores SO_RCVTIMEO and the probe waited forever.
    sock.set_nonblocking(true).ok()?;
    let q = bottle_egress::dns::query(0x5e1f, name, 1);
    sock.send_to(&q, SocketAddr::new(ip, 53)).ok()?;
    let mut buf = [0u8; 512];
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    let n = loop {
        match sock.recv_from(&mut buf) {
            Ok((n, _)) => break n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if std::time::Instant::now() >= deadline {
                    return None;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(_) => return None,
        }
    };
    (n >= 12).then(|| u16::from_be_bytes([buf[6], buf[7]]))
}

/// What the proxy answers to `request` (its head, or why there was none).
fn proxy_says(sidecar: &str, request: &str) -> String {
    let Ok(ip) = sidecar.parse::<std::net::IpAddr>() else {
        return "no sidecar address".into();
    };
    let Ok(mut s) = TcpStream::connect_timeout(&SocketAddr::new(ip, 3128), Duration::from_secs(3))
    else {
        return "the proxy does not answer".into();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if s.write_all(request.as_bytes()).is_err() {
        return "the proxy closed the connection".into();
    }
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("no answer")
}

/// Where a copy of the token is: env, /proc, and files in the usual places.
fn token_places(fp: &Value) -> Vec<String> {
    let prefix = fp["prefix"].as_str().unwrap_or("").as_bytes().to_vec();
    let len = fp["len"].as_u64().unwrap_or(0) as usize;
    let sha = fp["sha256"].as_str().unwrap_or("").to_string();
    if prefix.is_empty() || len < prefix.len() {
        return vec!["the spec has no token fingerprint".into()];
    }
    let holds = |data: &[u8]| {
        let mut at = 0;
        while let Some(i) = find(&data[at..], &prefix) {
            let start = at + i;
            if let Some(w) = data.get(start..start + len)
                && hex(&Sha256::digest(w)) == sha
            {
                return true;
            }
            at = start + 1;
        }
        false
    };
    let mut found = Vec::new();
    let env: Vec<u8> = std::env::vars_os()
        .flat_map(|(k, v)| {
            let mut b = k.into_encoded_bytes();
            b.push(b'=');
            b.extend(v.into_encoded_bytes());
            b.push(b'\n');
            b
        })
        .collect();
    if holds(&env) {
        found.push("the environment".into());
    }
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let p = e.path();
            for f in ["environ", "cmdline"] {
                if let Ok(d) = std::fs::read(p.join(f))
                    && holds(&d)
                {
                    found.push(p.join(f).display().to_string());
                }
            }
        }
    }
    let mut budget = 20_000usize;
    for root in ["/run", "/tmp", "/home", "/workspace", "/etc", "/root"] {
        walk(Path::new(root), &mut budget, &mut |p, d| {
            if p != Path::new(PROBE) && holds(d) {
                found.push(p.display().to_string());
            }
        });
    }
    found
}

fn walk(dir: &Path, budget: &mut usize, f: &mut dyn FnMut(&Path, &[u8])) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        if *budget == 0 {
            return;
        }
        *budget -= 1;
        let p: PathBuf = e.path();
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if meta.is_dir() {
            walk(&p, budget, f);
        } else if meta.is_file()
            && meta.len() <= 4 << 20
            && let Ok(d) = std::fs::read(&p)
        {
            f(&p, &d);
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test: a failed step is a failed test

    use super::*;

    /// A port where nothing listens still proves a route: the reset came
    /// back. (The agent's own view, an unreachable network, is what
    /// `doctor --self-test` itself shows on the engine.)
    #[test]
    fn a_refused_connection_counts_as_reached() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert!(tcp_reaches("127.0.0.1", port), "listening");
        drop(l);
        assert!(tcp_reaches("127.0.0.1", port), "refused");
        assert!(!tcp_reaches("not-an-address", port));
    }
}
