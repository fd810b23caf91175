//! Escapes a receiving server undoes before it stores or uses a value: JSON
//! `\uXXXX` (and the other JSON escapes), HTML/XML numeric character
//! references, quoted-printable, and UTF-16. Each decoder keeps a map from
//! every output byte back to the input (as [`normalize`] does), so a finding
//! covers the escaped secret exactly; each has a search for the places that
//! need it, so the caller decodes only around those.
//!
//! Like the other decoders these never fail: what does not decode is kept as
//! it is.
//!
//! [`normalize`]: crate::normalize

use std::ops::Range;

use crate::decode::find_byte;
use crate::normalize::Normalized;

/// Which escapes `hay` may have, from pairs of bytes (see [`present`]).
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Present {
    /// A backslash: JSON escapes.
    pub json: bool,
    /// `&#`: numeric character references.
    pub ncr: bool,
    /// A NUL byte: UTF-16, perhaps.
    pub nul: bool,
    /// `=` before CR or LF: a quoted-printable soft line break, perhaps
    /// (CRLF as MIME writes it, LF as Python's `quopri` and many tools).
    eq_eol: bool,
    /// `-p` or `-P`: perhaps the `-printable` of `quoted-printable`.
    dash_p: bool,
}

impl Present {
    /// Whether `hay` (what this was found in) has quoted-printable: a part
    /// that declares it (`Content-Transfer-Encoding: quoted-printable`, in
    /// any case), or both a soft line break (`=` at the end of a line)
    /// and an `=XX` escape, as a long part has on its lines also where its
    /// header is out of a stream buffer. Other text has `=XX` everywhere
    /// (`width=100`) and no server decodes it there; base64 has `=\r\n`
    /// after its padding, but no `=XX`.
    pub(crate) fn quoted_printable(&self, hay: &[u8]) -> bool {
        (self.eq_eol && soft_breaks(hay) && has_qp_escape(hay))
            || (self.dash_p && declares_quoted_printable(hay))
    }
}

/// Which escapes `hay` may have, in one pass over its pairs of bytes
/// without a branch per byte: most text has none of them, and each layer
/// that needs one is skipped without a search of its own.
pub(crate) fn present(hay: &[u8]) -> Present {
    // One flag per kind of pair, each or-ed on its own (no shifts, no
    // branches), so the loop is vectorised even with SSE2 alone.
    let mut f = [0u8; 5];
    let mut pairs = |a: &[u8], b: &[u8]| {
        let mut g = [0u8; 5];
        for (&a, &b) in a.iter().zip(b) {
            g[0] |= u8::from(a == b'\\');
            g[1] |= u8::from((a == b'&') & (b == b'#'));
            g[2] |= u8::from(a == 0);
            g[3] |= u8::from((a == b'=') & ((b == b'\r') | (b == b'\n')));
            g[4] |= u8::from((a == b'-') & (b | 0x20 == b'p'));
        }
        for (f, g) in f.iter_mut().zip(g) {
            *f |= g;
        }
    };
    let Some(&last) = hay.last() else {
        return Present::default();
    };
    for start in (0..hay.len() - 1).step_by(4096) {
        let end = (start + 4096).min(hay.len() - 1);
        pairs(&hay[start..end], &hay[start + 1..end + 1]);
    }
    pairs(&[last], &[0]);
    Present {
        json: f[0] != 0,
        ncr: f[1] != 0,
        nul: f[2] != 0,
        eq_eol: f[3] != 0,
        dash_p: f[4] != 0,
    }
}

fn hex_value(b: u8) -> Option<u32> {
    char::from(b).to_digit(16)
}

/// The value of the four hex digits at the start of `b`.
fn hex4(b: &[u8]) -> Option<u32> {
    let d = b.get(..4)?;
    d.iter()
        .try_fold(0u32, |v, &c| Some(v << 4 | hex_value(c)?))
}

