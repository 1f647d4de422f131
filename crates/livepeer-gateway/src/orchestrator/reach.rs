//! Where an address is, for the rule that the gateway reaches a host an orchestrator names
//! (a result to download, a BYOC stream's channel) on a non-public address only when the
//! orchestrator itself is at one of the same kind.

use std::net::IpAddr;

/// Where an address is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reach {
    /// Anywhere else: reachable whatever the orchestrator's own address.
    Public,
    /// 127.0.0.0/8, ::1.
    Loopback,
    /// 169.254.0.0/16 (cloud metadata services among them), fe80::/10.
    LinkLocal,
    /// RFC 1918, carrier-grade NAT, unique local IPv6.
    Private,
    /// Unspecified, multicast, broadcast, "this network": never fetched from.
    Never,
}

/// The kind of `ip` (an IPv4-mapped IPv6 address as its IPv4 one).
pub(crate) fn reach(ip: IpAddr) -> Reach {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            if a == 0 || v4.is_multicast() || v4.is_broadcast() {
                Reach::Never
            } else if v4.is_loopback() {
                Reach::Loopback
            } else if v4.is_link_local() {
                Reach::LinkLocal
            } else if v4.is_private() || (a == 100 && (64..128).contains(&b)) {
                Reach::Private
            } else {
                Reach::Public
            }
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            if v6.is_unspecified() || v6.is_multicast() {
                Reach::Never
            } else if v6.is_loopback() {
                Reach::Loopback
            } else if first & 0xffc0 == 0xfe80 {
                Reach::LinkLocal
            } else if first & 0xfe00 == 0xfc00 {
                Reach::Private
            } else {
                Reach::Public
            }
        }
    }
}

/// Whether a host an orchestrator names may be reached at `ip` when the orchestrator's addresses are `orch`.
pub(crate) fn reachable(ip: IpAddr, orch: &[IpAddr]) -> bool {
    match reach(ip) {
        Reach::Public => true,
        Reach::Never => false,
        kind => orch.iter().any(|&o| reach(o) == kind),
    }
}
