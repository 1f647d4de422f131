//! The key database through sqlx's `Any` driver: one set of queries for SQLite and
//! PostgreSQL. Only types both speak alike are used (TEXT, BIGINT; JSON kept as TEXT, flags as
//! 0/1), with `$n` placeholders, which sqlx's SQLite driver reads as positions too.
//!
//! Its migrations ([`MIGRATIONS`]) run through the shared runner of [`crate::database`],
//! recorded in `schema_migrations`.

use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

use super::record::KeyInfo;
use crate::database::answered;

/// The schema's versions, in order; a released version is never edited, only followed.
const MIGRATIONS: crate::database::Migrations = &[
    (
        1,
        &["CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        secret_hash TEXT NOT NULL UNIQUE,
        prefix TEXT NOT NULL,
        name TEXT NOT NULL,
        metadata TEXT NOT NULL,
        allowed TEXT NOT NULL,
        requests_per_minute BIGINT,
        max_streams BIGINT,
        budget_micro_usd BIGINT,
        budget_period_seconds BIGINT,
        expires_at BIGINT,
        enabled BIGINT NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
    )"],
    ),
    (
        2,
        &[
            "CREATE TABLE usage_events (
            at_ms BIGINT NOT NULL,
            key_id TEXT NOT NULL,
            request_id TEXT NOT NULL,
            pipeline TEXT NOT NULL,
            model TEXT NOT NULL,
            status BIGINT NOT NULL,
            latency_us BIGINT NOT NULL
        )",
            "CREATE INDEX usage_events_key_at ON usage_events (key_id, at_ms)",
        ],
    ),
    (
        3,
        &[
            // Money in the ledger: units, who served and what it was paid (exact wei as
            // text: they outgrow 64 bits), what the customer is charged (nano-USD).
            "ALTER TABLE usage_events ADD COLUMN units BIGINT NOT NULL DEFAULT 0",
            "ALTER TABLE usage_events ADD COLUMN orchestrator TEXT NOT NULL DEFAULT ''",
            "ALTER TABLE usage_events ADD COLUMN tickets BIGINT NOT NULL DEFAULT 0",
            "ALTER TABLE usage_events ADD COLUMN paid_ev_wei TEXT NOT NULL DEFAULT '0'",
            "ALTER TABLE usage_events ADD COLUMN paid_fee_wei TEXT NOT NULL DEFAULT '0'",
            "ALTER TABLE usage_events ADD COLUMN charged_nusd BIGINT NOT NULL DEFAULT 0",
            "ALTER TABLE usage_events ADD COLUMN outcome TEXT NOT NULL DEFAULT ''",
            // Each key's spend per budget period: settled, and reserved by jobs in flight.
            "CREATE TABLE key_spend (
            key_id TEXT NOT NULL,
            period_start BIGINT NOT NULL,
            spent_nusd BIGINT NOT NULL,
            reserved_nusd BIGINT NOT NULL,
            PRIMARY KEY (key_id, period_start)
        )",
        ],
    ),
    (
        4,
        &[
            // Live gateway instances, each renewing its expiry (unix ms) while it runs; an
            // expired one's holds are released by any other (see `instance`).
            "CREATE TABLE key_instances (
            instance_id TEXT PRIMARY KEY,
            expires_at_ms BIGINT NOT NULL
        )",
            // What each instance holds in the shared counters: `budget` (nano-USD of
            // `key_spend.reserved_nusd`: its lease and its requests' reservations) and
            // `streams` (streams of `key_streams.held`), so a crashed one's can be given back.
            "CREATE TABLE key_holds (
            instance_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            key_id TEXT NOT NULL,
            period_start BIGINT NOT NULL,
            amount BIGINT NOT NULL,
            PRIMARY KEY (instance_id, kind, key_id, period_start)
        )",
            // Each key's streams running on every instance together.
            "CREATE TABLE key_streams (
            key_id TEXT PRIMARY KEY,
            held BIGINT NOT NULL
        )",
            // Each key's requests admitted per minute window (unix seconds of its start), by
            // every instance together, in chunks (see `window`).
            "CREATE TABLE key_rate (
            key_id TEXT NOT NULL,
            window_start BIGINT NOT NULL,
            used BIGINT NOT NULL,
            PRIMARY KEY (key_id, window_start)
        )",
        ],
    ),
    (
        5,
        &[
            // When the operator last stopped the key's streams (unix ms): every instance ends
            // those started before (see `follow`).
            "ALTER TABLE api_keys ADD COLUMN streams_stopped_at_ms BIGINT",
            // Ledger batches written, so that one whose commit succeeded but whose answer was
            // lost is not written (and charged) again when retried (see `ledger`).
            "CREATE TABLE ledger_batches (
            batch_id TEXT PRIMARY KEY,
            at_ms BIGINT NOT NULL
        )",
            "CREATE INDEX ledger_batches_at ON ledger_batches (at_ms)",
        ],
    ),
];

