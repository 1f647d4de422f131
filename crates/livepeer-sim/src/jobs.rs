//! What each batch AI pipeline computes from its inputs, and the shape of its answer as a
//! go-livepeer orchestrator returns it (PROTOCOL.md §7.3).
//!
//! Inputs are checked where the orchestrator checks them (image decoding, LLM `max_tokens`,
//! audio duration: 400) or where the runner would (a missing required field comes back from the
//! runner as 422, which the orchestrator turns into a 500 `<pipeline> container returned 422`).

use bytes::Bytes;
use http::StatusCode;
use imagesize::ImageType;
use serde_json::{Value, json};

use crate::ai::{Busy, Ctx, Input, Rejection};
use crate::{llm, media};

/// Images per request at most: enough for any test, bounded for memory.
const MAX_IMAGES: i64 = 16;
/// Requested dimensions are clamped to this before being fitted to [`media::MAX_SIDE`].
const MAX_DIMENSION: i64 = 8192;

/// A batch AI pipeline of the worker API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pipeline {
    TextToImage,
    ImageToImage,
    ImageToVideo,
    Upscale,
    AudioToText,
    SegmentAnything2,
    Llm,
    ImageToText,
    TextToSpeech,
}

impl Pipeline {
    pub(crate) const ALL: [Pipeline; 9] = [
        Pipeline::TextToImage,
        Pipeline::ImageToImage,
        Pipeline::ImageToVideo,
        Pipeline::Upscale,
        Pipeline::AudioToText,
        Pipeline::SegmentAnything2,
        Pipeline::Llm,
        Pipeline::ImageToText,
        Pipeline::TextToSpeech,
    ];

    /// The pipeline name, as in `SimModel::pipeline`.
    pub(crate) fn name(self) -> &'static str {
        &self.path()[1..]
    }

    /// The route path.
    pub(crate) fn path(self) -> &'static str {
        match self {
            Pipeline::TextToImage => "/text-to-image",
            Pipeline::ImageToImage => "/image-to-image",
            Pipeline::ImageToVideo => "/image-to-video",
            Pipeline::Upscale => "/upscale",
            Pipeline::AudioToText => "/audio-to-text",
            Pipeline::SegmentAnything2 => "/segment-anything-2",
            Pipeline::Llm => "/llm",
            Pipeline::ImageToText => "/image-to-text",
            Pipeline::TextToSpeech => "/text-to-speech",
        }
    }

    /// The file part of a multipart pipeline; `None` for JSON pipelines.
    pub(crate) fn file_field(self) -> Option<&'static str> {
        match self {
            Pipeline::TextToImage | Pipeline::Llm | Pipeline::TextToSpeech => None,
            Pipeline::AudioToText => Some("audio"),
            _ => Some("image"),
        }
    }

    /// The field naming the model.
    pub(crate) fn model_field(self) -> &'static str {
        if self == Pipeline::Llm { "model" } else { "model_id" }
    }
}

/// A pipeline's answer: JSON, JSON the pipeline wrote out itself, or a response built by the
/// pipeline (LLM streaming).
#[derive(Debug)]
pub(crate) enum Output {
    Json(Value),
    /// The bytes of a JSON answer (see [`inline_images`]).
    JsonBytes(Vec<u8>),
    Response(axum::response::Response),
}

/// A checked request, ready to run.
#[derive(Debug)]
pub(crate) enum Job {
    Images {
        pipeline: Pipeline,
        prompt: String,
        seed: i64,
        width: u32,
        height: u32,
        count: u32,
        nsfw: bool,
        /// Hash of the input image (zeros for text-to-image).
        source: [u8; 32],
    },
    Video {
        width: u32,
        height: u32,
        fps: u32,
        seed: i64,
        source: [u8; 32],
    },
    Speech {
        text: String,
    },
    Transcribe {
        audio: Bytes,
        seconds: u64,
        timestamps: bool,
    },
    Segment {
        width: u32,
        height: u32,
        count: usize,
        key: [u8; 32],
    },
    Caption {
        text: String,
    },
    Llm(llm::LlmJob),
}

