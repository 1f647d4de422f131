//! Paying orchestrators with the gateway's own key, with probabilistic micropayment tickets
//! (PAYMENTS.md §3–§5): one payment session per (orchestrator, job), holding ticket params
//! priced for that job and the nonce counter, and a credit balance kept as the orchestrator
//! keeps it, per (sender, manifest id): a batch job's in its session, each live stream's on its
//! own manifest id (PROTOCOL.md §4.7). The orchestrator books every live stream on a manifest
//! id of its own, so credit left from one stream is worth nothing to another.
//!
//! Per attempt: fee = units × price; tickets = ceil((max(fee, EV) − credit) / EV); the sender
//! checks run before anything is signed; after the answer the balance is settled according to
//! what the orchestrator did with the payment. Money is exact (`livepeer_pm::Ratio`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use livepeer_pm::{
    Balance, BalanceUpdate, ExpirationParams, LocalSigner, MAX_SENDER_NONCES, Ratio, SenderSession,
    SignedRatio, TicketParams, U256, UpdateStatus, build_payment, min_credit, payment_header_value,
};
use livepeer_proto::net;
use url::Url;

use super::chain::SenderInfo;
use super::terms::{Cost, PayError, PaymentLimits, PriceBounds, Settlement};
use crate::orchestrator::caps::Capabilities;
use crate::orchestrator::info::OrchInfo;
use crate::orchestrator::price::Price;
use crate::orchestrator::{JobKey, OrchClient};

/// One payment session: ticket params and price for one (orchestrator, job).
#[derive(Debug)]
struct Session {
    info: Arc<OrchInfo>,
    sender: SenderSession,
    /// The credit of batch requests, booked on the job's manifest id.
    balance: SharedCredit,
    /// The next payment would carry more nonces than the orchestrator accepts for these params:
    /// the next request fetches fresh ones, keeping the credit.
    exhausted: bool,
}

/// How many times one payment fetches fresh params because concurrent payments used up the
/// nonces of the previous ones, before it gives up.
const ROTATIONS: usize = 3;

/// A session shared by the requests to one (orchestrator, job).
type SharedSession = Arc<Mutex<Session>>;

/// The credit held on one orchestrator-side balance, shared by the payments booked on it.
type SharedCredit = Arc<Mutex<Balance>>;

/// A live stream's credit: (orchestrator URL, manifest id).
type StreamKey = (String, String);

/// A payment staged for one attempt, to be settled after it.
#[derive(Debug)]
pub(super) struct Staged {
    /// `Livepeer-Payment` header value.
    pub(super) header: String,
    /// The job-priced orchestrator info whose auth token the segment header must carry.
    pub(super) info: Arc<OrchInfo>,
    /// Tickets in this payment.
    pub(super) tickets: u32,
    /// Expected value sent, wei (exact).
    pub(super) ev_sent: Ratio,
    /// The fee of this request, wei (exact).
    pub(super) fee: Ratio,
    update: BalanceUpdate,
    /// The balance the payment was staged on, to settle.
    credit: SharedCredit,
}

/// The gateway's ticket sender, signing with its own key; cheap to clone.
#[derive(Debug, Clone)]
pub struct LocalPayer {
    /// The latest block of the chain the orchestrators count expiry in; 0 when unknown.
    block: Arc<std::sync::atomic::AtomicU64>,
    /// The sender's deposit and reserve as last read from the TicketBroker; `None` when the
    /// gateway has no chain connection (those checks are then skipped, as off-chain).
    funds: Arc<Mutex<Option<SenderInfo>>>,
    /// The RoundsManager's last initialized round, for the unlock check; `None` until read
    /// (an unlock then counts as imminent).
    round: Arc<Mutex<Option<U256>>>,
    /// Ticket EV sent over the last hour, for the reserve's outlook.
    spend: Arc<super::spend::SpendMeter>,
    /// Admin status warns when the reserve lasts fewer hours than this.
    warn_hours: Arc<std::sync::atomic::AtomicU64>,
    signer: Arc<LocalSigner>,
    client: OrchClient,
    limits: PaymentLimits,
    sessions: Arc<Mutex<HashMap<(String, JobKey), SharedSession>>>,
    /// Live streams' credit, apart from the sessions: fresh ticket params (a session renewed)
    /// leave the orchestrator's balance of a stream as it was.
    streams: Arc<Mutex<HashMap<StreamKey, SharedCredit>>>,
}

