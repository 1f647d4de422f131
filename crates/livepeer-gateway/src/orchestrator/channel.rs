//! The trickle channel URLs of a stream start answer (live and BYOC), and where they may be.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// A channel URL an orchestrator answered, resolved as go-livepeer's `AppendHostname` does:
/// a URL with a scheme is used as it is, a bare path is on `base` (the orchestrator's service
/// address, where the start call went).
#[derive(Debug, PartialEq, Eq)]
pub enum Channel {
    /// No value.
    Missing,
    /// On `base`'s host and port.
    Own(String),
    /// On another host or port.
    Elsewhere(url::Url),
}

/// Where a channel URL is ([`Channel`]); `Err` for one that is no URL or carries credentials,
/// a query or a fragment.
pub fn channel(raw: &str, base: &str) -> Result<Channel, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(Channel::Missing);
    }
    let joined = if raw.starts_with("http://") || raw.starts_with("https://") {
        raw.to_owned()
    } else {
        format!("{base}/{}", raw.trim_start_matches('/'))
    };
    let (Ok(url), Ok(own)) = (url::Url::parse(&joined), url::Url::parse(base)) else {
        return Err(format!("a channel URL that is none on {base}"));
    };
    let plain = url.username().is_empty()
        && url.password().is_none()
        && url.query().is_none()
        && url.fragment().is_none();
    if !plain || url.host_str().is_none() {
        return Err(format!("channel {} is no plain URL", crate::outbound::shown(&url)));
    }
    let host = |u: &url::Url| u.host_str().map(str::to_ascii_lowercase);
    let same_place =
        host(&url) == host(&own) && url.port_or_known_default() == own.port_or_known_default();
    Ok(if same_place { Channel::Own(joined) } else { Channel::Elsewhere(url) })
}

/// A channel URL that must be on `base`'s host and port ([`channel`]; `Ok(None)` for an empty
/// value), as a live start answer's are: go-livepeer's orchestrators build them from their
/// service address. The gateway posts the client's media to these URLs, hands what it reads
/// from them to the client, and deletes them at the end: a channel elsewhere would aim all
/// that at any address the orchestrator names, the gateway's loopback ports included.
pub fn channel_url(raw: &str, base: &str) -> Result<Option<String>, String> {
    match channel(raw, base)? {
        Channel::Missing => Ok(None),
        Channel::Own(url) => Ok(Some(url)),
        Channel::Elsewhere(url) => {
            Err(format!("channel {} is not on {base}", crate::outbound::shown(&url)))
        }
    }
}

/// How long the host names of a BYOC stream's channels are resolved for, all together.
const RESOLVE_WAIT: Duration = Duration::from_secs(5);

/// A BYOC stream's channel, where [`byoc_channels`] allows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ByocChannel {
    /// Its URL.
    pub url: String,
    /// For a host name other than the orchestrator's: the name and the addresses it resolved
    /// to when they were checked. Connections to the channel must go to these only, so that a
    /// name that resolves elsewhere later (DNS rebinding) leads nowhere else.
    pub pin: Option<(String, Vec<SocketAddr>)>,
}

/// A BYOC stream's channels ([`channel`]; `None` for an empty value), in `raws`' order, as
/// the start answer from `peer` (the address it came from, when known) named them.
/// go-livepeer's orchestrators may put these on another host than their service address (the
/// `-liveAITrickleHostForRunner` override: the runner's trickle server, by a public name or,
/// on a LAN, a private address), so a channel elsewhere is taken when every address its host
/// has is public or of the kind of `peer` (loopback for an orchestrator answering from
/// loopback, private for one on a private network), as result downloads are. The kind is the
/// answer's address, never what the orchestrator's name resolves to now, which its owner
/// could make anything; unknown, only public addresses are taken. Host names are resolved
/// here, together and within 5 s in all, and each is pinned to what it resolved to.
pub async fn byoc_channels(
    raws: &[&str],
    base: &str,
    peer: Option<IpAddr>,
) -> Result<Vec<Option<ByocChannel>>, String> {
    let parsed = raws.iter().map(|raw| channel(raw, base)).collect::<Result<Vec<_>, _>>()?;
    let mut hosts: Vec<&url::Url> = Vec::new();
    for channel in &parsed {
        if let Channel::Elsewhere(url) = channel
            && hosts.iter().all(|h| h.host_str() != url.host_str())
        {
            hosts.push(url);
        }
    }
    let pins = if hosts.is_empty() { Vec::new() } else { checked_hosts(&hosts, peer).await? };
    let pin_of = |url: &url::Url| {
        let (host, addrs) = pins.iter().find(|(h, _)| Some(h.as_str()) == url.host_str())?;
        Some((host.clone(), addrs.clone()?))
    };
    let found = parsed.into_iter().map(|c| match c {
        Channel::Missing => None,
        Channel::Own(url) => Some(ByocChannel { url, pin: None }),
        Channel::Elsewhere(url) => Some(ByocChannel { pin: pin_of(&url), url: url.to_string() }),
    });
    Ok(found.collect())
}

