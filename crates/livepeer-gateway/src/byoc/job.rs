//! One BYOC job across its attempts (PROTOCOL.md §10.5, with go-livepeer's rules and two of
//! its quirks fixed):
//! - each attempt selects an orchestrator not tried yet that `parameters.orchestrators`
//!   allows, takes its job token (fetching one if none is fresh), signs the job afresh, pays
//!   and sends it with the body, within `timeout_seconds + 5 s` (go-livepeer's);
//! - a transport error, a timeout or a 5xx before the answer's first byte: the next
//!   orchestrator, this one penalised for this capability only; a 503 `No capacity…`: the
//!   next one, this one not penalised; a 4xx: the client's, relayed as it is; after the first
//!   byte nothing is retried;
//! - another orchestrator is tried only while the body can be sent again (see `upload`);
//! - when every attempt failed the client gets a JSON 503 listing them (go-livepeer's gateway
//!   writes nothing then: an empty 200).

use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{StreamExt as _, TryStreamExt as _};
use http_body_util::{BodyExt as _, StreamBody};
use hyper::body::Frame;
use tokio::time::Instant;

use super::answer::{Relay, Settle, ceil_seconds};
use super::request::{JOB_HEADER, JobRequest};
use super::sent::OutTickets;
use super::tokens::{Stored, orch_key};
use super::upload::Upload;
use super::{ByocState, JobSigner};
use crate::error::{Error, Kind};
use crate::job::JobKey;
use crate::orchestrator::Lease;
use crate::orchestrator::byoc::TokenError;
use crate::orchestrator::http::{HttpError, OrchBody, REFUSED_RESENDS, read_body, resend_pause};
use crate::orchestrator::text::cut;
use crate::payment::{ByocOutcome, ByocPayment, ByocPrepared, PayError};

/// Added to `timeout_seconds` for an attempt's deadline (go-livepeer's gateway).
const ATTEMPT_GRACE: Duration = Duration::from_secs(5);
/// Added to `timeout_seconds` for a stream of events (go-livepeer's gateway).
const EVENTS_GRACE: Duration = Duration::from_secs(10);
/// The most of a failed answer's body read for its message.
const ERROR_BODY_BYTES: usize = 4096;

/// How a go-livepeer orchestrator answers (400) a job whose payment does not cover a minute of
/// its price, or whose signature it cannot verify (byoc/job_orchestrator.go): the gateway's
/// doing, never the client's.
pub(crate) const PAYMENT_REFUSALS: [&str; 2] =
    ["Insufficient balance", "Could not verify job creds"];

/// The answer's body, as it streams.
pub type AnswerBody = BoxStream<'static, Result<Bytes, std::io::Error>>;

/// What a job produced, for the HTTP edge.
#[derive(Debug)]
pub struct Reply {
    /// The service URI of the orchestrator that answered (`X-Orchestrator-Url`).
    pub orchestrator: Option<String>,
    /// The answer, or why there is none.
    pub outcome: Result<Answer, Error>,
}

/// An orchestrator's answer, relayed as it is.
pub struct Answer {
    /// Its status (2xx, or a 4xx the client caused).
    pub status: u16,
    /// Its headers that go to the client: `Content-Type`, `X-Metadata`, `Livepeer-Balance`.
    pub headers: Vec<(&'static str, String)>,
    /// Its body.
    pub body: AnswerBody,
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Answer")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .finish()
    }
}

/// One attempt, for the record.
#[derive(Debug, serde::Serialize)]
struct Tried {
    orchestrator: String,
    error: Option<String>,
}

/// The request across its attempts.
struct Job<'a> {
    state: &'a ByocState,
    req: &'a JobRequest,
    key: JobKey,
    /// Discovery URLs excluded: tried, or not allowed by the request.
    excluded: Vec<String>,
    tried: Vec<Tried>,
    started: Instant,
    /// Attempts that failed, found no capacity, or were not paid.
    failed: u32,
    busy: u32,
    unpaid: u32,
    tickets: u32,
    ev_sent: livepeer_pm::Ratio,
    /// When the job token of the attempt in progress was asked for (see
    /// [`super::tokens::Tokens::refused`]).
    token_fetched: Option<Instant>,
    /// The customer key's tab (see [`Sending::tab`]).
    tab: Option<std::sync::Arc<crate::keys::Tab>>,
}

/// How an attempt ended.
enum Step {
    Done(Reply),
    Next,
}

