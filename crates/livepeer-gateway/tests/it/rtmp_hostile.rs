//! RTMP ingest against hostile publishers, over real sockets to a real gateway: a client
//! may not keep a connection (and its place under the listener's cap) by trickling bytes.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::support::*;
use crate::transcode::{gateway_config, get_text, listed, sim};
use crate::transcode_rtmp::publish;

/// A client that sends one byte of an RTMP handshake every 500 ms (within the crate's
/// per-read deadline, so it is never idle) and never finishes it; returns when the gateway
/// closes its connection.
async fn trickle(addr: std::net::SocketAddr) {
    let mut socket = TcpStream::connect(addr).await.unwrap();
    // C0: version 3; then C1 byte by byte (1536 bytes: 12 minutes at this pace).
    let mut byte = 3u8;
    let mut buf = [0u8; 4096];
    loop {
        tokio::select! {
            read = socket.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            },
            () = tokio::time::sleep(Duration::from_millis(500)) => {
                if socket.write_all(&[byte]).await.is_err() {
                    return;
                }
                byte = 0;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_never_publish_are_closed_and_free_their_places() {
    let sim = sim("rtmp-trickle", false).await;
    let mut config = gateway_config(&[&sim]);
    config.transcode.max_sessions = 1;
    let gw = start(config).await;
    let rtmp = gw.rtmp_addr.unwrap();
    // Every place under the listener's cap (streams + 16) taken by a trickling client.
    let started = Instant::now();
    let clients: Vec<_> = (0..17).map(|_| tokio::spawn(trickle(rtmp))).collect();
    // Each is closed at the publish deadline (10 s); before it had one, they held the
    // listener until they chose to leave, and no publisher got in.
    for client in clients {
        let left = Duration::from_secs(25).saturating_sub(started.elapsed());
        let closed = tokio::time::timeout(left, client).await;
        assert!(closed.is_ok(), "a trickling client still held a place after 25 s");
    }
    // Their places are free: a real publisher gets in and is transcoded.
    let mut ffmpeg = publish(&gw, "stream/after/key", 10);
    eventually(Duration::from_secs(60), "a segment of the publisher after them", || async {
        let (status, media) = get_text(&gw, "/stream/after/P240p30fps16x9.m3u8").await;
        status == 200 && !listed(&media).1.is_empty()
    })
    .await;
    let _ = ffmpeg.kill().await;
    gw.shutdown().await;
}
