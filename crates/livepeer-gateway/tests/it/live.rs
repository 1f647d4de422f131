//! Live video-to-video through the gateway: a client publishes ffmpeg-made MPEG-TS segments
//! into the gateway's trickle channel and reads the processed ones back, while the gateway
//! relays them to simulated orchestrators over real sockets.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use livepeer_gateway::Gateway;
use livepeer_gateway::config::{Config, RemoteSigner};
use livepeer_pm::LocalSigner;
use livepeer_sim::{LiveMode, Sim, SimConfig, SimModel};
use livepeer_trickle::{
    ClientConfig, HttpPublisher, HttpSubscriber, Publish, ReadSegment, Subscribe, WriteSegment,
    read_segment,
};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::support::*;

/// Frames per generated segment (0.48 s at 25 fps).
const FRAMES: usize = 12;
const SEGMENT_TIME: Duration = Duration::from_millis(480);

/// Six MPEG-TS segments of a 320×240 H.264 test pattern, each starting on a keyframe.
fn segments() -> &'static [Bytes] {
    static SEGMENTS: OnceLock<Vec<Bytes>> = OnceLock::new();
    SEGMENTS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let pattern = dir.path().join("seg%03d.ts");
        let status = std::process::Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i"])
            .arg("testsrc=size=320x240:rate=25")
            .args(["-t", "2.88", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"])
            .args(["-g", "12", "-keyint_min", "12", "-sc_threshold", "0"])
            .args(["-f", "segment", "-segment_time", "0.48", "-segment_format", "mpegts"])
            .arg(&pattern)
            .status()
            .expect("ffmpeg must be installed for the live tests");
        assert!(status.success());
        let mut out = Vec::new();
        for i in 0.. {
            let path = dir.path().join(format!("seg{i:03}.ts"));
            let Ok(data) = std::fs::read(&path) else { break };
            out.push(Bytes::from(data));
        }
        assert_eq!(out.len(), 6, "ffmpeg made {} segments", out.len());
        out
    })
}

/// Codec and frame count of one MPEG-TS segment, by ffprobe.
fn probe(data: &[u8]) -> (String, usize) {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), data).unwrap();
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args(["-show_entries", "stream=codec_name,nb_read_frames", "-of", "json"])
        .arg(file.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "ffprobe: {}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = &v["streams"][0];
    let frames = s["nb_read_frames"].as_str().and_then(|n| n.parse().ok()).unwrap_or(0);
    (s["codec_name"].as_str().unwrap_or_default().to_owned(), frames)
}

/// A simulated orchestrator offering live-video-to-video `noop`; unset settings keep the
/// defaults most tests want (cleartext, capacity 4, off-chain, free).
struct LiveSim {
    name: String,
    tls: bool,
    capacity: u32,
    eth: Option<u8>,
    price: i64,
}

impl LiveSim {
    fn new(name: &str) -> Self {
        Self { name: name.into(), tls: false, capacity: 4, eth: None, price: 0 }
    }

    fn tls(mut self) -> Self {
        self.tls = true;
        self
    }

    fn capacity(mut self, streams: u32) -> Self {
        self.capacity = streams;
        self
    }

    /// On-chain, with an address ending in the byte `n`.
    fn eth(mut self, n: u8) -> Self {
        self.eth = Some(n);
        self
    }

    /// Wei per pixel.
    fn price(mut self, wei: i64) -> Self {
        self.price = wei;
        self
    }

    async fn start(self) -> Sim {
        Sim::start(SimConfig {
            name: self.name,
            tls: self.tls,
            eth_address: self.eth.map(|n| {
                let mut a = [0u8; 20];
                a[19] = n;
                livepeer_pm::Address::from(a)
            }),
            models: vec![
                SimModel::new("live-video-to-video", "noop")
                    .price(self.price, 1)
                    .capacity(self.capacity),
            ],
            live_event_interval: Duration::from_millis(200),
            live_payment_interval: Duration::from_millis(500),
            ..SimConfig::default()
        })
        .await
        .unwrap()
    }
}

fn live_config(sims: &[&Sim]) -> Config {
    let urls: Vec<&str> = sims.iter().map(|s| s.url()).collect();
    let mut c = config(&urls);
    c.live.out_segment_timeout = Duration::from_millis(1500);
    c.live.events_timeout = Duration::from_secs(2);
    c.live.status_linger = Duration::from_secs(5);
    c
}

fn trickle() -> (reqwest::Client, ClientConfig) {
    let config = ClientConfig::default();
    (config.client().unwrap(), config)
}

/// The `Authorization` these tests' client sends on every request, `/start` and the control
/// routes alike, as a go-livepeer-style client does: it owns the streams it starts.
const OWNER: &str = "Bearer live-test-client";

/// A client that sends [`OWNER`].
fn owner() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, OWNER.parse().unwrap());
    reqwest::Client::builder().default_headers(headers).build().unwrap()
}

async fn start_stream(gw: &Gateway, name: &str, body: Value) -> Value {
    let resp = owner()
        .post(format!("http://{}/live/video-to-video/{name}/start", gw.http_addr))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    body
}

