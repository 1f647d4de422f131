//! `POST /process/request/<path>` as go-livepeer's orchestrator runs it (byoc/job_orchestrator.go
//! `processJob`, `setupOrchJob`, `confirmPayment`; PROTOCOL.md §10.4): verify the signed
//! JobRequest, take capacity, take the payment and require a minute of balance, run the
//! worker, charge `ceil(seconds) × price`, answer with the balance.
//!
//! Deviations, all where go-livepeer's code does something no gateway can rely on:
//! - Echo answers as the upload arrives (go-livepeer reads the whole body, then the whole
//!   worker answer); the bytes are the same, and the time is charged when it starts answering.
//! - Once the worker's events end, go-livepeer's proxy loop keeps reading its closed channel
//!   (`processJob`, streaming branch: an empty line each time) and writes `\n` as fast as it
//!   can until `timeout_seconds` is over; here one `\n` goes out every [`SSE_IDLE_LINE`]. The
//!   answer stays open, and billed every 5 s, until then or until the gateway goes away.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use futures_util::StreamExt as _;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use livepeer_pm::Ratio;
use livepeer_proto::{Message as _, headers, net};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::ai::Rejection;
use crate::byoc::{
    BALANCE, ByocFault, ByocKind, INSUFFICIENT_BALANCE, Job, MAX_LINES, NO_CAPACITY, Slot,
    balance_string, capability, job_price, min_balance, reserve, verify_job,
};
use crate::payment::Charge;
use crate::server::ConnKill;
use crate::{ByocJobRecord, PaymentRejection, Shared};

/// Largest body a job may upload (an Echo of a large file); more is refused or cut.
pub(crate) const MAX_BODY: u64 = 64 << 20;
/// Largest JSON body the Reverse and Lines workers read.
const MAX_JSON: usize = 1 << 20;
/// How often an SSE answer debits its time (go-livepeer: every 5 s, 5 × price).
const SSE_BILLING: Duration = Duration::from_secs(5);
/// Events a Lines job writes when its body does not say.
const DEFAULT_LINES: u64 = 3;
/// How often an SSE answer whose worker has finished writes an empty line (go-livepeer: in a
/// busy loop) until its timeout.
const SSE_IDLE_LINE: Duration = Duration::from_millis(50);

/// An admitted job: verified, holding capacity, paid for.
pub(crate) struct Admitted {
    pub(crate) job: Job,
    pub(crate) slot: Slot,
    pub(crate) charge: Charge,
}

/// `POST /process/request/<path>`.
pub(crate) async fn process(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    shared.byoc.update(|s| s.requests += 1);
    if req.method() != Method::POST {
        return Rejection::new(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed")
            .into_response();
    }
    match shared.byoc.fault() {
        ByocFault::Hang => return std::future::pending().await,
        ByocFault::Close => {
            if let Some(kill) = req.extensions().get::<ConnKill>() {
                kill.0.cancel();
            }
            return std::future::pending().await;
        }
        ByocFault::NoCapacity => {
            return Rejection::new(StatusCode::SERVICE_UNAVAILABLE, NO_CAPACITY).into_response();
        }
        ByocFault::Stalled500 => {
            let never = futures_util::stream::pending::<Result<Bytes, std::io::Error>>();
            let mut resp = Response::new(Body::from_stream(never));
            *resp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            resp.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from_static("100"));
            return resp;
        }
        ByocFault::None | ByocFault::Status500 | ByocFault::KeepPayment => {}
    }
    let admitted = match admit(&shared, req.headers(), true) {
        Ok(admitted) => admitted,
        Err(rejection) => return rejection.into_response(),
    };
    let path = req.uri().path().strip_prefix("/process/request/").unwrap_or_default().to_owned();
    let record = record_of(&admitted.job, &path, req.headers());
    shared.byoc.update(|s| {
        *s.jobs.entry(record.capability.clone()).or_insert(0) += 1;
        s.last_path = Some(path);
        s.last_job = Some(record);
    });
    run(shared, admitted, req).await
}

