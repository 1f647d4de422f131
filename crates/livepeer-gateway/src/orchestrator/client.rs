//! The gRPC client for `net.Orchestrator`, over TLS (the orchestrator's self-signed certificate)
//! or plain h2c for `http://` addresses.
//!
//! go-livepeer skips certificate verification entirely (GATEWAY.md §4.7). We do the same by
//! default so real orchestrators work, and offer trust-on-first-use pinning: the first
//! certificate seen for an address is remembered and any other one is refused. Every call has a
//! connect deadline and an overall deadline, and every failure is classified.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use livepeer_pm::{Address, Signature};
use livepeer_proto::net;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};
use url::Url;

use super::caps::Capabilities;
use super::info::OrchInfo;
use super::text::cut;

/// The largest GetOrchestrator answer decoded (gRPC's default is 4 MiB). go-livepeer's carry a
/// price and constraints per model and some hardware entries: kilobytes, tens of them for an
/// orchestrator of hundreds of models. What is kept of one is decoded whole on every refresh
/// and payment renewal; this bounds what that costs.
pub const MAX_INFO_BYTES: usize = 1 << 20;

/// Why a GetOrchestrator call failed. Every variant but [`Self::Local`] is the orchestrator's
/// (or the network's) doing, so each one counts against the orchestrator, and a retry
/// elsewhere is always safe: discovery sends no job and no payment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// Could not connect (refused, unreachable, TLS handshake failed).
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// No answer within the deadline.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The orchestrator answered with an error, e.g. `OrchestratorCapped`.
    #[error("refused: {0}")]
    Refused(String),
    /// The answer could not be decoded or failed validation.
    #[error("malformed answer: {0}")]
    Malformed(String),
    /// The address cannot be dialled at all (configuration problem, not the orchestrator's).
    #[error("bad address: {0}")]
    BadAddress(String),
    /// The gateway ran out of descriptors or memory for the connection: nothing was sent,
    /// and the orchestrator is not to blame.
    #[error("the gateway could not open a connection: {0}")]
    Local(String),
}

impl ClientError {
    /// A short stable code for metrics labels.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unreachable(_) => "unreachable",
            Self::Timeout(_) => "DeadlineExceeded",
            Self::Refused(m) if m.contains("OrchestratorCapped") => "OrchestratorCapped",
            Self::Refused(_) => "refused",
            Self::Malformed(_) => "malformed",
            Self::BadAddress(_) => "bad_address",
            Self::Local(_) => "gateway_exhausted",
        }
    }
}

/// The largest HTTP/2 header list (each field's name and value plus 32 bytes, as RFC 9113
/// counts it) taken in an answer's head or trailers, by hyper's client and the gRPC one. A
/// longer list fails the call as the orchestrator's, as a head over the HTTP/1.1 client's
/// limit does: its stream is reset, or the connection dropped when the block runs on far past
/// the limit. Set here rather than left to hyper's default (16 KiB, which refused heads the
/// HTTP/1.1 client takes) so that the bound does not move with a dependency.
pub const MAX_HEADER_LIST: u32 = 64 << 10;

/// How to treat orchestrators' TLS certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsTrust {
    /// Accept any certificate, as go-livepeer does.
    #[default]
    AcceptAny,
    /// Remember the first certificate of each address and refuse a different one later.
    PinFirst,
}

/// The gateway's identity in `OrchestratorRequest`: its address and `eth_sign` of its
/// checksummed hex string (PROTOCOL.md §2.3), computed once.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The gateway's address.
    pub address: Address,
    /// The signature over its checksummed hex string.
    pub sig: Signature,
}

/// Deadlines of one client.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// TCP plus TLS handshake.
    pub connect: Duration,
    /// The whole call, connect included.
    pub call: Duration,
}

/// A GetOrchestrator client shared by all discovery tasks; connections are reused per address.
#[derive(Debug, Clone)]
pub struct OrchClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    timeouts: Timeouts,
    trust: TlsTrust,
    identity: Option<Identity>,
    provider: Arc<CryptoProvider>,
    pins: Pins,
    channels: Mutex<HashMap<String, Channel>>,
}

// === impl OrchClient ===

impl OrchClient {
    /// The address it presents to orchestrators, if any.
    pub fn identity_address(&self) -> Option<Address> {
        self.inner.identity.as_ref().map(|i| i.address)
    }

    /// A client with the given deadlines, trust mode and (optional) signing identity.
    pub fn new(timeouts: Timeouts, trust: TlsTrust, identity: Option<Identity>) -> Self {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        Self {
            inner: Arc::new(Inner {
                timeouts,
                trust,
                identity,
                provider,
                pins: Arc::default(),
                channels: Mutex::default(),
            }),
        }
    }

