//! Video transcoding over real sockets: segments made with ffmpeg at test time are pushed to
//! the gateway (`/live/{manifest}/{seq}.ts`), transcoded by simulated orchestrators (ffmpeg, or
//! fast mode), and played back as HLS; failures move segments to another orchestrator without
//! a playlist gap; bad pushes get go-livepeer's 4xx.

use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use livepeer_gateway::Gateway;
use livepeer_gateway::config::Config;
use livepeer_sim::{Sim, SimConfig, TranscodeFault};
use serde_json::{Value, json};

use crate::support::*;

/// Two 16:9 renditions the simulator's ffmpeg makes at exactly these sizes.
pub const PROFILES: &str = r#"{"profiles":[{"name":"low","width":256,"height":144,"bitrate":200000,"fps":30},{"name":"mid","width":384,"height":216,"bitrate":400000,"fps":30}]}"#;

/// A two-second 640×360 30 fps MPEG-TS segment of ffmpeg's test pattern, made once.
pub fn segment() -> &'static [u8] {
    static SEGMENT: OnceLock<Vec<u8>> = OnceLock::new();
    SEGMENT.get_or_init(|| {
        let out = Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-nostdin"])
            .args(["-f", "lavfi", "-i", "testsrc=size=640x360:rate=30:duration=2"])
            .args(["-c:v", "libx264", "-preset", "ultrafast", "-g", "30", "-pix_fmt", "yuv420p"])
            .args(["-f", "mpegts", "pipe:1"])
            .output()
            .expect("ffmpeg must be installed for the transcoding tests");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    })
}

pub async fn sim(name: &str, fast: bool) -> Sim {
    let config = SimConfig { name: name.into(), transcode_fast: fast, ..SimConfig::default() };
    Sim::start(config).await.unwrap()
}

pub fn gateway_config(sims: &[&Sim]) -> Config {
    let urls: Vec<&str> = sims.iter().map(|s| s.url()).collect();
    config(&urls)
}

/// Pushes segment `seq` of `manifest` with `PROFILES`; returns the status and body.
pub async fn push(
    gw: &Gateway,
    manifest: &str,
    seq: u64,
    accept: Option<&str>,
) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .post(format!("http://{}/live/{manifest}/{seq}.ts", gw.http_addr))
        .header("Livepeer-Transcode-Configuration", PROFILES)
        .header("Content-Duration", "2000")
        .header("Content-Resolution", "640x360")
        .body(segment().to_vec());
    if let Some(accept) = accept {
        req = req.header("Accept", accept);
    }
    req.send().await.unwrap()
}

pub async fn get_text(gw: &Gateway, path: &str) -> (u16, String) {
    let resp = reqwest::get(format!("http://{}{path}", gw.http_addr)).await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// The width and height of the video in `bytes`, by ffprobe.
fn probe(bytes: &[u8]) -> (u32, u32) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.ts");
    std::fs::write(&path, bytes).unwrap();
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries", "stream=width,height"])
        .args(["-of", "csv=p=0"])
        .arg(&path)
        .output()
        .expect("ffprobe must be installed");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().next().unwrap_or_default();
    let (w, h) = line.split_once(',').unwrap_or_else(|| panic!("ffprobe said {text:?}"));
    (w.trim().parse().unwrap(), h.trim().parse().unwrap())
}

