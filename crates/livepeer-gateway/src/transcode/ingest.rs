//! Admission of new transcoding streams, for both ingest paths: the stream auth webhook
//! (go-livepeer `-authWebhookUrl`), which may refuse a stream, rename it and choose its
//! renditions; and [`RtmpSink`], through which RTMP ingest opens streams (one publisher per
//! manifest id, `--max-sessions`) and hands each cut segment to
//! [`TranscodeState::submit`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;

use super::profiles::{Profile, parse_json_profiles, preset};
use super::{Format, SegmentIn, TranscodeError, TranscodeState, request};
use crate::ingest::auth::{AuthAnswer, AuthRefusal, StreamAuth};
use crate::ingest::{IngestSink, OpenRequest, Segment};

/// Segments of one RTMP stream handed over but not yet published, beyond the stream's
/// `--segment-concurrency` in flight (`submit` already holds the publisher back at that
/// many); the permits let the stream's end wait for them all.
const QUEUED: usize = 1;

/// The webhook and what it decided for pushed streams.
#[derive(Debug)]
pub(super) struct Gate {
    auth: Option<StreamAuth>,
    http: reqwest::Client,
    /// Push names the webhook renamed, to the stream they feed: later pushes of the name
    /// go there without asking again. Bounded by the live streams (see [`Gate::remember`]).
    aliases: Mutex<HashMap<String, String>>,
}

/// What the webhook decided for a new stream.
#[derive(Debug, Default)]
pub(super) struct Admission {
    /// The stream's manifest id, when the webhook renamed it.
    pub(super) manifest: Option<String>,
    /// Its renditions, when the webhook chose them.
    pub(super) profiles: Option<Vec<Profile>>,
}

impl Gate {
    pub(super) fn new(auth: Option<StreamAuth>) -> Result<Self, String> {
        // The webhook's body carries the stream's URL, with its key: it goes to the named host only.
        let http = reqwest::Client::builder()
            .redirect(crate::outbound::same_host_redirects())
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self { auth, http, aliases: Mutex::default() })
    }

    /// Asks the webhook about the stream published at `url` (accepts all without one).
    async fn admit(&self, url: &str) -> Result<Admission, TranscodeError> {
        let Some(auth) = &self.auth else { return Ok(Admission::default()) };
        let answer = auth.check(&self.http, url).await.map_err(|e| match e {
            AuthRefusal::Denied(why) => TranscodeError::AuthDenied(why),
            AuthRefusal::Unavailable(why) => TranscodeError::AuthUnavailable(why),
        })?;
        // An accepting answer the gateway cannot use is the webhook's fault (503), as one
        // that is not JSON is: the publisher was not refused.
        let profiles = answer_profiles(&answer)
            .map_err(|why| TranscodeError::AuthUnavailable(format!("webhook profiles: {why}")))?;
        let manifest = match answer.manifest_id {
            Some(m) => Some(request::manifest_id(&m, url).map_err(|_| {
                TranscodeError::AuthUnavailable(format!("webhook manifestID {m:?} is not usable"))
            })?),
            None => None,
        };
        Ok(Admission { manifest, profiles })
    }

    /// Remembers that pushes of `name` feed `manifest`, forgetting names whose stream ended
    /// once the map holds more than `max` of them.
    fn remember(&self, name: &str, manifest: &str, max: usize, live: impl Fn(&str) -> bool) {
        let Ok(mut aliases) = self.aliases.lock() else { return };
        if aliases.len() >= max {
            aliases.retain(|_, m| live(m));
        }
        if aliases.len() < max {
            aliases.insert(name.to_owned(), manifest.to_owned());
        }
    }

    fn alias(&self, name: &str) -> Option<String> {
        self.aliases.lock().ok()?.get(name).cloned()
    }
}

impl TranscodeState {
    /// The stream a push of `name` at `url` feeds, and the renditions the webhook chose for
    /// it: the webhook is asked on a stream's first push only (go-livepeer asks on each new
    /// stream). A refusal is 403; a webhook that cannot be reached, 503.
    pub async fn admit_push(
        &self,
        name: &str,
        url: &str,
    ) -> Result<(String, Option<Vec<Profile>>), TranscodeError> {
        let gate = &self.inner.gate;
        if gate.auth.is_none() {
            return Ok((name.to_owned(), None));
        }
        let streams = &self.inner.streams;
        if let Some(manifest) = gate.alias(name).filter(|m| streams.get(m).is_some()) {
            return Ok((manifest, None));
        }
        if streams.get(name).is_some() {
            return Ok((name.to_owned(), None));
        }
        let admission = gate.admit(url).await?;
        let manifest = admission.manifest.unwrap_or_else(|| name.to_owned());
        let max = self.inner.config.max_sessions.saturating_mul(2);
        gate.remember(name, &manifest, max, |m| streams.get(m).is_some());
        Ok((manifest, admission.profiles))
    }
}

