//! What the gateway offers now, read from the live pool (so never staler than one refresh):
//! `GET /v1/catalog`, every pipeline, model and BYOC capability with its warm and cold
//! orchestrators, their capacity, the range of their prices (per natural unit, and per second
//! and minute for live video and BYOC), and the latency measured here over the last minutes;
//! `GET /v1/models`, the LLMs in OpenAI's list shape, so that OpenAI clients and tools can
//! list what they may ask for; and `GET /`, the same catalogue as a page for a person
//! (`catalog_page`). All public, as OpenRouter's and OpenAI's model lists are. Each entry
//! carries what a customer pays for it (`--customer-prices`), `null` when it has no price.

use axum::Router;
use axum::extract::State;
use axum::response::Json;
use axum::routing::get;
use serde::Serialize;
use serde_json::{Value, json};

use std::sync::Arc;

use crate::job::JobKey;
use crate::keys::price::{CustomerPrices, Quote};
use crate::orchestrator::Pool;
use crate::orchestrator::health::HealthState;
use crate::orchestrator::price::Price;
use crate::orchestrator::selection::Entry;
use crate::orchestrator::snapshot::Tiers;
use crate::recent::{Latency, Recent};

/// What the catalogue routes read.
#[derive(Debug, Clone)]
pub(crate) struct CatalogState {
    pub(crate) pool: Pool,
    pub(crate) recent: Recent,
    pub(crate) prices: Arc<CustomerPrices>,
}

/// The catalogue's JSON routes.
pub(crate) fn router(state: CatalogState) -> Router {
    Router::new()
        .route("/v1/catalog", get(catalog))
        .route("/v1/models", get(models))
        .with_state(state)
}

/// What a pipeline is, for people and for the catalogue's fields.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PipelineInfo {
    /// Its title.
    pub(crate) title: &'static str,
    /// What it takes.
    pub(crate) input: &'static [&'static str],
    /// What it gives.
    pub(crate) output: &'static [&'static str],
    /// What one pricing unit is.
    pub(crate) unit: &'static str,
    /// Pricing units per second of service, for the pipelines billed by time.
    pub(crate) units_per_second: Option<u64>,
}

/// The description of `pipeline` (as `JobKey::pipeline` names it).
pub(crate) fn pipeline_info(pipeline: &str) -> PipelineInfo {
    let info = |title, input, output, unit| PipelineInfo {
        title,
        input,
        output,
        unit,
        units_per_second: None,
    };
    match pipeline {
        "text-to-image" => info("Text to image", &["text"], &["image"], "output pixel"),
        "image-to-image" => info("Image to image", &["image", "text"], &["image"], "input pixel"),
        "image-to-video" => info("Image to video", &["image"], &["video"], "output pixel"),
        "upscale" => info("Upscale", &["image", "text"], &["image"], "input pixel"),
        "audio-to-text" => info("Audio to text", &["audio"], &["text"], "millisecond of audio"),
        "segment-anything-2" => info("Segment anything 2", &["image"], &["masks"], "input pixel"),
        "llm" => info("Language model", &["text"], &["text"], "token (max_tokens)"),
        "image-to-text" => info("Image to text", &["image", "text"], &["text"], "input pixel"),
        "text-to-speech" => info("Text to speech", &["text"], &["audio"], "1/1000 character"),
        "live-video-to-video" => PipelineInfo {
            units_per_second: Some(livepeer_pm::LIVE_VIDEO_UNITS_PER_SECOND),
            ..info("Live video to video", &["video"], &["video"], "pixel (1280×720×30 a second)")
        },
        "byoc" => PipelineInfo {
            units_per_second: Some(1),
            ..info("Bring your own container", &["any"], &["any"], "second")
        },
        _ => info("Transcoding", &["video"], &["video"], "pixel"),
    }
}

