//! The gate in front of an SSH upstream: a real `sshd` on loopback with a
//! generated host key, the gate holding the client key and the pinned host
//! key.
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

use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::Ordering;

use support::*;

fn sshd_or_skip() -> Option<SshUpstream> {
    skip_without_sshd(SshUpstream::start())
}

fn skip_without_sshd(started: Result<SshUpstream, String>) -> Option<SshUpstream> {
    match started {
        Ok(u) => Some(u),
        Err(why) => {
            assert!(
                std::env::var("CLAUDE_BOTTLE_REQUIRE_DOCKER").as_deref() != Ok("1"),
                "sshd is required here: {why}"
            );
            skipped!("SKIPPED: cannot run sshd: {why}");
            None
        }
    }
}

#[test]
fn clone_and_push_over_ssh_with_the_gates_key() {
    let Some(up) = sshd_or_skip() else { return };
    let gate = GateSetup::ssh(&up, &["agent/*"]).start();
    let key_file = gate.state.path().join("keys").join("app.key");
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    let work = tempfile::tempdir().unwrap();
    let wt = clone(work.path(), &gate.repo_url("app"), "w");
    assert!(wt.join("README.md").exists());
    git(&wt, &["checkout", "-q", "-b", "agent/ssh"]);
    let c = commit_file(&wt, "s.txt", "over ssh\n", "ssh work");
    up.bare.set("slow", true);
    let watch = CmdlineWatch::start();
    git(&wt, &["push", "-q", "origin", "agent/ssh"]);
    let seen = watch.finish();
    assert_eq!(up.bare.rev("refs/heads/agent/ssh"), Some(c));
    assert!(
        seen.iter()
            .any(|l| l.starts_with("ssh ") && l.contains("StrictHostKeyChecking=yes")),
        "the watcher never saw the gate's ssh: {seen:#?}"
    );
    let key_body: Vec<&str> = up
        .client_key
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    for l in &seen {
        for k in &key_body {
            assert!(!l.contains(k), "key material on a command line: {l}");
        }
    }
    // A secret is still refused over ssh.
    git(&wt, &["checkout", "-q", "-b", "agent/leak"]);
    commit_file(&wt, "leak.txt", &format!("{PAT}\n"), "leak");
    let (ok, out) = git_try(&wt, &["push", "origin", "agent/leak"]);
    assert!(!ok && out.contains("github-pat"), "{out}");
    assert_eq!(up.bare.rev("refs/heads/agent/leak"), None);
}

#[test]
fn an_unpinned_host_key_is_refused() {
    let Some(up) = sshd_or_skip() else { return };
    let mut setup = GateSetup::ssh(&up, &["*"]);
    setup.known_hosts = Some(up.wrong_known_hosts.clone());
    let gate = setup.start();
    let work = tempfile::tempdir().unwrap();
    let (ok, out) = git_try(work.path(), &["clone", &gate.repo_url("app"), "w"]);
    assert!(!ok, "{out}");
    assert!(out.contains("upstream unreachable"), "{out}");
    assert!(
        out.contains("Host key verification failed") || out.contains("host key"),
        "{out}"
    );
}

