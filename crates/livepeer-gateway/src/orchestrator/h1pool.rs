//! Keep-alive HTTP/1.1 connections to `http://` orchestrators, kept by each serving thread's
//! client ([`crate::lane`]).
//!
//! Why not hyper_util's pooling client for these: it is built for connections shared by every
//! thread of a runtime, and paid for it on each call. Callgrind on `bench`'s LLM request put
//! 13,100 of a request's 105,000 gateway instructions in its `send_request`, about 8,000 of
//! them in its pool: a checkout future, the key hashed with SipHash three times, and the
//! connection handed back through a shared map. Here a call takes the most recently used idle
//! connection of its host from its own thread's map (locked, but nobody else waits on it),
//! exchanges on it ([`super::h1`]), and the answer's body puts it back when its last byte is
//! read.
//! hyper_util's client is still used for TLS (ALPN may pick HTTP/2) and for h2c.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::uri::{Authority, Uri};
use http_body_util::{BodyExt as _, Full};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::h1::{self, Conn, ExchangeError};

/// Why a call failed; `http` turns it into its `HttpError`.
#[derive(Debug)]
pub(super) enum SendError {
    /// The URL cannot be sent as asked.
    BadUrl(String),
    /// The exchange failed once connected: the request may have reached the orchestrator.
    Transport(String),
    /// Connecting failed for want of the gateway's own descriptors or memory.
    Local(String),
    /// Connecting failed otherwise (refused, unreachable, timed out): nothing was sent.
    Unreachable(String),
}

/// Idle connections kept per host: as many as a thread has requests in flight to it, up to
/// this. More are closed when they come back.
const MAX_IDLE_PER_HOST: usize = 256;

/// Hosts with idle connections kept. Orchestrators are few; past this, hosts without idle
/// connections are forgotten, and if that is not enough, every idle connection is closed.
const MAX_HOSTS: usize = 1024;

/// An idle connection unused for longer is closed rather than reused (the orchestrator may
/// have dropped it), as hyper_util's pool does after its idle timeout.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Each host's idle connections, oldest first, with when each became idle.
type Idle = HashMap<Authority, VecDeque<(Conn, Instant)>, foldhash::fast::RandomState>;

/// The idle connections of one client.
#[derive(Debug, Default, Clone)]
pub(super) struct H1Pool {
    idle: Arc<Mutex<Idle>>,
    /// A sweeper was started ([`h1::spawn_sweeper`]): by the first connection kept.
    sweeping: Arc<AtomicBool>,
}

/// Closes the idle connections that their server closed or that were idle too long.
fn sweep(idle: &mut Idle, now: Instant) {
    idle.retain(|_, conns| {
        conns.retain_mut(|(conn, since)| {
            now.duration_since(*since) <= IDLE_TIMEOUT && conn.is_open()
        });
        !conns.is_empty()
    });
}

impl H1Pool {
    /// Sends `req` (an absolute `http://` URI) on an idle connection to its host, or on a new
    /// one made by `connect`. A request that a closing connection did not take is sent again
    /// on another: nothing of it reached the orchestrator.
    pub(super) async fn send<C, F>(
        &self,
        req: http::Request<Full<Bytes>>,
        connect: C,
    ) -> Result<http::Response<h1::Body>, SendError>
    where
        C: FnOnce(Uri) -> F,
        F: std::future::Future<Output = Result<TcpStream, std::io::Error>>,
    {
        let (parts, mut body) = req.into_parts();
        let Some(host) = parts.uri.authority().cloned() else {
            return Err(SendError::BadUrl(parts.uri.to_string()));
        };
        let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        // `Full` hands its bytes over as its one frame.
        let body = match body.frame().await {
            Some(Ok(frame)) => frame.into_data().unwrap_or_default(),
            _ => Bytes::new(),
        };
        let host_field = host_value(&host);
        let head = h1::request_head(&parts.method, target, &host_field, &parts.headers, body.len());
        let is_head = parts.method == http::Method::HEAD;
        let dispatched = || super::dispatched::mark(&parts.extensions);
        while let Some(conn) = self.take(&host) {
            dispatched();
            match conn.exchange(&head, &body, is_head).await {
                Ok(resp) => return Ok(self.homed(resp, host)),
                Err(ExchangeError::NotSent(_)) => {}
                Err(e) => return Err(SendError::Transport(e.to_string())),
            }
        }
        // Boxed: dialling makes a large future that calls on a kept connection need not carry
        // (every request's future holds this one).
        let fresh = Box::pin(async {
            let tcp = connect(parts.uri).await.map_err(|e| {
                let why = crate::error::error_chain(&e);
                if crate::error::is_local_exhaustion(&e) {
                    SendError::Local(why)
                } else {
                    SendError::Unreachable(why)
                }
            })?;
            let conn = Conn::new(h1::Io::Plain(tcp));
            dispatched();
            conn.exchange(&head, &body, is_head)
                .await
                .map_err(|e| SendError::Transport(e.to_string()))
        });
        Ok(self.homed(fresh.await?, host))
    }

