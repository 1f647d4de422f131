//! The gateway's own HTTP listeners (public API and admin), HTTP/1.1 and h2c on one port.
//!
//! `axum::serve` would do, except that it bounds nothing a client can hold: the connections
//! it accepts, the time before a first byte, an idle keep-alive or HTTP/2 connection. Here every
//! listener has:
//! - a cap on open connections ([`ConnLimits::max_connections`]): at the cap each listener
//!   (one per serving thread) accepts one more connection and holds it unserved until a slot
//!   frees, and stops accepting, so further clients wait in the kernel's accept queue, which
//!   costs the process no file descriptor (as nginx, HAProxy and Go's `LimitListener` do),
//!   rather than being accepted and reset;
//! - optionally, a cap on one client address's open connections
//!   ([`ConnLimits::max_per_address`], `--max-connections-per-address`; off by default, as
//!   behind a load balancer every client is one address): a connection over it is closed as
//!   soon as it is accepted, unserved, taking no slot under the cap above and never holding
//!   up the accept loop, so one client cannot take every slot and leave the others in the
//!   accept queue (`per_address`: counted in `livepeer_gateway_http_connections_refused_total`,
//!   logged at most once a minute);
//! - a deadline for the first request ([`ConnLimits::header_timeout`], from the moment the
//!   connection is accepted): hyper's own header deadline only starts once the protocol is
//!   known, that is after a first byte, so a connection that sends nothing would be held;
//! - an idle deadline ([`ConnLimits::idle_timeout`]) once no request is in flight, for HTTP/1.1
//!   keep-alive and HTTP/2 alike, plus HTTP/2 pings that drop a peer that stopped answering;
//! - a write deadline ([`ConnLimits::write_timeout`]): a client that takes no bytes of a
//!   response for that long while some wait to be sent is dropped ([`WriteDeadline`]); over
//!   HTTP/2 a client can instead keep its flow-control window shut while the socket stays
//!   open (it answers pings), so a connection with a response whose last chunk the client has
//!   not made room for within the deadline is dropped too;
//! - a graceful end: at shutdown or at a deadline the connection is asked to close (HTTP/2
//!   `GOAWAY`, HTTP/1.1 after the current response), and dropped if it is still open and idle
//!   a moment later.
//!
//! Both caps are the port's, not each listener's: a port's listeners share them as a [`Port`].
//!
//! A connection closed while its client is still sending lingers (`linger`): half-closed, it
//! reads and discards for a bounded time, so the client reads the answer rather than a reset.
//!
//! A request counts as in flight from its headers until hyper drops its response body (fully
//! sent or abandoned), so a long answer (an SSE stream, a trickle segment) is never idle.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use prometheus_client::metrics::counter::Counter;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;

use super::linger::Linger;
use super::per_address::PerAddress;
use super::write_deadline::WriteDeadline;

/// How long a connection asked to close may stay open once idle before it is dropped: enough
/// to flush a `GOAWAY` or the last response, and to let a polite client close first.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// How often, at most, the "connection cap reached" warning is logged per listener.
const CAP_WARNING_EVERY: Duration = Duration::from_secs(60);

/// What a client may hold on one listener.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnLimits {
    /// Deadline for the first request's headers, from the connection's acceptance (and for
    /// later HTTP/1.1 requests, from the previous response: hyper's header deadline).
    pub(crate) header_timeout: Duration,
    /// How long a connection may stay open with no request in flight; also the HTTP/2 ping
    /// interval and ping timeout.
    pub(crate) idle_timeout: Duration,
    /// Connections open at once.
    pub(crate) max_connections: usize,
    /// Connections one client address may hold open at once (`0`: no cap).
    pub(crate) max_per_address: usize,
    /// How long a write may wait for the client to take bytes.
    pub(crate) write_timeout: Duration,
}

type Conn =
    auto::UpgradeableConnection<'static, TokioIo<WriteDeadline<TcpStream>>, Tracked, TokioExecutor>;

/// What the listeners of one port (one per serving thread, see `cores`) share, so that its
/// bounds are the port's, not each thread's: its connection slots and its per-address counts.
#[derive(Debug, Clone)]
pub(crate) struct Port {
    permits: Arc<Semaphore>,
    /// `None` without a per-address cap: nothing is counted per connection then.
    per_address: Option<Arc<PerAddress>>,
}

