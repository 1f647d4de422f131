//! Budget leases: each instance reserves a key's budget in the database a lease at a time,
//! and serves its requests' reservations from the lease in memory, without a round trip.
//!
//! A lease is counted in `key_spend.reserved_nusd` like any reservation, and recorded as this
//! instance's hold (see [`super::instance`]), by one conditional `UPDATE` that succeeds only
//! while spent + reserved stays within the budget: instances sharing PostgreSQL thus still
//! cannot together reserve more than the budget, leases included. A request's reservation
//! taken from the lease stays in the hold until the ledger settles its row, in the batch's
//! transaction: spent += charge, reserved −= the part of the reservation charged, hold −= the
//! same; what the job did not use goes back to the lease in memory.
//!
//! Sizing: a lease covers [`LEASE_REQUESTS`] requests at the key's last charge, or the last
//! second's spend when that is more, and never more than 1/[`LEASE_SHARE`] of what is free of
//! the budget (so one instance cannot starve the others). While a key's traffic ramps up, the
//! last second's spend is not known yet: each top-up that follows the previous one within
//! [`RAMP`] doubles the lease, so that a key going from nothing to thousands of requests a
//! second asks the database a handful of times, not once per few requests. When even the
//! request's own charge is more than that share, the request reserves just its charge (as
//! without leases) and any lease left is given back in the same transaction: near the end of
//! a budget each instance reserves request by request, and the only budget an instance keeps
//! from the others is what its requests in flight reserved. A lease is topped up in the
//! background when half of it is used, so a steady load does not wait on the database, and is
//! given back after [`IDLE`] without requests, and at shutdown (the instance reaps itself).
//! When a key's budget is lowered (as the instance's key cache sees it), its lease is no
//! longer served from: the next request gives it back in the transaction that leases under
//! the new budget.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::AnyPool;
use tokio::time::Instant;

use super::instance::{self, HoldKind, Instance};

/// Requests at the last charge a lease covers at least.
const LEASE_REQUESTS: i64 = 8;
/// A lease takes at most 1/`LEASE_SHARE` of what is free of a budget.
const LEASE_SHARE: i64 = 4;
/// A top-up this soon after the previous one doubles the lease (see the module docs). A lease
/// is topped up when half of it is spent, so the doubling stops once a lease covers about half
/// a second's spend (or when the last second's spend is known), and a lease stays within
/// about a second or two of spend.
const RAMP: Duration = Duration::from_millis(250);
/// An unused lease is given back after this long without a request.
pub(super) const IDLE: Duration = Duration::from_secs(5);
/// Keys with a lease in memory at most; past it, idle ones are given back first.
const MAX_POOLS: usize = 10_000;

type Tx<'a> = sqlx::Transaction<'a, sqlx::Any>;

/// This instance's leases, by key id.
#[derive(Debug)]
pub(super) struct Leases {
    pub(super) db: AnyPool,
    pub(super) instance: Instance,
    pools: Mutex<HashMap<String, Pool>>,
}

/// One key's lease in one budget period, under one instance id.
#[derive(Debug)]
struct Pool {
    holder: Arc<str>,
    period: i64,
    /// The key's lowest budget since the lease was started: a lower one gives it back.
    budget: i64,
    /// The budget was lowered: the lease is given back by the next request at the gate.
    stale: bool,
    /// Leased and not reserved by any request (nano-USD).
    available: i64,
    /// The last request's charge: the least worth leasing.
    charge: i64,
    refilling: bool,
    /// Held by the one request (or top-up) of this key that is asking the database.
    gate: Arc<tokio::sync::Mutex<()>>,
    /// No top-up before this: the last one found too little free to lease.
    dry_until: Instant,
    last_use: Instant,
    /// Spend in the current second, and in the last one.
    second: Instant,
    used: i64,
    rate: i64,
    /// The lease doubled while top-ups came within [`RAMP`] of each other (0: not ramping).
    boost: i64,
    /// When the last top-up or lease was asked for.
    last_ask: Option<Instant>,
}

impl Pool {
    fn new(holder: Arc<str>, (period, budget): (i64, i64), now: Instant) -> Self {
        let (available, charge, used, rate, refilling, boost) = (0, 0, 0, 0, false, 0);
        let (last_use, second, dry_until) = (now, now, now);
        let gate = Arc::default();
        Self {
            gate,
            holder,
            period,
            budget,
            stale: false,
            available,
            charge,
            refilling,
            dry_until,
            last_use,
            second,
            used,
            rate,
            boost,
            last_ask: None,
        }
    }

