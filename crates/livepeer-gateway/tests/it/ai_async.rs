//! Async image-to-video (go-livepeer's `Prefer: respond-async`) end to end: the 202 with a
//! request id, polling `/image-to-video/result` (processing, then the synchronous answer's
//! shape), unknown ids, failed jobs, the cap on jobs, expiry, and a customer's charge.

use std::sync::Arc;
use std::time::Duration;

use livepeer_gateway::Gateway;
use livepeer_gateway::config::Config;
use livepeer_gateway::keys::price::CustomerPrices;
use livepeer_sim::{AiMode, Sim, SimConfig, SimModel};
use reqwest::multipart::{Form, Part};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

use crate::keys::{create, keys_config};
use crate::keys_charge::ledger;
use crate::support::*;

pub const I2V: &str = "stabilityai/stable-video-diffusion-img2vid-xt";

/// A simulator serving image-to-video, each answer `ai_latency` after its request.
pub async fn sim(name: &str, ai_latency: Duration) -> Sim {
    let models = vec![SimModel::new("image-to-video", I2V).price(1, 1).capacity(8)];
    let config = SimConfig { name: name.into(), models, ai_latency, ..SimConfig::default() };
    Sim::start(config).await.unwrap()
}

/// The tests' config for `sim`: deadlines long enough for its latency, a short drain.
pub fn gw_config(c: Config) -> Config {
    let mut c = c;
    c.ai.attempt_timeout = Duration::from_secs(20);
    c.ai.request_timeout = Duration::from_secs(30);
    c.ai.shutdown_drain_timeout = Duration::from_millis(200);
    c
}

/// A 64×48 PNG.
pub fn png() -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, 64, 48);
    enc.set_color(png::ColorType::Rgb);
    enc.write_header().unwrap().write_image_data(&[128u8; 64 * 48 * 3]).unwrap();
    out
}

pub fn form() -> Form {
    let image = Part::bytes(png()).file_name("in.png").mime_str("image/png").unwrap();
    Form::new().text("model_id", I2V).part("image", image)
}

/// `POST /image-to-video`, asking for an async answer when `prefer` (and with the customer
/// key `key`, if any).
pub async fn i2v(gw: &Gateway, prefer: Option<&str>, key: Option<&str>, form: Form) -> Response {
    let mut req = reqwest::Client::new()
        .post(format!("http://{}/image-to-video", gw.http_addr))
        .multipart(form);
    if let Some(prefer) = prefer {
        req = req.header("prefer", prefer);
    }
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    req.send().await.unwrap()
}

