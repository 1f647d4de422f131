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
//! Streams are counted per gateway instance (as the per-minute limit is): a key with
//! `max_streams` 2 may hold 2 on each instance sharing its database.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use livepeer_pm::Ratio;
use tokio_util::sync::CancellationToken;

use super::{KeyStore, Tab};
use crate::error::{Error, Kind};

/// Streams held now, per key id, on this instance.
#[derive(Debug, Default)]
pub(super) struct StreamCounts(Mutex<HashMap<String, u32>>);

/// One of a key's concurrent streams, released when dropped.
#[derive(Debug)]
pub struct StreamPermit {
    store: Arc<KeyStore>,
    key_id: String,
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        let mut counts = self.store.streams.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = counts.get_mut(&self.key_id) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.key_id);
            }
        }
    }
}

impl Tab {
    /// Takes one of the key's concurrent streams: `Err` 429 `stream_limit_exceeded` when it
    /// holds `max_streams` already.
    pub fn stream_permit(&self) -> Result<StreamPermit, Error> {
        let key = self.key();
        let mut counts = self.store.streams.0.lock().unwrap_or_else(|p| p.into_inner());
        let held = counts.entry(key.id.clone()).or_default();
        if let Some(max) = key.max_streams
            && *held >= max
        {
            let message = format!("this API key holds {held} streams, its limit (max_streams)");
            return Err(Error::new(Kind::StreamLimit, message).retry_after(5));
        }
        *held += 1;
        Ok(StreamPermit { store: self.store.clone(), key_id: key.id.clone() })
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
/// cannot pay for the next interval (or the key database fails).
///
/// Priced as a multiple of the orchestrator's price, an interval is charged that multiple of
/// what was paid for the stream during it (so in arrears, as payments go out), and what was
/// paid after the last interval is charged when the stream ends.
pub async fn meter(mut m: Metered) {
    let mut seq = 1u64;
    loop {
        let ended = tokio::select! {
            () = tokio::time::sleep(m.interval) => false,
            () = m.ended.cancelled() => true,
        };
        let fee = m.paid.as_mut().map(Paid::take);
        if ended {
            charge_rest(&m, fee, seq).await;
            break;
        }
        let tab = m.first.next();
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

/// Charges what was paid for an ended stream since its last interval (a multiple of the
/// orchestrator's price only: other prices are charged in advance).
async fn charge_rest(m: &Metered, fee: Option<Ratio>, seq: u64) {
    let Some(fee) = fee.filter(|f| !f.is_zero() && m.first.priced_by_fee(&m.model)) else {
        return;
    };
    let tab = m.first.next();
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
