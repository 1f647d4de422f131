//! Why a signer route refused a request, typed so that the domain steps know nothing of HTTP:
//! the HTTP edge's signer routes map each case to its status and body.

/// A refused signer request: who failed, and what the caller may do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The caller did not present the API key.
    #[error("missing or wrong API key (Authorization: Bearer <key>)")]
    Unauthorized,
    /// The pool has no usable orchestrator to list (a filter matching none of them is an
    /// empty list, not this).
    #[error("no orchestrator matches")]
    NoOrchestrators,
    /// The request is malformed, or its state is not this signer's (the client's fault).
    #[error("{0}")]
    Malformed(String),
    /// A field of the request is missing or invalid (a route of this gateway's own, which
    /// names the field; go-livepeer's routes answer [`Refusal::Malformed`]).
    #[error("{message}")]
    InvalidField {
        /// The offending field (`body` for the body as a whole).
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// The orchestrator's auth token is about to expire: the client must fetch fresh info
    /// from `orchestrator` and ask again with the same state (480).
    #[error("refresh session")]
    RefreshSession {
        /// Where the client refreshes the info (the orchestrator's transcoder URL).
        orchestrator: String,
    },
    /// The price is above the client's ceiling or the session's initial price (481).
    #[error("{0}")]
    PriceExceeded(String),
    /// The balance the state carries already covers this payment: no tickets (482).
    #[error("no tickets")]
    Covered,
    /// Arithmetic, signing or encoding failed on the signer's side.
    #[error("Internal Server Error: {0}")]
    Internal(String),
}

impl Refusal {
    /// A malformed request, with its message.
    pub(crate) fn malformed(message: &str) -> Self {
        Self::Malformed(message.to_owned())
    }

    /// A failure of the signer itself.
    pub(crate) fn internal(error: &dyn std::fmt::Display) -> Self {
        Self::Internal(error.to_string())
    }
}
