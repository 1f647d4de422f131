//! Customer keys (`--auth keys`): the operator's customers call the public job routes with a
//! key of their own, which says which pipelines and models they may use and how fast.
//!
//! A key's secret (`lpk_` and 64 hex digits) is shown once, when the key is created; the
//! database keeps only its SHA-256. Keys live in one SQL database reached through sqlx's `Any`
//! driver: SQLite in a file under `--data-dir` by default, PostgreSQL with `--database-url`
//! (several instances then share them). `db` holds the schema, its migrations and the queries;
//! `limit` the per-instance request-rate limiter; `record` the key's shape and its checks.
//!
//! Several instances sharing PostgreSQL share budgets (`lease`: each instance leases part of a
//! budget and serves reservations from it in memory), requests per minute (`window`: tokens
//! of each minute taken in chunks) and concurrent streams (`meter`); `instance` registers each
//! instance with a heartbeat, so what a crashed one held is given back by the others.
//!
//! The request path never waits on the database for a key it has seen in the last
//! [`CACHE_TTL`]: verified keys (and unknown secrets) are cached by hash, and the cache is
//! emptied by every change made through this instance's admin API. Another instance's change
//! shows here within [`CACHE_TTL`].
//!
//! Nothing here logs a secret or a key's hash.

pub mod chainlink;
mod db;
mod follow;
mod instance;
mod lease;
mod ledger;
mod limit;
pub mod meter;
pub mod price;
mod record;
mod tab;
mod ttl;
mod window;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

pub use ledger::{CSV_HEADER, LedgerRow, UsageLine, UsageRow};
pub use record::{KeyInfo, KeyPatch, NewKey};
pub use tab::Tab;

use crate::error::{Error, Kind};

/// How long a looked-up key is trusted before the database is asked again.
pub const CACHE_TTL: Duration = Duration::from_secs(10);
/// Entries of each cache of keys at most (for secrets: verified and unknown together); at
/// the cap, stale entries go, and if none is stale, all do (see `ttl`).
const CACHE_MAX: usize = 10_000;
/// Ledger rows kept free for jobs in flight: new jobs are refused when fewer are left.
const LEDGER_HEADROOM: usize = 1024;
/// At shutdown, how long the ledger's writer waits for promised rows ([`RowPromise`]) before
/// its last write: within the time the task set gives its tasks once the drain is over.
const PROMISED_ROWS_WAIT: Duration = Duration::from_secs(1);
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
    /// How long an instance's budget leases and streams outlive its last heartbeat in the
    /// database (`--key-lease-expiry`), after which another instance gives them back.
    pub lease_expiry: Duration,
}

impl KeysConfig {
    /// The default of [`KeysConfig::lease_expiry`].
    pub const DEFAULT_LEASE_EXPIRY: Duration = Duration::from_secs(30);

    /// Keys on, in a SQLite database under `data_dir`, with no admin token and no prices:
    /// the base of the tests' and benchmarks' configurations.
    pub fn sqlite(data_dir: PathBuf) -> Self {
        Self {
            auth: AuthMode::Keys,
            data_dir,
            database_url: None,
            admin_token: None,
            prices: Default::default(),
            lease_expiry: Self::DEFAULT_LEASE_EXPIRY,
        }
    }
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

/// A key's budget in its current period; amounts are USD with 9 decimals.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BudgetStatus {
    /// The budget.
    pub budget_usd: String,
    /// What settled jobs have cost.
    pub spent_usd: String,
    /// What jobs in flight have reserved, and the instances' leases of the budget (each
    /// given back after a few idle seconds; see `lease`).
    pub reserved_usd: String,
    /// What is left.
    pub remaining_usd: String,
    /// What is left, nano-USD.
    pub remaining_nusd: i64,
    /// Unix seconds the period began (none: the key's lifetime).
    pub period_start: Option<i64>,
    /// Unix seconds it ends.
    pub period_end: Option<i64>,
}

/// The verified key of a request, which the job routes read to check the model.
#[derive(Debug, Clone)]
pub struct Customer(pub Arc<KeyInfo>);

