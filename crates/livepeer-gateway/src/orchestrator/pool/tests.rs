use std::time::Duration;

use super::*;
use crate::orchestrator::caps::{Capabilities, ModelConstraint};
use crate::orchestrator::info::CapabilityPrice;

const T2I: (u32, &str) = (27, "sd");
const LLM: (u32, &str) = (33, "llama");

fn key((capability, model): (u32, &str)) -> JobKey {
    JobKey { capability, model: model.into() }
}

/// An orchestrator offering `models` as (capability, model, capacity), all warm and free.
fn info(models: &[(u32, &str, u32)]) -> OrchInfo {
    let mut caps = Capabilities::transcode_job("");
    let mut prices = Vec::new();
    for &(cap, model, capacity) in models {
        caps.set(cap);
        let mc = ModelConstraint { warm: true, capacity, ..ModelConstraint::default() };
        caps.per_capability.entry(cap).or_default().insert(model.into(), mc);
        prices.push(CapabilityPrice {
            capability: cap,
            constraint: model.into(),
            price: Price::ZERO,
        });
    }
    OrchInfo {
        transcoder: "https://orch.example:8935".into(),
        address: None,
        price: Price::ZERO,
        capability_prices: prices,
        capabilities: Some(caps),
        ticket_params: None,
        auth_token: None,
        rtt: Duration::from_millis(1),
    }
}

fn pool(orchs: &[&[(u32, &str, u32)]]) -> Pool {
    let config = PoolConfig {
        refresh_interval: Duration::from_secs(60),
        probe_interval: Duration::from_secs(1),
        eject: EjectPolicy { base: Duration::from_secs(10), max: Duration::from_secs(60) },
        weights: Weights::default(),
        requirements: Requirements::default(),
        max_concurrent_calls: 1,
    };
    let infos = orchs
        .iter()
        .enumerate()
        .map(|(i, m)| (format!("https://o{i}.example:8935").parse().unwrap(), info(m)))
        .collect();
    Pool::fixed(config, infos, Metrics::new())
}

#[tokio::test(start_paused = true)]
async fn a_job_failure_ejects_that_job_only_and_a_probe_brings_it_back() {
    let p = pool(&[&[(T2I.0, T2I.1, 0), (LLM.0, LLM.1, 0)]]);
    p.select(&key(T2I), &[]).unwrap().failed_job("HTTP 500".into());
    assert!(matches!(p.select(&key(T2I), &[]), Err(SelectError::Unavailable { .. })));
    let llm = p.select(&key(LLM), &[]).unwrap();
    assert!(!llm.is_probe());
    llm.succeeded();
    let stats = &p.snapshot().slots[0].stats;
    assert_eq!(stats.breaker.state(p.now_ms()), HealthState::Healthy);
    assert_eq!(stats.state(p.now_ms()), HealthState::Ejected, "the summary shows the job");
    assert!(stats.last_error().unwrap().message.contains("text-to-image/sd: HTTP 500"));
    // The cooldown ends: exactly one request probes the job key; its success closes it.
    tokio::time::advance(Duration::from_secs(10)).await;
    let probe = p.select(&key(T2I), &[]).unwrap();
    assert!(probe.is_probe());
    assert!(p.select(&key(T2I), &[]).is_err(), "one probe at a time");
    probe.succeeded();
    p.select(&key(T2I), &[]).unwrap().succeeded();
    assert_eq!(stats.state(p.now_ms()), HealthState::Healthy);
}

#[tokio::test(start_paused = true)]
async fn an_orchestrator_wide_failure_ejects_every_job() {
    let p = pool(&[&[(T2I.0, T2I.1, 0), (LLM.0, LLM.1, 0)]]);
    p.select(&key(T2I), &[]).unwrap().failed("connection refused".into());
    assert!(p.select(&key(T2I), &[]).is_err());
    assert!(p.select(&key(LLM), &[]).is_err());
    // A dropped probe is given back for the next request.
    tokio::time::advance(Duration::from_secs(10)).await;
    let probe = p.select(&key(LLM), &[]).unwrap();
    assert!(probe.is_probe());
    drop(probe);
    let probe = p.select(&key(T2I), &[]).unwrap();
    assert!(probe.is_probe());
    probe.succeeded();
    p.select(&key(LLM), &[]).unwrap().succeeded();
}

#[test]
fn capacity_is_compared_per_model() {
    let p = pool(&[&[(T2I.0, T2I.1, 2), (LLM.0, LLM.1, 100)]]);
    let streams: Vec<Lease> = (0..50).map(|_| p.select(&key(LLM), &[]).unwrap()).collect();
    let a = p.select(&key(T2I), &[]).expect("text-to-image's own capacity is free");
    let b = p.select(&key(T2I), &[]).unwrap();
    assert!(p.select(&key(T2I), &[]).is_err(), "its own capacity of 2 is used up");
    assert_eq!(p.snapshot().slots[0].stats.in_flight(), 52, "all jobs together");
    drop((a, b, streams));
    assert_eq!(p.snapshot().slots[0].stats.in_flight(), 0);
    assert!(p.snapshot().jobs.iter().all(|j| j.load.in_flight() == 0));
}

/// Selections racing on several threads never hold more of a model than its advertised
/// capacity: the room is checked as the place is taken. Checked first and counted after,
/// two selections could each see the last place free and both take it.
#[test]
fn racing_selections_stay_within_capacity() {
    let p = pool(&[&[(T2I.0, T2I.1, 3)]]);
    let most = std::sync::atomic::AtomicU32::new(0);
    // Eight threads each holding one lease at a time keep the three places contended.
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| {
                for _ in 0..20_000 {
                    let Ok(lease) = p.select(&key(T2I), &[]) else { continue };
                    let now = p.snapshot().jobs[0].load.in_flight();
                    most.fetch_max(now, std::sync::atomic::Ordering::Relaxed);
                    lease.succeeded();
                }
            });
        }
    });
    assert!(most.into_inner() <= 3, "at most the capacity of 3 in flight");
}

#[test]
fn job_state_survives_a_new_snapshot() {
    let p = pool(&[&[(T2I.0, T2I.1, 0)], &[(T2I.0, T2I.1, 0)]]);
    let first = p.select(&key(T2I), &[]).unwrap();
    let url = first.url().to_string();
    first.failed_job("HTTP 500".into());
    p.publish();
    for _ in 0..20 {
        let lease = p.select(&key(T2I), &[]).unwrap();
        assert_ne!(lease.url().as_str(), url, "still ejected after a rebuild");
        lease.client_error();
    }
}
