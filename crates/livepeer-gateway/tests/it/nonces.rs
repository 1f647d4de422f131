//! An orchestrator accepts at most 600 distinct sender nonces per set of ticket params
//! (go-livepeer `maxSenderNonces`, PAYMENTS.md §3.5) and refuses every later ticket with
//! `invalid ticket senderNonce: too many values`. The gateway must fetch fresh params before a
//! payment would carry the 601st nonce, however many tickets each payment holds, so that a
//! long run of paid requests is never refused; and the credit it books must stay exactly the
//! orchestrator's balance across the rotation. Real gateway, real on-chain simulator, real
//! sockets.

use std::sync::Arc;
use std::time::Duration;

use livepeer_pm::LocalSigner;
use livepeer_sim::{Sim, SimConfig, SimModel};
use serde_json::json;

use crate::support::*;

const KEY: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";

/// Ticket EV of the simulator, wei: small, so that one request needs about 210 tickets.
const EV: u128 = 10_000_000;

/// An on-chain simulator charging `per_unit` wei per 4,096 pixels (one 64×64 image), with the
/// small ticket EV.
async fn sim(per_unit: i64) -> Sim {
    Sim::start(SimConfig {
        name: "nonces".into(),
        eth_address: Some(livepeer_pm::Address::repeat_byte(0x42)),
        models: vec![SimModel::new("text-to-image", SD).price(per_unit, 4096).capacity(4)],
        ticket_ev: EV,
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

fn paying(sim: &Sim) -> livepeer_gateway::config::Config {
    let mut c = config(&[sim.url()]);
    c.signer = Some(Arc::new(LocalSigner::from_hex(KEY).unwrap()));
    // Each attempt signs and sends some 210 tickets, which the simulator verifies one by one:
    // seconds in a debug build on a busy 2-core machine (5 s was once not enough in CI). The
    // test is about nonces, not time.
    c.ai.attempt_timeout = Duration::from_secs(30);
    c.ai.request_timeout = Duration::from_secs(90);
    c
}

async fn t2i(gw: &livepeer_gateway::Gateway) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("http://{}/text-to-image", gw.http_addr))
        .json(&json!({"prompt": "x", "model_id": SD, "width": 64, "height": 64}))
        .send()
        .await
        .unwrap()
}

/// Each 64×64 request costs 2.095e9 wei = 209.5 tickets: three payments on one set of params
/// would reach nonce 629, past the orchestrator's 600 while the first two stay below 500.
#[tokio::test]
async fn many_tickets_per_payment_never_pass_600_nonces_per_params() {
    let sim = sim(2_095_000_000).await;
    let gw = start(paying(&sim)).await;
    let requests = 8;
    for i in 0..requests {
        let resp = t2i(&gw).await;
        let status = resp.status();
        assert_eq!(status, 200, "request {i}: {}", resp.text().await.unwrap());
    }
    let stats = sim.payments();
    assert!(stats.rejections.is_empty(), "payments refused: {:?}", stats.rejections);
    // ceil(8 × 209.5) tickets were needed, all credited: more than 600, so params rotated.
    assert_eq!(stats.tickets_credited, 1676, "{stats:?}");
    assert_eq!(stats.payments, requests, "one payment per request, none retried");
    let (_, status) = admin_get(&gw, "/status").await;
    let sessions = status["payments"]["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1, "{status}");
    let used = sessions[0]["nonces_used"].as_u64().unwrap();
    // 1,676 nonces at most 600 per set of params: at least three sets were fetched.
    assert!(used <= 600, "nonces on the current params: {used}");
    // Exact money: the credit the gateway books is the orchestrator's balance for it.
    let sender = LocalSigner::from_hex(KEY).unwrap().address();
    let held: Vec<_> =
        stats.balances.iter().filter(|((s, _), _)| *s == sender).map(|(_, b)| *b).collect();
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(sessions[0]["credit_wei"].as_str().unwrap(), held[0].to_string());
}

/// A fee of 700 tickets cannot be paid with one set of params at all: the gateway refuses it
/// before signing instead of sending a payment the orchestrator would refuse.
#[tokio::test]
async fn a_payment_of_more_than_600_tickets_is_not_sent() {
    let sim = sim(7_000_000_000).await;
    let gw = start(paying(&sim)).await;
    let resp = t2i(&gw).await;
    assert_ne!(resp.status(), 200);
    let stats = sim.payments();
    assert!(stats.rejections.is_empty(), "payments refused: {:?}", stats.rejections);
    assert_eq!((stats.payments, stats.tickets_received), (0, 0), "{stats:?}");
}
