//! Choosing an orchestrator: a pure function of candidates, their live state and an RNG.
//!
//! Candidates come in tiers (warm models first, then cold), each sorted by price, so the price
//! cap is a binary search. Within a tier we use the power of two choices: draw two eligible
//! candidates at random and keep the one with the lower cost, where
//!
//! `cost = latency_weight × latency_ms × (in_flight + 1) + price_weight × price / cheapest_price`.
//!
//! That spreads load across equals (go-livepeer always reuses its first picks, GATEWAY.md §9.3)
//! while steering it away from slow, busy or expensive orchestrators. Expected cost is O(1) in
//! the pool size: eligibility is checked only on the sampled candidates, with a linear scan
//! only when sampling keeps hitting ineligible ones.

use rand::Rng;

use super::caps::CapMask;
use super::health::HealthState;
use super::price::Price;

/// One candidate within a tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// Index of the orchestrator in the pool snapshot.
    pub orch: u32,
    /// Its price for this job.
    pub price: Price,
    /// How many requests it takes at once for this job; 0 = not reported (no limit).
    pub capacity: u32,
    /// Index of this job key's live state in the snapshot (`Snapshot::jobs`).
    pub job: u32,
}

/// The live facts about a candidate (an orchestrator for one job key) at the moment of
/// choosing: the worse of its own and the job key's breaker, and the job key's load.
#[derive(Debug, Clone, Copy)]
pub struct Live {
    /// Breaker state.
    pub state: HealthState,
    /// Requests of this job key in flight, compared with the entry's capacity.
    pub in_flight: u32,
    /// Latency EWMA of this job key in microseconds (0 = unknown, treated as fast so it gets
    /// tried).
    pub latency_us: u64,
    /// The orchestrator's on-chain stake as a draw weight (0 when unknown); used only with a
    /// stake weight.
    pub stake: f64,
}

/// Per-request limits.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits<'a> {
    /// Highest acceptable price, inclusive; `None` accepts any.
    pub max_price: Option<Price>,
    /// Orchestrators this request already tried.
    pub exclude: &'a [u32],
    /// A transcoding job's capabilities and, per orchestrator index, what each offers: only
    /// those serving the job are eligible. `None`: the tiers alone decide.
    pub needs: Option<(u64, &'a [CapMask])>,
}

/// Weights of the cost function (see the module docs).
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Weights {
    /// Per millisecond of latency EWMA, multiplied by (in flight + 1).
    pub latency: f64,
    /// Per multiple of the cheapest price in the tier.
    pub price: f64,
    /// Share of the candidates drawn in proportion to stake (0 to 1); the rest are drawn
    /// uniformly, as go-livepeer mixes its stake and random probabilities.
    pub stake: f64,
}

impl Default for Weights {
    fn default() -> Self {
        // Paying twice the cheapest price weighs like 50 ms more latency.
        Self { latency: 1.0, price: 50.0, stake: 0.0 }
    }
}

/// Below this many candidates we scan instead of sampling.
const SCAN_BELOW: usize = 32;
/// Random draws before falling back to a scan.
const MAX_DRAWS: usize = 16;

/// Picks one candidate from the first tier that has an eligible one, or `None`.
///
/// Eligible: within `limits.max_price`, not excluded, not ejected (a due probe is eligible),
/// and below its capacity. Never returns anything else.
pub fn choose<R: Rng + ?Sized>(
    tiers: &[&[Entry]],
    live: impl Fn(&Entry) -> Live,
    limits: &Limits<'_>,
    weights: &Weights,
    rng: &mut R,
) -> Option<Entry> {
    for tier in tiers {
        let n = match limits.max_price {
            Some(max) => tier.partition_point(|e| e.price <= max),
            None => tier.len(),
        };
        let tier = &tier[..n];
        let Some(cheapest) = tier.first().map(|e| e.price) else { continue };
        let eligible = |e: &Entry| -> Option<Live> {
            if limits.exclude.contains(&e.orch) {
                return None;
            }
            if let Some((job, offers)) = limits.needs
                && !offers.get(e.orch as usize).is_some_and(|o| o.serves(job))
            {
                return None;
            }
            let l = live(e);
            let open = l.state != HealthState::Ejected;
            let room = e.capacity == 0 || l.in_flight < e.capacity;
            (open && room).then_some(l)
        };
        let drawn = if weights.stake > 0.0 {
            two_by_stake(tier, &eligible, weights.stake, rng)
        } else {
            two_eligible(tier, &eligible, rng)
        };
        if let Some((a, b)) = drawn {
            let cost = |(e, l): (Entry, Live)| {
                weights.latency * (l.latency_us as f64 / 1000.0) * f64::from(l.in_flight + 1)
                    + weights.price * e.price.ratio_to(&cheapest)
            };
            return Some(match b {
                Some(b) if cost(b) < cost(a) => b.0,
                _ => a.0,
            });
        }
    }
    None
}

type Picked = (Entry, Live);