/// The renditions an accepting webhook chose: its presets (unknown names ignored, as
/// go-livepeer ignores them), then its JSON profiles; `None` when it named neither.
fn answer_profiles(answer: &AuthAnswer) -> Result<Option<Vec<Profile>>, String> {
    let mut out: Vec<Profile> =
        answer.presets.iter().flatten().filter_map(|name| preset(name)).collect();
    if let Some(json) = &answer.profiles {
        out.extend(parse_json_profiles(json, "profiles").map_err(|e| e.to_string())?);
    }
    let named = answer.presets.as_ref().is_some_and(|p| !p.is_empty()) || answer.profiles.is_some();
    Ok(named.then_some(out))
}

/// The transcoding side of RTMP ingest.
#[derive(Debug, Clone)]
pub struct RtmpSink {
    state: TranscodeState,
    /// With `--auth keys`: the stream key of the URL must be a customer key allowed to
    /// transcode.
    keys: Option<Arc<crate::keys::KeyStore>>,
}

/// An admitted RTMP stream.
#[derive(Debug)]
pub struct RtmpStream {
    manifest: String,
    /// Permits for segments handed over and not yet published.
    pending: Arc<Semaphore>,
    permits: u32,
    /// With a customer key: the stream's tab (each segment is charged on one of its own) and
    /// its place among the key's concurrent streams, held until the stream ends.
    customer: Option<Customer>,
}

/// The customer key of an RTMP stream.
#[derive(Debug)]
struct Customer {
    tab: Arc<crate::keys::Tab>,
    _permit: crate::keys::meter::StreamPermit,
    /// Set when a segment's charge was refused after it was transcoded (a multiple of the
    /// orchestrator's price the budget could not pay): the stream ends at its next segment.
    refused: Arc<std::sync::atomic::AtomicBool>,
}

impl RtmpSink {
    /// Streams go to `state`, after its webhook and, when `keys` is set, a customer key.
    pub fn new(state: TranscodeState, keys: Option<Arc<crate::keys::KeyStore>>) -> Self {
        Self { state, keys }
    }

    /// With customer keys on, the URL's stream key (`rtmp://host/{manifestID}/{key}`) must be
    /// a key that may transcode, is within its per-minute limit and holds fewer than its
    /// `max_streams`: the stream's tab and its place among them.
    async fn check_key(&self, key: &str) -> Result<Option<Customer>, String> {
        let Some(store) = &self.keys else { return Ok(None) };
        let customer = store.authenticate(key).await.map_err(|e| e.message().to_owned())?;
        if !customer.allows("transcode", None) {
            return Err("this API key may not use transcode".into());
        }
        store.admit(&customer).await.map_err(|e| e.message().to_owned())?;
        store.ledger_ready().map_err(|e| e.message().to_owned())?;
        let tab = Arc::new(store.tab(customer, "transcode"));
        let permit = tab.stream_permit().await.map_err(|e| e.message().to_owned())?;
        Ok(Some(Customer { tab, _permit: permit, refused: Arc::default() }))
    }
}

impl IngestSink for RtmpSink {
    type Stream = RtmpStream;

    async fn open(&self, req: OpenRequest) -> Result<RtmpStream, String> {
        let customer = self.check_key(&req.key).await?;
        let admission = self.state.inner.gate.admit(&req.url).await.map_err(|e| e.to_string())?;
        let manifest = admission.manifest.unwrap_or(req.manifest_id);
        self.state
            .open_stream(&manifest, admission.profiles, Format::MpegTs)
            .map_err(|e| e.to_string())?;
        tracing::info!(%manifest, "RTMP stream started");
        // A cap far above any useful concurrency keeps the cast exact.
        let permits = (self.state.config().segment_concurrency + QUEUED).min(1 << 16) as u32;
        let pending = Arc::new(Semaphore::new(permits as usize));
        Ok(RtmpStream { manifest, pending, permits, customer })
    }

