//! One live stream's state and its status model: what the client asked for, the counters the
//! relays bump on every chunk, the rate windows, swap records and payments that `/status`
//! shows, and the stream's phase. It imports nothing from the other live modules, so the
//! supervisor, the relays and the routes all depend on it and it on none of them but `owner`.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::owner::{Credentials, Owner};
use crate::orchestrator::JobKey;

/// Client channel mime types: media in and out, JSON control and events.
pub(crate) const MEDIA_MIME: &str = "video/MP2T";
pub(crate) const JSON_MIME: &str = "application/json";

/// Where a stream is in its life, shown as `state` in `/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Its state could not be read (a relay panicked while holding it).
    #[default]
    Unknown,
    /// The first orchestrator is being attached.
    Starting,
    /// An orchestrator serves it.
    Running,
    /// Its orchestrator failed and a replacement is being attached.
    Swapping,
    /// It ended normally.
    Stopped,
    /// It ended because no orchestrator could serve it.
    Failed,
}

/// What the client asked for.
#[derive(Debug, Clone)]
pub(crate) struct StreamSpec {
    /// Stream name: the key of its routes.
    pub(crate) name: String,
    /// The base of its channel names: the name and a random suffix, so that only a client
    /// given the URLs can publish into or read the stream's channels.
    pub(crate) channel: String,
    /// Stream id reported in events (defaults to the name).
    pub(crate) id: String,
    /// The gateway's id for this stream, sent to orchestrators as `gateway_request_id`.
    pub(crate) request_id: String,
    /// Pipeline (the model id of capability 35).
    pub(crate) pipeline: String,
    /// Only orchestrators whose URL contains this.
    pub(crate) pin: Option<String>,
    /// The client that started it: the only one that may update, stop or read it.
    pub(crate) owner: Owner,
}

/// One orchestrator replacement, for `/status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SwapRecord {
    /// The orchestrator that failed.
    pub from: String,
    /// Its replacement (empty when none could be found).
    pub to: String,
    /// What failed.
    pub reason: String,
    /// Milliseconds after the stream started.
    pub at_ms: u64,
    /// Milliseconds from the fault to the first output byte from the replacement.
    pub recovery_ms: Option<u64>,
}

/// Segment flow in one direction, for `/status`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct FlowStatus {
    /// Segments relayed.
    pub segments: u64,
    /// Bytes relayed.
    pub bytes: u64,
    /// Video frames relayed (counted from the MPEG-TS packets).
    pub frames: u64,
    /// Frames per second over the last segments.
    pub fps: f64,
    /// Segments per second over the last segments.
    pub segments_per_second: f64,
}

/// What `/status` shows.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StreamStatus {
    /// Stream name.
    pub stream: String,
    /// Stream id.
    pub stream_id: String,
    /// The gateway's request id.
    pub request_id: String,
    /// Pipeline.
    pub pipeline: String,
    /// `starting`, `running`, `swapping`, `stopped` or `failed`.
    pub state: Phase,
    /// The serving orchestrator.
    pub orchestrator: Option<String>,
    /// The orchestrator's id of this stream (payments are booked on it).
    pub manifest_id: Option<String>,
    /// Unix milliseconds when the stream started.
    pub started_at_ms: u64,
    /// Milliseconds since it started.
    pub uptime_ms: u64,
    /// Why it stopped.
    pub stop_reason: Option<String>,
    /// Client → orchestrator.
    pub input: FlowStatus,
    /// Orchestrator → client.
    pub output: FlowStatus,
    /// Time from an input segment's first byte to the matching output segment's first byte,
    /// milliseconds: the last one and the average.
    pub latency_ms: Value,
    /// Orchestrator replacements.
    pub swaps: Vec<SwapRecord>,
    /// Payments to the serving orchestrators.
    pub payments: Value,
    /// Version of the current params (1 = the start call's).
    pub params_version: u64,
    /// The current params.
    pub params: Value,
    /// The orchestrator's last event.
    pub last_event: Option<Value>,
    /// Its last `status` event.
    pub last_status: Option<Value>,
    /// go-livepeer's `gateway_status`: `{"error": {"error_message", "error_time"}}` once the
    /// stream has failed, else `{}`.
    pub gateway_status: Value,
    /// go-livepeer's status document is the orchestrator's last `status` event itself
    /// (`inference_status`, `input_status`, `timestamp`, …): its members are repeated at the
    /// top level, so that clients written for go-livepeer find them, except where this
    /// document has a member of the same name (`state` stays the gateway's phase).
    #[serde(flatten)]
    pub reported: serde_json::Map<String, Value>,
}

