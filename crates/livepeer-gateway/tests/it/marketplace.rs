//! Marketplace publishing: the catalogue is posted to `--marketplace-webhook-url` when it
//! changes (an orchestrator gone) and at least every `--marketplace-interval`, signed with the
//! gateway's key so that the receiver recovers the gateway's address from it.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::HeaderMap;
use livepeer_gateway::config::MarketplaceConfig;
use livepeer_pm::LocalSigner;
use livepeer_sim::{Sim, SimConfig, SimModel};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::support::*;

/// Hardhat's first development key: a test key, never a real one.
const KEY: &str = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";

/// One publication as received.
struct Received {
    headers: HeaderMap,
    body: Bytes,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    fn models(&self) -> Vec<String> {
        let v = self.json();
        v["data"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect()
    }
}

/// A webhook on a real socket; every POST it gets goes into the channel.
async fn receiver() -> (url::Url, mpsc::Receiver<Received>) {
    let (tx, rx) = mpsc::channel(64);
    let app = axum::Router::new().route(
        "/catalog",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(Received { headers, body }).await;
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/catalog").parse().unwrap(), rx)
}

async fn next(rx: &mut mpsc::Receiver<Received>, what: &str) -> Received {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for: {what}"))
        .unwrap()
}

async fn sim(name: &str, model: &str) -> Sim {
    let models = vec![SimModel::new("text-to-image", model)];
    Sim::start(SimConfig { name: name.into(), models, ..SimConfig::default() }).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalogue_is_published_signed_on_change() {
    let (url, mut rx) = receiver().await;
    let a = sim("market-a", SD).await;
    let b = sim("market-b", SDXL).await;
    let mut config = config(&[a.url(), b.url()]);
    let signer = Arc::new(LocalSigner::from_hex(KEY).unwrap());
    let address = signer.address();
    config.signer = Some(signer);
    // An hour: any publication after the first within the test is the change's.
    config.marketplace = Some(MarketplaceConfig { url, interval: Duration::from_secs(3600) });
    let gw = start(config).await;

    let first = next(&mut rx, "the first publication").await;
    let models = first.models();
    assert!(models.contains(&format!("text-to-image/{SD}")), "{models:?}");
    assert!(models.contains(&format!("text-to-image/{SDXL}")), "{models:?}");
    // The signature recovers the gateway's address, over the exact body.
    let sig = first.headers["x-livepeer-signature"].to_str().unwrap();
    let sig = hex::decode(sig.strip_prefix("0x").unwrap()).unwrap();
    let signed_by = livepeer_pm::recover_eth_signer(&first.body, &sig).unwrap();
    assert_eq!(signed_by, address);
    let named = first.headers["x-livepeer-gateway"].to_str().unwrap();
    assert_eq!(named, address.to_checksum(None));
    assert_eq!(first.json()["gateway"], address.to_checksum(None));
    let mut tampered = first.body.to_vec();
    tampered[10] ^= 1;
    let other = livepeer_pm::recover_eth_signer(&tampered, &sig);
    assert!(other.map_or(true, |a| a != address), "a changed body does not verify");

    // An orchestrator goes away: a new catalogue is published without its model.
    a.stop();
    let refresh = format!("http://{}/orchestrators/refresh", gw.admin_addr);
    reqwest::Client::new().post(refresh).send().await.unwrap();
    let second = next(&mut rx, "the publication of the change").await;
    let models = second.models();
    assert!(!models.contains(&format!("text-to-image/{SD}")), "{models:?}");
    assert!(models.contains(&format!("text-to-image/{SDXL}")), "{models:?}");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_catalogue_is_published_every_interval_unsigned_without_a_key() {
    let (url, mut rx) = receiver().await;
    let a = sim("market-c", SD).await;
    let mut config = config(&[a.url()]);
    config.marketplace = Some(MarketplaceConfig { url, interval: Duration::from_secs(1) });
    let gw = start(config).await;
    let first = next(&mut rx, "the first publication").await;
    let second = next(&mut rx, "the interval's publication").await;
    assert_eq!(first.models(), second.models());
    assert!(second.json()["published_at_ms"].as_i64() > first.json()["published_at_ms"].as_i64());
    assert!(second.headers.get("x-livepeer-signature").is_none(), "no key, no signature");
    assert_eq!(second.json()["gateway"], Value::Null);
    gw.shutdown().await;
}
