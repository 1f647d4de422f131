//! The gateway out of descriptors: its own shortage, never an orchestrator's fault. (The batch
//! AI case is `ai::a_gateway_out_of_descriptors_blames_no_orchestrator`.)

use std::time::Duration;

use livepeer_sim::{Sim, SimConfig, SimModel};
use serde_json::{Value, json};

use crate::support::*;

/// A live start that cannot dial its orchestrator for want of descriptors fails without
/// ejecting it, and the same start goes through once descriptors are back.
#[test]
fn a_live_start_without_descriptors_blames_no_orchestrator() {
    if run_alone("exhaustion::a_live_start_without_descriptors_blames_no_orchestrator") {
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build();
        runtime.unwrap().block_on(live_start());
    }
}

async fn live_start() {
    let sim = Sim::start(SimConfig {
        models: vec![SimModel::new("live-video-to-video", "noop").capacity(4)],
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let gw = start(config(&[sim.url()])).await;
    let client = reqwest::Client::new();
    let url = |name: &str| format!("http://{}/live/video-to-video/{name}/start", gw.http_addr);
    let start = |name: &str| {
        client.post(url(name)).header("authorization", "Bearer exhaustion").json(&json!({}))
    };
    // The client's connection is made while descriptors remain, and kept.
    let health = client.get(format!("http://{}/healthz", gw.http_addr)).send().await.unwrap();
    health.bytes().await.unwrap();
    let held = NoDescriptors::take();
    let resp = start("short").send().await.unwrap();
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    drop(held);
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["type"], "gateway_overloaded", "{body}");
    assert_eq!(sim.live().starts, 0, "nothing reached the orchestrator");
    assert_eq!(orch_state(&gw, sim.url()).await["state"], "healthy", "{body}");
    let resp = start("later").send().await.unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap_or_default());
    eventually(Duration::from_secs(5), "the stream runs", || async { sim.live().active == 1 })
        .await;
    gw.shutdown().await;
}
