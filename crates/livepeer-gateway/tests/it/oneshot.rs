//! Handlers called in-process with `Router::oneshot`: no request crosses a socket. The state
//! comes from a gateway started with no orchestrators (its own listeners stay unused here).

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt as _;
use serde_json::Value;
use tower::ServiceExt as _;

use crate::support::*;

/// Status and body of one in-process request.
async fn call(router: axum::Router, request: Request<Body>) -> (StatusCode, Vec<u8>) {
    let response = router.oneshot(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes().to_vec();
    (status, body)
}

#[tokio::test]
async fn admin_healthz_answers_ok() {
    let gw = start(config(&[])).await;
    let router = gw.admin_router();
    let (status, body) = call(router, Request::get("/healthz").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, b"ok");
}

#[tokio::test]
async fn admin_lists_no_orchestrators_when_none_are_configured() {
    let gw = start(config(&[])).await;
    let router = gw.admin_router();
    let request = Request::get("/orchestrators").body(Body::empty()).unwrap();
    let (status, body) = call(router, request).await;
    assert_eq!(status, StatusCode::OK);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["orchestrators"], serde_json::json!([]), "{v}");
}

#[tokio::test]
async fn live_status_of_an_unknown_stream_is_404() {
    let gw = start(config(&[])).await;
    let request = Request::get("/live/video-to-video/nope/status").body(Body::empty()).unwrap();
    let (status, _) = call(gw.public_router(), request).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn live_start_with_a_bad_stream_name_is_422_naming_the_field() {
    let gw = start(config(&[])).await;
    let request = Request::post("/live/video-to-video/x-out/start")
        .header("content-type", "application/json")
        .body(Body::from("{}"))
        .unwrap();
    let (status, body) = call(gw.public_router(), request).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"]["field"], "stream", "{v}");
}

#[tokio::test]
async fn an_ai_request_missing_its_prompt_is_422_in_the_spec_shape() {
    let gw = start(config(&[])).await;
    let request = Request::post("/text-to-image")
        .header("content-type", "application/json")
        .body(Body::from(r#"{"model_id": "m"}"#))
        .unwrap();
    let (status, body) = call(gw.public_router(), request).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"]["type"], "validation_error", "{v}");
    assert_eq!(v["error"]["field"], "prompt", "{v}");
    assert_eq!(v["detail"][0]["loc"], serde_json::json!(["body", "prompt"]), "{v}");
}

#[tokio::test]
async fn an_ai_request_with_no_orchestrator_is_503_with_retry_after() {
    let gw = start(config(&[])).await;
    let request = Request::post("/text-to-image")
        .header("content-type", "application/json")
        .body(Body::from(r#"{"prompt": "a cat", "model_id": "m"}"#))
        .unwrap();
    let response = gw.public_router().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "30");
    assert!(response.headers().contains_key("x-request-id"));
}
