//! `claude-bottle scan`: the DLP engine over files, folders and stdin.
//!
//! An input of up to 8 MiB is read whole into one buffer, reused for every
//! input, and scanned in one pass; a larger one goes in chunks through the
//! engine's stream scanner, so memory stays bounded whatever the size. Line
//! and column are worked out only for findings. Folders are walked
//! recursively in name order, skipping `.git`, symbolic links and binary
//! files (a NUL byte in the first 8 KiB, as git and ripgrep decide). Output is
//! one line per finding, `PATH:LINE:COLUMN: RULE REDACTED`, or one JSON
//! object per line, control characters written out in both; a secret never
//! appears beyond its first four characters.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use bottle_dlp::{Engine, Finding, MIN_KNOWN_SECRET_LEN, StreamScanner};

use crate::report::UsageError;

pub struct ScanArgs {
    pub paths: Vec<PathBuf>,
    pub json: bool,
    pub known_secret_env: Vec<String>,
}

/// Inputs up to this size are read whole and scanned in one pass; larger ones
/// are streamed.
const WHOLE_MAX: usize = 8 * 1024 * 1024;
/// Bytes read at a time when streaming.
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
    let mut scanner = Scanner::new(&engine);
    for input in inputs {
        match input {
            Input::Stdin => scanner.scan(io::stdin().lock(), "-", false, &mut out)?,
            Input::File { path, skip_binary } => {
                let file = File::open(&path).map_err(|e| unreadable(&path, &e))?;
                let shown = path.display().to_string();
                scanner
                    .scan(file, &shown, skip_binary, &mut out)
                    .map_err(|e| match e.downcast::<io::Error>() {
                        Ok(io) => unreadable(&path, &io).into(),
                        Err(other) => other,
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
        // A file name (and the start of a secret) can hold control
        // characters; written raw, an escape sequence in one would drive the
        // terminal of whoever reads the output, and a line break would forge
        // a finding. Both formats write them out.
        if self.json {
            // Written by hand to keep the documented key order.
            let text = crate::output::json_string;
            writeln!(
                self.w,
                r#"{{"path":{},"line":{line},"column":{column},"rule":{},"redacted":{}}}"#,
                text(path),
                text(f.rule),
                text(&f.redacted)
            )
        } else {
            let text = crate::output::printable_field;
            writeln!(
                self.w,
                "{}:{line}:{column}: {} {}",
                text(path),
                f.rule,
                text(&f.redacted)
            )
        }
    }
}

/// Reads and scans inputs, reusing one buffer for all of them.
struct Scanner<'e> {
    engine: &'e Engine,
    /// Holds a whole input up to `whole_max` bytes; allocated once, at the
    /// first input, so no input pays for zeroing it again.
    buf: Vec<u8>,
    whole_max: usize,
}

impl<'e> Scanner<'e> {
    fn new(engine: &'e Engine) -> Self {
        Scanner::with_whole_max(engine, WHOLE_MAX)
    }

    fn with_whole_max(engine: &'e Engine, whole_max: usize) -> Self {
        Scanner {
            engine,
            buf: Vec::new(),
            // Streaming reads chunks into the same buffer.
            whole_max: whole_max.max(READ_SIZE),
        }
    }

    /// Scans one input: whole if it fits in the buffer, which is one pass of
    /// the engine with no copy; streamed otherwise, so memory stays bounded.
    fn scan<R: Read, W: Write>(
        &mut self,
        mut reader: R,
        shown: &str,
        skip_binary: bool,
        out: &mut Output<W>,
    ) -> Result<()> {
        if self.buf.len() < self.whole_max {
            self.buf = vec![0; self.whole_max];
        }
        let buf = &mut self.buf[..];
        // Enough for the binary probe first (one read, usually, which asks
        // for the whole buffer), so a large binary file is not read further.
        let (mut filled, mut eof) = fill(&mut reader, buf, 0, BINARY_PROBE)?;
        if skip_binary && buf[..filled.min(BINARY_PROBE)].contains(&0) {
            return Ok(());
        }
        if !eof {
            (filled, eof) = fill(&mut reader, buf, filled, buf.len())?;
        }
        if eof {
            let data = &buf[..filled];
            let found = self.engine.scan(data);
            if !found.is_empty() {
                emit(data, (0, 1, 0), found, shown, out)?;
            }
            return Ok(());
        }
        // Too large to hold whole: the stream scanner, fed the bytes already
        // read and then one chunk at a time.
        let mut stream = self.engine.stream_with_step(SCAN_STEP);
        let mut lines = LineIndex::default();
        for chunk in buf[..filled].chunks(READ_SIZE) {
            push(&mut stream, &mut lines, chunk, shown, out)?;
        }
        let chunk = &mut buf[..READ_SIZE];
        loop {
            let n = match reader.read(chunk) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            push(&mut stream, &mut lines, &chunk[..n], shown, out)?;
        }
        let found = stream.finish();
        lines.emit(found, shown, out)?;
        Ok(())
    }
}

/// Reads into `buf[filled..]` until at least `want` bytes of `buf` are
/// filled (or all of it) or the input ends; returns how much of `buf` is
/// filled, and whether the input ended. Each read asks for the whole rest of
/// `buf`, so a file that fits usually takes one read and the one that sees
/// its end.
fn fill(
    reader: &mut impl Read,
    buf: &mut [u8],
    mut filled: usize,
    want: usize,
) -> io::Result<(usize, bool)> {
    let want = want.min(buf.len());
    while filled < want {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => return Ok((filled, true)),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok((filled, false))
}

fn push<W: Write>(
    stream: &mut StreamScanner<&Engine>,
    lines: &mut LineIndex,
    chunk: &[u8],
    shown: &str,
    out: &mut Output<W>,
) -> Result<()> {
    lines.append(chunk);
    let found = stream.push(chunk);
    lines.emit(found, shown, out)?;
    lines.forget_before(stream.settled());
    Ok(())
}

/// Reports `found` in order of position. `window` holds the input from
/// offset `base` on, where line `line_at_base` has started at offset
/// `line_start_at_base`.
fn emit<W: Write>(
    window: &[u8],
    (base, line_at_base, line_start_at_base): (u64, u64, u64),
    mut found: Vec<Finding>,
    shown: &str,
    out: &mut Output<W>,
) -> io::Result<()> {
    found.sort_by_key(|f| (f.range.start, f.range.end));
    let offsets: Vec<u64> = found.iter().map(|f| f.range.start).collect();
    let located = locate_sorted(window, base, line_at_base, line_start_at_base, &offsets);
    for (f, (line, column)) in found.iter().zip(located) {
        out.report(shown, line, column, f)?;
    }
    Ok(())
}

/// 1-based line and column (in bytes) of ascending `offsets`, in one pass
/// over `window`; see [`emit`] for the other arguments.
fn locate_sorted(
    window: &[u8],
    base: u64,
    line_at_base: u64,
    line_start_at_base: u64,
    offsets: &[u64],
) -> Vec<(u64, u64)> {
    let mut out = Vec::with_capacity(offsets.len());
    let (mut pos, mut line, mut line_start) = (0usize, line_at_base, line_start_at_base);
    for &offset in offsets {
        let upto = usize::try_from(offset.saturating_sub(base))
            .unwrap_or(usize::MAX)
            .min(window.len());
        if upto < pos {
            (pos, line, line_start) = (0, line_at_base, line_start_at_base);
        }
        for (i, &b) in window[pos..upto].iter().enumerate() {
            if b == b'\n' {
                line += 1;
                line_start = base + (pos + i) as u64 + 1;
            }
        }
        pos = upto;
        out.push((line, offset.saturating_sub(line_start) + 1));
    }
    out
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

    /// [`LineIndex::locate`] for ascending offsets.
    fn locate_sorted(&self, offsets: &[u64]) -> Vec<(u64, u64)> {
        locate_sorted(
            &self.window,
            self.base,
            self.line_at_base,
            self.line_start_at_base,
            offsets,
        )
    }

    fn emit<W: Write>(
        &self,
        found: Vec<Finding>,
        shown: &str,
        out: &mut Output<W>,
    ) -> io::Result<()> {
        if found.is_empty() {
            return Ok(());
        }
        let at_base = (self.base, self.line_at_base, self.line_start_at_base);
        emit(&self.window, at_base, found, shown, out)
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

    /// Output of scanning `input` with inputs above `whole_max` streamed.
    fn scanned(engine: &Engine, input: &[u8], whole_max: usize, json: bool) -> String {
        let mut out = Output {
            json,
            w: Vec::new(),
            found: false,
        };
        let mut scanner = Scanner::with_whole_max(engine, whole_max);
        scanner.scan(input, "f", true, &mut out).unwrap();
        scanner.scan(&b"x"[..], "g", true, &mut out).unwrap();
        String::from_utf8(out.w).unwrap()
    }

    #[test]
    fn whole_and_streamed_inputs_report_the_same() {
        let engine = Engine::new().unwrap();
        let github = format!("ghp_{}", "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3z0Q");
        let aws = format!("AKIA{}", "QZ2XK7MBN4RT5WPL");
        let mut input = Vec::new();
        // Secrets spread over about 3 MiB, some across read and scan steps.
        for i in 0..60_000u32 {
            input.extend_from_slice(b"log line ");
            input.extend_from_slice(i.to_string().as_bytes());
            if i % 7_919 == 0 {
                input.extend_from_slice(format!(" key {github}").as_bytes());
            }
            if i % 12_007 == 5 {
                input.extend_from_slice(format!(" aws={aws}").as_bytes());
            }
            input.extend_from_slice(b" served in 3ms, and some more text to fill it\n");
        }
        for at in [READ_SIZE - 10, SCAN_STEP - 20, 2 * SCAN_STEP + 3] {
            input.splice(at..at, format!("\n{github} ").bytes());
        }
        assert!(input.len() > 2 * SCAN_STEP + READ_SIZE);
        for json in [false, true] {
            let whole = scanned(&engine, &input, input.len() + 1, json);
            assert!(whole.lines().count() > 10, "{whole}");
            assert_eq!(scanned(&engine, &input, READ_SIZE, json), whole);
        }
    }

    /// A file name with an escape sequence, a C1 control (U+009B is CSI to
    /// many terminals) and a line break is written out in both formats:
    /// nothing reaches the terminal raw, and it stays one finding per line.
    #[test]
    fn control_characters_in_paths_are_written_out() {
        let engine = Engine::new().unwrap();
        let input = format!("k={}\n", format_args!("AKIA{}", "QZ2XK7MBN4RT5WPL"));
        let name = "a\u{1b}]0;owned\u{7}\u{9b}2J\u{85}b\nc.txt:1:1: fake";
        for json in [false, true] {
            let mut out = Output {
                json,
                w: Vec::new(),
                found: false,
            };
            let mut scanner = Scanner::new(&engine);
            scanner
                .scan(input.as_bytes(), name, true, &mut out)
                .unwrap();
            let text = String::from_utf8(out.w).unwrap();
            assert_eq!(text.lines().count(), 1, "{text:?}");
            assert!(!text.trim_end().contains(char::is_control), "{text:?}");
            if json {
                let v: serde_json::Value = serde_json::from_str(&text).unwrap();
                assert_eq!(v["path"], name, "{text}");
                assert!(text.contains(r"\u009b"), "{text}");
            } else {
                assert!(
                    text.starts_with(r"a\u{1b}]0;owned\u{7}\u{9b}2J\u{85}b\u{a}c.txt"),
                    "{text}"
                );
            }
        }
    }

    #[test]
    fn binary_inputs_are_skipped_whole_or_streamed() {
        let engine = Engine::new().unwrap();
        let mut input = b"\x7fELF\0".to_vec();
        input.extend_from_slice(format!("AKIA{}", "QZ2XK7MBN4RT5WPL").as_bytes());
        input.resize(READ_SIZE * 3, b'a');
        assert_eq!(scanned(&engine, &input, READ_SIZE, false), "");
        assert_eq!(scanned(&engine, &input, input.len(), false), "");
    }
}
