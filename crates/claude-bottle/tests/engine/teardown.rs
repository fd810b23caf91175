//! Teardown saves before it removes (`docker.md`, "Teardown"): the outbox
//! (a bundle of new commits, a patch of uncommitted changes), the sidecar's
//! audit log, a summary naming refused hosts and the route that would allow
//! them; `logs` reads a bottle's events, `stop` tears a kept bottle down.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::bottle::{Home, agent_processes, leftovers, slug_of};

/// Run the CLI to its end.
fn run_cli(h: &Home, args: &[&str]) -> Output {
    h.cli(args).output().unwrap()
}

/// The only entry of `$CLAUDE_BOTTLE_HOME/<sub>`, if there is one.
fn only(h: &Home, sub: &str) -> Option<PathBuf> {
    let entries: Vec<PathBuf> = std::fs::read_dir(h.bottle_home().join(sub))
        .ok()?
        .map(|e| e.unwrap().path())
        .collect();
    assert!(entries.len() <= 1, "{entries:?}");
    entries.into_iter().next()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).to_string(),
        String::from_utf8_lossy(&o.stderr).to_string(),
    )
}

fn git(dir: &Path, args: &[&str]) -> String {
    let o = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).to_string()
}

#[test]
fn teardown_saves_outbox_log_and_summary() {
    if !super::images_ready("teardown_saves_outbox_log_and_summary") {
        return;
    }
    let _images = super::image_lock();
    let h = Home::new("td-save");
    let script = "set -e; cd /workspace; git init -q .; \
                  git config user.name Tester; git config user.email tester@example.org; \
                  echo hello > a.txt; git add a.txt; git commit -qm 'the agent commit'; \
                  echo 'staged line' > staged.txt; git add staged.txt; \
                  echo 'unstaged line' >> a.txt; echo 'untracked line' > new.txt; \
                  echo ignored.txt > .gitignore; echo 'IGNORED CONTENT' > ignored.txt; \
                  curl -s -o /dev/null -w 'denied %{http_code}\\n' http://denied.example/; \
                  git status --porcelain | tr '\\n' ' '; echo";
    let out = run_cli(&h, &["start", &h.agent, "--yes", "--prompt", script]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("denied 403"), "{stdout}\n{stderr}");
    let slug = slug_of(&stderr);
    assert_eq!(leftovers(&h.run), Vec::<String>::new());
    assert!(
        !h.bottle_home().join("state").join(&slug).exists(),
        "the state folder is removed"
    );

    // The outbox: a bundle that verifies and holds the commit, a patch
    // with every uncommitted change but the ignored file.
    let outbox = only(&h, "outbox").expect("an outbox folder");
    assert!(
        outbox
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with(&format!("{slug}-")),
        "{outbox:?}"
    );
    assert_eq!(mode(&outbox), 0o700);
    assert_eq!(mode(&h.bottle_home().join("outbox")), 0o700);
    let bundle = outbox.join("workspace.bundle");
    let patch = outbox.join("workspace.patch");
    assert_eq!(mode(&bundle), 0o600);
    assert_eq!(mode(&patch), 0o600);
    let scratch = tempfile::tempdir().unwrap();
    git(scratch.path(), &["init", "-q", "verify"]);
    let verify_dir = scratch.path().join("verify");
    git(&verify_dir, &["bundle", "verify", bundle.to_str().unwrap()]);
    git(
        scratch.path(),
        &["clone", "-q", bundle.to_str().unwrap(), "cloned"],
    );
    let log = git(&scratch.path().join("cloned"), &["log", "--format=%s"]);
    assert_eq!(log.trim(), "the agent commit");
    let diff = std::fs::read_to_string(&patch).unwrap();
    for want in [
        "+unstaged line",
        "+staged line",
        "+untracked line",
        "+ignored.txt",
    ] {
        assert!(diff.contains(want), "patch lacks `{want}`:\n{diff}");
    }
    assert!(!diff.contains("IGNORED CONTENT"), "{diff}");
    // The patch applies on top of the bundle's commit.
    std::fs::write(scratch.path().join("p.patch"), &diff).unwrap();
    git(
        &scratch.path().join("cloned"),
        &[
            "apply",
            "--index",
            scratch.path().join("p.patch").to_str().unwrap(),
        ],
    );

    // The audit log and the summary.
    let log = only(&h, "logs").expect("a kept audit log");
    assert_eq!(mode(&log), 0o600);
    assert_eq!(mode(&h.bottle_home().join("logs")), 0o700);
    let lines = std::fs::read_to_string(&log).unwrap();
    assert!(
        lines.lines().all(|l| l.starts_with('{')),
        "JSON lines only:\n{lines}"
    );
    assert!(
        lines.lines().any(|l| l.contains("\"denied.example\"")
            && l.contains("\"decision\":\"block\"")
            && l.contains("\"reason\":\"no-route\"")),
        "{lines}"
    );
    assert!(
        stderr.contains(&format!("summary of bottle `{slug}`")),
        "{stderr}"
    );
    assert!(
        stderr.contains("requests refused: 1 (denied.example 1)"),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "to allow `denied.example`, add `- host: denied.example` under `egress.allow` in bottle `probe`"
        ),
        "{stderr}"
    );
    assert!(stderr.contains(&outbox.display().to_string()), "{stderr}");
    assert!(stderr.contains(&log.display().to_string()), "{stderr}");
}

