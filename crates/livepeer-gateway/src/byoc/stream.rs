//! BYOC streams (PROTOCOL.md §10.6, GATEWAY.md §6.7; go-livepeer byoc/stream_gateway.go):
//! `POST /process/stream/start` starts a stream of a BYOC capability on an orchestrator chosen
//! and paid as BYOC jobs are (`stream_orch`), and its client's trickle channels (video in,
//! video out, data, events, control) are hosted here under unguessable names and relayed to the
//! orchestrator's (`stream_relay`), which pays it every `--byoc-payment-interval` and replaces
//! it mid-stream when it fails, within the swap budget, with the client's channels unchanged.
//!
//! A stream is owned like a live stream (`live::Owner`): update, status, stop and the data
//! events need the `Authorization` its start carried or the secret the start answered.
//!
//! Differences from go-livepeer, on purpose: the first orchestrator is attached before `/start`
//! answers (so a stream no orchestrator can run is a 503, not a 200 followed by nothing); the
//! client's media goes over trickle channels the gateway hosts, not WHIP/WHEP/RTMP (those URLs
//! are answered empty); update, status, stop and data need the owner's credentials.

use std::sync::{Arc, Mutex};

use livepeer_trickle::{ClientConfig, Hub, HubConfig};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::ByocState;
use super::request::JobRequest;
use super::stream_state::{Counters, State};
pub use super::stream_state::{Flags, Phase, Swap};
pub(crate) use super::stream_state::{Inner, Stream};
use crate::error::{Error, Kind};
use crate::live::{Credentials, Denied, Owner};
use crate::task::Tasks;

/// Largest `/start` or `/update` body (go-livepeer: 10 MB).
pub const MAX_BODY: usize = 10 << 20;

pub(crate) use super::stream_state::{MAX_DATA_READERS, STOP_WAIT};

/// The start body (go-livepeer `StartRequest`).
#[derive(Debug, Default, Deserialize)]
struct StartBody {
    #[serde(default)]
    stream_name: Option<String>,
    #[serde(default)]
    stream_id: Option<String>,
    /// A JSON object in a string, as go-livepeer reads it; an object is taken as well.
    #[serde(default)]
    params: Option<Value>,
}

/// What the client's `/start` carried, parsed.
#[derive(Debug)]
pub struct StartRequest {
    /// The job (capability, timeout, filters), its id the stream id.
    pub job: JobRequest,
    /// Its enable flags.
    pub flags: Flags,
    /// The stream id: `{stream_name}-{stream_id}`, or a random one.
    pub stream_id: String,
    /// The worker's params.
    pub params: Value,
}

impl StartRequest {
    /// Parses the `Livepeer` header (`job`, already checked) and the body.
    pub fn parse(mut job: JobRequest, body: &[u8]) -> Result<Self, Error> {
        let bad = |field: &str, m: String| Error::new(Kind::InvalidRequest, m).field(field);
        let flags: Flags = serde_json::from_str(&job.parameters)
            .map_err(|e| bad("parameters", format!("parameters: {e}")))?;
        // Built under a budget of values: the params are kept for the stream's life (sent
        // again to each orchestrator it moves to), and a `Value` costs many times its bytes.
        let budget = crate::bounded_json::STREAM_VALUES;
        let start: StartBody = crate::bounded_json::from_slice(body, budget)
            .and_then(serde_json::from_value)
            .map_err(|e| bad("body", format!("invalid JSON request body: {e}")))?;
        let params = match start.params {
            None | Some(Value::Null) => Value::Null,
            Some(Value::String(s)) if s.is_empty() => Value::Null,
            Some(Value::String(s)) => match crate::bounded_json::from_slice(s.as_bytes(), budget) {
                Ok(v @ Value::Object(_)) => v,
                _ => return Err(bad("params", "invalid model params".into())),
            },
            Some(v @ Value::Object(_)) => v,
            Some(_) => return Err(bad("params", "invalid model params".into())),
        };
        let name = start.stream_name.unwrap_or_default();
        if name.ends_with("-out") {
            let m = "stream_name must not end in -out (the suffix of output streams)";
            return Err(bad("stream_name", m.into()));
        }
        let id = start.stream_id.filter(|s| !s.is_empty()).unwrap_or_else(random_id);
        let stream_id = if name.is_empty() { id } else { format!("{name}-{id}") };
        check_id(&stream_id)?;
        job.id = stream_id.clone();
        Ok(Self { job, flags, stream_id, params })
    }
}

