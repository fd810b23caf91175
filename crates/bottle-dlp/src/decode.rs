//! Encoders and lenient decoders for the encodings a secret can hide in
//! (percent, base64 and base64url, hex, base32), and the search for runs of
//! input worth decoding.
//!
//! The decoders never fail: they decode what they can and skip the rest,
//! because input is hostile and a partial decode can still reveal a secret.
//! Their output is never longer than their input.

use std::borrow::Cow;
use std::ops::Range;

const B64_STD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const B64_URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const B32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// The value of a base64 digit in either alphabet (`+`/`-` are 62, `/`/`_`
/// are 63), or `None`.
const fn b64_value(b: u8) -> Option<u8> {
    Some(match b {
        b'A'..=b'Z' => b - b'A',
        b'a'..=b'z' => b - b'a' + 26,
        b'0'..=b'9' => b - b'0' + 52,
        b'+' | b'-' => 62,
        b'/' | b'_' => 63,
        _ => return None,
    })
}

const fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes every `%XX`; everything else is copied.
pub fn percent_decode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'%'
            && i + 2 < input.len()
            && let (Some(h), Some(l)) = (hex_value(input[i + 1]), hex_value(input[i + 2]))
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(input[i]);
        i += 1;
    }
    out
}

/// [`b64_value`] of every byte, `0xFF` outside the alphabet.
const B64_TABLE: [u8; 256] = {
    let mut t = [0xFFu8; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = match b64_value(b as u8) {
            Some(v) => v,
            None => 0xFF,
        };
        b += 1;
    }
    t
};

/// Decodes base64 in either alphabet, ignoring padding, whitespace and any
/// byte outside the alphabet; trailing bits that do not make a byte are
/// dropped.
pub fn base64_decode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() / 4 * 3 + 2);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    let mut i = 0;
    while i < input.len() {
        // Eight characters of the alphabet at a quantum boundary are six
        // bytes: the common case, without a branch per character.
        if bits == 0
            && let Some(eight) = input[i..].first_chunk::<8>()
        {
            let v = eight.map(|b| B64_TABLE[usize::from(b)]);
            if v.iter().fold(0, |a, &x| a | x) & 0x80 == 0 {
                let n = v.iter().fold(0u64, |n, &x| n << 6 | u64::from(x));
                out.extend_from_slice(&n.to_be_bytes()[2..]);
                i += 8;
                continue;
            }
        }
        let v = B64_TABLE[usize::from(input[i])];
        i += 1;
        if v & 0x80 != 0 {
            continue;
        }
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// The bytes of `decoded` read from bit `bit` on: what decoding the same
/// run from a later character gives (base64 from character `k` starts at
/// bit `6k`, hex from digit `k` at bit `4k`), without decoding it again.
/// The last byte, which would need bits past the end, is dropped.
pub(crate) fn from_bit(decoded: &[u8], bit: usize) -> Vec<u8> {
    let (skip, r) = (bit / 8, (bit % 8) as u32);
    let rest = decoded.get(skip..).unwrap_or_default();
    if r == 0 {
        return rest.to_vec();
    }
    rest.windows(2)
        .map(|w| w[0] << r | w[1] >> (8 - r))
        .collect()
}

/// The value of every hex digit, `0xFF` for any other byte.
const HEX_TABLE: [u8; 256] = {
    let mut t = [0xFFu8; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = match hex_value(b as u8) {
            Some(v) => v,
            None => 0xFF,
        };
        b += 1;
    }
    t
};

/// Decodes pairs of hex digits; any other byte restarts the pairing.
pub fn hex_decode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() / 2);
    let mut i = 0;
    while let Some(&[a, b]) = input.get(i..i + 2) {
        let (h, l) = (HEX_TABLE[usize::from(a)], HEX_TABLE[usize::from(b)]);
        if (h | l) & 0x80 == 0 {
            out.push(h << 4 | l);
            i += 2;
        } else if h & 0x80 != 0 {
            // Not a digit: the pairing starts again after it.
            i += 1;
        } else {
            // A digit, then not: both are dropped.
            i += 2;
        }
    }
    out
}

/// Base64 of `input`: the standard alphabet or the URL-safe one, with or
/// without `=` padding.
pub fn base64_encode(input: &[u8], url: bool, pad: bool) -> Vec<u8> {
    let table = if url { B64_URL } else { B64_STD };
    let mut out = Vec::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        let chars = chunk.len() + 1;
        for i in 0..4 {
            if i < chars {
                out.push(table[((n >> (18 - 6 * i)) & 63) as usize]);
            } else if pad {
                out.push(b'=');
            }
        }
    }
    out
}

