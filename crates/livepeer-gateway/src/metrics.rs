//! Prometheus metrics: one struct of typed families, registered on an explicit registry.
//!
//! Names follow go-livepeer's (`livepeer_` prefix, GATEWAY.md §8.1) where an equivalent exists,
//! so existing dashboards keep working: `livepeer_discovery_errors_total` with `error_code` and
//! `orchestrator_uri`. The rest are ours, under `livepeer_gateway_`.
//!
//! Callers hand in plain values (labels, counts, durations, a [`JobKey`]), so that this module
//! imports nothing but `job` and every other module may record metrics.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::job::JobKey;

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
    pipeline: String,
    model_name: String,
    orchestrator_uri: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AiLatencyLabel {
    pipeline: String,
    model_name: String,
    orchestrator_uri: String,
    outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabel {
    pipeline: String,
    model_name: String,
}

/// All metric families; cheap to clone.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    discovery_errors: Family<ErrorLabel, Counter>,
    discovery_latency: Family<OrchLabel, Histogram>,
    selections: Family<OrchLabel, Counter>,
    ejections: Family<OrchLabel, Counter>,
    pool_size: Family<StateLabel, Gauge>,
    available: Family<ModelLabel, Gauge>,
    ai_requested: Family<ModelLabel, Counter>,
    ai_errors: Family<AiErrorLabel, Counter>,
    ai_latency: Family<AiLatencyLabel, Histogram>,
    tickets_sent: Family<PayLabel, Counter>,
    ticket_value_sent: Family<PayLabel, GweiCounter>,
    fees: Family<PayLabel, GweiCounter>,
    live_streams: Family<PipelineLabel, Gauge>,
    live_swaps: Family<ReasonLabel, Counter>,
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
        let available = add(
            r,
            "ai_orchestrators_available_total",
            "Orchestrators offering each pipeline and model within the price cap",
            Family::default(),
        );
        let ai_requested = add(
            r,
            "ai_models_requested",
            "Batch AI requests received, by pipeline and model",
            Family::default(),
        );
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
        Self {
            registry: Arc::new(std::mem::take(r)),
            live_streams,
            live_swaps,
            fees,
            tickets_sent,
            ticket_value_sent,
            ai_requested,
            ai_errors,
            ai_latency,
            discovery_errors,
            discovery_latency,
            selections,
            ejections,
            pool_size,
            available,
        }
    }

    /// The Prometheus text exposition of every family.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    pub(crate) fn discovery_error(&self, url: &str, code: &str) {
        let label = ErrorLabel { orchestrator_uri: url.to_owned(), error_code: code.to_owned() };
        self.discovery_errors.get_or_create(&label).inc();
    }

    pub(crate) fn discovered(&self, url: &str, rtt: Duration) {
        let label = OrchLabel { orchestrator_uri: url.to_owned() };
        self.discovery_latency.get_or_create(&label).observe(rtt.as_secs_f64());
    }

    pub(crate) fn ai_requested(&self, job: &JobKey) {
        let label =
            ModelLabel { pipeline: job.pipeline().to_owned(), model_name: job.model.clone() };
        self.ai_requested.get_or_create(&label).inc();
    }

    pub(crate) fn ai_error(&self, job: &JobKey, orch: &str, code: &str) {
        let label = AiErrorLabel {
            error_code: code.to_owned(),
            pipeline: job.pipeline().to_owned(),
            model_name: job.model.clone(),
            orchestrator_uri: orch.to_owned(),
        };
        self.ai_errors.get_or_create(&label).inc();
    }

    pub(crate) fn ai_latency(&self, job: &JobKey, orch: &str, outcome: &str, took: Duration) {
        let label = AiLatencyLabel {
            pipeline: job.pipeline().to_owned(),
            model_name: job.model.clone(),
            orchestrator_uri: orch.to_owned(),
            outcome: outcome.to_owned(),
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
        // Metrics only (floats): the exact amounts are in the request record.
        let gwei =
            |r: &livepeer_pm::Ratio| r.to_decimal_string(0).parse::<f64>().unwrap_or(0.0) / 1e9;
        let label =
            PayLabel { orchestrator_uri: orch.to_owned(), pipeline: job.pipeline().to_owned() };
        self.fees.get_or_create(&label).inc_by(gwei(fee_wei));
        if tickets > 0 {
            self.tickets_sent.get_or_create(&label).inc_by(u64::from(tickets));
            self.ticket_value_sent.get_or_create(&label).inc_by(gwei(ev_wei));
        }
    }

    pub(crate) fn live_stream_started(&self, pipeline: &str) {
        self.live_streams.get_or_create(&PipelineLabel { pipeline: pipeline.to_owned() }).inc();
    }

    pub(crate) fn live_stream_ended(&self, pipeline: &str) {
        self.live_streams.get_or_create(&PipelineLabel { pipeline: pipeline.to_owned() }).dec();
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

    pub(crate) fn ejected(&self, url: &str) {
        self.ejections.get_or_create(&OrchLabel { orchestrator_uri: url.to_owned() }).inc();
    }

    /// The orchestrators known, counted by state (`healthy`, `ejected`, ...).
    pub(crate) fn pool_states(&self, states: impl IntoIterator<Item = (&'static str, i64)>) {
        for (state, n) in states {
            self.pool_size.get_or_create(&StateLabel { state: state.to_owned() }).set(n);
        }
    }

    /// How many orchestrators offer each AI model within its price cap; models left out of
    /// `offers` are no longer on offer.
    pub(crate) fn available<'a>(&self, offers: impl IntoIterator<Item = (&'a JobKey, i64)>) {
        self.available.clear();
        for (key, n) in offers {
            let label =
                ModelLabel { pipeline: key.pipeline().to_owned(), model_name: key.model.clone() };
            self.available.get_or_create(&label).set(n);
        }
    }
}