impl Job {
    /// Checks and extracts a pipeline's inputs.
    pub(crate) fn prepare(pipeline: Pipeline, input: &Input) -> Result<Job, Rejection> {
        let source = || media::digest(&[input.file.as_deref().unwrap_or_default()]);
        Ok(match pipeline {
            Pipeline::TextToImage => {
                let prompt = required(input, pipeline, "prompt")?;
                // The runner's defaults (the orchestrator bills 512×512 when they are absent).
                let width = dimension(input, "width", 1024)?;
                let height = dimension(input, "height", 576)?;
                images(pipeline, input, prompt, (width, height), [0; 32])?
            }
            Pipeline::ImageToImage => {
                let (width, height, _) = image_size(input)?;
                let prompt = required(input, pipeline, "prompt")?;
                images(pipeline, input, prompt, (width, height), source())?
            }
            Pipeline::Upscale => {
                let (width, height, _) = image_size(input)?;
                let prompt = required(input, pipeline, "prompt")?;
                let size = (width.saturating_mul(4), height.saturating_mul(4));
                let mut job = images(pipeline, input, prompt, size, source())?;
                // The x4 upscaler makes one image whatever was asked.
                if let Job::Images { count, .. } = &mut job {
                    *count = 1;
                }
                job
            }
            Pipeline::ImageToVideo => {
                image_size(input)?;
                let width = dimension(input, "width", 1024)?;
                let height = dimension(input, "height", 576)?;
                let fps = input.int("fps")?.unwrap_or(6).clamp(1, 30) as u32;
                let seed = seed(input, b"")?;
                Job::Video { width, height, fps, seed, source: source() }
            }
            Pipeline::AudioToText => {
                let audio = input.file.clone().filter(|a| !a.is_empty());
                let audio =
                    audio.ok_or_else(|| Rejection::bad_request("Unable to calculate duration"))?;
                let seconds = duration(input).unwrap_or(audio.len() as u64 / 16_000).max(1);
                let timestamps = input.text("return_timestamps").is_none_or(|v| v != "false");
                Job::Transcribe { audio, seconds, timestamps }
            }
            Pipeline::SegmentAnything2 => {
                let (width, height, _) = image_size(input)?;
                let count = if input.flag("multimask_output")?.unwrap_or(true) { 3 } else { 1 };
                let prompts = ["point_coords", "point_labels", "box"].map(|f| input.text(f));
                let prompts = prompts.map(Option::unwrap_or_default);
                let key = media::digest(&[
                    &source(),
                    prompts[0].as_bytes(),
                    prompts[1].as_bytes(),
                    prompts[2].as_bytes(),
                ]);
                Job::Segment { width, height, count, key }
            }
            Pipeline::ImageToText => {
                let (width, height, format) = image_size(input)?;
                let prompt = input.text("prompt").unwrap_or_default();
                Job::Caption { text: media::caption(&prompt, width, height, format) }
            }
            Pipeline::TextToSpeech => Job::Speech { text: input.text("text").unwrap_or_default() },
            Pipeline::Llm => Job::Llm(llm::prepare(input)?),
        })
    }

    /// The units the orchestrator debits for this request (PROTOCOL.md §7.3, "units O";
    /// go-livepeer `handleAIRequest`), which are not always what the job computes: text-to-image
    /// bills 512×512 when no size is given although the runner makes 1024×576, and the image
    /// count is billed as asked, not as clamped.
    ///
    /// go-livepeer multiplies in int64, so a negative count would make a negative debit (a
    /// credit); the simulator bills 0 instead, and saturates rather than wrapping.
    pub(crate) fn billed_units(&self, pipeline: Pipeline, input: &Input) -> Result<u64, Rejection> {
        let product = |factors: &[i64]| -> u64 {
            let mut total: i128 = 1;
            for f in factors {
                total = total.saturating_mul(i128::from(*f));
            }
            u64::try_from(total.max(0)).unwrap_or(u64::MAX)
        };
        let count = || input.int("num_images_per_prompt").map(|n| n.unwrap_or(1));
        let decoded = || image_size(input).map(|(w, h, _)| [i64::from(w), i64::from(h)]);
        Ok(match pipeline {
            Pipeline::TextToImage => {
                let height = input.int("height")?.unwrap_or(512);
                let width = input.int("width")?.unwrap_or(512);
                product(&[height, width, count()?])
            }
            Pipeline::ImageToImage => {
                let [w, h] = decoded()?;
                product(&[h, w, count()?])
            }
            Pipeline::ImageToVideo => {
                let height = input.int("height")?.unwrap_or(576);
                let width = input.int("width")?.unwrap_or(1024);
                // The 25 frames stable-video-diffusion-img2vid-xt makes.
                product(&[height, width, 25])
            }
            Pipeline::Upscale | Pipeline::SegmentAnything2 | Pipeline::ImageToText => {
                product(&decoded()?)
            }
            Pipeline::AudioToText => match self {
                Job::Transcribe { seconds, .. } => seconds.saturating_mul(1000),
                _ => 0,
            },
            Pipeline::Llm => product(&[input.int("max_tokens")?.unwrap_or(0)]),
            Pipeline::TextToSpeech => {
                let chars = input.text("text").unwrap_or_default().chars().count() as u64;
                chars.saturating_mul(1000)
            }
        })
    }

