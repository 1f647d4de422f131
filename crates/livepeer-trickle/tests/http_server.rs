//! The hub's routes, checked with raw HTTP requests: statuses, headers and bodies as
//! go-livepeer's trickle server answers them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{TestServer, WAIT, within};
use livepeer_trickle::{HEADER_CLOSED, HEADER_LATEST, HEADER_RESET, HEADER_SEQ, Hub, HubConfig};
use reqwest::{Response, StatusCode};
use tokio::sync::mpsc;

async fn server(config: HubConfig) -> (TestServer, reqwest::Client) {
    let server = TestServer::start(Hub::new(config)).await;
    (server, reqwest::Client::builder().timeout(WAIT).build().unwrap())
}

fn header(response: &Response, name: &str) -> Option<String> {
    response.headers().get(name).map(|v| v.to_str().unwrap().to_owned())
}

/// A request body fed chunk by chunk from the returned sender.
fn streaming_body() -> (mpsc::Sender<Bytes>, reqwest::Body) {
    let (tx, rx) = mpsc::channel::<Bytes>(8);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (Ok::<_, std::io::Error>(chunk), rx))
    });
    (tx, reqwest::Body::wrap_stream(stream))
}

async fn post(client: &reqwest::Client, url: String, body: &'static [u8]) -> Response {
    client.post(url).body(body).send().await.unwrap()
}

#[tokio::test]
async fn unknown_channel_answers() {
    let (server, client) = server(HubConfig::default()).await;
    let url = server.url("nope");
    let response = post(&client, format!("{url}/0"), b"data").await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(header(&response, "connection").as_deref(), Some("close"));
    assert_eq!(response.text().await.unwrap(), "Stream not found");
    for path in ["0", "-1", "next"] {
        let response = client.get(format!("{url}/{path}")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "GET {path}");
        assert_eq!(response.text().await.unwrap(), "Stream not found");
    }
    let response = client.post(&url).header("Expect-Content", "video/mp2t").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let response = client.delete(&url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(response.text().await.unwrap(), "Invalid stream");
    let response = client.delete(format!("{url}/0")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn create_checks_existence_or_autocreates() {
    let (server, client) = server(HubConfig::default()).await;
    server.hub.create("pre", "video/mp2t").unwrap();
    let response =
        client.post(server.url("pre")).header("Expect-Content", "x").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let (server, client) =
        self::server(HubConfig { autocreate: true, max_channels: 2, ..HubConfig::default() }).await;
    let response = client
        .post(server.url("auto"))
        .header("Expect-Content", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(server.hub.stats("auto").unwrap().mime, "application/json");
    let response = client
        .post(format!("{}/0", server.url("auto2")))
        .header("Content-Type", "video/mp2t")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(server.hub.stats("auto2").unwrap().mime, "video/mp2t");
    let response = client.post(server.url("third")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE, "max_channels");
}

#[tokio::test]
async fn publish_and_read_headers() {
    let (server, client) = server(HubConfig::default()).await;
    server.hub.create("ch", "video/mp2t").unwrap();
    let url = server.url("ch");

    let response = client.get(format!("{url}/next")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, HEADER_LATEST).as_deref(), Some("0"));
    assert_eq!(response.text().await.unwrap(), "0");

    let response = post(&client, format!("{url}/0"), b"zero").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, HEADER_SEQ).as_deref(), Some("0"));
    let response = post(&client, format!("{url}/-1"), b"one").await;
    assert_eq!(header(&response, HEADER_SEQ).as_deref(), Some("1"), "-1 means the next write");

    let response = client.get(format!("{url}/next")).send().await.unwrap();
    assert_eq!(response.text().await.unwrap(), "2");

    let response = client.get(format!("{url}/0")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, HEADER_SEQ).as_deref(), Some("0"));
    assert_eq!(header(&response, HEADER_LATEST).as_deref(), Some("2"), "behind the edge");
    assert_eq!(header(&response, "content-type").as_deref(), Some("video/mp2t"));
    assert_eq!(response.bytes().await.unwrap(), Bytes::from_static(b"zero"));

    let response = client.get(format!("{url}/-2")).send().await.unwrap();
    assert_eq!(header(&response, HEADER_SEQ).as_deref(), Some("1"), "-2 is the current segment");
    assert_eq!(response.bytes().await.unwrap(), Bytes::from_static(b"one"));

    for bad in ["abc", "-3", "1.5"] {
        let response = client.get(format!("{url}/{bad}")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "GET {bad}");
        assert_eq!(response.text().await.unwrap(), "Invalid idx");
    }
    let response = post(&client, format!("{url}/-2"), b"x").await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn missed_segment_is_470_with_latest() {
    let (server, client) = server(HubConfig::default()).await;
    server.hub.create("ring", "video/mp2t").unwrap();
    let url = server.url("ring");
    for i in 0..7 {
        assert_eq!(
            post(&client, format!("{url}/{i}"), b"0123456789").await.status(),
            StatusCode::OK
        );
    }
    assert_eq!(server.hub.stats("ring").unwrap().bytes, 50, "5 segments kept");
    let response = client.get(format!("{url}/1")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 470);
    assert_eq!(header(&response, HEADER_LATEST).as_deref(), Some("7"));
    assert_eq!(header(&response, HEADER_SEQ).as_deref(), Some("1"));
    assert_eq!(response.text().await.unwrap(), "Entry not found");
    // Ahead of the edge is also a miss (only the next write may be waited on).
    let response = client.get(format!("{url}/9")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 470);
    let response = client.get(format!("{url}/2")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "still in the window");
}

#[tokio::test]
async fn get_waits_for_first_byte_then_streams() {
    let (server, client) = server(HubConfig::default()).await;
    server.hub.create("live", "application/json").unwrap();
    let url = server.url("live");
    let get = tokio::spawn({
        let client = client.clone();
        let url = url.clone();
        async move { client.get(format!("{url}/-1")).send().await.unwrap() }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!get.is_finished(), "no headers before the first byte");

    let (tx, body) = streaming_body();
    let posting = tokio::spawn({
        let client = client.clone();
        let url = url.clone();
        async move { client.post(format!("{url}/0")).body(body).send().await.unwrap() }
    });
    tx.send(Bytes::from_static(b"{\"a\":")).await.unwrap();
    let mut response = within("GET headers", get).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, HEADER_SEQ).as_deref(), Some("0"));
    assert_eq!(header(&response, HEADER_LATEST), None, "at the edge when it asked");
    assert_eq!(header(&response, "content-type").as_deref(), Some("application/json"));
    assert_eq!(
        within("chunk 1", response.chunk()).await.unwrap().unwrap(),
        Bytes::from_static(b"{\"a\":")
    );
    tx.send(Bytes::from_static(b"1}")).await.unwrap();
    assert_eq!(
        within("chunk 2", response.chunk()).await.unwrap().unwrap(),
        Bytes::from_static(b"1}")
    );
    drop(tx);
    assert!(within("end", response.chunk()).await.unwrap().is_none());
    let posted = within("POST", posting).await.unwrap();
    assert_eq!(posted.status(), StatusCode::OK);
    assert_eq!(header(&posted, HEADER_SEQ).as_deref(), Some("0"));
}

