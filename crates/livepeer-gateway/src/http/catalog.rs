//! What the gateway offers now, read from the live pool (so never staler than one refresh):
//! `GET /v1/catalog`, every pipeline and model with its warm and cold orchestrators, their
//! capacity and the range of their prices; and `GET /v1/models`, the LLMs in OpenAI's list
//! shape, so that OpenAI clients and tools can list what they may ask for. Both are public, as
//! OpenRouter's and OpenAI's model lists are. Customer prices join the catalogue when the
//! customer-keys work prices requests.

use axum::Router;
use axum::extract::State;
use axum::response::Json;
use axum::routing::get;
use serde_json::{Value, json};

use crate::job::JobKey;
use crate::orchestrator::Pool;
use crate::orchestrator::health::HealthState;
use crate::orchestrator::price::Price;
use crate::orchestrator::selection::Entry;
use crate::orchestrator::snapshot::Tiers;

/// The catalogue routes over `pool`.
pub(crate) fn router(pool: Pool) -> Router {
    Router::new()
        .route("/v1/catalog", get(catalog))
        .route("/v1/models", get(models))
        .with_state(pool)
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

async fn catalog(State(pool): State<Pool>) -> Json<Value> {
    let entries: Vec<Value> = offered(&pool)
        .iter()
        .map(|(key, tiers)| {
            let capacity: u64 =
                tiers.warm.iter().chain(&tiers.cold).map(|e| u64::from(e.capacity)).sum();
            let price = price_range(tiers).map(|(lo, hi)| {
                json!({ "min_wei_per_unit": lo.to_string(), "max_wei_per_unit": hi.to_string() })
            });
            json!({
                "id": key.to_string(),
                "pipeline": key.pipeline(),
                "model": key.model,
                "orchestrators": { "warm": tiers.warm.len(), "cold": tiers.cold.len() },
                "capacity": capacity,
                "network_price": price,
            })
        })
        .collect();
    Json(json!({ "object": "catalog", "data": entries }))
}

async fn models(State(pool): State<Pool>) -> Json<Value> {
    let llm = crate::job::pipeline_capability("llm");
    let data: Vec<Value> = offered(&pool)
        .iter()
        .filter(|(key, _)| Some(key.capability) == llm)
        .map(|(key, _)| json!({ "id": key.model, "object": "model", "created": 0, "owned_by": "livepeer" }))
        .collect();
    Json(json!({ "object": "list", "data": data }))
}