impl LocalPayer {
    /// A payer signing with `signer`, fetching job-priced params with `client`.
    pub fn new(signer: Arc<LocalSigner>, client: OrchClient, limits: PaymentLimits) -> Self {
        Self {
            block: Arc::default(),
            funds: Arc::default(),
            round: Arc::default(),
            spend: Arc::default(),
            warn_hours: Arc::new(std::sync::atomic::AtomicU64::new(24)),
            signer,
            client,
            limits,
            sessions: Arc::default(),
            streams: Arc::default(),
        }
    }

    /// The sender (ticket signer) address.
    pub fn sender(&self) -> livepeer_pm::Address {
        self.signer.address()
    }

    /// The key that signs tickets, and the segment credentials that go with them.
    pub(super) fn key(&self) -> &LocalSigner {
        &self.signer
    }

    /// The credit held per live stream (orchestrator, manifest id), for operators: one entry
    /// per stream running or starting.
    pub fn stream_credits(&self) -> Vec<serde_json::Value> {
        let Ok(map) = self.streams.lock() else { return Vec::new() };
        map.iter()
            .filter_map(|((url, manifest), credit)| {
                let amount = credit.lock().ok()?.amount().to_string();
                Some(serde_json::json!({
                    "orchestrator": url,
                    "manifest_id": manifest,
                    "credit_wei": amount,
                }))
            })
            .collect()
    }

    /// Open payment sessions: (orchestrator, job) → nonces used and credit held, for operators.
    pub fn sessions(&self) -> Vec<serde_json::Value> {
        let Ok(map) = self.sessions.lock() else { return Vec::new() };
        map.iter()
            .filter_map(|((url, job), session)| {
                let s = session.lock().ok()?;
                Some(serde_json::json!({
                    "orchestrator": url,
                    "job": job.to_string(),
                    "price": s.info.price.to_string(),
                    "ticket_ev_wei": s.sender.params().ev().to_string(),
                    "nonces_used": s.sender.last_nonce(),
                    "credit_wei": s.balance.lock().ok()?.amount().to_string(),
                }))
            })
            .collect()
    }

    /// Records the latest block number (from `--eth-url`), which ticket expiry is counted in.
    pub fn set_block(&self, block: u64) {
        self.block.store(block, std::sync::atomic::Ordering::Relaxed);
    }

    /// go-livepeer's expiry rule (PAYMENTS.md §5.3 check 3): params whose expiration block is at
    /// most one block ahead are expired. Unknown when no block has been read.
    pub(super) fn expired(&self, params: &livepeer_pm::TicketParams) -> bool {
        let block = self.block.load(std::sync::atomic::Ordering::Relaxed);
        block != 0 && params.expiration_block <= U256::from(block) + U256::from(1u64)
    }

    /// Records the sender's funds as just read from the chain.
    pub fn set_funds(&self, info: SenderInfo) {
        if let Ok(mut f) = self.funds.lock() {
            *f = Some(info);
        }
    }

    /// Records the last initialized round as just read from the RoundsManager.
    pub fn set_round(&self, round: U256) {
        if let Ok(mut r) = self.round.lock() {
            *r = Some(round);
        }
    }

    /// Whether `funds` "unlock soon" in go-livepeer's sense (`validateSender`): against the
    /// last initialized round when known, else any unlock counts.
    pub fn unlocks_soon(&self, funds: &SenderInfo) -> bool {
        match self.round.lock().ok().and_then(|r| *r) {
            Some(round) => funds.unlocks_soon(round),
            None => funds.is_unlocking(),
        }
    }

    /// Sets the hours below which admin status warns that the reserve runs short.
    pub fn set_reserve_warning_hours(&self, hours: u64) {
        self.warn_hours.store(hours, std::sync::atomic::Ordering::Relaxed);
    }

    /// The reserve's outlook at the current spend (admin status), when funds are known.
    pub fn reserve_report(&self) -> Option<serde_json::Value> {
        let funds = self.funds()?;
        let hours = self.warn_hours.load(std::sync::atomic::Ordering::Relaxed);
        Some(super::spend::reserve_report(funds.reserve, &self.spend.per_hour(), hours))
    }

