//! Shared by the integration tests: a hub served on a real socket, and scenarios written once
//! against the `Publish`/`Subscribe` traits and run on both the local and the HTTP clients.

// Each test binary uses a different part of this module.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use bytes::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use livepeer_trickle::{
    ClientConfig, HttpPublisher, HttpSubscriber, Hub, HubConfig, Publish, ReadSegment, SEQ_CURRENT,
    SEQ_NEXT, Subscribe, TrickleError, WriteSegment, publish_segment, read_segment,
};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Where the tests mount the routes, as orchestrators do.
pub(crate) const PREFIX: &str = "/ai/trickle";
/// Long enough for anything that should happen, short enough to fail fast.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

/// Awaits `future`, failing the test if it takes longer than [`WAIT`].
pub(crate) async fn within<F: Future>(what: &str, future: F) -> F::Output {
    match tokio::time::timeout(WAIT, future).await {
        Ok(output) => output,
        Err(_) => panic!("timed out: {what}"),
    }
}

/// A hub served over HTTP on 127.0.0.1.
pub(crate) struct TestServer {
    pub(crate) hub: Hub,
    pub(crate) addr: SocketAddr,
    /// GET requests seen (to observe client re-issues).
    pub(crate) gets: Arc<AtomicUsize>,
    accept: JoinHandle<()>,
    scheme: &'static str,
}

fn tls_acceptor() -> tokio_rustls::TlsAcceptor {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    let cert = rustls::pki_types::CertificateDer::from(certified.cert.der().to_vec());
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

impl TestServer {
    pub(crate) async fn start(hub: Hub) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(hub, listener, None)
    }

    /// Serves over TLS with a self-signed certificate, offering HTTP/2 and HTTP/1.1 by ALPN.
    pub(crate) async fn start_tls(hub: Hub) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(hub, listener, Some(tls_acceptor()))
    }

    /// Serves on `addr` again (after [`TestServer::kill`]), retrying while the port is busy.
    pub(crate) async fn restart_at(hub: Hub, addr: SocketAddr) -> Self {
        for _ in 0..100 {
            if let Ok(listener) = TcpListener::bind(addr).await {
                return Self::serve(hub, listener, None);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("could not bind {addr} again");
    }

    fn serve(hub: Hub, listener: TcpListener, tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let addr = listener.local_addr().unwrap();
        let tls_used = tls.is_some();
        let gets = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&gets);
        let app = Router::new().nest(PREFIX, hub.router()).layer(axum::middleware::map_request(
            move |request: axum::extract::Request| {
                let counter = Arc::clone(&counter);
                async move {
                    if request.method() == http::Method::GET {
                        counter.fetch_add(1, Ordering::SeqCst);
                    }
                    request
                }
            },
        ));
        let accept = tokio::spawn(async move {
            // Connections live in this set, so aborting the accept task cuts them all, as a
            // crash would.
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let service = TowerToHyperService::new(app.clone());
                let tls = tls.clone();
                connections.spawn(async move {
                    let builder = auto::Builder::new(TokioExecutor::new());
                    match tls {
                        None => {
                            let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                        }
                        Some(tls) => {
                            let Ok(stream) = tls.accept(stream).await else { return };
                            let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                        }
                    }
                });
                while connections.try_join_next().is_some() {}
            }
        });
        let scheme = if tls_used { "https" } else { "http" };
        Self { hub, addr, gets, accept, scheme }
    }

    /// The URL of channel `name`.
    pub(crate) fn url(&self, name: &str) -> String {
        format!("{}://{}{PREFIX}/{name}", self.scheme, self.addr)
    }

    /// Stops abruptly: the listener and every connection are dropped.
    pub(crate) async fn kill(self) -> SocketAddr {
        self.accept.abort();
        let _ = self.accept.await;
        self.addr
    }
}

/// A client config with short pauses, for tests.
pub(crate) fn client_config() -> ClientConfig {
    ClientConfig {
        retry_pause: Duration::from_millis(50),
        chunk_timeout: Duration::from_secs(5),
        ..ClientConfig::default()
    }
}

