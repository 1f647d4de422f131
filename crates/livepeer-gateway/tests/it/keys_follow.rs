//! Running streams follow their key: a live stream ends at once when its key is disabled or
//! the operator stops the key's streams through this instance, at its next interval when
//! another instance does, and a lowered budget is what its next interval is reserved
//! against; an RTMP stream ends when its key is disabled; a pushed transcoding stream ends at
//! its next push when the operator stops the key's streams.

use std::sync::Arc;
use std::time::Duration;

use livepeer_gateway::Gateway;
use livepeer_gateway::keys::price::CustomerPrices;
use livepeer_sim::{Sim, SimConfig, SimModel};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::keys::{admin, create, keys_config};
use crate::support::*;

async fn live_sim(name: &str) -> Sim {
    Sim::start(SimConfig {
        name: name.into(),
        models: vec![SimModel::new("live-video-to-video", "noop").price(0, 1).capacity(8)],
        live_event_interval: Duration::from_millis(200),
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

/// Live streams on keys, charged every `interval` at 0.6 USD a minute, the keys in `url`'s
/// PostgreSQL or SQLite under `dir`.
fn live_config(
    sim: &Sim,
    dir: &std::path::Path,
    url: Option<String>,
    interval: Duration,
) -> livepeer_gateway::Config {
    let mut c = keys_config(&[sim.url()], dir, url);
    c.live.payment_interval = interval;
    let table = r#"{"price": [{"pipeline": "live-video-to-video", "usd": "0.6"}]}"#;
    c.keys.prices = Arc::new(CustomerPrices::parse(Some(table), None).unwrap());
    c
}

fn url(gw: &Gateway, path: &str) -> String {
    format!("http://{}/live/video-to-video/{path}", gw.http_addr)
}

async fn live_start(gw: &Gateway, secret: &str, name: &str) -> (StatusCode, Value) {
    let req = reqwest::Client::new().post(url(gw, &format!("{name}/start"))).bearer_auth(secret);
    let resp = req.json(&json!({})).send().await.unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn live_status(gw: &Gateway, secret: &str, name: &str) -> Value {
    let req = reqwest::Client::new().get(url(gw, &format!("{name}/status"))).bearer_auth(secret);
    req.send().await.unwrap().json().await.unwrap_or(Value::Null)
}

/// Waits (at most `limit`) for stream `name` to stop; answers its status.
async fn stopped(gw: &Gateway, secret: &str, name: &str, limit: Duration) -> Value {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let status = live_status(gw, secret, name).await;
        if status["state"] == "stopped" {
            return status;
        }
        assert!(tokio::time::Instant::now() < deadline, "stream {name} never stopped: {status}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_stream_ends_at_once_when_its_streams_are_stopped_or_its_key_disabled() {
    let sim = live_sim("follow-live").await;
    let dir = tempfile::tempdir().unwrap();
    // An interval of an hour: only the change itself can end the streams within the test.
    let gw = start(live_config(&sim, dir.path(), None, Duration::from_secs(3600))).await;
    let (id, secret) = create(&gw, json!({"name": "follow"})).await;
    let (status, v) = live_start(&gw, &secret, "cam").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(live_status(&gw, &secret, "cam").await["state"], "running");

    // The operator stops the key's streams: this one ends, saying why...
    let (status, v) = admin(&gw, "POST", &format!("/keys/{id}/streams/stop"), None).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert!(v["streams_stopped_at_ms"].as_i64().unwrap() > 0, "{v}");
    let last = stopped(&gw, &secret, "cam", Duration::from_secs(20)).await;
    let reason = last["stop_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("stream_stopped"), "{last}");
    // ...and the key may start new ones, which run.
    let (status, v) = live_start(&gw, &secret, "cam2").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(live_status(&gw, &secret, "cam2").await["state"], "running");
    // An unknown key is a 404 naming it.
    let (status, v) = admin(&gw, "POST", "/keys/key_0000/streams/stop", None).await;
    assert_eq!((status, &v["error"]["field"]), (StatusCode::NOT_FOUND, &json!("id")), "{v}");

    // Disabled, the key's running stream ends too.
    let (status, v) = admin(&gw, "POST", &format!("/keys/{id}/disable"), None).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let last = stopped(&gw, &secret, "cam2", Duration::from_secs(20)).await;
    let reason = last["stop_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("invalid_api_key") && reason.contains("disabled"), "{last}");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lowered_budget_stops_a_running_stream_at_its_next_interval() {
    let sim = live_sim("follow-budget").await;
    let dir = tempfile::tempdir().unwrap();
    let gw = start(live_config(&sim, dir.path(), None, Duration::from_secs(1))).await;
    let (id, secret) = create(&gw, json!({"name": "lowered"})).await;
    let (status, v) = live_start(&gw, &secret, "cam").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    // No budget: the stream would run on; lowered to less than an interval (0.01 USD).
    let patch = json!({"budget_micro_usd": 5_000});
    let (status, v) = admin(&gw, "PATCH", &format!("/keys/{id}"), Some(patch)).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let last = stopped(&gw, &secret, "cam", Duration::from_secs(20)).await;
    let reason = last["stop_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("budget_exceeded"), "{last}");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_instance_stopping_a_key_s_streams_ends_them_at_their_next_interval() {
    let Some(pg) = crate::keys_pg::postgres().await else { return };
    let sim = live_sim("follow-shared").await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let interval = Duration::from_secs(1);
    let a = start(live_config(&sim, dir_a.path(), Some(pg.url()), interval)).await;
    let b = start(live_config(&sim, dir_b.path(), Some(pg.url()), interval)).await;
    let (id, secret) = create(&a, json!({"name": "shared"})).await;
    let (status, v) = live_start(&a, &secret, "cam").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    // Stopped through the other instance: `a` reads it at an interval, once its read of
    // the key (trusted 10 s) is old.
    let (status, v) = admin(&b, "POST", &format!("/keys/{id}/streams/stop"), None).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let last = stopped(&a, &secret, "cam", Duration::from_secs(40)).await;
    assert!(last["stop_reason"].as_str().unwrap_or_default().contains("stream_stopped"), "{last}");
    // A stream started after the stop runs.
    let (status, v) = live_start(&a, &secret, "cam2").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(live_status(&a, &secret, "cam2").await["state"], "running");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rtmp_stream_ends_when_its_key_is_disabled() {
    use crate::transcode_rtmp::publish;
    let sim = crate::transcode::sim("follow-rtmp", false).await;
    let dir = tempfile::tempdir().unwrap();
    let gw = start(keys_config(&[sim.url()], dir.path(), None)).await;
    let (id, secret) = create(&gw, json!({"name": "rtmp"})).await;
    // Five minutes published: ended long before by the key.
    let ffmpeg = publish(&gw, &format!("stream/cam/{secret}"), 300);
    eventually(Duration::from_secs(60), "a segment of the keyed stream", || async {
        let (status, media) =
            crate::transcode::get_text(&gw, "/stream/cam/P240p30fps16x9.m3u8").await;
        status == 200 && !crate::transcode::listed(&media).1.is_empty()
    })
    .await;
    let (status, v) = admin(&gw, "POST", &format!("/keys/{id}/disable"), None).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    // The connection is closed on the publisher, which fails.
    let out = ffmpeg.wait_with_output().await.unwrap();
    assert!(!out.status.success(), "the stream of a disabled key ran to its end");
    gw.shutdown().await;
}

/// A pushed transcoding stream has no connection to close: it follows its key push by push.
/// Stopped by the operator, the stream started before the stop ends at its next push, which is
/// refused saying why (410 `stream_stopped`), as are the key's later pushes of it; the stream
/// is closed (its playlists, its status and its place among the key's `max_streams` go), and
/// a stream the key starts after the stop runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_transcoding_stream_ends_at_its_next_push_when_its_streams_are_stopped() {
    let sim = crate::transcode::sim("follow-push", true).await;
    let dir = tempfile::tempdir().unwrap();
    let gw = start(crate::keys_charge::transcode_keys_config(sim.url(), dir.path())).await;
    // One stream at a time: the new stream below runs only once the stopped one is closed.
    let (id, secret) = create(&gw, json!({"name": "push", "max_streams": 1})).await;
    let push = |manifest, seq| push_as(&gw, &secret, manifest, seq);
    for seq in 0..2 {
        let (status, v) = push("cam", seq).await;
        assert_eq!(status, StatusCode::OK, "{v}");
    }
    let (status, _) = crate::transcode::get_text(&gw, "/stream/cam.m3u8").await;
    assert_eq!(status, 200);

    let (status, v) = admin(&gw, "POST", &format!("/keys/{id}/streams/stop"), None).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    // The stream's next push, and any after it, are refused with why...
    for seq in 2..4 {
        let (status, v) = push("cam", seq).await;
        assert_eq!(status, StatusCode::GONE, "{v}");
        assert_eq!(v["error"]["type"], "stream_stopped", "{v}");
        assert_eq!(v["error"]["message"], "the operator stopped this API key's streams", "{v}");
    }
    // ...and the stream is closed, as an ended one is.
    let (status, _) = crate::transcode::get_text(&gw, "/stream/cam.m3u8").await;
    assert_eq!(status, 404);
    let (status, v) = admin(&gw, "GET", "/transcode/streams/cam", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{v}");

    // A stream started after the stop runs, in the key's one place the old stream freed.
    for seq in 0..2 {
        let (status, v) = push("cam2", seq).await;
        assert_eq!(status, StatusCode::OK, "{v}");
    }
    let (status, _) = crate::transcode::get_text(&gw, "/stream/cam2.m3u8").await;
    assert_eq!(status, 200);
    gw.shutdown().await;
}

/// Pushes the test segment as segment `seq` of `manifest` with the key `secret`.
async fn push_as(gw: &Gateway, secret: &str, manifest: &str, seq: u64) -> (StatusCode, Value) {
    let req = crate::keys_charge::push_segment(gw, secret, manifest, seq, "2000");
    let resp = req.send().await.unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}
