//! Batch AI settings: attempts and deadlines (streams' and shutdown's included), body and
//! result-store limits, how results are handed back, and the HTTP version spoken to
//! orchestrators.

use std::time::Duration;

use url::Url;

use super::section::section;
use super::values::positive_duration;
use super::{ConfigError, bad};
use crate::ai::AiConfig;
use crate::orchestrator::http::OrchHttpVersion;

section! {
    /// Batch AI settings.
    pub struct Ai {
        /// Most orchestrators tried per AI request [default: 3].
        #[arg(long, env = "LP_AIMAXATTEMPTS")]
        pub ai_max_attempts: Option<u32>,
        /// Deadline of one AI attempt, until the answer (or a stream's first byte) [default: 60s].
        #[arg(long, env = "LP_AIATTEMPTTIMEOUT")]
        pub ai_attempt_timeout: Option<String>,
        /// Deadline of a whole AI request, failovers included [default: 120s].
        #[arg(long, env = "LP_AIREQUESTTIMEOUT")]
        pub ai_request_timeout: Option<String>,
        /// How long a streamed AI answer waits for a client that stopped reading before it
        /// ends the stream and releases the orchestrator, unpenalised [default: 60s].
        #[arg(long, env = "LP_AISTREAMCLIENTTIMEOUT")]
        pub ai_stream_client_timeout: Option<String>,
        /// Longest a streamed AI answer may last from its first byte; then it ends with a
        /// final error event, and the orchestrator is penalised for the pipeline unless the
        /// stream spent most of the time waiting for its client [default: 30m].
        #[arg(long, env = "LP_AISTREAMMAXDURATION")]
        pub ai_stream_max_duration: Option<String>,
        /// At shutdown, how long in-flight requests get to finish; running streams then end
        /// with a final error event [default: 10s].
        #[arg(long, env = "LP_SHUTDOWNDRAINTIMEOUT")]
        pub shutdown_drain_timeout: Option<String>,
        /// Largest AI request body in bytes; larger ones get 413 [default: 52428800].
        #[arg(long, env = "LP_AIMAXBODYBYTES")]
        pub ai_max_body_bytes: Option<usize>,
        /// How long AI result files are served [default: 10m].
        #[arg(long, env = "LP_AIRESULTTTL")]
        pub ai_result_ttl: Option<String>,
        /// Most bytes of AI result files kept in memory [default: 536870912].
        #[arg(long, env = "LP_AIRESULTSTOREBYTES")]
        pub ai_result_store_bytes: Option<usize>,
        /// Most async image-to-video jobs (`Prefer: respond-async`) running, or finished and
        /// kept for --ai-result-ttl, at once; more get 503 `async_jobs_full` [default: 1024].
        #[arg(long, env = "LP_AIASYNCMAXJOBS")]
        pub ai_async_max_jobs: Option<usize>,
        /// Deadline for downloading one result file from an orchestrator [default: 10s].
        #[arg(long, env = "LP_AIRESULTFETCHTIMEOUT")]
        pub ai_result_fetch_timeout: Option<String>,
        /// Largest AI result file fetched from an orchestrator, in bytes; checked against its
        /// Content-Length before reading and while it arrives [default: 104857600].
        #[arg(long, env = "LP_AIRESULTMAXBYTES")]
        pub ai_result_max_bytes: Option<usize>,
        /// Most bytes of result files one AI request may fetch, all its outputs together
        /// [default: 268435456].
        #[arg(long, env = "LP_AIJOBRESULTMAXBYTES")]
        pub ai_job_result_max_bytes: Option<usize>,
        /// Largest JSON answer read from an orchestrator, in bytes (inline data: results
        /// included) [default: 67108864].
        #[arg(long, env = "LP_AIANSWERMAXBYTES")]
        pub ai_answer_max_bytes: Option<usize>,
        /// Hosts, besides the orchestrator's own, that AI result files may be fetched from
        /// (object stores), comma-separated: `host` (any port) or `host:port`; none by default.
        #[arg(long, env = "LP_AIRESULTALLOWEDHOSTS")]
        #[serde(default, deserialize_with = "super::section::string_or_list")]
        pub ai_result_allowed_hosts: Option<String>,
        /// Return AI media results as data: URLs instead of gateway URLs.
        #[arg(long, env = "LP_AIRESULTDATAURLS", num_args = 0..=1, default_missing_value = "true")]
        pub ai_result_data_urls: Option<bool>,
        /// Ask orchestrators for text-to-image and image-to-image results inline (data: URLs
        /// in their answer) rather than as download links, when they fit in
        /// --ai-answer-max-bytes: one round trip to the orchestrator less per job. Those calls
        /// go without `Authorization: Livepeer-AI-Worker-1.0`: go-livepeer orchestrators take
        /// a caller without it for a gateway up to v0.7.9-ai.3 and send it images inline
        /// [default: true].
        #[arg(long, env = "LP_AIINLINEIMAGES", num_args = 0..=1, default_missing_value = "true")]
        pub ai_inline_images: Option<bool>,
        /// Talk HTTP/1.1 to every orchestrator, `https://` ones included (by default those
        /// pick HTTP/2 or HTTP/1.1 by ALPN, and `http://` ones get HTTP/1.1).
        #[arg(long, env = "LP_ORCHHTTP1", num_args = 0..=1, default_missing_value = "true")]
        pub orch_http1: Option<bool>,
        /// Talk HTTP/2 with prior knowledge (h2c) to `http://` orchestrators instead of
        /// HTTP/1.1; only for orchestrators known to serve h2c (an HTTP/1.1-only server fails
        /// every h2c call).
        #[arg(long, env = "LP_ORCHH2C", num_args = 0..=1, default_missing_value = "true")]
        pub orch_h2c: Option<bool>,
        /// Public base URL of this gateway, e.g. `https://gw.example.com`: the start of AI
        /// result links and of live channel URLs [default: http:// + the public listener's
        /// address for result links; the request's Host for live channel URLs].
        #[arg(long, env = "LP_PUBLICURL")]
        pub public_url: Option<String>,
    }
}

