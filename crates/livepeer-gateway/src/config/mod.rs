//! Configuration: command-line flags, `LP_*` environment variables and an optional TOML file,
//! merged (flag over environment over file over default) into one validated [`Config`] before
//! any port is bound. A bad setting is reported by name and `main` exits with 64.
//!
//! Flag names are the kebab-case forms of go-livepeer's (`-orchAddr` → `--orch-addr`), and each
//! flag's variable is go-livepeer's too: `LP_` plus the name in capitals without dashes
//! (`LP_ORCHADDR`), so an operator's existing environment keeps working.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::ValueEnum;
use livepeer_pm::{Address, LocalSigner};
use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

use crate::ai::AiConfig;

mod flags;
use crate::orchestrator::health::EjectPolicy;
use crate::orchestrator::price::Price;
use crate::orchestrator::selection::Weights;
use crate::orchestrator::{Requirements, TlsTrust, caps, normalize_orch_addr};
pub use flags::Flags;
use flags::{FileConfig, StringOrList};

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

/// The Ethereum connection used to read the gateway's TicketBroker funds.
#[derive(Debug, Clone)]
pub struct ChainConfig {
    /// JSON-RPC URL.
    pub url: Url,
    /// The Controller contract, which names the TicketBroker.
    pub controller: livepeer_pm::Address,
    /// How often the funds are read again.
    pub refresh: Duration,
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
    /// Deadline for a request's headers on the gateway's own listeners (slow-header clients).
    pub header_timeout: Duration,
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
    /// Ticket sender limits.
    pub payment: crate::payment::PaymentLimits,
    /// Where to read the sender's deposit and reserve, if anywhere.
    pub chain: Option<ChainConfig>,
    /// Serve the signer routes, with this API key.
    pub serve_signer: Option<SecretString>,
    /// A remote signer to take the identity from, and its headers (as `name:value,…`).
    pub remote_signer: Option<(Url, String)>,
    /// Log format.
    pub log_format: LogFormat,
    /// Log filter.
    pub log_level: String,
}

