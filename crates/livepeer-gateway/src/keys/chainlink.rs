//! The ETH/USD rate from a Chainlink price feed on chain (`--usd-per-eth-feed`, read through
//! `--eth-url`): the feed's `latestRoundData()` and `decimals()` by `eth_call`, the answer kept
//! as an exact ratio with the round's update time, read again every [`REFRESH`] and refused
//! once older than the configured maximum age (prices in wei are then not charged: 503).
//!
//! Kept apart from `payment::chain` (the TicketBroker reader): two `eth_call`s over JSON-RPC
//! are all this needs.

use std::sync::{Mutex, Weak};
use std::time::Duration;

use livepeer_pm::{Address, Ratio, U256, U512};
use serde_json::{Value, json};

/// How often the feed is read.
pub const REFRESH: Duration = Duration::from_secs(60);
/// `latestRoundData()`.
const LATEST_ROUND_DATA: &str = "0xfeaf968c";
/// `decimals()`.
const DECIMALS: &str = "0x313ce567";

/// Largest answer read: both calls answer a few hundred bytes.
const MAX_ANSWER: usize = 64 * 1024;

/// A Chainlink ETH/USD feed and its last answer.
#[derive(Debug)]
pub struct Feed {
    /// The JSON-RPC URL.
    pub rpc_url: url::Url,
    /// The feed (aggregator proxy) contract.
    pub address: Address,
    /// The oldest round update accepted, in seconds.
    pub max_age_secs: i64,
    last: Mutex<Option<(Ratio, i64)>>,
}

/// How far ahead of the gateway's clock a feed's `updatedAt` may be (clocks differ a little).
pub const FUTURE_SKEW: i64 = 300;

impl Feed {
    /// A feed not read yet.
    pub fn new(rpc_url: url::Url, address: Address, max_age: Duration) -> Self {
        let max_age_secs = i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX);
        Self { rpc_url, address, max_age_secs, last: Mutex::new(None) }
    }

    /// Sets the last answer (`None`: as if never read), for tests of what reads the feed.
    #[cfg(test)]
    pub(crate) fn set(&self, answer: Option<(Ratio, i64)>) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = answer;
    }

    /// USD per ETH, when the last answer is at most the maximum age old at `now` (unix s).
    /// An update dated more than [`FUTURE_SKEW`] ahead of `now` is no answer: it would
    /// otherwise stay young for good.
    pub fn rate(&self, now: i64) -> Option<Ratio> {
        let last = *self.last.lock().unwrap_or_else(|p| p.into_inner());
        let fresh = |at: i64| {
            let age = now.saturating_sub(at);
            (-FUTURE_SKEW..=self.max_age_secs).contains(&age)
        };
        last.filter(|(_, at)| fresh(*at)).map(|(r, _)| r)
    }

    /// Reads the feed once and keeps its answer.
    pub async fn read(&self, http: &reqwest::Client) -> Result<(), String> {
        let decimals = word(&self.call(http, DECIMALS).await?, 0)?;
        let round = self.call(http, LATEST_ROUND_DATA).await?;
        let (answer, updated_at) = (word(&round, 1)?, word(&round, 3)?);
        // int256: a negative answer has its top bit set; ETH/USD is never below 0.
        if answer.bit(255) || answer.is_zero() {
            return Err("the feed answered a price of 0 or less".into());
        }
        let places: u64 = decimals.try_into().map_err(|_| "decimals out of range")?;
        if places > 36 {
            return Err(format!("{places} decimals"));
        }
        let den = U512::from(10u64).pow(U512::from(places));
        let rate = Ratio::new(U512::from(answer), den).map_err(|e| e.to_string())?;
        let at = i64::try_from(updated_at).map_err(|_| "updatedAt out of range")?;
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some((rate, at));
        Ok(())
    }

    async fn call(&self, http: &reqwest::Client, data: &str) -> Result<Vec<u8>, String> {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "eth_call",
            "params": [{"to": self.address.to_string(), "data": data}, "latest"]});
        let resp = http.post(self.rpc_url.clone()).json(&body).send().await;
        // Without the URL: an RPC provider's URL carries its API key, and errors are logged.
        let resp = resp.map_err(|e| {
            let why = crate::error::error_chain(&e.without_url());
            format!("{}: {why}", crate::outbound::shown(&self.rpc_url))
        })?;
        let answer: Value = crate::outbound::read_json(resp, MAX_ANSWER)
            .await
            .map_err(|e| format!("not JSON-RPC: {e}"))?;
        if let Some(error) = answer.get("error") {
            return Err(format!("eth_call failed: {error}"));
        }
        let hex = answer["result"].as_str().ok_or("eth_call answered no result")?;
        hex::decode(hex.trim_start_matches("0x")).map_err(|e| format!("eth_call result: {e}"))
    }
}

/// The `i`th 32-byte word of an ABI-encoded answer.
fn word(data: &[u8], i: usize) -> Result<U256, String> {
    let bytes = data.get(i * 32..(i + 1) * 32).ok_or("eth_call answer too short")?;
    Ok(U256::from_be_slice(bytes))
}

/// Reads `feed` every [`REFRESH`] until it is dropped; a failed read keeps the last answer
/// (which ages out after the maximum age).
pub async fn refresh(feed: Weak<Feed>, http: reqwest::Client) {
    loop {
        tokio::time::sleep(REFRESH).await;
        let Some(feed) = feed.upgrade() else { return };
        if let Err(e) = feed.read(&http).await {
            tracing::warn!(error = %e, "cannot read the ETH/USD feed; keeping the last answer");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_updated_at(at: i64) -> Feed {
        let url = url::Url::parse("http://127.0.0.1:1/").unwrap();
        let feed = Feed::new(url, Address::ZERO, Duration::from_secs(3600));
        *feed.last.lock().unwrap() = Some((Ratio::from_u64(3000), at));
        feed
    }

    #[test]
    fn an_answer_is_used_while_young_and_never_when_dated_ahead() {
        let now = 1_800_000_000;
        assert!(feed_updated_at(now - 3600).rate(now).is_some(), "at the maximum age");
        assert!(feed_updated_at(now - 3601).rate(now).is_none(), "older");
        assert!(feed_updated_at(now + 60).rate(now).is_some(), "a little ahead: clocks differ");
        // Dated far ahead, it would have stayed young for good.
        let ahead = feed_updated_at(now + 1_000_000_000);
        assert!(ahead.rate(now).is_none());
        assert!(ahead.rate(now + 3600 * 24).is_none());
    }
}
