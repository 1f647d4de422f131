//! The HTTP client for calls to orchestrators' AI endpoints and result files.
//!
//! It is the gateway's own HTTP/1.1 connections (`h1`), kept per serving thread for `http://`
//! orchestrators (`h1pool`), and hyper_util's pooling client with our own connector for the
//! rest; not a general-purpose client: the request path through the gateway is dominated by
//! per-request overhead (the load test's profile put a third of the gateway's CPU in reqwest's
//! layers: URL parsing, redirect and retry policy, its body wrapper), and an orchestrator call
//! needs none of that. Orchestrators serve self-signed certificates, which are accepted as
//! go-livepeer accepts them (handshake signatures are still checked).
//!
//! The HTTP version follows what the orchestrator speaks, as Go's `http.Client` (which
//! go-livepeer's gateway uses) does: `https://` orchestrators are offered `h2` and
//! `http/1.1` by ALPN and spoken to in whichever they pick (HTTP/2: one multiplexed
//! connection; HTTP/1.1: a pool), and `http://` ones get HTTP/1.1, which any HTTP server
//! speaks. HTTP/2 with prior knowledge (h2c) to `http://` orchestrators is the operator's
//! choice ([`OrchHttpVersion::H2c`]): an HTTP/1.1-only server answers its preface with
//! something that is not an HTTP/2 frame, and every call would fail.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

use super::h1::Io;
use super::h1pool::{H1Pool, SendError};
use crate::error::error_chain;

/// Why an HTTP exchange with an orchestrator failed. Every variant but [`Self::Local`] is the
/// orchestrator's or the network's doing; whether a retry is safe is the caller's call
/// (nothing reached the client when these are returned).
#[derive(Debug, Clone, thiserror::Error)]
pub enum HttpError {
    /// The URL is not one we can call.
    #[error("bad url {0}")]
    BadUrl(String),
    /// The exchange failed once a connection was made (writing, reading, or HTTP's own
    /// handshake): the request may have reached the orchestrator.
    #[error("{0}")]
    Transport(String),
    /// The body was larger than allowed.
    #[error("answer larger than {0} bytes")]
    TooLarge(usize),
    /// The orchestrator reset this exchange's HTTP/2 stream, or broke the stream's rules so
    /// that the gateway reset it, over a connection that still works: a failure of this call
    /// alone, not of the orchestrator's address (go-livepeer's server resets a stream whose
    /// handler failed, where over HTTP/1.1 it would close the connection).
    #[error("stream reset: {0}")]
    Reset(String),
    /// The orchestrator refused the request's HTTP/2 stream (`REFUSED_STREAM`) before any
    /// answer, each time it was sent: by RFC 9113 §8.7 it did no processing of it, so it saw
    /// neither the job nor its payment. It refused load, as a 503 does.
    #[error("stream refused: {0}")]
    Refused(String),
    /// No connection could be opened because the gateway itself ran out of descriptors or
    /// memory: nothing was sent, and the orchestrator is not to blame.
    #[error("the gateway could not open a connection: {0}")]
    Local(String),
    /// No connection could be made to the orchestrator's address: refused, unreachable, not
    /// made within the connect deadline, or its TLS handshake failed. Nothing of the request
    /// was sent, so the orchestrator saw neither the job nor its payment; the address is at
    /// fault, as for [`Self::Transport`].
    #[error("{0}")]
    Unreachable(String),
}

/// Which HTTP versions are spoken to orchestrators (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OrchHttpVersion {
    /// HTTP/1.1 to `http://` orchestrators; `https://` ones pick HTTP/2 or HTTP/1.1 by ALPN.
    #[default]
    Negotiate,
    /// As [`Self::Negotiate`], but HTTP/2 with prior knowledge (h2c) to `http://` ones.
    H2c,
    /// HTTP/1.1 to every orchestrator; ALPN offers `http/1.1` only.
    Http1,
}