/// The members of [`StreamStatus`] of its own, which an orchestrator's status event may not
/// shadow at the top level.
const OWN_MEMBERS: &[&str] = &[
    "stream",
    "stream_id",
    "request_id",
    "pipeline",
    "state",
    "orchestrator",
    "manifest_id",
    "started_at_ms",
    "uptime_ms",
    "stop_reason",
    "input",
    "output",
    "latency_ms",
    "swaps",
    "payments",
    "params_version",
    "params",
    "last_event",
    "last_status",
    "gateway_status",
];

/// The members of the orchestrator's last status event that go-livepeer clients read at the
/// top level, without those [`StreamStatus`] has of its own.
fn reported(last_status: Option<&Value>) -> serde_json::Map<String, Value> {
    let Some(Value::Object(event)) = last_status else { return serde_json::Map::new() };
    let foreign = |(k, _): &(&String, &Value)| !OWN_MEMBERS.contains(&k.as_str());
    event.iter().filter(foreign).map(|(k, v)| (k.clone(), v.clone())).collect()
}

#[derive(Debug, Default)]
struct Window {
    /// (when a segment ended, its frames), newest last.
    marks: VecDeque<(Instant, u64)>,
}

impl Window {
    fn push(&mut self, frames: u64) {
        self.marks.push_back((Instant::now(), frames));
        if self.marks.len() > 16 {
            self.marks.pop_front();
        }
    }

    fn rates(&self) -> (f64, f64) {
        let (Some(first), Some(last)) = (self.marks.front(), self.marks.back()) else {
            return (0.0, 0.0);
        };
        let span = last.0.duration_since(first.0).as_secs_f64();
        if self.marks.len() < 2 || span <= 0.0 {
            return (0.0, 0.0);
        }
        // Frames of the segments after the first mark, over the time they took.
        let frames: u64 = self.marks.iter().skip(1).map(|m| m.1).sum();
        let round = |x: f64| (x * 100.0).round() / 100.0;
        (round(frames as f64 / span), round((self.marks.len() - 1) as f64 / span))
    }
}

#[derive(Debug, Default)]
struct State {
    phase: Phase,
    orchestrator: Option<String>,
    manifest_id: Option<String>,
    stop_reason: Option<String>,
    swaps: Vec<SwapRecord>,
    last_event: Option<Value>,
    last_status: Option<Value>,
    /// When it failed, unix milliseconds.
    failed_at_ms: Option<u64>,
    params_version: u64,
    params: Value,
    input: Window,
    output: Window,
    /// First-byte instants of input segments whose output has not started.
    pending: VecDeque<Instant>,
    latency_last_ms: Option<f64>,
    latency_sum_ms: f64,
    latency_count: u64,
    /// When the current fault happened, until output resumes.
    fault_at: Option<Instant>,
    payments_sent: u64,
    payments_failed: u64,
    tickets: u64,
    ev_wei: livepeer_pm::Ratio,
    fee_wei: livepeer_pm::Ratio,
    /// The fees of the payments the orchestrator took (a customer is charged on them).
    fee_paid_wei: livepeer_pm::Ratio,
}

/// Counters updated on every chunk: atomics, so the relays take no lock per chunk.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) in_segments: AtomicU64,
    pub(crate) in_bytes: AtomicU64,
    pub(crate) in_frames: AtomicU64,
    pub(crate) out_segments: AtomicU64,
    pub(crate) out_bytes: AtomicU64,
    pub(crate) out_frames: AtomicU64,
    /// Milliseconds after the stream's start of the last input chunk, output chunk, event.
    pub(crate) last_in_ms: AtomicU64,
    pub(crate) last_out_ms: AtomicU64,
    pub(crate) last_event_ms: AtomicU64,
    /// When a whole input segment reached the orchestrator with no output since (0: not
    /// waiting); the output-stall watchdog counts from here.
    pub(crate) waiting_since_ms: AtomicU64,
}

/// One live stream.
#[derive(Debug)]
pub(crate) struct Stream {
    pub(crate) spec: StreamSpec,
    pub(crate) key: JobKey,
    pub(crate) counters: Counters,
    started: Instant,
    started_unix_ms: u64,
    state: Mutex<State>,
    params_tx: watch::Sender<u64>,
    /// Fires to stop the stream.
    pub(crate) stop: CancellationToken,
    /// Fires once it has stopped and released everything.
    done: CancellationToken,
    /// Its payment tasks still running (a key's last charge waits for them).
    pub(crate) payments_out: crate::keys::meter::Outstanding,
}

