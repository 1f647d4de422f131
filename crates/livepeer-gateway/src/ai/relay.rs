//! Relays an orchestrator's server-sent events to the client, keeping apart who stalls.
//!
//! A task reads the orchestrator's stream and hands whole events to the client's body through
//! a small channel. The orchestrator's idle limit runs only while that task waits for the
//! orchestrator; waiting for a client that does not read is bounded separately, and ends the
//! stream without penalising the orchestrator. Both waits stop when shutdown's drain time is
//! over, and the client then gets a final error event. Whole events are relayed, so a final
//! error event never lands in the middle of one.
//!
//! What an orchestrator can make a stream hold is bounded: an event is at most
//! [`MAX_EVENT`] bytes (longer is the orchestrator's failure, as go-livepeer's gateway fails a
//! line its scanner cannot hold), at most [`BUFFERED_EVENTS`] chunks wait for the client, and
//! the whole stream lasts at most [`Limits::max_duration`].

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::orchestrator::http::OrchBody;
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt as _};
use http_body_util::BodyDataStream;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::orchestrator::Lease;
use crate::orchestrator::verdict::Failure;

/// The chunks of a server-sent event stream.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

/// Events buffered between the orchestrator and the client: the rest of the back-pressure is
/// the sockets', and a client that stops reading fills them quickly.
const BUFFERED_EVENTS: usize = 16;

/// Longest event an orchestrator may send, in bytes. go-livepeer's gateway reads an LLM stream
/// with Go's `bufio.Scanner`, which fails on a line longer than 64 KiB; an event is one or a few
/// such lines. A longer event ends the stream as the orchestrator's failure: passed on in
/// pieces, one endless event kept a core busy and its bytes flowing for as long as the
/// orchestrator liked.
pub(crate) const MAX_EVENT: usize = 64 << 10;

/// The bounds of one relayed stream.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    /// Longest wait for the orchestrator's next bytes.
    pub idle: Duration,
    /// Longest wait for the client to take more.
    pub client: Duration,
    /// Fires when shutdown's drain time is over.
    pub drained: CancellationToken,
    /// Longest a stream may last from its first byte: an orchestrator that keeps one open
    /// (a byte now and then, comments, tokens without end) holds a lease and a connection.
    pub max_duration: Duration,
}

/// Passes an orchestrator's server-sent events on as they arrive. The lease lives until the
/// stream ends: a clean end counts as success, a broken or idle upstream as the orchestrator's
/// failure (the client then gets an error event; no failover, bytes have already gone out). A
/// client that goes away or stops reading releases the orchestrator unpenalised.
pub(crate) fn relay_events(
    upstream: http::Response<OrchBody>,
    lease: Lease,
    limits: Limits,
) -> EventStream {
    let (tx, rx) = mpsc::channel(BUFFERED_EVENTS);
    let stalled = Arc::new(AtomicBool::new(false));
    let open_event = AtomicBool::new(false);
    let client =
        Client { tx, limits, stalled: stalled.clone(), open_event, waited_ms: AtomicU64::new(0) };
    tokio::spawn(pump(BodyDataStream::new(upstream.into_body()), lease, client));
    let body = futures_util::stream::unfold(Some((rx, stalled)), |state| async move {
        let (mut rx, stalled) = state?;
        match rx.recv().await {
            Some(chunk) => Some((Ok(chunk), Some((rx, stalled)))),
            // The client stalled and the stream was given up: what reached it is not a
            // complete answer, so its connection is broken off rather than ended cleanly.
            None if stalled.load(Ordering::Acquire) => {
                let e = std::io::Error::new(std::io::ErrorKind::TimedOut, "client stopped reading");
                Some((Err(e), None))
            }
            None => None,
        }
    });
    Box::pin(body)
}

/// How handing an event to the client went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delivery {
    Delivered,
    /// The client went away (its body was dropped).
    Gone,
    /// The client took nothing for the client limit, or until the drain time ran out.
    Stalled,
}

/// How the relay of the orchestrator's events ended.
enum End {
    /// The orchestrator finished: what is left of its last event, and how its last event
    /// ended the stream ([`last_event`]).
    Finished(Option<Bytes>, Last),
    /// The orchestrator's stream broke, for this reason.
    Broke(String),
    /// The orchestrator sent nothing for the idle limit.
    Idle,
    /// The orchestrator sent an event longer than [`MAX_EVENT`].
    Oversized,
    /// The stream reached [`Limits::max_duration`].
    Overtime,
    /// Shutdown's drain time ran out.
    Drained,
    /// The client went away or stopped reading.
    Client,
}

