//! HTTP/1.1 client connections of the gateway's own: calls to `http://` orchestrators
//! (`orchestrator::h1pool`) and result downloads (`ai::fetch`).
//!
//! Why not hyper's client connection, which these used before: hyper runs every connection as
//! a task of its own, and a call hands its request to that task through a channel, then gets
//! the answer's head back through another and its body through a third. Callgrind put that
//! task and the send at about 17,500 of the 78,800 instructions the gateway spent on `bench`'s
//! LLM request. Here the call's own future writes the request and reads the answer's head, and
//! the answer's [`Body`] reads the socket itself when it is polled: no task, no channel, no
//! wake-up between them. The whole call then took 9,600, and the request 71,200
//! (BENCHMARKS.md).
//!
//! What it speaks is the client side of RFC 9112 that orchestrators need, as Go's `net/http`
//! (go-livepeer's) answers it: one request at a time per connection (no pipelining), no
//! upgrades and no `Expect`; answers framed by `Content-Length`, by chunks, or by the end of
//! the connection; interim `1xx` answers skipped. Everything an orchestrator sends is bounded:
//! the head ([`MAX_HEAD`], [`MAX_HEADERS`]), chunk-size lines and trailers (`body`); the body's
//! size is the caller's to cap, as it reads.

mod body;

pub use body::{Body, BodyError, Home};

use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use http::header::{CONNECTION, CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Version};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::TcpStream;

/// The most bytes an answer's head may take. Go's server writes a few hundred; hyper's client
/// allowed about 400 KiB, Go's 10 MiB. A quarter of a MiB leaves room for any real head and
/// bounds what a hostile one can make the gateway hold per call.
pub const MAX_HEAD: usize = 256 * 1024;

/// The most header fields an answer may carry (hyper's client allowed 100).
pub const MAX_HEADERS: usize = 128;

/// How much room a connection's first read asks of its buffer; a read that fills what it
/// asked for doubles the next one's, up to [`MAX_READ`], so that a large result is read in
/// few system calls and a small answer in a small buffer.
const READ_CHUNK: usize = 16 * 1024;

/// The most room one read asks for.
const MAX_READ: usize = 256 * 1024;

/// A connection whose buffer grew past this for a large answer gets a new, empty one when it
/// is kept: hundreds of idle connections must not each hold a large result's buffer.
const KEPT_BUFFER: usize = 64 * 1024;

/// How often a pool's idle connections are looked over by [`spawn_sweeper`]. Often enough
/// that an orchestrator that went away (every kept connection to it closed at once) leaves
/// its sockets for at most a second; a sweep of a few hundred idle connections costs a few
/// microseconds, and a timer this far off wakes no serving thread that was not waking anyway
/// (`http::cores`).
pub const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Runs `sweep` on the idle connections `pool` points to every [`SWEEP_EVERY`], on the
/// current runtime, for as long as the pool lives. Why: a kept connection whose server closed
/// it holds its socket (in `CLOSE_WAIT`) until a call takes it and finds it closed, and a
/// connection idle past the pool's limit until a call to its host comes; hyper's connection
/// task closed the first at once. With this, neither outlives a sweep by more than
/// [`SWEEP_EVERY`]. Outside a runtime it does nothing.
pub fn spawn_sweeper<M: Send + 'static>(
    pool: std::sync::Weak<std::sync::Mutex<M>>,
    sweep: fn(&mut M, tokio::time::Instant),
) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
    runtime.spawn(async move {
        let start = tokio::time::Instant::now() + SWEEP_EVERY;
        let mut tick = tokio::time::interval_at(start, SWEEP_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(pool) = pool.upgrade() else { return };
            let mut idle = pool.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            sweep(&mut idle, tokio::time::Instant::now());
        }
    });
}

/// A connection's byte stream: plain TCP, or TLS over it.
#[derive(Debug)]
pub enum Io {
    /// `http://`.
    Plain(TcpStream),
    /// `https://`.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl Io {
    /// The address the socket is connected to.
    pub fn peer(&self) -> Option<std::net::IpAddr> {
        let tcp = match self {
            Self::Plain(s) => s,
            Self::Tls(s) => s.get_ref().0,
        };
        tcp.peer_addr().ok().map(|a| a.ip())
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(s) => s.is_write_vectored(),
            Self::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Why an exchange failed.
#[derive(Debug)]
pub enum ExchangeError {
    /// Not a byte of the request was taken by the connection: the request may be sent
    /// again on another, nothing reached the server. A kept connection its server closed
    /// gives this only when the close reached the socket before the write; one that comes
    /// after it (the write was taken, the server was already gone) is [`Self::Failed`], as
    /// neither side can tell it from a server that failed while acting on the request.
    NotSent(std::io::Error),
    /// The exchange failed once the request, or part of it, was out: the server may have
    /// acted on it, so it is not sent again.
    Failed(String),
}

impl std::fmt::Display for ExchangeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotSent(e) => write!(f, "connection closed before the request was sent: {e}"),
            Self::Failed(why) => f.write_str(why),
        }
    }
}

