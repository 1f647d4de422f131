//! The operator's dashboard on the admin port: one page at `/` (HTML, a script and a style
//! sheet embedded in the binary, no build step) that draws the admin JSON API every second, and
//! the two JSON routes it adds to that API for scripts too: `GET /requests/failed` (the last
//! failed requests with their per-attempt record) and `GET /history` (requests, latency and
//! spend in 10-second buckets over the last half hour).
//!
//! The page's files hold no data and no secret, so they are served without the admin token
//! (a browser cannot put a bearer token on a navigation); every figure the page shows comes from
//! the JSON routes, which need the token when one is set. The page asks for it (or reads it
//! from the URL's `#token=` fragment, which browsers never send to a server) and sends it as
//! `Authorization: Bearer` on its own requests.

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use serde_json::json;

use crate::state::AppState;

const INDEX_HTML: &str = include_str!("dashboard/index.html");
const SCRIPT: &str = include_str!("dashboard/dashboard.js");
const STYLE: &str = include_str!("dashboard/dashboard.css");

/// Scripts only from the page's own origin (none inline), no frames, no plug-ins: the page
/// renders orchestrators' error strings and stream names, which must never run as code.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// The page and its assets, open (see the module's note); merge outside the admin token layer.
pub(crate) fn page_router() -> Router {
    Router::new()
        .route("/", get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }))
        .route("/dashboard.js", get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }))
        .route("/dashboard.css", get(|| async { asset("text/css; charset=utf-8", STYLE) }))
}

/// The JSON routes the page reads besides the existing admin ones; behind the admin token.
pub(crate) fn api_router(state: AppState) -> Router {
    Router::new()
        .route("/requests/failed", get(failed))
        .route("/history", get(history))
        .with_state(state)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

async fn failed(State(state): State<AppState>) -> Json<serde_json::Value> {
    let failures = state.metrics.recent().failures();
    Json(json!({ "max": crate::recent::MAX_FAILURES, "failures": failures }))
}

async fn history(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({
        "bucket_ms": crate::recent::BUCKET_MS,
        "now_ms": crate::recent::Recent::now_ms(),
        // Each bucket's `revenue_nusd` is what customers were charged (customer keys).
        "buckets": state.metrics.recent().series(),
    }))
}
