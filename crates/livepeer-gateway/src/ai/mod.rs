//! Batch AI: the public AI API (`ai-gateway.openapi.yaml`) routed to orchestrators.
//!
//! The HTTP edge (`http::ai`) reads each request within a size limit; [`submit`] validates it
//! against the spec (422 naming every bad field), prices it in its pipeline's units, and runs it
//! by [`job::run`] with failover. Media results are kept in the gateway's own
//! [`results::ResultStore`], which the edge serves. Async image-to-video jobs (answered 202,
//! polled for their result) are kept in [`async_jobs::AsyncJobs`].

pub mod async_jobs;
pub mod call;
pub(crate) mod fetch;
pub mod job;
mod lift;
mod media;
mod multipart;
pub mod openai;
pub mod probe;
mod probe_id3;
mod probe_meta;
mod probe_mp4;
mod relay;
mod request_log;
mod resolve;
pub mod results;
pub(crate) mod score;
mod spent;
mod usage;
pub mod validate;

/// The multipart encoder, for the fuzz harness (`benches/fuzz`).
#[doc(hidden)]
pub use multipart::encode as encode_multipart;

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio_util::sync::CancellationToken;

use self::call::{AiClient, ResultUrls};
use self::job::Reply;
use self::results::ResultStore;
use self::validate::{Input, Limits, Pipeline};
use crate::error::Error;
use crate::metrics::Metrics;
use crate::orchestrator::Pool;

/// Batch AI settings.
#[derive(Debug, Clone)]
pub struct AiConfig {
    /// Most orchestrators tried per request.
    pub max_attempts: u32,
    /// Deadline of one attempt (until the complete answer, or the first byte of a stream).
    pub attempt_timeout: Duration,
    /// Deadline of the whole request, failovers included.
    pub request_timeout: Duration,
    /// How long a stream waits for a client that stopped reading before it ends, releasing
    /// the orchestrator without penalty.
    pub stream_client_timeout: Duration,
    /// Longest a streamed answer may last from its first byte.
    pub stream_max_duration: Duration,
    /// At shutdown, how long in-flight requests get before running streams are ended.
    pub shutdown_drain_timeout: Duration,
    /// Largest request body accepted (413 beyond).
    pub max_body_bytes: usize,
    /// Return results as `data:` URLs instead of the gateway's own URLs.
    pub data_urls: bool,
    /// Ask orchestrators for text-to-image and image-to-image results inline
    /// (`--ai-inline-images`).
    pub inline_images: bool,
    /// Base of result URLs, e.g. `https://gw.example.com`: `--public-url`, else (set at start
    /// by [`AiConfig::with_listen_addr`]) the public listener's address. Never the request's
    /// `Host`, which the client chooses.
    pub public_url: Option<String>,
    /// How long result files are kept.
    pub result_ttl: Duration,
    /// Most bytes of result files kept (oldest evicted first).
    pub result_store_bytes: usize,
    /// Most async image-to-video jobs running or kept at once.
    pub async_max_jobs: usize,
    /// Deadline for downloading one result file from an orchestrator.
    pub fetch_timeout: Duration,
    /// Largest result file fetched.
    pub result_max_bytes: usize,
    /// Most result bytes fetched for one request, all outputs together.
    pub job_result_max_bytes: usize,
    /// Largest JSON answer read from an orchestrator (inline `data:` results included).
    pub answer_max_bytes: usize,
    /// Hosts besides each orchestrator's own that results may come from: `host` (any port)
    /// or `host:port`, lower case.
    pub result_allowed_hosts: Vec<String>,
    /// The HTTP versions spoken to orchestrators.
    pub orch_http: crate::orchestrator::http::OrchHttpVersion,
}

impl AiConfig {
    /// Where result URLs point: `data:` URLs, or the configured public URL (which defaults to
    /// the listener's address). Never the request's `Host`: the client chooses it, and a URL
    /// built from it would send whoever follows the link wherever that client wanted.
    pub fn result_urls(&self) -> ResultUrls {
        if self.data_urls {
            return ResultUrls::Data;
        }
        let base = self.public_url.as_deref().unwrap_or("http://127.0.0.1:9935");
        ResultUrls::Gateway(base.trim_end_matches('/').to_owned())
    }

