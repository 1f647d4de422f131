//! Faults of the answer, for soak runs: an orchestrator that does the work (and is paid for
//! it) but answers garbage, the wrong media type, a huge body, or a stream that stalls half
//! way; and a ledger of which client request each orchestrator was paid for and delivered.
//!
//! Both wrap the batch AI routes from outside ([`wrap`]), so the handlers themselves are
//! unchanged: the fault replaces a finished answer, and the ledger reads the request's body and
//! payment header before the handler runs and its status after. The request-level modes of
//! [`crate::AiMode`] (hang, a status, a connection cut) stay where they are.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use futures_util::StreamExt as _;
use http::{HeaderValue, StatusCode, header};
use livepeer_proto::{Message as _, headers, net};
use serde_json::Value;

use crate::Shared;

/// How long deliveries are remembered for [`FaultState::void_since`].
const RECENT: Duration = Duration::from_secs(30);
/// Largest request body the ledger reads to find its key; larger ones pass unledgered.
const MAX_LEDGER_BODY: usize = 1 << 20;
/// Chunk size of a huge answer, which is produced as it is sent, never held whole.
const HUGE_CHUNK: usize = 64 << 10;

/// How the simulator spoils its AI answers; changeable at run time with
/// [`crate::Sim::set_ai_fault`]. The work is done and paid for first, as an orchestrator with
/// a broken worker or proxy would.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AiFault {
    /// Answers as produced.
    #[default]
    None,
    /// A 200 whose body is not what its content type says (bytes that are not JSON, or
    /// server-sent events that are not JSON), ending normally.
    Garbage,
    /// The answer's bytes with `Content-Type: text/html`.
    WrongContentType,
    /// A 200 JSON (or event stream) body of [`crate::SimConfig::huge_body_bytes`] bytes.
    HugeBody,
    /// The first chunk of the answer, then nothing, with the connection held open.
    StallMidStream,
    /// An event stream's first chunk, then a final `event: error` (a runner that failed
    /// mid-answer); other answers as produced.
    ErrorEvent,
    /// An event stream's first chunk, then a comment (`: keepalive`) every 50 ms, never
    /// ending; other answers as produced.
    EndlessStream,
    /// A JSON answer sent as an event stream instead: `data: <the JSON>`, then
    /// `data: [DONE]`, with `Content-Type: text/event-stream`; event streams as produced.
    AsEventStream,
    /// A 200 JSON answer of `null`: what a go-livepeer orchestrator sends for a non-streaming
    /// LLM request its runner did not answer 200, 400, 401 or 500 (a 422, a 503):
    /// `Worker.handleNonStreamingResponse` (`ai/worker/worker.go`) returns the nil `JSON200`
    /// without an error, and `json.NewEncoder(w).Encode` writes it. Event streams as produced.
    Null,
}

/// What one simulator saw of one client request, by the key the ledger found in its body.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LedgerEntry {
    /// Attempts that carried tickets and were not refused for payment (402).
    pub paid_attempts: u32,
    /// Attempts answered 200 as produced, whose whole body was handed to the connection (and,
    /// for an answer naming result files, the first of them too): work done, charged and
    /// delivered.
    pub delivered: u32,
    /// Attempts charged (answered 200) whose answer a fault then spoiled.
    pub spoiled: u32,
    /// Deliveries taken back by [`crate::Sim::void_deliveries_since`]: the simulator was
    /// killed just after, so the answer may still have been in its buffers.
    pub voided: u32,
}

/// Fault mode and ledger of a running simulator.
#[derive(Debug, Default)]
pub(crate) struct FaultState {
    mode: Mutex<AiFault>,
    ledger: Mutex<HashMap<String, LedgerEntry>>,
    /// Answers whose result files are not fetched yet: result request id → ledger key.
    pending: Mutex<HashMap<String, String>>,
    /// Deliveries of the last [`RECENT`], oldest first, for [`FaultState::void_since`].
    recent: Mutex<std::collections::VecDeque<(Instant, String)>>,
    spoiled: AtomicU64,
}

impl FaultState {
    pub(crate) fn set(&self, fault: AiFault) {
        if let Ok(mut m) = self.mode.lock() {
            *m = fault;
        }
    }

