//! Live AI video (live-video-to-video): the client publishes its media into a trickle channel
//! the gateway hosts and reads the processed media from another; the gateway relays both to an
//! orchestrator it selects, pays it as the stream runs, and replaces it mid-stream when it
//! fails, with the client's channels unchanged (PROTOCOL.md §8–9, GATEWAY.md §5.10, §6.6).
//!
//! Routes:
//! - `POST /live/video-to-video/{stream}/start`: JSON `{pipeline, params, stream_id,
//!   orchestrator}`; answers the four client channel URLs and the control routes.
//! - `POST /live/video-to-video/{stream}/update`: new params (JSON), forwarded on the
//!   orchestrator's control channel.
//! - `GET /live/video-to-video/{stream}/status`: rates, latency, serving orchestrator, swaps,
//!   payments and the orchestrator's last events.
//! - `POST` or `DELETE /live/video-to-video/{stream}/stop`.
//! - `/ai/trickle/{channel}…`: the client's channels `{stream}-{random}` and its `-out`,
//!   `-control` and `-events` siblings.
//!
//! With an auth webhook configured, each new stream is accepted or refused by the operator's
//! service first ([`AuthWebhook`]). A stream is owned by the client that started it: its name
//! is reserved before any orchestrator is paid, a second `/start` of a running name is refused
//! unless its owner sends it (then, as in go-livepeer, the old stream is stopped and a new one
//! takes the name), and update, stop and status need the start's credentials (`owner.rs`).
//!
//! Layout, imports going one way (each module uses only those listed before it):
//! - `owner.rs`: who may control a stream (its start's credentials, hashed);
//! - `stream.rs`: one stream's state, counters and status model;
//! - `error.rs`: [`LiveError`]; `auth.rs`: the auth webhook and heartbeat; `ts.rs`;
//! - `context.rs`: [`LiveState`] and the shared `Inner`;
//! - `session.rs`: an attached orchestrator (data); `billing.rs`: paying it;
//! - `attach.rs`: selecting one and the start call; `relay.rs`: the session's pumps;
//! - `supervisor.rs`: opening, supervising and swapping; `api.rs`: the client's requests;
//!
//! Nothing here knows HTTP: the routes are in `http::live`, and [`LiveError`]s become the
//! gateway's `error::Error`, which `http::error` answers.
//!
//! This module keeps [`LiveConfig`] (read by `context.rs` only) and the re-exports.

pub(crate) mod api;
mod attach;
mod auth;
mod billing;
mod context;
mod error;
mod owner;
mod relay;
mod session;
mod stream;
mod supervisor;
pub mod ts;

pub use auth::{AuthWebhook, Heartbeat};
pub use context::LiveState;
pub use error::LiveError;
pub(crate) use owner::Credentials;
pub use owner::SECRET_HEADER;
pub(crate) use owner::{Denied, Owner};
pub(crate) use stream::Stream;
pub use stream::{FlowStatus, Phase, StreamStatus, SwapRecord};
pub(crate) use supervisor::{MAX_CONTROL_BODY, SwapBudget};

/// How long a client-facing trickle channel (live or BYOC) stays readable after its stream
/// ends: a subscriber whose request for the last output segment arrives just after the end
/// still gets it, then the end-of-stream mark, instead of a 404 that loses the output.
/// Bounded in bytes by the hub as well.
pub(crate) const CLOSED_CHANNEL_LINGER: std::time::Duration = std::time::Duration::from_secs(10);

use std::time::Duration;

/// Live video settings (flags `--live-*`).
#[derive(Debug, Clone)]
pub struct LiveConfig {
    /// How often the serving orchestrator is paid (go-livepeer `-livePaymentInterval`, 5 s).
    pub payment_interval: Duration,
    /// An orchestrator whose output stalls this long while input flows is replaced
    /// (go-livepeer: 30 s).
    pub out_segment_timeout: Duration,
    /// An orchestrator that sends no event for this long is replaced (go-livepeer: 30 s).
    pub events_timeout: Duration,
    /// Deadline of the start call (go-livepeer: 5 s).
    pub start_timeout: Duration,
    /// Most orchestrator replacements per stream within [`LiveConfig::swap_window`]; one more
    /// fault ends the stream (go-livepeer: 2 in 3 min).
    pub max_swaps: u32,
    /// The window of [`LiveConfig::max_swaps`].
    pub swap_window: Duration,
    /// Most streams at once.
    pub max_streams: usize,
    /// Most subscribers served at once per trickle channel.
    pub trickle_max_readers: usize,
    /// A trickle subscriber that takes no bytes for this long is let go.
    pub trickle_stall_timeout: Duration,
    /// A trickle channel nobody writes to for this long is closed.
    pub trickle_idle_timeout: Duration,
    /// Orchestrators tried per start or swap.
    pub max_attempts: u32,
    /// Most stopped streams whose status stays readable; the oldest is forgotten first.
    pub max_stopped_streams: usize,
    /// How long the status of a stopped stream stays readable.
    pub status_linger: Duration,
    /// Base of the URLs handed to clients, e.g. `https://gw.example.com`; default: from the
    /// request's Host.
    pub public_url: Option<String>,
    /// The operator's service that accepts or refuses each new stream (go-livepeer
    /// `-liveAIAuthWebhookUrl`).
    pub auth_webhook: Option<AuthWebhook>,
    /// The heartbeat that can terminate running streams (go-livepeer `-liveAIHeartbeatURL`).
    pub heartbeat: Option<Heartbeat>,
    /// `--live-ai-allow-cors` (go-livepeer's `LIVE_AI_ALLOW_CORS`): CORS headers on the live
    /// and BYOC stream routes.
    pub allow_cors: bool,
}