fn random_id() -> String {
    hex::encode(rand::random::<[u8; 8]>())
}

/// A stream id goes into URL paths and channel names: letters, digits, `.`, `_`, `-`.
fn check_id(id: &str) -> Result<(), Error> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if ok {
        return Ok(());
    }
    let m = format!(
        "stream id {:?} must be 1 to 128 letters, digits, '.', '_' or '-'",
        id.chars().take(140).collect::<String>()
    );
    Err(Error::new(Kind::InvalidRequest, m).field("stream_id"))
}

/// The BYOC stream routes' state; cheap to clone.
#[derive(Debug, Clone)]
pub struct ByocStreams {
    pub(crate) inner: Arc<Inner>,
}

impl ByocStreams {
    /// The streams of `byoc`, their channels served by this gateway; URLs handed to clients
    /// start with `public_url` when set (else the request's host).
    pub fn new(byoc: ByocState, public_url: Option<String>, tasks: &Tasks) -> Result<Self, String> {
        let trickle_config = ClientConfig { max_retries: 2, ..ClientConfig::default() };
        let trickle = super::stream_state::trickle_client(&trickle_config, |b| b)?;
        let hub = Hub::new(HubConfig {
            autocreate: false,
            window: 3,
            max_channels: byoc.config.max_streams.saturating_mul(5),
            closed_linger: crate::live::CLOSED_CHANNEL_LINGER,
            ..HubConfig::default()
        });
        let sweeper = hub.clone();
        tasks.spawn("byoc-trickle-sweeper", move |cancel| sweeper.run_sweeper(cancel));
        let inner = Inner {
            byoc,
            hub,
            trickle,
            trickle_config,
            public_url,
            table: Mutex::default(),
            stopping: Mutex::default(),
            tasks: tasks.clone(),
        };
        Ok(Self { inner: Arc::new(inner) })
    }

    /// The hub of the client channels.
    pub fn hub(&self) -> &Hub {
        &self.inner.hub
    }

    /// The configured base of client URLs, if any.
    pub fn public_url(&self) -> Option<&str> {
        self.inner.public_url.as_deref()
    }

    /// Starts a stream: reserves its id, creates its channels, attaches the first
    /// orchestrator and hands the stream to its supervisor. Returns the stream and its secret.
    pub(crate) async fn start(
        &self,
        req: StartRequest,
        authorization: Option<&str>,
    ) -> Result<(Arc<Stream>, String), Error> {
        self.inner.byoc.check(&req.job)?;
        let (owner, secret) = Owner::new(authorization);
        let channel = format!("{}-{}", req.stream_id, hex::encode(rand::random::<[u8; 16]>()));
        let stream = Arc::new(Stream {
            id: req.stream_id,
            channel,
            job: req.job,
            flags: req.flags,
            owner,
            state: Mutex::new(State {
                phase: Phase::Starting,
                orchestrator: None,
                attempting: None,
                swaps: Vec::new(),
                stop_reason: None,
                params: req.params,
                last_event: None,
                payments_sent: 0,
                payments_failed: 0,
                tickets: 0,
                ev_wei: livepeer_pm::Ratio::ZERO,
                start_ev_wei: livepeer_pm::Ratio::ZERO,
            }),
            counters: Counters::default(),
            started: Instant::now(),
            stop: CancellationToken::new(),
            done: CancellationToken::new(),
            payments_out: Default::default(),
            data_readers: Arc::new(Semaphore::new(MAX_DATA_READERS)),
        });
        self.reserve(&stream)?;
        let mut guard = Opening { inner: self.inner.clone(), stream: &stream, done: false };
        for (name, mime, wanted) in stream.channels() {
            if wanted && let Err(e) = self.inner.hub.create(&name, mime) {
                // Not the channel's name: its random part guards the stream.
                let m = format!("cannot create the stream's channels: {e}");
                return Err(Error::new(Kind::TrickleUnavailable, m).retry_after(5));
            }
        }
        let session = match super::stream_orch::attach(&self.inner, &stream, &[]).await {
            Ok(session) => session,
            Err(e) => {
                // Every start call was answered, or stopped where it was left unanswered or
                // its answer broke off: nothing runs anywhere for this guard to stop.
                stream.with_state(|s| s.attempting = None);
                return Err(e);
            }
        };
        guard.done = true;
        drop(guard);
        super::stream_relay::spawn(self.inner.clone(), stream.clone(), session);
        Ok((stream, secret))
    }

