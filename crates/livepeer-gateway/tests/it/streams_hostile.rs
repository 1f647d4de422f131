//! Streamed LLM answers from orchestrators that misbehave after their `200`, over real
//! sockets: a stream that ends in an error event, and one that never ends. Each is the
//! orchestrator's failure for the LLM job alone, and the client gets a final error event.
//! Also an event stream where none was asked for.

use std::time::Duration;

use livepeer_gateway::Gateway;
use livepeer_gateway::config::Config;
use livepeer_sim::{AiFault, Sim, SimConfig, SimModel};
use serde_json::json;

use crate::support::*;

/// A simulator serving the LLM at `price` wei per token, and text-to-image at `price` wei
/// per pixel.
async fn sim(name: &str, price: i64) -> Sim {
    Sim::start(SimConfig {
        name: name.into(),
        models: vec![
            SimModel::new("llm", LLM).price(price, 1).capacity(8),
            SimModel::new("text-to-image", SD).price(price, 1).capacity(8),
        ],
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

/// `c` with cooldowns longer than any test: an ejection seen is not a probe's result.
fn long_cooldowns(mut c: Config) -> Config {
    c.eject.base = Duration::from_secs(600);
    c.eject.max = Duration::from_secs(600);
    c
}

/// A streamed LLM request on `path`: the orchestrator that served it and the whole text.
async fn stream(gw: &Gateway, path: &str) -> (String, String) {
    let body = json!({"model": LLM, "stream": true, "max_tokens": 4,
                      "messages": [{"role": "user", "content": "one two three four"}]});
    let resp = reqwest::Client::new()
        .post(format!("http://{}{path}", gw.http_addr))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let served = resp.headers()["x-orchestrator-url"].to_str().unwrap().to_owned();
    let text = tokio::time::timeout(Duration::from_secs(30), resp.text()).await.unwrap().unwrap();
    (served, text)
}

/// An orchestrator whose streams end in an error event was counted a success, and as the
/// fastest it drew 29 of 30 streams. Now the error is its failure on the LLM job: it is
/// ejected from that job only, and the next streams go to the one that answers.
#[tokio::test]
async fn a_stream_that_ends_in_an_error_event_is_the_orchestrators_failure() {
    // `bad` is cheaper, so it is chosen first while it is selectable.
    let bad = sim("error-event", 1).await;
    let good = sim("answers", 1000).await;
    bad.set_ai_fault(AiFault::ErrorEvent);
    let gw = start(long_cooldowns(config(&[bad.url(), good.url()]))).await;
    let (served, text) = stream(&gw, "/llm").await;
    assert_eq!(served, bad.url());
    assert!(
        text.trim_end().ends_with("\"runner failed\"}}"),
        "the orchestrator's error last: {text}"
    );
    assert_eq!(job_state(&gw, bad.url(), &format!("llm/{LLM}")).await["state"], "ejected");
    assert_ne!(job_state(&gw, bad.url(), &format!("text-to-image/{SD}")).await["state"], "ejected");
    for _ in 0..3 {
        let (served, text) = stream(&gw, "/llm").await;
        assert_eq!(served, good.url(), "{text}");
        assert!(text.contains("\"finish_reason\":\"stop\""), "{text}");
    }
    gw.shutdown().await;
}

/// An orchestrator that keeps a stream open for ever (a comment every 50 ms, well inside the
/// idle limit) held its lease and the client's connection without end. Now the stream ends at
/// `--ai-stream-max-duration` with a final error event, on both LLM routes, and the
/// orchestrator is penalised for the LLM job.
#[tokio::test]
async fn a_stream_that_never_ends_is_cut_at_the_longest_duration() {
    let endless = sim("endless", 1).await;
    endless.set_ai_fault(AiFault::EndlessStream);
    let good = sim("answers", 1000).await;
    let mut c = long_cooldowns(config(&[endless.url(), good.url()]));
    c.ai.stream_max_duration = Duration::from_millis(600);
    let gw = start(c).await;
    let (served, text) = stream(&gw, "/llm").await;
    assert_eq!(served, endless.url());
    assert!(text.contains(": keepalive"), "the stream ran first: {text}");
    assert!(text.contains("event: error\n"), "{text}");
    assert!(text.contains("longer than the gateway's limit"), "{text}");
    assert_eq!(job_state(&gw, endless.url(), &format!("llm/{LLM}")).await["state"], "ejected");
    eventually(Duration::from_secs(5), "the orchestrator's stream closed", || async {
        endless.ai_in_flight() == 0
    })
    .await;
    gw.shutdown().await;

    // The OpenAI route ends the same way, and still closes with `[DONE]`.
    let mut c = config(&[endless.url()]);
    c.ai.stream_max_duration = Duration::from_millis(600);
    let gw = start(c).await;
    let (_, text) = stream(&gw, "/v1/chat/completions").await;
    assert!(text.contains("longer than the gateway's limit"), "{text}");
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    gw.shutdown().await;
}

/// A text-to-image answer sent as an event stream was relayed as it came: the client got the
/// orchestrator's own result URLs, with none of the checks on results (their number, where
/// they are, their type and size), and the orchestrator was counted a success. Now it is a
/// malformed answer: that orchestrator is ejected from that job only, and the job goes to
/// the next one, whose image the gateway serves.
#[tokio::test]
async fn an_event_stream_where_none_was_asked_for_is_a_malformed_answer() {
    let streams = sim("streams", 1).await;
    let good = sim("answers", 1000).await;
    streams.set_ai_fault(AiFault::AsEventStream);
    let gw = start(long_cooldowns(config(&[streams.url(), good.url()]))).await;
    let resp = reqwest::Client::new()
        .post(format!("http://{}/text-to-image", gw.http_addr))
        .json(&json!({"model_id": SD, "prompt": "a cat"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert_eq!(resp.headers()["x-orchestrator-url"].to_str().unwrap(), good.url());
    let body: serde_json::Value = resp.json().await.unwrap();
    let url = body["images"][0]["url"].as_str().unwrap();
    assert!(url.starts_with(&format!("http://{}/", gw.http_addr)), "served by the gateway: {url}");
    let image = reqwest::get(url).await.unwrap();
    assert_eq!(image.status(), 200);
    assert_eq!(
        job_state(&gw, streams.url(), &format!("text-to-image/{SD}")).await["state"],
        "ejected"
    );
    assert_ne!(job_state(&gw, streams.url(), &format!("llm/{LLM}")).await["state"], "ejected");
    // A stream asked for is still taken from it.
    let (served, text) = stream(&gw, "/llm").await;
    assert_eq!(served, streams.url());
    assert!(text.contains("\"finish_reason\":\"stop\""), "{text}");
    gw.shutdown().await;
}
