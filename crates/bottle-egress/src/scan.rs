//! DLP applied to one request: host name, URL, headers and the streamed body.
//!
//! The body is released to the upstream only up to the offset the scanner
//! reports as settled, so a secret split across chunks is never sent in part;
//! in block mode the body stream fails at the finding, which aborts the
//! upstream request before its end is sent. A body with a `Content-Encoding`
//! is scanned as it inflates (`inflate`) and held whole until its end, since
//! part of a compressed stream cannot be released safely.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use hyper::body::{Body as HttpBody, Frame, SizeHint};

use crate::config::DlpMode;
use crate::dlp::{Dlp, Finding, HeldBytes, StreamScan};
use crate::form_method::FormMethod;
use crate::inflate::{self, Codings, InflateError, Inflater};
use crate::limits::{DLP_MAX_HELD_BYTES, HELD_BYTES_FREE, MAX_COMPRESSED_HELD_BYTES};
use crate::upstream::{Body, BoxError};

/// The rule of a body whose `Content-Encoding` the proxy cannot read (an
/// unknown coding, or data that is not valid for its coding): what it
/// carries cannot be scanned.
pub const UNSCANNABLE: &str = "unscannable-encoding";
/// The rule of a body in a character set whose ASCII is not ASCII bytes.
pub const UNSCANNABLE_CHARSET: &str = "unscannable-charset";

/// What DLP decided for a request, shared with the body stream.
#[derive(Debug, Default, Clone)]
pub struct Verdict {
    /// Rule of the finding that stopped the request.
    pub blocked: Option<String>,
    /// Rules of findings redacted or only logged.
    pub flagged: Vec<String>,
    pub too_large: bool,
    /// A `_method` form field named a method the route does not allow.
    pub method_override: bool,
}

/// Rules a request keeps of the findings it let through: its event names
/// the first, and a body full of findings (`log` or `redact`) must not grow
/// a list for as long as it streams.
const MAX_FLAGGED: usize = 8;

impl Verdict {
    pub fn flag(&mut self, rules: impl IntoIterator<Item = String>) {
        let room = MAX_FLAGGED.saturating_sub(self.flagged.len());
        self.flagged.extend(rules.into_iter().take(room));
    }
}

pub type SharedVerdict = Arc<Mutex<Verdict>>;

/// Marks a body stream stopped on purpose (DLP or bounds), not a network fault.
#[derive(Debug, thiserror::Error)]
#[error("request body stopped by the egress proxy")]
pub struct BodyStopped;

/// The rule of the first finding when the mode blocks; records the rest.
fn judge(dlp: &Dlp, findings: &[Finding], verdict: &mut Verdict) -> Result<(), String> {
    let Some(first) = findings.first() else {
        return Ok(());
    };
    if dlp.mode == DlpMode::Block {
        verdict.blocked = Some(first.rule.clone());
        return Err(first.rule.clone());
    }
    verdict.flag(findings.iter().map(|f| f.rule.clone()));
    Ok(())
}

/// [`judge`] for places that cannot be redacted: redact mode blocks too.
fn judge_unredactable(
    dlp: &Dlp,
    findings: &[Finding],
    verdict: &mut Verdict,
) -> Result<(), String> {
    if let Some(f) = findings.first()
        && dlp.mode == DlpMode::Redact
    {
        verdict.blocked = Some(f.rule.clone());
        return Err(f.rule.clone());
    }
    judge(dlp, findings, verdict)
}

/// Host names cannot be redacted: redact mode blocks them too.
pub fn scan_host(dlp: &Dlp, host: &str, verdict: &mut Verdict) -> Result<(), String> {
    judge_unredactable(dlp, &dlp.scan_host(host), verdict)
}

/// The request method (any token is a method to HTTP, so it can carry a
/// secret). A redaction marker is no method, and a rewritten method would
/// be another request: redact mode blocks.
pub fn scan_method(dlp: &Dlp, method: &str, verdict: &mut Verdict) -> Result<(), String> {
    judge_unredactable(dlp, &dlp.scan_recurring(method.as_bytes()), verdict)
}