/// Up to two distinct eligible candidates, each drawn with probability
/// `share × stake / Σstake + (1 − share) / n` (go-livepeer's mix of stake and random
/// probabilities; uniform when no candidate has stake). O(n): used only with a stake weight.
fn two_by_stake<R: Rng + ?Sized>(
    tier: &[Entry],
    eligible: &impl Fn(&Entry) -> Option<Live>,
    share: f64,
    rng: &mut R,
) -> Option<(Picked, Option<Picked>)> {
    let mut pool: Vec<Picked> = tier.iter().filter_map(|e| Some((*e, eligible(e)?))).collect();
    let mut draw = |pool: &mut Vec<Picked>| -> Option<Picked> {
        let n = pool.len() as f64;
        let total: f64 = pool.iter().map(|(_, l)| l.stake.max(0.0)).sum();
        let weight = |l: &Live| {
            let by_stake = if total > 0.0 { l.stake.max(0.0) / total } else { 1.0 / n };
            share * by_stake + (1.0 - share) / n
        };
        let mut r = rng.random::<f64>();
        let mut at = pool.len().checked_sub(1)?;
        for (i, (_, l)) in pool.iter().enumerate() {
            r -= weight(l);
            if r < 0.0 {
                at = i;
                break;
            }
        }
        Some(pool.swap_remove(at))
    };
    let a = draw(&mut pool)?;
    Some((a, draw(&mut pool)))
}