/// The key store: the database, the cache of verified keys and the rate limiter.
pub struct KeyStore {
    db: sqlx::AnyPool,
    /// Keys of verified secrets, and unknown secrets, by the secret's hash.
    cache: ttl::TtlMap<[u8; 32], Option<Arc<KeyInfo>>>,
    limiter: limit::Limiter,
    ledger: tokio::sync::mpsc::Sender<UsageRow>,
    prices: Arc<price::CustomerPrices>,
    /// This instance's budget leases, and its registration in the database.
    leases: Arc<lease::Leases>,
    /// This instance's tokens of the shared requests-per-minute windows.
    windows: window::Windows,
    /// Where what customers are charged is also reported (the dashboard's revenue).
    recent: std::sync::OnceLock<crate::recent::Recent>,
    /// What running streams read of their keys (see `follow`).
    follow: follow::Follow,
    /// Rows promised by work that goes on after its answer ([`RowPromise`]).
    promised: tokio_util::task::TaskTracker,
}

/// A row the usage ledger's writer waits for at shutdown, while this is held: work that
/// writes its row after its answer (an async job, when it ends) holds one until it has
/// queued the row. The writer stops when shutdown's drain is over, and a row queued after its
/// last write would be lost.
#[derive(Debug)]
pub struct RowPromise {
    /// Counted by the writer's tracker until dropped.
    _token: tokio_util::task::task_tracker::TaskTrackerToken,
}

/// The usage ledger's writer, to run as a task beside the [`KeyStore`] it came with.
#[derive(Debug)]
pub struct LedgerWriter {
    db: sqlx::AnyPool,
    rx: tokio::sync::mpsc::Receiver<UsageRow>,
    leases: Arc<lease::Leases>,
    promised: tokio_util::task::TaskTracker,
}

impl LedgerWriter {
    /// Writes the ledger until every [`KeyStore`] handle is gone (after the last request), or
    /// `end` fires (shutdown fires it after every request is gone: `Tasks::spawn_last`) and
    /// the rows promised then ([`RowPromise`]) have come (or a short while has passed); then
    /// writes what it holds, and gives back every budget lease and stream this instance holds
    /// in the database.
    pub async fn run(self, end: tokio_util::sync::CancellationToken) {
        let Self { db, rx, leases, promised } = self;
        let last = tokio_util::sync::CancellationToken::new();
        let promises_kept = async {
            end.cancelled().await;
            promised.close();
            let kept = tokio::time::timeout(PROMISED_ROWS_WAIT, promised.wait()).await;
            if kept.is_err() {
                tracing::warn!(rows = promised.len(), "promised usage rows never came");
            }
            last.cancel();
            // The writer ends on `last`, this future with it.
            std::future::pending::<()>().await;
        };
        tokio::select! {
            () = ledger::run(db.clone(), rx, last.clone()) => {}
            () = promises_kept => {}
        }
        match crate::database::answered(leases.instance.close(&db)).await {
            Ok(()) => tracing::info!("budget leases and streams of this instance given back"),
            Err(e) => {
                tracing::warn!(error = %e, "cannot give back this instance's leases (its expiry will)")
            }
        }
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
        Self::open_sized(config, ledger::MAX_PENDING).await
    }

    /// [`KeyStore::open`] with a ledger buffer of `buffer` rows.
    async fn open_sized(
        config: &KeysConfig,
        buffer: usize,
    ) -> Result<(Self, LedgerWriter), String> {
        let url = config.database_url.as_ref().map(|u| u.expose_secret().to_owned());
        let url = crate::database::url(url.as_deref(), &config.data_dir)?;
        let db = db::open(&url).await.map_err(|e| format!("cannot open the key database: {e}"))?;
        db::migrate(&db).await.map_err(|e| format!("cannot migrate the key database: {e}"))?;
        let instance = instance::Instance::register(&db, config.lease_expiry)
            .await
            .map_err(|e| format!("cannot register in the key database: {e}"))?;
        let leases = Arc::new(lease::Leases::new(db.clone(), instance));
        tokio::spawn(lease::heartbeat(leases.clone()));
        let (ledger, rx) = tokio::sync::mpsc::channel(buffer);
        let promised = tokio_util::task::TaskTracker::new();
        let writer =
            LedgerWriter { db: db.clone(), rx, leases: leases.clone(), promised: promised.clone() };
        let cache = ttl::TtlMap::default();
        let prices = config.prices.clone();
        if let Some(feed) = prices.feed() {
            watch_feed(feed).await;
        }
        let (limiter, windows) = (limit::Limiter::default(), window::Windows::default());
        let recent = std::sync::OnceLock::new();
        let follow = follow::Follow::default();
        let store =
            Self { db, cache, limiter, ledger, prices, leases, windows, recent, follow, promised };
        Ok((store, writer))
    }

