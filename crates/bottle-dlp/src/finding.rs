//! What a scan reports: the rule, where, and a redacted preview.

use std::ops::Range;

/// One secret found. `range` is in bytes of the caller's input (for a stream,
/// of the whole stream). For a secret found after decoding, it is the range of
/// the whole encoded run in the input.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Finding {
    pub rule: &'static str,
    pub range: Range<u64>,
    /// At most the first four characters of the secret then `…`, or `****`
    /// when the secret is too short to show any of it.
    pub redacted: String,
}

/// Receives findings as they are produced (the ripgrep `Sink` idea).
pub trait Sink {
    /// Returns `false` to stop the scan early.
    fn finding(&mut self, finding: Finding) -> bool;
}

impl Sink for Vec<Finding> {
    fn finding(&mut self, finding: Finding) -> bool {
        self.push(finding);
        true
    }
}

/// Shorter secrets are shown as `****` only: four characters of an
/// eleven-character password would give away too much of it.
const MIN_LEN_TO_SHOW_PREFIX: usize = 12;

/// The preview of a secret: its first four characters and `…`, or `****`.
pub(crate) fn redact_preview(secret: &[u8]) -> String {
    let text = String::from_utf8_lossy(secret);
    if text.chars().count() < MIN_LEN_TO_SHOW_PREFIX {
        return "****".to_string();
    }
    let mut out: String = text
        .chars()
        .take(4)
        // Control characters would garble a terminal line.
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    out.push('…');
    out
}

/// Builds the redacted copy of `input`: each finding's range (merged where
/// they overlap) becomes `[REDACTED:<rule>]`.
pub(crate) fn redact(input: &[u8], findings: &[Finding]) -> Vec<u8> {
    let mut spans: Vec<(usize, usize, &'static str)> = findings
        .iter()
        .map(|f| {
            (
                to_usize(f.range.start, input.len()),
                to_usize(f.range.end, input.len()),
                f.rule,
            )
        })
        .collect();
    spans.sort_by_key(|s| (s.0, std::cmp::Reverse(s.1)));
    let mut out = Vec::with_capacity(input.len());
    let mut pos = 0;
    let mut i = 0;
    while i < spans.len() {
        let (start, mut end, rule) = spans[i];
        i += 1;
        // Overlapping findings become one replacement, named by the first.
        while i < spans.len() && spans[i].0 < end {
            end = end.max(spans[i].1);
            i += 1;
        }
        let start = start.max(pos);
        if end <= start {
            continue;
        }
        out.extend_from_slice(&input[pos..start]);
        out.extend_from_slice(b"[REDACTED:");
        out.extend_from_slice(rule.as_bytes());
        out.push(b']');
        pos = end;
    }
    out.extend_from_slice(&input[pos..]);
    out
}

fn to_usize(v: u64, max: usize) -> usize {
    usize::try_from(v).unwrap_or(max).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preview_shows_at_most_four_chars() {
        assert_eq!(redact_preview(b"ghp_abcdefghijklmnop"), "ghp_…");
        assert_eq!(redact_preview(b"short"), "****");
        assert_eq!(
            redact_preview("ｇｈｐ＿abcdefghijkl".as_bytes()),
            "ｇｈｐ＿…"
        );
        assert_eq!(redact_preview(b"\x1b[31mabcdefghijk"), "?[31…");
    }

    #[test]
    fn redact_merges_overlaps() {
        let f = |a, b, rule| Finding {
            rule,
            range: a..b,
            redacted: String::new(),
        };
        let out = redact(b"0123456789", &[f(2, 5, "a"), f(3, 7, "b"), f(8, 9, "c")]);
        assert_eq!(out, b"01[REDACTED:a]7[REDACTED:c]9");
    }
}
