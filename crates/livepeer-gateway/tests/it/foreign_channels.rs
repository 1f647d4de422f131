//! Orchestrators whose stream start answers name trickle channels where they may not, over
//! real sockets. The gateway posted the client's media to such URLs, read what they served
//! into the client's channels, and deleted them at the end, wherever they pointed. Now a live
//! start's channels must be on the orchestrator's service address (here another port of its
//! host, a listener standing for the gateway's own loopback ports, is refused: nothing
//! connects to it), and a BYOC start's there or on public addresses; either answer
//! is the orchestrator's failure for that job, and a BYOC stream it started is stopped.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use livepeer_gateway::Gateway;
use livepeer_sim::{ByocKind, Sim, SimByoc, SimConfig, SimModel};
use serde_json::{Value, json};

use crate::byoc_stream::job_header;
use crate::support::*;

const CAP: &str = "live-echo";

/// A listener that counts the connections made to it, and drops them.
struct Watched {
    base: String,
    accepted: Arc<AtomicUsize>,
}

async fn watched() -> Watched {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/ai/trickle", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            drop(socket);
        }
    });
    Watched { base, accepted }
}

/// A simulator whose start answers put the channels under `trickle_base`.
async fn pointing_at(trickle_base: &str) -> Sim {
    Sim::start(SimConfig {
        name: "points-elsewhere".into(),
        models: vec![SimModel::new("live-video-to-video", "noop").capacity(8)],
        byoc: vec![SimByoc::new(CAP, ByocKind::Echo).capacity(4)],
        trickle_base: Some(trickle_base.to_owned()),
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

async fn post(gw: &Gateway, path: &str, headers: &[(&str, String)], body: Value) -> (u16, Value) {
    let mut req = reqwest::Client::new().post(format!("http://{}{path}", gw.http_addr));
    for (name, value) in headers {
        req = req.header(*name, value);
    }
    let resp = req.json(&body).send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_live_start_answer_naming_channels_elsewhere_is_the_orchestrators_failure() {
    let elsewhere = watched().await;
    let sim = pointing_at(&elsewhere.base).await;
    let gw = start(config(&[sim.url()])).await;
    let (status, body) = post(&gw, "/live/video-to-video/cam/start", &[], json!({})).await;
    assert!(status >= 500, "{status} {body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("is not on"), "{body}");
    assert_eq!(
        job_state(&gw, sim.url(), "live-video-to-video/noop").await["state"],
        "ejected",
        "penalised for the live job"
    );
    assert_ne!(job_state(&gw, sim.url(), &format!("byoc/{CAP}")).await["state"], "ejected");
    // Anything the gateway would have sent there (a preconnected POST, a subscription, the
    // teardown's DELETE) would have been a connection by now: the start answer was read.
    gw.shutdown().await;
    assert_eq!(elsewhere.accepted.load(Ordering::SeqCst), 0, "nothing reached the named address");
}

/// A BYOC orchestrator may name channels on another host than its service address (go-livepeer's
/// `-liveAITrickleHostForRunner`), but only on public addresses or ones of its own kind: this
/// one, on loopback, names a link-local (cloud metadata) address.
#[tokio::test]
async fn a_byoc_stream_start_answer_naming_channels_inward_is_stopped_and_failed() {
    let sim = pointing_at("http://169.254.169.254/ai/trickle").await;
    let gw = start(config(&[sim.url()])).await;
    let params =
        r#"{"enable_video_ingress":true,"enable_video_egress":true,"enable_data_output":true}"#;
    let headers = [
        ("Livepeer", job_header(CAP, 60, params)),
        ("Authorization", "Bearer foreign-channels".to_owned()),
    ];
    let body = json!({"stream_name": "cam", "stream_id": "1", "params": "{}"});
    let (status, body) = post(&gw, "/process/stream/start", &headers, body).await;
    assert!(status >= 500, "{status} {body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("neither public nor of the orchestrator's kind"), "{body}");
    let stats = sim.byoc_stats();
    assert_eq!(stats.stream_starts, 1, "{stats:?}");
    // The stream it started was stopped there, before the client's answer.
    assert_eq!(stats.streams_active, 0, "{stats:?}");
    assert_eq!(stats.stream_stops, 1, "{stats:?}");
    assert_eq!(job_state(&gw, sim.url(), &format!("byoc/{CAP}")).await["state"], "ejected");
    gw.shutdown().await;
}
