//! The trickle protocol (HTTP pub/sub of media segments) used by Livepeer live AI video.
//!
//! A *channel* is a named stream of *segments* numbered 0, 1, 2, …. Publishers POST each
//! segment as a streaming body; subscribers GET a segment by number and receive its bytes as
//! they arrive (PROTOCOL.md §9). This crate has:
//! - [`Hub`]: the channels of one server, with [`Hub::router`] serving them over HTTP exactly as
//!   go-livepeer's `trickle_server.go` does (404, 470, `Lp-Trickle-*` headers, preconnects,
//!   bounded memory);
//! - [`HttpPublisher`] and [`HttpSubscriber`]: clients for any trickle server (go-livepeer,
//!   PyTrickle, ours), with preconnects and reconnects;
//! - [`LocalPublisher`] and [`LocalSubscriber`]: the same operations on a [`Hub`] in this
//!   process, without sockets.
//!
//! Both kinds implement [`Publish`] and [`Subscribe`], so code that relays segments is written
//! once and tested either way.
#![cfg_attr(not(test), warn(unused_crate_dependencies))]

mod client;
mod error;
mod local;
mod server;

use std::future::Future;

use bytes::Bytes;

pub use client::{
    ClientConfig, HttpPublisher, HttpSegmentReader, HttpSegmentWriter, HttpSubscriber,
};
pub use error::TrickleError;
pub use local::{LocalPublisher, LocalSegmentReader, LocalSegmentWriter, LocalSubscriber};
pub use server::{ChannelStats, Hub, HubConfig, MAX_CHANNEL_NAME};

/// Response header: the effective sequence number of this segment.
pub const HEADER_SEQ: &str = "Lp-Trickle-Seq";
/// Response header: the server's next write sequence number (the live edge).
pub const HEADER_LATEST: &str = "Lp-Trickle-Latest";
/// Response header, value [`CLOSED_VALUE`]: the channel is closed (end of stream).
pub const HEADER_CLOSED: &str = "Lp-Trickle-Closed";
/// Request header (POST): the publisher restarted; close every older segment first.
pub const HEADER_RESET: &str = "Lp-Trickle-Reset";
/// Request header (POST to the channel): the channel's mime type on creation.
pub const HEADER_EXPECT_CONTENT: &str = "Expect-Content";
/// The value of [`HEADER_CLOSED`].
pub const CLOSED_VALUE: &str = "terminated";
/// The non-standard status a server answers for a segment outside its window.
pub const STATUS_MISSED: u16 = 470;

/// Subscribe start position: the next segment written (wait for it).
pub const SEQ_NEXT: i64 = -1;
/// Subscribe start position: the segment being written now (or 0).
pub const SEQ_CURRENT: i64 = -2;

/// Writes segments into a channel, one after another.
pub trait Publish: Send {
    /// The writer of one segment.
    type Writer: WriteSegment;

    /// Opens the next segment. Its bytes go to subscribers as they are written; the segment
    /// ends at [`WriteSegment::finish`] (or when the writer is dropped, which abandons it).
    fn segment(&mut self) -> impl Future<Output = Result<Self::Writer, TrickleError>> + Send;

    /// Closes the channel for everyone (`DELETE {channel}`): subscribers see the end of stream.
    fn close(&mut self) -> impl Future<Output = Result<(), TrickleError>> + Send;
}

/// The writer of one segment.
pub trait WriteSegment: Send {
    /// Appends bytes to the segment.
    fn write(&mut self, chunk: Bytes) -> impl Future<Output = Result<(), TrickleError>> + Send;

    /// Ends the segment and returns its sequence number as the server assigned it.
    fn finish(self) -> impl Future<Output = Result<u64, TrickleError>> + Send;
}

/// Reads segments from a channel, one after another.
pub trait Subscribe: Send {
    /// The reader of one segment.
    type Reader: ReadSegment;

    /// Waits for the next segment. `Ok(None)` is the end of the stream (the channel was
    /// closed or no longer exists). A subscriber that fell behind the server's window jumps to
    /// the live edge.
    fn segment(
        &mut self,
    ) -> impl Future<Output = Result<Option<Self::Reader>, TrickleError>> + Send;
}

/// The reader of one segment.
pub trait ReadSegment: Send {
    /// Its sequence number.
    fn seq(&self) -> u64;

    /// The next bytes, `Ok(None)` when the segment is complete.
    fn chunk(&mut self) -> impl Future<Output = Result<Option<Bytes>, TrickleError>> + Send;
}

/// Writes `data` as one whole segment and returns its sequence number.
pub async fn publish_segment<P: Publish>(
    publisher: &mut P,
    data: Bytes,
) -> Result<u64, TrickleError> {
    let mut writer = publisher.segment().await?;
    if !data.is_empty() {
        writer.write(data).await?;
    }
    writer.finish().await
}

/// What [`copy_segment`] does when its source segment breaks off part-way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnCut {
    /// Finish the copy as far as it got: its readers get a shorter segment (a client's input,
    /// which is all there is of that segment).
    Finish,
    /// Abandon the copy, so that its readers see it cut too (an orchestrator's output).
    Abandon,
}

/// Why [`copy_segment`] stopped short.
#[derive(Debug)]
pub enum CopyError {
    /// The source failed (with [`OnCut::Abandon`]).
    Source(TrickleError),
    /// The sink failed.
    Sink(TrickleError),
    /// A write to the sink took longer than the limit.
    Stalled,
}

/// Copies the segment `reader` reads into a new segment of `sink`, chunk by chunk, so that
/// the copy's readers get each chunk as it comes. The copy opens at the first byte: an empty
/// source segment (an abandoned preconnect) is not copied, `Ok(None)`. `on_chunk` sees every
/// chunk before it is written, told whether it is the first (before the copy opens); each
/// write may take at most `write_limit`. Returns the bytes copied.
pub async fn copy_segment<R: ReadSegment, P: Publish>(
    reader: &mut R,
    sink: &mut P,
    (cut, write_limit): (OnCut, Option<std::time::Duration>),
    mut on_chunk: impl FnMut(bool, &Bytes) + Send,
) -> Result<Option<u64>, CopyError> {
    let mut writer = None;
    let mut copied = 0u64;
    loop {
        let chunk = match reader.chunk().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(e) if cut == OnCut::Abandon => return Err(CopyError::Source(e)),
            Err(e) => {
                tracing::debug!(error = %e, copied, "source segment cut short; copy finished");
                break;
            }
        };
        on_chunk(writer.is_none(), &chunk);
        let w = match &mut writer {
            Some(w) => w,
            None => writer.insert(sink.segment().await.map_err(CopyError::Sink)?),
        };
        copied += chunk.len() as u64;
        let written = match write_limit {
            Some(limit) => tokio::time::timeout(limit, w.write(chunk)).await,
            None => Ok(w.write(chunk).await),
        };
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(CopyError::Sink(e)),
            Err(_) => return Err(CopyError::Stalled),
        }
    }
    let Some(w) = writer else { return Ok(None) };
    w.finish().await.map_err(CopyError::Sink)?;
    Ok(Some(copied))
}

/// Reads a whole segment, refusing more than `limit` bytes.
pub async fn read_segment<R: ReadSegment>(
    reader: &mut R,
    limit: usize,
) -> Result<Bytes, TrickleError> {
    let mut out = bytes::BytesMut::new();
    while let Some(chunk) = reader.chunk().await? {
        if out.len() + chunk.len() > limit {
            return Err(TrickleError::TooLarge { limit });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out.freeze())
}
