//! Running streams follow their key. A live, BYOC or RTMP stream runs on long after the
//! request that started it was checked, and is charged interval by interval (see `meter`):
//! each interval reads its key again ([`KeyStore::current`]), so a key deleted, disabled,
//! expired, no longer allowed the stream's pipeline, or whose streams the operator stopped
//! (`POST /keys/{id}/streams/stop`), ends the stream, and a lowered budget is what the next
//! interval is reserved against.
//!
//! A change made through this instance's admin API reaches its streams at once: each key with
//! a stream here has a token ([`KeyStore::changed`]), taken by the stream's meter before it
//! first reads the key, that the change cancels, which wakes the meter to read the key again
//! (RTMP streams read it at each segment, transcoding streams pushed over HTTP at each push:
//! `TranscodeState::follow_key`). Another instance's change reaches them at their
//! next interval, once the key read by id here is older than [`CACHE_TTL`](super::CACHE_TTL). The operator's
//! stop is kept in the database (`streams_stopped_at_ms`), so that every instance sharing it
//! ends the streams started before it and none started after, by the clocks of the instance
//! that stopped them and of the one that started each stream: instances whose clocks differ
//! by a second may take a stream started within that second of the stop either way.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use super::record::KeyInfo;
use super::ttl::TtlMap;
use super::{KeyError, KeyStore, db};
use crate::error::{Error, Kind};

/// A key as its running streams read it: the key (none: deleted) and when the operator last
/// stopped its streams (unix ms).
#[derive(Debug, Clone)]
struct Read {
    key: Option<Arc<KeyInfo>>,
    stopped_at_ms: Option<i64>,
}

/// The state behind [`KeyStore::current`] and [`KeyStore::changed`].
#[derive(Debug, Default)]
pub(super) struct Follow {
    /// Keys with a stream on this instance: a token cancelled (and replaced) by the next
    /// change to the key through this instance. At most one entry per key the operator
    /// created (a key deleted elsewhere keeps its entry here until the process ends).
    changed: Mutex<HashMap<String, CancellationToken>>,
    /// Keys read by id.
    read: TtlMap<String, Read>,
    /// Changes made here so far: a read that a change overtook is not kept (it may hold
    /// the key from before the change, which the woken streams would then read again).
    changes: AtomicU64,
}

