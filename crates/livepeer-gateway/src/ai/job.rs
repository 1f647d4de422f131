//! The job lifecycle of one batch AI request: select, pay, call, and fail over to another
//! orchestrator while nothing has reached the client, within an attempt limit and an overall
//! deadline. Each request leaves a record (log line and metrics) of every attempt.
//!
//! What a failed call leads to is the verdict of `orchestrator::verdict` on its [`Failure`]:
//! whether to try another orchestrator, whether to eject this one, whether to renew its payment
//! session (and try it once more), and what the client sees. This module only acts on it. A
//! streamed answer is never retried once its first byte has been sent.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::call::{Answer, CallError, ResultSink, ResultUrls};
use super::request_log::{self, Line};
use super::spent::{InFlight, Records};
use super::validate::{Pipeline, ValidRequest};
use super::{AiState, relay, score};
use crate::error::{Error, Kind};
use crate::keys::Tab;
use crate::metrics::Answered;
use crate::orchestrator::info::OrchInfo;
use crate::orchestrator::price::Price;
use crate::orchestrator::verdict::{ClientOutcome, Failure};
use crate::orchestrator::{JobKey, Lease, SelectError};
use crate::payment::{Booking, PayError, Prepared, Settlement};

/// The chunks of a server-sent event stream (relayed by `relay`).
pub use super::relay::EventStream;

/// What a batch AI request produced, for the HTTP edge to answer.
#[derive(Debug)]
pub struct Reply {
    /// The request id (`X-Request-Id`).
    pub request_id: String,
    /// The orchestrator that answered, or whose refusal is reported (`X-Orchestrator-Url`).
    pub orchestrator: Option<String>,
    /// The answer, or why there is none.
    pub outcome: Result<Output, Error>,
    /// Whether any orchestrator was tried: `false` when the request ended before its first
    /// attempt (no orchestrator could be selected, or the customer's budget refused it).
    pub tried: bool,
}

/// A successful answer's body.
pub enum Output {
    /// A complete JSON answer.
    Json(Bytes),
    /// Server-sent events, passed on as they arrive; a broken upstream ends with an error event.
    Events(EventStream),
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Output::Json(body) => f.debug_tuple("Json").field(&body.len()).finish(),
            Output::Events(_) => f.write_str("Events"),
        }
    }
}

impl Reply {
    fn new(record: &Record, orchestrator: &str, outcome: Result<Output, Error>) -> Self {
        let orchestrator = (!orchestrator.is_empty()).then(|| orchestrator.to_owned());
        let tried = !record.attempts.is_empty();
        Self { request_id: record.id.clone(), orchestrator, outcome, tried }
    }
}

/// One attempt, for the record.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AttemptRecord {
    /// Orchestrator URL.
    pub orchestrator: String,
    /// Milliseconds it took.
    pub latency_ms: u64,
    /// Its error, if it failed.
    pub error: Option<String>,
    /// What the client may be told of that error (the record keeps the details).
    #[serde(skip)]
    pub shown: Option<String>,
}

/// How a request ended, for the record and the response headers.
#[derive(Debug)]
pub struct Record {
    /// Request id (also the `X-Request-Id` header).
    pub id: String,
    /// The job.
    pub key: JobKey,
    /// Pricing units.
    pub units: u64,
    /// Every attempt in order.
    pub attempts: Vec<AttemptRecord>,
    /// When the request started.
    pub started: Instant,
    /// What each paid attempt sent.
    pub spend: Vec<Spend>,
}

/// The payment of one attempt, for the record.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Spend {
    /// Tickets sent.
    pub tickets: u32,
    /// Their expected value, wei (exact, `num/den` when not whole).
    pub ev_wei: String,
    /// The fee of the request at the orchestrator's price, wei (exact).
    pub fee_wei: String,
}