    /// The settings with the result URLs' base defaulted to the public listener's address,
    /// `listen` (loopback when it listens on every interface: set `--public-url` then).
    pub fn with_listen_addr(mut self, listen: std::net::SocketAddr) -> Self {
        if self.public_url.is_none() {
            let mut addr = listen;
            if addr.ip().is_unspecified() {
                tracing::warn!(%listen, "result URLs point at loopback: set --public-url");
                addr.set_ip(match addr.ip() {
                    std::net::IpAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                    std::net::IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
                });
            }
            self.public_url = Some(format!("http://{addr}"));
        }
        self
    }
}

/// State of the AI routes.
#[derive(Debug, Clone)]
pub struct AiState {
    /// Orchestrators.
    pub pool: Pool,
    /// Orchestrator calls.
    pub client: AiClient,
    /// Result files.
    pub store: Arc<ResultStore>,
    /// Validation limits.
    pub limits: Arc<Limits>,
    /// Settings.
    pub config: Arc<AiConfig>,
    /// Metrics.
    pub metrics: Metrics,
    /// How orchestrators are paid: local key, remote signer or off-chain.
    pub payments: crate::payment::Payments,
    /// Fires when shutdown's drain time is over: running streams then end with an error event.
    pub drained: CancellationToken,
    /// Async image-to-video jobs.
    pub jobs: Arc<async_jobs::AsyncJobs>,
    /// Where async jobs run: tracked, so that shutdown waits for them; they end as shutdown
    /// starts (see `http::ai_async`).
    pub tasks: crate::task::Tasks,
}

/// Validates a request's input and runs it: `Err` when validation fails (nothing was tried).
pub async fn submit(
    ai: &AiState,
    pipeline: Pipeline,
    input: Input,
    urls: ResultUrls,
) -> Result<Reply, Error> {
    submit_checked(ai, pipeline, input, urls, async |_| Ok(()), None).await
}

/// [`submit`], with `check` run on the validated request before anything is tried (the
/// customer key's model check): its `Err` is the answer. `tab`: the customer key's tab, which
/// the job prices and reserves against the key's budget before paying any orchestrator.
pub async fn submit_checked(
    ai: &AiState,
    pipeline: Pipeline,
    input: Input,
    urls: ResultUrls,
    check: impl AsyncFnOnce(&validate::ValidRequest) -> Result<(), Error>,
    tab: Option<Arc<crate::keys::Tab>>,
) -> Result<Reply, Error> {
    let valid = validate_checked(ai, pipeline, input, check).await?;
    Ok(job::run(ai, valid, request_id(), urls, tab).await)
}

/// The validation of [`submit_checked`] alone: the request ready to run, or the error to
/// answer (nothing was tried). An async job is validated so, before its client is answered.
pub async fn validate_checked(
    ai: &AiState,
    pipeline: Pipeline,
    input: Input,
    check: impl AsyncFnOnce(&validate::ValidRequest) -> Result<(), Error>,
) -> Result<validate::ValidRequest, Error> {
    let valid =
        validate::validate(pipeline, input, &ai.limits).await.map_err(validate::rejection)?;
    check(&valid).await?;
    Ok(valid)
}

/// A new request id: 16 lower-case hex digits, random (AI and BYOC jobs alike).
pub(crate) fn request_id() -> String {
    let mut id = String::with_capacity(16);
    push_hex(&mut id, &rand::rng().random::<u64>().to_be_bytes());
    id
}

/// Appends `bytes` (at most 16) to `out` in lower-case hex: `{:016x}` of a `u64`'s big-endian
/// bytes, `{:032x}` of a `u128`'s. Ids are made this way for every job and result: through
/// `core::fmt` with padding, each cost about 1,000 instructions in profiles.
pub(crate) fn push_hex(out: &mut String, bytes: &[u8]) {
    let mut buf = [0u8; 32];
    let Some(text) = buf.get_mut(..bytes.len() * 2) else { return };
    if hex::encode_to_slice(bytes, text).is_ok()
        && let Ok(text) = std::str::from_utf8(text)
    {
        out.push_str(text);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_ids_are_what_fmt_writes() {
        let values = [0u128, 1, 0xdead_beef, u128::MAX, 0x0123_4567_89ab_cdef_0f1e_2d3c_4b5a_6978];
        for v in values {
            let hex = |bytes: &[u8]| {
                let mut out = String::from("x");
                super::push_hex(&mut out, bytes);
                out
            };
            assert_eq!(hex(&v.to_be_bytes()), format!("x{v:032x}"));
            let (w, n) = (v as u64, v as u32);
            assert_eq!(hex(&w.to_be_bytes()), format!("x{w:016x}"));
            assert_eq!(hex(&n.to_be_bytes()), format!("x{n:08x}"));
        }
    }
}
