//! Async image-to-video, as go-livepeer's gateway serves it (server/ai_mediaserver.go
//! `ImageToVideo`, `ImageToVideoResult`):
//!
//! - `POST /image-to-video` with `Prefer: respond-async` is read, validated and checked as the
//!   synchronous request is (its 400, 413 and 422 come before anything is run), admitted into
//!   [`crate::ai::async_jobs::AsyncJobs`], and answered 202
//!   `{"request_id": "<32 hex digits>"}` at once. The job then runs in a tracked task through
//!   the same job loop as every request ([`crate::ai::job::run`]: selection, payment,
//!   failover, the customer's tab);
//! - `/image-to-video/result` (any method, as go-livepeer's mux takes it) reads
//!   `{"request_id": "…"}` from a JSON body and answers 202 `{"status": "processing"}` while
//!   the job runs, 200 `{"result": …, "status": "complete"}` once it has ended, and 400
//!   `invalid request ID` for an id never given or expired. `result` is the body the
//!   synchronous request would have been answered with: `{"images": [{"url", "seed", "nsfw"}]}`,
//!   or for a failed job the gateway's error body, whose `error.message` is where go-livepeer
//!   puts its failure's (`{"error": {"message"}}`).
//!
//! A job for a model no orchestrator offers is refused at once (503 `no_orchestrator`, as the
//! synchronous request is), before it takes a place in the registry.
//!
//! A customer's usage row is written when the job ends, with the job's status (`JobEnd`), so
//! that it is charged as the synchronous request would be, and only when it was served. At
//! shutdown running jobs end at once, failed and uncharged: results live in memory and the
//! listeners are closing, so a result finished then could never be fetched.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll as TaskPoll};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::body::{read_body, read_input};
use super::keys::JobEnd;
use crate::ai::AiState;
use crate::ai::async_jobs::{Answer, Poll, Ticket};
use crate::ai::call::ResultUrls;
use crate::ai::job::{Output, Reply};
use crate::ai::validate::{Pipeline, ValidRequest};
use crate::error::{Error, Kind};
use crate::keys::{Customer, Tab};
use crate::orchestrator::{JobKey, SelectError};

/// RFC 7240's request header.
const PREFER: HeaderName = HeaderName::from_static("prefer");
/// RFC 7240's answer header, saying the preference was honoured.
const PREFERENCE_APPLIED: HeaderName = HeaderName::from_static("preference-applied");
/// Largest body of a result request: `{"request_id": "<32 hex digits>"}` is 50 bytes.
const MAX_RESULT_BODY: usize = 4096;

/// Whether the request asks to be answered at once and polled for its result: a `Prefer`
/// header holding the preference `respond-async`. go-livepeer compares the whole header with
/// `respond-async`; RFC 7240's other spellings (`Prefer: respond-async, wait=10`, any case)
/// are taken too.
pub(super) fn prefers_async(headers: &HeaderMap) -> bool {
    let values = headers.get_all(PREFER).into_iter().filter_map(|v| v.to_str().ok());
    values.flat_map(|v| v.split(',')).any(|preference| {
        let token = preference.split([';', '=']).next().unwrap_or_default();
        token.trim().eq_ignore_ascii_case("respond-async")
    })
}

/// `POST /image-to-video` with `Prefer: respond-async`: 202 with the job's id, or the error
/// the synchronous request would have been answered with before running (or 503
/// `async_jobs_full`).
pub(super) async fn submit(ai: Arc<AiState>, req: Request) -> Response {
    // Checked again when the job is admitted; a full registry takes no upload first.
    if let Err(e) = ai.jobs.has_room() {
        return e.into_response();
    }
    let urls = ai.config.result_urls();
    let customer = req.extensions().get::<Customer>().cloned();
    let tab = req.extensions().get::<Arc<Tab>>().cloned();
    let (limit, timeout) = (ai.config.max_body_bytes, ai.config.request_timeout);
    let input = match read_input(req, limit, timeout).await {
        Ok(input) => input,
        Err(e) => return e.into_response(),
    };
    let mut model = None;
    let check = async |valid: &ValidRequest| {
        model = customer.is_some().then(|| super::keys::ledger_model(&ai, valid)).flatten();
        super::keys::allow_model(customer.as_ref(), valid, "model_id")
    };
    let valid = crate::ai::validate_checked(&ai, Pipeline::ImageToVideo, input, check).await;
    let resp = match valid {
        Ok(valid) => accept(&ai, valid, urls, tab).await,
        Err(e) => e.into_response(),
    };
    super::keys::with_model(resp, model)
}

