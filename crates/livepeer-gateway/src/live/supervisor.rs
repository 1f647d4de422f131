//! The life of a live stream: [`open`] creates its client channels and attaches a first
//! orchestrator, then the supervisor runs sessions until the stream ends, replacing a failed
//! orchestrator within the swap budget ([`SwapBudget`], `--live-max-swaps` per
//! `--live-swap-window`), and finally closes the client channels.

use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use livepeer_trickle::{Subscribe, read_segment};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::attach::attach;
use super::context::{Inner, LiveState};
use super::error::LiveError;
use super::owner::Credentials;
use super::relay::{self, Outcome};
use super::session::Session;
use super::stream::{Phase, Stream, StreamSpec, SwapRecord, channel_names};
use crate::orchestrator::JobKey;

/// Longest a start waits for the stream it follows (a stopped or replaced stream of its name)
/// to release its orchestrator: past it, the start goes on regardless.
const RELEASE_WAIT: Duration = Duration::from_secs(5);

/// Largest params message the client may publish into its control channel (as `/update`).
pub(crate) const MAX_CONTROL_BODY: usize = 64 * 1024;

/// At most `max` orchestrator replacements within any `window`: a stream whose orchestrators
/// keep failing ends instead of working through the whole pool.
#[derive(Debug)]
pub(crate) struct SwapBudget {
    max: u32,
    window: Duration,
    /// When the swaps still inside the window happened, oldest first.
    recent: VecDeque<Instant>,
}

impl SwapBudget {
    pub(crate) fn new(max: u32, window: Duration) -> Self {
        Self { max, window, recent: VecDeque::new() }
    }

    /// Spends one swap at `now`; `false` when the window's swaps are used up (nothing is
    /// spent then).
    pub(crate) fn try_spend(&mut self, now: Instant) -> bool {
        while self.recent.front().is_some_and(|t| now.duration_since(*t) > self.window) {
            self.recent.pop_front();
        }
        if self.recent.len() as u32 >= self.max {
            return false;
        }
        self.recent.push_back(now);
        true
    }
}

/// Starts a stream: reserves its name (refused while a stream of that name runs, unless
/// `presented` are its owner's credentials: then that stream is stopped and this one waits a
/// while for it to release its orchestrator and channels), creates the client channels,
/// attaches the first orchestrator (so the answer can name it) and starts the supervisor. A
/// start that fails, or whose caller goes away before it is done, releases everything it took.
pub(crate) async fn open(
    live: &LiveState,
    spec: StreamSpec,
    params: Value,
    presented: Credentials<'_>,
) -> Result<Arc<Stream>, LiveError> {
    let inner = &live.inner;
    let Some(key) = JobKey::ai("live-video-to-video", &spec.pipeline) else {
        return Err(LiveError::Internal("live-video-to-video has no capability id".into()));
    };
    if let Some(old) = live.named(&spec.name)
        && old.is_stopped()
        && !old.is_done()
    {
        // A stream of the name is ending: let it release its orchestrator first.
        old.wait_stopped(RELEASE_WAIT).await;
    }
    let stream = Arc::new(Stream::new(spec, key, params));
    let replaced = inner.register(stream.clone(), presented)?;
    let mut opening = Opening { inner, stream: stream.clone(), started: false, done: false };
    if let Some(old) = replaced {
        tracing::info!(
            stream = old.spec.name,
            request_id = old.spec.request_id,
            "live stream replaced by its owner's new start"
        );
        // Its lease, trickle channels and payment session go before this stream takes its own.
        old.wait_stopped(RELEASE_WAIT).await;
    }
    for (name, mime) in channel_names(&stream.spec.channel) {
        if let Err(e) = inner.hub.create(&name, mime) {
            opening.fail("channels could not be created");
            // Not the channel's name: its random part guards the stream.
            return Err(LiveError::ChannelUnavailable(format!(
                "cannot create the stream's channels: {e}"
            )));
        }
    }
    inner.metrics.live_stream_started(&stream.spec.pipeline);
    opening.started = true;
    let session = match attach(inner, &stream, &[]).await {
        Ok(session) => session,
        Err(e) => {
            opening.fail(&e.message);
            return Err(e.into());
        }
    };
    opening.done = true;
    stream.attached(&session.orchestrator, &session.manifest_id);
    tracing::info!(
        stream = stream.spec.name,
        request_id = stream.spec.request_id,
        pipeline = stream.spec.pipeline,
        orchestrator = session.orchestrator,
        "live stream started"
    );
    inner.spawn("live-control-in", client_control(inner.clone(), stream.clone()));
    inner.spawn("live-stream", supervise(inner.clone(), stream.clone(), session));
    Ok(stream)
}

