//! The pre-receive hook as its own small binary, for tests and for running
//! the gate outside the `claude-bottle` binary (which calls the same
//! [`bottle_gitgate::hook::main`] from `claude-bottle sidecar hook
//! pre-receive`).

fn main() {
    std::process::exit(bottle_gitgate::hook::main());
}