    /// The lease's target size (before the database's cap).
    fn want(&self) -> i64 {
        let least = self.charge.saturating_mul(LEASE_REQUESTS);
        least.max(self.rate).max(self.boost).min(i64::MAX / 8)
    }

    /// The lease's target size for a top-up or lease asked for now: doubled when the last was
    /// asked for within [`RAMP`].
    fn ask(&mut self, now: Instant) -> i64 {
        let ramping = self.last_ask.is_some_and(|at| now - at < RAMP);
        self.boost = if ramping { self.want().saturating_mul(2) } else { 0 };
        self.last_ask = Some(now);
        self.want()
    }

    fn count(&mut self, amount: i64, now: Instant) {
        let since = now - self.second;
        if since >= Duration::from_secs(1) {
            self.rate = if since < Duration::from_secs(2) { self.used } else { 0 };
            (self.second, self.used) = (now, 0);
        }
        self.used = self.used.saturating_add(amount);
        (self.charge, self.last_use) = (amount, now);
    }
}

/// A budget reservation's outcome.
#[derive(Debug)]
pub(super) enum Reserved {
    /// Reserved, under this instance id's hold.
    Held(Arc<str>),
    /// It does not fit: what is spent and reserved.
    Exceeded(i64),
}

/// What the database granted.
enum Grant {
    Granted(i64),
    Exceeded(i64),
    /// This instance's row is gone: it was reaped.
    Reaped,
}

/// One request to the database for budget.
struct Ask<'a> {
    key_id: &'a str,
    period: i64,
    budget: i64,
    /// What must be granted (0: a top-up, which may get nothing).
    need: i64,
    want: i64,
    /// The unused lease given back first.
    release: i64,
    /// A top-up smaller than this is not taken.
    min: i64,
}

/// What the in-memory step decided.
enum Step {
    /// Taken from the lease; a top-up of (want, min) is due, under the gate.
    Took { refill: Option<(i64, i64, Arc<tokio::sync::Mutex<()>>)> },
    /// The lease is short: wait for the key's turn at the database (its gate).
    Wait(Arc<tokio::sync::Mutex<()>>),
    /// The lease is short: ask the database, giving back `release`.
    Need { release: i64, want: i64 },
}

/// The database's answer on its way to the request that asked: a grant the request never
/// takes goes back to the lease when the delivery is dropped.
struct Delivery {
    answer: Option<Result<Grant, sqlx::Error>>,
    /// Where the request's part of a grant goes back, and how much it is.
    refund: Option<Refund>,
}

/// The lease, key, holder and period a request's part of a grant goes back to, and the part.
type Refund = (Arc<Leases>, String, Arc<str>, i64, i64);

impl Delivery {
    /// The answer, taken by its request: nothing goes back then.
    fn take(mut self) -> Result<Grant, sqlx::Error> {
        self.refund = None;
        self.answer.take().unwrap_or(Err(sqlx::Error::PoolClosed))
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        if let (Some((leases, key, holder, period, amount)), Some(Ok(Grant::Granted(_)))) =
            (self.refund.take(), &self.answer)
        {
            leases.credit(&key, &holder, period, amount);
        }
    }
}

impl Leases {
    pub(super) fn new(db: AnyPool, instance: Instance) -> Self {
        Self { db, instance, pools: Mutex::new(HashMap::new()) }
    }

