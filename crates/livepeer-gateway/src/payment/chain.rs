//! Access to the Livepeer contracts over Ethereum JSON-RPC, on alloy's HTTP provider.
//!
//! An on-chain gateway needs its own deposit and reserve before it signs tickets
//! (`pm/sender.go` `validateSender`, PAYMENTS.md §5.3), the latest block number to judge ticket
//! expiry, the last initialized round to judge an unlock, and (for on-chain discovery) the
//! transcoder pool. Contract addresses come from the Controller, `getContract(keccak256(name))`
//! (go-livepeer `eth/client.go` `setContracts`); the functions are the `sol!` bindings of
//! [`abi`]. Transport and node failures are classified into [`ChainError`]; every request,
//! connection included, is bounded by the client's timeout.
//!
//! Amounts stay [`U256`] throughout: nothing is rounded or converted to floating point.

pub mod abi;
mod transport;
pub mod tx;

use std::time::Duration;

use alloy::eips::BlockId;
use alloy::network::TransactionBuilder as _;
use alloy::primitives::Bytes;
use alloy::providers::{Provider as _, RootProvider};
use alloy::rpc::client::RpcClient;
use alloy::rpc::types::TransactionRequest;
use alloy::sol_types::SolCall;
use alloy::transports::{RpcError, TransportErrorKind};
use livepeer_pm::{Address, B256, U256, keccak256};
use serde_json::Value;
use transport::CappedHttp;
use url::Url;

use crate::error::error_chain;

/// Default timeout of one JSON-RPC request, connection included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Function signature of the Controller's registry lookup; its selector is the first four bytes
/// of `keccak256` of this string (`0xe16c7d98`).
pub const GET_CONTRACT_SIGNATURE: &str = abi::Controller::getContractCall::SIGNATURE;

/// Function signature of the TicketBroker's sender lookup (`0xe1a589da`).
pub const GET_SENDER_INFO_SIGNATURE: &str = abi::TicketBroker::getSenderInfoCall::SIGNATURE;

/// Name under which the Controller registers the TicketBroker; the registry key is
/// `keccak256` of its UTF-8 bytes.
pub const TICKET_BROKER: &str = "TicketBroker";
/// Registry name of the BondingManager.
pub const BONDING_MANAGER: &str = "BondingManager";
/// Registry name of the RoundsManager.
pub const ROUNDS_MANAGER: &str = "RoundsManager";
/// Registry name of the ServiceRegistry.
pub const SERVICE_REGISTRY: &str = "ServiceRegistry";

/// Why a chain read failed.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The node could not be reached or did not answer in time (connection refused, DNS,
    /// TLS, timeout, or an HTTP error status without a JSON-RPC body).
    #[error("Ethereum node {url} unreachable: {reason}")]
    Unreachable {
        /// The JSON-RPC URL.
        url: String,
        /// What went wrong at the transport level.
        reason: String,
    },
    /// The node answered with a JSON-RPC error object (this includes a reverted `eth_call`).
    #[error("Ethereum JSON-RPC error {code}: {message}")]
    Rpc {
        /// The JSON-RPC error code.
        code: i64,
        /// The JSON-RPC error message.
        message: String,
    },
    /// The answer was not what the protocol or the contract ABI promises.
    #[error("malformed answer to {method}: {detail}")]
    Malformed {
        /// The JSON-RPC method or contract function that was called.
        method: &'static str,
        /// What was wrong with the answer.
        detail: String,
    },
    /// An `eth_call` returned no data: there is no contract at this address (for example a
    /// wrong Controller address, or the Controller of another network).
    #[error("no contract at {address}")]
    NoContract {
        /// The address that was called.
        address: Address,
    },
    /// The Controller has no contract registered under this name (it returned the zero address).
    #[error("controller {controller} has no contract registered as {name:?}")]
    NotRegistered {
        /// The Controller address.
        controller: Address,
        /// The contract name that was looked up.
        name: String,
    },
}

/// A sender's funds as held by the TicketBroker (`getSenderInfo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SenderInfo {
    /// The sender's deposit, in wei.
    pub deposit: U256,
    /// The round from which the deposit and reserve can be withdrawn; 0 when not unlocking.
    pub withdraw_round: U256,
    /// The reserve's remaining funds (`ReserveInfo.fundsRemaining`), in wei.
    pub reserve: U256,
    /// Reserve funds claimed in the current round (`ReserveInfo.claimedInCurrentRound`), in wei.
    pub claimed_in_current_round: U256,
}