#[tokio::test]
async fn empty_post_closes_segment_and_advances() {
    let (server, client) = server(HubConfig::default()).await;
    server.hub.create("empty", "video/mp2t").unwrap();
    let url = server.url("empty");
    let waiting = tokio::spawn({
        let client = client.clone();
        let url = url.clone();
        async move { client.get(format!("{url}/0")).send().await.unwrap() }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let response = post(&client, format!("{url}/0"), b"").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, HEADER_SEQ).as_deref(), Some("0"));
    assert_eq!(header(&response, HEADER_CLOSED), None);
    assert_eq!(server.hub.stats("empty").unwrap().next_write, 1);
    let response = within("waiting GET", waiting).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, HEADER_SEQ).as_deref(), Some("0"));
    assert_eq!(header(&response, HEADER_CLOSED), None);
    assert!(response.bytes().await.unwrap().is_empty());
}

#[tokio::test]
async fn delete_channel_releases_waiting_requests() {
    let (server, client) = server(HubConfig::default()).await;
    server.hub.create("del", "video/mp2t").unwrap();
    let url = server.url("del");
    let get = tokio::spawn({
        let client = client.clone();
        let url = url.clone();
        async move { client.get(format!("{url}/-1")).send().await.unwrap() }
    });
    // A preconnected POST that has not sent a byte yet.
    let (tx, body) = streaming_body();
    let posting = tokio::spawn({
        let client = client.clone();
        let url = url.clone();
        async move { client.post(format!("{url}/1")).body(body).send().await.unwrap() }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let response = client.delete(&url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let response = within("GET released", get).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, HEADER_CLOSED).as_deref(), Some("terminated"));
    let response = within("POST released", posting).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, HEADER_CLOSED).as_deref(), Some("terminated"));
    drop(tx);
    let response = client.get(format!("{url}/0")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn delete_segment() {
    let (server, client) = server(HubConfig::default()).await;
    server.hub.create("seg", "video/mp2t").unwrap();
    let url = server.url("seg");
    let get = tokio::spawn({
        let client = client.clone();
        let url = url.clone();
        async move { client.get(format!("{url}/0")).send().await.unwrap() }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let response = client.delete(format!("{url}/0")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let response = within("GET released", get).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, HEADER_SEQ).as_deref(), Some("0"));
    assert_eq!(header(&response, HEADER_CLOSED), None, "the channel lives on");
    assert!(response.bytes().await.unwrap().is_empty());

    let response = client.delete(format!("{url}/3")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(response.text().await.unwrap(), "Nonexistent segment");
    let response = client.delete(format!("{url}/x")).send().await.unwrap();
    assert_eq!(response.text().await.unwrap(), "Invalid idx");
    assert!(server.hub.contains("seg"));
}

#[tokio::test]
async fn reset_header_closes_older_segments() {
    let (server, client) = server(HubConfig::default()).await;
    server.hub.create("reset", "video/mp2t").unwrap();
    let url = server.url("reset");
    // A publisher stalls mid-segment 0; its reader waits for more.
    let (stalled, body) = streaming_body();
    tokio::spawn({
        let client = client.clone();
        let url = url.clone();
        async move { client.post(format!("{url}/0")).body(body).send().await }
    });
    stalled.send(Bytes::from_static(b"part")).await.unwrap();
    let mut reader = within("GET", client.get(format!("{url}/0")).send()).await.unwrap();
    assert_eq!(
        within("chunk", reader.chunk()).await.unwrap().unwrap(),
        Bytes::from_static(b"part")
    );

    let response = client
        .post(format!("{url}/1"))
        .header(HEADER_RESET, "1")
        .body("fresh")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(within("old reader released", reader.chunk()).await.unwrap().is_none());
    drop(stalled);
}

#[tokio::test]
async fn oversized_post_is_413_and_memory_is_bounded() {
    let (server, client) =
        server(HubConfig { max_segment_bytes: 1000, window: 3, ..HubConfig::default() }).await;
    server.hub.create("big", "video/mp2t").unwrap();
    let url = server.url("big");
    let response = client.post(format!("{url}/0")).body(vec![1u8; 1001]).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    for i in 1..10 {
        let response =
            client.post(format!("{url}/{i}")).body(vec![2u8; 1000]).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert_eq!(server.hub.stats("big").unwrap().bytes, 3000, "window x max_segment_bytes");
}

#[tokio::test]
async fn body_error_is_500_and_releases_readers() {
    let (server, client) = server(HubConfig::default()).await;
    server.hub.create("broken", "video/mp2t").unwrap();
    let url = server.url("broken");
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let stream =
        futures_util::stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|item| (item, rx)) },
        );
    let posting = tokio::spawn({
        let client = client.clone();
        let url = url.clone();
        async move {
            client.post(format!("{url}/0")).body(reqwest::Body::wrap_stream(stream)).send().await
        }
    });
    tx.send(Ok(Bytes::from_static(b"abc"))).await.unwrap();
    let mut reader = within("GET", client.get(format!("{url}/0")).send()).await.unwrap();
    assert_eq!(within("chunk", reader.chunk()).await.unwrap().unwrap(), Bytes::from_static(b"abc"));
    tx.send(Err(std::io::Error::other("publisher broke"))).await.unwrap();
    // The server sees a broken body: the segment ends for its readers.
    let end = within("reader released", reader.chunk()).await;
    assert!(matches!(end, Ok(None) | Err(_)));
    let _ = within("POST", posting).await;
    let closed = within("segment closed", async {
        loop {
            let response = client.get(format!("{url}/0")).send().await.unwrap();
            if response.bytes().await.unwrap() == Bytes::from_static(b"abc") {
                return;
            }
        }
    });
    closed.await;
}

#[tokio::test]
async fn idle_channels_are_swept() {
    let idle_timeout = Duration::from_millis(300);
    let (server, client) = server(HubConfig { idle_timeout, ..HubConfig::default() }).await;
    server.hub.create("idle", "video/mp2t").unwrap();
    server.hub.create("busy", "video/mp2t").unwrap();
    // Both channels outlive the timeout untouched; then an HTTP write makes one active again
    // just before the sweep. Waiting longer than this on a slow machine changes nothing.
    tokio::time::sleep(idle_timeout + Duration::from_millis(100)).await;
    post(&client, format!("{}/0", server.url("busy")), b"x").await;
    assert_eq!(server.hub.sweep(), 1);
    assert!(!server.hub.contains("idle"));
    assert!(server.hub.contains("busy"));
    let response = client.get(format!("{}/0", server.url("idle"))).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let cancel = tokio_util::sync::CancellationToken::new();
    let sweeper = tokio::spawn(server.hub.clone().run_sweeper(cancel.clone()));
    cancel.cancel();
    within("sweeper", sweeper).await.unwrap();
    assert!(server.hub.is_empty(), "stopping the sweeper closes everything");
}

#[tokio::test]
async fn routes_nest_in_a_router_with_state() {
    use axum::extract::State;
    let hub = Hub::new(HubConfig::default());
    hub.create("nested", "video/mp2t").unwrap();
    let app: axum::Router<Arc<str>> = axum::Router::new()
        .route(
            "/hello",
            axum::routing::get(|State(name): State<Arc<str>>| async move { name.to_string() }),
        )
        .nest("/ai/trickle", hub.router().with_state(()));
    let app = app.with_state(Arc::from("gateway"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serving = tokio::spawn(async move { axum::serve(listener, app).await });
    let client = reqwest::Client::new();
    let base = format!("http://{addr}");
    assert_eq!(
        client.get(format!("{base}/hello")).send().await.unwrap().text().await.unwrap(),
        "gateway"
    );
    let response = post(&client, format!("{base}/ai/trickle/nested/0"), b"x").await;
    assert_eq!(header(&response, HEADER_SEQ).as_deref(), Some("0"));
    let response = client.get(format!("{base}/ai/trickle/nested/0")).send().await.unwrap();
    assert_eq!(response.bytes().await.unwrap(), Bytes::from_static(b"x"));
    let response = client.get(format!("{base}/ai/trickle/other/0")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    serving.abort();
}
