//! Customer keys (`--auth keys`): the operator's customers call the public job routes with a
//! key of their own, which says which pipelines and models they may use and how fast.
//!
//! A key's secret (`lpk_` and 64 hex digits) is shown once, when the key is created; the
//! database keeps only its SHA-256. Keys live in one SQL database reached through sqlx's `Any`
//! driver: SQLite in a file under `--data-dir` by default, PostgreSQL with `--database-url`
//! (several instances then share them). `db` holds the schema, its migrations and the queries;
//! `limit` the per-instance request-rate limiter; `record` the key's shape and its checks.
//!
//! The request path never waits on the database for a key it has seen in the last
//! [`CACHE_TTL`]: verified keys (and unknown secrets) are cached by hash, and the cache is
//! emptied by every change made through this instance's admin API. Another instance's change
//! shows here within [`CACHE_TTL`].
//!
//! Nothing here logs a secret or a key's hash.

mod db;
mod ledger;
mod limit;
pub mod price;
mod record;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

pub use ledger::{UsageLine, UsageRow};
pub use record::{KeyInfo, KeyPatch, NewKey};

use crate::error::{Error, Kind};

/// How long a looked-up key is trusted before the database is asked again.
pub const CACHE_TTL: Duration = Duration::from_secs(10);
/// Secrets cached at most (verified and unknown together); at the cap, stale entries go, and
/// if none is stale, all do. Bounds what a client sending random secrets can make us hold.
const CACHE_MAX: usize = 10_000;
/// What every secret starts with, so that one found in a file or a log is recognisable.
pub const SECRET_PREFIX: &str = "lpk_";

/// Whether public job routes need a customer key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Anyone may call them (go-livepeer's behaviour).
    None,
    /// Each call needs `Authorization: Bearer <key>`.
    Keys,
}

/// The validated settings of customer keys.
#[derive(Debug, Clone)]
pub struct KeysConfig {
    /// Whether keys are enforced (and the key store opened).
    pub auth: AuthMode,
    /// Where the SQLite database lives.
    pub data_dir: PathBuf,
    /// A PostgreSQL URL, used instead of SQLite.
    pub database_url: Option<SecretString>,
    /// The admin API's bearer token.
    pub admin_token: Option<SecretString>,
    /// What customers are charged.
    pub prices: Arc<price::CustomerPrices>,
}

/// Why a key store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A request field is invalid.
    #[error("{field}: {message}")]
    Invalid {
        /// The field at fault.
        field: &'static str,
        /// Why.
        message: String,
    },
    /// No key has this id.
    #[error("no key {0:?}")]
    NotFound(String),
    /// The database failed.
    #[error("key database: {0}")]
    Db(#[from] sqlx::Error),
}

impl From<KeyError> for Error {
    fn from(e: KeyError) -> Self {
        match e {
            KeyError::Invalid { field, message } => Error::invalid(field, message),
            KeyError::NotFound(id) => {
                Error::new(Kind::NotFound, format!("no key {id:?}")).field("id")
            }
            KeyError::Db(e) => {
                tracing::warn!(error = %e, "customer key database failed");
                Error::new(Kind::KeyStoreUnavailable, "the key database is unavailable")
            }
        }
    }
}

/// The verified key of a request, which the job routes read to check the model.
#[derive(Debug, Clone)]
pub struct Customer(pub Arc<KeyInfo>);

struct Cached {
    key: Option<Arc<KeyInfo>>,
    at: Instant,
}

/// The key store: the database, the cache of verified keys and the rate limiter.
pub struct KeyStore {
    db: sqlx::AnyPool,
    cache: Mutex<HashMap<[u8; 32], Cached>>,
    limiter: limit::Limiter,
    ledger: tokio::sync::mpsc::Sender<UsageRow>,
}

/// The usage ledger's writer, to run as a task beside the [`KeyStore`] it came with.
#[derive(Debug)]
pub struct LedgerWriter {
    db: sqlx::AnyPool,
    rx: tokio::sync::mpsc::Receiver<UsageRow>,
}

