//! `claude-bottle scan` end to end: files, folders (with `.git` and binary
//! files skipped), stdin, JSON output, exit codes, `--known-secret-env`, and
//! that no output shows more than the first four characters of a secret.

#![allow(clippy::unwrap_used)] // a test binary: a failed setup is a failed test
#![allow(clippy::disallowed_macros)] // a test binary says why it skips on stderr

/// A skip message the test harness shows: it captures `eprintln!`, not a
/// write to the stderr handle (testing.md: skipped with a visible message).
macro_rules! skipped {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

use std::fs;
use std::path::Path;

use assert_cmd::Command;

/// Key-shaped values built at run time, so this file holds none literally.
fn github_token() -> String {
    format!("ghp_{}", "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3z0Q")
}
fn aws_key() -> String {
    format!("AKIA{}", "QZ2XK7MBN4RT5WPL")
}
const OWN_SECRET: &str = "bottle-own-Secret-Value-7f3k9q";

fn scan() -> Command {
    let mut c = Command::cargo_bin("claude-bottle").unwrap();
    c.arg("scan").env_remove("SCAN_TEST_SECRET");
    c
}

fn stdout_of(c: &mut Command) -> (i32, String, String) {
    let out = c.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// No output may contain a secret beyond its first four characters.
fn assert_not_leaked(text: &str, secrets: &[&str]) {
    for s in secrets {
        assert!(
            !text.contains(&s[..5]),
            "output shows more than 4 chars of a secret:\n{text}"
        );
    }
}

fn tree(dir: &Path) {
    fs::create_dir_all(dir.join("src/nested")).unwrap();
    fs::create_dir_all(dir.join(".git/objects")).unwrap();
    fs::write(
        dir.join("src/config.py"),
        format!("import os\n\nKEY = \"{}\"\n", aws_key()),
    )
    .unwrap();
    fs::write(
        dir.join("src/nested/deploy.sh"),
        format!("#!/bin/sh\n  export T={}\n", github_token()),
    )
    .unwrap();
    fs::write(
        dir.join("src/clean.rs"),
        "fn main() { println!(\"hi\"); }\n",
    )
    .unwrap();
    fs::write(
        dir.join(".git/config"),
        format!("token = {}\n", github_token()),
    )
    .unwrap();
    let mut binary = b"\x7fELF\x00\x00".to_vec();
    binary.extend_from_slice(aws_key().as_bytes());
    fs::write(dir.join("src/app.bin"), binary).unwrap();
}

#[test]
fn folder_reports_path_line_column_and_skips_git_and_binary() {
    let dir = tempfile::tempdir().unwrap();
    tree(dir.path());
    let (code, out, _) = stdout_of(scan().arg(dir.path()));
    assert_eq!(code, 1, "{out}");
    let root = dir.path().display();
    assert_eq!(
        out,
        format!(
            "{root}/src/config.py:3:8: aws-access-key-id AKIA…\n\
             {root}/src/nested/deploy.sh:2:12: github-pat ghp_…\n"
        )
    );
    assert_not_leaked(&out, &[&github_token(), &aws_key()]);
}

#[test]
fn clean_file_exits_zero_with_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("clean.md");
    fs::write(
        &f,
        "# Notes\n\nUse `${DB_PASSWORD}` from the environment.\n",
    )
    .unwrap();
    let (code, out, _) = stdout_of(scan().arg(&f));
    assert_eq!((code, out.as_str()), (0, ""));
}

#[test]
fn stdin_by_dash_and_by_default() {
    let input = format!("line one\nAuthorization: token {}\n", github_token());
    for args in [vec!["-"], vec![]] {
        let (code, out, _) = stdout_of(scan().args(&args).write_stdin(input.clone()));
        assert_eq!(code, 1);
        assert_eq!(out, "-:2:22: github-pat ghp_…\n");
    }
    let (code, out, _) = stdout_of(scan().write_stdin("nothing here\n"));
    assert_eq!((code, out.as_str()), (0, ""));
}

#[test]
fn json_lines() {
    let (code, out, _) = stdout_of(
        scan()
            .args(["--format", "json", "-"])
            .write_stdin(format!("x {}\n", aws_key())),
    );
    assert_eq!(code, 1);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1);
    let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(v["path"], "-");
    assert_eq!(v["line"], 1);
    assert_eq!(v["column"], 3);
    assert_eq!(v["rule"], "aws-access-key-id");
    assert_eq!(v["redacted"], "AKIA…");
    assert_not_leaked(&out, &[&aws_key()]);
}

/// A file named with an escape sequence and a C1 control (U+009B, CSI to
/// many terminals) is reported with both written out, in text and JSON.
#[test]
fn control_characters_in_file_names_never_reach_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let name = "a\u{1b}]0;owned\u{7}\u{9b}2J.txt";
    fs::write(dir.path().join(name), format!("k={}\n", aws_key())).unwrap();
    let (code, out, _) = stdout_of(scan().arg(dir.path()));
    assert_eq!(code, 1, "{out}");
    assert!(!out.trim_end().contains(char::is_control), "{out:?}");
    assert!(
        out.contains(r"a\u{1b}]0;owned\u{7}\u{9b}2J.txt:1:3:"),
        "{out}"
    );
    let (code, out, _) = stdout_of(scan().args(["--format", "json"]).arg(dir.path()));
    assert_eq!(code, 1, "{out}");
    assert!(!out.trim_end().contains(char::is_control), "{out:?}");
    let v: serde_json::Value = serde_json::from_str(out.trim_end()).unwrap();
    assert!(v["path"].as_str().unwrap().ends_with(name), "{out}");
}

