//! Configuration: command-line flags, `LP_*` environment variables and an optional TOML file,
//! merged (flag over environment over file over default) into one validated [`Config`] before
//! any port is bound. A bad setting is reported by name and `main` exits with 64.
//!
//! Flag names are the kebab-case forms of go-livepeer's (`-orchAddr` → `--orch-addr`), and each
//! flag's variable is go-livepeer's too: `LP_` plus the name in capitals without dashes
//! (`LP_ORCHADDR`), so an operator's existing environment keeps working.
//!
//! Each setting is declared once, as an `Option` field of one section ([`Listen`],
//! [`Discovery`], [`Prices`], [`Selection`], [`Ai`], [`Live`], [`Payment`], [`Signer`],
//! [`Logging`]): that field is its flag, its variable and its file key (see `section`). The
//! section's `validate` applies the default and turns the text into typed values, once; nothing
//! after it parses a setting again.
//!
//! The rule for defaults: this module is their only home. The validated types ([`LiveConfig`],
//! [`PaymentLimits`], …) have no `Default` of their own; code that wants the defaults asks the
//! empty section (`Payment::default().limits()`). The `[default: …]` in a help text is checked
//! against the real default by a test.
//!
//! Files: `section` (the declaring macro and the file's keys), `values` (parsers shared by the
//! sections), then one file per group: `listen` (listeners, logging), `discovery` (discovery,
//! selection), `price`, `ai`, `live`, `payment` (limits, chain, remote signer), `key` (the
//! gateway's key) and `keys` (customer keys, their database, the admin token).
//!
//! [`LiveConfig`]: crate::live::LiveConfig
//! [`PaymentLimits`]: crate::payment::PaymentLimits

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, ValueEnum};
use livepeer_pm::LocalSigner;
use secrecy::SecretString;
use serde::Deserialize;
use url::Url;

use crate::ai::AiConfig;
use crate::orchestrator::health::EjectPolicy;
use crate::orchestrator::selection::Weights;
use crate::orchestrator::{Requirements, TlsTrust};

mod ai;
mod byoc;
mod discovery;
mod ingest;
mod key;
mod keys;
mod listen;
mod live;
mod marketplace;
/// `--network` and its presets.
pub mod network;
mod payment;
mod price;
mod section;
mod transcode;
mod values;

pub use ai::Ai;
pub use byoc::Byoc;
pub use discovery::{Discovery, Selection};
pub use ingest::{Ingest, IngestConfig};
pub use keys::Keys;
pub use listen::{Listen, Logging};
pub use live::Live;
pub use marketplace::{Marketplace, MarketplaceConfig};
pub use network::Network;
pub use payment::{Payment, RemoteSigner, Signer};
pub use price::Prices;
pub use transcode::Transcode;
pub use values::parse_duration;

/// Every setting as it arrives from the command line and `LP_*` variables (clap merges the
/// two), all optional so that the file and the defaults can fill the gaps. The file has the
/// same shape, minus `config`.
#[derive(Debug, Clone, Default, Args)]
pub struct Flags {
    /// TOML config file; keys are the flag names without dashes in front (`orch-addr = "..."`).
    #[arg(long, env = "LP_CONFIG")]
    pub config: Option<PathBuf>,
    /// Listeners.
    #[command(flatten)]
    pub listen: Listen,
    /// Orchestrator discovery.
    #[command(flatten)]
    pub discovery: Discovery,
    /// Orchestrator requirements and price caps.
    #[command(flatten)]
    pub prices: Prices,
    /// Ejection and selection.
    #[command(flatten)]
    pub selection: Selection,
    /// Batch AI.
    #[command(flatten)]
    pub ai: Ai,
    /// Payments, the key and the chain.
    #[command(flatten)]
    pub payment: Payment,
    /// Remote signer.
    #[command(flatten)]
    pub signer: Signer,
    /// Live video.
    #[command(flatten)]
    pub live: Live,
    /// BYOC jobs.
    #[command(flatten)]
    pub byoc: Byoc,
    /// Transcoding.
    #[command(flatten)]
    pub transcode: Transcode,
    /// Transcoding ingest: RTMP and the stream auth webhook.
    #[command(flatten)]
    pub ingest: Ingest,
    /// Customer keys and the admin token.
    #[command(flatten)]
    pub keys: Keys,
    /// Logging.
    #[command(flatten)]
    pub logging: Logging,
    /// Catalogue publishing.
    #[command(flatten)]
    pub marketplace: Marketplace,
}

/// A setting that failed validation.
#[derive(Debug, thiserror::Error)]
#[error("invalid {setting}: {message}")]
pub struct ConfigError {
    /// The flag (or file key) at fault, e.g. `--orch-addr`.
    pub setting: String,
    /// What is wrong with it.
    pub message: String,
}

