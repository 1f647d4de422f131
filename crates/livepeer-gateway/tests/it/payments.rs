//! Paid AI requests: the gateway pays on-chain simulators with real tickets, which check them.

use std::sync::Arc;
use std::time::Duration;

use livepeer_gateway::Gateway;
use livepeer_pm::{LocalSigner, Ratio};
use livepeer_sim::{Sim, SimConfig, SimModel};
use serde_json::json;

use crate::support::*;

const KEY: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";

async fn onchain_sim(n: u8, price: i64) -> Sim {
    let mut addr = [0u8; 20];
    addr[19] = n;
    Sim::start(SimConfig {
        name: format!("onchain-{n}"),
        eth_address: Some(livepeer_pm::Address::from(addr)),
        models: vec![SimModel::new("text-to-image", SD).price(price, 1).capacity(64)],
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

async fn paying_gateway(sims: &[&Sim]) -> (Gateway, LocalSigner) {
    let urls: Vec<&str> = sims.iter().map(|s| s.url()).collect();
    let mut c = config(&urls);
    c.signer = Some(Arc::new(LocalSigner::from_hex(KEY).unwrap()));
    c.ai.attempt_timeout = Duration::from_secs(5);
    (start(c).await, LocalSigner::from_hex(KEY).unwrap())
}

async fn t2i(http: &reqwest::Client, gw: &Gateway) -> reqwest::Response {
    http.post(format!("http://{}/text-to-image", gw.http_addr))
        .json(&json!({"prompt": "x", "model_id": SD, "width": 64, "height": 64}))
        .send()
        .await
        .unwrap()
}

/// Checks every simulator: nothing refused, EV received covers the fees charged, and the
/// excess stays below `slack` tickets' EV plus one request's fee. Returns the tickets credited.
fn check_books(sims: &[Sim], signer: &LocalSigner, slack: u64) -> u64 {
    let fee = Ratio::from_u64(64 * 64 * 1_000_000);
    let ticket_ev = Ratio::from_u64(8_000_000_000);
    let mut tickets = 0;
    for sim in sims {
        let stats = sim.payments();
        assert!(
            stats.rejections.is_empty(),
            "no payment refused (no nonce reuse): {:?}",
            stats.rejections
        );
        let ev = stats.ev_received.get(&signer.address()).cloned().unwrap_or_default();
        assert!(
            ev >= stats.fees_debited,
            "{}: EV {ev} covers fees {}",
            sim.url(),
            stats.fees_debited
        );
        let excess = ev.checked_sub(&stats.fees_debited).unwrap();
        let bound = ticket_ev.checked_mul_u64(slack).unwrap().checked_add(&fee).unwrap();
        assert!(
            excess < bound,
            "{}: excess {} ≥ {} ticket EV(s) plus one fee",
            sim.url(),
            excess.floor(),
            slack
        );
        assert!(stats.fees_debited > Ratio::default(), "{} served paid work", sim.url());
        tickets += stats.tickets_credited;
    }
    tickets
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_paid_requests_are_covered_within_one_ticket() {
    // 64×64 pixels at 1,000,000 wei each: a fee of about half a ticket's EV (8e9 wei), so
    // roughly every other request carries a ticket.
    let sims = [
        onchain_sim(1, 1_000_000).await,
        onchain_sim(2, 1_000_000).await,
        onchain_sim(3, 1_000_000).await,
    ];
    let (gw, signer) = paying_gateway(&[&sims[0], &sims[1], &sims[2]]).await;
    let http = reqwest::Client::new();
    for _ in 0..1000 {
        let resp = t2i(&http, &gw).await;
        assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    }
    let tickets = check_books(&sims, &signer, 1);
    // Operators see the sender and one payment session per orchestrator.
    let (_, status) = admin_get(&gw, "/status").await;
    assert_eq!(status["payments"]["sender"], signer.address().to_checksum(None));
    let sessions = status["payments"]["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 3, "{status}");
    assert!(sessions.iter().all(|s| s["nonces_used"].as_u64().unwrap() > 0));
    assert!((450..=560).contains(&tickets), "about one ticket per two requests: {tickets}");
    let metrics = metrics_text(&gw).await;
    assert!(metrics.contains("livepeer_tickets_sent{"), "{metrics}");
    assert!(metrics.contains("livepeer_ticket_value_sent{"), "{metrics}");
    assert!(metrics.contains("livepeer_gateway_fees_total{"), "{metrics}");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_paid_requests_never_reuse_a_nonce() {
    let sims = [onchain_sim(1, 1_000_000).await, onchain_sim(2, 1_000_000).await];
    let (gw, signer) = paying_gateway(&[&sims[0], &sims[1]]).await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (http, gw_addr) = (reqwest::Client::new(), gw.http_addr);
        tasks.spawn(async move {
            for _ in 0..40 {
                let resp = http
                    .post(format!("http://{gw_addr}/text-to-image"))
                    .json(&json!({"prompt": "x", "model_id": SD, "width": 64, "height": 64}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    // Up to one ticket per concurrent request may be in excess at the end.
    check_books(&sims, &signer, 16);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_refused_payment_renews_the_session_or_fails_over() {
    // `a` is cheaper, so selection tries it first.
    let a = onchain_sim(1, 1_000_000).await;
    let b = onchain_sim(2, 9_000_000).await;
    let (gw, _signer) = paying_gateway(&[&a, &b]).await;
    let http = reqwest::Client::new();
    let resp = t2i(&http, &gw).await;
    assert_eq!(resp.headers()["x-orchestrator-url"], a.url());
    // `a`'s ticket params expire: it refuses the gateway's real tickets once, the gateway
    // fetches fresh params and pays again on `a`, as go-livepeer retries expired params.
    a.advance_blocks(100);
    let resp = t2i(&http, &gw).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-orchestrator-url"], a.url(), "same orchestrator, fresh params");
    assert_eq!(
        a.payments().rejections.values().sum::<u64>(),
        1,
        "a refused the stale payment once"
    );
    assert_eq!(orch_state(&gw, a.url()).await["state"], "healthy", "an expiry is not a failure");
    // An orchestrator that keeps refusing the payment: the gateway fails over to `b` and the
    // refusal is counted against `a`.
    a.set_ai_mode(livepeer_sim::AiMode::Status(400, "invalid ticket signature".into()));
    let resp = t2i(&http, &gw).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-orchestrator-url"], b.url(), "failed over");
    let metrics = metrics_text(&gw).await;
    let line = metrics
        .lines()
        .find(|l| l.starts_with("livepeer_ai_request_errors{") && l.contains(a.url()))
        .unwrap_or_default();
    assert!(!line.is_empty(), "the refusal is reported: {metrics}");
    gw.shutdown().await;
}

#[tokio::test]
async fn a_free_orchestrator_gets_sender_and_price_only() {
    let free = onchain_sim(7, 0).await;
    let (gw, signer) = paying_gateway(&[&free]).await;
    let resp = t2i(&reqwest::Client::new(), &gw).await;
    assert_eq!(resp.status(), 200);
    let seen = free.last_ai_request().unwrap();
    let payment = seen.payment.expect("a Livepeer-Payment protobuf");
    assert_eq!(payment.sender, signer.address().to_vec());
    assert_eq!(payment.expected_price.unwrap().price_per_unit, 0);
    assert!(payment.ticket_params.is_none() && payment.ticket_sender_params.is_empty());
    assert_eq!(free.payments().tickets_received, 0);
    gw.shutdown().await;
}

#[tokio::test]
async fn expired_ticket_params_are_never_signed() {
    let sim = onchain_sim(5, 1_000_000).await; // its params expire at block 1040
    let (gw, _signer) = paying_gateway(&[&sim]).await;
    let payer = gw.state.payer.clone().unwrap();
    let http = reqwest::Client::new();
    payer.set_block(1_000);
    assert_eq!(t2i(&http, &gw).await.status(), 200);
    // The chain moved past the params' expiration: the gateway fetches fresh params, and when
    // even those are expired (the orchestrator's chain lags) it refuses to sign.
    payer.set_block(5_000);
    let resp = t2i(&http, &gw).await;
    assert_eq!(resp.status(), 503);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("TicketParams expired"), "{body}");
    let before = sim.payments().tickets_received;
    // The orchestrator catches up: fresh params work again.
    sim.advance_blocks(4_500);
    assert_eq!(t2i(&http, &gw).await.status(), 200);
    assert!(sim.payments().tickets_received >= before);
    assert!(sim.payments().rejections.is_empty(), "{:?}", sim.payments().rejections);
    gw.shutdown().await;
}
