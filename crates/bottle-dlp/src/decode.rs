//! Encoders and lenient decoders for the encodings a secret can hide in
//! (percent, base64 and base64url, hex, base32), and the search for runs of
//! input worth decoding.
//!
//! The decoders never fail: they decode what they can and skip the rest,
//! because input is hostile and a partial decode can still reveal a secret.
//! Their output is never longer than their input.

use std::ops::Range;

const B64_STD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const B64_URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const B32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// The value of a base64 digit in either alphabet (`+`/`-` are 62, `/`/`_`
/// are 63), or `None`.
fn b64_value(b: u8) -> Option<u32> {
    Some(match b {
        b'A'..=b'Z' => u32::from(b - b'A'),
        b'a'..=b'z' => u32::from(b - b'a') + 26,
        b'0'..=b'9' => u32::from(b - b'0') + 52,
        b'+' | b'-' => 62,
        b'/' | b'_' => 63,
        _ => return None,
    })
}

fn hex_value(b: u8) -> Option<u8> {
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

/// Decodes base64 in either alphabet, ignoring padding, whitespace and any
/// byte outside the alphabet; trailing bits that do not make a byte are
/// dropped.
pub fn base64_decode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() / 4 * 3 + 2);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for &b in input {
        let Some(v) = b64_value(b) else { continue };
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// Decodes pairs of hex digits; any other byte restarts the pairing.
pub fn hex_decode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() / 2);
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

/// One bit per byte of `block`, set for the base64 alphabet.
fn class_bits(block: &[u8; 64]) -> u64 {
    let mut flags = [0u8; 64];
    for (f, &b) in flags.iter_mut().zip(block) {
        *f = u8::from(is_b64_class(b));
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
fn class_bits_at(hay: &[u8], at: usize) -> u64 {
    match hay.get(at..).and_then(|rest| rest.first_chunk::<64>()) {
        Some(block) => class_bits(block),
        None => {
            let mut block = [0u8; 64];
            let rest = hay.get(at..).unwrap_or_default();
            block[..rest.len()].copy_from_slice(rest);
            class_bits(&block)
        }
    }
}

/// The first position at or after `from` where `MIN_HEX_RUN` bytes of the
/// base64 alphabet follow, looking at 64 positions per step: the bits of
/// two blocks, and-ed with themselves shifted by 1, 2, 4 and 8, keep the
/// positions that start sixteen set bits. Text, with its short words, is
/// crossed without a branch per word.
fn long_run_start(hay: &[u8], from: usize) -> Option<usize> {
    const _: () = assert!(MIN_HEX_RUN == 16);
    let mut pos = from;
    let mut lo = class_bits_at(hay, pos);
    while pos + MIN_HEX_RUN <= hay.len() {
        let hi = class_bits_at(hay, pos + 64);
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

/// The shortest run decoded as base64: 20 characters carry 15 bytes.
pub(crate) const MIN_B64_RUN: usize = 20;
/// The shortest run decoded as hex: 16 digits carry 8 bytes, the shortest
/// known secret.
pub(crate) const MIN_HEX_RUN: usize = 16;

/// What a run of the base64 alphabet looks like it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RunKind {
    Base64,
    Hex,
}

/// Finds runs of the base64 alphabet worth decoding: all-hex runs of at least
/// [`MIN_HEX_RUN`], and mixed-case runs of at least [`MIN_B64_RUN`] (text
/// encodes to both cases, while words, hashes and identifiers in one case do
/// not need decoding). Trailing `=` padding is included in the run.
pub(crate) fn encoded_runs(hay: &[u8], mut f: impl FnMut(Range<usize>, RunKind)) {
    let n = hay.len();
    // Each maximal run of at least MIN_HEX_RUN bytes, in order: the first
    // place after the previous run where that many alphabet bytes follow is
    // the start of the next one (the byte before it is outside the
    // alphabet, or is the previous run's end, which is outside too).
    let mut from = 0;
    while let Some(start) = long_run_start(hay, from) {
        let mut end = start + MIN_HEX_RUN;
        while end < n && is_b64_class(hay[end]) {
            end += 1;
        }
        let len = end - start;
        let (mut upper, mut lower, mut nonhex) = (false, false, false);
        for &b in &hay[start..end] {
            upper |= b.is_ascii_uppercase();
            lower |= b.is_ascii_lowercase();
            nonhex |= !b.is_ascii_hexdigit();
        }
        let mut padded = end;
        while padded < n && padded - end < 2 && hay[padded] == b'=' {
            padded += 1;
        }
        if !nonhex {
            f(start..end, RunKind::Hex);
        } else if upper && lower && len >= MIN_B64_RUN {
            f(start..padded, RunKind::Base64);
        }
        from = end;
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

/// True when decoded bytes read as text: a secret is printable, random binary
/// (hashes, images) is not.
pub(crate) fn mostly_text(bytes: &[u8]) -> bool {
    if bytes.is_empty() {
        return false;
    }
    let control = |b: &&u8| **b < 0x20 && !b"\n\r\t".contains(*b) || **b == 0x7f;
    // Valid UTF-8 (allowing a character cut at the end) with few control
    // bytes is text, whatever the script: random bytes are almost never
    // valid UTF-8 once there are a few high bytes.
    let valid = match std::str::from_utf8(bytes) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none() && e.valid_up_to() + 4 > bytes.len(),
    };
    let controls = bytes.iter().filter(control).count();
    if valid {
        return controls * 10 <= bytes.len();
    }
    // Otherwise nine in ten printable ASCII bytes (text with a few stray
    // bytes, such as a cut-off piece of a longer run).
    let printable = bytes
        .iter()
        .filter(|&&b| (0x20..0x7f).contains(&b) || b"\n\r\t".contains(&b))
        .count();
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
    /// reference.
    fn encoded_runs_reference(hay: &[u8]) -> Vec<(Range<usize>, RunKind)> {
        let mut out = Vec::new();
        let n = hay.len();
        let class = |i: usize| is_b64_class(hay[i]);
        let mut start = 0;
        while start < n {
            if !class(start) {
                start += 1;
                continue;
            }
            let mut end = start;
            while end < n && class(end) {
                end += 1;
            }
            let len = end - start;
            if len >= MIN_HEX_RUN {
                let run = &hay[start..end];
                let upper = run.iter().any(u8::is_ascii_uppercase);
                let lower = run.iter().any(u8::is_ascii_lowercase);
                let nonhex = run.iter().any(|b| !b.is_ascii_hexdigit());
                let mut padded = end;
                while padded < n && padded - end < 2 && hay[padded] == b'=' {
                    padded += 1;
                }
                if !nonhex {
                    out.push((start..end, RunKind::Hex));
                } else if upper && lower && len >= MIN_B64_RUN {
                    out.push((start..padded, RunKind::Base64));
                }
            }
            start = end;
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
        let alphabet = b"aZ09+/-_=fF. \n%\xc3";
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
    fn text_detection() {
        assert!(mostly_text(b"sk-ant-oat01-abcdef"));
        assert!(!mostly_text(&[
            0x12, 0x9a, 0xff, 0x00, 0x41, 0x42, 0xc3, 0x01
        ]));
        assert!(!mostly_text(b""));
    }
}
