//! `_method` fields in form bodies, held to a route's `methods`.
//!
//! Rails (Rack's `MethodOverride`), Laravel and Symfony take a POST whose
//! form carries `_method=DELETE` for a DELETE. On a route that allows POST
//! but not DELETE, that field would lift the route's rule, as the override
//! headers and the `_method` query parameter would (those are checked with
//! the request head, `route::method_overrides`). This module reads the
//! field names of a POST form body as it streams, urlencoded or multipart,
//! and refuses the request when a field the frameworks read as `_method`
//! names a method the route does not allow (or anything that is not a
//! method). Pure: no I/O, no async; the body stream in `server.rs` feeds it.
//!
//! Names are matched as the frameworks read them, and a little wider:
//! percent-decoded (urlencoded), leading white space dropped and a first
//! `.`, ` ` or `[` read as `_` (PHP's rules for variable names), any case,
//! and `_method[...]` too. The request is refused before the end of its
//! body is forwarded: bytes of a field that may still turn out to be
//! `_method` are held back ([`FormMethod::settled`]), at most
//! [`MAX_HELD_FIELD`] of them.

use http::HeaderMap;
use http::header::CONTENT_TYPE;

/// The most bytes of one undecided field held back; a longer one that may
/// still be `_method` (a key of white space, a long value) is refused.
pub const MAX_HELD_FIELD: usize = 4096;
/// The most bytes of one line of part headers read in a multipart body.
const MAX_PART_HEADER_LINE: usize = 8192;
/// The longest `_method` value read: longer is no method.
const MAX_VALUE: usize = 32;
const NAME: &[u8] = b"_method";

/// The body of a request whose form fields may override its method.
#[derive(Debug)]
pub struct FormMethod {
    allowed: Vec<String>,
    /// Every reading of the body some framework may make: a body can be a
    /// form to Rack and JSON to Laravel at once.
    forms: Vec<Form>,
    /// Bytes pushed so far.
    pos: u64,
}

/// Why a form body was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused;

#[derive(Debug)]
enum Form {
    Urlencoded(Urlencoded),
    Multipart(Box<Multipart>),
    Json(Json),
    /// A form no reading is sure to match the server's (two types, or a
    /// multipart boundary Rack and PHP read differently): refused at its
    /// first byte. No client sends one; an empty body has no field.
    Unreadable,
}

impl FormMethod {
    /// The guard a request needs: a POST on a route with `methods`
    /// (`allowed`), whose body a framework reads fields from: a form
    /// (urlencoded, any `multipart/*`, or no `Content-Type` at all, which
    /// Rack reads as a form) or JSON (Laravel takes `_method` from a JSON
    /// body too). `None` when nothing in the body can override the method.
    ///
    /// The type is read as loosely as any framework reads it: Rack ends
    /// the media type at `;` or `,`, PHP also at a space, and Laravel calls
    /// a body JSON when the header holds `/json` or `+json` anywhere.
    pub fn for_request(
        method: &str,
        allowed: Option<&[String]>,
        headers: &HeaderMap,
    ) -> Option<Self> {
        let allowed = allowed?;
        if !method.eq_ignore_ascii_case("POST") {
            return None;
        }
        let types: Vec<&[u8]> = headers
            .get_all(CONTENT_TYPE)
            .iter()
            .map(|v| v.as_bytes())
            .collect();
        let mut forms = Vec::new();
        match types.as_slice() {
            [] => forms.push(Form::Urlencoded(Urlencoded::default())),
            [t] => {
                let essence = t
                    .trim_ascii_start()
                    .split(|b| matches!(b, b';' | b',' | b' ' | b'\t'))
                    .next()
                    .unwrap_or_default();
                if essence.is_empty()
                    || essence.eq_ignore_ascii_case(b"application/x-www-form-urlencoded")
                {
                    forms.push(Form::Urlencoded(Urlencoded::default()));
                } else if essence.len() >= 10 && essence[..10].eq_ignore_ascii_case(b"multipart/") {
                    // Without a boundary every parser agrees on, no
                    // reading of the parts is sure to be the server's.
                    forms.push(match boundary(t) {
                        Some(b) => Form::Multipart(Box::new(Multipart::new(&b))),
                        None => Form::Unreadable,
                    });
                }
            }
            // Two types: servers disagree on which counts (Puma joins them
            // with `,`, which Rack then ends the type at; nginx hands PHP
            // the first), and no client sends two.
            _ => forms.push(Form::Unreadable),
        }
        let json = types.iter().any(|t| {
            t.windows(5)
                .any(|w| w.eq_ignore_ascii_case(b"/json") || w.eq_ignore_ascii_case(b"+json"))
        });
        if json {
            forms.push(Form::Json(Json::default()));
        }
        if forms.is_empty() {
            return None;
        }
        Some(FormMethod {
            allowed: allowed.to_vec(),
            forms,
            pos: 0,
        })
    }

    /// Reads the next bytes of the body.
    pub fn push(&mut self, data: &[u8]) -> Result<(), Refused> {
        for &b in data {
            let at = self.pos;
            self.pos += 1;
            for i in 0..self.forms.len() {
                let value = match &mut self.forms[i] {
                    Form::Urlencoded(u) => u.byte(b, at)?,
                    Form::Multipart(m) => m.byte(b, at)?,
                    Form::Json(j) => j.byte(b, at)?,
                    Form::Unreadable => return Err(Refused),
                };
                if let Some(v) = value {
                    self.judge(&v)?;
                }
            }
        }
        Ok(())
    }

