//! A hub configured to keep closed channels readable for a while (the gateway's client-facing
//! channels): a subscriber that asks just after the end still gets the last segments and then
//! the end-of-stream mark, writers see the channel gone at once, and what is kept is bounded
//! in time and bytes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{TestServer, WAIT};
use livepeer_trickle::{
    ClientConfig, HEADER_CLOSED, HttpSubscriber, Hub, HubConfig, Subscribe, read_segment,
};
use reqwest::{Response, StatusCode};

const LINGER: Duration = Duration::from_millis(300);

async fn server(config: HubConfig) -> (TestServer, reqwest::Client) {
    let server = TestServer::start(Hub::new(config)).await;
    (server, reqwest::Client::builder().timeout(WAIT).build().unwrap())
}

fn closed(response: &Response) -> bool {
    response.headers().get(HEADER_CLOSED).is_some_and(|v| v == "terminated")
}

async fn publish(client: &reqwest::Client, url: &str, seq: u64, body: &'static [u8]) {
    let response = client.post(format!("{url}/{seq}")).body(body).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "POST {url}/{seq}");
}

/// Polls `GET {url}/0` until it answers 404; fails after [`WAIT`].
async fn gone(client: &reqwest::Client, url: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let response = client.get(format!("{url}/0")).send().await.unwrap();
        if response.status() == StatusCode::NOT_FOUND {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{url} still readable after {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_late_reader_gets_the_last_segments_then_the_end() {
    let config = HubConfig { closed_linger: LINGER, ..HubConfig::default() };
    let (server, client) = server(config).await;
    server.hub.create("late", "video/mp2t").unwrap();
    let url = server.url("late");
    publish(&client, &url, 0, b"first").await;
    publish(&client, &url, 1, b"last").await;
    assert!(server.hub.close("late"));

    // Writers and the hub's own view see it gone at once.
    assert!(!server.hub.contains("late"));
    let response = client.post(format!("{url}/2")).body("more").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND, "no writes after the end");
    let response = client.delete(&url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST, "closed once already");

    // A reader arriving now still reads what was published, then learns the stream ended.
    for (seq, body) in [(0, &b"first"[..]), (1, b"last")] {
        let response = client.get(format!("{url}/{seq}")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "GET {seq}");
        assert_eq!(response.bytes().await.unwrap(), Bytes::from_static(body));
    }
    let response = client.get(format!("{url}/2")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(closed(&response), "past the last segment: the end-of-stream mark");
    let response = client.get(format!("{url}/next")).send().await.unwrap();
    assert!(closed(&response), "/next says closed too");

    // A go-livepeer-style subscriber starting at 0 reads both, then ends cleanly.
    let http = reqwest::Client::new();
    let mut subscriber = HttpSubscriber::new(http, &url, 0, ClientConfig::default()).unwrap();
    for body in [&b"first"[..], b"last"] {
        let mut reader = subscriber.segment().await.unwrap().expect("a segment");
        assert_eq!(read_segment(&mut reader, 1 << 20).await.unwrap(), body);
    }
    assert!(subscriber.segment().await.unwrap().is_none(), "then the end");

    // After the linger it is gone, as go-livepeer's removed channel is.
    gone(&client, &url).await;
}

#[tokio::test]
async fn closed_channels_kept_are_bounded_in_bytes() {
    // Room for one closed channel's 8 bytes, not two.
    let config = HubConfig { closed_linger: WAIT * 6, closed_bytes: 12, ..HubConfig::default() };
    let (server, client) = server(config).await;
    for name in ["older", "newer"] {
        server.hub.create(name, "video/mp2t").unwrap();
        publish(&client, &server.url(name), 0, b"8 bytes!").await;
        assert!(server.hub.close(name));
    }
    let response = client.get(format!("{}/0", server.url("older"))).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND, "the oldest closed channel let go");
    let response = client.get(format!("{}/0", server.url("newer"))).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.bytes().await.unwrap(), Bytes::from_static(b"8 bytes!"));
}

#[tokio::test]
async fn a_channel_made_again_is_read_rather_than_the_closed_one() {
    let config = HubConfig { closed_linger: WAIT * 6, ..HubConfig::default() };
    let (server, client) = server(config).await;
    let url = server.url("again");
    server.hub.create("again", "video/mp2t").unwrap();
    publish(&client, &url, 0, b"old").await;
    assert!(server.hub.close("again"));
    server.hub.create("again", "video/mp2t").unwrap();
    publish(&client, &url, 0, b"new").await;
    let response = client.get(format!("{url}/0")).send().await.unwrap();
    assert_eq!(response.bytes().await.unwrap(), Bytes::from_static(b"new"));
}
