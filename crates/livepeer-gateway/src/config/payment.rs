//! Paying orchestrators: the sender's limits, the gateway's key, the chain it reads its funds
//! from, and the remote signer (served to other gateways, or used instead of a local key).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;
use livepeer_pm::{LocalSigner, U256};
use secrecy::SecretString;
use url::Url;

use super::network::{Network, ai_service_registry};
use super::section::section;
use super::values::{headers, optional_url, positive_duration};
use super::{ChainConfig, ConfigError, bad, key};
use crate::payment::PaymentLimits;

section! {
    /// Payment and Ethereum settings.
    pub struct Payment {
        /// The largest ticket face value accepted is deposit / this [default: 1].
        #[arg(long, env = "LP_DEPOSITMULTIPLIER")]
        pub deposit_multiplier: Option<u64>,
        /// Ethereum JSON-RPC URL, to read the gateway's TicketBroker deposit and reserve.
        #[arg(long, env = "LP_ETHURL", hide_env_values = true)]
        pub eth_url: Option<String>,
        /// The Livepeer Controller contract address (required with --eth-url).
        #[arg(long, env = "LP_ETHCONTROLLER")]
        pub eth_controller: Option<String>,
        /// How often the deposit and reserve are read again [default: 30s].
        #[arg(long, env = "LP_SENDERINFOREFRESHINTERVAL")]
        pub sender_info_refresh_interval: Option<String>,
        /// Refuse orchestrators whose ticket EV exceeds this many wei [default: 3000000000000].
        #[arg(long, env = "LP_MAXTICKETEV")]
        pub max_ticket_ev: Option<u128>,
        /// Refuse payments whose total EV exceeds this many wei [default: 20000000000000].
        #[arg(long, env = "LP_MAXTOTALEV")]
        pub max_total_ev: Option<u128>,
        /// Ethereum V3 keystore file, or a directory of them (see --eth-acct-addr).
        #[arg(long, env = "LP_ETHKEYSTOREPATH")]
        pub eth_keystore_path: Option<PathBuf>,
        /// Keystore password, or the path of a file holding it (go-livepeer's rule: a readable
        /// file's trimmed content; an empty file means the path itself).
        #[arg(long, env = "LP_ETHPASSWORD", hide_env_values = true)]
        pub eth_password: Option<String>,
        /// Which account of a keystore directory to use.
        #[arg(long, env = "LP_ETHACCTADDR")]
        pub eth_acct_addr: Option<String>,
        /// Read service URIs from the AI subnet's ServiceRegistry (`true`, go-livepeer's
        /// `-aiServiceRegistry`), or from the registry at this address.
        #[arg(long, env = "LP_AISERVICEREGISTRY", num_args = 0..=1, default_missing_value = "true")]
        pub ai_service_registry: Option<String>,
        /// How often on-chain discovery walks the transcoder pool again [default: 10m].
        #[arg(long, env = "LP_CHAINPOOLREFRESHINTERVAL")]
        pub chain_pool_refresh_interval: Option<String>,
        /// Warn (admin status) when the reserve covers fewer hours than this at the current
        /// spend [default: 24].
        #[arg(long, env = "LP_RESERVEWARNINGHOURS")]
        pub reserve_warning_hours: Option<u64>,
    }
}

/// The validated payment settings.
pub(super) struct PaymentConfig {
    pub(super) signer: Option<Arc<LocalSigner>>,
    pub(super) limits: PaymentLimits,
    pub(super) chain: Option<ChainConfig>,
}

impl Payment {
    /// The sender limits alone. `Payment::default().limits()` is the one source of the default
    /// limits (PAYMENTS.md §5.3: go-livepeer's 3000 and 20000 gwei, multiplier 1).
    pub(crate) fn limits(&self) -> Result<PaymentLimits, ConfigError> {
        let deposit_multiplier = self.deposit_multiplier.unwrap_or(1);
        if deposit_multiplier == 0 {
            return Err(bad("--deposit-multiplier", "must be at least 1"));
        }
        let limits = PaymentLimits {
            deposit_multiplier,
            max_ticket_ev: U256::from(
                self.max_ticket_ev.unwrap_or(PaymentLimits::DEFAULT_MAX_TICKET_EV),
            ),
            max_total_ev: U256::from(
                self.max_total_ev.unwrap_or(PaymentLimits::DEFAULT_MAX_TOTAL_EV),
            ),
        };
        if limits.max_total_ev < limits.max_ticket_ev {
            return Err(bad("--max-total-ev", "must be at least --max-ticket-ev"));
        }
        Ok(limits)
    }

    /// `eth_key` is `LP_ETH_KEY`, read by the caller so that tests need no environment.
    /// `network` is `--network`, parsed here because a custom network needs `--eth-controller`.
    pub(super) fn validate(
        self,
        eth_key: Option<SecretString>,
        network: Option<String>,
    ) -> Result<PaymentConfig, ConfigError> {
        let signer = key::resolve_signer(
            self.eth_keystore_path.clone(),
            self.eth_password.clone(),
            self.eth_acct_addr.clone(),
            eth_key,
        )?;
        let limits = self.limits()?;
        let network = Network::parse(network.as_deref(), self.eth_controller.is_some())?;
        let chain = self.chain(network)?;
        if chain.is_some() && signer.is_none() {
            return Err(bad("--eth-url", "needs the gateway's key (--eth-keystore-path)"));
        }
        Ok(PaymentConfig { signer, limits, chain })
    }

