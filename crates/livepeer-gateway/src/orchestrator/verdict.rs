//! One verdict for what an orchestrator did with a job, shared by batch AI (`ai::job`), live
//! video (`live::attach` for start calls, the live supervisor for mid-stream faults) and every
//! later job type: whether the client gets an error (and which), whether to try another
//! orchestrator, whether to eject this one, and whether its payment session must be renewed.
//! Callers classify what happened as a [`Failure`] and act on its [`Verdict`] only.
//!
//! The rules are the AI path's, which follow go-livepeer's retry loop (PROTOCOL.md §7.4): an
//! answer that blames the user's input stops the request with 400; "busy" answers and stale
//! payment terms move on without a penalty; anything else ejects the orchestrator and moves on.
//! When every orchestrator tried has failed, the client sees the verdict of the last failure.
//!
//! Live start calls used their own rules before; adopting the table changed them in three
//! places, on purpose: a 4xx that is neither busy nor about payment ejects the orchestrator
//! (live counted any 4xx as a refusal without ejection); a 4xx that blames the user's input
//! ends the start with 400 instead of trying other orchestrators; and payment refusals renew
//! the payment session, as AI calls already did.
//!
//! A penalty has a [`Scope`]: the orchestrator is ejected only for the job key (pipeline and
//! model) where it failed, unless the failure concerns it as a whole. Only a transport failure
//! does (connection refused, TLS refused, the connection broken), besides a failed
//! GetOrchestrator in the pool's refresh: every pipeline is served from the same address.
//!
//! | failure          | scope        | why                                                     |
//! |------------------|--------------|---------------------------------------------------------|
//! | Transport        | orchestrator | its address does not work, whatever the pipeline        |
//! | Timeout          | job          | one model can be slow or stuck while others answer      |
//! | PaymentInvalid   | job          | the payment session is renewed anyway (`renew_payment`) |
//! | Refused          | job          | the refusal is of this route or model                   |
//! | Server           | job          | a runner's 5xx or unusable answer is its pipeline's     |
//! | ClosedMidStream  | job          | the stream of this pipeline broke                       |
//! | others           | —            | not penalised                                           |
//!
//! Two failures are the gateway's own and penalise nobody: a result its full store cannot keep
//! ([`Failure::ResultNotKept`]), and a connection it could not open for want of its own
//! descriptors or memory ([`Failure::GatewayExhausted`]).

use super::Lease;

/// What went wrong with one orchestrator's handling of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Failure {
    /// The connection could not be made, or broke before a complete answer.
    Transport,
    /// No complete answer within the attempt's deadline.
    Timeout,
    /// Refused for capacity: 503, or go-livepeer's `insufficient capacity`.
    Busy,
    /// Refused because the payment's terms moved on, not because it was wrong: expired ticket
    /// params, an exhausted sender nonce, a short balance. Fresh terms fix it.
    PaymentStale,
    /// Refused the payment or its session as invalid (402, 403, a bad ticket or auth token).
    PaymentInvalid,
    /// The user's own input was rejected (a runner's `returned 400`, an audio file whose
    /// duration cannot be read): any orchestrator would say the same.
    ClientInput,
    /// Any other 4xx: the orchestrator refused a request the gateway built.
    Refused,
    /// A 5xx, or an answer the gateway cannot use (not the JSON the job returns, a result file
    /// that cannot be fetched).
    Server,
    /// A streamed answer stopped before its end.
    ClosedMidStream,
    /// The orchestrator delivered (answered 2xx, so it was paid and did the work) but the
    /// gateway could not keep the result: its own result store is full. Nobody is penalised,
    /// and no other orchestrator is tried: it would be paid for a result the gateway again
    /// may not be able to keep. The client is told to retry later.
    ResultNotKept,
    /// The gateway could not open a connection to the orchestrator because it ran out of
    /// descriptors or memory itself (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`). Nothing was
    /// sent, so nobody is penalised and the payment's credit returns; no other orchestrator
    /// is tried, as the next dial would meet the same shortage. The client is told to retry.
    GatewayExhausted,
}