    fn pools(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pool>> {
        self.pools.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reserves `amount` (at most `budget`) of key `key_id`'s period from `period`: from the
    /// lease when it holds enough, else from the database. One request per key at a time asks
    /// the database (the others wait for its lease rather than each ask for one), and what it
    /// is granted is in the lease before the next one looks: so a refusal never misses budget
    /// that another of this instance's requests was being granted.
    pub(super) async fn reserve(
        self: &Arc<Self>,
        key_id: &str,
        period: i64,
        amount: i64,
        budget: i64,
    ) -> Result<Reserved, sqlx::Error> {
        let holder = self.instance.id();
        let gate = match self.take(key_id, (period, budget), amount, &holder, false) {
            Step::Took { refill } => {
                self.top_up(key_id, period, budget, refill);
                return Ok(Reserved::Held(holder));
            }
            Step::Wait(gate) => gate,
            Step::Need { .. } => return Err(sqlx::Error::PoolClosed),
        };
        let turn = Arc::new(gate.lock_owned().await);
        for _ in 0..2 {
            let holder = self.instance.id();
            let (release, want) = match self.take(key_id, (period, budget), amount, &holder, true) {
                Step::Took { refill } => {
                    // A top-up it asks for is started (or, the gate being held here, its
                    // flag cleared): dropped, the flag stayed set, and the key's lease was
                    // neither topped up nor given back when idle from then on.
                    self.top_up(key_id, period, budget, refill);
                    return Ok(Reserved::Held(holder));
                }
                Step::Need { release, want } => (release, want),
                Step::Wait(_) => return Err(sqlx::Error::PoolClosed),
            };
            let asked = (period, budget, amount, want, release);
            match self.acquire_whole(key_id, &holder, asked, Arc::clone(&turn)).await? {
                Grant::Granted(_) => return Ok(Reserved::Held(holder)),
                Grant::Exceeded(used) => return Ok(Reserved::Exceeded(used)),
                Grant::Reaped => {
                    // Its holds were given back by the reaper: start over under a new id.
                    self.forget(&holder);
                    let renewed = self.instance.renew_id(&self.db, &holder);
                    if !crate::database::answered(renewed).await? {
                        break;
                    }
                }
            }
        }
        Err(sqlx::Error::PoolClosed)
    }

    /// Asks the database for `amount` (and up to `want`, giving `release` back first) under
    /// `holder`, in a task of its own that books the answer whatever becomes of the request:
    /// the rest of a grant, or the `release` of a failed ask, goes back to the lease; a grant
    /// whose request is gone by then goes back whole. Dropped mid-ask, the request took the
    /// lease's rest out of memory while the database still held it, and a grant it never
    /// saw stayed reserved, until the instance stopped. The key's gate (`turn`) stays held
    /// until the answer is booked.
    async fn acquire_whole(
        self: &Arc<Self>,
        key_id: &str,
        holder: &Arc<str>,
        (period, budget, amount, want, release): (i64, i64, i64, i64, i64),
        turn: Arc<tokio::sync::OwnedMutexGuard<()>>,
    ) -> Result<Grant, sqlx::Error> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (leases, key, holder) = (self.clone(), key_id.to_owned(), holder.clone());
        tokio::spawn(async move {
            let _turn = turn;
            let ask =
                Ask { key_id: &key, period, budget, need: amount, want, release, min: amount };
            // Bounded: the key's gate is held until the answer is booked, and a connection
            // whose server went silent (no error, no answer) held it, and every request of
            // the key behind it, for good. Whether an ask given up on committed is unknown,
            // so nothing is credited back then: the lease's rest it gave back stays with the
            // database, and the key may use less of its budget until this instance's holds
            // are given back, never more.
            let answer = crate::database::answered(leases.acquire(&holder, &ask)).await;
            if answer.as_ref().is_err_and(crate::database::unanswered) {
                let _ = tx.send(Delivery { answer: Some(answer), refund: None });
                return;
            }
            match &answer {
                Ok(Grant::Granted(granted)) => {
                    leases.credit(&key, &holder, period, granted - amount)
                }
                Err(_) => leases.credit(&key, &holder, period, release),
                Ok(_) => {}
            }
            // Not sent (the request is gone), or sent and dropped unread (the request went
            // between the send and its read): the delivery gives the request's part back.
            let refund = Some((leases.clone(), key, holder, period, amount));
            let _ = tx.send(Delivery { answer: Some(answer), refund });
        });
        rx.await.map_err(|_| sqlx::Error::PoolClosed)?.take()
    }

    /// Starts the top-up `refill` asks for, if any, in the background.
    fn top_up(
        self: &Arc<Self>,
        key_id: &str,
        period: i64,
        budget: i64,
        refill: Option<(i64, i64, Arc<tokio::sync::Mutex<()>>)>,
    ) {
        let Some((want, min, gate)) = refill else { return };
        let (leases, key) = (self.clone(), key_id.to_owned());
        tokio::spawn(async move {
            // A request asking the database now brings a lease back: no top-up then.
            if let Ok(_turn) = gate.try_lock() {
                leases.refill(&key, period, budget, want, min).await;
            } else if let Some(pool) = leases.pools().get_mut(&key) {
                pool.refilling = false;
            }
        });
    }

    /// The in-memory part of [`Leases::reserve`]: takes `amount` from the lease; when it is
    /// short, answers the key's gate, or (`at_gate`, the gate held) its whole rest to give
    /// back with the request to the database.
    fn take(
        &self,
        key_id: &str,
        (period, budget): (i64, i64),
        amount: i64,
        holder: &Arc<str>,
        at_gate: bool,
    ) -> Step {
        let now = Instant::now();
        let mut pools = self.pools();
        if !pools.contains_key(key_id) {
            if pools.len() >= MAX_POOLS {
                // Those with nothing leased go; the others are given back by the heartbeat.
                pools.retain(|_, p| p.available > 0 || p.refilling);
            }
            pools.insert(key_id.to_owned(), Pool::new(holder.clone(), (period, budget), now));
        }
        let Some(pool) = pools.get_mut(key_id) else { return Step::Need { release: 0, want: 0 } };
        if pool.holder == *holder && pool.period == period && budget < pool.budget {
            // The budget was lowered since the lease was granted, and the lease might not fit
            // in the new one: it is not served from, and the next request at the gate gives
            // it back in the transaction that asks for a lease under the new budget.
            (pool.budget, pool.stale) = (budget, true);
        }
        if pool.holder != *holder || pool.period != period {
            // A new period (or a new id): the old lease goes back, this one starts empty; the
            // gate stays, so that one request at a time asks for the new lease.
            let gate = pool.gate.clone();
            let old = std::mem::replace(pool, Pool::new(holder.clone(), (period, budget), now));
            pool.gate = gate;
            // Under another id too: the id may have changed under this request (another task
            // registered again), and a reaped id's give-back does nothing.
            if old.available > 0 {
                self.give_back_later(key_id, &old.holder, old.period, old.available);
            }
        }
        if !at_gate {
            pool.count(amount, now);
        }
        if pool.available >= amount && !pool.stale && self.instance.fresh() {
            pool.available -= amount;
            let due = !pool.refilling && pool.dry_until <= now;
            let refill = (due && pool.available < pool.want() / 2).then(|| {
                pool.refilling = true;
                let want = pool.ask(now);
                (want - pool.available, amount, pool.gate.clone())
            });
            return Step::Took { refill };
        }
        if !at_gate {
            return Step::Wait(pool.gate.clone());
        }
        pool.stale = false;
        Step::Need { release: std::mem::take(&mut pool.available), want: pool.ask(now) }
    }

    /// Tops up key `key_id`'s lease by up to `want` (nothing when less than `min` is free to
    /// lease); its gate held.
    async fn refill(&self, key_id: &str, period: i64, budget: i64, want: i64, min: i64) {
        let holder = self.instance.id();
        let ask = Ask { key_id, period, budget, need: 0, want, release: 0, min };
        // Unanswered, it counts as granting nothing: the key may use less, never more.
        let granted = match crate::database::answered(self.acquire(&holder, &ask)).await {
            Ok(Grant::Granted(granted)) => granted,
            Ok(_) => 0,
            Err(e) => {
                tracing::debug!(error = %e, "budget lease top-up failed");
                0
            }
        };
        let mut pools = self.pools();
        if let Some(pool) = pools.get_mut(key_id) {
            pool.refilling = false;
            if granted == 0 {
                pool.dry_until = Instant::now() + Duration::from_secs(1);
            }
        }
        drop(pools);
        self.credit(key_id, &holder, period, granted);
    }

    /// Adds `amount`, held in the database under `holder` for key `key_id`'s period from
    /// `period`, back to the lease in memory; given back to the database when the lease has
    /// moved on to another period (dropped when `holder` was reaped: the reaper gave it).
    pub(super) fn credit(&self, key_id: &str, holder: &Arc<str>, period: i64, amount: i64) {
        if amount <= 0 {
            return;
        }
        let mut pools = self.pools();
        match pools.get_mut(key_id) {
            Some(pool) if pool.holder == *holder && pool.period == period => {
                pool.available = pool.available.saturating_add(amount);
            }
            _ if *holder == self.instance.id() => {
                drop(pools);
                self.give_back_later(key_id, holder, period, amount);
            }
            _ => {}
        }
    }

    fn give_back_later(&self, key_id: &str, holder: &Arc<str>, period: i64, amount: i64) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let (db, key_id, holder) = (self.db.clone(), key_id.to_owned(), holder.clone());
        runtime.spawn(async move {
            for wait in instance::RETRIES {
                match crate::database::answered(give_back(&db, &holder, &key_id, period, amount))
                    .await
                {
                    Ok(()) => return,
                    // It may have been given back: again could give it back twice.
                    Err(e) if crate::database::unanswered(&e) => {
                        tracing::warn!(error = %e, "a budget lease's give-back went unanswered");
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot give back a budget lease; retrying")
                    }
                }
                tokio::time::sleep(wait).await;
            }
            // Still held: the instance's shutdown, or its reaper, gives it back.
        });
    }