/// An exact price range, wei as whole numbers or `num/den`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct PriceRange {
    /// The cheapest orchestrator's.
    pub(crate) min_wei: String,
    /// The dearest orchestrator's.
    pub(crate) max_wei: String,
}

/// The network's prices behind an entry.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct NetworkPrice {
    /// Wei per unit, cheapest (kept under the names the catalogue has always used).
    pub(crate) min_wei_per_unit: String,
    /// Wei per unit, dearest.
    pub(crate) max_wei_per_unit: String,
    /// What one unit is.
    pub(crate) unit: &'static str,
    /// For live video and BYOC: wei per second of service.
    pub(crate) per_second: Option<PriceRange>,
    /// For live video and BYOC: wei per minute of service.
    pub(crate) per_minute: Option<PriceRange>,
}

/// Warm and cold orchestrators.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub(crate) struct Orchestrators {
    /// With the model loaded.
    pub(crate) warm: usize,
    /// That would load it first.
    pub(crate) cold: usize,
}

/// Input and output kinds.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct Modalities {
    /// What a request carries.
    pub(crate) input: &'static [&'static str],
    /// What an answer carries.
    pub(crate) output: &'static [&'static str],
}

/// One thing the gateway offers now.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct CatalogEntry {
    /// `pipeline/model` (or `pipeline`).
    pub(crate) id: String,
    /// The pipeline (`byoc` for BYOC capabilities).
    pub(crate) pipeline: &'static str,
    /// The model, or the BYOC capability's name.
    pub(crate) model: String,
    /// A name for people.
    pub(crate) name: String,
    /// Input and output kinds.
    pub(crate) modalities: Modalities,
    /// `warm` when some orchestrator has it loaded, else `cold`.
    pub(crate) availability: &'static str,
    /// How many orchestrators offer it.
    pub(crate) orchestrators: Orchestrators,
    /// Their advertised capacity, summed.
    pub(crate) capacity: u64,
    /// Their prices.
    pub(crate) network_price: Option<NetworkPrice>,
    /// The time to an answer (to the first byte of a stream) of its requests through this
    /// gateway over the last minutes, when there were some.
    pub(crate) latency: Option<Latency>,
    /// What a customer pays per natural unit (`--customer-prices`); `null` when unpriced. A
    /// multiple of the orchestrator's price is quoted at the dearest orchestrator offering
    /// it, the most a customer pays.
    pub(crate) customer_price: Option<Quote>,
}

