//! A response never carries an injected credential back to the agent.
//!
//! The proxy puts the real token on requests the agent never sees, but an
//! upstream may send it back: an echo or debug endpoint, an error message
//! quoting the header, a redirect that copies it into `Location`. On every
//! response to a request that carried an injected credential, each
//! occurrence of the credential (the value the proxy set and the secret
//! inside it) is overwritten with `*` of the same length, in the header
//! values and as the body streams. Same length: `Content-Length` and the
//! framing stay right, and nothing has to be held but the few bytes at the
//! end of a chunk that could start an occurrence (server-sent events end
//! each event with a newline, which starts none, so they are not delayed).
//!
//! Only the plain bytes are searched: the request asks for an uncompressed
//! response (`Accept-Encoding: identity`) and a compressed one is refused
//! by the caller (`compressed`), since an echo inside it could not be seen.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, header};
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use zeroize::Zeroizing;

use crate::upstream::{Body, BoxError};

/// Shorter values are not masked: they would match ordinary text.
pub const MIN_MASKED_LEN: usize = 8;

/// The rule of the refusal of a compressed response to a request that
/// carried a credential.
pub const COMPRESSED_RULE: &str = "compressed-response";

/// The rule of the refusal of a partial response (206) to a request that
/// carried a credential: its `Range` was removed.
pub const PARTIAL_RULE: &str = "partial-response";

/// The byte an occurrence is overwritten with (valid in a header value).
const MASK: u8 = b'*';

/// The values a response to one request must not carry.
pub struct EchoMask {
    needles: Vec<Zeroizing<Vec<u8>>>,
    longest: usize,
}

impl EchoMask {
    /// A mask for `values`, skipping those shorter than [`MIN_MASKED_LEN`];
    /// `None` when nothing is left to mask.
    pub fn new<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Option<EchoMask> {
        let mut needles: Vec<Zeroizing<Vec<u8>>> = Vec::new();
        let mut add = |v: &[u8]| {
            if v.len() >= MIN_MASKED_LEN && !needles.iter().any(|n| n.as_slice() == v) {
                needles.push(Zeroizing::new(v.to_vec()));
            }
        };
        for v in values {
            add(v);
            if v.contains(&b'/') {
                // As JSON writers that escape `/` (PHP's) send it back.
                let mut escaped = Zeroizing::new(Vec::with_capacity(v.len() + 8));
                for &b in v {
                    if b == b'/' {
                        escaped.push(b'\\');
                    }
                    escaped.push(b);
                }
                add(&escaped);
            }
        }
        let longest = needles.iter().map(|n| n.len()).max()?;
        Some(EchoMask { needles, longest })
    }

    /// Overwrites every occurrence in `buf`; true when there was one.
    pub fn mask_in_place(&self, buf: &mut [u8]) -> bool {
        let mut hit = false;
        for n in &self.needles {
            let mut from = 0;
            while let Some(at) = memchr::memmem::find(&buf[from..], n) {
                let start = from + at;
                buf[start..start + n.len()].fill(MASK);
                hit = true;
                from = start + 1;
            }
        }
        hit
    }

    /// Whether `buf` holds an occurrence.
    fn found_in(&self, buf: &[u8]) -> bool {
        self.needles
            .iter()
            .any(|n| memchr::memmem::find(buf, n).is_some())
    }

    /// The length of the longest end of `buf` that is the start of a value
    /// (and not a whole one): bytes that must wait for the next chunk.
    pub fn unsettled_tail(&self, buf: &[u8]) -> usize {
        let window = buf.len().min(self.longest - 1);
        let tail = &buf[buf.len() - window..];
        for (i, &b) in tail.iter().enumerate() {
            let rest = &tail[i..];
            if self
                .needles
                .iter()
                .any(|n| n[0] == b && rest.len() < n.len() && n.starts_with(rest))
            {
                return rest.len();
            }
        }
        0
    }

