//! A simulated Livepeer orchestrator that speaks the real wire protocol over real sockets.
//!
//! Tests, the demo and the benchmarks start it on port 0 with [`Sim::start`]; the
//! `livepeer-sim` binary runs one from the command line. Like go-livepeer's orchestrator it
//! serves gRPC (`net.Orchestrator`) and plain HTTP on one port, over TLS with a self-signed
//! certificate or over cleartext HTTP/1.1 + h2c; or, like an orchestrator whose AI worker is
//! a plain HTTP server, with its AI API on a second, HTTP/1.1-only port
//! ([`SimConfig::ai_http1_only`]). Its behaviour can be changed while it runs
//! (latency, error rate, hanging, garbage answers) and it can be stopped and restarted on the
//! same port, so failure handling is tested against real connection errors.
//!
//! It also serves the batch AI worker endpoints (`/text-to-image`, `/llm`, … and the
//! `/stream/<request>/<file>` result downloads) with deterministic outputs derived from each
//! request, the header checks an orchestrator makes, and its own run-time failure modes
//! ([`AiMode`]), so AI requests can fail while GetOrchestrator keeps answering.
//!
//! Configured with an ETH address it is an on-chain orchestrator: GetOrchestrator issues ticket
//! params bound to the requesting gateway and the quoted price, and every AI request's payment
//! is checked, credited and debited as go-livepeer does; [`Sim::payments`] shows the result.
//!
//! Live video-to-video runs as an orchestrator runs it: the start call, four trickle channels
//! under `/ai/trickle/`, a runner per stream ([`LiveMode`]) and `/payment`.
//!
//! BYOC capabilities ([`SimByoc`], [`SimConfig::byoc`]) are served as go-livepeer serves
//! registered external capabilities: `GET /process/token`, `POST /process/request/<path>` with a
//! simulated worker per capability ([`ByocKind`]), the `/ai/stream/*` calls with their trickle
//! channels, and their prices in GetOrchestrator (capability 37). [`ByocFault`] and
//! [`ByocStreamFault`] break them at run time and [`Sim::byoc_stats`] shows what they did.
//!
//! Video transcoding is served as a go-livepeer orchestrator serves it: GetOrchestrator
//! advertises the transcoder URI ([`Sim::service_url`]), the base price
//! ([`SimConfig::base_price`], wei per pixel) in `price_info` and the default capabilities;
//! `POST {transcoder}/segment` takes `Livepeer-Segment` (with `fullProfiles*`),
//! `Livepeer-Payment` and the raw segment, checks them in go-livepeer's order and with its
//! statuses and texts, sends `200 OK` and then a protobuf `TranscodeResult` whose rendition
//! URLs are `{transcoder}/stream/<auth session id>/<profile name>/<seq>.ts` (`.mp4` for MP4
//! profiles). Renditions are encoded by ffmpeg, or not at all with
//! [`SimConfig::transcode_fast`]; Σ pixels × `expected_price` is debited from (sender, auth
//! session id), and `TranscodeData.sig` is signed with [`SimConfig::eth_signer`].
//! [`TranscodeFault`] breaks it at run time and [`Sim::transcode_stats`] shows what it did.
#![cfg_attr(not(test), warn(unused_crate_dependencies))]

mod ai;
mod byoc;
mod byoc_job;
mod byoc_stream;
mod fault;
mod grpc;
mod jobs;
mod live;
mod llm;
mod media;
mod payment;
mod server;
mod transcode;
mod transcode_media;

// Used by the `livepeer-sim` binary only.
use anyhow as _;
use clap as _;
use tracing_subscriber as _;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use livepeer_pm::{Address, LocalSigner};
use livepeer_proto::net;
use tokio_util::sync::CancellationToken;