/// An upstream named by a host the bottle pins in `resolve`: the gate
/// reaches the pinned address and port, and checks the host key under the
/// name the user wrote, not under the address it was pinned to.
#[test]
fn a_pinned_ssh_upstream_is_checked_under_its_written_name() {
    let Some(up) = sshd_or_skip() else { return };
    // ssh://user@127.0.0.1:PORT/path -> ssh://user@git.pinned.test/path
    let rest = up.url.strip_prefix("ssh://").unwrap();
    let (user, rest) = rest.split_once('@').unwrap();
    let (hostport, path) = rest.split_once('/').unwrap();
    let url = format!("ssh://{user}@git.pinned.test/{path}");
    let key = |kh: &str| kh.split_once(' ').unwrap().1.to_string();

    let mut setup = GateSetup::ssh(&up, &["*"]);
    setup.repos[0].url = url.clone();
    setup
        .resolve
        .insert("git.pinned.test".into(), hostport.into());
    setup.known_hosts = Some(format!("git.pinned.test {}", key(&up.known_hosts)));
    let gate = setup.start();
    let work = tempfile::tempdir().unwrap();
    let wt = clone(work.path(), &gate.repo_url("app"), "w");
    assert!(wt.join("README.md").exists(), "cloned through the pin");

    // The right key, but pinned under the address instead of the name:
    // refused, so a pin cannot stand in for the host's identity.
    let mut setup = GateSetup::ssh(&up, &["*"]);
    setup.repos[0].url = url;
    setup
        .resolve
        .insert("git.pinned.test".into(), hostport.into());
    let gate = setup.start();
    let (ok, out) = git_try(work.path(), &["clone", &gate.repo_url("app"), "w2"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("Host key verification failed") || out.contains("host key"),
        "{out}"
    );
}

/// DNS rebinding against the SSRF guard, over SSH: the upstream's name
/// (`localhost`) answers the gate's lookup with an allowed address of this
/// machine, where the real sshd listens on port P, and ssh's own lookup
/// with loopback, where a trap listens on the same port P (an internal
/// service). Clone, push and fetch must all reach the real sshd and the trap
/// nothing: the gate pins ssh to the address it vetted (`-o HostName=`)
/// and checks the host key under the name the user wrote
/// (`-o HostKeyAlias=localhost`). Without that pin ssh resolves `localhost`
/// itself and connects to the trap.
#[test]
fn a_rebound_ssh_name_reaches_only_the_vetted_address() {
    let test = "a_rebound_ssh_name_reaches_only_the_vetted_address";
    let lan = match rebinding_target() {
        Ok(ip) => ip,
        Err(why) => {
            skipped!("SKIPPED {test}: {why}");
            return;
        }
    };
    // sshd binds its port itself: the trap keeps P on loopback while sshd
    // takes P on the allowed address (a new P if sshd cannot bind it).
    let mut traps = Vec::new();
    let started = SshUpstream::start_on(lan.into(), || {
        let (legit, t) = listener_with_loopback_traps(lan);
        traps = t;
        legit.local_addr().unwrap().port()
    });
    let Some(up) = skip_without_sshd(started) else {
        return;
    };
    let trap = Trap::start(traps);
    // ssh://user@LAN:P/path -> ssh://user@localhost:P/path
    let rest = up.url.strip_prefix("ssh://").unwrap();
    let (user, rest) = rest.split_once('@').unwrap();
    let (hostport, path) = rest.split_once('/').unwrap();
    let port = hostport.rsplit_once(':').unwrap().1;
    assert_eq!(hostport, format!("{lan}:{port}"));
    let mut setup = GateSetup::ssh(&up, &["*"]);
    setup.repos[0].url = format!("ssh://{user}@localhost:{port}/{path}");
    // The real host key, pinned under the written name only.
    let key = up.known_hosts.split_once(' ').unwrap().1;
    setup.known_hosts = Some(format!("localhost {key}"));
    setup.resolver = Some(std::sync::Arc::new(Rebinding(lan.into())));
    let gate = setup.start();
    let work = tempfile::tempdir().unwrap();

    let (ok, out) = git_try(work.path(), &["clone", &gate.repo_url("app"), "w"]);
    let hits = || trap.hits.load(Ordering::SeqCst);
    assert_eq!(
        hits(),
        0,
        "the clone's refresh reached loopback port {port}: {out}"
    );
    assert!(ok, "{out}");
    let wt = work.path().join("w");
    assert!(wt.join("README.md").exists());

    let c = commit_file(&wt, "f.txt", "clean\n", "clean change");
    let (ok, out) = git_try(&wt, &["push", "origin", "HEAD:refs/heads/topic"]);
    assert_eq!(
        hits(),
        0,
        "the upstream push reached loopback port {port}: {out}"
    );
    assert!(ok, "{out}");
    assert_eq!(up.bare.rev("refs/heads/topic"), Some(c));

    let (ok, out) = git_try(&wt, &["fetch", "origin"]);
    assert_eq!(
        hits(),
        0,
        "the fetch's refresh reached loopback port {port}: {out}"
    );
    assert!(ok, "{out}");
    let fetches = gate.events("git-fetch");
    assert!(!fetches.is_empty());
    assert!(fetches.iter().all(|e| e.decision == "allow"), "{fetches:?}");
}
