//! The per-address cap of the public and admin ports (`--max-connections-per-address`): one
//! client address may hold at most so many of a port's connections at once, so that one
//! client cannot take every `--max-connections` place and leave the others waiting in the
//! accept queue. A connection over its address's cap is closed as soon as it is accepted:
//! it takes no place, is never served and never holds up the accept loop (the RTMP ingest
//! refuses its surplus connections the same way). Counted once per port for all of its
//! listeners (one per serving thread), so the cap is the port's, not each thread's.

use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio::time::Instant;

use crate::address_counts::{AddressCounts, AddressSlot};

/// How often, at most, refusals are logged per port: a client opening connections in a
/// loop must not flood the log (the counter has the numbers).
const REFUSAL_WARNING_EVERY: Duration = Duration::from_secs(60);

/// One port's connections by client address, and what it refused.
#[derive(Debug)]
pub(crate) struct PerAddress {
    /// The listener's name, for the log.
    name: &'static str,
    /// Connections one address may hold; at least 1.
    most: usize,
    counts: Arc<AddressCounts>,
    /// `livepeer_gateway_http_connections_refused_total` of this port.
    refused: Counter,
    /// When a refusal was last logged.
    warned: Mutex<Option<Instant>>,
}

impl PerAddress {
    /// The cap of `most` connections per address on the port `name`, counting refusals in
    /// `refused`; none when `most` is 0 (no cap: nothing is counted per connection).
    pub(crate) fn new(name: &'static str, most: usize, refused: Counter) -> Option<Arc<Self>> {
        (most > 0).then(|| {
            let counts = Arc::default();
            Arc::new(Self { name, most, counts, refused, warned: Mutex::new(None) })
        })
    }

    /// Counts a connection just accepted from `peer`, until the slot is dropped; `None` (to
    /// be closed at once) when that address already holds its cap.
    pub(crate) fn admit(&self, peer: IpAddr) -> Option<AddressSlot> {
        if let Some(slot) = self.counts.take(peer, self.most) {
            return Some(slot);
        }
        self.refused.inc();
        let mut warned = self.warned.lock().unwrap_or_else(PoisonError::into_inner);
        if warned.is_none_or(|at| at.elapsed() >= REFUSAL_WARNING_EVERY) {
            *warned = Some(Instant::now());
            drop(warned);
            tracing::warn!(
                listener = self.name,
                %peer,
                max = self.most,
                "connections refused: the client address already holds \
                 --max-connections-per-address (logged at most once a minute)"
            );
        }
        None
    }
}
