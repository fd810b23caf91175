//! WebSockets through the proxy with DLP on: the agent's frames are read
//! and scanned as request bodies are, so an allowed WebSocket host is no
//! channel past DLP.

#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What a WebSocket upstream saw: the handshake's headers and every byte
/// after it.
#[derive(Clone, Default)]
struct Seen {
    headers: Arc<Mutex<Vec<http::HeaderMap>>>,
    bytes: Arc<Mutex<Vec<u8>>>,
    /// The proxy closed the upgraded connection.
    ended: Arc<std::sync::atomic::AtomicBool>,
}

/// An upstream that accepts WebSocket upgrades (answering with
/// `extensions` in its 101 when given), greets with one text frame and
/// records all it receives.
async fn ws_upstream(extensions: Option<&'static str>) -> (SocketAddr, Seen) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let seen = Seen::default();
    let s2 = seen.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let seen = s2.clone();
            let svc =
                hyper::service::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
                    let seen = seen.clone();
                    async move {
                        seen.headers.lock().unwrap().push(req.headers().clone());
                        let on = hyper::upgrade::on(&mut req);
                        tokio::spawn(async move {
                            let mut io = hyper_util::rt::TokioIo::new(on.await.unwrap());
                            io.write_all(b"\x81\x05hello").await.unwrap();
                            let mut buf = [0u8; 4096];
                            loop {
                                match io.read(&mut buf).await {
                                    Ok(0) | Err(_) => break,
                                    Ok(n) => {
                                        seen.bytes.lock().unwrap().extend_from_slice(&buf[..n])
                                    }
                                }
                            }
                            seen.ended.store(true, std::sync::atomic::Ordering::SeqCst);
                        });
                        let mut r =
                            http::Response::new(http_body_util::Empty::<bytes::Bytes>::new());
                        *r.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
                        let h = r.headers_mut();
                        h.insert("upgrade", "websocket".parse().unwrap());
                        h.insert("connection", "upgrade".parse().unwrap());
                        h.insert(
                            "sec-websocket-accept",
                            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".parse().unwrap(),
                        );
                        if let Some(e) = extensions {
                            h.insert("sec-websocket-extensions", e.parse().unwrap());
                        }
                        Ok::<_, std::convert::Infallible>(r)
                    }
                });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                    .with_upgrades(),
            );
        }
    });
    (addr, seen)
}

const HANDSHAKE: &[u8] = b"GET http://app.test/socket HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n";

