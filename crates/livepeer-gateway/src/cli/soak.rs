//! `livepeer-gateway soak`: mixed load through the gateway while its orchestrators fail, for a
//! bounded time; it reports requests lost, requests paid twice, and the gateway's peak memory
//! and file descriptors, and fails (exit 1) when any is out of bounds.
//!
//! - Orchestrators: `--orchestrators` simulators on loopback, on chain (each with its own
//!   address, checking every ticket the gateway sends), serving text-to-image, LLM and live
//!   video, each keeping a ledger of which client request it was paid for and delivered.
//! - The gateway: this binary as a child process, paying with a development key, so that its
//!   resident memory and descriptors can be read from `/proc` every 100 ms.
//! - Faults: at seeded random intervals a healthy simulator is killed (restarted later on the
//!   same port), hung (AI, gRPC and live output), made to answer garbage (AI or gRPC), the
//!   wrong media type, a huge body, a 500, or a stream that stalls half way; and healed after
//!   a random while. At most half of them are faulty at once.
//! - Load: `load.rs`. Definitions of lost and paid twice: RELIABILITY.md.

mod leftovers;
mod load;

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use livepeer_sim::{AiFault, AiMode, LedgerEntry, LiveMode, Mode, Sim, SimConfig, SimModel};
use rand::rngs::SmallRng;
use rand::{Rng as _, SeedableRng as _};
use tokio::time::Instant;

use livepeer_gateway::config::parse_duration;

use leftovers::{GatewayHolds, SimLeftover};
use load::{Class, Kind, LLM_MODEL, Load, Outcome, T2I_MODEL};

/// Soak settings.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct SoakArgs {
    /// How long clients start requests and faults are injected; requests in flight then run
    /// to their end (or their deadline).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub(crate) duration: Duration,
    /// Simulated orchestrators.
    #[arg(long, default_value_t = 4)]
    pub(crate) orchestrators: usize,
    /// Seed of the fault schedule and of the clients' choice of request.
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
    /// Concurrent batch AI and LLM clients.
    #[arg(long, default_value_t = 16)]
    pub(crate) concurrency: usize,
    /// Concurrent live video clients.
    #[arg(long, default_value_t = 2)]
    pub(crate) live: usize,
    /// Size of the huge answers, in MiB.
    #[arg(long, default_value_t = 32)]
    pub(crate) huge_body_mb: usize,
    /// Most resident memory the gateway may reach, in MB.
    #[arg(long, default_value_t = 512)]
    pub(crate) rss_ceiling_mb: u64,
    /// Most open file descriptors the gateway may reach.
    #[arg(long, default_value_t = 1024)]
    pub(crate) fd_ceiling: u64,
    /// The gateway's log level; its log goes to a file named at the end of the report. At
    /// `info` or below it lists each request's failed attempts, which the paid-twice check
    /// reads.
    #[arg(long, default_value = "info")]
    pub(crate) gateway_log_level: String,
}

/// The gateway's own request deadline during the soak; a client waits this plus
/// [`CLIENT_MARGIN`] before it counts a request as lost.
const GATEWAY_REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
const CLIENT_MARGIN: Duration = Duration::from_secs(40);
/// Per attempt (and a stream's idle limit): short, so hung orchestrators are left quickly.
const GATEWAY_ATTEMPT_TIMEOUT: &str = "4s";
/// Faults come every second or so, a hundred times more often than in production: with the
/// default longest cooldown (60 s) every orchestrator would soon sit out most of the run.
const GATEWAY_EJECT_MAX: &str = "5s";
/// Deliveries this close before a kill are not counted (see [`Fault::inject`]).
const KILL_FLUSH_WINDOW: Duration = Duration::from_secs(2);
/// A well-known development key (hardhat account #1); never a real one.
const DEV_KEY: &str = "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";

