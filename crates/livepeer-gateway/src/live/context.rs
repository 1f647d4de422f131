//! The context every live module shares: [`LiveState`] (what the routes hold) and its
//! [`Inner`] (settings, the trickle hub, the pool, payers, HTTP clients and the table of
//! streams). It sits in its own module, below everything that uses it, so that no live module
//! imports its parent back.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use livepeer_trickle::{ClientConfig, Hub, HubConfig};
use tokio::time::Instant;

use super::LiveConfig;
use super::auth::{self, Heartbeat};
use super::error::LiveError;
use super::owner::Credentials;
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
    /// The operator's own services: the auth webhook and the heartbeat. Unlike
    /// orchestrators, whose certificates are self-signed by design, these are checked: the
    /// auth webhook is sent its API key and every client's `Authorization`, and decides
    /// which streams start.
    pub(crate) services: reqwest::Client,
    /// Trickle clients toward orchestrators.
    pub(crate) trickle: reqwest::Client,
    pub(crate) trickle_config: ClientConfig,
    streams: Mutex<Table>,
    tasks: Tasks,
}

/// Why a stream replaced by its owner's new `/start` stopped.
const REPLACED: &str = "replaced by a new start";

/// The streams by name: running ones, and stopped ones kept a while for their status.
#[derive(Debug, Default)]
struct Table {
    streams: HashMap<String, Arc<Stream>>,
    /// The stopped streams still in `streams`, oldest first, each with when it is forgotten.
    /// Bounded by `--live-max-stopped-streams`: start/stop cycles cannot pile them up.
    retired: VecDeque<(Instant, Arc<Stream>)>,
}

impl Table {
    /// Forgets the stopped streams whose status has lingered long enough.
    fn purge(&mut self, now: Instant) {
        while self.retired.front().is_some_and(|(until, _)| *until <= now) {
            self.evict_oldest();
        }
    }

    /// See [`Inner::register`].
    fn reserve(
        &mut self,
        stream: Arc<Stream>,
        presented: Credentials<'_>,
        max_streams: usize,
    ) -> Result<Option<Arc<Stream>>, LiveError> {
        let name = stream.spec.name.clone();
        let replaced = match self.streams.get(&name) {
            Some(old) if !old.is_stopped() => {
                if !old.replaceable_by(presented) {
                    return Err(LiveError::Exists { stream: name });
                }
                Some(old.clone())
            }
            _ => None,
        };
        // Counted without the stream being replaced, not by subtracting one: a stop of it
        // (which takes no table lock) may land between the two reads.
        let others = |s: &&Arc<Stream>| replaced.as_ref().is_none_or(|r| !Arc::ptr_eq(s, r));
        let running = self.streams.values().filter(others).filter(|s| !s.is_stopped()).count();
        if running >= max_streams {
            return Err(LiveError::TooManyStreams { max: max_streams });
        }
        if let Some(old) = &replaced {
            old.stop(REPLACED);
        }
        if let Some(old) = self.streams.insert(name, stream) {
            self.retired.retain(|(_, s)| !Arc::ptr_eq(s, &old));
        }
        Ok(replaced)
    }

    /// Keeps the stopped `stream` until `until`, evicting the oldest beyond `cap`; nothing
    /// when a new stream took its name meanwhile.
    fn retire(&mut self, stream: &Arc<Stream>, until: Instant, cap: usize) {
        let current = self.streams.get(&stream.spec.name).is_some_and(|s| Arc::ptr_eq(s, stream));
        if !current || self.retired.iter().any(|(_, s)| Arc::ptr_eq(s, stream)) {
            return;
        }
        self.retired.push_back((until, stream.clone()));
        while self.retired.len() > cap {
            self.evict_oldest();
        }
    }

