//! Binary files and the bottle's known secrets: the rules skip binary
//! content, but the gate's own token hidden in a file with a NUL byte (as
//! is, encoded, or deep in a blob over the text bound) refuses the push.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;

use bottle_dlp::{base64_encode, hex_encode};
use bottle_gitgate::Limits;
use support::*;

/// `len` bytes of noise, a NUL first (binary by git's test), with `inner`
/// written at `at`.
fn binary_with(len: usize, at: usize, inner: &[u8]) -> Vec<u8> {
    let mut data = noise(len, 7);
    data[0] = 0;
    data[at..at + inner.len()].copy_from_slice(inner);
    data
}

fn commit_bytes(wt: &Path, path: &str, content: &[u8], msg: &str) -> String {
    std::fs::write(wt.join(path), content).unwrap();
    git(wt, &["add", "-A"]);
    git(wt, &["commit", "-q", "-m", msg]);
    git(wt, &["rev-parse", "HEAD"]).trim().to_string()
}

/// Pushes `branch`, expects a refusal for a secret that leaves the
/// upstream as it was and does not show the secret, and returns the gate's
/// message.
fn push_refused(wt: &Path, up: &HttpsUpstream, branch: &str) -> String {
    let before = up.bare.refs();
    let (ok, out) = git_try(wt, &["push", "origin", branch]);
    assert!(!ok, "{out}");
    assert!(out.contains("a secret was found"), "{out}");
    assert_eq!(up.bare.refs(), before, "the upstream moved");
    assert!(!out.contains(TOKEN), "the secret is in the message: {out}");
    out
}

/// [`push_refused`], and the message names the binary finding: commit,
/// path, byte offset and rule, the secret redacted.
fn push_refused_at(
    wt: &Path,
    up: &HttpsUpstream,
    branch: &str,
    (commit, path, at): (&str, &str, usize),
) {
    let out = push_refused(wt, up, branch);
    let line = format!(
        "commit {} {path} (binary, byte {at}) rule known-secret ****",
        &commit[..12]
    );
    assert!(out.contains(&line), "{out}");
}

#[test]
fn raw_secret_in_a_binary_file_is_refused() {
    let up = HttpsUpstream::start();
    let gate = GateSetup::https(&up, &["*"]).start();
    let work = tempfile::tempdir().unwrap();
    let wt = clone(work.path(), &gate.repo_url("app"), "w");
    git(&wt, &["checkout", "-q", "-b", "raw"]);
    let id = commit_bytes(
        &wt,
        "data.bin",
        &binary_with(4096, 1000, TOKEN.as_bytes()),
        "data",
    );

    push_refused_at(&wt, &up, "raw", (&id, "data.bin", 1000));
    assert_eq!(up.bare.rev("refs/heads/raw"), None);

    let ev = gate.wait_events("git-push", 1);
    assert_eq!(ev[0].decision, "block");
    assert_eq!(ev[0].reason.as_deref(), Some("git-secret"));
    let f = &ev[0].findings[0];
    assert_eq!(
        (f.path.as_deref(), f.offset, f.rule.as_str()),
        (Some("data.bin"), Some(1000), "known-secret")
    );
    let t = ev[0].timings.unwrap();
    assert_eq!((t.binary_files, t.binary_bytes), (1, 4096));
    assert!(!ev[0].to_line().contains(TOKEN));
}

/// Attack: the bottle's token, and a credential a rule knows, in UTF-16
/// text files (with and without a byte-order mark). git calls them binary
/// (NUL bytes), forges show them as text, and the known-secret search
/// looks for 8-bit forms only: they go to the rules, which read UTF-16.
#[test]
fn secrets_in_utf16_text_are_refused() {
    let utf16 = |text: &str, big_endian: bool, bom: bool| {
        let mut out = Vec::new();
        if bom {
            out.extend_from_slice(if big_endian {
                &[0xfe, 0xff]
            } else {
                &[0xff, 0xfe]
            });
        }
        for u in text.encode_utf16() {
            out.extend_from_slice(&if big_endian {
                u.to_be_bytes()
            } else {
                u.to_le_bytes()
            });
        }
        out
    };
    let up = HttpsUpstream::start();
    let gate = GateSetup::https(&up, &["*"]).start();
    let work = tempfile::tempdir().unwrap();
    let wt = clone(work.path(), &gate.repo_url("app"), "w");
    let cases = [
        (
            "le-bom",
            format!("deploy notes\ntoken = {TOKEN}\n"),
            false,
            true,
        ),
        ("be-bom", format!("token = {TOKEN}\n"), true, true),
        (
            "le-plain",
            format!("some text before it\n{TOKEN}\n"),
            false,
            false,
        ),
        (
            "rule",
            "GITHUB_TOKEN=ghp_k2Lq8ZrT4vYw9NcX1bHs7MdP3aFe6UjG0iRo\n".to_string(),
            false,
            true,
        ),
    ];
    for (branch, text, be, bom) in cases {
        git(&wt, &["checkout", "-q", "-b", branch, "origin/main"]);
        commit_bytes(&wt, "notes.txt", &utf16(&text, be, bom), "notes");
        let out = push_refused(&wt, &up, branch);
        assert!(out.contains("notes.txt"), "{branch}: {out}");
        assert_eq!(up.bare.rev(&format!("refs/heads/{branch}")), None);
    }
    // Clean UTF-16 text lands.
    git(&wt, &["checkout", "-q", "-b", "clean16", "origin/main"]);
    commit_bytes(
        &wt,
        "notes.txt",
        &utf16("nothing to see\n", false, true),
        "notes",
    );
    git(&wt, &["push", "-q", "origin", "clean16"]);
    assert!(up.bare.rev("refs/heads/clean16").is_some());
}

