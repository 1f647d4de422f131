//! A BYOC stream's calls to orchestrators (PROTOCOL.md §10.6): `/ai/stream/start` on one
//! selected as jobs are (with a fresh token, the job signed with id = stream id, paid per
//! §10.7), and `/ai/stream/stop`, `/ai/stream/update` and `/ai/stream/payment` on the one
//! serving the stream, each with a fresh token as go-livepeer's gateway fetches one.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use livepeer_pm::Ratio;
use serde_json::json;

use super::JobSigner;
use super::answer::ceil_seconds;
use super::job::refusal_outcome;
use super::request::{JOB_HEADER, JobRequest};
use super::stream_state::{Inner, Phase, Stream};
use super::tokens::{Stored, orch_key};
use crate::error::{Error, Kind};
use crate::job::JobKey;
use crate::orchestrator::Lease;
use crate::orchestrator::byoc::TokenError;
use crate::orchestrator::channel::{byoc_channels, pinned};
use crate::orchestrator::http::{HttpError, answer_peer, read_body};
use crate::payment::{ByocOutcome, ByocPayment, ByocPrepared};
use tokio::time::Instant;

/// The channel URLs of a stream start answer.
struct ChannelUrls {
    control_url: String,
    events_url: String,
    /// Publish, subscribe and data: `None` when the stream did not enable it.
    optional: [Option<String>; 3],
    /// Host names of channels elsewhere, with the addresses they were checked at.
    pins: Vec<(String, Vec<SocketAddr>)>,
}

impl ChannelUrls {
    /// The client for these channels: the shared one, unless a channel elsewhere has a host
    /// name, which this stream's own client then reaches at its checked addresses only. `Err`
    /// only when the gateway cannot build a client (its TLS set-up failing).
    fn client(&self, inner: &Inner) -> Result<reqwest::Client, String> {
        if self.pins.is_empty() {
            return Ok(inner.trickle.clone());
        }
        super::stream_state::trickle_client(&inner.trickle_config, |b| pinned(b, &self.pins))
    }
}

/// The channel URLs of a start answer's headers, each where [`byoc_channels`] allows it:
/// control and events always, the others as `flags` enable them. `Err` says why not.
async fn channel_urls(
    headers: &http::HeaderMap,
    (base, peer): (&str, Option<IpAddr>),
    flags: super::stream_state::Flags,
) -> Result<ChannelUrls, String> {
    let wanted = [
        ("X-Control-Url", true),
        ("X-Events-Url", true),
        ("X-Publish-Url", flags.enable_video_ingress),
        ("X-Subscribe-Url", flags.enable_video_egress),
        ("X-Data-Url", flags.enable_data_output),
    ];
    // A channel the stream did not enable is never used: not judged either.
    let raw = |(name, enabled): (&str, bool)| {
        let value = headers.get(name).and_then(|v| v.to_str().ok());
        if enabled { value.unwrap_or_default() } else { "" }
    };
    let channels = byoc_channels(&wanted.map(raw), base, peer).await?;
    let mut urls: [Option<String>; 5] = Default::default();
    let mut pins: Vec<(String, Vec<SocketAddr>)> = Vec::new();
    for (((name, enabled), channel), url) in wanted.into_iter().zip(channels).zip(&mut urls) {
        match channel {
            Some(channel) => {
                pins.extend(channel.pin.filter(|(host, _)| pins.iter().all(|(h, _)| h != host)));
                *url = Some(channel.url);
            }
            None if enabled => return Err(format!("it lacks {name}, which the stream needs")),
            None => {}
        }
    }
    let [control, events, publish, subscribe, data] = urls;
    Ok(ChannelUrls {
        control_url: control.unwrap_or_default(),
        events_url: events.unwrap_or_default(),
        optional: [publish, subscribe, data],
        pins,
    })
}