impl Port {
    /// The shared bounds of the port `name`, counting connections refused for their
    /// address's cap in `refused`.
    pub(crate) fn new(name: &'static str, limits: &ConnLimits, refused: Counter) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(limits.max_connections)),
            per_address: PerAddress::new(name, limits.max_per_address, refused),
        }
    }
}

/// Serves `router` on `listener` until `cancel` fires, then waits for open connections to end.
#[cfg(test)]
pub(crate) async fn serve(
    name: &'static str,
    listener: TcpListener,
    router: Router,
    limits: ConnLimits,
    cancel: CancellationToken,
) {
    let port = Port::new(name, &limits, Counter::default());
    serve_with(name, listener, router, limits, port, cancel).await;
}

/// Serves `router` on `listener`, one of `port`'s listeners, until `cancel` fires, then waits
/// for open connections to end.
pub(crate) async fn serve_with(
    name: &'static str,
    listener: TcpListener,
    router: Router,
    limits: ConnLimits,
    port: Port,
    cancel: CancellationToken,
) {
    let builder = builder(limits);
    let connections = TaskTracker::new();
    let mut warned: Option<Instant> = None;
    loop {
        // Accepted first, then held until a slot is free. Taking the slot first left it idle
        // in a thread waiting on its own (empty) queue while the kernel put new clients in
        // another's, whose thread had no slot: clients waited with slots free. Now a thread
        // holds at most one accepted connection waiting, and slots go in the order asked.
        let (stream, peer) = tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors or similar: back off rather than spin.
                    tracing::warn!(listener = name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // Before a slot is asked for: a connection over its address's cap takes none, and
        // is closed (dropped) here rather than held.
        let counted = match &port.per_address {
            None => None,
            Some(per_address) => match per_address.admit(peer.ip()) {
                Some(slot) => Some(slot),
                None => continue,
            },
        };
        let permit = match port.permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if warned.is_none_or(|at| at.elapsed() >= CAP_WARNING_EVERY) {
                    warned = Some(Instant::now());
                    tracing::warn!(
                        listener = name,
                        max = limits.max_connections,
                        "connection cap reached; new connections wait until one closes"
                    );
                }
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    permit = port.permits.clone().acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break, // never closed
                    },
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let linger = Linger::new(&stream);
        let activity = Arc::new(Activity::new());
        let service = Tracked { router: router.clone(), activity: activity.clone() };
        let writes = WriteDeadline::new(stream, limits.write_timeout)
            .with_progress(activity.opened, activity.written_ms.clone());
        let io = TokioIo::new(writes);
        let conn = builder.serve_connection_with_upgrades(io, service);
        let conn = conn.into_owned();
        let cancel = cancel.clone();
        connections.spawn(async move {
            drive(name, conn, &activity, limits, cancel).await;
            linger.close(activity.upgraded.load(Ordering::Acquire)).await;
            // The connection (and its socket) is gone: only now may another take its place.
            drop((permit, counted));
        });
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

/// The per-connection protocol settings shared by every connection of a listener.
fn builder(limits: ConnLimits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // A client's end of stream ends its requests (hyper's `half_close` stays off): that is
    // how a client that went away mid-request is noticed and its work (a stream's start, an
    // AI job) dropped, as Go's server cancels a request's context on it. A client that shuts
    // down its side after its request gets no answer, from go-livepeer either.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_HEAD_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.idle_timeout)
        .keep_alive_timeout(limits.idle_timeout)
        .max_concurrent_streams(H2_MAX_STREAMS)
        .max_header_list_size(MAX_HEAD_BYTES as u32);
    builder
}

/// A request's head may take up to go-livepeer's 1 MiB (Go's `http.DefaultMaxHeaderBytes`,
/// plus the 4 KiB Go allows over it): a BYOC job carries its whole request in the `Livepeer`
/// header. hyper's defaults (about 400 KB over HTTP/1.1, 16 KiB of headers over HTTP/2)
/// answered such jobs 431. A slow head is still bounded in time by `--http-header-timeout`,
/// and in number by `--max-connections`.
const MAX_HEAD_BYTES: usize = (1 << 20) + 4096;

/// Requests one HTTP/2 connection may have open at once. hyper's default (200) let one
/// connection hold as much as 200 HTTP/1.1 connections, out of reach of `--max-connections`;
/// nginx allows 128, this a quarter of that.
const H2_MAX_STREAMS: u32 = 32;

/// Runs one connection to its end, closing it at shutdown or when it has been quiet too long.
async fn drive(
    name: &'static str,
    conn: Conn,
    activity: &Activity,
    limits: ConnLimits,
    cancel: CancellationToken,
) {
    let mut conn = std::pin::pin!(conn);
    let mut closing: Option<Instant> = None;
    // A first request that comes and goes early makes the idle deadline the earlier one.
    let mut check = activity.opened + limits.header_timeout.min(limits.idle_timeout);
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                // Errors here are the client's (reset, bad request line, header deadline):
                // nothing to do but drop the connection.
                if let Err(e) = result {
                    tracing::debug!(listener = name, error = %e, "connection ended with an error");
                }
                return;
            }
            _ = cancel.cancelled(), if closing.is_none() => {
                conn.as_mut().graceful_shutdown();
                closing = Some(Instant::now());
                check = Instant::now() + CLOSE_GRACE;
            }
            _ = tokio::time::sleep_until(check) => {
                let now = Instant::now();
                if activity.stalled(now, limits.write_timeout) {
                    tracing::debug!(listener = name, "dropping a connection whose client makes no room for its answer");
                    return;
                }
                match activity.quiet_until(&limits, closing) {
                    // Busy: nothing is due before the requests end, and then a full spell
                    // later; meanwhile its answers are watched for a client that takes none.
                    None if closing.is_some() => check = now + CLOSE_GRACE,
                    None => check = now + limits.idle_timeout.min(limits.write_timeout),
                    // Before any request, one may yet come and go, and be idle sooner.
                    Some(due) if due > now && activity.requests.load(Ordering::Acquire) == 0 => {
                        check = due.min(now + limits.idle_timeout);
                    }
                    Some(due) if due > now => check = due,
                    Some(_) if closing.is_some() => {
                        tracing::debug!(listener = name, "dropping a connection that did not close");
                        return;
                    }
                    Some(_) => {
                        tracing::debug!(listener = name, "closing a quiet connection");
                        conn.as_mut().graceful_shutdown();
                        closing = Some(now);
                        check = now + CLOSE_GRACE;
                    }
                }
            }
        }
    }
}