    fn evict_oldest(&mut self) {
        let Some((_, stream)) = self.retired.pop_front() else { return };
        // A new stream may have taken the name since: that one stays.
        if self.streams.get(&stream.spec.name).is_some_and(|s| Arc::ptr_eq(s, &stream)) {
            self.streams.remove(&stream.spec.name);
        }
    }
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
            .default_headers(crate::orchestrator::http::hop_headers())
            .danger_accept_invalid_certs(trickle_config.accept_invalid_certs)
            .connect_timeout(trickle_config.connect_timeout)
            .tcp_nodelay(true)
            .pool_max_idle_per_host(1024)
            // Channel URLs are the orchestrator's: a redirect would send the gateway (and
            // what it reads back into the client's channels) anywhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| e.to_string())?;
        // Live starts and payments. HTTP/2 (TLS orchestrators that pick it by ALPN) takes the
        // header lists the other orchestrator clients take, not hyper's 16 KiB; HTTP/1.1
        // (`http://` ones) keeps hyper's bounds, a head within its 400 KiB read buffer and of
        // at most 100 fields. reqwest's default retry policy already sends a refused stream
        // (`REFUSED_STREAM`) again, twice at most, when its body is in memory, as theirs is.
        let http = reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .default_headers(crate::orchestrator::http::hop_headers())
            .http2_max_header_list_size(crate::orchestrator::client::MAX_HEADER_LIST)
            .connect_timeout(Duration::from_secs(2))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| e.to_string())?;
        let services = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .redirect(reqwest::redirect::Policy::none())
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
            idle_timeout: config.trickle_idle_timeout,
            closed_linger: super::CLOSED_CHANNEL_LINGER,
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
            services,
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
            .table()
            .map(|t| t.streams.values().filter(|s| !s.is_stopped()).cloned().collect())
            .unwrap_or_default();
        if running.is_empty() {
            return;
        }
        let ids: Vec<String> = running.iter().map(|s| s.spec.id.clone()).collect();
        match auth::heartbeat(&self.inner.services, beat, &ids).await {
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

    /// How often running streams are paid for (`--live-payment-interval`).
    pub fn payment_interval(&self) -> std::time::Duration {
        self.inner.config.payment_interval
    }

    /// The configured base URL clients reach this gateway at, if one is set.
    pub fn public_url(&self) -> Option<&str> {
        self.inner.config.public_url.as_deref()
    }

    /// Status of every stream, running or recently stopped.
    pub fn streams(&self) -> Vec<StreamStatus> {
        let streams: Vec<Arc<Stream>> =
            self.inner.table().map(|t| t.streams.values().cloned().collect()).unwrap_or_default();
        streams.iter().map(|s| s.status()).collect()
    }

    /// The stream named `key`, or else the one whose stream id is `key`.
    pub(crate) fn find(&self, key: &str) -> Option<Arc<Stream>> {
        let table = self.inner.table()?;
        let streams = &table.streams;
        streams.get(key).cloned().or_else(|| streams.values().find(|s| s.spec.id == key).cloned())
    }

    /// The stream named `name` (not by stream id), running or stopped.
    pub(crate) fn named(&self, name: &str) -> Option<Arc<Stream>> {
        self.inner.table()?.streams.get(name).cloned()
    }
}