pub use ai::{AiFile, AiMode, AiRequestRecord};
pub use byoc::{
    BYOC_CAPABILITY_ID, ByocFault, ByocGate, ByocJobRecord, ByocKind, ByocStats, ByocStreamFault,
    MAX_LINES, SimByoc,
};
pub use fault::{AiFault, LedgerEntry};
pub use live::{LiveMode, LiveStats, RunningStream};
pub use payment::{PARAMS_EXPIRATION_BLOCKS, PaymentRejection, PaymentStats};
pub use server::SimError;
pub use transcode::{MAX_SEGMENT_BYTES, TranscodeFault, TranscodeStats};

/// One model the simulator serves.
#[derive(Debug, Clone)]
pub struct SimModel {
    /// Pipeline name, e.g. `text-to-image`.
    pub pipeline: String,
    /// Model id, e.g. `stabilityai/sd-turbo`.
    pub model: String,
    /// Whether it is loaded (warm).
    pub warm: bool,
    /// Concurrent requests it can take.
    pub capacity: u32,
    /// Price: wei per unit = `price.0 / price.1`.
    pub price: (i64, i64),
    /// ai-runner version it reports.
    pub runner_version: String,
}

impl SimModel {
    /// A warm model with capacity 1, price 0 and runner 0.14.1.
    pub fn new(pipeline: &str, model: &str) -> Self {
        Self {
            pipeline: pipeline.to_owned(),
            model: model.to_owned(),
            warm: true,
            capacity: 1,
            price: (0, 1),
            runner_version: "0.14.1".to_owned(),
        }
    }

    /// Sets the price per unit (numerator, denominator).
    #[must_use]
    pub fn price(mut self, per_unit: i64, pixels_per_unit: i64) -> Self {
        self.price = (per_unit, pixels_per_unit);
        self
    }

    /// Sets warm (true) or cold (false).
    #[must_use]
    pub fn warm(mut self, warm: bool) -> Self {
        self.warm = warm;
        self
    }

    /// Sets the capacity.
    #[must_use]
    pub fn capacity(mut self, capacity: u32) -> Self {
        self.capacity = capacity;
        self
    }
}

/// What the simulator does with incoming calls; changeable at run time.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Mode {
    /// Answer normally (after the configured latency, failing at the configured error rate).
    #[default]
    Normal,
    /// Accept the connection and the request, then never answer.
    Hang,
    /// Answer with a gRPC frame that is not a valid protobuf message.
    Garbage,
    /// Answer every call with this error, as a go-livepeer orchestrator would.
    Fail(String),
}

