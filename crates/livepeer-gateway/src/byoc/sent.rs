//! The tickets of a BYOC job's payment while its call is out: counted as sent (on the
//! customer's tab and in the metrics) only once they may have reached the orchestrator.

use std::sync::Arc;

use livepeer_pm::Ratio;

use crate::job::JobKey;
use crate::keys::Tab;
use crate::metrics::Metrics;
use crate::payment::ByocPayment;

/// A payment's tickets, sent with a call whose outcome is not known yet. The attempt either
/// counts them ([`OutTickets::count`]: answered, unanswered, broken after sending) or forgets
/// them ([`OutTickets::went_nowhere`]: never sent, refused before they were looked at).
/// Dropped before either, as when the client leaves mid-call and its job is dropped with
/// it, they are counted: they may have reached the orchestrator.
pub(super) struct OutTickets {
    tab: Option<Arc<Tab>>,
    metrics: Metrics,
    orch: String,
    key: JobKey,
    tickets: u32,
    ev: Ratio,
    done: bool,
}

impl OutTickets {
    /// The tickets of `payment`, sent to `orch` for a job of `key`, on `tab` if a key's.
    pub(super) fn new(
        payment: &ByocPayment,
        (orch, key): (String, JobKey),
        tab: Option<Arc<Tab>>,
        metrics: Metrics,
    ) -> Self {
        let (tickets, ev) = (payment.tickets, payment.ev_sent);
        Self { tab, metrics, orch, key, tickets, ev, done: false }
    }

    /// Counts them as sent; returns how many and their expected value, for the job's record.
    pub(super) fn count(mut self) -> (u32, Ratio) {
        self.done = true;
        self.emit();
        (self.tickets, self.ev)
    }

    /// They reached nobody, or were turned away untaken: counted nowhere.
    pub(super) fn went_nowhere(mut self) {
        self.done = true;
    }

    fn emit(&self) {
        let zero = Ratio::ZERO;
        if let Some(tab) = &self.tab {
            tab.paid(self.tickets, &self.ev, &zero);
        }
        if self.tickets > 0 {
            self.metrics.paid(&self.orch, &self.key, self.tickets, &self.ev, &zero);
        }
    }
}

impl Drop for OutTickets {
    fn drop(&mut self) {
        if !self.done {
            self.emit();
        }
    }
}
