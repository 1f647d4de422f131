//! One attempt at one segment on one orchestrator (PROTOCOL.md §6): pay through the shared
//! [`Payments`] (sized by the fee estimate), `POST {transcoder}/segment` with the raw bytes and
//! signed `SegData`, within go-livepeer's two deadlines; read the `TranscodeResult`; fetch
//! every rendition under the same-host rule of `ai::fetch`, within the rendition cap; verify
//! `TranscodeData.sig` when the orchestrator is paid on chain; settle the balance with what the
//! orchestrator charged (Σ pixels × price).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http_body_util::Full;
use livepeer_pm::{B256, Ratio, flatten_segment, keccak256, recover_eth_signer};
use livepeer_proto::{Message, headers, net};
use tokio::time::Instant;
use url::Url;

use super::codec::InputVideo;
use super::profiles::{Format, Profile, ProfileList, job_capabilities, profile_list};
use super::tokens::StreamTokens;
use crate::ai::fetch::{Budget, FetchError, Fetcher};
use crate::ai::results::ResultStore;
use crate::job::JobKey;
use crate::orchestrator::caps::Capabilities;
use crate::orchestrator::http::{HttpError, OrchHttp, read_body};
use crate::orchestrator::info::OrchInfo;
use crate::orchestrator::text::cut;
use crate::orchestrator::verdict::Failure;
use crate::payment::{PayError, Payments, Prepared, Settlement};

/// The most a `TranscodeResult` may take: URLs and an `OrchestratorInfo`, never media.
const RESULT_MAX: usize = 1 << 20;

/// The texts of errors no retry cures, the input itself being at fault: lpms
/// ffmpeg/ffmpeg_errors.go `NonRetryableErrs`, i.e. its own C errors (`lpmsErrors`), six of
/// ffmpeg's and six of the transcoder's (ffmpeg/ffmpeg.go `ErrTranscoder*`).
const NON_RETRYABLE: [&str; 19] = [
    "Unsupported input pixel format",
    "Error initializing filtergraph",
    "Too many outputs",
    "Unsupported input codec",
    "No keyframes in input",
    "Unrecoverable state, restart process",
    "Encoded frames runaway",
    "Decoder not found",
    "Demuxer not found",
    "Encoder not found",
    "Muxer not found",
    "Option not found",
    "Invalid argument",
    "TranscoderInvalidResolution",
    "TranscoderInvalidVideo",
    "TranscoderUnrecognizedFormat",
    "TranscoderUnrecognizedProfile",
    "TranscoderInvalidGOP",
    "TranscoderIncompatibleDevices",
];

/// Whether an orchestrator's error text is one no retry cures. go-livepeer compares whole
/// texts (server/broadcast.go `isNonRetryableError` looks each one up in a map), so a text
/// that merely contains one, such as `Could not transcode: Invalid argument`, is retried.
fn non_retryable(text: &str) -> bool {
    NON_RETRYABLE.contains(&text)
}

/// One segment to transcode.
#[derive(Debug, Clone)]
pub(super) struct Job {
    /// The stream's manifest id.
    pub(super) manifest: String,
    /// Sequence number.
    pub(super) seq: u64,
    /// The segment.
    pub(super) data: Bytes,
    /// keccak256 of `data`.
    pub(super) hash: B256,
    /// Duration, milliseconds.
    pub(super) duration_ms: u32,
    /// Renditions to make.
    pub(super) profiles: Arc<Vec<Profile>>,
    /// Their container.
    pub(super) format: Format,
    /// Whether the segment was pushed over HTTP, whose segments go-livepeer always sends with
    /// segment parameters (and so requires SegmentSlicing); RTMP segments have none.
    pub(super) slicing: bool,
    /// What the segment's video asks an orchestrator to decode.
    pub(super) input: InputVideo,
    /// Estimated output pixels (the fee estimate's count).
    pub(super) estimated_pixels: u64,
    /// Until the answer's head (go-livepeer's upload timeout).
    pub(super) upload_timeout: Duration,
    /// The request and its answer (go-livepeer's HTTP timeout); renditions are fetched after.
    pub(super) total_timeout: Duration,
}

impl Job {
    /// The capabilities the segment requires (ids 0–63 as a bitmask): what `SegData` asks for
    /// and what selection requires of an orchestrator.
    pub(super) fn capabilities(&self) -> u64 {
        job_capabilities(&self.profiles, self.format, self.slicing, self.input.capabilities())
    }
}