/// Runs the soak; prints the report and fails when a bound is broken.
pub(crate) async fn run(args: SoakArgs) -> anyhow::Result<String> {
    let sims = Arc::new(start_sims(&args).await?);
    let log = std::env::temp_dir().join(format!("livepeer-soak-{}.log", std::process::id()));
    let mut gateway = GatewayChild::spawn(&sims, &log, &args.gateway_log_level)?;
    gateway.wait_ready().await?;
    let started = Instant::now();
    let end = started + args.duration;
    let finished = Arc::new(AtomicBool::new(false));
    let sampler = tokio::spawn(sample(gateway.pid(), finished.clone()));
    let faults = tokio::spawn(drive_faults(sims.clone(), args.seed, end));
    let base = gateway.base.clone();
    let load = Arc::new(Load::new(base, end, GATEWAY_REQUEST_TIMEOUT + CLIENT_MARGIN)?);
    load::run(load.clone(), args.concurrency, args.live, args.seed).await;
    let injected = faults.await??;
    let elapsed = started.elapsed();
    let leftovers = leftovers::wait_sims_idle(&sims, &log).await;
    let outcomes = load.outcomes();
    let holds = leftovers::gateway_holds(&load.http, &gateway.admin).await;
    finished.store(true, Relaxed);
    let peaks = sampler.await?;
    let alive = gateway.alive();
    let failed_attempts = failed_attempts(&log);
    let paid = Payments::of(&sims, &outcomes, &load.gateway_ids(), &failed_attempts);
    let published = load.published.lock().map(|p| *p).unwrap_or_default();
    let verdict = Verdict::of(&args, &outcomes, &paid, peaks, alive, &holds);
    let live = LiveLeft { holds, leftovers };
    let facts = Facts { elapsed, outcomes, injected, paid, peaks, published, live, alive };
    let mut report = report(&args, &facts, &verdict);
    report.push_str(&format!("gateway log: {}\n", log.display()));
    if verdict.failures.is_empty() {
        return Ok(report);
    }
    std::io::stdout().write_all(report.as_bytes())?;
    anyhow::bail!("soak failed: {}", verdict.failures.join("; "))
}

/// The simulators: on chain, priced, each serving every workload the clients send.
async fn start_sims(args: &SoakArgs) -> anyhow::Result<Vec<Sim>> {
    let mut sims = Vec::with_capacity(args.orchestrators);
    for i in 0..args.orchestrators.max(1) {
        let mut addr = [0u8; 20];
        addr[0] = 0x50;
        addr[19] = u8::try_from(i + 1).unwrap_or(u8::MAX);
        sims.push(
            Sim::start(SimConfig {
                name: format!("soak-{i}"),
                eth_address: Some(livepeer_pm::Address::from(addr)),
                models: vec![
                    SimModel::new("text-to-image", T2I_MODEL).price(1_000_000, 1).capacity(8),
                    SimModel::new("llm", LLM_MODEL).price(100_000_000, 1).capacity(8),
                    SimModel::new("live-video-to-video", "noop").price(1_000, 1).capacity(8),
                ],
                ai_latency: Duration::from_millis(20),
                token_delay: Duration::from_millis(10),
                seed: args.seed.wrapping_add(i as u64),
                huge_body_bytes: args.huge_body_mb << 20,
                request_ledger: true,
                ..SimConfig::default()
            })
            .await?,
        );
    }
    Ok(sims)
}

/// The gateway as a child process (this binary), killed when dropped.
struct GatewayChild {
    child: std::process::Child,
    base: String,
    /// Its admin (CLI) API.
    admin: String,
}