    /// Queues one row of the usage ledger; never waits. The queue is checked before each job
    /// ([`KeyStore::ledger_ready`]), so a row is dropped (with a warning) only when many jobs
    /// that passed that check end together while the database is down.
    pub fn record(&self, row: UsageRow) {
        if let (Some(recent), Ok(charged @ 1..)) =
            (self.recent.get(), u64::try_from(row.charged_nusd))
        {
            recent.charged(charged, row.at_ms);
        }
        if self.ledger.try_send(row).is_err() {
            tracing::warn!("usage ledger queue full (database down?); a row was dropped");
        }
    }

    /// A promise of a row to come (see [`RowPromise`]).
    pub fn promise_row(&self) -> RowPromise {
        RowPromise { _token: self.promised.token() }
    }

    /// `Err` 503 when the usage ledger cannot take more rows (its database has been down long
    /// enough to fill its buffer): paid traffic waits rather than go unrecorded.
    pub fn ledger_ready(&self) -> Result<(), Error> {
        // Room is kept for the jobs in flight, which record their rows when they end.
        if self.ledger.capacity() > LEDGER_HEADROOM {
            return Ok(());
        }
        let message = "the usage ledger's database is unavailable and its buffer is full";
        Err(Error::new(Kind::LedgerUnavailable, message))
    }

    /// Reports what customers are charged to `recent` (the dashboard's revenue) from now on.
    pub fn report_to(&self, recent: crate::recent::Recent) {
        let _ = self.recent.set(recent);
    }

    /// The customer prices.
    pub fn prices(&self) -> &price::CustomerPrices {
        &self.prices
    }

    /// A new tab for a request of `key` on `pipeline`.
    pub fn tab(self: &Arc<Self>, key: Arc<KeyInfo>, pipeline: &'static str) -> Tab {
        Tab::new(self.clone(), key, pipeline)
    }

    /// Key `id`'s usage by pipeline and model, from `from` to `to` (unix seconds, `to`
    /// excluded).
    pub async fn usage(&self, id: &str, from: i64, to: i64) -> Result<Vec<UsageLine>, KeyError> {
        let ms = |s: i64| s.saturating_mul(1000);
        Ok(ledger::usage(&self.db, id, ms(from), ms(to)).await?)
    }

    /// Key `key`'s budget in its current period (none when it has no budget).
    pub async fn budget(&self, key: &KeyInfo) -> Result<Option<BudgetStatus>, KeyError> {
        let Some(budget) = key.budget_micro_usd else { return Ok(None) };
        let budget = i64::try_from(budget.saturating_mul(1000)).unwrap_or(i64::MAX);
        let start = tab::period_start(key, now());
        let (spent, reserved) = db::spend(&self.db, &key.id, start).await?.unwrap_or((0, 0));
        let end = key.budget_period_seconds.and_then(|p| i64::try_from(p).ok());
        let end = end.map(|p| start.saturating_add(p));
        let remaining = budget.saturating_sub(spent).saturating_sub(reserved).max(0);
        Ok(Some(BudgetStatus {
            budget_usd: price::usd_text(budget),
            spent_usd: price::usd_text(spent),
            reserved_usd: price::usd_text(reserved),
            remaining_usd: price::usd_text(remaining),
            remaining_nusd: remaining,
            period_start: (start > 0).then_some(start),
            period_end: end,
        }))
    }

