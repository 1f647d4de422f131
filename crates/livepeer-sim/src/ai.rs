//! The batch AI worker endpoints as a go-livepeer orchestrator serves them (server/ai_http.go
//! `handleAIRequest`; PROTOCOL.md §4.6 and §7): body decoding, the `Livepeer-Payment` and
//! `Livepeer-Segment` checks, per-model capacity, payment and balance (`payment.rs`), the
//! run-time failure modes ([`AiMode`]), the record tests read, and the
//! `/stream/<request>/<file>` result downloads.
//!
//! What each pipeline computes lives in `jobs.rs` (and `llm.rs`); media in `media.rs`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use livepeer_pm::Address;
use livepeer_proto::{Message as _, headers, net};
use serde_json::Value;

use crate::jobs::{Job, Output, Pipeline};
use crate::payment::{self, Refused};
use crate::{PaymentRejection, Shared, grpc, media};

/// Request bodies larger than this are refused with 413.
const MAX_BODY: usize = 50 << 20;
/// How long a [`AiMode::CloseMidAnswer`] body waits after its partial data before failing, so
/// the server has written that data to the socket before it drops the connection.
pub(crate) const FLUSH_PAUSE: Duration = Duration::from_millis(50);

/// What the simulator does with AI requests; changeable at run time with
/// [`crate::Sim::set_ai_mode`]. Independent of the gRPC [`crate::Mode`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AiMode {
    /// Check and answer requests as an orchestrator would.
    #[default]
    Normal,
    /// Read the request, then never answer: it stays in flight until the client goes away.
    Hang,
    /// Answer every request, before any check, with this status and this `text/plain` message
    /// (followed by a newline, as Go's `http.Error` writes it).
    Status(u16, String),
    /// Check and process normally, send the 200 headers and part of the body (half of a JSON
    /// answer; two events of an LLM stream), then drop the connection.
    CloseMidAnswer,
    /// Check, process and charge normally, then answer these result URLs instead of the real
    /// ones (`images[].url`, or `audio.url` for text-to-speech), as a misbehaving orchestrator
    /// would. `{sim}` in a URL stands for the simulator's service URL, e.g.
    /// `{sim}/blob/1000000?chunked=1`: `GET /blob/<bytes>` serves that many zero bytes, made
    /// as they are sent, with a `Content-Length` unless `?chunked=1`, typed `?type=` (default
    /// `image/png`), or a 302 to `?redirect=<url>`.
    ResultUrls(Vec<String>),
}

/// One uploaded file of a multipart AI request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AiFile {
    /// Form field name, e.g. `image` or `audio`.
    pub field: String,
    /// File name from `Content-Disposition`.
    pub file_name: Option<String>,
    /// Content type of the part.
    pub content_type: Option<String>,
    /// Size in bytes.
    pub size: usize,
}

/// What the simulator saw of one AI request, for tests.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AiRequestRecord {
    /// Request path, e.g. `/text-to-image`.
    pub path: String,
    /// The `Authorization` header.
    pub authorization: Option<String>,
    /// The `Content-Type` header.
    pub content_type: Option<String>,
    /// The raw `Livepeer-Payment` header (empty for off-chain gateways).
    pub payment_header: Option<String>,
    /// `Livepeer-Payment` decoded, when it is valid base64 protobuf.
    pub payment: Option<net::Payment>,
    /// `Livepeer-Segment` decoded, when it is valid base64 protobuf.
    pub segment: Option<net::SegData>,
    /// The segment's manifest id, e.g. `27_stabilityai/sd-turbo`.
    pub manifest_id: Option<String>,
    /// The JSON body of a JSON pipeline.
    pub json: Option<Value>,
    /// The text fields of a multipart body, in order.
    pub fields: Vec<(String, String)>,
    /// The file parts of a multipart body, in order.
    pub files: Vec<AiFile>,
    /// The HTTP version the request came over, e.g. `HTTP/2.0`.
    pub http_version: String,
}

/// AI state of a running simulator.
#[derive(Debug, Default)]
pub(crate) struct AiState {
    mode: Mutex<AiMode>,
    requests: AtomicU64,
    in_flight: AtomicU64,
    /// Result files served from `/stream/...`, found or not.
    downloads: AtomicU64,
    last: Mutex<Option<AiRequestRecord>>,
    /// Requests being processed per (pipeline, model).
    load: Mutex<HashMap<(String, String), u32>>,
    store: media::Store,
}