/// What goes to the orchestrator besides the job: the path after `/process/request/` as the
/// client sent it (percent-encoded), the client's `Content-Type` and `Content-Length`, and
/// the body.
#[derive(Debug)]
pub struct Sending<'a> {
    /// The path after `/process/request/`.
    pub path: &'a str,
    /// The client's `Content-Type`.
    pub content_type: Option<&'a str>,
    /// The client's `Content-Length`.
    pub content_length: Option<u64>,
    /// The body.
    pub upload: &'a Upload,
    /// The customer key's tab: reserved on the orchestrator's fee for the job's timeout
    /// before the job is sent, settled on the seconds the orchestrator charged.
    pub tab: Option<std::sync::Arc<crate::keys::Tab>>,
}

/// What one attempt sends, whichever stream carries it.
#[derive(Clone, Copy)]
struct Outgoing<'u, 's> {
    url: &'u str,
    /// The signed `Livepeer` header.
    job: &'u str,
    /// The `Livepeer-Payment` header, when tickets or credit go with the job.
    payment: Option<&'u str>,
    sending: &'u Sending<'s>,
}

impl Outgoing<'_, '_> {
    /// The request, carrying `body`.
    fn build(
        self,
        body: super::upload::AttemptBody,
    ) -> Result<http::Request<crate::orchestrator::http::StreamBody>, HttpError> {
        let mut builder = http::Request::post(self.url).header(JOB_HEADER, self.job);
        if let Some(p) = self.payment {
            builder = builder.header(livepeer_pm::PAYMENT_HEADER, p);
        }
        if let Some(ct) = self.sending.content_type {
            builder = builder.header(http::header::CONTENT_TYPE, ct);
        }
        if let Some(n) = self.sending.content_length {
            builder = builder.header(http::header::CONTENT_LENGTH, n);
        }
        let body = StreamBody::new(body.map_ok(Frame::data).map_err(Into::into)).boxed_unsync();
        builder.body(body).map_err(|e| HttpError::BadUrl(e.to_string()))
    }
}

/// Runs the job to its answer.
pub async fn run(state: &ByocState, req: &JobRequest, sending: &Sending<'_>) -> Reply {
    let upload = sending.upload;
    let mut job = Job::new(state, req);
    job.tab = sending.tab.clone();
    let mut attempts = 0;
    while attempts < state.config.max_attempts {
        let lease = match job.select() {
            Ok(lease) => lease,
            Err(e) if job.tried.is_empty() => return job.refused(e),
            Err(_) => break,
        };
        attempts += 1;
        if let Step::Done(reply) = job.attempt(lease, sending).await {
            return reply;
        }
        if !upload.replayable() {
            let message = "the request body was streamed to an orchestrator that failed; it cannot be sent again";
            return job.give_up(Some(message));
        }
    }
    job.give_up(None)
}

impl<'a> Job<'a> {
    fn new(state: &'a ByocState, req: &'a JobRequest) -> Self {
        let key = JobKey::byoc(&req.capability);
        let snap = state.pool.snapshot();
        let excluded = snap
            .slots
            .iter()
            .filter(|s| !req.allows(&orch_key(&s.url)))
            .map(|s| s.url.to_string())
            .collect();
        Self {
            state,
            req,
            key,
            excluded,
            tried: Vec::new(),
            started: Instant::now(),
            failed: 0,
            busy: 0,
            unpaid: 0,
            tickets: 0,
            ev_sent: livepeer_pm::Ratio::ZERO,
            token_fetched: None,
            tab: None,
        }
    }

    fn select(&mut self) -> Result<Lease, crate::orchestrator::SelectError> {
        let exclude: Vec<&str> = self.excluded.iter().map(String::as_str).collect();
        let lease = self.state.pool.select(&self.key, &exclude)?;
        self.excluded.push(lease.url().to_string());
        Ok(lease)
    }

