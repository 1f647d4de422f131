//! Attaching an orchestrator to a live stream: selecting one from the pool, the start call
//! with its prepaid minute (PROTOCOL.md §8.2), trying others when it fails, and tearing a
//! session down on the orchestrator's side when it ends (§8.3 Teardown).
//!
//! A failed start call is judged by `orchestrator::verdict`, as batch AI calls are: the
//! orchestrator is ejected only when penalised, its payment session is renewed when the verdict
//! says so, and an answer that blames the stream's own input ends the start with a client
//! error instead of trying other orchestrators.

use std::sync::Arc;
use std::time::Duration;

use livepeer_proto::headers;
use serde_json::{Value, json};

use super::billing::{self, START_UNITS, pay, settle};
use super::context::Inner;
use super::error::LiveError;
use super::session::Session;
use super::stream::Stream;
use crate::orchestrator::Lease;
use crate::orchestrator::channel::channel_url;
use crate::orchestrator::info::OrchInfo;
use crate::orchestrator::verdict::Failure;
use crate::payment::{PayError, Settlement};

impl Session {
    /// Tears the session down on the orchestrator's side, in the background: the input and
    /// control channels are deleted, which ends the orchestrator's stream (§8.3 Teardown).
    pub(crate) fn finish(self, inner: &Arc<Inner>) -> Self {
        billing::forget_start(inner, &self);
        let http = inner.trickle.clone();
        let urls = [self.publish_url.clone(), self.control_url.clone()];
        inner.spawn("live-teardown", async move {
            for url in urls {
                let _ = http.delete(&url).timeout(Duration::from_secs(2)).send().await;
            }
        });
        self
    }
}

/// Why no orchestrator could be attached.
#[derive(Debug)]
pub(crate) struct AttachError {
    pub(crate) message: String,
    pub(crate) why: NotAttached,
}

/// Whose the failure to attach is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NotAttached {
    /// No orchestrator started the stream.
    NoneStarted,
    /// An orchestrator rejected the stream's own input, which any other would reject too.
    InputRejected,
    /// The gateway had no descriptor to dial with: its own shortage, which the next
    /// orchestrator would meet too.
    GatewayExhausted,
}

impl AttachError {
    fn none_started(message: String) -> Self {
        Self { message, why: NotAttached::NoneStarted }
    }
}

impl From<AttachError> for LiveError {
    fn from(e: AttachError) -> Self {
        match e.why {
            NotAttached::NoneStarted => Self::NoOrchestrator(e.message),
            NotAttached::InputRejected => Self::InputRejected(e.message),
            NotAttached::GatewayExhausted => Self::GatewayOverloaded(e.message),
        }
    }
}

/// Selects an orchestrator and starts the stream on it, trying others (not in `exclude`)
/// when the call fails.
pub(crate) async fn attach(
    inner: &Arc<Inner>,
    stream: &Stream,
    exclude: &[&str],
) -> Result<Session, AttachError> {
    let mut tried: Vec<String> = exclude.iter().map(|s| (*s).to_owned()).collect();
    let mut attempts = 0;
    let mut last_error: Option<String> = None;
    while attempts < inner.config.max_attempts {
        let skip: Vec<&str> = tried.iter().map(String::as_str).collect();
        let lease = match inner.pool.select(&stream.key, &skip) {
            Ok(lease) => lease,
            Err(e) => {
                let message = match &last_error {
                    Some(last) => format!("{e}; last error: {last}"),
                    None => e.to_string(),
                };
                return Err(AttachError::none_started(message));
            }
        };
        let url = lease.url().to_string();
        tried.push(url.clone());
        if let Some(pin) = &stream.spec.pin
            && !url.contains(pin.as_str())
        {
            continue;
        }
        attempts += 1;
        let mut booking = StartBooking { inner, url: lease.url().clone(), stream, armed: true };
        let started = start_call(inner, stream, &lease).await;
        booking.armed = false;
        // The start's credit is the orchestrator's balance of the stream it started, if any.
        let manifest = started.as_ref().ok().map(|s| s.manifest_id.as_str());
        inner.payments.rebook(lease.url(), &stream.spec.request_id, manifest);
        match started {
            Ok(started) => {
                return Ok(Session {
                    orchestrator: url,
                    lease,
                    info: started.info,
                    manifest_id: started.manifest_id,
                    publish_url: started.urls[0].clone(),
                    subscribe_url: started.urls[1].clone(),
                    control_url: started.urls[2].clone(),
                    events_url: started.urls[3].clone(),
                    params_version: started.params_version,
                    key: stream.key.clone(),
                    start_manifest: stream.spec.request_id.clone(),
                });
            }
            Err(failure) => {
                tracing::info!(
                    stream = stream.spec.name,
                    request_id = stream.spec.request_id,
                    orchestrator = url,
                    error = failure.message,
                    "live start failed"
                );
                inner.metrics.ai_error(&stream.key, &url, failure.code);
                last_error = Some(format!("{url}: {}", failure.message));
                // The payment session of a start that failed serves nothing any more (a remote
                // signer's would otherwise stay for the life of the process).
                inner.payments.forget(lease.url(), &stream.key, &stream.spec.request_id);
                act_on(inner, stream, lease, failure)?;
            }
        }
    }
    Err(AttachError::none_started(format!(
        "no orchestrator started the stream after {attempts} attempts; last error: {}",
        last_error.unwrap_or_default()
    )))
}

