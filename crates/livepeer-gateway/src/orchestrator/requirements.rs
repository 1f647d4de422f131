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

/// Price caps per pipeline and model a runtime change may add, at most: each is a key of a map
/// every snapshot and payment reads, and a client of the admin API could otherwise add them
/// without end. Setting a cap already there is always allowed.
pub const MAX_MODEL_CAPS: usize = 1024;

/// A new per-model price cap refused: [`MAX_MODEL_CAPS`] are set already.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("at most {MAX_MODEL_CAPS} price caps per pipeline and model")]
pub struct TooManyCaps;

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

    /// Sets the cap of `capability` for `model` (`default`: the whole pipeline), unless that
    /// would make more than [`MAX_MODEL_CAPS`].
    pub(super) fn set_max_price_for(
        &self,
        capability: u32,
        model: &str,
        price: Price,
    ) -> Result<(), TooManyCaps> {
        let key = (capability, model.to_owned());
        let fits = |r: &Requirements| {
            r.max_price_per_model.contains_key(&key) || r.max_price_per_model.len() < MAX_MODEL_CAPS
        };
        // `rcu` answers the value its winning attempt edited, so that `fits` of it is what
        // that attempt decided, whatever edits raced with it.
        let before = self.0.rcu(|current| {
            let mut next = Requirements::clone(current);
            if fits(&next) {
                next.max_price_per_model.insert(key.clone(), price);
            }
            next
        });
        if fits(&before) { Ok(()) } else { Err(TooManyCaps) }
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
        cell.set_max_price_for(27, "m", Price::new(2, 1).unwrap()).unwrap();
        assert_eq!(reader.load().max_price(&t2i), Some(Price::new(2, 1).unwrap()));
        cell.set_max_price(None);
        assert_eq!(reader.load().max_price(&JobKey::transcode()), None);
    }

    #[test]
    fn per_model_caps_are_bounded_but_always_replaceable() {
        let cell = SharedRequirements::default();
        let price = |n| Price::new(n, 1).unwrap();
        for i in 0..MAX_MODEL_CAPS {
            assert_eq!(cell.set_max_price_for(27, &format!("m{i}"), price(1)), Ok(()), "{i}");
        }
        assert_eq!(cell.set_max_price_for(27, "one more", price(1)), Err(TooManyCaps));
        assert_eq!(cell.set_max_price_for(28, "m0", price(1)), Err(TooManyCaps), "a new key");
        assert_eq!(cell.load().max_price_per_model.len(), MAX_MODEL_CAPS, "nothing added");
        assert_eq!(cell.set_max_price_for(27, "m7", price(9)), Ok(()), "a replacement");
        let t2i = JobKey::ai("text-to-image", "m7").unwrap();
        assert_eq!(cell.load().max_price(&t2i), Some(price(9)));
    }
}