/// Admits the validated job and starts it: 202, or why it cannot be taken.
async fn accept(
    ai: &Arc<AiState>,
    valid: ValidRequest,
    urls: ResultUrls,
    tab: Option<Arc<Tab>>,
) -> Response {
    // A model nobody offers fails at once, as the synchronous request does: admitted, it
    // would hold a place in the registry for nothing.
    let key = JobKey { capability: valid.pipeline.capability(), model: valid.model.clone() };
    if !ai.pool.snapshot().index.contains_key(&key) {
        return Error::select(&SelectError::NotOffered(key)).into_response();
    }
    // A key whose budget cannot pay for the job is refused now (402), not in a result the
    // client polls for. The job reserves the rest at its orchestrator's price, as every job
    // does; when it is not admitted below, the key check's row releases this.
    if let Some(tab) = &tab
        && let Err(e) = tab.reserve_before_fee(&valid.model, valid.units).await
    {
        return e.into_response();
    }
    let ticket = match ai.jobs.admit() {
        Ok(ticket) => ticket,
        Err(e) => return e.into_response(),
    };
    let (id, request_id) = (ticket.id(), crate::ai::request_id());
    let end = tab.as_deref().map(JobEnd::new);
    // The log names the job by its request id; of the id the client polls with, whose
    // holder can read the result, only a prefix to find the job by.
    let async_id = id.get(..8).unwrap_or_default();
    tracing::info!(request_id = %request_id, async_id, "ai async job accepted");
    let job = Job { valid, request_id: request_id.clone(), urls, tab, ticket, end: end.clone() };
    let task = ai.clone();
    ai.tasks.spawn("ai-async-job", move |shutdown| run(task, job, shutdown));
    accepted(&id, &request_id, end)
}

/// An admitted job, for its task.
struct Job {
    valid: ValidRequest,
    request_id: String,
    urls: ResultUrls,
    tab: Option<Arc<Tab>>,
    ticket: Ticket,
    end: Option<JobEnd>,
}

/// Runs the job to its end and records the outcome: the registry's entry, then the
/// customer's row with the status the client is told.
async fn run(ai: Arc<AiState>, job: Job, shutdown: CancellationToken) {
    let Job { valid, request_id, urls, tab, ticket, end } = job;
    // Shutdown's start ends the job: its result, kept in memory, could not be fetched once
    // the listeners have closed, and a job charged then would be charged for nothing. Its
    // row is written now, well before the ledger's writer stops at the drain's end.
    let id = request_id.clone();
    let running = Box::pin(crate::ai::job::run(&ai, valid, request_id, urls.clone(), tab));
    let reply = tokio::select! {
        reply = running => Some(reply),
        () = shutdown.cancelled() => None,
    };
    let recorded = match reply {
        // One that ended as shutdown began is as undeliverable.
        Some(reply) if !shutdown.is_cancelled() => record(ticket, reply, &urls),
        _ => {
            tracing::info!(request_id = %id, "ai async job ended by shutdown: failed, uncharged");
            ticket.finish(Err(shut_down()))
        }
    };
    let status = match recorded {
        Ok(()) => StatusCode::OK,
        Err(e) => super::error::status(e.kind()),
    };
    if let Some(end) = end {
        end.ended(status.as_u16());
    }
}

/// Records the job's reply in its ticket: `Err` when the client is told of an error.
fn record(ticket: Ticket, reply: Reply, urls: &ResultUrls) -> Result<(), Error> {
    match reply.outcome {
        Ok(Output::Json(body)) => ticket.finish(Ok(Answer::new(body, urls))),
        Ok(Output::Events(_)) => {
            let message = "an event stream answered a job that asked for none";
            ticket.finish(Err(Error::new(Kind::Internal, message)))
        }
        // Nothing was tried, nothing spent: kept only briefly (see `AsyncJobs`).
        Err(e) if !reply.tried => Err(ticket.refused(e)),
        Err(e) => ticket.finish(Err(e)),
    }
}

/// The error of a job that shutdown ended.
fn shut_down() -> Error {
    Error::new(Kind::Internal, "the gateway shut down before the job finished")
}

/// The 202: the id to poll with, the job's request id (`X-Request-Id`, what the logs name),
/// and what the usage ledger needs to write the job's row when it ends.
fn accepted(id: &str, request_id: &str, end: Option<JobEnd>) -> Response {
    let mut resp = (StatusCode::ACCEPTED, Json(json!({ "request_id": id }))).into_response();
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert(super::REQUEST_ID, v);
    }
    h.insert(PREFERENCE_APPLIED, HeaderValue::from_static("respond-async"));
    if let Some(end) = end {
        resp.extensions_mut().insert(end);
    }
    resp
}

