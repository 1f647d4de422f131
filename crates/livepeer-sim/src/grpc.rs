//! The simulator's `net.Orchestrator` service: GetOrchestrator as go-livepeer answers it
//! (server/rpc.go `getOrchestrator`, `orchestratorInfoWithCaps`), plus the other two RPCs.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use livepeer_pm::{keccak256, recover_eth_signer};
use livepeer_proto::net::{self, capabilities, orchestrator_server::Orchestrator};
use rand::Rng;
use tonic::{Request, Response, Status};

use crate::{Mode, Shared, payment};

/// Capability ids of the AI pipelines (PROTOCOL.md §3.1).
pub(crate) fn pipeline_capability(pipeline: &str) -> Option<u32> {
    Some(match pipeline {
        "text-to-image" => 27,
        "image-to-image" => 28,
        "image-to-video" => 29,
        "upscale" => 30,
        "audio-to-text" => 31,
        "segment-anything-2" => 32,
        "llm" => 33,
        "image-to-text" => 34,
        "live-video-to-video" => 35,
        "text-to-speech" => 36,
        _ => return None,
    })
}

/// go-livepeer's default capabilities, advertised by every orchestrator.
const DEFAULT_CAPABILITIES: [u32; 15] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 26];

#[derive(Debug, Clone)]
pub(crate) struct Service(pub(crate) Arc<Shared>);

