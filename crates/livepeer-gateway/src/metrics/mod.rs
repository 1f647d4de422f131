//! Prometheus metrics: one struct of typed families, registered on an explicit registry.
//!
//! Names follow go-livepeer's (`livepeer_` prefix, GATEWAY.md §8.1) where an equivalent exists,
//! so existing dashboards keep working: `livepeer_discovery_errors_total` with `error_code` and
//! `orchestrator_uri`, `livepeer_tickets_sent` without a `_total`, every series with go-livepeer's
//! `node_id` and `node_type`, served as Prometheus text 0.0.4 (the `exposition` module), with
//! the process series of Prometheus' Go client beside them (the `process` module). A name of
//! go-livepeer's counts what go-livepeer's does. The rest are ours, under `livepeer_gateway_`.
//!
//! Callers hand in plain values (labels, counts, durations, a [`JobKey`]), so that this module
//! imports nothing but `job` and every other module may record metrics.
//!
//! Label values that clients or orchestrators choose are bounded here, in one place: a model
//! is its own label only while some orchestrator in the pool offers it, and an orchestrator
//! URI only while it names a member of the pool (its discovery address or its transcoder
//! URI). Anything else is counted under [`OTHER`], so that the number of series follows the
//! pool, not what clients send (issue 11: 50,000 made-up models made 100k series).
//!
//! The pool's names change too: orchestrators come and go, and an orchestrator can offer new
//! model or capability names at every refresh. Series of names the pool no longer vouches
//! for are let go in bounded batches (the `retire` module).

mod ai;
pub(crate) use ai::Answered;
mod exposition;
mod node;
mod process;
mod retire;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::job::JobKey;

/// The label of a model no orchestrator in the pool offers, or of an orchestrator URI that
/// names no member of the pool.
pub const OTHER: &str = "other";

/// The label values the pool vouches for, replaced whole at each pool census.
#[derive(Debug, Default)]
struct Known {
    /// (capability, model) pairs some orchestrator offers.
    models: Set<JobKey>,
    /// Discovery addresses and transcoder URIs of the pool's orchestrators.
    orchestrators: Set<String>,
}

/// Looked up for every request's labels. Filled from discovery, never from clients, so a
/// fast seeded hash does (SipHash was about 1% of an LLM request's instructions here).
type Set<T> = HashSet<T, foldhash::fast::RandomState>;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OrchLabel {
    orchestrator_uri: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabel {
    orchestrator_uri: String,
    error_code: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AiErrorLabel {
    error_code: String,
    pipeline: &'static str,
    model_name: String,
    orchestrator_uri: String,
}

#[derive(Debug, Clone, PartialEq, Eq, EncodeLabelSet)]
struct AiLatencyLabel {
    pipeline: &'static str,
    model_name: String,
    orchestrator_uri: String,
    outcome: &'static str,
}

impl std::hash::Hash for AiLatencyLabel {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let parts = [self.pipeline, &self.model_name, &self.orchestrator_uri, self.outcome];
        hash_label(state, &parts);
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

#[derive(Debug, Clone, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabel {
    // `&'static str` where the set of values is fixed: a label made for every request then
    // allocates only for the values that are not.
    pipeline: &'static str,
    model_name: String,
}

impl std::hash::Hash for ModelLabel {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        hash_label(state, &[self.pipeline, &self.model_name]);
    }
}

/// The seed of [`hash_label`]: fixed, so that equal labels hash equally in every family.
const LABEL_HASH: foldhash::fast::FixedState = foldhash::fast::FixedState::with_seed(0x6c70_6777);

/// Feeds a label's values to a family's hasher as one foldhash `u64`. Why: a family's map
/// hashes with std's SipHash (prometheus-client's choice), which is slow over a model name and
/// an orchestrator URI; foldhash over the strings and SipHash over eight bytes took about 600
/// fewer instructions per LLM request (callgrind). Equal labels give equal `u64`s, as `Hash`
/// must. The values are the pool's or [`OTHER`], never a client's free choice, so nobody can
/// aim collisions at the map.
fn hash_label<H: std::hash::Hasher>(state: &mut H, parts: &[&str]) {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut h = LABEL_HASH.build_hasher();
    for part in parts {
        h.write(part.as_bytes());
        // Never in UTF-8: "ab" + "c" and "a" + "bc" hash apart.
        h.write_u8(0xff);
    }
    state.write_u64(h.finish());
}

/// All metric families; cheap to clone.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    known: Arc<ArcSwap<Known>>,
    /// Names the pool vouched for and no longer does, whose series are still kept.
    retired: Arc<retire::Retired>,
    discovery_errors: Family<ErrorLabel, Counter>,
    discovery_latency: Family<OrchLabel, Histogram>,
    selections: Family<OrchLabel, Counter>,
    ejections: Family<OrchLabel, Counter>,
    pool_size: Family<StateLabel, Gauge>,
    /// go-livepeer's `ai_orchestrators_available_total`: the orchestrators in the pool.
    pool_total: Gauge,
    available: Family<ModelLabel, Gauge>,
    funds: node::FundsFamilies,
    /// go-livepeer's `node_id` and `node_type`, added to every series when encoded.
    node: Arc<ArcSwap<exposition::NodeLabels>>,
    /// go-livepeer's batch AI families.
    ai: ai::AiFamilies,
    ai_errors: Family<AiErrorLabel, Counter>,
    ai_latency: Family<AiLatencyLabel, Histogram>,
    tickets_sent: Family<PayLabel, Counter>,
    ticket_value_sent: Family<PayLabel, GweiCounter>,
    fees: Family<PayLabel, GweiCounter>,
    live_streams: Family<PipelineLabel, Gauge>,
    live_swaps: Family<ReasonLabel, Counter>,
    byoc_latency: Family<ByocLabel, Histogram>,
    byoc_errors: Family<ByocLabel, Counter>,
    transcode: TranscodeFamilies,
    connections_refused: Family<ListenerLabel, Counter>,
    /// The last half hour at a glance (dashboard, catalogue latency), beside the families.
    recent: crate::recent::Recent,
}