/// Static configuration of a simulated orchestrator.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Name used in logs.
    pub name: String,
    /// Listen address; port 0 picks a free one.
    pub bind: SocketAddr,
    /// Serve TLS with a self-signed certificate (like go-livepeer) instead of cleartext h2c.
    pub tls: bool,
    /// Ethereum address; `None` behaves as an off-chain orchestrator (no ticket params, no
    /// payment checks). With an address, payments are checked as an on-chain one checks them.
    pub eth_address: Option<Address>,
    /// Node version it reports.
    pub version: String,
    /// Base (transcoding) price.
    pub base_price: (i64, i64),
    /// AI models it serves.
    pub models: Vec<SimModel>,
    /// Fixed delay before each answer.
    pub latency: Duration,
    /// Extra uniformly random delay, 0..jitter.
    pub jitter: Duration,
    /// Fraction of calls, in parts per million, answered with `OrchestratorCapped`.
    pub error_rate_ppm: u32,
    /// Ticket face value, wei, advertised when the quoted price is above 0 (go-livepeer's
    /// face value before the sender's reserve caps it). Must be at least `ticket_ev`.
    pub face_value: u128,
    /// The EV each ticket should carry, wei (`-ticketEV`): it sets the win probability
    /// (`ticket_ev × ceil((2^256 − 1) / face_value)`), and a paid request needs a balance of at
    /// least this much. `face_value == ticket_ev` makes every ticket win.
    pub ticket_ev: u128,
    /// Seed of its random choices (session ids, secrets, jitter, errors).
    pub seed: u64,
    /// URI it advertises as `transcoder`; `None` advertises its own listen URL. AI result URLs
    /// (`{uri}/stream/...`) start with it too, as go-livepeer's do.
    pub service_uri: Option<String>,
    /// Base its live and BYOC stream start answers name for their trickle channels; `None`:
    /// `{service_uri}/ai/trickle`, where go-livepeer's orchestrators put them. Another base
    /// makes an orchestrator that points the gateway elsewhere.
    pub trickle_base: Option<String>,
    /// With video input off, a BYOC stream writes this often a data line `{"tick": n}` (data
    /// output on) and an output segment of one MPEG-TS null packet (video output on), as a
    /// worker producing output of its own would; `None`: output only for input segments.
    pub byoc_data_interval: Option<Duration>,
    /// Delay before each LLM token (streamed or not), to make generation take time.
    pub token_delay: Duration,
    /// Processing time of every AI job before its output is produced (LLM: before the first
    /// token), to keep requests in flight, e.g. to reach a model's capacity.
    pub ai_latency: Duration,
    /// Live video: an ffmpeg video filter (e.g. `hflip`) each segment is re-encoded through;
    /// `None` passes segments through byte for byte, as they arrive.
    pub live_filter: Option<String>,
    /// Live video: how often each stream's runner publishes a status event.
    pub live_event_interval: Duration,
    /// Live video: how often the payment processor bills a stream's time (go-livepeer's
    /// `-livePaymentInterval`, 5 s).
    pub live_payment_interval: Duration,
    /// Live video: the payment processor bills this many seconds per second of stream (1 =
    /// real time, as go-livepeer). Above 1 it runs a stream's prepaid credit down faster, to
    /// exercise the "insufficient balance" stop.
    pub live_billing_speedup: u64,
    /// Serve the AI and live HTTP API on a second port of the same address that speaks
    /// HTTP/1.1 only (over TLS with ALPN `http/1.1` only, when `tls`), and advertise that
    /// port as the transcoder URI (unless `service_uri` says otherwise): an orchestrator whose
    /// AI worker is any plain HTTP server. gRPC stays on the main port.
    pub ai_http1_only: bool,
    // --- Soak-run knobs (`livepeer-gateway soak`); see `fault.rs`. ---
    /// Size in bytes of the answer [`AiFault::HugeBody`] sends.
    pub huge_body_bytes: usize,
    /// Keep a ledger of AI requests by the key in their body (a `prompt`, or the last
    /// message's text): paid attempts, delivered and spoiled answers ([`Sim::ledger`]). Off by
    /// default, as it grows with every distinct key.
    pub request_ledger: bool,
    /// BYOC capabilities it has registered (none by default).
    pub byoc: Vec<SimByoc>,
    /// BYOC streams: how often their time is debited (go-livepeer: every 23 s, 23 × price).
    pub byoc_stream_billing: Duration,
    // --- Transcoding (`POST /segment`); see `transcode.rs`. ---
    /// The key of `eth_address`: with both, `TranscodeData.sig` is
    /// `eth_sign(concat keccak256(rendition))` by it (PROTOCOL.md §6.4); without, it is empty.
    /// [`SimConfig::with_signer`] sets both.
    pub eth_signer: Option<Arc<LocalSigner>>,
    /// Fast mode, for load tests: no encoding; each rendition is a scaled-down copy of the
    /// input (its first whole TS packets, as many as the profile's bitrate gives the
    /// segment's duration), billed as `width × height × round(duration × fps)` (30 fps for a profile that keeps the
    /// source's rate). Off: every rendition is encoded by ffmpeg (libx264).
    pub transcode_fast: bool,
    /// Largest segment body read; a larger one is answered 500 `Internal Server Error`, as
    /// go-livepeer answers one above its 300 MB `MaxSegSize` ([`MAX_SEGMENT_BYTES`]).
    pub max_segment_bytes: usize,
    /// Transcoding sessions (auth token session ids) it holds at once (go-livepeer's
    /// `-maxSessions`, 10): a segment of a new session beyond it gets 403
    /// `OrchestratorCapped`. A session ends 70 s after its last segment. It is also how many
    /// segments are encoded at once.
    pub transcode_max_sessions: usize,
    /// Extra time each segment's transcoding takes, after `200 OK` and before the result (fast
    /// mode included): a slow orchestrator, for a gateway's timeouts and selection.
    pub transcode_latency: Duration,
    /// Segments whose renditions are kept per session (the oldest are dropped); their URLs
    /// 404 afterwards.
    pub transcode_window: usize,
    /// How long the auth tokens of GetOrchestrator answers live (go-livepeer: 30 minutes).
    pub auth_token_lifetime: Duration,
    /// Capability ids advertised beyond go-livepeer's defaults, as an orchestrator whose
    /// transcoder passed the test of an optional one (e.g. 15, HEVC decode) advertises it.
    pub extra_capabilities: Vec<u32>,
    /// Default capability ids not advertised, as an orchestrator lacking them: a segment
    /// asking for one is refused (403 `incompatible capabilities`).
    pub missing_capabilities: Vec<u32>,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            name: "sim".to_owned(),
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            tls: false,
            eth_address: None,
            version: "0.9.1".to_owned(),
            base_price: (0, 1),
            models: Vec::new(),
            latency: Duration::ZERO,
            jitter: Duration::ZERO,
            error_rate_ppm: 0,
            face_value: 1_000_000_000_000,
            // go-livepeer's default `-ticketEV`; with the face value above, 1 ticket in 125 wins.
            ticket_ev: 8_000_000_000,
            seed: 1,
            service_uri: None,
            trickle_base: None,
            byoc_data_interval: None,
            token_delay: Duration::ZERO,
            ai_latency: Duration::ZERO,
            live_filter: None,
            live_event_interval: Duration::from_secs(1),
            live_payment_interval: Duration::from_secs(5),
            live_billing_speedup: 1,
            ai_http1_only: false,
            huge_body_bytes: 64 << 20,
            request_ledger: false,
            byoc: Vec::new(),
            byoc_stream_billing: Duration::from_secs(23),
            eth_signer: None,
            transcode_fast: false,
            max_segment_bytes: MAX_SEGMENT_BYTES,
            transcode_max_sessions: 10,
            transcode_window: 8,
            auth_token_lifetime: Duration::from_secs(30 * 60),
            transcode_latency: Duration::ZERO,
            extra_capabilities: Vec::new(),
            missing_capabilities: Vec::new(),
        }
    }
}

