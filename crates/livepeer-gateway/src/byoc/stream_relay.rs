//! A BYOC stream's supervisor and relays: the client's channels on this gateway ↔ the serving
//! orchestrator's (video in, video out, data, events, control with keepalives), its payments
//! every `--byoc-payment-interval`, and the swap to another orchestrator when it fails (stop
//! sent to the failed one, a fresh start elsewhere, the client's channels unchanged), within
//! the swap budget (`live::SwapBudget`, as live video spends it).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use bytes::Bytes;
use livepeer_trickle::{
    CopyError, HttpPublisher, HttpSubscriber, OnCut, ReadSegment, Subscribe, TrickleError,
    copy_segment, publish_segment, read_segment,
};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::stream_orch::{self, Session};
use super::stream_state::{Inner, MAX_DATA_READERS, MAX_SWAPS, Phase, SWAP_WINDOW, Stream, Swap};
use crate::live::SwapBudget;

/// Largest event, data or control segment relayed.
const MAX_MESSAGE: usize = 1 << 20;
/// How often the orchestrator's control channel carries a keepalive (go-livepeer: 10 s).
const KEEPALIVE: Duration = Duration::from_secs(10);
/// Longest a segment write toward the orchestrator may stall.
const WRITE_LIMIT: Duration = Duration::from_secs(30);
/// An orchestrator whose output stalls this long while input reached it is replaced
/// (go-livepeer `-liveOutSegmentTimeout`: 30 s); also how long output is awaited after the
/// client closed its input.
const OUT_TIMEOUT: Duration = Duration::from_secs(30);
/// Why a stream ends when its client closes the input channel.
const INPUT_CLOSED: &str = "the client closed its input";

/// How a session ended.
enum Outcome {
    /// The stream is over.
    Ended(String),
    /// The orchestrator failed: swap.
    Fault(String),
    /// The gateway could not open a connection to one of the orchestrator's channels, for
    /// want of its own descriptors or memory: swap, penalising nobody (as live streams do).
    Shortage(String),
}

/// Hands the stream, served by `first`, to its supervisor.
pub(crate) fn spawn(inner: Arc<Inner>, stream: Arc<Stream>, first: Session) {
    let tasks = inner.tasks.clone();
    tasks.spawn("byoc-stream", move |_| supervise(inner, stream, first));
}

async fn supervise(inner: Arc<Inner>, stream: Arc<Stream>, first: Session) {
    let mut session = first;
    let mut budget = SwapBudget::new(MAX_SWAPS, SWAP_WINDOW);
    let mut failed: Vec<String> = Vec::new();
    let progress = Arc::new(AtomicU64::new(0));
    tracing::info!(stream = stream.id, orchestrator = session.orchestrator, "BYOC stream started");
    loop {
        let outcome = run(&inner, &stream, &session, &progress).await;
        let reason = match &outcome {
            Outcome::Ended(r) | Outcome::Fault(r) | Outcome::Shortage(r) => r.clone(),
        };
        stream_orch::stop(&inner, &stream, &session.orchestrator, &reason).await;
        let (reason, theirs) = match outcome {
            Outcome::Fault(reason) => (reason, true),
            Outcome::Shortage(reason) => (reason, false),
            Outcome::Ended(_) => {
                stream.end(&reason);
                drop(session.lease);
                break;
            }
        };
        tracing::warn!(
            stream = stream.id,
            orchestrator = session.orchestrator,
            reason,
            "BYOC orchestrator failed; swapping"
        );
        failed.push(session.lease_url());
        if theirs {
            session.lease.failed_job(reason.clone());
        }
        let mut swap = Swap { from: session.orchestrator.clone(), to: String::new(), reason };
        if !budget.try_spend(tokio::time::Instant::now()) {
            let why = format!("too many orchestrator failures; last: {}", swap.reason);
            stream.with_state(|s| s.swaps.push(swap));
            stream.end(&why);
            break;
        }
        stream.with_state(|s| {
            s.phase = Phase::Swapping;
            s.orchestrator = None;
        });
        match stream_orch::attach(&inner, &stream, &failed).await {
            Ok(next) => {
                swap.to = next.orchestrator.clone();
                stream.with_state(|s| s.swaps.push(swap));
                session = next;
            }
            Err(e) => {
                stream.with_state(|s| s.swaps.push(swap));
                stream.end(&format!("no replacement orchestrator: {}", e.message()));
                break;
            }
        }
    }
    stream.with_state(|s| {
        s.phase = Phase::Stopped;
        s.orchestrator = None;
    });
    inner.release(&stream);
    tracing::info!(stream = stream.id, "BYOC stream ended");
}