/// Scans the path and query; returns the redacted form when redacting.
pub fn scan_target(dlp: &Dlp, pq: &str, verdict: &mut Verdict) -> Result<Option<String>, String> {
    let findings = dlp.scan(pq.as_bytes());
    judge(dlp, &findings, verdict)?;
    if findings.is_empty() || dlp.mode != DlpMode::Redact {
        return Ok(None);
    }
    // URL-safe marker: brackets are not allowed in a path.
    let out = crate::dlp::apply_redactions(pq.as_bytes(), &findings);
    let text = String::from_utf8_lossy(&out)
        .replace('[', "%5B")
        .replace(']', "%5D");
    Ok(Some(text))
}

/// Scans header names and values, skipping those `skip` names (headers the
/// proxy removes or sets). A name is a place like any other (`X-<secret>:
/// 1`); it cannot be redacted (a marker is no header name, and renaming
/// changes the request), so redact mode blocks a finding in a name.
pub fn scan_headers(
    dlp: &Dlp,
    headers: &mut http::HeaderMap,
    skip: impl Fn(&HeaderName) -> bool,
    verdict: &mut Verdict,
) -> Result<(), String> {
    let mut replace: Vec<(HeaderName, usize, HeaderValue)> = Vec::new();
    for name in headers.keys() {
        if skip(name) {
            continue;
        }
        // Names recur as values do: a clean one costs a set lookup.
        judge_unredactable(dlp, &dlp.scan_name(name.as_str()), verdict)?;
        for (i, value) in headers.get_all(name).iter().enumerate() {
            let findings = dlp.scan_recurring(value.as_bytes());
            judge(dlp, &findings, verdict)?;
            if !findings.is_empty() && dlp.mode == DlpMode::Redact {
                let out = crate::dlp::apply_redactions(value.as_bytes(), &findings);
                let v = HeaderValue::from_bytes(&out)
                    .unwrap_or_else(|_| HeaderValue::from_static("[REDACTED]"));
                replace.push((name.clone(), i, v));
            }
        }
    }
    for (name, idx, v) in replace {
        let mut values: Vec<HeaderValue> = headers.get_all(&name).iter().cloned().collect();
        if let Some(slot) = values.get_mut(idx) {
            *slot = v;
        }
        headers.remove(&name);
        for v in values {
            headers.append(name.clone(), v);
        }
    }
    Ok(())
}

/// The request's `Content-Encoding`: an inflater for the body scanner, or
/// none for plain content. A coding the proxy cannot read is a finding that
/// cannot be redacted.
pub fn body_coding(
    dlp: &Dlp,
    headers: &http::HeaderMap,
    verdict: &mut Verdict,
) -> Result<Option<Inflater>, String> {
    if !readable_charset(headers) {
        let finding = Finding {
            rule: UNSCANNABLE_CHARSET.to_string(),
            range: 0..0,
            redacted: String::new(),
        };
        judge_unredactable(dlp, &[finding], verdict)?;
    }
    match inflate::codings(headers) {
        Codings::Identity => Ok(None),
        Codings::Inflate(codings) => Ok(Some(Inflater::new(&codings))),
        Codings::Unscannable => {
            let finding = Finding {
                rule: UNSCANNABLE.to_string(),
                range: 0..0,
                redacted: String::new(),
            };
            judge_unredactable(dlp, &[finding], verdict).map(|()| None)
        }
    }
}

/// Whether the body's declared `charset` (if any) writes ASCII as ASCII
/// bytes, or is UTF-16, which the engine decodes: a server that decodes
/// the body as EBCDIC (`IBM037`, which Java servers read), UTF-7 or UTF-32
/// sees a secret the engine never saw. Every `Content-Type` counts, and
/// every `charset` in it, read as loosely as servers read it: Tomcat
/// searches for the text `charset=` anywhere (`x=charset=IBM037`), Django
/// reads RFC 2231's `charset*=utf-8''cp037`.
fn readable_charset(headers: &http::HeaderMap) -> bool {
    headers.get_all(http::header::CONTENT_TYPE).iter().all(|v| {
        let v = String::from_utf8_lossy(v.as_bytes()).to_ascii_lowercase();
        let mut from = 0;
        while let Some(at) = v[from..].find("charset") {
            let mut rest = &v[from + at + "charset".len()..];
            from += at + "charset".len();
            let extended = rest.starts_with('*');
            rest = rest.trim_start_matches('*').trim_start();
            let Some(value) = rest.strip_prefix('=') else {
                continue;
            };
            let value = value.trim_start();
            let end = value.find([';', ',', ' ', '\t']).unwrap_or(value.len());
            let mut name = value[..end].trim_matches(|c| c == '"' || c == '\'');
            if extended && let Some(i) = name.rfind('\'') {
                // `charset*=<encoding>'<language>'<value>`
                name = &name[i + 1..];
            }
            if !ascii_compatible(&name.replace('_', "-")) {
                return false;
            }
        }
        true
    })
}

