//! Validation of public AI API requests against `ai-gateway.openapi.yaml`, before anything is
//! sent anywhere: required fields, types, ranges, defaults, and each pipeline's pricing units.
//!
//! Errors follow FastAPI's `ValidationError` shape (`loc`, `msg`, `type`), and every offending
//! field is reported at once. Only fields the spec knows are forwarded; unknown ones are ignored,
//! as FastAPI ignores them. JSON `null` counts as "not set". The fields an orchestrator needs to
//! price a request are filled with the spec's defaults (not go-livepeer's 512×512 for
//! text-to-image, GATEWAY.md §10 item 6), so the gateway and the orchestrator compute the same
//! units from the same body. The schemas themselves, one table, and the parsing of one scalar
//! value are in `schema`; this file reads bodies, files and messages around them.

mod fields;
mod messages;
mod schema;

use bytes::Bytes;
use serde_json::Value;

use super::probe::{self, ImageInfo, ProbeError};
use schema::{Fault, Spec, Val, check, fault, json_val, object_schema, schema, text_val};

/// Field errors are part of the gateway's error model; named here too, where they are made.
pub use crate::error::FieldError;
pub use messages::Message;

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

/// A JSON object to forward: the LLM's `messages` first, then its fields in the spec's order,
/// each named once. A list rather than a map: the names are the spec's own `&'static str`s, so
/// building it allocates no key (a map of `String`s showed in profiles).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JsonBody {
    /// The LLM's messages (`messages`), kept as their own type rather than as a `Value`.
    messages: Option<Vec<Message>>,
    fields: Vec<(&'static str, Value)>,
}

impl JsonBody {
    /// The value of field `name`, if set; not the LLM's `messages` (see [`Self::messages`]).
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.fields.iter().find(|(k, _)| *k == name).map(|(_, v)| v)
    }

    /// Sets field `name` to `value`, replacing the value it had.
    pub fn insert(&mut self, name: &'static str, value: Value) {
        match self.fields.iter_mut().find(|(k, _)| *k == name) {
            Some((_, v)) => *v = value,
            None => self.fields.push((name, value)),
        }
    }

    /// The fields other than `messages`, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &Value)> {
        self.fields.iter().map(|(k, v)| (*k, v))
    }

    /// The LLM's messages, if this is an LLM request.
    pub fn messages(&self) -> Option<&[Message]> {
        self.messages.as_deref()
    }
}

impl serde::Serialize for JsonBody {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let mut map = serializer.serialize_map(None)?;
        if let Some(messages) = &self.messages {
            map.serialize_entry("messages", messages)?;
        }
        for (k, v) in &self.fields {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// What is forwarded to the orchestrator, defaults filled in.
#[derive(Debug, Clone)]
pub enum Payload {
    /// A JSON object (text-to-image, llm, text-to-speech).
    Json(JsonBody),
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

/// Operator-tunable bounds applied during validation.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest accepted input image, in pixels (width × height).
    pub max_image_pixels: u64,
    /// Longest accepted free-text field (prompts, TTS text, each LLM message), in characters.
    pub max_prompt_chars: usize,
    /// Largest `height` or `width` a client may ask a model to generate.
    pub max_output_dimension: u32,
    /// Largest `num_images_per_prompt`.
    pub max_images_per_prompt: u32,
    /// Largest LLM `max_tokens` (it is also the request's price in units).
    pub max_llm_tokens: u32,
    /// Longest accepted audio, in whole seconds (audio-to-text's units, its price). Codec
    /// headers state a duration the file need not hold (a 12 kB FLAC can state 99 days, which
    /// the orchestrator's probe would bill too), and every other pipeline's units are capped.
    pub max_audio_seconds: u64,
    /// Most audio probes at once; further uploads wait for a slot, 30 s at most (then 503).
    pub probe_slots: std::sync::Arc<tokio::sync::Semaphore>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_image_pixels: 4096 * 4096,
            max_prompt_chars: 100_000,
            max_output_dimension: 4096,
            max_images_per_prompt: 10,
            max_llm_tokens: 32_768,
            // A day: more than any real recording under the default body limit holds (50 MiB
            // of 6 kbit/s Opus, the lowest rate of the formats clients send, is 19 hours).
            max_audio_seconds: 24 * 3600,
            probe_slots: std::sync::Arc::new(tokio::sync::Semaphore::new(4)),
        }
    }
}