/// The client. Cheap to clone; clones share connections.
#[derive(Debug, Clone)]
pub struct OrchHttp {
    /// Every call, except `http://` ones when `h2c` is set.
    client: Client<Connector, Full<Bytes>>,
    /// `http://` calls with [`OrchHttpVersion::H2c`]. A client of its own because hyper's
    /// HTTP/2-only mode is per client, and it is that mode which makes concurrent first calls
    /// wait for one connection instead of each dialling its own.
    h2c: Option<Client<Connector, Full<Bytes>>>,
    /// Calls whose request body streams (BYOC uploads), over connections of their own.
    streaming: Client<Connector, StreamBody>,
    /// `http://` calls over HTTP/1.1 (every setting but h2c): this thread's own connections.
    plain: Option<H1Pool>,
    /// Deadline for dialling a new `plain` connection.
    connect_timeout: Duration,
}

/// A request body that streams: its chunks as they come, or the error that ends it.
pub type StreamBody =
    http_body_util::combinators::UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// An orchestrator's answer body: read by the gateway's own HTTP/1.1 connection
/// ([`super::h1`]) for `http://` calls, by hyper's for the rest.
#[derive(Debug)]
pub enum OrchBody {
    /// Over hyper's client (TLS, h2c, streamed uploads).
    Hyper(Incoming),
    /// Over a kept HTTP/1.1 connection of the gateway's own.
    H1(super::h1::Body),
}

/// The address a hyper connection reached, set in each of its answers' extensions.
#[derive(Debug, Clone, Copy)]
struct PeerAddr(std::net::IpAddr);

/// The address `answer` came from, when known: whether an address a result is to be fetched
/// from is the orchestrator's own is judged by it, not by resolving its name again.
pub fn answer_peer(answer: &http::Response<OrchBody>) -> Option<std::net::IpAddr> {
    match answer.body() {
        OrchBody::H1(body) => body.peer(),
        OrchBody::Hyper(_) => answer.extensions().get::<PeerAddr>().map(|p| p.0),
    }
}

