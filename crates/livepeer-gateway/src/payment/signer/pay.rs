//! `POST /generate-live-payment`: a gateway acting as remote signer pays an orchestrator on
//! behalf of a keyless client (PROTOCOL.md §11.2, PAYMENTS.md §7.3), in four steps: decode the
//! request ([`super::request`]), verify the state it echoes ([`super::state`]), bill it
//! ([`super::bill`]), then sign the tickets, the segment credentials and the new state (here).

use std::time::{SystemTime, UNIX_EPOCH};

use livepeer_pm::{
    ExpirationParams, LocalSigner, SenderSession, UpdateStatus, build_payment, payment_header_value,
};

use super::Checks;
use super::bill::{Bill, bill};
use super::refusal::Refusal;
use super::request::{Offer, PaymentRequest, SignedState, capabilities, decode};
use super::state::{PaymentState, seal, verify};
use crate::job::JobKey;
use crate::orchestrator::creds::segment_header;
use crate::orchestrator::price::Price;
use crate::payment::PayError;

/// What the signer hands back: the two headers of the client's call and the state to echo.
#[derive(Debug)]
pub struct PaymentAnswer {
    /// The `Livepeer-Payment` value.
    pub payment: String,
    /// The `Livepeer-Segment` value, signed by the signer.
    pub seg_creds: String,
    /// The new state, base64 JSON.
    pub state: String,
    /// The signer's signature of the state, base64.
    pub sig: String,
}

/// Pays for `req` with `key`, now, if it passes `checks`.
pub(super) fn generate(
    key: &LocalSigner,
    req: &PaymentRequest,
    checks: &Checks,
) -> Result<PaymentAnswer, Refusal> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    generate_at(key, req, checks, now)
}

/// Pays for `req` with `key` at unix milliseconds `now`, if it passes `checks`.
fn generate_at(
    key: &LocalSigner,
    req: &PaymentRequest,
    checks: &Checks,
    now: u64,
) -> Result<PaymentAnswer, Refusal> {
    let offer = decode(req)?;
    let mut st = verify(key.address(), req, &offer)?;
    let charged = bill(&st, &offer, req, now)?;
    check_terms(checks, req, &offer, &charged)?;
    let (payment, seg_creds) = sign(key, req, &offer, &mut st, charged, now)?;
    let SignedState { state, sig } = seal(&st, key)?;
    Ok(PaymentAnswer { payment, seg_creds, state, sig })
}

/// Step 3b, the sender's checks (PAYMENTS.md §5.3 and §7.3 step 7): the price within the
/// operator's cap for every (capability, model) the request names (or the global cap); params
/// not expired (480, as go-livepeer's `shouldRefreshSession`); a ticket's EV below its face
/// value and within the max ticket EV, the batch within the max total EV, the face value
/// within the funds. go-livepeer's signer fails its payment on these (500); so does this one,
/// and its log says why.
fn check_terms(
    checks: &Checks,
    req: &PaymentRequest,
    offer: &Offer,
    charged: &Bill,
) -> Result<(), Refusal> {
    let price = Price::new(offer.price.price_per_unit, offer.price.pixels_per_unit)
        .map_err(|_| Refusal::malformed("invalid price"))?;
    let caps = capabilities(req)?;
    let keys: Vec<JobKey> = caps
        .per_capability
        .iter()
        .flat_map(|(&capability, models)| {
            models.keys().map(move |model| JobKey { capability, model: model.clone() })
        })
        .collect();
    // The strictest cap of the (capability, model) pairs named, else the global one: pairs
    // without a cap of their own (a BYOC capability without `--byoc-max-price`) must not let
    // a caller step around it.
    let caps = checks.caps.load();
    let cap = keys.iter().filter_map(|k| caps.max_price(k)).min().or(caps.max_price);
    if let Some(cap) = cap
        && price > cap
    {
        return Err(Refusal::PriceExceeded(format!("price {price} above the max price {cap}")));
    }
    let Some(payer) = &checks.payer else { return Ok(()) };
    if payer.expired(&offer.params) {
        return Err(Refusal::RefreshSession { orchestrator: offer.transcoder.clone() });
    }
    let refused = |e: PayError| {
        tracing::warn!(error = %e, "remote signer refused an orchestrator's ticket terms");
        Refusal::internal(&e)
    };
    let ev = payer.ticket_ev(&offer.params).map_err(refused)?;
    payer.check_funds(offer.params.face_value).map_err(refused)?;
    let total = livepeer_pm::unit_fee(u64::from(charged.update.num_tickets), &ev)
        .map_err(|e| Refusal::internal(&e))?;
    if let Some(why) = payer.over_total_ev(&total) {
        return Err(refused(PayError::Refused(why)));
    }
    Ok(())
}

