//! The operator's [`Requirements`] as one shared cell, so that the price caps can change while
//! the gateway runs (go-livepeer's `/setBroadcastConfig` and `/setMaxPriceForCapability`).
//!
//! Every reader of a price cap holds a handle on the same cell: the pool (whose snapshots index
//! orchestrators above a cap apart), the payments (which refuse to pay above a cap), the remote
//! signer's sender checks and the admin API. A change is one store, read lock-free by all of
//! them; the pool then rebuilds its snapshot so that selection sees it at once
//! ([`Pool::set_max_price`](super::Pool::set_max_price)).

use std::sync::Arc;

use arc_swap::ArcSwap;

use super::price::Price;
use super::snapshot::Requirements;

/// A shared, swappable [`Requirements`]; cheap to clone (every clone is the same cell).
#[derive(Debug, Clone)]
pub struct SharedRequirements(Arc<ArcSwap<Requirements>>);

impl Default for SharedRequirements {
    fn default() -> Self {
        Self::new(Requirements::default())
    }
}

impl From<Requirements> for SharedRequirements {
    fn from(requirements: Requirements) -> Self {
        Self::new(requirements)
    }
}

impl SharedRequirements {
    /// A new cell holding `requirements`.
    pub fn new(requirements: Requirements) -> Self {
        Self(Arc::new(ArcSwap::from_pointee(requirements)))
    }

    /// The requirements now in force.
    pub fn load(&self) -> Arc<Requirements> {
        self.0.load_full()
    }

    /// Sets the global price cap (`None` accepts any price, as go-livepeer's 0 does).
    pub(super) fn set_max_price(&self, price: Option<Price>) {
        self.edit(|r| r.max_price = price);
    }

    /// Sets the cap of `capability` for `model` (`default`: the whole pipeline).
    pub(super) fn set_max_price_for(&self, capability: u32, model: &str, price: Price) {
        self.edit(|r| {
            r.max_price_per_model.insert((capability, model.to_owned()), price);
        });
    }

    /// Applies `edit` to a copy and stores it; concurrent edits are each applied once, to the
    /// latest value (`rcu` retries on a lost race), so neither is lost.
    fn edit(&self, edit: impl Fn(&mut Requirements)) {
        self.0.rcu(|current| {
            let mut next = Requirements::clone(current);
            edit(&mut next);
            next
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::JobKey;

    #[test]
    fn every_clone_sees_a_change() {
        let cell = SharedRequirements::default();
        let reader = cell.clone();
        let t2i = JobKey::ai("text-to-image", "m").unwrap();
        assert_eq!(reader.load().max_price(&t2i), None);
        cell.set_max_price(Some(Price::new(5, 1).unwrap()));
        assert_eq!(reader.load().max_price(&t2i), Some(Price::new(5, 1).unwrap()));
        cell.set_max_price_for(27, "m", Price::new(2, 1).unwrap());
        assert_eq!(reader.load().max_price(&t2i), Some(Price::new(2, 1).unwrap()));
        cell.set_max_price(None);
        assert_eq!(reader.load().max_price(&JobKey::transcode()), None);
    }
}
