//! The commit walk and DLP scan of a push.
//!
//! Every commit new to the mirror (`git rev-list <new tips> --not --all`:
//! new branches, merges, older commits of the range) is scanned:
//!
//! - its message, read raw with `git cat-file --batch`;
//! - the lines each file gains against the commit's first parent (merges
//!   too, so an "evil merge" cannot hide content), from two streams that
//!   together cover every change:
//!   - a file the commit adds gains all its lines, so its blob is read
//!     whole: one `git log --raw --diff-filter=A` lists the added blobs and
//!     one `git cat-file --batch` reads them (no diff to build or parse);
//!   - every other change (modified, type-changed) comes from one
//!     `git log -p -U0 --diff-filter=ad` stream, of which only the `+`
//!     lines are kept.
//!
//!   The added lines of one file in one commit are scanned as one buffer,
//!   so a secret spanning lines (a private key block) is found, and each
//!   finding is mapped back to its line.
//!
//! - the name of every entry of every tree new in the push, and the ids of
//!   its submodules (see [`crate::trees`]): folders that hold no file are
//!   in no file list.
//!
//! The streams and the DLP scanner threads (one per core, up to four) run at
//! the same time: git inflates blobs while the engine scans the ones
//! before. Queues between them are bounded, so memory stays at a few files'
//! worth.
//!
//! Git decides binary by content (a NUL in the first 8000 bytes) and the
//! rules skip binary files; the gate applies the same test to the blobs it
//! reads whole. Attributes cannot turn that off for a text file: git runs
//! with `GIT_ATTR_SOURCE` set to the empty tree and no attributes file, so a
//! pushed `.gitattributes` with `-diff` has no effect. A text file larger
//! than the text bound refuses the push.
//!
//! For a changed file git prints "Binary files … differ" when EITHER side
//! is binary or over `core.bigFileThreshold` (set to the text bound), so a
//! file that was binary, or too big, can become text without a `+` line.
//! The gate then reads the new blob (from a second `git cat-file --batch`
//! that the patch walker starts at the first such file) and judges it
//! alone: text within the bound is scanned whole by the rules, as if every
//! line were added; text over it refuses the push; binary is searched as
//! below.
//!
//! Binary files are not let through unread, though: when the bottle has
//! known secrets, every binary blob a commit adds or changes is searched for
//! them (in all the forms the engine knows, no rules), whole under the text
//! bound and streamed in pieces otherwise, so an agent cannot carry its own
//! credential out by putting a NUL byte next to it.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use bottle_dlp::{Engine, Finding};
use bottle_secret::Secret;

use crate::audit::{FindingReport, PushTimings};
use crate::limits::Limits;

/// The empty tree: `GIT_ATTR_SOURCE` points here so no pushed
/// `.gitattributes` is ever read.
const EMPTY_TREE: &str = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";
/// At most this many findings are reported (the push is refused anyway).
const MAX_FINDINGS: usize = 50;
/// git's own binary test looks at this many leading bytes.
const BINARY_PROBE: usize = 8000;
/// Blobs not held whole are read in pieces of this size: memory stays at
/// one piece (plus the longest form of a known secret) whatever their size.
const BINARY_PIECE: usize = 64 * 1024;

/// What the walk found.
#[derive(Debug, Default)]
pub struct Outcome {
    pub commits: u64,
    pub findings: Vec<FindingReport>,
    pub binary_files_skipped: u64,
    /// The scan's share of the hook's timings (`rev_list_ms`,
    /// `messages_ms`, `diffs_ms`, `dlp_ms`, `dlp_bytes`).
    pub timings: PushTimings,
}

/// Why a push could not be scanned; it is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum ScanError {
    /// Over a bound of [`Limits`]; the text says which.
    TooLarge(String),
    /// git failed.
    Git(String),
}

/// Runs git commands for the scan in the hook's repository (quarantine
/// variables inherited through `env`).
pub struct Git<'a> {
    pub env: &'a [(String, Secret)],
    pub limits: &'a Limits,
}

