//! The job lifecycle of one batch AI request: select, call, and fail over to another
//! orchestrator while nothing has reached the client, within an attempt limit and an overall
//! deadline. Each request leaves a record (log line and metrics) of every attempt.
//!
//! Failover rules (PROTOCOL.md §7.4, with go-livepeer's user-error quirk fixed): connection
//! errors, timeouts, 5xx and garbage eject the orchestrator and try another; "busy" answers
//! (insufficient capacity, expired ticket params) try another without ejecting; the user's own
//! input errors are returned as they are and penalise nobody. A streamed answer is never
//! retried once its first byte has been sent.

use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt as _};
use serde_json::json;
use tokio::time::Instant;

use super::AiState;
use super::call::{Answer, Blame, CallError};
use super::validate::ValidRequest;
use crate::error::{Error, Kind};
use crate::orchestrator::price::Price;
use crate::orchestrator::{JobKey, Lease, SelectError};
use crate::payment::{Booking, PayError, Settlement};

/// What a batch AI request produced, for the HTTP edge to answer.
#[derive(Debug)]
pub struct Reply {
    /// The request id (`X-Request-Id`).
    pub request_id: String,
    /// The orchestrator that answered, or whose refusal is reported (`X-Orchestrator-Url`).
    pub orchestrator: Option<String>,
    /// The answer, or why there is none.
    pub outcome: Result<Output, Error>,
}

/// A successful answer's body.
pub enum Output {
    /// A complete JSON answer.
    Json(Bytes),
    /// Server-sent events, passed on as they arrive; a broken upstream ends with an error event.
    Events(EventStream),
}

