//! The memory stalled subscribers make the server hold, measured as the process's resident set
//! with raw-socket readers that stop reading. Run by nextest, which gives each test its own
//! process, so that no other test's allocations blur the figure.
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

const MB: usize = 1 << 20;

/// The process's resident set, in bytes.
fn rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|line| line.starts_with("VmRSS:")).unwrap();
    let kb: usize = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

/// A raw HTTP/1.1 GET of `path` with a small receive buffer, so that the server cannot park
/// much of the answer in the kernel.
async fn raw_get(addr: SocketAddr, path: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    let request = format!("GET {PREFIX}/{path} HTTP/1.1\r\nhost: test\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    stream
}

/// The status line of the answer on `stream`, read up to its first body byte (or its end).
async fn status_line(stream: &mut TcpStream) -> String {
    let mut seen = Vec::new();
    let mut buf = vec![0u8; 8192];
    loop {
        let n = within("response head", stream.read(&mut buf)).await.unwrap();
        seen.extend_from_slice(&buf[..n]);
        let head_end = seen.windows(4).position(|w| w == b"\r\n\r\n");
        if n == 0 || head_end.is_some_and(|end| seen.len() > end + 4) {
            let text = String::from_utf8_lossy(&seen);
            return text.lines().next().unwrap_or("").to_owned();
        }
    }
}

async fn publish(client: &reqwest::Client, addr: SocketAddr, seq: usize, len: usize) {
    let url = format!("http://{addr}{PREFIX}/c/{seq}");
    let response = client.post(url).body(vec![7u8; len]).send().await.unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn stalled_readers_hold_bounded_memory() {
    const READERS: usize = 40;
    const SEGMENT: usize = 4 * MB;
    let hub = Hub::new(HubConfig {
        // Longer than the test: only the cap bounds what the readers hold here.
        reader_stall_timeout: Duration::from_secs(600),
        max_readers: READERS,
        ..HubConfig::default()
    });
    hub.create("c", "video/mp2t").unwrap();
    let server = TestServer::start(hub.clone()).await;
    let client = reqwest::Client::new();

    // Many stalled readers of one big segment share its bytes.
    publish(&client, server.addr, 0, 4 * SEGMENT).await;
    let before = rss();
    let mut stalled = Vec::new();
    for _ in 0..READERS {
        let mut stream = raw_get(server.addr, "c/0").await;
        assert!(status_line(&mut stream).await.starts_with("HTTP/1.1 200"));
        stalled.push(stream);
    }
    let grown = rss().saturating_sub(before);
    assert!(grown < READERS * MB / 4, "{READERS} readers of one segment grew RSS by {grown}");
    drop(stalled);
    within("readers let go", async {
        while hub.stats("c").unwrap().readers > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn stalled_readers_of_successive_segments_are_capped() {
    const READERS: usize = 40;
    const CAP: usize = 8;
    const SEGMENT: usize = 4 * MB;
    let hub = Hub::new(HubConfig {
        reader_stall_timeout: Duration::from_secs(600),
        max_readers: CAP,
        ..HubConfig::default()
    });
    hub.create("c", "video/mp2t").unwrap();
    let server = TestServer::start(hub.clone()).await;
    let client = reqwest::Client::new();
    let before = rss();
    // Each reader waits at the live edge, takes the head of its segment and stalls, pinning
    // that segment after the window evicts it; the ones over the cap are refused.
    let mut stalled = Vec::new();
    let mut refused = 0;
    for seq in 0..READERS {
        let mut stream = raw_get(server.addr, &format!("c/{seq}")).await;
        publish(&client, server.addr, seq, SEGMENT).await;
        let status = status_line(&mut stream).await;
        if status.starts_with("HTTP/1.1 503") {
            refused += 1;
        } else {
            assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        }
        stalled.push(stream);
    }
    let grown = rss().saturating_sub(before);
    assert_eq!(refused, READERS - CAP);
    // The window's five segments, one per reader, and slack for buffers and the allocator.
    let ceiling = (5 + CAP + 3) * SEGMENT;
    assert!(grown < ceiling, "stalled readers grew RSS by {grown}, over {ceiling}");
}