impl Stream {
    pub(crate) fn new(spec: StreamSpec, key: JobKey, params: Value) -> Self {
        let state = State { phase: Phase::Starting, params_version: 1, params, ..State::default() };
        Self {
            spec,
            key,
            counters: Counters::default(),
            started: Instant::now(),
            started_unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            state: Mutex::new(state),
            params_tx: watch::Sender::new(1),
            stop: CancellationToken::new(),
            done: CancellationToken::new(),
            payments_out: Default::default(),
        }
    }

    fn with_state<T>(&self, f: impl FnOnce(&mut State) -> T) -> Option<T> {
        self.state.lock().ok().map(|mut s| f(&mut s))
    }

    /// Milliseconds since the stream started: the clock of [`Counters`].
    pub(crate) fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    pub(crate) fn is_stopped(&self) -> bool {
        self.stop.is_cancelled()
    }

    /// Whether its first orchestrator is still being attached (its `/start` has not answered).
    pub(crate) fn is_starting(&self) -> bool {
        self.with_state(|s| s.phase == Phase::Starting).unwrap_or(false)
    }

    /// Whether a new `/start` presenting `presented` may replace this running stream, as
    /// go-livepeer replaces a stream started again: only its owner may, and only once it has
    /// started, so that at most one start of a name is ever in flight.
    pub(crate) fn replaceable_by(&self, presented: Credentials<'_>) -> bool {
        !self.is_starting() && self.spec.owner.check(presented).is_ok()
    }

    /// Asks the stream to stop; the first reason given is kept.
    pub(crate) fn stop(&self, reason: &str) {
        self.with_state(|s| {
            s.stop_reason.get_or_insert_with(|| reason.to_owned());
        });
        self.stop.cancel();
    }

    pub(crate) async fn wait_stopped(&self, limit: Duration) {
        let _ = tokio::time::timeout(limit, self.done.cancelled()).await;
    }

    /// Whether the stream has stopped and released everything.
    pub(crate) fn is_done(&self) -> bool {
        self.done.is_cancelled()
    }

    /// The stream has stopped and released everything: [`Stream::wait_stopped`] returns.
    pub(crate) fn mark_done(&self) {
        self.done.cancel();
    }

    pub(crate) fn set_phase(&self, phase: Phase) {
        // The moment of a failure is shown as go-livepeer's `gateway_status.error_time`.
        let at = self.started_unix_ms + self.now_ms();
        self.with_state(|s| {
            s.phase = phase;
            if phase == Phase::Failed {
                s.failed_at_ms.get_or_insert(at);
            }
        });
    }

    /// An orchestrator replacement, kept for `/status`.
    pub(crate) fn push_swap(&self, record: SwapRecord) {
        self.with_state(|s| s.swaps.push(record));
    }

    /// The serving orchestrator failed at `fault_at`; the recovery time of the next swap
    /// record counts from there.
    pub(crate) fn swapping(&self, fault_at: Instant) {
        self.with_state(|s| {
            s.phase = Phase::Swapping;
            s.fault_at = Some(fault_at);
        });
    }

    /// Replaces the params; returns their new version.
    pub(crate) fn set_params(&self, params: Value) -> u64 {
        let version = self
            .with_state(|s| {
                s.params = params;
                s.params_version += 1;
                s.params_version
            })
            .unwrap_or(0);
        self.params_tx.send_replace(version);
        version
    }

    /// The current params and their version.
    pub(crate) fn params(&self) -> (u64, Value) {
        self.with_state(|s| (s.params_version, s.params.clone())).unwrap_or((0, Value::Null))
    }

    pub(crate) fn params_watch(&self) -> watch::Receiver<u64> {
        self.params_tx.subscribe()
    }

    /// An input segment's first byte went to the orchestrator.
    pub(crate) fn input_started(&self) {
        self.with_state(|s| {
            s.pending.push_back(Instant::now());
            if s.pending.len() > 32 {
                s.pending.pop_front();
            }
        });
    }

    pub(crate) fn input_done(&self, frames: u64) {
        self.counters.in_segments.fetch_add(1, Relaxed);
        self.with_state(|s| s.input.push(frames));
    }

