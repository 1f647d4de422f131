//! Customer keys (`--auth keys`) on SQLite in a temporary directory: the key lifecycle through
//! the admin API, the admin token, and each enforcement answer on the public routes.

use std::path::Path;

use livepeer_gateway::Gateway;
use livepeer_gateway::keys::KeysConfig;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::*;

pub const TOKEN: &str = "admin-token-0123456789";

/// A config with keys on, stored under `dir`, for the orchestrators at `urls`.
pub fn keys_config(
    urls: &[&str],
    dir: &Path,
    database_url: Option<String>,
) -> livepeer_gateway::Config {
    let mut c = config(urls);
    c.keys = KeysConfig {
        database_url: database_url.map(Into::into),
        admin_token: Some(TOKEN.to_owned().into()),
        ..KeysConfig::sqlite(dir.to_owned())
    };
    c
}

/// Calls the admin API with the token.
pub async fn admin(
    gw: &Gateway,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let url = format!("http://{}{path}", gw.admin_addr);
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = reqwest::Client::new().request(method, url).bearer_auth(TOKEN);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Creates a key; answers its id and secret.
pub async fn create(gw: &Gateway, body: Value) -> (String, String) {
    let (status, answer) = admin(gw, "POST", "/keys", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let secret = answer["secret"].as_str().unwrap().to_owned();
    (answer["key"]["id"].as_str().unwrap().to_owned(), secret)
}

/// The whole lifecycle on one database; `keys_pg` runs it on PostgreSQL.
pub async fn lifecycle(gw: &Gateway) -> (String, String) {
    // Bad bodies name their field.
    for (body, field) in [
        (json!({}), "name"),
        (json!({"name": "a", "colour": 1}), "colour"),
        (json!({"name": "a", "requests_per_minute": 0}), "requests_per_minute"),
        (json!({"name": "a", "allowed": ["/x"]}), "allowed"),
        (json!({"name": "a", "metadata": [1]}), "metadata"),
        (json!({"name": "a", "budget_micro_usd": -1}), "budget_micro_usd"),
    ] {
        let (status, answer) = admin(gw, "POST", "/keys", Some(body.clone())).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {answer}");
        assert_eq!(answer["error"]["field"], field, "{body}: {answer}");
    }
    // Too large, past axum's own 2 MiB too, and a path that is not UTF-8: JSON all the same.
    let big = json!({"name": "a", "metadata": {"x": "y".repeat(3 << 20)}});
    let (status, answer) = admin(gw, "POST", "/keys", Some(big)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
    assert_eq!(answer["error"]["type"], "body_too_large", "{answer}");
    let (status, answer) = admin(gw, "GET", "/keys/%FF", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["error"]["field"], "path", "{answer}");
    let body = json!({
        "name": "alice",
        "metadata": {"account": "42"},
        "allowed": ["text-to-image"],
        "requests_per_minute": 600,
        "budget_micro_usd": 50_000_000u64,
        "budget_period_seconds": 2_592_000,
    });
    let (status, answer) = admin(gw, "POST", "/keys", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let secret = answer["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("lpk_") && secret.len() == 68, "{secret}");
    let key = &answer["key"];
    let id = key["id"].as_str().unwrap().to_owned();
    assert_eq!(key["prefix"], secret[..8]);
    assert_eq!(key["metadata"]["account"], "42");
    assert_eq!(key["budget_micro_usd"], 50_000_000u64);
    assert_eq!(key["enabled"], true);
    assert_eq!(key["expires_at"], Value::Null);

    // Listed and shown, never with the secret.
    let (status, list) = admin(gw, "GET", "/keys", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(list["keys"].as_array().unwrap().iter().any(|k| k["id"] == id.as_str()), "{list}");
    assert!(!list.to_string().contains(&secret));
    let (status, shown) = admin(gw, "GET", &format!("/keys/{id}"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&shown["key"], key);
    assert!(!shown.to_string().contains(&secret[8..]));

    // Updated: set, cleared, checked.
    let patch = json!({"name": "alice2", "requests_per_minute": null, "max_streams": 3});
    let (status, patched) = admin(gw, "PATCH", &format!("/keys/{id}"), Some(patch)).await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["key"]["name"], "alice2");
    assert_eq!(patched["key"]["requests_per_minute"], Value::Null);
    assert_eq!(patched["key"]["max_streams"], 3);
    assert_eq!(patched["key"]["budget_micro_usd"], 50_000_000u64);
    let bad = json!({"budget_period_seconds": 0});
    let (status, answer) = admin(gw, "PATCH", &format!("/keys/{id}"), Some(bad)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(answer["error"]["field"], "budget_period_seconds");
    let (status, answer) = admin(gw, "PATCH", "/keys/key_nope", Some(json!({"name": "x"}))).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    (id, secret)
}

/// Disables, then deletes, key `id`.
pub async fn disable_and_delete(gw: &Gateway, id: &str) {
    let (status, answer) = admin(gw, "POST", &format!("/keys/{id}/disable"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["key"]["enabled"], false);
    let (status, _) = admin(gw, "DELETE", &format!("/keys/{id}"), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, answer) = admin(gw, "GET", &format!("/keys/{id}"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(answer["error"]["field"], "id");
    let (status, _) = admin(gw, "DELETE", &format!("/keys/{id}"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// `POST /text-to-image` with `secret` as the bearer (none if `None`).
pub async fn t2i_as(gw: &Gateway, secret: Option<&str>, model: &str) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .post(format!("http://{}/text-to-image", gw.http_addr))
        .json(&json!({"prompt": "a cat", "model_id": model, "width": 64, "height": 64}));
    if let Some(secret) = secret {
        req = req.bearer_auth(secret);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn keys_lifecycle_through_the_admin_api_persists_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let gw = start(keys_config(&[], dir.path(), None)).await;
    let (id, secret) = lifecycle(&gw).await;
    assert!(dir.path().join("gateway.sqlite").exists());
    gw.shutdown().await;

    // The same database after a restart: the key is there, its secret still works.
    let gw = start(keys_config(&[], dir.path(), None)).await;
    let (status, shown) = admin(&gw, "GET", &format!("/keys/{id}"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown["key"]["name"], "alice2");
    // No orchestrator: past the key check, the job finds none (503), not 401.
    let resp = t2i_as(&gw, Some(&secret), SD).await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    disable_and_delete(&gw, &id).await;
    gw.shutdown().await;
}

#[tokio::test]
async fn the_admin_api_needs_its_token_but_health_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let gw = start(keys_config(&[], dir.path(), None)).await;
    let http = reqwest::Client::new();
    let url = |path: &str| format!("http://{}{path}", gw.admin_addr);
    for (token, path) in
        [(None, "/keys"), (Some("wrong-token-0123456789"), "/keys"), (None, "/status")]
    {
        let mut req = http.get(url(path));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{path} {token:?}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["type"], "unauthorized");
    }
    let resp = http.get(url("/healthz")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = http.get(url("/status")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    gw.shutdown().await;

    // Keys off: `/keys` says how to turn them on; nothing else changes.
    let gw = start(config(&[])).await;
    let (status, body) = admin_get(&gw, "/keys").await;
    assert_eq!(status, 404);
    assert!(body["error"]["message"].as_str().unwrap().contains("--auth keys"), "{body}");
    let (status, _) = admin_get(&gw, "/status").await;
    assert_eq!(status, 200);
    gw.shutdown().await;
}

fn assert_error(status: StatusCode, body: &Value, want: StatusCode, kind: &str) {
    assert_eq!(status, want, "{body}");
    assert_eq!(body["error"]["type"], kind, "{body}");
    assert_eq!(body["error"]["status"], want.as_u16(), "{body}");
}

async fn answer(resp: reqwest::Response) -> (StatusCode, Value) {
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn job_routes_answer_401_403_and_429_with_retry_after() {
    let sim = TextSim::new("keys").start().await;
    let dir = tempfile::tempdir().unwrap();
    let gw = start(keys_config(&[sim.url()], dir.path(), None)).await;
    let unauthorized = StatusCode::UNAUTHORIZED;

    // Missing, malformed and unknown keys.
    let (status, body) = answer(t2i_as(&gw, None, SD).await).await;
    assert_error(status, &body, unauthorized, "invalid_api_key");
    let (status, body) = answer(t2i_as(&gw, Some("lpk_0000"), SD).await).await;
    assert_error(status, &body, unauthorized, "invalid_api_key");

    // A key for one model: that model works, another model and another pipeline do not.
    let (_, sd_only) =
        create(&gw, json!({"name": "sd", "allowed": [format!("text-to-image/{SD}")]})).await;
    let resp = t2i_as(&gw, Some(&sd_only), SD).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let (status, body) = answer(t2i_as(&gw, Some(&sd_only), SDXL).await).await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "model_not_allowed");
    assert_eq!(body["error"]["field"], "model_id");
    let chat = reqwest::Client::new()
        .post(format!("http://{}/v1/chat/completions", gw.http_addr))
        .bearer_auth(&sd_only)
        .json(&json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    let (status, body) = answer(chat).await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "model_not_allowed");

    // Two requests a minute: the third waits, told how long.
    let (_, slow) = create(&gw, json!({"name": "slow", "requests_per_minute": 2})).await;
    for _ in 0..2 {
        assert_eq!(t2i_as(&gw, Some(&slow), SD).await.status(), StatusCode::OK);
    }
    let resp = t2i_as(&gw, Some(&slow), SD).await;
    let retry: u32 = resp.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=30).contains(&retry), "{retry}");
    let (status, body) = answer(resp).await;
    assert_error(status, &body, StatusCode::TOO_MANY_REQUESTS, "rate_limit_exceeded");

    // Disabled (seen at once: the change empties the cache) and expired keys.
    let (id, secret) = create(&gw, json!({"name": "soon-off"})).await;
    assert_eq!(t2i_as(&gw, Some(&secret), SD).await.status(), StatusCode::OK);
    admin(&gw, "POST", &format!("/keys/{id}/disable"), None).await;
    let (status, body) = answer(t2i_as(&gw, Some(&secret), SD).await).await;
    assert_error(status, &body, unauthorized, "invalid_api_key");
    assert!(body["error"]["message"].as_str().unwrap().contains("disabled"), "{body}");
    let (_, expired) = create(&gw, json!({"name": "old", "expires_at": 1})).await;
    let (status, body) = answer(t2i_as(&gw, Some(&expired), SD).await).await;
    assert_error(status, &body, unauthorized, "invalid_api_key");
    assert!(body["error"]["message"].as_str().unwrap().contains("expired"), "{body}");

    // Routes that are not jobs need no key.
    let health = reqwest::get(format!("http://{}/healthz", gw.http_addr)).await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    gw.shutdown().await;

    // Keys off (the default): the same call without a key works as before.
    let gw = start(config(&[sim.url()])).await;
    assert_eq!(t2i_as(&gw, None, SD).await.status(), StatusCode::OK);
    gw.shutdown().await;
}

#[tokio::test]
async fn live_byoc_and_transcoding_routes_need_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let gw = start(keys_config(&[], dir.path(), None)).await;
    let http = reqwest::Client::new();
    let (_, t2i_only) = create(&gw, json!({"name": "t2i", "allowed": ["text-to-image"]})).await;
    let routes = [
        ("POST", "/live/video-to-video/s1/start"),
        ("POST", "/process/request/anything"),
        ("POST", "/process/stream/start"),
        ("PUT", "/live/m1/0.ts"),
        ("POST", "/llm"),
    ];
    for (method, path) in routes {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let url = format!("http://{}{path}", gw.http_addr);
        let (status, body) = answer(http.request(method.clone(), &url).send().await.unwrap()).await;
        assert_error(status, &body, StatusCode::UNAUTHORIZED, "invalid_api_key");
        let resp = http.request(method, &url).bearer_auth(&t2i_only).send().await.unwrap();
        let (status, body) = answer(resp).await;
        assert_error(status, &body, StatusCode::FORBIDDEN, "model_not_allowed");
    }
    // BYOC: `byoc/<capability>` allows that capability only, checked from the job header.
    use base64::Engine as _;
    let (_, reverse_only) = create(&gw, json!({"name": "b", "allowed": ["byoc/reverse"]})).await;
    let job =
        json!({"request": "{}", "parameters": "{}", "capability": "other", "timeout_seconds": 30});
    let header = base64::engine::general_purpose::STANDARD.encode(job.to_string());
    let resp = http
        .post(format!("http://{}/process/request/x", gw.http_addr))
        .bearer_auth(&reverse_only)
        .header("Livepeer", header)
        .send()
        .await
        .unwrap();
    let (status, body) = answer(resp).await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "model_not_allowed");
    assert_eq!(body["error"]["field"], "capability");
    gw.shutdown().await;
}

/// `GET /v1/usage` with `secret`.
async fn own_usage(gw: &Gateway, secret: Option<&str>, query: &str) -> (StatusCode, Value) {
    let mut req = reqwest::Client::new().get(format!("http://{}/v1/usage{query}", gw.http_addr));
    if let Some(secret) = secret {
        req = req.bearer_auth(secret);
    }
    answer(req.send().await.unwrap()).await
}

#[tokio::test]
async fn the_usage_ledger_keeps_every_request_across_a_shutdown_and_each_key_sees_its_own() {
    let sim = TextSim::new("ledger").start().await;
    let dir = tempfile::tempdir().unwrap();
    let gw = start(keys_config(&[sim.url()], dir.path(), None)).await;
    let allowed = json!({"name": "a", "allowed": [format!("text-to-image/{SD}")]});
    let (a_id, a) = create(&gw, allowed).await;
    let (b_id, b) = create(&gw, json!({"name": "b"})).await;
    for _ in 0..3 {
        assert_eq!(t2i_as(&gw, Some(&a), SD).await.status(), StatusCode::OK);
    }
    assert_eq!(t2i_as(&gw, Some(&a), SDXL).await.status(), StatusCode::FORBIDDEN);
    assert_eq!(t2i_as(&gw, Some(&b), SD).await.status(), StatusCode::OK);
    // Shut down at once: the rows still queued are written before the gateway stops.
    gw.shutdown().await;

    let gw = start(keys_config(&[sim.url()], dir.path(), None)).await;
    let (status, usage) = own_usage(&gw, Some(&a), "").await;
    assert_eq!(status, StatusCode::OK, "{usage}");
    assert_eq!(usage["key_id"], a_id.as_str());
    assert_eq!(usage["requests"], 4, "{usage}");
    assert_eq!(usage["errors"], 1, "{usage}");
    let lines = usage["by_model"].as_array().unwrap();
    let line = |model: &str| lines.iter().find(|l| l["model"] == model).unwrap().clone();
    assert_eq!(line(SD)["requests"], 3);
    assert_eq!(line(SD)["pipeline"], "text-to-image");
    assert_eq!(line(SDXL)["errors"], 1);
    // Another key sees only its own; the admin sees any key's.
    let (_, usage) = own_usage(&gw, Some(&b), "").await;
    assert_eq!(usage["key_id"], b_id.as_str());
    assert_eq!(usage["requests"], 1, "{usage}");
    let (status, admin_view) = admin(&gw, "GET", &format!("/keys/{a_id}/usage"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(admin_view["requests"], 4);
    // A range before the requests is empty; bad ranges and missing keys are refused.
    let (_, usage) = own_usage(&gw, Some(&a), "?from=0&to=1").await;
    assert_eq!(usage["requests"], 0, "{usage}");
    let (status, body) = own_usage(&gw, Some(&a), "?from=soon").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["field"], "query");
    let (status, body) = own_usage(&gw, None, "").await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "invalid_api_key");
    gw.shutdown().await;
}
