//! Request bodies and metric labels under hostile clients (issue 11, items 5 and 7): uploads
//! are bounded by `--ai-max-body-bytes` alone, a declared length over the limit is refused
//! before any body byte is read, the signer checks the API key before it reads the body, and
//! client-chosen models do not become metric series.

use std::sync::Arc;
use std::time::Duration;

use livepeer_gateway::Gateway;
use livepeer_pm::LocalSigner;
use livepeer_sim::{Sim, SimConfig, SimModel};
use reqwest::multipart::{Form, Part};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

const KEY: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
const API_KEY: &str = "bodies-api-key";

async fn sim() -> Sim {
    Sim::start(SimConfig {
        models: vec![
            SimModel::new("text-to-image", SD).capacity(8),
            SimModel::new("image-to-image", SD).capacity(8),
            SimModel::new("llm", LLM).capacity(8),
        ],
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

/// A gateway on `sim` whose body deadline is far beyond any bound the tests wait for, so that
/// an answer within the bound cannot be the deadline's.
async fn gateway(sim: &Sim) -> Gateway {
    let mut c = config(&[sim.url()]);
    c.ai.request_timeout = Duration::from_secs(300);
    start(c).await
}

/// A PNG of noise, `w`×`h`: it does not compress, so its size is about `3·w·h` bytes.
fn noise_png(w: u32, h: u32) -> Vec<u8> {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let pixels: Vec<u8> = (0..w * h * 3)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 24) as u8
        })
        .collect();
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(png::ColorType::Rgb);
        let mut writer = enc.write_header().unwrap();
        writer.write_image_data(&pixels).unwrap();
    }
    out
}

#[tokio::test]
async fn a_3_mib_upload_reaches_the_orchestrator() {
    let sim = sim().await;
    let gw = gateway(&sim).await;
    let image = noise_png(1100, 1000);
    assert!(image.len() > 3 << 20, "{} bytes", image.len());
    let form = Form::new().text("prompt", "p").text("model_id", SD).part(
        "image",
        Part::bytes(image.clone()).file_name("in.png").mime_str("image/png").unwrap(),
    );
    let resp = reqwest::Client::new()
        .post(format!("http://{}/image-to-image", gw.http_addr))
        .multipart(form)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    assert_eq!(status, 200, "{}", resp.text().await.unwrap());
    let seen = sim.last_ai_request().unwrap();
    assert_eq!(seen.files.len(), 1);
    assert_eq!(seen.files[0].size, image.len(), "the whole upload reached the orchestrator");
    gw.shutdown().await;
}

