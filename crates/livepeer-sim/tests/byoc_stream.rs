//! BYOC streams on the simulator, over real sockets and real trickle channels: the start call
//! and its channel headers, a segment copied to the output with a data line, updates and
//! events, stream payments, stop, capacity, and the monitor stopping a stream out of balance.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    reason = "tests fail by panicking"
)]

#[path = "byoc_support/mod.rs"]
mod support;

use std::time::Duration;

use bytes::Bytes;
use livepeer_sim::{ByocKind, Sim, SimByoc, SimConfig};
use livepeer_trickle::{
    ClientConfig, HttpPublisher, HttpSubscriber, Publish as _, Subscribe as _, publish_segment,
    read_segment,
};
use serde_json::{Value, json};
use support::{Client, EV, FACE, header, key, orchestrator};

const PRICE: i64 = 10;
const FLAGS: &str =
    r#"{"enable_video_ingress":true,"enable_video_egress":true,"enable_data_output":true}"#;

async fn sim(billing: Duration, price: i64) -> Sim {
    Sim::start(SimConfig {
        eth_address: Some(orchestrator()),
        face_value: FACE,
        ticket_ev: EV,
        byoc: vec![
            SimByoc::new("live-echo", ByocKind::Echo).price(price, 1).capacity(1),
            SimByoc::new("free-echo", ByocKind::Echo),
        ],
        byoc_stream_billing: billing,
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

fn request(id: &str) -> String {
    json!({ "stream_id": id }).to_string()
}

/// `POST /ai/stream/<call>` with a signed job for stream `id`.
async fn call(
    gw: &Client,
    call: &str,
    cap: &str,
    id: &str,
    params: &str,
    payment: Option<&str>,
    body: Value,
) -> reqwest::Response {
    let mut job = gw.job_value(cap, &request(id), params, 30);
    job["id"] = json!(id);
    let job = support::b64(job.to_string().as_bytes());
    let body = body.to_string().into_bytes();
    gw.post(&format!("/ai/stream/{call}"), &job, payment, "application/json", body).await
}

async fn next_json(sub: &mut HttpSubscriber) -> Value {
    let mut reader = sub.segment().await.unwrap().expect("a segment");
    serde_json::from_slice(&read_segment(&mut reader, 1 << 20).await.unwrap()).unwrap()
}

#[tokio::test]
async fn a_stream_starts_with_its_channels_copies_segments_and_stops() {
    let sim = sim(Duration::from_secs(23), PRICE).await;
    let mut gw = Client::new(&sim, key(7));
    let payment = gw.payment_from_token("live-echo", 1).await;
    let params = json!({ "params": { "prompt": "x" } });
    let resp = call(&gw, "start", "live-echo", "s1", FLAGS, Some(&payment), params).await;
    assert_eq!(resp.status(), 200);
    let url = |name: &str| header(&resp, name).unwrap();
    let base = format!("{}/ai/trickle/s1", sim.service_url());
    assert_eq!(url("X-Publish-Url"), base);
    assert_eq!(url("X-Subscribe-Url"), format!("{base}-out"));
    assert_eq!(url("X-Control-Url"), format!("{base}-control"));
    assert_eq!(url("X-Events-Url"), format!("{base}-events"));
    assert_eq!(url("X-Data-Url"), format!("{base}-data"));
    let balance: i64 = url("Livepeer-Balance").parse().unwrap();
    assert!(balance >= EV as i64 - PRICE, "one ticket in, one second of the start out");
    let (publish, out, events, data) =
        (url("X-Publish-Url"), url("X-Subscribe-Url"), url("X-Events-Url"), url("X-Data-Url"));
    assert!(resp.bytes().await.unwrap().is_empty());
    assert_eq!(sim.byoc_stats().streams_active, 1);

    let config = ClientConfig::default();
    let http = config.client().unwrap();
    let mut events = HttpSubscriber::new(http.clone(), &events, 0, config.clone()).unwrap();
    let started = next_json(&mut events).await;
    assert_eq!(started["type"], "stream_started");
    assert_eq!(started["params"], json!({ "params": { "prompt": "x" } }));

    let mut input =
        HttpPublisher::new(http.clone(), &publish, "video/MP2T", config.clone()).unwrap();
    let mut out = HttpSubscriber::new(http.clone(), &out, 0, config.clone()).unwrap();
    let mut data = HttpSubscriber::new(http.clone(), &data, 0, config.clone()).unwrap();
    let segment = Bytes::from((0..188 * 40).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    publish_segment(&mut input, segment.clone()).await.unwrap();
    let mut reader = out.segment().await.unwrap().unwrap();
    assert_eq!(read_segment(&mut reader, 1 << 20).await.unwrap(), segment);
    let mut reader = data.segment().await.unwrap().unwrap();
    let line = read_segment(&mut reader, 1 << 20).await.unwrap();
    assert_eq!(line, Bytes::from(format!("{{\"bytes\":{},\"seq\":0}}\n", segment.len())));

    // An update reaches the worker, which reports it as an event.
    let resp = call(&gw, "update", "live-echo", "s1", "{}", None, json!({ "prompt": "y" })).await;
    assert_eq!(resp.status(), 200);
    let update = next_json(&mut events).await;
    assert_eq!(update, json!({ "type": "params_update", "params": { "prompt": "y" } }));
    assert_eq!(sim.byoc_stats().stream_updates, vec![json!({ "prompt": "y" })]);

    // A stream payment credits and answers the balance.
    let payment = gw.payment_from_token("live-echo", 1).await;
    let resp = call(&gw, "payment", "live-echo", "s1", "{}", Some(&payment), json!({})).await;
    assert_eq!(resp.status(), 200);
    let after: i64 = header(&resp, "Livepeer-Balance").unwrap().parse().unwrap();
    assert!(after >= balance + EV as i64, "{after} after {balance}");

    let resp = call(&gw, "stop", "live-echo", "s1", "{}", None, json!({})).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap(), json!({ "stream_id": "s1", "stopped": true }));
    let stats = sim.byoc_stats();
    assert_eq!((stats.streams_active, stats.stream_starts, stats.stream_stops), (0, 1, 1));
    assert_eq!((stats.segments_in, stats.segments_out, stats.data_lines), (1, 1, 1));
    assert_eq!(stats.stream_payments, 1);
    assert!(stats.load.is_empty(), "the stream's capacity is back");
    assert!(stats.ev_credited >= stats.fees, "EV received covers the fees");
    // Its channels are gone: the output subscriber sees the end.
    assert!(out.segment().await.unwrap().is_none());
    // The id can be used again at once.
    let payment = gw.payment_from_token("live-echo", 1).await;
    let resp = call(&gw, "start", "live-echo", "s1", "{}", Some(&payment), json!({})).await;
    assert_eq!(resp.status(), 200);
    assert!(header(&resp, "X-Publish-Url").is_none(), "no ingress asked for");
    assert!(header(&resp, "X-Control-Url").is_some() && header(&resp, "X-Events-Url").is_some());
}

#[tokio::test]
async fn starts_are_refused_as_go_livepeer_refuses_them() {
    let sim = sim(Duration::from_secs(23), PRICE).await;
    let mut gw = Client::new(&sim, key(7));
    // No payment and a price: 402 (a job would get 400).
    let resp = call(&gw, "start", "live-echo", "a", FLAGS, None, json!({})).await;
    assert_eq!(resp.status(), 402);
    assert_eq!(resp.text().await.unwrap(), "Insufficient balance for request\n");
    // An unknown capability: 400 here, not a job's 503.
    let resp = call(&gw, "start", "nope", "a", FLAGS, None, json!({})).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.text().await.unwrap(), "No capacity available for capability\n");
    // Parameters must be JSON for a stream.
    let resp = call(&gw, "start", "free-echo", "a", "", None, json!({})).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.text().await.unwrap(), "unexpected end of JSON input\n");
    let resp = call(&gw, "start", "free-echo", "a", "{}", None, json!([1])).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.text().await.unwrap(), "Invalid JSON body\n");

    // Capacity 1 is counted, not enforced (go-livepeer `ReserveExternalCapabilityCapacity`):
    // a second stream is taken, and tokens report no capacity meanwhile.
    let payment = gw.payment_from_token("live-echo", 2).await;
    let resp = call(&gw, "start", "live-echo", "a", FLAGS, Some(&payment), json!({})).await;
    assert_eq!(resp.status(), 200);
    let resp = call(&gw, "start", "live-echo", "b", FLAGS, None, json!({})).await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    assert_eq!(sim.byoc_stats().load.get("live-echo"), Some(&2));
    // The same id twice.
    let resp = call(&gw, "start", "free-echo", "a", FLAGS, None, json!({})).await;
    assert_eq!(resp.status(), 500);
    assert_eq!(resp.text().await.unwrap(), "Error adding stream to external capabilities\n");
    // Updates for streams the worker does not run are its 404.
    let resp = call(&gw, "update", "free-echo", "zz", "{}", None, json!({})).await;
    assert_eq!(resp.status(), 404);
    // A stop with bad creds.
    let mut job = gw.job_value("free-echo", &request("a"), "{}", 30);
    job["sig"] = json!(gw.sig_by(&key(9), "x"));
    let job = support::b64(job.to_string().as_bytes());
    let resp = gw.post("/ai/stream/stop", &job, None, "application/json", Vec::new()).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(
        resp.text().await.unwrap(),
        "Failed to stop stream, request not valid err=Could not verify job creds\n"
    );
    // Streams "a" and "b" of live-echo run.
    assert_eq!(sim.byoc_stats().streams_active, 2);
    let resp = call(&gw, "stop", "free-echo", "a", "{}", None, json!({})).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(sim.byoc_stats().streams_active, 1);
    // A payment it cannot decode leaves a start, or a payment call, unanswered, as
    // go-livepeer's `confirmPayment` does (see the jobs' `a_payment_it_cannot_take_…`).
    for what in ["start", "payment"] {
        let mut job = gw.job_value("live-echo", &request("c"), FLAGS, 30);
        job["id"] = json!("c");
        let sent = gw
            .http
            .post(format!("{}/ai/stream/{what}", gw.base))
            .header("Livepeer", support::b64(job.to_string().as_bytes()))
            .header("Livepeer-Payment", "%%%")
            .body("{}")
            .send()
            .await;
        assert!(sent.is_err(), "{what}: {sent:?}");
    }
    assert_eq!(sim.byoc_stats().streams_active, 1);
}