/// Makes publishers and subscribers for channels of one hub, one way or the other.
pub(crate) trait Fixture: Send + Sync + 'static {
    type P: Publish + 'static;
    type S: Subscribe + 'static;
    fn hub(&self) -> &Hub;
    fn publisher(&self, channel: &str) -> Self::P;
    fn subscriber(&self, channel: &str, start: i64) -> Self::S;
}

/// The in-process clients.
pub(crate) struct LocalFixture {
    pub(crate) hub: Hub,
}

impl LocalFixture {
    pub(crate) fn new(config: HubConfig) -> Self {
        Self { hub: Hub::new(config) }
    }
}

impl Fixture for LocalFixture {
    type P = livepeer_trickle::LocalPublisher;
    type S = livepeer_trickle::LocalSubscriber;
    fn hub(&self) -> &Hub {
        &self.hub
    }
    fn publisher(&self, channel: &str) -> Self::P {
        self.hub.publisher(channel)
    }
    fn subscriber(&self, channel: &str, start: i64) -> Self::S {
        self.hub.subscriber(channel, start)
    }
}

/// The HTTP clients against the hub served on a socket.
pub(crate) struct HttpFixture {
    pub(crate) server: TestServer,
    pub(crate) client: reqwest::Client,
    pub(crate) config: ClientConfig,
}

impl HttpFixture {
    pub(crate) async fn new(config: HubConfig) -> Self {
        Self::over(TestServer::start(Hub::new(config)).await)
    }

    /// Over HTTPS (and so HTTP/2, as the client negotiates it).
    pub(crate) async fn tls(config: HubConfig) -> Self {
        Self::over(TestServer::start_tls(Hub::new(config)).await)
    }

    fn over(server: TestServer) -> Self {
        let config = client_config();
        Self { server, client: config.client().unwrap(), config }
    }
}

impl Fixture for HttpFixture {
    type P = HttpPublisher;
    type S = HttpSubscriber;
    fn hub(&self) -> &Hub {
        &self.server.hub
    }
    fn publisher(&self, channel: &str) -> Self::P {
        HttpPublisher::new(
            self.client.clone(),
            &self.server.url(channel),
            "video/mp2t",
            self.config.clone(),
        )
        .unwrap()
    }
    fn subscriber(&self, channel: &str, start: i64) -> Self::S {
        HttpSubscriber::new(
            self.client.clone(),
            &self.server.url(channel),
            start,
            self.config.clone(),
        )
        .unwrap()
    }
}

/// Deterministic content for segment `i`.
pub(crate) fn payload(i: usize, len: usize) -> Bytes {
    (0..len).map(|j| (i * 31 + j * 7) as u8).collect::<Vec<u8>>().into()
}

/// The next segment of `subscriber`, whole.
pub(crate) async fn next_whole<S: Subscribe>(subscriber: &mut S) -> Option<(u64, Bytes)> {
    let mut reader = within("subscriber.segment", subscriber.segment()).await.unwrap()?;
    let bytes = within("read_segment", read_segment(&mut reader, 1 << 24)).await.unwrap();
    Some((reader.seq(), bytes))
}

// ---- Scenarios, run by tests/local.rs and tests/http_client.rs -------------------------------

/// Segments published in order reach a subscriber that started first; closing ends it.
pub(crate) async fn publish_and_subscribe<F: Fixture>(fx: &F) {
    fx.hub().create("pubsub", "video/mp2t").unwrap();
    let mut subscriber = fx.subscriber("pubsub", 0);
    let reading = tokio::spawn(async move {
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(next_whole(&mut subscriber).await.unwrap());
        }
        (got, subscriber)
    });
    let mut publisher = fx.publisher("pubsub");
    for i in 0..3 {
        let seq =
            within("publish", publish_segment(&mut publisher, payload(i, 1000 + i))).await.unwrap();
        assert_eq!(seq, i as u64);
    }
    let (got, mut subscriber) = within("reading", reading).await.unwrap();
    for (i, (seq, bytes)) in got.into_iter().enumerate() {
        assert_eq!(seq, i as u64);
        assert_eq!(bytes, payload(i, 1000 + i));
    }
    within("close", publisher.close()).await.unwrap();
    assert!(within("segment after close", subscriber.segment()).await.unwrap().is_none());
    assert!(!fx.hub().contains("pubsub"));
}