    /// The body has ended: a field still open is judged now.
    pub fn finish(&mut self) -> Result<(), Refused> {
        for i in 0..self.forms.len() {
            let value = match &mut self.forms[i] {
                Form::Urlencoded(u) => u.end()?,
                Form::Multipart(m) => m.end()?,
                Form::Json(j) => j.end(),
                Form::Unreadable => None,
            };
            if let Some(v) = value {
                self.judge(&v)?;
            }
        }
        Ok(())
    }

    /// How many bytes from the start of the body are decided: what comes
    /// after may belong to a `_method` field and must be held back.
    pub fn settled(&self) -> u64 {
        self.forms
            .iter()
            .filter_map(|f| match f {
                Form::Urlencoded(u) => u.held_from(),
                Form::Multipart(m) => m.held_from(),
                Form::Json(j) => j.held_from(),
                Form::Unreadable => None,
            })
            .min()
            .unwrap_or(self.pos)
    }

    fn judge(&self, value: &[u8]) -> Result<(), Refused> {
        let value = value.trim_ascii();
        let ok = std::str::from_utf8(value)
            .is_ok_and(|v| self.allowed.iter().any(|a| a.eq_ignore_ascii_case(v)));
        if ok { Ok(()) } else { Err(Refused) }
    }
}

/// Whether a field name, decoded, reads as `_method` to some framework.
/// `name` has its leading white space removed already. The `_method`
/// query parameter is held to the same reading (`route::method_overrides`).
pub(crate) fn names_method(name: &[u8]) -> bool {
    // PHP ends a variable name at its first NUL: `_method%00x` is
    // `_method` to it.
    let name = name.split(|b| *b == 0).next().unwrap_or_default();
    let Some((&first, rest)) = name.split_first() else {
        return false;
    };
    let first = if matches!(first, b'.' | b' ' | b'[') {
        b'_'
    } else {
        first
    };
    let rest_name = &NAME[1..];
    first == b'_'
        && rest.len() >= rest_name.len()
        && rest[..rest_name.len()].eq_ignore_ascii_case(rest_name)
        && matches!(rest.get(rest_name.len()), None | Some(b'['))
}

/// Whether the start of a name seen so far may still become `_method`.
fn may_be_method_name(prefix: &[u8]) -> bool {
    if let Some(nul) = prefix.iter().position(|b| *b == 0) {
        return names_method(&prefix[..nul]);
    }
    let n = prefix.len().min(NAME.len());
    let mut probe = prefix[..n].to_vec();
    if let Some(f) = probe.first_mut()
        && matches!(*f, b'.' | b' ' | b'[')
    {
        *f = b'_';
    }
    probe.eq_ignore_ascii_case(&NAME[..n])
        && (prefix.len() <= NAME.len() || prefix[NAME.len()] == b'[')
}

/// `%XX` and `+` decoding, a byte at a time.
#[derive(Debug, Default)]
struct Percent {
    pending: Vec<u8>,
}

impl Percent {
    fn feed(&mut self, b: u8, out: &mut Vec<u8>) {
        let hex = |c: u8| (c as char).to_digit(16);
        if self.pending.is_empty() {
            match b {
                b'%' => self.pending.push(b),
                b'+' => out.push(b' '),
                _ => out.push(b),
            }
            return;
        }
        self.pending.push(b);
        if hex(b).is_none() {
            // Not an escape: the bytes stand for themselves (PHP).
            let pending = std::mem::take(&mut self.pending);
            out.push(b'%');
            for c in pending.into_iter().skip(1) {
                self.feed(c, out);
            }
            return;
        }
        if self.pending.len() == 3 {
            let (h, l) = (hex(self.pending[1]), hex(self.pending[2]));
            if let (Some(h), Some(l)) = (h, l) {
                out.push((h * 16 + l) as u8);
            }
            self.pending.clear();
        }
    }

    fn flush(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.pending);
    }
}

#[derive(Debug, Default)]
enum Field {
    /// Reading a name that may still be `_method` (decoded, leading white
    /// space dropped), from body offset `start`.
    Name { start: u64, name: Vec<u8> },
    /// Reading the value of a `_method` field.
    Value { start: u64, value: Vec<u8> },
    /// A field that is not `_method`: skipped to the next separator.
    #[default]
    Other,
}

#[derive(Debug)]
struct Urlencoded {
    field: Field,
    pct: Percent,
    /// Raw bytes of the current field.
    raw: usize,
}

impl Default for Urlencoded {
    fn default() -> Self {
        Urlencoded {
            field: Field::Name {
                start: 0,
                name: Vec::new(),
            },
            pct: Percent::default(),
            raw: 0,
        }
    }
}

