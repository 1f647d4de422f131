//! The settings as they arrive: [`Flags`] (command line and `LP_*` variables, merged by clap)
//! and the TOML file, both all-optional so that [`super::Config::load`] can layer them.

use std::path::PathBuf;

use clap::Args;
use serde::Deserialize;

/// Flags. Every one is optional here so that the file and the defaults can fill the gaps.
#[derive(Debug, Clone, Default, Args)]
pub struct Flags {
    /// TOML config file; keys are the flag names without dashes in front (`orch-addr = "..."`).
    #[arg(long, env = "LP_CONFIG")]
    pub config: Option<PathBuf>,
    /// Public API listen address [default: 127.0.0.1:9935].
    #[arg(long, env = "LP_HTTPADDR")]
    pub http_addr: Option<String>,
    /// Admin API and metrics listen address [default: 127.0.0.1:5935].
    #[arg(long, env = "LP_CLIADDR")]
    pub cli_addr: Option<String>,
    /// Network: only `offchain` is supported so far [default: offchain].
    #[arg(long, env = "LP_NETWORK")]
    pub network: Option<String>,
    /// Comma-separated orchestrator addresses (`host`, `host:port`, `:port` or a URL).
    #[arg(long, env = "LP_ORCHADDR")]
    pub orch_addr: Option<String>,
    /// Discovery webhook returning `[{"address": "...", "score": n}]`; takes precedence over --orch-addr.
    #[arg(long, env = "LP_ORCHWEBHOOKURL")]
    pub orch_webhook_url: Option<String>,
    /// Comma-separated orchestrator Ethereum addresses never to use.
    #[arg(long, env = "LP_ORCHBLOCKLIST")]
    pub orch_blocklist: Option<String>,
    /// Minimum orchestrator node version (semver; prerelease ignored).
    #[arg(long, env = "LP_ORCHMINLIVEPEERVERSION")]
    pub orch_min_livepeer_version: Option<String>,
    /// Deadline of each GetOrchestrator call, e.g. `2s` or `500ms` [default: 3s].
    #[arg(long, env = "LP_DISCOVERYTIMEOUT")]
    pub discovery_timeout: Option<String>,
    /// Deadline for a client to send a request's headers on the public and admin ports; slower
    /// connections are closed [default: 30s].
    #[arg(long, env = "LP_HTTPHEADERTIMEOUT")]
    pub http_header_timeout: Option<String>,
    /// TCP + TLS connect deadline for orchestrators [default: 2s].
    #[arg(long, env = "LP_ORCHCONNECTTIMEOUT")]
    pub orch_connect_timeout: Option<String>,
    /// How often every orchestrator's info is refreshed [default: 60s].
    #[arg(long, env = "LP_ORCHREFRESHINTERVAL")]
    pub orch_refresh_interval: Option<String>,
    /// How often the discovery webhook is fetched again [default: 60s].
    #[arg(long, env = "LP_WEBHOOKREFRESHINTERVAL")]
    pub webhook_refresh_interval: Option<String>,
    /// Max price per unit, in wei; 0 accepts any price [default: 0].
    #[arg(long, env = "LP_MAXPRICEPERUNIT")]
    pub max_price_per_unit: Option<i64>,
    /// Units per price, the denominator of --max-price-per-unit [default: 1].
    #[arg(long, env = "LP_PIXELSPERUNIT")]
    pub pixels_per_unit: Option<i64>,
    /// JSON (or a path to it): `{"capabilities_prices": [{"pipeline", "model_id", "price_per_unit", "pixels_per_unit"}]}`.
    #[arg(long, env = "LP_MAXPRICEPERCAPABILITY")]
    pub max_price_per_capability: Option<String>,
    /// JSON (or a path to it): `[{"pipeline", "model_id", "minVersion"}]`, minimum ai-runner versions.
    #[arg(long, env = "LP_AIMINRUNNERVERSION")]
    pub ai_min_runner_version: Option<String>,
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
    /// Orchestrator TLS certificates: `accept-any` (as go-livepeer) or `pin-first` [default: accept-any].
    #[arg(long, env = "LP_ORCHTLS")]
    pub orch_tls: Option<String>,
    /// Most GetOrchestrator calls in flight at once [default: 256].
    #[arg(long, env = "LP_DISCOVERYCONCURRENCY")]
    pub discovery_concurrency: Option<usize>,
    /// Most orchestrators tried per AI request [default: 3].
    #[arg(long, env = "LP_AIMAXATTEMPTS")]
    pub ai_max_attempts: Option<u32>,
    /// Deadline of one AI attempt, until the answer (or a stream's first byte) [default: 60s].
    #[arg(long, env = "LP_AIATTEMPTTIMEOUT")]
    pub ai_attempt_timeout: Option<String>,
    /// Deadline of a whole AI request, failovers included [default: 120s].
    #[arg(long, env = "LP_AIREQUESTTIMEOUT")]
    pub ai_request_timeout: Option<String>,
    /// Largest AI request body in bytes; larger ones get 413 [default: 52428800].
    #[arg(long, env = "LP_AIMAXBODYBYTES")]
    pub ai_max_body_bytes: Option<usize>,
    /// How long AI result files are served [default: 10m].
    #[arg(long, env = "LP_AIRESULTTTL")]
    pub ai_result_ttl: Option<String>,
    /// Most bytes of AI result files kept in memory [default: 536870912].
    #[arg(long, env = "LP_AIRESULTSTOREBYTES")]
    pub ai_result_store_bytes: Option<usize>,
    /// Deadline for downloading one result file from an orchestrator [default: 10s].
    #[arg(long, env = "LP_AIRESULTFETCHTIMEOUT")]
    pub ai_result_fetch_timeout: Option<String>,
    /// Return AI media results as data: URLs instead of gateway URLs.
    #[arg(long, env = "LP_AIRESULTDATAURLS", num_args = 0..=1, default_missing_value = "true")]
    pub ai_result_data_urls: Option<bool>,
    /// Talk HTTP/1.1 to orchestrators instead of HTTP/2 (h2c for `http://` orchestrators).
    #[arg(long, env = "LP_ORCHHTTP1", num_args = 0..=1, default_missing_value = "true")]
    pub orch_http1: Option<bool>,
    /// Public base URL of this gateway for result links, e.g. `https://gw.example.com`
    /// [default: http:// + the request's Host].
    #[arg(long, env = "LP_PUBLICURL")]
    pub public_url: Option<String>,
    /// The largest ticket face value accepted is deposit / this [default: 1].
    #[arg(long, env = "LP_DEPOSITMULTIPLIER")]
    pub deposit_multiplier: Option<u64>,
    /// Ethereum JSON-RPC URL, to read the gateway's TicketBroker deposit and reserve.
    #[arg(long, env = "LP_ETHURL")]
    pub eth_url: Option<String>,
    /// The Livepeer Controller contract address (required with --eth-url).
    #[arg(long, env = "LP_ETHCONTROLLER")]
    pub eth_controller: Option<String>,
    /// How often the deposit and reserve are read again [default: 30s].
    #[arg(long, env = "LP_SENDERINFOREFRESHINTERVAL")]
    pub sender_info_refresh_interval: Option<String>,
    /// Serve the remote-signer routes (`/sign-orchestrator-info`, `/discover-orchestrators`)
    /// for other gateways; needs the key and --remote-signer-api-key.
    #[arg(long, env = "LP_REMOTESIGNER", num_args = 0..=1, default_missing_value = "true")]
    pub remote_signer: Option<bool>,
    /// API key clients of the signer routes must present (`Authorization: Bearer <key>`).
    #[arg(long, env = "LP_REMOTESIGNERAPIKEY", hide_env_values = true)]
    pub remote_signer_api_key: Option<String>,
    /// Use a remote signer for this gateway's identity (and, with no orchestrators configured,
    /// its discovery) instead of a local key.
    #[arg(long, env = "LP_REMOTESIGNERURL")]
    pub remote_signer_url: Option<String>,
    /// Headers sent to the remote signer, `name:value,name2:value2`.
    #[arg(long, env = "LP_REMOTESIGNERHEADERS", hide_env_values = true)]
    pub remote_signer_headers: Option<String>,
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
    /// How often a live stream's orchestrator is paid [default: 5s].
    #[arg(long, env = "LP_LIVEPAYMENTINTERVAL")]
    pub live_payment_interval: Option<String>,
    /// Replace a live orchestrator whose output stalls this long while input flows [default: 5s].
    #[arg(long, env = "LP_LIVEOUTSEGMENTTIMEOUT")]
    pub live_out_segment_timeout: Option<String>,
    /// Replace a live orchestrator that sends no event for this long [default: 30s].
    #[arg(long, env = "LP_LIVEEVENTSTIMEOUT")]
    pub live_events_timeout: Option<String>,
    /// Most orchestrator replacements per live stream within 3 minutes [default: 3].
    #[arg(long, env = "LP_LIVEMAXSWAPS")]
    pub live_max_swaps: Option<u32>,
    /// Most live streams at once [default: 1000].
    #[arg(long, env = "LP_LIVEMAXSTREAMS")]
    pub live_max_streams: Option<usize>,
    /// Service asked to accept or refuse each new live stream (POST JSON; non-2xx refuses).
    #[arg(long, env = "LP_LIVEAIAUTHWEBHOOKURL")]
    pub live_ai_auth_webhook_url: Option<String>,
    /// Key sent to the live auth webhook as `x-api-key` and `Authorization`.
    #[arg(long, env = "LP_LIVEAIAUTHAPIKEY", hide_env_values = true)]
    pub live_ai_auth_api_key: Option<String>,
    /// Service told the running stream ids every interval; it answers which to stop.
    #[arg(long, env = "LP_LIVEAIHEARTBEATURL")]
    pub live_ai_heartbeat_url: Option<String>,
    /// Headers of the heartbeat, `name:value,name2:value2`.
    #[arg(long, env = "LP_LIVEAIHEARTBEATHEADERS", hide_env_values = true)]
    pub live_ai_heartbeat_headers: Option<String>,
    /// How often the heartbeat is sent [default: 5s].
    #[arg(long, env = "LP_LIVEAIHEARTBEATINTERVAL")]
    pub live_ai_heartbeat_interval: Option<String>,
    /// Log format: `text` or `json` [default: text].
    #[arg(long, env = "LP_LOGFORMAT")]
    pub log_format: Option<String>,
    /// Log filter, e.g. `info` or `livepeer_gateway=debug` [default: info].
    #[arg(long, env = "LP_LOGLEVEL")]
    pub log_level: Option<String>,
}