    /// The chain connection: `--eth-url` with the preset or given Controller. An on-chain
    /// network needs `--eth-url`; off-chain, `--eth-url` alone only reads the sender's funds.
    fn chain(self, network: Network) -> Result<Option<ChainConfig>, ConfigError> {
        let Some(url) = optional_url("--eth-url", self.eth_url)? else {
            if network.is_onchain() {
                let message = format!("{} needs --eth-url", network.name());
                return Err(bad("--network", message));
            }
            return Ok(None);
        };
        let controller = match (self.eth_controller, network.controller()) {
            (Some(text), _) => text
                .trim()
                .parse::<livepeer_pm::Address>()
                .map_err(|e| bad("--eth-controller", format!("{text:?}: {e}")))?,
            (None, Some(preset)) => preset,
            (None, None) => return Err(bad("--eth-controller", "required with --eth-url")),
        };
        let refresh = positive_duration(
            "--sender-info-refresh-interval",
            self.sender_info_refresh_interval,
            Duration::from_secs(30),
        )?;
        let pool_refresh = positive_duration(
            "--chain-pool-refresh-interval",
            self.chain_pool_refresh_interval,
            Duration::from_secs(600),
        )?;
        Ok(Some(ChainConfig {
            url,
            controller,
            refresh,
            ai_service_registry: ai_service_registry(self.ai_service_registry.as_deref())?,
            pool_refresh,
            reserve_warning_hours: self.reserve_warning_hours.unwrap_or(24),
            network,
        }))
    }
}

section! {
    /// Remote signer settings.
    pub struct Signer {
        /// Serve the remote-signer routes (`/sign-orchestrator-info`, `/discover-orchestrators`,
        /// `/generate-live-payment`, `/sign-byoc-job`) for other gateways and SDK clients; needs
        /// the key and --remote-signer-api-key.
        #[arg(long, env = "LP_REMOTESIGNER", num_args = 0..=1, default_missing_value = "true")]
        pub remote_signer: Option<bool>,
        /// API key clients of the signer routes must present (`Authorization: Bearer <key>`).
        #[arg(long, env = "LP_REMOTESIGNERAPIKEY", hide_env_values = true)]
        pub remote_signer_api_key: Option<String>,
        /// Use a remote signer for this gateway's identity (and, with no orchestrators configured,
        /// its discovery) instead of a local key.
        #[arg(long, env = "LP_REMOTESIGNERURL", hide_env_values = true)]
        pub remote_signer_url: Option<String>,
        /// Headers sent to the remote signer, `name:value,name2:value2`.
        #[arg(long, env = "LP_REMOTESIGNERHEADERS", hide_env_values = true)]
        pub remote_signer_headers: Option<String>,
    }
}

/// A remote signer this gateway takes its identity (and payments) from, validated once.
#[derive(Debug, Clone)]
pub struct RemoteSigner {
    /// Base URL, ending in `/` so that route names join onto it.
    pub url: Url,
    /// Headers sent with every call (values marked sensitive).
    pub headers: HeaderMap,
}

impl RemoteSigner {
    /// Parses `--remote-signer-url` (a scheme-less URL means https, as in go-livepeer) and
    /// `--remote-signer-headers` (`name:value,…`).
    pub fn parse(url: &str, headers_text: &str) -> Result<Self, ConfigError> {
        let u = url.trim();
        let text = if u.contains("://") { u.to_owned() } else { format!("https://{u}") };
        let mut url =
            Url::parse(&text).map_err(|e| bad("--remote-signer-url", format!("not a URL: {e}")))?;
        if !url.path().ends_with('/') {
            let path = format!("{}/", url.path());
            url.set_path(&path);
        }
        let headers = headers("--remote-signer-headers", Some(headers_text.to_owned()))?;
        Ok(Self { url, headers })
    }
}

impl Signer {
    /// The API key to serve the signer routes with (if serving), and the remote signer to use
    /// (if any). `has_key`: whether the gateway has a local key.
    pub(super) fn validate(
        self,
        has_key: bool,
    ) -> Result<(Option<SecretString>, Option<RemoteSigner>), ConfigError> {
        let serve = if self.remote_signer.unwrap_or(false) {
            if !has_key {
                let message = "needs the gateway's key (--eth-keystore-path)";
                return Err(bad("--remote-signer", message));
            }
            // go-livepeer refuses a signer without auth on a public address; we never serve one
            // without an API key.
            let key =
                self.remote_signer_api_key.filter(|k| k.trim().len() >= 16).ok_or_else(|| {
                    let message = "required with --remote-signer (16 characters or more)";
                    bad("--remote-signer-api-key", message)
                })?;
            Some(SecretString::from(key))
        } else {
            None
        };
        let remote = match self.remote_signer_url.filter(|u| !u.trim().is_empty()) {
            None => None,
            Some(_) if has_key => {
                let message = "use either a remote signer or a local key, not both";
                return Err(bad("--remote-signer-url", message));
            }
            Some(u) => {
                Some(RemoteSigner::parse(&u, &self.remote_signer_headers.unwrap_or_default())?)
            }
        };
        Ok((serve, remote))
    }
}
