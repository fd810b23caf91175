//! Bounds on what a push may make the gate do. Pushed git data is hostile
//! input: every loop over it has a ceiling, and going over a ceiling refuses
//! the push (fail closed) instead of forwarding anything unscanned.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest pack a push may send (`receive.maxInputSize`).
    pub max_push_bytes: u64,
    /// Most commits new to the mirror in one push.
    pub max_commits: u64,
    /// A text file whose added lines in one commit exceed this refuses the
    /// push: it cannot be scanned within bounds. Binary files (a NUL byte in
    /// the first 8000 bytes, git's own test) are skipped by the rules
    /// whatever their size, and streamed through the known-secret search.
    pub max_text_blob: u64,
    /// Largest commit message scanned; a longer one refuses the push.
    pub max_message: u64,
    /// Seconds an upstream fetch or push may take.
    pub upstream_timeout_secs: u64,
    /// Refs in one push.
    pub max_refs: usize,
    /// Tree objects (folders) new to the mirror in one push: every one is
    /// read for its entry names. A tree object larger than `max_text_blob`
    /// refuses the push too.
    pub max_trees: u64,
    /// Distinct entry names and gitlink ids in all those trees together
    /// (an unchanged entry read again in another new tree is not counted).
    pub max_tree_entries: u64,
    /// Bytes those distinct names and ids take while the trees are read,
    /// each counted with [`crate::trees::ENTRY_OVERHEAD`] bytes of
    /// bookkeeping: git allows 4 KiB names, so the entry count alone
    /// would let a push of near-identical long names (they compress to a
    /// few dozen bytes each) hold gigabytes in the hook.
    pub max_tree_entry_bytes: u64,
    /// Client connections served at once; more wait in the listen backlog.
    /// The gate shares its process (and its file descriptors) with the
    /// egress proxy, so idle connections must not be able to use them up.
    pub max_connections: usize,
    /// Milliseconds a client has to send a request head, on a new
    /// connection and between requests of a kept-alive one; then the
    /// connection is closed.
    pub header_read_timeout_ms: u64,
    /// git children of the gate running at once (http-backend with
    /// everything under it, and mirror refreshes); more requests queue.
    pub max_git_processes: usize,
    /// Of those, how many fetches (upload-pack and its advertisement) may
    /// not take: they stay free for pushes and mirror refreshes, so fetches
    /// alone never hold every slot. Fetches always get at least one.
    pub git_processes_kept_for_pushes: usize,
    /// Milliseconds the output of a git child may wait for a client that
    /// takes none of it; then a fetch's child is killed with everything
    /// under it, a push's is left to finish with its output dropped (its
    /// hook may be pushing upstream), and the response is cut. A write to
    /// a client connection that waits twice this long fails and closes the
    /// connection, so its slot comes back too.
    pub response_stall_timeout_ms: u64,
    /// Seconds a request waits for its repository's lock (held by a push
    /// or a refresh) before it gives up with 503.
    pub repo_lock_wait_secs: u64,
    /// Seconds one request's git child may run before it is killed with
    /// everything under it (a client that trickles, a hung upstream inside
    /// the hook).
    pub request_timeout_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_push_bytes: 2 << 30,
            max_commits: 100_000,
            max_text_blob: 16 << 20,
            max_message: 1 << 20,
            upstream_timeout_secs: 300,
            max_refs: 1_000,
            max_trees: 1_000_000,
            max_tree_entries: 10_000_000,
            max_tree_entry_bytes: 256 << 20,
            max_connections: 256,
            header_read_timeout_ms: 10_000,
            max_git_processes: 8,
            git_processes_kept_for_pushes: 2,
            response_stall_timeout_ms: 60_000,
            repo_lock_wait_secs: 300,
            request_timeout_secs: 3_600,
        }
    }
}
