//! What can go wrong with a live request, as a type: who failed (the client, the operator's
//! webhook, the orchestrators, the gateway) and with what message. The domain code returns
//! these; each becomes the gateway's [`Error`] (kind, field, retry advice), which the HTTP
//! edge alone answers.

use crate::error::{Error, Kind};

/// Why a live request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveError {
    /// No stream of that name (or stream id).
    NotFound {
        /// The name asked for.
        stream: String,
    },
    /// A running (or starting) stream already has the name, and the new `/start` may not
    /// replace it: it is not its owner's, or a start of the name is still in flight.
    Exists {
        /// The name asked for.
        stream: String,
    },
    /// The request presented no credentials for the stream.
    Unauthorized {
        /// The stream's name.
        stream: String,
    },
    /// The request's credentials are not those the stream was started with.
    NotOwner {
        /// The stream's name.
        stream: String,
    },
    /// A field of the request is invalid.
    Validation {
        /// The field at fault.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// The request body exceeds the limit.
    BodyTooLarge {
        /// The limit, bytes.
        limit: usize,
    },
    /// A MediaMTX form hook: RTMP/WHIP ingest, which this gateway does not do.
    UnsupportedIngest,
    /// The stream has already stopped.
    Stopped,
    /// The gateway already runs its maximum of streams; the client may retry later.
    TooManyStreams {
        /// The maximum.
        max: usize,
    },
    /// The stream's client channels could not be created.
    ChannelUnavailable(String),
    /// No orchestrator could start the stream; the client may retry later.
    NoOrchestrator(String),
    /// An orchestrator rejected the stream's own input (e.g. its params), which any other
    /// would reject too: the same request fails again.
    InputRejected(String),
    /// The operator's auth webhook refused the stream (the message says with what answer).
    AuthRefused(String),
    /// The operator's auth webhook could not be reached, or its accepting answer could not
    /// be read.
    AuthUnreachable,
    /// The gateway is short of its own resources (descriptors to dial with); the client
    /// may retry later.
    GatewayOverloaded(String),
    /// A fault of the gateway itself.
    Internal(String),
}

impl LiveError {
    /// An invalid request field.
    pub(crate) fn field(field: &'static str, message: impl Into<String>) -> Self {
        Self::Validation { field, message: message.into() }
    }
}

impl std::fmt::Display for LiveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotFound { stream } => write!(f, "stream {stream:?} not found"),
            Self::Exists { stream } => write!(
                f,
                "stream {stream:?} is already running or starting; only the client that started it can start it again (with the same Authorization header or its stream secret, once it has started), or choose another name"
            ),
            Self::Unauthorized { stream } => write!(
                f,
                "stream {stream:?} needs the credentials of its start: the same Authorization header, or its stream secret in the Livepeer-Stream-Secret header"
            ),
            Self::NotOwner { stream } => write!(
                f,
                "these credentials are not those stream {stream:?} was started with"
            ),
            Self::Validation { message, .. } => f.write_str(message),
            Self::BodyTooLarge { limit } => write!(f, "request body exceeds {limit} bytes"),
            Self::UnsupportedIngest => f.write_str(
                "RTMP/WHIP ingest through MediaMTX is not supported; POST JSON and publish MPEG-TS segments to the returned trickle publish_url",
            ),
            Self::Stopped => f.write_str("the stream has stopped"),
            Self::TooManyStreams { max } => {
                write!(f, "this gateway runs at most {max} live streams")
            }
            Self::ChannelUnavailable(message)
            | Self::NoOrchestrator(message)
            | Self::InputRejected(message)
            | Self::AuthRefused(message)
            | Self::GatewayOverloaded(message)
            | Self::Internal(message) => f.write_str(message),
            Self::AuthUnreachable => {
                f.write_str("the live-AI auth webhook could not be reached or gave an unusable answer")
            }
        }
    }
}

impl std::error::Error for LiveError {}

/// Seconds a client is told to wait before starting a stream again when the gateway or the
/// orchestrators are full.
const RETRY_AFTER_SECS: u32 = 5;

impl From<LiveError> for Error {
    fn from(e: LiveError) -> Self {
        let message = e.to_string();
        match e {
            LiveError::NotFound { .. } => Error::new(Kind::NotFound, message).field("stream"),
            LiveError::Exists { .. } => Error::new(Kind::StreamExists, message).field("stream"),
            LiveError::Unauthorized { .. } => Error::new(Kind::Unauthorized, message),
            LiveError::NotOwner { .. } => Error::new(Kind::NotStreamOwner, message),
            LiveError::Validation { field, .. } => Error::invalid(field, message),
            LiveError::BodyTooLarge { .. } => Error::new(Kind::BodyTooLarge, message).field("body"),
            LiveError::UnsupportedIngest => {
                Error::new(Kind::UnsupportedIngest, message).field("body")
            }
            LiveError::Stopped => Error::new(Kind::StreamStopped, message),
            LiveError::TooManyStreams { .. } => {
                Error::new(Kind::TooManyStreams, message).retry_after(RETRY_AFTER_SECS)
            }
            // The channel cap is full: streams end, so a later start may pass.
            LiveError::ChannelUnavailable(_) => {
                Error::new(Kind::TrickleUnavailable, message).retry_after(RETRY_AFTER_SECS)
            }
            LiveError::NoOrchestrator(_) => {
                Error::new(Kind::NoOrchestrator, message).retry_after(RETRY_AFTER_SECS)
            }
            LiveError::InputRejected(_) => Error::new(Kind::InvalidRequest, message),
            LiveError::AuthRefused(_) => Error::new(Kind::StreamRefused, message),
            LiveError::AuthUnreachable => Error::new(Kind::AuthWebhookUnavailable, message),
            LiveError::GatewayOverloaded(_) => Error::new(Kind::GatewayOverloaded, message),
            LiveError::Internal(_) => Error::new(Kind::Internal, message),
        }
    }
}
