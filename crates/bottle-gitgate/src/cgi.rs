//! A small CGI bridge on hyper: runs a CGI program (here `git http-backend`)
//! per request, streams the request body into its stdin, parses the CGI
//! header block from its stdout and streams the rest back.
//!
//! The child is always waited for in a task of its own, whatever the client
//! does. When the client goes away or stops reading, the caller chooses:
//! kill the child's whole process group (a fetch), or drain its output so a
//! running pre-receive hook is never cut off halfway through an upstream
//! push. Either way the child no longer waits on the client.

use std::io;
use std::pin::Pin;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame};
use rustix::process::{Pid, Signal, kill_process_group};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

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

/// Why a response was cut before the child's output ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// The client went away.
    ClientGone,
    /// The client took none of the output for [`Bounds::stall`].
    ClientStalled,
    /// The child ran past [`Bounds::deadline`] and was killed.
    Deadline,
}

/// What becomes of a child whose client takes no more of its output (gone,
/// or stalled past [`Bounds::stall`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenCut {
    /// Kill it with everything under it: a fetch has nothing to finish.
    Kill,
    /// Read and drop the rest of its output so it finishes: a push's hook
    /// may be halfway through forwarding upstream.
    Drain,
}

/// The bounds of one CGI run.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Request body bytes passed on; past them the child sees a short body.
    pub max_body: u64,
    /// The child and everything under it are killed once it has run this
    /// long.
    pub deadline: Duration,
    /// How long output may wait for a client that takes none of it.
    pub stall: Duration,
    pub when_cut: WhenCut,
}

impl Bounds {
    /// One time limit for everything, and a client that stops reading only
    /// drains the child: for a plain CGI server (a test upstream, say).
    pub fn drained(max_body: u64, deadline: Duration) -> Self {
        Bounds {
            max_body,
            deadline,
            stall: deadline,
            when_cut: WhenCut::Drain,
        }
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
    /// Why the response was cut, if it was.
    pub cut: Option<Cut>,
}

/// How long, once the child has exited, its stderr may stay open (held by
/// a descendant that left its process group) before it is given up.
const STDERR_GRACE: Duration = Duration::from_secs(2);

/// The child and its process group, which holds everything it starts
/// (http-backend, upload-pack, pack-objects, receive-pack, the hook).
struct Group {
    child: Child,
    id: Option<Pid>,
}

/// The process group of a child started with `process_group(0)`: its own
/// pid.
pub(crate) fn group_of(pid: Option<u32>) -> Option<Pid> {
    pid.and_then(|id| i32::try_from(id).ok())
        .and_then(Pid::from_raw)
}

/// Kills process group `id` with everything in it. Only while the group's
/// leader is not reaped: until then its id cannot be reused.
pub(crate) fn kill_group(id: Option<Pid>) {
    if let Some(id) = id {
        let _ = kill_process_group(id, Signal::KILL);
    }
}

impl Group {
    /// Kills the whole group. Only before [`Group::wait`]: until the child
    /// is reaped its pid, and so the group's id, cannot be reused.
    fn kill(&mut self) {
        kill_group(self.id);
        let _ = self.child.start_kill();
    }

    /// Waits for the child, killing the group at `killer`.
    async fn wait(&mut self, killer: Instant) -> Option<ExitStatus> {
        tokio::select! {
            s = self.child.wait() => return s.ok(),
            () = tokio::time::sleep_until(killer) => self.kill(),
        }
        self.child.wait().await.ok()
    }
}

/// Request body bytes the pump passed on, readable after it was stopped.
#[derive(Default)]
struct Pumped {
    bytes: AtomicU64,
    truncated: AtomicBool,
}

/// Runs `cmd` as a CGI program for one request.
///
/// `cmd` must already carry the CGI environment. The child runs in a
/// process group of its own, so a kill reaches everything under it.
/// Returns the response once the child's CGI headers have arrived, and a
/// receiver for the outcome when the child has exited.
pub async fn run<B>(
    mut cmd: Command,
    body: B,
    bounds: Bounds,
) -> io::Result<(Response<ChannelBody>, oneshot::Receiver<Outcome>)>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: std::fmt::Display + Send,
{
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let child = cmd.spawn()?;
    let id = group_of(child.id());
    let mut group = Group { child, id };
    let killer = Instant::now() + bounds.deadline;
    let (Some(mut stdin), Some(mut stdout), Some(stderr)) = (
        group.child.stdin.take(),
        group.child.stdout.take(),
        group.child.stderr.take(),
    ) else {
        group.kill();
        let _ = group.child.wait().await;
        return Err(io::Error::other("child pipes missing"));
    };

    // Request body -> stdin. Ends (closing stdin) at the end of the body, on
    // a client error, or at the size bound.
    let pumped = Arc::new(Pumped::default());
    let counts = pumped.clone();
    let max_body = bounds.max_body;
    let pump = tokio::spawn(async move {
        let mut body = body;
        let mut n: u64 = 0;
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { break };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            n += data.len() as u64;
            counts.bytes.store(n, Ordering::Relaxed);
            if n > max_body {
                counts.truncated.store(true, Ordering::Relaxed);
                break;
            }
            if stdin.write_all(&data).await.is_err() {
                break;
            }
        }
    });
    let err_task = tokio::spawn(read_tail(stderr, MAX_STDERR));

