//! Audit events: one JSON line per decision, to stdout, a file, or memory.
//!
//! Events carry names, reasons and sizes, never values: the path is logged
//! without its query (queries carry tokens), and anything DLP flagged is
//! logged redacted.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use crate::config::AuditTarget;
use crate::error::{Deny, Error};
use crate::limits::REFUSAL_EVENTS_PER_SECOND;

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
    /// Refusals over the rate limit only: how many of this reason went
    /// unwritten (see [`Audit`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
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
            count: None,
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
///
/// Events that cost the agent nothing are rate-limited: it chooses how
/// many there are (a flood of refused DNS queries, `/health` requests or
/// CONNECTs that go nowhere), and the log it fills is rotated at a bound,
/// so without a limit a flood would push the earlier events (a push, a DLP
/// refusal) out before teardown saves them. Past
/// [`REFUSAL_EVENTS_PER_SECOND`] events of one kind (`dns`, `connect`,
/// `http`, ...) and reason (`no-route`, `dlp`, ...) in a second, such
/// events are counted instead of written,
/// and once a second each count is written as one `internal` event (`rule`
/// `rate-limit:<kind>`, the events' `decision` and `reason`, `count`);
/// [`Audit::flush`] writes what is left at shutdown. The budget is per
/// kind and reason so that a flood of one (junk DNS queries, refusals for
/// no route) does not turn the refusals of another (SSRF probes, a DLP
/// block) into a bare count. Never held back:
/// findings that let data through (`log`, `redact`), and allowed requests
/// (each reached an upstream) — see [`limited`].
#[derive(Clone)]
pub struct Audit {
    sink: Arc<Sink>,
    refusals: Arc<Mutex<Refusals>>,
    /// Told when a line could not be written ([`Audit::lost`]).
    lost: Arc<tokio::sync::Notify>,
}