#[tonic::async_trait]
impl Orchestrator for Service {
    async fn get_orchestrator(
        &self,
        request: Request<net::OrchestratorRequest>,
    ) -> Result<Response<net::OrchestratorInfo>, Status> {
        let shared = &self.0;
        shared.calls.fetch_add(1, Relaxed);
        let req = request.into_inner();
        if let Ok(mut last) = shared.last_request.lock() {
            *last = Some(req.clone());
        }
        let mode = shared.mode.lock().map(|m| m.clone()).unwrap_or_default();
        let (delay, fail) = {
            let mut rng = rand::rng();
            let jitter = shared.config.jitter.as_micros() as u64;
            let extra = if jitter == 0 { 0 } else { rng.random_range(0..jitter) };
            let ppm = shared.error_rate_ppm.load(Relaxed);
            let fail = ppm > 0 && rng.random_range(0..1_000_000) < ppm;
            (Duration::from_micros(shared.latency_us.load(Relaxed) + extra), fail)
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        match mode {
            Mode::Fail(msg) => return Err(Status::unknown(msg)),
            // Hang and Garbage are handled in front of the gRPC service (server.rs).
            Mode::Normal | Mode::Hang | Mode::Garbage => {}
        }
        if fail {
            return Err(Status::unknown("Invalid orchestrator request: OrchestratorCapped"));
        }
        if shared.config.eth_address.is_some() && !req.address.is_empty() {
            check_sig(&req)?;
        }
        info(shared, &req).map(Response::new)
    }

    /// Ends the transcoding session of a valid auth token, as go-livepeer does when a
    /// gateway discards a session: its renditions go and its place under the session cap is
    /// freed.
    async fn end_transcoding_session(
        &self,
        request: Request<net::EndTranscodingSessionRequest>,
    ) -> Result<Response<net::EndTranscodingSessionResponse>, Status> {
        let shared = &self.0;
        let token = request.into_inner().auth_token.unwrap_or_default();
        if token.token != auth_token(&shared.auth_secret, &token.session_id, token.expiration) {
            return Err(Status::unknown("Invalid auth token"));
        }
        shared.transcode.end_session(&token.session_id);
        Ok(Response::new(net::EndTranscodingSessionResponse {}))
    }

    async fn ping(
        &self,
        request: Request<net::PingPong>,
    ) -> Result<Response<net::PingPong>, Status> {
        // A real orchestrator signs the value; without a key we echo its hash.
        let value = keccak256(request.into_inner().value).to_vec();
        Ok(Response::new(net::PingPong { value }))
    }
}

/// The check an on-chain orchestrator makes: `sig` is `eth_sign` of the checksummed address.
fn check_sig(req: &net::OrchestratorRequest) -> Result<(), Status> {
    let refused =
        || Status::unknown("Invalid orchestrator request: orchestrator req sig check failed");
    if req.address.len() != 20 {
        return Err(refused());
    }
    let address = livepeer_pm::Address::from_slice(&req.address);
    let text = address.to_checksum(None);
    match recover_eth_signer(text.as_bytes(), &req.sig) {
        Ok(signer) if signer == address => Ok(()),
        _ => Err(refused()),
    }
}

/// The answer to one GetOrchestrator call. On chain, its ticket params are issued for the
/// address in the request and for the `price_info` of this very answer, which is what the
/// gateway must echo as `expected_price` (go-livepeer `orchestratorInfoWithCaps`).
pub(crate) fn info(
    shared: &Shared,
    req: &net::OrchestratorRequest,
) -> Result<net::OrchestratorInfo, Status> {
    let config = &shared.config;
    let caps = advertised(shared);
    let base = price(config.base_price, 0, "");
    let (price_info, capabilities_prices) = match &req.capabilities {
        // "All prices" mode: base price plus one entry per (capability, model).
        None => {
            let mut list: Vec<_> = config
                .models
                .iter()
                .filter_map(|m| Some(price(m.price, pipeline_capability(&m.pipeline)?, &m.model)))
                .collect();
            list.extend(crate::byoc::capability_prices(shared));
            (base, list)
        }
        Some(asked) => (priced_for(shared, asked).unwrap_or(base), Vec::new()),
    };
    // go-livepeer reads the address with `BytesToAddress`: an off-chain gateway's empty (or
    // all-zero) address gets params for the zero address, which no ticket can use.
    let sender = payment::bytes_to_address(&req.address);
    let ticket_params =
        shared.payments.ticket_params(sender, &price_info).map_err(Status::unknown)?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let session_id = format!("{:08x}", rand::rng().random::<u32>());
    let expiration = now.saturating_add(config.auth_token_lifetime.as_secs()) as i64;
    Ok(net::OrchestratorInfo {
        transcoder: shared.service_url().to_owned(),
        ticket_params,
        price_info: Some(price_info),
        address: config.eth_address.map(|a| a.to_vec()).unwrap_or_default(),
        capabilities: Some(caps),
        auth_token: Some(net::AuthToken {
            token: auth_token(&shared.auth_secret, &session_id, expiration),
            session_id,
            expiration,
        }),
        hardware: Vec::new(),
        storage: Vec::new(),
        capabilities_prices,
        nodes: Vec::new(),
    })
}

/// With capabilities in the request, go-livepeer charges the sum of the prices of the requested
/// (capability, model) pairs it has; `None` when it has none of them.
fn priced_for(shared: &Shared, asked: &net::Capabilities) -> Option<net::PriceInfo> {
    let per = asked.constraints.as_ref().map(|c| &c.per_capability);
    let mut total: Option<(i128, i128)> = None;
    for m in &shared.config.models {
        let Some(cap) = pipeline_capability(&m.pipeline) else { continue };
        let wanted = asked.capacities.contains_key(&cap)
            && per.and_then(|p| p.get(&cap)).is_some_and(|c| c.models.contains_key(&m.model));
        if !wanted {
            continue;
        }
        let (n, d) = (i128::from(m.price.0), i128::from(m.price.1.max(1)));
        total = Some(match total {
            None => (n, d),
            Some((tn, td)) => reduce(tn * d + n * td, td * d),
        });
    }
    let (n, d) = total?;
    let (n, d) = (i64::try_from(n).ok()?, i64::try_from(d).ok()?);
    (n > 0).then(|| price((n, d), 0, ""))
}

fn reduce(n: i128, d: i128) -> (i128, i128) {
    let (mut a, mut b) = (n.abs(), d.abs());
    while b != 0 {
        (a, b) = (b, a % b);
    }
    if a <= 1 { (n, d) } else { (n / a, d / a) }
}

fn price((per_unit, pixels): (i64, i64), capability: u32, constraint: &str) -> net::PriceInfo {
    net::PriceInfo {
        price_per_unit: per_unit,
        pixels_per_unit: pixels,
        capability,
        constraint: constraint.to_owned(),
    }
}

/// The token for a (session id, expiration) pair: a MAC under the simulator's secret, as
/// go-livepeer's `AuthToken` is an HMAC of the same two values. Keccak-256 of key ‖ message is
/// a sound MAC (no length extension), and checking a token is recomputing it.
pub(crate) fn auth_token(secret: &[u8; 32], session_id: &str, expiration: i64) -> Vec<u8> {
    let mut message = secret.to_vec();
    message.extend_from_slice(&expiration.to_be_bytes());
    message.extend_from_slice(session_id.as_bytes());
    keccak256(message).to_vec()
}

pub(crate) fn advertised(shared: &Shared) -> net::Capabilities {
    let config = &shared.config;
    let mut bits = vec![0u64];
    let mut set = |id: u32| {
        let word = (id / 64) as usize;
        if bits.len() <= word {
            bits.resize(word + 1, 0);
        }
        bits[word] |= 1 << (id % 64);
    };
    let mut capacities = HashMap::new();
    for id in DEFAULT_CAPABILITIES.iter().chain(&config.extra_capabilities) {
        set(*id);
        capacities.insert(*id, 1);
    }
    let mut per: HashMap<u32, capabilities::CapabilityConstraints> = HashMap::new();
    for m in &config.models {
        let Some(cap) = pipeline_capability(&m.pipeline) else { continue };
        set(cap);
        *capacities.entry(cap).or_insert(0) += m.capacity;
        per.entry(cap).or_default().models.insert(
            m.model.clone(),
            capabilities::capability_constraints::ModelConstraint {
                warm: m.warm,
                capacity: m.capacity,
                runner_version: m.runner_version.clone(),
                capacity_in_use: 0,
            },
        );
    }
    // Last: a capability the test removes is gone whatever else set it.
    for id in &config.missing_capabilities {
        if let Some(word) = bits.get_mut((id / 64) as usize) {
            *word &= !(1 << (id % 64));
        }
        capacities.remove(id);
    }
    net::Capabilities {
        bitstring: bits,
        mandatories: Vec::new(),
        capacities,
        version: config.version.clone(),
        constraints: Some(capabilities::Constraints {
            min_version: String::new(),
            per_capability: per,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_are_reduced() {
        assert_eq!(reduce(6, 4), (3, 2));
        assert_eq!(reduce(5, 1), (5, 1));
    }
}
