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
use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};

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
/// it reports no token (the usage of a stream's intermediate events is zero). A count that is
/// not a whole number counts as absent.
fn tokens(usage: &Counts) -> Option<u64> {
    let total = usage.total.or_else(|| {
        let (prompt, completion) = (usage.prompt, usage.completion);
        (prompt.is_some() || completion.is_some())
            .then(|| prompt.unwrap_or(0).saturating_add(completion.unwrap_or(0)))
    })?;
    (total > 0).then_some(total)
}

/// Reads a text answer (LLM, audio-to-text, image-to-text, SAM2) or a stream event's data: it
/// must be one JSON object, UTF-8 throughout; `Ok` carries the tokens its top-level `usage`
/// reports, if any ([`tokens`]).
///
/// One pass that builds nothing: the body is checked as UTF-8 once, then parsed with its keys
/// read as bytes ([`Name`]) and every member skipped but `usage`'s counts. The answer used
/// to be checked with every member visited as `IgnoredAny` (about 3,800 instructions on
/// bench's LLM answer, callgrind) and, with customer keys, parsed again into a
/// `serde_json::Value` for its usage; this one pass takes about 4,800 and serves both.
pub(crate) fn read_answer(body: &[u8]) -> Result<Option<u64>, String> {
    std::str::from_utf8(body).map_err(|e| format!("answer is not UTF-8: {e}"))?;
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err("answer is not a JSON object".to_owned());
    }
    let answer: Top = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    Ok(answer.usage.as_ref().and_then(tokens))
}

/// The top-level object of an answer: its `usage`, when that is an object (the last one, as
/// Go's and Python's decoders take a repeated key).
struct Top {
    usage: Option<Counts>,
}

/// What a `usage` object counts; other members are skipped.
#[derive(Default)]
struct Counts {
    total: Option<u64>,
    prompt: Option<u64>,
    completion: Option<u64>,
}

impl<'de> serde::Deserialize<'de> for Top {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> Visitor<'de> for Members {
            type Value = Top;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Top, A::Error> {
                let mut usage = None;
                while let Some(name) = map.next_key::<Name>()? {
                    match name.0 {
                        Some("usage") => usage = map.next_value::<Maybe<Counts>>()?.0,
                        _ => drop(map.next_value::<IgnoredAny>()?),
                    }
                }
                Ok(Top { usage })
            }
        }
        d.deserialize_map(Members)
    }
}

/// Reads a `usage` object's counts.
struct CountsVisitor;

impl<'de> Visitor<'de> for CountsVisitor {
    type Value = Counts;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a usage object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Counts, A::Error> {
        let mut counts = Counts::default();
        while let Some(name) = map.next_key::<Name>()? {
            let slot = match name.0 {
                Some("total_tokens") => &mut counts.total,
                Some("prompt_tokens") => &mut counts.prompt,
                Some("completion_tokens") => &mut counts.completion,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            *slot = map.next_value::<Maybe<u64>>()?.0;
        }
        Ok(counts)
    }
}

/// A member's name, when it is one of those read here (`None`: any other, not kept). Read as
/// bytes: serde_json then hands over the key without checking its UTF-8 again, which
/// [`read_answer`] has checked for the whole body (that check took a third of the parse).
struct Name(Option<&'static str>);

impl<'de> serde::Deserialize<'de> for Name {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Known;
        impl Visitor<'_> for Known {
            type Value = Name;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a member name")
            }

            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Name, E> {
                const NAMES: [&str; 4] =
                    ["usage", "total_tokens", "prompt_tokens", "completion_tokens"];
                Ok(Name(NAMES.into_iter().find(|n| n.as_bytes() == v)))
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Name, E> {
                self.visit_bytes(v.as_bytes())
            }
        }
        d.deserialize_bytes(Known)
    }
}

/// A value read as `T` when it has `T`'s shape, else skipped as `None` (a `usage` that is not
/// an object, a count that is not a whole number): such answers are valid JSON, only their
/// usage is unknown.
struct Maybe<T>(Option<T>);

/// The shapes [`Maybe`] reads: a map (a `usage` object) or a whole number (a count).
trait Shape: Sized {
    fn from_map<'de, A: MapAccess<'de>>(map: A) -> Result<Option<Self>, A::Error>;
    fn from_whole(v: u64) -> Option<Self>;
}

impl Shape for Counts {
    fn from_map<'de, A: MapAccess<'de>>(map: A) -> Result<Option<Self>, A::Error> {
        CountsVisitor.visit_map(map).map(Some)
    }

    fn from_whole(_: u64) -> Option<Self> {
        None
    }
}

impl Shape for u64 {
    fn from_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<Option<Self>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn from_whole(v: u64) -> Option<Self> {
        Some(v)
    }
}

impl<'de, T: Shape> serde::Deserialize<'de> for Maybe<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(MaybeVisitor(std::marker::PhantomData))
    }
}

/// Reads a [`Maybe`]: any JSON value, read through to its end.
struct MaybeVisitor<T>(std::marker::PhantomData<T>);

impl<'de, T: Shape> Visitor<'de> for MaybeVisitor<T> {
    type Value = Maybe<T>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        T::from_map(map).map(Maybe)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Maybe(None))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Maybe(T::from_whole(v)))
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Maybe(None))
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Maybe(None))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Maybe(None))
    }

    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Maybe(None))
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Maybe(None))
    }
}

