//! The commit walk and DLP scan of a push.
//!
//! Every commit new to the mirror (`git rev-list <new tips> --not --all`:
//! new branches, merges, older commits of the range) is scanned:
//!
//! - its message, read raw with `git cat-file --batch`;
//! - the lines each file gains, from one `git log -p` stream (merges against
//!   their first parent, so an "evil merge" cannot hide content). The added
//!   lines of one file in one commit are scanned as one buffer, so a secret
//!   spanning lines (a private key block) is found, and each finding is
//!   mapped back to its line.
//!
//! Git decides binary by content (a NUL in the first 8000 bytes) and binary
//! files are skipped. Attributes cannot turn that off for a text file: git
//! runs with `GIT_ATTR_SOURCE` set to the empty tree and no attributes
//! file, so a pushed `.gitattributes` with `-diff` has no effect. Files
//! larger than the text bound come out of git as "binary"; the gate then
//! looks at the blob itself and refuses the push if it is text.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};

use bottle_dlp::Engine;
use bottle_secret::Secret;

use crate::audit::FindingReport;
use crate::limits::Limits;

/// The empty tree: `GIT_ATTR_SOURCE` points here so no pushed
/// `.gitattributes` is ever read.
const EMPTY_TREE: &str = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";
/// At most this many findings are reported (the push is refused anyway).
const MAX_FINDINGS: usize = 50;
/// git's own binary test looks at this many leading bytes.
const BINARY_PROBE: usize = 8000;

