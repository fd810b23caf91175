//! Teardown, shared by `start` (on every exit) and `stop`: save what the
//! user would lose, print the summary, then remove (`docker.md`,
//! "Teardown").
//!
//! 1. the outbox: a bundle and a patch per git repository in the workspace,
//!    into `$CLAUDE_BOTTLE_HOME/outbox/<slug>-<time>/`;
//! 2. the audit log: the sidecar is stopped (so every event is written)
//!    and its log saved to `$CLAUDE_BOTTLE_HOME/logs/<slug>-<time>.jsonl`;
//! 3. the summary on stderr;
//! 4. agent, sidecar, networks, derived image, then the state folder. The
//!    agent goes as soon as its outbox is saved, while the log is read:
//!    nothing is removed before what it holds is saved.
//!
//! Every step runs even when an earlier one failed; the failures come back
//! together.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use bottle_docker::outbox::{self, StartRefs, create_private};
use bottle_docker::teardown::{self, Object};
use bottle_docker::{Engine, auditlog, labels};

use crate::settings::Settings;

use super::launch::Interrupts;
use crate::state;
use crate::summary::{self, AuditEvent, Tally};

/// What this process knows about the bottle beyond its labels. `start`
/// holds both; `stop` reads them from the state folder.
#[derive(Debug, Default)]
pub struct Known {
    pub bottle: Option<String>,
    pub start_refs: Option<StartRefs>,
}

/// What went wrong in teardown, each step's failures in order.
#[derive(Debug, Default)]
pub struct Finished {
    pub failures: Vec<String>,
    /// The exit code of a signal seen during teardown: one that stopped
    /// the outbox's save, or one that came just before it and was set
    /// aside so as not to stop it (`stop` ends after this bottle on
    /// either; `start` is ending anyway).
    pub signalled: Option<std::process::ExitCode>,
}

/// Record the workspace's git refs taken at the end of launch, in memory
/// (the return value) and in the state folder (for `--keep` and `stop`). A
/// failure to take them is a warning: teardown then treats every commit as
/// new.
pub fn record_start(
    settings: &Settings,
    slug: &str,
    bottle: &str,
    refs: &Result<StartRefs, String>,
    keep: bool,
) -> Option<StartRefs> {
    let refs = match refs {
        Ok(r) => r.clone(),
        Err(e) => {
            stderrln!("warning: cannot record the workspace's git refs: {e}");
            stderrln!("  at teardown every commit not on a remote-tracking ref counts as new");
            StartRefs::default()
        }
    };
    if let Err(e) = state::record(settings, slug, bottle, keep, &refs) {
        stderrln!(
            "warning: cannot write the state folder `{}`: {e}",
            state::dir(settings, slug).display()
        );
    }
    Some(refs)
}

/// The labelled objects of `slug`, only this test run's when the test
/// label is set.
pub async fn objects(engine: &Engine, slug: Option<&str>) -> Result<Vec<Object>, String> {
    match (crate::env::test_label_filter(), slug) {
        (Some(t), _) => {
            let all = teardown::find(engine, Some(&t)).await?;
            Ok(all
                .into_iter()
                .filter(|o| slug.is_none_or(|s| o.slug == s))
                .collect())
        }
        (None, Some(s)) => teardown::find(engine, Some(&format!("{}={s}", labels::SLUG))).await,
        (None, None) => teardown::find(engine, None).await,
    }
}