    // The CGI header block.
    let mut head = Vec::with_capacity(1024);
    let mut buf = vec![0u8; 16 * 1024];
    let failed = loop {
        if let Some(pos) = find_header_end(&head) {
            break Ok(pos);
        }
        if head.len() > MAX_HEADER {
            group.kill();
            break Err(io::Error::other("CGI header block too large"));
        }
        let read = tokio::select! {
            r = stdout.read(&mut buf) => r,
            () = tokio::time::sleep_until(killer) => {
                group.kill();
                break Err(io::Error::other("CGI program timed out"));
            }
        };
        match read {
            Ok(0) => {
                // The child ended without a header block.
                let _ = group.wait(killer).await;
                let err = finish(err_task, STDERR_GRACE).await;
                pump.abort();
                return Err(io::Error::other(format!(
                    "CGI program ended without a response: {}",
                    err.trim()
                )));
            }
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) => {
                group.kill();
                break Err(e);
            }
        }
    };
    let parsed = failed.and_then(|(header_len, sep_len)| {
        let response = parse_head(&head[..header_len])?;
        Ok((response, header_len + sep_len))
    });
    let (mut response, body_start) = match parsed {
        Ok(parsed) => parsed,
        Err(e) => {
            // Killed already unless the head was unreadable; a second kill
            // of a group not yet reaped is harmless.
            group.kill();
            let _ = group.child.wait().await;
            pump.abort();
            err_task.abort();
            return Err(e);
        }
    };
    let rest = Bytes::copy_from_slice(&head[body_start..]);

    let (tx, rx) = mpsc::channel::<Result<Bytes, io::Error>>(8);
    let (done_tx, done_rx) = oneshot::channel();
    tokio::spawn(async move {
        // A place in the channel kept for the error that ends a cut
        // response: it is sent at once, behind what the client has not
        // taken, so the response ends as broken, never as complete.
        let mut ender = tx.clone().reserve_owned().await.ok();
        let mut end_with = |e: io::Error| {
            if let Some(p) = ender.take() {
                p.send(Err(e));
            }
        };
        let mut cut = None;
        loop {
            let read = tokio::select! {
                r = stdout.read(&mut buf) => r,
                () = tokio::time::sleep_until(killer) => {
                    cut = Some(Cut::Deadline);
                    break;
                }
            };
            let n = match read {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    end_with(e);
                    break;
                }
            };
            if cut.is_some() {
                // Drained: the client takes nothing more.
                continue;
            }
            let chunk = Ok(Bytes::copy_from_slice(&buf[..n]));
            let lost = tokio::select! {
                r = tx.send(chunk) => r.err().map(|_| Cut::ClientGone),
                () = tokio::time::sleep(bounds.stall) => Some(Cut::ClientStalled),
                () = tokio::time::sleep_until(killer) => Some(Cut::Deadline),
            };
            let Some(why) = lost else { continue };
            cut = Some(why);
            if why != Cut::ClientGone {
                end_with(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the git gate cut the response: the client stopped reading",
                ));
            }
            if why == Cut::Deadline || bounds.when_cut == WhenCut::Kill {
                break;
            }
        }
        if cut == Some(Cut::Deadline) || (cut.is_some() && bounds.when_cut == WhenCut::Kill) {
            group.kill();
        }
        drop(stdout);
        drop(ender);
        drop(tx);
        let status = group.wait(killer).await;
        // Whatever the client still sends has no reader now.
        pump.abort();
        let stderr = finish(err_task, STDERR_GRACE).await;
        let _ = done_tx.send(Outcome {
            status,
            stderr,
            bytes_in: pumped.bytes.load(Ordering::Relaxed),
            truncated: pumped.truncated.load(Ordering::Relaxed),
            cut,
        });
    });
    *response.body_mut() = ChannelBody {
        rx,
        first: Some(rest),
    };
    Ok((response, done_rx))
}

