//! The soak's clients and how each request ends.
//!
//! Batch clients loop over text-to-image (with the result download), LLM and streamed LLM
//! requests; live clients start a stream, publish a few segments and stop it. Every request
//! carries a unique id in its prompt (the simulators' ledger key) and ends in one class:
//! answered, failed cleanly, or lost (see [`Class`]). A deadline well past the gateway's own
//! request timeout turns a hang into "lost" instead of a stuck run.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;
use livepeer_trickle::{ClientConfig, HttpPublisher, Publish, WriteSegment};
use rand::rngs::SmallRng;
use rand::{Rng as _, SeedableRng as _};
use serde_json::{Value, json};
use tokio::time::Instant;

/// Model ids the simulators serve.
pub(super) const T2I_MODEL: &str = "stabilityai/sd-turbo";
/// The LLM model id.
pub(super) const LLM_MODEL: &str = "meta-llama/Meta-Llama-3.1-8B-Instruct";
/// Segments each live client publishes per stream.
const LIVE_SEGMENTS: usize = 3;
const LIVE_SEGMENT_BYTES: usize = 64 << 10;

/// How one request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Class {
    /// A 2xx with a well-formed answer (and, for images, a downloadable result); a stream that
    /// ended with its final event.
    Answered,
    /// A non-2xx status with a JSON error body, or a stream that ended with an error event.
    Clean,
    /// Anything else: no status (reset, refused), a 2xx whose body is not the answer, an
    /// error status without a JSON body, a stream cut or ended without a final or error
    /// event, or no end within the deadline.
    Lost,
}

/// What a request was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Kind {
    /// `POST /text-to-image`, then the result's download.
    Image,
    /// `POST /llm`, one JSON answer.
    Llm,
    /// `POST /llm` with `stream: true`, read to its end.
    LlmStream,
    /// `POST /live/video-to-video/{name}/start`.
    LiveStart,
    /// `POST /live/video-to-video/{name}/stop`, after publishing.
    LiveStop,
}

impl Kind {
    /// Its name in the report.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Image => "text-to-image (+ download)",
            Self::Llm => "llm",
            Self::LlmStream => "llm stream",
            Self::LiveStart => "live start",
            Self::LiveStop => "live stop",
        }
    }
}

/// One finished request.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    /// The request's id (also its ledger key's first word).
    pub(crate) id: String,
    pub(crate) kind: Kind,
    pub(crate) class: Class,
    /// Why it was lost or failed: the status, the error.
    pub(crate) why: String,
}

/// What the clients share.
#[derive(Debug)]
pub(crate) struct Load {
    /// The gateway's public base URL.
    pub(crate) base: String,
    pub(crate) http: reqwest::Client,
    /// When clients stop starting new requests.
    pub(crate) end: Instant,
    /// How long one request may take before it counts as lost.
    pub(crate) deadline: Duration,
    /// Live segments published, and publishes that failed (not classified: the channel
    /// belongs to a stream that may be failing over).
    pub(crate) published: Mutex<(u64, u64)>,
    outcomes: Mutex<Vec<Outcome>>,
    /// The gateway's request id (`X-Request-Id`) of each client request that got one.
    gateway_ids: Mutex<HashMap<String, String>>,
}

impl Load {
    /// Clients of `base` until `end`.
    pub(crate) fn new(base: String, end: Instant, deadline: Duration) -> anyhow::Result<Self> {
        // No idle connections are kept: a pooled connection the gateway closed while idle
        // would fail the next request without a status through no fault of the gateway's
        // request handling, and be counted as lost.
        let http = reqwest::Client::builder().pool_max_idle_per_host(0).build()?;
        let (outcomes, published) = (Mutex::new(Vec::new()), Mutex::new((0, 0)));
        let gateway_ids = Mutex::default();
        Ok(Self { base, http, end, deadline, published, outcomes, gateway_ids })
    }

    /// Every outcome so far.
    pub(crate) fn outcomes(&self) -> Vec<Outcome> {
        self.outcomes.lock().map(|o| o.clone()).unwrap_or_default()
    }

    /// Client request id → the gateway's request id.
    pub(crate) fn gateway_ids(&self) -> HashMap<String, String> {
        self.gateway_ids.lock().map(|g| g.clone()).unwrap_or_default()
    }