impl SimConfig {
    /// An on-chain orchestrator with this key: `eth_address` is its address, and transcoding
    /// results are signed with it.
    #[must_use]
    pub fn with_signer(mut self, signer: LocalSigner) -> Self {
        self.eth_address = Some(signer.address());
        self.eth_signer = Some(Arc::new(signer));
        self
    }
}

/// Shared state of a running simulator.
#[derive(Debug)]
struct Shared {
    config: SimConfig,
    mode: Mutex<Mode>,
    latency_us: AtomicU64,
    error_rate_ppm: AtomicU64,
    calls: AtomicU64,
    last_request: Mutex<Option<net::OrchestratorRequest>>,
    url: String,
    /// URL of the HTTP/1.1-only AI port, with [`SimConfig::ai_http1_only`].
    ai_url: Option<String>,
    /// Key of the auth-token MAC, like go-livepeer's in-memory HMAC secret: tokens are checked
    /// by recomputing them, so no list of issued tokens has to be kept (or bounded).
    auth_secret: [u8; 32],
    ai: ai::AiState,
    live: live::LiveState,
    payments: payment::Payments,
    fault: fault::FaultState,
    byoc: byoc::ByocState,
    transcode: transcode::TranscodeState,
    /// Segments being encoded at once ([`SimConfig::transcode_max_sessions`]).
    transcode_slots: tokio::sync::Semaphore,
}

impl Shared {
    /// Where its AI and live API is reached: the transcoder URI it advertises, and the base of
    /// its result and trickle URLs.
    fn service_url(&self) -> &str {
        let own = self.ai_url.as_deref().unwrap_or(&self.url);
        self.config.service_uri.as_deref().unwrap_or(own)
    }