    /// Masks every header value holding an occurrence.
    pub fn mask_headers(&self, headers: &mut HeaderMap) {
        for v in headers.values_mut() {
            if !self.found_in(v.as_bytes()) {
                continue;
            }
            let mut bytes = v.as_bytes().to_vec();
            self.mask_in_place(&mut bytes);
            // `*` keeps a valid value valid; the fallback cannot be taken.
            *v = HeaderValue::from_bytes(&bytes).unwrap_or_else(|_| HeaderValue::from_static("*"));
        }
    }
}

/// Whether a response's coding would hide an echo from the mask: a
/// content coding, or a transfer coding other than `chunked` (hyper
/// removes `chunked` and passes any other coding's bytes on as they are).
pub fn compressed(headers: &HeaderMap) -> bool {
    let coded = |name: header::HeaderName, plain: &[&[u8]]| {
        headers.get_all(name).iter().any(|v| {
            v.as_bytes()
                .split(|&b| b == b',')
                .map(<[u8]>::trim_ascii)
                .any(|c| !c.is_empty() && !plain.iter().any(|p| c.eq_ignore_ascii_case(p)))
        })
    };
    coded(header::CONTENT_ENCODING, &[b"identity"])
        || coded(header::TRANSFER_ENCODING, &[b"identity", b"chunked"])
}

/// A response body with every occurrence of the mask's values overwritten.
/// Trailers are dropped: fields after the body would need masking too, and
/// an intermediary may discard them (RFC 9110, 6.5.1).
pub struct MaskedBody {
    inner: Body,
    mask: Arc<EchoMask>,
    /// The end of the last chunk that could start an occurrence.
    carry: BytesMut,
    done: bool,
}

impl MaskedBody {
    pub fn new(inner: Body, mask: Arc<EchoMask>) -> MaskedBody {
        MaskedBody {
            inner,
            mask,
            carry: BytesMut::new(),
            done: false,
        }
    }

    /// The part of `data` (after what was carried) that can go now.
    fn on_data(&mut self, data: Bytes) -> Option<Bytes> {
        if self.carry.is_empty()
            && !self.mask.found_in(&data)
            && self.mask.unsettled_tail(&data) == 0
        {
            // The common case: nothing to change or hold, no copy.
            return Some(data);
        }
        self.carry.extend_from_slice(&data);
        self.mask.mask_in_place(&mut self.carry);
        let keep = self.mask.unsettled_tail(&self.carry);
        let ready = self.carry.split_to(self.carry.len() - keep);
        (!ready.is_empty()).then(|| ready.freeze())
    }
}

