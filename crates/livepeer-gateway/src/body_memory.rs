//! The memory that request bodies read into the gateway may hold at once, across the process.
//!
//! Each route bounds its own body (`--ai-max-body-bytes` and the like), but as many requests
//! as connections × HTTP/2 streams may be reading one at the same time: 384 connections of
//! 32 streams with 50 MiB bodies would be 600 GiB. Every body a route reads whole is counted
//! here as it arrives, and stays counted for as long as its bytes live (the bytes handed on
//! own the reservation, and return it when the last copy is dropped). A body that would pass
//! the budget fails the request with 503 `gateway_overloaded`: the gateway's own shortage, to
//! be retried, not the client's mistake.
//!
//! The budget is one per process, since memory is: several gateways started in one process
//! (tests do) share the one set last.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use bytes::Bytes;

use crate::error::{Error, Kind};

/// Bytes held and the most that may be, for the whole process.
static USED: AtomicUsize = AtomicUsize::new(0);
static MAX: AtomicUsize = AtomicUsize::new(usize::MAX);

/// Sets the budget (`--max-body-memory`).
pub(crate) fn set_budget(bytes: usize) {
    MAX.store(bytes, Ordering::Release);
}

/// Bytes of request bodies held now.
pub(crate) fn used() -> usize {
    USED.load(Ordering::Acquire)
}

/// A share of the budget, returned when dropped.
#[derive(Debug, Default)]
pub(crate) struct Held {
    bytes: AtomicUsize,
    /// Whether a growth was refused: the request failed for the gateway's want of memory.
    refused: AtomicBool,
}

impl Held {
    /// Takes `n` more bytes from the budget; `false`, taking nothing, when it has not that
    /// many left.
    pub(crate) fn grow(&self, n: usize) -> bool {
        let max = MAX.load(Ordering::Acquire);
        let took = USED.fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
            used.checked_add(n).filter(|&total| total <= max)
        });
        if took.is_err() {
            self.refused.store(true, Ordering::Release);
            return false;
        }
        self.bytes.fetch_add(n, Ordering::AcqRel);
        true
    }

    /// Whether a growth was refused.
    pub(crate) fn refused(&self) -> bool {
        self.refused.load(Ordering::Acquire)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        USED.fetch_sub(*self.bytes.get_mut(), Ordering::AcqRel);
    }
}

/// The error of a request whose body would pass the budget: the gateway's own shortage.
pub(crate) fn over_budget() -> Error {
    let message = "the gateway holds as many request bodies as its memory budget allows \
                   (--max-body-memory); retry later";
    Error::new(Kind::GatewayOverloaded, message)
}

/// `bytes` owning `held` (a [`Held`], or an `Arc` of one that several byte strings share):
/// the share is returned once the last copy of the bytes is dropped.
pub(crate) fn owning<H: Send + 'static>(bytes: Bytes, held: H) -> Bytes {
    if bytes.is_empty() {
        return bytes;
    }
    Bytes::from_owner(Owned { bytes, _held: held })
}

/// The owner of budgeted bytes.
struct Owned<H> {
    bytes: Bytes,
    _held: H,
}

impl<H> AsRef<[u8]> for Owned<H> {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}
