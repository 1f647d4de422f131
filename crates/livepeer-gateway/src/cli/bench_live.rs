//! `livepeer-gateway bench-live`: what the gateway costs a live video stream.
//!
//! A simulated orchestrator (passthrough) runs in this process; the gateway runs as a child
//! process (this same binary), so its CPU time and memory can be read from `/proc` apart from
//! the simulator's and the clients'. Streams carry 2 Mbit/s: one segment of 250,000 bytes per
//! second, written in ten chunks 100 ms apart, as a live encoder would.
//!
//! - Latency per segment: the time from the publisher's first (last) byte to the subscriber's
//!   first (last) byte, through the gateway and, in the same run, publishing to the
//!   simulator's channels directly. The difference is what the gateway adds.
//! - Capacity: `streams` concurrent streams for `seconds`; the gateway's CPU time per second
//!   of wall time gives the streams one core could relay; its resident memory, before and
//!   during, gives the memory per stream.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use livepeer_proto::headers;
use livepeer_sim::{Sim, SimConfig, SimModel};
use livepeer_trickle::{
    ClientConfig, HttpPublisher, HttpSubscriber, Publish, ReadSegment, Subscribe, WriteSegment,
};
use serde_json::{Value, json};
use tokio::time::Instant;

use livepeer_gateway::orchestrator::caps::Capabilities;
use livepeer_gateway::orchestrator::creds::segment_header;
use livepeer_gateway::orchestrator::{OrchClient, Timeouts, TlsTrust};

/// Live load test settings.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct LiveBenchArgs {
    /// Segments per latency measurement (one per second).
    #[arg(long, default_value_t = 30)]
    pub(crate) segments: usize,
    /// Concurrent streams of each capacity round; repeatable.
    #[arg(long = "streams", default_values_t = [25usize, 50, 100])]
    pub(crate) streams: Vec<usize>,
    /// Seconds each capacity round runs.
    #[arg(long, default_value_t = 10)]
    pub(crate) seconds: u64,
}

/// Bytes per one-second segment: 2 Mbit/s.
const SEGMENT_BYTES: usize = 250_000;
const CHUNKS: usize = 10;
const CHUNK_GAP: Duration = Duration::from_millis(100);

/// Runs the live load test and returns the report as Markdown.
pub(crate) async fn run(args: LiveBenchArgs) -> anyhow::Result<String> {
    let sim = Sim::start(SimConfig {
        name: "bench-live".into(),
        models: vec![SimModel::new("live-video-to-video", "noop").capacity(100_000)],
        ..SimConfig::default()
    })
    .await?;
    let gateway = Child::spawn(sim.url())?;
    gateway.wait_ready().await?;
    let trickle = ClientConfig { max_retries: 2, ..ClientConfig::default() };
    let http = reqwest::Client::builder().http1_only().tcp_nodelay(true).build()?;

    let mut out = String::from(
        "| path | first byte p50 | first byte p99 | last byte p50 | last byte p99 |\n|---|---:|---:|---:|---:|\n",
    );
    let direct = direct_stream(&sim).await?;
    let via = gateway.start_stream(&http, "latency").await?;
    let d = latency(&http, &trickle, &direct, args.segments).await?;
    let g = latency(&http, &trickle, &via, args.segments).await?;
    let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1000.0);
    for (name, l) in [("direct to the simulator", &d), ("through the gateway", &g)] {
        out.push_str(&format!(
            "| {name} | {} | {} | {} | {} |\n",
            ms(l.first.0),
            ms(l.first.1),
            ms(l.last.0),
            ms(l.last.1)
        ));
    }
    out.push_str(&format!(
        "| **added by the gateway** | **{}** | **{}** | **{}** | **{}** |\n\n",
        ms(g.first.0.saturating_sub(d.first.0)),
        ms(g.first.1.saturating_sub(d.first.1)),
        ms(g.last.0.saturating_sub(d.last.0)),
        ms(g.last.1.saturating_sub(d.last.1)),
    ));

    out.push_str("| streams at 2 Mbit/s | gateway CPU | streams per core (projected) | gateway RSS | memory per stream | late segments |\n|---:|---:|---:|---:|---:|---:|\n");
    for (round, &n) in args.streams.iter().enumerate() {
        let rss_before = gateway.rss_bytes()?;
        let mut streams = Vec::with_capacity(n);
        for i in 0..n {
            streams.push(gateway.start_stream(&http, &format!("load{round}-{i}")).await?);
        }
        let cpu_before = gateway.cpu_seconds()?;
        let started = Instant::now();
        let late = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut tasks = Vec::new();
        let deadline = started + Duration::from_secs(args.seconds);
        for s in streams {
            let (http, trickle, late) = (http.clone(), trickle.clone(), late.clone());
            tasks.push(tokio::spawn(
                async move { run_stream(http, trickle, s, deadline, late).await },
            ));
        }
        // Sample memory in the middle of the round, with every stream running.
        tokio::time::sleep(Duration::from_secs(args.seconds) / 2).await;
        let rss_during = gateway.rss_bytes()?;
        for t in tasks {
            t.await??;
        }
        let cpu = (gateway.cpu_seconds()? - cpu_before) / started.elapsed().as_secs_f64();
        let per_stream = rss_during.saturating_sub(rss_before) as f64 / n as f64;
        out.push_str(&format!(
            "| {n} | {:.1}% | {:.0} | {:.1} MB | {:.0} KB | {} |\n",
            cpu * 100.0,
            n as f64 / cpu.max(1e-9),
            rss_during as f64 / 1e6,
            per_stream / 1e3,
            late.load(std::sync::atomic::Ordering::Relaxed),
        ));
        // Let the streams end before the next round.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    Ok(out)
}

