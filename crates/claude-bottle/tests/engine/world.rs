//! The tests' "internet" (testing.md): a fake public server on a network
//! with a TEST-NET-3 subnet, never a real address. One container plays
//! every outside host a test needs (the model API, an allowed site, a git
//! upstream) over HTTP and HTTPS with its own CA, and records every request
//! it receives in `requests.jsonl`, so tests assert on what really arrived.
//!
//! Docker isolates bridge networks from each other, so the bottle's egress
//! network could not reach this one. Two `DOCKER-USER` rules let traffic to
//! and from 203.0.113.0/24 (a documentation range, never routed on the
//! internet) cross bridges; they are added once, idempotently, and concern
//! nothing but that range. The agent's internal network has no route at
//! all, so the rules give it nothing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

const IMAGE: &str = "claude-bottle-test/base:bookworm";
const LABEL: &str = "io.claude-bottle.test-world";
/// The names the world answers for (its certificate covers them). The
/// last eight are the escape suite's (a denied host, a read-only route, a
/// wildcard route's apex and a subdomain, a passthrough route, an `http`
/// token's host, a GET-and-POST route).
pub const NAMES: [&str; 11] = [
    "api.anthropic.com",
    "allowed.test",
    "git.world.test",
    "denied.test",
    "ro.test",
    "wild.test",
    "sub.wild.test",
    "pass.test",
    // A name under the escape bottle's passthrough route `*.pass.test`.
    "front.pass.test",
    // The escape bottle's `http` token host: the proxy injects it there.
    "api.token.test",
    // The escape bottle's route allowing GET and POST only.
    "form.test",
];

static SLOT: AtomicUsize = AtomicUsize::new(0);

pub struct World {
    pub ip: String,
    name: String,
    dir: tempfile::TempDir,
}

fn docker(args: &[&str]) -> std::process::Output {
    Command::new("docker").args(args).output().unwrap()
}

fn ensure_forwarding() {
    for dir in ["-d", "-s"] {
        let rule = ["DOCKER-USER", dir, "203.0.113.0/24", "-j", "ACCEPT"];
        let present = Command::new("iptables")
            .arg("-C")
            .args(rule)
            .output()
            .is_ok_and(|o| o.status.success());
        if !present {
            let o = Command::new("iptables")
                .arg("-I")
                .args(rule)
                .output()
                .expect("iptables is needed to route the test world (TEST-NET-3)");
            assert!(
                o.status.success(),
                "cannot add the test world's forwarding rule (root needed): {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
    }
}

impl World {
    /// A fresh world on its own /28 of TEST-NET-3.
    pub fn start() -> World {
        ensure_forwarding();
        // 15 slots of 16 addresses; one test binary runs at a time, so a
        // counter in this process keeps parallel tests apart. A slot left
        // by a killed run is cleared first.
        let slot = SLOT.fetch_add(1, Ordering::SeqCst) % 15 + 1;
        let base = slot * 16;
        let label = format!("{LABEL}={slot}");
        let stale = docker(&["ps", "-aq", "--filter", &format!("label={label}")]);
        for id in String::from_utf8_lossy(&stale.stdout).split_whitespace() {
            docker(&["rm", "-f", id]);
        }
        let stale = docker(&["network", "ls", "-q", "--filter", &format!("label={label}")]);
        for id in String::from_utf8_lossy(&stale.stdout).split_whitespace() {
            docker(&["network", "rm", id]);
        }
        let name = format!("cbt-world-{}-{slot}", std::process::id());
        let subnet = format!("203.0.113.{base}/28");
        let ip = format!("203.0.113.{}", base + 2);
        let o = docker(&[
            "network", "create", "--label", &label, "--subnet", &subnet, &name,
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let dir = tempfile::tempdir().unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/world");
        let mut args = vec![
            "run".to_string(),
            "-d".into(),
            "--name".into(),
            name.clone(),
            "--label".into(),
            label.clone(),
            "--network".into(),
            name.clone(),
            "--ip".into(),
            ip.clone(),
            "-v".into(),
            format!("{}:/srv:ro", script.display()),
            "-v".into(),
            format!("{}:/world", dir.path().display()),
            IMAGE.into(),
            "python3".into(),
            "/srv/fake_world.py".into(),
            "/world".into(),
        ];
        args.extend(NAMES.iter().map(|n| n.to_string()));
        let o = Command::new("docker").args(&args).output().unwrap();
        let world = World { ip, name, dir };
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let deadline = Instant::now() + Duration::from_secs(30);
        while !world.dir.path().join("ready").exists() {
            if Instant::now() > deadline {
                let logs = docker(&["logs", &world.name]);
                panic!(
                    "the fake world did not come up:\n{}",
                    String::from_utf8_lossy(&logs.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        world
    }

    /// The world's CA certificate (the bottle's `upstream_ca`).
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// `egress.resolve` lines pinning every world name to the world.
    pub fn resolve_yaml(&self, indent: &str) -> String {
        NAMES
            .iter()
            .map(|n| format!("{indent}{n}: {}\n", self.ip))
            .collect()
    }

    /// The JSON lines of one of the world's logs.
    fn log(&self, file: &str) -> Vec<Value> {
        std::fs::read_to_string(self.dir.path().join(file))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Value> {
        self.log("requests.jsonl")
    }

    /// Every DNS query the world's resolver received (name and raw
    /// packet in hex).
    pub fn dns_queries(&self) -> Vec<Value> {
        self.log("dns.jsonl")
    }

    /// The DNS log as it was written.
    pub fn dns_log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dns.jsonl")).unwrap_or_default()
    }

    /// Everything the world recorded (requests and DNS queries), as text,
    /// for "did this marker ever arrive" checks.
    pub fn everything(&self) -> String {
        ["requests.jsonl", "dns.jsonl"]
            .iter()
            .map(|f| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default())
            .collect()
    }

    /// Publish `body` at `https://allowed.test/esc-config`.
    pub fn publish_config(&self, body: &str) {
        let tmp = self.dir.path().join("esc-config.tmp");
        std::fs::write(&tmp, body).unwrap();
        std::fs::rename(tmp, self.dir.path().join("esc-config.json")).unwrap();
    }

    /// A bare repository served at `https://git.world.test/git/<name>.git`
    /// holding one commit on `main`.
    pub fn bare_repo(&self, name: &str) -> PathBuf {
        let bare = self.dir.path().join(format!("git/{name}.git"));
        let work = self.dir.path().join(format!("seed-{name}"));
        let git = |dir: &Path, args: &[&str]| {
            let o = Command::new("git")
                .args(args)
                .current_dir(dir)
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .env("HOME", self.dir.path())
                .output()
                .unwrap();
            assert!(
                o.status.success(),
                "git {args:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        };
        std::fs::create_dir_all(&work).unwrap();
        git(&work, &["init", "-q", "-b", "main"]);
        std::fs::write(work.join("README.md"), "seeded by the fake world\n").unwrap();
        git(&work, &["add", "."]);
        git(
            &work,
            &[
                "-c",
                "user.name=World",
                "-c",
                "user.email=world@example.com",
                "commit",
                "-qm",
                "seed",
            ],
        );
        git(
            self.dir.path(),
            &[
                "clone",
                "-q",
                "--bare",
                work.to_str().unwrap(),
                bare.to_str().unwrap(),
            ],
        );
        bare
    }
}

impl Drop for World {
    fn drop(&mut self) {
        docker(&["rm", "-f", &self.name]);
        docker(&["network", "rm", &self.name]);
    }
}
