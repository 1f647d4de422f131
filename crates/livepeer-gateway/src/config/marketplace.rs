//! Publishing the catalogue to a marketplace: where (`--marketplace-webhook-url`) and how often
//! at least (`--marketplace-interval`).

use std::time::Duration;

use url::Url;

use super::ConfigError;
use super::section::section;
use super::values::{optional_url, positive_duration};

section! {
    /// Catalogue publishing.
    pub struct Marketplace {
        /// A URL that receives the catalogue (`POST`, JSON as `GET /v1/catalog` answers it)
        /// whenever it changes and at least every `--marketplace-interval`, signed with the
        /// gateway's ETH key when it has one (`X-Livepeer-Signature`).
        #[arg(long, env = "LP_MARKETPLACEWEBHOOKURL", hide_env_values = true)]
        pub marketplace_webhook_url: Option<String>,
        /// The longest time between two publications of an unchanged catalogue [default: 5m].
        #[arg(long, env = "LP_MARKETPLACEINTERVAL")]
        pub marketplace_interval: Option<String>,
    }
}

/// Where and how often the catalogue is published.
#[derive(Debug, Clone)]
pub struct MarketplaceConfig {
    /// The webhook.
    pub url: Url,
    /// The longest time between two publications.
    pub interval: Duration,
}

impl Marketplace {
    /// The validated settings: `None` when no webhook is set.
    pub(super) fn validate(self) -> Result<Option<MarketplaceConfig>, ConfigError> {
        let interval = positive_duration(
            "--marketplace-interval",
            self.marketplace_interval,
            Duration::from_secs(300),
        )?;
        let url = optional_url("--marketplace-webhook-url", self.marketplace_webhook_url)?;
        Ok(url.map(|url| MarketplaceConfig { url, interval }))
    }
}
