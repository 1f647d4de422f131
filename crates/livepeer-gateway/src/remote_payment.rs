//! `POST /generate-live-payment`: a gateway acting as remote signer pays an orchestrator on
//! behalf of a keyless client (PROTOCOL.md §11.2, PAYMENTS.md §7.3). All continuity (balance,
//! nonce, timing, initial price) travels in a state blob that this signer signs and the client
//! echoes, so the signer keeps nothing per stream.
//!
//! Statuses: 480 (refresh the OrchestratorInfo: auth token near expiry), 481 (price above a
//! ceiling, or more than doubled), 482 (the balance already covers this payment), 400 for
//! malformed input or a state that is not ours. Error bodies are `{"error": {"message"}}`.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use livepeer_pm::{
    Address, Balance, ExpirationParams, Ratio, SenderSession, SignedRatio, TicketParams,
    UpdateStatus, build_payment, min_credit, payment_header_value, recover_message_signer,
    unit_fee,
};
use livepeer_proto::{Message, net};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::orchestrator::caps::Capabilities;
use crate::orchestrator::creds::segment_header;
use crate::orchestrator::info::AuthToken;
use crate::orchestrator::price::Price;
use crate::signer::SignerState;

/// Most tickets one payment may carry (go-livepeer refuses more).
const MAX_TICKETS: u32 = 100;
/// 1280 × 720 × 30: the pixels per second of live video-to-video.
const LV2V_PIXELS_PER_SECOND: u64 = 27_648_000;

#[derive(Debug, Deserialize)]
pub(crate) struct PaymentRequest {
    orchestrator: String,
    #[serde(default)]
    state: Option<SignedState>,
    #[serde(rename = "ManifestID", default)]
    manifest_id: Option<String>,
    #[serde(default)]
    app: String,
    #[serde(rename = "inPixels", default)]
    in_pixels: i64,
    #[serde(rename = "type", default)]
    job_type: String,
    #[serde(rename = "maxPrice", default)]
    max_price: Option<MaxPrice>,
    #[serde(default)]
    capabilities: Option<String>,
}

#[derive(Debug, Deserialize)]
struct MaxPrice {
    /// Wei per unit; whole numbers only (money is exact here).
    price: serde_json::Number,
}

#[derive(Debug, Serialize, Deserialize)]
struct SignedState {
    #[serde(rename = "State")]
    state: String,
    #[serde(rename = "Sig")]
    sig: String,
}

/// The state blob. Keys follow go-livepeer's `RemotePaymentState`; `LastUpdate` is unix
/// milliseconds here (the blob is opaque to clients and read only by the signer that wrote it).
#[derive(Debug, Serialize, Deserialize)]
#[allow(non_snake_case)]
struct PaymentState {
    StateID: String,
    PMSessionID: String,
    LastUpdate: u64,
    OrchestratorAddress: String,
    App: String,
    SenderNonce: u32,
    Balance: String,
    InitialPricePerUnit: i64,
    InitialPixelsPerUnit: i64,
    Type: String,
    SequenceNumber: u64,
    ManifestID: String,
}

/// A refused payment request: its status, message and, for 480, where to refresh.
#[derive(Debug)]
struct Refusal {
    status: u16,
    message: String,
    refresh_url: Option<String>,
}