    fn note_gateway_id(&self, id: &str, resp: &reqwest::Response) {
        let Some(gw) = resp.headers().get("x-request-id").and_then(|v| v.to_str().ok()) else {
            return;
        };
        if let Ok(mut ids) = self.gateway_ids.lock() {
            ids.insert(id.to_owned(), gw.to_owned());
        }
    }

    fn record(&self, id: &str, kind: Kind, (class, why): (Class, String)) {
        if let Ok(mut o) = self.outcomes.lock() {
            o.push(Outcome { id: id.to_owned(), kind, class, why });
        }
    }

    /// `f` within the deadline, else lost.
    async fn bounded(&self, f: impl Future<Output = (Class, String)>) -> (Class, String) {
        tokio::time::timeout(self.deadline, f)
            .await
            .unwrap_or_else(|_| (Class::Lost, format!("no end within {:?}", self.deadline)))
    }
}

/// Runs `batch` batch clients and `live` live clients until `load.end`, and waits for their
/// last requests.
pub(crate) async fn run(load: Arc<Load>, batch: usize, live: usize, seed: u64) {
    let mut set = tokio::task::JoinSet::new();
    for n in 0..batch {
        let rng = SmallRng::seed_from_u64(seed ^ (n as u64 + 1).wrapping_mul(0x9e37_79b9));
        set.spawn(batch_client(load.clone(), n, rng));
    }
    for n in 0..live {
        set.spawn(live_client(load.clone(), n));
    }
    while set.join_next().await.is_some() {}
}

async fn batch_client(load: Arc<Load>, n: usize, mut rng: SmallRng) {
    let mut i = 0u64;
    while Instant::now() < load.end {
        let id = format!("soak-{n}-{i}");
        i += 1;
        let kind = match rng.random_range(0..10u8) {
            0..=3 => Kind::Image,
            4..=5 => Kind::Llm,
            _ => Kind::LlmStream,
        };
        let ended = load.bounded(one(&load, kind, &id)).await;
        let failed = ended.0 != Class::Answered;
        load.record(&id, kind, ended);
        if failed {
            // As a real client backs off: a refusal is quick, and retrying at once would
            // make the run mostly refusals.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn one(load: &Load, kind: Kind, id: &str) -> (Class, String) {
    let words = "tell me a story about lighthouses and ships at night";
    let llm = |stream: bool| {
        json!({"model": LLM_MODEL, "max_tokens": 16, "stream": stream,
               "messages": [{"role": "user", "content": format!("{id} {words}")}]})
    };
    match kind {
        Kind::Image => {
            let body = json!({"prompt": format!("{id} a lighthouse"), "model_id": T2I_MODEL,
                              "width": 64, "height": 64});
            batch(load, id, "text-to-image", body, image_answer).await
        }
        Kind::Llm => batch(load, id, "llm", llm(false), llm_answer).await,
        Kind::LlmStream => stream(load, id, llm(true)).await,
        Kind::LiveStart | Kind::LiveStop => (Class::Lost, "not a batch request".to_owned()),
    }
}

/// A non-2xx answer: clean when its body is a JSON object.
fn error_answer(status: reqwest::StatusCode, body: &[u8]) -> (Class, String) {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(_)) => (Class::Clean, format!("{}", status.as_u16())),
        _ => (Class::Lost, format!("{} without a JSON error body", status.as_u16())),
    }
}

/// Sends `body` to `path`; a 2xx JSON body is judged by `check`.
async fn batch<F>(load: &Load, id: &str, path: &str, body: Value, check: F) -> (Class, String)
where
    F: AsyncFnOnce(&Load, &Value) -> (Class, String),
{
    let sent = load.http.post(format!("{}/{path}", load.base)).json(&body).send().await;
    let resp = match sent {
        Ok(r) => r,
        Err(e) => return (Class::Lost, format!("no status: {e:#}")),
    };
    load.note_gateway_id(id, &resp);
    let status = resp.status();
    let bytes = match resp.bytes().await {
        Ok(b) => b,
        Err(e) => return (Class::Lost, format!("{} then the body broke: {e:#}", status.as_u16())),
    };
    if !status.is_success() {
        return error_answer(status, &bytes);
    }
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(value) => check(load, &value).await,
        Err(_) => (Class::Lost, format!("{} with a body that is not JSON", status.as_u16())),
    }
}