impl Session {
    /// The lease's discovery URL, as the pool names it in exclusions.
    fn lease_url(&self) -> String {
        self.lease.url().to_string()
    }
}

/// Runs one session until the stream ends or the orchestrator fails.
async fn run(
    inner: &Arc<Inner>,
    stream: &Arc<Stream>,
    session: &Session,
    progress: &Arc<AtomicU64>,
) -> Outcome {
    // Each relay's end, with whether it was the output relay (see `drain`).
    let (tx, mut rx) = mpsc::channel::<(bool, Outcome)>(8);
    let mut set = JoinSet::new();
    let ch = &stream.channel;
    // Every channel of this session is reached with its client, pinned where it must be.
    let web = || session.trickle.clone();
    let mut go = |output: bool, fut: std::pin::Pin<Box<dyn Future<Output = Outcome> + Send>>| {
        let tx = tx.clone();
        set.spawn(async move {
            let _ = tx.send((output, fut.await)).await;
        });
    };
    if let Some(url) = &session.publish_url {
        let relay = input(inner.clone(), web(), stream.clone(), url.clone(), progress.clone());
        go(false, Box::pin(relay));
    }
    if let Some(url) = &session.subscribe_url {
        let sink = format!("{ch}-out");
        let relay = pump(inner.clone(), web(), stream.clone(), url.clone(), sink, Kind::Output);
        go(true, Box::pin(relay));
    }
    if let Some(url) = &session.data_url {
        let sink = format!("{ch}-data");
        let relay = pump(inner.clone(), web(), stream.clone(), url.clone(), sink, Kind::Data);
        go(false, Box::pin(relay));
    }
    let sink = format!("{ch}-events");
    let url = session.events_url.clone();
    go(false, Box::pin(pump(inner.clone(), web(), stream.clone(), url, sink, Kind::Events)));
    let url = session.control_url.clone();
    go(false, Box::pin(control(inner.clone(), web(), stream.clone(), url)));
    // Not in the set: a payment on its way when the session ends is let finish (its tickets
    // are sent or not, and counted either way) rather than cut mid-call, uncounted; the
    // stream's end does not wait for it, its key's last charge does.
    let halt = CancellationToken::new();
    let (orch, service) = (session.orchestrator.clone(), session.service.clone());
    tokio::spawn(payments(inner.clone(), stream.clone(), orch, service, halt.clone()));
    drop(tx);
    stream.counters.waiting_since_ms.store(0, Relaxed);
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let outcome = loop {
        tokio::select! {
            _ = stream.stop.cancelled() => break Outcome::Ended("stopped".into()),
            got = rx.recv() => break got.map_or(Outcome::Ended("stopped".into()), |(_, o)| o),
            _ = tick.tick() => if let Some(why) = stalled(stream) {
                break Outcome::Fault(why);
            },
        }
    };
    if matches!(&outcome, Outcome::Ended(r) if r == INPUT_CLOSED) && session.subscribe_url.is_some()
    {
        drain(stream, &mut rx).await;
    }
    set.abort_all();
    // Its payment in flight, if any, goes on (counted in `payments_out`), and the task ends.
    halt.cancel();
    outcome
}

/// Output stalled while input reached the orchestrator.
fn stalled(stream: &Stream) -> Option<String> {
    let waiting = stream.counters.waiting_since_ms.load(Relaxed);
    let limit = OUT_TIMEOUT.as_millis() as u64;
    (waiting != 0 && stream.now_ms().saturating_sub(waiting) > limit)
        .then(|| format!("no output for {limit} ms while input flowed"))
}

/// After the client closed its input, keeps relaying until every input segment has come
/// back, the orchestrator's output ends, the stream is stopped, or output stalls. The end of
/// another relay does not end the drain: an orchestrator closing its events channel as its
/// input ends may do so before the last output segment has been relayed.
async fn drain(stream: &Stream, rx: &mut mpsc::Receiver<(bool, Outcome)>) {
    let c = &stream.counters;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    loop {
        tokio::select! {
            _ = stream.stop.cancelled() => return,
            got = rx.recv() => if got.is_none_or(|(output, _)| output) {
                return;
            },
            _ = tick.tick() => {
                if c.out_segments.load(Relaxed) >= c.in_segments.load(Relaxed) || stalled(stream).is_some() {
                    return;
                }
            }
        }
    }
}

