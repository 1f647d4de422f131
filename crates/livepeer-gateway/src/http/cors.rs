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
/// The methods a preflight is told of: go-livepeer's, and `DELETE`, which a live stream's
/// stop also takes here.
const ALLOW_METHODS: &str = "OPTIONS, POST, GET, DELETE";
/// The answer headers a page may read: a BYOC start returns its stream's secret in a header
/// only, and a page that started a stream without `Authorization` needs it for every later
/// call.
const EXPOSE_HEADERS: &str = "Livepeer-Stream-Secret, X-Request-Id";

/// Whether `path` is one of the routes CORS is for.
fn is_stream_route(path: &str) -> bool {
    path.starts_with("/live/video-to-video/") || path.starts_with("/process/stream/")
}

/// The answer to a preflight: 204, as go-livepeer's.
pub(crate) async fn preflight() -> StatusCode {
    StatusCode::NO_CONTENT
}

/// Middleware adding the CORS headers to every answer of the stream routes (when
/// `--live-ai-allow-cors` is on; the layer is left out otherwise), the errors of the layers
/// inside it included: a page that is refused (a customer key's 401, 402, 429) must be able
/// to read why, not see a network error.
async fn allow(req: Request, next: Next) -> Response {
    if !is_stream_route(req.uri().path()) {
        return next.run(req).await;
    }
    let preflight = req.method() == Method::OPTIONS;
    let mut resp = next.run(req).await;
    let headers = resp.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static(ALLOW_HEADERS));
    let expose = HeaderValue::from_static(EXPOSE_HEADERS);
    headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, expose);
    if preflight {
        let methods = HeaderValue::from_static(ALLOW_METHODS);
        headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, methods);
    }
    resp
}

/// The public router with the CORS headers on its stream routes' answers when `on`. Applied
/// outermost, around the customer-key check, whose refusals need them too.
pub(crate) fn outermost(router: axum::Router, on: bool) -> axum::Router {
    if on { router.layer(axum::middleware::from_fn(allow)) } else { router }
}
