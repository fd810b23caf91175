//! Request bodies sent with a `Content-Encoding`: inflated for DLP, forwarded
//! as sent.
//!
//! A secret gzipped into a body is invisible to a scanner that reads the
//! bytes on the wire, and every HTTP server that honours the header sees it
//! in clear. So `gzip` (`x-gzip`) and `deflate` (the zlib format, RFC 9110)
//! are inflated, up to three layers, and the inflated bytes are what the
//! scanner reads; any other coding cannot be read and is refused by the
//! caller. Inflation is bounded: a small body that inflates past
//! [`MAX_INFLATED_BYTES`] is refused as too large, so a compression bomb costs
//! the proxy bounded time and memory whatever the layers multiply to.

use std::io::{self, Write};

use flate2::write::{MultiGzDecoder, ZlibDecoder};
use http::HeaderMap;
use http::header::CONTENT_ENCODING;

use crate::limits::MAX_INFLATED_BYTES;

/// Most layers of coding read (`Content-Encoding: gzip, gzip, gzip`).
const MAX_LAYERS: usize = 3;
/// Bytes of wire data inflated at a time.
const STEP: usize = 4096;
/// Most inflated bytes held between two hand-offs to the scanner. The sink
/// refuses more (`WouldBlock`) until it is drained, and the decoders keep
/// the rest in their own bounded buffers (32 KiB each), so a layered bomb's
/// output never piles up: one step of 4 KiB through two layers could
/// otherwise inflate to the whole bound before anything was scanned.
const SINK_ROOM: usize = 256 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    Gzip,
    Deflate,
}

/// What the request's `Content-Encoding` says about its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Codings {
    /// No header, or only `identity`: the bytes are the content.
    Identity,
    /// Codings in the order they were applied.
    Inflate(Vec<Coding>),
    /// A coding the proxy cannot decode, or too many layers.
    Unscannable,
}