fn fault(what: &str, e: &TrickleError) -> Outcome {
    match e {
        TrickleError::Local(_) => {
            Outcome::Shortage(format!("the gateway, on orchestrator {what}: {e}"))
        }
        _ => Outcome::Fault(format!("orchestrator {what}: {e}")),
    }
}

/// Client input channel → orchestrator input, chunk by chunk, from the segment `progress`
/// names: a segment not completely delivered to a failed orchestrator goes to the next one.
async fn input(
    inner: Arc<Inner>,
    web: reqwest::Client,
    stream: Arc<Stream>,
    url: String,
    progress: Arc<AtomicU64>,
) -> Outcome {
    let start = progress.load(Relaxed);
    let mut source = inner.hub.subscriber(&stream.channel, start as i64);
    let config = inner.trickle_config.clone();
    let mut sink = match HttpPublisher::new(web, &url, "video/MP2T", config) {
        Ok(p) => p,
        Err(e) => return fault("input", &e),
    };
    loop {
        let mut reader = match source.segment().await {
            Ok(Some(reader)) => reader,
            Ok(None) => return Outcome::Ended(INPUT_CLOSED.into()),
            Err(e) => return Outcome::Ended(format!("client input: {e}")),
        };
        let seq = reader.seq();
        progress.store(seq, Relaxed);
        // A client segment cut short is finished as far as it got: it is all there is of it.
        let limits = (OnCut::Finish, Some(WRITE_LIMIT));
        match copy_segment(&mut reader, &mut sink, limits, |_, _| {}).await {
            Ok(Some(_)) => {
                let c = &stream.counters;
                c.in_segments.fetch_add(1, Relaxed);
                if stream.flags.enable_video_egress {
                    let now = stream.now_ms();
                    let _ = c.waiting_since_ms.compare_exchange(0, now, Relaxed, Relaxed);
                }
            }
            Ok(None) => {}
            Err(CopyError::Stalled) => {
                return Outcome::Fault("orchestrator input stopped accepting bytes".into());
            }
            Err(CopyError::Sink(e) | CopyError::Source(e)) => return fault("input", &e),
        }
        progress.store(seq + 1, Relaxed);
    }
}

/// Which orchestrator channel a pump relays.
#[derive(Clone, Copy)]
enum Kind {
    Output,
    Data,
    Events,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Output => "output",
            Kind::Data => "data",
            Kind::Events => "events",
        }
    }
}

/// An orchestrator channel → the client's channel `sink`, segment by segment; the output
/// chunk by chunk, data and events whole (bounded). Sequence numbers of the client's channel
/// continue across swaps.
async fn pump(
    inner: Arc<Inner>,
    web: reqwest::Client,
    stream: Arc<Stream>,
    url: String,
    sink: String,
    kind: Kind,
) -> Outcome {
    let what = kind.name();
    let config = inner.trickle_config.clone();
    let mut source = match HttpSubscriber::new(web, &url, 0, config) {
        Ok(s) => s,
        Err(e) => return fault(what, &e),
    };
    let mut sink = inner.hub.publisher(&sink);
    loop {
        let mut reader = match source.segment().await {
            Ok(Some(reader)) => reader,
            Ok(None) => return Outcome::Fault(format!("the orchestrator closed its {what}")),
            Err(e) => return fault(what, &e),
        };
        let c = &stream.counters;
        if let Kind::Output = kind {
            // An orchestrator segment cut short is abandoned: the client sees it cut too.
            match copy_segment(&mut reader, &mut sink, (OnCut::Abandon, None), |_, _| {}).await {
                Ok(Some(_)) => {
                    c.out_segments.fetch_add(1, Relaxed);
                    c.waiting_since_ms.store(0, Relaxed);
                }
                Ok(None) => {}
                Err(CopyError::Source(e)) => return fault(what, &e),
                Err(CopyError::Sink(e)) => return Outcome::Ended(format!("client output: {e}")),
                Err(CopyError::Stalled) => return Outcome::Ended("client output stalled".into()),
            }
            continue;
        }
        let data = match read_segment(&mut reader, MAX_MESSAGE).await {
            Ok(data) => data,
            Err(TrickleError::TooLarge { .. }) => continue,
            Err(e) => return fault(what, &e),
        };
        if let Kind::Events = kind {
            c.events.fetch_add(1, Relaxed);
            if let Ok(event) =
                crate::bounded_json::from_slice(&data, crate::bounded_json::STREAM_VALUES)
            {
                let kept = crate::bounded_json::kept(&event, data.len());
                stream.with_state(|s| s.last_event = Some(kept));
            }
        } else {
            c.data_segments.fetch_add(1, Relaxed);
        }
        if let Err(e) = publish_segment(&mut sink, data).await {
            return Outcome::Ended(format!("client {what}: {e}"));
        }
    }
}