/// Why an attempt failed.
#[derive(Debug, Clone, thiserror::Error)]
pub(super) enum AttemptError {
    /// The gateway would not or could not pay.
    #[error("payment: {0}")]
    Pay(String),
    /// Connecting or the exchange failed (dial errors, unexpected EOF).
    #[error("{0}")]
    Transport(String),
    /// No answer within a deadline.
    #[error("{0}")]
    Timeout(String),
    /// A status other than 200, with the orchestrator's text.
    #[error("status {status}: {message}")]
    Status {
        /// The status.
        status: u16,
        /// The body, trimmed.
        message: String,
    },
    /// `TranscodeResult.error` (`OrchestratorBusy`, `OrchestratorCapped`, ffmpeg's texts).
    #[error("{0}")]
    Orchestrator(String),
    /// An answer that cannot be used: not a `TranscodeResult`, the wrong number of renditions,
    /// a rendition that cannot be fetched, a signature that does not verify.
    #[error("{0}")]
    Unusable(String),
    /// The gateway's own limit: downloads in progress hold the whole download budget.
    #[error("{0}")]
    Gateway(String),
    /// The gateway could not dial for want of its own descriptors or memory: nothing was
    /// sent.
    #[error("{0}")]
    Local(String),
}

impl AttemptError {
    /// Whether another orchestrator may do better: everything but input errors lpms calls
    /// non-retryable and the gateway's own faults.
    pub(super) fn retryable(&self) -> bool {
        match self {
            Self::Orchestrator(m) | Self::Status { message: m, .. } => !non_retryable(m),
            Self::Gateway(_) | Self::Local(_) => false,
            _ => true,
        }
    }

    /// Whether the gateway's own shortage, not the orchestrator or the segment, is at fault.
    pub(super) fn is_gateways(&self) -> bool {
        matches!(self, Self::Gateway(_) | Self::Local(_))
    }

    /// Whether the orchestrator is to blame (its transcoding breaker opens). Not for being
    /// busy or capped, nor for payment terms that moved on (expired ticket params, a stale
    /// sender nonce, a short balance): fresh terms or a later segment cure those, and AI and
    /// live jobs spare them too (the verdict table's `Busy` and `PaymentStale`).
    pub(super) fn penalise(&self) -> bool {
        self.retryable() && !matches!(self, Self::Pay(_)) && !self.spared_refusal()
    }

    /// Whether this is the orchestrator's answer that spares it ([`AttemptError::penalise`]):
    /// busy, capped, or payment terms that moved on. Twice in a row for one stream, it is
    /// penalised all the same ([`super::streams::Stream::refused_again`]).
    pub(super) fn spared_refusal(&self) -> bool {
        match self {
            Self::Orchestrator(m) => {
                m.contains("OrchestratorBusy") || m.contains("OrchestratorCapped")
            }
            Self::Status { status, message } => matches!(
                Failure::from_answer(*status, message),
                Failure::Busy | Failure::PaymentStale
            ),
            _ => false,
        }
    }

    /// go-livepeer's `segment_transcode_failed_total` error code.
    pub(super) fn code(&self) -> &'static str {
        match self {
            Self::Orchestrator(m) if m.contains("OrchestratorBusy") => "OrchestratorBusy",
            Self::Orchestrator(m) if m.contains("OrchestratorCapped") => "OrchestratorCapped",
            Self::Status { message, .. } if message.contains("OrchestratorCapped") => {
                "OrchestratorCapped"
            }
            _ if !self.retryable() => "NonRetryable",
            Self::Orchestrator(_) => "Transcode",
            Self::Unusable(m) if m.starts_with("rendition") => "Download",
            Self::Unusable(_) => "ParseResponse",
            Self::Pay(_) => "Payment",
            Self::Transport(_) | Self::Timeout(_) | Self::Status { .. } => "UnknownResponse",
            Self::Gateway(_) | Self::Local(_) => "SaveData",
        }
    }
}

/// What a successful attempt brought back.
#[derive(Debug)]
pub(super) struct Done {
    /// Each profile's rendition, in profile order.
    pub(super) outputs: Vec<Bytes>,
    /// Pixels the orchestrator reports it made.
    pub(super) pixels: u64,
    /// What the segment's attempts cost, all of them (filled in by the session).
    pub(super) paid: Cost,
}

