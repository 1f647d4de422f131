//! On-chain discovery, the pool source used on a chain when no other is configured
//! (GATEWAY.md §4.1 item 4): the stored pool is served at once, and the chain is walked in the
//! background, at start and then every `--chain-pool-refresh-interval`. Each walk is stored,
//! replaces the pool's list and asks the pool to refresh now.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use sqlx::AnyPool;
use tokio::time::Instant;
use url::Url;

use super::Chain;
use super::walk::{ChainOrch, walk};
use super::{ChainStatus, db};
use crate::orchestrator::Pool;
use crate::orchestrator::discovery::SharedList;
use crate::payment::chain::Contracts;
use crate::task::Tasks;

/// How soon a failed walk is tried again (at most; never later than the refresh interval).
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);

/// On-chain discovery: the list the pool reads, and where walks are stored.
#[derive(Debug, Clone)]
pub struct ChainDiscovery {
    /// What the pool serves.
    pub list: Arc<SharedList>,
    db: AnyPool,
    contracts: Contracts,
}

/// The URL of an orchestrator's service URI, if it is one the gateway can call (absolute
/// http(s) with a host, as go-livepeer's `url.ParseRequestURI` accepts).
#[must_use]
pub fn service_url(uri: &str) -> Option<Url> {
    let url = Url::parse(uri.trim()).ok()?;
    let ok =
        matches!(url.scheme(), "http" | "https") && url.host_str().is_some_and(|h| !h.is_empty());
    ok.then_some(url)
}

/// The URLs of the active orchestrators with their stake weights, duplicates dropped, list
/// order kept. The weight is the stake as a float: a relative draw weight, never money.
fn active_urls(orchestrators: &[ChainOrch]) -> Vec<(Url, f64)> {
    let mut urls: Vec<(Url, f64)> = Vec::new();
    for o in orchestrators.iter().filter(|o| o.active) {
        match service_url(&o.service_uri) {
            Some(url) if !urls.iter().any(|(u, _)| *u == url) => {
                urls.push((url, f64::from(o.stake)));
            }
            Some(_) => {}
            None => {
                tracing::debug!(address = %o.address, uri = %o.service_uri, "unusable service URI")
            }
        }
    }
    urls
}

impl ChainDiscovery {
    /// Opens the database at `db_url` and serves the stored pool at once.
    pub async fn open(chain: &Chain, db_url: &str) -> Result<Self, String> {
        let Some(contracts) = chain.contracts else {
            return Err("on-chain discovery needs an on-chain --network".to_owned());
        };
        let db = db::open(db_url)
            .await
            .map_err(|e| format!("cannot open the discovery database: {e}"))?;
        let stored =
            db::load(&db).await.map_err(|e| format!("cannot read the discovery database: {e}"))?;
        let list = Arc::new(SharedList::default());
        list.set(active_urls(&stored));
        tracing::info!(
            stored = stored.len(),
            serving = list.get().len(),
            "on-chain pool loaded from the database"
        );
        chain.status.set_discovery(json!({
            "source": "database",
            "orchestrators": stored,
            "active": list.get().len(),
            "last_walk": null,
            "last_error": null,
        }));
        Ok(Self { list, db, contracts })
    }

    /// Walks the pool now and then every `every`, in the background.
    pub fn spawn(self, tasks: &Tasks, chain: &Chain, every: Duration, pool: Pool) {
        let client = chain.client.clone();
        let status = chain.status.clone();
        tasks.spawn("chain-discovery", move |cancel| async move {
            loop {
                // A failed walk is tried again sooner: the stored list may be a day old.
                let wait = if self.refresh(&client, &status, &pool).await {
                    every
                } else {
                    every.min(RETRY_AFTER_FAILURE)
                };
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        });
    }

    /// One walk: stored, served, shown; `false` if the chain could not be walked.
    async fn refresh(
        &self,
        client: &crate::payment::chain::ChainClient,
        status: &ChainStatus,
        pool: &Pool,
    ) -> bool {
        let started = Instant::now();
        let found = match walk(client, &self.contracts).await {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(error = %e, "on-chain pool walk failed; serving the last list");
                status.update_discovery(|d| d["last_error"] = json!(e.to_string()));
                return false;
            }
        };
        let took = started.elapsed();
        // Served first, then stored (for the next start): a database that does not answer
        // must not keep the pool on its last list.
        let urls = active_urls(&found.orchestrators);
        let active = urls.len();
        self.list.set(urls);
        pool.refresh_soon();
        let stored = db::store(&self.db, &found.orchestrators);
        match tokio::time::timeout(Duration::from_secs(30), stored).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "could not store the on-chain pool"),
            Err(_) => tracing::warn!("could not store the on-chain pool: no answer in 30 s"),
        }
        status.set_rounds(found.rounds);
        tracing::info!(
            pool = found.orchestrators.len(),
            active,
            block = found.block,
            ms = took.as_millis() as u64,
            "on-chain pool walked"
        );
        status.set_discovery(json!({
            "source": "chain",
            "orchestrators": found.orchestrators,
            "active": active,
            "last_walk": {
                "block": found.block,
                "round": found.rounds.last_initialized.to_string(),
                "pool_size": found.orchestrators.len(),
                "active": active,
                "duration_ms": took.as_millis() as u64,
            },
            "last_error": null,
        }));
        true
    }
}