    /// An output segment's first byte arrived: latency, and recovery after a fault.
    pub(crate) fn output_started(&self) {
        let now = Instant::now();
        self.with_state(|s| {
            if let Some(started) = s.pending.pop_front() {
                let ms = now.duration_since(started).as_secs_f64() * 1000.0;
                s.latency_last_ms = Some(ms);
                s.latency_sum_ms += ms;
                s.latency_count += 1;
            }
            if let Some(fault) = s.fault_at.take()
                && let Some(swap) = s.swaps.last_mut()
            {
                swap.recovery_ms = Some(now.duration_since(fault).as_millis() as u64);
            }
        });
    }

    pub(crate) fn output_done(&self, frames: u64) {
        self.counters.out_segments.fetch_add(1, Relaxed);
        self.with_state(|s| s.output.push(frames));
    }

    /// An event from the orchestrator, `raw_len` bytes long: kept to show as
    /// [`crate::bounded_json::kept`] keeps it.
    pub(crate) fn record_event(&self, event: &Value, raw_len: usize) {
        self.counters.last_event_ms.store(self.now_ms(), Relaxed);
        let kept = crate::bounded_json::kept(event, raw_len);
        self.with_state(|s| {
            if event.get("type").and_then(Value::as_str) == Some("status") {
                let mut status = kept.clone();
                coalesce_status(&mut status, s.last_status.as_ref());
                s.last_status = Some(status);
            }
            s.last_event = Some(kept);
        });
    }

    /// A payment to the serving orchestrator.
    pub(crate) fn record_payment(
        &self,
        ok: bool,
        tickets: u32,
        ev: &livepeer_pm::Ratio,
        fee: &livepeer_pm::Ratio,
    ) {
        self.with_state(|s| {
            if ok {
                s.payments_sent += 1;
                s.fee_paid_wei = s.fee_paid_wei.checked_add(fee).unwrap_or(s.fee_paid_wei);
            } else {
                s.payments_failed += 1;
            }
            s.tickets += u64::from(tickets);
            if let Ok(sum) = s.ev_wei.checked_add(ev) {
                s.ev_wei = sum;
            }
            if let Ok(sum) = s.fee_wei.checked_add(fee) {
                s.fee_wei = sum;
            }
        });
    }

    /// The fees of the payments the stream's orchestrators took, wei.
    pub(crate) fn fee_paid(&self) -> livepeer_pm::Ratio {
        self.with_state(|s| s.fee_paid_wei).unwrap_or(livepeer_pm::Ratio::ZERO)
    }

    /// An orchestrator now serves the stream.
    pub(crate) fn attached(&self, orchestrator: &str, manifest_id: &str) {
        self.with_state(|s| {
            s.phase = Phase::Running;
            s.orchestrator = Some(orchestrator.to_owned());
            s.manifest_id = Some(manifest_id.to_owned());
            // Latency pairs input and output segments of one orchestrator only.
            s.pending.clear();
        });
    }

    /// The status document.
    pub(crate) fn status(&self) -> StreamStatus {
        let c = &self.counters;
        let s = self.state.lock();
        let s = match &s {
            Ok(s) => s,
            Err(_) => return self.empty_status(),
        };
        let (in_fps, in_sps) = s.input.rates();
        let (out_fps, out_sps) = s.output.rates();
        let average = (s.latency_count > 0).then(|| s.latency_sum_ms / s.latency_count as f64);
        let round = |x: Option<f64>| x.map(|v| (v * 100.0).round() / 100.0);
        StreamStatus {
            stream: self.spec.name.clone(),
            stream_id: self.spec.id.clone(),
            request_id: self.spec.request_id.clone(),
            pipeline: self.spec.pipeline.clone(),
            state: s.phase,
            orchestrator: s.orchestrator.clone(),
            manifest_id: s.manifest_id.clone(),
            started_at_ms: self.started_unix_ms,
            uptime_ms: self.now_ms(),
            stop_reason: s.stop_reason.clone(),
            input: FlowStatus {
                segments: c.in_segments.load(Relaxed),
                bytes: c.in_bytes.load(Relaxed),
                frames: c.in_frames.load(Relaxed),
                fps: in_fps,
                segments_per_second: in_sps,
            },
            output: FlowStatus {
                segments: c.out_segments.load(Relaxed),
                bytes: c.out_bytes.load(Relaxed),
                frames: c.out_frames.load(Relaxed),
                fps: out_fps,
                segments_per_second: out_sps,
            },
            latency_ms: json!({ "last": round(s.latency_last_ms), "average": round(average) }),
            swaps: s.swaps.clone(),
            payments: json!({
                "sent": s.payments_sent,
                "failed": s.payments_failed,
                "tickets": s.tickets,
                "ev_wei": s.ev_wei.to_decimal_string(0),
                "fee_wei": s.fee_wei.to_decimal_string(0),
            }),
            params_version: s.params_version,
            params: s.params.clone(),
            last_event: s.last_event.clone(),
            last_status: s.last_status.clone(),
            gateway_status: gateway_status(s),
            reported: reported(s.last_status.as_ref()),
        }
    }

