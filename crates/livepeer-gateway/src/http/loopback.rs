//! The admin port's guard against web pages, when it runs without `--admin-token`.
//!
//! Without a token the admin API trusts whatever reaches its loopback listener: only the
//! operator's own machine can. But a web page the operator has open runs on that machine too.
//! It can send a cross-site POST (a form's, or a `fetch` simple enough to need no preflight),
//! and with DNS rebinding (its own name pointed at 127.0.0.1 after the page has loaded) read
//! the answers, a new key's secret among them. Both leave marks a local tool's request does
//! not: a rebound page names its own host in `Host`, and a cross-site request carries the
//! page's `Origin`. So, without a token, every request must name a loopback host (or the
//! listener's own address) and, when it says where it comes from, come from a loopback
//! origin. With a token the layer is not needed: a page cannot supply it. `/healthz` stays
//! open to any prober, as it does with a token.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, Uri, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};

use crate::error::{Error, Kind};
use crate::keys::KeysConfig;

/// `router` refusing requests that name another host or come from another site's page,
/// unless `config` has an admin token; `listen` is the admin listener's bound address.
pub(crate) fn guard(router: Router, config: &KeysConfig, listen: SocketAddr) -> Router {
    if config.admin_token.is_some() {
        return router;
    }
    router.layer(from_fn_with_state(listen, loopback_only))
}

async fn loopback_only(State(listen): State<SocketAddr>, req: Request, next: Next) -> Response {
    // Health answers `ok` and nothing else, to any prober, as with a token.
    if req.extensions().get::<MatchedPath>().is_some_and(|p| p.as_str() == "/healthz") {
        return next.run(req).await;
    }
    match check(req.headers(), req.uri(), listen) {
        Ok(()) => next.run(req).await,
        Err(message) => Error::new(Kind::Forbidden, message).into_response(),
    }
}

/// Why a request to the token-less admin API is refused, if it is.
fn check(headers: &HeaderMap, uri: &Uri, listen: SocketAddr) -> Result<(), String> {
    // HTTP/1.1 names the host in `Host`, HTTP/2 in `:authority`, which hyper puts in the
    // URI. A request naming none (HTTP/1.0, an in-process call) cannot come from a browser,
    // which always sends `Host`.
    let hosts = headers.get_all(header::HOST).iter().map(|v| v.to_str().unwrap_or_default());
    for host in hosts.chain(uri.authority().map(|a| a.as_str())) {
        if !is_local_authority(host, listen) {
            return Err(format!(
                "the admin API without --admin-token answers only requests to 127.0.0.1, \
                 [::1], localhost or {listen}, not to host {host:?}: set --admin-token to \
                 reach it under another name"
            ));
        }
    }
    for origin in headers.get_all(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or_default();
        if !is_local_origin(origin, listen) {
            return Err(format!(
                "the admin API without --admin-token refuses requests sent by web pages of \
                 other sites (Origin {origin:?})"
            ));
        }
    }
    Ok(())
}

/// Whether `authority` (`host[:port]`) names a loopback host (`localhost`, with or without
/// its final dot, or any loopback address) at any port, or is exactly the listener's address.
fn is_local_authority(authority: &str, listen: SocketAddr) -> bool {
    if authority.parse::<SocketAddr>().is_ok_and(|a| a == listen) {
        return true;
    }
    // Names only, no resolving: a rebinding attack's whole point is a name that resolves
    // to loopback.
    host_of(authority).is_some_and(|host| {
        let host = host.strip_suffix('.').unwrap_or(host);
        let ip = host.parse::<std::net::IpAddr>().ok().map(|ip| ip.to_canonical());
        host.eq_ignore_ascii_case("localhost") || ip.is_some_and(|ip| ip.is_loopback())
    })
}

/// Whether `origin` (`scheme://host[:port]`) is a page served from a loopback host.
/// `null` (a sandboxed or local file's page) is not.
fn is_local_origin(origin: &str, listen: SocketAddr) -> bool {
    let authority = origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://"));
    authority.is_some_and(|a| is_local_authority(a, listen))
}

/// The host of `authority`, an IPv6 address without its brackets; `None` when what follows
/// the host is not a port.
fn host_of(authority: &str) -> Option<&str> {
    let (host, rest) = match authority.strip_prefix('[') {
        Some(bracketed) => bracketed.split_once(']')?,
        None => authority.split_at(authority.find(':').unwrap_or(authority.len())),
    };
    let port_ok = match rest.strip_prefix(':') {
        Some(port) => port.bytes().all(|b| b.is_ascii_digit()),
        None => rest.is_empty(),
    };
    port_ok.then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn listen() -> SocketAddr {
        "127.0.0.2:5935".parse().unwrap()
    }

    fn with(name: header::HeaderName, value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn loopback_hosts_at_any_port_and_the_listener_pass() {
        let uri = Uri::from_static("/keys");
        for host in [
            "127.0.0.1",
            "127.0.0.1:5935",
            "localhost:1",
            "LocalHost",
            "[::1]",
            "[::1]:8080",
            "127.0.0.2:5935",
            "127.0.0.2:80",
            "localhost.:5935",
            "[::ffff:127.0.0.1]",
            "[0:0:0:0:0:0:0:1]:1",
        ] {
            assert_eq!(check(&with(header::HOST, host), &uri, listen()), Ok(()), "{host}");
        }
        assert_eq!(check(&HeaderMap::new(), &uri, listen()), Ok(()), "no host named");
    }

    #[test]
    fn other_hosts_are_refused() {
        let uri = Uri::from_static("/keys");
        for host in [
            "evil.example",
            "evil.example:5935",
            "localhost.evil.example",
            "127.0.0.1.nip.io:5935",
            "10.0.0.1",
            "[::2]",
            "user@127.0.0.1",
            "127.0.0.1:x",
            "::1",
            "0.0.0.0:5935",
        ] {
            assert!(check(&with(header::HOST, host), &uri, listen()).is_err(), "{host}");
        }
        // HTTP/2's `:authority`, in the URI.
        let h2 = Uri::from_static("http://evil.example:5935/keys");
        assert!(check(&HeaderMap::new(), &h2, listen()).is_err());
        let h2 = Uri::from_static("http://localhost:5935/keys");
        assert_eq!(check(&HeaderMap::new(), &h2, listen()), Ok(()));
    }

    #[test]
    fn only_loopback_origins_pass() {
        let uri = Uri::from_static("/keys");
        for origin in ["http://127.0.0.1:5935", "http://localhost:3000", "https://[::1]"] {
            let headers = with(header::ORIGIN, origin);
            assert_eq!(check(&headers, &uri, listen()), Ok(()), "{origin}");
        }
        for origin in [
            "https://evil.example",
            "null",
            "http://127.0.0.1.evil.example",
            "file://",
            "http://127.0.0.1/path",
        ] {
            let mut headers = with(header::ORIGIN, origin);
            headers.insert(header::HOST, HeaderValue::from_static("127.0.0.1:5935"));
            assert!(check(&headers, &uri, listen()).is_err(), "{origin}");
        }
    }
}
