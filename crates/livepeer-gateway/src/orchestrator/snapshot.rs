//! The immutable pool snapshot that requests read without locks, and how it is built.
//!
//! Building is pure: from what discovery last learned about each orchestrator and the
//! gateway's requirements, it indexes, for every (capability, model) on offer, the compatible
//! orchestrators in a warm tier and a cold tier, each sorted by price. Selection then needs no
//! per-request filtering for capabilities, and the price cap is a binary search.
//!
//! Building also hands every (orchestrator, job key) on offer its live per-key state (breaker,
//! requests in flight, latency) from the orchestrator's statistics, which outlive snapshots,
//! and lets those statistics forget keys the orchestrator no longer advertises.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use livepeer_pm::Address;
use url::Url;

use super::caps::{self, CapMask, Capabilities, Mismatch};
use super::health::{JobStats, OrchStats};
use super::info::OrchInfo;
use super::price::Price;
use super::selection::Entry;
pub use crate::job::JobKey;
use crate::job::{BYOC, capability_pipeline};

pub use super::info::{MAX_BYOC_CAPABILITIES, MAX_BYOC_NAME};

/// What the gateway requires of orchestrators, fixed by configuration.
#[derive(Debug, Clone, Default)]
pub struct Requirements {
    /// Minimum orchestrator node version (`--orch-min-livepeer-version`), empty for none.
    pub min_version: String,
    /// Minimum ai-runner version per (pipeline capability, model) (`--ai-min-runner-version`).
    pub min_runner: HashMap<(u32, String), String>,
    /// Highest price accepted for any job (`--max-price-per-unit` / `--pixels-per-unit`).
    pub max_price: Option<Price>,
    /// Highest price per (capability, model); model `default` covers the whole pipeline.
    pub max_price_per_model: HashMap<(u32, String), Price>,
    /// Orchestrator addresses never to use (`--orch-blocklist`).
    pub blocklist: Vec<Address>,
}

impl Requirements {
    /// The capability set the gateway requires for `key`.
    pub fn capabilities(&self, key: &JobKey) -> Capabilities {
        if key.model.is_empty() {
            return Capabilities::transcode_job(&self.min_version);
        }
        let runner =
            self.min_runner.get(&(key.capability, key.model.clone())).map_or("", String::as_str);
        Capabilities::ai_job(key.capability, &key.model, runner, &self.min_version)
    }

    /// The price cap for `key`: the model's own, else the pipeline's `default`, else global.
    /// A BYOC capability has its own cap (`--byoc-max-price`, wei per second) or none: the
    /// global cap is a price per pixel, which says nothing of a price per second.
    pub fn max_price(&self, key: &JobKey) -> Option<Price> {
        let find = |m: &str| self.max_price_per_model.get(&(key.capability, m.to_owned()));
        if key.is_byoc() {
            return find(&key.model).copied();
        }
        find(&key.model).or_else(|| find("default")).copied().or(self.max_price)
    }
}

/// One orchestrator as the snapshot knows it.
#[derive(Debug, Clone)]
pub struct Slot {
    /// The address it was discovered under.
    pub url: Url,
    /// Its last good GetOrchestrator answer, if any.
    pub info: Option<Arc<OrchInfo>>,
    /// Live statistics, shared with the request path and kept across snapshots.
    pub stats: Arc<OrchStats>,
    /// Its address is on the blocklist.
    pub blocked: bool,
    /// Its on-chain stake as a selection weight (on-chain discovery; 0 otherwise).
    pub stake: f64,
}

/// Candidates for one job key.
#[derive(Debug, Clone, Default)]
pub struct Tiers {
    /// Orchestrators with the model warm, cheapest first.
    pub warm: Vec<Entry>,
    /// Orchestrators with the model cold, cheapest first.
    pub cold: Vec<Entry>,
    /// Compatible orchestrators above the configured price cap (kept out of the tiers).
    pub over_price: Vec<Entry>,
    /// The configured price cap.
    pub max_price: Option<Price>,
}

/// An immutable view of the pool.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Every known orchestrator, in discovery order.
    pub slots: Vec<Slot>,
    /// Candidates per job key.
    pub index: HashMap<JobKey, Tiers>,
    /// Slot index by URL.
    pub by_url: HashMap<String, u32>,
    /// Live state per (orchestrator, job key), indexed by [`Entry::job`].
    pub jobs: Vec<Arc<JobStats>>,
    /// Incremented on every rebuild.
    pub generation: u64,
    /// Per slot, what it offers transcoding jobs: each job needs its own capabilities, which
    /// selection tests against this ([`CapMask::serves`]) among the transcoding candidates.
    pub transcode_caps: Vec<CapMask>,
}

impl Snapshot {
    /// Builds the index over `slots`.
    pub fn build(slots: Vec<Slot>, req: &Requirements, generation: u64) -> Self {
        let mut index: HashMap<JobKey, Tiers> = HashMap::new();
        let mut jobs = Vec::new();
        for (i, slot) in slots.iter().enumerate() {
            let Some(info) = slot.info.as_deref() else { continue };
            let offers = offers(info);
            {
                let offered: HashSet<&JobKey> = offers.iter().map(|(k, _, _)| k).collect();
                slot.stats.retain_jobs(|k| offered.contains(k));
            }
            if slot.blocked {
                continue;
            }
            for (key, warm, capacity) in offers {
                if compatible(info, &key, req).is_err() {
                    continue;
                }
                let tiers = index.entry(key.clone()).or_insert_with(|| Tiers {
                    max_price: req.max_price(&key),
                    ..Tiers::default()
                });
                let entry = Entry {
                    orch: i as u32,
                    price: info.price_for(key.capability, &key.model),
                    capacity,
                    job: jobs.len() as u32,
                };
                jobs.push(slot.stats.job(&key));
                if tiers.max_price.is_some_and(|max| entry.price > max) {
                    tiers.over_price.push(entry);
                } else if warm {
                    tiers.warm.push(entry);
                } else {
                    tiers.cold.push(entry);
                }
            }
        }
        for t in index.values_mut() {
            t.warm.sort_by_key(|e| e.price);
            t.cold.sort_by_key(|e| e.price);
            t.over_price.sort_by_key(|e| e.price);
        }
        let by_url = slots.iter().enumerate().map(|(i, s)| (s.url.to_string(), i as u32)).collect();
        let transcode_caps = slots
            .iter()
            .map(|s| {
                s.info.as_deref().map_or(CapMask::NONE, |i| CapMask::of(i.capabilities.as_ref()))
            })
            .collect();
        Self { slots, index, by_url, jobs, generation, transcode_caps }
    }
}

