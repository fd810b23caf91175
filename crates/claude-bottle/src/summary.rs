//! Reading the sidecar's audit events: one readable line per event (`logs`),
//! and the short summary printed at teardown (requests allowed and refused
//! by host, DNS refusals, pushes, where the outbox and log went, and for
//! each refused host the route that would allow it). Pure: events in, text
//! out.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use bottle_docker::outbox;
use serde_json::Value;

/// Distinct hosts counted per table; the rest are counted as "other".
pub const MAX_HOSTS: usize = 500;
/// A host longer than a DNS name (with a port, escaped) is counted among
/// the others, not named: the log is read at teardown, and a host of a
/// megabyte would fill the summary (and its memory, 500 at a time).
const MAX_HOST_SHOWN: usize = 300;
/// Hosts named on a summary line; the rest are summed up as `+N more`.
const SHOWN_HOSTS: usize = 5;
/// Where refusals over the sidecar's rate limit are counted: their hosts
/// were not written.
const NOT_LOGGED: &str = "(not logged)";
/// Route hints printed; the rest are summed up.
const SHOWN_HINTS: usize = 5;

/// One audit event, as far as the CLI reads it. Every field is optional
/// but `kind` and `decision`: the sidecar's three writers (proxy, DNS,
/// gate) share them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    pub ts: String,
    pub kind: String,
    pub decision: String,
    pub reason: Option<String>,
    pub rule: Option<String>,
    pub host: Option<String>,
    pub method: Option<String>,
    pub path: Option<String>,
    pub status: Option<u64>,
    pub repo: Option<String>,
    pub message: Option<String>,
    /// Refusals over the sidecar's rate limit: how many one event stands for.
    pub count: Option<u64>,
}

/// Counts over a bottle's events, bounded in memory whatever the log holds.
#[derive(Debug, Default)]
pub struct Tally {
    allowed: Counts,
    refused: Counts,
    /// Allowed by a route but the upstream failed or timed out.
    failed: Counts,
    dns_refused: Counts,
    pushes_accepted: u64,
    pushes_refused: u64,
    /// Refused host → the first refusal's reason, method and path: what
    /// the route hint is built from.
    refusals: BTreeMap<String, Refusal>,
}

/// Where teardown put things, for the summary.
#[derive(Debug, Default)]
pub struct Saved {
    pub outbox: Option<PathBuf>,
    pub outbox_files: usize,
    /// The workspace was looked at (there was an agent container).
    pub outbox_checked: bool,
    pub log: Option<PathBuf>,
    /// The bottle's name, when known, for the route hints.
    pub bottle: Option<String>,
}

// === impl AuditEvent ===

impl AuditEvent {
    /// Parse one JSON line; `None` when it is not an event.
    pub fn parse(line: &str) -> Option<AuditEvent> {
        let v: Value = serde_json::from_str(line.trim()).ok()?;
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        Some(AuditEvent {
            ts: s("ts").unwrap_or_default(),
            kind: s("kind")?,
            decision: s("decision")?,
            reason: s("reason"),
            rule: s("rule"),
            host: s("host"),
            method: s("method"),
            path: s("path"),
            status: v.get("status").and_then(Value::as_u64),
            repo: s("repo"),
            message: s("message"),
            count: v.get("count").and_then(Value::as_u64),
        })
    }

    /// One line for `logs`: time, kind, decision, then what was asked
    /// (`METHOD host/path`, or the repo for git) and why.
    pub fn line(&self) -> String {
        // The sidecar writes these three, but the log is a file on the
        // host: escape them like every other field.
        let mut out = format!(
            "{} {:<9} {:<5}",
            printable(&self.ts),
            printable(&self.kind),
            printable(&self.decision)
        );
        let target = match (&self.host, &self.repo) {
            (_, Some(repo)) if self.kind.starts_with("git") => {
                format!("repo {}", printable(repo))
            }
            (Some(h), _) => format!(
                "{}{}",
                printable(h),
                printable(self.path.as_deref().unwrap_or(""))
            ),
            (None, _) => String::new(),
        };
        if let Some(m) = &self.method {
            let _ = write!(out, " {}", printable(m));
        }
        if !target.is_empty() {
            let _ = write!(out, " {target}");
        }
        if let Some(s) = self.status {
            let _ = write!(out, " {s}");
        }
        if let Some(r) = &self.reason {
            let _ = write!(out, " reason={}", printable(r));
        }
        if let Some(r) = &self.rule {
            let _ = write!(out, " rule={}", printable(r));
        }
        if let Some(n) = self.count {
            let _ = write!(out, " count={n}");
        }
        if let Some(m) = &self.message {
            let _ = write!(out, " ({})", printable(m));
        }
        out
    }
}

