//! Request bodies with a `Content-Encoding`: a secret gzipped into a body is
//! what any server that honours the header reads, so DLP reads it inflated.
//! Also: trailer fields after a chunked body never leave the proxy (headers
//! after the header scan).

#![allow(clippy::unwrap_used)]

mod support;

use std::io::Write;

use bytes::Bytes;
use flate2::Compression;
use flate2::write::{GzEncoder, ZlibEncoder};
use http_body_util::Full;
use hyper::Request;
use support::*;
use tokio::io::AsyncWriteExt;

async fn proxy(mode: &str) -> (Running, Recorder) {
    let (up, rec) = http_upstream().await;
    (dlp_proxy_to(&format!("dlp: {mode}"), up).await, rec)
}

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

/// POSTs `body` with `Content-Encoding: coding`; status and block reason.
async fn post(p: &Running, coding: &str, body: Vec<u8>) -> (u16, String) {
    let mut c = client(p.addr).await;
    let r = Request::builder()
        .method("POST")
        .uri("http://app.test/upload")
        .header("content-encoding", coding)
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let resp = c.send_request(r).await.unwrap();
    let block = resp
        .headers()
        .get("x-claude-bottle-block")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (resp.status().as_u16(), block)
}

fn content() -> Vec<u8> {
    format!(
        "{{\"notes\": \"{}\", \"key\": \"{SECRET}\"}}",
        "lorem ipsum ".repeat(2000)
    )
    .into_bytes()
}

#[tokio::test]
async fn a_secret_inside_a_compressed_body_is_blocked() {
    let (p, rec) = proxy("block").await;
    let cases = [
        ("gzip", gzip(&content())),
        ("x-gzip", gzip(&content())),
        ("deflate", zlib(&content())),
        // Applied in the header's order: zlib first, then gzip.
        ("deflate, gzip", gzip(&zlib(&content()))),
        ("gzip, gzip, gzip", gzip(&gzip(&gzip(&content())))),
    ];
    let n = cases.len();
    for (coding, body) in cases {
        assert!(
            !String::from_utf8_lossy(&body).contains(SECRET),
            "{coding}: the secret is not visible on the wire"
        );
        assert_eq!(
            post(&p, coding, body).await,
            (403, "dlp".to_string()),
            "{coding}"
        );
    }
    assert_eq!(rec.count(), 0, "nothing reached the upstream");
    let ev = p.events_without(&[SECRET]);
    assert!(
        ev.iter()
            .filter(|e| e["reason"] == "dlp" && e["rule"] == "known-secret")
            .count()
            >= n,
        "{ev:?}"
    );
}

#[tokio::test]
async fn a_clean_compressed_body_is_forwarded_as_sent() {
    for mode in ["block", "redact"] {
        let (p, rec) = proxy(mode).await;
        let wire = gzip(b"{\"hello\": \"world\"}");
        assert_eq!(post(&p, "gzip", wire.clone()).await.0, 200, "{mode}");
        let seen = &rec.all()[0];
        assert_eq!(seen.body, wire, "{mode}: the compressed bytes, unchanged");
        assert_eq!(seen.headers["content-encoding"], "gzip");
    }
}

/// A marker cannot be put into a compressed stream: redact mode blocks.
#[tokio::test]
async fn redact_mode_blocks_a_secret_it_cannot_redact() {
    let (p, rec) = proxy("redact").await;
    assert_eq!(
        post(&p, "gzip", gzip(&content())).await,
        (403, "dlp".to_string())
    );
    assert_eq!(rec.count(), 0);
}

#[tokio::test]
async fn unreadable_codings_are_refused_unless_only_logging() {
    let (p, rec) = proxy("block").await;
    // br and zstd are not read; garbage is not gzip; a stream cut short is
    // not whole; four layers are too many.
    for (coding, body) in [
        ("br", b"\x1b\x03\x00".to_vec()),
        ("zstd", b"(\xb5/\xfd".to_vec()),
        ("gzip", b"not gzip at all".to_vec()),
        ("gzip", gzip(&content())[..100].to_vec()),
        ("gzip,gzip,gzip,gzip", gzip(&gzip(&gzip(&gzip(b"x"))))),
    ] {
        assert_eq!(
            post(&p, coding, body).await,
            (403, "dlp".to_string()),
            "{coding}"
        );
    }
    assert_eq!(rec.count(), 0);
    p.event(|e| e["rule"] == "unscannable-encoding").await;

    let (p, rec) = proxy("log").await;
    assert_eq!(post(&p, "br", b"\x1b\x03\x00".to_vec()).await.0, 200);
    assert_eq!(rec.count(), 1);
    p.event(|e| e["decision"] == "allow" && e["rule"] == "unscannable-encoding")
        .await;
}

