//! A bound on how long a write to a client may wait.
//!
//! A client that stops reading a response leaves the gate's write pending
//! for ever: the git child behind it is cut after the stall timeout
//! ([`crate::cgi`]), but the connection itself, and with it one of the
//! gate's connection slots, would stay until the client went away. A
//! write that makes no progress for the bound fails instead, and hyper
//! closes the connection.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// `io` whose writes (and flushes) fail with `TimedOut` once one has been
/// pending for `limit`.
pub struct WriteBound<T> {
    io: T,
    limit: Duration,
    /// Armed while a write is pending; dropped when one makes progress.
    waiting: Option<Pin<Box<Sleep>>>,
}

impl<T> WriteBound<T> {
    pub fn new(io: T, limit: Duration) -> Self {
        WriteBound {
            io,
            limit,
            waiting: None,
        }
    }

    /// What a write that returned `polled` means once the bound is applied.
    fn judge<R>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        if polled.is_ready() {
            self.waiting = None;
            return polled;
        }
        let limit = self.limit;
        let timer = self
            .waiting
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client took nothing of the response for the stall timeout",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WriteBound<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WriteBound<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, data);
        self.judge(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.judge(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_flush(cx);
        self.judge(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_shutdown(cx);
        self.judge(cx, polled)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn a_write_nobody_reads_fails_after_the_bound_and_a_read_one_does_not() {
        // A pipe of 64 bytes: the 65th byte waits for the reader.
        let (near, mut far) = tokio::io::duplex(64);
        let mut bounded = WriteBound::new(near, Duration::from_secs(60));

        // Read in time, a write that waited 59 s goes through.
        let reader = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(59)).await;
            let mut got = vec![0u8; 128];
            far.read_exact(&mut got).await.unwrap();
            far
        });
        bounded.write_all(&[1u8; 128]).await.unwrap();
        let _far = reader.await.unwrap();

        // Nobody reads: the bound ends the write.
        let started = tokio::time::Instant::now();
        let err = bounded.write_all(&[2u8; 128]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(60));
    }
}
