//! Long jobs under customer keys: the concurrent-stream limit (`max_streams`) on LLM streams
//! and live streams, and a live stream charged interval by interval and stopped when its
//! key's budget cannot pay for the next one.

use std::sync::Arc;
use std::time::Duration;

use livepeer_gateway::keys::price::CustomerPrices;
use livepeer_sim::{Sim, SimConfig, SimModel};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::keys::{admin, create, keys_config};
use crate::support::*;

async fn read(req: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let resp = req.send().await.unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_holds_at_most_its_max_streams_llm_streams() {
    let sim = Sim::start(SimConfig {
        name: "keys-llm".into(),
        models: vec![SimModel::new("llm", LLM).price(0, 1).capacity(8)],
        token_delay: Duration::from_millis(50),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let gw = start(keys_config(&[sim.url()], dir.path(), None)).await;
    let (_, secret) = create(&gw, json!({"name": "one-stream", "max_streams": 1})).await;
    let http = reqwest::Client::new();
    let llm = |stream: bool| {
        // The simulator echoes the prompt a word a token: 40 tokens, 50 ms apart.
        let words = vec!["word"; 40].join(" ");
        let body = json!({"model": LLM, "stream": stream, "max_tokens": 100,
            "messages": [{"role": "user", "content": words}]});
        http.post(format!("http://{}/llm", gw.http_addr)).bearer_auth(&secret).json(&body)
    };
    // The first stream runs (its headers are in, its tokens still coming)...
    let first = llm(true).send().await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    // ...so a second stream is refused, with a clear error; a request that is not a stream
    // is not counted.
    let (status, body) = read(llm(true)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"]["type"], "stream_limit_exceeded", "{body}");
    let (status, body) = read(llm(false)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Once the first has ended, another may start.
    let text = first.text().await.unwrap();
    assert!(text.contains(r#""finish_reason":"stop""#), "{text}");
    eventually(Duration::from_secs(10), "the stream's place is released", || async {
        llm(true).send().await.unwrap().status() == StatusCode::OK
    })
    .await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_stream_is_charged_as_it_runs_and_stopped_when_the_budget_runs_out() {
    let sim = Sim::start(SimConfig {
        name: "keys-live-budget".into(),
        models: vec![SimModel::new("live-video-to-video", "noop").price(0, 1).capacity(4)],
        live_event_interval: Duration::from_millis(200),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = || {
        let mut c = keys_config(&[sim.url()], dir.path(), None);
        c.live.payment_interval = Duration::from_secs(1);
        // 0.6 USD a minute: 0.01 USD (10 000 000 nano-USD) a second.
        let table = r#"{"price": [{"pipeline": "live-video-to-video", "usd": "0.6"}]}"#;
        c.keys.prices = Arc::new(CustomerPrices::parse(Some(table), None).unwrap());
        c
    };
    let gw = start(config()).await;
    // 0.035 USD: three one-second intervals, not four.
    let body = json!({"name": "live", "budget_micro_usd": 35_000, "max_streams": 1});
    let (id, secret) = create(&gw, body).await;
    let http = reqwest::Client::new();
    let url = |path: &str| format!("http://{}/live/video-to-video/{path}", gw.http_addr);
    let (status, v) = read(http.post(url("cam/start")).bearer_auth(&secret).json(&json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    // One stream at a time for this key.
    let (status, v) =
        read(http.post(url("cam2/start")).bearer_auth(&secret).json(&json!({}))).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert_eq!(v["error"]["type"], "stream_limit_exceeded", "{v}");

    // The stream runs while its intervals are paid for, then stops, saying why.
    let mut last = Value::Null;
    for _ in 0..200 {
        let (_, status) = read(http.get(url("cam/status")).bearer_auth(&secret)).await;
        if status["state"] == "stopped" {
            last = status;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(last["state"], "stopped", "the stream was not stopped by its budget");
    let reason = last["stop_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("budget_exceeded"), "{last}");
    assert!(last["uptime_ms"].as_u64().unwrap() >= 2_000, "three intervals ran: {last}");
    // Stopped, the stream no longer holds the key's place.
    eventually(Duration::from_secs(10), "the stream's place is released", || async {
        let req = http.post(url("cam3/start")).bearer_auth(&secret).json(&json!({}));
        // Its place back, the budget refuses the new stream before any orchestrator is paid.
        read(req).await.0 == StatusCode::PAYMENT_REQUIRED
    })
    .await;
    gw.shutdown().await;

    // The ledger: the start and two more intervals charged, the fourth refused.
    let gw = start(config()).await;
    let (status, usage) = admin(&gw, "GET", &format!("/keys/{id}/usage"), None).await;
    assert_eq!(status, StatusCode::OK, "{usage}");
    assert_eq!(usage["charged_nusd"], 30_000_000, "{usage}");
    assert_eq!(usage["budget"]["remaining_usd"], "0.005000000", "{usage}");
    assert_eq!(usage["budget"]["reserved_usd"], "0.000000000", "{usage}");
    gw.shutdown().await;
}

#[tokio::test]
async fn byoc_jobs_are_charged_their_seconds_within_the_budget() {
    use base64::Engine as _;
    use livepeer_sim::{ByocKind, SimByoc};
    let sim = Sim::start(SimConfig {
        name: "keys-byoc".into(),
        byoc: vec![SimByoc::new("text-reversal", ByocKind::Reverse).capacity(8)],
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut c = keys_config(&[sim.url()], dir.path(), None);
    // 0.001 USD a second: a job with a 10 s timeout reserves 0.01 USD, and is charged the
    // second the orchestrator worked (0.001 USD).
    let table = r#"{"price": [{"pipeline": "byoc", "usd": "0.001"}]}"#;
    c.keys.prices = Arc::new(CustomerPrices::parse(Some(table), None).unwrap());
    let gw = start(c).await;
    // 0.0115 USD: two jobs leave 0.0095 USD, under a third one's reservation.
    let (id, secret) = create(&gw, json!({"name": "byoc", "budget_micro_usd": 11_500})).await;
    let job = json!({"request": "{}", "parameters": "{}", "capability": "text-reversal",
        "timeout_seconds": 10});
    let header = base64::engine::general_purpose::STANDARD.encode(job.to_string());
    let http = reqwest::Client::new();
    let call = || {
        http.post(format!("http://{}/process/request/reverse", gw.http_addr))
            .bearer_auth(&secret)
            .header("Livepeer", &header)
            .json(&json!({"text": "hello"}))
    };
    for _ in 0..2 {
        let resp = call().send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{}", resp.text().await.unwrap());
    }
    let (status, body) = read(call()).await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{body}");
    assert_eq!(body["error"]["remaining_usd"], "0.009500000", "{body}");
    assert_eq!(sim.byoc_stats().requests, 2, "the refused job reached no orchestrator");
    gw.shutdown().await;
    let gw = start(keys_config(&[sim.url()], dir.path(), None)).await;
    let (_, usage) = admin(&gw, "GET", &format!("/keys/{id}/usage"), None).await;
    assert_eq!(usage["charged_nusd"], 2_000_000, "{usage}");
    assert_eq!(usage["by_model"][0]["model"], "text-reversal", "{usage}");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_byoc_stream_is_charged_as_it_runs_and_stopped_when_the_budget_runs_out() {
    use livepeer_sim::{ByocKind, SimByoc};
    const CAP: &str = "echo-stream";
    let caps = vec![SimByoc::new(CAP, ByocKind::Echo).capacity(4)];
    let config = SimConfig { name: "keys-byoc-stream".into(), byoc: caps, ..SimConfig::default() };
    let sim = Sim::start(config).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = || {
        let mut c = keys_config(&[sim.url()], dir.path(), None);
        c.byoc.payment_interval = Duration::from_secs(1);
        // 0.01 USD a second of BYOC compute.
        let table = r#"{"price": [{"pipeline": "byoc", "usd": "0.01"}]}"#;
        c.keys.prices = Arc::new(CustomerPrices::parse(Some(table), None).unwrap());
        c
    };
    let gw = start(config()).await;
    // 0.025 USD: two one-second intervals, not three.
    let body = json!({"name": "byoc-stream", "budget_micro_usd": 25_000, "max_streams": 1});
    let (id, secret) = create(&gw, body).await;
    let http = reqwest::Client::new();
    let header = crate::byoc_stream::job_header(CAP, 60, r#"{"enable_data_output":true}"#);
    let start_stream = |name: &str| {
        let body = json!({"stream_name": name, "stream_id": "1", "params": "{}"});
        http.post(format!("http://{}/process/stream/start", gw.http_addr))
            .bearer_auth(&secret)
            .header("Livepeer", &header)
            .json(&body)
    };
    let (status, v) = read(start_stream("a")).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (status, v) = read(start_stream("b")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert_eq!(v["error"]["type"], "stream_limit_exceeded", "{v}");
    // Stopped by its budget, the stream gives its place back; the next is refused with 402.
    eventually(Duration::from_secs(15), "the budget stops the stream", || async {
        read(start_stream("c")).await.0 == StatusCode::PAYMENT_REQUIRED
    })
    .await;
    gw.shutdown().await;

    let gw = start(config()).await;
    let (_, usage) = admin(&gw, "GET", &format!("/keys/{id}/usage"), None).await;
    assert_eq!(usage["charged_nusd"], 20_000_000, "{usage}");
    let url = format!("http://{}/keys/{id}/usage.csv?from=0", gw.admin_addr);
    let csv = http.get(url).bearer_auth(crate::keys::TOKEN).send().await.unwrap();
    let csv = csv.text().await.unwrap();
    // The interval the budget could not pay for is in the ledger, refused, on the capability.
    assert!(csv.lines().any(|l| l.contains(&format!(",byoc,{CAP},402,refused,"))), "{csv}");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_transcoding_segments_are_charged_their_video_within_the_budget() {
    let sim = crate::transcode::sim("keys-transcode", true).await;
    let dir = tempfile::tempdir().unwrap();
    // A 2 s segment costs 0.002 USD.
    let gw = start(crate::keys_charge::transcode_keys_config(sim.url(), dir.path())).await;
    let (id, secret) = create(&gw, json!({"name": "tc", "budget_micro_usd": 5_000})).await;
    let push = |seq: u64| crate::keys_charge::push_segment(&gw, &secret, "keyed", seq, "2000");
    for seq in 0..2 {
        let (status, v) = read(push(seq)).await;
        assert_eq!(status, StatusCode::OK, "{v}");
    }
    let (status, v) = read(push(2)).await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{v}");
    assert_eq!(v["error"]["remaining_usd"], "0.001000000", "{v}");
    gw.shutdown().await;
    let gw = start(keys_config(&[sim.url()], dir.path(), None)).await;
    let (_, usage) = admin(&gw, "GET", &format!("/keys/{id}/usage"), None).await;
    assert_eq!(usage["charged_nusd"], 4_000_000, "{usage}");
    assert_eq!(usage["by_model"][0]["pipeline"], "transcode", "{usage}");
    gw.shutdown().await;
}

/// A pushed segment is transcoded and published in a task of its own, whether its pusher
/// waits for the answer or not. A pusher that left before the answer had its request's row
/// written by the dropped request (499), uncharged: every segment of a stream pushed so was in
/// its playlist for free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_segment_published_after_its_pusher_left_is_charged() {
    pushed_after_the_pusher_left(json!({"name": "left", "budget_micro_usd": 5_000})).await;
}

/// The same with a key that has no budget: nothing is reserved and the orchestrator is not
/// paid a ticket, yet the segment is published and owed (the dropped request wrote no row).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_segment_published_after_its_pusher_left_is_charged_without_a_budget() {
    pushed_after_the_pusher_left(json!({"name": "left"})).await;
}

async fn pushed_after_the_pusher_left(key: Value) {
    let sim = Sim::start(SimConfig {
        name: "keys-left".into(),
        transcode_fast: true,
        transcode_latency: Duration::from_millis(500),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let gw = start(crate::keys_charge::transcode_keys_config(sim.url(), dir.path())).await;
    let (id, secret) = create(&gw, key).await;
    let push = crate::keys_charge::push_segment(&gw, &secret, "left", 0, "2000");
    // The pusher gives up while the orchestrator transcodes.
    let gone = push.timeout(Duration::from_millis(200)).send().await;
    assert!(gone.is_err(), "answered within 200 ms: {gone:?}");
    eventually(Duration::from_secs(10), "the segment published", || async {
        let (status, media) = crate::transcode::get_text(&gw, "/stream/left/low.m3u8").await;
        status == 200 && media.contains("#EXTINF")
    })
    .await;
    let rows = crate::keys_charge::ledger(&gw, &id, 1).await;
    assert_eq!(rows[0]["status"], "499", "{rows:?}");
    assert_eq!(rows[0]["charged_usd"], "0.002000000", "{rows:?}");
    gw.shutdown().await;
}
