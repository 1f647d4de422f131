//! The relays of one orchestrator session (PROTOCOL.md §8.3): client input segments to the
//! orchestrator's `publish_url`, its output and its events back to the client's channels
//! (one pump, told what to do with each segment), params and keepalives on its control
//! channel, and billing beside them. A watchdog turns a stalled output or silent events into a
//! fault; any fault ends the session so the supervisor can swap orchestrators.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use bytes::Bytes;
use livepeer_trickle::{
    CopyError, HttpPublisher, HttpSegmentReader, HttpSubscriber, LocalPublisher, OnCut,
    ReadSegment, Subscribe, TrickleError, copy_segment, publish_segment, read_segment,
};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::billing::payments;
use super::context::Inner;
use super::session::Session;
use super::stream::{JSON_MIME, MEDIA_MIME, Stream};
use super::ts::FrameCounter;
use crate::orchestrator::verdict::Failure;

/// Largest event document read.
const MAX_EVENT: usize = 1 << 20;
/// How often the control channel carries a keepalive (go-livepeer: 10 s).
const KEEPALIVE: Duration = Duration::from_secs(10);

/// How a session ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The stream is over (the client closed its input or asked to stop).
    Ended(String),
    /// The orchestrator failed (what it did, and how): swap.
    Fault(Failure, String),
}

/// Runs one session until the stream ends or the orchestrator fails. Returns how it ended and
/// the input sequence number to resume from: the segment that was not completely delivered, so
/// a replacement orchestrator gets it again from its first byte.
pub(crate) async fn run(
    inner: &Arc<Inner>,
    stream: &Arc<Stream>,
    session: &Session,
    resume: u64,
) -> (Outcome, u64) {
    let progress = Arc::new(AtomicU64::new(resume));
    let (tx, mut rx) = mpsc::channel::<Outcome>(8);
    let started_ms = stream.now_ms();
    // A fresh session waits for output only once input has reached it.
    stream.counters.waiting_since_ms.store(0, Relaxed);
    let mut set = JoinSet::new();
    let report = |tx: &mpsc::Sender<Outcome>| {
        let tx = tx.clone();
        move |outcome: Outcome| async move {
            let _ = tx.send(outcome).await;
        }
    };
    {
        let done = report(&tx);
        let fut = input(
            inner.clone(),
            stream.clone(),
            session.publish_url.clone(),
            resume,
            progress.clone(),
        );
        set.spawn(async move { done(fut.await).await });
        let done = report(&tx);
        let output = Output { stream: stream.clone() };
        let url = session.subscribe_url.clone();
        let fut = pump(inner.clone(), stream.clone(), url, "output", "-out", output);
        set.spawn(async move { done(fut.await).await });
        let done = report(&tx);
        let events = Events { stream: stream.clone(), orchestrator: session.orchestrator.clone() };
        let url = session.events_url.clone();
        let fut = pump(inner.clone(), stream.clone(), url, "events", "-events", events);
        set.spawn(async move { done(fut.await).await });
        let done = report(&tx);
        let fut = control(
            inner.clone(),
            stream.clone(),
            session.control_url.clone(),
            session.params_version,
        );
        set.spawn(async move { done(fut.await).await });
    }
    // Not in the set: a payment on its way when the session ends is let finish (its tickets
    // are sent or not, and booked either way) rather than cut mid-call, unrecorded; the
    // stream's end does not wait for it, its key's last charge does.
    let halt = tokio_util::sync::CancellationToken::new();
    tokio::spawn(payments(inner.clone(), stream.clone(), session, halt.clone()));
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let outcome = loop {
        tokio::select! {
            _ = stream.stop.cancelled() => break Outcome::Ended("stopped".into()),
            got = rx.recv() => if let Some(outcome) = got { break outcome },
            _ = tick.tick() => if let Some(reason) = watchdog(inner, stream, started_ms) {
                break Outcome::Fault(Failure::Timeout, reason);
            },
        }
    };
    // The client closed its input: what the orchestrator is still working on comes out first.
    if matches!(&outcome, Outcome::Ended(r) if r == INPUT_CLOSED) {
        drain(stream, &mut rx, inner.config.out_segment_timeout).await;
    }
    set.abort_all();
    // Its payment in flight, if any, goes on (counted in `payments_out`), and the task ends.
    halt.cancel();
    (outcome, progress.load(Relaxed))
}