// === impl Tally ===

impl Tally {
    pub fn add(&mut self, e: &AuditEvent) {
        let host = e
            .host
            .as_deref()
            .map(printable)
            .unwrap_or_else(|| "-".into());
        let blocked = e.decision == "block";
        match e.kind.as_str() {
            "http" | "connect" | "reverse"
                if blocked && matches!(e.reason.as_deref(), Some("upstream-error" | "timeout")) =>
            {
                self.failed.add(&host);
            }
            "http" | "connect" | "reverse" if blocked => {
                self.refused.add(&host);
                if !self.refusals.contains_key(&host)
                    && self.refusals.len() < MAX_HOSTS
                    && host.len() <= MAX_HOST_SHOWN
                {
                    self.refusals.insert(
                        host,
                        Refusal {
                            reason: e.reason.clone().unwrap_or_default(),
                            method: e.method.as_deref().map(printable),
                            path: e.path.as_deref().map(printable),
                        },
                    );
                }
            }
            "http" | "connect" | "reverse" => self.allowed.add(&host),
            "dns" if blocked => self.dns_refused.add(&host),
            // Events the sidecar counted instead of writing (a flood).
            "internal" => {
                let n = e.count.unwrap_or(0);
                let failed = matches!(e.reason.as_deref(), Some("upstream-error" | "timeout"));
                let counted = e
                    .rule
                    .as_deref()
                    .and_then(|r| r.strip_prefix("rate-limit:"));
                match counted {
                    Some("dns") if blocked => self.dns_refused.add_n(NOT_LOGGED, n),
                    Some("http" | "connect" | "reverse") if blocked && failed => {
                        self.failed.add_n(NOT_LOGGED, n);
                    }
                    Some("http" | "connect" | "reverse") if blocked => {
                        self.refused.add_n(NOT_LOGGED, n);
                    }
                    Some("http" | "connect" | "reverse") => self.allowed.add_n(NOT_LOGGED, n),
                    _ => {}
                }
            }
            "git-push" if blocked => self.pushes_refused += 1,
            "git-push" => self.pushes_accepted += 1,
            _ => {}
        }
    }
}

/// The teardown summary of bottle `slug`.
pub fn render(slug: &str, tally: &Tally, saved: &Saved) -> String {
    let mut out = format!("summary of bottle `{slug}`:\n");
    if tally.allowed.total + tally.refused.total + tally.failed.total == 0 {
        out.push_str("  requests: none\n");
    } else {
        let _ = writeln!(out, "  requests allowed: {}", tally.allowed.line());
        let _ = writeln!(out, "  requests refused: {}", tally.refused.line());
    }
    if tally.failed.total > 0 {
        let _ = writeln!(out, "  requests failed upstream: {}", tally.failed.line());
    }
    if tally.dns_refused.total > 0 {
        let _ = writeln!(out, "  DNS queries refused: {}", tally.dns_refused.line());
    }
    if tally.pushes_accepted + tally.pushes_refused > 0 {
        let _ = writeln!(
            out,
            "  pushes: {} accepted, {} refused",
            tally.pushes_accepted, tally.pushes_refused
        );
    }
    match &saved.outbox {
        Some(dir) => {
            let _ = writeln!(
                out,
                "  outbox: {} ({} {})",
                dir.display(),
                saved.outbox_files,
                if saved.outbox_files == 1 {
                    "file"
                } else {
                    "files"
                }
            );
            let _ = writeln!(out, "    branches: {}", outbox::FETCH_BUNDLE);
            let _ = writeln!(out, "    changes: {}", outbox::APPLY_PATCH);
        }
        None if saved.outbox_checked => {
            out.push_str("  outbox: nothing new in the workspace's git repositories\n");
        }
        None => {}
    }
    if let Some(log) = &saved.log {
        let _ = writeln!(out, "  audit log: {}", log.display());
    }
    let bottle = match &saved.bottle {
        Some(b) => format!("bottle `{b}`"),
        None => "the bottle".to_string(),
    };
    let hints: Vec<String> = tally
        .refused
        .ranked()
        .into_iter()
        .filter_map(|(host, _)| Some((host, tally.refusals.get(host)?)))
        .filter_map(|(host, r)| r.hint(host, &bottle))
        .collect();
    if !hints.is_empty() {
        // The agent chose these hosts, a compromised one too: say so,
        // rather than present them as the user's own missing routes.
        out.push_str("\nthe agent was refused these; allow one only if its work needs it:\n");
    }
    for h in hints.iter().take(SHOWN_HINTS) {
        let _ = writeln!(out, "hint: {h}");
    }
    if hints.len() > SHOWN_HINTS {
        let _ = writeln!(
            out,
            "hint: {} more refused hosts; `claude-bottle logs {slug}` shows them",
            hints.len() - SHOWN_HINTS
        );
    }
    out
}

