//! The batch AI routes: the nine pipelines, the OpenAI-compatible chat route, result files and
//! async image-to-video's results (`ai_async`). Each handler reads the request, hands it to
//! [`crate::ai`], and turns the [`Reply`] into an answer with `X-Request-Id` and
//! `X-Orchestrator-Url`.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};

use super::body::{read_body, read_input};
use crate::ai::job::{Output, Reply};
use crate::ai::validate::{Input, Pipeline, ValidRequest};
use crate::ai::{AiState, openai};
use crate::error::{Error, Kind};
use futures_util::StreamExt as _;

use crate::keys::meter::StreamPermit;
use crate::keys::{Customer, Tab};

/// The AI routes.
pub(crate) fn router(state: AiState) -> Router {
    // Shared behind one `Arc`: axum hands every request its own copy of the state, and the
    // state is some 800 bytes of handles.
    let state = Arc::new(state);
    let mut router = Router::new();
    for pipeline in Pipeline::ALL {
        let path = format!("/{}", pipeline.name());
        router = router.route(
            &path,
            post(move |State(ai): State<Arc<AiState>>, req: Request| async move {
                pipeline_job(ai, pipeline, req).await
            }),
        );
    }
    router
        .route("/v1/chat/completions", post(chat_completions))
        .route("/results/{id}/{file}", get(result_file))
        // Any method, as go-livepeer's mux takes it: the id comes in a JSON body.
        .route("/image-to-video/result", any(super::ai_async::result))
        .with_state(state)
    // No `DefaultBodyLimit::disable()` layer here: the body readers bound every body by
    // `--ai-max-body-bytes`, and the one extractor that applies axum's default limit (2 MiB),
    // multipart's, has it disabled where it runs (`body::read_multipart`). A router layer
    // wraps every route in a second boxed service and future, and gives every request an
    // extensions map: about 1,400 instructions per request, job or result file.
}

async fn pipeline_job(ai: Arc<AiState>, pipeline: Pipeline, req: Request) -> Response {
    if pipeline == Pipeline::ImageToVideo && super::ai_async::prefers_async(req.headers()) {
        return super::ai_async::submit(ai, req).await;
    }
    let urls = ai.config.result_urls();
    let customer = req.extensions().get::<Customer>().cloned();
    let tab = req.extensions().get::<Arc<Tab>>().cloned();
    let (limit, timeout) = (ai.config.max_body_bytes, ai.config.request_timeout);
    let input = match read_input(req, limit, timeout).await {
        Ok(input) => input,
        Err(e) => return e.into_response(),
    };
    let (mut model, mut permit) = (None, None);
    let check = async |valid: &ValidRequest| {
        model = customer.is_some().then(|| super::keys::ledger_model(&ai, valid)).flatten();
        super::keys::allow_model(customer.as_ref(), valid, "model_id")?;
        permit = stream_permit(tab.as_deref(), valid).await?;
        Ok(())
    };
    let submitted = crate::ai::submit_checked(&ai, pipeline, input, urls, check, tab.clone());
    let resp = match submitted.await {
        Ok(reply) => answer(reply),
        Err(e) => e.into_response(),
    };
    holding(super::keys::with_model(resp, model), permit)
}

/// `POST /v1/chat/completions`: the LLM pipeline in OpenAI's request and answer shapes.
async fn chat_completions(State(ai): State<Arc<AiState>>, req: Request) -> Response {
    let urls = ai.config.result_urls();
    let customer = req.extensions().get::<Customer>().cloned();
    let tab = req.extensions().get::<Arc<Tab>>().cloned();
    let body = match read_body(req, ai.config.max_body_bytes, ai.config.request_timeout).await {
        Ok(body) => body,
        Err(e) => return e.into_response(),
    };
    let input = Input::Json(openai::llm_body(body));
    let (mut model, mut permit) = (None, None);
    let check = async |valid: &ValidRequest| {
        model = customer.is_some().then(|| super::keys::ledger_model(&ai, valid)).flatten();
        super::keys::allow_model(customer.as_ref(), valid, "model")?;
        permit = stream_permit(tab.as_deref(), valid).await?;
        Ok(())
    };
    let submitted = crate::ai::submit_checked(&ai, Pipeline::Llm, input, urls, check, tab.clone());
    let resp = match submitted.await {
        Ok(reply) => answer(openai::completion(reply)),
        Err(e) => e.into_response(),
    };
    holding(super::keys::with_model(resp, model), permit)
}

