//! The chain reads the admin API makes when asked (go-livepeer's `/ethBalance`,
//! `/tokenBalance`, `/ticketBrokerParams`), bounded so that no caller can turn them into an
//! unbounded stream of JSON-RPC calls: each answer is kept for [`FRESH_FOR`] and shared by
//! every caller that asks meanwhile, one read in flight at a time (those arriving during it
//! wait for its answer rather than send their own), and the LivepeerToken's address is
//! resolved through the Controller once, as go-livepeer resolves its contracts once at start.

use std::sync::Arc;
use std::time::Duration;

use alloy::eips::BlockId;
use livepeer_pm::{Address, U256};
use serde_json::json;
use tokio::sync::{Mutex, OnceCell};
use tokio::time::Instant;

use super::ChainStatus;
use crate::payment::chain::abi::TicketBroker;
use crate::payment::chain::{ChainError, selector};

/// How long a read answer is served again before the chain is asked anew: short enough that
/// a balance looks current to a person at a terminal, long enough that a flood of requests
/// costs one call a period.
pub(super) const FRESH_FOR: Duration = Duration::from_secs(2);

/// A failed read, shared by every caller that waited for it.
type ReadError = Arc<ChainError>;

/// What a read answered, for which key, and when.
type Answer<K> = (K, Instant, Result<U256, ReadError>);

/// The last answer of one read, per key (an account), kept for a while.
#[derive(Debug)]
pub(super) struct Recent<K> {
    /// The key, when the answer came, and the answer (an error too: an endpoint that is down
    /// is asked again only after the period, like one that answered).
    last: Mutex<Option<Answer<K>>>,
    fresh_for: Duration,
}

impl<K: PartialEq + Copy> Recent<K> {
    /// Nothing read yet; answers kept for `fresh_for`.
    pub(super) fn new(fresh_for: Duration) -> Self {
        Self { last: Mutex::new(None), fresh_for }
    }

    /// The answer for `key` read less than the period ago, or `read`'s, kept. The lock is
    /// held across `read` on purpose: that makes it the single read in flight.
    async fn get<F>(&self, key: K, read: F) -> Result<U256, ReadError>
    where
        F: Future<Output = Result<U256, ChainError>>,
    {
        let mut last = self.last.lock().await;
        if let Some((k, at, answer)) = &*last
            && *k == key
            && at.elapsed() < self.fresh_for
        {
            return answer.clone();
        }
        let answer = read.await.map_err(Arc::new);
        *last = Some((key, Instant::now(), answer.clone()));
        answer
    }
}

/// The admin API's reads of one chain: their last answers and the token's address.
#[derive(Debug)]
pub(super) struct Reads {
    eth: Recent<Address>,
    lpt: Recent<Address>,
    unlock_period: Recent<()>,
    /// The LivepeerToken, once the Controller has named it (a failure is not kept: the next
    /// read asks again).
    token: OnceCell<Address>,
}

impl Reads {
    /// Nothing read yet; answers kept for `fresh_for`.
    pub(super) fn new(fresh_for: Duration) -> Self {
        Self {
            eth: Recent::new(fresh_for),
            lpt: Recent::new(fresh_for),
            unlock_period: Recent::new(fresh_for),
            token: OnceCell::new(),
        }
    }
}

impl ChainStatus {
    /// `account`'s ETH balance in wei (`eth_getBalance`), read at most once a period.
    ///
    /// # Errors
    /// As [`ChainClient::request`](crate::payment::chain::ChainClient::request);
    /// [`ChainError::Malformed`] if the answer is no quantity.
    pub async fn eth_balance(&self, account: Address) -> Result<U256, Arc<ChainError>> {
        self.reads.eth.get(account, self.read_eth_balance(account)).await
    }

    async fn read_eth_balance(&self, account: Address) -> Result<U256, ChainError> {
        let params = json!([account.to_checksum(None), "latest"]);
        let answer = self.client.request("eth_getBalance", params).await?;
        let malformed = || ChainError::Malformed {
            method: "eth_getBalance",
            detail: format!("not a quantity: {answer}"),
        };
        let hex = answer.as_str().and_then(|s| s.strip_prefix("0x")).ok_or_else(malformed)?;
        U256::from_str_radix(hex, 16).map_err(|_| malformed())
    }

    /// `account`'s LPT balance in its smallest unit: `balanceOf` of the LivepeerToken the
    /// Controller registers, read at most once a period.
    ///
    /// # Errors
    /// As [`ChainClient::contract_address`](crate::payment::chain::ChainClient::contract_address)
    /// and [`ChainClient::call`](crate::payment::chain::ChainClient::call);
    /// [`ChainError::Malformed`] if the answer is not a word.
    pub async fn token_balance(&self, account: Address) -> Result<U256, Arc<ChainError>> {
        self.reads.lpt.get(account, self.read_token_balance(account)).await
    }

    async fn read_token_balance(&self, account: Address) -> Result<U256, ChainError> {
        let resolve = || self.client.contract_address(self.controller, "LivepeerToken");
        let token = *self.reads.token.get_or_try_init(resolve).await?;
        let mut data = selector("balanceOf(address)").to_vec();
        data.extend_from_slice(&[0; 12]);
        data.extend_from_slice(account.as_slice());
        let out = self.client.call(token, &data).await?;
        let word = out.get(..32).ok_or_else(|| ChainError::Malformed {
            method: "eth_call",
            detail: format!("balanceOf answered {} bytes", out.len()),
        })?;
        Ok(U256::from_be_slice(word))
    }