    /// The base of the trickle channel URLs its start answers name.
    fn trickle_base(&self) -> String {
        match &self.config.trickle_base {
            Some(base) => base.trim_end_matches('/').to_owned(),
            None => format!("{}/ai/trickle", self.service_url().trim_end_matches('/')),
        }
    }
}

/// A running simulated orchestrator. Dropping it stops it.
#[derive(Debug)]
pub struct Sim {
    shared: Arc<Shared>,
    addr: SocketAddr,
    /// The HTTP/1.1-only AI port, with [`SimConfig::ai_http1_only`].
    ai_addr: Option<SocketAddr>,
    tls: Mutex<Option<Arc<rustls::ServerConfig>>>,
    cancel: Mutex<CancellationToken>,
}

// === impl Sim ===

impl Sim {
    /// Binds and starts serving.
    pub async fn start(config: SimConfig) -> Result<Self, SimError> {
        let listener = tokio::net::TcpListener::bind(config.bind).await?;
        let addr = listener.local_addr()?;
        let ai_listener = match config.ai_http1_only {
            true => Some(tokio::net::TcpListener::bind(SocketAddr::new(addr.ip(), 0)).await?),
            false => None,
        };
        let ai_addr = ai_listener.as_ref().map(tokio::net::TcpListener::local_addr).transpose()?;
        let tls = if config.tls { Some(server::self_signed()?) } else { None };
        let scheme = if config.tls { "https" } else { "http" };
        let url = format!("{scheme}://{addr}");
        let ai_url = ai_addr.map(|a| format!("{scheme}://{a}"));
        let shared = Arc::new(Shared {
            mode: Mutex::new(Mode::Normal),
            latency_us: AtomicU64::new(config.latency.as_micros() as u64),
            error_rate_ppm: AtomicU64::new(u64::from(config.error_rate_ppm)),
            calls: AtomicU64::new(0),
            last_request: Mutex::new(None),
            url,
            ai_url,
            auth_secret: rand::random(),
            ai: ai::AiState::default(),
            live: live::LiveState::default(),
            payments: payment::Payments::new(
                config.eth_address,
                config.face_value,
                config.ticket_ev,
            ),
            fault: fault::FaultState::default(),
            byoc: byoc::ByocState::default(),
            transcode: transcode::TranscodeState::default(),
            transcode_slots: tokio::sync::Semaphore::new(config.transcode_max_sessions.max(1)),
            config,
        });
        let cancel = CancellationToken::new();
        serve(&shared, listener, ai_listener, tls.clone(), &cancel);
        tracing::info!(sim = %shared.config.name, url = %shared.url, "simulated orchestrator up");
        let tls = Mutex::new(tls);
        Ok(Self { shared, addr, ai_addr, tls, cancel: Mutex::new(cancel) })
    }

    /// Its URL, `https://127.0.0.1:port` or `http://…`.
    pub fn url(&self) -> &str {
        &self.shared.url
    }

    /// Its listen address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL its AI API is reached at (the transcoder URI it advertises): its own URL, or
    /// the HTTP/1.1-only port's with [`SimConfig::ai_http1_only`], or `service_uri`.
    pub fn service_url(&self) -> &str {
        self.shared.service_url()
    }

    /// Changes what it does with calls.
    pub fn set_mode(&self, mode: Mode) {
        if let Ok(mut m) = self.shared.mode.lock() {
            *m = mode;
        }
    }

    /// Changes the fixed latency.
    pub fn set_latency(&self, latency: Duration) {
        self.shared.latency_us.store(latency.as_micros() as u64, Relaxed);
    }

    /// Changes the error rate (parts per million).
    pub fn set_error_rate_ppm(&self, ppm: u32) {
        self.shared.error_rate_ppm.store(u64::from(ppm), Relaxed);
    }

    /// GetOrchestrator calls received so far.
    pub fn calls(&self) -> u64 {
        self.shared.calls.load(Relaxed)
    }

