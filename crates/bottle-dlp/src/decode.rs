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

/// Bytes that can be part of a base64 or base64url run.
const fn b64_table() -> [bool; 256] {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'-' || b == b'_';
        i += 1;
    }
    t
}
static B64_CLASS: [bool; 256] = b64_table();

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
    let class = |i: usize| B64_CLASS[usize::from(hay[i])];
    // Any run long enough to matter (at least MIN_HEX_RUN bytes) contains a
    // byte at most MIN_HEX_RUN past the end of the previous run or miss, so
    // only those bytes are probed; a hit is widened to its whole run. Text
    // with short words is thus crossed several bytes at a time.
    let mut floor = 0; // no run starts before this
    let mut i = MIN_HEX_RUN - 1;
    while i < n {
        if !class(i) {
            floor = i + 1;
            i += MIN_HEX_RUN;
            continue;
        }
        let mut start = i;
        while start > floor && class(start - 1) {
            start -= 1;
        }
        let mut end = i + 1;
        while end < n && class(end) {
            end += 1;
        }
        let len = end - start;
        if len >= MIN_HEX_RUN {
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
        }
        floor = end;
        i = end + MIN_HEX_RUN;
    }
}

/// Finds runs that contain at least one `%XX` escape: maximal spans of bytes
/// that can appear in a URL or form body.
pub(crate) fn percent_runs(hay: &[u8], mut f: impl FnMut(Range<usize>)) {
    let url_byte = |b: u8| b > b' ' && b < 0x7f && !b"\"'<>`\\".contains(&b);
    let mut from = 0;
    while let Some(p) = hay[from..].iter().position(|&b| b == b'%') {
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
