//! `/audio-to-text` measures audio in-process: the real binary, started with a `PATH` holding
//! no program at all (so no `ffprobe`), prices uploads of every format a client may send by
//! their whole seconds, and answers an unreadable one with the client's 422.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use livepeer_sim::{Sim, SimConfig, SimModel};
use reqwest::multipart::{Form, Part};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_livepeer-gateway");
const WHISPER: &str = "openai/whisper-large-v3";

/// A committed fixture from `crates/livepeer-gateway/testdata/audio/`.
fn fixture(name: &str) -> Vec<u8> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/audio");
    std::fs::read(root.join(name)).unwrap()
}

/// The gateway binary with an empty `PATH`, serving `orch`; returns it and its public address.
fn spawn_without_programs(orch: &str, empty: &std::path::Path) -> (Child, String) {
    let mut child = Command::new(BIN)
        .args(["--http-addr", "127.0.0.1:0", "--cli-addr", "127.0.0.1:0", "--log-format", "json"])
        .args(["--rtmp-addr", "127.0.0.1:0"])
        .args(["--orch-addr", orch])
        .env_clear()
        .env("PATH", empty)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("gateway exited before listening").unwrap();
        let Ok(v) = serde_json::from_str::<Value>(&line) else { continue };
        if v["fields"]["message"] == "gateway listening" {
            break v["fields"]["http_addr"].as_str().unwrap().to_owned();
        }
    };
    // Keep draining the log so the gateway never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    (child, addr)
}

async fn transcribe(addr: &str, name: &str, audio: Vec<u8>) -> reqwest::Response {
    let form = Form::new()
        .text("model_id", WHISPER)
        .part("audio", Part::bytes(audio).file_name(name.to_owned()));
    let url = format!("http://{addr}/audio-to-text");
    reqwest::Client::new().post(url).multipart(form).send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_to_text_needs_no_ffprobe() {
    let sim = Sim::start(SimConfig {
        name: "whisper".into(),
        models: vec![SimModel::new("audio-to-text", WHISPER).price(1, 1).capacity(8)],
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let empty = tempfile::tempdir().unwrap();
    let (mut child, addr) = spawn_without_programs(sim.url(), empty.path());

    // The first answer may wait for discovery to find the orchestrator.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let resp = transcribe(&addr, "a.wav", fixture("tone-2.5s.wav")).await;
        if resp.status() == 200 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{}", resp.text().await.unwrap());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (name, whole) in [
        ("tone-2.5s.wav", 2),
        ("tone-3.5s.mp3", 3),
        ("tone-4.5s.flac", 4),
        ("tone-5.5s.ogg", 5),
        ("tone-2.5s.m4a", 2),
        ("tone-1.5s.aac", 1),
        ("tone-3.5s.webm", 3),
        ("tone-4.5s-live.webm", 4),
    ] {
        let resp = transcribe(&addr, name, fixture(name)).await;
        assert_eq!(resp.status(), 200, "{name}: {}", resp.text().await.unwrap());
        let sent = sim.last_ai_request().unwrap();
        let metadata = sent.fields.iter().find(|(k, _)| k == "metadata").unwrap();
        assert_eq!(metadata.1, format!(r#"{{"duration":"{whole}"}}"#), "{name}");
    }
    let calls = sim.ai_requests();
    let resp = transcribe(&addr, "noise.mp3", b"ID3 but not really audio".repeat(50)).await;
    assert_eq!(resp.status(), 422);
    let body: Value = resp.json().await.unwrap();
    let msg = body["detail"][0]["msg"].as_str().unwrap_or_default();
    assert!(msg.starts_with("Unable to calculate duration"), "{body}");
    assert_eq!(sim.ai_requests(), calls, "an unreadable upload is never paid for or sent");

    child.kill().unwrap();
    child.wait().unwrap();
}