    fn mode(&self) -> AiFault {
        self.mode.lock().map(|m| *m).unwrap_or_default()
    }

    pub(crate) fn ledger(&self) -> HashMap<String, LedgerEntry> {
        self.ledger.lock().map(|l| l.clone()).unwrap_or_default()
    }

    pub(crate) fn spoiled(&self) -> u64 {
        self.spoiled.load(Relaxed)
    }

    fn delivered(&self, key: &str) {
        self.delivered_at(key, Instant::now());
    }

    fn delivered_at(&self, key: &str, now: Instant) {
        self.record(key, |e| e.delivered += 1);
        if let Ok(mut recent) = self.recent.lock() {
            while recent.front().is_some_and(|(t, _)| now.duration_since(*t) > RECENT) {
                recent.pop_front();
            }
            recent.push_back((now, key.to_owned()));
        }
    }

    /// Takes back the deliveries made at or after `since`.
    pub(crate) fn void_since(&self, since: Instant) {
        let voided: Vec<String> = match self.recent.lock() {
            Ok(mut recent) => {
                let keep = recent.iter().take_while(|(t, _)| *t < since).count();
                recent.drain(keep..).map(|(_, k)| k).collect()
            }
            Err(_) => return,
        };
        for key in voided {
            self.record(&key, |e| {
                e.delivered = e.delivered.saturating_sub(1);
                e.voided += 1;
            });
        }
    }

    fn record(&self, key: &str, update: impl FnOnce(&mut LedgerEntry)) {
        if let Ok(mut l) = self.ledger.lock() {
            update(l.entry(key.to_owned()).or_default());
        }
    }
}

/// `routes` with the fault layer (and, with [`crate::SimConfig::request_ledger`], the ledger)
/// around them.
pub(crate) fn wrap(shared: Arc<Shared>, routes: Router) -> Router {
    routes.layer(middleware::from_fn_with_state(shared, apply))
}

async fn apply(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    // Result downloads are never spoiled; the first one fetched completes its answer's
    // delivery.
    if let Some(rest) = req.uri().path().strip_prefix("/stream/") {
        let rid = rest.split('/').next().unwrap_or_default().to_owned();
        let response = next.run(req).await;
        let key = shared.fault.pending.lock().ok().and_then(|mut p| p.remove(&rid));
        return match key {
            Some(key) if response.status().is_success() => delivered_at_end(response, shared, key),
            _ => response,
        };
    }
    let fault = shared.fault.mode();
    let llm = req.uri().path() == "/llm";
    let (req, key, tickets) = match shared.config.request_ledger {
        true => ledger_key(req).await,
        false => (req, None, 0),
    };
    let response = next.run(req).await;
    let status = response.status();
    if let Some(key) = &key {
        shared.fault.record(key, |e| {
            if tickets > 0 && status != StatusCode::PAYMENT_REQUIRED {
                e.paid_attempts += 1;
            }
            if status.is_success() && fault != AiFault::None {
                e.spoiled += 1;
            }
        });
    }
    if !status.is_success() {
        return response;
    }
    if fault == AiFault::None {
        return match key {
            Some(key) => delivered_or_pending(response, shared, key).await,
            None => response,
        };
    }
    shared.fault.spoiled.fetch_add(1, Relaxed);
    spoil(response, fault, shared.config.huge_body_bytes, llm)
}

/// An answer that names result files (`/stream/<request>/…`) is delivered when the first of
/// them has been fetched; any other when its body has been sent.
async fn delivered_or_pending(response: Response, shared: Arc<Shared>, key: String) -> Response {
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !json {
        return delivered_at_end(response, shared, key);
    }
    let (parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return Response::from_parts(parts, Body::empty());
    };
    let text = String::from_utf8_lossy(&bytes);
    let rid = text.split("/stream/").nth(1).and_then(|r| r.split('/').next());
    let response = Response::from_parts(parts, Body::from(bytes.clone()));
    match rid {
        Some(rid) => {
            if let Ok(mut p) = shared.fault.pending.lock() {
                p.insert(rid.to_owned(), key);
            }
            response
        }
        None => delivered_at_end(response, shared, key),
    }
}

