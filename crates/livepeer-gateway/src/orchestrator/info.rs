//! `OrchestratorInfo` as the rest of the gateway sees it: validated, typed, free of prost.

use std::collections::HashSet;
use std::time::Duration;

use livepeer_pm::Address;
use livepeer_proto::net;

use super::caps::{Capabilities, capability_pipeline};
use super::price::Price;
use crate::job::{BYOC, H264};

/// Most BYOC capabilities taken from one orchestrator's answer, and the longest name kept:
/// the names are the orchestrator's to choose, and each becomes a job key with its own
/// statistics, breaker and (bounded again by the metrics) label.
pub const MAX_BYOC_CAPABILITIES: usize = 64;
/// The longest BYOC capability name indexed.
pub const MAX_BYOC_NAME: usize = 128;

/// What one orchestrator told us in its last GetOrchestrator answer.
#[derive(Debug, Clone)]
pub struct OrchInfo {
    /// Service URI for every HTTP call (`OrchestratorInfo.transcoder`).
    pub transcoder: String,
    /// Its Ethereum address, if on-chain.
    pub address: Option<Address>,
    /// Its base price for this gateway.
    pub price: Price,
    /// Prices per (capability, model); BYOC entries use capability 37.
    pub capability_prices: Vec<CapabilityPrice>,
    /// Its capabilities, `None` if it sent none (a legacy transcoder).
    pub capabilities: Option<Capabilities>,
    /// Ticket parameters, absent off-chain.
    pub ticket_params: Option<livepeer_pm::TicketParams>,
    /// Auth token for paid calls.
    pub auth_token: Option<AuthToken>,
    /// How long the GetOrchestrator call took.
    pub rtt: Duration,
}

/// A price for one capability and model.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CapabilityPrice {
    /// Capability id.
    pub capability: u32,
    /// Model id (or BYOC capability name); empty or `default` for the capability's default.
    pub constraint: String,
    /// The price.
    pub price: Price,
}

/// The orchestrator's session credential (opaque to us).
#[derive(Clone, PartialEq, Eq)]
pub struct AuthToken {
    /// HMAC bytes; never logged.
    pub token: Vec<u8>,
    /// Session id.
    pub session_id: String,
    /// Expiry, unix seconds.
    pub expiration: i64,
}

impl std::fmt::Debug for AuthToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthToken")
            .field("session_id", &self.session_id)
            .field("expiration", &self.expiration)
            .finish_non_exhaustive()
    }
}

/// The capability prices of an answer the gateway can ever look up, each (capability,
/// constraint) once, the first: a model's price for a model kept of `caps`, the `default` (or
/// unnamed) price of transcoding and of each pipeline, and BYOC names as the snapshot indexes
/// them. The list is the orchestrator's to make as long as its answer, and every job key's
/// price is looked up in it at every pool rebuild.
fn kept_prices<'a>(
    prices: &'a [net::PriceInfo],
    caps: Option<&'a Capabilities>,
) -> impl Iterator<Item = &'a net::PriceInfo> {
    let mut seen: HashSet<(u32, &str)> = HashSet::new();
    let mut byoc = 0;
    prices.iter().filter(move |p| {
        let name = p.constraint.as_str();
        let wanted = match p.capability {
            BYOC => !name.is_empty() && name.len() <= MAX_BYOC_NAME && byoc < MAX_BYOC_CAPABILITIES,
            _ if name.is_empty() || name == "default" => {
                p.capability == H264 || capability_pipeline(p.capability).is_some()
            }
            cap => caps
                .is_some_and(|c| c.per_capability.get(&cap).is_some_and(|m| m.contains_key(name))),
        };
        if !wanted || !seen.insert((p.capability, name)) {
            return false;
        }
        byoc += usize::from(p.capability == BYOC);
        true
    })
}

/// The longest auth token and session id taken. go-livepeer's are a 32-byte HMAC and a short
/// hex id; both go into every paid call's headers and the header cache's keys and values,
/// so an orchestrator's megabytes there would be held thousands of times.
const MAX_TOKEN_PART: usize = 512;
/// The longest transcoder URI taken: it is every call's base URL and a key of the pool.
const MAX_TRANSCODER_URI: usize = 2048;

