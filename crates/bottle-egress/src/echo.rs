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
    /// The forms without a NUL first, then the UTF-16 and UTF-32 ones.
    needles: Vec<Zeroizing<Vec<u8>>>,
    /// How many forms hold no NUL: the ones a header value can hold.
    narrow: usize,
    longest: usize,
    /// Bytes a value may hold: the end of a chunk made of these waits for
    /// the next one. A fixed set (plus any other byte of a value), so what
    /// waits says nothing about the value itself.
    alphabet: [bool; 256],
}

/// Bytes of the forms of common credentials: letters, digits and what
/// base64, URLs and escapes add. NUL for the UTF-16 and UTF-32 forms.
const ALPHABET: &[u8] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=_-.~:%\\\0";

/// The forms of `v` a server could send back: as is; with `/` escaped as
/// JSON writers such as PHP's do; every byte outside the URL-safe set as a
/// JSON `\u00XX` or a `%XX` escape (either case); without base64 padding;
/// and as UTF-16 and UTF-32 text (either byte order), which a server
/// honouring `Accept-Charset` would send.
fn forms(v: &[u8]) -> Vec<Zeroizing<Vec<u8>>> {
    let plain = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-');
    let escaped = |f: &dyn Fn(u8, &mut Vec<u8>)| {
        let mut out = Zeroizing::new(Vec::with_capacity(v.len() * 3));
        for &b in v {
            f(b, &mut out);
        }
        out
    };
    let mut out = vec![Zeroizing::new(v.to_vec())];
    if v.contains(&b'/') {
        out.push(escaped(&|b, o| {
            if b == b'/' {
                o.push(b'\\');
            }
            o.push(b);
        }));
    }
    if !v.iter().all(|&b| plain(b)) {
        for upper in [true, false] {
            let hex = |b: u8| {
                let s = if upper {
                    format!("{b:02X}")
                } else {
                    format!("{b:02x}")
                };
                s.into_bytes()
            };
            // JSON's `\u00XX`, then URL encoding's `%XX`.
            for prefix in [b"\\u00".as_slice(), b"%"] {
                out.push(escaped(&|b, o| {
                    if plain(b) {
                        o.push(b);
                    } else {
                        o.extend_from_slice(prefix);
                        o.extend_from_slice(&hex(b));
                    }
                }));
            }
        }
    }
    let unpadded = v.iter().rposition(|&b| b != b'=').map_or(0, |i| i + 1);
    if unpadded < v.len() {
        out.push(Zeroizing::new(v[..unpadded].to_vec()));
    }
    for width in [2usize, 4] {
        for big_endian in [false, true] {
            out.push(escaped(&|b, o| {
                let mut unit = vec![0u8; width];
                let at = if big_endian { width - 1 } else { 0 };
                unit[at] = b;
                o.extend_from_slice(&unit);
            }));
        }
    }
    out
}

impl EchoMask {
    /// A mask for `values` in all their [`forms`], skipping those shorter
    /// than [`MIN_MASKED_LEN`]; `None` when nothing is left to mask.
    pub fn new<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Option<EchoMask> {
        let mut needles: Vec<Zeroizing<Vec<u8>>> = Vec::new();
        for v in values {
            if v.len() < MIN_MASKED_LEN {
                continue;
            }
            for f in forms(v) {
                if f.len() >= MIN_MASKED_LEN && !needles.iter().any(|n| **n == *f) {
                    needles.push(f);
                }
            }
        }
        needles.sort_by_key(|n| n.contains(&0));
        let narrow = needles.iter().take_while(|n| !n.contains(&0)).count();
        let longest = needles.iter().map(|n| n.len()).max()?;
        let mut alphabet = [false; 256];
        for &b in ALPHABET.iter().chain(needles.iter().flat_map(|n| n.iter())) {
            alphabet[usize::from(b)] = true;
        }
        Some(EchoMask {
            needles,
            narrow,
            longest,
            alphabet,
        })
    }

