//! `POST /generate-live-payment`: a gateway acting as remote signer pays an orchestrator on
//! behalf of a keyless client (PROTOCOL.md §11.2, PAYMENTS.md §7.3), in four steps: decode the
//! request ([`super::request`]), verify the state it echoes ([`super::state`]), bill it
//! ([`super::bill`]), then sign the tickets, the segment credentials and the new state (here).

use std::time::{SystemTime, UNIX_EPOCH};

use livepeer_pm::{
    ExpirationParams, LocalSigner, SenderSession, UpdateStatus, build_payment, payment_header_value,
};

use super::bill::{Bill, bill};
use super::refusal::Refusal;
use super::request::{Offer, PaymentRequest, SignedState, capabilities, decode};
use super::state::{PaymentState, seal, verify};
use crate::orchestrator::creds::segment_header;

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

/// Pays for `req` with `key`, now.
pub(super) fn generate(key: &LocalSigner, req: &PaymentRequest) -> Result<PaymentAnswer, Refusal> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    generate_at(key, req, now)
}

/// Pays for `req` with `key` at unix milliseconds `now`.
fn generate_at(
    key: &LocalSigner,
    req: &PaymentRequest,
    now: u64,
) -> Result<PaymentAnswer, Refusal> {
    let offer = decode(req)?;
    let mut st = verify(key.address(), req, &offer)?;
    let charged = bill(&st, &offer, req, now)?;
    let (payment, seg_creds) = sign(key, req, &offer, &mut st, charged, now)?;
    let SignedState { state, sig } = seal(&st, key)?;
    Ok(PaymentAnswer { payment, seg_creds, state, sig })
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
        let first =
            generate_at(&key, &request(&orch, json!({"inPixels": 4096, "ManifestID": "m"})), NOW)
                .unwrap();
        let payment = decode_payment_header(&first.payment).unwrap();
        assert_eq!(payment.ticket_sender_params.len(), 7, "6144 wei at 1000 wei a ticket");
        assert_eq!(payment.sender, key.address().to_vec());
        let st = state_of(&first);
        assert_eq!((st.Balance.as_str(), st.SenderNonce, st.LastUpdate), ("856", 7, NOW));
        // The next one continues from the echoed state: 856 wei of credit, nonces go on.
        let echoed = json!({"State": first.state, "Sig": first.sig});
        let fields = json!({"inPixels": 4096, "ManifestID": "m", "state": echoed});
        let second = generate_at(&key, &request(&orch, fields), NOW + 1).unwrap();
        let payment = decode_payment_header(&second.payment).unwrap();
        assert_eq!(payment.ticket_sender_params.len(), 6, "6144 − 856 = 5288 wei: 6 tickets");
        let st = state_of(&second);
        assert_eq!((st.Balance.as_str(), st.SenderNonce, st.SequenceNumber), ("712", 13, 2));
    }

    #[test]
    fn steps_refuse_in_order() {
        let key = key();
        let stale = info(3, 2, (NOW / 1000) as i64);
        let e = generate_at(&key, &request(&stale, json!({"inPixels": 1})), NOW).unwrap_err();
        assert!(matches!(e, Refusal::RefreshSession { .. }));
        let fresh = info(3, 2, (NOW / 1000) as i64 + 1800);
        let bad_caps = json!({"inPixels": 1, "capabilities": "%%"});
        let e = generate_at(&key, &request(&fresh, bad_caps), NOW).unwrap_err();
        assert_eq!(e, Refusal::malformed("capabilities is not base64"));
    }
}