/// The tokens the `data:` of the events in `chunk` report, the last report winning.
fn event_tokens(chunk: &[u8]) -> Option<u64> {
    if chunk.len() > MAX_USAGE_EVENT || !chunk.windows(7).any(|w| w == b"\"usage\"") {
        return None;
    }
    let text = std::str::from_utf8(chunk).ok()?;
    text.lines()
        .rev()
        .filter_map(|line| line.strip_prefix("data:"))
        .find_map(|data| read_answer(data.trim().as_bytes()).ok().flatten())
}

/// `events`, settling `tab` (with customer keys) on the usage each event reports as it passes
/// (the last report, from the final event, stands), and handing `at_end` the tokens reported
/// when the stream ends without an error. A stream the client leaves before its final event
/// keeps the tab on its bound (`max_tokens` and its prompt's bound, see [`bound_units`]): the
/// tokens generated so far are not known, and the orchestrator was paid for `max_tokens` up
/// front. A stream that ends in an error event (the orchestrator broke or stalled, or the
/// gateway shut down) is charged nothing, as a failed job is not: the fault is not the
/// customer's.
pub(crate) fn watch(
    events: EventStream,
    tab: Option<Arc<Tab>>,
    at_end: Box<dyn FnOnce(u64) + Send>,
) -> EventStream {
    Box::pin(Watched { events, tab, used: None, failed: false, at_end: Some(at_end) })
}

/// The stream of [`watch`].
struct Watched {
    events: EventStream,
    tab: Option<Arc<Tab>>,
    /// The tokens the last report said.
    used: Option<u64>,
    /// Whether an error event passed.
    failed: bool,
    at_end: Option<Box<dyn FnOnce(u64) + Send>>,
}

impl futures_util::Stream for Watched {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let this = &mut *self;
        let next = std::task::ready!(this.events.as_mut().poll_next(cx));
        match &next {
            Some(Ok(bytes)) => {
                if let Some(used) = event_tokens(bytes) {
                    this.used = Some(used);
                    if let Some(tab) = &this.tab {
                        tab.settle_units(used);
                    }
                }
                if is_error_event(bytes) {
                    this.failed = true;
                    if let Some(tab) = &this.tab {
                        tab.settle_units(0);
                    }
                }
            }
            Some(Err(_)) => this.failed = true,
            None => {
                if let (false, Some(used), Some(at_end)) =
                    (this.failed, this.used, this.at_end.take())
                {
                    at_end(used);
                }
            }
        }
        std::task::Poll::Ready(next)
    }
}

/// Whether `chunk` holds an `event: error` line (the relay's error events, or an
/// orchestrator's).
fn is_error_event(chunk: &[u8]) -> bool {
    chunk.split(|b| *b == b'\n').any(|line| line.trim_ascii() == b"event: error")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tokens of a valid answer, `None` for an invalid one.
    fn answer_tokens(body: &[u8]) -> Option<u64> {
        read_answer(body).ok().flatten()
    }

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
    fn usage_of_another_shape_is_unknown_but_the_answer_stands() {
        let cases: [(&[u8], Option<u64>); 9] = [
            (br#"{"usage":null}"#, None),
            (br#"{"usage":"7"}"#, None),
            (br#"{"usage":[{"total_tokens":7}]}"#, None),
            (br#"{"usage":{"total_tokens":"7","prompt_tokens":2}}"#, Some(2)),
            (br#"{"usage":{"total_tokens":-7,"completion_tokens":1.5}}"#, None),
            (br#"{"usage":{"total_tokens":{"a":[1]},"prompt_tokens":[3],"x":{}}}"#, None),
            // A repeated key: the last, as Go's and Python's decoders read it.
            (br#"{"usage":{"total_tokens":1},"usage":{"total_tokens":5}}"#, Some(5)),
            (br#"{"choices":[{"usage":{"total_tokens":9}}],"usage":{"total_tokens":3}}"#, Some(3)),
            (br#"{"us\u0061ge":{"total_tokens":4}}"#, Some(4)),
        ];
        for (body, tokens) in cases {
            let text = String::from_utf8_lossy(body);
            assert_eq!(read_answer(body), Ok(tokens), "{text}");
        }
    }

    #[test]
    fn an_answer_must_be_one_json_object() {
        let ok = ["{}", "{\"a\":[1,{\"b\":null}]}\n", " {\"text\":\"x\"} ", "{\"é\":\"ü\"}"];
        for ok in ok {
            assert!(read_answer(ok.as_bytes()).is_ok(), "{ok}");
        }
        let bad = [
            "null\n",
            "[]",
            "\"x\"",
            "1",
            "true",
            "{\"a\":}",
            "{} {}",
            "",
            "{\"a\":1",
            " {",
            "{\"usage\":{\"total_tokens\":1,}}",
        ];
        for bad in bad {
            assert!(read_answer(bad.as_bytes()).is_err(), "{bad}");
        }
        // Not UTF-8, in a key and in a value.
        for bad in [&b"{\"\xff\":1}"[..], b"{\"a\":\"\xc3\x28\"}"] {
            assert!(read_answer(bad).is_err(), "{bad:?}");
        }
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
