//! Where orchestrators come from and how they are called (discovery), and how a failing one is
//! set aside and which one is chosen (selection).

use std::time::Duration;

use url::Url;

use super::section::{section, string_or_list};
use super::values::{duration, optional_url, positive_duration};
use super::{ConfigError, OrchSource, bad};
use crate::orchestrator::health::EjectPolicy;
use crate::orchestrator::selection::Weights;
use crate::orchestrator::{TlsTrust, normalize_orch_addr};

section! {
    /// Discovery settings.
    pub struct Discovery {
        /// Network: `offchain`, `arbitrum-one-mainnet`, `mainnet`, or a custom name with
        /// --eth-controller [default: offchain].
        #[arg(long, env = "LP_NETWORK")]
        pub network: Option<String>,
        /// Comma-separated orchestrator addresses (`host`, `host:port`, `:port` or a URL).
        #[arg(long, env = "LP_ORCHADDR")]
        #[serde(default, deserialize_with = "string_or_list")]
        pub orch_addr: Option<String>,
        /// Discovery webhook returning `[{"address": "...", "score": n}]`; takes precedence over --orch-addr.
        #[arg(long, env = "LP_ORCHWEBHOOKURL", hide_env_values = true)]
        pub orch_webhook_url: Option<String>,
        /// Deadline of each GetOrchestrator call, e.g. `2s` or `500ms` [default: 3s].
        #[arg(long, env = "LP_DISCOVERYTIMEOUT")]
        pub discovery_timeout: Option<String>,
        /// TCP + TLS connect deadline for orchestrators [default: 2s].
        #[arg(long, env = "LP_ORCHCONNECTTIMEOUT")]
        pub orch_connect_timeout: Option<String>,
        /// How often every orchestrator's info is refreshed [default: 60s].
        #[arg(long, env = "LP_ORCHREFRESHINTERVAL")]
        pub orch_refresh_interval: Option<String>,
        /// How often the discovery webhook is fetched again [default: 60s].
        #[arg(long, env = "LP_WEBHOOKREFRESHINTERVAL")]
        pub webhook_refresh_interval: Option<String>,
        /// Orchestrator TLS certificates: `accept-any` (as go-livepeer) or `pin-first` [default: accept-any].
        #[arg(long, env = "LP_ORCHTLS")]
        pub orch_tls: Option<String>,
        /// Most GetOrchestrator calls in flight at once [default: 256].
        #[arg(long, env = "LP_DISCOVERYCONCURRENCY")]
        pub discovery_concurrency: Option<usize>,
    }
}

/// The validated discovery settings.
pub(super) struct DiscoveryConfig {
    pub(super) orchestrators: OrchSource,
    pub(super) discovery_timeout: Duration,
    pub(super) connect_timeout: Duration,
    pub(super) refresh_interval: Duration,
    pub(super) webhook_refresh_interval: Duration,
    pub(super) orch_tls: TlsTrust,
    pub(super) discovery_concurrency: usize,
}