/// A stream being opened: until it is handed to its supervisor, ending it (a failure, or the
/// start's future dropped when its client disconnects) stops it, closes its channels and
/// frees its name, so no reservation outlives its start.
struct Opening<'a> {
    inner: &'a Arc<Inner>,
    stream: Arc<Stream>,
    /// Its channels exist and it is counted as started.
    started: bool,
    /// Handed to the supervisor, or already released.
    done: bool,
}

impl Opening<'_> {
    fn fail(&mut self, reason: &str) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let (inner, stream) = (self.inner, &self.stream);
        stream.stop(reason);
        if self.started {
            stream.set_phase(Phase::Failed);
            inner.metrics.live_stream_ended(&stream.spec.pipeline);
        }
        close_client_channels(inner, stream);
        inner.forget_later(stream);
        stream.mark_done();
    }
}

impl Drop for Opening<'_> {
    fn drop(&mut self) {
        self.fail("the client went away before the stream started");
    }
}

/// Params the client publishes into its own control channel are updates too.
///
/// A client may never write there (it may send its updates to `/update`, or none), so the
/// channel is touched while the stream runs: the hub's sweep of idle channels would close it
/// after its idle limit, and a client's later message would then be read by nobody.
async fn client_control(inner: Arc<Inner>, stream: Arc<Stream>) {
    let name = format!("{}-control", stream.spec.channel);
    let mut control = inner.hub.subscriber(&name, 0);
    let every = (inner.hub.config().idle_timeout / 3).max(Duration::from_millis(10));
    let mut keep = tokio::time::interval(every);
    loop {
        let next = tokio::select! {
            _ = stream.stop.cancelled() => return,
            _ = keep.tick() => {
                inner.hub.touch(&name);
                continue;
            }
            next = control.segment() => next,
        };
        let Ok(Some(mut reader)) = next else { return };
        let Ok(data) = read_segment(&mut reader, MAX_CONTROL_BODY).await else { continue };
        match crate::bounded_json::from_slice(&data, crate::bounded_json::STREAM_VALUES) {
            Ok(params @ Value::Object(_)) if params != json!({"keep": "alive"}) => {
                stream.set_params(params);
            }
            _ => tracing::debug!(stream = stream.spec.name, "ignored a control message"),
        }
    }
}

/// What a supervisor carries from one session to the next.
struct Swaps {
    budget: SwapBudget,
    /// Orchestrators that failed this stream: never attached again.
    failed: Vec<String>,
}