    /// The sender's funds as last read, if a chain is configured.
    pub fn funds(&self) -> Option<SenderInfo> {
        self.funds.lock().ok().and_then(|f| *f)
    }

    /// go-livepeer's `validateSender` and the face value bound (PAYMENTS.md §5.3, checks 7 and
    /// 9), with its error strings.
    pub(super) fn check_funds(&self, face_value: U256) -> Result<(), PayError> {
        let Some(funds) = self.funds() else { return Ok(()) };
        if self.unlocks_soon(&funds) {
            return Err(PayError::Refused("deposit and reserve is set to unlock soon".into()));
        }
        if funds.reserve.is_zero() {
            return Err(PayError::Refused("no sender reserve".into()));
        }
        if funds.deposit.is_zero() {
            return Err(PayError::Refused("no sender deposit".into()));
        }
        let max = funds.max_face_value(self.limits.deposit_multiplier).unwrap_or(U256::ZERO);
        if face_value > max {
            return Err(PayError::Refused(format!(
                "ticket faceValue {face_value} > max faceValue {max}"
            )));
        }
        Ok(())
    }

    /// Prepares the payment of one attempt of `key` on the orchestrator at `url`, for `cost`
    /// at a price within `bounds`, paid from the credit of the live stream booked on `stream`
    /// (its manifest id), or else from the job's. Returns `Ok(None)` for an off-chain
    /// orchestrator (no ticket params): it gets the empty header, as go-livepeer sends it.
    pub(super) async fn prepare(
        &self,
        url: &Url,
        discovered: &OrchInfo,
        key: &JobKey,
        (cost, bounds): (Cost, PriceBounds),
        stream: Option<&str>,
    ) -> Result<Option<Staged>, PayError> {
        if discovered.ticket_params.is_none() {
            return Ok(None);
        }
        for _ in 0..=ROTATIONS {
            let session = self.session(url, key).await?;
            if let Some(staged) = self.stage_on(&session, url, (cost, bounds), stream)? {
                return Ok(Some(staged));
            }
        }
        Err(PayError::Refused(format!(
            "sender nonces of {url} used up by concurrent payments {ROTATIONS} times over"
        )))
    }

    /// Stages the payment of `units` on `session`, unless its tickets would take the nonces
    /// past what the orchestrator accepts for the session's params (PAYMENTS.md §3.5): it
    /// would refuse the payment with `too many values`, so the session is marked exhausted and
    /// `None` returned: the payment must be staged again on fresh params.
    fn stage_on(
        &self,
        session: &SharedSession,
        url: &Url,
        (cost, bounds): (Cost, PriceBounds),
        stream: Option<&str>,
    ) -> Result<Option<Staged>, PayError> {
        let mut s = session.lock().map_err(|_| PayError::Internal("session lock".into()))?;
        let credit = match stream {
            Some(manifest) => self.stream_credit(url, manifest)?,
            None => s.balance.clone(),
        };
        let mut balance = credit.lock().map_err(|_| PayError::Internal("credit lock".into()))?;
        let info = s.info.clone();
        let price = info.price;
        bounds.check(price)?;
        if price.is_zero() {
            // Price 0: sender and expected price only (PAYMENTS.md §4.4).
            let expected = price_info(price);
            let payment = build_payment(self.signer.address(), &expected, None)
                .map_err(|e| PayError::Internal(e.to_string()))?;
            drop((balance, s));
            return Ok(Some(Staged {
                header: payment_header_value(&payment),
                info,
                tickets: 0,
                ev_sent: Ratio::default(),
                fee: Ratio::default(),
                update: BalanceUpdate::empty(),
                credit,
            }));
        }
        let params = *s.sender.params();
        let ev = self.ticket_ev(&params)?;
        self.check_funds(params.face_value)?;
        let per_unit = price.to_ratio().map_err(|e| PayError::Internal(e.to_string()))?;
        let fee = cost.fee(&per_unit).map_err(|e| PayError::Internal(e.to_string()))?;
        let update = stage(&mut balance, &fee, &ev)?;
        let ev_sent = update.new_credit;
        if let Some(refusal) = self.over_limits(&update) {
            give_back(&mut balance, update);
            return Err(PayError::Refused(refusal));
        }
        if s.sender.last_nonce().saturating_add(update.num_tickets) > MAX_SENDER_NONCES {
            give_back(&mut balance, update);
            s.exhausted = true;
            tracing::debug!(orchestrator = %url, nonces = s.sender.last_nonce(), "ticket params rotated before the nonce limit");
            return Ok(None);
        }
        drop(balance);
        let batch = s
            .sender
            .create_batch(&self.signer, update.num_tickets)
            .map_err(|e| PayError::Internal(e.to_string()))?;
        let payment = build_payment(self.signer.address(), &price_info(price), Some(&batch))
            .map_err(|e| PayError::Internal(e.to_string()))?;
        drop(s);
        self.spend.record(&ev_sent);
        Ok(Some(Staged {
            header: payment_header_value(&payment),
            info,
            tickets: update.num_tickets,
            ev_sent,
            fee,
            update,
            credit,
        }))
    }

