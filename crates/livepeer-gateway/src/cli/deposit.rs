//! Deposit management: `deposit --deposit X --reserve Y`, `unlock`, `cancel-unlock` and
//! `withdraw`, TicketBroker transactions signed with the gateway's key on the chain of
//! `--network`/`--eth-url`. Each prints the transaction, asks before sending unless `--yes`
//! (`--dry-run` stops after printing), waits for the receipt and prints the funds after.

use std::fmt::Write as _;
use std::io::{BufRead as _, Write as _};
use std::time::Duration;

use anyhow::{Context as _, bail};
use livepeer_gateway::Config;
use livepeer_gateway::payment::chain::tx::{BrokerCall, format_eth, parse_amount};

/// Flags every deposit transaction takes.
#[derive(Debug, clap::Args)]
pub(crate) struct TxArgs {
    /// Print the transaction and stop, sending nothing.
    #[arg(long)]
    dry_run: bool,
    /// Send without asking.
    #[arg(long)]
    yes: bool,
    /// How long to wait for the receipt, in seconds.
    #[arg(long, default_value_t = 300)]
    tx_timeout_secs: u64,
}

/// `deposit`: amounts with their unit (`0.1ETH`, `50gwei`, `1000wei`).
#[derive(Debug, clap::Args)]
pub(crate) struct DepositArgs {
    /// Added to the deposit (what winning tickets are paid from).
    #[arg(long)]
    deposit: String,
    /// Added to the reserve (what orchestrators are guaranteed if the deposit runs out).
    #[arg(long)]
    reserve: String,
    #[command(flatten)]
    pub(crate) tx: TxArgs,
}

/// Parses `deposit`'s amounts.
pub(crate) fn fund(args: &DepositArgs) -> anyhow::Result<BrokerCall> {
    let deposit = parse_amount(&args.deposit).map_err(anyhow::Error::msg).context("--deposit")?;
    let reserve = parse_amount(&args.reserve).map_err(anyhow::Error::msg).context("--reserve")?;
    Ok(BrokerCall::Fund { deposit, reserve })
}

/// Runs `call` with `args`; the report is what stdout gets.
pub(crate) async fn run(
    config: &Config,
    call: BrokerCall,
    args: &TxArgs,
) -> anyhow::Result<String> {
    let (Some(cc), Some(signer)) = (&config.chain, &config.signer) else {
        bail!("needs --eth-url (with --network or --eth-controller) and the gateway's key");
    };
    let chain = livepeer_gateway::onchain::connect(cc).await?;
    let sender = signer.address();
    let before = chain.client.sender_info_at(chain.ticket_broker, sender).await?;
    let prepared = chain.client.prepare(sender, chain.ticket_broker, call).await?;
    let mut out = String::new();
    let _ = writeln!(out, "{}", prepared.describe());
    if args.dry_run {
        let _ = writeln!(out, "dry run: nothing sent");
        return Ok(out);
    }
    if !args.yes && !confirm(&out)? {
        return Ok("cancelled: nothing sent\n".to_owned());
    }
    let timeout = Duration::from_secs(args.tx_timeout_secs);
    let outcome = chain.client.sign_and_send(signer, prepared, timeout).await?;
    let after = chain.client.sender_info_at(chain.ticket_broker, sender).await?;
    let _ = writeln!(out, "transaction: {:#x}", outcome.hash);
    if let Some(block) = outcome.block {
        let _ = writeln!(out, "block:       {block}");
    }
    let _ = writeln!(out, "gas used:    {}", outcome.gas_used);
    let _ = writeln!(
        out,
        "deposit:     {} (was {})",
        format_eth(after.deposit),
        format_eth(before.deposit)
    );
    let _ = writeln!(
        out,
        "reserve:     {} (was {})",
        format_eth(after.reserve),
        format_eth(before.reserve)
    );
    let unlock = if after.is_unlocking() {
        format!("unlocking, withdrawable from round {}", after.withdraw_round)
    } else {
        "locked (not unlocking)".to_owned()
    };
    let _ = writeln!(out, "state:       {unlock}");
    Ok(out)
}

/// Shows the transaction on stderr and asks; only `y` or `yes` sends.
fn confirm(description: &str) -> anyhow::Result<bool> {
    let mut err = std::io::stderr();
    write!(err, "{description}Send this transaction? [y/N] ")?;
    err.flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes"))
}
