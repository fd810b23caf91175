//! The parts of a push that are not file content are the agent's to write
//! too, and the upstream keeps them: ref names, author and committer, file
//! names, tags. The bottle's secret in any of them refuses the push before
//! anything goes upstream, and never lands in the audit log. A ref that
//! points at a blob (content no diff shows) is refused outright.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};

use bottle_dlp::hex_encode;
use support::*;

/// A gate in front of an HTTPS upstream, and a clone of `app` through it
/// on a new branch `branch`.
fn cloned(branch: &str) -> (HttpsUpstream, RunningGate, tempfile::TempDir, PathBuf) {
    let up = HttpsUpstream::start();
    let gate = GateSetup::https(&up, &["*"]).start();
    let work = tempfile::tempdir().unwrap();
    let wt = clone(work.path(), &gate.repo_url("app"), "w");
    git(&wt, &["checkout", "-q", "-b", branch]);
    (up, gate, work, wt)
}

/// Pushes `refspec`; expects the gate's refusal for a secret, found in
/// `part`, with the upstream as it was; returns the one audit event, whose
/// line must not hold the secret in `secret_form`.
fn refused_in(
    wt: &Path,
    up: &HttpsUpstream,
    gate: &RunningGate,
    refspec: &str,
    part: &str,
    secret_form: &str,
) -> bottle_gitgate::Event {
    let before = up.bare.refs();
    let (ok, out) = git_try(wt, &["push", "origin", refspec]);
    assert!(!ok, "{out}");
    assert!(out.contains("a secret was found"), "{out}");
    // The gate's own lines never show it (git's own show the refspec).
    let gate_lines: String = out.lines().filter(|l| l.contains("git gate")).collect();
    assert!(!gate_lines.contains(TOKEN), "{out}");
    assert!(
        out.contains(&format!("({part}) rule known-secret")),
        "{out}"
    );
    assert_eq!(up.bare.refs(), before, "the upstream moved");
    assert_eq!(up.bare.accepted_pushes(), 0);
    let ev = gate.wait_events("git-push", 1).remove(0);
    assert_eq!(
        (ev.decision, ev.reason.as_deref()),
        ("block", Some("git-secret"))
    );
    assert_eq!(ev.findings[0].part.as_deref(), Some(part));
    assert_eq!(ev.findings[0].path, None);
    let line = ev.to_line();
    assert!(
        !line.contains(TOKEN) && !line.contains(secret_form),
        "{line}"
    );
    ev
}

#[test]
fn a_secret_in_a_ref_name_is_refused_and_not_logged() {
    let (up, gate, _work, wt) = cloned("feature");
    commit_file(&wt, "a.txt", "clean\n", "clean");
    let hex = String::from_utf8(hex_encode(TOKEN.as_bytes(), false)).unwrap();
    let ev = refused_in(
        &wt,
        &up,
        &gate,
        &format!("feature:refs/heads/agent/{hex}"),
        "ref name",
        &hex,
    );
    assert!(ev.refs.iter().all(|r| !r.name.contains("agent/")), "{ev:?}");
}

/// Refused before the names are scanned (a name git allows but that is not
/// UTF-8 stops the reading): the audit event still holds no name.
#[test]
fn a_ref_name_is_not_logged_when_the_push_is_refused_before_the_scan() {
    use std::os::unix::ffi::OsStrExt;
    let (up, gate, _work, wt) = cloned("odd");
    commit_file(&wt, "a.txt", "clean\n", "clean");
    let hex = String::from_utf8(hex_encode(TOKEN.as_bytes(), false)).unwrap();
    let named = format!("odd:refs/heads/agent/{hex}");
    let odd = std::ffi::OsStr::from_bytes(b"odd:refs/heads/agent/\xff");
    let out = git_cmd(&wt)
        .args(["push", "origin", &named])
        .arg(odd)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(up.bare.accepted_pushes(), 0);
    let ev = gate.wait_events("git-push", 1).remove(0);
    assert_eq!(ev.decision, "block");
    let line = ev.to_line();
    assert!(!line.contains(&hex) && !line.contains("agent/"), "{line}");
}

/// A file named after the secret whose content also has a finding: that
/// finding reports no path either.
#[test]
fn a_secret_file_name_is_not_printed_by_its_content_findings() {
    let (up, gate, _work, wt) = cloned("both");
    commit_file(&wt, TOKEN, &format!("token = {PAT}\n"), "both");
    let ev = refused_in(&wt, &up, &gate, "both", "file name", TOKEN);
    assert!(ev.findings.len() >= 2, "{ev:?}");
}

#[test]
fn a_secret_in_the_author_is_refused() {
    let (up, gate, _work, wt) = cloned("authored");
    std::fs::write(wt.join("a.txt"), "clean\n").unwrap();
    git(&wt, &["add", "-A"]);
    let mut c = git_cmd(&wt);
    c.env("GIT_AUTHOR_NAME", TOKEN)
        .args(["commit", "-q", "-m", "clean message"]);
    assert!(c.status().unwrap().success());
    refused_in(&wt, &up, &gate, "authored", "commit header", TOKEN);
}

#[test]
fn a_secret_in_a_file_name_is_refused_even_for_an_empty_file() {
    let (up, gate, _work, wt) = cloned("named");
    let hex = String::from_utf8(hex_encode(TOKEN.as_bytes(), false)).unwrap();
    std::fs::create_dir(wt.join("notes")).unwrap();
    std::fs::write(wt.join("notes").join(&hex), "").unwrap();
    git(&wt, &["add", "-A"]);
    git(&wt, &["commit", "-q", "-m", "notes"]);
    refused_in(&wt, &up, &gate, "named", "file name", &hex);
}

#[test]
fn a_secret_in_a_submodule_name_is_refused() {
    let (up, gate, _work, wt) = cloned("sub");
    let head = git(&wt, &["rev-parse", "HEAD"]).trim().to_string();
    // A gitlink entry only: no submodule repository is needed to push one.
    let entry = format!("160000,{head},vendor/{TOKEN}");
    git(&wt, &["update-index", "--add", "--cacheinfo", &entry]);
    git(&wt, &["commit", "-q", "-m", "vendor"]);
    refused_in(&wt, &up, &gate, "sub", "file name", TOKEN);
}

#[test]
fn a_secret_in_a_tag_is_refused() {
    let (up, gate, _work, wt) = cloned("tagged");
    commit_file(&wt, "a.txt", "clean\n", "clean");
    git(&wt, &["tag", "-a", "v1", "-m", &format!("release {TOKEN}")]);
    // Tags are not branches; a branch pointed at the tag object carries it.
    refused_in(&wt, &up, &gate, "v1:refs/heads/tagged", "tag", TOKEN);
}

#[test]
fn a_ref_to_a_blob_is_refused() {
    let (up, gate, _work, wt) = cloned("blob");
    std::fs::write(wt.join("loose"), format!("{TOKEN}\n")).unwrap();
    let blob = git(&wt, &["hash-object", "-w", "loose"]).trim().to_string();
    let before = up.bare.refs();
    let (ok, out) = git_try(&wt, &["push", "origin", &format!("{blob}:refs/heads/blob")]);
    assert!(!ok, "{out}");
    assert!(out.contains("points to a blob"), "{out}");
    assert_eq!(up.bare.refs(), before, "the upstream moved");
    assert_eq!(up.bare.accepted_pushes(), 0);
    let ev = gate.wait_events("git-push", 1).remove(0);
    assert_eq!(ev.reason.as_deref(), Some("git-policy"));
}