/// Why a stream ends when its client closes the input channel.
const INPUT_CLOSED: &str = "the client closed its input";

/// Keeps relaying output after the input ended, until every input segment has come back, the
/// orchestrator's side ends, the stream is stopped, or no output segment completes for
/// `quiet` (an orchestrator need not answer every segment).
async fn drain(stream: &Stream, rx: &mut mpsc::Receiver<Outcome>, quiet: Duration) {
    let c = &stream.counters;
    let mut last = c.out_segments.load(Relaxed);
    let mut last_change = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    loop {
        tokio::select! {
            _ = stream.stop.cancelled() => return,
            _ = rx.recv() => return,
            _ = tick.tick() => {
                let out = c.out_segments.load(Relaxed);
                if out >= c.in_segments.load(Relaxed) {
                    return;
                }
                if out != last {
                    (last, last_change) = (out, Instant::now());
                } else if last_change.elapsed() >= quiet {
                    return;
                }
            }
        }
    }
}

impl Inner {
    /// A publisher into one of an orchestrator's channels.
    fn orch_publisher(&self, url: &str, mime: &str) -> Result<HttpPublisher, TrickleError> {
        HttpPublisher::new(self.trickle.clone(), url, mime, self.trickle_config.clone())
    }

    /// A subscriber to one of an orchestrator's channels, from its first segment (the
    /// orchestrator creates them for this stream).
    fn orch_subscriber(&self, url: &str) -> Result<HttpSubscriber, TrickleError> {
        HttpSubscriber::new(self.trickle.clone(), url, 0, self.trickle_config.clone())
    }
}

/// Output stalled while input flows, or events stopped.
fn watchdog(inner: &Inner, stream: &Stream, started_ms: u64) -> Option<String> {
    let now = stream.now_ms();
    let c = &stream.counters;
    let out_limit = inner.config.out_segment_timeout.as_millis() as u64;
    let waiting = c.waiting_since_ms.load(Relaxed);
    if waiting != 0 && now.saturating_sub(waiting) > out_limit {
        return Some(format!("no output for {out_limit} ms while input flowed"));
    }
    let events_limit = inner.config.events_timeout.as_millis() as u64;
    let last_event = c.last_event_ms.load(Relaxed).max(started_ms);
    if now.saturating_sub(last_event) > events_limit {
        return Some(format!("no event for {events_limit} ms"));
    }
    None
}

fn fault(what: &str, e: &TrickleError) -> Outcome {
    Outcome::Fault(failure(e), format!("{what}: {e}"))
}

/// What a trickle error on an orchestrator's channel says the orchestrator did: the stream
/// broke off unless the connection failed or a wait ran out.
fn failure(e: &TrickleError) -> Failure {
    match e {
        TrickleError::Transport(_) => Failure::Transport,
        TrickleError::Local(_) => Failure::GatewayExhausted,
        TrickleError::Timeout(_) => Failure::Timeout,
        TrickleError::NotFound
        | TrickleError::Closed
        | TrickleError::Missed { .. }
        | TrickleError::Status { .. }
        | TrickleError::TooLarge { .. }
        | TrickleError::Invalid(_) => Failure::ClosedMidStream,
    }
}

/// Client input channel → orchestrator input, segment by segment, chunk by chunk.
async fn input(
    inner: Arc<Inner>,
    stream: Arc<Stream>,
    url: String,
    start: u64,
    progress: Arc<AtomicU64>,
) -> Outcome {
    let mut source = inner.hub.subscriber(&stream.spec.channel, start as i64);
    let mut sink = match inner.orch_publisher(&url, MEDIA_MIME) {
        Ok(p) => p,
        Err(e) => return fault("orchestrator input", &e),
    };
    let write_limit = inner.config.out_segment_timeout;
    loop {
        let mut reader = match source.segment().await {
            Ok(Some(reader)) => reader,
            Ok(None) => return Outcome::Ended(INPUT_CLOSED.into()),
            Err(e) => return Outcome::Ended(format!("client input: {e}")),
        };
        let seq = reader.seq();
        progress.store(seq, Relaxed);
        let mut frames = FrameCounter::default();
        let counted = |first: bool, chunk: &Bytes| {
            if first {
                stream.input_started();
            }
            let c = &stream.counters;
            let now = stream.now_ms().max(1);
            c.in_bytes.fetch_add(chunk.len() as u64, Relaxed);
            c.last_in_ms.store(now, Relaxed);
            frames.feed(chunk);
        };
        // A client segment cut short is finished as far as it got: it is all there is of it.
        let limits = (OnCut::Finish, Some(write_limit));
        match copy_segment(&mut reader, &mut sink, limits, counted).await {
            Ok(Some(_)) => {
                progress.store(seq + 1, Relaxed);
                stream.counters.in_frames.fetch_add(frames.frames(), Relaxed);
                stream.input_done(frames.frames());
                // Output is owed from here: a whole segment has reached the orchestrator.
                // Counting from its first byte blamed the orchestrator for a client that
                // publishes slowly or pauses mid-segment (a runner answers a segment once it
                // has it), and swapped out every orchestrator in turn.
                let now = stream.now_ms().max(1);
                let c = &stream.counters;
                let _ = c.waiting_since_ms.compare_exchange(0, now, Relaxed, Relaxed);
            }
            // An empty client segment (an abandoned preconnect) is not relayed.
            Ok(None) => progress.store(seq + 1, Relaxed),
            Err(CopyError::Stalled) => {
                let reason = "orchestrator input stopped accepting bytes".into();
                return Outcome::Fault(Failure::Timeout, reason);
            }
            Err(CopyError::Sink(e) | CopyError::Source(e)) => {
                return fault("orchestrator input", &e);
            }
        }
    }
}

