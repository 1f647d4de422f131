//! What the key store reads from its database and trusts for [`CACHE_TTL`]: the keys of
//! verified secrets (by hash) and the keys of running streams (by id).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, MutexGuard};

use tokio::time::Instant;

use super::{CACHE_MAX, CACHE_TTL};

/// A map whose entries are trusted for [`CACHE_TTL`], holding at most [`CACHE_MAX`]: at the
/// cap, stale entries go, and if none is stale, all do. Bounds what a client sending random
/// secrets can make the store hold.
#[derive(Debug)]
pub(super) struct TtlMap<K, V> {
    entries: Mutex<HashMap<K, (V, Instant)>>,
}

impl<K, V> Default for TtlMap<K, V> {
    fn default() -> Self {
        Self { entries: Mutex::new(HashMap::new()) }
    }
}

impl<K: Hash + Eq, V: Clone> TtlMap<K, V> {
    fn lock(&self) -> MutexGuard<'_, HashMap<K, (V, Instant)>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The value under `key`, unless it is older than [`CACHE_TTL`].
    pub(super) fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let entries = self.lock();
        entries.get(key).filter(|(_, at)| at.elapsed() < CACHE_TTL).map(|(v, _)| v.clone())
    }

    /// Keeps `value` under `key` as of now, if `still` holds when the map is locked (a check
    /// that must not race with [`TtlMap::remove`]).
    pub(super) fn insert_if(&self, key: K, value: V, still: impl FnOnce() -> bool) {
        let mut entries = self.lock();
        if !still() {
            return;
        }
        if entries.len() >= CACHE_MAX {
            entries.retain(|_, (_, at)| at.elapsed() < CACHE_TTL);
            if entries.len() >= CACHE_MAX {
                entries.clear();
            }
        }
        entries.insert(key, (value, Instant::now()));
    }

    /// Forgets `key`.
    pub(super) fn remove<Q>(&self, key: &Q)
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.lock().remove(key);
    }

    /// Forgets everything.
    pub(super) fn clear(&self) {
        self.lock().clear();
    }
}