    /// Every ledger row of key `id` (every key's when `None`) from `from` to `to` (unix
    /// seconds), oldest first, at most `limit`.
    pub async fn rows(
        &self,
        id: Option<&str>,
        from: i64,
        to: i64,
        limit: u32,
    ) -> Result<Vec<LedgerRow>, KeyError> {
        let ms = |s: i64| s.saturating_mul(1000);
        Ok(ledger::rows(&self.db, id, ms(from), ms(to), limit).await?)
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
        self.follow.touch(id);
        Ok(info)
    }

    /// Deletes key `id`.
    pub async fn delete(&self, id: &str) -> Result<(), KeyError> {
        let found = db::delete(&self.db, id).await?;
        self.invalidate();
        self.follow.touch(id);
        if found { Ok(()) } else { Err(KeyError::NotFound(id.to_owned())) }
    }

    /// The key whose secret is `secret`, if it is known, enabled and unexpired; cached.
    pub async fn authenticate(&self, secret: &str) -> Result<Arc<KeyInfo>, Error> {
        let digest = hash(secret);
        let cached = self.cache.get(&digest);
        let key = match cached {
            Some(key) => key,
            None => {
                let found = db::by_hash(&self.db, &hex::encode(digest))
                    .await
                    .map_err(KeyError::from)?
                    .map(Arc::new);
                self.cache.insert_if(digest, found.clone(), || true);
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

    /// Counts one request of `key` against its requests-per-minute limit, this instance's
    /// and the one shared by every instance of the database (see `window`): `Err` with the
    /// seconds to wait when it is over.
    pub async fn admit(&self, key: &KeyInfo) -> Result<(), Error> {
        let Some(rpm) = key.requests_per_minute else { return Ok(()) };
        let over = |wait: u32| {
            Error::new(
                Kind::RateLimited,
                format!("over this key's limit of {rpm} requests per minute"),
            )
            .retry_after(wait)
        };
        self.limiter.admit(&key.id, rpm, Instant::now()).map_err(over)?;
        self.windows.admit(&self.db, &key.id, rpm, now()).await.map_err(over)
    }

    /// Forgets every cached key, after a change through the admin API.
    fn invalidate(&self) {
        self.cache.clear();
    }
}

/// Reads the ETH/USD feed once (a failure is logged: prices in wei answer 503 until a read
/// succeeds), then every [`chainlink::REFRESH`] while the feed is in use.
async fn watch_feed(feed: &Arc<chainlink::Feed>) {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build();
    let http = http.unwrap_or_default();
    match feed.read(&http).await {
        Ok(()) => tracing::info!(feed = %feed.address, "ETH/USD feed read"),
        Err(e) => tracing::warn!(error = %e, "cannot read the ETH/USD feed"),
    }
    tokio::spawn(chainlink::refresh(Arc::downgrade(feed), http));
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
    crate::database::now()
}

#[cfg(test)]
mod tests {
    use super::*;
    use livepeer_pm::Ratio;

    async fn store(dir: &std::path::Path) -> KeyStore {
        let config = KeysConfig::sqlite(dir.join("nested/da ta#1?%20"));
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
        assert_eq!(versions.await.unwrap().len(), 5);
    }

    #[tokio::test]
    async fn a_full_ledger_refuses_new_jobs_with_503_until_it_drains() {
        let dir = tempfile::tempdir().unwrap();
        let config = KeysConfig::sqlite(dir.path().to_owned());
        // A writer that does not write (as while its database is down): the buffer fills.
        let (store, writer) = KeyStore::open_sized(&config, LEDGER_HEADROOM + 2).await.unwrap();
        let store = Arc::new(store);
        let (info, _) = store.create(new_key("k")).await.unwrap();
        let row = |i: usize| {
            store.tab(Arc::new(info.clone()), "llm").row(i as i64, String::new(), 200, 1)
        };
        store.ledger_ready().unwrap();
        store.record(row(0));
        store.ledger_ready().unwrap();
        store.record(row(1));
        let refused = store.ledger_ready().unwrap_err();
        assert_eq!(refused.kind(), Kind::LedgerUnavailable);
        // The writer back: the rows are written, and jobs are taken again.
        let drained = tokio_util::sync::CancellationToken::new();
        let task = tokio::spawn(writer.run(drained.clone()));
        let deadline = Instant::now() + Duration::from_secs(10);
        while store.ledger_ready().is_err() {
            assert!(Instant::now() < deadline, "the ledger never drained");
            tokio::task::yield_now().await;
        }
        drained.cancel();
        task.await.unwrap();
        assert_eq!(store.rows(Some(&info.id), 0, i64::MAX / 1000, 10).await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_tab_dropped_before_its_answer_releases_its_reservation_in_a_row_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let table = r#"{"price": [{"pipeline": "text-to-image", "usd": "0.01"}]}"#;
        let config = KeysConfig {
            prices: Arc::new(price::CustomerPrices::parse(Some(table), None).unwrap()),
            ..KeysConfig::sqlite(dir.path().to_owned())
        };
        let (store, writer) = KeyStore::open(&config).await.unwrap();
        let store = Arc::new(store);
        let drained = tokio_util::sync::CancellationToken::new();
        let writing = tokio::spawn(writer.run(drained.clone()));
        let body = serde_json::json!({ "name": "b", "budget_micro_usd": 1_000_000 });
        let (info, _) = store.create(serde_json::from_value(body).unwrap()).await.unwrap();
        let key = Arc::new(info.clone());

        // A megapixel at 0.01 USD is reserved, then the handler is dropped (client gone).
        let tab = store.tab(key.clone(), "text-to-image");
        tab.reserve("m\0odel", 1_000_000, None).await.unwrap();
        // Reserved with this instance's lease: eight such jobs.
        assert_eq!(db::spend(&store.db, &info.id, 0).await.unwrap(), Some((0, 80_000_000)));
        drop(tab);
        // A tab that held no money leaves no row.
        drop(store.tab(key, "text-to-image"));

        let deadline = Instant::now() + Duration::from_secs(10);
        while store.usage(&info.id, 0, i64::MAX / 1000).await.unwrap().is_empty() {
            assert!(Instant::now() < deadline, "the dropped tab's row was never written");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Its reservation went back to the lease, which the instance gives back as it stops.
        drained.cancel();
        writing.await.unwrap();
        assert_eq!(db::spend(&store.db, &info.id, 0).await.unwrap(), Some((0, 0)));
        let lines = store.usage(&info.id, 0, i64::MAX / 1000).await.unwrap();
        assert_eq!(lines.len(), 1, "{lines:?}");
        let line = &lines[0];
        assert_eq!((line.requests, line.errors, line.charged_nusd), (1, 1, 0), "{lines:?}");
        // The client's model reaches the ledger without its control characters.
        assert_eq!(line.model, "model");
    }

    #[tokio::test]
    async fn a_settled_job_owes_what_it_used_and_never_more_than_its_bound() {
        let dir = tempfile::tempdir().unwrap();
        // 1000 USD per million tokens (1000 nano-USD a token); a multiple for one model.
        let table = r#"{"price": [{"pipeline": "llm", "usd": "1000"},
            {"pipeline": "llm", "model": "m2", "orchestrator_multiple": "3"}]}"#;
        let prices = price::CustomerPrices::parse(Some(table), Some("2000")).unwrap();
        let config =
            KeysConfig { prices: Arc::new(prices), ..KeysConfig::sqlite(dir.path().to_owned()) };
        let store = Arc::new(KeyStore::open(&config).await.unwrap().0);
        let (info, _) = store.create(new_key("s")).await.unwrap();
        let key = Arc::new(info);
        let charged = |tab: &Tab| tab.row(0, String::new(), 200, 0).charged_nusd;
        let tab = store.tab(key.clone(), "llm");
        tab.reserve("m", 100, None).await.unwrap();
        tab.served("o");
        assert_eq!(charged(&tab), 100_000_000);
        tab.settle_units(8);
        assert_eq!(charged(&tab), 8_000_000);
        // A later report stands, up to the bound and no further.
        tab.settle_units(1_000);
        assert_eq!(charged(&tab), 100_000_000);
        assert_eq!(tab.row(0, String::new(), 200, 0).units, 100);
        // A multiple: 3 × the fee scaled to the tokens used, at 2000 USD an ETH.
        let tab = store.tab(key, "llm");
        let fee = Ratio::from_u64(100_000_000_000_000);
        tab.reserve("m2", 100, Some(&fee)).await.unwrap();
        tab.served("o");
        // 3 × 10^14 wei = 0.0003 ETH = 0.6 USD.
        assert_eq!(charged(&tab), 600_000_000);
        tab.settle_units(25);
        assert_eq!(charged(&tab), 150_000_000);
    }

    /// A job is settled at the ETH/USD rate it was reserved at: not at a rate that changed
    /// since, and not charged its whole bound when the feed went stale meanwhile.
    #[tokio::test]
    async fn a_settlement_is_priced_at_its_reservation_s_rate() {
        let dir = tempfile::tempdir().unwrap();
        let table = r#"{"price": [{"pipeline": "llm", "orchestrator_multiple": "3"}]}"#;
        let url = "http://127.0.0.1:9/".parse().unwrap();
        let feed = Arc::new(chainlink::Feed::new(url, Default::default(), CACHE_TTL));
        let prices = price::CustomerPrices::parse_with_feed(Some(table), None, Some(feed.clone()));
        let config = KeysConfig {
            prices: Arc::new(prices.unwrap()),
            ..KeysConfig::sqlite(dir.path().to_owned())
        };
        let store = Arc::new(KeyStore::open(&config).await.unwrap().0);
        let key = Arc::new(store.create(new_key("rate")).await.unwrap().0);
        let charged = |tab: &Tab| tab.row(0, String::new(), 200, 0).charged_nusd;
        let fee = Ratio::from_u64(100_000_000_000_000);
        for later in [Some((Ratio::from_u64(4000), now())), None] {
            feed.set(Some((Ratio::from_u64(2000), now())));
            let tab = store.tab(key.clone(), "llm");
            tab.reserve("m", 100, Some(&fee)).await.unwrap();
            tab.served("o");
            // 3 × 10^14 wei at 2000 USD an ETH: 0.6 USD.
            assert_eq!(charged(&tab), 600_000_000);
            // The rate changes, or the feed goes stale; a quarter of the bound is used.
            feed.set(later);
            tab.settle_units(25);
            assert_eq!(charged(&tab), 150_000_000, "the rate {later:?} at settlement");
        }
    }

    /// At shutdown the ledger's writer waits for the rows promised to it: a row queued after
    /// the drain is over, while its promise was held (an async job ending as shutdown began),
    /// is written, not lost after the writer's last write.
    #[tokio::test]
    async fn the_writer_waits_at_shutdown_for_the_rows_promised() {
        let dir = tempfile::tempdir().unwrap();
        let config = KeysConfig::sqlite(dir.path().to_owned());
        let (store, writer) = KeyStore::open(&config).await.unwrap();
        let store = Arc::new(store);
        let (info, _) = store.create(new_key("promised")).await.unwrap();
        let tab = store.tab(Arc::new(info.clone()), "image-to-video");
        let promise = tab.promise_row();
        let drained = tokio_util::sync::CancellationToken::new();
        let writer = tokio::spawn(writer.run(drained.clone()));
        drained.cancel();
        // The writer runs up to where it waits (this runtime has one thread): without the
        // promise, past its last write.
        for _ in 0..8 {
            tokio::task::yield_now().await;
        }
        tab.record("late".into(), 500);
        drop(promise);
        writer.await.unwrap();
        let rows = store.rows(Some(&info.id), 0, i64::MAX / 1000, 10).await.unwrap();
        assert_eq!(rows.len(), 1, "the promised row was lost");
    }

    #[test]
    fn ledger_text_loses_control_characters_and_is_cut_on_a_character() {
        assert_eq!(ledger::clean("a\0b\nc"), "abc");
        let long = "é".repeat(200);
        let cut = ledger::clean(&long);
        assert_eq!(cut.len(), 256);
        assert!(long.starts_with(&cut));
    }
}
