//! The public port on serving threads of its own (`--http-threads`): one single-threaded
//! runtime per thread, each with a `SO_REUSEPORT` listener and its own orchestrator
//! connections. Real gateway, real simulator, real sockets.

use std::time::Duration;

use livepeer_gateway::{Gateway, StartError};
use serde_json::{Value, json};

use crate::support::*;

/// This process's threads serving a public port (named `public-api-<n>`).
fn serving_threads() -> usize {
    let tasks = std::fs::read_dir("/proc/self/task").unwrap();
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("public-api-"))
        .count()
}

#[tokio::test]
async fn jobs_are_served_on_every_thread_and_the_threads_end_with_the_gateway() {
    let sim = TextSim::new("a").start().await;
    let mut c = config(&[sim.url()]);
    c.http_threads = 3;
    let gw = start(c).await;
    // A thread takes its name once it runs.
    eventually(Duration::from_secs(5), "three serving threads", || async {
        serving_threads() == 3
    })
    .await;
    // A client (and a connection) per job: the kernel spreads them over the three listeners.
    // Each result is fetched over yet another connection, so many are served by another
    // thread than the one that stored them. Four at a time: the simulator's capacity.
    for round in 0..6 {
        let jobs = (0..4).map(|n| async move {
            let (addr, i) = (gw.http_addr, round * 4 + n);
            let body =
                json!({"prompt": format!("p{i}"), "model_id": SD, "width": 64, "height": 64});
            let resp = reqwest::Client::new()
                .post(format!("http://{addr}/text-to-image"))
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            let answer: Value = resp.json().await.unwrap();
            let url = answer["images"][0]["url"].as_str().unwrap().to_owned();
            let image = reqwest::Client::new().get(&url).send().await.unwrap();
            assert_eq!(image.status(), 200, "{url}");
            assert_eq!(image.headers()["content-type"], "image/png", "{url}");
            assert!(image.bytes().await.unwrap().starts_with(b"\x89PNG"), "{url}");
        });
        futures_util::future::join_all(jobs).await;
    }
    gw.shutdown().await;
    eventually(Duration::from_secs(5), "the serving threads end", || async {
        serving_threads() == 0
    })
    .await;
}

/// With `SO_REUSEPORT` a second socket could join the port's group; a second gateway on a port
/// already served must still fail to start, not take a share of the first one's clients.
#[tokio::test]
async fn a_port_already_served_is_refused() {
    let first = start(config(&[])).await;
    let mut c = config(&[]);
    c.http_addr = first.http_addr;
    c.cli_addr = "127.0.0.1:0".parse().unwrap();
    match Gateway::start(c).await {
        Err(StartError::Bind { addr, .. }) => assert_eq!(addr, first.http_addr),
        other => panic!("a second gateway started on {}: {other:?}", first.http_addr),
    }
    // Nor when the port is held by another program's plain listener.
    let plain = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut c = config(&[]);
    c.http_addr = plain.local_addr().unwrap();
    assert!(matches!(Gateway::start(c).await, Err(StartError::Bind { .. })));
    first.shutdown().await;
}

/// A body refused by its declared length is answered before it is read: a client still
/// sending it (reqwest writes the body while it waits for the answer) must get the 413, not a
/// reset or a broken pipe (lingering close).
#[tokio::test]
async fn a_client_still_sending_a_refused_body_gets_the_answer_not_a_reset() {
    let mut c = config(&[]);
    c.ai.max_body_bytes = 1 << 20;
    let gw = start(c).await;
    let body = vec![b' '; 5 << 20];
    for round in 0..10 {
        let sent = reqwest::Client::new()
            .post(format!("http://{}/text-to-image", gw.http_addr))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await;
        let resp = sent.unwrap_or_else(|e| panic!("round {round}: {e:?}"));
        assert_eq!(resp.status(), 413, "round {round}");
    }
    gw.shutdown().await;
}