/// Runs the request to completion: the answer, or why there is none.
pub async fn run(
    ai: &AiState,
    req: ValidRequest,
    id: String,
    urls: ResultUrls,
    tab: Option<Arc<Tab>>,
) -> Reply {
    let mut job = Job::new(ai, &req, &urls, id);
    job.tab = tab;
    while job.may_try() {
        let lease = match job.select() {
            Ok(lease) => lease,
            Err(e) if job.record.attempts.is_empty() => {
                return finish_select_error(ai, &job.record, &e);
            }
            // Nobody is left after earlier attempts.
            Err(_) => break,
        };
        let Some(info) = lease.info().cloned() else { continue };
        if let Err(e) = job.reserve(&lease).await {
            drop(lease);
            finish(ai, &job.record, "", None, &req, "refused", None);
            return Reply::new(&job.record, "", Err(e));
        }
        let started = Instant::now();
        let step = match job.call(&lease, &info, started).await {
            Ok(called) => job.conclude(lease, &info, called, started),
            Err(e) => job.unpaid(lease, &e, started),
        };
        match step {
            Step::Done(reply) => return reply,
            Step::GiveUp => break,
            Step::Next => {}
        }
    }
    job.give_up()
}

/// One request across its attempts.
struct Job<'a> {
    ai: &'a AiState,
    req: &'a ValidRequest,
    urls: &'a ResultUrls,
    record: Record,
    /// When the whole request must be over.
    deadline: Instant,
    /// Orchestrators tried, not selected again.
    tried: Vec<String>,
    /// Orchestrators already retried once after a payment refusal.
    renewed: Vec<String>,
    /// The last orchestrator failure, whose verdict the client sees when no attempt is left.
    last: Option<Failure>,
    /// Whether some orchestrator was skipped because the gateway would not or could not pay it.
    pay_refused: bool,
    /// The customer key's tab: priced and reserved before each payment, told what was paid.
    tab: Option<Arc<Tab>>,
}

/// A call made with its payment.
struct Called {
    prepared: Box<Prepared>,
    result: Result<Answer, CallError>,
}

/// What an attempt leaves the loop to do.
enum Step {
    /// The request is over: answer the client with this.
    Done(Reply),
    /// Try another orchestrator, or the same one once more after a payment renewal.
    Next,
    /// Stop trying: the client sees the last failure's error.
    GiveUp,
}

impl<'a> Job<'a> {
    fn new(ai: &'a AiState, req: &'a ValidRequest, urls: &'a ResultUrls, id: String) -> Self {
        let key = JobKey { capability: req.pipeline.capability(), model: req.model.clone() };
        let started = Instant::now();
        let record =
            Record { id, key, units: req.units, attempts: Vec::new(), started, spend: Vec::new() };
        Self {
            ai,
            req,
            urls,
            record,
            deadline: started + ai.config.request_timeout,
            tried: Vec::new(),
            renewed: Vec::new(),
            last: None,
            pay_refused: false,
            tab: None,
        }
    }

    /// Prices the job for the customer at `lease`'s orchestrator and reserves it against the
    /// key's budget, before that orchestrator is paid: `Err` (402, or 503 when the key
    /// database fails) ends the request.
    async fn reserve(&self, lease: &Lease) -> Result<(), Error> {
        let Some(tab) = &self.tab else { return Ok(()) };
        // An LLM request is reserved on the most tokens it can use, prompt included, and
        // settled on what its answer reports (`usage`), prompt and completion together. A
        // multiple of the orchestrator's price is taken of its price per token for those
        // same tokens: priced on `max_tokens` alone, the settlement's scaling to the tokens
        // used took off the prompt's share.
        let bound = match self.req.pipeline {
            Pipeline::Llm => super::usage::bound_units(self.req),
            _ => self.req.units,
        };
        let fee = lease.price().to_ratio().ok().and_then(|p| p.checked_mul_u64(bound).ok());
        // Boxed: most requests have no tab, and the future would grow every request's.
        Box::pin(tab.reserve(&self.req.model, bound, fee.as_ref())).await
    }