/// go-livepeer's transcoding series (GATEWAY.md §8.1), under its names.
#[derive(Debug, Clone)]
struct TranscodeFamilies {
    source_appeared: Counter,
    transcoded: Counter,
    failed: Family<CodeLabel, Counter>,
    retried: Family<TryLabel, Counter>,
    latency: Family<OrchLabel, Histogram>,
    created: Counter,
    ended: Counter,
    current: Gauge,
    max: Gauge,
    swaps: Counter,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabel {
    error_code: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TryLabel {
    r#try: String,
}

/// Seconds: a segment from its arrival to its renditions, go-livepeer's buckets.
const TRANSCODE_BUCKETS: [f64; 13] =
    [0.0, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 10.0];

fn transcode_families(r: &mut Registry) -> TranscodeFamilies {
    TranscodeFamilies {
        source_appeared: add(
            r,
            "segment_source_appeared",
            "Segments received for transcoding",
            Counter::default(),
        ),
        transcoded: add(
            r,
            "segment_transcoded",
            "Segments transcoded into every rendition",
            Counter::default(),
        ),
        failed: add(
            r,
            "segment_transcode_failed",
            "Failed transcode attempts by go-livepeer error code",
            Family::default(),
        ),
        retried: add(
            r,
            "transcode_retried",
            "Segment attempts after the first, by try",
            Family::default(),
        ),
        latency: add(
            r,
            "transcode_overall_latency_seconds",
            "Transcoding latency, from the source segment's arrival until all its renditions \
             are in, retries included, by the orchestrator's transcoder URI",
            Family::new_with_constructor(|| Histogram::new(TRANSCODE_BUCKETS)),
        ),
        created: add(r, "stream_created", "Transcoding streams created", Counter::default()),
        ended: add(r, "stream_ended", "Transcoding streams ended", Counter::default()),
        current: add(r, "current_sessions_total", "Transcoding streams running", Gauge::default()),
        max: add(r, "max_sessions_total", "Transcoding streams allowed at once", Gauge::default()),
        swaps: add(
            r,
            "orchestrator_swaps",
            "Transcoding streams moved to another orchestrator",
            Counter::default(),
        ),
    }
}

/// A BYOC capability (bounded as models are: its name only while the pool offers it) and a
/// fixed outcome or error code.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ByocLabel {
    capability: String,
    outcome: String,
}

/// One of the gateway's own listeners, by its fixed name (`public-api`, `admin-api`).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabel {
    listener: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PipelineLabel {
    pipeline: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PayLabel {
    orchestrator_uri: String,
    pipeline: String,
}

/// Seconds: GetOrchestrator round trips.
const DISCOVERY_BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];
/// Seconds: whole batch AI requests, failovers included.
const AI_BUCKETS: [f64; 12] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// Registers `metric` under `name` and hands it back, so each family is declared once.
fn add<M: prometheus_client::registry::Metric + Clone>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    metric: M,
) -> M {
    registry.register(name, help, metric.clone());
    metric
}