/// Counts the answer as delivered once its whole body has been handed to the connection, so
/// an answer cut by the orchestrator's death is not counted.
fn delivered_at_end(response: Response, shared: Arc<Shared>, key: String) -> Response {
    let (parts, body) = response.into_parts();
    let done = futures_util::stream::once(async move {
        shared.fault.delivered(&key);
    })
    .filter_map(|()| async { None::<Result<Bytes, axum::Error>> });
    Response::from_parts(parts, Body::from_stream(body.into_data_stream().chain(done)))
}

/// Reads a JSON body (up to [`MAX_LEDGER_BODY`]) for the request's key: its `prompt`, or the
/// text of its last message; and counts the tickets of its payment header. The body is put
/// back for the handler.
async fn ledger_key(req: Request) -> (Request, Option<String>, usize) {
    let tickets = req
        .headers()
        .get(headers::PAYMENT)
        .and_then(|v| STANDARD.decode(v.as_bytes()).ok())
        .and_then(|b| net::Payment::decode(b.as_slice()).ok())
        .map_or(0, |p| p.ticket_sender_params.len());
    let json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !json {
        return (req, None, tickets);
    }
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_LEDGER_BODY).await {
        Ok(b) => b,
        Err(_) => return (Request::from_parts(parts, Body::empty()), None, tickets),
    };
    let value: Value = serde_json::from_slice(&bytes).unwrap_or_default();
    let last_message = || {
        let messages = value.get("messages")?.as_array()?;
        messages.last()?.get("content")?.as_str()
    };
    let key = value.get("prompt").and_then(Value::as_str).or_else(last_message).map(str::to_owned);
    (Request::from_parts(parts, Body::from(bytes)), key, tickets)
}

/// The answer `response` would have been, spoiled by `fault`.
fn spoil(response: Response, fault: AiFault, huge: usize, llm: bool) -> Response {
    let (mut parts, body) = response.into_parts();
    let sse = parts.headers.get(header::CONTENT_TYPE).is_some_and(|v| v == "text/event-stream");
    let body = match fault {
        AiFault::None => body,
        AiFault::WrongContentType => {
            parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
            body
        }
        AiFault::Garbage => {
            parts.headers.remove(header::CONTENT_LENGTH);
            let junk: &'static [u8] = match sse {
                true => b"data: {\"choices\": [{\"delta\": \xff\xfe\n\ndata: not json\n\n",
                false => b"{\"images\": [{\"url\": \xff\xfe not json",
            };
            Body::from(Bytes::from_static(junk))
        }
        AiFault::HugeBody => {
            parts.headers.remove(header::CONTENT_LENGTH);
            huge_body(huge, sse, llm)
        }
        AiFault::StallMidStream => {
            parts.headers.remove(header::CONTENT_LENGTH);
            let first = body.into_data_stream().take(1);
            let forever = futures_util::stream::pending();
            Body::from_stream(first.chain(forever))
        }
        AiFault::ErrorEvent if sse => {
            let first = body.into_data_stream().take(1);
            let error: &'static [u8] =
                b"event: error\ndata: {\"error\": {\"message\": \"runner failed\"}}\n\n";
            let last = futures_util::stream::iter([Ok(Bytes::from_static(error))]);
            Body::from_stream(first.chain(last))
        }
        AiFault::EndlessStream if sse => {
            let first = body.into_data_stream().take(1);
            let comments = futures_util::stream::unfold((), |()| async {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                Some((Ok(Bytes::from_static(b": keepalive\n\n")), ()))
            });
            Body::from_stream(first.chain(comments))
        }
        AiFault::AsEventStream if !sse => {
            parts.headers.remove(header::CONTENT_LENGTH);
            parts
                .headers
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
            let event = |bytes: &'static [u8]| {
                futures_util::stream::iter([Ok::<_, axum::Error>(Bytes::from_static(bytes))])
            };
            let json = body.into_data_stream();
            Body::from_stream(event(b"data: ").chain(json).chain(event(b"\n\ndata: [DONE]\n\n")))
        }
        AiFault::Null if !sse => {
            parts.headers.remove(header::CONTENT_LENGTH);
            Body::from(Bytes::from_static(b"null\n"))
        }
        AiFault::ErrorEvent | AiFault::EndlessStream | AiFault::AsEventStream | AiFault::Null => {
            body
        }
    };
    Response::from_parts(parts, body)
}