    /// Overwrites every occurrence in `buf`; true when there was one.
    pub fn mask_in_place(&self, buf: &mut [u8]) -> bool {
        let mut hit = false;
        for n in self.fitting(buf.len()) {
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

    /// The forms no longer than `len`. Setting up a search costs more than
    /// most short responses take to search, and a form longer than the
    /// text cannot be in it.
    fn fitting(&self, len: usize) -> impl Iterator<Item = &Zeroizing<Vec<u8>>> {
        self.needles.iter().filter(move |n| n.len() <= len)
    }

    /// Whether `buf` holds an occurrence.
    fn found_in(&self, buf: &[u8]) -> bool {
        self.fitting(buf.len())
            .any(|n| memchr::memmem::find(buf, n).is_some())
    }

    /// How many bytes at the end of `buf` must wait for the next chunk:
    /// the run of bytes a value may hold, up to one less than the longest
    /// value, so that no value is ever released in part. It depends on the
    /// bytes, never on whether they start a value: a wait that did would
    /// tell an agent reflecting its guesses which of them start the secret.
    pub fn unsettled_tail(&self, buf: &[u8]) -> usize {
        buf.iter()
            .rev()
            .take(self.longest - 1)
            .take_while(|&&b| self.alphabet[usize::from(b)])
            .count()
    }

    /// Masks every header value holding an occurrence. A field value holds
    /// no NUL, so the UTF-16 and UTF-32 forms are not looked for there.
    pub fn mask_headers(&self, headers: &mut HeaderMap) {
        for v in headers.values_mut() {
            let found = self.needles[..self.narrow]
                .iter()
                .filter(|n| n.len() <= v.len())
                .any(|n| memchr::memmem::find(v.as_bytes(), n).is_some());
            if !found {
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

    /// A body that yields the given frames one by one, as an upstream
    /// writing them one after the other would.
    struct Chunks(std::collections::VecDeque<Frame<Bytes>>);

    impl HttpBody for Chunks {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            Poll::Ready(self.0.pop_front().map(Ok))
        }
    }

    async fn through(chunks: &[&[u8]]) -> Vec<u8> {
        let inner = Chunks(
            chunks
                .iter()
                .map(|c| Frame::data(Bytes::copy_from_slice(c)))
                .collect(),
        )
        .boxed();
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

    /// Trailers come after the body and could quote the credential: a
    /// masked body ends without them.
    #[tokio::test]
    async fn trailers_are_dropped() {
        let mut trailers = HeaderMap::new();
        trailers.insert(
            "x-debug",
            HeaderValue::from_bytes(&[b"token ".as_slice(), TOKEN].concat()).unwrap(),
        );
        let inner = Chunks(
            [
                Frame::data(Bytes::from_static(b"body")),
                Frame::trailers(trailers),
            ]
            .into(),
        )
        .boxed();
        let out = MaskedBody::new(inner, Arc::new(mask()))
            .collect()
            .await
            .unwrap();
        assert!(out.trailers().is_none());
        assert_eq!(out.to_bytes(), Bytes::from_static(b"body"));
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
    fn what_waits_depends_on_the_bytes_not_on_the_secret() {
        let m = mask();
        assert_eq!(m.unsettled_tail(b"data: {}\n\n"), 0);
        assert_eq!(m.unsettled_tail(b"x: ghp_Echo"), 8);
        // A guess that is no start of the secret waits as long as one that is.
        assert_eq!(m.unsettled_tail(b"x: ghp_Xcho"), 8);
        assert_eq!(m.unsettled_tail(&TOKEN[..TOKEN.len() - 1]), TOKEN.len() - 1);
        // Never more than one less than the longest form.
        let long = vec![b'a'; 4096];
        assert!(m.unsettled_tail(&long) < m.longest);
        assert_eq!(m.unsettled_tail(b""), 0);
    }

    #[test]
    fn re_encoded_forms_are_masked() {
        let m = EchoMask::new([b"dXNlcjpwYXNz+w==".as_slice()]).unwrap();
        let utf16: Vec<u8> = b"dXNlcjpwYXNz+w==".iter().flat_map(|&b| [b, 0]).collect();
        for sent in [
            br#"{"a":"dXNlcjpwYXNz\u002Bw\u003D\u003D"}"#.to_vec(),
            b"next=dXNlcjpwYXNz%2bw%3d%3d".to_vec(),
            b"token dXNlcjpwYXNz+w end".to_vec(),
            utf16,
        ] {
            let mut text = sent.clone();
            assert!(
                m.mask_in_place(&mut text),
                "{:?}",
                String::from_utf8_lossy(&sent)
            );
            // Nothing of any form is left: no eight bytes of one.
            for f in forms(b"dXNlcjpwYXNz+w==") {
                assert!(
                    !f.windows(8).any(|w| text.windows(8).any(|t| t == w)),
                    "{:?}",
                    String::from_utf8_lossy(&text)
                );
            }
        }
    }
}
