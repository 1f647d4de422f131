//! The parsers of untrusted input and how each case feeds them: AI JSON and multipart
//! validation, the multipart body reader and encoder, orchestrator answers (HTTP/1.1, JSON
//! and protobuf), remote-signer bodies, trickle paths and headers, the MPEG-TS frame counter
//! and the input codec probe (MPEG-TS and MP4); the audio duration probe is in `audio.rs`.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use livepeer_gateway::ai::AiConfig;
use livepeer_gateway::ai::call::{AiClient, ResultSink, ResultUrls};
use livepeer_gateway::ai::results::ResultStore;
use livepeer_gateway::ai::validate::{
    self, FormPart, Input, JsonBody, Limits, Payload, Pipeline, Upload, ValidRequest,
};
use livepeer_gateway::byoc::request::{JobRequest, SigCache};
use livepeer_gateway::live::ts::FrameCounter;
use livepeer_gateway::orchestrator::byoc::JobToken;
use livepeer_gateway::orchestrator::http::OrchHttpVersion;
use livepeer_gateway::payment::signer::{JobSignRequest, PaymentRequest, SignerState};
use livepeer_gateway::transcode::request::parse_settings;
use livepeer_gateway::transcode::{Format, probe_input};
use livepeer_pm::LocalSigner;
use livepeer_proto::Message;
use rand::Rng;
use rand::rngs::SmallRng;
use serde_json::{Value, json};

use super::engine::Target;
use super::{mutate, proto};

/// Every target.
pub const TARGETS: &[Target] = &[
    Target { name: "ai-json", run: ai_json },
    Target { name: "ai-multipart-validate", run: ai_multipart },
    Target { name: "byoc-job-header", run: byoc_job_header },
    Target { name: "byoc-job-token", run: byoc_job_token },
    Target { name: "http-body-reader", run: body_reader },
    Target { name: "multipart-encode", run: multipart_encode },
    Target { name: "orch-answer-json", run: orch_answer },
    Target { name: "orch-http1-answer", run: orch_http1_answer },
    Target { name: "orch-protobuf", run: proto::orch_info },
    Target { name: "signer-body", run: signer_body },
    Target { name: "signer-byoc-job", run: signer_byoc_job },
    Target { name: "transcode-config", run: transcode_config },
    Target { name: "trickle-http", run: super::trickle::request },
    Target { name: "ts-frame-counter", run: ts_frames },
    Target { name: "input-codec-probe", run: codec_probe },
    Target { name: "audio-duration-probe", run: super::audio::duration_probe },
];

/// What the cases share: a runtime with paused time (deadlines pass at once instead of
/// waiting), the clients and seeds.
pub struct Env {
    /// Current-thread runtime, clock paused.
    pub rt: tokio::runtime::Runtime,
    limits: Limits,
    ai: AiClient,
    /// The default batch-AI settings (result caps, allowed hosts).
    ai_config: AiConfig,
    signer: SignerState,
    /// Valid `/generate-live-payment` bodies: a first one and one carrying the signer's state.
    signer_seeds: Vec<Value>,
    /// The key BYOC job headers are signed with, and its signature cache.
    byoc_key: LocalSigner,
    byoc_sigs: SigCache,
    /// Cases whose input the parser accepted (so the run shows how deep cases get).
    accepted: std::cell::Cell<u64>,
}

impl Env {
    /// Builds the shared state.
    pub fn new() -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        let key = Arc::new(LocalSigner::from_bytes(&[9; 32]).unwrap());
        let pool = rt.block_on(async { super::proto::empty_pool() });
        let signer = SignerState::new(key, "k".to_owned().into(), pool).unwrap();
        let first = json!({
            "orchestrator": STANDARD.encode(proto::payable_info().encode_to_vec()),
            "ManifestID": "m1",
            "type": "lv2v",
            "inPixels": 1000,
            "capabilities": STANDARD.encode(proto::capabilities().encode_to_vec()),
        });
        let mut seeds = vec![first.clone()];
        let req = PaymentRequest::parse(first.to_string().as_bytes()).unwrap();
        if let Ok(answer) = signer.pay(&req) {
            let mut second = first;
            second["state"] = json!({"State": answer.state, "Sig": answer.sig});
            seeds.push(second);
        }
        let ai = AiClient::new(
            None,
            Duration::from_millis(1),
            Duration::from_millis(1),
            OrchHttpVersion::default(),
            1,
        )
        .unwrap();
        let accepted = std::cell::Cell::new(0);
        let ai_config = livepeer_gateway::Config::load(Default::default()).unwrap().ai;
        let byoc_key = LocalSigner::from_bytes(&[7; 32]).unwrap();
        let byoc_sigs = SigCache::default();
        let limits = Limits::default();
        let signer_seeds = seeds;
        Self { rt, limits, ai, ai_config, signer, signer_seeds, byoc_key, byoc_sigs, accepted }
    }

    /// Counts one case whose input was accepted when `ok`.
    pub fn accepted_if(&self, ok: bool) {
        self.accepted.set(self.accepted.get() + u64::from(ok));
    }

    /// The accepted cases counted since the last call.
    pub fn take_accepted(&self) -> u64 {
        self.accepted.replace(0)
    }
}

