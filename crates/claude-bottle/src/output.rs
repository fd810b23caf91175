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
        (c.is_control() && c != '\n' && c != '\t') || is_hidden(c)
    })
}

/// Characters that are not control characters to Rust but change what a
/// line shows: bidirectional controls reorder what follows (a name that
/// displays as another, a path that hides its end), and zero-width
/// characters, joiners, the BOM, fillers and tag characters show as
/// nothing (`re\u{200b}view` looks like `review`; tag characters spell
/// hidden ASCII). The DLP engine's list of invisible characters, which it
/// strips before matching, is exactly that, but for the variation
/// selectors: emoji need them, and they hide nothing on their own.
fn is_hidden(c: char) -> bool {
    bottle_dlp::is_invisible(c) && !('\u{fe00}'..='\u{fe0f}').contains(&c)
}

/// [`printable`] for one field of an output with one record per line
/// (`scan`): line breaks and tabs are written out as well, so a file name
/// cannot start a line of its own that reads as another record.
pub fn printable_field(text: &str) -> Cow<'_, str> {
    escape_controls(text, |c| c.is_control() || is_hidden(c))
}

/// `text` as a JSON string, with DEL and the C1 controls (U+007F to
/// U+009F) escaped too: serde_json escapes only U+0000 to U+001F, and a
/// terminal may take a raw U+009B as the start of an escape sequence when
/// the JSON is shown rather than parsed.
pub fn json_string(text: &str) -> String {
    json_document(&serde_json::Value::from(text).to_string()).into_owned()
}

/// A serialised JSON document (plan, `list`, `logs` lines) with DEL, the
/// C1 controls and the hidden characters of [`printable`] (bidirectional
/// controls, zero-width and tag characters) escaped as `\uXXXX` (a
/// surrogate pair above U+FFFF): still the same JSON (outside strings JSON
/// is plain ASCII, so they can only be in one), and none left for a
/// terminal to act on or to reorder a line with. [`printable`] would write
/// them out in a form that is not JSON.
pub fn json_document(json: &str) -> Cow<'_, str> {
    let escaped = |c: char| ('\u{7f}'..='\u{9f}').contains(&c) || is_hidden(c);
    if !json.contains(escaped) {
        return Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len() + 8);
    for c in json.chars() {
        if escaped(c) {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{:04x}", u));
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// The agent's output of a `--prompt` run, for a terminal: a byte stream
/// with control characters written out (`\u{1b}`) except line breaks and
/// tabs, C1 and bidirectional controls included, so an agent cannot drive the user's
/// terminal (an OSC 52 sequence writes the clipboard the user may paste
/// into a host shell; query sequences make the terminal type a reply).
/// Read as UTF-8: a character split between chunks is held until whole;
/// bytes that are not UTF-8 pass as they are, except 0x80 to 0x9F, which
/// a terminal in 8-bit mode takes as C1 controls.
#[derive(Default)]
pub struct TerminalFilter {
    /// The start of a character the next chunk completes (at most 3 bytes).
    carry: Vec<u8>,
}

impl TerminalFilter {
    pub fn filter(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut data = std::mem::take(&mut self.carry);
        data.extend_from_slice(chunk);
        let mut out = Vec::with_capacity(data.len());
        let mut rest = &data[..];
        loop {
            match std::str::from_utf8(rest) {
                Ok(text) => {
                    push_text(&mut out, text);
                    break;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    push_text(&mut out, std::str::from_utf8(valid).unwrap_or_default());
                    let Some(bad) = e.error_len() else {
                        self.carry = after.to_vec();
                        break;
                    };
                    let (bad, next) = after.split_at(bad);
                    push_bytes(&mut out, bad);
                    rest = next;
                }
            }
        }
        out
    }

    /// The end of the stream: a character left unfinished goes out as
    /// bytes.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        push_bytes(&mut out, &std::mem::take(&mut self.carry));
        out
    }
}

/// Text written out as every line the CLI prints is ([`printable`]).
fn push_text(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(printable(text).as_bytes());
}

fn push_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    for &b in bytes {
        if (0x80..=0x9f).contains(&b) {
            out.extend_from_slice(format!("\\x{{{b:x}}}").as_bytes());
        } else {
            out.push(b);
        }
    }
}

#[cfg(test)]
#[test]
fn the_agents_terminal_output_drives_nothing() {
    let mut f = TerminalFilter::default();
    let mut out = f.filter(b"ok\n\x1b]52;c;ZWNobyBwd25lZA==\x07done\tx\r\xc2");
    out.extend(f.filter(b"\x9b2J caf\xc3"));
    out.extend(f.filter(b"\xa9 \xc2\xa0 raw\x9bC1 latin\xe9!"));
    out.extend(f.finish());
    let text = String::from_utf8_lossy(&out);
    assert_eq!(
        text,
        "ok\n\\u{1b}]52;c;ZWNobyBwd25lZA==\\u{7}done\tx\\u{d}\\u{9b}2J café \u{a0} raw\\x{9b}C1 latin\u{fffd}!"
    );
    // A character still open at the end goes out as its bytes (those a
    // terminal in 8-bit mode would take as C1 written out).
    let mut f = TerminalFilter::default();
    assert_eq!(f.filter(b"a\xe2\x82"), b"a");
    assert_eq!(f.finish(), b"\xe2\\x{82}");
}

#[cfg(test)]
#[test]
fn bidi_controls_are_written_out() {
    // U+202E would show `txt.exe` as `exe.txt`.
    let shown = printable("agent \u{202e}txt.exe\u{2066}x\u{2069} é");
    let is_bidi_control = |c: char| {
        matches!(
            c,
            '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
    };
    assert!(!shown.contains(is_bidi_control), "{shown}");
    assert!(
        shown.contains(r"\u{202e}") && shown.ends_with(" é"),
        "{shown}"
    );
    assert!(printable_field("a\u{200f}b").contains(r"\u{200f}"));
}

#[cfg(test)]
#[test]
fn invisible_characters_are_written_out() {
    // `re\u{200b}view` looks like `review`; tag characters spell hidden
    // ASCII (here "hi").
    let shown =
        printable("skill re\u{200b}view\u{feff} \u{e0068}\u{e0069} caf\u{e9} \u{2764}\u{fe0f}");
    assert_eq!(
        shown,
        r"skill re\u{200b}view\u{feff} \u{e0068}\u{e0069} café ❤️"
    );
    assert!(printable_field("a\u{2060}b").contains(r"\u{2060}"));
    let mut f = TerminalFilter::default();
    assert_eq!(f.filter("x\u{200d}y".as_bytes()), br"x\u{200d}y");
}

#[cfg(test)]
#[test]
fn json_lines_escape_what_would_reorder_or_hide_text() {
    // A ref name the agent pushed, as a `logs --format json` line shows it:
    // serde_json leaves these characters raw.
    let name = "refs/heads/a\u{202e}b\u{200b}c\u{e0068}\u{85}";
    let doc = serde_json::json!({ "ref": name }).to_string();
    assert!(doc.contains('\u{202e}'), "{doc}");
    let shown = json_document(&doc);
    assert!(shown.is_ascii(), "{shown}");
    assert_eq!(
        shown,
        r#"{"ref":"refs/heads/a\u202eb\u200bc\udb40\udc68\u0085"}"#
    );
    let back: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(back["ref"], name);
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