/// Why an orchestrator's answer body could not be read to its end.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// From hyper's client.
    #[error(transparent)]
    Hyper(#[from] hyper::Error),
    /// From the gateway's own HTTP/1.1 connection.
    #[error(transparent)]
    H1(#[from] super::h1::BodyError),
}

impl hyper::body::Body for OrchBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, BodyError>>> {
        // Both variants are `Unpin`.
        match self.get_mut() {
            Self::Hyper(b) => Pin::new(b).poll_frame(cx).map(|f| f.map(|f| f.map_err(Into::into))),
            Self::H1(b) => Pin::new(b).poll_frame(cx).map(|f| f.map(|f| f.map_err(Into::into))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Hyper(b) => b.is_end_stream(),
            Self::H1(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        match self {
            Self::Hyper(b) => b.size_hint(),
            Self::H1(b) => b.size_hint(),
        }
    }
}

impl OrchHttp {
    /// A client with a connect deadline, speaking `version` to orchestrators.
    pub fn new(connect_timeout: Duration, version: OrchHttpVersion) -> Result<Self, String> {
        let alpn: Vec<Vec<u8>> = match version {
            OrchHttpVersion::Http1 => vec![b"http/1.1".to_vec()],
            OrchHttpVersion::Negotiate | OrchHttpVersion::H2c => {
                vec![b"h2".to_vec(), b"http/1.1".to_vec()]
            }
        };
        let tls = super::client::accept_any_tls(alpn).map_err(|e| e.to_string())?;
        let connector = Connector {
            tls: tokio_rustls::TlsConnector::from(Arc::new(tls)),
            timeout: connect_timeout,
        };
        let h2c = (version == OrchHttpVersion::H2c).then(|| pooled(connector.clone(), true));
        let streaming = pooled(connector.clone(), version == OrchHttpVersion::H2c);
        let plain = (version != OrchHttpVersion::H2c).then(H1Pool::default);
        Ok(Self { client: pooled(connector, false), h2c, streaming, plain, connect_timeout })
    }

    /// Sends one request and returns the answer's head; the body streams as it is read.
    pub async fn send(
        &self,
        mut req: http::Request<Full<Bytes>>,
    ) -> Result<http::Response<OrchBody>, HttpError> {
        mark_hop(req.headers_mut());
        let plain = req.uri().scheme() == Some(&http::uri::Scheme::HTTP);
        if let (true, Some(pool)) = (plain, &self.plain) {
            let timeout = self.connect_timeout;
            // Boxed: the exchange's state (request, URI, hyper's send future) would otherwise
            // be carried by every request's future, which is moved as it is set up.
            let sent = Box::pin(pool.send(req, |uri| dial_tcp(uri, timeout)));
            return match sent.await {
                Ok(resp) => Ok(resp.map(OrchBody::H1)),
                Err(SendError::BadUrl(why)) => Err(HttpError::BadUrl(why)),
                Err(SendError::Transport(why)) => Err(HttpError::Transport(why)),
                Err(SendError::Local(why)) => Err(HttpError::Local(why)),
                Err(SendError::Unreachable(why)) => Err(HttpError::Unreachable(why)),
            };
        }
        let client = match &self.h2c {
            Some(h2c) if plain => h2c,
            _ => &self.client,
        };
        // hyper's client dials and writes out of sight: handed over counts as sent.
        super::dispatched::mark(req.extensions());
        // Boxed, as above: the resends' state would otherwise be carried by every request's
        // future.
        Box::pin(send_resending(client, req)).await
    }

    /// Sends one request whose body streams, and returns the answer's head. A refused stream
    /// ([`HttpError::Refused`]) is not sent again here: the body may not be replayable, which
    /// only the caller knows.
    pub async fn send_stream(
        &self,
        mut req: http::Request<StreamBody>,
    ) -> Result<http::Response<OrchBody>, HttpError> {
        mark_hop(req.headers_mut());
        match self.streaming.request(req).await {
            Ok(resp) => Ok(resp.map(OrchBody::Hyper)),
            Err(e) if unprocessed(&e) == Some(REFUSED) => Err(HttpError::Refused(error_chain(&e))),
            Err(e) => Err(hyper_error(e)),
        }
    }

    /// `GET url`.
    pub async fn get(&self, url: &str) -> Result<http::Response<OrchBody>, HttpError> {
        let uri: http::Uri = url.parse().map_err(|_| HttpError::BadUrl(url.to_owned()))?;
        let req = http::Request::get(uri)
            .body(Full::default())
            .map_err(|e| HttpError::BadUrl(format!("{url}: {e}")))?;
        self.send(req).await
    }
}

/// [`livepeer_proto::headers::GATEWAY_HOP`], as sent.
pub const GATEWAY_HOP: http::HeaderName = http::HeaderName::from_static("livepeer-gateway-hop");

/// Marks a request as the gateway's, so that a gateway it reaches refuses it (see
/// [`GATEWAY_HOP`]).
pub fn mark_hop(headers: &mut http::HeaderMap) {
    headers.insert(GATEWAY_HOP, http::HeaderValue::from_static("1"));
}

/// The headers every other client of orchestrators (live video's and BYOC streams' `reqwest`
/// ones) sends by default: [`GATEWAY_HOP`].
pub fn hop_headers() -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    mark_hop(&mut headers);
    headers
}

/// What a failed call of hyper's client was: a dial the gateway's own exhaustion failed is
/// [`HttpError::Local`], any other failed dial [`HttpError::Unreachable`]; the rest are the
/// transport's.
fn hyper_error(e: hyper_util::client::legacy::Error) -> HttpError {
    match e.is_connect() {
        true if crate::error::is_local_exhaustion(&e) => HttpError::Local(error_chain(&e)),
        true => HttpError::Unreachable(error_chain(&e)),
        false => broken(&e),
    }
}

/// Sends `req` over hyper's `client`. A request the orchestrator did not process (see
/// [`unprocessed`]) goes again, the very same request (its payment too, which the
/// orchestrator never received), on a new stream or, past a GOAWAY, a new connection: as Go's
/// HTTP/2 transport (go-livepeer's gateway) resends a body it can replay. The body is in
/// memory, so a copy costs a header map.
async fn send_resending(
    client: &Client<Connector, Full<Bytes>>,
    mut req: http::Request<Full<Bytes>>,
) -> Result<http::Response<OrchBody>, HttpError> {
    let mut resends = REFUSED_RESENDS;
    loop {
        let copy = (resends > 0).then(|| req.clone());
        match client.request(req).await {
            Ok(resp) => return Ok(resp.map(OrchBody::Hyper)),
            Err(e) => match (unprocessed(&e), copy) {
                (Some(why), Some(copy)) => {
                    tracing::debug!(uri = %copy.uri(), why, "not processed; sending it again");
                    resend_pause(REFUSED_RESENDS - resends).await;
                    resends -= 1;
                    req = copy;
                }
                (Some(REFUSED), None) => return Err(HttpError::Refused(error_chain(&e))),
                // A connection that keeps going away is its address's failure, as before.
                _ => return Err(hyper_error(e)),
            },
        }
    }
}

/// How many times a request whose HTTP/2 stream was refused is sent again to the same
/// orchestrator before the refusal stands (Go's transport resends up to seven times, backing
/// off from the second; here the attempt's deadline is the orchestrator's to answer in, and
/// another orchestrator is the better use of it).
pub const REFUSED_RESENDS: u32 = 2;

/// The pause before the second resend of a refused request, doubled for each one after.
/// The first resend goes at once, as Go's transport sends its first again (its pauses then
/// start at a second, within an unbounded retry budget; here the attempt's deadline bounds
/// the wait, and two resends are all there are): an orchestrator refusing streams for want
/// of room gets a moment to free one, rather than the same request back within the same
/// round trip.
pub const RESEND_BACKOFF: Duration = Duration::from_millis(50);

/// Waits before resend number `n` (0 for the first): nothing, then [`RESEND_BACKOFF`]
/// doubled per resend, plus up to a tenth more at random (Go's jitter), so that the refused
/// requests of many jobs do not come back in step.
pub(crate) async fn resend_pause(n: u32) {
    let Some(doublings) = n.checked_sub(1) else { return };
    let base = RESEND_BACKOFF.saturating_mul(1 << doublings.min(8));
    let jitter = base * rand::random_range(0..=100u32) / 1000;
    tokio::time::sleep(base + jitter).await;
}

/// [`unprocessed`]'s word for a stream reset with `REFUSED_STREAM`.
const REFUSED: &str = "stream refused";

/// Why a request that failed before its answer's head was not processed by the orchestrator,
/// if it was not: its stream reset with `REFUSED_STREAM` (RFC 9113 §8.7), or the connection's
/// GOAWAY (RFC 9113 §6.8). h2 gives a stream the peer's GOAWAY as its error only when the
/// stream is above the frame's last stream id, or was never opened because the connection
/// was going away; a stream the orchestrator took and then lost with its connection fails
/// with an I/O error instead, which is not resent. Only what the peer sent counts; a refusal
/// after an answer began is a reset answer ([`broken`]).
fn unprocessed(e: &hyper_util::client::legacy::Error) -> Option<&'static str> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = next {
        if let Some(h2) = err.downcast_ref::<h2::Error>() {
            let refused = h2.is_reset() && h2.reason() == Some(h2::Reason::REFUSED_STREAM);
            return match () {
                () if !h2.is_remote() => None,
                () if refused => Some(REFUSED),
                () if h2.is_go_away() => Some("connection going away"),
                () => None,
            };
        }
        next = err.source();
    }
    None
}