impl GatewayChild {
    /// Starts it, its log (warnings and errors) going to `log`.
    fn spawn(sims: &[Sim], log: &std::path::Path, level: &str) -> anyhow::Result<Self> {
        let port = || -> anyhow::Result<u16> {
            Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
        };
        let (http, cli) = (port()?, port()?);
        let orchs: Vec<&str> = sims.iter().map(Sim::url).collect();
        let timeout = format!("{}s", GATEWAY_REQUEST_TIMEOUT.as_secs());
        let child = std::process::Command::new(std::env::current_exe()?)
            .args(["--http-addr", &format!("127.0.0.1:{http}")])
            .args(["--cli-addr", &format!("127.0.0.1:{cli}"), "--rtmp-addr", "off"])
            .args(["--orch-addr", &orchs.join(","), "--log-level", level])
            .args(["--ai-attempt-timeout", GATEWAY_ATTEMPT_TIMEOUT])
            .args(["--ai-request-timeout", &timeout])
            .args(["--eject-max", GATEWAY_EJECT_MAX])
            .env("LP_ETH_KEY", DEV_KEY)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(log)?)
            .spawn()?;
        let (base, admin) = (format!("http://127.0.0.1:{http}"), format!("http://127.0.0.1:{cli}"));
        Ok(Self { child, base, admin })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Still running (not crashed).
    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for `/healthz`, then for the first discovery round to have found an
    /// orchestrator (a request answered).
    async fn wait_ready(&self) -> anyhow::Result<()> {
        let http = reqwest::Client::new();
        let probe = serde_json::json!({"prompt": "warm-up", "model_id": T2I_MODEL});
        for _ in 0..400 {
            let url = format!("{}/text-to-image", self.base);
            if let Ok(r) = http.post(url).json(&probe).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!("the gateway did not start answering within 20 s")
    }
}

impl Drop for GatewayChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The gateway's peak resident memory (bytes) and open descriptors.
#[derive(Debug, Clone, Copy, Default)]
struct Peaks {
    rss: u64,
    fds: u64,
    samples: u64,
}

/// Reads `/proc/<pid>` every 100 ms until `finished`.
async fn sample(pid: u32, finished: Arc<AtomicBool>) -> Peaks {
    let mut peaks = Peaks::default();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    while !finished.load(Relaxed) {
        tick.tick().await;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let kb = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64);
        peaks.rss = peaks.rss.max(kb * 1024);
        peaks.fds = peaks.fds.max(fds);
        peaks.samples += 1;
    }
    peaks
}

/// One kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Kill,
    Hang,
    GarbageAi,
    GarbageGrpc,
    WrongType,
    Huge,
    Stall,
    Status500,
    NullAi,
}

const FAULTS: [Fault; 9] = [
    Fault::Kill,
    Fault::Hang,
    Fault::GarbageAi,
    Fault::GarbageGrpc,
    Fault::WrongType,
    Fault::Huge,
    Fault::Stall,
    Fault::Status500,
    Fault::NullAi,
];

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Self::Kill => "killed",
            Self::Hang => "hung",
            Self::GarbageAi => "garbage AI answers",
            Self::GarbageGrpc => "garbage gRPC answers",
            Self::WrongType => "wrong content type",
            Self::Huge => "huge bodies",
            Self::Stall => "stalled mid-answer",
            Self::Status500 => "500s",
            Self::NullAi => "null JSON answers",
        }
    }

    fn inject(self, sim: &Sim) {
        match self {
            Self::Kill => {
                sim.stop();
                // Answers written just before the kill may not have left the process: their
                // orchestrator is paid for a failed attempt, which is legitimate.
                let window = Instant::now().checked_sub(KILL_FLUSH_WINDOW);
                sim.void_deliveries_since(window.unwrap_or_else(Instant::now));
            }
            Self::Hang => {
                sim.set_mode(Mode::Hang);
                sim.set_ai_mode(AiMode::Hang);
                sim.set_live_mode(LiveMode::StallOutput);
            }
            Self::GarbageAi => sim.set_ai_fault(AiFault::Garbage),
            Self::GarbageGrpc => sim.set_mode(Mode::Garbage),
            Self::WrongType => sim.set_ai_fault(AiFault::WrongContentType),
            Self::Huge => sim.set_ai_fault(AiFault::HugeBody),
            Self::Stall => sim.set_ai_fault(AiFault::StallMidStream),
            Self::Status500 => sim.set_ai_mode(AiMode::Status(500, "soak: injected".into())),
            Self::NullAi => sim.set_ai_fault(AiFault::Null),
        }
    }

    /// Ends the fault injected at `injected`.
    async fn heal(self, sim: &Sim, injected: Instant) -> anyhow::Result<()> {
        if self == Self::Kill {
            // A delivery recorded as the kill landed was cut by it too.
            sim.void_deliveries_since(injected);
            sim.restart().await?;
        }
        sim.set_mode(Mode::Normal);
        sim.set_ai_mode(AiMode::Normal);
        sim.set_ai_fault(AiFault::None);
        sim.set_live_mode(LiveMode::Normal);
        Ok(())
    }
}