    /// One attempt on `lease`'s orchestrator.
    async fn attempt(&mut self, lease: Lease, sending: &Sending<'_>) -> Step {
        let orch = orch_key(lease.url());
        let token = match self.token(&orch).await {
            Ok(token) => token,
            Err(TokenProblem::Busy) => return self.busy(lease, "no capacity (job token)"),
            Err(TokenProblem::Failed(e)) => return self.failed(lease, e),
            Err(TokenProblem::Local(e)) => return self.overloaded(lease, e),
        };
        self.token_fetched = Some(token.fetched);
        if let Some(why) = self.state.over_cap(&self.req.capability, &token.token) {
            // Its price, not a fault: moved on from without a penalty, as a refused payment.
            return self.skipped(lease, &orch, "price", why);
        }
        let header = match self.sign().await {
            Ok(header) => header,
            Err(e) => return Step::Done(self.finish(Err(e), None, "failed")),
        };
        let timeout = self.req.timeout_seconds;
        let deadline = Instant::now() + Duration::from_secs(timeout) + ATTEMPT_GRACE;
        let mut payment = match self.pay(&orch, &token, deadline).await {
            Ok(p) => p,
            Err(e) => return self.unpaid(lease, &orch, &e),
        };
        if let Some(tab) = &sending.tab {
            // The fee is known once the orchestrator's price is: the most this job can cost
            // (its timeout's), which a multiple of the orchestrator's price is reserved on.
            let bound = payment.fee(timeout);
            if let Err(e) = Box::pin(tab.reserve(&self.req.capability, timeout, Some(&bound))).await
            {
                // Its tickets were never sent: they count for nothing.
                self.state.payments.byoc_settle(payment, ByocOutcome::Refused);
                drop(lease);
                return Step::Done(self.finish(Err(e), None, "refused"));
            }
        }
        let Some(body) = sending.upload.body() else {
            // Never sent: its tickets went nowhere.
            self.state.payments.byoc_settle(payment, ByocOutcome::Refused);
            drop(lease);
            return Step::Next;
        };
        let url = format!("{}/process/request/{}", token.token.service_addr, sending.path);
        let to = (lease.url().to_string(), self.key.clone());
        let out = OutTickets::new(&payment, to, sending.tab.clone(), self.state.metrics.clone());
        let sent = Instant::now();
        let deadline = sent + Duration::from_secs(timeout) + ATTEMPT_GRACE;
        let request = Outgoing { url: &url, job: &header, payment: payment.header(), sending };
        let answer = tokio::time::timeout_at(deadline, self.send(request, body)).await;
        let resp = match answer {
            Ok(Ok(resp)) => {
                // Answered: the orchestrator has processed the payment.
                self.state.payments.byoc_confirm(&mut payment);
                resp
            }
            Ok(Err(HttpError::Refused(why))) => {
                // Refused each time it was sent: the orchestrator processed none of it
                // (RFC 9113 §8.7), so its tickets count for nothing, and it refused load.
                self.settle_sent(payment, out, ByocOutcome::Refused);
                return self.busy(lease, &format!("stream refused: {why}"));
            }
            Ok(Err(HttpError::BadUrl(why))) => {
                // Never sent: its tickets went nowhere.
                self.settle_sent(payment, out, ByocOutcome::Refused);
                return self.failed(lease, format!("bad service address {url}: {why}"));
            }
            Ok(Err(e)) => {
                // Never dialled for want of the gateway's descriptors, or a dial that failed:
                // the tickets went nowhere. Otherwise they may have reached the orchestrator,
                // which may have taken them and run the job, or not (go-livepeer's leaves a
                // payment it cannot take unanswered): the outcome is unknown.
                let outcome = match e {
                    HttpError::Local(_) | HttpError::Unreachable(_) => ByocOutcome::Refused,
                    _ => ByocOutcome::Unknown(timeout),
                };
                self.settle_sent(payment, out, outcome);
                return self.not_sent(lease, sending.upload, e);
            }
            Err(_) => {
                self.settle_sent(payment, out, ByocOutcome::Unknown(timeout));
                return self.failed(lease, format!("no answer within {:?}", deadline - sent));
            }
        };
        let service = token.token.service_addr.clone();
        self.answered(lease, (payment, out), resp, (sent, deadline), service).await
    }

    /// Settles `payment` as `outcome`, its tickets counted as sent unless it was refused (then
    /// they went nowhere).
    fn settle_sent(&mut self, payment: ByocPayment, out: OutTickets, outcome: ByocOutcome) {
        if outcome == ByocOutcome::Refused {
            out.went_nowhere();
        } else {
            self.record_sent(out.count());
        }
        self.state.payments.byoc_settle(payment, outcome);
    }

    /// Adds tickets counted as sent (see [`OutTickets::count`]) to the job's record.
    fn record_sent(&mut self, (tickets, ev): (u32, livepeer_pm::Ratio)) {
        self.tickets += tickets;
        self.ev_sent = self.ev_sent.checked_add(&ev).unwrap_or(self.ev_sent);
    }

