//! Customer keys at the HTTP edge: their admin routes (`/keys`), the admin token that guards
//! the admin API, and the check of `Authorization: Bearer <key>` on the public job routes
//! (`--auth keys`).
//!
//! The check is one layer over the whole public router that finds the job routes by their
//! matched path, so that the routes themselves stay as they are; it puts the verified key in
//! the request's extensions, where the batch AI routes read it to check the model once the
//! body is parsed. The live and BYOC stream routes already compare `Authorization` with the
//! stream owner's: with keys on, the owner's credentials are its key, so the header serves
//! both.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, MatchedPath, Query, Request, State};

use super::error::JsonPath;
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{any, get, post};
use futures_util::StreamExt as _;
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::ai::AiState;
use crate::ai::validate::{Pipeline, ValidRequest};
use crate::error::{Error, Kind};
use crate::keys::price::usd_text;
use crate::keys::{Customer, KeyInfo, KeyPatch, KeyStore, KeysConfig, NewKey};
use crate::orchestrator::JobKey;

/// Bytes of an admin request body, at most.
const MAX_ADMIN_BODY: usize = 64 * 1024;

/// An admin request's body, or axum's reason for not reading it (over [`MAX_ADMIN_BODY`]).
type AdminBody = Result<Bytes, axum::extract::rejection::BytesRejection>;

/// The admin router with the `/keys` routes (answering 404 with a reason when keys are off)
/// and, when `--admin-token` is set, the admin token required on every route but `/healthz`.
pub(crate) fn admin(router: Router, keys: Option<Arc<KeyStore>>, config: &KeysConfig) -> Router {
    let keys_routes = match keys {
        Some(store) => Router::new()
            .route("/keys", post(create).get(list))
            .route("/keys/{id}", get(show).patch(update).delete(delete))
            .route("/keys/{id}/disable", post(disable))
            .route("/keys/{id}/streams/stop", post(stop_streams))
            .route("/keys/{id}/usage", get(key_usage))
            .route("/keys/{id}/usage.csv", get(key_csv))
            .route("/usage.csv", get(all_csv))
            .with_state(store)
            // A body past the cap is refused as it arrives, with the JSON 413 of `parse`.
            .layer(axum::extract::DefaultBodyLimit::max(MAX_ADMIN_BODY)),
        None => Router::new().route("/keys", any(keys_off)).route("/keys/{*rest}", any(keys_off)),
    };
    let router = router.merge(keys_routes);
    match config.admin_token.clone() {
        Some(token) => router.layer(from_fn_with_state(Arc::new(token), require_token)),
        None => router,
    }
}

/// The public router with customer keys required on its job routes, and `GET /v1/usage`,
/// when `keys` is set.
pub(crate) fn enforce(router: Router, keys: Option<Arc<KeyStore>>) -> Router {
    match keys {
        Some(store) => {
            let usage = Router::new().route("/v1/usage", get(own_usage)).with_state(store.clone());
            router.merge(usage).layer(from_fn_with_state(store, check_key))
        }
        None => router,
    }
}

/// The model a batch AI job ran, which its route leaves in the answer's extensions for the
/// usage ledger.
#[derive(Debug, Clone)]
pub(crate) struct UsedModel(pub(crate) String);

/// The model of a customer's request, for its ledger row: only a model the pool offers. A
/// name nobody offers is refused before any orchestrator, and each made-up name would be a
/// line of the key's usage answer for good: 300 refused requests naming 300 models of 256
/// characters made `/v1/usage` a 113 kB answer, 376 bytes more with every name.
pub(crate) fn ledger_model(ai: &AiState, valid: &ValidRequest) -> Option<String> {
    let key = JobKey { capability: valid.pipeline.capability(), model: valid.model.clone() };
    ai.pool.snapshot().index.contains_key(&key).then_some(key.model)
}

/// Leaves the job's model in the answer for the usage ledger (keys on only).
pub(crate) fn with_model(mut resp: Response, model: Option<String>) -> Response {
    if let Some(model) = model {
        resp.extensions_mut().insert(UsedModel(model));
    }
    resp
}

/// The pipeline a public route's job belongs to, for the routes that need a key; `None` for
/// the others (results, playback, stream control, health).
fn job_pipeline(matched: &str) -> Option<&'static str> {
    Some(match matched {
        "/v1/chat/completions" => Pipeline::Llm.name(),
        "/live/video-to-video/{stream}/start" => "live-video-to-video",
        "/process/request/{*path}" | "/process/stream/start" => "byoc",
        "/live/{manifest}/{file}" => "transcode",
        path => {
            let name = path.strip_prefix('/')?;
            Pipeline::ALL.iter().find(|p| p.name() == name)?.name()
        }
    })
}

