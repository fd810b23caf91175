//! Unicode normalisation before matching: NFKC (full-width and other
//! compatibility forms become ASCII) and removal of zero-width and bidi
//! control characters, keeping a map from each output byte back to the input.
//!
//! Only text with non-ASCII bytes can change, so the caller runs this on the
//! neighbourhood of non-ASCII bytes only.

use std::ops::Range;

use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfkc_quick};

/// Invisible characters an attacker can put inside a secret to split it:
/// zero-width spaces and joiners, bidi marks, embeddings and isolates, word
/// joiners, the BOM, soft hyphens, fillers and tag characters.
pub fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{17B4}'
            | '\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{E0000}'..='\u{E007F}'
    )
}

/// Normalised text and, for each of its bytes, the input range it came from.
pub(crate) struct Normalized {
    pub text: Vec<u8>,
    pub origin: Vec<Range<usize>>,
}

impl Normalized {
    /// Maps a range of `text` to the input range it came from.
    pub fn map(&self, r: Range<usize>) -> Range<usize> {
        let Some(first) = self.origin.get(r.start) else {
            return self.origin.last().map_or(0..0, |o| o.end..o.end);
        };
        let last = self
            .origin
            .get(r.end.saturating_sub(1).max(r.start))
            .unwrap_or(first);
        first.start..last.end.max(first.start)
    }
}

/// Normalises `input` if that changes anything, else `None`. Invalid UTF-8
/// bytes are kept as they are. The output is capped at `max_out` bytes.
pub(crate) fn normalize(input: &[u8], max_out: usize) -> Option<Normalized> {
    if !needs_normalizing(input) {
        return None;
    }
    let mut text = Vec::with_capacity(input.len());
    let mut origin = Vec::with_capacity(input.len());
    let mut pos = 0;
    let mut buf = [0u8; 4];
    'chunks: for chunk in input.utf8_chunks() {
        for (i, c) in chunk.valid().char_indices() {
            let at = pos + i;
            let span = at..at + c.len_utf8();
            // Per character: compatibility mapping is what turns a disguised
            // secret back into ASCII; composition across characters is not
            // needed for that, and per-character keeps the map exact. ASCII
            // is neither invisible nor changed.
            if c.is_ascii() {
                text.push(c as u8);
                origin.push(span);
            } else if is_invisible(c) {
                continue;
            } else {
                for n in std::iter::once(c).nfkc() {
                    if is_invisible(n) {
                        continue;
                    }
                    for &b in n.encode_utf8(&mut buf).as_bytes() {
                        text.push(b);
                        origin.push(span.clone());
                    }
                }
            }
            if text.len() >= max_out {
                break 'chunks;
            }
        }
        pos += chunk.valid().len();
        for &b in chunk.invalid() {
            text.push(b);
            origin.push(pos..pos + 1);
            pos += 1;
        }
    }
    Some(Normalized { text, origin })
}

/// True when normalising could change `input`: it has an invisible character
/// or text that is not already in NFKC.
fn needs_normalizing(input: &[u8]) -> bool {
    input.utf8_chunks().any(|chunk| {
        let s = chunk.valid();
        !s.is_ascii()
            && (s.chars().any(is_invisible) || is_nfkc_quick(s.chars()) != IsNormalized::Yes)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fullwidth_and_invisible_become_ascii_with_a_map() {
        let input = "x=ｇｈｐ\u{200B}_a\u{202E}b".as_bytes();
        let n = normalize(input, 1 << 20).expect("changes");
        assert_eq!(n.text, b"x=ghp_ab");
        // `g` came from the 3-byte full-width letter at offset 2.
        assert_eq!(n.map(2..3), 2..5);
        assert_eq!(n.map(0..n.text.len()), 0..input.len());
    }

    #[test]
    fn plain_and_nfkc_text_is_left_alone() {
        assert!(normalize(b"plain ascii", 1 << 20).is_none());
        assert!(normalize("déjà vu, 東京".as_bytes(), 1 << 20).is_none());
    }

    #[test]
    fn invalid_utf8_is_kept() {
        let n = normalize(b"\xff\xe2\x80\x8bab\xc3", 1 << 20).expect("changes");
        assert_eq!(n.text, b"\xffab\xc3");
        assert_eq!(n.map(1..3), 4..6);
    }

    #[test]
    fn output_is_capped() {
        let input = "\u{FDFA}".repeat(100);
        let n = normalize(input.as_bytes(), 64).expect("changes");
        assert!(n.text.len() < 64 + 40);
    }
}
