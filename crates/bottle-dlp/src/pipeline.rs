//! One scan of a buffer: rules and known secrets on the raw bytes, then on
//! each decoded layer (percent runs, base64 and hex runs, normalised
//! non-ASCII text, unescaped text), recursively to a bounded depth and within
//! a budget of decoded bytes, so nested and disguised secrets are found and
//! hostile input costs bounded time and memory.
//!
//! A finding inside a decoded layer reports the range of the encoded run in
//! the caller's input (for normalised and unescaped text, the exact source
//! bytes).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::ops::Range;
use std::sync::OnceLock;

use crate::decode::{
    Joined, MIN_PRINTABLE, RunKind, base64_decode, encoded_runs, find_byte, find_non_ascii,
    from_bit, hex_decode, mostly_text, percent_decode, percent_runs, printable_stretches,
};
use crate::finding::redact_preview;
use crate::normalize::{Normalized, is_invisible, normalize};
use crate::prefilter::Scratch;
use crate::unescape;
use crate::{Engine, Finding, KNOWN_SECRET_RULE};
use unicode_normalization::{IsNormalized, is_nfkc_quick};

/// Layers of decoding below the raw input: enough for a secret wrapped in
/// three encodings and disguised with Unicode.
pub(crate) const MAX_DEPTH: u8 = 4;
/// Long runs are decoded in pieces of this size, overlapping so that a secret
/// across a piece boundary is still whole in one of them.
const PIECE: usize = 64 * 1024;
const PIECE_OVERLAP: usize = 512;
/// How far around a non-ASCII byte normalisation looks (within its line).
const NORM_RADIUS: usize = 512;
const NORM_PIECE: usize = 16 * 1024;
/// How much of a piece the next one reads again: the longest escaped form
/// a piece must hold whole. A 120-character token is 720 bytes of JSON
/// `\u` escapes and 1,200 of numeric references with leading zeros
/// (`&#0000081;`); 4 KiB holds a token of up to 400 characters at 10 bytes
/// each. Escapes padded longer still are the limit (docs/dlp.md).
const NORM_OVERLAP: usize = 4 * 1024;
/// The longest finding the stream scanner keeps whole: an 8192-bit RSA key
/// block is about 6.5 KiB. A longer one (a secret deep in a long encoded run)
/// is still reported, with the range seen before its start left the buffer.
pub(crate) const MAX_FINDING_LEN: usize = 8 * 1024;

/// A finding before de-duplication, with a hash of the secret so that the
/// same secret found raw and again inside a decoded layer is reported once.
struct Raw {
    finding: Finding,
    key: u64,
}

struct Scan<'e> {
    engine: &'e Engine,
    budget: usize,
    /// Some layer went unread for want of budget.
    exhausted: bool,
    out: Vec<Raw>,
    scratch: Scratch,
}

type Map<'a> = &'a dyn Fn(Range<usize>) -> Range<usize>;

pub(crate) fn scan(engine: &Engine, input: &[u8]) -> Vec<Finding> {
    let mut s = Scan {
        engine,
        // Each layer is smaller than its source, except normalisation, which
        // is capped per piece; twice the input bounds the total work.
        budget: input.len().saturating_mul(2).saturating_add(1 << 20),
        exhausted: false,
        out: Vec::new(),
        scratch: Scratch::default(),
    };
    s.layer(input, 0, &|r| r);
    if s.exhausted {
        // Fail closed: nested escapes made to spend the budget before the
        // layer that holds a secret is reached would otherwise pass clean.
        s.out.push(Raw {
            key: key_of(crate::ENCODING_TOO_DEEP_RULE, b""),
            finding: Finding {
                rule: crate::ENCODING_TOO_DEEP_RULE,
                range: 0..input.len() as u64,
                redacted: "****".to_string(),
            },
        });
    }
    dedup(s.out)
}

fn key_of(rule: &str, secret: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    rule.hash(&mut h);
    secret.hash(&mut h);
    h.finish()
}

