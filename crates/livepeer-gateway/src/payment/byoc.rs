//! BYOC job payments with the gateway's own key (PROTOCOL.md §10.7, go-livepeer
//! byoc/payment.go `createPayment`), from a `JobToken`'s ticket params and price.
//!
//! One account per (orchestrator, capability): the balance view the orchestrator keeps for
//! (sender, capability), and the ticket session of the token's params. The view is set from
//! a token's `balance` when the token was fetched after the view last changed and no payment
//! to the account is in flight (a token fetched before a credit or debit the view already
//! holds, or before the orchestrator processed a payment in flight, would undo it); in
//! between it is credited by the EV of the tickets sent and debited by `ceil(seconds) ×
//! price` per job, as the orchestrator debits it. An attempt of unknown outcome (sent, never
//! answered) is booked as the credit spent: its tickets count for nothing, and the fee of its
//! timeout is debited when more (see [`ByocOutcome::Unknown`]).
//!
//! A job pays nothing while the view holds two minutes of the price (`120 × price`);
//! otherwise it sends tickets for `price × timeout_seconds`: `ceil(cost / EV)` tickets, at
//! most 600 (the nonces one set of params takes). The view is credited when the payment is
//! made, not when the job ends, so that concurrent jobs see it and do not all pay.
//!
//! Credit sent is unconfirmed until the orchestrator answers the job that carried it: a job
//! sent meanwhile may reach it first, and it refuses a job without a minute of the price
//! (`60 × price`). So a job that needs no payment of its own, but would find less than that
//! without the unconfirmed credit, waits (within its deadline) for that credit to be
//! confirmed rather than be refused, or pay again.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use livepeer_pm::{
    B256, ExpirationParams, MAX_SENDER_NONCES, Ratio, SenderSession, SignedRatio, TicketParams,
    build_payment, payment_header_value,
};

use tokio::sync::watch;
use tokio::time::Instant;

use super::local::LocalPayer;
use super::terms::PayError;
use crate::orchestrator::byoc::JobToken;

/// How many seconds of the price the view must hold for a job to go unpaid (go-livepeer).
const MIN_BALANCE_SECONDS: u64 = 120;
/// How many seconds of the price the orchestrator requires to find (PROTOCOL.md §10.4).
const ORCH_MIN_SECONDS: u64 = 60;

/// The BYOC accounts; cheap to clone. Bounded by the (orchestrator, capability) pairs the pool
/// offers: [`ByocBooks::retain`] drops the rest.
#[derive(Debug, Clone, Default)]
pub(super) struct ByocBooks {
    accounts: Arc<Mutex<HashMap<(String, String), Account>>>,
}

#[derive(Debug)]
struct Account {
    /// What the orchestrator holds for (sender, capability), as this gateway sees it.
    balance: SignedRatio,
    /// When the view last changed (a token applied, a payment, a job settled).
    changed: Option<Instant>,
    /// Payments with tickets not settled yet.
    pending: u32,
    /// The ticket sessions of the tokens' params.
    sessions: Sessions,
    /// EV sent in payments whose job the orchestrator has not answered yet.
    unconfirmed: Ratio,
    /// Bumped whenever credit is confirmed, for jobs waiting on it.
    confirmed: watch::Sender<u64>,
}

impl Default for Account {
    fn default() -> Self {
        Self {
            balance: SignedRatio::ZERO,
            changed: None,
            pending: 0,
            sessions: Sessions::default(),
            unconfirmed: Ratio::ZERO,
            confirmed: watch::Sender::new(0),
        }
    }
}

/// What `ByocBooks::prepare` decided.
#[derive(Debug)]
pub enum ByocPrepared {
    /// Send the job with this payment (which may be none).
    Ready(Box<ByocPayment>),
    /// Wait for credit in flight to be confirmed (the receiver changes), then prepare again.
    Wait(watch::Receiver<u64>),
}

/// A BYOC payment made for one attempt; settle it with [`super::Payments::byoc_settle`].
#[derive(Debug)]
pub struct ByocPayment {
    account: (String, String),
    /// The `Livepeer-Payment` value, `None` when nothing is sent.
    header: Option<String>,
    /// Tickets sent.
    pub tickets: u32,
    /// Their expected value, wei (exact).
    pub ev_sent: Ratio,
    /// Wei per second (exact).
    pub price: Ratio,
    /// What the rule wants sent, wei (exact): the timeout's worth, or what is short of the
    /// minute when more. The tickets cover it, rounded up to whole tickets.
    due: Ratio,
    /// The orchestrator has answered the job that carried it.
    confirmed: bool,
    /// The books it was booked in, until it is settled: a payment dropped unsettled (its
    /// job dropped mid-call, as when the client leaves) is settled then, as of unknown
    /// outcome, or its account would stay pending and unconfirmed for good (no fresh token's
    /// balance taken again, later jobs waiting on a confirmation that never comes).
    books: Option<ByocBooks>,
    /// The seconds it pays for, as booked: what a job dropped mid-call may have been charged.
    units: u64,
}

