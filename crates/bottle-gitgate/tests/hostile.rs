//! Hostile pushes: thousands of commits, huge blobs, odd ref names, a push
//! cut off midway. No crash, nothing unscanned or partial upstream.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{Read, Write};
use std::path::Path;
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

/// The names' bytes are bounded too, not only their number: git allows
/// names of 4 KiB, and near-identical long names take a few dozen bytes
/// each in a pack, so a count bound alone would let a small push hold
/// gigabytes of names in the hook.
#[test]
fn the_bytes_of_tree_entry_names_are_bounded() {
    let up = HttpsUpstream::start();
    let mut setup = GateSetup::https(&up, &["*"]);
    setup.limits = Limits {
        max_tree_entry_bytes: 2048,
        ..Limits::default()
    };
    let gate = setup.start();
    let work = tempfile::tempdir().unwrap();
    let wt = clone(work.path(), &gate.repo_url("app"), "w");
    git(&wt, &["checkout", "-q", "-b", "short"]);
    commit_file(&wt, "a.txt", "x\n", "short");
    git(&wt, &["push", "-q", "origin", "short"]);
    assert!(up.bare.rev("refs/heads/short").is_some());

    git(&wt, &["checkout", "-q", "-b", "long", "origin/main"]);
    for i in 0..8 {
        let name = format!("{i}{}.txt", "n".repeat(240));
        commit_file(&wt, &name, "x\n", "long");
    }
    let (ok, out) = git_try(&wt, &["push", "origin", "long"]);
    assert!(!ok, "{out}");
    assert!(out.contains("take more than 2048 bytes"), "{out}");
    assert_eq!(up.bare.rev("refs/heads/long"), None);
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
    let pack = pack_of(&wt, &[&new, &format!("^{old}")]);
    let zero = "0".repeat(40);
    let cmd = format!("{zero} {new} refs/heads/cut").into_bytes();
    let body = receive_pack_body(&[cmd], &pack);
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
    // Each refusal is an event (every decision is one), without the path
    // the agent chose.
    let refused: Vec<(String, String, String, Option<u16>)> = gate
        .audit
        .events()
        .into_iter()
        .map(|e| {
            assert_eq!(e.decision, "block");
            assert_eq!(e.path, None);
            let rule = e.rule.unwrap_or_default();
            (rule, e.reason.unwrap_or_default(), e.repo, e.status)
        })
        .collect();
    let row = |rule: &str, reason: &str, repo: &str, status| {
        (
            rule.to_string(),
            reason.to_string(),
            repo.to_string(),
            Some(status),
        )
    };
    assert_eq!(
        refused,
        [
            row("unknown-path", "path", "app", 404),
            row("unknown-path", "path", "app", 404),
            row("dumb-http", "path", "app", 403),
            row("unknown-repository", "no-route", "", 404),
            row("unknown-repository", "no-route", "", 404),
            row("unknown-path", "path", "app", 404),
        ]
    );
    // They cost the agent nothing: at most 40 a second are written, the
    // rest counted in one event when the second is over.
    let before = gate.audit.events().len();
    let probe = |name: &str| {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        write!(
            s,
            "GET /{name}.git/info/refs HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
    };
    for _ in 0..100 {
        probe("ghp_notlogged");
    }
    std::thread::sleep(std::time::Duration::from_millis(1100));
    probe("next");
    let flood = &gate.audit.events()[before..];
    let written = flood.iter().filter(|e| e.count.is_none()).count() as u64;
    let held: u64 = flood.iter().filter_map(|e| e.count).sum();
    assert!(held > 0 && written < 101, "{written} written, {held} held");
    assert_eq!(written + held, 101);
    assert!(
        flood
            .iter()
            .filter(|e| e.count.is_some())
            .all(|e| e.rule.as_deref() == Some("rate-limit:git"))
    );
    let lines: String = flood.iter().map(|e| e.to_line()).collect();
    assert!(!lines.contains("notlogged"), "{lines}");
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

/// A commit `G` holding a secret that no scan reaches, and a commit on
/// `base` whose tree has a submodule entry (gitlink) at `path` pointing to
/// `G`: `<new>:<path>` names `G`. Returns (new, G).
fn gitlink_to_secret(wt: &Path, base: &str, path: &str) -> (String, String) {
    git(wt, &["checkout", "-q", "-b", "hidden", base]);
    let g = commit_file(wt, "key.txt", &format!("token = \"{PAT}\"\n"), "hidden");
    git(wt, &["checkout", "-q", "--detach", base]);
    let index = wt.join(".git").join("gitlink-index");
    let in_index = |args: &[&str]| {
        let out = git_cmd(wt)
            .env("GIT_INDEX_FILE", &index)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    in_index(&["read-tree", base]);
    in_index(&[
        "update-index",
        "--add",
        "--cacheinfo",
        &format!("160000,{g},{path}"),
    ]);
    let tree = in_index(&["write-tree"]);
    let new = git(wt, &["commit-tree", &tree, "-p", base, "-m", "gitlink"])
        .trim()
        .to_string();
    (new, g)
}

/// receive-pack checks a ref name's format only after the pre-receive
/// hook, so the hook sees whatever name the client sent. A `:` in it must
/// not split the upstream push's refspec `<new>:<name>`: the source would
/// become the tree path `<new>:refs/heads/agent/x` (a gitlink to an
/// unscanned commit holding a secret) and the destination a branch the
/// `push` patterns do not allow, or a protected one.
#[test]
fn a_colon_in_a_ref_name_cannot_redirect_the_upstream_push() {
    let up = HttpsUpstream::start();
    let gate = GateSetup::https(&up, &["agent/*"]).start();
    let work = tempfile::tempdir().unwrap();
    let wt = clone(work.path(), &gate.repo_url("app"), "w");
    let base = git(&wt, &["rev-parse", "HEAD"]).trim().to_string();
    let (new, g) = gitlink_to_secret(&wt, &base, "refs/heads/agent/x");
    let pack = pack_of(&wt, &[&new, &g, &format!("^{base}")]);
    let zero = "0".repeat(40);
    let before = up.bare.refs();

    // A new branch whose name carries a second destination; then the same
    // onto protected `main`, with its real old value (a fast-forward).
    for (n, (old, name)) in [
        (&zero, "refs/heads/agent/x:refs/heads/exfil"),
        (&base, "refs/heads/agent/x:refs/heads/main"),
    ]
    .into_iter()
    .enumerate()
    {
        let cmd = format!("{old} {new} {name}").into_bytes();
        let resp = post_receive_pack(&gate, "app", &receive_pack_body(&[cmd], &pack));
        let ev = gate.wait_events("git-push", n + 1);
        let ev = &ev[n];
        assert_eq!(ev.decision, "block", "{name}: {ev:?}");
        assert_eq!(ev.reason.as_deref(), Some("git-policy"), "{name}: {ev:?}");
        let quoted = format!("{name:?}");
        assert!(resp.remote.contains(&quoted), "{name}: {resp:?}");
        assert!(
            resp.remote.contains("not a valid ref name"),
            "{name}: {resp:?}"
        );
        assert_eq!(up.bare.refs(), before, "{name}: the upstream moved");
        assert_eq!(up.bare.rev("refs/heads/exfil"), None);
        assert_eq!(
            up.bare.rev("refs/heads/main").as_deref(),
            Some(base.as_str())
        );
        let g_upstream = git_out(&up.bare.repo, &["cat-file", "-e", &g]);
        assert!(
            !g_upstream.status.success(),
            "{name}: G reached the upstream"
        );
    }
}

/// Other names git refuses to create (after the hook, in receive-pack):
/// refused by the hook as `git-policy`, the name escaped in the message
/// and nothing sent upstream. A line break splits the name into two lines
/// of the hook's input: refused as unreadable.
#[test]
fn ref_names_git_would_refuse_are_refused_before_the_upstream() {
    let up = HttpsUpstream::start();
    let gate = GateSetup::https(&up, &["agent/*"]).start();
    let work = tempfile::tempdir().unwrap();
    let wt = clone(work.path(), &gate.repo_url("app"), "w");
    let base = git(&wt, &["rev-parse", "HEAD"]).trim().to_string();
    let new = commit_file(&wt, "n.txt", "clean\n", "clean");
    let pack = pack_of(&wt, &[&new, &format!("^{base}")]);
    let zero = "0".repeat(40);
    let before = up.bare.refs();
    let cases: [(&str, &str, &str); 7] = [
        (
            "refs/heads/agent/../main",
            "git-policy",
            "\"refs/heads/agent/../main\"",
        ),
        (
            "refs/heads/agent//x",
            "git-policy",
            "\"refs/heads/agent//x\"",
        ),
        // receive-pack keeps a trailing CR; a line reader that drops it
        // would forward `refs/heads/agent/x`.
        (
            "refs/heads/agent/x\r",
            "git-policy",
            "\"refs/heads/agent/x\\r\"",
        ),
        (
            "refs/heads/agent/a\rb",
            "git-policy",
            "\"refs/heads/agent/a\\rb\"",
        ),
        (
            "refs/heads/agent/x\x1b[2J",
            "git-policy",
            "\"refs/heads/agent/x\\u{1b}[2J\"",
        ),
        (
            "refs/heads/agent/x.lock",
            "git-policy",
            "\"refs/heads/agent/x.lock\"",
        ),
        (
            "refs/heads/agent/x\nrefs/heads/exfil",
            "malformed",
            "unreadable",
        ),
    ];
    for (n, (name, reason, shown)) in cases.into_iter().enumerate() {
        let cmd = format!("{zero} {new} {name}").into_bytes();
        let resp = post_receive_pack(&gate, "app", &receive_pack_body(&[cmd], &pack));
        let ev = gate.wait_events("git-push", n + 1);
        let ev = &ev[n];
        assert_eq!(ev.decision, "block", "{name:?}: {ev:?}");
        assert_eq!(ev.reason.as_deref(), Some(reason), "{name:?}: {ev:?}");
        assert!(resp.remote.contains(shown), "{name:?}: {resp:?}");
        // receive-pack's own status repeats the raw name; the gate's lines
        // never hold a control character.
        assert!(!resp.remote.contains(['\x1b', '\r']), "{name:?}: {resp:?}");
        assert_eq!(up.bare.refs(), before, "{name:?}: the upstream moved");
        assert!(
            !git(&gate.mirror("app"), &["for-each-ref"]).contains("agent"),
            "{name:?}: the mirror moved"
        );
    }
    // A valid name in the same request as an invalid one: the whole push
    // is refused.
    let ok = format!("{zero} {new} refs/heads/agent/ok").into_bytes();
    let bad = format!("{zero} {new} refs/heads/agent/bad:refs/heads/agent/y").into_bytes();
    let resp = post_receive_pack(&gate, "app", &receive_pack_body(&[ok, bad], &pack));
    let ev = gate.wait_events("git-push", cases.len() + 1);
    assert_eq!(
        ev[cases.len()].reason.as_deref(),
        Some("git-policy"),
        "{resp:?}"
    );
    assert!(resp.remote.contains("agent/bad:"), "{resp:?}");
    assert_eq!(up.bare.refs(), before, "the upstream moved");
    // A line break followed by a whole update line: the hook sees two
    // updates, checks and scans both, and forwards just those; then
    // receive-pack refuses the real name, so the mirror does not move.
    let cmd = format!("{zero} {new} refs/heads/agent/y\n{zero} {new} refs/heads/agent/z");
    let resp = post_receive_pack(&gate, "app", &receive_pack_body(&[cmd.into_bytes()], &pack));
    let ev = gate.wait_events("git-push", cases.len() + 2);
    let names: Vec<&str> = ev[cases.len() + 1]
        .refs
        .iter()
        .map(|u| u.name.as_str())
        .collect();
    assert_eq!(
        names,
        ["refs/heads/agent/y", "refs/heads/agent/z"],
        "{resp:?}"
    );
    assert_eq!(
        up.bare.rev("refs/heads/agent/y").as_deref(),
        Some(new.as_str())
    );
    assert_eq!(
        up.bare.rev("refs/heads/agent/z").as_deref(),
        Some(new.as_str())
    );
    assert!(resp.status.contains("funny refname"), "{resp:?}");
    assert!(!git(&gate.mirror("app"), &["for-each-ref"]).contains("agent"));
    // The gate still works with a good name.
    let cmd = format!("{zero} {new} refs/heads/agent/fine").into_bytes();
    post_receive_pack(&gate, "app", &receive_pack_body(&[cmd], &pack));
    assert_eq!(up.bare.rev("refs/heads/agent/fine"), Some(new));
}

/// A `refs/replace/` ref in the mirror makes git read one object in place
/// of another. Pushing one is refused by the policy, but the mirror is a
/// folder on the sidecar's disk; the scan must read the blob that was
/// pushed, not a clean stand-in named by such a ref.
#[test]
fn a_replace_ref_in_the_mirror_does_not_hide_a_pushed_secret() {
    let up = HttpsUpstream::start();
    let gate = GateSetup::https(&up, &["*"]).start();
    let work = tempfile::tempdir().unwrap();
    let wt = clone(work.path(), &gate.repo_url("app"), "w");

    let secret = work.path().join("secret.txt");
    std::fs::write(&secret, format!("key = {PAT}\n")).unwrap();
    let clean = work.path().join("clean.txt");
    std::fs::write(&clean, "key = nothing to see\n").unwrap();
    let secret_id = git(&wt, &["hash-object", secret.to_str().unwrap()]);
    let mirror = gate.mirror("app");
    let clean_id = git(&mirror, &["hash-object", "-w", clean.to_str().unwrap()]);
    let replace = format!("refs/replace/{}", secret_id.trim());
    git(&mirror, &["update-ref", &replace, clean_id.trim()]);

    git(&wt, &["checkout", "-q", "-b", "replaced"]);
    let id = commit_file(&wt, "conf.txt", &format!("key = {PAT}\n"), "config");
    // Without the defence the mirror's git would show the stand-in.
    let (ok, out) = git_try(&wt, &["push", "origin", "replaced"]);
    assert!(!ok, "{out}");
    assert!(out.contains("a secret was found"), "{out}");
    assert!(out.contains(&id[..12]), "{out}");
    assert_eq!(up.bare.rev("refs/heads/replaced"), None);
    let ev = gate.wait_events("git-push", 1);
    assert_eq!(ev[0].reason.as_deref(), Some("git-secret"));
}