/// Connections to the database at most: SQLite writes one at a time anyway, and PostgreSQL
/// servers are shared by several instances.
const MAX_CONNECTIONS: u32 = 8;

/// Connects to `url` (`sqlite://…` or `postgres://…`).
pub(super) async fn open(url: &str) -> Result<AnyPool, sqlx::Error> {
    crate::database::connect(url, MAX_CONNECTIONS).await
}

/// Applies the key store's migrations the database has not seen.
pub(super) async fn migrate(db: &AnyPool) -> Result<(), sqlx::Error> {
    crate::database::migrate(db, "schema_migrations", MIGRATIONS).await
}

const COLUMNS: &str = "id, prefix, name, metadata, allowed, requests_per_minute, max_streams, \
    budget_micro_usd, budget_period_seconds, expires_at, enabled, created_at, updated_at";

/// Stores a new key under its secret's hash.
pub(super) async fn insert(db: &AnyPool, k: &KeyInfo, hash: &str) -> Result<(), sqlx::Error> {
    let sql = format!(
        "INSERT INTO api_keys ({COLUMNS}, secret_hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
    );
    answered(bind_all(sqlx::query(&sql), k).bind(hash.to_owned()).execute(db)).await?;
    Ok(())
}

/// Writes every field of a key but its id, prefix, creation time and hash.
pub(super) async fn update(db: &AnyPool, k: &KeyInfo) -> Result<(), sqlx::Error> {
    // The same binding order as `insert`; $1 is the id, $2 and $12 are not changed.
    let sql = "UPDATE api_keys SET name = $3, metadata = $4, allowed = $5, \
        requests_per_minute = $6, max_streams = $7, budget_micro_usd = $8, \
        budget_period_seconds = $9, expires_at = $10, enabled = $11, updated_at = $13 \
        WHERE id = $1 AND prefix = $2 AND created_at = $12";
    answered(bind_all(sqlx::query(sql), k).execute(db)).await?;
    Ok(())
}

type Query<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

fn bind_all<'q>(q: Query<'q>, k: &KeyInfo) -> Query<'q> {
    let int = |v: Option<u64>| v.and_then(|v| i64::try_from(v).ok());
    q.bind(k.id.clone())
        .bind(k.prefix.clone())
        .bind(k.name.clone())
        .bind(k.metadata.to_string())
        .bind(serde_json::Value::from(k.allowed.clone()).to_string())
        .bind(k.requests_per_minute.map(i64::from))
        .bind(k.max_streams.map(i64::from))
        .bind(int(k.budget_micro_usd))
        .bind(int(k.budget_period_seconds))
        .bind(k.expires_at)
        .bind(i64::from(k.enabled))
        .bind(k.created_at)
        .bind(k.updated_at)
}

/// Every key, oldest first.
pub(super) async fn list(db: &AnyPool) -> Result<Vec<KeyInfo>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM api_keys ORDER BY created_at, id");
    answered(sqlx::query(&sql).fetch_all(db)).await?.iter().map(row).collect()
}

