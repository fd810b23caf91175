//! Engine tests: the real binary against this machine's Docker Engine.
//! Without an engine they skip with a visible message, or fail under
//! `CLAUDE_BOTTLE_REQUIRE_DOCKER=1`. Images come from
//! `scripts/test-base-image` (Debian packages, no registry).

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]
// A test printing its progress may panic on a closed stderr; the CLI may not.
#![allow(clippy::disallowed_macros)]

/// A skip message the test harness shows: it captures `eprintln!`, not a
/// write to the stderr handle (testing.md: skipped with a visible message).
macro_rules! skipped {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

mod engine {
    mod attach;
    mod bottle;
    mod build;
    mod cleanup;
    mod selftest;
    mod shell_only;
    mod start;
    mod teardown;
    #[allow(dead_code)] // some helpers serve only the escape suite
    pub mod world;

    /// Tests that build or rebuild the shared `claude-bottle/*:<version>`
    /// images (explicitly, or through `start` finding them stale) take this
    /// lock, so one test never checks an image another is rebuilding.
    pub fn image_lock() -> std::sync::MutexGuard<'static, ()> {
        static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
        LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Skip `test` with a visible reason, or fail under
    /// `CLAUDE_BOTTLE_REQUIRE_DOCKER=1`. Returns false, for `if !ready {}`.
    pub fn skip(test: &str, why: &str) -> bool {
        let required = std::env::var("CLAUDE_BOTTLE_REQUIRE_DOCKER").as_deref() == Ok("1");
        assert!(
            !required,
            "{test}: {why}, and CLAUDE_BOTTLE_REQUIRE_DOCKER=1"
        );
        skipped!("SKIPPED {test}: {why}");
        false
    }

    fn docker_succeeds(args: &[&str]) -> bool {
        std::process::Command::new("docker")
            .args(args)
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// Docker answers.
    pub fn docker_ok(test: &str) -> bool {
        docker_succeeds(&["version"]) || skip(test, "no Docker engine")
    }

    /// Docker answers, the test base images exist (scripts/test-base-image),
    /// and the binary under test is static, as the sidecar image needs.
    pub fn images_ready(test: &str) -> bool {
        if !docker_ok(test) {
            return false;
        }
        let bases = [
            "claude-bottle-test/base:bookworm",
            "claude-bottle-test/agent-base:bookworm",
        ];
        if !bases
            .iter()
            .all(|i| docker_succeeds(&["image", "inspect", i]))
        {
            return skip(
                test,
                "the test base images are missing (run scripts/test-base-image)",
            );
        }
        let ldd = std::process::Command::new("ldd")
            .arg(env!("CARGO_BIN_EXE_claude-bottle"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&ldd.stdout).to_string()
            + &String::from_utf8_lossy(&ldd.stderr);
        if text.contains("=>") || text.contains("ld-linux") {
            return skip(
                test,
                "the binary under test is dynamically linked (run scripts/test)",
            );
        }
        true
    }
}
