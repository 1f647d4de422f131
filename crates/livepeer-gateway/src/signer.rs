//! Remote signing (PROTOCOL.md §11), both sides, for the parts that identify a gateway and list
//! orchestrators:
//! - as a signer, a gateway holding a key serves `POST /sign-orchestrator-info` (its address and
//!   `eth_sign` of it) and `GET /discover-orchestrators` (its pool, webhook-compatible) to other
//!   gateways and SDK clients. These routes exist only with an API key configured, and every
//!   call must present it (`Authorization: Bearer <key>`).
//! - as a client, a gateway without a key takes its identity from a signer at start and, when
//!   no orchestrators are configured, discovers them through the signer.
//!
//! `POST /generate-live-payment` (paying through a signer) lives in `remote_payment.rs`.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use livepeer_pm::{Address, LocalSigner, Signature, recover_eth_signer};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use subtle::ConstantTimeEq;
use url::Url;

use crate::http::error::json_error;
use crate::orchestrator::{Identity, JobKey, Pool};

/// State of the signer routes.
#[derive(Debug, Clone)]
pub struct SignerState {
    signer: Arc<LocalSigner>,
    /// `eth_sign` of the checksummed address, computed once.
    signature: Signature,
    api_key: Arc<SecretString>,
    pool: Pool,
}

impl SignerState {
    /// The signing key.
    pub(crate) fn key(&self) -> &LocalSigner {
        &self.signer
    }

    /// Its address.
    pub(crate) fn address(&self) -> Address {
        self.signer.address()
    }
}

/// Why a signer could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SignerError {
    /// The signer could not be reached or answered an error.
    #[error("remote signer {url}: {message}")]
    Unreachable {
        /// Signer URL.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The answer was not an address and a valid signature of it.
    #[error("remote signer answered an invalid identity: {0}")]
    Invalid(String),
}

/// The signer routes, to merge into the public router.
pub fn router(
    signer: Arc<LocalSigner>,
    api_key: SecretString,
    pool: Pool,
) -> Result<Router, String> {
    let text = signer.address().to_checksum(None);
    let signature = signer.eth_sign(text.as_bytes()).map_err(|e| e.to_string())?;
    let state = SignerState { signer, signature, api_key: Arc::new(api_key), pool };
    Ok(Router::new()
        .route("/sign-orchestrator-info", post(sign_orchestrator_info))
        .route("/discover-orchestrators", get(discover_orchestrators))
        .route("/generate-live-payment", post(crate::remote_payment::generate_live_payment))
        .with_state(state))
}

/// `Some(401 response)` unless the request carries the API key.
pub(crate) fn unauthorized(state: &SignerState, headers: &HeaderMap) -> Option<Response> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let expected = state.api_key.expose_secret().as_bytes();
    if bool::from(presented.as_bytes().ct_eq(expected)) && !expected.is_empty() {
        return None;
    }
    Some(json_error(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "missing or wrong API key (Authorization: Bearer <key>)".into(),
        Some("Authorization"),
    ))
}

async fn sign_orchestrator_info(State(state): State<SignerState>, headers: HeaderMap) -> Response {
    if let Some(resp) = unauthorized(&state, &headers) {
        return resp;
    }
    Json(json!({
        "address": state.signer.address().to_checksum(None),
        "signature": format!("0x{}", hex::encode(state.signature.0)),
    }))
    .into_response()
}

