//! The in-process publisher and subscriber on a hub.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

mod common;

use bytes::Bytes;
use common::{LocalFixture, within};
use livepeer_trickle::{
    Hub, HubConfig, Publish, ReadSegment, Subscribe, TrickleError, WriteSegment, publish_segment,
};

fn fixture() -> LocalFixture {
    LocalFixture::new(HubConfig::default())
}

#[tokio::test]
async fn publish_and_subscribe() {
    common::publish_and_subscribe(&fixture()).await;
}

#[tokio::test]
async fn streams_chunk_by_chunk() {
    common::streams_chunk_by_chunk(&fixture()).await;
}

#[tokio::test]
async fn late_joiner_gets_whole_segment() {
    common::late_joiner_gets_whole_segment(&fixture()).await;
}

#[tokio::test]
async fn fan_out() {
    common::fan_out(&fixture()).await;
}

#[tokio::test]
async fn missed_segment_jumps_to_live() {
    common::missed_segment_jumps_to_live(&fixture()).await;
}

#[tokio::test]
async fn close_ends_waiting_subscriber() {
    common::close_ends_waiting_subscriber(&fixture()).await;
}

#[tokio::test]
async fn write_after_delete_fails() {
    common::write_after_delete_fails(&fixture()).await;
}

#[tokio::test]
async fn abandoned_writer_releases_readers() {
    common::abandoned_writer_releases_readers(&fixture()).await;
}

#[tokio::test]
async fn oversized_segment_is_refused() {
    common::oversized_segment_is_refused(&LocalFixture::new(HubConfig {
        max_segment_bytes: 4096,
        ..HubConfig::default()
    }))
    .await;
}

#[tokio::test]
async fn unknown_channel() {
    let hub = Hub::new(HubConfig::default());
    let error = publish_segment(&mut hub.publisher("nope"), Bytes::from_static(b"x")).await;
    assert!(matches!(error, Err(TrickleError::NotFound)));
    assert!(hub.subscriber("nope", 0).segment().await.unwrap().is_none());
}

#[tokio::test]
async fn empty_segment_is_delivered_and_advances() {
    let hub = Hub::new(HubConfig::default());
    hub.create("empty", "application/json").unwrap();
    let mut subscriber = hub.subscriber("empty", 0);
    let mut publisher = hub.publisher("empty");
    assert_eq!(publish_segment(&mut publisher, Bytes::new()).await.unwrap(), 0);
    assert_eq!(hub.stats("empty").unwrap().next_write, 1);
    let mut reader = subscriber.segment().await.unwrap().unwrap();
    assert_eq!(reader.seq(), 0);
    assert!(reader.chunk().await.unwrap().is_none());
    assert_eq!(publish_segment(&mut publisher, Bytes::from_static(b"{}")).await.unwrap(), 1);
    let mut reader = subscriber.segment().await.unwrap().unwrap();
    assert_eq!((reader.seq(), reader.chunk().await.unwrap()), (1, Some(Bytes::from_static(b"{}"))));
}

#[tokio::test]
async fn first_segment_resets_stale_segments() {
    let hub = Hub::new(HubConfig::default());
    hub.create("reset", "video/mp2t").unwrap();
    // A publisher that died mid-segment leaves its reader hanging...
    let mut old = hub.publisher("reset");
    let mut stale = old.segment().await.unwrap();
    stale.write(Bytes::from_static(b"half")).await.unwrap();
    let mut reader = hub.subscriber("reset", 0).segment().await.unwrap().unwrap();
    assert_eq!(reader.chunk().await.unwrap().unwrap(), Bytes::from_static(b"half"));
    std::mem::forget(stale); // no drop: it must be the reset that releases the reader
    // ...until a new publisher starts: its first segment closes the older ones.
    let mut new = hub.publisher("reset");
    let seq = publish_segment(&mut new, Bytes::from_static(b"fresh")).await.unwrap();
    assert_eq!(seq, 1);
    assert!(within("stale reader released", reader.chunk()).await.unwrap().is_none());
}

#[tokio::test]
async fn subscriber_ends_when_channel_deleted_mid_read() {
    let hub = Hub::new(HubConfig::default());
    hub.create("mid", "video/mp2t").unwrap();
    let mut subscriber = hub.subscriber("mid", 0);
    let mut publisher = hub.publisher("mid");
    let mut writer = publisher.segment().await.unwrap();
    writer.write(Bytes::from_static(b"a")).await.unwrap();
    let mut reader = subscriber.segment().await.unwrap().unwrap();
    assert_eq!(reader.chunk().await.unwrap().unwrap(), Bytes::from_static(b"a"));
    assert!(hub.close("mid"));
    assert!(within("reader ends", reader.chunk()).await.unwrap().is_none());
    assert!(matches!(writer.write(Bytes::from_static(b"b")).await, Err(TrickleError::Closed)));
    assert!(subscriber.segment().await.unwrap().is_none());
}

/// A source segment of scripted chunks that may break off at the end.
struct Scripted {
    chunks: Vec<Bytes>,
    cut: bool,
}

impl ReadSegment for Scripted {
    fn seq(&self) -> u64 {
        0
    }

    async fn chunk(&mut self) -> Result<Option<Bytes>, TrickleError> {
        if !self.chunks.is_empty() {
            return Ok(Some(self.chunks.remove(0)));
        }
        if self.cut { Err(TrickleError::Transport("reset".into())) } else { Ok(None) }
    }
}

#[tokio::test]
async fn a_copy_is_finished_or_abandoned_when_its_source_breaks_off() {
    use livepeer_trickle::{CopyError, OnCut, copy_segment, read_segment};
    let hub = Hub::new(HubConfig::default());
    hub.create("copy", "video/MP2T").unwrap();
    let mut sink = hub.publisher("copy");
    let mut sub = hub.subscriber("copy", 0);
    let script =
        |cut| Scripted { chunks: vec![Bytes::from_static(b"ab"), Bytes::from_static(b"cd")], cut };
    let mut seen = Vec::new();
    let mut reader = script(false);
    let copied = copy_segment(&mut reader, &mut sink, (OnCut::Abandon, None), |first, c| {
        seen.push((first, c.len()));
    });
    assert_eq!(copied.await.unwrap(), Some(4));
    assert_eq!(seen, [(true, 2), (false, 2)]);
    let mut got = within("the copy", sub.segment()).await.unwrap().unwrap();
    assert_eq!(read_segment(&mut got, 16).await.unwrap(), Bytes::from_static(b"abcd"));
    // Cut short and finished: the copy is what came.
    let mut cut = script(true);
    let copied = copy_segment(&mut cut, &mut sink, (OnCut::Finish, None), |_, _| {});
    assert_eq!(copied.await.unwrap(), Some(4));
    let mut got = within("the copy", sub.segment()).await.unwrap().unwrap();
    assert_eq!(read_segment(&mut got, 16).await.unwrap(), Bytes::from_static(b"abcd"));
    // Cut short and abandoned: its readers see it cut, not whole.
    let mut cut = script(true);
    let copied = copy_segment(&mut cut, &mut sink, (OnCut::Abandon, None), |_, _| {});
    assert!(matches!(copied.await, Err(CopyError::Source(TrickleError::Transport(_)))));
    // An empty source is not copied.
    let mut empty = Scripted { chunks: Vec::new(), cut: false };
    let copied = copy_segment(&mut empty, &mut sink, (OnCut::Abandon, None), |_, _| {});
    assert_eq!(copied.await.unwrap(), None);
}
