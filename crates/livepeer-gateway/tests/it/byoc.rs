//! BYOC jobs (`POST /process/request/{*path}`) through a real gateway to simulated
//! orchestrators with BYOC capabilities, over real sockets.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use futures_util::StreamExt as _;
use livepeer_gateway::Gateway;
use livepeer_pm::{LocalSigner, Ratio};
use livepeer_sim::{ByocFault, ByocKind, Sim, SimByoc, SimConfig};
use serde_json::{Value, json};

use crate::support::*;

const REVERSAL: &str = "text-reversal";
const KEY: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";

/// A simulator offering `caps`, on-chain (with this address byte) when `eth` is set.
async fn sim(name: &str, caps: Vec<SimByoc>, eth: Option<u8>) -> Sim {
    let eth_address = eth.map(|n| {
        let mut addr = [0u8; 20];
        addr[19] = n;
        livepeer_pm::Address::from(addr)
    });
    let config = SimConfig { name: name.into(), eth_address, byoc: caps, ..SimConfig::default() };
    Sim::start(config).await.unwrap()
}

/// The three free capabilities of every test simulator.
fn free_caps() -> Vec<SimByoc> {
    vec![
        SimByoc::new(REVERSAL, ByocKind::Reverse).capacity(8),
        SimByoc::new("echo", ByocKind::Echo).capacity(8),
        SimByoc::new("lines", ByocKind::Lines).capacity(8),
    ]
}

async fn gateway(sims: &[&Sim]) -> Gateway {
    let urls: Vec<&str> = sims.iter().map(|s| s.url()).collect();
    start(config(&urls)).await
}

/// The client's `Livepeer` header.
fn header(capability: &str, timeout: u64, parameters: Value) -> String {
    let job = json!({
        "request": "{}",
        "parameters": parameters.to_string(),
        "capability": capability,
        "timeout_seconds": timeout,
    });
    STANDARD.encode(job.to_string())
}

async fn reverse(http: &reqwest::Client, gw: &Gateway, header: &str) -> reqwest::Response {
    http.post(format!("http://{}/process/request/reverse", gw.http_addr))
        .header("Livepeer", header)
        .json(&json!({"text": "hello"}))
        .send()
        .await
        .unwrap()
}

fn served_by(resp: &reqwest::Response) -> String {
    resp.headers()["x-orchestrator-url"].to_str().unwrap().to_owned()
}

