//! The gate in front of an HTTPS upstream that wants a token: clone, fetch
//! and push with real git, protocol v0 and v2; policy and secret refusals;
//! upstream refusal; unreachable upstream; no credential on a command line.
#![allow(clippy::unwrap_used, clippy::expect_used)]

/// A skip message the test harness shows: it captures `eprintln!`, not a
/// write to the stderr handle (testing.md: skipped with a visible message).
macro_rules! skipped {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

mod support;

use std::sync::atomic::Ordering;

use support::*;

#[test]
fn clone_fetch_and_clean_push_through_the_gate_v2_and_v0() {
    let up = HttpsUpstream::start();
    let gate = GateSetup::https(&up, &["agent/*"]).start();
    let work = tempfile::tempdir().unwrap();
    for (proto, branch) in [("2", "agent/v2"), ("0", "agent/v0")] {
        let dir = format!("clone-v{proto}");
        git(
            work.path(),
            &[
                "-c",
                &format!("protocol.version={proto}"),
                "clone",
                "-q",
                &gate.repo_url("app"),
                &dir,
            ],
        );
        let wt = work.path().join(&dir);
        assert!(wt.join("README.md").exists());
        git(&wt, &["config", "protocol.version", proto]);
        git(&wt, &["checkout", "-q", "-b", branch]);
        let c = commit_file(&wt, &format!("{proto}.txt"), "hello\n", "clean work");
        git(&wt, &["push", "-q", "origin", branch]);
        assert_eq!(
            up.bare.rev(&format!("refs/heads/{branch}")),
            Some(c.clone())
        );
        // The mirror moved too.
        assert_eq!(
            git(
                &gate.mirror("app"),
                &["rev-parse", &format!("refs/heads/{branch}")]
            )
            .trim(),
            c
        );
    }
    // A change made upstream shows up on the next fetch (the mirror refreshes).
    let other = tempfile::tempdir().unwrap();
    git(
        other.path(),
        &["clone", "-q", up.bare.repo.to_str().unwrap(), "o"],
    );
    let o = other.path().join("o");
    let upstream_commit = commit_file(&o, "up.txt", "from upstream\n", "upstream change");
    git(&o, &["push", "-q", "origin", "main"]);
    let wt = work.path().join("clone-v2");
    git(&wt, &["fetch", "-q", "origin"]);
    assert_eq!(
        git(&wt, &["rev-parse", "origin/main"]).trim(),
        upstream_commit
    );

    // The upstream only ever saw authorised requests from the gate.
    assert_eq!(up.seen.unauthorized.load(Ordering::SeqCst), 0);
    assert!(up.seen.requests.load(Ordering::SeqCst) > 0);

    let pushes = gate.wait_events("git-push", 2);
    for e in &pushes {
        assert_eq!(e.decision, "allow", "{e:?}");
        assert_eq!(e.refs.len(), 1);
        assert_eq!(e.commits, Some(1));
        assert_eq!(e.repo, "app");
        assert_eq!(e.host.as_deref(), Some("127.0.0.1"));
        assert!(e.ts.ends_with('Z'));
    }
    let fetches = gate.wait_events("git-fetch", 3);
    assert!(fetches.iter().all(|e| e.decision == "allow"));
}

#[test]
fn gzip_request_bodies_work() {
    // A fetch with many haves makes git gzip the upload-pack request.
    let up = HttpsUpstream::start();
    let gate = GateSetup::https(&up, &["*"]).start();
    let work = tempfile::tempdir().unwrap();
    let wt = clone(work.path(), &gate.repo_url("app"), "w");
    git(&wt, &["checkout", "-q", "-b", "many"]);
    for i in 0..40 {
        commit_file(&wt, "f.txt", &format!("{i}\n"), &format!("c{i}"));
    }
    git(&wt, &["push", "-q", "origin", "many"]);
    // Local-only commits become haves the server does not know.
    git(&wt, &["checkout", "-q", "-b", "local"]);
    for i in 0..300 {
        commit_file(&wt, "g.txt", &format!("{i}\n"), &format!("l{i}"));
    }
    let other = tempfile::tempdir().unwrap();
    git(
        other.path(),
        &["clone", "-q", up.bare.repo.to_str().unwrap(), "o"],
    );
    let o = other.path().join("o");
    commit_file(&o, "new.txt", "x\n", "new upstream");
    git(&o, &["push", "-q", "origin", "main"]);
    let out = git_cmd(&wt)
        .args(["fetch", "origin"])
        .env("GIT_TRACE_CURL", "1")
        .env("GIT_TRACE_CURL_NO_DATA", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let trace = String::from_utf8_lossy(&out.stderr);
    assert!(
        trace
            .to_ascii_lowercase()
            .contains("content-encoding: gzip"),
        "the fetch did not use a gzip body; trace:\n{}",
        &trace[..trace.len().min(3000)]
    );
}

#[test]
fn secrets_in_any_new_commit_reject_the_whole_push() {
    let up = HttpsUpstream::start();
    let gate = GateSetup::https(&up, &["*"]).start();
    let work = tempfile::tempdir().unwrap();
    let wt = clone(work.path(), &gate.repo_url("app"), "w");
    let before = up.bare.refs();

    // 1. In an older commit of the pushed range, on a new branch, then
    //    "removed" in a later commit.
    git(&wt, &["checkout", "-q", "-b", "feature"]);
    let bad = commit_file(
        &wt,
        "src/config.py",
        &format!("a = 1\nb = 2\nGITHUB = \"{PAT}\"\n"),
        "add config",
    );
    commit_file(&wt, "src/config.py", "a = 1\nb = 2\n", "remove it again");
    let (ok, out) = git_try(&wt, &["push", "origin", "feature"]);
    assert!(!ok, "{out}");
    assert!(out.contains("secret was found"), "{out}");
    assert!(out.contains(&bad[..12]), "names the commit: {out}");
    assert!(
        out.contains("src/config.py:3"),
        "names path and line: {out}"
    );
    assert!(out.contains("github-pat"), "names the rule: {out}");
    assert!(!out.contains(&PAT[6..]), "the secret is redacted: {out}");

    // 2. The bottle's own token, in a commit message.
    git(&wt, &["checkout", "-q", "-b", "msg", "main"]);
    commit_file(&wt, "ok.txt", "fine\n", &format!("deploy with {TOKEN}"));
    let (ok, out) = git_try(&wt, &["push", "origin", "msg"]);
    assert!(!ok, "{out}");
    assert!(out.contains("(commit message):1"), "{out}");
    assert!(out.contains("known-secret"), "{out}");
    assert!(!out.contains(TOKEN), "{out}");

    // 3. Behind a merge: the secret sits on a side branch merged into a
    //    fast-forward of main.
    git(&wt, &["checkout", "-q", "-b", "side", "main"]);
    commit_file(&wt, "side.txt", &format!("token: {PAT}\n"), "side work");
    git(&wt, &["checkout", "-q", "main"]);
    commit_file(&wt, "main.txt", "main work\n", "main work");
    git(&wt, &["merge", "-q", "--no-ff", "-m", "merge side", "side"]);
    let (ok, out) = git_try(&wt, &["push", "origin", "main"]);
    assert!(!ok, "{out}");
    assert!(out.contains("side.txt:1"), "{out}");

    // 4. A private key block spread over lines.
    git(&wt, &["checkout", "-q", "-b", "key", "origin/main"]);
    let key = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\nQyNTUxOQAAACDpZzrY8r9kNnKmIs7ADtWiL2oGZ2C0dHVnbhcEYQAPGgAAAJgl1kmHJdZJ\n-----END OPENSSH PRIVATE KEY-----\n";
    commit_file(&wt, "id_ed25519", key, "oops");
    let (ok, out) = git_try(&wt, &["push", "origin", "key"]);
    assert!(!ok, "{out}");
    assert!(out.contains("private-key"), "{out}");

    // 5. Added to a file the upstream already has (a modification, not a
    //    new file), between unchanged lines.
    git(&wt, &["checkout", "-q", "-b", "modify", "origin/main"]);
    commit_file(
        &wt,
        "README.md",
        &format!("# upstream\nmore text\nGITHUB = \"{PAT}\"\n"),
        "edit readme",
    );
    commit_file(
        &wt,
        "README.md",
        "# upstream\nmore text\n",
        "and take it out again",
    );
    let (ok, out) = git_try(&wt, &["push", "origin", "modify"]);
    assert!(!ok, "{out}");
    assert!(out.contains("README.md:3"), "{out}");

    // Nothing reached the upstream: no receive-pack request, same refs.
    assert_eq!(up.seen.receive_pack_posts.load(Ordering::SeqCst), 0);
    assert_eq!(up.bare.refs(), before);
    assert_eq!(up.bare.accepted_pushes(), 0);
    // And the mirror has none of the refused refs.
    let mirror_refs = git(
        &gate.mirror("app"),
        &["for-each-ref", "--format=%(refname)"],
    );
    assert!(!mirror_refs.contains("feature") && !mirror_refs.contains("msg"));

    let ev = gate.wait_events("git-push", 5);
    for e in &ev {
        assert_eq!(e.decision, "block");
        assert_eq!(e.reason.as_deref(), Some("git-secret"), "{e:?}");
        assert!(!e.findings.is_empty());
        let line = serde_json::to_string(&e.findings).unwrap();
        assert!(!line.contains(&PAT[6..]) && !line.contains(TOKEN), "{line}");
    }
    assert_eq!(ev[0].commits, Some(2));
}

#[test]
fn branch_policy_refuses_before_the_upstream_sees_anything() {
    let up = HttpsUpstream::start();
    let gate = GateSetup::https(&up, &["agent/*", "main"]).start();
    let work = tempfile::tempdir().unwrap();
    let wt = clone(work.path(), &gate.repo_url("app"), "w");
    let before = up.bare.refs();

    git(&wt, &["checkout", "-q", "-b", "other"]);
    commit_file(&wt, "a.txt", "a\n", "a");
    let (ok, out) = git_try(&wt, &["push", "origin", "other"]);
    assert!(!ok && out.contains("may not push to that branch"), "{out}");

    // Force-push of protected main.
    git(&wt, &["checkout", "-q", "main"]);
    git(&wt, &["commit", "-q", "--amend", "-m", "rewritten"]);
    let (ok, out) = git_try(&wt, &["push", "-f", "origin", "main"]);
    assert!(!ok && out.contains("non-fast-forward"), "{out}");

    // Delete of protected main.
    let (ok, out) = git_try(&wt, &["push", "origin", ":main"]);
    assert!(!ok && out.contains("deleting is refused"), "{out}");

    // A tag.
    git(&wt, &["tag", "v1"]);
    let (ok, out) = git_try(&wt, &["push", "origin", "v1"]);
    assert!(!ok && out.contains("only branches"), "{out}");

    // One bad ref in a multi-ref push refuses all of it.
    git(&wt, &["checkout", "-q", "-b", "agent/ok", "origin/main"]);
    commit_file(&wt, "b.txt", "b\n", "b");
    let (ok, out) = git_try(&wt, &["push", "origin", "agent/ok", "other"]);
    assert!(!ok, "{out}");

    assert_eq!(up.seen.receive_pack_posts.load(Ordering::SeqCst), 0);
    assert_eq!(up.bare.refs(), before);
    let ev = gate.wait_events("git-push", 5);
    assert!(
        ev.iter()
            .all(|e| e.decision == "block" && e.reason.as_deref() == Some("git-policy")),
        "{ev:?}"
    );

    // A fast-forward of main and a rewrite + delete of an unprotected branch
    // are fine.
    git(&wt, &["push", "-q", "origin", "agent/ok"]);
    git(&wt, &["commit", "-q", "--amend", "-m", "b2"]);
    git(&wt, &["push", "-q", "-f", "origin", "agent/ok"]);
    assert_eq!(
        up.bare.rev("refs/heads/agent/ok"),
        Some(git(&wt, &["rev-parse", "HEAD"]).trim().to_string())
    );
    git(&wt, &["push", "-q", "origin", ":agent/ok"]);
    assert_eq!(up.bare.rev("refs/heads/agent/ok"), None);
    git(&wt, &["checkout", "-q", "-B", "main", "origin/main"]);
    commit_file(&wt, "c.txt", "c\n", "c");
    git(&wt, &["push", "-q", "origin", "main"]);
    assert_eq!(
        up.bare.rev("refs/heads/main"),
        Some(git(&wt, &["rev-parse", "HEAD"]).trim().to_string())
    );
}

#[test]
fn upstream_refusal_refuses_the_push_and_leaves_the_mirror() {
    let up = HttpsUpstream::start();
    let gate = GateSetup::https(&up, &["*"]).start();
    let work = tempfile::tempdir().unwrap();
    let wt = clone(work.path(), &gate.repo_url("app"), "w");
    let mirror_before = git(&gate.mirror("app"), &["for-each-ref"]);
    up.bare.set("refuse", true);
    git(&wt, &["checkout", "-q", "-b", "topic"]);
    commit_file(&wt, "t.txt", "t\n", "t");
    let (ok, out) = git_try(&wt, &["push", "origin", "topic"]);
    assert!(!ok, "{out}");
    assert!(out.contains("upstream refused"), "{out}");
    assert!(
        out.contains("pushes are frozen today"),
        "names the upstream's reason: {out}"
    );
    assert!(!out.contains(TOKEN));
    assert_eq!(git(&gate.mirror("app"), &["for-each-ref"]), mirror_before);
    assert_eq!(up.bare.rev("refs/heads/topic"), None);
    let ev = gate.wait_events("git-push", 1);
    assert_eq!(ev[0].reason.as_deref(), Some("upstream-error"));

    // Once the upstream accepts again, the same push goes through.
    up.bare.set("refuse", false);
    git(&wt, &["push", "-q", "origin", "topic"]);
    assert!(up.bare.rev("refs/heads/topic").is_some());
}

#[test]
fn unreachable_upstream_fails_closed() {
    let up = HttpsUpstream::start();
    let gate = GateSetup::https(&up, &["*"]).start();
    let work = tempfile::tempdir().unwrap();
    let wt = clone(work.path(), &gate.repo_url("app"), "w");
    drop(up);
    let (ok, out) = git_try(&wt, &["fetch", "origin"]);
    assert!(!ok, "{out}");
    assert!(out.contains("upstream unreachable"), "{out}");
    let (ok, out) = git_try(work.path(), &["clone", &gate.repo_url("app"), "again"]);
    assert!(!ok && out.contains("upstream unreachable"), "{out}");
    let ev = gate.events("git-fetch");
    assert!(
        ev.iter()
            .any(|e| e.decision == "block" && e.reason.as_deref() == Some("upstream-error"))
    );
}

/// The SSRF guard (manifest.md): an upstream named by a host that resolves
/// to a loopback address is refused before git connects, unless the bottle
/// pins that name in `resolve`. The upstream's certificate is valid for
/// `localhost` too, so without the guard the clone would succeed.
#[test]
fn an_upstream_name_at_a_private_address_is_refused_unless_pinned() {
    let up = HttpsUpstream::start();
    let url = up.url.replace("127.0.0.1", "localhost");
    let mut setup = GateSetup::https(&up, &["*"]);
    setup.repos[0].url = url.clone();
    let gate = setup.start();
    let work = tempfile::tempdir().unwrap();
    let (ok, out) = git_try(work.path(), &["clone", &gate.repo_url("app"), "w"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("resolves to") && out.contains("egress.resolve"),
        "{out}"
    );
    assert_eq!(up.seen.requests.load(Ordering::SeqCst), 0);
    let ev = gate.events("git-fetch");
    assert!(
        ev.iter()
            .any(|e| e.decision == "block" && e.reason.as_deref() == Some("private-address")),
        "{ev:?}"
    );

    // The user's choice: the same name pinned in `resolve` is reached.
    let mut setup = GateSetup::https(&up, &["*"]);
    setup.repos[0].url = url;
    setup.resolve.insert("localhost".into(), "127.0.0.1".into());
    let gate = setup.start();
    let wt = clone(work.path(), &gate.repo_url("app"), "pinned");
    assert!(wt.join("README.md").exists(), "cloned through the pin");
}

/// DNS rebinding against the SSRF guard: the upstream's name answers the
/// gate's lookup with an allowed address (the legit upstream listens there,
/// port P) and git's later lookup with 127.0.0.1, where a trap listens on
/// the same port P (an internal service). Clone, fetch and push must all
/// reach the legit upstream and the trap nothing: git is pinned to the
/// address the guard vetted. Without that pin (`http.curloptResolve`) git
/// resolves the name itself and connects to the trap.
#[test]
fn a_rebound_name_reaches_only_the_vetted_address() {
    let test = "a_rebound_name_reaches_only_the_vetted_address";
    let lan = match rebinding_target() {
        Ok(ip) => ip,
        Err(why) => {
            skipped!("SKIPPED {test}: {why}");
            return;
        }
    };
    let (legit, traps) = listener_with_loopback_traps(lan);
    let port = legit.local_addr().unwrap().port();
    let up = HttpsUpstream::start_on(legit);
    let trap = Trap::start(traps);
    let mut setup = GateSetup::https(&up, &["*"]);
    setup.repos[0].url = format!("https://localhost:{port}/up.git");
    setup.resolver = Some(std::sync::Arc::new(Rebinding(lan.into())));
    let gate = setup.start();
    let work = tempfile::tempdir().unwrap();

    let (ok, out) = git_try(work.path(), &["clone", &gate.repo_url("app"), "w"]);
    let hits = || trap.hits.load(Ordering::SeqCst);
    assert_eq!(
        hits(),
        0,
        "the clone's refresh reached 127.0.0.1:{port}: {out}"
    );
    assert!(ok, "{out}");
    let wt = work.path().join("w");
    assert!(wt.join("README.md").exists());

    let c = commit_file(&wt, "f.txt", "clean\n", "clean change");
    let (ok, out) = git_try(&wt, &["push", "origin", "HEAD:refs/heads/topic"]);
    assert_eq!(
        hits(),
        0,
        "the upstream push reached 127.0.0.1:{port}: {out}"
    );
    assert!(ok, "{out}");
    assert_eq!(up.bare.rev("refs/heads/topic"), Some(c));
    assert!(up.seen.receive_pack_posts.load(Ordering::SeqCst) > 0);

    let (ok, out) = git_try(&wt, &["fetch", "origin"]);
    assert_eq!(
        hits(),
        0,
        "the fetch's refresh reached 127.0.0.1:{port}: {out}"
    );
    assert!(ok, "{out}");
    assert!(
        gate.events("git-fetch")
            .iter()
            .all(|e| e.decision == "allow"),
        "{:?}",
        gate.events("git-fetch")
    );
}

/// sidecar.md: with `upstream_proxy` the sidecar reaches every upstream
/// through it. A name the gate could not reach directly (it resolves to
/// loopback, which the guard refuses) is reached by CONNECT through the
/// proxy, for the clone and for the push.
#[test]
fn https_upstreams_are_reached_through_the_upstream_proxy() {
    let up = HttpsUpstream::start();
    let proxy = ConnectProxy::start();
    let mut setup = GateSetup::https(&up, &["*"]);
    setup.repos[0].url = up.url.replace("127.0.0.1", "localhost");
    setup.upstream_proxy = Some(proxy.url.clone());
    let gate = setup.start();
    let work = tempfile::tempdir().unwrap();
    let wt = clone(work.path(), &gate.repo_url("app"), "w");
    assert!(wt.join("README.md").exists());
    let port = up.url.split(':').nth(2).unwrap().split('/').next().unwrap();
    let want = format!("localhost:{port}");
    assert!(
        proxy.targets.lock().unwrap().iter().all(|t| *t == want),
        "{:?}",
        proxy.targets.lock().unwrap()
    );
    let before = proxy.targets.lock().unwrap().len();
    assert!(before > 0, "the clone's refresh went through the proxy");
    commit_file(&wt, "f.txt", "clean\n", "clean change");
    git(&wt, &["push", "origin", "HEAD:refs/heads/topic"]);
    assert!(
        proxy.targets.lock().unwrap().len() > before,
        "the upstream push went through the proxy"
    );
    assert!(up.seen.receive_pack_posts.load(Ordering::SeqCst) > 0);
}

#[test]
fn untrusted_upstream_certificate_fails_closed() {
    let up = HttpsUpstream::start();
    let mut setup = GateSetup::https(&up, &["*"]);
    // Same upstream, but the gate does not trust its CA: TLS must fail.
    setup.upstream_ca = None;
    let gate = setup.start();
    let work = tempfile::tempdir().unwrap();
    let (ok, out) = git_try(work.path(), &["clone", &gate.repo_url("app"), "w"]);
    assert!(!ok && out.contains("upstream unreachable"), "{out}");
    assert_eq!(up.seen.requests.load(Ordering::SeqCst), 0);
}

#[test]
fn wrong_token_is_an_upstream_error_not_a_prompt() {
    let up = HttpsUpstream::start();
    let mut setup = GateSetup::https(&up, &["*"]);
    setup.token = "not-the-right-token-123".into();
    let gate = setup.start();
    let work = tempfile::tempdir().unwrap();
    let (ok, out) = git_try(work.path(), &["clone", &gate.repo_url("app"), "w"]);
    assert!(!ok && out.contains("upstream unreachable"), "{out}");
    assert!(!out.contains("not-the-right-token-123"), "{out}");
    assert!(up.seen.unauthorized.load(Ordering::SeqCst) > 0);
}

#[test]
fn the_token_is_on_no_command_line_and_in_no_file_of_the_gate() {
    let up = HttpsUpstream::start();
    let gate = GateSetup::https(&up, &["*"]).start();
    let work = tempfile::tempdir().unwrap();
    let wt = clone(work.path(), &gate.repo_url("app"), "w");
    git(&wt, &["checkout", "-q", "-b", "topic"]);
    commit_file(&wt, "t.txt", "t\n", "t");
    // The upstream's hook takes a second, so the gate's upstream push is
    // surely running while the watcher looks.
    up.bare.set("slow", true);
    let watch = CmdlineWatch::start();
    let (ok, out) = git_try(&wt, &["push", "origin", "topic"]);
    git(&wt, &["fetch", "-q", "origin"]);
    let seen = watch.finish();
    assert!(ok, "{out}");
    assert!(
        seen.iter()
            .any(|l| l.contains("push") && l.contains(&up.url)),
        "the watcher never saw the gate's upstream push: {seen:#?}"
    );
    let b64 = basic_header_b64(TOKEN);
    for l in &seen {
        assert!(
            !l.contains(TOKEN) && !l.contains(&b64),
            "secret on a command line: {l}"
        );
    }
    assert!(!out.contains(TOKEN) && !out.contains(&b64));
    // Not in the mirror's config, the hook script, or any other file the
    // gate keeps.
    for f in files_under(gate.state.path(), &[]) {
        let b = std::fs::read(&f).unwrap();
        let text = String::from_utf8_lossy(&b);
        assert!(
            !text.contains(TOKEN) && !text.contains(&b64),
            "secret in {}",
            f.display()
        );
    }
    // Nor in an audit event.
    for e in gate.audit.events() {
        let line = e.to_line();
        assert!(!line.contains(TOKEN) && !line.contains(&b64), "{line}");
    }
}

#[test]
fn concurrent_pushes_and_fetches_are_serialised_safely() {
    let up = HttpsUpstream::start();
    let gate = GateSetup::https(&up, &["*"]).start();
    let work = tempfile::tempdir().unwrap();
    let mut clones = Vec::new();
    for i in 0..3 {
        let wt = clone(work.path(), &gate.repo_url("app"), &format!("w{i}"));
        git(&wt, &["checkout", "-q", "-b", &format!("agent/{i}")]);
        commit_file(&wt, &format!("{i}.txt"), "x\n", &format!("work {i}"));
        clones.push(wt);
    }
    let handles: Vec<_> = clones
        .iter()
        .enumerate()
        .map(|(i, wt)| {
            let wt = wt.clone();
            std::thread::spawn(move || {
                git(&wt, &["push", "-q", "origin", &format!("agent/{i}")]);
                git(&wt, &["fetch", "-q", "origin"]);
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    for (i, wt) in clones.iter().enumerate() {
        let head = git(wt, &["rev-parse", "HEAD"]).trim().to_string();
        assert_eq!(up.bare.rev(&format!("refs/heads/agent/{i}")), Some(head));
    }
    let ev = gate.wait_events("git-push", 3);
    assert!(ev.iter().all(|e| e.decision == "allow"), "{ev:?}");
}

#[test]
fn a_hung_upstream_push_times_out_and_is_refused() {
    let up = HttpsUpstream::start();
    let mut setup = GateSetup::https(&up, &["*"]);
    setup.limits.upstream_timeout_secs = 1;
    let gate = setup.start();
    let work = tempfile::tempdir().unwrap();
    let wt = clone(work.path(), &gate.repo_url("app"), "w");
    git(&wt, &["checkout", "-q", "-b", "slow"]);
    commit_file(&wt, "s.txt", "s\n", "s");
    up.bare.set("hang", true);
    let (ok, out) = git_try(&wt, &["push", "origin", "slow"]);
    assert!(!ok, "{out}");
    assert!(out.contains("no answer within 1s"), "{out}");
    assert!(!git(&gate.mirror("app"), &["for-each-ref"]).contains("refs/heads/slow"));
    let ev = gate.wait_events("git-push", 1);
    assert_eq!(ev[0].reason.as_deref(), Some("upstream-error"));
}

/// The upstream push's timeout stops everything under `git push` (its
/// https helper, send-pack, pack-objects), not `git push` alone: a push
/// still under way when the gate gives up must not reach the upstream
/// after the gate said it was refused. The upstream stalls receive-pack
/// requests (here the probe git sends before a pack over
/// `http.postBuffer`) until released. (A push the upstream has received
/// whole, as in the test above, it finishes on its own: no client can
/// recall it.)
///
/// The push runs in a process group of its own, which the gate's kill of
/// the request (at its deadline) does not reach; so the hook ends the
/// push a second before that deadline too: the second case, where the
/// deadline comes first, must not leave the push running either.
#[test]
fn a_timed_out_upstream_push_does_not_finish_behind_the_gate() {
    for (upstream_timeout_secs, request_timeout_secs) in [(1, 3_600), (300, 4)] {
        let case = format!("{upstream_timeout_secs}s/{request_timeout_secs}s");
        let up = HttpsUpstream::start();
        let mut setup = GateSetup::https(&up, &["*"]);
        setup.limits.upstream_timeout_secs = upstream_timeout_secs;
        setup.limits.request_timeout_secs = request_timeout_secs;
        let gate = setup.start();
        let work = tempfile::tempdir().unwrap();
        let wt = clone(work.path(), &gate.repo_url("app"), "w");
        git(&wt, &["checkout", "-q", "-b", "late"]);
        // 3 MiB that do not compress: over the 1 MiB post buffer.
        std::fs::write(wt.join("late.bin"), noise(3 << 20, 11)).unwrap();
        git(&wt, &["add", "late.bin"]);
        git(&wt, &["commit", "-q", "-m", "late"]);
        up.bare.set("stall", true);
        let (ok, out) = git_try(&wt, &["push", "origin", "late"]);
        assert!(!ok, "{case}: {out}");
        assert!(out.contains("the upstream gave no answer"), "{case}: {out}");
        let ev = gate.wait_events("git-push", 1);
        // The hook's own kill, not the gate's at the request deadline.
        assert_eq!(ev[0].reason.as_deref(), Some("upstream-error"), "{case}");
        let posts = up.seen.receive_pack_posts.load(Ordering::SeqCst);
        assert!(posts >= 1, "{case}: the push never reached the upstream");

        // Whatever is left of the push would go on now.
        up.bare.set("stall", false);
        std::thread::sleep(std::time::Duration::from_secs(5));
        assert_eq!(
            up.bare.rev("refs/heads/late"),
            None,
            "{case}: finished late"
        );
        assert_eq!(up.bare.accepted_pushes(), 0, "{case}");
        assert_eq!(
            up.seen.receive_pack_posts.load(Ordering::SeqCst),
            posts,
            "{case}"
        );
    }
}

/// A private key block the rules find, in three parts.
const KEY_BEGIN: &str = "-----BEGIN OPENSSH PRIVATE KEY-----\n";
const KEY_BODY: &str = "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n\
                        QyNTUxOQAAACDpZzrY8r9kNnKmIs7ADtWiL2oGZ2C0dHVnbhcEYQAPGgAAAJgl1kmHJdZJ\n";
const KEY_END: &str = "-----END OPENSSH PRIVATE KEY-----\n";

/// Attack: a secret a rule only sees whole, pushed in halves, each
/// commit's added lines clean on their own: a key's BEGIN/END lines in one
/// commit and its body in the next (or the body first), or a key name on
/// a line the next commit leaves alone while it adds the value below it.
/// A clean edit that looks like such a half still goes through.
#[test]
fn a_secret_split_over_commits_is_found_whole() {
    let up = HttpsUpstream::start();
    let gate = GateSetup::https(&up, &["*"]).start();
    let work = tempfile::tempdir().unwrap();
    let wt = clone(work.path(), &gate.repo_url("app"), "w");
    let (begin, body, end) = (KEY_BEGIN, KEY_BODY, KEY_END);
    let whole = format!("notes\n{begin}{body}{end}");
    let halves = [
        ("markers-first", format!("notes\n{begin}{end}")),
        ("body-first", format!("notes\n{body}")),
    ];
    for (branch, half) in halves {
        git(&wt, &["checkout", "-q", "-b", branch, "origin/main"]);
        commit_file(&wt, "k.pem", &half, "half");
        commit_file(&wt, "k.pem", &whole, "the other half");
        let (ok, out) = git_try(&wt, &["push", "origin", branch]);
        assert!(!ok, "{branch}: {out}");
        assert!(out.contains("k.pem:"), "{branch}: {out}");
        assert!(out.contains("private-key"), "{branch}: {out}");
        assert_eq!(up.bare.rev(&format!("refs/heads/{branch}")), None);
    }

    git(&wt, &["checkout", "-q", "-b", "assign", "origin/main"]);
    commit_file(&wt, "conf.yml", "aws_secret_access_key:\n", "key");
    commit_file(
        &wt,
        "conf.yml",
        "aws_secret_access_key:\n  Zk3pQ9vT2mXw8LrB5nYc1HdJ6sFa0GeUoKiP4qEt\n",
        "value",
    );
    let (ok, out) = git_try(&wt, &["push", "origin", "assign"]);
    assert!(!ok, "{out}");
    assert!(out.contains("conf.yml:2"), "{out}");
    assert!(out.contains("aws-secret-access-key"), "{out}");

    // Looks like a half (a bare value line), is not a secret: goes through.
    git(&wt, &["checkout", "-q", "-b", "clean", "origin/main"]);
    commit_file(&wt, "sums.txt", "files:\n", "list");
    commit_file(
        &wt,
        "sums.txt",
        "files:\n0123456789abcdef0123456789abcdef\n",
        "a checksum",
    );
    git(&wt, &["push", "-q", "origin", "clean"]);
    assert!(up.bare.rev("refs/heads/clean").is_some());

    // A key the upstream already has (pushed there without the gate) is
    // not this push's: an edit that widens the scan to the whole file
    // counts only findings on the lines it adds.
    let edited = format!("{whole}0123456789abcdef0123456789abcdef\n");
    let (ok, out) = edit_a_key_the_upstream_has(&up, work.path(), &wt, ("below", &whole, &edited));
    assert!(ok, "{out}");
}

/// Pushes `old.pem` holding `before` straight to the upstream (branch
/// `legacy`, past the gate), then `after` on top of it through the gate
/// from `wt`: whether that push went through, and git's output.
fn edit_a_key_the_upstream_has(
    up: &HttpsUpstream,
    work: &std::path::Path,
    wt: &std::path::Path,
    (tag, before, after): (&str, &str, &str),
) -> (bool, String) {
    let seed = clone(
        work,
        up.bare.repo.to_str().unwrap(),
        &format!("direct-{tag}"),
    );
    commit_file(&seed, "old.pem", before, "an old key");
    git(
        &seed,
        &[
            "push",
            "-q",
            "origin",
            &format!("HEAD:refs/heads/legacy-{tag}"),
        ],
    );
    git(wt, &["fetch", "-q", "origin"]);
    let edit = format!("legacy-edit-{tag}");
    git(
        wt,
        &[
            "checkout",
            "-q",
            "-b",
            &edit,
            &format!("origin/legacy-{tag}"),
        ],
    );
    commit_file(wt, "old.pem", after, "an edit");
    git_try(wt, &["push", "origin", &edit])
}

/// Attack: a secret put together by deleting what kept its parts apart,
/// adding nothing (or a blank line, or a harmless line elsewhere): every
/// added line scans clean, the file at the new tip holds a whole key. An
/// edit that deletes lines beside a key the upstream already has is not
/// this push's key and goes through.
#[test]
fn a_secret_put_together_by_deleting_lines_is_refused() {
    let up = HttpsUpstream::start();
    let gate = GateSetup::https(&up, &["*"]).start();
    let work = tempfile::tempdir().unwrap();
    let wt = clone(work.path(), &gate.repo_url("app"), "w");
    let (begin, body, end) = (KEY_BEGIN, KEY_BODY, KEY_END);
    let broken = format!("notes\n{begin}!\n{body}{end}");
    // Control: the broken key alone is no finding (so what follows is
    // refused for the deletion, not for this commit).
    git(&wt, &["checkout", "-q", "-b", "broken", "origin/main"]);
    commit_file(&wt, "k.pem", &broken, "not a key");
    git(&wt, &["push", "-q", "origin", "broken"]);
    assert!(up.bare.rev("refs/heads/broken").is_some());
    for (branch, after) in [
        ("deleted", format!("notes\n{begin}{body}{end}")),
        ("blanked", format!("notes\n{begin}\n{body}{end}")),
        (
            "elsewhere",
            format!("notes\n{begin}{body}{end}let x = 1;\n"),
        ),
    ] {
        git(&wt, &["checkout", "-q", "-b", branch, "origin/main"]);
        commit_file(&wt, "k.pem", &broken, "not a key");
        commit_file(&wt, "k.pem", &after, "tidy up");
        let (ok, out) = git_try(&wt, &["push", "origin", branch]);
        assert!(!ok, "{branch}: {out}");
        assert!(
            out.contains("k.pem:") && out.contains("private-key"),
            "{branch}: {out}"
        );
        assert_eq!(up.bare.rev(&format!("refs/heads/{branch}")), None);
    }
    // A value a rule finds only after its name: the finding is the value
    // alone, the name lines before it (blank lines between are allowed).
    let value = "  Zk3pQ9vT2mXw8LrB5nYc1HdJ6sFa0GeUoKiP4qEt\n";
    for (branch, before, after) in [
        (
            "named-deleted",
            format!("aws_secret_access_key:\n#\n\n{value}"),
            format!("aws_secret_access_key:\n\n{value}"),
        ),
        (
            "named-added",
            format!("settings:\n\n{value}"),
            format!("settings:\naws_secret_access_key:\n\n{value}"),
        ),
        (
            "operator-line",
            format!("x\n:\n{value}"),
            format!("aws_secret_access_key\n:\n{value}"),
        ),
        (
            "vertical-tab",
            format!("aws_secret_access_key:\n#\n\x0b\n{value}"),
            format!("aws_secret_access_key:\n\x0b\n{value}"),
        ),
        (
            "context-rule",
            "settings:\n\nZk3pQ9vT2mXw8LrB5nYc1HdJ6sFa0GeUoKiP4qEt\n".to_string(),
            "settings:\ncohere_api_key:\n\nZk3pQ9vT2mXw8LrB5nYc1HdJ6sFa0GeUoKiP4qEt\n".to_string(),
        ),
    ] {
        git(&wt, &["checkout", "-q", "-b", branch, "origin/main"]);
        commit_file(&wt, "conf.yml", &before, "not a key");
        commit_file(&wt, "conf.yml", &after, "tidy up");
        let (ok, out) = git_try(&wt, &["push", "origin", branch]);
        assert!(!ok, "{branch}: {out}");
        assert!(
            out.contains("-key") && out.contains("conf.yml"),
            "{branch}: {out}"
        );
    }
    // A value with its name on its own line, already upstream: editing
    // the line above it is no change to it.
    let held = "x = 1\npassword = \"Zk3pQ9vT2mXw8LrB5nYc1HdJ6sFa0GeUoKiP4qEt\"\n";
    let edited = "password = \"Zk3pQ9vT2mXw8LrB5nYc1HdJ6sFa0GeUoKiP4qEt\"\n";
    let (ok, out) = edit_a_key_the_upstream_has(&up, work.path(), &wt, ("above", held, edited));
    assert!(ok, "{out}");
    // On top of the pushed control as well: one commit, a deletion only.
    git(&wt, &["checkout", "-q", "-b", "on-top", "origin/broken"]);
    commit_file(
        &wt,
        "k.pem",
        &format!("notes\n{begin}{body}{end}"),
        "tidy up",
    );
    let (ok, out) = git_try(&wt, &["push", "origin", "on-top"]);
    assert!(!ok && out.contains("private-key"), "{out}");

    // A key the upstream has already: a deletion beside it is no join
    // inside it.
    let before = format!("notes\nmore\n{KEY_BEGIN}{KEY_BODY}{KEY_END}");
    let after = format!("notes\n{KEY_BEGIN}{KEY_BODY}{KEY_END}");
    let (ok, out) = edit_a_key_the_upstream_has(&up, work.path(), &wt, ("beside", &before, &after));
    assert!(ok, "{out}");
}

/// Attack: protocol v2's upload-pack serves any object the mirror holds
/// to a client that names it, reachable or not. A commit the upstream's
/// owner deleted (a leaked secret taken out) must not stay fetchable by
/// id through the gate once a refresh has seen it gone.
#[test]
fn a_commit_the_upstream_deleted_is_not_served_by_id() {
    let up = HttpsUpstream::start();
    let gate = GateSetup::https(&up, &["*"]).start();
    let work = tempfile::tempdir().unwrap();
    let direct = clone(work.path(), up.bare.repo.to_str().unwrap(), "direct");
    git(&direct, &["checkout", "-q", "-b", "leak"]);
    let leaked = commit_file(&direct, "leak.txt", "taken out later\n", "oops");
    git(&direct, &["push", "-q", "origin", "leak"]);

    let wt = clone(work.path(), &gate.repo_url("app"), "w");
    let by_id = |wt: &std::path::Path| {
        git_try(
            wt,
            &["-c", "protocol.version=2", "fetch", "-q", "origin", &leaked],
        )
    };
    // Control: while the branch exists the id is served (so a refusal
    // below is the defence, not a broken fetch).
    let (ok, out) = by_id(&wt);
    assert!(ok, "{out}");
    assert_eq!(git(&wt, &["cat-file", "-t", &leaked]).trim(), "commit");

    // A branch deleted whose commits stay reachable (merged) leaves
    // nothing to remove: the mirror is not repacked for it.
    git(&direct, &["push", "-q", "origin", "main:refs/heads/merged"]);
    let _ = clone(work.path(), &gate.repo_url("app"), "sees-merged");
    let packs = |gate: &RunningGate| {
        let mut names: Vec<_> = std::fs::read_dir(gate.mirror("app").join("objects/pack"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        names
    };
    let before = packs(&gate);
    git(&direct, &["push", "-q", "origin", ":merged"]);
    let _ = clone(work.path(), &gate.repo_url("app"), "after-merged");
    assert_eq!(packs(&gate), before, "repacked for a merged branch");

    git(&direct, &["push", "-q", "origin", ":leak"]);
    let fresh = clone(work.path(), &gate.repo_url("app"), "fresh");
    let (ok, out) = by_id(&fresh);
    assert!(!ok, "the deleted commit was served: {out}");
    assert!(!git_try(&fresh, &["cat-file", "-e", &leaked]).0);

    // The same for a branch force-pushed back past the commit.
    git(&direct, &["checkout", "-q", "main"]);
    let rewritten = commit_file(
        &direct,
        "leak2.txt",
        "also taken out
",
        "oops again",
    );
    git(&direct, &["push", "-q", "origin", "main"]);
    git(&fresh, &["pull", "-q", "origin", "main"]);
    git(&direct, &["reset", "-q", "--hard", "HEAD~1"]);
    git(&direct, &["push", "-q", "-f", "origin", "main"]);
    let later = clone(work.path(), &gate.repo_url("app"), "later");
    let (ok, out) = git_try(
        &later,
        &[
            "-c",
            "protocol.version=2",
            "fetch",
            "-q",
            "origin",
            &rewritten,
        ],
    );
    assert!(!ok, "the rewound commit was served: {out}");
}

/// A commit the upstream's owner will take back: pushed straight to the
/// upstream on `branch`, and fetched through the gate (so the mirror holds
/// it), with a direct clone of the upstream to take it back from.
struct TakenBack {
    up: HttpsUpstream,
    gate: RunningGate,
    work: tempfile::TempDir,
    direct: std::path::PathBuf,
    wt: std::path::PathBuf,
    commit: String,
}

fn taken_back_later(branch: &str) -> TakenBack {
    let up = HttpsUpstream::start();
    let gate = GateSetup::https(&up, &["*"]).start();
    let work = tempfile::tempdir().unwrap();
    let direct = clone(work.path(), up.bare.repo.to_str().unwrap(), "direct");
    git(&direct, &["checkout", "-q", "-b", branch]);
    let commit = commit_file(&direct, "leak.txt", "taken out later\n", "oops");
    git(&direct, &["push", "-q", "origin", branch]);
    let wt = clone(work.path(), &gate.repo_url("app"), "w");
    git(&wt, &["fetch", "-q", "origin", branch]);
    TakenBack {
        up,
        gate,
        work,
        direct,
        wt,
        commit,
    }
}

/// Attack: a refresh stopped after its fetch pruned a branch and before
/// it removed what that left behind (a timeout, the sidecar stopped). The
/// next refresh sees no ref change of its own, so without a record of the
/// unfinished one the deleted commit would stay served by id for good.
#[test]
fn a_refresh_cut_short_is_finished_by_the_next() {
    let TakenBack {
        up: _up,
        gate,
        work,
        direct,
        wt: _,
        commit: leaked,
    } = taken_back_later("leak");

    // What a refresh cut short after its fetch leaves: the branch gone
    // from the mirror (as from the upstream), its objects still there,
    // and the mark it set when it began.
    git(&direct, &["push", "-q", "origin", ":leak"]);
    let mirror = gate.mirror("app");
    let mirror_dir = mirror.to_str().unwrap();
    git(
        work.path(),
        &[
            "--git-dir",
            mirror_dir,
            "update-ref",
            "-d",
            "refs/heads/leak",
        ],
    );
    assert!(
        git_try(
            work.path(),
            &["--git-dir", mirror_dir, "cat-file", "-e", &leaked]
        )
        .0
    );
    std::fs::write(mirror.join("claude-bottle-refresh-pending"), b"").unwrap();

    let fresh = clone(work.path(), &gate.repo_url("app"), "fresh");
    let (ok, out) = git_try(
        &fresh,
        &["-c", "protocol.version=2", "fetch", "-q", "origin", &leaked],
    );
    assert!(!ok, "the deleted commit was served: {out}");
    assert!(!mirror.join("claude-bottle-refresh-pending").exists());
}

/// Attack: a hand-made push that skips discovery (`GET info/refs`, which
/// refreshes the mirror) and creates a branch at a commit the upstream's
/// owner has since deleted. Judged on the stale mirror, which still
/// reached the commit, nothing was scanned and the commit went back
/// upstream. A push whose mirror is not fresh is refreshed first.
#[test]
fn a_push_without_discovery_is_judged_on_a_fresh_mirror() {
    let TakenBack {
        up,
        gate,
        work: _work,
        direct,
        wt,
        commit: taken_back,
    } = taken_back_later("feat");

    git(&direct, &["push", "-q", "origin", ":feat"]);
    // Past the time a refresh is reused for.
    std::thread::sleep(std::time::Duration::from_secs(11));
    let zero = "0".repeat(40);
    let body = receive_pack_body(
        &[format!("{zero} {taken_back} refs/heads/agent-copy").into_bytes()],
        &pack_of(&wt, &[&taken_back, &format!("^{taken_back}")]),
    );
    let answer = post_receive_pack(&gate, "app", &body);
    assert_eq!(
        up.bare.rev("refs/heads/agent-copy"),
        None,
        "the taken-back commit went upstream: {answer:?}"
    );
}
