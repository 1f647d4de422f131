//! What a paid attempt leaves in the gateway's books when the orchestrator delivered but the
//! gateway could not give the client the result: its own result store was full, or the
//! orchestrator's result URL could not be used. The orchestrator debited its fee before it
//! answered 2xx, so the gateway must book the fee as paid; the credit the gateway's own key
//! believes it holds must stay exactly what the orchestrator holds, or later requests underpay
//! and the orchestrator answers `Insufficient balance`. Real gateway, real on-chain simulators
//! that check every ticket and keep balances, real sockets.

use std::sync::Arc;
use std::time::Duration;

use livepeer_gateway::Gateway;
use livepeer_gateway::config::Config;
use livepeer_pm::LocalSigner;
use livepeer_sim::{AiMode, Sim, SimConfig, SimModel};
use serde_json::{Value, json};

use crate::support::*;

const KEY: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";

/// A result small enough for the tiny store, and one that cannot fit in it.
const SMALL: &str = "{sim}/blob/100";
const HUGE: &str = "{sim}/blob/5000";

/// An on-chain text-to-image orchestrator whose 64×64 fee is `num` quarters of the
/// simulator's ticket EV (8e9 wei). With a quarter, the gateway's credit often covers a
/// request without a new ticket, which is when a wrong booking shows at once.
async fn onchain_sim(n: u8, num: i64) -> Sim {
    let mut addr = [0u8; 20];
    addr[19] = n;
    Sim::start(SimConfig {
        name: format!("onchain-{n}"),
        eth_address: Some(livepeer_pm::Address::from(addr)),
        // 1,953,125 / 4 wei per pixel × 4,096 pixels = 2e9 wei = a quarter of the ticket EV.
        models: vec![SimModel::new("text-to-image", SD).price(1_953_125 * num, 4).capacity(64)],
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

fn paying_config(sims: &[&Sim]) -> Config {
    let urls: Vec<&str> = sims.iter().map(|s| s.url()).collect();
    let mut c = config(&urls);
    c.signer = Some(Arc::new(LocalSigner::from_hex(KEY).unwrap()));
    c.ai.attempt_timeout = Duration::from_secs(5);
    c.ai.request_timeout = Duration::from_secs(20);
    c
}

async fn t2i(gw: &Gateway) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("http://{}/text-to-image", gw.http_addr))
        .json(&json!({"prompt": "x", "model_id": SD, "width": 64, "height": 64}))
        .send()
        .await
        .unwrap()
}

async fn expect_ok(gw: &Gateway, sim: &Sim) {
    let resp = t2i(gw).await;
    let status = resp.status();
    let orch = resp.headers().get("x-orchestrator-url").cloned();
    assert_eq!(status, 200, "{}", resp.text().await.unwrap());
    assert_eq!(orch.unwrap(), sim.url());
}

/// Asserts the credit the gateway books on `sim` is exactly the balance `sim` keeps for it,
/// and that `sim` refused no payment.
async fn assert_books_agree(gw: &Gateway, sim: &Sim, when: &str) {
    let sender = LocalSigner::from_hex(KEY).unwrap().address();
    let stats = sim.payments();
    assert!(stats.rejections.is_empty(), "{when}: payments refused: {:?}", stats.rejections);
    let held: Vec<_> =
        stats.balances.iter().filter(|((s, _), _)| *s == sender).map(|(_, b)| *b).collect();
    assert_eq!(held.len(), 1, "{when}: one balance at the orchestrator: {held:?}");
    let (_, status) = admin_get(gw, "/status").await;
    let sessions = status["payments"]["sessions"].as_array().unwrap();
    let session = sessions
        .iter()
        .find(|s| s["orchestrator"].as_str().unwrap().trim_end_matches('/') == sim.url())
        .unwrap_or_else(|| panic!("{when}: no session for {}: {status}", sim.url()));
    assert_eq!(
        session["credit_wei"].as_str().unwrap(),
        held[0].to_string(),
        "{when}: the gateway's credit is the orchestrator's balance"
    );
}

/// The store is full when the orchestrator delivers: the client gets the gateway's own 503
/// (`result_store_full`, retry after a second), the orchestrator is neither penalised nor
/// replaced by another one (which would be paid for a result the gateway could again not
/// keep), and the fee it debited is booked as paid, so every later request pays exactly
/// enough and succeeds.
#[tokio::test]
async fn a_result_the_full_store_cannot_keep_is_booked_as_paid_and_not_failed_over() {
    let orch = onchain_sim(1, 1).await;
    // Dearer, so selected only if the gateway failed over.
    let other = onchain_sim(2, 8).await;
    let mut c = paying_config(&[&orch, &other]);
    c.ai.result_store_bytes = 1000;
    let gw = start(c).await;
    orch.set_ai_mode(AiMode::ResultUrls(vec![SMALL.into()]));
    for i in 0..2 {
        expect_ok(&gw, &orch).await;
        assert_books_agree(&gw, &orch, &format!("success {i}")).await;
    }
    orch.set_ai_mode(AiMode::ResultUrls(vec![HUGE.into()]));
    for i in 0..4 {
        let before = orch.ai_requests();
        let resp = t2i(&gw).await;
        assert_eq!(resp.status(), 503);
        assert_books_agree(&gw, &orch, &format!("store full {i}")).await;
        assert_eq!(resp.headers()["retry-after"], "1");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["type"], "result_store_full", "{body}");
        assert_eq!(orch.ai_requests(), before + 1, "one attempt, on the same orchestrator");
        assert_eq!(other.ai_requests(), 0, "no failover");
        assert_eq!(orch_state(&gw, orch.url()).await["state"], "healthy", "not penalised");
    }
    orch.set_ai_mode(AiMode::ResultUrls(vec![SMALL.into()]));
    for i in 0..6 {
        expect_ok(&gw, &orch).await;
        assert_books_agree(&gw, &orch, &format!("success after {i}")).await;
    }
    let metrics = metrics_text(&gw).await;
    let errors = metrics
        .lines()
        .find(|l| l.starts_with("livepeer_ai_request_errors{") && l.contains("results_full"));
    assert!(errors.is_some(), "the failure is counted as results_full: {metrics}");
    gw.shutdown().await;
}

