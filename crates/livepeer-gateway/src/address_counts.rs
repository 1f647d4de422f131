//! Open connections counted by client address, with a cap per address: the RTMP ingest's
//! connections yet to publish, and each HTTP port's connections (`--max-connections-per-address`).
//!
//! One mutex over one map. A connection takes it twice (opening and closing), for a hash of
//! an address and a counter; under it nothing else is done, so the listeners of a port (one
//! per serving thread) rarely wait on each other. Only addresses with a connection counted
//! are kept, so the map is bounded by the connections open, not by the addresses ever seen.
//! The hash is std's keyed SipHash: the keys are clients' addresses, which a client with an
//! IPv6 prefix can choose by the million, so the map must not be open to chosen collisions.
//!
//! An IPv6 client is counted by its /64 prefix, not by its address. A /64 is the smallest
//! network a site is given (RFC 6177; a home or a cloud instance usually has one whole), and
//! privacy addresses (RFC 8981) or a script pick any of its 2^64 addresses at will, so a cap
//! per address would not bound one client at all.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, PoisonError};

/// Connections counted, by the address they came from.
#[derive(Debug, Default)]
pub(crate) struct AddressCounts(Mutex<HashMap<IpAddr, usize>>);

impl AddressCounts {
    /// Counts one more connection from `ip`, unless its client already has `most`. An IPv4
    /// address mapped into IPv6 (`::ffff:a.b.c.d`, what a dual-stack listener sees of an IPv4
    /// client) counts as the IPv4 address, so one client is one address whichever way it came
    /// in; an IPv6 address counts as its /64 prefix (see the module's text).
    pub(crate) fn take(self: &Arc<Self>, ip: IpAddr, most: usize) -> Option<AddressSlot> {
        let ip = client_of(ip);
        let mut counts = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let count = counts.entry(ip).or_insert(0);
        if *count >= most {
            if *count == 0 {
                // `most` is 0: nothing is counted, and an entry at zero is never kept.
                counts.remove(&ip);
            }
            return None;
        }
        *count += 1;
        Some(AddressSlot { counts: self.clone(), ip })
    }

    /// Addresses with a connection counted.
    #[cfg(test)]
    pub(crate) fn addresses(&self) -> usize {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

/// The key a connection from `ip` is counted under: the IPv4 address, or the IPv6 /64 prefix
/// (the address with its low 64 bits cleared).
fn client_of(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(v6.to_bits() & !u128::from(u64::MAX))),
        v4 => v4,
    }
}

/// One connection counted in [`AddressCounts`] until dropped, however the connection ends.
#[derive(Debug)]
pub(crate) struct AddressSlot {
    counts: Arc<AddressCounts>,
    ip: IpAddr,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = counts.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));

    #[test]
    fn each_address_gets_its_cap_and_its_places_back() {
        let counts = Arc::new(AddressCounts::default());
        let a: Vec<_> = (0..3).map(|_| counts.take(A, 3).expect("under the cap")).collect();
        assert!(counts.take(A, 3).is_none(), "a fourth from one address");
        let b = counts.take(B, 3).expect("another address has its own cap");
        let mut a = a.into_iter();
        drop(a.next());
        let again = counts.take(A, 3).expect("a place freed");
        assert!(counts.take(A, 3).is_none());
        drop((a, again, b));
        assert_eq!(counts.addresses(), 0, "entries at zero are removed");
    }

    #[test]
    fn an_ipv4_mapped_address_counts_as_its_ipv4_address() {
        let counts = Arc::new(AddressCounts::default());
        let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped());
        let first = counts.take(mapped, 2).unwrap();
        let second = counts.take(A, 2).unwrap();
        assert!(counts.take(mapped, 2).is_none());
        assert!(counts.take(A, 2).is_none());
        assert_eq!(counts.addresses(), 1);
        // A real IPv6 address is its own.
        let v6 = counts.take(IpAddr::V6(Ipv6Addr::LOCALHOST), 2);
        assert!(v6.is_some());
        drop((first, second, v6));
        assert_eq!(counts.addresses(), 0);
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64_prefix() {
        let counts = Arc::new(AddressCounts::default());
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let first = counts.take(ip("2001:db8:1:2::1"), 2).unwrap();
        let second = counts.take(ip("2001:db8:1:2:ffff:ffff:ffff:fffe"), 2).unwrap();
        assert!(
            counts.take(ip("2001:db8:1:2:1234::9"), 2).is_none(),
            "a third address of the same /64 is the same client"
        );
        let next_64 = counts.take(ip("2001:db8:1:3::1"), 2).expect("the next /64 is another");
        assert_eq!(counts.addresses(), 2);
        drop(first);
        let again = counts.take(ip("2001:db8:1:2::77"), 2).expect("a place of the /64 freed");
        drop((second, next_64, again));
        assert_eq!(counts.addresses(), 0, "a /64's entry is removed at zero");
    }

    #[test]
    fn a_cap_of_zero_keeps_no_entry() {
        let counts = Arc::new(AddressCounts::default());
        assert!(counts.take(A, 0).is_none());
        assert_eq!(counts.addresses(), 0);
    }
}