/// Injects faults until `end`, then heals every simulator; how many of each were injected.
async fn drive_faults(
    sims: Arc<Vec<Sim>>,
    seed: u64,
    end: Instant,
) -> anyhow::Result<BTreeMap<&'static str, u64>> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut faulty: Vec<(Instant, usize, Fault, Instant)> = Vec::new();
    let mut injected = BTreeMap::new();
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(rng.random_range(150..900))).await;
        let now = Instant::now();
        let (due, rest): (Vec<_>, Vec<_>) = faulty.into_iter().partition(|(at, ..)| *at <= now);
        faulty = rest;
        for (_, i, fault, injected) in due {
            fault.heal(&sims[i], injected).await?;
        }
        if (faulty.len() + 1) * 2 > sims.len().max(2) {
            continue;
        }
        let healthy: Vec<usize> =
            (0..sims.len()).filter(|i| faulty.iter().all(|f| f.1 != *i)).collect();
        let i = healthy[rng.random_range(0..healthy.len())];
        let fault = FAULTS[rng.random_range(0..FAULTS.len())];
        let at = Instant::now();
        fault.inject(&sims[i]);
        *injected.entry(fault.name()).or_insert(0) += 1;
        let heal_at = now + Duration::from_millis(rng.random_range(300..2500));
        faulty.push((heal_at, i, fault, at));
    }
    for (_, i, fault, injected) in faulty {
        fault.heal(&sims[i], injected).await?;
    }
    Ok(injected)
}

/// The simulators' ledgers, joined by client request.
#[derive(Debug, Default)]
struct Payments {
    /// Attempts that carried tickets the simulator took.
    paid_attempts: u64,
    /// Answers delivered whole (charged).
    delivered: u64,
    /// Answers charged and then spoiled by a fault.
    spoiled: u64,
    /// Deliveries taken back because the simulator was killed just after.
    voided: u64,
    /// Client requests delivered by more than one attempt: id, then each delivering
    /// simulator's URL and entry.
    twice: Vec<(String, Vec<(String, LedgerEntry)>)>,
    /// Client requests that ended clean or lost although an orchestrator delivered them.
    charged_not_answered: Vec<Unanswered>,
    /// Deliveries by an orchestrator whose attempt the gateway had already given up on (it
    /// logged the attempt as failed: too slow, cut): a failed attempt's legitimate payment.
    abandoned: u64,
}

impl Payments {
    fn of(
        sims: &[Sim],
        outcomes: &[Outcome],
        gateway_ids: &HashMap<String, String>,
        failed: &HashMap<String, Vec<String>>,
    ) -> Self {
        let mut by_id: HashMap<String, LedgerEntry> = HashMap::new();
        let mut by_sim: HashMap<String, Vec<(String, LedgerEntry)>> = HashMap::new();
        for sim in sims {
            for (key, e) in sim.ledger() {
                let id = key.split_whitespace().next().unwrap_or_default().to_owned();
                by_sim.entry(id.clone()).or_default().push((sim.url().to_owned(), e));
                let t = by_id.entry(id).or_default();
                t.paid_attempts += e.paid_attempts;
                t.delivered += e.delivered;
                t.spoiled += e.spoiled;
                t.voided += e.voided;
            }
        }
        let mut p = Self::default();
        let answered = |o: &&Outcome| o.class == Class::Answered;
        p.charged_not_answered = outcomes
            .iter()
            .filter(|o| !answered(o))
            .filter(|o| by_id.get(&o.id).is_some_and(|e| e.delivered > 0))
            .map(|o| Unanswered::of(o, &by_sim, gateway_ids, failed))
            .collect();
        for (id, e) in &by_id {
            p.paid_attempts += u64::from(e.paid_attempts);
            p.delivered += u64::from(e.delivered);
            p.spoiled += u64::from(e.spoiled);
            p.voided += u64::from(e.voided);
            if e.delivered < 2 {
                continue;
            }
            let sims = by_sim.remove(id).unwrap_or_default();
            let gave_up = gateway_ids.get(id).and_then(|g| failed.get(g));
            let abandoned = |url: &str| gave_up.is_some_and(|f| f.iter().any(|u| u == url));
            let (kept, dropped): (Vec<_>, Vec<_>) = sims.iter().partition(|(u, _)| !abandoned(u));
            p.abandoned += dropped.iter().map(|(_, e)| u64::from(e.delivered)).sum::<u64>();
            if kept.iter().map(|(_, e)| e.delivered).sum::<u32>() > 1 {
                p.twice.push((id.clone(), sims));
            }
        }
        p.twice.sort_by(|a, b| a.0.cmp(&b.0));
        p
    }
}