/// A result URL the gateway refuses, or a 2xx answer whose body breaks off, is the
/// orchestrator's fault (502, ejected, as before), but it did the job and debited its fee:
/// that is booked as paid too, so once it is back the next request pays exactly enough and
/// succeeds.
#[tokio::test]
async fn an_unusable_answer_is_penalised_but_booked_as_paid() {
    let orch = onchain_sim(3, 1).await;
    let gw = start(paying_config(&[&orch])).await;
    orch.set_ai_mode(AiMode::ResultUrls(vec![SMALL.into()]));
    for i in 0..2 {
        expect_ok(&gw, &orch).await;
        assert_books_agree(&gw, &orch, &format!("success {i}")).await;
    }
    let unusable = [
        AiMode::ResultUrls(vec!["http://169.254.169.254/x.png".into()]),
        AiMode::ResultUrls(vec!["{sim}/blob/100?type=text/html".into()]),
        AiMode::CloseMidAnswer,
    ];
    for (i, bad) in unusable.into_iter().enumerate() {
        orch.set_ai_mode(bad);
        let resp = t2i(&gw).await;
        assert_eq!(resp.status(), 502);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["type"], "orchestrator_failed", "{body}");
        assert_eq!(orch_state(&gw, orch.url()).await["state"], "ejected");
        assert_books_agree(&gw, &orch, &format!("unusable {i}")).await;
        // Wait out the ejection (300 ms base in tests): an orchestrator-wide one ends with the
        // health probe, a job key's with a request that is its probe. Until then requests are
        // refused before any payment (503), which leaves the books alone.
        orch.set_ai_mode(AiMode::ResultUrls(vec![SMALL.into()]));
        eventually(Duration::from_secs(10), "served again", || async {
            t2i(&gw).await.status() == 200
        })
        .await;
        assert_books_agree(&gw, &orch, &format!("first success after unusable {i}")).await;
        for j in 0..3 {
            expect_ok(&gw, &orch).await;
            assert_books_agree(&gw, &orch, &format!("success {j} after unusable {i}")).await;
        }
    }
    gw.shutdown().await;
}

/// An orchestrator that answers every paid request `400 Insufficient balance` (one whose
/// books were lost, or one that keeps what it is sent) costs the gateway a payment and its
/// renewal on the request that meets it, and is then penalised for the job, as any failing
/// orchestrator: it is not paid again on every later request (before: 20 payments over 10
/// requests). Ejections here last long enough that no probe comes back to it.
#[tokio::test]
async fn an_orchestrator_that_keeps_refusing_payment_is_not_paid_on_every_request() {
    // Cheaper, so selected first while it is selectable.
    let refuser = onchain_sim(1, 1).await;
    let honest = onchain_sim(2, 8).await;
    let mut c = paying_config(&[&refuser, &honest]);
    c.eject.base = Duration::from_secs(600);
    c.eject.max = Duration::from_secs(600);
    let gw = start(c).await;
    refuser.set_ai_mode(AiMode::Status(400, "Insufficient balance".into()));
    for _ in 0..10 {
        expect_ok(&gw, &honest).await;
    }
    assert_eq!(refuser.ai_requests(), 2, "paid once, renewed once, then left alone");
    let job = job_state(&gw, refuser.url(), &format!("text-to-image/{SD}")).await;
    assert!(job["consecutive_failures"].as_u64().unwrap() >= 1, "penalised for the job: {job}");
    gw.shutdown().await;
}
