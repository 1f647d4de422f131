//! Gateway instances sharing the key database, and what each holds in its shared counters.
//!
//! Every instance registers a row in `key_instances` with an expiry (unix ms) that it renews
//! while it runs (its heartbeat, every quarter of `--key-lease-expiry`). What it adds to a
//! shared counter on behalf of itself is also written in `key_holds`, in the same
//! transaction: budget it leased or reserved (`key_spend.reserved_nusd`), streams it runs
//! (`key_streams.held`). An instance that stops renewing (killed, frozen, cut off from the
//! database) is reaped by any other after its expiry: one transaction deletes its row and its
//! holds and takes each hold off its counter, so a crash never keeps a key's budget or
//! streams for ever. At shutdown an instance reaps itself the same way, after its ledger's
//! last write.
//!
//! Lock order, the same in every transaction that touches them, so that PostgreSQL never
//! deadlocks: the instance's row first (a transaction that changes its holds starts by
//! renewing or touching it, which also serialises it with a reaper of the same instance),
//! then the shared counters in (key, period) order, then its own holds.
//!
//! Expiries are read from each instance's wall clock: instances whose clocks differ by more
//! than a fraction of the expiry could reap a live one early; its next heartbeat then finds
//! its row gone, and it starts over under a new id with nothing held (see [`Instance::id`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::{AnyPool, Row};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

type Tx<'a> = sqlx::Transaction<'a, sqlx::Any>;

/// The pauses between attempts to give something back when the database fails (about a
/// minute in all); after them it stays held until the instance stops or is reaped.
pub(super) const RETRIES: [Duration; 5] = [
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
    Duration::from_secs(8),
    Duration::from_secs(45),
];

/// What a hold counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum HoldKind {
    /// Nano-USD of a key's budget period, counted in `key_spend.reserved_nusd`.
    Budget,
    /// Streams of a key, counted in `key_streams.held` (period 0).
    Streams,
}

impl HoldKind {
    fn name(self) -> &'static str {
        match self {
            HoldKind::Budget => "budget",
            HoldKind::Streams => "streams",
        }
    }
}

/// This gateway instance in the key database.
#[derive(Debug)]
pub(super) struct Instance {
    /// Its current id; a new one after it was reaped while running.
    id: Mutex<Arc<str>>,
    /// How long its row outlives its last renewal.
    pub(super) expiry: Duration,
    /// Set at shutdown: no new id is registered after it.
    closed: AtomicBool,
    /// Fires at shutdown: the heartbeat ends.
    pub(super) stop: CancellationToken,
    /// When the last renewal that succeeded began.
    renewed: Mutex<Instant>,
    /// Held while a new id is registered: two tasks finding the old one reaped at once must
    /// not both register (the first new id would be overwritten, never renewed, and reaped
    /// with what it held).
    renewing: tokio::sync::Mutex<()>,
}