/// Deadline of a stop call's job (go-livepeer: `timeout_seconds` 10, plus its 5 s).
const STOP_TIMEOUT_SECONDS: u64 = 10;
/// `timeout_seconds` of a payment's job (go-livepeer: 70).
const PAYMENT_TIMEOUT_SECONDS: u64 = 70;
/// Added to `timeout_seconds` for a call's deadline (go-livepeer).
const GRACE: Duration = Duration::from_secs(5);
/// The start call's route: the one call the orchestrator charges the worker's time for.
const START: &str = "/ai/stream/start";
/// What go-livepeer's stop, update and payment handlers put between their own words and the
/// error of the checks they share with jobs (`Failed to stop stream, request not valid
/// err=Could not verify job creds`).
const CALL_REFUSED: &str = ", request not valid err=";
/// The most of an answer's body read.
const ANSWER_BYTES: usize = 64 * 1024;

/// An orchestrator serving the stream.
#[derive(Debug)]
pub(crate) struct Session {
    /// Its discovery URL (as `parameters.orchestrators` names it).
    pub(crate) orchestrator: String,
    /// Where its calls go.
    pub(crate) service: String,
    pub(crate) lease: Lease,
    pub(crate) publish_url: Option<String>,
    pub(crate) subscribe_url: Option<String>,
    pub(crate) data_url: Option<String>,
    pub(crate) control_url: String,
    pub(crate) events_url: String,
    /// The client its channels are reached with ([`ChannelUrls::client`]).
    pub(crate) trickle: reqwest::Client,
}

/// A job of the stream's capability naming the stream in `request` (stop, update, payment).
fn call_job(stream: &Stream, timeout_seconds: u64, parameters: &str) -> JobRequest {
    JobRequest {
        id: stream.id.clone(),
        request: json!({ "stream_id": stream.id }).to_string(),
        parameters: parameters.to_owned(),
        capability: stream.job.capability.clone(),
        timeout_seconds,
        include: Vec::new(),
        exclude: Vec::new(),
    }
}

/// A call's answer: status, (bounded) body and headers.
pub(crate) type Answer = (u16, Bytes, http::HeaderMap);

/// Why a call got no answer, and whose doing it was.
#[derive(Debug)]
pub(crate) enum CallError {
    /// The gateway's: signing, paying, or a price over the cap. The orchestrator is not
    /// penalised for it.
    Gateway(String),
    /// The gateway's own want of descriptors: no connection could be opened. Nobody is
    /// penalised, and a start ends, since another orchestrator's dial would meet it too.
    Local(String),
    /// Refused each time it was sent (`REFUSED_STREAM`, RFC 9113 §8.7): the orchestrator
    /// took nothing and is busy; it is not penalised, as a 503 is not.
    Refused(String),
    /// The orchestrator's: its address, the transport, or an answer that broke off.
    Orchestrator(String),
    /// The orchestrator's too: the call was sent and no answer's head came, by the deadline
    /// or before the connection ended, so whether it took the payment and ran the call is
    /// unknown; or a start answered with success broke off in its body. Either way a start
    /// may run there.
    Unanswered(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Gateway(e)
            | Self::Local(e)
            | Self::Refused(e)
            | Self::Orchestrator(e)
            | Self::Unanswered(e) => f.write_str(e),
        }
    }
}

/// `POST {service}{route}` with `job` signed and, when `paid`, paid from `token`. Stop and
/// update are paid as start is: go-livepeer's orchestrator runs them through `setupOrchJob`,
/// which processes a `Livepeer-Payment` and, for a priced capability, refuses (400
/// `Insufficient balance for request`) a sender holding less than a minute of the price
/// (byoc/stream_orchestrator.go `StopStream`, `UpdateStream`); its gateway pays them with
/// `createPayment` (byoc/job_gateway.go `sendJobToOrch`).
async fn call(
    inner: &Inner,
    (orch, token): (&str, &Stored),
    job: &JobRequest,
    (route, paid): (&str, bool),
    body: Bytes,
) -> Result<Answer, CallError> {
    call_from(inner, (orch, token), job, (route, paid), body).await.map(|(answer, ..)| answer)
}