/// What one connection is doing, as its requests report it.
#[derive(Debug)]
struct Activity {
    /// When the connection was accepted.
    opened: Instant,
    /// Requests whose response body hyper still holds.
    in_flight: AtomicUsize,
    /// Requests seen so far.
    requests: AtomicU64,
    /// When `in_flight` last fell to zero, in milliseconds after `opened`.
    idle_since_ms: AtomicU64,
    /// When a write that waited for the client last went through, in milliseconds after
    /// `opened` (see [`WriteDeadline::with_progress`]): an answer still being taken.
    written_ms: Arc<AtomicU64>,
    /// A request asked for another protocol: its socket may outlive the connection.
    upgraded: AtomicBool,
    /// HTTP/2 answers that handed hyper a chunk hyper has not come back for, by request
    /// number, with when (milliseconds after `opened`). hyper (1.12) keeps a chunk until the
    /// stream's window has room for a byte of it, and polls the body for the next one only
    /// then, so an entry that stays is a client that makes no room while its socket stays
    /// open. (A chunk hyper could start is h2's to send; a client that stops taking it is
    /// then covered by the idle deadline, which large writes put off.)
    waiting: Mutex<Vec<(u64, u64)>>,
}

impl Activity {
    fn new() -> Self {
        Self {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            idle_since_ms: AtomicU64::new(0),
            written_ms: Arc::default(),
            upgraded: AtomicBool::new(false),
            waiting: Mutex::default(),
        }
    }

    /// HTTP/2 answer `id` handed hyper a chunk, which hyper keeps until the client's window
    /// has room for a byte of it.
    fn handed(&self, id: u64) {
        let ms = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner).push((id, ms));
    }

    /// hyper came back for answer `id`'s next chunk, or dropped it.
    fn resumed(&self, id: u64) {
        let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        waiting.retain(|(i, _)| *i != id);
    }

    /// Whether an answer has waited `limit` for its client's window while the connection
    /// made no progress either (as nginx's `send_timeout`, the connection's writes count: a
    /// client taking another answer's bytes is reading).
    fn stalled(&self, now: Instant, limit: Duration) -> bool {
        let waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(since) = waiting.iter().map(|(_, ms)| *ms).min() else {
            return false;
        };
        let latest = since.max(self.written_ms.load(Ordering::Acquire));
        now.saturating_duration_since(self.opened + Duration::from_millis(latest)) >= limit
    }

    /// When the connection's allowed quiet spell ends, or `None` while a request is in flight:
    /// `header_timeout` after acceptance for the first request, `idle_timeout` after the last
    /// response, and [`CLOSE_GRACE`] once it was asked to close (at `closing`).
    fn quiet_until(&self, limits: &ConnLimits, closing: Option<Instant>) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let since_ms = self.idle_since_ms.load(Ordering::Acquire);
        let idle_since = self.opened
            + Duration::from_millis(since_ms.max(self.written_ms.load(Ordering::Acquire)));
        Some(match closing {
            Some(at) => at.max(idle_since) + CLOSE_GRACE,
            None if self.requests.load(Ordering::Acquire) == 0 => {
                self.opened + limits.header_timeout
            }
            None => idle_since + limits.idle_timeout,
        })
    }
}

