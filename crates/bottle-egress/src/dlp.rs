//! The seam between the proxy and the DLP engine.
//!
//! The proxy only needs "scan these bytes", "scan this host name" and a
//! streaming scanner that says how far it has settled. [`Engine`] is that
//! contract; [`LiteralEngine`] implements it for exact known secrets (enough
//! to run and test the proxy on its own), and the real `bottle-dlp` engine is
//! wired in through the same trait.

use std::collections::HashSet;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};

use crate::config::DlpMode;

/// One secret found somewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub rule: String,
    /// Byte range in the scanned input (absolute stream offsets when streaming).
    pub range: Range<u64>,
    /// The secret with at most its first 4 characters shown.
    pub redacted: String,
}

/// What the proxy needs from a DLP engine.
pub trait Engine: Send + Sync + 'static {
    fn scan(&self, data: &[u8]) -> Vec<Finding>;
    fn scan_host(&self, host: &str) -> Vec<Finding>;
    /// A header name, which arrives in lower case whatever was sent.
    fn scan_name(&self, name: &str) -> Vec<Finding> {
        self.scan(name.as_bytes())
    }
    fn stream(&self) -> Box<dyn StreamScan>;
}

/// A scanner fed chunk by chunk.
pub trait StreamScan: Send + Sync {
    fn push(&mut self, chunk: &[u8]) -> Vec<Finding>;
    fn finish(self: Box<Self>) -> Vec<Finding>;
    /// Every byte before this offset has been fully scanned and may be released.
    fn settled(&self) -> u64;
    /// Memory the scanner holds for the stream now (its buffer), which the
    /// proxy charges to the shared budget with the bytes it holds itself.
    fn buffered(&self) -> usize {
        0
    }
}

/// Shows at most the first 4 characters of a secret.
pub fn redact_preview(secret: &[u8]) -> String {
    let s = String::from_utf8_lossy(secret);
    let head: String = s.chars().take(4).collect();
    format!("{head}…")
}

/// Finds exact byte strings (the bottle's own tokens and known secrets).
pub struct LiteralEngine {
    needles: Vec<(String, Vec<u8>)>,
}

impl LiteralEngine {
    /// `needles`: (rule name, value). Empty values are ignored.
    pub fn new(needles: Vec<(String, Vec<u8>)>) -> Self {
        Self {
            needles: needles.into_iter().filter(|(_, v)| !v.is_empty()).collect(),
        }
    }

    fn longest(&self) -> usize {
        self.needles.iter().map(|(_, v)| v.len()).max().unwrap_or(0)
    }

    fn find_all(&self, data: &[u8], base: u64) -> Vec<Finding> {
        let mut out = Vec::new();
        for (rule, needle) in &self.needles {
            let mut i = 0;
            while i + needle.len() <= data.len() {
                if data[i..].starts_with(needle) {
                    let start = base + i as u64;
                    out.push(Finding {
                        rule: rule.clone(),
                        range: start..start + needle.len() as u64,
                        redacted: redact_preview(needle),
                    });
                    i += needle.len();
                } else {
                    i += 1;
                }
            }
        }
        out.sort_by_key(|f| f.range.start);
        out
    }
}

impl Engine for LiteralEngine {
    fn scan(&self, data: &[u8]) -> Vec<Finding> {
        self.find_all(data, 0)
    }

    fn scan_host(&self, host: &str) -> Vec<Finding> {
        self.find_all(host.to_ascii_lowercase().as_bytes(), 0)
    }

    fn stream(&self) -> Box<dyn StreamScan> {
        Box::new(LiteralStream {
            engine: LiteralEngine {
                needles: self.needles.clone(),
            },
            tail: Vec::new(),
            tail_start: 0,
            total: 0,
        })
    }
}

struct LiteralStream {
    engine: LiteralEngine,
    /// The last `longest - 1` bytes seen, so a needle split across chunks is found.
    tail: Vec<u8>,
    tail_start: u64,
    total: u64,
}

impl StreamScan for LiteralStream {
    fn push(&mut self, chunk: &[u8]) -> Vec<Finding> {
        let mut window = std::mem::take(&mut self.tail);
        window.extend_from_slice(chunk);
        let found: Vec<Finding> = self
            .engine
            .find_all(&window, self.tail_start)
            .into_iter()
            // Matches wholly inside the old tail were reported already.
            .filter(|f| f.range.end > self.total)
            .collect();
        self.total += chunk.len() as u64;
        let keep = self.engine.longest().saturating_sub(1).min(window.len());
        self.tail = window[window.len() - keep..].to_vec();
        self.tail_start = self.total - keep as u64;
        found
    }

    fn finish(self: Box<Self>) -> Vec<Finding> {
        Vec::new()
    }

