//! BYOC ("bring your own container", generic jobs) as a go-livepeer orchestrator serves them
//! (byoc/job_orchestrator.go, byoc/types.go, byoc/utils.go, core/external_capabilities.go;
//! PROTOCOL.md §10): capabilities registered by name with a capacity and a price in wei per
//! second, `GET /process/token`, `POST /process/request/<path>` (in `byoc_job.rs`) and the
//! `/ai/stream/*` calls (in `byoc_stream.rs`).
//!
//! The worker behind each capability is simulated in process ([`ByocKind`]), so the wire
//! between gateway and orchestrator is the real one while no container has to run.
//!
//! Where go-livepeer's code misbehaves in a way a gateway sees, the simulator does as it does
//! (each place says so): a priced call whose payment does not decode or verify is left
//! unanswered (go-livepeer dereferences the nil balance its `processPayment` returns, and
//! net/http recovers the panic), with go-livepeer's capacity count after it.
//!
//! Capacity is counted, not enforced, as go-livepeer counts it: a job or stream of a registered
//! capability is taken however many run, and tokens report `available_capacity` 0 once the
//! load reaches it; gateways pick orchestrators with `available_capacity > 0`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use livepeer_pm::{Address, Ratio, SignedRatio, U512, recover_eth_signer};
use livepeer_proto::net;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::Shared;
use crate::ai::Rejection;
use crate::payment::bytes_to_address;

/// `Livepeer`: the base64 JSON JobRequest.
pub(crate) const JOB_REQUEST: &str = "Livepeer";
/// `Livepeer-Eth-Address`: the base64 JSON JobSender of a token request.
const ETH_ADDRESS: &str = "Livepeer-Eth-Address";
/// `Livepeer-Capability`: the capability a token is asked for.
const CAPABILITY: &str = "Livepeer-Capability";
/// `Livepeer-Balance`: the balance after a job, integer wei.
pub(crate) const BALANCE: &str = "Livepeer-Balance";
/// The capability id BYOC prices carry in `OrchestratorInfo.capabilities_prices`.
pub const BYOC_CAPABILITY_ID: u32 = 37;

/// go-livepeer's error texts (byoc/types.go).
pub(crate) const NO_CAPACITY: &str = "No capacity available for capability";
pub(crate) const NO_JOB_CREDS: &str = "Could not verify job creds";
pub(crate) const NO_TIMEOUT: &str =
    "no timeout_seconds set with request, timeout_seconds is required";
pub(crate) const INSUFFICIENT_BALANCE: &str = "Insufficient balance for request";

/// What the simulated worker behind a capability does with a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByocKind {
    /// JSON: a body `{"text": s}` is answered `{"text": <s reversed>}` with an `X-Metadata`
    /// header holding a small JSON object.
    Reverse,
    /// Any body of any content type is echoed back byte for byte as it arrives, with the same
    /// `Content-Type`: for large binary uploads.
    Echo,
    /// Server-sent events: a body `{"lines": n}` (default 3, at most [`MAX_LINES`]) is answered
    /// with `n` events `data: {"n":i}`, then `data: [DONE]`. After the first event it waits for
    /// the gate of [`crate::Sim::byoc_sse_gate`], when a test has armed one.
    Lines,
    /// A body `{"bytes": n}` (at most 64 MiB) is answered with `n` bytes of
    /// `application/octet-stream`, all ready when the answer starts: a worker whose result is
    /// a large file.
    Fill,
}

/// Most events a [`ByocKind::Lines`] job may ask for.
pub const MAX_LINES: u64 = 1_000;

/// One BYOC capability of the simulator, as a worker would register it
/// (`POST /capability/register`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimByoc {
    /// Capability name, e.g. `text-reversal`.
    pub name: String,
    /// Price in wei per second of compute = `price.0 / price.1` (`price_per_unit /
    /// price_scaling`). Like go-livepeer (`common.PriceToInt64`), the orchestrator quotes and
    /// charges the integer part of it: `(3, 2)` is 1 wei per second.
    pub price: (i64, i64),
    /// Jobs and streams it runs at once.
    pub capacity: u32,
    /// What its worker does.
    pub kind: ByocKind,
}