    /// Whether the attempt limit and the deadline leave room for another attempt.
    fn may_try(&self) -> bool {
        (self.record.attempts.len() as u32) < self.ai.config.max_attempts
            && Instant::now() < self.deadline
    }

    /// The next orchestrator to try, not tried yet.
    fn select(&mut self) -> Result<Lease, SelectError> {
        let exclude: Vec<&str> = self.tried.iter().map(String::as_str).collect();
        let lease = self.ai.pool.select(&self.record.key, &exclude)?;
        self.tried.push(lease.url().as_str().to_owned());
        Ok(lease)
    }

    /// Pays the orchestrator of `lease` (as discovered: `info`) and calls it, within the
    /// attempt's deadline. `Err`: the gateway did not pay it, so it was not called.
    async fn call(
        &self,
        lease: &Lease,
        info: &Arc<OrchInfo>,
        started: Instant,
    ) -> Result<Called, PayError> {
        let (ai, req) = (self.ai, self.req);
        let attempt_deadline = self.deadline.min(started + ai.config.attempt_timeout);
        // Pay (on-chain orchestrators) before the call. Boxed: the future and the prepared
        // payment are large and would otherwise make every request's future (copied as it is
        // set up) several kilobytes bigger, unpaid ones included.
        let booking = Booking::Job;
        let prepare = ai.payments.prepare(lease.url(), info, &self.record.key, req.units, booking);
        let mut prepared = Box::new(Box::pin(prepare).await?);
        let (orch, key, tab, metrics) =
            (lease.url().as_str(), &self.record.key, self.tab.as_ref(), &ai.metrics);
        let out = InFlight::arm(&mut prepared, &ai.payments, Records { orch, key, tab, metrics });
        let p = out.prepared();
        let result = tokio::time::timeout_at(
            attempt_deadline,
            ai.client.call(
                p.info(),
                (Some(p.payment()), p.segment()),
                out.dispatched(),
                req,
                ResultSink {
                    store: &ai.store,
                    urls: self.urls,
                    config: &ai.config,
                    counted: Some((&ai.metrics, &self.record.key)),
                },
            ),
        )
        .await
        .unwrap_or(Err(CallError::Timeout(attempt_deadline - started)));
        out.disarm();
        Ok(Called { prepared, result })
    }

    /// Ends an attempt whose call was made: settles, records it, and acts on the answer or on
    /// the verdict of its failure.
    fn conclude(
        &mut self,
        lease: Lease,
        info: &OrchInfo,
        called: Called,
        started: Instant,
    ) -> Step {
        let Called { prepared, result } = called;
        // Whether this attempt already carried a renewed payment: see `failed`.
        let renewed = self.renewed.iter().any(|u| u.as_str() == lease.url().as_str());
        self.settle(&lease, prepared, result.as_ref().err());
        let latency_ms = started.elapsed().as_millis() as u64;
        let error = result.as_ref().err().map(ToString::to_string);
        let shown = result.as_ref().err().map(CallError::shown);
        let orchestrator = lease.url().as_str().to_owned();
        self.record.attempts.push(AttemptRecord { orchestrator, latency_ms, error, shown });
        match result {
            Ok(answer) => Step::Done(self.answered(lease, &info.transcoder, answer, started)),
            Err(e) => self.failed(lease, &info.transcoder, &e, renewed),
        }
    }