/// Submits the job asynchronously: its request id, checked to be a 202 in go-livepeer's shape.
pub async fn submit(gw: &Gateway, key: Option<&str>) -> (String, reqwest::header::HeaderMap) {
    let resp = i2v(gw, Some("respond-async"), key, form()).await;
    let (status, headers) = (resp.status(), resp.headers().clone());
    let body: Value = resp.json().await.unwrap();
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(headers["preference-applied"], "respond-async");
    assert!(headers.contains_key("x-request-id"));
    assert_eq!(body.as_object().unwrap().len(), 1, "only the id: {body}");
    let id = body["request_id"].as_str().unwrap().to_owned();
    assert!(id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    (id, headers)
}

/// `POST /image-to-video/result` with `body`: its status and body.
pub async fn poll_body(gw: &Gateway, method: reqwest::Method, body: &str) -> (StatusCode, String) {
    let resp = reqwest::Client::new()
        .request(method, format!("http://{}/image-to-video/result", gw.http_addr))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    (resp.status(), resp.text().await.unwrap())
}

/// Polls job `id` once.
pub async fn poll(gw: &Gateway, id: &str) -> (StatusCode, Value) {
    let body = json!({ "request_id": id }).to_string();
    let (status, text) = poll_body(gw, reqwest::Method::POST, &body).await;
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Polls job `id` until it is complete: the answer's body.
pub async fn until_complete(gw: &Gateway, id: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = poll(gw, id).await;
        if status == StatusCode::OK {
            assert_eq!(body["status"], "complete", "{body}");
            return body;
        }
        assert_eq!((status, &body), (StatusCode::ACCEPTED, &json!({"status": "processing"})));
        assert!(tokio::time::Instant::now() < deadline, "job {id} never completed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn assert_invalid_id(status: StatusCode, body: &Value) {
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["message"], "invalid request ID", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_job_is_accepted_then_processing_then_complete_with_the_sync_answer() {
    let sim = sim("async-ok", Duration::from_secs(2)).await;
    let gw = start(gw_config(config(&[sim.url()]))).await;
    // The synchronous answer, for its shape.
    let sync = i2v(&gw, None, None, form()).await;
    assert_eq!(sync.status(), StatusCode::OK);
    let sync: Value = sync.json().await.unwrap();

    let (id, headers) = submit(&gw, None).await;
    // The simulator answers 2 s after the request: the job is still running.
    let (status, body) = poll(&gw, &id).await;
    assert_eq!((status, &body), (StatusCode::ACCEPTED, &json!({"status": "processing"})));
    let done = until_complete(&gw, &id).await;
    let result = &done["result"];
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(result), keys(&sync), "{done}");
    assert_eq!(keys(&result["images"][0]), keys(&sync["images"][0]), "{done}");
    let url = result["images"][0]["url"].as_str().unwrap();
    assert!(url.starts_with(&format!("http://{}/results/", gw.http_addr)), "{url}");
    let video = reqwest::get(url).await.unwrap();
    assert_eq!(video.headers()["content-type"], "video/mp4");
    assert_eq!(&video.bytes().await.unwrap()[4..8], b"ftyp", "a real MP4");
    assert_eq!(sim.ai_requests(), 2, "one call each, sync and async");
    // Polled again, the same answer; in go-livepeer's field order; any method will do.
    let asked = json!({ "request_id": id }).to_string();
    let (status, text) = poll_body(&gw, reqwest::Method::GET, &asked).await;
    assert_eq!(status, StatusCode::OK);
    assert!(text.starts_with(r#"{"result":"#), "{text}");
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), done);
    // The log's request id is not the one to poll with.
    assert_ne!(headers["x-request-id"].to_str().unwrap(), id);
    gw.shutdown().await;
}

#[tokio::test]
async fn unknown_ids_get_go_livepeers_invalid_request_id() {
    let sim = sim("async-unknown", Duration::ZERO).await;
    let gw = start(gw_config(config(&[sim.url()]))).await;
    for id in [json!("nope"), json!("0123456789abcdef0123456789abcdef"), json!("")] {
        let (status, body) = poll(&gw, id.as_str().unwrap()).await;
        assert_invalid_id(status, &body);
    }
    // No id at all is an unknown one, as go-livepeer reads it.
    let (status, text) = poll_body(&gw, reqwest::Method::POST, r#"{"other": 1}"#).await;
    assert_invalid_id(status, &serde_json::from_str(&text).unwrap());
    // A body that is not JSON is a 400 too, saying so.
    let (status, text) = poll_body(&gw, reqwest::Method::POST, "request_id=x").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.contains("invalid JSON body"), "{text}");
    // A synchronous job leaves nothing to poll.
    assert_eq!(i2v(&gw, None, None, form()).await.status(), StatusCode::OK);
    assert_eq!(sim.ai_requests(), 1);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_failing_orchestrator_leaves_a_failed_result_and_bad_input_is_refused_at_once() {
    let sim = sim("async-fail", Duration::ZERO).await;
    let gw = start(gw_config(config(&[sim.url()]))).await;
    // Validation comes before the 202, as it does for the synchronous request.
    let no_image = Form::new().text("model_id", I2V);
    let refused = i2v(&gw, Some("respond-async"), None, no_image).await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(sim.ai_requests(), 0);

    sim.set_ai_mode(AiMode::Status(500, "boom".into()));
    let (id, _) = submit(&gw, None).await;
    let done = until_complete(&gw, &id).await;
    // The result is the error body the synchronous request is answered with, whose
    // `error.message` is where go-livepeer puts its failure's.
    let error = &done["result"]["error"];
    assert_eq!(error["type"], "orchestrator_failed", "{done}");
    assert_eq!(error["status"], 502, "{done}");
    assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()), "{done}");
    assert!(done["result"].get("images").is_none(), "{done}");
    assert_eq!(sim.ai_requests(), 1, "the job reached its orchestrator");
    // (The orchestrator is ejected by now: the synchronous answer is another error, of the
    // same shape.)
    let sync = i2v(&gw, None, None, form()).await;
    assert!(sync.status().is_server_error());
    let sync: Value = sync.json().await.unwrap();
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&done["result"]), keys(&sync), "{done} {sync}");
    assert_eq!(keys(error), keys(&sync["error"]), "{done} {sync}");
    gw.shutdown().await;
}