impl SimByoc {
    /// A free capability with capacity 4.
    pub fn new(name: &str, kind: ByocKind) -> Self {
        Self { name: name.to_owned(), price: (0, 1), capacity: 4, kind }
    }

    /// Sets the price, `per_unit / scaling` wei per second (a scaling of 0 counts as 1, as
    /// go-livepeer registers it).
    #[must_use]
    pub fn price(mut self, per_unit: i64, scaling: i64) -> Self {
        self.price = (per_unit, if scaling == 0 { 1 } else { scaling });
        self
    }

    /// Sets the capacity.
    #[must_use]
    pub fn capacity(mut self, capacity: u32) -> Self {
        self.capacity = capacity;
        self
    }

    /// The price the orchestrator quotes and charges, wei per second: the integer part of
    /// `price.0 / price.1` (0 for a negative price, which go-livepeer never charges).
    pub fn wei_per_second(&self) -> i64 {
        let (n, d) = self.price;
        if d == 0 || (n < 0) != (d < 0) {
            return 0;
        }
        n.checked_div(d).unwrap_or(0).max(0)
    }
}

/// How the simulator's BYOC routes fail; changeable at run time with
/// [`crate::Sim::set_byoc_fault`]. Applies to `/process/request/…` only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ByocFault {
    /// Jobs are checked and run.
    #[default]
    None,
    /// The request is accepted and never answered.
    Hang,
    /// The worker fails: after the checks and the payment, the orchestrator answers 500 with the
    /// worker's error text and charges the time, as go-livepeer does for a worker status ≥ 400.
    Status500,
    /// The connection is dropped without an answer (over HTTP/2, with every other request in
    /// flight on it, as a crashing orchestrator would drop them).
    Close,
    /// Every job is refused with 503 `No capacity available for capability`.
    NoCapacity,
    /// The head of a 500 answer is sent with a `Content-Length`, and then never its body.
    Stalled500,
    /// Every paid job's payment is taken (its tickets credited), and the job refused all the
    /// same with 400 `Insufficient balance for request`: books lost, or money kept.
    KeepPayment,
}

/// How the simulator fails BYOC stream calls; changeable at run time with
/// [`crate::Sim::set_byoc_stream_fault`]. `Close`, `Hang`, `HangStarted` and
/// `OversizedStarted` fail `/ai/stream/start` only, `RefuseCalls` the stop, update and
/// payment calls only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ByocStreamFault {
    /// Starts are checked, paid and run.
    #[default]
    None,
    /// The connection is dropped before the payment is looked at, as go-livepeer's
    /// orchestrator drops it on a payment it cannot take: nothing credited, nothing started.
    Close,
    /// The payment is taken (its tickets credited) and the start never answered, nothing
    /// started: an orchestrator stuck past the gateway's deadline. The capacity taken is
    /// given back at once.
    Hang,
    /// The stream is started (paid, its worker running and charged) and the start's answer
    /// never sent: an orchestrator whose answer was lost, whose stream runs on until it is
    /// stopped or its balance runs out.
    HangStarted,
    /// The stream is started and answered 200 with its channels' headers, and a body of
    /// 1 MiB: more than a gateway reads of a start's answer (64 KiB here), so the answer
    /// breaks off there though the stream runs.
    OversizedStarted,
    /// Stop, update and payment calls are refused as creds that do not verify, before their
    /// payment is looked at (nothing credited): 400 `Failed to …, request not valid
    /// err=Could not verify job creds`, as go-livepeer's handlers word what `setupOrchJob`
    /// refused.
    RefuseCalls,
}

