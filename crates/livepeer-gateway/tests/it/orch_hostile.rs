//! What a hostile orchestrator can make the gateway do through its GetOrchestrator answer
//! (its service URI, its capability lists), over real sockets.

use std::time::Duration;

use livepeer_sim::{Sim, SimConfig, SimModel};
use serde_json::{Value, json};

use crate::support::*;

/// A free port on loopback for the gateway's public API, known before the gateway starts so
/// that an orchestrator can name it.
fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// The batch AI requests of `model` the gateway finished, whatever their outcome (the count of
/// `livepeer_gateway_ai_request_duration_seconds`).
async fn requests_received(gw: &livepeer_gateway::Gateway, model: &str) -> u64 {
    let metrics = metrics_text(gw).await;
    let prefix =
        "livepeer_gateway_ai_request_duration_seconds_count{pipeline=\"text-to-image\",model_name=";
    metrics
        .lines()
        .filter(|l| l.starts_with(prefix) && l.contains(&format!("\"{model}\"")))
        .filter_map(|l| l.rsplit(" ").next()?.parse::<u64>().ok())
        .sum()
}

/// An orchestrator whose service URI is the gateway's own public API, and which advertises
/// room for a million requests, made every request the gateway served select it again and
/// call the gateway: one client request became 494 in 10 s, each holding two connections,
/// until the client gave up. A request from a gateway is now refused (508) before anything is
/// selected or paid, and the orchestrator is penalised for the job.
#[tokio::test]
async fn an_orchestrator_that_names_the_gateway_as_its_service_uri_makes_no_loop() {
    let gw_addr = free_addr();
    let hostile = Sim::start(SimConfig {
        name: "loop".into(),
        models: vec![SimModel::new("text-to-image", SD).price(1, 1).capacity(1_000_000)],
        service_uri: Some(format!("http://{gw_addr}")),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let mut c = config(&[hostile.url()]);
    c.http_addr = gw_addr.parse().unwrap();
    let gw = start(c).await;
    let http = reqwest::Client::new();

    let resp = http
        .post(format!("http://{}/text-to-image", gw.http_addr))
        .json(&json!({"prompt": "a red fox", "model_id": SD}))
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .expect("an answer, not a request that loops until the client gives up");
    assert!(resp.status().is_server_error(), "{}", resp.status());
    let body: Value = resp.json().await.unwrap();
    assert!(body["error"]["type"].is_string(), "{body}");
    assert_eq!(requests_received(&gw, SD).await, 1, "only the client's own request");
    let job = job_state(&gw, hostile.url(), &format!("text-to-image/{SD}")).await;
    assert!(job["consecutive_failures"].as_u64().unwrap() >= 1, "penalised for the job: {job}");
    assert_eq!(hostile.ai_requests(), 0);

    // Any request a gateway sends to an orchestrator carries the mark, and either port
    // refuses it with a JSON error, whatever the path.
    for url in [
        format!("http://{}/text-to-image", gw.http_addr),
        format!("http://{}/live-video-to-video", gw.http_addr),
        format!("http://{}/segment", gw.admin_addr),
    ] {
        let resp = http
            .post(&url)
            .header(livepeer_proto::headers::GATEWAY_HOP, "1")
            .json(&json!({"prompt": "a red fox", "model_id": SD}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 508, "{url}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["type"], "loop_detected", "{url}: {body}");
    }
    assert_eq!(requests_received(&gw, SD).await, 1);
}

/// An orchestrator listing 20,000 models and one with a 1 MiB id (a 1.5 MB answer) had every
/// one indexed: a job key with its own statistics and breaker, an `available` metric series
/// each, every price looked up in a list as long (4 × 10^8 comparisons at every pool rebuild:
/// the gateway took 2.4 s to start instead of 0.3 s), and the 1 MiB id as a metric label.
/// An answer is now at most 1 MiB (`MAX_INFO_BYTES`), and what the gateway keeps of one is
/// bounded: at most 256 models, ids a client can name (256 characters), and the prices of
/// those. Here, 8,000 models and a 100 KiB id, just under a megabyte in all.
#[tokio::test]
async fn an_orchestrator_listing_endless_models_gets_a_bounded_share_of_the_gateway() {
    let mut models: Vec<SimModel> = (0..8_000)
        .map(|i| SimModel::new("text-to-image", &format!("hostile/m{i:05}")).price(1, 1))
        .collect();
    models.push(SimModel::new("llm", &"x".repeat(100 << 10)).price(1, 1));
    let hostile = Sim::start(SimConfig { name: "endless".into(), models, ..SimConfig::default() })
        .await
        .unwrap();
    let honest = TextSim::new("honest").start().await;
    let gw = start(config(&[hostile.url(), honest.url()])).await;

    // The gateway starts once one orchestrator answered: the honest one may come first, and
    // the hostile answer (1.5 MB) takes longer to read on a busy machine.
    eventually(Duration::from_secs(30), "the hostile orchestrator's answer read", || async {
        orch_state(&gw, hostile.url()).await["models"].as_array().is_some_and(|m| !m.is_empty())
    })
    .await;
    let o = orch_state(&gw, hostile.url()).await;
    let listed = o["models"].as_array().map_or(0, Vec::len);
    assert!(listed > 0 && listed <= 256, "{listed} models kept");
    let snap = gw.state.pool.snapshot();
    assert!(snap.jobs.len() <= 256 + 1 + 2 + 1, "{} job keys indexed", snap.jobs.len());
    let prices =
        snap.slots.iter().filter_map(|s| s.info.as_ref()).map(|i| i.capability_prices.len());
    assert!(prices.max().unwrap() <= 256 + 11 + 64, "prices kept of models kept only");
    let metrics = metrics_text(&gw).await;
    let series = metrics
        .lines()
        .filter(|l| l.starts_with("livepeer_gateway_ai_orchestrators_available"))
        .count();
    assert!(series <= 256 + 2, "{series} series of available orchestrators");
    assert!(metrics.lines().all(|l| l.len() < 4096), "no megabyte label");
    let shown = admin_text(&gw, "/orchestrators").await;
    assert!(shown.len() < 256 * 1024, "/orchestrators is {} bytes", shown.len());

    // The honest orchestrator's model is served as before.
    let resp = reqwest::Client::new()
        .post(format!("http://{}/text-to-image", gw.http_addr))
        .json(&json!({"prompt": "a red fox", "model_id": SD}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(honest.ai_requests(), 1);
}

/// A GetOrchestrator answer over `MAX_INFO_BYTES` is refused whole: gRPC's default of 4 MiB
/// let an orchestrator make each refresh and payment renewal decode megabytes.
#[tokio::test]
async fn a_discovery_answer_over_a_megabyte_is_refused() {
    let models = vec![SimModel::new("llm", &"x".repeat(1 << 20)).price(1, 1)];
    let big =
        Sim::start(SimConfig { name: "big".into(), models, ..SimConfig::default() }).await.unwrap();
    let client = livepeer_gateway::orchestrator::OrchClient::new(
        livepeer_gateway::orchestrator::Timeouts {
            connect: Duration::from_secs(5),
            call: Duration::from_secs(5),
        },
        Default::default(),
        None,
    );
    let err = client.get_orchestrator(&big.url().parse().unwrap(), None, false).await.unwrap_err();
    assert!(err.to_string().contains("message length too large"), "{err}");
}
