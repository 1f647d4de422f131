//! Live per-orchestrator state that the request path reads and writes without locks: ejection
//! (a circuit breaker with growing cooldowns and a half-open probe), requests in flight and a
//! latency EWMA, each kept twice: once for the orchestrator as a whole and once per job key
//! (pipeline capability and model) it advertises.
//!
//! go-livepeer suspends a failing orchestrator for about three session refreshes (18–30 minutes
//! in practice, GATEWAY.md §4.9 and §9.4). Here the first failure ejects it for `base`, each
//! further consecutive failure doubles that up to `max`, and when the cooldown ends exactly one
//! caller gets to probe it. A success closes the breaker at once.
//!
//! An orchestrator is penalised only where it failed: a 5xx, a timeout or a refusal opens the
//! breaker of that job key alone, and only failures that concern the whole orchestrator (it
//! cannot be reached, its TLS fails, GetOrchestrator fails) open its own breaker; the split is
//! [`Scope`](super::verdict::Scope). Capacity is per model too: requests in flight are counted
//! per job key and compared with that model's advertised capacity, so a thousand live streams
//! do not make an idle text-to-image model look full. The per-key state is created only for
//! keys the orchestrator advertises, at most [`MAX_JOBS`] of them; the rest share one entry.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;

use crate::job::JobKey;

/// How long ejections last.
#[derive(Debug, Clone, Copy)]
pub struct EjectPolicy {
    /// Cooldown after the first failure.
    pub base: Duration,
    /// Longest cooldown, however many failures follow.
    pub max: Duration,
}

impl Default for EjectPolicy {
    fn default() -> Self {
        Self { base: Duration::from_secs(2), max: Duration::from_secs(60) }
    }
}

/// The breaker state at one instant, as selection sees it. Ordered from best to worst, so the
/// state of a candidate is the `max` of its orchestrator's and its job key's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthState {
    /// Usable.
    Healthy,
    /// Cooldown over and nobody probing: the next caller may try it once.
    ProbeDue,
    /// Cooling down, or a probe is in flight.
    Ejected,
}

/// The most recent failure, for operators.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LastError {
    /// What went wrong.
    pub message: String,
    /// When, in milliseconds since the gateway started.
    pub at_ms: u64,
}

/// Most job keys tracked per orchestrator; further keys share one entry. Far above what real
/// orchestrators advertise (tens of models), so only a hostile one reaches it.
pub const MAX_JOBS: usize = 256;

/// Weight of a new latency sample in the EWMA, in 1/8ths (3/8 ≈ 0.375).
const EWMA_NEW_EIGHTHS: u64 = 3;

/// One circuit breaker: consecutive failures, the end of the cooldown, and the probe claim.
#[derive(Debug, Default)]
pub struct Breaker {
    failures: AtomicU32,
    eject_until_ms: AtomicU64,
    probing: AtomicBool,
    last_error: Mutex<Option<LastError>>,
}

// === impl Breaker ===

impl Breaker {
    /// The breaker state at `now_ms`.
    pub fn state(&self, now_ms: u64) -> HealthState {
        let until = self.eject_until_ms.load(Relaxed);
        if until == 0 {
            HealthState::Healthy
        } else if now_ms < until || self.probing.load(Relaxed) {
            HealthState::Ejected
        } else {
            HealthState::ProbeDue
        }
    }

    /// Milliseconds of cooldown left at `now_ms` (0 when not cooling down).
    pub fn cooldown_left_ms(&self, now_ms: u64) -> u64 {
        self.eject_until_ms.load(Relaxed).saturating_sub(now_ms)
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures.load(Relaxed)
    }

    /// Claims the single half-open probe. True for exactly one caller per cooldown.
    pub fn try_begin_probe(&self, now_ms: u64) -> bool {
        let until = self.eject_until_ms.load(Relaxed);
        until != 0
            && now_ms >= until
            && self.probing.compare_exchange(false, true, Relaxed, Relaxed).is_ok()
    }

    /// Records a failure and (re-)opens the breaker.
    pub fn record_failure(&self, now_ms: u64, policy: &EjectPolicy, message: String) {
        let failures = self.failures.fetch_add(1, Relaxed).saturating_add(1);
        let factor = 1u32.checked_shl(failures.saturating_sub(1).min(20)).unwrap_or(u32::MAX);
        let cooldown = policy.base.saturating_mul(factor).min(policy.max);
        let until = now_ms.saturating_add(cooldown.as_millis() as u64).max(1);
        self.eject_until_ms.store(until, Relaxed);
        self.probing.store(false, Relaxed);
        self.note_error(now_ms, message);
    }