/// How far a request went out.
enum Sent {
    /// All of it.
    Whole,
    /// Not all: an answer began to arrive first.
    Cut,
    /// Not all: the connection failed, for this reason, after part of it was taken.
    Broken(String),
}

/// One HTTP/1.1 connection and what it has read but not yet handed out. Boxed once, when it
/// is opened: it moves from pool to call to answer body and back on every exchange.
#[derive(Debug)]
pub struct Conn(Box<State>);

#[derive(Debug)]
struct State {
    io: Io,
    buf: BytesMut,
    /// Room the next read asks for.
    read_size: usize,
    /// The address the connection reached, read once when it is made.
    peer: Option<std::net::IpAddr>,
}

impl Conn {
    /// A connection over `io`, nothing exchanged yet.
    pub fn new(io: Io) -> Self {
        let peer = io.peer();
        Self(Box::new(State { io, buf: BytesMut::new(), read_size: READ_CHUNK, peer }))
    }

    /// The address the connection reached.
    pub fn peer(&self) -> Option<std::net::IpAddr> {
        self.0.peer
    }

    /// Whether a kept connection may carry another request: nothing has arrived on it since
    /// its last answer ended. A server that closed it sent an end of stream, which shows here
    /// once the runtime's reactor has seen it. No system call unless the reactor saw the
    /// socket become readable (tokio reads only then): the common case costs nothing.
    pub fn is_open(&mut self) -> bool {
        let State { io, buf, .. } = &mut *self.0;
        if !buf.is_empty() {
            return false;
        }
        let mut cx = Context::from_waker(std::task::Waker::noop());
        buf.reserve(1);
        let read = tokio_util::io::poll_read_buf(Pin::new(io), &mut cx, buf);
        // Pending: nothing to read, the connection is as it was left. An end of stream, an
        // error or bytes nobody asked for all mean it cannot carry another exchange.
        read.is_pending()
    }

    /// Sends `head` (from [`request_head`]) and `body`, and reads the answer's head; the
    /// answer's body then reads this connection as it is polled. `head_request`: the request
    /// was `HEAD`, whose answer has no body whatever its head says.
    pub async fn exchange(
        mut self,
        head: &[u8],
        body: &[u8],
        head_request: bool,
    ) -> Result<http::Response<Body>, ExchangeError> {
        let sent = self.write_all(head, body).await?;
        match self.read_answer(head_request, matches!(sent, Sent::Whole)).await {
            Err(ExchangeError::Failed(_)) if let Sent::Broken(why) = sent => {
                Err(ExchangeError::Failed(format!("sending the request: {why}")))
            }
            answer => answer,
        }
    }

    /// Reads the answer's head off the connection; its body reads on from there. `whole`:
    /// the request went out in full, so the connection may be kept after the answer.
    async fn read_answer(
        mut self,
        head_request: bool,
        whole: bool,
    ) -> Result<http::Response<Body>, ExchangeError> {
        loop {
            if let Some(answer) = parse_head(&mut self.0.buf).map_err(ExchangeError::Failed)? {
                let Answer { status, version, headers } = answer;
                if (100..200).contains(&status) {
                    if status == 101 {
                        return Err(ExchangeError::Failed("unasked protocol switch (101)".into()));
                    }
                    continue; // interim: the final answer follows
                }
                let (framing, keep_alive) = body::framing(status, version, &headers, head_request)
                    .map_err(ExchangeError::Failed)?;
                let keep_alive = keep_alive && whole;
                let mut response = http::Response::new(Body::new(self, framing, keep_alive));
                *response.status_mut() = status
                    .try_into()
                    .map_err(|_| ExchangeError::Failed(format!("invalid status {status}")))?;
                *response.version_mut() = version;
                *response.headers_mut() = headers;
                return Ok(response);
            }
            if self.read_more().await.map_err(|e| ExchangeError::Failed(e.to_string()))? == 0 {
                return Err(ExchangeError::Failed(
                    "connection closed before the answer's head".into(),
                ));
            }
        }
    }

