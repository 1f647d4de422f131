//! BYOC streams as go-livepeer's orchestrator runs them (byoc/stream_orchestrator.go;
//! PROTOCOL.md §10.6): `/ai/stream/start` verifies and pays like a job (402 below a minute of
//! balance), creates the stream's trickle channels on the simulator's trickle server and
//! returns their URLs in `X-*-Url` headers with an empty 200; `/ai/stream/stop`, `/update` and
//! `/payment` as upstream; a monitor debits the stream's time and stops it when the balance
//! stays negative.
//!
//! The simulated worker copies each input segment to the output channel and writes one JSON
//! line per input segment to the data channel; parameter updates (from `/ai/stream/update` or
//! the control channel) come back as events. A stream holds one unit of its capability's
//! capacity until it ends: stopped, out of balance, its control channel closed or idle for
//! 5 minutes, or the simulator stopped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use livepeer_trickle::{
    CopyError, Hub, OnCut, Publish, ReadSegment, Subscribe, TrickleError, publish_segment,
    read_segment,
};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::Shared;
use crate::ai::Rejection;
use crate::byoc::{BALANCE, ByocStreamFault, Job, NO_JOB_CREDS, Slot, floor_balance_string};
use crate::byoc_job::{AdmitError, Admitted, admit, balance_header, debit, seconds_since};
use crate::payment::Charge;
use crate::server::ConnKill;

/// Largest start, update or control body read.
const MAX_JSON: usize = 1 << 20;
/// Parameter updates kept in [`crate::ByocStats::stream_updates`].
const KEPT_UPDATES: usize = 64;

/// The running streams, by stream id.
#[derive(Debug, Default)]
pub(crate) struct Streams(Mutex<HashMap<String, Entry>>);

#[derive(Debug)]
struct Entry {
    /// Tells apart two streams that used the same id one after the other.
    generation: u64,
    cancel: CancellationToken,
    /// Cancelled once the stream has cleaned up (entry, channels, capacity).
    finished: CancellationToken,
    /// Sends events to the stream's events channel.
    events: mpsc::Sender<Value>,
}

/// How long a stop waits for its stream to clean up.
const STOP_WAIT: Duration = Duration::from_secs(5);

impl Streams {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Streams running now.
pub(crate) fn active(shared: &Shared) -> usize {
    shared.byoc.streams.lock().len()
}

/// Stops every stream: runners end, channels close, capacity returns.
pub(crate) fn kill_all(shared: &Shared) {
    for entry in shared.byoc.streams.lock().values() {
        entry.cancel.cancel();
    }
}

/// The stream routes (go-livepeer registers them for every method).
pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/ai/stream/start", any(start))
        .route("/ai/stream/stop", any(stop))
        .route("/ai/stream/update", any(update))
        .route("/ai/stream/payment", any(payment))
}

/// `JobParameters`: the enable flags of a stream (the `orchestrators` filter is the gateway's).
#[derive(Debug, Clone, Copy, Default, serde::Deserialize)]
struct Flags {
    #[serde(default)]
    enable_video_ingress: bool,
    #[serde(default)]
    enable_video_egress: bool,
    #[serde(default)]
    enable_data_output: bool,
}

/// The channel names of stream `id`: control, events, input, output, data.
fn names(id: &str) -> [String; 5] {
    [
        format!("{id}-control"),
        format!("{id}-events"),
        id.to_owned(),
        format!("{id}-out"),
        format!("{id}-data"),
    ]
}

fn close_channels(hub: &Hub, id: &str) {
    for name in names(id) {
        hub.close(&name);
    }
}

/// The body of a start answered with [`ByocStreamFault::OversizedStarted`]: 1 MiB.
pub(crate) const OVERSIZED_ANSWER: usize = 1 << 20;