impl Ai {
    pub(super) fn validate(self) -> Result<AiConfig, ConfigError> {
        let ai = AiConfig {
            max_attempts: self.ai_max_attempts.unwrap_or(3),
            attempt_timeout: positive_duration(
                "--ai-attempt-timeout",
                self.ai_attempt_timeout,
                Duration::from_secs(60),
            )?,
            request_timeout: positive_duration(
                "--ai-request-timeout",
                self.ai_request_timeout,
                Duration::from_secs(120),
            )?,
            stream_client_timeout: positive_duration(
                "--ai-stream-client-timeout",
                self.ai_stream_client_timeout,
                Duration::from_secs(60),
            )?,
            stream_max_duration: positive_duration(
                "--ai-stream-max-duration",
                self.ai_stream_max_duration,
                Duration::from_secs(30 * 60),
            )?,
            shutdown_drain_timeout: positive_duration(
                "--shutdown-drain-timeout",
                self.shutdown_drain_timeout,
                Duration::from_secs(10),
            )?,
            max_body_bytes: self.ai_max_body_bytes.unwrap_or(50 << 20),
            data_urls: self.ai_result_data_urls.unwrap_or(false),
            inline_images: self.ai_inline_images.unwrap_or(true),
            orch_http: orch_http_version(self.orch_http1, self.orch_h2c)?,
            public_url: self.public_url.filter(|u| !u.trim().is_empty()),
            result_ttl: positive_duration(
                "--ai-result-ttl",
                self.ai_result_ttl,
                Duration::from_secs(600),
            )?,
            result_store_bytes: self.ai_result_store_bytes.unwrap_or(512 << 20),
            async_max_jobs: self.ai_async_max_jobs.unwrap_or(1024),
            result_max_bytes: self.ai_result_max_bytes.unwrap_or(100 << 20),
            job_result_max_bytes: self.ai_job_result_max_bytes.unwrap_or(256 << 20),
            answer_max_bytes: self.ai_answer_max_bytes.unwrap_or(64 << 20),
            result_allowed_hosts: allowed_hosts(self.ai_result_allowed_hosts.as_deref())?,
            fetch_timeout: positive_duration(
                "--ai-result-fetch-timeout",
                self.ai_result_fetch_timeout,
                Duration::from_secs(10),
            )?,
        };
        if ai.max_attempts == 0 {
            return Err(bad("--ai-max-attempts", "must be at least 1"));
        }
        if ai.max_body_bytes == 0 || ai.result_store_bytes == 0 {
            return Err(bad("--ai-max-body-bytes", "byte limits must be at least 1"));
        }
        for (flag, value) in [
            ("--ai-async-max-jobs", ai.async_max_jobs),
            ("--ai-result-max-bytes", ai.result_max_bytes),
            ("--ai-job-result-max-bytes", ai.job_result_max_bytes),
            ("--ai-answer-max-bytes", ai.answer_max_bytes),
        ] {
            if value == 0 {
                return Err(bad(flag, "must be at least 1"));
            }
        }
        if let Some(u) = &ai.public_url {
            let parsed = Url::parse(u).map_err(|e| bad("--public-url", format!("{u:?}: {e}")))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(bad("--public-url", format!("{u:?}: must be http or https")));
            }
        }
        Ok(ai)
    }
}