/// [`call`], with the address the answer came from when known, and the expected value of the
/// tickets the call carried (wei).
async fn call_from(
    inner: &Inner,
    (orch, token): (&str, &Stored),
    job: &JobRequest,
    (route, paid): (&str, bool),
    body: Bytes,
) -> Result<(Answer, Option<IpAddr>, Ratio), CallError> {
    let gateway = CallError::Gateway;
    if let Some(why) = inner.byoc.over_cap(&job.capability, &token.token) {
        return Err(gateway(why));
    }
    let header = sign(inner, job).await.map_err(gateway)?;
    let payments = &inner.byoc.payments;
    let deadline = Instant::now() + Duration::from_secs(job.timeout_seconds) + GRACE;
    let mut payment = if paid {
        prepare(inner, orch, token, job, deadline).await.map_err(gateway)?
    } else {
        ByocPayment::none(orch, &job.capability)
    };
    let url = format!("{}{route}", token.token.service_addr);
    let mut builder = http::Request::post(url.as_str())
        .header(JOB_HEADER, header)
        .header(http::header::CONTENT_TYPE, "application/json");
    if let Some(p) = payment.header() {
        builder = builder.header(livepeer_pm::PAYMENT_HEADER, p);
    }
    let Ok(request) = builder.body(Full::new(body)) else {
        payments.byoc_settle(payment, ByocOutcome::Refused);
        return Err(CallError::Orchestrator(format!("bad service address {url}")));
    };
    let at = Instant::now();
    let charges = route == START;
    let sent = tokio::time::timeout_at(deadline, inner.byoc.http.send(request)).await;
    let resp = match sent {
        Ok(Ok(resp)) => resp,
        Ok(Err(e)) => {
            let outcome = unanswered(&e, charges, at);
            payments.byoc_settle(payment, outcome);
            return Err(match (&e, outcome) {
                (HttpError::Local(_), _) => CallError::Local(e.to_string()),
                (HttpError::Refused(_), _) => CallError::Refused(e.to_string()),
                (_, ByocOutcome::Unknown(_)) => CallError::Unanswered(e.to_string()),
                _ => CallError::Orchestrator(e.to_string()),
            });
        }
        Err(_) => {
            let waited = job.timeout_seconds + GRACE.as_secs();
            let e = CallError::Unanswered(format!("no answer within {waited}s"));
            payments.byoc_settle(payment, ByocOutcome::Unknown(unknown_seconds(charges, at)));
            return Err(e);
        }
    };
    // The answer's head came: the orchestrator has processed the payment.
    payments.byoc_confirm(&mut payment);
    let peer = answer_peer(&resp);
    let (parts, body) = resp.into_parts();
    let body = tokio::time::timeout_at(deadline, read_body(body, ANSWER_BYTES)).await;
    let body = match body {
        Ok(Ok(body)) => body,
        broke => {
            // A start whose head came had its worker answer, and is charged for it; the other
            // calls run no job of their own to be charged (the stream is debited as it runs).
            let outcome = match charges {
                true => ByocOutcome::Charged(ceil_seconds(at.elapsed())),
                false => ByocOutcome::Uncharged,
            };
            payments.byoc_settle(payment, outcome);
            let why = match broke {
                Ok(Err(e)) => e.to_string(),
                _ => format!("answer unfinished within {}s", job.timeout_seconds + GRACE.as_secs()),
            };
            // A start answered with success runs there, though its answer was lost.
            let started = charges && parts.status.is_success();
            return Err(if started {
                CallError::Unanswered(why)
            } else {
                CallError::Orchestrator(why)
            });
        }
    };
    let answer = (parts.status.as_u16(), body, parts.headers);
    let ev = payment.ev_sent;
    payments.byoc_settle(payment, answered(&answer, charges, at.elapsed()));
    Ok((answer, peer, ev))
}

