//! A hostile client on the less audited surfaces (audio probing, multipart forms, the live
//! trickle channels the gateway hosts), over real sockets against a real gateway and
//! simulated orchestrators.

use std::time::Duration;

use livepeer_gateway::Gateway;
use livepeer_sim::{Sim, SimConfig, SimModel};
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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

/// A live stream of a `noop` simulator on a gateway whose subscribers are never let go for
/// stalling within the test: they stand for slow but steady readers, which never stall.
async fn live_stream() -> (Sim, Gateway, String) {
    let models = vec![SimModel::new("live-video-to-video", "noop").price(0, 1).capacity(4)];
    let sim = Sim::start(SimConfig { name: "live".into(), models, ..SimConfig::default() })
        .await
        .unwrap();
    let mut c = config(&[sim.url()]);
    c.live.trickle_stall_timeout = Duration::from_secs(300);
    let gw = start(c).await;
    let url = format!("http://{}/live/video-to-video/cam/start", gw.http_addr);
    // The first start may wait for discovery to find the orchestrator.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let started = loop {
        let resp = reqwest::Client::new().post(&url).json(&json!({})).send().await.unwrap();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if body["publish_url"].is_string() {
            break body;
        }
        assert!(tokio::time::Instant::now() < deadline, "the stream did not start: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let publish = started["publish_url"].as_str().unwrap();
    let path = publish.split_once("/ai/trickle/").unwrap().1.to_owned();
    (sim, gw, format!("/ai/trickle/{path}"))
}

/// A subscriber to `path` on a socket that takes a few kilobytes at a time: it reads the
/// head of the answer and then reads no more until asked.
async fn slow_subscriber(gw: &Gateway, path: &str) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(gw.http_addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: gw\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = [0u8; 1024];
    let n = stream.read(&mut head).await.unwrap();
    assert!(head[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&head[..n]));
    stream
}

/// Whether the chunked answer on `stream` ends whole (its last chunk), rather than cut.
async fn ends_whole(mut stream: TcpStream) -> bool {
    let mut tail = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    let read = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => {
                    tail.extend_from_slice(&buf[..n]);
                    if tail.ends_with(b"\r\n0\r\n\r\n") {
                        return true;
                    }
                    let keep = tail.len().saturating_sub(16);
                    tail.drain(..keep);
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .expect("the answer neither ended nor was cut")
}

/// A live client's slow subscribers each pinned a segment of the channel after the window
/// (3 segments) evicted it: 16 subscribers, 16 segments of 16 MiB, 256 MiB a channel held for
/// as long as they read, where the window holds 48 MiB. Now the bytes of evicted segments a
/// channel keeps for its readers are at most the window's: past that, the subscribers of the
/// oldest are let go (their answers cut) and the newest still finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_subscribers_pin_no_more_evicted_segments_than_a_window_holds() {
    let (_sim, gw, channel) = live_stream().await;
    let segment = vec![7u8; (16 << 20) - 1024];
    let http = reqwest::Client::new();
    let mut readers = Vec::new();
    for seq in 0..8 {
        let url = format!("http://{}{channel}/{seq}", gw.http_addr);
        let resp = http.post(url).body(segment.clone()).send().await.unwrap();
        assert_eq!(resp.status(), 200, "segment {seq}");
        readers.push(slow_subscriber(&gw, &format!("{channel}/{seq}")).await);
    }
    // Segments 0–4 left the window (3 segments) with a reader each: 80 MiB, of which the
    // channel keeps 48 MiB, so the readers of 0 and 1 were let go. (The gateway's own reader
    // of the channel, waiting at its live edge for segment 8, may have evicted 5 too, and so
    // had 2's let go.)
    let mut whole = Vec::new();
    for reader in readers {
        whole.push(ends_whole(reader).await);
    }
    assert_eq!(&whole[..2], [false, false], "{whole:?}");
    assert_eq!(&whole[3..], [true; 5], "{whole:?}");
}

/// A customer's requests for models nobody offers are refused before any orchestrator; each
/// made-up name (up to 256 characters) was kept as the model of its ledger row, so the key's
/// `/v1/usage` grew a line per name for good. Now such rows name no model: the answer has one
/// line for them however many names were tried, and offered models keep theirs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_model_names_do_not_grow_the_usage_answer() {
    let sim = TextSim::new("ledger").start().await;
    let dir = tempfile::tempdir().unwrap();
    let gw = start(crate::keys::keys_config(&[sim.url()], dir.path(), None)).await;
    let (_, secret) = crate::keys::create(&gw, json!({"name": "a"})).await;
    eventually(Duration::from_secs(10), "the orchestrator is found", || async {
        crate::keys::t2i_as(&gw, Some(&secret), SD).await.status() == 200
    })
    .await;
    let names = 300;
    for i in 0..names {
        let model = format!("{i:0>256}");
        let resp = crate::keys::t2i_as(&gw, Some(&secret), &model).await;
        assert_eq!(resp.status(), 503, "{}", resp.text().await.unwrap());
    }
    let usage = |gw: &Gateway| {
        let url = format!("http://{}/v1/usage", gw.http_addr);
        reqwest::Client::new().get(url).bearer_auth(&secret).send()
    };
    // The ledger is written behind the answers: wait for every row.
    let mut body = Value::Null;
    for _ in 0..200 {
        body = usage(&gw).await.unwrap().json().await.unwrap();
        if body["requests"].as_u64() >= Some(names + 1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(body["requests"].as_u64(), Some(names + 1), "{body}");
    let text = usage(&gw).await.unwrap().text().await.unwrap();
    let lines = body["by_model"].as_array().unwrap();
    let models: Vec<&str> = lines.iter().map(|l| l["model"].as_str().unwrap()).collect();
    assert_eq!(models.len(), 2, "{} lines, {} bytes", models.len(), text.len());
    assert!(models.contains(&SD) && models.contains(&""), "{models:?}");
}

/// Odd sequence numbers and channel names on the trickle channels the gateway hosts are
/// answered (refused, or resolved to the live edge), never a panic or a hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_sequence_numbers_and_names_on_hosted_channels_are_answered() {
    let (_sim, gw, channel) = live_stream().await;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let at = |path: &str| format!("http://{}{path}", gw.http_addr);
    for (seq, want) in [("-3", 400), ("x", 400), ("9223372036854775808", 400), ("1e3", 400)] {
        let url = at(&format!("{channel}/{seq}"));
        let posted = http.post(&url).body("x").send().await.unwrap().status().as_u16();
        let got = http.get(&url).send().await.unwrap().status().as_u16();
        assert_eq!((posted, got), (want, want), "seq {seq}");
    }
    // The largest sequence number is written; the next one (-1) follows it, and a reader of
    // the current segment (-2) gets it.
    let max = i64::MAX.to_string();
    for seq in [max.as_str(), "-1"] {
        let resp = http.post(at(&format!("{channel}/{seq}"))).body("abc").send().await.unwrap();
        assert_eq!(resp.status(), 200, "seq {seq}");
    }
    let resp = http.get(at(&format!("{channel}/-2"))).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "abc");
    for path in ["/ai/trickle/..%2Fx/0", "/ai/trickle/%00/0", "/ai/trickle/nope/0"] {
        let status = http.get(at(path)).send().await.unwrap().status().as_u16();
        assert_eq!(status, 404, "{path}");
    }
}