/// The sequence numbers a media playlist lists, and its media sequence number.
pub fn listed(playlist: &str) -> (u64, Vec<u64>) {
    let msn = playlist
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
        .unwrap()
        .parse()
        .unwrap();
    let seqs = playlist
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.rsplit('/').next().unwrap().trim_end_matches(".ts").parse().unwrap())
        .collect();
    (msn, seqs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_segments_are_transcoded_and_played_back_as_hls() {
    let sim = sim("ffmpeg", false).await;
    let gw = start(gateway_config(&[&sim])).await;
    for seq in 0..3 {
        let resp = push(&gw, "demo", seq, None).await;
        assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    }
    let (status, master) = get_text(&gw, "/stream/demo.m3u8").await;
    assert_eq!(status, 200, "{master}");
    assert!(master.contains("BANDWIDTH=200000,RESOLUTION=256x144\ndemo/low.m3u8"), "{master}");
    assert!(master.contains("BANDWIDTH=400000,RESOLUTION=384x216\ndemo/mid.m3u8"), "{master}");
    assert!(master.contains("RESOLUTION=640x360\ndemo/source.m3u8"), "{master}");
    for (name, size) in [("low", (256, 144)), ("mid", (384, 216))] {
        let (_, media) = get_text(&gw, &format!("/stream/demo/{name}.m3u8")).await;
        assert_eq!(listed(&media), (0, vec![0, 1, 2]), "{media}");
        assert!(!media.contains("DISCONTINUITY"), "{media}");
        let url = format!("http://{}/stream/demo/{name}/2.ts", gw.http_addr);
        let resp = reqwest::get(url).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "video/mp2t");
        assert_eq!(probe(&resp.bytes().await.unwrap()), size, "{name}");
    }
    let source =
        reqwest::get(format!("http://{}/stream/demo/source/1.ts", gw.http_addr)).await.unwrap();
    assert_eq!(source.bytes().await.unwrap().as_ref(), segment());
    assert_eq!(get_text(&gw, "/stream/nope.m3u8").await.0, 404);
    assert_eq!(get_text(&gw, "/stream/demo/high.m3u8").await.0, 404);
    let (_, streams) = admin_get(&gw, "/transcode/streams").await;
    let stream = &streams["streams"][0];
    assert_eq!(stream["manifest_id"], "demo");
    assert_eq!(stream["segments_in"], 3);
    let bytes = 3 * segment().len() as u64;
    assert_eq!(stream["ingest"]["bytes"], bytes, "{stream}");
    assert_eq!(stream["ingest"]["media_seconds"], 6, "{stream}");
    assert_eq!(stream["ingest"]["bitrate_bps"], bytes * 8 / 6, "{stream}");
    assert_eq!(stream["segments_transcoded"], 3);
    assert_eq!(stream["renditions"][1]["segments_out"], 3, "{stream}");
    assert_eq!(
        stream["orchestrator"].as_str().unwrap().trim_end_matches('/'),
        sim.url().trim_end_matches('/')
    );
    assert_eq!(sim.transcode_stats().transcoded, 3);
    let metrics = metrics_text(&gw).await;
    assert!(metrics.contains("livepeer_segment_transcoded_total 3"), "{metrics}");
    assert!(metrics.contains("livepeer_current_sessions_total 1"), "{metrics}");
    // go-livepeer's overall latency, per transcoder, with its buckets.
    let count = metrics
        .lines()
        .find(|l| l.starts_with("livepeer_transcode_overall_latency_seconds_count{"))
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(count.contains(sim.url().trim_end_matches('/')) && count.ends_with(" 3"), "{count}");
    assert!(metrics.contains("livepeer_transcode_overall_latency_seconds_bucket{"), "{metrics}");
    assert!(metrics.contains("le=\"3.5\""), "{metrics}");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_answers_carry_every_rendition_with_go_livepeers_part_headers() {
    let sim = sim("fast", true).await;
    let gw = start(gateway_config(&[&sim])).await;
    let resp = push(&gw, "mp", 5, Some("multipart/mixed")).await;
    assert_eq!(resp.status(), 200);
    let ct = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("multipart/mixed; boundary="), "{ct}");
    let boundary = ct.split_once("boundary=").unwrap().1.to_owned();
    let body = resp.bytes().await.unwrap();
    let stream = futures_util::stream::once(async move { Ok::<_, std::io::Error>(body) });
    let mut parts = multer::Multipart::new(stream, boundary);
    let mut names = Vec::new();
    while let Some(part) = parts.next_field().await.unwrap() {
        let h = part.headers().clone();
        let name = h["rendition-name"].to_str().unwrap().to_owned();
        assert_eq!(h["content-type"], format!("video/mp2t; name=\"{name}_5.ts\"").as_str());
        assert_eq!(
            h["content-disposition"],
            format!("attachment; filename=\"{name}_5.ts\"").as_str()
        );
        let len: usize = h["content-length"].to_str().unwrap().parse().unwrap();
        let bytes = part.bytes().await.unwrap();
        assert_eq!(bytes.len(), len);
        assert!(!bytes.is_empty());
        names.push(name);
    }
    assert_eq!(names, ["low", "mid"]);
    // go-livepeer answers with the renditions only to an `Accept` of exactly
    // `multipart/mixed` (server/mediaserver.go `HandlePush`): a list naming it gets the empty 200.
    let resp = push(&gw, "mp", 6, Some("multipart/mixed, */*")).await;
    assert_eq!(resp.status(), 200);
    let ct = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned());
    assert!(!ct.unwrap_or_default().starts_with("multipart"));
    assert!(resp.bytes().await.unwrap().is_empty());
    gw.shutdown().await;
}

