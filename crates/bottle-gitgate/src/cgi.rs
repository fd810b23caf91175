//! A small CGI bridge on hyper: runs a CGI program (here `git http-backend`)
//! per request, streams the request body into its stdin, parses the CGI
//! header block from its stdout and streams the rest back.
//!
//! The child is always waited for in a task of its own, whatever the client
//! does: if the client goes away, the child's output is drained so a running
//! pre-receive hook is never cut off halfway through an upstream push.

use std::io;
use std::pin::Pin;
use std::process::{ExitStatus, Stdio};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tokio::sync::{mpsc, oneshot};

/// Largest CGI header block accepted from the child.
const MAX_HEADER: usize = 64 * 1024;
/// Stderr kept for the log.
const MAX_STDERR: usize = 16 * 1024;

/// A response body fed by a channel.
pub struct ChannelBody {
    rx: mpsc::Receiver<Result<Bytes, io::Error>>,
    first: Option<Bytes>,
}

impl ChannelBody {
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        let (_tx, rx) = mpsc::channel(1);
        ChannelBody {
            rx,
            first: Some(bytes.into()),
        }
    }
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        if let Some(b) = self.first.take()
            && !b.is_empty()
        {
            return Poll::Ready(Some(Ok(Frame::data(b))));
        }
        self.rx.poll_recv(cx).map(|o| o.map(|r| r.map(Frame::data)))
    }
}

/// How the child ended, for the caller's audit event.
#[derive(Debug)]
pub struct Outcome {
    pub status: Option<ExitStatus>,
    /// The tail of the child's stderr (gate-side only; never sent to clients).
    pub stderr: String,
    /// Request body bytes passed to the child.
    pub bytes_in: u64,
    /// Whether the request body was cut at `max_body`.
    pub truncated: bool,
}

/// Runs `cmd` as a CGI program for one request.
///
/// `cmd` must already carry the CGI environment. The request body is cut at
/// `max_body` bytes (the child then sees a short body and fails), and the
/// child is killed once it has run for `deadline`. Returns the
/// response once the child's CGI headers have arrived, and a receiver for the
/// outcome when the child has exited.
pub async fn run<B>(
    mut cmd: Command,
    body: B,
    max_body: u64,
    deadline: std::time::Duration,
) -> io::Result<(Response<ChannelBody>, oneshot::Receiver<Outcome>)>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: std::fmt::Display + Send,
{
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    let killer = tokio::time::Instant::now() + deadline;
    let (Some(mut stdin), Some(mut stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(io::Error::other("child pipes missing"));
    };

    // Request body -> stdin. Ends (closing stdin) at the end of the body, on
    // a client error, or at the size bound.
    let pump = tokio::spawn(async move {
        let mut body = body;
        let mut n: u64 = 0;
        let mut truncated = false;
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { break };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            n += data.len() as u64;
            if n > max_body {
                truncated = true;
                break;
            }
            if stdin.write_all(&data).await.is_err() {
                break;
            }
        }
        drop(stdin);
        (n, truncated)
    });
    let err_task = tokio::spawn(read_tail(stderr, MAX_STDERR));

    // The CGI header block.
    let mut head = Vec::with_capacity(1024);
    let mut buf = vec![0u8; 16 * 1024];
    let (header_len, sep_len) = loop {
        if let Some(pos) = find_header_end(&head) {
            break pos;
        }
        if head.len() > MAX_HEADER {
            let _ = child.start_kill();
            let _ = child.wait().await;
            return Err(io::Error::other("CGI header block too large"));
        }
        let n = tokio::select! {
            r = stdout.read(&mut buf) => r?,
            () = tokio::time::sleep_until(killer) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                return Err(io::Error::other("CGI program timed out"));
            }
        };
        if n == 0 {
            // The child ended without a header block.
            let _ = child.wait().await;
            let err = err_task.await.unwrap_or_default();
            return Err(io::Error::other(format!(
                "CGI program ended without a response: {}",
                err.trim()
            )));
        }
        head.extend_from_slice(&buf[..n]);
    };
    let rest = Bytes::copy_from_slice(&head[header_len + sep_len..]);
    let mut response = parse_head(&head[..header_len])?;

    let (tx, rx) = mpsc::channel::<Result<Bytes, io::Error>>(8);
    let (done_tx, done_rx) = oneshot::channel();
    tokio::spawn(async move {
        let mut client_gone = false;
        loop {
            let read = tokio::select! {
                r = stdout.read(&mut buf) => r,
                () = tokio::time::sleep_until(killer) => {
                    let _ = child.start_kill();
                    break;
                }
            };
            let n = match read {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    break;
                }
            };
            // Once the client is gone keep draining, so the child (and a
            // hook it runs) finishes instead of dying on a broken pipe.
            if !client_gone
                && tx
                    .send(Ok(Bytes::copy_from_slice(&buf[..n])))
                    .await
                    .is_err()
            {
                client_gone = true;
            }
        }
        drop(tx);
        let status = child.wait().await.ok();
        let (bytes_in, truncated) = pump.await.unwrap_or((0, false));
        let stderr = err_task.await.unwrap_or_default();
        let _ = done_tx.send(Outcome {
            status,
            stderr,
            bytes_in,
            truncated,
        });
    });
    *response.body_mut() = ChannelBody {
        rx,
        first: Some(rest),
    };
    Ok((response, done_rx))
}

