//! Customer prices, money in the usage ledger and budgets: a key's budget spent by 64
//! concurrent clients, through one gateway on SQLite and through two gateways sharing a real
//! PostgreSQL; the gateway pays an on-chain simulator with real tickets, charges the customer
//! twice the orchestrator's fee, and no request is served beyond the budget.

use std::sync::Arc;
use std::time::Duration;

use livepeer_gateway::Gateway;
use livepeer_gateway::keys::price::CustomerPrices;
use livepeer_pm::LocalSigner;
use livepeer_sim::{Sim, SimConfig, SimModel};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::keys::{TOKEN, admin, create, keys_config, t2i_as};
use crate::keys_pg::postgres;
use crate::support::*;

const KEY: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
/// Wei per pixel the simulator charges: a 64×64 image costs 4 096 000 000 wei.
const WEI_PER_PIXEL: i64 = 1_000_000;
const FEE_WEI: u64 = 64 * 64 * 1_000_000;
/// Twice the fee at 3000 USD/ETH: 8.192e-9 ETH × 3000 = 0.000024576 USD.
const COST_NUSD: i64 = 24_576;
/// 1000 micro-USD: 40 images (983 040 nano-USD), not 41.
const BUDGET_MICRO_USD: i64 = 1000;
const FITS: i64 = BUDGET_MICRO_USD * 1000 / COST_NUSD;