/// The client's side of a stream: the channel to its body, and the limits.
struct Client {
    tx: mpsc::Sender<Bytes>,
    limits: Limits,
    /// Set when the stream is given up on a client that stopped reading.
    stalled: Arc<AtomicBool>,
    /// Set while what the client has ends inside an event: the orchestrator's last bytes,
    /// without their blank line, passed on when its stream ended.
    open_event: AtomicBool,
    /// Milliseconds spent waiting for the client to take events: a stream that runs out of
    /// time mostly for that is not the orchestrator's fault.
    waited_ms: AtomicU64,
}

/// Relays `upstream` to the client until either side ends it, then settles the lease: only
/// an orchestrator that broke or went idle is penalised.
async fn pump(mut upstream: BodyDataStream<OrchBody>, lease: Lease, client: Client) {
    let end = client.relay(&mut upstream).await;
    // The orchestrator's stream is closed before the client's last event is waited on.
    drop(upstream);
    let last = match end {
        End::Finished(rest, Last::Done) => {
            lease.succeeded();
            // A last event without its blank line is passed on as it came.
            rest
        }
        // The orchestrator's own error event already ends the stream for the client; a
        // stream that fails is not a success to choose it again for, nor a latency to rank it by.
        End::Finished(rest, Last::Error) => {
            Failure::Server.verdict().end_lease(lease, "stream ended with an error event");
            rest
        }
        // Closed cleanly but early (or after events that are not the answer's): to the
        // client, without an error event, it would look like a complete answer.
        End::Finished(rest, Last::Open) => {
            let why = "stream ended without its final event".to_owned();
            Failure::ClosedMidStream.verdict().end_lease(lease, why);
            if let Some(rest) = rest {
                client.deliver(rest).await;
            }
            Some(client.after_open_event(error_event("orchestrator stream ended early")))
        }
        End::Broke(why) => {
            Failure::ClosedMidStream.verdict().end_lease(lease, why);
            Some(client.after_open_event(error_event("orchestrator stream ended early")))
        }
        End::Idle => {
            let why = format!("stream idle for {:?}", client.limits.idle);
            Failure::Timeout.verdict().end_lease(lease, why);
            Some(client.after_open_event(error_event("orchestrator stream stalled")))
        }
        End::Oversized => {
            let why = format!("an event over {MAX_EVENT} bytes");
            Failure::Server.verdict().end_lease(lease, &why);
            Some(error_event(&format!("orchestrator sent {why}")))
        }
        End::Overtime => {
            let limit = client.limits.max_duration;
            let waited = Duration::from_millis(client.waited_ms.load(Ordering::Relaxed));
            // Mostly spent waiting for a slow reader: the client's doing, not the orchestrator's.
            if waited * 2 >= limit {
                drop(lease);
            } else {
                let why = format!("stream longer than {limit:?}");
                Failure::Timeout.verdict().end_lease(lease, why);
            }
            let message = format!("stream longer than the gateway's limit of {limit:?}");
            Some(client.after_open_event(error_event(&message)))
        }
        // Neither is the orchestrator's doing: it is released unpenalised.
        End::Drained => {
            drop(lease);
            Some(client.after_open_event(error_event("gateway shutting down")))
        }
        End::Client => {
            drop(lease);
            None
        }
    };
    if let Some(last) = last {
        client.deliver(last).await;
    }
}

impl Client {
    /// Passes the orchestrator's events on until one side ends the stream.
    async fn relay(&self, upstream: &mut BodyDataStream<OrchBody>) -> End {
        let mut events = Events::default();
        let mut last = Bytes::new();
        let overtime = tokio::time::sleep(self.limits.max_duration);
        tokio::pin!(overtime);
        loop {
            let next = tokio::select! {
                biased;
                _ = self.limits.drained.cancelled() => return End::Drained,
                // The client went away: stop waiting for the orchestrator on its behalf.
                _ = self.tx.closed() => return End::Client,
                _ = &mut overtime => return End::Overtime,
                next = tokio::time::timeout(self.limits.idle, upstream.next()) => next,
            };
            let chunk = match next {
                Ok(Some(Ok(chunk))) => chunk,
                Ok(None) => {
                    let rest = events.rest();
                    let ending = last_event(rest.as_deref().unwrap_or(&last));
                    return End::Finished(rest, ending);
                }
                Ok(Some(Err(e))) => return End::Broke(format!("stream broke: {e}")),
                Err(_) => return End::Idle,
            };
            let whole = match events.push(chunk) {
                Ok(Some(whole)) => whole,
                Ok(None) => continue,
                Err(Oversized) => return End::Oversized,
            };
            last = whole.clone();
            if self.deliver(whole).await != Delivery::Delivered {
                return End::Client;
            }
        }
    }