/// Character sets in which ASCII text is its ASCII bytes (and UTF-16),
/// and `binary` (what `file -i` says of a file that is not text).
fn ascii_compatible(charset: &str) -> bool {
    const EXACT: &[&str] = &[
        "utf-8",
        "utf8",
        "us-ascii",
        "ascii",
        "latin1",
        "latin-1",
        "l1",
        "utf-16",
        "utf-16le",
        "utf-16be",
        "utf16",
        "shift-jis",
        "sjis",
        "windows-31j",
        "cp932",
        "ms932",
        "euc-jp",
        "euc-kr",
        "gbk",
        "gb2312",
        "gb18030",
        "big5",
        "big5-hkscs",
        "tis-620",
        "ansi-x3.4-1968",
        "binary",
    ];
    const PREFIXES: &[&str] = &["iso-8859-", "iso8859-", "windows-125", "cp125", "koi8-"];
    EXACT.contains(&charset) || PREFIXES.iter().any(|p| charset.starts_with(p))
}

/// The bytes all request bodies together may hold back for DLP beyond
/// [`HELD_BYTES_FREE`] each (`Limits::held_bytes`).
#[derive(Clone)]
pub struct HeldBudget(Arc<Budget>);

struct Budget {
    used: AtomicUsize,
    limit: usize,
}

impl HeldBudget {
    pub fn new(limit: usize) -> Self {
        HeldBudget(Arc::new(Budget {
            used: AtomicUsize::new(0),
            limit,
        }))
    }

    /// Bytes drawn now, by all bodies.
    pub fn used(&self) -> usize {
        self.0.used.load(Ordering::Relaxed)
    }

    fn grow(&self, by: usize) -> bool {
        let b = &self.0;
        b.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                u.checked_add(by).filter(|n| *n <= b.limit)
            })
            .is_ok()
    }

    fn shrink(&self, by: usize) {
        self.0.used.fetch_sub(by, Ordering::AcqRel);
    }
}

/// A request body scanned as it streams.
pub struct ScanBody {
    inner: Body,
    /// None once scanning has ended: at the body's end, or early in `log`
    /// mode when the content could not be inflated.
    scanner: Option<Box<dyn StreamScan>>,
    /// Set for a compressed body: the scanner reads what it inflates to.
    inflater: Option<Inflater>,
    compressed: bool,
    held: HeldBytes,
    mode: DlpMode,
    verdict: SharedVerdict,
    out: VecDeque<Frame<Bytes>>,
    done: bool,
    budget: HeldBudget,
    /// Bytes this body has drawn from `budget`.
    drawn: usize,
}

impl ScanBody {
    pub fn new(
        inner: Body,
        scanner: Box<dyn StreamScan>,
        mode: DlpMode,
        verdict: SharedVerdict,
        budget: HeldBudget,
    ) -> Self {
        Self {
            inner,
            scanner: Some(scanner),
            inflater: None,
            compressed: false,
            held: HeldBytes::new(),
            mode,
            verdict,
            out: VecDeque::new(),
            done: false,
            budget,
            drawn: 0,
        }
    }

    /// Draws what the held bytes now need from the shared budget (and gives
    /// back what they no longer need); false when the budget is spent.
    fn hold_within_budget(&mut self) -> bool {
        // The scanner's own buffer too: behind a compressed body the wire
        // bytes held are few, while the scanner may hold a megabyte of
        // what they inflated to.
        let buffered = self.scanner.as_ref().map_or(0, |s| s.buffered());
        let need = (self.held.held() + buffered).saturating_sub(HELD_BYTES_FREE);
        if need > self.drawn {
            if !self.budget.grow(need - self.drawn) {
                return false;
            }
        } else {
            self.budget.shrink(self.drawn - need);
        }
        self.drawn = need;
        true
    }

