//! Fetching an orchestrator's result files, under the rules that keep an orchestrator from
//! using the gateway as its proxy into the gateway's own network, from serving scripts from
//! the gateway's origin, or from filling its memory (issue 11, items 8 and 9).
//!
//! - Where from: a result URL is `data:`, or `http(s)` to the orchestrator's own origin (its
//!   transcoder URL's host and port; relative URLs resolve against it) or to a host the
//!   operator allows (`--ai-result-allowed-hosts`, object stores).
//! - Which addresses: the host is resolved here, and every address it resolves to must be
//!   public, or loopback, link-local or private only when the orchestrator's own address is of
//!   the same kind (a simulator on 127.0.0.1 serves from 127.0.0.1). Unspecified, multicast and
//!   broadcast addresses never pass. The connection goes to an address that was checked, not
//!   to a second resolution of the name, and redirects are not followed.
//! - What: image, video and audio types are kept; HTML, XML, SVG and scripts are refused (they
//!   would run in the gateway's origin if a browser ever rendered them); any other type is
//!   kept as `application/octet-stream`.
//! - How much: each result is checked against the per-result cap and what the request may
//!   still fetch, by its `Content-Length` before a byte is read and again as it arrives; its
//!   bytes are reserved in the result store first, so concurrent downloads never hold more
//!   than the store's cap.
//!
//! Refusals carry their details for the logs; the client is only told the result was
//! unusable (`ai::call`).
//!
//! Connections are HTTP/1.1 and kept for the next file from the same checked address and
//! host ([`Idle`]): a connection per file would cost a handshake on every media request and
//! leave a socket in `TIME_WAIT` per result under load.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, Method};
use http_body_util::BodyExt as _;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::time::Instant;
use url::Url;

use super::resolve::Resolver;
use super::results::{Full, Reservation, ResultStore};
use crate::orchestrator::h1::{self, Body, Conn, Io};
use crate::orchestrator::reach::reachable;
#[cfg(test)]
use crate::orchestrator::reach::{Reach, reach};

/// Why a result could not be had.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum FetchError {
    /// The orchestrator's doing: where the URL points, its type, its size, a failed download.
    #[error("{0}")]
    Unusable(String),
    /// The gateway's doing: downloads in progress hold the whole result store.
    #[error(transparent)]
    StoreFull(#[from] Full),
    /// The gateway's doing: it had no descriptor or memory to dial with.
    #[error("{0}")]
    Local(String),
}

/// A result URL as errors and logs show it: without its query or fragment (an object store's
/// presigned URL carries its signature there), and at most 200 characters (the answer that
/// carried it may be megabytes long).
fn shown(url: &str) -> String {
    let base = url.split(['?', '#']).next().unwrap_or(url);
    let mut out: String = base.chars().take(200).collect();
    if out.len() < base.len() {
        out.push('…');
    }
    out
}

fn unusable(why: impl Into<String>) -> FetchError {
    FetchError::Unusable(why.into())
}

/// What one request may fetch: where from, how much, and the store that holds it.
#[derive(Debug)]
pub(crate) struct Budget<'a> {
    /// The orchestrator's transcoder URL: its origin, and the base of relative URLs.
    pub orch: Arc<Url>,
    /// The address the orchestrator's answer came from, when known. A result on a loopback,
    /// link-local or private address is the orchestrator's own only if that answer came from
    /// one too; resolving the orchestrator's name again could be answered differently (DNS
    /// rebinding: public for the job, loopback for the download).
    pub orch_peer: Option<std::net::IpAddr>,
    /// Extra hosts allowed (`host` or `host:port`, lower case).
    pub allowed: &'a [String],
    /// Largest single result.
    pub per_result: usize,
    /// Bytes the request may still fetch.
    pub left: usize,
    /// Where downloads reserve their bytes.
    pub store: &'a ResultStore,
}

/// One result file, with the store capacity its bytes hold.
#[derive(Debug)]
pub(crate) struct Fetched<'a> {
    /// The type to serve it as (a media type, or `application/octet-stream`).
    pub content_type: String,
    /// Its bytes.
    pub bytes: Bytes,
    /// The capacity held for them, handed to the store with them.
    pub reservation: Reservation<'a>,
}

