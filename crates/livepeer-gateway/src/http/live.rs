//! The live routes: the axum handlers and the client trickle channels' mount. The handlers read
//! the request, call [`crate::live::api`] and write its answer; a [`LiveError`] becomes the
//! gateway's [`Error`], answered by [`super::error`].

use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};

use super::error::JsonPath;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use std::sync::Arc;

use crate::error::Error;
use crate::keys::Tab;
use crate::keys::meter::{Metered, Paid, StreamPermit};
use crate::live::Stream;
use crate::live::api::{self, StartRequest};
use crate::live::{Credentials, LiveError, LiveState, MAX_CONTROL_BODY, SECRET_HEADER};

/// The live routes and the client trickle channels.
pub(crate) fn router(live: LiveState) -> Router {
    let trickle = live.hub().router();
    let preflight = super::cors::preflight;
    Router::new()
        .route("/live/video-to-video/{stream}/start", post(start).options(preflight))
        .route("/live/video-to-video/{stream}/update", post(update).options(preflight))
        .route("/live/video-to-video/{stream}/status", get(status).options(preflight))
        .route("/live/video-to-video/{stream}/stop", post(stop).delete(stop).options(preflight))
        .with_state(live)
        .nest("/ai/trickle", trickle)
}

/// The admin listener's live route: `GET /live/streams`, the status of every stream, running
/// or recently stopped.
pub(crate) fn admin_router(live: LiveState) -> Router {
    Router::new()
        .route(
            "/live/streams",
            get(|State(live): State<LiveState>| async move {
                let streams = live.streams();
                axum::Json(json!({ "count": streams.len(), "streams": streams }))
            }),
        )
        .with_state(live)
}

/// The HTTP answer to a failed live request.
fn error_response(e: &LiveError) -> Response {
    Error::from(e.clone()).into_response()
}

fn answer<T: serde::Serialize>(result: Result<T, LiveError>) -> Response {
    match result {
        Ok(body) => axum::Json(body).into_response(),
        Err(e) => error_response(&e),
    }
}

/// Longest wait for a `/start` or `/update` body: a client that stops sending one must not hold
/// the request.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// The live pipeline's name, for customer prices.
const LIVE: &str = "live-video-to-video";

/// A control body, through the gateway's one body reader: a declared length over the limit is
/// refused before anything is read, and the body has a deadline.
async fn read_body(req: Request) -> Result<Bytes, Error> {
    super::body::read_body(req, MAX_CONTROL_BODY, BODY_TIMEOUT).await
}

async fn start(
    State(live): State<LiveState>,
    JsonPath(name): JsonPath<String>,
    req: Request,
) -> Response {
    if let Err(e) = api::check_name(&name) {
        return error_response(&e);
    }
    let is_form =
        req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| {
            v.starts_with("multipart/") || v.starts_with("application/x-www-form")
        });
    if is_form {
        // MediaMTX's form hook means "pull RTMP from me", which this gateway does not do.
        return error_response(&LiveError::UnsupportedIngest);
    }
    let base = super::public_base(live.public_url(), req.headers(), req.uri());
    let query = req.uri().query().unwrap_or_default().to_owned();
    let tab = req.extensions().get::<Arc<Tab>>().cloned();
    let presented = credentials(req.headers());
    let authorization = presented.authorization.map(str::to_owned);
    let secret = presented.secret.map(str::to_owned);
    let body = match read_body(req).await {
        Ok(body) => body,
        Err(e) => return e.into_response(),
    };
    let start = StartRequest {
        name: &name,
        base: &base,
        query: &query,
        authorization: authorization.as_deref(),
        secret: secret.as_deref(),
        body: &body,
    };
    // With a customer key: a place among its streams, and its first interval paid for,
    // before any orchestrator is.
    let metered = match &tab {
        Some(tab) => match meter_start(&live, tab).await {
            Ok(permit) => Some((tab.clone(), permit)),
            Err(e) => return e.into_response(),
        },
        None => None,
    };
    let started = match api::start(&live, &start).await {
        Ok(started) => started,
        Err(e) => return error_response(&e),
    };
    if let Some((tab, permit)) = metered
        && let Err(e) = meter_stream(&live, tab, permit, &started.stream).await
    {
        return e.into_response();
    }
    let mut resp = axum::Json(started.body).into_response();
    if let Ok(secret) = HeaderValue::from_str(&started.secret) {
        resp.headers_mut().insert(SECRET_HEADER, secret);
    }
    resp
}

/// Seconds of live video in one charging interval (`--live-payment-interval`, at least 1).
fn interval_units(live: &LiveState) -> u64 {
    live.payment_interval().as_secs().max(1)
}

/// The customer key's checks before a stream starts: one of its streams, and its first
/// interval reserved against its budget.
async fn meter_start(live: &LiveState, tab: &Tab) -> Result<StreamPermit, Error> {
    let permit = tab.stream_permit().await?;
    // Before the fee: priced as a multiple of it, a start would otherwise cost nothing here
    // with the budget spent, and its orchestrator be prepaid each time before its charge
    // was refused.
    tab.reserve_before_fee(LIVE, interval_units(live)).await?;
    Ok(permit)
}