    /// `event`, after a blank line when the client's bytes end inside an event, so that it
    /// is never read as the end of that event's data.
    fn after_open_event(&self, event: Bytes) -> Bytes {
        if !self.open_event.load(Ordering::Relaxed) {
            return event;
        }
        let mut out = BytesMut::with_capacity(event.len() + 2);
        out.extend_from_slice(b"\n\n");
        out.extend_from_slice(&event);
        out.freeze()
    }

    /// Hands `chunk` to the client's body, waiting at most the client limit for room, and no
    /// longer than the drain time (once it has run out, the client limit alone bounds the
    /// wait for the final event).
    async fn deliver(&self, chunk: Bytes) -> Delivery {
        let drained = &self.limits.drained;
        let open = !ends_event(&chunk);
        // Only a send that must wait for room reads the clock.
        let waited_from = (self.tx.capacity() == 0).then(tokio::time::Instant::now);
        let delivery = tokio::select! {
            sent = tokio::time::timeout(self.limits.client, self.tx.send(chunk)) => match sent {
                Ok(Ok(())) => Delivery::Delivered,
                Ok(Err(_)) => Delivery::Gone,
                Err(_) => Delivery::Stalled,
            },
            _ = drained.cancelled(), if !drained.is_cancelled() => Delivery::Stalled,
        };
        if let Some(from) = waited_from {
            let ms = u64::try_from(from.elapsed().as_millis()).unwrap_or(u64::MAX);
            self.waited_ms.fetch_add(ms, Ordering::Relaxed);
        }
        if delivery == Delivery::Delivered {
            self.open_event.store(open, Ordering::Relaxed);
        }
        if delivery == Delivery::Stalled {
            self.stalled.store(true, Ordering::Release);
            tracing::info!(
                client_timeout = ?self.limits.client,
                "ai stream given up: the client stopped reading"
            );
        }
        delivery
    }
}

/// Cuts a byte stream into whole events: the bytes up to the last blank line are ready, the
/// rest waits for more.
#[derive(Debug, Default)]
struct Events {
    partial: BytesMut,
}

/// An event longer than [`MAX_EVENT`] arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Oversized;

impl Events {
    /// Takes `chunk`; returns the whole events now complete, if any, or `Oversized` once an
    /// event (complete or not) is longer than [`MAX_EVENT`].
    fn push(&mut self, chunk: Bytes) -> Result<Option<Bytes>, Oversized> {
        if self.partial.is_empty() {
            // Only a chunk longer than the limit can hold an event longer than it.
            if chunk.len() > MAX_EVENT {
                check_sizes(&chunk)?;
            }
            // The usual case: the orchestrator writes whole events, passed on without a copy.
            return Ok(match event_end(&chunk, 0) {
                Some(end) if end == chunk.len() => Some(chunk),
                Some(end) => {
                    self.partial.extend_from_slice(&chunk[end..]);
                    Some(chunk.slice(..end))
                }
                None => {
                    self.partial.extend_from_slice(&chunk);
                    None
                }
            });
        }
        // A blank line may straddle the chunks: look from just before the new bytes.
        let from = self.partial.len().saturating_sub(2);
        self.partial.extend_from_slice(&chunk);
        if self.partial.len() > MAX_EVENT {
            check_sizes(&self.partial)?;
        }
        Ok(event_end(&self.partial, from).map(|end| self.partial.split_to(end).freeze()))
    }

    /// What is left when the stream ends.
    fn rest(&mut self) -> Option<Bytes> {
        (!self.partial.is_empty()).then(|| self.partial.split().freeze())
    }
}

/// Checks that every event in `buf`, the unfinished last one included, is at most
/// [`MAX_EVENT`] bytes long.
fn check_sizes(buf: &[u8]) -> Result<(), Oversized> {
    let mut start = 0;
    for end in event_ends(buf) {
        if end - start > MAX_EVENT {
            return Err(Oversized);
        }
        start = end;
    }
    if buf.len() - start > MAX_EVENT { Err(Oversized) } else { Ok(()) }
}

/// Where each event in `buf` ends, first to last: just after its blank line (`\n\n`, or
/// `\r\n\r\n`).
pub(crate) fn event_ends(buf: &[u8]) -> impl Iterator<Item = usize> + '_ {
    let newlines = buf.iter().enumerate().filter(|(_, b)| **b == b'\n');
    newlines.filter_map(|(i, _)| match buf.get(i + 1..) {
        Some([b'\n', ..]) => Some(i + 2),
        Some([b'\r', b'\n', ..]) => Some(i + 3),
        _ => None,
    })
}

