//! The on-chain pool as last walked, kept in the gateway's database (SQLite under
//! `--data-dir`, or PostgreSQL with `--database-url`, the customer keys' settings) so that a
//! restart serves at once from it while the chain is walked again. Its own table and its own
//! migrations ledger (`discovery_migrations`), apart from the key store's.
//!
//! Rounds and stakes are `uint256` on chain: they are stored as decimal text, exactly.

use livepeer_pm::{Address, U256};
use sqlx::{AnyPool, Row};

use crate::database::now;

use super::walk::ChainOrch;

/// The schema, by version; each version's statements run in one transaction.
const MIGRATIONS: crate::database::Migrations = &[(
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

/// Connects and brings the on-chain pool's schema up to date (ledger `discovery_migrations`).
pub async fn open(url: &str) -> Result<AnyPool, sqlx::Error> {
    let db = crate::database::connect(url, 2).await?;
    crate::database::migrate(&db, "discovery_migrations", MIGRATIONS).await?;
    Ok(db)
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
