//! The `livepeer-gateway` binary: parse and validate configuration (exit 64 if bad), set up
//! logging, run a subcommand from `cli/` or the gateway until SIGINT or SIGTERM, then shut
//! down gracefully.

mod cli;

/// mimalloc: the gateway allocates small, short-lived buffers on many threads, where glibc's
/// allocator showed up at about 12% of CPU in the load test's profile. Its 2.x line (the
/// crate's `v2` feature): with 3.x, 14% of the gateway's CPU in the text-to-image bench went to
/// zeroing transparent huge pages that it had given back and faulted in again.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser;
use livepeer_gateway::config::{Flags, LogFormat};
use livepeer_gateway::log_sink::{LogGuard, LogSink};
use livepeer_gateway::{Config, Gateway, log_format};

use cli::{Command, Next};

/// A Livepeer Gateway: routes AI and video jobs to Livepeer orchestrators.
#[derive(Debug, Parser)]
#[command(name = "livepeer-gateway", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    flags: Flags,
}

/// Exit code for bad configuration (EX_USAGE), as linkerd and sysexits use.
const EXIT_CONFIG: u8 = 64;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_CONFIG } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let config = match Config::load(cli.flags) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("livepeer-gateway: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    // Held until `main` returns, so that buffered log lines are written before exit.
    let _log_writer = match init_tracing(&config) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("livepeer-gateway: cannot start the log writer: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("livepeer-gateway: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config, cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "livepeer-gateway failed");
            eprintln!("livepeer-gateway: {e:#}");
            // A node of another chain than --network names is a configuration mistake.
            if matches!(e.downcast_ref(), Some(livepeer_gateway::StartError::WrongChain(_))) {
                return ExitCode::from(EXIT_CONFIG);
            }
            ExitCode::FAILURE
        }
    }
}

async fn run(mut config: Config, command: Option<Command>) -> anyhow::Result<()> {
    let mut shutdown = Shutdown::register()?;
    let demo_orchs = match Box::pin(cli::run(command, &mut config)).await? {
        Next::Report(report) => {
            std::io::stdout().write_all(report.as_bytes())?;
            return Ok(());
        }
        Next::Serve(demo_orchs) => demo_orchs,
    };
    let gateway = Gateway::start(config).await?;
    if let Some(orchs) = &demo_orchs {
        let text = cli::demo::instructions(
            gateway.admin_addr,
            gateway.http_addr,
            gateway.rtmp_addr,
            orchs,
        );
        let _ = std::io::stderr().write_all(text.as_bytes());
    }
    shutdown.wait().await;
    tracing::info!("shutting down");
    // In-flight work gets the drain time (`--shutdown-drain-timeout`, 10 s as go-livepeer
    // gives); running streams then end with an error event. `shutdown` is bounded by itself.
    gateway.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

/// SIGINT and SIGTERM, registered when created: `run` creates this before it starts anything,
/// so a signal that arrives while the gateway is starting is not lost (nor fatal).
struct Shutdown {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Shutdown {
    fn register() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    async fn wait(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Log targets switched off at any level (see [`init_tracing`]).
const LIBRARY_LOGS_HELD_BACK: [&str; 2] =
    ["alloy_rpc_client::poller=off", "sqlx_postgres::options::parse=off"];

/// The operator's `--log-level`, with [`LIBRARY_LOGS_HELD_BACK`] off. Two libraries log what
/// may hold a secret, whatever the level: alloy's block poller its transport error, whose
/// text ends with the RPC URL (an API key in its path), and sqlx a connect parameter it does
/// not know with its value (`sslpassword=…`). Their failures reach us as errors, which are
/// shown without either.
fn log_filter(level: &str) -> tracing_subscriber::EnvFilter {
    let mut filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Constants: the test below shows they parse and hold those targets back.
    for quiet in LIBRARY_LOGS_HELD_BACK.iter().filter_map(|d| d.parse().ok()) {
        filter = filter.add_directive(quiet);
    }
    filter
}

/// Logs go to stderr through [`LogSink`], which batches lines into few `write(2)` calls and
/// wakes its writer thread on a timer rather than per line (see its module for the figures).
fn init_tracing(config: &Config) -> anyhow::Result<LogGuard> {
    let filter = log_filter(&config.log_level);
    let (writer, guard) = LogSink::stderr()?;
    // Colours only for a terminal, not for files and log collectors.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(writer);
    match config.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text if ansi => builder.init(),
        // The same lines, written for less (see `log_format`).
        LogFormat::Text => {
            log_format::use_one_message_lines();
            builder.fmt_fields(log_format::fields()).with_timer(log_format::Clock).init()
        }
    }
    Ok(guard)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt as _;

    /// What the subscriber wrote, shared with the test.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn libraries_that_log_secrets_stay_quiet_at_any_level() {
        let out = Captured::default();
        let writer = out.clone();
        let layer = tracing_subscriber::fmt::layer().with_writer(move || writer.clone());
        let subscriber =
            tracing_subscriber::registry().with(super::log_filter("trace")).with(layer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(target: "sqlx_postgres::options::parse", value = "pw1", "ignoring");
            tracing::error!(target: "alloy_rpc_client::poller", err = "https://x/v2/k2", "poll");
            tracing::warn!(target: "livepeer_gateway::other", "shown");
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert!(text.contains("shown"), "{text}");
        assert!(!text.contains("pw1") && !text.contains("k2"), "{text}");
    }
}