/// `POST /ai/stream/start`.
async fn start(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    shared.byoc.update(|s| s.stream_start_calls += 1);
    let fault = shared.byoc.stream_fault();
    if fault == ByocStreamFault::Close {
        if let Some(kill) = req.extensions().get::<ConnKill>() {
            kill.0.cancel();
        }
        return std::future::pending().await;
    }
    let admitted = match admit(&shared, req.headers(), true) {
        Ok(admitted) => admitted,
        Err(e) => {
            let status = match e {
                AdmitError::Unanswered => return e.into_response(),
                AdmitError::InsufficientBalance => StatusCode::PAYMENT_REQUIRED,
                _ => StatusCode::BAD_REQUEST,
            };
            return Rejection::new(status, e.message()).into_response();
        }
    };
    if fault == ByocStreamFault::Hang {
        drop(admitted);
        return std::future::pending().await;
    }
    let start = Instant::now();
    // The worker's start, slow to come and charged as it takes (see
    // `Sim::byoc_stream_start_gate`).
    if let Some(gate) = shared.byoc.start_gate() {
        gate.passed().await;
    }
    let body = match axum::body::to_bytes(req.into_body(), MAX_JSON).await {
        Ok(body) => body,
        Err(_) => return Rejection::bad_request("Error reading request body").into_response(),
    };
    let flags = match parse_flags(admitted.job.parameters()) {
        Ok(flags) => flags,
        Err(message) => return Rejection::bad_request(message).into_response(),
    };
    match open_stream(&shared, admitted, flags, &body, start) {
        Ok(_) if fault == ByocStreamFault::HangStarted => std::future::pending().await,
        Ok(response) if fault == ByocStreamFault::OversizedStarted => {
            let (mut parts, _) = response.into_parts();
            parts.headers.remove(http::header::CONTENT_LENGTH);
            Response::from_parts(parts, Body::from(vec![b' '; OVERSIZED_ANSWER]))
        }
        Ok(response) => response,
        Err(rejection) => rejection.into_response(),
    }
}

/// The parameters as go-livepeer's `json.Unmarshal` reads them; its error text for an empty
/// string, serde's for the rest.
fn parse_flags(parameters: &str) -> Result<Flags, String> {
    if parameters.trim().is_empty() {
        return Err("unexpected end of JSON input".to_owned());
    }
    serde_json::from_str(parameters).map_err(|e| e.to_string())
}

/// Creates the channels, "starts the worker", charges the start and launches the runner.
fn open_stream(
    shared: &Arc<Shared>,
    admitted: Admitted,
    flags: Flags,
    body: &[u8],
    start: Instant,
) -> Result<Response, Rejection> {
    let id = admitted.job.id().to_owned();
    let hub = &shared.live.hub;
    let server_error = |m: &str| Rejection::new(StatusCode::INTERNAL_SERVER_ERROR, m);
    // go-livepeer finds a duplicate only after the worker started; refusing first keeps the
    // running stream's channels intact.
    if shared.byoc.streams.lock().contains_key(&id) {
        return Err(server_error("Error adding stream to external capabilities"));
    }
    // Go reads the body into a map: an object, or null.
    let params = match serde_json::from_slice::<Value>(body) {
        Ok(v @ (Value::Object(_) | Value::Null)) => v,
        _ => return Err(Rejection::bad_request("Invalid JSON body")),
    };
    let [control, events, input, output, data] = names(&id);
    let wanted = [
        (&control, "application/json", "X-Control-Url", true),
        (&events, "application/json", "X-Events-Url", true),
        (&input, "video/MP2T", "X-Publish-Url", flags.enable_video_ingress),
        (&output, "video/MP2T", "X-Subscribe-Url", flags.enable_video_egress),
        (&data, "application/jsonl", "X-Data-Url", flags.enable_data_output),
    ];
    let base = shared.trickle_base();
    let mut response = Response::new(Body::empty());
    for (name, mime, header_name, enabled) in wanted {
        if !enabled {
            continue;
        }
        if let Err(e) = hub.create(name, mime) {
            close_channels(hub, &id);
            return Err(server_error(&format!("Error creating trickle channel: {e}")));
        }
        if let Ok(url) = HeaderValue::from_str(&format!("{base}/{name}")) {
            response.headers_mut().insert(header_name, url);
        }
    }
    // The worker's start takes no time here; the call is charged as go-livepeer charges it.
    debit(shared, &admitted.charge, seconds_since(start));
    response.headers_mut().insert(BALANCE, balance_header(shared, &admitted.job));
    let cancel = CancellationToken::new();
    let finished = CancellationToken::new();
    let generation = rand::random::<u64>();
    let (events_tx, events_rx) = mpsc::channel(64);
    let entry = Entry {
        generation,
        cancel: cancel.clone(),
        finished: finished.clone(),
        events: events_tx.clone(),
    };
    shared.byoc.streams.lock().insert(id.clone(), entry);
    shared.byoc.update(|s| s.stream_starts += 1);
    let _ =
        events_tx.try_send(json!({ "type": "stream_started", "stream_id": id, "params": params }));
    let Admitted { job, slot, charge } = admitted;
    let stream = Stream {
        shared: shared.clone(),
        id,
        generation,
        flags,
        cancel,
        finished,
        events: events_tx,
    };
    tokio::spawn(stream.run(job, charge, slot, events_rx));
    Ok(response)
}

