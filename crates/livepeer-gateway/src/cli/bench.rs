//! `livepeer-gateway bench`: measures what the gateway adds to a request, against calling the
//! orchestrator directly, in the same run and on the same machine.
//!
//! It starts a zero-delay simulated orchestrator, then a gateway (this binary as a child
//! process with default settings, `--in-process` to run it inside the bench) and an nginx
//! `proxy_pass` in front of it (on loopback, ephemeral ports), then for text-to-image, LLM and
//! a BYOC job (`bench_byoc`):
//! - latency: `n` sequential requests on each path, interleaved (p50, p99);
//! - throughput: `concurrency` clients for `seconds` on each path, in rounds (direct, nginx,
//!   gateway); the median of each, and the median of the rounds' ratios, are reported.
//!
//! The load comes from `load`, a minimal HTTP/1.1 client that costs the shared machine about as
//! little as wrk does (`--client reqwest` for the client the bench used before).
//!
//! "Direct" sends exactly what the gateway sends (the same headers, body and auth token) and,
//! for text-to-image, also downloads the result image, as a client must; nginx carries the
//! same request and the image download; "through the gateway" downloads the image from the
//! gateway's result store.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use livepeer_proto::headers;
use livepeer_sim::{Sim, SimConfig, SimModel};
use serde_json::{Value, json};
use tokio::time::Instant;

use livepeer_gateway::Gateway;
use livepeer_gateway::config::{Ai, Config, Flags, Listen, OrchSource};
use livepeer_gateway::orchestrator::caps::Capabilities;
use livepeer_gateway::orchestrator::creds::{ai_manifest_id, segment_header};
use livepeer_gateway::orchestrator::{OrchClient, Timeouts, TlsTrust};

use super::bench_byoc;
use super::load::{Plan, User};
use super::nginx::{GatewayChild, Nginx};

/// Load test settings.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct BenchArgs {
    /// Sequential requests per latency measurement.
    #[arg(long, default_value_t = 2000)]
    pub(crate) requests: usize,
    /// Concurrent clients for the throughput measurement.
    #[arg(long, default_value_t = 64)]
    pub(crate) concurrency: usize,
    /// Seconds per throughput measurement.
    #[arg(long, default_value_t = 3)]
    pub(crate) seconds: u64,
    /// Throughput rounds, each a direct run then a gateway run; the ratio reported is the
    /// median of the rounds' ratios, so that drift on a shared machine hits both paths alike.
    #[arg(long, default_value_t = 5)]
    pub(crate) rounds: usize,
    /// The gateway talks HTTP/2 with prior knowledge (h2c) to the orchestrator instead of its
    /// default toward `http://` orchestrators, HTTP/1.1 (before issue 11 the bench measured
    /// h2c, then the default).
    #[arg(long)]
    pub(crate) orch_h2c: bool,
    /// Which workloads to run: `t2i`, `llm`, `byoc`, `paid`, `keys` (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = ["t2i".to_owned(), "llm".to_owned(), "byoc".to_owned(), "paid".to_owned()])]
    pub(crate) only: Vec<String>,
    /// Run the compared gateway inside the bench's own process (beside the client and the
    /// simulator) instead of as a child process of its own, as operators run it and as
    /// nginx runs.
    #[arg(long)]
    pub(crate) in_process: bool,
    /// Leave out the nginx `proxy_pass` baseline (which needs nginx, installed with apt-get
    /// if missing).
    #[arg(long)]
    pub(crate) no_nginx: bool,
    /// The gateway binary to measure as the child process (default: this one). The load
    /// client and the simulator stay this binary's, so that two builds of the gateway (say
    /// with and without profile-guided optimisation) meet the same client and orchestrator.
    #[arg(long)]
    pub(crate) gateway_bin: Option<std::path::PathBuf>,
    /// The client that sends the load: `light` (the default, a minimal HTTP/1.1 client with
    /// each request rendered once, as wrk does) or `reqwest` (what the bench used before,
    /// which costs the shared machine several times more CPU per request).
    #[arg(long, value_enum, default_value_t = Load::Light)]
    pub(crate) client: Load,
    /// A PostgreSQL database for the `keys` workload's PostgreSQL row (`postgres://…`); that
    /// row is left out without it.
    #[arg(long, env = "LP_BENCH_DATABASE_URL", hide_env_values = true)]
    pub(crate) keys_database_url: Option<String>,
}

