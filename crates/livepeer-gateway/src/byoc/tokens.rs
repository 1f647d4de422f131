//! Job tokens per (orchestrator, BYOC capability), kept fresh off the request path.
//!
//! go-livepeer's gateway asks every orchestrator for a token on every job (up to 1 s before
//! the job starts). Here a background task asks each orchestrator for a token of each BYOC
//! capability it prices, every refresh interval, with bounded concurrency and a timeout per
//! call; a job uses the stored token, and fetches one itself (once, within the same timeout)
//! only when it is missing, older than two intervals, used up, or reports no capacity.
//!
//! The store holds only pairs the pool offers: each round drops the others.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::orchestrator::Pool;
use crate::orchestrator::byoc::{JobToken, TokenError, fetch_token};
use crate::orchestrator::http::OrchHttp;
use crate::orchestrator::snapshot::byoc_offers;

/// A stored token and when it was fetched (which tells the payment's balance view whether
/// the token's balance is news).
#[derive(Debug, Clone)]
pub struct Stored {
    /// The token.
    pub token: Arc<JobToken>,
    /// When it was asked for.
    pub fetched: Instant,
}

/// Token store settings.
#[derive(Debug, Clone, Copy)]
pub struct TokenSettings {
    /// How often every token is fetched again.
    pub refresh: Duration,
    /// Deadline of one `/process/token` call.
    pub timeout: Duration,
    /// Calls in flight at once during a refresh round.
    pub concurrency: usize,
}

/// The store; cheap to clone.
#[derive(Debug, Clone)]
pub struct Tokens {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    http: OrchHttp,
    /// The `Livepeer-Eth-Address` value.
    sender: String,
    settings: TokenSettings,
    map: Mutex<HashMap<(String, String), Stored>>,
    /// When each capability at an orchestrator last had a paid job refused as underpaid (see
    /// [`Tokens::refused`]); cleared by an answered job. Bounded: emptied when full.
    refused: Mutex<HashMap<(String, String), Instant>>,
}

/// Most (orchestrator, capability) refusals remembered: beyond, the memory starts afresh
/// (each then costs one more job's payment before it is penalised again).
const REFUSALS_KEPT: usize = 4096;

impl Tokens {
    /// A store fetching with `http`, naming the gateway by `sender`.
    pub fn new(http: OrchHttp, sender: String, settings: TokenSettings) -> Self {
        let (map, refused) = (Mutex::default(), Mutex::default());
        let inner = Inner { http, sender, settings, map, refused };
        Self { inner: Arc::new(inner) }
    }

    /// The stored token of `capability` at `orch` (the discovery URL), if it is fresh.
    pub fn get(&self, orch: &str, capability: &str) -> Option<Stored> {
        let map = self.inner.map.lock().ok()?;
        let stored = map.get(&(orch.to_owned(), capability.to_owned()))?;
        let max_age = self.inner.settings.refresh * 2;
        (stored.fetched.elapsed() < max_age).then(|| stored.clone())
    }

    /// Forgets the token of `capability` at `orch` (used up), so the next job fetches one.
    pub fn forget(&self, orch: &str, capability: &str) {
        if let Ok(mut map) = self.inner.map.lock() {
            map.remove(&(orch.to_owned(), capability.to_owned()));
        }
    }

    /// Records that `orch` refused a job's payment at `capability` (`Insufficient balance`,
    /// `Could not verify job creds`) and forgets its token, so the next job fetches one with a
    /// fresh balance view. True when the refused job's token was asked for (`fetched`) after
    /// an earlier refusal there: a refusal no stale view explains is the orchestrator's (one
    /// refusing every payment was otherwise paid once by every job, unpenalised). Jobs that
    /// went out together on one stale token are all refused as the gateway's doing.
    pub fn refused(&self, orch: &str, capability: &str, fetched: Instant) -> bool {
        self.forget(orch, capability);
        let Ok(mut refused) = self.inner.refused.lock() else { return false };
        if refused.len() >= REFUSALS_KEPT {
            refused.clear();
        }
        let last = refused.insert((orch.to_owned(), capability.to_owned()), Instant::now());
        last.is_some_and(|last| fetched > last)
    }

    /// `orch` answered a paid job at `capability`: an earlier refusal is forgiven.
    pub fn accepted(&self, orch: &str, capability: &str) {
        if let Ok(mut refused) = self.inner.refused.lock()
            && !refused.is_empty()
        {
            refused.remove(&(orch.to_owned(), capability.to_owned()));
        }
    }

    /// Fetches a token of `capability` at `orch` now and stores it.
    pub async fn fetch(&self, orch: &str, capability: &str) -> Result<Stored, TokenError> {
        let i = &self.inner;
        // When it was asked for: the balance it carries is no newer than that.
        let asked = Instant::now();
        let token = fetch_token(&i.http, orch, &i.sender, capability, i.settings.timeout).await?;
        let stored = Stored { token: Arc::new(token), fetched: asked };
        if let Ok(mut map) = i.map.lock() {
            map.insert((orch.to_owned(), capability.to_owned()), stored.clone());
        }
        Ok(stored)
    }

    /// Every stored token: (orchestrator, capability, token), for operators.
    pub fn all(&self) -> Vec<(String, String, Arc<JobToken>)> {
        let Ok(map) = self.inner.map.lock() else { return Vec::new() };
        map.iter().map(|((o, c), s)| (o.clone(), c.clone(), s.token.clone())).collect()
    }

    /// One round: a token for every (orchestrator, capability) the pool offers, and the
    /// others dropped. Returns the pairs on offer.
    pub async fn refresh(&self, pool: &Pool) -> HashSet<(String, String)> {
        let snap = pool.snapshot();
        let mut pairs = Vec::new();
        for slot in snap.slots.iter().filter(|s| !s.blocked) {
            let Some(info) = slot.info.as_deref() else { continue };
            let url = orch_key(&slot.url);
            pairs.extend(byoc_offers(info).map(|name| (url.clone(), name.to_owned())));
        }
        let offered: HashSet<(String, String)> = pairs.iter().cloned().collect();
        if let Ok(mut map) = self.inner.map.lock() {
            map.retain(|k, _| offered.contains(k));
        }
        let limit = Arc::new(Semaphore::new(self.inner.settings.concurrency.max(1)));
        let mut calls = JoinSet::new();
        for (orch, capability) in pairs {
            let (this, limit) = (self.clone(), limit.clone());
            calls.spawn(async move {
                let Ok(_permit) = limit.acquire_owned().await else { return };
                if let Err(e) = this.fetch(&orch, &capability).await {
                    tracing::debug!(orchestrator = %orch, capability, error = %e, "BYOC token refresh failed");
                }
            });
        }
        while calls.join_next().await.is_some() {}
        offered
    }

    /// Refreshes every interval until `cancel`, handing each round's pairs to `after`.
    pub async fn run(
        self,
        pool: Pool,
        after: impl Fn(&HashSet<(String, String)>),
        cancel: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(self.inner.settings.refresh);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tick.tick() => after(&self.refresh(&pool).await),
            }
        }
    }
}

/// The key of an orchestrator in the store and the string `parameters.orchestrators`
/// compares with: its discovery URL as go-livepeer prints it (`url.URL.String()`, which has
/// no `/` after a bare host).
pub fn orch_key(url: &url::Url) -> String {
    url.as_str().trim_end_matches('/').to_owned()
}
