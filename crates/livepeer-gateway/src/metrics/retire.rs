//! Letting go of the series of names the pool no longer vouches for.
//!
//! A model, a BYOC capability or an orchestrator URI is a label only while the pool offers or
//! holds it; the series made while it did stay in their families. Names come and go (an
//! on-chain pool changes, and an orchestrator can advertise new capability names at every
//! refresh), so without this the families would grow for as long as the process runs.
//!
//! prometheus-client's families cannot be walked, so a series can be removed only when its
//! whole label set is known. That is so for the families labelled by an orchestrator alone:
//! a retired orchestrator's series there are removed by name. The others combine pool names
//! with each other and with outcomes; they are cleared whole once [`RETIRED_MAX`] names have
//! retired since the last clearing. Their counters then start again from zero, which
//! Prometheus's `rate()` and `increase()` read as a reset; series of names still in the pool
//! come back with their next request. A pool that does not churn is never cleared.

use std::sync::{Arc, Mutex, PoisonError};

use super::{Known, Metrics, OrchLabel, Set};
use crate::job::JobKey;

/// Names retired since the last clearing at which the families are cleared: series of names
/// no longer in the pool are bounded by this many names' worth.
pub(super) const RETIRED_MAX: usize = 256;

/// Names once in the pool and no longer, since the last clearing.
#[derive(Debug, Default)]
pub(super) struct Retired {
    names: Mutex<Names>,
}

#[derive(Debug, Default)]
struct Names {
    models: Set<JobKey>,
    orchestrators: Set<String>,
}

impl Names {
    fn len(&self) -> usize {
        self.models.len() + self.orchestrators.len()
    }
}

impl Metrics {
    /// Makes `change` of the pool's names its names, noting those that left it; past
    /// [`RETIRED_MAX`] of them, their series are let go. The change is made under the lock,
    /// so that the model and orchestrator censuses, which run apart, never undo each other.
    pub(super) fn census(&self, change: impl FnOnce(&Known) -> Known) {
        let mut names = self.retired.names.lock().unwrap_or_else(PoisonError::into_inner);
        let before = self.known.load_full();
        let now = change(&before);
        let gone_models = before.models.iter().filter(|m| !now.models.contains(*m));
        names.models.extend(gone_models.cloned());
        let gone_orchs = before.orchestrators.iter().filter(|o| !now.orchestrators.contains(*o));
        names.orchestrators.extend(gone_orchs.cloned());
        // A name back in the pool is no longer retired.
        names.models.retain(|m| !now.models.contains(m));
        names.orchestrators.retain(|o| !now.orchestrators.contains(o));
        self.known.store(Arc::new(now));
        if names.len() >= RETIRED_MAX {
            let Names { models, orchestrators } = std::mem::take(&mut *names);
            drop(names);
            self.let_go(models.len(), &orchestrators);
        }
    }

    /// Removes the series of `orchestrators` where they are the only label, and clears the
    /// families that mix pool names.
    fn let_go(&self, models: usize, orchestrators: &Set<String>) {
        for uri in orchestrators {
            let label = OrchLabel { orchestrator_uri: uri.clone() };
            self.selections.remove(&label);
            self.ejections.remove(&label);
            self.discovery_latency.remove(&label);
        }
        self.discovery_errors.clear();
        self.ai_requested.clear();
        self.ai_errors.clear();
        self.ai_latency.clear();
        self.tickets_sent.clear();
        self.ticket_value_sent.clear();
        self.fees.clear();
        self.byoc_latency.clear();
        self.byoc_errors.clear();
        tracing::info!(
            models,
            orchestrators = orchestrators.len(),
            "metric series of names no longer in the pool let go"
        );
    }
}