    /// Keeps `message` as the last error without changing the state, cut short and on one
    /// line: it is the orchestrator's text, served to the dashboard every second, and a caller
    /// may have passed it on whole.
    fn note_error(&self, now_ms: u64, message: String) {
        let message = super::text::cut(&message);
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(LastError { message, at_ms: now_ms });
        }
    }

    /// Records a success: the breaker closes and the failure count resets.
    pub fn record_success(&self) {
        self.failures.store(0, Relaxed);
        self.eject_until_ms.store(0, Relaxed);
        self.probing.store(false, Relaxed);
    }

    /// Gives back a probe claim without a verdict (e.g. the caller's own input was bad).
    pub fn end_probe(&self) {
        self.probing.store(false, Relaxed);
    }

    /// The last failure recorded, if any.
    pub fn last_error(&self) -> Option<LastError> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }
}

/// Load of one orchestrator or job key: requests in flight and a latency EWMA.
#[derive(Debug, Default)]
pub struct Load {
    in_flight: AtomicU32,
    /// Latency EWMA in microseconds; 0 = never measured.
    latency_us: AtomicU64,
}

// === impl Load ===

impl Load {
    /// Adds a latency sample to the EWMA.
    pub fn observe_latency(&self, latency: Duration) {
        let sample = (latency.as_micros() as u64).max(1);
        let old = self.latency_us.load(Relaxed);
        // A lost update under a race only drops one sample; the EWMA stays sound.
        let new = if old == 0 {
            sample
        } else {
            (old * (8 - EWMA_NEW_EIGHTHS) + sample * EWMA_NEW_EIGHTHS) / 8
        };
        self.latency_us.store(new.max(1), Relaxed);
    }

    /// Latency EWMA in microseconds, 0 if never measured.
    pub fn latency_us(&self) -> u64 {
        self.latency_us.load(Relaxed)
    }

    /// Requests currently in flight.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Relaxed)
    }

    /// Marks one more request in flight.
    pub fn begin_request(&self) {
        self.in_flight.fetch_add(1, Relaxed);
    }

    /// Marks one more request in flight if fewer than `capacity` are (any number when it is
    /// 0), in one step: concurrent selections that each saw room before counting themselves
    /// would otherwise go over what the orchestrator advertised.
    pub fn try_begin_request(&self, capacity: u32) -> bool {
        let room = |n: u32| (capacity == 0 || n < capacity).then(|| n.saturating_add(1));
        self.in_flight.fetch_update(Relaxed, Relaxed, room).is_ok()
    }

    /// Marks one request finished.
    pub fn end_request(&self) {
        // Never wraps below zero even if a caller ends twice.
        let _ = self.in_flight.fetch_update(Relaxed, Relaxed, |n| Some(n.saturating_sub(1)));
    }
}

/// Live state of one job key at one orchestrator: its own breaker and load.
#[derive(Debug, Default)]
pub struct JobStats {
    /// What it counts, for operators: the job key, or `other` for the shared overflow entry.
    pub label: String,
    /// Ejection for this job key only.
    pub breaker: Breaker,
    /// Requests of this job key in flight, and their latency.
    pub load: Load,
}

/// What `/orchestrators` shows of one job key.
#[derive(Debug, Clone, serde::Serialize)]
pub struct JobReport {
    /// The job key (`pipeline/model`), or `other`.
    pub job: String,
    /// Its breaker state.
    pub state: HealthState,
    /// Its requests in flight.
    pub in_flight: u32,
    /// Its latency EWMA, milliseconds.
    pub latency_ewma_ms: f64,
    /// Its consecutive failures.
    pub consecutive_failures: u32,
    /// Milliseconds of its cooldown left.
    pub cooldown_left_ms: u64,
    /// Its last failure.
    pub last_error: Option<LastError>,
}

/// The per-key entries of one orchestrator, bounded by [`MAX_JOBS`].
#[derive(Debug, Default)]
struct Jobs {
    map: HashMap<JobKey, Arc<JobStats>>,
    /// Shared by every key beyond the bound; created when first needed.
    overflow: Option<Arc<JobStats>>,
}

