//! Serving lanes: the thread a request is served on, so that per-thread state (outgoing
//! connection pools) can be picked without crossing threads.
//!
//! The public listener runs one single-threaded runtime per core (`http::cores`); each of
//! those threads is a lane, numbered from 1. Every other thread (the shared runtime's workers:
//! the admin port, background work, in-process calls) is lane 0. A client that keeps a pool of
//! connections keeps one per lane ([`Lanes`]): a connection's task runs on the runtime that
//! opened it, and a request handed to a connection of another thread costs a cross-thread
//! wake-up (a system call) each way, which is what the per-core runtimes are there to avoid.

use std::cell::Cell;
use std::sync::Arc;

thread_local! {
    static LANE: Cell<usize> = const { Cell::new(0) };
}

/// The current thread's lane: 0 unless it serves the public listener.
pub fn current() -> usize {
    LANE.with(Cell::get)
}

/// Makes the current thread lane `lane`; called once by each serving thread as it starts.
pub(crate) fn enter(lane: usize) {
    LANE.with(|l| l.set(lane));
}

/// One `T` per lane, picked by the current thread's lane. Cheap to clone; clones share.
#[derive(Debug)]
pub struct Lanes<T>(Arc<[T]>);

impl<T> Clone for Lanes<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T> Lanes<T> {
    /// `count` values (at least one) from `make`, called once per lane.
    pub fn new<E>(count: usize, mut make: impl FnMut() -> Result<T, E>) -> Result<Self, E> {
        let values = (0..count.max(1)).map(|_| make()).collect::<Result<Vec<T>, E>>()?;
        Ok(Self(values.into()))
    }

    /// `count` values (at least one) from `make`, which cannot fail.
    pub fn filled(count: usize, mut make: impl FnMut() -> T) -> Self {
        match Self::new(count, || Ok::<_, std::convert::Infallible>(make())) {
            Ok(lanes) => lanes,
            Err(never) => match never {},
        }
    }

    /// Every lane's value.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.0.iter()
    }

    /// The current lane's value (a lane beyond the count shares by modulo).
    pub fn get(&self) -> &T {
        &self.0[current() % self.0.len()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_lane_has_its_own_value_and_lanes_beyond_the_count_share() {
        let lanes = Lanes::new(3, || Ok::<_, ()>(Arc::new(()))).unwrap();
        let on_lane = |lane: usize| {
            std::thread::scope(|s| {
                s.spawn(|| {
                    enter(lane);
                    lanes.get().clone()
                })
                .join()
                .unwrap()
            })
        };
        let (zero, one, two) = (lanes.get().clone(), on_lane(1), on_lane(2));
        assert!(!Arc::ptr_eq(&zero, &one) && !Arc::ptr_eq(&one, &two) && !Arc::ptr_eq(&zero, &two));
        assert!(Arc::ptr_eq(&on_lane(4), &one), "lane 4 of 3 is lane 1's");
        assert!(Arc::ptr_eq(&zero, lanes.get()), "this thread is still lane 0");
    }
}
