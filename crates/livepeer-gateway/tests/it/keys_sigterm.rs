//! The usage ledger across a SIGTERM: the real binary serves customers' requests, is sent
//! SIGTERM while requests are in flight, and after a restart its ledger holds one row for
//! every answer a client received, with the money of each.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use livepeer_sim::{Sim, SimConfig, SimModel};
use serde_json::{Value, json};

use crate::support::SD;

const BIN: &str = env!("CARGO_BIN_EXE_livepeer-gateway");
const TOKEN: &str = "sigterm-admin-token-0123456789";
const PRICES: &str = r#"{"price": [{"pipeline": "text-to-image", "usd": "0.01"}]}"#;

/// Starts the gateway with keys on under `dir`, in front of `orch`; its admin and public
/// addresses. Its log is read (and dropped) by a thread, so that it never blocks on a pipe.
fn spawn(dir: &str, orch: &str) -> (Child, String, String) {
    let mut child = Command::new(BIN)
        .args(["--http-addr", "127.0.0.1:0", "--cli-addr", "127.0.0.1:0", "--log-format", "json"])
        .args(["--auth", "keys", "--data-dir", dir, "--admin-token", TOKEN])
        .args(["--orch-addr", orch, "--customer-prices", PRICES])
        .args(["--rtmp-addr", "127.0.0.1:0"])
        .env_remove("LP_ETH_KEY")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines().map_while(Result::ok);
    let (public, admin) = crate::support::listening(&mut lines);
    std::thread::spawn(move || lines.for_each(drop));
    (child, admin, public)
}

async fn admin(addr: &str, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
    let mut req = reqwest::Client::new().request(method, format!("http://{addr}{path}"));
    req = req.bearer_auth(TOKEN);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.unwrap();
    assert!(resp.status().is_success(), "{path}: {}", resp.status());
    resp.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_rows_equal_the_answers_served_across_a_sigterm_and_a_restart() {
    let sim = Sim::start(SimConfig {
        name: "sigterm".into(),
        models: vec![SimModel::new("text-to-image", SD).capacity(64)],
        // Requests stay in flight long enough for SIGTERM to find some.
        ai_latency: Duration::from_millis(100),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dir_str = dir.path().to_str().unwrap().to_owned();
    let (mut gw, admin_addr, public) = spawn(&dir_str, sim.url());
    let created = admin(&admin_addr, reqwest::Method::POST, "/keys", Some(json!({"name": "c"})));
    let created = created.await;
    let secret = created["secret"].as_str().unwrap().to_owned();
    let id = created["key"]["id"].as_str().unwrap().to_owned();

    // 16 clients call until the gateway stops answering; SIGTERM goes out after 40 answers.
    let answered = Arc::new(AtomicU64::new(0));
    let ok = Arc::new(AtomicU64::new(0));
    let (term_tx, term_rx) = tokio::sync::oneshot::channel::<()>();
    let term_tx = Arc::new(std::sync::Mutex::new(Some(term_tx)));
    let mut clients = Vec::new();
    for _ in 0..16 {
        let (answered, ok, term_tx) = (answered.clone(), ok.clone(), term_tx.clone());
        let (url, secret) = (format!("http://{public}/text-to-image"), secret.clone());
        clients.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            loop {
                let body = json!({"prompt": "x", "model_id": SD, "width": 64, "height": 64});
                let sent = http.post(&url).bearer_auth(&secret).json(&body).send().await;
                let Ok(resp) = sent else { return };
                let status = resp.status();
                // An answer counts once its body is in: the row was written before it.
                if resp.bytes().await.is_err() {
                    return;
                }
                if status.is_success() {
                    ok.fetch_add(1, Ordering::SeqCst);
                }
                if answered.fetch_add(1, Ordering::SeqCst) + 1 == 40
                    && let Some(tx) = term_tx.lock().unwrap().take()
                {
                    let _ = tx.send(());
                }
                if status.is_server_error() {
                    // Draining: the gateway refuses new work; stop calling.
                    return;
                }
            }
        }));
    }
    term_rx.await.unwrap();
    let status = Command::new("kill").args(["-TERM", &gw.id().to_string()]).status().unwrap();
    assert!(status.success());
    for client in clients {
        client.await.unwrap();
    }
    let code = tokio::task::spawn_blocking(move || gw.wait().unwrap().code()).await.unwrap();
    assert_eq!(code, Some(0));
    let (answered, ok) = (answered.load(Ordering::SeqCst), ok.load(Ordering::SeqCst));
    // Requests in flight at SIGTERM were answered while the gateway drained.
    assert!(answered > 40, "{answered}");

    // Restarted on the same data directory: a row for every answer, a charge for every image.
    let (mut gw, admin_addr, _) = spawn(&dir_str, sim.url());
    let path = format!("/keys/{id}/usage?from=0");
    let usage = admin(&admin_addr, reqwest::Method::GET, &path, None).await;
    assert_eq!(usage["requests"], answered, "{usage}");
    // 64 × 64 pixels at 0.01 USD a megapixel: 40 960 nano-USD each.
    assert_eq!(usage["charged_nusd"], ok * 40_960, "{usage}");
    let status = Command::new("kill").args(["-TERM", &gw.id().to_string()]).status().unwrap();
    assert!(status.success());
    let code = tokio::task::spawn_blocking(move || gw.wait().unwrap().code()).await.unwrap();
    assert_eq!(code, Some(0));
}
