//! Long jobs under a customer key: the per-key limit of concurrent streams ([`StreamPermit`])
//! and the charging of a running stream interval by interval ([`meter`]).
//!
//! A stream's first interval is priced and reserved by its start request's [`Tab`] before any
//! orchestrator is paid. Then, at the start of each further interval, [`meter`] reserves that
//! interval on a fresh tab and records it as one ledger row (charged in advance, as
//! orchestrators are prepaid); when the budget cannot pay for the next interval the stream is
//! stopped, with the reason, and the refusal recorded. A stream thus never runs an interval
//! its key has not paid for. A stream priced as a multiple of the orchestrator's price is
//! charged in arrears instead, on what was paid for it during each interval ([`Paid`]).
//!
//! Streams are counted in the key database (`key_streams`), for every instance sharing it:
//! a start is one conditional `UPDATE` (held + 1 while under `max_streams`), recorded as this
//! instance's hold in the same transaction, so that the streams of an instance that crashed
//! are freed by its reaper (see `instance`); a stop takes it off again. Keys without
//! `max_streams` are not counted (a limit set later counts only the streams started after).

use std::sync::Arc;
use std::time::Duration;

use livepeer_pm::Ratio;
use tokio_util::sync::CancellationToken;

use super::instance::{self, HoldKind};
use super::lease::Leases;
use super::{KeyError, Tab};
use crate::error::{Error, Kind};

/// One of a key's concurrent streams, released when dropped.
#[derive(Debug)]
pub struct StreamPermit {
    leases: Arc<Leases>,
    key_id: String,
    /// The instance id the stream is held under; none when the key is not limited.
    holder: Option<Arc<str>>,
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        let Some(holder) = self.holder.take() else { return };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let (leases, key_id) = (self.leases.clone(), std::mem::take(&mut self.key_id));
        runtime.spawn(async move {
            // A database that blinks must not keep the key's place for the instance's life.
            for wait in super::instance::RETRIES {
                match crate::database::answered(stop(&leases, &holder, &key_id)).await {
                    Ok(()) => return,
                    // It may have been counted: again could count it twice.
                    Err(e) if crate::database::unanswered(&e) => {
                        tracing::warn!(error = %e, "a stream's end went unanswered");
                        return;
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot count a stream's end; retrying"),
                }
                tokio::time::sleep(wait).await;
            }
            // Still counted: the instance's shutdown, or its reaper, frees it.
        });
    }
}

impl Tab {
    /// Takes one of the key's concurrent streams (on every instance sharing the database):
    /// `Err` 429 `stream_limit_exceeded` when it holds `max_streams` already, 503 when the
    /// database fails.
    pub async fn stream_permit(&self) -> Result<StreamPermit, Error> {
        let key = self.key();
        let (leases, key_id) = (self.store.leases.clone(), key.id.clone());
        let Some(max) = key.max_streams else {
            return Ok(StreamPermit { leases, key_id, holder: None });
        };
        // Counted in a task of its own, which makes the permit: a request dropped while the
        // database counts its stream (its commit already on its way) leaves a permit nobody
        // takes, and dropping it counts the stream's end. Counted on the request's own
        // future, the place stayed taken until the instance stopped.
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let _ = tx.send(take_stream(leases, key_id, i64::from(max)).await);
        });
        // The request waits for the count within the database's deadline (a silent server held
        // it for good). The count itself goes on: given up on mid-commit, it could have taken
        // the key's place with nothing to give it back; a permit it makes once the server
        // answers, which nobody takes then, gives the place back.
        let counted =
            crate::database::answered(async { rx.await.map_err(|_| sqlx::Error::PoolClosed) });
        counted.await.map_err(|e| Error::from(KeyError::Db(e)))?
    }
}