/// Every (job, warm, capacity) an orchestrator offers: each advertised model of an AI pipeline
/// the gateway knows, and transcoding. Models under other capability ids are never asked for.
fn offers(info: &OrchInfo) -> Vec<(JobKey, bool, u32)> {
    let mut out = vec![(JobKey::transcode(), true, 0)];
    if let Some(c) = &info.capabilities {
        let known = c.per_capability.iter().filter(|(cap, _)| capability_pipeline(**cap).is_some());
        for (cap, models) in known {
            for (model, mc) in models {
                let key = JobKey { capability: *cap, model: model.clone() };
                out.push((key, mc.warm, mc.capacity));
            }
        }
    }
    out.extend(byoc_offers(info).map(|name| (JobKey::byoc(name), true, 0)));
    out
}

/// The BYOC capability names an orchestrator prices (`capabilities_prices` entries with
/// capability 37, PROTOCOL.md §10.1), first ones first, at most [`MAX_BYOC_CAPABILITIES`] and
/// each at most [`MAX_BYOC_NAME`] bytes; duplicates once.
pub fn byoc_offers(info: &OrchInfo) -> impl Iterator<Item = &str> {
    let mut seen = HashSet::new();
    info.capability_prices
        .iter()
        .filter(|p| p.capability == BYOC && !p.constraint.is_empty())
        .map(|p| p.constraint.as_str())
        .filter(|name| name.len() <= MAX_BYOC_NAME)
        .filter(move |name| seen.insert(*name))
        .take(MAX_BYOC_CAPABILITIES)
}

/// Whether `info` can serve `key` under `req` (PROTOCOL.md §3.5). A model under a capability
/// id that is no AI pipeline is never served: the requirement for it would set that bit, and a
/// bitstring reaching an id near `u32::MAX` (an orchestrator chooses the ids it advertises)
/// takes half a gigabyte.
pub fn compatible(info: &OrchInfo, key: &JobKey, req: &Requirements) -> Result<(), Mismatch> {
    // BYOC capabilities are not in the bitstring (PROTOCOL.md §10.1): a price entry is the
    // offer, and only the node version applies.
    if key.is_byoc() {
        let found = info.capabilities.as_ref().map_or("", |c| c.version.as_str());
        if !req.min_version.is_empty() && !caps::version_at_least(found, &req.min_version) {
            let (found, min) = (found.to_owned(), req.min_version.clone());
            return Err(Mismatch::Version { found, min });
        }
        return Ok(());
    }
    if !key.model.is_empty() && capability_pipeline(key.capability).is_none() {
        return Err(Mismatch::Model { capability: key.capability, model: key.model.clone() });
    }
    // Transcoding: each stream needs its own capabilities (go-livepeer selects by the
    // stream's `JobCapabilities`), tested at selection against `Snapshot::transcode_caps`.
    // Only the node version is the same for every job.
    if *key == JobKey::transcode() {
        let Some(c) = info.capabilities.as_ref() else { return Ok(()) };
        if !req.min_version.is_empty() && !caps::version_at_least(&c.version, &req.min_version) {
            let (found, min) = (c.version.clone(), req.min_version.clone());
            return Err(Mismatch::Version { found, min });
        }
        return Ok(());
    }
    caps::compatible(&req.capabilities(key), info.capabilities.as_ref())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::orchestrator::caps::ModelConstraint;

    #[test]
    fn models_under_unknown_capability_ids_are_not_indexed() {
        let mut caps = Capabilities::transcode_job("");
        caps.version = "0.9.1".into();
        for cap in [27, u32::MAX - 1] {
            let mc = ModelConstraint { warm: true, ..ModelConstraint::default() };
            caps.per_capability.entry(cap).or_default().insert("m".into(), mc);
        }
        caps.set(27);
        let info = OrchInfo {
            transcoder: "https://o.example:8935".into(),
            address: None,
            price: Price::ZERO,
            capability_prices: Vec::new(),
            capabilities: Some(caps),
            ticket_params: None,
            auth_token: None,
            rtt: Duration::ZERO,
        };
        let req = Requirements::default();
        let hostile = JobKey { capability: u32::MAX - 1, model: "m".into() };
        assert!(matches!(compatible(&info, &hostile, &req), Err(Mismatch::Model { .. })));
        let slot = Slot {
            url: "https://o.example:8935".parse().unwrap(),
            info: Some(Arc::new(info)),
            stats: Arc::default(),
            blocked: false,
            stake: 0.0,
        };
        let snap = Snapshot::build(vec![slot], &req, 1);
        let mut keys: Vec<String> = snap.index.keys().map(ToString::to_string).collect();
        keys.sort();
        assert_eq!(keys, ["text-to-image/m", "transcode"]);
        assert_eq!(snap.jobs.len(), 2);
    }
}