/// `[{"address", "score": 1, "capabilities": ["pipeline/model", …]}]`: orchestrators the pool
/// can use, each with the (pipeline, model) pairs it offers within the price caps. `caps`
/// filters (any of them). 503 when the pool is empty.
async fn discover_orchestrators(
    State(state): State<SignerState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    if let Some(resp) = unauthorized(&state, &headers) {
        return resp;
    }
    // `caps` may repeat (and clients leave its `/` unescaped), so read the query by hand.
    let wanted: Vec<String> = url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .filter(|(k, _)| k == "caps")
        .map(|(_, v)| v.into_owned())
        .collect();
    let snap = state.pool.snapshot();
    let mut per_orch: Vec<(String, Vec<String>)> = Vec::new();
    let mut keys: Vec<(&JobKey, &crate::orchestrator::snapshot::Tiers)> =
        snap.index.iter().collect();
    keys.sort_by(|a, b| a.0.cmp(b.0));
    for (key, tiers) in keys {
        if key.model.is_empty() {
            continue;
        }
        let name = key.to_string();
        if !wanted.is_empty() && !wanted.contains(&name) {
            continue;
        }
        for entry in tiers.warm.iter().chain(&tiers.cold) {
            let Some(slot) = snap.slots.get(entry.orch as usize) else { continue };
            let url = slot.url.as_str().trim_end_matches('/').to_owned();
            match per_orch.iter_mut().find(|(u, _)| *u == url) {
                Some((_, caps)) => caps.push(name.clone()),
                None => per_orch.push((url, vec![name.clone()])),
            }
        }
    }
    if per_orch.is_empty() {
        return json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_orchestrators",
            "no orchestrator matches".into(),
            None,
        );
    }
    let list: Vec<_> = per_orch
        .into_iter()
        .map(|(address, capabilities)| json!({"address": address, "score": 1, "capabilities": capabilities}))
        .collect();
    Json(list).into_response()
}

/// Parses `k:v,k2:v2` (go-livepeer's `-remoteSignerHeaders`) into headers.
pub fn parse_headers(text: &str) -> Result<reqwest::header::HeaderMap, String> {
    let mut headers = reqwest::header::HeaderMap::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once(':').ok_or_else(|| format!("{pair:?} is not name:value"))?;
        let name = reqwest::header::HeaderName::from_bytes(k.trim().as_bytes())
            .map_err(|e| format!("header name {k:?}: {e}"))?;
        let mut value = reqwest::header::HeaderValue::from_str(v.trim())
            .map_err(|_| format!("header {k:?} has an invalid value"))?;
        // Typically a bearer token: keep it out of Debug output.
        value.set_sensitive(true);
        headers.append(name, value);
    }
    Ok(headers)
}

/// Fetches the gateway's identity from a remote signer and checks that the signature really
/// is the address's (so a misconfigured signer fails at start, not at every orchestrator).
pub async fn fetch_identity(
    url: &Url,
    headers: reqwest::header::HeaderMap,
) -> Result<Identity, SignerError> {
    let unreachable = |message: String| SignerError::Unreachable { url: url.to_string(), message };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .default_headers(headers)
        .build()
        .map_err(|e| unreachable(e.to_string()))?;
    let endpoint = url.join("sign-orchestrator-info").map_err(|e| unreachable(e.to_string()))?;
    let resp = http
        .post(endpoint)
        .json(&json!({}))
        .send()
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    if !resp.status().is_success() {
        return Err(unreachable(format!("status {}", resp.status())));
    }
    #[derive(serde::Deserialize)]
    struct Answer {
        address: String,
        signature: String,
    }
    let answer: Answer = resp.json().await.map_err(|e| SignerError::Invalid(e.to_string()))?;
    let address: Address =
        answer.address.parse().map_err(|e| SignerError::Invalid(format!("address: {e}")))?;
    let bytes = hex::decode(answer.signature.trim_start_matches("0x"))
        .map_err(|e| SignerError::Invalid(format!("signature: {e}")))?;
    let sig: [u8; 65] =
        bytes.try_into().map_err(|_| SignerError::Invalid("signature is not 65 bytes".into()))?;
    let text = address.to_checksum(None);
    match recover_eth_signer(text.as_bytes(), &sig) {
        Ok(who) if who == address => Ok(Identity { address, sig: Signature(sig) }),
        _ => Err(SignerError::Invalid("the signature is not the address's".into())),
    }
}
