//! Orchestrator protobuf answers: `OrchestratorInfo` from GetOrchestrator (and inside
//! remote-signer bodies), converted into the gateway's types and indexed into a snapshot.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use livepeer_gateway::metrics::Metrics;
use livepeer_gateway::orchestrator::caps::{self, Capabilities};
use livepeer_gateway::orchestrator::health::{EjectPolicy, OrchStats};
use livepeer_gateway::orchestrator::info::OrchInfo;
use livepeer_gateway::orchestrator::selection::Weights;
use livepeer_gateway::orchestrator::snapshot::{self, Slot, Snapshot};
use livepeer_gateway::orchestrator::{JobKey, Pool, PoolConfig, Requirements, normalize_orch_addr};
use livepeer_proto::{Message, net};
use net::capabilities::capability_constraints::ModelConstraint;
use net::capabilities::{CapabilityConstraints, Constraints};
use rand::Rng;
use rand::rngs::SmallRng;

use super::mutate;
use super::targets::Env;

/// A pool with no orchestrators, for the signer.
pub fn empty_pool() -> Pool {
    let config = PoolConfig {
        refresh_interval: Duration::from_secs(60),
        probe_interval: Duration::from_secs(60),
        eject: EjectPolicy::default(),
        weights: Weights::default(),
        requirements: Requirements::default(),
        max_concurrent_calls: 1,
    };
    Pool::fixed(config, Vec::new(), Metrics::new())
}

/// Capabilities offering text-to-image and the LLM.
pub fn capabilities() -> net::Capabilities {
    let model = |capacity| ModelConstraint {
        warm: true,
        capacity,
        runner_version: "0.14.1".into(),
        capacity_in_use: 0,
    };
    let per = |name: &str, capacity| CapabilityConstraints {
        models: HashMap::from([(name.to_owned(), model(capacity))]),
    };
    net::Capabilities {
        bitstring: vec![(1 << 27) | (1 << 33) | (1 << 35) | 1],
        mandatories: vec![0],
        capacities: HashMap::from([(27, 4), (33, 8)]),
        version: "0.9.1".into(),
        constraints: Some(Constraints {
            min_version: String::new(),
            per_capability: HashMap::from([
                (27, per("sd", 4)),
                (33, per("llama", 8)),
                (35, per("noop", 2)),
            ]),
        }),
    }
}

/// An info the remote signer can pay: price, ticket params, address and auth token.
pub fn payable_info() -> net::OrchestratorInfo {
    net::OrchestratorInfo {
        transcoder: "https://o.example:8935".into(),
        price_info: Some(net::PriceInfo {
            price_per_unit: 3,
            pixels_per_unit: 2,
            ..Default::default()
        }),
        ticket_params: Some(net::TicketParams {
            recipient: vec![7; 20],
            face_value: vec![0x03, 0xe8],
            win_prob: vec![0xff; 32],
            recipient_rand_hash: vec![1; 32],
            seed: vec![2; 32],
            expiration_block: vec![0x10, 0x00],
            expiration_params: None,
        }),
        address: vec![7; 20],
        capabilities: Some(capabilities()),
        auth_token: Some(net::AuthToken {
            token: vec![1],
            session_id: "s".into(),
            expiration: i64::MAX,
        }),
        capabilities_prices: vec![net::PriceInfo {
            price_per_unit: 5,
            pixels_per_unit: 1,
            capability: 27,
            constraint: "sd".into(),
        }],
        ..Default::default()
    }
}

fn bytes_of(rng: &mut SmallRng, max: usize) -> Vec<u8> {
    let n = match rng.random_range(0..5) {
        0 | 1 => 20,
        2 | 3 => 32,
        _ => rng.random_range(0..=max),
    };
    (0..n).map(|_| rng.random()).collect()
}

fn int(rng: &mut SmallRng) -> i64 {
    match rng.random_range(0..10) {
        0 => 0,
        1 => -rng.random_range(0..1000),
        2 => *[i64::MAX, i64::MIN, 1].get(rng.random_range(0..3)).unwrap_or(&1),
        _ => rng.random_range(1..1_000_000),
    }
}

