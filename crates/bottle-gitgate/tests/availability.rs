//! The gate shares its process with the egress proxy: a client must not be
//! able to hold its connections, git processes or repository locks without
//! bound. Idle connections are closed, connections over the cap wait in the
//! backlog, git children queue, and a request that waits too long for a busy
//! repository gets a 503 that says so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bottle_gitgate::Limits;
use bottle_gitgate::config::Auth;
use support::*;

/// A gate with `limits` in front of an HTTPS upstream.
fn gate_with(limits: Limits) -> (HttpsUpstream, RunningGate) {
    let up = HttpsUpstream::start();
    let mut setup = GateSetup::https(&up, &["*"]);
    setup.limits = limits;
    (up, setup.start())
}

fn connect(gate: &RunningGate) -> TcpStream {
    let addr = gate.url.strip_prefix("http://").unwrap();
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// Reads until the server closes the connection (or 5 s pass: a panic).
fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return got,
            Err(e) => panic!("the gate kept the connection open: {e}"),
        }
    }
}

const NOT_A_REPO: &[u8] =
    b"GET /nope.git/info/refs?service=git-upload-pack HTTP/1.1\r\nhost: g\r\n\r\n";

#[test]
fn a_connection_that_sends_no_head_is_closed_after_the_timeout() {
    let (_up, gate) = gate_with(Limits {
        header_read_timeout_ms: 300,
        ..Limits::default()
    });

    // Nothing at all.
    let t = Instant::now();
    let mut silent = connect(&gate);
    assert!(read_to_close(&mut silent).is_empty());
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "{:?}",
        t.elapsed()
    );

    // Half a head, then nothing.
    let mut half = connect(&gate);
    half.write_all(b"GET /app.git/info/refs HTTP/1.1\r\nhost: g\r\n")
        .unwrap();
    read_to_close(&mut half);

    // A kept-alive connection, idle after its first request.
    let mut idle = connect(&gate);
    idle.write_all(NOT_A_REPO).unwrap();
    let got = read_to_close(&mut idle);
    assert!(got.starts_with(b"HTTP/1.1 404"), "{got:?}");
}

#[test]
fn connections_over_the_cap_wait_until_a_slot_frees() {
    let (_up, gate) = gate_with(Limits {
        max_connections: 1,
        ..Limits::default()
    });
    let holder = connect(&gate);
    // Let the gate accept the first connection before the second comes.
    std::thread::sleep(Duration::from_millis(200));
    let mut waiting = connect(&gate);
    waiting.write_all(NOT_A_REPO).unwrap();
    waiting
        .set_read_timeout(Some(Duration::from_millis(700)))
        .unwrap();
    let mut buf = [0u8; 64];
    let early = waiting.read(&mut buf);
    assert!(
        early.as_ref().is_err_and(|e| matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        )),
        "served over the cap: {early:?}"
    );
    drop(holder);
    waiting
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let n = waiting.read(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 404"), "{:?}", &buf[..n]);
}

