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

    fn end(&self) -> u64 {
        self.base + self.buf.len() as u64
    }

    fn scan_buffer(&mut self, last: bool, out: &mut Vec<Finding>) {
        let end = self.end();
        let cut = if last {
            0
        } else {
            self.buf.len().saturating_sub(self.lookback)
        };
        let new_base = self.base + cut as u64;
        // Only the tail that can hold a finding not yet certain is rescanned:
        // anything starting earlier ended before the last scan's end minus
        // HOLD, and was reported then.
        let rescan = usize::try_from(self.scanned_to - self.base)
            .unwrap_or(0)
            .saturating_sub(crate::pipeline::MAX_FINDING_LEN + HOLD);
        let from = self.base + rescan as u64;
        // The next scan starts here: a finding that may still grow is left to
        // it only if it will see the finding's start (a finding on a long
        // decoded run can be longer than the rescanned tail).
        let next_from = end
            .saturating_sub((crate::pipeline::MAX_FINDING_LEN + HOLD) as u64)
            .max(new_base);
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
        // Every later finding starts where the next scan starts, or after.
        self.settled = if last { end } else { next_from };
        if cut > 0 {
            self.buf.drain(..cut);
            self.base = new_base;
            self.emitted = self.emitted.split_off(&(new_base, ""));
        }
    }
}

impl<E: Deref<Target = Engine>> std::fmt::Debug for StreamScanner<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamScanner")
            .field("base", &self.base)
            .field("buffered", &self.buf.len())
            .finish()
    }
}