/// Capabilities with random bits, capacities, versions and per-model constraints.
fn random_caps(rng: &mut SmallRng) -> net::Capabilities {
    let cap =
        |rng: &mut SmallRng| if rng.random() { rng.random_range(0..40) } else { rng.random() };
    let mut per_capability = HashMap::new();
    for _ in 0..rng.random_range(0..4) {
        let mut models = HashMap::new();
        // Now and then an orchestrator advertising hundreds of models.
        let most = if rng.random_range(0..50) == 0 { 400 } else { 4 };
        for _ in 0..rng.random_range(0..most) {
            let mc = ModelConstraint {
                warm: rng.random(),
                capacity: if rng.random() { rng.random_range(0..10) } else { rng.random() },
                runner_version: mutate::text(rng, "0.14.1"),
                capacity_in_use: rng.random(),
            };
            models.insert(mutate::text(rng, "model"), mc);
        }
        per_capability.insert(cap(rng), CapabilityConstraints { models });
    }
    net::Capabilities {
        bitstring: (0..rng.random_range(0..4)).map(|_| rng.random()).collect(),
        mandatories: (0..rng.random_range(0..3)).map(|_| rng.random()).collect(),
        capacities: (0..rng.random_range(0..4)).map(|_| (cap(rng), rng.random())).collect(),
        version: mutate::text(rng, "0.9.1"),
        constraints: rng
            .random::<bool>()
            .then(|| Constraints { min_version: mutate::text(rng, "0.8.0"), per_capability }),
    }
}

/// An `OrchestratorInfo` with every field random: lengths, signs, sizes and strings.
pub fn random_info(rng: &mut SmallRng) -> net::OrchestratorInfo {
    let price = |rng: &mut SmallRng| net::PriceInfo {
        price_per_unit: int(rng),
        pixels_per_unit: int(rng),
        capability: rng.random_range(0..40),
        constraint: mutate::text(rng, "sd"),
    };
    net::OrchestratorInfo {
        transcoder: if rng.random() {
            mutate::text(rng, "https://o.example:8935")
        } else {
            "https://o.example:8935".into()
        },
        ticket_params: rng.random::<bool>().then(|| net::TicketParams {
            recipient: bytes_of(rng, 40),
            face_value: bytes_of(rng, 40),
            win_prob: bytes_of(rng, 40),
            recipient_rand_hash: bytes_of(rng, 40),
            seed: bytes_of(rng, 40),
            expiration_block: bytes_of(rng, 40),
            expiration_params: rng.random::<bool>().then(|| net::TicketExpirationParams {
                creation_round: int(rng),
                creation_round_block_hash: bytes_of(rng, 40),
            }),
        }),
        price_info: rng.random::<bool>().then(|| price(rng)),
        address: bytes_of(rng, 25),
        capabilities: rng.random::<bool>().then(|| random_caps(rng)),
        auth_token: rng.random::<bool>().then(|| net::AuthToken {
            token: bytes_of(rng, 8),
            session_id: mutate::text(rng, "s"),
            expiration: int(rng),
        }),
        capabilities_prices: (0..rng.random_range(0..4)).map(|_| price(rng)).collect(),
        nodes: (0..rng.random_range(0..3)).map(|_| mutate::text(rng, "https://n:1")).collect(),
        ..Default::default()
    }
}

/// One case: a random or byte-mutated info, converted, checked against a random job and
/// indexed into a snapshot.
pub fn orch_info(rng: &mut SmallRng, env: &Env) {
    let wire = if rng.random() {
        random_info(rng)
    } else {
        let seed = payable_info().encode_to_vec();
        match net::OrchestratorInfo::decode(mutate::bytes(rng, &seed, &[]).as_slice()) {
            Ok(info) => info,
            Err(_) => return,
        }
    };
    let caps = wire.capabilities.as_ref().map(Capabilities::from);
    let Ok(info) = OrchInfo::from_wire(wire, Duration::from_millis(3)) else { return };
    env.accepted_if(true);
    let key = JobKey { capability: rng.random_range(0..40), model: mutate::text(rng, "sd") };
    let req = Requirements { min_version: mutate::text(rng, "0.8.0"), ..Requirements::default() };
    let _ = snapshot::compatible(&info, &key, &req);
    let job = Capabilities::ai_job(key.capability, &key.model, &mutate::text(rng, "0.1"), "");
    let _ = caps::compatible(&job, caps.as_ref());
    let _ = info.price_for(key.capability, &key.model);
    let _ = caps::version_at_least(&mutate::text(rng, "0.9.1"), &mutate::text(rng, "0.9.0"));
    let _ = normalize_orch_addr(&info.transcoder);
    let slot = Slot {
        url: "https://o.example:8935".parse().unwrap(),
        info: Some(Arc::new(info)),
        stats: Arc::new(OrchStats::default()),
        blocked: false,
        stake: 0.0,
    };
    let snap = Snapshot::build(vec![slot], &req, 1);
    assert_eq!(
        snap.jobs.len(),
        snap.index
            .values()
            .map(|t| t.warm.len() + t.cold.len() + t.over_price.len())
            .sum::<usize>()
    );
}