impl SenderInfo {
    /// Whether the sender has started unlocking its deposit and reserve (`withdrawRound != 0`).
    #[must_use]
    pub fn is_unlocking(&self) -> bool {
        !self.withdraw_round.is_zero()
    }

    /// go-livepeer's refusal rule (`pm/sender.go` `validateSender`): the funds "unlock soon"
    /// when `withdrawRound != 0 && withdrawRound <= lastInitializedRound + 1`. A sender whose
    /// unlock completes later than the next round may still pay.
    #[must_use]
    pub fn unlocks_soon(&self, last_initialized_round: U256) -> bool {
        self.is_unlocking()
            && self.withdraw_round <= last_initialized_round.saturating_add(U256::from(1))
    }

    /// The largest ticket face value the sender accepts: `deposit / deposit_multiplier`, integer
    /// division as in `pm/sender.go`. `None` when the multiplier is 0 (go-livepeer refuses a
    /// multiplier that is not positive).
    #[must_use]
    pub fn max_face_value(&self, deposit_multiplier: u64) -> Option<U256> {
        self.deposit.checked_div(U256::from(deposit_multiplier))
    }
}

/// The protocol's rounds, as the RoundsManager reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rounds {
    /// `currentRound()`: the round the current block falls in.
    pub current: U256,
    /// `lastInitializedRound()`: what go-livepeer's round watcher tracks and its checks use.
    pub last_initialized: U256,
}

/// The contract addresses a gateway uses, resolved once through the Controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Contracts {
    /// The Controller itself.
    pub controller: Address,
    /// Deposits, reserves, tickets.
    pub ticket_broker: Address,
    /// The transcoder pool and stakes.
    pub bonding_manager: Address,
    /// Rounds.
    pub rounds_manager: Address,
    /// Where service URIs are read: the Controller's ServiceRegistry, or the AI subnet's own
    /// registry when configured (go-livepeer `-aiServiceRegistry` replaces it the same way).
    pub service_registry: Address,
}

/// The first four bytes of `keccak256(signature)`, the ABI function selector.
#[must_use]
pub fn selector(signature: &str) -> [u8; 4] {
    let hash = keccak256(signature.as_bytes());
    [hash[0], hash[1], hash[2], hash[3]]
}

/// The Controller registry key of a contract name: `keccak256(name)`.
#[must_use]
pub fn contract_key(name: &str) -> B256 {
    keccak256(name.as_bytes())
}

/// An Ethereum JSON-RPC client over HTTP(S) (alloy's provider on reqwest).
#[derive(Debug, Clone)]
pub struct ChainClient {
    provider: RootProvider,
    /// The provider's client (an `Arc`), kept for JSON-RPC batches.
    rpc: RpcClient,
    url: Url,
}

impl ChainClient {
    /// A client for the JSON-RPC endpoint `url`, each request bounded by [`DEFAULT_TIMEOUT`].
    ///
    /// # Errors
    /// [`ChainError::Unreachable`] if the HTTP client cannot be built.
    pub fn new(url: Url) -> Result<Self, ChainError> {
        Self::with_timeout(url, DEFAULT_TIMEOUT)
    }

    /// A client whose every request (connection included) is bounded by `timeout`.
    ///
    /// # Errors
    /// [`ChainError::Unreachable`] if the HTTP client cannot be built.
    pub fn with_timeout(url: Url, timeout: Duration) -> Result<Self, ChainError> {
        let http =
            reqwest::Client::builder().timeout(timeout).connect_timeout(timeout).build().map_err(
                |e| ChainError::Unreachable {
                    url: crate::outbound::shown(&url),
                    reason: format!("cannot build HTTP client: {e}"),
                },
            )?;
        let is_local = alloy::transports::utils::guess_local_url(url.as_str());
        let client = RpcClient::new(CappedHttp { client: http, url: url.clone() }, is_local);
        Ok(Self { provider: RootProvider::new(client.clone()), rpc: client, url })
    }

    /// The JSON-RPC URL.
    #[must_use]
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The underlying provider, for transactions ([`tx`]).
    pub(crate) fn provider(&self) -> &RootProvider {
        &self.provider
    }