    fn too_large(&mut self) -> Result<(), BoxError> {
        if let Ok(mut v) = self.verdict.lock() {
            v.too_large = true;
        }
        Err(Box::new(BodyStopped))
    }

    /// Scans `inflater`'s output instead of the bytes on the wire, which are
    /// forwarded unchanged once the whole content is found clean.
    pub fn inflating(mut self, inflater: Option<Inflater>) -> Self {
        self.compressed = inflater.is_some();
        self.inflater = inflater;
        self
    }

    fn apply(&mut self, findings: Vec<Finding>) -> Result<(), BoxError> {
        if findings.is_empty() {
            return Ok(());
        }
        let Ok(mut v) = self.verdict.lock() else {
            return Err(Box::new(BodyStopped));
        };
        // Compressed content cannot be redacted on the wire: it blocks.
        let mode = match self.mode {
            DlpMode::Redact if self.compressed => DlpMode::Block,
            mode => mode,
        };
        match mode {
            DlpMode::Block => {
                v.blocked = Some(findings[0].rule.clone());
                Err(Box::new(BodyStopped))
            }
            DlpMode::Redact => {
                for f in findings {
                    v.flag([f.rule.clone()]);
                    self.held.redact(f);
                }
                Ok(())
            }
            DlpMode::Log | DlpMode::Off => {
                v.flag(findings.into_iter().map(|f| f.rule));
                Ok(())
            }
        }
    }

    /// Content that could not be inflated: refused, or in `log` mode
    /// flagged and passed on unscanned from here.
    fn unreadable(&mut self, e: InflateError) -> Result<(), BoxError> {
        let Ok(mut v) = self.verdict.lock() else {
            return Err(Box::new(BodyStopped));
        };
        if self.mode == DlpMode::Log {
            v.flag([UNSCANNABLE.to_string()]);
            self.scanner = None;
            self.inflater = None;
            return Ok(());
        }
        match e {
            InflateError::TooLarge => v.too_large = true,
            InflateError::Invalid => v.blocked = Some(UNSCANNABLE.to_string()),
        }
        Err(Box::new(BodyStopped))
    }

    fn on_compressed(&mut self, data: &[u8]) -> Result<(), BoxError> {
        let (Some(scanner), Some(inflater)) = (self.scanner.as_mut(), self.inflater.as_mut())
        else {
            return Ok(());
        };
        let mut findings = Vec::new();
        let inflated = inflater.push(data, &mut |d| findings.extend(scanner.push(d)));
        self.apply(findings)?;
        if let Err(e) = inflated {
            self.unreadable(e)?;
        }
        if self.mode == DlpMode::Log {
            if let Some(b) = self.held.release_all() {
                self.out.push_back(Frame::data(b));
            }
        } else if self.held.held() > MAX_COMPRESSED_HELD_BYTES || !self.hold_within_budget() {
            return self.too_large();
        }
        Ok(())
    }

    fn on_data(&mut self, data: &[u8]) -> Result<(), BoxError> {
        let Some(scanner) = self.scanner.as_mut() else {
            // Scanning ended early (`log` mode): pass the rest on.
            if let Some(b) = self.held.release_all() {
                self.out.push_back(Frame::data(b));
            }
            self.out
                .push_back(Frame::data(Bytes::copy_from_slice(data)));
            return Ok(());
        };
        self.held.push(data);
        if self.inflater.is_some() {
            return self.on_compressed(data);
        }
        let findings = scanner.push(data);
        let settled = scanner.settled();
        self.apply(findings)?;
        if let Some(b) = self.held.release(settled) {
            self.out.push_back(Frame::data(b));
        }
        if self.held.held() > DLP_MAX_HELD_BYTES || !self.hold_within_budget() {
            return self.too_large();
        }
        Ok(())
    }