/// Counts by host, bounded by [`MAX_HOSTS`].
#[derive(Debug, Default)]
struct Counts {
    total: u64,
    by_host: BTreeMap<String, u64>,
    other: u64,
}

impl Counts {
    fn add(&mut self, host: &str) {
        self.add_n(host, 1);
    }

    fn add_n(&mut self, host: &str, n: u64) {
        self.total = self.total.saturating_add(n);
        if let Some(c) = self.by_host.get_mut(host) {
            *c = c.saturating_add(n);
        } else if self.by_host.len() < MAX_HOSTS && host.len() <= MAX_HOST_SHOWN {
            self.by_host.insert(host.to_string(), n);
        } else {
            self.other = self.other.saturating_add(n);
        }
    }

    /// Most first, then by name.
    fn ranked(&self) -> Vec<(&str, u64)> {
        let mut v: Vec<(&str, u64)> = self.by_host.iter().map(|(h, n)| (h.as_str(), *n)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        v
    }

    /// `3 (a.example 2, b.example 1)`, at most [`SHOWN_HOSTS`] named.
    fn line(&self) -> String {
        if self.total == 0 {
            return "0".into();
        }
        let ranked = self.ranked();
        let mut parts: Vec<String> = ranked
            .iter()
            .take(SHOWN_HOSTS)
            .map(|(h, n)| format!("{h} {n}"))
            .collect();
        let hidden = ranked.len().saturating_sub(SHOWN_HOSTS);
        match (hidden, self.other > 0) {
            (0, false) => {}
            (0, true) => parts.push("others".into()),
            (n, false) => parts.push(format!("+{n} more")),
            (n, true) => parts.push(format!("+{n} more and others")),
        }
        format!("{} ({})", self.total, parts.join(", "))
    }
}

#[derive(Debug, Clone)]
struct Refusal {
    reason: String,
    method: Option<String>,
    path: Option<String>,
}

impl Refusal {
    /// The route change that would allow `host`, when a route can.
    fn hint(&self, host: &str, bottle: &str) -> Option<String> {
        let name = strip_port(host);
        // The host is the agent's to choose: a hint only for one that is
        // a route's host as written. `*.trycloudflare.com` is a legal
        // authority, and a hint to add it would open every name anyone
        // can register there.
        let bare = name
            .strip_prefix('[')
            .and_then(|n| n.strip_suffix(']'))
            .unwrap_or(name);
        let written = match bottle_manifest::host::parse_host(bare) {
            Ok(bottle_manifest::host::Host::Name(n)) if n == bare => bare.to_string(),
            // Quoted: `[::1]` would be a YAML list.
            Ok(bottle_manifest::host::Host::Ip(ip)) if ip.is_ipv6() => format!("\"{ip}\""),
            Ok(bottle_manifest::host::Host::Ip(ip)) => ip.to_string(),
            _ => return None,
        };
        Some(match self.reason.as_str() {
            "no-route" | "ip-literal" => {
                format!(
                    "to allow `{name}`, add `- host: {written}` under `egress.allow` in {bottle}"
                )
            }
            "method" => format!(
                "to allow `{}` to `{name}`, add it to `methods` of the `{name}` route in {bottle}",
                self.method.as_deref().unwrap_or("the method")
            ),
            "path" => format!(
                "to allow `{}` on `{name}`, add a pattern matching it to `paths` of the `{name}` route in {bottle}",
                self.path.as_deref().unwrap_or("the path")
            ),
            "port" => format!(
                "to allow `{host}`, add its port to `ports` of the `{name}` route in {bottle}"
            ),
            "private-address" => format!(
                "`{name}` resolves to a private address; a route naming that address allows it (see `egress.resolve`) in {bottle}"
            ),
            _ => return None,
        })
    }
}

/// `example.org:443` → `example.org`; `[::1]:443` → `[::1]`; a bare IPv6
/// address is left alone.
fn strip_port(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((h, port))
            if !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && (!h.contains(':') || h.ends_with(']')) =>
        {
            h
        }
        _ => host,
    }
}

/// Control characters from the log (an agent chooses hosts and paths) are
/// shown escaped, line breaks too, so they cannot drive the terminal or
/// fake a summary line.
fn printable(s: &str) -> String {
    crate::output::printable_field(s).into_owned()
}

#[cfg(test)]
mod tests;