/// What tests see of an admitted job.
fn record_of(job: &Job, path: &str, headers: &HeaderMap) -> ByocJobRecord {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    ByocJobRecord {
        id: job.id().to_owned(),
        capability: job.capability.clone(),
        sender: job.sender,
        request: job.request().to_owned(),
        parameters: job.parameters().to_owned(),
        timeout_seconds: job.req.timeout_seconds,
        path: path.to_owned(),
        content_type: text("content-type"),
        paid: text(headers::PAYMENT).is_some_and(|p| !p.is_empty()),
    }
}

/// go-livepeer's `setupOrchJob`: the JobRequest, capacity, price, payment and balance, and the
/// `request` field as JSON. Its error answers: 400 for the creds, 503 without capacity, 400
/// `Insufficient balance for request` below a minute of balance, and none at all for a
/// payment it cannot take (see [`take_payment`]).
pub(crate) fn admit(
    shared: &Arc<Shared>,
    headers: &HeaderMap,
    take_capacity: bool,
) -> Result<Admitted, AdmitError> {
    let job = verify_job(shared, headers).map_err(|e| AdmitError::Creds(e.message()))?;
    // Without `take_capacity` (the stream calls other than start) go-livepeer checks nothing
    // about the capability; the slot is then a placeholder released at once.
    let slot = match take_capacity {
        true => reserve(shared, &job.capability).ok_or(AdmitError::NoCapacity)?,
        false => Slot::none(shared),
    };
    let price = job_price(shared, &job.capability);
    let charge = Charge::new(
        job.sender,
        &job.capability,
        (price > 0).then(|| Ratio::from_u64(price.unsigned_abs())),
    );
    if price > 0 {
        // go-livepeer gives back one unit of capacity on a refused payment whether the call
        // took one or not (`processPayment`, `setupOrchJob`): a stop, update or payment call
        // lowers the load of the capability (here not below zero).
        let give_back = |slot: Slot| match take_capacity {
            true => drop(slot),
            false => drop(Slot::one_of(shared, &job.capability)),
        };
        match take_payment(shared, headers, &job.capability) {
            Ok(()) => {}
            // `processPayment` gives the unit back before the panic; nothing else does.
            Err(PaymentFailure::Refused) => {
                give_back(slot);
                return Err(AdmitError::Unanswered);
            }
            // Nothing gives it back: the load stays counted for good.
            Err(PaymentFailure::Undecodable) => {
                slot.leak();
                return Err(AdmitError::Unanswered);
            }
        }
        let keeps = shared.byoc.fault() == ByocFault::KeepPayment;
        if keeps || shared.payments.balance(job.sender, &job.capability) < min_balance(price) {
            give_back(slot);
            return Err(AdmitError::InsufficientBalance);
        }
    }
    let details: Result<Option<Details>, _> = serde_json::from_str(job.request());
    if let Err(e) = details {
        return Err(AdmitError::Details(format!(
            "Unable to unmarshal job request details err={e}"
        )));
    }
    Ok(Admitted { job, slot, charge })
}

/// Why [`admit`] refused a request; each call site maps it to go-livepeer's status.
#[derive(Debug)]
pub(crate) enum AdmitError {
    /// `Could not verify job creds` or the timeout error.
    Creds(&'static str),
    /// The capability is unknown or at capacity.
    NoCapacity,
    /// Below one minute of balance.
    InsufficientBalance,
    /// `request` is not a JobRequestDetails JSON document.
    Details(String),
    /// A payment go-livepeer could not take: it answers nothing (see [`take_payment`]).
    Unanswered,
}

impl AdmitError {
    pub(crate) fn message(&self) -> String {
        match self {
            Self::Creds(m) => (*m).to_owned(),
            Self::NoCapacity => NO_CAPACITY.to_owned(),
            Self::InsufficientBalance => INSUFFICIENT_BALANCE.to_owned(),
            Self::Details(m) => m.clone(),
            Self::Unanswered => "request left unanswered".to_owned(),
        }
    }
}

impl IntoResponse for AdmitError {
    fn into_response(self) -> Response {
        let status = match self {
            Self::Unanswered => return crate::server::unanswered(),
            Self::NoCapacity => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        };
        Rejection::new(status, self.message()).into_response()
    }
}

/// `JobRequestDetails`: any JSON object (or null) whose `stream_id`, if there, is a string.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct Details {
    #[serde(default)]
    pub(crate) stream_id: Option<String>,
}

