//! The live-AI auth webhook (go-livepeer `-liveAIAuthWebhookUrl`, GATEWAY.md §6.6): before a
//! stream starts, the gateway asks the operator's service whether to accept it, and may be
//! told which pipeline, params and stream id to use. Its decisions are typed values
//! ([`Overrides`] or a [`LiveError`]); the routes choose the status.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use url::Url;

use super::error::LiveError;
use crate::outbound;

/// The webhook's endpoint and key.
#[derive(Debug, Clone)]
pub struct AuthWebhook {
    /// Where to POST.
    pub url: Url,
    /// Sent as both `x-api-key` and `Authorization`, as go-livepeer sends it.
    pub api_key: Option<SecretString>,
}

/// What the client asked for, as the webhook sees it.
#[derive(Debug)]
pub(crate) struct AuthRequest<'a> {
    pub(crate) stream: &'a str,
    pub(crate) pipeline: &'a str,
    pub(crate) stream_id: &'a str,
    pub(crate) params: &'a Value,
    /// The start request's query string (go-livepeer passes the ingest URL's).
    pub(crate) query: &'a str,
    /// The client's `Authorization` header, for services that check a token.
    pub(crate) authorization: Option<&'a str>,
    pub(crate) gateway_host: &'a str,
    pub(crate) status_url: String,
    pub(crate) update_url: String,
}

/// What an accepting webhook may change.
#[derive(Debug, Default)]
pub(crate) struct Overrides {
    pub(crate) pipeline: Option<String>,
    pub(crate) params: Option<Value>,
    pub(crate) stream_id: Option<String>,
}

/// Largest webhook answer read.
const MAX_ANSWER: usize = 64 * 1024;

/// Asks the webhook. A 4xx (or other non-2xx) answer refuses the stream
/// ([`LiveError::AuthRefused`]); an unreachable or failing (5xx) webhook refuses it too, as
/// the operator's fault ([`LiveError::AuthUnreachable`]), since accepting
/// unchecked streams would defeat the point of having one, and so does an accepting answer
/// that cannot be read (over [`MAX_ANSWER`] bytes, or not JSON, which go-livepeer refuses
/// too): its overrides may say whose stream this is.
pub(crate) async fn check(
    http: &reqwest::Client,
    hook: &AuthWebhook,
    req: &AuthRequest<'_>,
) -> Result<Overrides, LiveError> {
    let body = json!({
        "stream": req.stream,
        "stream_key": req.stream,
        "type": "trickle",
        "query_params": req.query,
        "gateway_host": req.gateway_host,
        "status_url": req.status_url,
        "update_url": req.update_url,
        "pipeline": req.pipeline,
        "stream_id": req.stream_id,
        "params": req.params,
        "authorization": req.authorization,
    });
    let mut call = http.post(hook.url.clone()).json(&body).timeout(Duration::from_secs(5));
    if let Some(key) = &hook.api_key {
        call = call
            .header("x-api-key", key.expose_secret())
            .header(reqwest::header::AUTHORIZATION, key.expose_secret());
    }
    let unusable = |why: &dyn std::fmt::Display| {
        tracing::warn!(error = %why, "live auth webhook unreachable or its answer unusable");
        LiveError::AuthUnreachable
    };
    let resp =
        call.send().await.map_err(|e| unusable(&crate::error::error_chain(&e.without_url())))?;
    let status = resp.status();
    if status.is_server_error() {
        // A webhook that fails has not refused anyone: the operator's fault, not the client's.
        return Err(unusable(&format!("answered {status}")));
    }
    if !status.is_success() {
        let text = outbound::read_prefix(resp, 300).await;
        return Err(LiveError::AuthRefused(format!(
            "the live-AI auth webhook refused this stream ({status}): {text}"
        )));
    }
    let bytes = outbound::read_capped(resp, MAX_ANSWER).await.map_err(|e| unusable(&e))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Overrides::default());
    }
    let answer: Value = serde_json::from_slice(&bytes).map_err(|e| unusable(&e))?;
    let text = |k: &str| answer.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
    Ok(Overrides {
        pipeline: text("pipeline").map(str::to_owned),
        params: answer.get("pipeline_parameters").filter(|p| p.is_object()).cloned(),
        stream_id: text("stream_id").map(str::to_owned),
    })
}

/// The heartbeat (go-livepeer `-liveAIHeartbeatURL`, v0.9.1): every interval the gateway posts
/// the ids of its running streams, and stops those the answer lists as terminated (for
/// example, a customer whose credit ran out).
#[derive(Debug, Clone)]
pub struct Heartbeat {
    /// Where to POST `{"ids": [...]}`.
    pub url: Url,
    /// Headers sent with every call (`name:value,…`, as `--live-ai-heartbeat-headers`).
    pub headers: reqwest::header::HeaderMap,
    /// How often.
    pub interval: Duration,
}

/// One heartbeat: the stream ids to stop, from `{"terminatedStreamIds": [...]}`.
pub(crate) async fn heartbeat(
    http: &reqwest::Client,
    beat: &Heartbeat,
    ids: &[String],
) -> Result<Vec<String>, String> {
    let resp = http
        .post(beat.url.clone())
        .headers(beat.headers.clone())
        .json(&json!({ "ids": ids }))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .map_err(|e| crate::error::error_chain(&e.without_url()))?;
    if !resp.status().is_success() {
        return Err(format!("heartbeat answered {}", resp.status()));
    }
    let bytes = outbound::read_capped(resp, MAX_ANSWER).await.map_err(|e| e.to_string())?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let answer: Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    Ok(answer
        .get("terminatedStreamIds")
        .and_then(Value::as_array)
        .map(|ids| ids.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default())
}
