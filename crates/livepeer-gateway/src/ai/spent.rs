//! The payment of an AI attempt while its call is out. The attempt settles it when its call
//! ends, and only then records its tickets (metrics, the customer's tab, the request's record).
//! A request dropped mid-call (its client gone) drops the call with it. [`InFlight`] then
//! decides what became of the payment by whether the call had been handed to a connection:
//! - if it had, the tickets may have reached the orchestrator: the payment stays booked as
//!   spent and its tickets are recorded, as BYOC's `OutTickets` does (before, nothing recorded
//!   them, and a customer's key without a budget wrote no usage row at all);
//! - if it had not (its connection was still being made), nothing left the gateway: the
//!   payment is settled as refused, its credit back, and nothing is recorded (before, the
//!   tickets were recorded, the customer charged for them, and the credit lost).

use std::sync::Arc;

use livepeer_pm::Ratio;

use crate::job::JobKey;
use crate::keys::Tab;
use crate::metrics::Metrics;
use crate::orchestrator::dispatched::Dispatched;
use crate::payment::{Payments, Prepared, Settlement, Spend};

/// A payment while its call is out; see the module docs.
pub(super) struct InFlight<'p> {
    prepared: &'p mut Prepared,
    // Boxed: it is held across the call's await, in every request's future, and the spend's
    // exact amounts are large; payments the gateway's own key did not stage hold none.
    armed: Option<Box<Armed>>,
}

struct Armed {
    payments: Payments,
    spend: Spend,
    dispatched: Dispatched,
    orch: String,
    key: JobKey,
    tab: Option<Arc<Tab>>,
    metrics: Metrics,
}

/// Where a payment is recorded: the orchestrator and job it pays for, the customer's tab.
pub(super) struct Records<'a> {
    pub(super) orch: &'a str,
    pub(super) key: &'a JobKey,
    pub(super) tab: Option<&'a Arc<Tab>>,
    pub(super) metrics: &'a Metrics,
}

impl<'p> InFlight<'p> {
    /// Holds `prepared` for its call, armed when the gateway's own key staged it (there is
    /// a credit to give back or tickets to record).
    pub(super) fn arm(prepared: &'p mut Prepared, payments: &Payments, at: Records<'_>) -> Self {
        let armed = prepared.spend().map(|spend| {
            Box::new(Armed {
                payments: payments.clone(),
                spend,
                dispatched: Dispatched::default(),
                orch: at.orch.to_owned(),
                key: at.key.clone(),
                tab: at.tab.cloned(),
                metrics: at.metrics.clone(),
            })
        });
        Self { prepared, armed }
    }

    /// The payment, to call with.
    pub(super) fn prepared(&self) -> &Prepared {
        self.prepared
    }

    /// What the call marks once it is handed to a connection; `None` when the payment has
    /// nothing to give back or record.
    pub(super) fn dispatched(&self) -> Option<&Dispatched> {
        self.armed.as_ref().map(|a| &a.dispatched)
    }

    /// The call ended: the attempt settles and records the payment itself.
    pub(super) fn disarm(mut self) {
        self.armed = None;
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let Some(a) = self.armed.take() else { return };
        if !a.dispatched.happened() {
            // Never written: its tickets' nonces were seen by nobody.
            a.payments.settle(self.prepared.take(), Settlement::Refused);
            return;
        }
        if a.spend.tickets == 0 {
            return;
        }
        // The fee is charged by the orchestrator on a job it finishes, which is not known:
        // the tickets' value is what left.
        let (tickets, ev, fee) = (a.spend.tickets, &a.spend.ev_sent, &Ratio::ZERO);
        a.metrics.paid(&a.orch, &a.key, tickets, ev, fee);
        if let Some(tab) = &a.tab {
            tab.paid(tickets, ev, fee);
        }
    }
}
