//! One attempt at an AI job on one orchestrator: `POST {transcoder}/{pipeline}` with the
//! payment and segment headers (PROTOCOL.md §7.1), then the answer read, classified and, for
//! media results, fetched into the gateway's result store (under the rules of `fetch`: only
//! from the orchestrator itself or allowed hosts, never scriptable, within byte caps) after the
//! number of outputs is checked against what was asked.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::orchestrator::http::OrchBody;
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderName, HeaderValue};
use http_body_util::Full;
use livepeer_pm::LocalSigner;
use livepeer_proto::headers;

use super::AiConfig;
use super::fetch::{FetchError, Fetcher};
use super::results::ResultStore;
use super::validate::{Payload, Pipeline, ValidRequest};
use crate::orchestrator::caps::Capabilities;
use crate::orchestrator::creds::{OFFCHAIN_PAYMENT, ai_manifest_id, segment_header};
use crate::orchestrator::dispatched::Dispatched;
use crate::orchestrator::http::{HttpError, OrchHttp, OrchHttpVersion, read_body};
use crate::orchestrator::info::OrchInfo;
use crate::orchestrator::verdict::Failure;
use crate::payment::Settlement;

// `headers::SEGMENT` and `PAYMENT` as header names made once: a `&str` name is parsed and
// checked again for every request (about 2% of an LLM request's instructions, callgrind).
const SEGMENT: HeaderName = HeaderName::from_static("livepeer-segment");
const PAYMENT: HeaderName = HeaderName::from_static("livepeer-payment");

/// What the client is told about any result it cannot have because of the orchestrator:
/// where the URL pointed, what answered there and how large it was stay in the logs.
pub const UNUSABLE_RESULT: &str = "orchestrator returned an unusable result";

/// Why an attempt failed. Nothing has been sent to the client when one of these is returned,
/// so a retry on another orchestrator is always safe.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The connection broke before a complete answer.
    #[error("connection failed: {0}")]
    Connect(String),
    /// Nothing was sent: no connection could be made to the orchestrator's address, or the
    /// request could not be built from what it (or the remote signer) gave. A transport
    /// failure, as [`Self::Connect`], but its payment's credit returns.
    #[error("connection failed: {0}")]
    Unreachable(String),
    /// The connection broke while the body of a 2xx answer was read: the orchestrator did
    /// the job (and debited its fee) before it answered.
    #[error("connection failed: {0}")]
    BrokenAnswer(String),
    /// The orchestrator reset the request's HTTP/2 stream before answering, over a
    /// connection that still works: this job failed there, not the orchestrator's address.
    #[error("the orchestrator reset the request: {0}")]
    Reset(String),
    /// The stream of a 2xx answer was reset while its body was read (the job was done and
    /// its fee debited, as for [`Self::BrokenAnswer`]), the connection still working.
    #[error("the orchestrator reset its answer: {0}")]
    ResetAnswer(String),
    /// The orchestrator refused the request's HTTP/2 stream (`REFUSED_STREAM`) each time it
    /// was sent: it processed none of it, payment included (RFC 9113 §8.7). A refusal of
    /// load, as a 503: another orchestrator, no penalty, the credit returned.
    #[error("the orchestrator refused the request: {0}")]
    Refused(String),
    /// No complete answer within the attempt deadline.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The orchestrator answered an error status.
    #[error("orchestrator answered {status}: {message}")]
    Status {
        /// HTTP status.
        status: u16,
        /// Its message (text body, trimmed, on one line, cut to 300 characters).
        message: String,
    },
    /// The 2xx answer was not the JSON the pipeline returns.
    #[error("malformed answer: {0}")]
    Malformed(String),
    /// The answer's results cannot be used: a result URL pointing elsewhere than the
    /// orchestrator, a refused type, too large or too many results, a failed download.
    #[error("unusable result: {0}")]
    Download(String),
    /// Downloads in progress hold the whole result store: the gateway's limit, not the
    /// orchestrator's fault.
    #[error("{0}")]
    StoreFull(String),
    /// The gateway ran out of descriptors or memory to connect: nothing was sent.
    #[error("{0}")]
    Local(String),
    /// The orchestrator delivered, but the gateway ran out of descriptors or memory to fetch
    /// the result: as [`Self::StoreFull`], its own fault, told as such.
    #[error("{0}")]
    ResultLost(String),
}