    /// Sends the job with `body`; a refused stream (nothing of it processed) is sent again,
    /// the very same request with the same payment, while the upload can still be sent whole
    /// ([`REFUSED_RESENDS`] times at most, as for AI jobs; a body whose rest has gone to the
    /// refused stream is not sent again).
    async fn send(
        &self,
        request: Outgoing<'_, '_>,
        mut body: super::upload::AttemptBody,
    ) -> Result<http::Response<OrchBody>, HttpError> {
        let mut resends = REFUSED_RESENDS;
        loop {
            let sent = self.state.http.send_stream(request.build(body)?).await;
            match sent {
                Err(HttpError::Refused(why)) if resends > 0 => {
                    let Some(again) = request.sending.upload.body() else {
                        return Err(HttpError::Refused(why));
                    };
                    tracing::debug!(url = request.url, "stream refused; sending it again");
                    resend_pause(REFUSED_RESENDS - resends).await;
                    resends -= 1;
                    body = again;
                }
                other => return other,
            }
        }
    }

    /// The request did not get an answer's head: the client's body, the gateway's own
    /// shortage or the orchestrator ended it, and only the last is penalised.
    fn not_sent(&mut self, lease: Lease, upload: &Upload, e: HttpError) -> Step {
        if upload.too_large() {
            drop(lease);
            let e = upload.too_large_error();
            return Step::Done(self.finish(Err(e), None, "client_error"));
        }
        if upload.broken() {
            drop(lease);
            let e = Error::new(Kind::BodyUnreadable, "the request body broke off").field("body");
            return Step::Done(self.finish(Err(e), None, "client_error"));
        }
        if let HttpError::Local(_) = e {
            return self.overloaded(lease, e.to_string());
        }
        self.failed(lease, e.to_string())
    }

    /// The gateway could not dial for want of its own descriptors: nobody is blamed, and the
    /// job ends, since another orchestrator's dial would meet the same shortage.
    fn overloaded(&mut self, lease: Lease, why: String) -> Step {
        drop(lease);
        let e = Error::new(Kind::GatewayOverloaded, why);
        Step::Done(self.finish(Err(e), None, "gateway_exhausted"))
    }

    /// The payment of an attempt, waiting (until `deadline`) while the credit it would rely on
    /// is not confirmed yet; past it the job goes as it is.
    async fn pay(
        &self,
        orch: &str,
        token: &Stored,
        deadline: Instant,
    ) -> Result<ByocPayment, PayError> {
        let (cap, timeout) = (&self.req.capability, self.req.timeout_seconds);
        loop {
            let pay = (&*token.token, token.fetched);
            match self.state.payments.byoc_prepare(orch, cap, pay, timeout).await? {
                ByocPrepared::Ready(payment) => return Ok(*payment),
                ByocPrepared::Wait(mut confirmed) => {
                    let waited = tokio::time::timeout_at(deadline, confirmed.changed()).await;
                    if !matches!(waited, Ok(Ok(()))) {
                        return Ok(ByocPayment::none(orch, cap));
                    }
                }
            }
        }
    }

    /// The job token of `orch`: the stored one, else a fresh one; a stored one reporting no
    /// capacity is fetched again once (it may be old news).
    async fn token(&self, orch: &str) -> Result<Stored, TokenProblem> {
        let tokens = &self.state.tokens;
        let stored = match tokens.get(orch, &self.req.capability) {
            Some(t) if t.token.available_capacity > 0 => return Ok(t),
            _ => tokens.fetch(orch, &self.req.capability).await,
        };
        match stored {
            Ok(t) if t.token.available_capacity > 0 => Ok(t),
            Ok(_) => Err(TokenProblem::Busy),
            Err(e @ TokenError::Http(HttpError::Local(_))) => {
                Err(TokenProblem::Local(format!("job token: {e}")))
            }
            Err(e) => Err(TokenProblem::Failed(format!("job token: {e}"))),
        }
    }