/// Downloads result files over connections to the addresses that were checked.
#[derive(Clone)]
pub(crate) struct Fetcher {
    tls: tokio_rustls::TlsConnector,
    connect_timeout: Duration,
    fetch_timeout: Duration,
    /// Per serving thread: a connection is registered with the reactor of the thread that
    /// opened it, and waking another thread's costs a system call.
    idle: crate::lane::Lanes<Idle>,
    /// Result hosts' and orchestrators' addresses, kept briefly.
    resolver: Arc<Resolver>,
    /// Orchestrators' transcoder URLs, parsed ([`Fetcher::origin`]).
    origins: Arc<std::sync::Mutex<Fast<Box<str>, Arc<Url>>>>,
}

/// Parsed transcoder URLs kept at most; all are forgotten when more arrive (the pool's
/// orchestrators, so a handful in practice).
const ORIGINS_KEPT: usize = 1024;

/// A connection's identity: the checked address, the `Host` it was opened for, and TLS.
type ConnKey = (SocketAddr, String, bool);

/// Connections whose last answer was read to its end, by [`ConnKey`], oldest first, with when
/// they went idle. Bounded per key and in idle time; a connection the server closed is skipped.
#[derive(Default)]
struct Idle {
    map: Arc<std::sync::Mutex<IdleMap>>,
    /// A sweeper was started ([`h1::spawn_sweeper`]): by the first connection kept.
    sweeping: std::sync::atomic::AtomicBool,
}

type IdleMap = Fast<ConnKey, VecDeque<(Conn, Instant)>>;

/// A map whose keys are the gateway's own (orchestrators' URLs and addresses, never a
/// client's choice), so foldhash's speed is safe here: SipHash of these keys on every
/// download was about 1,000 instructions of a text-to-image job.
type Fast<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// Closes the idle connections that their server closed or that were idle too long.
fn sweep(map: &mut IdleMap, now: Instant) {
    map.retain(|_, list| {
        list.retain_mut(|c| usable(c, now) && c.0.is_open());
        !list.is_empty()
    });
}

/// Idle connections kept per key, and how long each is kept. As many as the concurrent
/// downloads from one orchestrator that a busy gateway has: with 16, 64 clients of the bench
/// made three downloads in four open a new connection (a `connect` and a TIME_WAIT socket
/// each). The keys are orchestrators and allowed hosts, never a client's choice.
const IDLE_PER_KEY: usize = 128;
const IDLE_FOR: Duration = Duration::from_secs(30);
/// Addresses with idle connections kept at most (each key is an orchestrator's or an allowed
/// host's address, so this bounds them when the pool changes over time).
const IDLE_KEYS: usize = 256;

/// Whether an idle connection has not been idle too long at `now` (whether the server
/// closed it is seen when it is taken: [`Conn::is_open`]).
fn usable((_, since): &(Conn, Instant), now: Instant) -> bool {
    now.saturating_duration_since(*since) < IDLE_FOR
}

/// Drops the oldest connections of `list` while they are unusable. Only the front is looked
/// at: the list is in the order connections went idle, so the stale ones gather there, and a
/// sweep of the whole list (and a clock read per entry) on every download showed in profiles.
fn drop_stale(list: &mut VecDeque<(Conn, Instant)>, now: Instant) {
    while list.front().is_some_and(|c| !usable(c, now)) {
        list.pop_front();
    }
}

impl Idle {
    fn take(&self, key: &ConnKey) -> Option<Conn> {
        let mut map = self.map.lock().ok()?;
        let list = map.get_mut(key)?;
        let now = Instant::now();
        // The most recently idle first: the likeliest to be still open.
        while let Some(mut conn) = list.pop_back() {
            if usable(&conn, now) && conn.0.is_open() {
                return Some(conn.0);
            }
        }
        None
    }

