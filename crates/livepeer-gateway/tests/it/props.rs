//! Property tests of the whole request path (`Pool::select` over a built snapshot): it never
//! returns an incompatible or over-price orchestrator, prefers warm models, and finds one
//! whenever one is eligible.

use std::time::Duration;

use livepeer_gateway::metrics::Metrics;
use livepeer_gateway::orchestrator::caps::{Capabilities, ModelConstraint};
use livepeer_gateway::orchestrator::health::EjectPolicy;
use livepeer_gateway::orchestrator::info::{CapabilityPrice, OrchInfo};
use livepeer_gateway::orchestrator::price::Price;
use livepeer_gateway::orchestrator::selection::Weights;
use livepeer_gateway::orchestrator::snapshot::compatible;
use livepeer_gateway::orchestrator::{JobKey, Pool, PoolConfig, Requirements};
use proptest::prelude::*;

const MODELS: [(u32, &str); 4] = [(27, "sd"), (27, "sdxl"), (33, "llama"), (36, "tts")];
const VERSIONS: [&str; 5] = ["", "0.8.0", "0.9.0", "0.9.1-rc1", "1.0.0"];
const RUNNERS: [&str; 4] = ["", "0.13.0", "0.14.0", "0.14.1"];

#[derive(Debug, Clone)]
struct Orch {
    version: usize,
    models: Vec<(usize, bool, u32, usize, i64)>, // model, warm, capacity, runner, price
    base_price: i64,
}

fn orch() -> impl Strategy<Value = Orch> {
    (
        0..VERSIONS.len(),
        proptest::collection::vec(
            (0..MODELS.len(), any::<bool>(), 0u32..3, 0..RUNNERS.len(), 0i64..100),
            0..5,
        ),
        0i64..100,
    )
        .prop_map(|(version, models, base_price)| Orch { version, models, base_price })
}

fn info(i: usize, o: &Orch) -> OrchInfo {
    let mut caps = Capabilities::transcode_job("");
    caps.version = VERSIONS[o.version].into();
    let mut prices = Vec::new();
    for (m, warm, capacity, runner, price) in &o.models {
        let (cap, model) = MODELS[*m];
        caps.set(cap);
        let mc = ModelConstraint {
            warm: *warm,
            capacity: *capacity,
            runner_version: RUNNERS[*runner].into(),
            capacity_in_use: 0,
        };
        caps.per_capability.entry(cap).or_default().insert(model.into(), mc);
        prices.push(CapabilityPrice {
            capability: cap,
            constraint: model.into(),
            price: Price::new(*price, 1).unwrap(),
        });
    }
    OrchInfo {
        transcoder: format!("https://o{i}:8935"),
        address: None,
        price: Price::new(o.base_price, 1).unwrap(),
        capability_prices: prices,
        capabilities: Some(caps),
        ticket_params: None,
        auth_token: None,
        rtt: Duration::from_millis(1),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn select_is_sound_and_complete(
        orchs in proptest::collection::vec(orch(), 1..12),
        min_version in 0..VERSIONS.len(),
        min_runner in proptest::option::of((0..MODELS.len(), 0..RUNNERS.len())),
        max_price in proptest::option::of(1i64..100),
        model_cap in proptest::option::of((0..MODELS.len(), 1i64..100)),
    ) {
        let mut req = Requirements { min_version: VERSIONS[min_version].into(), ..Requirements::default() };
        if let Some((m, r)) = min_runner {
            req.min_runner.insert((MODELS[m].0, MODELS[m].1.into()), RUNNERS[r].into());
        }
        req.max_price = max_price.map(|p| Price::new(p, 1).unwrap());
        if let Some((m, p)) = model_cap {
            req.max_price_per_model.insert((MODELS[m].0, MODELS[m].1.into()), Price::new(p, 1).unwrap());
        }
        let infos: Vec<_> = orchs.iter().enumerate().map(|(i, o)| (format!("https://o{i}:8935").parse().unwrap(), info(i, o))).collect();
        let config = PoolConfig {
            refresh_interval: Duration::from_secs(60),
            probe_interval: Duration::from_secs(1),
            eject: EjectPolicy::default(),
            weights: Weights::default(),
            requirements: req.clone(),
            max_concurrent_calls: 1,
        };
        let pool = Pool::fixed(config, infos.clone(), Metrics::new());
        for (cap, model) in MODELS {
            let key = JobKey { capability: cap, model: model.into() };
            // Eligible: offers the model, compatible, within the cap, capacity not zero-in-use.
            let eligible: Vec<(usize, bool)> = infos.iter().enumerate().filter_map(|(i, (_, inf))| {
                let mc = inf.capabilities.as_ref()?.per_capability.get(&cap)?.get(model)?;
                compatible(inf, &key, &req).ok()?;
                if req.max_price(&key).is_some_and(|m| inf.price_for(cap, model) > m) { return None; }
                Some((i, mc.warm))
            }).collect();
            let any_warm = eligible.iter().any(|(_, w)| *w);
            for _ in 0..5 {
                match pool.select(&key, &[]) {
                    Ok(lease) => {
                        let i: usize = lease.url().host_str().unwrap()[1..].parse().unwrap();
                        let hit = eligible.iter().find(|(j, _)| *j == i);
                        prop_assert!(hit.is_some(), "selected o{} for {} but it is not eligible", i, key);
                        prop_assert!(!any_warm || hit.unwrap().1, "cold o{} chosen while a warm one was eligible", i);
                        lease.succeeded();
                    }
                    Err(e) => prop_assert!(eligible.is_empty(), "{} had eligible {:?} but select said {}", key, eligible, e),
                }
            }
        }
    }
}