/// What the BYOC side has received, charged and run, from [`crate::Sim::byoc_stats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ByocStats {
    /// `/process/request/…` calls received, refused ones included.
    pub requests: u64,
    /// `/process/token` calls answered 200.
    pub tokens: u64,
    /// Jobs handed to a worker, per capability.
    pub jobs: BTreeMap<String, u64>,
    /// Request body bytes the workers read.
    pub bytes_received: u64,
    /// Fees debited for BYOC work (jobs and streams), wei.
    pub fees: Ratio,
    /// EV credited by BYOC payments (jobs, stream starts and stream payments), wei.
    pub ev_credited: Ratio,
    /// Jobs and streams holding capacity now, per capability.
    pub load: BTreeMap<String, u32>,
    /// The worker path of the last job (what followed `/process/request/`).
    pub last_path: Option<String>,
    /// What the last job handed to a worker carried.
    pub last_job: Option<ByocJobRecord>,
    /// `/ai/stream/start` calls received, refused and unanswered ones included.
    pub stream_start_calls: u64,
    /// Streams started.
    pub stream_starts: u64,
    /// Streams running now.
    pub streams_active: usize,
    /// Stream input segments read, all streams.
    pub segments_in: u64,
    /// Stream output segments published, all streams.
    pub segments_out: u64,
    /// Lines written to stream data channels, all streams.
    pub data_lines: u64,
    /// `/ai/stream/payment` calls answered 200.
    pub stream_payments: u64,
    /// `/ai/stream/stop` calls answered.
    pub stream_stops: u64,
    /// `/ai/stream/update` calls answered 200, with their bodies (last 64).
    pub stream_updates: Vec<serde_json::Value>,
    /// Streams stopped because their balance stayed negative.
    pub streams_stopped_for_balance: u64,
    /// `/ai/stream/stop` and `/ai/stream/update` calls that carried a `Livepeer-Payment`
    /// (processed there as for any job: go-livepeer `setupOrchJob`).
    pub payments_on_stop_or_update: u64,
}

/// What the simulator saw of one admitted BYOC job, for tests: [`ByocStats::last_job`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ByocJobRecord {
    /// The JobRequest's `id`.
    pub id: String,
    /// Its `capability`.
    pub capability: String,
    /// Its `sender`, as go-livepeer reads the address.
    pub sender: Address,
    /// Its `request` (a JSON document as a string).
    pub request: String,
    /// Its `parameters`.
    pub parameters: String,
    /// Its `timeout_seconds`.
    pub timeout_seconds: i64,
    /// The worker path (what followed `/process/request/`).
    pub path: String,
    /// The request's `Content-Type`.
    pub content_type: Option<String>,
    /// Whether a non-empty `Livepeer-Payment` came with it.
    pub paid: bool,
}

/// A gate [`ByocKind::Lines`] jobs wait at after their first event, from
/// [`crate::Sim::byoc_sse_gate`] (a test reads the first event, then releases the gate), or
/// that BYOC stream starts wait at before their worker starts, from
/// [`crate::Sim::byoc_stream_start_gate`].
#[derive(Debug, Clone)]
pub struct ByocGate(Arc<watch::Sender<bool>>);

impl ByocGate {
    fn new() -> Self {
        Self(Arc::new(watch::Sender::new(false)))
    }

    /// Opens the gate for every job waiting at it and every later one.
    pub fn release(&self) {
        self.0.send_replace(true);
    }

    /// Waits until the gate is released.
    pub(crate) async fn passed(&self) {
        let mut rx = self.0.subscribe();
        // The sender lives in `self`, so `wait_for` cannot fail while this runs.
        let _ = rx.wait_for(|open| *open).await;
    }
}

/// BYOC state of a running simulator.
#[derive(Debug, Default)]
pub(crate) struct ByocState {
    fault: Mutex<ByocFault>,
    stream_fault: Mutex<ByocStreamFault>,
    gate: Mutex<Option<ByocGate>>,
    /// What stream starts wait at once admitted and paid, if armed.
    start_gate: Mutex<Option<ByocGate>>,
    stats: Mutex<ByocStats>,
    /// Jobs and streams holding capacity, per capability.
    load: Mutex<HashMap<String, u32>>,
    /// The running streams.
    pub(crate) streams: crate::byoc_stream::Streams,
    /// A job price (wei per second) quoted and charged instead of the registered ones, while
    /// GetOrchestrator keeps advertising those: an orchestrator whose price moved after the
    /// gateway discovered it, or that quotes one price and charges another.
    price_override: Mutex<Option<i64>>,
    /// How long a stream stop waits before it is looked at: an orchestrator slow to take
    /// a stop, which then still ends whatever runs under the stream's id.
    stop_delay: Mutex<std::time::Duration>,
}

