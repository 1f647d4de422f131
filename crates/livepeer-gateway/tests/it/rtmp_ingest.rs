//! RTMP ingest over a real socket: ffmpeg publishes a test pattern, the gateway's RTMP
//! listener cuts it into MPEG-TS segments at keyframes, and a sink collects them.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use livepeer_gateway::ingest::{self, CutLimits, IngestSink, OpenRequest, RtmpConfig, Segment};
use serde_json::Value;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// What the sink saw, as events in order.
#[derive(Debug)]
enum Event {
    Opened(OpenRequest),
    Segment(Segment),
    Closed(Option<String>),
}

struct Collect {
    events: mpsc::UnboundedSender<Event>,
    refuse: Mutex<Vec<String>>,
}

impl IngestSink for Collect {
    type Stream = String;

    async fn open(&self, req: OpenRequest) -> Result<String, String> {
        if self.refuse.lock().unwrap().contains(&req.manifest_id) {
            return Err("refused by the test".into());
        }
        let id = req.manifest_id.clone();
        let _ = self.events.send(Event::Opened(req));
        Ok(id)
    }

    async fn segment(&self, _stream: &String, segment: Segment) -> Result<(), String> {
        let _ = self.events.send(Event::Segment(segment));
        Ok(())
    }

    async fn close(&self, _stream: String, error: Option<String>) {
        let _ = self.events.send(Event::Closed(error));
    }
}

/// An RTMP listener with a collecting sink; its address and events.
async fn listen(refuse: &[&str]) -> (String, mpsc::UnboundedReceiver<Event>, CancellationToken) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, rx) = mpsc::unbounded_channel();
    let sink =
        Collect { events: tx, refuse: Mutex::new(refuse.iter().map(|s| s.to_string()).collect()) };
    let config = RtmpConfig {
        max_connections: 8,
        max_pending_per_address: 8,
        limits: CutLimits {
            length: Duration::from_secs(2),
            max_duration: Duration::from_secs(8),
            max_bytes: 32 << 20,
        },
        publish_deadline: Duration::from_secs(10),
        stall: Duration::from_secs(5),
    };
    let cancel = CancellationToken::new();
    tokio::spawn(ingest::serve(listener, config, Arc::new(sink), cancel.clone()));
    (addr, rx, cancel)
}

/// ffmpeg publishing `seconds` of a 320x240 30 fps pattern with a tone, a keyframe a second,
/// as fast as it can; its exit status.
async fn publish(url: &str, seconds: u32) -> std::process::ExitStatus {
    tokio::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin"])
        .args(["-f", "lavfi", "-i", "testsrc=size=320x240:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"])
        .args(["-t", &seconds.to_string(), "-c:v", "libx264", "-preset", "ultrafast"])
        .args(["-g", "30", "-pix_fmt", "yuv420p", "-c:a", "aac", "-f", "flv", url])
        .kill_on_drop(true)
        .status()
        .await
        .expect("ffmpeg runs")
}

/// Every event until the stream closes (the timeout only guards a hung test).
async fn until_closed(rx: &mut mpsc::UnboundedReceiver<Event>) -> Vec<Event> {
    let mut out = Vec::new();
    loop {
        let e = tokio::time::timeout(Duration::from_secs(120), rx.recv()).await.unwrap().unwrap();
        let closed = matches!(e, Event::Closed(_));
        out.push(e);
        if closed {
            return out;
        }
    }
}

/// Streams of one MPEG-TS segment by ffprobe: (codec, width, height, frames) per stream.
fn probe(data: &[u8]) -> Vec<(String, u64, u64, u64)> {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), data).unwrap();
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-of", "json"])
        .args(["-show_entries", "stream=codec_name,width,height,nb_read_frames"])
        .arg(file.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "ffprobe: {}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let num = |s: &Value, k: &str| {
        s[k].as_u64().or_else(|| s[k].as_str().and_then(|n| n.parse().ok())).unwrap_or(0)
    };
    v["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let codec = s["codec_name"].as_str().unwrap_or_default().to_owned();
            (codec, num(s, "width"), num(s, "height"), num(s, "nb_read_frames"))
        })
        .collect()
}

#[tokio::test]
async fn a_published_stream_is_cut_into_keyframe_segments_of_the_asked_length() {
    let (addr, mut rx, cancel) = listen(&[]).await;
    let status = publish(&format!("rtmp://{addr}/stream/abc/secret"), 20).await;
    assert!(status.success(), "ffmpeg publish failed: {status}");
    let events = until_closed(&mut rx).await;
    let Event::Opened(open) = &events[0] else { panic!("first event: {:?}", events[0]) };
    assert_eq!((open.manifest_id.as_str(), open.key.as_str()), ("abc", "secret"));
    assert_eq!(open.url, format!("rtmp://{addr}/stream/abc/secret"));
    let Some(Event::Closed(None)) = events.last() else { panic!("ended with {:?}", events.last()) };
    let segments: Vec<&Segment> = events
        .iter()
        .filter_map(|e| if let Event::Segment(s) = e { Some(s) } else { None })
        .collect();
    assert_eq!(segments.len(), 10, "20 s in 2 s segments");
    assert_eq!(segments.iter().map(|s| s.seq).collect::<Vec<_>>(), (0..10).collect::<Vec<_>>());
    let total: Duration = segments.iter().map(|s| s.duration).sum();
    assert!(total.abs_diff(Duration::from_secs(20)) < Duration::from_millis(100), "{total:?}");
    let mut frames = 0;
    for s in &segments {
        assert!(s.duration.abs_diff(Duration::from_secs(2)) < Duration::from_millis(50), "{s:?}");
        let streams = probe(&s.data);
        let video = streams.iter().find(|v| v.0 == "h264").expect("a video stream");
        assert_eq!((video.1, video.2), (320, 240));
        assert!(streams.iter().any(|a| a.0 == "aac"), "audio kept: {streams:?}");
        frames += video.3;
    }
    assert_eq!(frames, 600, "every frame in exactly one segment");
    cancel.cancel();
}