type GweiCounter = Counter<f64, std::sync::atomic::AtomicU64>;

/// The discovery families: GetOrchestrator failures and round trips.
fn discovery_families(
    r: &mut Registry,
) -> (Family<ErrorLabel, Counter>, Family<OrchLabel, Histogram>) {
    let errors = add(
        r,
        "discovery_errors",
        "GetOrchestrator failures by orchestrator and error code",
        Family::default(),
    );
    let latency = add(
        r,
        "gateway_discovery_latency_seconds",
        "GetOrchestrator round trip of successful calls",
        Family::<OrchLabel, Histogram>::new_with_constructor(|| Histogram::new(DISCOVERY_BUCKETS)),
    );
    (errors, latency)
}

/// The payment families: tickets, their expected value and the fees, by orchestrator and
/// pipeline.
fn payment_families(
    r: &mut Registry,
) -> (Family<PayLabel, Counter>, Family<PayLabel, GweiCounter>, Family<PayLabel, GweiCounter>) {
    let tickets = add(
        r,
        "tickets_sent",
        "Probabilistic micropayment tickets sent, by orchestrator and pipeline",
        Family::default(),
    );
    let value = add(
        r,
        "ticket_value_sent",
        "Expected value of the tickets sent, in gwei (go-livepeer's unit), by orchestrator and pipeline",
        Family::default(),
    );
    let fees = add(
        r,
        "gateway_fees",
        "Fees of paid requests at the orchestrators' prices, in gwei, by orchestrator and pipeline",
        Family::default(),
    );
    (tickets, value, fees)
}

/// The pool's size under go-livepeer's name, and our count of orchestrators per AI model.
fn offer_families(r: &mut Registry) -> (Gauge, Family<ModelLabel, Gauge>) {
    let pool_total =
        add(r, "ai_orchestrators_available_total", "Orchestrators in the pool", Gauge::default());
    let available = add(
        r,
        "gateway_ai_orchestrators_available",
        "Orchestrators offering each pipeline and model within the price cap",
        Family::default(),
    );
    (pool_total, available)
}