    /// Maps an alloy error to [`ChainError`]: transport failures and HTTP errors without a
    /// JSON-RPC body are "unreachable", error objects are "rpc", undecodable answers are
    /// "malformed".
    pub(crate) fn classify(
        &self,
        method: &'static str,
        error: RpcError<TransportErrorKind>,
    ) -> ChainError {
        // The URL shown without its path or query, which carry an RPC provider's API key
        // (`/v2/<key>`), also where the transport's own text repeats it.
        let unreachable = |reason: String| ChainError::Unreachable {
            url: crate::outbound::shown(&self.url),
            reason: crate::outbound::scrub(&reason, &self.url),
        };
        match error {
            RpcError::ErrorResp(payload) => {
                ChainError::Rpc { code: payload.code, message: payload.message.into_owned() }
            }
            RpcError::Transport(kind) => match kind {
                TransportErrorKind::Custom(e) => unreachable(error_chain(&*e)),
                other => unreachable(other.to_string()),
            },
            RpcError::DeserError { err, .. } => {
                ChainError::Malformed { method, detail: format!("not a valid answer: {err}") }
            }
            RpcError::NullResp => {
                ChainError::Malformed { method, detail: "null result".to_owned() }
            }
            other => ChainError::Malformed { method, detail: other.to_string() },
        }
    }

    /// Sends one JSON-RPC request with JSON `params` and returns its `result` (for tests and
    /// tools that need a method the client has no function for).
    ///
    /// # Errors
    /// [`ChainError::Unreachable`] on transport failure, [`ChainError::Rpc`] on a JSON-RPC error
    /// object, [`ChainError::Malformed`] if the answer is not a JSON-RPC response.
    pub async fn request(&self, method: &'static str, params: Value) -> Result<Value, ChainError> {
        self.provider
            .raw_request::<Value, Value>(method.into(), params)
            .await
            .map_err(|e| self.classify(method, e))
    }

    /// The chain id (`eth_chainId`).
    ///
    /// # Errors
    /// See [`ChainClient::request`]; [`ChainError::Malformed`] if the id is not a quantity.
    pub async fn chain_id(&self) -> Result<u64, ChainError> {
        self.provider.get_chain_id().await.map_err(|e| self.classify("eth_chainId", e))
    }

    /// The latest block number (`eth_blockNumber`). On Arbitrum this is the L2 block number.
    ///
    /// # Errors
    /// See [`ChainClient::request`]; [`ChainError::Malformed`] if the number is not a quantity.
    pub async fn block_number(&self) -> Result<u64, ChainError> {
        self.provider.get_block_number().await.map_err(|e| self.classify("eth_blockNumber", e))
    }

    /// The latest block number in the chain that ticket expiry is counted in: on Arbitrum, the
    /// L1 block number carried in the latest L2 block (`l1BlockNumber`, what go-livepeer's
    /// time watcher reads); elsewhere the block number itself.
    ///
    /// # Errors
    /// See [`ChainClient::request`]; [`ChainError::Malformed`] for an answer without a number.
    pub async fn expiry_block_number(&self) -> Result<u64, ChainError> {
        const METHOD: &str = "eth_getBlockByNumber";
        // Raw JSON: alloy's block type has no field for Arbitrum's `l1BlockNumber`.
        let block: Value = self
            .provider
            .raw_request(METHOD.into(), ("latest", false))
            .await
            .map_err(|e| self.classify(METHOD, e))?;
        match block.get("l1BlockNumber") {
            Some(l1) => parse_quantity(METHOD, l1),
            None => parse_quantity(METHOD, block.get("number").unwrap_or(&Value::Null)),
        }
    }

    /// Calls a view function at `to` with ABI-encoded `data` against the latest block and
    /// returns the raw return data (`eth_call`).
    ///
    /// # Errors
    /// See [`ChainClient::request`].
    pub async fn call(&self, to: Address, data: &[u8]) -> Result<Vec<u8>, ChainError> {
        self.call_at(to, data, BlockId::latest()).await.map(|b| b.to_vec())
    }

    /// `eth_call` against the block `block`.
    async fn call_at(&self, to: Address, data: &[u8], block: BlockId) -> Result<Bytes, ChainError> {
        let tx = TransactionRequest::default().with_to(to).with_input(Bytes::copy_from_slice(data));
        self.provider.call(tx).block(block).await.map_err(|e| self.classify("eth_call", e))
    }