impl LedgerWriter {
    /// Writes the ledger until every [`KeyStore`] handle is gone (after the last request), or
    /// `drained` fires; then writes what it holds.
    pub async fn run(self, drained: tokio_util::sync::CancellationToken) {
        ledger::run(self.db, self.rx, drained).await;
    }
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStore").finish_non_exhaustive()
    }
}

impl KeyStore {
    /// Opens the database named by `config` (creating the data directory and the SQLite file
    /// if missing) and brings its schema up to date; answers the store and its ledger's writer.
    pub async fn open(config: &KeysConfig) -> Result<(Self, LedgerWriter), String> {
        let db = match &config.database_url {
            Some(url) => db::open(url.expose_secret()).await,
            None => {
                let dir = &config.data_dir;
                std::fs::create_dir_all(dir)
                    .map_err(|e| format!("cannot create --data-dir {}: {e}", dir.display()))?;
                let path = dir.join("gateway.sqlite").display().to_string();
                // sqlx percent-decodes the file name: its `%`, `?`, `#` and spaces are encoded.
                let path = path
                    .replace('%', "%25")
                    .replace('?', "%3F")
                    .replace('#', "%23")
                    .replace(' ', "%20");
                db::open(&format!("sqlite://{path}?mode=rwc")).await
            }
        }
        .map_err(|e| format!("cannot open the key database: {e}"))?;
        db::migrate(&db).await.map_err(|e| format!("cannot migrate the key database: {e}"))?;
        let (ledger, rx) = tokio::sync::mpsc::channel(ledger::MAX_PENDING);
        let writer = LedgerWriter { db: db.clone(), rx };
        let cache = Mutex::new(HashMap::new());
        Ok((Self { db, cache, limiter: limit::Limiter::default(), ledger }, writer))
    }

    /// Queues one row of the usage ledger; never waits (a full queue drops it, warning).
    pub fn record(&self, row: UsageRow) {
        if self.ledger.try_send(row).is_err() {
            tracing::warn!("usage ledger queue full (database down?); a row was dropped");
        }
    }

    /// Key `id`'s usage by pipeline and model, from `from` to `to` (unix seconds, `to`
    /// excluded).
    pub async fn usage(&self, id: &str, from: i64, to: i64) -> Result<Vec<UsageLine>, KeyError> {
        let ms = |s: i64| s.saturating_mul(1000);
        Ok(ledger::usage(&self.db, id, ms(from), ms(to)).await?)
    }

    /// Creates a key; answers it with its secret, which is not kept.
    pub async fn create(&self, new: NewKey) -> Result<(KeyInfo, SecretString), KeyError> {
        new.check()?;
        let secret = format!("{SECRET_PREFIX}{}", hex::encode(rand::random::<[u8; 32]>()));
        let id = format!("key_{}", hex::encode(rand::random::<[u8; 8]>()));
        let info = new.into_info(id, &secret, now());
        db::insert(&self.db, &info, &hex::encode(hash(&secret))).await?;
        self.invalidate();
        Ok((info, SecretString::from(secret)))
    }

    /// Every key, oldest first.
    pub async fn list(&self) -> Result<Vec<KeyInfo>, KeyError> {
        Ok(db::list(&self.db).await?)
    }

    /// The key `id`.
    pub async fn get(&self, id: &str) -> Result<KeyInfo, KeyError> {
        db::by_id(&self.db, id).await?.ok_or_else(|| KeyError::NotFound(id.to_owned()))
    }

    /// Changes the fields of key `id` that `patch` names.
    pub async fn update(&self, id: &str, patch: KeyPatch) -> Result<KeyInfo, KeyError> {
        let mut info = self.get(id).await?;
        patch.apply(&mut info)?;
        info.updated_at = now();
        db::update(&self.db, &info).await?;
        self.invalidate();
        Ok(info)
    }

    /// Deletes key `id`.
    pub async fn delete(&self, id: &str) -> Result<(), KeyError> {
        let found = db::delete(&self.db, id).await?;
        self.invalidate();
        if found { Ok(()) } else { Err(KeyError::NotFound(id.to_owned())) }
    }