/// What the client is told when a failure ends its request, as a domain value: the HTTP edge
/// turns it into a status and an error body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientOutcome {
    /// The request itself is at fault (HTTP 400).
    BadRequest,
    /// The orchestrators failed (HTTP 502).
    BadGateway,
    /// The orchestrators did not answer in time (HTTP 504).
    GatewayTimeout,
    /// The orchestrators were busy; a later retry can succeed (HTTP 503).
    ServiceUnavailable,
}

impl ClientOutcome {
    /// The error body's `type`, as the AI routes send it today.
    pub fn error_type(self) -> &'static str {
        match self {
            Self::BadRequest => "invalid_request",
            Self::BadGateway => "orchestrator_failed",
            Self::GatewayTimeout => "orchestrator_timeout",
            Self::ServiceUnavailable => "orchestrators_busy",
        }
    }
}

/// What a penalty covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// The whole orchestrator: it is ejected for every job.
    Orchestrator,
    /// Only the job key (pipeline and model) the failure happened on.
    Job,
}

/// What to do about one [`Failure`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Verdict {
    /// What the client sees if this failure ends the request: at once when
    /// [`fail_over`](Self::fail_over) is false, otherwise when no attempt is left.
    pub client_sees: ClientOutcome,
    /// Whether trying another orchestrator is right. A caller that has already sent part of
    /// the answer to the client cannot, and ends the answer instead.
    pub fail_over: bool,
    /// Whether the orchestrator is penalised (ejected from selection for a while).
    pub penalise: bool,
    /// Whether the payment session with this orchestrator (ticket params, auth token) must be
    /// fetched anew before it is paid again. Batch AI also retries the same orchestrator once
    /// with the fresh session.
    pub renew_payment: bool,
    /// What a penalty covers (meaningful only when [`penalise`](Self::penalise) is set).
    pub scope: Scope,
}

/// How the lease of the orchestrator a verdict is about ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LeaseEnd {
    /// Penalised: ejected from selection for a while.
    Eject,
    /// The user's input was at fault: released with no verdict on the orchestrator's health
    /// (a half-open probe ends without a result).
    ClientError,
    /// Released without a penalty (busy, stale payment terms).
    Release,
}

impl Verdict {
    /// How the orchestrator's lease ends.
    pub fn lease_end(self) -> LeaseEnd {
        if self.penalise {
            LeaseEnd::Eject
        } else if self.client_sees == ClientOutcome::BadRequest {
            LeaseEnd::ClientError
        } else {
            LeaseEnd::Release
        }
    }

    /// Ends `lease` as [`lease_end`](Self::lease_end) says; `why` is the reason an ejection
    /// records.
    pub fn end_lease(self, lease: Lease, why: impl std::fmt::Display) {
        match self.lease_end() {
            LeaseEnd::Eject if self.scope == Scope::Orchestrator => lease.failed(why.to_string()),
            LeaseEnd::Eject => lease.failed_job(why.to_string()),
            LeaseEnd::ClientError => lease.client_error(),
            LeaseEnd::Release => drop(lease),
        }
    }
}

impl Failure {
    /// The one table of verdicts.
    pub fn verdict(self) -> Verdict {
        use ClientOutcome::{BadGateway, BadRequest, GatewayTimeout, ServiceUnavailable};
        let v = |client_sees, fail_over, penalise, renew_payment| Verdict {
            client_sees,
            fail_over,
            penalise,
            renew_payment,
            scope: self.scope(),
        };
        match self {
            // Columns: client sees, fail over, penalise, renew payment.
            Self::Transport => v(BadGateway, true, true, false),
            Self::Timeout => v(GatewayTimeout, true, true, false),
            Self::Busy => v(ServiceUnavailable, true, false, false),
            Self::PaymentStale => v(ServiceUnavailable, true, false, true),
            Self::PaymentInvalid => v(BadGateway, true, true, true),
            Self::ClientInput => v(BadRequest, false, false, false),
            Self::Refused => v(BadGateway, true, true, false),
            Self::Server => v(BadGateway, true, true, false),
            Self::ClosedMidStream => v(BadGateway, true, true, false),
            Self::ResultNotKept => v(ServiceUnavailable, false, false, false),
            Self::GatewayExhausted => v(ServiceUnavailable, false, false, false),
        }
    }