/// The secret of `Authorization: Bearer <secret>`.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, secret) = value.split_once(' ')?;
    let secret = secret.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !secret.is_empty()).then_some(secret)
}

async fn check_key(State(store): State<Arc<KeyStore>>, mut req: Request, next: Next) -> Response {
    // A browser's CORS preflight carries no credentials (it asks whether it may send them):
    // it is answered without a key, and no job runs on it.
    if req.method() == axum::http::Method::OPTIONS {
        return next.run(req).await;
    }
    let matched = req.extensions().get::<MatchedPath>().map(|p| p.as_str());
    let usage = matched == Some("/v1/usage");
    let Some(pipeline) = matched.and_then(job_pipeline).or(usage.then_some("usage")) else {
        return next.run(req).await;
    };
    let Some(secret) = bearer(req.headers()) else {
        let message = "missing API key: send Authorization: Bearer <key>";
        return Error::new(Kind::InvalidApiKey, message).into_response();
    };
    let key = match store.authenticate(secret).await {
        Ok(key) => key,
        Err(e) => return e.into_response(),
    };
    if usage {
        req.extensions_mut().insert(Customer(key));
        return next.run(req).await;
    }
    let (started, at_ms) = (tokio::time::Instant::now(), crate::keys::now_ms());
    let tab = Arc::new(store.tab(key.clone(), pipeline));
    let resp = if !key.allows(pipeline, None) {
        let message = format!("this API key may not use {pipeline}");
        Error::new(Kind::KeyNotAllowed, message).into_response()
    } else if let Err(e) = store.admit(&key).await.and_then(|()| store.ledger_ready()) {
        e.into_response()
    } else {
        req.extensions_mut().insert(Customer(key.clone()));
        req.extensions_mut().insert(tab.clone());
        next.run(req).await
    };
    let header = resp.headers().get("x-request-id");
    let request_id = header.and_then(|v| v.to_str().ok()).unwrap_or(tab.request_id()).to_owned();
    let latency_us = move || u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    let status = resp.status().as_u16();
    let used = resp.extensions().get::<UsedModel>().map(|u| u.0.clone());
    let write = move |status: u16, latency_us: u64| {
        let mut row = tab.row(at_ms, request_id, status, latency_us);
        if row.model.is_empty()
            && let Some(used) = used
        {
            row.model = used;
        }
        store.record(row);
    };
    if let Some(end) = resp.extensions().get::<JobEnd>() {
        // The job goes on after its answer: written when it ends, with its own status.
        end.on_end(Box::new(move |status| write(status, latency_us())));
        return resp;
    }
    let latency_us = latency_us();
    if resp.extensions().get::<RecordAtEnd>().is_none() {
        write(status, latency_us);
        return resp;
    }
    // Written when the body has been sent, or dropped (the client went away).
    let guard = AtEnd(Some(Box::new(move || write(status, latency_us))));
    let (parts, body) = resp.into_parts();
    let stream = body.into_data_stream().map(move |chunk| {
        let _held = &guard;
        chunk
    });
    Response::from_parts(parts, axum::body::Body::from_stream(stream))
}

/// Marks an answer whose charge is settled as its body is sent (an LLM stream, on the usage
/// of its final event): its ledger row is written once the body has ended.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecordAtEnd;

/// Marks an answer whose job goes on after it (an async image-to-video job, answered 202): its
/// ledger row is written with the status the job ends with, once both the answer has passed
/// the key check and the job has ended, whichever comes last. A job dropped without ending
/// drops the writer, and with it the request's tab, which then writes its row as a dropped
/// request's. Until the row is written, it is promised to the ledger's writer, which waits
/// for it at shutdown.
#[derive(Clone)]
pub(crate) struct JobEnd(Arc<std::sync::Mutex<Pending>>);

/// A [`JobEnd`]'s row, not written yet.
struct Pending {
    ending: Ending,
    /// Given up once the row is queued (or with the last handle, when it never is).
    promise: Option<crate::keys::RowPromise>,
}

/// Where a [`JobEnd`] stands.
#[derive(Default)]
enum Ending {
    /// Neither the row's writer nor the job's status is there yet.
    #[default]
    Open,
    /// The key check left the row's writer; the job runs on.
    Waiting(Box<dyn FnOnce(u16) + Send>),
    /// The job ended with this status before the writer came.
    Ended(u16),
    /// The row was written.
    Written,
}

