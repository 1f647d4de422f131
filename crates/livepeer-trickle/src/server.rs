//! The channels of one trickle server, and their HTTP routes.

mod channel;
mod http;
mod reader;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use tokio_util::sync::CancellationToken;

use crate::TrickleError;
use crate::local::{LocalPublisher, LocalSubscriber};

use channel::lock;
pub(crate) use channel::{AppendError, Channel, Cursor, ReadSlot, ReaderSlot, Segment};

/// Longest channel name accepted.
pub const MAX_CHANNEL_NAME: usize = 256;

/// Channel `name` as logs show it: each `-`-separated part of 16 or more hex digits becomes
/// `…`. Why: a stream's channels are named `<stream>-<random hex>[-out|-control|-events]`,
/// and that random part is all that guards them (whoever knows it can publish into the
/// stream or watch its output), so it must not reach a log file an operator may share.
pub(crate) fn shown(name: &str) -> String {
    let secret = |part: &str| part.len() >= 16 && part.bytes().all(|b| b.is_ascii_hexdigit());
    let parts: Vec<&str> =
        name.split('-').map(|part| if secret(part) { "…" } else { part }).collect();
    parts.join("-")
}

/// Limits and behaviour of a [`Hub`].
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Segments kept per channel (go-livepeer: 5); older ones are evicted.
    pub window: usize,
    /// Largest segment accepted, in bytes; a publisher that sends more gets 413.
    pub max_segment_bytes: usize,
    /// Most channels at once; creating more fails.
    pub max_channels: usize,
    /// A channel with no new segment for this long is closed and removed (go-livepeer: 5 min).
    pub idle_timeout: Duration,
    /// Whether a POST to an unknown channel creates it (go-livepeer orchestrators: no).
    pub autocreate: bool,
    /// Most subscribers (segment GETs, waiting or streaming) served at once per channel; more
    /// get 503 `Too many subscribers` (go-livepeer has no cap). Each may pin one segment; of
    /// segments the window evicted, a channel keeps at most `window × max_segment_bytes` for
    /// them, letting go of the subscribers of the oldest beyond that.
    pub max_readers: usize,
    /// A subscriber that has not taken the bytes already handed to its connection (hyper's
    /// buffer: a few hundred kB at most) within this long is let go: its segment and its place
    /// are released, and its response ends in an error so that its connection is closed.
    /// Waiting for a publisher is not stalling.
    pub reader_stall_timeout: Duration,
    /// How long a closed channel stays readable, so that a subscriber asking for its last
    /// segments just after the end still gets them and then the end-of-stream mark, instead
    /// of 404 (go-livepeer removes a channel at once: zero, the default). Writers, `DELETE` and
    /// [`Hub::contains`] see it gone at once.
    pub closed_linger: Duration,
    /// Most bytes of segments kept by closed channels in all; the oldest closed channels are let
    /// go first. Their count is bounded by `max_channels` too.
    pub closed_bytes: usize,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            window: 5,
            max_segment_bytes: 16 << 20,
            max_channels: 10_000,
            idle_timeout: Duration::from_secs(300),
            autocreate: false,
            max_readers: 64,
            reader_stall_timeout: Duration::from_secs(10),
            closed_linger: Duration::ZERO,
            closed_bytes: 64 << 20,
        }
    }
}

/// What a channel holds now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelStats {
    /// Its mime type.
    pub mime: String,
    /// The next sequence number a publisher writes.
    pub next_write: u64,
    /// Bytes held in its window.
    pub bytes: usize,
    /// Whether it was closed.
    pub closed: bool,
    /// Subscribers being served now.
    pub readers: usize,
}

/// Why a channel could not be created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CreateError {
    /// The name is empty, too long, or has a `/` or control character.
    BadName,
    /// The hub already holds `max_channels` channels.
    Full,
    /// The hub is shutting down ([`Hub::run_sweeper`]'s end): no channel is made after it
    /// closed them all, which nothing would close again.
    Closing,
}

impl From<CreateError> for TrickleError {
    fn from(error: CreateError) -> Self {
        match error {
            CreateError::BadName => TrickleError::Invalid(format!(
                "channel names must be 1 to {MAX_CHANNEL_NAME} bytes without '/' or control characters"
            )),
            CreateError::Full => TrickleError::Invalid("too many trickle channels".to_owned()),
            CreateError::Closing => TrickleError::Closed,
        }
    }
}

#[derive(Debug)]
struct HubInner {
    config: HubConfig,
    channels: Mutex<HashMap<String, Arc<Channel>>>,
    /// Closed channels still readable, oldest first.
    closed: Mutex<Lingering>,
    /// Set when the sweeper closed every channel at shutdown.
    closing: std::sync::atomic::AtomicBool,
}