/// One of `items`, at random.
pub fn pick<'a, T>(rng: &mut SmallRng, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

/// A JSON seed mutated as a tree (most cases) or as bytes.
fn mutated_json(rng: &mut SmallRng, seed: &Value) -> Vec<u8> {
    if rng.random_range(0..3) == 0 {
        mutate::bytes(rng, seed.to_string().as_bytes(), &[])
    } else {
        mutate::json(rng, seed).to_string().into_bytes()
    }
}

// === AI requests ===

fn ai_json(rng: &mut SmallRng, env: &Env) {
    let seeds = [
        (
            Pipeline::TextToImage,
            json!({"prompt": "a cat", "model_id": "m", "width": 512, "height": 512,
            "num_images_per_prompt": 2, "seed": 7, "guidance_scale": 1.5, "safety_check": true}),
        ),
        (
            Pipeline::Llm,
            json!({"model": "m", "max_tokens": 16, "stream": true, "temperature": 0.7,
            "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]}),
        ),
        (Pipeline::TextToSpeech, json!({"model_id": "m", "text": "hello", "description": "calm"})),
    ];
    let (pipeline, seed) = pick(rng, &seeds);
    let mut body = mutated_json(rng, seed);
    if *pipeline == Pipeline::Llm && rng.random() {
        body = livepeer_gateway::ai::openai::llm_body(Bytes::from(body)).to_vec();
    }
    let input = Input::Json(Bytes::from(body));
    env.accepted_if(env.rt.block_on(validate::validate(*pipeline, input, &env.limits)).is_ok());
}

/// Image files whose headers the validator reads: a PNG, a GIF and a JPEG.
pub fn image_seeds() -> Vec<Vec<u8>> {
    let mut png = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut png, 8, 6);
        enc.set_color(png::ColorType::Rgb);
        let mut w = enc.write_header().unwrap();
        w.write_image_data(&[7u8; 8 * 6 * 3]).unwrap();
    }
    let gif = b"GIF89a\x08\x00\x06\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00,\x00\x00\x00\x00\x08\x00\x06\x00\x00\x02\x02D\x01\x00;".to_vec();
    let jpeg = [
        &[0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10][..],
        b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00",
        &[0xFF, 0xC0, 0x00, 0x11, 0x08, 0x00, 0x06, 0x00, 0x08, 0x03, 0x01, 0x22, 0x00],
        &[0x02, 0x11, 0x01, 0x03, 0x11, 0x01, 0xFF, 0xD9],
    ]
    .concat();
    vec![png, gif, jpeg]
}

fn ai_multipart(rng: &mut SmallRng, env: &Env) {
    // Audio-to-text is left out: a valid form would start an external probe per case.
    let pipelines = [
        Pipeline::ImageToImage,
        Pipeline::ImageToVideo,
        Pipeline::Upscale,
        Pipeline::SegmentAnything2,
        Pipeline::ImageToText,
    ];
    let pipeline = *pick(rng, &pipelines);
    let images = image_seeds();
    let file = pick(rng, &images).clone();
    let file = if rng.random() { mutate::bytes(rng, &file, &images) } else { file };
    let text = |n: &str, v: &str| FormPart {
        name: n.into(),
        filename: None,
        content_type: None,
        bytes: Bytes::from(v.to_owned()),
    };
    let mut parts = vec![
        FormPart {
            name: "image".into(),
            filename: Some("a.png".into()),
            content_type: Some("image/png".into()),
            bytes: Bytes::from(file),
        },
        text("prompt", "a dog"),
        text("model_id", "m"),
        text("strength", "0.5"),
        text("seed", "42"),
        text("height", "576"),
        text("multimask_output", "true"),
        text("point_coords", "[[1,2]]"),
    ];
    for _ in 0..rng.random_range(0..4) {
        mutate_part(rng, &mut parts);
    }
    let valid = env.rt.block_on(validate::validate(pipeline, Input::Multipart(parts), &env.limits));
    env.accepted_if(valid.is_ok());
}