impl AiState {
    pub(crate) fn set_mode(&self, mode: AiMode) {
        if let Ok(mut m) = self.mode.lock() {
            *m = mode;
        }
    }

    fn mode(&self) -> AiMode {
        self.mode.lock().map(|m| m.clone()).unwrap_or_default()
    }

    pub(crate) fn requests(&self) -> u64 {
        self.requests.load(Relaxed)
    }

    pub(crate) fn in_flight(&self) -> u64 {
        self.in_flight.load(Relaxed)
    }

    pub(crate) fn downloads(&self) -> u64 {
        self.downloads.load(Relaxed)
    }

    pub(crate) fn last_request(&self) -> Option<AiRequestRecord> {
        self.last.lock().ok().and_then(|r| r.clone())
    }
}

/// Counts a request in [`AiState::in_flight`] until dropped.
#[derive(Debug)]
struct InFlight(Arc<Shared>);

impl InFlight {
    fn enter(shared: &Arc<Shared>) -> Self {
        shared.ai.in_flight.fetch_add(1, Relaxed);
        Self(shared.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.ai.in_flight.fetch_sub(1, Relaxed);
    }
}

/// One unit of a model's capacity, given back when dropped.
#[derive(Debug)]
struct Slot {
    shared: Arc<Shared>,
    key: (String, String),
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut load) = self.shared.ai.load.lock()
            && let Some(used) = load.get_mut(&self.key)
        {
            *used = used.saturating_sub(1);
            if *used == 0 {
                load.remove(&self.key);
            }
        }
    }
}

/// Holds a request's place (in flight, capacity) while it is processed. A streamed answer
/// keeps it in its body, so it is released when the stream ends or the client goes away.
#[derive(Debug)]
pub(crate) struct Busy {
    _in_flight: InFlight,
    _slot: Slot,
}

/// A go-style error answer: a status and a `text/plain` message.
#[derive(Debug)]
pub(crate) struct Rejection {
    status: StatusCode,
    message: String,
}

impl Rejection {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into() }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }

    fn no_capacity() -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "insufficient capacity")
    }
}

impl From<Refused> for Rejection {
    fn from(refused: Refused) -> Self {
        Self::new(refused.status, refused.message)
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        go_error(self.status, &self.message)
    }
}

/// What Go's `http.Error` writes: the message and a newline, as `text/plain`.
fn go_error(status: StatusCode, message: &str) -> Response {
    let mut response = Response::new(Body::from(format!("{message}\n")));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    response
}

/// A decoded request body: JSON fields, or multipart text fields and the file part.
#[derive(Debug, Default)]
pub(crate) struct Input {
    json: Option<serde_json::Map<String, Value>>,
    fields: HashMap<String, String>,
    /// The `image` or `audio` part.
    pub(crate) file: Option<Bytes>,
}

impl Input {
    /// A JSON value of the body (JSON pipelines only).
    pub(crate) fn value(&self, name: &str) -> Option<&Value> {
        self.json.as_ref()?.get(name).filter(|v| !v.is_null())
    }

    /// A field as text; JSON non-strings as their JSON text.
    pub(crate) fn text(&self, name: &str) -> Option<String> {
        if self.json.is_some() {
            return self.value(name).map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            });
        }
        self.fields.get(name).cloned()
    }

    /// An integer field; a value of the wrong type is a 400, as Go's decoders make it.
    pub(crate) fn int(&self, name: &str) -> Result<Option<i64>, Rejection> {
        if self.json.is_some() {
            return match self.value(name) {
                None => Ok(None),
                Some(v) => v.as_i64().map(Some).ok_or_else(|| {
                    Rejection::bad_request(format!(
                        "json: cannot unmarshal {v} into Go struct field {name} of type int"
                    ))
                }),
            };
        }
        match self.fields.get(name) {
            None => Ok(None),
            Some(s) => s.trim().parse().map(Some).map_err(|_| {
                Rejection::bad_request(format!("error binding field {name}: invalid integer {s:?}"))
            }),
        }
    }

    /// A boolean field (multipart: the spellings Go's `strconv.ParseBool` accepts).
    pub(crate) fn flag(&self, name: &str) -> Result<Option<bool>, Rejection> {
        let invalid =
            || Rejection::bad_request(format!("error binding field {name}: invalid boolean"));
        if self.json.is_some() {
            return match self.value(name) {
                None => Ok(None),
                Some(v) => v.as_bool().map(Some).ok_or_else(invalid),
            };
        }
        match self.fields.get(name).map(|s| s.trim()) {
            None => Ok(None),
            Some("1" | "t" | "T" | "true" | "TRUE" | "True") => Ok(Some(true)),
            Some("0" | "f" | "F" | "false" | "FALSE" | "False") => Ok(Some(false)),
            Some(_) => Err(invalid()),
        }
    }
}