/// A masked client frame.
fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
    if payload.len() < 126 {
        out.push(0x80 | payload.len() as u8);
    } else {
        out.push(0x80 | 126);
        out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// The payloads of the masked frames in `wire`, joined.
fn unmasked(mut wire: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while wire.len() >= 6 {
        let (len, at) = match wire[1] & 0x7f {
            126 => (u16::from_be_bytes([wire[2], wire[3]]) as usize, 4),
            127 => panic!("no test frame is that long"),
            n => (n as usize, 2),
        };
        let mask = [wire[at], wire[at + 1], wire[at + 2], wire[at + 3]];
        let Some(payload) = wire.get(at + 4..at + 4 + len) else {
            break;
        };
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        wire = &wire[at + 4 + len..];
    }
    out
}

/// Opens a WebSocket through the proxy; the stream after the 101 and the
/// greeting frame.
async fn open(p: &Running) -> TcpStream {
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(HANDSHAKE).await.unwrap();
    let (status, head, _) = read_response(&mut s).await;
    assert_eq!(status, 101, "{head}");
    let mut hello = [0u8; 7];
    s.read_exact(&mut hello).await.unwrap();
    assert_eq!(&hello, b"\x81\x05hello");
    s
}

/// Waits until the upstream has `n` bytes or its connection has ended, or
/// 5 s pass.
async fn received(seen: &Seen, n: usize) -> Vec<u8> {
    for _ in 0..500 {
        if seen.bytes.lock().unwrap().len() >= n
            || seen.ended.load(std::sync::atomic::Ordering::SeqCst)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    seen.bytes.lock().unwrap().clone()
}

/// Reads until the proxy closes the connection (or 5 s pass); true if it did.
async fn closed(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

#[tokio::test]
async fn clean_frames_pass_both_ways_and_no_extension_is_negotiated() {
    let (up, seen) = ws_upstream(None).await;
    let p = dlp_proxy_to("dlp: block", up).await;
    let mut s = open(&p).await;
    s.write_all(&frame(true, 1, b"just a question"))
        .await
        .unwrap();
    s.write_all(&frame(true, 9, b"ping")).await.unwrap();
    let got = received(&seen, 2 * 6 + 15 + 4).await;
    assert_eq!(unmasked(&got), b"just a questionping");
    let h = &seen.headers.lock().unwrap()[0];
    assert!(!h.contains_key("sec-websocket-extensions"), "{h:?}");
}

/// Attack: with the upgrade allowed, the agent sends the known secret in a
/// text message split over two frames. The upstream gets neither the
/// secret nor anything after it; the socket is closed and the log says
/// why, without the secret.
#[tokio::test]
async fn a_secret_in_a_websocket_message_never_reaches_the_upstream() {
    let (up, seen) = ws_upstream(None).await;
    let p = dlp_proxy_to("dlp: block", up).await;
    let mut s = open(&p).await;
    let (a, b) = SECRET.split_at(7);
    s.write_all(&frame(false, 1, format!("note: {a}").as_bytes()))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _ = s
        .write_all(&frame(true, 0, format!("{b} and more").as_bytes()))
        .await;
    assert!(closed(&mut s).await, "the proxy kept the socket open");
    let got = unmasked(&received(&seen, usize::MAX).await);
    let got = String::from_utf8_lossy(&got);
    assert!(!got.contains(SECRET) && !got.contains("and more"), "{got}");
    p.event_like(serde_json::json!({"decision": "block", "reason": "dlp", "path": "/socket"}))
        .await;
    p.events_without(&[SECRET]);
}

#[tokio::test]
async fn redact_mode_rewrites_the_message() {
    let (up, seen) = ws_upstream(None).await;
    let p = dlp_proxy_to("dlp: redact", up).await;
    let mut s = open(&p).await;
    s.write_all(&frame(true, 1, format!("key={SECRET};").as_bytes()))
        .await
        .unwrap();
    s.write_all(&frame(true, 1, b"next")).await.unwrap();
    let want = b"key=[REDACTED:known-secret];next";
    let mut got = Vec::new();
    for _ in 0..500 {
        got = unmasked(&seen.bytes.lock().unwrap());
        if got.ends_with(b"next") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(want));
    drop(s);
    p.event_like(serde_json::json!({"decision": "redact", "reason": "dlp"}))
        .await;
}

/// `log` mode lets a finding through, and says so at once: the socket
/// may stay open until the bottle ends, and an event written at its close
/// would never be written.
#[tokio::test]
async fn log_mode_reports_a_finding_while_the_socket_is_open() {
    let (up, seen) = ws_upstream(None).await;
    let p = dlp_proxy_to("dlp: log", up).await;
    let mut s = open(&p).await;
    let msg = format!("x {SECRET}");
    s.write_all(&frame(true, 1, msg.as_bytes())).await.unwrap();
    p.event_like(serde_json::json!({"decision": "allow", "reason": "dlp", "path": "/socket"}))
        .await;
    let got = unmasked(&received(&seen, 6 + msg.len()).await);
    assert_eq!(got, msg.as_bytes(), "log mode passes the message on");
    assert!(!seen.ended.load(std::sync::atomic::Ordering::SeqCst));
    p.events_without(&[SECRET]);
    drop(s);
}

/// An open WebSocket that moves nothing gives its tunnel slot back after
/// the idle bound; one that keeps talking stays open.
#[tokio::test]
async fn an_idle_websocket_is_closed_a_busy_one_is_not() {
    let (up, seen) = ws_upstream(None).await;
    let p = Setup::new(format!(
        "dlp: block\nallow: [{{host: app.test}}]\nresolve: {{app.test: '{up}'}}\nknown_secret_env: [S]"
    ))
    .secrets(&[("S", SECRET)])
    .tweak(|c| c.limits.tunnel_idle = Duration::from_millis(400))
    .start()
    .await;
    let mut busy = open(&p).await;
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        busy.write_all(&frame(true, 9, b"")).await.unwrap();
    }
    let got = received(&seen, 6 * 6).await;
    assert_eq!(
        got.len(),
        6 * 6,
        "six pings through a socket that never went idle"
    );
    let mut idle = open(&p).await;
    assert!(closed(&mut idle).await, "an idle socket is closed");
    // Said in the log, as for a passthrough tunnel.
    let ev = p
        .event(|e| e["reason"] == "timeout" && e["host"] == "app.test")
        .await;
    assert_eq!(ev["decision"], "allow", "{ev}");
}

/// An upstream that turns on compression although it was not offered
/// would get frames the scan cannot read: the upgrade is refused.
#[tokio::test]
async fn an_upstream_that_negotiates_an_extension_anyway_is_refused() {
    let (up, _) = ws_upstream(Some("permessage-deflate")).await;
    let p = dlp_proxy_to("dlp: block", up).await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(HANDSHAKE).await.unwrap();
    let (status, head, _) = read_response(&mut s).await;
    assert_eq!(status, 502, "{head}");
}

/// Compressed frames (RSV1, as permessage-deflate sends them) would hide
/// the payload: the socket is closed instead of relaying them.
#[tokio::test]
async fn a_compressed_frame_closes_the_socket() {
    let (up, seen) = ws_upstream(None).await;
    let p = dlp_proxy_to("dlp: block", up).await;
    let mut s = open(&p).await;
    let mut f = frame(true, 1, b"\xf2\x48\xcd\xc9\xc9\x07\x00");
    f[0] |= 0x40;
    s.write_all(&f).await.unwrap();
    assert!(closed(&mut s).await);
    assert!(seen.bytes.lock().unwrap().is_empty());
    p.event_like(serde_json::json!({"decision": "block", "reason": "malformed"}))
        .await;
}