/// Counts a stream of key `key_id` if it holds fewer than `max`, as a permit.
async fn take_stream(leases: Arc<Leases>, key_id: String, max: i64) -> Result<StreamPermit, Error> {
    let mut permit = StreamPermit { leases, key_id, holder: None };
    for _ in 0..2 {
        let holder = permit.leases.instance.id();
        match start(&permit.leases, &holder, &permit.key_id, max).await {
            Ok(Started::Yes) => {
                permit.holder = Some(holder);
                return Ok(permit);
            }
            Ok(Started::Full(held)) => {
                let message = format!("this API key holds {held} streams, its limit (max_streams)");
                return Err(Error::new(Kind::StreamLimit, message).retry_after(5));
            }
            Ok(Started::Reaped) => {
                permit.leases.forget(&holder);
                let renewed = permit.leases.instance.renew_id(&permit.leases.db, &holder);
                if !renewed.await.map_err(KeyError::Db)? {
                    break;
                }
            }
            Err(e) => return Err(KeyError::Db(e).into()),
        }
    }
    Err(KeyError::Db(sqlx::Error::PoolClosed).into())
}

enum Started {
    Yes,
    Full(i64),
    Reaped,
}

/// Counts a stream of key `key_id` under `holder` if the key holds fewer than `max`.
async fn start(
    leases: &Leases,
    holder: &str,
    key_id: &str,
    max: i64,
) -> Result<Started, sqlx::Error> {
    let mut tx = leases.db.begin().await?;
    if !leases.instance.renew(&mut tx, holder).await? {
        return Ok(Started::Reaped);
    }
    for _ in 0..3 {
        let done =
            sqlx::query("UPDATE key_streams SET held = held + 1 WHERE key_id = $1 AND held < $2")
                .bind(key_id.to_owned())
                .bind(max)
                .execute(&mut *tx)
                .await?;
        if done.rows_affected() == 1 {
            instance::hold(&mut tx, holder, HoldKind::Streams, (key_id, 0), 1).await?;
            tx.commit().await?;
            return Ok(Started::Yes);
        }
        let held = sqlx::query("SELECT held FROM key_streams WHERE key_id = $1")
            .bind(key_id.to_owned())
            .fetch_optional(&mut *tx)
            .await?;
        match held {
            Some(row) => {
                use sqlx::Row as _;
                return Ok(Started::Full(row.try_get(0)?));
            }
            None => {
                let sql = "INSERT INTO key_streams (key_id, held) VALUES ($1, 0) \
                    ON CONFLICT (key_id) DO NOTHING";
                sqlx::query(sql).bind(key_id.to_owned()).execute(&mut *tx).await?;
            }
        }
    }
    Ok(Started::Full(max))
}