    /// Why a staged payment may not be sent at all: more tickets than an orchestrator accepts
    /// nonces for one set of params, or more EV than the sender allows.
    fn over_limits(&self, update: &BalanceUpdate) -> Option<String> {
        let tickets = update.num_tickets;
        if tickets > MAX_SENDER_NONCES {
            return Some(format!(
                "payment of {tickets} tickets exceeds the {MAX_SENDER_NONCES} nonces an orchestrator accepts per ticket params"
            ));
        }
        (update.new_credit > Ratio::from_u256(self.limits.max_total_ev)).then(|| {
            format!(
                "payment of {tickets} tickets exceeds the max total EV {}",
                self.limits.max_total_ev
            )
        })
    }

    /// Why a payment worth `total` EV may not be sent: more than the sender allows.
    pub(super) fn over_total_ev(&self, total: &Ratio) -> Option<String> {
        (*total > Ratio::from_u256(self.limits.max_total_ev)).then(|| {
            format!(
                "payment EV {} exceeds the max total EV {}",
                total.floor(),
                self.limits.max_total_ev
            )
        })
    }

    /// The credit of the live stream booked on `manifest` at `url`, new and empty the first
    /// time.
    fn stream_credit(&self, url: &Url, manifest: &str) -> Result<SharedCredit, PayError> {
        let mut map = self.streams.lock().map_err(|_| PayError::Internal("credit lock".into()))?;
        Ok(map.entry((url.to_string(), manifest.to_owned())).or_default().clone())
    }

    /// Forgets the credit of the live stream booked on `manifest` at `url`: the stream ended
    /// there, and the orchestrator's balance for it with it.
    pub(super) fn forget(&self, url: &Url, manifest: &str) {
        if let Ok(mut map) = self.streams.lock() {
            map.remove(&(url.to_string(), manifest.to_owned()));
        }
    }

    /// Moves the credit booked on `from` at `url` to `to`, or drops it when `to` is `None`.
    pub(super) fn rebook(&self, url: &Url, from: &str, to: Option<&str>) {
        if to == Some(from) {
            return;
        }
        let Ok(mut map) = self.streams.lock() else { return };
        let Some(moved) = map.remove(&(url.to_string(), from.to_owned())) else { return };
        let Some(to) = to else { return };
        let amount = match moved.lock() {
            Ok(b) => b.amount(),
            Err(_) => return,
        };
        let target = map.entry((url.to_string(), to.to_owned())).or_default();
        if let Ok(mut b) = target.lock()
            && let Err(e) = b.credit(&amount)
        {
            tracing::error!(error = %e, "stream credit overflowed");
        }
    }

    /// The expected value of one ticket of `params`, refused when it is not below the face
    /// value (the orchestrator's win probability would be 1 or more) or above the sender's limit.
    pub(super) fn ticket_ev(&self, params: &TicketParams) -> Result<Ratio, PayError> {
        let ev = params.ev();
        if Ratio::from_u256(params.face_value) <= ev {
            return Err(PayError::Refused("ticket EV is not below its face value".into()));
        }
        if ev > Ratio::from_u256(self.limits.max_ticket_ev) {
            return Err(PayError::Refused(format!(
                "ticket EV {} above the max ticket EV {}",
                ev.floor(),
                self.limits.max_ticket_ev
            )));
        }
        Ok(ev)
    }