/// What the walk found.
#[derive(Debug, Default)]
pub struct Outcome {
    pub commits: u64,
    pub findings: Vec<FindingReport>,
    pub binary_files_skipped: u64,
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
        ];
        c.env("GIT_CONFIG_COUNT", cfg.len().to_string());
        for (i, (k, v)) in cfg.iter().enumerate() {
            c.env(format!("GIT_CONFIG_KEY_{i}"), k);
            c.env(format!("GIT_CONFIG_VALUE_{i}"), v);
        }
        c.env("GIT_ATTR_SOURCE", EMPTY_TREE);
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

    /// `git merge-base --is-ancestor old new`.
    pub fn is_ancestor(&self, old: &str, new: &str) -> bool {
        self.command(&["merge-base", "--is-ancestor", old, new])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    fn spawn(&self, args: &[&str], stdin: bool) -> Result<Child, ScanError> {
        let mut c = self.command(args);
        c.stdout(Stdio::piped()).stderr(Stdio::null());
        if stdin {
            c.stdin(Stdio::piped());
        }
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
    let commits = new_commits(git, tips)?;
    out.commits = commits.len() as u64;
    if commits.is_empty() {
        return Ok(out);
    }
    scan_messages(git, &commits, engine, &mut out)?;
    scan_diffs(git, tips, engine, &mut out)?;
    Ok(out)
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

fn push_findings(
    out: &mut Outcome,
    engine: &Engine,
    buf: &[u8],
    line_starts: &[(usize, u64)],
    commit: &str,
    path: Option<&str>,
) {
    if buf.is_empty() || out.findings.len() >= MAX_FINDINGS {
        return;
    }
    for f in engine.scan(buf) {
        let start = usize::try_from(f.range.start).unwrap_or(usize::MAX);
        let idx = line_starts.partition_point(|(off, _)| *off <= start);
        let line = idx
            .checked_sub(1)
            .and_then(|i| line_starts.get(i))
            .map_or(0, |(_, l)| *l);
        out.findings.push(FindingReport {
            commit: commit.to_string(),
            path: path.map(str::to_string),
            line,
            rule: f.rule.to_string(),
            redacted: f.redacted,
        });
        if out.findings.len() >= MAX_FINDINGS {
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
            // The message follows the first empty line of the commit object.
            let msg_at = body
                .windows(2)
                .position(|w| w == b"\n\n")
                .map_or(body.len(), |p| p + 2);
            let msg = &body[msg_at..];
            let mut starts = vec![(0usize, 1u64)];
            for (i, b) in msg.iter().enumerate() {
                if *b == b'\n' {
                    starts.push((i + 1, starts.len() as u64 + 1));
                }
            }
            push_findings(out, engine, msg, &starts, id, None);
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
fn read_line_bounded(
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
}

fn scan_diffs(
    git: &Git<'_>,
    tips: &[&str],
    engine: &Engine,
    out: &mut Outcome,
) -> Result<(), ScanError> {
    let mut args = vec![
        "log",
        "-p",
        "--no-color",
        "--no-renames",
        "--no-ext-diff",
        "--no-textconv",
        "--full-index",
        "--diff-merges=first-parent",
        "--src-prefix=a/",
        "--dst-prefix=b/",
        "--format=%x00%H",
    ];
    args.extend_from_slice(tips);
    args.extend_from_slice(&["--not", "--all", "--"]);
    let mut child = git.spawn(&args, false)?;
    let Some(stdout) = child.stdout.take() else {
        return Err(ScanError::Git("no stdout".into()));
    };
    let max_line = usize::try_from(git.limits.max_text_blob)
        .unwrap_or(usize::MAX)
        .saturating_add(16);
    let mut r = BufReader::with_capacity(256 * 1024, stdout);
    // Two stages on two threads: this one parses git's patch stream, the
    // other runs the DLP engine over each file's added lines, so git's diff
    // work and the scan overlap. The channel is bounded: memory stays at a
    // few files' worth.
    let (tx, rx) = std::sync::mpsc::sync_channel::<(String, FileAdds)>(16);
    let (result, found) = std::thread::scope(|s| {
        let scanner = s.spawn(move || {
            let mut found = Outcome::default();
            for (commit, f) in rx {
                push_findings(
                    &mut found,
                    engine,
                    &f.buf,
                    &f.starts,
                    &commit,
                    f.path.as_deref(),
                );
            }
            found.findings
        });
        let mut send = |f: FileAdds, commit: &str| {
            if !f.buf.is_empty() {
                let _ = tx.send((commit.to_string(), f));
            }
        };
        let result = walk_patch(git, &mut r, max_line, &mut send, out);
        drop(tx);
        let found = scanner
            .join()
            .map_err(|_| ScanError::Git("the scanner thread failed".into()));
        (result, found)
    });
    if result.is_err() {
        let _ = child.kill();
    }
    drop(r);
    let status = child.wait().map_err(|e| ScanError::Git(e.to_string()))?;
    result?;
    out.findings.extend(found?);
    out.findings.truncate(MAX_FINDINGS);
    if !status.success() {
        return Err(ScanError::Git("git log -p failed".into()));
    }
    Ok(())
}

fn walk_patch(
    git: &Git<'_>,
    r: &mut impl BufRead,
    max_line: usize,
    send: &mut dyn FnMut(FileAdds, &str),
    out: &mut Outcome,
) -> Result<(), ScanError> {
    let mut line = Vec::with_capacity(256);
    let mut commit = String::new();
    let mut file = FileAdds::default();
    // Remaining lines of the current hunk: (old, new).
    let mut hunk: Option<(u64, u64)> = None;
    let mut new_line: u64 = 0;
    let mut flush = |file: &mut FileAdds, commit: &str| {
        send(std::mem::take(file), commit);
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
                Some(b'-') => *old_left = old_left.saturating_sub(1),
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
            flush(&mut file, &commit);
            commit = String::from_utf8_lossy(&line[1..]).trim().to_string();
        } else if line.starts_with(b"diff --git ") {
            flush(&mut file, &commit);
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
            new_line = start;
            if new_n > 0 || old_n > 0 {
                hunk = Some((old_n, new_n));
            }
        } else if line.starts_with(b"Binary files ") {
            out.binary_files_skipped += 1;
            if let Some(blob) = file.new_blob.as_deref() {
                check_binary_blob(git, blob, &commit)?;
            }
        }
    }
    flush(&mut file, &commit);
    Ok(())
}

/// git says "binary" both for real binary content and for files over the
/// big-file threshold. The second kind is text too large to scan: refuse.
fn check_binary_blob(git: &Git<'_>, blob: &str, commit: &str) -> Result<(), ScanError> {
    if blob.bytes().all(|b| b == b'0') {
        return Ok(());
    }
    let size_out = git.output(&["cat-file", "-s", blob])?;
    let size: u64 = String::from_utf8_lossy(&size_out)
        .trim()
        .parse()
        .unwrap_or(0);
    if size <= git.limits.max_text_blob {
        // Under the threshold git judged by content: really binary.
        return Ok(());
    }
    let mut child = git.spawn(&["cat-file", "blob", blob], false)?;
    let mut probe = vec![0u8; BINARY_PROBE];
    let mut got = 0;
    if let Some(mut s) = child.stdout.take() {
        while got < probe.len() {
            match s.read(&mut probe[got..]) {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    if probe[..got].contains(&0) {
        return Ok(());
    }
    Err(ScanError::TooLarge(format!(
        "commit {commit} adds a {size}-byte text file; text is scanned up to {} bytes",
        git.limits.max_text_blob
    )))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

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
        walk_patch(&git, &mut r, 1 << 20, &mut send, &mut out).unwrap();
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
    fn bounded_lines() {
        let mut r = std::io::Cursor::new(b"short\nlooooooong\n".to_vec());
        let mut b = Vec::new();
        assert!(read_line_bounded(&mut r, &mut b, 8).unwrap());
        assert_eq!(b, b"short");
        assert!(read_line_bounded(&mut r, &mut b, 8).is_err());
    }
}
