//! Live video-to-video on the simulated orchestrator (PROTOCOL.md §8): the start call, the four
//! trickle channels under `/ai/trickle/`, a runner that processes each input segment into an
//! output segment, events, control updates, and the `/payment` route with go-livepeer's live
//! payment processor.
//!
//! The runner passes each segment through byte for byte as it arrives (so output starts before
//! the input segment is complete), or re-encodes it through an ffmpeg filter when
//! [`crate::SimConfig::live_filter`] is set. [`LiveMode`] makes it stall or go quiet, and
//! [`crate::Sim::stop`] kills every stream with the server.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use livepeer_proto::{Message, net};
use livepeer_trickle::{
    Hub, HubConfig, LocalPublisher, Publish, ReadSegment, Subscribe, WriteSegment, publish_segment,
    read_segment,
};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::Shared;
use crate::ai::{Rejection, check_payment, check_segment};
use crate::payment::{self, Charge};

/// Units of one second of live video (PAYMENTS.md §8), as the gateway pays them.
pub(crate) const UNITS_PER_SECOND: u64 = livepeer_pm::LIVE_VIDEO_UNITS_PER_SECOND;
/// The pipeline name of live video-to-video models.
const PIPELINE: &str = "live-video-to-video";
/// Largest control or event message read.
const MAX_JSON: usize = 1 << 20;
/// Control messages kept for [`LiveStats::control`].
const KEPT_CONTROL: usize = 256;

/// What the live runner does; changeable at run time with [`crate::Sim::set_live_mode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LiveMode {
    /// Process every segment and publish events.
    #[default]
    Normal,
    /// Keep reading input but publish no output, as a stuck GPU would.
    StallOutput,
    /// Keep processing but publish no events, as a runner whose monitor died would.
    MuteEvents,
    /// Start each stream but never answer its start call, as an orchestrator whose answer is
    /// lost on the way: the caller never learns the stream's channels, and the stream runs
    /// until its input channel is closed or the simulator stops (a real orchestrator would
    /// time it out once its input stays idle).
    StartUnanswered,
    /// Keep reading input, but write output as one segment that never ends, one byte every
    /// 500 ms, as a runner wedged mid-segment would.
    DripOutput,
    /// Serve streams as `Normal`, but answer every `/payment` 500 after crediting its
    /// tickets, as a hostile orchestrator keeping what it is sent would.
    RefusePayments,
}

/// What the simulator's live side has done, from [`crate::Sim::live`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LiveStats {
    /// Start calls accepted.
    pub starts: u64,
    /// Streams running now.
    pub active: usize,
    /// The streams running now, by manifest id (sorted), so that a soak can tell which
    /// gateway request left one behind.
    pub running: Vec<RunningStream>,
    /// Input segments received, all streams.
    pub segments_in: u64,
    /// Output segments published, all streams.
    pub segments_out: u64,
    /// Input bytes received.
    pub bytes_in: u64,
    /// Parameter updates received on control channels, oldest first (keepalives excluded).
    pub control: Vec<Value>,
    /// `{"keep":"alive"}` messages received.
    pub keepalives: u64,
    /// `/payment` calls accepted.
    pub payments: u64,
    /// `/payment` calls whose tickets were credited and that were answered 500
    /// ([`LiveMode::RefusePayments`]).
    pub payments_refused: u64,
    /// Streams stopped because their balance did not cover the time used.
    pub stopped_for_balance: u64,
    /// Milliseconds since the Unix epoch of each accepted `/payment`, oldest first (last 256).
    pub payment_times_ms: Vec<u64>,
}

/// A stream the simulator is running, from [`LiveStats::running`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunningStream {
    /// The simulator's id of the stream.
    pub manifest_id: String,
    /// The `gateway_request_id` of its start call.
    pub gateway_request_id: String,
}

/// One running stream's entry: its model, its start's gateway request id and what stops it.
#[derive(Debug)]
struct Entry {
    model: String,
    request: String,
    cancel: CancellationToken,
}

/// Live state of a running simulator.
#[derive(Debug)]
pub(crate) struct LiveState {
    pub(crate) hub: Hub,
    mode: Mutex<LiveMode>,
    stats: Mutex<LiveStats>,
    /// Running streams by manifest id.
    streams: Mutex<HashMap<String, Entry>>,
}