/// Charges the started `stream` to its key as it runs (and counts it among the key's
/// streams until it ends). Priced as a multiple of the orchestrator's price, the start is
/// charged on what its call prepaid: when the budget cannot pay it, the stream is stopped
/// and the start refused.
async fn meter_stream(
    live: &LiveState,
    tab: Arc<Tab>,
    permit: StreamPermit,
    stream: &Arc<Stream>,
) -> Result<(), Error> {
    let orchestrator = stream.status().orchestrator.unwrap_or_default();
    let unmetered = Arc::downgrade(stream);
    let guard = crate::keys::meter::StopUnlessMetered::new(move || {
        if let Some(stream) = unmetered.upgrade() {
            stream.stop("the client went away before its stream was metered");
        }
    });
    let prepaid = stream.fee_paid();
    tab.paid(0, &livepeer_pm::Ratio::ZERO, &prepaid);
    if let Err(e) = tab.reserve(LIVE, interval_units(live), Some(&prepaid)).await {
        stream.stop(&format!("{}: {}", e.kind().name(), e.message()));
        return Err(e);
    }
    tab.served(&orchestrator);
    let weak = Arc::downgrade(stream);
    let read = Arc::downgrade(stream);
    let metered = Metered {
        first: tab,
        model: LIVE.to_owned(),
        units: interval_units(live),
        interval: Duration::from_secs(interval_units(live)),
        orchestrator,
        ended: stream.stop.clone(),
        stop: Box::new(move |reason| {
            if let Some(stream) = weak.upgrade() {
                stream.stop(reason);
            }
        }),
        permit: Some(permit),
        paid: Some(Paid {
            read: Box::new(move || read.upgrade().map(|s| s.fee_paid()).unwrap_or(prepaid)),
            charged: prepaid,
            ev: false,
            settled: Some(stream.payments_out.watch()),
        }),
    };
    tokio::spawn(crate::keys::meter::meter(metered));
    guard.metered();
    Ok(())
}

/// The credentials a control request presents: its `Authorization` and stream secret.
fn credentials(headers: &HeaderMap) -> Credentials<'_> {
    let text = |name| headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok());
    Credentials { authorization: text(header::AUTHORIZATION.as_str()), secret: text(SECRET_HEADER) }
}

async fn update(
    State(live): State<LiveState>,
    JsonPath(name): JsonPath<String>,
    req: Request,
) -> Response {
    let stream = match api::owned(&live, &name, credentials(req.headers())) {
        Ok(stream) => stream,
        Err(e) => return error_response(&e),
    };
    let body = match read_body(req).await {
        Ok(body) => body,
        Err(e) => return e.into_response(),
    };
    answer(api::update(&stream, &body))
}

async fn status(
    State(live): State<LiveState>,
    JsonPath(name): JsonPath<String>,
    headers: HeaderMap,
) -> Response {
    answer(api::status(&live, &name, credentials(&headers)))
}

async fn stop(
    State(live): State<LiveState>,
    JsonPath(name): JsonPath<String>,
    headers: HeaderMap,
) -> Response {
    answer(api::stop(&live, &name, credentials(&headers)).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each error's status, `type`, field and `Retry-After`, as the live routes have always
    /// answered them, but for the two 503s that now tell when to retry (a full channel cap,
    /// an auth webhook down: both pass).
    #[tokio::test]
    async fn errors_map_to_the_same_answers_as_before() {
        let table: [(LiveError, u16, &str, Option<&str>, bool); 14] = [
            (LiveError::NotFound { stream: "s".into() }, 404, "not_found", Some("stream"), false),
            (LiveError::Exists { stream: "s".into() }, 409, "stream_exists", Some("stream"), false),
            (LiveError::Unauthorized { stream: "s".into() }, 401, "unauthorized", None, false),
            (LiveError::NotOwner { stream: "s".into() }, 403, "not_stream_owner", None, false),
            (LiveError::field("params", "bad"), 422, "validation_error", Some("params"), false),
            (LiveError::BodyTooLarge { limit: 1 }, 413, "body_too_large", Some("body"), false),
            (LiveError::UnsupportedIngest, 415, "unsupported_ingest", Some("body"), false),
            (LiveError::Stopped, 410, "stream_stopped", None, false),
            (LiveError::TooManyStreams { max: 2 }, 503, "too_many_streams", None, true),
            (LiveError::ChannelUnavailable("x".into()), 503, "trickle_unavailable", None, true),
            (LiveError::NoOrchestrator("x".into()), 503, "no_orchestrator", None, true),
            (LiveError::AuthRefused("x".into()), 403, "stream_refused", None, false),
            (LiveError::AuthUnreachable, 503, "auth_webhook_unavailable", None, true),
            (LiveError::Internal("x".into()), 500, "internal", None, false),
        ];
        for (error, status, kind, field, retry) in table {
            let r = error_response(&error);
            assert_eq!(r.status().as_u16(), status, "{error:?}");
            let retry_after = r.headers().get(header::RETRY_AFTER).cloned();
            assert_eq!(retry_after.is_some_and(|v| v == "5"), retry, "{error:?}");
            let body = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
            let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(body["error"]["type"], kind, "{error:?}");
            assert_eq!(body["error"]["field"].as_str(), field, "{error:?}");
            assert_eq!(body["error"]["message"], error.to_string(), "{error:?}");
        }
    }

    #[test]
    fn messages_are_the_ones_clients_have_always_read() {
        let not_found = LiveError::NotFound { stream: "cam".into() };
        assert_eq!(not_found.to_string(), r#"stream "cam" not found"#);
        let too_many = LiveError::TooManyStreams { max: 3 };
        assert_eq!(too_many.to_string(), "this gateway runs at most 3 live streams");
        let too_large = LiveError::BodyTooLarge { limit: 65536 };
        assert_eq!(too_large.to_string(), "request body exceeds 65536 bytes");
    }
}