/// What an exchange that broke was: [`HttpError::Reset`] when an HTTP/2 stream was reset (the
/// connection lives on), [`HttpError::Transport`] otherwise.
fn broken(e: &(dyn std::error::Error + 'static)) -> HttpError {
    let mut next = Some(e);
    while let Some(err) = next {
        if let Some(h2) = err.downcast_ref::<h2::Error>() {
            if h2.is_reset() {
                return HttpError::Reset(error_chain(e));
            }
            break;
        }
        next = err.source();
    }
    HttpError::Transport(error_chain(e))
}

/// A pooling client over `connector`: HTTP/2 only with `http2_only`, otherwise HTTP/1.1 unless
/// the connection negotiated `h2` by ALPN.
fn pooled<B>(connector: Connector, http2_only: bool) -> Client<Connector, B>
where
    B: hyper::body::Body + Send + 'static + Unpin,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .http2_only(http2_only)
        .http2_max_header_list_size(super::client::MAX_HEADER_LIST)
        // Without pings a dead orchestrator's h2 connection would be found only by the next
        // job's timeout.
        .http2_keep_alive_interval(Duration::from_secs(30))
        .http2_keep_alive_timeout(Duration::from_secs(10))
        .build(connector)
}

/// Reads a whole body, refusing more than `limit` bytes.
pub async fn read_body(mut body: OrchBody, limit: usize) -> Result<Bytes, HttpError> {
    let mut first: Option<Bytes> = None;
    let mut rest: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| broken(&e))?;
        let Ok(data) = frame.into_data() else { continue };
        let have = first.as_ref().map_or(0, Bytes::len) + rest.len();
        if have + data.len() > limit {
            return Err(HttpError::TooLarge(limit));
        }
        // Small answers arrive in one frame: keep it as is rather than copying it. From the
        // second frame on, everything is gathered in `rest`.
        if first.is_none() && rest.is_empty() {
            first = Some(data);
        } else {
            if let Some(f) = first.take() {
                rest.extend_from_slice(&f);
            }
            rest.extend_from_slice(&data);
        }
    }
    Ok(if rest.is_empty() { first.unwrap_or_default() } else { Bytes::from(rest) })
}