/// What a call that got no answer's head did to its payment. Refused each time it was sent
/// (RFC 9113 §8.7), never sent (a bad address, a dial that failed), or never dialled for want
/// of the gateway's descriptors: its tickets went nowhere. Otherwise the orchestrator may have
/// taken them, and for a start run the worker, or not (go-livepeer's leaves a payment it
/// cannot take unanswered): the outcome is unknown, as on the job path.
fn unanswered(e: &HttpError, charges: bool, at: Instant) -> ByocOutcome {
    match e {
        HttpError::Refused(_)
        | HttpError::BadUrl(_)
        | HttpError::Local(_)
        | HttpError::Unreachable(_) => ByocOutcome::Refused,
        _ => ByocOutcome::Unknown(unknown_seconds(charges, at)),
    }
}

/// The seconds a start left unanswered since `at` may have been charged for (its worker's
/// time is within the gateway's wait, rounded up, as `chargeForCompute` rounds); the other
/// calls run no job of their own.
fn unknown_seconds(charges: bool, at: Instant) -> u64 {
    if charges { ceil_seconds(at.elapsed()) } else { 0 }
}

/// What an answered call did to its payment. 503: refused before the payment was processed.
/// go-livepeer's orchestrator charges a start the worker's time, whether the worker started
/// the stream or answered an error of its own (byoc/stream_orchestrator.go `StartStream`,
/// `chargeForCompute`); not a 402 (`Insufficient balance`, nothing ran), nor a 400 refused
/// before the worker (see [`refusal_outcome`]). Stop, update and payment charge nothing; their
/// handlers put what `setupOrchJob` refused after [`CALL_REFUSED`], and creds refused there
/// were refused before the payment was processed.
fn answered((status, body, _): &Answer, charges: bool, took: Duration) -> ByocOutcome {
    let text = String::from_utf8_lossy(body);
    match (*status, charges) {
        (503, _) => ByocOutcome::Refused,
        (402, true) => ByocOutcome::Uncharged,
        (400, true) => refusal_outcome(text.trim(), took),
        (400, false) => match text.split_once(CALL_REFUSED).map(|(_, why)| why.trim()) {
            Some(why) if matches!(refusal_outcome(why, took), ByocOutcome::Refused) => {
                ByocOutcome::Refused
            }
            _ => ByocOutcome::Uncharged,
        },
        (_, true) => ByocOutcome::Charged(ceil_seconds(took)),
        (_, false) => ByocOutcome::Uncharged,
    }
}

/// The signed `Livepeer` header of `job`: by the gateway's key, or by its remote signer.
async fn sign(inner: &Inner, job: &JobRequest) -> Result<String, String> {
    match &inner.byoc.signer {
        JobSigner::Key(key) => job.signed_header(key),
        JobSigner::Remote(_) => {
            let fields = crate::payment::ByocJobFields {
                id: &job.id,
                capability: &job.capability,
                request: &job.request,
                parameters: &job.parameters,
                timeout_seconds: job.timeout_seconds,
            };
            let payments = &inner.byoc.payments;
            let (sender, sig) =
                payments.byoc_sign_remote(&fields).await.map_err(|e| e.to_string())?;
            job.encode(&sender, &sig)
        }
    }
}

/// The payment of a call, waiting (until `deadline`) while the credit it would rely on is
/// not confirmed yet; past it the call goes unpaid, as a job's attempt does.
async fn prepare(
    inner: &Inner,
    orch: &str,
    token: &Stored,
    job: &JobRequest,
    deadline: Instant,
) -> Result<ByocPayment, String> {
    let payments = &inner.byoc.payments;
    loop {
        let pay = (&*token.token, token.fetched);
        let prepared = payments
            .byoc_prepare(orch, &job.capability, pay, job.timeout_seconds)
            .await
            .map_err(|e| format!("payment: {e}"))?;
        match prepared {
            ByocPrepared::Ready(payment) => return Ok(*payment),
            ByocPrepared::Wait(mut confirmed) => {
                let waited = tokio::time::timeout_at(deadline, confirmed.changed()).await;
                if !matches!(waited, Ok(Ok(()))) {
                    return Ok(ByocPayment::none(orch, &job.capability));
                }
            }
        }
    }
}

/// A fresh job token of the stream's capability at `orch`.
async fn fresh_token(inner: &Inner, orch: &str, capability: &str) -> Result<Stored, String> {
    inner.byoc.tokens.fetch(orch, capability).await.map_err(|e| format!("job token: {e}"))
}

