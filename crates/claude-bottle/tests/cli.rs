//! The real `claude-bottle` binary, run with a temporary HOME and project.
//! One test binary, one module per theme (as ripgrep does).

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

mod cli {
    pub mod util;

    mod errors;
    mod help;
    mod list_info_init;
    mod sidecar;
    mod start;
}