pub fn codings(headers: &HeaderMap) -> Codings {
    let mut out = Vec::new();
    for value in headers.get_all(CONTENT_ENCODING) {
        let Ok(value) = value.to_str() else {
            return Codings::Unscannable;
        };
        for token in value.split(',').map(str::trim) {
            if token.is_empty() || token.eq_ignore_ascii_case("identity") {
                continue;
            }
            let coding =
                if token.eq_ignore_ascii_case("gzip") || token.eq_ignore_ascii_case("x-gzip") {
                    Coding::Gzip
                } else if token.eq_ignore_ascii_case("deflate") {
                    Coding::Deflate
                } else {
                    return Codings::Unscannable;
                };
            if out.len() == MAX_LAYERS {
                return Codings::Unscannable;
            }
            out.push(coding);
        }
    }
    if out.is_empty() {
        Codings::Identity
    } else {
        Codings::Inflate(out)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InflateError {
    #[error("the body is not valid data for its Content-Encoding")]
    Invalid,
    #[error("the body inflates past the proxy's bound")]
    TooLarge,
}

/// Where the innermost decoder writes: counts, refuses past the bound, and
/// pauses the chain when [`SINK_ROOM`] is held.
struct Sink {
    buf: Vec<u8>,
    total: u64,
}

impl Sink {
    fn over(&self) -> bool {
        self.total > MAX_INFLATED_BYTES
    }

    fn full(&self) -> bool {
        self.buf.len() >= SINK_ROOM
    }
}

impl Write for Sink {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.full() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = data.len().min(SINK_ROOM - self.buf.len());
        self.total = self.total.saturating_add(n as u64);
        if self.over() {
            return Err(io::Error::other("inflated body too large"));
        }
        self.buf.extend_from_slice(&data[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A chain of decoders ending in the [`Sink`].
trait Layer: Write + Send + Sync {
    fn sink(&mut self) -> &mut Sink;
    fn finish_layer(&mut self) -> io::Result<()>;
}

impl Layer for Sink {
    fn sink(&mut self) -> &mut Sink {
        self
    }
    fn finish_layer(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Layer for Box<dyn Layer> {
    fn sink(&mut self) -> &mut Sink {
        (**self).sink()
    }
    fn finish_layer(&mut self) -> io::Result<()> {
        (**self).finish_layer()
    }
}

/// A gzip layer whose members may not carry a name, a comment or an extra
/// field in their header. Those bytes are forwarded with the body but are
/// no part of the content the scanner reads, so a secret written there
/// would cross the wire in clear; HTTP clients that compress a body set
/// none of them.
struct Gzip<W: Write>(MultiGzDecoder<W>);

impl<W: Write> Write for Gzip<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = self.0.write(data)?;
        // Checked after every write: a member's header is complete by the
        // time the write that finished it returns, and stays readable
        // until the next member starts, in a later write.
        let carries = |h: &flate2::GzHeader| {
            h.filename().is_some() || h.comment().is_some() || h.extra().is_some()
        };
        if self.0.header().is_some_and(carries) {
            return Err(io::Error::other("a gzip header field outside the content"));
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl<W: Layer> Layer for Gzip<W> {
    fn sink(&mut self) -> &mut Sink {
        self.0.get_mut().sink()
    }
    fn finish_layer(&mut self) -> io::Result<()> {
        self.0.try_finish()?;
        self.0.get_mut().finish_layer()
    }
}

impl<W: Layer> Layer for ZlibDecoder<W> {
    fn sink(&mut self) -> &mut Sink {
        self.get_mut().sink()
    }
    fn finish_layer(&mut self) -> io::Result<()> {
        self.try_finish()?;
        self.get_mut().finish_layer()
    }
}

/// Inflates one body as its chunks arrive.
pub struct Inflater {
    chain: Box<dyn Layer>,
}

impl Inflater {
    /// `codings` in the order they were applied (the header's order).
    pub fn new(codings: &[Coding]) -> Self {
        let mut chain: Box<dyn Layer> = Box::new(Sink {
            buf: Vec::new(),
            total: 0,
        });
        // The first coding applied is the last undone: it writes into the sink.
        for coding in codings {
            chain = match coding {
                Coding::Gzip => Box::new(Gzip(MultiGzDecoder::new(chain))),
                Coding::Deflate => Box::new(ZlibDecoder::new(chain)),
            };
        }
        Self { chain }
    }

    /// Inflates `wire`, handing each piece of content (at most
    /// [`SINK_ROOM`] bytes) to `out`.
    pub fn push(&mut self, wire: &[u8], out: &mut dyn FnMut(&[u8])) -> Result<(), InflateError> {
        for step in wire.chunks(STEP) {
            let mut rest = step;
            while !rest.is_empty() {
                match self.chain.write(rest) {
                    // Data after the end of a zlib stream.
                    Ok(0) => return Err(InflateError::Invalid),
                    Ok(n) => rest = rest.get(n..).unwrap_or_default(),
                    Err(_) => self.paused(out)?,
                }
            }
            while self.chain.flush().is_err() {
                self.paused(out)?;
            }
            self.hand_off(out);
        }
        Ok(())
    }

    /// The end of the body: what the decoders still hold. A body that ends
    /// inside a stream is invalid.
    pub fn finish(mut self, out: &mut dyn FnMut(&[u8])) -> Result<(), InflateError> {
        while self.chain.finish_layer().is_err() {
            self.paused(out)?;
        }
        self.hand_off(out);
        Ok(())
    }

    /// After an error from the chain: a full sink is a pause (its bytes go
    /// to `out`, and the same call is made again: a decoder that failed to
    /// pass its output on consumed no input); anything else ends inflation.
    fn paused(&mut self, out: &mut dyn FnMut(&[u8])) -> Result<(), InflateError> {
        let sink = self.chain.sink();
        if sink.over() {
            return Err(InflateError::TooLarge);
        }
        if !sink.full() {
            return Err(InflateError::Invalid);
        }
        self.hand_off(out);
        Ok(())
    }

    fn hand_off(&mut self, out: &mut dyn FnMut(&[u8])) {
        let sink = self.chain.sink();
        if !sink.buf.is_empty() {
            out(&sink.buf);
            sink.buf.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::{GzEncoder, ZlibEncoder};

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn zlib(data: &[u8]) -> Vec<u8> {
        let mut e = ZlibEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn inflate(codings: &[Coding], wire: &[u8], chunk: usize) -> Result<Vec<u8>, InflateError> {
        let mut inf = Inflater::new(codings);
        let mut got = Vec::new();
        for c in wire.chunks(chunk) {
            inf.push(c, &mut |d| got.extend_from_slice(d))?;
        }
        inf.finish(&mut |d| got.extend_from_slice(d))?;
        Ok(got)
    }

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(CONTENT_ENCODING, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn codings_are_read_from_every_header_line() {
        assert_eq!(codings(&HeaderMap::new()), Codings::Identity);
        assert_eq!(codings(&headers(&["identity"])), Codings::Identity);
        assert_eq!(
            codings(&headers(&["GZIP, deflate", "x-gzip"])),
            Codings::Inflate(vec![Coding::Gzip, Coding::Deflate, Coding::Gzip])
        );
        assert_eq!(codings(&headers(&["br"])), Codings::Unscannable);
        assert_eq!(codings(&headers(&["gzip", "zstd"])), Codings::Unscannable);
        assert_eq!(
            codings(&headers(&["gzip,gzip,gzip,gzip"])),
            Codings::Unscannable
        );
    }

    #[test]
    fn layers_are_undone_in_reverse_order_across_any_chunking() {
        let content = b"token=sk-live-0123456789abcdef and more text ".repeat(50);
        // Header `deflate, gzip`: zlib applied first, then gzip.
        let wire = gzip(&zlib(&content));
        for chunk in [1, 7, 4096, wire.len()] {
            let got = inflate(&[Coding::Deflate, Coding::Gzip], &wire, chunk).unwrap();
            assert_eq!(got, content, "chunk size {chunk}");
        }
    }

    #[test]
    fn concatenated_gzip_members_are_all_read() {
        let mut wire = gzip(b"first ");
        wire.extend(gzip(b"second"));
        assert_eq!(inflate(&[Coding::Gzip], &wire, 5).unwrap(), b"first second");
    }

    #[test]
    fn garbage_and_truncated_streams_are_invalid() {
        assert_eq!(
            inflate(&[Coding::Gzip], b"not gzip at all", 4),
            Err(InflateError::Invalid)
        );
        let wire = gzip(&b"x".repeat(10_000));
        assert_eq!(
            inflate(&[Coding::Gzip], &wire[..wire.len() / 2], 3),
            Err(InflateError::Invalid)
        );
        // Raw deflate is not the zlib format HTTP means by `deflate`.
        let mut raw = flate2::write::DeflateEncoder::new(Vec::new(), Compression::default());
        raw.write_all(b"hello").unwrap();
        assert_eq!(
            inflate(&[Coding::Deflate], &raw.finish().unwrap(), 64),
            Err(InflateError::Invalid)
        );
    }

    /// A name, comment or extra field in any member's header, in any
    /// layer, is refused: the content is clean, the header is not.
    #[test]
    fn gzip_header_fields_are_refused_in_every_member_and_layer() {
        let with = |b: flate2::GzBuilder| {
            let mut e = b.write(Vec::new(), Compression::default());
            e.write_all(b"clean content").unwrap();
            e.finish().unwrap()
        };
        let secret = "sk-live-0123456789abcdef";
        let named = with(flate2::GzBuilder::new().filename(secret));
        let commented = with(flate2::GzBuilder::new().comment(secret));
        let extra = with(flate2::GzBuilder::new().extra(secret));
        let mut second = gzip(b"first ");
        second.extend(&named);
        let mut tiny_then_named = gzip(b"");
        tiny_then_named.extend(&commented);
        for (what, codings, wire) in [
            ("name", vec![Coding::Gzip], named.clone()),
            ("comment", vec![Coding::Gzip], commented.clone()),
            ("extra", vec![Coding::Gzip], extra),
            ("second member", vec![Coding::Gzip], second),
            (
                "after an empty member",
                vec![Coding::Gzip],
                tiny_then_named.clone(),
            ),
            (
                "inner layer",
                vec![Coding::Gzip, Coding::Gzip],
                gzip(&named),
            ),
            (
                "inner layer, second member",
                vec![Coding::Gzip, Coding::Gzip],
                gzip(&tiny_then_named),
            ),
        ] {
            for chunk in [1, 4096] {
                assert_eq!(
                    inflate(&codings, &wire, chunk),
                    Err(InflateError::Invalid),
                    "{what}, chunks of {chunk}"
                );
            }
        }
        // The default header (what HTTP clients write) is fine.
        assert_eq!(
            inflate(&[Coding::Gzip], &with(flate2::GzBuilder::new()), 4096).unwrap(),
            b"clean content"
        );
    }

    #[test]
    fn a_layered_bomb_stops_at_the_bound() {
        // Gzip members of 1 MiB of zeros, concatenated to 4x the bound, then
        // gzipped again: a few KiB on the wire.
        let member = gzip(&vec![0u8; 1 << 20]);
        let inner = member.repeat(((4 * MAX_INFLATED_BYTES) >> 20) as usize);
        let wire = gzip(&inner);
        assert!(wire.len() < 64 * 1024, "{} bytes", wire.len());
        let mut inf = Inflater::new(&[Coding::Gzip, Coding::Gzip]);
        let (mut seen, mut largest) = (0u64, 0usize);
        let mut result = Ok(());
        for c in wire.chunks(1024) {
            result = inf.push(c, &mut |d| {
                seen += d.len() as u64;
                largest = largest.max(d.len());
            });
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(InflateError::TooLarge));
        assert!(seen <= MAX_INFLATED_BYTES, "{seen}");
        // Handed on in pieces, never held whole.
        assert!(largest <= SINK_ROOM, "{largest}");
        assert!(seen > 32 * SINK_ROOM as u64, "{seen}");
    }
}