/// One running stream.
#[derive(Clone)]
struct Stream {
    shared: Arc<Shared>,
    id: String,
    generation: u64,
    flags: Flags,
    cancel: CancellationToken,
    finished: CancellationToken,
    events: mpsc::Sender<Value>,
}

impl Stream {
    /// Runs the stream's tasks until it is cancelled, then cleans up: the entry, the channels,
    /// the capacity.
    async fn run(self, job: Job, charge: Charge, slot: Slot, events: mpsc::Receiver<Value>) {
        let hub = self.shared.live.hub.clone();
        let [control, events_name, input, output, data] = names(&self.id);
        tokio::spawn(events_loop(hub.publisher(&events_name), events, self.cancel.clone()));
        tokio::spawn(self.clone().control_loop(hub.subscriber(&control, 0)));
        tokio::spawn(self.clone().monitor(job, charge));
        if self.flags.enable_video_ingress {
            let out = self.flags.enable_video_egress.then(|| hub.publisher(&output));
            let lines = self.flags.enable_data_output.then(|| hub.publisher(&data));
            self.pump(hub.subscriber(&input, 0), out, lines).await;
        } else if let Some(every) = self.shared.config.byoc_data_interval {
            let out = self.flags.enable_video_egress.then(|| hub.publisher(&output));
            let lines = self.flags.enable_data_output.then(|| hub.publisher(&data));
            self.ticks(out, lines, every).await;
        }
        // A worker whose input ended keeps its stream until it is stopped.
        self.cancel.cancelled().await;
        {
            let mut streams = self.shared.byoc.streams.lock();
            if streams.get(&self.id).is_some_and(|e| e.generation == self.generation) {
                streams.remove(&self.id);
            }
            // Closed under the lock: a new stream of the same id cannot have opened its
            // channels yet, since its start finds this entry until now.
            close_channels(&hub, &self.id);
        }
        tracing::debug!(stream = self.id, "BYOC stream ended");
        drop(slot);
        self.finished.cancel();
    }

    /// Every `every`, until the stream is cancelled or a channel written to is gone: a data
    /// line `{"tick": n}` to `lines`, and an output segment (one MPEG-TS null packet) to `out`,
    /// as a worker producing output of its own would.
    async fn ticks<P: Publish>(&self, mut out: Option<P>, mut lines: Option<P>, every: Duration) {
        let mut null_packet = vec![0xffu8; 188];
        null_packet[..4].copy_from_slice(&[0x47, 0x1f, 0xff, 0x10]);
        let null_packet = Bytes::from(null_packet);
        for n in 0u64.. {
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
            if let Some(out) = out.as_mut()
                && publish_segment(out, null_packet.clone()).await.is_err()
            {
                return;
            }
            if let Some(lines) = lines.as_mut() {
                let line = format!("{}\n", json!({ "tick": n }));
                if publish_segment(lines, Bytes::from(line)).await.is_err() {
                    return;
                }
                self.shared.byoc.update(|s| s.data_lines += 1);
            }
        }
    }

    /// Copies each input segment to the output channel and writes a JSON line per segment.
    async fn pump<S: Subscribe, P: Publish>(
        &self,
        mut input: S,
        mut out: Option<P>,
        mut lines: Option<P>,
    ) {
        loop {
            let reader = tokio::select! {
                _ = self.cancel.cancelled() => return,
                next = input.segment() => match next {
                    Ok(Some(reader)) => reader,
                    Ok(None) | Err(_) => return,
                },
            };
            let seq = reader.seq();
            let copied = tokio::select! {
                _ = self.cancel.cancelled() => return,
                copied = copy_segment(reader, out.as_mut()) => copied,
            };
            let bytes = match copied {
                Ok(bytes) => bytes,
                Err(e) if e.is_end() => return,
                Err(e) => {
                    tracing::debug!(stream = self.id, error = %e, "BYOC segment failed");
                    continue;
                }
            };
            if bytes == 0 {
                continue;
            }
            let mut wrote_line = false;
            if let Some(lines) = lines.as_mut() {
                let line = format!("{}\n", json!({ "seq": seq, "bytes": bytes }));
                wrote_line = publish_segment(lines, Bytes::from(line)).await.is_ok();
            }
            self.shared.byoc.update(|s| {
                s.segments_in += 1;
                s.segments_out += u64::from(out.is_some());
                s.data_lines += u64::from(wrote_line);
                s.bytes_received += bytes;
            });
        }
    }

