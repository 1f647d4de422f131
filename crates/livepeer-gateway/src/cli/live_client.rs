//! `livepeer-gateway live-client`: a live video client for trying a gateway's live routes
//! without writing one. It starts a stream, publishes MPEG-TS segments in real time (a file's
//! segments, or an ffmpeg test pattern), saves the processed segments the gateway sends back,
//! and prints the stream's status at the end.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use livepeer_trickle::{
    ClientConfig, HttpPublisher, HttpSubscriber, Publish, ReadSegment, Subscribe, WriteSegment,
};
use serde_json::{Value, json};

/// Live client settings.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct LiveClientArgs {
    /// The gateway's public API.
    #[arg(long, default_value = "http://127.0.0.1:9935")]
    pub(crate) gateway: String,
    /// Stream name.
    #[arg(long, default_value = "demo")]
    pub(crate) stream: String,
    /// Pipeline.
    #[arg(long, default_value = "noop")]
    pub(crate) pipeline: String,
    /// Initial params (JSON object).
    #[arg(long, default_value = "{}")]
    pub(crate) params: String,
    /// A video file to send (re-cut into one-second MPEG-TS segments by ffmpeg); without it, an
    /// ffmpeg test pattern.
    #[arg(long)]
    pub(crate) input: Option<PathBuf>,
    /// Seconds of video to send.
    #[arg(long, default_value_t = 10)]
    pub(crate) seconds: u32,
    /// Where the processed segments are written.
    #[arg(long, default_value = "live-out")]
    pub(crate) output: PathBuf,
}

/// Runs the client and returns the stream's final status, pretty-printed.
pub(crate) async fn run(args: LiveClientArgs) -> anyhow::Result<String> {
    let params: Value = serde_json::from_str(&args.params)?;
    let segments = cut_segments(&args)?;
    anyhow::ensure!(!segments.is_empty(), "ffmpeg produced no segments");
    let http = reqwest::Client::new();
    let base = args.gateway.trim_end_matches('/');
    let resp = http
        .post(format!("{base}/live/video-to-video/{}/start", args.stream))
        .json(&json!({"pipeline": args.pipeline, "params": params}))
        .send()
        .await?;
    let status = resp.status();
    let started: Value = resp.json().await?;
    anyhow::ensure!(status.is_success(), "start answered {status}: {started}");
    eprintln!("stream started on {}", started["orchestrator"]);
    let url = |field: &str| started[field].as_str().unwrap_or_default().to_owned();

    let config = ClientConfig::default();
    let client = config.client()?;
    std::fs::create_dir_all(&args.output)?;
    let mut subscriber =
        HttpSubscriber::new(client.clone(), &url("subscribe_url"), 0, config.clone())?;
    let output = args.output.clone();
    let reader = tokio::spawn(async move {
        let mut saved = 0usize;
        while let Ok(Some(mut segment)) = subscriber.segment().await {
            let mut data = Vec::new();
            while let Ok(Some(chunk)) = segment.chunk().await {
                data.extend_from_slice(&chunk);
            }
            if data.is_empty() {
                continue;
            }
            let path = output.join(format!("out-{saved:05}.ts"));
            if std::fs::write(&path, &data).is_ok() {
                eprintln!("received {} ({} bytes)", path.display(), data.len());
                saved += 1;
            }
        }
        saved
    });

    let mut publisher = HttpPublisher::new(client, &url("publish_url"), "video/MP2T", config)?;
    for (i, data) in segments.iter().enumerate() {
        // Real time: a one-second segment is written over one second, in ten chunks.
        let mut writer = publisher.segment().await?;
        let step = data.len().div_ceil(10).max(1);
        for chunk in data.chunks(step) {
            writer.write(data.slice_ref(chunk)).await?;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        writer.finish().await?;
        eprintln!("sent segment {i} ({} bytes)", data.len());
    }
    publisher.close().await?;
    let saved = tokio::time::timeout(Duration::from_secs(10), reader).await??;
    // Only the client that started a stream may read it: its secret proves that.
    let final_status: Value = http
        .get(url("status_url"))
        .header(livepeer_gateway::live::SECRET_HEADER, url("stream_secret"))
        .send()
        .await?
        .json()
        .await
        .unwrap_or(Value::Null);
    eprintln!("{saved} processed segments saved in {}", args.output.display());
    Ok(serde_json::to_string_pretty(&final_status)? + "\n")
}

/// One-second MPEG-TS segments starting on keyframes, made by ffmpeg in a temporary directory.
fn cut_segments(args: &LiveClientArgs) -> anyhow::Result<Vec<Bytes>> {
    let dir = std::env::temp_dir().join(format!("livepeer-live-client-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut cmd = std::process::Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "error", "-y"]);
    match &args.input {
        Some(path) => cmd.arg("-i").arg(path),
        None => cmd.args(["-f", "lavfi", "-i", "testsrc=size=640x360:rate=30"]),
    };
    let status = cmd
        .args(["-t", &args.seconds.to_string(), "-an", "-c:v", "libx264", "-preset", "veryfast"])
        .args(["-pix_fmt", "yuv420p", "-g", "30", "-keyint_min", "30", "-sc_threshold", "0"])
        .args(["-f", "segment", "-segment_time", "1", "-segment_format", "mpegts"])
        .arg(dir.join("seg%05d.ts"))
        .status()
        .map_err(|e| anyhow::anyhow!("cannot run ffmpeg (is it installed?): {e}"))?;
    anyhow::ensure!(status.success(), "ffmpeg failed: {status}");
    let mut out = Vec::new();
    for i in 0.. {
        match std::fs::read(dir.join(format!("seg{i:05}.ts"))) {
            Ok(data) => out.push(Bytes::from(data)),
            Err(_) => break,
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(out)
}
