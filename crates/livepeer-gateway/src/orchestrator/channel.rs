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

/// A BYOC stream's channels ([`channel`]; `None` for an empty value), in `raws`' order.
/// go-livepeer's orchestrators may put these on another host than their service address (the
/// `-liveAITrickleHostForRunner` override: the runner's trickle server, by a public name or,
/// on a LAN, a private address), so a channel elsewhere is taken when every address its host
/// has is public or of the kind of the orchestrator's own (loopback for one on loopback,
/// private for one on a private network), as result downloads are. Host names, the
/// orchestrator's included, are resolved here, together and within [`RESOLVE_WAIT`] in all,
/// and each channel's name is pinned to what it resolved to.
pub async fn byoc_channels(raws: &[&str], base: &str) -> Result<Vec<Option<ByocChannel>>, String> {
    let parsed = raws.iter().map(|raw| channel(raw, base)).collect::<Result<Vec<_>, _>>()?;
    let mut hosts: Vec<&url::Url> = Vec::new();
    for channel in &parsed {
        if let Channel::Elsewhere(url) = channel
            && hosts.iter().all(|h| h.host_str() != url.host_str())
        {
            hosts.push(url);
        }
    }
    let pins = if hosts.is_empty() { Vec::new() } else { checked_hosts(&hosts, base).await? };
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

/// `hosts` (channel URLs, one per host) checked as [`byoc_channels`] says, each with the
/// addresses its name resolved to (`None` for an address).
async fn checked_hosts(
    hosts: &[&url::Url],
    base: &str,
) -> Result<Vec<(String, Option<Vec<SocketAddr>>)>, String> {
    let own = url::Url::parse(base).map_err(|e| format!("service address {base}: {e}"))?;
    let all = std::iter::once(&own).chain(hosts.iter().copied());
    let lookups = futures_util::future::join_all(all.map(addresses));
    let Ok(mut found) = tokio::time::timeout(RESOLVE_WAIT, lookups).await else {
        return Err(format!("channel hosts did not resolve within {RESOLVE_WAIT:?}"));
    };
    // The start call has just reached the orchestrator: should its name fail now, only
    // public addresses are allowed.
    let orch: Vec<IpAddr> = match found.remove(0) {
        Ok((addrs, _)) => addrs.iter().map(SocketAddr::ip).collect(),
        Err(_) => Vec::new(),
    };
    let mut checked = Vec::with_capacity(hosts.len());
    for (url, addresses) in hosts.iter().zip(found) {
        let shown = crate::outbound::shown(url);
        let (addrs, named) = addresses.map_err(|e| format!("channel {shown}: {e}"))?;
        if let Some(ip) = addrs.iter().find(|a| !super::reach::reachable(a.ip(), &orch)) {
            let why = "is neither public nor of the orchestrator's kind";
            return Err(format!("channel {shown}: address {} {why}", ip.ip()));
        }
        let host = url.host_str().unwrap_or_default().to_owned();
        checked.push((host, named.then_some(addrs)));
    }
    Ok(checked)
}

/// A trickle client with `config`'s settings that reaches each pinned host name at its
/// addresses only (the port is the URL's), or `None` when nothing is pinned. `Err` only when
/// the gateway cannot build a client (its TLS set-up failing).
pub fn pinned_client(
    config: &livepeer_trickle::ClientConfig,
    pins: &[(String, Vec<SocketAddr>)],
) -> Result<Option<reqwest::Client>, String> {
    if pins.is_empty() {
        return Ok(None);
    }
    let pinned = |builder: reqwest::ClientBuilder| {
        pins.iter().fold(builder, |b, (host, addrs)| b.resolve_to_addrs(host, addrs))
    };
    config.client_with(pinned).map(Some).map_err(|e| e.to_string())
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

    /// The one channel `raw` of a BYOC stream whose orchestrator is at `base`.
    async fn one(raw: &str, base: &str) -> Result<Option<ByocChannel>, String> {
        Ok(byoc_channels(&[raw], base).await?.pop().flatten())
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
        assert!(one("http://198.51.100.7:9000/c?x=1", local).await.is_err());
        // Each value in its place; an empty one is `None`; the own address needs no pin.
        let all = byoc_channels(&["", "/ai/trickle/s", "http://127.0.0.2:1/c"], local).await;
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
        let config = livepeer_trickle::ClientConfig::default();
        let get = |client: reqwest::Client, url: String| async move {
            client.get(url).send().await.map(|r| r.status().as_u16())
        };
        assert!(pinned_client(&config, &[]).unwrap().is_none());
        // A name nobody resolves, pinned to where the server is: reached.
        let here = vec![SocketAddr::from(([127, 0, 0, 1], port))];
        let pinned = pinned_client(&config, &[("rebound.invalid".into(), here)]).unwrap().unwrap();
        let url = format!("http://rebound.invalid:{port}/c");
        assert_eq!(get(pinned, url.clone()).await.unwrap(), 200);
        assert!(get(config.client().unwrap(), url).await.is_err());
        // A name that resolves to the server, pinned elsewhere: not reached there.
        let elsewhere = vec![SocketAddr::from(([127, 0, 0, 2], port))];
        let pinned = pinned_client(&config, &[("localhost".into(), elsewhere)]).unwrap().unwrap();
        let url = format!("http://localhost:{port}/c");
        assert!(get(pinned, url.clone()).await.is_err());
        assert_eq!(get(config.client().unwrap(), url).await.unwrap(), 200);
    }
}