/// The live-video families: streams running and orchestrator swaps.
fn live_families(r: &mut Registry) -> (Family<PipelineLabel, Gauge>, Family<ReasonLabel, Counter>) {
    let live_streams = add(
        r,
        "gateway_live_streams",
        "Live video streams running, by pipeline",
        Family::default(),
    );
    let live_swaps = add(
        r,
        "gateway_live_swaps",
        "Live orchestrator replacements, by kind of fault",
        Family::default(),
    );
    (live_streams, live_swaps)
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates the families on a fresh registry.
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("livepeer");
        let r = &mut r;
        let (discovery_errors, discovery_latency) = discovery_families(r);
        let selections = add(
            r,
            "gateway_selections",
            "Times each orchestrator was selected for a job",
            Family::default(),
        );
        let ejections = add(
            r,
            "gateway_orchestrator_ejections",
            "Times an orchestrator was ejected after failing",
            Family::default(),
        );
        let pool_size = add(
            r,
            "gateway_orchestrators",
            "Known orchestrators by state (healthy, ejected, probe_due, unreachable, blocked)",
            Family::default(),
        );
        let (pool_total, available) = offer_families(r);
        let ai = ai::AiFamilies::new(r);
        let funds = node::funds_families(r);
        node::versions(r);
        let ai_errors = add(
            r,
            "ai_request_errors",
            "Failed batch AI attempts by bounded error code, pipeline, model and orchestrator",
            Family::default(),
        );
        let ai_latency = add(
            r,
            "gateway_ai_request_duration_seconds",
            "Batch AI request latency (failovers included) by pipeline, model, serving orchestrator and outcome",
            Family::<AiLatencyLabel, Histogram>::new_with_constructor(|| {
                Histogram::new(AI_BUCKETS)
            }),
        );
        let (tickets_sent, ticket_value_sent, fees) = payment_families(r);
        let (live_streams, live_swaps) = live_families(r);
        let byoc_latency = add(
            r,
            "gateway_byoc_request_duration_seconds",
            "BYOC jobs (failovers included, until the answer's head) by capability and outcome",
            Family::<ByocLabel, Histogram>::new_with_constructor(|| Histogram::new(AI_BUCKETS)),
        );
        let byoc_errors = add(
            r,
            "gateway_byoc_attempt_errors",
            "Failed BYOC attempts by capability and kind (failed, busy, payment)",
            Family::default(),
        );
        let transcode = transcode_families(r);
        let connections_refused = add(
            r,
            "gateway_http_connections_refused",
            "Connections to the public or admin port closed on accept because their client \
             address already held --max-connections-per-address, by listener",
            Family::default(),
        );
        Self {
            transcode,
            connections_refused,
            byoc_latency,
            byoc_errors,
            registry: Arc::new(std::mem::take(r)),
            known: Arc::default(),
            retired: Arc::default(),
            live_streams,
            live_swaps,
            fees,
            tickets_sent,
            ticket_value_sent,
            ai,
            ai_errors,
            ai_latency,
            discovery_errors,
            discovery_latency,
            selections,
            ejections,
            pool_size,
            pool_total,
            available,
            funds,
            node: Arc::new(ArcSwap::from_pointee(exposition::NodeLabels::new(None, &host_name()))),
            recent: crate::recent::Recent::default(),
        }
    }

    /// The recent history: failed requests, the time series and latency windows.
    pub fn recent(&self) -> &crate::recent::Recent {
        &self.recent
    }

    /// Every family and the process series, as go-livepeer's `/metrics` serves them
    /// (Prometheus text format 0.0.4).
    pub fn encode(&self) -> String {
        let mut open = String::new();
        if prometheus_client::encoding::text::encode(&mut open, &self.registry).is_err() {
            open.clear();
        }
        let node = self.node.load();
        let mut out = exposition::prometheus_text(&open, &node);
        process::append(&mut out);
        out
    }

    /// The gateway's Ethereum account, which go-livepeer puts in every series' `node_id`.
    pub(crate) fn set_account(&self, account: &str) {
        self.node.store(Arc::new(exposition::NodeLabels::new(Some(account), &host_name())));
    }

    pub(crate) fn discovery_error(&self, url: &str, code: &str) {
        let label = ErrorLabel { orchestrator_uri: url.to_owned(), error_code: code.to_owned() };
        self.discovery_errors.get_or_create(&label).inc();
    }

    pub(crate) fn discovered(&self, url: &str, rtt: Duration) {
        let label = OrchLabel { orchestrator_uri: url.to_owned() };
        self.discovery_latency.get_or_create(&label).observe(rtt.as_secs_f64());
    }

    /// The model's label: its name while the pool offers it (or it is empty), else [`OTHER`].
    fn model_label(&self, job: &JobKey) -> String {
        if job.model.is_empty() || self.known.load().models.contains(job) {
            job.model.clone()
        } else {
            OTHER.to_owned()
        }
    }

    /// The orchestrator's label: its URI while it names a member of the pool (or it is empty,
    /// as for a request no orchestrator was selected for), else [`OTHER`].
    fn orch_label(&self, uri: &str) -> String {
        if uri.is_empty() || self.known.load().orchestrators.contains(uri) {
            uri.to_owned()
        } else {
            OTHER.to_owned()
        }
    }

    pub(crate) fn ai_error(&self, job: &JobKey, orch: &str, code: &str) {
        let label = AiErrorLabel {
            error_code: code.to_owned(),
            pipeline: job.pipeline(),
            model_name: self.model_label(job),
            orchestrator_uri: self.orch_label(orch),
        };
        self.ai_errors.get_or_create(&label).inc();
    }

    /// A request's latency alone, for tests (requests record it with
    /// [`ai_finished`](Self::ai_finished)).
    #[cfg(test)]
    pub(crate) fn ai_latency(
        &self,
        job: &JobKey,
        orch: &str,
        outcome: &'static str,
        took: Duration,
    ) {
        let label = AiLatencyLabel {
            pipeline: job.pipeline(),
            model_name: self.model_label(job),
            orchestrator_uri: self.orch_label(orch),
            outcome,
        };
        self.ai_latency.get_or_create(&label).observe(took.as_secs_f64());
    }

    pub(crate) fn paid(
        &self,
        orch: &str,
        job: &JobKey,
        tickets: u32,
        ev_wei: &livepeer_pm::Ratio,
        fee_wei: &livepeer_pm::Ratio,
    ) {
        self.recent.paid(tickets, ev_wei, fee_wei, crate::recent::Recent::now_ms());
        // Metrics only (floats): the exact amounts are in the request record.
        let gwei =
            |r: &livepeer_pm::Ratio| r.to_decimal_string(0).parse::<f64>().unwrap_or(0.0) / 1e9;
        let label = PayLabel {
            orchestrator_uri: self.orch_label(orch),
            pipeline: job.pipeline().to_owned(),
        };
        self.fees.get_or_create(&label).inc_by(gwei(fee_wei));
        if tickets > 0 {
            self.tickets_sent.get_or_create(&label).inc_by(u64::from(tickets));
            self.ticket_value_sent.get_or_create(&label).inc_by(gwei(ev_wei));
        }
    }

    pub(crate) fn segment_source_appeared(&self) {
        self.transcode.source_appeared.inc();
    }

    /// A segment transcoded by the orchestrator whose transcoder URI is `transcoder`, `took`
    /// after it arrived.
    pub(crate) fn segment_transcoded(&self, transcoder: &str, took: Duration) {
        self.transcode.transcoded.inc();
        let label = OrchLabel { orchestrator_uri: self.orch_label(transcoder) };
        self.transcode.latency.get_or_create(&label).observe(took.as_secs_f64());
    }

    /// A transcode attempt failed with go-livepeer's `code` (a fixed word).
    pub(crate) fn transcode_failed(&self, code: &str) {
        self.transcode.failed.get_or_create(&CodeLabel { error_code: code.to_owned() }).inc();
    }

    /// A segment's attempt number `attempt` (2 or more), go-livepeer's `try` label: tries past
    /// the tenth share `>10`.
    pub(crate) fn transcode_retried(&self, attempt: u32) {
        let r#try = if attempt > 10 { ">10".to_owned() } else { attempt.to_string() };
        self.transcode.retried.get_or_create(&TryLabel { r#try }).inc();
    }

    pub(crate) fn transcode_stream_created(&self) {
        self.transcode.created.inc();
    }

    pub(crate) fn transcode_stream_ended(&self) {
        self.transcode.ended.inc();
    }

    pub(crate) fn transcode_sessions(&self, running: usize) {
        self.transcode.current.set(running as i64);
    }

    pub(crate) fn transcode_max_sessions(&self, max: usize) {
        self.transcode.max.set(max as i64);
    }

    pub(crate) fn orchestrator_swap(&self) {
        self.transcode.swaps.inc();
    }

    /// A BYOC job ended with `outcome` (a fixed word) after `took`.
    pub(crate) fn byoc_request(&self, job: &JobKey, outcome: &str, took: Duration) {
        let label = ByocLabel { capability: self.model_label(job), outcome: outcome.to_owned() };
        self.byoc_latency.get_or_create(&label).observe(took.as_secs_f64());
    }

    /// A BYOC attempt failed with `code` (a fixed word).
    pub(crate) fn byoc_error(&self, job: &JobKey, code: &str) {
        let label = ByocLabel { capability: self.model_label(job), outcome: code.to_owned() };
        self.byoc_errors.get_or_create(&label).inc();
    }

    /// A live stream of `pipeline` (the client's model of live-video-to-video) started. A
    /// pipeline the pool does not offer counts under [`OTHER`], unless streams of it already
    /// run under its own name.
    pub(crate) fn live_stream_started(&self, pipeline: &str) {
        // Its series is not let go between the look at its count and the count.
        let _counts = self.retired.live_counts();
        let running = self.live_running(pipeline);
        let offered = JobKey::ai("live-video-to-video", pipeline)
            .is_some_and(|key| self.known.load().models.contains(&key));
        let label = if running || offered { pipeline } else { OTHER };
        self.live_streams.get_or_create(&PipelineLabel { pipeline: label.to_owned() }).inc();
    }

    /// A live stream of `pipeline` ended: it is taken off the series its start counted it in
    /// (its own name while streams of it run there, else [`OTHER`]), whatever the pool offers
    /// by now.
    pub(crate) fn live_stream_ended(&self, pipeline: &str) {
        let _counts = self.retired.live_counts();
        let label = if self.live_running(pipeline) { pipeline } else { OTHER };
        self.live_streams.get_or_create(&PipelineLabel { pipeline: label.to_owned() }).dec();
    }

    /// Whether streams of `pipeline` are counted under its own name.
    fn live_running(&self, pipeline: &str) -> bool {
        let label = PipelineLabel { pipeline: pipeline.to_owned() };
        self.live_streams.get(&label).is_some_and(|g| g.get() > 0)
    }

    /// A swap; the reason is reduced to a bounded kind for the label.
    pub(crate) fn live_swap(&self, reason: &str) {
        let kind = if reason.starts_with("no output") {
            "output_stalled"
        } else if reason.starts_with("no event") {
            "events_stopped"
        } else if reason.contains("output") {
            "output_failed"
        } else if reason.contains("input") {
            "input_failed"
        } else if reason.contains("events") {
            "events_failed"
        } else if reason.contains("control") {
            "control_failed"
        } else {
            "other"
        };
        self.live_swaps.get_or_create(&ReasonLabel { reason: kind.to_owned() }).inc();
    }

    /// The selection counter of one orchestrator. The pool keeps it in the orchestrator's
    /// stats, so that selecting costs one atomic increment and no label allocation.
    pub(crate) fn selection_counter(&self, url: &str) -> Counter {
        self.selections.get_or_create(&OrchLabel { orchestrator_uri: url.to_owned() }).clone()
    }

    /// The counter of `listener`'s connections refused for their address's cap, taken once
    /// per port so that a refusal costs one atomic increment. Labelled by the listener only:
    /// a client address as a label would make a series per client.
    pub(crate) fn connections_refused_counter(&self, listener: &'static str) -> Counter {
        self.connections_refused.get_or_create(&ListenerLabel { listener }).clone()
    }

    pub(crate) fn ejected(&self, url: &str) {
        self.ejections.get_or_create(&OrchLabel { orchestrator_uri: url.to_owned() }).inc();
    }

    /// The orchestrators known, counted by state (`healthy`, `ejected`, ...).
    pub(crate) fn pool_states(&self, states: impl IntoIterator<Item = (&'static str, i64)>) {
        let mut total = 0;
        for (state, n) in states {
            self.pool_size.get_or_create(&StateLabel { state: state.to_owned() }).set(n);
            total += n;
        }
        self.pool_total.set(total);
    }

    /// How many orchestrators offer each AI model within its price cap; models left out of
    /// `offers` are no longer on offer, and from now on are labelled [`OTHER`].
    pub(crate) fn available<'a>(&self, offers: impl IntoIterator<Item = (&'a JobKey, i64)>) {
        self.available.clear();
        let mut models = Set::default();
        for (key, n) in offers {
            let label = ModelLabel { pipeline: key.pipeline(), model_name: key.model.clone() };
            self.available.get_or_create(&label).set(n);
            models.insert(key.clone());
        }
        self.census(|before| Known { models, orchestrators: before.orchestrators.clone() });
    }

    /// The pool's members: the URIs (discovery addresses and transcoder URIs) that may be
    /// `orchestrator_uri` labels; any other is labelled [`OTHER`].
    pub(crate) fn pool_members<'a>(&self, uris: impl IntoIterator<Item = &'a str>) {
        let orchestrators = uris.into_iter().map(str::to_owned).collect();
        self.census(|before| Known { models: before.models.clone(), orchestrators });
    }
}

/// This machine's name, for `node_id` (empty if it has none).
fn host_name() -> String {
    rustix::system::uname().nodename().to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests;
