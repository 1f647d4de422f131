//! BYOC job settings: body and timeout bounds, attempts, the job-token refresh, and the price
//! caps per capability (folded into the orchestrator requirements, under capability 37).

use std::collections::HashMap;
use std::time::Duration;

use super::section::section;
use super::values::positive_duration;
use super::{ConfigError, bad};
use crate::byoc::ByocConfig;
use crate::orchestrator::price::Price;

section! {
    /// BYOC job settings.
    pub struct Byoc {
        /// Largest BYOC request body in bytes, streamed to the orchestrator; larger ones get
        /// 413 [default: 1073741824].
        #[arg(long, env = "LP_BYOCMAXBODYBYTES")]
        pub byoc_max_body_bytes: Option<u64>,
        /// Most orchestrators tried per BYOC job [default: 3].
        #[arg(long, env = "LP_BYOCMAXATTEMPTS")]
        pub byoc_max_attempts: Option<u32>,
        /// Largest `timeout_seconds` a BYOC job may ask for [default: 3600].
        #[arg(long, env = "LP_BYOCMAXTIMEOUTSECONDS")]
        pub byoc_max_timeout_seconds: Option<u64>,
        /// Max price per BYOC capability, wei per second: `name=wei` or `name=num/den`,
        /// comma-separated; capabilities not listed take any price.
        #[arg(long, env = "LP_BYOCMAXPRICE")]
        pub byoc_max_price: Option<String>,
        /// How often BYOC job tokens are fetched from every orchestrator [default: 30s].
        #[arg(long, env = "LP_BYOCTOKENREFRESHINTERVAL")]
        pub byoc_token_refresh_interval: Option<String>,
        /// Deadline of one BYOC job-token call [default: 1s].
        #[arg(long, env = "LP_BYOCTOKENTIMEOUT")]
        pub byoc_token_timeout: Option<String>,
        /// How often a BYOC stream's orchestrator is paid (go-livepeer: 50s) [default: 50s].
        #[arg(long, env = "LP_BYOCPAYMENTINTERVAL")]
        pub byoc_payment_interval: Option<String>,
        /// Most BYOC streams at once [default: 100].
        #[arg(long, env = "LP_BYOCMAXSTREAMS")]
        pub byoc_max_streams: Option<usize>,
    }
}

/// The bytes of a body held so that a failed attempt can be retried elsewhere.
const REPLAY_BYTES: usize = 1 << 20;

impl Byoc {
    /// The validated settings, and the price caps per capability name.
    pub(super) fn validate(self) -> Result<(ByocConfig, HashMap<String, Price>), ConfigError> {
        let max_body_bytes = self.byoc_max_body_bytes.unwrap_or(1 << 30);
        if max_body_bytes == 0 {
            return Err(bad("--byoc-max-body-bytes", "must be at least 1"));
        }
        let max_attempts = self.byoc_max_attempts.unwrap_or(3);
        if max_attempts == 0 {
            return Err(bad("--byoc-max-attempts", "must be at least 1"));
        }
        let max_timeout_seconds = self.byoc_max_timeout_seconds.unwrap_or(3600);
        // A week at most, as every duration setting: the deadlines a job's timeout makes are
        // `Instant`s, which an addition of `u64::MAX` seconds would overflow.
        if max_timeout_seconds == 0 || max_timeout_seconds > 7 * 24 * 3600 {
            return Err(bad("--byoc-max-timeout-seconds", "must be 1 to 604800 (7 days)"));
        }
        let refresh = positive_duration(
            "--byoc-token-refresh-interval",
            self.byoc_token_refresh_interval,
            Duration::from_secs(30),
        )?;
        let token_timeout = positive_duration(
            "--byoc-token-timeout",
            self.byoc_token_timeout,
            Duration::from_secs(1),
        )?;
        let payment_interval = positive_duration(
            "--byoc-payment-interval",
            self.byoc_payment_interval,
            Duration::from_secs(50),
        )?;
        let max_streams = self.byoc_max_streams.unwrap_or(100);
        if max_streams == 0 {
            return Err(bad("--byoc-max-streams", "must be at least 1"));
        }
        let caps = parse_caps(self.byoc_max_price.as_deref().unwrap_or(""))?;
        let config = ByocConfig {
            max_body_bytes,
            max_attempts,
            max_timeout_seconds,
            replay_bytes: REPLAY_BYTES,
            token_refresh: refresh,
            token_timeout,
            token_concurrency: 16,
            payment_interval,
            max_streams,
        };
        Ok((config, caps))
    }
}

/// `--byoc-max-price`: `name=wei` or `name=num/den`, comma-separated.
fn parse_caps(text: &str) -> Result<HashMap<String, Price>, ConfigError> {
    let setting = "--byoc-max-price";
    let mut caps = HashMap::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let Some((name, price)) = item.split_once('=') else {
            return Err(bad(setting, format!("{item:?} is not name=wei")));
        };
        let (num, den) = price.trim().split_once('/').unwrap_or((price.trim(), "1"));
        let parse = |s: &str| s.trim().parse::<i64>().ok();
        let (Some(num), Some(den)) = (parse(num), parse(den)) else {
            return Err(bad(setting, format!("{item:?}: the price is not wei or num/den")));
        };
        let price = Price::new(num, den).map_err(|e| bad(setting, format!("{item:?}: {e}")))?;
        caps.insert(name.trim().to_owned(), price);
    }
    Ok(caps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_prices_parse_per_capability() {
        let caps = parse_caps("text-reversal=10, echo=1/1000").unwrap();
        assert_eq!(caps["text-reversal"], Price::new(10, 1).unwrap());
        assert_eq!(caps["echo"], Price::new(1, 1000).unwrap());
        assert!(parse_caps("x").is_err());
        assert!(parse_caps("x=y").is_err());
        assert!(parse_caps("x=1/0").is_err());
        assert!(parse_caps("").unwrap().is_empty());
    }
}
