//! The tickets of an AI attempt whose call is out. The attempt settles them when its call
//! ends, and only then records them (metrics, the customer's tab, the request's record). A
//! request dropped mid-call (its client gone) drops the call with it: the tickets may have
//! reached the orchestrator, and its payment is booked as spent, but nothing recorded them,
//! and a customer's key without a budget wrote no usage row at all. [`InFlight`] records them
//! when dropped armed, as BYOC's `OutTickets` does.

use std::sync::Arc;

use livepeer_pm::Ratio;

use crate::job::JobKey;
use crate::keys::Tab;
use crate::metrics::Metrics;
use crate::payment::Spend;

/// A payment's tickets while its call is out; see the module docs.
pub(super) struct InFlight {
    // Boxed: it is held across the call's await, in every request's future, and the spend's
    // exact amounts are large; unpaid requests hold none.
    armed: Option<Box<Armed>>,
}

struct Armed {
    spend: Spend,
    orch: String,
    key: JobKey,
    tab: Option<Arc<Tab>>,
    metrics: Metrics,
}

impl InFlight {
    /// Armed with `spend` (nothing when the payment made no tickets the gateway signed),
    /// sent to `orch` for a job of `key`, on `tab` if a key's.
    pub(super) fn arm(
        spend: Option<Spend>,
        (orch, key): (&str, &JobKey),
        tab: Option<&Arc<Tab>>,
        metrics: &Metrics,
    ) -> Self {
        let armed = spend.filter(|s| s.tickets > 0).map(|spend| {
            let (orch, key, tab, metrics) =
                (orch.to_owned(), key.clone(), tab.cloned(), metrics.clone());
            Box::new(Armed { spend, orch, key, tab, metrics })
        });
        Self { armed }
    }

    /// The call ended: the attempt settles and records the payment itself.
    pub(super) fn disarm(mut self) {
        self.armed = None;
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let Some(a) = self.armed.take() else { return };
        // The fee is charged by the orchestrator on a job it finishes, which is not known:
        // the tickets' value is what left.
        let (tickets, ev, fee) = (a.spend.tickets, &a.spend.ev_sent, &Ratio::ZERO);
        a.metrics.paid(&a.orch, &a.key, tickets, ev, fee);
        if let Some(tab) = &a.tab {
            tab.paid(tickets, ev, fee);
        }
    }
}
