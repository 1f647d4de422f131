//! Read-only access to the Livepeer contracts over Ethereum JSON-RPC.
//!
//! An on-chain gateway needs its own deposit and reserve before it signs tickets
//! (`pm/sender.go` `validateSender`, PAYMENTS.md §5.3), and the latest block number to judge
//! ticket expiry. [`ChainClient`] reads them with plain `eth_call` / `eth_blockNumber` requests:
//!
//! 1. the TicketBroker address comes from the Controller,
//!    `getContract(keccak256("TicketBroker"))` (go-livepeer `eth/client.go` `setContracts`);
//! 2. `TicketBroker.getSenderInfo(address)` returns
//!    `((deposit, withdrawRound), (fundsRemaining, claimedInCurrentRound))`, a static tuple of
//!    four `uint256` words, decoded by hand into [`SenderInfo`].
//!
//! Amounts stay [`U256`] throughout: nothing is rounded or converted to floating point.

use crate::error::error_chain;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use livepeer_pm::{Address, B256, U256, keccak256};
use serde::Deserialize;
use serde_json::{Value, json};
use url::Url;

/// Default timeout of one JSON-RPC request, connection included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Function signature of the Controller's registry lookup; its selector is the first four bytes
/// of `keccak256` of this string (`0xe16c7d98`).
pub const GET_CONTRACT_SIGNATURE: &str = "getContract(bytes32)";

/// Function signature of the TicketBroker's sender lookup; its selector is the first four bytes
/// of `keccak256` of this string (`0xe1a589da`).
pub const GET_SENDER_INFO_SIGNATURE: &str = "getSenderInfo(address)";

/// Name under which the Controller registers the TicketBroker; the registry key is
/// `keccak256` of its UTF-8 bytes.
pub const TICKET_BROKER: &str = "TicketBroker";

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

    /// The largest ticket face value the sender accepts: `deposit / deposit_multiplier`, integer
    /// division as in `pm/sender.go`. `None` when the multiplier is 0 (go-livepeer refuses a
    /// multiplier that is not positive).
    #[must_use]
    pub fn max_face_value(&self, deposit_multiplier: u64) -> Option<U256> {
        self.deposit.checked_div(U256::from(deposit_multiplier))
    }
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

/// A minimal Ethereum JSON-RPC client over HTTP(S).
#[derive(Debug)]
pub struct ChainClient {
    http: reqwest::Client,
    url: Url,
    next_id: AtomicU64,
}

/// A JSON-RPC 2.0 response: exactly one of `result` and `error` is expected.
#[derive(Debug, Deserialize)]
struct RpcResponse {
    #[serde(default)]
    result: Option<Value>,
    #[serde(default)]
    error: Option<RpcErrorObject>,
}