/// A decoded text under construction, with its map to the input.
struct Out {
    text: Vec<u8>,
    origin: Vec<Range<usize>>,
}

impl Out {
    fn with_capacity(n: usize) -> Out {
        Out {
            text: Vec::with_capacity(n),
            origin: Vec::with_capacity(n),
        }
    }

    fn byte(&mut self, b: u8, from: Range<usize>) {
        self.text.push(b);
        self.origin.push(from);
    }

    fn char(&mut self, c: char, from: Range<usize>) {
        let mut buf = [0u8; 4];
        for &b in c.encode_utf8(&mut buf).as_bytes() {
            self.byte(b, from.clone());
        }
    }

    fn done(self) -> Normalized {
        Normalized {
            text: self.text,
            origin: self.origin,
        }
    }
}

/// Whether an escaped character `c`, followed by `rest`, can change what
/// the rules or known secrets see, so the text around it is worth
/// decoding. Escapes of ordinary characters are frequent (JSON encoders
/// escape `<>&'"`, `\` and every non-ASCII letter, HTML writes `&#39;`), and
/// decoding around each would scan such bodies twice for nothing:
///
/// - ASCII graphic characters other than `<>&'"\` can be part of a secret
///   (`gh\u0070_…`): always;
/// - controls and space (`\n`, `&#10;`) end a word, so a token right after
///   one is whole only decoded (the `n` of `\n` glued to it defeats the
///   rules' `\b`): when a run of 16 graphic bytes follows;
/// - other characters: when `wide` says so (the caller's test for
///   characters normalisation changes or removes, or any when a known
///   secret is not ASCII).
pub(crate) fn escape_matters(c: char, rest: &[u8], wide: &dyn Fn(char) -> bool) -> bool {
    match c {
        '<' | '>' | '&' | '\'' | '"' | '\\' => false,
        '!'..='~' => true,
        '\0'..=' ' | '\u{7f}' => rest.get(..16).is_some_and(|r| {
            r.iter()
                .all(|&b| b.is_ascii_graphic() && !b"\"\\<&".contains(&b))
        }),
        _ => wide(c),
    }
}

// ---- JSON ------------------------------------------------------------------

/// A JSON escape at the start of `b`: the character and the length
/// (`\uXXXX`, a surrogate pair as one, and the two-byte escapes).
fn json_at(b: &[u8]) -> Option<(char, usize)> {
    let simple = match b.get(..2)? {
        [b'\\', b'"'] => '"',
        [b'\\', b'\\'] => '\\',
        [b'\\', b'/'] => '/',
        [b'\\', b'b'] => '\u{8}',
        [b'\\', b'f'] => '\u{c}',
        [b'\\', b'n'] => '\n',
        [b'\\', b'r'] => '\r',
        [b'\\', b't'] => '\t',
        [b'\\', b'u'] => {
            let hi = hex4(&b[2..])?;
            if !(0xD800..=0xDBFF).contains(&hi) {
                return Some((char::from_u32(hi)?, 6));
            }
            let lo = b
                .get(6..8)
                .filter(|p| *p == b"\\u")
                .and_then(|_| hex4(&b[8..]))
                .filter(|lo| (0xDC00..=0xDFFF).contains(lo))?;
            let c = char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))?;
            return Some((c, 12));
        }
        _ => return None,
    };
    Some((simple, 2))
}

/// Calls `f` with the range of each JSON escape in `hay` that
/// [`escape_matters`].
pub(crate) fn json_escapes(hay: &[u8], wide: &dyn Fn(char) -> bool, f: impl FnMut(Range<usize>)) {
    escapes(hay, b'\\', json_at, wide, f);
}

/// Undoes JSON string escapes: `\uXXXX` (surrogate pairs joined, a lone
/// surrogate kept as written), `\/`, `\"`, `\\` and `\b\f\n\r\t`.
pub(crate) fn json_unescape(input: &[u8]) -> Normalized {
    unescape(input, b'\\', json_at)
}