type Key = (&'static str, &'static str, &'static str);

/// Whether `event` counts against the rate limit: refusals (DLP refusals
/// too: the agent makes one at will by sending a key-shaped string, and
/// nothing left), the proxy's own answers (`/health`, `/ca.pem`, whatever
/// bytes they carry) and CONNECTs that carried nothing (an intercepted
/// tunnel's event is written when it opens; what goes through it has
/// events of its own). Allowed requests that reached an upstream, findings
/// `log` or `redact` let through, and a tunnel's event that counts bytes
/// (a passthrough tunnel's only record, written when it closes) are always
/// written: a flood of refusals beside them must not turn them into a
/// bare count.
fn limited(event: &Event) -> bool {
    if event.kind == "internal" {
        return true;
    }
    if event.decision != "block" && (event.reason == Some(Deny::Dlp.as_str()) || event.bytes > 0) {
        return false;
    }
    event.decision == "block" || event.kind == "connect"
}

/// Events written in the current second, and those counted instead.
struct Refusals {
    /// Events of one kind and reason written a second.
    limit: u32,
    window: Instant,
    /// Events written this second, by kind and reason (a few dozen at
    /// most: both are from fixed lists).
    written: Vec<((&'static str, &'static str), u32)>,
    /// (kind, decision, reason) → events not written.
    held: BTreeMap<Key, u64>,
}

impl Refusals {
    fn new(limit: u32) -> Self {
        Self {
            limit,
            window: Instant::now(),
            written: Vec::new(),
            held: BTreeMap::new(),
        }
    }

    /// A new second starts (or, with `force`, the log ends): the counts
    /// of the last one, to be written.
    fn roll(&mut self, now: Instant, force: bool) -> BTreeMap<Key, u64> {
        if !force && now.duration_since(self.window) < Duration::from_secs(1) {
            return BTreeMap::new();
        }
        self.window = now;
        self.written.clear();
        std::mem::take(&mut self.held)
    }
}

/// The event that stands for `n` events of `kind`, `decision` and
/// `reason` not written.
fn held_event((kind, decision, reason): Key, n: u64) -> Event {
    let mut e = Event::new("internal", decision);
    e.reason = (!reason.is_empty()).then_some(reason);
    e.rule = Some(format!("rate-limit:{kind}"));
    e.count = Some(n);
    e
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
            return Ok((Audit::with_sink(Sink::Off), None));
        }
        Ok(match target {
            AuditTarget::Stdout => (Audit::with_sink(Sink::Stdout), None),
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
                (Audit::with_sink(Sink::File(Mutex::new(file))), None)
            }
            AuditTarget::Memory => {
                let log = MemoryLog::default();
                (Audit::with_sink(Sink::Memory(log.0.clone())), Some(log))
            }
        })
    }

    fn with_sink(sink: Sink) -> Self {
        let audit = Audit {
            sink: Arc::new(sink),
            refusals: Arc::new(Mutex::new(Refusals::new(REFUSAL_EVENTS_PER_SECOND))),
            lost: Arc::new(tokio::sync::Notify::new()),
        };
        audit.flush_every_second();
        audit
    }

    /// Returns once a line could not be written (a closed stdout, a full
    /// disk). Every decision is an event, so a proxy whose log is gone
    /// must stop rather than forward unrecorded: the sidecar waits on
    /// this and stops. Once only.
    pub async fn lost(&self) {
        self.lost.notified().await;
    }

    /// Says a line of another part (the git gate's) could not be written:
    /// the same as one of the proxy's own ([`Audit::lost`]).
    pub fn mark_lost(&self) {
        // A stored permit: a waiter that comes later still returns.
        self.lost.notify_one();
    }

    /// At most `n` refusals written a second (tests use small numbers).
    pub fn limit_refusals(self, n: u32) -> Self {
        if let Ok(mut r) = self.refusals.lock() {
            r.limit = n;
        }
        self
    }

    /// Writes the counts of refusals held back once their second is over,
    /// also when no other event comes to do it. The task ends with the
    /// last clone of this audit log. Outside a runtime (a test building a
    /// config) nothing is spawned: counts are then written with the next
    /// event.
    fn flush_every_second(&self) {
        if matches!(*self.sink, Sink::Off) {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let sink: Weak<Sink> = Arc::downgrade(&self.sink);
        let refusals = Arc::downgrade(&self.refusals);
        let lost = self.lost.clone();
        rt.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let (Some(sink), Some(refusals)) = (sink.upgrade(), refusals.upgrade()) else {
                    return;
                };
                let lost = lost.clone();
                Audit {
                    sink,
                    refusals,
                    lost,
                }
                .write_held(false);
            }
        });
    }

    /// Writes the counts of a second that is over (all of them with
    /// `force`).
    fn write_held(&self, force: bool) {
        let held = match self.refusals.lock() {
            Ok(mut r) => r.roll(Instant::now(), force),
            Err(_) => return,
        };
        for (key, n) in held {
            self.write(&held_event(key, n));
        }
    }

    /// Writes every count still held: call when the log ends (shutdown),
    /// or the last second of a flood goes uncounted.
    pub fn flush(&self) {
        self.write_held(true);
    }

    /// True when `event` is over this second's limit: counted, not to be
    /// written.
    fn held_back(&self, event: &Event) -> bool {
        if !limited(event) {
            return false;
        }
        // One lock: the last second's counts are taken, and this event
        // judged, together; the counts are written after it is released.
        let (held_back, last_second) = {
            let Ok(mut r) = self.refusals.lock() else {
                return false;
            };
            let last_second = r.roll(Instant::now(), false);
            let limit = r.limit;
            let budget = (event.kind, event.reason.unwrap_or(""));
            let at = match r.written.iter().position(|(k, _)| *k == budget) {
                Some(at) => at,
                None => {
                    r.written.push((budget, 0));
                    r.written.len() - 1
                }
            };
            let held_back = r.written[at].1 >= limit;
            if held_back {
                *r.held
                    .entry((event.kind, event.decision, event.reason.unwrap_or("")))
                    .or_default() += 1;
            } else {
                r.written[at].1 += 1;
            }
            (held_back, last_second)
        };
        for (key, n) in last_second {
            self.write(&held_event(key, n));
        }
        held_back
    }

    /// Whether events are written at all (`log: off` writes none).
    pub fn enabled(&self) -> bool {
        !matches!(*self.sink, Sink::Off)
    }

    /// Writes one event, unless it is a refusal over the rate limit. A
    /// failing sink must not take the proxy down, so write errors are
    /// reported through tracing and otherwise ignored.
    pub fn emit(&self, event: &Event) {
        if matches!(*self.sink, Sink::Off) || self.held_back(event) {
            return;
        }
        self.write(event);
    }

    /// [`Audit::emit`], with the costly part of the event (a name to
    /// redact) made by `finish` only when the event is written: a flood
    /// of refusals past the limit is counted without a DLP pass each.
    pub fn emit_finished(&self, mut event: Event, finish: impl FnOnce(&mut Event)) {
        if matches!(*self.sink, Sink::Off) || self.held_back(&event) {
            return;
        }
        finish(&mut event);
        self.write(&event);
    }

    fn write(&self, event: &Event) {
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
                    self.mark_lost();
                }
            }
            Sink::File(f) => {
                line.push('\n');
                if let Ok(mut f) = f.lock()
                    && f.write_all(line.as_bytes()).is_err()
                {
                    self.mark_lost();
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

    /// Attack: a flood of refusals to rotate earlier events out of the
    /// log, or to hide one kind of refusal among another. Past the limit of
    /// their kind they are counted, and the count is written.
    #[test]
    fn refusals_over_the_limit_are_counted_not_written() {
        let (audit, log) = Audit::open(&AuditTarget::Memory, true).unwrap();
        let audit = audit.limit_refusals(3);
        let log = log.unwrap();
        audit.emit(&Event::new("git-push", "allow"));
        // A DNS flood does not use up the budget of requests.
        for _ in 0..10 {
            audit.emit(&Event::deny("dns", Deny::DnsRefused));
        }
        for _ in 0..5 {
            audit.emit(&Event::deny("http", Deny::NoRoute));
        }
        // Allowed requests are never held back.
        for _ in 0..5 {
            audit.emit(&Event::new("http", "allow"));
        }
        // DLP refusals are (the agent makes them at will), on a budget of
        // their own: the refusals for no route did not use it up.
        for _ in 0..4 {
            let mut dlp = Event::deny("http", Deny::Dlp);
            dlp.rule = Some("known-secret".into());
            audit.emit(&dlp);
        }
        // A finding `log` let through is never held back: data left.
        let mut logged = Event::new("http", "allow");
        logged.reason = Some(Deny::Dlp.as_str());
        audit.emit(&logged);
        // The proxy's own answers are, bytes or not (a `/health` flood).
        for _ in 0..4 {
            let mut health = Event::new("internal", "allow");
            health.bytes = 3;
            audit.emit(&health);
        }
        // A passthrough tunnel's only record is never held back.
        let mut tunnel = Event::new("connect", "allow");
        tunnel.bytes = 10;
        audit.emit(&tunnel);
        let kinds = |log: &MemoryLog| -> Vec<String> {
            log.events()
                .iter()
                .map(|e| format!("{} {}", e["kind"], e["decision"]))
                .collect()
        };
        assert_eq!(
            log.events().len(),
            1 + 3 + 3 + 5 + 3 + 1 + 3 + 1,
            "{:?}",
            kinds(&log)
        );
        // The second is over: the next event writes the counts first.
        if let Ok(mut r) = audit.refusals.lock() {
            r.window -= Duration::from_secs(2);
        }
        audit.emit(&Event::deny("dns", Deny::DnsRefused));
        let events = log.events();
        let held: Vec<_> = events
            .iter()
            .filter(|e| {
                e["rule"]
                    .as_str()
                    .is_some_and(|r| r.starts_with("rate-limit:"))
            })
            .map(|e| {
                (
                    e["rule"].clone(),
                    e["decision"].clone(),
                    e["reason"].clone(),
                    e["count"].clone(),
                )
            })
            .collect();
        assert_eq!(
            held,
            vec![
                (
                    "rate-limit:dns".into(),
                    "block".into(),
                    "dns-refused".into(),
                    7.into()
                ),
                (
                    "rate-limit:http".into(),
                    "block".into(),
                    "dlp".into(),
                    1.into()
                ),
                (
                    "rate-limit:http".into(),
                    "block".into(),
                    "no-route".into(),
                    2.into()
                ),
                (
                    "rate-limit:internal".into(),
                    "allow".into(),
                    serde_json::Value::Null,
                    1.into()
                ),
            ]
        );
        assert_eq!(events.last().unwrap()["kind"], "dns");
    }

    /// The counts of the last second are written when the log ends, not
    /// lost with the process.
    #[test]
    fn flush_writes_what_is_held() {
        let (audit, log) = Audit::open(&AuditTarget::Memory, true).unwrap();
        let audit = audit.limit_refusals(1);
        let log = log.unwrap();
        for _ in 0..4 {
            audit.emit(&Event::deny("connect", Deny::NoRoute));
        }
        assert_eq!(log.events().len(), 1);
        audit.flush();
        let events = log.events();
        assert_eq!(events.len(), 2);
        assert_eq!(events[1]["count"], 3);
        assert_eq!(events[1]["rule"], "rate-limit:connect");
        audit.flush();
        assert_eq!(log.events().len(), 2, "nothing held twice");
    }

    /// The costly part of an event is made for the events written only.
    #[test]
    fn events_past_the_limit_are_not_finished() {
        let (audit, log) = Audit::open(&AuditTarget::Memory, true).unwrap();
        let audit = audit.limit_refusals(2);
        let log = log.unwrap();
        let mut finished = 0;
        for _ in 0..10 {
            audit.emit_finished(Event::deny("dns", Deny::DnsRefused), |e| {
                finished += 1;
                e.host = Some("shown.test".into());
            });
        }
        assert_eq!(finished, 2);
        let events = log.events();
        assert_eq!(events.len(), 2);
        assert_eq!(events[1]["host"], "shown.test");
    }

    /// Attack: CONNECTs that carry nothing fill the second's budget while
    /// a passthrough tunnel that carried data closes; its event (host and
    /// bytes, the only record of it) is still written.
    #[test]
    fn a_tunnel_that_carried_bytes_is_written_past_the_limit() {
        let (audit, log) = Audit::open(&AuditTarget::Memory, true).unwrap();
        let audit = audit.limit_refusals(1);
        let log = log.unwrap();
        audit.emit(&Event::new("connect", "allow"));
        let mut tunnel = Event::new("connect", "allow");
        tunnel.host = Some("pass.test".into());
        tunnel.bytes = 4096;
        audit.emit(&tunnel);
        // One that carried nothing is counted as before.
        audit.emit(&Event::new("connect", "allow"));
        let events = log.events();
        assert_eq!(events.len(), 2, "{events:?}");
        assert_eq!(events[1]["host"], "pass.test");
        assert_eq!(events[1]["bytes"], 4096);
    }

    /// A log that cannot be written is reported, so the sidecar stops
    /// instead of forwarding with no record.
    #[tokio::test]
    async fn a_failed_write_is_reported() {
        let (audit, _) = Audit::open(&AuditTarget::File("/dev/full".into()), true).unwrap();
        let lost = audit.clone();
        let waiter = tokio::spawn(async move { lost.lost().await });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        audit.emit(&Event::new("http", "allow"));
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("the failed write was reported")
            .unwrap();
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
