//! The published catalogue follows the pool: what two simulated orchestrators offer, warm and
//! cold, at their prices; the LLMs in OpenAI's list shape; an orchestrator that goes away leaves
//! the catalogue within a refresh.

use std::time::Duration;

use livepeer_sim::{Sim, SimConfig, SimModel};
use serde_json::Value;

use crate::support::*;

const LLM: &str = "meta-llama/Meta-Llama-3.1-8B-Instruct";

async fn sim(name: &str, models: Vec<SimModel>) -> Sim {
    Sim::start(SimConfig { name: name.into(), models, ..SimConfig::default() }).await.unwrap()
}

async fn get(gw: &livepeer_gateway::Gateway, path: &str) -> Value {
    let resp = reqwest::get(format!("http://{}{path}", gw.http_addr)).await.unwrap();
    assert_eq!(resp.status(), 200, "{path}");
    resp.json().await.unwrap()
}

fn entry<'a>(catalog: &'a Value, id: &str) -> Option<&'a Value> {
    catalog["data"].as_array().unwrap().iter().find(|e| e["id"] == id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalogue_and_the_model_list_follow_the_pool() {
    let a = sim(
        "cat-a",
        vec![
            SimModel::new("llm", LLM).price(3, 1).capacity(4),
            SimModel::new("text-to-image", SD).price(10, 1).capacity(2),
        ],
    )
    .await;
    let b = sim("cat-b", vec![SimModel::new("text-to-image", SD).price(7, 2).warm(false)]).await;
    let gw = start(config(&[a.url(), b.url()])).await;

    let catalog = get(&gw, "/v1/catalog").await;
    let t2i = entry(&catalog, &format!("text-to-image/{SD}")).expect("text-to-image listed");
    assert_eq!(t2i["pipeline"], "text-to-image");
    assert_eq!(t2i["model"], SD);
    assert_eq!(t2i["orchestrators"]["warm"], 1, "{t2i}");
    assert_eq!(t2i["orchestrators"]["cold"], 1, "{t2i}");
    // Exact prices: 7/2 wei is cheaper than 10/1.
    assert_eq!(t2i["network_price"]["min_wei_per_unit"], "7/2", "{t2i}");
    assert_eq!(t2i["network_price"]["max_wei_per_unit"], "10/1", "{t2i}");
    let llm = entry(&catalog, &format!("llm/{LLM}")).expect("the LLM listed");
    assert_eq!(llm["capacity"], 4, "{llm}");

    let models = get(&gw, "/v1/models").await;
    assert_eq!(models["object"], "list");
    let ids: Vec<&str> =
        models["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [LLM], "only the LLMs, in OpenAI's shape: {models}");
    assert_eq!(models["data"][0]["object"], "model");

    // The LLM's only orchestrator goes away: gone from both lists after a refresh.
    a.stop();
    reqwest::Client::new()
        .post(format!("http://{}/orchestrators/refresh", gw.admin_addr))
        .send()
        .await
        .unwrap();
    eventually(Duration::from_secs(20), "the LLM leaves the catalogue", || async {
        entry(&get(&gw, "/v1/catalog").await, &format!("llm/{LLM}")).is_none()
    })
    .await;
    let models = get(&gw, "/v1/models").await;
    assert_eq!(models["data"].as_array().unwrap().len(), 0, "{models}");
    let catalog = get(&gw, "/v1/catalog").await;
    let t2i = entry(&catalog, &format!("text-to-image/{SD}")).expect("still offered, cold");
    assert_eq!(
        (t2i["orchestrators"]["warm"].as_u64(), t2i["orchestrators"]["cold"].as_u64()),
        (Some(0), Some(1))
    );
    gw.shutdown().await;
}

/// A text-to-image request for `model`; its status.
async fn t2i(gw: &livepeer_gateway::Gateway, model: &str) -> u16 {
    let body = serde_json::json!({ "prompt": "a lighthouse", "model_id": model });
    let url = format!("http://{}/text-to-image", gw.http_addr);
    reqwest::Client::new().post(url).json(&body).send().await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalogue_has_latency_cold_models_time_prices_byoc_names_and_price_changes() {
    use livepeer_sim::{ByocKind, SimByoc};
    let a_models = |sd_price: i64| {
        vec![
            SimModel::new("text-to-image", SD).price(sd_price, 1).capacity(2),
            SimModel::new("live-video-to-video", "noop").price(1, 1000),
        ]
    };
    let a = sim("cat-lat", a_models(5)).await;
    let a_addr = a.addr();
    let b = sim("cat-cold", vec![SimModel::new("text-to-image", SDXL).warm(false)]).await;
    let c = Sim::start(SimConfig {
        name: "cat-byoc".into(),
        byoc: vec![SimByoc::new("text-reversal", ByocKind::Reverse).price(3, 1).capacity(4)],
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let gw = start(config(&[a.url(), b.url(), c.url()])).await;
    for _ in 0..5 {
        assert_eq!(t2i(&gw, SD).await, 200);
    }
    let catalog = get(&gw, "/v1/catalog").await;
    // Measured latency over the recent window: the five requests just made.
    let sd = entry(&catalog, &format!("text-to-image/{SD}")).expect("sd listed");
    assert_eq!(sd["latency"]["samples"], 5, "{sd}");
    assert!(sd["latency"]["p50_ms"].as_u64() <= sd["latency"]["p95_ms"].as_u64(), "{sd}");
    assert_eq!(sd["availability"], "warm");
    assert_eq!(sd["modalities"]["output"], serde_json::json!(["image"]));
    // A model only cold is marked so, and has no latency yet.
    let sdxl = entry(&catalog, &format!("text-to-image/{SDXL}")).expect("sdxl listed");
    assert_eq!(sdxl["availability"], "cold", "{sdxl}");
    assert_eq!(sdxl["latency"], Value::Null);
    // Live video by time: 1/1000 wei a pixel at 1280×720×30 pixels a second.
    let live = entry(&catalog, "live-video-to-video/noop").expect("live listed");
    assert_eq!(live["network_price"]["per_second"]["min_wei"], "27648", "{live}");
    assert_eq!(live["network_price"]["per_minute"]["min_wei"], "1658880", "{live}");
    // BYOC capabilities by name, priced per second.
    let byoc = entry(&catalog, "byoc/text-reversal").expect("the BYOC capability listed");
    assert_eq!(
        (byoc["pipeline"].as_str(), byoc["model"].as_str()),
        (Some("byoc"), Some("text-reversal"))
    );
    assert_eq!(byoc["network_price"]["per_second"]["min_wei"], "3", "{byoc}");
    assert_eq!(byoc["network_price"]["per_minute"]["max_wei"], "180", "{byoc}");
    assert_eq!(byoc["customer_price"], Value::Null);
    // A BYOC job's latency joins its entry; a job nobody can serve joins the failed requests.
    let byoc_job = |capability: &str| {
        let job = serde_json::json!({
            "request": "{}", "parameters": "{}", "capability": capability, "timeout_seconds": 30,
        });
        let header =
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, job.to_string());
        reqwest::Client::new()
            .post(format!("http://{}/process/request/reverse", gw.http_addr))
            .header("Livepeer", header)
            .json(&serde_json::json!({ "text": "hello" }))
            .send()
    };
    assert_eq!(byoc_job("text-reversal").await.unwrap().status(), 200);
    let byoc = entry(&get(&gw, "/v1/catalog").await, "byoc/text-reversal").cloned().unwrap();
    assert_eq!(byoc["latency"]["samples"], 1, "{byoc}");
    c.set_byoc_fault(livepeer_sim::ByocFault::Status500);
    assert_ne!(byoc_job("text-reversal").await.unwrap().status(), 200);
    let (_, failed) = admin_get(&gw, "/requests/failed").await;
    let last = &failed["failures"][0];
    assert_eq!(
        (last["kind"].as_str(), last["model"].as_str()),
        (Some("byoc"), Some("text-reversal")),
        "{failed}"
    );
    let attempt = &last["attempts"][0];
    assert!(attempt["orchestrator"].as_str().unwrap().starts_with(c.url()), "{failed}");
    assert!(attempt["error"].is_string(), "{failed}");

    // A price change shows after a refresh: the orchestrator comes back dearer.
    a.stop();
    // Its port is free once the stopped simulator's listener is gone: retried until then.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let a2 = loop {
        let config = SimConfig {
            name: "cat-lat".into(),
            bind: a_addr,
            models: a_models(9),
            ..SimConfig::default()
        };
        match Sim::start(config).await {
            Ok(sim) => break sim,
            Err(e) => assert!(tokio::time::Instant::now() < deadline, "{a_addr} stays taken: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let refresh = format!("http://{}/orchestrators/refresh", gw.admin_addr);
    eventually(Duration::from_secs(20), "the new price in the catalogue", || async {
        reqwest::Client::new().post(&refresh).send().await.unwrap();
        let catalog = get(&gw, "/v1/catalog").await;
        entry(&catalog, &format!("text-to-image/{SD}"))
            .is_some_and(|e| e["network_price"]["min_wei_per_unit"] == "9/1")
    })
    .await;
    drop(a2);
    gw.shutdown().await;
}