#[test]
fn known_secret_env_finds_encoded_forms_without_showing_them() {
    let b64 = "Ym90dGxlLW93bi1TZWNyZXQtVmFsdWUtN2YzazlxCg=="; // base64 of the secret + "\n"
    let input = format!("a={OWN_SECRET}\nb={b64}\n");
    let (code, out, err) = stdout_of(
        scan()
            .args(["--known-secret-env", "SCAN_TEST_SECRET", "-"])
            .env("SCAN_TEST_SECRET", OWN_SECRET)
            .write_stdin(input),
    );
    assert_eq!(code, 1, "{err}");
    assert_eq!(out, "-:1:3: known-secret ****\n-:2:3: known-secret ****\n");
    assert_not_leaked(&format!("{out}{err}"), &[OWN_SECRET]);
}

#[test]
fn bad_usage_exits_two_and_names_the_problem() {
    let (code, out, err) = stdout_of(scan().args(["--known-secret-env", "SCAN_TEST_SECRET", "-"]));
    assert_eq!(code, 2);
    assert!(out.is_empty());
    assert!(err.contains("`SCAN_TEST_SECRET`"), "{err}");

    let (code, _, err) = stdout_of(
        scan()
            .args(["--known-secret-env", "SCAN_TEST_SECRET", "-"])
            .env("SCAN_TEST_SECRET", "abc"),
    );
    assert_eq!(code, 2);
    assert!(!err.contains("abc"), "a short secret was echoed: {err}");

    let (code, _, err) = stdout_of(scan().arg("/definitely/not/here"));
    assert_eq!(code, 2);
    assert!(err.contains("`/definitely/not/here`"), "{err}");
}

#[test]
fn explicit_files_are_scanned_in_order_and_large_files_work() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.log");
    // Several MiB with one secret near the end: line numbers must still be
    // exact although the scanner keeps only a bounded window.
    let mut text = "2026-01-01T00:00:00Z INFO request served in 3ms\n".repeat(100_000);
    text.push_str(&format!("leaked {}\n", github_token()));
    fs::write(&big, &text).unwrap();
    let small = dir.path().join("small.txt");
    fs::write(&small, aws_key()).unwrap();
    let (code, out, _) = stdout_of(scan().arg(&small).arg(&big));
    assert_eq!(code, 1);
    assert_eq!(
        out,
        format!(
            "{}:1:1: aws-access-key-id AKIA…\n{}:100001:8: github-pat ghp_…\n",
            small.display(),
            big.display()
        )
    );
}

/// Every command makes itself non-dumpable first (`start` holds every
/// token of the bottle before `Launch?`; `scan` here holds a known
/// secret): no core dump, and no other process of the user can read its
/// memory or environment. The kernel shows it as `/proc/PID/environ`
/// owned by root instead of the process's own uid, so the CLI is run as
/// another user (root only can) and that file watched while it waits on
/// stdin. The control, a plain process run the same way, stays the
/// user's: what the probe sees is the defence.
#[test]
fn the_cli_makes_itself_non_dumpable() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::process::{Command as Std, Stdio};
    if !rustix::process::geteuid().is_root() {
        skipped!("SKIPPED: needs root to run the CLI as another user");
        return;
    }
    const NOBODY: u32 = 65534;
    // The binary where that user can run it.
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.path().join("claude-bottle");
    fs::copy(assert_cmd::cargo::cargo_bin("claude-bottle"), &bin).unwrap();
    let as_nobody = |program: &Path, args: &[&str]| {
        Std::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(program)
            .args(args)
            .env("SCAN_TEST_SECRET", OWN_SECRET)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap()
    };
    // The owner of the process's /proc environ once it runs the program.
    let owner_when_running = |child: &std::process::Child, program: &Path| {
        let proc_dir = format!("/proc/{}", child.id());
        for _ in 0..500 {
            let exe = fs::read_link(format!("{proc_dir}/exe")).ok();
            if exe.as_deref() == Some(program) {
                std::thread::sleep(std::time::Duration::from_millis(200));
                return fs::metadata(format!("{proc_dir}/environ")).unwrap().uid();
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("{} never started", program.display());
    };

    let sleep = Path::new("/usr/bin/sleep");
    let mut control = as_nobody(sleep, &["5"]);
    assert_eq!(owner_when_running(&control, sleep), NOBODY, "the probe");
    control.kill().unwrap();
    control.wait().unwrap();

    let mut cli = as_nobody(
        &bin,
        &["scan", "--known-secret-env", "SCAN_TEST_SECRET", "-"],
    );
    let owner = owner_when_running(&cli, &bin);
    drop(cli.stdin.take());
    cli.wait().unwrap();
    assert_eq!(
        owner, 0,
        "the CLI's /proc entry stayed its user's: dumpable"
    );
}