    /// Writes `head` then `body`, in one system call when the socket takes them. While the
    /// socket takes no more, it watches for an answer: a server may answer before it has read
    /// the whole request and stop reading (Go's answers 4xx to a segment before reading its
    /// body, then closes), and that answer, not the broken write, is what the caller must see.
    async fn write_all(&mut self, head: &[u8], body: &[u8]) -> Result<Sent, ExchangeError> {
        let total = head.len() + body.len();
        let mut written = 0;
        while written < total {
            let slices = if written < head.len() {
                [IoSlice::new(&head[written..]), IoSlice::new(body)]
            } else {
                [IoSlice::new(&body[written - head.len()..]), IoSlice::new(&[])]
            };
            let wrote = std::future::poll_fn(|cx| {
                let wrote = Pin::new(&mut self.0.io).poll_write_vectored(cx, &slices);
                if wrote.is_pending() && written > 0 && self.poll_early_answer(cx).is_ready() {
                    return Poll::Ready(None);
                }
                wrote.map(Some)
            })
            .await;
            match wrote {
                None => return Ok(Sent::Cut),
                Some(Ok(0)) if written == 0 => {
                    return Err(ExchangeError::NotSent(std::io::ErrorKind::WriteZero.into()));
                }
                Some(Ok(0)) => return Ok(Sent::Broken("connection closed mid-request".into())),
                Some(Ok(n)) => written += n,
                Some(Err(e)) if written == 0 => return Err(ExchangeError::NotSent(e)),
                // The server may have answered before it closed: the answer is read first.
                Some(Err(e)) => return Ok(Sent::Broken(e.to_string())),
            }
        }
        // TLS holds records until flushed; TCP's flush does nothing.
        self.0.io.flush().await.map_err(|e| ExchangeError::Failed(format!("sending: {e}")))?;
        Ok(Sent::Whole)
    }

    /// Ready once the server has sent the head of a final answer (or its end of stream, or
    /// bytes that are no answer) while the request was still going out; interim `1xx` heads
    /// are taken and skipped, and the request goes on.
    fn poll_early_answer(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            match self.poll_read_more(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(0) | Err(_)) => return Poll::Ready(()),
                Poll::Ready(Ok(_)) => {}
            }
            let buf = &mut self.0.buf;
            loop {
                let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let mut parsed = httparse::Response::new(&mut fields);
                match parsed.parse(buf) {
                    Ok(httparse::Status::Complete(len))
                        if parsed.code.is_some_and(|c| (100..200).contains(&c) && c != 101) =>
                    {
                        let _ = buf.split_to(len);
                    }
                    Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => break,
                    _ => return Poll::Ready(()),
                }
            }
        }
    }

    /// Reads what the connection has into the buffer: the count, 0 at its end.
    async fn read_more(&mut self) -> std::io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_read_more(cx)).await
    }

    /// [`Self::read_more`], polled.
    fn poll_read_more(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        let State { io, buf, read_size, .. } = &mut *self.0;
        if buf.capacity() - buf.len() < *read_size / 4 {
            buf.reserve(*read_size);
        }
        let room = buf.capacity() - buf.len();
        let read = tokio_util::io::poll_read_buf(Pin::new(io), cx, buf);
        if let Poll::Ready(Ok(n)) = read
            && n == room
        {
            *read_size = (*read_size * 2).min(MAX_READ);
        }
        read
    }

    /// Readies a connection whose answer has been read for its next exchange.
    fn rest(&mut self) {
        if self.0.buf.capacity() > KEPT_BUFFER {
            self.0.buf = BytesMut::new();
            self.0.read_size = READ_CHUNK;
        }
    }
}

/// An answer's head, parsed.
struct Answer {
    status: u16,
    version: Version,
    headers: HeaderMap,
}