/// Step 4: the tickets and the segment credentials; the balance is settled as received and
/// the state advanced to this payment (balance, time, session, nonce).
fn sign(
    key: &LocalSigner,
    req: &PaymentRequest,
    offer: &Offer,
    st: &mut PaymentState,
    charged: Bill,
    now: u64,
) -> Result<(String, String), Refusal> {
    let Bill { fee, mut balance, mut update } = charged;
    let internal = |e: &dyn std::fmt::Display| Refusal::internal(e);
    let session_id = offer.params.recipient_rand_hash.to_string();
    // Nonces go on within one set of params; fresh params start a new sender session.
    let last_nonce = if st.PMSessionID == session_id { st.SenderNonce } else { 0 };
    let expiration = offer.params.expiration_or(ExpirationParams::default());
    let mut sender = SenderSession::resume(offer.params, expiration, last_nonce);
    let batch = sender.create_batch(key, update.num_tickets).map_err(|e| internal(&e))?;
    let payment =
        build_payment(key.address(), &offer.price, Some(&batch)).map_err(|e| internal(&e))?;
    let caps = capabilities(req)?;
    let seg_creds = segment_header(&st.ManifestID, &caps, Some(&offer.token), Some(key));
    update.status = UpdateStatus::ReceivedChange;
    update.debit = fee;
    balance.complete_update(&update).map_err(|e| internal(&e))?;
    st.Balance = balance.amount().to_ratio().unwrap_or_default().to_string();
    st.LastUpdate = now;
    st.PMSessionID = session_id;
    st.SenderNonce = sender.last_nonce();
    Ok((payment_header_value(&payment), seg_creds))
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use livepeer_pm::decode_payment_header;
    use serde_json::json;

    use super::super::request::tests::{info, request};
    use super::*;

    const NOW: u64 = 1_798_761_600_000;

    fn key() -> LocalSigner {
        LocalSigner::from_bytes(&[4; 32]).unwrap()
    }

    fn state_of(answer: &PaymentAnswer) -> PaymentState {
        serde_json::from_slice(&STANDARD.decode(&answer.state).unwrap()).unwrap()
    }

    #[test]
    fn a_payment_carries_the_tickets_and_advances_the_state() {
        let key = key();
        let orch = info(3, 2, (NOW / 1000) as i64 + 1800);
        let first = generate_at(
            &key,
            &request(&orch, json!({"inPixels": 4096, "ManifestID": "m"})),
            &Checks::default(),
            NOW,
        )
        .unwrap();
        let payment = decode_payment_header(&first.payment).unwrap();
        assert_eq!(payment.ticket_sender_params.len(), 7, "6144 wei at 1000 wei a ticket");
        assert_eq!(payment.sender, key.address().to_vec());
        let st = state_of(&first);
        assert_eq!((st.Balance.as_str(), st.SenderNonce, st.LastUpdate), ("856", 7, NOW));
        // The next one continues from the echoed state: 856 wei of credit, nonces go on.
        let echoed = json!({"State": first.state, "Sig": first.sig});
        let fields = json!({"inPixels": 4096, "ManifestID": "m", "state": echoed});
        let second =
            generate_at(&key, &request(&orch, fields), &Checks::default(), NOW + 1).unwrap();
        let payment = decode_payment_header(&second.payment).unwrap();
        assert_eq!(payment.ticket_sender_params.len(), 6, "6144 − 856 = 5288 wei: 6 tickets");
        let st = state_of(&second);
        assert_eq!((st.Balance.as_str(), st.SenderNonce, st.SequenceNumber), ("712", 13, 2));
    }

    /// The signer's checks: this gateway's key as a sender with go-livepeer's default
    /// limits, and a global cap of `cap` wei a unit.
    fn checks(cap: Option<i64>) -> Checks {
        let timeouts = crate::orchestrator::Timeouts {
            connect: std::time::Duration::from_secs(1),
            call: std::time::Duration::from_secs(1),
        };
        let client = crate::orchestrator::OrchClient::new(
            timeouts,
            crate::orchestrator::TlsTrust::AcceptAny,
            None,
        );
        let limits = crate::config::Payment::default().limits().unwrap();
        let payer = crate::payment::LocalPayer::new(std::sync::Arc::new(key()), client, limits);
        let max_price = cap.map(|c| Price::new(c, 1).unwrap());
        let caps = crate::orchestrator::snapshot::Requirements { max_price, ..Default::default() };
        Checks { payer: Some(payer), caps: caps.into() }
    }

    /// `info` with a face value of `face` wei and a win probability of 1 in `odds`.
    fn offering(price: i64, face: u64, odds: u64) -> livepeer_proto::net::OrchestratorInfo {
        let mut orch = info(price, 1, (NOW / 1000) as i64 + 1800);
        let params = orch.ticket_params.as_mut().unwrap();
        params.face_value = livepeer_pm::U256::from(face).to_be_bytes_trimmed_vec();
        params.win_prob =
            (livepeer_pm::U256::MAX / livepeer_pm::U256::from(odds)).to_be_bytes_trimmed_vec();
        orch
    }

    #[test]
    fn the_signer_refuses_terms_a_sender_would_refuse() {
        let key = key();
        let pay = |orch: &livepeer_proto::net::OrchestratorInfo, checks: &Checks| {
            generate_at(&key, &request(orch, json!({"inPixels": 4096})), checks, NOW)
        };
        // A ticket worth 1e9 wei (1e12 face value, 1 in 1000): signed with the checks on.
        let fair = offering(1_000_000, 1_000_000_000_000, 1_000);
        assert!(pay(&fair, &checks(None)).is_ok());
        // One that always wins is its face value paid outright: refused, and so is a ticket
        // whose EV is over go-livepeer's max ticket EV (3e12 wei).
        let sure = offering(1_000_000, 1_000_000_000_000, 1);
        assert!(pay(&sure, &Checks::default()).is_ok(), "signed without the checks");
        let e = pay(&sure, &checks(None)).unwrap_err();
        assert!(
            matches!(&e, Refusal::Internal(why) if why.contains("not below its face value")),
            "{e:?}"
        );
        let rich = offering(1_000_000_000, 4_000_000_000_000_000, 1_000);
        let e = pay(&rich, &checks(None)).unwrap_err();
        assert!(matches!(&e, Refusal::Internal(why) if why.contains("max ticket EV")), "{e:?}");
        // The operator's cap is applied to the price the orchestrator asks (481).
        let e = pay(&fair, &checks(Some(999_999))).unwrap_err();
        assert!(
            matches!(&e, Refusal::PriceExceeded(why) if why.contains("above the max price")),
            "{e:?}"
        );
        assert!(pay(&fair, &checks(Some(1_000_000))).is_ok());
        // Naming only a pair with no cap of its own (a BYOC capability) keeps the global cap.
        let mut caps = crate::orchestrator::caps::Capabilities::default();
        caps.per_capability.entry(37).or_default().insert("x".into(), Default::default());
        let named =
            livepeer_proto::Message::encode_to_vec(&livepeer_proto::net::Capabilities::from(&caps));
        let named = STANDARD.encode(named);
        let fields = json!({"inPixels": 4096, "capabilities": named});
        let e =
            generate_at(&key, &request(&fair, fields), &checks(Some(999_999)), NOW).unwrap_err();
        assert!(matches!(&e, Refusal::PriceExceeded(_)), "{e:?}");
    }

    #[test]
    fn steps_refuse_in_order() {
        let key = key();
        let stale = info(3, 2, (NOW / 1000) as i64);
        let e =
            generate_at(&key, &request(&stale, json!({"inPixels": 1})), &Checks::default(), NOW)
                .unwrap_err();
        assert!(matches!(e, Refusal::RefreshSession { .. }));
        let fresh = info(3, 2, (NOW / 1000) as i64 + 1800);
        let bad_caps = json!({"inPixels": 1, "capabilities": "%%"});
        let e = generate_at(&key, &request(&fresh, bad_caps), &Checks::default(), NOW).unwrap_err();
        assert_eq!(e, Refusal::malformed("capabilities is not base64"));
    }
}
