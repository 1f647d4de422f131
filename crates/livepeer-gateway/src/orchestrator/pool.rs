//! The orchestrator pool: a background task keeps every orchestrator's `OrchestratorInfo`
//! current and publishes immutable [`Snapshot`]s through `ArcSwap`; requests load the current
//! snapshot and select without locks and without ever waiting on discovery.
//!
//! The task refreshes all orchestrators in parallel every `refresh_interval` (and on demand),
//! each call with its own deadline. Every `probe_interval` it also probes orchestrators whose
//! ejection cooldown has ended, so a recovered orchestrator is back within seconds.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use url::Url;

use super::caps;
use super::client::{ClientError, OrchClient};
use super::discovery::Discovery;
use super::health::{EjectPolicy, HealthState, JobStats, OrchStats};
use super::info::OrchInfo;
use super::price::Price;
use super::requirements::SharedRequirements;
use super::selection::{self, Entry, Limits, Live, Weights};
use super::snapshot::{JobKey, Requirements, Slot, Snapshot};
use super::text;
use crate::error::Kind;
use crate::metrics::Metrics;
use crate::task::Tasks;

/// Pool settings, from the validated config.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// How often every orchestrator is asked for fresh info.
    pub refresh_interval: Duration,
    /// How often ejected orchestrators are checked for a due probe.
    pub probe_interval: Duration,
    /// Ejection cooldowns.
    pub eject: EjectPolicy,
    /// Selection cost weights.
    pub weights: Weights,
    /// What orchestrators must satisfy at start (the pool's [`SharedRequirements`] begin
    /// with it; the price caps may change later).
    pub requirements: Requirements,
    /// Most GetOrchestrator calls in flight at once during a refresh.
    pub max_concurrent_calls: usize,
}

/// Why no orchestrator could be selected. Each says whether waiting could help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectError {
    /// No known orchestrator offers this job at all.
    #[error("no orchestrator offers {0}")]
    NotOffered(JobKey),
    /// Some offer it, but every one is above the price cap.
    #[error(
        "every orchestrator offering {job} is above the max price {max}; cheapest is {cheapest}"
    )]
    OverPrice {
        /// The job.
        job: JobKey,
        /// The configured cap.
        max: Price,
        /// The cheapest offer.
        cheapest: Price,
    },
    /// Every one is ejected, at capacity, or already tried by this request.
    #[error("all {candidates} orchestrators offering {job} are ejected, busy or already tried")]
    Unavailable {
        /// The job.
        job: JobKey,
        /// How many offer it within the price cap.
        candidates: usize,
    },
}

// The error model sits below the orchestrators, so the client's view of a failed selection
// is written here, beside the cases it maps.
impl crate::error::Error {
    /// No orchestrator could be selected for the job.
    pub fn select(e: &SelectError) -> Self {
        let kind = match e {
            SelectError::NotOffered(_) => Kind::NoOrchestrator,
            SelectError::OverPrice { .. } => Kind::OverMaxPrice,
            SelectError::Unavailable { .. } => Kind::OrchestratorsUnavailable,
        };
        Self::new(kind, e.to_string())
    }
}

/// The pool handle; cheap to clone.
#[derive(Debug, Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: PoolConfig,
    client: OrchClient,
    discovery: Discovery,
    /// The requirements in force, shared with payments and the admin API.
    requirements: SharedRequirements,
    snapshot: ArcSwap<Snapshot>,
    /// What discovery last learned, per URL; the master copy snapshots are built from.
    known: Mutex<Vec<Slot>>,
    epoch: Instant,
    refresh_now: Notify,
    metrics: Metrics,
    last_refresh: Mutex<Option<RefreshReport>>,
}

/// Summary of the last refresh round.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RefreshReport {
    /// Orchestrators asked.
    pub asked: usize,
    /// Good answers.
    pub ok: usize,
    /// How long the round took, milliseconds.
    pub took_ms: u64,
    /// When it ended, milliseconds since start.
    pub at_ms: u64,
    /// Discovery source error, if the list itself could not be had.
    pub source_error: Option<String>,
}

// === impl Pool ===