/// The orchestrator serving the stream, from the admin status.
async fn serving(gw: &Gateway, manifest: &str) -> String {
    let (_, status) = admin_get(gw, &format!("/transcode/streams/{manifest}")).await;
    status["orchestrator"].as_str().unwrap().trim_end_matches('/').to_owned()
}

/// Every attempt failing, as many as `--max-attempts` allows: go-livepeer's 422
/// `maxTranscodeAttempts`, which tells the pusher that a retry of this segment is no use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segment_out_of_attempts_is_422() {
    let sims = [sim("x", true).await, sim("y", true).await, sim("z", true).await];
    for s in &sims {
        s.set_transcode_fault(TranscodeFault::InternalError);
    }
    let gw = start(gateway_config(&[&sims[0], &sims[1], &sims[2]])).await;
    let resp = push(&gw, "spent", 0, None).await;
    assert_eq!(resp.status(), 422);
    assert!(resp.headers().get("retry-after").is_none());
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "transcode_failed", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("hit max transcode attempts"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_orchestrator_is_left_for_another_without_a_playlist_gap() {
    let sims = [sim("a", true).await, sim("b", true).await];
    let gw = start(gateway_config(&[&sims[0], &sims[1]])).await;
    assert_eq!(push(&gw, "fo", 0, None).await.status(), 200);
    let first = serving(&gw, "fo").await;
    let (bad, good) = if sims[0].url().trim_end_matches('/') == first { (0, 1) } else { (1, 0) };
    sims[bad].set_transcode_fault(TranscodeFault::Busy);
    for seq in 1..4 {
        let resp = push(&gw, "fo", seq, None).await;
        assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    }
    assert_eq!(serving(&gw, "fo").await, sims[good].url().trim_end_matches('/'));
    // Then every orchestrator fails before the three attempts run out: the segment is
    // published as source, and counted; no session is left, which go-livepeer answers 503.
    sims[good].set_transcode_fault(TranscodeFault::InternalError);
    let resp = push(&gw, "fo", 4, None).await;
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "30");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "no_orchestrator", "{body}");
    sims[good].set_transcode_fault(TranscodeFault::None);
    // Its transcoding breaker opened; the next segment goes to it once it may be probed.
    let good_url = sims[good].url();
    eventually(Duration::from_secs(5), "a probe is due", || async {
        orch_state(&gw, good_url).await["state"] != "ejected"
    })
    .await;
    assert_eq!(push(&gw, "fo", 5, None).await.status(), 200);
    let (_, media) = get_text(&gw, "/stream/fo/low.m3u8").await;
    assert_eq!(listed(&media), (0, vec![0, 1, 2, 3, 4, 5]), "no gap: {media}");
    assert_eq!(media.matches("#EXT-X-DISCONTINUITY").count(), 2, "around the stand-in: {media}");
    let stand_in =
        reqwest::get(format!("http://{}/stream/fo/low/4.ts", gw.http_addr)).await.unwrap();
    assert_eq!(stand_in.bytes().await.unwrap().as_ref(), segment(), "the source stands in");
    let (_, status) = admin_get(&gw, "/transcode/streams/fo").await;
    assert_eq!(status["segments_source_only"], 1, "{status}");
    // Segment 1's move from the busy orchestrator is a retry; whether segment 4 had a second
    // orchestrator to try depends on whether the busy one's breaker had closed again by then.
    assert!(status["retries"].as_u64().unwrap() >= 1, "{status}");
    assert!(status["orchestrator_swaps"].as_u64().unwrap() >= 1, "{status}");
    let metrics = metrics_text(&gw).await;
    assert!(
        metrics
            .contains("livepeer_segment_transcode_failed_total{error_code=\"OrchestratorBusy\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("livepeer_transcode_retried{try=\"2\"}"), "{metrics}");
    // Segment 4 found no session left: go-livepeer's code for that.
    let no_orchs = "livepeer_segment_transcode_failed_total{error_code=\"NoOrchestrators\"} 1\n";
    assert!(metrics.contains(no_orchs), "{metrics}");
    gw.shutdown().await;
}