/// The payment booked for a start call in flight. A start left unfinished (its client went
/// away, and the start's future with it) lets its booking go when dropped, as a failed start
/// does: it is booked on the start's request id, fresh for every start, so nothing would ever
/// come back for it. Once the call has returned, the caller books or forgets it (`armed`
/// false).
struct StartBooking<'a> {
    inner: &'a Inner,
    url: url::Url,
    stream: &'a Stream,
    armed: bool,
}

impl Drop for StartBooking<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (payments, request_id) = (&self.inner.payments, &self.stream.spec.request_id);
        payments.rebook(&self.url, request_id, None);
        payments.forget(&self.url, &self.stream.key, request_id);
    }
}

/// Acts on the verdict of a failed start: ends the lease, renews the payment session, and
/// `Err` when the stream's own input is at fault, so that no other orchestrator is tried.
fn act_on(
    inner: &Inner,
    stream: &Stream,
    lease: Lease,
    failure: StartFailure,
) -> Result<(), AttachError> {
    // The gateway's own shortage: nobody is to blame, and another dial would meet it too.
    if failure.code == "gateway_exhausted" {
        drop(lease);
        return Err(AttachError { message: failure.message, why: NotAttached::GatewayExhausted });
    }
    // The gateway did not pay this orchestrator: nobody is to blame, try another.
    let Some(failed) = failure.failure else { return Ok(()) };
    let verdict = failed.verdict();
    if verdict.renew_payment {
        billing::renew(inner, lease.url(), &stream.key, &stream.spec.request_id);
    }
    verdict.end_lease(lease, &failure.message);
    if verdict.fail_over {
        return Ok(());
    }
    Err(AttachError { message: failure.message, why: NotAttached::InputRejected })
}

struct Started {
    info: Arc<OrchInfo>,
    manifest_id: String,
    urls: [String; 4],
    params_version: u64,
}

struct StartFailure {
    message: String,
    /// The metrics label.
    code: &'static str,
    /// What the orchestrator did, for its verdict; `None` when the gateway did not pay it
    /// (its terms or the gateway's funds ruled it out), which is nobody's failure.
    failure: Option<Failure>,
}

impl StartFailure {
    fn new(message: String, code: &'static str, failure: Failure) -> Self {
        Self { message, code, failure: Some(failure) }
    }
}

/// How a start call that got no answer is booked, and what it was: the gateway's own want of
/// descriptors (nothing sent, nobody to blame), a dial that failed (nothing sent either: the
/// orchestrator's failure, but its tickets' credit returns, or it would be paid again), or a
/// timeout or broken exchange (the payment possibly received).
fn unanswered(e: &reqwest::Error) -> (Settlement, StartFailure) {
    let message = crate::error::error_chain(e);
    if e.is_connect() && crate::error::is_local_exhaustion(e) {
        let failed = StartFailure { message, code: "gateway_exhausted", failure: None };
        return (Settlement::Refused, failed);
    }
    let (code, failure) = match e.is_timeout() {
        true => ("timeout", Failure::Timeout),
        false => ("connection", Failure::Transport),
    };
    let settlement = match e.is_connect() {
        true => Settlement::Refused,
        false => Settlement::after(failure),
    };
    (settlement, StartFailure::new(message, code, failure))
}