/// A client request an orchestrator delivered (and charged for) that the client did not get
/// as an answer, with what the gateway logged of it, so that the report can say why.
#[derive(Debug)]
struct Unanswered {
    id: String,
    /// The client's outcome: kind, class and why.
    client: String,
    /// The gateway's request id, when the client got one.
    gateway_id: Option<String>,
    /// The simulators that delivered it.
    delivered_by: Vec<String>,
    /// The orchestrators of the attempts the gateway logged as failed.
    gateway_failed: Vec<String>,
}

impl Unanswered {
    fn of(
        o: &Outcome,
        by_sim: &HashMap<String, Vec<(String, LedgerEntry)>>,
        gateway_ids: &HashMap<String, String>,
        failed: &HashMap<String, Vec<String>>,
    ) -> Self {
        let gateway_id = gateway_ids.get(&o.id).cloned();
        let delivered_by = by_sim.get(&o.id).map_or_else(Vec::new, |sims| {
            sims.iter().filter(|(_, e)| e.delivered > 0).map(|(u, _)| u.clone()).collect()
        });
        let gateway_failed =
            gateway_id.as_ref().and_then(|g| failed.get(g)).cloned().unwrap_or_default();
        Self {
            id: o.id.clone(),
            client: format!("{} {:?} {}", o.kind.name(), o.class, o.why),
            gateway_id,
            delivered_by,
            gateway_failed,
        }
    }
}

/// From the gateway's log: for each of its request ids, the orchestrators (URL without a
/// trailing slash) of the attempts it logged as failed.
fn failed_attempts(log: &std::path::Path) -> HashMap<String, Vec<String>> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut out = HashMap::new();
    for line in text.lines() {
        let field = |name: &str| line.split_once(name).map(|(_, rest)| rest);
        let (Some(id), Some(attempts)) = (field(" request_id="), field(" attempts=")) else {
            continue;
        };
        let id = id.split_whitespace().next().unwrap_or_default().trim_matches('"');
        let json = attempts.split_once("] ").map_or(attempts, |(a, _)| a);
        let parsed: Vec<serde_json::Value> =
            serde_json::from_str(&format!("{json}]")).unwrap_or_default();
        let failed = parsed
            .iter()
            .filter(|a| !a["error"].is_null())
            .filter_map(|a| a["orchestrator"].as_str())
            .map(|u| u.trim_end_matches('/').to_owned())
            .collect();
        out.insert(id.to_owned(), failed);
    }
    out
}

/// What the run measured.
struct Facts {
    elapsed: Duration,
    outcomes: Vec<Outcome>,
    injected: BTreeMap<&'static str, u64>,
    paid: Payments,
    peaks: Peaks,
    /// Live segments published, and streams whose publishing failed.
    published: (u64, u64),
    live: LiveLeft,
    alive: bool,
}

/// Live streams left after every client stopped its own, on each side.
struct LiveLeft {
    /// What the gateway still holds: fails the run.
    holds: GatewayHolds,
    /// Streams still running on a simulator the gateway let go of: informational.
    leftovers: Vec<SimLeftover>,
}