/// Why [`take_payment`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PaymentFailure {
    /// Not base64 protobuf (go-livepeer `getPayment`).
    Undecodable,
    /// Refused by the ticket checks (go-livepeer `ProcessPayment` returned an error); the
    /// tickets before the first refused one are credited.
    Refused,
}

/// go-livepeer's `processPayment`: a `Livepeer-Payment` header, when there is one, is checked
/// and credited under the capability name. Failures are counted (as the AI path counts them).
/// go-livepeer's `confirmPayment` then compares the nil balance `processPayment` returns on any
/// failure with the minute it wants held, which panics; net/http recovers and leaves the
/// request unanswered (byoc/job_orchestrator.go). So a failure here ends the call unanswered.
pub(crate) fn take_payment(
    shared: &Shared,
    headers: &HeaderMap,
    capability: &str,
) -> Result<(), PaymentFailure> {
    let raw = headers.get(headers::PAYMENT).map(HeaderValue::as_bytes).unwrap_or_default();
    if raw.is_empty() {
        return Ok(());
    }
    let payment =
        STANDARD.decode(raw).ok().and_then(|bytes| net::Payment::decode(bytes.as_slice()).ok());
    let Some(payment) = payment else {
        shared.payments.record_rejection(PaymentRejection::Undecodable);
        tracing::info!(capability, "job payment invalid: Could not parse payment");
        return Err(PaymentFailure::Undecodable);
    };
    let (result, credited) = shared.payments.receive_counted(&payment, capability);
    if !credited.is_zero() {
        shared.byoc.update(|s| {
            s.ev_credited = s.ev_credited.checked_add(&credited).unwrap_or(s.ev_credited)
        });
    }
    if let Err(refused) = result {
        tracing::info!(capability, error = refused.message, "job payment error");
        return Err(PaymentFailure::Refused);
    }
    Ok(())
}

/// Debits `units` seconds of the job price (go-livepeer `DebitFees`) and counts the fee.
pub(crate) fn debit(shared: &Shared, charge: &Charge, units: u64) {
    let fee = charge.fee(units).unwrap_or(Ratio::ZERO);
    if let Err(e) = shared.payments.debit(charge, units) {
        tracing::warn!(error = e.message, "BYOC debit failed");
        return;
    }
    shared.byoc.update(|s| s.fees = s.fees.checked_add(&fee).unwrap_or(s.fees));
}

/// The balance of the job's (sender, capability), as `Livepeer-Balance` carries it.
pub(crate) fn balance_header(shared: &Shared, job: &Job) -> HeaderValue {
    let balance = shared.payments.balance(job.sender, &job.capability);
    HeaderValue::from_str(&balance_string(&balance, 0)).unwrap_or(HeaderValue::from_static("0"))
}

/// Whole seconds since `start`, rounded up: go-livepeer's `math.Ceil(took.Seconds())`, which
/// is at least 1 for any real request.
pub(crate) fn seconds_since(start: Instant) -> u64 {
    start.elapsed().as_nanos().div_ceil(1_000_000_000).max(1) as u64
}

/// Runs the job on its simulated worker and answers as the orchestrator forwards it.
async fn run(shared: Arc<Shared>, admitted: Admitted, req: Request) -> Response {
    let start = Instant::now();
    let kind = capability(&shared, &admitted.job.capability).map_or(ByocKind::Echo, |c| c.kind);
    if shared.byoc.fault() == ByocFault::Status500 {
        let _ = read_json_body(&shared, req, deadline(&admitted.job, start)).await;
        // Pretty-printed, as a Python worker may write it: an error text of several lines.
        let worker = serde_json::to_string_pretty(&json!({ "error": "simulated worker failure" }))
            .unwrap_or_default();
        return worker_error(&shared, &admitted, start, StatusCode::INTERNAL_SERVER_ERROR, &worker);
    }
    match kind {
        ByocKind::Reverse => reverse(shared, admitted, start, req).await,
        ByocKind::Echo => echo(shared, admitted, start, req),
        ByocKind::Lines => lines(shared, admitted, start, req).await,
        ByocKind::Fill => fill(shared, admitted, start, req).await,
    }
}