/// Selects an orchestrator (not in `exclude`, allowed by the job's filter) and starts the
/// stream on it, trying up to `--byoc-max-attempts`.
pub(crate) async fn attach(
    inner: &Arc<Inner>,
    stream: &Arc<Stream>,
    exclude: &[String],
) -> Result<Session, Error> {
    let key = JobKey::byoc(&stream.job.capability);
    let snap = inner.byoc.pool.snapshot();
    let mut skip: Vec<String> = snap
        .slots
        .iter()
        .filter(|s| !stream.job.allows(&orch_key(&s.url)))
        .map(|s| s.url.to_string())
        .collect();
    skip.extend(exclude.iter().cloned());
    let mut tried: Vec<String> = Vec::new();
    for _ in 0..inner.byoc.config.max_attempts {
        let names: Vec<&str> = skip.iter().map(String::as_str).collect();
        let lease = match inner.byoc.pool.select(&key, &names) {
            Ok(lease) => lease,
            Err(e) if tried.is_empty() => return Err(Error::select(&e).field("capability")),
            Err(_) => break,
        };
        skip.push(lease.url().to_string());
        let orch = orch_key(lease.url());
        match start_on(inner, stream, lease).await {
            Ok(session) => return Ok(session),
            Err(Failed::Client(e)) => return Err(e),
            Err(Failed::Next(why)) => {
                tracing::info!(
                    stream = stream.id,
                    orchestrator = orch,
                    error = why,
                    "BYOC stream start failed"
                );
                tried.push(format!("{orch}: {why}"));
            }
        }
    }
    let m = format!(
        "BYOC stream {:?} could not start on {} orchestrator(s): {}",
        stream.job.capability,
        tried.len(),
        tried.join("; ")
    );
    Err(Error::new(Kind::OrchestratorsUnavailable, m))
}

enum Failed {
    /// The orchestrator refused the client's request (the client's error), or the gateway's
    /// own shortage ended the start: this error goes to the client, no other is tried.
    Client(Error),
    /// Try the next orchestrator.
    Next(String),
}

/// A fresh job token of `orch` for a start (its balance current), with `lease` back, or why
/// the start goes no further there.
async fn start_token(
    inner: &Inner,
    stream: &Stream,
    orch: &str,
    lease: Lease,
) -> Result<(Stored, Lease), Failed> {
    match inner.byoc.tokens.fetch(orch, &stream.job.capability).await {
        Ok(t) if t.token.available_capacity > 0 => Ok((t, lease)),
        Ok(_) => Err(Failed::Next("no capacity (job token)".into())),
        // The gateway's own want of descriptors: nobody is blamed, and the start ends, since
        // another orchestrator's dial would meet it too.
        Err(e @ TokenError::Http(HttpError::Local(_))) => {
            drop(lease);
            let e = Error::new(Kind::GatewayOverloaded, format!("job token: {e}"));
            Err(Failed::Client(e))
        }
        Err(e) => {
            let e = format!("job token: {e}");
            lease.failed_job(e.clone());
            Err(Failed::Next(e))
        }
    }
}