// === impl Pipeline ===

impl Pipeline {
    /// Every pipeline, in capability order.
    pub const ALL: [Pipeline; 9] = [
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

    /// The route and pipeline name without the leading slash, e.g. `text-to-image`.
    pub fn name(self) -> &'static str {
        match self {
            Pipeline::TextToImage => "text-to-image",
            Pipeline::ImageToImage => "image-to-image",
            Pipeline::ImageToVideo => "image-to-video",
            Pipeline::Upscale => "upscale",
            Pipeline::AudioToText => "audio-to-text",
            Pipeline::SegmentAnything2 => "segment-anything-2",
            Pipeline::Llm => "llm",
            Pipeline::ImageToText => "image-to-text",
            Pipeline::TextToSpeech => "text-to-speech",
        }
    }

    /// The pipeline called `name` (exactly as [`Pipeline::name`] spells it, no slash).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    /// The capability id (PROTOCOL.md §3.1); 35 is live video-to-video, not listed here.
    pub fn capability(self) -> u32 {
        match self {
            Pipeline::TextToImage => 27,
            Pipeline::ImageToImage => 28,
            Pipeline::ImageToVideo => 29,
            Pipeline::Upscale => 30,
            Pipeline::AudioToText => 31,
            Pipeline::SegmentAnything2 => 32,
            Pipeline::Llm => 33,
            Pipeline::ImageToText => 34,
            Pipeline::TextToSpeech => 36,
        }
    }

    /// The model go-livepeer substitutes when a client names none (PROTOCOL.md §7.3).
    pub fn default_model(self) -> &'static str {
        match self {
            Pipeline::TextToImage | Pipeline::ImageToImage => "stabilityai/sdxl-turbo",
            Pipeline::ImageToVideo => "stabilityai/stable-video-diffusion-img2vid-xt",
            Pipeline::Upscale => "stabilityai/stable-diffusion-x4-upscaler",
            Pipeline::AudioToText => "openai/whisper-large-v3",
            Pipeline::SegmentAnything2 => "facebook/sam2-hiera-large",
            Pipeline::Llm => "meta-llama/llama-3.1-8B-Instruct",
            Pipeline::ImageToText => "Salesforce/blip-image-captioning-large",
            Pipeline::TextToSpeech => "parler-tts/parler-tts-large-v1",
        }
    }

    /// The file part of a multipart pipeline (`image` or `audio`); `None` for JSON pipelines.
    pub fn file_field(self) -> Option<&'static str> {
        match self {
            Pipeline::TextToImage | Pipeline::Llm | Pipeline::TextToSpeech => None,
            Pipeline::AudioToText => Some("audio"),
            _ => Some("image"),
        }
    }

    /// The JSON Schema of this pipeline's request body (OpenAPI 3.1), made from the table
    /// requests are validated against: its scalar fields with their bounds, the file part of a
    /// multipart pipeline, and the LLM's `messages`.
    pub fn request_schema(self, limits: &Limits) -> Value {
        let specs = schema(self, limits);
        let mut body = object_schema(&specs, self.file_field().is_some());
        if let Some(file) = self.file_field() {
            let part = serde_json::json!({ "type": "string", "contentMediaType": "application/octet-stream" });
            body["properties"][file] = part;
            if let Some(required) = body["required"].as_array_mut() {
                required.push(Value::from(file));
            }
        }
        if self == Pipeline::Llm {
            let chars = limits.max_prompt_chars;
            body["properties"]["messages"] = serde_json::json!({
                "type": "array", "minItems": 1,
                "items": { "type": "object", "required": ["role", "content"], "properties": {
                    "role": { "type": "string" },
                    "content": { "type": "string", "maxLength": chars },
                } },
            });
            if let Some(required) = body["required"].as_array_mut() {
                required.push(Value::from("messages"));
            }
        }
        body
    }

    /// The field naming the model: `model` for the OpenAI-shaped LLM body, else `model_id`.
    fn model_field(self) -> &'static str {
        if self == Pipeline::Llm { "model" } else { "model_id" }
    }
}

