//! Customer keys: whether public job routes need one, where they are stored, and the admin
//! token that guards their management.

use std::net::SocketAddr;
use std::path::PathBuf;

use secrecy::SecretString;

use super::section::section;
use super::{ConfigError, bad};
use std::sync::Arc;

use crate::keys::chainlink::Feed;
use crate::keys::price::CustomerPrices;
use crate::keys::{AuthMode, KeysConfig};

section! {
    /// Customer keys and the admin API's token.
    pub struct Keys {
        /// Who may call the public job routes: `none` (anyone, as go-livepeer) or `keys` (a
        /// customer key in `Authorization: Bearer`, managed on the admin API's `/keys`)
        /// [default: none].
        #[arg(long, env = "LP_AUTH")]
        pub auth: Option<String>,
        /// Directory of the gateway's own data: the SQLite database of customer keys, created
        /// if missing. Without it: `livepeer-gateway` under the platform's data directory
        /// (`$XDG_DATA_HOME` or `~/.local/share` on Linux), or `./data` with no home directory.
        #[arg(long, env = "LP_DATADIR")]
        pub data_dir: Option<String>,
        /// A PostgreSQL database for customer keys (`postgres://user:pass@host/db`), shared by
        /// several gateway instances, instead of SQLite under `--data-dir`.
        #[arg(long, env = "LP_DATABASEURL", hide_env_values = true)]
        pub database_url: Option<String>,
        /// Bearer token the admin API requires (`Authorization: Bearer <token>`); required
        /// when `--cli-addr` is not a loopback address.
        #[arg(long, env = "LP_ADMINTOKEN", hide_env_values = true)]
        pub admin_token: Option<String>,
        /// What customers pay: a price table, inline JSON or a JSON or TOML file,
        /// `{"price": [{"pipeline", "model"?, "usd" | "wei" | "orchestrator_multiple"}]}`, each
        /// amount per the pipeline's natural unit (megapixel, audio second, thousand
        /// characters, million tokens, live minute, BYOC second, video minute).
        #[arg(long, env = "LP_CUSTOMERPRICES")]
        pub customer_prices: Option<String>,
        /// USD per ETH (exact decimal), to turn prices in wei into USD for budgets.
        #[arg(long, env = "LP_USDPERETH")]
        pub usd_per_eth: Option<String>,
        /// A Chainlink ETH/USD price feed (its address), read through --eth-url every minute,
        /// for the USD per ETH when --usd-per-eth is not set.
        #[arg(long, env = "LP_USDPERETHFEED")]
        pub usd_per_eth_feed: Option<String>,
        /// The oldest feed answer used; prices in wei are refused with 503 beyond it
        /// [default: 1h].
        #[arg(long, env = "LP_USDPERETHMAXAGE")]
        pub usd_per_eth_max_age: Option<String>,
        /// How long this instance's budget leases and streams stay held in the key database
        /// after its last heartbeat (it renews every quarter of this): when it crashes,
        /// another instance gives them back after this long [default: 30s].
        #[arg(long, env = "LP_KEYLEASEEXPIRY")]
        pub key_lease_expiry: Option<String>,
    }
}

