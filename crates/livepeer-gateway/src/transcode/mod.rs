//! Video transcoding (PROTOCOL.md §6, GATEWAY.md §5.7, §6.2, §7): segments of a stream come
//! in (HTTP push today; RTMP ingest hands its segments to the same entry point), each is
//! transcoded by an orchestrator into the stream's renditions, paid per pixel, and published
//! as HLS.
//!
//! The entry points take one segment of a stream ([`SegmentIn`]: manifest id, sequence number,
//! bytes, duration, profiles): [`TranscodeState::transcode_segment`] answers its renditions
//! (HTTP push), [`TranscodeState::submit`] returns once the segment has one of the stream's
//! `--segment-concurrency` slots (RTMP ingest, whose next segment should wait for that, not
//! for the transcode). The first segment creates the stream (within `--max-sessions`), unless
//! [`TranscodeState::open_stream`] did; [`TranscodeState::end_stream`] ends it. Each segment
//! runs in a task of its own, so that a client leaving does not leave a hole in the
//! playlists: it is published with its renditions, or with the source in their place when no
//! orchestrator could make them.
//!
//! Layout, imports going one way (each file uses only those listed before it):
//! - `profiles.rs`: presets, the JSON rendition format, their wire form;
//! - `codec.rs`: the input video's codec and the decoder capabilities it asks for;
//! - `error.rs`: [`TranscodeError`]; `request.rs`: reading a push's parts;
//! - `store.rs`: a stream's window of segments and its playlists;
//! - `tokens.rs`: streams' own auth tokens where nothing is paid;
//! - `ended.rs`: names of pushed streams their customer key ended;
//! - `attempt.rs`: one attempt on one orchestrator (pay, `/segment`, fetch, verify, settle);
//! - `streams.rs`: the streams, their limits and counters;
//! - `session.rs`: the kept orchestrator and retries on others.
//!
//! Nothing here knows HTTP: `http::transcode` holds the routes.

mod attempt;
pub mod charge;
mod codec;
mod ended;
mod error;
mod ingest;
pub mod profiles;
pub mod request;
mod session;
mod store;
mod streams;
mod tokens;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use livepeer_pm::{OutputProfile, estimated_out_pixels, keccak256};
use serde_json::Value;

pub use codec::{CodecError, InputVideo};
pub use error::{KeyRefusal, TranscodeError};
pub use ingest::RtmpSink;
pub use profiles::{Format, Profile};
pub use store::PLAYLIST_WINDOW;

use attempt::{Attempter, Job};
use session::{Ctx, Failed};
use store::Published;
use streams::{NewStream, Stream, StreamOwner, Streams};

use crate::keys::{KeyInfo, Tab};
use crate::metrics::Metrics;
use crate::orchestrator::Pool;
use crate::orchestrator::http::{OrchHttp, OrchHttpVersion};
use crate::payment::Payments;
use crate::task::Tasks;

/// Transcoding settings (`config::transcode` validates them).
#[derive(Debug, Clone)]
pub struct TranscodeConfig {
    /// Renditions of a stream that names none (`--transcoding-options`).
    pub default_profiles: Vec<Profile>,
    /// Streams at once (`--max-sessions`).
    pub max_sessions: usize,
    /// Segments in flight per stream (`--segment-concurrency`).
    pub segment_concurrency: usize,
    /// Orchestrators tried per segment (`--max-attempts`).
    pub max_attempts: u32,
    /// Largest segment accepted, and largest rendition fetched (`--max-segment-bytes`).
    pub max_segment_bytes: usize,
    /// A stream without pushes this long is closed (`--transcode-idle-timeout`).
    pub idle_timeout: Duration,
    /// Published segments kept per stream.
    pub window_segments: usize,
    /// Bytes of published segments kept per stream.
    pub window_bytes: usize,
    /// Bytes of rendition downloads in progress, gateway-wide.
    pub download_bytes: usize,
    /// Connect timeout to orchestrators.
    pub connect_timeout: Duration,
}