/// The two channel URLs the load test uses.
#[derive(Debug, Clone)]
struct StreamUrls {
    publish: String,
    subscribe: String,
}

/// The gateway as a child process.
pub(crate) struct Child {
    child: std::process::Child,
    pub(crate) http: String,
    tick: f64,
}

impl Child {
    fn spawn(orchestrator: &str) -> anyhow::Result<Self> {
        let live = ["--live-max-streams", "100000", "--live-out-segment-timeout", "30s"];
        Self::spawn_with(orchestrator, &live)
    }

    /// This binary as a gateway on ephemeral ports, pointed at `orchestrator`, with `args`.
    pub(crate) fn spawn_with(orchestrator: &str, args: &[&str]) -> anyhow::Result<Self> {
        let port = || -> anyhow::Result<u16> {
            Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
        };
        let (http, cli) = (port()?, port()?);
        let child = std::process::Command::new(std::env::current_exe()?)
            .args(["--http-addr", &format!("127.0.0.1:{http}")])
            .args(["--cli-addr", &format!("127.0.0.1:{cli}"), "--rtmp-addr", "off"])
            .args(["--orch-addr", orchestrator, "--log-level", "warn"])
            .args(args)
            .stdin(std::process::Stdio::null())
            .spawn()?;
        let tick = std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .unwrap_or(100.0);
        Ok(Self { child, http: format!("http://127.0.0.1:{http}"), tick })
    }