/// Sends `head` (request line and headers, no body) on a raw connection and reads the answer's
/// status line within a bound far below the gateway's body deadline.
pub(crate) async fn status_without_body(gw: &Gateway, head: &str) -> String {
    let mut conn = TcpStream::connect(gw.http_addr).await.unwrap();
    // A head the gateway refuses part way may end the connection before it is all written:
    // what was answered is read all the same, and a connection reset reads as no answer.
    let _ = conn.write_all(head.as_bytes()).await;
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), async {
        let mut buf = [0u8; 1024];
        while !got.windows(2).any(|w| w == b"\r\n") {
            let n = conn.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    assert!(read.is_ok(), "no answer before the body: {head}");
    let text = String::from_utf8_lossy(&got).into_owned();
    text.lines().next().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_declared_length_over_the_limit_is_refused_before_the_body() {
    let sim = sim().await;
    let gw = gateway(&sim).await;
    for (path, content_type) in [
        ("/v1/chat/completions", "application/json"),
        ("/llm", "application/json"),
        ("/image-to-image", "multipart/form-data; boundary=b"),
        ("/live/video-to-video/cam/start", "application/json"),
    ] {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: gw\r\nContent-Type: {content_type}\r\n\
             Content-Length: 1073741824\r\n\r\n"
        );
        let status = status_without_body(&gw, &head).await;
        assert!(status.starts_with("HTTP/1.1 413"), "{path}: {status}");
    }
    assert_eq!(sim.ai_requests(), 0);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_heads_up_to_go_livepeer_s_mebibyte_are_read() {
    let sim = sim().await;
    let gw = gateway(&sim).await;
    // A BYOC job's whole request rides in its `Livepeer` header. hyper's own limit (about
    // 400 KB) answered 431 where go-livepeer reads up to 1 MiB.
    let head = |bytes: usize| {
        format!("GET /no-such-route HTTP/1.1\r\nHost: gw\r\nx-big: {}\r\n\r\n", "a".repeat(bytes))
    };
    let status = status_without_body(&gw, &head(900 << 10)).await;
    assert!(status.starts_with("HTTP/1.1 404"), "{status}");
    // Well over it, the head is refused: 431, or a connection closed while the client still
    // writes (the unread rest can make the kernel reset it before the 431 is read). hyper
    // checks its limit between reads, so a head a little over it may still be read whole.
    let status = status_without_body(&gw, &head(3 << 20)).await;
    assert!(status.is_empty() || status.starts_with("HTTP/1.1 431"), "{status}");
    // Over HTTP/2 too, where hyper allowed 16 KiB of headers.
    let h2 = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    let resp = h2
        .get(format!("http://{}/no-such-route", gw.http_addr))
        .header("x-big", "a".repeat(600 << 10))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 404);
    gw.shutdown().await;
}

async fn signer_gateway(sim: &Sim) -> Gateway {
    let mut c = config(&[sim.url()]);
    c.signer = Some(Arc::new(LocalSigner::from_hex(KEY).unwrap()));
    c.serve_signer = Some(API_KEY.to_owned().into());
    start(c).await
}

#[tokio::test]
async fn the_signer_checks_the_key_before_the_body() {
    let sim = sim().await;
    let gw = signer_gateway(&sim).await;
    let url = format!("http://{}/generate-live-payment", gw.http_addr);
    let http = reqwest::Client::new();
    // Without the key, whatever the body: 401, never a verdict on the body.
    let no_type = http.post(&url).body("not json").send().await.unwrap();
    assert_eq!(no_type.status(), 401, "no content type, no key");
    let wrong_shape = http.post(&url).json(&json!({"orchestrator": 7})).send().await.unwrap();
    assert_eq!(wrong_shape.status(), 401, "wrong shape, no key");
    let wrong_key = http.post(&url).bearer_auth("nope").body("{").send().await.unwrap();
    assert_eq!(wrong_key.status(), 401, "wrong key");
    // With the key, in any case of the scheme, the body is read and judged: malformed is 400.
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let resp = http
            .post(&url)
            .header("authorization", format!("{scheme} {API_KEY}"))
            .json(&json!({"orchestrator": "%%"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{scheme}");
        let info = http
            .post(format!("http://{}/sign-orchestrator-info", gw.http_addr))
            .header("authorization", format!("{scheme} {API_KEY}"))
            .send()
            .await
            .unwrap();
        assert_eq!(info.status(), 200, "{scheme}");
    }
    // A declared length over the limit is refused before the body, once authenticated.
    let head = format!(
        "POST /generate-live-payment HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {API_KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: 1073741824\r\n\r\n"
    );
    let status = status_without_body(&gw, &head).await;
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");
    gw.shutdown().await;
}

/// The metric lines (not comments) of the families labelled by model.
fn model_series(metrics: &str) -> usize {
    metrics.lines().filter(|l| !l.starts_with('#') && l.contains("model_name=")).count()
}

#[tokio::test]
async fn random_model_ids_leave_metrics_bounded() {
    let sim = sim().await;
    let gw = gateway(&sim).await;
    let http = reqwest::Client::new();
    let url = format!("http://{}/text-to-image", gw.http_addr);
    let resp = http.post(&url).json(&json!({"prompt": "x", "model_id": SD})).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let before = model_series(&metrics_text(&gw).await);
    for i in 0..2000u32 {
        let model = format!("random/model-{i}-{:x}", i.wrapping_mul(2_654_435_761));
        let resp =
            http.post(&url).json(&json!({"prompt": "x", "model_id": model})).send().await.unwrap();
        assert_eq!(resp.status(), 503, "{model}");
    }
    let metrics = metrics_text(&gw).await;
    let after = model_series(&metrics);
    assert!(after <= before + 4, "{before} series before, {after} after");
    assert!(!metrics.contains("random/model-"), "no client-chosen model is a label");
    assert!(
        metrics.contains(
            "livepeer_ai_request_errors{error_code=\"no_orchestrator\",pipeline=\"text-to-image\",model_name=\"other\",orchestrator_uri=\"\"} 2000"
        ),
        "the requests are still counted: {metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "livepeer_ai_models_requested{{pipeline=\"text-to-image\",model_name=\"{SD}\"}} 1"
        )),
        "an offered model keeps its name"
    );
    gw.shutdown().await;
}

/// An unknown path or a method a path does not take gets the same JSON error body as every
/// other error, on the public port and the admin port alike.
#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let sim = sim().await;
    let gw = gateway(&sim).await;
    let http = reqwest::Client::new();
    let public = |path: &str| format!("http://{}{path}", gw.http_addr);
    let cases = [
        (http.get(public("/no/such/route")), 404, "not_found"),
        (http.put(public("/text-to-image")), 405, "method_not_allowed"),
        (http.get(format!("http://{}/no/such/route", gw.admin_addr)), 404, "not_found"),
    ];
    for (req, status, kind) in cases {
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), status);
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["type"], kind, "{body}");
        assert_eq!(body["error"]["status"], status, "{body}");
    }
    // A result path that is not UTF-8 names no result: the same JSON 404.
    let resp = http.get(public("/results/%ff/x.png")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "not_found", "{body}");
}