#[tokio::test]
async fn a_refused_stream_is_closed_without_segments() {
    let (addr, mut rx, cancel) = listen(&["denied"]).await;
    let status = publish(&format!("rtmp://{addr}/denied/key"), 4).await;
    assert!(!status.success(), "a refused publish fails for the publisher");
    cancel.cancel();
    assert!(rx.recv().await.is_none(), "the sink saw nothing of a refused stream");
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed() {
    let (addr, _rx, cancel) = listen(&[]).await;
    let mut socket = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut buf = [0u8; 16];
    // The guard is generous; the listener closes after its handshake deadline (2 s).
    let read = tokio::time::timeout(Duration::from_secs(30), socket.read(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "closed, not held: {read:?}");
    cancel.cancel();
}

#[tokio::test]
async fn a_timestamp_jump_does_not_make_a_segment_hours_long() {
    let (addr, mut rx, cancel) = listen(&[]).await;
    // 8 s of video whose timestamps jump 10 hours ahead at 4 s, on a keyframe: an encoder
    // restarted or a source switched. The segment before the jump lasted at most 2 s.
    let status = tokio::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin"])
        .args(["-t", "8", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=30"])
        .args(["-vf", "setpts=PTS+if(gte(T\\,4)\\,36000/TB\\,0)", "-fps_mode", "passthrough"])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-g", "30", "-pix_fmt", "yuv420p"])
        .args(["-f", "flv", &format!("rtmp://{addr}/jump/key")])
        .kill_on_drop(true)
        .status()
        .await
        .expect("ffmpeg runs");
    assert!(status.success(), "ffmpeg publish failed: {status}");
    let events = until_closed(&mut rx).await;
    let segments: Vec<&Segment> = events
        .iter()
        .filter_map(|e| if let Event::Segment(s) = e { Some(s) } else { None })
        .collect();
    assert!(segments.len() >= 3, "{events:?}");
    for s in &segments {
        // The cap of media time without a keyframe (8 s) and one frame: never the jump.
        assert!(s.duration <= Duration::from_secs(9), "segment {} lasts {:?}", s.seq, s.duration);
    }
    let total: Duration = segments.iter().map(|s| s.duration).sum();
    assert!(total <= Duration::from_secs(9), "8 s published, {total:?} cut");
    cancel.cancel();
}

#[tokio::test]
async fn a_publisher_whose_media_gives_no_segment_is_closed_at_the_stall_deadline() {
    let (addr, mut rx, cancel) = listen(&[]).await;
    // Two minutes of audio in real time and no video: nothing the cutter can cut.
    let mut ffmpeg = tokio::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"])
        .args(["-t", "120", "-c:a", "aac", "-f", "flv", &format!("rtmp://{addr}/mute/key")])
        .kill_on_drop(true)
        .spawn()
        .expect("ffmpeg runs");
    let started = tokio::time::Instant::now();
    let Event::Opened(_) = rx.recv().await.unwrap() else { panic!("first event") };
    // The listener's stall deadline is 5 s; before it had one, the stream (and its
    // connection, its ffmpeg and its place among the streams) lasted the two minutes.
    let closed = tokio::time::timeout(Duration::from_secs(30), rx.recv()).await;
    let Ok(Some(Event::Closed(Some(error)))) = closed else {
        panic!("not closed with an error within 30 s: {closed:?}")
    };
    assert!(error.contains("no segment"), "{error}");
    // The publisher's connection is closed too.
    let exit = tokio::time::timeout(Duration::from_secs(30), ffmpeg.wait()).await;
    assert!(exit.is_ok(), "the publisher was still connected");
    assert!(started.elapsed() < Duration::from_secs(60));
    cancel.cancel();
}

/// Everything logged in this test's process, at every level.
fn capture_logs() -> Arc<Mutex<Vec<u8>>> {
    #[derive(Clone)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let logs = Arc::new(Mutex::new(Vec::new()));
    let writer = Shared(logs.clone());
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .init();
    logs
}

#[tokio::test]
async fn a_refused_stream_key_is_not_logged() {
    let logs = capture_logs();
    let (addr, mut rx, cancel) = listen(&[]).await;
    // ffmpeg sends `m/s3cretkey` as the app of this URL and `x` as the stream name; the
    // name is not a manifest id and key, so the publish is refused.
    let status = publish(&format!("rtmp://{addr}/m/s3cretkey/x"), 1).await;
    assert!(!status.success(), "a refused publish fails for the publisher");
    cancel.cancel();
    assert!(rx.recv().await.is_none(), "the sink saw nothing of a refused stream");
    let logs = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("RTMP publish refused"), "{logs}");
    assert!(!logs.contains("s3cretkey"), "{logs}");
}
