//! An OpenAI-compatible front on the LLM pipeline (`POST /v1/chat/completions`), so OpenAI SDKs
//! and tools such as LiteLLM can use the gateway unchanged. The request maps onto the `/llm`
//! body; answers gain OpenAI's `object` field, and streams end with `data: [DONE]`.

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt as _;
use serde_json::{Map, Value};

use super::job::{EventStream, Output, Reply};
use super::relay::{MAX_EVENT, event_ends};

/// The OpenAI fields the LLM pipeline understands, and the newer name of one of them.
const FIELDS: [&str; 7] =
    ["model", "messages", "temperature", "max_tokens", "top_p", "stream", "max_completion_tokens"];

/// The `/llm` body for an OpenAI chat request: the fields the pipeline understands, each read
/// under validation's budget of values and any other skipped unread. A body that is not a
/// JSON object, or that the budget refuses, is passed on as it is, for validation to report
/// in the usual shape.
pub fn llm_body(body: Bytes) -> Bytes {
    let Some(slots) = super::validate::known_fields(&body, &FIELDS) else { return body };
    let mut llm = Map::new();
    for (key, value) in FIELDS.iter().zip(slots) {
        if let Some(value) = value {
            llm.insert((*key).to_owned(), value);
        }
    }
    // Newer OpenAI clients send max_completion_tokens instead.
    if let Some(v) = llm.remove("max_completion_tokens") {
        llm.entry("max_tokens").or_insert(v);
    }
    Bytes::from(Value::Object(llm).to_string())
}

/// The LLM pipeline's answer in OpenAI's shape: `object` added to the completion, or to every
/// event of a stream, which then ends with `data: [DONE]`.
pub fn completion(mut reply: Reply) -> Reply {
    reply.outcome = reply.outcome.map(|output| match output {
        Output::Json(bytes) => {
            let budget = crate::bounded_json::MAX_VALUES;
            let mut json = crate::bounded_json::from_slice(&bytes, budget).unwrap_or(Value::Null);
            if let Some(obj) = json.as_object_mut() {
                obj.insert("object".into(), Value::String("chat.completion".into()));
            }
            Output::Json(Bytes::from(json.to_string()))
        }
        Output::Events(events) => Output::Events(Box::pin(reframe(events))),
    });
    reply
}

/// Re-frames the LLM event stream as OpenAI's: each `data:` JSON gains
/// `"object": "chat.completion.chunk"`, and `data: [DONE]` closes the stream.
///
/// The relay hands over whole events of at most [`MAX_EVENT`] bytes, ended by `\n\n` or
/// `\r\n\r\n`; only the bytes after those already looked at are searched for an event's
/// end, and what waits for one is never longer than the relay allows (a longer remainder is
/// converted as it is).
fn reframe(
    upstream: EventStream,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    futures_util::stream::unfold(
        (upstream, BytesMut::new(), false),
        |(mut upstream, mut buf, done)| async move {
            if done {
                return None;
            }
            // Where the search for an event's end resumes: bytes before it hold none.
            let mut from = 0;
            loop {
                if let Some(end) = first_event_end(&buf, from) {
                    let event = buf.split_to(end);
                    return Some((Ok(convert_event(&event)), (upstream, buf, false)));
                }
                if buf.len() > MAX_EVENT {
                    let event = buf.split();
                    return Some((Ok(convert_event(&event)), (upstream, buf, false)));
                }
                // An end may straddle the old bytes and the new: look again from just before.
                from = buf.len().saturating_sub(3);
                match upstream.next().await {
                    Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
                    Some(Err(e)) => return Some((Err(e), (upstream, buf, true))),
                    None => {
                        let mut tail = convert_event(&buf).to_vec();
                        tail.extend_from_slice(b"data: [DONE]\n\n");
                        return Some((Ok(Bytes::from(tail)), (upstream, BytesMut::new(), true)));
                    }
                }
            }
        },
    )
}

/// Where the first event in `buf` that ends at or after `from` ends: just after its blank
/// line (`\n\n`, or `\r\n\r\n`).
fn first_event_end(buf: &[u8], from: usize) -> Option<usize> {
    event_ends(buf.get(from..)?).next().map(|end| from + end)
}

fn convert_event(event: &[u8]) -> Bytes {
    let text = String::from_utf8_lossy(event);
    let text = text.trim();
    if text.is_empty() {
        return Bytes::new();
    }
    let mut out = String::new();
    for line in text.lines() {
        match line.strip_prefix("data:").map(str::trim) {
            Some(data) => match serde_json::from_str::<Value>(data) {
                Ok(Value::Object(mut obj)) => {
                    obj.insert("object".into(), Value::String("chat.completion.chunk".into()));
                    out.push_str(&format!("data: {}\n", Value::Object(obj)));
                }
                _ => out.push_str(&format!("{line}\n")),
            },
            None => out.push_str(&format!("{line}\n")),
        }
    }
    out.push('\n');
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn events_framed_with_crlf_go_out_as_they_come() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Result<Bytes, std::io::Error>>();
        let events: EventStream =
            Box::pin(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)));
        let mut out = Box::pin(reframe(events));
        tx.send(Ok(Bytes::from_static(b"data: {\"id\":\"1\"}\r\n\r"))).unwrap();
        tx.send(Ok(Bytes::from_static(b"\ndata: {\"id\":"))).unwrap();
        // The first event comes out while the stream is still open.
        let first = out.next().await.unwrap().unwrap();
        assert_eq!(&first[..], b"data: {\"id\":\"1\",\"object\":\"chat.completion.chunk\"}\n\n");
        tx.send(Ok(Bytes::from_static(b"\"2\"}\r\n\r\n"))).unwrap();
        let second = out.next().await.unwrap().unwrap();
        assert_eq!(&second[..], b"data: {\"id\":\"2\",\"object\":\"chat.completion.chunk\"}\n\n");
        drop(tx);
        assert_eq!(&out.next().await.unwrap().unwrap()[..], b"data: [DONE]\n\n");
    }

    #[tokio::test]
    async fn what_waits_for_an_events_end_stays_within_the_relays_limit() {
        let piece = Bytes::from(vec![b'x'; 16 << 10]);
        let chunks = std::iter::repeat_n(piece, 8).map(Ok::<_, std::io::Error>);
        let events: EventStream = Box::pin(futures_util::stream::iter(chunks));
        let sizes: Vec<usize> = reframe(events).map(|r| r.unwrap().len()).collect().await;
        // 128 KiB without an event's end: given out once past the limit, not gathered whole.
        assert!(sizes.iter().all(|n| *n <= MAX_EVENT + (16 << 10) + 16), "{sizes:?}");
        assert!(sizes.len() >= 2, "{sizes:?}");
    }

    #[tokio::test]
    async fn reframes_events_and_appends_done() {
        let chunks = vec![
            Ok::<_, std::io::Error>(Bytes::from_static(b"data: {\"id\":\"1\"}\n\nda")),
            Ok(Bytes::from_static(b"ta: {\"id\":\"2\"}\n\n")),
        ];
        let events: EventStream = Box::pin(futures_util::stream::iter(chunks));
        let out: Vec<Bytes> = reframe(events).map(|r| r.unwrap()).collect().await;
        let text: String = out.iter().map(|b| String::from_utf8_lossy(b).into_owned()).collect();
        assert_eq!(
            text,
            "data: {\"id\":\"1\",\"object\":\"chat.completion.chunk\"}\n\n\
             data: {\"id\":\"2\",\"object\":\"chat.completion.chunk\"}\n\n\
             data: [DONE]\n\n"
        );
    }
}
