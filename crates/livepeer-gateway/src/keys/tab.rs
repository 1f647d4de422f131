//! A request's tab: the per-request slot the key check puts in the request's extensions, which
//! the job path fills (units, orchestrator, what it paid) and the key check reads back into the
//! usage ledger's row once the answer is ready.
//!
//! Budgets are kept by reserve-then-settle. Before any orchestrator is paid, the job asks
//! [`Tab::reserve`] for what the job will cost the customer; with a budget, that amount is
//! added to the key's reservations for the current period by one conditional `UPDATE` that
//! succeeds only while spent + reserved + amount stays within the budget. PostgreSQL re-checks
//! the condition on the row it locked, so instances sharing the database cannot together go
//! over it; SQLite writes one at a time. The ledger writer settles the reservation (moves it
//! to the spent total, or releases it when the job failed) in the transaction that writes the
//! request's row.
//!
//! The reservation is taken from this instance's lease of the budget when it holds enough,
//! without a database round trip; the lease itself is reserved in the database the same way
//! (see `lease`).

use std::sync::{Arc, Mutex};

use livepeer_pm::Ratio;

use super::lease::Reserved;
use super::record::KeyInfo;
use super::{KeyError, KeyStore, UsageRow, db, price};
use crate::error::{Error, Kind};

/// What the job path reports of a request made with a customer key.
#[derive(Debug)]
pub struct Tab {
    pub(super) store: Arc<KeyStore>,
    key: Arc<KeyInfo>,
    pipeline: &'static str,
    /// The ledger's id of the request when its answer carries none (`X-Request-Id`).
    request_id: String,
    /// When the job (a stream: its start) began, unix ms: an operator's stop of the key's
    /// streams after it ends it.
    since_ms: i64,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    model: Option<String>,
    units: u64,
    orchestrator: String,
    tickets: u64,
    paid_ev: Ratio,
    paid_fee: Ratio,
    /// What the customer owes once the job is served (nano-USD).
    charge: u64,
    /// Whether the job was served (the customer is charged).
    served: bool,
    /// Whether what was served is the customer's whether its client waits for the answer or
    /// not (a pushed segment, published): owed even if the client left.
    delivered: bool,
    /// Reserved against the budget (nano-USD), and in which period.
    reserved: u64,
    period_start: i64,
    /// Whether its ledger row was made; a tab dropped without one makes it then (see `Drop`).
    recorded: bool,
    /// What the last reservation was priced on: the job's bound in units, the orchestrator's
    /// fee for it, and the charge; a settlement on what was used never goes above it.
    bound: Bound,
    /// The instance id whose budget hold the reservation is under (see `lease`).
    holder: Option<Arc<str>>,
    /// The part of `reserved` held under `holder`: less than all of it when an earlier id of
    /// this instance was reaped after reserving (the reaper released that part already).
    held: u64,
    /// Whether the unused part of the reservation went back to the lease (once, with the row).
    returned: bool,
}

#[derive(Debug, Default)]
struct Bound {
    units: u64,
    fee: Option<Ratio>,
    charge: u64,
    /// The ETH/USD rate it was priced at, which its settlement is priced at too.
    usd_per_eth: Option<Ratio>,
}

impl Tab {
    pub(super) fn new(store: Arc<KeyStore>, key: Arc<KeyInfo>, pipeline: &'static str) -> Self {
        let request_id = format!("{:016x}", rand::random::<u64>());
        let state = Mutex::new(State::default());
        Self { store, key, pipeline, request_id, since_ms: super::now_ms(), state }
    }

    /// A fresh tab for the next interval of a stream, on its key as it is now: `Err` with the
    /// reason when the stream may not go on (see [`KeyStore::current`]).
    pub async fn next(&self) -> Result<Tab, Error> {
        let key = self.current(self.since_ms).await?;
        let mut next = Tab::new(self.store.clone(), key, self.pipeline);
        next.since_ms = self.since_ms;
        Ok(next)
    }

