//! `build` and `doctor` against the real engine.

use std::process::Command;

const BASE: &str = "claude-bottle-test/base:bookworm";
const AGENT_BASE: &str = "claude-bottle-test/agent-base:bookworm";
const VERSION: &str = env!("CARGO_PKG_VERSION");

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_claude-bottle")
}

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn sha256(path: &str) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn build_both_images_from_a_local_base() {
    if !super::images_ready("build_both_images_from_a_local_base") {
        return;
    }
    let _images = super::image_lock();
    let home = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(bin())
            .args(args)
            .env("HOME", home.path())
            .env("CLAUDE_BOTTLE_TEST_LABEL", "engine-build")
            .output()
            .unwrap()
    };
    let out = run(&["build", "--sidecar", "--base-image", BASE]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!("built `claude-bottle/sidecar:{VERSION}`")),
        "{err}"
    );
    let out = run(&["build", "--agent", "--base-image", AGENT_BASE]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let hash = sha256(bin());
    for kind in ["sidecar", "agent"] {
        let tag = format!("claude-bottle/{kind}:{VERSION}");
        let labels = docker(&[
            "image",
            "inspect",
            "--format",
            "{{json .Config.Labels}}",
            &tag,
        ]);
        let labels: serde_json::Value = serde_json::from_str(&labels).unwrap();
        assert_eq!(labels["io.claude-bottle.version"], VERSION, "{tag}");
        assert_eq!(
            labels["io.claude-bottle.binary-sha256"],
            hash.as_str(),
            "{tag}"
        );
        assert_eq!(labels["io.claude-bottle.test"], "engine-build", "{tag}");
    }
    // The sidecar runs the very binary that built it, as its own user.
    let sidecar = format!("claude-bottle/sidecar:{VERSION}");
    let v = docker(&[
        "run",
        "--rm",
        "--entrypoint",
        "/usr/local/bin/claude-bottle",
        &sidecar,
        "--version",
    ]);
    assert_eq!(v, format!("claude-bottle {VERSION}"));
    assert_eq!(
        docker(&["image", "inspect", "--format", "{{.Config.User}}", &sidecar]),
        "65200:65200"
    );
    // Names resolve through glibc's built-in sources only, whatever the
    // base's NSS setup.
    let nss = docker(&[
        "run",
        "--rm",
        "--entrypoint",
        "grep",
        &sidecar,
        "^hosts:",
        "/etc/nsswitch.conf",
    ]);
    assert_eq!(nss, "hosts: files dns");
    // The agent: uid 1000 in /workspace, claude at ~/.local/bin/claude.
    let agent = format!("claude-bottle/agent:{VERSION}");
    let probe = docker(&[
        "run",
        "--rm",
        &agent,
        "sh",
        "-c",
        "id -u; pwd; test -x ~/.local/bin/claude && echo claude-ok",
    ]);
    assert_eq!(probe, "1000\n/workspace\nclaude-ok");

    // doctor now finds both images fresh.
    let out = run(&["doctor"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "ok       image: `{sidecar}` is built from this executable"
        )),
        "{err}"
    );
    // This engine filters system calls by default (its `docker info`).
    assert!(
        err.contains("ok       seccomp: containers get the engine's default seccomp profile"),
        "{err}"
    );

    // A rebuild removes the image the tag named before (ours by its labels,
    // used by nothing): here a stand-in for a build by an older executable.
    let real = docker(&["image", "inspect", "--format", "{{.Id}}", &sidecar]);
    let older = tag_as_older_build(&sidecar);
    assert_ne!(older, real);
    let out = run(&["build", "--sidecar", "--base-image", BASE]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        docker(&["image", "inspect", "--format", "{{.Id}}", &sidecar]),
        real
    );
    let gone = Command::new("docker")
        .args(["image", "inspect", &older])
        .output()
        .unwrap();
    assert!(!gone.status.success(), "the replaced image is still there");
}

/// Tag `tag` as a build by another executable (same content, another
/// `binary-sha256`); returns the stand-in's id.
fn tag_as_older_build(tag: &str) -> String {
    let real = docker(&["image", "inspect", "--format", "{{.Id}}", tag]);
    let mut older = Command::new("docker")
        .args(["build", "-q", "-t", tag, "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        &mut older.stdin.take().unwrap(),
        format!("FROM {real}\nLABEL io.claude-bottle.binary-sha256=older\n").as_bytes(),
    )
    .unwrap();
    let older = older.wait_with_output().unwrap();
    assert!(older.status.success());
    String::from_utf8_lossy(&older.stdout).trim().to_string()
}

/// docker.md: an image whose `binary-sha256` differs from the running
/// executable's is stale and `start` rebuilds it, the agent image as well
/// as the sidecar's.
#[test]
fn start_rebuilds_a_stale_agent_image() {
    if !super::images_ready("start_rebuilds_a_stale_agent_image") {
        return;
    }
    let _images = super::image_lock();
    let agent = format!("claude-bottle/agent:{VERSION}");
    let older = tag_as_older_build(&agent);
    let h = super::bottle::Home::new("stale-agent");
    let out = h
        .cli(&["start", &h.agent, "--yes", "--prompt", "true"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains(&format!("building `{agent}`")), "{err}");
    assert_eq!(
        docker(&[
            "image",
            "inspect",
            "--format",
            "{{index .Config.Labels \"io.claude-bottle.binary-sha256\"}}",
            &agent
        ]),
        sha256(bin())
    );
    let gone = Command::new("docker")
        .args(["image", "inspect", &older])
        .output()
        .unwrap();
    assert!(!gone.status.success(), "the stale image is still there");
    assert_eq!(super::bottle::leftovers(&h.run), Vec::<String>::new());
}

#[test]
fn build_without_a_reachable_base_says_what_to_do() {
    if !super::images_ready("build_without_a_reachable_base_says_what_to_do") {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(bin())
        .args([
            "build",
            "--sidecar",
            "--base-image",
            "claude-bottle-test/does-not-exist:1",
        ])
        .env("HOME", home.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("building `claude-bottle/sidecar:"), "{err}");
    assert!(
        err.contains("hint: without registry access, pass a local image with `--base-image`"),
        "{err}"
    );
}