impl Default for LiveState {
    fn default() -> Self {
        // Orchestrators pre-create channels; a POST to an unknown one is a 404.
        let hub = Hub::new(HubConfig { autocreate: false, ..HubConfig::default() });
        Self { hub, mode: Mutex::default(), stats: Mutex::default(), streams: Mutex::default() }
    }
}

impl LiveState {
    pub(crate) fn set_mode(&self, mode: LiveMode) {
        if let Ok(mut m) = self.mode.lock() {
            *m = mode;
        }
    }

    fn mode(&self) -> LiveMode {
        self.mode.lock().map(|m| *m).unwrap_or_default()
    }

    pub(crate) fn stats(&self) -> LiveStats {
        let mut stats = self.stats.lock().map(|s| s.clone()).unwrap_or_default();
        if let Ok(streams) = self.streams.lock() {
            stats.active = streams.len();
            stats.running = streams
                .iter()
                .map(|(mid, e)| RunningStream {
                    manifest_id: mid.clone(),
                    gateway_request_id: e.request.clone(),
                })
                .collect();
            stats.running.sort_by(|a, b| a.manifest_id.cmp(&b.manifest_id));
        }
        stats
    }

    fn update(&self, f: impl FnOnce(&mut LiveStats)) {
        if let Ok(mut s) = self.stats.lock() {
            f(&mut s);
        }
    }

    /// Stops every stream: runners end and their channels close.
    pub(crate) fn kill_all(&self) {
        let streams: Vec<_> = match self.streams.lock() {
            Ok(mut s) => s.drain().collect(),
            Err(_) => return,
        };
        for (mid, entry) in streams {
            entry.cancel.cancel();
            close_channels(&self.hub, &mid);
        }
    }
}

/// The live routes: the start call, `/payment` and the trickle channels.
pub(crate) fn routes(shared: Arc<Shared>) -> Router {
    let trickle = shared.live.hub.router();
    Router::new()
        .route("/live-video-to-video", post(start))
        .route("/payment", post(payment))
        .with_state(shared)
        .nest("/ai/trickle", trickle)
}

/// The body of a start call; only these fields are read (PROTOCOL.md §8.2).
#[derive(Debug, serde::Deserialize)]
struct StartRequest {
    #[serde(default)]
    model_id: String,
    #[serde(default)]
    params: Value,
    #[serde(default)]
    gateway_request_id: String,
    #[serde(default)]
    stream_id: String,
}

/// `POST /live-video-to-video`, in go-livepeer's order: decode, capacity, payment, channels,
/// runner, answer.
async fn start(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    match start_stream(&shared, &headers, &body) {
        Ok(_) if shared.live.mode() == LiveMode::StartUnanswered => {
            std::future::pending::<Response>().await
        }
        Ok(answer) => axum::Json(answer).into_response(),
        Err(rejection) => rejection.into_response(),
    }
}

fn start_stream(
    shared: &Arc<Shared>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Value, Rejection> {
    let req: StartRequest = serde_json::from_slice(body)
        .map_err(|e| Rejection::bad_request(format!("invalid request: {e}")))?;
    if req.model_id.is_empty() {
        return Err(Rejection::bad_request("missing model_id"));
    }
    let mid = format!("{:08x}", rand::random::<u32>());
    let payment = check_payment(shared, headers)?;
    check_segment(shared, headers, payment::bytes_to_address(&payment.sender))?;
    let cancel = CancellationToken::new();
    reserve(shared, &req, &mid, &cancel)?;
    let charge = match shared.payments.admit(&payment, &mid) {
        Ok(charge) => charge,
        Err(refused) => {
            release(shared, &mid);
            return Err(refused.into());
        }
    };
    let hub = &shared.live.hub;
    let names = channel_names(&mid);
    let mimes = ["video/MP2T", "video/MP2T", "application/json", "application/json"];
    for (name, mime) in names.iter().zip(mimes) {
        if let Err(e) = hub.create(name, mime) {
            release(shared, &mid);
            close_channels(hub, &mid);
            return Err(Rejection::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()));
        }
    }
    shared.live.update(|s| s.starts += 1);
    tracing::debug!(
        mid,
        stream = req.stream_id,
        request = req.gateway_request_id,
        "live stream started"
    );
    let runner = Runner { shared: shared.clone(), mid: mid.clone(), model: req.model_id, charge };
    tokio::spawn(runner.run(req.params, cancel));
    let base = shared.trickle_base();
    Ok(json!({
        "publish_url": format!("{base}/{}", names[0]),
        "subscribe_url": format!("{base}/{}", names[1]),
        "control_url": format!("{base}/{}", names[2]),
        "events_url": format!("{base}/{}", names[3]),
        "manifest_id": mid,
    }))
}