/// `/ai/stream/start` on `lease`'s orchestrator.
async fn start_on(
    inner: &Arc<Inner>,
    stream: &Arc<Stream>,
    lease: Lease,
) -> Result<Session, Failed> {
    let orch = orch_key(lease.url());
    // A stop of this id sent there in the background must land before this start, or it
    // would end the stream this start makes.
    if !inner.stops_over(&orch, &stream.id, super::stream_state::STOP_WAIT).await {
        drop(lease);
        return Err(Failed::Next("an earlier stop of this stream there is unanswered".into()));
    }
    let (token, lease) = start_token(inner, stream, &orch, lease).await?;
    // Known before the call: a start abandoned mid-call stops it there (`Opening`).
    let params = stream
        .with_state(|s| {
            s.attempting = Some(orch.clone());
            s.params.clone()
        })
        .unwrap_or_default();
    let body = Bytes::from(json!({ "params": params }).to_string());
    let answer = call_from(inner, (&orch, &token), &stream.job, (START, true), body).await;
    if !matches!(answer, Ok(((200, _, _), ..)) | Err(CallError::Unanswered(_))) {
        // Refused, never sent, or answered with an error: nothing runs there for the start's
        // guard to stop.
        stream.with_state(|s| s.attempting.take_if(|a| *a == orch));
    }
    let ((status, text, headers), peer, ev) = match answer {
        Ok(answer) => answer,
        Err(CallError::Gateway(e) | CallError::Refused(e)) => {
            drop(lease);
            return Err(Failed::Next(e));
        }
        Err(CallError::Local(e)) => {
            drop(lease);
            let e = Error::new(Kind::GatewayOverloaded, format!("stream start: {e}"));
            return Err(Failed::Client(e));
        }
        Err(CallError::Orchestrator(e)) => {
            lease.failed_job(e.clone());
            return Err(Failed::Next(e));
        }
        Err(CallError::Unanswered(e)) => {
            lease.failed_job(e.clone());
            stop_unanswered(inner, stream, orch);
            return Err(Failed::Next(e));
        }
    };
    let text = crate::orchestrator::text::cut(&String::from_utf8_lossy(&text));
    match status {
        200 => {}
        400 => {
            lease.client_error();
            let m = format!("the orchestrator refused the stream: {text}");
            return Err(Failed::Client(Error::new(Kind::InvalidRequest, m)));
        }
        402 | 503 => return Err(Failed::Next(format!("{status} {text}"))),
        _ => {
            lease.failed_job(format!("{status} {text}"));
            return Err(Failed::Next(format!("{status} {text}")));
        }
    }
    let service = token.token.service_addr.clone();
    let session = session(inner, stream, (orch, service, peer), &headers, lease).await?;
    // What the start paid for the stream: a customer priced on it is charged for it too.
    stream
        .with_state(|s| s.start_ev_wei = s.start_ev_wei.checked_add(&ev).unwrap_or(s.start_ev_wei));
    Ok(session)
}

/// The session a start answered with `headers` from `peer` makes on `orch` (at `service`),
/// once its channels are checked; a start whose channels are not is stopped there.
async fn session(
    inner: &Arc<Inner>,
    stream: &Arc<Stream>,
    (orch, service, peer): (String, String, Option<IpAddr>),
    headers: &http::HeaderMap,
    lease: Lease,
) -> Result<Session, Failed> {
    let urls = match channel_urls(headers, (&service, peer), stream.flags).await {
        Ok(urls) => urls,
        Err(why) => {
            // Nothing is posted to, read from or deleted at such channels, and the stream it
            // may have started is stopped at its service address.
            let why = format!("start answer: {why}");
            stop(inner, stream, &orch, &why).await;
            lease.failed_job(why.clone());
            return Err(Failed::Next(why));
        }
    };
    let trickle = match urls.client(inner) {
        Ok(client) => client,
        Err(why) => {
            // The gateway's own fault: the stream is stopped, the orchestrator spared, and the
            // start ends, since any other orchestrator's channels would meet it too.
            stop(inner, stream, &orch, "the gateway could not reach its channels").await;
            drop(lease);
            let why = format!("no client for the stream's channels: {why}");
            return Err(Failed::Client(Error::new(Kind::Internal, why)));
        }
    };
    let ChannelUrls {
        control_url,
        events_url,
        optional: [publish_url, subscribe_url, data_url],
        ..
    } = urls;
    let session = Session {
        trickle,
        orchestrator: orch,
        service,
        publish_url,
        subscribe_url,
        data_url,
        control_url,
        events_url,
        lease,
    };
    stream.with_state(|s| {
        s.phase = Phase::Running;
        s.orchestrator = Some((session.orchestrator.clone(), session.service.clone()));
    });
    Ok(session)
}