fn to_u64(r: Range<usize>) -> Range<u64> {
    r.start as u64..r.end as u64
}

/// Splits `range` into pieces of at most `PIECE` bytes (aligned to `align`)
/// that overlap by `PIECE_OVERLAP`.
fn pieces(range: Range<usize>, align: usize) -> Vec<Range<usize>> {
    split(range, PIECE, PIECE_OVERLAP, align)
}

/// Splits `range` into pieces of at most `size` bytes that overlap by
/// `overlap`, each starting a multiple of `align` after `range.start`.
fn split(range: Range<usize>, size: usize, overlap: usize, align: usize) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = range.start;
    loop {
        let end = (start + size).min(range.end);
        out.push(start..end);
        if end >= range.end {
            return out;
        }
        let next = end - overlap;
        start = next - (next - range.start) % align;
    }
}

impl Scan<'_> {
    fn layer(&mut self, hay: &[u8], depth: u8, map: Map<'_>) {
        let engine = self.engine;
        let out = &mut self.out;
        engine.rules.scan_with(hay, &mut self.scratch, |h| {
            out.push(Raw {
                key: key_of(h.rule, &hay[h.range.clone()]),
                finding: Finding {
                    rule: h.rule,
                    range: to_u64(map(h.range)),
                    redacted: redact_preview(h.preview),
                },
            });
        });
        engine.known.find(hay, |r| {
            out.push(Raw {
                key: key_of(KNOWN_SECRET_RULE, &hay[r.clone()]),
                finding: Finding {
                    rule: KNOWN_SECRET_RULE,
                    range: to_u64(map(r)),
                    redacted: "****".to_string(),
                },
            });
        });
        if depth >= MAX_DEPTH {
            return;
        }
        self.percent_layers(hay, depth, map);
        self.encoded_layers(hay, depth, map);
        if !hay.is_ascii() {
            self.normalized_layers(hay, depth, map);
        }
        self.unescaped_layers(hay, depth, map);
    }

    /// Charges `n` decoded bytes to the budget; false once it is spent.
    fn charge(&mut self, n: usize) -> bool {
        if self.budget < n {
            self.budget = 0;
            self.exhausted = true;
            return false;
        }
        self.budget -= n;
        true
    }

    fn decoded_layer(&mut self, decoded: &[u8], run: Range<usize>, depth: u8, map: Map<'_>) {
        if !self.charge(decoded.len()) {
            return;
        }
        let outer = map(run);
        self.layer(decoded, depth + 1, &|_| outer.clone());
    }

    fn percent_layers(&mut self, hay: &[u8], depth: u8, map: Map<'_>) {
        if find_byte(hay, b'%').is_none() {
            return;
        }
        let mut runs = Vec::new();
        percent_runs(hay, |r| runs.extend(pieces(r, 1)));
        for run in runs {
            let decoded = percent_decode(&hay[run.clone()]);
            if decoded.len() < run.len() {
                self.decoded_layer(&decoded, run, depth, map);
            }
        }
    }

    fn encoded_layers(&mut self, hay: &[u8], depth: u8, map: Map<'_>) {
        let mut runs = Vec::new();
        encoded_runs(hay, |r, kind| runs.push((r, kind)));
        for (run, kind) in runs {
            // A run at the very start of a stream buffer (after line breaks
            // at most) may have been cut mid-quantum by the look-back.
            let cut = depth == 0
                && run.start <= 4
                && hay[..run.start]
                    .iter()
                    .all(|b| matches!(b, b'\r' | b'\n' | b'\\' | b'r' | b'n'));
            let joined = Joined::new(&hay[run.clone()]);
            for piece in pieces(0..joined.bytes.len(), kind.quantum()) {
                let src = joined.source(piece.clone());
                let src = run.start + src.start..run.start + src.end;
                let at_start = cut && piece.start == 0;
                self.encoded_piece(&joined.bytes[piece], kind, at_start, src, depth, map);
            }
        }
    }

    /// Decodes one piece of an encoded run (line breaks taken out), the
    /// range `src` of `hay`.
    fn encoded_piece(
        &mut self,
        bytes: &[u8],
        kind: RunKind,
        cut: bool,
        src: Range<usize>,
        depth: u8,
        map: Map<'_>,
    ) {
        let decode = |b: &[u8]| match kind {
            RunKind::Hex => hex_decode(b),
            RunKind::Base64 => base64_decode(b),
        };
        // A run that may have been cut: each alignment. So too any run
        // that decodes to binary, for text: a character glued before the
        // encoding (`?q=x` and base64, an odd hex digit) shifts it, and a
        // server that takes the value apart reads it from the right place.
        let shifts = kind.quantum().min(bytes.len());
        // Most runs are identifiers, hashes or binary data: look at the
        // start before decoding all of it (all of it, for a short run). A
        // run cut by a stream buffer's start is read at every alignment:
        // stopping at the first that looked like text let a decoy before
        // a secret choose a wrong alignment, and the secret was read
        // garbled (the window that saw its right one had only part of it).
        let mut head0 = None;
        let mut binary = Vec::new();
        for k in 0..shifts {
            let head = decode(&bytes[k..bytes.len().min(k + 64)]);
            let whole = k + 64 >= bytes.len();
            if mostly_text(&head) {
                let decoded = if whole { head } else { decode(&bytes[k..]) };
                if decoded.len() >= crate::MIN_KNOWN_SECRET_LEN {
                    if mostly_text(&decoded) {
                        self.decoded_layer(&decoded, src.clone(), depth, map);
                    } else {
                        self.binary_layer(&decoded, src.clone(), depth, map);
                    }
                }
                if !cut {
                    return;
                }
                continue;
            }
            // An alignment other than the first counts as binary only for
            // a cut run: another run is tried at the others for text alone
            // (most are identifiers, binary at every alignment).
            if k == 0 || cut {
                binary.push(k);
            }
            if k == 0 && whole {
                head0 = Some(head);
            }
        }
        if binary.is_empty() {
            return;
        }
        // Binary from the start: the text in it, if any, is at one of the
        // alignments, each the first one read from a later bit.
        let decoded = head0.unwrap_or_else(|| decode(bytes));
        let bits = match kind {
            RunKind::Hex => 4,
            RunKind::Base64 => 6,
        };
        for k in binary {
            let shifted = if k == 0 {
                Cow::Borrowed(&decoded[..])
            } else {
                Cow::Owned(from_bit(&decoded, bits * k))
            };
            self.binary_layer(&shifted, src.clone(), depth, map);
        }
    }

    /// A decoded run that is mostly binary (an image, random bytes, a key
    /// file), with perhaps a secret in it: on binary the rules would match
    /// noise, so only its printable stretches are scanned, each as a layer.
    fn binary_layer(&mut self, decoded: &[u8], run: Range<usize>, depth: u8, map: Map<'_>) {
        // Too short for a stretch (a hash, most often).
        if decoded.len() < MIN_PRINTABLE || !self.charge(decoded.len()) {
            return;
        }
        let outer = map(run);
        let mut stretches = Vec::new();
        printable_stretches(decoded, |r| stretches.push(r));
        for r in stretches {
            self.layer(&decoded[r], depth + 1, &|_| outer.clone());
        }
        // UTF-16 text in it (PowerShell's -EncodedCommand is base64 of
        // UTF-16LE): half its bytes are NUL, so it is no printable stretch.
        if depth + 1 < MAX_DEPTH && find_byte(decoded, 0).is_some() {
            self.utf16_layers(decoded, depth + 1, &|_| outer.clone());
        }
    }

    fn normalized_layers(&mut self, hay: &[u8], depth: u8, map: Map<'_>) {
        for seg in non_ascii_segments(hay) {
            // No character expands more than 11-fold in NFKC (U+FDFA, 3
            // bytes to 33): a piece never reaches this bound, which only
            // guards memory. Below it, text after a run of such characters
            // went unread.
            let Some(n) = normalize(&hay[seg.clone()], NORM_PIECE * 12) else {
                continue;
            };
            if !self.mapped_layer(&n, seg.start, depth, map) {
                return;
            }
        }
    }

    /// Scans `n`, decoded from `hay[base..]`, as the next layer; false once
    /// the budget is spent.
    fn mapped_layer(&mut self, n: &Normalized, base: usize, depth: u8, map: Map<'_>) -> bool {
        if !self.charge(n.text.len()) {
            return false;
        }
        self.layer(&n.text, depth + 1, &|r| {
            let o = n.map(r);
            map(o.start + base..o.end + base)
        });
        true
    }

    /// Escapes a server undoes before it uses a value (JSON `\uXXXX`,
    /// numeric character references, UTF-16, quoted-printable), each decoded
    /// only around the places that have one, and only when what starts it
    /// occurs at all.
    fn unescaped_layers(&mut self, hay: &[u8], depth: u8, map: Map<'_>) {
        let seen = unescape::present(hay);
        // Which escaped characters outside ASCII can matter.
        let any_wide = self.engine.known.has_non_ascii();
        let wide = |c: char| any_wide || suspicious_cached(c);
        if seen.json {
            let segs = around(|f| unescape::json_escapes(hay, &wide, f), hay.len());
            self.escape_layers(hay, segs, unescape::json_unescape, depth, map);
        }
        if seen.ncr {
            let segs = around(|f| unescape::ncr_refs(hay, &wide, f), hay.len());
            self.escape_layers(hay, segs, unescape::ncr_decode, depth, map);
        }
        if seen.nul {
            self.utf16_layers(hay, depth, map);
        }
        if seen.quoted_printable(hay) {
            let segs = around(|f| unescape::qp_escapes(hay, f), hay.len());
            self.escape_layers(hay, segs, unescape::qp_decode, depth, map);
        }
    }

    fn escape_layers(
        &mut self,
        hay: &[u8],
        segs: Vec<Range<usize>>,
        decode: fn(&[u8]) -> Normalized,
        depth: u8,
        map: Map<'_>,
    ) {
        for seg in segs {
            let n = decode(&hay[seg.clone()]);
            if !self.mapped_layer(&n, seg.start, depth, map) {
                return;
            }
        }
    }

    fn utf16_layers(&mut self, hay: &[u8], depth: u8, map: Map<'_>) {
        for (region, big_endian) in unescape::utf16_regions(hay) {
            // Pieces of even length from an even start keep the code units.
            for piece in cut(region) {
                let n = unescape::utf16_decode(&hay[piece.clone()], big_endian);
                if !self.mapped_layer(&n, piece.start, depth, map) {
                    return;
                }
            }
        }
    }
}