    fn empty_status(&self) -> StreamStatus {
        StreamStatus {
            stream: self.spec.name.clone(),
            stream_id: self.spec.id.clone(),
            request_id: self.spec.request_id.clone(),
            pipeline: self.spec.pipeline.clone(),
            state: Phase::Unknown,
            orchestrator: None,
            manifest_id: None,
            started_at_ms: self.started_unix_ms,
            uptime_ms: self.now_ms(),
            stop_reason: None,
            input: FlowStatus::default(),
            output: FlowStatus::default(),
            latency_ms: Value::Null,
            swaps: Vec::new(),
            payments: Value::Null,
            params_version: 0,
            params: Value::Null,
            last_event: None,
            last_status: None,
            gateway_status: json!({}),
            reported: serde_json::Map::new(),
        }
    }
}

/// go-livepeer's `gateway_status` of a stream in `s`.
fn gateway_status(s: &State) -> Value {
    match s.failed_at_ms {
        Some(at) => json!({ "error": {
            "error_message": s.stop_reason.clone().unwrap_or_default(),
            "error_time": at,
        }}),
        None => json!({}),
    }
}

/// ai-runner sends a status's long `last_restart_logs` and `last_params` once and then
/// leaves them out (or null): they are carried over from the status before, as go-livepeer
/// does for its status route (server/ai_live_video.go).
fn coalesce_status(status: &mut Value, before: Option<&Value>) {
    let before = before.and_then(|b| b.get("inference_status"));
    let Some(Value::Object(now)) = status.get_mut("inference_status") else { return };
    for key in ["last_restart_logs", "last_params"] {
        if now.get(key).is_none_or(Value::is_null)
            && let Some(kept) = before.and_then(|b| b.get(key))
        {
            now.insert(key.to_owned(), kept.clone());
        }
    }
}

/// The four client channels of stream `name`.
pub(crate) fn channel_names(name: &str) -> [(String, &'static str); 4] {
    [
        (name.to_owned(), MEDIA_MIME),
        (format!("{name}-out"), MEDIA_MIME),
        (format!("{name}-control"), JSON_MIME),
        (format!("{name}-events"), JSON_MIME),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_show_as_the_status_strings_clients_read() {
        let shown = [
            (Phase::Unknown, "unknown"),
            (Phase::Starting, "starting"),
            (Phase::Running, "running"),
            (Phase::Swapping, "swapping"),
            (Phase::Stopped, "stopped"),
            (Phase::Failed, "failed"),
        ];
        for (phase, text) in shown {
            assert_eq!(serde_json::to_value(phase).unwrap(), json!(text));
        }
    }

    #[test]
    fn a_status_without_its_long_members_keeps_the_last_ones_sent() {
        let first = json!({"type": "status", "inference_status": {
            "fps": 20, "last_params": {"prompt": "a"}, "last_restart_logs": ["boot"],
        }});
        let mut next = json!({"type": "status", "inference_status": {
            "fps": 24, "last_params": null,
        }});
        coalesce_status(&mut next, Some(&first));
        let want =
            json!({"fps": 24, "last_params": {"prompt": "a"}, "last_restart_logs": ["boot"]});
        assert_eq!(next["inference_status"], want);
        // A value sent anew replaces the old one.
        let mut third = json!({"inference_status": {"last_params": {"prompt": "b"}}});
        coalesce_status(&mut third, Some(&next));
        assert_eq!(third["inference_status"]["last_params"], json!({"prompt": "b"}));
    }

    #[test]
    fn the_runner_s_status_members_never_shadow_the_gateway_s() {
        let event =
            json!({"type": "status", "state": "ONLINE", "stream_id": "x", "input_status": {}});
        let top = reported(Some(&event));
        assert_eq!(top.get("state"), None);
        assert_eq!(top.get("stream_id"), None);
        assert_eq!(top.get("input_status"), Some(&json!({})));
        assert!(reported(Some(&json!("not an object"))).is_empty());
    }
}
