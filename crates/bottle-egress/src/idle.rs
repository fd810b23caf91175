//! An idle bound for relayed byte streams: passthrough tunnels and
//! WebSockets, which outlive their HTTP exchange and hold one of the
//! tunnel slots while open. A relay that has moved no byte either way for
//! the bound is ended, so forgotten sockets give their slots back.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// When bytes last moved on any stream [`Activity::watch`] wrapped, and
/// how many.
#[derive(Clone)]
pub struct Activity(Arc<Shared>);

struct Shared {
    origin: Instant,
    /// Milliseconds since `origin` of the last byte moved.
    last_ms: AtomicU64,
    bytes: AtomicU64,
}

impl Default for Activity {
    fn default() -> Self {
        Self::new()
    }
}

impl Activity {
    pub fn new() -> Self {
        Activity(Arc::new(Shared {
            origin: Instant::now(),
            last_ms: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        }))
    }

    /// `io`, with every byte read or written counted as activity.
    pub fn watch<T>(&self, io: T) -> Watched<T> {
        Watched {
            io,
            activity: self.clone(),
        }
    }

    /// Bytes read and written through the watched streams (each byte of a
    /// relay counts twice: read on one side, written on the other).
    pub fn bytes(&self) -> u64 {
        self.0.bytes.load(Ordering::Relaxed)
    }

    fn touch(&self, n: usize) {
        let ms = u64::try_from(self.0.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.0.last_ms.store(ms, Ordering::Relaxed);
        self.0.bytes.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Completes once no byte has moved for `limit`.
    async fn idle_for(&self, limit: Duration) {
        loop {
            let last =
                self.0.origin + Duration::from_millis(self.0.last_ms.load(Ordering::Relaxed));
            let deadline = last + limit;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }

    /// Runs `relay` until it ends (`Some`) or the streams have been idle
    /// for `limit` (`None`; `relay` is dropped, and with it the streams).
    pub async fn until_idle<F: Future>(&self, limit: Duration, relay: F) -> Option<F::Output> {
        tokio::select! {
            out = relay => Some(out),
            () = self.idle_for(limit) => None,
        }
    }
}

/// A stream whose reads and writes are [`Activity`].
pub struct Watched<T> {
    io: T,
    activity: Activity,
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        let n = buf.filled().len().saturating_sub(before);
        if n > 0 {
            self.activity.touch(n);
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = &polled
            && *n > 0
        {
            self.activity.touch(*n);
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn an_idle_relay_ends_and_a_busy_one_does_not() {
        let act = Activity::new();
        let (a, mut b) = tokio::io::duplex(64);
        let mut a = act.watch(a);
        // Busy: a byte every 400 ms for 2 s under a 1 s bound.
        let busy = act.until_idle(Duration::from_secs(1), async {
            let mut buf = [0u8; 1];
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_millis(400)).await;
                b.write_all(b"x").await.unwrap();
                a.read_exact(&mut buf).await.unwrap();
            }
        });
        assert!(busy.await.is_some(), "a busy relay is not idle");
        assert_eq!(act.bytes(), 5);
        // Idle: nothing moves; ended after the bound.
        let started = Instant::now();
        let idle = act.until_idle(Duration::from_secs(1), std::future::pending::<()>());
        assert!(idle.await.is_none());
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_secs(1) && waited < Duration::from_secs(2),
            "{waited:?}"
        );
    }
}