/// One request in flight on a connection; counted until dropped with the response body.
#[derive(Debug)]
struct Busy(Arc<Activity>);

impl Busy {
    /// Counts a request in; also its number on the connection.
    fn start(activity: Arc<Activity>) -> (Self, u64) {
        let id = activity.requests.fetch_add(1, Ordering::AcqRel);
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        (Self(activity), id)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let since = self.0.opened.elapsed().as_millis();
        self.0.idle_since_ms.store(u64::try_from(since).unwrap_or(u64::MAX), Ordering::Release);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The router as hyper calls it, counting each request in flight on its connection.
#[derive(Debug, Clone)]
struct Tracked {
    router: Router,
    activity: Arc<Activity>,
}

/// The router's answer to one request, with the request's count in flight. A named future
/// rather than a boxed `async` block: this runs for every request, and the box was one more
/// allocation on the hot path.
struct TrackedFuture {
    inner: Routed,
    busy: Option<Busy>,
    /// The request's number, for an HTTP/2 one (whose answer is watched for a shut window).
    h2: Option<u64>,
}

impl Future for TrackedFuture {
    type Output = Result<http::Response<TrackedBody>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let response = match &mut this.inner {
            Routed::Router(inner) => match Pin::new(inner).poll(cx) {
                Poll::Ready(Ok(response)) => response,
                Poll::Ready(Err(never)) => match never {},
                Poll::Pending => return Poll::Pending,
            },
            Routed::Refused(response) => response.take().unwrap_or_default(),
        };
        let busy = this.busy.take();
        let h2 = this.h2;
        Poll::Ready(Ok(response.map(|body| TrackedBody { body, busy, h2 })))
    }
}

impl hyper::service::Service<http::Request<Incoming>> for Tracked {
    type Response = http::Response<TrackedBody>;
    type Error = Infallible;
    type Future = TrackedFuture;

    fn call(&self, req: http::Request<Incoming>) -> Self::Future {
        let (busy, id) = Busy::start(self.activity.clone());
        if req.headers().contains_key(http::header::UPGRADE) {
            self.activity.upgraded.store(true, Ordering::Release);
        }
        let h2 = (req.version() == http::Version::HTTP_2).then_some(id);
        let inner = if req.headers().contains_key(crate::orchestrator::http::GATEWAY_HOP) {
            Routed::Refused(Some(gateway_hop_refused()))
        } else {
            Routed::Router(self.router.clone().oneshot(req))
        };
        TrackedFuture { inner, busy: Some(busy), h2 }
    }
}

/// Where a request's answer comes from.
enum Routed {
    /// The router, as for every request but one a gateway sent.
    Router(tower::util::Oneshot<Router, http::Request<Incoming>>),
    /// Refused at the edge, before any route runs (taken once answered).
    Refused(Option<axum::response::Response>),
}

/// The answer (508 `loop_detected`) to a request a gateway sent to what it took for an
/// orchestrator: that orchestrator's service URI names a gateway, and serving the request would
/// have this gateway select an orchestrator, perhaps the same one, and call again (one client
/// request made 494 in 10 s). Refused on both ports before any route runs, so before anything
/// is selected or paid; the calling gateway counts it as that orchestrator's failure. Checked
/// here rather than in a middleware layer, which would box every request's future.
fn gateway_hop_refused() -> axum::response::Response {
    let message = "this is a gateway, and the request came from a gateway: the orchestrator it \
        was meant for names a gateway as its service URI"
        .to_owned();
    super::error::json_error(http::StatusCode::LOOP_DETECTED, "loop_detected", message, None)
}

/// A response body that keeps its request counted in flight until hyper drops it, and over
/// HTTP/2 reports each chunk it hands over until hyper comes back for more.
#[derive(Debug)]
struct TrackedBody {
    body: axum::body::Body,
    busy: Option<Busy>,
    h2: Option<u64>,
}

impl Drop for TrackedBody {
    fn drop(&mut self) {
        if let (Some(id), Some(busy)) = (self.h2, &self.busy) {
            busy.0.resumed(id);
        }
    }
}

impl hyper::body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let Some((id, busy)) = this.h2.zip(this.busy.as_ref()) else {
            return Pin::new(&mut this.body).poll_frame(cx);
        };
        busy.0.resumed(id);
        let poll = Pin::new(&mut this.body).poll_frame(cx);
        // The last chunk too: hyper keeps it until the window has room for a byte of it.
        if let Poll::Ready(Some(Ok(frame))) = &poll
            && frame.is_data()
        {
            busy.0.handed(id);
        }
        poll
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use axum::routing::get;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    const LIMITS: ConnLimits = ConnLimits {
        header_timeout: Duration::from_millis(200),
        idle_timeout: Duration::from_millis(200),
        max_connections: 4,
        max_per_address: 0,
        write_timeout: Duration::from_secs(5),
    };