/// Two paid simulators and a gateway pushing stream `name`: once segment 0 is transcoded,
/// the orchestrator serving it breaks with `fault`, and segment 1 must still be transcoded,
/// by the other one. Returns them for the caller's own checks.
async fn moved_off_a_faulty_orchestrator(name: &str, fault: TranscodeFault) -> ([Sim; 2], Gateway) {
    let sims = [sim("a", true).await, sim("b", true).await];
    let gw = start(gateway_config(&[&sims[0], &sims[1]])).await;
    assert_eq!(push(&gw, name, 0, None).await.status(), 200);
    let first = serving(&gw, name).await;
    let (bad, good) = if sims[0].url().trim_end_matches('/') == first { (0, 1) } else { (1, 0) };
    sims[bad].set_transcode_fault(fault);
    let resp = push(&gw, name, 1, None).await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    assert_eq!(serving(&gw, name).await, sims[good].url().trim_end_matches('/'));
    (sims, gw)
}

/// An orchestrator reporting more pixels than its renditions can hold (the count the
/// gateway is debited for) has its result refused and the segment goes to another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pixel_count_no_rendition_can_hold_is_refused() {
    let (_sims, gw) = moved_off_a_faulty_orchestrator("px", TranscodeFault::InflatePixels).await;
    let (_, status) = admin_get(&gw, "/transcode/streams/px").await;
    assert!(status["retries"].as_u64().unwrap() >= 1, "{status}");
    let (_, orchs) = admin_get(&gw, "/orchestrators").await;
    assert!(orchs.to_string().contains("pixels, over"), "the refusal is on record: {orchs}");
    gw.shutdown().await;
}