/// Save, summarise and remove bottle `slug`. A signal while the outbox is
/// being saved stops the save (what the agent's repositories make git do
/// can take long) and teardown goes on; the audit log is still saved.
pub async fn finish(
    settings: &Settings,
    engine: &Engine,
    slug: &str,
    known: Known,
    interrupts: &mut Interrupts,
) -> Finished {
    let mut failures = Vec::new();
    let kept = state::read(settings, slug);
    let bottle = known.bottle.or(kept.bottle);
    let start = known.start_refs.or(kept.start_refs);
    let objects = match objects(engine, Some(slug)).await {
        Ok(o) => o,
        Err(e) => {
            failures.push(format!("cannot list the bottle's objects: {e}"));
            Vec::new()
        }
    };
    let stamp = stamp(settings, slug);
    let mut saved = summary::Saved {
        bottle,
        ..Default::default()
    };

    // The outbox needs the agent, the log a stopped sidecar (so every
    // decision is written): the two go on at once. Once its outbox is
    // saved the agent holds nothing more to save, so it is removed while
    // the log is still being read; what the sidecar holds goes only after.
    let is = |o: &Object, role: &str| o.kind == "container" && o.role == role;
    let sidecar = objects
        .iter()
        .find(|o| is(o, "sidecar"))
        .map(|o| o.id.clone());
    let (agents, rest): (Vec<Object>, Vec<Object>) =
        objects.iter().cloned().partition(|o| is(o, "agent"));
    let mut signalled = None;
    let save_outbox = async {
        let out = match agents.first() {
            Some(agent) => {
                let dir = settings
                    .bottle_home
                    .join("outbox")
                    .join(format!("{slug}-{stamp}"));
                // Only a signal sent during the save stops it: one that
                // came before (a second Ctrl-C pressed with the first, one
                // during another bottle's removal) must not cost the
                // agent's work.
                signalled = interrupts.pending().map(|(code, _)| code);
                tokio::select! {
                    saved = outbox::save(engine, &agent.id, start.as_ref(), &dir) => Some(saved),
                    (code, what) = interrupts.next_signal() => {
                        signalled = Some(code);
                        stderrln!("\n{what}: the outbox is not saved in full; removing the bottle");
                        Some(outbox::Saved::interrupted(&dir))
                    }
                }
            }
            None => None,
        };
        (out, teardown::remove(engine, &agents).await)
    };
    let mut tally = Tally::default();
    let log_saved = async {
        let sidecar = sidecar.as_ref()?;
        if let Err(e) = auditlog::stop(engine, sidecar).await {
            return Some(Err(format!("audit log: {e}")));
        }
        let path = settings
            .bottle_home
            .join("logs")
            .join(format!("{slug}-{stamp}.jsonl"));
        Some(match save_log(engine, sidecar, &path, &mut tally).await {
            Ok(()) => Ok(path),
            Err(e) => Err(format!("audit log: {e}")),
        })
    };
    // Teardown takes a second or more (the sidecar's grace period, the
    // bundle, the removals): a spinner says what it is doing.
    let progress = (!objects.is_empty())
        .then(|| crate::progress::Progress::start("saving the outbox and the audit log"));
    let ((out, agent_removal), log) = tokio::join!(save_outbox, log_saved);
    if let Some(p) = progress {
        p.clear();
    }
    if let Some(out) = out {
        failures.extend(out.failures.iter().map(|e| format!("outbox: {e}")));
        saved.outbox_files = out.files.len();
        saved.outbox_checked = true;
        saved.outbox = out.dir;
    }
    match log {
        Some(Ok(path)) => saved.log = Some(path),
        Some(Err(e)) => failures.push(e),
        None => {}
    }

    if !objects.is_empty() {
        stderr!("{}", summary::render(slug, &tally, &saved));
    }

    failures.extend(agent_removal);
    let progress =
        (!rest.is_empty()).then(|| crate::progress::Progress::start("removing the bottle"));
    failures.extend(teardown::remove(engine, &rest).await);
    if let Some(p) = progress {
        p.clear();
    }
    if let Err(e) = state::remove(settings, slug) {
        failures.push(format!(
            "cannot remove the state folder `{}`: {e}",
            state::dir(settings, slug).display()
        ));
    }
    Finished {
        failures,
        signalled,
    }
}

// === impl Finished ===

impl Finished {
    pub fn is_clean(&self) -> bool {
        self.failures.is_empty()
    }

    /// The warning `start` prints (its exit code stays the agent's).
    pub fn warn(&self) {
        if self.is_clean() {
            return;
        }
        stderrln!(
            "warning: teardown did not finish cleanly:\n  {}",
            self.failures.join("\n  ")
        );
        stderrln!("\nhint: `claude-bottle cleanup` removes what was left behind");
    }
}