    /// The TicketBroker's unlock period, in rounds, read at most once a period.
    ///
    /// # Errors
    /// As [`ChainClient::call`](crate::payment::chain::ChainClient::call);
    /// [`ChainError::NoContract`] and [`ChainError::Malformed`] for an answer that is not a
    /// word.
    pub async fn unlock_period(&self) -> Result<U256, Arc<ChainError>> {
        let read = self.client.view(
            self.ticket_broker,
            &TicketBroker::unlockPeriodCall {},
            BlockId::latest(),
        );
        self.reads.unlock_period.get((), read).await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex as StdMutex;

    use serde_json::Value;

    use super::*;
    use crate::config::Network;
    use crate::payment::chain::ChainClient;

    /// The JSON-RPC calls a fake endpoint answered, by method (and `eth_call` by selector).
    type Counts = Arc<StdMutex<HashMap<String, usize>>>;

    const TOKEN: Address = Address::repeat_byte(0x70);

    /// One call's answer: a balance of 5, the token's address, an unlock period of 2.
    fn answer(call: &Value, counts: &Counts) -> Value {
        let method = call["method"].as_str().unwrap_or_default();
        let tx = &call["params"][0];
        let input = tx["input"].as_str().or(tx["data"].as_str()).unwrap_or_default();
        let name = match (method, input.get(..10)) {
            ("eth_call", Some(sel)) => format!("eth_call {sel}"),
            _ => method.to_owned(),
        };
        *counts.lock().unwrap().entry(name.clone()).or_default() += 1;
        let word = |w: U256| format!("0x{}", hex::encode(w.to_be_bytes::<32>()));
        let result = match name.as_str() {
            "eth_getBalance" => json!("0x5"),
            "eth_call 0xe16c7d98" => json!(word(U256::from_be_slice(TOKEN.into_word().as_slice()))),
            "eth_call 0x70a08231" => json!(word(U256::from(5))),
            "eth_call 0x20d3a0b4" => json!(word(U256::from(2))),
            _ => {
                return json!({"jsonrpc": "2.0", "id": call["id"], "error": {"code": -32601, "message": name}});
            }
        };
        json!({"jsonrpc": "2.0", "id": call["id"], "result": result})
    }

    /// A fake JSON-RPC endpoint taking 50 ms a call (so that concurrent reads overlap), and
    /// a [`ChainStatus`] on it whose answers are kept for `fresh_for`.
    async fn chain(fresh_for: Duration) -> (ChainStatus, Counts) {
        let counts = Counts::default();
        let seen = counts.clone();
        let rpc = axum::Router::new().route(
            "/",
            axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
                let seen = seen.clone();
                async move {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    let out = match &body {
                        Value::Array(calls) => calls.iter().map(|c| answer(c, &seen)).collect(),
                        call => answer(call, &seen),
                    };
                    axum::Json(out)
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap()).parse().unwrap();
        tokio::spawn(async move { axum::serve(listener, rpc).await });
        let client = ChainClient::new(url).unwrap();
        let ids = (Address::repeat_byte(1), Address::repeat_byte(2), None);
        let mut status = ChainStatus::new(&Network::Custom("t".into()), 1, ids, &client);
        status.reads = Reads::new(fresh_for);
        (status, counts)
    }

    fn count(counts: &Counts, name: &str) -> usize {
        counts.lock().unwrap().get(name).copied().unwrap_or(0)
    }

    #[tokio::test]
    async fn a_flood_of_reads_makes_one_call_a_period() {
        let (chain, counts) = chain(FRESH_FOR).await;
        let account = Address::repeat_byte(9);
        let flood = (0..20).map(|_| chain.eth_balance(account));
        for answer in futures_util::future::join_all(flood).await {
            assert_eq!(answer.unwrap(), U256::from(5));
        }
        assert_eq!(count(&counts, "eth_getBalance"), 1, "one read in flight, shared");
        for _ in 0..5 {
            assert_eq!(chain.token_balance(account).await.unwrap(), U256::from(5));
            assert_eq!(chain.unlock_period().await.unwrap(), U256::from(2));
        }
        assert_eq!(count(&counts, "eth_call 0x70a08231"), 1, "balanceOf kept");
        assert_eq!(count(&counts, "eth_call 0x20d3a0b4"), 1, "unlockPeriod kept");
        // Another account is another read.
        chain.eth_balance(Address::repeat_byte(8)).await.unwrap();
        assert_eq!(count(&counts, "eth_getBalance"), 2);
    }

    #[tokio::test]
    async fn the_token_is_resolved_through_the_controller_once() {
        let (chain, counts) = chain(Duration::ZERO).await;
        let account = Address::repeat_byte(9);
        for _ in 0..3 {
            assert_eq!(chain.token_balance(account).await.unwrap(), U256::from(5));
        }
        assert_eq!(count(&counts, "eth_call 0x70a08231"), 3, "nothing kept: every read asks");
        assert_eq!(count(&counts, "eth_call 0xe16c7d98"), 1, "getContract once");
    }
}
