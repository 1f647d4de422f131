//! Transcoding routes (GATEWAY.md §6.2): HTTP push `POST|PUT /live/{manifestID}/{seq}.ts|.mp4`
//! with go-livepeer's statuses (its text in a JSON error naming the field), answering every
//! rendition as `multipart/mixed` parts when asked; HLS playback under `/stream/`; and the
//! admin API's stream list and status.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};

use super::error::JsonPath;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{any, get};
use bytes::{BufMut as _, Bytes, BytesMut};
use serde_json::Value;

use super::error::json_error;
use crate::keys::Tab;
use crate::transcode::charge;
use crate::transcode::request::{self, CONFIGURATION_HEADER};
use crate::transcode::{SegmentIn, TranscodeError, TranscodeState, Transcoded};

/// How long a push may take to send its body.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// The public routes: push and playback.
pub(crate) fn router(state: TranscodeState) -> Router {
    Router::new()
        .route("/live/{manifest}/{file}", any(push))
        .route("/stream/{file}", get(master))
        .route("/stream/{manifest}/{file}", get(media))
        .route("/stream/{manifest}/{rendition}/{file}", get(segment))
        .with_state(state)
        // The body is read here within `--max-segment-bytes`.
        .layer(DefaultBodyLimit::disable())
}

/// The admin routes: `GET /transcode/streams` and `GET /transcode/streams/{manifest}`.
pub(crate) fn admin_router(state: TranscodeState) -> Router {
    Router::new()
        .route("/transcode/streams", get(streams))
        .route("/transcode/streams/{manifest}", get(stream))
        .with_state(state)
}

