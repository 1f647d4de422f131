//! What a BYOC stream is, shared by the stream registry (`stream`), the orchestrator calls
//! (`stream_orch`) and the relays (`stream_relay`): kept apart so that those three import it
//! and never each other in a circle.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use livepeer_trickle::{ClientConfig, Hub};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::ByocState;
use super::request::JobRequest;
use crate::live::Owner;
use crate::task::Tasks;

/// Most orchestrator replacements within [`SWAP_WINDOW`]; one more ends the stream
/// (go-livepeer: more than 2 swaps within a minute).
pub(crate) const MAX_SWAPS: u32 = 2;

/// Most data event readers (`GET …/data`) per stream at once.
pub(crate) const MAX_DATA_READERS: usize = 8;

/// Longest a client's `/stop` waits for the orchestrator to be told and the channels closed,
/// and a start waits for a background stop of its id at the same orchestrator. That is more
/// than a stop takes with the default settings (its job token's fetch, then its call's 10 s
/// and 5 s of grace); a remote signer's signing or a long `--byoc-token-timeout` can make a
/// stop longer, and a start that has waited this long moves on to the next orchestrator.
pub(crate) const STOP_WAIT: Duration = Duration::from_secs(20);

/// See [`MAX_SWAPS`].
pub(crate) const SWAP_WINDOW: Duration = Duration::from_secs(60);

/// The enable flags of a stream's `parameters` (go-livepeer `JobParameters`).
#[derive(Debug, Clone, Copy, Default, Deserialize, serde::Serialize)]
pub struct Flags {
    /// The client publishes video into the stream.
    #[serde(default)]
    pub enable_video_ingress: bool,
    /// The stream's output video is read by the client.
    #[serde(default)]
    pub enable_video_egress: bool,
    /// The worker writes data lines, read as events at `…/data`.
    #[serde(default)]
    pub enable_data_output: bool,
}

/// Where a stream is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// The first orchestrator is being attached.
    Starting,
    /// An orchestrator serves it.
    Running,
    /// Its orchestrator failed and another is being attached.
    Swapping,
    /// It ended.
    Stopped,
}

/// One orchestrator replacement.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Swap {
    /// The orchestrator that failed.
    pub from: String,
    /// Its replacement (empty when none started).
    pub to: String,
    /// What failed.
    pub reason: String,
}

#[derive(Debug)]
pub(crate) struct State {
    pub(crate) phase: Phase,
    /// Discovery URL and service address of the serving orchestrator.
    pub(crate) orchestrator: Option<(String, String)>,
    /// The orchestrator a start call went to last (discovery URL).
    pub(crate) attempting: Option<String>,
    pub(crate) swaps: Vec<Swap>,
    pub(crate) stop_reason: Option<String>,
    pub(crate) params: Value,
    pub(crate) last_event: Option<Value>,
    pub(crate) payments_sent: u64,
    pub(crate) payments_failed: u64,
    pub(crate) tickets: u64,
    pub(crate) ev_wei: livepeer_pm::Ratio,
    /// The expected value of the tickets its starts carried, on each orchestrator that came to
    /// serve it (wei); `tickets` and `ev_wei` count the payments every interval only.
    pub(crate) start_ev_wei: livepeer_pm::Ratio,
}

/// Segment counters, bumped by the relays.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) in_segments: AtomicU64,
    pub(crate) out_segments: AtomicU64,
    pub(crate) data_segments: AtomicU64,
    pub(crate) events: AtomicU64,
    /// Milliseconds after the start when an input segment reached the orchestrator with no
    /// output segment since (0: not waiting); the output watchdog counts from here.
    pub(crate) waiting_since_ms: AtomicU64,
}

/// One stream.
#[derive(Debug)]
pub(crate) struct Stream {
    pub(crate) id: String,
    /// The base of its client channel names: the id and a random suffix.
    pub(crate) channel: String,
    pub(crate) job: JobRequest,
    pub(crate) flags: Flags,
    pub(crate) owner: Owner,
    pub(crate) state: Mutex<State>,
    pub(crate) counters: Counters,
    pub(crate) started: Instant,
    pub(crate) stop: CancellationToken,
    /// Fires once the stream has released its channels and id.
    pub(crate) done: CancellationToken,
    /// Its payment tasks still running (a key's last charge waits for them).
    pub(crate) payments_out: crate::keys::meter::Outstanding,
    pub(crate) data_readers: Arc<Semaphore>,
}

impl Stream {
    pub(crate) fn with_state<T>(&self, f: impl FnOnce(&mut State) -> T) -> Option<T> {
        self.state.lock().ok().map(|mut s| f(&mut s))
    }

    /// Milliseconds since the stream started, at least 1.
    pub(crate) fn now_ms(&self) -> u64 {
        (self.started.elapsed().as_millis() as u64).max(1)
    }

    /// Stops the stream for `reason` (the first reason sticks).
    pub(crate) fn end(&self, reason: &str) {
        self.with_state(|s| {
            s.stop_reason.get_or_insert_with(|| reason.to_owned());
        });
        self.stop.cancel();
    }

