//! Batch AI: the public AI API (`ai-gateway.openapi.yaml`) routed to orchestrators.
//!
//! Each request is read within a size limit, validated against the spec (422 naming every bad
//! field), priced in its pipeline's units, and run by [`job::run`] with failover. Media results
//! are served from the gateway's own [`results::ResultStore`].

pub mod call;
pub mod job;
mod multipart;
pub mod openai;
pub mod probe;
pub mod results;
pub mod validate;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use rand::Rng;

use self::call::{AiClient, ResultUrls};
use self::results::ResultStore;
use self::validate::{FormPart, Input, Limits, Pipeline, ValidRequest};
use crate::error::{json_error, validation_error};
use crate::metrics::Metrics;
use crate::orchestrator::Pool;

/// Batch AI settings.
#[derive(Debug, Clone)]
pub struct AiConfig {
    /// Most orchestrators tried per request.
    pub max_attempts: u32,
    /// Deadline of one attempt (until the complete answer, or the first byte of a stream).
    pub attempt_timeout: Duration,
    /// Deadline of the whole request, failovers included.
    pub request_timeout: Duration,
    /// Largest request body accepted (413 beyond).
    pub max_body_bytes: usize,
    /// Return results as `data:` URLs instead of the gateway's own URLs.
    pub data_urls: bool,
    /// Base of result URLs, e.g. `https://gw.example.com`; default: from the request's Host.
    pub public_url: Option<String>,
    /// How long result files are kept.
    pub result_ttl: Duration,
    /// Most bytes of result files kept (oldest evicted first).
    pub result_store_bytes: usize,
    /// Deadline for downloading one result file from an orchestrator.
    pub fetch_timeout: Duration,
    /// Talk HTTP/2 to orchestrators (h2c for `http://` ones); off means HTTP/1.1.
    pub orch_http2: bool,
}

/// State of the AI routes.
#[derive(Debug, Clone)]
pub struct AiState {
    /// Orchestrators.
    pub pool: Pool,
    /// Orchestrator calls.
    pub client: AiClient,
    /// Result files.
    pub store: Arc<ResultStore>,
    /// Validation limits.
    pub limits: Arc<Limits>,
    /// Settings.
    pub config: Arc<AiConfig>,
    /// Metrics.
    pub metrics: Metrics,
    /// How orchestrators are paid: local key, remote signer or off-chain.
    pub payments: crate::payment::Payments,
}

/// The AI routes: the nine pipelines, the OpenAI-compatible chat route, and result files.
pub fn router(state: AiState) -> Router {
    // Shared behind one `Arc`: axum hands every request its own copy of the state, and the
    // state is some 800 bytes of handles.
    let state = Arc::new(state);
    let mut router = Router::new();
    for pipeline in Pipeline::ALL {
        let path = format!("/{}", pipeline.name());
        router = router.route(
            &path,
            post(move |State(ai): State<Arc<AiState>>, req: Request| async move {
                handle(ai, pipeline, req).await
            }),
        );
    }
    router
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/results/{id}/{file}", get(result_file))
        .with_state(state)
}

async fn handle(ai: Arc<AiState>, pipeline: Pipeline, req: Request) -> Response {
    let id = request_id();
    let urls = result_urls(&ai, &req);
    let input = match read_input(&ai, req).await {
        Ok(input) => input,
        Err(resp) => return resp,
    };
    let valid = match validate::validate(pipeline, input, &ai.limits).await {
        Ok(v) => v,
        Err(errors) => return validation_error(&errors),
    };
    job::run(&ai, valid, id, urls).await
}

/// Validates and runs an already-read body (used by the OpenAI-compatible route).
pub(crate) async fn run_json(
    ai: &AiState,
    pipeline: Pipeline,
    body: Bytes,
    urls: ResultUrls,
) -> Result<Response, Response> {
    let valid: ValidRequest = validate::validate(pipeline, Input::Json(body), &ai.limits)
        .await
        .map_err(|errors| validation_error(&errors))?;
    Ok(job::run(ai, valid, request_id(), urls).await)
}

fn request_id() -> String {
    format!("{:016x}", rand::rng().random::<u64>())
}