    fn settled(&self) -> u64 {
        self.tail_start
    }
}

/// The real engine from `bottle-dlp`: credential rules, known secrets in
/// their encoded forms, host-name checks.
///
/// A streamed body's scanner holds a share of the engine, so the engine
/// (and the bottle's secrets in it) goes with the last proxy and body that
/// use it instead of being leaked for the life of the process.
pub struct BottleDlp(std::sync::Arc<bottle_dlp::Engine>);

impl BottleDlp {
    /// An engine knowing `secrets`. Values shorter than
    /// `bottle_dlp::MIN_KNOWN_SECRET_LEN` are skipped: matching them
    /// everywhere would block ordinary traffic.
    pub fn new<'a>(
        secrets: impl IntoIterator<Item = &'a bottle_secret::Secret>,
    ) -> Result<Self, String> {
        let mut b = bottle_dlp::Engine::builder();
        for s in secrets {
            if s.len() >= bottle_dlp::MIN_KNOWN_SECRET_LEN {
                b = b.known_secret_value(s.clone());
            }
        }
        let engine = b.build().map_err(|e| e.to_string())?;
        Ok(Self(std::sync::Arc::new(engine)))
    }
}

fn from_dlp(f: bottle_dlp::Finding) -> Finding {
    Finding {
        rule: f.rule.to_string(),
        range: f.range,
        redacted: f.redacted,
    }
}

impl Engine for BottleDlp {
    fn scan(&self, data: &[u8]) -> Vec<Finding> {
        self.0.scan(data).into_iter().map(from_dlp).collect()
    }

    fn scan_host(&self, host: &str) -> Vec<Finding> {
        self.0.scan_host(host).into_iter().map(from_dlp).collect()
    }

    fn scan_name(&self, name: &str) -> Vec<Finding> {
        self.0.scan_name(name).into_iter().map(from_dlp).collect()
    }

    fn stream(&self) -> Box<dyn StreamScan> {
        Box::new(BottleStream(self.0.clone().stream_shared()))
    }
}

struct BottleStream(bottle_dlp::StreamScanner<std::sync::Arc<bottle_dlp::Engine>>);

impl StreamScan for BottleStream {
    fn push(&mut self, chunk: &[u8]) -> Vec<Finding> {
        self.0.push(chunk).into_iter().map(from_dlp).collect()
    }

    fn finish(self: Box<Self>) -> Vec<Finding> {
        self.0.finish().into_iter().map(from_dlp).collect()
    }

    fn settled(&self) -> u64 {
        self.0.settled()
    }

    fn buffered(&self) -> usize {
        self.0.buffered()
    }
}

/// The engine (if any) and the mode in force.
#[derive(Clone)]
pub struct Dlp {
    engine: Option<Arc<dyn Engine>>,
    pub mode: DlpMode,
    /// Host names and header values the engine found nothing in. A scan is
    /// a pure function of the (immutable) engine and its input, and the
    /// same few names and values (`User-Agent`, `Accept-Language`, ...)
    /// come back on every request, so a clean answer is remembered instead
    /// of recomputed. Findings are never cached: inputs with one are
    /// scanned every time.
    clean: Arc<Clean>,
}

#[derive(Default)]
struct Clean {
    hosts: Mutex<HashSet<Vec<u8>>>,
    values: Mutex<HashSet<Vec<u8>>>,
    /// Apart from values: a name is checked in more forms than a value, so
    /// a value found clean says nothing about the same text as a name.
    names: Mutex<HashSet<Vec<u8>>>,
}

/// Clean inputs remembered per kind; a set is emptied when full.
const CLEAN_MAX: usize = 1024;
/// Longer inputs are scanned every time: the bound on the cache's memory.
const CLEAN_MAX_LEN: usize = 256;

/// `scan(input)`, unless `input` is short and was found clean before; a
/// clean answer for a short input is remembered.
fn scan_memo(
    set: &Mutex<HashSet<Vec<u8>>>,
    input: &[u8],
    scan: impl FnOnce() -> Vec<Finding>,
) -> Vec<Finding> {
    let cacheable = input.len() <= CLEAN_MAX_LEN;
    if cacheable && set.lock().is_ok_and(|s| s.contains(input)) {
        return Vec::new();
    }
    let findings = scan();
    if cacheable
        && findings.is_empty()
        && let Ok(mut s) = set.lock()
    {
        if s.len() >= CLEAN_MAX {
            s.clear();
        }
        s.insert(input.to_vec());
    }
    findings
}

impl std::fmt::Debug for Dlp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Dlp({:?}, engine: {})", self.mode, self.engine.is_some())
    }
}

impl Dlp {
    pub fn new(engine: Option<Arc<dyn Engine>>, mode: DlpMode) -> Self {
        let engine = if mode == DlpMode::Off { None } else { engine };
        Self {
            engine,
            mode,
            clean: Arc::default(),
        }
    }

