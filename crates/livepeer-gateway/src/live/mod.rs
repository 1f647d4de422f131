//! Live AI video (live-video-to-video): the client publishes its media into a trickle channel
//! the gateway hosts and reads the processed media from another; the gateway relays both to an
//! orchestrator it selects, pays it as the stream runs, and replaces it mid-stream when it
//! fails, with the client's channels unchanged (PROTOCOL.md §8–9, GATEWAY.md §5.10, §6.6).
//!
//! Routes:
//! - `POST /live/video-to-video/{stream}/start`: JSON `{pipeline, params, stream_id,
//!   orchestrator}`; answers the four client channel URLs and the control routes.
//! - `POST /live/video-to-video/{stream}/update`: new params (JSON), forwarded on the
//!   orchestrator's control channel.
//! - `GET /live/video-to-video/{stream}/status`: rates, latency, serving orchestrator, swaps,
//!   payments and the orchestrator's last events.
//! - `POST` or `DELETE /live/video-to-video/{stream}/stop`.
//! - `/ai/trickle/{channel}…`: the client's channels `{stream}-{random}` and its `-out`,
//!   `-control` and `-events` siblings.
//!
//! With an auth webhook configured, each new stream is accepted or refused by the operator's
//! service first ([`AuthWebhook`]).

mod auth;
mod relay;
mod stream;
pub mod ts;

pub use auth::{AuthWebhook, Heartbeat};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use livepeer_trickle::{ClientConfig, Hub, HubConfig};
use serde_json::{Value, json};

use crate::error::json_error;
use crate::metrics::Metrics;
use crate::orchestrator::Pool;
use crate::payment::Payments;
use crate::task::Tasks;
pub use stream::StreamStatus;
use stream::{Stream, StreamSpec};

/// Live video settings (flags `--live-*`).
#[derive(Debug, Clone)]
pub struct LiveConfig {
    /// How often the serving orchestrator is paid (go-livepeer `-livePaymentInterval`, 5 s).
    pub payment_interval: Duration,
    /// An orchestrator whose output stalls this long while input flows is replaced
    /// (go-livepeer: 30 s).
    pub out_segment_timeout: Duration,
    /// An orchestrator that sends no event for this long is replaced (go-livepeer: 30 s).
    pub events_timeout: Duration,
    /// Deadline of the start call (go-livepeer: 5 s).
    pub start_timeout: Duration,
    /// Most orchestrator replacements per stream within [`LiveConfig::swap_window`]; one more
    /// fault ends the stream (go-livepeer: 2 in 3 min).
    pub max_swaps: u32,
    /// The window of [`LiveConfig::max_swaps`].
    pub swap_window: Duration,
    /// Most streams at once.
    pub max_streams: usize,
    /// Orchestrators tried per start or swap.
    pub max_attempts: u32,
    /// How long the status of a stopped stream stays readable.
    pub status_linger: Duration,
    /// Base of the URLs handed to clients, e.g. `https://gw.example.com`; default: from the
    /// request's Host.
    pub public_url: Option<String>,
    /// The operator's service that accepts or refuses each new stream (go-livepeer
    /// `-liveAIAuthWebhookUrl`).
    pub auth_webhook: Option<AuthWebhook>,
    /// The heartbeat that can terminate running streams (go-livepeer `-liveAIHeartbeatURL`).
    pub heartbeat: Option<Heartbeat>,
}

impl Default for LiveConfig {
    fn default() -> Self {
        Self {
            payment_interval: Duration::from_secs(5),
            out_segment_timeout: Duration::from_secs(5),
            events_timeout: Duration::from_secs(30),
            start_timeout: Duration::from_secs(5),
            max_swaps: 3,
            swap_window: Duration::from_secs(180),
            max_streams: 1000,
            max_attempts: 3,
            status_linger: Duration::from_secs(60),
            public_url: None,
            auth_webhook: None,
            heartbeat: None,
        }
    }
}

/// State of the live routes; cheap to clone.
#[derive(Debug, Clone)]
pub struct LiveState {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) config: LiveConfig,
    pub(crate) hub: Hub,
    pub(crate) pool: Pool,
    pub(crate) metrics: Metrics,
    /// How orchestrators are paid (and `Livepeer-Segment` headers signed).
    pub(crate) payments: Payments,
    /// Start calls and payments.
    pub(crate) http: reqwest::Client,
    /// Trickle clients toward orchestrators.
    pub(crate) trickle: reqwest::Client,
    pub(crate) trickle_config: ClientConfig,
    streams: Mutex<HashMap<String, Arc<Stream>>>,
    tasks: Tasks,
}