impl From<FetchError> for CallError {
    fn from(e: FetchError) -> Self {
        match e {
            FetchError::Unusable(why) => Self::Download(why),
            FetchError::StoreFull(full) => Self::StoreFull(full.to_string()),
            FetchError::Local(why) => Self::ResultLost(why),
        }
    }
}

impl CallError {
    /// What a failed send was: the gateway's own exhaustion, or a connection failure.
    fn from_send(e: HttpError) -> Self {
        match e {
            HttpError::Local(_) => Self::Local(e.to_string()),
            HttpError::Reset(why) => Self::Reset(why),
            HttpError::Refused(why) => Self::Refused(why),
            HttpError::Unreachable(why) => Self::Unreachable(why),
            other => Self::Connect(other.to_string()),
        }
    }

    /// What the orchestrator did, for [`Failure::verdict`] to decide what happens next: an
    /// error answer is classified from its status and text (PROTOCOL.md §7.4), a broken
    /// connection is a transport failure, an answer the gateway cannot use (not the JSON of
    /// the pipeline, a result file that cannot be fetched) is the orchestrator's fault, and a
    /// result the gateway's full store cannot keep is the gateway's.
    pub fn failure(&self) -> Failure {
        match self {
            Self::Connect(_) | Self::Unreachable(_) | Self::BrokenAnswer(_) => Failure::Transport,
            // Like a 5xx or an answer that stops short: the job's, where HTTP/1.1 could only
            // tell a connection that broke.
            Self::Reset(_) => Failure::Server,
            Self::ResetAnswer(_) => Failure::ClosedMidStream,
            // Never processed: as a capacity refusal, which settles as never received.
            Self::Refused(_) => Failure::Busy,
            Self::Timeout(_) => Failure::Timeout,
            Self::Status { status, message } => Failure::from_answer(*status, message),
            Self::Malformed(_) | Self::Download(_) => Failure::Server,
            Self::StoreFull(_) | Self::ResultLost(_) => Failure::ResultNotKept,
            Self::Local(_) => Failure::GatewayExhausted,
        }
    }

    /// Whether the orchestrator answered 2xx before this failure: it then did the job and
    /// debited its fee (go-livepeer debits once the job succeeded, before it answers),
    /// whatever the gateway makes of the answer afterwards. (A deadline that passes while a
    /// 2xx body is read is a [`Timeout`](Self::Timeout), booked as spent: that never
    /// overstates the gateway's credit.)
    pub fn delivered(&self) -> bool {
        matches!(
            self,
            Self::BrokenAnswer(_)
                | Self::ResetAnswer(_)
                | Self::Malformed(_)
                | Self::Download(_)
                | Self::StoreFull(_)
                | Self::ResultLost(_)
        )
    }

    /// Whether the call's tickets surely went untaken: never sent (a failed dial, the
    /// gateway's own shortage), a stream the orchestrator refused unprocessed, or a 503, which
    /// go-livepeer's orchestrator answers from its capacity check, before it looks at the
    /// payment. Other refusals of load (a 500 naming insufficient capacity, from the worker's
    /// call, after the payment was taken) may have taken them.
    pub fn tickets_untaken(&self) -> bool {
        match self {
            Self::Unreachable(_) | Self::Local(_) | Self::Refused(_) => true,
            // A 503 that speaks of the payment (stale ticket params) is booked as spent.
            Self::Status { status: 503, .. } => self.failure() == Failure::Busy,
            _ => false,
        }
    }

    /// What became of the attempt's payment: the fee was charged when the orchestrator
    /// delivered, so the gateway's books must say so too. Settling such an attempt as refused
    /// would make the gateway believe it holds credit the orchestrator has debited (and
    /// underpay, until the orchestrator answers `Insufficient balance`); settling it as spent
    /// would throw away the credit left over.
    pub fn settlement(&self) -> Settlement {
        match self {
            // Its tickets went nowhere: booked as spent, their credit would be paid again.
            Self::Unreachable(_) => Settlement::Refused,
            _ if self.delivered() => Settlement::Paid,
            _ => Settlement::after(self.failure()),
        }
    }