/// What a pump does with each segment of an orchestrator channel, relaying it into the
/// client's sibling channel. `Err` ends the session with that outcome.
trait Relay: Send {
    /// Handles one segment of the orchestrator's channel.
    fn segment(
        &mut self,
        reader: &mut HttpSegmentReader,
        sink: &mut LocalPublisher,
    ) -> impl Future<Output = Result<(), Outcome>> + Send;
}

/// One orchestrator channel → the client channel `{channel}{suffix}`, segment by segment,
/// until either side ends. `what` names the channel in faults.
async fn pump(
    inner: Arc<Inner>,
    stream: Arc<Stream>,
    url: String,
    what: &'static str,
    suffix: &'static str,
    mut relay: impl Relay,
) -> Outcome {
    let mut source = match inner.orch_subscriber(&url) {
        Ok(s) => s,
        Err(e) => return fault(&format!("orchestrator {what}"), &e),
    };
    let mut sink = inner.hub.publisher(&format!("{}{suffix}", stream.spec.channel));
    loop {
        let mut reader = match source.segment().await {
            Ok(Some(reader)) => reader,
            Ok(None) => {
                let reason = format!("the orchestrator closed its {what}");
                return Outcome::Fault(Failure::ClosedMidStream, reason);
            }
            Err(e) => return fault(&format!("orchestrator {what}"), &e),
        };
        if let Err(outcome) = relay.segment(&mut reader, &mut sink).await {
            return outcome;
        }
    }
}

/// Orchestrator output → client output channel, chunk by chunk. Output sequence numbers
/// continue across swaps, so the client's subscriber never notices the change of orchestrator.
struct Output {
    stream: Arc<Stream>,
}