    fn on_end(&mut self) -> Result<(), BoxError> {
        if let Some(mut scanner) = self.scanner.take() {
            if let Some(inflater) = self.inflater.take() {
                let mut findings = Vec::new();
                let inflated = inflater.finish(&mut |d| findings.extend(scanner.push(d)));
                self.apply(findings)?;
                if let Err(e) = inflated {
                    self.unreadable(e)?;
                }
            }
            let findings = scanner.finish();
            self.apply(findings)?;
        }
        if let Some(b) = self.held.release_all() {
            self.out.push_back(Frame::data(b));
        }
        self.hold_within_budget();
        Ok(())
    }
}

/// A POST form body on a route with `methods`, read for `_method` fields
/// (`form_method.rs`) before it goes on: bytes that may still belong to
/// such a field are held back, so a refusal comes before the body's end
/// reaches the upstream. Runs whatever the DLP mode.
pub struct FormMethodBody {
    inner: Body,
    guard: FormMethod,
    /// Bytes read and not yet settled by the guard.
    held: Vec<u8>,
    /// Body offset of `held`'s first byte.
    held_at: u64,
    verdict: SharedVerdict,
    out: VecDeque<Frame<Bytes>>,
    done: bool,
}

impl FormMethodBody {
    pub fn new(inner: Body, guard: FormMethod, verdict: SharedVerdict) -> Self {
        Self {
            inner,
            guard,
            held: Vec::new(),
            held_at: 0,
            verdict,
            out: VecDeque::new(),
            done: false,
        }
    }

    fn refuse(&mut self) -> BoxError {
        if let Ok(mut v) = self.verdict.lock() {
            v.method_override = true;
        }
        self.done = true;
        self.out.clear();
        Box::new(BodyStopped)
    }

    fn on_data(&mut self, data: Bytes) -> Result<(), BoxError> {
        if self.guard.push(&data).is_err() {
            return Err(self.refuse());
        }
        let settled = self.guard.settled();
        if self.held.is_empty() && settled == self.held_at + data.len() as u64 {
            // Nothing undecided: the chunk goes on as it came.
            self.held_at = settled;
            self.out.push_back(Frame::data(data));
            return Ok(());
        }
        self.held.extend_from_slice(&data);
        debug_assert!(
            settled >= self.held_at,
            "the guard's settled point went back"
        );
        let release = usize::try_from(settled.saturating_sub(self.held_at)).unwrap_or(usize::MAX);
        if release > 0 {
            let rest = self.held.split_off(release.min(self.held.len()));
            let ready = std::mem::replace(&mut self.held, rest);
            self.held_at = settled;
            self.out.push_back(Frame::data(Bytes::from(ready)));
        }
        Ok(())
    }

    fn on_end(&mut self) -> Result<(), BoxError> {
        if self.guard.finish().is_err() {
            return Err(self.refuse());
        }
        if !self.held.is_empty() {
            let ready = std::mem::take(&mut self.held);
            self.out.push_back(Frame::data(Bytes::from(ready)));
        }
        self.done = true;
        Ok(())
    }
}

