//! Video transcoding as a go-livepeer orchestrator serves it (server/segment_rpc.go
//! `ServeSegment`, core/orchestrator.go; PROTOCOL.md §4.6, §6).
//!
//! `POST /segment` runs go-livepeer's steps in order: `Livepeer-Payment` decoded (402),
//! `Livepeer-Segment` checked (403: encoding, profiles, duration, signature, capabilities,
//! auth token, session capacity `OrchestratorCapped`), the payment processed under the auth
//! token's session id (400), the balance checked (400 `Insufficient balance`), the body read
//! (at most [`crate::SimConfig::max_segment_bytes`], else 500 `Internal Server Error`), its
//! keccak256 compared with `SegData.hash` (403 `Forbidden`); then `200 OK` is sent at once and
//! the body, a protobuf `TranscodeResult`, follows when the renditions are made. Renditions are
//! kept in memory per session (a window of segments) and served at
//! `GET {service}/stream/<auth session id>/<profile name>/<seq>.<ts|mp4>`; Σ pixels × price is
//! debited from (sender, session id).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use futures_util::StreamExt as _;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use livepeer_pm::keccak256;
use livepeer_proto::{Message as _, net};
use tokio::time::Instant;

use crate::ai::{self, Rejection};
use crate::payment::{self, Charge};
use crate::transcode_media::{self, Profile, Rendition};
use crate::{Shared, grpc};

/// go-livepeer's `common.MaxSegSize`: five minutes at 8 Mbps.
pub const MAX_SEGMENT_BYTES: usize = 300_000_000;
/// A session that received no segment for this long is ended and its renditions dropped
/// (go-livepeer's `transcodeLoopTimeout`), which frees its place under the session cap.
const SESSION_IDLE: Duration = Duration::from_secs(70);
/// At most this many bytes of renditions are kept, all sessions together; the oldest segments
/// go first.
const MAX_STORED_BYTES: usize = 512 << 20;

/// A rendition shorter than this is no segment: the result is the error `ZeroSegments`.
const MIN_RENDITION_BYTES: usize = 25;

/// How the simulator breaks its transcoding, at run time ([`crate::Sim::set_transcode_fault`]).
/// The header, payment and hash checks run first in every mode, as they would in front of a
/// broken transcoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TranscodeFault {
    /// Transcodes.
    #[default]
    None,
    /// 200 with `TranscodeResult.error = "OrchestratorBusy"` (no transcoder free).
    Busy,
    /// 200 with `TranscodeResult.error = "OrchestratorCapped"`.
    Capped,
    /// Reads the segment, then never answers (no status line).
    Hang,
    /// Sends `200 OK`, then never sends the body.
    HangAfterOk,
    /// 200 with a body that is not a protobuf `TranscodeResult`.
    Garbage,
    /// Sends `200 OK` and the first half of the result, then drops the connection (HTTP/1.1)
    /// or resets the stream (HTTP/2): the gateway reads an unexpected EOF. The work is done
    /// and charged first.
    CloseMidBody,
    /// 500 `Internal Server Error`.
    InternalError,
    /// 503 `Service Unavailable` before anything is read or paid, as a proxy in front of an
    /// orchestrator answers when the orchestrator is away.
    Unavailable,
    /// Transcodes and debits the renditions' real pixels, but reports each rendition with a
    /// million times its pixels: a count no rendition can hold, which a gateway must not pay.
    InflatePixels,
    /// Transcodes, then serves each rendition a second late: an orchestrator whose
    /// storage is slow to answer downloads.
    SlowRenditions,
}

/// How late [`TranscodeFault::SlowRenditions`] serves each rendition.
pub(crate) const SLOW_RENDITION: Duration = Duration::from_secs(1);

/// What the transcoding side did, for tests: [`crate::Sim::transcode_stats`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TranscodeStats {
    /// `POST /segment` requests received.
    pub requests: u64,
    /// Requests answered `200 OK` (after the header, payment and hash checks).
    pub accepted: u64,
    /// Segments whose renditions were all made.
    pub transcoded: u64,
    /// Results that carried an error (`TranscodeResult.error`).
    pub failed: u64,
    /// Renditions made.
    pub renditions: u64,
    /// Pixels of every rendition made (the quantity billed).
    pub pixels: u64,
    /// Sessions holding renditions now.
    pub sessions: usize,
    /// The last `SegData` that passed the header checks (whatever happened next).
    pub last_segment: Option<net::SegData>,
}