/// Stream the sidecar's audit lines into a new 0600 file (folder 0700),
/// counting them for the summary.
async fn save_log(
    engine: &Engine,
    sidecar: &str,
    path: &Path,
    tally: &mut Tally,
) -> Result<(), String> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let file = create_private(dir, path)
        .map_err(|e| format!("cannot create `{}`: {e}", path.display()))?;
    let mut out = BufWriter::new(file);
    let mut write_error = None;
    let mut sink = |line: &str| {
        if let Some(e) = AuditEvent::parse(line) {
            tally.add(&e);
        }
        if let Err(e) = writeln!(out, "{line}") {
            write_error = Some(e);
            return false;
        }
        true
    };
    let read = auditlog::stream(engine, sidecar, false, &mut sink).await;
    let flushed = out.flush().and_then(|()| out.get_ref().sync_all());
    if let Some(e) = write_error.or(flushed.err()) {
        return Err(format!("cannot write `{}`: {e}", path.display()));
    }
    read.map(|_| ())
        .map_err(|e| format!("{e} (what was read is in `{}`)", path.display()))
}

/// `20260105T100001Z`, UTC, the same for a bottle's outbox and log; a
/// `-2`, `-3`… is added when either name is taken already.
fn stamp(settings: &Settings, slug: &str) -> String {
    let base = compact_utc(&bottle_egress::audit::rfc3339_now());
    let taken = |s: &str| {
        let h = &settings.bottle_home;
        h.join("outbox").join(format!("{slug}-{s}")).exists()
            || h.join("logs").join(format!("{slug}-{s}.jsonl")).exists()
    };
    let mut s = base.clone();
    let mut n = 2;
    while taken(&s) {
        s = format!("{base}-{n}");
        n += 1;
    }
    s
}

/// `2026-01-05T10:00:01.234Z` → `20260105T100001Z`.
fn compact_utc(rfc3339: &str) -> String {
    let secs = rfc3339.split('.').next().unwrap_or(rfc3339);
    let mut s: String = secs.chars().filter(|c| *c != '-' && *c != ':').collect();
    s.push('Z');
    s
}

/// The newest kept log of `slug`: `<slug>-<time>[-N].jsonl` in `logs/`.
pub fn newest_log(settings: &Settings, slug: &str) -> Option<PathBuf> {
    let dir = std::fs::read_dir(settings.bottle_home.join("logs")).ok()?;
    dir.flatten()
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            let key = log_key(&name, slug)?;
            Some((key, e.path()))
        })
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, p)| p)
}

/// `(time, N)` when `name` is a kept log of exactly `slug` (not of
/// `slug-1`, whose logs also start with `slug-`).
fn log_key(name: &str, slug: &str) -> Option<(String, u32)> {
    let rest = name.strip_prefix(slug)?.strip_prefix('-')?;
    let rest = rest.strip_suffix(".jsonl")?;
    let (time, n) = match rest.split_once('-') {
        Some((t, n)) => (t, n.parse::<u32>().ok()?),
        None => (rest, 1),
    };
    let b = time.as_bytes();
    let shaped = b.len() == 16
        && b[8] == b'T'
        && b[15] == b'Z'
        && b[..8].iter().chain(&b[9..15]).all(u8::is_ascii_digit);
    shaped.then(|| (time.to_string(), n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_compact() {
        assert_eq!(compact_utc("2026-01-05T10:00:01.234Z"), "20260105T100001Z");
    }

    #[test]
    fn kept_logs_belong_to_exactly_their_slug() {
        assert_eq!(
            log_key("dev-20260105T100001Z.jsonl", "dev"),
            Some(("20260105T100001Z".into(), 1))
        );
        assert_eq!(
            log_key("dev-20260105T100001Z-3.jsonl", "dev"),
            Some(("20260105T100001Z".into(), 3))
        );
        assert_eq!(log_key("dev-1-20260105T100001Z.jsonl", "dev"), None);
        assert_eq!(log_key("dev-20260105T100001Z.json", "dev"), None);
        assert_eq!(log_key("devx-20260105T100001Z.jsonl", "dev"), None);
        assert!(
            log_key("dev-20260105T100001Z-10.jsonl", "dev")
                > log_key("dev-20260105T100001Z-9.jsonl", "dev")
        );
    }
}