/// Which bounds were broken.
struct Verdict {
    lost: usize,
    failures: Vec<String>,
}

impl Verdict {
    fn of(
        args: &SoakArgs,
        outcomes: &[Outcome],
        paid: &Payments,
        peaks: Peaks,
        alive: bool,
        holds: &GatewayHolds,
    ) -> Self {
        let lost = outcomes.iter().filter(|o| o.class == Class::Lost).count();
        let mut failures = Vec::new();
        if lost > 0 {
            failures.push(format!("{lost} requests lost"));
        }
        if !paid.twice.is_empty() {
            failures.push(format!("{} requests paid twice", paid.twice.len()));
        }
        if peaks.rss > args.rss_ceiling_mb * 1_000_000 {
            failures.push(format!(
                "peak RSS {} MB over {} MB",
                peaks.rss / 1_000_000,
                args.rss_ceiling_mb
            ));
        }
        if peaks.fds > args.fd_ceiling {
            failures.push(format!("peak fds {} over {}", peaks.fds, args.fd_ceiling));
        }
        if !alive {
            failures.push("the gateway exited".to_owned());
        }
        if holds.any() {
            failures.push(format!("the gateway still holds live streams: {holds:?}"));
        }
        if !outcomes.iter().any(|o| o.class == Class::Answered) {
            failures.push("no request was answered".to_owned());
        }
        Self { lost, failures }
    }
}

/// The Markdown report, ending with one `soak:` summary line.
fn report(args: &SoakArgs, f: &Facts, v: &Verdict) -> String {
    let mut out = format!(
        "## Soak: {:.0} s, {} orchestrators, {} batch + {} live clients, seed {}\n\n\
         | request | total | answered | failed cleanly | lost |\n|---|---:|---:|---:|---:|\n",
        f.elapsed.as_secs_f64(),
        args.orchestrators,
        args.concurrency,
        args.live,
        args.seed
    );
    let mut by_kind: BTreeMap<Kind, [usize; 3]> = BTreeMap::new();
    for o in &f.outcomes {
        by_kind.entry(o.kind).or_default()[o.class as usize] += 1;
    }
    for (kind, [a, c, l]) in &by_kind {
        out.push_str(&format!("| {} | {} | {a} | {c} | {l} |\n", kind.name(), a + c + l));
    }
    let faults: Vec<String> = f.injected.iter().map(|(k, n)| format!("{k} ×{n}")).collect();
    let p = &f.paid;
    out.push_str(&format!(
        "\nFaults injected: {}.\n\n\
         | measure | value |\n|---|---:|\n\
         | paid attempts (tickets taken) | {} |\n| answers delivered (charged) | {} |\n\
         | answers charged, then spoiled by a fault | {} |\n\
         | answers written just before a kill (not counted as delivered) | {} |\n\
         | answers delivered after the gateway gave up on the attempt (not counted) | {} |\n\
         | requests charged but not answered to the client | {} |\n\
         | **requests paid twice** | **{}** |\n| **requests lost** | **{}** |\n\
         | live segments published / streams whose publishing failed | {} / {} |\n\
         | **live streams the gateway still holds (streams / leases)** | **{} / {}** |\n\
         | live streams left on orchestrators the gateway let go of (informational) | {} |\n\
         | **gateway peak RSS** | **{:.1} MB** (ceiling {} MB) |\n\
         | **gateway peak fds** | **{}** (ceiling {}) |\n| samples (every 100 ms) | {} |\n",
        faults.join(", "),
        p.paid_attempts,
        p.delivered,
        p.spoiled,
        p.voided,
        p.abandoned,
        p.charged_not_answered.len(),
        p.twice.len(),
        v.lost,
        f.published.0,
        f.published.1,
        f.live.holds.streams_gauge.max(i64::try_from(f.live.holds.running.len()).unwrap_or(0)),
        f.live.holds.leases,
        f.live.leftovers.len(),
        f.peaks.rss as f64 / 1e6,
        args.rss_ceiling_mb,
        f.peaks.fds,
        args.fd_ceiling,
        f.peaks.samples,
    ));
    details(&mut out, f);
    let answered = f.outcomes.iter().filter(|o| o.class == Class::Answered).count();
    let clean = f.outcomes.iter().filter(|o| o.class == Class::Clean).count();
    out.push_str(&format!(
        "\nsoak: answered={answered} clean={clean} lost={} double_paid={} peak_rss_mb={} peak_fds={} gateway_alive={} result={}\n",
        v.lost,
        p.twice.len(),
        f.peaks.rss / 1_000_000,
        f.peaks.fds,
        f.alive,
        if v.failures.is_empty() { "pass" } else { "FAIL" },
    ));
    out
}

