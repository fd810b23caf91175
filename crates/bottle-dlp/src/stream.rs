//! Scanning a stream of chunks (a request body) with bounded look-back.
//!
//! The scanner keeps the last [`LOOKBACK`] bytes, so a secret split across
//! chunks is whole in its buffer, and scans once at least `step` new bytes
//! have arrived (and at [`StreamScanner::finish`]). A finding that ends near
//! the end of the buffer could still grow with the next chunk, so it is held
//! back until it cannot, or until its start would leave the buffer. Memory is
//! bounded by the look-back plus one step, whatever the stream's length.

use std::collections::BTreeSet;
use std::ops::Deref;

use crate::{Engine, Finding};

/// Bytes of look-back: more than the longest finding kept whole, so a secret
/// that was cut by a chunk boundary is whole in the buffer.
pub const LOOKBACK: usize = 16 * 1024;
pub(crate) const DEFAULT_LOOKBACK: usize = LOOKBACK;
/// New bytes between scans for [`Engine::stream`].
pub(crate) const DEFAULT_STEP: usize = 16 * 1024;
/// A match ending this close to the end of the data may still be extended by
/// the next chunk.
const HOLD: usize = 512;

const _: () = assert!(LOOKBACK >= crate::pipeline::MAX_FINDING_LEN + HOLD);

/// The longest escape-dense region held whole at the end of the buffer
/// (see [`StreamScanner::open_region`]); a longer one is the finding
/// `encoding-too-deep`.
const MAX_OPEN_REGION: usize = 1024 * 1024;
/// How far past the densest suffix found the walk back goes before it
/// stops looking for a longer one.
const OPEN_WALK_SLACK: usize = 64 * 1024;
/// Plain bytes at the end after which no open region is looked for.
const OPEN_WALK_GAP: usize = 1024;

/// See [`Engine::stream`]. Findings carry offsets in the whole stream.
/// `E` is how the scanner holds its engine: borrowed (`&Engine`), or
/// shared (`Arc<Engine>`) when the scanner must outlive the caller, as a
/// streamed request body does.
pub struct StreamScanner<E: Deref<Target = Engine>> {
    engine: E,
    buf: Vec<u8>,
    /// Stream offset of `buf[0]`.
    base: u64,
    /// Stream offset up to which the buffer has been scanned.
    scanned_to: u64,
    lookback: usize,
    step: usize,
    /// `(start, rule)` of findings already returned that are still in the
    /// buffer, so a rescan does not report them again.
    emitted: BTreeSet<(u64, &'static str)>,
    /// See [`StreamScanner::settled`].
    settled: u64,
    /// Start of the escape-dense region the last scan held whole.
    held_from: Option<u64>,
    /// Escapes counted in that region, up to `held_to`.
    held_escapes: usize,
    held_to: u64,
}

impl<E: Deref<Target = Engine>> StreamScanner<E> {
    pub(crate) fn new(engine: E, lookback: usize, step: usize) -> Self {
        StreamScanner {
            engine,
            buf: Vec::new(),
            base: 0,
            scanned_to: 0,
            lookback,
            step: step.max(1),
            emitted: BTreeSet::new(),
            settled: 0,
            held_from: None,
            held_escapes: 0,
            held_to: 0,
        }
    }

    /// Feeds the next chunk; returns the findings that became certain.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Finding> {
        let mut out = Vec::new();
        // Large chunks go in step-sized pieces so the buffer stays bounded.
        for piece in chunk.chunks(self.step) {
            self.buf.extend_from_slice(piece);
            if self.end() - self.scanned_to >= self.step as u64 {
                self.scan_buffer(false, &mut out);
            }
        }
        out
    }

    /// Ends the stream; returns the remaining findings.
    pub fn finish(mut self) -> Vec<Finding> {
        let mut out = Vec::new();
        // Also when nothing new arrived: findings held back at the last scan
        // are certain now (the ones already returned are not repeated).
        self.scan_buffer(true, &mut out);
        out
    }

    /// The stream offset below which no future finding can start: a
    /// redacting proxy may release the bytes before it.
    pub fn settled(&self) -> u64 {
        self.settled
    }

    /// Bytes of memory the scanner's buffer takes now: about 25 KiB for
    /// ordinary text, up to 2 MiB while it holds a region of dense escapes
    /// whole ([`MAX_OPEN_REGION`]).
    pub fn buffered(&self) -> usize {
        self.buf.capacity()
    }

    fn end(&self) -> u64 {
        self.base + self.buf.len() as u64
    }

