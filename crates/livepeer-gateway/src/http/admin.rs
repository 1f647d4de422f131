//! The admin listener (default 127.0.0.1:5935): status, orchestrators, health and metrics.
//!
//! Meant to stay private, like go-livepeer's CLI port. JSON uses snake_case field names; these
//! routes are ours. `/status` is served by `cli`, which adds go-livepeer's `NodeStatus` to the
//! document built here.

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::error::Error;
use crate::orchestrator::health::HealthState;
use crate::orchestrator::snapshot::{self, JobKey};
use crate::state::AppState;

/// Routes of the admin listener.
pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/orchestrators", get(orchestrators))
        .route("/orchestrators/refresh", post(refresh))
        .route("/select", get(select))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn healthz() -> &'static str {
    "ok"
}

/// go-livepeer's `/metrics`: Prometheus text format 0.0.4 whatever the scraper accepts, since
/// go-livepeer never answers in OpenMetrics and its counters' names depend on that.
async fn metrics(State(state): State<AppState>) -> Response {
    if let Some((payer, funds)) = state.payer.as_ref().and_then(|p| Some((p, p.funds()?))) {
        let wei = |v: alloy::primitives::U256| u128::try_from(v).unwrap_or(u128::MAX);
        let sender = payer.sender().to_checksum(None);
        state.metrics.sender_funds(&sender, wei(funds.deposit), wei(funds.reserve));
    }
    let body = state.metrics.encode();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body).into_response()
}

async fn refresh(State(state): State<AppState>) -> StatusCode {
    state.pool.refresh_soon();
    StatusCode::ACCEPTED
}

/// Our `/status` document (the dashboard's), which `cli` serves with go-livepeer's
/// `NodeStatus` members beside it.
pub(super) fn status_json(state: &AppState) -> Value {
    let snap = state.pool.snapshot();
    let now = state.pool.now_ms();
    let mut healthy = 0;
    let mut ejected = 0;
    let mut unreachable = 0;
    let jobs_ejected = snap.jobs.iter().filter(|j| j.breaker.state(now) != HealthState::Healthy);
    let jobs_ejected = jobs_ejected.count();
    for s in &snap.slots {
        match (s.info.is_some(), s.stats.state(now)) {
            (false, _) => unreachable += 1,
            (true, HealthState::Healthy) => healthy += 1,
            (true, _) => ejected += 1,
        }
    }
    let mut offers: Vec<Value> = snap
        .index
        .iter()
        .map(|(k, t)| {
            json!({
                "job": k.to_string(),
                "warm": t.warm.len(),
                "cold": t.cold.len(),
                "over_price": t.over_price.len(),
                "max_price": t.max_price.map(|p| p.to_string()),
            })
        })
        .collect();
    offers.sort_by(|a, b| a["job"].as_str().cmp(&b["job"].as_str()));
    let payments = state.payer.as_ref().map(|p| {
        json!({
            "sender": p.sender().to_checksum(None),
            "funds": p.funds().map(|f| json!({
                "deposit_wei": f.deposit.to_string(),
                "reserve_wei": f.reserve.to_string(),
                "unlocking": f.is_unlocking(),
                "withdraw_round": f.withdraw_round.to_string(),
                "unlocks_soon": p.unlocks_soon(&f),
            })),
            "reserve": p.reserve_report(),
            "sessions": p.sessions(),
            "stream_credits": p.stream_credits(),
        })
    });
    // The price caps as they are now: the admin API may have changed them since start.
    let mut config = Value::clone(&state.summary);
    let caps = state.requirements.load();
    config["max_price_per_unit"] = json!(caps.max_price.map(|p| p.to_string()));
    config["max_price_per_model"] = json!(caps.max_price_per_model.len());
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "payments": payments,
        "chain": state.chain.as_ref().map(|c| c.to_json()),
        "uptime_ms": now,
        "request_body_bytes": crate::body_memory::used(),
        "config": config,
        "pool": {
            "generation": snap.generation,
            "orchestrators": snap.slots.len(),
            "healthy": healthy,
            "ejected": ejected,
            "unreachable": unreachable,
            "jobs_ejected": jobs_ejected,
            "last_refresh": state.pool.last_refresh(),
            "offers": offers,
        },
    })
}