fn mutate_part(rng: &mut SmallRng, parts: &mut Vec<FormPart>) {
    if parts.is_empty() {
        return;
    }
    let i = rng.random_range(0..parts.len());
    match rng.random_range(0..6) {
        0 => drop(parts.remove(i)),
        1 => parts.push(parts[i].clone()),
        2 => parts[i].name = mutate::text(rng, &parts[i].name),
        3 => parts[i].filename = Some(mutate::text(rng, "f.png")),
        4 => parts[i].content_type = Some(mutate::text(rng, "image/png")),
        _ => {
            let v = String::from_utf8_lossy(&parts[i].bytes).into_owned();
            parts[i].bytes = Bytes::from(mutate::text(rng, &v));
        }
    }
}

// === multipart bodies ===

fn multipart_body(rng: &mut SmallRng) -> (String, Vec<u8>) {
    let images = image_seeds();
    let file = Upload {
        field: if rng.random() { "image" } else { "audio" },
        filename: mutate::text(rng, "photo \"1\".png"),
        content_type: rng.random::<bool>().then(|| mutate::text(rng, "image/png")),
        bytes: Bytes::from(pick(rng, &images).clone()),
    };
    let fields: Vec<(String, String)> = (0..rng.random_range(0..4))
        .map(|_| (mutate::text(rng, "prompt"), mutate::text(rng, "a \r\n--value")))
        .collect();
    livepeer_gateway::ai::encode_multipart(&fields, &file)
}