/// Client channel mime types: media in and out, JSON control and events.
const MEDIA_MIME: &str = "video/MP2T";
const JSON_MIME: &str = "application/json";
/// Largest `/start` or `/update` body.
const MAX_CONTROL_BODY: usize = 64 * 1024;

impl LiveState {
    /// Live state over the gateway's pool and payers; its channel sweeper runs on `tasks`.
    pub fn new(
        config: LiveConfig,
        pool: Pool,
        metrics: Metrics,
        payments: Payments,
        tasks: &Tasks,
    ) -> Result<Self, String> {
        let trickle_config = ClientConfig {
            // A read or write that stalls mid-segment fails after the same limit the output
            // watchdog applies; broken connections fail at once regardless.
            chunk_timeout: config.out_segment_timeout,
            max_retries: 2,
            ..ClientConfig::default()
        };
        // HTTP/1.1, one connection per open request: a preconnected POST or GET waits for
        // data for a long time, and over HTTP/2 every one would hold one of the connection's
        // concurrent streams (250 on a Go orchestrator) until new requests queue behind them.
        let trickle = reqwest::Client::builder()
            .http1_only()
            .danger_accept_invalid_certs(trickle_config.accept_invalid_certs)
            .connect_timeout(trickle_config.connect_timeout)
            .tcp_nodelay(true)
            .pool_max_idle_per_host(1024)
            .build()
            .map_err(|e| e.to_string())?;
        let http = reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .connect_timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| e.to_string())?;
        // Three segments per client channel rather than go-livepeer's five: a live client more
        // than a few seconds behind wants the live edge anyway, and at 2 Mbit/s each segment
        // held costs 250 kB per channel.
        let hub = Hub::new(HubConfig {
            autocreate: false,
            window: 3,
            // Four channels per stream.
            max_channels: config.max_streams.saturating_mul(4),
            ..HubConfig::default()
        });
        let sweeper = hub.clone();
        tasks.spawn("trickle-sweeper", move |cancel| sweeper.run_sweeper(cancel));
        let inner = Inner {
            config,
            hub,
            pool,
            metrics,
            payments,
            http,
            trickle,
            trickle_config,
            streams: Mutex::default(),
            tasks: tasks.clone(),
        };
        let live = Self { inner: Arc::new(inner) };
        if let Some(beat) = live.inner.config.heartbeat.clone() {
            let live = live.clone();
            tasks.spawn("live-heartbeat", move |cancel| async move {
                let mut tick = tokio::time::interval(beat.interval);
                tick.reset();
                loop {
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tick.tick() => live.beat(&beat).await,
                    }
                }
            });
        }
        Ok(live)
    }

    /// One heartbeat: report the running streams, stop those the service terminated.
    async fn beat(&self, beat: &Heartbeat) {
        let running: Vec<Arc<Stream>> = self
            .inner
            .streams
            .lock()
            .map(|s| s.values().filter(|s| !s.is_stopped()).cloned().collect())
            .unwrap_or_default();
        if running.is_empty() {
            return;
        }
        let ids: Vec<String> = running.iter().map(|s| s.spec.id.clone()).collect();
        match auth::heartbeat(&self.inner.http, beat, &ids).await {
            Ok(terminated) => {
                for stream in running.iter().filter(|s| terminated.contains(&s.spec.id)) {
                    tracing::info!(stream = stream.spec.name, "heartbeat terminated the stream");
                    stream.stop("credit_exhaustion");
                }
            }
            // Streams keep running when the service is down, as go-livepeer's do.
            Err(e) => tracing::warn!(error = e, "live heartbeat failed"),
        }
    }

    /// The trickle hub holding the client channels.
    pub fn hub(&self) -> &Hub {
        &self.inner.hub
    }

    /// Status of every stream, running or recently stopped.
    pub fn streams(&self) -> Vec<StreamStatus> {
        let streams: Vec<Arc<Stream>> =
            self.inner.streams.lock().map(|s| s.values().cloned().collect()).unwrap_or_default();
        streams.iter().map(|s| s.status()).collect()
    }

    fn find(&self, key: &str) -> Option<Arc<Stream>> {
        let streams = self.inner.streams.lock().ok()?;
        streams.get(key).cloned().or_else(|| streams.values().find(|s| s.spec.id == key).cloned())
    }
}