    /// The gateway did not pay the orchestrator: its terms, or the gateway's funds, rule it
    /// out, which penalises nobody; or its job-priced params could not be fetched, judged as
    /// [`Failure::of_job_params`] says.
    fn unpaid(&mut self, lease: Lease, e: &PayError, started: Instant) -> Step {
        let orchestrator = lease.url().as_str().to_owned();
        self.ai.metrics.ai_error(&self.record.key, &orchestrator, "payment");
        let latency_ms = started.elapsed().as_millis() as u64;
        let error = Some(e.to_string());
        let shown = error.clone();
        self.record.attempts.push(AttemptRecord { orchestrator, latency_ms, error, shown });
        match e {
            // The gateway's own shortage: nobody is blamed, and the next dial would meet it.
            PayError::Discovery(crate::orchestrator::ClientError::Local(_)) => {
                self.last = Some(Failure::GatewayExhausted);
                Failure::GatewayExhausted.verdict().end_lease(lease, e);
                return Step::GiveUp;
            }
            PayError::Discovery(c) => Failure::of_job_params(c).verdict().end_lease(lease, e),
            _ => {
                drop(lease);
                self.pay_refused = true;
            }
        }
        Step::Next
    }

    /// Settles the call's payment (as paid whenever the orchestrator delivered, even when the
    /// gateway could not use or keep the result), renews the payment session when the verdict
    /// says so, and records what the payment spent.
    fn settle(&mut self, lease: &Lease, prepared: Box<Prepared>, error: Option<&CallError>) {
        let (ai, url) = (self.ai, lease.url());
        let settlement = error.map_or(Settlement::Paid, CallError::settlement);
        // Tickets that surely went untaken (see `CallError::tickets_untaken`) count as never
        // sent: neither the metrics nor the customer's tab nor the request's record counts
        // them.
        let spend = prepared.spend().filter(|_| !error.is_some_and(CallError::tickets_untaken));
        let renewable = prepared.renewable();
        ai.payments.settle(*prepared, settlement);
        if error.is_some_and(|e| e.failure().verdict().renew_payment) {
            ai.payments.reset(url, &self.record.key);
            // One more try on the same orchestrator with fresh params (go-livepeer retries
            // expired params on the same session up to 3 times).
            let url = url.to_string();
            if renewable && !self.renewed.contains(&url) {
                self.tried.retain(|t| *t != url);
                self.renewed.push(url);
            }
        }
        if let Some(spend) = spend {
            let (tickets, ev, fee) = (spend.tickets, &spend.ev_sent, &spend.fee);
            ai.metrics.paid(url.as_str(), &self.record.key, tickets, ev, fee);
            if let Some(tab) = &self.tab {
                tab.paid(tickets, ev, fee);
            }
            let (ev_wei, fee_wei) = (ev.to_string(), fee.to_string());
            self.record.spend.push(Spend { tickets, ev_wei, fee_wei });
        }
    }

    /// The orchestrator answered the attempt begun at `started`: the reply, with the lease
    /// kept by a streamed answer until its end.
    fn answered(&self, lease: Lease, transcoder: &str, answer: Answer, started: Instant) -> Reply {
        let (ai, record, req) = (self.ai, &self.record, self.req);
        let price = Some(lease.price());
        if let Some(tab) = &self.tab {
            tab.served(lease.url().as_str());
        }
        let llm_tab = self.tab.as_ref().filter(|_| req.pipeline == Pipeline::Llm);
        let (body, tokens) = match answer {
            Answer::Body(body) => (body, None),
            Answer::Text { body, tokens } => (body, tokens),
            Answer::Stream(upstream) => {
                finish(ai, record, transcoder, price, req, "stream", None);
                let limits = relay::Limits {
                    idle: ai.config.attempt_timeout,
                    client: ai.config.stream_client_timeout,
                    drained: ai.drained.clone(),
                    max_duration: ai.config.stream_max_duration,
                };
                let events = relay::relay_events(upstream, lease, limits);
                // The tokens come in the last event: the score is known at the stream's end.
                let (metrics, key) = (ai.metrics.clone(), record.key.clone());
                let orch = transcoder.to_owned();
                let scored = move |tokens: u64| {
                    if let Some(score) = score::per_token(started.elapsed(), tokens) {
                        metrics.ai_scored(&key, &orch, score);
                    }
                };
                let events = super::usage::watch(events, llm_tab.cloned(), Box::new(scored));
                return Reply::new(record, transcoder, Ok(Output::Events(events)));
            }
        };
        if let Some(tab) = llm_tab
            && let Some(used) = tokens
        {
            tab.settle_units(used);
        }
        lease.succeeded();
        let score = score::latency_score(req, started.elapsed(), tokens);
        finish(ai, record, transcoder, price, req, "ok", score);
        Reply::new(record, transcoder, Ok(Output::Json(body)))
    }