/// A start left unanswered may have started the stream on `orch` (its worker up, the
/// stream debiting the gateway's credit there until its balance runs out): it is stopped
/// there, as go-livepeer's gateway stops a stream it moves away from (§10.6). In the
/// background, so the next orchestrator is tried at once; the stop's own deadline bounds it.
fn stop_unanswered(inner: &Arc<Inner>, stream: &Arc<Stream>, orch: String) {
    stream.with_state(|s| {
        if s.attempting.as_ref() == Some(&orch) {
            // Stopped here: the start's guard need not stop it again if the start ends.
            s.attempting = None;
        }
    });
    let pending = inner.stop_pending(&orch, &stream.id);
    let (task_inner, stream) = (inner.clone(), stream.clone());
    inner.tasks.spawn("byoc-stream-unanswered", move |_| async move {
        stop(&task_inner, &stream, &orch, "the start was left unanswered").await;
        drop(pending);
    });
}

/// `/ai/stream/stop` on the session's orchestrator, the reason as the body; failures logged.
pub(crate) async fn stop(inner: &Inner, stream: &Stream, orch: &str, reason: &str) {
    let capability = &stream.job.capability;
    let result = async {
        let token = fresh_token(inner, orch, capability).await?;
        let job = call_job(stream, STOP_TIMEOUT_SECONDS, "");
        let body = Bytes::copy_from_slice(reason.as_bytes());
        let answer = call(inner, (orch, &token), &job, ("/ai/stream/stop", true), body).await;
        answer.map_err(|e| e.to_string())
    }
    .await;
    match result {
        Ok((200, _, _)) => {}
        Ok((status, body, _)) => tracing::info!(
            stream = stream.id,
            orchestrator = orch,
            status,
            body = %crate::orchestrator::text::cut(&String::from_utf8_lossy(&body)),
            "BYOC stream stop refused"
        ),
        Err(e) => tracing::info!(
            stream = stream.id,
            orchestrator = orch,
            error = e,
            "BYOC stream stop failed"
        ),
    }
}

/// `/ai/stream/update` on the serving orchestrator: its status and body, relayed, as
/// go-livepeer's gateway relays them, but for two that would blame the client for what it did
/// not do: a refusal of the gateway's payment (400 `Insufficient balance…`, `Could not verify
/// job creds`) is 503 `payment_refused`, and the orchestrator's own 5xx is 502
/// `orchestrator_failed`, its text cut to one line.
pub(crate) async fn update(inner: &Inner, stream: &Stream, body: Bytes) -> Result<Answer, Error> {
    let (status, body, headers) = relay_update(inner, stream, body).await?;
    let text = || crate::orchestrator::text::cut(&String::from_utf8_lossy(&body));
    // In go-livepeer's own words, `Failed to stop stream, request not valid err=…` (its job
    // setup's refusal), not a worker's 400 that happens to name a balance.
    let refused = |r: &&str| text().contains(&format!("request not valid err={r}"));
    if status == 400 && super::job::PAYMENT_REFUSALS.iter().any(refused) {
        return Err(Error::new(Kind::PaymentRefused, format!("update: {}", text())));
    }
    if status >= 500 {
        let message = format!("update: the orchestrator answered {status}: {}", text());
        return Err(Error::new(Kind::OrchestratorFailed, message));
    }
    Ok((status, body, headers))
}

async fn relay_update(inner: &Inner, stream: &Stream, body: Bytes) -> Result<Answer, Error> {
    let serving = stream.with_state(|s| s.orchestrator.clone()).flatten();
    let Some((orch, _)) = serving else {
        return Err(Error::new(Kind::StreamStopped, "no orchestrator serves the stream now"));
    };
    let failed = |e: String| Error::new(Kind::OrchestratorFailed, format!("update: {e}"));
    let token = fresh_token(inner, &orch, &stream.job.capability).await.map_err(failed)?;
    let job = call_job(stream, STOP_TIMEOUT_SECONDS, "{}");
    match call(inner, (&orch, &token), &job, ("/ai/stream/update", true), body).await {
        Ok(answer) => Ok(answer),
        Err(CallError::Gateway(e)) => Err(Error::new(Kind::PaymentRefused, format!("update: {e}"))),
        Err(CallError::Local(e)) => {
            Err(Error::new(Kind::GatewayOverloaded, format!("update: {e}")))
        }
        Err(CallError::Refused(e) | CallError::Orchestrator(e) | CallError::Unanswered(e)) => {
            Err(failed(e))
        }
    }
}

