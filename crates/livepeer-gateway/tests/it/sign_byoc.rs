//! `POST /sign-byoc-job` over HTTP: the Python SDK's BYOC signing call, behind the API key.

use std::sync::Arc;

use livepeer_gateway::Gateway;
use livepeer_pm::{Address, LocalSigner};
use serde_json::{Value, json};

use crate::support::*;

const KEY: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
const API_KEY: &str = "byoc-api-key-0123456789";

async fn signer_gateway() -> Gateway {
    let mut c = config(&[]);
    c.signer = Some(Arc::new(LocalSigner::from_hex(KEY).unwrap()));
    c.serve_signer = Some(API_KEY.to_owned().into());
    start(c).await
}

/// POSTs `body` (raw bytes) to `/sign-byoc-job` with `auth` as the `Authorization` value.
async fn sign(gw: &Gateway, auth: Option<&str>, body: Vec<u8>) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("http://{}/sign-byoc-job", gw.http_addr))
        .header("Content-Type", "application/json")
        .body(body);
    if let Some(auth) = auth {
        req = req.header("Authorization", auth);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// The body the SDK sends (`livepeer_gateway.byoc._sign_byoc_job`).
fn sdk_body(request: &str, parameters: &str) -> Vec<u8> {
    json!({
        "id": "0b8e3f0e-4b55-4d43-9a4e-0d7f3a6f1c11",
        "capability": "text-reversal",
        "request": request,
        "parameters": parameters,
        "timeout_seconds": 300,
    })
    .to_string()
    .into_bytes()
}

#[tokio::test]
async fn a_signed_job_recovers_to_the_signer() {
    let gw = signer_gateway().await;
    let bearer = format!("Bearer {API_KEY}");
    let key = LocalSigner::from_hex(KEY).unwrap();
    for (request, parameters) in [(r#"{"text": "hello"}"#, ""), (r#"{"a": 1}"#, r#"{"b": 2}"#)] {
        let (status, body) = sign(&gw, Some(&bearer), sdk_body(request, parameters)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["sender"], key.address().to_checksum(None));
        let sig = body["signature"].as_str().unwrap();
        let sig = hex::decode(sig.strip_prefix("0x").expect("0x-prefixed")).unwrap();
        assert_eq!(sig.len(), 65);
        // As go-livepeer's orchestrator checks it: eth_sign(request ‖ parameters) by sender.
        let message = format!("{request}{parameters}");
        let who: Address = livepeer_pm::recover_eth_signer(message.as_bytes(), &sig).unwrap();
        assert_eq!(who, key.address());
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn unauthorized_and_bad_bodies_are_refused() {
    let gw = signer_gateway().await;
    let good = sdk_body(r#"{"text": "x"}"#, "");
    for auth in [None, Some("Bearer wrong"), Some(API_KEY)] {
        let (status, body) = sign(&gw, auth, good.clone()).await;
        assert_eq!(status, 401, "{auth:?}: {body}");
        assert_eq!(body["error"]["field"], "Authorization");
        assert!(body.get("signature").is_none());
    }

    let bearer = format!("Bearer {API_KEY}");
    let bad: [(&[u8], &str); 6] = [
        (b"not json", "body"),
        (br#"{"capability": "c"}"#, "request"),
        (br#"{"capability": "c", "request": "plain text"}"#, "request"),
        (br#"{"capability": "c", "request": "{}", "parameters": 7}"#, "parameters"),
        (br#"{"request": "{}"}"#, "capability"),
        (br#"{"capability": "c", "request": "{}", "timeout_seconds": 0}"#, "timeout_seconds"),
    ];
    for (body, field) in bad {
        let (status, answer) = sign(&gw, Some(&bearer), body.to_vec()).await;
        assert_eq!(status, 400, "{}: {answer}", String::from_utf8_lossy(body));
        assert_eq!(answer["error"]["type"], "invalid_request");
        assert_eq!(answer["error"]["field"], field, "{answer}");
        assert!(answer["error"]["message"].as_str().unwrap().contains(field), "{answer}");
    }

    // The body is bounded: a request beyond 1 MiB is not read into memory.
    let huge = sdk_body(&format!(r#"{{"text": "{}"}}"#, "a".repeat(1 << 20)), "");
    let (status, answer) = sign(&gw, Some(&bearer), huge).await;
    assert_eq!(status, 413, "{answer}");
    gw.shutdown().await;
}
