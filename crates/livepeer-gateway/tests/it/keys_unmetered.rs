//! A stream started with a customer key is metered only once its start has reserved its first
//! interval's charge, which may wait on the key database. A start whose client goes away in
//! between (its handler dropped) would leave the stream running, uncharged: `StopUnlessMetered`
//! stops it instead, at its orchestrator.
//!
//! The wait is made certain: the key database (SQLite) is held by another writer from the
//! moment the start's first checks are done, so the charge taken once the stream runs waits
//! for it while the client leaves.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use livepeer_gateway::keys::price::CustomerPrices;
use livepeer_sim::{Sim, SimConfig, SimModel};
use serde_json::{Value, json};
use sqlx::Connection as _;
use tokio::sync::{mpsc, watch};

use crate::keys::{admin, create, keys_config};
use crate::support::*;

const KEY: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";

/// Twice what the orchestrator is paid, at 2000 USD an ETH: a stream's first interval is
/// charged on what its start prepaid, once it has started.
fn double_fee(pipeline: &str) -> Arc<CustomerPrices> {
    let table =
        format!(r#"{{"price": [{{"pipeline": "{pipeline}", "orchestrator_multiple": "2"}}]}}"#);
    Arc::new(CustomerPrices::parse(Some(&table), Some("2000")).unwrap())
}

/// Another writer of the key database under `dir`, holding its write lock until dropped
/// (rolled back then): the gateway's writes wait on it.
struct HeldDatabase(sqlx::sqlite::SqliteConnection);

impl HeldDatabase {
    async fn take(dir: &Path) -> Self {
        let url = format!("sqlite://{}", dir.join("gateway.sqlite").display());
        let mut conn = sqlx::sqlite::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query("BEGIN IMMEDIATE").execute(&mut conn).await.unwrap();
        Self(conn)
    }

    async fn release(mut self) {
        sqlx::query("ROLLBACK").execute(&mut self.0).await.unwrap();
        self.0.close().await.unwrap();
    }
}

/// A live-AI auth webhook that tells `called` of each call and answers (accepting) only once
/// `open` is set.
async fn held_webhook(called: mpsc::Sender<()>, open: watch::Receiver<bool>) -> String {
    let hook = axum::Router::new().route(
        "/auth",
        axum::routing::post(move || {
            let (called, mut open) = (called.clone(), open.clone());
            async move {
                let _ = called.send(()).await;
                let _ = open.wait_for(|open| *open).await;
                axum::Json(json!({}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/auth", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, hook).await.unwrap() });
    url
}

/// The stream whose `id_field` is `id` as the admin API lists it at `path` (`null` when not
/// listed).
async fn listed(gw: &livepeer_gateway::Gateway, path: &str, id_field: &str, id: &str) -> Value {
    let (_, body) = admin(gw, "GET", path, None).await;
    let streams = body["streams"].as_array().cloned().unwrap_or_default();
    streams.into_iter().find(|s| s[id_field] == id).unwrap_or(Value::Null)
}

/// Why the guard stops a stream.
const UNMETERED: &str = "the client went away before its stream was metered";

/// A live stream started with a key, whose client hangs up while the start's first charge
/// waits on the key database, is stopped at its orchestrator, and says why. Nothing else
/// would stop it: the start's own guards are done once it runs, and no meter watches it yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_stream_whose_client_leaves_before_it_is_metered_is_stopped_there() {
    let mut addr = [0u8; 20];
    addr[19] = 11;
    let sim = Sim::start(SimConfig {
        name: "keys-unmetered-live".into(),
        eth_address: Some(livepeer_pm::Address::from(addr)),
        // 1 wei a pixel: the start call prepays, and its first interval is charged on that.
        models: vec![SimModel::new("live-video-to-video", "noop").price(1, 1).capacity(4)],
        live_event_interval: Duration::from_millis(200),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let (called_tx, mut called) = mpsc::channel(4);
    let (open, open_rx) = watch::channel(false);
    let hook = held_webhook(called_tx, open_rx).await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = keys_config(&[sim.url()], dir.path(), None);
    c.signer = Some(Arc::new(livepeer_pm::LocalSigner::from_hex(KEY).unwrap()));
    c.keys.prices = double_fee("live-video-to-video");
    c.live.auth_webhook =
        Some(livepeer_gateway::live::AuthWebhook { url: hook.parse().unwrap(), api_key: None });
    let gw = start(c).await;
    let (_, secret) = create(&gw, json!({"name": "left", "budget_micro_usd": 1_000_000})).await;
    let start = reqwest::Client::new()
        .post(format!("http://{}/live/video-to-video/left/start", gw.http_addr))
        .bearer_auth(&secret)
        .json(&json!({}))
        .send();
    let start = tokio::spawn(start);
    // The webhook is asked once the key's checks (its place, its first interval before the
    // fee) are done: from now on the key database is another writer's.
    tokio::time::timeout(Duration::from_secs(10), called.recv()).await.unwrap().unwrap();
    let held = HeldDatabase::take(dir.path()).await;
    open.send_replace(true);
    eventually(Duration::from_secs(10), "the stream running", || async {
        listed(&gw, "/live/streams", "stream", "left").await["state"] == "running"
    })
    .await;
    // The stream runs and its start has not answered: it waits on its first charge.
    assert_eq!(sim.live().active, 1);
    assert!(!start.is_finished(), "the start answered before it was metered");
    start.abort();
    let _ = start.await;
    eventually(Duration::from_secs(10), "the stream stopped at its orchestrator", || async {
        sim.live().active == 0
    })
    .await;
    let stream = listed(&gw, "/live/streams", "stream", "left").await;
    assert_eq!(stream["stop_reason"], UNMETERED, "{stream}");
    held.release().await;
    gw.shutdown().await;
}

/// The same for a BYOC stream: started with a key, its client hangs up while the start's
/// first charge (on the tickets' EV its start sent) waits on the key database; the stream is
/// stopped at its orchestrator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_byoc_stream_whose_client_leaves_before_it_is_metered_is_stopped_there() {
    const CAP: &str = crate::keys_charge::BYOC_STREAM_CAP;
    // 10⁸ wei a second: the start pays its minute with tickets.
    let sim =
        crate::keys_charge::paid_byoc_stream_sim("keys-unmetered-byoc", 12, 100_000_000).await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = keys_config(&[sim.url()], dir.path(), None);
    c.signer = Some(Arc::new(livepeer_pm::LocalSigner::from_hex(KEY).unwrap()));
    c.keys.prices = double_fee("byoc");
    let gw = start(c).await;
    let (_, secret) = create(&gw, json!({"name": "left", "budget_micro_usd": 1_000_000})).await;
    let gate = sim.byoc_stream_start_gate();
    let header = crate::byoc_stream::job_header(CAP, 60, r#"{"enable_data_output":true}"#);
    let start = reqwest::Client::new()
        .post(format!("http://{}/process/stream/start", gw.http_addr))
        .bearer_auth(&secret)
        .header("Livepeer", &header)
        .json(&json!({"stream_name": "left", "stream_id": "1", "params": "{}"}))
        .send();
    let start = tokio::spawn(start);
    // The start reaches the orchestrator once the key's checks (its place, its first interval
    // before the fee) are done: from now on the key database is another writer's.
    eventually(Duration::from_secs(10), "the start at the orchestrator", || async {
        sim.byoc_stats().stream_start_calls == 1
    })
    .await;
    let held = HeldDatabase::take(dir.path()).await;
    gate.release();
    eventually(Duration::from_secs(10), "the stream running", || async {
        listed(&gw, "/byoc/streams", "stream_id", "left-1").await["state"] == "running"
    })
    .await;
    // The stream runs and its start has not answered: it waits on its first charge.
    assert_eq!(sim.byoc_stats().streams_active, 1);
    assert!(!start.is_finished(), "the start answered before it was metered");
    start.abort();
    let _ = start.await;
    eventually(Duration::from_secs(10), "the stream stopped at its orchestrator", || async {
        let stats = sim.byoc_stats();
        stats.stream_stops == 1 && stats.streams_active == 0
    })
    .await;
    held.release().await;
    gw.shutdown().await;
}