/// A push holds its repository while the upstream takes its time; a fetch
/// of the same repository gives up after the bound with a clear 503, and a
/// fetch of another repository waits for the one git process allowed. The
/// push itself, with a single git process allowed, still goes through.
#[test]
fn waiters_give_up_on_a_busy_repo_and_git_children_queue() {
    let up = HttpsUpstream::start();
    let mut setup = GateSetup::https(&up, &["*"]);
    setup
        .repos
        .push(repo("other", &up.url, Auth::Token, &["*"]));
    setup.limits = Limits {
        repo_lock_wait_secs: 1,
        max_git_processes: 1,
        ..Limits::default()
    };
    let gate = setup.start();
    let work = tempfile::tempdir().unwrap();
    let wt = clone(work.path(), &gate.repo_url("app"), "w");
    git(&wt, &["checkout", "-q", "-b", "slow"]);
    commit_file(&wt, "a.txt", "clean\n", "slow");
    // The upstream's hook now takes 4 s.
    up.bare.set("hang", true);
    let pusher = {
        let wt = wt.clone();
        std::thread::spawn(move || git_try(&wt, &["push", "origin", "slow"]))
    };
    // The gate's hook is at the upstream: the repo lock and the one git
    // process are taken.
    up.wait_for_a_push();

    let (ok, out) = git_try(&wt, &["ls-remote", "origin"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("busy with another push") && out.contains("503"),
        "{out}"
    );
    let ev = gate.events("git-fetch");
    let refused = ev.iter().find(|e| e.reason.as_deref() == Some("timeout"));
    assert_eq!(refused.and_then(|e| e.status), Some(503), "{ev:?}");

    let t = Instant::now();
    let (ok, out) = git_try(&wt, &["ls-remote", &gate.repo_url("other")]);
    assert!(ok, "{out}");
    assert!(
        t.elapsed() >= Duration::from_millis(1500),
        "another repo's fetch ran beside the push: {:?}",
        t.elapsed()
    );

    let (ok, out) = pusher.join().unwrap();
    assert!(ok, "{out}");
    up.bare.set("hang", false);
    assert!(up.bare.rev("refs/heads/slow").is_some());
}

/// An upstream whose `main` holds a file of random bytes (`mib` MiB): a
/// fetch's pack is then far larger than all the socket buffers between the
/// gate and a client that reads none of it. Returns the upstream and its
/// `main`.
fn big_upstream(mib: usize) -> (HttpsUpstream, String) {
    let up = HttpsUpstream::start();
    let seed = up.bare.dir.path().join("big");
    git(
        up.bare.dir.path(),
        &["clone", "-q", up.bare.repo.to_str().unwrap(), "big"],
    );
    // xorshift: incompressible, and quicker than reading /dev/urandom.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut data = Vec::with_capacity(mib << 20);
    while data.len() < mib << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    std::fs::write(seed.join("noise.bin"), &data).unwrap();
    git(&seed, &["add", "noise.bin"]);
    git(&seed, &["commit", "-q", "-m", "noise"]);
    git(&seed, &["push", "-q", "origin", "main"]);
    let main = up.bare.rev("refs/heads/main").unwrap();
    (up, main)
}

/// A gate with two git slots, `kept` of them for pushes, and the stall
/// timeout `stall_ms`, in front of a [`big_upstream`] of 16 MiB.
fn two_slot_gate(kept: usize, stall_ms: u64) -> (HttpsUpstream, RunningGate, String) {
    let (up, main) = big_upstream(16);
    let mut setup = GateSetup::https(&up, &["*"]);
    setup.limits = Limits {
        max_git_processes: 2,
        git_processes_kept_for_pushes: kept,
        response_stall_timeout_ms: stall_ms,
        ..Limits::default()
    };
    let gate = setup.start();
    (up, gate, main)
}

/// An upload-pack request for `want` (protocol v0, no side band: the pack
/// comes raw) whose client then reads nothing. Keep it to keep the
/// connection open: a client that closes is a different case.
fn stalled_fetch(gate: &RunningGate, want: &str) -> TcpStream {
    let body = format!("0032want {want}\n00000009done\n");
    let mut s = connect(gate);
    write!(
        s,
        "POST /app.git/git-upload-pack HTTP/1.1\r\nhost: g\r\n\
         content-type: application/x-git-upload-pack-request\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    s
}

/// Runs git as [`git`] does, but gives up (and fails the test) after
/// `limit`: without the bounds under test it would wait for an hour. Its
/// output goes to a file: a killed git leaves helpers that hold pipes.
fn git_within(dir: &std::path::Path, args: &[&str], limit: Duration) {
    let log = tempfile::tempfile().unwrap();
    let mut child = git_cmd(dir)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(log.try_clone().unwrap())
        .spawn()
        .unwrap();
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t.elapsed() > limit {
            child.kill().unwrap();
            let _ = child.wait();
            panic!("git {args:?} still waiting for a git slot after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut text = String::new();
    let mut log = log;
    std::io::Seek::rewind(&mut log).unwrap();
    log.read_to_string(&mut text).unwrap();
    assert!(status.success(), "git {args:?}: {text}");
}

/// The gate's git children still running (zombies left for init are dead):
/// every one has the gate's mirrors as `GIT_PROJECT_ROOT`.
fn gate_children(gate: &RunningGate) -> Vec<String> {
    let mark = format!(
        "GIT_PROJECT_ROOT={}",
        gate.state.path().join("repos").display()
    );
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let p = e.path();
        let Ok(env) = std::fs::read(p.join("environ")) else {
            continue;
        };
        let ours = env.split(|b| *b == 0).any(|v| v == mark.as_bytes());
        let stat = std::fs::read_to_string(p.join("stat")).unwrap_or_default();
        let zombie = stat
            .rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with('Z'));
        if ours && !zombie {
            found.push(stat);
        }
    }
    found
}

/// Waits (up to 10 s) until the gate has no git child left.
fn assert_no_children_left(gate: &RunningGate) {
    let t = Instant::now();
    loop {
        let left = gate_children(gate);
        if left.is_empty() {
            return;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "left: {left:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Clients that start fetches and then read nothing would hold every git
/// slot until the children's hour-long deadline. The gate kills such a
/// child (with upload-pack and pack-objects under it) once its output has
/// waited the stall timeout, logs `timeout`, and a real clone goes through.
#[test]
fn fetches_that_nobody_reads_give_their_git_slots_back() {
    let (_up, gate, main) = two_slot_gate(0, 1_000);
    let stalled: Vec<TcpStream> = (0..2).map(|_| stalled_fetch(&gate, &main)).collect();

    let work = tempfile::tempdir().unwrap();
    let url = gate.repo_url("app");
    git_within(
        work.path(),
        &["clone", "-q", &url, "w"],
        Duration::from_secs(60),
    );
    assert!(work.path().join("w/noise.bin").exists());

    let cut: Vec<_> = gate
        .wait_events("git-fetch", 3)
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("timeout"))
        .collect();
    assert_eq!(cut.len(), 2, "{cut:?}");
    assert!(
        cut.iter().all(|e| e.decision == "block"
            && e.message
                .as_deref()
                .is_some_and(|m| m.contains("took none"))),
        "{cut:?}"
    );
    assert_no_children_left(&gate);
    drop(stalled);
}

/// Fetches may not take the slots kept for pushes: with one of two kept,
/// fetches nobody reads (and no stall timeout to save the day) hold the
/// other, and a push still goes through at once.
#[test]
fn a_push_gets_a_slot_while_fetches_hold_the_rest() {
    let (up, gate, main) = two_slot_gate(1, 600_000);
    let work = tempfile::tempdir().unwrap();
    let wt = clone(work.path(), &gate.repo_url("app"), "w");

    // The first holds the fetch slot; the second waits for it.
    let stalled: Vec<TcpStream> = (0..2).map(|_| stalled_fetch(&gate, &main)).collect();
    std::thread::sleep(Duration::from_millis(500));
    git(&wt, &["checkout", "-q", "-b", "feature"]);
    commit_file(&wt, "a.txt", "clean\n", "feature");
    git_within(
        &wt,
        &["push", "-q", "origin", "feature"],
        Duration::from_secs(60),
    );
    assert!(up.bare.rev("refs/heads/feature").is_some());

    // Clients that hang up free their fetches too.
    drop(stalled);
    assert_no_children_left(&gate);
}

/// A client that stops reading a fetch holds its connection too, not only
/// its git child: with one connection allowed, nobody else would be served
/// until that client went away. The gate closes a connection whose writes
/// have waited the stall timeout, and the next client gets its answer.
#[test]
fn a_client_that_stops_reading_gives_its_connection_back() {
    let (up, main) = big_upstream(16);
    let mut setup = GateSetup::https(&up, &["*"]);
    setup.limits = Limits {
        max_connections: 1,
        response_stall_timeout_ms: 500,
        ..Limits::default()
    };
    let gate = setup.start();
    let stalled = stalled_fetch(&gate, &main);
    // The fetch is cut once its output has waited the stall timeout.
    let cut = gate.wait_events("git-fetch", 1);
    assert_eq!(cut[0].reason.as_deref(), Some("timeout"), "{cut:?}");

    let mut next = connect(&gate);
    next.write_all(NOT_A_REPO).unwrap();
    let mut buf = [0u8; 64];
    let n = next
        .read(&mut buf)
        .unwrap_or_else(|e| panic!("the stalled client still holds the only connection slot: {e}"));
    assert!(buf[..n].starts_with(b"HTTP/1.1 404"), "{:?}", &buf[..n]);
    drop(stalled);
}

/// The gate stops (its runtime dropped, as when the sidecar ends) while a
/// push's hook is forwarding upstream: the push still has its event, saying
/// the upstream may have it.
#[test]
fn a_push_cut_short_by_the_gate_stopping_is_recorded() {
    // The upstream's hook takes 4 s, the gate's grace as long.
    let (up, gate, pusher, _work) = a_push_under_way("hang", "late");
    let audit = gate.stop_now();
    let t = Instant::now();
    let pushes = loop {
        let pushes: Vec<_> = audit
            .events()
            .into_iter()
            .filter(|e| e.kind == "git-push")
            .collect();
        if !pushes.is_empty() || t.elapsed() > Duration::from_secs(10) {
            break pushes;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(pushes.len(), 1, "{pushes:?}");
    assert_eq!(pushes[0].reason.as_deref(), Some("timeout"), "{pushes:?}");
    assert!(
        pushes[0]
            .message
            .as_deref()
            .is_some_and(|m| m.contains("may have received it")),
        "{pushes:?}"
    );
    let (ok, _) = pusher.join().unwrap();
    assert!(!ok, "the client was told its push went through");
    up.bare.set("hang", false);
}

/// The gate is told to stop (the sidecar's signal) while a push's hook is
/// forwarding upstream: it waits for the push, which goes through and is
/// recorded as it ended, not cut off with the upstream half updated.
#[test]
fn a_push_under_way_when_the_gate_stops_is_let_finish() {
    // The upstream's hook takes a second.
    let (up, gate, pusher, _work) = a_push_under_way("slow", "finishing");
    let audit = gate.stop_gracefully();
    let pushes: Vec<_> = audit
        .events()
        .into_iter()
        .filter(|e| e.kind == "git-push")
        .collect();
    assert_eq!(pushes.len(), 1, "{pushes:?}");
    assert_eq!(pushes[0].decision, "allow", "{pushes:?}");
    let (ok, out) = pusher.join().unwrap();
    assert!(ok, "{out}");
    assert!(up.bare.rev("refs/heads/finishing").is_some());
    up.bare.set("slow", false);
}

/// A gate whose push of a new `branch` is at the upstream, whose hook is
/// slowed by `flag` (`slow`: 1 s, `hang`: 4 s); the pushing client's
/// thread, and the folder its clone is in.
fn a_push_under_way(
    flag: &str,
    branch: &'static str,
) -> (
    HttpsUpstream,
    RunningGate,
    std::thread::JoinHandle<(bool, String)>,
    tempfile::TempDir,
) {
    let up = HttpsUpstream::start();
    let gate = GateSetup::https(&up, &["*"]).start();
    let work = tempfile::tempdir().unwrap();
    let wt = clone(work.path(), &gate.repo_url("app"), "w");
    git(&wt, &["checkout", "-q", "-b", branch]);
    commit_file(&wt, "a.txt", "clean\n", branch);
    up.bare.set(flag, true);
    let pusher = std::thread::spawn(move || git_try(&wt, &["push", "origin", branch]));
    up.wait_for_a_push();
    (up, gate, pusher, work)
}