impl JobEnd {
    /// The row of `tab`'s request, to be written when its job ends.
    pub(crate) fn new(tab: &crate::keys::Tab) -> Self {
        let pending = Pending { ending: Ending::Open, promise: Some(tab.promise_row()) };
        Self(Arc::new(std::sync::Mutex::new(pending)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The job ended, its client to be told `status` (200, or its error's): writes the row
    /// now if the key check left its writer.
    pub(crate) fn ended(&self, status: u16) {
        self.meet(Ending::Ended(status));
    }

    /// The key check's writer of the row: run now if the job has ended, else when it does.
    fn on_end(&self, write: Box<dyn FnOnce(u16) + Send>) {
        self.meet(Ending::Waiting(write));
    }

    /// One of the two halves (the writer, the job's status) arrives: kept when the other is
    /// not there yet, else the row is written with both. A half arriving after the row was
    /// written (or twice) is dropped.
    fn meet(&self, arrived: Ending) {
        let (write, status, promise) = {
            let mut pending = self.lock();
            match (std::mem::take(&mut pending.ending), arrived) {
                (Ending::Open, arrived) => {
                    pending.ending = arrived;
                    return;
                }
                (Ending::Waiting(write), Ending::Ended(status))
                | (Ending::Ended(status), Ending::Waiting(write)) => {
                    pending.ending = Ending::Written;
                    (write, status, pending.promise.take())
                }
                (done, _) => {
                    pending.ending = done;
                    return;
                }
            }
        };
        // Outside the lock: writing takes the ledger's own. The promise goes once the row is
        // queued.
        write(status);
        drop(promise);
    }
}

impl std::fmt::Debug for JobEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JobEnd")
    }
}

/// Runs its function when dropped: with the body of an answer, once the body is done.
struct AtEnd(Option<Box<dyn FnOnce() + Send>>);

impl Drop for AtEnd {
    fn drop(&mut self) {
        if let Some(write) = self.0.take() {
            write();
        }
    }
}

/// `GET /v1/usage?from=&to=` (unix seconds; the last 30 days by default): the calling key's
/// own usage by pipeline and model.
async fn own_usage(
    State(store): State<Arc<KeyStore>>,
    customer: Option<Extension<Customer>>,
    range: Result<Query<Range>, QueryRejection>,
) -> Response {
    let Some(Extension(Customer(key))) = customer else {
        return Error::new(Kind::InvalidApiKey, "missing API key").into_response();
    };
    usage_answer(&store, &key, range).await
}

/// The admin's `GET /keys/{id}/usage?from=&to=`.
async fn key_usage(
    State(store): State<Arc<KeyStore>>,
    JsonPath(id): JsonPath<String>,
    range: Result<Query<Range>, QueryRejection>,
) -> Response {
    match store.get(&id).await {
        Ok(key) => usage_answer(&store, &key, range).await,
        Err(e) => Error::from(e).into_response(),
    }
}

/// Rows of a CSV export, at most.
const MAX_CSV_ROWS: u32 = 100_000;

/// A CSV export's range and row limit.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CsvRange {
    from: Option<i64>,
    to: Option<i64>,
    limit: Option<u32>,
}

/// The admin's `GET /keys/{id}/usage.csv?from=&to=&limit=`: key `id`'s ledger rows.
async fn key_csv(
    State(store): State<Arc<KeyStore>>,
    JsonPath(id): JsonPath<String>,
    range: Result<Query<CsvRange>, QueryRejection>,
) -> Response {
    if let Err(e) = store.get(&id).await {
        return Error::from(e).into_response();
    }
    csv_answer(&store, Some(&id), range).await
}

/// The admin's `GET /usage.csv?from=&to=&limit=`: every key's ledger rows.
async fn all_csv(
    State(store): State<Arc<KeyStore>>,
    range: Result<Query<CsvRange>, QueryRejection>,
) -> Response {
    csv_answer(&store, None, range).await
}

/// The ledger rows as CSV, oldest first; `X-Ledger-Truncated: true` when `limit` (at most
/// [`MAX_CSV_ROWS`]) cut them short: ask again from the last row's second.
async fn csv_answer(
    store: &KeyStore,
    id: Option<&str>,
    range: Result<Query<CsvRange>, QueryRejection>,
) -> Response {
    let Query(range) = match range {
        Ok(range) => range,
        Err(e) => {
            let message = format!("expected ?from=&to=&limit=: {}", e.body_text());
            return Error::invalid("query", message).into_response();
        }
    };
    let limit = range.limit.unwrap_or(MAX_CSV_ROWS);
    if limit == 0 || limit > MAX_CSV_ROWS {
        let message = format!("must be 1 to {MAX_CSV_ROWS}");
        return Error::invalid("limit", message).into_response();
    }
    let (from, to) = match range_of(range.from, range.to) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    match store.rows(id, from, to, limit).await {
        Ok(rows) => {
            let mut body = String::from(crate::keys::CSV_HEADER);
            for row in &rows {
                body.push_str(&row.csv_line());
            }
            let truncated = if rows.len() as u64 == u64::from(limit) { "true" } else { "false" };
            let headers = [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (header::CONTENT_DISPOSITION, "attachment; filename=\"usage.csv\""),
                (header::HeaderName::from_static("x-ledger-truncated"), truncated),
            ];
            (headers, body).into_response()
        }
        Err(e) => Error::from(e).into_response(),
    }
}

/// `from` and `to` in unix seconds, defaulting to the last 30 days.
fn range_of(from: Option<i64>, to: Option<i64>) -> Result<(i64, i64), Error> {
    let to = to.unwrap_or_else(|| crate::keys::now() + 1);
    let from = from.unwrap_or(to.saturating_sub(30 * 86_400));
    if from > to {
        return Err(Error::invalid("from", "must not be after `to`"));
    }
    Ok((from, to))
}

/// A usage range in unix seconds.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Range {
    from: Option<i64>,
    to: Option<i64>,
}