/// A worker status ≥ 400: charged, passed through as Go's `http.Error` writes it, with the
/// balance.
fn worker_error(
    shared: &Shared,
    admitted: &Admitted,
    start: Instant,
    status: StatusCode,
    body: &str,
) -> Response {
    debit(shared, &admitted.charge, seconds_since(start));
    let mut response = Rejection::new(status, body).into_response();
    let balance = balance_header(shared, &admitted.job);
    response.headers_mut().insert(BALANCE, balance);
    response
}

/// The body of a JSON worker, at most [`MAX_JSON`] bytes; `Err` carries the worker's status.
async fn read_json_body(
    shared: &Shared,
    req: Request,
    deadline: Instant,
) -> Result<Bytes, (StatusCode, String)> {
    let read = axum::body::to_bytes(req.into_body(), MAX_JSON);
    let Ok(body) = tokio::time::timeout_at(deadline, read).await else {
        let message = format!("job not able to be processed, removing capability err={TIMED_OUT}");
        return Err((StatusCode::INTERNAL_SERVER_ERROR, message));
    };
    let body = body.map_err(|e| {
        let text = e.to_string();
        match text.contains("length limit") {
            true => (StatusCode::PAYLOAD_TOO_LARGE, "request body too large".to_owned()),
            false => (StatusCode::BAD_REQUEST, text),
        }
    })?;
    shared.byoc.update(|s| s.bytes_received += body.len() as u64);
    Ok(body)
}

/// The Reverse worker: `{"text": s}` → `{"text": reversed}`, with `X-Metadata`.
async fn reverse(
    shared: Arc<Shared>,
    admitted: Admitted,
    start: Instant,
    req: Request,
) -> Response {
    let text = match read_json_body(&shared, req, deadline(&admitted.job, start)).await {
        Ok(body) => serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v.get("text").and_then(Value::as_str).map(str::to_owned))
            .ok_or((
                StatusCode::BAD_REQUEST,
                r#"{"error":"body must be {\"text\": string}"}"#.to_owned(),
            )),
        Err(e) => Err(e),
    };
    let text = match text {
        Ok(text) => text,
        Err((status, body)) => return worker_error(&shared, &admitted, start, status, &body),
    };
    let reversed: String = text.chars().rev().collect();
    let metadata = json!({ "worker": "reverse", "chars": text.chars().count() }).to_string();
    debit(&shared, &admitted.charge, seconds_since(start));
    let mut response = Response::new(Body::from(json!({ "text": reversed }).to_string()));
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Ok(v) = HeaderValue::from_str(&metadata) {
        h.insert("X-Metadata", v);
    }
    h.insert(BALANCE, balance_header(&shared, &admitted.job));
    drop(admitted.slot);
    response
}

/// The Fill worker: `{"bytes": n}` answered with `n` bytes at once.
async fn fill(shared: Arc<Shared>, admitted: Admitted, start: Instant, req: Request) -> Response {
    let read = read_json_body(&shared, req, deadline(&admitted.job, start)).await;
    let bytes = match read {
        Ok(body) => serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v.get("bytes")?.as_u64())
            .filter(|&n| n <= MAX_BODY)
            .ok_or((
                StatusCode::BAD_REQUEST,
                r#"{"error":"body must be {\"bytes\": n}, n at most 64 MiB"}"#.to_owned(),
            )),
        Err(e) => Err(e),
    };
    let n = match bytes {
        Ok(n) => n as usize,
        Err((status, body)) => return worker_error(&shared, &admitted, start, status, &body),
    };
    debit(&shared, &admitted.charge, seconds_since(start));
    let mut response = Response::new(Body::from(vec![b'f'; n]));
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    h.insert("X-Metadata", HeaderValue::from_static(""));
    h.insert(BALANCE, balance_header(&shared, &admitted.job));
    drop(admitted.slot);
    response
}