/// Why an answer was not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Malformed(pub String);

// === impl OrchInfo ===

impl OrchInfo {
    /// Validates and converts a GetOrchestrator answer.
    pub fn from_wire(info: net::OrchestratorInfo, rtt: Duration) -> Result<Self, Malformed> {
        if info.transcoder.trim().is_empty() {
            return Err(Malformed("answer has no transcoder URI".into()));
        }
        let address = match info.address.len() {
            0 => None,
            20 => Some(Address::from_slice(&info.address)),
            n => return Err(Malformed(format!("address is {n} bytes, not 20"))),
        };
        let price = match &info.price_info {
            Some(p) => Price::try_from(p).map_err(|e| Malformed(e.to_string()))?,
            None => Price::ZERO,
        };
        let capabilities = info.capabilities.as_ref().map(Capabilities::from_orchestrator);
        let capability_prices = kept_prices(&info.capabilities_prices, capabilities.as_ref())
            .map(|p| {
                let price = Price::try_from(p).map_err(|e| Malformed(e.to_string()))?;
                Ok(CapabilityPrice {
                    capability: p.capability,
                    constraint: p.constraint.clone(),
                    price,
                })
            })
            .collect::<Result<_, Malformed>>()?;
        let ticket_params = info
            .ticket_params
            .as_ref()
            .map(livepeer_pm::TicketParams::from_proto)
            .transpose()
            .map_err(|e| Malformed(format!("ticket params: {e}")))?;
        let auth_token = info.auth_token.map(|t| AuthToken {
            token: t.token,
            session_id: t.session_id,
            expiration: t.expiration,
        });
        if let Some(t) = &auth_token
            && (t.token.len() > MAX_TOKEN_PART || t.session_id.len() > MAX_TOKEN_PART)
        {
            let why = format!("an auth token or session id over {MAX_TOKEN_PART} bytes");
            return Err(Malformed(why));
        }
        if info.transcoder.len() > MAX_TRANSCODER_URI {
            return Err(Malformed(format!("a transcoder URI over {MAX_TRANSCODER_URI} bytes")));
        }
        Ok(Self {
            transcoder: info.transcoder.trim_end_matches('/').to_owned(),
            address,
            price,
            capability_prices,
            capabilities,
            ticket_params,
            auth_token,
            rtt,
        })
    }

    /// This orchestrator's price for `model` of `capability`: the model's own entry, else the
    /// capability's `default` entry, else the base price (what the orchestrator charges when
    /// asked with capabilities, PROTOCOL.md §2.4).
    pub fn price_for(&self, capability: u32, model: &str) -> Price {
        let find = |name: &str| {
            self.capability_prices
                .iter()
                .find(|p| p.capability == capability && p.constraint == name)
                .map(|p| p.price)
        };
        find(model).or_else(|| find("default")).unwrap_or(self.price)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_whose_credentials_or_uri_run_long_is_malformed() {
        let answer = |token: usize, session: usize, uri: usize| net::OrchestratorInfo {
            transcoder: format!("https://{}", "o".repeat(uri)),
            auth_token: Some(net::AuthToken {
                token: vec![1; token],
                session_id: "s".repeat(session),
                expiration: 1,
            }),
            ..Default::default()
        };
        let read = |a| OrchInfo::from_wire(a, Duration::ZERO);
        assert!(read(answer(32, 16, 20)).is_ok());
        assert!(read(answer(MAX_TOKEN_PART, MAX_TOKEN_PART, 2000)).is_ok());
        for (t, s, u) in
            [(MAX_TOKEN_PART + 1, 16, 20), (32, MAX_TOKEN_PART + 1, 20), (32, 16, 2041)]
        {
            let e = read(answer(t, s, u)).unwrap_err();
            assert!(e.0.contains("over"), "{e}");
        }
    }
}
