//! The price a payment is made at, against a real simulator: the job-priced answer the
//! tickets are made for must be within the operator's cap and within twice the price the
//! orchestrator was selected at.

use std::sync::Arc;
use std::time::Duration;

use livepeer_pm::LocalSigner;
use livepeer_sim::{Sim, SimConfig, SimModel};

use super::*;
use crate::orchestrator::price::Price;
use crate::orchestrator::{Requirements, Timeouts, TlsTrust};

const MODEL: &str = "m";

fn client() -> OrchClient {
    let second = Duration::from_secs(2);
    OrchClient::new(Timeouts { connect: second, call: second }, TlsTrust::AcceptAny, None)
}

/// An on-chain simulator charging 1,000 wei a pixel for text-to-image.
async fn sim() -> (Sim, Url) {
    let sim = Sim::start(SimConfig {
        eth_address: Some(livepeer_pm::Address::from([0x0b; 20])),
        face_value: 1_000_000_000_000,
        ticket_ev: 1_000_000_000,
        models: vec![SimModel::new("text-to-image", MODEL).price(1_000, 1)],
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let url = sim.url().parse().unwrap();
    (sim, url)
}

/// What selection saw: the simulator's own discovery answer, with its price for the job
/// replaced by `advertised`, as an orchestrator advertising one price and charging another.
async fn selected_at(url: &Url, advertised: i64) -> Arc<OrchInfo> {
    let mut info = client().get_orchestrator(url, None, false).await.unwrap();
    info.capability_prices.clear();
    info.price = Price::new(advertised, 1).unwrap();
    Arc::new(info)
}

fn local_payments(cap: Option<i64>) -> Payments {
    let key = Arc::new(LocalSigner::from_bytes(&[5; 32]).unwrap());
    let limits = crate::config::Payment::default().limits().unwrap();
    let local = LocalPayer::new(key, client(), limits);
    let caps =
        Requirements { max_price: cap.map(|c| Price::new(c, 1).unwrap()), ..Default::default() };
    Payments::new(Some(local), None, &client()).unwrap().with_price_caps(caps)
}

async fn pay(payments: &Payments, url: &Url, advertised: i64) -> Result<Prepared, PayError> {
    let key = JobKey::ai("text-to-image", MODEL).unwrap();
    let discovered = selected_at(url, advertised).await;
    payments.prepare(url, &discovered, &key, 1_000_000, Booking::Job).await
}

#[tokio::test]
async fn the_price_paid_is_within_the_cap_and_twice_the_price_selected_at() {
    let (_sim, url) = sim().await;
    // Selected at the price it charges, no cap: paid, at that price.
    let paid = pay(&local_payments(None), &url, 1_000).await.unwrap();
    assert_eq!(paid.info().price, Price::new(1_000, 1).unwrap());
    assert!(paid.spend().is_some_and(|s| s.tickets > 0));
    // Selected at 500, charging 1,000: exactly double is still paid (go-livepeer's rule).
    pay(&local_payments(None), &url, 500).await.unwrap();
    // Selected at 400: more than doubled, refused before any ticket is made.
    let Err(PayError::Refused(why)) = pay(&local_payments(None), &url, 400).await else {
        panic!("a price more than twice the advertised one was paid");
    };
    assert!(why.contains("more than doubled"), "{why}");
    // A cap of 999 refuses the 1,000 charged even though selection saw 1,000 too; 1,000 pays.
    let Err(PayError::Refused(why)) = pay(&local_payments(Some(999)), &url, 1_000).await else {
        panic!("a price above the cap was paid");
    };
    assert!(why.contains("above the max price"), "{why}");
    pay(&local_payments(Some(1_000)), &url, 1_000).await.unwrap();
}

#[tokio::test]
async fn a_remote_signer_is_not_asked_to_pay_above_the_bounds() {
    let (_sim, url) = sim().await;
    // A signer nobody listens on: a payment within the bounds gets as far as asking it.
    let signer: Url = "http://127.0.0.1:9/".parse().unwrap();
    let remote = Payments::new(None, Some((&signer, Default::default())), &client()).unwrap();
    let Err(e) = pay(&remote, &url, 1_000).await else { panic!("paid with no signer") };
    assert!(e.to_string().contains("remote signer: error sending request"), "{e}");
    let Err(PayError::Refused(why)) = pay(&remote, &url, 400).await else {
        panic!("the signer was asked to pay more than twice the advertised price");
    };
    assert!(why.contains("more than doubled"), "{why}");
}

/// An orchestrator whose fresh auth tokens are already due for renewal (here, a minute to
/// live where renewal starts three minutes ahead) made every payment fetch and decode a whole
/// GetOrchestrator answer again, concurrently. Such a token is now refused.
#[tokio::test]
async fn a_token_due_for_renewal_as_it_is_made_is_refused() {
    let sim = Sim::start(SimConfig {
        eth_address: Some(livepeer_pm::Address::from([0x0b; 20])),
        face_value: 1_000_000_000_000,
        ticket_ev: 1_000_000_000,
        models: vec![SimModel::new("text-to-image", MODEL).price(1_000, 1)],
        auth_token_lifetime: Duration::from_secs(60),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let url: Url = sim.url().parse().unwrap();
    let Err(PayError::Refused(why)) = pay(&local_payments(None), &url, 1_000).await else {
        panic!("a payment was made on a token due for renewal");
    };
    assert!(why.contains("due for renewal as it is made"), "{why}");
}