/// Takes a complete answer head off the front of `buf`, or `None` while it is incomplete;
/// an error for a head over [`MAX_HEAD`], complete or not. Header values stay slices of the
/// bytes read (no copy per value).
fn parse_head(buf: &mut BytesMut) -> Result<Option<Answer>, String> {
    let too_large = || format!("answer head larger than {MAX_HEAD} bytes");
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut fields);
    let len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(len)) if len <= MAX_HEAD => len,
        Ok(httparse::Status::Complete(_)) => return Err(too_large()),
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => return Err(too_large()),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(format!("answer with more than {MAX_HEADERS} header fields"));
        }
        Err(e) => return Err(format!("invalid answer head: {e}")),
    };
    let status = parsed.code.unwrap_or_default();
    let version = if parsed.version == Some(0) { Version::HTTP_10 } else { Version::HTTP_11 };
    let count = parsed.headers.len();
    // Where each field is in the head, so that the head can be frozen and sliced.
    let mut spans = Vec::with_capacity(count);
    let base = buf.as_ptr() as usize;
    for field in parsed.headers.iter() {
        let name = HeaderName::from_bytes(field.name.as_bytes())
            .map_err(|_| format!("invalid header name {:?}", field.name))?;
        let start = field.value.as_ptr() as usize - base;
        spans.push((name, start, start + field.value.len()));
    }
    let head = buf.split_to(len).freeze();
    let mut headers = HeaderMap::with_capacity(count);
    for (name, start, end) in spans {
        let value = HeaderValue::from_maybe_shared(head.slice(start..end))
            .map_err(|_| format!("invalid value of header {name}"))?;
        headers.append(name, value);
    }
    Ok(Some(Answer { status, version, headers }))
}

/// The bytes of a request's head: `method target HTTP/1.1`, `Host` (unless `headers` has
/// one), `headers` but their own framing (`Content-Length`, `Transfer-Encoding`, which this
/// writes from `body_len`), and the blank line. `target` is an origin-form path and query.
/// They are written as they are: `target` and `host` must hold no space or control byte
/// (callers pass parts of `http`'s and `url`'s parsed URIs; `ai::fetch` checks its target
/// again), and `headers`' values cannot hold a line break (`HeaderValue` refuses one). A
/// target that does not start with `/` (a URL with a query and no path, or none at all) gets
/// one in front, as hyper and Go write it.
pub fn request_head(
    method: &Method,
    target: &str,
    host: &str,
    headers: &HeaderMap,
    body_len: usize,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(128 + target.len() + 48 * headers.len());
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    if !target.starts_with('/') {
        out.push(b'/');
    }
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    if !headers.contains_key(HOST) {
        field(&mut out, b"host", host.as_bytes());
    }
    for (name, value) in headers {
        if name != CONTENT_LENGTH && name != TRANSFER_ENCODING {
            field(&mut out, name.as_str().as_bytes(), value.as_bytes());
        }
    }
    // As hyper and Go write it: a length for any body, and for methods that expect one.
    let expects_body = matches!(*method, Method::POST | Method::PUT | Method::PATCH);
    if body_len > 0 || expects_body {
        let mut digits = itoa::Buffer::new();
        field(&mut out, b"content-length", digits.format(body_len).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out
}

fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Whether the answer's `Connection` field lets the connection carry another exchange:
/// HTTP/1.1 unless it says `close`, HTTP/1.0 only if it says `keep-alive`.
fn keeps_alive(version: Version, headers: &HeaderMap) -> bool {
    let has = |token: &str| {
        headers.get_all(CONNECTION).iter().any(|v| {
            v.to_str().is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    if version == Version::HTTP_10 { has("keep-alive") } else { !has("close") }
}

/// Reads a whole answer, head and body, from `answer` as a connection would, without one:
/// its status and its body's length, or `None` when it is incomplete or invalid. For the fuzz
/// bench (`benches/fuzz`), which feeds it arbitrary bytes.
#[doc(hidden)]
pub fn read_answer_for_fuzz(answer: &[u8]) -> Option<(u16, usize)> {
    let mut buf = BytesMut::from(answer);
    let Answer { status, version, headers } = loop {
        let answer = parse_head(&mut buf).ok()??;
        match answer.status {
            101 => return None,
            100..200 => {}
            _ => break answer,
        }
    };
    let (framing, _) = body::framing(status, version, &headers, false).ok()?;
    let len = match framing {
        body::Framing::Length(n) => usize::try_from(n).ok().filter(|&n| buf.len() >= n)?,
        body::Framing::Close => buf.len(),
        body::Framing::Chunked(mut chunks) => {
            let mut len = 0;
            loop {
                match chunks.step(&mut buf).ok()? {
                    body::Step::Data(data) => len += data.len(),
                    body::Step::End => break len,
                    body::Step::More => return None,
                }
            }
        }
    };
    Some((status, len))
}

/// Reads from `tcp` until a whole request head has arrived: what was read, or `None` if the
/// peer closed first. For the raw servers of tests.
#[cfg(test)]
pub(crate) async fn read_request_head(tcp: &mut TcpStream) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt as _;
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tcp.read(&mut buf).await.ok().filter(|&n| n > 0)?;
        head.extend_from_slice(&buf[..n]);
    }
    Some(head)
}

#[cfg(test)]
mod tests;
