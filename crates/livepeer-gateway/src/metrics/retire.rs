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
//!
//! `gateway_live_streams{pipeline}` is a gauge of running streams, which a clearing would
//! zero while they run (and their ends would then count below zero): its series of retired
//! pipelines are removed by name instead, once they count no stream; one still counting is
//! tried again at the next letting go.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::{Known, Metrics, OrchLabel, PipelineLabel, Set};
use crate::job::JobKey;

/// The pipeline of live streams, whose models are `gateway_live_streams`' labels.
const LIVE: &str = "live-video-to-video";

/// Names retired since the last clearing at which the families are cleared: series of names
/// no longer in the pool are bounded by this many names' worth.
pub(super) const RETIRED_MAX: usize = 256;

/// Names once in the pool and no longer, since the last clearing.
#[derive(Debug, Default)]
pub(super) struct Retired {
    names: Mutex<Names>,
    /// Held while a stream is counted in or out of `live_streams` and while its series are
    /// let go, so that no series is removed between a look at its count and a change of it.
    live: Mutex<()>,
}

impl Retired {
    /// The lock of `live_streams`' counts.
    pub(super) fn live_counts(&self) -> MutexGuard<'_, ()> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Debug, Default)]
struct Names {
    models: Set<JobKey>,
    orchestrators: Set<String>,
    /// Retired live pipelines whose streams still ran when their series were let go. Not
    /// counted towards [`RETIRED_MAX`]: they are only tried again with the next batch.
    live_running: Set<String>,
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
            let Names { models, orchestrators, live_running } = std::mem::take(&mut *names);
            names.live_running = self.let_go_live(&models, live_running);
            drop(names);
            self.let_go(models.len(), &orchestrators);
        }
    }

    /// Removes the `live_streams` series of the retired live pipelines among `models` and
    /// `running` that count no stream now; returns those that still do.
    fn let_go_live(&self, models: &Set<JobKey>, running: Set<String>) -> Set<String> {
        let _counts = self.retired.live_counts();
        let known = self.known.load();
        let retired = models.iter().filter(|k| k.pipeline() == LIVE).map(|k| k.model.clone());
        let mut still = Set::default();
        for pipeline in running.into_iter().chain(retired) {
            // Back in the pool: retired again, and tried again, when it leaves.
            if JobKey::ai(LIVE, &pipeline).is_some_and(|k| known.models.contains(&k)) {
                continue;
            }
            let label = PipelineLabel { pipeline };
            match self.live_streams.get(&label).map(|g| g.get()) {
                Some(n) if n > 0 => {
                    still.insert(label.pipeline);
                }
                Some(_) => {
                    self.live_streams.remove(&label);
                }
                None => {}
            }
        }
        still
    }

    /// Removes the series of `orchestrators` where they are the only label, and clears the
    /// families that mix pool names.
    fn let_go(&self, models: usize, orchestrators: &Set<String>) {
        for uri in orchestrators {
            let label = OrchLabel { orchestrator_uri: uri.clone() };
            self.selections.remove(&label);
            self.ejections.remove(&label);
            self.discovery_latency.remove(&label);
            self.transcode.latency.remove(&label);
        }
        self.discovery_errors.clear();
        self.ai.clear();
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
