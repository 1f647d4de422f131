//! The client's requests as domain operations, free of HTTP: start a stream (validate, ask the
//! auth webhook, open it), update its params, read its status, stop it. Each answers a value
//! or a [`LiveError`]; the routes read the request and write the answer. Only the client that
//! started a stream may update, stop or read it ([`owned`]).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::auth::{self, AuthRequest};
use super::context::LiveState;
use super::error::LiveError;
use super::owner::{Credentials, Denied, Owner};
use super::stream::{Stream, StreamSpec, StreamStatus};
use super::supervisor;

/// A `/start` request, as read from HTTP.
#[derive(Debug)]
pub(crate) struct StartRequest<'a> {
    /// The stream name from the path.
    pub(crate) name: &'a str,
    /// The base URL clients reach this gateway at.
    pub(crate) base: &'a str,
    /// The request's query string (for the auth webhook).
    pub(crate) query: &'a str,
    /// The client's `Authorization` header (for the auth webhook, and to prove it owns a
    /// running stream of the name).
    pub(crate) authorization: Option<&'a str>,
    /// The stream secret it presented, if any (to replace the running stream it controls).
    pub(crate) secret: Option<&'a str>,
    /// The JSON body.
    pub(crate) body: &'a [u8],
}

/// The body of `/start`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StartBody {
    /// Pipeline (model id), e.g. `noop`, `streamdiffusion`, `comfyui`.
    #[serde(default, alias = "model_id")]
    pipeline: Option<String>,
    #[serde(default)]
    params: Option<Value>,
    #[serde(default)]
    stream_id: Option<String>,
    /// Only orchestrators whose URL contains this (go-livepeer's `orchestrator` query key).
    #[serde(default)]
    orchestrator: Option<String>,
}

/// What a valid `/start` asks for, before the auth webhook may change it.
struct Asked {
    pipeline: String,
    params: Value,
    stream_id: String,
    pin: Option<String>,
}

/// A stream name is one path segment, used as the base of four channel names and of the URLs
/// handed back: `.` and `..` would be path steps in them.
pub(crate) fn check_name(name: &str) -> Result<(), LiveError> {
    let valid = !name.is_empty()
        && name.len() <= 128
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        && name != "."
        && name != ".."
        && !["-out", "-control", "-events"].iter().any(|s| name.ends_with(s));
    if valid {
        return Ok(());
    }
    Err(LiveError::field(
        "stream",
        "stream names are 1-128 characters of A-Z a-z 0-9 . _ -, are not . or .., and do not end in -out, -control or -events",
    ))
}

fn parse_start(name: &str, body: &[u8]) -> Result<Asked, LiveError> {
    let parsed: StartBody = if body.iter().all(u8::is_ascii_whitespace) {
        StartBody::default()
    } else {
        crate::bounded_json::from_slice(body, crate::bounded_json::STREAM_VALUES)
            .and_then(serde_json::from_value)
            .map_err(|e| LiveError::field("body", format!("invalid JSON: {e}")))?
    };
    let pipeline = parsed.pipeline.unwrap_or_else(|| "noop".to_owned());
    if pipeline.is_empty() || pipeline.len() > 128 {
        return Err(LiveError::field("pipeline", "pipeline must be 1-128 characters"));
    }
    let params = parsed.params.unwrap_or_else(|| json!({}));
    if !params.is_object() {
        return Err(LiveError::field("params", "params must be a JSON object"));
    }
    let stream_id = parsed.stream_id.filter(|s| !s.is_empty()).unwrap_or_else(|| name.to_owned());
    if stream_id.len() > 128 {
        return Err(LiveError::field("stream_id", "stream_id is at most 128 characters"));
    }
    let pin = parsed.orchestrator.filter(|s| !s.is_empty());
    Ok(Asked { pipeline, params, stream_id, pin })
}

/// The URL of the stream's control route `action`.
fn route(req: &StartRequest<'_>, action: &str) -> String {
    format!("{}/live/video-to-video/{}/{action}", req.base, req.name)
}

/// Asks the auth webhook, when one is configured; it may change what was asked.
async fn authorize(
    live: &LiveState,
    req: &StartRequest<'_>,
    mut asked: Asked,
) -> Result<Asked, LiveError> {
    let Some(hook) = &live.inner.config.auth_webhook else { return Ok(asked) };
    let ask = AuthRequest {
        stream: req.name,
        pipeline: &asked.pipeline,
        stream_id: &asked.stream_id,
        params: &asked.params,
        query: req.query,
        authorization: req.authorization,
        gateway_host: req.base.trim_start_matches("http://").trim_start_matches("https://"),
        status_url: route(req, "status"),
        update_url: route(req, "update"),
    };
    let overrides = auth::check(&live.inner.services, hook, &ask).await?;
    asked.pipeline = overrides.pipeline.unwrap_or(asked.pipeline);
    asked.params = overrides.params.unwrap_or(asked.params);
    asked.stream_id = overrides.stream_id.unwrap_or(asked.stream_id);
    Ok(asked)
}