impl Follow {
    /// Wakes key `id`'s streams on this instance and forgets what was read of it.
    pub(super) fn touch(&self, id: &str) {
        // What was read goes first, and reads under way are not kept: a stream woken by the
        // token reads the key afresh.
        self.changes.fetch_add(1, Ordering::AcqRel);
        self.read.remove(id);
        if let Some(token) = lock(&self.changed).remove(id) {
            token.cancel();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl KeyStore {
    /// A token cancelled when key `id` is next changed, deleted or its streams stopped
    /// through this instance's admin API: a running stream's meter waits on it to read its
    /// key again at once.
    pub fn changed(&self, id: &str) -> CancellationToken {
        lock(&self.follow.changed).entry(id.to_owned()).or_default().clone()
    }

    /// Key `key` as it is now, for a stream of `pipeline` (and `model`, when its start was
    /// checked for one: a BYOC capability) started at `since_ms` (unix ms): `Err` with the
    /// reason when the stream may not go on (the key deleted, disabled, expired, no longer
    /// allowed the stream's pipeline or model, or its streams stopped by the operator since).
    /// When the database cannot be read, the copy the stream holds stands: a passing fault
    /// of the gateway's own does not end a customer's stream.
    pub async fn current(
        &self,
        key: &Arc<KeyInfo>,
        (pipeline, model): (&str, Option<&str>),
        since_ms: i64,
    ) -> Result<Arc<KeyInfo>, Error> {
        let changes = self.follow.changes.load(Ordering::Acquire);
        let read = match self.follow.read.get(key.id.as_str()) {
            Some(read) => read,
            None => match db::for_stream(&self.db, &key.id).await {
                Ok(found) => {
                    let read = Read {
                        stopped_at_ms: found.as_ref().and_then(|f| f.1),
                        key: found.map(|f| Arc::new(f.0)),
                    };
                    // Kept unless a change came while it was read (checked under the map's
                    // lock, which `touch` takes after counting the change).
                    let follow = &self.follow;
                    let unchanged = || follow.changes.load(Ordering::Acquire) == changes;
                    follow.read.insert_if(key.id.clone(), read.clone(), unchanged);
                    read
                }
                Err(e) => {
                    tracing::warn!(key_id = %key.id, error = %e, "cannot read a running stream's key; its copy stands");
                    return Ok(key.clone());
                }
            },
        };
        let ended = |kind, why: &str| Err(Error::new(kind, why.to_owned()));
        let Some(now) = read.key else {
            return ended(Kind::InvalidApiKey, "this API key was deleted");
        };
        if !now.enabled {
            return ended(Kind::InvalidApiKey, "this API key is disabled");
        }
        if now.expires_at.is_some_and(|at| at <= super::now()) {
            return ended(Kind::InvalidApiKey, "this API key has expired");
        }
        if !now.allows(pipeline, model) {
            return ended(Kind::KeyNotAllowed, "this API key may no longer use this stream's job");
        }
        if read.stopped_at_ms.is_some_and(|at| at >= since_ms) {
            return ended(Kind::StreamStopped, "the operator stopped this API key's streams");
        }
        Ok(now)
    }

    /// Stops key `id`'s running streams, on every instance sharing the database: those
    /// started before now end (here at once, elsewhere at their next interval); the key stays
    /// as it is, and new streams may start. Answers the moment recorded (unix ms).
    pub async fn stop_streams(&self, id: &str) -> Result<i64, KeyError> {
        let at = super::now_ms();
        let found = db::stop_streams(&self.db, id, at).await?;
        self.follow.touch(id);
        if found { Ok(at) } else { Err(KeyError::NotFound(id.to_owned())) }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{KeyStore, KeysConfig, NewKey, record::KeyPatch};
    use crate::error::Kind;
    use std::sync::Arc;

    #[tokio::test]
    async fn a_stream_reads_what_became_of_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::open(&KeysConfig::sqlite(dir.path().to_owned())).await.unwrap().0;
        let body = serde_json::json!({ "name": "f", "allowed": ["live-video-to-video", "llm"] });
        let new: NewKey = serde_json::from_value(body).unwrap();
        let key = Arc::new(store.create(new).await.unwrap().0);
        let since = super::super::now_ms();
        let kind = |r: Result<Arc<_>, crate::error::Error>| r.err().map(|e| e.kind());
        assert_eq!(kind(store.current(&key, ("llm", None), since).await), None);
        let changed = store.changed(&key.id);

        // The pipeline taken off its list: that pipeline's streams end, and the change wakes
        // the key's streams here.
        let patch = KeyPatch { allowed: Some(vec!["llm".into()]), ..KeyPatch::default() };
        store.update(&key.id, patch).await.unwrap();
        assert!(changed.is_cancelled());
        let live = store.current(&key, ("live-video-to-video", None), since).await;
        assert_eq!(kind(live), Some(Kind::KeyNotAllowed));
        assert_eq!(kind(store.current(&key, ("llm", None), since).await), None);

        // Expired.
        let patch = KeyPatch { expires_at: Some(Some(1)), ..KeyPatch::default() };
        store.update(&key.id, patch).await.unwrap();
        assert_eq!(
            kind(store.current(&key, ("llm", None), since).await),
            Some(Kind::InvalidApiKey)
        );
        let patch = KeyPatch { expires_at: Some(None), ..KeyPatch::default() };
        store.update(&key.id, patch).await.unwrap();

        // Streams stopped: those started before end, those started after run.
        let at = store.stop_streams(&key.id).await.unwrap();
        assert_eq!(
            kind(store.current(&key, ("llm", None), since).await),
            Some(Kind::StreamStopped)
        );
        assert_eq!(kind(store.current(&key, ("llm", None), at + 1).await), None);

        // The database gone: the stream's copy stands (the gateway's fault ends nothing)...
        store.db.close().await;
        store.follow.touch(&key.id);
        assert_eq!(store.current(&key, ("llm", None), since).await.unwrap().id, key.id);
    }

    #[tokio::test]
    async fn a_deleted_key_ends_its_streams() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::open(&KeysConfig::sqlite(dir.path().to_owned())).await.unwrap().0;
        let new: NewKey = serde_json::from_value(serde_json::json!({ "name": "d" })).unwrap();
        let key = Arc::new(store.create(new).await.unwrap().0);
        store.delete(&key.id).await.unwrap();
        let gone = store.current(&key, ("llm", None), 0).await.unwrap_err();
        assert_eq!(
            (gone.kind(), gone.message()),
            (Kind::InvalidApiKey, "this API key was deleted")
        );
    }
}
