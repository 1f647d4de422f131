//! go-livepeer's CORS on the live and BYOC stream control routes.
//!
//! go-livepeer answers a preflight (`OPTIONS`) of a live stream's `update` and `status`, and of
//! anything under `/process/stream/`, with 204; with `LIVE_AI_ALLOW_CORS` set it also sends
//! `Access-Control-Allow-Origin: *` on those answers and on the routes' own (server/
//! ai_mediaserver.go `corsHeaders`, byoc/utils.go). Here every live and BYOC stream route
//! takes a preflight, and the allowed headers name the ones this gateway's routes read
//! (`Authorization` and `Livepeer-Stream-Secret` for a stream's owner, `Livepeer` for a BYOC
//! job): go-livepeer's `Content-Type` alone would make a browser refuse to send them.

use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

/// The headers a browser may send on the routes.
const ALLOW_HEADERS: &str = "Content-Type, Authorization, Livepeer, Livepeer-Stream-Secret";
/// The methods a preflight is told of (go-livepeer's).
const ALLOW_METHODS: &str = "OPTIONS, POST, GET";

/// The answer to a preflight: 204, as go-livepeer's.
pub(crate) async fn preflight() -> StatusCode {
    StatusCode::NO_CONTENT
}

/// Middleware adding the CORS headers to every answer of the routes it wraps (when
/// `--live-ai-allow-cors` is on; the layer is left out otherwise).
pub(crate) async fn allow(req: Request, next: Next) -> Response {
    let preflight = req.method() == Method::OPTIONS;
    let mut resp = next.run(req).await;
    let headers = resp.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static(ALLOW_HEADERS));
    if preflight {
        let methods = HeaderValue::from_static(ALLOW_METHODS);
        headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, methods);
    }
    resp
}

/// `router` with the CORS headers on its answers when `on`.
pub(crate) fn layered(router: axum::Router, on: bool) -> axum::Router {
    if on { router.layer(axum::middleware::from_fn(allow)) } else { router }
}
