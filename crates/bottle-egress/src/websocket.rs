//! WebSocket frames from the agent, scanned before they reach the upstream.
//!
//! After a WebSocket handshake the connection carries frames (RFC 6455),
//! not HTTP: a channel to an allowed host that the request scan never
//! sees. With DLP on, the proxy reads the agent's side as frames: each
//! frame is unmasked, every data message (text or binary, across its
//! continuation frames) goes through one streaming scanner, and each
//! control frame (close reason, ping data) is scanned whole. What is found
//! clean is sent on re-framed, as fragments of the same message, masked
//! with a fresh key (RFC 6455 lets an intermediary refragment a message
//! when no extension is in use). A finding in block mode ends both
//! connections before the frame that holds it is sent; redact mode
//! replaces it in a data message (a control frame cannot grow, so there it
//! blocks). The upstream's side is relayed as it comes: responses are not
//! scanned anywhere in the proxy.
//!
//! Extensions are not negotiated: the handshake goes upstream without
//! `Sec-WebSocket-Extensions` (so no `permessage-deflate` hides a message
//! from the scan), an upstream that answers with one anyway is refused,
//! and a frame with a reserved bit set ends the connection.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::config::DlpMode;
use crate::dlp::{Dlp, Finding, HeldBytes, StreamScan};
use crate::limits::DLP_MAX_HELD_BYTES;

/// What a WebSocket's event reports.
pub enum Ended<'a> {
    /// The relay stopped it.
    Stopped(Stop),
    /// `log` or `redact` let the rule's finding through (the first one).
    Flagged(DlpMode, &'a str),
    /// Nothing moved either way for the idle bound; the proxy closed it.
    Idle,
}

/// Why the relay ended a WebSocket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// DLP found the rule's secret in a frame (block mode, or a control
    /// frame in redact mode).
    Dlp(String),
    /// Not a frame an agent may send: unmasked, a reserved bit or opcode,
    /// a control frame too long or fragmented, a message out of order.
    Malformed(&'static str),
    /// More unscanned bytes than the scanner may hold back.
    TooLarge,
}

const CONTINUATION: u8 = 0x0;
const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;
/// RFC 6455, 5.5: control frames carry at most 125 bytes.
const MAX_CONTROL_PAYLOAD: u64 = 125;
/// The longest frame head: 2 bytes, 8 of extended length, 4 of mask.
const MAX_HEAD: usize = 14;

/// A parsed frame head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Head {
    fin: bool,
    opcode: u8,
    mask: [u8; 4],
    len: u64,
    /// Bytes of the head itself.
    size: usize,
}