/// Whether normalising could change this character: it is invisible, or
/// NFKC maps it to something else (full-width forms, ligatures, …). Accents,
/// CJK and most other text are stable and need nothing.
fn suspicious(c: char) -> bool {
    is_invisible(c) || is_nfkc_quick(std::iter::once(c)) == IsNormalized::No
}

/// [`suspicious`] for the Basic Multilingual Plane, one bit per character
/// and 64 characters per entry, each entry worked out the first time one of
/// its characters is seen: text in other scripts, or with many typographic
/// quotes and dashes, asks for the same few characters again and again.
static SUSPICIOUS_BMP: [OnceLock<u64>; 0x10000 / 64] = [const { OnceLock::new() }; 0x10000 / 64];

fn suspicious_cached(c: char) -> bool {
    let cp = c as usize;
    let Some(entry) = SUSPICIOUS_BMP.get(cp / 64) else {
        return suspicious(c);
    };
    let bits = entry.get_or_init(|| {
        let base = cp - cp % 64;
        (0..64u32)
            .filter(|k| char::from_u32(base as u32 + k).is_some_and(suspicious))
            .fold(0u64, |bits, k| bits | 1 << k)
    });
    bits >> (cp % 64) & 1 != 0
}

/// The neighbourhoods of suspicious characters, `NORM_RADIUS` bytes either
/// side (across lines: a disguised private key spans several), merged and cut
/// into pieces.
fn non_ascii_segments(hay: &[u8]) -> Vec<Range<usize>> {
    around(
        |f| {
            let mut i = 0;
            while let Some(p) = find_non_ascii(&hay[i..]) {
                let p = i + p;
                let width = match hay[p] {
                    0xC0..=0xDF => 2,
                    0xE0..=0xEF => 3,
                    0xF0..=0xF7 => 4,
                    _ => 1,
                };
                let end_char = (p + width).min(hay.len());
                i = end_char;
                let c = std::str::from_utf8(&hay[p..end_char])
                    .ok()
                    .and_then(|s| s.chars().next());
                if c.is_some_and(suspicious_cached) {
                    f(p..end_char);
                }
            }
        },
        hay.len(),
    )
}