    /// What a penalty for this failure covers (the table in the module docs).
    pub fn scope(self) -> Scope {
        match self {
            Self::Transport => Scope::Orchestrator,
            Self::Timeout
            | Self::Busy
            | Self::PaymentStale
            | Self::PaymentInvalid
            | Self::ClientInput
            | Self::Refused
            | Self::Server
            | Self::ClosedMidStream
            | Self::ResultNotKept
            | Self::GatewayExhausted => Scope::Job,
        }
    }

    /// The failure of a job's own GetOrchestrator call (the job-priced ticket params a
    /// payment needs) that ended with `e`. The call names the job's capability and model, so
    /// only a connection that could not be made concerns the orchestrator as a whole;
    /// anything else is judged for that job alone, and a capped orchestrator is busy.
    pub fn of_job_params(e: &super::client::ClientError) -> Self {
        use super::client::ClientError;
        match e {
            ClientError::Unreachable(_) | ClientError::BadAddress(_) => Self::Transport,
            ClientError::Timeout(_) => Self::Timeout,
            ClientError::Refused(m) if m.contains("OrchestratorCapped") => Self::Busy,
            ClientError::Refused(_) => Self::Refused,
            ClientError::Malformed(_) => Self::Server,
            ClientError::Local(_) => Self::GatewayExhausted,
        }
    }

