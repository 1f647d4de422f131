//! The BYOC stream routes (`crate::byoc::stream`): `POST /process/stream/start`,
//! `POST /process/stream/{id}/update`, `GET /process/stream/{id}/status`,
//! `POST /process/stream/{id}/stop`, the data events `GET /process/stream/{id}/data`, and the
//! client's trickle channels under `/process/trickle/`.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};

use super::error::JsonPath;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use livepeer_trickle::{ReadSegment as _, Subscribe as _};
use serde_json::json;

use crate::byoc::JobRequest;
use crate::byoc::request::JOB_HEADER;
use crate::byoc::stream::{ByocStreams, MAX_BODY, StartRequest};
use crate::error::{Error, Kind};
use crate::keys::Tab;
use crate::keys::meter::{Metered, Paid};
use crate::live::{Credentials, SECRET_HEADER};

/// Deadline of a request body.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Where the client channels are served.
const TRICKLE_PREFIX: &str = "/process/trickle";
/// Largest data segment turned into events.
const MAX_DATA: usize = 1 << 20;

/// The routes.
/// As go-livepeer's, the stream routes answer a preflight with 204.
pub(crate) fn router(streams: ByocStreams) -> Router {
    let trickle = streams.hub().router();
    let preflight = super::cors::preflight;
    Router::new()
        .route("/process/stream/start", post(start).options(preflight))
        .route("/process/stream/{id}/update", post(update).options(preflight))
        .route("/process/stream/{id}/status", get(status).options(preflight))
        .route("/process/stream/{id}/stop", post(stop).options(preflight))
        .route("/process/stream/{id}/data", get(data).options(preflight))
        .with_state(streams)
        .layer(DefaultBodyLimit::disable())
        .nest(TRICKLE_PREFIX, trickle)
}

/// The admin route: `GET /byoc/streams`, the status of every running stream.
pub(crate) fn admin_router(streams: ByocStreams) -> Router {
    Router::new()
        .route(
            "/byoc/streams",
            get(|State(streams): State<ByocStreams>| async move {
                axum::Json(json!({ "streams": streams.statuses() }))
            }),
        )
        .with_state(streams)
}

fn credentials(headers: &HeaderMap) -> Credentials<'_> {
    let text = |name| headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok());
    Credentials { authorization: text(header::AUTHORIZATION.as_str()), secret: text(SECRET_HEADER) }
}

async fn start(State(streams): State<ByocStreams>, req: Request) -> Response {
    match start_inner(&streams, req).await {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    }
}

async fn start_inner(streams: &ByocStreams, req: Request) -> Result<Response, Error> {
    let max_timeout = streams.inner.byoc.config.max_timeout_seconds;
    let header_value = req.headers().get(JOB_HEADER).map(HeaderValue::as_bytes);
    let job = JobRequest::parse(header_value, "", max_timeout)?;
    super::keys::allow_capability(req.extensions().get(), &job.capability)?;
    // With a customer key: a place among its streams, and its first interval paid for,
    // before any orchestrator is.
    let tab = req.extensions().get::<Arc<Tab>>().cloned();
    let interval = streams.inner.byoc.config.payment_interval;
    let units = interval.as_secs().max(1);
    let permit = match &tab {
        Some(tab) => {
            let permit = tab.stream_permit().await?;
            // Before the fee: see `meter_start` of live streams.
            tab.reserve_before_fee(&job.capability, units).await?;
            Some(permit)
        }
        None => None,
    };
    let capability = job.capability.clone();
    let base = super::public_base(streams.public_url(), req.headers(), req.uri());
    let authorization = credentials(req.headers()).authorization.map(str::to_owned);
    let body = super::body::read_body(req, MAX_BODY, BODY_TIMEOUT).await?;
    let start = StartRequest::parse(job, &body)?;
    let (stream, secret) = streams.start(start, authorization.as_deref()).await?;
    if let Some(tab) = tab {
        let served = stream.with_state(|s| s.orchestrator.as_ref().map(|o| o.0.clone()));
        let orchestrator = served.flatten().unwrap_or_default();
        // A BYOC stream's orchestrator is paid in tickets: a multiple of its price is taken
        // of their expected value, from what its start paid on.
        let ev = |s: &crate::byoc::stream::Stream| {
            let paid = s.with_state(|s| s.ev_wei.checked_add(&s.start_ev_wei).unwrap_or(s.ev_wei));
            paid.unwrap_or(livepeer_pm::Ratio::ZERO)
        };
        let unmetered = Arc::downgrade(&stream);
        let guard = crate::keys::meter::StopUnlessMetered::new(move || {
            if let Some(stream) = unmetered.upgrade() {
                stream.end("the client went away before its stream was metered");
            }
        });
        let prepaid = ev(&stream);
        tab.paid(0, &prepaid, &livepeer_pm::Ratio::ZERO);
        if let Err(e) = tab.reserve(&capability, units, Some(&prepaid)).await {
            stream.end(&format!("{}: {}", e.kind().name(), e.message()));
            return Err(e);
        }
        tab.served(&orchestrator);
        let weak = Arc::downgrade(&stream);
        let read = Arc::downgrade(&stream);
        tokio::spawn(crate::keys::meter::meter(Metered {
            first: tab,
            model: capability,
            units,
            interval: Duration::from_secs(units),
            orchestrator,
            ended: stream.stop.clone(),
            stop: Box::new(move |reason| {
                if let Some(stream) = weak.upgrade() {
                    stream.end(reason);
                }
            }),
            permit,
            paid: Some(Paid {
                read: Box::new(move || read.upgrade().map_or(prepaid, |s| ev(&s))),
                charged: prepaid,
                ev: true,
                settled: Some(stream.payments_out.watch()),
            }),
        }));
        guard.metered();
    }
    let id = &stream.id;
    let route = |what: &str| format!("{base}/process/stream/{id}/{what}");
    let channel = |suffix: &str| format!("{base}{TRICKLE_PREFIX}/{}{suffix}", stream.channel);
    let f = stream.flags;
    let when = |on: bool, url: String| if on { url } else { String::new() };
    let answer = json!({
        "stream_id": id,
        "whip_url": "",
        "whep_url": "",
        "rtmp_url": "",
        "rtmp_output_url": "",
        "update_url": route("update"),
        "status_url": route("status"),
        "data_url": when(f.enable_data_output, route("data")),
        "stop_url": route("stop"),
        "publish_url": when(f.enable_video_ingress, channel("")),
        "subscribe_url": when(f.enable_video_egress, channel("-out")),
        "data_channel_url": when(f.enable_data_output, channel("-data")),
        "control_url": channel("-control"),
        "events_url": channel("-events"),
    });
    let mut resp = axum::Json(answer).into_response();
    if let Ok(secret) = HeaderValue::from_str(&secret) {
        resp.headers_mut().insert(SECRET_HEADER, secret);
    }
    Ok(resp)
}

