//! `start --dry-run`: the preflight and the plan JSON.

use super::util::*;

#[test]
fn dry_run_text_preflight() {
    let t = TestEnv::standard();
    let (code, out, err) = t.run(t.cmd(&["start", "reviewer", "--dry-run"]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "", "human output goes to stderr");
    insta::assert_snapshot!("dry_run_text", err);
}

#[test]
fn dry_run_json_is_only_the_plan() {
    let t = TestEnv::standard();
    let (code, out, err) = t.run(t.cmd(&["start", "reviewer", "--dry-run", "--format", "json"]));
    assert_eq!(code, 0, "{err}");
    let plan: serde_json::Value = serde_json::from_str(&out).expect("stdout is one JSON document");
    assert_eq!(plan["engine_reached"], false);
    assert!(plan["runtime"].is_null());
    assert!(
        plan["warnings"][0]
            .as_str()
            .unwrap()
            .contains("not reached")
    );
    insta::assert_snapshot!("dry_run_json", out);
}

#[test]
fn bottle_flag_and_env_overrides() {
    let t = TestEnv::standard();
    t.bottle("other", "---\nimage: from/bottle:1\n---\n");
    let mut c = t.cmd(&[
        "start",
        "reviewer",
        "--bottle",
        "base",
        "--dry-run",
        "--format",
        "json",
        "--copy-cwd",
        "--keep",
    ]);
    c.env("CLAUDE_BOTTLE_IMAGE", "env/image:7")
        .env("CLAUDE_BOTTLE_DERIVED_IMAGE", "mine:cwd")
        .env("CLAUDE_BOTTLE_CONTAINER", "pinned-name");
    let (code, out, err) = t.run(c);
    assert_eq!(code, 0, "{err}");
    let plan: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(plan["bottle"]["name"], "base");
    assert_eq!(plan["image"], "env/image:7");
    assert_eq!(plan["derived_image"], "mine:cwd");
    assert_eq!(plan["container"], "pinned-name");
    assert_eq!(plan["copy_cwd"], true);
    assert_eq!(plan["keep"], true);
    let (_, out, _) = t.run(t.cmd(&[
        "start",
        "reviewer",
        "--bottle",
        "other",
        "--dry-run",
        "--format",
        "json",
    ]));
    let plan: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(plan["image"], "from/bottle:1");
}

#[test]
fn project_agent_shadows_home_agent() {
    let t = TestEnv::standard();
    t.project_agent("reviewer", "---\nbottle: base\n---\nProject reviewer.\n");
    t.write(
        "project/.claude-bottle/bottles/evil.md",
        "---\negress:\n  allow: [{host: \"*\"}]\n---\n",
    );
    let (code, out, err) = t.run(t.cmd(&["start", "reviewer", "--dry-run", "--format", "json"]));
    assert_eq!(code, 0, "{err}");
    let plan: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(plan["agent"]["source"], "project");
    assert_eq!(plan["agent"]["prompt_first_line"], "Project reviewer.");
    let warnings = plan["warnings"].to_string();
    assert!(
        warnings.contains("project/.claude-bottle/bottles"),
        "{warnings}"
    );
    assert!(
        warnings.contains("the project's agent `reviewer`")
            && warnings.contains("replaces your home agent of that name"),
        "{warnings}"
    );
    let (code, _, err) = t.run(t.cmd(&["start", "reviewer", "--bottle", "evil", "--dry-run"]));
    assert_eq!(code, 2);
    assert!(
        err.contains(
            "error: `--bottle`: bottle `evil` does not exist \
             (looked for `[TMP]/home/.claude-bottle/bottles/evil.md`)"
        ),
        "{err}"
    );
}

#[test]
fn forward_oauth_token_warns_plainly() {
    let t = TestEnv::new();
    t.bottle("plain", "---\n---\n");
    t.agent("a", "---\nbottle: plain\n---\n");
    let (code, _, err) = t.run(t.cmd(&["start", "a", "--dry-run", "--forward-oauth-token"]));
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("the agent holds the real OAuth token"),
        "{err}"
    );
    assert!(
        err.contains("api.anthropic.com  ports 443  tls passthrough"),
        "{err}"
    );

    // Without the variable: bad usage naming the flag, not the bottle file.
    let mut c = t.cmd(&["start", "a", "--dry-run", "--forward-oauth-token"]);
    c.env_remove("CLAUDE_BOTTLE_OAUTH_TOKEN");
    let (code, _, err) = t.run(c);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.starts_with(
            "error: `--forward-oauth-token` needs the environment variable \
             `CLAUDE_BOTTLE_OAUTH_TOKEN`, which is not set"
        ),
        "{err}"
    );
    assert!(!err.contains("plain.md"), "{err}");
    assert!(
        err.contains("hint: export `CLAUDE_BOTTLE_OAUTH_TOKEN`"),
        "{err}"
    );
    assert!(
        err.contains("claude setup-token"),
        "where the token comes from: {err}"
    );
}