/// What a job needs to publish its results.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub(crate) shared: Arc<Shared>,
    pub(crate) request_id: String,
    /// No `Authorization: Livepeer-AI-Worker-1.0`: image results go inline.
    pub(crate) legacy: bool,
    pub(crate) model: String,
}

impl Ctx {
    /// Keeps `data` in the store and returns its download URL,
    /// `{service URI}/stream/<request>/<random>.<ext>` as go-livepeer builds it.
    pub(crate) fn publish(&self, ext: &str, content_type: &'static str, data: Vec<u8>) -> String {
        let file = format!("{:016x}.{ext}", rand::random::<u64>());
        let key = format!("{}/{file}", self.request_id);
        self.shared.ai.store.put(key, Bytes::from(data), content_type);
        let base = self.shared.service_url();
        format!("{}/stream/{}/{file}", base.trim_end_matches('/'), self.request_id)
    }
}

/// The AI routes, with their own body limit and no gRPC failure modes.
pub(crate) fn routes(shared: Arc<Shared>) -> Router {
    let mut router = Router::new();
    for pipeline in Pipeline::ALL {
        router = router.route(
            pipeline.path(),
            post(move |State(shared): State<Arc<Shared>>, req: Request| {
                handle(shared, pipeline, req)
            }),
        );
    }
    router
        .route("/stream/{request}/{file}", get(download))
        .route("/blob/{bytes}", get(blob))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(shared)
}

/// `GET /stream/<request>/<file>`: a result file from memory.
async fn download(
    State(shared): State<Arc<Shared>>,
    Path((request, file)): Path<(String, String)>,
) -> Response {
    shared.ai.downloads.fetch_add(1, Relaxed);
    match shared.ai.store.get(&format!("{request}/{file}")) {
        Some((data, content_type)) => {
            ([(header::CONTENT_TYPE, HeaderValue::from_static(content_type))], data).into_response()
        }
        None => go_error(StatusCode::NOT_FOUND, "404 page not found"),
    }
}

/// `GET /blob/<bytes>`: `bytes` zero bytes, generated as they are sent (never held), with a
/// `Content-Length` unless `?chunked=1`, as `?type=` (default `image/png`): the huge or
/// mistyped result files of [`AiMode::ResultUrls`]. `?redirect=<url>` answers a 302 to it
/// instead.
async fn blob(
    Path(bytes): Path<u64>,
    axum::extract::Query(query): axum::extract::Query<HashMap<String, String>>,
) -> Response {
    const CHUNK: u64 = 64 << 10;
    if let Some(to) = query.get("redirect") {
        return (StatusCode::FOUND, [(header::LOCATION, to.clone())]).into_response();
    }
    let chunk = Bytes::from(vec![0u8; CHUNK as usize]);
    let chunks = futures_util::stream::iter((0..bytes.div_ceil(CHUNK)).map(move |i| {
        let len = CHUNK.min(bytes - i * CHUNK) as usize;
        Ok::<_, std::io::Error>(chunk.slice(..len))
    }));
    let content_type = query.get("type").map_or("image/png", String::as_str);
    let mut resp = Response::new(Body::from_stream(chunks));
    if let Ok(v) = HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    if query.get("chunked").is_none_or(|c| c != "1") {
        resp.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(bytes));
    }
    resp
}

/// The answer of [`AiMode::ResultUrls`]: the pipeline's JSON shape around `urls`.
fn forged_answer(shared: &Shared, pipeline: Pipeline, urls: &[String]) -> Value {
    let base = shared.service_url().trim_end_matches('/');
    let urls: Vec<String> = urls.iter().map(|u| u.replace("{sim}", base)).collect();
    if pipeline == Pipeline::TextToSpeech {
        let url = urls.first().cloned().unwrap_or_default();
        return serde_json::json!({ "audio": { "url": url } });
    }
    let images: Vec<Value> =
        urls.iter().map(|u| serde_json::json!({ "url": u, "seed": 1, "nsfw": false })).collect();
    serde_json::json!({ "images": images })
}