async fn status(gw: &Gateway, name: &str) -> Value {
    owner()
        .get(format!("http://{}/live/video-to-video/{name}/status", gw.http_addr))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Publishes one segment as a live source would: in four chunks over its duration.
async fn publish_live(publisher: &mut HttpPublisher, data: &Bytes, duration: Duration) {
    let mut writer = publisher.segment().await.unwrap();
    let step = data.len().div_ceil(4);
    for chunk in data.chunks(step) {
        writer.write(data.slice_ref(chunk)).await.unwrap();
        tokio::time::sleep(duration / 4).await;
    }
    writer.finish().await.unwrap();
}

/// Output segments as the client sees them: (arrival of the first byte, bytes).
type Received = Arc<Mutex<Vec<(Instant, Bytes)>>>;

fn read_output(url: &str) -> (Received, tokio::task::JoinHandle<()>) {
    read_output_from(url, 0)
}

/// As [`read_output`], from segment `start` on.
fn read_output_from(url: &str, start: i64) -> (Received, tokio::task::JoinHandle<()>) {
    let (client, config) = trickle();
    let mut sub = HttpSubscriber::new(client, url, start, config).unwrap();
    let received: Received = Arc::default();
    let sink = received.clone();
    let task = tokio::spawn(async move {
        while let Ok(Some(mut reader)) = sub.segment().await {
            let mut first = None;
            let mut data = Vec::new();
            while let Ok(Some(chunk)) = reader.chunk().await {
                first.get_or_insert_with(Instant::now);
                data.extend_from_slice(&chunk);
            }
            if let Some(first) = first {
                sink.lock().unwrap().push((first, Bytes::from(data)));
            }
        }
    });
    (received, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stream_runs_end_to_end_and_its_segments_probe_as_video() {
    let sim = LiveSim::new("live-a").start().await;
    let gw = start(live_config(&[&sim])).await;
    let started =
        start_stream(&gw, "cam1", json!({"pipeline": "noop", "params": {"prompt": "a"}})).await;
    assert_eq!(started["orchestrator"].as_str().unwrap().trim_end_matches('/'), sim.url());
    for field in ["publish_url", "subscribe_url", "control_url", "events_url", "status_url"] {
        assert!(started[field].as_str().unwrap().starts_with("http://"), "{field}");
    }
    let (outputs, reader) = read_output(started["subscribe_url"].as_str().unwrap());
    let (client, config) = trickle();
    let mut publisher =
        HttpPublisher::new(client, started["publish_url"].as_str().unwrap(), "video/MP2T", config)
            .unwrap();
    for seg in segments() {
        publish_live(&mut publisher, seg, SEGMENT_TIME).await;
    }
    eventually(Duration::from_secs(5), "six output segments", || async {
        outputs.lock().unwrap().len() == 6
    })
    .await;
    let out = outputs.lock().unwrap().clone();
    for (i, (_, data)) in out.iter().enumerate() {
        assert_eq!(data, &segments()[i], "segment {i} passes through unchanged");
        assert_eq!(probe(data), ("h264".to_owned(), FRAMES), "segment {i}");
    }
    let s = status(&gw, "cam1").await;
    assert_eq!(s["state"], "running", "{s}");
    assert_eq!(s["input"]["segments"], 6, "{s}");
    assert_eq!(s["output"]["segments"], 6, "{s}");
    assert_eq!(s["input"]["frames"], 6 * FRAMES, "{s}");
    // Rates depend on how fast this machine sent the segments: computed, not asserted on.
    assert!(s["input"]["fps"].as_f64().unwrap() > 0.0, "{s}");
    assert!(s["output"]["segments_per_second"].as_f64().unwrap() > 0.0, "{s}");
    assert!(s["latency_ms"]["average"].as_f64().is_some(), "{s}");
    assert_eq!(s["last_status"]["type"], "status", "{s}");
    // go-livepeer's status document is the runner's last status event: its members are
    // at the top level too, but for those the gateway's document has (its `state`).
    for member in ["type", "timestamp", "inference_status", "input_status"] {
        assert_eq!(s[member], s["last_status"][member], "{member}: {s}");
    }
    assert_eq!(s["gateway_status"], json!({}), "{s}");
    assert_eq!(s["pipeline"], "noop", "{s}");
    assert_eq!(sim.live().segments_in, 6);
    let (code, admin) = admin_get(&gw, "/live/streams").await;
    assert_eq!(code, 200);
    assert_eq!(admin["streams"][0]["stream"], "cam1", "{admin}");

    // The client closes its input: the stream ends, the orchestrator's stream too.
    publisher.close().await.unwrap();
    eventually(Duration::from_secs(5), "the stream to stop", || async {
        status(&gw, "cam1").await["state"] == "stopped"
    })
    .await;
    eventually(Duration::from_secs(5), "the orchestrator to end its stream", || async {
        sim.live().active == 0
    })
    .await;
    tokio::time::timeout(Duration::from_secs(5), reader).await.unwrap().unwrap();
    // A client that subscribes only after the end still reads the last outputs its channel's
    // window held, then the end, instead of a 404. The window is three segments, one of which
    // may be the empty one the first reader asked for ahead of the end.
    let (late, reader) = read_output_from(started["subscribe_url"].as_str().unwrap(), 4);
    tokio::time::timeout(Duration::from_secs(5), reader).await.unwrap().unwrap();
    let late: Vec<Bytes> = late.lock().unwrap().iter().map(|(_, data)| data.clone()).collect();
    assert_eq!(late, segments()[4..].to_vec(), "the window's last two outputs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn updates_reach_the_orchestrator_and_events_reach_the_client() {
    let sim = LiveSim::new("live-ctl").start().await;
    let gw = start(live_config(&[&sim])).await;
    let started = start_stream(&gw, "ctl", json!({"params": {"prompt": "first"}})).await;
    let http = owner();
    let resp = http
        .post(started["update_url"].as_str().unwrap())
        .json(&json!({"prompt": "second"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    eventually(Duration::from_secs(5), "the update to reach the runner", || async {
        sim.live().control.contains(&json!({"prompt": "second"}))
    })
    .await;
    // Publishing into the client's own control channel is an update too.
    let (client, config) = trickle();
    let mut control = HttpPublisher::new(
        client.clone(),
        started["control_url"].as_str().unwrap(),
        "application/json",
        config.clone(),
    )
    .unwrap();
    livepeer_trickle::publish_segment(&mut control, Bytes::from(r#"{"prompt":"third"}"#))
        .await
        .unwrap();
    eventually(Duration::from_secs(5), "the channel update to reach the runner", || async {
        sim.live().control.contains(&json!({"prompt": "third"}))
    })
    .await;
    // Events: the runner's status events arrive tagged with the stream and the orchestrator,
    // and the params update shows in the status.
    let mut events =
        HttpSubscriber::new(client, started["events_url"].as_str().unwrap(), 0, config).unwrap();
    let mut reader = events.segment().await.unwrap().unwrap();
    let event: Value =
        serde_json::from_slice(&read_segment(&mut reader, 1 << 20).await.unwrap()).unwrap();
    assert_eq!(event["stream_id"], "ctl");
    assert_eq!(event["orchestrator"].as_str().unwrap().trim_end_matches('/'), sim.url());
    assert!(event["event"]["type"].is_string(), "{event}");
    eventually(Duration::from_secs(5), "the status to show the last params", || async {
        status(&gw, "ctl").await["last_status"]["inference_status"]["last_params"]
            == json!({"prompt": "third"})
    })
    .await;
    assert_eq!(status(&gw, "ctl").await["params_version"], 3);
}

/// A client may leave its control channel silent for longer than the trickle idle limit:
/// the channel stays open while the stream runs, and a message sent after that is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_control_channel_silent_past_the_idle_limit_still_carries_updates() {
    let sim = LiveSim::new("live-idle").start().await;
    let mut c = live_config(&[&sim]);
    c.live.trickle_idle_timeout = Duration::from_millis(600);
    let gw = start(c).await;
    let started = start_stream(&gw, "quiet", json!({"params": {"prompt": "first"}})).await;
    let running = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let input = pump(started["publish_url"].as_str().unwrap(), running.clone());
    // The input is written throughout; the control channel is not, for five idle limits, and
    // the hub sweeps every half limit.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(status(&gw, "quiet").await["state"], "running");
    let (client, config) = trickle();
    let mut control = HttpPublisher::new(
        client,
        started["control_url"].as_str().unwrap(),
        "application/json",
        config,
    )
    .unwrap();
    livepeer_trickle::publish_segment(&mut control, Bytes::from(r#"{"prompt":"late"}"#))
        .await
        .unwrap();
    eventually(Duration::from_secs(5), "the late control message to reach the runner", || async {
        sim.live().control.contains(&json!({"prompt": "late"}))
    })
    .await;
    running.store(false, std::sync::atomic::Ordering::Relaxed);
    input.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_requests_get_clear_errors() {
    let sim = LiveSim::new("live-bad").capacity(1).start().await;
    let gw = start(live_config(&[&sim])).await;
    let http = owner();
    let url = |p: &str| format!("http://{}/live/video-to-video/{p}", gw.http_addr);
    let cases = [
        ("bad%20name/start", json!({}), 422, "stream"),
        ("x-out/start", json!({}), 422, "stream"),
        ("ok/start", json!({"params": [1]}), 422, "params"),
        ("ok/start", json!({"pipeline": ""}), 422, "pipeline"),
        ("ok/start", json!({"nonsense": 1}), 422, "body"),
    ];
    for (path, body, code, field) in cases {
        let resp = http.post(url(path)).json(&body).send().await.unwrap();
        assert_eq!(resp.status(), code, "{path} {body}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["field"], field, "{path} {v}");
    }
    // A name that is not UTF-8: JSON, as every other refusal, not axum's text.
    for req in [http.post(url("%FF/start")).json(&json!({})), http.get(url("%FF/status"))] {
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 400);
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["type"], "invalid_request", "{v}");
        assert_eq!(v["error"]["field"], "path", "{v}");
    }
    let resp = http.post(url("nope/update")).json(&json!({})).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    let resp = http.get(url("nope/status")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    let resp = http
        .post(url("mtx/start"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("source_id=1&source_type=rtmpconn&query=")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);
    // A pipeline nobody offers: 503 with Retry-After, naming it.
    let resp =
        http.post(url("ok/start")).json(&json!({"pipeline": "comfyui"})).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    let v: Value = resp.json().await.unwrap();
    assert!(v["error"]["message"].as_str().unwrap().contains("comfyui"), "{v}");
    // Capacity 1: a second stream is refused by the orchestrator and gets 503, the first runs.
    start_stream(&gw, "one", json!({})).await;
    let resp = http.post(url("two/start")).json(&json!({})).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    let resp = http.post(url("one/update")).body("not json").send().await.unwrap();
    assert_eq!(resp.status(), 422);
    // Stop: the stream ends and its orchestrator is released.
    let resp = http.post(url("one/stop")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["state"], "stopped", "{v}");
    eventually(Duration::from_secs(5), "the runner to stop", || async { sim.live().active == 0 })
        .await;
}

/// Publishes the test segments over and over until the flag is cleared.
fn pump(url: &str, running: Arc<std::sync::atomic::AtomicBool>) -> tokio::task::JoinHandle<u64> {
    let (client, config) = trickle();
    let mut publisher = HttpPublisher::new(client, url, "video/MP2T", config).unwrap();
    tokio::spawn(async move {
        let mut sent = 0u64;
        while running.load(std::sync::atomic::Ordering::Relaxed) {
            let seg = &segments()[(sent % 6) as usize];
            publish_live(&mut publisher, seg, SEGMENT_TIME).await;
            sent += 1;
        }
        publisher.close().await.unwrap();
        sent
    })
}

fn serving<'a>(s: &Value, sims: &[&'a Sim]) -> &'a Sim {
    let url = s["orchestrator"].as_str().unwrap().trim_end_matches('/').to_owned();
    sims.iter().find(|sim| sim.url() == url).copied().unwrap()
}

/// How long after `fault` the client received the first byte of a segment that began after it.
async fn recovery_after(outputs: &Received, fault: Instant) -> Duration {
    eventually(Duration::from_secs(10), "output to resume", || async {
        outputs.lock().unwrap().iter().any(|(t, _)| *t > fault)
    })
    .await;
    let out = outputs.lock().unwrap();
    out.iter().find(|(t, _)| *t > fault).map(|(t, _)| *t - fault).unwrap()
}

async fn swap_test(fault: impl FnOnce(&Sim)) -> (Value, Duration) {
    let a = LiveSim::new("live-1").start().await;
    let b = LiveSim::new("live-2").start().await;
    let gw = start(live_config(&[&a, &b])).await;
    let started = start_stream(&gw, "swap", json!({})).await;
    let (outputs, _reader) = read_output(started["subscribe_url"].as_str().unwrap());
    let running = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let pumping = pump(started["publish_url"].as_str().unwrap(), running.clone());
    eventually(Duration::from_secs(5), "two output segments", || async {
        outputs.lock().unwrap().len() >= 2
    })
    .await;
    let first = status(&gw, "swap").await;
    let victim = serving(&first, &[&a, &b]);
    let at = Instant::now();
    fault(victim);
    eventually(Duration::from_secs(10), "a swap", || async {
        status(&gw, "swap").await["swaps"].as_array().is_some_and(|s| !s.is_empty())
    })
    .await;
    let recovery = recovery_after(&outputs, at).await;
    // Output keeps coming from the replacement.
    recovery_after(&outputs, Instant::now()).await;
    let after = status(&gw, "swap").await;
    assert_ne!(after["orchestrator"], first["orchestrator"], "{after}");
    running.store(false, std::sync::atomic::Ordering::Relaxed);
    pumping.await.unwrap();
    // Every segment after the swap is whole video.
    let out = outputs.lock().unwrap().clone();
    let (_, last) = out.last().unwrap();
    assert_eq!(probe(last), ("h264".to_owned(), FRAMES));
    (after, recovery)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_serving_orchestrator_swaps_and_output_resumes() {
    // Output resuming is the event `swap_test` waits for; how fast it resumes is a figure to
    // read here (and in BENCHMARKS.md), not a wall-clock assertion that a loaded machine breaks.
    let (status, recovery) = swap_test(|sim| sim.stop()).await;
    eprintln!("output resumed {recovery:?} after the kill; swap: {}", status["swaps"][0]);
    let swap = &status["swaps"][0];
    assert!(swap["recovery_ms"].as_u64().is_some(), "{status}");
    assert!(!swap["to"].as_str().unwrap().is_empty(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stalled_output_is_replaced() {
    let (status, recovery) = swap_test(|sim| sim.set_live_mode(LiveMode::StallOutput)).await;
    // Detection takes the configured 1.5 s of silence; the swap itself is quick.
    eprintln!("output resumed {recovery:?} after the stall began");
    assert!(status["swaps"][0]["reason"].as_str().unwrap().contains("no output"), "{status}");
}

/// Output that drips a byte every 500 ms into a segment that never ends reset the output
/// watchdog with each byte: the runner kept the stream, and its payments, for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dripping_output_is_replaced() {
    let (status, _) = swap_test(|sim| sim.set_live_mode(LiveMode::DripOutput)).await;
    assert!(status["swaps"][0]["reason"].as_str().unwrap().contains("no output"), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn silent_events_are_replaced() {
    let (status, _) = swap_test(|sim| sim.set_live_mode(LiveMode::MuteEvents)).await;
    assert!(status["swaps"][0]["reason"].as_str().unwrap().contains("no event"), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn payments_arrive_on_schedule_and_stop_with_the_stream() {
    const KEY: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
    const OTHER_KEY: &str = "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a";
    let sim = LiveSim::new("live-paid").eth(9).price(1).start().await;
    let mut c = live_config(&[&sim]);
    c.signer = Some(Arc::new(LocalSigner::from_hex(KEY).unwrap()));
    c.live.payment_interval = Duration::from_millis(500);
    // The stopped stream's status must outlive the second stream's first payments.
    c.live.status_linger = Duration::from_secs(60);
    let gw = start(c).await;
    let started = start_stream(&gw, "paid", json!({})).await;
    let running = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let pumping = pump(started["publish_url"].as_str().unwrap(), running.clone());
    // While input flows, payments keep coming: wait for several (however long the machine takes).
    eventually(Duration::from_secs(30), "four payments while input flows", || async {
        sim.live().payments >= 4
    })
    .await;
    running.store(false, std::sync::atomic::Ordering::Relaxed);
    pumping.await.unwrap();
    eventually(Duration::from_secs(5), "the stream to stop", || async {
        status(&gw, "paid").await["state"] == "stopped"
    })
    .await;
    eventually(Duration::from_secs(5), "the orchestrator to end its stream", || async {
        sim.live().active == 0
    })
    .await;
    // Every payment the gateway counts reached the orchestrator, and no other did; the gateway
    // also counts the prepaid minute its start call carried, which `/payment` does not see.
    let at_stop = sim.live().payments;
    let sent_at_stop = status(&gw, "paid").await["payments"]["sent"].as_u64().unwrap();
    assert_eq!(sent_at_stop, at_stop + 1, "gateway count vs orchestrator count");
    // Another gateway (another sender) then streams to the same orchestrator until it has paid
    // twice: had the first stream's payments gone on after its stop, they would show among these.
    let mut c = live_config(&[&sim]);
    c.signer = Some(Arc::new(LocalSigner::from_hex(OTHER_KEY).unwrap()));
    c.live.payment_interval = Duration::from_millis(500);
    let gw2 = start(c).await;
    let second = start_stream(&gw2, "paid2", json!({})).await;
    let running = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let pumping = pump(second["publish_url"].as_str().unwrap(), running.clone());
    eventually(Duration::from_secs(30), "two payments for the second stream", || async {
        status(&gw2, "paid2").await["payments"]["sent"].as_u64().unwrap_or(0) >= 3
    })
    .await;
    running.store(false, std::sync::atomic::Ordering::Relaxed);
    pumping.await.unwrap();
    eventually(Duration::from_secs(5), "the second stream to stop", || async {
        status(&gw2, "paid2").await["state"] == "stopped"
    })
    .await;
    let first = status(&gw, "paid").await;
    assert_eq!(first["payments"]["sent"], sent_at_stop, "the stopped stream paid again: {first}");
    let second_sent = status(&gw2, "paid2").await["payments"]["sent"].as_u64().unwrap();
    assert_eq!(
        sim.live().payments,
        at_stop + second_sent - 1,
        "payments continued after the first stream stopped"
    );
    let stats = sim.payments();
    assert!(stats.rejections.is_empty(), "{:?}", stats.rejections);
    assert_eq!(sim.live().stopped_for_balance, 0);
    // The orchestrator was paid at least for the time it billed, by both senders together.
    let ev = stats
        .ev_received
        .values()
        .try_fold(livepeer_pm::Ratio::default(), |sum, ev| sum.checked_add(ev));
    assert!(ev.unwrap() >= stats.fees_debited);
    assert!(sent_at_stop >= 5, "{first}");
    assert!(first["payments"]["tickets"].as_u64().unwrap() >= 1, "{first}");
}

/// An orchestrator that credits each interval payment's tickets and answers `/payment` with an
/// error keeps the stream's credit, as go-livepeer books it: the gateway goes on drawing on that
/// credit rather than paying a whole ticket again every interval (one ticket of EV 8·10⁹ wei
/// covers hundreds of half-second intervals at 1 wei a pixel).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payments_answered_with_an_error_keep_their_credit() {
    const KEY: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
    let sim = LiveSim::new("live-refuses-payments").eth(9).price(1).start().await;
    let mut c = live_config(&[&sim]);
    c.signer = Some(Arc::new(LocalSigner::from_hex(KEY).unwrap()));
    c.live.payment_interval = Duration::from_millis(500);
    let gw = start(c).await;
    let started = start_stream(&gw, "refused", json!({})).await;
    let running = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let pumping = pump(started["publish_url"].as_str().unwrap(), running.clone());
    eventually(Duration::from_secs(30), "a first interval payment", || async {
        sim.live().payments >= 1
    })
    .await;
    sim.set_live_mode(livepeer_sim::LiveMode::RefusePayments);
    let tickets = sim.payments().tickets_received;
    eventually(Duration::from_secs(30), "four refused payments", || async {
        sim.live().payments_refused >= 4
    })
    .await;
    // Booked as spent, each refused payment's credit was lost and the next paid a ticket.
    let more = sim.payments().tickets_received - tickets;
    assert!(more <= 1, "{more} tickets for four intervals already paid for");
    // Counted as failed, not as sent too.
    let shown = status(&gw, "refused").await;
    let failed = shown["payments"]["failed"].as_u64().unwrap();
    assert!(failed >= 3, "counted as failed: {shown}");
    let sent = shown["payments"]["sent"].as_u64().unwrap();
    assert!(sent + failed <= sim.live().payments + sim.live().payments_refused + 1, "{shown}");
    running.store(false, std::sync::atomic::Ordering::Relaxed);
    pumping.await.unwrap();
}

/// The orchestrator keeps a balance per (sender, stream manifest): credit the gateway holds from
/// one stream's payments is worth nothing to the next stream, which must prepay its own minute.
/// With a ticket EV above the prepaid minute's fee, the first stream ends holding credit of a
/// ticket or more; a second stream on the same gateway and orchestrator must still be started
/// with tickets, or the orchestrator answers "Insufficient balance".
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_stream_after_the_first_stopped_prepays_its_own_minute() {
    const KEY: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
    let sim = LiveSim::new("live-again").eth(11).price(1).start().await;
    let mut c = live_config(&[&sim]);
    c.signer = Some(Arc::new(LocalSigner::from_hex(KEY).unwrap()));
    c.live.payment_interval = Duration::from_millis(500);
    c.live.status_linger = Duration::from_secs(60);
    let gw = start(c).await;
    let sender = LocalSigner::from_hex(KEY).unwrap().address();
    for (n, name) in ["first", "second"].into_iter().enumerate() {
        let started = start_stream(&gw, name, json!({})).await;
        let running = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let pumping = pump(started["publish_url"].as_str().unwrap(), running.clone());
        eventually(Duration::from_secs(30), "the stream's interval payments", || async {
            status(&gw, name).await["payments"]["sent"].as_u64().unwrap_or(0) >= 3
        })
        .await;
        running.store(false, std::sync::atomic::Ordering::Relaxed);
        pumping.await.unwrap();
        eventually(Duration::from_secs(5), "the stream to stop", || async {
            status(&gw, name).await["state"] == "stopped"
        })
        .await;
        eventually(Duration::from_secs(5), "the orchestrator to end its stream", || async {
            sim.live().active == 0
        })
        .await;
        let s = status(&gw, name).await;
        assert!(s["payments"]["tickets"].as_u64().unwrap() >= 1, "{s}");
        assert_eq!(sim.live().starts, n as u64 + 1);
    }
    let stats = sim.payments();
    assert!(stats.rejections.is_empty(), "{:?}", stats.rejections);
    assert_eq!(sim.live().stopped_for_balance, 0);
    // One orchestrator balance per stream (start call and interval payments alike), and neither
    // ran short of the time it was billed.
    let balances: Vec<_> =
        stats.balances.iter().filter(|((s, _), _)| *s == sender).map(|(_, b)| *b).collect();
    assert_eq!(balances.len(), 2, "{:?}", stats.balances);
    assert!(balances.iter().all(|b| *b >= livepeer_pm::SignedRatio::default()), "{balances:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_concurrent_streams() {
    const STREAMS: usize = 100;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("TEST_LOG").unwrap_or_default())
        .with_test_writer()
        .try_init();
    let a = LiveSim::new("live-many-1").tls().capacity(60).start().await;
    let b = LiveSim::new("live-many-2").tls().capacity(60).start().await;
    let mut c = live_config(&[&a, &b]);
    c.live.out_segment_timeout = Duration::from_secs(10);
    c.live.events_timeout = Duration::from_secs(30);
    let gw = Arc::new(start(c).await);
    let mut tasks = Vec::new();
    for i in 0..STREAMS {
        let gw = gw.clone();
        tasks.push(tokio::spawn(async move {
            let name = format!("many{i}");
            let started = start_stream(&gw, &name, json!({})).await;
            let (outputs, reader) = read_output(started["subscribe_url"].as_str().unwrap());
            let (client, config) = trickle();
            let mut publisher = HttpPublisher::new(
                client,
                started["publish_url"].as_str().unwrap(),
                "video/MP2T",
                config,
            )
            .unwrap();
            for seg in &segments()[..3] {
                publish_live(&mut publisher, seg, SEGMENT_TIME).await;
            }
            eventually(Duration::from_secs(20), "three outputs", || async {
                outputs.lock().unwrap().len() == 3
            })
            .await;
            publisher.close().await.unwrap();
            tokio::time::timeout(Duration::from_secs(10), reader).await.unwrap().unwrap();
            let out = outputs.lock().unwrap().clone();
            for (k, (_, data)) in out.iter().enumerate() {
                assert_eq!(data, &segments()[k], "stream {i} segment {k}");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(a.live().starts + b.live().starts, STREAMS as u64);
    assert_eq!(a.live().segments_in + b.live().segments_in, 3 * STREAMS as u64);
    eventually(Duration::from_secs(10), "every runner to stop", || async {
        a.live().active + b.live().active == 0
    })
    .await;
}

/// The PyTrickle venv's python (made by `scripts/pytrickle-venv`), if there is one.
fn pytrickle_python() -> Option<std::path::PathBuf> {
    if let Some(python) = std::env::var_os("PYTRICKLE_PYTHON") {
        return Some(python.into());
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let venv = std::env::var_os("PYTRICKLE_VENV")
        .map_or_else(|| root.join("target/pytrickle-venv"), |v| root.join(v));
    let python = venv.join("bin/python");
    python.exists().then_some(python)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pytrickle_publishes_and_subscribes_through_the_gateway() {
    let Some(python) = pytrickle_python() else {
        assert!(
            std::env::var("LIVEPEER_REQUIRE_PYTRICKLE").as_deref() != Ok("1"),
            "LIVEPEER_REQUIRE_PYTRICKLE=1 but no PyTrickle venv; run scripts/pytrickle-venv"
        );
        eprintln!("skipping: no PyTrickle venv (run scripts/pytrickle-venv)");
        return;
    };
    let sim = LiveSim::new("live-py").start().await;
    let gw = start(live_config(&[&sim])).await;
    let started = start_stream(&gw, "py", json!({})).await;
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (i, seg) in segments()[..4].iter().enumerate() {
        let path = dir.path().join(format!("in{i}.ts"));
        std::fs::write(&path, seg).unwrap();
        files.push(path);
    }
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/py/pytrickle_live.py");
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(python)
            .arg(script)
            .arg(started["publish_url"].as_str().unwrap())
            .arg(started["subscribe_url"].as_str().unwrap())
            .arg(dir.path())
            .args(&files)
            .output(),
    )
    .await
    .unwrap()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("OK"),
        "pytrickle client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (i, seg) in segments()[..4].iter().enumerate() {
        let got = std::fs::read(dir.path().join(format!("out{i}.ts"))).unwrap();
        assert_eq!(&got[..], &seg[..], "segment {i}");
        assert_eq!(probe(&got), ("h264".to_owned(), FRAMES));
    }
    assert_eq!(sim.live().segments_in, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_ffmpeg_filter_on_the_orchestrator_changes_the_video() {
    let sim = Sim::start(SimConfig {
        name: "live-filter".into(),
        models: vec![SimModel::new("live-video-to-video", "noop").capacity(2)],
        live_filter: Some("hflip".into()),
        live_event_interval: Duration::from_millis(200),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let gw = start(live_config(&[&sim])).await;
    let started = start_stream(&gw, "flip", json!({})).await;
    let (outputs, _reader) = read_output(started["subscribe_url"].as_str().unwrap());
    let (client, config) = trickle();
    let mut publisher =
        HttpPublisher::new(client, started["publish_url"].as_str().unwrap(), "video/MP2T", config)
            .unwrap();
    for seg in &segments()[..2] {
        publish_live(&mut publisher, seg, SEGMENT_TIME).await;
    }
    // The client closes its input at once: the orchestrator is still re-encoding the last
    // segment, and its output must still come through before the stream ends.
    publisher.close().await.unwrap();
    eventually(Duration::from_secs(10), "two filtered segments", || async {
        outputs.lock().unwrap().len() == 2
    })
    .await;
    for (i, (_, data)) in outputs.lock().unwrap().iter().enumerate() {
        assert_ne!(data, &segments()[i], "segment {i} was re-encoded");
        assert_eq!(probe(data), ("h264".to_owned(), FRAMES), "segment {i}");
    }
    eventually(Duration::from_secs(10), "the stream ends", || async {
        status(&gw, "flip").await["state"] == "stopped"
    })
    .await;
    let st = status(&gw, "flip").await;
    assert_eq!(st["stop_reason"], "the client closed its input", "{st}");
    assert_eq!(st["output"]["segments"], 2, "{st}");
}

/// A client that publishes slowly, or pauses in the middle of a segment, stalls its own
/// stream: the orchestrator owes output only once a whole segment has reached it. The gateway
/// used to count from the segment's first byte, so one paused client swapped out every
/// orchestrator in turn ("no output … while input flowed") and left them all ejected.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_that_pauses_mid_segment_gets_no_orchestrator_swapped() {
    // Orchestrators that answer a segment once they have all of it, as a real runner does.
    let filter_sim = |name: &str| {
        Sim::start(SimConfig {
            name: name.into(),
            models: vec![SimModel::new("live-video-to-video", "noop").capacity(2)],
            live_filter: Some("hflip".into()),
            live_event_interval: Duration::from_millis(200),
            ..SimConfig::default()
        })
    };
    let (a, b) = (filter_sim("paused-a").await.unwrap(), filter_sim("paused-b").await.unwrap());
    let mut c = live_config(&[&a, &b]);
    // Only the output limit (1.5 s) is under test: silent events, on a loaded machine, are not.
    c.live.events_timeout = Duration::from_secs(30);
    let gw = start(c).await;
    let started = start_stream(&gw, "paused", json!({})).await;
    let (outputs, _reader) = read_output(started["subscribe_url"].as_str().unwrap());
    let (client, config) = trickle();
    let url = started["publish_url"].as_str().unwrap();
    let mut publisher = HttpPublisher::new(client, url, "video/MP2T", config).unwrap();
    let seg = &segments()[0];
    let mut writer = publisher.segment().await.unwrap();
    writer.write(seg.slice(..1000)).await.unwrap();
    // The client pauses for three times the output limit (1.5 s) with its segment open.
    // This sleep is the scenario, not a measurement: a gateway that blames the orchestrator
    // swaps within the first 1.5 s of it.
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let st = status(&gw, "paused").await;
    assert_eq!(st["state"], "running", "{st}");
    assert_eq!(st["swaps"].as_array().map_or(0, Vec::len), 0, "{st}");
    for sim in [&a, &b] {
        assert_eq!(orch_state(&gw, sim.url()).await["state"], "healthy");
    }
    // The client goes on: the segment's rest and one more come back processed.
    writer.write(seg.slice(1000..)).await.unwrap();
    writer.finish().await.unwrap();
    publish_live(&mut publisher, &segments()[1], SEGMENT_TIME).await;
    eventually(Duration::from_secs(10), "two processed segments", || async {
        outputs.lock().unwrap().len() >= 2
    })
    .await;
    let st = status(&gw, "paused").await;
    assert_eq!(st["swaps"].as_array().map_or(0, Vec::len), 0, "{st}");
    publisher.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_keyless_gateway_pays_a_live_stream_through_a_remote_signer() {
    const KEY: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
    const API_KEY: &str = "test-api-key-0123456789";
    let sim = LiveSim::new("live-remote").eth(7).price(400).start().await;
    // The signer: a gateway with the key, serving the signer routes.
    let mut c = live_config(&[&sim]);
    c.signer = Some(Arc::new(LocalSigner::from_hex(KEY).unwrap()));
    c.serve_signer = Some(API_KEY.to_owned().into());
    let signer = start(c).await;
    // The client gateway: no key, pays through the signer.
    let mut c = live_config(&[&sim]);
    c.remote_signer = Some(
        RemoteSigner::parse(
            &format!("http://{}/", signer.http_addr),
            &format!("Authorization:Bearer {API_KEY}"),
        )
        .unwrap(),
    );
    c.live.payment_interval = Duration::from_millis(500);
    let gw = start(c).await;
    let started = start_stream(&gw, "remote", json!({})).await;
    let running = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let pumping = pump(started["publish_url"].as_str().unwrap(), running.clone());
    eventually(Duration::from_secs(30), "two payments through the signer", || async {
        sim.live().payments >= 2
    })
    .await;
    running.store(false, std::sync::atomic::Ordering::Relaxed);
    pumping.await.unwrap();
    let live = sim.live();
    assert!(live.payments >= 2, "{live:?}");
    let stats = sim.payments();
    assert!(stats.rejections.is_empty(), "{:?}", stats.rejections);
    // Booked on the stream's manifest id, where the orchestrator's live processor debits.
    let mid = status(&gw, "remote").await["manifest_id"].as_str().unwrap().to_owned();
    let signer_address = LocalSigner::from_hex(KEY).unwrap().address();
    let balance = stats.balance(signer_address, &mid).unwrap();
    assert!(balance > livepeer_pm::SignedRatio::default(), "{balance:?}");
    assert_eq!(live.stopped_for_balance, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_live_client_subcommand_streams_through_a_gateway() {
    let sim = LiveSim::new("live-cli").capacity(2).start().await;
    let gw = start(live_config(&[&sim])).await;
    let out = tempfile::tempdir().unwrap();
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_livepeer-gateway"))
        .args(["live-client", "--gateway", &format!("http://{}", gw.http_addr)])
        .args(["--stream", "cli", "--seconds", "2", "--output"])
        .arg(out.path())
        .output();
    let run = tokio::time::timeout(Duration::from_secs(60), run).await.unwrap().unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let status: Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(status["state"], "stopped", "{status}");
    assert_eq!(status["output"]["segments"], 2, "{status}");
    for i in 0..2 {
        let data = std::fs::read(out.path().join(format!("out-{i:05}.ts"))).unwrap();
        assert_eq!(probe(&data), ("h264".to_owned(), 30), "segment {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_auth_webhook_accepts_refuses_and_overrides() {
    use axum::http::{HeaderMap, StatusCode};
    let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
    let log = seen.clone();
    let hook = axum::Router::new().route(
        "/auth",
        axum::routing::post(move |headers: HeaderMap, axum::Json(body): axum::Json<Value>| {
            let log = log.clone();
            async move {
                log.lock().unwrap().push(body.clone());
                let key_ok = headers.get("x-api-key").is_some_and(|v| v == "hook-key");
                if !key_ok || body["authorization"] != "Bearer good" {
                    return (StatusCode::UNAUTHORIZED, "no").into_response();
                }
                axum::Json(json!({
                    "pipeline": "noop",
                    "pipeline_parameters": {"prompt": "from-hook"},
                    "stream_id": "hooked",
                }))
                .into_response()
            }
        }),
    );
    use axum::response::IntoResponse as _;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_url = format!("http://{}/auth", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, hook).await.unwrap() });

    let sim = LiveSim::new("live-auth").capacity(2).start().await;
    let mut c = live_config(&[&sim]);
    c.live.auth_webhook = Some(livepeer_gateway::live::AuthWebhook {
        url: hook_url.parse().unwrap(),
        api_key: Some("hook-key".to_owned().into()),
    });
    let gw = start(c).await;
    let http = reqwest::Client::new();
    let url =
        |name: &str| format!("http://{}/live/video-to-video/{name}/start?key=abc", gw.http_addr);
    let refused = http
        .post(url("nope"))
        .bearer_auth("bad")
        .json(&json!({"params": {"prompt": "mine"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    let v: Value = refused.json().await.unwrap();
    assert_eq!(v["error"]["type"], "stream_refused", "{v}");
    assert_eq!(sim.live().starts, 0, "a refused stream reaches no orchestrator");

    let ok = http.post(url("yes")).bearer_auth("good").json(&json!({})).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    let started: Value = ok.json().await.unwrap();
    assert_eq!(started["stream_id"], "hooked", "{started}");
    let publish = started["publish_url"].as_str().unwrap();
    assert!(publish.contains("/ai/trickle/yes-") && publish.len() > 30, "unguessable: {publish}");
    // The stream is the client's that sent the Authorization the webhook saw.
    let status_url = started["status_url"].as_str().unwrap();
    let s: Value =
        http.get(status_url).bearer_auth("good").send().await.unwrap().json().await.unwrap();
    assert_eq!(s["params"], json!({"prompt": "from-hook"}), "{s}");
    let asked = seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(asked["stream"], "yes");
    assert_eq!(asked["query_params"], "key=abc");

    // An unreachable webhook refuses rather than letting streams in unchecked.
    let mut c = live_config(&[&sim]);
    c.live.auth_webhook = Some(livepeer_gateway::live::AuthWebhook {
        url: "http://127.0.0.1:9/auth".parse().unwrap(),
        api_key: None,
    });
    let gw2 = start(c).await;
    let resp = http
        .post(format!("http://{}/live/video-to-video/x/start", gw2.http_addr))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_orchestrator_that_runs_out_of_credit_stops_the_stream() {
    const KEY: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
    let greedy = Sim::start(SimConfig {
        name: "live-greedy".into(),
        eth_address: Some(livepeer_pm::Address::from([0x31; 20])),
        models: vec![SimModel::new("live-video-to-video", "noop").price(1, 1).capacity(2)],
        live_event_interval: Duration::from_millis(200),
        live_payment_interval: Duration::from_millis(200),
        // Bills 120 s per second: the prepaid minute lasts half a second.
        live_billing_speedup: 120,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let mut c = live_config(&[&greedy]);
    c.signer = Some(Arc::new(LocalSigner::from_hex(KEY).unwrap()));
    let gw = start(c).await;
    let started = start_stream(&gw, "credit", json!({})).await;
    let (client, config) = trickle();
    let mut publisher =
        HttpPublisher::new(client, started["publish_url"].as_str().unwrap(), "video/MP2T", config)
            .unwrap();
    // Publish in real time until the gateway closes the client's channels.
    let publishing = async {
        for seg in segments().iter().cycle() {
            let Ok(mut writer) = publisher.segment().await else { break };
            if writer.write(seg.clone()).await.is_err() || writer.finish().await.is_err() {
                break;
            }
            tokio::time::sleep(SEGMENT_TIME).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), publishing)
        .await
        .expect("the stream should have been stopped");
    assert!(greedy.live().stopped_for_balance > 0);
    assert!(greedy.payments().rejected(livepeer_sim::PaymentRejection::InsufficientBalance) > 0);
    // The gateway saw the orchestrator close the stream's channels; with no other
    // orchestrator it ends the stream and says why.
    let s = status(&gw, "credit").await;
    assert_eq!(s["state"], "failed", "{s}");
    assert!(s["swaps"][0]["reason"].as_str().unwrap().contains("closed"), "{s}");
    assert!(s["stop_reason"].as_str().unwrap().contains("no replacement"), "{s}");
    // go-livepeer's clients read a failure in `gateway_status.error`.
    let error = &s["gateway_status"]["error"];
    assert_eq!(error["error_message"], s["stop_reason"], "{s}");
    let started = s["started_at_ms"].as_u64().unwrap();
    assert!(error["error_time"].as_u64().is_some_and(|t| t >= started), "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_heartbeat_terminates_the_streams_it_names() {
    use axum::http::HeaderMap;
    type Beats = Arc<Mutex<Vec<(Value, Option<String>)>>>;
    let seen: Beats = Arc::default();
    let log = seen.clone();
    let service = axum::Router::new().route(
        "/beat",
        axum::routing::post(move |headers: HeaderMap, axum::Json(body): axum::Json<Value>| {
            let log = log.clone();
            async move {
                let token = headers.get("x-token").and_then(|v| v.to_str().ok()).map(str::to_owned);
                log.lock().unwrap().push((body, token));
                axum::Json(json!({"terminatedStreamIds": ["broke"]}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/beat", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, service).await.unwrap() });

    let sim = LiveSim::new("live-beat").start().await;
    let mut c = live_config(&[&sim]);
    c.live.heartbeat = Some(livepeer_gateway::live::Heartbeat {
        url: url.parse().unwrap(),
        headers: [(
            http::header::HeaderName::from_static("x-token"),
            http::HeaderValue::from_static("secret"),
        )]
        .into_iter()
        .collect(),
        interval: Duration::from_millis(200),
    });
    let gw = start(c).await;
    start_stream(&gw, "paying", json!({"stream_id": "paid-up"})).await;
    start_stream(&gw, "other", json!({"stream_id": "broke"})).await;
    eventually(Duration::from_secs(5), "the terminated stream to stop", || async {
        status(&gw, "other").await["state"] == "stopped"
    })
    .await;
    let s = status(&gw, "other").await;
    assert_eq!(s["stop_reason"], "credit_exhaustion", "{s}");
    assert_eq!(status(&gw, "paying").await["state"], "running");
    let beats = seen.lock().unwrap().clone();
    let both = beats.iter().any(|(body, _)| {
        let mut ids: Vec<&str> =
            body["ids"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        ids.sort();
        ids == ["broke", "paid-up"]
    });
    assert!(both, "{beats:?}");
    assert!(beats.iter().all(|(_, token)| token.as_deref() == Some("secret")));
}