// === validation ===

/// Checks `input` against `pipeline`'s schema and returns what to forward and what it costs, or
/// every field error found. Audio is probed only when nothing else is wrong, since demuxing an
/// upload for a request that is rejected anyway is wasted work.
pub async fn validate(
    pipeline: Pipeline,
    input: Input,
    limits: &Limits,
) -> Result<ValidRequest, Vec<FieldError>> {
    match (pipeline.file_field(), input) {
        (None, Input::Json(body)) => from_json(pipeline, &body, limits),
        // Boxed: media probing makes this future large, and JSON requests should not carry it.
        (Some(file), Input::Multipart(parts)) => {
            Box::pin(from_multipart(pipeline, file, parts, limits)).await
        }
        (None, Input::Multipart(_)) => {
            Err(vec![error(&["body"], "Expected an application/json body", "value_error")])
        }
        (Some(file), Input::Json(_)) => Err(vec![error(
            &["body"],
            format!("Expected a multipart/form-data body with a `{file}` file part"),
            "value_error",
        )]),
    }
}

/// Frames go-livepeer bills for image-to-video (SVD-XT always renders 25).
const VIDEO_FRAMES: u64 = 25;
fn error(loc: &[&str], msg: impl Into<String>, kind: &str) -> FieldError {
    FieldError {
        loc: loc.iter().map(|s| (*s).to_owned()).collect(),
        msg: msg.into(),
        kind: kind.to_owned(),
    }
}

fn missing(loc: &[&str]) -> FieldError {
    error(loc, "Field required", "missing")
}

/// The scalar fields of a request, parsed and checked, parallel to their specs.
#[derive(Debug)]
struct Fields {
    specs: Vec<Spec>,
    vals: Vec<Option<Val>>,
}

impl Fields {
    /// Parses every spec with `read`, which returns `None` when the field is not set.
    fn read(
        specs: Vec<Spec>,
        errors: &mut Vec<FieldError>,
        mut read: impl FnMut(&Spec) -> Option<Result<Val, Fault>>,
    ) -> Self {
        let mut vals = Vec::with_capacity(specs.len());
        for spec in &specs {
            let parsed = read(spec).map(|r| r.and_then(|v| check(spec, &v).map(|()| v)));
            vals.push(match parsed {
                None if spec.required => {
                    errors.push(missing(&["body", spec.name]));
                    None
                }
                None => None,
                Some(Ok(v)) => Some(v),
                Some(Err((kind, msg))) => {
                    errors.push(error(&["body", spec.name], msg, kind));
                    None
                }
            });
        }
        Self { specs, vals }
    }

    fn slot(&mut self, name: &str) -> Option<&mut Option<Val>> {
        let i = self.specs.iter().position(|s| s.name == name)?;
        self.vals.get_mut(i)
    }

    fn get(&self, name: &str) -> Option<&Val> {
        let i = self.specs.iter().position(|s| s.name == name)?;
        self.vals.get(i)?.as_ref()
    }

    /// A set, non-negative integer as `u64`; 0 otherwise (validation has ruled that out).
    fn uint(&self, name: &str) -> u64 {
        match self.get(name) {
            Some(Val::Int(i)) => u64::try_from(*i).unwrap_or(0),
            _ => 0,
        }
    }

    fn or_default(&mut self, name: &str, val: Val) {
        if let Some(slot @ None) = self.slot(name) {
            *slot = Some(val);
        }
    }

    fn set(&mut self, name: &str, val: Val) {
        if let Some(slot) = self.slot(name) {
            *slot = Some(val);
        }
    }

    /// `(name, value)` of every set field, in spec order.
    fn into_set(self) -> impl Iterator<Item = (&'static str, Val)> {
        self.specs.into_iter().zip(self.vals).filter_map(|(s, v)| Some((s.name, v?)))
    }
}

/// What the body carried besides scalar fields.
#[derive(Debug)]
enum Extra {
    None,
    Messages(Vec<Message>),
    Image(Upload, ImageInfo),
    /// Whole seconds of audio.
    Audio(Upload, u64),
}