    /// `resp`, whose connection comes back to this pool under `host` once its body is read.
    fn homed(
        &self,
        mut resp: http::Response<h1::Body>,
        host: Authority,
    ) -> http::Response<h1::Body> {
        let pool = self.clone();
        resp.body_mut().go_home(Box::new(move |conn| pool.put(host, conn)));
        resp
    }

    /// The most recently used open idle connection to `host`, after closing those idle too
    /// long.
    fn take(&self, host: &Authority) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let conns = idle.get_mut(host)?;
        let now = Instant::now();
        while conns.front().is_some_and(|(_, since)| now.duration_since(*since) > IDLE_TIMEOUT) {
            conns.pop_front();
        }
        while let Some((mut conn, _)) = conns.pop_back() {
            if conn.is_open() {
                return Some(conn);
            }
        }
        None
    }

    fn put(&self, host: Authority, conn: Conn) {
        if !self.sweeping.load(Ordering::Relaxed) && !self.sweeping.swap(true, Ordering::AcqRel) {
            h1::spawn_sweeper(Arc::downgrade(&self.idle), sweep);
        }
        let mut idle = self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if idle.len() >= MAX_HOSTS && !idle.contains_key(&host) {
            idle.retain(|_, conns| !conns.is_empty());
            if idle.len() >= MAX_HOSTS {
                idle.clear();
            }
        }
        let conns = idle.entry(host).or_default();
        if conns.len() >= MAX_IDLE_PER_HOST {
            conns.pop_front();
        }
        conns.push_back((conn, Instant::now()));
    }

    /// Idle connections kept, over every host (for tests).
    #[cfg(test)]
    fn idle_count(&self) -> usize {
        self.idle.lock().map(|m| m.values().map(VecDeque::len).sum()).unwrap_or(0)
    }
}