/// `hosts` (channel URLs, one per host) checked as [`byoc_channels`] says against `peer`,
/// each with the addresses its name resolved to (`None` for an address).
async fn checked_hosts(
    hosts: &[&url::Url],
    peer: Option<IpAddr>,
) -> Result<Vec<(String, Option<Vec<SocketAddr>>)>, String> {
    let lookups = futures_util::future::join_all(hosts.iter().copied().map(addresses));
    let Ok(found) = tokio::time::timeout(RESOLVE_WAIT, lookups).await else {
        return Err(format!("channel hosts did not resolve within {RESOLVE_WAIT:?}"));
    };
    let orch: Vec<IpAddr> = peer.into_iter().collect();
    let mut checked = Vec::with_capacity(hosts.len());
    for (url, addresses) in hosts.iter().zip(found) {
        let shown = crate::outbound::shown(url);
        let (addrs, named) = addresses.map_err(|e| format!("channel {shown}: {e}"))?;
        if let Some(ip) = addrs.iter().find(|a| !super::reach::reachable(a.ip(), &orch)) {
            let why = "is neither public nor of the orchestrator's kind";
            return Err(format!("channel {shown}: address {} {why}", ip.ip()));
        }
        let host = url.host_str().unwrap_or_default().to_owned();
        // Port 0: the pin is the host's for every channel on it, each URL giving its port.
        let addrs = addrs.into_iter().map(|a| SocketAddr::new(a.ip(), 0)).collect();
        checked.push((host, named.then_some(addrs)));
    }
    Ok(checked)
}

/// `builder`, made to reach each pinned host name at its addresses only (the port is the
/// URL's).
pub fn pinned(
    builder: reqwest::ClientBuilder,
    pins: &[(String, Vec<SocketAddr>)],
) -> reqwest::ClientBuilder {
    pins.iter().fold(builder, |b, (host, addrs)| b.resolve_to_addrs(host, addrs))
}