fn from_json(p: Pipeline, body: &[u8], limits: &Limits) -> Result<ValidRequest, Vec<FieldError>> {
    if body.trim_ascii().is_empty() {
        return Err(vec![missing(&["body"])]);
    }
    let specs = schema(p, limits);
    // The LLM's `messages` is read into the slot after the scalar fields'.
    let mut names: Vec<&'static str> = specs.iter().map(|s| s.name).collect();
    if p == Pipeline::Llm {
        names.push("messages");
    }
    let messages_at = (p == Pipeline::Llm).then(|| names.len() - 1);
    let top = fields::read(body, &names, messages_at)
        .map_err(|e| vec![error(&["body"], format!("JSON decode error: {e}"), "json_invalid")])?;
    let fields::Top::Object(mut slots, messages) = top else {
        return Err(vec![error(
            &["body"],
            "Input should be a valid dictionary or object to extract fields from",
            "model_attributes_type",
        )]);
    };
    let mut errors = Vec::new();
    // The messages slot itself stays empty: they were read into `messages`.
    let messages = (p == Pipeline::Llm).then(|| {
        slots.pop();
        messages::check(messages, limits, &mut errors)
    });
    let mut slots = slots.into_iter();
    let fields = Fields::read(specs, &mut errors, |spec| match slots.next().flatten() {
        None | Some(Value::Null) => None,
        Some(v) => Some(json_val(spec.ty, v)),
    });
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(finish(p, fields, messages.map_or(Extra::None, Extra::Messages)))
}

async fn from_multipart(
    p: Pipeline,
    file_field: &'static str,
    parts: Vec<FormPart>,
    limits: &Limits,
) -> Result<ValidRequest, Vec<FieldError>> {
    let mut errors = Vec::new();
    let fields = Fields::read(schema(p, limits), &mut errors, |spec| {
        // The orchestrator's form binding reads the first of repeated values; so do we.
        let part = parts.iter().find(|part| part.name == spec.name)?;
        match std::str::from_utf8(&part.bytes) {
            // FastAPI treats an empty form field as not sent.
            Ok("") => None,
            Ok(s) => Some(text_val(spec.ty, s)),
            Err(_) => Some(Err(fault(
                "string_unicode",
                "Input should be a valid string, unable to parse raw data as a unicode string",
            ))),
        }
    });
    let Some(part) = parts.into_iter().find(|part| part.name == file_field) else {
        errors.insert(0, missing(&["body", file_field]));
        return Err(errors);
    };
    let upload = Upload {
        field: file_field,
        // Go's multipart reader files a part without a file name as a plain value, so the
        // orchestrator would not find the file: always forward one.
        filename: part.filename.filter(|f| !f.is_empty()).unwrap_or_else(|| file_field.to_owned()),
        content_type: part.content_type,
        bytes: part.bytes,
    };
    let extra = if p == Pipeline::AudioToText {
        if !errors.is_empty() {
            return Err(errors);
        }
        audio_seconds(&upload, limits).await.map(|secs| Extra::Audio(upload, secs))
    } else {
        image(&upload, limits).map(|info| Extra::Image(upload, info))
    };
    match extra {
        Ok(extra) if errors.is_empty() => Ok(finish(p, fields, extra)),
        Ok(_) => Err(errors),
        Err(e) => {
            errors.insert(0, e);
            Err(errors)
        }
    }
}

/// The dimensions of an uploaded image, which must be one the orchestrator can decode.
fn image(upload: &Upload, limits: &Limits) -> Result<ImageInfo, FieldError> {
    let loc = ["body", upload.field];
    let info = probe::image_info(&upload.bytes)
        .map_err(|e| error(&loc, format!("Invalid image: {e}"), "value_error"))?;
    if info.pixels() > limits.max_image_pixels {
        let msg = format!(
            "The image is {}x{} = {} pixels; at most {} are accepted",
            info.width,
            info.height,
            info.pixels(),
            limits.max_image_pixels
        );
        return Err(error(&loc, msg, "value_error"));
    }
    Ok(info)
}

