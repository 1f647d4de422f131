//! What a transcoding job asks of orchestrators, as go-livepeer's gateway asks it
//! (core/capabilities.go `JobCapabilities`): the decoder of the input's own codec, read from
//! each pushed segment (HEVC decode for HEVC, the pixel format's H.264 decoder), and selection
//! by what the job needs, not by go-livepeer's whole default set. Segments are made with
//! ffmpeg at test time; the simulators advertise capabilities as the test sets them and refuse
//! a segment asking for one they lack, as go-livepeer's orchestrator does.

use std::process::Command;
use std::sync::OnceLock;

use livepeer_gateway::Gateway;
use livepeer_sim::{Sim, SimConfig};
use serde_json::Value;

use crate::support::*;
use crate::transcode::{PROFILES, gateway_config};

/// A one-second 128×72 MPEG-TS segment of ffmpeg's test pattern encoded with `codec` args.
fn make(args: &[&str]) -> Vec<u8> {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin"])
        .args(["-f", "lavfi", "-i", "testsrc=size=128x72:rate=15:duration=1"])
        .args(args)
        .args(["-f", "mpegts", "pipe:1"])
        .output()
        .expect("ffmpeg must be installed for the transcoding tests");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

fn hevc() -> &'static [u8] {
    static SEGMENT: OnceLock<Vec<u8>> = OnceLock::new();
    SEGMENT.get_or_init(|| {
        make(&["-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=none"])
    })
}

fn h264(pix_fmt: &str) -> Vec<u8> {
    make(&["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", pix_fmt])
}

/// A simulator in fast mode advertising go-livepeer's defaults, plus `extra`, less `missing`.
async fn sim(name: &str, extra: &[u32], missing: &[u32]) -> Sim {
    Sim::start(SimConfig {
        name: name.into(),
        transcode_fast: true,
        extra_capabilities: extra.to_vec(),
        missing_capabilities: missing.to_vec(),
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

async fn push(gw: &Gateway, manifest: &str, seq: u64, body: &[u8]) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("http://{}/live/{manifest}/{seq}.ts", gw.http_addr))
        .header("Livepeer-Transcode-Configuration", PROFILES)
        .header("Content-Duration", "1000")
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json::<Value>().await.unwrap_or(Value::Null))
}

/// The capability ids the last segment a simulator took asked for.
fn asked(sim: &Sim) -> Vec<u32> {
    let seg = sim.transcode_stats().last_segment.expect("a segment reached the simulator");
    let word = seg.capabilities.expect("capabilities sent").bitstring[0];
    (0..64).filter(|b| word & (1 << b) != 0).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hevc_segment_asks_for_hevc_decode_and_goes_only_where_it_is_offered() {
    let without = sim("no-hevc", &[], &[]).await;
    let with = sim("hevc", &[15], &[]).await;
    let gw = start(gateway_config(&[&without, &with])).await;
    for seq in 0..4 {
        let (status, body) = push(&gw, "hevc", seq, hevc()).await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(asked(&with), [0, 1, 12, 15, 26], "HEVC decode, H.264 only as the encoder");
    assert_eq!(with.transcode_stats().transcoded, 4);
    assert_eq!(without.transcode_stats().requests, 0, "never sent where it would be refused");
    gw.shutdown().await;

    // Alone, the orchestrator without the decoder serves H.264 as before, asked for H.264 and
    // no more, and gets no HEVC segment: no session, as go-livepeer's gateway finds none.
    let gw = start(gateway_config(&[&without])).await;
    let (status, body) = push(&gw, "h264", 0, &h264("yuv420p")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(asked(&without), [0, 1, 12, 26]);
    let (status, body) = push(&gw, "alone", 0, hevc()).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(without.transcode_stats().requests, 1, "only the H.264 segment reached it");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h264s_pixel_format_asks_for_its_decoder() {
    let deep = sim("422p10", &[24], &[]).await;
    let plain = sim("plain", &[], &[]).await;
    let gw = start(gateway_config(&[&plain, &deep])).await;
    let segment = h264("yuv422p10le");
    for seq in 0..3 {
        let (status, body) = push(&gw, "deep", seq, &segment).await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(asked(&deep), [0, 1, 12, 24, 26], "H.264 and its 4:2:2 10-bit decoder");
    assert_eq!(plain.transcode_stats().requests, 0);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_codec_no_capability_covers_is_the_clients_422_and_reaches_no_orchestrator() {
    let any = sim("any", &[15, 17, 18], &[]).await;
    let gw = start(gateway_config(&[&any])).await;
    let mpeg2 = make(&["-c:v", "mpeg2video"]);
    let (status, body) = push(&gw, "mpeg2", 0, &mpeg2).await;
    assert_eq!(status, 422, "{body}");
    let error = &body["error"];
    assert_eq!(error["type"], "unsupported_codec", "{error}");
    assert_eq!(error["message"], "Unknown input stream codec=mpeg2video", "{error}");
    assert_eq!(error["field"], "body", "{error}");
    assert_eq!(any.transcode_stats().requests, 0);
    // Refused before the stream is made, as go-livepeer refuses it before registering one.
    let (_, streams) = admin_get(&gw, "/transcode/streams").await;
    assert_eq!(streams["streams"], Value::Array(Vec::new()), "{streams}");
    let state = orch_state(&gw, any.url()).await;
    assert_eq!(state["state"], "healthy", "{state}");
    gw.shutdown().await;
}

/// go-livepeer selects by the stream's own capabilities: an orchestrator lacking MP4 (which an
/// MPEG-TS job does not use) serves it, one lacking MPEG-TS gets none of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transcoders_are_selected_by_what_the_job_needs() {
    let no_mp4 = sim("no-mp4", &[], &[2, 14]).await;
    let no_ts = sim("no-ts", &[], &[1]).await;
    let gw = start(gateway_config(&[&no_mp4, &no_ts])).await;
    let segment = h264("yuv420p");
    for seq in 0..6 {
        let (status, body) = push(&gw, "ts", seq, &segment).await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(no_mp4.transcode_stats().transcoded, 6, "it lacks only what the job does not use");
    assert_eq!(no_ts.transcode_stats().requests, 0, "it lacks what the job needs");
    for url in [no_mp4.url(), no_ts.url()] {
        let state = orch_state(&gw, url).await;
        assert_eq!(state["state"], "healthy", "{url}: {state}");
    }
    gw.shutdown().await;
}