pub fn hex_encode(input: &[u8], upper: bool) -> Vec<u8> {
    let digits: &[u8; 16] = if upper {
        b"0123456789ABCDEF"
    } else {
        b"0123456789abcdef"
    };
    input
        .iter()
        .flat_map(|&b| [digits[usize::from(b >> 4)], digits[usize::from(b & 15)]])
        .collect()
}

/// Percent-encodes every byte outside RFC 3986's unreserved set.
pub fn percent_encode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    for &b in input {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b);
        } else {
            out.push(b'%');
            out.extend_from_slice(&hex_encode(&[b], true));
        }
    }
    out
}

/// Lower-case base32 (RFC 4648 alphabet) without padding, the form DNS
/// exfiltration tools use in labels.
pub fn base32_encode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len().div_ceil(5) * 8);
    let mut acc: u64 = 0;
    let mut bits = 0u32;
    for &b in input {
        acc = (acc << 8) | u64::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(B32[((acc >> bits) & 31) as usize]);
        }
        acc &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(B32[((acc << (5 - bits)) & 31) as usize]);
    }
    out
}

/// Whether `b` can be part of a base64 or base64url run: written with
/// comparisons only, so a loop over a block of bytes compiles to vector
/// instructions.
const fn is_b64_class(b: u8) -> bool {
    b.wrapping_sub(b'0') < 10
        || (b | 0x20).wrapping_sub(b'a') < 26
        || b == b'+'
        || b == b'/'
        || b == b'-'
        || b == b'_'
}

/// Whether `b` can be inside a run that is wrapped over lines: the alphabet,
/// or a byte of a line break (`\r`, `\n`, or the backslash of `\n` or
/// `\r\n` written as escapes inside a JSON string).
const fn is_run_class(b: u8) -> bool {
    is_b64_class(b) || b == b'\n' || b == b'\r' || b == b'\\'
}

/// One bit per byte of `block`, set where `class` holds.
#[inline(always)]
fn class_bits(block: &[u8; 64], class: impl Fn(u8) -> bool) -> u64 {
    let mut flags = [0u8; 64];
    for (f, &b) in flags.iter_mut().zip(block) {
        *f = u8::from(class(b));
    }
    // Eight 0/1 bytes become eight bits: the multiplication moves byte `i`
    // to bit `56 + i`, with no carries into the top byte.
    let mut bits = 0u64;
    for (k, eight) in flags.chunks_exact(8).enumerate() {
        let mut w = [0u8; 8];
        w.copy_from_slice(eight);
        let packed = u64::from_le_bytes(w).wrapping_mul(0x0102_0408_1020_4080) >> 56;
        bits |= packed << (8 * k);
    }
    bits
}

/// [`class_bits`] of `hay[at..at + 64]`, with zeros past the end.
#[inline(always)]
fn class_bits_at(hay: &[u8], at: usize, class: impl Fn(u8) -> bool + Copy) -> u64 {
    match hay.get(at..).and_then(|rest| rest.first_chunk::<64>()) {
        Some(block) => class_bits(block, class),
        None => {
            let mut block = [0u8; 64];
            let rest = hay.get(at..).unwrap_or_default();
            block[..rest.len()].copy_from_slice(rest);
            // Zero is in no class.
            class_bits(&block, class)
        }
    }
}

/// The first position at or after `from` where sixteen bytes of `class`
/// follow ([`is_run_class`]: `MIN_HEX_RUN`), looking at 64 positions per
/// step: the bits of two blocks, and-ed with themselves shifted by 1, 2, 4
/// and 8, keep the positions that start sixteen set bits. Text, with its
/// short words, is crossed without a branch per word.
#[inline(always)]
fn long_run_start(hay: &[u8], from: usize, class: impl Fn(u8) -> bool + Copy) -> Option<usize> {
    const _: () = assert!(MIN_HEX_RUN == 16 && MIN_PRINTABLE == 16);
    let mut pos = from;
    let mut lo = class_bits_at(hay, pos, class);
    while pos + MIN_HEX_RUN <= hay.len() {
        let hi = class_bits_at(hay, pos + 64, class);
        let x = u128::from(lo) | u128::from(hi) << 64;
        let mut s = x & x >> 1;
        s &= s >> 2;
        s &= s >> 4;
        s &= s >> 8;
        let starts = s as u64;
        if starts != 0 {
            return Some(pos + starts.trailing_zeros() as usize);
        }
        pos += 64;
        lo = hi;
    }
    None
}