#[test]
fn encoded_secret_in_a_binary_file_is_refused() {
    let up = HttpsUpstream::start();
    let gate = GateSetup::https(&up, &["*"]).start();
    let work = tempfile::tempdir().unwrap();
    let wt = clone(work.path(), &gate.repo_url("app"), "w");

    // Base64 in a file the commit adds.
    git(&wt, &["checkout", "-q", "-b", "b64"]);
    let b64 = base64_encode(TOKEN.as_bytes(), false, true);
    let id = commit_bytes(&wt, "img.png", &binary_with(3000, 200, &b64), "img");
    push_refused_at(&wt, &up, "b64", (&id, "img.png", 200));

    // Hex in a binary file a later commit changes (the patch stream's side).
    git(&wt, &["checkout", "-q", "-b", "hex", "origin/main"]);
    commit_bytes(&wt, "blob.dat", &binary_with(3000, 10, b"clean"), "clean");
    git(&wt, &["push", "-q", "origin", "hex"]);
    let hex = hex_encode(TOKEN.as_bytes(), false);
    let id = commit_bytes(&wt, "blob.dat", &binary_with(3000, 2000, &hex), "hex");
    push_refused_at(&wt, &up, "hex", (&id, "blob.dat", 2000));
    // Upper-case hex too.
    git(&wt, &["reset", "-q", "--hard", "HEAD~1"]);
    let hex = hex_encode(TOKEN.as_bytes(), true);
    let id = commit_bytes(&wt, "blob.dat", &binary_with(3000, 5, &hex), "HEX");
    push_refused_at(&wt, &up, "hex", (&id, "blob.dat", 5));
}

#[test]
fn secret_deep_in_a_blob_over_the_text_bound_is_refused() {
    let up = HttpsUpstream::start();
    let mut setup = GateSetup::https(&up, &["*"]);
    setup.limits = Limits {
        max_text_blob: 1 << 20,
        ..Limits::default()
    };
    let gate = setup.start();
    let work = tempfile::tempdir().unwrap();
    let wt = clone(work.path(), &gate.repo_url("app"), "w");

    // 3 MiB, the secret near the end and across a 64 KiB boundary of the
    // stream (the first 8000 bytes are read on their own).
    let len = 3 << 20;
    let at = 8000 + 45 * 65536 - 10;
    git(&wt, &["checkout", "-q", "-b", "big"]);
    let id = commit_bytes(
        &wt,
        "big.bin",
        &binary_with(len, at, TOKEN.as_bytes()),
        "big",
    );
    push_refused_at(&wt, &up, "big", (&id, "big.bin", at));

    // The same in a big binary file that a later commit changes: git shows
    // it as binary, the gate streams the new blob.
    git(&wt, &["checkout", "-q", "-b", "bigmod", "origin/main"]);
    commit_bytes(&wt, "big.bin", &binary_with(len, 100, b"clean"), "clean");
    git(&wt, &["push", "-q", "origin", "bigmod"]);
    let at = len - 4096 - 3;
    let id = commit_bytes(
        &wt,
        "big.bin",
        &binary_with(len, at, TOKEN.as_bytes()),
        "leak",
    );
    push_refused_at(&wt, &up, "bigmod", (&id, "big.bin", at));
    let ev = gate.wait_events("git-push", 3);
    let t = ev[2].timings.unwrap();
    assert_eq!((t.binary_files, t.binary_bytes), (1, len as u64));
}

