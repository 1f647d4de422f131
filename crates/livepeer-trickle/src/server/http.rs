//! The HTTP face of a [`Hub`], with go-livepeer's `trickle_server.go` statuses and headers.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::post;
use futures_util::StreamExt;
use http::header::{CONNECTION, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use super::reader::segment_body;
use super::{AppendError, Channel, CreateError, Hub, ReadSlot, Segment};

// `HeaderName::from_static` wants lower case; HTTP header names are case-insensitive.
const SEQ: HeaderName = HeaderName::from_static("lp-trickle-seq");
const LATEST: HeaderName = HeaderName::from_static("lp-trickle-latest");
const CLOSED: HeaderName = HeaderName::from_static("lp-trickle-closed");
const RESET: HeaderName = HeaderName::from_static("lp-trickle-reset");
const EXPECT_CONTENT: HeaderName = HeaderName::from_static("expect-content");
const TERMINATED: HeaderValue = HeaderValue::from_static(crate::CLOSED_VALUE);

/// The routes, with the hub as state.
pub(super) fn router(hub: Hub) -> Router {
    Router::new()
        .route("/{channel}", post(create_channel).delete(delete_channel))
        // `/{channel}/next` is served by the GET handler: one route keeps the path matching
        // simple and gives `POST /{channel}/next` the same `Invalid idx` answer as go-livepeer.
        .route("/{channel}/{seq}", post(post_segment).get(get_segment).delete(delete_segment))
        .with_state(hub)
}

/// A response with a plain-text body.
fn text(status: StatusCode, body: &'static str) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

fn empty_ok() -> Response {
    Response::new(Body::empty())
}

fn stream_not_found() -> Response {
    text(StatusCode::NOT_FOUND, "Stream not found")
}

fn invalid_idx() -> Response {
    text(StatusCode::BAD_REQUEST, "Invalid idx")
}

fn set(response: &mut Response, name: HeaderName, value: impl Into<HeaderValue>) {
    response.headers_mut().insert(name, value.into());
}

/// The non-standard "channel exists, segment doesn't" status.
fn status_missed() -> StatusCode {
    StatusCode::from_u16(crate::STATUS_MISSED).unwrap_or(StatusCode::NOT_FOUND)
}

/// Parses a sequence number, allowing negatives down to `min` (the special positions).
fn parse_seq(raw: &str, min: i64) -> Option<i64> {
    raw.parse::<i64>().ok().filter(|seq| *seq >= min)
}

/// `POST /{channel}` with `Expect-Content`: succeeds only if the channel exists, unless the hub
/// autocreates channels.
async fn create_channel(
    State(hub): State<Hub>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    if hub.contains(&name) {
        return empty_ok();
    }
    if !hub.config().autocreate {
        return stream_not_found();
    }
    let mime = header_str(&headers, &EXPECT_CONTENT);
    match hub.create_channel(&name, mime) {
        Ok(_) => empty_ok(),
        Err(error) => create_failed(error),
    }
}

fn create_failed(error: CreateError) -> Response {
    match error {
        CreateError::BadName => text(StatusCode::BAD_REQUEST, "Invalid stream name"),
        CreateError::Full => text(StatusCode::SERVICE_UNAVAILABLE, "Too many streams"),
        CreateError::Closing => text(StatusCode::SERVICE_UNAVAILABLE, "Shutting down"),
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &HeaderName) -> &'a str {
    headers.get(name).and_then(|value| value.to_str().ok()).unwrap_or("")
}

/// `DELETE /{channel}`: closes and removes the channel.
async fn delete_channel(State(hub): State<Hub>, Path(name): Path<String>) -> Response {
    if hub.close(&name) { empty_ok() } else { text(StatusCode::BAD_REQUEST, "Invalid stream") }
}

/// `DELETE /{channel}/{seq}`: closes (abandons) one segment so its readers are released.
async fn delete_segment(
    State(hub): State<Hub>,
    Path((name, seq)): Path<(String, String)>,
) -> Response {
    let Some(channel) = hub.channel(&name) else {
        return stream_not_found();
    };
    let Some(seq) = parse_seq(&seq, 0) else {
        return invalid_idx();
    };
    // `seq` is not negative, so the conversion cannot fail.
    if channel.close_segment(seq.unsigned_abs()) {
        empty_ok()
    } else {
        text(StatusCode::BAD_REQUEST, "Nonexistent segment")
    }
}

/// `GET /{channel}/next`: the next write sequence.
fn next_seq(channel: &Channel) -> Response {
    let snapshot = channel.snapshot();
    let mut response = Response::new(Body::from(snapshot.next_write.to_string()));
    set(&mut response, LATEST, snapshot.next_write);
    if snapshot.closed {
        set(&mut response, CLOSED, TERMINATED);
    }
    response
}

/// `GET /{channel}/{seq}`: streams one segment from byte 0, waiting for its first byte.
async fn get_segment(
    State(hub): State<Hub>,
    Path((name, seq)): Path<(String, String)>,
) -> Response {
    let Some(channel) = hub.readable(&name) else {
        return stream_not_found();
    };
    if seq == "next" {
        return next_seq(&channel);
    }
    let Some(seq) = parse_seq(&seq, crate::SEQ_CURRENT) else {
        return invalid_idx();
    };
    // Taken before the segment, so that refused readers pre-create nothing.
    let Some(slot) = channel.reader_slot() else {
        return text(StatusCode::SERVICE_UNAVAILABLE, "Too many subscribers");
    };
    let (segment, latest) = match channel.read_slot(seq) {
        ReadSlot::Found { segment, latest } => (segment, latest),
        ReadSlot::Missing { seq, latest, closed } => {
            let mut response =
                text(if closed { StatusCode::OK } else { status_missed() }, "Entry not found");
            set(&mut response, LATEST, latest);
            set(&mut response, SEQ, seq);
            if closed {
                set(&mut response, CLOSED, TERMINATED);
            }
            return response;
        }
    };
    let mut cursor = segment.cursor();
    // Headers go out with the first byte, as in go-livepeer: a subscriber can preconnect to
    // the next segment and learns nothing until the publisher starts writing it.
    let Some(first) = cursor.next().await else {
        return ended_empty(&channel, &segment);
    };
    let stall = hub.config().reader_stall_timeout;
    let body = segment_body(first, cursor, slot, stall, segment.let_go());
    let mut response = Response::new(body);
    set(&mut response, SEQ, segment.seq());
    if segment.seq() != latest {
        set(&mut response, LATEST, latest);
    }
    if let Ok(mime) = HeaderValue::from_str(channel.mime())
        && !channel.mime().is_empty()
    {
        set(&mut response, CONTENT_TYPE, mime);
    }
    response
}

/// The answer for a segment that ended without data (abandoned, evicted, or its channel closed).
fn ended_empty(channel: &Channel, segment: &Segment) -> Response {
    let snapshot = channel.snapshot();
    let mut response = empty_ok();
    set(&mut response, SEQ, segment.seq());
    set(&mut response, LATEST, snapshot.next_write);
    if snapshot.closed {
        set(&mut response, CLOSED, TERMINATED);
    }
    response
}

/// `POST /{channel}/{seq}`: the body, streamed, becomes segment `seq` (`-1`: next write).
async fn post_segment(
    State(hub): State<Hub>,
    Path((name, seq)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let channel = match hub.channel(&name) {
        Some(channel) => channel,
        None if hub.config().autocreate => {
            match hub.create_channel(&name, header_str(&headers, &CONTENT_TYPE)) {
                Ok(channel) => channel,
                Err(error) => return create_failed(error),
            }
        }
        None => return not_found_close(),
    };
    let Some(seq) = parse_seq(&seq, crate::SEQ_NEXT) else {
        return invalid_idx();
    };
    let reset = headers.get(&RESET).is_some_and(|value| !value.is_empty());
    let Ok(segment) = channel.write_slot(seq, reset) else {
        // Closed between the lookup and now: the same answer as if it were already gone.
        return not_found_close();
    };
    receive(&channel, segment, body).await
}

/// 404 with `Connection: close`, which also wakes preconnected go-livepeer publishers.
fn not_found_close() -> Response {
    let mut response = stream_not_found();
    set(&mut response, CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Copies the request body into `segment` until the body ends, fails, outgrows the limit, or
/// the segment is closed under it.
async fn receive(channel: &Arc<Channel>, segment: Arc<Segment>, body: Body) -> Response {
    let seq = segment.seq();
    let limit = channel.max_segment_bytes();
    let mut stream = body.into_data_stream();
    let mut total = 0usize;
    loop {
        let frame = tokio::select! {
            frame = stream.next() => frame,
            () = segment.closed() => {
                if total == 0 || channel.is_closed() {
                    return ended_early(channel, seq);
                }
                break;
            }
        };
        let bytes = match frame {
            None => {
                segment.close();
                if total == 0 {
                    // An empty body (a preconnect that was never used, or a publisher that
                    // gave up): the live edge still moves past it so clients do not stall
                    // on this seq.
                    channel.mark_written(seq);
                    return ended_early(channel, seq);
                }
                return written(seq);
            }
            Some(Ok(bytes)) => bytes,
            Some(Err(error)) => {
                // Readers must not wait for bytes that will never come.
                segment.close();
                tracing::debug!(channel = %super::shown(channel.name()), seq, total, %error, "trickle POST body failed");
                return text(StatusCode::INTERNAL_SERVER_ERROR, "Server error");
            }
        };
        if bytes.is_empty() {
            continue;
        }
        if total == 0 {
            channel.mark_written(seq);
        }
        total += bytes.len();
        match segment.append(bytes, limit) {
            Ok(()) => {}
            Err(AppendError::TooLarge) => {
                segment.close();
                tracing::debug!(channel = %super::shown(channel.name()), seq, limit, "trickle segment too large");
                let mut response = text(StatusCode::PAYLOAD_TOO_LARGE, "Segment too large");
                set(&mut response, CONNECTION, HeaderValue::from_static("close"));
                return response;
            }
            Err(AppendError::Closed) if channel.is_closed() => return ended_early(channel, seq),
            Err(AppendError::Closed) => break,
        }
    }
    // Closed by someone else (DELETE, reset, eviction) after data arrived: the segment is let
    // go (its readers keep what they have), and the rest of the body is read and dropped so
    // that the publisher still gets its 200.
    drop(segment);
    discard(channel, seq, stream).await
}

/// How long the rest of a segment closed under its publisher is read and dropped. A displaced
/// publisher finishes a segment of a second or two; a body still open after this is no
/// segment, and without a bound it would hold its connection for good.
const DISCARD_WAIT: Duration = Duration::from_secs(10);

/// Reads and drops the rest of segment `seq`'s body, for at most [`DISCARD_WAIT`]; ends
/// sooner at its end, or at a chunk that arrives once the channel has closed.
async fn discard(channel: &Channel, seq: u64, mut stream: axum::body::BodyDataStream) -> Response {
    let deadline = tokio::time::Instant::now() + DISCARD_WAIT;
    loop {
        // A silent body is caught by the deadline; a chatty one also by the channel's end.
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(None) => return written(seq),
            Ok(Some(Ok(_))) if !channel.is_closed() => {}
            Ok(Some(Err(_))) => return text(StatusCode::INTERNAL_SERVER_ERROR, "Server error"),
            Ok(Some(Ok(_))) | Err(_) => return ended_early(channel, seq),
        }
    }
}

/// 200 for a segment's whole body.
fn written(seq: u64) -> Response {
    let mut response = empty_ok();
    set(&mut response, SEQ, seq);
    response
}

/// 200 for a POST that ends without (more) data being taken, telling whether the channel closed.
fn ended_early(channel: &Channel, seq: u64) -> Response {
    let mut response = empty_ok();
    set(&mut response, SEQ, seq);
    set(&mut response, CONNECTION, HeaderValue::from_static("close"));
    if channel.is_closed() {
        set(&mut response, CLOSED, TERMINATED);
    }
    response
}