fn new_id() -> Arc<str> {
    Arc::from(format!("gw_{}", hex::encode(rand::random::<[u8; 8]>())))
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Instance {
    /// Registers a new instance whose row expires `expiry` after each renewal.
    pub(super) async fn register(db: &AnyPool, expiry: Duration) -> Result<Self, sqlx::Error> {
        let id = new_id();
        insert(db, &id, expiry).await?;
        tracing::debug!(instance = %id, "key database instance registered");
        let (closed, stop) = (AtomicBool::new(false), CancellationToken::new());
        let renewed = Mutex::new(Instant::now());
        let renewing = tokio::sync::Mutex::new(());
        Ok(Self { id: Mutex::new(id), expiry, closed, stop, renewed, renewing })
    }

    /// The id holds are written under now.
    pub(super) fn id(&self) -> Arc<str> {
        self.id.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Registers under a new id, after the row of `old` was found gone (reaped by another
    /// instance: its holds were given back). `false` once shut down.
    pub(super) async fn renew_id(&self, db: &AnyPool, old: &str) -> Result<bool, sqlx::Error> {
        let _one = self.renewing.lock().await;
        if self.closed.load(Ordering::SeqCst) {
            return Ok(false);
        }
        if &*self.id() != old {
            return Ok(true); // Another task did it.
        }
        let id = new_id();
        insert(db, &id, self.expiry).await?;
        tracing::warn!(instance = %id, "this instance was reaped (heartbeat missed); registered again");
        *self.id.lock().unwrap_or_else(|p| p.into_inner()) = id;
        self.renewed(Instant::now());
        Ok(true)
    }

    /// Whether this instance's holds are surely still its own: it renewed its row less than
    /// half its expiry ago (another instance reaps it only a whole expiry after). A lease is
    /// served from memory only then; otherwise the next reservation goes to the database,
    /// which renews the row or finds it reaped.
    pub(super) fn fresh(&self) -> bool {
        self.renewed.lock().unwrap_or_else(|p| p.into_inner()).elapsed() < self.expiry / 2
    }

    /// Records a renewal that began at `at` and was committed.
    pub(super) fn renewed(&self, at: Instant) {
        let mut renewed = self.renewed.lock().unwrap_or_else(|p| p.into_inner());
        *renewed = (*renewed).max(at);
    }

    /// Renews this instance's row at the start of `tx` (locking it): `false` when it is gone.
    pub(super) async fn renew(&self, tx: &mut Tx<'_>, id: &str) -> Result<bool, sqlx::Error> {
        let done =
            sqlx::query("UPDATE key_instances SET expires_at_ms = $2 WHERE instance_id = $1")
                .bind(id.to_owned())
                .bind(super::now_ms().saturating_add(ms(self.expiry)))
                .execute(&mut **tx)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Shuts down: no heartbeat, no new id, and every hold given back.
    pub(super) async fn close(&self, db: &AnyPool) -> Result<(), sqlx::Error> {
        self.closed.store(true, Ordering::SeqCst);
        self.stop.cancel();
        reap(db, &self.id(), i64::MAX).await.map(drop)
    }
}

async fn insert(db: &AnyPool, id: &str, expiry: Duration) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO key_instances (instance_id, expires_at_ms) VALUES ($1, $2)")
        .bind(id.to_owned())
        .bind(super::now_ms().saturating_add(ms(expiry)))
        .execute(db)
        .await?;
    Ok(())
}

/// Locks instance `id`'s row in `tx` without renewing it: `false` when it is gone (reaped).
pub(super) async fn touch(tx: &mut Tx<'_>, id: &str) -> Result<bool, sqlx::Error> {
    let sql = "UPDATE key_instances SET expires_at_ms = expires_at_ms WHERE instance_id = $1";
    let done = sqlx::query(sql).bind(id.to_owned()).execute(&mut **tx).await?;
    Ok(done.rows_affected() == 1)
}

/// Adds `delta` (negative: takes it off) to what instance `id` holds of `kind` for `key_id`
/// in the period from `period_start`; `false` when it held nothing there to take off.
pub(super) async fn hold(
    tx: &mut Tx<'_>,
    id: &str,
    kind: HoldKind,
    (key_id, period_start): (&str, i64),
    delta: i64,
) -> Result<bool, sqlx::Error> {
    if delta == 0 {
        return Ok(true);
    }
    let sql = if delta > 0 {
        "INSERT INTO key_holds (instance_id, kind, key_id, period_start, amount) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (instance_id, kind, key_id, period_start) \
         DO UPDATE SET amount = key_holds.amount + $5"
    } else {
        "UPDATE key_holds SET amount = amount + $5 \
         WHERE instance_id = $1 AND kind = $2 AND key_id = $3 AND period_start = $4"
    };
    let done = sqlx::query(sql)
        .bind(id.to_owned())
        .bind(kind.name())
        .bind(key_id.to_owned())
        .bind(period_start)
        .bind(delta)
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Deletes instance `id`'s holds that hold nothing: a row per key and budget period would
/// otherwise stay for as long as the instance runs. A hold taken again is inserted again.
pub(super) async fn prune(db: &AnyPool, id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM key_holds WHERE instance_id = $1 AND amount = 0")
        .bind(id.to_owned())
        .execute(db)
        .await?;
    Ok(())
}

/// Reaps instance `id` if its row expired before `before` (unix ms; `i64::MAX`: whatever its
/// expiry, for an instance's own shutdown): deletes its row and its holds and takes each hold
/// off its shared counter, in one transaction. Whether it was reaped.
pub(super) async fn reap(db: &AnyPool, id: &str, before: i64) -> Result<bool, sqlx::Error> {
    let mut tx = db.begin().await?;
    let gone =
        sqlx::query("DELETE FROM key_instances WHERE instance_id = $1 AND expires_at_ms < $2")
            .bind(id.to_owned())
            .bind(before)
            .execute(&mut *tx)
            .await?;
    if gone.rows_affected() == 0 {
        return Ok(false); // Renewed meanwhile, or reaped by another.
    }
    let rows = sqlx::query(
        "DELETE FROM key_holds WHERE instance_id = $1 \
         RETURNING kind, key_id, period_start, amount",
    )
    .bind(id.to_owned())
    .fetch_all(&mut *tx)
    .await?;
    let mut holds: Vec<(String, String, i64, i64)> = rows
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?)))
        .collect::<Result<_, sqlx::Error>>()?;
    // The counters' rows in the order every other transaction locks them.
    holds.sort_by(|a, b| (&a.1, a.2, &a.0).cmp(&(&b.1, b.2, &b.0)));
    for (kind, key_id, period_start, amount) in holds.iter().filter(|h| h.3 != 0) {
        let q = if kind == HoldKind::Streams.name() {
            sqlx::query("UPDATE key_streams SET held = held - $2 WHERE key_id = $1")
                .bind(key_id.clone())
                .bind(*amount)
        } else {
            sqlx::query(
                "UPDATE key_spend SET reserved_nusd = reserved_nusd - $3 \
                 WHERE key_id = $1 AND period_start = $2",
            )
            .bind(key_id.clone())
            .bind(*period_start)
            .bind(*amount)
        };
        q.execute(&mut *tx).await?;
    }
    tx.commit().await?;
    let held: i64 = holds.iter().filter(|h| h.0 == HoldKind::Budget.name()).map(|h| h.3).sum();
    tracing::info!(instance = %id, budget_nusd = held, "key database instance reaped");
    Ok(true)
}

/// Reaps every instance whose row has expired, and forgets rate windows two minutes old.
pub(super) async fn sweep(db: &AnyPool) -> Result<(), sqlx::Error> {
    let now = super::now_ms();
    let expired = sqlx::query("SELECT instance_id FROM key_instances WHERE expires_at_ms < $1")
        .bind(now)
        .fetch_all(db)
        .await?;
    for row in &expired {
        let id: String = row.try_get(0)?;
        reap(db, &id, now).await?;
    }
    sqlx::query("DELETE FROM key_rate WHERE window_start < $1")
        .bind(now / 1000 - 120)
        .execute(db)
        .await?;
    Ok(())
}
