//! Publishing the catalogue to a marketplace (`--marketplace-webhook-url`): a `POST` of the
//! catalogue's JSON whenever what it offers changes (entries, availability, orchestrator
//! counts, capacity, prices; not the latency figures, which move with every request) and at
//! least every `--marketplace-interval`.
//!
//! With an ETH key, each body is signed so that a marketplace can tell who publishes it:
//! `X-Livepeer-Signature` is `0x` and the 65 bytes `r ‖ s ‖ v` (hex) of go-livepeer's
//! `eth_sign` over the exact body bytes, that is a secp256k1 signature of the EIP-191 hash of
//! `keccak256(body)` (ethers: `verifyMessage(getBytes(keccak256(body)), sig)`), and
//! `X-Livepeer-Gateway` names the address it recovers to. The body also carries that address
//! (`gateway`) and when it was made (`published_at_ms`), so a replayed old catalogue shows its
//! age.
//!
//! Bounded: one publication in flight, a 10-second deadline each, the catalogue checked once a
//! second; a failed publication is tried again after [`RETRY`] (or the interval, if shorter).

use std::sync::Arc;
use std::time::Duration;

use livepeer_pm::LocalSigner;
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::catalog::{CatalogEntry, CatalogState, entries};
use crate::config::MarketplaceConfig;

/// How often the catalogue is compared with the last one published.
const CHECK: Duration = Duration::from_secs(1);
/// The deadline of one publication.
const TIMEOUT: Duration = Duration::from_secs(10);
/// The wait after a failed publication.
const RETRY: Duration = Duration::from_secs(10);

/// The publisher's parts.
pub(crate) struct Publisher {
    config: MarketplaceConfig,
    catalog: CatalogState,
    signer: Option<Arc<LocalSigner>>,
    client: reqwest::Client,
}

/// What decides whether the catalogue changed: every entry without its latency.
fn fingerprint(entries: &[CatalogEntry]) -> Vec<CatalogEntry> {
    entries.iter().cloned().map(|e| CatalogEntry { latency: None, ..e }).collect()
}

impl Publisher {
    /// A publisher to `config`'s webhook of `catalog`, signing with `signer`.
    pub(crate) fn new(
        config: MarketplaceConfig,
        catalog: CatalogState,
        signer: Option<Arc<LocalSigner>>,
    ) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder().timeout(TIMEOUT).build()?;
        Ok(Self { config, catalog, signer, client })
    }

    /// Publishes until `cancel` fires.
    pub(crate) async fn run(self, cancel: CancellationToken) {
        let mut last: Option<Vec<CatalogEntry>> = None;
        let mut due = Instant::now();
        loop {
            let now = entries(&self.catalog);
            let print = fingerprint(&now);
            if last.as_ref() != Some(&print) || Instant::now() >= due {
                match self.publish(&now).await {
                    Ok(()) => {
                        last = Some(print);
                        due = Instant::now() + self.config.interval;
                    }
                    Err(e) => {
                        tracing::warn!(host = self.host(), error = %e, "catalogue not published");
                        // Retried after a pause, not every second, whatever changes meanwhile.
                        last = Some(print);
                        due = Instant::now() + RETRY.min(self.config.interval);
                    }
                }
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(CHECK) => {}
            }
        }
    }

    /// The body to publish: the catalogue, who publishes it and when.
    fn body(&self, catalog: &[CatalogEntry]) -> Value {
        json!({
            "object": "catalog",
            "gateway": self.signer.as_ref().map(|s| s.address().to_checksum(None)),
            "published_at_ms": crate::recent::Recent::now_ms(),
            "data": catalog,
        })
    }

    /// The webhook's host, which is all that is logged of its URL (its path or query may
    /// carry a token).
    fn host(&self) -> &str {
        self.config.url.host_str().unwrap_or_default()
    }

    async fn publish(&self, catalog: &[CatalogEntry]) -> Result<(), String> {
        let body = serde_json::to_vec(&self.body(catalog)).map_err(|e| e.to_string())?;
        let mut req = self
            .client
            .post(self.config.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        if let Some(signer) = &self.signer {
            let sig = signer.eth_sign(&body).map_err(|e| format!("cannot sign: {e}"))?;
            req = req
                .header("X-Livepeer-Signature", format!("0x{}", hex::encode(sig.0)))
                .header("X-Livepeer-Gateway", signer.address().to_checksum(None));
        }
        // Without the URL: a webhook URL often carries a token, and errors are logged.
        let resp = req.body(body).send().await.map_err(|e| e.without_url().to_string())?;
        if !resp.status().is_success() {
            return Err(format!("the webhook answered {}", resp.status()));
        }
        tracing::debug!(host = self.host(), entries = catalog.len(), "catalogue published");
        Ok(())
    }
}