    /// What the client may be told: result problems only as [`UNUSABLE_RESULT`].
    pub fn shown(&self) -> String {
        match self {
            Self::Download(_) => UNUSABLE_RESULT.to_owned(),
            other => other.to_string(),
        }
    }

    /// A short stable code for metrics labels.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Connect(_) | Self::Unreachable(_) | Self::BrokenAnswer(_) => "connect",
            Self::Reset(_) | Self::ResetAnswer(_) => "reset",
            Self::Refused(_) => "refused_stream",
            Self::Timeout(_) => "timeout",
            Self::Status { status, .. } => match self.failure() {
                Failure::ClientInput => "client_input",
                Failure::Busy | Failure::PaymentStale => "busy",
                _ if *status >= 500 => "status_5xx",
                _ => "status_4xx",
            },
            Self::Malformed(_) => "malformed",
            Self::Download(_) => "download",
            Self::StoreFull(_) => "results_full",
            Self::Local(_) | Self::ResultLost(_) => "gateway_exhausted",
        }
    }
}

/// A successful answer.
#[derive(Debug)]
pub enum Answer {
    /// A complete JSON answer with media, its URLs rewritten to the gateway's.
    Body(Bytes),
    /// A complete text answer (LLM, audio-to-text, image-to-text, SAM2), passed through byte
    /// for byte, and the tokens its `usage` reports.
    Text {
        /// The answer as the orchestrator sent it.
        body: Bytes,
        /// The tokens its `usage` reports (`usage::read_answer`).
        tokens: Option<u64>,
    },
    /// LLM server-sent events, to be passed through as they arrive.
    Stream(http::Response<OrchBody>),
}

/// Where rewritten result URLs point.
#[derive(Debug, Clone)]
pub enum ResultUrls {
    /// `{base}/results/{key}`, e.g. `http://127.0.0.1:9935`.
    Gateway(String),
    /// Inline `data:` URLs.
    Data,
}

/// Where an attempt's media results go, and the settings that bound them.
#[derive(Debug, Clone, Copy)]
pub struct ResultSink<'a> {
    /// The gateway's result store (also the budget of downloads in progress).
    pub store: &'a ResultStore,
    /// How result URLs are handed back.
    pub urls: &'a ResultUrls,
    /// Caps and allowed hosts.
    pub config: &'a AiConfig,
    /// Where downloads of results are counted, and for which job (go-livepeer's
    /// `ai_result_downloaded_total`); `None` counts nothing.
    pub counted: Option<(&'a crate::metrics::Metrics, &'a crate::job::JobKey)>,
}

/// Shared HTTP clients and identity for AI calls.
#[derive(Debug, Clone)]
pub struct AiClient {
    /// One client per serving thread ([`crate::lane`]), so a call goes over a connection of
    /// the thread that serves the request.
    http: crate::lane::Lanes<OrchHttp>,
    signer: Option<Arc<LocalSigner>>,
    pub(super) fetcher: Fetcher,
    /// `Livepeer-Segment` values by (orchestrator, auth session, expiry, capability, model):
    /// they only change with the auth token, and building one (capabilities, protobuf,
    /// base64, maybe a signature) is most of the gateway's own work per request.
    segments: Arc<std::sync::Mutex<HashMap<SegmentKey, Target, foldhash::fast::RandomState>>>,
}

/// What every call to one orchestrator for one pipeline and model reuses: its
/// `Livepeer-Segment` value and the route's URI, made on the first call (formatting and
/// parsing the URI on every call showed in profiles).
#[derive(Debug, Clone)]
struct Target {
    segment: HeaderValue,
    uri: http::Uri,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct SegmentKey {
    transcoder: String,
    session: String,
    expiration: i64,
    capability: u32,
    model: String,
}

/// Cached segment headers kept at most; the cache is cleared when full (tokens rotate anyway).
const SEGMENT_CACHE_MAX: usize = 4096;

impl AiClient {
    /// Clients that accept orchestrators' self-signed certificates, as go-livepeer does.
    ///
    /// `version` says which HTTP versions are spoken ([`OrchHttpVersion`]). HTTP/2, where the
    /// orchestrator speaks it, multiplexes concurrent jobs over one connection per
    /// orchestrator, and measured about 10% more requests per second in the load test than
    /// HTTP/1.1. `lanes` is how many serving threads keep connections of their own
    /// ([`crate::lane`]; the public listener's threads plus one).
    pub fn new(
        signer: Option<Arc<LocalSigner>>,
        connect_timeout: Duration,
        fetch_timeout: Duration,
        version: OrchHttpVersion,
        lanes: usize,
    ) -> Result<Self, String> {
        let http = crate::lane::Lanes::new(lanes, || OrchHttp::new(connect_timeout, version))?;
        let fetcher = Fetcher::new(connect_timeout, fetch_timeout)?.per_lane(lanes);
        Ok(Self { http, signer, fetcher, segments: Arc::default() })
    }

