//! Streamed LLM answers under a client that stops reading and under shutdown, over real
//! sockets: who is blamed for a stall, and how a stream ends when the gateway stops.

use std::time::Duration;

use livepeer_gateway::Gateway;
use livepeer_sim::{Sim, SimConfig, SimModel};
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};

use crate::support::*;

/// A simulated orchestrator serving one LLM, pausing `token_delay` before each token.
async fn llm_sim(name: &str, token_delay: Duration) -> Sim {
    Sim::start(SimConfig {
        name: name.into(),
        models: vec![SimModel::new("llm", LLM).price(1, 1).capacity(8)],
        token_delay,
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

/// A raw `POST /llm` asking for a stream of `tokens` tokens, on a connection with a small
/// receive buffer, so that a client that stops reading fills it quickly.
async fn send_stream_request(gw: &Gateway, tokens: usize) -> TcpStream {
    send_stream_request_as(gw, tokens, None).await
}

/// As [`send_stream_request`], with a customer key when `key` is given.
async fn send_stream_request_as(gw: &Gateway, tokens: usize, key: Option<&str>) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut conn = socket.connect(gw.http_addr).await.unwrap();
    let words = vec!["w"; tokens].join(" ");
    let body = json!({
        "model": LLM,
        "stream": true,
        "max_tokens": tokens,
        "messages": [{"role": "user", "content": words}],
    })
    .to_string();
    let auth = key.map(|k| format!("Authorization: Bearer {k}\r\n")).unwrap_or_default();
    let head = format!(
        "POST /llm HTTP/1.1\r\nHost: gw\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(body.as_bytes()).await.unwrap();
    conn
}

/// Reads until the end of the response headers; returns them and what followed.
async fn read_head(conn: &mut TcpStream) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 512];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut chunk))
            .await
            .expect("response headers within 5 s")
            .unwrap();
        assert!(n > 0, "connection closed before the headers: {buf:?}");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            return (String::from_utf8_lossy(&buf).into_owned(), rest);
        }
    }
}