/// Dials TCP, then TLS for `https://`, within the connect deadline.
#[derive(Clone)]
struct Connector {
    tls: tokio_rustls::TlsConnector,
    timeout: Duration,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector").field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

type ConnectFuture =
    Pin<Box<dyn std::future::Future<Output = Result<Conn, std::io::Error>> + Send>>;

impl tower::Service<http::Uri> for Connector {
    type Response = Conn;
    type Error = std::io::Error;
    type Future = ConnectFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let invalid = |what: &str| {
                std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{what}: {uri}"))
            };
            let tls = match uri.scheme_str() {
                Some("https") => true,
                Some("http") => false,
                _ => return Err(invalid("unsupported scheme")),
            };
            if !tls {
                return dial_plain(uri, this.timeout).await;
            }
            let host = uri.host().ok_or_else(|| invalid("no host"))?;
            let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
            let port = uri.port_u16().unwrap_or(443);
            let dial = async {
                let tcp = TcpStream::connect((host.as_str(), port)).await?;
                tcp.set_nodelay(true)?;
                let name = ServerName::try_from(host.clone())
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
                let stream = this.tls.connect(name, tcp).await?;
                Ok(Conn(TokioIo::new(Io::Tls(Box::new(stream)))))
            };
            tokio::time::timeout(this.timeout, dial).await.map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("connect timed out after {:?}", this.timeout),
                )
            })?
        })
    }
}

/// Dials `uri`'s host over TCP, within `timeout`, for hyper.
async fn dial_plain(uri: http::Uri, timeout: Duration) -> Result<Conn, std::io::Error> {
    Ok(Conn(TokioIo::new(Io::Plain(dial_tcp(uri, timeout).await?))))
}

/// Dials `uri`'s host over TCP, within `timeout`.
async fn dial_tcp(uri: http::Uri, timeout: Duration) -> Result<TcpStream, std::io::Error> {
    let host = uri.host().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("no host: {uri}"))
    })?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(80);
    let dial = async {
        let tcp = TcpStream::connect((host, port)).await?;
        tcp.set_nodelay(true)?;
        Ok(tcp)
    };
    tokio::time::timeout(timeout, dial).await.map_err(|_| {
        let why = format!("connect timed out after {timeout:?}");
        std::io::Error::new(std::io::ErrorKind::TimedOut, why)
    })?
}