    /// Runs one attempt. The caller bounds it with the attempt deadline.
    /// `payment` is the `Livepeer-Payment` value (`None`: the off-chain empty header) and
    /// `segment` the `Livepeer-Segment` value when a remote signer made it (`None`: build it
    /// here); `orch` must be the info whose auth token goes with that payment. `dispatched`,
    /// when given, is marked once the request is handed to a connection.
    pub async fn call(
        &self,
        orch: &OrchInfo,
        (payment, segment): (Option<&str>, Option<&str>),
        dispatched: Option<&Dispatched>,
        req: &ValidRequest,
        sink: ResultSink<'_>,
    ) -> Result<Answer, CallError> {
        let mut request = self.request(orch, (payment, segment), req, sink.config)?;
        if let Some(d) = dispatched {
            request.extensions_mut().insert(d.clone());
        }
        let resp = self.http.get().send(request).await.map_err(CallError::from_send)?;
        let status = resp.status();
        if !status.is_success() {
            let body = read_limited(resp, 64 << 10).await.unwrap_or_default();
            // The orchestrator's text goes into health records, logs and the client's error,
            // and is classified (`Failure::from_answer`) from its opening words: the rest of
            // up to 64 KiB would only weigh on them, and its newlines would forge log lines.
            let message = crate::orchestrator::text::cut(&String::from_utf8_lossy(&body));
            return Err(CallError::Status { status: status.as_u16(), message });
        }
        let is_sse = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(is_event_stream);
        if is_sse {
            // Only a request that asked for a stream (an LLM's `stream: true`) takes one, as
            // go-livepeer's gateway reads any other answer as JSON. An event stream elsewhere
            // would pass the result checks by (output count, URLs, media types, size).
            if !req.stream {
                let why = "an event stream answered a request that asked for none";
                return Err(CallError::Malformed(why.to_owned()));
            }
            return Ok(Answer::Stream(resp));
        }
        let cap = sink.config.answer_max_bytes;
        let peer = crate::orchestrator::http::answer_peer(&resp);
        if let Some(n) = hyper::body::Body::size_hint(resp.body()).exact()
            && n > cap as u64
        {
            let why = format!("answer of {n} bytes, more than the {cap} allowed");
            return Err(CallError::Download(why));
        }
        let body = read_limited(resp, cap).await.map_err(|e| match e {
            // Inline results live in the answer: too large an answer is an unusable result.
            CallError::Malformed(why) => CallError::Download(why),
            CallError::Connect(why) => CallError::BrokenAnswer(why),
            CallError::Reset(why) => CallError::ResetAnswer(why),
            other => other,
        })?;
        if !has_media(req.pipeline) {
            // Text answers go back as they came: check they are a JSON object, skip
            // re-encoding. Any other JSON is no answer of these pipelines: a go-livepeer
            // orchestrator answers `null` (200) to an LLM request its runner refused.
            let tokens = super::usage::read_answer(&body).map_err(CallError::Malformed)?;
            return Ok(Answer::Text { body, tokens });
        }
        let orch = (orch.transcoder.as_str(), peer);
        // Boxed: downloading results makes a large future that text answers need not carry.
        Box::pin(self.media_answer(orch, req, (&body, true), sink)).await
    }