    pub fn active(&self) -> bool {
        self.engine.is_some()
    }

    pub fn scan(&self, data: &[u8]) -> Vec<Finding> {
        self.engine
            .as_ref()
            .map(|e| e.scan(data))
            .unwrap_or_default()
    }

    pub fn scan_host(&self, host: &str) -> Vec<Finding> {
        let Some(engine) = &self.engine else {
            return Vec::new();
        };
        scan_memo(&self.clean.hosts, host.as_bytes(), || {
            engine.scan_host(host)
        })
    }

    /// [`Dlp::scan`] for short values that recur (header values): a value
    /// found clean before is not scanned again.
    pub fn scan_recurring(&self, data: &[u8]) -> Vec<Finding> {
        let Some(engine) = &self.engine else {
            return Vec::new();
        };
        scan_memo(&self.clean.values, data, || engine.scan(data))
    }

    /// A header name (lower case, as hyper keeps it): see
    /// [`bottle_dlp::Engine::scan_name`]; a name found clean before is not
    /// checked again.
    pub fn scan_name(&self, name: &str) -> Vec<Finding> {
        let Some(engine) = &self.engine else {
            return Vec::new();
        };
        scan_memo(&self.clean.names, name.as_bytes(), || {
            engine.scan_name(name)
        })
    }

    pub fn stream(&self) -> Option<Box<dyn StreamScan>> {
        self.engine.as_ref().map(|e| e.stream())
    }
}

/// Replaces each finding's range with `[REDACTED:<rule>]`.
pub fn apply_redactions(data: &[u8], findings: &[Finding]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut pos = 0usize;
    let mut sorted: Vec<&Finding> = findings.iter().collect();
    sorted.sort_by_key(|f| f.range.start);
    for f in sorted {
        let start = usize::try_from(f.range.start)
            .unwrap_or(usize::MAX)
            .min(data.len());
        let end = usize::try_from(f.range.end)
            .unwrap_or(usize::MAX)
            .min(data.len());
        if start < pos {
            // Overlaps the previous finding: extend the cut.
            pos = pos.max(end);
            continue;
        }
        out.extend_from_slice(&data[pos..start]);
        out.extend_from_slice(format!("[REDACTED:{}]", f.rule).as_bytes());
        pos = end;
    }
    out.extend_from_slice(&data[pos.min(data.len())..]);
    out
}

/// Holds back the unsettled end of a streamed body and redacts as it releases.
pub struct HeldBytes {
    buf: BytesMut,
    /// Stream offset of `buf[0]`.
    start: u64,
    /// Pending redactions (absolute ranges), possibly reaching past `buf`.
    cuts: Vec<Finding>,
}

impl HeldBytes {
    pub fn new() -> Self {
        Self {
            buf: BytesMut::new(),
            start: 0,
            cuts: Vec::new(),
        }
    }

    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    pub fn held(&self) -> usize {
        self.buf.len()
    }

    pub fn redact(&mut self, f: Finding) {
        self.cuts.push(f);
    }

    /// Releases bytes below `upto` (absolute), applying redactions to them.
    pub fn release(&mut self, upto: u64) -> Option<Bytes> {
        let n = usize::try_from(upto.saturating_sub(self.start))
            .unwrap_or(usize::MAX)
            .min(self.buf.len());
        if n == 0 {
            return None;
        }
        let chunk = self.buf.split_to(n).freeze();
        let lo = self.start;
        let hi = lo + n as u64;
        self.start = hi;
        if self.cuts.is_empty() {
            return Some(chunk);
        }
        let mut out = Vec::with_capacity(chunk.len());
        let mut i = lo;
        let mut cuts: Vec<Finding> = std::mem::take(&mut self.cuts);
        cuts.sort_by_key(|f| f.range.start);
        for f in &cuts {
            if f.range.end <= i || f.range.start >= hi {
                continue;
            }
            if f.range.start >= i {
                out.extend_from_slice(&chunk[(i - lo) as usize..(f.range.start - lo) as usize]);
                out.extend_from_slice(format!("[REDACTED:{}]", f.rule).as_bytes());
            }
            i = f.range.end.min(hi).max(i);
        }
        if i < hi {
            out.extend_from_slice(&chunk[(i - lo) as usize..]);
        }
        // Keep cuts that still reach into bytes not yet released.
        self.cuts = cuts.into_iter().filter(|f| f.range.end > hi).collect();
        Some(Bytes::from(out))
    }

    pub fn release_all(&mut self) -> Option<Bytes> {
        let end = self.start + self.buf.len() as u64;
        self.release(end)
    }
}