impl Inner {
    /// The table, with the stopped streams whose time is up forgotten; `None` when a panic
    /// poisoned it.
    fn table(&self) -> Option<MutexGuard<'_, Table>> {
        let mut table = self.streams.lock().ok()?;
        table.purge(Instant::now());
        Some(table)
    }

    /// Reserves the stream's name, atomically: one of any number of concurrent starts of a
    /// name wins, before any of them contacts or pays an orchestrator. A stopped stream of the
    /// name is replaced, and so is a running one when `presented` are its owner's credentials
    /// (it is stopped here, under the table's lock, and answered so that its release can be
    /// awaited). A stream still starting, which a replacement is until it has attached, is
    /// never replaced, nor one of another owner ([`LiveError::Exists`]): while a start of a
    /// name is in flight, every other start of it is refused, so concurrent restarts by the
    /// owner end with one stream.
    pub(crate) fn register(
        &self,
        stream: Arc<Stream>,
        presented: Credentials<'_>,
    ) -> Result<Option<Arc<Stream>>, LiveError> {
        let Some(mut table) = self.table() else {
            return Err(LiveError::Internal("the table of live streams is unusable".into()));
        };
        table.reserve(stream, presented, self.config.max_streams)
    }

    /// Keeps a stopped stream's status readable for `status_linger`, or until
    /// `max_stopped_streams` newer stopped streams push it out.
    pub(crate) fn forget_later(&self, stream: &Arc<Stream>) {
        let Some(mut table) = self.table() else { return };
        let until = Instant::now() + self.config.status_linger;
        table.retire(stream, until, self.config.max_stopped_streams);
    }

    pub(crate) fn spawn(&self, name: &'static str, fut: impl Future<Output = ()> + Send + 'static) {
        self.tasks.spawn(name, move |_| fut);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::owner::Owner;
    use super::super::stream::StreamSpec;
    use super::*;
    use crate::orchestrator::JobKey;

    const NOBODY: Credentials<'static> = Credentials { authorization: None, secret: None };

    fn stream(name: &str) -> Arc<Stream> {
        owned(name, None).0
    }

    /// A stream started with `authorization`, and its secret.
    fn owned(name: &str, authorization: Option<&str>) -> (Arc<Stream>, String) {
        let (owner, secret) = Owner::new(authorization);
        let spec = StreamSpec {
            name: name.into(),
            channel: format!("{name}-0"),
            id: name.into(),
            request_id: "r".into(),
            pipeline: "noop".into(),
            pin: None,
            owner,
        };
        let key = JobKey::ai("live-video-to-video", "noop").unwrap();
        (Arc::new(Stream::new(spec, key, json!({}))), secret)
    }

    fn names(table: &Table) -> Vec<String> {
        let mut names: Vec<String> = table.streams.keys().cloned().collect();
        names.sort();
        names
    }

    #[test]
    fn a_running_name_is_never_taken_and_a_stopped_one_is_freed() {
        let mut table = Table::default();
        let first = stream("cam");
        table.reserve(first.clone(), NOBODY, 10).unwrap();
        let err = table.reserve(stream("cam"), NOBODY, 10).unwrap_err();
        assert_eq!(err, LiveError::Exists { stream: "cam".into() });
        assert!(Arc::ptr_eq(&table.streams["cam"], &first));
        first.stop("done");
        table.retire(&first, Instant::now() + Duration::from_secs(60), 10);
        let second = stream("cam");
        table.reserve(second.clone(), NOBODY, 10).unwrap();
        assert!(table.retired.is_empty(), "the replaced stream still counts as retained");
        // The old stream's retirement cannot evict the new one.
        table.retire(&first, Instant::now(), 10);
        table.purge(Instant::now());
        assert!(Arc::ptr_eq(&table.streams["cam"], &second));
    }

    #[test]
    fn only_the_owner_replaces_a_running_stream_and_never_one_still_starting() {
        let mut table = Table::default();
        let alice = Credentials { authorization: Some("Bearer alice"), secret: None };
        let (first, secret) = owned("cam", Some("Bearer alice"));
        table.reserve(first.clone(), alice, 1).unwrap();
        // Starting: not even its owner replaces it.
        let err = table.reserve(stream("cam"), alice, 1).unwrap_err();
        assert_eq!(err, LiveError::Exists { stream: "cam".into() });
        first.attached("o", "m");
        let eve = Credentials { authorization: Some("Bearer eve"), secret: None };
        for other in [eve, NOBODY] {
            let err = table.reserve(stream("cam"), other, 1).unwrap_err();
            assert_eq!(err, LiveError::Exists { stream: "cam".into() });
            assert!(!first.is_stopped());
        }
        // Its owner replaces it (within the cap it held itself): it is stopped and handed back.
        let second = stream("cam");
        let replaced = table.reserve(second.clone(), alice, 1).unwrap().unwrap();
        assert!(Arc::ptr_eq(&replaced, &first) && first.is_stopped());
        assert!(Arc::ptr_eq(&table.streams["cam"], &second));
        // The replacement is starting: a concurrent restart with the old secret is refused too.
        let by_secret = Credentials { authorization: None, secret: Some(&secret) };
        assert!(table.reserve(stream("cam"), by_secret, 1).is_err());
        // The replaced stream's retirement leaves its successor alone.
        table.retire(&first, Instant::now(), 10);
        table.purge(Instant::now());
        assert!(Arc::ptr_eq(&table.streams["cam"], &second));
    }

    #[test]
    fn running_streams_are_capped_and_stopped_ones_do_not_count() {
        let mut table = Table::default();
        let a = stream("a");
        table.reserve(a.clone(), NOBODY, 1).unwrap();
        let err = table.reserve(stream("b"), NOBODY, 1).unwrap_err();
        assert_eq!(err, LiveError::TooManyStreams { max: 1 });
        a.stop("done");
        table.reserve(stream("b"), NOBODY, 1).unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn stopped_streams_go_oldest_first_beyond_the_cap_or_after_their_linger() {
        let mut table = Table::default();
        let linger = Duration::from_secs(60);
        for i in 0..5 {
            let s = stream(&format!("s{i}"));
            table.reserve(s.clone(), NOBODY, 10).unwrap();
            s.stop("done");
            table.retire(&s, Instant::now() + linger, 3);
            tokio::time::advance(Duration::from_secs(10)).await;
        }
        assert_eq!(names(&table), ["s2", "s3", "s4"]);
        let running = stream("live");
        table.reserve(running, NOBODY, 10).unwrap();
        // s2 stopped 30 s ago: 30 s more and it is gone, then s3 and s4.
        tokio::time::advance(Duration::from_secs(29)).await;
        table.purge(Instant::now());
        assert_eq!(names(&table), ["live", "s2", "s3", "s4"]);
        tokio::time::advance(Duration::from_secs(1)).await;
        table.purge(Instant::now());
        assert_eq!(names(&table), ["live", "s3", "s4"]);
        tokio::time::advance(Duration::from_secs(20)).await;
        table.purge(Instant::now());
        assert_eq!(names(&table), ["live"], "a running stream never lingers out");
    }
}
