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
    refused_by(wt, up, gate, refspec, (part, "known-secret"), secret_form)
}

/// [`refused_in`] for a finding of rule `rule` in `part`.
fn refused_by(
    wt: &Path,
    up: &HttpsUpstream,
    gate: &RunningGate,
    refspec: &str,
    (part, rule): (&str, &str),
    secret_form: &str,
) -> bottle_gitgate::Event {
    let before = up.bare.refs();
    let (ok, out) = git_try(wt, &["push", "origin", refspec]);
    assert!(!ok, "{out}");
    assert!(out.contains("a secret was found"), "{out}");
    // The gate's own lines never show it (git's own show the refspec).
    let gate_lines: String = out.lines().filter(|l| l.contains("git gate")).collect();
    assert!(!gate_lines.contains(TOKEN), "{out}");
    assert!(out.contains(&format!("({part}) rule {rule}")), "{out}");
    assert_eq!(up.bare.refs(), before, "the upstream moved");
    assert_eq!(up.bare.accepted_pushes(), 0);
    let ev = gate.wait_events("git-push", 1).remove(0);
    assert_eq!(
        (ev.decision, ev.reason.as_deref()),
        ("block", Some("git-secret"))
    );
    let f = ev.findings.iter().find(|f| f.part.as_deref() == Some(part));
    assert!(
        f.is_some_and(|f| f.path.is_none() && f.rule == rule),
        "{ev:?}"
    );
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

/// Commits `tree` (from `git mktree` lines) on top of HEAD and checks the
/// branch out at it; returns the tree's id.
fn commit_tree(wt: &Path, lines: &str) -> String {
    let mut c = git_cmd(wt);
    c.args(["mktree"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(lines.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let tree = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let commit = git(wt, &["commit-tree", &tree, "-p", "HEAD", "-m", "tidy"]);
    git(wt, &["reset", "-q", "--hard", commit.trim()]);
    tree
}

/// Nothing of the refused push reached the upstream: not even the tree.
fn upstream_lacks(up: &HttpsUpstream, object: &str) {
    let (has, _) = git_try(&up.bare.repo, &["cat-file", "-e", object]);
    assert!(!has, "the upstream received {object}");
}

/// A folder that holds no file is no file: `git log --raw -r` never lists
/// it, so only reading the tree finds its name.
#[test]
fn a_secret_in_the_name_of_an_empty_folder_is_refused() {
    let (up, gate, _work, wt) = cloned("empty");
    let empty = git(&wt, &["hash-object", "-t", "tree", "-w", "/dev/null"]);
    let blob = git(&wt, &["rev-parse", "HEAD:README.md"]);
    let tree = commit_tree(
        &wt,
        &format!(
            "040000 tree {}\t{TOKEN}\n100644 blob {}\tREADME.md\n",
            empty.trim(),
            blob.trim()
        ),
    );
    let ev = refused_in(&wt, &up, &gate, "empty", "tree entry name", TOKEN);
    assert_eq!(ev.findings[0].commit, tree, "the finding names the tree");
    upstream_lacks(&up, &tree);
}

/// A gitlink's id is 20 bytes of the agent's choice: an AWS key id fits,
/// and its hex is found.
#[test]
fn a_credential_in_a_submodule_id_is_refused() {
    let (up, gate, _work, wt) = cloned("link");
    let key = "AKIAQYLPMN5HHHFPZAM2";
    let id = String::from_utf8(hex_encode(key.as_bytes(), false)).unwrap();
    let entry = format!("160000,{id},vendor/lib");
    git(&wt, &["update-index", "--add", "--cacheinfo", &entry]);
    git(&wt, &["commit", "-q", "-m", "vendor"]);
    let tree = git(&wt, &["rev-parse", "HEAD^{tree}"]);
    let part = ("submodule id", "aws-access-key-id");
    refused_by(&wt, &up, &gate, "link", part, key);
    upstream_lacks(&up, tree.trim());
}

/// The hex of a secret longer than 20 bytes, split over two gitlinks that
/// follow each other in their tree, is found in the ids run together.
#[test]
fn a_known_secret_split_over_two_submodule_ids_is_refused() {
    let (up, gate, _work, wt) = cloned("split");
    let hex = String::from_utf8(hex_encode(TOKEN.as_bytes(), false)).unwrap();
    let (first, rest) = hex.split_at(40);
    let second = format!("{rest:0<40}");
    for (id, name) in [(first, "vendor/a"), (second.as_str(), "vendor/b")] {
        let entry = format!("160000,{id},{name}");
        git(&wt, &["update-index", "--add", "--cacheinfo", &entry]);
    }
    git(&wt, &["commit", "-q", "-m", "vendor"]);
    refused_in(&wt, &up, &gate, "split", "submodule id", first);
}
