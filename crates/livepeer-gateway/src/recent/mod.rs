//! What happened recently, for the operator's dashboard and the catalogue's latency figures:
//! the last failed requests with their per-attempt record, a time series of requests, their
//! latency and spend in fixed buckets, and a window of latency samples per pipeline and model.
//!
//! Everything here is bounded in count and bytes whatever clients or orchestrators do: a fixed
//! number of failures (each with at most [`MAX_ATTEMPTS`] attempts, every string cut to
//! [`MAX_TEXT`] bytes), of buckets, of samples per bucket and per job, and of jobs. Prometheus
//! (`/metrics`) keeps the long-run totals; this keeps the last half hour at a glance. Amounts
//! are exact ([`Ratio`]), never floats.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use livepeer_pm::Ratio;

/// Failed requests kept.
pub const MAX_FAILURES: usize = 50;
/// Attempts kept per failed request.
pub const MAX_ATTEMPTS: usize = 10;
/// Bytes of any kept string (error messages, URLs), at most.
pub const MAX_TEXT: usize = 512;
/// Width of a time-series bucket, milliseconds.
pub const BUCKET_MS: i64 = 10_000;
/// Buckets kept (30 minutes of 10 s).
pub const MAX_BUCKETS: usize = 180;
/// Latency samples kept per bucket (the rest of a busy bucket's requests are counted only).
pub const SAMPLES_PER_BUCKET: usize = 256;
/// Latency samples kept per pipeline and model for the catalogue.
pub const SAMPLES_PER_JOB: usize = 256;
/// Pipelines and models with samples, at most (the least recently served is dropped).
pub const MAX_JOBS: usize = 512;
/// How far back the catalogue's latency figures look, milliseconds.
pub const LATENCY_WINDOW_MS: i64 = 10 * 60 * 1000;

/// One attempt of a request, as the record keeps it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Attempt {
    /// The orchestrator tried.
    pub orchestrator: String,
    /// How long the attempt took.
    pub latency_ms: u64,
    /// Why it failed; `None` when it answered.
    pub error: Option<String>,
}

/// A request that did not succeed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Failure {
    /// Its request id (`X-Request-Id`).
    pub id: String,
    /// When it ended, unix milliseconds.
    pub at_ms: i64,
    /// The kind of job: `ai`, `byoc`.
    pub kind: &'static str,
    /// Pipeline (or BYOC capability).
    pub pipeline: String,
    /// Model, when the pipeline has one.
    pub model: String,
    /// How it ended: `failed`, `client_error`, `no_orchestrator`.
    pub outcome: String,
    /// From start to end.
    pub latency_ms: u64,
    /// Every attempt in order (the first [`MAX_ATTEMPTS`]).
    pub attempts: Vec<Attempt>,
    /// Why no attempt was made, when none was.
    pub error: Option<String>,
}

/// One bucket of the time series.
#[derive(Debug, Clone)]
struct Bucket {
    start_ms: i64,
    requests: u64,
    failures: u64,
    latencies: Vec<u32>,
    tickets: u64,
    ev_wei: Ratio,
    fee_wei: Ratio,
    /// What customers were charged for requests that ended in it, nano-USD.
    revenue_nusd: u64,
}

impl Bucket {
    fn new(start_ms: i64) -> Self {
        Self {
            start_ms,
            requests: 0,
            failures: 0,
            latencies: Vec::new(),
            tickets: 0,
            ev_wei: Ratio::ZERO,
            fee_wei: Ratio::ZERO,
            revenue_nusd: 0,
        }
    }
}

/// A bucket as the admin API shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BucketView {
    /// Its start, unix milliseconds.
    pub start_ms: i64,
    /// Requests that ended in it.
    pub requests: u64,
    /// Of which did not succeed.
    pub failures: u64,
    /// Median latency of its successful requests, ms.
    pub p50_ms: Option<u32>,
    /// 95th percentile, ms.
    pub p95_ms: Option<u32>,
    /// Tickets sent in it.
    pub tickets: u64,
    /// Their expected value, wei (exact: whole, or `num/den`).
    pub ev_wei: String,
    /// Fees of the work paid for in it at the orchestrators' prices, wei (exact).
    pub fee_wei: String,
    /// What customers were charged in it (customer keys), nano-USD.
    pub revenue_nusd: u64,
}

