//! The published catalogue follows the pool: what two simulated orchestrators offer, warm and
//! cold, at their prices; the LLMs in OpenAI's list shape; an orchestrator that goes away leaves
//! the catalogue within a refresh.

use std::time::Duration;

use livepeer_sim::{Sim, SimConfig, SimModel};
use serde_json::Value;

use crate::support::*;

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

/// Customer prices join the catalogue exactly: in USD and wei per natural unit, a multiple of
/// the orchestrator's price quoted at the dearest orchestrator, unpriced models `null`; the
/// public page shows them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customer_prices_are_quoted_exactly_in_the_catalogue_and_on_the_page() {
    use livepeer_gateway::keys::price::CustomerPrices;
    use livepeer_sim::{ByocKind, SimByoc};
    let a = Sim::start(SimConfig {
        name: "cat-cust-a".into(),
        models: vec![
            SimModel::new("text-to-image", SD).price(10, 1),
            SimModel::new("text-to-image", SDXL).price(10, 1),
            SimModel::new("llm", LLM).price(2, 1),
        ],
        byoc: vec![SimByoc::new("text-reversal", ByocKind::Reverse).price(3, 1)],
        ..SimConfig::default()
    })
    .await
    .unwrap();
    // The dearer LLM orchestrator sets the quote of a multiple.
    let b = sim("cat-cust-b", vec![SimModel::new("llm", LLM).price(3, 1)]).await;
    let table = format!(
        r#"{{"price": [
            {{"pipeline": "text-to-image", "model": "{SD}", "usd": "0.002"}},
            {{"pipeline": "llm", "orchestrator_multiple": "1.5"}},
            {{"pipeline": "byoc", "wei": "1000000"}}
        ]}}"#
    );
    let mut cfg = config(&[a.url(), b.url()]);
    cfg.keys.prices =
        std::sync::Arc::new(CustomerPrices::parse(Some(&table), Some("3000")).unwrap());
    let gw = start(cfg).await;

    let catalog = get(&gw, "/v1/catalog").await;
    let quote =
        |id: &str| entry(&catalog, id).unwrap_or_else(|| panic!("{id}"))["customer_price"].clone();
    let sd = quote(&format!("text-to-image/{SD}"));
    assert_eq!(sd["unit"]["name"], "megapixel", "{sd}");
    assert_eq!(sd["usd_per_unit"], "0.002000000", "{sd}");
    assert_eq!(sd["usd_per_unit_exact"], "1/500", "{sd}");
    // 0.002 USD at 3000 USD/ETH = 2e15/3000 wei.
    assert_eq!(sd["wei_per_unit"], "2000000000000/3", "{sd}");
    // A model of the pipeline without a price of its own, nor a pipeline-wide one: null.
    assert_eq!(quote(&format!("text-to-image/{SDXL}")), Value::Null);
    // 1.5 × 3 wei a token × 10^6 tokens = 4.5e6 wei = 4.5e6 × 3000 / 1e18 USD.
    let llm = quote(&format!("llm/{LLM}"));
    assert_eq!(llm["unit"]["name"], "million_tokens", "{llm}");
    assert_eq!(llm["wei_per_unit"], "4500000", "{llm}");
    assert_eq!(llm["usd_per_unit_exact"], "27/2000000000", "{llm}");
    assert_eq!(llm["orchestrator_multiple"], "3/2", "{llm}");
    let byoc = quote("byoc/text-reversal");
    assert_eq!(
        (byoc["unit"]["name"].as_str(), byoc["wei_per_unit"].as_str()),
        (Some("second"), Some("1000000"))
    );
    assert_eq!(byoc["usd_per_unit_exact"], "3/1000000000", "{byoc}");

    let page =
        reqwest::get(format!("http://{}/", gw.http_addr)).await.unwrap().text().await.unwrap();
    assert!(page.contains("0.002000000 USD per megapixel"), "the page shows the customer price");
    gw.shutdown().await;
}
