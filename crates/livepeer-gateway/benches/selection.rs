//! Selection speed: one `Pool::select` (the request path: snapshot load, power of two choices,
//! lease bookkeeping, metrics) from pools of 10, 100 and 10,000 orchestrators, and the pure
//! ranking alone. Also prints the memory a pool of 10,000 holds (RSS growth while building it).
//!
//! Run: `cargo bench -p livepeer-gateway --bench selection`
#![allow(clippy::unwrap_used, reason = "a benchmark's setup may panic")]

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use livepeer_gateway::metrics::Metrics;
use livepeer_gateway::orchestrator::caps::{Capabilities, ModelConstraint};
use livepeer_gateway::orchestrator::health::{EjectPolicy, HealthState};
use livepeer_gateway::orchestrator::info::{CapabilityPrice, OrchInfo};
use livepeer_gateway::orchestrator::price::Price;
use livepeer_gateway::orchestrator::selection::Weights;
use livepeer_gateway::orchestrator::{JobKey, Pool, PoolConfig, Requirements};

const MODELS: [(u32, &str); 4] = [
    (27, "stabilityai/sd-turbo"),
    (27, "ByteDance/SDXL-Lightning"),
    (33, "meta-llama/Meta-Llama-3.1-8B-Instruct"),
    (31, "openai/whisper-large-v3"),
];

fn info(i: usize) -> OrchInfo {
    let mut caps = Capabilities::transcode_job("");
    caps.version = "0.9.1".into();
    let mut prices = Vec::new();
    for (j, (cap, model)) in MODELS.iter().enumerate() {
        caps.set(*cap);
        let mc = ModelConstraint {
            warm: !(i + j).is_multiple_of(3),
            capacity: 4,
            runner_version: "0.14.1".into(),
            capacity_in_use: 0,
        };
        caps.per_capability.entry(*cap).or_default().insert((*model).into(), mc);
        let price = Price::new(1 + (i as i64 * 7919) % 1000, 1).unwrap();
        prices.push(CapabilityPrice { capability: *cap, constraint: (*model).into(), price });
    }
    OrchInfo {
        transcoder: format!("https://10.0.{}.{}:8935", i / 250, i % 250),
        address: None,
        price: Price::ZERO,
        capability_prices: prices,
        capabilities: Some(caps),
        ticket_params: None,
        auth_token: None,
        rtt: Duration::from_millis(5),
    }
}

fn pool(n: usize) -> Pool {
    let config = PoolConfig {
        refresh_interval: Duration::from_secs(60),
        probe_interval: Duration::from_secs(1),
        eject: EjectPolicy::default(),
        weights: Weights::default(),
        requirements: Requirements {
            // Half the orchestrators are above this cap, as in a real, mixed network.
            max_price: Some(Price::new(500, 1).unwrap()),
            ..Requirements::default()
        },
        max_concurrent_calls: 256,
    };
    let infos = (0..n)
        .map(|i| (format!("https://orch-{i}.example:8935").parse().unwrap(), info(i)))
        .collect();
    Pool::fixed(config, infos, Metrics::new())
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn bench(c: &mut Criterion) {
    let before = rss_kib();
    let big = pool(10_000);
    let after = rss_kib();
    eprintln!(
        "memory: pool of 10000 orchestrators (4 models each) grew RSS by {} KiB ({} bytes per orchestrator)",
        after.saturating_sub(before),
        after.saturating_sub(before) * 1024 / 10_000
    );
    let key = JobKey::ai("text-to-image", "stabilityai/sd-turbo").unwrap();
    let mut group = c.benchmark_group("select");
    for n in [10usize, 100, 10_000] {
        let p = if n == 10_000 { big.clone() } else { pool(n) };
        group.bench_with_input(BenchmarkId::new("pool_select", n), &p, |b, p| {
            b.iter(|| {
                let lease = p.select(black_box(&key), &[]).unwrap();
                lease.succeeded();
            })
        });
        // Baseline in the same run: the straightforward way, a scan of every orchestrator for
        // the model, the price cap and health, keeping the lowest latency.
        let max = Price::new(500, 1).unwrap();
        group.bench_with_input(BenchmarkId::new("baseline_linear_scan", n), &p, |b, p| {
            b.iter(|| {
                let snap = p.snapshot();
                let now = p.now_ms();
                let best = snap
                    .slots
                    .iter()
                    .filter(|s| s.stats.breaker.state(now) != HealthState::Ejected)
                    .filter_map(|s| {
                        let info = s.info.as_deref()?;
                        let caps = info.capabilities.as_ref()?;
                        caps.per_capability.get(&key.capability)?.get(&key.model)?;
                        let price = info.price_for(key.capability, &key.model);
                        (price <= max).then_some((s.stats.latency_us(), s))
                    })
                    .min_by_key(|(latency, _)| *latency);
                black_box(best.map(|(_, s)| s.url.as_str().len()))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