/// A started stream: the answer's JSON and the secret that controls the stream.
#[derive(Debug)]
pub(crate) struct Started {
    pub(crate) body: Value,
    pub(crate) secret: String,
    /// The stream this start made: a key meters this one, not whichever holds the name by
    /// then (a restart by the same client may have replaced it already).
    pub(crate) stream: Arc<Stream>,
}

/// Starts a stream; answers its four client channel URLs, its control routes and its secret.
/// A name in use is refused before the auth webhook is asked, and reserved before any
/// orchestrator is paid. The client that started a running stream may start it again (as
/// go-livepeer's clients do when they reconnect): the old stream is stopped and released, and
/// a new one, with a new secret, takes the name.
pub(crate) async fn start(live: &LiveState, req: &StartRequest<'_>) -> Result<Started, LiveError> {
    let asked = parse_start(req.name, req.body)?;
    let presented = Credentials { authorization: req.authorization, secret: req.secret };
    if live.named(req.name).is_some_and(|s| !s.is_stopped() && !s.replaceable_by(presented)) {
        return Err(LiveError::Exists { stream: req.name.to_owned() });
    }
    let asked = authorize(live, req, asked).await?;
    let (owner, secret) = Owner::new(req.authorization);
    let spec = StreamSpec {
        channel: format!("{}-{:016x}", req.name, rand::random::<u64>()),
        name: req.name.to_owned(),
        id: asked.stream_id,
        request_id: format!("{:016x}", rand::random::<u64>()),
        pipeline: asked.pipeline,
        pin: asked.pin,
        owner,
    };
    let stream = supervisor::open(live, spec, asked.params, presented).await?;
    let s = &stream.spec;
    let channel = |suffix: &str| format!("{}/ai/trickle/{}{suffix}", req.base, s.channel);
    let body = json!({
        "stream": s.name,
        "stream_id": s.id,
        "request_id": s.request_id,
        "pipeline": s.pipeline,
        "orchestrator": stream.status().orchestrator,
        "publish_url": channel(""),
        "subscribe_url": channel("-out"),
        "control_url": channel("-control"),
        "events_url": channel("-events"),
        "update_url": route(req, "update"),
        "status_url": route(req, "status"),
        "stop_url": route(req, "stop"),
        "stream_secret": secret,
    });
    Ok(Started { body, secret, stream })
}

/// The stream named `name` (or with stream id `name`), when `presented` are the credentials
/// it was started with.
pub(crate) fn owned(
    live: &LiveState,
    name: &str,
    presented: Credentials<'_>,
) -> Result<Arc<Stream>, LiveError> {
    let stream = live.find(name).ok_or_else(|| LiveError::NotFound { stream: name.to_owned() })?;
    match stream.spec.owner.check(presented) {
        Ok(()) => Ok(stream),
        Err(Denied::Missing) => Err(LiveError::Unauthorized { stream: name.to_owned() }),
        Err(Denied::Wrong) => Err(LiveError::NotOwner { stream: name.to_owned() }),
    }
}

/// New params for a running stream; answers their version.
pub(crate) fn update(stream: &Stream, body: &[u8]) -> Result<Value, LiveError> {
    let params = match crate::bounded_json::from_slice(body, crate::bounded_json::STREAM_VALUES) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => return Err(LiveError::field("params", "params must be a JSON object")),
        Err(e) => return Err(LiveError::field("params", format!("invalid JSON: {e}"))),
    };
    if stream.is_stopped() {
        return Err(LiveError::Stopped);
    }
    let version = stream.set_params(params);
    Ok(json!({ "stream": stream.spec.name, "params_version": version }))
}

/// The stream's status, for its owner.
pub(crate) fn status(
    live: &LiveState,
    name: &str,
    presented: Credentials<'_>,
) -> Result<StreamStatus, LiveError> {
    Ok(owned(live, name, presented)?.status())
}

/// Stops the stream and waits (a while) until it has released everything; answers its final
/// status.
pub(crate) async fn stop(
    live: &LiveState,
    name: &str,
    presented: Credentials<'_>,
) -> Result<StreamStatus, LiveError> {
    let stream = owned(live, name, presented)?;
    stream.stop("stopped by request");
    stream.wait_stopped(Duration::from_secs(5)).await;
    Ok(stream.status())
}
