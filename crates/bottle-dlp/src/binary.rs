//! Known secrets alone, for binary data.
//!
//! In binary data (a git blob with a NUL byte) the rules match noise and the
//! decoding layers have no text to decode, so callers skip it. The bottle's
//! own secrets are different: their forms are exact byte strings, so they
//! can be searched in any bytes without false alarms, and an agent that
//! wraps its token in a NUL byte must not get it past the scan. This module
//! searches for every form [`KnownSet`] holds and nothing else, over a whole
//! buffer or over a stream of chunks with memory bounded by the longest form.

use std::ops::Range;

use crate::known::KnownSet;
use crate::{Finding, KNOWN_SECRET_RULE};

fn finding(range: Range<usize>, base: u64) -> Finding {
    Finding {
        rule: KNOWN_SECRET_RULE,
        range: base + range.start as u64..base + range.end as u64,
        // As everywhere for known secrets: not even a prefix is shown.
        redacted: "****".to_string(),
    }
}

/// One finding per range, in order: two forms can be the same bytes at the
/// same place.
fn sorted(mut out: Vec<Finding>) -> Vec<Finding> {
    out.sort_by_key(|f| (f.range.start, f.range.end));
    out.dedup_by(|later, first| later.range == first.range);
    out
}

pub(crate) fn scan(known: &KnownSet, input: &[u8]) -> Vec<Finding> {
    let mut out = Vec::new();
    known.find(input, |r| out.push(finding(r, 0)));
    sorted(out)
}

/// See [`crate::Engine::known_stream`]. Each occurrence is reported by the
/// [`KnownStream::push`] that delivers its last byte, with its offset in the
/// whole stream, so nothing is held back and there is nothing to finish.
pub struct KnownStream<'e> {
    known: &'e KnownSet,
    /// The last `overlap` bytes pushed (fewer at the start): the longest
    /// form minus one byte, so any occurrence that ends in the next chunk
    /// starts inside it or inside that chunk.
    tail: Vec<u8>,
    overlap: usize,
    /// Stream offset just past the last byte pushed.
    end: u64,
}

impl<'e> KnownStream<'e> {
    pub(crate) fn new(known: &'e KnownSet) -> Self {
        let overlap = known.max_form_len().saturating_sub(1);
        KnownStream {
            known,
            tail: Vec::with_capacity(overlap),
            overlap,
            end: 0,
        }
    }

    /// Feeds the next chunk (any size, empty too); returns the occurrences
    /// that end in it, sorted by offset.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Finding> {
        let mut out = Vec::new();
        if chunk.is_empty() || self.overlap == 0 {
            self.end += chunk.len() as u64;
            return out;
        }
        let chunk_at = self.end;
        // Across the boundary: only the tail plus the first `overlap` bytes
        // of the chunk, so a large chunk is not copied.
        if !self.tail.is_empty() {
            let tail_len = self.tail.len();
            let mut joint = Vec::with_capacity(tail_len + self.overlap);
            joint.extend_from_slice(&self.tail);
            joint.extend_from_slice(&chunk[..chunk.len().min(self.overlap)]);
            let joint_at = chunk_at - tail_len as u64;
            // Occurrences wholly in the tail were reported by an earlier
            // push; wholly in the chunk, by the search below.
            self.known.find(&joint, |r| {
                if r.start < tail_len && r.end > tail_len {
                    out.push(finding(r, joint_at));
                }
            });
        }
        self.known.find(chunk, |r| out.push(finding(r, chunk_at)));
        let keep = chunk.len().min(self.overlap);
        self.tail.extend_from_slice(&chunk[chunk.len() - keep..]);
        let excess = self.tail.len().saturating_sub(self.overlap);
        self.tail.drain(..excess);
        self.end += chunk.len() as u64;
        sorted(out)
    }

    /// Bytes pushed so far.
    pub fn position(&self) -> u64 {
        self.end
    }

    /// Bytes kept across chunks: the longest form of a known secret minus
    /// one (0 when the engine has no known secrets).
    pub fn overlap(&self) -> usize {
        self.overlap
    }
}