    /// Gives back the leases unused for [`IDLE`], and forgets empty ones.
    pub(super) async fn give_back_idle(&self) {
        let idle: Vec<(String, Arc<str>, i64, i64)> = {
            let mut pools = self.pools();
            let mut idle = Vec::new();
            for (key_id, pool) in pools.iter_mut() {
                if pool.last_use.elapsed() >= IDLE && !pool.refilling && pool.available > 0 {
                    let amount = std::mem::take(&mut pool.available);
                    idle.push((key_id.clone(), pool.holder.clone(), pool.period, amount));
                }
            }
            pools.retain(|_, p| p.available > 0 || p.refilling || p.last_use.elapsed() < IDLE);
            idle
        };
        for (key_id, holder, period, amount) in idle {
            let given = give_back(&self.db, &holder, &key_id, period, amount);
            match crate::database::answered(given).await {
                Ok(()) => {}
                // Whether it was given back is unknown: not credited again, which could spend
                // it twice; the instance's shutdown, or its reaper, gives back what is left.
                Err(e) if crate::database::unanswered(&e) => {
                    tracing::warn!(error = %e, "an idle budget lease's give-back went unanswered");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot give back an idle budget lease");
                    self.credit(&key_id, &holder, period, amount);
                }
            }
        }
    }