/// Input, output, control, events: `mid`, `mid-out`, `mid-control`, `mid-events`.
fn channel_names(mid: &str) -> [String; 4] {
    [mid.to_owned(), format!("{mid}-out"), format!("{mid}-control"), format!("{mid}-events")]
}

fn close_channels(hub: &Hub, mid: &str) {
    for name in channel_names(mid) {
        hub.close(&name);
    }
}

/// Takes one of the model's containers (go-livepeer: 503 `insufficient capacity`).
fn reserve(
    shared: &Shared,
    req: &StartRequest,
    mid: &str,
    cancel: &CancellationToken,
) -> Result<(), Rejection> {
    let model = req.model_id.as_str();
    let capacity = shared
        .config
        .models
        .iter()
        .find(|m| m.pipeline == PIPELINE && m.model == model)
        .map_or(0, |m| m.capacity as usize);
    let no_capacity = || Rejection::new(StatusCode::SERVICE_UNAVAILABLE, "insufficient capacity");
    let mut streams = shared.live.streams.lock().map_err(|_| no_capacity())?;
    if streams.values().filter(|e| e.model == model).count() >= capacity {
        return Err(no_capacity());
    }
    let entry = Entry {
        model: model.to_owned(),
        request: req.gateway_request_id.clone(),
        cancel: cancel.clone(),
    };
    streams.insert(mid.to_owned(), entry);
    Ok(())
}

fn release(shared: &Shared, mid: &str) {
    if let Ok(mut streams) = shared.live.streams.lock() {
        streams.remove(mid);
    }
}