/// What an attempt cost, whatever its outcome.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Cost {
    /// Tickets sent.
    pub(super) tickets: u32,
    /// Their expected value, wei.
    pub(super) ev_sent: Ratio,
    /// The fee charged (Σ pixels × price), wei; zero on failure.
    pub(super) fee: Ratio,
}

impl Cost {
    /// Adds `other`'s tickets, EV and fee.
    pub(super) fn add(&mut self, other: &Cost) {
        self.tickets = self.tickets.saturating_add(other.tickets);
        self.ev_sent = self.ev_sent.checked_add(&other.ev_sent).unwrap_or(self.ev_sent);
        self.fee = self.fee.checked_add(&other.fee).unwrap_or(self.fee);
    }
}

/// The clients and settings every attempt shares.
#[derive(Debug, Clone)]
pub(super) struct Attempter {
    /// Calls to orchestrators.
    pub(super) http: OrchHttp,
    /// Rendition downloads.
    pub(super) fetcher: Fetcher,
    /// The budget of rendition downloads in progress (nothing is kept there).
    pub(super) downloads: Arc<ResultStore>,
    /// How the gateway pays.
    pub(super) payments: Payments,
    /// The largest rendition accepted.
    pub(super) max_rendition: usize,
    /// Streams' own auth tokens where nothing is paid.
    pub(super) tokens: Arc<StreamTokens>,
}

impl Attempter {
    /// Runs one attempt of `job` at the orchestrator `url` (as discovered: `info`).
    pub(super) async fn run(
        &self,
        url: &Url,
        info: &Arc<OrchInfo>,
        job: &Job,
    ) -> (Result<Done, AttemptError>, Cost) {
        let key = JobKey::transcode_stream(&job.manifest);
        // The key's payment sessions are the stream's own; unpaid, its tokens are.
        let info = if self.payments.local().is_some() && info.ticket_params.is_some() {
            info.clone()
        } else {
            match self.tokens.info(url, &job.manifest).await {
                Ok(info) => info,
                Err(e) if e.local => return (Err(AttemptError::Local(e.message)), Cost::default()),
                Err(e) => return (Err(AttemptError::Transport(e.message)), Cost::default()),
            }
        };
        let info = &info;
        let prepared =
            match self.payments.prepare_transcode(url, info, &key, job.estimated_pixels).await {
                Ok(p) => p,
                Err(e) => return (Err(pay_error(&e)), Cost::default()),
            };
        let mut cost = Cost::default();
        if let Some(spend) = prepared.spend() {
            cost.tickets = spend.tickets;
            cost.ev_sent = spend.ev_sent;
        }
        let started = Instant::now();
        let outcome = self.exchange(&prepared, job).await;
        match outcome {
            Ok(done) => {
                cost.fee = debit_of(&prepared, done.pixels);
                self.payments.settle_debit(prepared, cost.fee);
                tracing::debug!(orchestrator = %url, seq = job.seq, took = ?started.elapsed(), "segment transcoded");
                (Ok(done), cost)
            }
            Err((e, answer)) => {
                let stale = matches!(&e, AttemptError::Status { message, .. }
                    if message.contains("Insufficient balance") || message.contains("ticket")
                        || message.contains("auth token") || message.contains("TicketParams"));
                let sent = !matches!(answer, Answer::NotSent);
                match booking(answer, &e) {
                    Booking::Debit(pixels) => {
                        cost.fee = debit_of(&prepared, pixels);
                        self.payments.settle_debit(prepared, cost.fee);
                    }
                    Booking::Settle(outcome) => {
                        if !sent {
                            // Never sent: neither the stream's nor the metrics' count of
                            // tickets sent includes them. (A 503's were sent: booked as
                            // refused for the credit, they are still counted.)
                            cost = Cost::default();
                        }
                        self.payments.settle(prepared, outcome);
                    }
                }
                if stale {
                    self.payments.reset(url, &key);
                }
                (Err(e), cost)
            }
        }
    }