/// Reads one escape at the start of its input: the character and the
/// length, or `None` when it is not one.
type Reader = fn(&[u8]) -> Option<(char, usize)>;

/// Calls `f` with the range of each escape (starting with `lead`, read by
/// `read`) in `hay` that [`escape_matters`].
fn escapes(
    hay: &[u8],
    lead: u8,
    read: Reader,
    wide: &dyn Fn(char) -> bool,
    mut f: impl FnMut(Range<usize>),
) {
    let mut from = 0;
    while let Some(p) = find_byte(&hay[from..], lead) {
        let p = from + p;
        match read(&hay[p..]) {
            Some((c, len)) => {
                if escape_matters(c, &hay[p + len..], wide) {
                    f(p..p + len);
                }
                from = p + len;
            }
            None => from = p + 1,
        }
    }
}

/// Undoes every escape (starting with `lead`, read by `read`) in `input`.
fn unescape(input: &[u8], lead: u8, read: Reader) -> Normalized {
    let mut out = Out::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] == lead
            && let Some((c, len)) = read(&input[i..])
        {
            out.char(c, i..i + len);
            i += len;
            continue;
        }
        out.byte(input[i], i..i + 1);
        i += 1;
    }
    out.done()
}

// ---- numeric character references -------------------------------------------

/// A numeric character reference at the start of `b` (`&#112;`, `&#x70;`,
/// the `;` optional as HTML parsers allow): the character and the length.
fn ncr_at(b: &[u8]) -> Option<(char, usize)> {
    let rest = b.strip_prefix(b"&#")?;
    let (radix, start) = match rest.first() {
        Some(b'x' | b'X') => (16, 3),
        _ => (10, 2),
    };
    let digits = b[start..]
        .iter()
        .take_while(|c| char::from(**c).is_digit(radix))
        .count();
    // Leading zeros are allowed; more digits than any character needs are
    // not a reference worth decoding.
    if digits == 0 || digits > 10 {
        return None;
    }
    let value = b[start..start + digits].iter().fold(0u64, |v, &c| {
        v * u64::from(radix) + u64::from(char::from(c).to_digit(radix).unwrap_or(0))
    });
    let c = u32::try_from(value).ok().and_then(char::from_u32)?;
    let mut len = start + digits;
    if b.get(len) == Some(&b';') {
        len += 1;
    }
    Some((c, len))
}

/// Calls `f` with the range of each numeric character reference in `hay`
/// that [`escape_matters`].
pub(crate) fn ncr_refs(hay: &[u8], wide: &dyn Fn(char) -> bool, f: impl FnMut(Range<usize>)) {
    escapes(hay, b'&', ncr_at, wide, f);
}

/// Undoes numeric character references (named ones such as `&amp;` are
/// kept).
pub(crate) fn ncr_decode(input: &[u8]) -> Normalized {
    unescape(input, b'&', ncr_at)
}

// ---- quoted-printable ---------------------------------------------------------

/// Whether `hay` has an `=XX` escape.
/// Whether `hay` has soft line breaks as quoted-printable writes them: one
/// `=` before CRLF, or three before LF (a line of code may end in `=`;
/// quoted-printable text breaks most of its lines so).
fn soft_breaks(hay: &[u8]) -> bool {
    let mut lf = 0;
    let mut from = 0;
    while let Some(p) = find_byte(&hay[from..], b'=') {
        let p = from + p;
        match hay.get(p + 1) {
            Some(b'\r') => return true,
            Some(b'\n') => {
                lf += 1;
                if lf == 3 {
                    return true;
                }
            }
            _ => {}
        }
        from = p + 1;
    }
    false
}

