//! Running on a chain: the connection checked at start (chain id, contracts through the
//! Controller), the sender's funds and the rounds watched, and on-chain discovery — the pool
//! of orchestrators walked from the BondingManager, stored in the database, served from it
//! at once on a restart, and walked again in the background (GATEWAY.md §2.3, §4.4).

pub mod db;
pub mod discovery;
mod reads;
pub mod walk;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use livepeer_pm::{Address, U256};
use serde_json::{Value, json};

use crate::config::{ChainConfig, Network};
use crate::payment::LocalPayer;
use crate::payment::chain::{ChainClient, ChainError, Contracts, ROUNDS_MANAGER, Rounds};
use crate::task::Tasks;

/// Why the chain could not be used at start.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The endpoint serves another chain than `--network` names: a configuration mistake.
    #[error(
        "--eth-url serves chain id {got}, but --network {network} is chain id {expected}; \
         point --eth-url at a {network} node or pick the matching --network"
    )]
    WrongChain {
        /// The configured network.
        network: String,
        /// Its chain id.
        expected: u64,
        /// What the endpoint reported.
        got: u64,
    },
    /// The endpoint or the contracts could not be read.
    #[error("{0}")]
    Chain(String),
}

/// A checked chain connection and the contracts it resolved.
#[derive(Debug, Clone)]
pub struct Chain {
    /// The JSON-RPC client.
    pub client: ChainClient,
    /// The TicketBroker (always resolved: the sender's funds live there).
    pub ticket_broker: Address,
    /// The RoundsManager, when the Controller has one (off-chain payment-only setups may not).
    pub rounds_manager: Option<Address>,
    /// Every contract, on an on-chain network.
    pub contracts: Option<Contracts>,
    /// What the admin API shows.
    pub status: Arc<ChainStatus>,
}

/// Connects to `config.url`: checks the chain id of a known network, then resolves the
/// contracts through the Controller (every one on an on-chain network; the TicketBroker, and
/// the RoundsManager if registered, when `--eth-url` only reads the funds off-chain).
pub async fn connect(config: &ChainConfig) -> Result<Chain, ConnectError> {
    let chain_err = |what: &str, e: ChainError| ConnectError::Chain(format!("{what}: {e}"));
    let client = ChainClient::new(config.url.clone()).map_err(|e| chain_err("--eth-url", e))?;
    let chain_id = client.chain_id().await.map_err(|e| chain_err("reading the chain id", e))?;
    if let Some(expected) = config.network.chain_id()
        && expected != chain_id
    {
        let network = config.network.name().to_owned();
        return Err(ConnectError::WrongChain { network, expected, got: chain_id });
    }
    let controller = config.controller;
    let (ticket_broker, rounds_manager, contracts) = if config.network.is_onchain() {
        let c = client
            .contracts(controller, config.ai_service_registry)
            .await
            .map_err(|e| chain_err("resolving the contracts through the Controller", e))?;
        (c.ticket_broker, Some(c.rounds_manager), Some(c))
    } else {
        let broker = client
            .ticket_broker(controller)
            .await
            .map_err(|e| chain_err("resolving the TicketBroker", e))?;
        let rounds = match client.contract_address(controller, ROUNDS_MANAGER).await {
            Ok(address) => Some(address),
            Err(e) => {
                tracing::warn!(error = %e, "no RoundsManager: any unlock counts as imminent");
                None
            }
        };
        (broker, rounds, None)
    };
    tracing::info!(network = config.network.name(), chain_id, %controller, %ticket_broker, ?contracts, "chain connected");
    let status = Arc::new(ChainStatus::new(
        &config.network,
        chain_id,
        (controller, ticket_broker, contracts),
        &client,
    ));
    Ok(Chain { client, ticket_broker, rounds_manager, contracts, status })
}

impl Chain {
    /// Reads the sender's funds (and the rounds) once — startup fails if it cannot, as
    /// go-livepeer's does on-chain — then again every `every`, keeping the last good values
    /// on errors.
    pub async fn watch_funds(
        &self,
        tasks: &Tasks,
        every: Duration,
        payer: LocalPayer,
    ) -> Result<(), String> {
        let info = self
            .client
            .sender_info_at(self.ticket_broker, payer.sender())
            .await
            .map_err(|e| format!("reading the TicketBroker deposit and reserve: {e}"))?;
        tracing::info!(deposit = %info.deposit, reserve = %info.reserve, withdraw_round = %info.withdraw_round, "sender funds");
        payer.set_funds(info);
        self.read_rounds_and_block(&payer).await;
        let this = self.clone();
        tasks.spawn("sender-funds", move |cancel| async move {
            let mut tick = tokio::time::interval(every);
            tick.reset();
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tick.tick() => {
                        match this.client.sender_info_at(this.ticket_broker, payer.sender()).await {
                            Ok(info) => payer.set_funds(info),
                            Err(e) => tracing::warn!(error = %e, "could not refresh sender funds; keeping the last"),
                        }
                        this.read_rounds_and_block(&payer).await;
                    }
                }
            }
        });
        Ok(())
    }

    /// The rounds (for the unlock check) and the block ticket expiry counts in (L1 on
    /// Arbitrum); a failed read keeps the last value.
    async fn read_rounds_and_block(&self, payer: &LocalPayer) {
        if let Some(rm) = self.rounds_manager {
            match self.client.rounds(rm).await {
                Ok(rounds) => {
                    payer.set_round(rounds.last_initialized);
                    self.status.set_rounds(rounds);
                }
                Err(e) => tracing::warn!(error = %e, "could not read the rounds; keeping the last"),
            }
        }
        if let Ok(block) = self.client.expiry_block_number().await {
            payer.set_block(block);
        }
    }
}