impl HttpBody for MaskedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        loop {
            if self.done {
                return Poll::Ready(None);
            }
            match Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data()
                        && let Some(ready) = self.on_data(data)
                    {
                        return Poll::Ready(Some(Ok(Frame::data(ready))));
                    }
                }
                Poll::Ready(None) => {
                    self.done = true;
                    // Shorter than any value: nothing in it to mask.
                    let rest = std::mem::take(&mut self.carry);
                    if !rest.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(rest.freeze()))));
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || (self.carry.is_empty() && self.inner.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        // Masking keeps the length.
        let mut hint = self.inner.size_hint();
        let carried = self.carry.len() as u64;
        hint.set_lower(hint.lower().saturating_add(carried));
        if let Some(upper) = hint.upper() {
            hint.set_upper(upper.saturating_add(carried));
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    const TOKEN: &[u8] = b"ghp_EchoEchoEchoEchoEchoEchoEchoEcho1234";

    fn mask() -> EchoMask {
        EchoMask::new([TOKEN, b"short".as_slice()]).unwrap()
    }

    /// A body that yields the given chunks one frame each, as an upstream
    /// writing them one after the other would.
    struct Chunks(std::collections::VecDeque<Bytes>);

    impl HttpBody for Chunks {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
        }
    }

    async fn through(chunks: &[&[u8]]) -> Vec<u8> {
        let inner = Chunks(chunks.iter().map(|c| Bytes::copy_from_slice(c)).collect()).boxed();
        MaskedBody::new(inner, Arc::new(mask()))
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec()
    }

    #[tokio::test]
    async fn a_value_split_across_chunks_never_goes_out_in_part() {
        let body = [b"echo: ".as_slice(), TOKEN, b" end"].concat();
        for cut in 0..body.len() {
            for cut2 in cut..body.len() {
                let out = through(&[&body[..cut], &body[cut..cut2], &body[cut2..]]).await;
                assert_eq!(out.len(), body.len());
                assert_eq!(
                    out,
                    [b"echo: ".as_slice(), &b"*".repeat(TOKEN.len()), b" end"].concat(),
                    "cut at {cut} and {cut2}"
                );
            }
        }
    }

    #[tokio::test]
    async fn a_clean_body_passes_unchanged_and_a_held_start_is_released() {
        let out = through(&[b"data: {}\n\n", b"ghp_Ec", b"ho and more"]).await;
        assert_eq!(out, b"data: {}\n\nghp_Echo and more");
        // A start of the value at the very end is released when the body ends.
        let out = through(&[b"tail ghp_Ech"]).await;
        assert_eq!(out, b"tail ghp_Ech");
    }

    #[test]
    fn values_too_short_are_not_masked() {
        assert!(EchoMask::new([b"short".as_slice()]).is_none());
        let mut text = b"a short word".to_vec();
        mask().mask_in_place(&mut text);
        assert_eq!(text, b"a short word");
    }

    #[test]
    fn an_occurrence_is_overwritten_with_the_same_length() {
        let mut text = [b"{\"auth\":\"Bearer ".as_slice(), TOKEN, b"\"}"].concat();
        let len = text.len();
        assert!(mask().mask_in_place(&mut text));
        assert_eq!(text.len(), len);
        assert!(!text.windows(TOKEN.len()).any(|w| w == TOKEN));
        assert!(text.ends_with(&[b"*".repeat(TOKEN.len()).as_slice(), b"\"}"].concat()));
    }

    #[test]
    fn a_value_with_a_slash_is_masked_as_json_escapes_it_too() {
        let m = EchoMask::new([b"ab/cd+ef/gh==".as_slice()]).unwrap();
        let mut text = br#"{"a":"ab\/cd+ef\/gh==","b":"ab/cd+ef/gh=="}"#.to_vec();
        assert!(m.mask_in_place(&mut text));
        assert_eq!(text, br#"{"a":"***************","b":"*************"}"#);
    }

    #[test]
    fn codings_that_hide_the_body_are_seen() {
        let with = |pairs: &[(&str, &str)]| {
            let mut h = HeaderMap::new();
            for (n, v) in pairs {
                h.append(
                    header::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                    HeaderValue::from_str(v).unwrap(),
                );
            }
            compressed(&h)
        };
        assert!(!with(&[]));
        assert!(!with(&[("content-encoding", "identity")]));
        assert!(!with(&[("transfer-encoding", "chunked")]));
        assert!(with(&[("content-encoding", "gzip")]));
        assert!(with(&[("content-encoding", "identity, br")]));
        assert!(with(&[("transfer-encoding", "gzip, chunked")]));
    }

    #[test]
    fn only_an_end_that_starts_a_value_waits() {
        let m = mask();
        assert_eq!(m.unsettled_tail(b"data: {}\n\n"), 0);
        assert_eq!(m.unsettled_tail(b"x: ghp_Echo"), 8);
        assert_eq!(m.unsettled_tail(&TOKEN[..TOKEN.len() - 1]), TOKEN.len() - 1);
        assert_eq!(m.unsettled_tail(b"g"), 1);
        assert_eq!(m.unsettled_tail(b""), 0);
    }
}
