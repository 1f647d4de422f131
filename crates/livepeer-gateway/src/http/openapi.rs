//! `GET /openapi.json`: an OpenAPI 3.1 document of every public route this gateway serves.
//!
//! The AI request bodies are generated from the very table requests are validated against
//! (`Pipeline::request_schema`), with the limits this gateway runs with, so the document
//! cannot promise a field or a bound the gateway does not check. The other shapes are written
//! here; the tests validate the document with a real OpenAPI validator, check that every
//! route in it is served and every public route in the source is in it, and validate live
//! answers (the catalogue, the model list, errors) against its schemas.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::Json;
use axum::routing::get;
use serde_json::{Map, Value, json};

use crate::ai::validate::{Limits, Pipeline};

/// What the document depends on.
#[derive(Debug, Clone)]
struct Doc {
    limits: Arc<Limits>,
    signer: bool,
}

/// The route, for a gateway validating with `limits` and serving the remote-signer routes
/// when `signer`.
pub(crate) fn router(limits: Arc<Limits>, signer: bool) -> Router {
    Router::new().route("/openapi.json", get(openapi)).with_state(Doc { limits, signer })
}

async fn openapi(State(doc): State<Doc>) -> Json<Value> {
    Json(document(&doc.limits, doc.signer))
}

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// An answer of `content_type` with `schema`.
fn content(description: &str, content_type: &str, schema: Value) -> Value {
    json!({ "description": description, "content": { content_type: { "schema": schema } } })
}

/// The gateway's JSON errors for `statuses`, beside `ok`'s 200.
fn responses(ok: Value, statuses: &[u16]) -> Value {
    let mut out = Map::new();
    out.insert("200".into(), ok);
    for s in statuses {
        out.insert(s.to_string(), content("error", "application/json", schema_ref("Error")));
    }
    Value::Object(out)
}

/// Path parameters named in `path` (`{name}`), all strings.
fn path_params(path: &str) -> Value {
    let names = path.split('{').skip(1).filter_map(|p| p.split('}').next());
    let params: Vec<Value> = names
        .map(|n| json!({ "name": n, "in": "path", "required": true, "schema": { "type": "string" } }))
        .collect();
    Value::Array(params)
}

/// One operation.
fn op(path: &str, tag: &str, summary: &str, body: Option<Value>, answers: Value) -> Value {
    let mut op = json!({
        "tags": [tag], "summary": summary, "parameters": path_params(path), "responses": answers,
    });
    if let Some(body) = body {
        op["requestBody"] = body;
    }
    op
}

fn json_body(schema: Value) -> Value {
    json!({ "required": true, "content": { "application/json": { "schema": schema } } })
}

fn any_object() -> Value {
    json!({ "type": "object" })
}

fn add(paths: &mut Map<String, Value>, path: &str, method: &str, op: Value) {
    let entry = paths.entry(path.to_owned()).or_insert_with(|| json!({}));
    entry[method] = op;
}

/// The nine batch pipelines, `/v1/chat/completions`, result files and async results.
fn ai_paths(paths: &mut Map<String, Value>, limits: &Limits) {
    for p in Pipeline::ALL {
        let path = format!("/{}", p.name());
        let media =
            if p.file_field().is_some() { "multipart/form-data" } else { "application/json" };
        let body = json!({ "required": true, "content": { media: { "schema": p.request_schema(limits) } } });
        let mut ok = content("the result", "application/json", any_object());
        if p == Pipeline::Llm {
            ok["content"]["text/event-stream"] = json!({ "schema": { "type": "string" } });
        }
        let answers = responses(ok, &[400, 401, 403, 413, 422, 429, 500, 502, 503, 504]);
        add(
            paths,
            &path,
            "post",
            op(&path, "ai", &format!("Run {}", p.name()), Some(body), answers),
        );
    }
    let chat = json!({ "type": "object", "required": ["model", "messages"], "properties": {
        "model": { "type": "string" }, "stream": { "type": "boolean" },
        "messages": { "type": "array", "items": { "type": "object" } },
    } });
    let mut ok =
        content("a chat completion (or its chunks as SSE)", "application/json", any_object());
    ok["content"]["text/event-stream"] = json!({ "schema": { "type": "string" } });
    let answers = responses(ok, &[400, 401, 403, 422, 429, 502, 503, 504]);
    let path = "/v1/chat/completions";
    let summary = "OpenAI-compatible chat completion";
    add(paths, path, "post", op(path, "ai", summary, Some(json_body(chat)), answers));
    let path = "/results/{id}/{file}";
    let ok = content("a result file", "application/octet-stream", json!({ "type": "string" }));
    add(paths, path, "get", op(path, "ai", "A result file", None, responses(ok, &[404])));
    async_paths(paths);
}