fn base(url: &str) -> String {
    url.trim_end_matches('/').to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_job_is_signed_sent_and_relayed_with_its_headers() {
    let a = sim("a", free_caps(), None).await;
    let gw = gateway(&[&a]).await;
    let http = reqwest::Client::new();
    let resp = reverse(&http, &gw, &header(REVERSAL, 10, json!({}))).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(served_by(&resp), base(a.service_url()));
    assert!(resp.headers().get("x-metadata").is_some(), "the worker's metadata is passed on");
    assert!(resp.headers().get("livepeer-balance").is_some(), "the balance is passed on");
    assert_eq!(resp.headers()["content-type"], "application/json");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["text"], "olleh");
    let stats = a.byoc_stats();
    assert_eq!(stats.jobs.get(REVERSAL), Some(&1));
    assert_eq!(stats.last_path.as_deref(), Some("reverse"));
    // The admin API lists the capability with its price at the orchestrator.
    let (status, caps) = admin_get(&gw, "/byoc/capabilities").await;
    assert_eq!(status, 200);
    let cap = caps["capabilities"].as_array().unwrap().iter().find(|c| c["capability"] == REVERSAL);
    let orch = &cap.unwrap()["orchestrators"][0];
    assert_eq!(orch["url"], base(a.url()));
    assert_eq!(orch["price_wei_per_second"], "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_header_is_refused_naming_its_field() {
    let a = sim("a", free_caps(), None).await;
    let gw = gateway(&[&a]).await;
    let http = reqwest::Client::new();
    let url = format!("http://{}/process/request/reverse", gw.http_addr);
    let job = |k: &str, v: Value| {
        let mut j = json!({"request": "{}", "parameters": "{}", "capability": REVERSAL, "timeout_seconds": 5});
        if v.is_null() {
            j.as_object_mut().unwrap().remove(k);
        } else {
            j[k] = v;
        }
        STANDARD.encode(j.to_string())
    };
    let cases: Vec<(Option<String>, u16, &str)> = vec![
        (None, 400, "Livepeer"),
        (Some("not base64!".into()), 400, "Livepeer"),
        (Some(STANDARD.encode("not json")), 400, "Livepeer"),
        (Some(job("timeout_seconds", Value::Null)), 400, "timeout_seconds"),
        (Some(job("timeout_seconds", json!(0))), 400, "timeout_seconds"),
        (Some(job("request", json!("not json"))), 400, "request"),
        (Some(job("parameters", json!("not json"))), 400, "parameters"),
        (Some(job("capability", json!(""))), 400, "capability"),
        (Some(job("capability", json!("nobody-offers-this"))), 503, "capability"),
    ];
    for (value, status, field) in cases {
        let mut req = http.post(&url).json(&json!({"text": "x"}));
        if let Some(v) = &value {
            req = req.header("Livepeer", v);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), status, "{value:?}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["field"], field, "{value:?}: {body}");
    }
    // (Plain dot segments never leave an HTTP client; encoded slashes do.)
    for path in ["..%2Fadmin", "a%2F..%2Fb", "a/.%2E%2fb"] {
        let resp = http
            .post(format!("http://{}/process/request/{path}", gw.http_addr))
            .header("Livepeer", job("capability", json!(REVERSAL)))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{path}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["field"], "path", "{path}");
    }
    let e = http.post(&url).header("Livepeer", job("timeout_seconds", Value::Null)).send().await;
    let body: Value = e.unwrap().json().await.unwrap();
    assert_eq!(
        body["error"]["message"],
        "no timeout_seconds set with request, timeout_seconds is required"
    );
    assert_eq!(a.byoc_stats().requests, 0, "nothing refused reached the orchestrator");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn include_and_exclude_choose_the_orchestrator() {
    let (a, b) = (sim("a", free_caps(), None).await, sim("b", free_caps(), None).await);
    let gw = gateway(&[&a, &b]).await;
    let http = reqwest::Client::new();
    for _ in 0..6 {
        let only_b = json!({"orchestrators": {"include": [base(b.url())]}});
        let resp = reverse(&http, &gw, &header(REVERSAL, 10, only_b)).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(served_by(&resp), base(b.service_url()));
        let not_b = json!({"orchestrators": {"exclude": [base(b.url())]}});
        let resp = reverse(&http, &gw, &header(REVERSAL, 10, not_b)).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(served_by(&resp), base(a.service_url()));
    }
    let nobody = json!({"orchestrators": {"exclude": [base(a.url()), base(b.url())]}});
    let resp = reverse(&http, &gw, &header(REVERSAL, 10, nobody)).await;
    assert_eq!(resp.status(), 503);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["field"], "parameters.orchestrators");
}

/// Jobs go to `a` (faulty) and `b` until `a` was tried; every one must be answered by `b`.
async fn fails_over(fault: ByocFault, timeout: u64) -> (Sim, Sim, Gateway) {
    let (a, b) = (sim("a", free_caps(), None).await, sim("b", free_caps(), None).await);
    a.set_byoc_fault(fault);
    let gw = gateway(&[&a, &b]).await;
    let http = reqwest::Client::new();
    for _ in 0..20 {
        let resp = reverse(&http, &gw, &header(REVERSAL, timeout, json!({}))).await;
        assert_eq!(resp.status(), 200, "{fault:?}");
        assert_eq!(served_by(&resp), base(b.service_url()), "{fault:?}");
        if a.byoc_stats().requests > 0 {
            return (a, b, gw);
        }
    }
    panic!("{fault:?}: the faulty orchestrator was never tried");
}

