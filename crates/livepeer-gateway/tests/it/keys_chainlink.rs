//! Customer prices in wei turned into USD at the rate of a Chainlink ETH/USD feed, read by
//! `eth_call` from a JSON-RPC server over a real socket (a stand-in for an Ethereum node
//! answering the feed's `decimals()` and `latestRoundData()`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::routing::post;
use livepeer_gateway::keys::chainlink::Feed;
use livepeer_gateway::keys::price::CustomerPrices;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::keys::{admin, create, keys_config, t2i_as};
use crate::support::*;

const FEED: &str = "0x5f4eC3Df9cbd43714FE2740f5E3616155c5b8419";

/// A JSON-RPC server whose feed answers 3000.12345678 USD (8 decimals), updated `age` ago.
async fn node(age: Duration) -> SocketAddr {
    let updated = std::time::SystemTime::now() - age;
    let updated = updated.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let word = |n: u128| format!("{n:064x}");
    let round = format!(
        "0x{}{}{}{}{}",
        word(7),
        word(300_012_345_678),
        word(u128::from(updated)),
        word(u128::from(updated)),
        word(7)
    );
    let app = axum::Router::new().route(
        "/",
        post(move |Json(req): Json<Value>| {
            let round = round.clone();
            async move {
                let call = &req["params"][0];
                assert_eq!(call["to"].as_str().unwrap().to_lowercase(), FEED.to_lowercase());
                let result = match call["data"].as_str().unwrap() {
                    "0x313ce567" => format!("0x{}", word(8)),
                    "0xfeaf968c" => round,
                    other => panic!("unexpected call {other}"),
                };
                Json(json!({"jsonrpc": "2.0", "id": req["id"], "result": result}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn config(
    sim: &livepeer_sim::Sim,
    dir: &std::path::Path,
    rpc: SocketAddr,
) -> livepeer_gateway::Config {
    let mut c = keys_config(&[sim.url()], dir, None);
    let url = format!("http://{rpc}/").parse().unwrap();
    let feed = Feed::new(url, FEED.parse().unwrap(), Duration::from_secs(3600));
    // 10^12 wei per megapixel.
    let table = r#"{"price": [{"pipeline": "text-to-image", "wei": "1000000000000"}]}"#;
    let prices = CustomerPrices::parse_with_feed(Some(table), None, Some(Arc::new(feed)));
    c.keys.prices = Arc::new(prices.unwrap());
    c
}

#[tokio::test]
async fn prices_in_wei_are_charged_at_the_feeds_rate_and_refused_when_it_is_stale() {
    let sim = TextSim::new("chainlink").start().await;
    let dir = tempfile::tempdir().unwrap();
    let gw = start(config(&sim, dir.path(), node(Duration::from_secs(60)).await)).await;
    let (id, secret) = create(&gw, json!({"name": "feed", "budget_micro_usd": 1_000_000})).await;
    assert_eq!(t2i_as(&gw, Some(&secret), SD).await.status(), StatusCode::OK);
    gw.shutdown().await;
    let gw = start(keys_config(&[sim.url()], dir.path(), None)).await;
    let (_, usage) = admin(&gw, "GET", &format!("/keys/{id}/usage"), None).await;
    // 64 × 64 pixels = 0.004096 megapixel: 4.096e9 wei × 3000.12345678 USD/ETH = 1.2288506e-5
    // USD, rounded up to 12 289 nano-USD.
    assert_eq!(usage["charged_nusd"], 12_289, "{usage}");
    gw.shutdown().await;

    // A round older than the maximum age is not a rate: the job is refused before any
    // orchestrator is paid, as the gateway's fault.
    let gw = start(config(&sim, dir.path(), node(Duration::from_secs(7200)).await)).await;
    let resp = t2i_as(&gw, Some(&secret), SD).await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "price_unavailable", "{body}");
    gw.shutdown().await;
}