/// The `type` of the one "field error" that is the gateway's: its audio probe could not run
/// (its slots closed, its blocking task cancelled: at shutdown). [`rejection`] makes it a 503.
const PROBE_UNAVAILABLE: &str = "probe_unavailable";

/// What the client is told of it.
const PROBE_DOWN: &str = "audio probing is unavailable";

/// The answer to a request that failed validation: the client's 422 naming the fields, or, when
/// the gateway could not check one, its own 503.
pub fn rejection(errors: Vec<FieldError>) -> crate::error::Error {
    use crate::error::{Error, Kind};
    if errors.iter().any(|e| e.kind == PROBE_UNAVAILABLE) {
        return Error::new(Kind::GatewayOverloaded, PROBE_DOWN);
    }
    Error::validation(errors)
}

/// How long an upload waits for an audio probe's slot.
const PROBE_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Whole seconds of uploaded audio, as the orchestrator will bill them.
async fn audio_seconds(upload: &Upload, limits: &Limits) -> Result<u64, FieldError> {
    let fail = |why: &str| {
        let msg = format!("Unable to calculate duration: {why}");
        error(&["body", upload.field], msg, "value_error")
    };
    if upload.bytes.is_empty() {
        return Err(fail("the uploaded file is empty"));
    }
    // Bound concurrent probes: each holds a blocking thread and a core while it demuxes.
    // The permit moves into the blocking task: that task runs on when the request is dropped
    // (a client hanging up), and must keep its slot until it ends.
    let unavailable = || error(&["body", upload.field], PROBE_DOWN, PROBE_UNAVAILABLE);
    // The wait is bounded: queued behind other clients' long probes, an upload would wait
    // past its request's deadline; it is the gateway's 503 then.
    let slot = tokio::time::timeout(PROBE_WAIT, limits.probe_slots.clone().acquire_owned());
    let Ok(Ok(slot)) = slot.await else {
        return Err(unavailable());
    };
    let audio = upload.bytes.clone();
    let probe = move || {
        let secs = probe::audio_duration(audio);
        drop(slot);
        secs
    };
    let secs = match tokio::task::spawn_blocking(probe).await {
        Ok(Ok(secs)) => secs,
        Ok(Err(e @ (ProbeError::Unrecognised | ProbeError::Corrupt(_)))) => {
            tracing::debug!(error = %e, "an upload is not readable audio");
            return Err(fail("the file is not audio that can be read"));
        }
        Ok(Err(e)) => return Err(fail(&e.to_string())),
        Err(e) => {
            // The probe catches its demuxers' panics, so this is a cancelled runtime at most.
            tracing::warn!(error = %e, "the audio probe did not finish");
            return Err(unavailable());
        }
    };
    // Orchestrators bill whole seconds and refuse zero (go-livepeer `CalculateAudioDuration`).
    let whole = secs.trunc();
    if whole < 1.0 {
        return Err(fail(&format!("the audio lasts {secs:.3} s; at least 1 s is required")));
    }
    // Saturates for absurd durations, which the cap refuses.
    let whole = whole as u64;
    if whole > limits.max_audio_seconds {
        let most = limits.max_audio_seconds;
        let msg = format!("the audio lasts {whole} s by its header; at most {most} s are accepted");
        return Err(error(&["body", upload.field], msg, "value_error"));
    }
    Ok(whole)
}

/// Spec defaults the orchestrator needs to compute units (PROTOCOL.md §7.3).
const DEFAULT_HEIGHT: i64 = 576;
const DEFAULT_WIDTH: i64 = 1024;
const DEFAULT_IMAGES: i64 = 1;
const DEFAULT_MAX_TOKENS: i64 = 256;

