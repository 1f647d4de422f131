//! The HTTP client for calls to orchestrators' AI endpoints and result files.
//!
//! It is hyper's pooling client with our own connector, not a general-purpose client: the
//! request path through the gateway is dominated by per-request overhead (the load test's
//! profile put a third of the gateway's CPU in reqwest's layers: URL parsing, redirect and
//! retry policy, its body wrapper), and an orchestrator call needs none of that. Orchestrators
//! serve self-signed certificates, which are accepted as go-livepeer accepts them (handshake
//! signatures are still checked). With HTTP/2 on, every orchestrator gets one multiplexed
//! connection (h2c for `http://`, ALPN `h2` for `https://`); off, a pool of HTTP/1.1 ones.

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

use crate::error::error_chain;

/// Why an HTTP exchange with an orchestrator failed. Every variant is the orchestrator's or
/// the network's doing; whether a retry is safe is the caller's call (nothing reached the
/// client when these are returned).
#[derive(Debug, Clone, thiserror::Error)]
pub enum HttpError {
    /// The URL is not one we can call.
    #[error("bad url {0}")]
    BadUrl(String),
    /// Connecting or exchanging failed.
    #[error("{0}")]
    Transport(String),
    /// The body was larger than allowed.
    #[error("answer larger than {0} bytes")]
    TooLarge(usize),
}

/// The client. Cheap to clone; clones share connections.
#[derive(Debug, Clone)]
pub struct OrchHttp {
    client: Client<Connector, Full<Bytes>>,
}

impl OrchHttp {
    /// A client with a connect deadline; `http2` selects HTTP/2 for every call (see the module
    /// docs), otherwise HTTP/1.1.
    pub fn new(connect_timeout: Duration, http2: bool) -> Result<Self, String> {
        let alpn: Vec<Vec<u8>> =
            if http2 { vec![b"h2".to_vec()] } else { vec![b"http/1.1".to_vec()] };
        let tls = super::client::accept_any_tls(alpn).map_err(|e| e.to_string())?;
        let connector = Connector {
            tls: tokio_rustls::TlsConnector::from(Arc::new(tls)),
            timeout: connect_timeout,
        };
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .http2_only(http2)
            // Without pings a dead orchestrator's h2 connection would be found only by the
            // next job's timeout.
            .http2_keep_alive_interval(Duration::from_secs(30))
            .http2_keep_alive_timeout(Duration::from_secs(10))
            .build(connector);
        Ok(Self { client })
    }

    /// Sends one request and returns the answer's head; the body streams as it is read.
    pub async fn send(
        &self,
        req: http::Request<Full<Bytes>>,
    ) -> Result<http::Response<Incoming>, HttpError> {
        self.client.request(req).await.map_err(|e| HttpError::Transport(error_chain(&e)))
    }

    /// `GET url`.
    pub async fn get(&self, url: &str) -> Result<http::Response<Incoming>, HttpError> {
        let uri: http::Uri = url.parse().map_err(|_| HttpError::BadUrl(url.to_owned()))?;
        let req = http::Request::get(uri)
            .body(Full::default())
            .map_err(|e| HttpError::BadUrl(format!("{url}: {e}")))?;
        self.send(req).await
    }
}

/// Reads a whole body, refusing more than `limit` bytes.
pub async fn read_body(mut body: Incoming, limit: usize) -> Result<Bytes, HttpError> {
    let mut first: Option<Bytes> = None;
    let mut rest: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| HttpError::Transport(error_chain(&e)))?;
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
            let host = uri.host().ok_or_else(|| invalid("no host"))?;
            let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
            let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
            let dial = async {
                let tcp = TcpStream::connect((host.as_str(), port)).await?;
                tcp.set_nodelay(true)?;
                if !tls {
                    return Ok(Conn::Plain(TokioIo::new(tcp)));
                }
                let name = ServerName::try_from(host.clone())
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
                let stream = this.tls.connect(name, tcp).await?;
                Ok(Conn::Tls(Box::new(TokioIo::new(stream))))
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

/// A connection to an orchestrator, plain or TLS.
#[derive(Debug)]
enum Conn {
    Plain(TokioIo<TcpStream>),
    Tls(Box<TokioIo<tokio_rustls::client::TlsStream<TcpStream>>>),
}

impl Connection for Conn {
    fn connected(&self) -> Connected {
        match self {
            Self::Plain(_) => Connected::new(),
            Self::Tls(s) => {
                let h2 = s.inner().get_ref().1.alpn_protocol() == Some(b"h2");
                if h2 { Connected::new().negotiated_h2() } else { Connected::new() }
            }
        }
    }
}

// Both variants are `Unpin`, so the enum is, and each call can re-pin its variant.
impl hyper::rt::Read for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl hyper::rt::Write for Conn {
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
        bufs: &[std::io::IoSlice<'_>],
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

#[cfg(test)]
mod tests {
    use super::*;

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
        for http2 in [true, false] {
            let client = OrchHttp::new(Duration::from_secs(2), http2).unwrap();
            let body = client.get(&url).await.unwrap().into_body();
            assert_eq!(read_body(body, 9).await.unwrap(), Bytes::from_static(b"abcdefghi"));
            let body = client.get(&url).await.unwrap().into_body();
            assert!(matches!(read_body(body, 8).await, Err(HttpError::TooLarge(8))));
        }
        let client = OrchHttp::new(Duration::from_secs(2), true).unwrap();
        assert!(matches!(client.get("ftp://x/").await, Err(HttpError::Transport(_))));
    }
}