/// Why requests failed or were lost, and which were paid twice (the first few of each).
fn details(out: &mut String, f: &Facts) {
    let mut reasons: BTreeMap<(Class, &str), u64> = BTreeMap::new();
    for o in f.outcomes.iter().filter(|o| o.class != Class::Answered) {
        *reasons.entry((o.class, o.why.as_str())).or_default() += 1;
    }
    if !reasons.is_empty() {
        out.push_str("\n| ended | why | count |\n|---|---|---:|\n");
        for ((class, why), n) in reasons.iter().take(40) {
            let class = if *class == Class::Lost { "**lost**" } else { "failed cleanly" };
            out.push_str(&format!("| {class} | {} | {n} |\n", why.replace('|', "/")));
        }
    }
    for u in f.paid.charged_not_answered.iter().take(10) {
        out.push_str(&format!(
            "- charged, not answered: `{}` (gateway request {}; the client saw: {}): delivered by {}; attempts the gateway logged as failed: {}\n",
            u.id,
            u.gateway_id.as_deref().unwrap_or("none"),
            u.client,
            u.delivered_by.join(", "),
            if u.gateway_failed.is_empty() { "none".to_owned() } else { u.gateway_failed.join(", ") },
        ));
    }
    for l in f.live.leftovers.iter().take(10) {
        out.push_str(&format!(
            "- left on an orchestrator: {} stream {} (gateway request {}); the gateway logged: {}\n",
            l.sim,
            l.manifest_id,
            l.request_id,
            if l.gateway_log.is_empty() { "nothing".to_owned() } else { l.gateway_log.join(" / ") },
        ));
    }
    for (id, sims) in f.paid.twice.iter().take(20) {
        let client = f.outcomes.iter().find(|o| &o.id == id);
        let (kind, class) = client
            .map_or(("?", "?".to_owned()), |o| (o.kind.name(), format!("{:?} {}", o.class, o.why)));
        out.push_str(&format!("- paid twice: `{id}` ({kind}; the client saw: {class}):"));
        for (url, e) in sims {
            let (p, d, s) = (e.paid_attempts, e.delivered, e.spoiled);
            out.push_str(&format!(" {url} paid {p}, delivered {d}, spoiled {s};"));
        }
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_attempts_are_read_from_the_gateways_request_lines() {
        let dir = std::env::temp_dir().join(format!("soak-log-test-{}", std::process::id()));
        let line = r#"2026-12-03T10:51:12Z  INFO livepeer_gateway::ai::job: ai request request_id=975dd7488a97be44 pipeline="llm" outcome="stream" attempts=[{"orchestrator":"http://127.0.0.1:43153/","latency_ms":1536,"error":"timed out"},{"orchestrator":"http://127.0.0.1:43633/","latency_ms":606,"error":null}] spend=[{"tickets":1}] stream=true"#;
        let plain =
            "2026-12-03T10:51:12Z  INFO ai request request_id=aa pipeline=\"llm\" outcome=\"ok\"";
        std::fs::write(&dir, format!("{line}\n{plain}\n")).unwrap();
        let failed = failed_attempts(&dir);
        let _ = std::fs::remove_file(&dir);
        assert_eq!(failed["975dd7488a97be44"], vec!["http://127.0.0.1:43153".to_owned()]);
        assert!(!failed.contains_key("aa"), "a request without retries lists no attempts");
    }
}