/// The neighbourhoods of the places `spots` reports in order (in a buffer of
/// `len` bytes), `NORM_RADIUS` bytes either side, merged and cut into
/// pieces.
fn around(spots: impl FnOnce(&mut dyn FnMut(Range<usize>)), len: usize) -> Vec<Range<usize>> {
    let mut segs: Vec<Range<usize>> = Vec::new();
    spots(&mut |spot| {
        let start = spot.start.saturating_sub(NORM_RADIUS);
        let end = (spot.end + NORM_RADIUS).min(len);
        match segs.last_mut() {
            Some(last) if start <= last.end => last.end = last.end.max(end),
            _ => segs.push(start..end),
        }
    });
    segs.into_iter().flat_map(cut).collect()
}

/// Cuts a segment into pieces of `NORM_PIECE` bytes that overlap by
/// `NORM_OVERLAP` (both even, so a piece of UTF-16 from an even start keeps
/// its units).
fn cut(seg: Range<usize>) -> Vec<Range<usize>> {
    split(seg, NORM_PIECE, NORM_OVERLAP, 2)
}

fn is_generic(rule: &str) -> bool {
    rule.starts_with("generic-")
}

/// Sorts and removes repeats: the same secret of the same rule seen in
/// several layers is kept once, at its narrowest range; a generic finding
/// that overlaps a specific one is dropped.
fn dedup(mut raw: Vec<Raw>) -> Vec<Finding> {
    raw.sort_by(|a, b| {
        (
            a.key,
            a.finding.range.end - a.finding.range.start,
            a.finding.range.start,
        )
            .cmp(&(
                b.key,
                b.finding.range.end - b.finding.range.start,
                b.finding.range.start,
            ))
    });
    // Within one key (rule and secret) the kept ranges are disjoint, so the
    // kept range with the greatest start below a candidate's end is the only
    // one that can overlap it.
    let mut kept: Vec<Raw> = Vec::with_capacity(raw.len());
    let mut group: BTreeMap<u64, u64> = BTreeMap::new();
    let mut group_key = None;
    for r in raw {
        if group_key != Some(r.key) {
            group.clear();
            group_key = Some(r.key);
        }
        let range = &r.finding.range;
        let dup = group
            .range(..range.end)
            .next_back()
            .is_some_and(|(_, &end)| end > range.start);
        if !dup {
            group.insert(range.start, range.end);
            kept.push(r);
        }
    }
    let mut out: Vec<Finding> = kept.into_iter().map(|r| r.finding).collect();
    // One finding per start and rule, the longest: layers can see one
    // secret as slightly different spans from the same start (a base64 run
    // with and without its last quantum), and a redaction of the shorter
    // alone would leave the rest of the span in place. The stream scanner
    // reports each start and rule once, so it relies on this too.
    out.sort_by(|a, b| {
        (a.range.start, a.rule, std::cmp::Reverse(a.range.end)).cmp(&(
            b.range.start,
            b.rule,
            std::cmp::Reverse(b.range.end),
        ))
    });
    out.dedup_by(|later, first| later.range.start == first.range.start && later.rule == first.rule);
    out.sort_by(|a, b| {
        (a.range.start, a.range.end, a.rule).cmp(&(b.range.start, b.range.end, b.rule))
    });
    // Drop generic findings covered by a specific one: both lists are sorted
    // by start, so one sweep keeps the furthest end of specific ranges so far.
    let specific: Vec<Range<u64>> = out
        .iter()
        .filter(|f| !is_generic(f.rule))
        .map(|f| f.range.clone())
        .collect();
    if !specific.is_empty() {
        out.retain(|f| {
            if !is_generic(f.rule) {
                return true;
            }
            let i = specific.partition_point(|s| s.start < f.range.end);
            !specific[..i]
                .iter()
                .rev()
                .take(64)
                .any(|s| overlaps(s, &f.range))
        });
    }
    out
}