/// `Host` for `host`: the host and a port other than 80, as hyper_util's client writes it,
/// never the authority's user information.
fn host_value(host: &Authority) -> std::borrow::Cow<'_, str> {
    match host.port_u16() {
        None | Some(80) => host.host().into(),
        // The authority as it is when it is just that (no copy per call).
        Some(_) if !host.as_str().contains('@') => host.as_str().into(),
        Some(port) => format!("{}:{port}", host.host()).into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::body::Incoming;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A bare HTTP/1.1 server that counts its connections and answers each request with the
    /// target and `Host` it got; `close_after` requests on a connection, it closes it.
    async fn server(close_after: Option<usize>) -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let conns = Arc::new(AtomicUsize::new(0));
        let counted = conns.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                let served = Arc::new(AtomicUsize::new(0));
                let answer = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                    let n = served.fetch_add(1, Ordering::SeqCst) + 1;
                    let host = req.headers().get("host").map(|h| h.to_str().unwrap().to_owned());
                    let body = format!("{} {}", req.uri(), host.unwrap_or_default());
                    let mut resp = http::Response::new(Full::new(Bytes::from(body)));
                    if close_after.is_some_and(|c| n >= c) {
                        resp.headers_mut().insert("connection", "close".parse().unwrap());
                    }
                    async move { Ok::<_, std::convert::Infallible>(resp) }
                });
                let io = hyper_util::rt::TokioIo::new(tcp);
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new().serve_connection(io, answer),
                );
            }
        });
        (url, conns)
    }

    async fn get(pool: &H1Pool, url: &str) -> String {
        let req = http::Request::get(url).body(Full::default()).unwrap();
        let connect = |uri: Uri| async move {
            let addr = uri.authority().unwrap().as_str().to_owned();
            tokio::net::TcpStream::connect(addr).await
        };
        let resp = pool.send(req, connect).await.unwrap();
        let body = http_body_util::BodyExt::collect(resp.into_body()).await.unwrap().to_bytes();
        String::from_utf8(body.to_vec()).unwrap()
    }

    /// Lets the tasks that put connections back run until `n` are idle (a bounded number of
    /// turns of the test's single-threaded runtime; no clock involved).
    async fn settle(pool: &H1Pool, n: usize) {
        for _ in 0..100 {
            if pool.idle_count() >= n {
                return;
            }
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn sequential_calls_reuse_one_connection_in_origin_form_with_host() {
        let (url, conns) = server(None).await;
        let pool = H1Pool::default();
        let authority = url.trim_start_matches("http://").to_owned();
        for _ in 0..5 {
            assert_eq!(
                get(&pool, &format!("{url}/llm?x=1")).await,
                format!("/llm?x=1 {authority}")
            );
            settle(&pool, 1).await;
        }
        assert_eq!(conns.load(Ordering::SeqCst), 1);
        assert_eq!(pool.idle_count(), 1);
    }

    #[test]
    fn host_is_the_host_and_a_port_other_than_80_never_user_information() {
        for (url, want) in [
            ("http://127.0.0.1:8935/llm", "127.0.0.1:8935"),
            ("http://orch.example:80/x", "orch.example"),
            ("http://orch.example/x", "orch.example"),
            ("http://user:secret@orch.example:8935/x", "orch.example:8935"),
            ("http://user@[::1]/x", "[::1]"),
        ] {
            let uri: Uri = url.parse().unwrap();
            assert_eq!(host_value(uri.authority().unwrap()), want, "{url}");
        }
    }

    #[tokio::test]
    async fn a_connection_the_server_closes_is_not_reused() {
        let (url, conns) = server(Some(1)).await;
        let pool = H1Pool::default();
        for _ in 0..3 {
            get(&pool, &format!("{url}/")).await;
        }
        assert_eq!(conns.load(Ordering::SeqCst), 3);
    }

    /// A raw server that answers one request per connection as keep-alive, then closes the
    /// connection without saying so: the next call must not fail on the dead connection.
    #[tokio::test]
    async fn a_kept_connection_the_server_dropped_silently_is_replaced() {
        use tokio::io::AsyncWriteExt as _;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let counted = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                if h1::read_request_head(&mut tcp).await.is_none() {
                    continue;
                }
                let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                tcp.write_all(answer).await.unwrap();
                drop(tcp);
            }
        });
        let pool = H1Pool::default();
        assert_eq!(get(&pool, &url).await, "ok");
        settle(&pool, 1).await;
        // Let the connection's task see the close.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert_eq!(get(&pool, &url).await, "ok");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    /// A raw server that answers each connection's first request as keep-alive, then drops
    /// the connection without a word.
    async fn answers_once_then_drops() -> String {
        use tokio::io::AsyncWriteExt as _;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                if h1::read_request_head(&mut tcp).await.is_none() {
                    continue;
                }
                tcp.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await.unwrap();
            }
        });
        url
    }

    /// Kept connections that their server closed, or that sat idle too long, are closed by
    /// the pool's sweeper without a call to their host. Paused time: the sweeps come as the
    /// clock is advanced, and the runtime sees the socket's events whenever it parks.
    #[tokio::test(start_paused = true)]
    async fn the_sweeper_closes_connections_their_server_closed_and_those_idle_too_long() {
        let pool = H1Pool::default();
        assert_eq!(get(&pool, &answers_once_then_drops().await).await, "ok");
        settle(&pool, 1).await;
        assert_eq!(pool.idle_count(), 1);
        for _ in 0..3 {
            tokio::time::sleep(h1::SWEEP_EVERY).await;
            if pool.idle_count() == 0 {
                break;
            }
        }
        assert_eq!(pool.idle_count(), 0, "a connection its server closed was kept");

        let (url, _) = server(None).await;
        get(&pool, &url).await;
        settle(&pool, 1).await;
        tokio::time::sleep(IDLE_TIMEOUT / 2).await;
        assert_eq!(pool.idle_count(), 1, "an open connection within its idle time is kept");
        tokio::time::sleep(IDLE_TIMEOUT / 2 + h1::SWEEP_EVERY * 2).await;
        assert_eq!(pool.idle_count(), 0, "a connection idle too long was kept");
    }

    #[tokio::test]
    async fn concurrent_calls_each_get_a_connection_and_all_come_back() {
        let (url, conns) = server(None).await;
        let pool = H1Pool::default();
        let calls = (0..8).map(|_| get(&pool, &url));
        futures_util::future::join_all(calls).await;
        settle(&pool, 8).await;
        assert_eq!(conns.load(Ordering::SeqCst), 8);
        assert_eq!(pool.idle_count(), 8);
        // The next calls reuse them.
        futures_util::future::join_all((0..8).map(|_| get(&pool, &url))).await;
        assert_eq!(conns.load(Ordering::SeqCst), 8);
    }
}
