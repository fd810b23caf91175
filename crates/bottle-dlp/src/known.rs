//! Known secrets: exact values the engine must find, in every form an agent
//! could send them: as is, base64 and base64url (at each of the three byte
//! alignments inside a longer encoded text), base32, hex in both cases (also
//! with separators and as escapes), percent-encoded once and twice, reversed,
//! ROT13, case-swapped, and UTF-16/UTF-32 (the list is `forms` below).
//!
//! The forms are held in zeroizing buffers and searched through a filter of
//! hashed eight-byte windows, not with an automaton, so no copy of a secret
//! outlives the engine in memory that is not wiped. Every eight-byte window of
//! every form is indexed, so the input needs probing only every
//! `shortest form - 7` bytes: an occurrence always covers one probe.

use std::ops::Range;

use bottle_secret::Secret;
use zeroize::Zeroizing;

use crate::decode::{base32_encode, base64_encode, hex_encode, percent_encode};

/// Bits in the first-stage filter: 64 Ki bits, 8 KiB.
const FILTER_BITS: u32 = 16;
const ANCHOR: usize = 8;

pub(crate) struct KnownSet {
    secret_count: usize,
    forms: Vec<Zeroizing<Vec<u8>>>,
    /// The eight-byte windows of every form, sorted; `windows_at[i]` says
    /// which form and at which offset `windows[i]` is.
    windows: Zeroizing<Vec<u64>>,
    windows_at: Vec<(u32, u32)>,
    filter: Vec<u64>,
    /// Distance between probes of the input.
    stride: usize,
    /// Every form and the base32 ones as host names are matched
    /// ([`KnownSet::in_host`]), made once here.
    host_forms: Vec<HostForm>,
    /// Whether a secret has a character outside ASCII.
    non_ascii: bool,
}

/// A form as it is looked for in host names: in lower case (DNS ignores
/// case), and without the glue (`.`, `-`, `_`) a server drops when it
/// joins the pieces again.
struct HostForm {
    lower: Zeroizing<Vec<u8>>,
    bare: Zeroizing<Vec<u8>>,
    /// Whether a label's `xn` can be part of it: it holds `xn`, or begins
    /// with `n` or ends with `x` (across a label start).
    xn_matters: bool,
}

fn host_glue(b: &u8) -> bool {
    matches!(b, b'.' | b'-' | b'_')
}

impl HostForm {
    fn new(form: &[u8]) -> Self {
        let lower = Zeroizing::new(form.to_ascii_lowercase());
        let bare = Zeroizing::new(
            lower
                .iter()
                .copied()
                .filter(|b| !host_glue(b))
                .collect::<Vec<u8>>(),
        );
        let xn_matters = bare.windows(2).any(|w| w == b"xn")
            || bare.first() == Some(&b'n')
            || bare.last() == Some(&b'x');
        HostForm {
            lower,
            bare,
            xn_matters,
        }
    }
}

fn anchor(bytes: &[u8]) -> u64 {
    let mut a = [0u8; ANCHOR];
    a.copy_from_slice(&bytes[..ANCHOR]);
    u64::from_le_bytes(a)
}

fn slot(anchor: u64) -> usize {
    (anchor.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - FILTER_BITS)) as usize
}