    /// Calls GetOrchestrator on `url`, asking for `caps` (None = "all prices" mode).
    pub async fn get_orchestrator(
        &self,
        url: &Url,
        caps: Option<&Capabilities>,
        ignore_capacity_check: bool,
    ) -> Result<OrchInfo, ClientError> {
        let started = Instant::now();
        let answer = self.call(url, caps, ignore_capacity_check).await?;
        OrchInfo::from_wire(answer, started.elapsed()).map_err(|e| ClientError::Malformed(e.0))
    }

    /// The GetOrchestrator call itself, with its deadline and error classification.
    async fn call(
        &self,
        url: &Url,
        caps: Option<&Capabilities>,
        ignore_capacity_check: bool,
    ) -> Result<net::OrchestratorInfo, ClientError> {
        let deadline = self.inner.timeouts.call;
        let request = net::OrchestratorRequest {
            address: self.inner.identity.as_ref().map(|i| i.address.to_vec()).unwrap_or_default(),
            sig: self.inner.identity.as_ref().map(|i| i.sig.0.to_vec()).unwrap_or_default(),
            capabilities: caps.map(net::Capabilities::from),
            ignore_capacity_check,
        };
        let channel = self.channel(url)?;
        let mut req = tonic::Request::new(request);
        req.set_timeout(deadline);
        let call = livepeer_proto::kept::get_orchestrator(channel, req, MAX_INFO_BYTES);
        let result = tokio::time::timeout(deadline, call).await;
        let answer = match result {
            Err(_) => Err(ClientError::Timeout(deadline)),
            Ok(Err(status)) => Err(classify(&status, deadline)),
            Ok(Ok(resp)) => Ok(net::OrchestratorInfo::from(resp.into_inner())),
        };
        answer.inspect_err(|_| self.forget(url))
    }

    /// Like [`OrchClient::get_orchestrator`], also returning the answer's protobuf bytes, which
    /// a remote signer needs verbatim (`/generate-live-payment`).
    pub async fn get_orchestrator_with_bytes(
        &self,
        url: &Url,
        caps: Option<&Capabilities>,
        ignore_capacity_check: bool,
    ) -> Result<(OrchInfo, Vec<u8>), ClientError> {
        let started = Instant::now();
        let answer = self.call(url, caps, ignore_capacity_check).await?;
        let bytes = livepeer_proto::Message::encode_to_vec(&answer);
        let info = OrchInfo::from_wire(answer, started.elapsed())
            .map_err(|e| ClientError::Malformed(e.0))?;
        Ok((info, bytes))
    }

    fn forget(&self, url: &Url) {
        if let Ok(mut map) = self.inner.channels.lock() {
            map.remove(url.as_str());
        }
    }

    fn channel(&self, url: &Url) -> Result<Channel, ClientError> {
        let key = url.as_str().to_owned();
        let mut map =
            self.inner.channels.lock().map_err(|_| ClientError::BadAddress("lock".into()))?;
        if let Some(ch) = map.get(&key) {
            return Ok(ch.clone());
        }
        let host = url.host_str().ok_or_else(|| ClientError::BadAddress(key.clone()))?;
        let port =
            url.port_or_known_default().ok_or_else(|| ClientError::BadAddress(key.clone()))?;
        let authority = match url.host() {
            Some(url::Host::Ipv6(ip)) => format!("[{ip}]:{port}"),
            _ => format!("{host}:{port}"),
        };
        // The endpoint URI is always `http://`: TLS, when wanted, happens in our connector.
        let endpoint = Endpoint::from_shared(format!("http://{authority}"))
            .map_err(|e| ClientError::BadAddress(format!("{key}: {e}")))?
            .connect_timeout(self.inner.timeouts.connect)
            .http2_max_header_list_size(MAX_HEADER_LIST)
            .tcp_nodelay(true);
        let channel = match url.scheme() {
            "http" => endpoint.connect_lazy(),
            "https" => {
                let tls = self.tls_config(&key)?;
                let connector = TlsConnector {
                    tls: tokio_rustls::TlsConnector::from(Arc::new(tls)),
                    authority: authority.clone(),
                    host: host.trim_start_matches('[').trim_end_matches(']').to_owned(),
                    timeout: self.inner.timeouts.connect,
                };
                endpoint.connect_with_connector_lazy(connector)
            }
            other => return Err(ClientError::BadAddress(format!("unsupported scheme {other}"))),
        };
        map.insert(key, channel.clone());
        Ok(channel)
    }

    fn tls_config(&self, key: &str) -> Result<rustls::ClientConfig, ClientError> {
        let verifier = Verifier {
            provider: self.inner.provider.clone(),
            pin: match self.inner.trust {
                TlsTrust::AcceptAny => None,
                TlsTrust::PinFirst => Some((self.inner.pins.clone(), key.to_owned())),
            },
        };
        tls_with(verifier, vec![b"h2".to_vec()]).map_err(|e| ClientError::BadAddress(e.to_string()))
    }
}