impl Config {
    /// Merges flags (which clap already merged with the environment) over the file named by
    /// `--config`, over the defaults, and validates the result.
    pub fn load(flags: Flags) -> Result<Self, ConfigError> {
        let file = match &flags.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| bad("--config", format!("{}: {e}", path.display())))?;
                toml::from_str::<FileConfig>(&text)
                    .map_err(|e| bad("--config", format!("{}: {e}", path.display())))?
            }
            None => FileConfig::default(),
        };
        let eth_key = std::env::var("LP_ETH_KEY").ok().map(SecretString::from);
        Self::merge(flags, file, eth_key)
    }

    fn merge(
        f: Flags,
        file: FileConfig,
        eth_key: Option<SecretString>,
    ) -> Result<Self, ConfigError> {
        let network = f.network.or(file.network).unwrap_or_else(|| "offchain".into());
        if network != "offchain" {
            return Err(bad(
                "--network",
                format!(
                    "{network:?}: only offchain is supported so far (on-chain payments are not built yet)"
                ),
            ));
        }
        let http_addr = listen_addr("--http-addr", f.http_addr.or(file.http_addr), 9935)?;
        let cli_addr = listen_addr("--cli-addr", f.cli_addr.or(file.cli_addr), 5935)?;
        let webhook = f.orch_webhook_url.or(file.orch_webhook_url).filter(|s| !s.trim().is_empty());
        let orchestrators = match webhook {
            Some(w) => OrchSource::Webhook(
                Url::parse(w.trim())
                    .map_err(|e| bad("--orch-webhook-url", format!("{w:?}: {e}")))?,
            ),
            None => {
                let list =
                    f.orch_addr.or(file.orch_addr.map(StringOrList::joined)).unwrap_or_default();
                let mut urls = Vec::new();
                for part in list.split(',').filter(|p| !p.trim().is_empty()) {
                    let url = normalize_orch_addr(part).map_err(|e| bad("--orch-addr", e))?;
                    if !urls.contains(&url) {
                        urls.push(url);
                    }
                }
                OrchSource::Static(urls)
            }
        };
        let blocklist = f
            .orch_blocklist
            .or(file.orch_blocklist.map(StringOrList::joined))
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                let hex = if s.starts_with("0x") || s.starts_with("0X") {
                    s[2..].to_owned()
                } else {
                    s.to_owned()
                };
                format!("0x{hex}")
                    .parse::<Address>()
                    .map_err(|e| bad("--orch-blocklist", format!("{s:?}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let min_version =
            f.orch_min_livepeer_version.or(file.orch_min_livepeer_version).unwrap_or_default();
        let pixels = f.pixels_per_unit.or(file.pixels_per_unit).unwrap_or(1);
        if pixels <= 0 {
            return Err(bad("--pixels-per-unit", "must be at least 1"));
        }
        let max = f.max_price_per_unit.or(file.max_price_per_unit).unwrap_or(0);
        let max_price =
            Price::new(max, pixels).map_err(|e| bad("--max-price-per-unit", e.to_string()))?;
        let per_model = match f.max_price_per_capability.or(file.max_price_per_capability) {
            Some(text) => parse_max_prices(&text, pixels)?,
            None => HashMap::new(),
        };
        let min_runner = match f.ai_min_runner_version.or(file.ai_min_runner_version) {
            Some(text) => parse_min_runner(&text)?,
            None => HashMap::new(),
        };
        let eject = EjectPolicy {
            base: duration("--eject-base", f.eject_base.or(file.eject_base), "2s")?,
            max: duration("--eject-max", f.eject_max.or(file.eject_max), "60s")?,
        };
        if eject.base.is_zero() || eject.max < eject.base {
            return Err(bad("--eject-max", "need 0 < --eject-base <= --eject-max"));
        }
        let weights = Weights {
            latency: f.select_latency_weight.or(file.select_latency_weight).unwrap_or(1.0),
            price: f.select_price_weight.or(file.select_price_weight).unwrap_or(50.0),
        };
        for (name, w) in
            [("--select-latency-weight", weights.latency), ("--select-price-weight", weights.price)]
        {
            if !w.is_finite() || w < 0.0 {
                return Err(bad(name, "must be a non-negative number"));
            }
        }
        let orch_tls = match f.orch_tls.or(file.orch_tls).as_deref() {
            None | Some("accept-any") => TlsTrust::AcceptAny,
            Some("pin-first") => TlsTrust::PinFirst,
            Some(other) => {
                return Err(bad(
                    "--orch-tls",
                    format!("{other:?}: expected accept-any or pin-first"),
                ));
            }
        };
        let log_format = match f.log_format.or(file.log_format).as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(bad("--log-format", format!("{other:?}: expected text or json")));
            }
        };
        let log_level = f.log_level.or(file.log_level).unwrap_or_else(|| "info".into());
        if tracing_subscriber::EnvFilter::try_new(&log_level).is_err() {
            return Err(bad("--log-level", format!("{log_level:?} is not a log filter")));
        }
        let signer = resolve_signer(
            f.eth_keystore_path.or(file.eth_keystore_path),
            f.eth_password.or(file.eth_password),
            f.eth_acct_addr.or(file.eth_acct_addr),
            eth_key,
        )?;
        let discovery_concurrency =
            f.discovery_concurrency.or(file.discovery_concurrency).unwrap_or(256);
        if discovery_concurrency == 0 {
            return Err(bad("--discovery-concurrency", "must be at least 1"));
        }
        let ai = AiConfig {
            max_attempts: f.ai_max_attempts.or(file.ai_max_attempts).unwrap_or(3),
            attempt_timeout: duration(
                "--ai-attempt-timeout",
                f.ai_attempt_timeout.or(file.ai_attempt_timeout),
                "60s",
            )?,
            request_timeout: duration(
                "--ai-request-timeout",
                f.ai_request_timeout.or(file.ai_request_timeout),
                "120s",
            )?,
            max_body_bytes: f.ai_max_body_bytes.or(file.ai_max_body_bytes).unwrap_or(50 << 20),
            data_urls: f.ai_result_data_urls.or(file.ai_result_data_urls).unwrap_or(false),
            orch_http2: !f.orch_http1.or(file.orch_http1).unwrap_or(false),
            public_url: f.public_url.or(file.public_url).filter(|u| !u.trim().is_empty()),
            result_ttl: duration("--ai-result-ttl", f.ai_result_ttl.or(file.ai_result_ttl), "10m")?,
            result_store_bytes: f
                .ai_result_store_bytes
                .or(file.ai_result_store_bytes)
                .unwrap_or(512 << 20),
            fetch_timeout: duration(
                "--ai-result-fetch-timeout",
                f.ai_result_fetch_timeout.or(file.ai_result_fetch_timeout),
                "10s",
            )?,
        };
        if ai.max_attempts == 0 {
            return Err(bad("--ai-max-attempts", "must be at least 1"));
        }
        if ai.max_body_bytes == 0 || ai.result_store_bytes == 0 {
            return Err(bad("--ai-max-body-bytes", "byte limits must be at least 1"));
        }
        if let Some(u) = &ai.public_url {
            let parsed = Url::parse(u).map_err(|e| bad("--public-url", format!("{u:?}: {e}")))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(bad("--public-url", format!("{u:?}: must be http or https")));
            }
        }
        let live = crate::live::LiveConfig {
            payment_interval: duration(
                "--live-payment-interval",
                f.live_payment_interval.or(file.live_payment_interval),
                "5s",
            )?,
            out_segment_timeout: duration(
                "--live-out-segment-timeout",
                f.live_out_segment_timeout.or(file.live_out_segment_timeout),
                "5s",
            )?,
            events_timeout: duration(
                "--live-events-timeout",
                f.live_events_timeout.or(file.live_events_timeout),
                "30s",
            )?,
            max_swaps: f.live_max_swaps.or(file.live_max_swaps).unwrap_or(3),
            max_streams: f.live_max_streams.or(file.live_max_streams).unwrap_or(1000),
            public_url: ai.public_url.clone(),
            auth_webhook: match f
                .live_ai_auth_webhook_url
                .or(file.live_ai_auth_webhook_url)
                .filter(|u| !u.trim().is_empty())
            {
                Some(u) => Some(crate::live::AuthWebhook {
                    url: Url::parse(u.trim())
                        .map_err(|e| bad("--live-ai-auth-webhook-url", format!("{u:?}: {e}")))?,
                    api_key: f
                        .live_ai_auth_api_key
                        .or(file.live_ai_auth_api_key)
                        .filter(|k| !k.is_empty())
                        .map(SecretString::from),
                }),
                None => None,
            },
            heartbeat: match f
                .live_ai_heartbeat_url
                .or(file.live_ai_heartbeat_url)
                .filter(|u| !u.trim().is_empty())
            {
                Some(u) => Some(crate::live::Heartbeat {
                    url: Url::parse(u.trim())
                        .map_err(|e| bad("--live-ai-heartbeat-url", format!("{u:?}: {e}")))?,
                    headers: crate::payment::parse_headers(
                        &f.live_ai_heartbeat_headers
                            .or(file.live_ai_heartbeat_headers)
                            .unwrap_or_default(),
                    )
                    .map_err(|e| bad("--live-ai-heartbeat-headers", e))?,
                    interval: duration(
                        "--live-ai-heartbeat-interval",
                        f.live_ai_heartbeat_interval.or(file.live_ai_heartbeat_interval),
                        "5s",
                    )?,
                }),
                None => None,
            },
            ..crate::live::LiveConfig::default()
        };
        for (flag, d) in [
            ("--live-payment-interval", live.payment_interval),
            ("--live-out-segment-timeout", live.out_segment_timeout),
            ("--live-events-timeout", live.events_timeout),
        ] {
            if d < std::time::Duration::from_millis(100) {
                return Err(bad(flag, "must be at least 100ms"));
            }
        }
        if live
            .heartbeat
            .as_ref()
            .is_some_and(|h| h.interval < std::time::Duration::from_millis(100))
        {
            return Err(bad("--live-ai-heartbeat-interval", "must be at least 100ms"));
        }
        if live.max_streams == 0 {
            return Err(bad("--live-max-streams", "must be at least 1"));
        }
        let defaults = crate::payment::PaymentLimits::default();
        let deposit_multiplier = f.deposit_multiplier.or(file.deposit_multiplier).unwrap_or(1);
        if deposit_multiplier == 0 {
            return Err(bad("--deposit-multiplier", "must be at least 1"));
        }
        let chain = match f.eth_url.or(file.eth_url).filter(|u| !u.trim().is_empty()) {
            None => None,
            Some(u) => {
                let url =
                    Url::parse(u.trim()).map_err(|e| bad("--eth-url", format!("{u:?}: {e}")))?;
                let controller = f
                    .eth_controller
                    .or(file.eth_controller)
                    .ok_or_else(|| bad("--eth-controller", "required with --eth-url"))?;
                let controller = controller
                    .trim()
                    .parse::<livepeer_pm::Address>()
                    .map_err(|e| bad("--eth-controller", format!("{controller:?}: {e}")))?;
                let refresh = duration(
                    "--sender-info-refresh-interval",
                    f.sender_info_refresh_interval.or(file.sender_info_refresh_interval),
                    "30s",
                )?;
                if refresh.is_zero() {
                    return Err(bad("--sender-info-refresh-interval", "must be longer than zero"));
                }
                Some(ChainConfig { url, controller, refresh })
            }
        };
        let payment = crate::payment::PaymentLimits {
            deposit_multiplier,
            max_ticket_ev: f
                .max_ticket_ev
                .or(file.max_ticket_ev)
                .map_or(defaults.max_ticket_ev, livepeer_pm::U256::from),
            max_total_ev: f
                .max_total_ev
                .or(file.max_total_ev)
                .map_or(defaults.max_total_ev, livepeer_pm::U256::from),
        };
        if payment.max_total_ev < payment.max_ticket_ev {
            return Err(bad("--max-total-ev", "must be at least --max-ticket-ev"));
        }
        let serve_signer = if f.remote_signer.or(file.remote_signer).unwrap_or(false) {
            if signer.is_none() {
                return Err(bad(
                    "--remote-signer",
                    "needs the gateway's key (--eth-keystore-path)",
                ));
            }
            // go-livepeer refuses a signer without auth on a public address; we never serve one
            // without an API key.
            let key = f
                .remote_signer_api_key
                .or(file.remote_signer_api_key)
                .filter(|k| k.trim().len() >= 16)
                .ok_or_else(|| {
                    bad(
                        "--remote-signer-api-key",
                        "required with --remote-signer (16 characters or more)",
                    )
                })?;
            Some(SecretString::from(key))
        } else {
            None
        };
        let remote_signer =
            match f.remote_signer_url.or(file.remote_signer_url).filter(|u| !u.trim().is_empty()) {
                None => None,
                Some(u) => {
                    if signer.is_some() {
                        return Err(bad(
                            "--remote-signer-url",
                            "use either a remote signer or a local key, not both",
                        ));
                    }
                    let u = u.trim();
                    // A scheme-less signer URL means https, as in go-livepeer.
                    let text =
                        if u.contains("://") { u.to_owned() } else { format!("https://{u}") };
                    let mut url = Url::parse(&text)
                        .map_err(|e| bad("--remote-signer-url", format!("{u:?}: {e}")))?;
                    if !url.path().ends_with('/') {
                        let path = format!("{}/", url.path());
                        url.set_path(&path);
                    }
                    let headers =
                        f.remote_signer_headers.or(file.remote_signer_headers).unwrap_or_default();
                    crate::payment::parse_headers(&headers)
                        .map_err(|e| bad("--remote-signer-headers", e))?;
                    Some((url, headers))
                }
            };
        if chain.is_some() && signer.is_none() {
            return Err(bad("--eth-url", "needs the gateway's key (--eth-keystore-path)"));
        }
        let config = Self {
            serve_signer,
            remote_signer,
            chain,
            payment,
            ai,
            live,
            http_addr,
            cli_addr,
            orchestrators,
            discovery_timeout: duration(
                "--discovery-timeout",
                f.discovery_timeout.or(file.discovery_timeout),
                "3s",
            )?,
            header_timeout: duration(
                "--http-header-timeout",
                f.http_header_timeout.or(file.http_header_timeout),
                "30s",
            )?,
            connect_timeout: duration(
                "--orch-connect-timeout",
                f.orch_connect_timeout.or(file.orch_connect_timeout),
                "2s",
            )?,
            refresh_interval: duration(
                "--orch-refresh-interval",
                f.orch_refresh_interval.or(file.orch_refresh_interval),
                "60s",
            )?,
            webhook_refresh_interval: duration(
                "--webhook-refresh-interval",
                f.webhook_refresh_interval.or(file.webhook_refresh_interval),
                "60s",
            )?,
            probe_interval: duration(
                "--probe-interval",
                f.probe_interval.or(file.probe_interval),
                "250ms",
            )?,
            eject,
            weights,
            requirements: Requirements {
                min_version,
                min_runner,
                max_price: (!max_price.is_zero()).then_some(max_price),
                max_price_per_model: per_model,
                blocklist,
            },
            orch_tls,
            discovery_concurrency,
            signer,
            log_format,
            log_level,
        };
        for (name, d) in [
            ("--discovery-timeout", config.discovery_timeout),
            ("--http-header-timeout", config.header_timeout),
            ("--orch-connect-timeout", config.connect_timeout),
            ("--orch-refresh-interval", config.refresh_interval),
            ("--probe-interval", config.probe_interval),
            ("--ai-attempt-timeout", config.ai.attempt_timeout),
            ("--ai-request-timeout", config.ai.request_timeout),
            ("--ai-result-ttl", config.ai.result_ttl),
            ("--ai-result-fetch-timeout", config.ai.fetch_timeout),
        ] {
            if d.is_zero() {
                return Err(bad(name, "must be longer than zero"));
            }
        }
        Ok(config)
    }
}