/// Every address `url`'s host has, and whether it is a name.
async fn addresses(url: &url::Url) -> Result<(Vec<SocketAddr>, bool), String> {
    let host = url.host_str().unwrap_or_default().trim_matches(['[', ']']);
    let port = url.port_or_known_default().unwrap_or(0);
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok((vec![SocketAddr::new(ip, port)], false));
    }
    match tokio::net::lookup_host((host, port)).await {
        Ok(addrs) => {
            let all: Vec<SocketAddr> = addrs.collect();
            if all.is_empty() { Err(format!("{host} has no address")) } else { Ok((all, true)) }
        }
        Err(e) => Err(format!("{host}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_are_on_the_orchestrators_service_address_only() {
        let base = "https://o.example:8935";
        let own = |raw: &str| channel_url(raw, base);
        assert_eq!(own("/ai/trickle/m").unwrap().unwrap(), "https://o.example:8935/ai/trickle/m");
        assert_eq!(own("ai/trickle/m").unwrap().unwrap(), "https://o.example:8935/ai/trickle/m");
        let absolute = "https://O.example:8935/ai/trickle/m-out";
        assert_eq!(own(absolute).unwrap().unwrap(), absolute);
        assert_eq!(own(" ").unwrap(), None);
        for foreign in [
            "https://o.example:9999/ai/trickle/m",
            "https://o.example/ai/trickle/m",
            "http://127.0.0.1:5935/metrics",
            "https://169.254.169.254:8935/latest",
            "https://user:pw@o.example:8935/ai/trickle/m",
            "https://o.example:8935/ai/trickle/m?x=1",
            "https://o.example:8935/ai/trickle/m#f",
            "http://[::1",
        ] {
            let why = own(foreign).unwrap_err();
            assert!(why.contains("https://o.example:8935"), "{foreign}: {why}");
            assert!(!why.contains("pw") && !why.contains("x=1"), "{foreign}: {why}");
        }
    }

    /// The address of `base`, an IP literal: where its start answer came from.
    fn peer(base: &str) -> Option<IpAddr> {
        url::Url::parse(base).ok()?.host_str()?.trim_matches(['[', ']']).parse().ok()
    }

    /// The one channel `raw` of a BYOC stream whose orchestrator is at `base`.
    async fn one(raw: &str, base: &str) -> Result<Option<ByocChannel>, String> {
        Ok(byoc_channels(&[raw], base, peer(base)).await?.pop().flatten())
    }

    #[tokio::test]
    async fn a_byoc_channel_elsewhere_must_be_public_or_of_the_orchestrators_kind() {
        let public = "https://203.0.113.5:8935";
        let runner = "https://198.51.100.7:8443/ai/trickle/s-control";
        let taken = one(runner, public).await.unwrap().unwrap();
        assert_eq!(taken, ByocChannel { url: runner.into(), pin: None });
        for inward in [
            "http://127.0.0.1:5935/metrics",
            "http://169.254.169.254/latest",
            "http://10.0.0.7:9200/index",
            "http://[::1]:5935/metrics",
            // A name is judged by what it resolves to.
            "http://localhost:9000/c",
        ] {
            let why = one(inward, public).await.unwrap_err();
            assert!(
                why.contains("neither public nor of the orchestrator's kind"),
                "{inward}: {why}"
            );
        }
        // On a LAN, the runner's trickle server is another private address; loopback and
        // link-local stay out.
        let lan = "http://10.0.0.5:8935";
        assert!(one("http://10.0.0.6:8935/ai/trickle/s", lan).await.unwrap().is_some());
        assert!(one("http://127.0.0.1:5935/metrics", lan).await.is_err());
        assert!(one("http://169.254.169.254/latest", lan).await.is_err());
        // An orchestrator on loopback (a local test set-up): a name there is pinned to what
        // it resolved to.
        let local = "http://127.0.0.1:8935";
        let named = one("http://localhost:9000/c", local).await.unwrap().unwrap();
        let (host, addrs) = named.pin.expect("a name elsewhere is pinned");
        assert_eq!(host, "localhost");
        assert!(!addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
        assert!(one("http://10.0.0.7:9000/c", local).await.is_err());
        // The kind is the answer's address: an orchestrator whose name resolves inward, but
        // which answered from a public address (or from one not known), gets public only.
        let named_base = "http://localhost:8935";
        let e = byoc_channels(&["http://127.0.0.1:5935/metrics"], named_base, None).await;
        assert!(e.unwrap_err().contains("neither public"));
        let public_peer = Some(IpAddr::from([203, 0, 113, 5]));
        let e = byoc_channels(&["http://127.0.0.1:5935/metrics"], named_base, public_peer).await;
        assert!(e.unwrap_err().contains("neither public"));
        assert!(one("http://198.51.100.7:9000/c?x=1", local).await.is_err());
        // Each value in its place; an empty one is `None`; the own address needs no pin.
        let raws = ["", "/ai/trickle/s", "http://127.0.0.2:1/c"];
        let all = byoc_channels(&raws, local, peer(local)).await;
        let [none, own, other] = <[_; 3]>::try_from(all.unwrap()).unwrap();
        assert_eq!(none, None);
        assert_eq!(own.unwrap(), ByocChannel { url: format!("{local}/ai/trickle/s"), pin: None });
        assert_eq!(other.unwrap().url, "http://127.0.0.2:1/c");
    }

    #[tokio::test]
    async fn a_pinned_name_is_reached_at_its_checked_addresses_only() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut head = [0u8; 1024];
                let _ = socket.read(&mut head).await;
                let _ = socket.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
            }
        });
        let client = |pins: &[(String, Vec<SocketAddr>)]| {
            pinned(reqwest::Client::builder(), pins).build().unwrap()
        };
        let get = |client: reqwest::Client, url: String| async move {
            client.get(url).send().await.map(|r| r.status().as_u16())
        };
        // A name nobody resolves, pinned to where the server is (port 0: the URL's): reached.
        let here = vec![SocketAddr::from(([127, 0, 0, 1], 0))];
        let url = format!("http://rebound.invalid:{port}/c");
        assert_eq!(
            get(client(&[("rebound.invalid".into(), here)]), url.clone()).await.unwrap(),
            200
        );
        assert!(get(client(&[]), url).await.is_err());
        // A name that resolves to the server, pinned elsewhere: not reached there.
        let elsewhere = vec![SocketAddr::from(([127, 0, 0, 2], 0))];
        let url = format!("http://localhost:{port}/c");
        assert!(get(client(&[("localhost".into(), elsewhere)]), url.clone()).await.is_err());
        assert_eq!(get(client(&[]), url).await.unwrap(), 200);
    }
}
