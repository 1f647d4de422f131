//! BYOC streams (`/process/stream/…`) through a real gateway to simulated orchestrators
//! running BYOC streams, over real sockets and real trickle channels: video in and out, data
//! events, update, status, stop, ownership, payments and a mid-stream swap.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use futures_util::StreamExt as _;
use livepeer_gateway::Gateway;
use livepeer_pm::LocalSigner;
use livepeer_sim::{ByocKind, Sim, SimByoc, SimConfig};
use livepeer_trickle::{
    ClientConfig, HttpPublisher, HttpSubscriber, Publish as _, ReadSegment as _, Subscribe as _,
    WriteSegment as _,
};
use serde_json::{Value, json};

use crate::support::*;

const CAP: &str = "live-echo";
const KEY: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
const OWNER: &str = "Bearer byoc-stream-client";
const ALL: &str =
    r#"{"enable_video_ingress":true,"enable_video_egress":true,"enable_data_output":true}"#;

async fn sim(name: &str, price: i64, eth: Option<u8>) -> Sim {
    let eth_address = eth.map(|n| {
        let mut addr = [0u8; 20];
        addr[19] = n;
        livepeer_pm::Address::from(addr)
    });
    let caps = vec![SimByoc::new(CAP, ByocKind::Echo).price(price, 1).capacity(4)];
    let config = SimConfig { name: name.into(), eth_address, byoc: caps, ..SimConfig::default() };
    Sim::start(config).await.unwrap()
}

async fn gateway(sims: &[&Sim], payment_interval: Option<Duration>) -> Gateway {
    let urls: Vec<&str> = sims.iter().map(|s| s.url()).collect();
    let mut c = config(&urls);
    c.signer = Some(Arc::new(LocalSigner::from_hex(KEY).unwrap()));
    if let Some(every) = payment_interval {
        c.byoc.payment_interval = every;
    }
    start(c).await
}

/// The client's `Livepeer` header.
fn header(timeout: u64, parameters: &str) -> String {
    job_header(CAP, timeout, parameters)
}

pub fn job_header(capability: &str, timeout: u64, parameters: &str) -> String {
    let job = json!({
        "request": "{}",
        "parameters": parameters,
        "capability": capability,
        "timeout_seconds": timeout,
    });
    STANDARD.encode(job.to_string())
}