/// One payment (§10.6): a fresh token, then `/ai/stream/payment` when the price is above zero
/// and the balance calls for tickets. `Ok(false)`: nothing was due.
pub(crate) async fn pay(inner: &Inner, stream: &Stream, orch: &str) -> Result<bool, String> {
    let capability = &stream.job.capability;
    let token = fresh_token(inner, orch, capability).await?;
    if token.token.price.is_zero() {
        return Ok(false);
    }
    if let Some(why) = inner.byoc.over_cap(capability, &token.token) {
        return Err(why);
    }
    let job = call_job(stream, PAYMENT_TIMEOUT_SECONDS, "{}");
    let header = sign(inner, &job).await?;
    let payments = &inner.byoc.payments;
    let deadline = Instant::now() + Duration::from_secs(job.timeout_seconds) + GRACE;
    let payment = prepare(inner, orch, &token, &job, deadline).await?;
    let Some(value) = payment.header().map(str::to_owned) else {
        payments.byoc_settle(payment, ByocOutcome::Uncharged);
        return Ok(false);
    };
    let (tickets, ev) = (payment.tickets, payment.ev_sent);
    let url = format!("{}/ai/stream/payment", token.token.service_addr);
    let request = http::Request::post(url.as_str())
        .header(JOB_HEADER, header)
        .header(livepeer_pm::PAYMENT_HEADER, value)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::default());
    let Ok(request) = request else {
        payments.byoc_settle(payment, ByocOutcome::Refused);
        return Err(format!("bad service address {url}"));
    };
    let at = Instant::now();
    let sent = tokio::time::timeout_at(deadline, inner.byoc.http.send(request)).await;
    let outcome = match &sent {
        Ok(Ok(_)) => ByocOutcome::Uncharged,
        // Never sent (refused, a failed dial, no descriptors), or left unanswered: whether
        // the tickets were taken is then unknown.
        Ok(Err(e)) => unanswered(e, false, at),
        Err(_) => ByocOutcome::Unknown(0),
    };
    payments.byoc_settle(payment, outcome);
    let status = match sent {
        Ok(Ok(resp)) => resp.status().as_u16(),
        Ok(Err(e)) => return Err(e.to_string()),
        Err(_) => {
            return Err(format!("no answer within {}s", job.timeout_seconds + GRACE.as_secs()));
        }
    };
    if status != 200 {
        return Err(format!("payment answered {status}"));
    }
    stream.with_state(|s| {
        s.tickets += u64::from(tickets);
        s.ev_wei = s.ev_wei.checked_add(&ev).unwrap_or(s.ev_wei);
    });
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_start_left_unanswered_may_have_been_charged_its_wait_and_other_calls_nothing() {
        let at = Instant::now();
        tokio::time::advance(Duration::from_millis(2_500)).await;
        // Sent, no head: a start's worker may have run the whole wait, rounded up, whether
        // or not the payment carried tickets; a stop, update or payment runs no job.
        for sent in [HttpError::Transport("closed".into()), HttpError::Reset("cancel".into())] {
            assert_eq!(unanswered(&sent, true, at), ByocOutcome::Unknown(3), "{sent}");
            assert_eq!(unanswered(&sent, false, at), ByocOutcome::Unknown(0), "{sent}");
        }
        // Nothing the orchestrator could have processed: refused streams, bad addresses,
        // dials that failed and the gateway's own want of descriptors.
        let never = [
            HttpError::Refused("refused".into()),
            HttpError::BadUrl("x".into()),
            HttpError::Local("EMFILE".into()),
            HttpError::Unreachable("connection refused".into()),
        ];
        for e in never {
            assert_eq!(unanswered(&e, true, at), ByocOutcome::Refused, "{e}");
        }
    }
}