/// The live routes and the client trickle channels.
pub fn router(live: LiveState) -> Router {
    let trickle = live.inner.hub.router();
    Router::new()
        .route("/live/video-to-video/{stream}/start", post(start))
        .route("/live/video-to-video/{stream}/update", post(update))
        .route("/live/video-to-video/{stream}/status", get(status))
        .route("/live/video-to-video/{stream}/stop", post(stop).delete(stop))
        .with_state(live)
        .nest("/ai/trickle", trickle)
}

/// The admin listener's live route: `GET /live/streams`, the status of every stream, running
/// or recently stopped.
pub fn admin_router(live: LiveState) -> Router {
    Router::new()
        .route(
            "/live/streams",
            get(|State(live): State<LiveState>| async move {
                let streams = live.streams();
                axum::Json(json!({ "count": streams.len(), "streams": streams }))
            }),
        )
        .with_state(live)
}

/// The body of `/start`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StartBody {
    /// Pipeline (model id), e.g. `noop`, `streamdiffusion`, `comfyui`.
    #[serde(default, alias = "model_id")]
    pipeline: Option<String>,
    #[serde(default)]
    params: Option<Value>,
    #[serde(default)]
    stream_id: Option<String>,
    /// Only orchestrators whose URL contains this (go-livepeer's `orchestrator` query key).
    #[serde(default)]
    orchestrator: Option<String>,
}

fn field_error(field: &str, message: impl Into<String>) -> Response {
    json_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_error", message.into(), Some(field))
}

/// A stream name is one path segment, used as the base of four channel names.
fn check_name(name: &str) -> Option<Response> {
    let valid = !name.is_empty()
        && name.len() <= 128
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        && !["-out", "-control", "-events"].iter().any(|s| name.ends_with(s));
    (!valid).then(|| {
        field_error(
            "stream",
            "stream names are 1-128 characters of A-Z a-z 0-9 . _ - and do not end in -out, -control or -events",
        )
    })
}

async fn read_body(req: Request) -> Result<Bytes, Response> {
    axum::body::to_bytes(req.into_body(), MAX_CONTROL_BODY).await.map_err(|_| {
        json_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("request body exceeds {MAX_CONTROL_BODY} bytes"),
            Some("body"),
        )
    })
}

async fn start(State(live): State<LiveState>, Path(name): Path<String>, req: Request) -> Response {
    if let Some(r) = check_name(&name) {
        return r;
    }
    let is_form =
        req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| {
            v.starts_with("multipart/") || v.starts_with("application/x-www-form")
        });
    if is_form {
        // MediaMTX's form hook means "pull RTMP from me", which this gateway does not do.
        return json_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_ingest",
            "RTMP/WHIP ingest through MediaMTX is not supported; POST JSON and publish MPEG-TS segments to the returned trickle publish_url".into(),
            Some("body"),
        );
    }
    let base = public_base(&live.inner.config, req.headers(), req.uri());
    let query = req.uri().query().unwrap_or_default().to_owned();
    let authorization =
        req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body = match read_body(req).await {
        Ok(body) => body,
        Err(r) => return r,
    };
    let parsed: StartBody = if body.iter().all(u8::is_ascii_whitespace) {
        StartBody::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(b) => b,
            Err(e) => return field_error("body", format!("invalid JSON: {e}")),
        }
    };
    let mut pipeline = parsed.pipeline.unwrap_or_else(|| "noop".to_owned());
    if pipeline.is_empty() || pipeline.len() > 128 {
        return field_error("pipeline", "pipeline must be 1-128 characters");
    }
    let mut params = parsed.params.unwrap_or_else(|| json!({}));
    if !params.is_object() {
        return field_error("params", "params must be a JSON object");
    }
    let mut stream_id = parsed.stream_id.filter(|s| !s.is_empty()).unwrap_or_else(|| name.clone());
    if stream_id.len() > 128 {
        return field_error("stream_id", "stream_id is at most 128 characters");
    }
    let route = |action: &str| format!("{base}/live/video-to-video/{name}/{action}");
    if let Some(hook) = &live.inner.config.auth_webhook {
        let ask = auth::AuthRequest {
            stream: &name,
            pipeline: &pipeline,
            stream_id: &stream_id,
            params: &params,
            query: &query,
            authorization: authorization.as_deref(),
            gateway_host: base.trim_start_matches("http://").trim_start_matches("https://"),
            status_url: route("status"),
            update_url: route("update"),
        };
        match auth::check(&live.inner.http, hook, &ask).await {
            Ok(overrides) => {
                pipeline = overrides.pipeline.unwrap_or(pipeline);
                params = overrides.params.unwrap_or(params);
                stream_id = overrides.stream_id.unwrap_or(stream_id);
            }
            Err(refused) => return refused,
        }
    }
    let spec = StreamSpec {
        channel: format!("{name}-{:016x}", rand::random::<u64>()),
        name: name.clone(),
        id: stream_id,
        request_id: format!("{:016x}", rand::random::<u64>()),
        pipeline,
        pin: parsed.orchestrator.filter(|s| !s.is_empty()),
    };
    match stream::open(&live, spec, params).await {
        Ok(stream) => {
            let s = &stream.spec;
            let channel = |suffix: &str| format!("{base}/ai/trickle/{}{suffix}", s.channel);
            axum::Json(json!({
                "stream": s.name,
                "stream_id": s.id,
                "request_id": s.request_id,
                "pipeline": s.pipeline,
                "orchestrator": stream.status().orchestrator,
                "publish_url": channel(""),
                "subscribe_url": channel("-out"),
                "control_url": channel("-control"),
                "events_url": channel("-events"),
                "update_url": route("update"),
                "status_url": route("status"),
                "stop_url": route("stop"),
            }))
            .into_response()
        }
        Err(r) => r,
    }
}