    /// The HTTP request of one attempt: the job's body and the payment headers (`payment`,
    /// `segment` as [`call`](Self::call) takes them). Errors here mean nothing was sent.
    fn request(
        &self,
        orch: &OrchInfo,
        (payment, segment): (Option<&str>, Option<&str>),
        req: &ValidRequest,
        config: &AiConfig,
    ) -> Result<http::Request<Full<Bytes>>, CallError> {
        let target = self.target(orch, req.pipeline, &req.model)?;
        // A remote signer supplies the segment credentials with its payment.
        let segment = match segment {
            Some(s) => {
                HeaderValue::from_str(s).map_err(|e| CallError::Unreachable(e.to_string()))?
            }
            None => target.segment,
        };
        let payment = match payment {
            Some(p) => {
                HeaderValue::from_str(p).map_err(|e| CallError::Unreachable(e.to_string()))?
            }
            None => HeaderValue::from_static(OFFCHAIN_PAYMENT),
        };
        let (content_type, body) = match &req.payload {
            Payload::Json(map) => (
                HeaderValue::from_static("application/json"),
                // Nothing was sent: not `Malformed`, which means the orchestrator delivered.
                serde_json::to_vec(map).map_err(|e| CallError::Unreachable(e.to_string()))?,
            ),
            Payload::Multipart { fields, file } => {
                let (content_type, body) = super::multipart::encode(fields, file);
                // A hex boundary always makes a valid value; nothing was sent otherwise.
                let value = HeaderValue::try_from(content_type)
                    .map_err(|e| CallError::Unreachable(e.to_string()))?;
                (value, body)
            }
        };
        let mut request = http::Request::new(Full::new(Bytes::from(body)));
        *request.method_mut() = http::Method::POST;
        *request.uri_mut() = target.uri;
        let h = request.headers_mut();
        h.insert(SEGMENT, segment);
        h.insert(PAYMENT, payment);
        // Makes orchestrators answer download URLs rather than inline images (§7.1); left out
        // where the operator asked for images inline, which go-livepeer orchestrators send to
        // callers without it. An orchestrator that answers links all the same is downloaded
        // from as usual.
        if !inlined(req, config) {
            h.insert(AUTHORIZATION, HeaderValue::from_static(headers::AI_WORKER_PROTOCOL));
        }
        h.insert(CONTENT_TYPE, content_type);
        Ok(request)
    }

