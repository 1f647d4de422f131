//! The services the gateway calls that are not orchestrators, hostile or broken, over real
//! sockets: an auth webhook that answers without end or fails, a discovery webhook listing
//! tens of thousands of orchestrators, a remote signer that pays more than it was asked to.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use livepeer_gateway::Gateway;
use livepeer_gateway::config::Config;
use livepeer_gateway::orchestrator::Discovery;
use livepeer_pm::LocalSigner;
use livepeer_sim::{Sim, SimConfig, SimModel};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

const KEY: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
const API_KEY: &str = "outbound-hostile-api-key-0123456789";

/// Most bytes the endless webhook sends before giving up, so that a gateway reading it whole
/// (the fault this file guards against) costs the test run a bounded amount of memory.
const ENDLESS_LIMIT: u64 = 256 << 20;

/// A server that answers every connection `200 OK` and then a JSON body without end, at
/// loopback speed, until the client hangs up (or [`ENDLESS_LIMIT`]). Returns its address and
/// the bytes of body it managed to write.
async fn endless_server() -> (std::net::SocketAddr, Arc<AtomicU64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else { return };
            let counter = counter.clone();
            tokio::spawn(async move {
                // The request's head and body are small: one read takes them.
                let mut request = vec![0u8; 64 * 1024];
                let _ = socket.read(&mut request).await;
                let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n";
                if socket.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let _ = socket.write_all(b"{\"pipeline_parameters\": [").await;
                let chunk = b"1234567890,".repeat(6000);
                while counter.load(Ordering::Relaxed) < ENDLESS_LIMIT {
                    if socket.write_all(&chunk).await.is_err() {
                        return;
                    }
                    counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                }
            });
        }
    });
    (addr, sent)
}

/// Waits until `sent`, the bytes an [`endless_server`] wrote, stops growing between two polls
/// (its reader hung up and the sockets' buffers are full); returns the total.
async fn writes_stopped(sent: &AtomicU64, what: &str) -> u64 {
    let mut last = u64::MAX;
    eventually(Duration::from_secs(10), what, || {
        let now = sent.load(Ordering::Relaxed);
        let still = now == last;
        last = now;
        async move { still }
    })
    .await;
    sent.load(Ordering::Relaxed)
}

