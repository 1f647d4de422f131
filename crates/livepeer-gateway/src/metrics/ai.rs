//! go-livepeer's batch AI families (GATEWAY.md §8.1), under its names: requests answered,
//! their last price per unit and latency score, and results downloaded from orchestrators.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::node::FloatGauge;
use super::{AiLatencyLabel, Metrics, ModelLabel, add, hash_label};
use crate::job::JobKey;

/// Seconds: a result's download from its orchestrator. go-livepeer's bounds for this
/// histogram are written `0, .10, .20, .50, .100, .150, .200, .500, .1000, .5000, 10.000`,
/// milliseconds read as seconds, out of order and repeated (0.1 three times); these are the
/// seconds they meant, from 10 ms to a minute.
const DOWNLOAD_BUCKETS: [f64; 11] = [0.01, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0];

/// A pipeline, a model and an orchestrator URI, each bounded as every label is.
#[derive(Debug, Clone, PartialEq, Eq, EncodeLabelSet)]
struct ScoreLabel {
    pipeline: &'static str,
    model_name: String,
    orchestrator_uri: String,
}

impl std::hash::Hash for ScoreLabel {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        hash_label(state, &[self.pipeline, &self.model_name, &self.orchestrator_uri]);
    }
}

/// The families.
#[derive(Debug, Clone)]
pub(super) struct AiFamilies {
    requested: Family<ModelLabel, Counter>,
    price: Family<ModelLabel, FloatGauge>,
    score: Family<ScoreLabel, FloatGauge>,
    downloaded: Family<ModelLabel, Counter>,
    download_time: Family<ModelLabel, Histogram>,
}

impl AiFamilies {
    /// Registers them on `r`.
    pub(super) fn new(r: &mut Registry) -> Self {
        let download_time = Family::<ModelLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(DOWNLOAD_BUCKETS)
        });
        Self {
            requested: add(
                r,
                "ai_models_requested",
                "Batch AI requests answered, by pipeline and model",
                Family::default(),
            ),
            price: add(
                r,
                "ai_request_price",
                "Price per unit of the last answered batch AI request, in wei, by pipeline and model",
                Family::default(),
            ),
            score: add(
                r,
                "ai_request_latency_score",
                "Seconds per unit of work (pixel and inference step, token, character, second \
                 of audio) of the last answered batch AI request, by pipeline, model and \
                 orchestrator",
                Family::default(),
            ),
            downloaded: add(
                r,
                "ai_result_downloaded",
                "Batch AI results downloaded from orchestrators, by pipeline and model",
                Family::default(),
            ),
            download_time: add(
                r,
                "ai_result_download_time_seconds",
                "Time to download a batch AI result from its orchestrator, by pipeline and model",
                download_time,
            ),
        }
    }

    /// Drops every series (their names mix pool names: see the `retire` module).
    pub(super) fn clear(&self) {
        self.requested.clear();
        self.price.clear();
        self.score.clear();
        self.downloaded.clear();
        self.download_time.clear();
    }
}

/// What a request answered adds to its metrics: the price per unit it was paid at (wei per
/// unit as `(price, units)`), when priced, and its latency score (`crate::ai::score`), when
/// known.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Answered {
    /// Wei per unit as `(price, units)`.
    pub price: Option<(i64, i64)>,
    /// Seconds per unit of work.
    pub score: Option<f64>,
}

impl Metrics {
    /// A batch AI request finished with `outcome` after `took`, served by the orchestrator
    /// `orch` (empty when none was selected), and `answered` when it was: our
    /// `gateway_ai_request_duration_seconds`, and go-livepeer's `ai_models_requested`,
    /// `ai_request_price` and `ai_request_latency_score`. The labels are bounded once for all.
    pub(crate) fn ai_finished(
        &self,
        (job, orch): (&JobKey, &str),
        outcome: &'static str,
        took: Duration,
        answered: Option<Answered>,
    ) {
        let pipeline = job.pipeline();
        let (model_name, orchestrator_uri) = (self.model_label(job), self.orch_label(orch));
        if let Some(answered) = answered {
            let model = ModelLabel { pipeline, model_name: model_name.clone() };
            self.record_answered(model, &orchestrator_uri, answered);
        }
        let label = AiLatencyLabel { pipeline, model_name, orchestrator_uri, outcome };
        self.ai_latency.get_or_create(&label).observe(took.as_secs_f64());
    }

    /// [`Answered`] alone, for tests.
    #[cfg(test)]
    pub(crate) fn ai_answered(
        &self,
        job: &JobKey,
        orch: &str,
        price: Option<(i64, i64)>,
        score: Option<f64>,
    ) {
        let label = ModelLabel { pipeline: job.pipeline(), model_name: self.model_label(job) };
        self.record_answered(label, &self.orch_label(orch), Answered { price, score });
    }

    /// Counts the request `model` answered, with `orch` already bounded.
    fn record_answered(&self, model: ModelLabel, orch: &str, answered: Answered) {
        self.ai.requested.get_or_create(&model).inc();
        if let Some((per_unit, units)) = answered.price.filter(|&(_, units)| units > 0) {
            // A float, as go-livepeer's gauge; the exact price is in the request's log line.
            self.ai.price.get_or_create(&model).set(per_unit as f64 / units as f64);
        }
        if let Some(score) = answered.score {
            let ModelLabel { pipeline, model_name } = model;
            let label = ScoreLabel { pipeline, model_name, orchestrator_uri: orch.to_owned() };
            self.ai.score.get_or_create(&label).set(score);
        }
    }

    /// The latency score of a request answered earlier, known only at its end (a streamed
    /// LLM answer's tokens come in its last event).
    pub(crate) fn ai_scored(&self, job: &JobKey, orch: &str, score: f64) {
        let (pipeline, model_name) = (job.pipeline(), self.model_label(job));
        let label = ScoreLabel { pipeline, model_name, orchestrator_uri: self.orch_label(orch) };
        self.ai.score.get_or_create(&label).set(score);
    }

    /// A result downloaded from its orchestrator in `took`: go-livepeer's
    /// `ai_result_downloaded_total` and `ai_result_download_time_seconds`.
    pub(crate) fn ai_result_downloaded(&self, job: &JobKey, took: Duration) {
        let label = ModelLabel { pipeline: job.pipeline(), model_name: self.model_label(job) };
        self.ai.downloaded.get_or_create(&label).inc();
        self.ai.download_time.get_or_create(&label).observe(took.as_secs_f64());
    }
}
