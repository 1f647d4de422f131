//! Remote signing: one gateway signs for another, and lists orchestrators for it.

use std::sync::Arc;

use livepeer_gateway::orchestrator::JobKey;
use livepeer_pm::LocalSigner;
use livepeer_sim::{Sim, SimConfig, SimModel};

use crate::support::*;

const KEY: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
const API_KEY: &str = "test-api-key-0123456789";

#[tokio::test]
async fn one_gateway_signs_for_another() {
    // An on-chain orchestrator: it checks the signature on every GetOrchestrator.
    let orch = Sim::start(SimConfig {
        eth_address: Some(livepeer_pm::Address::from([9u8; 20])),
        models: vec![SimModel::new("text-to-image", SD), SimModel::new("llm", "m")],
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let signer_key = LocalSigner::from_hex(KEY).unwrap();
    let mut c = config(&[orch.url()]);
    c.signer = Some(Arc::new(LocalSigner::from_hex(KEY).unwrap()));
    c.serve_signer = Some(API_KEY.to_owned().into());
    let signer_gw = start(c).await;
    let signer_url = format!("http://{}", signer_gw.http_addr);

    // The signer's routes want the API key.
    let http = reqwest::Client::new();
    let resp = http
        .post(format!("{signer_url}/sign-orchestrator-info"))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = http
        .get(format!("{signer_url}/discover-orchestrators?caps=llm/m"))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    let list: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(list[0]["address"], orch.url(), "{list}");
    assert_eq!(list[0]["capabilities"], serde_json::json!(["llm/m"]), "filtered by caps");
    let none = http
        .get(format!("{signer_url}/discover-orchestrators?caps=upscale/x"))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), 503);

    // A keyless gateway, no orchestrators configured: identity and discovery from the signer.
    let mut c = config(&[]);
    c.remote_signer = Some((
        format!("{signer_url}/").parse().unwrap(),
        format!("Authorization:Bearer {API_KEY}"),
    ));
    let client_gw = start(c).await;
    let snap = client_gw.state.pool.snapshot();
    assert_eq!(snap.slots.len(), 1, "discovered through the signer");
    let seen = orch.last_request().unwrap();
    assert_eq!(seen.address, signer_key.address().to_vec(), "the signer's address");
    assert_eq!(
        orch_state(&client_gw, orch.url()).await["state"],
        "healthy",
        "its signature was accepted"
    );
    let key = JobKey::ai("text-to-image", SD).unwrap();
    assert!(client_gw.state.pool.select(&key, &[]).is_ok());
    client_gw.shutdown().await;
    signer_gw.shutdown().await;
}