/// The TOML file: the same settings as [`Flags`], kebab-case keys.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct FileConfig {
    pub(super) http_addr: Option<String>,
    pub(super) cli_addr: Option<String>,
    pub(super) network: Option<String>,
    pub(super) orch_addr: Option<StringOrList>,
    pub(super) orch_webhook_url: Option<String>,
    pub(super) orch_blocklist: Option<StringOrList>,
    pub(super) orch_min_livepeer_version: Option<String>,
    pub(super) discovery_timeout: Option<String>,
    pub(super) http_header_timeout: Option<String>,
    pub(super) orch_connect_timeout: Option<String>,
    pub(super) orch_refresh_interval: Option<String>,
    pub(super) webhook_refresh_interval: Option<String>,
    pub(super) max_price_per_unit: Option<i64>,
    pub(super) pixels_per_unit: Option<i64>,
    pub(super) max_price_per_capability: Option<String>,
    pub(super) ai_min_runner_version: Option<String>,
    pub(super) eject_base: Option<String>,
    pub(super) eject_max: Option<String>,
    pub(super) probe_interval: Option<String>,
    pub(super) select_latency_weight: Option<f64>,
    pub(super) select_price_weight: Option<f64>,
    pub(super) orch_tls: Option<String>,
    pub(super) discovery_concurrency: Option<usize>,
    pub(super) log_format: Option<String>,
    pub(super) log_level: Option<String>,
    pub(super) ai_max_attempts: Option<u32>,
    pub(super) ai_attempt_timeout: Option<String>,
    pub(super) ai_request_timeout: Option<String>,
    pub(super) ai_max_body_bytes: Option<usize>,
    pub(super) ai_result_ttl: Option<String>,
    pub(super) ai_result_store_bytes: Option<usize>,
    pub(super) ai_result_fetch_timeout: Option<String>,
    pub(super) ai_result_data_urls: Option<bool>,
    pub(super) orch_http1: Option<bool>,
    pub(super) public_url: Option<String>,
    pub(super) eth_keystore_path: Option<PathBuf>,
    pub(super) eth_password: Option<String>,
    pub(super) eth_acct_addr: Option<String>,
    pub(super) max_ticket_ev: Option<u128>,
    pub(super) max_total_ev: Option<u128>,
    pub(super) deposit_multiplier: Option<u64>,
    pub(super) remote_signer: Option<bool>,
    pub(super) remote_signer_api_key: Option<String>,
    pub(super) remote_signer_url: Option<String>,
    pub(super) remote_signer_headers: Option<String>,
    pub(super) eth_url: Option<String>,
    pub(super) eth_controller: Option<String>,
    pub(super) sender_info_refresh_interval: Option<String>,
    pub(super) live_payment_interval: Option<String>,
    pub(super) live_out_segment_timeout: Option<String>,
    pub(super) live_events_timeout: Option<String>,
    pub(super) live_max_swaps: Option<u32>,
    pub(super) live_max_streams: Option<usize>,
    pub(super) live_ai_auth_webhook_url: Option<String>,
    pub(super) live_ai_auth_api_key: Option<String>,
    pub(super) live_ai_heartbeat_url: Option<String>,
    pub(super) live_ai_heartbeat_headers: Option<String>,
    pub(super) live_ai_heartbeat_interval: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum StringOrList {
    One(String),
    Many(Vec<String>),
}

impl StringOrList {
    pub(super) fn joined(self) -> String {
        match self {
            Self::One(s) => s,
            Self::Many(v) => v.join(","),
        }
    }
}