/// Fills defaults and the model, prices the request and builds the body to forward.
fn finish(p: Pipeline, mut fields: Fields, extra: Extra) -> ValidRequest {
    if matches!(p, Pipeline::TextToImage | Pipeline::ImageToVideo) {
        fields.or_default("height", Val::Int(DEFAULT_HEIGHT));
        fields.or_default("width", Val::Int(DEFAULT_WIDTH));
    }
    if matches!(p, Pipeline::TextToImage | Pipeline::ImageToImage) {
        fields.or_default("num_images_per_prompt", Val::Int(DEFAULT_IMAGES));
    }
    if p == Pipeline::Llm {
        fields.or_default("max_tokens", Val::Int(DEFAULT_MAX_TOKENS));
        fields.or_default("stream", Val::Bool(false));
    }
    // Orchestrators dereference the model id without a check (PROTOCOL.md §7.1): always send one.
    let model = match fields.get(p.model_field()) {
        Some(Val::Str(m)) if !m.trim().is_empty() => m.clone(),
        _ => p.default_model().to_owned(),
    };
    fields.set(p.model_field(), Val::Str(model.clone()));
    let stream = fields.get("stream") == Some(&Val::Bool(true));
    let units = units(p, &fields, &extra);
    let payload = match extra {
        Extra::None => Payload::Json(JsonBody { messages: None, fields: json(fields).collect() }),
        Extra::Messages(messages) => {
            Payload::Json(JsonBody { messages: Some(messages), fields: json(fields).collect() })
        }
        Extra::Image(file, _) => Payload::Multipart { fields: form(fields).collect(), file },
        Extra::Audio(file, secs) => {
            // go-livepeer passes the duration it billed for; the value is a string of seconds.
            let metadata = serde_json::json!({ "duration": secs.to_string() }).to_string();
            let fields = form(fields).chain(std::iter::once(("metadata".to_owned(), metadata)));
            Payload::Multipart { fields: fields.collect(), file }
        }
    };
    ValidRequest { pipeline: p, model, payload, units, stream }
}

/// The set fields as JSON, moved out of `fields`.
fn json(fields: Fields) -> impl Iterator<Item = (&'static str, Value)> {
    fields.into_set().map(|(k, v)| (k, v.into_json()))
}

/// The set fields as go-livepeer's multipart writer formats them, moved out of `fields`.
fn form(fields: Fields) -> impl Iterator<Item = (String, String)> {
    fields.into_set().map(|(k, v)| (k.to_owned(), v.into_form()))
}

/// The pricing units of PROTOCOL.md §7.3, saturating instead of overflowing.
fn units(p: Pipeline, f: &Fields, extra: &Extra) -> u64 {
    let product = |xs: &[u64]| xs.iter().fold(1u64, |acc, x| acc.saturating_mul(*x));
    let (pixels, secs) = match extra {
        Extra::Image(_, info) => (info.pixels(), 0),
        Extra::Audio(_, secs) => (0, *secs),
        Extra::None | Extra::Messages(_) => (0, 0),
    };
    match p {
        Pipeline::TextToImage => {
            product(&[f.uint("height"), f.uint("width"), f.uint("num_images_per_prompt")])
        }
        Pipeline::ImageToImage => product(&[pixels, f.uint("num_images_per_prompt")]),
        Pipeline::ImageToVideo => product(&[f.uint("height"), f.uint("width"), VIDEO_FRAMES]),
        Pipeline::Upscale | Pipeline::SegmentAnything2 | Pipeline::ImageToText => pixels,
        Pipeline::AudioToText => secs.saturating_mul(1000),
        Pipeline::Llm => f.uint("max_tokens"),
        // 1000 per character (Unicode scalar value): what the orchestrator debits
        // (PROTOCOL.md §13 item 10). go-livepeer pays per byte instead and so underpays, which
        // drains the balance until the orchestrator refuses service; we pay what is charged.
        Pipeline::TextToSpeech => match f.get("text") {
            Some(Val::Str(t)) => {
                u64::try_from(t.chars().count()).unwrap_or(u64::MAX).saturating_mul(1000)
            }
            _ => 0,
        },
    }
}

/// The values of the top-level fields `names` of the JSON object `body`, read as validation
/// reads them (under its budget of values, other fields skipped unread); `None` for a body
/// that is not a JSON object or that the budget refuses.
pub(in crate::ai) fn known_fields(
    body: &[u8],
    names: &[&'static str],
) -> Option<Vec<Option<Value>>> {
    match fields::read(body, names, None) {
        Ok(fields::Top::Object(slots, _)) => Some(slots),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