/// One segment's renditions: file name (`<profile>/<seq><ext>`) → bytes and content type.
#[derive(Debug)]
struct Stored {
    order: u64,
    files: Vec<(String, Bytes, &'static str)>,
    bytes: usize,
}

#[derive(Debug)]
struct Session {
    last_used: Instant,
    segments: VecDeque<Stored>,
}

#[derive(Debug, Default)]
struct Store {
    sessions: HashMap<String, Session>,
    bytes: usize,
    next: u64,
}

impl Store {
    /// Ends the sessions idle for [`SESSION_IDLE`].
    fn prune(&mut self, now: Instant) {
        let mut freed = 0;
        self.sessions.retain(|_, s| {
            let keep = now.duration_since(s.last_used) < SESSION_IDLE;
            if !keep {
                freed += s.segments.iter().map(|x| x.bytes).sum::<usize>();
            }
            keep
        });
        self.bytes -= freed;
    }

    /// Keeps a segment's files under `session`, dropping the session's oldest segment beyond
    /// `window` and the oldest segments of all beyond [`MAX_STORED_BYTES`].
    fn put(&mut self, session: &str, files: Vec<(String, Bytes, &'static str)>, window: usize) {
        let now = Instant::now();
        let bytes = files.iter().map(|f| f.1.len()).sum();
        let order = self.next;
        self.next += 1;
        let s = self
            .sessions
            .entry(session.to_owned())
            .or_insert_with(|| Session { last_used: now, segments: VecDeque::new() });
        s.last_used = now;
        s.segments.push_back(Stored { order, files, bytes });
        self.bytes += bytes;
        let mut freed = 0;
        while s.segments.len() > window.max(1) {
            freed += s.segments.pop_front().map_or(0, |x| x.bytes);
        }
        self.bytes -= freed;
        while self.bytes > MAX_STORED_BYTES {
            let oldest = self
                .sessions
                .values_mut()
                .filter(|s| !s.segments.is_empty())
                .min_by_key(|s| s.segments.front().map_or(u64::MAX, |x| x.order));
            let Some(oldest) = oldest else { break };
            self.bytes -= oldest.segments.pop_front().map_or(0, |x| x.bytes);
        }
    }

    fn get(&self, session: &str, file: &str) -> Option<(Bytes, &'static str)> {
        let s = self.sessions.get(session)?;
        s.segments
            .iter()
            .rev()
            .flat_map(|x| &x.files)
            .find(|f| f.0 == file)
            .map(|f| (f.1.clone(), f.2))
    }
}

/// Transcoding state of one simulator.
#[derive(Debug, Default)]
pub(crate) struct TranscodeState {
    fault: Mutex<TranscodeFault>,
    store: Mutex<Store>,
    stats: Mutex<TranscodeStats>,
}

impl TranscodeState {
    pub(crate) fn set_fault(&self, fault: TranscodeFault) {
        *lock(&self.fault) = fault;
    }

    pub(crate) fn stats(&self) -> TranscodeStats {
        let mut stats = lock(&self.stats).clone();
        stats.sessions = lock(&self.store).sessions.len();
        stats
    }

    fn update(&self, f: impl FnOnce(&mut TranscodeStats)) {
        f(&mut lock(&self.stats));
    }

    /// Ends a session (`EndTranscodingSession`): its renditions are dropped.
    pub(crate) fn end_session(&self, session: &str) {
        let mut store = lock(&self.store);
        if let Some(s) = store.sessions.remove(session) {
            store.bytes -= s.segments.iter().map(|x| x.bytes).sum::<usize>();
        }
    }

