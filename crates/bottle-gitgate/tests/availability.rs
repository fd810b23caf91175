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
    let t = Instant::now();
    while up
        .seen
        .receive_pack_posts
        .load(std::sync::atomic::Ordering::SeqCst)
        == 0
    {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the push never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

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
