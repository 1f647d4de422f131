//! Where result URLs' hosts resolve, for the address check of a result download, kept briefly.
//!
//! Each download checks every address its URL's host and its orchestrator's host resolve to
//! (`fetch`). Names used to be looked up afresh for every file: two `getaddrinfo` calls per
//! result on tokio's blocking pool, each a hop to another thread and, without a local cache,
//! a DNS round trip. Answers are now kept for [`TTL`] (the system resolver does not give a
//! record's own TTL), for at most [`MAX_NAMES`] names; a failed lookup is not kept. The check
//! stays sound with a cache: the address connected to is always one of those checked.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use url::{Host, Url};

/// How long a name's addresses are used before it is looked up again.
const TTL: Duration = Duration::from_secs(30);
/// Names kept at most (orchestrators and allowed object-store hosts, never a client's choice;
/// the bound holds when the pool changes over time).
const MAX_NAMES: usize = 1024;

/// A host name (lower case) and port.
type Name = (String, u16);

/// Resolved names, by host and port.
#[derive(Debug, Default)]
pub(crate) struct Resolver {
    /// Each name's addresses, with when they were looked up.
    names: Mutex<HashMap<Name, (Vec<IpAddr>, Instant)>>,
    /// Lookups made (not answered from the cache).
    lookups: AtomicU64,
}

impl Resolver {
    /// The addresses of `url`'s host: itself when it is an address, else its name's, from the
    /// cache while fresh.
    pub(crate) async fn resolve(&self, url: &Url) -> Result<Vec<IpAddr>, String> {
        let name = match url.host() {
            Some(Host::Ipv4(ip)) => return Ok(vec![IpAddr::V4(ip)]),
            Some(Host::Ipv6(ip)) => return Ok(vec![IpAddr::V6(ip)]),
            Some(Host::Domain(name)) => name,
            None => return Err("no host".to_owned()),
        };
        let key = (name.to_ascii_lowercase(), url.port_or_known_default().unwrap_or(80));
        if let Some(addrs) = self.cached(&key) {
            return Ok(addrs);
        }
        self.lookups.fetch_add(1, Ordering::Relaxed);
        let found = tokio::net::lookup_host((key.0.as_str(), key.1)).await;
        let addrs: Vec<IpAddr> = found.map_err(|e| e.to_string())?.map(|a| a.ip()).collect();
        if let Ok(mut names) = self.names.lock() {
            if names.len() >= MAX_NAMES {
                let now = Instant::now();
                names.retain(|_, (_, at)| now.duration_since(*at) < TTL);
                if names.len() >= MAX_NAMES {
                    names.clear();
                }
            }
            names.insert(key, (addrs.clone(), Instant::now()));
        }
        Ok(addrs)
    }

    fn cached(&self, key: &Name) -> Option<Vec<IpAddr>> {
        let names = self.names.lock().ok()?;
        let (addrs, at) = names.get(key)?;
        (at.elapsed() < TTL).then(|| addrs.clone())
    }

    /// Lookups made so far (for tests).
    #[cfg(test)]
    fn lookups(&self) -> u64 {
        self.lookups.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_name_is_looked_up_once_while_fresh_and_again_after() {
        let resolver = Resolver::default();
        let url = Url::parse("http://LocalHost:8935/stream/x.png").unwrap();
        let first = resolver.resolve(&url).await.unwrap();
        assert!(first.iter().all(|ip| ip.is_loopback()) && !first.is_empty(), "{first:?}");
        let same_host = Url::parse("http://localhost:8935/other.png").unwrap();
        assert_eq!(resolver.resolve(&same_host).await.unwrap(), first);
        assert_eq!(resolver.lookups(), 1, "the second answer came from the cache");
        // Another port is another entry; an address is never looked up.
        resolver.resolve(&Url::parse("http://localhost:9935/").unwrap()).await.unwrap();
        resolver.resolve(&Url::parse("http://127.0.0.1:1/").unwrap()).await.unwrap();
        resolver.resolve(&Url::parse("http://[::1]:1/").unwrap()).await.unwrap();
        assert_eq!(resolver.lookups(), 2);
        // Past the TTL, looked up again.
        for (_, at) in resolver.names.lock().unwrap().values_mut() {
            *at -= TTL;
        }
        resolver.resolve(&url).await.unwrap();
        assert_eq!(resolver.lookups(), 3);
    }

    #[tokio::test]
    async fn a_failed_lookup_is_not_kept() {
        let resolver = Resolver::default();
        let url = Url::parse("http://no-such-host.invalid/x.png").unwrap();
        assert!(resolver.resolve(&url).await.is_err());
        assert!(resolver.resolve(&url).await.is_err());
        assert_eq!(resolver.lookups(), 2);
        assert!(resolver.names.lock().unwrap().is_empty());
    }
}