/// One segment of a stream, as ingest hands it over.
#[derive(Debug, Clone)]
pub struct SegmentIn {
    /// The stream's manifest id (checked by the caller: `request::manifest_id`).
    pub manifest: String,
    /// Sequence number.
    pub seq: u64,
    /// The segment, MPEG-TS or MP4.
    pub data: Bytes,
    /// Duration, milliseconds (at most `request::MAX_DURATION_MS`).
    pub duration_ms: u32,
    /// Container of the segment and its renditions.
    pub format: Format,
    /// The stream's renditions, taken when this segment creates it; `None` for the defaults.
    pub profiles: Option<Vec<Profile>>,
    /// The source's resolution, when known.
    pub resolution: Option<(u32, u32)>,
    /// Stretches the attempt deadlines when above 1.
    pub timeout_multiplier: u32,
    /// The input video, when the ingest read it ([`probe_input`]); `None` reads it here.
    pub input: Option<InputVideo>,
    /// Whether the client takes the renditions in its answer: a late segment (one published
    /// or being transcoded already) is then served, as a retry; otherwise it is refused
    /// before anything is paid for it, since it would be paid for and dropped.
    pub answered: bool,
}

/// The video of a segment in `format`, as go-livepeer's gateway classifies it for the
/// decoder capabilities it asks of orchestrators: a codec or pixel format no capability
/// covers is the client's input error ([`TranscodeError::BadCodec`], 422).
pub fn probe_input(data: &[u8], format: Format) -> Result<InputVideo, TranscodeError> {
    codec::probe(data, format).map_err(|e| TranscodeError::BadCodec(e.to_string()))
}

/// A transcoded segment: each rendition, in profile order.
#[derive(Debug, Clone)]
pub struct Transcoded {
    /// Sequence number.
    pub seq: u64,
    /// The stream's profiles.
    pub profiles: Arc<Vec<Profile>>,
    /// The renditions' container.
    pub format: Format,
    /// The renditions.
    pub outputs: Vec<Bytes>,
    /// What its orchestrators were paid: tickets, their EV and the fee, wei (a customer
    /// priced as a multiple of the orchestrator's price pays that multiple of the fee).
    pub paid: (u32, livepeer_pm::Ratio, livepeer_pm::Ratio),
}

/// A segment handed over, being transcoded.
#[derive(Debug)]
pub struct Pending(tokio::task::JoinHandle<Result<Transcoded, TranscodeError>>);

impl Pending {
    /// Waits for the segment's renditions (or why there are none).
    pub async fn finished(self) -> Result<Transcoded, TranscodeError> {
        self.0.await.map_err(|e| TranscodeError::Internal(format!("segment task: {e}")))?
    }
}

/// The transcoding state; cheap to clone.
#[derive(Debug, Clone)]
pub struct TranscodeState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: TranscodeConfig,
    pool: Pool,
    attempter: Attempter,
    metrics: Metrics,
    streams: Streams,
    gate: ingest::Gate,
}

