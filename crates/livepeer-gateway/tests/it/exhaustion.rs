//! The gateway out of descriptors: its own shortage, never an orchestrator's fault. (The batch
//! AI case is `ai::a_gateway_out_of_descriptors_blames_no_orchestrator`.)

use std::time::Duration;

use livepeer_sim::{Sim, SimConfig, SimModel};
use serde_json::json;

use crate::support::*;
use crate::transcode::{PROFILES, segment};

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
    let mut conn = HeldConnection::open(gw.http_addr).await;
    let held = NoDescriptors::take();
    let headers = [("authorization", "Bearer exhaustion"), ("content-type", "application/json")];
    let path = "/live/video-to-video/short/start";
    let (status, _, body) = conn.send("POST", path, &headers, "{}").await;
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

/// A pushed segment whose transcoder cannot be dialled for want of descriptors gets 503
/// `gateway_overloaded` (the source is published in its place, as for any failed segment),
/// the transcoder is penalised for nothing, and the next segment is transcoded by it.
#[test]
fn a_segment_without_descriptors_blames_no_transcoder() {
    if run_alone("exhaustion::a_segment_without_descriptors_blames_no_transcoder") {
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build();
        runtime.unwrap().block_on(transcode_push());
    }
}

async fn transcode_push() {
    let sim = Sim::start(SimConfig { transcode_fast: true, ..SimConfig::default() }).await.unwrap();
    let gw = start(config(&[sim.url()])).await;
    let client = reqwest::Client::new();
    let data = segment().to_vec();
    let push = |seq: u64| {
        client
            .post(format!("http://{}/live/short/{seq}.ts", gw.http_addr))
            .header("Livepeer-Transcode-Configuration", PROFILES)
            .header("Content-Duration", "2000")
            .body(data.clone())
    };
    // The client's connection is made while descriptors remain, and kept.
    let mut conn = HeldConnection::open(gw.http_addr).await;
    let held = NoDescriptors::take();
    let headers = [("Livepeer-Transcode-Configuration", PROFILES), ("Content-Duration", "2000")];
    let (status, _, body) = conn.send("POST", "/live/short/0.ts", &headers, data.clone()).await;
    drop(held);
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["type"], "gateway_overloaded", "{body}");
    assert_eq!(sim.transcode_stats().requests, 0, "nothing reached the transcoder");
    let orch = orch_state(&gw, sim.url()).await;
    assert_eq!(orch["state"], "healthy", "{orch}");
    let jobs = orch["jobs"].as_array().cloned().unwrap_or_default();
    assert!(jobs.iter().all(|j| j["state"] == "healthy"), "{orch}");
    let resp = push(1).send().await.unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap_or_default());
    gw.shutdown().await;
}

/// A BYOC job whose job token cannot be fetched for want of descriptors gets 503
/// `gateway_overloaded`, its orchestrator penalised for nothing; once descriptors are back the
/// same job runs there.
#[test]
fn a_byoc_job_without_descriptors_blames_no_orchestrator() {
    if run_alone("exhaustion::a_byoc_job_without_descriptors_blames_no_orchestrator") {
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build();
        runtime.unwrap().block_on(byoc_job());
    }
}

async fn byoc_job() {
    use base64::Engine as _;
    use livepeer_sim::{ByocKind, SimByoc};
    let caps = vec![SimByoc::new("text-reversal", ByocKind::Reverse).capacity(8)];
    let sim = Sim::start(SimConfig { byoc: caps, ..SimConfig::default() }).await.unwrap();
    let gw = start(config(&[sim.url()])).await;
    let client = reqwest::Client::new();
    let job = json!({"request": "{}", "parameters": "{}", "capability": "text-reversal",
        "timeout_seconds": 5});
    let header = base64::engine::general_purpose::STANDARD.encode(job.to_string());
    let send = || {
        client
            .post(format!("http://{}/process/request/reverse", gw.http_addr))
            .header("Livepeer", &header)
            .json(&json!({"text": "hello"}))
    };
    let mut conn = HeldConnection::open(gw.http_addr).await;
    let held = NoDescriptors::take();
    let headers = [("Livepeer", header.as_str()), ("content-type", "application/json")];
    let path = "/process/request/reverse";
    let (status, _, body) = conn.send("POST", path, &headers, r#"{"text":"hello"}"#).await;
    drop(held);
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["type"], "gateway_overloaded", "{body}");
    let orch = orch_state(&gw, sim.url()).await;
    let jobs = orch["jobs"].as_array().cloned().unwrap_or_default();
    assert!(jobs.iter().all(|j| j["state"] == "healthy"), "{orch}");
    let resp = send().send().await.unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap_or_default());
    gw.shutdown().await;
}