    /// The key whose secret is `secret`, if it is known, enabled and unexpired; cached.
    pub async fn authenticate(&self, secret: &str) -> Result<Arc<KeyInfo>, Error> {
        let digest = hash(secret);
        let cached = self.cached(&digest);
        let key = match cached {
            Some(key) => key,
            None => {
                let found = db::by_hash(&self.db, &hex::encode(digest))
                    .await
                    .map_err(KeyError::from)?
                    .map(Arc::new);
                self.remember(digest, found.clone());
                found
            }
        };
        let invalid = |why: &str| Error::new(Kind::InvalidApiKey, why.to_owned());
        let key = key.ok_or_else(|| invalid("invalid API key"))?;
        if !key.enabled {
            return Err(invalid("this API key is disabled"));
        }
        if key.expires_at.is_some_and(|at| at <= now()) {
            return Err(invalid("this API key has expired"));
        }
        Ok(key)
    }

    /// Counts one request of `key` against its requests-per-minute limit: `Err` with the
    /// seconds to wait when it is over.
    pub fn admit(&self, key: &KeyInfo) -> Result<(), Error> {
        let Some(rpm) = key.requests_per_minute else { return Ok(()) };
        self.limiter.admit(&key.id, rpm, Instant::now()).map_err(|wait| {
            Error::new(
                Kind::RateLimited,
                format!("over this key's limit of {rpm} requests per minute"),
            )
            .retry_after(wait)
        })
    }

    fn cached(&self, digest: &[u8; 32]) -> Option<Option<Arc<KeyInfo>>> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.get(digest).filter(|c| c.at.elapsed() < CACHE_TTL).map(|c| c.key.clone())
    }

    fn remember(&self, digest: [u8; 32], key: Option<Arc<KeyInfo>>) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CACHE_MAX {
            cache.retain(|_, c| c.at.elapsed() < CACHE_TTL);
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
        }
        cache.insert(digest, Cached { key, at: Instant::now() });
    }

    /// Forgets every cached key, after a change through the admin API.
    fn invalidate(&self) {
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

fn hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    since.map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Unix seconds now.
pub fn now() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    since.map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store(dir: &std::path::Path) -> KeyStore {
        let config = KeysConfig {
            auth: AuthMode::Keys,
            data_dir: dir.join("nested/da ta#1?%20"),
            database_url: None,
            admin_token: None,
            prices: Default::default(),
        };
        KeyStore::open(&config).await.unwrap().0
    }

    fn new_key(name: &str) -> NewKey {
        serde_json::from_value(serde_json::json!({ "name": name })).unwrap()
    }

    #[tokio::test]
    async fn verified_keys_are_served_from_the_cache_and_a_database_fault_is_ours() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path()).await;
        assert!(dir.path().join("nested/da ta#1?%20/gateway.sqlite").exists());
        let (info, secret) = store.create(new_key("a")).await.unwrap();
        let key = store.authenticate(secret.expose_secret()).await.unwrap();
        assert_eq!(key.id, info.id);
        let unknown = store.authenticate("lpk_unknown").await.unwrap_err();
        assert_eq!(unknown.kind(), Kind::InvalidApiKey);

        // With the database gone, cached answers stand; a new secret is the gateway's fault.
        store.db.close().await;
        assert_eq!(store.authenticate(secret.expose_secret()).await.unwrap().id, info.id);
        let cached = store.authenticate("lpk_unknown").await.unwrap_err();
        assert_eq!(cached.kind(), Kind::InvalidApiKey);
        let fault = store.authenticate("lpk_other").await.unwrap_err();
        assert_eq!(fault.kind(), Kind::KeyStoreUnavailable);
    }

    #[tokio::test]
    async fn migrations_run_once_and_a_reopened_database_keeps_its_keys() {
        let dir = tempfile::tempdir().unwrap();
        let (id, secret) = {
            let store = store(dir.path()).await;
            let (info, secret) = store.create(new_key("kept")).await.unwrap();
            (info.id, secret)
        };
        let store = store(dir.path()).await;
        assert_eq!(store.authenticate(secret.expose_secret()).await.unwrap().id, id);
        let versions = sqlx::query("SELECT version FROM schema_migrations").fetch_all(&store.db);
        assert_eq!(versions.await.unwrap().len(), 2);
    }
}
