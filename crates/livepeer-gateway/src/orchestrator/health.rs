//! Live per-orchestrator state that the request path reads and writes without locks: ejection
//! (a circuit breaker with growing cooldowns and a half-open probe), requests in flight and a
//! latency EWMA.
//!
//! go-livepeer suspends a failing orchestrator for about three session refreshes (18–30 minutes
//! in practice, GATEWAY.md §4.9 and §9.4). Here the first failure ejects it for `base`, each
//! further consecutive failure doubles that up to `max`, and when the cooldown ends exactly one
//! caller gets to probe it. A success closes the breaker at once.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;

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

/// The breaker state at one instant, as selection sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthState {
    /// Usable.
    Healthy,
    /// Cooldown over and nobody probing: the next caller may try it once.
    ProbeDue,
    /// Cooling down, or a probe is in flight.
    Ejected,
}

/// Mutable, shared statistics of one orchestrator. Survives pool refreshes (keyed by URL).
#[derive(Debug, Default)]
pub struct OrchStats {
    failures: AtomicU32,
    eject_until_ms: AtomicU64,
    probing: AtomicBool,
    in_flight: AtomicU32,
    /// Latency EWMA in microseconds; 0 = never measured.
    latency_us: AtomicU64,
    /// Times selected; the same counter is exported as a Prometheus series.
    selections: Counter,
    last_error: Mutex<Option<LastError>>,
}

/// The most recent failure, for operators.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LastError {
    /// What went wrong.
    pub message: String,
    /// When, in milliseconds since the gateway started.
    pub at_ms: u64,
}

/// Weight of a new latency sample in the EWMA, in 1/8ths (3/8 ≈ 0.375).
const EWMA_NEW_EIGHTHS: u64 = 3;

// === impl OrchStats ===

impl OrchStats {
    /// Fresh statistics whose selection count is `selections` (a registered metric).
    pub fn with_selection_counter(selections: Counter) -> Self {
        Self { selections, ..Self::default() }
    }

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

    /// Records an orchestrator-caused failure and (re-)ejects it.
    pub fn record_failure(&self, now_ms: u64, policy: &EjectPolicy, message: String) {
        let failures = self.failures.fetch_add(1, Relaxed).saturating_add(1);
        let factor = 1u32.checked_shl(failures.saturating_sub(1).min(20)).unwrap_or(u32::MAX);
        let cooldown = policy.base.saturating_mul(factor).min(policy.max);
        let until = now_ms.saturating_add(cooldown.as_millis() as u64).max(1);
        self.eject_until_ms.store(until, Relaxed);
        self.probing.store(false, Relaxed);
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
        self.selections.inc();
    }

    /// Marks one request finished.
    pub fn end_request(&self) {
        // Never wraps below zero even if a caller ends twice.
        let _ = self.in_flight.fetch_update(Relaxed, Relaxed, |n| Some(n.saturating_sub(1)));
    }

    /// How many times it has been selected.
    pub fn selections(&self) -> u64 {
        self.selections.get()
    }

    /// The last failure recorded, if any.
    pub fn last_error(&self) -> Option<LastError> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cooldown_grows_then_probe_closes_the_breaker() {
        let s = OrchStats::default();
        let p = EjectPolicy { base: Duration::from_secs(1), max: Duration::from_secs(5) };
        assert_eq!(s.state(0), HealthState::Healthy);
        s.record_failure(1000, &p, "boom".into());
        assert_eq!(s.state(1999), HealthState::Ejected);
        assert_eq!(s.state(2000), HealthState::ProbeDue);
        assert!(s.try_begin_probe(2000));
        assert!(!s.try_begin_probe(2000), "only one probe at a time");
        assert_eq!(s.state(2000), HealthState::Ejected);
        s.record_failure(2000, &p, "again".into());
        assert_eq!(s.cooldown_left_ms(2000), 2000, "second failure doubles the cooldown");
        for _ in 0..10 {
            s.record_failure(10_000, &p, "x".into());
        }
        assert_eq!(s.cooldown_left_ms(10_000), 5000, "capped at max");
        assert!(s.try_begin_probe(15_000));
        s.record_success();
        assert_eq!(s.state(15_000), HealthState::Healthy);
        assert_eq!(s.failures(), 0);
        assert_eq!(s.last_error().unwrap().message, "x");
    }

    #[test]
    fn ewma_and_in_flight() {
        let s = OrchStats::default();
        s.observe_latency(Duration::from_millis(8));
        assert_eq!(s.latency_us(), 8000);
        s.observe_latency(Duration::from_millis(16));
        assert_eq!(s.latency_us(), 11_000);
        s.begin_request();
        s.end_request();
        s.end_request();
        assert_eq!(s.in_flight(), 0);
        assert_eq!(s.selections(), 1);
    }
}