    /// The signed `Livepeer` header for each attempt (a repeated request ‖ parameters reuses
    /// its signature: see [`super::request::SigCache`]).
    async fn sign(&self) -> Result<String, Error> {
        let req = self.req;
        let internal = |e: String| Error::new(Kind::Internal, format!("signing the job: {e}"));
        match &self.state.signer {
            JobSigner::Key(key) => {
                req.signed_header_cached(key, &self.state.sigs).map_err(internal)
            }
            JobSigner::Remote(_) => {
                let fields = crate::payment::ByocJobFields {
                    id: &req.id,
                    capability: &req.capability,
                    request: &req.request,
                    parameters: &req.parameters,
                    timeout_seconds: req.timeout_seconds,
                };
                let (sender, sig) = self
                    .state
                    .payments
                    .byoc_sign_remote(&fields)
                    .await
                    .map_err(|e| Error::new(Kind::PaymentRefused, e.to_string()))?;
                req.encode(&sender, &sig).map_err(internal)
            }
        }
    }

    /// The orchestrator answered: relay a success or the client's 4xx; fail over on a 5xx.
    async fn answered(
        &mut self,
        lease: Lease,
        (payment, out): (ByocPayment, OutTickets),
        resp: http::Response<OrchBody>,
        (sent, deadline): (Instant, Instant),
        service: String,
    ) -> Step {
        let status = resp.status().as_u16();
        let payments = self.state.payments.clone();
        if status >= 500 {
            // Bounded in time too: an orchestrator that sends the head of a 5xx and never its
            // body must not hold the job (and the client) past the attempt's deadline.
            let read =
                tokio::time::timeout_at(deadline, read_body(resp.into_body(), ERROR_BODY_BYTES));
            let body = read.await.ok().and_then(Result::ok).unwrap_or_default();
            let text = String::from_utf8_lossy(&body).trim().to_owned();
            if status == 503 && text.starts_with("No capacity") {
                self.settle_sent(payment, out, ByocOutcome::Refused);
                return self.busy(lease, &text);
            }
            // go-livepeer's orchestrator charges the worker's time when the worker fails (its
            // 500) or answers a status of its own; the gateway books at least as much.
            let charged = ByocOutcome::Charged(ceil_seconds(sent.elapsed()));
            self.settle_sent(payment, out, charged);
            return self.failed(lease, format!("{status} {}", cut(&text)));
        }
        let small = hyper::body::Body::size_hint(resp.body())
            .exact()
            .is_some_and(|n| n <= ERROR_BODY_BYTES as u64);
        if status == 400 && small {
            let paid = (payment, out);
            return self.bad_request(lease, paid, resp, (sent, deadline), service).await;
        }
        self.record_sent(out.count());
        self.state.tokens.accepted(&orch_key(lease.url()), &self.req.capability);
        let headers = pass_headers(resp.headers());
        let events =
            headers.iter().any(|(k, v)| *k == "content-type" && v.contains("text/event-stream"));
        let client_error = status >= 400;
        // A plain answer comes when the worker is done: its seconds are known now.
        let charged = (!events).then(|| ceil_seconds(sent.elapsed()));
        // Events get `timeout_seconds + 10 s` from their head, as go-livepeer's gateway gives
        // them (byoc/job_gateway.go `submitJob`): the orchestrator's own limit runs from when
        // its worker answered, which may be long after the job was sent.
        let timeout = Duration::from_secs(self.req.timeout_seconds);
        let deadline = if events { Instant::now() + timeout + EVENTS_GRACE } else { deadline };
        let relay = |body, settle| match events {
            true => Relay::events(body, deadline, settle),
            false => Relay::new(body, deadline, settle),
        };
        let outcome = if client_error {
            lease.client_error();
            // The worker's own status: go-livepeer's orchestrator charges its time.
            let seconds = charged.unwrap_or_else(|| ceil_seconds(sent.elapsed()));
            payments.byoc_settle(payment, ByocOutcome::Charged(seconds));
            // The lease is given back; the relay only bounds the body in time.
            (status, relay(resp.into_body(), None).boxed(), "client_error")
        } else {
            let (metrics, key) = (self.state.metrics.clone(), self.key.clone());
            let (orch, request_id) = (lease.url().to_string(), self.req.id.clone());
            let tab = self.tab.clone();
            let settle = Settle {
                lease,
                payment,
                payments,
                sent,
                charged,
                metrics,
                key,
                orch,
                request_id,
                tab,
            };
            let relay = relay(resp.into_body(), Some(settle));
            (status, relay.boxed(), if events { "stream" } else { "ok" })
        };
        let (status, body, label) = outcome;
        self.tried.push(Tried { orchestrator: service.clone(), error: None });
        let answer = Answer { status, headers, body };
        Step::Done(self.finish(Ok(answer), Some(service), label))
    }