    fn put(&self, key: ConnKey, conn: Conn) {
        use std::sync::atomic::Ordering;
        if !self.sweeping.load(Ordering::Relaxed) && !self.sweeping.swap(true, Ordering::AcqRel) {
            h1::spawn_sweeper(Arc::downgrade(&self.map), sweep);
        }
        let Ok(mut map) = self.map.lock() else { return };
        let now = Instant::now();
        if map.len() >= IDLE_KEYS && !map.contains_key(&key) {
            // Orchestrators come and go and change addresses: forget keys with nothing
            // usable left, and keep no more connections if they are all still in use.
            map.retain(|_, list| {
                list.retain(|c| usable(c, now));
                !list.is_empty()
            });
            if map.len() >= IDLE_KEYS {
                return;
            }
        }
        let list = map.entry(key).or_default();
        drop_stale(list, now);
        if list.len() >= IDLE_PER_KEY {
            list.retain(|c| usable(c, now));
        }
        if list.len() < IDLE_PER_KEY {
            list.push_back((conn, now));
        }
    }
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher").field("fetch_timeout", &self.fetch_timeout).finish()
    }
}

impl Fetcher {
    /// A fetcher accepting self-signed certificates, as calls to orchestrators do.
    pub(crate) fn new(connect_timeout: Duration, fetch_timeout: Duration) -> Result<Self, String> {
        let tls = crate::orchestrator::client::accept_any_tls(vec![b"http/1.1".to_vec()])
            .map_err(|e| e.to_string())?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(tls));
        let idle = crate::lane::Lanes::filled(1, Idle::default);
        let resolver = Arc::default();
        let origins = Arc::default();
        Ok(Self { tls, connect_timeout, fetch_timeout, idle, resolver, origins })
    }

    /// This fetcher with idle connections kept per lane ([`crate::lane`]), for `lanes` lanes.
    pub(crate) fn per_lane(mut self, lanes: usize) -> Self {
        self.idle = crate::lane::Lanes::filled(lanes, Idle::default);
        self
    }

    /// An orchestrator's transcoder URL, parsed: a [`Budget`]'s origin. Kept, since every
    /// result of every job needs it and the same few orchestrators answer them all (parsing
    /// a URL showed in the load test's profile).
    pub(crate) fn origin(&self, transcoder: &str) -> Result<Arc<Url>, url::ParseError> {
        if let Some(url) = self.origins.lock().ok().and_then(|m| m.get(transcoder).cloned()) {
            return Ok(url);
        }
        let url = Arc::new(Url::parse(transcoder)?);
        if let Ok(mut map) = self.origins.lock() {
            if map.len() >= ORIGINS_KEPT {
                map.clear();
            }
            map.insert(transcoder.into(), url.clone());
        }
        Ok(url)
    }

    /// The file behind `src`, a result URL of the answer, within `budget` (which it uses up):
    /// read from the URL itself for a `data:` URL ([`data_url`]), else downloaded.
    pub(crate) async fn fetch<'a>(
        &self,
        src: &str,
        budget: &mut Budget<'a>,
    ) -> Result<Fetched<'a>, FetchError> {
        let fetched = match data_url(src) {
            Some(data) => inline(data, budget)?,
            None => {
                let download = self.download(src, budget);
                tokio::time::timeout(self.fetch_timeout, download).await.map_err(|_| {
                    let src = shown(src);
                    unusable(format!("{src}: no answer within {:?}", self.fetch_timeout))
                })??
            }
        };
        budget.left = budget.left.saturating_sub(fetched.bytes.len());
        Ok(fetched)
    }

    /// [`fetch`](Self::fetch) of a `data:` URL given as its parts, `meta` what came between
    /// `data:` and the comma and `payload` the base64 text after it.
    pub(crate) fn fetch_inline<'a>(
        &self,
        meta: &str,
        payload: &[u8],
        budget: &mut Budget<'a>,
    ) -> Result<Fetched<'a>, FetchError> {
        let fetched = inline_parts(meta, payload, budget)?;
        budget.left = budget.left.saturating_sub(fetched.bytes.len());
        Ok(fetched)
    }

    async fn download<'a>(
        &self,
        src: &str,
        budget: &Budget<'a>,
    ) -> Result<Fetched<'a>, FetchError> {
        // Set only when the URL is not a plain path on the orchestrator's origin.
        let joined: Url;
        let (origin, path) = match own_path(&budget.orch, src) {
            Some(path) => (&*budget.orch, path),
            None => {
                joined =
                    budget.orch.join(src).map_err(|e| unusable(format!("{}: {e}", shown(src))))?;
                if !matches!(joined.scheme(), "http" | "https") {
                    return Err(unusable(format!("{}: not http(s)", shown(joined.as_str()))));
                }
                if !origin_allowed(&joined, &budget.orch, budget.allowed) {
                    let url = shown(joined.as_str());
                    return Err(unusable(format!(
                        "{url}: neither the orchestrator's origin nor allowed"
                    )));
                }
                (&joined, &joined[url::Position::BeforePath..url::Position::AfterQuery])
            }
        };
        // Errors name the URL without its query: never a presigned URL's signature. Made only
        // when there is an error: it is a copy of the URL, on every result's path otherwise.
        let url_s = || {
            let base = &origin[..url::Position::BeforePath];
            shown(&format!("{base}{path}"))
        };
        let orch = (&*budget.orch, budget.orch_peer);
        let addr = checked_address(&self.resolver, origin, orch, url_s).await?;
        let (resp, key) = self.get(origin, path, addr).await.map_err(|e| match e {
            FetchError::Unusable(why) => unusable(format!("{}: {why}", url_s())),
            other => other,
        })?;
        if resp.status().as_u16() != 200 {
            return Err(unusable(format!("{}: status {}", url_s(), resp.status())));
        }
        let declared = resp.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok());
        let content_type = served_type(declared.unwrap_or("application/octet-stream"))
            .ok_or_else(|| unusable(format!("{}: refused type {declared:?}", url_s())))?
            .to_owned();
        let limit = budget.per_result.min(budget.left);
        let length = hyper::body::Body::size_hint(resp.body()).exact();
        let mut body = resp.into_body();
        if let Some(length) = length.filter(|&n| n > limit as u64) {
            return Err(unusable(format!(
                "{}: {length} bytes, more than the {limit} allowed",
                url_s()
            )));
        }
        let reservation = budget.store.reserve(length.unwrap_or(0) as usize)?;
        let (bytes, reservation) =
            read_capped(&mut body, limit, reservation).await.map_err(|e| match e {
                FetchError::Unusable(why) => unusable(format!("{}: {why}", url_s())),
                full => full,
            })?;
        // Read to its end: the connection can carry the next file, unless the answer said
        // otherwise.
        if let Some(conn) = body.into_conn() {
            self.idle.get().put(key, conn);
        }
        Ok(Fetched { content_type, bytes, reservation })
    }

    /// `GET path` (with its query) on `origin` at `addr`, with `origin`'s host as `Host` and
    /// TLS name: over an idle connection to the same address and host when there is one (a
    /// new one if that fails: the server may have closed it meanwhile, and a GET can be sent
    /// again), else a new one. Returns the answer's head and its connection, which may be kept
    /// once the body is read.
    async fn get(
        &self,
        origin: &Url,
        path: &str,
        addr: SocketAddr,
    ) -> Result<(http::Response<Body>, ConnKey), FetchError> {
        // The host and any port other than the scheme's (which the parser leaves out): what
        // `host_str()` and `port()` say, without formatting them together.
        let authority = origin[url::Position::BeforeHost..url::Position::AfterPort].to_owned();
        // `url` percent-encodes what a request line cannot carry; checked all the same, since
        // the head is written as it is.
        if !path.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(unusable("a target a request line cannot carry"));
        }
        let head = h1::request_head(&Method::GET, path, &authority, &HeaderMap::new(), 0);
        let key: ConnKey = (addr, authority, origin.scheme() == "https");
        let kept = self.idle.get().take(&key);
        if let Some(conn) = kept
            && let Ok(resp) = conn.exchange(&head, &[], false).await
        {
            return Ok((resp, key));
        }
        let conn = self.connect(origin, addr).await?;
        let resp = conn.exchange(&head, &[], false).await.map_err(|e| unusable(e.to_string()))?;
        Ok((resp, key))
    }

    /// A new HTTP/1.1 connection to `addr`, in TLS for `https` URLs.
    /// A dial the gateway's own want of descriptors or memory failed is
    /// [`FetchError::Local`].
    async fn connect(&self, url: &Url, addr: SocketAddr) -> Result<Conn, FetchError> {
        let connect = tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr));
        let tcp = connect.await.map_err(|_| unusable("connect timed out"))?;
        let tcp = tcp.map_err(|e| {
            if crate::error::is_local_exhaustion(&e) {
                FetchError::Local(format!("the gateway could not open a connection: {e}"))
            } else {
                unusable(e.to_string())
            }
        })?;
        if url.scheme() == "http" {
            return Ok(Conn::new(Io::Plain(tcp)));
        }
        let host = url.host_str().unwrap_or_default().trim_matches(['[', ']']).to_owned();
        let name = ServerName::try_from(host).map_err(|e| unusable(e.to_string()))?;
        let tls = tokio::time::timeout(self.connect_timeout, self.tls.connect(name, tcp));
        let tls = tls.await.map_err(|_| unusable("TLS handshake timed out"))?;
        Ok(Conn::new(Io::Tls(Box::new(tls.map_err(|e| unusable(e.to_string()))?))))
    }
}