/// `/image-to-video/result`: what became of the job named by the body's `request_id`.
pub(super) async fn result(State(ai): State<Arc<AiState>>, req: Request) -> Response {
    let body = match read_body(req, MAX_RESULT_BODY, ai.config.request_timeout).await {
        Ok(body) => body,
        Err(e) => return e.into_response(),
    };
    let id = match requested_id(&body) {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    match ai.jobs.poll(&id) {
        // go-livepeer's answer to an id its store does not hold, word for word.
        Poll::Unknown => Error::new(Kind::InvalidRequest, "invalid request ID")
            .field("request_id")
            .into_response(),
        Poll::Processing => {
            let processing = Bytes::from_static(br#"{"status":"processing"}"#);
            status_answer(StatusCode::ACCEPTED, Body::from(processing))
        }
        Poll::Complete(Ok(answer)) => complete(answer),
        Poll::Complete(Err(e)) => {
            complete(serde_json::to_vec(&super::error::body(&e)).unwrap_or_default().into())
        }
    }
}

/// The id of a result request's JSON body: the first JSON value, whatever follows it, as
/// go-livepeer's `json.Decoder` reads it; a missing id is an unknown one.
fn requested_id(body: &[u8]) -> Result<String, Error> {
    #[derive(serde::Deserialize)]
    struct ResultRequest {
        #[serde(default)]
        request_id: Option<String>,
    }
    let bad = |message: String| Error::new(Kind::InvalidRequest, message).field("body");
    let first = serde_json::Deserializer::from_slice(body).into_iter::<ResultRequest>().next();
    match first {
        Some(Ok(req)) => Ok(req.request_id.unwrap_or_default()),
        Some(Err(e)) => Err(bad(format!("invalid JSON body: {e}"))),
        None => Err(bad(r#"empty body: expected {"request_id": "…"}"#.to_owned())),
    }
}

/// 200 `{"result": <answer>, "status": "complete"}`, in go-livepeer's field order; the
/// answer's bytes (JSON the gateway wrote) go out as they are kept, neither parsed again nor
/// copied: an answer holding its media as `data:` URLs can be tens of MB, and each of many
/// slow pollers would otherwise hold a copy of its own until sent.
fn complete(answer: Bytes) -> Response {
    let end = answer.trim_ascii_end().len();
    let start = end - answer[..end].trim_ascii_start().len();
    let pieces = [
        Bytes::from_static(br#"{"result":"#),
        answer.slice(start..end),
        Bytes::from_static(br#","status":"complete"}"#),
    ];
    status_answer(StatusCode::OK, Body::new(Pieces(pieces.into())))
}

/// A body sent as the pieces it is made of, each as it is (reference-counted, not copied),
/// its length known (`Content-Length`).
struct Pieces(VecDeque<Bytes>);

impl HttpBody for Pieces {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> TaskPoll<Option<Result<Frame<Bytes>, Infallible>>> {
        TaskPoll::Ready(self.0.pop_front().map(|piece| Ok(Frame::data(piece))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.0.iter().map(|piece| piece.len() as u64).sum())
    }
}

/// A JSON answer that no cache keeps: the same request is answered differently later.
fn status_answer(status: StatusCode, body: Body) -> Response {
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static("application/json")),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
    ];
    (status, headers, body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn respond_async_is_found_in_any_spelling_of_prefer() {
        let prefers = |values: &[&str]| {
            let mut headers = HeaderMap::new();
            for v in values {
                headers.append(PREFER, HeaderValue::from_str(v).unwrap());
            }
            prefers_async(&headers)
        };
        assert!(prefers(&["respond-async"]));
        assert!(prefers(&["Respond-Async"]));
        assert!(prefers(&["wait=10, respond-async"]));
        assert!(prefers(&["return=minimal", "respond-async; x=1"]));
        assert!(!prefers(&[]));
        assert!(!prefers(&["return=respond-async"]));
        assert!(!prefers(&["respond-asynchronously"]));
    }

    #[test]
    fn the_result_request_is_a_json_body_with_an_id() {
        assert_eq!(requested_id(br#"{"request_id": "ab"}"#).unwrap(), "ab");
        assert_eq!(requested_id(br#"{"request_id": "ab"} trailing"#).unwrap(), "ab");
        assert_eq!(requested_id(br#"{"other": 1}"#).unwrap(), "");
        for bad in [&b""[..], b"{", b"[1]", br#"{"request_id": 5}"#] {
            let e = requested_id(bad).unwrap_err();
            assert_eq!(e.kind(), Kind::InvalidRequest, "{}", String::from_utf8_lossy(bad));
        }
    }

    /// A complete answer goes out as the kept bytes themselves, not a copy: each poller of
    /// a large answer holds a reference to it, not tens of MB of its own. Its length is known.
    #[tokio::test]
    async fn a_complete_answer_is_sent_from_the_kept_bytes_without_a_copy() {
        use http_body_util::BodyExt as _;
        let kept = Bytes::from(" {\"images\":[]}\n".to_owned());
        let resp = complete(kept.clone());
        assert_eq!(resp.status(), StatusCode::OK);
        let mut body = resp.into_body();
        let length = HttpBody::size_hint(&body).exact();
        let mut pieces = Vec::new();
        while let Some(frame) = body.frame().await {
            pieces.push(frame.unwrap().into_data().unwrap());
        }
        let whole = pieces.concat();
        assert_eq!(whole, br#"{"result":{"images":[]},"status":"complete"}"#);
        assert_eq!(length, Some(whole.len() as u64));
        let answer = &kept[1..kept.len() - 1];
        let shared =
            pieces.iter().any(|p| p.as_ptr() == answer.as_ptr() && p.len() == answer.len());
        assert!(shared, "the answer was copied: {pieces:?}");
    }
}