    /// The `Livepeer-Segment` value for this orchestrator's current auth token and the job,
    /// and the URI of the pipeline's route on the orchestrator.
    fn target(
        &self,
        orch: &OrchInfo,
        pipeline: Pipeline,
        model: &str,
    ) -> Result<Target, CallError> {
        let capability = pipeline.capability();
        let key = SegmentKey {
            transcoder: orch.transcoder.clone(),
            session: orch.auth_token.as_ref().map(|t| t.session_id.clone()).unwrap_or_default(),
            expiration: orch.auth_token.as_ref().map_or(0, |t| t.expiration),
            capability,
            model: model.to_owned(),
        };
        if let Some(hit) = self.segments.lock().ok().and_then(|m| m.get(&key).cloned()) {
            return Ok(hit);
        }
        let url = format!("{}/{}", orch.transcoder.trim_end_matches('/'), pipeline.name());
        // Nothing was sent: not `Malformed`, which means the orchestrator delivered.
        let bad = |e: &dyn std::fmt::Display| {
            CallError::Unreachable(format!("bad request to {url}: {e}"))
        };
        let uri = http::Uri::try_from(url.as_str()).map_err(|e| bad(&e))?;
        let caps = Capabilities::ai_job(capability, model, "", "");
        let header = segment_header(
            &ai_manifest_id(capability, model),
            &caps,
            orch.auth_token.as_ref(),
            self.signer.as_deref(),
        );
        let segment = HeaderValue::try_from(header).map_err(|e| bad(&e))?;
        let target = Target { segment, uri };
        if let Ok(mut map) = self.segments.lock() {
            if map.len() >= SEGMENT_CACHE_MAX {
                map.clear();
            }
            map.insert(key, target.clone());
        }
        Ok(target)
    }
}

/// Most bytes an inline image may take in an answer per pixel asked for: a PNG of RGBA pixels
/// that do not compress is 4 bytes a pixel and a little, 5⅓ in base64; the rest is margin.
const INLINE_BYTES_PER_PIXEL: u64 = 6;

/// Whether `--ai-inline-images` asks for this request's results inline: text-to-image and
/// image-to-image, whose output pixels are the request's units, when even images that do not
/// compress would fit in `--ai-answer-max-bytes` (a larger answer would fail a job that a
/// download serves). go-livepeer's orchestrators inline upscale's results too, but those are
/// sixteen times their input's pixels: they stay downloads.
fn inlined(req: &ValidRequest, config: &AiConfig) -> bool {
    config.inline_images
        && matches!(req.pipeline, Pipeline::TextToImage | Pipeline::ImageToImage)
        && req.units.saturating_mul(INLINE_BYTES_PER_PIXEL) <= config.answer_max_bytes as u64
}

/// Whether a `Content-Type` names server-sent events: media types are case-insensitive
/// (RFC 9110 §8.3.1), and parameters such as `charset` may follow.
fn is_event_stream(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("text/event-stream")
}

/// Whether the pipeline's answer carries media URLs to rewrite.
fn has_media(pipeline: Pipeline) -> bool {
    matches!(
        pipeline,
        Pipeline::TextToImage
            | Pipeline::ImageToImage
            | Pipeline::Upscale
            | Pipeline::ImageToVideo
            | Pipeline::TextToSpeech
    )
}

/// Reads a body up to `limit` bytes: a broken transfer is a connection failure (a reset
/// HTTP/2 stream, that stream's), too much is a malformed answer.
async fn read_limited(resp: http::Response<OrchBody>, limit: usize) -> Result<Bytes, CallError> {
    read_body(resp.into_body(), limit).await.map_err(|e| match e {
        HttpError::TooLarge(_) => CallError::Malformed(e.to_string()),
        // `read_body` never answers `Refused` (a refusal is known before the answer's head).
        HttpError::Reset(why) | HttpError::Refused(why) => CallError::Reset(why),
        HttpError::BadUrl(_)
        | HttpError::Transport(_)
        | HttpError::Local(_)
        | HttpError::Unreachable(_) => CallError::Connect(e.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_streams_are_known_whatever_the_case_of_their_type() {
        for yes in ["text/event-stream", "Text/Event-Stream; charset=utf-8", " TEXT/EVENT-STREAM "]
        {
            assert!(is_event_stream(yes), "{yes}");
        }
        for no in ["application/json", "text/event-streams", "text/plain; x=text/event-stream"] {
            assert!(!is_event_stream(no), "{no}");
        }
    }

    #[test]
    fn images_are_asked_inline_only_where_they_surely_fit_the_answer() {
        let flags = crate::config::Flags::default();
        let mut config = crate::config::Config::load(flags).unwrap().ai;
        config.answer_max_bytes = 6 * 1024 * 1024;
        let req = |pipeline, units| ValidRequest {
            pipeline,
            model: "m".into(),
            payload: Payload::Json(Default::default()),
            units,
            stream: false,
        };
        assert!(inlined(&req(Pipeline::TextToImage, 1024 * 1024), &config));
        assert!(inlined(&req(Pipeline::ImageToImage, 1024 * 1024), &config));
        assert!(!inlined(&req(Pipeline::TextToImage, 1024 * 1024 + 1), &config), "may not fit");
        for other in [Pipeline::Upscale, Pipeline::ImageToVideo, Pipeline::TextToSpeech] {
            assert!(!inlined(&req(other, 1), &config), "{other:?}");
        }
        config.inline_images = false;
        assert!(!inlined(&req(Pipeline::TextToImage, 1), &config), "turned off");
    }

    #[test]
    fn failures_follow_go_livepeer_retry_rules() {
        let s = |status, m: &str| CallError::Status { status, message: m.into() };
        let rows = [
            (s(500, "text-to-image container returned 400: bad prompt"), Failure::ClientInput),
            (s(400, "Unable to calculate duration"), Failure::ClientInput),
            (s(503, "insufficient capacity"), Failure::Busy),
            (s(400, "TicketParams expired"), Failure::PaymentStale),
            (s(500, "boom"), Failure::Server),
            (s(403, "invalid auth token"), Failure::PaymentInvalid),
            (s(404, "404 page not found"), Failure::Refused),
            (CallError::Timeout(Duration::from_secs(1)), Failure::Timeout),
            (CallError::Connect("reset".into()), Failure::Transport),
            (CallError::Unreachable("refused".into()), Failure::Transport),
            (CallError::BrokenAnswer("reset".into()), Failure::Transport),
            (CallError::Reset("rst".into()), Failure::Server),
            (CallError::ResetAnswer("rst".into()), Failure::ClosedMidStream),
            (CallError::Refused("refused".into()), Failure::Busy),
            (CallError::Malformed("not JSON".into()), Failure::Server),
            (CallError::Download("gone".into()), Failure::Server),
            (CallError::StoreFull("full".into()), Failure::ResultNotKept),
            (CallError::ResultLost("emfile".into()), Failure::ResultNotKept),
            (CallError::Local("emfile".into()), Failure::GatewayExhausted),
        ];
        for (error, want) in rows {
            assert_eq!(error.failure(), want, "{error}");
        }
    }

    /// Once the orchestrator answered 2xx it has debited its fee, whatever the gateway makes
    /// of the answer; before that, the verdict's failure decides.
    #[test]
    fn attempts_the_orchestrator_delivered_settle_as_paid() {
        use Settlement::{CreditSpent, NotCharged, Paid, Refused};
        let s = |status, m: &str| CallError::Status { status, message: m.into() };
        let rows = [
            (CallError::StoreFull("full".into()), true, Paid),
            (CallError::ResultLost("emfile".into()), true, Paid),
            (CallError::Local("emfile".into()), false, Refused),
            (CallError::Download("elsewhere".into()), true, Paid),
            (CallError::Malformed("not JSON".into()), true, Paid),
            (CallError::BrokenAnswer("reset".into()), true, Paid),
            (CallError::ResetAnswer("rst".into()), true, Paid),
            (CallError::Reset("rst".into()), false, CreditSpent),
            (CallError::Refused("refused".into()), false, Refused),
            (CallError::Connect("reset".into()), false, CreditSpent),
            (CallError::Unreachable("refused".into()), false, Refused),
            (CallError::Timeout(Duration::from_secs(1)), false, CreditSpent),
            (s(503, "insufficient capacity"), false, Refused),
            (s(500, "x returned 400: y"), false, NotCharged),
            (s(500, "boom"), false, CreditSpent),
            (s(400, "Insufficient balance"), false, CreditSpent),
        ];
        for (error, delivered, settled) in rows {
            assert_eq!(error.delivered(), delivered, "{error}");
            assert_eq!(error.settlement(), settled, "{error}");
        }
        assert_eq!(CallError::StoreFull("full".into()).code(), "results_full");
    }

    /// Tickets count as sent unless they surely went untaken: a refusal of load that came
    /// after the payment (a 500 naming insufficient capacity) may have taken them.
    #[test]
    fn only_tickets_surely_untaken_are_not_counted_as_sent() {
        let s = |status, m: &str| CallError::Status { status, message: m.into() };
        let rows = [
            (CallError::Unreachable("refused".into()), true),
            (CallError::Local("emfile".into()), true),
            (CallError::Refused("refused".into()), true),
            (s(503, "insufficient capacity"), true),
            (s(503, "ticket params expired"), false),
            (s(500, "insufficient capacity"), false),
            (s(400, "Insufficient balance"), false),
            (CallError::Connect("reset".into()), false),
            (CallError::Timeout(Duration::from_secs(1)), false),
            (CallError::Malformed("not JSON".into()), false),
        ];
        for (error, untaken) in rows {
            assert_eq!(error.tickets_untaken(), untaken, "{error}");
        }
    }

    #[test]
    fn metric_codes_are_unchanged() {
        let s = |status, m: &str| CallError::Status { status, message: m.into() };
        assert_eq!(s(500, "boom").code(), "status_5xx");
        assert_eq!(s(403, "invalid auth token").code(), "status_4xx");
        assert_eq!(s(404, "").code(), "status_4xx");
        assert_eq!(s(500, "x returned 400: y").code(), "client_input");
        assert_eq!(s(503, "").code(), "busy");
        assert_eq!(s(400, "TicketParams expired").code(), "busy");
        assert_eq!(CallError::Timeout(Duration::from_secs(1)).code(), "timeout");
        assert_eq!(CallError::Connect("x".into()).code(), "connect");
        assert_eq!(CallError::Unreachable("x".into()).code(), "connect");
        assert_eq!(CallError::BrokenAnswer("x".into()).code(), "connect");
    }
}