    /// A short 400: the orchestrator's refusal of the gateway's payment or signature (its
    /// texts, PROTOCOL.md §10.4), or the worker's refusal of the client's request. The
    /// first is the gateway's problem, not the client's: the token (and with it the balance
    /// view) is fetched afresh next time, and the job moves on, the orchestrator unpenalised
    /// unless its last paid job there was refused too (see [`super::tokens::Tokens::refused`]).
    /// The second goes to the client as it came.
    async fn bad_request(
        &mut self,
        lease: Lease,
        (payment, out): (ByocPayment, OutTickets),
        resp: http::Response<OrchBody>,
        (sent, deadline): (Instant, Instant),
        service: String,
    ) -> Step {
        let headers = pass_headers(resp.headers());
        let read = tokio::time::timeout_at(deadline, read_body(resp.into_body(), ERROR_BODY_BYTES));
        let body = read.await.ok().and_then(Result::ok).unwrap_or_default();
        let text = String::from_utf8_lossy(&body).trim().to_owned();
        // Refused (before the orchestrator took the tickets) or charged.
        self.settle_sent(payment, out, refusal_outcome(&text, sent.elapsed()));
        if PAYMENT_REFUSALS.iter().any(|p| text.starts_with(p)) {
            let orch = orch_key(lease.url());
            let why = format!("400 {}", cut(&text));
            let fetched = self.token_fetched.unwrap_or_else(Instant::now);
            if self.state.tokens.refused(&orch, &self.req.capability, fetched) {
                // Its token was asked for after the last refusal: fresh, refused all the same.
                return self.failed(lease, format!("{why} (with a fresh job token)"));
            }
            self.unpaid += 1;
            return self.skipped(lease, &orch, "payment", why);
        }
        lease.client_error();
        let once = futures_util::stream::once(async move { Ok(body) }).boxed();
        self.tried.push(Tried { orchestrator: service.clone(), error: None });
        let answer = Answer { status: 400, headers, body: once };
        Step::Done(self.finish(Ok(answer), Some(service), "client_error"))
    }

    /// A failure of the orchestrator at this capability: penalised for it alone.
    fn failed(&mut self, lease: Lease, error: String) -> Step {
        self.failed += 1;
        self.state.metrics.byoc_error(&self.key, "failed");
        self.tried.push(Tried { orchestrator: orch_key(lease.url()), error: Some(error.clone()) });
        lease.failed_job(error);
        Step::Next
    }

    /// The orchestrator has no capacity for this capability: skipped, not penalised.
    fn busy(&mut self, lease: Lease, why: &str) -> Step {
        self.busy += 1;
        let orch = orch_key(lease.url());
        self.skipped(lease, &orch, "busy", format!("busy: {}", cut(why)))
    }

    /// `lease`'s orchestrator is not used for this job, through no fault of its own (its
    /// price, or the gateway's payment): counted under `code`, not penalised.
    fn skipped(&mut self, lease: Lease, orch: &str, code: &str, why: String) -> Step {
        self.state.metrics.byoc_error(&self.key, code);
        self.tried.push(Tried { orchestrator: orch.to_owned(), error: Some(why) });
        drop(lease);
        Step::Next
    }

    /// The gateway would not pay the orchestrator: skipped, not penalised. A token whose
    /// params are used up or expired is forgotten, so that the next job fetches a fresh one.
    fn unpaid(&mut self, lease: Lease, orch: &str, e: &PayError) -> Step {
        self.unpaid += 1;
        if matches!(e, PayError::Refused(m) if m.contains("a fresh token is needed")) {
            self.state.tokens.forget(orch, &self.req.capability);
        }
        self.skipped(lease, orch, "payment", e.to_string())
    }

    /// No orchestrator could be selected at all.
    fn refused(self, e: crate::orchestrator::SelectError) -> Reply {
        let error = Error::select(&e).field("capability");
        self.finish(Err(error), None, "no_orchestrator")
    }

