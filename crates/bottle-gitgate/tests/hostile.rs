//! Hostile pushes: thousands of commits, huge blobs, odd ref names, a push
//! cut off midway. No crash, nothing unscanned or partial upstream.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{Read, Write};
use std::process::Stdio;

use bottle_gitgate::Limits;
use support::*;

/// Writes `n` commits on `branch` (from `from`) with `git fast-import`;
/// commit number `secret_at` adds the PAT.
fn many_commits(
    wt: &std::path::Path,
    branch: &str,
    from: &str,
    n: usize,
    secret_at: Option<usize>,
) {
    let mut s = String::new();
    for i in 0..n {
        let content = if Some(i) == secret_at {
            format!("line {i}\nkey = \"{PAT}\"\n")
        } else {
            format!("line {i}\n")
        };
        let msg = format!("commit {i}\n");
        s.push_str(&format!("commit refs/heads/{branch}\nmark :{}\n", i + 1));
        s.push_str("committer Agent <agent@example.com> 1700000000 +0000\n");
        s.push_str(&format!("data {}\n{msg}", msg.len()));
        if i == 0 {
            s.push_str(&format!("from {from}\n"));
        }
        s.push_str(&format!(
            "M 644 inline f{}.txt\ndata {}\n{content}\n",
            i % 50,
            content.len()
        ));
    }
    let mut child = git_cmd(wt)
        .args(["fast-import", "--quiet"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success());
}

#[test]
fn thousands_of_commits_are_all_scanned() {
    let up = HttpsUpstream::start();
    let gate = GateSetup::https(&up, &["*"]).start();
    let work = tempfile::tempdir().unwrap();
    let wt = clone(work.path(), &gate.repo_url("app"), "w");
    let base = git(&wt, &["rev-parse", "HEAD"]).trim().to_string();
    many_commits(&wt, "bulk", &base, 3000, Some(7));
    let (ok, out) = git_try(&wt, &["push", "origin", "bulk"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("f7.txt:2") && out.contains("github-pat"),
        "{out}"
    );
    assert_eq!(up.bare.rev("refs/heads/bulk"), None);
    let ev = gate.wait_events("git-push", 1);
    assert_eq!(ev[0].commits, Some(3000));

    many_commits(&wt, "clean", &base, 3000, None);
    git(&wt, &["push", "-q", "origin", "clean"]);
    assert!(up.bare.rev("refs/heads/clean").is_some());
}

#[test]
fn huge_blobs_binary_skipped_text_refused() {
    let up = HttpsUpstream::start();
    let mut setup = GateSetup::https(&up, &["*"]);
    setup.limits = Limits {
        max_text_blob: 1 << 20,
        ..Limits::default()
    };
    let gate = setup.start();
    let work = tempfile::tempdir().unwrap();
    let wt = clone(work.path(), &gate.repo_url("app"), "w");

    // 8 MB of binary (NUL bytes early): skipped, the push lands.
    let mut bin = vec![0u8; 16];
    let mut x: u32 = 12345;
    bin.extend((0..8 << 20).map(|_| {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        (x >> 16) as u8
    }));
    std::fs::write(wt.join("blob.bin"), &bin).unwrap();
    git(&wt, &["checkout", "-q", "-b", "bin"]);
    git(&wt, &["add", "blob.bin"]);
    git(&wt, &["commit", "-q", "-m", "binary"]);
    git(&wt, &["push", "-q", "origin", "bin"]);
    assert!(up.bare.rev("refs/heads/bin").is_some());

    // 2 MB of text: over the scan bound, refused (never forwarded unscanned).
    git(&wt, &["checkout", "-q", "-b", "text", "origin/main"]);
    let text: String = (0..80_000)
        .map(|i| format!("line number {i} of text\n"))
        .collect();
    let mut big = text.clone();
    big.push_str(&format!("{PAT}\n"));
    commit_file(&wt, "big.txt", &big, "big text");
    let (ok, out) = git_try(&wt, &["push", "origin", "text"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("text is scanned up to") || out.contains("more than"),
        "{out}"
    );
    assert_eq!(up.bare.rev("refs/heads/text"), None);

    // One very long line.
    git(&wt, &["checkout", "-q", "-b", "line", "origin/main"]);
    commit_file(&wt, "line.txt", &"x".repeat(3 << 20), "long line");
    let (ok, out) = git_try(&wt, &["push", "origin", "line"]);
    assert!(!ok, "{out}");
    assert_eq!(up.bare.rev("refs/heads/line"), None);
    let ev = gate.wait_events("git-push", 3);
    assert_eq!(ev[1].reason.as_deref(), Some("too-large"));
    assert_eq!(ev[2].reason.as_deref(), Some("too-large"));
}

/// Over the bound on new trees the push is refused, not let through with
/// the rest of its folder names unread.
#[test]
fn too_many_new_trees_refuse_the_push() {
    let up = HttpsUpstream::start();
    let mut setup = GateSetup::https(&up, &["*"]);
    setup.limits = Limits {
        max_trees: 2,
        ..Limits::default()
    };
    let gate = setup.start();
    let work = tempfile::tempdir().unwrap();
    let wt = clone(work.path(), &gate.repo_url("app"), "w");
    git(&wt, &["checkout", "-q", "-b", "deep"]);
    // Three new trees: the root, `a` and `a/b`.
    commit_file(&wt, "a/b/c.txt", "clean\n", "deep");
    let (ok, out) = git_try(&wt, &["push", "origin", "deep"]);
    assert!(!ok, "{out}");
    assert!(out.contains("more than 2 new trees"), "{out}");
    assert_eq!(up.bare.rev("refs/heads/deep"), None);
    let ev = gate.wait_events("git-push", 1);
    assert_eq!(ev[0].reason.as_deref(), Some("too-large"));

    // Two new trees are within the bound.
    git(&wt, &["checkout", "-q", "-b", "flat", "origin/main"]);
    commit_file(&wt, "a/c.txt", "clean\n", "flat");
    git(&wt, &["push", "-q", "origin", "flat"]);
    assert!(up.bare.rev("refs/heads/flat").is_some());
    let ev = gate.wait_events("git-push", 2);
    let t = ev[1].timings.unwrap();
    assert_eq!((t.trees, t.tree_entries), (2, 3), "{t:?}");
}

/// The entry bound counts what is new: many commits that each rewrite a
/// folder re-read its unchanged entries, which must not refuse an
/// ordinary push; more distinct names than the bound do.
#[test]
fn the_tree_entry_bound_counts_distinct_entries() {
    let up = HttpsUpstream::start();
    let mut setup = GateSetup::https(&up, &["*"]);
    setup.limits = Limits {
        max_tree_entries: 6,
        ..Limits::default()
    };
    let gate = setup.start();
    let work = tempfile::tempdir().unwrap();
    let wt = clone(work.path(), &gate.repo_url("app"), "w");
    git(&wt, &["checkout", "-q", "-b", "edits"]);
    // Ten commits, ten new root trees, the same few names in each.
    for i in 0..10 {
        commit_file(&wt, "notes.txt", &format!("edit {i}\n"), "edits");
    }
    git(&wt, &["push", "-q", "origin", "edits"]);
    assert!(up.bare.rev("refs/heads/edits").is_some());
    let ev = gate.wait_events("git-push", 1);
    let t = ev[0].timings.unwrap();
    assert!(t.tree_entries > 6, "entries read again: {t:?}");

    git(&wt, &["checkout", "-q", "-b", "many", "origin/main"]);
    for i in 0..8 {
        commit_file(&wt, &format!("f{i}.txt"), "x\n", "many");
    }
    let (ok, out) = git_try(&wt, &["push", "origin", "many"]);
    assert!(!ok, "{out}");
    assert!(out.contains("more than 6 distinct entries"), "{out}");
    assert_eq!(up.bare.rev("refs/heads/many"), None);
}

#[test]
fn odd_ref_names() {
    let up = HttpsUpstream::start();
    let gate = GateSetup::https(&up, &["agent/*"]).start();
    let work = tempfile::tempdir().unwrap();
    let wt = clone(work.path(), &gate.repo_url("app"), "w");
    commit_file(&wt, "o.txt", "o\n", "odd");
    // Unicode and dots inside a pattern-allowed name land.
    git(
        &wt,
        &[
            "push",
            "-q",
            "origin",
            "HEAD:refs/heads/agent/ünï.cödé-名前",
        ],
    );
    assert!(up.bare.rev("refs/heads/agent/ünï.cödé-名前").is_some());
    // Outside refs/heads, even if the name looks allowed.
    for target in [
        "refs/agent/x",
        "refs/for/main",
        "refs/heads-agent/x",
        "refs/tags/agent/x",
    ] {
        let (ok, out) = git_try(&wt, &["push", "origin", &format!("HEAD:{target}")]);
        assert!(!ok, "{target}: {out}");
    }
    // `agent*` look-alikes are not `agent/*`.
    let (ok, _) = git_try(&wt, &["push", "origin", "HEAD:refs/heads/agentx"]);
    assert!(!ok);
    let (ok, _) = git_try(&wt, &["push", "origin", "HEAD:refs/heads/agent"]);
    assert!(!ok);
    let refs = up.bare.refs();
    assert!(!refs.contains("refs/for") && !refs.contains("agentx") && !refs.contains("tags"));
}

#[test]
fn a_push_cut_off_midway_changes_nothing() {
    let up = HttpsUpstream::start();
    let gate = GateSetup::https(&up, &["*"]).start();
    let work = tempfile::tempdir().unwrap();
    let wt = clone(work.path(), &gate.repo_url("app"), "w");
    let old = git(&wt, &["rev-parse", "HEAD"]).trim().to_string();
    // Some content, so the pack is big enough to cut.
    let blob: String = (0..20_000).map(|i| format!("{i} some text\n")).collect();
    let new = commit_file(&wt, "cut.txt", &blob, "cut");
    let mut pack_cmd = git_cmd(&wt)
        .args(["pack-objects", "--stdout", "--revs", "-q"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    pack_cmd
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{new}\n^{old}\n").as_bytes())
        .unwrap();
    let mut pack = Vec::new();
    pack_cmd
        .stdout
        .take()
        .unwrap()
        .read_to_end(&mut pack)
        .unwrap();
    assert!(pack_cmd.wait().unwrap().success());
    let zero = "0".repeat(40);
    let cmd = format!("{zero} {new} refs/heads/cut\0report-status\n");
    let mut body = format!("{:04x}{cmd}0000", cmd.len() + 4).into_bytes();
    body.extend_from_slice(&pack);
    assert!(body.len() > 1000);

    let addr = gate.url.trim_start_matches("http://").to_string();
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        s,
        "POST /app.git/git-receive-pack HTTP/1.1\r\nHost: x\r\n\
         Content-Type: application/x-git-receive-pack-request\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(&body[..body.len() / 2]).unwrap();
    drop(s);

    let ev = gate.wait_events("git-push", 1);
    assert_eq!(ev[0].decision, "block");
    assert_eq!(ev[0].reason.as_deref(), Some("malformed"), "{ev:?}");
    assert_eq!(up.bare.rev("refs/heads/cut"), None);
    assert!(
        !git(&gate.mirror("app"), &["for-each-ref"]).contains("refs/heads/cut"),
        "the mirror moved"
    );
    // The gate still works.
    git(&wt, &["push", "-q", "origin", "HEAD:refs/heads/cut"]);
    assert_eq!(up.bare.rev("refs/heads/cut"), Some(new));
}

#[test]
fn garbage_requests_are_refused() {
    let up = HttpsUpstream::start();
    let gate = GateSetup::https(&up, &["*"]).start();
    let addr = gate.url.trim_start_matches("http://").to_string();
    for req in [
        "GET /app.git/HEAD HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /app.git/objects/info/packs HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /app.git/info/refs HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /nope.git/info/refs?service=git-upload-pack HTTP/1.1\r\nHost: x\r\n\r\n",
        "POST /app.git/git-upload-pack?x=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    ] {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.write_all(req.as_bytes()).unwrap();
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).unwrap();
        let head = String::from_utf8_lossy(&buf[..n]);
        assert!(
            head.starts_with("HTTP/1.1 404") || head.starts_with("HTTP/1.1 403"),
            "{req}: {head}"
        );
    }
    // A garbage receive-pack body: refused, logged, no crash.
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    let body = "zzzzgarbage";
    write!(
        s,
        "POST /app.git/git-receive-pack HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Content-Type: application/x-git-receive-pack-request\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let ev = gate.wait_events("git-push", 1);
    assert_eq!(ev[0].decision, "block");
    assert_eq!(up.bare.accepted_pushes(), 0);
}
