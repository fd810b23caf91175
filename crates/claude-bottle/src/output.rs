//! Writing to stdout without panicking when the reader goes away.

use std::borrow::Cow;
use std::io::{self, Write};

/// Print to stdout. A closed pipe (`claude-bottle list | head -1`) is not an
/// error the user needs to read, so `main` exits quietly on it.
pub fn stdout(text: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(printable(text).as_bytes())?;
    out.flush()
}

/// `text` with control characters written out (`\u{1b}`): messages quote
/// keys, names and paths from files a project may supply, and an escape
/// sequence in one must not drive the user's terminal. Line breaks and tabs
/// stay. Every line the CLI prints passes here: [`stdout`], `stderrln!`,
/// `stderr!` and the error report.
pub fn printable(text: &str) -> Cow<'_, str> {
    escape_controls(text, |c| {
        (c.is_control() && c != '\n' && c != '\t') || is_bidi_control(c)
    })
}

/// Unicode's bidirectional controls: not control characters to Rust, but
/// they reorder what follows on the line (a name that displays as another,
/// a path that hides its end), so they are written out like the rest.
fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
    )
}

/// [`printable`] for one field of an output with one record per line
/// (`scan`): line breaks and tabs are written out as well, so a file name
/// cannot start a line of its own that reads as another record.
pub fn printable_field(text: &str) -> Cow<'_, str> {
    escape_controls(text, |c| c.is_control() || is_bidi_control(c))
}

/// `text` as a JSON string, with DEL and the C1 controls (U+007F to
/// U+009F) escaped too: serde_json escapes only U+0000 to U+001F, and a
/// terminal may take a raw U+009B as the start of an escape sequence when
/// the JSON is shown rather than parsed.
pub fn json_string(text: &str) -> String {
    json_document(&serde_json::Value::from(text).to_string()).into_owned()
}

/// A serialised JSON document (plan, `list`, `logs` lines) with DEL and the
/// C1 controls escaped as `\u00XX`: still the same JSON (outside strings
/// JSON is plain ASCII, so they can only be in one), and none left for a
/// terminal to act on. [`printable`] would write them out in a form that is
/// not JSON.
pub fn json_document(json: &str) -> Cow<'_, str> {
    let c1 = |c: char| ('\u{7f}'..='\u{9f}').contains(&c);
    if !json.contains(c1) {
        return Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len() + 8);
    for c in json.chars() {
        if c1(c) {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
#[test]
fn bidi_controls_are_written_out() {
    // U+202E would show `txt.exe` as `exe.txt`.
    let shown = printable("agent \u{202e}txt.exe\u{2066}x\u{2069} é");
    assert!(!shown.contains(is_bidi_control), "{shown}");
    assert!(
        shown.contains(r"\u{202e}") && shown.ends_with(" é"),
        "{shown}"
    );
    assert!(printable_field("a\u{200f}b").contains(r"\u{200f}"));
}

fn escape_controls(text: &str, unsafe_char: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !text.contains(&unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// True when `err` is a closed pipe somewhere in its chain.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// `eprintln!` that never panics. std's panics when the write fails, and
/// after a hangup the terminal answers every write with EIO: a panic there
/// would stop teardown half way and leave the sidecar, which holds the
/// bottle's credentials, running. (`eprintln!` is refused by this crate's
/// clippy.toml for that reason.)
macro_rules! stderrln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "{}",
            $crate::output::printable(&format!($($arg)*))
        );
    }};
}

/// `eprint!` that never panics (see `stderrln!`).
macro_rules! stderr {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(
            std::io::stderr(),
            "{}",
            $crate::output::printable(&format!($($arg)*))
        );
    }};
}