impl Relay for Output {
    async fn segment(
        &mut self,
        reader: &mut HttpSegmentReader,
        sink: &mut LocalPublisher,
    ) -> Result<(), Outcome> {
        let stream = &self.stream;
        let mut frames = FrameCounter::default();
        let counted = |first: bool, chunk: &Bytes| {
            if first {
                stream.output_started();
            }
            let c = &stream.counters;
            c.out_bytes.fetch_add(chunk.len() as u64, Relaxed);
            c.last_out_ms.store(stream.now_ms(), Relaxed);
            frames.feed(chunk);
        };
        // An orchestrator segment cut short is abandoned: the client sees it cut too.
        match copy_segment(reader, sink, (OnCut::Abandon, None), counted).await {
            Ok(Some(_)) => {
                // Output owed is paid by whole segments, as input is owed by them: a byte now
                // and then, in a segment that never ends, kept a wedged runner in place (and
                // paid) for good.
                stream.counters.waiting_since_ms.store(0, Relaxed);
                stream.counters.out_frames.fetch_add(frames.frames(), Relaxed);
                stream.output_done(frames.frames());
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(CopyError::Source(e)) => Err(fault("orchestrator output", &e)),
            Err(CopyError::Sink(e)) => Err(Outcome::Ended(format!("client output: {e}"))),
            Err(CopyError::Stalled) => Err(Outcome::Ended("client output stalled".into())),
        }
    }
}

/// Orchestrator events → the stream's status and the client's events channel, tagged with the
/// stream and the orchestrator.
struct Events {
    stream: Arc<Stream>,
    orchestrator: String,
}

impl Relay for Events {
    async fn segment(
        &mut self,
        reader: &mut HttpSegmentReader,
        sink: &mut LocalPublisher,
    ) -> Result<(), Outcome> {
        let stream = &self.stream;
        let data = match read_segment(reader, MAX_EVENT).await {
            Ok(data) => data,
            Err(TrickleError::TooLarge { limit }) => {
                tracing::debug!(
                    stream = stream.spec.name,
                    limit,
                    "event over the size limit dropped"
                );
                return Ok(());
            }
            Err(e) => return Err(fault("orchestrator events", &e)),
        };
        let Ok(doc) = crate::bounded_json::from_slice(&data, crate::bounded_json::STREAM_VALUES)
        else {
            tracing::debug!(
                stream = stream.spec.name,
                "event that is not JSON, or too many values, dropped"
            );
            return Ok(());
        };
        // ai-runner's envelope, or a bare event (topic `ai_stream_events`), §8.3.
        let (topic, event) = match (doc.get("queue_event_type"), doc.get("event")) {
            (Some(Value::String(topic)), Some(event)) => (topic.clone(), event.clone()),
            _ => ("ai_stream_events".to_owned(), doc),
        };
        stream.record_event(&event, data.len());
        let tagged = json!({
            "queue_event_type": topic,
            "stream_id": stream.spec.id,
            "request_id": stream.spec.request_id,
            "pipeline": stream.spec.pipeline,
            "orchestrator": self.orchestrator,
            "event": event,
        });
        if let Err(e) = publish_segment(sink, Bytes::from(tagged.to_string())).await
            && e.is_end()
        {
            return Err(Outcome::Ended("the client events channel closed".into()));
        }
        Ok(())
    }
}

/// Params updates and keepalives → the orchestrator's control channel (§8.3).
async fn control(inner: Arc<Inner>, stream: Arc<Stream>, url: String, sent: u64) -> Outcome {
    let mut sink = match inner.orch_publisher(&url, JSON_MIME) {
        Ok(p) => p,
        Err(e) => return fault("orchestrator control", &e),
    };
    let mut updates = stream.params_watch();
    let mut sent = sent;
    let mut keepalive = tokio::time::interval(KEEPALIVE);
    keepalive.reset();
    loop {
        let (version, params) = stream.params();
        let message = if version != sent {
            sent = version;
            params
        } else {
            tokio::select! {
                changed = updates.changed() => {
                    if changed.is_err() {
                        return Outcome::Ended("stream dropped".into());
                    }
                    continue;
                }
                _ = keepalive.tick() => json!({"keep": "alive"}),
            }
        };
        let body = Bytes::from(message.to_string());
        // Up to 3 tries, 100 ms apart, as go-livepeer sends the first params.
        for attempt in 0..3 {
            match publish_segment(&mut sink, body.clone()).await {
                Ok(_) => break,
                Err(e) if e.is_end() => return fault("orchestrator control", &e),
                Err(e) if attempt == 2 => {
                    tracing::warn!(stream = stream.spec.name, error = %e, "control message lost");
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trickle_errors_are_mid_stream_failures_that_penalise() {
        let status = TrickleError::Status { status: 500, body: "boom".into() };
        let rows = [
            (TrickleError::Transport("reset".into()), Failure::Transport),
            (TrickleError::Timeout("segment"), Failure::Timeout),
            (TrickleError::NotFound, Failure::ClosedMidStream),
            (TrickleError::Closed, Failure::ClosedMidStream),
            (TrickleError::Missed { seq: 1, latest: 9 }, Failure::ClosedMidStream),
            (status, Failure::ClosedMidStream),
            (TrickleError::TooLarge { limit: 1 }, Failure::ClosedMidStream),
            (TrickleError::Invalid("url".into()), Failure::ClosedMidStream),
        ];
        for (e, want) in rows {
            assert_eq!(failure(&e), want, "{e}");
            let verdict = want.verdict();
            assert!(verdict.penalise && verdict.fail_over, "{e}: eject and swap, as before");
        }
        // The gateway's own want of descriptors is nobody's fault.
        let local = failure(&TrickleError::Local("emfile".into()));
        assert_eq!(local, Failure::GatewayExhausted);
        assert!(!local.verdict().penalise);
    }
}