    /// A listener serving `/slow` (answers after several idle spells) and `/stream` (a body
    /// whose parts are several idle spells apart).
    async fn slow_server(cancel: CancellationToken) -> (SocketAddr, tokio::task::JoinHandle<()>) {
        // Longer than every deadline and the close grace together, so a request not counted
        // in flight would be cut.
        let spell = CLOSE_GRACE + LIMITS.idle_timeout * 4;
        let router = Router::new()
            .route(
                "/slow",
                get(move || async move {
                    tokio::time::sleep(spell).await;
                    "late"
                }),
            )
            .route(
                "/stream",
                get(move || async move {
                    let parts = futures_util::stream::unfold(0u8, move |n| async move {
                        if n == 2 {
                            return None;
                        }
                        if n == 1 {
                            tokio::time::sleep(spell).await;
                        }
                        Some((Ok::<_, Infallible>(Bytes::from_static(b"part;")), n + 1))
                    });
                    axum::body::Body::from_stream(parts)
                }),
            );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(serve("test", listener, router, LIMITS, cancel));
        (addr, task)
    }

    #[tokio::test]
    async fn requests_in_flight_outlast_the_idle_deadline() {
        let cancel = CancellationToken::new();
        let (addr, task) = slow_server(cancel.clone()).await;
        for (path, part, count) in [("/slow", "late", 1), ("/stream", "part;", 2)] {
            let mut conn = TcpStream::connect(addr).await.unwrap();
            let head = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            conn.write_all(head.as_bytes()).await.unwrap();
            let mut answer = String::new();
            conn.read_to_string(&mut answer).await.unwrap();
            assert!(answer.starts_with("HTTP/1.1 200"), "{path}: {answer}");
            assert_eq!(answer.matches(part).count(), count, "{path}: {answer}");
        }
        cancel.cancel();
        task.await.unwrap();
    }

    /// A client reading a large answer slowly but steadily gets all of it: hyper holds the
    /// whole body long before it is sent, and the connection was judged idle and cut then.
    #[tokio::test]
    async fn a_slow_steady_reader_gets_the_whole_answer() {
        const SIZE: usize = 24 << 20;
        let router = Router::new().route("/big", get(|| async { vec![b'x'; SIZE] }));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cancel = CancellationToken::new();
        let task = tokio::spawn(serve("test", listener, router, LIMITS, cancel.clone()));
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(64 << 10).unwrap();
        let mut conn = socket.connect(addr).await.unwrap();
        let head = "GET /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        conn.write_all(head.as_bytes()).await.unwrap();
        // About 8 MB/s: seconds longer than the idle deadline and the close grace together.
        let (mut got, mut buf) = (0, vec![0u8; 64 << 10]);
        loop {
            let n = conn.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            got += n;
            tokio::time::sleep(Duration::from_millis(8)).await;
        }
        assert!(got > SIZE, "{got} bytes of a {SIZE}-byte body and its head");
        cancel.cancel();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn shutdown_closes_idle_connections_and_ends() {
        let cancel = CancellationToken::new();
        let (addr, task) = slow_server(cancel.clone()).await;
        let mut silent = TcpStream::connect(addr).await.unwrap();
        cancel.cancel();
        tokio::time::timeout(Duration::from_secs(5), task).await.unwrap().unwrap();
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(5), silent.read_to_end(&mut rest));
        assert!(closed.await.is_ok(), "the silent connection outlived the server");
    }

