//! go-livepeer's batch AI series that operators' dashboards read (GATEWAY.md §8.1):
//! `ai_request_latency_score` and the result downloads, through a real gateway and simulator.

use std::time::Duration;

use tokio::time::Instant;

use livepeer_gateway::Gateway;
use livepeer_sim::{Sim, SimConfig, SimModel};
use serde_json::{Value, json};

use crate::support::*;

async fn sim(token_delay: Duration) -> Sim {
    Sim::start(SimConfig {
        name: "scored".into(),
        models: vec![
            SimModel::new("text-to-image", SD).price(1, 1).capacity(8),
            SimModel::new("llm", LLM).price(1, 1).capacity(8),
        ],
        token_delay,
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

/// The value of the one sample of `family` whose labels include each of `labels`.
fn sample(metrics: &str, family: &str, labels: &[String]) -> Option<f64> {
    let mut found = metrics.lines().filter(|line| {
        line.strip_prefix(family).is_some_and(|rest| rest.starts_with('{'))
            && labels.iter().all(|l| line.contains(l.as_str()))
    });
    let line = found.next()?;
    assert!(found.next().is_none(), "one sample of {family} with {labels:?}");
    line.rsplit(' ').next()?.parse().ok()
}

fn labels(pipeline: &str, model: &str, orch: Option<&Sim>) -> Vec<String> {
    let mut labels = vec![format!("pipeline=\"{pipeline}\""), format!("model_name=\"{model}\"")];
    labels.extend(orch.map(|o| format!("orchestrator_uri=\"{}\"", o.url())));
    labels
}

async fn post(gw: &Gateway, path: &str, body: Value) -> (Value, Duration) {
    let began = Instant::now();
    let resp = post_json(gw, path, &body).await;
    assert_eq!(resp.status(), 200, "{path}");
    let body = resp.json().await.unwrap();
    (body, began.elapsed())
}

/// Text-to-image is scored per output pixel and inference step, and its downloaded image
/// counted; an LLM answer per token its `usage` reports. Each score is at most the time the
/// client itself waited, per unit: the gateway measures the orchestrator's part of it.
#[tokio::test]
async fn answers_are_scored_per_unit_of_work_and_downloads_counted() {
    let orch = sim(Duration::ZERO).await;
    let mut c = config(&[orch.url()]);
    c.ai.inline_images = false;
    let gw = start(c).await;

    let before = metrics_text(&gw).await;
    assert_eq!(sample(&before, "livepeer_ai_request_latency_score", &[]), None);
    let job = json!({"prompt": "x", "model_id": SD, "width": 64, "height": 32,
        "num_images_per_prompt": 2, "num_inference_steps": 3});
    let (_, waited) = post(&gw, "/text-to-image", job).await;
    let chat = json!({"model": LLM, "messages": [{"role": "user", "content": "one two three"}]});
    let (answer, waited_llm) = post(&gw, "/llm", chat).await;
    let tokens = answer["usage"]["total_tokens"].as_u64().unwrap();
    assert!(tokens > 0, "{answer}");

    let metrics = metrics_text(&gw).await;
    let family = "livepeer_ai_request_latency_score";
    let t2i = sample(&metrics, family, &labels("text-to-image", SD, Some(&orch))).unwrap();
    let most = waited.as_secs_f64() / (64.0 * 32.0 * 2.0) / 3.0;
    assert!(t2i > 0.0 && t2i <= most, "{t2i} of at most {most}");
    let llm = sample(&metrics, family, &labels("llm", LLM, Some(&orch))).unwrap();
    let most = waited_llm.as_secs_f64() / tokens as f64;
    assert!(llm > 0.0 && llm <= most, "{llm} of at most {most}");

    // Two images, each downloaded from the orchestrator; the LLM downloads nothing.
    let t2i = labels("text-to-image", SD, None);
    assert_eq!(sample(&metrics, "livepeer_ai_result_downloaded_total", &t2i), Some(2.0));
    let count = "livepeer_ai_result_download_time_seconds_count";
    assert_eq!(sample(&metrics, count, &t2i), Some(2.0));
    assert_eq!(
        sample(&metrics, "livepeer_ai_result_downloaded_total", &labels("llm", LLM, None)),
        None
    );
    gw.shutdown().await;
}

/// A streamed LLM answer reports its tokens in its last event: it is scored when it ends,
/// over the whole stream, not at its first byte.
#[tokio::test]
async fn a_streamed_answer_is_scored_at_its_end() {
    let delay = Duration::from_millis(40);
    let orch = sim(delay).await;
    let gw = start(config(&[orch.url()])).await;
    let began = Instant::now();
    let chat = json!({"model": LLM, "stream": true, "max_tokens": 6,
        "messages": [{"role": "user", "content": "a b c d e f"}]});
    let mut resp = post_json(&gw, "/llm", &chat).await;
    assert_eq!(resp.status(), 200);
    let mut events = Vec::new();
    while let Some(chunk) = resp.chunk().await.unwrap() {
        events.extend_from_slice(&chunk);
    }
    let waited = began.elapsed();
    let text = String::from_utf8(events).unwrap();
    let last = text.lines().filter_map(|l| l.strip_prefix("data: ")).next_back().unwrap();
    let last: Value = serde_json::from_str(last).unwrap();
    let tokens = last["usage"]["total_tokens"].as_u64().unwrap();
    let completion = last["usage"]["completion_tokens"].as_u64().unwrap();

    let metrics = metrics_text(&gw).await;
    let family = "livepeer_ai_request_latency_score";
    let score = sample(&metrics, family, &labels("llm", LLM, Some(&orch))).unwrap();
    // The simulator paused `delay` before each token but the first: the stream took at least
    // that, which a score taken at the first byte would not include.
    let least = delay.as_secs_f64() * (completion - 1) as f64 / tokens as f64;
    let most = waited.as_secs_f64() / tokens as f64;
    assert!(score >= least && score <= most, "{score} within {least}..{most}");
    gw.shutdown().await;
}
