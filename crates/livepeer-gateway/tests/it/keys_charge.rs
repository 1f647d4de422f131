//! Customer keys charge what a job used: an LLM answer on the tokens it reports (prompt and
//! completion), never beyond the request's bound, and the bound when a stream is cut before
//! its usage.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use livepeer_gateway::Gateway;
use livepeer_gateway::keys::price::CustomerPrices;
use livepeer_sim::{Sim, SimConfig, SimModel};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::keys::{TOKEN, create, keys_config};
use crate::support::*;

/// Key `id`'s ledger rows (the admin's CSV export), each as column → text, once `count` are
/// written.
pub async fn ledger(gw: &Gateway, id: &str, count: usize) -> Vec<HashMap<String, String>> {
    let http = reqwest::Client::new();
    let url = format!("http://{}/keys/{id}/usage.csv", gw.admin_addr);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = http.get(&url).bearer_auth(TOKEN).send().await.unwrap().text().await.unwrap();
        let mut lines = text.lines();
        let header: Vec<String> = lines.next().unwrap().split(',').map(str::to_owned).collect();
        let rows: Vec<HashMap<String, String>> = lines
            .map(|l| header.iter().cloned().zip(l.split(',').map(str::to_owned)).collect())
            .collect();
        if rows.len() >= count {
            return rows;
        }
        assert!(tokio::time::Instant::now() < deadline, "{count} ledger rows never came: {rows:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// 1000 USD per million tokens: 1 000 000 nano-USD a token.
fn llm_prices() -> Arc<CustomerPrices> {
    let table = r#"{"price": [{"pipeline": "llm", "usd": "1000"}]}"#;
    Arc::new(CustomerPrices::parse(Some(table), None).unwrap())
}

const NANO_PER_TOKEN: u64 = 1_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn llm_answers_are_charged_the_tokens_they_report_and_a_cut_stream_its_bound() {
    let sim = Sim::start(SimConfig {
        name: "keys-charge-llm".into(),
        models: vec![SimModel::new("llm", LLM).price(0, 1).capacity(8)],
        token_delay: Duration::from_millis(20),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut c = keys_config(&[sim.url()], dir.path(), None);
    c.keys.prices = llm_prices();
    let gw = start(c).await;
    let (id, secret) = create(&gw, json!({"name": "llm", "budget_micro_usd": 10_000_000})).await;
    let http = reqwest::Client::new();
    // The simulator echoes the last user message a word a token: a prompt of 5 words (the
    // system message's 2 and the user's 3) and 3 completion tokens, 8 in all.
    let messages = json!([{"role": "system", "content": "be brief"},
        {"role": "user", "content": "one two three"}]);
    let call = |path: &str, stream: bool| {
        let body = json!({"model": LLM, "stream": stream, "max_tokens": 100, "messages": messages});
        http.post(format!("http://{}{path}", gw.http_addr)).bearer_auth(&secret).json(&body)
    };
    // A JSON answer, then a stream read to its end, on both routes.
    let answer: Value = call("/llm", false).send().await.unwrap().json().await.unwrap();
    assert_eq!(answer["usage"]["total_tokens"], 8, "{answer}");
    let text = call("/v1/chat/completions", true).send().await.unwrap().text().await.unwrap();
    assert!(text.contains("[DONE]"), "{text}");
    let rows = ledger(&gw, &id, 2).await;
    for row in &rows {
        assert_eq!(row["units"], "8", "{row:?}");
        assert_eq!(row["charged_usd"], "0.008000000", "{row:?}");
    }

    // A stream the client leaves after its first event: its usage never came, so it pays
    // its bound, max_tokens and its prompt's bytes (the reservation), and no more.
    let long = json!([{"role": "user", "content": vec!["word"; 40].join(" ")}]);
    let body = json!({"model": LLM, "stream": true, "max_tokens": 100, "messages": long});
    let req = http.post(format!("http://{}/llm", gw.http_addr)).bearer_auth(&secret).json(&body);
    let mut resp = req.send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.chunk().await.unwrap().is_some());
    drop(resp);
    let bound = 100 + long.to_string().len() as u64;
    let rows = ledger(&gw, &id, 3).await;
    assert_eq!(rows[2]["units"], bound.to_string(), "{rows:?}");
    let charged = bound * NANO_PER_TOKEN;
    let usd = format!("{}.{:09}", charged / 1_000_000_000, charged % 1_000_000_000);
    assert_eq!(rows[2]["charged_usd"], usd, "{rows:?}");

    // A stream the orchestrator breaks off ends in an error event: not the customer's fault,
    // charged nothing.
    sim.set_ai_mode(livepeer_sim::AiMode::CloseMidAnswer);
    let text = call("/llm", true).send().await.unwrap().text().await.unwrap();
    assert!(text.contains("event: error"), "{text}");
    let rows = ledger(&gw, &id, 4).await;
    assert_eq!(rows[3]["charged_usd"], "0.000000000", "{rows:?}");

    // The budget's spend is what was charged. What is reserved is this instance's lease of
    // the budget (held until idle, see `keys::lease`), and the three add up to the budget.
    let (_, usage) = crate::keys::admin(&gw, "GET", &format!("/keys/{id}/usage"), None).await;
    let spent = 2 * 8 * NANO_PER_TOKEN + charged;
    assert_eq!(usage["charged_nusd"], spent, "{usage}");
    let budget = &usage["budget"];
    let spent_usd = format!("{}.{:09}", spent / 1_000_000_000, spent % 1_000_000_000);
    assert_eq!(budget["spent_usd"], spent_usd, "{usage}");
    let nano = |v: &serde_json::Value| {
        let (whole, frac) = v.as_str().unwrap().split_once('.').unwrap();
        whole.parse::<u64>().unwrap() * 1_000_000_000 + frac.parse::<u64>().unwrap()
    };
    let total = nano(&budget["spent_usd"]) + nano(&budget["reserved_usd"]);
    assert_eq!(total + budget["remaining_nusd"].as_u64().unwrap(), nano(&budget["budget_usd"]));
    gw.shutdown().await;
}

/// The gateway's signing key in the paid tests.
const KEY: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";

/// Twice what the orchestrator is paid, at 2000 USD an ETH: 4000 USD per ETH of fee, so
/// 4 nano-USD per 10⁶ wei (rounded up).
fn double_fee(pipeline: &str) -> Arc<CustomerPrices> {
    let table =
        format!(r#"{{"price": [{{"pipeline": "{pipeline}", "orchestrator_multiple": "2"}}]}}"#);
    Arc::new(CustomerPrices::parse(Some(&table), Some("2000")).unwrap())
}

/// What `double_fee` charges for a fee of `fee_wei`, nano-USD.
fn doubled(fee_wei: u64) -> u64 {
    (fee_wei * 4).div_ceil(1_000_000)
}

fn usd(nano: u64) -> String {
    format!("{}.{:09}", nano / 1_000_000_000, nano % 1_000_000_000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn llm_answers_priced_as_a_multiple_pay_it_on_every_token_used_prompt_included() {
    // 10⁹ wei a token, paid with tickets to an on-chain simulator.
    let price = 1_000_000_000;
    let mut addr = [0u8; 20];
    addr[19] = 9;
    let sim = Sim::start(SimConfig {
        name: "keys-llm-x2".into(),
        models: vec![SimModel::new("llm", LLM).price(price, 1).capacity(8)],
        eth_address: Some(livepeer_pm::Address::from(addr)),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut c = keys_config(&[sim.url()], dir.path(), None);
    c.signer = Some(Arc::new(livepeer_pm::LocalSigner::from_hex(KEY).unwrap()));
    c.keys.prices = double_fee("llm");
    let gw = start(c).await;
    let (id, secret) = create(&gw, json!({"name": "llm-x2", "budget_micro_usd": 1_000_000})).await;
    // A prompt of 5 words and 3 completion tokens: 8 tokens used of a bound of 100 and the
    // prompt's bytes.
    let messages = json!([{"role": "system", "content": "be brief"},
        {"role": "user", "content": "one two three"}]);
    let body = json!({"model": LLM, "max_tokens": 100, "messages": messages});
    let resp = reqwest::Client::new()
        .post(format!("http://{}/llm", gw.http_addr))
        .bearer_auth(&secret)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["usage"]["total_tokens"], 8, "{answer}");
    let rows = ledger(&gw, &id, 1).await;
    let row = &rows[0];
    assert_eq!(row["units"], "8", "{row:?}");
    // Twice the orchestrator's price of the 8 tokens.
    assert_eq!(row["charged_usd"], usd(doubled(8 * price as u64)), "{row:?}");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byoc_jobs_priced_as_a_multiple_pay_that_multiple_of_the_fee_for_the_seconds_worked() {
    use base64::Engine as _;
    use livepeer_sim::{ByocKind, SimByoc};
    // 5·10⁷ wei a second, paid with tickets to an on-chain simulator.
    let price = 50_000_000;
    let caps = vec![SimByoc::new("text-reversal", ByocKind::Reverse).price(price, 1).capacity(8)];
    let mut addr = [0u8; 20];
    addr[19] = 7;
    let eth_address = Some(livepeer_pm::Address::from(addr));
    let config =
        SimConfig { name: "keys-byoc-x2".into(), eth_address, byoc: caps, ..SimConfig::default() };
    let sim = Sim::start(config).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut c = keys_config(&[sim.url()], dir.path(), None);
    c.signer = Some(Arc::new(livepeer_pm::LocalSigner::from_hex(KEY).unwrap()));
    c.keys.prices = double_fee("byoc");
    let gw = start(c).await;
    let (id, secret) = create(&gw, json!({"name": "byoc-x2", "budget_micro_usd": 1_000_000})).await;
    let job = json!({"request": "{}", "parameters": "{}", "capability": "text-reversal",
        "timeout_seconds": 10});
    let header = base64::engine::general_purpose::STANDARD.encode(job.to_string());
    let resp = reqwest::Client::new()
        .post(format!("http://{}/process/request/reverse", gw.http_addr))
        .bearer_auth(&secret)
        .header("Livepeer", &header)
        .json(&json!({"text": "hello"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.text().await.unwrap(), r#"{"text":"olleh"}"#);
    let rows = ledger(&gw, &id, 1).await;
    let row = &rows[0];
    // The orchestrator's fee is its price times the seconds it worked, which the row counts.
    let seconds: u64 = row["units"].parse().unwrap();
    assert!((1..=10).contains(&seconds), "{row:?}");
    let fee = price as u64 * seconds;
    assert_eq!(row["paid_fee_wei"], fee.to_string(), "{row:?}");
    assert_eq!(row["charged_usd"], usd(doubled(fee)), "{row:?}");
    assert!(row["tickets"].parse::<u64>().unwrap() > 0, "{row:?}");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_stream_priced_as_a_multiple_pays_that_multiple_of_what_its_orchestrator_took() {
    let mut addr = [0u8; 20];
    addr[19] = 8;
    let sim = Sim::start(SimConfig {
        name: "keys-live-x2".into(),
        eth_address: Some(livepeer_pm::Address::from(addr)),
        // 1 wei a pixel: the start call prepays a minute of 720p30 equivalents.
        models: vec![SimModel::new("live-video-to-video", "noop").price(1, 1).capacity(4)],
        live_event_interval: Duration::from_millis(200),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut c = keys_config(&[sim.url()], dir.path(), None);
    c.signer = Some(Arc::new(livepeer_pm::LocalSigner::from_hex(KEY).unwrap()));
    c.live.payment_interval = Duration::from_secs(1);
    c.keys.prices = double_fee("live-video-to-video");
    let gw = start(c).await;
    let (id, secret) = create(&gw, json!({"name": "live-x2", "budget_micro_usd": 1_000_000})).await;
    let http = reqwest::Client::new();
    let url = |path: &str| format!("http://{}/live/video-to-video/{path}", gw.http_addr);
    let resp = http.post(url("cam/start")).bearer_auth(&secret).json(&json!({})).send().await;
    assert_eq!(resp.unwrap().status(), StatusCode::OK);
    let status = http.get(url("cam/status")).bearer_auth(&secret).send().await.unwrap();
    let status: Value = status.json().await.unwrap();
    let fee: u64 = status["payments"]["fee_wei"].as_str().unwrap().parse().unwrap();
    assert!(fee > 0, "the start call prepaid: {status}");
    // A few intervals, during which nothing more is paid (no media flows): charged nothing.
    let rows = ledger(&gw, &id, 3).await;
    assert_eq!(rows[0]["paid_fee_wei"], fee.to_string(), "{rows:?}");
    assert_eq!(rows[0]["charged_usd"], usd(doubled(fee)), "{rows:?}");
    for row in &rows[1..] {
        assert_eq!(row["charged_usd"], "0.000000000", "{row:?}");
    }
    let resp = http.post(url("cam/stop")).bearer_auth(&secret).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let (_, usage) = crate::keys::admin(&gw, "GET", &format!("/keys/{id}/usage"), None).await;
    assert_eq!(usage["charged_nusd"], doubled(fee), "{usage}");
    // A key with nothing left of its budget: priced as a multiple, its start cost nothing to
    // reserve, so each was prepaid to an orchestrator before its charge was refused. Now
    // refused first.
    let starts = sim.live().starts;
    let (_, spent) = create(&gw, json!({"name": "spent", "budget_micro_usd": 0})).await;
    let resp = http.post(url("cam2/start")).bearer_auth(&spent).json(&json!({})).send().await;
    let resp = resp.unwrap();
    assert_eq!(resp.status(), StatusCode::PAYMENT_REQUIRED);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "budget_exceeded", "{body}");
    assert_eq!(sim.live().starts, starts, "no orchestrator was asked to start it");
    gw.shutdown().await;
}

/// A BYOC stream's start pays its orchestrator a minute of its price in tickets: priced as a
/// multiple, the start's own row charges that multiple of their expected value (it charged
/// nothing, the stream's first interval being taken of its interval payments alone).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_byoc_stream_priced_as_a_multiple_pays_that_multiple_of_what_its_start_sent() {
    use livepeer_pm::Ratio;
    const CAP: &str = BYOC_STREAM_CAP;
    // 10⁸ wei a second: the start's minute takes a ticket.
    let sim = paid_byoc_stream_sim("keys-byoc-stream-start-x2", 10, 100_000_000).await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = keys_config(&[sim.url()], dir.path(), None);
    c.signer = Some(Arc::new(livepeer_pm::LocalSigner::from_hex(KEY).unwrap()));
    c.keys.prices = double_fee("byoc");
    let gw = start(c).await;
    let (id, secret) =
        create(&gw, json!({"name": "bs-start", "budget_micro_usd": 1_000_000})).await;
    let header = crate::byoc_stream::job_header(CAP, 60, r#"{"enable_data_output":true}"#);
    let body = json!({"stream_name": "s", "stream_id": "1", "params": "{}"});
    let resp = reqwest::Client::new()
        .post(format!("http://{}/process/stream/start", gw.http_addr))
        .bearer_auth(&secret)
        .header("Livepeer", &header)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    // No interval has gone by: the one row is the start's, and the only tickets its.
    let started: Value = resp.json().await.unwrap();
    let rows = ledger(&gw, &id, 1).await;
    let row = &rows[0];
    let ev: Ratio = row["paid_ev_wei"].parse().unwrap();
    assert_eq!(ev, sim.byoc_stats().ev_credited, "the start's tickets: {row:?}");
    assert!(!ev.is_zero(), "{row:?}");
    let nano = ev.checked_mul_u64(4).unwrap().checked_div(&Ratio::from_u64(1_000_000)).unwrap();
    assert_eq!(row["charged_usd"], usd(u64::try_from(nano.ceil()).unwrap()), "{row:?}");
    let stop =
        reqwest::Client::new().post(started["stop_url"].as_str().unwrap()).bearer_auth(&secret);
    assert_eq!(stop.send().await.unwrap().status(), StatusCode::OK);
    gw.shutdown().await;
}

/// A config with keys on for the transcoding orchestrator at `url`, charging 0.06 USD a minute
/// of video: a 2 s segment costs 0.002 USD.
pub(crate) fn transcode_keys_config(url: &str, dir: &std::path::Path) -> livepeer_gateway::Config {
    let mut c = keys_config(&[url], dir, None);
    let table = r#"{"price": [{"pipeline": "transcode", "usd": "0.06"}]}"#;
    c.keys.prices = Arc::new(CustomerPrices::parse(Some(table), None).unwrap());
    c
}

/// Pushes the two-second test segment as segment `seq` of `manifest`, declaring `declared`.
pub(crate) fn push_segment(
    gw: &Gateway,
    secret: &str,
    manifest: &str,
    seq: u64,
    declared: &str,
) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .post(format!("http://{}/live/{manifest}/{seq}.ts", gw.http_addr))
        .bearer_auth(secret)
        .header("Livepeer-Transcode-Configuration", crate::transcode::PROFILES)
        .header("Content-Duration", declared)
        .body(crate::transcode::segment().to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_segment_is_charged_the_video_it_holds_not_the_duration_it_declares() {
    let sim = crate::transcode::sim("keys-charge-tc", true).await;
    let dir = tempfile::tempdir().unwrap();
    // The 2 s segment costs 0.002 USD.
    let gw = start(transcode_keys_config(sim.url(), dir.path())).await;
    let (id, secret) = create(&gw, json!({"name": "tc", "budget_micro_usd": 1_000_000})).await;
    // Declared 0.1 s: charged the 2 s its timestamps span. Declared 3 s: charged the claim.
    for (seq, declared) in [(0, "100"), (1, "3000")] {
        let resp = push_segment(&gw, &secret, "liar", seq, declared).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{}", resp.text().await.unwrap());
    }
    let rows = ledger(&gw, &id, 2).await;
    assert_eq!(
        (rows[0]["units"].as_str(), rows[0]["charged_usd"].as_str()),
        ("2000", "0.002000000")
    );
    assert_eq!(
        (rows[1]["units"].as_str(), rows[1]["charged_usd"].as_str()),
        ("3000", "0.003000000")
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_segment_priced_as_a_multiple_pays_that_multiple_of_its_fee() {
    let config = SimConfig {
        name: "keys-charge-tc-x2".into(),
        face_value: 100_000_000,
        ticket_ev: 1_000_000,
        base_price: (1, 1),
        transcode_fast: true,
        ..SimConfig::default()
    };
    let signer = livepeer_pm::LocalSigner::from_bytes(&[0x44; 32]).unwrap();
    let sim = Sim::start(config.with_signer(signer)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut c = keys_config(&[sim.url()], dir.path(), None);
    c.signer = Some(Arc::new(livepeer_pm::LocalSigner::from_hex(KEY).unwrap()));
    c.keys.prices = double_fee("transcode");
    let gw = start(c).await;
    let (id, secret) = create(&gw, json!({"name": "tc-x2", "budget_micro_usd": 1_000_000})).await;
    let resp = push_segment(&gw, &secret, "paid", 0, "2000").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "{}", resp.text().await.unwrap());
    let rows = ledger(&gw, &id, 1).await;
    let fee: livepeer_pm::Ratio = rows[0]["paid_fee_wei"].parse().unwrap();
    // The fee is Σ output pixels × 1 wei: a whole number of wei, above zero.
    let fee = u64::try_from(fee.ceil()).unwrap();
    assert!(fee > 0, "{rows:?}");
    assert_eq!(rows[0]["charged_usd"], usd(doubled(fee)), "{rows:?}");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rtmp_stream_is_charged_per_segment_counted_among_streams_and_stopped_by_its_budget() {
    use crate::transcode_rtmp::publish;
    let sim = crate::transcode::sim("keys-charge-rtmp", true).await;
    let dir = tempfile::tempdir().unwrap();
    // A 2 s segment costs 0.002 USD.
    let gw = start(transcode_keys_config(sim.url(), dir.path())).await;
    // 0.0091 USD: four segments, not five.
    let body = json!({"name": "rtmp", "budget_micro_usd": 9_100, "max_streams": 1});
    let (id, secret) = create(&gw, body).await;
    let first = publish(&gw, &format!("stream/cam/{secret}"), 30);
    eventually(Duration::from_secs(60), "a segment of the keyed stream", || async {
        let (status, media) =
            crate::transcode::get_text(&gw, "/stream/cam/P240p30fps16x9.m3u8").await;
        status == 200 && !crate::transcode::listed(&media).1.is_empty()
    })
    .await;
    // One stream at a time for this key: a second publisher is turned away.
    let second = publish(&gw, &format!("stream/cam2/{secret}"), 3).wait_with_output().await;
    assert!(!second.unwrap().status.success(), "a second stream of a one-stream key");
    assert_eq!(crate::transcode::get_text(&gw, "/stream/cam2.m3u8").await.0, 404);
    // The budget runs out well before the 30 s published: the connection is closed on the
    // publisher, which fails.
    let first = first.wait_with_output().await.unwrap();
    assert!(!first.status.success(), "the stream was stopped by its budget");
    let rows = ledger(&gw, &id, 5).await;
    let charged: Vec<&str> = rows.iter().map(|r| r["charged_usd"].as_str()).collect();
    assert_eq!(charged.iter().filter(|c| **c == "0.002000000").count(), 4, "{rows:?}");
    assert!(rows.iter().any(|r| r["status"] == "402" && r["outcome"] == "refused"), "{rows:?}");
    let (_, usage) = crate::keys::admin(&gw, "GET", &format!("/keys/{id}/usage"), None).await;
    assert_eq!(usage["charged_nusd"], 8_000_000, "{usage}");
    assert_eq!(usage["budget"]["reserved_usd"], "0.000000000", "{usage}");
    // Stopped, the stream no longer holds the key's place: a new one is admitted, and
    // refused at its first segment by the budget.
    let third = publish(&gw, &format!("stream/cam3/{secret}"), 4).wait_with_output().await;
    assert!(!third.unwrap().status.success());
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_byoc_stream_priced_as_a_multiple_pays_that_multiple_of_the_ev_it_sent() {
    use livepeer_pm::Ratio;
    const CAP: &str = BYOC_STREAM_CAP;
    // 5·10⁹ wei a second: each interval's payment needs tickets.
    let sim = paid_byoc_stream_sim("keys-byoc-stream-x2", 9, 5_000_000_000).await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = keys_config(&[sim.url()], dir.path(), None);
    c.signer = Some(Arc::new(livepeer_pm::LocalSigner::from_hex(KEY).unwrap()));
    c.byoc.payment_interval = Duration::from_secs(1);
    c.keys.prices = double_fee("byoc");
    let gw = start(c).await;
    let (id, secret) = create(&gw, json!({"name": "bs-x2", "budget_micro_usd": 1_000_000})).await;
    let header = crate::byoc_stream::job_header(CAP, 60, r#"{"enable_data_output":true}"#);
    let body = json!({"stream_name": "s", "stream_id": "1", "params": "{}"});
    let resp = reqwest::Client::new()
        .post(format!("http://{}/process/stream/start", gw.http_addr))
        .bearer_auth(&secret)
        .header("Livepeer", &header)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "{}", resp.text().await.unwrap());
    // Wait until an interval carried a payment: each row is charged twice its tickets' EV.
    let mut count = 2;
    let rows = loop {
        let rows = ledger(&gw, &id, count).await;
        if rows.iter().any(|r| r["paid_ev_wei"] != "0") {
            break rows;
        }
        assert!(count < 60, "no payment in {count} intervals: {rows:?}");
        count += 1;
    };
    for row in &rows {
        let ev: Ratio = row["paid_ev_wei"].parse().unwrap();
        let nano = ev.checked_mul_u64(4).unwrap().checked_div(&Ratio::from_u64(1_000_000)).unwrap();
        let nano = u64::try_from(nano.ceil()).unwrap();
        assert_eq!(row["charged_usd"], usd(nano), "{row:?}");
    }
    gw.shutdown().await;
}

/// The BYOC capability of [`paid_byoc_stream_sim`].
pub(crate) const BYOC_STREAM_CAP: &str = "echo-stream";

/// A simulator named `name` with the on-chain address ending in `byte`, offering the echo
/// stream [`BYOC_STREAM_CAP`] at `wei_per_second` (four at once).
pub(crate) async fn paid_byoc_stream_sim(name: &str, byte: u8, wei_per_second: i64) -> Sim {
    use livepeer_sim::{ByocKind, SimByoc};
    let mut addr = [0u8; 20];
    addr[19] = byte;
    let cap = SimByoc::new(BYOC_STREAM_CAP, ByocKind::Echo).price(wei_per_second, 1).capacity(4);
    let config = SimConfig {
        name: name.into(),
        eth_address: Some(livepeer_pm::Address::from(addr)),
        byoc: vec![cap],
        ..SimConfig::default()
    };
    Sim::start(config).await.unwrap()
}