/// Counts the end of a stream of key `key_id` held under `holder` (nothing when `holder` was
/// reaped: its reaper freed it).
async fn stop(leases: &Leases, holder: &str, key_id: &str) -> Result<(), sqlx::Error> {
    let mut tx = leases.db.begin().await?;
    if !instance::touch(&mut tx, holder).await? {
        return Ok(());
    }
    if instance::hold(&mut tx, holder, HoldKind::Streams, (key_id, 0), -1).await? {
        sqlx::query("UPDATE key_streams SET held = held - 1 WHERE key_id = $1")
            .bind(key_id.to_owned())
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await
}

/// Runs its `stop` when dropped before [`StopUnlessMetered::metered`]. A stream started on a
/// customer key is metered only after its start (which may wait on the budget's database);
/// a handler dropped in between, its client gone, would otherwise leave the stream running
/// uncharged.
pub(crate) struct StopUnlessMetered<F: FnOnce()>(Option<F>);

impl<F: FnOnce()> StopUnlessMetered<F> {
    /// Armed: `stop` runs unless [`Self::metered`] is called.
    pub(crate) fn new(stop: F) -> Self {
        Self(Some(stop))
    }

    /// The stream is metered: nothing to stop.
    pub(crate) fn metered(mut self) {
        self.0 = None;
    }
}

impl<F: FnOnce()> Drop for StopUnlessMetered<F> {
    fn drop(&mut self) {
        if let Some(stop) = self.0.take() {
            stop();
        }
    }
}

/// What [`meter`] charges a running stream, and how it stops it.
pub struct Metered {
    /// The start request's tab (its first interval is reserved and charged there).
    pub first: Arc<Tab>,
    /// The model (or the stream's pipeline) the rate is looked up by.
    pub model: String,
    /// The pipeline's gateway units in one interval (seconds, for live video and BYOC).
    pub units: u64,
    /// How often the stream is charged.
    pub interval: Duration,
    /// The orchestrator serving it, for the ledger.
    pub orchestrator: String,
    /// Fires when the stream has ended for any reason.
    pub ended: CancellationToken,
    /// Stops the stream, with a reason.
    pub stop: Box<dyn Fn(&str) + Send + Sync>,
    /// The stream's place among the key's concurrent streams.
    pub permit: Option<StreamPermit>,
    /// What its orchestrators have been paid, which a multiple of the orchestrator's price is
    /// taken of; none: not known (the fee of an interval is then 0).
    pub paid: Option<Paid>,
}

/// What a stream's orchestrators have been paid so far, and how much of it was charged.
pub struct Paid {
    /// Wei paid since the stream started (ticket fees or EV, as the stream counts them).
    pub read: Box<dyn Fn() -> Ratio + Send + Sync>,
    /// Wei of it already charged (by the start request's tab).
    pub charged: Ratio,
    /// Whether `read` counts the EV of the tickets sent (a BYOC stream's, whose fees the
    /// gateway does not see) rather than fees: the ledger's column for it.
    pub ev: bool,
    /// The stream's payments on their way ([`Outstanding::watch`]): once the stream has
    /// ended and none is, `read` is final. None: final as soon as the stream has ended.
    pub settled: Option<tokio::sync::watch::Receiver<usize>>,
}

/// A stream's payment tasks still running: each holds a [`Payer`] while it runs. A stream
/// ends without waiting for them (its teardown, its orchestrator's place, its client's stop),
/// and its key's last charge waits for them instead, so that a payment the end caught
/// mid-call is charged.
#[derive(Debug)]
pub struct Outstanding(tokio::sync::watch::Sender<usize>);

impl Default for Outstanding {
    fn default() -> Self {
        Self(tokio::sync::watch::Sender::new(0))
    }
}

impl Outstanding {
    /// Counts one more payment task until the [`Payer`] is dropped.
    pub fn payer(&self) -> Payer {
        self.0.send_modify(|n| *n += 1);
        Payer(self.0.clone())
    }

    /// The count, for [`Paid::settled`].
    pub fn watch(&self) -> tokio::sync::watch::Receiver<usize> {
        self.0.subscribe()
    }
}

/// One running payment task of a stream (see [`Outstanding`]).
#[derive(Debug)]
pub struct Payer(tokio::sync::watch::Sender<usize>);

impl Drop for Payer {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl std::fmt::Debug for Paid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Paid").field("charged", &self.charged).finish_non_exhaustive()
    }
}

impl Paid {
    /// Counts `wei` on `tab`, as EV or as fee.
    pub fn record(&self, tab: &Tab, wei: &Ratio) {
        if self.ev { tab.paid(0, wei, &Ratio::ZERO) } else { tab.paid(0, &Ratio::ZERO, wei) }
    }

    /// What was paid since the last call, now counted as charged.
    fn take(&mut self) -> Ratio {
        let now = (self.read)();
        let fee = now.checked_sub(&self.charged).unwrap_or(Ratio::ZERO);
        self.charged = now;
        fee
    }
}

impl std::fmt::Debug for Metered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metered")
            .field("model", &self.model)
            .field("units", &self.units)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