/// Closed channels kept readable for [`HubConfig::closed_linger`].
#[derive(Debug, Default)]
struct Lingering {
    /// Oldest first: when each closed, and the bytes it kept.
    order: VecDeque<(Instant, Arc<Channel>, usize)>,
    /// The newest closed channel of each name, for lookups that do not scan `order` (a GET
    /// of an unknown name must not cost as much as the channels kept).
    by_name: HashMap<String, (Instant, Arc<Channel>)>,
    bytes: usize,
}

impl Lingering {
    fn push(&mut self, channel: Arc<Channel>) {
        let (now, bytes) = (Instant::now(), channel.snapshot().bytes);
        self.bytes = self.bytes.saturating_add(bytes);
        self.by_name.insert(channel.name().to_owned(), (now, Arc::clone(&channel)));
        self.order.push_back((now, channel, bytes));
    }

    /// The channel `name` if it closed at `since` or later.
    fn get(&self, name: &str, since: Option<Instant>) -> Option<Arc<Channel>> {
        let (at, channel) = self.by_name.get(name)?;
        since.is_none_or(|since| *at >= since).then(|| Arc::clone(channel))
    }

    /// Lets go of the oldest channels while there are more than `max` of them, more than
    /// `max_bytes` in all, or any closed before `before`.
    fn prune(&mut self, max: usize, max_bytes: usize, before: Option<Instant>) {
        while let Some((at, channel, bytes)) = self.order.front() {
            let expired = before.is_some_and(|before| *at < before);
            if !expired && self.order.len() <= max && self.bytes <= max_bytes {
                break;
            }
            channel.release();
            self.bytes = self.bytes.saturating_sub(*bytes);
            let name = channel.name();
            // Only if no newer channel of the same name closed since.
            if self.by_name.get(name).is_some_and(|(_, newest)| Arc::ptr_eq(newest, channel)) {
                self.by_name.remove(name);
            }
            self.order.pop_front();
        }
    }
}

/// The channels of one server. Cheap to clone; clones share the channels.
#[derive(Debug, Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

impl Hub {
    /// An empty hub.
    pub fn new(mut config: HubConfig) -> Self {
        // A ring needs at least one slot; a zero window would make every read a miss.
        config.window = config.window.max(1);
        let inner = HubInner {
            config,
            channels: Mutex::new(HashMap::new()),
            closed: Mutex::new(Lingering::default()),
            closing: std::sync::atomic::AtomicBool::new(false),
        };
        Self { inner: Arc::new(inner) }
    }

    /// Its limits.
    pub fn config(&self) -> &HubConfig {
        &self.inner.config
    }

    /// Creates channel `name` with a mime type; creating an existing channel is not an error.
    pub fn create(&self, name: &str, mime: &str) -> Result<(), TrickleError> {
        self.create_channel(name, mime).map(|_| ()).map_err(TrickleError::from)
    }

    /// The channel `name`, created if missing.
    pub(crate) fn create_channel(
        &self,
        name: &str,
        mime: &str,
    ) -> Result<Arc<Channel>, CreateError> {
        if !valid_name(name) {
            return Err(CreateError::BadName);
        }
        let config = &self.inner.config;
        let mut channels = lock(&self.inner.channels);
        // Read under the map's lock, which the sweeper's close-all takes after setting it.
        if self.inner.closing.load(std::sync::atomic::Ordering::Acquire) {
            return Err(CreateError::Closing);
        }
        if let Some(channel) = channels.get(name) {
            return Ok(Arc::clone(channel));
        }
        if channels.len() >= config.max_channels {
            return Err(CreateError::Full);
        }
        let channel = Channel::new(name, mime, config.window, config.max_segment_bytes)
            .with_max_readers(config.max_readers);
        let channel = Arc::new(channel);
        channels.insert(name.to_owned(), Arc::clone(&channel));
        tracing::debug!(channel = %shown(name), mime, "trickle channel created");
        Ok(channel)
    }

    /// The channel `name`, if it exists.
    pub(crate) fn channel(&self, name: &str) -> Option<Arc<Channel>> {
        lock(&self.inner.channels).get(name).cloned()
    }

    /// The channel `name` to read from: an open one, or one closed less than
    /// [`HubConfig::closed_linger`] ago.
    pub(crate) fn readable(&self, name: &str) -> Option<Arc<Channel>> {
        if let Some(channel) = self.channel(name) {
            return Some(channel);
        }
        let linger = self.inner.config.closed_linger;
        if linger.is_zero() {
            return None;
        }
        lock(&self.inner.closed).get(name, Instant::now().checked_sub(linger))
    }

