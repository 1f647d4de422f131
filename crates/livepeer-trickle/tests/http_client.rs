//! The HTTP publisher and subscriber against the hub's routes on a real socket.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use common::{HttpFixture, TestServer, client_config, next_whole, payload, within};
use livepeer_trickle::{
    ClientConfig, HttpPublisher, HttpSubscriber, Hub, HubConfig, Publish, ReadSegment, SEQ_NEXT,
    Subscribe, TrickleError, WriteSegment, publish_segment,
};

async fn fixture() -> HttpFixture {
    HttpFixture::new(HubConfig::default()).await
}

#[tokio::test]
async fn publish_and_subscribe() {
    common::publish_and_subscribe(&fixture().await).await;
}

#[tokio::test]
async fn streams_chunk_by_chunk() {
    common::streams_chunk_by_chunk(&fixture().await).await;
}

#[tokio::test]
async fn late_joiner_gets_whole_segment() {
    common::late_joiner_gets_whole_segment(&fixture().await).await;
}

#[tokio::test]
async fn fan_out() {
    common::fan_out(&fixture().await).await;
}

#[tokio::test]
async fn missed_segment_jumps_to_live() {
    common::missed_segment_jumps_to_live(&fixture().await).await;
}

#[tokio::test]
async fn close_ends_waiting_subscriber() {
    common::close_ends_waiting_subscriber(&fixture().await).await;
}

#[tokio::test]
async fn write_after_delete_fails() {
    common::write_after_delete_fails(&fixture().await).await;
}

#[tokio::test]
async fn abandoned_writer_releases_readers() {
    common::abandoned_writer_releases_readers(&fixture().await).await;
}

#[tokio::test]
async fn oversized_segment_is_refused() {
    let fx = HttpFixture::new(HubConfig { max_segment_bytes: 4096, ..HubConfig::default() }).await;
    common::oversized_segment_is_refused(&fx).await;
}

#[tokio::test]
async fn over_tls_the_clients_negotiate_http2() {
    let fx = HttpFixture::tls(HubConfig::default()).await;
    fx.server.hub.create("probe", "video/mp2t").unwrap();
    let response = fx.client.get(format!("{}/next", fx.server.url("probe"))).send().await.unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    common::streams_chunk_by_chunk(&fx).await;
    common::fan_out(&fx).await;
    common::abandoned_writer_releases_readers(&fx).await;
    common::publish_and_subscribe(&fx).await;
}

#[tokio::test]
async fn publisher_into_unknown_channel_fails_promptly() {
    let fx = fixture().await;
    let mut publisher = fx.publisher_for("missing");
    let error = within("publish", publish_segment(&mut publisher, payload(0, 10))).await;
    assert!(matches!(error, Err(TrickleError::NotFound)), "{error:?}");
    // A writer whose request already failed reports it at once.
    let mut writer = match within("segment", publisher.segment()).await {
        Ok(writer) => writer,
        Err(error) => return assert!(error.is_end()),
    };
    let first = within("write", writer.write(payload(0, 10))).await;
    let second = within("write again", writer.write(payload(0, 10))).await;
    assert!(first.is_err() || second.is_err() || within("finish", writer.finish()).await.is_err());
}

#[tokio::test]
async fn publisher_starts_at_servers_next_and_resets_stale_segments() {
    let fx = fixture().await;
    fx.server.hub.create("resume", "video/mp2t").unwrap();
    let mut old = fx.publisher_for("resume");
    for i in 0..3 {
        publish_segment(&mut old, payload(i, 10)).await.unwrap();
    }
    // The old publisher dies in the middle of segment 3; a reader hangs on it.
    let mut stale = old.segment().await.unwrap();
    stale.write(Bytes::from_static(b"half")).await.unwrap();
    let mut subscriber = fx.subscriber_for("resume", 3);
    let mut reader = within("stale segment", subscriber.segment()).await.unwrap().unwrap();
    assert_eq!(reader.chunk().await.unwrap().unwrap(), Bytes::from_static(b"half"));
    std::mem::forget(stale);
    std::mem::forget(old);
    // The new publisher learns seq 4 from /next, and its reset releases the stale reader.
    let mut new = fx.publisher_for("resume");
    let seq = within("publish", publish_segment(&mut new, payload(4, 10))).await.unwrap();
    assert_eq!(seq, 4);
    assert!(within("stale reader released", reader.chunk()).await.unwrap().is_none());
    let (seq, bytes) = next_whole(&mut subscriber).await.unwrap();
    assert_eq!((seq, bytes), (4, payload(4, 10)));
}

