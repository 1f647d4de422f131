//! Subscribers that stop reading, over raw sockets: the cap on readers per channel, and the
//! stall deadline that cuts a reader who accepts no bytes and releases its segment. Also a
//! publisher whose segment was closed under it and whose body then stays open. (The
//! memory they hold is measured in `reader_memory.rs`, alone in its process.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{PREFIX, TestServer, within};
use livepeer_trickle::{Hub, HubConfig};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};

/// A segment bigger than any socket buffer a stalled reader could leave room for.
const BIG: usize = 16 << 20;

/// A raw HTTP/1.1 GET of `path` whose socket has a small receive buffer, so that the server
/// cannot park much of the answer in the kernel.
async fn raw_get(addr: SocketAddr, path: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    let request = format!("GET {PREFIX}/{path} HTTP/1.1\r\nhost: test\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    stream
}

/// Reads until the end of the response head plus at least `more` body bytes; returns the head.
async fn read_head(stream: &mut TcpStream, more: usize) -> String {
    let mut seen = Vec::new();
    let mut buf = vec![0u8; 8192];
    loop {
        let n = within("response head", stream.read(&mut buf)).await.unwrap();
        assert!(n > 0, "connection closed before the head: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
        if let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n")
            && seen.len() >= end + 4 + more
        {
            return String::from_utf8_lossy(&seen[..end]).into_owned();
        }
    }
}

/// Publishes `len` bytes as segment 0 of `channel` and waits for the publisher's answer.
async fn publish(addr: SocketAddr, channel: &str, len: usize) {
    let url = format!("http://{addr}{PREFIX}/{channel}/0");
    let response = reqwest::Client::new().post(url).body(vec![7u8; len]).send().await.unwrap();
    assert_eq!(response.status(), 200);
}

/// Waits until channel `name` counts `readers` subscribers.
async fn readers_reach(hub: &Hub, name: &str, readers: usize) {
    within(&format!("{readers} readers on {name}"), async {
        while hub.stats(name).unwrap().readers != readers {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn readers_over_the_cap_are_refused() {
    let hub = Hub::new(HubConfig { max_readers: 3, ..HubConfig::default() });
    hub.create("c", "video/mp2t").unwrap();
    let server = TestServer::start(hub.clone()).await;
    // Preconnected readers waiting for segment 0 hold their place like streaming ones.
    let mut waiting = Vec::new();
    for _ in 0..3 {
        waiting.push(raw_get(server.addr, "c/0").await);
    }
    readers_reach(&hub, "c", 3).await;

    let refused = reqwest::get(server.url("c/0")).await.unwrap();
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.text().await.unwrap(), "Too many subscribers");
    // `/next` is not a subscription and stays open to everyone.
    assert_eq!(reqwest::get(server.url("c/next")).await.unwrap().status(), 200);

    // Once the waiting readers are served and gone, the places are free again.
    publish(server.addr, "c", 10).await;
    for mut stream in waiting {
        read_head(&mut stream, 0).await;
    }
    readers_reach(&hub, "c", 0).await;
    let served = reqwest::get(server.url("c/0")).await.unwrap();
    assert_eq!(served.status(), 200);
    assert_eq!(served.bytes().await.unwrap().len(), 10);
}

#[tokio::test]
async fn stalled_reader_is_cut_and_releases_its_place() {
    let stall = Duration::from_millis(300);
    let hub = Hub::new(HubConfig { reader_stall_timeout: stall, ..HubConfig::default() });
    hub.create("c", "video/mp2t").unwrap();
    let server = TestServer::start(hub.clone()).await;
    publish(server.addr, "c", BIG).await;

    let mut stalled = raw_get(server.addr, "c/0").await;
    let head = read_head(&mut stalled, 1).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // The reader now takes nothing; the watchdog lets go of it after the stall deadline.
    readers_reach(&hub, "c", 1).await;
    readers_reach(&hub, "c", 0).await;

    // Reading again, it finds its answer cut short: the rest of the segment was never sent.
    let mut rest = Vec::new();
    within("the cut reader's end", stalled.read_to_end(&mut rest)).await.unwrap();
    assert!(rest.len() < BIG, "the whole segment was sent ({} bytes)", rest.len());
    assert!(!rest.ends_with(b"0\r\n\r\n"), "the chunked body ended normally");

    // A reader that keeps up is never cut, however long the segment takes.
    let whole = reqwest::get(server.url("c/0")).await.unwrap().bytes().await.unwrap();
    assert_eq!(whole.len(), BIG);
}

/// Starts a chunked POST of `path` over a raw socket: its head and one 4-byte chunk.
async fn raw_post_started(addr: SocketAddr, path: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST {PREFIX}/{path} HTTP/1.1\r\nhost: test\r\ntransfer-encoding: chunked\r\n\r\n4\r\nabcd\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    stream
}

#[tokio::test(start_paused = true)]
async fn a_publisher_whose_segment_was_closed_under_it_is_not_held_for_good() {
    let hub = Hub::new(HubConfig::default());
    hub.create("c", "video/mp2t").unwrap();
    let server = TestServer::start(hub.clone()).await;
    let mut post = raw_post_started(server.addr, "c/0").await;
    within("the first chunk lands", async {
        while hub.stats("c").unwrap().bytes < 4 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let deleted = reqwest::Client::new().delete(server.url("c/0")).send().await.unwrap();
    assert_eq!(deleted.status(), 200);
    // The body stays open and says nothing more. Before the bound the POST was read for as
    // long as its client kept it open, holding the connection and the segment's bytes.
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    let answered = tokio::time::timeout(Duration::from_secs(60), async {
        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = post.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed without an answer");
            seen.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    assert!(answered.is_ok(), "the displaced publisher was never answered");
    let head = String::from_utf8_lossy(&seen).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    assert!(head.contains("lp-trickle-seq: 0"), "{head}");
}