/// One of the customer key's concurrent streams, for a streamed request (`stream: true`).
async fn stream_permit(
    tab: Option<&Tab>,
    valid: &ValidRequest,
) -> Result<Option<StreamPermit>, Error> {
    match tab {
        Some(tab) if valid.stream => tab.stream_permit().await.map(Some),
        _ => Ok(None),
    }
}

/// The answer, holding `permit` until its body has been sent (or dropped).
fn holding(resp: Response, permit: Option<StreamPermit>) -> Response {
    let Some(permit) = permit else { return resp };
    let (parts, body) = resp.into_parts();
    let stream = body.into_data_stream().map(move |chunk| {
        let _held = &permit;
        chunk
    });
    Response::from_parts(parts, Body::from_stream(stream))
}

/// The client's answer to a job: its body or error, with the request's headers.
fn answer(reply: Reply) -> Response {
    let mut resp = match reply.outcome {
        Ok(Output::Json(body)) => {
            let mut resp = Response::new(Body::from(body));
            let json = HeaderValue::from_static("application/json");
            resp.headers_mut().insert(header::CONTENT_TYPE, json);
            resp
        }
        Ok(Output::Events(events)) => {
            let mut resp = Response::new(Body::from_stream(events));
            let h = resp.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            // Its usage is known at its end: the customer's ledger row is written then.
            resp.extensions_mut().insert(super::keys::RecordAtEnd);
            resp
        }
        Err(e) => e.into_response(),
    };
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&reply.request_id) {
        h.insert(super::REQUEST_ID, v);
    }
    if let Some(Ok(v)) = reply.orchestrator.as_deref().map(HeaderValue::from_str) {
        h.insert(super::SERVED_BY, v);
    }
    resp
}

/// `GET /results/{id}/{file}`. Served from the gateway's own origin, so never as anything a
/// browser would run: the stored type (checked when the result was fetched) is checked again,
/// anything but image, video and audio goes out as an `application/octet-stream` attachment,
/// and `nosniff` and a sandboxing CSP keep browsers from guessing otherwise.
async fn result_file(
    State(ai): State<Arc<AiState>>,
    path: Result<Path<(String, String)>, axum::extract::rejection::PathRejection>,
) -> Response {
    // A path that is not UTF-8 names no result: the same JSON 404, not axum's text.
    let found = path.ok().and_then(|Path((id, file))| ai.store.file(&id, &file).map(|f| (f, file)));
    match found {
        Some((stored, file)) => {
            let media = crate::ai::fetch::served_type(&stored.content_type)
                .filter(|t| *t != "application/octet-stream")
                .and_then(|t| HeaderValue::from_str(t).ok());
            let (content_type, disposition) = match media {
                Some(t) => (t, "inline; filename=\""),
                None => (
                    HeaderValue::from_static("application/octet-stream"),
                    "attachment; filename=\"",
                ),
            };
            let mut resp = Response::new(Body::from(stored.bytes));
            let h = resp.headers_mut();
            h.insert(header::CONTENT_TYPE, content_type);
            h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
            // The file name is the store's own (hex and an extension): always a valid value.
            if let Ok(v) = HeaderValue::try_from([disposition, &file, "\""].concat()) {
                h.insert(header::CONTENT_DISPOSITION, v);
            }
            let csp = HeaderValue::from_static("default-src 'none'; sandbox");
            h.insert(header::CONTENT_SECURITY_POLICY, csp);
            resp
        }
        None => {
            let message = "no such result (results expire; see --ai-result-ttl)";
            Error::new(Kind::NotFound, message).into_response()
        }
    }
}
