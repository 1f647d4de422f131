//! The gateway's error model: what a job path reports when it cannot give the client what it
//! asked for. An [`Error`] says who failed ([`Party`]), in a stable `type` string clients and
//! metrics can rely on, and whether the client may retry the same request later.
//!
//! Nothing here knows HTTP: `http::error` alone turns an [`Error`] into a status, a JSON body and
//! `Retry-After`. Whether to try another *orchestrator* within one request is a different
//! question, answered by `orchestrator::verdict`.
//!
//! This module imports nothing of the crate, so that every module can report errors: a
//! constructor from another module's error is written beside that error (`Error::select`, in
//! `orchestrator::pool`).

use std::fmt;

/// Who is at fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Party {
    /// The client's request is wrong; the same request will fail again.
    Client,
    /// The orchestrators tried failed or refused.
    Orchestrator,
    /// The gateway itself (a bug, or a resource it depends on).
    Gateway,
    /// The gateway would not or could not pay.
    Payment,
}

/// What went wrong. Each kind has one stable `type` string, one party and one HTTP mapping
/// (in `http::error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The request failed validation (fields listed).
    Validation,
    /// An orchestrator refused the request's input as the user's mistake.
    InvalidRequest,
    /// The request body broke off.
    BodyUnreadable,
    /// The multipart body is malformed.
    InvalidMultipart,
    /// The request body did not arrive in time.
    BodyTimeout,
    /// The request body is over the limit.
    BodyTooLarge,
    /// The ingest form is not supported.
    UnsupportedIngest,
    /// Missing or wrong credentials.
    Unauthorized,
    /// The request may not be made this way at all, whoever sends it: the token-less admin
    /// API refuses a request naming another host, or sent by another site's web page.
    Forbidden,
    /// The body is not of the media type the route takes (the admin API's JSON routes).
    UnsupportedMediaType,
    /// The customer key (`--auth keys`) is missing, unknown, disabled or expired.
    InvalidApiKey,
    /// The customer key may not use this pipeline or model.
    KeyNotAllowed,
    /// The customer key is over its requests-per-minute limit.
    RateLimited,
    /// The customer key store (its database) failed.
    KeyStoreUnavailable,
    /// The customer key's budget cannot pay for the job.
    BudgetExceeded,
    /// The customer key holds as many streams as it may.
    StreamLimit,
    /// A customer price in wei has no current ETH/USD rate to be charged in USD.
    PriceUnavailable,
    /// The usage ledger cannot record more paid traffic (its database is down and its buffer
    /// full).
    LedgerUnavailable,
    /// The auth webhook refused the stream.
    StreamRefused,
    /// The request's credentials are not those of the stream's owner (the client that started it).
    NotStreamOwner,
    /// The stream name is taken by a running stream.
    StreamExists,
    /// No such resource.
    NotFound,
    /// The stream has ended.
    StreamStopped,
    /// No orchestrator offers the job.
    NoOrchestrator,
    /// Every orchestrator offering the job is above the price cap.
    OverMaxPrice,
    /// Every orchestrator offering the job is ejected or full.
    OrchestratorsUnavailable,
    /// Every orchestrator tried was busy.
    OrchestratorsBusy,
    /// The gateway would not or could not pay any orchestrator.
    PaymentRefused,
    /// The orchestrators tried did not answer in time.
    OrchestratorTimeout,
    /// The orchestrators tried failed.
    OrchestratorFailed,
    /// The gateway holds as many streams as it may.
    TooManyStreams,
    /// The gateway holds as many async jobs (running, or finished and kept) as it may.
    AsyncJobsFull,
    /// No trickle channel could be created.
    TrickleUnavailable,
    /// The auth webhook could not be reached.
    AuthWebhookUnavailable,
    /// The gateway's result store is full (downloads in progress hold it): the orchestrator
    /// delivered, the gateway could not keep the result.
    ResultStoreFull,
    /// The gateway is short of its own resources: descriptors or memory for a connection to
    /// an orchestrator, or room in its budget for request bodies.
    GatewayOverloaded,
    /// A fault of the gateway's own.
    Internal,
}

