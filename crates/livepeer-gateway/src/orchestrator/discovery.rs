//! Where orchestrator addresses come from: a static list (`--orch-addr`), a webhook
//! (`--orch-webhook-url`, GATEWAY.md §4.3), or a list another part keeps current (on-chain
//! discovery, [`SharedList`]).
//!
//! A webhook fetch that fails or answers garbage keeps the last good list; before the first
//! good fetch the error is returned, since there is nothing to keep.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;
use url::Url;

use crate::outbound;

/// Why a list of orchestrators could not be had.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DiscoveryError {
    /// The webhook could not be reached or answered non-2xx.
    #[error("webhook {url}: {message}")]
    Webhook {
        /// The webhook URL.
        url: String,
        /// What went wrong.
        message: String,
    },
}

/// Normalises an orchestrator address as go-livepeer does (GATEWAY.md §3.4): a bare `host`
/// becomes `https://host:8935`, `:port` becomes `https://127.0.0.1:port`, and an address that
/// has a scheme gets no default port.
pub fn normalize_orch_addr(text: &str) -> Result<Url, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty address".into());
    }
    let with_scheme = if text.contains("://") {
        text.to_owned()
    } else {
        let hostport = if let Some(port) = text.strip_prefix(':') {
            format!("127.0.0.1:{port}")
        } else if has_port(text) {
            text.to_owned()
        } else {
            format!("{text}:8935")
        };
        format!("https://{hostport}")
    };
    let url = Url::parse(&with_scheme).map_err(|e| format!("{text:?}: {e}"))?;
    match url.scheme() {
        "http" | "https" => {}
        s => return Err(format!("{text:?}: scheme {s} is not http or https")),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{text:?}: no host"));
    }
    Ok(url)
}

fn has_port(hostport: &str) -> bool {
    match hostport.rsplit_once(':') {
        // `[::1]:8935` has a port; `::1` alone does not (and is not valid without brackets).
        Some((host, port)) => {
            !port.is_empty()
                && port.chars().all(|c| c.is_ascii_digit())
                && (!host.contains(':') || host.ends_with(']'))
        }
        None => false,
    }
}

/// One entry of a discovery webhook's answer.
#[derive(Debug, serde::Deserialize)]
struct WebhookEntry {
    #[serde(default)]
    address: String,
    /// Trust score; accepted for compatibility, not used by our selection.
    #[serde(default)]
    #[allow(dead_code)]
    score: Option<f64>,
}

/// Largest webhook answer accepted.
const WEBHOOK_MAX_BYTES: usize = 1 << 20;

/// Most orchestrators kept from one webhook answer, as many as on-chain discovery follows
/// (`onchain::walk::MAX_POOL`). Every one listed is called at each refresh and gets its own
/// metrics series, so a webhook listing 60,000 (a megabyte of short entries) would have the
/// gateway dial 60,000 hosts a minute and keep 60,000 series.
pub const MAX_WEBHOOK_ORCHESTRATORS: usize = 1000;

/// A source of orchestrator URLs.
#[derive(Debug)]
pub enum Discovery {
    /// A fixed list.
    Static(Vec<Url>),
    /// A webhook polled at most every `refresh`.
    Webhook(Webhook),
    /// A list kept current by its owner (the on-chain pool walk).
    Shared(std::sync::Arc<SharedList>),
}

/// A list of orchestrator URLs, each with a stake weight, that its owner replaces whole
/// (on-chain discovery), read by the pool at each refresh.
#[derive(Debug, Default)]
pub struct SharedList(Mutex<Vec<(Url, f64)>>);

impl SharedList {
    /// Replaces the list.
    pub fn set(&self, urls: Vec<(Url, f64)>) {
        if let Ok(mut list) = self.0.lock() {
            *list = urls;
        }
    }

    /// The current list.
    pub fn get(&self) -> Vec<Url> {
        self.0.lock().map(|l| l.iter().map(|(u, _)| u.clone()).collect()).unwrap_or_default()
    }

    /// The stake weight of `url`; 0 when not listed.
    pub fn stake(&self, url: &Url) -> f64 {
        let Ok(list) = self.0.lock() else { return 0.0 };
        list.iter().find(|(u, _)| u == url).map_or(0.0, |(_, s)| *s)
    }
}

/// Webhook discovery state.
#[derive(Debug)]
pub struct Webhook {
    url: Url,
    refresh: Duration,
    http: reqwest::Client,
    last_good: Mutex<Option<(Instant, Vec<Url>)>>,
}