/// Runs sessions until the stream ends, swapping orchestrators on faults.
async fn supervise(inner: Arc<Inner>, stream: Arc<Stream>, first: Session) {
    let mut session = first;
    let mut resume = 0u64;
    let mut swaps = Swaps {
        budget: SwapBudget::new(inner.config.max_swaps, inner.config.swap_window),
        failed: Vec::new(),
    };
    let final_phase = loop {
        let (outcome, next) = relay::run(&inner, &stream, &session, resume).await;
        resume = next;
        let Session { lease, orchestrator, .. } = session.finish(&inner);
        match outcome {
            Outcome::Ended(reason) => {
                stream.stop(&reason);
                // A stream's whole duration is not a latency sample: release unreported.
                drop(lease);
                break Phase::Stopped;
            }
            Outcome::Fault(failure, reason) => {
                tracing::warn!(
                    stream = stream.spec.name,
                    orchestrator,
                    reason,
                    "live orchestrator failed; swapping"
                );
                // Ejected when penalised, which every mid-stream failure is but the gateway's
                // own want of descriptors (then the swap meets it too, and the budget ends it).
                failure.verdict().end_lease(lease, &reason);
                inner.metrics.live_swap(&reason);
                match swap(&inner, &stream, &mut swaps, orchestrator, reason).await {
                    ControlFlow::Continue(next) => session = next,
                    ControlFlow::Break(phase) => break phase,
                }
            }
        }
    };
    stream.set_phase(final_phase);
    close_client_channels(&inner, &stream);
    inner.metrics.live_stream_ended(&stream.spec.pipeline);
    tracing::info!(
        stream = stream.spec.name,
        request_id = stream.spec.request_id,
        reason = stream.status().stop_reason.unwrap_or_default(),
        "live stream ended"
    );
    // Retired before it is done, so that whoever waits for it to stop finds the table bounded.
    inner.forget_later(&stream);
    stream.mark_done();
}

/// Replaces the orchestrator that failed with `reason`: the next session, or the phase the
/// stream ends in when the budget is spent or no replacement starts.
async fn swap(
    inner: &Arc<Inner>,
    stream: &Stream,
    swaps: &mut Swaps,
    failed: String,
    reason: String,
) -> ControlFlow<Phase, Session> {
    swaps.failed.push(failed.clone());
    let fault_at = Instant::now();
    let mut record = SwapRecord {
        from: failed,
        to: String::new(),
        reason,
        at_ms: stream.now_ms(),
        recovery_ms: None,
    };
    if !swaps.budget.try_spend(fault_at) {
        let reason = record.reason.clone();
        stream.push_swap(record);
        stream.stop(&format!("too many orchestrator failures; last: {reason}"));
        return ControlFlow::Break(Phase::Failed);
    }
    stream.swapping(fault_at);
    let exclude: Vec<&str> = swaps.failed.iter().map(String::as_str).collect();
    match attach(inner, stream, &exclude).await {
        Ok(next) => {
            record.to = next.orchestrator.clone();
            stream.push_swap(record);
            stream.attached(&next.orchestrator, &next.manifest_id);
            ControlFlow::Continue(next)
        }
        Err(e) => {
            stream.push_swap(record);
            stream.stop(&format!("no replacement orchestrator: {}", e.message));
            ControlFlow::Break(Phase::Failed)
        }
    }
}

/// Closes the client channels: subscribers see the end of the stream.
fn close_client_channels(inner: &Inner, stream: &Stream) {
    for (name, _) in channel_names(&stream.spec.channel) {
        inner.hub.close(&name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(180);

    #[tokio::test(start_paused = true)]
    async fn the_budget_allows_max_swaps_per_window() {
        let mut budget = SwapBudget::new(3, WINDOW);
        for _ in 0..3 {
            assert!(budget.try_spend(Instant::now()));
            tokio::time::advance(Duration::from_secs(10)).await;
        }
        assert!(!budget.try_spend(Instant::now()), "a fourth swap within the window");
        // A refused swap spends nothing: the window still starts at the first swap.
        tokio::time::advance(WINDOW - Duration::from_secs(30)).await;
        assert!(!budget.try_spend(Instant::now()), "the first swap is exactly a window old");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(budget.try_spend(Instant::now()), "the first swap left the window");
        assert!(!budget.try_spend(Instant::now()), "the second is still inside it");
    }

    #[tokio::test(start_paused = true)]
    async fn swaps_spread_out_are_never_refused() {
        let mut budget = SwapBudget::new(2, WINDOW);
        for _ in 0..10 {
            assert!(budget.try_spend(Instant::now()));
            tokio::time::advance(WINDOW / 2 + Duration::from_millis(1)).await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_zero_budget_refuses_the_first_swap() {
        let mut budget = SwapBudget::new(0, WINDOW);
        assert!(!budget.try_spend(Instant::now()));
        tokio::time::advance(WINDOW * 2).await;
        assert!(!budget.try_spend(Instant::now()));
    }
}