impl std::fmt::Debug for KnownStream<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The tail is input data and may hold a secret: offsets only.
        f.debug_struct("KnownStream")
            .field("position", &self.end)
            .field("overlap", &self.overlap)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use crate::decode::{base64_encode, hex_encode, percent_encode};
    use crate::tests::noise;
    use crate::{Engine, Finding, KNOWN_SECRET_RULE};

    /// With characters that percent-encoding changes, so every form differs.
    const SECRET: &str = "s3cr3t/Upstream+Token:5f2c9a71d04e";

    fn engine() -> Engine {
        Engine::builder().known_secret(SECRET).build().unwrap()
    }

    /// Each form an agent could write, as the exact bytes the engine
    /// matches: base64 is cut to the characters that depend on the secret
    /// alone (the rest depend on its neighbours).
    fn forms() -> Vec<(&'static str, Vec<u8>)> {
        let s = SECRET.as_bytes();
        let cut = s.len() * 8 / 6;
        let b64 = base64_encode(s, false, false);
        let url = base64_encode(s, true, false);
        vec![
            ("raw", s.to_vec()),
            ("reversed", s.iter().rev().copied().collect()),
            ("hex", hex_encode(s, false)),
            ("HEX", hex_encode(s, true)),
            ("percent", percent_encode(s)),
            ("percent twice", percent_encode(&percent_encode(s))),
            ("base64", b64[..cut].to_vec()),
            ("base64url", url[..cut].to_vec()),
        ]
    }

    /// `form` at byte `at` of noise with NULs around it.
    fn binary_with(form: &[u8], at: usize, len: usize) -> Vec<u8> {
        let mut data = noise(len, at as u32 + 7);
        data[0] = 0;
        data[at - 1] = 0;
        data[at..at + form.len()].copy_from_slice(form);
        data[at + form.len()] = 0;
        data
    }

    fn known_hits(findings: &[Finding], at: usize, form: &[u8]) -> bool {
        let want = at as u64..(at + form.len()) as u64;
        findings
            .iter()
            .any(|f| f.rule == KNOWN_SECRET_RULE && f.range == want && f.redacted == "****")
    }

    #[test]
    fn every_form_in_binary_surroundings() {
        let e = engine();
        assert!(e.has_known_secrets());
        for (name, form) in forms() {
            let data = binary_with(&form, 1000, 4000);
            let found = e.scan_known(&data);
            assert!(known_hits(&found, 1000, &form), "{name}: {found:?}");
            // The regex rules and decoders play no part.
            assert!(found.iter().all(|f| f.rule == KNOWN_SECRET_RULE), "{name}");
        }
    }

    #[test]
    fn base64_at_every_alignment_of_a_longer_text() {
        let e = engine();
        for prefix in ["", "a", "ab", "abc"] {
            for url in [false, true] {
                let mut text = prefix.as_bytes().to_vec();
                text.extend_from_slice(SECRET.as_bytes());
                text.extend_from_slice(b"\0 more");
                let mut data = vec![0u8, 1, 2, 0];
                data.extend(base64_encode(&text, url, true));
                data.extend([0u8, 0xff]);
                assert!(!e.scan_known(&data).is_empty(), "{prefix:?} url={url}");
            }
        }
    }

    #[test]
    fn nothing_without_the_secret() {
        let e = engine();
        let mut data = noise(64 * 1024, 99);
        // Near misses: the secret with its last byte changed, and cut short.
        let mut near = SECRET.as_bytes().to_vec();
        near.pop();
        near.push(b'7');
        data[100..100 + near.len()].copy_from_slice(&near);
        data[500..500 + 20].copy_from_slice(&SECRET.as_bytes()[..20]);
        assert_eq!(e.scan_known(&data), Vec::new());
        let mut s = e.known_stream();
        let mut all = Vec::new();
        for chunk in data.chunks(777) {
            all.extend(s.push(chunk));
        }
        assert_eq!(all, Vec::new());
        assert_eq!(s.position(), data.len() as u64);
    }

    #[test]
    fn no_known_secrets_no_findings() {
        let e = Engine::new().unwrap();
        assert!(!e.has_known_secrets());
        let data = binary_with(SECRET.as_bytes(), 10, 100);
        assert!(e.scan_known(&data).is_empty());
        let mut s = e.known_stream();
        assert_eq!(s.overlap(), 0);
        assert!(s.push(&data).is_empty());
        assert_eq!(s.position(), 100);
    }

    #[test]
    fn the_rules_are_not_applied() {
        // A key shape the rules find in text is not a known secret.
        let e = engine();
        let data = b"\0\0password = \"Xk9mP2vL8qR4tY7wZ1aB3cD5\"\0 ghp_aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5";
        assert!(!e.scan(data).is_empty());
        assert!(e.scan_known(data).is_empty());
    }

    fn stream_all(e: &Engine, data: &[u8], cuts: &[usize]) -> Vec<Finding> {
        let mut s = e.known_stream();
        let mut out = Vec::new();
        let mut from = 0;
        for &cut in cuts.iter().chain(std::iter::once(&data.len())) {
            out.extend(s.push(&data[from..cut]));
            from = cut;
        }
        assert_eq!(s.position(), data.len() as u64);
        out
    }

    #[test]
    fn stream_split_at_every_boundary() {
        let e = engine();
        let at = 300;
        for (name, form) in forms() {
            let data = binary_with(&form, at, 700);
            let whole = e.scan_known(&data);
            assert!(known_hits(&whole, at, &form), "{name}");
            // One cut anywhere around the form, and two cuts inside it.
            for cut in at - 2..=at + form.len() + 2 {
                let got = stream_all(&e, &data, &[cut]);
                assert_eq!(got, whole, "{name}: cut at {cut}");
                if cut > at && cut + 3 < at + form.len() {
                    let got = stream_all(&e, &data, &[cut, cut + 3]);
                    assert_eq!(got, whole, "{name}: cuts at {cut} and {}", cut + 3);
                }
            }
        }
    }

    #[test]
    fn stream_in_small_chunks_reports_each_occurrence_once() {
        let e = engine();
        let form = hex_encode(SECRET.as_bytes(), false);
        let mut data = binary_with(SECRET.as_bytes(), 50, 5000);
        data[3000..3000 + form.len()].copy_from_slice(&form);
        data[4900..4900 + SECRET.len()].copy_from_slice(SECRET.as_bytes());
        let whole = e.scan_known(&data);
        assert_eq!(
            whole.iter().map(|f| f.range.start).collect::<Vec<_>>(),
            vec![50, 3000, 4900]
        );
        for size in [1, 2, 7, 8, 33, 67, 68, 69, 1000, 4096] {
            let cuts: Vec<usize> = (size..data.len()).step_by(size).collect();
            assert_eq!(stream_all(&e, &data, &cuts), whole, "chunks of {size}");
        }
    }

    #[test]
    fn stream_memory_is_the_overlap() {
        let e = engine();
        let mut s = e.known_stream();
        // Hex as a C array (`67, 0x68, …`) is the longest form of this
        // secret: six bytes per byte but the last separator.
        assert_eq!(s.overlap(), SECRET.len() * 6 - 4 - 1);
        let big = noise(1 << 20, 3);
        assert!(s.push(&big).is_empty());
        assert!(s.tail.len() <= s.overlap());
        let found = s.push(SECRET.as_bytes());
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].range, 1 << 20..(1 << 20) + SECRET.len() as u64);
    }
}
