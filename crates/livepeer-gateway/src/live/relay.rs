//! The gateway ⇄ orchestrator side of a live stream: the start call (PROTOCOL.md §8.2), and
//! while an orchestrator serves the stream, five tasks (§8.3, §8.5): input segments to its
//! `publish_url`, its `subscribe_url` back to the client, control messages and keepalives, its
//! events, and payments every interval. A watchdog turns a stalled output or silent events into
//! a fault; any fault ends the session so the supervisor can swap orchestrators.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use axum::http::StatusCode;
use bytes::Bytes;
use livepeer_trickle::{
    HttpPublisher, HttpSubscriber, Publish, ReadSegment, Subscribe, TrickleError, WriteSegment,
    publish_segment, read_segment,
};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use url::Url;

use super::stream::Stream;
use super::ts::FrameCounter;
use super::{Inner, JSON_MIME, MEDIA_MIME};
use crate::orchestrator::info::OrchInfo;
use crate::orchestrator::{JobKey, Lease};
use crate::payment::{Booking, PayError, Prepared, Settlement};

/// Units of one second of live video (PAYMENTS.md §8).
pub(crate) const UNITS_PER_SECOND: u64 = livepeer_pm::LIVE_VIDEO_UNITS_PER_SECOND;
/// The start call prepays a minute (go-livepeer `initPixelsToPay`).
pub(crate) const START_UNITS: u64 = livepeer_pm::LIVE_VIDEO_INITIAL_UNITS;
/// The `Authorization` value of calls to AI endpoints.
const AI_WORKER_PROTOCOL: &str = "Livepeer-AI-Worker-1.0";
/// Largest event document read.
const MAX_EVENT: usize = 1 << 20;
/// How often the control channel carries a keepalive (go-livepeer: 10 s).
const KEEPALIVE: Duration = Duration::from_secs(10);

/// How a session ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The stream is over (the client closed its input or asked to stop).
    Ended(String),
    /// The orchestrator failed: swap.
    Fault(String),
}

/// An orchestrator serving the stream.
#[derive(Debug)]
pub(crate) struct Session {
    /// Its discovery URL.
    pub(crate) orchestrator: String,
    pub(crate) lease: Lease,
    /// The info its payments are made with.
    info: Arc<OrchInfo>,
    /// Its id of the stream.
    pub(crate) manifest_id: String,
    publish_url: String,
    subscribe_url: String,
    control_url: String,
    events_url: String,
    /// The params version the start call carried.
    params_version: u64,
    /// The job, for forgetting its payment sessions.
    key: JobKey,
    /// What the start call's payment was booked on.
    start_manifest: String,
}

impl Session {
    /// Tears the session down on the orchestrator's side, in the background: the input and
    /// control channels are deleted, which ends the orchestrator's stream (§8.3 Teardown).
    pub(crate) fn finish(self, inner: &Arc<Inner>) -> Self {
        let (url, key) = (self.lease.url(), &self.key);
        inner.payments.forget(url, key, &self.manifest_id);
        inner.payments.forget(url, key, &self.start_manifest);
        let http = inner.trickle.clone();
        let urls = [self.publish_url.clone(), self.control_url.clone()];
        inner.spawn("live-teardown", async move {
            for url in urls {
                let _ = http.delete(&url).timeout(Duration::from_secs(2)).send().await;
            }
        });
        self
    }
}

/// Why no orchestrator could be attached.
#[derive(Debug)]
pub(crate) struct AttachError {
    pub(crate) status: StatusCode,
    pub(crate) kind: &'static str,
    pub(crate) message: String,
}