/// A server answering every request with `status` and a short body.
async fn status_server(status: u16) -> std::net::SocketAddr {
    let code = axum::http::StatusCode::from_u16(status).unwrap();
    let app = axum::Router::new().fallback(move || async move { (code, "webhook down") });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

async fn live_sim() -> Sim {
    Sim::start(SimConfig {
        name: "outbound-live".into(),
        models: vec![SimModel::new("live-video-to-video", "noop").capacity(8)],
        live_event_interval: Duration::from_millis(200),
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

/// A gateway in front of `sim` whose live-AI auth webhook is `hook`.
async fn hooked(sim: &Sim, hook: std::net::SocketAddr) -> Gateway {
    let mut c: Config = config(&[sim.url()]);
    c.live.auth_webhook = Some(livepeer_gateway::live::AuthWebhook {
        url: format!("http://{hook}/auth").parse().unwrap(),
        api_key: None,
    });
    start(c).await
}

async fn start_live(gw: &Gateway, name: &str) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("http://{}/live/video-to-video/{name}/start", gw.http_addr))
        .json(&json!({"pipeline": "noop"}))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_endless_auth_webhook_answer_is_cut_off_as_the_operators_fault() {
    let sim = live_sim().await;
    let (hook, sent) = endless_server().await;
    let gw = hooked(&sim, hook).await;
    let (status, body) = start_live(&gw, "endless").await;
    // The gateway hung up at its 64 KiB cap: the server's writes stop within what the
    // sockets' buffers hold, far below what it would send to a reader that went on.
    let total = writes_stopped(&sent, "the webhook's writes to stop").await;
    assert!(total < 16 << 20, "the gateway read {total} bytes of a 64 KiB answer");
    // Not accepted unchecked, and not the client's fault: 503, the webhook's.
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["type"], "auth_webhook_unavailable", "{body}");
    assert_eq!(sim.live().starts, 0, "nothing started on an unreadable answer");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_auth_webhook_is_a_503_not_a_refusal() {
    let sim = live_sim().await;
    let gw = hooked(&sim, status_server(500).await).await;
    let (status, body) = start_live(&gw, "down").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["type"], "auth_webhook_unavailable", "{body}");
    gw.shutdown().await;
    // A webhook that says no (4xx) still refuses the stream as the client's.
    let gw = hooked(&sim, status_server(401).await).await;
    let (status, body) = start_live(&gw, "no").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["type"], "stream_refused", "{body}");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_auth_webhook_whose_certificate_does_not_verify_is_not_asked() {
    // An HTTPS server with a self-signed certificate, as anyone on the network path to the
    // webhook could present: the gateway would send it the webhook's key and the client's
    // Authorization, and take its word on which streams start.
    let impostor =
        Sim::start(SimConfig { name: "impostor".into(), tls: true, ..SimConfig::default() })
            .await
            .unwrap();
    let sim = live_sim().await;
    let mut c: Config = config(&[sim.url()]);
    c.live.auth_webhook = Some(livepeer_gateway::live::AuthWebhook {
        url: format!("{}/auth", impostor.url()).parse().unwrap(),
        api_key: Some("webhook-secret".to_owned().into()),
    });
    let gw = start(c).await;
    let (status, body) = start_live(&gw, "impostor").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["type"], "auth_webhook_unavailable", "{body}");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_discovery_webhook_listing_thirty_thousand_orchestrators_is_cut_to_a_thousand() {
    // Just under the 1 MiB answer cap: 30,000 distinct addresses, each listed twice.
    let entries: Vec<Value> = (1..=30_000u32)
        .map(|port| json!({"address": format!("127.0.0.1:{port}")}))
        .chain((1..=10u32).map(|port| json!({"address": format!("127.0.0.1:{port}")})))
        .collect();
    let body = serde_json::to_vec(&entries).unwrap();
    assert!(body.len() < 1 << 20, "{} bytes", body.len());
    let app = axum::Router::new().route("/orchs", axum::routing::get(move || async move { body }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let url = format!("http://{addr}/orchs").parse().unwrap();
    let discovery =
        Discovery::webhook(url, Duration::from_secs(60), Duration::from_secs(3)).unwrap();
    let urls = discovery.urls().await.unwrap();
    assert_eq!(urls.len(), 1000, "every one listed would be dialled at each refresh");
    assert_eq!(urls[0].as_str(), "https://127.0.0.1:1/");
    assert_eq!(urls[999].as_str(), "https://127.0.0.1:1000/", "the first ones, in order");
}

/// A remote signer that makes real tickets with the real signer's key, but for 50 times the
/// units the gateway asks for: a broken (or dishonest) signer paying more than asked.
async fn inflating_signer(real: std::net::SocketAddr) -> std::net::SocketAddr {
    let hook: SignerHook = std::sync::Arc::new(|path: &str, body: Vec<u8>| {
        if path != "/generate-live-payment" {
            return Ok(body);
        }
        let mut asked: Value = serde_json::from_slice(&body).unwrap();
        let units = asked["inPixels"].as_u64().unwrap();
        asked["inPixels"] = json!(units * 50);
        Ok(serde_json::to_vec(&asked).unwrap())
    });
    signer_proxy(real, hook).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_signer_paying_more_than_asked_is_not_forwarded() {
    // 64×64 pixels at 1,000,000 wei: a fee of 4.1e9, under one ticket's EV (the simulator's
    // default, 8e9). Fifty times the units is 2e11: 26 tickets.
    let orch = Sim::start(SimConfig {
        eth_address: Some(livepeer_pm::Address::from([0x0c; 20])),
        models: vec![SimModel::new("text-to-image", SD).price(1_000_000, 1)],
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let mut c = config(&[orch.url()]);
    c.signer = Some(Arc::new(LocalSigner::from_hex(KEY).unwrap()));
    c.serve_signer = Some(API_KEY.to_owned().into());
    let signer = start(c).await;
    let proxy = inflating_signer(signer.http_addr).await;
    let mut c = config(&[orch.url()]);
    c.remote_signer = Some(
        livepeer_gateway::config::RemoteSigner::parse(
            &format!("http://{proxy}/"),
            &format!("Authorization:Bearer {API_KEY}"),
        )
        .unwrap(),
    );
    let gw = start(c).await;
    let (status, body) = small_t2i(&gw).await;
    let paid = orch.payments();
    assert_eq!(paid.tickets_received, 0, "no ticket of the oversized payment reached it");
    assert!(paid.ev_received.is_empty(), "{:?}", paid.ev_received);
    // The gateway's refusal to pay, a 503: neither the client's fault nor the orchestrator's.
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["type"], "payment_refused", "{body}");
    gw.shutdown().await;
    signer.shutdown().await;
}

#[tokio::test]
async fn credentials_in_service_urls_stay_out_of_errors() {
    // A port nothing listens on: every call fails, and its error is logged and shown.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let hook = format!("http://user:hookpass@127.0.0.1:{port}/orchs?token=hooktoken");
    let discovery =
        Discovery::webhook(hook.parse().unwrap(), Duration::from_secs(60), Duration::from_secs(3))
            .unwrap();
    let error = discovery.urls().await.unwrap_err().to_string();
    assert!(!error.contains("hookpass") && !error.contains("hooktoken"), "{error}");
    assert!(error.contains(&format!("127.0.0.1:{port}")), "the host is still shown: {error}");
    // An RPC provider's URL carries its key in the path.
    let rpc = format!("http://127.0.0.1:{port}/v2/rpcapikey");
    let chain = livepeer_gateway::payment::chain::ChainClient::new(rpc.parse().unwrap()).unwrap();
    let error = chain.block_number().await.unwrap_err().to_string();
    assert!(!error.contains("rpcapikey"), "{error}");
    let signer = format!("http://127.0.0.1:{port}/?key=signerkey");
    let error =
        livepeer_gateway::payment::fetch_identity(&signer.parse().unwrap(), Default::default())
            .await
            .unwrap_err()
            .to_string();
    assert!(!error.contains("signerkey"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_json_rpc_answer_is_cut_off() {
    let (node, sent) = endless_server().await;
    let chain = livepeer_gateway::payment::chain::ChainClient::new(
        format!("http://{node}/").parse().unwrap(),
    )
    .unwrap();
    let error = chain.block_number().await.unwrap_err().to_string();
    let total = writes_stopped(&sent, "the node's writes to stop").await;
    // The cap is 64 MiB; the server would send 256 MiB to a reader that went on.
    assert!(total < 96 << 20, "the client read {total} bytes of one answer: {error}");
    assert!(error.contains("larger than"), "{error}");
}