/// Which client sends the load (`--client`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Load {
    /// `load::User`: one connection per origin per simulated user, requests rendered once.
    Light,
    /// reqwest, with its pool, the body serialised and the answer parsed for every request.
    Reqwest,
}

const T2I_MODEL: &str = "stabilityai/sd-turbo";
const LLM_MODEL: &str = "meta-llama/Meta-Llama-3.1-8B-Instruct";

/// Where one path's requests go, and what they carry besides the body.
#[derive(Clone)]
pub(super) struct Target {
    pub(super) http: reqwest::Client,
    pub(super) url: String,
    pub(super) headers: Vec<(&'static str, String)>,
    /// Result URLs starting with `.0` are fetched from `.1` instead (nginx carries the
    /// download that the orchestrator's own URL would send around it).
    pub(super) rewrite: Option<(String, String)>,
}

/// Runs the load test and returns the report as Markdown.
pub(crate) async fn run(args: BenchArgs) -> anyhow::Result<String> {
    // The simulator gets a runtime (and so a thread) of its own: sharing the client's, a
    // direct request would be handed over inside one thread, while every proxied one crosses
    // to another process and back, which would count thread wake-ups as the proxy's latency.
    let sim_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(SIM_THREAD)
        .enable_all()
        .build()?;
    let sim = sim_rt
        .spawn(Sim::start(SimConfig {
            name: "bench".into(),
            models: vec![
                SimModel::new("text-to-image", T2I_MODEL).capacity(100_000),
                SimModel::new("llm", LLM_MODEL).capacity(100_000),
            ],
            byoc: vec![bench_byoc::capability()],
            ..SimConfig::default()
        }))
        .await??;
    let report = measure(&args, &sim).await;
    sim.stop();
    drop(sim);
    // Dropping a runtime blocks, which an async context must not do.
    sim_rt.shutdown_background();
    report
}

async fn measure(args: &BenchArgs, sim: &Sim) -> anyhow::Result<String> {
    let flags = Flags {
        listen: ephemeral_ports(),
        ingest: no_rtmp(),
        // The default `info` level: operators run with it, so the figures must hold with it.
        ai: Ai { orch_h2c: Some(args.orch_h2c), ..Ai::default() },
        ..Flags::default()
    };
    let mut config = Config::load(flags)?;
    config.orchestrators = OrchSource::Static(vec![sim.url().parse()?]);
    let gw = Gateway::start(config).await?;
    let http = reqwest::Client::builder().pool_max_idle_per_host(256).tcp_nodelay(true).build()?;
    let nginx = match args.no_nginx {
        true => None,
        false => Some(Nginx::start(sim.addr()).await?),
    };

    let mut out = String::new();
    out.push_str(&format!(
        "| workload | path | p50 | p99 | req/s ({} clients) | CPU µs/req (client / simulator / proxy) |\n|---|---|---:|---:|---:|---:|\n",
        args.concurrency
    ));
    let child = match args.in_process {
        true => None,
        false => Some(
            GatewayChild::start(
                args.gateway_bin.as_deref(),
                sim.url(),
                args.orch_h2c,
                "llm",
                &llm_body(),
            )
            .await?,
        ),
    };
    let gw_addr = child.as_ref().map_or(gw.http_addr, |c| c.addr);
    let pids = Pids {
        nginx: nginx.as_ref().map(Nginx::pids).unwrap_or_default(),
        gateway: child.as_ref().map(|c| vec![c.pid()]).unwrap_or_default(),
    };
    for w in workloads(&http, sim, gw_addr, nginx.as_ref()).await? {
        if args.only.iter().any(|o| o == w.short) {
            if w.short == "byoc" {
                bench_byoc::check_same_job(&w, sim).await?;
            }
            out.push_str(&compare(&w, args, &pids).await?);
        }
    }
    if args.only.iter().any(|o| o == "paid") {
        out.push_str(&paid_vs_unpaid(&http, &gw, args).await?);
    }
    if args.only.iter().any(|o| o == "keys") {
        out.push_str(&super::bench_keys::keys_on_vs_off(&http, &gw, sim, args).await?);
    }
    gw.shutdown().await;
    Ok(out)
}

/// The processes whose CPU time counts on each proxied path, besides this one.
struct Pids {
    nginx: Vec<u32>,
    gateway: Vec<u32>,
}

/// One workload, sent to the orchestrator directly and through the gateway.
pub(super) struct Workload {
    /// Its name in `--only`.
    pub(super) short: &'static str,
    /// Its name in the report.
    pub(super) name: &'static str,
    pub(super) body: Value,
    pub(super) direct: Target,
    pub(super) nginx: Option<Target>,
    pub(super) gateway: Target,
}

fn llm_body() -> Value {
    json!({"model": LLM_MODEL, "max_tokens": 16, "messages": [{"role": "user", "content": "benchmark this please"}]})
}

pub(super) fn t2i_body() -> Value {
    json!({"prompt": "a lighthouse", "model_id": T2I_MODEL, "width": 64, "height": 64, "num_images_per_prompt": 1})
}

/// Text-to-image, LLM and BYOC. Direct calls carry what the gateway would send, with a fresh
/// auth token (BYOC: a signed job request), and the protocol version, so that a text-to-image
/// job is answered with a link its client then fetches: on every path the client gets a URL
/// and fetches the image (the gateway itself takes images inline, `--ai-inline-images`).
async fn workloads(
    http: &reqwest::Client,
    sim: &Sim,
    gw: SocketAddr,
    nginx: Option<&Nginx>,
) -> anyhow::Result<Vec<Workload>> {
    let client = OrchClient::new(
        Timeouts { connect: Duration::from_secs(2), call: Duration::from_secs(5) },
        TlsTrust::AcceptAny,
        None,
    );
    let info = client.get_orchestrator(&sim.url().parse()?, None, false).await?;
    let direct = |cap: u32, model: &str, path: &str| Target {
        http: http.clone(),
        url: format!("{}/{path}", sim.url()),
        headers: vec![
            (
                headers::SEGMENT,
                segment_header(
                    &ai_manifest_id(cap, model),
                    &Capabilities::ai_job(cap, model, "", ""),
                    info.auth_token.as_ref(),
                    None,
                ),
            ),
            (headers::PAYMENT, headers::OFFCHAIN_PAYMENT.to_owned()),
            ("Authorization", headers::AI_WORKER_PROTOCOL.to_owned()),
        ],
        rewrite: None,
    };
    let proxied = |t: Target| {
        nginx.map(|n| Target {
            url: t.url.replacen(sim.url(), &n.url(), 1),
            rewrite: Some((sim.url().to_owned(), n.url())),
            ..t
        })
    };
    Ok(vec![
        Workload {
            short: "t2i",
            name: "text-to-image",
            body: t2i_body(),
            direct: direct(27, T2I_MODEL, "text-to-image"),
            nginx: proxied(direct(27, T2I_MODEL, "text-to-image")),
            gateway: via_gateway(http, gw, "text-to-image"),
        },
        Workload {
            short: "llm",
            name: "llm",
            body: llm_body(),
            direct: direct(33, LLM_MODEL, "llm"),
            nginx: proxied(direct(33, LLM_MODEL, "llm")),
            gateway: via_gateway(http, gw, "llm"),
        },
        bench_byoc::workload(http, sim, gw, nginx)?,
    ])
}

/// The report's rows for one workload: direct, through nginx, through the gateway, and what
/// the gateway adds.
async fn compare(w: &Workload, args: &BenchArgs, pids: &Pids) -> anyhow::Result<String> {
    let (body, name) = (&w.body, w.name);
    let mut paths = vec![("direct", &w.direct, vec![])];
    paths.extend(w.nginx.as_ref().map(|n| ("nginx", n, pids.nginx.clone())));
    paths.push(("gateway", &w.gateway, pids.gateway.clone()));
    // Warm up connections and caches.
    for _ in 0..50 {
        for (_, t, _) in &paths {
            request(t, body).await?;
        }
    }
    let targets: Vec<&Target> = paths.iter().map(|(_, t, _)| *t).collect();
    let lat = latency(&targets, body, args.requests, args.client).await?;
    let (mut rps, mut cpu) = (vec![Vec::new(); paths.len()], vec![Vec::new(); paths.len()]);
    for _ in 0..args.rounds.max(1) {
        for (i, (_, t, extra)) in paths.iter().enumerate() {
            let (r, c) = throughput(t, body, args, extra).await;
            rps[i].push(r);
            cpu[i].push(c);
        }
    }
    let mut out = String::new();
    let medians: Vec<f64> = rps.iter().map(|r| median(&mut r.clone())).collect();
    let part = |i: usize, f: fn(&Cpu) -> f64| median(&mut cpu[i].iter().map(f).collect::<Vec<_>>());
    let cpus: Vec<f64> = (0..paths.len()).map(|i| part(i, Cpu::total)).collect();
    for (i, (path, _, _)) in paths.iter().enumerate() {
        let (p50, p99) = lat[i];
        let (client, sim, proxy) =
            (part(i, |c| c.client), part(i, |c| c.sim), part(i, |c| c.proxy));
        out.push_str(&format!(
            "| {name} | {path} | {} | {} | {:.0} | {:.1} ({client:.0} / {sim:.0} / {proxy:.0}) |\n",
            us(p50),
            us(p99),
            medians[i],
            cpus[i],
        ));
    }
    let gw = paths.len() - 1;
    for (i, (path, _, _)) in paths.iter().enumerate().take(gw) {
        // The ratio is the median of each round's pair (the baseline's round and the gateway
        // round soon after it), so that drift on a shared machine cancels within a pair.
        let mut ratios: Vec<f64> =
            rps[gw].iter().zip(&rps[i]).map(|(g, b)| g / b.max(1.0)).collect();
        let ratio = median(&mut ratios);
        let spread = format!("{:.2}–{:.2}", ratios[0], ratios[ratios.len() - 1]);
        out.push_str(&format!(
            "| {name} | **gateway vs {path}** | **{}** | **{}** | **{ratio:.2}×** (rounds {spread}) | **{:+.1}** |\n",
            signed_us(lat[gw].0, lat[i].0),
            signed_us(lat[gw].1, lat[i].1),
            cpus[gw] - cpus[i],
        ));
    }
    Ok(out)
}

/// `a - b` in microseconds, negative when the gateway was faster.
fn signed_us(a: Duration, b: Duration) -> String {
    let micros = a.as_micros() as i128 - b.as_micros() as i128;
    format!("{micros:+} µs")
}

/// Paid versus unpaid: the same text-to-image request through a gateway that pays an
/// on-chain simulator with tickets (which checks every one) and through the unpaid `gw`.
async fn paid_vs_unpaid(
    http: &reqwest::Client,
    gw: &Gateway,
    args: &BenchArgs,
) -> anyhow::Result<String> {
    let mut addr = [0u8; 20];
    addr[19] = 0x42;
    let paid_sim = Sim::start(SimConfig {
        name: "bench-paid".into(),
        eth_address: Some(livepeer_pm::Address::from(addr)),
        models: vec![
            SimModel::new("text-to-image", T2I_MODEL).price(1_000_000, 1).capacity(100_000),
        ],
        ..SimConfig::default()
    })
    .await?;
    let mut paid_config =
        Config::load(Flags { listen: ephemeral_ports(), ingest: no_rtmp(), ..Flags::default() })?;
    paid_config.orchestrators = OrchSource::Static(vec![paid_sim.url().parse()?]);
    // A well-known development key (hardhat account #1); never a real one.
    let key = "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
    paid_config.signer = Some(Arc::new(livepeer_pm::LocalSigner::from_hex(key)?));
    let paid_gw = Gateway::start(paid_config).await?;
    let paid = via_gateway(http, paid_gw.http_addr, "text-to-image");
    let unpaid = via_gateway(http, gw.http_addr, "text-to-image");
    let t2i_body = t2i_body();
    for _ in 0..50 {
        request(&paid, &t2i_body).await?;
    }
    let lat = latency(&[&paid, &unpaid], &t2i_body, args.requests, args.client).await?;
    let ((pp50, pp99), (up50, up99)) = (lat[0], lat[1]);
    let (mut ps, mut us_) = (Vec::new(), Vec::new());
    for _ in 0..args.rounds.max(1) {
        us_.push(throughput(&unpaid, &t2i_body, args, &[]).await.0);
        ps.push(throughput(&paid, &t2i_body, args, &[]).await.0);
    }
    let (prps, urps) = (median(&mut ps), median(&mut us_));
    let tickets = paid_sim.payments().tickets_credited;
    let mut out = String::new();
    out.push_str(&format!(
        "\n| text-to-image through the gateway | p50 | p99 | req/s ({} clients) |\n|---|---:|---:|---:|\n",
        args.concurrency
    ));
    out.push_str(&format!(
        "| unpaid (off-chain orchestrator) | {} | {} | {urps:.0} |\n",
        us(up50),
        us(up99)
    ));
    out.push_str(&format!(
        "| paid (tickets, checked by the simulator) | {} | {} | {prps:.0} |\n",
        us(pp50),
        us(pp99)
    ));
    out.push_str(&format!("| **paid / unpaid** | | | **{:.2}×** |\n", prps / urps.max(1.0)));
    out.push_str(&format!("\n{tickets} tickets were sent and accepted during the paid runs.\n"));
    paid_gw.shutdown().await;
    paid_sim.stop();
    Ok(out)
}

pub(super) fn via_gateway(http: &reqwest::Client, gw: SocketAddr, path: &str) -> Target {
    Target {
        http: http.clone(),
        url: format!("http://{gw}/{path}"),
        headers: vec![],
        rewrite: None,
    }
}

pub(super) fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs.get(xs.len() / 2).copied().unwrap_or(0.0)
}