#[tokio::test]
async fn subscriber_reissues_get_after_first_byte_timeout() {
    let fx = fixture().await;
    fx.server.hub.create("quiet", "video/mp2t").unwrap();
    let config = ClientConfig { first_byte_timeout: Duration::from_millis(150), ..client_config() };
    let mut subscriber =
        HttpSubscriber::new(fx.client.clone(), &fx.server.url("quiet"), SEQ_NEXT, config).unwrap();
    let reading = tokio::spawn(async move { next_whole(&mut subscriber).await.unwrap() });
    // Each silent 150 ms ends a GET and starts another; nothing is published meanwhile.
    within("re-issued GETs", async {
        while fx.server.gets.load(Ordering::SeqCst) < 3 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(!reading.is_finished(), "the subscriber kept waiting through its re-issues");
    let mut publisher = fx.publisher_for("quiet");
    publish_segment(&mut publisher, payload(0, 100)).await.unwrap();
    let (seq, bytes) = within("read", reading).await.unwrap();
    assert_eq!((seq, bytes), (0, payload(0, 100)));
}

#[tokio::test]
async fn publisher_and_subscriber_survive_server_restart() {
    let hub = Hub::new(HubConfig::default());
    hub.create("restart", "video/mp2t").unwrap();
    let server = TestServer::start(hub).await;
    let url = server.url("restart");
    let config = ClientConfig { retry_pause: Duration::from_millis(100), ..client_config() };
    let client = config.client().unwrap();
    let mut publisher =
        HttpPublisher::new(client.clone(), &url, "video/mp2t", config.clone()).unwrap();
    let mut subscriber = HttpSubscriber::new(client.clone(), &url, 0, config.clone()).unwrap();
    for i in 0..3 {
        publish_segment(&mut publisher, payload(i, 500)).await.unwrap();
        assert_eq!(next_whole(&mut subscriber).await.unwrap(), (i as u64, payload(i, 500)));
    }

    // Crash: every connection drops. Then a new server (fresh hub, channel re-created) comes
    // back on the same port while the clients are retrying.
    let addr = server.kill().await;
    let reading = tokio::spawn(async move {
        let got = next_whole(&mut subscriber).await;
        (got, subscriber)
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let hub = Hub::new(HubConfig::default());
    hub.create("restart", "video/mp2t").unwrap();
    let server = TestServer::restart_at(hub, addr).await;

    // The publisher carries on with its own counter; a failed attempt may surface once.
    let mut published = None;
    for _ in 0..20 {
        match within("publish after restart", publish_segment(&mut publisher, payload(3, 500)))
            .await
        {
            Ok(seq) => {
                published = Some(seq);
                break;
            }
            Err(error) => {
                assert!(error.retry_safe(), "{error:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    let published = published.expect("publisher never got through after the restart");
    let (got, mut subscriber) = within("subscriber after restart", reading).await.unwrap();
    let (seq, bytes) = got.expect("subscriber ended instead of retrying");
    assert_eq!((seq, bytes), (published, payload(3, 500)));

    // And the stream goes on.
    let seq = publish_segment(&mut publisher, payload(4, 500)).await.unwrap();
    assert_eq!(next_whole(&mut subscriber).await.unwrap(), (seq, payload(4, 500)));
    publisher.close().await.unwrap();
    assert!(!server.hub.contains("restart"));
    assert!(within("end", subscriber.segment()).await.unwrap().is_none());
}

#[tokio::test]
async fn subscriber_gives_up_when_server_stays_down() {
    let hub = Hub::new(HubConfig::default());
    hub.create("down", "video/mp2t").unwrap();
    let server = TestServer::start(hub).await;
    let url = server.url("down");
    server.kill().await;
    let config = ClientConfig { max_retries: 2, ..client_config() };
    let mut subscriber = HttpSubscriber::new(config.client().unwrap(), &url, 0, config).unwrap();
    let error = within("subscriber", subscriber.segment()).await.unwrap_err();
    assert!(matches!(error, TrickleError::Transport(_)), "{error:?}");
}

#[tokio::test]
async fn reader_enforces_its_size_limit() {
    let fx = fixture().await;
    fx.server.hub.create("limit", "video/mp2t").unwrap();
    let config = ClientConfig { max_segment_bytes: 1000, ..client_config() };
    let mut subscriber =
        HttpSubscriber::new(fx.client.clone(), &fx.server.url("limit"), 0, config).unwrap();
    let mut publisher = fx.publisher_for("limit");
    publish_segment(&mut publisher, payload(0, 5000)).await.unwrap();
    let mut reader = within("segment", subscriber.segment()).await.unwrap().unwrap();
    assert_eq!(reader.content_type(), Some("video/mp2t"));
    let mut result = Ok(());
    while let Some(chunk) = reader.chunk().await.transpose() {
        if let Err(error) = chunk {
            result = Err(error);
            break;
        }
    }
    assert!(matches!(result, Err(TrickleError::TooLarge { limit: 1000 })), "{result:?}");
}

#[test]
fn bad_urls_are_refused() {
    let client = client_config().client().unwrap();
    assert!(matches!(
        HttpPublisher::new(client.clone(), "nope", "x", client_config()),
        Err(TrickleError::Invalid(_))
    ));
    assert!(matches!(
        HttpSubscriber::new(client, "ftp://h/x", 0, client_config()),
        Err(TrickleError::Invalid(_))
    ));
}

trait FixtureExt {
    fn publisher_for(&self, channel: &str) -> HttpPublisher;
    fn subscriber_for(&self, channel: &str, start: i64) -> HttpSubscriber;
}

impl FixtureExt for HttpFixture {
    fn publisher_for(&self, channel: &str) -> HttpPublisher {
        common::Fixture::publisher(self, channel)
    }
    fn subscriber_for(&self, channel: &str, start: i64) -> HttpSubscriber {
        common::Fixture::subscriber(self, channel, start)
    }
}

/// Many live channels at once, each with a publisher and two subscribers, over one client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_streams() {
    const CHANNELS: usize = 40;
    const SEGMENTS: usize = 4;
    let fx = fixture().await;
    let mut tasks = Vec::new();
    for c in 0..CHANNELS {
        let name = format!("many-{c}");
        fx.server.hub.create(&name, "video/mp2t").unwrap();
        for _ in 0..2 {
            let mut subscriber = fx.subscriber_for(&name, 0);
            tasks.push(tokio::spawn(async move {
                for i in 0..SEGMENTS {
                    let (seq, bytes) = next_whole(&mut subscriber).await.unwrap();
                    assert_eq!((seq, bytes.len()), (i as u64, 8 * 4096));
                    assert_eq!(bytes.slice(..4096), payload(c * 100 + i, 4096));
                }
            }));
        }
        let mut publisher = fx.publisher_for(&name);
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            for i in 0..SEGMENTS {
                let mut writer = publisher.segment().await.unwrap();
                for _ in 0..8 {
                    writer.write(payload(c * 100 + i, 4096)).await.unwrap();
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                assert_eq!(writer.finish().await.unwrap(), i as u64);
            }
            publisher.close().await.unwrap();
        }));
    }
    let started = tokio::time::Instant::now();
    for task in tasks {
        tokio::time::timeout(Duration::from_secs(30), task).await.unwrap().unwrap();
    }
    eprintln!("{CHANNELS} channels x {SEGMENTS} segments: {:?}", started.elapsed());
    assert!(fx.server.hub.is_empty());
}

/// A server whose `GET …/next` answers `Lp-Trickle-Latest: 7` and then an endless body, and
/// which takes segment POSTs without answering them.
/// A trickle server whose `GET /next` says 7 in its header and sends `body` after its head:
/// `None` for an endless chunked body, else the given raw bytes, then the connection closed.
async fn next_server(body: Option<&'static str>) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = [0u8; 1024];
                let Ok(n) = socket.read(&mut head).await else { return };
                if !head[..n].starts_with(b"GET ") {
                    // A POST: held open, unanswered.
                    while socket.read(&mut head).await.is_ok_and(|n| n > 0) {}
                    return;
                }
                if let Some(body) = body {
                    let _ = socket.write_all(body.as_bytes()).await;
                    return;
                }
                let start = "HTTP/1.1 200 OK\r\nLp-Trickle-Latest: 7\r\n\
                             Transfer-Encoding: chunked\r\n\r\n";
                if socket.write_all(start.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = format!("1000\r\n{}\r\n", "7".repeat(0x1000));
                while socket.write_all(chunk.as_bytes()).await.is_ok() {}
            });
        }
    });
    addr
}

#[tokio::test]
async fn an_endless_next_answer_is_read_no_further_than_a_number() {
    let addr = next_server(None).await;
    let config = ClientConfig {
        connect_timeout: Duration::from_millis(500),
        first_byte_timeout: Duration::from_millis(500),
        ..client_config()
    };
    let url = format!("http://{addr}/ai/trickle/endless");
    let mut publisher =
        HttpPublisher::new(reqwest::Client::new(), &url, "video/mp2t", config).unwrap();
    // Before the fix this read the endless body whole: it never returned, and grew.
    let writer = within("segment after an endless /next", publisher.segment()).await.unwrap();
    // The body was no number, so the header's sequence is used.
    assert_eq!(writer.seq(), 7);
    assert_eq!(publisher.next_seq(), Some(8));
}

#[tokio::test]
async fn a_next_answer_cut_short_is_no_number() {
    // "12" of a declared three bytes, then the connection closed.
    let cut = "HTTP/1.1 200 OK\r\nLp-Trickle-Latest: 7\r\nContent-Length: 3\r\n\r\n12";
    let addr = next_server(Some(cut)).await;
    let url = format!("http://{addr}/ai/trickle/cut");
    let mut publisher =
        HttpPublisher::new(reqwest::Client::new(), &url, "video/mp2t", client_config()).unwrap();
    let writer = within("segment after a cut /next", publisher.segment()).await.unwrap();
    // Before the fix the 12 it had read was taken; the header's sequence is used instead.
    assert_eq!(writer.seq(), 7);
}