    /// Applies each control message (keepalives aside) as the worker would and reports it as
    /// an event. The control channel going away ends the stream, as go-livepeer's monitor does;
    /// so does a control channel idle for the trickle server's idle timeout (5 min), which
    /// go-livepeer's trickle server would sweep: gateways keep it alive with `{"keep":"alive"}`.
    async fn control_loop<S: Subscribe>(self, mut control: S) {
        let idle = self.shared.live.hub.config().idle_timeout;
        loop {
            let mut reader = tokio::select! {
                _ = self.cancel.cancelled() => return,
                next = tokio::time::timeout(idle, control.segment()) => match next {
                    Ok(Ok(Some(reader))) => reader,
                    Ok(Ok(None) | Err(_)) | Err(_) => break,
                },
            };
            let Ok(data) = read_segment(&mut reader, MAX_JSON).await else { continue };
            let Ok(message) = serde_json::from_slice::<Value>(&data) else { continue };
            if message == json!({"keep": "alive"}) {
                continue;
            }
            let _ = self.events.try_send(json!({ "type": "params_update", "params": message }));
        }
        tracing::debug!(stream = self.id, "control channel gone; stopping the stream");
        self.cancel.cancel();
    }

    /// go-livepeer's `monitorOrchStream`: every interval, debit its seconds of the job price; a
    /// second check that finds the balance negative stops the stream.
    async fn monitor(self, job: Job, charge: Charge) {
        let every = self.shared.config.byoc_stream_billing.max(Duration::from_millis(1));
        let units = every.as_nanos().div_ceil(1_000_000_000) as u64;
        let priced = charge.fee(1).is_ok_and(|f| !f.is_zero());
        let mut ticks = tokio::time::interval_at(Instant::now() + every, every);
        let mut warned = false;
        loop {
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                _ = ticks.tick() => {}
            }
            if !priced {
                continue;
            }
            debit(&self.shared, &charge, units);
            if !self.shared.payments.balance(job.sender, &job.capability).is_negative() {
                continue;
            }
            // go-livepeer never clears the warning: any later negative check stops the stream.
            if !warned {
                warned = true;
                continue;
            }
            tracing::info!(stream = self.id, "insufficient balance; stopping the stream");
            self.shared.byoc.update(|s| s.streams_stopped_for_balance += 1);
            self.cancel.cancel();
            return;
        }
    }
}

/// Copies one segment into a new output segment, chunk by chunk (output starts before the
/// input segment ends); returns its size.
async fn copy_segment<R: ReadSegment, P: Publish>(
    mut reader: R,
    out: Option<&mut P>,
) -> Result<u64, TrickleError> {
    let mut bytes = 0u64;
    let Some(out) = out else {
        while let Some(chunk) = reader.chunk().await? {
            bytes += chunk.len() as u64;
        }
        return Ok(bytes);
    };
    let limits = (OnCut::Abandon, None);
    match livepeer_trickle::copy_segment(&mut reader, out, limits, |_, _| {}).await {
        Ok(copied) => Ok(copied.unwrap_or(0)),
        Err(CopyError::Source(e) | CopyError::Sink(e)) => Err(e),
        Err(CopyError::Stalled) => Err(TrickleError::Timeout("segment write")),
    }
}

/// Publishes each event as one JSON segment on the events channel.
async fn events_loop<P: Publish>(
    mut publisher: P,
    mut rx: mpsc::Receiver<Value>,
    cancel: CancellationToken,
) {
    loop {
        let event = tokio::select! {
            _ = cancel.cancelled() => return,
            got = rx.recv() => match got {
                Some(event) => event,
                None => return,
            },
        };
        if let Err(e) = publish_segment(&mut publisher, Bytes::from(event.to_string())).await
            && e.is_end()
        {
            return;
        }
    }
}

/// The stream a stop, update or payment call names in `request` (`{"stream_id": …}`).
fn stream_id(job: &Job) -> Result<String, String> {
    serde_json::from_str::<Option<crate::byoc_job::Details>>(job.request())
        .map(|d| d.and_then(|d| d.stream_id).unwrap_or_default())
        .map_err(|e| e.to_string())
}

/// The checks of a stop, update or payment call (no capacity taken), with go-livepeer's
/// prefix on the error.
/// The stream a stop or an update names, its job admitted. go-livepeer's update handler says
/// "stop" in its errors too.
fn stream_of_call(shared: &Arc<Shared>, headers: &HeaderMap) -> Result<String, CallRefused> {
    count_payment(shared, headers);
    let job = admit_call(shared, headers, "stop stream")?;
    stream_id(&job).map_err(|e| {
        Rejection::bad_request(format!(
            "Failed to stop stream, request not valid, failed to parse stream id err={e}"
        ))
        .into()
    })
}

