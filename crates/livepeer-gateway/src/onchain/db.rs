//! The on-chain pool as last walked, kept in the gateway's database (SQLite under
//! `--data-dir`, or PostgreSQL with `--database-url`, the customer keys' settings) so that a
//! restart serves at once from it while the chain is walked again. Its own table and its own
//! migrations ledger (`discovery_migrations`), apart from the key store's.
//!
//! Rounds and stakes are `uint256` on chain: they are stored as decimal text, exactly.

use std::path::Path;

use livepeer_pm::{Address, U256};
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Row};

use super::walk::ChainOrch;

/// The schema, by version; each version's statements run in one transaction.
const MIGRATIONS: &[(i64, &[&str])] = &[(
    1,
    &["CREATE TABLE chain_orchestrators (
        eth_address TEXT PRIMARY KEY,
        service_uri TEXT NOT NULL,
        stake TEXT NOT NULL,
        activation_round TEXT NOT NULL,
        deactivation_round TEXT NOT NULL,
        active BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
    )"],
)];

/// go-livepeer's staleness rule (`common/db.go`): rows not refreshed for a day are not used.
pub const MAX_AGE_SECS: i64 = 24 * 3600;

/// The database URL: PostgreSQL when given, else `gateway.sqlite` under `data_dir` (created).
pub fn url(database_url: Option<&str>, data_dir: &Path) -> Result<String, String> {
    if let Some(url) = database_url {
        return Ok(url.to_owned());
    }
    std::fs::create_dir_all(data_dir)
        .map_err(|e| format!("cannot create --data-dir {}: {e}", data_dir.display()))?;
    let path = data_dir.join("gateway.sqlite").display().to_string();
    // sqlx percent-decodes the file name: its `%`, `?`, `#` and spaces are encoded.
    let path = path.replace('%', "%25").replace('?', "%3F").replace('#', "%23").replace(' ', "%20");
    Ok(format!("sqlite://{path}?mode=rwc"))
}

/// Connects and brings the schema up to date.
pub async fn open(url: &str) -> Result<AnyPool, sqlx::Error> {
    sqlx::any::install_default_drivers();
    let db = AnyPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(std::time::Duration::from_secs(5))
        .connect(url)
        .await?;
    migrate(&db).await?;
    Ok(db)
}

/// Applies the versions not yet applied. Two instances migrating one PostgreSQL database at
/// once: the loser's transaction fails on the version's key, and it checks again.
async fn migrate(db: &AnyPool) -> Result<(), sqlx::Error> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS discovery_migrations (
            version BIGINT PRIMARY KEY,
            applied_at BIGINT NOT NULL
        )",
    )
    .execute(db)
    .await?;
    for attempt in 0..3 {
        match apply(db).await {
            Ok(()) => return Ok(()),
            Err(e) if attempt < 2 => tracing::info!(error = %e, "migration raced; checking again"),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

async fn apply(db: &AnyPool) -> Result<(), sqlx::Error> {
    let applied: Vec<i64> = sqlx::query("SELECT version FROM discovery_migrations")
        .fetch_all(db)
        .await?
        .iter()
        .map(|r| r.try_get::<i64, _>(0))
        .collect::<Result<_, _>>()?;
    for (version, statements) in MIGRATIONS.iter().filter(|(v, _)| !applied.contains(v)) {
        let mut tx = db.begin().await?;
        for statement in *statements {
            sqlx::query(statement).execute(&mut *tx).await?;
        }
        sqlx::query("INSERT INTO discovery_migrations (version, applied_at) VALUES ($1, $2)")
            .bind(*version)
            .bind(now())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!(version, "discovery database migrated");
    }
    Ok(())
}

/// Seconds since the Unix epoch.
fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Stores one walk: every orchestrator upserted; those that left the pool deleted.
pub async fn store(db: &AnyPool, orchestrators: &[ChainOrch]) -> Result<(), sqlx::Error> {
    let at = now();
    let mut tx = db.begin().await?;
    for o in orchestrators {
        sqlx::query(
            "INSERT INTO chain_orchestrators (eth_address, service_uri, stake, activation_round, \
             deactivation_round, active, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (eth_address) DO UPDATE SET service_uri = excluded.service_uri, \
             stake = excluded.stake, activation_round = excluded.activation_round, \
             deactivation_round = excluded.deactivation_round, active = excluded.active, \
             updated_at = excluded.updated_at",
        )
        .bind(o.address.to_checksum(None))
        .bind(&o.service_uri)
        .bind(o.stake.to_string())
        .bind(o.activation_round.to_string())
        .bind(o.deactivation_round.to_string())
        .bind(i64::from(o.active))
        .bind(at)
        .execute(&mut *tx)
        .await?;
    }
    // Whoever is not in this walk has left the pool.
    sqlx::query("DELETE FROM chain_orchestrators WHERE updated_at < $1")
        .bind(at)
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

/// The stored orchestrators refreshed within [`MAX_AGE_SECS`], active or not.
pub async fn load(db: &AnyPool) -> Result<Vec<ChainOrch>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT eth_address, service_uri, stake, activation_round, deactivation_round, active \
         FROM chain_orchestrators WHERE updated_at >= $1 ORDER BY eth_address",
    )
    .bind(now() - MAX_AGE_SECS)
    .fetch_all(db)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let number = |i: usize| -> Result<U256, sqlx::Error> {
            let text: String = row.try_get(i)?;
            text.parse().map_err(|e| sqlx::Error::Decode(Box::new(e)))
        };
        let address: String = row.try_get(0)?;
        out.push(ChainOrch {
            address: address.parse::<Address>().map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
            service_uri: row.try_get(1)?,
            stake: number(2)?,
            activation_round: number(3)?,
            deactivation_round: number(4)?,
            active: row.try_get::<i64, _>(5)? != 0,
        });
    }
    Ok(out)
}
