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