/// Counts a `Livepeer-Payment` sent with a stop or an update. go-livepeer processes it there
/// (`setupOrchJob` → `confirmPayment`), and so does [`admit`].
fn count_payment(shared: &Shared, headers: &HeaderMap) {
    if headers.contains_key(livepeer_pm::PAYMENT_HEADER) {
        shared.byoc.update(|s| s.payments_on_stop_or_update += 1);
    }
}

/// Why a stop, update or payment call is not served: a refusal as go-livepeer words it, or no
/// answer at all (see `AdmitError::Unanswered`).
pub(crate) enum CallRefused {
    Answered(Rejection),
    Unanswered,
}

impl From<Rejection> for CallRefused {
    fn from(rejection: Rejection) -> Self {
        Self::Answered(rejection)
    }
}

impl IntoResponse for CallRefused {
    fn into_response(self) -> Response {
        match self {
            Self::Answered(rejection) => rejection.into_response(),
            Self::Unanswered => AdmitError::Unanswered.into_response(),
        }
    }
}

/// A stop, update or payment call admitted.
fn admit_call(shared: &Arc<Shared>, headers: &HeaderMap, what: &str) -> Result<Job, CallRefused> {
    let refused = (shared.byoc.stream_fault() == ByocStreamFault::RefuseCalls)
        .then_some(AdmitError::Creds(NO_JOB_CREDS));
    let admitted =
        refused.map_or_else(|| admit(shared, headers, false), Err).map_err(|e| match e {
            AdmitError::Unanswered => CallRefused::Unanswered,
            _ => Rejection::bad_request(format!(
                "Failed to {what}, request not valid err={}",
                e.message()
            ))
            .into(),
        })?;
    Ok(admitted.job)
}

/// `POST /ai/stream/stop`: the worker's stop, then the stream is removed whatever it said.
async fn stop(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    tokio::time::sleep(shared.byoc.stop_delay()).await;
    let id = match stream_of_call(&shared, req.headers()) {
        Ok(id) => id,
        Err(refused) => return refused.into_response(),
    };
    let tokens =
        shared.byoc.streams.lock().get(&id).map(|e| (e.cancel.clone(), e.finished.clone()));
    let existed = tokens.is_some();
    if let Some((cancel, finished)) = tokens {
        cancel.cancel();
        // Answer once it is gone, so that a new start with the same id finds it gone.
        let _ = tokio::time::timeout(STOP_WAIT, finished.cancelled()).await;
    }
    shared.byoc.update(|s| s.stream_stops += 1);
    axum::Json(json!({ "stream_id": id, "stopped": existed })).into_response()
}

/// `POST /ai/stream/update`: the body goes to the worker's `/stream/params`, which applies it
/// and reports it as an event; 404 from the worker for a stream it does not run.
async fn update(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let id = match stream_of_call(&shared, req.headers()) {
        Ok(id) => id,
        Err(refused) => return refused.into_response(),
    };
    let Ok(body) = axum::body::to_bytes(req.into_body(), MAX_JSON).await else {
        return Rejection::bad_request("Error reading request body").into_response();
    };
    let Ok(params) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, axum::Json(json!({ "error": "params must be JSON" })))
            .into_response();
    };
    let events = shared.byoc.streams.lock().get(&id).map(|e| e.events.clone());
    let Some(events) = events else {
        return (StatusCode::NOT_FOUND, axum::Json(json!({ "error": "stream not found" })))
            .into_response();
    };
    let _ = events.try_send(json!({ "type": "params_update", "params": params }));
    shared.byoc.update(|s| {
        s.stream_updates.push(params);
        if s.stream_updates.len() > KEPT_UPDATES {
            s.stream_updates.remove(0);
        }
    });
    axum::Json(json!({ "status": "ok" })).into_response()
}

/// `POST /ai/stream/payment`: the payment is taken by the common checks; 200 with the
/// balance's integer part in `Livepeer-Balance`.
async fn payment(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let job = match admit_call(&shared, req.headers(), "process payment") {
        Ok(job) => job,
        Err(refused) => return refused.into_response(),
    };
    shared.byoc.update(|s| s.stream_payments += 1);
    let balance = shared.payments.balance(job.sender, &job.capability);
    let value = HeaderValue::from_str(&floor_balance_string(&balance))
        .unwrap_or(HeaderValue::from_static("0"));
    let mut response = Response::new(Body::empty());
    response.headers_mut().insert(BALANCE, value);
    response
}