/// A connection to an orchestrator, plain or TLS, as hyper's client drives it: the same
/// byte stream as the gateway's own HTTP/1.1 connections ([`Io`]), seen through hyper's I/O
/// traits.
#[derive(Debug)]
struct Conn(TokioIo<Io>);

impl Connection for Conn {
    /// Reports ALPN `h2`, which is how the client knows to speak HTTP/2 on a TLS connection
    /// (anything else, or no ALPN, is HTTP/1.1).
    fn connected(&self) -> Connected {
        let io = self.0.inner();
        let connected = match io {
            Io::Tls(s) if s.get_ref().1.alpn_protocol() == Some(b"h2") => {
                Connected::new().negotiated_h2()
            }
            _ => Connected::new(),
        };
        match io.peer() {
            Some(ip) => connected.extra(PeerAddr(ip)),
            None => connected,
        }
    }
}

// `TokioIo<Io>` is `Unpin`, so each call can re-pin it.
impl hyper::rt::Read for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Version;
    use livepeer_sim::{Sim, SimConfig};

    #[tokio::test(start_paused = true)]
    async fn resends_after_the_first_pause_doubling_with_a_tenth_of_jitter() {
        for (n, least) in [(0, Duration::ZERO), (1, RESEND_BACKOFF), (2, RESEND_BACKOFF * 2)] {
            for _ in 0..20 {
                let at = tokio::time::Instant::now();
                resend_pause(n).await;
                let waited = at.elapsed();
                assert!(waited >= least && waited <= least + least / 10, "{n}: {waited:?}");
            }
        }
    }

    const ALL: [OrchHttpVersion; 3] =
        [OrchHttpVersion::Negotiate, OrchHttpVersion::H2c, OrchHttpVersion::Http1];

    /// A body of three chunks, from a real server: the limit counts each byte once.
    #[tokio::test]
    async fn bodies_are_gathered_across_frames_within_the_limit() {
        let app = axum::Router::new().route(
            "/",
            axum::routing::get(|| async {
                let chunks = ["abc", "defg", "hi"].map(|c| Ok::<_, std::io::Error>(Bytes::from(c)));
                axum::body::Body::from_stream(futures_util::stream::iter(chunks))
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let url = format!("http://{addr}/");
        for version in ALL {
            let client = OrchHttp::new(Duration::from_secs(2), version).unwrap();
            let body = client.get(&url).await.unwrap().into_body();
            assert_eq!(read_body(body, 9).await.unwrap(), Bytes::from_static(b"abcdefghi"));
            let body = client.get(&url).await.unwrap().into_body();
            assert!(matches!(read_body(body, 8).await, Err(HttpError::TooLarge(8))));
        }
        let client = OrchHttp::new(Duration::from_secs(2), OrchHttpVersion::default()).unwrap();
        // No connection is made to a scheme the connector does not speak: nothing is sent.
        assert!(matches!(client.get("ftp://x/").await, Err(HttpError::Unreachable(_))));
    }

    /// The version each setting speaks, to `url`.
    async fn spoken(version: OrchHttpVersion, url: &str) -> Result<Version, HttpError> {
        let client = OrchHttp::new(Duration::from_secs(2), version).unwrap();
        let resp = client.get(url).await?;
        assert_eq!(resp.status(), 200, "{version:?} {url}");
        Ok(resp.version())
    }

    /// Servers that speak both versions: in clear, the setting decides; over TLS, ALPN picks
    /// HTTP/2 unless HTTP/1.1 is all that is offered.
    #[tokio::test]
    async fn servers_that_speak_both_get_what_the_setting_and_alpn_choose() {
        let app = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let plain = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let sim = Sim::start(SimConfig { tls: true, ..SimConfig::default() }).await.unwrap();
        let tls = format!("{}/healthz", sim.url());
        let expected = [
            (OrchHttpVersion::Negotiate, &plain, Version::HTTP_11),
            (OrchHttpVersion::H2c, &plain, Version::HTTP_2),
            (OrchHttpVersion::Http1, &plain, Version::HTTP_11),
            (OrchHttpVersion::Negotiate, &tls, Version::HTTP_2),
            (OrchHttpVersion::H2c, &tls, Version::HTTP_2),
            (OrchHttpVersion::Http1, &tls, Version::HTTP_11),
        ];
        for (version, url, want) in expected {
            assert_eq!(spoken(version, url).await.unwrap(), want, "{version:?} {url}");
        }
    }

    /// A bare HTTP/1.1 server (hyper's HTTP/1 server; it answers nothing else).
    async fn http1_server() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let answer = hyper::service::service_fn(|_| async {
                    Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                        Bytes::from_static(b"ok"),
                    )))
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), answer);
                tokio::spawn(conn);
            }
        });
        url
    }

    /// HTTP/1.1-only servers, in clear and over TLS (ALPN `http/1.1` only): the default and
    /// `Http1` speak HTTP/1.1 to both; h2c, asked for, fails in clear (which is why it is not
    /// the default) and changes nothing over TLS.
    #[tokio::test]
    async fn http1_only_servers_get_http1_unless_h2c_is_forced_on_them() {
        let plain = http1_server().await;
        let config = SimConfig { tls: true, ai_http1_only: true, ..SimConfig::default() };
        let sim = Sim::start(config).await.unwrap();
        let tls = format!("{}/healthz", sim.service_url());
        for url in [&plain, &tls] {
            for version in [OrchHttpVersion::Negotiate, OrchHttpVersion::Http1] {
                assert_eq!(spoken(version, url).await.unwrap(), Version::HTTP_11, "{version:?}");
            }
        }
        assert_eq!(spoken(OrchHttpVersion::H2c, &tls).await.unwrap(), Version::HTTP_11);
        let forced = spoken(OrchHttpVersion::H2c, &plain).await;
        assert!(matches!(forced, Err(HttpError::Transport(_))), "{forced:?}");
    }
}