impl TranscodeState {
    /// The state, with a task on `tasks` that closes idle streams; `client` asks orchestrators
    /// for streams' own auth tokens; new streams are checked with `auth` when set.
    pub fn new(
        config: TranscodeConfig,
        pool: Pool,
        payments: Payments,
        metrics: Metrics,
        client: crate::orchestrator::OrchClient,
        auth: Option<crate::ingest::auth::StreamAuth>,
        tasks: &Tasks,
    ) -> Result<Self, String> {
        let gate = ingest::Gate::new(auth)?;
        let http = OrchHttp::new(config.connect_timeout, OrchHttpVersion::Http1)?;
        let fetcher =
            crate::ai::fetch::Fetcher::new(config.connect_timeout, Duration::from_secs(4))?;
        let downloads =
            crate::ai::results::ResultStore::new(config.download_bytes, Duration::from_secs(1));
        let attempter = Attempter {
            http,
            fetcher,
            downloads: Arc::new(downloads),
            payments,
            max_rendition: config.max_segment_bytes,
            tokens: Arc::new(tokens::StreamTokens::new(client)),
        };
        metrics.transcode_max_sessions(config.max_sessions);
        let streams = Streams::new(config.max_sessions, config.idle_timeout);
        let inner = Inner { config, pool, attempter, metrics, streams, gate };
        let state = Self { inner: Arc::new(inner) };
        let reaper = state.clone();
        tasks.spawn("transcode-idle", move |cancel| async move {
            let every = (reaper.inner.config.idle_timeout / 4).max(Duration::from_millis(100));
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tick.tick() => reaper.close_idle(),
                }
            }
        });
        Ok(state)
    }

    /// The settings.
    pub fn config(&self) -> &TranscodeConfig {
        &self.inner.config
    }

    fn close_idle(&self) {
        for stream in self.inner.streams.close_idle(self.inner.config.idle_timeout) {
            tracing::info!(manifest = %stream.manifest, "idle transcoding stream closed");
            self.ended(&stream);
        }
    }

    /// Ends the stream `manifest` now (its ingest closed); whether it existed.
    pub fn end_stream(&self, manifest: &str) -> bool {
        let stream = self.inner.streams.remove(manifest);
        if let Some(stream) = &stream {
            self.ended(stream);
        }
        stream.is_some()
    }

    /// A stream ended: its payment sessions with orchestrators go (as go-livepeer's end with
    /// the stream), and the gauges follow.
    fn ended(&self, stream: &Stream) {
        let key = crate::job::JobKey::transcode_stream(&stream.manifest);
        for url in stream.orchestrators() {
            if let Ok(url) = url.parse::<url::Url>() {
                self.inner.attempter.payments.reset(&url, &key);
            }
        }
        self.inner.attempter.tokens.forget(&stream.manifest);
        self.inner.metrics.transcode_stream_ended();
        self.inner.metrics.transcode_sessions(self.inner.streams.len());
    }

    /// Hands one segment of a stream over (see the module docs) and returns once the stream
    /// has a slot for it, so that an ingest feeding segments in order is held back while
    /// `--segment-concurrency` of its segments are in flight. The segment is then transcoded
    /// and published in a task of its own; [`Pending::finished`] waits for its outcome.
    pub async fn submit(&self, seg: SegmentIn) -> Result<Pending, TranscodeError> {
        self.submit_charged(seg, None).await
    }

    /// [`submit`](Self::submit), the segment's customer key settled once it is transcoded and
    /// before it is published: a segment whose charge is refused is not published, and the
    /// stream takes no more ([`TranscodeError::KeyRefused`]).
    pub async fn submit_charged(
        &self,
        mut seg: SegmentIn,
        charge: Option<charge::SegmentCharge>,
    ) -> Result<Pending, TranscodeError> {
        let config = &self.inner.config;
        if seg.data.len() > config.max_segment_bytes {
            return Err(TranscodeError::TooLarge(config.max_segment_bytes));
        }
        // Pushes are checked when their name is read; this covers every ingest.
        if seg.seq > request::MAX_SEQ {
            return Err(TranscodeError::BadSeq(format!(
                "sequence number {} is too large",
                seg.seq
            )));
        }
        if seg.input.is_none() {
            seg.input = Some(probe_input(&seg.data, seg.format)?);
        }
        let stream = match &charge {
            // A keyed push claimed its stream before its key paid: gone since, the key ended
            // it (see `follow_key`), and a stream made here would belong to no key.
            Some(c) => self.claimed(&seg.manifest, c.tab.key())?,
            None => self.stream(&seg)?,
        };
        stream.refused()?;
        let busy = stream.busy();
        let slot = stream
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| TranscodeError::Internal("stream closed".into()))?;
        let state = self.clone();
        // A task of its own: the segment is published even if the caller goes away.
        let task = tokio::spawn(async move {
            let _busy = busy;
            let _slot = slot;
            state.run(&stream, seg, charge).await
        });
        Ok(Pending(task))
    }

    /// Whether segment `seq` of the stream `manifest` would be taken now (see
    /// `store::Window::admit`), asked before the client's key pays for it: `answered` says
    /// whether the client takes the renditions in its answer. A stream not yet made takes any.
    pub fn check_segment(
        &self,
        manifest: &str,
        seq: u64,
        answered: bool,
    ) -> Result<(), TranscodeError> {
        let Some(stream) = self.inner.streams.get(manifest) else { return Ok(()) };
        stream.refused()?;
        let w = stream.window.lock().map_err(|_| TranscodeError::Internal("window lock".into()))?;
        w.admit(seq, answered)
    }

    /// Transcodes one segment of a stream and publishes it: [`submit`](Self::submit), then
    /// [`Pending::finished`]. On error after the stream took the segment, the source was
    /// published in the renditions' place.
    pub async fn transcode_segment(&self, seg: SegmentIn) -> Result<Transcoded, TranscodeError> {
        self.submit(seg).await?.finished().await
    }

    /// [`transcode_segment`](Self::transcode_segment) with its customer key's charge (see
    /// [`submit_charged`](Self::submit_charged)).
    pub async fn transcode_charged(
        &self,
        seg: SegmentIn,
        charge: Option<charge::SegmentCharge>,
    ) -> Result<Transcoded, TranscodeError> {
        self.submit_charged(seg, charge).await?.finished().await
    }

    fn stream(&self, seg: &SegmentIn) -> Result<Arc<Stream>, TranscodeError> {
        let (profiles, format) = (seg.profiles.clone(), seg.format);
        self.get_or_create(&seg.manifest, profiles, format, None, false).map(|(s, _)| s)
    }

    /// The stream `manifest` that a push of `key` claimed ([`claim_push`](Self::claim_push)):
    /// `Err` with why when the key ended it since.
    fn claimed(&self, manifest: &str, key: &KeyInfo) -> Result<Arc<Stream>, TranscodeError> {
        let streams = &self.inner.streams;
        match streams.get(manifest).filter(|s| s.pushed_by(&key.id)) {
            Some(stream) => Ok(stream),
            None => Err(match streams.ended_refusal(manifest, &key.id) {
                Some(refusal) => TranscodeError::KeyRefused(refusal),
                None => TranscodeError::NotFound(format!("stream {manifest:?} has ended")),
            }),
        }
    }

    /// With customer keys, whether the key of `tab` may push on into its stream `manifest`.
    /// A pushed stream follows its key push by push, as an RTMP stream does segment by
    /// segment (`keys::follow`): the key check at the edge refuses a key deleted, disabled or
    /// expired, and here a stream started before the operator stopped the key's streams (or
    /// whose pipeline the key lost) ends, closed as an idle stream is. This push and the key's
    /// later ones of the name are then refused with why (410 `stream_stopped`, see `ended`).
    /// No stream of the name yet: the push starts a new one, which is not stopped. When the
    /// key database cannot be read, the stream runs on.
    pub async fn follow_key(&self, manifest: &str, tab: &Tab) -> Result<(), TranscodeError> {
        let key_id = tab.key().id.as_str();
        let streams = &self.inner.streams;
        if let Some(refusal) = streams.ended_refusal(manifest, key_id) {
            return Err(TranscodeError::KeyRefused(refusal));
        }
        let Some(stream) = streams.get(manifest).filter(|s| s.pushed_by(key_id)) else {
            return Ok(());
        };
        let Some(since_ms) = stream.started_ms else { return Ok(()) };
        let Err(e) = tab.follow(since_ms).await else { return Ok(()) };
        let refusal = KeyRefusal(e);
        if streams.end_keyed(&stream, key_id, refusal.clone()) {
            let why = refusal.0.message();
            tracing::info!(%manifest, key_id, why, "pushed transcoding stream ended by its key");
            self.ended(&stream);
        }
        Err(TranscodeError::KeyRefused(refusal))
    }

    /// Creates the stream `manifest` before its first segment, for an ingest that announces
    /// its streams (RTMP): refused when a stream of that name is live (go-livepeer's
    /// `StreamAlreadyExists`) or `--max-sessions` are. `None` profiles take the defaults.
    pub fn open_stream(
        &self,
        manifest: &str,
        profiles: Option<Vec<Profile>>,
        format: Format,
    ) -> Result<(), TranscodeError> {
        match self.get_or_create(manifest, profiles, format, None, true)? {
            (_, true) => Ok(()),
            (_, false) => Err(TranscodeError::StreamExists(manifest.to_owned())),
        }
    }

    /// `Err` 403 when the stream `manifest` exists and was not made by pushes of the key
    /// `key` (`None`: keys are off). Asked before a push's body is read.
    pub fn check_owner(&self, manifest: &str, key: Option<&str>) -> Result<(), TranscodeError> {
        match self.inner.streams.get(manifest) {
            Some(stream) => stream.check_owner(key),
            None => Ok(()),
        }
    }

    /// Whether the stream `manifest` exists.
    pub fn has_stream(&self, manifest: &str) -> bool {
        self.inner.streams.get(manifest).is_some()
    }

    /// Takes the stream `manifest` for a push by the key `key` (`None`: keys are off; else
    /// the key's id and when its push began, unix ms): made, owned by the key and holding
    /// `permit` (its place among the key's `max_streams`), when it does not exist; 403 when
    /// it exists and the key did not make it; the key's refusal when it ended a stream of
    /// that name (see [`follow_key`](Self::follow_key)).
    pub fn claim_push(
        &self,
        manifest: &str,
        key: Option<(&str, i64)>,
        permit: Option<crate::keys::meter::StreamPermit>,
        profiles: Option<Vec<Profile>>,
        format: Format,
    ) -> Result<(), TranscodeError> {
        let owner = key.map(|(k, since_ms)| StreamOwner { key_id: k.to_owned(), permit, since_ms });
        let (stream, created) = self.get_or_create(manifest, profiles, format, owner, false)?;
        if created {
            return Ok(());
        }
        stream.check_owner(key.map(|(k, _)| k))?;
        // Used from now: the reaper must not take it while this push waits on its key's
        // reservation, which would answer the push 404 for the gateway's own timing.
        stream.touch();
        Ok(())
    }

    fn get_or_create(
        &self,
        manifest: &str,
        profiles: Option<Vec<Profile>>,
        format: Format,
        owner: Option<StreamOwner>,
        rtmp: bool,
    ) -> Result<(Arc<Stream>, bool), TranscodeError> {
        let c = &self.inner.config;
        let (stream, created) = self.inner.streams.get_or_create(manifest, || NewStream {
            owner,
            rtmp,
            profiles: profiles.unwrap_or_else(|| c.default_profiles.clone()),
            format,
            concurrency: c.segment_concurrency,
            window_segments: c.window_segments,
            window_bytes: c.window_bytes,
        })?;
        if created {
            tracing::info!(%manifest, profiles = stream.profiles.len(), "transcoding stream created");
            self.inner.metrics.transcode_stream_created();
            self.inner.metrics.transcode_sessions(self.inner.streams.len());
        }
        Ok((stream, created))
    }

    async fn run(
        &self,
        stream: &Stream,
        seg: SegmentIn,
        charge: Option<charge::SegmentCharge>,
    ) -> Result<Transcoded, TranscodeError> {
        let started = tokio::time::Instant::now();
        let profiles = stream.profiles.clone();
        let job = if profiles.is_empty() { None } else { Some(self.job(stream, &seg)?) };
        if let Ok(mut w) = stream.window.lock() {
            // Checked again with the slot held, as the segment is taken: others may have
            // finished or started since the caller's check (a later push that got its slot
            // first, or this one's retry), and a segment now late is refused here as there,
            // before anything is paid, unless its client takes the renditions.
            w.admit(seg.seq, seg.answered)?;
            w.set_source_resolution(seg.resolution);
            w.begin(seg.seq);
        }
        stream.count(|c| {
            c.segments_in += 1;
            c.bytes_in += seg.data.len() as u64;
            c.media_ms_in += u64::from(seg.duration_ms);
        });
        self.inner.metrics.segment_source_appeared();
        let mut paid = (0, livepeer_pm::Ratio::ZERO, livepeer_pm::Ratio::ZERO);
        let done = if let Some(job) = job {
            let ctx = Ctx {
                pool: &self.inner.pool,
                attempter: &self.inner.attempter,
                metrics: &self.inner.metrics,
                max_attempts: self.inner.config.max_attempts,
                emerged: started,
            };
            session::transcode(ctx, stream, &job).await.map(|d| {
                paid = (d.paid.tickets, d.paid.ev_sent, d.paid.fee);
                d.outputs
            })
        } else {
            Ok(Vec::new())
        };
        let outputs: Vec<Option<Bytes>> = match &done {
            Ok(out) => out.iter().cloned().map(Some).collect(),
            Err(_) => vec![None; profiles.len()],
        };
        // The segment's line of the per-request record (debug: one per segment).
        tracing::debug!(
            manifest = %seg.manifest,
            seq = seg.seq,
            duration_ms = seg.duration_ms,
            bytes = seg.data.len(),
            renditions = outputs.iter().filter(|o| o.is_some()).count(),
            outcome = if done.is_ok() { "transcoded" } else { "source_only" },
            took_ms = started.elapsed().as_millis() as u64,
            "transcode segment"
        );
        stream.count(|c| match &done {
            Ok(out) => {
                c.transcoded += 1;
                c.outputs.iter_mut().zip(out).for_each(|(n, _)| *n += 1);
            }
            Err(_) => c.source_only += 1,
        });
        if let (Ok(_), Some(c)) = (&done, &charge)
            && let Err(e) = charge::settle_paid(&c.tab, c.ms, &paid).await
        {
            return Err(unpaid(stream, seg.seq, e));
        }
        let published = Published {
            seq: seg.seq,
            duration_ms: seg.duration_ms,
            // A copy: a pushed body's bytes own its share of the gateway-wide request-body
            // budget (`body_memory`) until the last reference goes, and the window keeps the
            // segment for the stream's life. Kept as it is, ten segments of a few streams held
            // the budget every other route reads its bodies from. The window has limits of
            // its own.
            source: Bytes::copy_from_slice(&seg.data),
            outputs,
        };
        if let Ok(mut w) = stream.window.lock() {
            w.finish(published);
        }
        match done {
            Ok(outputs) => {
                Ok(Transcoded { seq: seg.seq, profiles, format: stream.format, outputs, paid })
            }
            Err(Failed::NoSessions) => Err(TranscodeError::NoSessions),
            Err(Failed::Gateway(message)) => Err(TranscodeError::GatewayOverloaded(message)),
            Err(Failed::Error { message, final_ }) => Err(TranscodeError::Failed {
                url: format!("/live/{}/{}{}", seg.manifest, seg.seq, seg.format.ext()),
                manifest: seg.manifest,
                message,
                final_,
            }),
        }
    }

    /// The attempt's job: hash, fee estimate's pixels and go-livepeer's deadlines.
    fn job(&self, stream: &Stream, seg: &SegmentIn) -> Result<Job, TranscodeError> {
        let outputs: Vec<OutputProfile> = stream.profiles.iter().map(Profile::output).collect();
        let duration = Duration::from_millis(u64::from(seg.duration_ms));
        let estimated_pixels = estimated_out_pixels(&outputs, duration)
            .map_err(|e| TranscodeError::Internal(format!("fee estimate: {e}")))?;
        let multiplier = seg.timeout_multiplier.max(1);
        // go-livepeer: max(2 s, ½ segment) for the upload, max(8 s, 4 × segment) in all.
        let upload_timeout = (duration / 2).max(Duration::from_secs(2)) * multiplier;
        let total_timeout = (duration * 4).max(Duration::from_secs(8)) * multiplier;
        Ok(Job {
            manifest: seg.manifest.clone(),
            seq: seg.seq,
            data: seg.data.clone(),
            hash: keccak256(&seg.data),
            duration_ms: seg.duration_ms,
            profiles: stream.profiles.clone(),
            format: stream.format,
            slicing: !stream.rtmp,
            input: seg.input.unwrap_or_default(),
            estimated_pixels,
            upload_timeout,
            total_timeout,
        })
    }

    fn window<T>(
        &self,
        manifest: &str,
        f: impl FnOnce(&store::Window) -> Option<T>,
    ) -> Result<T, TranscodeError> {
        let not_found = || TranscodeError::NotFound(format!("no stream {manifest:?}"));
        let stream = self.inner.streams.get(manifest).ok_or_else(not_found)?;
        let w = stream.window.lock().map_err(|_| TranscodeError::Internal("window lock".into()))?;
        f(&w).ok_or_else(|| TranscodeError::NotFound("ErrNotFound".into()))
    }

    /// The master playlist of `manifest`.
    pub fn master_playlist(&self, manifest: &str) -> Result<String, TranscodeError> {
        self.window(manifest, |w| w.master(manifest))
    }

    /// The media playlist of `rendition` (a profile's name or `source`) of `manifest`.
    pub fn media_playlist(
        &self,
        manifest: &str,
        rendition: &str,
    ) -> Result<String, TranscodeError> {
        self.window(manifest, |w| w.media(rendition))
    }

    /// Segment `seq` of `rendition` of `manifest`, while the window holds it.
    pub fn segment(
        &self,
        manifest: &str,
        rendition: &str,
        seq: u64,
    ) -> Result<(Bytes, &'static str), TranscodeError> {
        self.window(manifest, |w| w.segment(rendition, seq))
    }

    /// Every stream's status.
    pub fn streams_status(&self) -> Value {
        serde_json::json!({
            "max_sessions": self.inner.config.max_sessions,
            "streams": self.inner.streams.status(),
        })
    }

    /// One stream's status.
    pub fn stream_status(&self, manifest: &str) -> Option<Value> {
        self.inner.streams.get(manifest).map(|s| s.status())
    }
}

/// Segment `seq` of `stream`, transcoded, whose charge the key refused with `e`. Its
/// orchestrator is paid (the one overspend a multiple of its price allows), but a segment the
/// key did not pay for is not published. A spent budget stops the stream here; the key store
/// or the price feed failing for a moment (503, the gateway's fault) costs this segment only.
fn unpaid(stream: &Stream, seq: u64, e: crate::error::Error) -> TranscodeError {
    let spent = e.kind() == crate::error::Kind::BudgetExceeded;
    let refusal = KeyRefusal(e);
    if spent {
        stream.refuse(refusal.clone());
    }
    if let Ok(mut w) = stream.window.lock() {
        w.abandon(seq);
    }
    TranscodeError::KeyRefused(refusal)
}