async fn update(
    State(streams): State<ByocStreams>,
    JsonPath(id): JsonPath<String>,
    req: Request,
) -> Response {
    let stream = match streams.owned(&id, credentials(req.headers())) {
        Ok(stream) => stream,
        Err(e) => return e.into_response(),
    };
    let body = match super::body::read_body(req, MAX_BODY, BODY_TIMEOUT).await {
        Ok(body) => body,
        Err(e) => return e.into_response(),
    };
    match streams.update(&stream, body).await {
        Ok((status, body, headers)) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
            let mut resp = (status, body).into_response();
            if let Some(ct) = headers.get(header::CONTENT_TYPE) {
                resp.headers_mut().insert(header::CONTENT_TYPE, ct.clone());
            }
            super::byoc::contain(resp.headers_mut());
            resp
        }
        Err(e) => e.into_response(),
    }
}

async fn status(
    State(streams): State<ByocStreams>,
    JsonPath(id): JsonPath<String>,
    headers: HeaderMap,
) -> Response {
    match streams.owned(&id, credentials(&headers)) {
        Ok(stream) => axum::Json(stream.status()).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn stop(
    State(streams): State<ByocStreams>,
    JsonPath(id): JsonPath<String>,
    headers: HeaderMap,
) -> Response {
    match streams.owned(&id, credentials(&headers)) {
        Ok(stream) => axum::Json(streams.stop(&stream).await).into_response(),
        Err(e) => e.into_response(),
    }
}

/// The data lines as server-sent events, one `data:` per line; `event: end` when the stream
/// ends (go-livepeer's ending).
async fn data(
    State(streams): State<ByocStreams>,
    JsonPath(id): JsonPath<String>,
    headers: HeaderMap,
) -> Response {
    let stream = match streams.owned(&id, credentials(&headers)) {
        Ok(stream) => stream,
        Err(e) => return e.into_response(),
    };
    if !stream.flags.enable_data_output {
        let e = Error::new(Kind::TrickleUnavailable, "Stream data not available")
            .field("enable_data_output");
        return e.into_response();
    }
    let Ok(permit) = stream.data_readers.clone().try_acquire_owned() else {
        let m =
            format!("at most {} data readers per stream", crate::byoc::stream::MAX_DATA_READERS);
        // The client's own readers of its own stream: 429, not the gateway being full.
        return Error::new(Kind::RateLimited, m).retry_after(1).into_response();
    };
    let source = streams.hub().subscriber(&format!("{}-data", stream.channel), 0);
    let events = futures_util::stream::unfold(Some((source, permit)), |state| async move {
        let (mut source, permit) = state?;
        let next = match source.segment().await {
            Ok(Some(mut reader)) => {
                let mut data = Vec::new();
                let mut ok = true;
                loop {
                    match reader.chunk().await {
                        Ok(Some(c)) if data.len() + c.len() <= MAX_DATA => {
                            data.extend_from_slice(&c)
                        }
                        Ok(Some(_)) | Err(_) => {
                            ok = false;
                            break;
                        }
                        Ok(None) => break,
                    }
                }
                let text =
                    if ok { String::from_utf8_lossy(&data).into_owned() } else { String::new() };
                let mut out = String::new();
                for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
                    out.push_str("data: ");
                    out.push_str(line);
                    out.push_str("\n\n");
                }
                Some((out, Some((source, permit))))
            }
            Ok(None) | Err(_) => {
                Some(("event: end\ndata: {\"type\":\"stream_ended\"}\n\n".to_owned(), None))
            }
        };
        next.map(|(text, state)| (Ok::<_, std::io::Error>(bytes::Bytes::from(text)), state))
    });
    let mut resp = Response::new(Body::from_stream(events));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}