#[test]
fn binary_file_without_the_secret_lands() {
    let up = HttpsUpstream::start();
    let gate = GateSetup::https(&up, &["*"]).start();
    let work = tempfile::tempdir().unwrap();
    let wt = clone(work.path(), &gate.repo_url("app"), "w");
    git(&wt, &["checkout", "-q", "-b", "clean"]);
    // A key shape the rules would refuse in text: binary content is not
    // scanned by the rules, only searched for the known secrets.
    let id = commit_bytes(
        &wt,
        "ok.bin",
        &binary_with(5000, 100, PAT.as_bytes()),
        "clean binary",
    );
    git(&wt, &["push", "-q", "origin", "clean"]);
    assert_eq!(up.bare.rev("refs/heads/clean"), Some(id));
    let ev = gate.wait_events("git-push", 1);
    assert_eq!(ev[0].decision, "allow");
    let t = ev[0].timings.unwrap();
    assert_eq!((t.binary_files, t.binary_bytes), (1, 5000));
}

/// git prints "Binary files differ" when EITHER side is binary or over
/// `core.bigFileThreshold` (the text bound). The new blob alone decides:
/// text there is scanned by the rules, whatever the old side was.
fn new_text_is_scanned(wt: &Path, up: &HttpsUpstream, branch: &str, base: &str) {
    // A rule's finding (no known secret involved), and the bottle's own
    // token: a line finding now, not a binary offset.
    for (content, at) in [
        (format!("one\nkey = \"{PAT}\"\n"), "x:2 rule github-pat"),
        (format!("token {TOKEN}\n"), "x:1 rule known-secret"),
    ] {
        git(wt, &["checkout", "-q", "-B", branch, base]);
        let id = commit_file(wt, "x", &content, "leak");
        let out = push_refused(wt, up, branch);
        assert!(out.contains(&format!("commit {} {at}", &id[..12])), "{out}");
    }
    // Clean text lands.
    git(wt, &["checkout", "-q", "-B", branch, base]);
    let id = commit_file(wt, "x", "just text\n", "clean");
    git(wt, &["push", "-q", "origin", branch]);
    assert_eq!(up.bare.rev(&format!("refs/heads/{branch}")), Some(id));
}

#[test]
fn text_replacing_a_binary_file_is_scanned() {
    let up = HttpsUpstream::start();
    let gate = GateSetup::https(&up, &["*"]).start();
    let work = tempfile::tempdir().unwrap();
    let wt = clone(work.path(), &gate.repo_url("app"), "w");
    git(&wt, &["checkout", "-q", "-b", "bin"]);
    let base = commit_bytes(&wt, "x", b"a\0b", "binary");
    git(&wt, &["push", "-q", "origin", "bin"]);
    new_text_is_scanned(&wt, &up, "bin", &base);
    let ev = gate.wait_events("git-push", 4);
    assert_eq!(ev[1].reason.as_deref(), Some("git-secret"), "{ev:?}");
    assert_eq!(ev[2].reason.as_deref(), Some("git-secret"), "{ev:?}");
    // Found by the rules in text: a line, no byte offset.
    assert!(ev[2].findings.iter().all(|f| f.offset.is_none()), "{ev:?}");
}

#[test]
fn text_replacing_a_file_over_the_text_bound_is_scanned() {
    let up = HttpsUpstream::start();
    let mut setup = GateSetup::https(&up, &["*"]);
    setup.limits = Limits {
        max_text_blob: 4096,
        ..Limits::default()
    };
    let gate = setup.start();
    // The big text file reaches the upstream around the gate (the gate
    // would refuse it: it cannot scan it).
    let direct = tempfile::tempdir().unwrap();
    let d = clone(direct.path(), up.bare.repo.to_str().unwrap(), "d");
    let big: String = (0..500).map(|i| format!("line {i} of text\n")).collect();
    assert!(big.len() > 4096);
    let base = commit_file(&d, "x", &big, "big text");
    git(&d, &["push", "-q", "origin", "HEAD:refs/heads/big"]);

    let work = tempfile::tempdir().unwrap();
    let wt = clone(work.path(), &gate.repo_url("app"), "w");
    new_text_is_scanned(&wt, &up, "big", &base);
    let ev = gate.wait_events("git-push", 3);
    assert_eq!(ev[0].reason.as_deref(), Some("git-secret"), "{ev:?}");
    assert_eq!(ev[1].reason.as_deref(), Some("git-secret"), "{ev:?}");
    assert_eq!(ev[2].decision, "allow", "{ev:?}");
}
