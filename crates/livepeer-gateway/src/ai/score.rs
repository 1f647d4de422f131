//! go-livepeer's latency score of an answered batch AI request (`ai_request_latency_score`,
//! `server/ai_process.go`'s `Calculate…LatencyScore`): the seconds the orchestrator took per
//! unit of work, so that jobs of different sizes compare. A unit is a pixel the job is billed
//! for and an inference step for the diffusion pipelines, a pixel of the input for SAM2 and
//! image-to-text, a second of audio, a character of text to speak, a token of an LLM's
//! answer (prompt and completion, as its `usage` counts them).
//!
//! The time is the attempt's, from its payment until its answer was read and its results
//! fetched (a streamed answer's, until its last event); go-livepeer times the call alone and
//! downloads the results after. A metric, so a float; nothing is paid by it.

use std::time::Duration;

use super::validate::{Payload, Pipeline, ValidRequest};

/// The score of `req` answered in `took`; `tokens` is what an LLM answer's `usage` reported.
/// `None` when the request did no unit of work by its own count (an LLM answer that reports
/// no tokens), as go-livepeer scores those 0 and so would make the gauge say "instant".
pub(crate) fn latency_score(
    req: &ValidRequest,
    took: Duration,
    tokens: Option<u64>,
) -> Option<f64> {
    let (units, steps) = match req.pipeline {
        Pipeline::TextToImage => (req.units, diffusion_steps(req, 50.0, true)),
        Pipeline::ImageToImage => (req.units, diffusion_steps(req, 100.0, true)),
        Pipeline::ImageToVideo => (req.units, diffusion_steps(req, 25.0, false)),
        Pipeline::Upscale => (req.units, diffusion_steps(req, 75.0, false)),
        Pipeline::SegmentAnything2 | Pipeline::ImageToText => (req.units, 1.0),
        // Units are thousandths of a second and of a character (PROTOCOL.md §7.3); the score
        // is per whole one, as go-livepeer's. It counts text in bytes; characters are the
        // same for the ASCII most prompts are.
        Pipeline::AudioToText | Pipeline::TextToSpeech => (req.units / 1000, 1.0),
        Pipeline::Llm => return per_token(took, tokens?),
    };
    (units > 0).then(|| took.as_secs_f64() / units as f64 / steps)
}

/// An LLM answer's score: `took` per token of the `tokens` its `usage` reported.
pub(crate) fn per_token(took: Duration, tokens: u64) -> Option<f64> {
    (tokens > 0).then(|| took.as_secs_f64() / tokens as f64)
}

/// Inference steps of a diffusion request: its `num_inference_steps` (at least 1), else the
/// pipeline's `default`. With `lightning`, an SDXL-Lightning model runs the steps its id
/// names (`…_4step`, else 8) whatever the request says, as go-livepeer counts them.
fn diffusion_steps(req: &ValidRequest, default: f64, lightning: bool) -> f64 {
    if lightning && req.model.starts_with("ByteDance/SDXL-Lightning") {
        return steps_in_model_id(&req.model).unwrap_or(8.0).max(1.0);
    }
    let asked = match &req.payload {
        Payload::Json(body) => body.get("num_inference_steps").and_then(serde_json::Value::as_f64),
        Payload::Multipart { fields, .. } => fields
            .iter()
            .find(|(name, _)| name == "num_inference_steps")
            .and_then(|(_, value)| value.parse::<f64>().ok()),
    };
    asked.map_or(default, |steps| steps.max(1.0))
}

/// The steps a model id names, as go-livepeer's `ParseStepsFromModelID` finds them: the first
/// `_<digits>step` in it, none when the digits overflow Go's `int`.
fn steps_in_model_id(model: &str) -> Option<f64> {
    let bytes = model.as_bytes();
    bytes.iter().enumerate().filter(|(_, b)| **b == b'_').find_map(|(at, _)| {
        let digits = bytes[at + 1..].iter().take_while(|b| b.is_ascii_digit()).count();
        let end = at + 1 + digits;
        (digits > 0 && bytes[end..].starts_with(b"step"))
            .then(|| model[at + 1..end].parse::<i64>().ok().map(|n| n as f64))?
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ai::validate::{Input, Limits, validate};

    async fn valid(pipeline: Pipeline, body: serde_json::Value) -> ValidRequest {
        let input = Input::Json(body.to_string().into());
        validate(pipeline, input, &Limits::default()).await.unwrap()
    }

    #[tokio::test]
    async fn text_to_image_is_seconds_per_pixel_and_step() {
        let took = Duration::from_secs(2);
        let body = serde_json::json!({ "prompt": "x", "width": 96, "height": 48 });
        let req = valid(Pipeline::TextToImage, body).await;
        // 4,608 pixels, one image, go-livepeer's default of 50 steps.
        assert_eq!(latency_score(&req, took, None), Some(2.0 / 4608.0 / 50.0));
        let body = serde_json::json!({
            "prompt": "x", "width": 96, "height": 48, "num_images_per_prompt": 2,
            "num_inference_steps": 4,
        });
        let req = valid(Pipeline::TextToImage, body).await;
        assert_eq!(latency_score(&req, took, None), Some(2.0 / 9216.0 / 4.0));
        // Lightning models run the steps their id names, whatever the request asks.
        let body = serde_json::json!({
            "prompt": "x", "width": 96, "height": 48, "num_inference_steps": 30,
            "model_id": "ByteDance/SDXL-Lightning_4step",
        });
        let req = valid(Pipeline::TextToImage, body).await;
        assert_eq!(latency_score(&req, took, None), Some(2.0 / 4608.0 / 4.0));
    }

    #[tokio::test]
    async fn llm_is_seconds_per_token_used_and_none_without_tokens() {
        let body = serde_json::json!({ "messages": [{ "role": "user", "content": "hi" }] });
        let req = valid(Pipeline::Llm, body).await;
        let took = Duration::from_millis(500);
        assert_eq!(latency_score(&req, took, Some(20)), Some(0.5 / 20.0));
        assert_eq!(latency_score(&req, took, None), None);
        assert_eq!(latency_score(&req, took, Some(0)), None);
    }

    #[tokio::test]
    async fn text_to_speech_is_seconds_per_character() {
        let body = serde_json::json!({ "text": "héllo" });
        let req = valid(Pipeline::TextToSpeech, body).await;
        assert_eq!(latency_score(&req, Duration::from_secs(1), None), Some(1.0 / 5.0));
    }

    #[test]
    fn steps_are_read_from_a_model_id_as_go_livepeer_reads_them() {
        let cases = [
            ("ByteDance/SDXL-Lightning_4step", Some(4.0)),
            ("ByteDance/SDXL-Lightning_2step_unet", Some(2.0)),
            ("ByteDance/SDXL-Lightning", None),
            ("a_b_12step_3step", Some(12.0)),
            ("a_step_8steps", Some(8.0)),
            ("a__5step", Some(5.0)),
            ("a_5ste", None),
            ("_99999999999step", Some(99_999_999_999.0)),
            ("_99999999999999999999step", None),
        ];
        for (model, steps) in cases {
            assert_eq!(steps_in_model_id(model), steps, "{model}");
        }
    }
}