fn bad(setting: &str, message: impl Into<String>) -> ConfigError {
    ConfigError { setting: setting.to_owned(), message: message.into() }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The Ethereum connection used to read the gateway's TicketBroker funds (and, on an
/// on-chain network, to discover orchestrators).
#[derive(Debug, Clone)]
pub struct ChainConfig {
    /// JSON-RPC URL.
    pub url: Url,
    /// The Controller contract, which names the TicketBroker.
    pub controller: livepeer_pm::Address,
    /// How often the funds are read again.
    pub refresh: Duration,
    /// `--network`: a known network's chain id is checked at start.
    pub network: Network,
    /// The ServiceRegistry to read service URIs from instead of the Controller's.
    pub ai_service_registry: Option<livepeer_pm::Address>,
    /// How often on-chain discovery walks the transcoder pool again.
    pub pool_refresh: Duration,
    /// Admin status warns when the reserve lasts fewer hours than this at the current spend.
    pub reserve_warning_hours: u64,
}

/// Where orchestrators come from.
#[derive(Debug, Clone)]
pub enum OrchSource {
    /// A fixed list.
    Static(Vec<Url>),
    /// A webhook.
    Webhook(Url),
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Public API listener.
    pub http_addr: SocketAddr,
    /// Admin listener (`/status`, `/orchestrators`, `/metrics`, `/healthz`).
    pub cli_addr: SocketAddr,
    /// Orchestrator source.
    pub orchestrators: OrchSource,
    /// Per-call GetOrchestrator deadline.
    pub discovery_timeout: Duration,
    /// Deadline for a request's headers on the gateway's own listeners (slow-header and silent
    /// clients), from the connection's opening.
    pub header_timeout: Duration,
    /// How long a connection to those listeners may stay open with no request in flight.
    pub idle_timeout: Duration,
    /// Connections open at once on each listener.
    pub max_connections: usize,
    /// Connections one client address may hold open at once on each listener (`0`: no cap).
    pub max_connections_per_address: usize,
    /// A connection to those listeners whose client takes no bytes of a response for this
    /// long is closed.
    pub write_timeout: Duration,
    /// Threads serving the public port, each a runtime of its own (`0`: the shared runtime).
    pub http_threads: usize,
    /// Bytes of request bodies the process may hold at once.
    pub max_body_memory: usize,
    /// Connect deadline.
    pub connect_timeout: Duration,
    /// Pool refresh interval.
    pub refresh_interval: Duration,
    /// Webhook refresh interval.
    pub webhook_refresh_interval: Duration,
    /// Probe check interval.
    pub probe_interval: Duration,
    /// Ejection cooldowns.
    pub eject: EjectPolicy,
    /// Selection weights.
    pub weights: Weights,
    /// Orchestrator requirements (versions, price caps, blocklist).
    pub requirements: Requirements,
    /// TLS trust mode.
    pub orch_tls: TlsTrust,
    /// Concurrent discovery calls.
    pub discovery_concurrency: usize,
    /// The gateway's key: from `--eth-keystore-path` (with `--eth-password`), or from the
    /// `LP_ETH_KEY` variable (hex; development use). Its `Debug` shows only the address.
    pub signer: Option<Arc<LocalSigner>>,
    /// Batch AI settings.
    pub ai: AiConfig,
    /// Live video settings.
    pub live: crate::live::LiveConfig,
    /// BYOC job settings.
    pub byoc: crate::byoc::ByocConfig,
    /// Transcoding settings.
    pub transcode: crate::transcode::TranscodeConfig,
    /// Transcoding ingest settings.
    pub ingest: IngestConfig,
    /// Ticket sender limits.
    pub payment: crate::payment::PaymentLimits,
    /// Where to read the sender's deposit and reserve, if anywhere.
    pub chain: Option<ChainConfig>,
    /// Serve the signer routes, with this API key.
    pub serve_signer: Option<SecretString>,
    /// A remote signer to take the identity from, with its headers.
    pub remote_signer: Option<RemoteSigner>,
    /// Customer keys: enforcement, storage, the admin token.
    pub keys: crate::keys::KeysConfig,
    /// Log format.
    pub log_format: LogFormat,
    /// Log filter.
    pub log_level: String,
    /// Where the catalogue is published, if anywhere.
    pub marketplace: Option<MarketplaceConfig>,
}

impl Config {
    /// Merges flags (which clap already merged with the environment) over the file named by
    /// `--config`, over the defaults, and validates the result.
    pub fn load(flags: Flags) -> Result<Self, ConfigError> {
        let file = match &flags.config {
            Some(path) => Flags::from_file(path)?,
            None => Flags::default(),
        };
        let eth_key = std::env::var("LP_ETH_KEY").ok().map(SecretString::from);
        Self::validate(flags.or(file), eth_key)
    }

    /// Validates merged settings; `eth_key` is `LP_ETH_KEY`.
    fn validate(f: Flags, eth_key: Option<SecretString>) -> Result<Self, ConfigError> {
        let network = f.discovery.network.clone();
        let discovery = f.discovery.validate()?;
        let listen = f.listen.validate()?;
        let mut requirements = f.prices.validate()?;
        let (byoc, byoc_caps) = f.byoc.validate()?;
        // BYOC caps are wei per second under capability 37, beside the per-model caps.
        for (name, price) in byoc_caps {
            requirements.max_price_per_model.insert((crate::job::BYOC, name), price);
        }
        let (eject, probe_interval, weights) = f.selection.validate()?;
        let (log_format, log_level) = f.logging.validate()?;
        let eth_url = f.payment.eth_url.clone();
        let payment = f.payment.validate(eth_key, network)?;
        let ai = f.ai.validate()?;
        let live = f.live.validate(ai.public_url.clone())?;
        let (serve_signer, remote_signer) = f.signer.validate(payment.signer.is_some())?;
        let transcode = f.transcode.validate(discovery.connect_timeout)?;
        let ingest = f.ingest.validate(transcode.max_segment_bytes)?;
        let keys = f.keys.validate(listen.cli_addr, eth_url.as_deref())?;
        let marketplace = f.marketplace.validate()?;
        Ok(Self {
            http_addr: listen.http_addr,
            cli_addr: listen.cli_addr,
            header_timeout: listen.header_timeout,
            idle_timeout: listen.idle_timeout,
            max_connections: listen.max_connections,
            max_connections_per_address: listen.max_per_address,
            write_timeout: listen.write_timeout,
            http_threads: listen.http_threads,
            max_body_memory: listen.max_body_memory,
            orchestrators: discovery.orchestrators,
            discovery_timeout: discovery.discovery_timeout,
            connect_timeout: discovery.connect_timeout,
            refresh_interval: discovery.refresh_interval,
            webhook_refresh_interval: discovery.webhook_refresh_interval,
            orch_tls: discovery.orch_tls,
            discovery_concurrency: discovery.discovery_concurrency,
            probe_interval,
            eject,
            weights,
            requirements,
            signer: payment.signer,
            payment: payment.limits,
            chain: payment.chain,
            ai,
            live,
            byoc,
            transcode,
            ingest,
            serve_signer,
            remote_signer,
            keys,
            log_format,
            log_level,
            marketplace,
        })
    }
}

impl Flags {
    /// Each section from the command line where set, else from `file`.
    fn or(self, file: Flags) -> Flags {
        Flags {
            config: self.config,
            listen: self.listen.or(file.listen),
            discovery: self.discovery.or(file.discovery),
            prices: self.prices.or(file.prices),
            selection: self.selection.or(file.selection),
            ai: self.ai.or(file.ai),
            payment: self.payment.or(file.payment),
            signer: self.signer.or(file.signer),
            live: self.live.or(file.live),
            byoc: self.byoc.or(file.byoc),
            transcode: self.transcode.or(file.transcode),
            ingest: self.ingest.or(file.ingest),
            keys: self.keys.or(file.keys),
            logging: self.logging.or(file.logging),
            marketplace: self.marketplace.or(file.marketplace),
        }
    }

    /// The settings of the TOML file at `path`.
    fn from_file(path: &std::path::Path) -> Result<Flags, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| bad("--config", format!("{}: {e}", path.display())))?;
        Flags::from_text(&text, path)
    }

    /// The settings of a TOML text, whose keys are the flag names (`config` excepted).
    fn from_text(text: &str, path: &std::path::Path) -> Result<Flags, ConfigError> {
        let command = Flags::augment_args(clap::Command::new("livepeer-gateway"));
        let keys: Vec<&str> = command
            .get_arguments()
            .filter_map(|a| a.get_long())
            .filter(|k| *k != "config")
            .collect();
        section::check_keys(text, path, &keys)?;
        use section::from_file;
        Ok(Flags {
            config: None,
            listen: from_file(text, path)?,
            discovery: from_file(text, path)?,
            prices: from_file(text, path)?,
            selection: from_file(text, path)?,
            ai: from_file(text, path)?,
            payment: from_file(text, path)?,
            signer: from_file(text, path)?,
            live: from_file(text, path)?,
            byoc: from_file(text, path)?,
            transcode: from_file(text, path)?,
            ingest: from_file(text, path)?,
            keys: from_file(text, path)?,
            logging: from_file(text, path)?,
            marketplace: from_file(text, path)?,
        })
    }
}

#[cfg(test)]
mod tests;