/// A subscriber sees a segment's first chunk before the publisher writes the second.
pub(crate) async fn streams_chunk_by_chunk<F: Fixture>(fx: &F) {
    fx.hub().create("stream", "video/mp2t").unwrap();
    // Start 0, not SEQ_NEXT: a "next" subscriber arriving after the first byte would
    // (correctly) wait for the following segment.
    let mut subscriber = fx.subscriber("stream", 0);
    let mut publisher = fx.publisher("stream");
    let mut writer = within("segment", publisher.segment()).await.unwrap();
    let (first_tx, first_rx) = tokio::sync::oneshot::channel();
    let reading = tokio::spawn(async move {
        let mut reader = subscriber.segment().await.unwrap().unwrap();
        let first = reader.chunk().await.unwrap().unwrap();
        first_tx.send(first).unwrap();
        let rest = read_segment(&mut reader, 1 << 20).await.unwrap();
        (reader.seq(), rest)
    });
    within("write 1", writer.write(Bytes::from_static(b"chunk-one|"))).await.unwrap();
    let first = within("first chunk before the second write", first_rx).await.unwrap();
    assert_eq!(first, Bytes::from_static(b"chunk-one|"));
    within("write 2", writer.write(Bytes::from_static(b"chunk-two"))).await.unwrap();
    let seq = within("finish", writer.finish()).await.unwrap();
    let (read_seq, rest) = within("rest", reading).await.unwrap();
    assert_eq!(read_seq, seq);
    assert_eq!(rest, Bytes::from_static(b"chunk-two"));
}