    /// Whether a stream of this tab's key and job, started at `since_ms` (unix ms, as
    /// [`since_ms`](Self::since_ms) gives it) and checked a request at a time (a pushed
    /// transcoding stream), may go on: `Err` with the reason when not (see
    /// [`KeyStore::current`]).
    pub async fn follow(&self, since_ms: i64) -> Result<(), Error> {
        self.current(since_ms).await.map(|_| ())
    }

    /// When this request (a stream: its start) began, unix ms.
    pub fn since_ms(&self) -> i64 {
        self.since_ms
    }

    /// The key as it is now for this tab's job, in a stream started at `since_ms`.
    async fn current(&self, since_ms: i64) -> Result<Arc<KeyInfo>, Error> {
        // A BYOC stream's start was checked for its capability (its model here); the others'
        // for their pipeline.
        let model = (self.pipeline == "byoc").then(|| self.state().model.clone()).flatten();
        let job = (self.pipeline, model.as_deref());
        self.store.current(&self.key, job, since_ms).await
    }

    /// A fresh tab for the rest of an ended stream, on the key it ran on (what was paid for
    /// it is owed whatever became of the key since).
    pub(crate) fn last(&self) -> Tab {
        Tab::new(self.store.clone(), self.key.clone(), self.pipeline)
    }

    /// A token cancelled when this tab's key is changed through this instance's admin API.
    pub fn key_changed(&self) -> tokio_util::sync::CancellationToken {
        self.store.changed(&self.key.id)
    }

    /// The ledger's id of the request, when its answer has no `X-Request-Id`.
    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    /// Records the tab's row now (a stream's interval, which no HTTP answer carries).
    pub fn record(&self, request_id: String, status: u16) {
        self.store.record(self.row(super::now_ms(), request_id, status, 0));
    }

    /// A promise of this request's row, for a job that writes it after its answer: the
    /// ledger's writer waits for it at shutdown (see [`super::RowPromise`]).
    pub fn promise_row(&self) -> super::RowPromise {
        self.store.promise_row()
    }

