//! The HTTP edge: every route of both listeners, the listener loop itself, and the one mapping
//! from the gateway's typed errors to statuses, JSON bodies and `Retry-After`
//! (`error`). Below this module nothing knows axum or HTTP statuses (`tests/layout.rs`
//! checks it): job paths return domain values and [`crate::error::Error`]s, and the handlers
//! here turn them into answers.

mod admin;
mod ai;
mod ai_async;
mod body;
mod byoc;
mod byoc_stream;
mod catalog;
mod catalog_page;
mod cli;
mod cli_chain;
mod cli_reply;
mod cli_status;
mod cli_write;
pub(crate) mod cores;
pub(crate) mod cors;
mod dashboard;
pub(crate) mod error;
pub(crate) mod keys;
mod linger;
mod live;
pub(crate) mod loopback;
mod marketplace;
mod openapi;
mod openapi_schemas;
mod per_address;
pub(crate) mod server;
mod shutdown;

pub(crate) use shutdown::answer_at_drain_end;
pub(crate) mod signer;
mod transcode;
mod write_deadline;

#[doc(hidden)]
pub use body::read_input_for_fuzz;

use axum::Router;
use axum::http::HeaderName;
use axum::response::IntoResponse as _;
use axum::routing::get;

/// `X-Request-Id` on job answers. Names made once: `insert("x-request-id", …)` parses and
/// hashes the text on every answer.
const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// `X-Orchestrator-Url` (`livepeer_proto::headers::SERVED_BY_ORCHESTRATOR`) on job answers.
const SERVED_BY: HeaderName = HeaderName::from_static("x-orchestrator-url");

/// The job paths' states the public API serves.
#[derive(Debug, Clone)]
pub struct Services {
    /// Batch AI.
    pub ai: crate::ai::AiState,
    /// Live video-to-video.
    pub live: crate::live::LiveState,
    /// BYOC jobs.
    pub byoc: crate::byoc::ByocState,
    /// BYOC streams.
    pub byoc_streams: crate::byoc::stream::ByocStreams,
    /// Video transcoding (HTTP push and HLS playback).
    pub transcode: crate::transcode::TranscodeState,
    /// What customers pay, shown in the catalogue.
    pub prices: std::sync::Arc<crate::keys::price::CustomerPrices>,
}

/// The public API: batch AI, live video, BYOC, transcoding (push and HLS), the remote-signer
/// routes when this gateway serves them, and `/healthz`.
pub fn public_router(
    services: Services,
    signer: Option<crate::payment::signer::SignerState>,
) -> Router {
    let Services { ai, live, byoc, byoc_streams, transcode, prices } = services;
    let (pool, recent) = (ai.pool.clone(), ai.metrics.recent().clone());
    let catalog_state = catalog::CatalogState { pool, recent, prices };
    let catalog = catalog::router(catalog_state.clone()).merge(catalog_page::router(catalog_state));
    let openapi = openapi::router(ai.limits.clone(), signer.is_some());
    let router = ai::router(ai)
        .merge(catalog)
        .merge(openapi)
        .merge(live::router(live))
        .merge(byoc::router(byoc))
        .merge(byoc_stream::router(byoc_streams))
        .merge(transcode::router(transcode))
        .route("/healthz", get(|| async { "ok" }));
    let router = match signer {
        Some(state) => router.merge(signer::router(state)),
        None => router,
    };
    with_json_fallbacks(router)
}

/// `router`, answering an unknown path (404) or a method a path does not take (405) with the
/// same JSON error body as every other error, instead of an empty one.
fn with_json_fallbacks(router: Router) -> Router {
    router
        .fallback(|method: axum::http::Method, uri: axum::http::Uri| async move {
            let message = format!("no route {method} {}", uri.path());
            crate::error::Error::new(crate::error::Kind::NotFound, message).into_response()
        })
        .method_not_allowed_fallback(
            |method: axum::http::Method, uri: axum::http::Uri| async move {
                let message = format!("{} does not take {method}", uri.path());
                let status = axum::http::StatusCode::METHOD_NOT_ALLOWED;
                error::json_error(status, "method_not_allowed", message, None)
            },
        )
}