impl Drop for ByocPayment {
    fn drop(&mut self) {
        if let Some(books) = self.books.take() {
            books.settle_ref(self, ByocOutcome::Unknown(self.units));
        }
    }
}

impl ByocPayment {
    /// An attempt that pays nothing: an off-chain gateway or orchestrator.
    pub fn none(orch: &str, capability: &str) -> Self {
        Self {
            account: (orch.to_owned(), capability.to_owned()),
            header: None,
            tickets: 0,
            ev_sent: Ratio::ZERO,
            price: Ratio::ZERO,
            due: Ratio::ZERO,
            confirmed: false,
            books: None,
            units: 0,
        }
    }

    /// The `Livepeer-Payment` value to send, if any.
    pub fn header(&self) -> Option<&str> {
        self.header.as_deref()
    }

    /// The fee of `seconds` of work at this payment's price, wei (exact).
    pub fn fee(&self, seconds: u64) -> Ratio {
        self.price.checked_mul_u64(seconds).unwrap_or(Ratio::ZERO)
    }

    /// What the rule wants sent, wei (exact); zero when nothing is due.
    pub(super) fn due(&self) -> &Ratio {
        &self.due
    }
}

/// What became of a BYOC payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByocOutcome {
    /// The orchestrator ran the job for this many seconds (rounded up) and charged them.
    Charged(u64),
    /// It processed the payment and charged nothing (it answered without running the job).
    Uncharged,
    /// Sent, and never answered (the connection closed or the stream was reset before the
    /// answer's head, or no head came within the deadline), for a job of at most this many
    /// seconds: the orchestrator may hold none, some or all of the tickets (go-livepeer's
    /// leaves a payment it cannot take unanswered), and may have run the job. Booked as an
    /// attempt of unknown outcome is everywhere, as the credit spent: the tickets' EV, or the
    /// fee of these seconds when more, is debited, so that the view counts on no credit the
    /// orchestrator may lack (which would underpay the next job into `Insufficient balance`);
    /// when it did hold them, the next job pays up to that much again, which stays credit.
    Unknown(u64),
    /// It refused before processing the payment (no capacity, the job's creds), or the
    /// request never went out: the tickets count for nothing.
    Refused,
}

/// How many sets of token params an account keeps sessions for.
const LIVE_SESSIONS: usize = 8;
/// How many sessions let go an account remembers the last nonce of.
const RETIRED_SESSIONS: usize = 64;

/// One account's ticket sessions, by the params' `recipient_rand_hash`. go-livepeer's
/// orchestrator refuses a nonce it has seen for a hash, and each token it hands out has params
/// of their own (a fresh seed every time), while a job may pay with a token older than the
/// newest one used (the refresher replaced it while the job waited, or a stream payment
/// fetched another). So a hash's nonces go on where they were: its session is kept while it is
/// among the last [`LIVE_SESSIONS`] used, and resumed from its last nonce while it is among
/// the last [`RETIRED_SESSIONS`] let go (params that old have expired, on chain, and are
/// refused before this). Before, one session was kept per account, and a job on an older
/// token started its params' nonces at 1 again: tickets the orchestrator refused after their
/// EV was booked as credit.
#[derive(Debug, Default)]
struct Sessions {
    live: VecDeque<SenderSession>,
    retired: VecDeque<(B256, u32)>,
}

impl Sessions {
    /// The session of `params` with `expiration`: kept, resumed, or new.
    fn get_or_insert(
        &mut self,
        params: TicketParams,
        expiration: ExpirationParams,
    ) -> Option<&mut SenderSession> {
        let hash = params.recipient_rand_hash;
        match self.live.iter().position(|s| s.params().recipient_rand_hash == hash) {
            // The most recently used last, so that the one let go is the least recent.
            Some(i) => {
                let session = self.live.remove(i)?;
                self.live.push_back(session);
            }
            None => {
                let resumed = self.retired.iter().position(|(h, _)| *h == hash);
                let last = resumed.and_then(|i| self.retired.remove(i)).map(|(_, n)| n);
                if self.live.len() == LIVE_SESSIONS
                    && let Some(old) = self.live.pop_front()
                {
                    if self.retired.len() == RETIRED_SESSIONS {
                        self.retired.pop_front();
                    }
                    self.retired.push_back((old.params().recipient_rand_hash, old.last_nonce()));
                }
                self.live.push_back(match last {
                    Some(n) => SenderSession::resume(params, expiration, n),
                    None => SenderSession::new(params, expiration),
                });
            }
        }
        self.live.back_mut()
    }
}