fn overlaps(a: &Range<u64>, b: &Range<u64>) -> bool {
    a.start < b.end && b.start < a.end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_cover_and_overlap() {
        assert_eq!(pieces(3..10, 4), vec![3..10]);
        let p = pieces(0..PIECE * 2 + 10, 4);
        assert!(p.len() >= 3);
        assert_eq!(p[0].start, 0);
        assert_eq!(p.last().map(|r| r.end), Some(PIECE * 2 + 10));
        for w in p.windows(2) {
            assert!(w[1].start < w[0].end);
            assert_eq!(w[1].start % 4, 0);
        }
    }

    /// Attack: escapes nested so that each layer decodes into several
    /// more (JSON, character references, quoted-printable, full-width
    /// forms) spend the decode budget before the layer that holds a token
    /// is reached. The scan must not then pass the input as clean.
    #[test]
    fn a_spent_decode_budget_is_a_finding() {
        let engine = crate::Engine::builder().build().unwrap();
        let unit = "\\\\u0041 &#38;#38;#65; =3D3D41 \\uFF21 &#65313; \u{ff21} ";
        let mut input = unit.repeat(64 * 1024 / unit.len());
        input.push_str(&" ".repeat(1536));
        let token = "ghp_k2Lq8ZrT4vYw9NcX1bHs7MdP3aFe6UjG0iRo";
        let escaped: String = token
            .chars()
            .map(|c| format!("\\u{:04x}", c as u32))
            .collect();
        let json = format!("{{\"t\":\"{escaped}\"}}");
        // The token alone, escaped so, is found by its rule.
        let alone = scan(&engine, json.as_bytes());
        assert!(
            alone
                .iter()
                .any(|f| f.rule != crate::ENCODING_TOO_DEEP_RULE),
            "{alone:?}"
        );
        input.push_str(&json);
        let found = scan(&engine, input.as_bytes());
        assert!(
            found
                .iter()
                .any(|f| f.rule == crate::ENCODING_TOO_DEEP_RULE || f.rule == alone[0].rule),
            "{found:?}"
        );
    }

    #[test]
    fn suspicious_table_agrees() {
        for c in (0..0x11000u32).filter_map(char::from_u32) {
            assert_eq!(suspicious_cached(c), suspicious(c), "{:X}", c as u32);
        }
    }

    #[test]
    fn segments_surround_suspicious_characters_only() {
        let mut hay = vec![b'a'; 2000];
        hay.extend_from_slice("ｔｅｘｔ".as_bytes());
        hay.extend(vec![b'b'; 2000]);
        let segs = non_ascii_segments(&hay);
        assert_eq!(segs, vec![2000 - NORM_RADIUS..2012 + NORM_RADIUS]);
        assert!(non_ascii_segments(b"plain").is_empty());
        assert!(non_ascii_segments("café, 東京, naïve — “quoted”".as_bytes()).is_empty());
        assert_eq!(non_ascii_segments("a\u{200B}b".as_bytes()), vec![0..5]);
    }
}