/// Where the last complete event in `buf` ends (just after its blank line: `\n\n`, or
/// `\r\n\r\n`), looking at blank lines that end after `from`.
fn event_end(buf: &[u8], from: usize) -> Option<usize> {
    let tail = buf.get(from..)?;
    tail.windows(2)
        .rposition(|w| w == b"\n\n")
        .map(|i| from + i + 2)
        .or_else(|| tail.windows(3).rposition(|w| w == b"\n\r\n").map(|i| from + i + 3))
}

/// Whether `bytes` end at the end of an event (a blank line), or are empty.
fn ends_event(bytes: &[u8]) -> bool {
    bytes.is_empty() || bytes.ends_with(b"\n\n") || bytes.ends_with(b"\n\r\n")
}

/// How the last event of a stream ended it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Last {
    /// The answer's end: a chunk with a non-empty `finish_reason`, or `data: [DONE]`.
    Done,
    /// An error: an `error` event, or data with an `error` field.
    Error,
    /// Neither: the stream stopped before its end.
    Open,
}

/// How `events` (the last bytes the orchestrator sent) end the stream (PROTOCOL.md §7.3): a
/// chunk with a non-empty `finish_reason`, or an error (an `error` event, or data with an
/// `error` field); a `data: [DONE]` line is taken as an end too. Only the last event is
/// parsed, once per stream.
fn last_event(events: &[u8]) -> Last {
    let trimmed = events.trim_ascii_end();
    let lf = trimmed.windows(2).rposition(|w| w == b"\n\n").map(|i| i + 2);
    let crlf = trimmed.windows(3).rposition(|w| w == b"\n\r\n").map(|i| i + 3);
    let start = lf.max(crlf).unwrap_or(0);
    let event = String::from_utf8_lossy(&trimmed[start..]);
    let mut data = Vec::new();
    for line in event.lines() {
        if line.trim() == "event: error" {
            return Last::Error;
        }
        if let Some(d) = line.strip_prefix("data:") {
            data.push(d.trim());
        }
    }
    let data = data.join("\n");
    if data == "[DONE]" {
        return Last::Done;
    }
    let Ok(value) = serde_json::from_str::<serde_json::Value>(&data) else { return Last::Open };
    let finish = value.pointer("/choices/0/finish_reason").and_then(serde_json::Value::as_str);
    // `"error": null` is no error: a chunk may carry the field empty.
    if value.get("error").is_some_and(|e| !e.is_null()) {
        Last::Error
    } else if finish.is_some_and(|r| !r.is_empty()) {
        Last::Done
    } else {
        Last::Open
    }
}