fn has_qp_escape(hay: &[u8]) -> bool {
    let mut from = 0;
    while let Some(p) = find_byte(&hay[from..], b'=') {
        let p = from + p;
        if matches!(hay[p..], [_, h, l, ..] if hex_value(h).is_some() && hex_value(l).is_some()) {
            return true;
        }
        from = p + 1;
    }
    false
}

/// Whether `hay` has `quoted-printable` (in any case), looked for from
/// each `-`.
fn declares_quoted_printable(hay: &[u8]) -> bool {
    const NAME: &[u8] = b"quoted-printable";
    let mut from = 0;
    while let Some(p) = find_byte(&hay[from..], b'-') {
        let p = from + p;
        let name = p
            .checked_sub(6)
            .and_then(|start| hay.get(start..start + NAME.len()));
        if name.is_some_and(|w| w.eq_ignore_ascii_case(NAME)) {
            return true;
        }
        from = p + 1;
    }
    false
}

/// The length of a quoted-printable escape at the start of `b`: `=XX` (3)
/// or a soft line break `=\r\n` (3) or `=\n` (2); 0 if there is none.
fn qp_at(b: &[u8]) -> usize {
    match b {
        [b'=', h, l, ..] if hex_value(*h).is_some() && hex_value(*l).is_some() => 3,
        [b'=', b'\r', b'\n', ..] => 3,
        [b'=', b'\n', ..] => 2,
        _ => 0,
    }
}

/// Calls `f` with the range of each quoted-printable escape in `hay`.
pub(crate) fn qp_escapes(hay: &[u8], mut f: impl FnMut(Range<usize>)) {
    let mut from = 0;
    while let Some(p) = find_byte(&hay[from..], b'=') {
        let p = from + p;
        let len = qp_at(&hay[p..]);
        if len > 0 {
            f(p..p + len);
        }
        from = p + len.max(1);
    }
}

/// Undoes quoted-printable: `=XX` is the byte, soft line breaks are removed.
pub(crate) fn qp_decode(input: &[u8]) -> Normalized {
    let mut out = Out::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        match qp_at(&input[i..]) {
            3 if input[i + 1] != b'\r' => {
                let v = hex_value(input[i + 1]).unwrap_or(0) << 4
                    | hex_value(input[i + 2]).unwrap_or(0);
                out.byte(v as u8, i..i + 3);
                i += 3;
            }
            0 => {
                out.byte(input[i], i..i + 1);
                i += 1;
            }
            // A soft line break: nothing.
            len => i += len,
        }
    }
    out.done()
}

// ---- UTF-16 ---------------------------------------------------------------------

/// Blocks of this many bytes are classed as UTF-16 or not.
const UTF16_BLOCK: usize = 64;

/// The parts of `hay` that are UTF-16 text, each with its byte order (true
/// for big-endian), starting at an even offset of `hay`. With a byte order
/// mark at the start, all of it. Otherwise blocks where one parity of
/// positions is mostly NUL and the other almost never (ASCII and Latin text
/// in UTF-16; Jackson and Python detect a JSON body the same way), merged,
/// with one block more either side for the characters that are not. A
/// stream buffer cut at an odd offset reads as the other byte order from the
/// next byte, which gives the same ASCII.
pub(crate) fn utf16_regions(hay: &[u8]) -> Vec<(Range<usize>, bool)> {
    let even_end = |start: usize| start + (hay.len() - start) / 2 * 2;
    match hay {
        [0xFF, 0xFE, ..] => return vec![(2..even_end(2), false)],
        [0xFE, 0xFF, ..] => return vec![(2..even_end(2), true)],
        _ => {}
    }
    let mut out: Vec<(Range<usize>, bool)> = Vec::new();
    for (k, block) in hay.chunks(UTF16_BLOCK).enumerate() {
        let pairs = block.len() / 2;
        if pairs < 4 {
            continue;
        }
        let (even, odd) = block.chunks_exact(2).fold((0, 0), |(e, o), p| {
            (e + usize::from(p[0] == 0), o + usize::from(p[1] == 0))
        });
        let big_endian = if odd * 2 >= pairs && even * 8 <= pairs {
            false
        } else if even * 2 >= pairs && odd * 8 <= pairs {
            true
        } else {
            continue;
        };
        let start = (k * UTF16_BLOCK).saturating_sub(UTF16_BLOCK);
        let end = (k * UTF16_BLOCK + 2 * UTF16_BLOCK).min(even_end(start));
        match out.last_mut() {
            Some((last, be)) if *be == big_endian && start <= last.end => last.end = end,
            _ => out.push((start..end, big_endian)),
        }
    }
    out
}