impl Git<'_> {
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("git");
        c.env_clear();
        for (k, v) in self.env {
            c.env(k, v.expose());
        }
        // Scan settings: no attributes from anywhere, no external diff or
        // textconv, unquoted paths, and the big-file threshold at the text
        // bound so git never builds a diff larger than that.
        let cfg = [
            ("core.attributesFile", "/dev/null".to_string()),
            ("core.quotePath", "false".to_string()),
            (
                "core.bigFileThreshold",
                self.limits.max_text_blob.to_string(),
            ),
            ("diff.noprefix", "false".to_string()),
            ("diff.mnemonicPrefix", "false".to_string()),
            ("diff.relative", "false".to_string()),
            // A root commit's files are diffed against the empty tree.
            ("log.showRoot", "true".to_string()),
            ("log.showSignature", "false".to_string()),
        ];
        c.env("GIT_CONFIG_COUNT", cfg.len().to_string());
        for (i, (k, v)) in cfg.iter().enumerate() {
            c.env(format!("GIT_CONFIG_KEY_{i}"), k);
            c.env(format!("GIT_CONFIG_VALUE_{i}"), v);
        }
        c.env("GIT_ATTR_SOURCE", EMPTY_TREE);
        // The scan reads the objects that were pushed, never a stand-in:
        // the policy refuses `refs/replace/`, and this holds even if one
        // got into the mirror some other way.
        c.env("GIT_NO_REPLACE_OBJECTS", "1");
        c.args(args);
        c.stdin(Stdio::null());
        c
    }

    /// Runs git to completion, returning stdout.
    pub fn output(&self, args: &[&str]) -> Result<Vec<u8>, ScanError> {
        let out = self
            .command(args)
            .output()
            .map_err(|e| ScanError::Git(format!("cannot run git: {e}")))?;
        if !out.status.success() {
            return Err(ScanError::Git(format!(
                "git {} failed: {}",
                args.first().copied().unwrap_or(""),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(out.stdout)
    }

    /// The type of each object in `ids` (`commit`, `tag`, `blob`, `tree`),
    /// in order, from one `git cat-file --batch-check`: a push may update
    /// up to `max_refs` refs, and one git process per ref would be
    /// hundreds of them.
    pub(crate) fn object_types(&self, ids: &[String]) -> Result<Vec<String>, ScanError> {
        let mut child = self.spawn(&["cat-file", "--batch-check=%(objecttype)"], true)?;
        let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(ScanError::Git("no pipes".into()));
        };
        let owned = ids.to_vec();
        // From a thread, so neither side of the pipe can block the other.
        let feeder = std::thread::spawn(move || {
            for id in owned {
                if writeln!(stdin, "{id}").is_err() {
                    break;
                }
            }
        });
        let mut lines = BufReader::new(stdout).lines();
        let types = ids
            .iter()
            .map(|id| match lines.next() {
                // `<id> missing` for an unknown object: not a type.
                Some(Ok(line)) if !line.ends_with(" missing") => Ok(line.trim().to_string()),
                _ => Err(ScanError::Git(format!("cat-file: no type for {id}"))),
            })
            .collect::<Result<Vec<_>, _>>();
        drop(lines);
        if types.is_err() {
            let _ = child.kill();
        }
        let _ = child.wait();
        let _ = feeder.join();
        types
    }

    /// `git merge-base --is-ancestor old new`.
    pub fn is_ancestor(&self, old: &str, new: &str) -> bool {
        self.command(&["merge-base", "--is-ancestor", old, new])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    fn spawn(&self, args: &[&str], stdin: bool) -> Result<Child, ScanError> {
        let input = if stdin { Stdio::piped() } else { Stdio::null() };
        self.spawn_reading(args, input)
    }

    /// Starts git with stdout piped and stdin from `input` (another
    /// child's stdout, so two gits stream into each other directly).
    pub(crate) fn spawn_reading(&self, args: &[&str], input: Stdio) -> Result<Child, ScanError> {
        let mut c = self.command(args);
        c.stdout(Stdio::piped()).stderr(Stdio::null()).stdin(input);
        c.spawn()
            .map_err(|e| ScanError::Git(format!("cannot run git: {e}")))
    }
}

/// Scans every commit reachable from `tips` and new to the repository.
pub fn scan_push(git: &Git<'_>, tips: &[&str], engine: &Engine) -> Result<Outcome, ScanError> {
    let mut out = Outcome::default();
    if tips.is_empty() {
        return Ok(out);
    }
    let t = Instant::now();
    let commits = new_commits(git, tips)?;
    out.timings.rev_list_ms = millis(t.elapsed());
    out.commits = commits.len() as u64;
    if commits.is_empty() {
        return Ok(out);
    }
    // Messages, changes and trees at the same time; message findings first.
    let commits = &commits;
    let (messages, changes, trees) = std::thread::scope(|s| {
        let messages = s.spawn(|| {
            let t = Instant::now();
            let mut m = Outcome::default();
            scan_messages(git, commits, engine, &mut m).map(|()| (m, t.elapsed()))
        });
        let trees = s.spawn(|| {
            let t = Instant::now();
            crate::trees::scan_new_trees(git, tips, engine, MAX_FINDINGS).map(|o| (o, t.elapsed()))
        });
        let t = Instant::now();
        let mut c = Outcome::default();
        let changes = scan_changes(git, tips, commits, engine, &mut c).map(|()| (c, t.elapsed()));
        let failed = |_| ScanError::Git("a scan thread failed".into());
        let messages = messages.join().map_err(failed).and_then(|r| r);
        let trees = trees.join().map_err(failed).and_then(|r| r);
        (messages, changes, trees)
    });
    let (m, m_took) = messages?;
    let (c, c_took) = changes?;
    let (t, t_took) = trees?;
    out.timings.trees = t.trees;
    out.timings.tree_entries = t.entries;
    out.timings.trees_ms = millis(t_took);
    out.timings.messages_ms = millis(m_took);
    out.timings.diffs_ms = millis(c_took);
    out.timings.dlp_ms = c.timings.dlp_ms + millis(t.dlp);
    out.timings.dlp_bytes = c.timings.dlp_bytes;
    out.timings.binary_files = c.timings.binary_files;
    out.timings.binary_bytes = c.timings.binary_bytes;
    out.timings.binary_ms = c.timings.binary_ms;
    out.binary_files_skipped = c.binary_files_skipped;
    out.findings = m.findings;
    out.findings.extend(c.findings);
    out.findings.extend(t.findings);
    out.findings.truncate(MAX_FINDINGS);
    Ok(out)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn new_commits(git: &Git<'_>, tips: &[&str]) -> Result<Vec<String>, ScanError> {
    let mut args = vec!["rev-list"];
    args.extend_from_slice(tips);
    args.extend_from_slice(&["--not", "--all"]);
    let mut child = git.spawn(&args, false)?;
    let Some(stdout) = child.stdout.take() else {
        return Err(ScanError::Git("no stdout".into()));
    };
    let mut commits = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.map_err(|e| ScanError::Git(e.to_string()))?;
        commits.push(line);
        if commits.len() as u64 > git.limits.max_commits {
            let _ = child.kill();
            let _ = child.wait();
            return Err(ScanError::TooLarge(format!(
                "more than {} new commits in one push",
                git.limits.max_commits
            )));
        }
    }
    let status = child.wait().map_err(|e| ScanError::Git(e.to_string()))?;
    if !status.success() {
        return Err(ScanError::Git("git rev-list failed".into()));
    }
    Ok(commits)
}

/// The line number of byte `offset` of `buf`: from `starts` (offset, line
/// of each added line) or, when `starts` is empty (a whole new file, a
/// message), by counting newlines.
fn line_at(buf: &[u8], starts: &[(usize, u64)], offset: usize) -> u64 {
    if starts.is_empty() {
        let end = offset.min(buf.len());
        return 1 + buf[..end].iter().filter(|b| **b == b'\n').count() as u64;
    }
    let idx = starts.partition_point(|(off, _)| *off <= offset);
    idx.checked_sub(1)
        .and_then(|i| starts.get(i))
        .map_or(0, |(_, l)| *l)
}

/// Where a finding is, for its report.
#[derive(Clone, Copy)]
pub(crate) enum Place<'a> {
    /// A line of the commit message (or of a file's added lines).
    Lines(Option<&'a str>),
    /// Another part of the push, by name (see [`FindingReport::part`]).
    Part(&'static str),
}

pub(crate) fn push_findings(
    out: &mut Vec<FindingReport>,
    engine: &Engine,
    buf: &[u8],
    starts: &[(usize, u64)],
    commit: &str,
    place: Place<'_>,
) {
    if buf.is_empty() || out.len() >= MAX_FINDINGS {
        return;
    }
    for f in engine.scan(buf) {
        let start = usize::try_from(f.range.start).unwrap_or(usize::MAX);
        let (path, part) = match place {
            Place::Lines(path) => (path.map(str::to_string), None),
            Place::Part(part) => (None, Some(part.to_string())),
        };
        out.push(FindingReport {
            commit: commit.to_string(),
            path,
            line: line_at(buf, starts, start),
            offset: None,
            part,
            rule: f.rule.to_string(),
            redacted: f.redacted,
        });
        if out.len() >= MAX_FINDINGS {
            return;
        }
    }
}

fn scan_messages(
    git: &Git<'_>,
    commits: &[String],
    engine: &Engine,
    out: &mut Outcome,
) -> Result<(), ScanError> {
    let mut child = git.spawn(&["cat-file", "--batch"], true)?;
    let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return Err(ScanError::Git("no pipes".into()));
    };
    let ids: Vec<String> = commits.to_vec();
    // Feed ids from a thread so neither side of the pipe can fill up and
    // block the other.
    let feeder = std::thread::spawn(move || {
        for id in ids {
            if writeln!(stdin, "{id}").is_err() {
                break;
            }
        }
    });
    let mut r = BufReader::new(stdout);
    let result = (|| {
        let mut header = String::new();
        for _ in commits {
            header.clear();
            r.read_line(&mut header)
                .map_err(|e| ScanError::Git(e.to_string()))?;
            let mut parts = header.split_whitespace();
            let (Some(id), Some(kind), Some(size)) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(ScanError::Git(format!("cat-file: {}", header.trim())));
            };
            let size: u64 = size
                .parse()
                .map_err(|_| ScanError::Git("cat-file: bad size".into()))?;
            if kind != "commit" {
                return Err(ScanError::Git(format!("{id} is not a commit")));
            }
            if size > git.limits.max_message + 64 * 1024 {
                return Err(ScanError::TooLarge(format!(
                    "commit {id} is {size} bytes; messages are scanned up to {}",
                    git.limits.max_message
                )));
            }
            let mut body = vec![0u8; usize::try_from(size).unwrap_or(0) + 1];
            r.read_exact(&mut body)
                .map_err(|e| ScanError::Git(e.to_string()))?;
            body.pop(); // the newline after each object
            // The message follows the first empty line of the commit object;
            // the header before it is the agent's to write too (author and
            // committer names, extra headers, a signature): both scanned.
            let msg_at = body
                .windows(2)
                .position(|w| w == b"\n\n")
                .map_or(body.len(), |p| p + 2);
            let (header, message) = body.split_at(msg_at);
            push_findings(
                &mut out.findings,
                engine,
                message,
                &[],
                id,
                Place::Lines(None),
            );
            let part = Place::Part("commit header");
            push_findings(&mut out.findings, engine, header, &[], id, part);
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = child.kill();
    }
    drop(r);
    let _ = child.wait();
    let _ = feeder.join();
    result
}

/// Reads one line into `buf` (without the newline); `Ok(false)` at EOF.
/// Lines longer than `max` are an error: no file line the gate scans can be
/// longer than the text bound.
pub(crate) fn read_line_bounded(
    r: &mut impl BufRead,
    buf: &mut Vec<u8>,
    max: usize,
) -> Result<bool, ScanError> {
    buf.clear();
    loop {
        let avail = r.fill_buf().map_err(|e| ScanError::Git(e.to_string()))?;
        if avail.is_empty() {
            return Ok(!buf.is_empty());
        }
        let (take, done) = match avail.iter().position(|b| *b == b'\n') {
            Some(p) => (p, true),
            None => (avail.len(), false),
        };
        buf.extend_from_slice(&avail[..take]);
        r.consume(if done { take + 1 } else { take });
        if buf.len() > max {
            return Err(ScanError::TooLarge(format!(
                "a diff line longer than {max} bytes"
            )));
        }
        if done {
            return Ok(true);
        }
    }
}

/// `+c,d` of a hunk header: (first new line, new count, old count).
fn parse_hunk(line: &[u8]) -> Option<(u64, u64, u64)> {
    let text = std::str::from_utf8(line).ok()?;
    let rest = text.strip_prefix("@@ -")?;
    let (old, rest) = rest.split_once(" +")?;
    let (new, _) = rest.split_once(" @@")?;
    let count = |s: &str| -> Option<(u64, u64)> {
        match s.split_once(',') {
            Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
            None => Some((s.parse().ok()?, 1)),
        }
    };
    let (_, old_n) = count(old)?;
    let (new_start, new_n) = count(new)?;
    Some((new_start, new_n, old_n))
}

/// Undoes git's C-style quoting of a path (`"a\tb"`).
fn unquote(p: &[u8]) -> String {
    if p.len() < 2 || p[0] != b'"' || p[p.len() - 1] != b'"' {
        return String::from_utf8_lossy(p).into_owned();
    }
    let inner = &p[1..p.len() - 1];
    let mut out = Vec::with_capacity(inner.len());
    let mut i = 0;
    while i < inner.len() {
        if inner[i] == b'\\' && i + 1 < inner.len() {
            let c = inner[i + 1];
            let (byte, used) = match c {
                b'n' => (b'\n', 2),
                b't' => (b'\t', 2),
                b'r' => (b'\r', 2),
                b'a' => (7, 2),
                b'b' => (8, 2),
                b'f' => (12, 2),
                b'v' => (11, 2),
                b'0'..=b'7' if inner.len() >= i + 4 => {
                    let oct = std::str::from_utf8(&inner[i + 1..i + 4]).unwrap_or("0");
                    (u8::from_str_radix(oct, 8).unwrap_or(b'?'), 4)
                }
                other => (other, 2),
            };
            out.push(byte);
            i += used;
        } else {
            out.push(inner[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One file's added lines in one commit.
#[derive(Default)]
struct FileAdds {
    path: Option<String>,
    buf: Vec<u8>,
    starts: Vec<(usize, u64)>,
    /// The post-image blob id from the `index` line.
    new_blob: Option<String>,
    /// The commit adds this file: its name is new and is scanned too (the
    /// files a commit changes were added by an earlier commit, new or not).
    added: bool,
    /// Set when `buf` is the whole new file, widened from its added lines
    /// ([`widen`]): the lines the commit added, and only findings that
    /// touch one of them, or span one of `joins`, count (what was there
    /// before is not this push's).
    only_lines: Option<Vec<u64>>,
    /// Where the commit deleted lines, as the new file's line that now
    /// follows the deleted ones: lines that were apart meet there, and a
    /// secret can be put together by deleting what kept its parts apart
    /// (a line inside a PEM block), with no line added at all.
    joins: Vec<u64>,
}

/// A file's added text in one commit, on its way to a scanner thread.
type Work = (String, FileAdds);

/// `git log` over the new commits with the scan's diff settings.
fn log_args<'a>(tips: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "log",
        "--no-color",
        "--no-renames",
        "--no-ext-diff",
        "--no-textconv",
        "--diff-merges=first-parent",
        "--format=%x00%H",
    ];
    args.extend_from_slice(extra);
    args.extend_from_slice(tips);
    args.extend_from_slice(&["--not", "--all", "--"]);
    args
}

/// Kills (if `kill`) and reaps children; true if all exited successfully.
pub(crate) fn reap(children: &mut [&mut Child], kill: bool) -> bool {
    let mut ok = true;
    for c in children {
        if kill {
            let _ = c.kill();
        }
        ok &= c.wait().is_ok_and(|s| s.success());
    }
    ok
}

/// Scans the lines every new commit adds: whole blobs for added files,
/// `+` lines of `git log -p` for the other changes.
fn scan_changes(
    git: &Git<'_>,
    tips: &[&str],
    commits: &[String],
    engine: &Engine,
    out: &mut Outcome,
) -> Result<(), ScanError> {
    let mut raw = git.spawn(
        &log_args(tips, &["--raw", "-r", "--no-abbrev", "--diff-filter=A"]),
        false,
    )?;
    let mut blobs = match git.spawn(&["cat-file", "--batch"], true) {
        Ok(c) => c,
        Err(e) => {
            reap(&mut [&mut raw], true);
            return Err(e);
        }
    };
    let mut patch = match git.spawn(
        &log_args(
            tips,
            &[
                "-p",
                "-U0",
                "--full-index",
                "--src-prefix=a/",
                "--dst-prefix=b/",
                "--diff-filter=ad",
            ],
        ),
        false,
    ) {
        Ok(c) => c,
        Err(e) => {
            reap(&mut [&mut raw, &mut blobs], true);
            return Err(e);
        }
    };
    let result = match (
        raw.stdout.take(),
        blobs.stdin.take(),
        blobs.stdout.take(),
        patch.stdout.take(),
    ) {
        (Some(raw_out), Some(blob_in), Some(blob_out), Some(patch_out)) => {
            let pipes = Pipes {
                raw_out,
                blob_in,
                blob_out,
                patch_out,
            };
            run_pipeline(git, pipes, commits, engine, out)
        }
        _ => Err(ScanError::Git("no pipes".into())),
    };
    let ok = reap(&mut [&mut raw, &mut blobs, &mut patch], result.is_err());
    result?;
    if !ok {
        return Err(ScanError::Git("git log or git cat-file failed".into()));
    }
    Ok(())
}

struct Pipes {
    raw_out: std::process::ChildStdout,
    blob_in: std::process::ChildStdin,
    blob_out: std::process::ChildStdout,
    patch_out: std::process::ChildStdout,
}

/// What one scanner thread did.
#[derive(Default)]
struct Scanned {
    findings: Vec<FindingReport>,
    busy: Duration,
    bytes: u64,
}

fn run_pipeline(
    git: &Git<'_>,
    pipes: Pipes,
    commits: &[String],
    engine: &Engine,
    out: &mut Outcome,
) -> Result<(), ScanError> {
    let Pipes {
        raw_out,
        blob_in,
        blob_out,
        patch_out,
    } = pipes;
    let max_line = usize::try_from(git.limits.max_text_blob)
        .unwrap_or(usize::MAX)
        .saturating_add(16);
    let workers = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .clamp(1, 4);
    // Few files in flight: each can be up to the text bound.
    let (tx, rx) = sync_channel::<Work>(2 * workers);
    let rx = Mutex::new(rx);
    let found = AtomicUsize::new(out.findings.len());
    let failed = AtomicBool::new(false);
    let (result, mut scanned, binary, binaries) = std::thread::scope(|s| {
        let scanners: Vec<_> = (0..workers)
            .map(|_| s.spawn(|| scan_worker(engine, &rx, &found, &failed)))
            .collect();
        // Added files: the main thread lists them and feeds their ids to
        // cat-file; the reader thread takes the blobs to the scanners.
        let (loc_tx, loc_rx) = sync_channel::<Location>(1024);
        let blob_tx = tx.clone();
        let reader = s.spawn(move || {
            let mut r = BufReader::with_capacity(256 * 1024, blob_out);
            let mut found = BinarySearch::new(engine);
            let res = read_blobs(git.limits, &mut r, loc_rx, &blob_tx, &mut found);
            (res, found)
        });
        // Other changes: the patch walker.
        let patch_tx = tx;
        let walker = s.spawn(move || {
            let mut r = BufReader::with_capacity(256 * 1024, patch_out);
            let mut o = Outcome::default();
            let mut send = |f: FileAdds, commit: &str| {
                if !f.buf.is_empty() {
                    let _ = patch_tx.send((commit.to_string(), f));
                }
            };
            let mut found = BinarySearch::new(engine);
            let res = walk_patch(git, &mut r, max_line, &mut send, &mut o, &mut found);
            (res, o.binary_files_skipped, found)
        });
        let listed = list_added(raw_out, blob_in, &loc_tx, max_line);
        drop(loc_tx);
        let thread_failed = || ScanError::Git("a scan thread failed".into());
        let (read, mut binaries) = reader
            .join()
            .unwrap_or_else(|_| (Err(thread_failed()), BinarySearch::new(engine)));
        let (walked, patch_binary, walked_binaries) = walker
            .join()
            .unwrap_or_else(|_| (Err(thread_failed()), 0, BinarySearch::new(engine)));
        binaries.absorb(walked_binaries);
        let mut scanned = Scanned::default();
        let mut joined = Ok(());
        for h in scanners {
            match h.join() {
                Ok(one) => {
                    scanned.findings.extend(one.findings);
                    scanned.busy += one.busy;
                    scanned.bytes += one.bytes;
                }
                Err(_) => joined = Err(thread_failed()),
            }
        }
        // The reader's error first: when it stops, cat-file and then the
        // lister fail too, with less to say.
        let result = match read {
            Err(e) => Err(e),
            Ok(binary) => listed.and(walked).and(joined).map(|()| binary),
        };
        let result = result.map(|binary| binary + patch_binary);
        match result {
            Ok(binary) => (Ok(()), scanned, binary, binaries),
            Err(e) => (Err(e), scanned, 0, binaries),
        }
    });
    result?;
    if failed.load(Ordering::Relaxed) {
        return Err(ScanError::Git("the DLP engine failed".into()));
    }
    out.binary_files_skipped += binary;
    out.timings.dlp_ms = millis(scanned.busy);
    out.timings.dlp_bytes = scanned.bytes;
    out.timings.binary_files = binaries.files;
    out.timings.binary_bytes = binaries.bytes;
    out.timings.binary_ms = millis(binaries.busy);
    scanned.findings.extend(binaries.findings);
    // Scanners finish in any order: report in commit order (rev-list's),
    // then path and place in the file.
    let order: HashMap<&str, usize> = commits
        .iter()
        .enumerate()
        .map(|(i, c)| (c.as_str(), i))
        .collect();
    let mut findings = scanned.findings;
    findings.sort_by(|a, b| {
        let rank = |f: &FindingReport| order.get(f.commit.as_str()).copied();
        (rank(a), &a.path, a.line, a.offset).cmp(&(rank(b), &b.path, b.line, b.offset))
    });
    out.findings.extend(findings);
    out.findings.truncate(MAX_FINDINGS);
    Ok(())
}

/// One scanner thread: takes files off the queue until it is closed. After
/// [`MAX_FINDINGS`] (the push is refused anyway) or a failure it only
/// drains the queue, so the producers never block on it.
fn scan_worker(
    engine: &Engine,
    rx: &Mutex<Receiver<Work>>,
    found: &AtomicUsize,
    failed: &AtomicBool,
) -> Scanned {
    let mut done = Scanned::default();
    loop {
        let next = rx.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok((commit, f)) = next else {
            return done;
        };
        if found.load(Ordering::Relaxed) >= MAX_FINDINGS || failed.load(Ordering::Relaxed) {
            continue;
        }
        let t = Instant::now();
        // The file's name is the agent's to choose too: scanned, and a
        // finding there reports no path (it would print the secret).
        let name = f.path.as_deref().filter(|_| f.added).unwrap_or_default();
        let hits = catch_unwind(AssertUnwindSafe(|| {
            (engine.scan(name.as_bytes()), engine.scan(&f.buf))
        }));
        done.busy += t.elapsed();
        done.bytes += f.buf.len() as u64;
        let Ok((in_name, hits)) = hits else {
            // Fail closed: the push is refused.
            failed.store(true, Ordering::Relaxed);
            continue;
        };
        let in_name = in_name.into_iter().map(|h| (h, true));
        for (h, named) in in_name.chain(hits.into_iter().map(|h| (h, false))) {
            let start = usize::try_from(h.range.start).unwrap_or(usize::MAX);
            if !named && let Some(added) = &f.only_lines {
                let end = usize::try_from(h.range.end.saturating_sub(1)).unwrap_or(usize::MAX);
                // A finding is its value; a rule may need a name before it,
                // on the same line or across blank ones (`key:\n\n  value`):
                // what puts the name and the value together counts too.
                let named_from = if engine.rule_reads_a_name(h.rule) {
                    name_line_start(&f.buf, start)
                } else {
                    start
                };
                let (first, last) = (line_at(&f.buf, &[], named_from), line_at(&f.buf, &[], end));
                let from = added.partition_point(|l| *l < first);
                let touches_added = added.get(from).is_some_and(|l| *l <= last);
                // Across a deletion: the lines before and after it.
                // (`joins` is in order, as the patch lists them.)
                let next_join = f.joins.partition_point(|n| *n <= first);
                let spans_join = f.joins.get(next_join).is_some_and(|n| *n <= last);
                if !touches_added && !spans_join {
                    continue;
                }
            }
            if found.fetch_add(1, Ordering::Relaxed) >= MAX_FINDINGS {
                break;
            }
            done.findings.push(FindingReport {
                commit: commit.clone(),
                path: if named { None } else { f.path.clone() },
                line: if named {
                    0
                } else {
                    line_at(&f.buf, &f.starts, start)
                },
                offset: None,
                part: named.then(|| "file name".to_string()),
                rule: h.rule.to_string(),
                redacted: h.redacted,
            });
        }
    }
}

/// Where the name before the value at `at` ends: back past what rules
/// allow between a name and its value (white space of any kind, line
/// breaks, quotes, `:`, `=`, `>`), so on the value's own line when the
/// name is there (`password = "…"`), else on the line it is on.
fn name_line_start(buf: &[u8], at: usize) -> usize {
    let between = |b: u8| {
        b.is_ascii_whitespace() || matches!(b, 0x0b | b'"' | b'\'' | b'`' | b':' | b'=' | b'>')
    };
    let mut p = at.min(buf.len());
    while p > 0 && between(buf[p - 1]) {
        p -= 1;
    }
    p.saturating_sub(1)
}

/// A file a commit adds: (commit, path, blob id).
type Location = (String, String, String);

/// Reads `git log --raw --diff-filter=A` and, for each added file (not a
/// submodule), hands its location to the blob reader and then its id to
/// `git cat-file --batch`.
fn list_added(
    raw: impl Read,
    blob_in: std::process::ChildStdin,
    locs: &SyncSender<Location>,
    max_line: usize,
) -> Result<(), ScanError> {
    let io = |e: std::io::Error| ScanError::Git(format!("git cat-file: {e}"));
    let mut r = BufReader::with_capacity(64 * 1024, raw);
    let mut w = BufWriter::new(blob_in);
    let mut line = Vec::with_capacity(256);
    let mut commit = String::new();
    loop {
        // Never wait on git log while cat-file waits on ids still in our
        // buffer.
        if r.buffer().is_empty() {
            w.flush().map_err(io)?;
        }
        if !read_line_bounded(&mut r, &mut line, max_line)? {
            break;
        }
        match line.first() {
            Some(0) => commit = String::from_utf8_lossy(&line[1..]).trim().to_string(),
            Some(b':') => {
                let Some(tab) = line.iter().position(|b| *b == b'\t') else {
                    return Err(ScanError::Git("unreadable raw diff line".into()));
                };
                let meta = String::from_utf8_lossy(&line[1..tab]);
                let fields: Vec<&str> = meta.split(' ').collect();
                let [_, new_mode, _, id, status] = fields[..] else {
                    return Err(ScanError::Git("unreadable raw diff line".into()));
                };
                // Other kinds of change are in the patch stream.
                if status != "A" {
                    continue;
                }
                if id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(ScanError::Git("unreadable raw diff line".into()));
                }
                // A submodule entry names a commit of another repository:
                // nothing to read, but its name is scanned like any file's
                // (an empty id tells the blob reader so).
                let id = if new_mode == "160000" { "" } else { id };
                let loc = (commit.clone(), unquote(&line[tab + 1..]), id.to_string());
                let id = loc.2.clone();
                match locs.try_send(loc) {
                    Ok(()) => {}
                    Err(TrySendError::Full(loc)) => {
                        // The reader waits on ids we hold: hand them over
                        // before waiting on it.
                        w.flush().map_err(io)?;
                        locs.send(loc)
                            .map_err(|_| ScanError::Git("the blob reader stopped".into()))?;
                    }
                    Err(TrySendError::Disconnected(_)) => {
                        return Err(ScanError::Git("the blob reader stopped".into()));
                    }
                }
                if !id.is_empty() {
                    writeln!(w, "{id}").map_err(io)?;
                }
            }
            _ => {}
        }
    }
    w.flush().map_err(io)
}

/// Reads the blobs `git cat-file --batch` prints for `locs`, in order, and
/// queues the text ones for the scanners; binary ones go to `found`.
/// Returns the number of binary files (skipped by the rules). A text blob
/// over the bound refuses the push.
fn read_blobs(
    limits: &Limits,
    r: &mut impl BufRead,
    locs: Receiver<Location>,
    tx: &SyncSender<Work>,
    found: &mut BinarySearch<'_>,
) -> Result<u64, ScanError> {
    let mut header = Vec::with_capacity(128);
    let mut binary = 0;
    for (commit, path, id) in locs {
        let mut buf = Vec::new();
        // A submodule (no id, see `list_added`): its name only.
        if !id.is_empty() {
            let size = blob_header(r, &mut header, &id)?;
            match read_blob(r, size, limits, (&commit, &path), found)? {
                Some(text) => buf = text,
                None => binary += 1,
            }
        }
        // Binary and empty files too: the scanners check every added
        // file's name, whatever its content.
        let file = FileAdds {
            path: Some(path),
            buf,
            starts: Vec::new(),
            new_blob: None,
            added: true,
            only_lines: None,
            joins: Vec::new(),
        };
        tx.send((commit, file))
            .map_err(|_| ScanError::Git("the scanners stopped".into()))?;
    }
    Ok(binary)
}

pub(crate) fn cat_file_io(e: std::io::Error) -> ScanError {
    ScanError::Git(format!("git cat-file: {e}"))
}

/// Reads the header `git cat-file --batch` prints before blob `id`; returns
/// the blob's size.
fn blob_header(r: &mut impl BufRead, line: &mut Vec<u8>, id: &str) -> Result<u64, ScanError> {
    if !read_line_bounded(r, line, 1024)? {
        return Err(ScanError::Git("git cat-file ended early".into()));
    }
    let (got, kind, size) = object_header(line)?;
    if kind != "blob" {
        return Err(ScanError::Git(format!("cat-file: {got} is a {kind}")));
    }
    if got != id {
        return Err(ScanError::Git(format!("cat-file: {got} for {id}")));
    }
    Ok(size)
}

/// `git cat-file --batch`'s header line of one object: id, type, size.
/// Anything else (`<id> missing`, a fourth field) is an error.
pub(crate) fn object_header(line: &[u8]) -> Result<(String, String, u64), ScanError> {
    let text = String::from_utf8_lossy(line);
    let mut parts = text.split(' ');
    let (Some(id), Some(kind), Some(size), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ScanError::Git(format!("cat-file: {}", text.trim())));
    };
    let size: u64 = size
        .parse()
        .map_err(|_| ScanError::Git("cat-file: bad size".into()))?;
    Ok((id.to_string(), kind.to_string(), size))
}

/// Reads the content of a blob of `size` bytes (then cat-file's newline)
/// from `r`: `Some` with the whole of it when it is text within the text
/// bound, for the rules; `None` when it is binary (git's own test: a NUL
/// in the first 8000 bytes), after the known-secret search. Text over the
/// bound refuses the push.
fn read_blob(
    r: &mut impl BufRead,
    size: u64,
    limits: &Limits,
    at: (&str, &str),
    found: &mut BinarySearch<'_>,
) -> Result<Option<Vec<u8>>, ScanError> {
    if size > limits.max_text_blob {
        stream_blob(r, size, limits, at, found)?;
        return Ok(None);
    }
    let len = usize::try_from(size).map_err(|_| ScanError::Git("cat-file: bad size".into()))?;
    let mut buf = vec![0u8; len + 1];
    r.read_exact(&mut buf).map_err(cat_file_io)?;
    if buf.pop() != Some(b'\n') {
        return Err(ScanError::Git("cat-file: bad framing".into()));
    }
    if buf[..len.min(BINARY_PROBE)].contains(&0) && !looks_utf16(&buf) {
        found.search(at, &buf, &mut std::io::empty(), 0)?;
        return Ok(None);
    }
    Ok(Some(buf))
}

/// Whether content with NUL bytes is UTF-16 text: a byte-order mark, or
/// in its first bytes one byte of nearly every two-byte unit zero and the
/// other nearly never (text in a Latin script). git calls it binary, and
/// forges show it as text: it goes to the rules (the engine reads UTF-16)
/// instead of only the known-secret search, which looks for the secrets'
/// 8-bit forms.
fn looks_utf16(b: &[u8]) -> bool {
    if b.starts_with(&[0xff, 0xfe]) || b.starts_with(&[0xfe, 0xff]) {
        return true;
    }
    let probe = &b[..b.len().min(BINARY_PROBE)];
    let units = probe.len() / 2;
    if units < 8 {
        return false;
    }
    let (even, odd) = probe.chunks_exact(2).fold((0, 0), |(e, o), u| {
        (e + usize::from(u[0] == 0), o + usize::from(u[1] == 0))
    });
    let most = |n: usize| n * 10 >= units * 9;
    let few = |n: usize| n * 10 <= units;
    (most(odd) && few(even)) || (most(even) && few(odd))
}

/// Reads a blob's content that is not held whole (`size` bytes, then
/// cat-file's newline): one over the text bound, or a changed file git
/// calls binary. Text over the bound refuses the push, since it cannot be
/// scanned within bounds; binary content goes to the known-secret search as
/// it streams past.
fn stream_blob(
    r: &mut impl Read,
    size: u64,
    limits: &Limits,
    at: (&str, &str),
    found: &mut BinarySearch<'_>,
) -> Result<(), ScanError> {
    let probe = usize::try_from(size.min(BINARY_PROBE as u64)).unwrap_or(BINARY_PROBE);
    let mut head = vec![0u8; probe];
    r.read_exact(&mut head).map_err(cat_file_io)?;
    if size > limits.max_text_blob && !head.contains(&0) {
        let (commit, path) = at;
        return Err(ScanError::TooLarge(format!(
            "commit {commit} adds a {size}-byte text file ({path}); text is scanned up to {} bytes",
            limits.max_text_blob
        )));
    }
    found.search(at, &head, r, size - probe as u64)?;
    let mut newline = [0u8; 1];
    r.read_exact(&mut newline).map_err(cat_file_io)?;
    if newline != [b'\n'] {
        return Err(ScanError::Git("cat-file: bad framing".into()));
    }
    Ok(())
}

/// The search of binary blobs for known secrets, one per thread that reads
/// blobs (the added-file reader, the patch walker).
struct BinarySearch<'e> {
    /// `None` when the bottle has no known secret: there is nothing to look
    /// for, and binary blobs are only read past.
    engine: Option<&'e Engine>,
    files: u64,
    bytes: u64,
    busy: Duration,
    findings: Vec<FindingReport>,
}

impl<'e> BinarySearch<'e> {
    fn new(engine: &'e Engine) -> Self {
        BinarySearch {
            engine: engine.has_known_secrets().then_some(engine),
            files: 0,
            bytes: 0,
            busy: Duration::ZERO,
            findings: Vec::new(),
        }
    }

    /// Searches one binary blob at `(commit, path)`: `head`, already read,
    /// then `rest` more bytes from `r`, which are consumed in pieces whether
    /// or not there is anything to search for.
    fn search(
        &mut self,
        at: (&str, &str),
        head: &[u8],
        r: &mut impl Read,
        rest: u64,
    ) -> Result<(), ScanError> {
        let mut stream = self.engine.map(Engine::known_stream);
        if let Some(s) = stream.as_mut() {
            self.files += 1;
            self.feed(s, at, head);
        }
        let mut piece =
            vec![0u8; usize::try_from(rest).map_or(BINARY_PIECE, |r| r.min(BINARY_PIECE))];
        let mut left = rest;
        while left > 0 {
            let want = usize::try_from(left).map_or(piece.len(), |l| l.min(piece.len()));
            let n = match r.read(&mut piece[..want]) {
                Ok(0) => return Err(ScanError::Git("git cat-file ended early".into())),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(cat_file_io(e)),
            };
            left -= n as u64;
            if let Some(s) = stream.as_mut() {
                self.feed(s, at, &piece[..n]);
            }
        }
        if let Some(s) = stream {
            self.bytes += s.position();
        }
        Ok(())
    }

    fn feed(&mut self, s: &mut bottle_dlp::KnownStream<'_>, at: (&str, &str), bytes: &[u8]) {
        // Past the cap the push is refused anyway: the rest is only read.
        if self.findings.len() >= MAX_FINDINGS {
            return;
        }
        let t = Instant::now();
        let hits: Vec<Finding> = s.push(bytes);
        self.busy += t.elapsed();
        let room = MAX_FINDINGS - self.findings.len();
        for h in hits.into_iter().take(room) {
            self.findings.push(FindingReport {
                commit: at.0.to_string(),
                path: Some(at.1.to_string()),
                line: 0,
                offset: Some(h.range.start),
                part: None,
                rule: h.rule.to_string(),
                redacted: h.redacted,
            });
        }
    }

    /// Adds another thread's counts and findings to these.
    fn absorb(&mut self, other: BinarySearch<'_>) {
        self.files += other.files;
        self.bytes += other.bytes;
        self.busy += other.busy;
        self.findings.extend(other.findings);
    }
}

/// A `git cat-file --batch` that reads one blob at a time on request: the
/// patch walker's, for the binary files commits change.
struct BlobFetcher {
    child: Child,
    stdin: std::process::ChildStdin,
    stdout: BufReader<std::process::ChildStdout>,
    header: Vec<u8>,
}

impl BlobFetcher {
    fn start(git: &Git<'_>) -> Result<Self, ScanError> {
        let mut child = git.spawn(&["cat-file", "--batch"], true)?;
        match (child.stdin.take(), child.stdout.take()) {
            (Some(stdin), Some(stdout)) => Ok(BlobFetcher {
                child,
                stdin,
                stdout: BufReader::with_capacity(BINARY_PIECE, stdout),
                header: Vec::with_capacity(128),
            }),
            _ => {
                reap(&mut [&mut child], true);
                Err(ScanError::Git("no pipes".into()))
            }
        }
    }

    /// Asks for blob `id` and returns its size; the content follows on
    /// `stdout` and must be read before the next request.
    fn open(&mut self, id: &str) -> Result<u64, ScanError> {
        // One request at a time, and cat-file flushes after each object:
        // neither pipe can fill up while the other side waits.
        writeln!(self.stdin, "{id}")
            .and_then(|()| self.stdin.flush())
            .map_err(cat_file_io)?;
        blob_header(&mut self.stdout, &mut self.header, id)
    }
}

impl Drop for BlobFetcher {
    fn drop(&mut self) {
        // Every blob asked for was read (or the scan failed): nothing more
        // is wanted from it.
        reap(&mut [&mut self.child], true);
    }
}

/// The path of a `diff --git a/<p> b/<p>` header (after `diff --git `).
/// Without renames both sides name the same path, so the header splits in
/// the middle, even for a path that contains ` b/`. A binary diff has no
/// `+++` line, so this is the only place its path is written.
fn diff_git_path(rest: &[u8]) -> String {
    if rest.first() == Some(&b'"') {
        // `"a/…" "b/…"`: the second quoted name starts after the first
        // closing quote that is not escaped.
        let mut i = 1;
        while i < rest.len() && rest[i] != b'"' {
            i += if rest[i] == b'\\' { 2 } else { 1 };
        }
        let p = unquote(rest.get(i + 2..).unwrap_or_default());
        return p.strip_prefix("b/").map(str::to_string).unwrap_or(p);
    }
    let half = rest.len().saturating_sub(5) / 2;
    let (a, mid, b) = (
        rest.get(2..2 + half),
        rest.get(2 + half..5 + half),
        rest.get(5 + half..),
    );
    match (a, mid, b) {
        (Some(a), Some(b" b/"), Some(b)) if a == b && rest.starts_with(b"a/") => {
            String::from_utf8_lossy(b).into_owned()
        }
        _ => String::from_utf8_lossy(rest).into_owned(),
    }
}

fn walk_patch(
    git: &Git<'_>,
    r: &mut impl BufRead,
    max_line: usize,
    send: &mut dyn FnMut(FileAdds, &str),
    out: &mut Outcome,
    found: &mut BinarySearch<'_>,
) -> Result<(), ScanError> {
    let mut fetcher: Option<BlobFetcher> = None;
    let mut line = Vec::with_capacity(256);
    let mut commit = String::new();
    let mut file = FileAdds::default();
    // Remaining lines of the current hunk: (old, new).
    let mut hunk: Option<(u64, u64)> = None;
    let mut new_line: u64 = 0;
    let mut flush = |file: &mut FileAdds,
                     commit: &str,
                     fetcher: &mut Option<BlobFetcher>,
                     found: &mut BinarySearch<'_>|
     -> Result<(), ScanError> {
        widen(git, fetcher, file, commit, found)?;
        send(std::mem::take(file), commit);
        Ok(())
    };
    while read_line_bounded(r, &mut line, max_line)? {
        if let Some((old_left, new_left)) = hunk.as_mut() {
            match line.first() {
                Some(b'+') => {
                    file.starts.push((file.buf.len(), new_line));
                    file.buf.extend_from_slice(&line[1..]);
                    file.buf.push(b'\n');
                    if file.buf.len() as u64 > git.limits.max_text_blob {
                        return Err(ScanError::TooLarge(format!(
                            "commit {commit} adds more than {} bytes to {}",
                            git.limits.max_text_blob,
                            file.path.as_deref().unwrap_or("a file")
                        )));
                    }
                    new_line += 1;
                    *new_left = new_left.saturating_sub(1);
                }
                Some(b'-') => {
                    if file.joins.last() != Some(&new_line) {
                        file.joins.push(new_line);
                    }
                    *old_left = old_left.saturating_sub(1);
                }
                Some(b'\\') => {}
                _ => {
                    // Context (or an empty context line).
                    new_line += 1;
                    *old_left = old_left.saturating_sub(1);
                    *new_left = new_left.saturating_sub(1);
                }
            }
            if *old_left == 0 && *new_left == 0 {
                hunk = None;
            }
            continue;
        }
        if line.first() == Some(&0) {
            flush(&mut file, &commit, &mut fetcher, found)?;
            commit = String::from_utf8_lossy(&line[1..]).trim().to_string();
        } else if let Some(rest) = line.strip_prefix(b"diff --git ") {
            flush(&mut file, &commit, &mut fetcher, found)?;
            file.path = Some(diff_git_path(rest));
        } else if let Some(rest) = line.strip_prefix(b"index ") {
            let ids = rest.split(|b| *b == b' ').next().unwrap_or(b"");
            if let Some(pos) = ids.windows(2).position(|w| w == b"..") {
                file.new_blob = Some(String::from_utf8_lossy(&ids[pos + 2..]).into_owned());
            }
        } else if let Some(p) = line.strip_prefix(b"+++ ") {
            file.path = if p == b"/dev/null" {
                None
            } else {
                let p = unquote(p);
                Some(p.strip_prefix("b/").map(str::to_string).unwrap_or(p))
            };
        } else if line.starts_with(b"@@ ") {
            let Some((start, new_n, old_n)) = parse_hunk(&line) else {
                return Err(ScanError::Git("unreadable hunk header".into()));
            };
            // With no context (`-U0`) a hunk that adds nothing names the
            // new line before the deletion (`+2,0`): the line that now
            // follows it is the next.
            new_line = if new_n == 0 { start + 1 } else { start };
            if new_n > 0 || old_n > 0 {
                hunk = Some((old_n, new_n));
            }
        } else if line.starts_with(b"Binary files ") {
            // git says "binary" when EITHER side is binary or over the
            // big-file threshold (the text bound), so the old side may be
            // the reason: the new blob alone decides. Text within the
            // bound is scanned whole, as added lines; text over it refuses
            // the push; binary goes to the known-secret search.
            // All zeros: the file is deleted, nothing to read.
            let Some(blob) = file
                .new_blob
                .clone()
                .filter(|b| b.bytes().any(|c| c != b'0'))
            else {
                out.binary_files_skipped += 1;
                continue;
            };
            let fetch = match &mut fetcher {
                Some(f) => f,
                None => fetcher.insert(BlobFetcher::start(git)?),
            };
            let size = fetch.open(&blob)?;
            let path = file.path.as_deref().unwrap_or_default();
            let at = (commit.as_str(), path);
            match read_blob(&mut fetch.stdout, size, git.limits, at, found)? {
                Some(text) => {
                    file.buf = text;
                    file.starts.clear();
                }
                None => out.binary_files_skipped += 1,
            }
        }
    }
    flush(&mut file, &commit, &mut fetcher, found)?;
    Ok(())
}

/// Whether a file's added lines may be one part of a secret whose other
/// part is on lines the commit left alone, where a rule would only match
/// the two together: a PEM block's body or its `-----BEGIN`/`-----END`
/// lines, a bare value (16 or more characters of base64, hex or a token)
/// whose key is on the line before, or a key whose value is on the next
/// (`aws_secret_access_key:` alone). Pushed over two commits, each half
/// scans clean on its own.
fn may_be_part_of_a_secret(added: &[u8]) -> bool {
    added.split(|b| *b == b'\n').any(|line| {
        let t = line.trim_ascii();
        let bare_value = t.len() >= 16
            && t.iter()
                .all(|b| b.is_ascii_alphanumeric() || b"+/=_-.".contains(b));
        let has = |needle: &[u8]| t.windows(needle.len()).any(|w| w == needle);
        let marker = has(b"-----BEGIN ") || has(b"-----END ");
        // `key:`, `key =`, `key: "` (a value opened for the next line);
        // not every line that ends in a quote, which most code does.
        let open = t
            .strip_suffix(b"\"")
            .or_else(|| t.strip_suffix(b"'"))
            .unwrap_or(t);
        let key_alone = matches!(open.trim_ascii_end().last(), Some(b':' | b'='));
        bare_value || marker || key_alone
    })
}

/// Replaces a changed file's added lines with the whole new file when
/// they [may be part of a secret](may_be_part_of_a_secret), keeping the
/// added lines' numbers in `only_lines`: the rules then see the secret
/// whole, and a finding counts only where it touches an added line. A
/// new file is scanned whole already; a binary or over-bound new file
/// keeps its added lines (the known-secret search reads binary ones).
fn widen(
    git: &Git<'_>,
    fetcher: &mut Option<BlobFetcher>,
    file: &mut FileAdds,
    commit: &str,
    found: &mut BinarySearch<'_>,
) -> Result<(), ScanError> {
    // Added lines that may be half of a secret, or lines deleted between
    // two that may now make one (whatever was added, or nothing).
    let wanted =
        !file.joins.is_empty() || (!file.starts.is_empty() && may_be_part_of_a_secret(&file.buf));
    if file.added || !wanted {
        return Ok(());
    }
    let Some(blob) = file
        .new_blob
        .clone()
        .filter(|b| b.bytes().any(|c| c != b'0'))
    else {
        return Ok(());
    };
    let fetch = match fetcher {
        Some(f) => f,
        None => fetcher.insert(BlobFetcher::start(git)?),
    };
    let size = fetch.open(&blob)?;
    if size > git.limits.max_text_blob {
        // Read past it: its added lines are scanned as they are.
        let want = size.saturating_add(1);
        let read = std::io::copy(&mut (&mut fetch.stdout).take(want), &mut std::io::sink())
            .map_err(cat_file_io)?;
        if read != want {
            return Err(ScanError::Git("git cat-file ended early".into()));
        }
        return Ok(());
    }
    let path = file.path.clone().unwrap_or_default();
    if let Some(text) = read_blob(&mut fetch.stdout, size, git.limits, (commit, &path), found)? {
        file.only_lines = Some(file.starts.iter().map(|(_, l)| *l).collect());
        file.buf = text;
        file.starts.clear();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The halves of a split secret widen the scan; ordinary code lines
    /// (one ending in a string literal, say) do not, or every changed
    /// source file would be read whole.
    #[test]
    fn what_may_be_half_of_a_secret() {
        for half in [
            "aws_secret_access_key:",
            "password = ",
            "token: \"",
            "  Zk3pQ9vT2mXw8LrB5nYc1HdJ6sFa0GeUoKiP4qEt",
            "-----BEGIN OPENSSH PRIVATE KEY-----",
            "-----END RSA PRIVATE KEY-----",
        ] {
            assert!(may_be_part_of_a_secret(half.as_bytes()), "{half}");
        }
        for line in [
            "import \"fmt\"",
            "println!(\"done\");",
            "name = 'app'",
            "let x = 1;",
            "short",
        ] {
            assert!(!may_be_part_of_a_secret(line.as_bytes()), "{line}");
        }
    }

    #[test]
    fn hunks() {
        assert_eq!(parse_hunk(b"@@ -1,2 +3,4 @@ fn x"), Some((3, 4, 2)));
        assert_eq!(parse_hunk(b"@@ -0,0 +1 @@"), Some((1, 1, 0)));
        assert_eq!(parse_hunk(b"@@ garbage"), None);
    }

    #[test]
    fn quoting() {
        assert_eq!(unquote(b"plain"), "plain");
        assert_eq!(unquote(br#""a\tb\"c\\d""#), "a\tb\"c\\d");
        assert_eq!(unquote(br#""caf\303\251""#), "café");
    }

    #[test]
    fn patch_walk_keeps_paths_and_lines_whatever_the_content() {
        // File content that looks like patch headers stays content: hunk
        // line counts, not line shapes, decide what is added.
        let patch = b"\0aaaa\n\ndiff --git a/x.txt b/x.txt\nindex 1..2 100644\n--- a/x.txt\n\
+++ b/x.txt\n@@ -1,1 +1,4 @@\n ctx\n+diff --git a/evil b/evil\n++++ b/evil\n+@@ -1 +1 @@\n\
diff --git a/\"q\\tp\" b/\"q\\tp\"\n--- /dev/null\n+++ \"b/q\\tp\"\n@@ -0,0 +1 @@\n+second\n\
\0bbbb\n\ndiff --git a/y b/y\n--- a/y\n+++ b/y\n@@ -5,2 +10,2 @@\n-old\n+new\n same\n";
        let limits = Limits::default();
        let env = Vec::new();
        let git = Git {
            env: &env,
            limits: &limits,
        };
        type Seen = (String, Option<String>, Vec<u8>, Vec<(usize, u64)>);
        let mut files: Vec<Seen> = Vec::new();
        let mut send = |f: FileAdds, c: &str| files.push((c.to_string(), f.path, f.buf, f.starts));
        let mut out = Outcome::default();
        let mut r = std::io::Cursor::new(patch.to_vec());
        let engine = Engine::new().unwrap();
        let mut found = BinarySearch::new(&engine);
        walk_patch(&git, &mut r, 1 << 20, &mut send, &mut out, &mut found).unwrap();
        let files: Vec<_> = files.into_iter().filter(|f| !f.2.is_empty()).collect();
        assert_eq!(files.len(), 3, "{files:?}");
        assert_eq!(files[0].0, "aaaa");
        assert_eq!(files[0].1.as_deref(), Some("x.txt"));
        assert_eq!(
            files[0].2,
            b"diff --git a/evil b/evil\n+++ b/evil\n@@ -1 +1 @@\n"
        );
        assert_eq!(files[0].3, vec![(0, 2), (25, 3), (36, 4)]);
        assert_eq!(files[1].1.as_deref(), Some("q\tp"));
        assert_eq!(files[2].0, "bbbb");
        assert_eq!(files[2].3, vec![(0, 10)]);
    }

    #[test]
    fn lines_of_whole_files_and_of_hunks() {
        let buf = b"one\ntwo\nthree\n";
        assert_eq!(line_at(buf, &[], 0), 1);
        assert_eq!(line_at(buf, &[], 4), 2);
        assert_eq!(line_at(buf, &[], 9), 3);
        assert_eq!(line_at(buf, &[(0, 10), (4, 20)], 5), 20);
    }

    /// The blob reader: text queued whole, binary skipped by content at any
    /// size, text over the bound refused, and cat-file's framing checked.
    #[test]
    fn blob_reader_skips_binary_and_refuses_big_text() {
        let limits = Limits {
            max_text_blob: 16,
            ..Limits::default()
        };
        let loc = |id: &str| ("c0ffee".to_string(), "p".to_string(), id.to_string());
        let run = |input: Vec<u8>, ids: &[&str]| {
            let (ltx, lrx) = sync_channel(16);
            for id in ids {
                ltx.send(loc(id)).unwrap();
            }
            drop(ltx);
            let (tx, rx) = sync_channel(16);
            let mut r = std::io::Cursor::new(input);
            let engine = Engine::new().unwrap();
            let mut found = BinarySearch::new(&engine);
            let res = read_blobs(&limits, &mut r, lrx, &tx, &mut found);
            drop(tx);
            let files: Vec<Vec<u8>> = rx.into_iter().map(|(_, f)| f.buf).collect();
            (res, files)
        };
        let mut big_binary = b"bb blob 40\n\0".to_vec();
        big_binary.extend([b'x'; 39]);
        big_binary.push(b'\n');
        let mut input = b"aa blob 6\nhello\n\n".to_vec();
        input.extend(b"ab blob 3\na\0b\n");
        input.extend(&big_binary);
        input.extend(b"ac blob 0\n\n");
        let (res, files) = run(input, &["aa", "ab", "bb", "ac"]);
        assert_eq!(res, Ok(2));
        // Every added file reaches the scanners, for its name; binary and
        // empty ones without content.
        assert_eq!(files, vec![b"hello\n".to_vec(), vec![], vec![], vec![]]);

        let mut big_text = b"cc blob 17\n".to_vec();
        big_text.extend([b'y'; 17]);
        big_text.push(b'\n');
        let (res, _) = run(big_text, &["cc"]);
        assert!(matches!(res, Err(ScanError::TooLarge(_))), "{res:?}");

        let (res, _) = run(b"dd missing\n".to_vec(), &["dd"]);
        assert!(matches!(res, Err(ScanError::Git(_))), "{res:?}");
        let (res, _) = run(b"ee blob 2\nabX".to_vec(), &["ee"]);
        assert!(matches!(res, Err(ScanError::Git(_))), "{res:?}");
        let (res, _) = run(b"ff blob 2\nab\n".to_vec(), &["ff", "gg"]);
        assert!(matches!(res, Err(ScanError::Git(_))), "cut short: {res:?}");
    }

    /// With a known secret, binary blobs are searched: whole under the
    /// bound, streamed over it, with the offset in the file.
    #[test]
    fn blob_reader_searches_binary_for_known_secrets() {
        let secret = b"kn0wn-s3cret-value-0123456789";
        let engine = Engine::builder()
            .known_secret(std::str::from_utf8(secret).unwrap())
            .build()
            .unwrap();
        let limits = Limits {
            max_text_blob: 64,
            ..Limits::default()
        };
        let blob = |id: &str, content: &[u8]| {
            let mut b = format!("{id} blob {}\n", content.len()).into_bytes();
            b.extend_from_slice(content);
            b.push(b'\n');
            b
        };
        let mut small = b"\0\0".to_vec();
        small.extend_from_slice(secret);
        // Over the bound, the secret past the first piece and across the
        // second piece's boundary.
        let mut big = vec![0u8; BINARY_PIECE * 2 - 5];
        big.extend_from_slice(&bottle_dlp::hex_encode(secret, false));
        big.extend([1u8; 100]);
        let mut clean = vec![0u8; 300];
        clean.extend_from_slice(&secret[..12]);
        let mut input = blob("aa", &small);
        input.extend(blob("bb", &big));
        input.extend(blob("cc", &clean));
        input.extend(blob("dd", b"text without it\n"));
        let (ltx, lrx) = sync_channel(16);
        for (id, path) in [
            ("aa", "s.bin"),
            ("bb", "b.bin"),
            ("cc", "c.bin"),
            ("dd", "t"),
        ] {
            ltx.send(("c0ffee".to_string(), path.to_string(), id.to_string()))
                .unwrap();
        }
        drop(ltx);
        let (tx, rx) = sync_channel(16);
        let mut found = BinarySearch::new(&engine);
        let mut r = std::io::Cursor::new(input);
        let res = read_blobs(&limits, &mut r, lrx, &tx, &mut found);
        drop(tx);
        assert_eq!(res, Ok(3));
        let sent: Vec<(String, usize)> = rx
            .into_iter()
            .map(|(_, f)| (f.path.unwrap_or_default(), f.buf.len()))
            .collect();
        let names = ["s.bin", "b.bin", "c.bin", "t"].map(|p| p.to_string());
        assert_eq!(
            sent,
            names.into_iter().zip([0, 0, 0, 16]).collect::<Vec<_>>()
        );
        let at: Vec<_> = found
            .findings
            .iter()
            .map(|f| (f.path.as_deref().unwrap(), f.offset, f.rule.as_str()))
            .collect();
        assert_eq!(
            at,
            vec![
                ("s.bin", Some(2), "known-secret"),
                ("b.bin", Some(BINARY_PIECE as u64 * 2 - 5), "known-secret"),
            ]
        );
        assert!(found.findings.iter().all(|f| f.redacted == "****"));
        assert_eq!(found.files, 3);
        assert_eq!(found.bytes, (small.len() + big.len() + clean.len()) as u64);
    }

    /// git calls a change "binary" when the OLD side is binary or over the
    /// text bound too; new text there is scanned by the rules, with or
    /// without known secrets.
    #[test]
    fn a_file_that_was_binary_or_too_big_is_scanned_as_text() {
        const PAT: &str = "ghp_aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5";
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_str().unwrap().to_string();
        let vars = [
            ("PATH", std::env::var("PATH").unwrap_or_default()),
            ("HOME", path.clone()),
            ("GIT_DIR", format!("{path}/repo.git")),
            ("GIT_INDEX_FILE", format!("{path}/index")),
            ("GIT_CONFIG_NOSYSTEM", "1".into()),
            ("GIT_CONFIG_GLOBAL", "/dev/null".into()),
            ("GIT_AUTHOR_NAME", "a".into()),
            ("GIT_AUTHOR_EMAIL", "a@example.com".into()),
            ("GIT_COMMITTER_NAME", "a".into()),
            ("GIT_COMMITTER_EMAIL", "a@example.com".into()),
        ];
        let env: Vec<(String, Secret)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), Secret::new(v.clone())))
            .collect();
        let limits = Limits {
            max_text_blob: 200,
            ..Limits::default()
        };
        let git = Git {
            env: &env,
            limits: &limits,
        };
        let run = |args: &[&str]| {
            String::from_utf8(git.output(args).unwrap())
                .unwrap()
                .trim()
                .to_string()
        };
        run(&["init", "-q", "--bare", &format!("{path}/repo.git")]);
        // A commit whose only file `x` holds `content`, on `parent`.
        let commit = |content: &[u8], parent: Option<&str>| {
            let file = dir.path().join("x");
            std::fs::write(&file, content).unwrap();
            let blob = run(&["hash-object", "-w", file.to_str().unwrap()]);
            run(&["read-tree", "--empty"]);
            run(&[
                "update-index",
                "--add",
                "--cacheinfo",
                &format!("100644,{blob},x"),
            ]);
            let tree = run(&["write-tree"]);
            let mut args = vec!["commit-tree", tree.as_str(), "-m", "c"];
            if let Some(p) = parent {
                args.extend(["-p", p]);
            }
            run(&args)
        };
        // The old sides are on refs, so only the new commits are scanned.
        let binary = commit(b"a\0b", None);
        run(&["update-ref", "refs/heads/binary", &binary]);
        let big = commit(&[b'y'; 300], None);
        run(&["update-ref", "refs/heads/big", &big]);
        let leak = format!("one\nkey = \"{PAT}\"\n");
        let from_binary = commit(leak.as_bytes(), Some(&binary));
        let from_big = commit(leak.as_bytes(), Some(&big));
        let too_big = commit(&[b'z'; 300], Some(&binary));
        let still_binary = commit(format!("\0{PAT}").as_bytes(), Some(&big));

        let plain = Engine::new().unwrap();
        let known = Engine::builder()
            .known_secret("kn0wn-s3cret-value-0123456789")
            .build()
            .unwrap();
        for engine in [&plain, &known] {
            for tip in [&from_binary, &from_big] {
                let out = scan_push(&git, &[tip], engine).unwrap();
                let at: Vec<_> = out
                    .findings
                    .iter()
                    .map(|f| (f.path.as_deref(), f.line, f.offset, f.rule.as_str()))
                    .collect();
                assert_eq!(at, [(Some("x"), 2, None, "github-pat")], "{tip}");
                assert_eq!(out.binary_files_skipped, 0);
            }
            let e = scan_push(&git, &[&too_big], engine).unwrap_err();
            assert!(matches!(e, ScanError::TooLarge(_)), "{e:?}");
            // Binary on both sides: the rules skip it.
            let out = scan_push(&git, &[&still_binary], engine).unwrap();
            assert!(out.findings.is_empty(), "{:?}", out.findings);
            assert_eq!(out.binary_files_skipped, 1);
        }
    }

    #[test]
    fn paths_of_diff_headers() {
        assert_eq!(diff_git_path(b"a/x.bin b/x.bin"), "x.bin");
        assert_eq!(diff_git_path(b"a/d b/e b/d b/e"), "d b/e");
        assert_eq!(diff_git_path(br#""a/q\tp" "b/q\tp""#), "q\tp");
        assert_eq!(diff_git_path(b"odd"), "odd");
    }

    #[test]
    fn bounded_lines() {
        let mut r = std::io::Cursor::new(b"short\nlooooooong\n".to_vec());
        let mut b = Vec::new();
        assert!(read_line_bounded(&mut r, &mut b, 8).unwrap());
        assert_eq!(b, b"short");
        assert!(read_line_bounded(&mut r, &mut b, 8).is_err());
    }
}