async fn orchestrators(State(state): State<AppState>) -> Json<Value> {
    let snap = state.pool.snapshot();
    let now = state.pool.now_ms();
    let requirements = &*state.requirements.load();
    let list: Vec<Value> = snap
        .slots
        .iter()
        .map(|s| {
            let info = s.info.as_deref();
            let models: Vec<Value> = info
                .and_then(|i| i.capabilities.as_ref())
                .map(|c| {
                    c.per_capability
                        .iter()
                        .flat_map(|(cap, models)| {
                            models.iter().map(move |(m, mc)| {
                                let key = JobKey { capability: *cap, model: m.clone() };
                                let compatible = info.map(|i| {
                                    snapshot::compatible(i, &key, requirements)
                                        .map_or_else(|e| Value::String(e.to_string()), |()| Value::Bool(true))
                                });
                                json!({
                                    "pipeline": key.pipeline(),
                                    "model": m,
                                    "warm": mc.warm,
                                    "capacity": mc.capacity,
                                    "runner_version": mc.runner_version,
                                    "price": info.map(|i| i.price_for(*cap, m).to_string()),
                                    "compatible": compatible,
                                })
                            })
                        })
                        .collect()
                })
                .unwrap_or_default();
            json!({
                "url": s.url.as_str(),
                "transcoder": info.map(|i| i.transcoder.clone()),
                "address": info.and_then(|i| i.address).map(|a| a.to_checksum(None)),
                "version": info.and_then(|i| i.capabilities.as_ref()).map(|c| c.version.clone()),
                "price": info.map(|i| i.price.to_string()),
                "capabilities": info.and_then(|i| i.capabilities.as_ref()).map(|c| {
                    (0..c.bitstring.len() as u32 * 64).filter(|id| c.has(*id)).collect::<Vec<_>>()
                }),
                "models": models,
                "ticket_params": info.map(|i| i.ticket_params.is_some()),
                "auth_token_expiration": info.and_then(|i| i.auth_token.as_ref()).map(|t| t.expiration),
                "discovery_rtt_ms": info.map(|i| i.rtt.as_secs_f64() * 1000.0),
                "latency_ewma_ms": s.stats.latency_us() as f64 / 1000.0,
                "in_flight": s.stats.in_flight(),
                "selections": s.stats.selections(),
                "state": s.stats.state(now),
                "consecutive_failures": s.stats.failures(),
                "cooldown_left_ms": s.stats.cooldown_left_ms(now),
                "blocked": s.blocked,
                "last_error": s.stats.last_error(),
                "jobs": s.stats.jobs(now),
            })
        })
        .collect();
    Json(json!({ "orchestrators": list }))
}

#[derive(Debug, serde::Deserialize)]
struct SelectQuery {
    pipeline: String,
    #[serde(default)]
    model: String,
}

/// A dry run of selection: which orchestrator would serve this job now. The lease is released
/// at once, so nothing stays counted in flight.
async fn select(State(state): State<AppState>, Query(q): Query<SelectQuery>) -> Response {
    let key = if q.pipeline == "transcode" {
        Some(JobKey::transcode())
    } else {
        JobKey::ai(&q.pipeline, &q.model)
    };
    let Some(key) = key else {
        return Error::invalid("pipeline", format!("unknown pipeline {:?}", q.pipeline))
            .into_response();
    };
    match state.pool.select(&key, &[]) {
        Ok(lease) => {
            let body = json!({
                "job": key.to_string(),
                "orchestrator": lease.url().as_str(),
                "transcoder": lease.info().map(|i| i.transcoder.clone()),
                "price": lease.price().to_string(),
                "probe": lease.is_probe(),
            });
            lease.client_error(); // a dry run: release without a verdict
            Json(body).into_response()
        }
        Err(e) => Error::select(&e).into_response(),
    }
}