/// The head at the start of `buf`, `None` while it is incomplete.
fn parse_head(buf: &[u8]) -> Result<Option<Head>, Stop> {
    let (Some(&b0), Some(&b1)) = (buf.first(), buf.get(1)) else {
        return Ok(None);
    };
    if b0 & 0x70 != 0 {
        return Err(Stop::Malformed(
            "reserved bit set (no extension is negotiated)",
        ));
    }
    let fin = b0 & 0x80 != 0;
    let opcode = b0 & 0x0F;
    if !matches!(opcode, CONTINUATION | TEXT | BINARY | CLOSE | PING | PONG) {
        return Err(Stop::Malformed("reserved opcode"));
    }
    if b1 & 0x80 == 0 {
        return Err(Stop::Malformed("unmasked frame from the client"));
    }
    let (len, at) = match b1 & 0x7F {
        126 => match buf.get(2..4) {
            Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
            None => return Ok(None),
        },
        127 => match buf.get(2..10).and_then(|b| <[u8; 8]>::try_from(b).ok()) {
            Some(b) => (u64::from_be_bytes(b), 10),
            None => return Ok(None),
        },
        n => (u64::from(n), 2),
    };
    if len >> 63 != 0 {
        return Err(Stop::Malformed("frame length over 2^63"));
    }
    if opcode >= CLOSE && (!fin || len > MAX_CONTROL_PAYLOAD) {
        return Err(Stop::Malformed("fragmented or oversized control frame"));
    }
    let Some(mask) = buf
        .get(at..at + 4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
    else {
        return Ok(None);
    };
    Ok(Some(Head {
        fin,
        opcode,
        mask,
        len,
        size: at + 4,
    }))
}

/// The frame whose payload is arriving.
struct Frame {
    head: Head,
    /// Payload bytes still to come.
    left: u64,
    /// Payload bytes seen so far (the position in the mask).
    seen: u64,
    /// A control frame's payload, scanned whole at its end.
    control: Vec<u8>,
}

/// A data message between its first frame and the one with FIN.
struct Message {
    scanner: Box<dyn StreamScan>,
    held: HeldBytes,
    out: Fragments,
}

/// The frames a message goes on as: the first with the message's opcode,
/// the rest continuations.
struct Fragments {
    opcode: u8,
    /// A fragment went out already.
    started: bool,
}

impl Fragments {
    fn emit(
        &mut self,
        fin: bool,
        payload: &[u8],
        random: &dyn rustls::crypto::SecureRandom,
        out: &mut Vec<u8>,
    ) -> Result<(), Stop> {
        let opcode = if self.started {
            CONTINUATION
        } else {
            self.opcode
        };
        self.started = true;
        emit(fin, opcode, payload, random, out)
    }
}

/// The first finding let through (`log` and `redact` modes), and who to
/// tell at once: a socket may stay open until the bottle ends, so waiting
/// for its close to report would be waiting for nothing. Later findings
/// are not kept (a socket full of them must not grow a list).
#[derive(Default)]
struct Flagged {
    first: Option<String>,
    tell: Option<Tell>,
}

/// Told the rule of the first finding let through.
type Tell = Box<dyn FnOnce(&str) + Send>;

impl Flagged {
    fn add(&mut self, rule: &str) {
        if self.first.is_some() {
            return;
        }
        self.first = Some(rule.to_string());
        if let Some(tell) = self.tell.take() {
            tell(rule);
        }
    }
}

/// The agent's side of one WebSocket: frames in, scanned frames out.
/// No I/O, so every frame sequence can be tested directly.
pub struct ClientFrames {
    dlp: Dlp,
    /// Mask keys for the frames sent on.
    random: &'static dyn rustls::crypto::SecureRandom,
    head: Vec<u8>,
    frame: Option<Frame>,
    message: Option<Message>,
    flagged: Flagged,
}

impl ClientFrames {
    /// Frames scanned with `dlp`, which must be active (an engine and a
    /// mode other than `off`).
    pub fn new(dlp: Dlp) -> Self {
        Self {
            dlp,
            random: rustls::crypto::aws_lc_rs::default_provider().secure_random,
            head: Vec::with_capacity(MAX_HEAD),
            frame: None,
            message: None,
            flagged: Flagged::default(),
        }
    }

    /// Calls `tell` with the rule of the first finding let through.
    pub fn on_flag(mut self, tell: impl FnOnce(&str) + Send + 'static) -> Self {
        self.flagged.tell = Some(Box::new(tell));
        self
    }

    /// The rule of the first finding let through, if any.
    pub fn first_flag(&self) -> Option<&str> {
        self.flagged.first.as_deref()
    }

    /// Reads `input` from the agent; appends to `out` the frames that may
    /// go to the upstream. An error stops the WebSocket: nothing more may
    /// be sent, including what this call appended.
    pub fn push(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), Stop> {
        loop {
            if self.frame.is_none() {
                if input.is_empty() {
                    return Ok(());
                }
                let had = self.head.len();
                let take = input.len().min(MAX_HEAD - had);
                self.head.extend_from_slice(&input[..take]);
                match parse_head(&self.head)? {
                    None => {
                        input = &input[take..];
                        continue;
                    }
                    Some(head) => {
                        input = &input[head.size - had..];
                        self.head.clear();
                        self.start(head)?;
                    }
                }
            }
            let Some(frame) = self.frame.as_mut() else {
                continue;
            };
            let n = usize::try_from(frame.left)
                .unwrap_or(usize::MAX)
                .min(input.len());
            let (part, rest) = input.split_at(n);
            input = rest;
            let mut plain = part.to_vec();
            for (i, b) in plain.iter_mut().enumerate() {
                *b ^= frame.head.mask[((frame.seen + i as u64) % 4) as usize];
            }
            frame.seen += n as u64;
            frame.left -= n as u64;
            let ended = frame.left == 0;
            if frame.head.opcode >= CLOSE {
                frame.control.extend_from_slice(&plain);
            } else if !plain.is_empty() {
                self.on_data(&plain, out)?;
            }
            if ended {
                self.end_frame(out)?;
            } else if input.is_empty() {
                return Ok(());
            }
        }
    }

    fn start(&mut self, head: Head) -> Result<(), Stop> {
        match head.opcode {
            TEXT | BINARY if self.message.is_some() => {
                return Err(Stop::Malformed("new message before the last one ended"));
            }
            TEXT | BINARY => {
                let Some(scanner) = self.dlp.stream() else {
                    return Err(Stop::Malformed("no scanner"));
                };
                self.message = Some(Message {
                    scanner,
                    held: HeldBytes::new(),
                    out: Fragments {
                        opcode: head.opcode,
                        started: false,
                    },
                });
            }
            CONTINUATION if self.message.is_none() => {
                return Err(Stop::Malformed("continuation without a message"));
            }
            _ => {}
        }
        self.frame = Some(Frame {
            head,
            left: head.len,
            seen: 0,
            control: Vec::new(),
        });
        Ok(())
    }

    fn on_data(&mut self, plain: &[u8], out: &mut Vec<u8>) -> Result<(), Stop> {
        let Some(msg) = self.message.as_mut() else {
            return Ok(());
        };
        msg.held.push(plain);
        let findings = msg.scanner.push(plain);
        judge(&self.dlp, findings, &mut msg.held, &mut self.flagged)?;
        if let Some(b) = msg.held.release(msg.scanner.settled()) {
            msg.out.emit(false, &b, self.random, out)?;
        }
        if msg.held.held() > DLP_MAX_HELD_BYTES {
            return Err(Stop::TooLarge);
        }
        Ok(())
    }

    fn end_frame(&mut self, out: &mut Vec<u8>) -> Result<(), Stop> {
        let Some(frame) = self.frame.take() else {
            return Ok(());
        };
        let head = frame.head;
        if head.opcode >= CLOSE {
            // An empty ping (the common keep-alive) has nothing to scan.
            let findings = if frame.control.is_empty() {
                Vec::new()
            } else {
                self.dlp.scan(&frame.control)
            };
            if let Some(f) = findings.first() {
                if self.dlp.mode != DlpMode::Log {
                    return Err(Stop::Dlp(f.rule.clone()));
                }
                self.flagged.add(&f.rule);
            }
            return emit(true, head.opcode, &frame.control, self.random, out);
        }
        if !head.fin {
            return Ok(());
        }
        let Some(Message {
            scanner,
            mut held,
            out: mut fragments,
        }) = self.message.take()
        else {
            return Ok(());
        };
        judge(&self.dlp, scanner.finish(), &mut held, &mut self.flagged)?;
        let rest = held.release_all().unwrap_or_default();
        fragments.emit(true, &rest, self.random, out)
    }
}

/// Block stops; redact marks the finding in the held bytes; log records it.
fn judge(
    dlp: &Dlp,
    findings: Vec<Finding>,
    held: &mut HeldBytes,
    flagged: &mut Flagged,
) -> Result<(), Stop> {
    let Some(first) = findings.first() else {
        return Ok(());
    };
    match dlp.mode {
        DlpMode::Block => Err(Stop::Dlp(first.rule.clone())),
        DlpMode::Redact => {
            flagged.add(&first.rule);
            for f in findings {
                held.redact(f);
            }
            Ok(())
        }
        DlpMode::Log | DlpMode::Off => {
            flagged.add(&first.rule);
            Ok(())
        }
    }
}

/// Appends one frame, masked with a fresh key as a client's must be: the
/// agent chose every byte of the payload and must not choose what goes on
/// the wire as well.
fn emit(
    fin: bool,
    opcode: u8,
    payload: &[u8],
    random: &dyn rustls::crypto::SecureRandom,
    out: &mut Vec<u8>,
) -> Result<(), Stop> {
    let mut mask = [0u8; 4];
    random
        .fill(&mut mask)
        .map_err(|_| Stop::Malformed("no random mask key"))?;
    out.push(if fin { 0x80 } else { 0 } | opcode);
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if let Ok(short) = u16::try_from(len) {
        out.push(0x80 | 126);
        out.extend_from_slice(&short.to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    Ok(())
}

/// Relays one WebSocket: the agent's frames through `frames`, the
/// upstream's bytes as they are. Ends when both sides have closed, or at
/// once (dropping both connections) when `frames` stops it. Returns the
/// stop, if any.
pub async fn relay<C, U>(client: C, upstream: U, mut frames: ClientFrames) -> Option<Stop>
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let (mut cr, mut cw) = tokio::io::split(client);
    let (mut ur, mut uw) = tokio::io::split(upstream);
    let down = async {
        let _ = tokio::io::copy(&mut ur, &mut cw).await;
        let _ = cw.shutdown().await;
    };
    let up = async {
        let mut buf = vec![0u8; 16 * 1024];
        let mut out = Vec::with_capacity(buf.len() + 64);
        loop {
            let n = match cr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            out.clear();
            if let Err(stop) = frames.push(&buf[..n], &mut out) {
                return Some(stop);
            }
            if !out.is_empty() && uw.write_all(&out).await.is_err() {
                break;
            }
        }
        let _ = uw.shutdown().await;
        None
    };
    tokio::pin!(down, up);
    tokio::select! {
        stop = &mut up => {
            if stop.is_none() {
                down.await;
            }
            stop
        }
        () = &mut down => up.await,
    }
}

#[cfg(test)]
mod tests;