    /// Forgets the leases held under `reaped`, an id of this instance that was reaped (which
    /// gave them back). Those under a newer id are still held in the database: another task
    /// may have registered again and leased under it already.
    pub(super) fn forget(&self, reaped: &str) {
        self.pools().retain(|_, p| &*p.holder != reaped);
    }

    /// Asks the database for budget (see [`Ask`]), in one transaction that renews this
    /// instance's row and records what it holds.
    async fn acquire(&self, holder: &str, ask: &Ask<'_>) -> Result<Grant, sqlx::Error> {
        let began = Instant::now();
        let grant = self.acquire_in_tx(holder, ask).await;
        if let Ok(Grant::Granted(_) | Grant::Exceeded(_)) = grant {
            self.instance.renewed(began);
        }
        grant
    }

    async fn acquire_in_tx(&self, holder: &str, ask: &Ask<'_>) -> Result<Grant, sqlx::Error> {
        let mut tx = self.db.begin().await?;
        if !self.instance.renew(&mut tx, holder).await? {
            return Ok(Grant::Reaped);
        }
        let mut grant = ask.want.max(ask.need);
        let mut used = 0;
        for _ in 0..4 {
            if grant > 0 && try_grant(&mut tx, ask, grant).await? {
                instance::hold(
                    &mut tx,
                    holder,
                    HoldKind::Budget,
                    (ask.key_id, ask.period),
                    grant - ask.release,
                )
                .await?;
                tx.commit().await?;
                return Ok(Grant::Granted(grant));
            }
            let Some((spent, reserved)) =
                super::db::spend(&mut *tx, ask.key_id, ask.period).await?
            else {
                // The period's first reservation: its row, then again.
                create(&mut tx, ask.key_id, ask.period).await?;
                continue;
            };
            used = spent.saturating_add(reserved).saturating_sub(ask.release);
            let free = ask.budget.saturating_sub(used);
            if free < ask.need {
                break;
            }
            grant = ask.need.max((free / LEASE_SHARE).min(ask.want));
            if ask.need == 0 && grant < ask.min.max(1) {
                // Too little left to lease: requests reserve their own charge from now on.
                tx.commit().await?;
                return Ok(Grant::Granted(0));
            }
        }
        if ask.need == 0 {
            tx.commit().await?;
            return Ok(Grant::Granted(0));
        }
        // It does not fit: the unused lease goes back all the same, for the other instances.
        if ask.release > 0 {
            let sql = "UPDATE key_spend SET reserved_nusd = reserved_nusd - $3 \
                WHERE key_id = $1 AND period_start = $2";
            let q = sqlx::query(sql).bind(ask.key_id.to_owned()).bind(ask.period);
            q.bind(ask.release).execute(&mut *tx).await?;
            let at = (ask.key_id, ask.period);
            instance::hold(&mut tx, holder, HoldKind::Budget, at, -ask.release).await?;
        }
        tx.commit().await?;
        Ok(Grant::Exceeded(used))
    }
}