fn body_reader(rng: &mut SmallRng, env: &Env) {
    let (content_type, body) = multipart_body(rng);
    let (content_type, body) = match rng.random_range(0..4) {
        0 => (mutate::text(rng, &content_type), body),
        1 => ("application/json".to_owned(), mutate::bytes(rng, br#"{"prompt":"x"}"#, &[])),
        _ => (content_type, mutate::bytes(rng, &body, &[])),
    };
    let length = match rng.random_range(0..4) {
        0 => Some(mutate::text(rng, &body.len().to_string())),
        1 => Some(body.len().to_string()),
        _ => None,
    };
    let limit = *pick(rng, &[16usize, 300, 4096, 1 << 20]);
    let read = livepeer_gateway::http::read_input_for_fuzz(
        &content_type,
        length.as_deref(),
        Bytes::from(body),
        limit,
    );
    env.accepted_if(matches!(env.rt.block_on(read), Some(Ok(_))));
}

fn multipart_encode(rng: &mut SmallRng, env: &Env) {
    let (content_type, body) = multipart_body(rng);
    // The gateway's own reader must take what its own encoder writes.
    let read = livepeer_gateway::http::read_input_for_fuzz(
        &content_type,
        None,
        Bytes::from(body),
        1 << 20,
    );
    let read = matches!(env.rt.block_on(read), Some(Ok(_)));
    assert!(read, "the gateway's reader refuses what its encoder wrote");
    env.accepted_if(read);
}

// === orchestrator answers ===

/// An orchestrator's HTTP/1.1 answer, head and body, as the gateway's own connections read it
/// (`orchestrator::h1`): every framing, interim answers, trailers.
fn orch_http1_answer(rng: &mut SmallRng, env: &Env) {
    const SEEDS: &[&[u8]] = &[
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{\"images\":[]}",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\ndata:\r\nA\r\n {\"a\": 1}\n\n\r\n0\r\nT: v\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbusy",
        b"HTTP/1.0 200 OK\r\nContent-Type: image/png\r\n\r\n\x89PNG\r\n\x1a\n",
        b"HTTP/1.1 204 No Content\r\nContent-Length: 0, 0\r\n\r\n",
    ];
    let others: Vec<Vec<u8>> = SEEDS.iter().map(|s| s.to_vec()).collect();
    let seed: &[u8] = pick::<&[u8]>(rng, SEEDS);
    let answer = mutate::bytes(rng, seed, &others);
    let read = livepeer_gateway::orchestrator::h1::read_answer_for_fuzz(&answer);
    env.accepted_if(read.is_some());
}

fn orch_answer(rng: &mut SmallRng, env: &Env) {
    let png = STANDARD.encode(&image_seeds()[0]);
    let long = STANDARD.encode((0..3000u32).map(|i| (i * 7 % 251) as u8).collect::<Vec<u8>>());
    let seeds = [
        (
            Pipeline::TextToImage,
            json!({"images": [{"url": format!("data:image/png;base64,{png}"),
            "seed": 1, "nsfw": false}, {"url": "data:image/png;base64,AAAA", "seed": 2, "nsfw": true}]}),
        ),
        (
            Pipeline::ImageToVideo,
            json!({"images": [{"url": "data:video/mp4;base64,AAAAIGZ0eXA=", "seed": 1}]}),
        ),
        // Long enough to be lifted out before parsing (`ai::lift`), twice.
        (
            Pipeline::TextToImage,
            json!({"images": [{"url": format!("data:image/png;base64,{long}"), "seed": 1},
            {"url": format!("data:image/jpeg;base64,{long}"), "nsfw": false}]}),
        ),
        (Pipeline::TextToSpeech, json!({"audio": {"url": "data:audio/wav;base64,UklGRg=="}})),
        (
            Pipeline::Llm,
            json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"},
            "finish_reason": "stop"}], "tokens_used": 3, "id": "x", "model": "m", "created": 1}),
        ),
        (
            Pipeline::AudioToText,
            json!({"text": "hi", "chunks": [{"text": "hi", "timestamp": [0.0, 1.0]}]}),
        ),
        (Pipeline::SegmentAnything2, json!({"masks": "[[1]]", "scores": "[0.5]", "logits": "[]"})),
    ];
    let (pipeline, seed) = pick(rng, &seeds);
    let body = mutated_json(rng, seed);
    // Never the network: only answers whose media URLs are all `data:` (or not strings).
    if let Ok(v) = serde_json::from_slice::<Value>(&body)
        && !media_urls(&v).any(|u| !u.starts_with("data:"))
    {
        let store = ResultStore::new(1 << 20, Duration::from_secs(60));
        let urls = if rng.random() {
            ResultUrls::Data
        } else {
            ResultUrls::Gateway("http://127.0.0.1:1".into())
        };
        let mut fields = JsonBody::default();
        fields.insert("num_images_per_prompt", json!(rng.random_range(1..4)));
        let req = ValidRequest {
            pipeline: *pipeline,
            model: "m".into(),
            payload: Payload::Json(fields),
            units: 1,
            stream: false,
        };
        let sink = ResultSink { store: &store, urls: &urls, config: &env.ai_config, counted: None };
        let orch = "http://127.0.0.1:1";
        let answer = env.rt.block_on(env.ai.answer_for_fuzz((orch, true), &req, &body, sink));
        // Lifting inline results out first changes nothing: the same answer (with data URLs
        // back, whose text is the file's), or a refusal both ways.
        if matches!(urls, ResultUrls::Data) {
            let whole = env.rt.block_on(env.ai.answer_for_fuzz((orch, false), &req, &body, sink));
            match (&answer, &whole) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{}", String::from_utf8_lossy(&body)),
                (a, b) => assert_eq!(a.is_ok(), b.is_ok(), "{}", String::from_utf8_lossy(&body)),
            }
        }
        env.accepted_if(answer.is_ok());
    }
    // Error answers: status and text decide the verdict.
    let status = *pick(rng, &[200u16, 302, 400, 402, 403, 404, 500, 503, 0, 999]);
    let text = String::from_utf8_lossy(&body);
    let _ = livepeer_gateway::orchestrator::verdict::Failure::from_answer(status, &text);
}

/// Every string the media rewriter could fetch: `images[].url` and `audio.url`.
fn media_urls(v: &Value) -> impl Iterator<Item = &str> {
    let images = v.get("images").and_then(Value::as_array).into_iter().flatten();
    let image_urls = images.filter_map(|m| m.get("url")).filter_map(Value::as_str);
    image_urls.chain(v.pointer("/audio/url").and_then(Value::as_str))
}

// === BYOC ===

/// The client's `Livepeer` header of a BYOC job: base64 of mutated job requests, or raw
/// mutated bytes; what parses is also signed (as every attempt signs it).
fn byoc_job_header(rng: &mut SmallRng, env: &Env) {
    let seeds = [
        json!({"request": "{\"text\": \"hi\"}", "parameters": "{}", "capability": "text-reversal",
            "timeout_seconds": 30}),
        json!({"id": "j", "request": "{}", "capability": "c", "timeout_seconds": 1,
            "parameters": "{\"orchestrators\": {\"include\": [\"https://o:8935\"], \"exclude\": []}, \"enable_video_ingress\": true}"}),
    ];
    let seed = pick(rng, &seeds).clone();
    let json = mutated_json(rng, &seed);
    let header =
        if rng.random_range(0..4) == 0 { json } else { STANDARD.encode(&json).into_bytes() };
    if let Ok(job) = JobRequest::parse(Some(&header), "fuzz", 3600) {
        let signed = job.signed_header_cached(&env.byoc_key, &env.byoc_sigs);
        env.accepted_if(signed.is_ok());
    }
}

