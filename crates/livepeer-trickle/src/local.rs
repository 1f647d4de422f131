//! Publishing and subscribing on a [`crate::Hub`] in the same process.
//!
//! These behave like [`crate::HttpPublisher`] and [`crate::HttpSubscriber`] against the hub's
//! HTTP routes (same sequence numbers, same end-of-stream and jump-to-live rules), without
//! sockets or copies.

use std::sync::Arc;

use bytes::Bytes;

use crate::server::{AppendError, Channel, Cursor, ReadSlot, Segment};
use crate::{Hub, Publish, ReadSegment, Subscribe, TrickleError, WriteSegment};

/// Publishes into a channel of a local hub.
#[derive(Debug)]
pub struct LocalPublisher {
    hub: Hub,
    name: String,
    /// The sequence of the next segment; taken from the channel on first use.
    next: Option<u64>,
}

impl LocalPublisher {
    pub(crate) fn new(hub: Hub, name: &str) -> Self {
        Self { hub, name: name.to_owned(), next: None }
    }

    fn channel(&self) -> Result<Arc<Channel>, TrickleError> {
        let channel = self.hub.channel(&self.name).ok_or(TrickleError::NotFound)?;
        if channel.is_closed() {
            return Err(TrickleError::Closed);
        }
        Ok(channel)
    }
}

/// The writer of one local segment.
#[derive(Debug)]
pub struct LocalSegmentWriter {
    channel: Arc<Channel>,
    segment: Arc<Segment>,
    written: usize,
    finished: bool,
}

impl LocalSegmentWriter {
    /// The segment's sequence number.
    pub fn seq(&self) -> u64 {
        self.segment.seq()
    }
}

impl Drop for LocalSegmentWriter {
    fn drop(&mut self) {
        if !self.finished {
            // Abandoned: readers must not wait for the rest.
            self.segment.close();
        }
    }
}

/// Subscribes to a channel of a local hub.
#[derive(Debug)]
pub struct LocalSubscriber {
    hub: Hub,
    name: String,
    next: i64,
    ended: bool,
    /// Consecutive waits while ahead of the live edge.
    ahead: u32,
    /// The last segment handed out.
    last: Option<u64>,
}

/// How long a subscriber ahead of the live edge waits before asking again, and how many times
/// before it follows the edge backwards (a publisher that restarted from 0), as PyTrickle does.
const AHEAD_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);
const AHEAD_TRIES: u32 = 5;

impl LocalSubscriber {
    pub(crate) fn new(hub: Hub, name: &str, start: i64) -> Self {
        Self { hub, name: name.to_owned(), next: start, ended: false, ahead: 0, last: None }
    }

    /// The sequence number (or special position) the next [`Subscribe::segment`] asks for.
    pub fn next_seq(&self) -> i64 {
        self.next
    }
}

/// The reader of one local segment.
#[derive(Debug)]
pub struct LocalSegmentReader {
    seq: u64,
    first: Option<Bytes>,
    cursor: Cursor,
}

impl Publish for LocalPublisher {
    type Writer = LocalSegmentWriter;

    async fn segment(&mut self) -> Result<LocalSegmentWriter, TrickleError> {
        let channel = self.channel()?;
        // The first segment resets the channel, as the HTTP publisher does: segments left open
        // by an earlier publisher are closed so their readers move on.
        let (seq, reset) = match self.next {
            Some(seq) => (seq, false),
            None => (channel.next_write(), true),
        };
        let seq_arg =
            i64::try_from(seq).map_err(|_| TrickleError::Invalid("sequence overflow".into()))?;
        let segment = channel.write_slot(seq_arg, reset).map_err(|_| TrickleError::Closed)?;
        self.next = Some(seq.saturating_add(1));
        Ok(LocalSegmentWriter { channel, segment, written: 0, finished: false })
    }

    async fn close(&mut self) -> Result<(), TrickleError> {
        // Closing a channel that is already gone is not an error: the outcome is the same.
        self.hub.close(&self.name);
        Ok(())
    }
}

impl WriteSegment for LocalSegmentWriter {
    async fn write(&mut self, chunk: Bytes) -> Result<(), TrickleError> {
        if self.channel.is_closed() {
            return Err(TrickleError::Closed);
        }
        if chunk.is_empty() {
            return Ok(());
        }
        if self.written == 0 {
            self.channel.mark_written(self.segment.seq());
        }
        let len = chunk.len();
        match self.segment.append(chunk, self.channel.max_segment_bytes()) {
            Ok(()) => {}
            Err(AppendError::TooLarge) => {
                self.segment.close();
                return Err(TrickleError::TooLarge { limit: self.channel.max_segment_bytes() });
            }
            // Closed by someone else (DELETE, reset, eviction) while the channel lives on: the
            // HTTP server drops the rest of such a body and still answers 200; so do we.
            Err(AppendError::Closed) => {}
        }
        self.written += len;
        Ok(())
    }

    async fn finish(mut self) -> Result<u64, TrickleError> {
        self.finished = true;
        self.segment.close();
        if self.channel.is_closed() {
            return Err(TrickleError::Closed);
        }
        if self.written == 0 {
            // Like an empty POST: the live edge moves past this seq.
            self.channel.mark_written(self.segment.seq());
        }
        Ok(self.segment.seq())
    }
}

impl Subscribe for LocalSubscriber {
    type Reader = LocalSegmentReader;

    async fn segment(&mut self) -> Result<Option<LocalSegmentReader>, TrickleError> {
        loop {
            if self.ended {
                return Ok(None);
            }
            let Some(channel) = self.hub.readable(&self.name) else {
                self.ended = true;
                return Ok(None);
            };
            let segment = match channel.read_slot(self.next) {
                ReadSlot::Found { segment, .. } => segment,
                ReadSlot::Missing { closed: true, .. } => {
                    self.ended = true;
                    return Ok(None);
                }
                // Fell out of the window (or asked ahead of it): jump to the live edge, which
                // is always readable while the channel is open.
                ReadSlot::Missing { latest, .. } => {
                    let latest = i64::try_from(latest).unwrap_or(crate::SEQ_NEXT);
                    // Ahead of the edge (the segment before it was abandoned empty): jumping
                    // back at once would re-read that segment and come here again, a loop
                    // that never awaits. Wait for the publisher first.
                    // The edge is the segment already handed out: only new data helps.
                    let same = u64::try_from(latest).ok() == self.last;
                    if latest < self.next && (same || self.ahead < AHEAD_TRIES) {
                        self.ahead += 1;
                        tokio::time::sleep(AHEAD_PAUSE).await;
                        continue;
                    }
                    self.ahead = 0;
                    self.next = latest;
                    continue;
                }
            };
            self.ahead = 0;
            let mut cursor = segment.cursor();
            // Wait for the first byte, as an HTTP subscriber waits for the response headers.
            let first = cursor.next().await;
            if first.is_none() && channel.is_closed() {
                self.ended = true;
                return Ok(None);
            }
            let seq = segment.seq();
            self.last = Some(seq);
            self.next = i64::try_from(seq.saturating_add(1)).unwrap_or(i64::MAX);
            return Ok(Some(LocalSegmentReader { seq, first, cursor }));
        }
    }
}

impl ReadSegment for LocalSegmentReader {
    fn seq(&self) -> u64 {
        self.seq
    }

    async fn chunk(&mut self) -> Result<Option<Bytes>, TrickleError> {
        if let Some(first) = self.first.take() {
            return Ok(Some(first));
        }
        Ok(self.cursor.next().await)
    }
}
