//! RTMP ingest into transcoding: [`RtmpSink`] admits a published stream (the stream auth
//! webhook, one publisher per manifest id, `--max-sessions`) and hands each cut segment to
//! [`TranscodeState::transcode_segment`] without waiting for its renditions, so that the
//! publisher's next segment is not held behind the orchestrator.

use std::sync::Arc;

use tokio::sync::Semaphore;

use super::profiles::{Profile, parse_json_profiles, preset};
use super::{Format, SegmentIn, TranscodeState, request};
use crate::ingest::auth::{AuthAnswer, StreamAuth};
use crate::ingest::{IngestSink, OpenRequest, Segment};

/// Segments of one RTMP stream handed over but not yet published, beyond the stream's
/// `--segment-concurrency` in flight: a bound on what a publisher faster than its
/// orchestrators makes the gateway hold. Past it, the publisher waits.
const QUEUED: usize = 2;

/// The transcoding side of RTMP ingest.
#[derive(Debug, Clone)]
pub struct RtmpSink {
    state: TranscodeState,
    auth: Option<StreamAuth>,
    http: reqwest::Client,
}

/// An admitted RTMP stream.
#[derive(Debug)]
pub struct RtmpStream {
    manifest: String,
    /// Permits for segments handed over and not yet published.
    pending: Arc<Semaphore>,
    permits: u32,
}

impl RtmpSink {
    /// Streams go to `state`, after `auth` when set.
    pub fn new(state: TranscodeState, auth: Option<StreamAuth>) -> Result<Self, String> {
        let http = reqwest::Client::builder().build().map_err(|e| e.to_string())?;
        Ok(Self { state, auth, http })
    }
}

/// The renditions an accepting webhook chose: its presets (unknown names ignored, as
/// go-livepeer ignores them), then its JSON profiles; `None` when it named neither.
pub(super) fn answer_profiles(answer: &AuthAnswer) -> Result<Option<Vec<Profile>>, String> {
    let mut out: Vec<Profile> =
        answer.presets.iter().flatten().filter_map(|name| preset(name)).collect();
    if let Some(json) = &answer.profiles {
        out.extend(parse_json_profiles(json, "profiles").map_err(|e| e.to_string())?);
    }
    let named = answer.presets.as_ref().is_some_and(|p| !p.is_empty()) || answer.profiles.is_some();
    Ok(named.then_some(out))
}

impl IngestSink for RtmpSink {
    type Stream = RtmpStream;

    async fn open(&self, req: OpenRequest) -> Result<RtmpStream, String> {
        let mut manifest = req.manifest_id;
        let mut profiles = None;
        if let Some(auth) = &self.auth {
            let answer = auth.check(&self.http, &req.url).await.map_err(|e| e.to_string())?;
            profiles = answer_profiles(&answer)?;
            if let Some(m) = answer.manifest_id {
                manifest = request::manifest_id(&m, &req.url).map_err(|e| e.to_string())?;
            }
        }
        self.state.open_stream(&manifest, profiles, Format::MpegTs).map_err(|e| e.to_string())?;
        tracing::info!(%manifest, "RTMP stream started");
        let permits = self.state.config().segment_concurrency + QUEUED;
        let permits = u32::try_from(permits).unwrap_or(u32::MAX >> 3);
        Ok(RtmpStream { manifest, pending: Arc::new(Semaphore::new(permits as usize)), permits })
    }

    async fn segment(&self, stream: &RtmpStream, segment: Segment) {
        let Ok(permit) = stream.pending.clone().acquire_owned().await else { return };
        let seg = SegmentIn {
            manifest: stream.manifest.clone(),
            seq: segment.seq,
            data: segment.data,
            duration_ms: u32::try_from(segment.duration.as_millis()).unwrap_or(u32::MAX),
            format: Format::MpegTs,
            profiles: None,
            resolution: None,
            timeout_multiplier: 1,
        };
        let state = self.state.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let (manifest, seq) = (seg.manifest.clone(), seg.seq);
            if let Err(e) = state.transcode_segment(seg).await {
                tracing::warn!(%manifest, seq, error = %e, "RTMP segment not transcoded");
            }
        });
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