// === impl ByocBooks ===

impl ByocBooks {
    /// Pays (or not) for one job of `capability` at `orch` per `token` (fetched at the
    /// instant given), covering `timeout_seconds`, with tickets the gateway's own key signs.
    pub(super) fn prepare(
        &self,
        local: &LocalPayer,
        orch: &str,
        capability: &str,
        token: (&JobToken, Instant),
        timeout_seconds: u64,
    ) -> Result<ByocPrepared, PayError> {
        let job_token = token.0;
        let Some(params) = job_token.ticket_params.filter(|_| !job_token.price.is_zero()) else {
            return Ok(ByocPrepared::Ready(Box::new(ByocPayment::none(orch, capability))));
        };
        let ev = local.ticket_ev(&params)?;
        let mut accounts = self.accounts.lock().map_err(|_| internal(&"accounts lock"))?;
        let key = (orch.to_owned(), capability.to_owned());
        let account = accounts.entry(key).or_default();
        let tickets = |due: &Ratio| ticket_count(due, &ev, timeout_seconds);
        let pair = (orch, capability);
        let mut payment = match decide(account, pair, token, timeout_seconds, &ev, tickets)? {
            Plan::Done(prepared) => return Ok(prepared),
            Plan::Pay(payment) => *payment,
        };
        if local.expired(&params) {
            // go-livepeer's orchestrator refuses the tickets and, doing so, drops the
            // connection: the job would be lost and the orchestrator blamed for a stale token.
            return Err(PayError::Refused(format!(
                "the token's ticket params of {orch} expired; a fresh token is needed"
            )));
        }
        local.check_funds(params.face_value)?;
        if let Some(refusal) = local.over_total_ev(&payment.ev_sent) {
            return Err(PayError::Refused(refusal));
        }
        let expiration = params.expiration_or(ExpirationParams::default());
        let Some(session) = account.sessions.get_or_insert(params, expiration) else {
            return Err(internal(&"no ticket session"));
        };
        if session.last_nonce().saturating_add(payment.tickets) > MAX_SENDER_NONCES {
            return Err(PayError::Refused(format!(
                "the token's ticket params of {orch} have no nonces left; a fresh token is needed"
            )));
        }
        let batch = session.create_batch(local.key(), payment.tickets).map_err(|e| internal(&e))?;
        let mut proto = build_payment(local.sender(), &job_token.price_info, Some(&batch))
            .map_err(|e| internal(&e))?;
        // The token's params are echoed whole, field 7 included (PROTOCOL.md §10.7).
        if let (Some(tp), Some(exp)) = (proto.ticket_params.as_mut(), params.expiration_params) {
            tp.expiration_params = Some(exp.to_proto());
        }
        book(account, &payment.ev_sent)?;
        payment.header = Some(payment_header_value(&proto));
        // Armed once the lock is let go: its drop takes the lock.
        drop(accounts);
        payment.books = Some(self.clone());
        payment.units = timeout_seconds;
        Ok(ByocPrepared::Ready(Box::new(payment)))
    }

    /// Decides (or not) on a payment of `units` seconds of `capability` at `orch` per
    /// `token`, as [`Self::prepare`] does, for tickets made elsewhere (a remote signer's):
    /// when tickets are due, `tickets` of what is due (at most that many can be made for it)
    /// are booked at once, so that concurrent jobs see their credit, and the payment comes
    /// back without its header; [`Self::made`] then records what was really made, or
    /// [`Self::settle`] with [`ByocOutcome::Refused`] undoes it.
    pub(super) fn reserve(
        &self,
        (orch, capability): (&str, &str),
        token: (&JobToken, Instant),
        (units, ev): (u64, &Ratio),
        tickets: impl FnOnce(&Ratio) -> u32,
    ) -> Result<Plan, PayError> {
        let mut accounts = self.accounts.lock().map_err(|_| internal(&"accounts lock"))?;
        let key = (orch.to_owned(), capability.to_owned());
        let account = accounts.entry(key).or_default();
        let mut plan = decide(account, (orch, capability), token, units, ev, tickets)?;
        if let Plan::Pay(payment) = &plan {
            book(account, &payment.ev_sent)?;
        }
        // Armed once the lock is let go: its drop takes the lock.
        drop(accounts);
        if let Plan::Pay(payment) = &mut plan {
            payment.books = Some(self.clone());
            payment.units = units;
        }
        Ok(plan)
    }

