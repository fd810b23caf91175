//! The escape suite (security.md): real bottles on this machine's engine,
//! driven through the real CLI, attacked from inside by
//! `tests/escape/attacks.py` (the stand-in agent's prompt), and watched from
//! outside (the fake world's HTTP and DNS logs, a listener on every host
//! address, a packet capture of DNS on the host's interfaces).
//!
//! Not a libtest binary: it reports every case as passed, failed or
//! skipped-with-reason and ends with one summary line, as the issue asks.
//! `cargo test` runs it with the other tests; it fails when any case
//! fails. Without an engine it skips with a message, or fails under
//! `CLAUDE_BOTTLE_REQUIRE_DOCKER=1`.

// Test code: a failed unwrap is a failed suite.
#![allow(clippy::unwrap_used)]
// A test printing its progress may panic on a closed stderr; the CLI may not.
#![allow(clippy::disallowed_macros)]

#[path = "engine/bottle.rs"]
#[allow(dead_code)]
mod bottle;
#[path = "engine/world.rs"]
#[allow(dead_code)]
mod world;

mod escape {
    pub mod attacker;
    pub mod exits;
    pub mod failclosed;
    pub mod observe;
    pub mod report;
}

use escape::report::Report;

fn main() {
    let started = std::time::Instant::now();
    let mut report = Report::default();
    if let Err(why) = ready() {
        let required = std::env::var("CLAUDE_BOTTLE_REQUIRE_DOCKER").as_deref() == Ok("1");
        if required {
            eprintln!("escape suite: {why}, and CLAUDE_BOTTLE_REQUIRE_DOCKER=1");
            std::process::exit(1);
        }
        eprintln!("SKIPPED escape suite: {why}");
        return;
    }
    // `cargo test -- --list` and filters: nothing to list, run everything.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    // ESCAPE_ONLY=attacker|failclosed|exits runs one part (development).
    let only = std::env::var("ESCAPE_ONLY").unwrap_or_default();
    let part = |name: &str| only.is_empty() || only == name;
    let ctx = escape::attacker::Ctx::new(&mut report);
    if part("attacker") {
        escape::attacker::run(&mut report, &ctx);
    }
    if part("failclosed") {
        escape::failclosed::run(&mut report, &ctx);
    }
    if part("exits") {
        escape::exits::run(&mut report, &ctx);
    }
    drop(ctx);
    let failed = report.summary(started.elapsed());
    std::process::exit(if failed { 1 } else { 0 });
}

/// Docker answers, the test base images exist and the binary is static.
fn ready() -> Result<(), String> {
    let ok = |args: &[&str]| {
        std::process::Command::new("docker")
            .args(args)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !ok(&["version"]) {
        return Err("no Docker engine".into());
    }
    for image in [bottle::AGENT_BASE, "claude-bottle-test/base:bookworm"] {
        if !ok(&["image", "inspect", image]) {
            return Err(format!(
                "the test image {image} is missing (run scripts/test-base-image)"
            ));
        }
    }
    let ldd = std::process::Command::new("ldd")
        .arg(env!("CARGO_BIN_EXE_claude-bottle"))
        .output()
        .map_err(|e| format!("ldd: {e}"))?;
    let text =
        String::from_utf8_lossy(&ldd.stdout).to_string() + &String::from_utf8_lossy(&ldd.stderr);
    if text.contains("=>") || text.contains("ld-linux") {
        return Err("the binary under test is dynamically linked (run scripts/test)".into());
    }
    Ok(())
}