/// The 4.5 s FLAC fixture with its STREAMINFO stating `samples` (36 bits) in all.
fn flac_stating(samples: u64) -> Vec<u8> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/audio");
    let mut flac = std::fs::read(root.join("tone-4.5s.flac")).unwrap();
    assert_eq!(&flac[..4], b"fLaC");
    assert_eq!(flac[4] & 0x7F, 0, "STREAMINFO first");
    // STREAMINFO's data starts at 8; its bits 80..144 hold the sample rate (20 bits), the
    // channels (3), the bits per sample (5) and the total samples (36).
    let at = 8 + 10;
    let mut word = u64::from_be_bytes(flac[at..at + 8].try_into().unwrap());
    word = (word & !((1 << 36) - 1)) | (samples & ((1 << 36) - 1));
    flac[at..at + 8].copy_from_slice(&word.to_be_bytes());
    flac
}

/// A codec header stating far more audio than the file holds (a 12 kB FLAC stating 2^36
/// samples: 99 days at 8 kHz) was priced as it states, as the orchestrator's probe would
/// bill it: an unauthenticated client had the gateway pay a payment's whole bound for a tiny
/// file. Audio-to-text's units are now capped as every other pipeline's are: 422, nothing
/// sent to an orchestrator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_stating_more_than_a_day_is_refused_before_any_orchestrator() {
    let sim = whisper_sim().await;
    let gw = gateway(&sim).await;
    eventually(Duration::from_secs(10), "the orchestrator is found", || async {
        transcribe(&gw, wav_stating(8000, 8000 * 2)).await.0 == 200
    })
    .await;
    // The fixture as it is, and stating just under a day at its rate, are served.
    let rate = 8_000;
    let (status, body) = transcribe(&gw, flac_stating(rate * 86_399)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(priced_seconds(&sim), "86399");

    let before = sim.ai_requests();
    let (status, body) = transcribe(&gw, flac_stating((1 << 36) - 1)).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["field"], "audio", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("at most 86400 s"), "{body}");
    assert_eq!(sim.ai_requests(), before, "nothing reaches an orchestrator");
}
