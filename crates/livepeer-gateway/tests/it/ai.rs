//! Batch AI end to end: client → gateway → simulated orchestrators, over real sockets.

use std::time::Duration;

use livepeer_gateway::Gateway;
use livepeer_gateway::orchestrator::http::OrchHttpVersion;
use livepeer_sim::{AiMode, Sim, SimConfig, SimModel};
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

use crate::support::*;

fn all_models(price: i64) -> Vec<SimModel> {
    [
        ("text-to-image", SD),
        ("image-to-image", SD),
        ("image-to-video", "stabilityai/stable-video-diffusion-img2vid-xt"),
        ("upscale", "stabilityai/stable-diffusion-x4-upscaler"),
        ("audio-to-text", "openai/whisper-large-v3"),
        ("segment-anything-2", "facebook/sam2-hiera-large"),
        ("llm", LLM),
        ("image-to-text", "Salesforce/blip-image-captioning-large"),
        ("text-to-speech", "parler-tts/parler-tts-large-v1"),
    ]
    .into_iter()
    .map(|(p, m)| SimModel::new(p, m).price(price, 1).capacity(8))
    .collect()
}

/// A simulated orchestrator with every AI model at one price (capacity 8 each); unset
/// settings keep the defaults most tests want (1 wei per unit, no pause between tokens).
struct AiSim {
    name: String,
    price: i64,
    token_delay: Duration,
}

impl AiSim {
    fn new(name: &str) -> Self {
        Self { name: name.into(), price: 1, token_delay: Duration::ZERO }
    }

    /// Wei per unit of every model.
    fn price(mut self, wei: i64) -> Self {
        self.price = wei;
        self
    }

    /// Pause between streamed LLM tokens.
    fn token_delay(mut self, delay: Duration) -> Self {
        self.token_delay = delay;
        self
    }

    async fn start(self) -> Sim {
        Sim::start(SimConfig {
            name: self.name,
            models: all_models(self.price),
            token_delay: self.token_delay,
            ..SimConfig::default()
        })
        .await
        .unwrap()
    }
}

async fn gateway(sims: &[&Sim]) -> Gateway {
    let urls: Vec<&str> = sims.iter().map(|s| s.url()).collect();
    let mut c = config(&urls);
    c.ai.attempt_timeout = Duration::from_millis(1500);
    c.ai.request_timeout = Duration::from_secs(8);
    c.ai.max_body_bytes = 4 << 20;
    start(c).await
}

fn api(gw: &Gateway, path: &str) -> String {
    format!("http://{}{path}", gw.http_addr)
}

/// A real 64×48 PNG.
fn png(w: u32, h: u32) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(png::ColorType::Rgb);
        let mut writer = enc.write_header().unwrap();
        writer.write_image_data(&vec![128u8; (w * h * 3) as usize]).unwrap();
    }
    out
}