/// Selects an orchestrator and starts the stream on it, trying others (not in `exclude`)
/// when the call fails.
pub(crate) async fn attach(
    inner: &Arc<Inner>,
    stream: &Stream,
    exclude: &[&str],
) -> Result<Session, AttachError> {
    let mut tried: Vec<String> = exclude.iter().map(|s| (*s).to_owned()).collect();
    let mut attempts = 0;
    let mut last_error: Option<String> = None;
    while attempts < inner.config.max_attempts {
        let skip: Vec<&str> = tried.iter().map(String::as_str).collect();
        let lease = match inner.pool.select(&stream.key, &skip) {
            Ok(lease) => lease,
            Err(e) => {
                let message = match &last_error {
                    Some(last) => format!("{e}; last error: {last}"),
                    None => e.to_string(),
                };
                return Err(AttachError {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    kind: "no_orchestrator",
                    message,
                });
            }
        };
        let url = lease.url().to_string();
        tried.push(url.clone());
        if let Some(pin) = &stream.spec.pin
            && !url.contains(pin.as_str())
        {
            continue;
        }
        attempts += 1;
        match start_call(inner, stream, &lease).await {
            Ok(started) => {
                return Ok(Session {
                    orchestrator: url,
                    lease,
                    info: started.info,
                    manifest_id: started.manifest_id,
                    publish_url: started.urls[0].clone(),
                    subscribe_url: started.urls[1].clone(),
                    control_url: started.urls[2].clone(),
                    events_url: started.urls[3].clone(),
                    params_version: started.params_version,
                    key: stream.key.clone(),
                    start_manifest: stream.spec.request_id.clone(),
                });
            }
            Err(failure) => {
                tracing::info!(
                    stream = stream.spec.name,
                    orchestrator = url,
                    error = failure.message,
                    "live start failed"
                );
                inner.metrics.ai_error(&stream.key, &url, failure.code);
                last_error = Some(format!("{url}: {}", failure.message));
                if failure.blame {
                    lease.failed(failure.message);
                }
            }
        }
    }
    Err(AttachError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        kind: "no_orchestrator",
        message: format!(
            "no orchestrator started the stream after {attempts} attempts; last error: {}",
            last_error.unwrap_or_default()
        ),
    })
}

struct Started {
    info: Arc<OrchInfo>,
    manifest_id: String,
    urls: [String; 4],
    params_version: u64,
}

struct StartFailure {
    message: String,
    code: &'static str,
    /// Whether the orchestrator is at fault (ejected) rather than busy or unpaid.
    blame: bool,
}

/// The payment headers of one call, and what to settle afterwards.
struct Paid {
    payment: String,
    segment: String,
    info: Arc<OrchInfo>,
    prepared: Prepared,
}

/// `Livepeer-Payment` and `Livepeer-Segment` for `units` at the orchestrator, booked on
/// `manifest`: local key, remote signer, or the off-chain empty payment.
async fn pay(
    inner: &Inner,
    url: &Url,
    info: &Arc<OrchInfo>,
    key: &JobKey,
    units: u64,
    manifest: &str,
) -> Result<Paid, PayError> {
    let prepared = inner.payments.prepare(url, info, key, units, Booking::Stream(manifest)).await?;
    Ok(Paid {
        payment: prepared.payment().to_owned(),
        // A stream's payment always carries its segment credentials.
        segment: prepared.segment().unwrap_or_default().to_owned(),
        info: prepared.info().clone(),
        prepared,
    })
}

fn settle(inner: &Inner, stream: &Stream, orch: &str, prepared: Prepared, outcome: Settlement) {
    if let Some(spend) = prepared.spend() {
        if outcome == Settlement::Paid {
            inner.metrics.paid(orch, &stream.key, spend.tickets, &spend.ev_sent, &spend.fee);
        }
        stream.record_payment(
            outcome == Settlement::Paid,
            spend.tickets,
            &spend.ev_sent,
            &spend.fee,
        );
    }
    inner.payments.settle(prepared, outcome);
}

