//! Attaching an orchestrator to a live stream: selecting one from the pool, the start call
//! with its prepaid minute (PROTOCOL.md §8.2), trying others when it fails, and tearing a
//! session down on the orchestrator's side when it ends (§8.3 Teardown).

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
use crate::orchestrator::info::OrchInfo;
use crate::payment::{PayError, Settlement};

impl Session {
    /// Tears the session down on the orchestrator's side, in the background: the input and
    /// control channels are deleted, which ends the orchestrator's stream (§8.3 Teardown).
    pub(crate) fn finish(self, inner: &Arc<Inner>) -> Self {
        billing::forget_remote(inner, &self);
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
}

impl From<AttachError> for LiveError {
    fn from(e: AttachError) -> Self {
        Self::NoOrchestrator(e.message)
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
                return Err(AttachError { message });
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
        match start_call(inner, stream, &lease).await {
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
                    orchestrator = url,
                    error = failure.message,
                    "live start failed"
                );
                inner.metrics.ai_error(&stream.key, &url, failure.code);
                last_error = Some(format!("{url}: {}", failure.message));
                if failure.blame {
                    lease.failed(failure.message);
                }
            }
        }
    }
    Err(AttachError {
        message: format!(
            "no orchestrator started the stream after {attempts} attempts; last error: {}",
            last_error.unwrap_or_default()
        ),
    })
}

struct Started {
    info: Arc<OrchInfo>,
    manifest_id: String,
    urls: [String; 4],
    params_version: u64,
}

struct StartFailure {
    message: String,
    code: &'static str,
    /// Whether the orchestrator is at fault (ejected) rather than busy or unpaid.
    blame: bool,
}

/// `POST {transcoder}/live-video-to-video` with the prepaid minute (§8.2).
async fn start_call(
    inner: &Inner,
    stream: &Stream,
    lease: &Lease,
) -> Result<Started, StartFailure> {
    let fail = |message: String, code, blame| StartFailure { message, code, blame };
    let Some(info) = lease.info().cloned() else {
        return Err(fail("no orchestrator info".into(), "discovery", true));
    };
    let orch = lease.url().to_string();
    let paid = pay(inner, lease.url(), &info, &stream.key, START_UNITS, &stream.spec.request_id)
        .await
        .map_err(|e| {
            let blame = matches!(e, PayError::Discovery(_));
            fail(e.to_string(), "payment", blame)
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
            settle(inner, stream, &orch, paid.prepared, Settlement::CreditSpent);
            let code = if e.is_timeout() { "timeout" } else { "connection" };
            return Err(fail(crate::error::error_chain(&e), code, true));
        }
    };
    let status = resp.status();
    if status.as_u16() != 200 {
        let text = resp.text().await.unwrap_or_default();
        let text = text.trim().chars().take(300).collect::<String>();
        let (outcome, code, blame) = match status.as_u16() {
            503 => (Settlement::Refused, "busy", false),
            400..=499 => (Settlement::CreditSpent, "refused", false),
            _ => (Settlement::CreditSpent, "server_error", true),
        };
        settle(inner, stream, &orch, paid.prepared, outcome);
        return Err(fail(format!("start answered {status}: {text}"), code, blame));
    }
    let answer: Value = match resp.json().await {
        Ok(v) => v,
        Err(e) => {
            settle(inner, stream, &orch, paid.prepared, Settlement::CreditSpent);
            return Err(fail(format!("start answer is not JSON: {e}"), "garbage", true));
        }
    };
    settle(inner, stream, &orch, paid.prepared, Settlement::Paid);
    let Some(urls) = channel_urls(&answer, &base) else {
        return Err(fail("start answer lacks a channel URL".into(), "garbage", true));
    };
    let manifest_id = answer
        .get("manifest_id")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
        .unwrap_or(&stream.spec.request_id)
        .to_owned();
    Ok(Started { info: paid.info, manifest_id, urls, params_version })
}

/// The four channel URLs of a start answer: publish, subscribe, control, events.
fn channel_urls(answer: &Value, base: &str) -> Option<[String; 4]> {
    let url_of = |field: &str| -> Option<String> {
        let raw = answer.get(field)?.as_str()?.trim();
        if raw.is_empty() {
            return None;
        }
        // go-livepeer `AppendHostname`: a bare path is on the orchestrator's host.
        if raw.starts_with("http://") || raw.starts_with("https://") {
            Some(raw.to_owned())
        } else {
            Some(format!("{base}/{}", raw.trim_start_matches('/')))
        }
    };
    Some([
        url_of("publish_url")?,
        url_of("subscribe_url")?,
        url_of("control_url")?,
        url_of("events_url")?,
    ])
}