/// Reserves `grant` more (after giving back the ask's release) when it fits in the budget
/// and is either what the request needs or at most 1/[`LEASE_SHARE`] of what is free. Written
/// with what is free (budget − spent − reserved) on one side, so that nothing overflows.
async fn try_grant(tx: &mut Tx<'_>, ask: &Ask<'_>, grant: i64) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE key_spend SET reserved_nusd = reserved_nusd - $3 + $4 \
         WHERE key_id = $1 AND period_start = $2 \
         AND $4 <= $5 - spent_nusd - reserved_nusd + $3 \
         AND ($4 <= $6 OR $4 <= ($5 - spent_nusd - reserved_nusd + $3) / $7)",
    )
    .bind(ask.key_id.to_owned())
    .bind(ask.period)
    .bind(ask.release)
    .bind(grant)
    .bind(ask.budget)
    .bind(ask.need)
    .bind(LEASE_SHARE)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

async fn create(tx: &mut Tx<'_>, key_id: &str, period: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO key_spend (key_id, period_start, spent_nusd, reserved_nusd) \
         VALUES ($1, $2, 0, 0) ON CONFLICT (key_id, period_start) DO NOTHING",
    )
    .bind(key_id.to_owned())
    .bind(period)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Gives `amount` of `holder`'s lease on key `key_id`'s period back to the budget (nothing
/// when `holder` is gone: its reaper gave it back).
async fn give_back(
    db: &AnyPool,
    holder: &str,
    key_id: &str,
    period: i64,
    amount: i64,
) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    if !instance::touch(&mut tx, holder).await? {
        return Ok(());
    }
    let sql = "UPDATE key_spend SET reserved_nusd = reserved_nusd - $3 \
        WHERE key_id = $1 AND period_start = $2";
    let q = sqlx::query(sql).bind(key_id.to_owned()).bind(period).bind(amount);
    q.execute(&mut *tx).await?;
    instance::hold(&mut tx, holder, HoldKind::Budget, (key_id, period), -amount).await?;
    tx.commit().await
}

/// Renews this instance's row every quarter of its expiry, reaps expired instances and gives
/// back idle leases, until shutdown.
pub(super) async fn heartbeat(leases: Arc<Leases>) {
    let every = (leases.instance.expiry / 4).max(Duration::from_millis(50));
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = leases.instance.stop.cancelled() => break,
        }
        if let Err(e) = beat(&leases).await {
            tracing::warn!(error = %e, "key database heartbeat failed");
        }
    }
}

/// One heartbeat, each of its calls to the database bounded (a silent server would otherwise
/// stop the heartbeat for good): bounded as a whole, a deadline in the middle of the idle
/// leases' give-back would drop leases taken out of memory but not given back.
async fn beat(leases: &Leases) -> Result<(), sqlx::Error> {
    crate::database::answered(renew(leases)).await?;
    leases.give_back_idle().await;
    crate::database::answered(instance::prune(&leases.db, &leases.instance.id())).await
}

/// Renews this instance's row (under a new id when it was reaped), and reaps expired ones.
async fn renew(leases: &Leases) -> Result<(), sqlx::Error> {
    let (id, began) = (leases.instance.id(), Instant::now());
    let mut tx = leases.db.begin().await?;
    let alive = leases.instance.renew(&mut tx, &id).await?;
    tx.commit().await?;
    if alive {
        leases.instance.renewed(began);
    } else {
        leases.forget(&id);
        leases.instance.renew_id(&leases.db, &id).await?;
    }
    instance::sweep(&leases.db).await
}

#[cfg(test)]
mod tests;