/// The chunks of a server-sent event stream.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

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
        Self { request_id: record.id.clone(), orchestrator, outcome }
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
    urls: super::call::ResultUrls,
) -> Reply {
    let key = JobKey { capability: req.pipeline.capability(), model: req.model.clone() };
    let mut record = Record {
        id,
        key,
        units: req.units,
        attempts: Vec::new(),
        started: Instant::now(),
        spend: Vec::new(),
    };
    ai.metrics.ai_requested(&record.key);
    let deadline = record.started + ai.config.request_timeout;
    let mut tried: Vec<String> = Vec::new();
    // Orchestrators already retried once after a payment refusal.
    let mut renewed: Vec<String> = Vec::new();
    let mut last_error: Option<CallError> = None;
    // Whether some orchestrator was skipped because the gateway would not or could not pay it.
    let mut pay_refused = false;

    while (record.attempts.len() as u32) < ai.config.max_attempts && Instant::now() < deadline {
        let exclude: Vec<&str> = tried.iter().map(String::as_str).collect();
        let lease = match ai.pool.select(&record.key, &exclude) {
            Ok(lease) => lease,
            Err(e) if record.attempts.is_empty() => return finish_select_error(ai, &record, &e),
            Err(_) => break,
        };
        tried.push(lease.url().to_string());
        let Some(info) = lease.info().cloned() else { continue };
        let attempt_started = Instant::now();
        let attempt_deadline = deadline.min(attempt_started + ai.config.attempt_timeout);
        let timeout = attempt_deadline - attempt_started;
        // Pay (on-chain orchestrators) before the call. Boxed: the future and the prepared
        // payment are large and would otherwise make every request's future (copied as it is
        // set up) several kilobytes bigger, unpaid ones included.
        let booked =
            Box::pin(ai.payments.prepare(lease.url(), &info, &record.key, req.units, Booking::Job))
                .await;
        let prepared = match booked {
            Ok(prepared) => Box::new(prepared),
            Err(e) => {
                let orch = lease.url().to_string();
                ai.metrics.ai_error(&record.key, &orch, "payment");
                let latency_ms = attempt_started.elapsed().as_millis() as u64;
                let error = Some(e.to_string());
                record.attempts.push(AttemptRecord { orchestrator: orch, latency_ms, error });
                match e {
                    // Unreachable for job-priced params: the orchestrator's failure.
                    PayError::Discovery(_) => lease.failed(e.to_string()),
                    // Its terms, or our funds, rule out paying it: skip it, eject nobody.
                    _ => {
                        drop(lease);
                        pay_refused = true;
                    }
                }
                continue;
            }
        };
        let result = tokio::time::timeout_at(
            attempt_deadline,
            ai.client.call(
                prepared.info(),
                Some(prepared.payment()),
                prepared.segment(),
                &req,
                &ai.store,
                &urls,
            ),
        )
        .await
        .unwrap_or(Err(CallError::Timeout(timeout)));
        let spend = prepared.spend();
        let renewable = prepared.renewable();
        let outcome = match &result {
            Ok(_) => Settlement::Paid,
            Err(e) if e.blame() == Blame::Client => Settlement::NotCharged,
            Err(e) if e.blame() == Blame::Busy && !e.is_payment_problem() => Settlement::Refused,
            Err(_) => Settlement::CreditSpent,
        };
        ai.payments.settle(*prepared, outcome);
        if let Err(e) = &result
            && e.is_payment_problem()
        {
            ai.payments.reset(lease.url(), &record.key);
            // One more try on the same orchestrator with fresh params (go-livepeer retries
            // expired params on the same session up to 3 times).
            let url = lease.url().to_string();
            if renewable && !renewed.contains(&url) {
                tried.retain(|t| *t != url);
                renewed.push(url);
            }
        }
        if let Some(spend) = &spend {
            ai.metrics.paid(
                lease.url().as_str(),
                &record.key,
                spend.tickets,
                &spend.ev_sent,
                &spend.fee,
            );
            record.spend.push(Spend {
                tickets: spend.tickets,
                ev_wei: spend.ev_sent.to_string(),
                fee_wei: spend.fee.to_string(),
            });
        }
        let orch = lease.url().to_string();
        let price = Some(lease.price());
        let latency_ms = attempt_started.elapsed().as_millis() as u64;
        let error = result.as_ref().err().map(ToString::to_string);
        record.attempts.push(AttemptRecord { orchestrator: orch.clone(), latency_ms, error });
        match result {
            Ok(Answer::Body(body)) => {
                lease.succeeded();
                finish(ai, &record, &info.transcoder, price, &req, "ok");
                return Reply::new(&record, &info.transcoder, Ok(Output::Json(body)));
            }
            Ok(Answer::Stream(upstream)) => {
                finish(ai, &record, &info.transcoder, price, &req, "stream");
                let events = relay_events(upstream, lease, ai.config.attempt_timeout);
                return Reply::new(&record, &info.transcoder, Ok(Output::Events(events)));
            }
            Err(e) => {
                ai.metrics.ai_error(&record.key, &orch, e.code());
                match e.blame() {
                    Blame::Client => {
                        lease.client_error();
                        finish(ai, &record, &info.transcoder, price, &req, "client_error");
                        let message = match &e {
                            CallError::Status { message, .. } => message.clone(),
                            other => other.to_string(),
                        };
                        let error = Error::new(Kind::InvalidRequest, message);
                        return Reply::new(&record, &info.transcoder, Err(error));
                    }
                    Blame::Busy => drop(lease),
                    Blame::Orchestrator => lease.failed(e.to_string()),
                }
                last_error = Some(e);
            }
        }
    }
    finish(ai, &record, "", None, &req, "failed");
    let kind = match &last_error {
        None if pay_refused => Kind::PaymentRefused,
        Some(CallError::Timeout(_)) => Kind::OrchestratorTimeout,
        // Everyone tried was busy: a later retry can succeed.
        Some(e) if e.blame() == Blame::Busy => Kind::OrchestratorsBusy,
        _ => Kind::OrchestratorFailed,
    };
    let tries: Vec<String> = record
        .attempts
        .iter()
        .map(|a| format!("{}: {}", a.orchestrator, a.error.as_deref().unwrap_or("ok")))
        .collect();
    let message = format!(
        "{} failed after {} attempt(s) within {:?}: {}",
        record.key,
        record.attempts.len(),
        record.started.elapsed(),
        tries.join("; ")
    );
    Reply::new(&record, "", Err(Error::new(kind, message)))
}

fn finish_select_error(ai: &AiState, record: &Record, e: &SelectError) -> Reply {
    ai.metrics.ai_error(&record.key, "", "no_orchestrator");
    tracing::info!(request_id = %record.id, job = %record.key, error = %e, "ai request refused: no orchestrator");
    Reply::new(record, "", Err(Error::select(e)))
}

/// Logs the per-request record and observes its latency.
fn finish(
    ai: &AiState,
    record: &Record,
    orch: &str,
    price: Option<Price>,
    req: &ValidRequest,
    outcome: &str,
) {
    let elapsed = record.started.elapsed();
    ai.metrics.ai_latency(&record.key, orch, outcome, elapsed);
    log_record(record, orch, price, req.stream, outcome, elapsed);
}

