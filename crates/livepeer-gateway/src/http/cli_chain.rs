//! go-livepeer's CLI chain and account routes on a gateway (`server/handlers.go`), answered
//! from what the gateway already keeps of the chain (its id, contracts, rounds, the sender's
//! funds) or, for the two balances and the unlock period, read from the endpoint when asked, as
//! go-livepeer does, but at most once every two seconds (`onchain::reads`), so that no client
//! can make the gateway call the endpoint without limit.
//! Without `--eth-url` they answer go-livepeer's off-chain 500 `missing ETH client`, which
//! `livepeer_cli` reads as "off-chain" (e.g. zero funds in its sender view).

use std::sync::Arc;

use axum::response::Response;
use livepeer_pm::Address;

use super::cli_reply::{internal, json_text, missing_eth_client, text};
use crate::onchain::ChainStatus;
use crate::payment::LocalPayer;
use crate::state::AppState;

/// `/EthChainID`: the chain id, `0` off-chain (go-livepeer stores 0 for an off-chain node, and
/// `livepeer_cli` takes `0` for off-chain). A gateway reading only its funds through
/// `--eth-url` is off-chain in this sense: it has no contracts beyond the TicketBroker.
pub(super) fn eth_chain_id(app: &AppState) -> Response {
    let id = app.chain.as_ref().filter(|c| c.contracts().is_some()).map_or(0, |c| c.chain_id());
    text(id.to_string())
}

/// `/currentRound`: the RoundsManager's current round, as last read (the funds watcher reads
/// it with the sender's funds).
pub(super) fn current_round(app: &AppState) -> Response {
    let Some(chain) = &app.chain else { return missing_eth_client() };
    match chain.current_round() {
        Some(round) => text(round.to_string()),
        None => internal("could not query current round: the rounds have not been read yet"),
    }
}

/// `/ethAddr`: the gateway's account, checksummed as go-ethereum's `Address.Hex()`.
pub(super) fn eth_addr(app: &AppState) -> Response {
    match account(app) {
        Ok((_, payer)) => text(payer.sender().to_checksum(None)),
        Err(refusal) => internal(refusal),
    }
}

/// `/senderInfo`: the TicketBroker's view of the gateway's funds as go-livepeer's
/// `pm.SenderInfo`, every amount a bare JSON integer as Go writes a `*big.Int`.
pub(super) fn sender_info(app: &AppState) -> Response {
    let (_, payer) = match account(app) {
        Ok(found) => found,
        Err(refusal) => return internal(refusal),
    };
    let Some(f) = payer.funds() else {
        return internal("could not query sender info: the funds have not been read yet");
    };
    json_text(format!(
        r#"{{"Deposit":{},"WithdrawRound":{},"Reserve":{{"FundsRemaining":{},"ClaimedInCurrentRound":{}}}}}"#,
        f.deposit, f.withdraw_round, f.reserve, f.claimed_in_current_round
    ))
}

/// `/contractAddresses`: the contracts go-livepeer lists that the gateway resolved, as
/// go-ethereum writes an `Address` (lowercase `0x` hex). `LivepeerToken`, its faucet and the
/// Minter are not resolved, so not listed.
pub(super) fn contract_addresses(app: &AppState) -> Response {
    let Some(chain) = &app.chain else { return missing_eth_client() };
    let hex = |a: Address| serde_json::Value::String(format!("{a:#x}"));
    let mut map = serde_json::Map::new();
    map.insert("Controller".into(), hex(chain.controller()));
    if let Some(c) = chain.contracts() {
        map.insert("TicketBroker".into(), hex(c.ticket_broker));
        map.insert("RoundsManager".into(), hex(c.rounds_manager));
        map.insert("BondingManager".into(), hex(c.bonding_manager));
    }
    json_text(serde_json::Value::Object(map).to_string())
}

/// `/ethBalance`: the account's ETH, wei, read now (or less than two seconds ago).
pub(super) async fn eth_balance(app: &AppState) -> Response {
    let (chain, payer) = match account(app) {
        Ok(found) => found,
        Err(refusal) => return internal(refusal),
    };
    match chain.eth_balance(payer.sender()).await {
        Ok(wei) => text(wei.to_string()),
        Err(e) => internal(e),
    }
}

/// `/tokenBalance`: the account's LPT, in its smallest unit, read now (or less than two
/// seconds ago).
pub(super) async fn token_balance(app: &AppState) -> Response {
    let (chain, payer) = match account(app) {
        Ok(found) => found,
        Err(refusal) => return internal(refusal),
    };
    match chain.token_balance(payer.sender()).await {
        Ok(amount) => text(amount.to_string()),
        Err(e) => internal(e),
    }
}

/// `/ticketBrokerParams`: `{"UnlockPeriod": <rounds>}`, the TicketBroker's unlock period read
/// now (or less than two seconds ago), which `livepeer_cli`'s unlock wizard adds to the current
/// round. Like go-livepeer's, it needs a chain, not an account.
pub(super) async fn ticket_broker_params(app: &AppState) -> Response {
    let Some(chain) = &app.chain else { return missing_eth_client() };
    match chain.unlock_period().await {
        Ok(rounds) => json_text(format!(r#"{{"UnlockPeriod":{rounds}}}"#)),
        Err(e) => internal(format!("could not query TicketBroker unlockPeriod: {e}")),
    }
}

/// The chain and the gateway's own account on it (go-livepeer's `mustHaveClient`), or the
/// 500 to answer.
fn account(app: &AppState) -> Result<(&Arc<ChainStatus>, &LocalPayer), &'static str> {
    let Some(chain) = &app.chain else { return Err("missing ETH client") };
    match &app.payer {
        Some(payer) => Ok((chain, payer)),
        None => Err("no local ETH account: this gateway pays through a remote signer"),
    }
}