/// Async image-to-video (go-livepeer's): `Prefer: respond-async` on `/image-to-video`, and
/// its result route.
fn async_paths(paths: &mut Map<String, Value>) {
    let i2v = &mut paths["/image-to-video"]["post"];
    i2v["parameters"] = json!([{
        "name": "Prefer", "in": "header", "required": false,
        "description": "`respond-async`: answer 202 with a request id at once, and run the job \
            in the background; poll /image-to-video/result for its result",
        "schema": { "type": "string" },
    }]);
    let id = json!({ "type": "object", "required": ["request_id"],
        "properties": { "request_id": { "type": "string" } } });
    i2v["responses"]["202"] =
        content("accepted (Prefer: respond-async)", "application/json", id.clone());
    let processing = json!({ "type": "object", "required": ["status"],
        "properties": { "status": { "const": "processing" } } });
    let complete = json!({ "type": "object", "required": ["status", "result"], "properties": {
        "status": { "const": "complete" },
        "result": { "description": "the synchronous request's answer: {images: [{url, seed, \
            nsfw}]}, or the error body of a job that failed", "type": "object" },
    } });
    let mut answers =
        responses(content("the job has ended", "application/json", complete), &[400, 413]);
    answers["202"] = content("the job is running", "application/json", processing);
    let path = "/image-to-video/result";
    let summary = "The result of an async image-to-video job (400: invalid request ID)";
    add(paths, path, "post", op(path, "ai", summary, Some(json_body(id)), answers));
}

/// The catalogue, the model list, usage, the page, the document itself and health.
fn catalog_paths(paths: &mut Map<String, Value>) {
    let ok = content("what the gateway offers now", "application/json", schema_ref("Catalog"));
    add(
        paths,
        "/v1/catalog",
        "get",
        op("/v1/catalog", "catalog", "The catalogue", None, responses(ok, &[])),
    );
    let ok = content("the LLMs, in OpenAI's shape", "application/json", schema_ref("ModelList"));
    add(
        paths,
        "/v1/models",
        "get",
        op("/v1/models", "catalog", "The models", None, responses(ok, &[])),
    );
    let ok = content("the caller's usage (with --auth keys)", "application/json", any_object());
    let summary = "The calling key's usage (served with --auth keys)";
    add(
        paths,
        "/v1/usage",
        "get",
        op("/v1/usage", "keys", summary, None, responses(ok, &[401, 503])),
    );
    let ok = content("the catalogue as a page", "text/html", json!({ "type": "string" }));
    add(
        paths,
        "/",
        "get",
        op("/", "catalog", "The catalogue for people", None, responses(ok, &[])),
    );
    let ok = content("this document", "application/json", any_object());
    add(
        paths,
        "/openapi.json",
        "get",
        op("/openapi.json", "catalog", "This document", None, responses(ok, &[])),
    );
    let ok = content("alive", "text/plain", json!({ "type": "string" }));
    add(paths, "/healthz", "get", op("/healthz", "health", "Liveness", None, responses(ok, &[])));
}

/// Live video-to-video.
fn live_paths(paths: &mut Map<String, Value>) {
    let base = "/live/video-to-video/{stream}";
    let start = json!({ "type": "object", "properties": {
        "pipeline": { "type": "string" }, "params": { "type": "object" },
        "stream_id": { "type": "string" },
    } });
    let ok = content("the stream's channels and secret", "application/json", any_object());
    let path = format!("{base}/start");
    let summary = "Start a live stream";
    add(
        paths,
        &path,
        "post",
        op(
            &path,
            "live",
            summary,
            Some(json_body(start)),
            responses(ok, &[400, 401, 403, 409, 503]),
        ),
    );
    let path = format!("{base}/update");
    let ok = content("forwarded", "application/json", any_object());
    let summary = "Update its params";
    add(
        paths,
        &path,
        "post",
        op(
            &path,
            "live",
            summary,
            Some(json_body(any_object())),
            responses(ok, &[400, 401, 403, 404]),
        ),
    );
    let path = format!("{base}/status");
    let ok = content("its status", "application/json", any_object());
    add(
        paths,
        &path,
        "get",
        op(&path, "live", "Its status", None, responses(ok, &[401, 403, 404])),
    );
    let path = format!("{base}/stop");
    let ok = content("stopped", "application/json", any_object());
    let stop = op(&path, "live", "Stop it", None, responses(ok, &[401, 403, 404]));
    add(paths, &path, "post", stop.clone());
    add(paths, &path, "delete", stop);
}

