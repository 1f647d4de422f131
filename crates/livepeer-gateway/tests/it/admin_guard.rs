//! The admin API without `--admin-token` (loopback only) against web pages the operator has
//! open: a DNS-rebound page names its own host, a cross-site one sends its `Origin`, and a
//! form or `text/plain` POST needs no preflight. None may read or change keys.

use std::net::SocketAddr;

use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::keys::keys_config;
use crate::support::*;

/// One HTTP/1.1 request written as is (`extra` header lines end in CRLF); the status and
/// the JSON body of the answer.
async fn raw(addr: SocketAddr, head: &str, extra: &str, body: &str) -> (u16, Value) {
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{head} HTTP/1.1\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).await.unwrap();
    let status = answer.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let json = answer.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
    (status, serde_json::from_str(json).unwrap_or(Value::Null))
}

fn assert_refused(answer: &(u16, Value), status: u16, kind: &str, what: &str) {
    let (got, body) = answer;
    assert_eq!(*got, status, "{what}: {body}");
    assert_eq!(body["error"]["type"], kind, "{what}: {body}");
    assert!(!body["error"]["message"].as_str().unwrap_or_default().is_empty(), "{what}");
}

#[tokio::test]
async fn the_token_less_admin_api_refuses_other_hosts_other_sites_and_non_json_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = keys_config(&[], dir.path(), None);
    c.keys.admin_token = None;
    let gw = start(c).await;
    let admin = gw.admin_addr;
    let local = format!("Host: {admin}\r\n");
    let key = r#"{"name": "k"}"#;
    let json = "Content-Type: application/json\r\n";

    // DNS rebinding: the page's own name in `Host`, reading keys or making one.
    let rebound = "Host: attacker.example:5935\r\n";
    let answer = raw(admin, "GET /keys", rebound, "").await;
    assert_refused(&answer, 403, "forbidden", "a rebound GET");
    let answer = raw(admin, "POST /keys", &format!("{rebound}{json}"), key).await;
    assert_refused(&answer, 403, "forbidden", "a rebound POST");
    let answer = raw(admin, "GET /orchestrators", "Host: localhost.attacker.example\r\n", "").await;
    assert_refused(&answer, 403, "forbidden", "a look-alike name");

    // A cross-site POST from a page: its `Origin`, whatever the type.
    let cross = format!("{local}Origin: https://attacker.example\r\n");
    let answer = raw(admin, "POST /keys", &format!("{cross}{json}"), key).await;
    assert_refused(&answer, 403, "forbidden", "a cross-site POST");
    let answer = raw(admin, "POST /keys", &format!("{local}Origin: null\r\n"), key).await;
    assert_refused(&answer, 403, "forbidden", "a sandboxed page's POST");

    // A body a form or a simple `fetch` can send without a preflight is not taken.
    for kind in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"] {
        let head = format!("{local}Content-Type: {kind}\r\n");
        let answer = raw(admin, "POST /keys", &head, key).await;
        assert_refused(&answer, 415, "unsupported_media_type", kind);
    }
    let answer = raw(admin, "POST /keys", &local, key).await;
    assert_refused(&answer, 415, "unsupported_media_type", "no Content-Type");
    let (_, keys) = raw(admin, "GET /keys", &local, "").await;
    assert_eq!(keys["keys"], serde_json::json!([]), "nothing was made: {keys}");

    // Local tools and the dashboard's own page pass: loopback names at any port, and the
    // listener's own origin.
    let (status, made) = raw(admin, "POST /keys", &format!("{local}{json}"), key).await;
    assert_eq!(status, 201, "{made}");
    let id = made["key"]["id"].as_str().unwrap().to_owned();
    let patch = r#"{"name": "renamed"}"#;
    let own = format!("Host: localhost:1\r\nOrigin: http://{admin}\r\n");
    let answer = raw(admin, &format!("PATCH /keys/{id}"), &own, patch).await;
    assert_refused(&answer, 415, "unsupported_media_type", "a PATCH without a type");
    let (status, patched) =
        raw(admin, &format!("PATCH /keys/{id}"), &format!("{own}{json}"), patch).await;
    assert_eq!((status, &patched["key"]["name"]), (200, &Value::from("renamed")), "{patched}");
    let (status, _) = raw(admin, "GET /orchestrators", "Host: [::1]:5935\r\n", "").await;
    assert_eq!(status, 200);
    // Health answers any prober, as it does with a token.
    let (status, _) = raw(admin, "GET /healthz", "Host: x\r\n", "").await;
    assert_eq!(status, 200);
    gw.shutdown().await;
}
