//! The trickle channel URLs of a stream start answer (live and BYOC), and where they may be.

use std::net::IpAddr;
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

/// How long the name of a BYOC channel's host is resolved for.
const RESOLVE_WAIT: Duration = Duration::from_secs(5);

/// A BYOC stream's channel URL ([`channel`]; `Ok(None)` for an empty value). go-livepeer's
/// orchestrators may put these on another host than their service address (the
/// `-liveAITrickleHostForRunner` override, a public name of the runner's trickle server), so a
/// channel elsewhere is taken when every address its host has is public: never loopback,
/// link-local or private, whatever the orchestrator's own address (which its own name could
/// make anything). The name is resolved here, at the start; one that resolves elsewhere later
/// (DNS rebinding) is not caught.
pub async fn byoc_channel_url(raw: &str, base: &str) -> Result<Option<String>, String> {
    let url = match channel(raw, base)? {
        Channel::Missing => return Ok(None),
        Channel::Own(url) => return Ok(Some(url)),
        Channel::Elsewhere(url) => url,
    };
    let shown = crate::outbound::shown(&url);
    let addresses = addresses(&url).await.map_err(|e| format!("channel {shown}: {e}"))?;
    match addresses.iter().find(|&&ip| !super::reach::reachable(ip, &[])) {
        Some(ip) => Err(format!("channel {shown}: address {ip} is not public")),
        None => Ok(Some(url.to_string())),
    }
}

/// Every address `url`'s host has, resolved within [`RESOLVE_WAIT`].
async fn addresses(url: &url::Url) -> Result<Vec<IpAddr>, String> {
    let host = url.host_str().unwrap_or_default().trim_matches(['[', ']']);
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![ip]);
    }
    let port = url.port_or_known_default().unwrap_or(0);
    let lookup = tokio::net::lookup_host((host, port));
    match tokio::time::timeout(RESOLVE_WAIT, lookup).await {
        Ok(Ok(addrs)) => {
            let ips: Vec<IpAddr> = addrs.map(|a| a.ip()).collect();
            if ips.is_empty() { Err(format!("{host} has no address")) } else { Ok(ips) }
        }
        Ok(Err(e)) => Err(format!("{host}: {e}")),
        Err(_) => Err(format!("{host} did not resolve within {RESOLVE_WAIT:?}")),
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

    #[tokio::test]
    async fn a_byoc_channel_elsewhere_must_be_public() {
        let public = "https://203.0.113.5:8935";
        let runner = "https://198.51.100.7:8443/ai/trickle/s-control";
        assert_eq!(byoc_channel_url(runner, public).await.unwrap().unwrap(), runner);
        for inward in [
            "http://127.0.0.1:5935/metrics",
            "http://169.254.169.254/latest",
            "http://10.0.0.7:9200/index",
            "http://[::1]:5935/metrics",
        ] {
            let why = byoc_channel_url(inward, public).await.unwrap_err();
            assert!(why.contains("is not public"), "{inward}: {why}");
        }
        // Even for an orchestrator on loopback: only its own service address is inward.
        let local = "http://127.0.0.1:8935";
        assert!(byoc_channel_url("http://127.0.0.1:8935/c", local).await.unwrap().is_some());
        assert!(byoc_channel_url("http://127.0.0.1:9000/c", local).await.is_err());
        assert!(byoc_channel_url("http://198.51.100.7:9000/c?x=1", local).await.is_err());
    }
}