    /// The last OrchestratorRequest received.
    pub fn last_request(&self) -> Option<net::OrchestratorRequest> {
        self.shared.last_request.lock().ok().and_then(|r| r.clone())
    }

    /// Changes what it does with AI requests (the gRPC service keeps its own [`Mode`]).
    pub fn set_ai_mode(&self, mode: AiMode) {
        self.shared.ai.set_mode(mode);
    }

    /// Changes how it spoils its AI answers (after doing, and charging for, the work).
    pub fn set_ai_fault(&self, fault: AiFault) {
        self.shared.fault.set(fault);
    }

    /// AI answers spoiled by an [`AiFault`] so far.
    pub fn ai_spoiled(&self) -> u64 {
        self.shared.fault.spoiled()
    }

    /// With [`SimConfig::request_ledger`]: what it saw of each client request, by key.
    pub fn ledger(&self) -> std::collections::HashMap<String, LedgerEntry> {
        self.shared.fault.ledger()
    }

    /// Takes back the ledger's deliveries made at or after `since` (counted as
    /// [`LedgerEntry::voided`]): a soak run calls it when it kills the simulator, since an
    /// answer handed to the connection just before may never have left the process.
    pub fn void_deliveries_since(&self, since: tokio::time::Instant) {
        self.shared.fault.void_since(since);
    }

    /// AI requests received so far (every request to an AI route, rejected ones included).
    pub fn ai_requests(&self) -> u64 {
        self.shared.ai.requests()
    }

    /// Result files asked for at `/stream/<request>/<file>` so far.
    pub fn ai_downloads(&self) -> u64 {
        self.shared.ai.downloads()
    }

    /// What the last AI request carried.
    pub fn last_ai_request(&self) -> Option<AiRequestRecord> {
        self.shared.ai.last_request()
    }

    /// AI requests being processed now. A request stops counting when its handler (or, for a
    /// streamed answer, its body) is dropped, so a client's disconnect shows here.
    pub fn ai_in_flight(&self) -> u64 {
        self.shared.ai.in_flight()
    }

    /// What it received and charged: tickets, EV, winners, fees, balances, refusals.
    pub fn payments(&self) -> PaymentStats {
        self.shared.payments.stats()
    }

    /// Moves the simulated L1 chain on by `n` blocks. Params are issued valid for
    /// [`PARAMS_EXPIRATION_BLOCKS`] blocks, so advancing that far expires every issued set.
    pub fn advance_blocks(&self, n: u64) {
        self.shared.payments.advance_blocks(n);
    }

    /// Changes what the live runner does with its streams.
    pub fn set_live_mode(&self, mode: LiveMode) {
        self.shared.live.set_mode(mode);
    }

    /// What the live side has received and done.
    pub fn live(&self) -> LiveStats {
        self.shared.live.stats()
    }

    /// Changes how its BYOC jobs (`/process/request/…`) fail.
    pub fn set_byoc_fault(&self, fault: ByocFault) {
        self.shared.byoc.set_fault(fault);
    }

    /// Changes how its BYOC stream starts (`/ai/stream/start`) fail.
    pub fn set_byoc_stream_fault(&self, fault: ByocStreamFault) {
        self.shared.byoc.set_stream_fault(fault);
    }

    /// Makes each BYOC stream stop (`/ai/stream/stop`) wait `delay` before it is looked at
    /// (zero: none); it then ends whatever stream runs under its id, as a slow orchestrator
    /// would.
    pub fn set_byoc_stop_delay(&self, delay: Duration) {
        self.shared.byoc.set_stop_delay(delay);
    }

    /// Quotes and charges `price` wei per second for every BYOC capability (job tokens, job
    /// and stream charges), while GetOrchestrator keeps advertising the registered prices;
    /// `None` goes back to those.
    pub fn set_byoc_job_price(&self, price: Option<i64>) {
        self.shared.byoc.set_price_override(price);
    }

