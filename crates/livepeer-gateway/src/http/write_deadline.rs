//! A socket that fails its writes once the peer has taken no bytes for a deadline.
//!
//! hyper has a deadline for reading a request's headers but none for writing a response: a
//! client that stops reading (a stalled trickle subscriber, an abandoned download) leaves
//! hyper waiting for the socket to drain, holding the connection and whatever the response
//! body pins, for as long as the client likes. Wrapped in [`WriteDeadline`], a write that
//! cannot make progress for the deadline fails with `TimedOut`, and hyper drops the
//! connection, as nginx's `send_timeout` does. The clock runs only while bytes are waiting
//! to be sent, so a slow answer (an LLM thinking, a segment not yet published) is not a stall.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// `io` whose writes fail after `timeout` without progress.
#[derive(Debug)]
pub(crate) struct WriteDeadline<T> {
    io: T,
    timeout: Duration,
    /// Armed when a write first finds the socket full; disarmed by any progress.
    stalled: Option<Pin<Box<Sleep>>>,
    /// Where a write that had to wait, or a large one, records when it went through, in
    /// milliseconds after `opened`: a slow reader still taking an answer is busy, not idle,
    /// whatever hyper's count of requests in flight says (it drops a request once it holds
    /// the whole body).
    progress: Option<(Instant, Arc<AtomicU64>)>,
}

impl<T> WriteDeadline<T> {
    /// Wraps `io`.
    pub(crate) fn new(io: T, timeout: Duration) -> Self {
        Self { io, timeout, stalled: None, progress: None }
    }

    /// Records in `at` (milliseconds after `opened`) when each write that had to wait for
    /// the peer, or that was large, went through.
    pub(crate) fn with_progress(mut self, opened: Instant, at: Arc<AtomicU64>) -> Self {
        self.progress = Some((opened, at));
        self
    }

    /// Passes a write's outcome through, arming the deadline when it is `Pending` (and
    /// registering `cx` with it, so that the task wakes up to fail once it passes).
    fn watch<R>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        if poll.is_ready() {
            // Only a write that waited is recorded here: one that went straight through costs
            // no clock reading (the common case, and every request's).
            if self.stalled.take().is_some() {
                self.record();
            }
            return poll;
        }
        let timeout = self.timeout;
        let sleep = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        ready!(sleep.as_mut().poll(cx));
        Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "peer took no bytes")))
    }

    /// Passes a write of bytes through [`Self::watch`], recording a large one as progress
    /// too: an HTTP/2 client's window, not the socket, paces what it is sent, so a slow
    /// reader's writes need not wait, but each one it makes room for is a large one.
    fn watch_write(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        let poll = self.watch(cx, poll);
        if let Poll::Ready(Ok(n)) = poll
            && n >= LARGE_WRITE
        {
            self.record();
        }
        poll
    }

    /// Records now as the time of the latest progress.
    fn record(&self) {
        if let Some((opened, at)) = &self.progress {
            let ms = u64::try_from(opened.elapsed().as_millis()).unwrap_or(u64::MAX);
            at.store(ms, Ordering::Release);
        }
    }
}

/// A write at least this large is progress of an answer: larger than anything a connection
/// sends by itself (HTTP/2 pings, settings, window updates, `GOAWAY`), and than the head and
/// body of most small answers, which then cost no clock reading.
const LARGE_WRITE: usize = 4096;

impl<T: AsyncRead + Unpin> AsyncRead for WriteDeadline<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let poll = Pin::new(&mut this.io).poll_write(cx, buf);
        this.watch_write(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let poll = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.watch_write(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let poll = Pin::new(&mut this.io).poll_flush(cx);
        this.watch(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let poll = Pin::new(&mut this.io).poll_shutdown(cx);
        this.watch(cx, poll)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_stops_reading_fails_the_write_after_the_deadline() {
        let (near, mut far) = tokio::io::duplex(1024);
        let mut near = WriteDeadline::new(near, Duration::from_secs(5));
        // Progress keeps the deadline away, however long it takes in all.
        for _ in 0..10 {
            near.write_all(&[1; 1024]).await.unwrap();
            tokio::time::advance(Duration::from_secs(4)).await;
            far.read_exact(&mut [0; 1024]).await.unwrap();
        }
        // Nothing is taken any more: the write fails once the deadline passes.
        let started = tokio::time::Instant::now();
        let error = near.write_all(&[1; 4096]).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }
}