/// The gateway's key, checked (and a keystore decrypted) before any port is bound. Neither
/// keys nor passwords appear in errors.
fn resolve_signer(
    keystore: Option<PathBuf>,
    password: Option<String>,
    account: Option<String>,
    raw: Option<SecretString>,
) -> Result<Option<Arc<LocalSigner>>, ConfigError> {
    const S: &str = "--eth-keystore-path";
    let Some(path) = keystore else {
        return match raw {
            Some(key) => LocalSigner::from_hex(key.expose_secret())
                .map(|s| Some(Arc::new(s)))
                .map_err(|e| bad("LP_ETH_KEY", e.to_string())),
            None => Ok(None),
        };
    };
    let password = match password {
        // go-livepeer: a readable file's trimmed content, else the value itself.
        Some(p) => match std::fs::read_to_string(&p) {
            Ok(text) if !text.trim().is_empty() => livepeer_pm::keystore::normalize_password(&text),
            Ok(_) => SecretString::from(p),
            Err(_) => SecretString::from(p),
        },
        None => return Err(bad("--eth-password", "required with --eth-keystore-path")),
    };
    let want = match account {
        Some(a) => Some(
            format!("0x{}", a.trim().trim_start_matches("0x"))
                .parse::<livepeer_pm::Address>()
                .map_err(|e| bad("--eth-acct-addr", format!("{a:?}: {e}")))?,
        ),
        None => None,
    };
    let json = keystore_json(&path, want).map_err(|m| bad(S, m))?;
    let signer = livepeer_pm::keystore::load_keystore(&json, &password)
        .map_err(|e| bad(S, format!("{}: {e}", path.display())))?;
    if want.is_some_and(|w| w != signer.address()) {
        return Err(bad("--eth-acct-addr", "the keystore holds a different account"));
    }
    Ok(Some(Arc::new(signer)))
}