/// The encodings of `secret` that stay the same whatever surrounds it: for
/// base64 at byte offset 0, 1 and 2 of a longer text, only the characters that
/// depend on the secret's bytes alone.
fn forms_of(secret: &[u8]) -> Vec<Zeroizing<Vec<u8>>> {
    let mut out: Vec<Zeroizing<Vec<u8>>> = Vec::new();
    let mut add = |v: Vec<u8>| {
        let v = Zeroizing::new(v);
        if v.len() >= ANCHOR && !out.iter().any(|o| **o == *v) {
            out.push(v);
        }
    };
    add(secret.to_vec());
    add(secret.iter().rev().copied().collect());
    add(hex_encode(secret, false));
    add(hex_encode(secret, true));
    let once = percent_encode(secret);
    add(percent_encode(&once));
    add(once);
    for offset in 0..3usize {
        let mut padded = Zeroizing::new(vec![0u8; offset]);
        padded.extend_from_slice(secret);
        let first = (offset * 8).div_ceil(6);
        let last = ((offset + secret.len()) * 8) / 6;
        for url in [false, true] {
            let enc = Zeroizing::new(base64_encode(&padded, url, false));
            if first < last && last <= enc.len() {
                add(enc[first..last].to_vec());
            }
        }
    }
    // Hex written byte by byte with a separator, as tools print it (`xxd`
    // and `od` groups aside): `67:68:70` (fingerprints, `openssl`),
    // `67 68 70`, `67-68-70`, `67,68,70`, and C and Python escapes
    // (`\x67\x68`, `0x67, 0x68`). The hex layer reads unbroken runs only.
    for upper in [false, true] {
        for (prefix, sep) in [
            (&b""[..], &b":"[..]),
            (b"", b" "),
            (b"", b"-"),
            (b"", b","),
            (b"", b", 0x"),
            (b"", b",0x"),
            (b"\\x", b"\\x"),
        ] {
            add(hex_joined(secret, upper, prefix, sep));
        }
    }
    // One-line shell transforms no decoding layer undoes: `base32`, `tr`
    // for ROT13 or a case swap, `iconv` to UTF-16 or UTF-32 (the engine
    // reads UTF-16 text, but not UTF-32, and the gate's search of binary
    // files reads no text at all).
    for offset in 0..5usize {
        let mut padded = Zeroizing::new(vec![0u8; offset]);
        padded.extend_from_slice(secret);
        let first = (offset * 8).div_ceil(5);
        let last = ((offset + secret.len()) * 8) / 5;
        let enc = Zeroizing::new(base32_encode(&padded));
        if first < last && last <= enc.len() {
            add(enc[first..last].to_vec());
            add(enc[first..last].to_ascii_uppercase());
        }
    }
    add(secret
        .iter()
        .map(|&b| match b {
            b'a'..=b'z' => (b - b'a' + 13) % 26 + b'a',
            b'A'..=b'Z' => (b - b'A' + 13) % 26 + b'A',
            other => other,
        })
        .collect());
    add(secret
        .iter()
        .map(|&b| match b {
            b'a'..=b'z' => b.to_ascii_uppercase(),
            b'A'..=b'Z' => b.to_ascii_lowercase(),
            other => other,
        })
        .collect());
    if let Ok(text) = std::str::from_utf8(secret) {
        let units: Vec<u16> = text.encode_utf16().collect();
        add(units.iter().flat_map(|u| u.to_le_bytes()).collect());
        add(units.iter().flat_map(|u| u.to_be_bytes()).collect());
        add(text
            .chars()
            .flat_map(|c| (c as u32).to_le_bytes())
            .collect());
        add(text
            .chars()
            .flat_map(|c| (c as u32).to_be_bytes())
            .collect());
    }
    out
}

/// `secret` in hex, byte by byte: `prefix` before the first pair, `sep`
/// between pairs. Built in place (sized first, digits from a table), so no
/// copy of the secret is left in memory that is not wiped.
fn hex_joined(secret: &[u8], upper: bool, prefix: &[u8], sep: &[u8]) -> Vec<u8> {
    let digits: &[u8; 16] = if upper {
        b"0123456789ABCDEF"
    } else {
        b"0123456789abcdef"
    };
    let mut out = Vec::with_capacity(prefix.len() + secret.len() * (2 + sep.len()));
    out.extend_from_slice(prefix);
    for (i, &b) in secret.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(sep);
        }
        out.push(digits[usize::from(b >> 4)]);
        out.push(digits[usize::from(b & 0xf)]);
    }
    out
}

impl KnownSet {
    pub fn new(secrets: &[Secret]) -> KnownSet {
        let mut all: Vec<Zeroizing<Vec<u8>>> = Vec::new();
        let mut base32 = Vec::new();
        for s in secrets {
            for f in forms_of(s.expose().as_bytes()) {
                if !all.iter().any(|o| **o == *f) {
                    all.push(f);
                }
            }
            base32.push(Zeroizing::new(base32_encode(s.expose().as_bytes())));
        }
        let mut index: Vec<(u64, u32, u32)> = Vec::new();
        for (j, f) in all.iter().enumerate() {
            for k in 0..=f.len() - ANCHOR {
                index.push((anchor(&f[k..]), j as u32, k as u32));
            }
        }
        index.sort_unstable();
        let windows = Zeroizing::new(index.iter().map(|e| e.0).collect::<Vec<u64>>());
        let windows_at = index.iter().map(|e| (e.1, e.2)).collect();
        // Wipe the sorted copy too: it holds the same windows.
        for e in index.iter_mut() {
            e.0 = 0;
        }
        let mut filter = vec![0u64; 1 << (FILTER_BITS - 6)];
        for &a in windows.iter() {
            let s = slot(a);
            filter[s >> 6] |= 1 << (s & 63);
        }
        let stride = all.iter().map(|f| f.len() - ANCHOR + 1).min().unwrap_or(1);
        let host_forms = all
            .iter()
            .chain(base32.iter())
            .filter(|f| f.len() >= ANCHOR)
            .map(|f| HostForm::new(f))
            .collect();
        KnownSet {
            non_ascii: secrets.iter().any(|s| !s.expose().is_ascii()),
            secret_count: secrets.len(),
            forms: all,
            windows,
            windows_at,
            filter,
            stride,
            host_forms,
        }
    }