    /// Settles a prepared payment after the attempt.
    pub(super) fn settle(&self, prepared: Staged, outcome: Settlement) {
        let fee = prepared.fee;
        self.settle_with(prepared, outcome, fee);
    }

    /// Settles a prepared payment whose call was done and charged `debit` (a transcoded
    /// segment's pixels × price, which the estimate only approached).
    pub(super) fn settle_debit(&self, prepared: Staged, debit: Ratio) {
        self.settle_with(prepared, Settlement::Paid, debit);
    }

    fn settle_with(&self, prepared: Staged, outcome: Settlement, debit: Ratio) {
        let Staged { mut update, credit, .. } = prepared;
        match outcome {
            Settlement::Paid => {
                update.status = UpdateStatus::ReceivedChange;
                update.debit = debit;
            }
            Settlement::NotCharged => update.status = UpdateStatus::ReceivedChange,
            Settlement::CreditSpent => update.status = UpdateStatus::CreditSpent,
            Settlement::Refused => update.status = UpdateStatus::Staged,
        }
        if let Ok(mut balance) = credit.lock()
            && let Err(e) = balance.complete_update(&update)
        {
            tracing::error!(error = %e, "balance settlement overflowed");
        }
    }

    /// Forgets the session so the next attempt fetches fresh params (after the orchestrator
    /// said they expired, or refused a nonce).
    pub(super) fn reset(&self, url: &Url, key: &JobKey) {
        if let Ok(mut map) = self.sessions.lock() {
            map.remove(&(url.to_string(), key.clone()));
        }
    }

    async fn session(&self, url: &Url, key: &JobKey) -> Result<Arc<Mutex<Session>>, PayError> {
        let map_key = (url.to_string(), key.clone());
        let expired = |s: &Session| {
            let now = unix_now();
            // Refresh in the last 10% of the auth token's 30 minutes, as go-livepeer does.
            s.info.auth_token.as_ref().is_none_or(|t| now > t.expiration.saturating_sub(180))
                || s.exhausted
                || self.expired(s.sender.params())
        };
        let found = self.sessions.lock().ok().and_then(|m| m.get(&map_key).cloned());
        // The orchestrator keeps the job's balance on its manifest id whatever the params:
        // fresh params carry the credit on.
        let mut carried = None;
        if let Some(found) = found {
            let s = found.lock().map_err(|_| PayError::Internal("session lock".into()))?;
            if !expired(&s) {
                drop(s);
                return Ok(found);
            }
            carried = Some(s.balance.clone());
        }
        // Ticket params must be priced for this job: ask with the job's capabilities.
        // A transcoding stream's key names the stream, not a model.
        let caps = if key.model.is_empty() || key.capability == crate::job::H264 {
            Capabilities::transcode_job("")
        } else {
            Capabilities::ai_job(key.capability, &key.model, "", "")
        };
        let info = self.client.get_orchestrator(url, Some(&caps), true).await?;
        let params = info.ticket_params.ok_or(PayError::NoTicketParams)?;
        if self.expired(&params) {
            return Err(PayError::Refused("TicketParams expired".into()));
        }
        if info.auth_token.is_none() {
            return Err(PayError::NoTicketParams);
        }
        let expiration = params.expiration_or(ExpirationParams::default());
        let session = Session {
            sender: SenderSession::new(params, expiration),
            balance: carried.unwrap_or_default(),
            info: Arc::new(info),
            exhausted: false,
        };
        // A token that is stale as it is made would be fetched again by every payment (each
        // a whole GetOrchestrator answer decoded), concurrently: refused instead.
        if expired(&session) {
            let why = "the orchestrator's auth token is due for renewal as it is made";
            return Err(PayError::Refused(why.into()));
        }
        let session = Arc::new(Mutex::new(session));
        if let Ok(mut map) = self.sessions.lock() {
            // Concurrent first requests may race here; the first stored session wins so that
            // all of them share one nonce counter.
            // A concurrent request may have stored fresh params already: keep those; replace a
            // stale session.
            // Sessions whose token ran out long ago are nobody's: an orchestrator that left
            // the pool, or a model no longer asked for. Dropped as new ones come, they are
            // bounded by what 40 minutes of jobs asked for (their carried credit, under two
            // EVs each, is what go-livepeer's orchestrators forget too).
            let now = unix_now();
            // A session locked now (a payment being signed) is in use: kept, and not
            // waited for under the map's lock.
            map.retain(|_, s| {
                let Ok(s) = s.try_lock() else { return true };
                let token = s.info.auth_token.as_ref().map(|t| t.expiration);
                token.is_some_and(|expiration| expiration.saturating_add(SESSION_GRACE_SECS) > now)
            });
            let stored = map.entry(map_key).or_insert_with(|| session.clone());
            let stale = stored.lock().is_ok_and(|s| expired(&s));
            if stale {
                *stored = session.clone();
            }
            return Ok(stored.clone());
        }
        Ok(session)
    }
}