async fn start_stream(gw: &Gateway, parameters: &str, body: Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("http://{}/process/stream/start", gw.http_addr))
        .header("Livepeer", header(60, parameters))
        .header("Authorization", OWNER)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn started(gw: &Gateway, name: &str) -> Value {
    let body = json!({"stream_name": name, "stream_id": "1", "params": "{\"prompt\":\"a\"}"});
    let resp = start_stream(gw, ALL, body).await;
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

/// A request to one of the stream's routes, with `auth` as its `Authorization`.
async fn call(
    method: reqwest::Method,
    url: &str,
    auth: Option<&str>,
    body: &str,
) -> reqwest::Response {
    let mut req = reqwest::Client::new().request(method, url).body(body.to_owned());
    if let Some(auth) = auth {
        req = req.header("Authorization", auth);
    }
    req.send().await.unwrap()
}

pub fn trickle() -> (reqwest::Client, ClientConfig) {
    let config = ClientConfig::default();
    (config.client().unwrap(), config)
}

/// An MPEG-TS-shaped segment: `n` packets of 188 bytes with the sync byte, tagged with `tag`.
pub fn segment(tag: u8, n: usize) -> Bytes {
    let mut out = Vec::with_capacity(188 * n);
    for i in 0..n {
        out.push(0x47);
        out.extend(std::iter::repeat_n(tag.wrapping_add(i as u8), 187));
    }
    Bytes::from(out)
}

pub async fn publish(publisher: &mut HttpPublisher, data: &Bytes) {
    let mut writer = publisher.segment().await.unwrap();
    for chunk in data.chunks(1000) {
        writer.write(data.slice_ref(chunk)).await.unwrap();
    }
    writer.finish().await.unwrap();
}

pub async fn next_segment(sub: &mut HttpSubscriber) -> Option<Bytes> {
    let mut reader = sub.segment().await.unwrap()?;
    let mut data = Vec::new();
    while let Some(chunk) = reader.chunk().await.unwrap() {
        data.extend_from_slice(&chunk);
    }
    Some(Bytes::from(data))
}

fn url(v: &Value, field: &str) -> String {
    v[field].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_relays_video_and_data_then_updates_and_stops() {
    let a = sim("a", 0, None).await;
    let gw = gateway(&[&a], None).await;
    let s = started(&gw, "cam").await;
    assert_eq!(s["stream_id"], "cam-1");
    let base = format!("http://{}", gw.http_addr);
    assert_eq!(url(&s, "status_url"), format!("{base}/process/stream/cam-1/status"));
    assert_eq!(url(&s, "data_url"), format!("{base}/process/stream/cam-1/data"));
    let publish_url = url(&s, "publish_url");
    assert!(publish_url.starts_with(&format!("{base}/process/trickle/cam-1-")), "{publish_url}");
    assert!(publish_url.len() > format!("{base}/process/trickle/cam-1-").len() + 30, "unguessable");
    assert_eq!(url(&s, "subscribe_url"), format!("{publish_url}-out"));

    let (client, config) = trickle();
    let mut input =
        HttpPublisher::new(client.clone(), &publish_url, "video/MP2T", config.clone()).unwrap();
    let mut output = HttpSubscriber::new(client, &url(&s, "subscribe_url"), 0, config).unwrap();
    let data = reqwest::Client::new()
        .get(url(&s, "data_url"))
        .header("Authorization", OWNER)
        .send()
        .await
        .unwrap();
    assert_eq!(data.status(), 200);
    assert_eq!(data.headers()["content-type"], "text/event-stream");
    let mut events = data.bytes_stream();
    let mut sse = String::new();
    for i in 0..3u8 {
        let seg = segment(i * 10, 20 + usize::from(i));
        publish(&mut input, &seg).await;
        assert_eq!(next_segment(&mut output).await.unwrap(), seg, "output segment {i}");
        while sse.matches("data: ").count() <= usize::from(i) {
            sse.push_str(std::str::from_utf8(&events.next().await.unwrap().unwrap()).unwrap());
        }
    }
    let lines: Vec<Value> = sse
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let sizes: Vec<u64> = lines.iter().map(|l| l["bytes"].as_u64().unwrap()).collect();
    assert_eq!(sizes, [20 * 188, 21 * 188, 22 * 188]);

    let update =
        call(reqwest::Method::POST, &url(&s, "update_url"), Some(OWNER), r#"{"prompt":"b"}"#).await;
    assert_eq!(update.status(), 200, "{:?}", update.text().await);
    assert_eq!(a.byoc_stats().stream_updates, [json!({"prompt": "b"})]);
    let status: Value = call(reqwest::Method::GET, &url(&s, "status_url"), Some(OWNER), "")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(status["state"], "running");
    assert_eq!(status["orchestrator_url"], a.service_url().trim_end_matches('/'));
    assert_eq!(status["input_segments"], 3);
    assert_eq!(status["output_segments"], 3);
    assert_eq!(status["params"], json!({"prompt": "b"}));
    // Events come back on the client's events channel; control messages reach the worker.
    let (client, config) = trickle();
    let mut events_in =
        HttpSubscriber::new(client.clone(), &url(&s, "events_url"), 0, config.clone()).unwrap();
    let mut control =
        HttpPublisher::new(client, &url(&s, "control_url"), "application/json", config).unwrap();
    livepeer_trickle::publish_segment(&mut control, Bytes::from(r#"{"prompt":"c"}"#))
        .await
        .unwrap();
    let mut seen = Vec::new();
    while !seen.contains(&json!({"type": "params_update", "params": {"prompt": "c"}})) {
        let event = next_segment(&mut events_in).await.expect("an event");
        seen.push(serde_json::from_slice::<Value>(&event).unwrap());
    }
    assert_eq!(seen[0]["type"], "stream_started", "{seen:?}");
    assert!(
        seen.contains(&json!({"type": "params_update", "params": {"prompt": "b"}})),
        "{seen:?}"
    );
    let (code, listed) = admin_get(&gw, "/byoc/streams").await;
    assert_eq!(code, 200);
    assert_eq!(listed["streams"][0]["stream_id"], "cam-1", "{listed}");

    let stop = call(reqwest::Method::POST, &url(&s, "stop_url"), Some(OWNER), "").await;
    assert_eq!(stop.status(), 200);
    // The data events end as go-livepeer ends them, and the orchestrator was told.
    while !sse.contains("event: end") {
        let Some(chunk) = events.next().await else { break };
        sse.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
    }
    assert!(sse.ends_with("event: end\ndata: {\"type\":\"stream_ended\"}\n\n"), "{sse}");
    assert!(a.byoc_stats().stream_stops >= 1);
    assert_eq!(a.byoc_stats().streams_active, 0);
    assert!(next_segment(&mut output).await.is_none(), "the output channel closed");
    let gone = call(reqwest::Method::GET, &url(&s, "status_url"), Some(OWNER), "").await;
    assert_eq!(gone.status(), 404);
}

/// A stream's data readers are capped: the one past the cap is the client's own excess (429
/// with `Retry-After`), not the gateway being full.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_readers_past_the_cap_are_429() {
    let a = sim("a", 0, None).await;
    let gw = gateway(&[&a], None).await;
    let s = started(&gw, "readers").await;
    let read = || async {
        let http = reqwest::Client::new();
        http.get(url(&s, "data_url")).header("Authorization", OWNER).send().await.unwrap()
    };
    let mut held = Vec::new();
    for _ in 0..8 {
        let resp = read().await;
        assert_eq!(resp.status(), 200);
        held.push(resp);
    }
    let refused = read().await;
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["retry-after"], "1");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["type"], "rate_limit_exceeded", "{body}");
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_owner_updates_reads_or_stops_a_stream() {
    let a = sim("a", 0, None).await;
    let gw = gateway(&[&a], None).await;
    let resp = start_stream(&gw, ALL, json!({"stream_id": "x"})).await;
    assert_eq!(resp.status(), 200);
    let secret = resp.headers()["livepeer-stream-secret"].to_str().unwrap().to_owned();
    let s: Value = resp.json().await.unwrap();
    for (method, field) in [
        (reqwest::Method::POST, "update_url"),
        (reqwest::Method::GET, "status_url"),
        (reqwest::Method::GET, "data_url"),
        (reqwest::Method::POST, "stop_url"),
    ] {
        let other = call(method.clone(), &url(&s, field), Some("Bearer eve"), "{}").await;
        assert_eq!(other.status(), 403, "{field}");
        let none = call(method.clone(), &url(&s, field), None, "{}").await;
        assert_eq!(none.status(), 401, "{field}");
    }
    assert!(a.byoc_stats().stream_updates.is_empty());
    assert_eq!(a.byoc_stats().streams_active, 1);
    // The secret the start answered proves ownership too.
    let by_secret = reqwest::Client::new()
        .post(url(&s, "stop_url"))
        .header("livepeer-stream-secret", secret)
        .send()
        .await
        .unwrap();
    assert_eq!(by_secret.status(), 200);
    assert_eq!(a.byoc_stats().streams_active, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_starts_are_refused_with_the_field_named() {
    let a = sim("a", 0, None).await;
    let gw = gateway(&[&a], None).await;
    let http = reqwest::Client::new();
    let to = format!("http://{}/process/stream/start", gw.http_addr);
    let missing = http.post(&to).json(&json!({})).send().await.unwrap();
    assert_eq!(missing.status(), 400);
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["error"]["field"], "Livepeer", "{body}");
    let bad_params = start_stream(&gw, ALL, json!({"params": "not json"})).await;
    assert_eq!(bad_params.status(), 400);
    let body: Value = bad_params.json().await.unwrap();
    assert_eq!(body["error"]["field"], "params", "{body}");
    let bad_id = start_stream(&gw, ALL, json!({"stream_id": "a/b"})).await;
    assert_eq!(bad_id.status(), 400);
    let unknown = http
        .post(&to)
        .header("Livepeer", job_header("nope", 5, "{}"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 503);
    // A running id is not taken again.
    assert_eq!(start_stream(&gw, ALL, json!({"stream_id": "dup"})).await.status(), 200);
    assert_eq!(start_stream(&gw, ALL, json!({"stream_id": "dup"})).await.status(), 409);
    assert_eq!(a.byoc_stats().stream_starts, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payments_go_to_the_stream_endpoint_on_the_interval() {
    // 1e8 wei per second against tickets of 8e9: the start's minute buys 80 s, under the two
    // minutes below which go-livepeer's gateway pays, so the first interval sends tickets.
    let a = sim("a", 100_000_000, Some(1)).await;
    let gw = gateway(&[&a], Some(Duration::from_millis(300))).await;
    let s = started(&gw, "paid").await;
    assert_eq!(a.byoc_stats().stream_payments, 0, "nothing before the first interval");
    eventually(Duration::from_secs(10), "a stream payment", || async {
        a.byoc_stats().stream_payments >= 1
    })
    .await;
    assert!(a.payments().rejections.is_empty(), "{:?}", a.payments().rejections);
    let status: Value = call(reqwest::Method::GET, &url(&s, "status_url"), Some(OWNER), "")
        .await
        .json()
        .await
        .unwrap();
    assert!(status["payments"]["sent"].as_u64().unwrap() >= 1, "{status}");
    assert!(status["payments"]["tickets"].as_u64().unwrap() >= 1, "{status}");
    let stats = a.byoc_stats();
    assert!(stats.ev_credited >= stats.fees, "EV {} covers fees {}", stats.ev_credited, stats.fees);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_orchestrator_is_swapped_and_every_segment_arrives_once() {
    let (a, b) = (sim("a", 0, None).await, sim("b", 0, None).await);
    let gw = gateway(&[&a, &b], None).await;
    let s = started(&gw, "swap").await;
    let (client, config) = trickle();
    let mut input =
        HttpPublisher::new(client.clone(), &url(&s, "publish_url"), "video/MP2T", config.clone())
            .unwrap();
    let mut output = HttpSubscriber::new(client, &url(&s, "subscribe_url"), 0, config).unwrap();
    let status_url = url(&s, "status_url");
    let status = || async {
        call(reqwest::Method::GET, &status_url, Some(OWNER), "")
            .await
            .json::<Value>()
            .await
            .unwrap()
    };
    let first = status().await["orchestrator_url"].as_str().unwrap().to_owned();
    let (serving, other) =
        if first == a.service_url().trim_end_matches('/') { (&a, &b) } else { (&b, &a) };
    let segs: Vec<Bytes> = (0..4u8).map(|i| segment(i * 7, 10 + usize::from(i))).collect();
    publish(&mut input, &segs[0]).await;
    assert_eq!(next_segment(&mut output).await.unwrap(), segs[0]);
    serving.stop();
    eventually(Duration::from_secs(10), "the swap", || async {
        let st = status().await;
        st["state"] == "running" && st["swaps"].as_array().is_some_and(|s| s.len() == 1)
    })
    .await;
    let st = status().await;
    assert_eq!(st["orchestrator_url"], other.service_url().trim_end_matches('/'));
    for seg in &segs[1..] {
        publish(&mut input, seg).await;
        assert_eq!(&next_segment(&mut output).await.unwrap(), seg);
    }
    assert_eq!(other.byoc_stats().segments_in, 3, "the replacement got each later segment once");
    let st = status().await;
    assert_eq!(st["output_segments"], 4);
    assert_eq!(st["input_segments"], 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_third_failure_within_the_window_ends_the_stream() {
    let sims = [sim("a", 0, None).await, sim("b", 0, None).await, sim("c", 0, None).await];
    let gw = gateway(&sims.iter().collect::<Vec<_>>(), None).await;
    let s = started(&gw, "budget").await;
    let (client, config) = trickle();
    let mut output = HttpSubscriber::new(client, &url(&s, "subscribe_url"), 0, config).unwrap();
    let status_url = url(&s, "status_url");
    let status = || async { call(reqwest::Method::GET, &status_url, Some(OWNER), "").await };
    for swaps in 1..=3usize {
        let st: Value = status().await.json().await.unwrap();
        let serving = st["orchestrator_url"].as_str().unwrap().to_owned();
        let sim = sims.iter().find(|s| s.service_url().trim_end_matches('/') == serving).unwrap();
        sim.stop();
        if swaps == 3 {
            break;
        }
        eventually(Duration::from_secs(10), "the swap", || async {
            let st: Value = status().await.json().await.unwrap();
            st["state"] == "running" && st["swaps"].as_array().is_some_and(|s| s.len() == swaps)
        })
        .await;
    }
    // The third failure is beyond the budget: the stream ends and its channels close.
    assert!(next_segment(&mut output).await.is_none());
    eventually(Duration::from_secs(10), "the stream forgotten", || async {
        status().await.status() == 404
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_input_ends_the_stream_after_its_last_output() {
    let a = sim("a", 0, None).await;
    let gw = gateway(&[&a], None).await;
    let s = started(&gw, "close").await;
    let (client, config) = trickle();
    let mut input =
        HttpPublisher::new(client.clone(), &url(&s, "publish_url"), "video/MP2T", config.clone())
            .unwrap();
    let first = segment(3, 40);
    let last = segment(9, 40);
    publish(&mut input, &first).await;
    publish(&mut input, &last).await;
    input.close().await.unwrap();
    // The client is slow: it asks for the output only once the stream is over. The stream
    // ends after its last output came back, and its channels close but stay readable a little
    // while (go-livepeer removes them at once: such a reader, or a subscriber whose request for
    // the next segment went out just after the end, got 404 and lost the last output).
    let status_url = url(&s, "status_url");
    eventually(Duration::from_secs(10), "the stream over", || async {
        call(reqwest::Method::GET, &status_url, Some(OWNER), "").await.status() == 404
    })
    .await;
    let mut output = HttpSubscriber::new(client, &url(&s, "subscribe_url"), 0, config).unwrap();
    assert_eq!(next_segment(&mut output).await.unwrap(), first);
    assert_eq!(next_segment(&mut output).await.unwrap(), last, "the last output still arrives");
    assert!(next_segment(&mut output).await.is_none(), "then the stream ends");
    eventually(Duration::from_secs(10), "the orchestrator told", || async {
        a.byoc_stats().streams_active == 0
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn the_first_payment_goes_after_fifty_seconds_in_paused_time() {
    let a = sim("a", 100_000_000, Some(1)).await;
    // Paused time is this test's runtime's: the stream must run on it, not on serving threads
    // of their own.
    let mut c = config(&[a.url()]);
    c.signer = Some(Arc::new(LocalSigner::from_hex(KEY).unwrap()));
    c.http_threads = 0;
    let gw = start(c).await;
    let s = started(&gw, "paused").await;
    let t0 = tokio::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(49)).await;
    assert_eq!(a.byoc_stats().stream_payments, 0, "nothing before the interval");
    eventually(Duration::from_secs(5), "the payment at 50 s", || async {
        a.byoc_stats().stream_payments >= 1
    })
    .await;
    let at = t0.elapsed();
    assert!(at >= Duration::from_secs(50) && at < Duration::from_secs(52), "paid at {at:?}");
    let status: Value = call(reqwest::Method::GET, &url(&s, "status_url"), Some(OWNER), "")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(status["payments"]["sent"], 1, "{status}");
    assert!(a.payments().rejections.is_empty(), "{:?}", a.payments().rejections);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_are_bounded_in_count_and_bodies_in_bytes() {
    let a = sim("a", 0, None).await;
    let urls = [a.url()];
    let mut c = config(&urls);
    c.signer = Some(Arc::new(LocalSigner::from_hex(KEY).unwrap()));
    c.byoc.max_streams = 1;
    let gw = start(c).await;
    let first = start_stream(&gw, ALL, json!({"stream_id": "one"})).await;
    assert_eq!(first.status(), 200);
    let second = start_stream(&gw, ALL, json!({"stream_id": "two"})).await;
    assert_eq!(second.status(), 503);
    let body: Value = second.json().await.unwrap();
    assert_eq!(body["error"]["type"], "too_many_streams", "{body}");
    assert_eq!(a.byoc_stats().stream_starts, 1, "refused before any orchestrator is asked");
    // Refused by its declared length, before a byte of it: a client still writing the body
    // would see the connection closed, so the body is not sent at all.
    let head = format!(
        "POST /process/stream/start HTTP/1.1\r\nHost: gw\r\nLivepeer: {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        header(60, ALL),
        (10 << 20) + 1
    );
    let status = crate::bodies::status_without_body(&gw, &head).await;
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");
}

/// A start that fails on the gateway's side (here: a keyless gateway whose remote signer
/// refuses the payment, one second of the price taking more than the 100 tickets a signer
/// makes at most) is a 503 that penalises no orchestrator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_the_gateway_cannot_pay_penalises_no_orchestrator() {
    const API_KEY: &str = "test-api-key-0123456789";
    // 1e12 wei per second against tickets of 8e9: 125 tickets for one second.
    let a = sim("a", 1_000_000_000_000, Some(1)).await;
    let mut c = config(&[a.url()]);
    c.signer = Some(Arc::new(LocalSigner::from_hex(KEY).unwrap()));
    c.serve_signer = Some(API_KEY.to_owned().into());
    let signer_gw = start(c).await;
    let mut c = config(&[a.url()]);
    let signer_url = format!("http://{}/", signer_gw.http_addr);
    let headers = format!("Authorization:Bearer {API_KEY}");
    c.remote_signer =
        Some(livepeer_gateway::config::RemoteSigner::parse(&signer_url, &headers).unwrap());
    let gw = start(c).await;
    let body = json!({"stream_name": "unpaid", "stream_id": "1", "params": "{}"});
    let resp = start_stream(&gw, ALL, body).await;
    assert_eq!(resp.status(), 503);
    let body: Value = resp.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("too many tickets"), "{body}");
    assert_eq!(a.byoc_stats().stream_starts, 0, "nothing reached the orchestrator");
    let orch = orch_state(&gw, a.url().trim_end_matches('/')).await;
    assert_eq!(orch["state"], "healthy", "{orch}");
    let jobs = orch["jobs"].as_array().cloned().unwrap_or_default();
    let job = jobs.iter().find(|j| j["job"] == format!("byoc/{CAP}"));
    assert!(job.is_none_or(|j| j["consecutive_failures"] == 0), "not penalised: {job:?}");
}

/// Stop and update are paid as go-livepeer's gateway pays them (`sendJobToOrch` →
/// `createPayment`): its orchestrator processes a payment there and refuses a sender holding
/// less than a minute of the price (byoc/stream_orchestrator.go `StopStream`, `UpdateStream`
/// through `setupOrchJob`). The start's minute (80 s of credit at 1e8 wei per second) is under
/// the two minutes that make a call go unpaid, so the update attaches tickets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_and_update_are_paid_as_go_livepeer_pays_them() {
    let a = sim("a", 100_000_000, Some(1)).await;
    let gw = gateway(&[&a], None).await;
    let s = started(&gw, "paid-calls").await;
    let tickets = a.payments().tickets_received;
    assert!(tickets >= 1, "the start was paid");
    let update = call(reqwest::Method::POST, &url(&s, "update_url"), Some(OWNER), "{}").await;
    assert_eq!(update.status(), 200, "{}", update.text().await.unwrap());
    let stop = call(reqwest::Method::POST, &url(&s, "stop_url"), Some(OWNER), "").await;
    assert_eq!(stop.status(), 200, "{}", stop.text().await.unwrap());
    let stats = a.byoc_stats();
    assert_eq!((stats.stream_updates.len(), stats.stream_stops), (1, 1));
    // The update's tickets lift the balance over two minutes: the stop then goes unpaid.
    assert_eq!(stats.payments_on_stop_or_update, 1);
    assert!(a.payments().tickets_received > tickets, "the update carried tickets");
}

/// A stream's params are kept for its life (sent again to each orchestrator it moves to) and
/// shown in its status: 10 MB of them, allowed as go-livepeer allows, took some 250 MB as
/// `serde_json::Value`s. They are now read under a budget of values, and refused past it
/// before any orchestrator is called.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn params_past_the_budget_of_values_are_refused_before_any_orchestrator() {
    let a = sim("a", 0, None).await;
    let gw = gateway(&[&a], None).await;
    let many = json!({"weights": vec![0; 20_000]});
    for params in [many.clone(), Value::String(many.to_string())] {
        let body = json!({"stream_name": "big", "stream_id": "1", "params": params});
        let resp = start_stream(&gw, ALL, body).await;
        assert_eq!(resp.status(), 400);
        let body: Value = resp.json().await.unwrap();
        assert!(
            body.to_string().contains("10000 JSON values") || body["error"]["field"] == "params",
            "{body}"
        );
    }
    assert_eq!(a.byoc_stats().stream_starts, 0);
    // Within it, the stream starts.
    let fine = json!({"weights": vec![0; 5_000]});
    let body = json!({"stream_name": "fine", "stream_id": "1", "params": fine});
    let resp = start_stream(&gw, ALL, body).await;
    assert_eq!(resp.status(), 200);
    let s: Value = resp.json().await.unwrap();
    // An update past it is refused, not sent on and forgotten (a swap would then restart the
    // stream with the older params); one within it is sent.
    let update_url = url(&s, "update_url");
    let resp = call(reqwest::Method::POST, &update_url, Some(OWNER), &many.to_string()).await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["field"], "params", "{body}");
    let resp = call(reqwest::Method::POST, &update_url, Some(OWNER), r#"{"prompt":"b"}"#).await;
    assert_eq!(resp.status(), 200);
    gw.shutdown().await;
}