pub(crate) fn result_urls(ai: &AiState, req: &Request) -> ResultUrls {
    if ai.config.data_urls {
        return ResultUrls::Data;
    }
    let base = match &ai.config.public_url {
        Some(base) => base.trim_end_matches('/').to_owned(),
        None => {
            // HTTP/1.1 carries the host in `Host`; HTTP/2 in the URI's authority.
            let host = req
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .or_else(|| req.uri().authority().map(|a| a.as_str()))
                .filter(|h| h.chars().all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c)))
                .unwrap_or("127.0.0.1:9935");
            format!("http://{host}")
        }
    };
    ResultUrls::Gateway(base)
}

/// Reads the body as JSON bytes or multipart parts, within the size limit.
async fn read_input(ai: &AiState, req: Request) -> Result<Input, Response> {
    let limit = ai.config.max_body_bytes;
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large(limit));
    }
    // A client that stops sending its body must not hold the request forever: the body has
    // the whole request's deadline too.
    let timeout = ai.config.request_timeout;
    if content_type.starts_with("multipart/form-data") {
        // Boxed: multipart parsing's future is large, and JSON requests should not carry it.
        match tokio::time::timeout(timeout, Box::pin(read_multipart(req, limit))).await {
            Ok(read) => read,
            Err(_) => Err(body_timeout(timeout)),
        }
    } else {
        // Anything that is not multipart is read as JSON; for a multipart pipeline, validation
        // then reports the wrong body kind.
        read_body(req, limit, timeout).await.map(Input::Json)
    }
}

/// Reads a whole body within `limit` bytes and `timeout`: 413 beyond the limit, 408 when the
/// client stops sending, 400 when the body breaks off.
pub(crate) async fn read_body(
    req: Request,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, Response> {
    match tokio::time::timeout(timeout, axum::body::to_bytes(req.into_body(), limit)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) => {
            let e = e.into_inner();
            if e.is::<http_body_util::LengthLimitError>() {
                Err(too_large(limit))
            } else {
                Err(json_error(
                    StatusCode::BAD_REQUEST,
                    "body_unreadable",
                    format!("request body could not be read: {e}"),
                    Some("body"),
                ))
            }
        }
        Err(_) => Err(body_timeout(timeout)),
    }
}

fn body_timeout(timeout: Duration) -> Response {
    json_error(
        StatusCode::REQUEST_TIMEOUT,
        "body_timeout",
        format!("request body not received within {timeout:?}"),
        Some("body"),
    )
}

fn too_large(limit: usize) -> Response {
    json_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!("request body exceeds {limit} bytes"),
        Some("body"),
    )
}

/// Reads a `multipart/form-data` body's parts within `limit` bytes in all.
async fn read_multipart(req: Request, limit: usize) -> Result<Input, Response> {
    let (parts, body) = req.into_parts();
    let limited = Request::from_parts(parts, Body::new(http_body_util::Limited::new(body, limit)));
    let mut multipart = Multipart::from_request(limited, &()).await.map_err(|e| {
        json_error(StatusCode::BAD_REQUEST, "invalid_multipart", e.body_text(), Some("body"))
    })?;
    let mut parts = Vec::new();
    let mut total = 0usize;
    // One mapping for both places multer can fail: too large is 413, anything else 400.
    let failed = |e: axum::extract::multipart::MultipartError, field: &str| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            too_large(limit)
        } else {
            json_error(StatusCode::BAD_REQUEST, "invalid_multipart", e.body_text(), Some(field))
        }
    };
    while let Some(field) = multipart.next_field().await.map_err(|e| failed(e, "body"))? {
        let name = field.name().unwrap_or_default().to_owned();
        let filename = field.file_name().map(str::to_owned);
        let content_type = field.content_type().map(str::to_owned);
        let bytes = field.bytes().await.map_err(|e| failed(e, &name))?;
        total += bytes.len();
        if total > limit {
            return Err(too_large(limit));
        }
        parts.push(FormPart { name, filename, content_type, bytes });
    }
    Ok(Input::Multipart(parts))
}

async fn result_file(
    State(ai): State<Arc<AiState>>,
    Path((id, file)): Path<(String, String)>,
) -> Response {
    match ai.store.get(&format!("{id}/{file}")) {
        Some(stored) => {
            ([(header::CONTENT_TYPE, stored.content_type)], stored.bytes).into_response()
        }
        None => json_error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such result (results expire; see --ai-result-ttl)".to_owned(),
            None,
        ),
    }
}