    fn reserve(&self, stream: &Arc<Stream>) -> Result<(), Error> {
        let mut table = self.inner.table.lock().map_err(|_| internal())?;
        if table.contains_key(&stream.id) {
            let m = format!("stream already exists: {}", stream.id);
            return Err(Error::new(Kind::StreamExists, m).field("stream_id"));
        }
        let max = self.inner.byoc.config.max_streams;
        if table.len() >= max {
            let m = format!("too many BYOC streams: at most {max} at once");
            return Err(Error::new(Kind::TooManyStreams, m));
        }
        table.insert(stream.id.clone(), stream.clone());
        Ok(())
    }

    /// The stream `id` if `presented` proves its ownership.
    pub(crate) fn owned(&self, id: &str, presented: Credentials<'_>) -> Result<Arc<Stream>, Error> {
        let stream = self.inner.table.lock().ok().and_then(|t| t.get(id).cloned());
        let Some(stream) = stream else {
            return Err(Error::new(Kind::NotFound, "Stream not found").field("stream_id"));
        };
        match stream.owner.check(presented) {
            Ok(()) => Ok(stream),
            Err(Denied::Missing) => Err(Error::new(
                Kind::Unauthorized,
                format!("stream {id:?} needs its start's Authorization or its stream secret"),
            )),
            Err(Denied::Wrong) => Err(Error::new(
                Kind::NotStreamOwner,
                format!("stream {id:?} belongs to another client"),
            )),
        }
    }

    /// Stops `stream` and waits (bounded) for its supervisor to tell the orchestrator.
    pub(crate) async fn stop(&self, stream: &Arc<Stream>) -> Value {
        stream.end("stopped by the client");
        // The stop call's deadline and a little more.
        let _ = tokio::time::timeout(STOP_WAIT, stream.done.cancelled()).await;
        json!({ "stream_id": stream.id, "stopped": true })
    }

    /// New params for `stream`, sent to its orchestrator's `/ai/stream/update`: its status
    /// and body.
    pub(crate) async fn update(
        &self,
        stream: &Arc<Stream>,
        body: bytes::Bytes,
    ) -> Result<super::stream_orch::Answer, Error> {
        if stream.stop.is_cancelled() {
            return Err(Error::new(Kind::StreamStopped, "the stream has stopped"));
        }
        // Kept to start the stream again elsewhere. A body that is no JSON is sent on, as
        // go-livepeer sends it; one past the budget of values would be sent on but not kept,
        // so that a swap brought back older params: refused instead.
        match crate::bounded_json::from_slice(&body, crate::bounded_json::STREAM_VALUES) {
            Ok(v) => {
                stream.with_state(|s| s.params = v);
            }
            Err(e) if e.is_data() => {
                let m = format!("invalid params: {e}");
                return Err(Error::new(Kind::InvalidRequest, m).field("params"));
            }
            Err(_) => {}
        }
        super::stream_orch::update(&self.inner, stream, body).await
    }