    /// go-livepeer's `CheckCapacity(session id)`: a known session always passes; a new one only
    /// while fewer than `max` sessions exist.
    fn check_capacity(&self, session: &str, max: usize) -> Result<(), Rejection> {
        let mut store = lock(&self.store);
        store.prune(Instant::now());
        if store.sessions.contains_key(session) || store.sessions.len() < max {
            return Ok(());
        }
        Err(Rejection::new(StatusCode::FORBIDDEN, "OrchestratorCapped"))
    }
}

/// A lock that ignores poisoning: every update is a whole value written at once.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `POST /segment` and the rendition downloads. The `/stream/{request}/…` parameter name is
/// the one the AI result route uses for the same position.
pub(crate) fn routes(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/segment", post(segment))
        .route("/stream/{request}/{profile}/{file}", get(rendition))
        .with_state(shared)
}

/// `GET /stream/<session>/<profile>/<seq>.<ext>`: a rendition from memory.
async fn rendition(
    State(shared): State<Arc<Shared>>,
    Path((session, profile, file)): Path<(String, String, String)>,
) -> Response {
    if *lock(&shared.transcode.fault) == TranscodeFault::SlowRenditions {
        tokio::time::sleep(SLOW_RENDITION).await;
    }
    let found = lock(&shared.transcode.store).get(&session, &format!("{profile}/{file}"));
    match found {
        Some((data, content_type)) => {
            ([(header::CONTENT_TYPE, HeaderValue::from_static(content_type))], data).into_response()
        }
        None => Rejection::new(StatusCode::NOT_FOUND, "404 page not found").into_response(),
    }
}

/// A segment that passed every check before the body: what to transcode it for.
struct Admitted {
    seg: net::SegData,
    profiles: Vec<Profile>,
    session: String,
    charge: Charge,
    info: net::OrchestratorInfo,
}

async fn segment(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    shared.transcode.update(|s| s.requests += 1);
    if *lock(&shared.transcode.fault) == TranscodeFault::Unavailable {
        return (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable").into_response();
    }
    let (parts, body) = req.into_parts();
    let admitted = match admit(&shared, &parts.headers) {
        Ok(a) => a,
        Err(rejection) => return rejection.into_response(),
    };
    let data = match axum::body::to_bytes(body, shared.config.max_segment_bytes).await {
        Ok(data) => data,
        Err(_) => return internal_error(),
    };
    // Compared with the hash as Go reads it (`BytesToHash`: the last 32 bytes, left-padded).
    if keccak256(&data) != payment::bytes_to_hash(&admitted.seg.hash) {
        return Rejection::new(StatusCode::FORBIDDEN, "Forbidden").into_response();
    }
    let fault = *lock(&shared.transcode.fault);
    match fault {
        TranscodeFault::Hang => return std::future::pending().await,
        TranscodeFault::InternalError => return internal_error(),
        _ => {}
    }
    shared.transcode.update(|s| s.accepted += 1);
    // The status goes out now, as go-livepeer flushes `200 OK` once the upload is complete;
    // the result follows as the body. A client that goes away drops the body, and with it
    // the encoders (killed on drop).
    let body = futures_util::stream::once(async move {
        match fault {
            TranscodeFault::HangAfterOk => std::future::pending().await,
            TranscodeFault::Garbage => vec![Ok(Bytes::from_static(&[0x0f, 0xff, 0xff, 0xff]))],
            TranscodeFault::CloseMidBody => {
                let mut all = result(&shared, admitted, data, fault).await;
                vec![Ok(all.split_to(all.len() / 2)), Err(ai::simulated_drop())]
            }
            _ => vec![Ok(result(&shared, admitted, data, fault).await)],
        }
    });
    // Each piece is flushed before the next is polled, so a cut comes after what precedes it.
    let body = body.flat_map(|pieces| {
        futures_util::stream::iter(pieces).then(|piece| async move {
            if piece.is_err() {
                tokio::time::sleep(ai::FLUSH_PAUSE).await;
            }
            piece
        })
    });
    Response::new(Body::from_stream(body))
}

fn internal_error() -> Response {
    Rejection::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error").into_response()
}

/// The checks before the body, in go-livepeer's order (PROTOCOL.md §4.6, §6.2 steps 1–4),
/// and the OrchestratorInfo the answer carries: fresh ticket params for the sender, the auth
/// token the request came with.
fn admit(shared: &Shared, headers: &HeaderMap) -> Result<Admitted, Rejection> {
    let payment = ai::check_payment(shared, headers)?;
    let sender = payment::bytes_to_address(&payment.sender);
    let seg = ai::check_segment(shared, headers, sender);
    if let Ok(seg) = &seg {
        let seg = seg.clone();
        shared.transcode.update(|s| s.last_segment = Some(seg));
    }
    let seg = seg?;
    let profiles =
        transcode_media::profiles(&seg).map_err(|e| Rejection::new(StatusCode::FORBIDDEN, e))?;
    let token = seg.auth_token.clone().unwrap_or_default();
    let session = token.session_id.clone();
    shared.transcode.check_capacity(&session, shared.config.transcode_max_sessions)?;
    let charge = shared.payments.admit(&payment, &session)?;
    let req = net::OrchestratorRequest { address: payment.sender.clone(), ..Default::default() };
    let mut info = grpc::info(shared, &req)
        .map_err(|_| Rejection::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error"))?;
    info.auth_token = Some(token);
    Ok(Admitted { seg, profiles, session, charge, info })
}

/// Transcodes (or fails as `fault` says), stores the renditions, debits their pixels and
/// encodes the `TranscodeResult`.
async fn result(shared: &Shared, a: Admitted, data: Bytes, fault: TranscodeFault) -> Bytes {
    let latency = shared.config.transcode_latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let outcome = match fault {
        TranscodeFault::Busy => Err("OrchestratorBusy".to_owned()),
        TranscodeFault::Capped => Err("OrchestratorCapped".to_owned()),
        _ => renditions(shared, &a, data).await,
    };
    // go-livepeer refuses outputs too short to be a segment (`transcodeSeg`).
    let outcome =
        outcome.and_then(|r| match r.iter().any(|r| r.data.len() < MIN_RENDITION_BYTES) {
            true => Err("ZeroSegments".to_owned()),
            false => Ok(r),
        });
    let inflate = if fault == TranscodeFault::InflatePixels { 1_000_000 } else { 1 };
    let result = match outcome {
        Ok(renditions) => Ok(publish(shared, &a, renditions, inflate)),
        Err(e) => Err(e),
    };
    let result = match result {
        Ok(Ok(data)) => net::transcode_result::Result::Data(data),
        Ok(Err(e)) | Err(e) => {
            shared.transcode.update(|s| s.failed += 1);
            net::transcode_result::Result::Error(e)
        }
    };
    let answer = net::TranscodeResult { seq: a.seg.seq, result: Some(result), info: Some(a.info) };
    Bytes::from(answer.encode_to_vec())
}

/// The renditions of every profile, made at once (fast mode: without encoding).
async fn renditions(shared: &Shared, a: &Admitted, data: Bytes) -> Result<Vec<Rendition>, String> {
    if let Some(p) = a.profiles.iter().find(|p| !p.h264) {
        return Err(format!("unsupported video codec for profile {}", p.name));
    }
    if shared.config.transcode_fast {
        return Ok(a
            .profiles
            .iter()
            .map(|p| transcode_media::fast(&data, p, i64::from(a.seg.duration)))
            .collect());
    }
    let _permit =
        shared.transcode_slots.acquire().await.map_err(|_| "OrchestratorBusy".to_owned())?;
    let jobs = a.profiles.iter().map(|p| transcode_media::encode(data.clone(), p));
    futures_util::future::join_all(jobs).await.into_iter().collect()
}

/// Stores the renditions, debits their pixels and signs their hashes (on chain, with a key);
/// the pixels reported are `inflate` times those debited.
fn publish(
    shared: &Shared,
    a: &Admitted,
    renditions: Vec<Rendition>,
    inflate: u64,
) -> Result<net::TranscodeData, String> {
    let base = shared.service_url().trim_end_matches('/').to_owned();
    let mut files = Vec::with_capacity(renditions.len());
    let mut segments = Vec::with_capacity(renditions.len());
    let mut hashes = Vec::with_capacity(32 * renditions.len());
    let mut pixels: u64 = 0;
    for (p, r) in a.profiles.iter().zip(&renditions) {
        let file = format!("{}/{}{}", p.name, a.seg.seq, p.ext());
        segments.push(net::TranscodedSegmentData {
            url: format!("{base}/stream/{}/{file}", a.session),
            pixels: i64::try_from(r.pixels.saturating_mul(inflate)).unwrap_or(i64::MAX),
            perceptual_hash_url: String::new(),
        });
        hashes.extend_from_slice(keccak256(&r.data).as_slice());
        pixels = pixels.saturating_add(r.pixels);
        files.push((file, r.data.clone(), p.content_type()));
    }
    lock(&shared.transcode.store).put(&a.session, files, shared.config.transcode_window);
    shared.payments.debit(&a.charge, pixels).map_err(|e| e.message)?;
    let sig = match (&shared.config.eth_signer, shared.payments.on_chain()) {
        (Some(signer), true) => signer.eth_sign(&hashes).map_err(|e| e.to_string())?.0.to_vec(),
        _ => Vec::new(),
    };
    shared.transcode.update(|s| {
        s.transcoded += 1;
        s.renditions += renditions.len() as u64;
        s.pixels = s.pixels.saturating_add(pixels);
    });
    Ok(net::TranscodeData { segments, sig })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_keeps_a_window_per_session() {
        let mut store = Store::default();
        for seq in 0..5 {
            let file = (format!("p/{seq}.ts"), Bytes::from(vec![0u8; 10]), "video/mp2t");
            store.put("s", vec![file], 3);
        }
        assert!(store.get("s", "p/1.ts").is_none());
        assert!(store.get("s", "p/2.ts").is_some());
        assert_eq!(store.bytes, 30);
        store.prune(Instant::now() + SESSION_IDLE);
        assert!(store.sessions.is_empty());
        assert_eq!(store.bytes, 0);
    }
}