/// The jobs someone could run now: each with its orchestrators that are healthy for it (a
/// warm or cold model within the price caps, neither the orchestrator nor this job ejected),
/// in a stable order; jobs with none are left out.
fn offered(pool: &Pool) -> Vec<(JobKey, Tiers)> {
    let snap = pool.snapshot();
    let now = pool.now_ms();
    let usable = |e: &Entry| {
        let orch = snap.slots.get(e.orch as usize);
        let job = snap.jobs.get(e.job as usize);
        orch.is_some_and(|s| s.info.is_some() && s.stats.state(now) == HealthState::Healthy)
            && job.is_some_and(|j| j.breaker.state(now) == HealthState::Healthy)
    };
    let mut out: Vec<(JobKey, Tiers)> = snap
        .index
        .iter()
        .map(|(k, t)| {
            let keep = |v: &[Entry]| v.iter().filter(|e| usable(e)).cloned().collect();
            let tiers = Tiers { warm: keep(&t.warm), cold: keep(&t.cold), ..Tiers::default() };
            (k.clone(), tiers)
        })
        .filter(|(_, t)| !t.warm.is_empty() || !t.cold.is_empty())
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The cheapest and dearest price among `tiers`' orchestrators (`Price` compares exactly).
fn price_range(tiers: &Tiers) -> Option<(Price, Price)> {
    let prices = || tiers.warm.iter().chain(&tiers.cold).map(|e| e.price);
    Some((prices().min()?, prices().max()?))
}

/// The network price a multiple of the orchestrator's price is quoted at: the dearest
/// orchestrator's, in wei per gateway unit. Live video's orchestrators price pixels, not the
/// seconds its customers pay by, so it has none (nor is a multiple charged for it yet).
fn quote_basis(pipeline: &str, tiers: &Tiers) -> Option<livepeer_pm::Ratio> {
    if matches!(pipeline, "live-video-to-video" | "transcode") {
        return None;
    }
    price_range(tiers).and_then(|(_, dearest)| dearest.to_ratio().ok())
}

/// `price × n` wei, exact: a whole number, or `num/den` in lowest terms.
pub(crate) fn times(price: Price, n: u64) -> String {
    let num = u128::try_from(price.per_unit).unwrap_or(0) * u128::from(n);
    let den = u128::try_from(price.pixels_per_unit).unwrap_or(1).max(1);
    let (mut a, mut b) = (num, den);
    while b != 0 {
        (a, b) = (b, a % b);
    }
    let g = a.max(1);
    match (num / g, den / g) {
        (n, 1) => n.to_string(),
        (n, d) => format!("{n}/{d}"),
    }
}

/// A person's name for `key`: the model's last path segment and the pipeline's title.
fn human_name(key: &JobKey, info: &PipelineInfo) -> String {
    let short = key.model.rsplit('/').next().unwrap_or_default();
    match (key.pipeline(), short.is_empty()) {
        (_, true) => info.title.to_owned(),
        ("byoc", false) => format!("{short} (BYOC capability)"),
        (_, false) => format!("{short} ({})", info.title.to_lowercase()),
    }
}

fn network_price(tiers: &Tiers, info: &PipelineInfo) -> Option<NetworkPrice> {
    let (lo, hi) = price_range(tiers)?;
    let scaled = |per: u64| PriceRange { min_wei: times(lo, per), max_wei: times(hi, per) };
    Some(NetworkPrice {
        min_wei_per_unit: lo.to_string(),
        max_wei_per_unit: hi.to_string(),
        unit: info.unit,
        per_second: info.units_per_second.map(scaled),
        per_minute: info.units_per_second.map(|u| scaled(u.saturating_mul(60))),
    })
}

/// The catalogue now.
pub(crate) fn entries(state: &CatalogState) -> Vec<CatalogEntry> {
    let now_ms = Recent::now_ms();
    offered(&state.pool)
        .into_iter()
        .map(|(key, tiers)| {
            let info = pipeline_info(key.pipeline());
            let id = key.to_string();
            let capacity = tiers.warm.iter().chain(&tiers.cold).map(|e| u64::from(e.capacity));
            CatalogEntry {
                latency: state.recent.latency(&id, now_ms).filter(|l| l.samples > 0),
                name: human_name(&key, &info),
                pipeline: key.pipeline(),
                modalities: Modalities { input: info.input, output: info.output },
                availability: if tiers.warm.is_empty() { "cold" } else { "warm" },
                orchestrators: Orchestrators { warm: tiers.warm.len(), cold: tiers.cold.len() },
                capacity: capacity.sum(),
                network_price: network_price(&tiers, &info),
                customer_price: state.prices.quote(
                    key.pipeline(),
                    &key.model,
                    quote_basis(key.pipeline(), &tiers),
                ),
                model: key.model,
                id,
            }
        })
        .collect()
}

async fn catalog(State(state): State<CatalogState>) -> Json<Value> {
    Json(json!({ "object": "catalog", "data": entries(&state) }))
}

async fn models(State(state): State<CatalogState>) -> Json<Value> {
    let llm = crate::job::pipeline_capability("llm");
    let data: Vec<Value> = offered(&state.pool)
        .iter()
        .filter(|(key, _)| Some(key.capability) == llm)
        .map(|(key, _)| json!({ "id": key.model, "object": "model", "created": 0, "owned_by": "livepeer" }))
        .collect();
    Json(json!({ "object": "list", "data": data }))
}
