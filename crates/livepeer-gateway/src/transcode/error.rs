//! [`TranscodeError`]: why a pushed segment or a playback request got no answer it wanted. A
//! domain value: `http::transcode` gives each variant go-livepeer's status (GATEWAY.md §6.2)
//! and a JSON body naming the offending field.

use super::profiles::ProfileError;

/// A customer key's refusal, as the key check made it (its status, type and details).
#[derive(Debug, Clone)]
pub struct KeyRefusal(pub crate::error::Error);

impl std::fmt::Display for KeyRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.message())
    }
}

/// Refusals are equal when they say the same: the error itself has no equality.
impl PartialEq for KeyRefusal {
    fn eq(&self, other: &Self) -> bool {
        self.0.kind() == other.0.kind() && self.0.message() == other.0.message()
    }
}

impl Eq for KeyRefusal {}

/// Why a push or playback request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TranscodeError {
    /// The URL's extension is not `.ts` or `.mp4` (go-livepeer: 400).
    #[error("ignoring file extension: {0}")]
    BadExtension(String),
    /// The URL names no manifest id or a malformed one (400).
    #[error("Bad URL url={0}")]
    BadUrl(String),
    /// `Livepeer-Transcode-Configuration` is not valid (400).
    #[error("failed to parse transcode config header: {0}")]
    BadConfig(ProfileError),
    /// A request header is out of range (400).
    #[error("{header}: {message}")]
    BadHeader {
        /// The header.
        header: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The segment's body did not arrive in time, or broke off (408).
    #[error("{0}")]
    BodyTimeout(String),
    /// The file name's sequence number cannot be taken (400): above `i64::MAX`, which the
    /// segment's signed header cannot carry.
    #[error("{0}")]
    BadSeq(String),
    /// The segment is published or in flight already and the client does not take its
    /// renditions: transcoding it again would be paid for and published nowhere (409).
    #[error("{0}")]
    LateSegment(String),
    /// The stream's finished segments waiting behind an earlier one fill its window: retry
    /// once that one is published (503).
    #[error("{0}")]
    Backlog(String),
    /// The stream's customer key refused to pay for a segment (402 `budget_exceeded`, as the
    /// key check words it): that segment was not published, and the stream takes no more. Or
    /// the key ended the stream (`TranscodeState::follow_key`: 410 `stream_stopped` when the
    /// operator stopped the key's streams), whose name takes no more of the key's pushes.
    #[error("{0}")]
    KeyRefused(KeyRefusal),
    /// The stream was made by another customer key's pushes (or by RTMP): a key pushes into
    /// its own streams only (403).
    #[error("stream {0:?} belongs to another API key or an RTMP publisher")]
    NotOwner(String),
    /// The segment is over the size cap (413).
    #[error("segment larger than {0} bytes")]
    TooLarge(usize),
    /// The body is not media of the format its extension says (go-livepeer: 422).
    #[error("Error getting codec info url={0}")]
    BadMedia(String),
    /// The segment's video is in a codec or pixel format no orchestrator capability covers
    /// (go-livepeer: 422 `Unknown input stream codec=…`).
    #[error("{0}")]
    BadCodec(String),
    /// The gateway holds `--max-sessions` streams already (503).
    #[error("Too many connections")]
    TooManyStreams,
    /// The stream auth webhook refused the stream (go-livepeer: 403 `authentication denied`).
    #[error("authentication denied: {0}")]
    AuthDenied(String),
    /// The stream auth webhook could not be asked: the operator's fault, not the client's (503).
    #[error("the stream auth webhook is unavailable: {0}")]
    AuthUnavailable(String),
    /// A stream of this name is live already (go-livepeer's `StreamAlreadyExists`: 409).
    #[error("stream already exists: {0}")]
    StreamExists(String),
    /// No orchestrator could be had for the segment (go-livepeer: 503).
    #[error("No sessions available")]
    NoSessions,
    /// Transcoding failed on every attempt, or with an error no retry cures (422), or for
    /// another reason (500). The source was published in its place.
    #[error("http push error processing segment url={url} manifestID={manifest} err={message:?}")]
    Failed {
        /// The push URL's path.
        url: String,
        /// The stream.
        manifest: String,
        /// The last error.
        message: String,
        /// Whether retrying cannot help (go-livepeer's 422: non-retryable, max attempts).
        final_: bool,
    },
    /// The gateway is short of its own resources (descriptors to dial with, room in its
    /// result or body budget): the source was published in the segment's place, and the
    /// client may retry (503).
    #[error("{0}")]
    GatewayOverloaded(String),
    /// The stream, rendition or segment is not known (404).
    #[error("{0}")]
    NotFound(String),
    /// A fault of the gateway's own (500).
    #[error("{0}")]
    Internal(String),
}

impl TranscodeError {
    /// The request field the error is about, for the JSON body.
    pub fn field(&self) -> Option<String> {
        match self {
            Self::BadExtension(_) => Some("extension".into()),
            Self::BadUrl(_) | Self::NotOwner(_) => Some("manifestID".into()),
            Self::BadConfig(e) => Some(format!("Livepeer-Transcode-Configuration.{}", e.field)),
            Self::BadHeader { header, .. } => Some((*header).into()),
            Self::TooLarge(_) | Self::BadMedia(_) | Self::BadCodec(_) | Self::BodyTimeout(_) => {
                Some("body".into())
            }
            Self::BadSeq(_) | Self::LateSegment(_) => Some("seq".into()),
            _ => None,
        }
    }

    /// The stable `type` of the JSON body.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::BadExtension(_) | Self::BadUrl(_) | Self::BadHeader { .. } | Self::BadSeq(_) => {
                "invalid_request"
            }
            Self::BadConfig(_) => "validation_error",
            Self::TooLarge(_) => "body_too_large",
            Self::BodyTimeout(_) => "body_timeout",
            Self::BadMedia(_) => "unsupported_media",
            Self::BadCodec(_) => "unsupported_codec",
            Self::TooManyStreams => "too_many_streams",
            Self::NotOwner(_) => "stream_forbidden",
            Self::KeyRefused(r) => r.0.kind().name(),
            Self::LateSegment(_) => "segment_late",
            Self::Backlog(_) => "stream_backlog",
            Self::StreamExists(_) => "stream_exists",
            Self::AuthDenied(_) => "authentication_denied",
            Self::AuthUnavailable(_) => "auth_webhook_unavailable",
            Self::NoSessions => "no_orchestrator",
            Self::Failed { final_: true, .. } => "transcode_failed",
            Self::Failed { .. } => "transcode_error",
            Self::GatewayOverloaded(_) => "gateway_overloaded",
            Self::NotFound(_) => "not_found",
            Self::Internal(_) => "internal",
        }
    }
}