/// `POST {transcoder}/live-video-to-video` with the prepaid minute (§8.2).
async fn start_call(
    inner: &Inner,
    stream: &Stream,
    lease: &Lease,
) -> Result<Started, StartFailure> {
    let fail = |message: String, code, blame| StartFailure { message, code, blame };
    let Some(info) = lease.info().cloned() else {
        return Err(fail("no orchestrator info".into(), "discovery", true));
    };
    let orch = lease.url().to_string();
    let paid = pay(inner, lease.url(), &info, &stream.key, START_UNITS, &stream.spec.request_id)
        .await
        .map_err(|e| {
            let blame = matches!(e, PayError::Discovery(_));
            fail(e.to_string(), "payment", blame)
        })?;
    let (params_version, params) = stream.params();
    let body = json!({
        "model_id": stream.spec.pipeline,
        "params": params,
        "gateway_request_id": stream.spec.request_id,
        "stream_id": stream.spec.id,
    });
    let base = paid.info.transcoder.clone();
    let sent = inner
        .http
        .post(format!("{base}/live-video-to-video"))
        .header("Livepeer-Payment", &paid.payment)
        .header("Livepeer-Segment", &paid.segment)
        .header(reqwest::header::AUTHORIZATION, AI_WORKER_PROTOCOL)
        .json(&body)
        .timeout(inner.config.start_timeout)
        .send()
        .await;
    let resp = match sent {
        Ok(resp) => resp,
        Err(e) => {
            settle(inner, stream, &orch, paid.prepared, Settlement::CreditSpent);
            let code = if e.is_timeout() { "timeout" } else { "connection" };
            return Err(fail(crate::error::error_chain(&e), code, true));
        }
    };
    let status = resp.status();
    if status != reqwest::StatusCode::OK {
        let text = resp.text().await.unwrap_or_default();
        let text = text.trim().chars().take(300).collect::<String>();
        let (outcome, code, blame) = match status.as_u16() {
            503 => (Settlement::Refused, "busy", false),
            400..=499 => (Settlement::CreditSpent, "refused", false),
            _ => (Settlement::CreditSpent, "server_error", true),
        };
        settle(inner, stream, &orch, paid.prepared, outcome);
        return Err(fail(format!("start answered {status}: {text}"), code, blame));
    }
    let answer: Value = match resp.json().await {
        Ok(v) => v,
        Err(e) => {
            settle(inner, stream, &orch, paid.prepared, Settlement::CreditSpent);
            return Err(fail(format!("start answer is not JSON: {e}"), "garbage", true));
        }
    };
    settle(inner, stream, &orch, paid.prepared, Settlement::Paid);
    let url_of = |field: &str| -> Option<String> {
        let raw = answer.get(field)?.as_str()?.trim();
        if raw.is_empty() {
            return None;
        }
        // go-livepeer `AppendHostname`: a bare path is on the orchestrator's host.
        if raw.starts_with("http://") || raw.starts_with("https://") {
            Some(raw.to_owned())
        } else {
            Some(format!("{base}/{}", raw.trim_start_matches('/')))
        }
    };
    let (Some(publish), Some(subscribe), Some(control), Some(events)) = (
        url_of("publish_url"),
        url_of("subscribe_url"),
        url_of("control_url"),
        url_of("events_url"),
    ) else {
        return Err(fail("start answer lacks a channel URL".into(), "garbage", true));
    };
    let manifest_id = answer
        .get("manifest_id")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
        .unwrap_or(&stream.spec.request_id)
        .to_owned();
    Ok(Started {
        info: paid.info,
        manifest_id,
        urls: [publish, subscribe, control, events],
        params_version,
    })
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
        let fut = output(inner.clone(), stream.clone(), session.subscribe_url.clone());
        set.spawn(async move { done(fut.await).await });
        let done = report(&tx);
        let fut = events(inner.clone(), stream.clone(), session);
        set.spawn(async move { done(fut.await).await });
        let done = report(&tx);
        let fut = control(
            inner.clone(),
            stream.clone(),
            session.control_url.clone(),
            session.params_version,
        );
        set.spawn(async move { done(fut.await).await });
        let fut = payments(inner.clone(), stream.clone(), session);
        set.spawn(fut);
    }
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let outcome = loop {
        tokio::select! {
            _ = stream.stop.cancelled() => break Outcome::Ended("stopped".into()),
            got = rx.recv() => if let Some(outcome) = got { break outcome },
            _ = tick.tick() => if let Some(reason) = watchdog(inner, stream, started_ms) {
                break Outcome::Fault(reason);
            },
        }
    };
    // The client closed its input: what the orchestrator is still working on comes out first.
    if matches!(&outcome, Outcome::Ended(r) if r == INPUT_CLOSED) {
        drain(stream, &mut rx, inner.config.out_segment_timeout).await;
    }
    set.abort_all();
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
    Outcome::Fault(format!("{what}: {e}"))
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
        // Opened at the first byte: an empty client segment (an abandoned preconnect) is not
        // relayed.
        let mut writer = None;
        let mut frames = FrameCounter::default();
        loop {
            let chunk = match reader.chunk().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(stream = stream.spec.name, error = %e, "client segment cut short");
                    break;
                }
            };
            let writer = match &mut writer {
                Some(w) => w,
                None => {
                    stream.input_started();
                    match sink.segment().await {
                        Ok(w) => writer.insert(w),
                        Err(e) => return fault("orchestrator input", &e),
                    }
                }
            };
            let c = &stream.counters;
            let now = stream.now_ms().max(1);
            c.in_bytes.fetch_add(chunk.len() as u64, Relaxed);
            c.last_in_ms.store(now, Relaxed);
            let _ = c.waiting_since_ms.compare_exchange(0, now, Relaxed, Relaxed);
            frames.feed(&chunk);
            match tokio::time::timeout(write_limit, writer.write(chunk)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return fault("orchestrator input", &e),
                Err(_) => {
                    return Outcome::Fault("orchestrator input stopped accepting bytes".into());
                }
            }
        }
        let Some(writer) = writer else {
            progress.store(seq + 1, Relaxed);
            continue;
        };
        if let Err(e) = writer.finish().await {
            return fault("orchestrator input", &e);
        }
        progress.store(seq + 1, Relaxed);
        stream.counters.in_frames.fetch_add(frames.frames(), Relaxed);
        stream.input_done(frames.frames());
    }
}