/// The request's log line.
fn log_record(
    record: &Record,
    orch: &str,
    price: Option<Price>,
    stream: bool,
    outcome: &str,
    elapsed: Duration,
) {
    if !tracing::enabled!(tracing::Level::INFO) {
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
    tracing::info!(
        request_id = %record.id,
        pipeline = record.key.pipeline(),
        model = %record.key.model,
        orchestrator = orch,
        outcome,
        units = record.units,
        price = price.map(|p| p.to_string()).unwrap_or_default(),
        fee_wei = price.map(|p| fee(record.units, p)).unwrap_or_default(),
        latency_ms = elapsed.as_millis() as u64,
        attempts = attempts.as_deref().map(tracing::field::display),
        spend = spend.as_deref().map(tracing::field::display),
        stream,
        "ai request"
    );
}

/// `units × price` as an exact decimal when whole, else `num/den` (never rounded).
fn fee(units: u64, price: Price) -> String {
    let num = u128::from(units) * price.per_unit as u128;
    let den = price.pixels_per_unit as u128;
    let (mut a, mut b) = (num, den);
    while b != 0 {
        (a, b) = (b, a % b);
    }
    let g = a.max(1);
    let (num, den) = (num / g, den / g);
    if den == 1 { num.to_string() } else { format!("{num}/{den}") }
}

/// Passes an orchestrator's server-sent events through chunk by chunk. The lease lives until the
/// stream ends: a clean end counts as success, a broken one as the orchestrator's failure, and
/// the client then gets an error event (no failover: bytes have already gone out).
fn relay_events(
    upstream: http::Response<hyper::body::Incoming>,
    lease: Lease,
    idle: Duration,
) -> EventStream {
    struct State {
        upstream: http_body_util::BodyDataStream<hyper::body::Incoming>,
        lease: Option<Lease>,
    }
    let upstream = http_body_util::BodyDataStream::new(upstream.into_body());
    let state = State { upstream, lease: Some(lease) };
    let body = futures_util::stream::unfold(state, move |mut st| async move {
        let lease = st.lease.take()?;
        match tokio::time::timeout(idle, st.upstream.next()).await {
            Ok(Some(Ok(chunk))) => {
                st.lease = Some(lease);
                Some((Ok::<_, std::io::Error>(chunk), st))
            }
            Ok(None) => {
                lease.succeeded();
                None
            }
            Ok(Some(Err(e))) => {
                lease.failed(format!("stream broke: {e}"));
                Some((Ok(error_event("orchestrator stream ended early")), st))
            }
            Err(_) => {
                lease.failed(format!("stream idle for {idle:?}"));
                Some((Ok(error_event("orchestrator stream stalled")), st))
            }
        }
    });
    Box::pin(body)
}

fn error_event(message: &str) -> Bytes {
    let body = json!({ "error": { "message": message } });
    Bytes::from(format!("event: error\ndata: {body}\n\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` with a JSON log subscriber and returns the lines it wrote.
    fn logged(f: impl FnOnce()) -> Vec<serde_json::Value> {
        #[derive(Clone, Default)]
        struct Buf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let out = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_writer(move || buf.clone())
            .with_max_level(tracing::Level::INFO)
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
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
        let ok = |o: &str| AttemptRecord { orchestrator: o.into(), latency_ms: 3, error: None };
        let failed = AttemptRecord {
            orchestrator: "https://a:1/".into(),
            latency_ms: 1500,
            error: Some("no answer within 1.5s".into()),
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
        });
        assert_eq!(lines.len(), 2);
        let (one, two) = (&lines[0]["fields"], &lines[1]["fields"]);
        assert_eq!(one["request_id"], "abc");
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

    #[test]
    fn fees_are_exact_and_reduced() {
        assert_eq!(fee(256, Price::new(3, 1000).unwrap()), "96/125");
        assert_eq!(fee(589_824, Price::new(6, 1).unwrap()), "3538944");
        assert_eq!(
            fee(u64::MAX, Price::new(i64::MAX, 1).unwrap()),
            (u128::from(u64::MAX) * i64::MAX as u128).to_string()
        );
        assert_eq!(fee(0, Price::new(5, 7).unwrap()), "0");
    }
}
