//! Live video settings: payment and fault timers, swap and stream limits, and the operator's
//! auth webhook and heartbeat. The timers that are not flags are fixed here too, so that every
//! default of [`LiveConfig`] has this one home.

use std::time::Duration;

use secrecy::SecretString;

use super::section::section;
use super::values::{duration, headers, optional_url};
use super::{ConfigError, bad};
use crate::live::{AuthWebhook, Heartbeat, LiveConfig};

section! {
    /// Live video settings.
    pub struct Live {
        /// How often a live stream's orchestrator is paid [default: 5s].
        #[arg(long, env = "LP_LIVEPAYMENTINTERVAL")]
        pub live_payment_interval: Option<String>,
        /// Replace a live orchestrator whose output stalls this long while input flows [default: 5s].
        #[arg(long, env = "LP_LIVEOUTSEGMENTTIMEOUT")]
        pub live_out_segment_timeout: Option<String>,
        /// Replace a live orchestrator that sends no event for this long [default: 30s].
        #[arg(long, env = "LP_LIVEEVENTSTIMEOUT")]
        pub live_events_timeout: Option<String>,
        /// Most orchestrator replacements per live stream within 3 minutes [default: 3].
        #[arg(long, env = "LP_LIVEMAXSWAPS")]
        pub live_max_swaps: Option<u32>,
        /// Most live streams at once [default: 1000].
        #[arg(long, env = "LP_LIVEMAXSTREAMS")]
        pub live_max_streams: Option<usize>,
        /// Most stopped live streams whose status stays readable (for 60s); the oldest is forgotten first [default: 100].
        #[arg(long, env = "LP_LIVEMAXSTOPPEDSTREAMS")]
        pub live_max_stopped_streams: Option<usize>,
        /// Service asked to accept or refuse each new live stream (POST JSON; non-2xx refuses).
        #[arg(long, env = "LP_LIVEAIAUTHWEBHOOKURL", hide_env_values = true)]
        pub live_ai_auth_webhook_url: Option<String>,
        /// Key sent to the live auth webhook as `x-api-key` and `Authorization`.
        #[arg(long, env = "LP_LIVEAIAUTHAPIKEY", hide_env_values = true)]
        pub live_ai_auth_api_key: Option<String>,
        /// Service told the running stream ids every interval; it answers which to stop.
        #[arg(long, env = "LP_LIVEAIHEARTBEATURL", hide_env_values = true)]
        pub live_ai_heartbeat_url: Option<String>,
        /// Headers of the heartbeat, `name:value,name2:value2`.
        #[arg(long, env = "LP_LIVEAIHEARTBEATHEADERS", hide_env_values = true)]
        pub live_ai_heartbeat_headers: Option<String>,
        /// How often the heartbeat is sent [default: 5s].
        #[arg(long, env = "LP_LIVEAIHEARTBEATINTERVAL")]
        pub live_ai_heartbeat_interval: Option<String>,
        /// Most subscribers served at once per live trickle channel (segment reads, waiting or
        /// streaming); more get 503. Each may hold one segment in memory [default: 16].
        #[arg(long, env = "LP_LIVETRICKLEMAXREADERS")]
        pub live_trickle_max_readers: Option<usize>,
        /// A trickle subscriber that has not taken the bytes handed to its connection (a few
        /// hundred kB at most) within this long is let go and its segment released (waiting for
        /// the publisher does not count) [default: 10s].
        #[arg(long, env = "LP_LIVETRICKLESTALLTIMEOUT")]
        pub live_trickle_stall_timeout: Option<String>,
        /// A live trickle channel nobody writes to for this long is closed (go-livepeer's
        /// trickle server: 5 minutes); a running stream's control channel is kept open while
        /// the stream runs [default: 5m].
        #[arg(long, env = "LP_LIVETRICKLEIDLETIMEOUT")]
        pub live_trickle_idle_timeout: Option<String>,
        /// Send `Access-Control-Allow-Origin: *` (and the headers and methods a browser asks
        /// for) on the live and BYOC stream routes, so that web pages of other origins may
        /// start and control streams. Any non-empty value turns it on, as go-livepeer reads
        /// its `LIVE_AI_ALLOW_CORS`; off when unset.
        #[arg(long, env = "LIVE_AI_ALLOW_CORS")]
        pub live_ai_allow_cors: Option<String>,
    }
}

/// The shortest live timer accepted: shorter ones would spin.
const MIN_TIMER: Duration = Duration::from_millis(100);

impl Live {
    /// The validated live settings; `public_url` is `--public-url`, shared with batch AI.
    pub(super) fn validate(self, public_url: Option<String>) -> Result<LiveConfig, ConfigError> {
        let timer = |setting: &str, value: Option<String>, default: Duration| {
            let d = duration(setting, value, default)?;
            if d < MIN_TIMER {
                return Err(bad(setting, "must be at least 100ms"));
            }
            Ok(d)
        };
        let payment_interval =
            timer("--live-payment-interval", self.live_payment_interval, Duration::from_secs(5))?;
        let out_segment_timeout = timer(
            "--live-out-segment-timeout",
            self.live_out_segment_timeout,
            Duration::from_secs(5),
        )?;
        let events_timeout =
            timer("--live-events-timeout", self.live_events_timeout, Duration::from_secs(30))?;
        let auth_webhook =
            optional_url("--live-ai-auth-webhook-url", self.live_ai_auth_webhook_url)?.map(|url| {
                AuthWebhook {
                    url,
                    api_key: self
                        .live_ai_auth_api_key
                        .filter(|k| !k.is_empty())
                        .map(SecretString::from),
                }
            });
        let heartbeat = match optional_url("--live-ai-heartbeat-url", self.live_ai_heartbeat_url)? {
            Some(url) => Some(Heartbeat {
                url,
                headers: headers("--live-ai-heartbeat-headers", self.live_ai_heartbeat_headers)?,
                interval: timer(
                    "--live-ai-heartbeat-interval",
                    self.live_ai_heartbeat_interval,
                    Duration::from_secs(5),
                )?,
            }),
            None => None,
        };
        let max_streams = self.live_max_streams.unwrap_or(1000);
        if max_streams == 0 {
            return Err(bad("--live-max-streams", "must be at least 1"));
        }
        let trickle_max_readers = self.live_trickle_max_readers.unwrap_or(16);
        if trickle_max_readers == 0 {
            return Err(bad("--live-trickle-max-readers", "must be at least 1"));
        }
        let trickle_stall_timeout = timer(
            "--live-trickle-stall-timeout",
            self.live_trickle_stall_timeout,
            Duration::from_secs(10),
        )?;
        let trickle_idle_timeout = timer(
            "--live-trickle-idle-timeout",
            self.live_trickle_idle_timeout,
            Duration::from_secs(300),
        )?;
        Ok(LiveConfig {
            payment_interval,
            out_segment_timeout,
            events_timeout,
            max_swaps: self.live_max_swaps.unwrap_or(3),
            max_streams,
            max_stopped_streams: self.live_max_stopped_streams.unwrap_or(100),
            trickle_max_readers,
            trickle_stall_timeout,
            trickle_idle_timeout,
            public_url,
            auth_webhook,
            heartbeat,
            allow_cors: self.live_ai_allow_cors.is_some_and(|v| !v.is_empty()),
            // Not flags (yet): go-livepeer's values, kept here with the others.
            start_timeout: Duration::from_secs(5),
            swap_window: Duration::from_secs(180),
            max_attempts: 3,
            status_linger: Duration::from_secs(60),
        })
    }
}
