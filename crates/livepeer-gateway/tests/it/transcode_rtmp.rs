//! RTMP ingest end to end: ffmpeg publishes a test pattern in real time to the gateway's RTMP
//! listener; the stream is cut at keyframes, transcoded by a simulated orchestrator that
//! encodes with ffmpeg, and played back as HLS while it runs. The stream auth webhook
//! renames a stream and picks its renditions, or refuses it.

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::http::StatusCode;
use axum::routing::post;
use livepeer_gateway::Gateway;
use serde_json::{Value, json};

use crate::support::*;
use crate::transcode::{gateway_config, get_text, listed, sim};

/// ffmpeg publishing `seconds` of a 640×360 30 fps pattern with a tone, in real time, a
/// keyframe a second, to `path` on the gateway's RTMP listener.
pub fn publish(gw: &Gateway, path: &str, seconds: u32) -> tokio::process::Child {
    let url = format!("rtmp://{}/{path}", gw.rtmp_addr.expect("RTMP is on"));
    tokio::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc=size=640x360:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"])
        .args(["-t", &seconds.to_string(), "-c:v", "libx264", "-preset", "ultrafast"])
        .args(["-g", "30", "-pix_fmt", "yuv420p", "-c:a", "aac", "-f", "flv", &url])
        .kill_on_drop(true)
        .spawn()
        .expect("ffmpeg must be installed for the RTMP tests")
}

/// Width, height, frame rate and frame count of the video in `bytes`, by ffprobe.
fn probe(bytes: &[u8]) -> (u64, u64, String, u64) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.ts");
    std::fs::write(&path, bytes).unwrap();
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0", "-of", "json"])
        .args(["-show_entries", "stream=width,height,r_frame_rate,nb_read_frames"])
        .arg(&path)
        .output()
        .expect("ffprobe must be installed");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = &v["streams"][0];
    let frames = s["nb_read_frames"].as_str().unwrap_or("0").parse().unwrap();
    let rate = s["r_frame_rate"].as_str().unwrap_or_default().to_owned();
    (s["width"].as_u64().unwrap(), s["height"].as_u64().unwrap(), rate, frames)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rtmp_stream_is_transcoded_and_played_as_hls_while_it_runs() {
    let sim = sim("rtmp-ffmpeg", false).await;
    let gw = start(gateway_config(&[&sim])).await;
    let mut ffmpeg = publish(&gw, "stream/live1/secretkey", 20);
    // Playback while the stream runs: wait until each rendition lists five segments.
    let renditions = [("P240p30fps16x9", (426, 240)), ("P360p30fps16x9", (640, 360))];
    for (name, _) in renditions {
        let path = format!("/stream/live1/{name}.m3u8");
        eventually(Duration::from_secs(60), "five segments", || async {
            let (status, media) = get_text(&gw, &path).await;
            status == 200 && listed(&media).1.len() >= 5
        })
        .await;
    }
    let (status, master) = get_text(&gw, "/stream/live1.m3u8").await;
    assert_eq!(status, 200, "{master}");
    for (name, (w, h)) in renditions {
        assert!(master.contains(&format!("RESOLUTION={w}x{h}\nlive1/{name}.m3u8")), "{master}");
    }
    assert!(master.contains("live1/source.m3u8"), "{master}");
    for (name, (w, h)) in renditions {
        let (_, media) = get_text(&gw, &format!("/stream/live1/{name}.m3u8")).await;
        let (msn, seqs) = listed(&media);
        let contiguous: Vec<u64> = (msn..msn + seqs.len() as u64).collect();
        assert_eq!(seqs, contiguous, "media sequence numbers are contiguous: {media}");
        // A segment in the middle: two seconds (60 frames at 30 fps) at the rendition's size.
        let seq = seqs[seqs.len() / 2];
        let url = format!("http://{}/stream/live1/{name}/{seq}.ts", gw.http_addr);
        let bytes = reqwest::get(url).await.unwrap().bytes().await.unwrap();
        let probed = probe(&bytes);
        assert_eq!(probed, (w, h, "30/1".to_owned(), 60), "{name} segment {seq}");
        assert!(media.contains("#EXTINF:2.000"), "listed as two seconds: {media}");
    }
    let (_, status) = admin_get(&gw, "/transcode/streams/live1").await;
    assert!(status["segments_transcoded"].as_u64().unwrap() >= 5, "{status}");
    assert_eq!(status["segments_source_only"], 0, "{status}");
    // When the publisher leaves, the stream ends and its name is free again.
    let exit = tokio::time::timeout(Duration::from_secs(60), ffmpeg.wait()).await.unwrap();
    assert!(exit.unwrap().success());
    eventually(Duration::from_secs(30), "the stream ends", || async {
        get_text(&gw, "/stream/live1.m3u8").await.0 == 404
    })
    .await;
    // 20 s in 2 s segments, each with both renditions.
    let stats = sim.transcode_stats();
    assert_eq!((stats.transcoded, stats.renditions, stats.failed), (10, 20, 0), "{stats:?}");
    gw.shutdown().await;
}

