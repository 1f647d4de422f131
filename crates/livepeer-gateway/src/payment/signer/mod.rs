//! The remote-signer server (PROTOCOL.md §11): a gateway holding a key signs for keyless
//! gateways and SDK clients. It answers four calls, each only with the API key configured
//! and presented (`Authorization: Bearer <key>`):
//! - `POST /sign-orchestrator-info`: its address and `eth_sign` of it ([`SignerState::identity`]);
//! - `GET /discover-orchestrators`: its pool, webhook-compatible ([`SignerState::discover`]);
//! - `POST /generate-live-payment`: a payment on the client's behalf ([`SignerState::pay`]),
//!   in pure steps: `request` decodes, `state` verifies, `bill` charges, `pay` signs;
//! - `POST /sign-byoc-job`: its address and `eth_sign` of a BYOC job request, for the Python
//!   SDK's `Livepeer` header ([`SignerState::sign_job`], `job` checks the body).
//!
//! Nothing here knows HTTP: refusals are [`Refusal`]s, which the HTTP edge's signer routes
//! turn into statuses and bodies.

mod bill;
mod job;
mod pay;
mod refusal;
mod request;
mod state;

use std::sync::Arc;

use livepeer_pm::{LocalSigner, Signature};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

pub use job::JobSignRequest;
pub use pay::PaymentAnswer;
pub use refusal::Refusal;
pub use request::PaymentRequest;

use crate::orchestrator::SharedRequirements;
use crate::orchestrator::snapshot::Tiers;
use crate::orchestrator::{JobKey, Pool};

/// State of the signer routes; cheap to clone.
#[derive(Debug, Clone)]
pub struct SignerState {
    signer: Arc<LocalSigner>,
    /// `eth_sign` of the checksummed address, computed once.
    signature: Signature,
    api_key: Arc<SecretString>,
    pool: Pool,
    /// What a sender checks before it signs tickets (go-livepeer's `validateTicketParams`):
    /// the local payer's limits, funds and block, and the operator's price caps.
    checks: Checks,
}

/// The sender checks of the signer's payments; none by default.
#[derive(Debug, Clone, Default)]
pub(super) struct Checks {
    /// The ticket sender of this gateway's key: its EV and total EV limits, and with a chain
    /// its funds and the block ticket params expire against.
    pub(super) payer: Option<crate::payment::LocalPayer>,
    /// The operator's price caps (`--max-price-per-unit`, `--max-price-per-capability`, and
    /// their runtime changes).
    pub(super) caps: SharedRequirements,
}

impl SignerState {
    /// A signer with `signer`'s key, answering callers that present `api_key`, listing `pool`.
    pub fn new(
        signer: Arc<LocalSigner>,
        api_key: SecretString,
        pool: Pool,
    ) -> Result<Self, String> {
        let text = signer.address().to_checksum(None);
        let signature = signer.eth_sign(text.as_bytes()).map_err(|e| e.to_string())?;
        Ok(Self { signer, signature, api_key: Arc::new(api_key), pool, checks: Checks::default() })
    }

    /// This signer, checking each payment as `payer` checks its own (ticket EV, total EV,
    /// funds, expiry) and within the price caps of `caps`, as go-livepeer's signer runs the
    /// sender's checks before it makes tickets. Without them it would sign whatever terms the
    /// orchestrator info a client brings names: a ticket worth more than the fee, or one that
    /// always wins.
    pub fn with_sender_checks(
        mut self,
        payer: Option<crate::payment::LocalPayer>,
        caps: SharedRequirements,
    ) -> Self {
        self.checks = Checks { payer, caps };
        self
    }

    /// Admits a caller whose `Authorization` value is `authorization`: the API key, as a bearer
    /// token, compared in constant time. An empty key admits nobody. The scheme's case does
    /// not matter (RFC 7235 §2.1: `bearer` is `Bearer`).
    pub fn authorize(&self, authorization: Option<&str>) -> Result<(), Refusal> {
        let presented = authorization.and_then(bearer_token).unwrap_or("");
        let expected = self.api_key.expose_secret().as_bytes();
        if bool::from(presented.as_bytes().ct_eq(expected)) && !expected.is_empty() {
            return Ok(());
        }
        Err(Refusal::Unauthorized)
    }

    /// The signer's identity: `{"address", "signature"}` (checksummed, `0x` hex).
    pub fn identity(&self) -> Value {
        json!({
            "address": self.signer.address().to_checksum(None),
            "signature": format!("0x{}", hex::encode(self.signature.0)),
        })
    }

    /// `[{"address", "score": 1, "capabilities": ["pipeline/model", …]}]`: orchestrators the
    /// pool can use, each with the (pipeline, model) pairs it offers within the price caps.
    /// `query`'s `caps` filter keeps those offering any of them (empty values filter nothing).
    /// As go-livepeer's: a filter matching nothing is an empty list (clients such as the
    /// Python SDK read it as "none for that capability"); only a pool with no usable
    /// orchestrator at all is [`Refusal::NoOrchestrators`].
    pub fn discover(&self, query: Option<&str>) -> Result<Vec<Value>, Refusal> {
        // `caps` may repeat (and clients leave its `/` unescaped), so read the query by hand.
        let wanted: Vec<String> = url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .filter(|(k, v)| k == "caps" && !v.is_empty())
            .map(|(_, v)| v.into_owned())
            .collect();
        let snap = self.pool.snapshot();
        let mut per_orch: Vec<(String, Vec<String>)> = Vec::new();
        let mut keys: Vec<(&JobKey, &Tiers)> = snap.index.iter().collect();
        keys.sort_by(|a, b| a.0.cmp(b.0));
        let mut pool_empty = true;
        for (key, tiers) in keys {
            if key.model.is_empty() {
                continue;
            }
            let name = key.to_string();
            let listed = wanted.is_empty() || wanted.contains(&name);
            for entry in tiers.warm.iter().chain(&tiers.cold) {
                let Some(slot) = snap.slots.get(entry.orch as usize) else { continue };
                pool_empty = false;
                if !listed {
                    break;
                }
                let url = slot.url.as_str().trim_end_matches('/').to_owned();
                match per_orch.iter_mut().find(|(u, _)| *u == url) {
                    Some((_, caps)) => caps.push(name.clone()),
                    None => per_orch.push((url, vec![name.clone()])),
                }
            }
        }
        if pool_empty {
            return Err(Refusal::NoOrchestrators);
        }
        Ok(per_orch
            .into_iter()
            .map(|(address, capabilities)| json!({"address": address, "score": 1, "capabilities": capabilities}))
            .collect())
    }