    /// The call failed: end the lease as the verdict says, then either stop the request (the
    /// user's input is at fault) or leave the loop to try another orchestrator.
    fn failed(&mut self, lease: Lease, transcoder: &str, e: &CallError, renewed: bool) -> Step {
        let orchestrator = lease.url().as_str().to_owned();
        self.ai.metrics.ai_error(&self.record.key, &orchestrator, e.code());
        let failure = match e.failure() {
            // Fresh terms were sent and refused as stale all the same: not terms that moved
            // on but an orchestrator that lost its books or keeps what it is sent. Left
            // unpenalised, it was selected again by every request and paid twice each time
            // (20 payments over 10 requests, all refused). Penalised for the job, as
            // go-livepeer's gateway suspends a session on any such refusal.
            Failure::PaymentStale if renewed => Failure::PaymentInvalid,
            failure => failure,
        };
        let verdict = failure.verdict();
        let price = Some(lease.price());
        verdict.end_lease(lease, e);
        if verdict.fail_over {
            self.last = Some(failure);
            return Step::Next;
        }
        let outcome = if failure == Failure::ClientInput { "client_error" } else { "failed" };
        finish(self.ai, &self.record, transcoder, price, self.req, outcome, None);
        let message = match e {
            CallError::Status { message, .. } => message.clone(),
            other => other.shown(),
        };
        // A result lost to the gateway's own shortage is told as that, not as a full store.
        let kind = match e {
            CallError::ResultLost(_) => Kind::GatewayOverloaded,
            _ => failure_kind(failure),
        };
        let error = Error::new(kind, message);
        Step::Done(Reply::new(&self.record, transcoder, Err(error)))
    }

    /// No attempt is left: the record, and the error of the last failure.
    fn give_up(self) -> Reply {
        let record = &self.record;
        finish(self.ai, record, "", None, self.req, "failed", None);
        let tries: Vec<String> = record
            .attempts
            .iter()
            .map(|a| format!("{}: {}", a.orchestrator, a.shown.as_deref().unwrap_or("ok")))
            .collect();
        let message = format!(
            "{} failed after {} attempt(s) within {:?}: {}",
            record.key,
            record.attempts.len(),
            record.started.elapsed(),
            tries.join("; ")
        );
        let kind = final_kind(self.last, self.pay_refused);
        Reply::new(record, "", Err(Error::new(kind, message)))
    }
}

/// The error kind of what the client sees.
fn kind(outcome: ClientOutcome) -> Kind {
    match outcome {
        ClientOutcome::BadRequest => Kind::InvalidRequest,
        ClientOutcome::BadGateway => Kind::OrchestratorFailed,
        ClientOutcome::GatewayTimeout => Kind::OrchestratorTimeout,
        ClientOutcome::ServiceUnavailable => Kind::OrchestratorsBusy,
    }
}

/// The error kind of what the client sees after `failure`: its verdict's, except that a
/// result the gateway could not keep is told as the gateway's own fault, not the
/// orchestrators' (the verdict's outcomes speak of orchestrators only).
fn failure_kind(failure: Failure) -> Kind {
    match failure {
        Failure::ResultNotKept => Kind::ResultStoreFull,
        Failure::GatewayExhausted => Kind::GatewayOverloaded,
        other => kind(other.verdict().client_sees),
    }
}

/// The error kind when no attempt is left: the last failure's verdict, or a payment refusal
/// when the gateway paid nobody and no orchestrator failed.
fn final_kind(last: Option<Failure>, pay_refused: bool) -> Kind {
    match last {
        Some(failure) => failure_kind(failure),
        None if pay_refused => Kind::PaymentRefused,
        None => Kind::OrchestratorFailed,
    }
}