    /// Arms a gate that [`ByocKind::Lines`] jobs wait at after their first event, and returns
    /// it: a test reads the first event, then calls [`ByocGate::release`] for the rest. A job
    /// still waiting at `timeout_seconds` ends there, as its orchestrator would end it. Each
    /// call replaces the gate for the jobs that start after it.
    pub fn byoc_sse_gate(&self) -> ByocGate {
        self.shared.byoc.arm_gate()
    }

    /// Arms a gate that BYOC stream starts (`/ai/stream/start`) wait at once admitted and
    /// paid, before their worker starts (go-livepeer's `StartStream` waits on its worker's
    /// start call: a worker slow to start), and returns it: a start is counted in
    /// [`ByocStats::stream_start_calls`] on arrival, so a test sees it waiting, then calls
    /// [`ByocGate::release`]. Each call replaces the gate for the starts that come after it.
    pub fn byoc_stream_start_gate(&self) -> ByocGate {
        self.shared.byoc.arm_start_gate()
    }

    /// What its BYOC side has received, charged and run.
    pub fn byoc_stats(&self) -> ByocStats {
        let mut stats = self.shared.byoc.stats();
        stats.streams_active = byoc_stream::active(&self.shared);
        stats
    }

    /// Changes how its transcoding (`POST /segment`) fails.
    pub fn set_transcode_fault(&self, fault: TranscodeFault) {
        self.shared.transcode.set_fault(fault);
    }

    /// What its transcoding side has received and done.
    pub fn transcode_stats(&self) -> TranscodeStats {
        self.shared.transcode.stats()
    }

    /// Stops listening and drops every open connection: clients then see refused connections.
    /// Live streams die with it, as they would with the orchestrator's process.
    pub fn stop(&self) {
        if let Ok(c) = self.cancel.lock() {
            c.cancel();
        }
        self.shared.live.kill_all();
        byoc_stream::kill_all(&self.shared);
    }

    /// Listens again on the same port (stopping first if running), with the same certificate.
    pub async fn restart(&self) -> Result<(), SimError> {
        self.relisten(false).await
    }

    /// Like [`Sim::restart`], but with a freshly generated certificate (as a reinstalled
    /// orchestrator would have): clients that pinned the old one must refuse it.
    pub async fn restart_with_new_certificate(&self) -> Result<(), SimError> {
        self.relisten(true).await
    }

    async fn relisten(&self, new_cert: bool) -> Result<(), SimError> {
        self.stop();
        let tls = {
            let mut tls =
                self.tls.lock().map_err(|_| SimError::Io(std::io::Error::other("lock")))?;
            if new_cert && tls.is_some() {
                *tls = Some(server::self_signed()?);
            }
            tls.clone()
        };
        let listener = rebind(self.addr).await?;
        let ai_listener = match self.ai_addr {
            Some(addr) => Some(rebind(addr).await?),
            None => None,
        };
        let cancel = CancellationToken::new();
        serve(&self.shared, listener, ai_listener, tls, &cancel);
        if let Ok(mut c) = self.cancel.lock() {
            *c = cancel;
        }
        Ok(())
    }
}

/// Binds `addr` again after a stop. The old accept loop drops its listener asynchronously
/// after `stop`, so the port may still be taken for a moment: retry briefly.
async fn rebind(addr: SocketAddr) -> Result<tokio::net::TcpListener, SimError> {
    let mut tries = 0;
    loop {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => return Ok(l),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && tries < 100 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Serves the main port (every protocol) and, when there is one, the HTTP/1.1-only AI port,
/// until `cancel` fires.
fn serve(
    shared: &Arc<Shared>,
    listener: tokio::net::TcpListener,
    ai_listener: Option<tokio::net::TcpListener>,
    tls: Option<Arc<rustls::ServerConfig>>,
    cancel: &CancellationToken,
) {
    let router = server::router(shared.clone());
    if let Some(ai_listener) = ai_listener {
        let ai_tls = tls.as_deref().map(server::http1_only_alpn);
        server::spawn(ai_listener, ai_tls, true, router.clone(), cancel.clone());
    }
    server::spawn(listener, tls, false, router, cancel.clone());
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.stop();
    }
}