/// go-livepeer's status of each error.
fn status(e: &TranscodeError) -> StatusCode {
    match e {
        TranscodeError::BadExtension(_)
        | TranscodeError::BadUrl(_)
        | TranscodeError::BadConfig(_)
        | TranscodeError::BadHeader { .. }
        | TranscodeError::BadSeq(_) => StatusCode::BAD_REQUEST,
        TranscodeError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        TranscodeError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
        TranscodeError::BadMedia(_)
        | TranscodeError::BadCodec(_)
        | TranscodeError::Failed { final_: true, .. } => StatusCode::UNPROCESSABLE_ENTITY,
        TranscodeError::TooManyStreams
        | TranscodeError::Backlog(_)
        | TranscodeError::NoSessions
        | TranscodeError::GatewayOverloaded(_) => StatusCode::SERVICE_UNAVAILABLE,
        TranscodeError::NotFound(_) => StatusCode::NOT_FOUND,
        TranscodeError::StreamExists(_) | TranscodeError::LateSegment(_) => StatusCode::CONFLICT,
        TranscodeError::AuthDenied(_) | TranscodeError::NotOwner(_) => StatusCode::FORBIDDEN,
        // The key check's own status: 402 `budget_exceeded`, 410 `stream_stopped`, ...
        TranscodeError::KeyRefused(r) => super::error::status(r.0.kind()),
        TranscodeError::AuthUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        TranscodeError::Failed { .. } | TranscodeError::Internal(_) => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

fn error(e: TranscodeError) -> Response {
    // A key's refusal keeps the key check's own shape (402 `budget_exceeded` and details,
    // 410 `stream_stopped`).
    if let TranscodeError::KeyRefused(r) = e {
        return r.0.into_response();
    }
    let mut resp = json_error(status(&e), e.kind(), e.to_string(), e.field().as_deref());
    if let Some(seconds) = retry_after(&e) {
        resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    resp
}

/// When a retry of a refused push may succeed: what the other routes tell of the same
/// condition (its `error::Kind`'s default); none for what a retry cannot cure.
fn retry_after(e: &TranscodeError) -> Option<u32> {
    use crate::error::Kind;
    let kind = match e {
        TranscodeError::NoSessions => Kind::NoOrchestrator,
        TranscodeError::TooManyStreams => Kind::TooManyStreams,
        TranscodeError::AuthUnavailable(_) => Kind::AuthWebhookUnavailable,
        // A stream's backlog clears as its earlier segment is published, as a shortage does.
        TranscodeError::Backlog(_) | TranscodeError::GatewayOverloaded(_) => {
            Kind::GatewayOverloaded
        }
        _ => return None,
    };
    kind.default_retry_after()
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `POST|PUT /live/{manifestID}/{seq}.ts|.mp4`.
async fn push(
    State(state): State<TranscodeState>,
    JsonPath((manifest, file)): JsonPath<(String, String)>,
    req: Request,
) -> Response {
    let path = req.uri().path().to_owned();
    if req.method() != Method::POST && req.method() != Method::PUT {
        let message = format!("http push request wrong method={} url={path}", req.method());
        return json_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", message, None);
    }
    // The webhook is asked before the body is read: a refused client uploads nothing.
    let host = header_str(req.headers(), header::HOST.as_str()).unwrap_or_default();
    let url = format!("http://{host}{path}");
    let admitted = match crate::transcode::request::manifest_id(&manifest, &path) {
        Ok(name) => state.admit_push(&name, &url).await,
        Err(e) => Err(e),
    };
    let (stream, hook_profiles) = match admitted {
        Ok(a) => a,
        Err(e) => return error(e),
    };
    let tab = req.extensions().get::<Arc<Tab>>().cloned();
    if let Err(e) = check_key(&state, &stream, tab.as_deref()).await {
        return error(e);
    }
    match read_push(&state, &manifest, &file, req).await {
        Ok((mut segment, multipart)) => {
            // Refused before the key pays: a segment the stream would not publish, or one
            // that would wait in a full backlog.
            if let Err(e) = state.check_segment(&stream, segment.seq, multipart) {
                return error(e);
            }
            segment.profiles = segment.profiles.or(hook_profiles);
            if let Err(resp) = claim(&state, tab.as_deref(), &stream, &segment).await {
                return resp;
            }
            // A customer key's budget pays for the segment's video before any orchestrator
            // is paid: as measured from the segment, not as the client declares it.
            let ms = charge::charged_ms(&segment.data, segment.format, segment.duration_ms);
            if let Some(tab) = &tab
                && let Err(e) = charge::reserve(tab, ms).await
            {
                return e.into_response();
            }
            // The push's own configuration wins over the webhook's, as in go-livepeer.
            segment.manifest = stream;
            // The key is settled before the segment is published: one it refuses to pay for
            // is not published, and the stream takes no more.
            let charge = tab.map(|tab| charge::SegmentCharge { tab, ms });
            match state.transcode_charged(segment, charge).await {
                // With no profiles go-livepeer returns before it writes a multipart body: the
                // empty 200 (server/mediaserver.go `HandlePush`, `len(urls) == 0`).
                Ok(done) if multipart && !done.profiles.is_empty() => multipart_answer(&done),
                Ok(_) => StatusCode::OK.into_response(),
                Err(e) => error(e),
            }
        }
        Err(e) => error(e),
    }
}

/// Refused before the body is read: a key pushes into its own streams only, and while the key
/// lets them run (`follow_key`: a stream the operator stopped ends here).
async fn check_key(
    state: &TranscodeState,
    manifest: &str,
    tab: Option<&Tab>,
) -> Result<(), TranscodeError> {
    state.check_owner(manifest, tab.map(|t| t.key().id.as_str()))?;
    match tab {
        Some(tab) => state.follow_key(manifest, tab).await,
        None => Ok(()),
    }
}

/// Takes the stream `manifest` for the push of `segment`: a push that makes it with a
/// customer key takes one of the key's `max_streams` (429 when it holds them all) and owns
/// it; a stream another key made is 403.
async fn claim(
    state: &TranscodeState,
    tab: Option<&Tab>,
    manifest: &str,
    segment: &SegmentIn,
) -> Result<(), Response> {
    let permit = match tab {
        Some(tab) if !state.has_stream(manifest) => {
            Some(tab.stream_permit().await.map_err(IntoResponse::into_response)?)
        }
        _ => None,
    };
    let key = tab.map(|t| (t.key().id.as_str(), t.since_ms()));
    state.claim_push(manifest, key, permit, segment.profiles.clone(), segment.format).map_err(error)
}

/// Reads and checks a push: what go-livepeer checks, in its order, then the size cap and a
/// look at the body.
async fn read_push(
    state: &TranscodeState,
    manifest: &str,
    file: &str,
    req: Request,
) -> Result<(SegmentIn, bool), TranscodeError> {
    let path = req.uri().path().to_owned();
    let headers = req.headers().clone();
    // An empty header is no header, as Go reads one (server/auth.go): a pusher that always
    // sends it, empty when it has nothing to say, is not refused.
    let settings = match header_str(&headers, CONFIGURATION_HEADER).filter(|t| !t.is_empty()) {
        Some(text) => request::parse_settings(text)?,
        None => request::StreamSettings { profiles: None, timeout_multiplier: 1 },
    };
    let (seq, format) = request::file_name(file)?;
    let manifest = request::manifest_id(manifest, &path)?;
    let duration_ms = request::duration_ms(header_str(&headers, "Content-Duration"))?;
    let limit = state.config().max_segment_bytes;
    let data = super::body::read_body(req, limit, BODY_TIMEOUT).await.map_err(|e| {
        if e.kind() == crate::error::Kind::BodyTooLarge {
            TranscodeError::TooLarge(limit)
        } else if e.kind() == crate::error::Kind::GatewayOverloaded {
            TranscodeError::GatewayOverloaded(e.message().to_owned())
        } else if e.kind() == crate::error::Kind::BodyTimeout {
            TranscodeError::BodyTimeout(e.message().to_owned())
        } else {
            TranscodeError::BadHeader { header: "body", message: e.message().to_owned() }
        }
    })?;
    if !request::looks_like(&data, format) {
        return Err(TranscodeError::BadMedia(path));
    }
    // go-livepeer probes the codec before it makes the stream: an input no orchestrator can
    // decode is refused with nothing made or paid.
    let input = crate::transcode::probe_input(&data, format)?;
    // go-livepeer answers with the renditions only when the first `Accept` is exactly
    // `multipart/mixed` (server/mediaserver.go `HandlePush`); any other value, a list naming it
    // among others included, gets the empty 200.
    let multipart = headers.get(header::ACCEPT).is_some_and(|a| a.as_bytes() == b"multipart/mixed");
    let segment = SegmentIn {
        manifest,
        seq,
        data,
        duration_ms,
        format,
        profiles: settings.profiles,
        resolution: request::resolution(header_str(&headers, "Content-Resolution")),
        timeout_multiplier: settings.timeout_multiplier,
        input: Some(input),
        answered: multipart,
    };
    Ok((segment, multipart))
}

/// Every rendition as a part, with go-livepeer's part headers.
fn multipart_answer(done: &Transcoded) -> Response {
    let boundary = hex::encode(rand::random::<[u8; 12]>());
    let mut body = BytesMut::new();
    let ext = done.format.ext();
    for (profile, bytes) in done.profiles.iter().zip(&done.outputs) {
        let name = format!("\"{}_{}{ext}\"", profile.name, done.seq);
        body.put_slice(format!("--{boundary}\r\n").as_bytes());
        // In the order Go's multipart writer puts them, sorted by name.
        body.put_slice(format!("Content-Disposition: attachment; filename={name}\r\n").as_bytes());
        body.put_slice(format!("Content-Length: {}\r\n", bytes.len()).as_bytes());
        body.put_slice(format!("Content-Type: {}; name={name}\r\n", done.format.mime()).as_bytes());
        body.put_slice(format!("Rendition-Name: {}\r\n\r\n", profile.name).as_bytes());
        body.put_slice(bytes);
        body.put_slice(b"\r\n");
    }
    body.put_slice(format!("--{boundary}--\r\n").as_bytes());
    let content_type = format!("multipart/mixed; boundary={boundary}");
    let mut resp = Response::new(Body::from(body.freeze()));
    if let Ok(v) = HeaderValue::from_str(&content_type) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp
}

/// An HLS answer: CORS open and a short cache, as lpms serves it.
fn hls(content_type: &'static str, body: impl Into<Bytes>) -> Response {
    let mut resp = Response::new(Body::from(body.into()));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=5"));
    resp
}

const M3U8: &str = "application/vnd.apple.mpegurl";

fn not_found(what: &str) -> Response {
    error(TranscodeError::NotFound(format!("{what}: ErrNotFound")))
}

/// `GET /stream/{manifestID}.m3u8`.
async fn master(State(state): State<TranscodeState>, JsonPath(file): JsonPath<String>) -> Response {
    let Some(manifest) = file.strip_suffix(".m3u8") else { return not_found(&file) };
    match state.master_playlist(manifest) {
        Ok(text) => hls(M3U8, text),
        Err(e) => error(e),
    }
}

/// `GET /stream/{manifestID}/{rendition}.m3u8`.
async fn media(
    State(state): State<TranscodeState>,
    JsonPath((manifest, file)): JsonPath<(String, String)>,
) -> Response {
    let Some(rendition) = file.strip_suffix(".m3u8") else { return not_found(&file) };
    match state.media_playlist(&manifest, rendition) {
        Ok(text) => hls(M3U8, text),
        Err(e) => error(e),
    }
}

/// `GET /stream/{manifestID}/{rendition}/{seq}.ts|.mp4`.
async fn segment(
    State(state): State<TranscodeState>,
    JsonPath((manifest, rendition, file)): JsonPath<(String, String, String)>,
) -> Response {
    let Ok((seq, _)) = request::file_name(&file) else { return not_found(&file) };
    match state.segment(&manifest, &rendition, seq) {
        Ok((bytes, mime)) => hls(mime, bytes),
        Err(e) => error(e),
    }
}

async fn streams(State(state): State<TranscodeState>) -> Json<Value> {
    Json(state.streams_status())
}

async fn stream(
    State(state): State<TranscodeState>,
    JsonPath(manifest): JsonPath<String>,
) -> Response {
    match state.stream_status(&manifest) {
        Some(status) => Json(status).into_response(),
        None => not_found(&manifest),
    }
}