impl Discovery {
    pub(super) fn validate(self) -> Result<DiscoveryConfig, ConfigError> {
        // `--network` is validated with the chain settings (config/network.rs).
        let orchestrators = match optional_url("--orch-webhook-url", self.orch_webhook_url)? {
            Some(url) => OrchSource::Webhook(url),
            None => OrchSource::Static(orch_list(&self.orch_addr.unwrap_or_default())?),
        };
        let orch_tls = match self.orch_tls.as_deref() {
            None | Some("accept-any") => TlsTrust::AcceptAny,
            Some("pin-first") => TlsTrust::PinFirst,
            Some(other) => {
                let message = format!("{other:?}: expected accept-any or pin-first");
                return Err(bad("--orch-tls", message));
            }
        };
        let discovery_concurrency = self.discovery_concurrency.unwrap_or(256);
        // Bounded above as every count setting: a semaphore of more permits than it can
        // count panics at start.
        if !(1..=65_536).contains(&discovery_concurrency) {
            return Err(bad("--discovery-concurrency", "must be 1 to 65536"));
        }
        Ok(DiscoveryConfig {
            orchestrators,
            discovery_timeout: positive_duration(
                "--discovery-timeout",
                self.discovery_timeout,
                Duration::from_secs(3),
            )?,
            connect_timeout: positive_duration(
                "--orch-connect-timeout",
                self.orch_connect_timeout,
                Duration::from_secs(2),
            )?,
            refresh_interval: positive_duration(
                "--orch-refresh-interval",
                self.orch_refresh_interval,
                Duration::from_secs(60),
            )?,
            webhook_refresh_interval: duration(
                "--webhook-refresh-interval",
                self.webhook_refresh_interval,
                Duration::from_secs(60),
            )?,
            orch_tls,
            discovery_concurrency,
        })
    }
}

/// `--orch-addr`: normalized, duplicates dropped, order kept.
fn orch_list(list: &str) -> Result<Vec<Url>, ConfigError> {
    let mut urls = Vec::new();
    for part in list.split(',').filter(|p| !p.trim().is_empty()) {
        let url = normalize_orch_addr(part).map_err(|e| bad("--orch-addr", e))?;
        if !urls.contains(&url) {
            urls.push(url);
        }
    }
    Ok(urls)
}

section! {
    /// Ejection and selection settings.
    pub struct Selection {
        /// First ejection cooldown of a failing orchestrator [default: 2s].
        #[arg(long, env = "LP_EJECTBASE")]
        pub eject_base: Option<String>,
        /// Longest ejection cooldown [default: 60s].
        #[arg(long, env = "LP_EJECTMAX")]
        pub eject_max: Option<String>,
        /// How often due probes of ejected orchestrators run [default: 250ms].
        #[arg(long, env = "LP_PROBEINTERVAL")]
        pub probe_interval: Option<String>,
        /// Selection cost per millisecond of latency [default: 1.0].
        #[arg(long, env = "LP_SELECTLATENCYWEIGHT")]
        pub select_latency_weight: Option<f64>,
        /// Selection cost per multiple of the cheapest price [default: 50.0].
        #[arg(long, env = "LP_SELECTPRICEWEIGHT")]
        pub select_price_weight: Option<f64>,
        /// Share of candidate draws weighted by on-chain stake, 0 to 1 (go-livepeer's stake
        /// weight); the rest are uniform [default: 0].
        #[arg(long, env = "LP_SELECTSTAKEWEIGHT")]
        pub select_stake_weight: Option<f64>,
    }
}

impl Selection {
    pub(super) fn validate(self) -> Result<(EjectPolicy, Duration, Weights), ConfigError> {
        let eject = EjectPolicy {
            base: duration("--eject-base", self.eject_base, Duration::from_secs(2))?,
            max: duration("--eject-max", self.eject_max, Duration::from_secs(60))?,
        };
        if eject.base.is_zero() || eject.max < eject.base {
            return Err(bad("--eject-max", "need 0 < --eject-base <= --eject-max"));
        }
        let weights = Weights {
            latency: self.select_latency_weight.unwrap_or(1.0),
            price: self.select_price_weight.unwrap_or(50.0),
            stake: self.select_stake_weight.unwrap_or(0.0),
        };
        if !(0.0..=1.0).contains(&weights.stake) {
            return Err(bad("--select-stake-weight", "must be between 0 and 1"));
        }
        for (name, w) in
            [("--select-latency-weight", weights.latency), ("--select-price-weight", weights.price)]
        {
            if !w.is_finite() || w < 0.0 {
                return Err(bad(name, "must be a non-negative number"));
            }
        }
        let probe =
            positive_duration("--probe-interval", self.probe_interval, Duration::from_millis(250))?;
        Ok((eject, probe, weights))
    }
}
