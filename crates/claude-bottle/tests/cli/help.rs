//! `--help` on every command, and completions.

use super::util::*;

#[test]
fn every_command_has_help() {
    let t = TestEnv::new();
    let commands = [
        "start",
        "attach",
        "list",
        "info",
        "logs",
        "stop",
        "cleanup",
        "build",
        "doctor",
        "init",
        "completions",
        "scan",
        "proxy",
    ];
    let (code, top, _) = t.run(t.cmd(&["--help"]));
    assert_eq!(code, 0);
    for c in commands {
        assert!(
            top.contains(&format!("  {c} ")),
            "top-level help lists `{c}`:\n{top}"
        );
        let (code, out, err) = t.run(t.cmd(&[c, "--help"]));
        assert_eq!(code, 0, "{c}: {err}");
        assert!(out.contains("Usage: claude-bottle"), "{c}: {out}");
    }
    insta::assert_snapshot!("help_start", t.run(t.cmd(&["start", "--help"])).1);
}

#[test]
fn completions_for_each_shell() {
    let t = TestEnv::new();
    for shell in ["bash", "zsh", "fish"] {
        let (code, out, _) = t.run(t.cmd(&["completions", shell]));
        assert_eq!(code, 0);
        assert!(out.contains("claude-bottle"), "{shell}");
        assert!(out.contains("dry-run"), "{shell}");
    }
    let (code, _, _) = t.run(t.cmd(&["completions", "tcsh"]));
    assert_eq!(code, 2);
}

#[test]
fn unknown_command_is_usage() {
    let t = TestEnv::new();
    let (code, _, err) = t.run(t.cmd(&["launch"]));
    assert_eq!(code, 2);
    assert!(err.contains("unrecognized subcommand"), "{err}");
}

#[test]
fn help_logs_and_stop() {
    let t = TestEnv::new();
    insta::assert_snapshot!("help_logs", t.run(t.cmd(&["logs", "--help"])).1);
    insta::assert_snapshot!("help_stop", t.run(t.cmd(&["stop", "--help"])).1);
}
