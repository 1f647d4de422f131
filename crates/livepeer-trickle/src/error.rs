//! What went wrong, and whether trying again can help.

/// A trickle operation failed. Each variant says who failed and whether a retry is safe.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TrickleError {
    /// The server has no such channel (404): the stream is gone. Not retryable.
    #[error("trickle channel not found")]
    NotFound,
    /// The channel was closed while the operation ran. Not retryable.
    #[error("trickle channel closed")]
    Closed,
    /// The requested segment is outside the server's window (470); `latest` is the live edge.
    #[error("trickle segment {seq} missed; server is at {latest}")]
    Missed {
        /// The requested sequence number.
        seq: i64,
        /// The server's next write sequence number.
        latest: i64,
    },
    /// The server answered with another error status.
    #[error("trickle server answered {status}: {body}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// The connection failed or broke (connect, reset, TLS). Safe to retry.
    #[error("trickle transport: {0}")]
    Transport(String),
    /// No connection could be opened because this process ran out of descriptors or memory
    /// (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`): the caller's shortage, not the server's.
    /// Safe to retry.
    #[error("trickle: this process could not open a connection: {0}")]
    Local(String),
    /// A wait ran past its limit. Safe to retry.
    #[error("trickle timeout: {0}")]
    Timeout(&'static str),
    /// A segment was larger than allowed.
    #[error("trickle segment larger than {limit} bytes")]
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// Bad input from the caller (a bad URL or name).
    #[error("trickle: {0}")]
    Invalid(String),
}

impl TrickleError {
    /// Whether the same operation may succeed if tried again.
    pub fn retry_safe(&self) -> bool {
        match self {
            Self::Transport(_) | Self::Local(_) | Self::Timeout(_) | Self::Missed { .. } => true,
            Self::Status { status, .. } => *status >= 500,
            Self::NotFound | Self::Closed | Self::TooLarge { .. } | Self::Invalid(_) => false,
        }
    }

    /// Whether this means the end of the stream rather than a fault.
    pub fn is_end(&self) -> bool {
        matches!(self, Self::NotFound | Self::Closed)
    }
}