// === impl Discovery ===

impl Discovery {
    /// A webhook source with the given refresh interval and request timeout.
    pub fn webhook(url: Url, refresh: Duration, timeout: Duration) -> Result<Self, String> {
        Self::webhook_with_headers(url, refresh, timeout, reqwest::header::HeaderMap::new())
    }

    /// A webhook source that sends `headers` with every fetch (a remote signer's
    /// `/discover-orchestrators`, which wants the signer's auth headers).
    pub fn webhook_with_headers(
        url: Url,
        refresh: Duration,
        timeout: Duration,
        headers: reqwest::header::HeaderMap,
    ) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .default_headers(headers)
            .redirect(crate::outbound::same_host_redirects())
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self::Webhook(Webhook { url, refresh, http, last_good: Mutex::new(None) }))
    }

    /// The current list. For a webhook, refetches when the last good list is older than the
    /// refresh interval, and falls back to that list when a fetch fails.
    pub async fn urls(&self) -> Result<Vec<Url>, DiscoveryError> {
        match self {
            Self::Static(list) => Ok(list.clone()),
            Self::Webhook(w) => w.urls().await,
            Self::Shared(list) => Ok(list.get()),
        }
    }

    /// The stake weight of `url` (on-chain discovery); 0 for other sources.
    pub fn stake(&self, url: &Url) -> f64 {
        match self {
            Self::Shared(list) => list.stake(url),
            _ => 0.0,
        }
    }
}

// === impl Webhook ===

impl Webhook {
    async fn urls(&self) -> Result<Vec<Url>, DiscoveryError> {
        let cached = self.last_good.lock().ok().and_then(|g| g.clone());
        if let Some((at, list)) = &cached
            && at.elapsed() < self.refresh
        {
            return Ok(list.clone());
        }
        match self.fetch().await {
            Ok(list) => {
                if let Ok(mut g) = self.last_good.lock() {
                    *g = Some((Instant::now(), list.clone()));
                }
                Ok(list)
            }
            Err(message) => {
                let err = DiscoveryError::Webhook { url: outbound::shown(&self.url), message };
                match cached {
                    Some((_, list)) => {
                        tracing::warn!(error = %err, kept = list.len(), "discovery webhook failed; keeping the last good list");
                        Ok(list)
                    }
                    None => Err(err),
                }
            }
        }
    }

    async fn fetch(&self) -> Result<Vec<Url>, String> {
        let send = self.http.get(self.url.clone()).send().await;
        let resp = send.map_err(|e| crate::error::error_chain(&e.without_url()))?;
        if !resp.status().is_success() {
            return Err(format!("status {}", resp.status()));
        }
        let entries: Vec<WebhookEntry> = outbound::read_json(resp, WEBHOOK_MAX_BYTES)
            .await
            .map_err(|e| format!("a JSON list of {{address, score}} was expected: {e}"))?;
        let total = entries.len();
        // A set, not a scan of the list: a megabyte holds some 60,000 short entries.
        let mut seen = HashSet::new();
        let mut urls = Vec::new();
        for e in entries {
            if urls.len() == MAX_WEBHOOK_ORCHESTRATORS {
                // The rest is not even parsed.
                tracing::warn!(
                    entries = total,
                    kept = urls.len(),
                    "discovery webhook listed more orchestrators than are kept; the first kept"
                );
                break;
            }
            match normalize_orch_addr(&e.address) {
                Ok(u) if seen.insert(u.clone()) => urls.push(u),
                Ok(_) => {}
                Err(why) => tracing::debug!(%why, "skipping webhook entry"),
            }
        }
        Ok(urls)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_like_go_livepeer() {
        let n = |s| normalize_orch_addr(s).map(|u| u.to_string());
        assert_eq!(n("orch.example.com").unwrap(), "https://orch.example.com:8935/");
        assert_eq!(n(":9000").unwrap(), "https://127.0.0.1:9000/");
        assert_eq!(n("1.2.3.4:8936").unwrap(), "https://1.2.3.4:8936/");
        assert_eq!(n("http://127.0.0.1:7000").unwrap(), "http://127.0.0.1:7000/");
        assert_eq!(n("https://o.example").unwrap(), "https://o.example/");
        assert_eq!(n("[::1]:8935").unwrap(), "https://[::1]:8935/");
        assert!(n("").is_err());
        assert!(n("ftp://x").is_err());
        assert!(n("http://").is_err());
    }
}