/// The client's control channel → the orchestrator's, with a keepalive every 10 s.
///
/// The client's channel closes when the stream ends (the stop decides the outcome) or when
/// the hub sweeps it after the client left it idle. The keepalives go on after that: the
/// orchestrator would otherwise end the stream for an idle control channel of its own, which
/// would read as its failure. A stream without video input has no other sign of its client
/// than its readers, of data or of output video: once its channel is gone and no reader is
/// left at two keepalives in a row (an output reader is between two segments now and then),
/// it ends rather than be paid for with nobody there.
async fn control(
    inner: Arc<Inner>,
    web: reqwest::Client,
    stream: Arc<Stream>,
    url: String,
) -> Outcome {
    let config = inner.trickle_config.clone();
    let mut sink = match HttpPublisher::new(web, &url, "application/json", config) {
        Ok(p) => p,
        Err(e) => return fault("control", &e),
    };
    let mut source =
        inner.hub.subscriber(&format!("{}-control", stream.channel), livepeer_trickle::SEQ_NEXT);
    let mut tick = tokio::time::interval(KEEPALIVE);
    let mut client_channel = true;
    let output = format!("{}-out", stream.channel);
    let unattended = || {
        let watched = stream.flags.enable_video_egress
            && inner.hub.stats(&output).is_some_and(|s| s.readers > 0);
        !stream.flags.enable_video_ingress
            && !watched
            && stream.data_readers.available_permits() == MAX_DATA_READERS
    };
    let mut unattended_ticks = 0;
    loop {
        let message = tokio::select! {
            _ = tick.tick() => {
                unattended_ticks = if !client_channel && unattended() { unattended_ticks + 1 } else { 0 };
                if unattended_ticks >= 2 {
                    let why = "the client left: its control channel went idle, no reader is left";
                    return Outcome::Ended(why.into());
                }
                Bytes::from(json!({"keep": "alive"}).to_string())
            }
            next = source.segment(), if client_channel => match next {
                Ok(Some(mut reader)) => match read_segment(&mut reader, MAX_MESSAGE).await {
                    Ok(data) => data,
                    Err(_) => continue,
                },
                Ok(None) | Err(_) => {
                    client_channel = false;
                    continue;
                }
            },
        };
        let budget = crate::bounded_json::STREAM_VALUES;
        if let Ok(Value::Object(params)) = crate::bounded_json::from_slice(&message, budget)
            && !params.contains_key("keep")
        {
            stream.with_state(|s| s.params = Value::Object(params));
        }
        if let Err(e) = publish_segment(&mut sink, message).await {
            return fault("control", &e);
        }
    }
}

/// Pays the serving orchestrator every `--byoc-payment-interval` (the first payment one
/// interval after the start, which was paid). Failures are counted, not fatal (go-livepeer).
/// Ends between payments once `halt` fires, never in the middle of one.
async fn payments(
    inner: Arc<Inner>,
    stream: Arc<Stream>,
    orchestrator: String,
    service: String,
    halt: CancellationToken,
) {
    let _payer = stream.payments_out.payer();
    let every = inner.byoc.config.payment_interval;
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if !crate::task::tick_unless_halted(&mut tick, &halt).await {
            return;
        }
        match stream_orch::pay(&inner, &stream, &orchestrator).await {
            Ok(true) => {
                stream.with_state(|s| s.payments_sent += 1);
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(
                    stream = stream.id,
                    orchestrator = service,
                    error = e,
                    "BYOC stream payment failed"
                );
                stream.with_state(|s| s.payments_failed += 1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_gateways_own_shortage_on_a_channel_spares_the_orchestrator() {
        let local = fault("input", &TrickleError::Local("Too many open files".into()));
        assert!(matches!(&local, Outcome::Shortage(r) if r.contains("Too many open files")));
        for theirs in [
            TrickleError::Transport("connection reset".into()),
            TrickleError::Timeout("no first byte"),
            TrickleError::Closed,
        ] {
            let outcome = fault("output", &theirs);
            assert!(matches!(&outcome, Outcome::Fault(r) if r.starts_with("orchestrator output")));
        }
    }
}