/// Decodes UTF-16 code units (an odd last byte is dropped; a lone surrogate
/// becomes U+FFFD).
pub(crate) fn utf16_decode(input: &[u8], big_endian: bool) -> Normalized {
    let unit = |i: usize| {
        let p = [input[i], input[i + 1]];
        u32::from(if big_endian {
            u16::from_be_bytes(p)
        } else {
            u16::from_le_bytes(p)
        })
    };
    let mut out = Out::with_capacity(input.len() / 2);
    let mut i = 0;
    while i + 1 < input.len() {
        let u = unit(i);
        let pair = (0xD800..=0xDBFF).contains(&u) && i + 3 < input.len() && {
            let lo = unit(i + 2);
            (0xDC00..=0xDFFF).contains(&lo)
        };
        if pair {
            let c = 0x10000 + ((u - 0xD800) << 10) + (unit(i + 2) - 0xDC00);
            out.char(char::from_u32(c).unwrap_or('\u{FFFD}'), i..i + 4);
            i += 4;
        } else {
            out.char(char::from_u32(u).unwrap_or('\u{FFFD}'), i..i + 2);
            i += 2;
        }
    }
    out.done()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text of each range `find` reports in `hay`.
    fn spots(hay: &[u8], find: impl FnOnce(&mut dyn FnMut(Range<usize>))) -> Vec<String> {
        let mut v = Vec::new();
        find(&mut |r| v.push(String::from_utf8_lossy(&hay[r]).into_owned()));
        v
    }

    #[test]
    fn present_pairs() {
        assert_eq!(present(b"plain text, a=x & c-d"), Present::default());
        let p = present(b"a\\b &#39; x=1 a=\r\n");
        assert!(p.json && p.ncr && !p.nul && p.eq_eol && !p.dash_p);
        let mut long = vec![b'a'; 10_000];
        long[9_999] = 0;
        assert!(present(&long).nul);
        long[4_095] = b'&';
        long[4_096] = b'#';
        assert!(present(&long).ncr);
    }

    #[test]
    fn json() {
        let n = json_unescape(br#"gh\u0070_\/x\"\\u0041\n\ud83d\udd11\ud83d!"#);
        assert_eq!(
            String::from_utf8_lossy(&n.text),
            "ghp_/x\"\\u0041\n\u{1F511}\\ud83d!"
        );
        // `p` came from the six bytes of its escape.
        assert_eq!(n.map(2..3), 2..8);
        assert_eq!(n.map(0..n.text.len()), 0..42);
        let mut hits = Vec::new();
        let none = |_: char| false;
        json_escapes(br#"a\u0070 \\u0041 \/ \n \uZZZZ"#, &none, |r| hits.push(r));
        assert_eq!(hits, vec![1..7, 16..18]);
        // Ordinary escapes do not count; a line break before a token does.
        let hay = br#"caf\u00e9 \u003cb\u003e \"q\" \nshort \nghp_0123456789abcdef"#;
        let mut hits = Vec::new();
        json_escapes(hay, &none, |r| {
            hits.push(String::from_utf8_lossy(&hay[r]).into_owned())
        });
        assert_eq!(hits, vec![r"\n"]);
        let mut hits = 0;
        json_escapes(br"caf\u00e9", &|c| c == '\u{e9}', |_| hits += 1);
        assert_eq!(hits, 1);
    }

    #[test]
    fn ncr() {
        let n = ncr_decode(b"gh&#112;_&#x41;&#X42&#0067;&#;&amp;&#99999999999;");
        assert_eq!(
            String::from_utf8_lossy(&n.text),
            "ghp_ABC&#;&amp;&#99999999999;"
        );
        assert_eq!(n.map(2..3), 2..8);
        let hay = b"a &#112; b &#x70 &amp; &#39; &#233; &#";
        assert_eq!(
            spots(hay, |f| ncr_refs(hay, &|_| false, f)),
            vec!["&#112;", "&#x70"]
        );
    }

    #[test]
    fn quoted_printable() {
        let n = qp_decode(b"gh=70_ab=\r\ncd=\nef=3D=zz=");
        assert_eq!(String::from_utf8_lossy(&n.text), "ghp_abcdef==zz=");
        assert_eq!(n.map(2..3), 2..5);
        let qp = |hay: &[u8]| present(hay).quoted_printable(hay);
        assert!(qp(
            b"Content-Transfer-Encoding: Quoted-Printable\r\n\r\ngh=70"
        ));
        assert!(qp(b"caf=C3=A9 and a long line=\r\nnext"));
        assert!(!qp(b"a long line=\r\nnext"));
        assert!(!qp(b"width=100&height=20 mkdir -p x"));
        assert!(!qp(b"aGVsbG8gd29ybGQ=\r\nnext"));
        let hay = b"a=3Db=\r\nc=\nd=x";
        assert_eq!(
            spots(hay, |f| qp_escapes(hay, f)),
            vec!["=3D", "=\r\n", "=\n"]
        );
    }

    fn utf16(text: &str, big_endian: bool) -> Vec<u8> {
        text.encode_utf16()
            .flat_map(|u| {
                if big_endian {
                    u.to_be_bytes()
                } else {
                    u.to_le_bytes()
                }
            })
            .collect()
    }

    #[test]
    fn utf16_text_and_regions() {
        let text = "{\"k\":\"v\u{e9} \u{6771} \u{1F511}\"}";
        for be in [false, true] {
            let bytes = utf16(text, be);
            let n = utf16_decode(&bytes, be);
            assert_eq!(String::from_utf8_lossy(&n.text), text);
            assert_eq!(n.map(0..1), 0..2);
        }
        let lone = utf16_decode(&[0x3D, 0xD8, 0x41, 0x00], false);
        assert_eq!(String::from_utf8_lossy(&lone.text), "\u{FFFD}A");
        // A byte order mark: all of it.
        let mut bom = vec![0xFF, 0xFE];
        bom.extend(utf16("abc", false));
        assert_eq!(utf16_regions(&bom), vec![(2..8, false)]);
        // Without: the UTF-16 part of a longer body, one block more each side.
        let mut body = vec![b'a'; 640];
        let at = body.len();
        body.extend(utf16(&"ghp_token ".repeat(20), false));
        let end = body.len();
        body.extend(vec![b'b'; 640]);
        let regions = utf16_regions(&body);
        assert_eq!(regions.len(), 1, "{regions:?}");
        let (r, be) = &regions[0];
        assert!(
            !be && r.start <= at && r.end >= end && r.start % 2 == 0,
            "{r:?}"
        );
        // Cut at an odd offset: the other byte order, same ASCII.
        let odd = &body[at + 1..end];
        let regions = utf16_regions(odd);
        assert_eq!(regions.len(), 1);
        let n = utf16_decode(&odd[regions[0].0.clone()], regions[0].1);
        assert!(String::from_utf8_lossy(&n.text).contains("hp_token ghp_token"));
        // Text and binary with NULs everywhere are not UTF-16.
        assert!(utf16_regions(&[b'a'; 500]).is_empty());
        assert!(utf16_regions(&[0u8; 500]).is_empty());
    }
}