    /// Calls `C` at `to` and decodes its return values; empty return data means no contract.
    ///
    /// # Errors
    /// [`ChainError::NoContract`], [`ChainError::Malformed`] for undecodable data, and the
    /// errors of [`ChainClient::call`].
    pub(crate) async fn view<C: SolCall>(
        &self,
        to: Address,
        call: &C,
        block: BlockId,
    ) -> Result<C::Return, ChainError> {
        let out = self.call_at(to, &call.abi_encode(), block).await?;
        decode::<C>(to, &out)
    }

    /// Sends `calls` (each a contract and an encoded call of `C`) as JSON-RPC batches of at
    /// most `batch` requests, all against `block`, and decodes each answer on its own.
    ///
    /// # Errors
    /// The outer error is a batch that failed as a whole (transport); the inner ones are the
    /// calls' own.
    pub(crate) async fn view_batch<C: SolCall>(
        &self,
        calls: &[(Address, C)],
        block: BlockId,
    ) -> Result<Vec<Result<C::Return, ChainError>>, ChainError> {
        let mut out = Vec::with_capacity(calls.len());
        for chunk in calls.chunks(BATCH_SIZE) {
            let mut batch = self.rpc.new_batch();
            let mut waiters = Vec::with_capacity(chunk.len());
            for (to, call) in chunk {
                let tx = TransactionRequest::default()
                    .with_to(*to)
                    .with_input(Bytes::from(call.abi_encode()));
                let waiter = batch
                    .add_call::<_, Bytes>("eth_call", &(tx, block))
                    .map_err(|e| self.classify("eth_call", e))?;
                waiters.push((*to, waiter));
            }
            batch.send().await.map_err(|e| self.classify("eth_call", e))?;
            for (to, waiter) in waiters {
                let answer: Result<Bytes, ChainError> =
                    waiter.await.map_err(|e| self.classify("eth_call", e));
                out.push(answer.and_then(|bytes| decode::<C>(to, &bytes)));
            }
        }
        Ok(out)
    }

    /// The address registered in the Controller under `name` (`getContract(keccak256(name))`).
    ///
    /// # Errors
    /// [`ChainError::NoContract`] if nothing is deployed at `controller`,
    /// [`ChainError::NotRegistered`] if the Controller returns the zero address, and the errors
    /// of [`ChainClient::call`].
    pub async fn contract_address(
        &self,
        controller: Address,
        name: &str,
    ) -> Result<Address, ChainError> {
        let call = abi::Controller::getContractCall { _id: contract_key(name) };
        let address = self.view(controller, &call, BlockId::latest()).await?;
        if address.is_zero() {
            return Err(ChainError::NotRegistered { controller, name: name.to_owned() });
        }
        Ok(address)
    }

    /// The TicketBroker address registered in the Controller.
    ///
    /// # Errors
    /// As [`ChainClient::contract_address`].
    pub async fn ticket_broker(&self, controller: Address) -> Result<Address, ChainError> {
        self.contract_address(controller, TICKET_BROKER).await
    }

    /// Resolves every contract the gateway uses through `controller`; `service_registry`
    /// replaces the Controller's ServiceRegistry when given (the AI subnet's registry).
    ///
    /// # Errors
    /// As [`ChainClient::contract_address`].
    pub async fn contracts(
        &self,
        controller: Address,
        service_registry: Option<Address>,
    ) -> Result<Contracts, ChainError> {
        let service_registry = match service_registry {
            Some(address) => address,
            None => self.contract_address(controller, SERVICE_REGISTRY).await?,
        };
        Ok(Contracts {
            controller,
            ticket_broker: self.contract_address(controller, TICKET_BROKER).await?,
            bonding_manager: self.contract_address(controller, BONDING_MANAGER).await?,
            rounds_manager: self.contract_address(controller, ROUNDS_MANAGER).await?,
            service_registry,
        })
    }

    /// `sender`'s deposit and reserve, read from the TicketBroker at `broker`.
    ///
    /// # Errors
    /// [`ChainError::NoContract`] if nothing is deployed at `broker`, [`ChainError::Malformed`]
    /// if the answer is not four words, and the errors of [`ChainClient::call`].
    pub async fn sender_info_at(
        &self,
        broker: Address,
        sender: Address,
    ) -> Result<SenderInfo, ChainError> {
        let call = abi::TicketBroker::getSenderInfoCall { _sender: sender };
        let out = self.call_at(broker, &call.abi_encode(), BlockId::latest()).await?;
        if out.is_empty() {
            return Err(ChainError::NoContract { address: broker });
        }
        decode_sender_info(&out)
    }