/// Charges a running stream each `interval` until it ends; stops it when its key's budget
/// cannot pay for the next interval (or the key database fails), or when its key no longer
/// lets it run (see `follow`: read at each interval, and at once after a change through this
/// instance's admin API).
///
/// Priced as a multiple of the orchestrator's price, an interval is charged that multiple of
/// what was paid for the stream during it (so in arrears, as payments go out), and what was
/// paid after the last interval is charged when the stream ends.
pub async fn meter(mut m: Metered) {
    let mut seq = 1u64;
    // Watched before the key is first read, so that no change made here goes unseen.
    let mut changed = m.first.key_changed();
    // A change between the start's check and now ends the stream here.
    let mut waited = match m.first.next().await {
        Ok(_) => None,
        Err(e) => Some(Waited::KeyEnded(e)),
    };
    loop {
        let waited = match waited.take() {
            Some(w) => w,
            None => wait_interval(&m, &mut changed).await,
        };
        let next = match waited {
            Waited::Due => m.first.next().await,
            Waited::Ended => {
                // The key's place is free as the stream ends, not once its payments are in.
                drop(m.permit.take());
                let fee = final_fee(m.paid.as_mut()).await;
                charge_rest(&m, fee, seq).await;
                break;
            }
            Waited::KeyEnded(e) => Err(e),
        };
        let tab = match next {
            Ok(tab) => tab,
            Err(e) => {
                tracing::info!(key_id = %m.first.key().id, error = %e, "stream stopped: its key no longer lets it run");
                (m.stop)(&format!("{}: {}", e.kind().name(), e.message()));
                // What was paid for it until it stopped is charged as it would have been.
                let _ = tokio::time::timeout(STOP_WAIT, m.ended.cancelled()).await;
                drop(m.permit.take());
                let fee = final_fee(m.paid.as_mut()).await;
                charge_rest(&m, fee, seq).await;
                break;
            }
        };
        let fee = m.paid.as_mut().map(Paid::take);
        let request_id = format!("{}-{seq}", m.first.request_id());
        seq += 1;
        if let (Some(fee), Some(paid)) = (&fee, &m.paid) {
            paid.record(&tab, fee);
        }
        match tab.reserve(&m.model, m.units, fee.as_ref()).await {
            Ok(()) => {
                tab.served(&m.orchestrator);
                tab.record(request_id, 200);
            }
            Err(e) => {
                tracing::info!(key_id = %tab.key().id, error = %e, "stream stopped: its key cannot pay for more");
                (m.stop)(&format!("{}: {}", e.kind().name(), e.message()));
                let status = if e.kind() == Kind::BudgetExceeded { 402 } else { 503 };
                tab.record(request_id, status);
                break;
            }
        }
    }
    drop(m.permit);
}

/// How a stream's wait for its next interval ended.
enum Waited {
    /// The interval is due.
    Due,
    /// The stream ended.
    Ended,
    /// Its key was changed here and no longer lets it run.
    KeyEnded(Error),
}

/// How long a stream its key ended is given to stop before what was paid for it is read.
const STOP_WAIT: Duration = Duration::from_secs(5);
/// How long an ended stream's last payments are waited for: a BYOC payment's own deadline
/// is 75 s (a live one's 10 s), and the wait is the meter's alone.
const SETTLE_WAIT: Duration = Duration::from_secs(90);

/// What was paid for an ended stream since its last charge, read once its last payment, if one
/// was on its way, is booked: read at once, a payment the stop caught mid-call was not charged.
async fn final_fee(paid: Option<&mut Paid>) -> Option<Ratio> {
    let paid = paid?;
    if let Some(settled) = &mut paid.settled {
        let _ = tokio::time::timeout(SETTLE_WAIT, settled.wait_for(|n| *n == 0)).await;
    }
    Some(paid.take())
}

/// Waits out one interval of `m`, reading its key whenever it is changed here meanwhile
/// (`changed`, replaced as it fires).
async fn wait_interval(m: &Metered, changed: &mut CancellationToken) -> Waited {
    let due = tokio::time::Instant::now() + m.interval;
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(due) => return Waited::Due,
            () = m.ended.cancelled() => return Waited::Ended,
            () = changed.cancelled() => {
                // Watched again before the read, so that a change during it wakes us too.
                *changed = m.first.key_changed();
                if let Err(e) = m.first.next().await {
                    return Waited::KeyEnded(e);
                }
            }
        }
    }
}