impl Urlencoded {
    /// Reads byte `b` at body offset `at`; a finished `_method` field gives
    /// its value.
    fn byte(&mut self, b: u8, at: u64) -> Result<Option<Vec<u8>>, Refused> {
        if matches!(b, b'&' | b';') {
            let value = self.end()?;
            self.field = Field::Name {
                start: at + 1,
                name: Vec::new(),
            };
            self.raw = 0;
            return Ok(value);
        }
        self.raw += 1;
        let mut out = Vec::new();
        match &mut self.field {
            Field::Other => {}
            Field::Name { start, name } => {
                if b == b'=' {
                    self.pct.flush(name);
                    self.field = if names_method(name) {
                        Field::Value {
                            start: *start,
                            value: Vec::new(),
                        }
                    } else {
                        Field::Other
                    };
                    return Ok(None);
                }
                self.pct.feed(b, &mut out);
                for c in out {
                    if name.is_empty() && c.is_ascii_whitespace() {
                        continue;
                    }
                    name.push(c);
                }
                if !may_be_method_name(name) {
                    self.field = Field::Other;
                    self.pct = Percent::default();
                }
            }
            Field::Value { value, .. } => {
                self.pct.feed(b, &mut out);
                value.extend(out);
            }
        }
        if self.raw > MAX_HELD_FIELD && self.held_from().is_some() {
            return Err(Refused);
        }
        if let Field::Value { value, .. } = &self.field
            && value.len() > MAX_VALUE
        {
            return Err(Refused);
        }
        Ok(None)
    }

    /// The field ends (a separator, or the body's end).
    fn end(&mut self) -> Result<Option<Vec<u8>>, Refused> {
        let field = std::mem::take(&mut self.field);
        let mut rest = Vec::new();
        match field {
            Field::Other => Ok(None),
            // `_method` with no `=`: no method at all, refused with the rest.
            Field::Name { mut name, .. } => {
                self.pct.flush(&mut name);
                self.pct = Percent::default();
                if names_method(&name) {
                    Ok(Some(Vec::new()))
                } else {
                    Ok(None)
                }
            }
            Field::Value { mut value, .. } => {
                self.pct.flush(&mut rest);
                value.extend(rest);
                self.pct = Percent::default();
                Ok(Some(value))
            }
        }
    }

    fn held_from(&self) -> Option<u64> {
        match &self.field {
            Field::Name { start, .. } | Field::Value { start, .. } => Some(*start),
            Field::Other => None,
        }
    }
}

/// Where a JSON body's reader is.
#[derive(Debug, Default, PartialEq, Eq)]
enum JsonAt {
    /// Between strings.
    #[default]
    Outside,
    /// In a string that cannot be `_method`: read to its end.
    Skip,
    /// In a string that may still be `_method` (decoded so far in `text`).
    Key,
    /// After a `_method` string: a `:` makes it a key.
    AfterKey,
    /// After `"_method":`, before its value.
    BeforeValue,
    /// In the value of a `_method` key.
    Value,
}

/// A JSON body read for `_method` keys, as Laravel takes one (its request
/// input is the decoded JSON, and Symfony's method override reads
/// `_method` from it). Wider than Laravel: a key at any depth, its name
/// read as [`names_method`] reads form fields; a `_method` whose value is
/// not a string is refused. Bodies that are not JSON are read as far as
/// their strings go; a framework cannot decode them anyway.
#[derive(Debug, Default)]
struct Json {
    at: JsonAt,
    /// Body offset of the quote opening the held `_method` string.
    start: u64,
    /// The current key or value, decoded.
    text: Vec<u8>,
    /// In a string: after a `\`, or the hex digits of a `\u` so far.
    escape: Option<Vec<u8>>,
}

impl Json {
    fn byte(&mut self, b: u8, at: u64) -> Result<Option<Vec<u8>>, Refused> {
        if self
            .held_from()
            .is_some_and(|s| at - s >= MAX_HELD_FIELD as u64)
        {
            return Err(Refused);
        }
        match self.at {
            JsonAt::Outside => {
                if b == b'"' {
                    self.at = JsonAt::Key;
                    self.start = at;
                    self.text.clear();
                }
                Ok(None)
            }
            JsonAt::Skip | JsonAt::Key | JsonAt::Value => {
                let Some(c) = self.string_byte(b) else {
                    return Ok(None);
                };
                match (&self.at, c) {
                    (JsonAt::Skip, Char::End) => self.at = JsonAt::Outside,
                    (JsonAt::Skip, _) => {}
                    (JsonAt::Key, Char::End) => {
                        self.at = if names_method(&self.text) {
                            JsonAt::AfterKey
                        } else {
                            JsonAt::Outside
                        };
                    }
                    (JsonAt::Key, Char::Bytes(buf, n)) => {
                        self.text.extend_from_slice(&buf[..n]);
                        if !may_be_method_name(&self.text) {
                            self.at = JsonAt::Skip;
                        }
                    }
                    (_, Char::End) => {
                        self.at = JsonAt::Outside;
                        return Ok(Some(std::mem::take(&mut self.text)));
                    }
                    (_, Char::Bytes(buf, n)) => {
                        self.text.extend_from_slice(&buf[..n]);
                        if self.text.len() > MAX_VALUE {
                            return Err(Refused);
                        }
                    }
                }
                Ok(None)
            }
            JsonAt::AfterKey => {
                if b == b':' {
                    self.at = JsonAt::BeforeValue;
                } else if !b.is_ascii_whitespace() {
                    // A string value that reads `_method`, not a key.
                    self.at = JsonAt::Outside;
                    return self.byte(b, at);
                }
                Ok(None)
            }
            JsonAt::BeforeValue => {
                if b == b'"' {
                    self.at = JsonAt::Value;
                    self.text.clear();
                    Ok(None)
                } else if b.is_ascii_whitespace() {
                    Ok(None)
                } else {
                    Err(Refused)
                }
            }
        }
    }