fn finish_select_error(ai: &AiState, record: &Record, e: &SelectError) -> Reply {
    ai.metrics.ai_error(&record.key, "", "no_orchestrator");
    remember(ai, record, "no_orchestrator", record.started.elapsed(), Some(e.to_string()));
    log_refused(record, e);
    Reply::new(record, "", Err(Error::select(e)))
}

/// The log line of a request no orchestrator was selected for.
fn log_refused(record: &Record, e: &SelectError) {
    // As `&str`s: the job names the model, the client's text, whose control characters the
    // text format then escapes (a newline would forge a line); JSON gets plain strings.
    let (job, error) = (record.key.to_string(), e.to_string());
    tracing::info!(request_id = %record.id, job = job.as_str(), error = error.as_str(), "ai request refused: no orchestrator");
}

/// Logs the per-request record and observes its latency (and, when known, its latency
/// score: [`score::latency_score`]).
fn finish(
    ai: &AiState,
    record: &Record,
    orch: &str,
    price: Option<Price>,
    req: &ValidRequest,
    outcome: &'static str,
    score: Option<f64>,
) {
    let elapsed = record.started.elapsed();
    // go-livepeer counts a model as requested, and its price, once it has answered.
    let answered = matches!(outcome, "ok" | "stream")
        .then(|| Answered { price: price.map(|p| (p.per_unit, p.pixels_per_unit)), score });
    ai.metrics.ai_finished((&record.key, orch), outcome, elapsed, answered);
    remember(ai, record, outcome, elapsed, None);
    log_record(record, orch, price, req.stream, outcome, elapsed);
}

/// The request's log line (`request_log`).
fn log_record(
    record: &Record,
    orch: &str,
    price: Option<Price>,
    stream: bool,
    outcome: &str,
    elapsed: Duration,
) {
    if !request_log::enabled() {
        return;
    }
    // One successful attempt says nothing the line does not already say (orchestrator,
    // latency), and unpaid requests spend nothing: both are left out then, which keeps the
    // line, written for every request, short.
    let single_success = record.attempts.len() == 1 && record.attempts[0].error.is_none();
    let attempts =
        (!single_success).then(|| serde_json::to_string(&record.attempts).unwrap_or_default());
    let spend = (!record.spend.is_empty())
        .then(|| serde_json::to_string(&record.spend).unwrap_or_default());
    Line {
        id: &record.id,
        key: &record.key,
        units: record.units,
        orch,
        price,
        stream,
        outcome,
        latency_ms: elapsed.as_millis() as u64,
        attempts: attempts.as_deref(),
        spend: spend.as_deref(),
    }
    .write();
}