/// The state of the text-reversal job key at `sim`, and of the orchestrator as a whole.
async fn job_state(gw: &Gateway, sim: &Sim) -> (Value, Value) {
    let orch = orch_state(gw, &base(sim.url())).await;
    let job = orch["jobs"]
        .as_array()
        .and_then(|jobs| jobs.iter().find(|j| j["job"] == format!("byoc/{REVERSAL}")).cloned());
    (orch["state"].clone(), job.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_orchestrator_is_left_for_the_next_and_penalised_for_that_capability_only() {
    for fault in [ByocFault::Status500, ByocFault::Close] {
        let (a, _b, gw) = fails_over(fault, 10).await;
        let (_, job) = job_state(&gw, &a).await;
        assert!(job["consecutive_failures"].as_u64().unwrap() >= 1, "{fault:?}: {job}");
        // The worker's error text has several lines; it is kept on one, so that it cannot
        // start log lines of its own making.
        let why = job["last_error"]["message"].as_str().unwrap_or_default();
        if fault == ByocFault::Status500 {
            assert!(why.contains("simulated worker failure"), "{job}");
        }
        assert!(!why.chars().any(char::is_control), "{fault:?}: {why:?}");
        let orch = orch_state(&gw, &base(a.url())).await;
        assert_eq!(orch["consecutive_failures"], 0, "{fault:?}: not penalised as a whole");
        // Its other capabilities are still used while text-reversal cools down.
        a.set_byoc_fault(ByocFault::None);
        let only_a = json!({"orchestrators": {"include": [base(a.url())]}});
        let resp = reqwest::Client::new()
            .post(format!("http://{}/process/request/echo", gw.http_addr))
            .header("Livepeer", header("echo", 10, only_a))
            .body("ping")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{fault:?}");
        assert_eq!(served_by(&resp), base(a.service_url()));
        assert_eq!(resp.text().await.unwrap(), "ping");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_s_error_of_several_lines_reaches_the_client_on_one() {
    // The simulator's failing worker answers pretty-printed JSON: "{\n  \"error\": …\n}".
    let a = sim("a", free_caps(), None).await;
    a.set_byoc_fault(ByocFault::Status500);
    let gw = gateway(&[&a]).await;
    let resp = reverse(&reqwest::Client::new(), &gw, &header(REVERSAL, 10, json!({}))).await;
    assert_eq!(resp.status(), 503);
    let body: Value = resp.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("simulated worker failure"), "{message}");
    assert!(!message.chars().any(char::is_control), "{message:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_orchestrator_is_left_after_the_timeout() {
    let (a, _b, gw) = fails_over(ByocFault::Hang, 1).await;
    let (_, job) = job_state(&gw, &a).await;
    assert!(job["consecutive_failures"].as_u64().unwrap() >= 1, "{job}");
}

/// An orchestrator that sends the head of a 500 and never its body holds the job no longer
/// than the attempt's deadline (timeout_seconds + 5 s), then the next one serves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_error_body_is_left_at_the_attempt_deadline() {
    let (a, _b, gw) = fails_over(ByocFault::Stalled500, 1).await;
    let (_, job) = job_state(&gw, &a).await;
    assert!(job["consecutive_failures"].as_u64().unwrap() >= 1, "{job}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_capacity_skips_the_orchestrator_without_penalty() {
    let (a, _b, gw) = fails_over(ByocFault::NoCapacity, 10).await;
    let (orch, job) = job_state(&gw, &a).await;
    assert_eq!(orch, "healthy", "not ejected for anything");
    assert_eq!(job["consecutive_failures"], 0, "{job}");
    // With every orchestrator out of capacity the client gets a JSON 503, not an empty 200.
    let gw2 = gateway(&[&a]).await;
    let resp = reverse(&reqwest::Client::new(), &gw2, &header(REVERSAL, 10, json!({}))).await;
    assert_eq!(resp.status(), 503);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "orchestrators_busy");
    assert!(body["error"]["message"].as_str().unwrap().contains("No capacity"), "{body}");
}

/// A job of the `lines` capability asking for three events.
async fn lines_job(gw: &Gateway) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("http://{}/process/request/lines", gw.http_addr))
        .header("Livepeer", header("lines", 10, json!({})))
        .json(&json!({"lines": 3}))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_the_client_as_the_worker_writes_them() {
    let a = sim("a", free_caps(), None).await;
    let gate = a.byoc_sse_gate();
    let gw = gateway(&[&a]).await;
    let resp = lines_job(&gw).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let mut body = resp.bytes_stream();
    let mut seen = String::new();
    // The worker holds everything after its first event at the gate: the first event must
    // reach the client while it waits.
    while !seen.contains("data: {\"n\":") {
        let chunk = body.next().await.expect("the first event arrives before the gate opens");
        seen.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
    }
    assert!(!seen.contains("[DONE]"));
    gate.release();
    while let Some(chunk) = body.next().await {
        seen.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
    }
    assert!(seen.contains("data: [DONE]"), "{seen}");
}

/// A go-livepeer orchestrator keeps an event answer open after its worker's `[DONE]`, writing
/// empty lines until `timeout_seconds` is over and billing meanwhile; its gateway ends the
/// answer at `[DONE]` and closes the call (byoc/job_gateway.go `submitJob`). So must this one:
/// the client has the whole answer long before the 30 s timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_answer_ends_at_done_not_at_the_orchestrators_timeout() {
    let a = sim("a", free_caps(), None).await;
    let gw = gateway(&[&a]).await;
    let resp = reqwest::Client::new()
        .post(format!("http://{}/process/request/lines", gw.http_addr))
        .header("Livepeer", header("lines", 30, json!({})))
        .json(&json!({"lines": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = tokio::time::timeout(Duration::from_secs(10), resp.text())
        .await
        .expect("the answer ends at [DONE]")
        .unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text:?}");
    assert!(text.starts_with("data: {\"n\":0}\n\ndata: {\"n\":1}\n\n"), "{text:?}");
    // The orchestrator's call was closed: its capacity is back well before the timeout.
    let closed = async {
        while !a.byoc_stats().load.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), closed).await.expect("the call was closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_retried_after_the_first_byte() {
    let (a, b) = (sim("a", free_caps(), None).await, sim("b", free_caps(), None).await);
    let (gate_a, gate_b) = (a.byoc_sse_gate(), b.byoc_sse_gate());
    let gw = gateway(&[&a, &b]).await;
    let resp = lines_job(&gw).await;
    assert_eq!(resp.status(), 200);
    let serving = served_by(&resp);
    let (served, other) = if serving == base(a.service_url()) { (&a, &b) } else { (&b, &a) };
    let mut body = resp.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    assert!(!first.is_empty());
    // The orchestrator goes away mid-answer: the stream ends, and the job is not sent again.
    served.stop();
    while let Some(Ok(_)) = body.next().await {}
    assert_eq!(other.byoc_stats().requests, 0, "no failover after the first byte");
    drop((gate_a, gate_b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_twenty_megabyte_upload_streams_through() {
    const TOTAL: usize = 20 << 20;
    const FIRST: usize = 2 << 20;
    let a = sim("a", free_caps(), None).await;
    let gw = gateway(&[&a]).await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let upload = reqwest::Body::wrap_stream(tokio_stream_of(rx));
    let pattern = |i: usize| (i % 251) as u8;
    let chunk = |from: usize, len: usize| (from..from + len).map(pattern).collect::<Vec<u8>>();
    let send = {
        let url = format!("http://{}/process/request/echo", gw.http_addr);
        let header = header("echo", 60, json!({}));
        tokio::spawn(async move {
            reqwest::Client::new()
                .post(url)
                .header("Livepeer", header)
                .header("content-type", "application/octet-stream")
                .body(upload)
                .send()
                .await
                .unwrap()
        })
    };
    let mut sent = 0;
    while sent < FIRST {
        tx.send(Ok(chunk(sent, 64 << 10))).await.unwrap();
        sent += 64 << 10;
    }
    let resp = send.await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/octet-stream");
    let reader = tokio::spawn(async move {
        let mut body = resp.bytes_stream();
        let (mut n, mut ok) = (0usize, true);
        while let Some(c) = body.next().await {
            let c = c.unwrap();
            ok &= c.iter().enumerate().all(|(i, b)| *b == pattern(n + i));
            n += c.len();
        }
        (n, ok)
    });
    // Bytes reach the orchestrator while most of the upload has not left the client.
    eventually(Duration::from_secs(10), "bytes at the simulator before the upload ends", || {
        let received = a.byoc_stats().bytes_received;
        async move { received > 0 }
    })
    .await;
    assert!(a.byoc_stats().bytes_received < TOTAL as u64);
    while sent < TOTAL {
        tx.send(Ok(chunk(sent, 64 << 10))).await.unwrap();
        sent += 64 << 10;
    }
    drop(tx);
    let (n, ok) = reader.await.unwrap();
    assert_eq!(n, TOTAL);
    assert!(ok, "the echo is the upload, byte for byte");
    assert_eq!(a.byoc_stats().bytes_received, TOTAL as u64);
}

/// A stream over a channel's receiver.
fn tokio_stream_of<T: Send + 'static>(
    rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send + 'static {
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|t| (t, rx)) })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_paid_jobs_are_covered_within_one_ticket() {
    // 5e7 wei per second; a job is paid for its timeout (120 s: 6e9 wei, under one ticket's EV
    // of 8e9), so each payment is one ticket, and each simulator is paid a few times.
    let price = 50_000_000;
    let caps = || vec![SimByoc::new(REVERSAL, ByocKind::Reverse).price(price, 1).capacity(64)];
    let (a, b) = (sim("a", caps(), Some(1)).await, sim("b", caps(), Some(2)).await);
    let urls = [a.url(), b.url()];
    let mut c = config(&urls);
    c.signer = Some(Arc::new(LocalSigner::from_hex(KEY).unwrap()));
    let gw = start(c).await;
    let http = reqwest::Client::new();
    let header = header(REVERSAL, 120, json!({}));
    let jobs = futures_util::stream::iter(0..500)
        .map(|_| {
            let (http, gw, header) = (&http, &gw, &header);
            async move {
                let resp = reverse(http, gw, header).await;
                let status = resp.status();
                let text = resp.text().await.unwrap();
                (status, text)
            }
        })
        .buffer_unordered(16);
    let results: Vec<_> = jobs.collect().await;
    for (status, text) in &results {
        assert_eq!(*status, 200, "{text}");
    }
    let ticket_ev = Ratio::from_u64(8_000_000_000);
    let job_fee = Ratio::from_u64(price as u64 * 120);
    for sim in [&a, &b] {
        let stats = sim.byoc_stats();
        assert!(sim.payments().rejections.is_empty(), "{:?}", sim.payments().rejections);
        assert!(stats.fees > Ratio::ZERO, "{} served paid jobs", sim.url());
        assert!(
            stats.ev_credited >= stats.fees,
            "EV {} covers fees {}",
            stats.ev_credited,
            stats.fees
        );
        let excess = stats.ev_credited.checked_sub(&stats.fees).unwrap();
        let bound = ticket_ev.checked_add(&job_fee).unwrap();
        assert!(
            excess < bound,
            "{}: excess {excess} ≥ one ticket EV plus one job's fee",
            sim.url()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyless_gateway_has_its_remote_signer_sign_jobs() {
    const API_KEY: &str = "test-api-key-0123456789";
    let a = sim("a", free_caps(), None).await;
    let mut c = config(&[a.url()]);
    c.signer = Some(Arc::new(LocalSigner::from_hex(KEY).unwrap()));
    c.serve_signer = Some(API_KEY.to_owned().into());
    let signer_gw = start(c).await;
    let signer_url = format!("http://{}/", signer_gw.http_addr);
    let mut c = config(&[a.url()]);
    c.remote_signer = Some(
        livepeer_gateway::config::RemoteSigner::parse(
            &signer_url,
            &format!("Authorization:Bearer {API_KEY}"),
        )
        .unwrap(),
    );
    let gw = start(c).await;
    let http = reqwest::Client::new();
    // Whether the signer serves `/sign-byoc-job` (another part of the project adds it).
    let probe = http
        .post(format!("{signer_url}sign-byoc-job"))
        .bearer_auth(API_KEY)
        .json(&json!({"id": "p", "capability": REVERSAL, "request": "{}", "parameters": "{}", "timeout_seconds": 5}))
        .send()
        .await
        .unwrap();
    let resp = reverse(&http, &gw, &header(REVERSAL, 10, json!({}))).await;
    if probe.status() == 404 {
        // Without it the job is refused, naming the limitation, and nothing reaches the
        // orchestrator unsigned.
        assert_eq!(resp.status(), 503);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["type"], "payment_refused", "{body}");
        assert!(body["error"]["message"].as_str().unwrap().contains("/sign-byoc-job"), "{body}");
        assert_eq!(a.byoc_stats().requests, 0);
    } else {
        // With it, the signer's signature is accepted by the orchestrator.
        assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
        assert_eq!(a.byoc_stats().jobs.get(REVERSAL), Some(&1));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_limit_are_refused_or_cut_off_at_it() {
    const LIMIT: u64 = 2 << 20;
    let a = sim("a", free_caps(), None).await;
    let mut c = config(&[a.url()]);
    c.byoc.max_body_bytes = LIMIT;
    let gw = start(c).await;
    let http = reqwest::Client::new();
    let url = format!("http://{}/process/request/echo", gw.http_addr);
    // A declared length over the limit: 413 before anything is read or sent. Only the head is
    // written, so the answer cannot depend on the body (a client still writing a refused body
    // may see its socket closed first).
    let head = format!(
        "POST /process/request/echo HTTP/1.1\r\nhost: gw\r\nlivepeer: {}\r\n\
         content-type: application/octet-stream\r\ncontent-length: {}\r\n\r\n",
        header("echo", 10, json!({})),
        LIMIT + 1
    );
    let answer = raw_exchange(gw.http_addr, head.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    let body: Value = serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["error"]["field"], "body");
    assert_eq!(a.byoc_stats().requests, 0);
    // A chunked body that outgrows it: never more than the limit reaches the orchestrator.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..48).map(|_| Ok(vec![7u8; 64 << 10])).collect();
    let upload = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let sent =
        http.post(&url).header("Livepeer", header("echo", 10, json!({}))).body(upload).send().await;
    let echoed = match sent {
        Ok(resp) if resp.status() == 200 => {
            let mut body = resp.bytes_stream();
            let mut n = 0;
            while let Some(Ok(c)) = body.next().await {
                n += c.len();
            }
            n
        }
        Ok(resp) => {
            assert_eq!(resp.status(), 413);
            0
        }
        Err(_) => 0,
    };
    assert!(echoed < 3 << 20, "the answer is cut short: {echoed}");
    assert!(a.byoc_stats().bytes_received <= LIMIT, "{}", a.byoc_stats().bytes_received);
}

/// `--byoc-max-price` holds against the price a job would be paid at (the job token's), not
/// only against the one GetOrchestrator advertised: an orchestrator advertising 5e7 wei per
/// second under a cap of 1e8 that quotes 1e12 in its token gets neither the job nor a ticket,
/// and is not penalised.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_price_over_the_cap_is_neither_paid_nor_penalised() {
    let caps = vec![SimByoc::new(REVERSAL, ByocKind::Reverse).price(50_000_000, 1).capacity(8)];
    let a = sim("a", caps, Some(1)).await;
    let mut c = config(&[a.url()]);
    c.signer = Some(Arc::new(LocalSigner::from_hex(KEY).unwrap()));
    let cap = livepeer_gateway::orchestrator::price::Price::new(100_000_000, 1).unwrap();
    c.requirements.max_price_per_model.insert((37, REVERSAL.to_owned()), cap);
    c.byoc.token_refresh = Duration::from_millis(300);
    let gw = start(c).await;
    let http = reqwest::Client::new();
    let header = header(REVERSAL, 10, json!({}));
    assert_eq!(reverse(&http, &gw, &header).await.status(), 200, "within the cap");
    let served = a.byoc_stats().requests;
    a.set_byoc_job_price(Some(1_000_000_000_000));
    // The stored token still says 5e7: the job goes with its payment, and the orchestrator
    // refuses it (400 Insufficient balance). That is the gateway's problem, not the client's:
    // a JSON 503, and the token is fetched afresh for the next job.
    let resp = reverse(&http, &gw, &header).await;
    assert_eq!(resp.status(), 503);
    let body: Value = resp.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap_or_default().to_owned();
    assert!(message.contains("Insufficient balance"), "{body}");
    let served = a.byoc_stats().requests.max(served);
    let tickets = a.payments().tickets_received;
    let resp = reverse(&http, &gw, &header).await;
    assert_eq!(resp.status(), 503);
    let body: Value = resp.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap_or_default().to_owned();
    assert!(message.contains("over the cap"), "{body}");
    assert_eq!(a.byoc_stats().requests, served, "no job reached the orchestrator");
    assert_eq!(a.payments().tickets_received, tickets, "no ticket at the new price");
    let (orch, job) = job_state(&gw, &a).await;
    assert_eq!(orch, "healthy", "not ejected for its price");
    assert_eq!(job["consecutive_failures"], 0, "not penalised for its price: {job}");
    // Its token keeps the price it quoted until the next background refresh (shortened
    // here), after which its price is within the cap again.
    a.set_byoc_job_price(None);
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    while reverse(&http, &gw, &header).await.status() != 200 {
        assert!(tokio::time::Instant::now() < until, "usable again after a token refresh");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Writes `head` to `addr` and reads the answer until the server closes the connection or a
/// whole JSON body (by its `content-length`) has arrived.
async fn raw_exchange(addr: std::net::SocketAddr, head: &[u8]) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(head).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut buf))
            .await
            .expect("an answer within 10 s")
            .unwrap();
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).into_owned();
        let complete = text.split_once("\r\n\r\n").is_some_and(|(h, b)| {
            let len = h.lines().find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length").then(|| value.trim().parse().ok())?
            });
            len.is_some_and(|len: usize| b.len() >= len)
        });
        if n == 0 || complete {
            return text;
        }
    }
}

/// An orchestrator that takes every job's payment and refuses the job as underpaid (400
/// `Insufficient balance for request`): the first refusal is the gateway's stale view (the
/// token is fetched afresh, nobody penalised), a second one with that fresh token is the
/// orchestrator's, penalised for the capability. Before, it was paid by every job that
/// selected it (being cheaper, all ten), unpenalised.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orchestrator_refusing_every_payment_is_penalised_once_its_token_was_fresh() {
    let cheap = vec![SimByoc::new(REVERSAL, ByocKind::Reverse).price(1_000, 1).capacity(8)];
    let dear = vec![SimByoc::new(REVERSAL, ByocKind::Reverse).price(9_000, 1).capacity(8)];
    let refuser = sim("refuser", cheap, Some(1)).await;
    let honest = sim("honest", dear, Some(2)).await;
    refuser.set_byoc_fault(ByocFault::KeepPayment);
    let mut c = config(&[refuser.url(), honest.url()]);
    c.signer = Some(Arc::new(LocalSigner::from_hex(KEY).unwrap()));
    c.eject.base = Duration::from_secs(600);
    c.eject.max = Duration::from_secs(600);
    let gw = start(c).await;
    let http = reqwest::Client::new();
    let header = header(REVERSAL, 10, json!({}));
    for _ in 0..10 {
        let resp = reverse(&http, &gw, &header).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(served_by(&resp), base(honest.url()));
    }
    assert_eq!(refuser.byoc_stats().requests, 2, "refused twice, then left alone");
    let (_, job) = job_state(&gw, &refuser).await;
    assert!(job["consecutive_failures"].as_u64().unwrap() >= 1, "penalised: {job}");
}

