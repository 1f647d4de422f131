//! The `/llm` pipeline: it "answers" by echoing the words of the last user message, one token
//! per word, as one JSON `LLMResponse` or as server-sent events (PROTOCOL.md §7.3): each event
//! is `data: <LLMResponse JSON>\n\n` carrying `choices[0].delta`; the last one has a non-empty
//! `finish_reason` and the usage; there is no `[DONE]`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use serde_json::{Value, json};

use crate::ai::{Busy, Ctx, FLUSH_PAUSE, Input, Rejection, simulated_drop};
use crate::jobs::Output;

/// How many events an [`crate::AiMode::CloseMidAnswer`] stream sends before dropping.
const EVENTS_BEFORE_DROP: usize = 2;

/// A checked LLM request.
#[derive(Debug)]
pub(crate) struct LlmJob {
    /// The whole answer, one token per word, before `max_tokens` applies.
    tokens: Vec<String>,
    prompt_tokens: u64,
    max_tokens: usize,
    stream: bool,
}

/// Checks an LLM request. `max_tokens` is required as go-livepeer bills it (400
/// `MaxTokens not specified`); missing `messages` is the runner's 422.
pub(crate) fn prepare(input: &Input) -> Result<LlmJob, Rejection> {
    let messages = input.value("messages").and_then(Value::as_array).ok_or_else(|| {
        let detail = json!({ "detail": [{ "type": "missing", "loc": ["body", "messages"], "msg": "Field required" }] });
        Rejection::new(StatusCode::INTERNAL_SERVER_ERROR, format!("llm container returned 422: {detail}"))
    })?;
    let max_tokens = input
        .int("max_tokens")?
        .ok_or_else(|| Rejection::bad_request("MaxTokens not specified"))?;
    let stream = input.flag("stream")?.unwrap_or(false);
    let texts: Vec<(&str, String)> = messages
        .iter()
        .map(|m| (m.get("role").and_then(Value::as_str).unwrap_or_default(), content(m)))
        .collect();
    let prompt_tokens = texts.iter().map(|(_, t)| t.split_whitespace().count() as u64).sum();
    let last = texts.iter().rev().find(|(role, _)| *role == "user").or(texts.last());
    let words: Vec<&str> = last.map(|(_, t)| t.split_whitespace().collect()).unwrap_or_default();
    let words = if words.is_empty() { vec!["(silence)"] } else { words };
    let tokens = words
        .iter()
        .enumerate()
        .map(|(i, w)| if i == 0 { (*w).to_owned() } else { format!(" {w}") })
        .collect();
    Ok(LlmJob {
        tokens,
        prompt_tokens,
        max_tokens: usize::try_from(max_tokens).unwrap_or(0),
        stream,
    })
}

/// A message's text: a string, or the text parts of an OpenAI-style list of parts.
fn content(message: &Value) -> String {
    match message.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// Fields every event and the JSON answer share.
#[derive(Debug, Clone)]
struct Head {
    id: String,
    model: String,
    created: u64,
}

impl Head {
    fn response(&self, usage: Value, choice: Value) -> Value {
        json!({
            "id": self.id,
            "model": self.model,
            "created": self.created,
            "usage": usage,
            "choices": [choice],
        })
    }
}

fn usage(prompt: u64, completion: u64) -> Value {
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    })
}

/// Answers, waiting the configured token delay before each token.
pub(crate) async fn run(job: LlmJob, ctx: Ctx, busy: Busy, close: bool) -> Output {
    let created = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let head = Head { id: format!("chatcmpl-{}", ctx.request_id), model: ctx.model, created };
    let truncated = job.tokens.len() > job.max_tokens;
    let finish = if truncated { "length" } else { "stop" };
    let mut tokens = job.tokens;
    tokens.truncate(job.max_tokens);
    let usage = usage(job.prompt_tokens, tokens.len() as u64);
    let delay = ctx.shared.config.token_delay;
    if !job.stream {
        let count = u32::try_from(tokens.len()).unwrap_or(u32::MAX);
        // Even a zero sleep waits for the timer wheel (about 1 ms): skip it when there is none.
        if !delay.is_zero() {
            tokio::time::sleep(delay.saturating_mul(count)).await;
        }
        drop(busy);
        let message = json!({ "role": "assistant", "content": tokens.concat() });
        let choice = json!({ "index": 0, "finish_reason": finish, "message": message });
        return Output::Json(head.response(usage, choice));
    }
    let events = tokens.len() + 1;
    let stream = Sse {
        head,
        tokens: tokens.into_iter(),
        delay,
        finish,
        usage,
        sent: 0,
        drop_after: close.then(|| EVENTS_BEFORE_DROP.min(events - 1)),
        done: false,
        _busy: busy,
    };
    let body = futures_util::stream::unfold(stream, Sse::next);
    let mut response = Response::new(Body::from_stream(body));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
    Output::Response(response)
}

/// The state of a streamed answer. It owns the request's [`Busy`], so the request stays in
/// flight (and holds its capacity) until the stream ends or the client goes away.
#[derive(Debug)]
struct Sse {
    head: Head,
    tokens: std::vec::IntoIter<String>,
    delay: Duration,
    finish: &'static str,
    usage: Value,
    sent: usize,
    drop_after: Option<usize>,
    done: bool,
    _busy: Busy,
}

impl Sse {
    /// The next event, produced only when the body is polled, so each is written (and flushed)
    /// before the next one is made.
    async fn next(mut self) -> Option<(Result<Bytes, std::io::Error>, Sse)> {
        if self.done {
            return None;
        }
        if self.drop_after == Some(self.sent) {
            tokio::time::sleep(FLUSH_PAUSE).await;
            self.done = true;
            return Some((Err(simulated_drop()), self));
        }
        let event = match self.tokens.next() {
            Some(token) => {
                if !self.delay.is_zero() {
                    tokio::time::sleep(self.delay).await;
                }
                let delta = json!({ "role": "assistant", "content": token });
                let choice = json!({ "index": 0, "delta": delta, "finish_reason": "" });
                self.head.response(usage(0, 0), choice)
            }
            None => {
                self.done = true;
                let delta = json!({ "role": "assistant", "content": "" });
                let choice = json!({ "index": 0, "delta": delta, "finish_reason": self.finish });
                self.head.response(self.usage.clone(), choice)
            }
        };
        self.sent += 1;
        Some((Ok(Bytes::from(format!("data: {event}\n\n"))), self))
    }
}