/// How long after its token ran out a session is kept for a job that might come back.
const SESSION_GRACE_SECS: i64 = 10 * 60;

/// Seconds since the Unix epoch.
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Stages the payment of one request. Unlike go-livepeer, which reserves the whole balance for
/// each request, this takes only the minimum credit (max(fee, EV)) when the balance holds it:
/// concurrent requests to one orchestrator then share the credit instead of each sending
/// tickets because another one holds the whole balance.
fn stage(balance: &mut Balance, fee: &Ratio, ev: &Ratio) -> Result<BalanceUpdate, PayError> {
    let internal = |e: &dyn std::fmt::Display| PayError::Internal(e.to_string());
    let min = min_credit(fee, ev);
    let needed = SignedRatio::from(min);
    if balance.amount() >= needed {
        balance.credit(&needed.neg()).map_err(|e| internal(&e))?;
        return Ok(BalanceUpdate { existing_credit: needed, ..BalanceUpdate::empty() });
    }
    balance.stage_payment(Some(fee), ev).map_err(|e| internal(&e))
}

/// Returns the credit a staged payment reserved, for a payment that will not be sent.
fn give_back(balance: &mut Balance, update: BalanceUpdate) {
    let back = BalanceUpdate { status: UpdateStatus::Staged, ..update };
    if let Err(e) = balance.complete_update(&back) {
        tracing::error!(error = %e, "balance give-back overflowed");
    }
}