fn error(status: u16, message: impl Into<String>) -> Refusal {
    Refusal { status, message: message.into(), refresh_url: None }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp =
            (status, Json(json!({ "error": { "message": self.message } }))).into_response();
        if let Some(url) = self.refresh_url.and_then(|u| HeaderValue::from_str(&u).ok()) {
            resp.headers_mut().insert("Livepeer-Orchestrator-URL", url);
        }
        resp
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Handles one payment request.
pub(crate) async fn generate_live_payment(
    State(state): State<SignerState>,
    headers: HeaderMap,
    Json(req): Json<PaymentRequest>,
) -> Response {
    if let Some(resp) = crate::signer::unauthorized(&state, &headers) {
        return resp;
    }
    match pay(&state, req) {
        Ok(resp) => resp,
        Err(refusal) => refusal.into_response(),
    }
}

fn pay(signer: &SignerState, req: PaymentRequest) -> Result<Response, Refusal> {
    let bad = |m: &str| error(400, m);
    // 1. The orchestrator's info: price, ticket params, address, auth token.
    let raw =
        STANDARD.decode(req.orchestrator.trim()).map_err(|_| bad("orchestrator is not base64"))?;
    let info = net::OrchestratorInfo::decode(raw.as_slice())
        .map_err(|_| bad("orchestrator is not an OrchestratorInfo"))?;
    let price_info = info
        .price_info
        .clone()
        .filter(|p| p.price_per_unit > 0 && p.pixels_per_unit > 0)
        .ok_or_else(|| bad("missing or zero price_info"))?;
    let params = info.ticket_params.as_ref().ok_or_else(|| bad("missing ticket_params"))?;
    let params =
        TicketParams::from_proto(params).map_err(|e| bad(&format!("ticket_params: {e}")))?;
    if info.address.len() != 20 {
        return Err(bad("missing orchestrator address"));
    }
    let orch_address = Address::from_slice(&info.address).to_checksum(None);
    let token = info.auth_token.as_ref().ok_or_else(|| bad("missing auth_token"))?;
    let token = AuthToken {
        token: token.token.clone(),
        session_id: token.session_id.clone(),
        expiration: token.expiration,
    };

    // 2. Our own state, or a new one.
    let now = now_ms();
    let mut st = match &req.state {
        Some(signed) => {
            let bytes = STANDARD.decode(&signed.state).map_err(|_| bad("invalid state"))?;
            let sig = STANDARD.decode(&signed.sig).map_err(|_| bad("invalid sig"))?;
            match recover_message_signer(&bytes, &sig) {
                Ok(who) if who == signer.address() => {}
                _ => return Err(bad("invalid sig")),
            }
            let st: PaymentState =
                serde_json::from_slice(&bytes).map_err(|_| bad("invalid state"))?;
            if st.OrchestratorAddress != orch_address {
                return Err(bad("orchestratorAddress mismatch"));
            }
            if st.App != req.app {
                return Err(bad("app mismatch"));
            }
            if st.Type != req.job_type {
                return Err(bad("job type mismatch"));
            }
            if req.manifest_id.as_deref().is_none_or(str::is_empty) {
                return Err(bad("missing manifestID"));
            }
            st
        }
        None => PaymentState {
            StateID: format!("{:016x}", rand::rng().random::<u64>()),
            PMSessionID: String::new(),
            LastUpdate: 0,
            OrchestratorAddress: orch_address.clone(),
            App: req.app.clone(),
            SenderNonce: 0,
            Balance: "0".into(),
            InitialPricePerUnit: price_info.price_per_unit,
            InitialPixelsPerUnit: price_info.pixels_per_unit,
            Type: req.job_type.clone(),
            SequenceNumber: 0,
            ManifestID: req
                .manifest_id
                .clone()
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| format!("{:016x}", rand::rng().random::<u64>())),
        },
    };
    if let Some(m) = req.manifest_id.clone().filter(|m| !m.is_empty()) {
        st.ManifestID = m;
    }
    st.SequenceNumber += 1;

    // 5. Refresh: the auth token must have more than 3 minutes left.
    if token.expiration - (now / 1000) as i64 <= 180 {
        return Err(Refusal {
            status: 480,
            message: "refresh session".into(),
            refresh_url: Some(info.transcoder.clone()),
        });
    }

    // 6. Billable units.
    let first = st.LastUpdate == 0;
    let secs_ms = now.saturating_sub(st.LastUpdate);
    let units: u64 = match req.job_type.as_str() {
        "lv2v" if first => 60 * LV2V_PIXELS_PER_SECOND,
        "lv2v" => LV2V_PIXELS_PER_SECOND * secs_ms / 1000,
        "live" if first => 10,
        "live" => secs_ms.div_ceil(1000),
        "fixed" => 1,
        "" => u64::try_from(req.in_pixels).unwrap_or(0),
        _ => return Err(bad("invalid job type")),
    };
    if units == 0 {
        return Err(bad("missing billable unit or job type"));
    }

    // 7. Price ceilings: the request's maxPrice and the session's initial price.
    let price_exceeded = |m: String| error(481, m);
    let current = i128::from(price_info.price_per_unit) * i128::from(st.InitialPixelsPerUnit);
    let initial = i128::from(st.InitialPricePerUnit) * i128::from(price_info.pixels_per_unit);
    if current > initial {
        return Err(price_exceeded("price above the session's initial price".into()));
    }
    if let Some(max) = &req.max_price {
        let max: i128 =
            max.price.to_string().parse().map_err(|_| bad("maxPrice.price must be whole wei"))?;
        if i128::from(price_info.price_per_unit) > max * i128::from(price_info.pixels_per_unit) {
            return Err(price_exceeded(format!(
                "price {}/{} above maxPrice {max}",
                price_info.price_per_unit, price_info.pixels_per_unit
            )));
        }
    }

    // 8. fee = units × initial price; stage the balance.
    let internal = |e: &dyn std::fmt::Display| error(500, format!("Internal Server Error: {e}"));
    let initial_price = Price::new(st.InitialPricePerUnit, st.InitialPixelsPerUnit)
        .map_err(|_| bad("invalid state"))?
        .to_ratio()
        .map_err(|e| internal(&e))?;
    let fee = unit_fee(units, &initial_price).map_err(|e| internal(&e))?;
    let held: Ratio = st.Balance.parse().map_err(|_| bad("invalid state"))?;
    let mut balance = Balance::new(SignedRatio::from(held));
    let ev = params.ev();
    let mut update = balance.stage_update(&min_credit(&fee, &ev), &ev).map_err(|e| internal(&e))?;
    if update.num_tickets == 0 {
        return Err(error(482, "no tickets"));
    }
    if update.num_tickets > MAX_TICKETS {
        return Err(bad("too many tickets"));
    }

    // 9. Tickets, payment, segment credentials; then settle as received.
    let session_id = params.recipient_rand_hash.to_string();
    let last_nonce = if st.PMSessionID == session_id { st.SenderNonce } else { 0 };
    let expiration = params.expiration_or(ExpirationParams::default());
    let mut sender = SenderSession::resume(params, expiration, last_nonce);
    let batch = sender.create_batch(signer.key(), update.num_tickets).map_err(|e| internal(&e))?;
    let payment =
        build_payment(signer.address(), &price_info, Some(&batch)).map_err(|e| internal(&e))?;
    let caps = match &req.capabilities {
        Some(b64) => {
            let raw = STANDARD.decode(b64).map_err(|_| bad("capabilities is not base64"))?;
            Capabilities::from(
                &net::Capabilities::decode(raw.as_slice())
                    .map_err(|_| bad("capabilities is not a Capabilities"))?,
            )
        }
        None => Capabilities::default(),
    };
    let seg_creds = segment_header(&st.ManifestID, &caps, Some(&token), Some(signer.key()));
    update.status = UpdateStatus::ReceivedChange;
    update.debit = fee;
    balance.complete_update(&update).map_err(|e| internal(&e))?;

    // 10–12. The new state, signed.
    st.Balance = balance.amount().to_ratio().unwrap_or_default().to_string();
    st.LastUpdate = now;
    st.PMSessionID = session_id;
    st.SenderNonce = sender.last_nonce();
    let bytes = serde_json::to_vec(&st).map_err(|e| internal(&e))?;
    let sig = signer.key().sign_message(&bytes).map_err(|e| internal(&e))?;
    Ok(Json(json!({
        "payment": payment_header_value(&payment),
        "segCreds": seg_creds,
        "state": { "State": STANDARD.encode(&bytes), "Sig": STANDARD.encode(sig.0) },
    }))
    .into_response())
}
