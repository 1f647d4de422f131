//! Remote signing: one gateway signs for another, and lists orchestrators for it.

use std::sync::Arc;

use livepeer_gateway::Gateway;
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
        models: vec![
            SimModel::new("text-to-image", SD).price(1_000_000, 1),
            SimModel::new("llm", "m"),
        ],
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

    // A keyless gateway, no orchestrators configured: identity and discovery from the signer.
    let mut c = config(&[]);
    c.remote_signer = Some(
        livepeer_gateway::config::RemoteSigner::parse(
            &format!("{signer_url}/"),
            &format!("Authorization:Bearer {API_KEY}"),
        )
        .unwrap(),
    );
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
    // And it pays through the signer: the orchestrator credits tickets from the signer's key.
    for _ in 0..3 {
        let resp = http
            .post(format!("http://{}/text-to-image", client_gw.http_addr))
            .json(&serde_json::json!({"prompt": "x", "model_id": SD, "width": 64, "height": 64}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    }
    let stats = orch.payments();
    assert!(stats.rejections.is_empty(), "{:?}", stats.rejections);
    assert!(stats.tickets_credited >= 1);
    assert!(stats.ev_received.contains_key(&signer_key.address()), "paid by the signer's key");
    client_gw.shutdown().await;
    signer_gw.shutdown().await;
}

#[tokio::test]
async fn the_signer_pays_for_a_keyless_client() {
    use base64::Engine as _;
    use livepeer_gateway::orchestrator::caps::Capabilities;
    use livepeer_proto::{Message, net};
    let b64 = base64::engine::general_purpose::STANDARD;

    let orch = Sim::start(SimConfig {
        eth_address: Some(livepeer_pm::Address::from([8u8; 20])),
        models: vec![SimModel::new("text-to-image", "m").price(1_000_000, 1)],
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let key = LocalSigner::from_hex(KEY).unwrap();
    let mut c = config(&[orch.url()]);
    c.signer = Some(Arc::new(LocalSigner::from_hex(KEY).unwrap()));
    c.serve_signer = Some(API_KEY.to_owned().into());
    let signer_gw = start(c).await;
    let signer_url = format!("http://{}", signer_gw.http_addr);

    // The keyless client asks the orchestrator with the signer's identity, as SDK clients do.
    let caps = Capabilities::ai_job(27, "m", "", "");
    let mut grpc =
        net::orchestrator_client::OrchestratorClient::connect(orch.url().to_owned()).await.unwrap();
    let text = key.address().to_checksum(None);
    let info = grpc
        .get_orchestrator(net::OrchestratorRequest {
            address: key.address().to_vec(),
            sig: key.eth_sign(text.as_bytes()).unwrap().0.to_vec(),
            capabilities: Some((&caps).into()),
            ignore_capacity_check: true,
        })
        .await
        .unwrap()
        .into_inner();
    let orchestrator = b64.encode(info.encode_to_vec());
    let caps_b64 = b64.encode(net::Capabilities::from(&caps).encode_to_vec());
    let http = reqwest::Client::new();
    let ask = |body: serde_json::Value| {
        http.post(format!("{signer_url}/generate-live-payment"))
            .bearer_auth(API_KEY)
            .json(&body)
            .send()
    };
    let use_payment = |answer: serde_json::Value| {
        http.post(format!("{}/text-to-image", orch.url()))
            .header("Livepeer-Payment", answer["payment"].as_str().unwrap().to_owned())
            .header("Livepeer-Segment", answer["segCreds"].as_str().unwrap().to_owned())
            .header("Authorization", "Livepeer-AI-Worker-1.0")
            .json(&serde_json::json!({"prompt": "x", "model_id": "m", "width": 64, "height": 64}))
            .send()
    };

    let first = ask(serde_json::json!({"orchestrator": orchestrator, "inPixels": 4096, "ManifestID": "27_m", "capabilities": caps_b64}))
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    let first: serde_json::Value = first.json().await.unwrap();
    assert_eq!(
        use_payment(first.clone()).await.unwrap().status(),
        200,
        "the orchestrator accepts the signer's payment"
    );
    // The next payment continues from the echoed state: nonces go on, nothing is reused.
    let second = ask(
        serde_json::json!({"orchestrator": orchestrator, "inPixels": 4096, "ManifestID": "27_m",
        "capabilities": caps_b64, "state": first["state"]}),
    )
    .await
    .unwrap();
    assert_eq!(second.status(), 200);
    let second: serde_json::Value = second.json().await.unwrap();
    assert_eq!(use_payment(second.clone()).await.unwrap().status(), 200);
    let stats = orch.payments();
    assert!(stats.rejections.is_empty(), "{:?}", stats.rejections);
    assert!(stats.tickets_credited >= 2);

    // A forged state, a price above the client's ceiling, and no API key are refused.
    let mut forged = second["state"].clone();
    forged["Sig"] = serde_json::Value::String(b64.encode([7u8; 65]));
    let resp = ask(serde_json::json!({"orchestrator": orchestrator, "inPixels": 1, "ManifestID": "27_m", "state": forged})).await.unwrap();
    assert_eq!(resp.status(), 400);
    let resp = ask(
        serde_json::json!({"orchestrator": orchestrator, "inPixels": 1, "maxPrice": {"price": 1}}),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 481);
    let resp = http
        .post(format!("{signer_url}/generate-live-payment"))
        .json(&serde_json::json!({"orchestrator": orchestrator, "inPixels": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    signer_gw.shutdown().await;
}

/// A signer gateway over `orchs`, serving the remote-signer routes.
async fn signer_gateway(orchs: &[&str]) -> Gateway {
    let mut c = config(orchs);
    c.signer = Some(Arc::new(LocalSigner::from_hex(KEY).unwrap()));
    c.serve_signer = Some(API_KEY.to_owned().into());
    start(c).await
}

/// `GET /discover-orchestrators?{query}` with the API key: status and JSON body.
async fn discover(gw: &Gateway, query: &str) -> (u16, serde_json::Value) {
    let resp = reqwest::Client::new()
        .get(format!("http://{}/discover-orchestrators?{query}", gw.http_addr))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

/// As go-livepeer: a `caps` filter that matches nothing is 200 `[]` (the Python SDK's
/// `discover_orchestrators` reads it as "none for that capability"), 503 only when the pool
/// has no orchestrator at all, and empty `caps` values filter nothing.
#[tokio::test]
async fn discovery_filters_that_match_nothing_are_an_empty_list() {
    let orch = Sim::start(SimConfig {
        models: vec![SimModel::new("llm", "m"), SimModel::new("text-to-image", SD)],
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let gw = signer_gateway(&[orch.url()]).await;
    for query in ["caps=upscale/x", "caps=upscale/x&caps=llm/other"] {
        assert_eq!(discover(&gw, query).await, (200, serde_json::json!([])), "{query}");
    }
    let (status, list) = discover(&gw, "caps=llm/m&caps=upscale/x").await;
    assert_eq!((status, list[0]["capabilities"].clone()), (200, serde_json::json!(["llm/m"])));
    for query in ["", "caps="] {
        let (status, list) = discover(&gw, query).await;
        assert_eq!(status, 200, "{query}");
        assert_eq!(list[0]["capabilities"].as_array().map(Vec::len), Some(2), "{query}: {list}");
    }

    let empty = signer_gateway(&[]).await;
    for query in ["", "caps=llm/m"] {
        let (status, body) = discover(&empty, query).await;
        assert_eq!(status, 503, "{query}: {body}");
        assert_eq!(body["error"]["type"], "no_orchestrators");
    }
    gw.shutdown().await;
    empty.shutdown().await;
}