async fn update(State(live): State<LiveState>, Path(name): Path<String>, req: Request) -> Response {
    let Some(stream) = live.find(&name) else { return not_found(&name) };
    let body = match read_body(req).await {
        Ok(body) => body,
        Err(r) => return r,
    };
    let params: Value = match serde_json::from_slice(&body) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => return field_error("params", "params must be a JSON object"),
        Err(e) => return field_error("params", format!("invalid JSON: {e}")),
    };
    if stream.is_stopped() {
        return json_error(
            StatusCode::GONE,
            "stream_stopped",
            "the stream has stopped".into(),
            None,
        );
    }
    let version = stream.set_params(params);
    axum::Json(json!({ "stream": stream.spec.name, "params_version": version })).into_response()
}

async fn status(State(live): State<LiveState>, Path(name): Path<String>) -> Response {
    match live.find(&name) {
        Some(stream) => axum::Json(stream.status()).into_response(),
        None => not_found(&name),
    }
}

async fn stop(State(live): State<LiveState>, Path(name): Path<String>) -> Response {
    match live.find(&name) {
        Some(stream) => {
            stream.stop("stopped by request");
            stream.wait_stopped(Duration::from_secs(5)).await;
            axum::Json(stream.status()).into_response()
        }
        None => not_found(&name),
    }
}

fn not_found(name: &str) -> Response {
    json_error(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("stream {name:?} not found"),
        Some("stream"),
    )
}

/// The base URL clients reach this gateway at.
fn public_base(config: &LiveConfig, headers: &HeaderMap, uri: &axum::http::Uri) -> String {
    if let Some(base) = &config.public_url {
        return base.trim_end_matches('/').to_owned();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))
        .filter(|h| h.chars().all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c)))
        .unwrap_or("127.0.0.1:9935");
    format!("http://{host}")
}

impl Inner {
    /// Adds a stream (replacing a stopped one of the same name); `false` when the gateway
    /// already runs its maximum.
    pub(crate) fn register(&self, stream: Arc<Stream>) -> bool {
        let Ok(mut streams) = self.streams.lock() else { return false };
        let running = streams.values().filter(|s| !s.is_stopped()).count();
        if running >= self.config.max_streams && !streams.contains_key(&stream.spec.name) {
            return false;
        }
        streams.insert(stream.spec.name.clone(), stream);
        true
    }

    pub(crate) fn too_many_streams(&self) -> Response {
        let mut r = json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_streams",
            format!("this gateway runs at most {} live streams", self.config.max_streams),
            None,
        );
        r.headers_mut().insert(header::RETRY_AFTER, axum::http::HeaderValue::from_static("5"));
        r
    }

    /// Forgets a stopped stream after its status has lingered, unless a new stream took the
    /// name meanwhile.
    pub(crate) fn forget_later(self: &Arc<Self>, stream: &Arc<Stream>) {
        let inner = self.clone();
        let stream = stream.clone();
        let linger = self.config.status_linger;
        self.tasks.spawn("live-status-linger", move |cancel| async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = tokio::time::sleep(linger) => {}
            }
            if let Ok(mut streams) = inner.streams.lock()
                && streams.get(&stream.spec.name).is_some_and(|s| Arc::ptr_eq(s, &stream))
            {
                streams.remove(&stream.spec.name);
            }
        });
    }

    pub(crate) fn spawn(&self, name: &'static str, fut: impl Future<Output = ()> + Send + 'static) {
        self.tasks.spawn(name, move |_| fut);
    }
}