/// `--ai-result-allowed-hosts`: lower-case `host` or `host:port` entries, no schemes or paths.
fn allowed_hosts(list: Option<&str>) -> Result<Vec<String>, ConfigError> {
    let entries = list.unwrap_or_default().split(',').map(str::trim).filter(|h| !h.is_empty());
    entries
        .map(|entry| {
            let parsed = Url::parse(&format!("http://{entry}/"))
                .ok()
                .filter(|u| u.host_str().is_some() && u.username().is_empty())
                .filter(|_| !entry.contains(['/', '@', '?', '#']));
            match parsed {
                Some(_) => Ok(entry.to_ascii_lowercase()),
                None => {
                    Err(bad("--ai-result-allowed-hosts", format!("{entry:?}: not host[:port]")))
                }
            }
        })
        .collect()
}

/// `--orch-http1` and `--orch-h2c` as one setting; both at once contradict each other.
fn orch_http_version(
    http1: Option<bool>,
    h2c: Option<bool>,
) -> Result<OrchHttpVersion, ConfigError> {
    match (http1.unwrap_or(false), h2c.unwrap_or(false)) {
        (false, false) => Ok(OrchHttpVersion::Negotiate),
        (true, false) => Ok(OrchHttpVersion::Http1),
        (false, true) => Ok(OrchHttpVersion::H2c),
        (true, true) => Err(bad("--orch-h2c", "contradicts --orch-http1; give one of them")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orch_http_flags_pick_the_version_and_contradictions_are_refused() {
        let version = |orch_http1, orch_h2c| {
            Ai { orch_http1, orch_h2c, ..Ai::default() }.validate().map(|ai| ai.orch_http)
        };
        assert_eq!(version(None, None).unwrap(), OrchHttpVersion::Negotiate);
        assert_eq!(version(Some(false), Some(false)).unwrap(), OrchHttpVersion::Negotiate);
        assert_eq!(version(Some(true), None).unwrap(), OrchHttpVersion::Http1);
        assert_eq!(version(None, Some(true)).unwrap(), OrchHttpVersion::H2c);
        let err = version(Some(true), Some(true)).unwrap_err().to_string();
        assert!(err.contains("--orch-h2c") && err.contains("--orch-http1"), "{err}");
    }

    /// Result URLs start with `--public-url`, else the listener's address (loopback for an
    /// address that listens everywhere); never anything from a request.
    #[test]
    fn the_result_base_is_the_public_url_or_the_listeners_address() {
        let base = |public: Option<&str>, listen: &str| {
            let ai = Ai { public_url: public.map(str::to_owned), ..Ai::default() };
            ai.validate().unwrap().with_listen_addr(listen.parse().unwrap()).public_url.unwrap()
        };
        assert_eq!(base(Some("https://gw.example"), "10.0.0.1:9935"), "https://gw.example");
        assert_eq!(base(None, "10.0.0.1:9935"), "http://10.0.0.1:9935");
        assert_eq!(base(None, "0.0.0.0:9935"), "http://127.0.0.1:9935");
        assert_eq!(base(None, "[::]:80"), "http://[::1]:80");
    }

    #[test]
    fn result_allowed_hosts_are_host_or_host_port() {
        let hosts = |list: &str| allowed_hosts(Some(list));
        assert_eq!(
            hosts(" S3.example.com, store:9000 ,").unwrap(),
            ["s3.example.com", "store:9000"]
        );
        assert!(hosts("").unwrap().is_empty() && allowed_hosts(None).unwrap().is_empty());
        for bad in ["http://x", "x/y", "u@x", "x:port", ":80"] {
            assert!(hosts(bad).is_err(), "{bad}");
        }
    }
}