/// One AI request, in go-livepeer's order: decode the body, check the headers, the model and
/// the pipeline's inputs, take capacity, run, answer.
async fn handle(shared: Arc<Shared>, pipeline: Pipeline, req: Request) -> Response {
    shared.ai.requests.fetch_add(1, Relaxed);
    let in_flight = InFlight::enter(&shared);
    let headers = req.headers().clone();
    let mut record = record_of(pipeline.path(), &headers);
    record.http_version = format!("{:?}", req.version());
    let input = read_input(pipeline, req, &mut record).await;
    if let Ok(mut last) = shared.ai.last.lock() {
        *last = Some(record);
    }
    let input = match input {
        Ok(input) => input,
        Err(rejection) => return rejection.into_response(),
    };
    let mode = shared.ai.mode();
    match &mode {
        AiMode::Hang => return std::future::pending::<Response>().await,
        AiMode::Status(code, message) => {
            let status = StatusCode::from_u16(*code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return go_error(status, message);
        }
        AiMode::Normal | AiMode::CloseMidAnswer | AiMode::ResultUrls(_) => {}
    }
    let close = mode == AiMode::CloseMidAnswer;
    let answered = answer(&shared, pipeline, &headers, input, in_flight, close).await;
    if let (Ok(Output::Json(_) | Output::JsonBytes(_)), AiMode::ResultUrls(urls)) =
        (&answered, &mode)
    {
        return axum::Json(forged_answer(&shared, pipeline, urls)).into_response();
    }
    let mut body = match answered {
        Ok(Output::Response(response)) => return response,
        Err(rejection) => return rejection.into_response(),
        // `to_vec` rather than `to_string`, which goes through `fmt::Write` a piece at a time.
        Ok(Output::Json(value)) => match serde_json::to_vec(&value) {
            Ok(bytes) => bytes,
            Err(e) => {
                return Rejection::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
                    .into_response();
            }
        },
        Ok(Output::JsonBytes(bytes)) => bytes,
    };
    // go-livepeer writes the answer with `json.NewEncoder(w).Encode`, which ends it with a
    // newline (`server/ai_http.go`).
    body.push(b'\n');
    if close {
        return cut_short(body);
    }
    ([(http::header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn answer(
    shared: &Arc<Shared>,
    pipeline: Pipeline,
    headers: &HeaderMap,
    input: Input,
    in_flight: InFlight,
    close: bool,
) -> Result<Output, Rejection> {
    let payment = check_payment(shared, headers)?;
    check_segment(shared, headers, payment::bytes_to_address(&payment.sender))?;
    // go-livepeer dereferences the model id without a nil check and drops the connection; a
    // clear 400 is more useful to whoever is debugging a gateway.
    let model = input
        .text(pipeline.model_field())
        .filter(|m| !m.is_empty())
        .ok_or_else(|| Rejection::bad_request(format!("missing {}", pipeline.model_field())))?;
    let job = Job::prepare(pipeline, &input)?;
    let units = job.billed_units(pipeline, &input)?;
    let slot = acquire(shared, pipeline, &model)?;
    // Every pipeline has a capability id; the balance is per "<capability>_<model>".
    let capability = grpc::pipeline_capability(pipeline.name()).unwrap_or_default();
    let charge = shared.payments.admit(&payment, &format!("{capability}_{model}"))?;
    let latency = shared.config.ai_latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    // Gateways up to v0.7.9-ai.3 send no protocol version and get image results inline.
    let legacy =
        headers.get(header::AUTHORIZATION).is_none_or(|v| v != headers::AI_WORKER_PROTOCOL);
    let ctx = Ctx {
        shared: shared.clone(),
        request_id: format!("{:016x}", rand::random::<u64>()),
        legacy,
        model,
    };
    let output = job.run(ctx, Busy { _in_flight: in_flight, _slot: slot }, close).await?;
    // Only work that was done is paid for: go-livepeer debits after the job succeeded (for a
    // streamed LLM answer, once the stream has started).
    shared.payments.debit(&charge, units)?;
    Ok(output)
}

/// Takes one unit of the model's capacity. A model this simulator does not serve has no
/// capacity at all, which is what go-livepeer's `CheckAICapacity` answers too.
fn acquire(shared: &Arc<Shared>, pipeline: Pipeline, model: &str) -> Result<Slot, Rejection> {
    let capacity = shared
        .config
        .models
        .iter()
        .find(|m| m.pipeline == pipeline.name() && m.model == model)
        .map(|m| m.capacity)
        .ok_or_else(Rejection::no_capacity)?;
    let key = (pipeline.name().to_owned(), model.to_owned());
    let mut load = shared.ai.load.lock().map_err(|_| Rejection::no_capacity())?;
    let used = load.entry(key.clone()).or_insert(0);
    if *used >= capacity {
        return Err(Rejection::no_capacity());
    }
    *used += 1;
    Ok(Slot { shared: shared.clone(), key })
}

/// `Livepeer-Payment` must be there (empty is an off-chain gateway) and decode. go-livepeer
/// reads a missing header as empty; requiring it catches gateways that forget it.
pub(crate) fn check_payment(
    shared: &Shared,
    headers: &HeaderMap,
) -> Result<net::Payment, Rejection> {
    let refuse = |m: String| {
        shared.payments.record_rejection(PaymentRejection::Undecodable);
        Rejection::new(StatusCode::PAYMENT_REQUIRED, m)
    };
    // A missing header reads as empty, as Go's `Header.Get` gives it, and an empty header
    // decodes to an empty payment (server/segment_rpc.go `getPayment`): what an off-chain
    // gateway sends. An on-chain orchestrator then finds no sender to check the segment by.
    let value = headers.get(headers::PAYMENT).map(|v| v.as_bytes()).unwrap_or_default();
    let bytes = STANDARD.decode(value).map_err(|e| refuse(format!("base64 decode error: {e}")))?;
    net::Payment::decode(bytes.as_slice())
        .map_err(|e| refuse(format!("protobuf unmarshal error: {e}")))
}

/// go-livepeer's `verifySegCreds`: encoding, duration, the signature by the payment's
/// `sender` (on chain only), capabilities, auth token. A missing header reads as empty, as in
/// Go.
pub(crate) fn check_segment(
    shared: &Shared,
    headers: &HeaderMap,
    sender: Address,
) -> Result<net::SegData, Rejection> {
    let raw = headers.get(headers::SEGMENT).map(|v| v.as_bytes()).unwrap_or_default();
    let bytes = STANDARD.decode(raw).map_err(|_| Rejection::forbidden("ErrorSegEncoding"))?;
    let seg = net::SegData::decode(bytes.as_slice())
        .map_err(|_| Rejection::forbidden("proto: cannot parse invalid wire-format data"))?;
    // go-livepeer reads the profiles first (server/rpc.go `coreSegMetadata`), so a profile it
    // cannot read is refused before the duration and the signature are looked at.
    crate::transcode_media::profiles(&seg).map_err(Rejection::forbidden)?;
    if !(0..=300_000).contains(&seg.duration) {
        return Err(Rejection::forbidden("invalid duration"));
    }
    shared.payments.check_segment(sender, &seg)?;
    if let Some(asked) = &seg.capabilities
        && !compatible(asked, &grpc::advertised(shared))
    {
        return Err(Rejection::forbidden("incompatible capabilities"));
    }
    let token =
        seg.auth_token.as_ref().ok_or_else(|| Rejection::forbidden("missing auth token"))?;
    if token.token != grpc::auth_token(&shared.auth_secret, &token.session_id, token.expiration) {
        return Err(Rejection::forbidden("invalid auth token"));
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    if token_expired(now, token.expiration) {
        return Err(Rejection::forbidden("expired auth token"));
    }
    Ok(seg)
}

/// Go's `time.Now().After(time.Unix(expiration, 0))` at `now` whole seconds: in the
/// expiration's own second the clock is past it by a fraction, so that second is expired.
fn token_expired(now: u64, expiration: i64) -> bool {
    i64::try_from(now).unwrap_or(i64::MAX) >= expiration
}

/// Steps 2–4 of go-livepeer's `CompatibleWith` (PROTOCOL.md §3.5): mandatories, models (and
/// warmth), bitstring subset. Version checks are left out: the simulator's versions are
/// whatever the test configured.
fn compatible(asked: &net::Capabilities, ours: &net::Capabilities) -> bool {
    let words_ok = |need: &[u64], have: &[u64]| {
        need.len() <= have.len() && need.iter().zip(have).all(|(n, h)| n & !h == 0)
    };
    if !words_ok(&ours.mandatories, &asked.bitstring) {
        return false;
    }
    if let (Some(a), Some(o)) = (&asked.constraints, &ours.constraints) {
        for (cap, wanted) in &a.per_capability {
            let Some(have) = o.per_capability.get(cap) else { continue };
            for (model, want) in &wanted.models {
                match have.models.get(model) {
                    Some(m) if m.warm || !want.warm => {}
                    _ => return false,
                }
            }
        }
    }
    words_ok(&asked.bitstring, &ours.bitstring)
}

fn record_of(path: &str, headers: &HeaderMap) -> AiRequestRecord {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let payment_header = text(headers::PAYMENT);
    let payment = payment_header
        .as_deref()
        .and_then(|s| STANDARD.decode(s).ok())
        .and_then(|b| net::Payment::decode(b.as_slice()).ok());
    let segment = text(headers::SEGMENT)
        .and_then(|s| STANDARD.decode(s).ok())
        .and_then(|b| net::SegData::decode(b.as_slice()).ok());
    AiRequestRecord {
        path: path.to_owned(),
        authorization: text("authorization"),
        content_type: text("content-type"),
        manifest_id: segment.as_ref().map(|s| String::from_utf8_lossy(&s.manifest_id).into_owned()),
        payment_header,
        payment,
        segment,
        ..AiRequestRecord::default()
    }
}

/// Decodes the body as the pipeline expects it, noting what it carried in `record`.
async fn read_input(
    pipeline: Pipeline,
    req: Request,
    record: &mut AiRequestRecord,
) -> Result<Input, Rejection> {
    let Some(file_field) = pipeline.file_field() else {
        let body = axum::body::to_bytes(req.into_body(), MAX_BODY).await.map_err(|e| {
            let text = e.to_string();
            if text.contains("length limit") {
                Rejection::new(StatusCode::PAYLOAD_TOO_LARGE, "http: request body too large")
            } else {
                Rejection::bad_request(text)
            }
        })?;
        let value: Value =
            serde_json::from_slice(&body).map_err(|e| Rejection::bad_request(e.to_string()))?;
        record.json = Some(value.clone());
        return match value {
            Value::Object(map) => Ok(Input { json: Some(map), ..Input::default() }),
            other => Err(Rejection::bad_request(format!(
                "json: cannot unmarshal {other} into Go value of type {}",
                pipeline.name()
            ))),
        };
    };
    let mut multipart = Multipart::from_request(req, &())
        .await
        .map_err(|e| Rejection::new(e.status(), e.body_text()))?;
    let mut input = Input::default();
    loop {
        let field =
            multipart.next_field().await.map_err(|e| Rejection::new(e.status(), e.body_text()))?;
        let Some(field) = field else { break };
        let name = field.name().unwrap_or_default().to_owned();
        let file_name = field.file_name().map(str::to_owned);
        let content_type = field.content_type().map(str::to_owned);
        let data = field.bytes().await.map_err(|e| Rejection::new(e.status(), e.body_text()))?;
        if file_name.is_some() || name == file_field {
            record.files.push(AiFile {
                field: name.clone(),
                file_name,
                content_type,
                size: data.len(),
            });
            if name == file_field && input.file.is_none() {
                input.file = Some(data);
            }
        } else {
            let value = String::from_utf8_lossy(&data).into_owned();
            record.fields.push((name.clone(), value.clone()));
            input.fields.insert(name, value);
        }
    }
    Ok(input)
}

/// A 200 JSON answer that stops half-way: the first half of `body`, then a body error, which
/// makes the server drop the connection (HTTP/1.1) or reset the stream (HTTP/2).
fn cut_short(body: Vec<u8>) -> Response {
    let mut body = Bytes::from(body);
    let half = body.split_to(body.len() / 2);
    let stream = futures_util::stream::unfold((0u8, half), |(step, half)| async move {
        match step {
            0 => Some((Ok(half.clone()), (1, half))),
            1 => {
                tokio::time::sleep(FLUSH_PAUSE).await;
                Some((Err(simulated_drop()), (2, half)))
            }
            _ => None,
        }
    });
    let mut response = Response::new(Body::from_stream(stream));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// The body error that makes the server drop a connection mid-answer.
pub(crate) fn simulated_drop() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::ConnectionAborted,
        "simulated connection drop (AiMode::CloseMidAnswer)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_auth_token_is_expired_from_its_expiration_second_on() {
        assert!(!token_expired(99, 100));
        assert!(token_expired(100, 100));
        assert!(token_expired(101, 100));
    }
}
