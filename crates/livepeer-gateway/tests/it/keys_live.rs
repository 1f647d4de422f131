//! Customer keys on the live routes, which already use `Authorization` for stream ownership:
//! with keys on, the key starts the stream and is its owner's credential.

use std::time::Duration;

use livepeer_sim::{Sim, SimConfig, SimModel};
use serde_json::{Value, json};

use crate::keys::{create, keys_config};
use crate::support::*;

async fn live_sim() -> Sim {
    Sim::start(SimConfig {
        name: "keys-live".into(),
        models: vec![SimModel::new("live-video-to-video", "noop").price(0, 1).capacity(4)],
        live_event_interval: Duration::from_millis(200),
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

async fn read(req: reqwest::RequestBuilder) -> (u16, Value) {
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_that_starts_a_live_stream_owns_it() {
    let sim = live_sim().await;
    let dir = tempfile::tempdir().unwrap();
    let gw = start(keys_config(&[sim.url()], dir.path(), None)).await;
    let (_, alice) =
        create(&gw, json!({"name": "alice", "allowed": ["live-video-to-video"]})).await;
    let (_, mallory) = create(&gw, json!({"name": "mallory"})).await;
    let http = reqwest::Client::new();
    let url = |path: &str| format!("http://{}/live/video-to-video/{path}", gw.http_addr);

    let (status, v) = read(http.post(url("cam/start")).json(&json!({}))).await;
    assert_eq!((status, &v["error"]["type"]), (401, &json!("invalid_api_key")), "{v}");
    let (status, v) = read(http.post(url("cam/start")).bearer_auth(&alice).json(&json!({}))).await;
    assert_eq!(status, 200, "{v}");

    // Another valid key is not the owner; the owner's key controls the stream.
    let (status, v) = read(http.get(url("cam/status")).bearer_auth(&mallory)).await;
    assert_eq!((status, &v["error"]["type"]), (403, &json!("not_stream_owner")), "{v}");
    let (status, v) = read(http.get(url("cam/status")).bearer_auth(&alice)).await;
    assert_eq!(status, 200, "{v}");
    let update = http.post(url("cam/update")).bearer_auth(&alice).json(&json!({"prompt": "x"}));
    let (status, v) = read(update).await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = read(http.post(url("cam/stop")).bearer_auth(&alice)).await;
    assert_eq!((status, &v["state"]), (200, &json!("stopped")), "{v}");
    gw.shutdown().await;
}