/// A stream auth webhook: refuses URLs containing `/deny`; renames others to `renamed` with
/// one small rendition. Its URL, and the URLs it was asked about.
async fn webhook() -> (String, Arc<Mutex<Vec<String>>>) {
    let asked = Arc::new(Mutex::new(Vec::new()));
    let seen = asked.clone();
    let app = axum::Router::new().route(
        "/auth",
        post(move |Json(body): Json<Value>| async move {
            let url = body["url"].as_str().unwrap_or_default();
            seen.lock().unwrap().push(url.to_owned());
            if url.contains("/deny") {
                return (StatusCode::FORBIDDEN, Json(json!({"error": "no"})));
            }
            let profiles = json!([{"name": "tiny", "width": 256, "height": 144, "bitrate": 100000, "fps": 15}]);
            (StatusCode::OK, Json(json!({"manifestID": "renamed", "profiles": profiles})))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/auth"), asked)
}

/// A gateway transcoding through `sim` whose streams are checked by [`webhook`].
async fn hooked_gateway(sim: &livepeer_sim::Sim) -> (Gateway, Arc<Mutex<Vec<String>>>) {
    let mut config = gateway_config(&[sim]);
    let (url, asked) = webhook().await;
    config.ingest.auth = Some(livepeer_gateway::ingest::auth::StreamAuth {
        url: url.parse().unwrap(),
        timeout: Duration::from_secs(5),
    });
    let gw = start(config).await;
    (gw, asked)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_auth_webhook_renames_a_stream_picks_its_renditions_or_refuses_it() {
    let sim = sim("rtmp-hook", false).await;
    let (gw, asked) = hooked_gateway(&sim).await;
    let refused = publish(&gw, "deny/key", 4).wait_with_output().await.unwrap();
    assert!(!refused.status.success(), "a refused publisher fails");
    assert_eq!(get_text(&gw, "/stream/deny.m3u8").await.0, 404);

    let mut ffmpeg = publish(&gw, "original/key", 8);
    eventually(Duration::from_secs(60), "a tiny segment", || async {
        let (status, media) = get_text(&gw, "/stream/renamed/tiny.m3u8").await;
        status == 200 && !listed(&media).1.is_empty()
    })
    .await;
    let (_, master) = get_text(&gw, "/stream/renamed.m3u8").await;
    assert!(master.contains("RESOLUTION=256x144\nrenamed/tiny.m3u8"), "{master}");
    assert!(!master.contains("P240p30fps16x9"), "the webhook's renditions replace the defaults");
    assert_eq!(get_text(&gw, "/stream/original.m3u8").await.0, 404);
    let url = format!("http://{}/stream/renamed/tiny/0.ts", gw.http_addr);
    let (w, h, rate, frames) = probe(&reqwest::get(url).await.unwrap().bytes().await.unwrap());
    assert_eq!((w, h, rate.as_str()), (256, 144, "15/1"));
    // Two seconds at 15 fps; ffmpeg's rate conversion may keep the frame on the boundary.
    assert!((30..=31).contains(&frames), "{frames} frames");
    let _ = ffmpeg.kill().await;
    let rtmp = gw.rtmp_addr.unwrap();
    assert_eq!(
        *asked.lock().unwrap(),
        [format!("rtmp://{rtmp}/deny/key"), format!("rtmp://{rtmp}/original/key")]
    );
    gw.shutdown().await;
}

/// Pushes segment `seq` of `name` with no configuration of its own.
async fn bare_push(gw: &Gateway, name: &str, seq: u64) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("http://{}/live/{name}/{seq}.ts", gw.http_addr))
        .header("Content-Duration", "2000")
        .body(crate::transcode::segment().to_vec())
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_auth_webhook_checks_the_first_push_of_each_stream() {
    let sim = sim("push-hook", true).await;
    let (gw, asked) = hooked_gateway(&sim).await;
    let refused = bare_push(&gw, "deny", 0).await;
    assert_eq!(refused.status(), 403);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["type"], "authentication_denied", "{body}");
    assert_eq!(sim.transcode_stats().requests, 0, "nothing sent for a refused stream");
    for seq in 0..2 {
        let resp = bare_push(&gw, "original", seq).await;
        assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    }
    let (_, master) = get_text(&gw, "/stream/renamed.m3u8").await;
    assert!(master.contains("RESOLUTION=256x144\nrenamed/tiny.m3u8"), "{master}");
    assert_eq!(get_text(&gw, "/stream/original.m3u8").await.0, 404);
    let (_, media) = get_text(&gw, "/stream/renamed/tiny.m3u8").await;
    assert_eq!(listed(&media).1, [0, 1], "{media}");
    let http = gw.http_addr;
    assert_eq!(
        *asked.lock().unwrap(),
        [format!("http://{http}/live/deny/0.ts"), format!("http://{http}/live/original/0.ts")],
        "asked once per stream"
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_webhook_is_the_gateways_fault_not_the_clients() {
    let sim = sim("push-nohook", true).await;
    let mut config = gateway_config(&[&sim]);
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    config.ingest.auth = Some(livepeer_gateway::ingest::auth::StreamAuth {
        url: format!("http://127.0.0.1:{port}/auth?token=s3cret").parse().unwrap(),
        timeout: Duration::from_secs(5),
    });
    let gw = start(config).await;
    let resp = bare_push(&gw, "any", 0).await;
    assert_eq!(resp.status(), 503);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "auth_webhook_unavailable", "{body}");
    // The operator's webhook address and its token are not the client's to read.
    let text = body.to_string();
    assert!(!text.contains("s3cret") && !text.contains(&port.to_string()), "{text}");
    gw.shutdown().await;

    // A webhook that fails (5xx) or answers 200 with what is not its JSON has refused nobody.
    for (status, answer) in [(500, "down"), (200, "<html>not json</html>")] {
        let code = axum::http::StatusCode::from_u16(status).unwrap();
        let app = axum::Router::new().fallback(move || async move { (code, answer) });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let mut config = gateway_config(&[&sim]);
        config.ingest.auth = Some(livepeer_gateway::ingest::auth::StreamAuth {
            url: format!("http://{addr}/auth").parse().unwrap(),
            timeout: Duration::from_secs(5),
        });
        let gw = start(config).await;
        let resp = bare_push(&gw, "any", 0).await;
        assert_eq!(resp.status(), 503, "webhook answering {status} {answer:?}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["type"], "auth_webhook_unavailable", "{body}");
        gw.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_customer_keys_the_rtmp_stream_key_is_a_key_that_may_transcode() {
    let sim = sim("rtmp-keys", false).await;
    let dir = tempfile::tempdir().unwrap();
    let urls = [sim.url()];
    let gw = start(crate::keys::keys_config(&urls, dir.path(), None)).await;
    let (_, llm_only) = crate::keys::create(&gw, json!({"name": "llm", "allowed": ["llm"]})).await;
    let (_, video) =
        crate::keys::create(&gw, json!({"name": "video", "allowed": ["transcode"]})).await;
    for bad in ["not-a-key", llm_only.as_str()] {
        let refused = publish(&gw, &format!("stream/cam/{bad}"), 3).wait_with_output().await;
        assert!(!refused.unwrap().status.success(), "a stream key that may not transcode");
        assert_eq!(get_text(&gw, "/stream/cam.m3u8").await.0, 404);
    }
    let mut ffmpeg = publish(&gw, &format!("stream/cam/{video}"), 6);
    eventually(Duration::from_secs(60), "a segment of the keyed stream", || async {
        let (status, media) = get_text(&gw, "/stream/cam/P240p30fps16x9.m3u8").await;
        status == 200 && !listed(&media).1.is_empty()
    })
    .await;
    let _ = ffmpeg.kill().await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rtmp_stream_outlives_the_idle_timeout_of_pushes_between_its_segments() {
    let sim = sim("rtmp-idle", false).await;
    let mut config = gateway_config(&[&sim]);
    // Far shorter than the 2 s between a publisher's segments.
    config.transcode.idle_timeout = Duration::from_millis(300);
    let (url, _asked) = webhook().await;
    config.ingest.auth = Some(livepeer_gateway::ingest::auth::StreamAuth {
        url: url.parse().unwrap(),
        timeout: Duration::from_secs(5),
    });
    let gw = start(config).await;
    let mut ffmpeg = publish(&gw, "original/key", 20);
    // Every segment in the webhook's rendition: the stream was not closed between two of
    // them and made again by the next with the default renditions.
    eventually(Duration::from_secs(60), "four tiny segments", || async {
        let (status, media) = get_text(&gw, "/stream/renamed/tiny.m3u8").await;
        status == 200 && listed(&media).1.len() >= 4
    })
    .await;
    let (_, master) = get_text(&gw, "/stream/renamed.m3u8").await;
    assert!(!master.contains("P240p30fps16x9"), "{master}");
    let _ = ffmpeg.kill().await;
    gw.shutdown().await;
}