    /// Produces the outputs (storing media for download) and the answer.
    pub(crate) async fn run(self, ctx: Ctx, busy: Busy, close: bool) -> Result<Output, Rejection> {
        let answer = match self {
            Job::Llm(job) => return Ok(llm::run(job, ctx, busy, close).await),
            Job::Images { pipeline, prompt, seed, width, height, count, nsfw, source } => {
                let (w, h) = media::fit(width, height);
                let mut pngs = Vec::with_capacity(count as usize);
                for i in 0..count {
                    let seed = seed.wrapping_add(i64::from(i));
                    let key = media::digest(&[
                        pipeline.name().as_bytes(),
                        prompt.as_bytes(),
                        &seed.to_be_bytes(),
                        &source,
                    ]);
                    pngs.push((media::png(w, h, &key).map_err(internal)?, seed));
                }
                if ctx.legacy {
                    drop(busy);
                    return Ok(Output::JsonBytes(inline_images(&pngs, nsfw)));
                }
                let images: Vec<Value> = pngs
                    .into_iter()
                    .map(|(png, seed)| {
                        let url = ctx.publish("png", "image/png", png);
                        json!({ "url": url, "seed": seed, "nsfw": nsfw })
                    })
                    .collect();
                json!({ "images": images })
            }
            Job::Video { width, height, fps, seed, source } => {
                let key = media::digest(&[&seed.to_be_bytes(), &source]);
                let mp4 = media::mp4(width, height, fps, &key).await.map_err(internal)?;
                let url = ctx.publish("mp4", "video/mp4", mp4);
                json!({ "images": [{ "url": url, "seed": seed, "nsfw": false }] })
            }
            Job::Speech { text } => {
                let url = ctx.publish("wav", "audio/wav", media::speech_wav(&text));
                json!({ "audio": { "url": url } })
            }
            Job::Transcribe { audio, seconds, timestamps } => {
                let (text, chunks) = media::transcript(&audio, seconds);
                let chunks: Vec<Value> = if timestamps {
                    chunks
                        .into_iter()
                        .map(|c| json!({ "timestamp": [c.start, c.end], "text": c.text }))
                        .collect()
                } else {
                    Vec::new()
                };
                json!({ "text": text, "chunks": chunks })
            }
            Job::Segment { width, height, count, key } => {
                let m = media::masks(width, height, count, &key);
                json!({ "masks": m.masks, "scores": m.scores, "logits": m.logits })
            }
            Job::Caption { text } => json!({ "text": text }),
        };
        drop(busy);
        Ok(Output::Json(answer))
    }
}

/// The images answer a go-livepeer orchestrator gives a gateway that does not ask for
/// downloads (`server/ai_http.go`): each image inline as a `data:image/png;base64,` URL, the
/// bytes `serde_json` writes for `{"images": [{"url", "seed", "nsfw"}]}` (keys sorted).
///
/// Written out here rather than through a `Value`: `serde_json` checks every byte of a string
/// for escapes and the `base64` crate encodes a byte at a time, which for a 64×64 image made
/// the simulator spend about 130,000 instructions more on an inline answer than on the same
/// job answered with a URL (BENCHMARKS.md). That cost sat on the gateway's measured path in
/// `bench` and not on the direct one. A data URL of base64 needs no escaping.
fn inline_images(pngs: &[(Vec<u8>, i64)], nsfw: bool) -> Vec<u8> {
    const PREFIX: &str = "data:image/png;base64,";
    let size: usize = pngs.iter().map(|(png, _)| png.len().div_ceil(3) * 4 + 64).sum();
    let mut out = Vec::with_capacity(size + 16);
    out.extend_from_slice(b"{\"images\":[");
    for (i, (png, seed)) in pngs.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(if nsfw { b"{\"nsfw\":true" } else { b"{\"nsfw\":false" });
        out.extend_from_slice(b",\"seed\":");
        out.extend_from_slice(itoa::Buffer::new().format(*seed).as_bytes());
        out.extend_from_slice(b",\"url\":\"");
        out.extend_from_slice(PREFIX.as_bytes());
        base64_simd::STANDARD.encode_append(png, &mut out);
        out.extend_from_slice(b"\"}");
    }
    out.extend_from_slice(b"]}");
    out
}