    async fn segment(&self, stream: &RtmpStream, segment: Segment) -> Result<(), String> {
        let Ok(permit) = stream.pending.clone().acquire_owned().await else { return Ok(()) };
        // A customer key pays for each segment before any orchestrator is paid; when its
        // budget cannot, the stream ends here.
        let charged = match &stream.customer {
            Some(customer) => Some(charge_start(customer, &stream.manifest, &segment).await?),
            None => None,
        };
        let seg = SegmentIn {
            manifest: stream.manifest.clone(),
            seq: segment.seq,
            data: segment.data,
            duration_ms: u32::try_from(segment.duration.as_millis()).unwrap_or(u32::MAX),
            format: Format::MpegTs,
            profiles: None,
            resolution: None,
            timeout_multiplier: 1,
            input: None,
            answered: false,
        };
        let (manifest, seq) = (seg.manifest.clone(), seg.seq);
        // Returns once the stream has a slot: a publisher ahead of its orchestrators waits.
        match self.state.submit(seg).await {
            Ok(pending) => {
                tokio::spawn(async move {
                    let _permit = permit;
                    let done = pending.finished().await;
                    if let Err(e) = &done {
                        tracing::warn!(%manifest, seq, error = %e, "RTMP segment not transcoded");
                    }
                    if let Some(charged) = charged {
                        charged.finish(done.as_ref().ok()).await;
                    }
                });
            }
            Err(e) => {
                tracing::warn!(%manifest, seq, error = %e, "RTMP segment refused");
                if let Some(charged) = charged {
                    charged.finish(None).await;
                }
            }
        }
        Ok(())
    }

    async fn close(&self, stream: RtmpStream, error: Option<String>) {
        // The segments in flight are published before the stream goes.
        let _all = stream.pending.acquire_many(stream.permits).await;
        match error {
            Some(e) => {
                tracing::warn!(manifest = %stream.manifest, error = %e, "RTMP stream failed")
            }
            None => tracing::info!(manifest = %stream.manifest, "RTMP stream ended"),
        }
        self.state.end_stream(&stream.manifest);
    }
}

/// A segment of a keyed RTMP stream, reserved and waiting for its outcome.
struct Charged {
    tab: crate::keys::Tab,
    ms: u64,
    request_id: String,
    refused: Arc<std::sync::atomic::AtomicBool>,
}

/// Reserves `segment` on a fresh tab of the stream's key: `Err` (the reason the stream ends)
/// when its budget cannot pay for it, the refusal recorded.
async fn charge_start(
    customer: &Customer,
    manifest: &str,
    segment: &Segment,
) -> Result<Charged, String> {
    if customer.refused.load(std::sync::atomic::Ordering::Acquire) {
        return Err("budget_exceeded: this API key's budget cannot pay for more".into());
    }
    // On the key as it is now: one deleted, disabled or whose streams were stopped ends it.
    let tab = match customer.tab.next().await {
        Ok(tab) => tab,
        Err(e) => {
            tracing::info!(%manifest, error = %e, "RTMP stream stopped: its key no longer lets it run");
            return Err(format!("{}: {}", e.kind().name(), e.message()));
        }
    };
    let refused = customer.refused.clone();
    let request_id = format!("{manifest}-{}", segment.seq);
    // The cutter timed the segment by its timestamps; measured again as a pushed one is.
    let declared = u32::try_from(segment.duration.as_millis()).unwrap_or(u32::MAX);
    let ms = super::charge::charged_ms(&segment.data, Format::MpegTs, declared);
    match super::charge::reserve(&tab, ms).await {
        Ok(()) => Ok(Charged { tab, ms, request_id, refused }),
        Err(e) => {
            let status = if e.kind() == crate::error::Kind::BudgetExceeded { 402 } else { 503 };
            tab.record(request_id, status);
            tracing::info!(%manifest, error = %e, "RTMP stream stopped: its segment could not be reserved");
            Err(format!("{}: {}", e.kind().name(), e.message()))
        }
    }
}

impl Charged {
    /// Writes the segment's ledger row: charged when it was transcoded (and a multiple of the
    /// orchestrator's price could be paid), else its reservation released.
    async fn finish(self, done: Option<&super::Transcoded>) {
        let status = match done {
            Some(done) => match super::charge::settle(&self.tab, self.ms, done).await {
                Ok(()) => 200,
                // Only a spent budget ends the stream; the key store or the price feed
                // failing for a moment (the gateway's fault) costs this segment's charge.
                Err(e) if e.kind() == crate::error::Kind::BudgetExceeded => {
                    self.refused.store(true, std::sync::atomic::Ordering::Release);
                    402
                }
                Err(_) => 503,
            },
            None => 500,
        };
        self.tab.record(self.request_id, status);
    }
}