#[derive(Debug, Deserialize)]
struct RpcErrorObject {
    code: i64,
    #[serde(default)]
    message: String,
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
                    url: url.to_string(),
                    reason: format!("cannot build HTTP client: {e}"),
                },
            )?;
        Ok(Self { http, url, next_id: AtomicU64::new(1) })
    }

    /// The JSON-RPC URL.
    #[must_use]
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// Sends one JSON-RPC request and returns its `result`.
    ///
    /// # Errors
    /// [`ChainError::Unreachable`] on transport failure, [`ChainError::Rpc`] on a JSON-RPC error
    /// object, [`ChainError::Malformed`] if the answer is not a JSON-RPC response.
    pub async fn request(&self, method: &'static str, params: Value) -> Result<Value, ChainError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let unreachable =
            |reason: String| ChainError::Unreachable { url: self.url.to_string(), reason };
        let response = self
            .http
            .post(self.url.clone())
            .json(&body)
            .send()
            .await
            .map_err(|e| unreachable(error_chain(&e)))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| unreachable(error_chain(&e)))?;
        let parsed: RpcResponse = match serde_json::from_slice(&bytes) {
            Ok(parsed) => parsed,
            // An error status without a JSON-RPC body is a transport problem (proxy, auth, 404).
            Err(_) if !status.is_success() => return Err(unreachable(format!("HTTP {status}"))),
            Err(e) => {
                return Err(ChainError::Malformed {
                    method,
                    detail: format!("not a JSON-RPC response: {e}"),
                });
            }
        };
        if let Some(error) = parsed.error {
            return Err(ChainError::Rpc { code: error.code, message: error.message });
        }
        match parsed.result {
            Some(result) => Ok(result),
            None => {
                Err(ChainError::Malformed { method, detail: "neither result nor error".to_owned() })
            }
        }
    }

    /// The chain id (`eth_chainId`).
    ///
    /// # Errors
    /// See [`ChainClient::request`]; [`ChainError::Malformed`] if the id is not a quantity.
    pub async fn chain_id(&self) -> Result<u64, ChainError> {
        let result = self.request("eth_chainId", json!([])).await?;
        parse_quantity("eth_chainId", &result)
    }

    /// The latest block number (`eth_blockNumber`). On Arbitrum this is the L2 block number.
    ///
    /// # Errors
    /// See [`ChainClient::request`]; [`ChainError::Malformed`] if the number is not a quantity.
    pub async fn block_number(&self) -> Result<u64, ChainError> {
        let result = self.request("eth_blockNumber", json!([])).await?;
        parse_quantity("eth_blockNumber", &result)
    }

    /// The latest block number in the chain that ticket expiry is counted in: on Arbitrum, the
    /// L1 block number carried in the latest L2 block (`l1BlockNumber`, what go-livepeer's
    /// time watcher reads); elsewhere the block number itself.
    ///
    /// # Errors
    /// See [`ChainClient::request`]; [`ChainError::Malformed`] for an answer without a number.
    pub async fn expiry_block_number(&self) -> Result<u64, ChainError> {
        const METHOD: &str = "eth_getBlockByNumber";
        let block = self.request(METHOD, json!(["latest", false])).await?;
        match block.get("l1BlockNumber") {
            Some(l1) => parse_quantity(METHOD, l1),
            None => parse_quantity(METHOD, block.get("number").unwrap_or(&Value::Null)),
        }
    }

    /// Calls a view function at `to` with ABI-encoded `data` against the latest block and
    /// returns the raw return data (`eth_call`).
    ///
    /// # Errors
    /// See [`ChainClient::request`]; [`ChainError::Malformed`] if the result is not hex data.
    pub async fn call(&self, to: Address, data: &[u8]) -> Result<Vec<u8>, ChainError> {
        let params = json!([
            {"to": to.to_string(), "data": format!("0x{}", hex::encode(data))},
            "latest"
        ]);
        let result = self.request("eth_call", params).await?;
        parse_data("eth_call", &result)
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
        let mut data = Vec::with_capacity(4 + 32);
        data.extend_from_slice(&selector(GET_CONTRACT_SIGNATURE));
        data.extend_from_slice(contract_key(name).as_slice());
        let out = self.call(controller, &data).await?;
        if out.is_empty() {
            return Err(ChainError::NoContract { address: controller });
        }
        let address = decode_address("getContract", &out)?;
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
        let mut data = Vec::with_capacity(4 + 32);
        data.extend_from_slice(&selector(GET_SENDER_INFO_SIGNATURE));
        data.extend_from_slice(sender.into_word().as_slice());
        let out = self.call(broker, &data).await?;
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

/// Parses JSON-RPC data (`"0x"` followed by an even number of hex digits).
fn parse_data(method: &'static str, value: &Value) -> Result<Vec<u8>, ChainError> {
    let malformed = |detail: String| ChainError::Malformed { method, detail };
    let text =
        value.as_str().ok_or_else(|| malformed(format!("expected hex data, got {value}")))?;
    let digits = text.strip_prefix("0x").ok_or_else(|| malformed("data lacks 0x".to_owned()))?;
    hex::decode(digits).map_err(|e| malformed(format!("bad hex data: {e}")))
}

/// The `index`th 32-byte word of ABI return data.
fn word(method: &'static str, data: &[u8], index: usize) -> Result<U256, ChainError> {
    let start = index * 32;
    data.get(start..start + 32).map(U256::from_be_slice).ok_or_else(|| ChainError::Malformed {
        method,
        detail: format!("{} bytes of return data, expected word {index}", data.len()),
    })
}

/// Decodes an ABI-encoded `address` return value: one word whose top 12 bytes are zero.
fn decode_address(method: &'static str, data: &[u8]) -> Result<Address, ChainError> {
    let malformed = |detail: String| ChainError::Malformed { method, detail };
    if data.len() != 32 {
        return Err(malformed(format!("{} bytes, expected 32", data.len())));
    }
    let (padding, address) = data.split_at(12);
    if padding.iter().any(|&b| b != 0) {
        return Err(malformed("address word has non-zero padding".to_owned()));
    }
    Ok(Address::from_slice(address))
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
    Ok(SenderInfo {
        deposit: word(METHOD, data, 0)?,
        withdraw_round: word(METHOD, data, 1)?,
        reserve: word(METHOD, data, 2)?,
        claimed_in_current_round: word(METHOD, data, 3)?,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn selectors_match_go_livepeer() {
        assert_eq!(selector(GET_CONTRACT_SIGNATURE), [0xe1, 0x6c, 0x7d, 0x98]);
        assert_eq!(selector(GET_SENDER_INFO_SIGNATURE), [0xe1, 0xa5, 0x89, 0xda]);
    }

    #[test]
    fn decodes_sender_info_words() {
        let mut data = vec![0u8; 128];
        data[31] = 7;
        data[63] = 1;
        data[64] = 0x80; // reserve = 2^255
        data[127] = 3;
        let info = decode_sender_info(&data).unwrap();
        assert_eq!(info.deposit, U256::from(7));
        assert!(info.is_unlocking());
        assert_eq!(info.reserve, U256::from(1) << 255);
        assert_eq!(info.claimed_in_current_round, U256::from(3));
        assert_eq!(info.max_face_value(2), Some(U256::from(3)));
        assert_eq!(info.max_face_value(0), None);
        assert!(matches!(decode_sender_info(&data[..96]), Err(ChainError::Malformed { .. })));
    }

    #[test]
    fn rejects_bad_quantities_and_addresses() {
        assert_eq!(parse_quantity("m", &json!("0x1b4")).unwrap(), 0x1b4);
        for bad in [json!("1b4"), json!("0x"), json!(12), json!("0x1ffffffffffffffff")] {
            assert!(parse_quantity("m", &bad).is_err(), "{bad}");
        }
        let mut word = [0u8; 32];
        word[0] = 1;
        assert!(decode_address("m", &word).is_err());
        assert!(parse_data("m", &json!("0xabc")).is_err());
    }
}