impl ByocState {
    pub(crate) fn set_stop_delay(&self, delay: std::time::Duration) {
        *lock(&self.stop_delay) = delay;
    }

    pub(crate) fn stop_delay(&self) -> std::time::Duration {
        *lock(&self.stop_delay)
    }

    pub(crate) fn set_fault(&self, fault: ByocFault) {
        *lock(&self.fault) = fault;
    }

    pub(crate) fn set_stream_fault(&self, fault: ByocStreamFault) {
        *lock(&self.stream_fault) = fault;
    }

    pub(crate) fn stream_fault(&self) -> ByocStreamFault {
        *lock(&self.stream_fault)
    }

    pub(crate) fn set_price_override(&self, price: Option<i64>) {
        *lock(&self.price_override) = price;
    }

    pub(crate) fn fault(&self) -> ByocFault {
        *lock(&self.fault)
    }

    pub(crate) fn arm_gate(&self) -> ByocGate {
        let gate = ByocGate::new();
        *lock(&self.gate) = Some(gate.clone());
        gate
    }

    pub(crate) fn gate(&self) -> Option<ByocGate> {
        lock(&self.gate).clone()
    }

    pub(crate) fn arm_start_gate(&self) -> ByocGate {
        let gate = ByocGate::new();
        *lock(&self.start_gate) = Some(gate.clone());
        gate
    }

    pub(crate) fn start_gate(&self) -> Option<ByocGate> {
        lock(&self.start_gate).clone()
    }

    pub(crate) fn stats(&self) -> ByocStats {
        let mut stats = lock(&self.stats).clone();
        stats.load = lock(&self.load).iter().map(|(k, v)| (k.clone(), *v)).collect();
        stats
    }

    pub(crate) fn update(&self, f: impl FnOnce(&mut ByocStats)) {
        f(&mut lock(&self.stats));
    }

    /// Capacity minus load (0 for an unknown capability), as a token reports it.
    fn available(&self, cap: &SimByoc) -> u32 {
        let used = lock(&self.load).get(&cap.name).copied().unwrap_or(0);
        cap.capacity.saturating_sub(used)
    }
}

/// A lock that survives a panic elsewhere: every value here is consistent after each update.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One unit of a capability's capacity, given back when dropped (go-livepeer
/// `FreeExternalCapabilityCapacity`).
#[derive(Debug)]
pub(crate) struct Slot {
    shared: Arc<Shared>,
    /// `None` for a call that takes no capacity.
    name: Option<String>,
}

impl Slot {
    /// A slot holding nothing, for the calls that do not take capacity.
    pub(crate) fn none(shared: &Arc<Shared>) -> Self {
        Self { shared: shared.clone(), name: None }
    }

    /// A unit of `name`'s load already counted, given back when dropped (see `admit`).
    pub(crate) fn one_of(shared: &Arc<Shared>, name: &str) -> Self {
        Self { shared: shared.clone(), name: Some(name.to_owned()) }
    }

    /// Lets the slot go without giving its unit back: the load stays counted, as go-livepeer's
    /// does when a handler panics before it frees the capacity it reserved.
    pub(crate) fn leak(mut self) {
        self.name = None;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let Some(name) = &self.name else { return };
        let mut load = lock(&self.shared.byoc.load);
        if let Some(used) = load.get_mut(name) {
            *used = used.saturating_sub(1);
            if *used == 0 {
                load.remove(name);
            }
        }
    }
}

