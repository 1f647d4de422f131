//! Per-stream auth tokens for orchestrators paid nothing (off-chain): go-livepeer's gateway
//! calls GetOrchestrator for each stream, so each stream is a session of its own at the
//! orchestrator (its own auth token, transcode loop and place under `-maxSessions`). The
//! gateway's own key gets the same from its payment sessions; this keeps the unpaid case
//! alike, instead of every stream riding on the pool's discovery token.
//!
//! Bounded: at most [`MAX_ENTRIES`] (orchestrator, stream) pairs, forgotten with the stream.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use url::Url;

use crate::orchestrator::caps::Capabilities;
use crate::orchestrator::info::OrchInfo;
use crate::orchestrator::{ClientError, OrchClient};

/// (orchestrator, stream) pairs kept at most; the map is cleared when full (tokens are
/// fetched again on the next segment).
const MAX_ENTRIES: usize = 4096;

/// Seconds before an auth token's expiry when it is renewed (go-livepeer's last 10 % of 30
/// minutes).
const RENEW_BEFORE: i64 = 180;

/// The tokens, by (orchestrator URL, manifest id).
#[derive(Debug)]
pub(super) struct StreamTokens {
    client: OrchClient,
    map: Mutex<HashMap<(String, String), Arc<OrchInfo>>>,
}

/// Why no auth token could be had.
#[derive(Debug)]
pub(super) struct InfoError {
    pub(super) message: String,
    /// The gateway had no descriptor to dial with: its shortage, not the orchestrator's.
    pub(super) local: bool,
}

impl StreamTokens {
    pub(super) fn new(client: OrchClient) -> Self {
        Self { client, map: Mutex::default() }
    }

    /// The stream `manifest`'s info from the orchestrator at `url`: cached while its auth
    /// token is fresh, else asked for with the transcoding capabilities.
    pub(super) async fn info(&self, url: &Url, manifest: &str) -> Result<Arc<OrchInfo>, InfoError> {
        let key = (url.to_string(), manifest.to_owned());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let fresh = |i: &OrchInfo| {
            i.auth_token.as_ref().is_some_and(|t| now < t.expiration.saturating_sub(RENEW_BEFORE))
        };
        if let Some(hit) = self.map.lock().ok().and_then(|m| m.get(&key).cloned())
            && fresh(&hit)
        {
            return Ok(hit);
        }
        let caps = Capabilities::transcode_job("");
        let info = self.client.get_orchestrator(url, Some(&caps), true).await;
        let info = Arc::new(info.map_err(|e| InfoError {
            message: format!("fetching the stream's auth token: {e}"),
            local: matches!(e, ClientError::Local(_)),
        })?);
        if info.auth_token.is_none() {
            let message = "orchestrator sent no auth token".into();
            return Err(InfoError { message, local: false });
        }
        if let Ok(mut map) = self.map.lock() {
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
            map.insert(key, info.clone());
        }
        Ok(info)
    }

    /// Forgets the stream's tokens.
    pub(super) fn forget(&self, manifest: &str) {
        if let Ok(mut map) = self.map.lock() {
            map.retain(|(_, m), _| m != manifest);
        }
    }
}
