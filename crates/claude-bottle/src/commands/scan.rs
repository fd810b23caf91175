//! `claude-bottle scan`: the DLP engine over files, folders and stdin.
//!
//! Every input is read in chunks through the engine's stream scanner, so
//! memory stays bounded whatever the file size. Folders are walked
//! recursively in name order, skipping `.git`, symbolic links and binary
//! files (a NUL byte in the first 8 KiB, as git and ripgrep decide). Output is
//! one line per finding, `PATH:LINE:COLUMN: RULE REDACTED`, or one JSON
//! object per line; a secret never appears beyond its first four characters.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use bottle_dlp::{Engine, Finding, MIN_KNOWN_SECRET_LEN};

use crate::report::UsageError;

pub struct ScanArgs {
    pub paths: Vec<PathBuf>,
    pub json: bool,
    pub known_secret_env: Vec<String>,
}

/// Bytes read at a time.
const READ_SIZE: usize = 256 * 1024;
/// New bytes between two scans of the stream scanner: large, so that the
/// look-back it rescans each time is a small share of the work.
const SCAN_STEP: usize = 1024 * 1024;
/// How much of a file decides whether it is binary.
const BINARY_PROBE: usize = 8 * 1024;

pub fn run(args: ScanArgs) -> Result<ExitCode> {
    let engine = build_engine(&args.known_secret_env)?;
    let mut inputs = Vec::new();
    if args.paths.is_empty() {
        inputs.push(Input::Stdin);
    }
    for path in &args.paths {
        if path.as_os_str() == "-" {
            inputs.push(Input::Stdin);
            continue;
        }
        let meta = fs::metadata(path).map_err(|e| {
            UsageError::new(format!("cannot read `{}`: {e}", path.display()))
                .with_hint("check the path and its permissions, or leave it out")
        })?;
        if meta.is_dir() {
            walk(path, &mut inputs)?;
        } else {
            inputs.push(Input::File {
                path: path.clone(),
                skip_binary: false,
            });
        }
    }
    let stdout = io::stdout();
    let mut out = Output {
        json: args.json,
        w: BufWriter::new(stdout.lock()),
        found: false,
    };
    for input in inputs {
        match input {
            Input::Stdin => scan_reader(&engine, io::stdin().lock(), "-", false, &mut out)?,
            Input::File { path, skip_binary } => {
                let file = File::open(&path).map_err(|e| unreadable(&path, &e))?;
                let shown = path.display().to_string();
                scan_reader(&engine, file, &shown, skip_binary, &mut out).map_err(|e| {
                    match e.downcast::<io::Error>() {
                        Ok(io) => unreadable(&path, &io).into(),
                        Err(other) => other,
                    }
                })?;
            }
        }
    }
    out.w.flush()?;
    Ok(if out.found {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn unreadable(path: &Path, e: &io::Error) -> UsageError {
    UsageError::new(format!("cannot read `{}`: {e}", path.display()))
        .with_hint("check the file's permissions, or leave it out")
}

fn build_engine(vars: &[String]) -> Result<Engine> {
    let mut builder = Engine::builder();
    for var in vars {
        let value = std::env::var(var).map_err(|e| {
            let why = match e {
                std::env::VarError::NotPresent => "is not set",
                std::env::VarError::NotUnicode(_) => "is not valid UTF-8",
            };
            UsageError::new(format!(
                "`--known-secret-env {var}`: the variable `{var}` {why}"
            ))
            .with_hint(format!(
                "export `{var}` with the secret's value, or drop the flag"
            ))
        })?;
        if value.len() < MIN_KNOWN_SECRET_LEN {
            // Never echo the value, not even a short one.
            return Err(UsageError::new(format!(
                "`--known-secret-env {var}`: the value is {} bytes long; at least \
                 {MIN_KNOWN_SECRET_LEN} are needed so it does not match ordinary text",
                value.len()
            ))
            .with_hint(format!("check that `{var}` holds the whole secret"))
            .into());
        }
        builder = builder.known_secret_value(bottle_secret::Secret::new(value));
    }
    Ok(builder.build()?)
}

enum Input {
    Stdin,
    File { path: PathBuf, skip_binary: bool },
}

/// Adds the files under `dir`, in name order, without following symbolic
/// links (a link loop would never end) and without `.git`.
fn walk(dir: &Path, inputs: &mut Vec<Input>) -> Result<()> {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .and_then(|rd| rd.collect::<io::Result<Vec<_>>>())
        .map_err(|e| unreadable(dir, &e))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let kind = entry.file_type().map_err(|e| unreadable(&path, &e))?;
        if kind.is_dir() {
            if entry.file_name() != ".git" {
                walk(&path, inputs)?;
            }
        } else if kind.is_file() {
            inputs.push(Input::File {
                path,
                skip_binary: true,
            });
        }
    }
    Ok(())
}

struct Output<W: Write> {
    json: bool,
    w: W,
    found: bool,
}

impl<W: Write> Output<W> {
    fn report(&mut self, path: &str, line: u64, column: u64, f: &Finding) -> io::Result<()> {
        self.found = true;
        if self.json {
            // Written by hand to keep the documented key order.
            let text = |v: &str| serde_json::Value::from(v).to_string();
            writeln!(
                self.w,
                r#"{{"path":{},"line":{line},"column":{column},"rule":{},"redacted":{}}}"#,
                text(path),
                text(f.rule),
                text(&f.redacted)
            )
        } else {
            writeln!(self.w, "{path}:{line}:{column}: {} {}", f.rule, f.redacted)
        }
    }
}

fn scan_reader<R: Read, W: Write>(
    engine: &Engine,
    mut reader: R,
    shown: &str,
    skip_binary: bool,
    out: &mut Output<W>,
) -> Result<()> {
    let mut stream = engine.stream_with_step(SCAN_STEP);
    let mut lines = LineIndex::default();
    let mut buf = vec![0u8; READ_SIZE];
    let mut first = true;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        let chunk = &buf[..n];
        if first && skip_binary && chunk[..n.min(BINARY_PROBE)].contains(&0) {
            return Ok(());
        }
        first = false;
        lines.append(chunk);
        let found = stream.push(chunk);
        emit(&mut lines, found, shown, out)?;
        lines.forget_before(stream.settled());
    }
    let found = stream.finish();
    emit(&mut lines, found, shown, out)?;
    Ok(())
}

fn emit<W: Write>(
    lines: &mut LineIndex,
    mut found: Vec<Finding>,
    shown: &str,
    out: &mut Output<W>,
) -> io::Result<()> {
    found.sort_by_key(|f| (f.range.start, f.range.end));
    let offsets: Vec<u64> = found.iter().map(|f| f.range.start).collect();
    for (f, (line, column)) in found.iter().zip(lines.locate_sorted(&offsets)) {
        out.report(shown, line, column, f)?;
    }
    Ok(())
}

/// Line and column of stream offsets, keeping only the bytes the stream
/// scanner may still report on.
struct LineIndex {
    window: Vec<u8>,
    /// Stream offset of `window[0]`.
    base: u64,
    /// 1-based line number at `base`, and the offset where that line starts.
    line_at_base: u64,
    line_start_at_base: u64,
}

impl Default for LineIndex {
    fn default() -> Self {
        LineIndex {
            window: Vec::new(),
            base: 0,
            line_at_base: 1,
            line_start_at_base: 0,
        }
    }
}

impl LineIndex {
    fn append(&mut self, chunk: &[u8]) {
        self.window.extend_from_slice(chunk);
    }

    /// 1-based line, and 1-based column in bytes.
    fn locate(&self, offset: u64) -> (u64, u64) {
        self.locate_sorted(&[offset])[0]
    }

    /// [`LineIndex::locate`] for ascending offsets, in one pass over the
    /// window.
    fn locate_sorted(&self, offsets: &[u64]) -> Vec<(u64, u64)> {
        let mut out = Vec::with_capacity(offsets.len());
        let (mut pos, mut line, mut line_start) =
            (0usize, self.line_at_base, self.line_start_at_base);
        for &offset in offsets {
            let upto = usize::try_from(offset.saturating_sub(self.base))
                .unwrap_or(usize::MAX)
                .min(self.window.len());
            if upto < pos {
                (pos, line, line_start) = (0, self.line_at_base, self.line_start_at_base);
            }
            for (i, &b) in self.window[pos..upto].iter().enumerate() {
                if b == b'\n' {
                    line += 1;
                    line_start = self.base + (pos + i) as u64 + 1;
                }
            }
            pos = upto;
            out.push((line, offset.saturating_sub(line_start) + 1));
        }
        out
    }

    fn forget_before(&mut self, offset: u64) {
        let cut = usize::try_from(offset.saturating_sub(self.base))
            .unwrap_or(usize::MAX)
            .min(self.window.len());
        if cut == 0 {
            return;
        }
        let (line, column) = self.locate(self.base + cut as u64);
        self.line_at_base = line;
        self.line_start_at_base = self.base + cut as u64 + 1 - column;
        self.window.drain(..cut);
        self.base += cut as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_index_survives_forgetting() {
        let mut l = LineIndex::default();
        l.append(b"ab\ncd\nef");
        assert_eq!(l.locate(0), (1, 1));
        assert_eq!(l.locate(4), (2, 2));
        l.forget_before(4);
        assert_eq!(l.locate(4), (2, 2));
        assert_eq!(l.locate(7), (3, 2));
        l.append(b"gh\n");
        l.forget_before(9);
        assert_eq!(l.locate(9), (3, 4));
        assert_eq!(l.locate(11), (4, 1));
    }
}
