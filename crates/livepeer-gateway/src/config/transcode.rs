//! Transcoding settings: the default renditions (`--transcoding-options`, go-livepeer's preset
//! list or a JSON file of renditions), stream and segment limits, attempts per segment.

use std::time::Duration;

use super::section::section;
use super::values::positive_duration;
use super::{ConfigError, bad};
use crate::transcode::TranscodeConfig;
use crate::transcode::profiles::{DEFAULT_OPTIONS, parse_json_profiles, parse_preset_list};

section! {
    /// Transcoding settings.
    pub struct Transcode {
        /// Renditions of streams that name none: preset names, comma-separated, or the path
        /// of a JSON file holding an array of renditions [default: P240p30fps16x9,P360p30fps16x9].
        #[arg(long, env = "LP_TRANSCODINGOPTIONS")]
        pub transcoding_options: Option<String>,
        /// Most transcoding streams at once (HTTP push and RTMP together) [default: 10].
        #[arg(long, env = "LP_MAXSESSIONS")]
        pub max_sessions: Option<usize>,
        /// Most segments of one stream being transcoded at once [default: 4].
        #[arg(long, env = "LP_SEGMENTCONCURRENCY")]
        pub segment_concurrency: Option<usize>,
        /// Most orchestrators tried per segment [default: 3].
        #[arg(long, env = "LP_MAXATTEMPTS")]
        pub max_attempts: Option<u32>,
        /// Largest segment accepted, and largest rendition fetched, in bytes [default: 67108864].
        #[arg(long, env = "LP_MAXSEGMENTBYTES")]
        pub max_segment_bytes: Option<usize>,
        /// A transcoding stream without pushes this long is closed [default: 60s].
        #[arg(long, env = "LP_TRANSCODEIDLETIMEOUT")]
        pub transcode_idle_timeout: Option<String>,
    }
}

/// Published segments kept per stream: the playlist's window and a few more for players
/// that are behind.
const WINDOW_SEGMENTS: usize = 10;

/// Bytes of published segments kept per stream (sources and renditions): ten segments of a
/// 6 Mbit/s source at 2 s with three renditions take about 30 MB. The newest segment is kept
/// whatever its size.
const WINDOW_BYTES: usize = 128 << 20;

impl Transcode {
    /// The validated settings; `connect_timeout` is the orchestrators' (`--connect-timeout`).
    pub(super) fn validate(
        self,
        connect_timeout: Duration,
    ) -> Result<TranscodeConfig, ConfigError> {
        let options = self.transcoding_options.unwrap_or_else(|| DEFAULT_OPTIONS.to_owned());
        let default_profiles = options_profiles(&options)?;
        let positive = |setting: &str, v: Option<usize>, default: usize| match v.unwrap_or(default)
        {
            0 => Err(bad(setting, "must be at least 1")),
            n => Ok(n),
        };
        let max_sessions = positive("--max-sessions", self.max_sessions, 10)?;
        // Each holds up to 256 MB of segments; far more is a typo, and `usize::MAX` overflows
        // where the RTMP ingest adds its slack.
        if max_sessions > 100_000 {
            return Err(bad("--max-sessions", "must be at most 100000"));
        }
        let segment_concurrency = positive("--segment-concurrency", self.segment_concurrency, 4)?;
        let max_attempts =
            positive("--max-attempts", self.max_attempts.map(|n| n as usize), 3)? as u32;
        let max_segment_bytes = positive("--max-segment-bytes", self.max_segment_bytes, 64 << 20)?;
        let idle_timeout = positive_duration(
            "--transcode-idle-timeout",
            self.transcode_idle_timeout,
            Duration::from_secs(60),
        )?;
        Ok(TranscodeConfig {
            default_profiles,
            max_sessions,
            segment_concurrency,
            max_attempts,
            max_segment_bytes,
            idle_timeout,
            window_segments: WINDOW_SEGMENTS,
            window_bytes: WINDOW_BYTES,
            download_bytes: max_segment_bytes.saturating_mul(8).max(256 << 20),
            connect_timeout,
        })
    }
}

/// go-livepeer's reading: a readable, non-empty file is a JSON array of renditions; anything
/// else is a preset list. Unknown presets are an error (go-livepeer drops them silently).
fn options_profiles(options: &str) -> Result<Vec<crate::transcode::Profile>, ConfigError> {
    let setting = "--transcoding-options";
    let profiles = match std::fs::read_to_string(options) {
        Ok(text) if !text.trim().is_empty() => {
            let json: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| bad(setting, format!("{options}: {e}")))?;
            parse_json_profiles(&json, "renditions")
                .map_err(|e| bad(setting, format!("{options}: {e}")))?
        }
        _ => parse_preset_list(options, setting).map_err(|e| bad(setting, e.message))?,
    };
    if profiles.is_empty() {
        return Err(bad(setting, "No transcoding profiles found"));
    }
    Ok(profiles)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_presets_or_a_json_file() {
        let c = Transcode::default().validate(Duration::from_secs(1)).unwrap();
        assert_eq!(c.default_profiles.len(), 2);
        assert_eq!((c.max_sessions, c.segment_concurrency, c.max_attempts), (10, 4, 3));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        std::fs::write(&path, r#"[{"name":"low","width":320,"height":180,"bitrate":250000}]"#)
            .unwrap();
        let t = Transcode {
            transcoding_options: Some(path.display().to_string()),
            ..Transcode::default()
        };
        assert_eq!(t.validate(Duration::from_secs(1)).unwrap().default_profiles[0].name, "low");
        std::fs::write(&path, r#"[{"name":"low","width":0,"height":180,"bitrate":1}]"#).unwrap();
        let t = Transcode {
            transcoding_options: Some(path.display().to_string()),
            ..Transcode::default()
        };
        assert!(
            t.validate(Duration::from_secs(1)).unwrap_err().message.contains("renditions[0].width")
        );
        let t = Transcode { transcoding_options: Some("P1p".into()), ..Transcode::default() };
        assert_eq!(
            t.validate(Duration::from_secs(1)).unwrap_err().setting,
            "--transcoding-options"
        );
        let t = Transcode { max_attempts: Some(0), ..Transcode::default() };
        assert!(t.validate(Duration::from_secs(1)).is_err());
    }
}
