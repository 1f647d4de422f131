//! The context every live module shares: [`LiveState`] (what the routes hold) and its
//! [`Inner`] (settings, the trickle hub, the pool, payers, HTTP clients and the table of
//! streams). It sits in its own module, below everything that uses it, so that no live module
//! imports its parent back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use livepeer_trickle::{ClientConfig, Hub, HubConfig};

use super::LiveConfig;
use super::auth::{self, Heartbeat};
use super::stream::{Stream, StreamStatus};
use crate::metrics::Metrics;
use crate::orchestrator::Pool;
use crate::payment::Payments;
use crate::task::Tasks;

/// State of the live routes; cheap to clone.
#[derive(Debug, Clone)]
pub struct LiveState {
    pub(crate) inner: Arc<Inner>,
}

/// What the live modules share.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) config: LiveConfig,
    pub(crate) hub: Hub,
    pub(crate) pool: Pool,
    pub(crate) metrics: Metrics,
    /// How orchestrators are paid (and `Livepeer-Segment` headers signed).
    pub(crate) payments: Payments,
    /// Start calls and payments.
    pub(crate) http: reqwest::Client,
    /// Trickle clients toward orchestrators.
    pub(crate) trickle: reqwest::Client,
    pub(crate) trickle_config: ClientConfig,
    streams: Mutex<HashMap<String, Arc<Stream>>>,
    tasks: Tasks,
}

impl LiveState {
    /// Live state over the gateway's pool and payers; its channel sweeper runs on `tasks`.
    pub fn new(
        config: LiveConfig,
        pool: Pool,
        metrics: Metrics,
        payments: Payments,
        tasks: &Tasks,
    ) -> Result<Self, String> {
        let trickle_config = ClientConfig {
            // A read or write that stalls mid-segment fails after the same limit the output
            // watchdog applies; broken connections fail at once regardless.
            chunk_timeout: config.out_segment_timeout,
            max_retries: 2,
            ..ClientConfig::default()
        };
        // HTTP/1.1, one connection per open request: a preconnected POST or GET waits for
        // data for a long time, and over HTTP/2 every one would hold one of the connection's
        // concurrent streams (250 on a Go orchestrator) until new requests queue behind them.
        let trickle = reqwest::Client::builder()
            .http1_only()
            .danger_accept_invalid_certs(trickle_config.accept_invalid_certs)
            .connect_timeout(trickle_config.connect_timeout)
            .tcp_nodelay(true)
            .pool_max_idle_per_host(1024)
            .build()
            .map_err(|e| e.to_string())?;
        let http = reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .connect_timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| e.to_string())?;
        // Three segments per client channel rather than go-livepeer's five: a live client more
        // than a few seconds behind wants the live edge anyway, and at 2 Mbit/s each segment
        // held costs 250 kB per channel.
        let hub = Hub::new(HubConfig {
            autocreate: false,
            window: 3,
            // Four channels per stream.
            max_channels: config.max_streams.saturating_mul(4),
            max_readers: config.trickle_max_readers,
            reader_stall_timeout: config.trickle_stall_timeout,
            ..HubConfig::default()
        });
        let sweeper = hub.clone();
        tasks.spawn("trickle-sweeper", move |cancel| sweeper.run_sweeper(cancel));
        let inner = Inner {
            config,
            hub,
            pool,
            metrics,
            payments,
            http,
            trickle,
            trickle_config,
            streams: Mutex::default(),
            tasks: tasks.clone(),
        };
        let live = Self { inner: Arc::new(inner) };
        if let Some(beat) = live.inner.config.heartbeat.clone() {
            let live = live.clone();
            tasks.spawn("live-heartbeat", move |cancel| async move {
                let mut tick = tokio::time::interval(beat.interval);
                tick.reset();
                loop {
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tick.tick() => live.beat(&beat).await,
                    }
                }
            });
        }
        Ok(live)
    }

    /// One heartbeat: report the running streams, stop those the service terminated.
    async fn beat(&self, beat: &Heartbeat) {
        let running: Vec<Arc<Stream>> = self
            .inner
            .streams
            .lock()
            .map(|s| s.values().filter(|s| !s.is_stopped()).cloned().collect())
            .unwrap_or_default();
        if running.is_empty() {
            return;
        }
        let ids: Vec<String> = running.iter().map(|s| s.spec.id.clone()).collect();
        match auth::heartbeat(&self.inner.http, beat, &ids).await {
            Ok(terminated) => {
                for stream in running.iter().filter(|s| terminated.contains(&s.spec.id)) {
                    tracing::info!(stream = stream.spec.name, "heartbeat terminated the stream");
                    stream.stop("credit_exhaustion");
                }
            }
            // Streams keep running when the service is down, as go-livepeer's do.
            Err(e) => tracing::warn!(error = e, "live heartbeat failed"),
        }
    }

    /// The trickle hub holding the client channels.
    pub fn hub(&self) -> &Hub {
        &self.inner.hub
    }

    /// The configured base URL clients reach this gateway at, if one is set.
    pub fn public_url(&self) -> Option<&str> {
        self.inner.config.public_url.as_deref()
    }

    /// Status of every stream, running or recently stopped.
    pub fn streams(&self) -> Vec<StreamStatus> {
        let streams: Vec<Arc<Stream>> =
            self.inner.streams.lock().map(|s| s.values().cloned().collect()).unwrap_or_default();
        streams.iter().map(|s| s.status()).collect()
    }

    /// The stream named `key`, or else the one whose stream id is `key`.
    pub(crate) fn find(&self, key: &str) -> Option<Arc<Stream>> {
        let streams = self.inner.streams.lock().ok()?;
        streams.get(key).cloned().or_else(|| streams.values().find(|s| s.spec.id == key).cloned())
    }
}

impl Inner {
    /// Adds a stream (replacing a stopped one of the same name); `false` when the gateway
    /// already runs its maximum.
    pub(crate) fn register(&self, stream: Arc<Stream>) -> bool {
        let Ok(mut streams) = self.streams.lock() else { return false };
        let running = streams.values().filter(|s| !s.is_stopped()).count();
        if running >= self.config.max_streams && !streams.contains_key(&stream.spec.name) {
            return false;
        }
        streams.insert(stream.spec.name.clone(), stream);
        true
    }

    /// Forgets a stopped stream after its status has lingered, unless a new stream took the
    /// name meanwhile.
    pub(crate) fn forget_later(self: &Arc<Self>, stream: &Arc<Stream>) {
        let inner = self.clone();
        let stream = stream.clone();
        let linger = self.config.status_linger;
        self.tasks.spawn("live-status-linger", move |cancel| async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = tokio::time::sleep(linger) => {}
            }
            if let Ok(mut streams) = inner.streams.lock()
                && streams.get(&stream.spec.name).is_some_and(|s| Arc::ptr_eq(s, &stream))
            {
                streams.remove(&stream.spec.name);
            }
        });
    }

    pub(crate) fn spawn(&self, name: &'static str, fut: impl Future<Output = ()> + Send + 'static) {
        self.tasks.spawn(name, move |_| fut);
    }
}
