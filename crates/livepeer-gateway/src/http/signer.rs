//! The remote-signer routes (`crate::payment::signer`) over HTTP, and the statuses of their
//! refusals: 401 without the API key, 503 when no orchestrator matches, and for payments 400
//! (malformed, or a state that is not ours), 480 (refresh the OrchestratorInfo, with
//! `Livepeer-Orchestrator-URL`), 481 (price above a ceiling), 482 (the balance covers it),
//! 500. Payment error bodies are `{"error": {"message"}}`, as go-livepeer's; `/sign-byoc-job`
//! (not a go-livepeer route) answers a bad body 400 with the gateway's error body, which
//! names the field.

use std::time::Duration;

use axum::Router;
use axum::extract::{RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use serde_json::json;

use super::body::read_body;
use super::error::json_error;
use crate::payment::signer::{JobSignRequest, PaymentRequest, Refusal, SignerState};

/// The largest `/generate-live-payment` body: an OrchestratorInfo, a state and capabilities
/// are a few kilobytes.
const MAX_BODY_BYTES: usize = 1 << 20;
/// The largest `/sign-byoc-job` body. Its `request` travels again in the `Livepeer` header,
/// which go-livepeer's server takes only within 1 MiB of headers (Go's `DefaultMaxHeaderBytes`),
/// so a larger job could not be sent anyway.
const MAX_JOB_BODY_BYTES: usize = 1 << 20;
/// How long a client may take to send either body.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a 480 tells the client to refresh the orchestrator's info.
const REFRESH_URL_HEADER: &str = livepeer_proto::headers::ORCHESTRATOR_URL;

/// The signer routes, to merge into the public router.
pub(crate) fn router(state: SignerState) -> Router {
    Router::new()
        .route("/sign-orchestrator-info", post(sign_orchestrator_info))
        .route("/discover-orchestrators", get(discover_orchestrators))
        .route("/generate-live-payment", post(generate_live_payment))
        .route("/sign-byoc-job", post(sign_byoc_job))
        .with_state(state)
}

fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok())
}

async fn sign_orchestrator_info(State(state): State<SignerState>, headers: HeaderMap) -> Response {
    match state.authorize(authorization(&headers)) {
        Ok(()) => Json(state.identity()).into_response(),
        Err(refusal) => refused(refusal),
    }
}

async fn discover_orchestrators(
    State(state): State<SignerState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    match state.authorize(authorization(&headers)).and_then(|()| state.discover(query.as_deref())) {
        Ok(list) => Json(list).into_response(),
        Err(refusal) => refused(refusal),
    }
}

/// `POST /generate-live-payment`: the API key first, so that a caller without it learns
/// nothing about the body and costs no read of it; then the body, within its limits.
async fn generate_live_payment(State(state): State<SignerState>, req: Request) -> Response {
    if let Err(refusal) = state.authorize(authorization(req.headers())) {
        return refused(refusal);
    }
    let body = match read_body(req, MAX_BODY_BYTES, BODY_TIMEOUT).await {
        Ok(body) => body,
        Err(e) => return e.into_response(),
    };
    match PaymentRequest::parse(&body).and_then(|req| state.pay(&req)) {
        Ok(answer) => Json(json!({
            "payment": answer.payment,
            "segCreds": answer.seg_creds,
            "state": { "State": answer.state, "Sig": answer.sig },
        }))
        .into_response(),
        Err(refusal) => refused(refusal),
    }
}

/// `POST /sign-byoc-job`: like `/generate-live-payment`, the API key before the body.
async fn sign_byoc_job(State(state): State<SignerState>, req: Request) -> Response {
    if let Err(refusal) = state.authorize(authorization(req.headers())) {
        return refused(refusal);
    }
    let body = match read_body(req, MAX_JOB_BODY_BYTES, BODY_TIMEOUT).await {
        Ok(body) => body,
        Err(e) => return e.into_response(),
    };
    match JobSignRequest::parse(&body).and_then(|req| state.sign_job(&req)) {
        Ok(answer) => Json(answer).into_response(),
        Err(refusal) => refused(refusal),
    }
}

/// The one mapping from a signer refusal to its answer.
fn refused(refusal: Refusal) -> Response {
    let message = refusal.to_string();
    let status = match &refusal {
        Refusal::Unauthorized => {
            return json_error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                message,
                Some("Authorization"),
            );
        }
        Refusal::NoOrchestrators => {
            return json_error(StatusCode::SERVICE_UNAVAILABLE, "no_orchestrators", message, None);
        }
        Refusal::InvalidField { field, .. } => {
            return json_error(StatusCode::BAD_REQUEST, "invalid_request", message, Some(field));
        }
        Refusal::Malformed(_) => StatusCode::BAD_REQUEST,
        Refusal::RefreshSession { .. } => payment_status(480),
        Refusal::PriceExceeded(_) => payment_status(481),
        Refusal::Covered => payment_status(482),
        Refusal::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let mut resp = (status, Json(json!({ "error": { "message": message } }))).into_response();
    if let Refusal::RefreshSession { orchestrator } = refusal
        && let Ok(url) = HeaderValue::from_str(&orchestrator)
    {
        resp.headers_mut().insert(REFRESH_URL_HEADER, url);
    }
    resp
}

/// go-livepeer's non-standard payment statuses (480–482).
fn payment_status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt as _;

    async fn answer(refusal: Refusal) -> (u16, Option<String>, serde_json::Value) {
        let resp = refused(refusal);
        let status = resp.status().as_u16();
        let url = resp.headers().get(REFRESH_URL_HEADER).map(|v| v.to_str().unwrap().to_owned());
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, url, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn refusals_map_to_go_livepeer_statuses() {
        let message = |m: &str| json!({"error": {"message": m}});
        assert_eq!(
            answer(Refusal::malformed("invalid sig")).await,
            (400, None, message("invalid sig"))
        );
        let refresh = Refusal::RefreshSession { orchestrator: "https://o:1".into() };
        assert_eq!(
            answer(refresh).await,
            (480, Some("https://o:1".into()), message("refresh session"))
        );
        assert_eq!(answer(Refusal::PriceExceeded("p".into())).await, (481, None, message("p")));
        assert_eq!(answer(Refusal::Covered).await, (482, None, message("no tickets")));
        let internal = answer(Refusal::Internal("x".into())).await;
        assert_eq!(internal, (500, None, message("Internal Server Error: x")));
        let (status, _, body) = answer(Refusal::Unauthorized).await;
        assert_eq!((status, body["error"]["type"].as_str()), (401, Some("unauthorized")));
        assert_eq!(body["error"]["field"], "Authorization");
        let bad = Refusal::InvalidField { field: "request", message: "request is required".into() };
        let (status, _, body) = answer(bad).await;
        assert_eq!(status, 400);
        assert_eq!(body["error"]["type"], "invalid_request");
        assert_eq!(body["error"]["field"], "request");
        assert_eq!(body["error"]["message"], "request is required");
        let (status, _, body) = answer(Refusal::NoOrchestrators).await;
        assert_eq!(
            (status, body["error"]["message"].as_str()),
            (503, Some("no orchestrator matches"))
        );
    }
}