impl Pool {
    /// Builds the pool, runs the first refresh (bounded by the call deadline), and starts the
    /// background task on `tasks`.
    pub async fn start(
        config: PoolConfig,
        client: OrchClient,
        discovery: Discovery,
        metrics: Metrics,
        tasks: &Tasks,
    ) -> Self {
        let pool = Self {
            inner: Arc::new(Inner {
                requirements: SharedRequirements::new(config.requirements.clone()),
                config,
                client,
                discovery,
                snapshot: ArcSwap::from_pointee(Snapshot::default()),
                known: Mutex::new(Vec::new()),
                epoch: Instant::now(),
                refresh_now: Notify::new(),
                metrics,
                last_refresh: Mutex::new(None),
            }),
        };
        pool.refresh().await;
        let this = pool.clone();
        tasks.spawn("orchestrator-pool", move |cancel| this.run(cancel));
        pool
    }

    /// A pool over fixed answers, with no discovery and no background task: for benchmarks and
    /// tests of the request path. Every orchestrator starts healthy.
    pub fn fixed(config: PoolConfig, infos: Vec<(Url, OrchInfo)>, metrics: Metrics) -> Self {
        let client = OrchClient::new(
            super::client::Timeouts {
                connect: Duration::from_secs(1),
                call: Duration::from_secs(1),
            },
            super::client::TlsTrust::AcceptAny,
            None,
        );
        let slots = infos
            .into_iter()
            .map(|(url, info)| Slot {
                stats: Arc::new(OrchStats::with_selection_counter(
                    metrics.selection_counter(url.as_str()),
                )),
                url,
                info: Some(Arc::new(info)),
                blocked: false,
                stake: 0.0,
            })
            .collect();
        let pool = Self {
            inner: Arc::new(Inner {
                requirements: SharedRequirements::new(config.requirements.clone()),
                config,
                client,
                discovery: Discovery::Static(Vec::new()),
                snapshot: ArcSwap::from_pointee(Snapshot::default()),
                known: Mutex::new(slots),
                epoch: Instant::now(),
                refresh_now: Notify::new(),
                metrics,
                last_refresh: Mutex::new(None),
            }),
        };
        pool.publish();
        pool
    }

    /// The operator's price cap for `key`, if any (see [`Requirements::max_price`]).
    pub fn max_price(&self, key: &JobKey) -> Option<Price> {
        self.inner.requirements.load().max_price(key)
    }

    /// The requirements in force: a handle on the cell the pool reads, for the other readers
    /// of the price caps (payments, the remote signer's checks, the admin API).
    pub fn requirements(&self) -> SharedRequirements {
        self.inner.requirements.clone()
    }

    /// Sets the global price cap (`None`: any price) and rebuilds the snapshot, so that the
    /// next selection already keeps orchestrators above it out.
    pub fn set_max_price(&self, price: Option<Price>) {
        self.inner.requirements.set_max_price(price);
        self.publish();
    }

    /// Sets the price cap of `capability` for `model` (`default`: the pipeline's) and rebuilds
    /// the snapshot.
    ///
    /// # Errors
    /// [`TooManyCaps`](super::requirements::TooManyCaps) when that would make more than
    /// [`MAX_MODEL_CAPS`](super::requirements::MAX_MODEL_CAPS) caps; nothing changes then.
    pub fn set_max_price_for(
        &self,
        capability: u32,
        model: &str,
        price: Price,
    ) -> Result<(), super::requirements::TooManyCaps> {
        self.inner.requirements.set_max_price_for(capability, model, price)?;
        self.publish();
        Ok(())
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.inner.snapshot.load_full()
    }

    /// Milliseconds since the pool started (the clock of health state).
    pub fn now_ms(&self) -> u64 {
        self.inner.epoch.elapsed().as_millis() as u64
    }

    /// The last refresh round's summary.
    pub fn last_refresh(&self) -> Option<RefreshReport> {
        self.inner.last_refresh.lock().ok().and_then(|r| r.clone())
    }

    /// Asks the background task to refresh now.
    pub fn refresh_soon(&self) {
        self.inner.refresh_now.notify_one();
    }

