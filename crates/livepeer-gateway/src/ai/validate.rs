//! Validation of public AI API requests against `ai-gateway.openapi.yaml`, before anything is
//! sent anywhere: required fields, types, ranges, defaults, and each pipeline's pricing units.
//!
//! (Interface fixed; implementation in progress.)

use bytes::Bytes;
use serde_json::{Map, Value};

/// The nine batch AI pipelines of the public API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pipeline {
    /// `/text-to-image` (JSON).
    TextToImage,
    /// `/image-to-image` (multipart, file `image`).
    ImageToImage,
    /// `/image-to-video` (multipart, file `image`).
    ImageToVideo,
    /// `/upscale` (multipart, file `image`).
    Upscale,
    /// `/audio-to-text` (multipart, file `audio`).
    AudioToText,
    /// `/segment-anything-2` (multipart, file `image`).
    SegmentAnything2,
    /// `/llm` (JSON).
    Llm,
    /// `/image-to-text` (multipart, file `image`).
    ImageToText,
    /// `/text-to-speech` (JSON).
    TextToSpeech,
}

/// An uploaded file.
#[derive(Debug, Clone)]
pub struct Upload {
    /// Form field name: `image` or `audio`.
    pub field: &'static str,
    /// The client's file name.
    pub filename: String,
    /// The client's content type, if given.
    pub content_type: Option<String>,
    /// The bytes.
    pub bytes: Bytes,
}

/// What is forwarded to the orchestrator, defaults filled in.
#[derive(Debug, Clone)]
pub enum Payload {
    /// A JSON object (text-to-image, llm, text-to-speech).
    Json(Map<String, Value>),
    /// Multipart text fields (name, value as go-livepeer formats it) and the one file.
    Multipart {
        /// Scalar fields in a stable order.
        fields: Vec<(String, String)>,
        /// The file part.
        file: Upload,
    },
}

/// A validated request.
#[derive(Debug, Clone)]
pub struct ValidRequest {
    /// Which pipeline.
    pub pipeline: Pipeline,
    /// The model id (the client's, or the pipeline's default).
    pub model: String,
    /// The body to send.
    pub payload: Payload,
    /// Pricing units of this request (PROTOCOL.md §7.3).
    pub units: u64,
    /// LLM only: whether the client asked for server-sent events.
    pub stream: bool,
}

/// One offending field, as the spec's `ValidationError`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FieldError {
    /// Location, e.g. `["body", "prompt"]`.
    pub loc: Vec<String>,
    /// Human message.
    pub msg: String,
    /// Error type, e.g. `missing`, `int_parsing`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// One part of a multipart body as received.
#[derive(Debug, Clone)]
pub struct FormPart {
    /// Field name.
    pub name: String,
    /// File name, for file parts.
    pub filename: Option<String>,
    /// Content type of the part, if given.
    pub content_type: Option<String>,
    /// The bytes.
    pub bytes: Bytes,
}

/// A request body as received.
#[derive(Debug, Clone)]
pub enum Input {
    /// `application/json`.
    Json(Bytes),
    /// `multipart/form-data`.
    Multipart(Vec<FormPart>),
}