/// A subscriber joining a segment mid-way still gets it from byte 0.
pub(crate) async fn late_joiner_gets_whole_segment<F: Fixture>(fx: &F) {
    fx.hub().create("late", "video/mp2t").unwrap();
    let mut publisher = fx.publisher("late");
    let mut writer = within("segment", publisher.segment()).await.unwrap();
    within("write", writer.write(Bytes::from_static(b"early bytes;"))).await.unwrap();
    // Wait until the server saw the first byte (the HTTP body is asynchronous).
    within("first byte at server", async {
        while fx.hub().stats("late").unwrap().bytes == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    let mut subscriber = fx.subscriber("late", SEQ_CURRENT);
    let reading = tokio::spawn(async move { next_whole(&mut subscriber).await.unwrap() });
    tokio::time::sleep(Duration::from_millis(50)).await;
    within("write", writer.write(Bytes::from_static(b"late bytes"))).await.unwrap();
    within("finish", writer.finish()).await.unwrap();
    let (seq, bytes) = within("read", reading).await.unwrap();
    assert_eq!(seq, 0);
    assert_eq!(bytes, Bytes::from_static(b"early bytes;late bytes"));
}

/// Several subscribers of one channel see identical bytes.
pub(crate) async fn fan_out<F: Fixture>(fx: &F) {
    fx.hub().create("fan", "video/mp2t").unwrap();
    let mut readers = Vec::new();
    for _ in 0..4 {
        let mut subscriber = fx.subscriber("fan", 0);
        readers.push(tokio::spawn(async move {
            let mut all = Vec::new();
            for _ in 0..3 {
                all.push(next_whole(&mut subscriber).await.unwrap());
            }
            all
        }));
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut publisher = fx.publisher("fan");
    for i in 0..3 {
        let mut writer = within("segment", publisher.segment()).await.unwrap();
        for part in 0..5 {
            within("write", writer.write(payload(i * 10 + part, 20_000))).await.unwrap();
        }
        within("finish", writer.finish()).await.unwrap();
    }
    let mut results = Vec::new();
    for reader in readers {
        results.push(within("reader", reader).await.unwrap());
    }
    for (i, (seq, bytes)) in results[0].iter().enumerate() {
        assert_eq!(*seq, i as u64);
        let expected: Vec<u8> =
            (0..5).flat_map(|part| payload(i * 10 + part, 20_000).to_vec()).collect();
        assert_eq!(bytes.as_ref(), expected.as_slice());
    }
    assert!(results.iter().all(|r| *r == results[0]));
}

/// A subscriber behind the window jumps to the live edge instead of failing.
pub(crate) async fn missed_segment_jumps_to_live<F: Fixture>(fx: &F) {
    fx.hub().create("window", "video/mp2t").unwrap();
    let mut publisher = fx.publisher("window");
    for i in 0..8 {
        within("publish", publish_segment(&mut publisher, payload(i, 100))).await.unwrap();
    }
    let stats = fx.hub().stats("window").unwrap();
    assert_eq!(stats.next_write, 8);
    assert!(stats.bytes <= 5 * 100, "window bounds memory: {stats:?}");
    let mut subscriber = fx.subscriber("window", 0);
    let reading = tokio::spawn(async move { next_whole(&mut subscriber).await.unwrap() });
    tokio::time::sleep(Duration::from_millis(100)).await;
    within("publish", publish_segment(&mut publisher, payload(8, 100))).await.unwrap();
    let (seq, bytes) = within("read", reading).await.unwrap();
    assert_eq!(seq, 8);
    assert_eq!(bytes, payload(8, 100));
}

/// Closing the channel releases a subscriber waiting for the next segment.
pub(crate) async fn close_ends_waiting_subscriber<F: Fixture>(fx: &F) {
    fx.hub().create("closing", "video/mp2t").unwrap();
    let mut subscriber = fx.subscriber("closing", SEQ_NEXT);
    let waiting = tokio::spawn(async move { subscriber.segment().await.map(|s| s.is_none()) });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(fx.hub().close("closing"));
    assert!(within("waiting subscriber", waiting).await.unwrap().unwrap());
}

/// Writing into a deleted channel fails with an end-of-stream error, and keeps failing.
pub(crate) async fn write_after_delete_fails<F: Fixture>(fx: &F) {
    fx.hub().create("gone", "video/mp2t").unwrap();
    let mut publisher = fx.publisher("gone");
    within("publish", publish_segment(&mut publisher, payload(0, 10))).await.unwrap();
    let mut writer = within("segment", publisher.segment()).await.unwrap();
    assert!(fx.hub().close("gone"));
    let outcome = match within("write", writer.write(payload(1, 10))).await {
        Ok(()) => within("finish", writer.finish()).await.map(|_| ()),
        Err(error) => Err(error),
    };
    assert!(outcome.unwrap_err().is_end());
    let again = within("publish again", publish_segment(&mut publisher, payload(2, 10))).await;
    assert!(again.unwrap_err().is_end());
}

/// A writer dropped mid-segment releases its readers, and the next segment works.
pub(crate) async fn abandoned_writer_releases_readers<F: Fixture>(fx: &F) {
    fx.hub().create("abandon", "video/mp2t").unwrap();
    let mut subscriber = fx.subscriber("abandon", 0);
    let mut publisher = fx.publisher("abandon");
    let mut writer = within("segment", publisher.segment()).await.unwrap();
    within("write", writer.write(Bytes::from_static(b"partial"))).await.unwrap();
    let mut reader = within("segment", subscriber.segment()).await.unwrap().unwrap();
    assert_eq!(
        within("chunk", reader.chunk()).await.unwrap().unwrap(),
        Bytes::from_static(b"partial")
    );
    drop(writer);
    // The reader ends (an HTTP reader may also see the broken segment as an error).
    let _ = within("reader released", read_segment(&mut reader, 1 << 20)).await;
    let seq =
        within("next publish", publish_segment(&mut publisher, payload(1, 50))).await.unwrap();
    assert_eq!(seq, 1);
    let (read_seq, bytes) = next_whole(&mut subscriber).await.unwrap();
    assert_eq!((read_seq, bytes), (1, payload(1, 50)));
}

/// A segment over the hub's limit is refused.
pub(crate) async fn oversized_segment_is_refused<F: Fixture>(fx: &F) {
    assert_eq!(fx.hub().config().max_segment_bytes, 4096, "fixture made with a small limit");
    fx.hub().create("big", "video/mp2t").unwrap();
    let mut publisher = fx.publisher("big");
    let result = within("publish", async {
        let mut writer = publisher.segment().await?;
        for _ in 0..4 {
            writer.write(payload(0, 2000)).await?;
        }
        writer.finish().await
    })
    .await;
    match result {
        Err(TrickleError::TooLarge { limit: 4096 })
        | Err(TrickleError::Status { status: 413, .. }) => {}
        other => panic!("expected a size error, got {other:?}"),
    }
    assert!(fx.hub().stats("big").unwrap().bytes <= 4096);
}
