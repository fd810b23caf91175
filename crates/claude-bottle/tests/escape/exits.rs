//! Row 11: every way a bottle ends leaves nothing labelled behind (and no
//! state folder); after SIGKILL of the CLI, `cleanup` removes everything.

use std::process::Command;
use std::time::Duration;

use super::attacker::{Ctx, spawn_up};
use super::report::Report;
use crate::bottle::leftovers;

/// How the bottle ends: a prompt that ends by itself, a signal to the CLI
/// once the bottle is up, or `--timeout`.
enum End {
    Prompt(&'static str),
    Signal(&'static str),
    Timeout,
}

pub fn run(report: &mut Report, ctx: &Ctx) {
    let paths = [
        ("r11-normal-exit", End::Prompt("true")),
        ("r11-agent-crash", End::Prompt("kill -SEGV $$")),
        ("r11-ctrl-c", End::Signal("INT")),
        ("r11-sigterm", End::Signal("TERM")),
        ("r11-sighup", End::Signal("HUP")),
        ("r11-sigkill-then-cleanup", End::Signal("KILL")),
        ("r11-timeout", End::Timeout),
    ];
    for (case, end) in paths {
        let h = ctx.home(&format!("esc-{}", &case[4..]));
        let state = h.bottle_home().join("state");
        let script = match end {
            End::Prompt(p) => p,
            End::Signal(_) | End::Timeout => "sleep 300",
        };
        let mut args = vec!["start", &h.agent, "--yes", "--prompt", script];
        if let End::Timeout = end {
            args.extend(["--timeout", "5s"]);
        }
        let running = match spawn_up(ctx.cli(&h, &args)) {
            Ok(r) => r,
            Err(e) => {
                report.fail(case, 11, &e);
                continue;
            }
        };
        let mut note = String::new();
        if let End::Signal(sig) = end {
            let up = leftovers(&h.run);
            Command::new("kill")
                .args([&format!("-{sig}"), &running.child.id().to_string()])
                .status()
                .unwrap();
            note = format!("{} objects while up", up.len());
        }
        let (_out, code, stderr) = running.finish(Duration::from_secs(120));
        if case == "r11-sigkill-then-cleanup" {
            let left = leftovers(&h.run);
            let o = ctx.cli(&h, &["cleanup", "-y"]).output().unwrap();
            note += &format!(
                "; SIGKILL left {} objects; cleanup: {}",
                left.len(),
                String::from_utf8_lossy(&o.stderr).trim()
            );
            if left.is_empty() {
                report.fail(
                    case,
                    11,
                    &format!("SIGKILL should leave the bottle for cleanup to find: {note}"),
                );
                continue;
            }
        }
        let left = leftovers(&h.run);
        let state_left: Vec<String> = std::fs::read_dir(&state)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.path().display().to_string())
                    .collect()
            })
            .unwrap_or_default();
        let timed_out = stderr.contains("ran for its `--timeout` of 5s") && code == Some(124);
        if let End::Timeout = end {
            note += &format!("; ended by --timeout with code 124: {timed_out} ({code:?})");
        }
        let ok =
            left.is_empty() && state_left.is_empty() && (timed_out || !matches!(end, End::Timeout));
        let mut detail = format!("left by label: {left:?}; state: {state_left:?}; {note}");
        if !ok {
            detail += &format!("\n{stderr}");
        }
        report.check(case, 11, ok, &detail);
    }
}
