//! Engine tests: the real binary against this machine's Docker Engine.
//! Without an engine they skip with a visible message, or fail under
//! `CLAUDE_BOTTLE_REQUIRE_DOCKER=1`. Images come from
//! `scripts/test-base-image` (Debian packages, no registry).

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod engine {
    mod build;
    mod cleanup;
    mod start;

    /// Tests that build or rebuild the shared `claude-bottle/*:<version>`
    /// images (explicitly, or through `start` finding them stale) take this
    /// lock, so one test never checks an image another is rebuilding.
    pub fn image_lock() -> std::sync::MutexGuard<'static, ()> {
        static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
        LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Docker answers; else skip, or fail under `CLAUDE_BOTTLE_REQUIRE_DOCKER=1`.
    pub fn docker_ok(test: &str) -> bool {
        let ok = std::process::Command::new("docker")
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            let required = std::env::var("CLAUDE_BOTTLE_REQUIRE_DOCKER").as_deref() == Ok("1");
            assert!(
                !required,
                "{test}: no Docker engine, and CLAUDE_BOTTLE_REQUIRE_DOCKER=1"
            );
            eprintln!("SKIPPED {test}: no Docker engine");
        }
        ok
    }
}
