//! `livepeer-gateway bench-transcode`: what the gateway costs video transcoding.
//!
//! A simulated orchestrator in fast mode (renditions are copies, not encodes: the gateway's
//! work is measured, not x264's) runs in this process; the gateway runs as a child process, so
//! its CPU time and memory are read from `/proc` apart from everything else. The source is a
//! 2 s, 6 Mbit/s 1080p30 MPEG-TS segment made by ffmpeg at start, with three renditions (720p,
//! 360p, 240p).
//!
//! - Latency per segment: an HTTP push answered once the renditions are stored, against the
//!   same exchange done directly (`POST /segment` to the simulator, then fetching each
//!   rendition), in the same run.
//! - Capacity: `streams` concurrent streams, each pushing a segment every 2 s as a live
//!   encoder does, for `seconds`; the gateway's CPU time per wall second gives the streams one
//!   core sustains, its resident memory the memory per stream. A segment answered later than
//!   its own duration, or not at all, counts as late.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use livepeer_pm::keccak256;
use livepeer_proto::headers;
use livepeer_proto::{Message as _, net};
use livepeer_sim::{Sim, SimConfig};
use tokio::time::Instant;

use livepeer_gateway::orchestrator::caps::Capabilities;
use livepeer_gateway::orchestrator::{OrchClient, Timeouts, TlsTrust};
use livepeer_gateway::transcode::profiles::{Format, preset};

use super::bench_live::{Child, percentiles};

/// Transcoding load test settings.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct TranscodeBenchArgs {
    /// Segments per latency measurement.
    #[arg(long, default_value_t = 30)]
    pub(crate) segments: usize,
    /// Concurrent streams of each capacity round; repeatable.
    #[arg(long = "streams", default_values_t = [10usize, 25, 50])]
    pub(crate) streams: Vec<usize>,
    /// Seconds each capacity round runs.
    #[arg(long, default_value_t = 20)]
    pub(crate) seconds: u64,
}

const PRESETS: [&str; 3] = ["P720p30fps16x9", "P360p30fps16x9", "P240p30fps16x9"];
const SEGMENT: Duration = Duration::from_secs(2);

/// Runs the transcoding load test and returns the report as Markdown.
pub(crate) async fn run(args: TranscodeBenchArgs) -> anyhow::Result<String> {
    let source = Bytes::from(source_segment()?);
    let sim = Sim::start(SimConfig {
        name: "bench-transcode".into(),
        transcode_fast: true,
        transcode_max_sessions: 100_000,
        ..SimConfig::default()
    })
    .await?;
    let options = PRESETS.join(",");
    let gateway = Child::spawn_with(
        sim.url(),
        &["--transcoding-options", &options, "--max-sessions", "100000"],
    )?;
    gateway.wait_ready().await?;
    let http = reqwest::Client::builder().tcp_nodelay(true).build()?;

    let mut out = format!(
        "Source: {:.1} MB per 2 s segment (1080p30, 6 Mbit/s); renditions {}.\n\n",
        source.len() as f64 / 1e6,
        PRESETS.join(", ")
    );
    out.push_str("| path | p50 per segment | p99 per segment |\n|---|---:|---:|\n");
    let mut direct = direct_latency(&http, &sim, &source, args.segments).await?;
    let mut via = push_latency(&http, &gateway.http, &source, args.segments).await?;
    let (d, g) = (percentiles(&mut direct), percentiles(&mut via));
    let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1000.0);
    out.push_str(&format!("| direct to the simulator | {} | {} |\n", ms(d.0), ms(d.1)));
    out.push_str(&format!("| through the gateway | {} | {} |\n", ms(g.0), ms(g.1)));
    out.push_str(&format!(
        "| **added by the gateway** | **{}** | **{}** |\n\n",
        ms(g.0.saturating_sub(d.0)),
        ms(g.1.saturating_sub(d.1))
    ));

    out.push_str("| streams | gateway CPU | streams per core (projected) | gateway RSS | memory per stream | late or failed segments |\n|---:|---:|---:|---:|---:|---:|\n");
    for (round, &n) in args.streams.iter().enumerate() {
        let rss_before = gateway.rss_bytes()?;
        let cpu_before = gateway.cpu_seconds()?;
        let started = Instant::now();
        let deadline = started + Duration::from_secs(args.seconds);
        let late = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for i in 0..n {
            let name = format!("load{round}-{i}");
            let (http, base, source, late) =
                (http.clone(), gateway.http.clone(), source.clone(), late.clone());
            tasks.push(tokio::spawn(async move {
                run_stream(http, base, name, source, deadline, late).await
            }));
        }
        tokio::time::sleep(Duration::from_secs(args.seconds) / 2).await;
        let rss_during = gateway.rss_bytes()?;
        for t in tasks {
            t.await?;
        }
        let cpu = (gateway.cpu_seconds()? - cpu_before) / started.elapsed().as_secs_f64();
        let per_stream = rss_during.saturating_sub(rss_before) as f64 / n as f64;
        out.push_str(&format!(
            "| {n} | {:.1}% | {:.0} | {:.1} MB | {:.0} KB | {} |\n",
            cpu * 100.0,
            n as f64 / cpu.max(1e-9),
            rss_during as f64 / 1e6,
            per_stream / 1e3,
            late.load(Ordering::Relaxed),
        ));
        // Idle streams close after the idle timeout; the next round starts with new ones.
    }
    Ok(out)
}