    pub(crate) async fn wait_ready(&self) -> anyhow::Result<()> {
        for _ in 0..200 {
            if let Ok(r) = reqwest::get(format!("{}/healthz", self.http)).await
                && r.status().is_success()
            {
                // Discovery runs at start; give the first round a moment.
                tokio::time::sleep(Duration::from_millis(500)).await;
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!("the gateway did not start")
    }

    async fn start_stream(&self, http: &reqwest::Client, name: &str) -> anyhow::Result<StreamUrls> {
        let url = format!("{}/live/video-to-video/{name}/start", self.http);
        let resp = http.post(url).json(&json!({"pipeline": "noop"})).send().await?;
        let status = resp.status();
        let body: Value = resp.json().await?;
        anyhow::ensure!(status.is_success(), "start failed: {body}");
        Ok(StreamUrls {
            publish: body["publish_url"].as_str().unwrap_or_default().to_owned(),
            subscribe: body["subscribe_url"].as_str().unwrap_or_default().to_owned(),
        })
    }

    /// User plus system CPU seconds so far.
    pub(crate) fn cpu_seconds(&self) -> anyhow::Result<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))?;
        // Fields after the command name, which is in parentheses and may contain spaces.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
        // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
        Ok((ticks(11) + ticks(12)) / self.tick)
    }

    pub(crate) fn rss_bytes(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let kb = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        Ok(kb * 1024)
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A stream started on the simulator directly, with the headers a gateway would send.
async fn direct_stream(sim: &Sim) -> anyhow::Result<StreamUrls> {
    let client = OrchClient::new(
        Timeouts { connect: Duration::from_secs(2), call: Duration::from_secs(5) },
        TlsTrust::AcceptAny,
        None,
    );
    let info = client.get_orchestrator(&sim.url().parse()?, None, false).await?;
    let caps = Capabilities::ai_job(35, "noop", "", "");
    let resp = reqwest::Client::new()
        .post(format!("{}/live-video-to-video", sim.url()))
        .header(headers::PAYMENT, headers::OFFCHAIN_PAYMENT)
        .header(headers::SEGMENT, segment_header("direct", &caps, info.auth_token.as_ref(), None))
        .json(&json!({"model_id": "noop", "params": {}}))
        .send()
        .await?;
    let body: Value = resp.json().await?;
    Ok(StreamUrls {
        publish: body["publish_url"].as_str().unwrap_or_default().to_owned(),
        subscribe: body["subscribe_url"].as_str().unwrap_or_default().to_owned(),
    })
}

struct Latency {
    /// (p50, p99) of first-byte latency.
    first: (Duration, Duration),
    /// (p50, p99) of last-byte latency.
    last: (Duration, Duration),
}

fn segment(i: usize) -> Bytes {
    Bytes::from((0..SEGMENT_BYTES).map(|b| (b + i) as u8).collect::<Vec<u8>>())
}

/// Publishes `n` one-second segments and times each from publisher to subscriber.
async fn latency(
    http: &reqwest::Client,
    config: &ClientConfig,
    urls: &StreamUrls,
    n: usize,
) -> anyhow::Result<Latency> {
    let mut publisher =
        HttpPublisher::new(http.clone(), &urls.publish, "video/MP2T", config.clone())?;
    let mut subscriber = HttpSubscriber::new(http.clone(), &urls.subscribe, 0, config.clone())?;
    let reading = tokio::spawn(async move {
        let mut times = Vec::new();
        while let Ok(Some(mut reader)) = subscriber.segment().await {
            let mut first = None;
            while let Ok(Some(_)) = reader.chunk().await {
                first.get_or_insert_with(Instant::now);
            }
            if let Some(first) = first {
                times.push((first, Instant::now()));
            }
        }
        times
    });
    let mut sent = Vec::new();
    for i in 0..n {
        let data = segment(i);
        let mut writer = publisher.segment().await?;
        let mut first = None;
        for (k, chunk) in data.chunks(SEGMENT_BYTES / CHUNKS).enumerate() {
            if k > 0 {
                tokio::time::sleep(CHUNK_GAP).await;
            }
            first.get_or_insert_with(Instant::now);
            writer.write(data.slice_ref(chunk)).await?;
        }
        let last = Instant::now();
        writer.finish().await?;
        sent.push((first.unwrap_or(last), last));
        tokio::time::sleep(CHUNK_GAP).await;
    }
    publisher.close().await?;
    let received = tokio::time::timeout(Duration::from_secs(10), reading).await??;
    anyhow::ensure!(received.len() >= n, "{} of {n} segments came back", received.len());
    let mut firsts: Vec<Duration> = sent.iter().zip(&received).map(|(s, r)| r.0 - s.0).collect();
    let mut lasts: Vec<Duration> =
        sent.iter().zip(&received).map(|(s, r)| r.1.saturating_duration_since(s.1)).collect();
    Ok(Latency { first: percentiles(&mut firsts), last: percentiles(&mut lasts) })
}

pub(crate) fn percentiles(v: &mut [Duration]) -> (Duration, Duration) {
    v.sort();
    let at =
        |p: f64| v.get(((v.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or_default();
    (at(0.5), at(0.99))
}

/// One stream at 2 Mbit/s until `deadline`; a segment whose output ends more than a second
/// after its input counts as late.
async fn run_stream(
    http: reqwest::Client,
    config: ClientConfig,
    urls: StreamUrls,
    deadline: Instant,
    late: Arc<std::sync::atomic::AtomicU64>,
) -> anyhow::Result<()> {
    let mut publisher =
        HttpPublisher::new(http.clone(), &urls.publish, "video/MP2T", config.clone())?;
    let mut subscriber = HttpSubscriber::new(http, &urls.subscribe, 0, config)?;
    let reading = tokio::spawn(async move {
        let mut ends = Vec::new();
        while let Ok(Some(mut reader)) = subscriber.segment().await {
            while let Ok(Some(_)) = reader.chunk().await {}
            ends.push(Instant::now());
        }
        ends
    });
    let data = segment(0);
    let mut ends_sent = Vec::new();
    while Instant::now() < deadline {
        let mut writer = publisher.segment().await?;
        for chunk in data.chunks(SEGMENT_BYTES / CHUNKS) {
            writer.write(data.slice_ref(chunk)).await?;
            tokio::time::sleep(CHUNK_GAP).await;
        }
        writer.finish().await?;
        ends_sent.push(Instant::now());
    }
    publisher.close().await?;
    let ends = tokio::time::timeout(Duration::from_secs(20), reading).await??;
    let mut n = 0;
    for (i, sent) in ends_sent.iter().enumerate() {
        match ends.get(i) {
            Some(end) if end.saturating_duration_since(*sent) <= Duration::from_secs(1) => {}
            _ => n += 1,
        }
    }
    late.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    Ok(())
}