/// Mutable, shared statistics of one orchestrator. Survives pool refreshes (keyed by URL).
#[derive(Debug, Default)]
pub struct OrchStats {
    /// Ejection of the whole orchestrator: failures that concern every job.
    pub breaker: Breaker,
    /// Every request in flight at it, and their latency.
    pub load: Load,
    /// Times selected; the same counter is exported as a Prometheus series.
    selections: Counter,
    jobs: Mutex<Jobs>,
}

// === impl OrchStats ===

impl OrchStats {
    /// Fresh statistics whose selection count is `selections` (a registered metric).
    pub fn with_selection_counter(selections: Counter) -> Self {
        Self { selections, ..Self::default() }
    }

    /// The state operators see: the worst of its own breaker and its job keys' ("ejected"
    /// if it is ejected for anything; [`jobs`](Self::jobs) tells for what).
    pub fn state(&self, now_ms: u64) -> HealthState {
        let own = self.breaker.state(now_ms);
        let Ok(jobs) = self.jobs.lock() else { return own };
        jobs.map.values().chain(&jobs.overflow).map(|j| j.breaker.state(now_ms)).fold(own, Ord::max)
    }

    /// Milliseconds of its own cooldown left at `now_ms` (0 when not cooling down).
    pub fn cooldown_left_ms(&self, now_ms: u64) -> u64 {
        self.breaker.cooldown_left_ms(now_ms)
    }

    /// Its own consecutive failures.
    pub fn failures(&self) -> u32 {
        self.breaker.failures()
    }

    /// The last failure recorded, its own or a job key's.
    pub fn last_error(&self) -> Option<LastError> {
        self.breaker.last_error()
    }

    /// Latency EWMA over all its jobs in microseconds, 0 if never measured.
    pub fn latency_us(&self) -> u64 {
        self.load.latency_us()
    }

    /// Requests currently in flight, all jobs together.
    pub fn in_flight(&self) -> u32 {
        self.load.in_flight()
    }

    /// Counts one more selection (the request is counted in flight by [`Load`]).
    pub fn selected(&self) {
        self.selections.inc();
    }

    /// How many times it has been selected.
    pub fn selections(&self) -> u64 {
        self.selections.get()
    }

    /// Keeps `message` about one of its job keys as its last error, for operators.
    pub fn note_job_error(&self, now_ms: u64, message: String) {
        self.breaker.note_error(now_ms, message);
    }

    /// The state of job `key`, created on first use. Call it only for keys the orchestrator
    /// advertises: beyond [`MAX_JOBS`] keys, every further one shares a single entry.
    pub fn job(&self, key: &JobKey) -> Arc<JobStats> {
        let Ok(mut jobs) = self.jobs.lock() else {
            return Arc::new(JobStats { label: key.to_string(), ..JobStats::default() });
        };
        if let Some(j) = jobs.map.get(key) {
            return j.clone();
        }
        if jobs.map.len() < MAX_JOBS {
            let j = Arc::new(JobStats { label: key.to_string(), ..JobStats::default() });
            jobs.map.insert(key.clone(), j.clone());
            return j;
        }
        jobs.overflow
            .get_or_insert_with(|| {
                Arc::new(JobStats { label: "other".into(), ..JobStats::default() })
            })
            .clone()
    }

    /// Forgets the job keys it no longer advertises (per `offered`) that have nothing in
    /// flight, so that the table follows the orchestrator's current offer.
    pub fn retain_jobs(&self, offered: impl Fn(&JobKey) -> bool) {
        if let Ok(mut jobs) = self.jobs.lock() {
            jobs.map.retain(|k, j| offered(k) || j.load.in_flight() > 0);
        }
    }

    /// Every job key's state, in key order, for operators.
    pub fn jobs(&self, now_ms: u64) -> Vec<JobReport> {
        let Ok(jobs) = self.jobs.lock() else { return Vec::new() };
        let mut keys: Vec<&JobKey> = jobs.map.keys().collect();
        keys.sort();
        let entries = keys.into_iter().filter_map(|k| jobs.map.get(k)).chain(&jobs.overflow);
        entries
            .map(|j| JobReport {
                job: j.label.clone(),
                state: j.breaker.state(now_ms),
                in_flight: j.load.in_flight(),
                latency_ewma_ms: j.load.latency_us() as f64 / 1000.0,
                consecutive_failures: j.breaker.failures(),
                cooldown_left_ms: j.breaker.cooldown_left_ms(now_ms),
                last_error: j.breaker.last_error(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