async fn usage_answer(
    store: &KeyStore,
    key: &KeyInfo,
    range: Result<Query<Range>, QueryRejection>,
) -> Response {
    let id = key.id.as_str();
    let Query(range) = match range {
        Ok(range) => range,
        Err(e) => {
            let message = format!("expected ?from=&to= in unix seconds: {}", e.body_text());
            return Error::invalid("query", message).into_response();
        }
    };
    let (from, to) = match range_of(range.from, range.to) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let (lines, budget) = match tokio::try_join!(store.usage(id, from, to), store.budget(key)) {
        Ok(found) => found,
        Err(e) => return Error::from(e).into_response(),
    };
    let requests: u64 = lines.iter().map(|l| l.requests).sum();
    let errors: u64 = lines.iter().map(|l| l.errors).sum();
    let charged: i64 = lines.iter().map(|l| l.charged_nusd).fold(0, i64::saturating_add);
    let by_model: Vec<_> = lines
        .iter()
        .map(|l| {
            let mut line = json!(l);
            line["charged_usd"] = json!(usd_text(l.charged_nusd));
            line
        })
        .collect();
    let body = json!({
        "key_id": id, "from": from, "to": to,
        "requests": requests, "errors": errors,
        "charged_usd": usd_text(charged), "charged_nusd": charged,
        "budget": budget, "by_model": by_model,
    });
    Json(body).into_response()
}

/// The model check of a batch AI request whose route knows its customer (`field`: the body's
/// name for the model).
pub(crate) fn allow_model(
    customer: Option<&Customer>,
    valid: &ValidRequest,
    field: &str,
) -> Result<(), Error> {
    let Some(Customer(key)) = customer else { return Ok(()) };
    let (pipeline, model) = (valid.pipeline.name(), valid.model.as_str());
    if key.allows(pipeline, Some(model)) {
        return Ok(());
    }
    Err(Error::new(Kind::KeyNotAllowed, format!("this API key may not use {pipeline}/{model}"))
        .field(field))
}

/// The capability check of a BYOC job whose route knows its customer: an allowed entry
/// `byoc/<capability>` names one capability, `byoc` all.
pub(crate) fn allow_capability(customer: Option<&Customer>, capability: &str) -> Result<(), Error> {
    let Some(Customer(key)) = customer else { return Ok(()) };
    if key.allows("byoc", Some(capability)) {
        return Ok(());
    }
    Err(Error::new(Kind::KeyNotAllowed, format!("this API key may not use byoc/{capability}"))
        .field("capability"))
}

async fn require_token(
    State(token): State<Arc<SecretString>>,
    req: Request,
    next: Next,
) -> Response {
    let open = req.extensions().get::<MatchedPath>().is_some_and(|p| p.as_str() == "/healthz");
    let given = bearer(req.headers()).unwrap_or_default();
    let ok = bool::from(given.as_bytes().ct_eq(token.expose_secret().as_bytes()));
    if open || ok {
        return next.run(req).await;
    }
    let message = "the admin API needs Authorization: Bearer <--admin-token>";
    Error::new(Kind::Unauthorized, message).into_response()
}