impl HttpBody for FormMethodBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        loop {
            if let Some(f) = self.out.pop_front() {
                return Poll::Ready(Some(Ok(f)));
            }
            if self.done {
                return Poll::Ready(None);
            }
            let step = match Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => self.on_data(data),
                    Err(trailers) => {
                        let ended = self.on_end();
                        if ended.is_ok() {
                            self.out.push_back(trailers);
                        }
                        ended
                    }
                },
                Poll::Ready(None) => self.on_end(),
            };
            if let Err(e) = step {
                return Poll::Ready(Some(Err(e)));
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.out.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for ScanBody {
    fn drop(&mut self) {
        self.budget.shrink(self.drawn);
    }
}

impl HttpBody for ScanBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        loop {
            if let Some(f) = self.out.pop_front() {
                return Poll::Ready(Some(Ok(f)));
            }
            if self.done {
                return Poll::Ready(None);
            }
            match Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        if let Err(e) = self.on_data(&data) {
                            self.done = true;
                            self.out.clear();
                            return Poll::Ready(Some(Err(e)));
                        }
                    }
                    Err(_trailers) => {
                        // Trailers end the body: settle everything first.
                        // They are not forwarded: fields after the body
                        // would be a channel past the header scan, and an
                        // intermediary may drop them (RFC 9110, 6.5.1).
                        if let Err(e) = self.on_end() {
                            self.done = true;
                            self.out.clear();
                            return Poll::Ready(Some(Err(e)));
                        }
                        self.done = true;
                    }
                },
                Poll::Ready(None) => {
                    self.done = true;
                    if let Err(e) = self.on_end() {
                        self.out.clear();
                        return Poll::Ready(Some(Err(e)));
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.out.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        // Redaction may change the length; never promise one.
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::{BodyExt, Full};

    use super::*;

    /// A scanner that never settles, so every byte of a plain body stays
    /// held. The engine's own scanner settles all but its last ~9 KiB;
    /// this is the case the shared budget is there for if one ever does not.
    struct NeverSettles;

    impl StreamScan for NeverSettles {
        fn push(&mut self, _: &[u8]) -> Vec<Finding> {
            Vec::new()
        }
        fn finish(self: Box<Self>) -> Vec<Finding> {
            Vec::new()
        }
        fn settled(&self) -> u64 {
            0
        }
    }

    fn scan_body(len: usize, budget: &HeldBudget, verdict: &SharedVerdict) -> ScanBody {
        let inner = Full::new(Bytes::from(vec![b'a'; len]))
            .map_err(|never| match never {})
            .boxed();
        ScanBody::new(
            inner,
            Box::new(NeverSettles),
            DlpMode::Block,
            verdict.clone(),
            budget.clone(),
        )
    }

    /// A few KiB of gzip that inflate to a megabyte of `%41`, a region of
    /// dense escapes the engine's scanner holds whole: the wire bytes held
    /// are few, the scanner's buffer is not, and it is charged.
    #[tokio::test]
    async fn the_scanners_own_buffer_draws_on_the_shared_budget() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all("%41".repeat(330_000).as_bytes()).unwrap();
        let compressed = gz.finish().unwrap();
        assert!(compressed.len() < 16 * 1024, "{}", compressed.len());
        // The body never ends: the scanner keeps what it holds.
        let inner = OneThenPending(Some(Bytes::from(compressed))).boxed();
        let budget = HeldBudget::new(512 * 1024);
        let verdict = SharedVerdict::default();
        let engine = crate::dlp::BottleDlp::new(std::iter::empty()).unwrap();
        let mut body = ScanBody::new(
            inner,
            crate::dlp::Engine::stream(&engine),
            DlpMode::Block,
            verdict.clone(),
            budget.clone(),
        )
        .inflating(Some(crate::inflate::Inflater::new(&[
            crate::inflate::Coding::Gzip,
        ])));
        let polled = tokio::time::timeout(std::time::Duration::from_secs(5), body.frame()).await;
        // Refused as too large once the scanner's megabyte is counted.
        assert!(matches!(polled, Ok(Some(Err(_)))), "{polled:?}");
        assert!(verdict.lock().unwrap().too_large);
    }

    /// A body of one frame that then never ends.
    struct OneThenPending(Option<Bytes>);

    impl HttpBody for OneThenPending {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            match self.0.take() {
                Some(b) => Poll::Ready(Some(Ok(Frame::data(b)))),
                None => Poll::Pending,
            }
        }
    }

    #[tokio::test]
    async fn a_plain_body_held_back_draws_on_the_shared_budget() {
        let budget = HeldBudget::new(16 * 1024);

        // Past the free allowance and the budget: refused as too large,
        // well before the per-body bound (1 MiB) would refuse it.
        let verdict = SharedVerdict::default();
        let body = scan_body(HELD_BYTES_FREE + 32 * 1024, &budget, &verdict);
        assert!(body.collect().await.is_err());
        assert!(verdict.lock().unwrap().too_large);
        assert_eq!(budget.used(), 0, "a dropped body gives its share back");

        // Within them: forwarded whole, and the share is back at the end.
        let verdict = SharedVerdict::default();
        let len = HELD_BYTES_FREE + 8 * 1024;
        let body = scan_body(len, &budget, &verdict);
        let out = body.collect().await.unwrap().to_bytes();
        assert_eq!(out.len(), len);
        assert!(!verdict.lock().unwrap().too_large);
        assert_eq!(budget.used(), 0);
    }
}