/// Orchestrator output → client output channel. Output sequence numbers continue across
/// swaps, so the client's subscriber never notices the change of orchestrator.
async fn output(inner: Arc<Inner>, stream: Arc<Stream>, url: String) -> Outcome {
    let mut source = match inner.orch_subscriber(&url) {
        Ok(s) => s,
        Err(e) => return fault("orchestrator output", &e),
    };
    let mut sink = inner.hub.publisher(&format!("{}-out", stream.spec.channel));
    loop {
        let mut reader = match source.segment().await {
            Ok(Some(reader)) => reader,
            Ok(None) => return Outcome::Fault("the orchestrator closed its output".into()),
            Err(e) => return fault("orchestrator output", &e),
        };
        let mut writer = None;
        let mut frames = FrameCounter::default();
        loop {
            let chunk = match reader.chunk().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                // Dropping the writer abandons the client's segment where it is.
                Err(e) => return fault("orchestrator output", &e),
            };
            let w = match &mut writer {
                Some(w) => w,
                None => {
                    stream.output_started();
                    match sink.segment().await {
                        Ok(w) => writer.insert(w),
                        Err(e) => return Outcome::Ended(format!("client output: {e}")),
                    }
                }
            };
            let c = &stream.counters;
            c.out_bytes.fetch_add(chunk.len() as u64, Relaxed);
            c.last_out_ms.store(stream.now_ms(), Relaxed);
            c.waiting_since_ms.store(0, Relaxed);
            frames.feed(&chunk);
            if let Err(e) = w.write(chunk).await {
                return Outcome::Ended(format!("client output: {e}"));
            }
        }
        if let Some(w) = writer {
            if let Err(e) = w.finish().await {
                return Outcome::Ended(format!("client output: {e}"));
            }
            stream.counters.out_frames.fetch_add(frames.frames(), Relaxed);
            stream.output_done(frames.frames());
        }
    }
}