/// Keeps the request in the recent history: its latency when it answered (`ok`, or the first
/// byte of a `stream`), else the whole record of a failure.
fn remember(
    ai: &AiState,
    record: &Record,
    outcome: &str,
    elapsed: Duration,
    error: Option<String>,
) {
    let recent = ai.metrics.recent();
    let at_ms = crate::recent::Recent::now_ms();
    let latency_ms = elapsed.as_millis() as u64;
    if matches!(outcome, "ok" | "stream") {
        return recent.succeeded(&record.key.name(), latency_ms, at_ms);
    }
    let attempts = record.attempts.iter().take(crate::recent::MAX_ATTEMPTS).map(|a| {
        let (orchestrator, error) = (a.orchestrator.clone(), a.error.clone());
        crate::recent::Attempt { orchestrator, latency_ms: a.latency_ms, error }
    });
    recent.failed(crate::recent::Failure {
        id: record.id.clone(),
        at_ms,
        kind: "ai",
        pipeline: record.key.pipeline().to_owned(),
        model: record.key.model.clone(),
        outcome: outcome.to_owned(),
        latency_ms,
        attempts: attempts.collect(),
        error,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` with a log subscriber, JSON or plain text, and returns what it wrote.
    fn captured(json: bool, f: impl FnOnce()) -> String {
        let buf = crate::log_format::Captured::default();
        let out = buf.clone();
        let builder = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || buf.clone())
            .with_max_level(tracing::Level::INFO);
        match json {
            true => tracing::subscriber::with_default(builder.json().finish(), f),
            // The gateway's own text format (`log_format`), as `main` sets it up for files.
            false => {
                let text = builder.fmt_fields(crate::log_format::fields());
                tracing::subscriber::with_default(
                    text.with_timer(crate::log_format::Clock).finish(),
                    f,
                )
            }
        }
        out.text()
    }

    /// Runs `f` with a JSON log subscriber and returns the lines it wrote.
    fn logged(f: impl FnOnce()) -> Vec<serde_json::Value> {
        captured(true, f).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    fn record(attempts: Vec<AttemptRecord>, spend: Vec<Spend>) -> Record {
        Record {
            id: "abc".into(),
            key: JobKey { capability: 33, model: "m".into() },
            units: 16,
            attempts,
            started: Instant::now(),
            spend,
        }
    }

    #[test]
    fn the_record_lists_attempts_only_when_there_was_a_failover_or_an_error() {
        let ok = |o: &str| AttemptRecord {
            orchestrator: o.into(),
            latency_ms: 3,
            error: None,
            shown: None,
        };
        let failed = AttemptRecord {
            orchestrator: "https://a:1/".into(),
            latency_ms: 1500,
            error: Some("no answer within 1.5s".into()),
            shown: Some("no answer within 1.5s".into()),
        };
        let price = Price::new(3, 1000).ok();
        let lines = logged(|| {
            let one = record(vec![ok("https://b:2/")], vec![]);
            log_record(&one, "https://b:2", price, false, "ok", Duration::from_millis(3));
            let two = record(
                vec![failed.clone(), ok("https://b:2/")],
                vec![Spend { tickets: 2, ev_wei: "10".into(), fee_wei: "48/1000".into() }],
            );
            log_record(&two, "https://b:2", price, true, "ok", Duration::from_millis(1503));
            let refused = record(vec![], vec![]);
            log_record(&refused, "", None, false, "refused", Duration::from_millis(1));
        });
        assert_eq!(lines.len(), 3);
        // No price was agreed: the line has no price and no fee, rather than empty ones.
        let refused = &lines[2]["fields"];
        assert!(refused.get("price").is_none() && refused.get("fee_wei").is_none(), "{refused}");
        assert_eq!(refused["outcome"], "refused");
        let (one, two) = (&lines[0]["fields"], &lines[1]["fields"]);
        assert_eq!(one["request_id"], "abc");
        assert_eq!(one["model"], "m");
        assert_eq!(one["orchestrator"], "https://b:2");
        assert_eq!(one["units"], 16);
        assert_eq!(one["price"], "3/1000");
        assert_eq!(one["fee_wei"], "6/125");
        assert!(one.get("attempts").is_none() && one.get("spend").is_none(), "{one}");
        let attempts: serde_json::Value =
            serde_json::from_str(two["attempts"].as_str().unwrap()).unwrap();
        assert_eq!(attempts[0]["error"], "no answer within 1.5s");
        assert_eq!(attempts[1]["orchestrator"], "https://b:2/");
        let spend: serde_json::Value =
            serde_json::from_str(two["spend"].as_str().unwrap()).unwrap();
        assert_eq!(spend[0]["tickets"], 2);
        assert_eq!(two["stream"], true);
    }

    /// The AI path's rules, as they were before the verdict table: what each failure does to
    /// the lease, the payment and the request.
    #[test]
    fn each_failure_ends_the_attempt_as_the_ai_rules_say() {
        use crate::orchestrator::verdict::LeaseEnd::{self, ClientError, Eject, Release};
        use Settlement::{CreditSpent, NotCharged, Paid, Refused};
        #[rustfmt::skip]
        let rows: &[(Failure, LeaseEnd, Settlement, bool, bool, Kind)] = &[
            //                          lease        settled      renew  fail over  client sees
            (Failure::Transport,       Eject,       CreditSpent, false, true,  Kind::OrchestratorFailed),
            (Failure::Timeout,         Eject,       CreditSpent, false, true,  Kind::OrchestratorTimeout),
            (Failure::Busy,            Release,     Refused,     false, true,  Kind::OrchestratorsBusy),
            (Failure::PaymentStale,    Release,     CreditSpent, true,  true,  Kind::OrchestratorsBusy),
            (Failure::PaymentInvalid,  Eject,       CreditSpent, true,  true,  Kind::OrchestratorFailed),
            (Failure::ClientInput,     ClientError, NotCharged,  false, false, Kind::InvalidRequest),
            (Failure::Refused,         Eject,       CreditSpent, false, true,  Kind::OrchestratorFailed),
            (Failure::Server,          Eject,       CreditSpent, false, true,  Kind::OrchestratorFailed),
            (Failure::ClosedMidStream, Eject,       CreditSpent, false, true,  Kind::OrchestratorFailed),
            (Failure::ResultNotKept,   Release,     Paid,        false, false, Kind::ResultStoreFull),
            (Failure::GatewayExhausted, Release,    Refused,     false, false, Kind::GatewayOverloaded),
        ];
        for &(failure, lease, settled, renew, fail_over, sees) in rows {
            let verdict = failure.verdict();
            assert_eq!(verdict.lease_end(), lease, "{failure:?}");
            assert_eq!(Settlement::after(failure), settled, "{failure:?}");
            assert_eq!(verdict.renew_payment, renew, "{failure:?}");
            assert_eq!(verdict.fail_over, fail_over, "{failure:?}");
            assert_eq!(failure_kind(failure), sees, "{failure:?}");
            // When every attempt failed, the last failure decides.
            assert_eq!(final_kind(Some(failure), true), sees, "{failure:?}");
        }
    }

    #[test]
    fn with_no_orchestrator_failure_a_payment_refusal_is_reported() {
        assert_eq!(final_kind(None, true), Kind::PaymentRefused);
        assert_eq!(final_kind(None, false), Kind::OrchestratorFailed);
    }

    #[test]
    fn client_outcomes_map_to_kinds_of_the_same_type() {
        use ClientOutcome::{BadGateway, BadRequest, GatewayTimeout, ServiceUnavailable};
        for outcome in [BadRequest, BadGateway, GatewayTimeout, ServiceUnavailable] {
            assert_eq!(kind(outcome).name(), outcome.error_type(), "{outcome:?}");
        }
    }

    /// Every request's future is set up and moved before it runs: payment and call state
    /// must not make it grow (2304 bytes before `run` was split into steps, 1584 after).
    #[test]
    #[allow(unreachable_code, clippy::diverging_sub_expression)]
    fn the_request_future_stays_small() {
        fn size<F: std::future::Future>(_: impl FnOnce() -> F) -> usize {
            std::mem::size_of::<F>()
        }
        let bytes = size(|| run(panic!(), panic!(), panic!(), panic!(), panic!()));
        println!("request future: {bytes} bytes");
        assert!(bytes <= 2304, "the request future grew to {bytes} bytes");
    }

    /// A model id is the client's text: in the text format, a newline in it is escaped and
    /// the record stays one line.
    #[test]
    fn a_model_with_a_newline_stays_on_one_log_line() {
        let mut forged = record(vec![], vec![]);
        forged.key.model = "m\n2026-01-01T00:00:00Z  INFO forged".into();
        let text = captured(false, || {
            log_record(&forged, "", None, false, "failed", Duration::from_millis(1));
            log_refused(&forged, &SelectError::NotOffered(forged.key.clone()));
        });
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(text.lines().all(|l| !l.starts_with("2026-01-01")), "{text}");
    }
}
