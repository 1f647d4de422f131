//! A media pipeline's answer made the gateway's: its results (inline or at the orchestrator)
//! checked against what was asked, kept in the result store and their URLs rewritten
//! (PROTOCOL.md §7.4), under the rules of `fetch`.

use bytes::Bytes;
use serde_json::Value;

use super::call::{AiClient, Answer, CallError, ResultSink, ResultUrls};
use super::fetch::Budget;
use super::lift::Inline;
use super::validate::{Payload, Pipeline, ValidRequest};

impl AiClient {
    /// A media pipeline's answer, its results kept and its URLs the gateway's. With `lift`
    /// (as every call has it; the fuzz bench compares both), its long inline results are
    /// lifted out before it is parsed (`super::lift`) where it has any; else it is read whole.
    pub(super) async fn media_answer(
        &self,
        orch: (&str, Option<std::net::IpAddr>),
        req: &ValidRequest,
        (body, lift): (&[u8], bool),
        sink: ResultSink<'_>,
    ) -> Result<Answer, CallError> {
        if let Some(lifted) = lift.then(|| super::lift::lift(body)).flatten()
            && let Ok(mut json) = parse(&lifted.json)
        {
            let srcs = media_slots(req.pipeline, &mut json)?;
            let srcs: Vec<&str> = srcs.iter().map(|s| s.as_str().unwrap_or_default()).collect();
            if let Some(inline) = lifted.resolve(body, &srcs) {
                return match self.rewrite_media(orch, req, &mut json, &inline, sink).await {
                    Ok(()) => Ok(Answer::Body(encode(&json))),
                    // The answer read whole would have failed to parse (a payload that is not
                    // JSON text): that is the error it gets.
                    Err(e) => Err(parse(body).err().unwrap_or(e)),
                };
            }
        }
        let mut json = parse(body)?;
        self.rewrite_media(orch, req, &mut json, &[], sink).await?;
        Ok(Answer::Body(encode(&json)))
    }

    /// Fuzzing entry (`benches/fuzz`): what [`call`](Self::call) does with a complete 200
    /// JSON answer to `req`, from an orchestrator at `transcoder`, with inline results lifted
    /// out first (`lift`, as `call` does) or the answer parsed whole. The harness feeds only
    /// answers whose media URLs are `data:`, so nothing is downloaded.
    #[doc(hidden)]
    pub async fn answer_for_fuzz(
        &self,
        (transcoder, lift): (&str, bool),
        req: &ValidRequest,
        body: &[u8],
        sink: ResultSink<'_>,
    ) -> Result<Bytes, CallError> {
        match self.media_answer((transcoder, None), req, (body, lift), sink).await? {
            Answer::Body(bytes) | Answer::Text { body: bytes, .. } => Ok(bytes),
            Answer::Stream(_) => Err(CallError::Malformed("a stream".into())),
        }
    }