    /// Records what was made for a reserved `payment`: `header` with `tickets` of EV `ev`,
    /// at most the tickets reserved; the credit reserved beyond them is given back. With no
    /// tickets the reservation is undone and the job goes without a payment header.
    pub(super) fn made(
        &self,
        payment: &mut ByocPayment,
        header: Option<String>,
        tickets: u32,
        ev: &Ratio,
    ) {
        let kept = tickets.min(payment.tickets);
        let ev_kept = ev.checked_mul_u64(u64::from(kept)).unwrap_or(payment.ev_sent);
        let returned = payment.ev_sent.saturating_sub(&ev_kept).unwrap_or(Ratio::ZERO);
        if let Ok(mut accounts) = self.accounts.lock()
            && let Some(account) = accounts.get_mut(&payment.account)
        {
            account.balance = account
                .balance
                .checked_sub(&SignedRatio::from(returned))
                .unwrap_or(account.balance);
            account.unconfirmed =
                account.unconfirmed.saturating_sub(&returned).unwrap_or(Ratio::ZERO);
            if kept == 0 {
                account.pending = account.pending.saturating_sub(1);
                account.confirmed.send_modify(|n| *n = n.wrapping_add(1));
            }
        }
        if kept == 0 {
            // Nothing pending is left to settle.
            payment.books = None;
        }
        payment.tickets = kept;
        payment.ev_sent = ev_kept;
        payment.header = if kept == 0 { None } else { header };
    }