/// What `/status` shows of the chain: network, contracts, rounds, on-chain discovery.
#[derive(Debug)]
pub struct ChainStatus {
    fixed: Value,
    /// The chain id the endpoint reported.
    chain_id: u64,
    /// The endpoint, for the balances the admin API reads when asked.
    client: ChainClient,
    /// The Controller.
    controller: Address,
    /// The TicketBroker (resolved on- and off-chain alike).
    ticket_broker: Address,
    /// The contracts, on an on-chain network.
    contracts: Option<Contracts>,
    /// The reads the admin API makes when asked, kept briefly.
    reads: reads::Reads,
    rounds: Mutex<Option<Rounds>>,
    discovery: Mutex<Option<Value>>,
}

impl ChainStatus {
    fn new(
        network: &Network,
        chain_id: u64,
        (controller, ticket_broker, c): (Address, Address, Option<Contracts>),
        client: &ChainClient,
    ) -> Self {
        let address = |a: Address| a.to_checksum(None);
        let contracts = c.map(|c| {
            json!({
                "ticket_broker": address(c.ticket_broker),
                "bonding_manager": address(c.bonding_manager),
                "rounds_manager": address(c.rounds_manager),
                "service_registry": address(c.service_registry),
            })
        });
        let fixed = json!({
            "network": network.name(),
            "chain_id": chain_id,
            "controller": address(controller),
            "contracts": contracts,
        });
        Self {
            fixed,
            chain_id,
            client: client.clone(),
            controller,
            ticket_broker,
            contracts: c,
            reads: reads::Reads::new(reads::FRESH_FOR),
            rounds: Mutex::new(None),
            discovery: Mutex::new(None),
        }
    }

    /// The chain id the endpoint reported at start.
    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// The Controller the contracts were resolved through.
    pub fn controller(&self) -> Address {
        self.controller
    }

    /// Every contract, on an on-chain network (`None` when `--eth-url` only reads the funds
    /// of an off-chain gateway).
    pub fn contracts(&self) -> Option<Contracts> {
        self.contracts
    }

    /// The current round, when read.
    pub fn current_round(&self) -> Option<U256> {
        self.rounds.lock().ok().and_then(|r| r.map(|r| r.current))
    }

    /// Whether on-chain discovery supplies the orchestrators.
    pub fn discovers(&self) -> bool {
        self.discovery.lock().is_ok_and(|d| d.is_some())
    }

    /// Records the rounds just read.
    pub fn set_rounds(&self, rounds: Rounds) {
        if let Ok(mut r) = self.rounds.lock() {
            *r = Some(rounds);
        }
    }

    /// The last initialized round, when read.
    pub fn last_initialized_round(&self) -> Option<U256> {
        self.rounds.lock().ok().and_then(|r| r.map(|r| r.last_initialized))
    }

    /// Records on-chain discovery's state.
    pub(crate) fn set_discovery(&self, value: Value) {
        if let Ok(mut d) = self.discovery.lock() {
            *d = Some(value);
        }
    }

    /// Edits on-chain discovery's state in place (when there is one).
    pub(crate) fn update_discovery(&self, edit: impl FnOnce(&mut Value)) {
        if let Ok(mut d) = self.discovery.lock()
            && let Some(value) = d.as_mut()
        {
            edit(value);
        }
    }

    /// The JSON of `/status`'s `chain` member.
    pub fn to_json(&self) -> Value {
        let mut out = self.fixed.clone();
        let rounds = self.rounds.lock().ok().and_then(|r| *r).map(|r| {
            json!({"current": r.current.to_string(), "last_initialized": r.last_initialized.to_string()})
        });
        out["rounds"] = rounds.unwrap_or(Value::Null);
        out["discovery"] =
            self.discovery.lock().ok().and_then(|d| d.clone()).unwrap_or(Value::Null);
        out
    }
}