    /// Replaces each media URL of the answer with the gateway's own (PROTOCOL.md §7.4),
    /// after checking there are no more of them than `req` asked for.
    async fn rewrite_media(
        &self,
        (transcoder, orch_peer): (&str, Option<std::net::IpAddr>),
        req: &ValidRequest,
        json: &mut Value,
        inline: &[Option<Inline<'_>>],
        sink: ResultSink<'_>,
    ) -> Result<(), CallError> {
        let slots = media_slots(req.pipeline, json)?;
        let asked = outputs_asked(req);
        if slots.is_empty() || slots.len() as u64 > asked {
            let n = slots.len();
            return Err(CallError::Download(format!("{n} outputs where {asked} were asked for")));
        }
        let orch_url = self
            .fetcher
            .origin(transcoder)
            .map_err(|e| CallError::Malformed(format!("transcoder URL: {e}")))?;
        let config = sink.config;
        let mut budget = Budget {
            orch: orch_url,
            orch_peer,
            allowed: &config.result_allowed_hosts,
            per_result: config.result_max_bytes,
            left: config.job_result_max_bytes,
            store: sink.store,
        };
        for (i, slot) in slots.into_iter().enumerate() {
            let Some(src) = slot.as_str() else {
                return Err(CallError::Malformed("media url is not a string".into()));
            };
            let fetched = match inline.get(i).copied().flatten() {
                Some(lifted) => {
                    self.fetcher.fetch_inline(lifted.meta, lifted.payload, &mut budget)?
                }
                None => {
                    let began = tokio::time::Instant::now();
                    let fetched = self.fetcher.fetch(src, &mut budget).await?;
                    let downloaded = super::fetch::data_url(src).is_none();
                    if let (true, Some((metrics, job))) = (downloaded, sink.counted) {
                        metrics.ai_result_downloaded(job, began.elapsed());
                    }
                    fetched
                }
            };
            let ext = extension(&fetched.content_type, src);
            let new = match sink.urls {
                ResultUrls::Data => {
                    use base64::Engine as _;
                    let b64 = base64::engine::general_purpose::STANDARD.encode(&fetched.bytes);
                    format!("data:{};base64,{b64}", fetched.content_type)
                }
                ResultUrls::Gateway(base) => {
                    let (ct, bytes) = (&fetched.content_type, fetched.bytes);
                    let key = sink
                        .store
                        .put(fetched.reservation, ct, ext, bytes)
                        .map_err(|e| CallError::StoreFull(e.to_string()))?;
                    [base.as_str(), "/results/", key.as_str()].concat()
                }
            };
            *slot = Value::String(new);
        }
        Ok(())
    }
}

/// An orchestrator's answer as JSON, built under a budget of values: the answer's bytes are
/// capped, what a `Value` of them costs is not (64 MiB of zeros took 1.5 GiB).
fn parse(bytes: &[u8]) -> Result<Value, CallError> {
    crate::bounded_json::from_slice(bytes, crate::bounded_json::MAX_VALUES)
        .map_err(|e| CallError::Malformed(e.to_string()))
}

/// `json` as bytes. `serde_json::to_vec` writes straight into its buffer; `to_string` goes
/// through `Display` and formats every token through `fmt::Write`, which showed in profiles.
fn encode(json: &Value) -> Bytes {
    // A `Value` always serialises: its map keys are strings.
    Bytes::from(serde_json::to_vec(json).unwrap_or_default())
}

/// The answer's media URL slots: `images[].url`, or `audio.url` for text-to-speech.
fn media_slots(pipeline: Pipeline, json: &mut Value) -> Result<Vec<&mut Value>, CallError> {
    match pipeline {
        Pipeline::TextToImage
        | Pipeline::ImageToImage
        | Pipeline::Upscale
        | Pipeline::ImageToVideo => {
            let Some(images) = json.get_mut("images").and_then(Value::as_array_mut) else {
                return Err(CallError::Malformed("answer has no images list".into()));
            };
            Ok(images.iter_mut().filter_map(|m| m.get_mut("url")).collect())
        }
        Pipeline::TextToSpeech => match json.pointer_mut("/audio/url") {
            Some(url) => Ok(vec![url]),
            None => Err(CallError::Malformed("answer has no audio url".into())),
        },
        _ => Ok(Vec::new()),
    }
}

/// How many media outputs the request asked for: `num_images_per_prompt` (validation fills
/// in its default) for text-to-image and image-to-image, one for every other media pipeline
/// (an upscaled image, a video, a speech file).
fn outputs_asked(req: &ValidRequest) -> u64 {
    const FIELD: &str = "num_images_per_prompt";
    if !matches!(req.pipeline, Pipeline::TextToImage | Pipeline::ImageToImage) {
        return 1;
    }
    let asked = match &req.payload {
        Payload::Json(map) => map.get(FIELD).and_then(Value::as_u64),
        Payload::Multipart { fields, .. } => {
            fields.iter().find(|(name, _)| name == FIELD).and_then(|(_, v)| v.parse().ok())
        }
    };
    asked.unwrap_or(1).max(1)
}

/// The file extension a result of `content_type` is kept under.
fn extension(content_type: &str, url: &str) -> &'static str {
    match content_type {
        "image/png" => "png",
        "image/jpeg" => "jpg",
        "image/gif" => "gif",
        "video/mp4" => "mp4",
        "audio/wav" | "audio/x-wav" | "audio/wave" => "wav",
        "audio/mpeg" => "mp3",
        _ if url.ends_with(".mp4") => "mp4",
        _ if url.ends_with(".wav") => "wav",
        _ if url.ends_with(".png") => "png",
        _ => "bin",
    }
}