/// An image answer names a result the client can download.
async fn image_answer(load: &Load, value: &Value) -> (Class, String) {
    let Some(url) = value.pointer("/images/0/url").and_then(Value::as_str) else {
        return (Class::Lost, "200 without images[0].url".to_owned());
    };
    let got = match load.http.get(url).send().await {
        Ok(r) => r,
        Err(e) => return (Class::Lost, format!("result download: no status: {e:#}")),
    };
    let status = got.status();
    match got.bytes().await {
        Ok(b) if status.is_success() && !b.is_empty() => (Class::Answered, String::new()),
        Ok(_) => (Class::Lost, format!("result download: {}", status.as_u16())),
        Err(e) => (Class::Lost, format!("result download broke: {e:#}")),
    }
}

async fn llm_answer(_: &Load, value: &Value) -> (Class, String) {
    match value.pointer("/choices/0/message/content").and_then(Value::as_str) {
        Some(_) => (Class::Answered, String::new()),
        None => (Class::Lost, "200 without choices[0].message".to_owned()),
    }
}

/// What one server-sent event says.
#[derive(Debug, PartialEq, Eq)]
enum Event {
    Token,
    Final,
    Error,
    Garbled,
}

fn parse_event(raw: &[u8]) -> Event {
    let text = String::from_utf8_lossy(raw);
    if text.lines().any(|l| l.trim() == "event: error") {
        return Event::Error;
    }
    let data: String = text.lines().filter_map(|l| l.strip_prefix("data:")).collect();
    let data = data.trim();
    if data == "[DONE]" {
        return Event::Final;
    }
    match serde_json::from_str::<Value>(data) {
        Ok(v) if v.get("error").is_some() => Event::Error,
        Ok(v) => match v.pointer("/choices/0/finish_reason").and_then(Value::as_str) {
            Some(reason) if !reason.is_empty() => Event::Final,
            _ => Event::Token,
        },
        Err(_) => Event::Garbled,
    }
}

/// A streamed LLM request, read to its end.
async fn stream(load: &Load, id: &str, body: Value) -> (Class, String) {
    let sent = load.http.post(format!("{}/llm", load.base)).json(&body).send().await;
    let resp = match sent {
        Ok(r) => r,
        Err(e) => return (Class::Lost, format!("no status: {e:#}")),
    };
    load.note_gateway_id(id, &resp);
    let status = resp.status();
    if !status.is_success() {
        return match resp.bytes().await {
            Ok(b) => error_answer(status, &b),
            Err(e) => (Class::Lost, format!("{} then the body broke: {e:#}", status.as_u16())),
        };
    }
    let (mut chunks, mut buf, mut scanned) = (resp.bytes_stream(), Vec::<u8>::new(), 0usize);
    let (mut finished, mut garbled, mut error) = (false, None, false);
    loop {
        match chunks.next().await {
            Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
            Some(Err(e)) if error => return (Class::Clean, format!("error event, then {e:#}")),
            Some(Err(e)) => return (Class::Lost, format!("stream broke, no error event: {e:#}")),
            None => break,
        }
        // Only the new bytes are searched (a huge event arrives in many chunks).
        while let Some(at) = buf[scanned.saturating_sub(1)..].windows(2).position(|w| w == b"\n\n")
        {
            let at = at + scanned.saturating_sub(1);
            scanned = 0;
            let event: Vec<u8> = buf.drain(..at + 2).collect();
            match parse_event(&event) {
                Event::Token => {}
                Event::Final => finished = true,
                Event::Error => error = true,
                Event::Garbled => {
                    garbled.get_or_insert_with(|| snippet(&event));
                }
            }
        }
        scanned = buf.len();
    }
    match (error, finished, garbled) {
        (true, _, _) => (Class::Clean, "error event".to_owned()),
        (false, true, None) => (Class::Answered, String::new()),
        (false, _, Some(what)) => {
            (Class::Lost, format!("an event that is not JSON ({what}), and no error event"))
        }
        (false, false, None) => (Class::Lost, "stream ended without a final event".to_owned()),
    }
}

/// The start of `event`, for the report.
fn snippet(event: &[u8]) -> String {
    let head = String::from_utf8_lossy(&event[..event.len().min(48)]);
    let tail = String::from_utf8_lossy(&event[event.len().saturating_sub(24)..]);
    format!("{} bytes: {:?}…{:?}", event.len(), head.trim_end(), tail)
}