/// A well-formed answer of about `size` bytes, most of it one string: an image answer, an
/// LLM answer, or one huge LLM event followed by the final one.
fn huge_body(size: usize, sse: bool, llm: bool) -> Body {
    let (head, tail): (&'static [u8], &'static [u8]) = match (sse, llm) {
        (true, _) => (
            b"data: {\"choices\": [{\"index\": 0, \"finish_reason\": \"\", \"delta\": {\"content\": \"",
            b"\"}}]}\n\ndata: {\"choices\": [{\"index\": 0, \"finish_reason\": \"stop\", \"delta\": {\"content\": \"\"}}]}\n\n",
        ),
        (false, true) => (
            b"{\"choices\": [{\"index\": 0, \"finish_reason\": \"stop\", \"message\": {\"role\": \"assistant\", \"content\": \"",
            b"\"}}]}",
        ),
        (false, false) => (b"{\"images\": [{\"url\": \"data:image/png;base64,", b"\"}]}"),
    };
    let fill = size.saturating_sub(head.len() + tail.len());
    let chunk = Bytes::from(vec![b'A'; HUGE_CHUNK]);
    let full = fill / HUGE_CHUNK;
    let rest = chunk.slice(..fill % HUGE_CHUNK);
    let middle =
        futures_util::stream::repeat(chunk).take(full).chain(futures_util::stream::iter([rest]));
    let all = futures_util::stream::iter([Bytes::from_static(head)])
        .chain(middle)
        .chain(futures_util::stream::iter([Bytes::from_static(tail)]))
        .map(Ok::<_, std::io::Error>);
    Body::from_stream(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn text(body: Body) -> Vec<u8> {
        axum::body::to_bytes(body, usize::MAX).await.unwrap().to_vec()
    }

    #[tokio::test]
    async fn huge_answers_are_well_formed_and_of_the_asked_size() {
        let size = 3 * HUGE_CHUNK + 17;
        let json = text(huge_body(size, false, true)).await;
        assert_eq!(json.len(), size);
        let value: Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(value["choices"][0]["finish_reason"], "stop");
        let sse = String::from_utf8(text(huge_body(size, true, true)).await).unwrap();
        let events: Vec<&str> = sse.split("\n\n").filter(|e| !e.is_empty()).collect();
        assert_eq!(events.len(), 2, "one huge event, then the final one");
        for e in events {
            serde_json::from_str::<Value>(e.strip_prefix("data: ").unwrap()).unwrap();
        }
    }

    #[tokio::test]
    async fn the_ledger_key_is_the_prompt_or_the_last_message_and_the_body_is_kept() {
        let request = |body: Value| {
            Request::builder()
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string()))
                .unwrap()
        };
        let body = serde_json::json!({"prompt": "soak-1-2 a lighthouse"});
        let (req, key, tickets) = ledger_key(request(body.clone())).await;
        assert_eq!((key.as_deref(), tickets), (Some("soak-1-2 a lighthouse"), 0));
        let kept: Value = serde_json::from_slice(&text(req.into_body()).await).unwrap();
        assert_eq!(kept, body);
        let llm = serde_json::json!({"messages": [{"role": "system", "content": "x"},
                                                  {"role": "user", "content": "soak-3-4 hi"}]});
        assert_eq!(ledger_key(request(llm)).await.1.as_deref(), Some("soak-3-4 hi"));
    }

    #[test]
    fn deliveries_since_a_kill_are_taken_back() {
        let state = FaultState::default();
        let before = Instant::now();
        let kill = before + Duration::from_millis(1);
        state.delivered_at("a", before);
        state.delivered_at("b", kill);
        state.void_since(kill);
        let ledger = state.ledger();
        assert_eq!(ledger["a"], LedgerEntry { delivered: 1, ..LedgerEntry::default() });
        assert_eq!(ledger["b"], LedgerEntry { voided: 1, ..LedgerEntry::default() });
    }
}
