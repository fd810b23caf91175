//! Audit events: one JSON line per decision, to stdout, a file, or memory.
//!
//! Events carry names, reasons and sizes, never values: the path is logged
//! without its query (queries carry tokens), and anything DLP flagged is
//! logged redacted.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::config::AuditTarget;
use crate::error::{Deny, Error};

/// One decision.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Event {
    pub ts: String,
    pub kind: &'static str,
    pub decision: &'static str,
    pub reason: Option<&'static str>,
    pub rule: Option<String>,
    pub host: Option<String>,
    pub method: Option<String>,
    pub path: Option<String>,
    pub status: Option<u16>,
    pub bytes: u64,
    pub ms: u64,
    /// `log: full` only: the start of the request body, secrets redacted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_body: Option<String>,
    /// `log: full` only: the start of the response body, secrets redacted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_body: Option<String>,
}

impl Event {
    pub fn new(kind: &'static str, decision: &'static str) -> Self {
        Event {
            // Filled when emitted: no clock work for events nobody writes.
            ts: String::new(),
            kind,
            decision,
            reason: None,
            rule: None,
            host: None,
            method: None,
            path: None,
            status: None,
            bytes: 0,
            ms: 0,
            request_body: None,
            response_body: None,
        }
    }

    pub fn deny(kind: &'static str, deny: Deny) -> Self {
        let mut e = Event::new(kind, "block");
        e.reason = Some(deny.as_str());
        e
    }
}

enum Sink {
    Off,
    Stdout,
    File(Mutex<std::fs::File>),
    Memory(Arc<Mutex<Vec<String>>>),
}

/// Where events go. Cheap to clone.
#[derive(Clone)]
pub struct Audit {
    sink: Arc<Sink>,
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Audit")
    }
}

/// The lines an in-memory audit log received.
#[derive(Clone, Default, Debug)]
pub struct MemoryLog(Arc<Mutex<Vec<String>>>);

impl MemoryLog {
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().map(|v| v.clone()).unwrap_or_default()
    }

    pub fn events(&self) -> Vec<serde_json::Value> {
        self.lines()
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Audit {
    pub fn open(target: &AuditTarget, enabled: bool) -> Result<(Self, Option<MemoryLog>), Error> {
        if !enabled {
            return Ok((
                Audit {
                    sink: Arc::new(Sink::Off),
                },
                None,
            ));
        }
        Ok(match target {
            AuditTarget::Stdout => (
                Audit {
                    sink: Arc::new(Sink::Stdout),
                },
                None,
            ),
            AuditTarget::File(path) => {
                let mut opts = std::fs::OpenOptions::new();
                opts.create(true).append(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    opts.mode(0o600);
                }
                let file = opts.open(path).map_err(|source| Error::Read {
                    path: path.clone(),
                    source,
                })?;
                (
                    Audit {
                        sink: Arc::new(Sink::File(Mutex::new(file))),
                    },
                    None,
                )
            }
            AuditTarget::Memory => {
                let log = MemoryLog::default();
                (
                    Audit {
                        sink: Arc::new(Sink::Memory(log.0.clone())),
                    },
                    Some(log),
                )
            }
        })
    }

    /// Whether events are written at all (`log: off` writes none).
    pub fn enabled(&self) -> bool {
        !matches!(*self.sink, Sink::Off)
    }

    /// Writes one event. A failing sink must not take the proxy down, so
    /// write errors are reported through tracing and otherwise ignored.
    pub fn emit(&self, event: &Event) {
        if matches!(*self.sink, Sink::Off) {
            return;
        }
        let stamped;
        let event = if event.ts.is_empty() {
            stamped = Event {
                ts: rfc3339_now(),
                ..event.clone()
            };
            &stamped
        } else {
            event
        };
        let Ok(mut line) = serde_json::to_string(event) else {
            return;
        };
        match &*self.sink {
            Sink::Off => {}
            Sink::Stdout => {
                line.push('\n');
                let mut out = std::io::stdout().lock();
                if out
                    .write_all(line.as_bytes())
                    .and_then(|()| out.flush())
                    .is_err()
                {
                    tracing::warn!("audit: stdout write failed");
                }
            }
            Sink::File(f) => {
                line.push('\n');
                if let Ok(mut f) = f.lock()
                    && f.write_all(line.as_bytes()).is_err()
                {
                    tracing::warn!("audit: file write failed");
                }
            }
            Sink::Memory(v) => {
                if let Ok(mut v) = v.lock() {
                    v.push(line);
                }
            }
        }
    }
}

/// Milliseconds since a start, saturating.
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `2026-11-27T10:48:16.123Z`
pub fn rfc3339_now() -> String {
    rfc3339(SystemTime::now())
}

pub fn rfc3339(t: SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(RFC3339_MS)
        .unwrap_or_default()
}

/// UTC with milliseconds, the one shape of every audit timestamp.
pub const RFC3339_MS: &[time::format_description::BorrowedFormatItem<'static>] = time::macros::format_description!(
    "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
);

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn timestamps_are_rfc3339_utc_millis() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_795_776_496_123);
        assert_eq!(rfc3339(t), "2026-11-27T10:48:16.123Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn events_serialise_with_the_spec_fields() {
        let (audit, log) = Audit::open(&AuditTarget::Memory, true).unwrap();
        let mut e = Event::deny("connect", Deny::NoRoute);
        e.host = Some("evil.test".into());
        e.status = Some(403);
        audit.emit(&e);
        let v = &log.unwrap().events()[0];
        assert_eq!(v["kind"], "connect");
        assert_eq!(v["decision"], "block");
        assert_eq!(v["reason"], "no-route");
        assert_eq!(v["status"], 403);
        assert!(v["ts"].as_str().unwrap().ends_with('Z'));
    }

    /// Every field `sidecar.md` lists is in every event, `null` when it
    /// does not apply, so a reader can rely on the keys being there.
    #[test]
    fn the_spec_fields_are_there_even_when_empty() {
        let line = serde_json::to_value(Event::new("http", "allow")).unwrap();
        let keys = [
            "ts", "kind", "decision", "reason", "rule", "host", "method", "path", "status",
            "bytes", "ms",
        ];
        for key in keys {
            assert!(line.get(key).is_some(), "`{key}` missing: {line}");
        }
        assert!(
            line["reason"].is_null() && line["status"].is_null(),
            "{line}"
        );
        assert!(line.get("request_body").is_none(), "only with `log: full`");
    }

    #[test]
    fn file_sink_appends_lines_private() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.jsonl");
        let (audit, _) = Audit::open(&AuditTarget::File(p.clone()), true).unwrap();
        audit.emit(&Event::new("http", "allow"));
        audit.emit(&Event::new("http", "allow"));
        assert_eq!(std::fs::read_to_string(&p).unwrap().lines().count(), 2);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
    }
}