    /// Closes and removes channel `name`: its subscribers see the end of stream. Returns
    /// whether it existed.
    pub fn close(&self, name: &str) -> bool {
        let removed = lock(&self.inner.channels).remove(name);
        let Some(channel) = removed else {
            return false;
        };
        // Closed outside the map lock: waking readers must not stall other channels.
        let config = &self.inner.config;
        if config.closed_linger.is_zero() {
            channel.close();
        } else {
            channel.close_keeping();
            let mut closed = lock(&self.inner.closed);
            closed.push(channel);
            let before = Instant::now().checked_sub(config.closed_linger);
            closed.prune(config.max_channels, config.closed_bytes, before);
        }
        tracing::debug!(channel = %shown(name), "trickle channel closed");
        true
    }

    /// Lets go of closed channels past their linger (all of them with `all`).
    fn prune_closed(&self, all: bool) {
        let config = &self.inner.config;
        let mut closed = lock(&self.inner.closed);
        if all {
            closed.prune(0, 0, None);
        } else {
            let before = Instant::now().checked_sub(config.closed_linger);
            closed.prune(config.max_channels, config.closed_bytes, before);
        }
    }

    /// Counts now as activity of channel `name`, as a write would, so that the sweep leaves
    /// it open: for a channel its owner keeps on purpose although nobody writes to it (a live
    /// stream's control channel, which a client may leave silent for the whole stream).
    /// Returns whether it exists.
    pub fn touch(&self, name: &str) -> bool {
        let Some(channel) = self.channel(name) else { return false };
        channel.touch();
        true
    }

    /// Whether channel `name` exists.
    pub fn contains(&self, name: &str) -> bool {
        lock(&self.inner.channels).contains_key(name)
    }

    /// How many channels exist.
    pub fn len(&self) -> usize {
        lock(&self.inner.channels).len()
    }

    /// Whether no channel exists.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The names of all channels, in no particular order.
    pub fn names(&self) -> Vec<String> {
        lock(&self.inner.channels).keys().cloned().collect()
    }

    /// What channel `name` holds, if it exists.
    pub fn stats(&self, name: &str) -> Option<ChannelStats> {
        let channel = self.channel(name)?;
        let snapshot = channel.snapshot();
        Some(ChannelStats {
            mime: channel.mime().to_owned(),
            next_write: snapshot.next_write,
            bytes: snapshot.bytes,
            closed: snapshot.closed,
            readers: channel.readers(),
        })
    }

    /// A publisher into channel `name` of this hub, without sockets.
    pub fn publisher(&self, name: &str) -> LocalPublisher {
        LocalPublisher::new(self.clone(), name)
    }

    /// A subscriber to channel `name` of this hub starting at `start` (a sequence number, or
    /// [`crate::SEQ_NEXT`] / [`crate::SEQ_CURRENT`]), without sockets.
    pub fn subscriber(&self, name: &str, start: i64) -> LocalSubscriber {
        LocalSubscriber::new(self.clone(), name, start)
    }

    /// The HTTP routes (`/{channel}`, `/{channel}/next`, `/{channel}/{seq}`), to be nested
    /// under a prefix such as `/ai/trickle`: `Router::new().nest("/ai/trickle", hub.router())`.
    /// The routes carry their own state; to nest them in a router with state `S`, use
    /// `hub.router().with_state::<S>(())`.
    ///
    /// One difference from go-livepeer: a preconnected POST that waits for its first byte gets
    /// no `100 Continue` keepalives (hyper cannot send unsolicited informational responses), so
    /// a client must not put a read timeout on such a POST's response.
    pub fn router(&self) -> axum::Router {
        http::router(self.clone())
    }

    /// Closes and removes channels idle past the limit; returns how many.
    pub fn sweep(&self) -> usize {
        let idle_timeout = self.inner.config.idle_timeout;
        let idle: Vec<String> = lock(&self.inner.channels)
            .values()
            .filter(|channel| channel.snapshot().last_activity.elapsed() > idle_timeout)
            .map(|channel| channel.name().to_owned())
            .collect();
        self.prune_closed(false);
        let mut swept = 0;
        for name in idle {
            if self.close(&name) {
                tracing::info!(channel = %shown(&name), "closed idle trickle channel");
                swept += 1;
            }
        }
        swept
    }

    /// Sweeps every minute (or every half idle timeout, or every closed linger, if shorter)
    /// until `cancel` fires, then closes every channel so that their clients are released, and
    /// lets go of the closed ones.
    pub async fn run_sweeper(self, cancel: CancellationToken) {
        let config = &self.inner.config;
        let mut period = config.idle_timeout / 2;
        if !config.closed_linger.is_zero() {
            period = period.min(config.closed_linger);
        }
        let period = period.clamp(Duration::from_millis(10), Duration::from_secs(60));
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                _ = ticker.tick() => {
                    self.sweep();
                }
            }
        }
        self.inner.closing.store(true, std::sync::atomic::Ordering::Release);
        for name in self.names() {
            self.close(&name);
        }
        self.prune_closed(true);
    }
}