    fn scan_buffer(&mut self, last: bool, out: &mut Vec<Finding>) {
        let end = self.end();
        if !last && self.region_goes_on() {
            // Still inside the region the last scan held: every new byte is
            // in it, none of it is settled, so it is read once, whole, when
            // the buffer no longer ends in it (rescanning it at every step
            // cost time in the square of its length).
            return;
        }
        let region = if last { None } else { self.open_region(out) };
        let open = region.map(|(at, _)| at);
        let mut cut = if last {
            0
        } else {
            self.buf.len().saturating_sub(self.lookback)
        };
        if let Some(o) = open {
            cut = cut.min(usize::try_from(o - self.base).unwrap_or(0));
        }
        let new_base = self.base + cut as u64;
        // Only the tail that can hold a finding not yet certain is rescanned:
        // anything starting earlier ended before the last scan's end minus
        // HOLD, and was reported then; and a region held whole by the last
        // scan is read again from its start.
        let mut rescan = usize::try_from(self.scanned_to - self.base)
            .unwrap_or(0)
            .saturating_sub(crate::pipeline::MAX_FINDING_LEN + HOLD);
        if let Some(h) = self.held_from {
            rescan = rescan.min(usize::try_from(h.saturating_sub(self.base)).unwrap_or(0));
        }
        let from = self.base + rescan as u64;
        // The next scan starts here: a finding that may still grow is left to
        // it only if it will see the finding's start (a finding on a long
        // decoded run can be longer than the rescanned tail).
        let mut next_from = end
            .saturating_sub((crate::pipeline::MAX_FINDING_LEN + HOLD) as u64)
            .max(new_base);
        if let Some(o) = open {
            next_from = next_from.min(o);
        }
        for f in self.engine.scan(&self.buf[rescan..]) {
            let range = f.range.start + from..f.range.end + from;
            let may_grow = range.end + HOLD as u64 > end;
            if !last && may_grow && range.start >= next_from {
                continue; // seen again at the next scan, complete
            }
            if self.emitted.insert((range.start, f.rule)) {
                out.push(Finding { range, ..f });
            }
        }
        self.scanned_to = end;
        self.held_from = open;
        self.held_escapes = region.map_or(0, |(_, n)| n);
        self.held_to = end;
        // Every later finding starts where the next scan starts, or after.
        self.settled = if last { end } else { next_from };
        if cut > 0 {
            self.buf.drain(..cut);
            self.base = new_base;
            self.emitted = self.emitted.split_off(&(new_base, ""));
        }
    }
}

impl<E: Deref<Target = Engine>> StreamScanner<E> {
    /// Where a long escape-dense region that the buffer ends in starts, if
    /// it does. Percent, JSON `\u` and character-reference escapes make a
    /// secret's form three to eight times longer per layer, so nested,
    /// the form of one short token is longer than the rescanned tail: no
    /// scan would see it whole, cut as it is by one buffer's end and the
    /// next one's start. Such a region is held whole (not settled, not
    /// dropped from the buffer) until the buffer no longer ends in it.
    /// The region is the longest suffix of URL-ish bytes (printable, no
    /// space or quote) in which at least one byte in eight starts an
    /// escape of an ASCII byte ([`escape_at`]): padding of plain bytes
    /// before it is not held, base64 (even with `\/` escapes) is not
    /// dense, and neither is JSON that escapes text outside ASCII
    /// (`\u4e2d`, Python's default). Past [`MAX_OPEN_REGION`] it is
    /// reported as `encoding-too-deep` instead.
    fn open_region(&mut self, out: &mut Vec<Finding>) -> Option<(u64, usize)> {
        let buf = &self.buf;
        let class = url_ish;
        let (mut escapes, mut start) = (0usize, None);
        let mut i = buf.len();
        while i > 0 && class(buf[i - 1]) {
            i -= 1;
            escapes += usize::from(escape_at(&buf[i..]));
            let len = buf.len() - i;
            if escapes * 8 >= len {
                start = Some((i, escapes));
            }
            let best = start.map_or(0, |(s, _)| buf.len() - s);
            // No escape near the end: the buffer does not end inside such a
            // region (a form's plain stretches are shorter than this), and
            // a long base64 run costs one short walk.
            if (escapes == 0 && len > OPEN_WALK_GAP)
                || len > best + OPEN_WALK_SLACK
                || len > MAX_OPEN_REGION
            {
                break;
            }
        }
        let (start, escapes) = start?;
        let len = buf.len() - start;
        if len <= crate::pipeline::MAX_FINDING_LEN {
            return None;
        }
        let at = self.base + start as u64;
        if len >= MAX_OPEN_REGION {
            let rule = crate::ENCODING_TOO_DEEP_RULE;
            if self.emitted.insert((at, rule)) {
                out.push(Finding {
                    rule,
                    range: at..self.end(),
                    redacted: "****".to_string(),
                });
            }
            return None;
        }
        Some((at, escapes))
    }

    /// Whether the buffer still ends in the region the last scan held,
    /// judged on the bytes that came since (so a long region costs one
    /// pass, not one per step): all URL-ish, and the region as dense as
    /// [`StreamScanner::open_region`] asks, and within its bound.
    fn region_goes_on(&mut self) -> bool {
        let Some(at) = self.held_from else {
            return false;
        };
        let end = self.end();
        let Ok(from) = usize::try_from(self.held_to - self.base) else {
            return false;
        };
        let new = &self.buf[from..];
        if !new.iter().all(|&b| url_ish(b)) {
            return false;
        }
        let n = (0..new.len()).filter(|&i| escape_at(&new[i..])).count();
        let len = usize::try_from(end - at).unwrap_or(usize::MAX);
        if (self.held_escapes + n) * 8 < len || len >= MAX_OPEN_REGION {
            return false;
        }
        self.held_escapes += n;
        self.held_to = end;
        true
    }
}

/// Printable ASCII but for space and quotes: what an encoded run is made of.
fn url_ish(b: u8) -> bool {
    b > b' ' && b < 0x7f && !b"\"'<>`".contains(&b)
}

/// Whether `rest` starts with an escape that can stand for an ASCII byte,
/// which is what a secret's nested encodings are made of: `%XX`, `\u00XX`
/// (and `\x`), or a numeric character reference `&#`.
fn escape_at(rest: &[u8]) -> bool {
    matches!(
        rest,
        [b'%', ..] | [b'\\', b'u', b'0', b'0', ..] | [b'\\', b'x', ..] | [b'&', b'#', ..]
    )
}

impl<E: Deref<Target = Engine>> std::fmt::Debug for StreamScanner<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamScanner")
            .field("base", &self.base)
            .field("buffered", &self.buf.len())
            .finish()
    }
}
