//! The stream auth webhook of transcoding ingest (go-livepeer `-authWebhookUrl`, GATEWAY.md
//! §6.3): before a new RTMP or HTTP-push stream starts, the gateway POSTs `{"url": …}` to the
//! operator's service. A 200 accepts it, and a JSON answer may rename the stream
//! (`manifestID`), set its playback key, and choose its renditions; any other status refuses.
//!
//! Unlike go-livepeer, the call has a deadline and the answer a size cap, so a slow or
//! flooding service cannot hold a publisher's connection.

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use url::Url;

use crate::outbound;

/// The webhook's endpoint and its limits.
#[derive(Debug, Clone)]
pub struct StreamAuth {
    /// Where to POST.
    pub url: Url,
    /// Deadline of one call, answer included.
    pub timeout: Duration,
}

/// Largest answer read; a longer one refuses the stream, as the service's fault.
const MAX_ANSWER: usize = 64 * 1024;

/// What an accepting webhook decided. Fields it left out are `None`.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthAnswer {
    /// The stream's internal id, which playback uses.
    #[serde(rename = "manifestID")]
    pub manifest_id: Option<String>,
    /// External stream id, for logs.
    #[serde(rename = "streamID")]
    pub stream_id: Option<String>,
    /// External session id, for logs.
    #[serde(rename = "sessionID")]
    pub session_id: Option<String>,
    /// The playback key.
    pub stream_key: Option<String>,
    /// Preset names (unknown ones are ignored, as go-livepeer does).
    pub presets: Option<Vec<String>>,
    /// Renditions in go-livepeer's JSON format, validated by the transcoding profiles.
    pub profiles: Option<Value>,
    /// Scales segment timeouts (go-livepeer: for VOD).
    pub timeout_multiplier: Option<u32>,
    /// Asks the orchestrator to re-initialise its transcoding session.
    pub force_session_reinit: Option<bool>,
}

/// Why a stream was not admitted by the webhook.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthRefusal {
    /// The service said no (any status but 200), or gave an answer that cannot be used.
    #[error("authentication denied: {0}")]
    Denied(String),
    /// The service could not be asked: a fault on the operator's side, not the publisher's.
    #[error("the stream auth webhook is unavailable: {0}")]
    Unavailable(String),
}

impl StreamAuth {
    /// Asks whether the stream published at `incoming` may start.
    pub async fn check(
        &self,
        http: &reqwest::Client,
        incoming: &str,
    ) -> Result<AuthAnswer, AuthRefusal> {
        let call = http
            .post(self.url.clone())
            .json(&serde_json::json!({ "url": incoming }))
            .timeout(self.timeout);
        // Without the URL: the reason reaches the client refused (a push's 503), and the
        // operator's webhook address, with any token in it, is not the client's to read.
        let unavailable = |e: &dyn std::fmt::Display| AuthRefusal::Unavailable(e.to_string());
        let resp = call
            .send()
            .await
            .map_err(|e| unavailable(&crate::error::error_chain(&e.without_url())))?;
        let status = resp.status();
        if status.is_server_error() {
            // A failing service has refused nobody: the operator's fault, not the publisher's.
            return Err(unavailable(&format!("status={}", status.as_u16())));
        }
        if status.as_u16() != 200 {
            let text = outbound::read_prefix(resp, 300).await;
            return Err(AuthRefusal::Denied(format!("status={} error={text}", status.as_u16())));
        }
        let body = outbound::read_capped(resp, MAX_ANSWER).await.map_err(|e| unavailable(&e))?;
        parse_answer(&body)
    }
}

/// An accepting answer: empty means "derive everything from the URL"; otherwise JSON with a
/// non-empty `manifestID`, as go-livepeer requires. An answer that is not that JSON is the
/// service's fault, not the publisher's.
pub fn parse_answer(body: &[u8]) -> Result<AuthAnswer, AuthRefusal> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(AuthAnswer::default());
    }
    let answer: AuthAnswer = serde_json::from_slice(body)
        .map_err(|e| AuthRefusal::Unavailable(format!("answer is not the expected JSON: {e}")))?;
    // go-livepeer refuses the stream (403) here; but the service said yes with an answer it
    // cannot have meant, which is the operator's to fix, not the publisher's (503).
    if answer.manifest_id.as_deref().is_none_or(str::is_empty) {
        return Err(AuthRefusal::Unavailable("empty manifestID in the answer".into()));
    }
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_as_go_livepeer_reads_them() {
        assert_eq!(parse_answer(b"").unwrap(), AuthAnswer::default());
        let a = parse_answer(
            br#"{"manifestID":"m1","streamKey":"k","presets":["P240p30fps16x9"],
                 "profiles":[{"name":"a","width":320,"height":240}],"timeoutMultiplier":2}"#,
        )
        .unwrap();
        assert_eq!(a.manifest_id.as_deref(), Some("m1"));
        assert_eq!(a.stream_key.as_deref(), Some("k"));
        assert_eq!(a.presets.unwrap(), ["P240p30fps16x9"]);
        assert_eq!(a.profiles.unwrap()[0]["width"], 320);
        assert_eq!(a.timeout_multiplier, Some(2));
        assert!(matches!(parse_answer(br#"{"streamKey":"k"}"#), Err(AuthRefusal::Unavailable(_))));
        assert!(matches!(parse_answer(b"not json"), Err(AuthRefusal::Unavailable(_))));
    }
}