/// Latency percentiles over a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Latency {
    /// Samples in the window.
    pub samples: usize,
    /// Median, ms.
    pub p50_ms: u32,
    /// 95th percentile, ms.
    pub p95_ms: u32,
}

#[derive(Debug, Default)]
struct Inner {
    failures: VecDeque<Failure>,
    buckets: VecDeque<Bucket>,
    /// Per job id (`pipeline/model`): (unix ms, latency ms), oldest first. Looked up for
    /// every request that succeeds: a fast seeded hash (only served jobs are kept, at most
    /// [`MAX_JOBS`]).
    jobs: HashMap<String, VecDeque<(i64, u32)>, foldhash::fast::RandomState>,
}

/// The recent history; cheap to clone (one shared ring).
#[derive(Debug, Clone, Default)]
pub struct Recent {
    inner: Arc<Mutex<Inner>>,
}

/// `s` cut to at most [`MAX_TEXT`] bytes, on a character boundary.
fn cut(s: &str) -> String {
    if s.len() <= MAX_TEXT {
        return s.to_owned();
    }
    let mut end = MAX_TEXT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// The key `job_id`'s samples are kept under: the id itself, or [`cut`] when it is longer
/// than [`MAX_TEXT`]. Every lookup goes through it, so that a long id finds its own samples
/// rather than missing them (and evicting another job's at every request).
fn job_key(job_id: &str) -> Cow<'_, str> {
    if job_id.len() <= MAX_TEXT { Cow::Borrowed(job_id) } else { Cow::Owned(cut(job_id)) }
}

/// The `q`-th quantile (0..=100) of `sorted`, nearest rank.
fn quantile(sorted: &[u32], q: usize) -> Option<u32> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let rank = (q * n).div_ceil(100).clamp(1, n);
    sorted.get(rank - 1).copied()
}

impl Recent {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic elsewhere while holding the lock leaves plain data behind: still usable.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Unix milliseconds now.
    pub fn now_ms() -> i64 {
        let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        since.map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }

    /// The bucket for `at_ms`, made (and the oldest dropped) when it is new.
    fn bucket(inner: &mut Inner, at_ms: i64) -> &mut Bucket {
        let start = at_ms - at_ms.rem_euclid(BUCKET_MS);
        if inner.buckets.back().is_none_or(|b| b.start_ms < start) {
            inner.buckets.push_back(Bucket::new(start));
            while inner.buckets.len() > MAX_BUCKETS {
                inner.buckets.pop_front();
            }
        }
        // A clock stepped back lands in the newest bucket rather than reopening an old one.
        let len = inner.buckets.len();
        &mut inner.buckets[len - 1]
    }

    /// A request that answered, `latency_ms` after it started, at `at_ms`.
    pub fn succeeded(&self, job_id: &str, latency_ms: u64, at_ms: i64) {
        let latency = u32::try_from(latency_ms).unwrap_or(u32::MAX);
        let mut inner = self.lock();
        let bucket = Self::bucket(&mut inner, at_ms);
        bucket.requests += 1;
        if bucket.latencies.len() < SAMPLES_PER_BUCKET {
            bucket.latencies.push(latency);
        }
        let job_id = job_key(job_id);
        let job_id = job_id.as_ref();
        if !inner.jobs.contains_key(job_id) && inner.jobs.len() >= MAX_JOBS {
            let stalest = inner
                .jobs
                .iter()
                .min_by_key(|(_, s)| s.back().map_or(i64::MIN, |(t, _)| *t))
                .map(|(k, _)| k.clone());
            if let Some(k) = stalest {
                inner.jobs.remove(&k);
            }
        }
        // A job already kept is found without making its key again (once per request).
        let samples = match inner.jobs.contains_key(job_id) {
            true => inner.jobs.get_mut(job_id),
            false => Some(inner.jobs.entry(job_id.to_owned()).or_default()),
        };
        if let Some(samples) = samples {
            samples.push_back((at_ms, latency));
            while samples.len() > SAMPLES_PER_JOB {
                samples.pop_front();
            }
        }
    }