/// An orchestrator's `/process/token` answer (Go JSON: snake case, base64 bytes).
fn byoc_job_token(rng: &mut SmallRng, env: &Env) {
    let seed = json!({
        "sender_address": {"addr": "0x0000000000000000000000000000000000000001", "sig": "0x00"},
        "ticket_params": {"recipient": "AAAAAAAAAAAAAAAAAAAAAAAAAAE=", "face_value": "AQ==",
            "win_prob": "AQ==", "recipient_rand_hash": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            "seed": "AQ==", "expiration_block": "AQ==",
            "expiration_params": {"creation_round": 1, "creation_round_block_hash": "AA=="}},
        "balance": 1000, "price": {"pricePerUnit": 5, "pixelsPerUnit": 1},
        "service_addr": "https://o:8935", "available_capacity": 3, "LastNonce": 0
    });
    let body = mutated_json(rng, &seed);
    env.accepted_if(JobToken::from_json(&body).is_ok());
}

// === transcoding ===

/// `Livepeer-Transcode-Configuration` values (presets, JSON renditions, the multiplier).
fn transcode_config(rng: &mut SmallRng, env: &Env) {
    let seed = json!({
        "manifestID": "m", "presets": ["P240p30fps16x9", "P144p30fps16x9"],
        "profiles": [{"name": "low", "width": 256, "height": 144, "bitrate": 200000, "fps": 30,
            "fpsDen": 1, "profile": "H264High", "gop": "2.5", "encoder": "H.264",
            "colorDepth": 8, "chromaFormat": 0}],
        "timeoutMultiplier": 2, "forceSessionReinit": false
    });
    let body = mutated_json(rng, &seed);
    env.accepted_if(parse_settings(&String::from_utf8_lossy(&body)).is_ok());
}

// === remote signer ===

/// `/sign-byoc-job` bodies, from the one the Python SDK sends.
fn signer_byoc_job(rng: &mut SmallRng, env: &Env) {
    let seeds = [
        json!({"id": "j", "capability": "text-reversal", "request": "{\"text\": \"hi\"}",
            "parameters": "", "timeout_seconds": 300}),
        json!({"capability": "c", "request": "{}", "parameters": "{\"orchestrators\": {}}"}),
    ];
    let seed = pick(rng, &seeds).clone();
    let body = mutated_json(rng, &seed);
    if let Ok(req) = JobSignRequest::parse(&body) {
        env.accepted_if(env.signer.sign_job(&req).is_ok());
    }
}

fn signer_body(rng: &mut SmallRng, env: &Env) {
    let seed = pick(rng, &env.signer_seeds).clone();
    let body = match rng.random_range(0..4) {
        // The embedded protobuf, mutated as bytes or rebuilt at random.
        0 => {
            let mut v = seed;
            let info = STANDARD.decode(v["orchestrator"].as_str().unwrap_or_default()).unwrap();
            let bytes = if rng.random() {
                mutate::bytes(rng, &info, &[])
            } else {
                proto::random_info(rng).encode_to_vec()
            };
            v["orchestrator"] = Value::String(STANDARD.encode(bytes));
            v.to_string().into_bytes()
        }
        // The echoed state, mutated inside its base64.
        1 if seed.get("state").is_some() => {
            let mut v = seed;
            let state = STANDARD.decode(v["state"]["State"].as_str().unwrap_or_default()).unwrap();
            let state = mutated_json(rng, &serde_json::from_slice(&state).unwrap_or(Value::Null));
            v["state"]["State"] = Value::String(STANDARD.encode(state));
            v.to_string().into_bytes()
        }
        _ => mutated_json(rng, &seed),
    };
    if let Ok(req) = PaymentRequest::parse(&body) {
        env.accepted_if(env.signer.pay(&req).is_ok());
    }
    let header = mutate::text(rng, "Bearer k");
    let _ = env.signer.authorize(Some(&header));
    let query = mutate::text(rng, "caps=llm/m&caps=text-to-image%2Fx");
    let _ = env.signer.discover(Some(&query));
}