/// Takes one unit of `name`'s capacity: `None` only for a capability not registered. Like
/// go-livepeer's `ReserveExternalCapabilityCapacity` (core/ai_orchestrator.go), which only
/// increments the load, the capacity is not checked: a job over it is taken.
pub(crate) fn reserve(shared: &Arc<Shared>, name: &str) -> Option<Slot> {
    capability(shared, name)?;
    let mut load = lock(&shared.byoc.load);
    let used = load.entry(name.to_owned()).or_insert(0);
    *used += 1;
    Some(Slot { shared: shared.clone(), name: Some(name.to_owned()) })
}

/// The registered capability `name`.
pub(crate) fn capability<'a>(shared: &'a Shared, name: &str) -> Option<&'a SimByoc> {
    shared.config.byoc.iter().find(|c| c.name == name)
}

/// The job price of `name` in wei per second (go-livepeer `JobPriceInfo`): 0 off-chain and for
/// a capability it does not have, else the integer part of the registered price.
pub(crate) fn job_price(shared: &Shared, name: &str) -> i64 {
    if !shared.payments.on_chain() {
        return 0;
    }
    let registered = capability(shared, name).map(SimByoc::wei_per_second);
    let quoted = *lock(&shared.byoc.price_override);
    registered.map_or(0, |price| quoted.unwrap_or(price))
}

/// The `capabilities_prices` entries of the BYOC capabilities: capability 37, the name as the
/// constraint (go-livepeer `GetCapabilitiesPrices`, which lists them on- and off-chain).
pub(crate) fn capability_prices(shared: &Shared) -> Vec<net::PriceInfo> {
    shared
        .config
        .byoc
        .iter()
        // go-livepeer leaves out negative prices.
        .filter(|c| c.price.0 == 0 || (c.price.0 > 0) == (c.price.1 > 0))
        .map(|c| net::PriceInfo {
            price_per_unit: c.wei_per_second(),
            pixels_per_unit: 1,
            capability: BYOC_CAPABILITY_ID,
            constraint: c.name.clone(),
        })
        .collect()
}

/// The BYOC routes; the stream calls are added by `byoc_stream.rs`.
pub(crate) fn routes(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/process/token", any(token))
        .route("/process/request/", any(crate::byoc_job::process))
        .route("/process/request/{*path}", any(crate::byoc_job::process))
        .merge(crate::byoc_stream::routes())
        .with_state(shared)
}

/// A JobRequest as go-livepeer decodes it from the `Livepeer` header (byoc/types.go).
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct JobRequest {
    #[serde(default)]
    pub(crate) id: Option<String>,
    #[serde(default)]
    pub(crate) request: Option<String>,
    #[serde(default)]
    pub(crate) parameters: Option<String>,
    #[serde(default)]
    pub(crate) capability: Option<String>,
    #[serde(default)]
    pub(crate) sender: Option<String>,
    #[serde(default)]
    pub(crate) sig: Option<String>,
    #[serde(default)]
    pub(crate) timeout_seconds: i64,
}

/// A verified JobRequest: who sent it and for which capability.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    pub(crate) req: JobRequest,
    pub(crate) sender: Address,
    pub(crate) capability: String,
}

impl Job {
    pub(crate) fn id(&self) -> &str {
        self.req.id.as_deref().unwrap_or_default()
    }

    pub(crate) fn request(&self) -> &str {
        self.req.request.as_deref().unwrap_or_default()
    }

    pub(crate) fn parameters(&self) -> &str {
        self.req.parameters.as_deref().unwrap_or_default()
    }
}

/// Why a JobRequest was refused (go-livepeer `verifyJobCreds`): every failure but the timeout
/// is reported as `Could not verify job creds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CredsError {
    Creds,
    NoTimeout,
}

impl CredsError {
    pub(crate) fn message(self) -> &'static str {
        match self {
            Self::Creds => NO_JOB_CREDS,
            Self::NoTimeout => NO_TIMEOUT,
        }
    }
}