#[test]
fn launch_rules_before_anything_is_created() {
    let t = TestEnv::standard();
    // No terminal and no --yes: refused.
    let (code, _, err) = t.run(t.cmd(&["start", "reviewer"]));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("no terminal to confirm the launch on"),
        "{err}"
    );
    // Without `--prompt` either: both are named at once.
    assert!(err.contains("`--yes --prompt TEXT`"), "{err}");
    // `?` values need a terminal to be asked on: said plainly, by name.
    let (code, _, err) = t.run(t.cmd(&["start", "reviewer", "--yes", "--prompt", "true"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("`DB_PASSWORD` is asked at launch"), "{err}");
    assert!(err.contains("${VAR}"), "{err}");
    // Also without `--prompt`: the value is named, not hidden behind the
    // interactive-session refusal (manifest.md).
    let (code, _, err) = t.run(t.cmd(&["start", "reviewer", "--yes"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("`DB_PASSWORD` is asked at launch"), "{err}");
    // An interactive session needs a terminal too; the hint is `--prompt`.
    t.agent("plain", "---\nbottle: base\n---\nYou work.\n");
    let (code, _, err) = t.run(t.cmd(&["start", "plain", "--yes"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("stdin is not a terminal"), "{err}");
    assert!(err.contains("--prompt TEXT"), "{err}");
    // So does `attach`, before it asks the engine anything.
    let (code, _, err) = t.run(t.cmd(&["attach", "some-bottle"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("stdin is not a terminal"), "{err}");
    // --format json goes with --dry-run.
    let (code, _, err) = t.run(t.cmd(&["start", "reviewer", "--format", "json"]));
    assert_eq!(code, 2, "{err}");
}

/// With a terminal and no engine, `start` shows the preflight and fails with
/// the engine's error (exit 3) before `Launch? [y/N]`: a yes could only lead
/// to that same failure. An answer waits on the terminal, so a CLI that
/// still asked would read it and exit 0.
#[test]
fn no_engine_fails_before_asking() {
    use std::io::Write;
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    let t = TestEnv::new();
    t.bottle("plain", "---\n---\n");
    t.agent("a", "---\nbottle: plain\n---\n");
    let (controller, terminal) = bottle_testkit::pty();
    let mut controller = std::fs::File::from(controller);
    controller.write_all(b"n\n").unwrap();

    let mut c = t.std_cmd(&["start", "a"]);
    c.stdin(Stdio::from(terminal))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    drop(c);
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("start did not end");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).replace(&t.root.display().to_string(), "[TMP]");
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.starts_with("agent      a "),
        "the preflight first: {err}"
    );
    assert!(!err.contains("Launch?"), "{err}");
    assert!(
        err.contains("error: cannot reach the container engine at `unix://[TMP]/no-engine.sock`"),
        "{err}"
    );
    assert!(err.contains("hint: is Docker running?"), "{err}");
}

#[test]
fn engine_is_asked_when_reachable() {
    if !docker_available("engine_is_asked_when_reachable") {
        return;
    }
    let t = TestEnv::standard();
    let (code, out, err) =
        t.run(t.with_engine(&["start", "reviewer", "--dry-run", "--format", "json"]));
    assert_eq!(code, 0, "{err}");
    let plan: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(plan["engine_reached"], true, "{out}");
    let runtime = plan["runtime"].as_str().unwrap();
    assert!(runtime == "runc" || runtime == "runsc", "{runtime}");
    assert_eq!(plan["warnings"], serde_json::json!([]));
}

#[test]
fn taken_names_get_a_suffix() {
    if !docker_available("taken_names_get_a_suffix") {
        return;
    }
    // A network (cheap, no image needed) named like the bottle's makes the slug taken.
    let t = TestEnv::new();
    let agent = format!("suffix-{}", std::process::id());
    t.bottle("plain", "---\n---\n");
    t.agent(&agent, "---\nbottle: plain\n---\n");
    let net = format!("claude-bottle-{agent}-egress");
    let made = std::process::Command::new("docker")
        .args([
            "network",
            "create",
            "--label",
            "io.claude-bottle.test=cli",
            &net,
        ])
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    struct Cleanup(String);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = std::process::Command::new("docker")
                .args(["network", "rm", &self.0])
                .output();
        }
    }
    let _guard = Cleanup(net);
    let (code, out, err) =
        t.run(t.with_engine(&["start", &agent, "--dry-run", "--format", "json"]));
    assert_eq!(code, 0, "{err}");
    let plan: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(plan["slug"], format!("{agent}-2"));
    assert_eq!(plan["container"], format!("claude-bottle-{agent}-2"));
}

#[test]
fn pinned_container_that_exists_is_refused() {
    if !docker_available("pinned_container_that_exists_is_refused") {
        return;
    }
    let t = TestEnv::standard();
    let name = format!("claude-bottle-test-pin-{}", std::process::id());
    let _guard = created_container(&name);
    let mut c = t.with_engine(&["start", "reviewer", "--dry-run"]);
    c.env("CLAUDE_BOTTLE_CONTAINER", &name);
    let (code, _, err) = t.run(c);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains(&format!("`{name}`, which already exists")),
        "{err}"
    );
    assert!(err.contains(&format!("docker rm -f {name}")), "{err}");
}

#[test]
fn a_timeout_without_a_unit_is_bad_usage() {
    let t = TestEnv::standard();
    let (code, out, err) = t.run(t.cmd(&["start", "reviewer", "--timeout", "30", "--yes"]));
    assert_eq!(code, 2, "{err}");
    assert_eq!(out, "");
    assert!(err.contains("`--timeout`: `30` has no unit"), "{err}");
    assert!(err.contains("30m"), "the hint shows the form: {err}");
}

#[test]
fn copy_cwd_names_secret_looking_files_in_the_preflight() {
    let t = TestEnv::standard();
    std::fs::write(t.project.join(".env"), "TOKEN=x\n").unwrap();
    std::fs::write(t.project.join(".netrc"), "machine h password x\n").unwrap();
    std::fs::create_dir(t.project.join(".aws")).unwrap();
    std::fs::write(t.project.join(".aws/credentials"), "[default]\n").unwrap();
    std::fs::write(t.project.join("main.rs"), "fn main() {}\n").unwrap();
    let (code, _, err) = t.run(t.cmd(&["start", "reviewer", "--dry-run", "--copy-cwd"]));
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains(
            "`--copy-cwd` copies files that look like secrets into the bottle: .aws/credentials, .env, .netrc"
        ),
        "{err}"
    );
}

#[test]
fn copy_cwd_refuses_the_home_folder() {
    let t = TestEnv::standard();
    let mut c = t.cmd(&["start", "reviewer", "--dry-run", "--copy-cwd"]);
    c.current_dir(&t.home);
    let (code, out, err) = t.run(c);
    assert_eq!(code, 2, "{err}");
    assert_eq!(out, "");
    assert!(
        err.contains(
            "`--copy-cwd` copies the current folder, and `[TMP]/home` is your home folder"
        ),
        "{err}"
    );
    assert!(err.contains("`cd` into the project's folder"), "{err}");
}

/// Attack on the user's trust: the bottle's token file sits in the project
/// (not ignored by git, or not a git folder), under a name no secret
/// pattern knows. `--copy-cwd` would put the very credential only the
/// sidecar may hold into the agent's image; `start` refuses, naming it.
#[test]
fn copy_cwd_refuses_a_folder_holding_the_bottles_own_token() {
    let t = TestEnv::new();
    let oauth = "sk-ant-oat01-CopyCwdTokenValue-0123456789";
    t.write("home/proj/.secrets/claude-token", format!("{oauth}\n"));
    t.write("home/proj/main.rs", "fn main() {}\n");
    t.bottle(
        "dev",
        "---\ntokens:\n  - kind: anthropic\n    token_ref: file:~/proj/.secrets/claude-token\n---\n",
    );
    t.agent("a", "---\nbottle: dev\n---\n");
    let mut c = t.cmd(&["start", "a", "--dry-run", "--copy-cwd"]);
    c.current_dir(t.home.join("proj"));
    let (code, out, err) = t.run(c);
    assert_eq!(code, 2, "{err}");
    assert_eq!(out, "");
    assert!(
        err.contains("`--copy-cwd` would copy the bottle's own credentials into the agent's image: .secrets/claude-token"),
        "{err}"
    );
    assert!(!err.contains(oauth), "{err}");
    // Without the token file in it, the same folder is copied.
    std::fs::remove_file(t.home.join("proj/.secrets/claude-token")).unwrap();
    t.write("home/tok", format!("{oauth}\n"));
    t.bottle(
        "dev",
        "---\ntokens:\n  - kind: anthropic\n    token_ref: file:~/tok\n---\n",
    );
    let mut c = t.cmd(&["start", "a", "--dry-run", "--copy-cwd"]);
    c.current_dir(t.home.join("proj"));
    let (code, _, err) = t.run(c);
    assert_eq!(code, 0, "{err}");
}
