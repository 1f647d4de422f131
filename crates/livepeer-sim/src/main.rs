//! `livepeer-sim`: run a simulated orchestrator from the command line.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use livepeer_sim::{ByocKind, Sim, SimByoc, SimConfig, SimModel};

/// A simulated Livepeer orchestrator speaking the real wire protocol.
#[derive(Debug, Parser)]
#[command(name = "livepeer-sim", version)]
struct Args {
    /// Listen address.
    #[arg(long, default_value = "127.0.0.1:8935")]
    bind: SocketAddr,
    /// Serve cleartext HTTP/1.1 + h2c instead of TLS with a self-signed certificate.
    #[arg(long)]
    plain: bool,
    /// Ethereum address to advertise (makes it behave as an on-chain orchestrator).
    #[arg(long)]
    eth_address: Option<livepeer_pm::Address>,
    /// Ticket face value in wei (on chain only).
    #[arg(long, default_value_t = SimConfig::default().face_value)]
    face_value: u128,
    /// Expected value of each ticket in wei, and the balance a paid request needs (on chain only).
    #[arg(long, default_value_t = SimConfig::default().ticket_ev)]
    ticket_ev: u128,
    /// Base price as `per_unit/pixels_per_unit` wei.
    #[arg(long, default_value = "0/1")]
    price: String,
    /// A model to serve: `pipeline/model[:warm|:cold][:capacity=N][:price=P/Q]`; repeatable.
    #[arg(long = "model")]
    models: Vec<String>,
    /// Fixed answer latency in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Random extra latency, 0..N milliseconds.
    #[arg(long, default_value_t = 0)]
    jitter_ms: u64,
    /// Parts per million of calls answered with `OrchestratorCapped`.
    #[arg(long, default_value_t = 0)]
    error_rate_ppm: u32,
    /// Delay before each LLM token, in milliseconds.
    #[arg(long, default_value_t = 0)]
    token_delay_ms: u64,
    /// Processing time of every AI job, in milliseconds.
    #[arg(long, default_value_t = 0)]
    ai_latency_ms: u64,
    /// Live video: re-encode each segment through this ffmpeg video filter (e.g. `hflip`)
    /// instead of passing it through.
    #[arg(long)]
    live_filter: Option<String>,
    /// Serve the AI API on a second, HTTP/1.1-only port (advertised as the transcoder URI),
    /// like an orchestrator whose AI worker is a plain HTTP server.
    #[arg(long)]
    ai_http1_only: bool,
    /// A BYOC capability: `name:reverse|echo|lines[:capacity=N][:price=P/Q]` (price in wei per
    /// second, per unit / scaling; quoted and charged only with `--eth-address`, since an
    /// off-chain go-livepeer orchestrator quotes BYOC jobs at 0); repeatable.
    #[arg(long = "byoc")]
    byoc: Vec<String>,
    /// Transcoding: answer `/segment` without encoding (renditions are the input bytes), for
    /// load tests.
    #[arg(long)]
    transcode_fast: bool,
    /// Transcoding sessions held at once (go-livepeer's `-maxSessions`).
    #[arg(long, default_value_t = SimConfig::default().transcode_max_sessions)]
    transcode_max_sessions: usize,
    /// Largest `/segment` body read, in bytes.
    #[arg(long, default_value_t = SimConfig::default().max_segment_bytes)]
    max_segment_bytes: usize,
}

fn parse_price(text: &str) -> anyhow::Result<(i64, i64)> {
    let (n, d) = text.split_once('/').unwrap_or((text, "1"));
    Ok((
        n.trim().parse().context("price numerator")?,
        d.trim().parse().context("price denominator")?,
    ))
}

fn parse_model(text: &str) -> anyhow::Result<SimModel> {
    let mut parts = text.split(':');
    let id = parts.next().unwrap_or_default();
    let (pipeline, model) = id.split_once('/').context("model must be pipeline/model")?;
    let mut m = SimModel::new(pipeline, model);
    for opt in parts {
        match opt.split_once('=') {
            None if opt == "warm" => m.warm = true,
            None if opt == "cold" => m.warm = false,
            Some(("capacity", n)) => m.capacity = n.parse().context("capacity")?,
            Some(("price", p)) => m.price = parse_price(p)?,
            _ => anyhow::bail!("unknown model option {opt:?}"),
        }
    }
    Ok(m)
}

fn parse_byoc(text: &str) -> anyhow::Result<SimByoc> {
    let mut parts = text.split(':');
    let name = parts.next().filter(|n| !n.is_empty()).context("BYOC capability needs a name")?;
    let kind = match parts.next() {
        Some("reverse") => ByocKind::Reverse,
        Some("echo") => ByocKind::Echo,
        Some("lines") => ByocKind::Lines,
        Some("fill") => ByocKind::Fill,
        other => anyhow::bail!("BYOC kind must be reverse, echo, lines or fill, not {other:?}"),
    };
    let mut cap = SimByoc::new(name, kind);
    for opt in parts {
        match opt.split_once('=') {
            Some(("capacity", n)) => cap = cap.capacity(n.parse().context("capacity")?),
            Some(("price", p)) => {
                let (n, d) = parse_price(p)?;
                cap = cap.price(n, d);
            }
            _ => anyhow::bail!("unknown BYOC option {opt:?}"),
        }
    }
    Ok(cap)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let config = SimConfig {
        name: args.bind.to_string(),
        bind: args.bind,
        tls: !args.plain,
        eth_address: args.eth_address,
        face_value: args.face_value,
        ticket_ev: args.ticket_ev,
        base_price: parse_price(&args.price)?,
        models: args.models.iter().map(|m| parse_model(m)).collect::<anyhow::Result<_>>()?,
        latency: Duration::from_millis(args.latency_ms),
        jitter: Duration::from_millis(args.jitter_ms),
        error_rate_ppm: args.error_rate_ppm,
        token_delay: Duration::from_millis(args.token_delay_ms),
        ai_latency: Duration::from_millis(args.ai_latency_ms),
        live_filter: args.live_filter,
        ai_http1_only: args.ai_http1_only,
        byoc: args.byoc.iter().map(|c| parse_byoc(c)).collect::<anyhow::Result<_>>()?,
        transcode_fast: args.transcode_fast,
        transcode_max_sessions: args.transcode_max_sessions,
        max_segment_bytes: args.max_segment_bytes,
        ..SimConfig::default()
    };
    let sim = Sim::start(config).await?;
    tracing::info!(url = sim.url(), ai = sim.service_url(), "serving; Ctrl-C to stop");
    tokio::signal::ctrl_c().await?;
    sim.stop();
    Ok(())
}