/// A BYOC stream start that cannot dial its orchestrator for want of descriptors gets 503
/// `gateway_overloaded`, its orchestrator penalised for nothing; once descriptors are back
/// the same start runs there. A start fetches a fresh job token first, so that fetch is the
/// dial that meets the shortage; the orchestrator is restarted beforehand so that no idle
/// connection to it is left to carry it. (The start's own call would meet it only if the
/// fetch found an idle connection and the call then did not; it is answered the same way,
/// and has no test of its own.)
#[test]
fn a_byoc_stream_start_without_descriptors_blames_no_orchestrator() {
    if run_alone("exhaustion::a_byoc_stream_start_without_descriptors_blames_no_orchestrator") {
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build();
        runtime.unwrap().block_on(byoc_stream_start());
    }
}

async fn byoc_stream_start() {
    use livepeer_sim::{ByocKind, SimByoc};
    const CAP: &str = "text-reversal";
    let caps = vec![SimByoc::new(CAP, ByocKind::Reverse).capacity(8)];
    let sim = Sim::start(SimConfig { byoc: caps, ..SimConfig::default() }).await.unwrap();
    let mut c = config(&[sim.url()]);
    c.byoc.token_refresh = Duration::from_secs(3600);
    let gw = start(c).await;
    eventually(Duration::from_secs(10), "the job token", || async {
        let (_, body) = admin_get(&gw, "/byoc/capabilities").await;
        let orchs = &body["capabilities"][0]["orchestrators"];
        orchs.as_array().is_some_and(|o| o.iter().any(|o| !o["token"].is_null()))
    })
    .await;
    sim.restart().await.unwrap();
    let port = url::Url::parse(sim.url()).unwrap().port().unwrap();
    eventually(Duration::from_secs(10), "the idle connections closed", || async {
        connected_to(port) == 0
    })
    .await;
    let tokens = sim.byoc_stats().tokens;
    let header = crate::byoc_stream::job_header(CAP, 10, "{}");
    let headers = [
        ("Livepeer", header.as_str()),
        ("Authorization", "Bearer exhaustion"),
        ("content-type", "application/json"),
    ];
    let body = |name: &str| json!({"stream_name": name, "stream_id": "1", "params": {}});
    let mut conn = HeldConnection::open(gw.http_addr).await;
    let held = NoDescriptors::take();
    let path = "/process/stream/start";
    let (status, _, answer) = conn.send("POST", path, &headers, body("short").to_string()).await;
    drop(held);
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["error"]["type"], "gateway_overloaded", "{answer}");
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("job token:"), "{answer}");
    let stats = sim.byoc_stats();
    assert_eq!(stats.tokens, tokens, "the token fetch reached nobody");
    assert_eq!(stats.stream_start_calls, 0, "nothing reached the orchestrator");
    let orch = orch_state(&gw, sim.url()).await;
    let jobs = orch["jobs"].as_array().cloned().unwrap_or_default();
    assert!(jobs.iter().all(|j| j["state"] == "healthy"), "{orch}");
    let (status, _, answer) = conn.send("POST", path, &headers, body("later").to_string()).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(sim.byoc_stats().stream_starts, 1);
    gw.shutdown().await;
}
