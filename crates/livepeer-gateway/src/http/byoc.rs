//! `POST /process/request/{*path}`: BYOC batch jobs (`crate::byoc`). The handler checks the
//! `Livepeer` header before it reads a byte of the body, refuses a declared body over the
//! limit at once, holds at most the replayable head of the body within the job's deadline,
//! and relays the orchestrator's answer (status, body, `Content-Type`, `X-Metadata`,
//! `Livepeer-Balance`, `X-Orchestrator-Url`) as it streams.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use futures_util::{StreamExt as _, TryStreamExt as _};
use serde_json::{Value, json};

use crate::byoc::job::Sending;
use crate::byoc::request::JOB_HEADER;
use crate::byoc::{ByocState, JobRequest, Reply, Upload};
use crate::error::{Error, Kind};
use crate::keys::Tab;

/// The route's prefix; what follows goes to the orchestrator as it is.
const PREFIX: &str = "/process/request/";

/// The BYOC routes.
pub(crate) fn router(state: ByocState) -> Router {
    Router::new()
        .route("/process/request/{*path}", post(job))
        .with_state(Arc::new(state))
        // The body streams, bounded by `--byoc-max-body-bytes` as it passes.
        .layer(DefaultBodyLimit::disable())
}

/// The admin route: `GET /byoc/capabilities`.
pub(crate) fn admin_router(state: ByocState) -> Router {
    Router::new().route("/byoc/capabilities", get(capabilities)).with_state(Arc::new(state))
}

/// Every BYOC capability on offer, with each orchestrator's price (wei per second, exact),
/// whether it is within `--byoc-max-price`, and what its last job token said.
async fn capabilities(State(state): State<Arc<ByocState>>) -> Json<Value> {
    let snap = state.pool.snapshot();
    let tokens: HashMap<(String, String), _> =
        state.tokens.all().into_iter().map(|(o, c, t)| ((o, c), t)).collect();
    let balances: HashMap<(String, String), String> =
        state.payments.byoc_balances().into_iter().map(|(o, c, b)| ((o, c), b)).collect();
    let mut out: Vec<Value> = Vec::new();
    for (key, tiers) in snap.index.iter().filter(|(k, _)| k.is_byoc()) {
        let within = tiers.warm.iter().chain(&tiers.cold).map(|e| (e, true));
        let over = tiers.over_price.iter().map(|e| (e, false));
        let orchestrators: Vec<Value> = within
            .chain(over)
            .map(|(e, ok)| {
                let url = crate::byoc::tokens::orch_key(&snap.slots[e.orch as usize].url);
                let pair = (url.clone(), key.model.clone());
                let token = tokens.get(&pair).map(|t| {
                    json!({
                        "service_addr": t.service_addr,
                        "price_wei_per_second": wei(t.price),
                        "available_capacity": t.available_capacity,
                        "balance_wei": t.balance,
                    })
                });
                json!({
                    "url": url,
                    "price_wei_per_second": wei(e.price),
                    "within_max_price": ok,
                    "token": token,
                    "balance_view_wei": balances.get(&pair),
                })
            })
            .collect();
        let max = tiers.max_price.map(wei);
        out.push(json!({ "capability": key.model, "max_price_wei_per_second": max, "orchestrators": orchestrators }));
    }
    out.sort_by(|a, b| a["capability"].as_str().cmp(&b["capability"].as_str()));
    Json(json!({ "capabilities": out }))
}

/// A price in wei per second, exact: whole when it is, else `num/den`.
fn wei(p: crate::orchestrator::price::Price) -> String {
    match p.pixels_per_unit {
        d if d != 0 && p.per_unit % d == 0 => (p.per_unit / d).to_string(),
        _ => p.to_string(),
    }
}

async fn job(State(state): State<Arc<ByocState>>, req: Request) -> Response {
    let request_id = crate::ai::request_id();
    let mut resp = match handle(&state, req, &request_id).await {
        Ok(reply) => answer(reply),
        Err(e) => e.into_response(),
    };
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert(super::REQUEST_ID, v);
    }
    resp
}