    /// A listener serving 1 MiB as `/chunks` (64 chunks, each handed over as soon as asked)
    /// and as `/whole` (one piece, which hyper holds at once).
    async fn chunk_server(limits: ConnLimits, cancel: CancellationToken) -> SocketAddr {
        let router = Router::new()
            .route(
                "/chunks",
                get(|| async {
                    use futures_util::StreamExt as _;
                    let chunks = futures_util::stream::iter(0..64)
                        .map(|_| Ok::<_, Infallible>(Bytes::from(vec![b'x'; 16 << 10])));
                    axum::body::Body::from_stream(chunks)
                }),
            )
            .route("/whole", get(|| async { vec![b'x'; 1 << 20] }));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve("test", listener, router, limits, cancel));
        addr
    }

    /// An HTTP/2 client of `addr` with `window` bytes of stream window, which answers pings
    /// for as long as its connection task runs; and that task.
    async fn h2_client(
        addr: SocketAddr,
        window: u32,
    ) -> (
        hyper::client::conn::http2::SendRequest<http_body_util::Empty<Bytes>>,
        tokio::task::JoinHandle<Result<(), hyper::Error>>,
    ) {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .initial_stream_window_size(window)
            .handshake(TokioIo::new(tcp))
            .await
            .unwrap();
        (send, tokio::spawn(conn))
    }

    fn get_request(path: &str) -> http::Request<http_body_util::Empty<Bytes>> {
        http::Request::get(format!("http://x{path}")).body(http_body_util::Empty::new()).unwrap()
    }

    const PATHS: [&str; 2] = ["/chunks", "/whole"];

    /// Short deadlines: pings every 200 ms keep a silent client's socket busy, and the write
    /// deadline is what must end it.
    const H2_LIMITS: ConnLimits =
        ConnLimits { write_timeout: Duration::from_millis(300), ..LIMITS };

    /// Deadlines a steady reader keeps well within, however the machine schedules it: a
    /// second for each, where its reads come 40 ms apart.
    const STEADY_LIMITS: ConnLimits = ConnLimits {
        write_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(1),
        header_timeout: Duration::from_secs(1),
        ..LIMITS
    };

    /// An HTTP/2 client that shuts its window (none at all, or none after the first 64 KiB)
    /// and never reads keeps its socket open and answers pings; its connection is dropped
    /// once its answer has waited for room past the write deadline.
    #[tokio::test]
    async fn an_http2_client_that_makes_no_room_is_dropped() {
        let cancel = CancellationToken::new();
        let addr = chunk_server(H2_LIMITS, cancel.clone()).await;
        for (window, path) in [0, 65_535].into_iter().flat_map(|w| PATHS.map(|p| (w, p))) {
            let (mut send, conn) = h2_client(addr, window).await;
            let answer = send.send_request(get_request(path)).await.unwrap();
            assert_eq!(answer.status(), 200);
            // Held, never read: the window stays as it is.
            let ended = tokio::time::timeout(Duration::from_secs(10), conn).await;
            assert!(
                ended.is_ok(),
                "{path}, window {window}: the connection outlived its deadlines"
            );
            drop(answer);
        }
        cancel.cancel();
    }

    /// An HTTP/2 client reading steadily, a window's worth at a time, gets the whole answer
    /// though taking it (2.6 s) outlasts the idle deadline and the close grace: streamed, where
    /// each chunk waits for room, and whole, where hyper holds it all from the start and the
    /// request no longer counts as in flight (that one was cut before large writes counted as
    /// progress).
    #[tokio::test]
    async fn an_http2_client_that_reads_steadily_gets_the_whole_answer() {
        use http_body_util::BodyExt as _;
        let cancel = CancellationToken::new();
        let addr = chunk_server(STEADY_LIMITS, cancel.clone()).await;
        for path in PATHS {
            let (mut send, _conn) = h2_client(addr, 16 << 10).await;
            let mut body = send.send_request(get_request(path)).await.unwrap().into_body();
            let mut got = 0;
            while let Some(frame) = body.frame().await {
                got += frame.unwrap().into_data().map_or(0, |d| d.len());
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
            assert_eq!(got, 1 << 20, "{path}");
        }
        cancel.cancel();
    }
}