pub(super) fn us(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

/// One request, plus the download of a returned image URL (as a real client would).
pub(super) async fn request(t: &Target, body: &Value) -> anyhow::Result<()> {
    let mut req = t.http.post(&t.url).json(body);
    for (k, v) in &t.headers {
        req = req.header(*k, v);
    }
    let resp = req.send().await?;
    anyhow::ensure!(resp.status().is_success(), "{}: {}", t.url, resp.status());
    let json: Value = resp.json().await?;
    if let Some(url) = json.pointer("/images/0/url").and_then(Value::as_str) {
        let url = match &t.rewrite {
            Some((from, to)) if url.starts_with(from.as_str()) => url.replacen(from, to, 1),
            _ => url.to_owned(),
        };
        let img = t.http.get(&url).send().await?;
        anyhow::ensure!(img.status().is_success(), "{url}: {}", img.status());
        img.bytes().await?;
    }
    Ok(())
}

/// `n` sequential requests to each target, interleaved, so that a stall of the machine lands
/// on every path alike; returns each target's (p50, p99).
pub(super) async fn latency(
    targets: &[&Target],
    body: &Value,
    n: usize,
    load: Load,
) -> anyhow::Result<Vec<(Duration, Duration)>> {
    let plans = targets.iter().map(|t| Plan::new(t, body)).collect::<anyhow::Result<Vec<_>>>()?;
    let mut users: Vec<User> = targets.iter().map(|_| User::default()).collect();
    let mut samples = vec![Vec::with_capacity(n); targets.len()];
    for _ in 0..n {
        for (i, xs) in samples.iter_mut().enumerate() {
            let start = Instant::now();
            match load {
                Load::Light => users[i].job(&plans[i]).await?,
                Load::Reqwest => request(targets[i], body).await?,
            }
            xs.push(start.elapsed());
        }
    }
    Ok(samples.iter_mut().map(|xs| percentiles(xs)).collect())
}

fn percentiles(samples: &mut [Duration]) -> (Duration, Duration) {
    if samples.is_empty() {
        return (Duration::ZERO, Duration::ZERO);
    }
    samples.sort();
    let pick = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    (pick(0.50), pick(0.99))
}

/// One throughput run: requests per second, and the CPU time spent per request by this
/// process (client, simulator and gateway) plus the processes in `extra` (nginx).
pub(super) async fn throughput(
    t: &Target,
    body: &Value,
    args: &BenchArgs,
    extra: &[u32],
) -> (f64, Cpu) {
    let (clients, seconds, load) = (args.concurrency, args.seconds, args.client);
    let plan = match Plan::new(t, body) {
        Ok(plan) => Arc::new(plan),
        Err(_) => return (0.0, Cpu::default()),
    };
    let done = Arc::new(AtomicU64::new(0));
    let cpu_before = cpu_ticks(extra);
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (plan, done, t, body) = (plan.clone(), done.clone(), t.clone(), body.clone());
        set.spawn(async move {
            let mut user = User::default();
            while Instant::now() < end {
                let ok = match load {
                    Load::Light => user.job(&plan).await.is_ok(),
                    Load::Reqwest => request(&t, &body).await.is_ok(),
                };
                if ok {
                    done.fetch_add(1, Relaxed);
                }
            }
        });
    }
    while set.join_next().await.is_some() {}
    let n = done.load(Relaxed);
    let after = cpu_ticks(extra);
    let per_request = |i: usize| {
        let micros = after[i].saturating_sub(cpu_before[i]) * 10_000;
        micros as f64 / n.max(1) as f64
    };
    let cpu = Cpu { client: per_request(0), sim: per_request(1), proxy: per_request(2) };
    (n as f64 / seconds as f64, cpu)
}

