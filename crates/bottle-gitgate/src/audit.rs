//! Audit events of the gate: one JSON object per decision.
//!
//! The shape matches the sidecar's other events (`ts`, `kind`, `decision`,
//! `reason`, `rule`, `host`, `method`, `path`, `status`, `bytes`, `ms`) with
//! git fields added (`repo`, `refs`, `commits`, `findings`, `message`).
//! Nothing here holds a secret value: findings are redacted by the DLP
//! engine and messages are built by the gate, never copied from upstream
//! stderr unfiltered.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::policy::RefUpdate;

/// One redacted finding, as reported to the agent and the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FindingReport {
    pub commit: String,
    /// The file path, or `None` for the commit message.
    pub path: Option<String>,
    /// 0 for a binary file, which has no lines: see `offset`.
    pub line: u64,
    /// For a binary file, the byte offset of the secret in the file
    /// (counted from 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// Where the secret was when it is not in a file's content or the
    /// commit message: `commit header` (author, committer, signature),
    /// `file name`, `ref name`, `tag`, `tree entry name` (a name in a
    /// tree, the tree's id in `commit`), `submodule id`. The path is then `None`, so a secret
    /// in a file name is never written out whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part: Option<String>,
    pub rule: String,
    pub redacted: String,
}

/// Where a push's time went inside the pre-receive hook, in milliseconds
/// (wall clock unless noted). The receive of the pack into the mirror is
/// the event's `ms` minus `hook_ms`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PushTimings {
    /// The whole hook: policy, scan and upstream push.
    pub hook_ms: u64,
    /// Building the DLP engine.
    pub engine_ms: u64,
    /// `git rev-list`: the commits new to the mirror.
    pub rev_list_ms: u64,
    /// Commit messages: `git cat-file --batch` and their scan.
    pub messages_ms: u64,
    /// Added lines: git's extraction and the DLP scan, which overlap.
    pub diffs_ms: u64,
    /// Of `diffs_ms`: time the DLP scanner threads were busy (CPU-bound),
    /// summed over the threads, plus the engine's time on tree entry names.
    pub dlp_ms: u64,
    /// Bytes of added lines the DLP engine scanned.
    pub dlp_bytes: u64,
    /// Binary files (added or changed) searched for the known secrets, their
    /// bytes, and the time the search took (CPU-bound, summed over threads;
    /// reading the blobs is in `diffs_ms`). All 0 when the bottle has no
    /// known secret.
    pub binary_files: u64,
    pub binary_bytes: u64,
    pub binary_ms: u64,
    /// Trees new in the push whose entry names were scanned, their
    /// entries, and the whole tree scan (`git rev-list --objects`, reading
    /// and scanning; it overlaps `diffs_ms`).
    pub trees: u64,
    pub tree_entries: u64,
    pub trees_ms: u64,
    /// The upstream push.
    pub upstream_ms: u64,
}

/// One decision.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Event {
    pub ts: String,
    /// `git-fetch` or `git-push`.
    pub kind: &'static str,
    /// `allow` or `block`.
    pub decision: &'static str,
    pub reason: Option<String>,
    pub rule: Option<String>,
    /// The upstream host.
    pub host: Option<String>,
    pub repo: String,
    pub method: Option<String>,
    pub path: Option<String>,
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub refs: Vec<RefUpdate>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commits: Option<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<FindingReport>,
    /// A gate-written explanation (policy refusal, upstream error summary).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// For pushes: time in the DLP scan and in the upstream push.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scan_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_ms: Option<u64>,
    /// For pushes: where the hook's time went.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timings: Option<PushTimings>,
    pub bytes: u64,
    pub ms: u64,
    /// Refusals over the rate limit only: how many were not written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
}

impl Event {
    pub fn new(kind: &'static str, decision: &'static str, repo: &str) -> Self {
        Event {
            ts: String::new(),
            kind,
            decision,
            reason: None,
            rule: None,
            host: None,
            repo: repo.to_string(),
            method: None,
            path: None,
            status: None,
            refs: Vec::new(),
            commits: None,
            findings: Vec::new(),
            message: None,
            scan_ms: None,
            upstream_ms: None,
            timings: None,
            bytes: 0,
            ms: 0,
            count: None,
        }
    }

    /// The JSON line (without newline), stamping `ts` if unset.
    pub fn to_line(&self) -> String {
        let mut e = self.clone();
        if e.ts.is_empty() {
            e.ts = now_rfc3339_ms();
        }
        serde_json::to_string(&e).unwrap_or_else(|_| String::from("{}"))
    }
}

/// Where events go. The sidecar passes its own log; tests use [`Memory`].
pub trait AuditSink: Send + Sync {
    fn record(&self, event: Event);
}

/// JSON lines to any writer (stdout, a file).
pub struct JsonLines<W: Write + Send>(pub Mutex<W>);

impl<W: Write + Send> JsonLines<W> {
    pub fn new(w: W) -> Self {
        JsonLines(Mutex::new(w))
    }
}

impl<W: Write + Send> AuditSink for JsonLines<W> {
    fn record(&self, event: Event) {
        let line = event.to_line();
        if let Ok(mut w) = self.0.lock() {
            // Errors are the caller's to notice: the sidecar gives the
            // gate a sink of its own that stops it when a line is lost.
            let _ = writeln!(w, "{line}");
            let _ = w.flush();
        }
    }
}

/// Keeps events in memory (tests, and the sidecar's `logs` buffer).
#[derive(Clone, Default)]
pub struct Memory(pub Arc<Mutex<Vec<Event>>>);

impl Memory {
    pub fn events(&self) -> Vec<Event> {
        self.0.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

impl AuditSink for Memory {
    fn record(&self, mut event: Event) {
        if event.ts.is_empty() {
            event.ts = now_rfc3339_ms();
        }
        if let Ok(mut v) = self.0.lock() {
            v.push(event);
        }
    }
}

/// Discards events.
pub struct Discard;

impl AuditSink for Discard {
    fn record(&self, _: Event) {}
}

/// `2026-11-27T11:16:53.123Z`.
pub fn now_rfc3339_ms() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format_rfc3339_ms(d.as_secs(), d.subsec_millis())
}

fn format_rfc3339_ms(secs: u64, ms: u32) -> String {
    let t = UNIX_EPOCH
        + std::time::Duration::from_secs(secs)
        + std::time::Duration::from_millis(ms.into());
    time::OffsetDateTime::from(t)
        .format(time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        ))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(format_rfc3339_ms(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_rfc3339_ms(1_795_778_213, 7),
            "2026-11-27T11:16:53.007Z"
        );
        assert_eq!(
            format_rfc3339_ms(951_782_400, 999),
            "2000-02-29T00:00:00.999Z"
        );
    }

    #[test]
    fn line_shape() {
        let mut e = Event::new("git-push", "block", "app");
        e.reason = Some("git-secret".into());
        let v: serde_json::Value = serde_json::from_str(&e.to_line()).unwrap_or_default();
        assert_eq!(v["kind"], "git-push");
        assert_eq!(v["decision"], "block");
        assert_eq!(v["reason"], "git-secret");
        assert!(v["ts"].as_str().is_some_and(|t| t.ends_with('Z')));
        // The fields `sidecar.md` lists are there, `null` when empty.
        for key in ["rule", "host", "method", "path", "status"] {
            assert!(v.get(key).is_some_and(|x| x.is_null()), "`{key}`: {v}");
        }
    }
}