#[tokio::test]
async fn a_full_registry_refuses_async_jobs_with_a_json_503() {
    let sim = sim("async-full", Duration::ZERO).await;
    let mut c = gw_config(config(&[sim.url()]));
    c.ai.async_max_jobs = 1;
    let gw = start(c).await;
    // The first job hangs at its orchestrator, holding the one place.
    sim.set_ai_mode(AiMode::Hang);
    let (id, _) = submit(&gw, None).await;
    eventually(Duration::from_secs(10), "the job reaches its orchestrator", || async {
        sim.ai_requests() == 1
    })
    .await;
    let full = i2v(&gw, Some("respond-async"), None, form()).await;
    assert_eq!(full.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(full.headers().contains_key("retry-after"));
    let body: Value = full.json().await.unwrap();
    assert_eq!(body["error"]["type"], "async_jobs_full", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("--ai-async-max-jobs"), "{body}");
    assert_eq!(sim.ai_requests(), 1, "the refused job reached no orchestrator");
    let (status, body) = poll(&gw, &id).await;
    assert_eq!((status, body), (StatusCode::ACCEPTED, json!({"status": "processing"})));
    // Shutdown ends the hung job as it starts.
    gw.shutdown().await;
}

#[tokio::test]
async fn kept_results_expire_after_the_result_ttl_and_free_their_place() {
    let sim = sim("async-ttl", Duration::ZERO).await;
    let mut c = gw_config(config(&[sim.url()]));
    c.ai.async_max_jobs = 1;
    c.ai.result_ttl = Duration::from_secs(3);
    let gw = start(c).await;
    let (id, _) = submit(&gw, None).await;
    let done = until_complete(&gw, &id).await;
    let url = done["result"]["images"][0]["url"].as_str().unwrap().to_owned();
    // Kept, it holds the one place.
    let full = i2v(&gw, Some("respond-async"), None, form()).await;
    assert_eq!(full.status(), StatusCode::SERVICE_UNAVAILABLE);
    eventually(Duration::from_secs(15), "the result expires", || async {
        let (status, body) = poll(&gw, &id).await;
        if status == StatusCode::OK {
            return false;
        }
        assert_invalid_id(status, &body);
        true
    })
    .await;
    assert_eq!(reqwest::get(&url).await.unwrap().status(), StatusCode::NOT_FOUND, "{url}");
    let (again, _) = submit(&gw, None).await;
    assert_ne!(again, id);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_job_is_charged_as_the_sync_one_once_it_has_ended() {
    let sim = sim("async-keys", Duration::from_millis(500)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = gw_config(keys_config(&[sim.url()], dir.path(), None));
    let table = r#"{"price": [{"pipeline": "image-to-video", "usd": "0.01"}]}"#;
    c.keys.prices = Arc::new(CustomerPrices::parse(Some(table), None).unwrap());
    let gw = start(c).await;
    let (key, secret) = create(&gw, json!({"name": "async", "budget_micro_usd": 10_000_000})).await;
    assert_eq!(i2v(&gw, None, Some(&secret), form()).await.status(), StatusCode::OK);
    let sync_row = ledger(&gw, &key, 1).await.remove(0);
    let missing = i2v(&gw, Some("respond-async"), None, form()).await;
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED, "async jobs need the key too");

    let (id, headers) = submit(&gw, Some(&secret)).await;
    // Polling needs no key: the id is the client's capability, as result URLs are.
    until_complete(&gw, &id).await;
    let rows = ledger(&gw, &key, 2).await;
    let row = &rows[1];
    assert_eq!(row["request_id"], headers["x-request-id"].to_str().unwrap(), "{row:?}");
    assert_eq!(row["status"], "200", "{row:?}");
    assert_eq!(row["pipeline"], "image-to-video", "{row:?}");
    assert_eq!(row["units"], sync_row["units"], "{row:?}");
    assert_eq!(row["charged_usd"], sync_row["charged_usd"], "{row:?}");
    assert_ne!(row["charged_usd"], "0.000000000", "{row:?}");
    gw.shutdown().await;
}