async fn raw_push(
    gw: &Gateway,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new().post(format!("http://{}{path}", gw.http_addr)).body(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_pushes_get_go_livepeers_client_errors_naming_the_field() {
    let sim = sim("fast", true).await;
    let mut c = gateway_config(&[&sim]);
    c.transcode.max_segment_bytes = segment().len() + 10;
    c.transcode.max_sessions = 1;
    let gw = start(c).await;
    let seg = segment().to_vec();
    let (status, body) = raw_push(&gw, "/live/x/1.m3u8", &[], seg.clone()).await;
    assert_eq!((status, &body["error"]["field"]), (400, &json!("extension")), "{body}");
    assert_eq!(body["error"]["message"], "ignoring file extension: .m3u8");
    let bad_json = [("Livepeer-Transcode-Configuration", "{\"profiles\":[{\"width\":1}]")];
    let (status, body) = raw_push(&gw, "/live/x/1.ts", &bad_json, seg.clone()).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["field"], "Livepeer-Transcode-Configuration.(json)");
    let bad_profile = [(
        "Livepeer-Transcode-Configuration",
        r#"{"profiles":[{"width":1,"height":0,"bitrate":1}]}"#,
    )];
    let (status, body) = raw_push(&gw, "/live/x/1.ts", &bad_profile, seg.clone()).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["field"], "Livepeer-Transcode-Configuration.profiles[0].height");
    let (status, body) = raw_push(&gw, "/live/x/1.ts", &[], vec![0x47; 20 + seg.len()]).await;
    assert_eq!((status, &body["error"]["field"]), (413, &json!("body")), "{body}");
    let (status, body) = raw_push(&gw, "/live/x/1.ts", &[], vec![7; 1000]).await;
    assert_eq!((status, &body["error"]["type"]), (422, &json!("unsupported_media")), "{body}");
    let (status, _) =
        raw_push(&gw, "/live/x/1.ts", &[("Content-Duration", "400000")], seg.clone()).await;
    assert_eq!(status, 400);
    let resp = reqwest::get(format!("http://{}/live/x/1.ts", gw.http_addr)).await.unwrap();
    assert_eq!(resp.status(), 405);
    // An empty configuration header is no header, as Go reads it.
    let empty = [("Livepeer-Transcode-Configuration", "")];
    assert_eq!(raw_push(&gw, "/live/x/1.ts", &empty, seg.clone()).await.0, 200);
    let (status, body) = raw_push(&gw, "/live/y/1.ts", &[], seg.clone()).await;
    assert_eq!((status, &body["error"]["type"]), (503, &json!("too_many_streams")), "{body}");
    gw.shutdown().await;
    // No orchestrator at all: go-livepeer's 503.
    let gw = start(config(&[])).await;
    let (status, body) = raw_push(&gw, "/live/z/1.ts", &[], seg).await;
    assert_eq!(
        (status, &body["error"]["message"]),
        (503, &json!("No sessions available")),
        "{body}"
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orchestrator_that_never_answers_is_left_at_the_upload_deadline() {
    let (_sims, gw) = moved_off_a_faulty_orchestrator("hang", TranscodeFault::Hang).await;
    let (_, status) = admin_get(&gw, "/transcode/streams/hang").await;
    assert!(status["last_error"].as_str().unwrap().contains("upload timeout"), "{status}");
    gw.shutdown().await;
}

/// go-livepeer's whole-exchange timeout (8 s for a 2 s segment) bounds the request and its
/// `TranscodeResult` only (server/segment_rpc.go `SubmitSegment`); the renditions are fetched
/// after it, each within its own timeout. An answer at 6.5 s whose two renditions take a second
/// each is a success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renditions_fetched_after_a_late_answer_are_not_cut_by_the_exchange_deadline() {
    let config = SimConfig {
        name: "late".into(),
        transcode_fast: true,
        transcode_latency: Duration::from_millis(6500),
        ..SimConfig::default()
    };
    let sim = Sim::start(config).await.unwrap();
    sim.set_transcode_fault(TranscodeFault::SlowRenditions);
    let gw = start(gateway_config(&[&sim])).await;
    let resp = push(&gw, "late", 0, None).await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    assert_eq!(sim.transcode_stats().requests, 1, "not retried");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_stream_is_closed_and_its_place_freed() {
    let sim = sim("fast", true).await;
    let mut c = gateway_config(&[&sim]);
    c.transcode.idle_timeout = Duration::from_millis(300);
    c.transcode.max_sessions = 1;
    let gw = start(c).await;
    assert_eq!(push(&gw, "idle", 0, None).await.status(), 200);
    assert_eq!(push(&gw, "other", 0, None).await.status(), 503, "one stream at most");
    eventually(Duration::from_secs(5), "the idle stream is closed", || async {
        admin_get(&gw, "/transcode/streams").await.1["streams"].as_array().unwrap().is_empty()
    })
    .await;
    assert_eq!(get_text(&gw, "/stream/idle.m3u8").await.0, 404);
    assert_eq!(push(&gw, "other", 0, None).await.status(), 200);
    let metrics = metrics_text(&gw).await;
    assert!(metrics.contains("livepeer_stream_ended_total 1"), "{metrics}");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingest_is_held_back_while_its_segments_fill_the_stream() {
    use livepeer_gateway::transcode::{Format, TranscodeError};
    let sim = sim("fast", true).await;
    let mut c = gateway_config(&[&sim]);
    c.transcode.segment_concurrency = 1;
    let gw = start(c).await;
    let state = gw.transcode.clone();
    state.open_stream("rtmp", None, Format::MpegTs).unwrap();
    assert_eq!(
        state.open_stream("rtmp", None, Format::MpegTs),
        Err(TranscodeError::StreamExists("rtmp".into()))
    );
    let seg = |seq| segment_in("rtmp", seq, false);
    sim.set_transcode_fault(TranscodeFault::Hang);
    let first = state.submit(seg(0)).await.unwrap();
    let second = state.submit(seg(1));
    tokio::pin!(second);
    assert!(futures_util::poll!(second.as_mut()).is_pending(), "the only slot is taken");
    // The hung attempt ends at its upload deadline; with no other orchestrator the source is
    // published, and the slot passes on.
    assert!(first.finished().await.is_err());
    sim.set_transcode_fault(TranscodeFault::None);
    // Its outcome depends on whether the orchestrator's breaker let it be probed yet; either
    // way the segment is published.
    let _ = second.await.unwrap().finished().await;
    let (_, media) = get_text(&gw, "/stream/rtmp/source.m3u8").await;
    assert_eq!(listed(&media).1, vec![0, 1], "{media}");
    assert!(state.end_stream("rtmp"));
    assert_eq!(get_text(&gw, "/stream/rtmp.m3u8").await.0, 404);
    gw.shutdown().await;
}

/// A segment that became late while it waited for its slot (a later one of the stream got a
/// slot first and was published, or it is a retry of one already taken) passed the push's
/// check but is refused when it takes its slot, before any orchestrator is paid: it would be
/// transcoded, paid for and dropped. A client taking the renditions in its answer is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segment_late_by_the_time_it_has_a_slot_is_not_paid_for() {
    use livepeer_gateway::transcode::TranscodeError;
    let sim = sim("fast", true).await;
    let gw = start(gateway_config(&[&sim])).await;
    let state = gw.transcode.clone();
    let seg = |seq, answered| segment_in("late", seq, answered);
    // Segment 6 is published; segment 5, admitted by its push's check while 6 was not yet
    // taken, reaches its slot only now.
    assert!(state.submit(seg(6, false)).await.unwrap().finished().await.is_ok());
    let paid = sim.transcode_stats().requests;
    let late = state.submit(seg(5, false)).await.unwrap().finished().await;
    assert!(matches!(late, Err(TranscodeError::LateSegment(_))), "{late:?}");
    assert_eq!(sim.transcode_stats().requests, paid, "nothing sent, nothing paid");
    // Asked with its renditions in the answer, it is served as a retry.
    assert!(state.submit(seg(5, true)).await.unwrap().finished().await.is_ok());
    assert_eq!(sim.transcode_stats().requests, paid + 1);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_without_profiles_publishes_its_source_untranscoded() {
    let sim = sim("fast", true).await;
    let gw = start(gateway_config(&[&sim])).await;
    let config = [("Livepeer-Transcode-Configuration", r#"{"profiles":[]}"#)];
    for seq in 0..2 {
        let (status, _) =
            raw_push(&gw, &format!("/live/plain/{seq}.ts"), &config, segment().to_vec()).await;
        assert_eq!(status, 200);
    }
    let (_, master) = get_text(&gw, "/stream/plain.m3u8").await;
    assert_eq!(master.matches("#EXT-X-STREAM-INF").count(), 1, "{master}");
    assert!(master.contains("plain/source.m3u8"), "{master}");
    assert_eq!(listed(&get_text(&gw, "/stream/plain/source.m3u8").await.1).1, vec![0, 1]);
    assert_eq!(sim.transcode_stats().requests, 0, "nothing to transcode");
    // Asked for multipart, go-livepeer still answers the empty 200: it returns before it
    // writes a multipart body when there are no renditions (`HandlePush`, `len(urls) == 0`).
    let resp = reqwest::Client::new()
        .post(format!("http://{}/live/plain/2.ts", gw.http_addr))
        .header(config[0].0, config[0].1)
        .header("Accept", "multipart/mixed")
        .body(segment().to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("content-type").is_none());
    assert!(resp.bytes().await.unwrap().is_empty());
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_stream_is_a_session_of_its_own_at_the_orchestrator() {
    let sim = sim("fast", true).await;
    let gw = start(gateway_config(&[&sim])).await;
    for manifest in ["one", "two"] {
        for seq in 0..2 {
            assert_eq!(push(&gw, manifest, seq, None).await.status(), 200);
        }
    }
    let stats = sim.transcode_stats();
    assert_eq!((stats.transcoded, stats.sessions), (4, 2), "{stats:?}");
    let token =
        |s: &livepeer_proto::net::SegData| s.auth_token.as_ref().unwrap().session_id.clone();
    assert!(!token(stats.last_segment.as_ref().unwrap()).is_empty());
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_orchestrator_mid_stream_leaves_no_gap_and_its_retries_are_counted() {
    let sims = [sim("kill-a", true).await, sim("kill-b", true).await];
    let gw = start(gateway_config(&[&sims[0], &sims[1]])).await;
    assert_eq!(push(&gw, "killed", 0, None).await.status(), 200);
    let first = serving(&gw, "killed").await;
    let (dead, alive) = if sims[0].url().trim_end_matches('/') == first { (0, 1) } else { (1, 0) };
    sims[dead].stop();
    for seq in 1..5 {
        let resp = push(&gw, "killed", seq, None).await;
        assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    }
    assert_eq!(serving(&gw, "killed").await, sims[alive].url().trim_end_matches('/'));
    for name in ["low", "mid"] {
        let (_, media) = get_text(&gw, &format!("/stream/killed/{name}.m3u8")).await;
        assert_eq!(listed(&media), (0, vec![0, 1, 2, 3, 4]), "{media}");
        assert!(!media.contains("DISCONTINUITY"), "every segment transcoded: {media}");
    }
    let (_, status) = admin_get(&gw, "/transcode/streams/killed").await;
    assert_eq!(status["segments_transcoded"], 5, "{status}");
    assert_eq!(status["segments_source_only"], 0, "{status}");
    assert!(status["retries"].as_u64().unwrap() >= 1, "the retry is counted: {status}");
    let metrics = metrics_text(&gw).await;
    assert!(metrics.contains("livepeer_transcode_retried"), "{metrics}");
    gw.shutdown().await;
}

/// Two seconds of the test segment, as stream `manifest`'s segment `seq`, handed over as an
/// ingest hands it (`answered`: whether its client takes the renditions).
fn segment_in(manifest: &str, seq: u64, answered: bool) -> livepeer_gateway::transcode::SegmentIn {
    livepeer_gateway::transcode::SegmentIn {
        manifest: manifest.into(),
        seq,
        data: bytes::Bytes::from_static(segment()),
        duration_ms: 2000,
        format: livepeer_gateway::transcode::Format::MpegTs,
        profiles: None,
        resolution: None,
        timeout_multiplier: 1,
        input: None,
        answered,
    }
}
