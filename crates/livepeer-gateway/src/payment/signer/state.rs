//! Step 2 of `/generate-live-payment`: the state blob. All continuity (balance, nonce, timing,
//! initial price) travels in it, signed by this signer and echoed by the client, so the signer
//! keeps nothing per stream. Here it is verified (ours, and for this orchestrator, app and job
//! type), started afresh, and sealed again after a payment.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use livepeer_pm::{Address, LocalSigner, recover_message_signer};
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::refusal::Refusal;
use super::request::{Offer, PaymentRequest, SignedState};

/// The state blob. Keys follow go-livepeer's `RemotePaymentState`; `LastUpdate` is unix
/// milliseconds here (the blob is opaque to clients and read only by the signer that wrote it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[allow(non_snake_case)]
pub(super) struct PaymentState {
    pub(super) StateID: String,
    pub(super) PMSessionID: String,
    pub(super) LastUpdate: u64,
    pub(super) OrchestratorAddress: String,
    pub(super) App: String,
    pub(super) SenderNonce: u32,
    pub(super) Balance: String,
    pub(super) InitialPricePerUnit: i64,
    pub(super) InitialPixelsPerUnit: i64,
    pub(super) Type: String,
    pub(super) SequenceNumber: u64,
    pub(super) ManifestID: String,
}

/// The state this payment continues: the client's, checked to be ours (`signer`) and for this
/// orchestrator, app and job type, or a new one at the offer's price. Either way it is
/// booked on the request's manifest id and its sequence number advanced.
pub(super) fn verify(
    signer: Address,
    req: &PaymentRequest,
    offer: &Offer,
) -> Result<PaymentState, Refusal> {
    let mut st = match &req.state {
        Some(signed) => continued(signer, req, offer, signed)?,
        None => fresh(req, offer),
    };
    if let Some(m) = req.manifest() {
        m.clone_into(&mut st.ManifestID);
    }
    st.SequenceNumber += 1;
    Ok(st)
}

fn continued(
    signer: Address,
    req: &PaymentRequest,
    offer: &Offer,
    signed: &SignedState,
) -> Result<PaymentState, Refusal> {
    let bad = Refusal::malformed;
    let bytes = STANDARD.decode(&signed.state).map_err(|_| bad("invalid state"))?;
    let sig = STANDARD.decode(&signed.sig).map_err(|_| bad("invalid sig"))?;
    match recover_message_signer(&bytes, &sig) {
        Ok(who) if who == signer => {}
        _ => return Err(bad("invalid sig")),
    }
    let st: PaymentState = serde_json::from_slice(&bytes).map_err(|_| bad("invalid state"))?;
    if st.OrchestratorAddress != offer.address {
        return Err(bad("orchestratorAddress mismatch"));
    }
    if st.App != req.app {
        return Err(bad("app mismatch"));
    }
    if st.Type != req.job_type {
        return Err(bad("job type mismatch"));
    }
    if req.manifest().is_none() {
        return Err(bad("missing manifestID"));
    }
    Ok(st)
}

fn fresh(req: &PaymentRequest, offer: &Offer) -> PaymentState {
    let random_id = || format!("{:016x}", rand::rng().random::<u64>());
    PaymentState {
        StateID: random_id(),
        PMSessionID: String::new(),
        LastUpdate: 0,
        OrchestratorAddress: offer.address.clone(),
        App: req.app.clone(),
        SenderNonce: 0,
        Balance: "0".into(),
        InitialPricePerUnit: offer.price.price_per_unit,
        InitialPixelsPerUnit: offer.price.pixels_per_unit,
        Type: req.job_type.clone(),
        SequenceNumber: 0,
        ManifestID: req.manifest().map_or_else(random_id, str::to_owned),
    }
}

/// The state's JSON and this signer's signature of it, as the client will echo them.
pub(super) fn seal(st: &PaymentState, key: &LocalSigner) -> Result<SignedState, Refusal> {
    let bytes = serde_json::to_vec(st).map_err(|e| Refusal::internal(&e))?;
    let sig = key.sign_message(&bytes).map_err(|e| Refusal::internal(&e))?;
    Ok(SignedState { state: STANDARD.encode(&bytes), sig: STANDARD.encode(sig.0) })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::request::decode;
    use super::super::request::tests::{info, request};
    use super::*;

    fn key(byte: u8) -> LocalSigner {
        LocalSigner::from_bytes(&[byte; 32]).unwrap()
    }

    #[test]
    fn a_new_state_starts_at_the_offer_price() {
        let req = request(&info(3, 2, 9), json!({"ManifestID": "m", "app": "a", "type": "lv2v"}));
        let offer = decode(&req).unwrap();
        let st = verify(key(1).address(), &req, &offer).unwrap();
        assert_eq!((st.InitialPricePerUnit, st.InitialPixelsPerUnit), (3, 2));
        assert_eq!((st.SequenceNumber, st.LastUpdate, st.SenderNonce), (1, 0, 0));
        assert_eq!((st.ManifestID.as_str(), st.App.as_str(), st.Type.as_str()), ("m", "a", "lv2v"));
        assert_eq!(st.Balance, "0");
        let unnamed = request(&info(3, 2, 9), json!({}));
        assert_eq!(verify(key(1).address(), &unnamed, &offer).unwrap().ManifestID.len(), 16);
    }

    #[test]
    fn only_our_own_state_for_this_orchestrator_continues() {
        let ours = key(1);
        let base = request(&info(3, 2, 9), json!({"ManifestID": "m"}));
        let offer = decode(&base).unwrap();
        let st = verify(ours.address(), &base, &offer).unwrap();
        let signed = serde_json::to_value(seal(&st, &ours).unwrap()).unwrap();
        let again = |extra: serde_json::Value| {
            let mut fields = json!({"ManifestID": "m", "state": signed.clone()});
            if let (Some(f), Some(e)) = (fields.as_object_mut(), extra.as_object()) {
                f.extend(e.clone());
            }
            verify(ours.address(), &request(&info(3, 2, 9), fields), &offer)
        };
        let next = again(json!({})).unwrap();
        assert_eq!((next.StateID.as_str(), next.SequenceNumber), (st.StateID.as_str(), 2));
        let refused = |extra| again(extra).unwrap_err().to_string();
        assert_eq!(refused(json!({"app": "other"})), "app mismatch");
        assert_eq!(refused(json!({"type": "lv2v"})), "job type mismatch");
        assert_eq!(refused(json!({"ManifestID": ""})), "missing manifestID");
        let forged = json!({"State": signed["State"], "Sig": STANDARD.encode([7u8; 65])});
        assert_eq!(refused(json!({"state": forged})), "invalid sig");
        let theirs = serde_json::to_value(seal(&st, &key(2)).unwrap()).unwrap();
        assert_eq!(refused(json!({"state": theirs})), "invalid sig");
        let elsewhere = Offer { address: "0xother".into(), ..offer.clone() };
        let req = request(&info(3, 2, 9), json!({"ManifestID": "m", "state": signed}));
        let e = verify(ours.address(), &req, &elsewhere).unwrap_err();
        assert_eq!(e, Refusal::malformed("orchestratorAddress mismatch"));
    }
}