    /// The client channels: (name, mime, wanted).
    pub(crate) fn channels(&self) -> [(String, &'static str, bool); 5] {
        let c = &self.channel;
        let f = self.flags;
        [
            (c.clone(), "video/MP2T", f.enable_video_ingress),
            (format!("{c}-out"), "video/MP2T", f.enable_video_egress),
            (format!("{c}-data"), "application/jsonl", f.enable_data_output),
            (format!("{c}-events"), "application/json", true),
            (format!("{c}-control"), "application/json", true),
        ]
    }

    /// The status document.
    pub(crate) fn status(&self) -> Value {
        let c = &self.counters;
        let s = self.state.lock();
        let Ok(s) = s.as_deref() else { return json!({ "stream_id": self.id }) };
        json!({
            "stream_id": self.id,
            "capability": self.job.capability,
            "state": s.phase,
            "orchestrator": s.orchestrator.as_ref().map(|o| &o.0),
            "orchestrator_url": s.orchestrator.as_ref().map(|o| &o.1),
            "uptime_ms": self.started.elapsed().as_millis() as u64,
            "enable_video_ingress": self.flags.enable_video_ingress,
            "enable_video_egress": self.flags.enable_video_egress,
            "enable_data_output": self.flags.enable_data_output,
            "input_segments": c.in_segments.load(Relaxed),
            "output_segments": c.out_segments.load(Relaxed),
            "data_segments": c.data_segments.load(Relaxed),
            "events": c.events.load(Relaxed),
            "params": s.params,
            "last_event": s.last_event,
            "swaps": s.swaps,
            "stop_reason": s.stop_reason,
            "payments": {
                "sent": s.payments_sent,
                "failed": s.payments_failed,
                "tickets": s.tickets,
                "ev_wei": s.ev_wei.to_decimal_string(0),
            },
        })
    }
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) byoc: ByocState,
    pub(crate) hub: Hub,
    /// Trickle clients toward orchestrators.
    pub(crate) trickle: reqwest::Client,
    pub(crate) trickle_config: ClientConfig,
    pub(crate) public_url: Option<String>,
    pub(crate) table: Mutex<HashMap<String, Arc<Stream>>>,
    pub(crate) tasks: Tasks,
    /// Stops sent in the background and not yet over, by orchestrator and stream id, each
    /// with how many are in flight. The id is the client's: a start of the same id on the
    /// same orchestrator waits for them ([`Inner::stops_over`]), or a late stop would end the
    /// new stream there. Bounded by the stops in flight, each bounded in time.
    pub(crate) stopping: Mutex<HashMap<(String, String), watch::Sender<usize>>>,
}

/// One background stop in flight, counted in [`Inner::stopping`] until dropped (its task
/// ended, or was cancelled at shutdown).
pub(crate) struct PendingStop {
    inner: Arc<Inner>,
    key: (String, String),
}

impl Drop for PendingStop {
    fn drop(&mut self) {
        let mut stopping = self.inner.stopping.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(count) = stopping.get(&self.key) else { return };
        count.send_modify(|n| *n = n.saturating_sub(1));
        if *count.borrow() == 0 {
            stopping.remove(&self.key);
        }
    }
}

impl Inner {
    /// Counts a stop of stream `id` at `orch` that is about to be sent in the background,
    /// until the returned guard is dropped.
    pub(crate) fn stop_pending(self: &Arc<Self>, orch: &str, id: &str) -> PendingStop {
        let key = (orch.to_owned(), id.to_owned());
        let mut stopping = self.stopping.lock().unwrap_or_else(PoisonError::into_inner);
        let count = stopping.entry(key.clone()).or_insert_with(|| watch::channel(0).0);
        count.send_modify(|n| *n += 1);
        PendingStop { inner: self.clone(), key }
    }

    /// Waits, at most `limit`, until no background stop of stream `id` at `orch` is in
    /// flight; whether none is.
    pub(crate) async fn stops_over(&self, orch: &str, id: &str, limit: Duration) -> bool {
        let key = (orch.to_owned(), id.to_owned());
        let mut count = {
            let stopping = self.stopping.lock().unwrap_or_else(PoisonError::into_inner);
            match stopping.get(&key) {
                Some(count) => count.subscribe(),
                None => return true,
            }
        };
        // A closed channel is an entry removed: its stops are over.
        let over = tokio::time::timeout(limit, count.wait_for(|n| *n == 0)).await;
        over.is_ok()
    }

    /// Closes the stream's channels and forgets it.
    pub(crate) fn release(&self, stream: &Stream) {
        for (name, _, _) in stream.channels() {
            self.hub.close(&name);
        }
        if let Ok(mut table) = self.table.lock() {
            table.remove(&stream.id);
        }
        stream.done.cancel();
    }
}

/// The client BYOC streams reach their orchestrators' channels with, with `config`'s settings
/// and then `more` (a stream's pinned names): HTTP/1.1, marked as a gateway's (so that no
/// gateway serves its channels to another), never following a redirect.
pub(crate) fn trickle_client(
    config: &ClientConfig,
    more: impl FnOnce(reqwest::ClientBuilder) -> reqwest::ClientBuilder,
) -> Result<reqwest::Client, String> {
    let builder = reqwest::Client::builder()
        .http1_only()
        .default_headers(crate::orchestrator::http::hop_headers())
        .danger_accept_invalid_certs(config.accept_invalid_certs)
        .connect_timeout(config.connect_timeout)
        // The orchestrator's channel URLs, never where a redirect would take them.
        .redirect(reqwest::redirect::Policy::none())
        .tcp_nodelay(true);
    more(builder).build().map_err(|e| e.to_string())
}