/// CPU time per request, µs, of each part of a run.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Cpu {
    /// This process but the simulator's thread: the load client (and the gateway too when
    /// it runs in this process).
    pub(super) client: f64,
    /// The simulator's thread.
    pub(super) sim: f64,
    /// The proxy's processes: nginx's, or the gateway child's.
    pub(super) proxy: f64,
}

impl Cpu {
    pub(super) fn total(&self) -> f64 {
        self.client + self.sim + self.proxy
    }
}

/// The name of the simulator's thread, whose CPU time `Cpu::sim` counts.
const SIM_THREAD: &str = "bench-sim";

/// CPU ticks so far (user and system, 100 per second on Linux): this process but the
/// simulator's thread, the simulator's thread, and the processes in `extra`; 0 where
/// unreadable.
fn cpu_ticks(extra: &[u32]) -> [u64; 3] {
    let ticks = |path: &str| -> u64 {
        let stat = std::fs::read_to_string(path).unwrap_or_default();
        // Fields after the command name, which is in parentheses and may hold spaces.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<u64> = rest.split_whitespace().map(|x| x.parse().unwrap_or(0)).collect();
        // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
        f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)
    };
    let mut sim = 0;
    for task in std::fs::read_dir("/proc/self/task").into_iter().flatten().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() == SIM_THREAD {
            sim += ticks(&task.path().join("stat").to_string_lossy());
        }
    }
    // The process's own line also counts threads that have ended.
    let client = ticks("/proc/self/stat").saturating_sub(sim);
    let proxy = extra.iter().map(|pid| ticks(&format!("/proc/{pid}/stat"))).sum();
    [client, sim, proxy]
}

/// No RTMP listener: the bench measures the HTTP routes, and its gateways run side by side.
pub(super) fn no_rtmp() -> livepeer_gateway::config::Ingest {
    livepeer_gateway::config::Ingest {
        rtmp_addr: Some("off".into()),
        ..livepeer_gateway::config::Ingest::default()
    }
}

/// Both listeners on ephemeral ports.
pub(super) fn ephemeral_ports() -> Listen {
    Listen {
        http_addr: Some("127.0.0.1:0".into()),
        cli_addr: Some("127.0.0.1:0".into()),
        ..Listen::default()
    }
}