    /// The exchange proper; with an error, what the orchestrator's answer says of its charge.
    /// The whole-exchange deadline bounds the request and its `TranscodeResult` only, as
    /// go-livepeer's `httpTimeout` bounds `SubmitSegment` (server/segment_rpc.go) and not the
    /// rendition downloads after it (server/broadcast.go `downloadResults`), which the fetcher
    /// bounds each on its own.
    async fn exchange(
        &self,
        prepared: &Prepared,
        job: &Job,
    ) -> Result<Done, (AttemptError, Answer)> {
        let submitted = tokio::time::timeout(job.total_timeout, self.submit(prepared, job)).await;
        let (data, peer) = submitted.unwrap_or_else(|_| {
            let why = format!("no result within {:?}", job.total_timeout);
            Err((AttemptError::Timeout(why), Answer::Unknown))
        })?;
        // The orchestrator debits the pixels it reports once it sends them, whatever becomes
        // of the renditions here (as go-livepeer's gateway books them on receipt); at most
        // what the renditions can hold is taken for true.
        let reported = data.segments.iter().map(|s| u64::try_from(s.pixels).unwrap_or(0));
        let reported = reported.fold(0u64, u64::saturating_add);
        let debited = reported.min(job.estimated_pixels.saturating_mul(MAX_PIXELS_OVER_ESTIMATE));
        let done = self.renditions((prepared.info(), peer), job, &data).await;
        done.map_err(|e| (e, Answer::Debited(debited)))
    }

    /// `POST {transcoder}/segment` and its `TranscodeResult`'s renditions, with the peer that
    /// answered.
    async fn submit(
        &self,
        prepared: &Prepared,
        job: &Job,
    ) -> Result<(net::TranscodeData, Option<std::net::IpAddr>), (AttemptError, Answer)> {
        let info = prepared.info();
        let segment = segment_header(
            job,
            info,
            self.payments.signing_key().filter(|_| prepared.spend().is_some()),
        );
        let transcoder = info.transcoder.trim_end_matches('/');
        let request = http::Request::post(format!("{transcoder}/segment"))
            .header(headers::SEGMENT, segment)
            .header(headers::PAYMENT, prepared.payment())
            .header(CONTENT_TYPE, "video/MP2T")
            .body(Full::new(job.data.clone()))
            .map_err(|e| {
                let why = format!("bad transcoder URL {transcoder}: {e}");
                (AttemptError::Unusable(why), Answer::NotSent)
            })?;
        let head = tokio::time::timeout(job.upload_timeout, self.http.send(request)).await;
        let resp = match head {
            Err(_) => {
                let why = format!("no answer within the upload timeout {:?}", job.upload_timeout);
                return Err((AttemptError::Timeout(why), Answer::Unknown));
            }
            // The gateway's own shortage: not retried elsewhere, nobody blamed.
            Ok(Err(e @ HttpError::Local(_))) => {
                return Err((AttemptError::Local(e.to_string()), Answer::NotSent));
            }
            // The transcoder's address failed, but nothing reached it.
            Ok(Err(e @ HttpError::Unreachable(_))) => {
                return Err((AttemptError::Transport(e.to_string()), Answer::NotSent));
            }
            Ok(Err(e)) => return Err((AttemptError::Transport(e.to_string()), Answer::Unknown)),
            Ok(Ok(resp)) => resp,
        };
        let status = resp.status().as_u16();
        let peer = crate::orchestrator::http::answer_peer(&resp);
        let body = read_body(resp.into_body(), RESULT_MAX).await;
        if status != 200 {
            // The orchestrator's text goes into the pushing client's error, the log line of
            // every attempt and the pool's record (a 1 MB one was copied into all of them):
            // cut short and on one line.
            let text = body.map(|b| cut(&String::from_utf8_lossy(&b))).unwrap_or_default();
            return Err((AttemptError::Status { status, message: text }, Answer::Unknown));
        }
        let body = body.map_err(|e| (AttemptError::Transport(e.to_string()), Answer::Undebited))?;
        let result = net::TranscodeResult::decode(body.as_ref()).map_err(|e| {
            (AttemptError::Unusable(format!("not a TranscodeResult: {e}")), Answer::Undebited)
        })?;
        let data = match result.result {
            Some(net::transcode_result::Result::Data(data)) => data,
            Some(net::transcode_result::Result::Error(e)) => {
                return Err((AttemptError::Orchestrator(cut(&e)), Answer::Undebited));
            }
            None => {
                return Err((
                    AttemptError::Unusable("empty TranscodeResult".into()),
                    Answer::Undebited,
                ));
            }
        };
        Ok((data, peer))
    }

