//! Transcoding ingest settings: the RTMP listener, how published streams are cut, and the
//! stream auth webhook both ingest paths (RTMP and HTTP push) consult.

use std::net::SocketAddr;
use std::time::Duration;

use super::section::section;
use super::values::{listen_addr, optional_url, positive_duration};
use super::{ConfigError, bad};
use crate::ingest::CutLimits;
use crate::ingest::auth::StreamAuth;

section! {
    /// Ingest settings.
    pub struct Ingest {
        /// RTMP ingest listen address, or `off` [default: 127.0.0.1:1935].
        #[arg(long, env = "LP_RTMPADDR")]
        pub rtmp_addr: Option<String>,
        /// Target length of the segments an RTMP stream is cut into, at the first keyframe
        /// after it [default: 2s].
        #[arg(long, env = "LP_SEGMENTLENGTH")]
        pub segment_length: Option<String>,
        /// Stream auth webhook for RTMP and HTTP-push streams (go-livepeer `-authWebhookUrl`):
        /// POSTed `{"url": …}` before a new stream starts.
        #[arg(long, env = "LP_AUTHWEBHOOKURL", hide_env_values = true)]
        pub auth_webhook_url: Option<String>,
        /// Deadline of one stream auth webhook call [default: 5s].
        #[arg(long, env = "LP_AUTHWEBHOOKTIMEOUT")]
        pub auth_webhook_timeout: Option<String>,
    }
}

/// The validated ingest settings.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// The RTMP listener, unless `off`.
    pub rtmp_addr: Option<SocketAddr>,
    /// How RTMP streams are cut.
    pub cut: CutLimits,
    /// The stream auth webhook.
    pub auth: Option<StreamAuth>,
}

/// The longest media time without a keyframe: go-livepeer's segmenter gives up after 8 s
/// ("ensure keyframe interval is less than 8 seconds").
const MAX_KEYFRAME_INTERVAL: Duration = Duration::from_secs(8);

impl Ingest {
    /// The validated settings; `max_segment_bytes` caps a cut segment as it caps a pushed one.
    pub(super) fn validate(self, max_segment_bytes: usize) -> Result<IngestConfig, ConfigError> {
        let rtmp_addr = match self.rtmp_addr.as_deref().map(str::trim) {
            Some("off") => None,
            _ => Some(listen_addr("--rtmp-addr", self.rtmp_addr, 1935)?),
        };
        let length =
            positive_duration("--segment-length", self.segment_length, Duration::from_secs(2))?;
        if length > MAX_KEYFRAME_INTERVAL {
            return Err(bad("--segment-length", "must be at most 8s"));
        }
        let timeout = positive_duration(
            "--auth-webhook-timeout",
            self.auth_webhook_timeout,
            Duration::from_secs(5),
        )?;
        let auth = optional_url("--auth-webhook-url", self.auth_webhook_url)?
            .map(|url| StreamAuth { url, timeout });
        let cut =
            CutLimits { length, max_duration: MAX_KEYFRAME_INTERVAL, max_bytes: max_segment_bytes };
        Ok(IngestConfig { rtmp_addr, cut, auth })
    }
}
