//! Async image-to-video's bounds end to end: a poll never answers `complete` with a video the
//! result store no longer holds (evicted by newer results, or to make room for the job's own
//! answer), a job for a model nobody offers is refused before it takes a place, and shutdown
//! ends running jobs failed and uncharged, their usage rows written.

use std::sync::Arc;
use std::time::Duration;

use livepeer_gateway::Gateway;
use livepeer_gateway::ai::results::ENTRY_OVERHEAD;
use livepeer_gateway::config::Config;
use livepeer_gateway::keys::price::CustomerPrices;
use livepeer_sim::{AiMode, Sim};
use reqwest::StatusCode;
use reqwest::multipart::Form;
use serde_json::Value;

use crate::ai_async::{form, gw_config, i2v, poll, sim, until_complete};
use crate::keys::{create, keys_config};
use crate::keys_charge::ledger;
use crate::support::*;

/// The request of every job here: the same seed, so the same video, of the same size.
fn seeded() -> Form {
    form().text("seed", "7")
}

/// Submits `form` asynchronously (with the customer key `key`, if any): the id to poll with.
async fn submit(gw: &Gateway, key: Option<&str>, form: Form) -> String {
    let resp = i2v(gw, Some("respond-async"), key, form).await;
    let status = resp.status();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    body["request_id"].as_str().unwrap().to_owned()
}

/// The sizes of a seeded job's video and of its answer, measured on a gateway of their own.
async fn sizes(sim: &Sim) -> (usize, usize) {
    let gw = start(gw_config(config(&[sim.url()]))).await;
    let resp = i2v(&gw, None, None, seeded()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let answer = resp.bytes().await.unwrap();
    let json: Value = serde_json::from_slice(&answer).unwrap();
    let url = json["images"][0]["url"].as_str().unwrap();
    let video = reqwest::get(url).await.unwrap().bytes().await.unwrap();
    gw.shutdown().await;
    (video.len(), answer.len())
}

/// A gateway config whose result store holds `bytes`.
fn store_of(sim: &Sim, bytes: usize) -> Config {
    let mut c = gw_config(config(&[sim.url()]));
    c.ai.result_store_bytes = bytes;
    c
}

/// Asserts that a complete result is `result_store_full`, and names no video.
fn assert_evicted(done: &Value) {
    assert_eq!(done["result"]["error"]["type"], "result_store_full", "{done}");
    assert!(done["result"].get("images").is_none(), "{done}");
}

/// The store evicts its oldest files first, and a job's video is older than its answer: a
/// newer result pushes the video out and leaves the answer. The job is then told as evicted,
/// not as complete with a URL that answers 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_never_answers_complete_with_a_video_newer_results_evicted() {
    let sim = sim("async-evicted", Duration::ZERO).await;
    let (video, answer) = sizes(&sim).await;
    // Room for the job's video and answer, not for another video beside them.
    let cap = video + answer + 2 * ENTRY_OVERHEAD + video / 2;
    let gw = start(store_of(&sim, cap)).await;
    let id = submit(&gw, None, seeded()).await;
    let done = until_complete(&gw, &id).await;
    let url = done["result"]["images"][0]["url"].as_str().unwrap().to_owned();
    assert_eq!(reqwest::get(&url).await.unwrap().status(), StatusCode::OK);
    // A synchronous job's video takes the oldest file's room: the async job's video.
    assert_eq!(i2v(&gw, None, None, seeded()).await.status(), StatusCode::OK);
    assert_eq!(reqwest::get(&url).await.unwrap().status(), StatusCode::NOT_FOUND);
    let (status, done) = poll(&gw, &id).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_evicted(&done);
    gw.shutdown().await;
}

/// Storing a job's answer does not evict the job's own video to make room: with no room for
/// both, the job fails (`result_store_full`), and its customer is not charged for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storing_an_async_answer_never_evicts_its_own_video() {
    let sim = sim("async-own-video", Duration::ZERO).await;
    let (video, answer) = sizes(&sim).await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = gw_config(keys_config(&[sim.url()], dir.path(), None));
    // One byte short of the video and its answer together.
    c.ai.result_store_bytes = video + answer + 2 * ENTRY_OVERHEAD - 1;
    let table = r#"{"price": [{"pipeline": "image-to-video", "usd": "0.01"}]}"#;
    c.keys.prices = Arc::new(CustomerPrices::parse(Some(table), None).unwrap());
    let gw = start(c).await;
    let (key, secret) = create(&gw, serde_json::json!({"name": "own-video"})).await;
    let id = submit(&gw, Some(&secret), seeded()).await;
    let done = until_complete(&gw, &id).await;
    assert_evicted(&done);
    let row = ledger(&gw, &key, 1).await.remove(0);
    assert_eq!(row["status"], "503", "{row:?}");
    assert_eq!(row["charged_usd"], "0.000000000", "{row:?}");
    gw.shutdown().await;
}