    pub fn secret_count(&self) -> usize {
        self.secret_count
    }

    /// Whether a secret has a character outside ASCII: then an escaped
    /// non-ASCII character (`\u00e9`, `&#233;`) may be part of one.
    pub fn has_non_ascii(&self) -> bool {
        self.non_ascii
    }

    /// The length of the longest form: an occurrence is never longer.
    pub fn max_form_len(&self) -> usize {
        self.forms.iter().map(|f| f.len()).max().unwrap_or(0)
    }

    /// Calls `f` with the range of every occurrence of any form in `hay`.
    pub fn find(&self, hay: &[u8], mut f: impl FnMut(Range<usize>)) {
        if self.forms.is_empty() || hay.len() < ANCHOR {
            return;
        }
        // Occurrences already reported, as (form, start): one occurrence can
        // cover several probes.
        let mut recent: Vec<(u32, usize)> = Vec::new();
        let mut p = 0;
        while p + ANCHOR <= hay.len() {
            let a = anchor(&hay[p..]);
            let s = slot(a);
            if self.filter[s >> 6] & (1 << (s & 63)) != 0 {
                let from = self.windows.partition_point(|&x| x < a);
                for i in from..self.windows.len() {
                    if self.windows[i] != a {
                        break;
                    }
                    let (form, offset) = self.windows_at[i];
                    let Some(start) = p.checked_sub(offset as usize) else {
                        continue;
                    };
                    let bytes = &self.forms[form as usize];
                    if hay[start..].starts_with(bytes) && !recent.contains(&(form, start)) {
                        if recent.len() >= 64 {
                            recent.remove(0);
                        }
                        recent.push((form, start));
                        f(start..start + bytes.len());
                    }
                }
            }
            p += self.stride;
        }
    }

    /// True when a host name holds any form of a known secret, ignoring case
    /// (DNS does) and what may be put between its pieces: the dots between
    /// labels, dashes and underscores inside them, and a label's `xn--`
    /// prefix. Base32 counts here too: it is the usual encoding for DNS.
    pub fn in_host(&self, host: &str) -> bool {
        let lower = host.to_ascii_lowercase();
        // Each label without its glue, and whether it had an `xn--`
        // prefix, whose `xn` may be part of the data or not.
        let labels: Vec<(bool, Vec<u8>)> = lower
            .split('.')
            .map(|label| {
                let rest = label.strip_prefix("xn--");
                let bytes = rest
                    .unwrap_or(label)
                    .bytes()
                    .filter(|b| !host_glue(b))
                    .collect();
                (rest.is_some(), bytes)
            })
            .collect();
        let joined: Vec<u8> = labels.iter().flat_map(|(_, l)| l.iter().copied()).collect();
        let any_xn = labels.iter().any(|(xn, _)| *xn);
        self.host_forms.iter().any(|f| {
            contains(lower.as_bytes(), &f.lower)
                || (f.bare.len() >= ANCHOR
                    && if any_xn && f.xn_matters {
                        in_labels(&labels, &f.bare)
                    } else {
                        contains(&joined, &f.bare)
                    })
        })
    }
}