/// The Echo worker: the upload streamed back as it arrives, same `Content-Type`, bounded by
/// [`MAX_BODY`] (a larger `Content-Length` is refused with 413; a longer chunked upload is cut).
fn echo(shared: Arc<Shared>, admitted: Admitted, start: Instant, req: Request) -> Response {
    let length = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if length.is_some_and(|n| n > MAX_BODY) {
        let status = StatusCode::PAYLOAD_TOO_LARGE;
        return worker_error(&shared, &admitted, start, status, "request body too large");
    }
    let content_type = req.headers().get(header::CONTENT_TYPE).cloned();
    debit(&shared, &admitted.charge, seconds_since(start));
    let balance = balance_header(&shared, &admitted.job);
    let upload = Upload {
        body: req.into_body().into_data_stream(),
        deadline: deadline(&admitted.job, start),
        _slot: admitted.slot,
        shared,
        seen: 0,
        done: false,
    };
    let stream = futures_util::stream::unfold(upload, Upload::next);
    let mut response = Response::new(Body::from_stream(stream));
    let h = response.headers_mut();
    if let Some(ct) = content_type {
        h.insert(header::CONTENT_TYPE, ct);
    }
    if let Some(n) = length {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
    }
    h.insert("X-Metadata", HeaderValue::from_static(""));
    h.insert(BALANCE, balance);
    response
}

/// An Echo upload being sent back: the answer's body. It holds the job's capacity until it
/// ends or the client goes away, and fails (cutting the answer) past [`MAX_BODY`] bytes or past
/// the job's deadline, so a slow upload cannot hold the capacity for ever.
struct Upload {
    body: axum::body::BodyDataStream,
    deadline: Instant,
    _slot: Slot,
    shared: Arc<Shared>,
    seen: u64,
    done: bool,
}

impl Upload {
    async fn next(mut self) -> Option<(Result<Bytes, std::io::Error>, Self)> {
        if self.done {
            return None;
        }
        let next = tokio::select! {
            next = self.body.next() => next,
            _ = tokio::time::sleep_until(self.deadline) => Some(Err(axum::Error::new(TIMED_OUT))),
        };
        let item = match next? {
            Ok(chunk) if self.seen + chunk.len() as u64 <= MAX_BODY => {
                self.seen += chunk.len() as u64;
                self.shared.byoc.update(|s| s.bytes_received += chunk.len() as u64);
                Ok(chunk)
            }
            Ok(_) => Err(std::io::Error::other("request body too large")),
            Err(e) => Err(std::io::Error::other(e)),
        };
        self.done = item.is_err();
        Some((item, self))
    }
}

/// When a job must be done: `timeout_seconds` after it started (the worker call's timeout in
/// go-livepeer), at most a day.
fn deadline(job: &Job, start: Instant) -> Instant {
    start + Duration::from_secs(job.req.timeout_seconds.clamp(0, 86_400).unsigned_abs())
}

/// The error of a job past its deadline.
const TIMED_OUT: &str = "context deadline exceeded";

