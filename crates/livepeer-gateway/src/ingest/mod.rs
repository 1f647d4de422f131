//! Video ingest for transcoding: RTMP publishing (`rtmp://host/{manifestID}[/{key}]`, as
//! go-livepeer's gateway accepts it, GATEWAY.md §6.2), cut into MPEG-TS segments at keyframes.
//!
//! This module only receives and cuts; what becomes of a stream is decided by an
//! [`IngestSink`] (admission, the auth webhook, transcoding, playback), which HTTP push shares.
//! - [`rtmp`]: the listener and one session per connection (the scuffle-rtmp crate speaks
//!   the protocol);
//! - `segmenter`: ffmpeg remuxing the published FLV to MPEG-TS without re-encoding;
//! - `cutter`: the keyframe cuts; `flv`: the framing ffmpeg reads.

pub mod auth;
pub mod cutter;
pub mod flv;
pub mod rtmp;
pub mod segmenter;

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;

pub use cutter::{CutError, CutLimits};
pub use rtmp::{RtmpConfig, serve};

/// One segment of an ingested stream.
#[derive(Debug, Clone)]
pub struct Segment {
    /// Its number in the stream, from 0.
    pub seq: u64,
    /// MPEG-TS bytes starting on a keyframe.
    pub data: Bytes,
    /// Its media duration.
    pub duration: Duration,
}

/// A publisher asking to start a stream.
#[derive(Debug, Clone)]
pub struct OpenRequest {
    /// The URL as published (`rtmp://host/app/name`), for the auth webhook.
    pub url: String,
    /// The manifest id parsed from it (or made up, as go-livepeer does, when absent).
    pub manifest_id: String,
    /// The stream key parsed from it (or made up when absent).
    pub key: String,
}

/// Where ingested streams go.
pub trait IngestSink: Send + Sync + 'static {
    /// An admitted stream.
    type Stream: Send + Sync + 'static;

    /// Admits a stream, or refuses it with a reason the log shows (the publisher's
    /// connection is closed, as RTMP has no way to carry it).
    fn open(&self, req: OpenRequest) -> impl Future<Output = Result<Self::Stream, String>> + Send;

    /// Takes one segment. It should return once the segment is admitted, not when it is
    /// transcoded: the next segment waits for it, and with it the publisher. `Err` ends the
    /// stream, for this reason (its customer key cannot pay for the segment).
    fn segment(
        &self,
        stream: &Self::Stream,
        segment: Segment,
    ) -> impl Future<Output = Result<(), String>> + Send;

    /// The stream ended: the publisher left, or its media could not be cut (`error`).
    fn close(&self, stream: Self::Stream, error: Option<String>)
    -> impl Future<Output = ()> + Send;
}

/// Longest manifest id or key accepted; they become URL path segments.
const MAX_NAME: usize = 128;

/// Splits a published path (`app/name` of the RTMP URL) into manifest id and key as
/// go-livepeer does: the extension dropped, a leading `stream/` or `live/` stripped, split on
/// the first `/`. Missing parts are made up (8 and 12 hex characters). `None` when a part
/// is not a safe URL segment (ours: letters, digits, `-`, `_` and `.`, not `.` or `..`).
pub fn parse_names(path: &str) -> Option<(String, String)> {
    let path = path.trim_start_matches('/');
    let path = path.strip_prefix("stream/").or_else(|| path.strip_prefix("live/")).unwrap_or(path);
    let path = match path.rsplit_once('.') {
        Some((stem, ext)) if !ext.contains('/') && !stem.is_empty() => stem,
        _ => path,
    };
    let (manifest, key) = path.split_once('/').unwrap_or((path, ""));
    let manifest = if manifest.is_empty() { random_hex(4) } else { manifest.to_owned() };
    let key = if key.is_empty() { random_hex(6) } else { key.to_owned() };
    (safe_name(&manifest) && safe_name(&key)).then_some((manifest, key))
}

fn safe_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME
        && s != "."
        && s != ".."
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn random_hex(bytes: usize) -> String {
    let mut raw = vec![0u8; bytes];
    rand::Rng::fill(&mut rand::rng(), &mut raw[..]);
    hex::encode(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_go_livepeer() {
        let p = |s: &str| parse_names(s).unwrap();
        assert_eq!(p("abc/key1"), ("abc".into(), "key1".into()));
        assert_eq!(p("stream/abc/key1"), ("abc".into(), "key1".into()));
        assert_eq!(p("live/abc.flv").0, "abc");
        let (m, k) = p("stream/abc");
        assert_eq!(m, "abc");
        assert_eq!(k.len(), 12);
        let (m, _) = p("");
        assert_eq!(m.len(), 8);
    }

    #[test]
    fn unsafe_names_are_refused() {
        assert!(parse_names("a b/key").is_none());
        assert!(parse_names("../key").is_none());
        assert!(parse_names("abc/k/e/y").is_none());
        assert!(parse_names(&"x".repeat(200)).is_none());
    }
}