async fn keys_off() -> Response {
    let message = "customer keys are off: start the gateway with --auth keys";
    Error::new(Kind::NotFound, message).into_response()
}

/// A JSON body of type `T`, sent as `application/json`; serde's message names the field at
/// fault.
fn parse<T: DeserializeOwned>(headers: &HeaderMap, body: AdminBody) -> Result<T, Error> {
    // A web page can send a cross-site request without a preflight only as a form or as
    // text/plain: requiring JSON's type keeps such a page from creating or changing keys.
    if !is_json(headers) {
        let message = "the body must be sent with Content-Type: application/json";
        return Err(Error::new(Kind::UnsupportedMediaType, message).field("body"));
    }
    // axum's refusals are plain text: a JSON client gets JSON.
    let body = body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => Error::too_large(MAX_ADMIN_BODY),
        _ => Error::new(Kind::BodyUnreadable, e.body_text()).field("body"),
    })?;
    let mut de = serde_json::Deserializer::from_slice(&body);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        // A missing or unknown field is not on the path; serde's message quotes it.
        let field = match path.as_str() {
            "." => message.split('`').nth(1).unwrap_or("body").to_owned(),
            _ => path,
        };
        Error::invalid("body", format!("invalid JSON body: {message}")).field(field)
    })
}

/// Whether `Content-Type` is `application/json`, with or without parameters.
fn is_json(headers: &HeaderMap) -> bool {
    let value = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let essence = value.and_then(|v| v.split(';').next()).unwrap_or_default();
    essence.trim().eq_ignore_ascii_case("application/json")
}

async fn create(
    State(store): State<Arc<KeyStore>>,
    headers: HeaderMap,
    body: AdminBody,
) -> Response {
    let new: NewKey = match parse(&headers, body) {
        Ok(new) => new,
        Err(e) => return e.into_response(),
    };
    match store.create(new).await {
        // The only answer that carries the secret.
        Ok((key, secret)) => {
            let body = json!({ "key": key, "secret": secret.expose_secret() });
            (StatusCode::CREATED, Json(body)).into_response()
        }
        Err(e) => Error::from(e).into_response(),
    }
}

async fn list(State(store): State<Arc<KeyStore>>) -> Response {
    match store.list().await {
        Ok(keys) => Json(json!({ "keys": keys })).into_response(),
        Err(e) => Error::from(e).into_response(),
    }
}

async fn show(State(store): State<Arc<KeyStore>>, JsonPath(id): JsonPath<String>) -> Response {
    match store.get(&id).await {
        Ok(key) => Json(json!({ "key": key })).into_response(),
        Err(e) => Error::from(e).into_response(),
    }
}

async fn update(
    State(store): State<Arc<KeyStore>>,
    JsonPath(id): JsonPath<String>,
    headers: HeaderMap,
    body: AdminBody,
) -> Response {
    let patch: KeyPatch = match parse(&headers, body) {
        Ok(patch) => patch,
        Err(e) => return e.into_response(),
    };
    match store.update(&id, patch).await {
        Ok(key) => Json(json!({ "key": key })).into_response(),
        Err(e) => Error::from(e).into_response(),
    }
}

async fn disable(State(store): State<Arc<KeyStore>>, JsonPath(id): JsonPath<String>) -> Response {
    let patch = KeyPatch { enabled: Some(false), ..KeyPatch::default() };
    match store.update(&id, patch).await {
        Ok(key) => Json(json!({ "key": key })).into_response(),
        Err(e) => Error::from(e).into_response(),
    }
}

/// Ends the key's running streams (live, BYOC and RTMP; pushed transcoding streams at their
/// next push) on every instance sharing the key database; the key stays usable for new ones.
async fn stop_streams(
    State(store): State<Arc<KeyStore>>,
    JsonPath(id): JsonPath<String>,
) -> Response {
    match store.stop_streams(&id).await {
        Ok(at_ms) => Json(json!({ "id": id, "streams_stopped_at_ms": at_ms })).into_response(),
        Err(e) => Error::from(e).into_response(),
    }
}

async fn delete(State(store): State<Arc<KeyStore>>, JsonPath(id): JsonPath<String>) -> Response {
    match store.delete(&id).await {
        Ok(()) => Json(json!({ "deleted": id })).into_response(),
        Err(e) => Error::from(e).into_response(),
    }
}