fn price_info(price: Price) -> net::PriceInfo {
    net::PriceInfo {
        price_per_unit: price.per_unit,
        pixels_per_unit: price.pixels_per_unit,
        capability: 0,
        constraint: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orchestrator::{Timeouts, TlsTrust};
    use std::time::Duration;

    fn payer(multiplier: u64) -> LocalPayer {
        let client = OrchClient::new(
            Timeouts { connect: Duration::from_secs(1), call: Duration::from_secs(1) },
            TlsTrust::AcceptAny,
            None,
        );
        let limits = PaymentLimits {
            deposit_multiplier: multiplier,
            ..crate::config::Payment::default().limits().unwrap()
        };
        LocalPayer::new(Arc::new(LocalSigner::from_bytes(&[5; 32]).unwrap()), client, limits)
    }

    fn funds(deposit: u64, reserve: u64, withdraw_round: u64) -> SenderInfo {
        SenderInfo {
            deposit: U256::from(deposit),
            withdraw_round: U256::from(withdraw_round),
            reserve: U256::from(reserve),
            claimed_in_current_round: U256::ZERO,
        }
    }

    /// A session of `info` whose token ran out `ago` seconds ago.
    fn session_expired(info: &OrchInfo, ago: i64) -> SharedSession {
        let mut info = info.clone();
        if let Some(t) = info.auth_token.as_mut() {
            t.expiration = unix_now() - ago;
        }
        let params = info.ticket_params.unwrap();
        Arc::new(Mutex::new(Session {
            sender: SenderSession::new(params, ExpirationParams::default()),
            info: Arc::new(info),
            balance: SharedCredit::default(),
            exhausted: false,
        }))
    }

    #[tokio::test]
    async fn sessions_whose_tokens_ran_out_long_ago_are_dropped_as_new_ones_come() {
        let sim = livepeer_sim::Sim::start(livepeer_sim::SimConfig {
            eth_address: Some(livepeer_pm::Address::from([0x0b; 20])),
            models: vec![
                livepeer_sim::SimModel::new("text-to-image", "a"),
                livepeer_sim::SimModel::new("text-to-image", "b"),
            ],
            ..Default::default()
        })
        .await
        .unwrap();
        let url: Url = sim.url().parse().unwrap();
        let p = payer(1);
        let key = |m| JobKey::ai("text-to-image", m).unwrap();
        let info = p.client.get_orchestrator(&url, None, true).await.unwrap();
        {
            let mut map = p.sessions.lock().unwrap();
            // Gone an hour ago: nobody's. Gone a minute ago: kept for a job that comes back.
            map.insert(("https://gone.example".into(), key("a")), session_expired(&info, 3600));
            map.insert(("https://recent.example".into(), key("a")), session_expired(&info, 60));
        }
        p.session(&url, &key("b")).await.unwrap();
        let mut kept: Vec<String> =
            p.sessions.lock().unwrap().keys().map(|(u, _)| u.clone()).collect();
        kept.sort();
        let mut want = vec!["https://recent.example".to_owned(), url.to_string()];
        want.sort();
        assert_eq!(kept, want);
    }

    #[test]
    fn funds_checks_follow_go_livepeer() {
        let p = payer(2);
        assert!(p.check_funds(U256::from(1u64 << 40)).is_ok(), "no chain: not checked");
        let refused = |p: &LocalPayer, face: u64| match p.check_funds(U256::from(face)) {
            Err(PayError::Refused(m)) => m,
            other => panic!("{other:?}"),
        };
        p.set_funds(funds(1000, 10, 7));
        assert!(refused(&p, 1).contains("unlock soon"), "round unknown: any unlock counts");
        p.set_round(U256::from(5));
        assert!(p.check_funds(U256::from(1)).is_ok(), "withdrawRound 7 > round 5 + 1");
        p.set_round(U256::from(6));
        assert!(refused(&p, 1).contains("unlock soon"), "withdrawRound 7 <= round 6 + 1");
        p.set_funds(funds(1000, 0, 0));
        assert_eq!(refused(&p, 1), "no sender reserve");
        p.set_funds(funds(0, 10, 0));
        assert_eq!(refused(&p, 1), "no sender deposit");
        p.set_funds(funds(1000, 10, 0));
        assert!(p.check_funds(U256::from(500u64)).is_ok(), "500 ≤ 1000 / 2");
        assert_eq!(refused(&p, 501), "ticket faceValue 501 > max faceValue 500");
    }

    fn credit_of(p: &LocalPayer, url: &Url, manifest: &str) -> Option<SignedRatio> {
        let map = p.streams.lock().unwrap();
        map.get(&(url.to_string(), manifest.to_owned())).map(|c| c.lock().unwrap().amount())
    }

    /// Each stream's credit is its own, on each orchestrator: a start's moves to the stream's
    /// manifest, a failed start's and an ended stream's are dropped.
    #[test]
    fn stream_credit_follows_the_orchestrators_manifest() {
        let p = payer(2);
        let (a, b): (Url, Url) =
            ("https://a.example/".parse().unwrap(), "https://b.example/".parse().unwrap());
        let seven = SignedRatio::from(Ratio::from_u256(U256::from(7u64)));
        for url in [&a, &b] {
            p.stream_credit(url, "request").unwrap().lock().unwrap().credit(&seven).unwrap();
        }
        p.stream_credit(&a, "mid").unwrap().lock().unwrap().credit(&seven).unwrap();
        p.rebook(&a, "request", Some("mid"));
        assert_eq!(credit_of(&p, &a, "request"), None);
        assert_eq!(credit_of(&p, &a, "mid"), Some(seven.checked_add(&seven).unwrap()));
        assert_eq!(credit_of(&p, &b, "mid"), None, "another orchestrator's stream");
        p.rebook(&b, "request", Some("request"));
        assert_eq!(credit_of(&p, &b, "request"), Some(seven), "the same manifest: kept");
        p.rebook(&b, "request", None);
        assert_eq!(credit_of(&p, &b, "request"), None, "a failed start's credit is dropped");
        p.forget(&a, "mid");
        assert!(p.streams.lock().unwrap().is_empty());
        assert_eq!(credit_of(&p, &a, "fresh"), None);
        assert_eq!(
            p.stream_credit(&a, "fresh").unwrap().lock().unwrap().amount(),
            SignedRatio::default()
        );
    }
}