    /// `sender`'s deposit and reserve: resolves the TicketBroker through `controller`, then
    /// calls `getSenderInfo(sender)` on it.
    ///
    /// # Errors
    /// As [`ChainClient::ticket_broker`] and [`ChainClient::sender_info_at`].
    pub async fn sender_info(
        &self,
        controller: Address,
        sender: Address,
    ) -> Result<SenderInfo, ChainError> {
        let broker = self.ticket_broker(controller).await?;
        self.sender_info_at(broker, sender).await
    }

    /// The current and last initialized rounds from the RoundsManager at `rounds_manager`.
    ///
    /// # Errors
    /// As [`ChainClient::call`]; [`ChainError::NoContract`] without a contract there.
    pub async fn rounds(&self, rounds_manager: Address) -> Result<Rounds, ChainError> {
        self.rounds_at(rounds_manager, BlockId::latest()).await
    }

    /// The rounds as of block `at`.
    ///
    /// # Errors
    /// As [`ChainClient::rounds`].
    pub async fn rounds_at(
        &self,
        rounds_manager: Address,
        at: BlockId,
    ) -> Result<Rounds, ChainError> {
        let current =
            self.view(rounds_manager, &abi::RoundsManager::currentRoundCall {}, at).await?;
        let last_initialized =
            self.view(rounds_manager, &abi::RoundsManager::lastInitializedRoundCall {}, at).await?;
        Ok(Rounds { current, last_initialized })
    }
}

/// JSON-RPC requests per batch: large enough that a pool of ~100 needs a handful of round
/// trips, small enough for public endpoints' batch limits.
const BATCH_SIZE: usize = 50;

/// Decodes `C`'s return data from `to`; no data at all means there is no contract there.
fn decode<C: SolCall>(to: Address, out: &[u8]) -> Result<C::Return, ChainError> {
    if out.is_empty() {
        return Err(ChainError::NoContract { address: to });
    }
    C::abi_decode_returns_validate(out).map_err(|e| ChainError::Malformed {
        method: leak_name(C::SIGNATURE),
        detail: format!("{} bytes of return data: {e}", out.len()),
    })
}

/// The function name of a `sol!` signature (`name(args)`), for error messages.
fn leak_name(signature: &'static str) -> &'static str {
    signature.split('(').next().unwrap_or(signature)
}

/// Parses a JSON-RPC quantity (`"0x"` followed by at most 16 hex digits) as a `u64`.
fn parse_quantity(method: &'static str, value: &Value) -> Result<u64, ChainError> {
    let malformed = |detail: String| ChainError::Malformed { method, detail };
    let text =
        value.as_str().ok_or_else(|| malformed(format!("expected a hex string, got {value}")))?;
    let digits =
        text.strip_prefix("0x").ok_or_else(|| malformed(format!("quantity {text:?} lacks 0x")))?;
    if digits.is_empty() || digits.len() > 16 {
        return Err(malformed(format!("bad quantity {text:?}")));
    }
    u64::from_str_radix(digits, 16).map_err(|e| malformed(format!("bad quantity {text:?}: {e}")))
}

/// Decodes the return data of `getSenderInfo(address)`: the static tuple
/// `((uint256 deposit, uint256 withdrawRound), (uint256 fundsRemaining, uint256
/// claimedInCurrentRound))`, i.e. exactly four words, inline.
///
/// # Errors
/// [`ChainError::Malformed`] unless `data` is exactly 128 bytes.
pub fn decode_sender_info(data: &[u8]) -> Result<SenderInfo, ChainError> {
    const METHOD: &str = "getSenderInfo";
    if data.len() != 4 * 32 {
        return Err(ChainError::Malformed {
            method: METHOD,
            detail: format!("{} bytes of return data, expected 128", data.len()),
        });
    }
    let r = abi::TicketBroker::getSenderInfoCall::abi_decode_returns_validate(data)
        .map_err(|e| ChainError::Malformed { method: METHOD, detail: e.to_string() })?;
    Ok(SenderInfo {
        deposit: r.sender.deposit,
        withdraw_round: r.sender.withdrawRound,
        reserve: r.reserve.fundsRemaining,
        claimed_in_current_round: r.reserve.claimedInCurrentRound,
    })
}

#[cfg(test)]
mod tests;