    /// Selects an orchestrator for `job`, skipping the URLs in `exclude` (those this request
    /// already tried). The returned lease counts the request in flight until it is dropped.
    /// A transcoding job here is the smallest one ([`caps::BASIC_TRANSCODE`]); a segment's
    /// own needs go through [`select_transcode`](Self::select_transcode).
    pub fn select(&self, job: &JobKey, exclude: &[&str]) -> Result<Lease, SelectError> {
        let needs = (*job == JobKey::transcode()).then_some(caps::BASIC_TRANSCODE);
        self.select_needing(job, exclude, needs)
    }

    /// Selects an orchestrator for a transcoding job that needs the capabilities `needs`
    /// (ids 0–63 as a bitmask, as go-livepeer's `JobCapabilities` forms them): one lacking a
    /// capability the job needs is passed over, one lacking only others is a candidate, as
    /// go-livepeer's discovery selects with the stream's capabilities. A mask test per
    /// candidate looked at, against masks the pool build computed: nothing is allocated.
    pub fn select_transcode(&self, exclude: &[&str], needs: u64) -> Result<Lease, SelectError> {
        self.select_needing(&JobKey::transcode(), exclude, Some(needs))
    }

    fn select_needing(
        &self,
        job: &JobKey,
        exclude: &[&str],
        needs: Option<u64>,
    ) -> Result<Lease, SelectError> {
        let snap = self.inner.snapshot.load_full();
        let Some(tiers) = snap.index.get(job) else {
            return Err(SelectError::NotOffered(job.clone()));
        };
        let excluded: Vec<u32> =
            exclude.iter().filter_map(|u| snap.by_url.get(*u).copied()).collect();
        let now = self.now_ms();
        let live = |e: &Entry| {
            let (orch, job) = (&snap.slots[e.orch as usize].stats, &snap.jobs[e.job as usize]);
            Live {
                state: orch.breaker.state(now).max(job.breaker.state(now)),
                in_flight: job.load.in_flight(),
                latency_us: job.load.latency_us(),
                stake: snap.slots[e.orch as usize].stake,
            }
        };
        let needs = needs.map(|n| (n, snap.transcode_caps.as_slice()));
        let limits = Limits { max_price: tiers.max_price, exclude: &excluded, needs };
        let mut rng = rand::rng();
        let weights = &self.inner.config.weights;
        // A due probe may be claimed by another request between choosing and claiming; then
        // choose again without it. Bounded: each round excludes one more orchestrator.
        let mut excluded = excluded.clone();
        loop {
            let limits = Limits { exclude: &excluded, ..limits };
            let picked =
                selection::choose(&[&tiers.warm, &tiers.cold], live, &limits, weights, &mut rng);
            let Some(entry) = picked else {
                return Err(self.why_none(job, tiers));
            };
            let slot = &snap.slots[entry.orch as usize];
            let job = snap.jobs[entry.job as usize].clone();
            // Its place taken with the room checked again, in one step: another request may
            // have taken the last one since it was chosen.
            if !job.load.try_begin_request(entry.capacity) {
                excluded.push(entry.orch);
                continue;
            }
            let Some(probe) = claim_probes(&slot.stats, &job, now) else {
                job.load.end_request();
                excluded.push(entry.orch);
                continue;
            };
            slot.stats.selected();
            slot.stats.load.begin_request();
            return Ok(Lease {
                pool: self.clone(),
                stats: slot.stats.clone(),
                job,
                snapshot: snap.clone(),
                index: entry.orch,
                price: entry.price,
                started: Instant::now(),
                probe,
                done: false,
            });
        }
    }

    fn why_none(&self, job: &JobKey, tiers: &super::snapshot::Tiers) -> SelectError {
        let candidates = tiers.warm.len() + tiers.cold.len();
        match (candidates, tiers.max_price, tiers.over_price.first()) {
            (0, Some(max), Some(cheapest)) => {
                SelectError::OverPrice { job: job.clone(), max, cheapest: cheapest.price }
            }
            (0, _, _) => SelectError::NotOffered(job.clone()),
            _ => SelectError::Unavailable { job: job.clone(), candidates },
        }
    }