#[tokio::test]
async fn closing_the_control_channel_ends_the_stream() {
    let sim = sim(Duration::from_secs(23), PRICE).await;
    let gw = Client::new(&sim, key(7));
    let resp = call(&gw, "start", "free-echo", "c", FLAGS, None, json!({})).await;
    assert_eq!(resp.status(), 200);
    let control = header(&resp, "X-Control-Url").unwrap();
    let config = ClientConfig::default();
    let http = config.client().unwrap();
    let mut control = HttpPublisher::new(http, &control, "application/json", config).unwrap();
    publish_segment(&mut control, Bytes::from_static(br#"{"keep":"alive"}"#)).await.unwrap();
    control.close().await.unwrap();
    while sim.byoc_stats().streams_active != 0 || !sim.byoc_stats().load.is_empty() {
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn a_stream_whose_balance_stays_negative_is_stopped() {
    // 16 wei/s needs 960 wei up front: one ticket of EV 1000 covers it, and then ticks of
    // 10 ms debiting 16 wei each run it out after about 60 ticks.
    let sim = sim(Duration::from_millis(10), 16).await;
    let mut gw = Client::new(&sim, key(7));
    let payment = gw.payment_from_token("live-echo", 1).await;
    let resp = call(&gw, "start", "live-echo", "d", FLAGS, Some(&payment), json!({})).await;
    assert_eq!(resp.status(), 200);
    let out = header(&resp, "X-Subscribe-Url").unwrap();
    let config = ClientConfig::default();
    let mut out = HttpSubscriber::new(config.client().unwrap(), &out, 0, config).unwrap();
    // The stream's end closes its channels: the output subscriber sees the end of stream.
    assert!(out.segment().await.unwrap().is_none());
    let stats = sim.byoc_stats();
    assert_eq!(stats.streams_stopped_for_balance, 1);
    assert_eq!(stats.streams_active, 0);
    let balance = sim.payments().balance(gw.address(), "live-echo").unwrap();
    assert!(balance.is_negative(), "stopped on the second negative check: {balance}");
}

#[tokio::test(start_paused = true)]
async fn a_stream_whose_control_channel_stays_idle_is_ended() {
    let sim = sim(Duration::from_secs(23), PRICE).await;
    let gw = Client::new(&sim, key(7));
    let resp = call(&gw, "start", "free-echo", "idle", "{}", None, json!({})).await;
    assert_eq!(resp.status(), 200);
    let events = header(&resp, "X-Events-Url").unwrap();
    let config = ClientConfig::default();
    let mut events = HttpSubscriber::new(config.client().unwrap(), &events, 0, config).unwrap();
    assert_eq!(next_json(&mut events).await["type"], "stream_started");
    // Nobody publishes on the control channel: after the idle timeout the stream ends.
    while sim.byoc_stats().streams_active != 0 {
        tokio::time::sleep(Duration::from_secs(30)).await;
    }
    assert!(sim.byoc_stats().load.is_empty());
}