/// A few KiB that would inflate to far more than the proxy reads.
#[tokio::test]
async fn a_compression_bomb_is_refused_as_too_large() {
    let (p, rec) = proxy("block").await;
    let member = gzip(&vec![0u8; 1 << 20]);
    let bomb = gzip(&member.repeat(1024));
    assert!(bomb.len() < 64 * 1024);
    let (status, block) = post(&p, "gzip, gzip", bomb).await;
    assert_eq!((status, block.as_str()), (403, "too-large"));
    assert_eq!(rec.count(), 0);
}

/// A chunked request has ended: the last chunk, trailers (if any), an
/// empty line.
fn chunked_request_ended(got: &[u8]) -> bool {
    let text = String::from_utf8_lossy(got);
    text.find("\r\n0\r\n").is_some_and(|i| {
        let rest = &text[i + 5..];
        rest.starts_with("\r\n") || rest.contains("\r\n\r\n")
    })
}

#[tokio::test]
async fn trailer_fields_are_not_forwarded() {
    let (up, got) = raw_upstream(chunked_request_ended).await;
    let p = dlp_proxy_to("dlp: block", up).await;
    let mut s = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    let request = format!(
        "POST http://app.test/upload HTTP/1.1\r\nHost: app.test\r\nTE: trailers\r\n\
         Trailer: x-note\r\nTransfer-Encoding: chunked\r\n\r\n\
         5\r\nhello\r\n0\r\nx-note: {SECRET}\r\n\r\n"
    );
    s.write_all(request.as_bytes()).await.unwrap();
    let (status, head, _) =
        tokio::time::timeout(std::time::Duration::from_secs(10), read_response(&mut s))
            .await
            .expect("an answer");
    assert_eq!(status, 200, "{head}");
    let seen = String::from_utf8_lossy(&got.lock().unwrap()).into_owned();
    assert!(seen.contains("hello"), "{seen}");
    assert!(!seen.contains(SECRET), "the trailer went upstream: {seen}");
}

/// A compressed body is held whole until its content is found clean, so
/// the hold is bounded: past it the request is refused, not buffered on.
#[tokio::test]
async fn a_compressed_body_over_the_hold_bound_is_refused() {
    let (p, rec) = proxy("block").await;
    // Incompressible content: the gzip stream is as large as the data.
    let wire = gzip(&noise(
        bottle_egress::limits::MAX_COMPRESSED_HELD_BYTES + (1 << 20),
    ));
    assert!(wire.len() > bottle_egress::limits::MAX_COMPRESSED_HELD_BYTES);
    assert_eq!(post(&p, "gzip", wire).await, (403, "too-large".to_string()));
    // The upstream may have seen the head of the cut request, never a byte
    // of its body.
    assert!(rec.all().iter().all(|seen| seen.body.is_empty()));
}

/// Incompressible bytes, so a gzip of them is as large on the wire.
fn noise(len: usize) -> Vec<u8> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Compressed bodies are held whole until scanned; without a bound over all
/// of them, a thousand connections holding 4 MiB each would take the
/// sidecar's memory. Past the shared budget a body is refused as too large,
/// and a finished body gives its share back.
#[tokio::test]
async fn compressed_bodies_share_one_bound_on_what_they_hold() {
    use tokio::io::AsyncReadExt;
    let (up, rec) = http_upstream().await;
    let p = Setup::new(format!(
        "dlp: block\nallow: [{{host: app.test}}]\nresolve: {{app.test: '{up}'}}\nknown_secret_env: [S]"
    ))
    .secrets(&[("S", SECRET)])
    .tweak(|c| c.limits.held_bytes = 3 << 20)
    .start()
    .await;
    let wire = gzip(&noise(2 << 20));

    // The first body: all but its last chunk, so it stays held.
    let mut first = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    first
        .write_all(
            b"POST http://app.test/one HTTP/1.1\r\nhost: app.test\r\n\
              content-encoding: gzip\r\ntransfer-encoding: chunked\r\n\r\n",
        )
        .await
        .unwrap();
    let (head, tail) = wire.split_at(wire.len() - 16);
    first
        .write_all(format!("{:x}\r\n", head.len()).as_bytes())
        .await
        .unwrap();
    first.write_all(head).await.unwrap();
    first.write_all(b"\r\n").await.unwrap();
    for _ in 0..500 {
        if p.proxy.held_bytes() > 1 << 20 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(p.proxy.held_bytes() > 1 << 20, "{}", p.proxy.held_bytes());

    // A second one does not fit beside it.
    assert_eq!(
        post(&p, "gzip", wire.clone()).await,
        (403, "too-large".to_string())
    );

    // The first completes, and goes through.
    first
        .write_all(format!("{:x}\r\n", tail.len()).as_bytes())
        .await
        .unwrap();
    first.write_all(tail).await.unwrap();
    first.write_all(b"\r\n0\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 12];
    first.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"HTTP/1.1 200");
    drop(first);

    // Its share is back: the same body fits now.
    for _ in 0..500 {
        if p.proxy.held_bytes() == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(post(&p, "gzip", wire.clone()).await, (200, String::new()));
    assert_eq!(
        rec.all()
            .iter()
            .filter(|s| s.body.len() == wire.len())
            .count(),
        2
    );
}