    /// The orchestrator answered the job that carried `payment`: its credit is confirmed, and
    /// jobs waiting on it go on.
    pub(super) fn confirm(&self, payment: &mut ByocPayment) {
        if payment.tickets == 0 || payment.confirmed {
            return;
        }
        payment.confirmed = true;
        let Ok(mut accounts) = self.accounts.lock() else { return };
        let Some(account) = accounts.get_mut(&payment.account) else { return };
        account.unconfirmed =
            account.unconfirmed.saturating_sub(&payment.ev_sent).unwrap_or(Ratio::ZERO);
        account.confirmed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Settles a payment after its attempt.
    pub(super) fn settle(&self, mut payment: ByocPayment, outcome: ByocOutcome) {
        payment.books = None;
        self.settle_ref(&mut payment, outcome);
    }

    /// [`Self::settle`], for a payment not owned here (one being dropped).
    fn settle_ref(&self, payment: &mut ByocPayment, outcome: ByocOutcome) {
        self.confirm(payment);
        let Ok(mut accounts) = self.accounts.lock() else { return };
        let Some(account) = accounts.get_mut(&payment.account) else { return };
        if payment.tickets > 0 {
            account.pending = account.pending.saturating_sub(1);
        }
        let debit = match outcome {
            ByocOutcome::Charged(seconds) => payment.fee(seconds),
            ByocOutcome::Uncharged => Ratio::ZERO,
            ByocOutcome::Unknown(seconds) => payment.fee(seconds).max(payment.ev_sent),
            ByocOutcome::Refused => payment.ev_sent,
        };
        match account.balance.checked_sub(&SignedRatio::from(debit)) {
            Ok(b) => {
                account.balance = b;
                account.changed = Some(Instant::now());
            }
            Err(e) => tracing::error!(error = %e, "BYOC balance settlement overflowed"),
        }
    }

    /// Keeps only the accounts `keep` holds to: the pairs the pool still offers.
    pub(super) fn retain(&self, keep: impl Fn(&str, &str) -> bool) {
        if let Ok(mut accounts) = self.accounts.lock() {
            accounts.retain(|(o, c), a| a.pending > 0 || keep(o, c));
        }
    }

    /// Every account, for operators: orchestrator, capability and balance view (wei, exact).
    pub(super) fn report(&self) -> Vec<(String, String, String)> {
        let Ok(accounts) = self.accounts.lock() else { return Vec::new() };
        accounts.iter().map(|((o, c), a)| (o.clone(), c.clone(), a.balance.to_string())).collect()
    }
}

/// What the books decided for one job.
#[derive(Debug)]
pub(super) enum Plan {
    /// Nothing to make: go (with or without a payment) or wait.
    Done(ByocPrepared),
    /// Tickets are due: this many, of this EV in all (header not made yet).
    Pay(Box<ByocPayment>),
}

fn internal(e: &dyn std::fmt::Display) -> PayError {
    PayError::Internal(e.to_string())
}

/// The rule of one job, under the accounts lock: the token's balance applied to the view
/// when it is news; no tickets while two minutes of the price are held (waiting when that
/// relies on credit not confirmed yet); otherwise `price × units`, or what is short of the
/// minute when more, is due, in the number of tickets of EV `ev` that `tickets` gives for it.
fn decide(
    account: &mut Account,
    (orch, capability): (&str, &str),
    (token, fetched): (&JobToken, Instant),
    units: u64,
    ev: &Ratio,
    tickets: impl FnOnce(&Ratio) -> u32,
) -> Result<Plan, PayError> {
    let price = token.price.to_ratio().map_err(|e| internal(&e))?;
    if account.changed.is_none_or(|c| fetched > c) && account.pending == 0 {
        // A debt the orchestrator reports is not taken: what is short of its minute would
        // then grow with it, and an orchestrator reporting -10^13 would be paid that much
        // on every job. Paid at most the job's cost or the minute, one that is truly owed
        // more refuses the job (and is paid for it) until it has been made up.
        account.balance = SignedRatio::from(Ratio::from_u64(token.balance.max(0).unsigned_abs()));
        account.changed = Some(fetched);
    }
    let floor = price.checked_mul_u64(MIN_BALANCE_SECONDS).map_err(|e| internal(&e))?;
    let mut payment = ByocPayment::none(orch, capability);
    payment.price = price;
    if account.balance >= SignedRatio::from(floor) {
        let minute = price.checked_mul_u64(ORCH_MIN_SECONDS).map_err(|e| internal(&e))?;
        let sure = account.balance.checked_sub(&SignedRatio::from(account.unconfirmed));
        if sure.is_ok_and(|sure| sure < SignedRatio::from(minute)) {
            return Ok(Plan::Done(ByocPrepared::Wait(account.confirmed.subscribe())));
        }
        return Ok(Plan::Done(ByocPrepared::Ready(Box::new(payment))));
    }
    let mut cost = price.checked_mul_u64(units).map_err(|e| internal(&e))?;
    // go-livepeer's orchestrator takes a job only if, with this payment, the sender holds a
    // minute of the price (byoc `setupOrchJob`), while its gateway pays the timeout's worth: a
    // job of a shorter timeout, with tickets worth less than a minute, was refused (400
    // `Insufficient balance`, paid all the same) until such payments had piled up. What is
    // short of the minute is paid instead when it is more; it stays the gateway's credit.
    let minute = price.checked_mul_u64(ORCH_MIN_SECONDS).map_err(|e| internal(&e))?;
    let short =
        SignedRatio::from(minute).checked_sub(&account.balance).map_err(|e| internal(&e))?;
    if let Some(short) = short.to_ratio().filter(|short| *short > cost) {
        cost = short;
    }
    payment.tickets = tickets(&cost);
    payment.ev_sent = ev.checked_mul_u64(u64::from(payment.tickets)).map_err(|e| internal(&e))?;
    payment.due = cost;
    Ok(Plan::Pay(Box::new(payment)))
}

/// Books `total` sent to the account: credited, pending, and unconfirmed until answered.
fn book(account: &mut Account, total: &Ratio) -> Result<(), PayError> {
    account.balance =
        account.balance.checked_add(&SignedRatio::from(*total)).map_err(|e| internal(&e))?;
    account.pending += 1;
    account.changed = Some(Instant::now());
    account.unconfirmed = account.unconfirmed.checked_add(total).map_err(|e| internal(&e))?;
    Ok(())
}

/// `ceil(cost / ev)` tickets, at most the 600 nonces one set of params takes; with EV 0,
/// go-livepeer sends `timeout_seconds` tickets.
fn ticket_count(cost: &Ratio, ev: &Ratio, timeout_seconds: u64) -> u32 {
    let n = if ev.is_zero() {
        livepeer_pm::U512::from(timeout_seconds)
    } else {
        cost.checked_div(ev).map(|r| r.ceil()).unwrap_or(livepeer_pm::U512::ZERO)
    };
    let max = livepeer_pm::U512::from(MAX_SENDER_NONCES);
    u32::try_from(n.min(max)).unwrap_or(MAX_SENDER_NONCES).max(1)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use livepeer_pm::{Address, B256, LocalSigner, U256, decode_payment_header};

    use super::*;
    use crate::orchestrator::price::Price;
    use crate::orchestrator::{OrchClient, Timeouts, TlsTrust};

    fn payer() -> LocalPayer {
        let second = Duration::from_secs(1);
        let client =
            OrchClient::new(Timeouts { connect: second, call: second }, TlsTrust::AcceptAny, None);
        let limits = crate::config::Payment::default().limits().unwrap();
        LocalPayer::new(Arc::new(LocalSigner::from_bytes(&[5; 32]).unwrap()), client, limits)
    }

    /// A token at `price` wei per second with tickets of EV 1000 wei, reporting `balance`.
    fn token(price: i64, balance: i64) -> JobToken {
        let params = livepeer_pm::TicketParams {
            recipient: Address::from([7u8; 20]),
            face_value: U256::from(1_000_000u64),
            // EV = face × p / (2^256 − 1): one in a thousand.
            win_prob: U256::MAX / U256::from(1000u64),
            recipient_rand_hash: B256::from([9u8; 32]),
            seed: U256::from(1u64),
            expiration_block: U256::from(1_000_000u64),
            expiration_params: None,
        };
        JobToken {
            service_addr: "http://o:1".into(),
            price: Price::new(price, 1).unwrap(),
            price_info: livepeer_proto::net::PriceInfo {
                price_per_unit: price,
                pixels_per_unit: 1,
                ..Default::default()
            },
            ticket_params: Some(params),
            balance,
            available_capacity: 1,
        }
    }

    fn ready(p: ByocPrepared) -> ByocPayment {
        match p {
            ByocPrepared::Ready(p) => *p,
            ByocPrepared::Wait(_) => panic!("expected a payment"),
        }
    }

    /// A token older than the last one used (a job that waited while the refresher replaced
    /// it, or while other payments fetched newer ones) goes on with its params' nonces, kept
    /// or let go and resumed; they never start over.
    #[test]
    fn a_token_s_params_never_start_their_nonces_over() {
        let key = LocalSigner::from_bytes(&[5; 32]).unwrap();
        let params = |hash: u8| {
            let mut params = token(1, 0).ticket_params.unwrap();
            params.recipient_rand_hash = B256::from([hash; 32]);
            params
        };
        let exp = ExpirationParams::default();
        let mut sessions = Sessions::default();
        let first = sessions.get_or_insert(params(1), exp).unwrap();
        first.create_batch(&key, 3).unwrap();
        sessions.get_or_insert(params(2), exp).unwrap();
        let again = sessions.get_or_insert(params(1), exp).unwrap();
        assert_eq!(again.last_nonce(), 3, "the older token's nonces go on");
        again.create_batch(&key, 2).unwrap();
        // Enough newer params that 1 is let go: resumed where it was.
        for hash in 10..10 + LIVE_SESSIONS as u8 {
            sessions.get_or_insert(params(hash), exp).unwrap();
        }
        assert!(
            sessions
                .live
                .iter()
                .all(|s| s.params().recipient_rand_hash != params(1).recipient_rand_hash)
        );
        assert_eq!(sessions.get_or_insert(params(1), exp).unwrap().last_nonce(), 5);
        assert_eq!(sessions.live.len(), LIVE_SESSIONS);
        assert!(sessions.retired.len() <= RETIRED_SESSIONS);
    }

    #[test]
    fn a_payment_dropped_unsettled_leaves_nothing_pending_or_unconfirmed() {
        // A job dropped mid-call (its client gone) drops its payment unsettled. Left pending,
        // the account took no fresh token's balance again, and left unconfirmed, the next
        // job that needed no tickets waited for a confirmation that never came.
        let (books, local) = (ByocBooks::default(), payer());
        let at = Instant::now();
        let first = ready(books.prepare(&local, "o", "c", (&token(2, 0), at), 30).unwrap());
        assert_eq!(first.tickets, 1);
        drop(first);
        // A later token reports ten minutes of the price held: taken as the view, it needs
        // no tickets, and nothing unconfirmed holds the job back.
        let later = at + Duration::from_secs(1);
        match books.prepare(&local, "o", "c", (&token(2, 1200), later), 30).unwrap() {
            ByocPrepared::Ready(next) => assert_eq!(next.tickets, 0),
            ByocPrepared::Wait(_) => panic!("the dropped payment is still unconfirmed"),
        }
    }

    #[test]
    fn a_job_pays_for_its_timeout_until_two_minutes_are_held() {
        let (books, local) = (ByocBooks::default(), payer());
        let t = token(2, 0);
        let at = Instant::now();
        // 2 wei/s × 30 s = 60 wei: one ticket of EV ~1000.
        let mut first = ready(books.prepare(&local, "o", "c", (&t, at), 30).unwrap());
        assert_eq!(first.tickets, 1);
        let payment = decode_payment_header(first.header().unwrap()).unwrap();
        assert_eq!(payment.ticket_sender_params.len(), 1);
        assert_eq!(payment.ticket_sender_params[0].sender_nonce, 1);
        assert_eq!(payment.expected_price.unwrap().price_per_unit, 2);
        // The credit is not confirmed yet: a job that would rely on it waits.
        assert!(matches!(
            books.prepare(&local, "o", "c", (&t, at), 30).unwrap(),
            ByocPrepared::Wait(_)
        ));
        books.confirm(&mut first);
        // Confirmed, it holds more than 120 × 2 wei: no payment.
        let second = ready(books.prepare(&local, "o", "c", (&t, at), 30).unwrap());
        assert!(second.header().is_none() && second.tickets == 0);
        books.settle(second, ByocOutcome::Charged(1));
        books.settle(first, ByocOutcome::Charged(3));
        let view = &books.report()[0].2;
        let ev = t.ticket_params.unwrap().ev();
        let expected = ev.saturating_sub(&Ratio::from_u64(8)).unwrap();
        assert_eq!(*view, SignedRatio::from(expected).to_string(), "EV − 4 s × 2 wei");
    }

    #[test]
    fn a_short_job_pays_up_to_the_minute_the_orchestrator_wants_held() {
        let (books, local) = (ByocBooks::default(), payer());
        let at = Instant::now();
        // 45 wei/s: a 10 s job costs 450 wei (one ticket of EV just under 1000), but the
        // orchestrator wants 2,700 held: three tickets.
        let t = token(45, 0);
        let p = ready(books.prepare(&local, "o", "c", (&t, at), 10).unwrap());
        assert_eq!(p.tickets, 3);
        // Holding 2,500 already, the same job pays for its own 450 only: one ticket.
        let books = ByocBooks::default();
        let p = ready(books.prepare(&local, "o", "c", (&token(45, 2500), at), 10).unwrap());
        assert_eq!(p.tickets, 1);
    }

    #[test]
    fn a_debt_the_orchestrator_reports_is_not_paid_beyond_the_minute() {
        let (books, local) = (ByocBooks::default(), payer());
        let at = Instant::now();
        // 45 wei/s: a 10 s job pays the 2,700 wei minute (three tickets) whatever the token
        // says is owed (before: 1,002,700 wei, a thousand tickets capped at 600).
        let p = ready(books.prepare(&local, "o", "c", (&token(45, -1_000_000), at), 10).unwrap());
        assert_eq!(p.tickets, 3);
    }

    #[test]
    fn expired_params_are_not_paid_with() {
        let (books, local) = (ByocBooks::default(), payer());
        let at = Instant::now();
        // The token's params expire at block 1,000,000: at 999,999 they are as good as gone.
        local.set_block(999_999);
        let e = books.prepare(&local, "o", "c", (&token(2, 0), at), 30).unwrap_err();
        assert!(e.to_string().contains("expired; a fresh token is needed"), "{e}");
        assert!(books.report().iter().all(|(_, _, b)| b == "0"), "nothing booked");
        local.set_block(999_998);
        assert_eq!(
            ready(books.prepare(&local, "o", "c", (&token(2, 0), at), 30).unwrap()).tickets,
            1
        );
    }

    #[test]
    fn a_newer_token_sets_the_view_and_an_older_one_does_not() {
        let (books, local) = (ByocBooks::default(), payer());
        let old = Instant::now();
        let mut p = ready(books.prepare(&local, "o", "c", (&token(2, 0), old), 30).unwrap());
        books.confirm(&mut p);
        books.settle(p, ByocOutcome::Charged(1));
        // A token asked for before the view changed is old news: ignored, no payment.
        let q = ready(books.prepare(&local, "o", "c", (&token(2, 0), old), 30).unwrap());
        assert_eq!(q.tickets, 0);
        books.settle(q, ByocOutcome::Uncharged);
        // A newer one saying the balance is gone: pay again, on a new nonce.
        let later = Instant::now() + Duration::from_millis(1);
        let r = ready(books.prepare(&local, "o", "c", (&token(2, 0), later), 30).unwrap());
        assert_eq!(r.tickets, 1);
        let payment = decode_payment_header(r.header().unwrap()).unwrap();
        assert_eq!(payment.ticket_sender_params[0].sender_nonce, 2, "same params, next nonce");
    }

    #[test]
    fn free_and_off_chain_orchestrators_are_not_paid() {
        let (books, local) = (ByocBooks::default(), payer());
        let at = Instant::now();
        let free = ready(books.prepare(&local, "o", "c", (&token(0, 0), at), 30).unwrap());
        assert!(free.header().is_none());
        let mut off = token(5, 0);
        off.ticket_params = None;
        assert!(ready(books.prepare(&local, "o", "c", (&off, at), 30).unwrap()).header().is_none());
    }

    #[test]
    fn a_reservation_is_booked_at_once_and_shrinks_to_what_was_made() {
        let books = ByocBooks::default();
        let t = token(2, 0);
        let ev = t.ticket_params.unwrap().ev();
        let at = Instant::now();
        let tickets = |due: &Ratio| ticket_count(due, &ev, 3990);
        // 2 wei/s × 3990 s = 7980 wei: 8 tickets of EV ~1000 are reserved and booked at once.
        let Plan::Pay(mut p) = books.reserve(("o", "c"), (&t, at), (3990, &ev), tickets).unwrap()
        else {
            panic!("expected tickets to be due")
        };
        assert_eq!((p.tickets, p.header()), (8, None));
        let booked = ev.checked_mul_u64(8).unwrap();
        assert_eq!(books.report()[0].2, SignedRatio::from(booked).to_string());
        assert!(matches!(
            books.reserve(("o", "c"), (&t, at), (3990, &ev), tickets).unwrap(),
            Plan::Done(ByocPrepared::Wait(_))
        ));
        // The signer made 5 (its state held credit): the rest is given back.
        books.made(&mut p, Some("h".into()), 5, &ev);
        assert_eq!((p.tickets, p.header()), (5, Some("h")));
        let made = ev.checked_mul_u64(5).unwrap();
        assert_eq!(books.report()[0].2, SignedRatio::from(made).to_string());
        // Undone (the signer failed): the view is as before.
        books.settle(*p, ByocOutcome::Refused);
        assert_eq!(books.report()[0].2, SignedRatio::ZERO.to_string());
        // None made: no header, nothing pending, nothing booked.
        let Plan::Pay(mut q) = books.reserve(("o", "c"), (&t, at), (3990, &ev), tickets).unwrap()
        else {
            panic!("expected tickets to be due")
        };
        books.made(&mut q, Some("h".into()), 0, &ev);
        assert_eq!((q.tickets, q.header()), (0, None));
        assert_eq!(books.report()[0].2, SignedRatio::ZERO.to_string());
        books.settle(*q, ByocOutcome::Charged(1));
    }

    #[test]
    fn an_attempt_of_unknown_outcome_leaves_no_credit_counted_on() {
        let (books, local) = (ByocBooks::default(), payer());
        let at = Instant::now();
        let t = token(2, 0);
        let ev = t.ticket_params.unwrap().ev();
        // One ticket (EV ~1000) for 30 s at 2 wei/s: unanswered, the ticket counts for
        // nothing, as the orchestrator may not have it; the fee (60) is less.
        let p = ready(books.prepare(&local, "o", "c", (&t, at), 30).unwrap());
        books.settle(p, ByocOutcome::Unknown(30));
        assert_eq!(books.report()[0].2, "0");
        // Holding 3,000 wei, a job sent without a payment and never answered may have run
        // its 1,400 s: 2,800 wei are debited.
        let later = Instant::now() + Duration::from_millis(1);
        let held = token(2, 3000);
        let q = ready(books.prepare(&local, "o", "c", (&held, later), 1400).unwrap());
        assert_eq!(q.tickets, 0);
        books.settle(q, ByocOutcome::Unknown(1400));
        assert_eq!(books.report()[0].2, "200");
        // (A token asked for before the view last changed is old news.) A ticket, for 400 s,
        // worth less than the fee of the 1,000 s the job may have run:
        // the fee is what is debited.
        let r = ready(books.prepare(&local, "o", "c", (&held, at), 400).unwrap());
        assert_eq!(r.tickets, 1);
        books.settle(r, ByocOutcome::Unknown(1000));
        let left = SignedRatio::from(Ratio::from_u64(200))
            .checked_add(&SignedRatio::from(ev))
            .and_then(|b| b.checked_sub(&SignedRatio::from(Ratio::from_u64(2000))))
            .unwrap();
        assert_eq!(books.report()[0].2, left.to_string());
    }

    #[test]
    fn tickets_cover_the_timeout_and_are_capped() {
        let ev = Ratio::from_u64(1000);
        assert_eq!(ticket_count(&Ratio::from_u64(10), &ev, 10), 1);
        assert_eq!(ticket_count(&Ratio::from_u64(1000), &ev, 10), 1);
        assert_eq!(ticket_count(&Ratio::from_u64(1001), &ev, 10), 2);
        assert_eq!(ticket_count(&Ratio::from_u64(10_000_000), &ev, 10), 600);
        assert_eq!(ticket_count(&Ratio::from_u64(5), &Ratio::ZERO, 30), 30);
    }
}