#[test]
fn keep_then_logs_then_stop() {
    if !super::images_ready("keep_then_logs_then_stop") {
        return;
    }
    let _images = super::image_lock();
    let h = Home::new("td-stop");
    let script = "set -e; cd /workspace; git init -q .; \
                  git config user.name Tester; git config user.email tester@example.org; \
                  git commit -q --allow-empty -m base; git rev-parse HEAD; \
                  git commit -q --allow-empty -m 'agent new'; git rev-parse HEAD; \
                  curl -s -o /dev/null http://kept-denied.example/";
    let out = run_cli(
        &h,
        &["start", &h.agent, "--yes", "--keep", "--prompt", script],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let slug = slug_of(&stderr);
    let shas: Vec<&str> = stdout.lines().collect();
    let [base, new] = shas[..] else {
        panic!("two commits: {stdout}")
    };
    // The repo was made by the prompt, after launch recorded the refs; say
    // instead that `base` was there at the start, as a repo copied in or
    // cloned before launch would be.
    let start_refs = h.bottle_home().join("state").join(&slug).join("start-refs");
    assert_eq!(std::fs::read_to_string(&start_refs).unwrap(), "");
    std::fs::write(&start_refs, format!("repo /workspace\n{base}\n")).unwrap();
    assert!(
        stderr.contains(&format!("`claude-bottle stop {slug}`")),
        "{stderr}"
    );
    assert_eq!(leftovers(&h.run).len(), 4, "agent, sidecar, two networks");
    assert!(
        h.bottle_home()
            .join("state")
            .join(&slug)
            .join("keep")
            .exists()
    );

    // `logs` from the running sidecar, as text and as JSON.
    let logs = run_cli(&h, &["logs", &slug]);
    let (text_out, err) = text(&logs);
    assert_eq!(logs.status.code(), Some(0), "{err}");
    assert!(
        text_out.lines().any(|l| l.contains("block")
            && l.contains("GET kept-denied.example/")
            && l.contains("reason=no-route")),
        "{text_out}"
    );
    let logs = run_cli(&h, &["logs", &slug, "--format", "json"]);
    let (json_out, err) = text(&logs);
    assert_eq!(logs.status.code(), Some(0), "{err}");
    assert!(!json_out.is_empty());
    for l in json_out.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert!(v["kind"].is_string(), "{l}");
    }

    // `cleanup` without `--all` leaves the kept bottle and its state alone.
    let cleaned = run_cli(&h, &["cleanup", "-y"]);
    assert!(cleaned.status.success(), "{}", text(&cleaned).1);
    assert_eq!(leftovers(&h.run).len(), 4);
    assert!(h.bottle_home().join("state").join(&slug).exists());

    let stopped = run_cli(&h, &["stop", &slug]);
    let (_, err) = text(&stopped);
    assert_eq!(stopped.status.code(), Some(0), "{err}");
    assert!(err.contains("kept-denied.example"), "{err}");
    assert!(err.contains("is stopped and removed"), "{err}");
    assert_eq!(leftovers(&h.run), Vec::<String>::new());
    assert!(!h.bottle_home().join("state").join(&slug).exists());
    // Only what is new since the start: `base` is a prerequisite, not content.
    let outbox = only(&h, "outbox").expect("an outbox folder");
    let bundle = std::fs::read(outbox.join("workspace.bundle")).unwrap();
    let header = String::from_utf8_lossy(&bundle[..bundle.len().min(400)]).to_string();
    assert!(header.contains(&format!("\n-{base}")), "{header}");
    assert!(header.contains(&format!("\n{new} refs/heads/")), "{header}");
    assert!(
        !outbox.join("workspace.patch").exists(),
        "no uncommitted change, no patch"
    );
    let log = only(&h, "logs").expect("the audit log is kept");
    assert_eq!(mode(&log), 0o600);

    // After teardown `logs` reads the kept log.
    let logs = run_cli(&h, &["logs", &slug]);
    let (after, err) = text(&logs);
    assert_eq!(logs.status.code(), Some(0), "{err}");
    assert_eq!(after, text_out);

    // Stopping it again: it is gone.
    let again = run_cli(&h, &["stop", &slug]);
    assert_eq!(again.status.code(), Some(2), "{}", text(&again).1);
}

