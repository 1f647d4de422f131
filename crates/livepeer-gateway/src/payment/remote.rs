//! The client side of a remote signer (`--remote-signer-url`), for a gateway without a key:
//! - its identity, fetched once at start ([`fetch_identity`]);
//! - payments: for each (orchestrator, job, manifest id) the gateway keeps the job-priced
//!   OrchestratorInfo and the signer's opaque state, and asks
//!   `POST {signer}/generate-live-payment` for every attempt's `Livepeer-Payment` and
//!   `Livepeer-Segment` (PROTOCOL.md §11.2, with `inPixels` = the request's units).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use livepeer_pm::{Address, Signature, recover_eth_signer};
use livepeer_proto::{Message, net};
use serde_json::{Value, json};
use url::Url;

use super::terms::PayError;
use crate::orchestrator::caps::Capabilities;
use crate::orchestrator::creds::ai_manifest_id;
use crate::orchestrator::info::OrchInfo;
use crate::orchestrator::{Identity, JobKey, OrchClient};

/// How many times a 480 ("refresh the session") is followed before giving up, as go-livepeer.
const MAX_REFRESHES: usize = 3;

#[derive(Debug)]
struct Session {
    info: Arc<OrchInfo>,
    bytes: Vec<u8>,
    state: Option<Value>,
}

/// (orchestrator URL, job, manifest id).
type SessionKey = (String, JobKey, String);

/// A session; its async lock keeps the signer's state echoed in order across awaits.
type SharedSession = Arc<tokio::sync::Mutex<Session>>;

/// What the signer produced for one attempt.
#[derive(Debug)]
pub(super) struct RemotePayment {
    /// `Livepeer-Payment`.
    pub(super) payment: String,
    /// `Livepeer-Segment`, signed by the signer.
    pub(super) segment: String,
    /// The info whose auth token the payment goes with.
    pub(super) info: Arc<OrchInfo>,
}

/// A client of a remote signer's payment endpoint; cheap to clone.
#[derive(Debug, Clone)]
pub(super) struct RemotePayer {
    http: reqwest::Client,
    endpoint: Url,
    /// `POST {signer}/sign-byoc-job`.
    sign_job: Url,
    client: OrchClient,
    /// Sessions by (orchestrator, job, manifest id): the signer's state tracks one balance, and the
    /// orchestrator books each manifest id (each live stream) on its own.
    sessions: Arc<Mutex<HashMap<SessionKey, SharedSession>>>,
}