/// go-livepeer's `parseJobRequest` and `verifyJobCreds` without the capacity step: base64,
/// JSON, a non-zero timeout, and (on chain) `sig = eth_sign(request ‖ parameters)` by `sender`.
pub(crate) fn verify_job(shared: &Shared, headers: &HeaderMap) -> Result<Job, CredsError> {
    let raw = headers.get(JOB_REQUEST).map(HeaderValue::as_bytes).unwrap_or_default();
    let bytes = STANDARD.decode(raw).map_err(|_| CredsError::Creds)?;
    let req: JobRequest = serde_json::from_slice(&bytes).map_err(|_| CredsError::Creds)?;
    if req.timeout_seconds == 0 {
        return Err(CredsError::NoTimeout);
    }
    let sig = decode_sig(req.sig.as_deref().unwrap_or_default()).ok_or(CredsError::Creds)?;
    let sender = hex_to_address(req.sender.as_deref().unwrap_or_default());
    if shared.payments.on_chain() {
        let mut message = req.request.clone().unwrap_or_default();
        message.push_str(req.parameters.as_deref().unwrap_or_default());
        match recover_eth_signer(message.as_bytes(), &sig) {
            Ok(signer) if signer == sender => {}
            _ => return Err(CredsError::Creds),
        }
    }
    let capability = req.capability.clone().unwrap_or_default();
    Ok(Job { req, sender, capability })
}

/// A JobSender (`Livepeer-Eth-Address`) as received.
#[derive(Debug, Clone, Default, Deserialize)]
struct JobSender {
    #[serde(default)]
    addr: Option<String>,
    #[serde(default)]
    sig: Option<String>,
}

/// A JobSender as the token echoes it (Go writes absent or null strings as `""`).
#[derive(Debug, Serialize)]
struct JobSenderOut {
    addr: String,
    sig: String,
}

/// go-livepeer's `verifyTokenCreds`: base64 JSON `{addr, sig}` with (on chain)
/// `sig = eth_sign(addr)` by `addr`, the address text signed exactly as sent.
fn verify_sender(shared: &Shared, raw: &[u8]) -> Option<(JobSender, Address)> {
    let bytes = STANDARD.decode(raw).ok()?;
    let sender: JobSender = serde_json::from_slice(&bytes).ok()?;
    let addr_text = sender.addr.clone().unwrap_or_default();
    let sig = decode_sig(sender.sig.as_deref().unwrap_or_default())?;
    let addr = hex_to_address(&addr_text);
    if shared.payments.on_chain() && recover_eth_signer(addr_text.as_bytes(), &sig).ok()? != addr {
        return None;
    }
    Some((sender, addr))
}

/// A signature as go-livepeer reads it: longer than 130 characters loses its first two (the
/// `0x`), the rest must be hex.
fn decode_sig(sig: &str) -> Option<Vec<u8>> {
    let hex = if sig.len() > 130 { sig.get(2..)? } else { sig };
    decode_hex(hex)
}