/// Item 4 of issue 11: a client that stops reading is the client's stall, not the
/// orchestrator's. The gateway ends the stream after `--ai-stream-client-timeout` and releases
/// the orchestrator without penalty, although the stall outlasts the idle limit many times.
#[tokio::test]
async fn a_client_that_stops_reading_does_not_get_the_orchestrator_ejected() {
    let sim = llm_sim("stalled-client", Duration::ZERO).await;
    let mut c = config(&[sim.url()]);
    // "Idle" fires quickly: a stall blamed on the orchestrator would show within the test.
    c.ai.attempt_timeout = Duration::from_millis(300);
    c.ai.stream_client_timeout = Duration::from_secs(1);
    let gw = start(c).await;
    // About 7 MB of events: more than the buffers between the simulator and the client hold.
    let mut conn = send_stream_request(&gw, 32_768).await;
    let (head, mut received) = read_head(&mut conn).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // The client now stops reading, holding the connection open.
    eventually(Duration::from_secs(10), "the orchestrator released", || async {
        orch_state(&gw, sim.url()).await["in_flight"] == 0
    })
    .await;
    let state = orch_state(&gw, sim.url()).await;
    assert_eq!(state["state"], "healthy", "a stalled client is nobody else's fault: {state}");
    eventually(Duration::from_secs(5), "the simulator's stream ended", || async {
        sim.ai_in_flight() == 0
    })
    .await;
    // The stream was given up, not completed: a client reading again gets what was buffered,
    // then the connection is broken off without the answer's last event or the chunked end.
    let rest = tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut received))
        .await
        .expect("the connection ends once the client reads again");
    eprintln!("read again: {rest:?}, {} bytes in all", received.len());
    let text = String::from_utf8_lossy(&received);
    assert!(text.contains("data: {"), "some events arrived first");
    assert!(!text.contains("\"finish_reason\":\"stop\""), "the whole answer fit in the buffers");
    assert!(!text.ends_with("0\r\n\r\n"), "a given-up stream must not look complete");
    // And the orchestrator still serves the next request.
    let resp = reqwest::Client::new()
        .post(format!("http://{}/llm", gw.http_addr))
        .json(&json!({"model": LLM, "max_tokens": 3, "messages": [{"role": "user", "content": "a b c"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    gw.shutdown().await;
}

/// The same over HTTP/2 (h2c): a response body the client does not read is held by flow
/// control instead of socket buffers; the orchestrator is still released unpenalised.
#[tokio::test]
async fn an_http2_client_that_stops_reading_does_not_get_the_orchestrator_ejected() {
    let sim = llm_sim("stalled-h2-client", Duration::ZERO).await;
    let mut c = config(&[sim.url()]);
    c.ai.attempt_timeout = Duration::from_millis(300);
    c.ai.stream_client_timeout = Duration::from_secs(1);
    let gw = start(c).await;
    let words = vec!["w"; 32_768].join(" ");
    let h2 = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    // The response is held and its body never read.
    let resp = h2
        .post(format!("http://{}/llm", gw.http_addr))
        .json(&json!({"model": LLM, "stream": true, "max_tokens": 32_768, "messages": [{"role": "user", "content": words}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    eventually(Duration::from_secs(10), "the orchestrator released", || async {
        orch_state(&gw, sim.url()).await["in_flight"] == 0
    })
    .await;
    let state = orch_state(&gw, sim.url()).await;
    assert_eq!(state["state"], "healthy", "a stalled client is nobody else's fault: {state}");
    // Reading now gets what was buffered, then an error: the answer was not completed.
    let text = resp.text().await;
    assert!(text.is_err(), "a given-up stream must not look complete");
    gw.shutdown().await;
}

/// Item 14 of issue 11: at shutdown a running stream gets the drain time
/// (`--shutdown-drain-timeout`), then ends with a final error event and a clean end, instead of
/// being cut when the process exits.
#[tokio::test]
async fn shutdown_ends_running_streams_with_a_final_error_event() {
    // A stream of minutes: 1,000 tokens, one every 200 ms.
    let sim = llm_sim("slow-stream", Duration::from_millis(200)).await;
    let mut c = config(&[sim.url()]);
    c.ai.shutdown_drain_timeout = Duration::from_millis(500);
    let gw = start(c).await;
    let mut conn = send_stream_request(&gw, 1000).await;
    let (head, mut received) = read_head(&mut conn).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let reader = tokio::spawn(async move {
        let read = tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut received));
        (read.await, received)
    });
    let shutdown = tokio::spawn(gw.shutdown());
    let (read, received) = reader.await.unwrap();
    let text = String::from_utf8_lossy(&received).into_owned();
    assert!(read.is_ok(), "the stream still runs 10 s after shutdown began: {text}");
    read.unwrap().unwrap();
    let last = "event: error\ndata: {\"error\":{\"message\":\"gateway shutting down\"}}\n\n";
    assert!(text.contains(last), "no final error event: {text}");
    let after = &text[text.find(last).unwrap() + last.len()..];
    assert_eq!(after, "\r\n0\r\n\r\n", "the response ends cleanly after it");
    tokio::time::timeout(Duration::from_secs(5), shutdown)
        .await
        .expect("shutdown ends soon after the drain time")
        .unwrap();
    eventually(Duration::from_secs(5), "the simulator's stream ended", || async {
        sim.ai_in_flight() == 0
    })
    .await;
}

/// A customer's stream that the end of the drain cuts still has its usage row: the ledger's
/// writer ends after every request is gone, not when the drain time is over (when the stream
/// only then writes its final event, and then its row).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_s_stream_cut_at_shutdown_keeps_its_usage_row() {
    let sim = llm_sim("keyed-stream", Duration::from_millis(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = crate::keys::keys_config(&[sim.url()], dir.path(), None);
    c.ai.shutdown_drain_timeout = Duration::from_millis(300);
    let gw = start(c).await;
    let (id, secret) = crate::keys::create(&gw, json!({"name": "streamer"})).await;
    let mut conn = send_stream_request_as(&gw, 1000, Some(&secret)).await;
    let (head, mut received) = read_head(&mut conn).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let shutdown = tokio::spawn(gw.shutdown());
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut received))
        .await
        .expect("the stream ends after the drain")
        .unwrap();
    assert!(String::from_utf8_lossy(&received).contains("gateway shutting down"));
    shutdown.await.unwrap();

    let gw = start(crate::keys::keys_config(&[sim.url()], dir.path(), None)).await;
    let path = format!("/keys/{id}/usage?from=0");
    let (status, usage) = crate::keys::admin(&gw, "GET", &path, None).await;
    assert_eq!(status, 200, "{usage}");
    assert_eq!(usage["requests"], 1, "the cut stream's row: {usage}");
    gw.shutdown().await;
}

/// A batch job still waiting on its orchestrator when the drain time is over is answered (503
/// with `Retry-After`), not cut with the serving thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_unanswered_at_the_drain_s_end_gets_a_503_not_a_reset() {
    let sim = Sim::start(SimConfig {
        name: "slow-image".into(),
        models: vec![SimModel::new("text-to-image", SD)],
        ai_latency: Duration::from_secs(30),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let mut c = config(&[sim.url()]);
    c.ai.shutdown_drain_timeout = Duration::from_millis(300);
    let gw = start(c).await;
    let url = format!("http://{}/text-to-image", gw.http_addr);
    let job = tokio::spawn(async move {
        let body = json!({"prompt": "x", "model_id": SD});
        reqwest::Client::new().post(url).json(&body).send().await
    });
    eventually(Duration::from_secs(5), "the job at the orchestrator", || async {
        sim.ai_in_flight() == 1
    })
    .await;
    let shutdown = tokio::spawn(gw.shutdown());
    let resp = tokio::time::timeout(Duration::from_secs(10), job).await.unwrap().unwrap();
    let resp = resp.expect("an answer, not a reset");
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "1");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "gateway_overloaded", "{body}");
    shutdown.await.unwrap();
}