impl Keys {
    /// The validated settings; `cli_addr` is the admin listener's address, `eth_url` the
    /// `--eth-url` a price feed is read through.
    pub(super) fn validate(
        self,
        cli_addr: SocketAddr,
        eth_url: Option<&str>,
    ) -> Result<KeysConfig, ConfigError> {
        let auth = match self.auth.as_deref().map(str::trim) {
            None | Some("" | "none") => AuthMode::None,
            Some("keys") => AuthMode::Keys,
            Some(other) => return Err(bad("--auth", format!("{other:?}: expected none or keys"))),
        };
        let admin_token = self.admin_token.filter(|t| !t.is_empty());
        if let Some(token) = &admin_token
            && token.len() < 16
        {
            return Err(bad("--admin-token", "must be at least 16 characters"));
        }
        if admin_token.is_none() && !cli_addr.ip().is_loopback() {
            return Err(bad(
                "--admin-token",
                format!("required: the admin listener (--cli-addr {cli_addr}) is not on loopback"),
            ));
        }
        let database_url = self.database_url.filter(|u| !u.trim().is_empty());
        if let Some(url) = &database_url
            && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            return Err(bad("--database-url", "expected a postgres:// or postgresql:// URL"));
        }
        let data_dir = match self.data_dir.filter(|d| !d.trim().is_empty()) {
            Some(dir) => PathBuf::from(dir),
            None => default_data_dir(),
        };
        let lease_expiry = super::values::positive_duration(
            "--key-lease-expiry",
            self.key_lease_expiry,
            KeysConfig::DEFAULT_LEASE_EXPIRY,
        )?;
        if lease_expiry < std::time::Duration::from_millis(200) {
            return Err(bad("--key-lease-expiry", "must be at least 200ms"));
        }
        let feed = feed(self.usd_per_eth_feed.as_deref(), self.usd_per_eth_max_age, eth_url)?;
        let prices =
            customer_prices(self.customer_prices.as_deref(), self.usd_per_eth.as_deref(), feed)?;
        Ok(KeysConfig {
            prices: Arc::new(prices),
            auth,
            data_dir,
            database_url: database_url.map(SecretString::from),
            admin_token: admin_token.map(SecretString::from),
            lease_expiry,
        })
    }
}

/// `--usd-per-eth-feed` (an address) with `--usd-per-eth-max-age`, read through `eth_url`.
fn feed(
    address: Option<&str>,
    max_age: Option<String>,
    eth_url: Option<&str>,
) -> Result<Option<Arc<Feed>>, ConfigError> {
    let Some(address) = address.map(str::trim).filter(|a| !a.is_empty()) else {
        return Ok(None);
    };
    let address: livepeer_pm::Address =
        address.parse().map_err(|e| bad("--usd-per-eth-feed", format!("{address:?}: {e}")))?;
    let url = eth_url.ok_or_else(|| bad("--usd-per-eth-feed", "needs --eth-url to read it"))?;
    let url = url::Url::parse(url).map_err(|e| bad("--eth-url", e.to_string()))?;
    let max_age = super::values::positive_duration(
        "--usd-per-eth-max-age",
        max_age,
        std::time::Duration::from_secs(3600),
    )?;
    Ok(Some(Arc::new(Feed::new(url, address, max_age))))
}

/// `--customer-prices` (inline JSON, or a file of JSON or TOML) with `--usd-per-eth`.
fn customer_prices(
    table: Option<&str>,
    usd_per_eth: Option<&str>,
    feed: Option<Arc<Feed>>,
) -> Result<CustomerPrices, ConfigError> {
    let text = match table.map(str::trim).filter(|t| !t.is_empty()) {
        Some(t) if t.starts_with('{') => Some(t.to_owned()),
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| bad("--customer-prices", format!("{path}: {e}")))?,
        ),
        None => None,
    };
    CustomerPrices::parse_with_feed(text.as_deref(), usd_per_eth, feed).map_err(|e| {
        let setting =
            if e.0.starts_with("--usd-per-eth") { "--usd-per-eth" } else { "--customer-prices" };
        bad(setting, e.0)
    })
}

/// `livepeer-gateway` under the platform's data directory (`$XDG_DATA_HOME`, else
/// `~/.local/share` on Unix, `~/Library/Application Support` on macOS, `%APPDATA%` on
/// Windows), or `./data` when there is no home to put it in.
fn default_data_dir() -> PathBuf {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    let base = if cfg!(target_os = "macos") {
        var("HOME").map(|h| h.join("Library/Application Support"))
    } else if cfg!(windows) {
        var("APPDATA")
    } else {
        var("XDG_DATA_HOME").or_else(|| var("HOME").map(|h| h.join(".local/share")))
    };
    base.map_or_else(|| PathBuf::from("data"), |b| b.join("livepeer-gateway"))
}
