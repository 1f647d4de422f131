//! Inline results (`data:…;base64,…` URLs) taken out of an orchestrator's answer before the
//! answer is parsed, and handed to the result store from the answer's own bytes.
//!
//! Why: an image inline is most of its answer's bytes (a 1024×1024 PNG is megabytes of
//! base64), and serde_json reads every byte of a string twice, once looking for escapes and
//! once checking UTF-8, then copies it into a `String` that is only decoded and dropped. For
//! `bench`'s 64×64 image that was 17,000 of a text-to-image job's 119,000 instructions
//! (callgrind). Here the string is found with `memchr`'s SIMD search, the answer is parsed with
//! a short placeholder in its place, and the base64 decoder, which checks every byte anyway,
//! reads the payload where it lies.
//!
//! The answer means the same with or without the lifting, byte for byte:
//! - only a run of the form `"data:<type>;base64,<payload>"` is lifted, where the type has only
//!   token characters and the payload has no `"` and no `\`. The payload's end is then an
//!   unescaped quote, so the lifted bytes are the whole content of one JSON string, or a run
//!   outside any string, which no valid answer has. A lifted answer parses if and only if the
//!   answer does;
//! - the placeholders must each come back exactly once, as a media URL the pipeline's answer
//!   has (`images[].url`, `audio.url`). A placeholder anywhere else (a lifted run that was
//!   inside some other string, or an orchestrator's text that happens to read like one) sends
//!   the answer down the ordinary path, parsed whole.

use std::ops::Range;

use memchr::{memchr, memmem};

/// Payloads shorter than this are left in the answer: lifting them saves less than it costs.
const MIN_PAYLOAD: usize = 2048;

/// Longest media type and parameters looked at between `data:` and the comma.
const MAX_TYPE: usize = 128;

/// What a lifted URL reads as in the parsed answer, followed by its index.
const PLACEHOLDER: &str = "data:;lifted,";

/// An answer with its inline results lifted out.
#[derive(Debug)]
pub(super) struct Lifted {
    /// The answer with each payload's string replaced by a placeholder.
    pub(super) json: Vec<u8>,
    /// Where each lifted URL was in the original answer, in order.
    parts: Vec<Part>,
}

/// One lifted `data:` URL: byte ranges of the original answer.
#[derive(Debug, Clone)]
struct Part {
    /// The media type and parameters, between `data:` and the comma (`image/png;base64`).
    meta: Range<usize>,
    /// The base64 payload after the comma, up to the closing quote.
    payload: Range<usize>,
}

/// An inline result as it lies in the answer: its media type and parameters, and its base64
/// payload.
#[derive(Debug, Clone, Copy)]
pub(super) struct Inline<'a> {
    /// What came between `data:` and the comma (`image/png;base64`).
    pub(super) meta: &'a str,
    /// The base64 text.
    pub(super) payload: &'a [u8],
}

/// `body` with its long inline results lifted out, or `None` when it has none.
pub(super) fn lift(body: &[u8]) -> Option<Lifted> {
    let mut parts = Vec::new();
    let mut json = Vec::new();
    let mut copied = 0;
    for quote in memmem::find_iter(body, b"\"data:") {
        // A payload never holds a quote, so no match starts inside a lifted one.
        let Some(part) = part_at(body, quote) else { continue };
        json.extend_from_slice(&body[copied..=quote]);
        json.extend_from_slice(PLACEHOLDER.as_bytes());
        json.extend_from_slice(itoa::Buffer::new().format(parts.len()).as_bytes());
        copied = part.payload.end;
        parts.push(part);
    }
    if parts.is_empty() {
        return None;
    }
    json.extend_from_slice(&body[copied..]);
    Some(Lifted { json, parts })
}

/// The `data:` URL whose opening quote is at `quote`, if it may be lifted.
fn part_at(body: &[u8], quote: usize) -> Option<Part> {
    let meta_start = quote + "\"data:".len();
    let window = body.get(meta_start..)?;
    let comma = memchr(b',', &window[..window.len().min(MAX_TYPE)])?;
    let meta = &window[..comma];
    let token = |b: &u8| b.is_ascii_alphanumeric() || b"/+.-_;=".contains(b);
    if !meta.ends_with(b";base64") || !meta.iter().all(token) {
        return None;
    }
    let payload_start = meta_start + comma + 1;
    let len = memchr(b'"', &body[payload_start..])?;
    let payload = payload_start..payload_start + len;
    if len < MIN_PAYLOAD || memchr(b'\\', &body[payload.clone()]).is_some() {
        return None;
    }
    Some(Part { meta: meta_start..meta_start + comma, payload })
}