impl Kind {
    /// The stable `type` string of the JSON error body.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Validation => "validation_error",
            Kind::InvalidRequest => "invalid_request",
            Kind::BodyUnreadable => "body_unreadable",
            Kind::InvalidMultipart => "invalid_multipart",
            Kind::BodyTimeout => "body_timeout",
            Kind::BodyTooLarge => "body_too_large",
            Kind::UnsupportedIngest => "unsupported_ingest",
            Kind::Unauthorized => "unauthorized",
            Kind::Forbidden => "forbidden",
            Kind::UnsupportedMediaType => "unsupported_media_type",
            Kind::InvalidApiKey => "invalid_api_key",
            Kind::KeyNotAllowed => "model_not_allowed",
            Kind::RateLimited => "rate_limit_exceeded",
            Kind::KeyStoreUnavailable => "key_store_unavailable",
            Kind::BudgetExceeded => "budget_exceeded",
            Kind::StreamLimit => "stream_limit_exceeded",
            Kind::LedgerUnavailable => "ledger_unavailable",
            Kind::PriceUnavailable => "price_unavailable",
            Kind::StreamRefused => "stream_refused",
            Kind::NotStreamOwner => "not_stream_owner",
            Kind::StreamExists => "stream_exists",
            Kind::NotFound => "not_found",
            Kind::StreamStopped => "stream_stopped",
            Kind::NoOrchestrator => "no_orchestrator",
            Kind::OverMaxPrice => "over_max_price",
            Kind::OrchestratorsUnavailable => "orchestrators_unavailable",
            Kind::OrchestratorsBusy => "orchestrators_busy",
            Kind::PaymentRefused => "payment_refused",
            Kind::OrchestratorTimeout => "orchestrator_timeout",
            Kind::OrchestratorFailed => "orchestrator_failed",
            Kind::TooManyStreams => "too_many_streams",
            Kind::AsyncJobsFull => "async_jobs_full",
            Kind::TrickleUnavailable => "trickle_unavailable",
            Kind::AuthWebhookUnavailable => "auth_webhook_unavailable",
            Kind::ResultStoreFull => "result_store_full",
            Kind::GatewayOverloaded => "gateway_overloaded",
            Kind::Internal => "internal",
        }
    }

    /// Who is at fault.
    pub fn party(self) -> Party {
        match self {
            Kind::Validation
            | Kind::InvalidRequest
            | Kind::BodyUnreadable
            | Kind::InvalidMultipart
            | Kind::BodyTimeout
            | Kind::BodyTooLarge
            | Kind::UnsupportedIngest
            | Kind::Unauthorized
            | Kind::Forbidden
            | Kind::UnsupportedMediaType
            | Kind::InvalidApiKey
            | Kind::KeyNotAllowed
            | Kind::RateLimited
            | Kind::BudgetExceeded
            | Kind::StreamLimit
            | Kind::StreamRefused
            | Kind::NotStreamOwner
            | Kind::StreamExists
            | Kind::NotFound
            | Kind::StreamStopped => Party::Client,
            Kind::NoOrchestrator
            | Kind::OverMaxPrice
            | Kind::OrchestratorsUnavailable
            | Kind::OrchestratorsBusy
            | Kind::OrchestratorTimeout
            | Kind::OrchestratorFailed => Party::Orchestrator,
            Kind::PaymentRefused => Party::Payment,
            Kind::TooManyStreams
            | Kind::AsyncJobsFull
            | Kind::TrickleUnavailable
            | Kind::AuthWebhookUnavailable
            | Kind::ResultStoreFull
            | Kind::KeyStoreUnavailable
            | Kind::LedgerUnavailable
            | Kind::PriceUnavailable
            | Kind::GatewayOverloaded
            | Kind::Internal => Party::Gateway,
        }
    }

    /// The `Retry-After` seconds a client is told when a later retry can succeed.
    pub(crate) fn default_retry_after(self) -> Option<u32> {
        match self {
            Kind::NoOrchestrator => Some(30),
            Kind::OverMaxPrice | Kind::PaymentRefused => Some(60),
            Kind::OrchestratorsUnavailable => Some(2),
            Kind::OrchestratorsBusy | Kind::ResultStoreFull | Kind::GatewayOverloaded => Some(1),
            Kind::TooManyStreams
            | Kind::AsyncJobsFull
            | Kind::AuthWebhookUnavailable
            | Kind::KeyStoreUnavailable
            | Kind::LedgerUnavailable
            | Kind::PriceUnavailable => Some(5),
            _ => None,
        }
    }
}

/// One offending field of a request that failed validation, as the AI spec's
/// `ValidationError`; a validation [`Error`] lists every one.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FieldError {
    /// Location, e.g. `["body", "prompt"]`.
    pub loc: Vec<String>,
    /// Human message.
    pub msg: String,
    /// Error type, e.g. `missing`, `int_parsing`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// The most field errors one validation failure lists.
pub const MAX_FIELD_ERRORS: usize = 32;

/// A failed request, as the client is told about it.
#[derive(Debug, Clone)]
pub struct Error {
    kind: Kind,
    message: String,
    field: Option<String>,
    retry_after: Option<u32>,
    fields: Vec<FieldError>,
    details: Vec<(&'static str, String)>,
}

impl Error {
    /// An error of `kind` with a human message.
    pub fn new(kind: Kind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            field: None,
            retry_after: kind.default_retry_after(),
            fields: Vec::new(),
            details: Vec::new(),
        }
    }

    /// Names the one request field at fault.
    #[must_use]
    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// Adds a named value to the error's body (e.g. the budget left), beside its message.
    #[must_use]
    pub fn detail(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.details.push((name, value.into()));
        self
    }