    /// Classifies an orchestrator's error answer from its status and body text (go-livepeer
    /// writes most errors as plain text, and its gateway matches substrings of them, so these
    /// texts are part of the protocol: PROTOCOL.md §1.5, §7.4). The rules are those the AI
    /// path had before this table; a status below 400 that is not a success is an answer the
    /// gateway cannot use.
    ///
    /// One difference: a user-input answer whose text also mentions a ticket, an auth token
    /// or a balance (or comes with 402/403) reset the payment session on the AI path; here
    /// the user's input decides, without a renewal. That text is partly the user's own (a
    /// runner echoes the bad input), so it must not reset the gateway's payment session.
    pub fn from_answer(status: u16, body: &str) -> Self {
        let text = body.to_ascii_lowercase();
        let has = |needle: &str| text.contains(needle);
        if has("returned 400") || has("unable to calculate duration") {
            return Self::ClientInput;
        }
        let busy = status == 503
            || has("insufficient capacity")
            || has("ticketparams expired")
            || has("invalid ticket sendernonce")
            || has("insufficient balance");
        let payment = matches!(status, 402 | 403)
            || has("ticket")
            || has("insufficient balance")
            || has("auth token");
        match (busy, payment) {
            (true, true) => Self::PaymentStale,
            (true, false) => Self::Busy,
            (false, true) => Self::PaymentInvalid,
            (false, false) if (400..500).contains(&status) => Self::Refused,
            (false, false) => Self::Server,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ClientOutcome::{BadGateway, BadRequest, GatewayTimeout, ServiceUnavailable};
    use super::*;

    #[test]
    fn answers_classify_as_the_ai_path_blames_them() {
        #[rustfmt::skip]
        let rows: &[(u16, &str, Failure)] = &[
            // The user's input, whatever the status.
            (500, "text-to-image container returned 400: bad prompt", Failure::ClientInput),
            (400, "Unable to calculate duration", Failure::ClientInput),
            (500, "unable to calculate duration of audio", Failure::ClientInput),
            // Capacity.
            (503, "insufficient capacity", Failure::Busy),
            (500, "Insufficient capacity", Failure::Busy),
            (503, "", Failure::Busy),
            (503, "Service Unavailable Error", Failure::Busy),
            // Payment terms moved on: no penalty, renew.
            (400, "TicketParams expired", Failure::PaymentStale),
            (400, "invalid ticket senderNonce", Failure::PaymentStale),
            (400, "Insufficient balance", Failure::PaymentStale),
            (503, "ticket params expired soon", Failure::PaymentStale),
            (403, "insufficient capacity", Failure::PaymentStale),
            // Payment or session invalid: penalise, renew.
            (400, "invalid ticket signature", Failure::PaymentInvalid),
            (403, "invalid auth token", Failure::PaymentInvalid),
            (402, "base64 decode error: bad input", Failure::PaymentInvalid),
            (500, "expired auth token", Failure::PaymentInvalid),
            // Any other 4xx.
            (404, "404 page not found", Failure::Refused),
            (422, "Unprocessable Entity", Failure::Refused),
            (400, "bad request", Failure::Refused),
            // 5xx and unusable answers.
            (500, "boom", Failure::Server),
            (502, "", Failure::Server),
            (302, "", Failure::Server),
        ];
        for &(status, body, want) in rows {
            assert_eq!(Failure::from_answer(status, body), want, "{status} {body:?}");
        }
    }

    #[test]
    fn verdicts_follow_go_livepeer_retry_rules() {
        #[rustfmt::skip]
        let rows: &[(Failure, ClientOutcome, bool, bool, bool)] = &[
            //                          client sees          fail over  penalise  renew
            (Failure::Transport,       BadGateway,          true,      true,     false),
            (Failure::Timeout,         GatewayTimeout,      true,      true,     false),
            (Failure::Busy,            ServiceUnavailable,  true,      false,    false),
            (Failure::PaymentStale,    ServiceUnavailable,  true,      false,    true),
            (Failure::PaymentInvalid,  BadGateway,          true,      true,     true),
            (Failure::ClientInput,     BadRequest,          false,     false,    false),
            (Failure::Refused,         BadGateway,          true,      true,     false),
            (Failure::Server,          BadGateway,          true,      true,     false),
            (Failure::ClosedMidStream, BadGateway,          true,      true,     false),
            (Failure::ResultNotKept,   ServiceUnavailable,  false,     false,    false),
            (Failure::GatewayExhausted, ServiceUnavailable, false,     false,    false),
        ];
        for &(failure, client_sees, fail_over, penalise, renew_payment) in rows {
            let scope = failure.scope();
            let want = Verdict { client_sees, fail_over, penalise, renew_payment, scope };
            assert_eq!(failure.verdict(), want, "{failure:?}");
        }
    }

    #[test]
    fn only_transport_failures_eject_the_whole_orchestrator() {
        let all = [
            Failure::Transport,
            Failure::Timeout,
            Failure::Busy,
            Failure::PaymentStale,
            Failure::PaymentInvalid,
            Failure::ClientInput,
            Failure::Refused,
            Failure::Server,
            Failure::ClosedMidStream,
        ];
        for failure in all {
            let want = if failure == Failure::Transport { Scope::Orchestrator } else { Scope::Job };
            assert_eq!(failure.verdict().scope, want, "{failure:?}");
        }
    }

    #[test]
    fn leases_end_as_their_verdicts_say() {
        use LeaseEnd::{ClientError, Eject, Release};
        let rows = [
            (Failure::Transport, Eject),
            (Failure::Timeout, Eject),
            (Failure::Busy, Release),
            (Failure::PaymentStale, Release),
            (Failure::PaymentInvalid, Eject),
            (Failure::ClientInput, ClientError),
            (Failure::Refused, Eject),
            (Failure::Server, Eject),
            (Failure::ClosedMidStream, Eject),
            (Failure::ResultNotKept, Release),
            (Failure::GatewayExhausted, Release),
        ];
        for (failure, end) in rows {
            assert_eq!(failure.verdict().lease_end(), end, "{failure:?}");
        }
    }

    #[test]
    fn client_outcomes_keep_the_ai_error_types() {
        let rows = [
            (BadRequest, "invalid_request"),
            (BadGateway, "orchestrator_failed"),
            (GatewayTimeout, "orchestrator_timeout"),
            (ServiceUnavailable, "orchestrators_busy"),
        ];
        for (outcome, kind) in rows {
            assert_eq!(outcome.error_type(), kind, "{outcome:?}");
        }
    }
}