async fn onchain_sim() -> Sim {
    Sim::start(SimConfig {
        name: "budget".into(),
        eth_address: Some(livepeer_pm::Address::from([7u8; 20])),
        models: vec![SimModel::new("text-to-image", SD).price(WEI_PER_PIXEL, 1).capacity(256)],
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

/// Keys on (SQLite under `dir`, or PostgreSQL at `database_url`), paying with a local key,
/// charging customers twice the orchestrator's fee.
fn priced_config(
    sim: &Sim,
    dir: &std::path::Path,
    database_url: Option<String>,
) -> livepeer_gateway::Config {
    let mut c = keys_config(&[sim.url()], dir, database_url);
    c.signer = Some(Arc::new(LocalSigner::from_hex(KEY).unwrap()));
    c.ai.attempt_timeout = Duration::from_secs(10);
    // 64 clients on a shared machine: job-priced ticket params may take a while to fetch.
    c.discovery_timeout = Duration::from_secs(5);
    let table = r#"{"price": [{"pipeline": "text-to-image", "orchestrator_multiple": "2"}]}"#;
    c.keys.prices = Arc::new(CustomerPrices::parse(Some(table), Some("3000")).unwrap());
    c
}

/// 64 clients, spread over `gateways`, each calling text-to-image with `secret` until it is
/// refused with 402: the images served, and the last 402's body.
async fn spend(gateways: &[&Gateway], secret: &str) -> (i64, Value) {
    let http = reqwest::Client::new();
    let mut clients = Vec::new();
    for i in 0..64 {
        let url = format!("http://{}/text-to-image", gateways[i % gateways.len()].http_addr);
        let (http, secret) = (http.clone(), secret.to_owned());
        clients.push(tokio::spawn(async move {
            let mut served = 0;
            for _ in 0..100 {
                let resp = http
                    .post(&url)
                    .bearer_auth(&secret)
                    .json(&json!({"prompt": "x", "model_id": SD, "width": 64, "height": 64}))
                    .send()
                    .await
                    .unwrap();
                match resp.status() {
                    StatusCode::OK => served += 1,
                    StatusCode::PAYMENT_REQUIRED => return (served, resp.json().await.unwrap()),
                    other => panic!("{other}: {}", resp.text().await.unwrap()),
                }
            }
            panic!("never refused");
        }));
    }
    let mut total = 0;
    let mut last = Value::Null;
    for client in clients {
        let (served, body) = client.await.unwrap();
        total += served;
        last = body;
    }
    (total, last)
}

fn check_refusal(body: &Value, served: i64) {
    let left = BUDGET_MICRO_USD * 1000 - served * COST_NUSD;
    assert_eq!(refused_with(body), left, "{body}");
}

/// The remaining budget (nano-USD) a 402 `body` reports, after checking its shape.
fn refused_with(body: &Value) -> i64 {
    let error = &body["error"];
    assert_eq!(error["type"], "budget_exceeded", "{body}");
    assert_eq!(error["status"], 402, "{body}");
    assert_eq!(error["cost_usd"], "0.000024576", "{body}");
    let remaining = error["remaining_usd"].as_str().unwrap();
    remaining.strip_prefix("0.").unwrap().parse().unwrap()
}

/// The ledger after the spend, read through `gw`: usage, budget and the CSV export agree
/// with the `served` images and the `refused` requests.
async fn check_ledger(gw: &Gateway, id: &str, served: i64, refused: i64, sim: &Sim) {
    let (status, usage) = admin(gw, "GET", &format!("/keys/{id}/usage"), None).await;
    assert_eq!(status, StatusCode::OK, "{usage}");
    assert_eq!(usage["requests"], served + refused, "{usage}");
    assert_eq!(usage["errors"], refused, "{usage}");
    assert_eq!(usage["charged_nusd"], served * COST_NUSD, "{usage}");
    assert_eq!(usage["by_model"][0]["units"], (served + refused) * 4096, "{usage}");
    let budget = &usage["budget"];
    let left = BUDGET_MICRO_USD * 1000 - served * COST_NUSD;
    assert_eq!(budget["remaining_nusd"], left, "{usage}");
    assert_eq!(budget["reserved_usd"], "0.000000000", "every reservation settled: {usage}");
    assert_eq!(budget["budget_usd"], "0.001000000", "{usage}");

    let url = format!("http://{}/keys/{id}/usage.csv?from=0", gw.admin_addr);
    let resp = reqwest::Client::new().get(url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/csv; charset=utf-8");
    assert_eq!(resp.headers()["x-ledger-truncated"], "false");
    let csv = resp.text().await.unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len() as i64, served + refused);
    let ok: Vec<&Vec<&str>> = rows.iter().filter(|r| r[col("outcome")] == "ok").collect();
    assert_eq!(ok.len() as i64, served);
    for row in &ok {
        assert_eq!(row[col("status")], "200");
        assert_eq!(row[col("orchestrator")].trim_end_matches('/'), sim.url().trim_end_matches('/'));
        assert_eq!(row[col("paid_fee_wei")], FEE_WEI.to_string(), "{row:?}");
        assert_eq!(row[col("charged_usd")], "0.000024576");
        assert_eq!(row[col("units")], "4096");
    }
    for row in rows.iter().filter(|r| r[col("outcome")] != "ok") {
        // Refused before any orchestrator was paid.
        assert_eq!((row[col("status")], row[col("outcome")]), ("402", "refused"));
        assert_eq!((row[col("tickets")], row[col("paid_fee_wei")]), ("0", "0"), "{row:?}");
        assert_eq!(row[col("charged_usd")], "0.000000000");
    }
    // Every key's export holds the same rows (there is one key), behind the admin token.
    let url = format!("http://{}/usage.csv?from=0&limit=100000", gw.admin_addr);
    let resp = reqwest::Client::new().get(&url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(resp.text().await.unwrap(), csv);
    let resp = reqwest::Client::new().get(&url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let bad = format!("http://{}/usage.csv?limit=0", gw.admin_addr);
    let resp = reqwest::Client::new().get(&bad).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // The orchestrator was paid for the images served, and for nothing else.
    let fees = sim.payments().fees_debited;
    assert_eq!(fees, livepeer_pm::Ratio::from_u64(FEE_WEI * served as u64));
}

async fn budget_key(gw: &Gateway) -> (String, String) {
    create(gw, json!({"name": "budgeted", "budget_micro_usd": BUDGET_MICRO_USD})).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_spent_by_64_clients_on_sqlite_is_never_exceeded_and_the_ledger_holds_the_money() {
    let sim = onchain_sim().await;
    let dir = tempfile::tempdir().unwrap();
    let gw = start(priced_config(&sim, dir.path(), None)).await;
    let (id, secret) = budget_key(&gw).await;
    let (served, refusal) = spend(&[&gw], &secret).await;
    assert_eq!(served, FITS, "every image the budget pays for, and not one more");
    check_refusal(&refusal, served);
    // The customer sees its own spend and what is left.
    let resp = reqwest::Client::new()
        .get(format!("http://{}/v1/usage", gw.http_addr))
        .bearer_auth(&secret)
        .send()
        .await
        .unwrap();
    let usage: Value = resp.json().await.unwrap();
    assert_eq!(usage["key_id"], id.as_str(), "{usage}");
    assert!(usage["budget"]["remaining_usd"].is_string(), "{usage}");
    // The dashboard's revenue: what was charged, in the recent history's buckets.
    let (_, history) = admin(&gw, "GET", "/history", None).await;
    let revenue: i64 = history["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["revenue_nusd"].as_i64().unwrap())
        .sum();
    assert_eq!(revenue, served * COST_NUSD, "{history}");
    // Shut down: every row and every settlement is written; a restart reads them.
    gw.shutdown().await;
    let gw = start(priced_config(&sim, dir.path(), None)).await;
    check_ledger(&gw, &id, served, 64, &sim).await;
    // Raised, the budget pays for more at once (the cache was emptied by the change).
    let patch = json!({"budget_micro_usd": BUDGET_MICRO_USD + 25});
    let (status, _) = admin(&gw, "PATCH", &format!("/keys/{id}"), Some(patch)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(t2i_as(&gw, Some(&secret), SD).await.status(), StatusCode::OK);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_spent_through_two_gateways_sharing_postgresql_is_never_exceeded() {
    let Some(pg) = postgres().await else { return };
    let sim = onchain_sim().await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = start(priced_config(&sim, dir_a.path(), Some(pg.url()))).await;
    let b = start(priced_config(&sim, dir_b.path(), Some(pg.url()))).await;
    let (id, secret) = budget_key(&a).await;
    let (served, refusal) = spend(&[&a, &b], &secret).await;
    // The issue's bound is one request over per instance; reserve-then-settle gives none,
    // with each instance serving from its lease of the budget.
    assert!(served * COST_NUSD <= BUDGET_MICRO_USD * 1000 + 2 * COST_NUSD, "{served}");
    assert_eq!(served, FITS, "every image the budget pays for, and not one more");
    // A refusal says what was free when it was answered: less than the job's cost (which is
    // why it was refused). It can be more than what is left in the end: the other instance
    // may still have held a fragment of its lease then, and served one more job with it and
    // the fragment this refusal gave back. The ledger below is exact.
    assert!((0..COST_NUSD).contains(&refused_with(&refusal)), "{refusal}");
    a.shutdown().await;
    b.shutdown().await;
    let c = start(priced_config(&sim, dir_a.path(), Some(pg.url()))).await;
    check_ledger(&c, &id, served, 64, &sim).await;
    c.shutdown().await;
    drop(pg);
}
