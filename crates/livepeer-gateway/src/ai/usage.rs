//! What an LLM answer used, for the customer's charge (`--auth keys`).
//!
//! A customer is charged the tokens the answer reports, prompt and completion together (the
//! `usage` object of OpenAI's answers, which ai-runner sends in its JSON answer and in the last
//! event of a stream: `total_tokens`, else `prompt_tokens + completion_tokens`), as
//! OpenAI-style gateways (LiteLLM, OpenRouter) charge both. The job is reserved beforehand on
//! the request's bound ([`bound_units`]), and what an orchestrator reports is never charged
//! beyond it; an answer that reports nothing is charged its bound.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt as _;
use serde_json::Value;

use super::relay::EventStream;
use super::validate::{Payload, ValidRequest};
use crate::keys::Tab;

/// Longest event parsed for its usage: the final event of a stream is small (one empty delta
/// and the usage); a larger one is passed on unread.
const MAX_USAGE_EVENT: usize = 64 * 1024;

/// The most tokens an LLM request can use: its `max_tokens`, plus a bound on its prompt's
/// tokens: the bytes of its `messages` as JSON. A byte-level BPE tokenizer (Llama's and
/// most others) makes at most one token of a byte of text, and the JSON around each message
/// (`{"role":"user","content":""}`, 28 bytes) outweighs the few tokens a chat template adds.
pub(crate) fn bound_units(req: &ValidRequest) -> u64 {
    let prompt = match &req.payload {
        Payload::Json(body) => body
            .messages()
            .and_then(|m| serde_json::to_vec(m).ok())
            .map_or(0, |json| json.len() as u64),
        Payload::Multipart { .. } => 0,
    };
    req.units.saturating_add(prompt)
}

/// The tokens a `usage` object reports: `total_tokens`, else prompt plus completion; none when
/// it reports no token (the usage of a stream's intermediate events is zero).
fn tokens(usage: &Value) -> Option<u64> {
    let count = |name: &str| usage.get(name).and_then(Value::as_u64);
    let total = count("total_tokens").or_else(|| {
        let (prompt, completion) = (count("prompt_tokens"), count("completion_tokens"));
        (prompt.is_some() || completion.is_some())
            .then(|| prompt.unwrap_or(0).saturating_add(completion.unwrap_or(0)))
    })?;
    (total > 0).then_some(total)
}

/// The tokens a complete JSON answer reports it used.
pub(crate) fn answer_tokens(body: &[u8]) -> Option<u64> {
    let value = crate::bounded_json::from_slice(body, crate::bounded_json::MAX_VALUES).ok()?;
    tokens(value.get("usage")?)
}

/// The tokens the `data:` of the events in `chunk` report, the last report winning.
fn event_tokens(chunk: &[u8]) -> Option<u64> {
    if chunk.len() > MAX_USAGE_EVENT || !chunk.windows(7).any(|w| w == b"\"usage\"") {
        return None;
    }
    let text = std::str::from_utf8(chunk).ok()?;
    text.lines().rev().filter_map(|line| line.strip_prefix("data:")).find_map(|data| {
        let value = serde_json::from_str::<Value>(data.trim()).ok()?;
        tokens(value.get("usage")?)
    })
}

/// `events`, settling `tab` on the usage each event reports as it passes (the last report,
/// from the final event, stands). A stream the client leaves before its final event keeps
/// the tab on its bound (`max_tokens` and its prompt's bound, see [`bound_units`]): the
/// tokens generated so far are not known, and the orchestrator was paid for `max_tokens`
/// up front. A stream that ends in an error event (the orchestrator broke or
/// stalled, or the gateway shut down) is charged nothing, as a failed job is not: the fault is
/// not the customer's.
pub(crate) fn watch(events: EventStream, tab: Arc<Tab>) -> EventStream {
    Box::pin(events.map(move |chunk: Result<Bytes, std::io::Error>| {
        if let Ok(bytes) = &chunk {
            if let Some(used) = event_tokens(bytes) {
                tab.settle_units(used);
            }
            if is_error_event(bytes) {
                tab.settle_units(0);
            }
        }
        chunk
    }))
}

/// Whether `chunk` holds an `event: error` line (the relay's error events, or an
/// orchestrator's).
fn is_error_event(chunk: &[u8]) -> bool {
    chunk.split(|b| *b == b'\n').any(|line| line.trim_ascii() == b"event: error")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_is_total_tokens_else_prompt_plus_completion_and_zero_is_none() {
        let body = br#"{"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#;
        assert_eq!(answer_tokens(body), Some(7));
        assert_eq!(
            answer_tokens(br#"{"usage":{"prompt_tokens":3,"completion_tokens":4}}"#),
            Some(7)
        );
        assert_eq!(answer_tokens(br#"{"usage":{"completion_tokens":4}}"#), Some(4));
        assert_eq!(answer_tokens(br#"{"usage":{"prompt_tokens":0,"completion_tokens":0}}"#), None);
        assert_eq!(answer_tokens(br#"{"choices":[]}"#), None);
        assert_eq!(answer_tokens(b"not json"), None);
    }

    #[test]
    fn the_last_event_reporting_usage_wins() {
        let chunk = b"data: {\"usage\":{\"total_tokens\":0}}\n\n\
                      data: {\"usage\":{\"total_tokens\":9}}\n\n";
        assert_eq!(event_tokens(chunk), Some(9));
        assert_eq!(event_tokens(b"data: {\"choices\":[]}\n\n"), None);
        assert_eq!(event_tokens(b"event: error\ndata: {\"usage\": 1}\n\n"), None);
        assert!(is_error_event(b"data: {}\n\nevent: error\r\ndata: {}\n\n"));
        assert!(!is_error_event(b"data: {\"event: error\"}\n\n"));
    }
}