    /// The status of every running stream, by id.
    pub fn statuses(&self) -> Vec<Value> {
        let streams: Vec<Arc<Stream>> =
            self.inner.table.lock().map(|t| t.values().cloned().collect()).unwrap_or_default();
        let mut out: Vec<Value> = streams.iter().map(|s| s.status()).collect();
        out.sort_by(|a, b| a["stream_id"].as_str().cmp(&b["stream_id"].as_str()));
        out
    }

    /// Running streams.
    pub fn len(&self) -> usize {
        self.inner.table.lock().map(|t| t.len()).unwrap_or(0)
    }

    /// Whether no stream runs.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn internal() -> Error {
    Error::new(Kind::Internal, "the table of BYOC streams is unusable")
}

/// A start in progress: dropped before it is done (a failure, or the client gone), it
/// releases the stream's channels and id.
struct Opening<'a> {
    inner: Arc<Inner>,
    stream: &'a Arc<Stream>,
    done: bool,
}

impl Drop for Opening<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let stream = self.stream;
        stream.end("the start failed");
        // A start call cut off by the client going away may have started the stream on the
        // orchestrator: stop it there rather than leave it running unpaid-for. Counted
        // before the id is released, so that a new start of it waits for this stop.
        let attempted = stream.with_state(|s| (s.orchestrator.is_none(), s.attempting.take()));
        let stopping = match attempted {
            Some((true, Some(orch))) => {
                let pending = self.inner.stop_pending(&orch, &stream.id);
                Some((orch, pending))
            }
            _ => None,
        };
        self.inner.release(stream);
        if let Some((orch, pending)) = stopping {
            let (inner, stream) = (self.inner.clone(), stream.clone());
            self.inner.tasks.spawn("byoc-stream-abandoned", move |_| async move {
                super::stream_orch::stop(&inner, &stream, &orch, "the start was abandoned").await;
                drop(pending);
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> JobRequest {
        JobRequest {
            id: String::new(),
            request: "{}".into(),
            parameters: r#"{"enable_video_ingress":true}"#.into(),
            capability: "c".into(),
            timeout_seconds: 60,
            include: Vec::new(),
            exclude: Vec::new(),
        }
    }

    #[test]
    fn the_stream_id_is_the_name_and_the_id_as_go_livepeer_joins_them() {
        let body = br#"{"stream_name":"cam","stream_id":"7","params":"{\"a\":1}"}"#;
        let r = StartRequest::parse(job(), body).unwrap();
        assert_eq!(r.stream_id, "cam-7");
        assert_eq!(r.job.id, "cam-7");
        assert_eq!(r.params, json!({"a": 1}));
        assert!(r.flags.enable_video_ingress && !r.flags.enable_data_output);
        let random = StartRequest::parse(job(), b"{}").unwrap();
        assert_eq!(random.stream_id.len(), 16);
        let object = StartRequest::parse(job(), br#"{"params":{"b":2}}"#).unwrap();
        assert_eq!(object.params, json!({"b": 2}));
    }

    #[test]
    fn bad_bodies_name_their_field() {
        let field = |body: &[u8]| {
            let e = StartRequest::parse(job(), body).unwrap_err();
            assert_eq!(e.kind(), Kind::InvalidRequest);
            e.field_name().unwrap().to_owned()
        };
        assert_eq!(field(b"nope"), "body");
        assert_eq!(field(br#"{"params":"[1]"}"#), "params");
        assert_eq!(field(br#"{"params":3}"#), "params");
        assert_eq!(field(br#"{"stream_name":"x-out"}"#), "stream_name");
        assert_eq!(field(br#"{"stream_id":"a/b"}"#), "stream_id");
        let mut bad = job();
        bad.parameters = "3".into();
        assert_eq!(StartRequest::parse(bad, b"{}").unwrap_err().field_name(), Some("parameters"));
    }
}