/// `POST /payment`: process the tickets for the SegData's manifest id and answer a
/// `PaymentResult` with fresh ticket params. No balance check (go-livepeer `Payment`).
async fn payment(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let answer = (|| {
        let payment = check_payment(&shared, &headers)?;
        let sender = payment::bytes_to_address(&payment.sender);
        let seg = check_segment(&shared, &headers, sender)?;
        let mid = String::from_utf8_lossy(&seg.manifest_id).into_owned();
        shared.payments.receive(&payment, &mid)?;
        if shared.live.mode() == LiveMode::RefusePayments {
            shared.live.update(|s| s.payments_refused += 1);
            return Err(Rejection::new(StatusCode::INTERNAL_SERVER_ERROR, "payment refused"));
        }
        let request = net::OrchestratorRequest {
            address: payment.sender.clone(),
            capabilities: seg.capabilities.clone(),
            ..net::OrchestratorRequest::default()
        };
        let info = crate::grpc::info(&shared, &request).map_err(|s| {
            Rejection::new(StatusCode::INTERNAL_SERVER_ERROR, s.message().to_owned())
        })?;
        Ok::<_, Rejection>(net::PaymentResult { info: Some(info) })
    })();
    match answer {
        Ok(result) => {
            let now = now_ms();
            shared.live.update(|s| {
                s.payments += 1;
                s.payment_times_ms.push(now);
                if s.payment_times_ms.len() > 256 {
                    s.payment_times_ms.remove(0);
                }
            });
            let mut response = Response::new(axum::body::Body::from(result.encode_to_vec()));
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-protobuf"));
            response
        }
        Err(rejection) => rejection.into_response(),
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// One stream's runner.
struct Runner {
    shared: Arc<Shared>,
    mid: String,
    model: String,
    charge: Charge,
}

impl Runner {
    async fn run(self, params: Value, cancel: CancellationToken) {
        let hub = self.shared.live.hub.clone();
        let [input_name, output_name, control_name, events_name] = channel_names(&self.mid);
        let (events_tx, events_rx) = mpsc::channel::<Value>(64);
        let params = Arc::new(Mutex::new(params));
        tokio::spawn(events_loop(
            self.shared.clone(),
            hub.publisher(&events_name),
            events_rx,
            self.model.clone(),
            params.clone(),
            cancel.clone(),
        ));
        tokio::spawn(control_loop(
            self.shared.clone(),
            hub.subscriber(&control_name, 0),
            events_tx,
            params,
            cancel.clone(),
        ));
        let mut input = hub.subscriber(&input_name, 0);
        let mut output = hub.publisher(&output_name);
        let interval = self.shared.config.live_payment_interval;
        let mut billed_until = Instant::now();
        let mut dripping = false;
        loop {
            let reader = tokio::select! {
                _ = cancel.cancelled() => break,
                next = input.segment() => match next {
                    Ok(Some(reader)) => reader,
                    Ok(None) => break,
                    Err(e) => {
                        tracing::debug!(mid = self.mid, error = %e, "live input ended");
                        break;
                    }
                },
            };
            // go-livepeer's LV2VPaymentProcessor: on an input segment, once the interval has
            // passed, the time since the last billed instant must be paid for.
            let elapsed = billed_until.elapsed();
            if elapsed >= interval {
                // A simulator told to bill faster than real time runs a stream's credit down
                // sooner, which is how a test reaches the "insufficient balance" stop.
                let rate = u128::from(UNITS_PER_SECOND)
                    * u128::from(self.shared.config.live_billing_speedup.max(1));
                let units = (rate * elapsed.as_micros() / 1_000_000) as u64;
                if let Err(refused) = self.shared.payments.debit_covered(&self.charge, units) {
                    tracing::info!(mid = self.mid, error = refused.message, "stopping live stream");
                    self.shared.live.update(|s| s.stopped_for_balance += 1);
                    break;
                }
                // Advance by the billed time only, so truncated fractions are billed later.
                billed_until +=
                    Duration::from_micros((u128::from(units) * 1_000_000 / rate) as u64);
            }
            if self.shared.live.mode() == LiveMode::DripOutput && !dripping {
                dripping = true;
                tokio::spawn(drip(hub.publisher(&output_name), cancel.clone()));
            }
            let processed = tokio::select! {
                _ = cancel.cancelled() => break,
                done = self.process(reader, &mut output) => done,
            };
            if let Err(e) = processed {
                tracing::debug!(mid = self.mid, error = %e, "live segment failed");
                if e.is_end() {
                    break;
                }
            }
        }
        cancel.cancel();
        release(&self.shared, &self.mid);
        close_channels(&hub, &self.mid);
    }

    /// One input segment into one output segment.
    async fn process<R: ReadSegment, P: Publish>(
        &self,
        mut reader: R,
        output: &mut P,
    ) -> Result<(), livepeer_trickle::TrickleError> {
        let live = &self.shared.live;
        let mode = live.mode();
        let filter = self.shared.config.live_filter.clone();
        let mut bytes = 0u64;
        if matches!(mode, LiveMode::StallOutput | LiveMode::DripOutput) {
            while let Some(chunk) = reader.chunk().await? {
                bytes += chunk.len() as u64;
            }
        } else if let Some(filter) = filter {
            let data = read_segment(&mut reader, 64 << 20).await?;
            bytes = data.len() as u64;
            if data.is_empty() {
                return Ok(());
            }
            let out = match run_filter(&filter, data.clone()).await {
                Ok(out) => out,
                Err(e) => {
                    tracing::warn!(error = %e, "ffmpeg filter failed; passing the segment through");
                    data
                }
            };
            publish_segment(output, out).await?;
            live.update(|s| s.segments_out += 1);
        } else {
            // Passthrough, chunk by chunk: output starts before the input segment ends.
            let mut writer = None;
            while let Some(chunk) = reader.chunk().await? {
                bytes += chunk.len() as u64;
                let w = match &mut writer {
                    Some(w) => w,
                    None => writer.insert(output.segment().await?),
                };
                w.write(chunk).await?;
            }
            if let Some(w) = writer {
                w.finish().await?;
                live.update(|s| s.segments_out += 1);
            }
        }
        // An empty segment (a publisher's abandoned preconnect) is no input.
        if bytes > 0 {
            live.update(|s| {
                s.segments_in += 1;
                s.bytes_in += bytes;
            });
        }
        Ok(())
    }
}

/// [`LiveMode::DripOutput`]'s output: one segment, a byte every 500 ms, until the stream ends.
async fn drip(mut output: LocalPublisher, cancel: CancellationToken) {
    let Ok(mut writer) = output.segment().await else { return };
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        if writer.write(Bytes::from_static(&[0x47])).await.is_err() {
            return;
        }
    }
}

/// Re-encodes one MPEG-TS segment through an ffmpeg video filter.
async fn run_filter(filter: &str, data: Bytes) -> std::io::Result<Bytes> {
    let mut child = tokio::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-f", "mpegts", "-i", "pipe:0", "-vf"])
        .arg(filter)
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency"])
        .args(["-c:a", "copy", "-f", "mpegts", "pipe:1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let mut stdin = child.stdin.take().ok_or_else(|| std::io::Error::other("no stdin"))?;
    let mut stdout = child.stdout.take().ok_or_else(|| std::io::Error::other("no stdout"))?;
    // Write and read at once: ffmpeg's output pipe would fill up otherwise.
    let writer = async move {
        stdin.write_all(&data).await?;
        stdin.shutdown().await
    };
    let mut out = Vec::new();
    let (written, read) = tokio::join!(writer, stdout.read_to_end(&mut out));
    written?;
    read?;
    let status = child.wait().await?;
    if !status.success() || out.is_empty() {
        return Err(std::io::Error::other(format!("ffmpeg exited with {status}")));
    }
    Ok(Bytes::from(out))
}

/// Publishes a status event every interval, and every event the other tasks send, as one
/// JSON document per segment in ai-runner's `{"queue_event_type", "event"}` envelope.
async fn events_loop<P: Publish>(
    shared: Arc<Shared>,
    mut publisher: P,
    mut rx: mpsc::Receiver<Value>,
    model: String,
    params: Arc<Mutex<Value>>,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(shared.config.live_event_interval);
    loop {
        let event = tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {
                let stats = shared.live.stats();
                let last_params = params.lock().map(|p| p.clone()).unwrap_or_default();
                json!({
                    "type": "status",
                    "pipeline": model,
                    "timestamp": now_ms(),
                    "inference_status": {
                        "last_params": last_params,
                        "segments_out": stats.segments_out,
                    },
                    "input_status": { "segments_in": stats.segments_in },
                })
            }
            got = rx.recv() => match got {
                Some(event) => event,
                None => return,
            },
        };
        if shared.live.mode() == LiveMode::MuteEvents {
            continue;
        }
        let doc = json!({ "queue_event_type": "ai_stream_events", "event": event });
        if let Err(e) = publish_segment(&mut publisher, Bytes::from(doc.to_string())).await
            && e.is_end()
        {
            return;
        }
    }
}

/// Applies every parameter update from the control channel and reports it as an event.
async fn control_loop<S: Subscribe>(
    shared: Arc<Shared>,
    mut control: S,
    events: mpsc::Sender<Value>,
    params: Arc<Mutex<Value>>,
    cancel: CancellationToken,
) {
    loop {
        let mut reader = tokio::select! {
            _ = cancel.cancelled() => return,
            next = control.segment() => match next {
                Ok(Some(reader)) => reader,
                Ok(None) | Err(_) => return,
            },
        };
        let Ok(data) = read_segment(&mut reader, MAX_JSON).await else { continue };
        let Ok(update) = serde_json::from_slice::<Value>(&data) else {
            tracing::debug!("control message is not JSON; ignored");
            continue;
        };
        // The runner ignores exactly this object (PROTOCOL.md §8.3).
        if update == json!({"keep": "alive"}) {
            shared.live.update(|s| s.keepalives += 1);
            continue;
        }
        if let Ok(mut p) = params.lock() {
            *p = update.clone();
        }
        shared.live.update(|s| {
            s.control.push(update.clone());
            if s.control.len() > KEPT_CONTROL {
                s.control.remove(0);
            }
        });
        let _ = events.try_send(json!({ "type": "params_update", "params": update }));
    }
}