/// BYOC jobs and streams.
fn byoc_paths(paths: &mut Map<String, Value>) {
    let header = json!({ "name": "Livepeer", "in": "header", "required": true,
        "description": "base64 of {\"request\", \"parameters\", \"capability\", \"timeout_seconds\"}",
        "schema": { "type": "string" } });
    let path = "/process/request/{path}";
    let body =
        json!({ "required": false, "content": { "*/*": { "schema": { "type": "string" } } } });
    let ok = content("the capability's answer", "*/*", json!({ "type": "string" }));
    let mut job =
        op(path, "byoc", "Run a BYOC job", Some(body), responses(ok, &[400, 401, 403, 503]));
    if let Some(p) = job["parameters"].as_array_mut() {
        p.push(header.clone());
    }
    add(paths, path, "post", job);
    let path = "/process/stream/start";
    let ok = content("the stream's URLs", "application/json", any_object());
    let mut start = op(
        path,
        "byoc",
        "Start a BYOC stream",
        Some(json_body(any_object())),
        responses(ok, &[400, 401, 403, 503]),
    );
    if let Some(p) = start["parameters"].as_array_mut() {
        p.push(header);
    }
    add(paths, path, "post", start);
    for (verb, what, method) in [
        ("update", "Update it", "post"),
        ("status", "Its status", "get"),
        ("stop", "Stop it", "post"),
    ] {
        let path = format!("/process/stream/{{id}}/{verb}");
        let ok = content(what, "application/json", any_object());
        add(paths, &path, method, op(&path, "byoc", what, None, responses(ok, &[401, 403, 404])));
    }
    let path = "/process/stream/{id}/data";
    let ok = content("its data events (SSE)", "text/event-stream", json!({ "type": "string" }));
    add(
        paths,
        path,
        "get",
        op(path, "byoc", "Its data output", None, responses(ok, &[401, 403, 404])),
    );
}

/// Transcoding: HTTP push and HLS playback.
fn transcode_paths(paths: &mut Map<String, Value>) {
    let path = "/live/{manifest}/{file}";
    let body = json!({ "required": true, "content": { "video/mp2t": { "schema": { "type": "string" } } } });
    let ok = content(
        "stored, or every rendition as multipart/mixed",
        "multipart/mixed",
        json!({ "type": "string" }),
    );
    let push = op(
        path,
        "transcode",
        "Push a segment ({seq}.ts or .mp4)",
        Some(body),
        responses(ok, &[400, 403, 413, 422, 503]),
    );
    add(paths, path, "post", push.clone());
    add(paths, path, "put", push);
    let text = || json!({ "type": "string" });
    let playlist = |what: &str| content(what, "application/vnd.apple.mpegurl", text());
    for (path, summary, ok) in [
        ("/stream/{file}", "Master playlist ({manifest}.m3u8)", playlist("master playlist")),
        (
            "/stream/{manifest}/{file}",
            "Media playlist ({rendition}.m3u8)",
            playlist("media playlist"),
        ),
        (
            "/stream/{manifest}/{rendition}/{file}",
            "A segment ({seq}.ts)",
            content("a segment", "video/mp2t", text()),
        ),
    ] {
        add(paths, path, "get", op(path, "transcode", summary, None, responses(ok, &[404])));
    }
}

/// The remote-signer routes, served when this gateway is a signer.
fn signer_paths(paths: &mut Map<String, Value>) {
    for (path, method, summary) in [
        ("/sign-orchestrator-info", "post", "Sign the orchestrator request"),
        ("/discover-orchestrators", "get", "The orchestrators a signer knows"),
        ("/generate-live-payment", "post", "Make a payment"),
        ("/sign-byoc-job", "post", "Sign a BYOC job"),
    ] {
        let body = (method == "post").then(|| json_body(any_object()));
        let ok = content("signed", "application/json", any_object());
        add(
            paths,
            path,
            method,
            op(path, "signer", summary, body, responses(ok, &[400, 401, 503])),
        );
    }
}

/// The document.
pub(crate) fn document(limits: &Limits, signer: bool) -> Value {
    let mut paths = Map::new();
    ai_paths(&mut paths, limits);
    catalog_paths(&mut paths);
    live_paths(&mut paths);
    byoc_paths(&mut paths);
    transcode_paths(&mut paths);
    if signer {
        signer_paths(&mut paths);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Livepeer gateway",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The public API of a Livepeer gateway: batch AI pipelines, an \
                OpenAI-compatible chat route, live video, BYOC jobs and streams, transcoding, \
                and what the gateway offers now. With --auth keys, job routes need \
                `Authorization: Bearer <key>`.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": { "customerKey": { "type": "http", "scheme": "bearer" } },
            "schemas": super::openapi_schemas::schemas(),
        },
    })
}
