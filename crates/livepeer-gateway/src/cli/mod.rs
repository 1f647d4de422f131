//! The binary's subcommands: tools that run beside the gateway rather than inside it (the
//! demo's simulated orchestrators, the load tests, a live video client). Anything here may use
//! the simulator and print to the terminal; the library never depends on this tree, so code
//! the gateway itself runs does not belong here.

pub(crate) mod bench;
mod bench_byoc;
mod bench_keys;
pub(crate) mod bench_live;
pub(crate) mod bench_transcode;
pub(crate) mod demo;
pub(crate) mod deposit;
pub(crate) mod keys;
pub(crate) mod live_client;
mod load;
pub(crate) mod nginx;
pub(crate) mod soak;

use livepeer_gateway::Config;
use livepeer_gateway::payment::chain::tx::BrokerCall;

/// The subcommands; without one, the binary runs the gateway.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Run with three local simulated orchestrators and print what to try.
    Demo,
    /// Measure the gateway's added latency and throughput against a local simulated
    /// orchestrator, versus calling it directly; prints a Markdown table.
    Bench(bench::BenchArgs),
    /// Measure what the gateway adds to live video streams (latency per segment, CPU and
    /// memory per 2 Mbit/s stream), against publishing to a simulated orchestrator directly.
    BenchLive(bench_live::LiveBenchArgs),
    /// Measure what the gateway costs video transcoding (latency per segment, CPU and memory
    /// per stream of 2 s 1080p segments with three renditions), against a simulated
    /// orchestrator in fast mode, and against calling it directly.
    BenchTranscode(bench_transcode::TranscodeBenchArgs),
    /// Send a live video stream through a running gateway (an ffmpeg test pattern or a file),
    /// save the processed segments and print the stream's status.
    LiveClient(live_client::LiveClientArgs),
    /// Mixed batch AI, LLM and live load through the gateway while its simulated
    /// orchestrators are killed, hung and made to answer garbage or huge bodies; reports
    /// requests lost, requests paid twice, peak memory and descriptors (exit 1 when out of
    /// bounds).
    Soak(soak::SoakArgs),
    /// Manage customer keys (`--auth keys`) through a running gateway's admin API: create,
    /// list, show, disable, delete, usage.
    Keys(keys::KeysArgs),
    /// Add to the TicketBroker deposit and reserve (`--deposit 0.1ETH --reserve 0.05ETH`).
    Deposit(deposit::DepositArgs),
    /// Start unlocking the deposit and reserve (withdrawable after the unlock period).
    Unlock(deposit::TxArgs),
    /// Cancel an unlock in progress.
    CancelUnlock(deposit::TxArgs),
    /// Withdraw the unlocked deposit and reserve.
    Withdraw(deposit::TxArgs),
}

/// What `main` does once a subcommand has run.
#[derive(Debug)]
pub(crate) enum Next {
    /// Print this report to stdout and exit.
    Report(String),
    /// Run the gateway; with the demo's orchestrators, which must live as long as it does.
    Serve(Option<demo::DemoOrchestrators>),
}

/// Runs `command`: a tool to completion, or, for the demo, starts its orchestrators and
/// points `config` at them.
pub(crate) async fn run(command: Option<Command>, config: &mut Config) -> anyhow::Result<Next> {
    Ok(match command {
        None => Next::Serve(None),
        Some(Command::Demo) => {
            let orchs = demo::start_orchestrators().await?;
            demo::use_orchestrators(config, &orchs);
            Next::Serve(Some(orchs))
        }
        Some(Command::Bench(args)) => Next::Report(Box::pin(bench::run(args)).await?),
        Some(Command::BenchLive(args)) => Next::Report(bench_live::run(args).await?),
        Some(Command::BenchTranscode(args)) => Next::Report(bench_transcode::run(args).await?),
        Some(Command::LiveClient(args)) => Next::Report(live_client::run(args).await?),
        Some(Command::Soak(args)) => Next::Report(soak::run(args).await?),
        Some(Command::Keys(args)) => Next::Report(keys::run(args).await?),
        Some(Command::Deposit(args)) => {
            Next::Report(Box::pin(deposit::run(config, deposit::fund(&args)?, &args.tx)).await?)
        }
        Some(Command::Unlock(args)) => {
            Next::Report(Box::pin(deposit::run(config, BrokerCall::Unlock, &args)).await?)
        }
        Some(Command::CancelUnlock(args)) => {
            Next::Report(Box::pin(deposit::run(config, BrokerCall::CancelUnlock, &args)).await?)
        }
        Some(Command::Withdraw(args)) => {
            Next::Report(Box::pin(deposit::run(config, BrokerCall::Withdraw, &args)).await?)
        }
    })
}