// === MPEG-TS ===

fn ts_frames(rng: &mut SmallRng, env: &Env) {
    let mut stream = Vec::new();
    for _ in 0..rng.random_range(0..12) {
        stream.extend_from_slice(&ts_packet(rng));
    }
    if rng.random() {
        stream = mutate::bytes(rng, &stream, &[]);
    }
    let mut whole = FrameCounter::default();
    whole.feed(&stream);
    // Any cut of the same bytes counts the same frames.
    let mut cut = FrameCounter::default();
    let mut rest = &stream[..];
    while !rest.is_empty() {
        let n = rng.random_range(1..=rest.len().min(400));
        cut.feed(&rest[..n]);
        rest = &rest[n..];
    }
    assert_eq!(whole.frames(), cut.frames(), "frames depend on how the bytes were cut");
    env.accepted_if(whole.frames() > 0);
}

/// The input codec probe reads every pushed segment: a PAT, a PMT of a random stream type
/// (with a registration descriptor), and video packets whose bytes hold a start code and an
/// SPS header, mutated; and MP4 boxes around a sample entry. It must answer, never panic.
fn codec_probe(rng: &mut SmallRng, env: &Env) {
    let mut stream = vec![0x47, 0x40, 0, 0x10, 0, 0, 0xb0, 0x0d, 0, 1, 0xc1, 0, 0, 0, 1, 0xf0, 0];
    stream.resize(188, 0xff);
    let any: u8 = rng.random();
    let kind = *pick(rng, &[0x1bu8, 0x24, 0x02, 0x06, 0xea, 0x0f, any]);
    let mut pmt = vec![0x47, 0x50, 0, 0x10, 0, 0x02, 0xb0, rng.random_range(0..40), 0, 1, 0xc1];
    pmt.extend_from_slice(&[0, 0, 0xe1, 0, 0xf0, 0, kind, 0xe1, 0, 0xf0, 6, 5, 4]);
    let any: [u8; 4] = rng.random();
    let id = *pick(rng, &[*b"HEVC", *b"AV01", *b"VC-1", any]);
    pmt.extend_from_slice(&id);
    pmt.resize(188, 0xff);
    stream.extend_from_slice(&pmt);
    for _ in 0..rng.random_range(0..6) {
        let mut p = ts_packet(rng);
        p[1] = (p[1] & 0x40) | 0x01;
        let at = rng.random_range(4..180);
        p[at..at + 8].copy_from_slice(&[0, 0, 1, 0x67, rng.random(), 0, 0, rng.random()]);
        stream.extend_from_slice(&p);
    }
    if rng.random() {
        stream = mutate::bytes(rng, &stream, &[]);
    }
    env.accepted_if(probe_input(&stream, Format::MpegTs).is_ok());
    let any: [u8; 4] = rng.random();
    let entry = *pick(rng, &[*b"avc1", *b"hvc1", *b"vp09", *b"av01", any]);
    let mut mp4 = Vec::new();
    for kind in [b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stsd"] {
        mp4.extend_from_slice(&rng.random_range(0u32..400).to_be_bytes());
        mp4.extend_from_slice(kind);
    }
    mp4.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 120]);
    mp4.extend_from_slice(&entry);
    mp4.resize(mp4.len() + 78, 0);
    mp4.extend_from_slice(&[0, 0, 0, 20, b'a', b'v', b'c', b'C', 1, 100, 0, 30, 0xff, 0xe1, 0, 4]);
    mp4.extend_from_slice(&[0x67, 100, 0, rng.random()]);
    let mp4 = mutate::bytes(rng, &mp4, &[]);
    let _ = probe_input(&mp4, Format::Mp4);
}

/// One 188-byte packet: a video PES start, an adaptation field of any length, or noise.
fn ts_packet(rng: &mut SmallRng) -> [u8; 188] {
    let mut p = [0u8; 188];
    rng.fill(&mut p[..]);
    p[0] = 0x47;
    match rng.random_range(0..4) {
        0 => {
            p[1] |= 0x40;
            p[3] = 0x10 | (p[3] & 0x0f);
            let id = 0xE0 | (p[7] & 0x0f);
            p[4..8].copy_from_slice(&[0, 0, 1, id]);
        }
        1 => {
            p[1] |= 0x40;
            p[3] = 0x30 | (p[3] & 0x0f);
            p[4] = *pick(rng, &[0u8, 1, 179, 180, 182, 183, 184, 255]);
        }
        _ => {}
    }
    p
}