/// `--keep` keeps the bottle, not an agent cut short by `--timeout`: the
/// agent's whole process group ends, even one that ignores SIGTERM (here
/// the stand-in's shell and its `sleep`, which inherit the ignored signal,
/// are killed after the grace period). Before, the bottle kept running an
/// agent nobody watched, until `stop`.
#[test]
fn keep_with_timeout_ends_the_agent_not_the_bottle() {
    if !super::images_ready("keep_with_timeout_ends_the_agent_not_the_bottle") {
        return;
    }
    let _images = super::image_lock();
    let h = Home::new("td-keep-timeout");
    let out = run_cli(
        &h,
        &[
            "start",
            &h.agent,
            "--yes",
            "--keep",
            "--timeout",
            "2s",
            "--prompt",
            "trap '' TERM; sleep 3003; echo after-sleep",
        ],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(124), "{stdout}\n{stderr}");
    assert!(stderr.contains("`--timeout` of 2s: ending it"), "{stderr}");
    assert!(stderr.contains("within 5s of SIGTERM: killed"), "{stderr}");
    assert!(stderr.contains("keeps running"), "{stderr}");
    assert!(!stdout.contains("after-sleep"), "{stdout}");
    assert_eq!(leftovers(&h.run).len(), 4, "agent, sidecar, two networks");
    let top = agent_processes(&h.run);
    assert!(!top.contains("sleep 3003"), "the agent still runs:\n{top}");

    let slug = slug_of(&stderr);
    let stopped = run_cli(&h, &["stop", &slug]);
    assert_eq!(stopped.status.code(), Some(0), "{}", text(&stopped).1);
    assert_eq!(leftovers(&h.run), Vec::<String>::new());
}

#[test]
fn stop_and_logs_of_an_unknown_slug_exit_2() {
    if !super::docker_ok("stop_and_logs_of_an_unknown_slug_exit_2") {
        return;
    }
    let h = Home::new("td-unknown");
    for args in [&["stop", "nosuch"][..], &["logs", "nosuch"]] {
        let out = run_cli(&h, args);
        let (_, err) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("`nosuch`"), "{err}");
        assert!(err.contains("hint: `claude-bottle list running`"), "{err}");
    }
    let out = run_cli(&h, &["stop", "--all"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
    assert!(text(&out).1.contains("no bottle is running"));
    let out = run_cli(&h, &["stop", "../etc"]);
    assert_eq!(out.status.code(), Some(2));
}