/// A helper task's result, or the default if it is not done within
/// `grace` (it is then stopped).
async fn finish<T: Default>(task: JoinHandle<T>, grace: Duration) -> T {
    let stop = task.abort_handle();
    match tokio::time::timeout(grace, task).await {
        Ok(Ok(v)) => v,
        _ => {
            stop.abort();
            T::default()
        }
    }
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

    fn bounds(max_body: u64, deadline_ms: u64) -> Bounds {
        Bounds {
            max_body,
            deadline: Duration::from_millis(deadline_ms),
            stall: Duration::from_secs(60),
            when_cut: WhenCut::Kill,
        }
    }

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
        let (resp, done) = run(cmd, body, bounds(1 << 20, 60_000)).await.unwrap();
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
        let (resp, done) = run(cmd, body, bounds(100, 300)).await.unwrap();
        let _ = resp.into_body().collect().await;
        let out = done.await.unwrap();
        assert!(!out.status.unwrap().success());
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
    }

    /// A kill reaches what the child started: here a `sleep` holding the
    /// output pipes, which would otherwise keep the run (and its slot) alive.
    #[tokio::test]
    async fn a_deadline_kills_the_whole_process_group() {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg("printf 'X: 1\\n\\n'; sleep 30 & echo $! >&2; wait");
        let body = http_body_util::Empty::<Bytes>::new();
        let started = std::time::Instant::now();
        let (resp, done) = run(cmd, body, bounds(100, 300)).await.unwrap();
        let _ = resp.into_body().collect().await;
        let out = done.await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(out.cut, Some(Cut::Deadline));
        let pid = out.stderr.trim();
        assert!(!pid.is_empty());
        assert!(gone(pid), "the grandchild {pid} survived");
    }

    /// Dead, or a zombie left for init: either way no longer running.
    fn gone(pid: &str) -> bool {
        for _ in 0..100 {
            match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
                Err(_) => return true,
                Ok(s)
                    if s.rsplit(')')
                        .next()
                        .is_some_and(|r| r.trim_start().starts_with('Z')) =>
                {
                    return true;
                }
                Ok(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        false
    }

    /// A client that takes none of the output: a fetch's child is killed, a
    /// push's is drained to its end; either way the response ends broken.
    #[tokio::test]
    async fn a_client_that_stops_reading_is_cut() {
        for (when_cut, exits_ok) in [(WhenCut::Kill, false), (WhenCut::Drain, true)] {
            let mut cmd = Command::new("sh");
            cmd.arg("-c")
                .arg("printf 'X: 1\\n\\n'; head -c 4000000 /dev/zero");
            let body = http_body_util::Empty::<Bytes>::new();
            let b = Bounds {
                stall: Duration::from_millis(200),
                when_cut,
                ..bounds(100, 60_000)
            };
            let started = std::time::Instant::now();
            let (resp, done) = run(cmd, body, b).await.unwrap();
            let out = done.await.unwrap();
            assert!(started.elapsed() < Duration::from_secs(10));
            assert_eq!(out.cut, Some(Cut::ClientStalled), "{when_cut:?}");
            assert_eq!(out.status.unwrap().success(), exits_ok, "{when_cut:?}");
            assert!(resp.into_body().collect().await.is_err(), "{when_cut:?}");
        }
    }

    #[tokio::test]
    async fn body_over_the_bound_is_cut() {
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg("printf 'X: 1\\n\\n'; wc -c");
        let body = http_body_util::Full::new(Bytes::from(vec![b'a'; 5000]));
        let (resp, done) = run(cmd, body, bounds(100, 60_000)).await.unwrap();
        let got = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(String::from_utf8_lossy(&got).trim(), "0");
        assert!(done.await.unwrap().truncated);
    }
}