    async fn run(self, cancel: CancellationToken) {
        let mut refresh = tokio::time::interval(self.inner.config.refresh_interval);
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        refresh.reset();
        let mut probe = tokio::time::interval(self.inner.config.probe_interval);
        probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = refresh.tick() => self.refresh().await,
                _ = self.inner.refresh_now.notified() => {
                    self.refresh().await;
                    refresh.reset();
                }
                _ = probe.tick() => self.probe_due().await,
            }
        }
    }

    /// One refresh round: fetch the list, ask every orchestrator in parallel, publish.
    pub async fn refresh(&self) {
        let started = Instant::now();
        let (urls, source_error) = match self.inner.discovery.urls().await {
            Ok(urls) => (urls, None),
            Err(e) => {
                tracing::warn!(error = %e, "orchestrator list unavailable; keeping the current one");
                let known =
                    self.inner.known.lock().map(|k| k.iter().map(|s| s.url.clone()).collect());
                (known.unwrap_or_default(), Some(e.to_string()))
            }
        };
        let results = self.fetch_all(&urls).await;
        let ok = results.iter().filter(|(_, r)| r.is_ok()).count();
        {
            let Ok(mut known) = self.inner.known.lock() else { return };
            let mut previous: HashMap<String, Slot> =
                known.drain(..).map(|s| (s.url.to_string(), s)).collect();
            let mut results: HashMap<String, Result<OrchInfo, ClientError>> =
                results.into_iter().map(|(u, r)| (u.to_string(), r)).collect();
            // Walk the list, not the results: an orchestrator whose call task died keeps its
            // last state instead of silently leaving the pool.
            for url in &urls {
                let mut slot = previous.remove(url.as_str()).unwrap_or_else(|| Slot {
                    stats: Arc::new(OrchStats::with_selection_counter(
                        self.inner.metrics.selection_counter(url.as_str()),
                    )),
                    url: url.clone(),
                    info: None,
                    blocked: false,
                    stake: 0.0,
                });
                slot.stake = self.inner.discovery.stake(url);
                if let Some(result) = results.remove(url.as_str()) {
                    self.apply(&mut slot, result);
                }
                known.push(slot);
            }
        }
        self.publish();
        let report = RefreshReport {
            asked: urls.len(),
            ok,
            took_ms: started.elapsed().as_millis() as u64,
            at_ms: self.now_ms(),
            source_error,
        };
        tracing::info!(
            asked = report.asked,
            ok = report.ok,
            took_ms = report.took_ms,
            "refreshed orchestrator pool"
        );
        if let Ok(mut r) = self.inner.last_refresh.lock() {
            *r = Some(report);
        }
    }

    async fn fetch_all(&self, urls: &[Url]) -> Vec<(Url, Result<OrchInfo, ClientError>)> {
        let limit = Arc::new(Semaphore::new(self.inner.config.max_concurrent_calls.max(1)));
        let mut set = JoinSet::new();
        for (i, url) in urls.iter().enumerate() {
            let (client, url, limit) = (self.inner.client.clone(), url.clone(), limit.clone());
            set.spawn(async move {
                let _permit = limit.acquire_owned().await;
                let result = client.get_orchestrator(&url, None, false).await;
                (i, url, result)
            });
        }
        let mut out: Vec<Option<(Url, Result<OrchInfo, ClientError>)>> = vec![None; 0];
        out.resize_with(urls.len(), || None);
        while let Some(joined) = set.join_next().await {
            if let Ok((i, url, result)) = joined {
                out[i] = Some((url, result));
            }
        }
        out.into_iter().flatten().collect()
    }

    /// Folds one GetOrchestrator result into a slot: stats, metrics, and the info itself.
    fn apply(&self, slot: &mut Slot, result: Result<OrchInfo, ClientError>) {
        let url = slot.url.to_string();
        let now = self.now_ms();
        match result {
            Ok(info) => {
                self.inner.metrics.discovered(&url, info.rtt);
                // The discovery round trip is not fed into the job-latency EWMA: the first call
                // includes the TLS handshake and would penalise TLS orchestrators for a one-off
                // cost. Unmeasured orchestrators count as fast, so jobs try them and measure.
                if slot.stats.breaker.state(now) != HealthState::Healthy {
                    tracing::info!(orchestrator = %url, "orchestrator answered again; back in the pool");
                }
                slot.stats.breaker.record_success();
                let blocklist = &self.inner.requirements.load().blocklist;
                slot.blocked = info.address.is_some_and(|a| blocklist.contains(&a));
                slot.info = Some(Arc::new(info));
            }
            // The gateway's own shortage says nothing of the orchestrator: its info stays.
            Err(e @ ClientError::Local(_)) => {
                self.inner.metrics.discovery_error(&url, e.code());
                let error = text::one_line(&e.to_string());
                tracing::warn!(orchestrator = %url, %error, "orchestrator not refreshed");
            }
            Err(e) => {
                self.inner.metrics.discovery_error(&url, e.code());
                let was = slot.stats.breaker.state(now);
                // The gRPC message is the orchestrator's text, and `%` logs it as it is (the
                // record cuts it short too).
                let error = text::one_line(&e.to_string());
                slot.stats.breaker.record_failure(now, &self.inner.config.eject, error.clone());
                if was == HealthState::Healthy {
                    self.inner.metrics.ejected(&url);
                }
                tracing::warn!(orchestrator = %url, %error, cooldown_ms = slot.stats.cooldown_left_ms(now), "orchestrator ejected");
            }
        }
    }

    /// Probes every orchestrator whose cooldown has ended (half-open), in parallel.
    async fn probe_due(&self) {
        let now = self.now_ms();
        let due: Vec<Slot> = match self.inner.known.lock() {
            Ok(known) => {
                known.iter().filter(|s| s.stats.breaker.try_begin_probe(now)).cloned().collect()
            }
            Err(_) => return,
        };
        if due.is_empty() {
            return;
        }
        let urls: Vec<Url> = due.iter().map(|s| s.url.clone()).collect();
        let results = self.fetch_all(&urls).await;
        if let Ok(mut known) = self.inner.known.lock() {
            for (url, result) in results {
                if let Some(slot) = known.iter_mut().find(|s| s.url == url) {
                    // The probe this claimed ends without a verdict on the gateway's own
                    // shortage (any other result gives one).
                    let unjudged = matches!(result, Err(ClientError::Local(_)));
                    self.apply(slot, result);
                    if unjudged {
                        slot.stats.breaker.end_probe();
                    }
                }
            }
        }
        self.publish();
    }

    fn publish(&self) {
        // Built and stored under the lock: a rebuild for a price change and one for a refresh
        // then cannot store out of order, so the last snapshot stored always has the latest
        // slots and caps. Only background work and admin changes take this lock; requests read
        // the stored snapshot.
        let Ok(known) = self.inner.known.lock() else { return };
        let requirements = self.inner.requirements.load();
        let generation = self.inner.snapshot.load().generation + 1;
        let snap = Snapshot::build(known.clone(), &requirements, generation);
        census(&snap, self.now_ms(), &self.inner.metrics);
        self.inner.snapshot.store(Arc::new(snap));
    }
}