    /// A request that did not succeed.
    pub fn failed(&self, mut failure: Failure) {
        failure.attempts.truncate(MAX_ATTEMPTS);
        for a in &mut failure.attempts {
            a.orchestrator = cut(&a.orchestrator);
            a.error = a.error.as_deref().map(cut);
        }
        failure.id = cut(&failure.id);
        failure.pipeline = cut(&failure.pipeline);
        failure.model = cut(&failure.model);
        failure.outcome = cut(&failure.outcome);
        failure.error = failure.error.as_deref().map(cut);
        let mut inner = self.lock();
        let bucket = Self::bucket(&mut inner, failure.at_ms);
        bucket.requests += 1;
        bucket.failures += 1;
        inner.failures.push_back(failure);
        while inner.failures.len() > MAX_FAILURES {
            inner.failures.pop_front();
        }
    }

    /// A payment: `tickets` of expected value `ev_wei` for work whose fee is `fee_wei`.
    pub fn paid(&self, tickets: u32, ev_wei: &Ratio, fee_wei: &Ratio, at_ms: i64) {
        let mut inner = self.lock();
        let bucket = Self::bucket(&mut inner, at_ms);
        bucket.tickets += u64::from(tickets);
        // An overflow (beyond 2^512 wei) leaves the bucket's amount as it was.
        if let Ok(sum) = bucket.ev_wei.checked_add(ev_wei) {
            bucket.ev_wei = sum;
        }
        if let Ok(sum) = bucket.fee_wei.checked_add(fee_wei) {
            bucket.fee_wei = sum;
        }
    }

    /// A customer charged `nano_usd` for a request that ended at `at_ms`.
    pub fn charged(&self, nano_usd: u64, at_ms: i64) {
        let mut inner = self.lock();
        let bucket = Self::bucket(&mut inner, at_ms);
        bucket.revenue_nusd = bucket.revenue_nusd.saturating_add(nano_usd);
    }

    /// The failed requests kept, newest first.
    pub fn failures(&self) -> Vec<Failure> {
        self.lock().failures.iter().rev().cloned().collect()
    }

    /// The time series, oldest bucket first.
    pub fn series(&self) -> Vec<BucketView> {
        let inner = self.lock();
        inner
            .buckets
            .iter()
            .map(|b| {
                let mut sorted = b.latencies.clone();
                sorted.sort_unstable();
                BucketView {
                    start_ms: b.start_ms,
                    requests: b.requests,
                    failures: b.failures,
                    p50_ms: quantile(&sorted, 50),
                    p95_ms: quantile(&sorted, 95),
                    tickets: b.tickets,
                    ev_wei: b.ev_wei.to_string(),
                    fee_wei: b.fee_wei.to_string(),
                    revenue_nusd: b.revenue_nusd,
                }
            })
            .collect()
    }

    /// The latency of `job_id`'s successful requests within [`LATENCY_WINDOW_MS`] of `now_ms`.
    pub fn latency(&self, job_id: &str, now_ms: i64) -> Option<Latency> {
        let inner = self.lock();
        let samples = inner.jobs.get(job_key(job_id).as_ref())?;
        let mut sorted: Vec<u32> = samples
            .iter()
            .filter(|(t, _)| now_ms - t <= LATENCY_WINDOW_MS)
            .map(|(_, l)| *l)
            .collect();
        sorted.sort_unstable();
        Some(Latency {
            samples: sorted.len(),
            p50_ms: quantile(&sorted, 50)?,
            p95_ms: quantile(&sorted, 95)?,
        })
    }
}

#[cfg(test)]
mod tests;