    /// Fetches and checks the renditions `data` lists.
    async fn renditions(
        &self,
        (info, orch_peer): (&OrchInfo, Option<std::net::IpAddr>),
        job: &Job,
        data: &net::TranscodeData,
    ) -> Result<Done, AttemptError> {
        if data.segments.len() != job.profiles.len() {
            return Err(AttemptError::Unusable(format!(
                "{} renditions for {} profiles",
                data.segments.len(),
                job.profiles.len()
            )));
        }
        let orch = self
            .fetcher
            .origin(&info.transcoder)
            .map_err(|e| AttemptError::Unusable(format!("transcoder URL: {e}")))?;
        let mut budget = Budget {
            orch,
            orch_peer,
            allowed: &[],
            per_result: self.max_rendition,
            left: self.max_rendition.saturating_mul(job.profiles.len()),
            store: &self.downloads,
        };
        let mut outputs = Vec::with_capacity(data.segments.len());
        let mut pixels: u64 = 0;
        for (seg, profile) in data.segments.iter().zip(job.profiles.iter()) {
            let fetched = self.fetcher.fetch(&seg.url, &mut budget).await.map_err(|e| match e {
                FetchError::Unusable(why) => {
                    AttemptError::Unusable(format!("rendition {}: {why}", profile.name))
                }
                FetchError::StoreFull(full) => AttemptError::Gateway(full.to_string()),
                FetchError::Local(why) => AttemptError::Gateway(why),
            })?;
            outputs.push(fetched.bytes);
            pixels = pixels.saturating_add(u64::try_from(seg.pixels).unwrap_or(0));
        }
        // The pixels are what the gateway is debited for, and only the orchestrator counts
        // them: a count beyond what the renditions can hold (the fee estimate's frame rate
        // and whole seconds, twice over for sources above its 60 fps) is no honest count.
        let most = job.estimated_pixels.saturating_mul(MAX_PIXELS_OVER_ESTIMATE);
        if pixels > most {
            return Err(AttemptError::Unusable(format!(
                "the renditions reported {pixels} pixels, over {most} ({MAX_PIXELS_OVER_ESTIMATE} × the {} the profiles can hold)",
                job.estimated_pixels
            )));
        }
        if info.ticket_params.is_some() && self.payments.local().is_some() {
            verify_sig(info, &outputs, &data.sig)?;
        }
        Ok(Done { outputs, pixels, paid: Cost::default() })
    }
}

/// What an orchestrator's answer to a segment says of its charge, when the attempt failed.
#[derive(Debug, Clone, Copy)]
pub(super) enum Answer {
    /// Nothing was sent (no connection could be made, or the request could not be built), so
    /// its tickets reached nobody.
    NotSent,
    /// No answer, or one refusing the request: it may have processed the payment.
    Unknown,
    /// It answered 200 and reported an error, or an answer the gateway cannot read: no
    /// debit.
    Undebited,
    /// It sent its renditions, and debited these pixels (at most what they can hold).
    Debited(u64),
}

/// How a failed attempt's payment is booked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Booking {
    /// The orchestrator debited these pixels.
    Debit(u64),
    /// As this settlement says.
    Settle(Settlement),
}

/// How a failed attempt is booked after `answer`: an orchestrator that answered 200 with an
/// error did not debit, one that sent its renditions did (whatever became of them here); a
/// request that no connection carried (the gateway's own shortage, or a dial that failed)
/// reached nobody; anything else may have spent the credit.
///
/// A busy status (503) is booked as refused, as AI calls book it: a go-livepeer orchestrator
/// processes the payment before anything it could be busy with and never answers `/segment`
/// so, which leaves whatever stands before it (a proxy, a load balancer) that saw no ticket.
fn booking(answer: Answer, e: &AttemptError) -> Booking {
    let busy = matches!(e, AttemptError::Status { status, message }
        if Failure::from_answer(*status, message) == Failure::Busy);
    match answer {
        Answer::Debited(pixels) => Booking::Debit(pixels),
        Answer::Undebited => Booking::Settle(Settlement::NotCharged),
        Answer::NotSent => Booking::Settle(Settlement::Refused),
        Answer::Unknown if busy => Booking::Settle(Settlement::Refused),
        Answer::Unknown => Booking::Settle(Settlement::CreditSpent),
    }
}

/// The fee of `pixels` at the price `prepared` was paid at.
fn debit_of(prepared: &Prepared, pixels: u64) -> livepeer_pm::Ratio {
    let price = prepared.info().price.to_ratio().ok();
    price.and_then(|p| p.checked_mul_u64(pixels).ok()).unwrap_or_default()
}

/// How many times the fee estimate's pixels a segment's renditions may report.
const MAX_PIXELS_OVER_ESTIMATE: u64 = 2;