/// Hands the metrics what a new snapshot holds: the orchestrators by state, and how many offer
/// each AI model within its price cap.
fn census(snap: &Snapshot, now_ms: u64, metrics: &Metrics) {
    let mut counts = [0i64; 5];
    for s in &snap.slots {
        let i = match (s.blocked, s.info.is_some(), s.stats.state(now_ms)) {
            (true, _, _) => 4,
            (_, false, _) => 3,
            (_, _, HealthState::Healthy) => 0,
            (_, _, HealthState::Ejected) => 1,
            (_, _, HealthState::ProbeDue) => 2,
        };
        counts[i] += 1;
    }
    let states = ["healthy", "ejected", "probe_due", "unreachable", "blocked"];
    metrics.pool_states(states.into_iter().zip(counts));
    let transcoders =
        snap.slots.iter().filter_map(|s| s.info.as_deref()).map(|i| i.transcoder.as_str());
    metrics.pool_members(snap.slots.iter().map(|s| s.url.as_str()).chain(transcoders));
    metrics.available(
        snap.index
            .iter()
            .filter(|(key, _)| !key.model.is_empty())
            .map(|(key, tiers)| (key, (tiers.warm.len() + tiers.cold.len()) as i64)),
    );
}

/// Claims the half-open probes a selection needs: the orchestrator's own when it is due, and
/// the job key's when that is due. `None` when another request got one first (any claim made
/// here is given back); otherwise whether this attempt probes.
fn claim_probes(orch: &OrchStats, job: &JobStats, now: u64) -> Option<Probe> {
    let own_due = orch.breaker.state(now) == HealthState::ProbeDue;
    let job_due = job.breaker.state(now) == HealthState::ProbeDue;
    if own_due && !orch.breaker.try_begin_probe(now) {
        return None;
    }
    if job_due && !job.breaker.try_begin_probe(now) {
        if own_due {
            orch.breaker.end_probe();
        }
        return None;
    }
    Some(Probe { orch: own_due, job: job_due })
}