impl Default for HeldBytes {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine() -> LiteralEngine {
        LiteralEngine::new(vec![("known".into(), b"SECRET123".to_vec())])
    }

    #[test]
    fn stream_finds_needles_split_across_chunks() {
        let e = engine();
        let data = b"xxxxSECRET123yyyySECRET123";
        for split in 1..data.len() {
            let mut s = e.stream();
            let mut found = s.push(&data[..split]);
            found.extend(s.push(&data[split..]));
            let ranges: Vec<_> = found.iter().map(|f| f.range.clone()).collect();
            assert_eq!(ranges, vec![4..13, 17..26], "split {split}");
        }
    }

    #[test]
    fn settled_never_passes_a_partial_match() {
        let e = engine();
        let mut s = e.stream();
        assert!(s.push(b"aaaaSECR").is_empty());
        assert!(s.settled() <= 4);
        assert_eq!(s.push(b"ET123").len(), 1);
    }

    #[test]
    fn held_bytes_redact_across_releases() {
        let mut h = HeldBytes::new();
        h.push(b"abSECRET123cd");
        h.redact(Finding {
            rule: "known".into(),
            range: 2..11,
            redacted: "SECR…".into(),
        });
        let mut out = Vec::new();
        out.extend_from_slice(&h.release(5).unwrap());
        out.extend_from_slice(&h.release(9).unwrap_or_default());
        out.extend_from_slice(&h.release_all().unwrap());
        assert_eq!(String::from_utf8(out).unwrap(), "ab[REDACTED:known]cd");
    }

    #[test]
    fn host_checks_remember_clean_names_only() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        struct Counting(LiteralEngine, AtomicUsize);
        impl Engine for Counting {
            fn scan(&self, data: &[u8]) -> Vec<Finding> {
                self.0.scan(data)
            }
            fn scan_host(&self, host: &str) -> Vec<Finding> {
                self.1.fetch_add(1, Ordering::SeqCst);
                self.0.scan_host(host)
            }
            fn stream(&self) -> Box<dyn StreamScan> {
                self.0.stream()
            }
        }
        let e = Arc::new(Counting(
            LiteralEngine::new(vec![("known".into(), b"secret123".to_vec())]),
            AtomicUsize::new(0),
        ));
        let dlp = Dlp::new(Some(e.clone()), DlpMode::Block);
        for _ in 0..3 {
            assert!(dlp.scan_host("api.example.com").is_empty());
            assert_eq!(dlp.scan_host("secret123.example.com").len(), 1);
        }
        // The clean name was checked once; the dirty one every time.
        assert_eq!(e.1.load(Ordering::SeqCst), 1 + 3);
        // Clones share what they learnt.
        assert!(dlp.clone().scan_host("api.example.com").is_empty());
        assert_eq!(e.1.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn recurring_values_remember_clean_ones_only() {
        let dlp = Dlp::new(Some(Arc::new(engine())), DlpMode::Block);
        for _ in 0..3 {
            assert!(dlp.scan_recurring(b"en-US,en;q=0.9").is_empty());
            assert_eq!(dlp.scan_recurring(b"Bearer SECRET123").len(), 1);
        }
        let long = format!("{}SECRET123", "x".repeat(CLEAN_MAX_LEN));
        for _ in 0..2 {
            assert_eq!(dlp.scan_recurring(long.as_bytes()).len(), 1);
        }
        let c = dlp.clean.values.lock().unwrap();
        assert_eq!(c.len(), 1);
        assert!(c.contains(b"en-US,en;q=0.9".as_slice()));
    }

    #[test]
    fn the_clean_cache_is_bounded() {
        let dlp = Dlp::new(Some(Arc::new(engine())), DlpMode::Block);
        for i in 0..CLEAN_MAX * 3 {
            assert!(dlp.scan_recurring(format!("v{i}").as_bytes()).is_empty());
            assert!(dlp.scan_host(&format!("h{i}.example")).is_empty());
        }
        assert!(dlp.clean.values.lock().unwrap().len() <= CLEAN_MAX);
        assert!(dlp.clean.hosts.lock().unwrap().len() <= CLEAN_MAX);
        assert!(dlp.scan_recurring(&[b'y'; CLEAN_MAX_LEN + 1]).is_empty());
        assert!(
            !dlp.clean
                .values
                .lock()
                .unwrap()
                .iter()
                .any(|v| v.len() > CLEAN_MAX_LEN)
        );
    }

    #[test]
    fn apply_redactions_whole() {
        let e = engine();
        let data = b"a=SECRET123&b=SECRET123";
        let out = apply_redactions(data, &e.scan(data));
        assert_eq!(out, b"a=[REDACTED:known]&b=[REDACTED:known]");
        assert_eq!(redact_preview(b"SECRET123"), "SECR…");
    }
}