fn classify(status: &tonic::Status, deadline: Duration) -> ClientError {
    use tonic::Code;
    // The orchestrator's `grpc-message` goes into the pool's record, logs and, for calls on
    // the request path, the client's error: cut short and on one line (a 15 kB one was kept
    // whole; the header list allows up to `MAX_HEADER_LIST`).
    let msg = cut(status.message());
    // Connection failures surface as a status wrapping tonic's transport error; keep the
    // underlying cause (refused, reset, TLS) in the message.
    if msg == "transport error"
        || std::error::Error::source(status).is_some_and(|s| s.is::<tonic::transport::Error>())
    {
        // The status's own Display is verbose; its message plus the sources say it all.
        let detail = match std::error::Error::source(status) {
            Some(source) => format!("{msg}: {}", crate::error::error_chain(source)),
            None => msg.clone(),
        };
        if detail.contains("timed out") || detail.contains("Timeout expired") {
            return ClientError::Timeout(deadline);
        }
        if std::error::Error::source(status).is_some_and(crate::error::is_local_exhaustion) {
            return ClientError::Local(detail);
        }
        return ClientError::Unreachable(detail);
    }
    match status.code() {
        Code::DeadlineExceeded | Code::Cancelled => ClientError::Timeout(deadline),
        Code::Unavailable => ClientError::Unreachable(msg),
        // tonic reports undecodable bodies and protocol violations as Internal/Unimplemented/
        // Unknown with its own wording; an orchestrator's own errors arrive as Unknown.
        Code::Internal
            if msg.contains("decode")
                || msg.contains("protocol")
                || msg.contains("Missing response message") =>
        {
            ClientError::Malformed(msg)
        }
        // tonic's own refusal of a message over its decoding limit (4 MiB).
        Code::OutOfRange if msg.contains("message length too large") => ClientError::Malformed(msg),
        Code::Unknown if msg.is_empty() || msg.contains("h2 protocol error") => {
            ClientError::Malformed(cut(&format!("{status}")))
        }
        _ => ClientError::Refused(msg),
    }
}

/// First certificate (DER) seen per orchestrator address.
type Pins = Arc<Mutex<HashMap<String, Vec<u8>>>>;

/// Dials TCP, then TLS with ALPN h2, within one deadline.
/// A TLS configuration that accepts any server certificate (still checking handshake
/// signatures), as go-livepeer does for orchestrators, offering `alpn` protocols.
pub(crate) fn accept_any_tls(alpn: Vec<Vec<u8>>) -> Result<rustls::ClientConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    tls_with(Verifier { provider, pin: None }, alpn)
}

/// A client TLS configuration checking certificates with `verifier`, offering `alpn`.
fn tls_with(verifier: Verifier, alpn: Vec<Vec<u8>>) -> Result<rustls::ClientConfig, rustls::Error> {
    let mut config = rustls::ClientConfig::builder_with_provider(verifier.provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = alpn;
    Ok(config)
}

#[derive(Clone)]
struct TlsConnector {
    tls: tokio_rustls::TlsConnector,
    authority: String,
    host: String,
    timeout: Duration,
}

impl tower::Service<http::Uri> for TlsConnector {
    type Response = hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;
    type Error = std::io::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let dial = async {
                let tcp = tokio::net::TcpStream::connect(&this.authority).await?;
                tcp.set_nodelay(true)?;
                let name = ServerName::try_from(this.host.clone())
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
                let tls = this.tls.connect(name, tcp).await?;
                Ok(hyper_util::rt::TokioIo::new(tls))
            };
            tokio::time::timeout(this.timeout, dial).await.map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")
            })?
        })
    }
}

/// Accepts the orchestrator's self-signed certificate, optionally pinning the first one seen.
/// Handshake signatures are still verified, so the peer must hold the certificate's key.
#[derive(Debug)]
struct Verifier {
    provider: Arc<CryptoProvider>,
    pin: Option<(Pins, String)>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some((pins, key)) = &self.pin {
            let mut pins = pins.lock().map_err(|_| rustls::Error::General("pin lock".into()))?;
            let seen = pins.entry(key.clone()).or_insert_with(|| end_entity.to_vec());
            if seen.as_slice() != end_entity.as_ref() {
                return Err(rustls::Error::General(format!(
                    "certificate of {key} differs from the one pinned on first contact"
                )));
            }
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_orchestrators_grpc_message_is_cut_onto_one_line() {
        let deadline = Duration::from_secs(1);
        let forged = "OrchestratorCapped\nlevel=INFO msg=\"ticket redeemed\"\r";
        let e = classify(&tonic::Status::unknown(forged), deadline);
        let ClientError::Refused(msg) = &e else { panic!("{e:?}") };
        assert_eq!(msg, "OrchestratorCapped level=INFO msg=\"ticket redeemed\"");
        assert_eq!(e.code(), "OrchestratorCapped");
        let long = tonic::Status::unknown("x".repeat(15_000));
        let ClientError::Refused(msg) = classify(&long, deadline) else { panic!() };
        assert_eq!(msg.len(), super::super::text::MAX_CHARS);
    }
}