    /// One byte of a string: `None` while an escape is incomplete.
    fn string_byte(&mut self, b: u8) -> Option<Char> {
        let Some(esc) = self.escape.as_mut() else {
            return match b {
                b'\\' => {
                    self.escape = Some(Vec::new());
                    None
                }
                b'"' => Some(Char::End),
                _ => Some(Char::byte(b)),
            };
        };
        if esc.is_empty() && b != b'u' {
            self.escape = None;
            let c = match b {
                b'b' => 0x08,
                b'f' => 0x0c,
                b'n' => b'\n',
                b'r' => b'\r',
                b't' => b'\t',
                other => other,
            };
            return Some(Char::byte(c));
        }
        esc.push(b);
        if esc.len() < 5 {
            return None;
        }
        // `u` and four hex digits. A code point that is not one character
        // on its own (a surrogate, or no hex) becomes U+FFFD, which no
        // method or `_method` holds.
        let hex = std::str::from_utf8(&esc[1..]).ok();
        let c = hex
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .and_then(char::from_u32)
            .unwrap_or(char::REPLACEMENT_CHARACTER);
        self.escape = None;
        let mut buf = [0; 4];
        let n = c.encode_utf8(&mut buf).len();
        Some(Char::Bytes(buf, n))
    }

    /// The body has ended: a `_method` key without its value is refused.
    fn end(&mut self) -> Option<Vec<u8>> {
        matches!(self.at, JsonAt::BeforeValue | JsonAt::Value).then(Vec::new)
    }

    fn held_from(&self) -> Option<u64> {
        match self.at {
            JsonAt::Key | JsonAt::AfterKey | JsonAt::BeforeValue | JsonAt::Value => {
                Some(self.start)
            }
            JsonAt::Outside | JsonAt::Skip => None,
        }
    }
}

/// What a byte of a JSON string stands for: the first `n` bytes of a
/// character's UTF-8, or the string's end.
enum Char {
    Bytes([u8; 4], usize),
    End,
}

impl Char {
    fn byte(b: u8) -> Self {
        Char::Bytes([b, 0, 0, 0], 1)
    }
}

/// The `boundary` parameter of a multipart `Content-Type`, when every
/// parser we know reads the same one. They differ at the edges: Rack takes
/// the last `boundary=` in the header up to `"`, `;` or `,`; PHP the first
/// `boundary` anywhere (even inside another name), then `=`, up to `,` or
/// `;`, without trimming. A boundary read differently from the server's
/// would hide its parts from this reading, so only a header with one
/// `boundary`, written `; boundary=VALUE` (or quoted), with a value of
/// RFC 2046 characters other than space and `,`, gives one; anything else
/// gives `None`, under which every line is read as a part header.
fn boundary(content_type: &[u8]) -> Option<Vec<u8>> {
    const KEY: &[u8] = b"boundary";
    let lower = content_type.to_ascii_lowercase();
    let mut at = lower
        .windows(KEY.len())
        .enumerate()
        .filter(|(_, w)| *w == KEY);
    let (start, _) = at.next()?;
    if at.next().is_some() {
        return None;
    }
    // `;` and optional white space before the name, `=` right after it.
    if !lower[..start].trim_ascii_end().ends_with(b";") {
        return None;
    }
    let raw = content_type[start + KEY.len()..].strip_prefix(b"=")?;
    let end = raw
        .iter()
        .position(|b| matches!(b, b';' | b','))
        .unwrap_or(raw.len());
    let (value, rest) = match raw.strip_prefix(b"\"") {
        Some(quoted) => {
            let close = quoted.iter().position(|b| *b == b'"')?;
            (&quoted[..close], &quoted[close + 1..])
        }
        None => (&raw[..end], &raw[end..]),
    };
    let ends_well = rest.is_empty() || matches!(rest[0], b';' | b',');
    let bchar = |b: &u8| {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'\'' | b'(' | b')' | b'+' | b'_' | b'-' | b'.' | b'/' | b':' | b'=' | b'?'
            )
    };
    // RFC 2046: 1 to 70 characters.
    (ends_well && !value.is_empty() && value.len() <= 70 && value.iter().all(bchar))
        .then(|| value.to_vec())
}

#[derive(Debug, PartialEq, Eq)]
enum PartState {
    /// Before the first delimiter, or in a part's content.
    Content,
    /// In a part's header lines.
    Headers,
    /// After the closing delimiter.
    Epilogue,
}

#[derive(Debug)]
struct Multipart {
    /// `--` and the boundary.
    delimiter: Vec<u8>,
    state: PartState,
    /// The current line: a header line whole, a content line as far as it
    /// may be a delimiter (and the two bytes of a closing one's `--`).
    line: Vec<u8>,
    /// Bytes of the current line, kept or not.
    line_len: usize,
    /// Body offset where the current line started.
    line_start: u64,
    /// Where the header line naming the current part `_method` started:
    /// everything from there is held until its value is judged.
    method_part: Option<u64>,
    /// The content of a `_method` part so far.
    value: Vec<u8>,
}