/// The first position at or after `from` whose byte is not of `class` (or
/// the end), 64 bytes per step.
#[inline(always)]
fn class_end(hay: &[u8], from: usize, class: impl Fn(u8) -> bool + Copy) -> usize {
    let mut pos = from;
    while pos < hay.len() {
        let bits = class_bits_at(hay, pos, class);
        if bits != u64::MAX {
            return (pos + bits.trailing_ones() as usize).min(hay.len());
        }
        pos += 64;
    }
    hay.len()
}

/// The shortest run decoded as base64: 20 characters carry 15 bytes.
pub(crate) const MIN_B64_RUN: usize = 20;
/// The shortest run decoded as hex: 16 digits carry 8 bytes, the shortest
/// known secret.
pub(crate) const MIN_HEX_RUN: usize = 16;
/// The shortest printable stretch of a binary decoded run that is scanned:
/// random bytes almost never have one (about one place in ten million), and
/// a secret with its context is longer.
pub(crate) const MIN_PRINTABLE: usize = 16;

/// What a run of the base64 alphabet looks like it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RunKind {
    Base64,
    Hex,
}

impl RunKind {
    /// Characters per unit of decoding: a run cut elsewhere decodes to
    /// something else from there on.
    pub(crate) fn quantum(self) -> usize {
        match self {
            RunKind::Base64 => 4,
            RunKind::Hex => 2,
        }
    }
}

/// The length of the line break at the start of `rest`: CRLF, LF, or the
/// same written as JSON escapes (`\r\n`, `\n`); 0 if there is none.
fn line_break_len(rest: &[u8]) -> usize {
    match rest {
        [b'\r', b'\n', ..] => 2,
        [b'\n', ..] => 1,
        [b'\\', b'r', b'\\', b'n', ..] => 4,
        [b'\\', b'n', ..] => 2,
        _ => 0,
    }
}

/// What a stretch of the alphabet holds: its length and which kinds of
/// characters are in it.
#[derive(Clone, Copy, Default)]
struct Shape {
    len: usize,
    upper: bool,
    lower: bool,
    nonhex: bool,
}

impl Shape {
    fn of(bytes: &[u8]) -> Shape {
        // Each flag or-ed on its own, without a branch per byte, so the
        // loop is vectorised.
        let (mut upper, mut lower, mut nonhex) = (0u8, 0u8, 0u8);
        for &b in bytes {
            upper |= u8::from(b.wrapping_sub(b'A') < 26);
            lower |= u8::from(b.wrapping_sub(b'a') < 26);
            let hex = (b.wrapping_sub(b'0') < 10) | ((b | 0x20).wrapping_sub(b'a') < 6);
            nonhex |= u8::from(!hex);
        }
        Shape {
            len: bytes.len(),
            upper: upper != 0,
            lower: lower != 0,
            nonhex: nonhex != 0,
        }
    }

    fn add(self, o: Shape) -> Shape {
        Shape {
            len: self.len + o.len,
            upper: self.upper | o.upper,
            lower: self.lower | o.lower,
            nonhex: self.nonhex | o.nonhex,
        }
    }

    /// All-hex runs of at least [`MIN_HEX_RUN`] and mixed-case runs of at
    /// least [`MIN_B64_RUN`] are worth decoding: text encodes to both
    /// cases, while words, hashes and identifiers in one case do not need
    /// decoding.
    fn kind(self) -> Option<RunKind> {
        if self.len >= MIN_HEX_RUN && !self.nonhex {
            Some(RunKind::Hex)
        } else if self.upper && self.lower && self.len >= MIN_B64_RUN {
            Some(RunKind::Base64)
        } else {
            None
        }
    }
}

/// Finds runs of the base64 alphabet worth decoding (see [`Shape::kind`]).
/// Trailing `=` padding is included in a base64 run.
///
/// A run can be wrapped over lines, as MIME, PEM and the `base64` command
/// write it (every 76 characters, or any other width: decoders skip line
/// breaks), also with the breaks written as JSON escapes: lines joined by
/// one line break (see [`line_break_len`]) are one run, and the caller
/// decodes them joined ([`Joined`]). The lines of a wrapped run may also be
/// separate values (one hash or token per line), so a line that qualifies
/// alone is also reported alone when joining would decode it differently:
/// it starts off a quantum boundary of the joined run, or is of another
/// kind (hex among base64).
pub(crate) fn encoded_runs(hay: &[u8], mut f: impl FnMut(Range<usize>, RunKind)) {
    // Each maximal stretch of at least MIN_HEX_RUN run bytes, in order: the
    // first place after the previous stretch where that many follow is the
    // start of the next one (the byte before it is outside the class, or is
    // the previous stretch's end, which is outside too).
    let mut from = 0;
    let mut lines = Vec::new();
    while let Some(start) = long_run_start(hay, from, is_run_class) {
        let end = class_end(hay, start + MIN_HEX_RUN, is_run_class);
        runs_in_stretch(hay, start..end, &mut lines, &mut f);
        from = end;
    }
}