/// Reads `body` up to `limit` bytes, growing `reservation` as it arrives: more is refused
/// at the first byte past the limit, without reading on.
async fn read_capped<'r>(
    body: &mut Body,
    limit: usize,
    mut reservation: Reservation<'r>,
) -> Result<(Bytes, Reservation<'r>), FetchError> {
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut have = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| unusable(crate::error::error_chain(&e)))?;
        let Ok(data) = frame.into_data() else { continue };
        have += data.len();
        if have > limit {
            return Err(unusable(format!("more than the {limit} bytes allowed")));
        }
        if let Some(more) = have.checked_sub(reservation.bytes()).filter(|&n| n > 0) {
            reservation.grow(more)?;
        }
        chunks.push(data);
    }
    // Always copied into an allocation of exactly its size, even when it came in one chunk:
    // a chunk is a slice of the connection's read buffer, and keeping it would keep that
    // whole buffer (up to hundreds of KiB) alive for as long as the result is stored, past
    // what the store counts (measured: the store's 100 MiB held over 200 MiB of memory).
    let mut all = Vec::with_capacity(have);
    for chunk in chunks.drain(..) {
        all.extend_from_slice(&chunk);
    }
    Ok((Bytes::from(all), reservation))
}

/// A `data:` URL's file (`rest` follows `data:`): its type checked, its size within the
/// budget and reserved.
fn inline<'a>(rest: &str, budget: &Budget<'a>) -> Result<Fetched<'a>, FetchError> {
    let (meta, data) = rest.split_once(',').ok_or_else(|| unusable("data: URL without a comma"))?;
    inline_parts(meta, data.as_bytes(), budget)
}