/// The key `id`.
pub(super) async fn by_id(db: &AnyPool, id: &str) -> Result<Option<KeyInfo>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM api_keys WHERE id = $1");
    let found = answered(sqlx::query(&sql).bind(id.to_owned()).fetch_optional(db)).await?;
    found.as_ref().map(row).transpose()
}

/// The key `id` and when its streams were last stopped (unix ms), for its running streams.
pub(super) async fn for_stream(
    db: &AnyPool,
    id: &str,
) -> Result<Option<(KeyInfo, Option<i64>)>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS}, streams_stopped_at_ms FROM api_keys WHERE id = $1");
    let found = answered(sqlx::query(&sql).bind(id.to_owned()).fetch_optional(db)).await?;
    found.map(|r| Ok((row(&r)?, r.try_get("streams_stopped_at_ms")?))).transpose()
}

/// Records that key `id`'s streams started before `at_ms` are stopped: whether there is one.
pub(super) async fn stop_streams(db: &AnyPool, id: &str, at_ms: i64) -> Result<bool, sqlx::Error> {
    let sql = "UPDATE api_keys SET streams_stopped_at_ms = $2 WHERE id = $1";
    let done = answered(sqlx::query(sql).bind(id.to_owned()).bind(at_ms).execute(db)).await?;
    Ok(done.rows_affected() > 0)
}

/// The key whose secret hashes to `hash` (hex).
pub(super) async fn by_hash(db: &AnyPool, hash: &str) -> Result<Option<KeyInfo>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM api_keys WHERE secret_hash = $1");
    let found = answered(sqlx::query(&sql).bind(hash.to_owned()).fetch_optional(db)).await?;
    found.as_ref().map(row).transpose()
}

/// Deletes key `id`: whether there was one.
pub(super) async fn delete(db: &AnyPool, id: &str) -> Result<bool, sqlx::Error> {
    let sql = "DELETE FROM api_keys WHERE id = $1";
    let done = answered(sqlx::query(sql).bind(id.to_owned()).execute(db)).await?;
    Ok(done.rows_affected() > 0)
}

/// What key `key_id` has spent and has reserved in the period from `period_start`, read
/// from the pool or inside a transaction (`db`).
pub(super) async fn spend<'e, E>(
    db: E,
    key_id: &str,
    period_start: i64,
) -> Result<Option<(i64, i64)>, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let sql =
        "SELECT spent_nusd, reserved_nusd FROM key_spend WHERE key_id = $1 AND period_start = $2";
    let query = sqlx::query(sql).bind(key_id.to_owned()).bind(period_start);
    let row = answered(query.fetch_optional(db)).await?;
    row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
}

fn row(r: &AnyRow) -> Result<KeyInfo, sqlx::Error> {
    let json = |col: &str| -> Result<serde_json::Value, sqlx::Error> {
        let text: String = r.try_get(col)?;
        serde_json::from_str(&text).map_err(|e| sqlx::Error::Decode(Box::new(e)))
    };
    let small = |col: &str| -> Result<Option<u32>, sqlx::Error> {
        Ok(r.try_get::<Option<i64>, _>(col)?.and_then(|v| u32::try_from(v).ok()))
    };
    let big = |col: &str| -> Result<Option<u64>, sqlx::Error> {
        Ok(r.try_get::<Option<i64>, _>(col)?.and_then(|v| u64::try_from(v).ok()))
    };
    let allowed =
        serde_json::from_value(json("allowed")?).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    Ok(KeyInfo {
        id: r.try_get("id")?,
        prefix: r.try_get("prefix")?,
        name: r.try_get("name")?,
        metadata: json("metadata")?,
        allowed,
        requests_per_minute: small("requests_per_minute")?,
        max_streams: small("max_streams")?,
        budget_micro_usd: big("budget_micro_usd")?,
        budget_period_seconds: big("budget_period_seconds")?,
        expires_at: r.try_get("expires_at")?,
        enabled: r.try_get::<i64, _>("enabled")? != 0,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}