/// Up to two distinct eligible candidates, chosen uniformly at random.
fn two_eligible<R: Rng + ?Sized>(
    tier: &[Entry],
    eligible: &impl Fn(&Entry) -> Option<Live>,
    rng: &mut R,
) -> Option<(Picked, Option<Picked>)> {
    if tier.len() >= SCAN_BELOW {
        let mut first: Option<(usize, Picked)> = None;
        for _ in 0..MAX_DRAWS {
            let i = rng.random_range(0..tier.len());
            if first.is_some_and(|(j, _)| j == i) {
                continue;
            }
            if let Some(l) = eligible(&tier[i]) {
                match first {
                    None => first = Some((i, (tier[i], l))),
                    Some((_, a)) => return Some((a, Some((tier[i], l)))),
                }
            }
        }
    }
    // Reservoir sampling of two over the eligible ones: uniform, no allocation.
    let (mut a, mut b): (Option<Picked>, Option<Picked>) = (None, None);
    let mut seen = 0u32;
    for e in tier {
        let Some(l) = eligible(e) else { continue };
        seen += 1;
        if seen == 1 {
            a = Some((*e, l));
        } else if seen == 2 {
            b = Some((*e, l));
        } else {
            let j = rng.random_range(0..seen);
            if j == 0 {
                a = Some((*e, l));
            } else if j == 1 {
                b = Some((*e, l));
            }
        }
    }
    // Random order so that ties do not always favour the earlier (cheaper) entry.
    if rng.random::<bool>() {
        std::mem::swap(&mut a, &mut b);
    }
    match (a, b) {
        (Some(a), b) => Some((a, b)),
        (None, Some(b)) => Some((b, None)),
        (None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    fn p(n: i64) -> Price {
        Price::new(n, 1).unwrap()
    }

    #[derive(Debug, Clone)]
    struct Cand {
        price: i64,
        capacity: u32,
        state: HealthState,
        in_flight: u32,
        latency_us: u64,
    }

    fn cand() -> impl Strategy<Value = Cand> {
        (
            0i64..100,
            0u32..4,
            prop_oneof![
                Just(HealthState::Healthy),
                Just(HealthState::ProbeDue),
                Just(HealthState::Ejected)
            ],
            0u32..5,
            0u64..50_000,
        )
            .prop_map(|(price, capacity, state, in_flight, latency_us)| Cand {
                price,
                capacity,
                state,
                in_flight,
                latency_us,
            })
    }

    fn tier(cands: &[Cand]) -> Vec<Entry> {
        let mut t: Vec<Entry> = cands
            .iter()
            .enumerate()
            .map(|(i, c)| Entry {
                orch: i as u32,
                price: p(c.price),
                capacity: c.capacity,
                job: i as u32,
            })
            .collect();
        t.sort_by_key(|e| e.price);
        t
    }

    fn live(cands: &[Cand]) -> impl Fn(&Entry) -> Live + '_ {
        move |e| {
            let c = &cands[e.job as usize];
            Live { state: c.state, in_flight: c.in_flight, latency_us: c.latency_us, stake: 0.0 }
        }
    }

    proptest! {
        #[test]
        fn never_returns_an_ineligible_candidate(
            cands in proptest::collection::vec(cand(), 0..80),
            max in proptest::option::of(0i64..100),
            exclude in proptest::collection::vec(0u32..80, 0..5),
            seed: u64,
        ) {
            let t = tier(&cands);
            let limits = Limits { max_price: max.map(p), exclude: &exclude, needs: None };
            let mut rng = SmallRng::seed_from_u64(seed);
            let got = choose(&[&t], live(&cands), &limits, &Weights::default(), &mut rng);
            let ok = |c: &Cand, i: u32| {
                max.is_none_or(|m| c.price <= m)
                    && !exclude.contains(&i)
                    && c.state != HealthState::Ejected
                    && (c.capacity == 0 || c.in_flight < c.capacity)
            };
            match got {
                Some(e) => prop_assert!(ok(&cands[e.orch as usize], e.orch)),
                // None only when nothing was eligible.
                None => prop_assert!(!cands.iter().enumerate().any(|(i, c)| ok(c, i as u32))),
            }
        }

        #[test]
        fn deterministic_given_a_seed(cands in proptest::collection::vec(cand(), 1..80), seed: u64) {
            let t = tier(&cands);
            let run = || {
                let mut rng = SmallRng::seed_from_u64(seed);
                (0..20)
                    .map(|_| choose(&[&t], live(&cands), &Limits::default(), &Weights::default(), &mut rng))
                    .collect::<Vec<_>>()
            };
            prop_assert_eq!(run(), run());
        }
    }

    #[test]
    fn spreads_load_across_equals() {
        for n in [5usize, 10, 100, 1000] {
            let cands: Vec<Cand> = (0..n)
                .map(|_| Cand {
                    price: 10,
                    capacity: 0,
                    state: HealthState::Healthy,
                    in_flight: 0,
                    latency_us: 5000,
                })
                .collect();
            let t = tier(&cands);
            let mut rng = SmallRng::seed_from_u64(7);
            let mut hits = vec![0u32; n];
            let rounds = 200 * n;
            for _ in 0..rounds {
                let e =
                    choose(&[&t], live(&cands), &Limits::default(), &Weights::default(), &mut rng)
                        .unwrap();
                hits[e.orch as usize] += 1;
            }
            let (min, max) = (hits.iter().min().unwrap(), hits.iter().max().unwrap());
            assert!(*min >= 100 && *max <= 320, "n={n}: min {min} max {max} of {rounds}");
        }
    }

    #[test]
    fn prefers_fast_cheap_and_idle_and_falls_back_to_cold() {
        let healthy = |price, in_flight, latency_us| Cand {
            price,
            capacity: 0,
            state: HealthState::Healthy,
            in_flight,
            latency_us,
        };
        // Two candidates: p2c always compares both, so the cheaper, faster one always wins.
        let cands = vec![healthy(10, 0, 2_000), healthy(10, 0, 90_000)];
        let t = tier(&cands);
        let mut rng = SmallRng::seed_from_u64(1);
        for _ in 0..50 {
            let e = choose(&[&t], live(&cands), &Limits::default(), &Weights::default(), &mut rng);
            assert_eq!(e.unwrap().orch, 0);
        }
        let busy = vec![healthy(10, 9, 20_000), healthy(10, 0, 20_000)];
        let t = tier(&busy);
        let e = choose(&[&t], live(&busy), &Limits::default(), &Weights::default(), &mut rng);
        assert_eq!(e.unwrap().orch, 1, "in-flight requests raise the cost");
        let pricey = vec![healthy(1000, 0, 1_000), healthy(10, 0, 1_000)];
        let t = tier(&pricey);
        let e = choose(&[&t], live(&pricey), &Limits::default(), &Weights::default(), &mut rng);
        assert_eq!(e.unwrap().orch, 1, "price counts");
        // Warm tier fully ejected: the cold tier serves.
        let mixed =
            vec![Cand { state: HealthState::Ejected, ..healthy(1, 0, 1) }, healthy(50, 0, 1_000)];
        let warm = [Entry { orch: 0, price: p(1), capacity: 0, job: 0 }];
        let cold = [Entry { orch: 1, price: p(50), capacity: 0, job: 1 }];
        let e = choose(
            &[&warm, &cold],
            live(&mixed),
            &Limits::default(),
            &Weights::default(),
            &mut rng,
        );
        assert_eq!(e.unwrap().orch, 1);
        let capped = Limits { max_price: Some(p(49)), exclude: &[], needs: None };
        assert!(
            choose(&[&warm, &cold], live(&mixed), &capped, &Weights::default(), &mut rng).is_none()
        );
    }

    #[test]
    fn a_stake_weight_draws_by_stake() {
        let entries: Vec<Entry> =
            (0..10).map(|i| Entry { orch: i, price: p(5), capacity: 0, job: i }).collect();
        let live = |e: &Entry| Live {
            state: HealthState::Healthy,
            in_flight: 0,
            latency_us: 0,
            stake: if e.orch == 0 { 1000.0 } else { 1.0 },
        };
        let picks = |share: f64, exclude: &[u32]| {
            let mut rng = SmallRng::seed_from_u64(7);
            let weights = Weights { stake: share, ..Weights::default() };
            let limits = Limits { max_price: None, exclude, needs: None };
            (0..2000)
                .filter(|_| {
                    choose(&[&entries], live, &limits, &weights, &mut rng).unwrap().orch == 0
                })
                .count()
        };
        let (uniform, by_stake) = (picks(0.0, &[]), picks(1.0, &[]));
        assert!(uniform < 400, "uniform draws: {uniform} of 2000");
        assert!(by_stake > 1800, "stake draws: {by_stake} of 2000");
        let half = picks(0.5, &[]);
        assert!(half > uniform && half < by_stake, "half and half: {half}");
        assert_eq!(picks(1.0, &[0]), 0, "an excluded orchestrator is never drawn");
    }
}