/// The keystore JSON at `path`: the file itself, or the one file of a directory whose `address`
/// matches `want` (or the only keystore there).
fn keystore_json(
    path: &std::path::Path,
    want: Option<livepeer_pm::Address>,
) -> Result<String, String> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("{shown}: {e}"))?;
    if meta.is_file() {
        return std::fs::read_to_string(path).map_err(|e| format!("{shown}: {e}"));
    }
    let mut found = Vec::new();
    for entry in std::fs::read_dir(path).map_err(|e| format!("{shown}: {e}"))?.flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path()) else { continue };
        let Ok(doc) = serde_json::from_str::<serde_json::Value>(&text) else { continue };
        let address = doc["address"].as_str().and_then(|a| {
            format!("0x{}", a.trim_start_matches("0x")).parse::<livepeer_pm::Address>().ok()
        });
        found.push((address, text));
    }
    let mut matching: Vec<String> = found
        .into_iter()
        .filter(|(a, _)| want.is_none_or(|w| *a == Some(w)))
        .map(|(_, t)| t)
        .collect();
    match (matching.len(), want) {
        (1, _) => Ok(matching.remove(0)),
        (0, Some(w)) => Err(format!("{shown}: no keystore for account {}", w.to_checksum(None))),
        (0, None) => Err(format!("{shown}: no keystore files")),
        (n, _) => Err(format!("{shown}: {n} keystores; choose one with --eth-acct-addr")),
    }
}