/// Starts, feeds and stops streams until `load.end`.
async fn live_client(load: Arc<Load>, n: usize) {
    let mut i = 0u64;
    while Instant::now() < load.end {
        let name = format!("soak-live-{n}-{i}");
        i += 1;
        // The same Authorization on start and stop, as a go-livepeer-style client sends.
        let auth = format!("Bearer {name}-key");
        let mut urls = None;
        let started = load.bounded(live_start(&load, &name, &auth, &mut urls)).await;
        load.record(&name, Kind::LiveStart, started);
        let Some(publish_url) = urls else {
            // No stream: wait a little before the next try, as a real client backs off.
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let published = tokio::time::timeout(load.deadline, publish(&load, &publish_url)).await;
        if let Ok(mut p) = load.published.lock() {
            match published {
                Ok(Ok(n)) => p.0 += n,
                _ => p.1 += 1,
            }
        }
        let stopped = load.bounded(live_stop(&load, &name, &auth)).await;
        load.record(&name, Kind::LiveStop, stopped);
    }
}

async fn live_start(
    load: &Load,
    name: &str,
    auth: &str,
    urls: &mut Option<String>,
) -> (Class, String) {
    let url = format!("{}/live/video-to-video/{name}/start", load.base);
    let body = json!({"pipeline": "noop", "params": {"prompt": name}});
    let sent = load.http.post(url).header("authorization", auth).json(&body).send().await;
    let resp = match sent {
        Ok(r) => r,
        Err(e) => return (Class::Lost, format!("no status: {e:#}")),
    };
    let status = resp.status();
    let bytes = match resp.bytes().await {
        Ok(b) => b,
        Err(e) => return (Class::Lost, format!("{} then the body broke: {e:#}", status.as_u16())),
    };
    if !status.is_success() {
        return error_answer(status, &bytes);
    }
    let value: Value = serde_json::from_slice(&bytes).unwrap_or_default();
    match value.get("publish_url").and_then(Value::as_str) {
        Some(u) => {
            *urls = Some(u.to_owned());
            (Class::Answered, String::new())
        }
        None => (Class::Lost, format!("{} without publish_url", status.as_u16())),
    }
}

/// Publishes [`LIVE_SEGMENTS`] segments; how many went out.
async fn publish(load: &Load, url: &str) -> anyhow::Result<u64> {
    let config = ClientConfig { max_retries: 2, ..ClientConfig::default() };
    let mut publisher = HttpPublisher::new(load.http.clone(), url, "video/MP2T", config)?;
    let data = Bytes::from(vec![0x47u8; LIVE_SEGMENT_BYTES]);
    for _ in 0..LIVE_SEGMENTS {
        let mut writer = publisher.segment().await?;
        writer.write(data.clone()).await?;
        writer.finish().await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    publisher.close().await?;
    Ok(LIVE_SEGMENTS as u64)
}

async fn live_stop(load: &Load, name: &str, auth: &str) -> (Class, String) {
    let url = format!("{}/live/video-to-video/{name}/stop", load.base);
    let resp = match load.http.post(url).header("authorization", auth).send().await {
        Ok(r) => r,
        Err(e) => return (Class::Lost, format!("no status: {e:#}")),
    };
    let status = resp.status();
    match resp.bytes().await {
        Ok(_) if status.is_success() => (Class::Answered, String::new()),
        Ok(b) => error_answer(status, &b),
        Err(e) => (Class::Lost, format!("{} then the body broke: {e:#}", status.as_u16())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_read_as_the_gateway_and_the_simulator_write_them() {
        let token = br#"data: {"choices":[{"delta":{"content":"a"},"finish_reason":""}]}"#;
        assert_eq!(parse_event(token), Event::Token);
        let last = br#"data: {"choices":[{"delta":{},"finish_reason":"stop"}]}"#;
        assert_eq!(parse_event(last), Event::Final);
        assert_eq!(parse_event(b"data: [DONE]\n\n"), Event::Final);
        let error = b"event: error\ndata: {\"error\": {\"message\": \"x\"}}\n\n";
        assert_eq!(parse_event(error), Event::Error);
        assert_eq!(parse_event(b"data: {\"choices\": \xff\n\n"), Event::Garbled);
    }
}
