//! Subscribers of the gateway's live trickle channels that stop reading, over raw sockets:
//! the cap on readers per channel answers 503, and a reader that takes no bytes is dropped
//! by the listener's write deadline, giving its place (and its segment) back.

use std::net::SocketAddr;
use std::time::Duration;

use livepeer_gateway::Gateway;
use livepeer_sim::{Sim, SimConfig, SimModel};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};

use crate::support::*;

const WAIT: Duration = Duration::from_secs(10);
/// Bigger than the socket buffers a stalled reader leaves the server.
const SEGMENT: usize = 8 << 20;

/// A raw HTTP/1.1 GET of `path` with a small receive buffer, so that the kernel cannot take
/// much of the answer off the server's hands.
async fn raw_get(addr: SocketAddr, path: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nhost: test\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    stream
}

/// Reads the response head and at least one body byte; returns the status line.
async fn read_head(stream: &mut TcpStream) -> String {
    let mut seen = Vec::new();
    let mut buf = vec![0u8; 4096];
    loop {
        let n = tokio::time::timeout(WAIT, stream.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "closed before the head");
        seen.extend_from_slice(&buf[..n]);
        if let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n")
            && seen.len() > end + 4
        {
            return String::from_utf8_lossy(&seen).lines().next().unwrap().to_owned();
        }
    }
}

async fn live_sim() -> Sim {
    Sim::start(SimConfig {
        name: "stall".into(),
        models: vec![SimModel::new("live-video-to-video", "noop").capacity(4)],
        live_event_interval: Duration::from_millis(200),
        live_payment_interval: Duration::from_millis(500),
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

/// The status of a GET far ahead of the channel's edge: 470 while a reader's place is free
/// (the request takes one for an instant), 503 while every place is held.
async fn probe(client: &reqwest::Client, channel: &str) -> u16 {
    client.get(format!("{channel}/1000")).send().await.unwrap().status().as_u16()
}

/// The test's view of its stream, for what a failure prints.
struct Watched<'a> {
    gw: &'a Gateway,
    client: &'a reqwest::Client,
    channel: String,
    secret: String,
}

impl Watched<'_> {
    /// Probes the channel until it answers `want`. On time out, says what it answered last,
    /// what the stream's status was and what each raw reader has received, so that a failure
    /// on a loaded machine tells which it was: a reader never served, one answered or let go
    /// early, or a stream that ended and closed its channels.
    async fn until_probe(&self, readers: &mut [TcpStream], want: u16, what: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let got = probe(self.client, &self.channel).await;
            if got == want {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                let url = format!("http://{}/live/video-to-video/cam/status", self.gw.http_addr);
                let status = self.client.get(url);
                let status = status.header("Livepeer-Stream-Secret", &self.secret).send().await;
                let status = status.unwrap().text().await.unwrap();
                let mut seen = Vec::new();
                for reader in readers.iter_mut() {
                    seen.push(received(reader).await);
                }
                panic!(
                    "timed out waiting for {what}: the probe answered {got}; stream: {status}; \
                     the raw readers received: {seen:?}"
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// What a raw reader can read within a moment: its bytes so far (the start of them), or
/// whether its connection is closed or broken.
async fn received(stream: &mut TcpStream) -> String {
    let mut buf = vec![0u8; 512];
    match tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buf)).await {
        Err(_) => "nothing yet".into(),
        Ok(Ok(0)) => "end of stream".into(),
        Ok(Ok(n)) => String::from_utf8_lossy(&buf[..n]).into_owned(),
        Ok(Err(e)) => format!("error: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stalled_trickle_readers_are_capped_and_dropped() {
    let sim = live_sim().await;
    let mut config = config(&[sim.url()]);
    config.live.trickle_max_readers = 2;
    // Only the listener's write deadline may let the readers go in this test.
    config.live.trickle_stall_timeout = Duration::from_secs(3600);
    config.write_timeout = Duration::from_millis(300);
    let gw = start(config).await;
    let client = reqwest::Client::new();
    let started: Value = client
        .post(format!("http://{}/live/video-to-video/cam/start", gw.http_addr))
        .json(&json!({"pipeline": "noop", "params": {}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let channel = started["publish_url"].as_str().unwrap().to_owned();
    let path = channel.split_once(&gw.http_addr.to_string()).unwrap().1.to_owned();
    let secret = started["stream_secret"].as_str().unwrap().to_owned();
    let watched = Watched { gw: &gw, client: &client, channel: channel.clone(), secret };
    assert_eq!(probe(&client, &channel).await, 470);

    // Two readers wait at the live edge; a third is refused.
    let mut stalled = vec![
        raw_get(gw.http_addr, &format!("{path}/0")).await,
        raw_get(gw.http_addr, &format!("{path}/0")).await,
    ];
    watched.until_probe(&mut stalled, 503, "the cap to be reached").await;
    let refused = client.get(format!("{channel}/0")).send().await.unwrap();
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.text().await.unwrap(), "Too many subscribers");

    // A big segment arrives; the readers take its first bytes and then nothing.
    let published =
        client.post(format!("{channel}/0")).body(vec![7u8; SEGMENT]).send().await.unwrap();
    assert_eq!(published.status(), 200);
    for stream in &mut stalled {
        assert!(read_head(stream).await.starts_with("HTTP/1.1 200"));
    }
    // Without their reading anything more, the gateway drops them and their places free up.
    watched.until_probe(&mut [], 470, "stalled readers dropped").await;
    for mut stream in stalled {
        let mut rest = Vec::new();
        tokio::time::timeout(WAIT, stream.read_to_end(&mut rest)).await.unwrap().unwrap();
        assert!(rest.len() < SEGMENT, "the whole segment was sent");
    }
    // A reader that keeps up gets the whole segment.
    let whole = client.get(format!("{channel}/0")).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(whole.len(), SEGMENT);
}