    /// The key the request was made with.
    pub fn key(&self) -> &KeyInfo {
        &self.key
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Prices the job (`units` of the pipeline's gateway units on `model`; the orchestrator
    /// would charge `orchestrator_fee_wei`) and, when the key has a budget, reserves its cost:
    /// `Err` 402 `budget_exceeded` with what remains when it does not fit, 503 when the
    /// database fails. Called again (on a failover to a dearer orchestrator), it reserves the
    /// difference only.
    pub async fn reserve(
        &self,
        model: &str,
        units: u64,
        orchestrator_fee_wei: Option<&Ratio>,
    ) -> Result<(), Error> {
        let job = (self.pipeline, model, units, orchestrator_fee_wei);
        let (charge, usd_per_eth) = self
            .store
            .prices
            .charge_at(job, None)
            .map_err(|e| Error::new(Kind::PriceUnavailable, e.0))?;
        let (more, period_start) = {
            let mut s = self.state();
            s.model = Some(model.to_owned());
            s.units = units;
            s.charge = charge;
            let fee = orchestrator_fee_wei.copied();
            s.bound = Bound { units, fee, charge, usd_per_eth };
            if s.reserved == 0 {
                s.period_start = period_start(&self.key, super::now());
            }
            (charge.saturating_sub(s.reserved), s.period_start)
        };
        let Some(budget) = self.budget_nano() else { return Ok(()) };
        if more == 0 {
            return Ok(());
        }
        let amount = match i64::try_from(more) {
            Ok(amount) if amount <= budget => amount,
            // More than the whole budget: refused here, and `spent + reserved + amount`
            // cannot overflow in the database.
            _ => {
                let spend = db::spend(&self.store.db, &self.key.id, period_start).await;
                let used = spend.map_err(KeyError::Db)?.map_or(0, |(s, r)| s.saturating_add(r));
                return Err(exceeded(budget, used, charge));
            }
        };
        // From this instance's lease of the budget, or the database (see `lease`).
        match self.store.leases.reserve(&self.key.id, period_start, amount, budget).await {
            Ok(Reserved::Held(holder)) => {
                self.hold(more, holder);
                Ok(())
            }
            Ok(Reserved::Exceeded(used)) => Err(exceeded(budget, used, charge)),
            Err(e) => Err(KeyError::Db(e).into()),
        }
    }

    /// Notes `more` reserved under `holder`.
    fn hold(&self, more: u64, holder: Arc<str>) {
        let mut s = self.state();
        s.reserved += more;
        if s.holder.as_ref() == Some(&holder) {
            s.held += more;
        } else {
            s.held = more;
        }
        s.holder = Some(holder);
    }

    /// [`reserve`](Self::reserve) of `units` without the orchestrator's fee, and at least one
    /// nano-USD of the budget: a job priced as a multiple of that fee costs nothing until it
    /// is paid, so without it a spent budget would let every such job through, each paid to
    /// its orchestrator before its charge is refused. 402 when nothing of the budget is left.
    pub async fn reserve_before_fee(&self, model: &str, units: u64) -> Result<(), Error> {
        self.reserve(model, units, None).await?;
        let (reserved, period_start) = {
            let s = self.state();
            (s.reserved, s.period_start)
        };
        let Some(budget) = self.budget_nano() else { return Ok(()) };
        if reserved > 0 {
            return Ok(());
        }
        match self.store.leases.reserve(&self.key.id, period_start, 1, budget).await {
            Ok(Reserved::Held(holder)) => {
                self.hold(1, holder);
                Ok(())
            }
            Ok(Reserved::Exceeded(used)) => Err(exceeded(budget, used, 0)),
            Err(e) => Err(KeyError::Db(e).into()),
        }
    }

    /// Settles the reserved job on the `used` units its answer reports (an LLM's tokens): the
    /// customer owes the price of `used`, never more than the bound it was reserved on (an
    /// orchestrator cannot make a customer pay beyond what the request allowed). A multiple of
    /// the orchestrator's price is taken of its fee scaled to the units used. Priced at the
    /// ETH/USD rate the reservation was; before any reservation the bound's charge stands.
    pub fn settle_units(&self, used: u64) {
        let mut s = self.state();
        let Some(model) = s.model.clone() else { return };
        let used = used.min(s.bound.units);
        let fee = match (&s.bound.fee, s.bound.units) {
            (Some(fee), units @ 1..) => {
                fee.checked_mul_u64(used).and_then(|f| f.checked_div(&Ratio::from_u64(units))).ok()
            }
            _ => None,
        };
        let job = (self.pipeline, model.as_str(), used, fee.as_ref());
        if let Ok((charge, _)) = self.store.prices.charge_at(job, s.bound.usd_per_eth) {
            s.units = used;
            s.charge = charge.min(s.bound.charge);
        }
    }

    /// Whether `model` is priced as a multiple of the orchestrator's price.
    pub(super) fn priced_by_fee(&self, model: &str) -> bool {
        let rate = self.store.prices.rate(self.pipeline, model);
        matches!(rate, Some(price::Rate::OrchestratorMultiple(_)))
    }

    /// Counts a payment sent to an orchestrator (every attempt's, failed ones too).
    pub fn paid(&self, tickets: u32, ev_wei: &Ratio, fee_wei: &Ratio) {
        let mut s = self.state();
        s.tickets += u64::from(tickets);
        s.paid_ev = s.paid_ev.checked_add(ev_wei).unwrap_or(s.paid_ev);
        s.paid_fee = s.paid_fee.checked_add(fee_wei).unwrap_or(s.paid_fee);
    }

    /// The job was served by `orchestrator`: the customer owes what was reserved for it.
    pub fn served(&self, orchestrator: &str) {
        let mut s = self.state();
        s.orchestrator = orchestrator.to_owned();
        s.served = true;
    }

    /// [`served`](Self::served), and what was served is the customer's even if its client
    /// leaves before the answer (a pushed segment published in the stream's playlist): the
    /// row a dropped request writes then charges it.
    pub fn delivered(&self, orchestrator: &str) {
        self.served(orchestrator);
        self.state().delivered = true;
    }

    /// The ledger row of the request, answered `status` after `latency_us`; the charge stands
    /// only when the job was served and the answer is a success, or when what was served was
    /// delivered ([`delivered`](Self::delivered)) and its client left before the answer.
    pub(crate) fn row(
        &self,
        at_ms: i64,
        request_id: String,
        status: u16,
        latency_us: u64,
    ) -> UsageRow {
        let mut s = self.state();
        s.recorded = true;
        let owed = status < 400 || (status == Self::DROPPED && s.delivered);
        let charged = if s.served && owed { s.charge } else { 0 };
        // The charge settles (in the ledger's transaction) the part of the reservation it
        // used; the rest goes back to the lease now.
        let released = charged.min(s.held);
        if !s.returned
            && let Some(holder) = s.holder.clone()
        {
            s.returned = true;
            let back = i64::try_from(s.held - released).unwrap_or(0);
            self.store.leases.credit(&self.key.id, &holder, s.period_start, back);
        }
        let outcome = match status {
            0..400 => "ok",
            401 | 402 | 403 | 429 => "refused",
            400..500 => "client_error",
            _ => "failed",
        };
        UsageRow {
            at_ms,
            key_id: self.key.id.clone(),
            request_id,
            pipeline: self.pipeline,
            model: s.model.clone().unwrap_or_default(),
            status,
            latency_us,
            units: s.units,
            orchestrator: s.orchestrator.clone(),
            tickets: s.tickets,
            paid_ev_wei: s.paid_ev.to_string(),
            paid_fee_wei: s.paid_fee.to_string(),
            charged_nusd: i64::try_from(charged).unwrap_or(i64::MAX),
            reserved_nusd: i64::try_from(released).unwrap_or(i64::MAX),
            holder: s.holder.clone(),
            period_start: if s.reserved > 0 {
                s.period_start
            } else {
                period_start(&self.key, at_ms / 1000)
            },
            outcome,
        }
    }

    /// 499 (nginx's "client closed request"): the status of a request whose handler was
    /// dropped before it answered.
    const DROPPED: u16 = 499;

    fn budget_nano(&self) -> Option<i64> {
        let budget = self.key.budget_micro_usd?;
        Some(i64::try_from(budget.saturating_mul(1000)).unwrap_or(i64::MAX))
    }
}

/// A request's handler can be dropped before the key check writes its row: the client went
/// away, a write deadline closed the connection, or shutdown ended it. Its reservation must
/// still be released, what was paid for it recorded, and what was delivered charged (a
/// pushed segment is published whether its pusher waits or not), so the tab writes its row
/// itself when no row was made and any of these happened: a key without a budget reserves
/// nothing, and credit already held covers a fee with no ticket, yet the job was served.
impl Drop for Tab {
    fn drop(&mut self) {
        let pending = {
            let s = self.state();
            let paid = s.tickets > 0 || !s.paid_ev.is_zero() || !s.paid_fee.is_zero();
            !s.recorded && (s.reserved > 0 || paid || s.served)
        };
        if pending {
            let row = self.row(super::now_ms(), self.request_id.clone(), Self::DROPPED, 0);
            self.store.record(row);
        }
    }
}

/// The start (unix seconds) of `key`'s budget period holding `now`: periods follow one another
/// from the key's creation; a budget without a period covers the key's lifetime (0).
pub(crate) fn period_start(key: &KeyInfo, now: i64) -> i64 {
    match key.budget_period_seconds.and_then(|p| i64::try_from(p).ok()).filter(|p| *p > 0) {
        Some(p) => key.created_at + (now - key.created_at).max(0) / p * p,
        None => 0,
    }
}

/// 402 `budget_exceeded`, saying what is left of the budget and what the job costs.
fn exceeded(budget: i64, used: i64, charge: u64) -> Error {
    let left = (budget - used).max(0);
    let message = format!(
        "this API key's budget is spent: {} USD left of {} USD, this job costs {} USD",
        price::usd_text(left),
        price::usd_text(budget),
        price::usd_text(i64::try_from(charge).unwrap_or(i64::MAX)),
    );
    Error::new(Kind::BudgetExceeded, message)
        .detail("remaining_usd", price::usd_text(left))
        .detail("budget_usd", price::usd_text(budget))
        .detail("cost_usd", price::usd_text(i64::try_from(charge).unwrap_or(i64::MAX)))
}