/// [`inline`] of a URL's parts: `meta` before the comma, `data` after it.
fn inline_parts<'a>(
    meta: &str,
    data: &[u8],
    budget: &Budget<'a>,
) -> Result<Fetched<'a>, FetchError> {
    let declared = meta.split(';').next().unwrap_or_default();
    let declared = if declared.is_empty() { "text/plain" } else { declared };
    let content_type =
        served_type(declared).ok_or_else(|| unusable(format!("data: URL of type {declared:?}")))?;
    let limit = budget.per_result.min(budget.left);
    let size = data.len() / 4 * 3;
    if size > limit {
        return Err(unusable(format!("data: URL of {size} bytes, more than the {limit} allowed")));
    }
    let reservation = budget.store.reserve(size)?;
    let bytes = base64_simd::STANDARD
        .decode_to_vec(data)
        .map_err(|e| unusable(format!("data: URL: {e}")))?;
    Ok(Fetched { content_type: content_type.to_owned(), bytes: Bytes::from(bytes), reservation })
}

/// Media types results usually have, which [`served_type`] passes as they are.
const COMMON_TYPES: [&str; 7] =
    ["image/png", "image/jpeg", "image/webp", "video/mp4", "audio/wav", "audio/mpeg", "audio/flac"];

/// What follows `data:` in `src`, when it is a `data:` URL (the scheme in any case); such a
/// result is in the answer, not downloaded.
pub(crate) fn data_url(src: &str) -> Option<&str> {
    src.get(..5).filter(|scheme| scheme.eq_ignore_ascii_case("data:")).map(|_| &src[5..])
}