/// `TranscodeData.sig` must be the orchestrator's `eth_sign(concat keccak256(rendition_i))`.
fn verify_sig(info: &OrchInfo, outputs: &[Bytes], sig: &[u8]) -> Result<(), AttemptError> {
    let expected = info.address.or_else(|| info.ticket_params.as_ref().map(|t| t.recipient));
    let Some(expected) = expected else { return Ok(()) };
    let mut hashes = Vec::with_capacity(outputs.len() * 32);
    for out in outputs {
        hashes.extend_from_slice(keccak256(out).as_slice());
    }
    match recover_eth_signer(&hashes, sig) {
        Ok(addr) if addr == expected => Ok(()),
        Ok(addr) => Err(AttemptError::Unusable(format!(
            "renditions signed by {addr}, not the orchestrator {expected}"
        ))),
        Err(e) => Err(AttemptError::Unusable(format!("renditions' signature: {e}"))),
    }
}

fn pay_error(e: &PayError) -> AttemptError {
    match e {
        PayError::Discovery(c @ crate::orchestrator::ClientError::Local(_)) => {
            AttemptError::Local(format!("fetching ticket params: {c}"))
        }
        PayError::Discovery(c) => AttemptError::Transport(format!("fetching ticket params: {c}")),
        other => AttemptError::Pay(other.to_string()),
    }
}