/// The runs of [`encoded_runs`] inside one stretch of [`is_run_class`]
/// bytes; `lines` is scratch space.
fn runs_in_stretch(
    hay: &[u8],
    stretch: Range<usize>,
    lines: &mut Vec<Range<usize>>,
    f: &mut impl FnMut(Range<usize>, RunKind),
) {
    let mut i = stretch.start;
    while i < stretch.end {
        // A run starts at an alphabet byte that is not the letter of a
        // backslash escape (the `n` of `\n`).
        if !is_b64_class(hay[i]) || (i > 0 && hay[i - 1] == b'\\') {
            i += 1;
            continue;
        }
        lines.clear();
        loop {
            let line_start = i;
            i = class_end(&hay[..stretch.end], i, is_b64_class);
            lines.push(line_start..i);
            let brk = line_break_len(&hay[i..stretch.end]);
            if brk > 0 && i + brk < stretch.end && is_b64_class(hay[i + brk]) {
                i += brk;
            } else {
                break;
            }
        }
        report_run(hay, lines, f);
    }
}

/// Reports one run made of `lines` (one or more), and its lines alone
/// where joining would hide them.
fn report_run(hay: &[u8], lines: &[Range<usize>], f: &mut impl FnMut(Range<usize>, RunKind)) {
    let n = hay.len();
    let padded = |end: usize| {
        let mut p = end;
        while p < n && p - end < 2 && hay[p] == b'=' {
            p += 1;
        }
        p
    };
    let (Some(first), Some(last)) = (lines.first(), lines.last()) else {
        return;
    };
    let whole = lines
        .iter()
        .fold(Shape::default(), |a, l| a.add(Shape::of(&hay[l.clone()])));
    let kind = whole.kind();
    match kind {
        Some(RunKind::Hex) => f(first.start..last.end, RunKind::Hex),
        Some(RunKind::Base64) => f(first.start..padded(last.end), RunKind::Base64),
        None => {}
    }
    if kind != Some(RunKind::Hex) {
        // Hex glued to other characters of the alphabet (`/6768…` in a
        // path, `0x6768…`, `tok_6768…`): the run is no hex run, but a
        // server that strips the prefix reads the hex.
        for line in lines.iter().filter(|l| l.len() > MIN_HEX_RUN) {
            hex_inside(hay, line.clone(), f);
        }
    }
    if lines.len() == 1 {
        return;
    }
    let mut offset = 0;
    for (i, line) in lines.iter().enumerate() {
        let alone = Shape::of(&hay[line.clone()]).kind();
        let hidden = match (kind, alone) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(k), Some(a)) => k != a || offset % k.quantum() != 0,
        };
        if let (true, Some(a)) = (hidden, alone) {
            let end = if a == RunKind::Base64 && i + 1 == lines.len() {
                padded(line.end)
            } else {
                line.end
            };
            f(line.start..end, a);
        }
        offset += line.len();
    }
}

