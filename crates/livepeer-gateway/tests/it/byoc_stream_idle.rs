//! A BYOC stream without video input whose client went quiet, in paused time, through a real
//! gateway and simulator. Its control channel is swept once idle for five minutes; the stream
//! then lives on as long as a reader of its data or of its output video is connected, with
//! keepalives to the orchestrator, and ends once the last reader has gone.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use livepeer_gateway::Gateway;
use livepeer_pm::LocalSigner;
use livepeer_sim::{ByocKind, Sim, SimByoc, SimConfig};
use livepeer_trickle::{ClientConfig, HttpSubscriber, ReadSegment as _, Subscribe as _};
use serde_json::{Value, json};

use crate::byoc_stream::job_header;
use crate::support::*;

const CAP: &str = "data-only";
const KEY: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
const OWNER: &str = "Bearer byoc-idle-client";
const DATA_ONLY: &str =
    r#"{"enable_video_ingress":false,"enable_video_egress":false,"enable_data_output":true}"#;
const OUTPUT_ONLY: &str =
    r#"{"enable_video_ingress":false,"enable_video_egress":true,"enable_data_output":false}"#;
/// How long the client stays quiet while reading: past the sweep of its idle control channel
/// and the orchestrator's own five-minute limit on an idle control channel.
const QUIET: Duration = Duration::from_secs(11 * 60);

/// A paid simulator whose BYOC streams without input write output every 20 s, a gateway on
/// this test's (paused) runtime, and a stream started there with `flags`: its start answer.
async fn quiet_stream(flags: &str) -> (Sim, Gateway, Value) {
    let eth = livepeer_pm::Address::from({
        let mut a = [0u8; 20];
        a[19] = 7;
        a
    });
    let caps = vec![SimByoc::new(CAP, ByocKind::Echo).price(1, 1).capacity(4)];
    let sim_config = SimConfig {
        name: "idle".into(),
        eth_address: Some(eth),
        byoc: caps,
        byoc_data_interval: Some(Duration::from_secs(20)),
        ..SimConfig::default()
    };
    let sim = Sim::start(sim_config).await.unwrap();
    let mut c = config(&[sim.url()]);
    c.signer = Some(Arc::new(LocalSigner::from_hex(KEY).unwrap()));
    // Paused time is this test's runtime's: the stream must run on it.
    c.http_threads = 0;
    let gw = start(c).await;
    let started = reqwest::Client::new()
        .post(format!("http://{}/process/stream/start", gw.http_addr))
        .header("Livepeer", job_header(CAP, 60, flags))
        .header("Authorization", OWNER)
        .json(&json!({"stream_name": "quiet", "stream_id": "1", "params": "{}"}))
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 200);
    let s: Value = started.json().await.unwrap();
    (sim, gw, s)
}

/// The stream is still running at its orchestrator, never stopped, nobody penalised.
async fn still_running(sim: &Sim, gw: &Gateway) {
    let stats = sim.byoc_stats();
    assert_eq!((stats.stream_starts, stats.streams_active), (1, 1), "{stats:?}");
    assert_eq!(stats.stream_stops, 0, "{stats:?}");
    assert_ne!(job_state(gw, sim.url(), &format!("byoc/{CAP}")).await["state"], "ejected");
}

/// Its reader gone, the stream ends within two keepalives' period, stopped at the
/// orchestrator, with nobody penalised.
async fn ends_unattended(sim: &Sim, gw: &Gateway) {
    eventually(Duration::from_secs(40), "the unattended stream to end", || async {
        sim.byoc_stats().streams_active == 0
    })
    .await;
    assert_eq!(sim.byoc_stats().stream_stops, 1);
    assert_ne!(job_state(gw, sim.url(), &format!("byoc/{CAP}")).await["state"], "ejected");
}

/// Before, the control relay stopped at the sweep and waited for ever when a reader was
/// there: no keepalive went out, so the orchestrator ended the stream for its idle control
/// channel five minutes later (the gateway then blamed it and paid another to start it
/// again), and a stream whose reader left later was never ended by the gateway.
#[tokio::test(start_paused = true)]
async fn a_data_only_stream_lives_while_read_and_ends_once_its_reader_left() {
    let (sim, gw, s) = quiet_stream(DATA_ONLY).await;
    let reader = reqwest::Client::new()
        .get(s["data_url"].as_str().unwrap())
        .header("Authorization", OWNER)
        .send()
        .await
        .unwrap();
    assert_eq!(reader.status(), 200);

    // The reader takes the orchestrator's data lines as they come, so that only the client's
    // control channel is idle.
    let mut lines = reader.bytes_stream();
    let mut seen = 0usize;
    let until = tokio::time::Instant::now() + QUIET;
    while let Ok(Some(chunk)) = tokio::time::timeout_at(until, lines.next()).await {
        seen += String::from_utf8_lossy(&chunk.unwrap()).matches("tick").count();
    }
    assert!(seen >= 30, "data lines read: {seen}");
    still_running(&sim, &gw).await;

    drop(lines);
    ends_unattended(&sim, &gw).await;
}

/// A stream whose only output is video, watched by its client: the rule that ends a stream
/// without input once nobody reads it counted data readers only, and so ended this one at
/// the first keepalive after the control channel's sweep, while it was watched.
#[tokio::test(start_paused = true)]
async fn an_output_only_stream_lives_while_watched_and_ends_once_its_watcher_left() {
    let (sim, gw, s) = quiet_stream(OUTPUT_ONLY).await;
    let config = ClientConfig::default();
    let client = reqwest::Client::builder()
        .default_headers(
            [(http::header::AUTHORIZATION, OWNER.parse().unwrap())].into_iter().collect(),
        )
        .build()
        .unwrap();
    let output = s["subscribe_url"].as_str().unwrap();
    let mut watcher = HttpSubscriber::new(client, output, 0, config).unwrap();
    let until = tokio::time::Instant::now() + QUIET;
    let mut segments = 0usize;
    while tokio::time::Instant::now() < until {
        let mut reader = watcher.segment().await.unwrap().expect("the output goes on");
        while reader.chunk().await.unwrap().is_some() {}
        segments += 1;
    }
    assert!(segments >= 30, "output segments read: {segments}");
    still_running(&sim, &gw).await;
    drop(watcher);
    ends_unattended(&sim, &gw).await;
}