/// `POST {transcoder}/live-video-to-video` with the prepaid minute (§8.2).
async fn start_call(
    inner: &Inner,
    stream: &Stream,
    lease: &Lease,
) -> Result<Started, StartFailure> {
    let fail = StartFailure::new;
    let Some(info) = lease.info().cloned() else {
        return Err(fail("no orchestrator info".into(), "discovery", Failure::Transport));
    };
    let orch = lease.url().to_string();
    let paid = pay(inner, lease.url(), &info, &stream.key, START_UNITS, &stream.spec.request_id)
        .await
        .map_err(|e| StartFailure {
            message: e.to_string(),
            code: match e {
                PayError::Discovery(crate::orchestrator::ClientError::Local(_)) => {
                    "gateway_exhausted"
                }
                _ => "payment",
            },
            // Its job-priced params could not be fetched: judged for this job unless its
            // address does not work at all, and nobody's fault when the gateway itself had
            // no descriptor to dial with (as an unpaid orchestrator is nobody's).
            failure: match e {
                PayError::Discovery(crate::orchestrator::ClientError::Local(_)) => None,
                PayError::Discovery(c) => Some(Failure::of_job_params(&c)),
                _ => None,
            },
        })?;
    let (params_version, params) = stream.params();
    let body = json!({
        "model_id": stream.spec.pipeline,
        "params": params,
        "gateway_request_id": stream.spec.request_id,
        "stream_id": stream.spec.id,
    });
    let base = paid.info.transcoder.clone();
    let sent = inner
        .http
        .post(format!("{base}/live-video-to-video"))
        .header(headers::PAYMENT, &paid.payment)
        .header(headers::SEGMENT, &paid.segment)
        .header(reqwest::header::AUTHORIZATION, headers::AI_WORKER_PROTOCOL)
        .json(&body)
        .timeout(inner.config.start_timeout)
        .send()
        .await;
    let resp = match sent {
        Ok(resp) => resp,
        Err(e) => {
            let (settlement, failed) = unanswered(&e);
            settle(inner, stream, &orch, paid.prepared, settlement);
            return Err(failed);
        }
    };
    let status = resp.status();
    if status.as_u16() != 200 {
        let text = crate::outbound::read_prefix(resp, 300).await;
        let (code, failure) = answer_failure(status.as_u16(), &text);
        settle(inner, stream, &orch, paid.prepared, Settlement::after(failure));
        return Err(fail(format!("start answered {status}: {text}"), code, failure));
    }
    // Read no further than the gateway needs: read whole, an endless answer took a gateway
    // to 4.9 GB within the start's deadline.
    let parsed = match crate::outbound::read_capped(resp, MAX_START_ANSWER).await {
        Ok(body) => crate::bounded_json::from_slice(&body, crate::bounded_json::STREAM_VALUES)
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let answer: Value = match parsed {
        Ok(v) => v,
        Err(e) => {
            let failure = Failure::Server;
            settle(inner, stream, &orch, paid.prepared, Settlement::after(failure));
            return Err(fail(format!("start answer is not JSON: {e}"), "garbage", failure));
        }
    };
    settle(inner, stream, &orch, paid.prepared, Settlement::Paid);
    let urls = match channel_urls(&answer, &base) {
        Ok(Some(urls)) => urls,
        Ok(None) => {
            let message = "start answer lacks a channel URL".into();
            return Err(fail(message, "garbage", Failure::Server));
        }
        Err(why) => return Err(fail(format!("start answer: {why}"), "garbage", Failure::Server)),
    };
    let manifest_id = answer
        .get("manifest_id")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
        .unwrap_or(&stream.spec.request_id)
        .to_owned();
    Ok(Started { info: paid.info, manifest_id, urls, params_version })
}

/// The largest start answer read: a few URLs and ids.
const MAX_START_ANSWER: usize = 64 * 1024;

/// The metrics label and the failure of a start call's error answer. The labels are by
/// status, as before the verdict table judged live answers.
fn answer_failure(status: u16, text: &str) -> (&'static str, Failure) {
    let code = match status {
        503 => "busy",
        400..=499 => "refused",
        _ => "server_error",
    };
    (code, Failure::from_answer(status, text))
}

/// The four channel URLs of a start answer: publish, subscribe, control, events; `None` when
/// one is missing, `Err` when one is not the orchestrator's ([`channel_url`]).
fn channel_urls(answer: &Value, base: &str) -> Result<Option<[String; 4]>, String> {
    let mut urls = Vec::with_capacity(4);
    for field in ["publish_url", "subscribe_url", "control_url", "events_url"] {
        let raw = answer.get(field).and_then(Value::as_str).unwrap_or_default();
        match channel_url(raw, base)? {
            Some(url) => urls.push(url),
            None => return Ok(None),
        }
    }
    Ok(urls.try_into().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Error, Kind};
    use crate::orchestrator::verdict::LeaseEnd;

    /// An endless start answer is read to the cap and no further.
    #[tokio::test]
    async fn an_endless_answer_is_read_to_the_cap() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let _ = tcp.read(&mut [0u8; 4096]).await;
            let head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
            tcp.write_all(head.as_bytes()).await.unwrap();
            let chunk = [b"1000\r\n".as_slice(), &[b'['; 4096], b"\r\n"].concat();
            while tcp.write_all(&chunk).await.is_ok() {}
        });
        let resp = reqwest::get(&url).await.unwrap();
        let ended = crate::outbound::read_capped(resp, MAX_START_ANSWER).await;
        assert_eq!(
            ended.map_err(|e| e.to_string()),
            Err(format!("answer larger than {MAX_START_ANSWER} bytes"))
        );
    }

    /// What a start answer leads to: (label, ejected, renewed, other orchestrators tried).
    #[test]
    fn start_answers_are_judged_by_the_verdict_table() {
        #[rustfmt::skip]
        let rows: &[(u16, &str, &str, bool, bool, bool)] = &[
            (503, "insufficient capacity",            "busy",         false, false, true),
            (500, "boom",                             "server_error", true,  false, true),
            (204, "",                                 "server_error", true,  false, true),
            // Any other 4xx ejects now (live counted it as a refusal without ejection).
            (400, "missing model_id",                 "refused",      true,  false, true),
            (404, "404 page not found",               "refused",      true,  false, true),
            // Payment refusals renew the session; stale terms penalise nobody.
            (400, "TicketParams expired",             "refused",      false, true,  true),
            (400, "Insufficient balance",             "refused",      false, true,  true),
            (403, "ErrSegSig",                        "refused",      true,  true,  true),
            (402, "invalid ticket",                   "refused",      true,  true,  true),
            // The stream's own input: a client error, nobody else is tried.
            (500, "live container returned 400: bad", "server_error", false, false, false),
        ];
        for &(status, text, label, ejected, renewed, fail_over) in rows {
            let (code, failure) = answer_failure(status, text);
            let verdict = failure.verdict();
            assert_eq!(code, label, "{status} {text}");
            assert_eq!(verdict.lease_end() == LeaseEnd::Eject, ejected, "{status} {text}");
            assert_eq!(verdict.renew_payment, renewed, "{status} {text}");
            assert_eq!(verdict.fail_over, fail_over, "{status} {text}");
        }
    }

    #[test]
    fn a_rejected_input_is_the_clients_error_and_no_orchestrator_a_retry_later() {
        let why = NotAttached::InputRejected;
        let rejected = AttachError { message: "bad params".into(), why };
        let error = Error::from(LiveError::from(rejected));
        assert_eq!(error.kind(), Kind::InvalidRequest);
        assert_eq!(error.message(), "bad params");
        let none = Error::from(LiveError::from(AttachError::none_started("none".into())));
        assert_eq!(none.kind(), Kind::NoOrchestrator);
        assert!(none.retry_after_secs().is_some());
        let why = NotAttached::GatewayExhausted;
        let short = Error::from(LiveError::from(AttachError { message: "emfile".into(), why }));
        assert_eq!(short.kind(), Kind::GatewayOverloaded);
    }
}
