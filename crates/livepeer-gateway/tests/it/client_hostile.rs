//! A hostile client on the less audited surfaces (audio probing, …), over real sockets
//! against a real gateway and simulated orchestrators.

use std::time::Duration;

use livepeer_gateway::Gateway;
use livepeer_sim::{Sim, SimConfig, SimModel};
use reqwest::multipart::{Form, Part};
use serde_json::Value;

use crate::support::*;

const WHISPER: &str = "openai/whisper-large-v3";

async fn whisper_sim() -> Sim {
    let models = vec![SimModel::new("audio-to-text", WHISPER).price(1, 1).capacity(8)];
    Sim::start(SimConfig { name: "whisper".into(), models, ..SimConfig::default() }).await.unwrap()
}

async fn gateway(sim: &Sim) -> Gateway {
    let mut c = config(&[sim.url()]);
    c.ai.request_timeout = Duration::from_secs(8);
    start(c).await
}

/// A mono 16-bit PCM WAV at 8 kHz holding `samples` samples, whose RIFF and `data` chunks
/// state `stated` bytes of data (a WAV written to a pipe states `0xFFFFFFFF`).
fn wav_stating(samples: u32, stated: u32) -> Vec<u8> {
    let mut b = b"RIFF".to_vec();
    b.extend_from_slice(&stated.saturating_add(36).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt \x10\0\0\0\x01\0\x01\0");
    b.extend_from_slice(&8000u32.to_le_bytes());
    b.extend_from_slice(&16000u32.to_le_bytes());
    b.extend_from_slice(&[2, 0, 16, 0]);
    b.extend_from_slice(b"data");
    b.extend_from_slice(&stated.to_le_bytes());
    b.extend((0..samples).flat_map(|i| (((i % 40) as i16 - 20) * 100).to_le_bytes()));
    b
}

async fn transcribe(gw: &Gateway, audio: Vec<u8>) -> (u16, Value) {
    let form = Form::new()
        .text("model_id", WHISPER)
        .part("audio", Part::bytes(audio).file_name("a.wav").mime_str("audio/wav").unwrap());
    let url = format!("http://{}/audio-to-text", gw.http_addr);
    let resp = reqwest::Client::new().post(url).multipart(form).send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

/// The duration the gateway priced the last transcription at, as it told the orchestrator.
fn priced_seconds(sim: &Sim) -> String {
    let last = sim.last_ai_request().expect("the orchestrator got no request");
    let metadata = last.fields.iter().find(|(k, _)| k == "metadata").expect("metadata").1.clone();
    let metadata: Value = serde_json::from_str(&metadata).unwrap();
    metadata["duration"].as_str().unwrap().to_owned()
}

/// A WAV whose `data` chunk states more bytes than the upload holds is measured by the bytes
/// it holds, as go-livepeer's avformat probe measures it: one second of audio stating 4 GB was
/// priced as 268,435 seconds (74 hours), and 64 bytes stating 4 GB as much.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wav_stating_more_data_than_it_holds_is_priced_by_what_it_holds() {
    let sim = whisper_sim().await;
    let gw = gateway(&sim).await;
    let stated = 0xFFFF_FFD0;
    // The first answer may wait for discovery to find the orchestrator.
    eventually(Duration::from_secs(10), "the orchestrator is found", || async {
        transcribe(&gw, wav_stating(8000, 8000 * 2)).await.0 == 200
    })
    .await;

    let (status, body) = transcribe(&gw, wav_stating(8000, stated)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(priced_seconds(&sim), "1", "one second held, 74 hours stated");

    let before = sim.ai_requests();
    let (status, body) = transcribe(&gw, wav_stating(32, stated)).await;
    assert_eq!(status, 422, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("at least 1 s"), "{body}");
    assert_eq!(sim.ai_requests(), before, "nothing reaches an orchestrator");
}

/// A form of one second of audio followed by `junk` empty parts, as raw multipart bytes.
fn form_with_parts(junk: usize) -> Vec<u8> {
    let mut body = b"--X\r\nContent-Disposition: form-data; name=\"model_id\"\r\n\r\n".to_vec();
    body.extend_from_slice(WHISPER.as_bytes());
    body.extend_from_slice(b"\r\n--X\r\nContent-Disposition: form-data; name=\"audio\"; ");
    body.extend_from_slice(b"filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\n");
    body.extend(wav_stating(8000, 16000));
    body.extend_from_slice(b"\r\n");
    for _ in 0..junk {
        body.extend_from_slice(b"--X\r\n\r\n\r\n");
    }
    body.extend_from_slice(b"--X--\r\n");
    body
}

async fn post_form(gw: &Gateway, body: Vec<u8>) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("http://{}/audio-to-text", gw.http_addr))
        .header("content-type", "multipart/form-data; boundary=X")
        .body(body)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

/// A form's parts are at most Go's 1000 (`multipartmaxparts`, what go-livepeer's orchestrators
/// parse with). Each part cost far more held than its bytes: 5.8 million empty parts in a
/// 50 MiB body took 550 MB and 15 s to gather, while the body budget counted 50 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_of_more_parts_than_go_reads_is_refused() {
    let sim = whisper_sim().await;
    let gw = gateway(&sim).await;
    eventually(Duration::from_secs(10), "the orchestrator is found", || async {
        post_form(&gw, form_with_parts(0)).await.0 == 200
    })
    .await;
    // Two named parts and 998 empty ones: 1000 in all, served.
    let (status, body) = post_form(&gw, form_with_parts(998)).await;
    assert_eq!(status, 200, "{body}");

    let before = sim.ai_requests();
    let (status, body) = post_form(&gw, form_with_parts(100_000)).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["type"], "invalid_multipart", "{body}");
    assert_eq!(body["error"]["field"], "body", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("1000 parts"), "{body}");
    assert_eq!(sim.ai_requests(), before, "nothing reaches an orchestrator");
}