    /// No attempt is left: a JSON 503 naming every attempt.
    fn give_up(self, why: Option<&str>) -> Reply {
        let tries: Vec<String> = self
            .tried
            .iter()
            .map(|t| format!("{}: {}", t.orchestrator, t.error.as_deref().unwrap_or("ok")))
            .collect();
        let mut message = format!(
            "BYOC job {:?} failed on {} orchestrator(s): {}",
            self.req.capability,
            self.tried.len(),
            tries.join("; ")
        );
        if let Some(why) = why {
            message = format!("{message}; {why}");
        }
        // Busy or unpaid alone say so; any failure makes it the orchestrators'.
        let kind = match (self.failed, self.busy, self.unpaid) {
            (0, 0, n) if n > 0 => Kind::PaymentRefused,
            (0, _, _) => Kind::OrchestratorsBusy,
            _ => Kind::OrchestratorsUnavailable,
        };
        self.finish(Err(Error::new(kind, message)), None, "failed")
    }

    /// The reply, after the record: metrics and the request's log line.
    fn finish(&self, outcome: Result<Answer, Error>, orch: Option<String>, label: &str) -> Reply {
        let took = self.started.elapsed();
        self.state.metrics.byoc_request(&self.key, label, took);
        let attempts = serde_json::to_string(&self.tried).unwrap_or_default();
        tracing::info!(
            request_id = %self.req.id,
            // The client's text, as a `&str`: the text format escapes its control characters
            // (a newline would forge a log line), and JSON gets it as a plain string.
            capability = self.req.capability.as_str(),
            orchestrator = orch.as_deref().unwrap_or(""),
            outcome = label,
            status = outcome.as_ref().map(|a| a.status).unwrap_or(0),
            error = outcome.as_ref().err().map(|e| e.message().to_owned()).unwrap_or_default(),
            tickets = self.tickets,
            ev_wei = %self.ev_sent,
            timeout_seconds = self.req.timeout_seconds,
            latency_ms = took.as_millis() as u64,
            attempts = %attempts,
            "byoc request"
        );
        self.remember(&outcome, label, took);
        Reply { orchestrator: orch, outcome }
    }

    /// Keeps the request in the recent history (the dashboard, the catalogue's latency).
    fn remember(&self, outcome: &Result<Answer, Error>, label: &str, took: std::time::Duration) {
        let recent = self.state.metrics.recent();
        let (at_ms, latency_ms) = (crate::recent::Recent::now_ms(), took.as_millis() as u64);
        if label == "ok" && outcome.is_ok() {
            return recent.succeeded(&self.key.to_string(), latency_ms, at_ms);
        }
        let attempts = self.tried.iter().take(crate::recent::MAX_ATTEMPTS).map(|t| {
            let (orchestrator, error) = (t.orchestrator.clone(), t.error.clone());
            crate::recent::Attempt { orchestrator, latency_ms: 0, error }
        });
        recent.failed(crate::recent::Failure {
            id: self.req.id.clone(),
            at_ms,
            kind: "byoc",
            pipeline: "byoc".to_owned(),
            model: self.req.capability.clone(),
            outcome: label.to_owned(),
            latency_ms,
            attempts: attempts.collect(),
            error: outcome.as_ref().err().map(|e| e.message().to_owned()),
        });
    }
}

/// Why no token could be had.
enum TokenProblem {
    Busy,
    Failed(String),
    /// The gateway had no descriptor to dial with.
    Local(String),
}

/// The orchestrator's headers that go to the client: its content type, the worker's
/// metadata and its balance for us (`Livepeer-Payment-Balance` on events, PROTOCOL.md §10.4).
fn pass_headers(h: &http::HeaderMap) -> Vec<(&'static str, String)> {
    let get = |name: &str| h.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let mut out = Vec::new();
    if let Some(v) = get("content-type") {
        out.push(("content-type", v));
    }
    if let Some(v) = get("x-metadata") {
        out.push(("x-metadata", v));
    }
    if let Some(v) = get("livepeer-balance").or_else(|| get("livepeer-payment-balance")) {
        out.push(("livepeer-balance", v));
    }
    out
}

/// What a short 400 with `text`, answered `took` after the job was sent, did to the payment
/// (byoc/job_orchestrator.go `setupOrchJob`, `processJob`): creds it could not verify are
/// refused before the payment is processed (its tickets count for nothing); `Insufficient
/// balance` comes after (their credit stays, nothing is charged); any other 400 may be the
/// worker's, whose time the orchestrator charges.
pub(super) fn refusal_outcome(text: &str, took: Duration) -> ByocOutcome {
    if text.starts_with(PAYMENT_REFUSALS[1]) {
        ByocOutcome::Refused
    } else if text.starts_with(PAYMENT_REFUSALS[0]) {
        ByocOutcome::Uncharged
    } else {
        ByocOutcome::Charged(ceil_seconds(took))
    }
}