/// The source segment, made by ffmpeg.
fn source_segment() -> anyhow::Result<Vec<u8>> {
    let out = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=30:duration=2"])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-g", "60", "-pix_fmt", "yuv420p"])
        .args(["-b:v", "6M", "-maxrate", "6M", "-bufsize", "12M", "-f", "mpegts", "pipe:1"])
        .output()
        .map_err(|e| anyhow::anyhow!("cannot run ffmpeg (is it installed?): {e}"))?;
    anyhow::ensure!(out.status.success(), "ffmpeg: {}", String::from_utf8_lossy(&out.stderr));
    Ok(out.stdout)
}

/// `n` segments pushed one after another to stream `latency`; the time of each.
async fn push_latency(
    http: &reqwest::Client,
    base: &str,
    source: &Bytes,
    n: usize,
) -> anyhow::Result<Vec<Duration>> {
    let mut times = Vec::with_capacity(n);
    for seq in 0..n {
        let started = Instant::now();
        let (status, body) = push(http, base, "latency", seq as u64, source).await?;
        anyhow::ensure!(
            status == 200,
            "push answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
        times.push(started.elapsed());
    }
    Ok(times)
}

async fn push(
    http: &reqwest::Client,
    base: &str,
    stream: &str,
    seq: u64,
    source: &Bytes,
) -> anyhow::Result<(u16, Bytes)> {
    let resp = http
        .post(format!("{base}/live/{stream}/{seq}.ts"))
        .header("Content-Duration", "2000")
        .body(source.clone())
        .send()
        .await?;
    let status = resp.status().as_u16();
    Ok((status, resp.bytes().await?))
}

/// The gateway's exchange done directly: `POST /segment`, then each rendition fetched.
async fn direct_latency(
    http: &reqwest::Client,
    sim: &Sim,
    source: &Bytes,
    n: usize,
) -> anyhow::Result<Vec<Duration>> {
    let client = OrchClient::new(
        Timeouts { connect: Duration::from_secs(2), call: Duration::from_secs(5) },
        TlsTrust::AcceptAny,
        None,
    );
    let info = client.get_orchestrator(&sim.url().parse()?, None, false).await?;
    let transcoder = info.transcoder.trim_end_matches('/').to_owned();
    let mut times = Vec::with_capacity(n);
    for seq in 0..n {
        let header = segment_header(&info, seq as i64, source);
        let started = Instant::now();
        let body = http
            .post(format!("{transcoder}/segment"))
            .header(headers::SEGMENT, header)
            .header(headers::PAYMENT, headers::OFFCHAIN_PAYMENT)
            .header("Content-Type", "video/MP2T")
            .body(source.clone())
            .send()
            .await?
            .bytes()
            .await?;
        let result = net::TranscodeResult::decode(body.as_ref())?;
        let Some(net::transcode_result::Result::Data(data)) = result.result else {
            anyhow::bail!("the simulator did not transcode: {result:?}");
        };
        for seg in &data.segments {
            http.get(&seg.url).send().await?.bytes().await?;
        }
        times.push(started.elapsed());
    }
    Ok(times)
}

/// An unsigned (off-chain) `Livepeer-Segment` for the three presets.
fn segment_header(
    info: &livepeer_gateway::orchestrator::info::OrchInfo,
    seq: i64,
    data: &[u8],
) -> String {
    let profiles: Vec<net::VideoProfile> =
        PRESETS.iter().filter_map(|name| preset(name)).map(|p| p.to_wire(Format::MpegTs)).collect();
    let seg = net::SegData {
        manifest_id: b"direct".to_vec(),
        seq,
        hash: keccak256(data).to_vec(),
        profiles: b"invalid".to_vec(),
        duration: 2000,
        capabilities: Some((&Capabilities::transcode_job("")).into()),
        auth_token: info.auth_token.as_ref().map(|t| net::AuthToken {
            token: t.token.clone(),
            session_id: t.session_id.clone(),
            expiration: t.expiration,
        }),
        full_profiles3: profiles,
        ..net::SegData::default()
    };
    STANDARD.encode(seg.encode_to_vec())
}

/// One stream pushing a segment every two seconds until `deadline`.
async fn run_stream(
    http: reqwest::Client,
    base: String,
    name: String,
    source: Bytes,
    deadline: Instant,
    late: Arc<AtomicU64>,
) {
    let mut tick = tokio::time::interval(SEGMENT);
    let mut seq = 0;
    while Instant::now() < deadline {
        tick.tick().await;
        let started = Instant::now();
        let ok = matches!(push(&http, &base, &name, seq, &source).await, Ok((200, _)));
        if !ok || started.elapsed() > SEGMENT {
            late.fetch_add(1, Ordering::Relaxed);
        }
        seq += 1;
    }
}