/// Go's `hex.DecodeString`: an even number of hex digits.
fn decode_hex(text: &str) -> Option<Vec<u8>> {
    let digits = text.as_bytes();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    digits.chunks(2).map(|pair| Some((hex_digit(pair[0])? << 4) | hex_digit(pair[1])?)).collect()
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// go-ethereum's lenient `HexToAddress`: an optional `0x`, an odd length padded with a leading
/// zero, decoding up to the first bad digit, the last 20 bytes.
pub(crate) fn hex_to_address(text: &str) -> Address {
    let text = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")).unwrap_or(text);
    let padded = if !text.len().is_multiple_of(2) { format!("0{text}") } else { text.to_owned() };
    let bytes: Vec<u8> = padded
        .as_bytes()
        .chunks(2)
        .map_while(|pair| Some((hex_digit(pair[0])? << 4) | hex_digit(*pair.get(1)?)?))
        .collect();
    bytes_to_address(&bytes)
}

/// A JobToken as go-livepeer's JSON encoder writes it: `omitempty` on everything but
/// `LastNonce`, in field order.
#[derive(Debug, Serialize)]
struct JobToken<'a> {
    sender_address: JobSenderOut,
    #[serde(skip_serializing_if = "Option::is_none")]
    ticket_params: Option<GoTicketParams>,
    #[serde(skip_serializing_if = "is_zero")]
    balance: i64,
    price: GoPrice,
    #[serde(skip_serializing_if = "str::is_empty")]
    service_addr: &'a str,
    #[serde(skip_serializing_if = "is_zero")]
    available_capacity: i64,
    #[serde(rename = "LastNonce")]
    last_nonce: u32,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// `net.PriceInfo` in Go's JSON (protobuf field names, `omitempty`).
#[derive(Debug, Serialize)]
struct GoPrice {
    #[serde(rename = "pricePerUnit", skip_serializing_if = "is_zero")]
    price_per_unit: i64,
    #[serde(rename = "pixelsPerUnit", skip_serializing_if = "is_zero")]
    pixels_per_unit: i64,
}

/// `net.TicketParams` in Go's JSON: snake_case, bytes as base64, empty ones left out.
#[derive(Debug, Serialize)]
struct GoTicketParams {
    #[serde(skip_serializing_if = "String::is_empty")]
    recipient: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    face_value: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    win_prob: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    recipient_rand_hash: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    seed: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    expiration_block: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    expiration_params: Option<GoExpiration>,
}

#[derive(Debug, Serialize)]
struct GoExpiration {
    #[serde(skip_serializing_if = "is_zero")]
    creation_round: i64,
    #[serde(skip_serializing_if = "String::is_empty")]
    creation_round_block_hash: String,
}

impl From<&net::TicketParams> for GoTicketParams {
    fn from(p: &net::TicketParams) -> Self {
        let b64 = |b: &[u8]| STANDARD.encode(b);
        Self {
            recipient: b64(&p.recipient),
            face_value: b64(&p.face_value),
            win_prob: b64(&p.win_prob),
            recipient_rand_hash: b64(&p.recipient_rand_hash),
            seed: b64(&p.seed),
            expiration_block: b64(&p.expiration_block),
            expiration_params: p.expiration_params.as_ref().map(|e| GoExpiration {
                creation_round: e.creation_round,
                creation_round_block_hash: b64(&e.creation_round_block_hash),
            }),
        }
    }
}

/// `GET /process/token` (go-livepeer `GetJobToken`).
async fn token(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    match job_token(&shared, req.method(), req.headers()) {
        Ok(token) => token,
        Err(rejection) => rejection.into_response(),
    }
}

fn job_token(shared: &Shared, method: &Method, headers: &HeaderMap) -> Result<Response, Rejection> {
    if method != Method::GET {
        return Err(Rejection::new(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed"));
    }
    let eth = headers.get(ETH_ADDRESS).map(HeaderValue::as_bytes).unwrap_or_default();
    if eth.is_empty() {
        return Err(Rejection::bad_request(
            "Must have eth address and signature on address in Livepeer-Eth-Address header",
        ));
    }
    // The trailing space is go-livepeer's.
    let (sender, addr) = verify_sender(shared, eth)
        .ok_or_else(|| Rejection::bad_request("Invalid eth address header "))?;
    let name = headers.get(CAPABILITY).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if name.is_empty() {
        return Err(Rejection::bad_request(
            "Job capabilities not provided, must provide comma separated capabilities in \
             Livepeer-Capability header",
        ));
    }
    let available = capability(shared, name).map_or(0, |c| shared.byoc.available(c));
    let price = net::PriceInfo {
        price_per_unit: job_price(shared, name),
        pixels_per_unit: 1,
        ..net::PriceInfo::default()
    };
    let params = shared
        .payments
        .ticket_params(addr, &price)
        .map_err(|e| Rejection::bad_request(format!("Could not get ticket params err={e}")))?;
    let token = JobToken {
        sender_address: JobSenderOut {
            addr: sender.addr.unwrap_or_default(),
            sig: sender.sig.unwrap_or_default(),
        },
        ticket_params: params.as_ref().map(GoTicketParams::from),
        balance: token_balance(&shared.payments.balance(addr, name)),
        price: GoPrice { price_per_unit: price.price_per_unit, pixels_per_unit: 1 },
        service_addr: shared.service_url(),
        available_capacity: i64::from(available),
        last_nonce: 0,
    };
    let mut body = serde_json::to_vec(&token)
        .map_err(|e| Rejection::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    // Go's json.Encoder ends the document with a newline.
    body.push(b'\n');
    shared.byoc.update(|s| s.tokens += 1);
    let mut response = Response::new(Body::from(body));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(response)
}

/// The token's balance: the integer part (floor) of the credit, 0 when it does not fit in an
/// int64 with three more decimal digits (go-livepeer `PriceToInt64`, `PriceToFixed` / 1000).
fn token_balance(balance: &SignedRatio) -> i64 {
    let m = balance.magnitude();
    // Go's `big.Int.Div` is Euclidean: a negative value rounds down, away from zero.
    let whole = if balance.is_negative() { m.ceil() } else { m.floor() };
    let Ok(whole) = i64::try_from(whole) else { return 0 };
    let whole = if balance.is_negative() { -whole } else { whole };
    if whole.checked_mul(1000).is_none() { 0 } else { whole }
}

/// `PriceToInt64(balance).FloatString(0)`: the balance's integer part, rounded down, or 0 when it
/// does not fit in an int64 (the stream payment answer).
pub(crate) fn floor_balance_string(balance: &SignedRatio) -> String {
    let m = balance.magnitude();
    let whole = if balance.is_negative() { m.ceil() } else { m.floor() };
    match i64::try_from(whole) {
        Ok(w) if balance.is_negative() => (-w).to_string(),
        Ok(w) => w.to_string(),
        Err(_) => "0".to_owned(),
    }
}

/// A balance as Go's `FloatString(places)` writes it (rounded half away from zero, `-` for a
/// negative value).
pub(crate) fn balance_string(balance: &SignedRatio, places: usize) -> String {
    let text = balance.magnitude().to_decimal_string(places);
    if balance.is_negative() { format!("-{text}") } else { text }
}

/// `price × 60`, the balance a paid job must find (one minute of compute).
pub(crate) fn min_balance(price: i64) -> SignedRatio {
    SignedRatio::from(Ratio::from_u512(U512::from(price.unsigned_abs()) * U512::from(60u64)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_hex_and_addresses() {
        assert_eq!(decode_hex("0aFf"), Some(vec![0x0a, 0xff]));
        assert_eq!(decode_hex("0x00"), None);
        assert_eq!(decode_hex("abc"), None);
        let a = hex_to_address("0x00000000000000000000000000000000000000ff");
        assert_eq!(a.as_slice()[19], 0xff);
        assert_eq!(hex_to_address("f").as_slice()[19], 0x0f);
        assert_eq!(hex_to_address("zz"), Address::ZERO);
        let long = format!("0x{}", "ab".repeat(65));
        assert_eq!(decode_sig(&long).map(|s| s.len()), Some(65));
        assert_eq!(decode_sig(&format!("0x{}", "ab".repeat(10))), None);
    }

    #[test]
    fn balances_are_written_as_go_does() {
        let r = |s: &str| s.parse::<SignedRatio>().unwrap();
        assert_eq!(token_balance(&r("7/2")), 3);
        assert_eq!(token_balance(&r("-7/2")), -4);
        assert_eq!(token_balance(&r("-4")), -4);
        assert_eq!(balance_string(&r("7/2"), 0), "4");
        assert_eq!(balance_string(&r("-7/2"), 3), "-3.500");
        assert_eq!(balance_string(&SignedRatio::ZERO, 3), "0.000");
    }

    #[test]
    fn the_integer_part_of_the_price_is_charged() {
        let c = SimByoc::new("x", ByocKind::Echo);
        assert_eq!(c.clone().price(3, 2).wei_per_second(), 1);
        assert_eq!(c.clone().price(10, 0).wei_per_second(), 10);
        assert_eq!(c.price(-5, 1).wei_per_second(), 0);
    }
}