/// A client reading a large answer slowly held the relay past the job's deadline, which then
/// cut the answer and ejected the orchestrator for the capability, as if it had outlasted the
/// job. Now the client's reading time moves the deadline on (by at most the job's window),
/// and a client that uses that up is cut without anybody penalised.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_of_an_answer_is_not_the_orchestrators_failure() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    const TOTAL: usize = 24 << 20;
    let caps = vec![SimByoc::new("fill", ByocKind::Fill).capacity(8)];
    let a = sim("a", caps, None).await;
    let gw = gateway(&[&a]).await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(32 << 10).unwrap();
    let mut stream = socket.connect(gw.http_addr).await.unwrap();
    // Timeout 1 s: the job's deadline is 6 s after it was sent; the whole answer is ready
    // as soon as it starts.
    let body = json!({"bytes": TOTAL}).to_string();
    let head = format!(
        "POST /process/request/fill HTTP/1.1\r\nHost: gw\r\nLivepeer: {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        header("fill", 1, json!({})),
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    // At most about 2 MiB/s: reading it all takes about twice the job's 6 s.
    let mut got = 0usize;
    let mut buf = vec![0u8; 32 << 10];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
        tokio::time::sleep(Duration::from_millis(16)).await;
    }
    // How much arrives before the allowance is spent depends on the machine's pace; that
    // some did, and that nobody was penalised, does not.
    assert!(got > 1 << 20, "the answer was relayed: {got} bytes");
    let job = crate::support::job_state(&gw, &base(a.url()), "byoc/fill").await;
    assert_eq!(job["job"], "byoc/fill", "{job}");
    assert_eq!(job["consecutive_failures"], 0, "{job}");
    assert_ne!(job["state"], "ejected", "{job}");
}