/// An SSE error event carrying `message`.
pub(crate) fn error_event(message: &str) -> Bytes {
    let body = json!({ "error": { "message": message } });
    Bytes::from(format!("event: error\ndata: {body}\n\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pushed(chunks: &[&str]) -> Vec<String> {
        let mut events = Events::default();
        let mut out: Vec<String> = chunks
            .iter()
            .filter_map(|c| events.push(Bytes::copy_from_slice(c.as_bytes())).unwrap())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .collect();
        out.extend(events.rest().map(|b| String::from_utf8_lossy(&b).into_owned()));
        out
    }

    #[test]
    fn whole_events_pass_as_they_are_and_split_ones_are_joined() {
        assert_eq!(pushed(&["data: 1\n\n", "data: 2\n\n"]), ["data: 1\n\n", "data: 2\n\n"]);
        assert_eq!(pushed(&["data: 1\n\nda", "ta: 2\n", "\n"]), ["data: 1\n\n", "data: 2\n\n"]);
        assert_eq!(
            pushed(&["data: 1\r\n\r\nda", "ta: 2\r\n\r", "\n"]),
            ["data: 1\r\n\r\n", "data: 2\r\n\r\n"]
        );
        // A last event without its blank line still reaches the client.
        assert_eq!(pushed(&["data: 1\n\ndata: 2"]), ["data: 1\n\n", "data: 2"]);
    }

    /// Pushes `chunks` until one is refused: the events passed on, and whether one was.
    fn until_refused(chunks: &[&[u8]]) -> (usize, bool) {
        let mut events = Events::default();
        let mut passed = 0;
        for c in chunks {
            match events.push(Bytes::copy_from_slice(c)) {
                Ok(out) => passed += usize::from(out.is_some()),
                Err(Oversized) => return (passed, true),
            }
        }
        (passed, false)
    }

    #[test]
    fn an_event_longer_than_the_limit_is_refused_however_it_arrives() {
        let at_limit = format!("data: {}\n\n", "x".repeat(MAX_EVENT - 8));
        let over = format!("data: {}\n\n", "x".repeat(MAX_EVENT - 7));
        assert_eq!(at_limit.len(), MAX_EVENT);
        // Events of the limit pass, alone, many in one chunk, or split across chunks.
        let many = at_limit.repeat(3);
        let (head, tail) = at_limit.split_at(1000);
        for chunks in [
            vec![at_limit.as_bytes()],
            vec![many.as_bytes()],
            vec![head.as_bytes(), tail.as_bytes()],
        ] {
            assert!(!until_refused(&chunks).1);
        }
        // One byte more is refused: whole, in one chunk with others, split, or unfinished.
        let mixed = format!("data: 1\n\n{over}data: 2\n\n");
        let (head, tail) = over.split_at(1000);
        let endless = "x".repeat(MAX_EVENT + 1);
        let crlf = over.replace("\n", "\r\n");
        for chunks in [
            vec![over.as_bytes()],
            vec![mixed.as_bytes()],
            vec![head.as_bytes(), tail.as_bytes()],
            vec![b"x".as_slice(), endless.as_bytes()],
            vec![crlf.as_bytes()],
        ] {
            assert!(
                until_refused(&chunks).1,
                "{:?}",
                chunks.iter().map(|c| c.len()).collect::<Vec<_>>()
            );
        }
        // Bytes without an event's end are refused once past the limit, not held.
        let piece = vec![b'x'; 4096];
        let pieces: Vec<&[u8]> = std::iter::repeat_n(piece.as_slice(), 17).collect();
        assert_eq!(until_refused(&pieces), (0, true));
    }

    #[test]
    fn a_stream_is_final_only_after_its_finishing_chunk_or_an_error() {
        let is_final = |b: &[u8]| last_event(b) != Last::Open;
        let token =
            "data: {\"choices\":[{\"delta\":{\"content\":\"a\"},\"finish_reason\":\"\"}]}\n\n";
        let last = "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n";
        assert!(!is_final(token.as_bytes()));
        assert!(is_final(format!("{token}{last}").as_bytes()));
        assert!(is_final(last.trim_end().as_bytes()), "without its blank line");
        assert!(is_final(b"data: 1\r\n\r\ndata: [DONE]\r\n\r\n"));
        assert!(is_final(&error_event("x")));
        assert!(is_final(b"data: {\"error\": \"runner failed\"}\n\n"));
        assert!(!is_final(b"data: not json\n\n"));
        assert!(!is_final(b""));
        assert_eq!(last_event(&error_event("x")), Last::Error);
        assert_eq!(last_event(b"data: {\"error\": \"runner failed\"}\n\n"), Last::Error);
        assert_eq!(last_event(last.as_bytes()), Last::Done);
        assert_eq!(last_event(b"data: [DONE]\n\n"), Last::Done);
        let null_error = "data: {\"error\": null, \"choices\":[{\"finish_reason\":\"stop\"}]}\n\n";
        assert_eq!(last_event(null_error.as_bytes()), Last::Done);
    }

    #[test]
    fn an_error_event_after_an_unfinished_event_starts_after_a_blank_line() {
        assert!(ends_event(b"data: 1\n\n") && ends_event(b"data: 1\r\n\r\n") && ends_event(b""));
        assert!(!ends_event(b"data: xxxx"));
        let (tx, _rx) = mpsc::channel(1);
        let limits = Limits {
            idle: Duration::from_secs(1),
            client: Duration::from_secs(1),
            drained: CancellationToken::new(),
            max_duration: Duration::from_secs(1),
        };
        let client = Client {
            tx,
            limits,
            stalled: Arc::default(),
            open_event: AtomicBool::new(true),
            waited_ms: AtomicU64::new(0),
        };
        let event = client.after_open_event(error_event("x"));
        assert!(event.starts_with(b"\n\nevent: error\n"), "{event:?}");
        client.open_event.store(false, Ordering::Relaxed);
        assert!(client.after_open_event(error_event("x")).starts_with(b"event: error\n"));
    }

    #[test]
    fn error_events_are_complete_sse_events() {
        let event = error_event("gateway shutting down");
        assert_eq!(
            &event[..],
            b"event: error\ndata: {\"error\":{\"message\":\"gateway shutting down\"}}\n\n"
        );
    }
}