/// Each stretch of at least [`MIN_HEX_RUN`] hex digits inside `line` that
/// is not all of it, reported as a hex run.
fn hex_inside(hay: &[u8], line: Range<usize>, f: &mut impl FnMut(Range<usize>, RunKind)) {
    let is_hex = |b: u8| b.is_ascii_hexdigit();
    let mut i = line.start;
    while i < line.end {
        if !is_hex(hay[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < line.end && is_hex(hay[i]) {
            i += 1;
        }
        let digits = hay[start..i].iter().any(u8::is_ascii_digit);
        if i - start < MIN_HEX_RUN || !digits || (start..i) == line {
            continue;
        }
        // Only hex that reads as text from its start or from the next
        // digit (an odd digit glued before it): hashes and ids in paths
        // are common and decode to binary, which is not worth a layer.
        if let Some(from) = [start, start + 1].into_iter().find(|&p| {
            let head = hex_decode(&hay[p..(p + 32).min(i)]);
            head.len() >= 8 && head.iter().all(|b| (0x20..0x7f).contains(b))
        }) {
            f(from..i, RunKind::Hex);
        }
    }
}

/// A run with its line breaks taken out (see [`encoded_runs`]), and the
/// start of each line in both, to map a part of the joined bytes back.
pub(crate) struct Joined<'a> {
    pub bytes: Cow<'a, [u8]>,
    /// `(offset in bytes, offset in the run)` of each line's start (none
    /// for a run of one line).
    lines: Vec<(usize, usize)>,
}

impl<'a> Joined<'a> {
    pub(crate) fn new(run: &'a [u8]) -> Joined<'a> {
        if find_by(run, |b| b == b'\n' || b == b'\r' || b == b'\\').is_none() {
            // One line: no map needed (an empty one is the identity).
            return Joined {
                bytes: Cow::Borrowed(run),
                lines: Vec::new(),
            };
        }
        let mut bytes = Vec::with_capacity(run.len());
        let mut lines = vec![(0, 0)];
        let mut i = 0;
        while i < run.len() {
            let brk = line_break_len(&run[i..]);
            if brk > 0 {
                i += brk;
                lines.push((bytes.len(), i));
            } else {
                bytes.push(run[i]);
                i += 1;
            }
        }
        Joined {
            bytes: Cow::Owned(bytes),
            lines,
        }
    }

    fn source_of(&self, at: usize) -> usize {
        let i = self.lines.partition_point(|&(j, _)| j <= at);
        let (j, r) = i.checked_sub(1).map_or((0, 0), |i| self.lines[i]);
        r + (at - j)
    }

    /// The range of the run that `r` (a range of the joined bytes) came
    /// from.
    pub(crate) fn source(&self, r: Range<usize>) -> Range<usize> {
        if r.is_empty() {
            let at = self.source_of(r.start);
            return at..at;
        }
        self.source_of(r.start)..self.source_of(r.end - 1) + 1
    }
}

/// The first position in `hay` whose byte passes `hit`, looking at 32 bytes
/// per step without branches (which compiles to vector instructions) and
/// only then byte by byte.
fn find_by(hay: &[u8], hit: impl Fn(u8) -> bool) -> Option<usize> {
    let mut at = 0;
    for block in hay.chunks_exact(32) {
        if block.iter().fold(false, |any, &b| any | hit(b)) {
            break;
        }
        at += 32;
    }
    hay[at..].iter().position(|&b| hit(b)).map(|p| at + p)
}

/// The first `byte` in `hay`.
pub(crate) fn find_byte(hay: &[u8], byte: u8) -> Option<usize> {
    find_by(hay, |b| b == byte)
}

/// The first byte of `hay` outside ASCII.
pub(crate) fn find_non_ascii(hay: &[u8]) -> Option<usize> {
    find_by(hay, |b| b >= 0x80)
}

/// Finds runs that contain at least one `%XX` escape: maximal spans of bytes
/// that can appear in a URL or form body.
pub(crate) fn percent_runs(hay: &[u8], mut f: impl FnMut(Range<usize>)) {
    let url_byte = |b: u8| b > b' ' && b < 0x7f && !b"\"'<>`\\".contains(&b);
    let mut from = 0;
    while let Some(p) = find_byte(&hay[from..], b'%') {
        let p = from + p;
        if p + 2 >= hay.len() || hex_value(hay[p + 1]).is_none() || hex_value(hay[p + 2]).is_none()
        {
            from = p + 1;
            continue;
        }
        let mut start = p;
        while start > 0 && url_byte(hay[start - 1]) {
            start -= 1;
        }
        let mut end = p + 3;
        while end < hay.len() && url_byte(hay[end]) {
            end += 1;
        }
        f(start..end);
        from = end;
    }
}

const fn is_printable(b: u8) -> bool {
    b.wrapping_sub(0x20) < 0x5f || b == b'\n' || b == b'\r' || b == b'\t'
}

/// Calls `f` with each maximal stretch of printable ASCII (with tabs and
/// line breaks) of at least [`MIN_PRINTABLE`] bytes, found as runs are
/// (64 positions per step), so random bytes cost little.
pub(crate) fn printable_stretches(bytes: &[u8], mut f: impl FnMut(Range<usize>)) {
    let mut from = 0;
    while let Some(start) = long_run_start(bytes, from, is_printable) {
        let end = class_end(bytes, start + MIN_PRINTABLE, is_printable);
        f(start..end);
        from = end;
    }
}

/// True when decoded bytes read as text: a secret is printable, random binary
/// (hashes, images) is not.
pub(crate) fn mostly_text(bytes: &[u8]) -> bool {
    if bytes.is_empty() {
        return false;
    }
    // One pass, without branches: control bytes and bytes outside ASCII.
    let (mut controls, mut high) = (0usize, 0usize);
    for &b in bytes {
        let line = b == b'\n' || b == b'\r' || b == b'\t';
        controls += usize::from((b < 0x20 && !line) || b == 0x7f);
        high += usize::from(b >= 0x80);
    }
    // Valid UTF-8 (allowing a character cut at the end) with few control
    // bytes is text, whatever the script: random bytes are almost never
    // valid UTF-8 once there are a few high bytes.
    if controls * 10 <= bytes.len() && high > 0 {
        let valid = match std::str::from_utf8(bytes) {
            Ok(_) => true,
            Err(e) => e.error_len().is_none() && e.valid_up_to() + 4 > bytes.len(),
        };
        if valid {
            return true;
        }
    }
    // Otherwise nine in ten printable ASCII bytes (text with a few stray
    // bytes, such as a cut-off piece of a longer run).
    let printable = bytes.len() - controls - high;
    printable * 10 >= bytes.len() * 9
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_in_both_alphabets() {
        for s in [
            &b""[..],
            b"a",
            b"ab",
            b"abc",
            b"abcd",
            b"\xff\xfe\xfd?>",
            b"hello world!",
        ] {
            for url in [false, true] {
                for pad in [false, true] {
                    assert_eq!(base64_decode(&base64_encode(s, url, pad)), s);
                }
            }
        }
        assert_eq!(base64_encode(b"hello", false, true), b"aGVsbG8=");
        assert_eq!(base64_encode(b"\xfb\xff", true, false), b"-_8");
        assert_eq!(base64_decode(b"aGVs\nbG8="), b"hello");
    }

    #[test]
    fn base64_decode_matches_one_character_at_a_time() {
        let reference = |input: &[u8]| {
            let mut out = Vec::new();
            let (mut acc, mut bits) = (0u32, 0u32);
            for &b in input {
                let Some(v) = b64_value(b) else { continue };
                acc = (acc << 6) | u32::from(v);
                bits += 6;
                if bits >= 8 {
                    bits -= 8;
                    out.push((acc >> bits) as u8);
                    acc &= (1 << bits) - 1;
                }
            }
            out
        };
        let mut r = bottle_testkit::XorShift::new(0x9E37_79B9);
        let alphabet = b"QUJDaGVsbG8+/-_0189=\n. ";
        for len in 0..300 {
            let input: Vec<u8> = (0..len)
                .map(|_| {
                    let x = r.next_u32();
                    // Mostly the alphabet, sometimes a byte to skip.
                    if x.is_multiple_of(23) {
                        alphabet[(x >> 8) as usize % alphabet.len()]
                    } else {
                        alphabet[(x >> 8) as usize % 16]
                    }
                })
                .collect();
            assert_eq!(base64_decode(&input), reference(&input), "{input:?}");
        }
    }

    #[test]
    fn hex_decode_matches_the_pairing_reference() {
        let reference = |input: &[u8]| {
            let mut out = Vec::new();
            let mut high: Option<u8> = None;
            for &b in input {
                match (hex_value(b), high) {
                    (Some(v), None) => high = Some(v),
                    (Some(v), Some(h)) => {
                        out.push(h << 4 | v);
                        high = None;
                    }
                    (None, _) => high = None,
                }
            }
            out
        };
        let mut r = bottle_testkit::XorShift::new(0x2545_F491);
        let alphabet = b"0123456789abcdefABCDEF xg\n";
        for len in 0..300 {
            let input: Vec<u8> = (0..len)
                .map(|_| alphabet[(r.next_u32() >> 8) as usize % alphabet.len()])
                .collect();
            assert_eq!(hex_decode(&input), reference(&input), "{input:?}");
        }
    }

    #[test]
    fn from_bit_is_decoding_from_a_later_character() {
        let text = b"a secret of some length, to be cut anywhere";
        let b64 = base64_encode(text, false, false);
        let hex = hex_encode(text, false);
        let d64 = base64_decode(&b64);
        let dhex = hex_decode(&hex);
        for k in 0..4 {
            let want = base64_decode(&b64[k..]);
            let got = from_bit(&d64, 6 * k);
            assert!(want.starts_with(&got) && want.len() - got.len() <= 1, "{k}");
        }
        let want = hex_decode(&hex[1..]);
        let got = from_bit(&dhex, 4);
        assert!(want.starts_with(&got) && want.len() - got.len() <= 1);
        assert!(from_bit(b"", 6).is_empty());
    }

    #[test]
    fn printable_stretches_of_binary() {
        let mut data = vec![0u8; 300];
        data[10..40].copy_from_slice(&[b'a'; 30]);
        data[100..115].copy_from_slice(&[b'b'; 15]);
        data[284..].copy_from_slice(&[b'c'; 16]);
        let mut got = Vec::new();
        printable_stretches(&data, |r| got.push(r));
        assert_eq!(got, vec![10..40, 284..300]);
    }

    #[test]
    fn hex_and_percent() {
        assert_eq!(hex_encode(b"\x01\xab", false), b"01ab");
        assert_eq!(hex_encode(b"\x01\xab", true), b"01AB");
        assert_eq!(hex_decode(b"01aBzz4"), b"\x01\xab");
        assert_eq!(percent_decode(b"a%20b%2x%41%"), b"a b%2xA%");
        assert_eq!(percent_encode(b"a b/~"), b"a%20b%2F~");
        assert_eq!(percent_decode(&percent_encode(b"k=v&x")), b"k=v&x");
    }

    #[test]
    fn base32_matches_rfc4648() {
        assert_eq!(base32_encode(b"foobar"), b"mzxw6ytboi");
        assert_eq!(base32_encode(b"f"), b"my");
        assert_eq!(base32_encode(b""), b"");
    }

    #[test]
    fn runs_pick_mixed_base64_and_hex_only() {
        let hay = b"x aGVsbG8gd29ybGQgaGVsbG8gd29ybGQ= deadbeefdeadbeef0011 \
                    lowercaseidentifierthatislong 550e8400-e29b-41d4-a716-446655440000";
        let mut runs = Vec::new();
        encoded_runs(hay, |r, k| {
            runs.push((String::from_utf8_lossy(&hay[r]).into_owned(), k))
        });
        assert_eq!(
            runs,
            vec![
                (
                    "aGVsbG8gd29ybGQgaGVsbG8gd29ybGQ=".to_string(),
                    RunKind::Base64
                ),
                ("deadbeefdeadbeef0011".to_string(), RunKind::Hex),
            ]
        );
    }

    /// The byte-at-a-time search `encoded_runs` replaced, kept as a
    /// reference: the same runs and lines without the search by blocks.
    fn encoded_runs_reference(hay: &[u8]) -> Vec<(Range<usize>, RunKind)> {
        let mut out = Vec::new();
        let n = hay.len();
        let class = |i: usize| is_b64_class(hay[i]);
        let brk = |i: usize| {
            let rest = &hay[i..];
            [&b"\r\n"[..], b"\n", b"\\r\\n", b"\\n"]
                .iter()
                .find(|p| rest.starts_with(p))
                .map_or(0, |p| p.len())
        };
        let kind_of = |bytes: &[u8]| {
            if bytes.len() >= MIN_HEX_RUN && bytes.iter().all(u8::is_ascii_hexdigit) {
                Some(RunKind::Hex)
            } else if bytes.len() >= MIN_B64_RUN
                && bytes.iter().any(u8::is_ascii_uppercase)
                && bytes.iter().any(u8::is_ascii_lowercase)
            {
                Some(RunKind::Base64)
            } else {
                None
            }
        };
        let padded = |end: usize| {
            let mut p = end;
            while p < n && p - end < 2 && hay[p] == b'=' {
                p += 1;
            }
            p
        };
        let mut i = 0;
        while i < n {
            if !class(i) || (i > 0 && hay[i - 1] == b'\\') {
                i += 1;
                continue;
            }
            let mut lines = Vec::new();
            loop {
                let start = i;
                while i < n && class(i) {
                    i += 1;
                }
                lines.push(start..i);
                let b = if i < n { brk(i) } else { 0 };
                if b > 0 && i + b < n && class(i + b) {
                    i += b;
                } else {
                    break;
                }
            }
            let joined: Vec<u8> = lines.iter().flat_map(|l| hay[l.clone()].to_vec()).collect();
            let kind = kind_of(&joined);
            let (start, end) = (lines[0].start, lines[lines.len() - 1].end);
            match kind {
                Some(RunKind::Base64) => out.push((start..padded(end), RunKind::Base64)),
                Some(RunKind::Hex) => out.push((start..end, RunKind::Hex)),
                None => {}
            }
            if lines.len() > 1 {
                let mut offset = 0;
                for (j, l) in lines.iter().enumerate() {
                    if let Some(alone) = kind_of(&hay[l.clone()]) {
                        let hidden = kind.is_none_or(|k| k != alone || offset % k.quantum() != 0);
                        if hidden {
                            let last = j + 1 == lines.len();
                            let end = if last && alone == RunKind::Base64 {
                                padded(l.end)
                            } else {
                                l.end
                            };
                            out.push((l.start..end, alone));
                        }
                    }
                    offset += l.len();
                }
            }
        }
        out
    }

    #[test]
    fn runs_match_the_reference_on_random_input() {
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let alphabet = b"aZ09+/-_=fF. \n%\xc3\r\\n";
        for round in 0..3000 {
            let len = (next() % 1000) as usize;
            // Long stretches of the alphabet with a few breaks, at every
            // offset against the 64-byte blocks.
            let breaks = 1 + round % 200;
            let hay: Vec<u8> = (0..len)
                .map(|_| {
                    let r = next();
                    if r % breaks as u64 == 0 {
                        alphabet[(r >> 8) as usize % alphabet.len()]
                    } else {
                        alphabet[(r >> 8) as usize % 8]
                    }
                })
                .collect();
            let mut got = Vec::new();
            encoded_runs(&hay, |r, k| got.push((r, k)));
            assert_eq!(got, encoded_runs_reference(&hay), "{hay:?}");
        }
        for b in 0..=255u8 {
            assert_eq!(is_b64_class(b), b64_value(b).is_some(), "{b}");
        }
    }

    #[test]
    fn percent_runs_span_the_url() {
        let hay = b"GET /a?q=%41b&x=1 HTTP/1.1 100% sure";
        let mut runs = Vec::new();
        percent_runs(hay, |r| runs.push(hay[r].to_vec()));
        assert_eq!(runs, vec![b"/a?q=%41b&x=1".to_vec()]);
    }

    #[test]
    fn wrapped_lines_are_one_run() {
        let runs = |hay: &[u8]| {
            let mut v = Vec::new();
            encoded_runs(hay, |r, k| {
                v.push((String::from_utf8_lossy(&hay[r]).into_owned(), k))
            });
            v
        };
        // MIME lines, short lines, JSON escapes; padding ends the run.
        let mime = b"x: aGVsbG8gd29ybGQgaGVs\r\nbG8gd29y\r\nbGQ=\r\nnext";
        assert_eq!(
            runs(mime),
            vec![(
                "aGVsbG8gd29ybGQgaGVs\r\nbG8gd29y\r\nbGQ=".to_string(),
                RunKind::Base64
            )]
        );
        let short = b"aGVs\nbG8g\nd29y\nbGQg\naGVs";
        assert_eq!(runs(short).len(), 1);
        assert_eq!(runs(short)[0].0.len(), short.len());
        let json = br#"{"c":"aGVsbG8g\nd29ybGQg\r\naGVsbG8=\n"}"#;
        assert_eq!(
            runs(json),
            vec![(
                r"aGVsbG8g\nd29ybGQg\r\naGVsbG8=".to_string(),
                RunKind::Base64
            )]
        );
        // The letter of an escape does not start a run.
        let after = br#"{"c":"key:\naGVsbG8gd29ybGQgaGVsbG8="}"#;
        assert_eq!(runs(after)[0].0, "aGVsbG8gd29ybGQgaGVsbG8=");
        // A blank line, a lone CR or other escapes end the run.
        for sep in ["\n\n", "\r", "\\t", " \n"] {
            let hay = format!("aGVsbG8gd29ybGQgaGVs{sep}bG8gd29ybGQgaGVsbG8g");
            assert_eq!(runs(hay.as_bytes()).len(), 2, "{sep:?}");
        }
        // Lines that joining would misalign are also reported alone.
        let misaligned = b"aGVsbG8gd29ybGQgaGVsbG8\nd29ybGQgaGVsbG8gd29ybGQ\n";
        let got = runs(misaligned);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[1].0, "d29ybGQgaGVsbG8gd29ybGQ");
    }

    #[test]
    fn joined_maps_back_to_the_run() {
        let run = b"abcd\r\nefgh\\nij";
        let j = Joined::new(run);
        assert_eq!(&j.bytes[..], b"abcdefghij");
        assert_eq!(j.source(0..4), 0..4);
        assert_eq!(j.source(3..5), 3..7);
        assert_eq!(j.source(8..10), 12..14);
        assert_eq!(j.source(0..10), 0..run.len());
        let plain = Joined::new(b"abcdef");
        assert!(matches!(plain.bytes, Cow::Borrowed(_)));
        assert_eq!(plain.source(2..5), 2..5);
    }

    #[test]
    fn text_detection() {
        assert!(mostly_text(b"sk-ant-oat01-abcdef"));
        assert!(!mostly_text(&[
            0x12, 0x9a, 0xff, 0x00, 0x41, 0x42, 0xc3, 0x01
        ]));
        assert!(!mostly_text(b""));
    }
}