async fn handle(state: &ByocState, req: Request, request_id: &str) -> Result<Reply, Error> {
    let config = &state.config;
    let header = req.headers().get(JOB_HEADER).map(HeaderValue::as_bytes);
    let job = JobRequest::parse(header, request_id, config.max_timeout_seconds)?;
    super::keys::allow_capability(req.extensions().get(), &job.capability)?;
    state.check(&job)?;
    // A customer key's budget pays for the job's seconds before any orchestrator is paid.
    let tab = req.extensions().get::<Arc<Tab>>().cloned();
    if let Some(tab) = &tab {
        tab.reserve(&job.capability, job.timeout_seconds, None).await?;
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > config.max_body_bytes) {
        return Err(crate::byoc::upload::too_large(config.max_body_bytes));
    }
    let path = req.uri().path().strip_prefix(PREFIX).unwrap_or_default().to_owned();
    // The path goes to the orchestrator as it is: no step may leave `/process/request/`.
    if has_dot_segment(&path) {
        let message = "the path after /process/request/ may not contain . or .. segments";
        return Err(Error::new(Kind::InvalidRequest, message).field("path"));
    }
    let content_type =
        req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body = req.into_body().into_data_stream().map_err(std::io::Error::other).boxed();
    let wait = Duration::from_secs(job.timeout_seconds) + Duration::from_secs(5);
    let upload =
        tokio::time::timeout(wait, Upload::start(body, config.replay_bytes, config.max_body_bytes))
            .await
            .map_err(|_| {
                Error::new(
                    Kind::BodyTimeout,
                    format!("the request body did not arrive within {wait:?}"),
                )
                .field("body")
            })??;
    let sending = Sending {
        path: &path,
        content_type: content_type.as_deref(),
        content_length: declared,
        upload: &upload,
        tab: tab.clone(),
    };
    let reply = crate::byoc::job::run(state, &job, &sending).await;
    if let (Some(tab), Ok(answer)) = (&tab, &reply.outcome)
        && answer.status < 400
    {
        tab.served(reply.orchestrator.as_deref().unwrap_or_default());
    }
    Ok(reply)
}

/// Whether a path has a `.` or `..` segment once `%2e` and `%2f` are decoded (as the
/// orchestrator's router decodes them before cleaning the path).
fn has_dot_segment(path: &str) -> bool {
    let decoded = path.to_ascii_lowercase().replace("%2e", ".").replace("%2f", "/");
    decoded.split('/').any(|s| s == "." || s == "..")
}

/// Keeps a container's answer, served from the gateway's own origin, from being anything a
/// browser runs: a type it would run (HTML, XML, SVG, script, or a value that is no text)
/// goes out as `application/octet-stream`, and `nosniff` and a sandboxing CSP stop it from
/// guessing. JSON, text, event streams and media keep their types.
pub(super) fn contain(h: &mut axum::http::HeaderMap) {
    // The result store's rule: no served type is a type a browser would run.
    let runs = h
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.to_str().map_or(true, |t| crate::ai::fetch::served_type(t).is_none()));
    if runs {
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    }
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    let csp = HeaderValue::from_static("default-src 'none'; sandbox");
    h.insert(header::CONTENT_SECURITY_POLICY, csp);
}

/// The client's answer: the orchestrator's, or the gateway's JSON error.
fn answer(reply: Reply) -> Response {
    let mut resp = match reply.outcome {
        Ok(answer) => {
            let mut resp = Response::new(Body::from_stream(answer.body));
            *resp.status_mut() = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
            let h = resp.headers_mut();
            for (name, value) in answer.headers {
                if let Ok(v) = HeaderValue::from_str(&value) {
                    h.insert(HeaderName::from_static(name), v);
                }
            }
            contain(h);
            if h.get(header::CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"))
            {
                h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            }
            // The seconds charged are settled as the body ends: the ledger row is written then.
            resp.extensions_mut().insert(super::keys::RecordAtEnd);
            resp
        }
        Err(e) => e.into_response(),
    };
    if let Some(Ok(v)) = reply.orchestrator.as_deref().map(HeaderValue::from_str) {
        resp.headers_mut().insert(super::SERVED_BY, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_containers_answer_is_never_served_as_something_a_browser_runs() {
        let cases = [
            ("application/json", "application/json"),
            ("text/event-stream", "text/event-stream"),
            ("text/plain; charset=utf-8", "text/plain; charset=utf-8"),
            ("image/png", "image/png"),
            ("text/html", "application/octet-stream"),
            ("TEXT/HTML; charset=utf-8", "application/octet-stream"),
            ("image/svg+xml", "application/octet-stream"),
            ("application/xhtml+xml", "application/octet-stream"),
            ("application/javascript", "application/octet-stream"),
        ];
        for (given, served) in cases {
            let mut h = axum::http::HeaderMap::new();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(given));
            contain(&mut h);
            assert_eq!(h[header::CONTENT_TYPE], served, "{given}");
            assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
            assert_eq!(h[header::CONTENT_SECURITY_POLICY], "default-src 'none'; sandbox");
        }
        let mut h = axum::http::HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_bytes(b"text/\xffhtml").unwrap());
        contain(&mut h);
        assert_eq!(h[header::CONTENT_TYPE], "application/octet-stream", "not text");
    }
}