    /// The named values of [`Error::detail`].
    pub fn details(&self) -> &[(&'static str, String)] {
        &self.details
    }

    /// Tells the client to retry after `seconds` (overrides the kind's default).
    #[must_use]
    pub fn retry_after(mut self, seconds: u32) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// A validation failure listing the bad fields, at most [`MAX_FIELD_ERRORS`] of them (a
    /// body of a million bad list items must not make an answer of a million errors); the
    /// first names the `field`.
    pub fn validation(mut errors: Vec<FieldError>) -> Self {
        if errors.len() > MAX_FIELD_ERRORS {
            errors.truncate(MAX_FIELD_ERRORS);
            errors.push(FieldError {
                loc: vec!["body".into()],
                msg: format!("more errors, not listed (at most {MAX_FIELD_ERRORS} are)"),
                kind: "too_many_errors".into(),
            });
        }
        let field =
            errors.first().map(|e| e.loc.iter().skip(1).cloned().collect::<Vec<_>>().join("."));
        let message = errors
            .iter()
            .map(|e| format!("{}: {}", e.loc.join("."), e.msg))
            .collect::<Vec<_>>()
            .join("; ");
        let details = Vec::new();
        Self { kind: Kind::Validation, message, field, retry_after: None, fields: errors, details }
    }

    /// One invalid field: a validation error with a message of its own.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::new(Kind::Validation, message).field(field)
    }

    /// The request body is over `limit` bytes.
    pub fn too_large(limit: usize) -> Self {
        Self::new(Kind::BodyTooLarge, format!("request body exceeds {limit} bytes")).field("body")
    }

    /// What went wrong.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Who is at fault.
    pub fn party(&self) -> Party {
        self.kind.party()
    }

    /// Whether the same request may succeed if the client sends it again later.
    pub fn retry_safe(&self) -> bool {
        self.retry_after.is_some()
    }

    /// The human message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The request field at fault, if one is.
    pub fn field_name(&self) -> Option<&str> {
        self.field.as_deref()
    }

    /// Seconds after which a retry may succeed.
    pub fn retry_after_secs(&self) -> Option<u32> {
        self.retry_after
    }

    /// Every bad field of a validation failure (empty otherwise).
    pub fn field_errors(&self) -> &[FieldError] {
        &self.fields
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.name(), self.message)
    }
}

impl std::error::Error for Error {}

/// The `Display` of an error followed by those of its sources, so that a message such as
/// "error sending request" also says why.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Whether `error`, or any error it was caused by, says the gateway's own process or host ran
/// out of what a new connection needs (descriptors, socket buffers, memory). Such a failure to
/// reach an orchestrator is the gateway's, not the orchestrator's: nothing was sent to it.
pub(crate) fn is_local_exhaustion(error: &(dyn std::error::Error + 'static)) -> bool {
    use rustix::io::Errno;
    let exhausted = [Errno::MFILE, Errno::NFILE, Errno::NOBUFS, Errno::NOMEM];
    let mut next = Some(error);
    while let Some(e) = next {
        let io = e.downcast_ref::<std::io::Error>();
        let code = io.and_then(std::io::Error::raw_os_error);
        if code.is_some_and(|code| exhausted.iter().any(|x| x.raw_os_error() == code)) {
            return true;
        }
        // An `io::Error` made from another error gives that error's source as its own,
        // skipping the error itself: look inside it first.
        next = match io.and_then(std::io::Error::get_ref) {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_exhaustion_is_found_however_it_is_wrapped() {
        use rustix::io::Errno;
        let emfile = || std::io::Error::from_raw_os_error(Errno::MFILE.raw_os_error());
        // Bare, inside an `io::Error` made from it (as hyper's connectors do), and twice so.
        let wrapped = std::io::Error::other(emfile());
        let twice = std::io::Error::other(std::io::Error::other(emfile()));
        for e in [emfile(), wrapped, twice] {
            assert!(is_local_exhaustion(&e), "{e:?}");
        }
        let refused = std::io::Error::from_raw_os_error(Errno::CONNREFUSED.raw_os_error());
        assert!(!is_local_exhaustion(&std::io::Error::other(refused)));
    }

    #[test]
    fn kinds_say_who_failed_and_when_to_retry() {
        let busy = Error::new(Kind::OrchestratorsBusy, "all busy");
        assert_eq!(busy.party(), Party::Orchestrator);
        assert_eq!(busy.retry_after_secs(), Some(1));
        assert!(busy.retry_safe());
        let bad = Error::invalid("prompt", "field required");
        assert_eq!(bad.party(), Party::Client);
        assert!(!bad.retry_safe());
        assert_eq!(bad.field_name(), Some("prompt"));
        assert_eq!(Error::new(Kind::PaymentRefused, "x").party(), Party::Payment);
        assert_eq!(Error::new(Kind::Internal, "x").party(), Party::Gateway);
        assert_eq!(
            Error::new(Kind::TooManyStreams, "x").retry_after(5).retry_after_secs(),
            Some(5)
        );
    }
}