impl Lifted {
    /// For each of the answer's media URLs `srcs` (in order), the lifted result it stands for,
    /// or `None` for a URL that was not lifted. `None` as a whole when the placeholders do not
    /// come back each exactly once among them: the answer must then be read whole.
    pub(super) fn resolve<'b>(
        &self,
        body: &'b [u8],
        srcs: &[&str],
    ) -> Option<Vec<Option<Inline<'b>>>> {
        let mut seen = vec![false; self.parts.len()];
        let mut out = Vec::with_capacity(srcs.len());
        for src in srcs {
            let Some(index) = src.strip_prefix(PLACEHOLDER) else {
                out.push(None);
                continue;
            };
            // Only the digits `lift` writes: `01` or `+1` came from the orchestrator.
            let index: usize = index.parse().ok().filter(|i: &usize| i.to_string() == index)?;
            let part = self.parts.get(index)?;
            if std::mem::replace(&mut seen[index], true) {
                return None;
            }
            let meta = std::str::from_utf8(&body[part.meta.clone()]).ok()?;
            out.push(Some(Inline { meta, payload: &body[part.payload.clone()] }));
        }
        seen.iter().all(|&s| s).then_some(out)
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;

    use super::*;

    fn b64(n: usize) -> String {
        let bytes: Vec<u8> = (0..n).map(|i| (i * 7 % 251) as u8).collect();
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    /// The URLs of `images[].url` in `json`.
    fn urls(json: &[u8]) -> Vec<String> {
        let v: serde_json::Value = serde_json::from_slice(json).unwrap();
        let images = v["images"].as_array().unwrap();
        images.iter().map(|i| i["url"].as_str().unwrap().to_owned()).collect()
    }

    /// A lifted URL's media type and payload, owned.
    type Owned = Option<(String, Vec<u8>)>;

    fn resolved(body: &[u8]) -> Option<Vec<Owned>> {
        let lifted = lift(body)?;
        let srcs = urls(&lifted.json);
        let srcs: Vec<&str> = srcs.iter().map(String::as_str).collect();
        let out = lifted.resolve(body, &srcs)?;
        Some(out.into_iter().map(|i| i.map(|i| (i.meta.to_owned(), i.payload.to_vec()))).collect())
    }

    #[test]
    fn long_inline_images_are_lifted_and_come_back_as_they_were() {
        let (a, b) = (b64(3000), b64(5000));
        let body = format!(
            r#"{{"images":[{{"url":"data:image/png;base64,{a}","seed":1}},{{"url":"https://o/x.png"}},{{"url":"data:image/jpeg;base64,{b}","nsfw":false}}]}}"#
        );
        let lifted = lift(body.as_bytes()).unwrap();
        assert!(lifted.json.len() < 200, "{}", String::from_utf8_lossy(&lifted.json));
        // The rest of the answer is untouched.
        let v: serde_json::Value = serde_json::from_slice(&lifted.json).unwrap();
        assert_eq!(v["images"][0]["seed"], 1);
        assert_eq!(v["images"][1]["url"], "https://o/x.png");
        let got = resolved(body.as_bytes()).unwrap();
        assert_eq!(got[0], Some(("image/png;base64".to_owned(), a.into_bytes())));
        assert_eq!(got[1], None);
        assert_eq!(got[2], Some(("image/jpeg;base64".to_owned(), b.into_bytes())));
    }

    #[test]
    fn short_escaped_or_odd_urls_stay_in_the_answer() {
        let long = b64(3000);
        for body in [
            // Short: not worth it.
            r#"{"images":[{"url":"data:image/png;base64,iVBORw0KGgo="}]}"#.to_owned(),
            // Not base64, or a type with characters a token has not.
            format!(r#"{{"images":[{{"url":"data:image/png,{long}"}}]}}"#),
            format!(r#"{{"images":[{{"url":"data:image/png x;base64,{long}"}}]}}"#),
            // An escape in the payload: its end may not be the string's.
            format!(r#"{{"images":[{{"url":"data:image/png;base64,{long}\/"}}]}}"#),
            // No closing quote.
            format!(r#"{{"images":[{{"url":"data:image/png;base64,{long}"#),
        ] {
            assert!(lift(body.as_bytes()).is_none(), "{body}");
        }
    }

    #[test]
    fn a_placeholder_anywhere_but_once_as_a_media_url_sends_the_answer_down_the_whole_path() {
        let long = b64(3000);
        for body in [
            // The lifted run was inside another string (after an escaped quote).
            format!(
                r#"{{"caption":"\"data:image/png;base64,{long}","images":[{{"url":"https://o/a"}}]}}"#
            ),
            // The orchestrator's own text reads like a placeholder, beside a lifted URL.
            format!(
                r#"{{"images":[{{"url":"data:;lifted,0"}},{{"url":"data:image/png;base64,{long}"}}]}}"#
            ),
            // A placeholder with an index the lifting never wrote.
            format!(
                r#"{{"images":[{{"url":"data:;lifted,00"}},{{"url":"data:image/png;base64,{long}"}}]}}"#
            ),
        ] {
            assert!(lift(body.as_bytes()).is_some(), "{body}");
            assert!(resolved(body.as_bytes()).is_none(), "{body}");
        }
    }

    #[test]
    fn lifting_keeps_an_answer_valid_or_invalid_as_it_was() {
        let long = b64(3000);
        let good = format!(r#"{{"images":[{{"url":"data:image/png;base64,{long}"}}]}}"#);
        let cases = [
            good.clone(),
            // Outside any string, after a string's closing quote.
            format!(r#"{{"images":[{{"url":"x"data:image/png;base64,{long}"}}]}}"#),
            format!(r#"{{"images":[{{"url":"data:image/png;base64,{long}"]}}"#),
            format!(r#"{{"a":"\"data:image/png;base64,{long}","b":1}}"#),
            format!("{good} trailing"),
        ];
        for body in cases {
            let whole = serde_json::from_str::<serde_json::Value>(&body).is_ok();
            let lifted = lift(body.as_bytes()).unwrap();
            let small = serde_json::from_slice::<serde_json::Value>(&lifted.json).is_ok();
            assert_eq!(small, whole, "{body}");
        }
    }
}