/// Which half-open probes one attempt holds.
#[derive(Debug, Clone, Copy, Default)]
struct Probe {
    /// The orchestrator's own breaker.
    orch: bool,
    /// The job key's breaker.
    job: bool,
}

// === impl Probe ===

impl Probe {
    /// Gives back the claims without a verdict.
    fn end(self, orch: &OrchStats, job: &JobStats) {
        if self.orch {
            orch.breaker.end_probe();
        }
        if self.job {
            job.breaker.end_probe();
        }
    }
}

/// One selected orchestrator for one attempt at one job key. Report the outcome with
/// [`Lease::succeeded`], [`Lease::failed`], [`Lease::failed_job`] or [`Lease::client_error`];
/// dropping it unreported only releases it.
#[derive(Debug)]
pub struct Lease {
    pool: Pool,
    /// The snapshot it was chosen from, which keeps `index` valid.
    snapshot: Arc<Snapshot>,
    index: u32,
    stats: Arc<OrchStats>,
    /// The job key's state at this orchestrator.
    job: Arc<JobStats>,
    price: Price,
    started: Instant,
    probe: Probe,
    done: bool,
}

// === impl Lease ===

impl Lease {
    /// The orchestrator's discovery URL.
    pub fn url(&self) -> &Url {
        &self.slot().url
    }

    fn slot(&self) -> &Slot {
        &self.snapshot.slots[self.index as usize]
    }

    /// Its last GetOrchestrator answer.
    pub fn info(&self) -> Option<&Arc<OrchInfo>> {
        self.slot().info.as_ref()
    }

    /// Its price for this job.
    pub fn price(&self) -> Price {
        self.price
    }

    /// Whether this attempt is the half-open probe of an ejected orchestrator or job key.
    pub fn is_probe(&self) -> bool {
        self.probe.orch || self.probe.job
    }

    /// The orchestrator served the request: record its latency, close its breakers (its own
    /// and this job key's).
    pub fn succeeded(mut self) {
        let took = self.started.elapsed();
        self.stats.load.observe_latency(took);
        self.job.load.observe_latency(took);
        self.stats.breaker.record_success();
        self.job.breaker.record_success();
        self.done = true;
    }

    /// The orchestrator failed as a whole (it cannot be reached): eject it for every job.
    pub fn failed(mut self, message: String) {
        let now = self.pool.now_ms();
        let was = self.stats.breaker.state(now);
        self.stats.breaker.record_failure(now, &self.pool.inner.config.eject, message);
        if self.probe.job {
            self.job.breaker.end_probe();
        }
        if was == HealthState::Healthy {
            self.pool.inner.metrics.ejected(self.slot().url.as_str());
        }
        self.done = true;
    }

    /// The orchestrator failed at this job (a 5xx, a timeout, a refusal): eject it for this
    /// job key only; other pipelines and models keep using it.
    pub fn failed_job(mut self, message: String) {
        let now = self.pool.now_ms();
        let was = self.job.breaker.state(now);
        self.stats.note_job_error(now, format!("{}: {message}", self.job.label));
        self.job.breaker.record_failure(now, &self.pool.inner.config.eject, message);
        if self.probe.orch {
            self.stats.breaker.end_probe();
        }
        if was == HealthState::Healthy {
            self.pool.inner.metrics.ejected(self.slot().url.as_str());
        }
        self.done = true;
    }

    /// The request failed because of the user's own input: no penalty for the orchestrator.
    pub fn client_error(mut self) {
        self.probe.end(&self.stats, &self.job);
        self.done = true;
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.stats.load.end_request();
        self.job.load.end_request();
        if !self.done {
            // Abandoned (e.g. the client went away): let someone else probe.
            self.probe.end(&self.stats, &self.job);
        }
    }
}

#[cfg(test)]
mod tests;