/// A real WAV: `secs` seconds of a quiet tone, 8 kHz mono 16-bit.
fn wav(secs: f64) -> Vec<u8> {
    let rate = 8000u32;
    let n = (secs * f64::from(rate)) as u32;
    let mut out = Vec::new();
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + n * 2).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&(n * 2).to_le_bytes());
    for i in 0..n {
        let v = ((i as f64 * 0.05).sin() * 1000.0) as i16;
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

async fn fetch(url: &str) -> (String, Vec<u8>) {
    let resp = reqwest::get(url).await.unwrap();
    assert_eq!(resp.status(), 200, "{url}");
    let ct = resp.headers()["content-type"].to_str().unwrap().to_owned();
    (ct, resp.bytes().await.unwrap().to_vec())
}

async fn check_png_url(gw: &Gateway, url: &str) {
    assert!(url.starts_with(&format!("http://{}/results/", gw.http_addr)), "gateway-served: {url}");
    let (ct, bytes) = fetch(url).await;
    assert_eq!(ct, "image/png");
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    decoder.read_info().expect("a real PNG");
}

#[tokio::test]
async fn every_pipeline_end_to_end() {
    let sim = AiSim::new("all").start().await;
    let gw = gateway(&[&sim]).await;
    let http = reqwest::Client::new();

    // text-to-image (JSON): spec defaults filled, the gateway's own result URL.
    let resp = http
        .post(api(&gw, "/text-to-image"))
        .json(&json!({"prompt": "a red fox", "model_id": SD}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("x-request-id"));
    assert_eq!(resp.headers()["x-orchestrator-url"], sim.url());
    let body: Value = resp.json().await.unwrap();
    check_png_url(&gw, body["images"][0]["url"].as_str().unwrap()).await;
    let seen = sim.last_ai_request().unwrap();
    assert_eq!(seen.path, "/text-to-image");
    // Images inline by default (`--ai-inline-images`): no protocol version, nothing fetched.
    assert_eq!(seen.authorization, None);
    assert_eq!(sim.ai_downloads(), 0);
    assert_eq!(seen.manifest_id.as_deref(), Some(&*format!("27_{SD}")));

    // Multipart pipelines with an image.
    for (path, model) in [
        ("/image-to-image", SD),
        ("/upscale", "stabilityai/stable-diffusion-x4-upscaler"),
        ("/image-to-video", "stabilityai/stable-video-diffusion-img2vid-xt"),
        ("/segment-anything-2", "facebook/sam2-hiera-large"),
        ("/image-to-text", "Salesforce/blip-image-captioning-large"),
    ] {
        let form = Form::new().text("prompt", "make it blue").text("model_id", model).part(
            "image",
            Part::bytes(png(64, 48)).file_name("in.png").mime_str("image/png").unwrap(),
        );
        let resp = http.post(api(&gw, path)).multipart(form).send().await.unwrap();
        let status = resp.status();
        let body: Value = resp.json().await.unwrap();
        assert_eq!(status, 200, "{path}: {body}");
        // Only image-to-image's results are asked for inline among these.
        let protocol = sim.last_ai_request().unwrap().authorization;
        assert_eq!(protocol.is_none(), path == "/image-to-image", "{path}: {protocol:?}");
        match path {
            "/image-to-image" | "/upscale" => {
                check_png_url(&gw, body["images"][0]["url"].as_str().unwrap()).await
            }
            "/image-to-video" => {
                let (ct, bytes) = fetch(body["images"][0]["url"].as_str().unwrap()).await;
                assert_eq!(ct, "video/mp4");
                assert_eq!(&bytes[4..8], b"ftyp", "a real MP4");
            }
            "/segment-anything-2" => {
                assert!(body["masks"].is_string() && body["scores"].is_string(), "{body}")
            }
            _ => assert!(body["text"].as_str().is_some_and(|t| !t.is_empty()), "{body}"),
        }
    }

    // audio-to-text: the duration (2 s) is probed and priced.
    let form = Form::new()
        .text("model_id", "openai/whisper-large-v3")
        .part("audio", Part::bytes(wav(2.2)).file_name("a.wav").mime_str("audio/wav").unwrap());
    let resp = http.post(api(&gw, "/audio-to-text")).multipart(form).send().await.unwrap();
    let body: Value = resp.json().await.unwrap();
    assert!(body["text"].is_string() && body["chunks"].is_array(), "{body}");

    // text-to-speech: a WAV served by the gateway.
    let resp = http
        .post(api(&gw, "/text-to-speech"))
        .json(&json!({"text": "hello there", "model_id": "parler-tts/parler-tts-large-v1"}))
        .send()
        .await
        .unwrap();
    let body: Value = resp.json().await.unwrap();
    let (ct, bytes) = fetch(body["audio"]["url"].as_str().unwrap()).await;
    assert!(ct.starts_with("audio/"), "{ct}");
    assert_eq!(&bytes[..4], b"RIFF");

    // llm, not streamed; the default model is substituted when none is given.
    let resp = http
        .post(api(&gw, "/llm"))
        .json(&json!({"model": LLM, "messages": [{"role": "user", "content": "say hi"}]}))
        .send()
        .await
        .unwrap();
    let body: Value = resp.json().await.unwrap();
    assert!(body["choices"][0]["message"]["content"].is_string(), "{body}");

    // The OpenAI-compatible route.
    let resp = http
        .post(api(&gw, "/v1/chat/completions"))
        .json(&json!({"model": LLM, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion", "{body}");

    let metrics = metrics_text(&gw).await;
    assert!(
        metrics.contains(
            "livepeer_gateway_ai_request_duration_seconds_count{pipeline=\"text-to-image\""
        ),
        "{metrics}"
    );
    assert!(metrics.contains("livepeer_ai_models_requested{pipeline=\"llm\""));
    gw.shutdown().await;
}

#[tokio::test]
async fn llm_streams_chunk_by_chunk_and_openai_streams_end_with_done() {
    let sim = AiSim::new("llm").token_delay(Duration::from_millis(150)).start().await;
    let gw = gateway(&[&sim]).await;
    let http = reqwest::Client::new();
    let mut resp = http
        .post(api(&gw, "/llm"))
        .json(&json!({"model": LLM, "stream": true, "max_tokens": 8, "messages": [{"role": "user", "content": "one two three four five six seven eight"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let first = resp.chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).starts_with("data: "), "{first:?}");
    // The first token is here while the simulator is still producing the rest.
    assert_eq!(sim.ai_in_flight(), 1, "simulator still streaming when the first chunk arrived");
    let mut rest = Vec::new();
    while let Some(c) = resp.chunk().await.unwrap() {
        rest.extend_from_slice(&c);
    }
    let text = String::from_utf8_lossy(&rest);
    assert!(
        text.contains("finish_reason\":\"stop") || text.contains("\"finish_reason\":\"length"),
        "{text}"
    );

    let resp = http
        .post(api(&gw, "/v1/chat/completions"))
        .json(&json!({"model": LLM, "stream": true, "max_tokens": 3, "messages": [{"role": "user", "content": "a b c"}]}))
        .send()
        .await
        .unwrap();
    let text = resp.text().await.unwrap();
    assert!(text.contains("chat.completion.chunk"), "{text}");
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    gw.shutdown().await;
}

#[tokio::test]
async fn bad_input_gets_422_naming_the_field_and_reaches_no_orchestrator() {
    let sim = AiSim::new("v").start().await;
    let gw = gateway(&[&sim]).await;
    let http = reqwest::Client::new();
    let cases: Vec<(&str, Value, &str)> = vec![
        ("/text-to-image", json!({"model_id": SD}), "prompt"),
        ("/text-to-image", json!({"prompt": "x", "height": "tall"}), "height"),
        ("/llm", json!({"messages": "hi"}), "messages"),
        ("/text-to-speech", json!({"model_id": "m"}), "text"),
    ];
    for (path, body, field) in cases {
        let resp = http.post(api(&gw, path)).json(&body).send().await.unwrap();
        assert_eq!(resp.status(), 422, "{path} {body}");
        let err: Value = resp.json().await.unwrap();
        let locs: Vec<String> =
            err["detail"].as_array().unwrap().iter().map(|d| d["loc"].to_string()).collect();
        assert!(locs.iter().any(|l| l.contains(field)), "{path}: {err}");
        assert!(err["detail"][0]["msg"].is_string() && err["detail"][0]["type"].is_string());
    }
    // Multipart routes: missing file, or JSON where a form is expected.
    for path in [
        "/image-to-image",
        "/image-to-video",
        "/upscale",
        "/audio-to-text",
        "/segment-anything-2",
        "/image-to-text",
    ] {
        let resp = http
            .post(api(&gw, path))
            .multipart(Form::new().text("prompt", "p"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 422, "{path}");
        let err: Value = resp.json().await.unwrap();
        let loc = err["detail"][0]["loc"].to_string();
        assert!(loc.contains("image") || loc.contains("audio"), "{path}: {err}");
        let resp = http.post(api(&gw, path)).json(&json!({"prompt": "p"})).send().await.unwrap();
        assert_eq!(resp.status(), 422, "{path} with JSON");
    }
    // Not an image.
    let form = Form::new()
        .text("prompt", "p")
        .part("image", Part::bytes(b"hello".to_vec()).file_name("x.txt"));
    let resp = http.post(api(&gw, "/image-to-image")).multipart(form).send().await.unwrap();
    assert_eq!(resp.status(), 422);
    // Too large.
    let resp = http
        .post(api(&gw, "/text-to-image"))
        .header("content-type", "application/json")
        .body(vec![b' '; 5 << 20])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["type"], "body_too_large");
    let form = Form::new()
        .text("prompt", "p")
        .part("image", Part::bytes(vec![0u8; 5 << 20]).file_name("big.png"));
    let resp = http.post(api(&gw, "/image-to-image")).multipart(form).send().await.unwrap();
    assert_eq!(resp.status(), 413, "multipart over the limit");
    // The same chunked, with no length to refuse it by at once: 413 all the same.
    let boundary = "b0undary";
    let mut raw = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\np\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"big.png\"\r\n\
         Content-Type: image/png\r\n\r\n"
    )
    .into_bytes();
    raw.extend(vec![0u8; 5 << 20]);
    raw.extend(format!("\r\n--{boundary}--\r\n").into_bytes());
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        raw.chunks(64 << 10).map(|c| Ok(c.to_vec())).collect();
    // A client of its own: the gateway closes the connection of a body it did not read.
    let resp = reqwest::Client::new()
        .post(api(&gw, "/image-to-image"))
        .header("content-type", format!("multipart/form-data; boundary={boundary}"))
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413, "chunked multipart over the limit");
    assert_eq!(sim.ai_requests(), 0, "nothing invalid was forwarded");
    // A model nobody offers: 503 with Retry-After naming it.
    let resp = http
        .post(api(&gw, "/text-to-image"))
        .json(&json!({"prompt": "x", "model_id": "nobody/has-this"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    let err: Value = resp.json().await.unwrap();
    assert!(err["error"]["message"].as_str().unwrap().contains("nobody/has-this"), "{err}");
    gw.shutdown().await;
}

async fn t2i(gw: &Gateway) -> reqwest::Response {
    reqwest::Client::new()
        .post(api(gw, "/text-to-image"))
        .json(&json!({"prompt": "x", "model_id": SD, "width": 64, "height": 64}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn fails_over_on_500_hang_and_broken_answers() {
    // `bad` is far cheaper, so selection always tries it first.
    let bad = AiSim::new("bad").start().await;
    let good = AiSim::new("good").price(1000).start().await;
    for mode in [AiMode::Status(500, "boom".into()), AiMode::Hang, AiMode::CloseMidAnswer] {
        let gw = gateway(&[&bad, &good]).await;
        bad.set_ai_mode(mode.clone());
        let before = (bad.ai_requests(), good.ai_requests());
        let resp = t2i(&gw).await;
        assert_eq!(resp.status(), 200, "{mode:?}");
        assert_eq!(resp.headers()["x-orchestrator-url"], good.url(), "{mode:?}");
        assert_eq!(
            (bad.ai_requests(), good.ai_requests()),
            (before.0 + 1, before.1 + 1),
            "{mode:?}"
        );
        assert_eq!(orch_state(&gw, bad.url()).await["state"], "ejected", "{mode:?}");
        bad.set_ai_mode(AiMode::Normal);
        gw.shutdown().await;
    }
}

#[tokio::test]
async fn user_errors_pass_through_without_penalty_or_failover() {
    let bad = AiSim::new("bad").start().await;
    let good = AiSim::new("good").price(1000).start().await;
    let gw = gateway(&[&bad, &good]).await;
    bad.set_ai_mode(AiMode::Status(
        500,
        "text-to-image container returned 400: prompt too long".into(),
    ));
    let resp = t2i(&gw).await;
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.unwrap();
    assert!(err["detail"]["msg"].as_str().unwrap().contains("prompt too long"), "{err}");
    assert_eq!(good.ai_requests(), 0, "no failover for the user's own error");
    assert_eq!(orch_state(&gw, bad.url()).await["state"], "healthy");
    gw.shutdown().await;
}

#[tokio::test]
async fn no_failover_once_streaming_started() {
    let bad = AiSim::new("bad").token_delay(Duration::from_millis(20)).start().await;
    let good = AiSim::new("good").price(1000).start().await;
    let gw = gateway(&[&bad, &good]).await;
    bad.set_ai_mode(AiMode::CloseMidAnswer);
    let resp = reqwest::Client::new()
        .post(api(&gw, "/llm"))
        .json(&json!({"model": LLM, "stream": true, "max_tokens": 20, "messages": [{"role": "user", "content": "a b c d e f"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap_or_default();
    assert!(text.starts_with("data: "), "some tokens arrived: {text}");
    assert!(text.contains("event: error"), "the break is reported in-stream: {text}");
    assert_eq!(good.ai_requests(), 0, "never fails over after the first byte");
    eventually(Duration::from_secs(3), "bad ejected", || async {
        orch_state(&gw, bad.url()).await["state"] == "ejected"
    })
    .await;
    gw.shutdown().await;
}

#[tokio::test]
async fn a_client_that_disconnects_leaves_nothing_behind() {
    let sim = AiSim::new("slow").start().await;
    let gw = gateway(&[&sim]).await;
    sim.set_ai_mode(AiMode::Hang);
    let client = reqwest::Client::builder().timeout(Duration::from_millis(300)).build().unwrap();
    let err = client
        .post(api(&gw, "/text-to-image"))
        .json(&json!({"prompt": "x", "model_id": SD}))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout());
    eventually(Duration::from_secs(3), "request released everywhere", || async {
        sim.ai_in_flight() == 0 && orch_state(&gw, sim.url()).await["in_flight"] == 0
    })
    .await;
    assert_eq!(
        orch_state(&gw, sim.url()).await["state"],
        "healthy",
        "a client leaving is nobody's fault"
    );
    gw.shutdown().await;
}

/// A gateway out of descriptors cannot dial an orchestrator. That is its own fault: the client
/// gets 503 `gateway_overloaded`, no orchestrator is ejected, and none is tried in its place.
#[test]
fn a_gateway_out_of_descriptors_blames_no_orchestrator() {
    if run_alone("ai::a_gateway_out_of_descriptors_blames_no_orchestrator") {
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build();
        runtime.unwrap().block_on(out_of_descriptors());
    }
}

async fn out_of_descriptors() {
    let a = AiSim::new("a").start().await;
    let b = AiSim::new("b").price(1000).start().await;
    let gw = gateway(&[&a, &b]).await;
    // The client's connection is made while descriptors remain, and kept.
    let mut conn = HeldConnection::open(gw.http_addr).await;
    let held = NoDescriptors::take();
    let job = json!({"prompt": "x", "model_id": SD, "width": 64, "height": 64}).to_string();
    let headers = [("content-type", "application/json")];
    let (status, head, body) = conn.send("POST", "/text-to-image", &headers, job).await;
    let retry = head.get("retry-after").cloned();
    drop(held);
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["type"], "gateway_overloaded", "{body}");
    assert_eq!(retry.unwrap(), "1");
    assert_eq!((a.ai_requests(), b.ai_requests()), (0, 0), "nothing was sent anywhere");
    assert_eq!(orch_state(&gw, a.url()).await["state"], "healthy");
    assert_eq!(orch_state(&gw, b.url()).await["state"], "healthy");
    // With descriptors back, the same orchestrator serves.
    let resp = t2i(&gw).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-orchestrator-url"], a.url());
    gw.shutdown().await;
}

#[tokio::test]
async fn busy_orchestrators_are_skipped_not_ejected() {
    let a = AiSim::new("a").start().await;
    let b = AiSim::new("b").price(1000).start().await;
    let gw = gateway(&[&a, &b]).await;
    a.set_ai_mode(AiMode::Status(503, "insufficient capacity".into()));
    let resp = t2i(&gw).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-orchestrator-url"], b.url());
    assert_eq!(orch_state(&gw, a.url()).await["state"], "healthy", "busy is not a failure");
    // Everyone busy: 503 with Retry-After, still nobody ejected.
    b.set_ai_mode(AiMode::Status(503, "insufficient capacity".into()));
    let resp = t2i(&gw).await;
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "1");
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["type"], "orchestrators_busy", "{err}");
    assert_eq!(orch_state(&gw, b.url()).await["state"], "healthy");
    gw.shutdown().await;
}

#[tokio::test]
async fn https_orchestrators_work_over_http2_and_http1() {
    // ALPN picks HTTP/2 by default and with h2c (which concerns `http://` only); HTTP/1.1
    // when asked for.
    let cases = [
        (OrchHttpVersion::Negotiate, "HTTP/2.0"),
        (OrchHttpVersion::H2c, "HTTP/2.0"),
        (OrchHttpVersion::Http1, "HTTP/1.1"),
    ];
    for (orch_http, version) in cases {
        let sim = Sim::start(SimConfig {
            name: "tls".into(),
            tls: true,
            models: all_models(1),
            ..SimConfig::default()
        })
        .await
        .unwrap();
        assert!(sim.url().starts_with("https://"));
        let mut c = config(&[sim.url()]);
        c.ai.orch_http = orch_http;
        let gw = start(c).await;
        let http = reqwest::Client::new();

        // JSON in, and a result file the gateway downloads over TLS.
        let resp = http
            .post(api(&gw, "/text-to-image"))
            .json(&json!({"prompt": "a red fox", "model_id": SD}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.unwrap();
        check_png_url(&gw, body["images"][0]["url"].as_str().unwrap()).await;
        assert_eq!(sim.last_ai_request().unwrap().http_version, version);

        // Multipart in: the sim parses the gateway's encoding back into the same parts.
        let image = png(64, 48);
        let form = Form::new().text("prompt", "make it \"blue\"").text("model_id", SD).part(
            "image",
            Part::bytes(image.clone()).file_name("in.png").mime_str("image/png").unwrap(),
        );
        let resp = http.post(api(&gw, "/image-to-image")).multipart(form).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let seen = sim.last_ai_request().unwrap();
        assert_eq!(seen.http_version, version);
        assert!(seen.fields.contains(&("prompt".into(), "make it \"blue\"".into())));
        assert_eq!(seen.files.len(), 1);
        assert_eq!(seen.files[0].field, "image");
        assert_eq!(seen.files[0].file_name.as_deref(), Some("in.png"));
        assert_eq!(seen.files[0].content_type.as_deref(), Some("image/png"));
        assert_eq!(seen.files[0].size, image.len());

        // A streamed answer.
        let resp = http
            .post(api(&gw, "/llm"))
            .json(&json!({"model": LLM, "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
        let text = resp.text().await.unwrap();
        assert!(text.contains("data: ") && text.contains(r#""finish_reason":"stop""#), "{text}");
        gw.shutdown().await;
        sim.stop();
    }
}

/// An orchestrator whose AI worker speaks HTTP/1.1 only (any plain HTTP server), in clear and
/// over TLS (ALPN `http/1.1` only): with the gateway's defaults, JSON, multipart and streamed
/// calls and the result download succeed over HTTP/1.1, and the orchestrator stays healthy.
#[tokio::test]
async fn http1_only_orchestrators_work_with_the_defaults_in_clear_and_over_tls() {
    for tls in [false, true] {
        let sim = Sim::start(SimConfig {
            name: "h1-only".into(),
            tls,
            ai_http1_only: true,
            models: all_models(1),
            ..SimConfig::default()
        })
        .await
        .unwrap();
        assert_ne!(sim.service_url(), sim.url(), "the AI API is on its own port");
        let gw = start(config(&[sim.url()])).await;
        let http = reqwest::Client::new();

        let resp = http
            .post(api(&gw, "/text-to-image"))
            .json(&json!({"prompt": "a red fox", "model_id": SD}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "tls: {tls}");
        let body: Value = resp.json().await.unwrap();
        check_png_url(&gw, body["images"][0]["url"].as_str().unwrap()).await;
        assert_eq!(sim.last_ai_request().unwrap().http_version, "HTTP/1.1");

        let form = Form::new().text("prompt", "blue").text("model_id", SD).part(
            "image",
            Part::bytes(png(64, 48)).file_name("in.png").mime_str("image/png").unwrap(),
        );
        let resp = http.post(api(&gw, "/image-to-image")).multipart(form).send().await.unwrap();
        assert_eq!(resp.status(), 200, "tls: {tls}");

        let resp = http
            .post(api(&gw, "/llm"))
            .json(&json!({"model": LLM, "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "tls: {tls}");
        let text = resp.text().await.unwrap();
        assert!(text.contains(r#""finish_reason":"stop""#), "{text}");
        assert_eq!(orch_state(&gw, sim.url()).await["state"], "healthy", "tls: {tls}");
        gw.shutdown().await;
        sim.stop();
    }
}

/// `http://` orchestrators get HTTP/1.1 by default, and h2c only when the operator asks.
#[tokio::test]
async fn cleartext_orchestrators_get_http1_by_default_and_h2c_when_asked() {
    let sim = AiSim::new("clear").start().await;
    let cases = [
        (OrchHttpVersion::Negotiate, "HTTP/1.1"),
        (OrchHttpVersion::H2c, "HTTP/2.0"),
        (OrchHttpVersion::Http1, "HTTP/1.1"),
    ];
    for (orch_http, version) in cases {
        let mut c = config(&[sim.url()]);
        c.ai.orch_http = orch_http;
        let gw = start(c).await;
        assert_eq!(t2i(&gw).await.status(), 200, "{orch_http:?}");
        assert_eq!(sim.last_ai_request().unwrap().http_version, version, "{orch_http:?}");
        gw.shutdown().await;
    }
}

#[tokio::test]
async fn request_bodies_that_stall_outgrow_the_limit_or_break_off_get_408_413_or_400() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let sim = AiSim::new("slow-body").start().await;
    let mut c = config(&[sim.url()]);
    c.ai.request_timeout = Duration::from_millis(500);
    c.ai.max_body_bytes = 1024;
    let gw = start(c).await;
    let head = |path: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"prompt\":",
            gw.http_addr
        )
    };
    for path in ["/text-to-image", "/v1/chat/completions"] {
        // Promises 100 bytes, sends 10, then waits.
        let mut conn = tokio::net::TcpStream::connect(gw.http_addr).await.unwrap();
        conn.write_all(head(path).as_bytes()).await.unwrap();
        let started = tokio::time::Instant::now();
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), async {
            let mut buf = [0u8; 4096];
            loop {
                let n = conn.read(&mut buf).await.unwrap();
                answer.extend_from_slice(&buf[..n]);
                if n == 0 || String::from_utf8_lossy(&answer).contains("}") {
                    break;
                }
            }
        })
        .await;
        assert!(read.is_ok(), "{path}: no answer to a stalled body");
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 408"), "{path}: {text}");
        assert!(text.contains("\"body_timeout\"") && text.contains("\"body\""), "{text}");
        // The answer came (the read above has its own bound); how soon is for benchmarks.
        eprintln!("{path}: 408 after {:?}", started.elapsed());
    }
    // Sends part of the body, then closes its side: nothing reaches the orchestrator.
    let mut conn = tokio::net::TcpStream::connect(gw.http_addr).await.unwrap();
    conn.write_all(head("/text-to-image").as_bytes()).await.unwrap();
    conn.shutdown().await.unwrap();
    let mut answer = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), conn.read_to_string(&mut answer)).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("body_unreadable"), "{answer}");
    // A chunked body (no Content-Length to refuse it up front) that outgrows the limit.
    let mut conn = tokio::net::TcpStream::connect(gw.http_addr).await.unwrap();
    let chunk = format!("800\r\n{}\r\n", " ".repeat(0x800));
    conn.write_all(
        format!(
            "POST /text-to-image HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{chunk}0\r\n\r\n",
            gw.http_addr
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut answer = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), conn.read_to_string(&mut answer)).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("body_too_large"), "{answer}");
    assert_eq!(sim.ai_requests(), 0, "no request reached the orchestrator");
}

#[tokio::test]
async fn clients_that_send_headers_too_slowly_are_disconnected() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let sim = AiSim::new("slow-headers").start().await;
    let mut c = config(&[sim.url()]);
    c.header_timeout = Duration::from_millis(300);
    let gw = start(c).await;
    for addr in [gw.http_addr, gw.admin_addr] {
        let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
        // Headers begun, never finished.
        conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ").await.unwrap();
        let started = tokio::time::Instant::now();
        let mut rest = Vec::new();
        let closed =
            tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut rest)).await;
        assert!(closed.is_ok(), "{addr}: connection still open after 5 s");
        eprintln!("{addr}: closed after {:?}", started.elapsed());
        // A prompt client on the same listener is served.
        let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
        conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        conn.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 "), "{addr}: {answer}");
    }
}