#[cfg(test)]
mod exhaustion_tests {
    use super::*;
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

    /// With no descriptor left, a dial fails as the gateway's own shortage on every path
    /// (the gateway's HTTP/1.1 pool, hyper's client for TLS and for h2c); a dial that is merely
    /// refused is the orchestrator's address's ([`HttpError::Unreachable`]).
    #[test]
    fn a_dial_without_descriptors_is_the_gateways_shortage() {
        let name = "orchestrator::http::exhaustion_tests::a_dial_without_descriptors_is_the_gateways_shortage";
        if crate::alone::run_here(name) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
            runtime.unwrap().block_on(dials_without_descriptors());
        }
    }

    async fn dials_without_descriptors() {
        // Nothing listens on port 1, so a dial that gets as far as connecting is refused.
        let urls = ["http://127.0.0.1:1/x", "https://127.0.0.1:1/x"];
        let clients = [
            OrchHttp::new(Duration::from_secs(2), OrchHttpVersion::Negotiate).unwrap(),
            OrchHttp::new(Duration::from_secs(2), OrchHttpVersion::H2c).unwrap(),
        ];
        for client in &clients {
            for url in urls {
                let e = client.get(url).await.unwrap_err();
                assert!(matches!(e, HttpError::Unreachable(_)), "{url}: {e:?}");
            }
        }
        let before = getrlimit(Resource::Nofile);
        let open = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
        let low = Rlimit { current: Some(open + 64), maximum: before.maximum };
        setrlimit(Resource::Nofile, low).unwrap();
        let mut held = Vec::new();
        while let Ok(f) = std::fs::File::open("/dev/null") {
            held.push(f);
        }
        let mut seen = Vec::new();
        for client in &clients {
            for url in urls {
                seen.push((url, client.get(url).await.unwrap_err()));
            }
        }
        drop(held);
        setrlimit(Resource::Nofile, before).unwrap();
        for (url, e) in seen {
            assert!(matches!(e, HttpError::Local(_)), "{url}: {e:?}");
        }
    }
}