impl Multipart {
    fn new(boundary: &[u8]) -> Self {
        Multipart {
            delimiter: [b"--".as_slice(), boundary].concat(),
            state: PartState::Content,
            line: Vec::new(),
            line_len: 0,
            line_start: 0,
            method_part: None,
            value: Vec::new(),
        }
    }

    fn byte(&mut self, b: u8, at: u64) -> Result<Option<Vec<u8>>, Refused> {
        if let Some(start) = self.method_part
            && at - start >= MAX_HELD_FIELD as u64
        {
            return Err(Refused);
        }
        let delimiter_len = self.delimiter.len();
        match self.state {
            PartState::Epilogue => return Ok(None),
            PartState::Headers => {
                self.line.push(b);
                if self.line.len() > MAX_PART_HEADER_LINE {
                    return Err(Refused);
                }
            }
            PartState::Content => {
                if self.line_len < delimiter_len + 2 {
                    self.line.push(b);
                }
                if self.method_part.is_some() {
                    self.value.push(b);
                }
            }
        }
        self.line_len += 1;
        if b != b'\n' {
            return Ok(None);
        }
        let line = std::mem::take(&mut self.line);
        let line_len = std::mem::replace(&mut self.line_len, 0);
        let line_start = std::mem::replace(&mut self.line_start, at + 1);
        match self.state {
            PartState::Epilogue => Ok(None),
            PartState::Headers => {
                let text = strip_eol(&line);
                // Every header line is `token:` and more. Anything else
                // continues the header before it for PHP (a line without
                // `:`, or starting with any white space), or holds a
                // `name="_method"` that Rack's name pattern, which reads
                // across lines, would find (`name="_method"; a="b:c"`).
                // RFC 7578 forbids folding; no client folds.
                let named = text
                    .iter()
                    .position(|b| *b == b':')
                    .is_some_and(|colon| colon > 0 && text[..colon].iter().all(|b| is_tchar(*b)));
                if !text.is_empty() && !named {
                    return Err(Refused);
                }
                if part_names_method(text) {
                    self.method_part = Some(line_start);
                }
                if text.is_empty() {
                    self.state = PartState::Content;
                    self.value.clear();
                }
                Ok(None)
            }
            PartState::Content => {
                let d = &self.delimiter;
                if !line.starts_with(d) {
                    return Ok(None);
                }
                self.state = if line[d.len()..].starts_with(b"--") {
                    PartState::Epilogue
                } else {
                    PartState::Headers
                };
                if self.method_part.take().is_none() {
                    return Ok(None);
                }
                // The value is the content before the delimiter line and
                // the line break that belongs to the delimiter.
                let mut value = std::mem::take(&mut self.value);
                value.truncate(value.len().saturating_sub(line_len));
                let value = strip_eol(&value).to_vec();
                Ok(Some(value))
            }
        }
    }

    fn end(&mut self) -> Result<Option<Vec<u8>>, Refused> {
        // A `_method` part the body never closed: refused, as no value was
        // read.
        match self.method_part {
            Some(_) => Err(Refused),
            None => Ok(None),
        }
    }