fn internal(e: impl std::fmt::Display) -> Rejection {
    Rejection::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

fn images(
    pipeline: Pipeline,
    input: &Input,
    prompt: String,
    (width, height): (u32, u32),
    source: [u8; 32],
) -> Result<Job, Rejection> {
    let count = input.int("num_images_per_prompt")?.unwrap_or(1).clamp(1, MAX_IMAGES) as u32;
    let safety_check = input.flag("safety_check")?.unwrap_or(true);
    // A prompt asking for it is "flagged", so gateways' NSFW handling can be tested.
    let nsfw = safety_check && prompt.to_lowercase().contains("nsfw");
    let seed = seed(input, prompt.as_bytes())?;
    Ok(Job::Images { pipeline, prompt, seed, width, height, count, nsfw, source })
}

/// The requested seed, or one derived from `from` (the runner would pick a random one; a
/// derived one keeps answers deterministic).
fn seed(input: &Input, from: &[u8]) -> Result<i64, Rejection> {
    Ok(match input.int("seed")? {
        Some(seed) => seed,
        None => {
            let key = media::digest(&[from]);
            i64::from(u32::from_be_bytes([key[0], key[1], key[2], key[3]]))
        }
    })
}

fn dimension(input: &Input, name: &str, default: i64) -> Result<u32, Rejection> {
    Ok(input.int(name)?.unwrap_or(default).clamp(1, MAX_DIMENSION) as u32)
}

/// A required field the orchestrator does not check: the runner answers 422 and the
/// orchestrator passes that on as a 500.
fn required(input: &Input, pipeline: Pipeline, name: &str) -> Result<String, Rejection> {
    input.text(name).ok_or_else(|| {
        let detail = json!({ "detail": [{ "type": "missing", "loc": ["body", name], "msg": "Field required" }] });
        Rejection::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{} container returned 422: {detail}", pipeline.name()),
        )
    })
}

/// The uploaded image's size and format. Like go-livepeer's `image.DecodeConfig`, only PNG,
/// JPEG and GIF are understood; anything else (or no image) is a 400.
fn image_size(input: &Input) -> Result<(u32, u32, &'static str), Rejection> {
    let unknown = || Rejection::bad_request("image: unknown format");
    let data = input.file.as_deref().unwrap_or_default();
    let format = match imagesize::image_type(data).map_err(|_| unknown())? {
        ImageType::Png => "png",
        ImageType::Jpeg => "jpeg",
        ImageType::Gif => "gif",
        _ => return Err(unknown()),
    };
    let size = imagesize::blob_size(data).map_err(|_| unknown())?;
    let side = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
    Ok((side(size.width), side(size.height), format))
}

/// Whole seconds from the `metadata` field's `duration` (the Go gateway sends the probed
/// duration there, as a string); the simulator does not probe audio itself.
fn duration(input: &Input) -> Option<u64> {
    let metadata: Value = serde_json::from_str(&input.text("metadata")?).ok()?;
    let seconds = match metadata.get("duration")? {
        Value::String(s) => s.trim().parse::<f64>().ok()?,
        other => other.as_f64()?,
    };
    (seconds.is_finite() && seconds >= 0.0).then_some(seconds as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Images with their seeds, and whether they are flagged.
    type Case = (Vec<(Vec<u8>, i64)>, bool);

    /// What the answer was before it was written out by hand: a `Value` serialised.
    fn through_value(pngs: &[(Vec<u8>, i64)], nsfw: bool) -> Vec<u8> {
        use base64::Engine as _;
        let images: Vec<Value> = pngs
            .iter()
            .map(|(png, seed)| {
                let url = format!(
                    "data:image/png;base64,{}",
                    base64::engine::general_purpose::STANDARD.encode(png)
                );
                json!({ "url": url, "seed": seed, "nsfw": nsfw })
            })
            .collect();
        serde_json::to_vec(&json!({ "images": images })).unwrap()
    }

    #[test]
    fn inline_images_are_the_bytes_serde_json_writes() {
        let png = |n: usize| (0..n).map(|i| (i * 7 + n) as u8).collect::<Vec<u8>>();
        let cases: Vec<Case> = vec![
            (vec![(png(0), 0)], false),
            (vec![(png(1), -1)], true),
            (vec![(png(2), i64::MIN), (png(3), i64::MAX)], false),
            (vec![(media::png(64, 64, &media::digest(&[b"x"])).unwrap(), 42)], false),
            ((0..5).map(|i| (png(1000 + i), i as i64 * 1_000_003)).collect(), true),
        ];
        for (pngs, nsfw) in cases {
            let ours = inline_images(&pngs, nsfw);
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                String::from_utf8(through_value(&pngs, nsfw)).unwrap()
            );
        }
    }
}