async fn read_tail(mut r: impl AsyncRead + Unpin, max: usize) -> String {
    let mut kept = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = r.read(&mut buf).await {
        if n == 0 {
            break;
        }
        kept.extend_from_slice(&buf[..n]);
        if kept.len() > max {
            let cut = kept.len() - max;
            kept.drain(..cut);
        }
    }
    String::from_utf8_lossy(&kept).into_owned()
}

/// The end of the header block: (offset, separator length).
fn find_header_end(b: &[u8]) -> Option<(usize, usize)> {
    let crlf = b.windows(4).position(|w| w == b"\r\n\r\n").map(|p| (p, 4));
    let lf = b.windows(2).position(|w| w == b"\n\n").map(|p| (p, 2));
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

fn parse_head(head: &[u8]) -> io::Result<Response<ChannelBody>> {
    let text = std::str::from_utf8(head).map_err(|_| io::Error::other("CGI header not UTF-8"))?;
    let mut resp = Response::new(ChannelBody::full(Bytes::new()));
    for line in text.split('\n') {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(io::Error::other("malformed CGI header line"));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split(' ').next().unwrap_or("");
            *resp.status_mut() = code
                .parse::<u16>()
                .ok()
                .and_then(|c| StatusCode::from_u16(c).ok())
                .ok_or_else(|| io::Error::other("bad CGI status"))?;
            continue;
        }
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| io::Error::other("bad CGI header name"))?;
        let value =
            HeaderValue::from_str(value).map_err(|_| io::Error::other("bad CGI header value"))?;
        resp.headers_mut().append(name, value);
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn header_block() {
        let r = parse_head(b"Status: 403 Forbidden\r\nContent-Type: text/plain\r\nX-A: b").unwrap();
        assert_eq!(r.status(), 403);
        assert_eq!(r.headers()["content-type"], "text/plain");
        assert!(parse_head(b"nonsense").is_err());
        assert_eq!(find_header_end(b"a: b\r\n\r\nxx"), Some((4, 4)));
        assert_eq!(find_header_end(b"a: b\n\nxx"), Some((4, 2)));
        assert_eq!(find_header_end(b"a: b\r\n"), None);
    }

    #[tokio::test]
    async fn streams_body_through_a_child() {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg("printf 'Status: 201 Created\\r\\nX-T: 1\\r\\n\\r\\n'; cat; echo oops >&2");
        let body = http_body_util::Full::new(Bytes::from_static(b"hello body"));
        let (resp, done) = run(cmd, body, 1 << 20, std::time::Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        let got = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&got[..], b"hello body");
        let out = done.await.unwrap();
        assert!(out.status.unwrap().success());
        assert_eq!(out.stderr.trim(), "oops");
        assert_eq!(out.bytes_in, 10);
    }

    #[tokio::test]
    async fn a_child_over_its_deadline_is_killed() {
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg("printf 'X: 1\\n\\n'; exec sleep 30");
        let body = http_body_util::Empty::<Bytes>::new();
        let started = std::time::Instant::now();
        let (resp, done) = run(cmd, body, 100, std::time::Duration::from_millis(300))
            .await
            .unwrap();
        let _ = resp.into_body().collect().await;
        let out = done.await.unwrap();
        assert!(!out.status.unwrap().success());
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
    }

    #[tokio::test]
    async fn body_over_the_bound_is_cut() {
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg("printf 'X: 1\\n\\n'; wc -c");
        let body = http_body_util::Full::new(Bytes::from(vec![b'a'; 5000]));
        let (resp, done) = run(cmd, body, 100, std::time::Duration::from_secs(60))
            .await
            .unwrap();
        let got = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(String::from_utf8_lossy(&got).trim(), "0");
        assert!(done.await.unwrap().truncated);
    }
}