/// Orchestrator events → the stream's status and the client's events channel, tagged with the
/// stream and the orchestrator.
fn events(
    inner: Arc<Inner>,
    stream: Arc<Stream>,
    session: &Session,
) -> impl Future<Output = Outcome> + Send + 'static {
    let orchestrator = session.orchestrator.clone();
    let source = inner.orch_subscriber(&session.events_url);
    async move {
        let mut source = match source {
            Ok(s) => s,
            Err(e) => return fault("orchestrator events", &e),
        };
        let mut sink = inner.hub.publisher(&format!("{}-events", stream.spec.channel));
        loop {
            let mut reader = match source.segment().await {
                Ok(Some(reader)) => reader,
                Ok(None) => return Outcome::Fault("the orchestrator closed its events".into()),
                Err(e) => return fault("orchestrator events", &e),
            };
            let data = match read_segment(&mut reader, MAX_EVENT).await {
                Ok(data) => data,
                Err(TrickleError::TooLarge { limit }) => {
                    tracing::debug!(
                        stream = stream.spec.name,
                        limit,
                        "event over the size limit dropped"
                    );
                    continue;
                }
                Err(e) => return fault("orchestrator events", &e),
            };
            let Ok(doc) = serde_json::from_slice::<Value>(&data) else {
                tracing::debug!(stream = stream.spec.name, "event that is not JSON dropped");
                continue;
            };
            // ai-runner's envelope, or a bare event (topic `ai_stream_events`), §8.3.
            let (topic, event) = match (doc.get("queue_event_type"), doc.get("event")) {
                (Some(Value::String(topic)), Some(event)) => (topic.clone(), event.clone()),
                _ => ("ai_stream_events".to_owned(), doc),
            };
            stream.record_event(&event);
            let tagged = json!({
                "queue_event_type": topic,
                "stream_id": stream.spec.id,
                "request_id": stream.spec.request_id,
                "pipeline": stream.spec.pipeline,
                "orchestrator": orchestrator,
                "event": event,
            });
            if let Err(e) = publish_segment(&mut sink, Bytes::from(tagged.to_string())).await
                && e.is_end()
            {
                return Outcome::Ended("the client events channel closed".into());
            }
        }
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

/// Pays the serving orchestrator for the time used, every interval while input flows (§8.5).
/// Nothing is paid off-chain or at price 0, as go-livepeer does.
fn payments(
    inner: Arc<Inner>,
    stream: Arc<Stream>,
    session: &Session,
) -> impl Future<Output = ()> + Send + 'static {
    let unpaid = session.info.ticket_params.is_none()
        || session.lease.price().is_zero()
        || inner.payments.is_off_chain();
    let url = session.lease.url().clone();
    let orch = session.orchestrator.clone();
    let info = session.info.clone();
    let manifest = session.manifest_id.clone();
    let interval = inner.config.payment_interval;
    async move {
        if unpaid {
            return;
        }
        // The start call prepaid the first minute from here.
        let mut billed = Instant::now();
        let mut seen = stream.counters.in_segments.load(Relaxed);
        let mut tick = tokio::time::interval(interval);
        tick.reset();
        loop {
            tick.tick().await;
            let segments = stream.counters.in_segments.load(Relaxed);
            if segments == seen {
                continue;
            }
            seen = segments;
            let elapsed = billed.elapsed();
            let units = (u128::from(UNITS_PER_SECOND) * elapsed.as_micros() / 1_000_000) as u64;
            // Advance by the billed time only: truncated fractions are billed next time.
            billed += Duration::from_micros(units * 1_000_000 / UNITS_PER_SECOND);
            pay_once(&inner, &stream, &url, &orch, &info, &manifest, units).await;
        }
    }
}

async fn pay_once(
    inner: &Inner,
    stream: &Stream,
    url: &Url,
    orch: &str,
    info: &Arc<OrchInfo>,
    manifest: &str,
    units: u64,
) {
    let paid = match pay(inner, url, info, &stream.key, units, manifest).await {
        Ok(paid) => paid,
        Err(PayError::NotNeeded) => {
            tracing::debug!(stream = stream.spec.name, "live payment not needed this cycle");
            return;
        }
        Err(e) => {
            tracing::warn!(stream = stream.spec.name, orchestrator = orch, error = %e, "live payment not made");
            stream.record_payment(false, 0, &Default::default(), &Default::default());
            return;
        }
    };
    let sent = inner
        .http
        .post(format!("{}/payment", paid.info.transcoder))
        .header(livepeer_pm::PAYMENT_HEADER, &paid.payment)
        .header("Livepeer-Segment", &paid.segment)
        .timeout(Duration::from_secs(10))
        .send()
        .await;
    let ok = matches!(&sent, Ok(resp) if resp.status() == reqwest::StatusCode::OK);
    if !ok {
        let error = match sent {
            Ok(resp) => format!("status {}", resp.status()),
            Err(e) => crate::error::error_chain(&e),
        };
        // The orchestrator enforces payment; a lost one shows as its balance running out.
        tracing::warn!(
            stream = stream.spec.name,
            orchestrator = orch,
            error,
            "live payment failed"
        );
    }
    let outcome = if ok { Settlement::Paid } else { Settlement::CreditSpent };
    if paid.prepared.spend().is_none() {
        stream.record_payment(ok, 0, &Default::default(), &Default::default());
    }
    settle(inner, stream, orch, paid.prepared, outcome);
}