    /// `{"sender", "signature"}` for a BYOC job (`/sign-byoc-job`): the checksummed address and
    /// `0x` hex of `eth_sign(request ‖ parameters)`, which the orchestrator verifies.
    pub fn sign_job(&self, req: &JobSignRequest) -> Result<Value, Refusal> {
        let sig = self.signer.eth_sign(&req.message()).map_err(|e| Refusal::internal(&e))?;
        Ok(json!({
            "sender": self.signer.address().to_checksum(None),
            "signature": format!("0x{}", hex::encode(sig.0)),
        }))
    }

    /// Pays an orchestrator for a keyless client (`/generate-live-payment`).
    pub fn pay(&self, req: &PaymentRequest) -> Result<PaymentAnswer, Refusal> {
        pay::generate(&self.signer, req, &self.checks)
    }
}

/// The token of a `Bearer` credential: the scheme in any case, then one or more spaces.
fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim_start_matches(' '))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::orchestrator::health::EjectPolicy;
    use crate::orchestrator::selection::Weights;
    use crate::orchestrator::{
        Discovery, OrchClient, PoolConfig, Requirements, Timeouts, TlsTrust,
    };
    use crate::task::Tasks;
    use std::time::Duration;

    async fn signer(api_key: &str) -> SignerState {
        let timeouts = Timeouts { connect: Duration::from_secs(1), call: Duration::from_secs(1) };
        let client = OrchClient::new(timeouts, TlsTrust::AcceptAny, None);
        let config = PoolConfig {
            refresh_interval: Duration::from_secs(60),
            probe_interval: Duration::from_secs(60),
            eject: EjectPolicy::default(),
            weights: Weights::default(),
            requirements: Requirements::default(),
            max_concurrent_calls: 1,
        };
        let pool =
            Pool::start(config, client, Discovery::Static(vec![]), Metrics::new(), &Tasks::new())
                .await;
        let key = Arc::new(LocalSigner::from_bytes(&[6; 32]).unwrap());
        SignerState::new(key, api_key.to_owned().into(), pool).unwrap()
    }

    #[tokio::test]
    async fn only_the_api_key_is_admitted() {
        let s = signer("k3y").await;
        for right in ["Bearer k3y", "bearer k3y", "BEARER  k3y"] {
            assert_eq!(s.authorize(Some(right)), Ok(()), "{right}");
        }
        let wrong = [
            None,
            Some("k3y"),
            Some("Bearer k3"),
            Some("Bearer k3yy"),
            Some("Basic k3y"),
            Some("Bearerk3y"),
            Some("Bearer\tk3y"),
        ];
        for wrong in wrong {
            assert_eq!(s.authorize(wrong), Err(Refusal::Unauthorized), "{wrong:?}");
        }
        let empty = signer("").await;
        assert_eq!(empty.authorize(Some("Bearer ")), Err(Refusal::Unauthorized));
    }

    #[tokio::test]
    async fn identity_is_the_signed_address() {
        let s = signer("k").await;
        let id = s.identity();
        let address: livepeer_pm::Address = id["address"].as_str().unwrap().parse().unwrap();
        let sig = hex::decode(id["signature"].as_str().unwrap().trim_start_matches("0x")).unwrap();
        let text = address.to_checksum(None);
        assert_eq!(livepeer_pm::recover_eth_signer(text.as_bytes(), &sig).unwrap(), address);
        assert_eq!(s.discover(Some("caps=llm/m")), Err(Refusal::NoOrchestrators), "empty pool");
    }

    #[tokio::test]
    async fn a_job_signature_recovers_to_the_sender() {
        let s = signer("k").await;
        let body = br#"{"capability": "c", "request": "{\"a\": 1}", "parameters": "{}"}"#;
        let answer = s.sign_job(&JobSignRequest::parse(body).unwrap()).unwrap();
        let sender: livepeer_pm::Address = answer["sender"].as_str().unwrap().parse().unwrap();
        assert_eq!(sender, s.signer.address());
        assert_eq!(answer["sender"], sender.to_checksum(None), "checksummed");
        let text = answer["signature"].as_str().unwrap();
        assert_eq!(text.len(), 2 + 130, "0x and 65 bytes: {text}");
        let sig = hex::decode(text.strip_prefix("0x").unwrap()).unwrap();
        // What go-livepeer's orchestrator verifies: eth_sign of request ‖ parameters.
        assert_eq!(livepeer_pm::recover_eth_signer(br#"{"a": 1}{}"#, &sig).unwrap(), sender);
        assert_ne!(livepeer_pm::recover_eth_signer(br#"{"a": 1}"#, &sig).ok(), Some(sender));
    }
}