/// Charges what was paid for an ended stream since its last interval (a multiple of the
/// orchestrator's price only: other prices are charged in advance).
async fn charge_rest(m: &Metered, fee: Option<Ratio>, seq: u64) {
    let Some(fee) = fee.filter(|f| !f.is_zero() && m.first.priced_by_fee(&m.model)) else {
        return;
    };
    // On the key as it is now (a lowered budget), or as it ran when it no longer lets the
    // stream run: what was paid for the stream is charged within the budget either way
    // (beyond it, the row records the refusal uncharged).
    let tab = m.first.next().await.unwrap_or_else(|_| m.first.last());
    if let Some(paid) = &m.paid {
        paid.record(&tab, &fee);
    }
    let request_id = format!("{}-{seq}", m.first.request_id());
    // No unit of time: only a multiple prices it; a refusal is recorded uncharged.
    let status = match tab.reserve(&m.model, 0, Some(&fee)).await {
        Ok(()) => {
            tab.served(&m.orchestrator);
            200
        }
        Err(e) if e.kind() == Kind::BudgetExceeded => 402,
        Err(_) => 503,
    };
    tab.record(request_id, status);
}

#[cfg(test)]
mod stop_tests {
    use super::{Outstanding, Paid, StopUnlessMetered, final_fee};
    use livepeer_pm::Ratio;
    use std::cell::Cell;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// An ended stream's last payment, on its way when it stopped, is charged: what was paid
    /// is read once the stream says its payments are booked, not as soon as it stopped.
    #[tokio::test]
    async fn an_ended_stream_is_read_once_its_last_payment_is_booked() {
        let wei = Arc::new(AtomicU64::new(100));
        let outstanding = Outstanding::default();
        let seen = wei.clone();
        let mut paid = Paid {
            read: Box::new(move || Ratio::from_u64(seen.load(Ordering::SeqCst))),
            charged: Ratio::from_u64(40),
            ev: false,
            settled: Some(outstanding.watch()),
        };
        // A payment task still running as the stream ends: booked, then gone.
        let (late, payer) = (wei.clone(), outstanding.payer());
        tokio::spawn(async move {
            tokio::task::yield_now().await;
            late.store(130, Ordering::SeqCst);
            drop(payer);
        });
        assert_eq!(final_fee(Some(&mut paid)).await, Some(Ratio::from_u64(90)));
        assert_eq!(final_fee(None).await, None);
    }

    #[test]
    fn a_stream_is_stopped_unless_it_was_metered() {
        let stopped = Cell::new(0);
        drop(StopUnlessMetered::new(|| stopped.set(stopped.get() + 1)));
        assert_eq!(stopped.get(), 1, "dropped before metering");
        StopUnlessMetered::new(|| stopped.set(stopped.get() + 1)).metered();
        assert_eq!(stopped.get(), 1, "metered");
    }
}

#[cfg(test)]
mod permit_tests {
    use std::sync::Arc;
    use std::time::Duration;

    use crate::error::Kind;
    use crate::keys::{KeyStore, KeysConfig, NewKey};

    /// A start whose request goes while its stream is being counted: the count finishes in its
    /// own task, and the permit nobody took gives the place back, so the key's one stream is
    /// free again. (The race the task closes, a drop during the commit, is not reproduced
    /// here: this checks what the task does with a permit whose request is gone.)
    #[tokio::test]
    async fn a_permit_whose_request_went_gives_its_place_back() {
        let dir = tempfile::tempdir().unwrap();
        let config = KeysConfig::sqlite(dir.path().to_owned());
        let store = Arc::new(KeyStore::open(&config).await.unwrap().0);
        let new: NewKey =
            serde_json::from_value(serde_json::json!({"name": "s", "max_streams": 1})).unwrap();
        let key = Arc::new(store.create(new).await.unwrap().0);
        let tab = store.tab(key, "live-video-to-video");
        let held = tab.stream_permit().await.unwrap();
        let full = tab.stream_permit().await.unwrap_err();
        assert_eq!(full.kind(), Kind::StreamLimit);
        drop(held);
        // Polled once (the count's task is spawned), then dropped.
        let cut = futures_util::FutureExt::now_or_never(tab.stream_permit());
        assert!(cut.is_none(), "counted before it could be cut");
        // Whatever the count found, the place ends up free: a permit is had again.
        for _ in 0..500 {
            match tab.stream_permit().await {
                Ok(_) => return,
                Err(e) if e.kind() == Kind::StreamLimit => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(e) => panic!("{e:?}"),
            }
        }
        panic!("the key's stream stayed taken");
    }
}