/// A job for a model no orchestrator offers is refused at once, as the synchronous request
/// is: it never takes a place in the registry, so such requests cannot fill it.
#[tokio::test]
async fn an_async_job_for_a_model_nobody_offers_is_refused_before_it_takes_a_place() {
    let sim = sim("async-unoffered", Duration::ZERO).await;
    let mut c = gw_config(config(&[sim.url()]));
    c.ai.async_max_jobs = 1;
    let gw = start(c).await;
    let made_up = || {
        let image = reqwest::multipart::Part::bytes(crate::ai_async::png()).file_name("in.png");
        Form::new().text("model_id", "nobody/offers-this").part("image", image)
    };
    let sync: Value = i2v(&gw, None, None, made_up()).await.json().await.unwrap();
    for _ in 0..3 {
        let refused = i2v(&gw, Some("respond-async"), None, made_up()).await;
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body: Value = refused.json().await.unwrap();
        assert_eq!(body["error"]["type"], "no_orchestrator", "{body}");
        assert_eq!(body["error"]["type"], sync["error"]["type"], "{body} {sync}");
    }
    // The one place is still free.
    let id = submit(&gw, None, form()).await;
    let done = until_complete(&gw, &id).await;
    assert!(done["result"]["images"][0]["url"].is_string(), "{done}");
    assert_eq!(sim.ai_requests(), 1);
    gw.shutdown().await;
}

/// Starts a gateway with keys on under `dir` in front of `sim`, shutdown's drain `drain`;
/// a customer key priced for image-to-video: the gateway, the key's id and its secret.
async fn keyed(sim: &Sim, dir: &std::path::Path, drain: Duration) -> (Gateway, String, String) {
    let mut c = gw_config(keys_config(&[sim.url()], dir, None));
    c.ai.shutdown_drain_timeout = drain;
    let table = r#"{"price": [{"pipeline": "image-to-video", "usd": "0.01"}]}"#;
    c.keys.prices = Arc::new(CustomerPrices::parse(Some(table), None).unwrap());
    let gw = start(c).await;
    let (key, secret) = create(&gw, serde_json::json!({"name": "shutdown"})).await;
    (gw, key, secret)
}

/// Shuts `gw` down with `jobs` jobs at the orchestrator, then reads their ledger rows from
/// the same database through a new gateway, and checks each is a failure, uncharged.
async fn rows_after_shutdown(
    sim: &Sim,
    dir: &std::path::Path,
    (gw, key, secret): (Gateway, String, String),
    jobs: usize,
) {
    for _ in 0..jobs {
        submit(&gw, Some(&secret), form()).await;
    }
    eventually(Duration::from_secs(10), "the jobs reach their orchestrator", || async {
        sim.ai_requests() == jobs as u64
    })
    .await;
    gw.shutdown().await;
    let again = start(gw_config(keys_config(&[sim.url()], dir, None))).await;
    let rows = ledger(&again, &key, jobs).await;
    assert_eq!(rows.len(), jobs, "{rows:?}");
    for row in rows {
        assert_eq!(row["status"], "500", "{row:?}");
        assert_eq!(row["charged_usd"], "0.000000000", "{row:?}");
    }
    again.shutdown().await;
}

/// A job running as shutdown starts would finish during the drain, be charged, and its
/// result be lost with the closed listeners: it ends at once instead, failed and uncharged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_running_async_jobs_failed_and_uncharged() {
    let sim = sim("async-shutdown", Duration::from_secs(2)).await;
    let dir = tempfile::tempdir().unwrap();
    let gw = keyed(&sim, dir.path(), Duration::from_secs(20)).await;
    rows_after_shutdown(&sim, dir.path(), gw, 1).await;
}

/// With no drain time, the ledger's writer stops as shutdown starts, as the jobs end: it
/// waits for the rows they promised, and every one is written (8 jobs, as many as the
/// simulator takes at once, each racing the writer's last write).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_rows_are_written_at_shutdown_even_with_no_drain_time() {
    let sim = sim("async-no-drain", Duration::ZERO).await;
    sim.set_ai_mode(AiMode::Hang);
    let dir = tempfile::tempdir().unwrap();
    let gw = keyed(&sim, dir.path(), Duration::ZERO).await;
    rows_after_shutdown(&sim, dir.path(), gw, 8).await;
}

/// An answer holding its video as a `data:` URL is polled whole, with its length.
#[tokio::test]
async fn a_data_url_answer_is_polled_whole_with_its_length() {
    let sim = sim("async-data-urls", Duration::ZERO).await;
    let mut c = gw_config(config(&[sim.url()]));
    c.ai.data_urls = true;
    let gw = start(c).await;
    let id = submit(&gw, None, form()).await;
    until_complete(&gw, &id).await;
    let resp = reqwest::Client::new()
        .post(format!("http://{}/image-to-video/result", gw.http_addr))
        .json(&serde_json::json!({ "request_id": id }))
        .send()
        .await
        .unwrap();
    let length = resp.content_length();
    let body = resp.bytes().await.unwrap();
    assert_eq!(length, Some(body.len() as u64));
    let done: Value = serde_json::from_slice(&body).unwrap();
    let url = done["result"]["images"][0]["url"].as_str().unwrap();
    assert!(url.starts_with("data:video/mp4;base64,"), "{}", &url[..40.min(url.len())]);
    gw.shutdown().await;
}