/// go-livepeer's address defaulting: empty → `127.0.0.1:<port>`, `:port` → `127.0.0.1:port`,
/// a bare host gets the default port.
fn listen_addr(setting: &str, value: Option<String>, port: u16) -> Result<SocketAddr, ConfigError> {
    let value = value.unwrap_or_default();
    let value = value.trim();
    let text = if value.is_empty() {
        format!("127.0.0.1:{port}")
    } else if let Some(p) = value.strip_prefix(':') {
        format!("127.0.0.1:{p}")
    } else if value.parse::<std::net::IpAddr>().is_ok() {
        format!("{value}:{port}")
    } else if value == "localhost" {
        format!("127.0.0.1:{port}")
    } else {
        value.replace("localhost:", "127.0.0.1:")
    };
    text.parse().map_err(|_| bad(setting, format!("{value:?} is not an IP address and port")))
}

/// Parses `500ms`, `3s`, `2m`, `1h` (or a bare number of seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(text.len());
    let (num, unit) = text.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("{text:?} is not a duration like 500ms or 3s"))?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        other => return Err(format!("unknown unit {other:?} in {text:?}; use ms, s, m or h")),
    };
    if !secs.is_finite() || !(0.0..=7.0 * 86400.0).contains(&secs) {
        return Err(format!("{text:?} is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn duration(setting: &str, value: Option<String>, default: &str) -> Result<Duration, ConfigError> {
    parse_duration(value.as_deref().unwrap_or(default)).map_err(|e| bad(setting, e))
}

/// Reads inline JSON, or the file it names.
fn json_or_file(setting: &str, text: &str) -> Result<serde_json::Value, ConfigError> {
    let trimmed = text.trim();
    let body = if trimmed.starts_with('{') || trimmed.starts_with('[') {
        trimmed.to_owned()
    } else {
        std::fs::read_to_string(trimmed).map_err(|e| bad(setting, format!("{trimmed}: {e}")))?
    };
    serde_json::from_str(&body).map_err(|e| bad(setting, format!("not valid JSON: {e}")))
}

#[derive(Debug, Deserialize)]
struct CapPrice {
    pipeline: String,
    #[serde(default = "default_model")]
    model_id: String,
    price_per_unit: serde_json::Value,
    #[serde(default)]
    pixels_per_unit: Option<i64>,
    #[serde(default)]
    currency: Option<String>,
}

fn default_model() -> String {
    "default".into()
}

fn parse_max_prices(
    text: &str,
    default_pixels: i64,
) -> Result<HashMap<(u32, String), Price>, ConfigError> {
    const S: &str = "--max-price-per-capability";
    #[derive(Deserialize)]
    struct Doc {
        capabilities_prices: Vec<CapPrice>,
    }
    let doc: Doc = serde_json::from_value(json_or_file(S, text)?)
        .map_err(|e| bad(S, format!("expected {{\"capabilities_prices\": [...]}}: {e}")))?;
    let mut out = HashMap::new();
    for (i, p) in doc.capabilities_prices.into_iter().enumerate() {
        let cap = caps::pipeline_capability(&p.pipeline)
            .ok_or_else(|| bad(S, format!("entry {i}: unknown pipeline {:?}", p.pipeline)))?;
        match p.currency.as_deref().map(str::to_ascii_uppercase).as_deref() {
            None | Some("") | Some("WEI") => {}
            Some(other) => {
                return Err(bad(
                    S,
                    format!(
                        "entry {i}: currency {other:?} needs a price feed, which is not supported yet; give wei"
                    ),
                ));
            }
        }
        let per_unit = match &p.price_per_unit {
            serde_json::Value::Number(n) => n.as_i64(),
            serde_json::Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
        .ok_or_else(|| {
            bad(S, format!("entry {i}: price_per_unit must be a whole number of wei"))
        })?;
        let pixels = p.pixels_per_unit.filter(|p| *p > 0).unwrap_or(default_pixels);
        let price = Price::new(per_unit, pixels).map_err(|e| bad(S, format!("entry {i}: {e}")))?;
        if !price.is_zero() {
            out.insert((cap, p.model_id), price);
        }
    }
    Ok(out)
}

fn parse_min_runner(text: &str) -> Result<HashMap<(u32, String), String>, ConfigError> {
    const S: &str = "--ai-min-runner-version";
    #[derive(Deserialize)]
    struct Entry {
        pipeline: String,
        model_id: String,
        #[serde(rename = "minVersion")]
        min_version: String,
    }
    let list: Vec<Entry> = serde_json::from_value(json_or_file(S, text)?).map_err(|e| {
        bad(S, format!("expected [{{\"pipeline\", \"model_id\", \"minVersion\"}}]: {e}"))
    })?;
    let mut out = HashMap::new();
    for (i, e) in list.into_iter().enumerate() {
        let cap = caps::pipeline_capability(&e.pipeline)
            .ok_or_else(|| bad(S, format!("entry {i}: unknown pipeline {:?}", e.pipeline)))?;
        out.insert((cap, e.model_id), e.min_version);
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