/// The type a result of `declared` type is kept and served as: its media type (image, video,
/// audio), `application/octet-stream` for anything else harmless, or `None` for a type a
/// browser would run (HTML, XML, SVG, scripts).
pub(crate) fn served_type(declared: &str) -> Option<&str> {
    let essence = declared.split(';').next().unwrap_or_default().trim();
    // The types results come in are answered without `classify`'s scans, which showed in
    // profiles (this runs twice for every result).
    if COMMON_TYPES.iter().any(|t| t.eq_ignore_ascii_case(essence)) {
        return Some(essence);
    }
    classify(essence)
}

/// [`served_type`] of a type without parameters, the long way.
fn classify(essence: &str) -> Option<&str> {
    // Compared without case, and without making a lower-case copy: this runs for every
    // result stored and every result served.
    let has = |needle: &str| {
        essence.as_bytes().windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
    };
    if ["html", "xml", "svg", "script"].iter().any(|s| has(s)) {
        return None;
    }
    let starts = |p: &str| essence.get(..p.len()).is_some_and(|h| h.eq_ignore_ascii_case(p));
    let media = ["image/", "video/", "audio/"].iter().any(|p| starts(p));
    let token = |c: char| c.is_ascii_alphanumeric() || "/.+-_".contains(c);
    if media && essence.matches('/').count() == 1 && essence.chars().all(token) {
        Some(essence)
    } else {
        Some("application/octet-stream")
    }
}

/// Whether `url` is on the orchestrator's origin (host and port) or an allowed host.
fn origin_allowed(url: &Url, orch: &Url, allowed: &[String]) -> bool {
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    let port = url.port_or_known_default();
    let orch_host = orch.host_str().unwrap_or_default().to_ascii_lowercase();
    if host == orch_host && port == orch.port_or_known_default() {
        return true;
    }
    let with_port = port.map(|p| format!("{host}:{p}"));
    allowed.iter().any(|a| *a == host || Some(a) == with_port.as_ref())
}

/// The address of `url` to connect to: every address its host resolves to must pass
/// [`reachable`] (a name that also resolves inward is refused as a whole), against the
/// address the orchestrator's answer came from when known, else its URL's. Errors name the
/// URL as `shown` makes it.
async fn checked_address(
    resolver: &Resolver,
    url: &Url,
    (orch, orch_peer): (&Url, Option<IpAddr>),
    shown: impl Fn() -> String,
) -> Result<SocketAddr, FetchError> {
    let port =
        url.port_or_known_default().ok_or_else(|| unusable(format!("{}: no port", shown())))?;
    let addrs = resolver.resolve(url).await.map_err(|e| unusable(format!("{}: {e}", shown())))?;
    let orch_addrs = match orch_peer {
        Some(ip) => vec![ip],
        None => resolver.resolve(orch).await.map_err(|e| unusable(format!("{orch}: {e}")))?,
    };
    match addrs.iter().find(|&&ip| !reachable(ip, &orch_addrs)) {
        Some(ip) => {
            Err(unusable(format!("{}: address {ip} is not the orchestrator's kind", shown())))
        }
        None => addrs
            .first()
            .map(|&ip| SocketAddr::new(ip, port))
            .ok_or_else(|| unusable(format!("{}: no address", shown()))),
    }
}

/// The path of `src` when it is an absolute URL on `orch`'s origin, spelt as the URL parser
/// would write it: the orchestrator's scheme, host and port exactly as its URL has them, then
/// a path of unreserved characters (`A–Z a–z 0–9 - . _ ~` and `/`) without empty, `.` or `..`
/// segments, and no query or fragment. Such a URL is what orchestrators answer, and joining
/// it to `orch` would give `orch`'s origin followed by that same path; anything else takes
/// the parser's way (`Url::join`, about 7,500 instructions for a result URL, 4–5% of a
/// text-to-image job's).
fn own_path<'s>(orch: &Url, src: &'s str) -> Option<&'s str> {
    if orch.cannot_be_a_base() || !orch.username().is_empty() || orch.password().is_some() {
        return None;
    }
    if !matches!(orch.scheme(), "http" | "https") {
        return None;
    }
    let path = src.strip_prefix(&orch[..url::Position::BeforePath])?;
    let plain = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~');
    let mut segments = path.strip_prefix('/')?.split('/');
    segments.all(|seg| !matches!(seg, "" | "." | "..") && seg.bytes().all(plain)).then_some(path)
}

#[cfg(test)]
mod tests;