    fn held_from(&self) -> Option<u64> {
        // A part's header line is held until it is whole: it may turn out
        // to name the part `_method`, and the hold would then reach back
        // to its start.
        let line =
            (self.state == PartState::Headers && self.line_len > 0).then_some(self.line_start);
        match (self.method_part, line) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// RFC 9110 `tchar`: the bytes of a header name.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn strip_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Whether a part header line names the part `_method`: a `name` or
/// `name*` parameter of any header (`Content-Disposition: form-data;
/// name="_method"`, `name*=UTF-8''_method`), or a header whose whole value
/// is the name (Rack takes `Content-ID` for a name).
fn part_names_method(line: &[u8]) -> bool {
    let Some(colon) = line.iter().position(|b| *b == b':') else {
        return false;
    };
    let value = &line[colon + 1..];
    let whole = value.trim_ascii();
    let whole = whole
        .strip_prefix(b"<")
        .and_then(|v| v.strip_suffix(b">"))
        .unwrap_or(whole);
    let whole = whole
        .strip_prefix(b"\"")
        .and_then(|v| v.strip_suffix(b"\""))
        .unwrap_or(whole);
    if names_method(whole.trim_ascii()) {
        return true;
    }
    params(value).into_iter().any(|(key, value)| {
        let value = if key.eq_ignore_ascii_case(b"name*") {
            // RFC 5987: charset'language'percent-encoded.
            let raw = value.rsplit(|b| *b == b'\'').next().unwrap_or_default();
            let mut out = Vec::new();
            let mut pct = Percent::default();
            for &b in raw {
                pct.feed(b, &mut out);
            }
            pct.flush(&mut out);
            out
        } else if key.eq_ignore_ascii_case(b"name") {
            value
        } else {
            return false;
        };
        names_method(value.trim_ascii())
    })
}

/// The `key=value` parameters of a header value, quotes and backslash
/// escapes read; segments without `=` (the disposition type) skipped.
fn params(mut s: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    while !s.is_empty() {
        let eq = s.iter().position(|b| *b == b'=' || *b == b';');
        let Some(eq) = eq else { break };
        if s[eq] == b';' {
            s = &s[eq + 1..];
            continue;
        }
        let key = s[..eq].trim_ascii().to_vec();
        s = s[eq + 1..].trim_ascii_start();
        let mut value = Vec::new();
        if s.first() == Some(&b'"') {
            let mut i = 1;
            while i < s.len() && s[i] != b'"' {
                if s[i] == b'\\' && i + 1 < s.len() {
                    i += 1;
                }
                value.push(s[i]);
                i += 1;
            }
            s = &s[(i + 1).min(s.len())..];
            match s.iter().position(|b| *b == b';') {
                Some(i) => s = &s[i + 1..],
                None => s = &[],
            }
        } else {
            let end = s.iter().position(|b| *b == b';').unwrap_or(s.len());
            value = s[..end].trim_ascii().to_vec();
            s = &s[(end + 1).min(s.len())..];
        }
        out.push((key, value));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn guard(content_type: Option<&str>) -> FormMethod {
        let mut h = HeaderMap::new();
        if let Some(t) = content_type {
            h.insert(CONTENT_TYPE, HeaderValue::from_str(t).unwrap());
        }
        let allowed = vec!["GET".to_string(), "POST".to_string()];
        FormMethod::for_request("POST", Some(&allowed), &h).expect("a form")
    }

    /// The body fed in every split into two chunks: the verdict must not
    /// depend on where the chunks break, and before the end nothing past
    /// an undecided field may be settled.
    fn verdict(content_type: Option<&str>, body: &[u8]) -> Result<(), Refused> {
        let mut first = None;
        for cut in 0..=body.len() {
            let mut g = guard(content_type);
            let mut first_settled = 0;
            let got = g
                .push(&body[..cut])
                .and_then(|()| {
                    first_settled = g.settled();
                    assert!(first_settled <= cut as u64);
                    g.push(&body[cut..])
                })
                .and_then(|()| {
                    assert!(
                        g.settled() >= first_settled,
                        "settled went back: {body:?} at {cut}"
                    );
                    g.finish()
                });
            if got.is_ok() {
                assert_eq!(g.settled(), body.len() as u64, "all released at the end");
            }
            match first {
                None => first = Some(got),
                Some(f) => assert_eq!(f, got, "split at {cut} of {body:?}"),
            }
        }
        first.unwrap_or(Ok(()))
    }

    const URLENCODED: Option<&str> = Some("application/x-www-form-urlencoded");

    #[test]
    fn urlencoded_method_fields_are_held_to_the_route() {
        // Attacks: every spelling a framework reads as `_method`.
        for body in [
            "_method=DELETE",
            "a=1&_method=DELETE",
            "a=1&_method=DELETE&b=2",
            "a=1;_method=PATCH",
            "%5Fmethod=DELETE",
            "_%6d%45thod=delete",
            "+_method=PUT",
            "%20%20_method=PUT",
            ".method=PUT",
            "[method=PUT",
            "_METHOD=PUT",
            "_method[]=DELETE",
            "_method=DEL%45TE",
            "_method=",
            "_method",
            "_method=GET%00",
            "_method=PUTPUTPUTPUTPUTPUTPUTPUTPUTPUTPUTPUT",
            "a=1&_method=%ff",
        ] {
            assert_eq!(verdict(URLENCODED, body.as_bytes()), Err(Refused), "{body}");
        }
        // Allowed: methods of the route, other fields, look-alikes.
        for body in [
            "",
            "a=1&b=2",
            "_method=POST",
            "_method=get&x=1",
            "_method=+post+",
            "_methods=DELETE",
            "my_method=DELETE",
            "x=_method%3DDELETE",
            "method=DELETE",
            "a=100%&b=%zz",
        ] {
            assert_eq!(verdict(URLENCODED, body.as_bytes()), Ok(()), "{body}");
        }
        // Rack reads a POST without a content type as a form.
        assert_eq!(verdict(None, b"_method=DELETE"), Err(Refused));
    }

    #[test]
    fn undecided_fields_are_held_and_others_are_not() {
        let mut g = guard(URLENCODED);
        g.push(b"name=value&_meth").unwrap();
        assert_eq!(g.settled(), 11, "held from the start of `_meth`");
        g.push(b"od=GET&other").unwrap();
        assert_eq!(g.settled(), 28, "`other` cannot be `_method`: released");
        g.push(b"&_").unwrap();
        assert_eq!(g.settled(), 29, "held from `_`");
        let mut g = guard(URLENCODED);
        g.push(b"   ").unwrap();
        g.push(&[b' '; MAX_HELD_FIELD]).unwrap_err();
    }

    fn multipart(parts: &[(&str, &str)]) -> Vec<u8> {
        let mut body = b"preamble\r\n".to_vec();
        for (head, content) in parts {
            body.extend_from_slice(format!("--XyZ\r\n{head}\r\n\r\n{content}\r\n").as_bytes());
        }
        body.extend_from_slice(b"--XyZ--\r\nepilogue _method");
        body
    }

    #[test]
    fn multipart_method_parts_are_held_to_the_route() {
        let ct = Some("multipart/form-data; boundary=XyZ");
        let file = "Content-Disposition: form-data; name=\"f\"; filename=\"my_method.rb\"";
        for head in [
            "Content-Disposition: form-data; name=\"_method\"",
            "content-disposition: form-data; name=_method",
            "Content-Disposition: form-data; name*=UTF-8''%5Fmethod",
            "Content-Disposition: form-data; filename=\"a;b\"; name=\"_method\"",
            "Content-ID: <_method>",
            "Content-Disposition: form-data; name=\" .method\"",
        ] {
            let body = multipart(&[
                ("Content-Disposition: form-data; name=\"a\"", "1"),
                (head, "DELETE"),
            ]);
            assert_eq!(verdict(ct, &body), Err(Refused), "{head}");
            let body = multipart(&[(head, "post")]);
            assert_eq!(verdict(ct, &body), Ok(()), "{head}");
        }
        // A file whose content says `_method`, or named like it: not a field.
        let body = multipart(&[(file, "_method=DELETE\r\nname=\"_method\"")]);
        assert_eq!(verdict(ct, &body), Ok(()));
        // A `_method` part the body never closes.
        let mut body = multipart(&[]);
        body.truncate(10);
        body.extend_from_slice(b"--XyZ\r\nContent-Disposition: form-data; name=_method\r\n\r\nGET");
        assert_eq!(verdict(ct, &body), Err(Refused));
        // The quoted boundary form.
        let body = multipart(&[("Content-Disposition: form-data; name=_method", "PUT")]);
        assert_eq!(
            verdict(Some("multipart/form-data; boundary=\"XyZ\""), &body),
            Err(Refused)
        );
    }

    #[test]
    fn only_post_forms_on_routes_with_methods_are_read() {
        let allowed = vec!["POST".to_string()];
        let form = HeaderMap::new();
        assert!(FormMethod::for_request("POST", None, &form).is_none());
        assert!(FormMethod::for_request("PUT", Some(&allowed), &form).is_none());
        let mut text = HeaderMap::new();
        text.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert!(FormMethod::for_request("POST", Some(&allowed), &text).is_none());
        let mut two = HeaderMap::new();
        two.append(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        two.append(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert!(FormMethod::for_request("POST", Some(&allowed), &two).is_some());
    }

    #[test]
    fn content_types_are_read_as_loosely_as_the_frameworks_read_them() {
        // Rack ends the media type at `,` too, PHP at a space; Rack reads
        // an empty type as no type (a form), and parses `multipart/mixed`
        // and `multipart/related` bodies as forms.
        for ct in [
            "application/x-www-form-urlencoded,x",
            "application/x-www-form-urlencoded x",
            "APPLICATION/X-WWW-FORM-URLENCODED\t;charset=utf-8",
            "",
            ";charset=utf-8",
        ] {
            assert_eq!(
                verdict(Some(ct), b"a=1&_method=DELETE"),
                Err(Refused),
                "{ct:?}"
            );
            assert_eq!(verdict(Some(ct), b"a=1&_method=POST"), Ok(()), "{ct:?}");
        }
        let part = |ct: &str| {
            let body = multipart(&[("Content-Disposition: form-data; name=\"_method\"", "DELETE")]);
            verdict(Some(ct), &body)
        };
        for ct in [
            "multipart/mixed; boundary=XyZ",
            "Multipart/Related; boundary=XyZ",
        ] {
            assert_eq!(part(ct), Err(Refused), "{ct}");
        }
    }

    #[test]
    fn a_boundary_parsers_may_read_differently_hides_no_part() {
        for (ct, want) in [
            ("multipart/form-data; boundary=XyZ", Some("XyZ")),
            ("multipart/form-data;boundary=\"XyZ\"", Some("XyZ")),
            (
                "multipart/form-data; boundary=XyZ; charset=utf-8",
                Some("XyZ"),
            ),
            ("multipart/form-data; boundary=XyZ,x=1", Some("XyZ")),
            // Rack takes the last, PHP the first.
            ("multipart/form-data; boundary=a; boundary=XyZ", None),
            // PHP finds `boundary` inside another name.
            ("multipart/form-data; xboundary=a; boundary=XyZ", None),
            ("multipart/form-data; xboundary=XyZ", None),
            // PHP keeps the space, Rack stops at the comma.
            ("multipart/form-data; boundary= XyZ", None),
            ("multipart/form-data; boundary =XyZ", None),
            ("multipart/form-data; boundary=\"a,b\"", None),
            ("multipart/form-data; boundary=\"XyZ\"x", None),
            ("multipart/form-data; boundary=", None),
        ] {
            assert_eq!(
                boundary(ct.as_bytes()).as_deref(),
                want.map(str::as_bytes),
                "{ct}"
            );
        }
        // Under no agreed boundary no reading is sure to be the server's:
        // any body is refused, a `_method` part on a folded line included.
        let body = multipart(&[("Content-Disposition: form-data; name=\"a\"", "1")]);
        let ct = "multipart/form-data; boundary=a; boundary=XyZ";
        assert_eq!(verdict(Some(ct), &body), Err(Refused));
        assert_eq!(verdict(Some(ct), b""), Ok(()), "an empty body has no field");
    }

    #[test]
    fn what_php_and_rack_read_past_a_plain_reading() {
        // PHP ends a name at a NUL.
        for body in ["_method%00x=DELETE", "a=1&_method%00=PUT"] {
            assert_eq!(verdict(URLENCODED, body.as_bytes()), Err(Refused), "{body}");
        }
        assert_eq!(verdict(URLENCODED, b"_me%00thod=DELETE"), Ok(()));
        let ct = Some("multipart/form-data; boundary=XyZ");
        let body = multipart(&[(
            "Content-Disposition: form-data; name=\"_method\0x\"",
            "DELETE",
        )]);
        assert_eq!(verdict(ct, &body), Err(Refused));
        // A folded part header (PHP appends it to the line before; Rack's
        // name pattern reads across lines).
        for head in [
            "Content-Disposition: form-data;\r\n name=\"_method\"",
            "Content-Disposition: form-data; name=\"_me\r\nthod\"",
            // A `:` later on the line does not make it a header (Rack).
            "Content-Disposition: form-data;\r\nname=\"_method\"; a=\"b:c\"",
            // Any white space starts a continuation for PHP.
            "Content-Disposition: form-data;\r\n\x0bname=\"_method\"; a=\"b:c\"",
        ] {
            let body = multipart(&[(head, "DELETE")]);
            assert_eq!(verdict(ct, &body), Err(Refused), "{head}");
        }
        // A header line cut by a chunk is held until whole: the hold on a
        // `_method` part starts at that line, and must not reach back past
        // bytes already released.
        let mut g = guard(ct);
        g.push(b"--XyZ\r\nContent-Disposition: form-data; name=\"_met")
            .unwrap();
        let first = g.settled();
        assert_eq!(first, 7, "held from the header line's start");
        g.push(b"hod\"\r\n\r\nDE").unwrap();
        assert_eq!(g.settled(), first);
        // Two types: read every way a form is read.
        let mut two = HeaderMap::new();
        two.append(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        two.append(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        let allowed = vec!["POST".to_string()];
        let mut g = FormMethod::for_request("POST", Some(&allowed), &two).unwrap();
        assert_eq!(g.push(b"a=1&_method=DELETE&b=2"), Err(Refused));
    }

    #[test]
    fn json_method_keys_are_held_to_the_route() {
        let json = Some("application/json");
        for body in [
            r#"{"_method":"DELETE"}"#,
            r#"{"a":1, "_method" : "PUT"}"#,
            r#"{"\u005fmethod":"DELETE"}"#,
            r#"{"_method":"DEL\u0045TE"}"#,
            r#"{"_METHOD":"PATCH"}"#,
            r#"{"a":{"_method":"PATCH"}}"#,
            r#"{"x":"a\"b", "_method":"PUT"}"#,
            r#"{"_method":["DELETE"]}"#,
            r#"{"_method":null}"#,
            r#"{"_method":"PUTPUTPUTPUTPUTPUTPUTPUTPUTPUTPUTPUT"}"#,
            r#"{"_method":"#,
            r#"{"_method":"GET"#,
        ] {
            assert_eq!(verdict(json, body.as_bytes()), Err(Refused), "{body}");
        }
        for body in [
            "{}",
            r#"{"_method":"post"}"#,
            r#"{"a":"_method"}"#,
            r#"["_method", "DELETE"]"#,
            r#"{"x":"\"_method\":\"DELETE\""}"#,
            r#"{"_methods":"DELETE","my_method":"DELETE"}"#,
            r#"{"a":"\ud800"}"#,
        ] {
            assert_eq!(verdict(json, body.as_bytes()), Ok(()), "{body}");
        }
        // Laravel calls a body JSON when its type holds `/json` or `+json`
        // anywhere; such a body may be a form to Rack as well.
        let body = br#"{"_method":"DELETE"}"#;
        for ct in ["application/vnd.api+json", "text/plain; x=/json"] {
            assert_eq!(verdict(Some(ct), body), Err(Refused), "{ct}");
        }
        let both = Some("application/x-www-form-urlencoded; x=/JSON");
        assert_eq!(verdict(both, body), Err(Refused));
        assert_eq!(verdict(both, b"a=1&_method=DELETE"), Err(Refused));
        assert_eq!(verdict(both, b"a=1"), Ok(()));
        // A key held while its value is unknown, released when judged.
        let mut g = guard(json);
        g.push(br#"{"a":1,"_meth"#).unwrap();
        assert_eq!(g.settled(), 7, "held from the quote of `_meth`");
        g.push(br#"od":"GET","b":"x"#).unwrap();
        assert_eq!(g.settled(), 29, "judged, and `x` cannot be `_method`");
        g.push(br#"","_"#).unwrap();
        assert_eq!(g.settled(), 31, "held from the quote of `_`");
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bodies_never_panic(body: Vec<u8>, cut in 0usize..512) {
            for ct in [URLENCODED, Some("multipart/form-data; boundary=b"), Some("multipart/form-data"), Some("application/json")] {
                let mut g = guard(ct);
                let cut = cut.min(body.len());
                let _ = g.push(&body[..cut]).and_then(|()| g.push(&body[cut..])).and_then(|()| g.finish());
                proptest::prop_assert!(g.settled() <= body.len() as u64);
            }
        }
    }
}
