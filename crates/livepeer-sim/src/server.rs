//! Listener, TLS and routing: one port serving gRPC and HTTP, as go-livepeer's orchestrator does.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use bytes::Bytes;
use http_body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use livepeer_proto::net::orchestrator_server::OrchestratorServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::grpc::Service;
use crate::{Mode, Shared};

/// Why the simulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// Binding or reading the socket failed.
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    /// Making the self-signed certificate failed.
    #[error("certificate: {0}")]
    Cert(#[from] rcgen::Error),
    /// Building the TLS configuration failed.
    #[error("tls: {0}")]
    Tls(#[from] rustls::Error),
}

/// A self-signed ECDSA P-256 certificate for `localhost` and `127.0.0.1`, like go-livepeer's
/// server/cert.go makes at startup.
pub(crate) fn self_signed() -> Result<Arc<rustls::ServerConfig>, SimError> {
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let certified = rcgen::generate_simple_self_signed(names)?;
    let cert = rustls::pki_types::CertificateDer::from(certified.cert.der().to_vec());
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The same certificate, offering only `http/1.1` by ALPN, as a TLS server without HTTP/2
/// does: a client that insists on `h2` fails the handshake.
pub(crate) fn http1_only_alpn(config: &rustls::ServerConfig) -> Arc<rustls::ServerConfig> {
    let mut config = config.clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// Every route of the simulator. gRPC requests are recognised by path, which is unambiguous
/// because gRPC paths start with the package name (`/net.Orchestrator/...`). The AI routes are
/// merged after the gRPC failure-mode layer: they have their own ([`crate::AiMode`]), so a test
/// can break one side while the other keeps answering.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let grpc = tonic::service::Routes::new(OrchestratorServer::new(Service(shared.clone())))
        .into_axum_router();
    grpc.route("/healthz", axum::routing::get(|| async { "ok" }))
        .layer(middleware::from_fn_with_state(shared.clone(), misbehave))
        .merge(crate::fault::wrap(shared.clone(), crate::ai::routes(shared.clone())))
        .merge(crate::live::routes(shared.clone()))
        .merge(crate::byoc::routes(shared.clone()))
        .merge(crate::transcode::routes(shared))
}

/// Applies the run-time failure modes that live below the gRPC service: hanging and garbage.
async fn misbehave(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let mode = shared.mode.lock().map(|m| m.clone()).unwrap_or_default();
    match mode {
        Mode::Hang => {
            shared.calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            std::future::pending::<()>().await;
            unreachable_response()
        }
        Mode::Garbage => {
            shared.calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            garbage()
        }
        Mode::Normal | Mode::Fail(_) => next.run(req).await,
    }
}

fn unreachable_response() -> Response {
    Response::new(Body::empty())
}

/// A well-framed gRPC answer whose message is not valid protobuf (field 1 with wire type 7).
fn garbage() -> Response {
    let payload: &[u8] = &[0x0f, 0xff, 0xff, 0xff, 0xff];
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(payload);
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
    let body = FrameThenTrailers { data: Some(Bytes::from(frame)), trailers: Some(trailers) };
    let mut resp = Response::new(Body::new(body));
    resp.headers_mut()
        .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/grpc"));
    resp
}

/// A body of one data frame followed by trailers.
struct FrameThenTrailers {
    data: Option<Bytes>,
    trailers: Option<http::HeaderMap>,
}

impl http_body::Body for FrameThenTrailers {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(data) = self.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }
}

/// A mark on a response that is not to be sent: the request is left unanswered as a Go handler
/// that panics leaves it (net/http recovers the panic): over HTTP/1.1 its connection is closed
/// without an answer, over HTTP/2 its stream is reset (`INTERNAL_ERROR`) and the connection
/// serves on. Hyper does the same with a service error, which this mark becomes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Unanswered;

impl std::fmt::Display for Unanswered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("request left unanswered, as a panicking Go handler leaves it")
    }
}

impl std::error::Error for Unanswered {}

// `map_result` wants the service's own error to convert; the router has none.
impl From<Infallible> for Unanswered {
    fn from(never: Infallible) -> Self {
        match never {}
    }
}

/// A response carrying [`Unanswered`]: nothing of it is sent.
pub(crate) fn unanswered() -> Response {
    let mut response = Response::new(Body::empty());
    response.extensions_mut().insert(Unanswered);
    response
}

/// The service's result, with responses marked [`Unanswered`] turned into the error that makes
/// hyper drop them.
fn unanswered_as_error(result: Result<Response, Infallible>) -> Result<Response, Unanswered> {
    match result {
        Ok(response) if response.extensions().get::<Unanswered>().is_some() => Err(Unanswered),
        Ok(response) => Ok(response),
        Err(never) => match never {},
    }
}

/// The kill switch of the connection a request came over, in its extensions: cancelling it
/// drops the connection at once, without an answer to anything in flight on it (a fault
/// mode: an orchestrator that dies mid-request).
#[derive(Debug, Clone)]
pub(crate) struct ConnKill(pub(crate) CancellationToken);

/// Accepts connections until `cancel` fires, then drops the listener and every connection.
/// With `http1_only`, connections speak HTTP/1.1 and nothing else (an h2c preface is a
/// malformed HTTP/1.1 request); otherwise HTTP/1.1 or HTTP/2, whichever the client speaks.
pub(crate) fn spawn(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    http1_only: bool,
    app: Router,
    cancel: CancellationToken,
) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                _ = cancel.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            let app = app.clone();
            let acceptor = acceptor.clone();
            let cancel = cancel.clone();
            tokio::spawn(async move {
                // Each request can reach its connection's kill switch (see `ConnKill`).
                let kill = ConnKill(CancellationToken::new());
                let kill_here = kill.0.clone();
                let app = tower::ServiceExt::map_request(app, move |mut req: http::Request<_>| {
                    req.extensions_mut().insert(kill.clone());
                    req
                });
                let app = tower::ServiceExt::map_result(app, unanswered_as_error);
                let service = TowerToHyperService::new(app);
                let builder = auto::Builder::new(TokioExecutor::new());
                let builder = if http1_only { builder.http1_only() } else { builder };
                let served = async {
                    match acceptor {
                        Some(acceptor) => match acceptor.accept(stream).await {
                            Ok(tls) => builder
                                .serve_connection(TokioIo::new(tls), service)
                                .await
                                .map_err(|e| e.to_string()),
                            Err(e) => Err(e.to_string()),
                        },
                        None => builder
                            .serve_connection(TokioIo::new(stream), service)
                            .await
                            .map_err(|e| e.to_string()),
                    }
                };
                tokio::select! {
                    _ = cancel.cancelled() => {}
                    _ = kill_here.cancelled() => tracing::debug!("connection dropped on purpose"),
                    result = served => if let Err(e) = result {
                        tracing::debug!(error = %e, "connection ended");
                    },
                }
            });
        }
    });
}