/// The `Livepeer-Segment` of `job` with `info`'s auth token, signed by `key` when it paid.
fn segment_header(job: &Job, info: &OrchInfo, key: Option<&livepeer_pm::LocalSigner>) -> String {
    let names: Vec<&str> = job.profiles.iter().map(|p| p.name.as_str()).collect();
    let sig = key
        .and_then(|k| k.eth_sign(&flatten_segment(&job.manifest, job.seq, &job.hash, &names)).ok())
        .map(|s| s.0.to_vec())
        .unwrap_or_default();
    let caps = Capabilities { bitstring: vec![job.capabilities()], ..Capabilities::default() };
    let wire: Vec<net::VideoProfile> = job.profiles.iter().map(|p| p.to_wire(job.format)).collect();
    let list = profile_list(&job.profiles, job.format);
    let mut seg = net::SegData {
        manifest_id: job.manifest.as_bytes().to_vec(),
        // Exact: `submit` takes no sequence number above `request::MAX_SEQ` (`i64::MAX`), so
        // the orchestrator checks the signature over the number that was signed.
        seq: i64::try_from(job.seq).unwrap_or(i64::MAX),
        hash: job.hash.to_vec(),
        // go-livepeer's literal, which breaks orchestrators too old to read full profiles.
        profiles: b"invalid".to_vec(),
        sig,
        duration: i32::try_from(job.duration_ms).unwrap_or(i32::MAX),
        capabilities: Some((&caps).into()),
        auth_token: info.auth_token.as_ref().map(|t| net::AuthToken {
            token: t.token.clone(),
            session_id: t.session_id.clone(),
            expiration: t.expiration,
        }),
        ..net::SegData::default()
    };
    match list {
        ProfileList::Full => seg.full_profiles = wire,
        ProfileList::Full2 => seg.full_profiles2 = wire,
        ProfileList::Full3 => seg.full_profiles3 = wire,
    }
    STANDARD.encode(seg.encode_to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Renditions the gateway could not fetch or use were still debited by the orchestrator
    /// (go-livepeer's gateway books the reported pixels on receipt): booking them as not
    /// charged would let the gateway think it holds credit the orchestrator has taken.
    #[test]
    fn failed_attempts_are_booked_as_the_orchestrators_answer_says() {
        use Settlement::{CreditSpent, NotCharged, Refused};
        let rows = [
            (AttemptError::Gateway("store full".into()), Answer::Debited(7), Booking::Debit(7)),
            (AttemptError::Unusable("rendition 404".into()), Answer::Debited(9), Booking::Debit(9)),
            (
                AttemptError::Orchestrator("ffmpeg".into()),
                Answer::Undebited,
                Booking::Settle(NotCharged),
            ),
            (AttemptError::Local("emfile".into()), Answer::NotSent, Booking::Settle(Refused)),
            (AttemptError::Transport("refused".into()), Answer::NotSent, Booking::Settle(Refused)),
            (
                AttemptError::Transport("reset".into()),
                Answer::Unknown,
                Booking::Settle(CreditSpent),
            ),
            (AttemptError::Timeout("slow".into()), Answer::Unknown, Booking::Settle(CreditSpent)),
            // A 503 saw no ticket; a short balance did (go-livepeer checks it after them).
            (
                AttemptError::Status { status: 503, message: "Service Unavailable".into() },
                Answer::Unknown,
                Booking::Settle(Refused),
            ),
            (
                AttemptError::Status { status: 400, message: "Insufficient balance".into() },
                Answer::Unknown,
                Booking::Settle(CreditSpent),
            ),
        ];
        for (e, answer, want) in rows {
            assert_eq!(booking(answer, &e), want, "{e}");
        }
    }
    use crate::orchestrator::price::Price;

    #[test]
    fn an_orchestrators_error_text_is_cut() {
        assert_eq!(cut("  short  "), "short");
        let long = "é".repeat(1_000_000);
        assert_eq!(cut(&long).chars().count(), 300);
        // Its own log lines: the newline and carriage return are spaces now.
        assert_eq!(cut("bad\r\nlevel=INFO fake\tline"), "bad  level=INFO fake line");
    }

    fn info(address: livepeer_pm::Address) -> OrchInfo {
        OrchInfo {
            transcoder: "http://o.example".into(),
            address: Some(address),
            price: Price::ZERO,
            capability_prices: Vec::new(),
            capabilities: None,
            ticket_params: None,
            auth_token: None,
            rtt: Duration::ZERO,
        }
    }

    #[test]
    fn renditions_must_be_signed_by_the_orchestrator() {
        let key = livepeer_pm::LocalSigner::from_bytes(&[9; 32]).unwrap();
        let outputs = vec![Bytes::from_static(b"one"), Bytes::from_static(b"two")];
        let mut concat = Vec::new();
        for o in &outputs {
            concat.extend_from_slice(keccak256(o).as_slice());
        }
        let sig = key.eth_sign(&concat).unwrap().0.to_vec();
        assert!(verify_sig(&info(key.address()), &outputs, &sig).is_ok());
        let other = livepeer_pm::LocalSigner::from_bytes(&[8; 32]).unwrap();
        assert!(verify_sig(&info(other.address()), &outputs, &sig).is_err());
        let swapped = vec![outputs[1].clone(), outputs[0].clone()];
        assert!(verify_sig(&info(key.address()), &swapped, &sig).is_err());
        assert!(verify_sig(&info(key.address()), &outputs, &[]).is_err());
    }

    fn job(profiles: Vec<Profile>, format: Format, slicing: bool) -> Job {
        Job {
            manifest: "m".into(),
            seq: 3,
            data: Bytes::from_static(b"x"),
            hash: keccak256(b"x"),
            duration_ms: 2000,
            profiles: Arc::new(profiles),
            format,
            slicing,
            input: InputVideo::H264,
            estimated_pixels: 1,
            upload_timeout: Duration::from_secs(2),
            total_timeout: Duration::from_secs(8),
        }
    }

    fn sent(job: &Job) -> net::SegData {
        let key = livepeer_pm::LocalSigner::from_bytes(&[9; 32]).unwrap();
        let header = segment_header(job, &info(key.address()), None);
        net::SegData::decode(STANDARD.decode(header).unwrap().as_slice()).unwrap()
    }

    /// go-livepeer (core/streamdata.go `NetSegData`) sends plain MPEG-TS profiles in
    /// `fullProfiles`, plain MP4 ones in `fullProfiles2` and the rest in `fullProfiles3`; its
    /// presets carry no frame-rate denominator or colour depth.
    #[test]
    fn profiles_go_in_the_list_go_livepeer_picks() {
        use super::super::profiles::preset;
        let plain = vec![preset("P240p30fps16x9").unwrap(), preset("P360p30fps16x9").unwrap()];
        let seg = sent(&job(plain.clone(), Format::MpegTs, true));
        assert_eq!(seg.profiles, b"invalid");
        assert!(seg.full_profiles2.is_empty() && seg.full_profiles3.is_empty());
        let names: Vec<_> = seg.full_profiles.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["P240p30fps16x9", "P360p30fps16x9"]);
        let p = &seg.full_profiles[0];
        assert_eq!((p.width, p.height, p.bitrate, p.fps), (426, 240, 600_000, 30));
        assert_eq!((p.fps_den, p.color_depth, p.format), (0, 0, 0));
        let seg = sent(&job(plain.clone(), Format::Mp4, true));
        assert!(seg.full_profiles.is_empty() && seg.full_profiles3.is_empty());
        assert_eq!(seg.full_profiles2.len(), 2);
        assert_eq!(seg.full_profiles2[1].format, 1);
        let mut gop = plain;
        gop[1].gop_ms = 2000;
        let seg = sent(&job(gop, Format::MpegTs, true));
        assert!(seg.full_profiles.is_empty() && seg.full_profiles2.is_empty());
        assert_eq!(seg.full_profiles3.len(), 2);
    }

    /// go-livepeer's `JobCapabilities` asks for what the segment needs, not for its whole
    /// default set: an orchestrator lacking, say, MPEG-7 signatures still takes the segment.
    #[test]
    fn segments_ask_for_the_capabilities_go_livepeer_asks_for() {
        use super::super::profiles::{Encoder, H264Profile, preset};
        let bits = |seg: &net::SegData| {
            let caps = seg.capabilities.as_ref().unwrap();
            (0..64u32).filter(|b| caps.bitstring[0] & (1 << b) != 0).collect::<Vec<_>>()
        };
        let plain = vec![preset("P240p30fps16x9").unwrap()];
        assert_eq!(bits(&sent(&job(plain.clone(), Format::MpegTs, true))), [0, 1, 12, 26]);
        assert_eq!(bits(&sent(&job(plain.clone(), Format::MpegTs, false))), [0, 1, 12]);
        let mut p = plain[0].clone();
        (p.fps_den, p.profile, p.gop_ms, p.encoder) = (1, H264Profile::Main, -1, Encoder::Hevc);
        assert_eq!(
            bits(&sent(&job(vec![p.clone()], Format::Mp4, false))),
            [0, 2, 3, 8, 11, 12, 16]
        );
        // The input's decoder, not always H.264's: HEVC decode (15) for HEVC input, and the
        // pixel format's H.264 decoder (4:2:2 10-bit: 24) beside H.264.
        let mut hevc = job(plain.clone(), Format::MpegTs, true);
        hevc.input = InputVideo::Hevc;
        assert_eq!(bits(&sent(&hevc)), [0, 1, 12, 15, 26], "H.264 is the encoder's");
        hevc.profiles = Arc::new(vec![p]);
        assert_eq!(bits(&sent(&hevc)), [1, 3, 8, 11, 12, 15, 16, 26]);
        let mut deep = job(plain, Format::MpegTs, false);
        deep.input = InputVideo::H264Yuv422P10;
        assert_eq!(bits(&sent(&deep)), [0, 1, 12, 24]);
    }

    #[test]
    fn errors_classify_as_go_livepeer_retries_them() {
        // lpms's own errors and the transcoder's, by their exact texts, are final.
        for text in
            ["Unsupported input codec", "No keyframes in input", "TranscoderUnrecognizedFormat"]
        {
            assert!(!AttemptError::Orchestrator(text.into()).retryable(), "{text}");
        }
        // go-livepeer compares whole texts: one that only contains a final error is retried.
        assert!(
            AttemptError::Orchestrator("Could not transcode: Invalid argument".into()).retryable()
        );
        assert!(AttemptError::Orchestrator("TranscoderInvalidFormat".into()).retryable());
        assert!(AttemptError::Orchestrator("OrchestratorBusy".into()).retryable());
        assert_eq!(
            AttemptError::Orchestrator("OrchestratorCapped".into()).code(),
            "OrchestratorCapped"
        );
        let input = AttemptError::Orchestrator("Invalid argument".into());
        assert!(!input.retryable() && !input.penalise());
        assert_eq!(input.code(), "NonRetryable");
        assert!(AttemptError::Transport("unexpected EOF".into()).penalise());
        assert!(!AttemptError::Pay("refused".into()).penalise());
        // Busy, capped and stale payment terms are retried elsewhere, unpenalised.
        for text in ["OrchestratorBusy", "OrchestratorCapped"] {
            let e = AttemptError::Orchestrator(text.into());
            assert!(e.retryable() && !e.penalise(), "{text}");
        }
        let status =
            |status, message: &str| AttemptError::Status { status, message: message.into() };
        for (code, text) in [
            (400, "TicketParams expired"),
            (400, "Insufficient balance"),
            (400, "invalid ticket senderNonce"),
            (503, "OrchestratorBusy"),
        ] {
            let e = status(code, text);
            assert!(e.retryable() && !e.penalise(), "{code} {text}");
        }
        assert!(status(400, "invalid ticket signature").penalise());
        assert!(status(500, "transcoder crashed").penalise());
    }
}