/// Whether `needle` occurs in the labels read one after the other, where
/// each label marked `xn--` may or may not begin with `xn` (a real prefix
/// is not data; a fake one, before data that starts with `xn`, is). One
/// pass, keeping every prefix of `needle` matched so far.
fn in_labels(labels: &[(bool, Vec<u8>)], needle: &[u8]) -> bool {
    let n = needle.len();
    // active[j]: the last bytes read match needle[..j] (j = 0 always).
    let mut active = vec![false; n];
    let mut next = vec![false; n];
    let (mut after_x, mut after_xn) = (vec![false; n], vec![false; n]);
    active[0] = true;
    // `to` = the states after reading `c` in `from`; true when the needle
    // ends there.
    let step = |from: &[bool], to: &mut [bool], c: u8| -> bool {
        to.fill(false);
        to[0] = true;
        let mut done = false;
        for j in 0..n {
            if from[j] && needle[j] == c {
                if j + 1 == n {
                    done = true;
                } else {
                    to[j + 1] = true;
                }
            }
        }
        done
    };
    for (xn, label) in labels {
        if *xn {
            if step(&active, &mut after_x, b'x') || step(&after_x, &mut after_xn, b'n') {
                return true;
            }
            for (a, b) in active.iter_mut().zip(&after_xn) {
                *a |= *b;
            }
        }
        for &c in label {
            if step(&active, &mut next, c) {
                return true;
            }
            std::mem::swap(&mut active, &mut next);
        }
    }
    false
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.len() >= needle.len() && hay.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::base64_encode;

    fn set(s: &str) -> KnownSet {
        KnownSet::new(&[Secret::new(s)])
    }

    fn hits(k: &KnownSet, hay: &[u8]) -> Vec<Range<usize>> {
        let mut v = Vec::new();
        k.find(hay, |r| v.push(r));
        v
    }

    #[test]
    fn finds_every_form() {
        let secret = "s3cr3t-Value/with+chars";
        let k = set(secret);
        let s = secret.as_bytes();
        let mut cases = vec![
            s.to_vec(),
            s.iter().rev().copied().collect(),
            hex_encode(s, false),
            hex_encode(s, true),
            percent_encode(s),
            percent_encode(&percent_encode(s)),
        ];
        for prefix in ["", "a", "ab", "abc"] {
            let mut text = prefix.as_bytes().to_vec();
            text.extend_from_slice(s);
            text.extend_from_slice(b" trailing");
            cases.push(base64_encode(&text, false, true));
            cases.push(base64_encode(&text, true, false));
        }
        // `base32`, `tr` (ROT13, case swap) and `iconv` of it, base32 at
        // every alignment in a longer text, in either case.
        for prefix in ["", "a", "ab", "abc", "abcd"] {
            let mut text = prefix.as_bytes().to_vec();
            text.extend_from_slice(s);
            text.extend_from_slice(b" trailing");
            cases.push(base32_encode(&text));
            cases.push(base32_encode(&text).to_ascii_uppercase());
        }
        for sep in [":", " ", "-", ",", ", 0x", ",0x"] {
            let lower: Vec<String> = s.iter().map(|b| format!("{b:02x}")).collect();
            let upper: Vec<String> = s.iter().map(|b| format!("{b:02X}")).collect();
            cases.push(lower.join(sep).into_bytes());
            cases.push(format!("0x{}", upper.join(sep)).into_bytes());
        }
        cases.push(
            s.iter()
                .flat_map(|b| format!("\\x{b:02x}").into_bytes())
                .collect(),
        );
        cases.push(
            s.iter()
                .flat_map(|b| format!("\\x{b:02X}").into_bytes())
                .collect(),
        );
        cases.push(b"f3pe3g-Inyhr/jvgu+punef".to_vec());
        cases.push(b"S3CR3T-vALUE/WITH+CHARS".to_vec());
        let units: Vec<u16> = secret.encode_utf16().collect();
        cases.push(units.iter().flat_map(|u| u.to_le_bytes()).collect());
        cases.push(units.iter().flat_map(|u| u.to_be_bytes()).collect());
        cases.push(
            secret
                .chars()
                .flat_map(|c| (c as u32).to_le_bytes())
                .collect(),
        );
        cases.push(
            secret
                .chars()
                .flat_map(|c| (c as u32).to_be_bytes())
                .collect(),
        );
        for case in cases {
            let mut hay = b"prefix ".to_vec();
            hay.extend_from_slice(&case);
            hay.extend_from_slice(b" suffix");
            assert!(
                !hits(&k, &hay).is_empty(),
                "{}",
                String::from_utf8_lossy(&case)
            );
        }
    }

    #[test]
    fn no_match_on_near_misses() {
        let k = set("s3cr3t-Value/with+chars");
        assert!(hits(&k, b"s3cr3t-Value/with+charz and s3cr3t-Value").is_empty());
        assert!(hits(&KnownSet::new(&[]), b"anything at all").is_empty());
    }

    #[test]
    fn range_covers_the_form() {
        let k = set("abcdefghij");
        assert_eq!(hits(&k, b"xxabcdefghijyy"), vec![2..12]);
    }

    #[test]
    fn host_forms() {
        let k = set("Tok3n-Value-42xyz");
        assert!(k.in_host("tok3n-value-42xyz.evil.example"));
        assert!(k.in_host("tok3n-val.ue-42xyz.evil.example"));
        let b32 = String::from_utf8(base32_encode(b"Tok3n-Value-42xyz")).unwrap();
        assert!(k.in_host(&format!("{b32}.evil.example")));
        assert!(!k.in_host("api.example.com"));
    }
}