impl RemotePayer {
    /// A payer for the signer at `base` (ending in `/`), sending `headers` with every call.
    pub(super) fn new(
        base: &Url,
        headers: reqwest::header::HeaderMap,
        client: OrchClient,
    ) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .default_headers(headers)
            .build()
            .map_err(|e| e.to_string())?;
        let endpoint = base.join("generate-live-payment").map_err(|e| e.to_string())?;
        let sign_job = base.join("sign-byoc-job").map_err(|e| e.to_string())?;
        Ok(Self { http, endpoint, sign_job, client, sessions: Arc::default() })
    }

    /// The payment for one attempt of `key` on `url` for `units`, booked on `manifest`; `None`
    /// for an off-chain orchestrator (no ticket params), which gets the empty header.
    pub(super) async fn prepare(
        &self,
        url: &Url,
        discovered: &OrchInfo,
        key: &JobKey,
        units: u64,
        manifest: &str,
    ) -> Result<Option<RemotePayment>, PayError> {
        if discovered.ticket_params.is_none() {
            return Ok(None);
        }
        let caps = Capabilities::ai_job(key.capability, &key.model, "", "");
        let session = self.session(url, key, manifest, &caps).await?;
        // One payment at a time per session: the signer's state must be echoed in order.
        let mut s = session.lock().await;
        for _ in 0..=MAX_REFRESHES {
            let body = json!({
                "orchestrator": STANDARD.encode(&s.bytes),
                "inPixels": units,
                "ManifestID": manifest,
                "capabilities": STANDARD.encode(net::Capabilities::from(&caps).encode_to_vec()),
                "state": s.state,
            });
            let resp = self
                .http
                .post(self.endpoint.clone())
                .json(&body)
                .send()
                .await
                .map_err(|e| PayError::Refused(format!("remote signer: {e}")))?;
            match resp.status().as_u16() {
                200 => {
                    let answer: Value = resp
                        .json()
                        .await
                        .map_err(|e| PayError::Refused(format!("remote signer answer: {e}")))?;
                    let (Some(payment), Some(segment)) =
                        (answer["payment"].as_str(), answer["segCreds"].as_str())
                    else {
                        return Err(PayError::Refused("remote signer answer lacks payment".into()));
                    };
                    let out = RemotePayment {
                        payment: payment.to_owned(),
                        segment: segment.to_owned(),
                        info: s.info.clone(),
                    };
                    s.state = Some(answer["state"].clone());
                    return Ok(Some(out));
                }
                480 => {
                    // Fresh OrchestratorInfo, same state.
                    let (info, bytes) =
                        self.client.get_orchestrator_with_bytes(url, Some(&caps), true).await?;
                    s.info = Arc::new(info);
                    s.bytes = bytes;
                }
                // Live payers skip the cycle (PROTOCOL.md §11.2, as the Python SDK does).
                482 => return Err(PayError::NotNeeded),
                status => {
                    let text = resp.text().await.unwrap_or_default();
                    return Err(PayError::Refused(format!(
                        "remote signer answered {status}: {}",
                        text.trim()
                    )));
                }
            }
        }
        Err(PayError::Refused("remote signer kept asking for a session refresh".into()))
    }

    /// Has the signer sign a BYOC job (`POST {signer}/sign-byoc-job`, the Python SDK's route;
    /// go-livepeer's signer has none): `(sender, sig)` for the job request, the signature
    /// checked to be the sender's over `request ‖ parameters`, as the orchestrator checks it.
    pub(super) async fn sign_byoc_job(
        &self,
        job: &super::ByocJobFields<'_>,
    ) -> Result<(String, String), PayError> {
        let body = json!({
            "id": job.id,
            "capability": job.capability,
            "request": job.request,
            "parameters": job.parameters,
            "timeout_seconds": job.timeout_seconds,
        });
        let refused = |m: String| PayError::Refused(format!("remote signer, BYOC job: {m}"));
        let resp = self
            .http
            .post(self.sign_job.clone())
            .json(&body)
            .send()
            .await
            .map_err(|e| refused(e.to_string()))?;
        match resp.status().as_u16() {
            200 => {}
            404 => return Err(refused("the signer has no /sign-byoc-job route".into())),
            status => {
                let text = resp.text().await.unwrap_or_default();
                let text: String = text.trim().chars().take(200).collect();
                return Err(refused(format!("answered {status}: {text}")));
            }
        }
        #[derive(serde::Deserialize)]
        struct Answer {
            sender: String,
            signature: String,
        }
        let answer: Answer = resp.json().await.map_err(|e| refused(e.to_string()))?;
        let sender: Address = answer.sender.parse().map_err(|e| refused(format!("sender: {e}")))?;
        let sig = hex::decode(answer.signature.trim_start_matches("0x"))
            .map_err(|e| refused(format!("signature: {e}")))?;
        let message = [job.request.as_bytes(), job.parameters.as_bytes()].concat();
        match recover_eth_signer(&message, &sig) {
            Ok(who) if who == sender => {
                Ok((sender.to_checksum(None), format!("0x{}", hex::encode(&sig))))
            }
            _ => {
                Err(refused("the signature is not the sender's over request and parameters".into()))
            }
        }
    }

    /// Forgets the session (after the orchestrator refused a payment).
    pub(super) fn reset(&self, url: &Url, key: &JobKey) {
        self.forget(url, key, &ai_manifest_id(key.capability, &key.model));
    }

    /// Forgets the session of one manifest id (a live stream that ended).
    pub(super) fn forget(&self, url: &Url, key: &JobKey, manifest: &str) {
        if let Ok(mut map) = self.sessions.lock() {
            map.remove(&(url.to_string(), key.clone(), manifest.to_owned()));
        }
    }

    async fn session(
        &self,
        url: &Url,
        key: &JobKey,
        manifest: &str,
        caps: &Capabilities,
    ) -> Result<SharedSession, PayError> {
        let map_key = (url.to_string(), key.clone(), manifest.to_owned());
        if let Some(found) = self.sessions.lock().ok().and_then(|m| m.get(&map_key).cloned()) {
            return Ok(found);
        }
        let (info, bytes) = self.client.get_orchestrator_with_bytes(url, Some(caps), true).await?;
        let session =
            Arc::new(tokio::sync::Mutex::new(Session { info: Arc::new(info), bytes, state: None }));
        let mut map =
            self.sessions.lock().map_err(|_| PayError::Internal("sessions lock".into()))?;
        Ok(map.entry(map_key).or_insert(session).clone())
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