/// The Lines worker behind go-livepeer's SSE proxy: the worker task writes its lines into a
/// channel (go-livepeer's scanner goroutine), the proxy task forwards them, debits 5 × price
/// every 5 s, injects the balance before `[DONE]`, and ends at `timeout_seconds`.
async fn lines(shared: Arc<Shared>, admitted: Admitted, start: Instant, req: Request) -> Response {
    let count = match read_json_body(&shared, req, deadline(&admitted.job, start)).await {
        Ok(body) if body.iter().all(u8::is_ascii_whitespace) => Ok(DEFAULT_LINES),
        Ok(body) => serde_json::from_slice::<Value>(&body)
            .ok()
            .map(|v| v.get("lines").map_or(Some(DEFAULT_LINES), Value::as_u64))
            .and_then(|n| n.filter(|n| *n <= MAX_LINES))
            .ok_or((
                StatusCode::BAD_REQUEST,
                format!(r#"{{"error":"body must be {{\"lines\": 0..{MAX_LINES}}}"}}"#),
            )),
        Err(e) => Err(e),
    };
    let count = match count {
        Ok(n) => n,
        Err((status, body)) => return worker_error(&shared, &admitted, start, status, &body),
    };
    let (line_tx, line_rx) = mpsc::channel::<String>(16);
    tokio::spawn(lines_worker(line_tx, count, shared.byoc.gate()));
    let balance = balance_header(&shared, &admitted.job);
    let (body_tx, body_rx) = mpsc::channel::<Bytes>(16);
    let deadline = deadline(&admitted.job, start);
    tokio::spawn(sse_proxy(shared, admitted, line_rx, body_tx, deadline));
    let stream = futures_util::stream::unfold(body_rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, std::io::Error>(b), rx))
    });
    let mut response = Response::new(Body::from_stream(stream));
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("X-Metadata", HeaderValue::from_static(""));
    h.insert("Livepeer-Payment-Balance", balance);
    response
}

/// The simulated SSE worker: `count` events, waiting at the gate (if armed) after the first,
/// then `[DONE]`. Lines are sent without their newline, as Go's scanner yields them.
async fn lines_worker(tx: mpsc::Sender<String>, count: u64, gate: Option<crate::ByocGate>) {
    for i in 0..count {
        for line in [format!("data: {{\"n\":{i}}}"), String::new()] {
            if tx.send(line).await.is_err() {
                return;
            }
        }
        if i == 0
            && let Some(gate) = &gate
        {
            tokio::select! {
                _ = gate.passed() => {}
                _ = tx.closed() => return,
            }
        }
    }
    for line in ["data: [DONE]".to_owned(), String::new()] {
        if tx.send(line).await.is_err() {
            return;
        }
    }
}

/// go-livepeer's SSE forwarding loop (`processJob`, streaming branch).
async fn sse_proxy(
    shared: Arc<Shared>,
    admitted: Admitted,
    mut lines: mpsc::Receiver<String>,
    body: mpsc::Sender<Bytes>,
    deadline: Instant,
) {
    let mut billing = tokio::time::interval_at(Instant::now() + SSE_BILLING, SSE_BILLING);
    let mut idle = tokio::time::interval(SSE_IDLE_LINE);
    // The worker has closed its channel: from then on, empty lines until the deadline.
    let mut worker_done = false;
    let price_positive = admitted.charge.fee(1).is_ok_and(|f| !f.is_zero());
    let balance_line = |shared: &Shared| {
        let balance = shared.payments.balance(admitted.job.sender, &admitted.job.capability);
        format!("data: {{\"balance\": {}}}\n\n\n", balance_string(&balance, 3))
    };
    loop {
        let out = tokio::select! {
            _ = tokio::time::sleep_until(deadline) => break,
            _ = billing.tick(), if price_positive => {
                debit(&shared, &admitted.charge, SSE_BILLING.as_secs());
                let balance = shared.payments.balance(admitted.job.sender, &admitted.job.capability);
                if !balance.is_negative() {
                    continue;
                }
                "event: insufficient balance\ndata: {\"balance\": 0}\n\ndata: [DONE]\n\n".to_owned()
            }
            _ = idle.tick(), if worker_done => "\n".to_owned(),
            line = lines.recv(), if !worker_done => match line {
                None => {
                    worker_done = true;
                    continue;
                }
                Some(line) if line.contains("[DONE]") => format!("{}{line}\n", balance_line(&shared)),
                Some(line) => format!("{line}\n"),
            },
        };
        let last = out.starts_with("event: insufficient balance");
        if body.send(Bytes::from(out)).await.is_err() || last {
            break;
        }
    }
    drop(admitted.slot);
}