/// The admin API: status, orchestrators, metrics, live streams, and go-livepeer's CLI routes.
pub fn admin_router(
    state: crate::state::AppState,
    live: crate::live::LiveState,
    byoc: crate::byoc::ByocState,
    byoc_streams: crate::byoc::stream::ByocStreams,
    transcode: crate::transcode::TranscodeState,
) -> Router {
    let cli = cli::router(cli::CliState { app: state.clone(), transcode: transcode.clone() });
    let router = admin::router(state.clone())
        .merge(dashboard::api_router(state))
        .merge(cli)
        .merge(live::admin_router(live))
        .merge(byoc::admin_router(byoc))
        .merge(byoc_stream::admin_router(byoc_streams))
        .merge(transcode::admin_router(transcode));
    with_json_fallbacks(router)
}

/// Publishes the catalogue of `pool` (latency from `recent`, customer prices from `prices`)
/// to `config`'s webhook on `tasks`, signed with `signer` when there is one.
pub fn publish_catalogue(
    config: crate::config::MarketplaceConfig,
    (pool, recent): (crate::orchestrator::Pool, crate::recent::Recent),
    prices: std::sync::Arc<crate::keys::price::CustomerPrices>,
    signer: Option<std::sync::Arc<livepeer_pm::LocalSigner>>,
    tasks: &crate::task::Tasks,
) -> Result<(), reqwest::Error> {
    let catalog = catalog::CatalogState { pool, recent, prices };
    let publisher = marketplace::Publisher::new(config, catalog, signer)?;
    tasks.spawn("marketplace", |cancel| publisher.run(cancel));
    Ok(())
}

/// The whole admin API: `routes` with the customer keys' routes under the admin token's
/// layer (`keys::admin`), the dashboard's page outside that layer (it holds no data; the JSON
/// it reads is inside), and, when there is no token, all of it behind the loopback guard
/// (`loopback`) of the listener bound at `listen`.
pub(crate) fn admin_api(
    routes: Router,
    keys: Option<std::sync::Arc<crate::keys::KeyStore>>,
    config: &crate::keys::KeysConfig,
    listen: std::net::SocketAddr,
) -> Router {
    let routes = keys::admin(routes, keys, config).merge(dashboard_router());
    loopback::guard(routes, config, listen)
}

/// The operator's dashboard page and its assets on the admin port. They hold no data, so
/// they are merged outside the admin token's layer; the JSON they read is inside it.
pub fn dashboard_router() -> Router {
    dashboard::page_router()
}

/// The base of the live channel URLs a `/start` answers: `public_url` when configured, else
/// `http://` and the request's host (HTTP/1.1 carries it in `Host`, HTTP/2 in the URI's
/// authority), kept only when it is made of host characters. The Host is acceptable here,
/// unlike in AI result links (`http/ai.rs`): these URLs go back only to the client that sent
/// it, for its own stream, so it can point nobody else anywhere; and a gateway bound to
/// `0.0.0.0` then hands remote clients an address they can reach.
fn public_base(
    public_url: Option<&str>,
    headers: &axum::http::HeaderMap,
    uri: &axum::http::Uri,
) -> String {
    if let Some(base) = public_url {
        return base.trim_end_matches('/').to_owned();
    }
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))
        .filter(|h| h.chars().all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c)))
        .unwrap_or("127.0.0.1:9935");
    format!("http://{host}")
}

#[cfg(test)]
mod tests {
    use livepeer_proto::headers;

    #[test]
    fn the_answer_header_names_are_the_protocols() {
        assert!(super::SERVED_BY.as_str().eq_ignore_ascii_case(headers::SERVED_BY_ORCHESTRATOR));
        assert_eq!(super::REQUEST_ID.as_str(), "x-request-id");
    }
}