/// Whether `name` can be a channel name (and so a single URL path segment).
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_CHANNEL_NAME
        && !name.chars().any(|c| c == '/' || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        let hub = Hub::new(HubConfig { max_channels: 2, ..HubConfig::default() });
        assert!(hub.create("", "x").is_err());
        assert!(hub.create("a/b", "x").is_err());
        assert!(hub.create(&"a".repeat(MAX_CHANNEL_NAME + 1), "x").is_err());
        assert!(hub.create("bad\nname", "x").is_err());
        hub.create("a", "x").unwrap();
        hub.create("a", "other").unwrap();
        assert_eq!(hub.stats("a").unwrap().mime, "x", "creating again keeps the first mime");
        hub.create("b", "x").unwrap();
        assert!(matches!(hub.create("c", "x"), Err(TrickleError::Invalid(_))));
        assert!(hub.close("a"));
        assert!(!hub.close("a"));
        hub.create("c", "x").unwrap();
        assert_eq!(hub.len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn closed_channels_stay_readable_for_the_linger_only() {
        let linger = Duration::from_secs(10);
        let hub =
            Hub::new(HubConfig { closed_linger: linger, max_channels: 2, ..Default::default() });
        hub.create("a", "x").unwrap();
        assert!(hub.close("a"));
        assert!(hub.readable("a").is_some_and(|c| c.is_closed()), "closed, still readable");
        assert!(hub.channel("a").is_none() && !hub.close("a"), "gone for everything else");
        tokio::time::advance(linger / 2).await;
        // The same name made and closed again: the newer one is read, and letting the older
        // one go (its linger ends first) leaves the newer one readable.
        hub.create("a", "x").unwrap();
        let newer = hub.channel("a").unwrap();
        assert!(hub.close("a"));
        tokio::time::advance(linger / 2 + Duration::from_millis(1)).await;
        hub.sweep();
        assert!(hub.readable("a").is_some_and(|c| Arc::ptr_eq(&c, &newer)));
        tokio::time::advance(linger / 2).await;
        assert!(hub.readable("a").is_none(), "past the linger");
        // No more closed channels kept than the hub's channel cap.
        for name in ["b", "c", "d"] {
            hub.create(name, "x").unwrap();
            hub.close(name);
        }
        assert!(hub.readable("b").is_none() && hub.readable("c").is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn sweep_removes_idle_channels() {
        let hub =
            Hub::new(HubConfig { idle_timeout: Duration::from_secs(10), ..HubConfig::default() });
        hub.create("idle", "x").unwrap();
        hub.create("busy", "x").unwrap();
        tokio::time::advance(Duration::from_secs(6)).await;
        hub.channel("busy").unwrap().mark_written(0);
        assert_eq!(hub.sweep(), 0);
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(hub.sweep(), 1);
        assert!(!hub.contains("idle") && hub.contains("busy"));

        let cancel = CancellationToken::new();
        let sweeper = tokio::spawn(hub.clone().run_sweeper(cancel.clone()));
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert!(hub.is_empty());
        hub.create("late", "x").unwrap();
        cancel.cancel();
        sweeper.await.unwrap();
        // Shut down: every channel closed, and none made after (nothing would close it).
        assert!(hub.is_empty());
        assert!(matches!(hub.create("later", "x"), Err(TrickleError::Closed)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_touched_channel_is_not_idle() {
        let hub =
            Hub::new(HubConfig { idle_timeout: Duration::from_secs(10), ..HubConfig::default() });
        hub.create("kept", "x").unwrap();
        hub.create("left", "x").unwrap();
        for _ in 0..3 {
            tokio::time::advance(Duration::from_secs(6)).await;
            assert!(hub.touch("kept"));
            hub.sweep();
        }
        assert!(hub.contains("kept") && !hub.contains("left"));
        assert!(!hub.touch("left"), "a closed channel is not made again");
    }

    #[test]
    fn logs_show_a_channel_without_its_random_part() {
        assert_eq!(shown("cam-0123456789abcdef-control"), "cam-…-control");
        assert_eq!(shown("s-0123456789abcdef0123456789abcdef"), "s-…");
        assert_eq!(shown("my-stream-out"), "my-stream-out");
        // Fifteen hex digits, or a part that is not all hex, stay.
        assert_eq!(shown("a-0123456789abcde-x"), "a-0123456789abcde-x");
        assert_eq!(shown("a-0123456789abcdefg"), "a-0123456789abcdefg");
    }
}