/// Bodies in memory are bounded across requests by `--max-body-memory`: while one client holds
/// 40 KB of an unfinished body, another's 30 KB would pass the 64 KiB budget and gets 503
/// `gateway_overloaded` (the gateway's shortage, to be retried); once the first ends, the
/// budget is whole again and the same request goes through, in JSON and in multipart.
#[test]
fn bodies_in_memory_share_one_budget() {
    if run_alone("bodies::bodies_in_memory_share_one_budget") {
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build();
        runtime.unwrap().block_on(one_budget());
    }
}

async fn one_budget() {
    let sim = sim().await;
    let mut c = config(&[sim.url()]);
    c.ai.request_timeout = Duration::from_secs(300);
    c.max_body_memory = 64 << 10;
    let gw = start(c).await;
    let held = |gw: &Gateway| {
        let gw_admin = gw.admin_addr;
        async move {
            let url = format!("http://{gw_admin}/status");
            let status: serde_json::Value = reqwest::get(url).await.unwrap().json().await.unwrap();
            status["request_body_bytes"].as_u64().unwrap()
        }
    };
    // A client sends 40,000 of the 50,000 bytes it announced, and waits.
    let mut slow = TcpStream::connect(gw.http_addr).await.unwrap();
    let head = "POST /text-to-image HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                Content-Length: 50000\r\n\r\n";
    slow.write_all(head.as_bytes()).await.unwrap();
    slow.write_all(&[b' '; 40_000]).await.unwrap();
    eventually(Duration::from_secs(5), "the slow body is counted", || async {
        held(&gw).await == 40_000
    })
    .await;
    let prompt = "x".repeat(30_000);
    let json_body = json!({"prompt": prompt, "model_id": SD, "width": 64, "height": 64});
    let client = reqwest::Client::new();
    let send_json =
        || client.post(format!("http://{}/text-to-image", gw.http_addr)).json(&json_body);
    let send_form = || {
        let form = Form::new()
            .text("prompt", prompt.clone())
            .text("model_id", SD)
            .part("image", Part::bytes(noise_png(8, 8)).file_name("i.png"));
        client.post(format!("http://{}/image-to-image", gw.http_addr)).multipart(form)
    };
    for (what, resp) in [
        ("json", send_json().send().await.unwrap()),
        ("multipart", send_form().send().await.unwrap()),
    ] {
        assert_eq!(resp.status(), 503, "{what}");
        assert_eq!(resp.headers()["retry-after"], "1", "{what}");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["type"], "gateway_overloaded", "{what}: {body}");
    }
    assert_eq!(held(&gw).await, 40_000, "refused bodies hold nothing");
    // The slow body ends (a body of spaces: not JSON, the client's 4xx); its share returns.
    slow.write_all(&[b' '; 10_000]).await.unwrap();
    let mut answer = vec![0u8; 12];
    slow.read_exact(&mut answer).await.unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 4"), "{}", String::from_utf8_lossy(&answer));
    eventually(Duration::from_secs(5), "the budget is whole again", || async {
        held(&gw).await == 0
    })
    .await;
    for (what, resp) in [
        ("json", send_json().send().await.unwrap()),
        ("multipart", send_form().send().await.unwrap()),
    ] {
        assert_eq!(resp.status(), 200, "{what}: {}", resp.text().await.unwrap_or_default());
    }
    assert_eq!(held(&gw).await, 0, "served bodies return their share");
    gw.shutdown().await;
}

/// A JSON body of many small values, within the byte limit: each value would have cost a
/// `serde_json::Value` (32 bytes and more for two bytes of input) in the fields the gateway
/// reads, and all of them in the OpenAI route's copy of the body. Now the fields read are
/// built under a budget of values: past it, the client's 422 (a JSON decode error, as a
/// syntax error is answered) names it, and an unknown field
/// of the same size is skipped unread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_of_millions_of_values_is_refused_at_its_budget_of_values() {
    let sim = sim().await;
    let gw = gateway(&sim).await;
    let zeros = format!("[{}0]", "0,".repeat(3_000_000));
    let post = |path: &'static str, body: String| {
        let url = format!("http://{}{path}", gw.http_addr);
        async move {
            let resp = reqwest::Client::new()
                .post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), resp.json::<serde_json::Value>().await.unwrap())
        }
    };
    for (path, body) in [
        ("/v1/chat/completions", format!(r#"{{"model":"{LLM}","messages":{zeros}}}"#)),
        ("/llm", format!(r#"{{"model":"{LLM}","messages":{zeros}}}"#)),
        ("/text-to-image", format!(r#"{{"model_id":"{SD}","prompt":{zeros}}}"#)),
    ] {
        let (status, body) = post(path, body).await;
        assert_eq!(status, 422, "{path}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("more than 100000 JSON values"), "{path}: {body}");
    }
    let messages = json!([{"role": "user", "content": "hi"}]);
    let unknown = format!(r#"{{"model":"{LLM}","messages":{messages},"junk":{zeros}}}"#);
    let (status, body) = post("/v1/chat/completions", unknown).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "chat.completion", "{body}");
    gw.shutdown().await;
}
