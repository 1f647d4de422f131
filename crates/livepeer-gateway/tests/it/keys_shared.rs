//! Limits shared by gateway instances on one database: requests per minute and concurrent
//! streams across two gateways on PostgreSQL, and budget leases given back by a gateway that
//! stops (SIGTERM) or by another one after it was killed (SIGKILL), on the real binary.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use livepeer_gateway::Gateway;
use livepeer_gateway::keys::price::CustomerPrices;
use livepeer_sim::{Sim, SimConfig, SimModel};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::keys::{TOKEN, create, keys_config, t2i_as};
use crate::keys_pg::postgres;
use crate::support::*;

const BIN: &str = env!("CARGO_BIN_EXE_livepeer-gateway");
/// 0.01 USD a megapixel: a 64×64 image costs 40 960 nano-USD.
const PRICES: &str = r#"{"price": [{"pipeline": "text-to-image", "usd": "0.01"}]}"#;
const COST_NUSD: i64 = 40_960;

/// A simulator with text-to-image and a slow-streaming LLM.
async fn sim(name: &str) -> Sim {
    Sim::start(SimConfig {
        name: name.into(),
        models: vec![
            SimModel::new("text-to-image", SD).capacity(64),
            SimModel::new("llm", LLM).price(0, 1).capacity(8),
        ],
        token_delay: Duration::from_millis(50),
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

/// Keys on PostgreSQL at `url`, priced, with a lease expiry of `expiry`.
fn shared_config(
    sim: &Sim,
    dir: &std::path::Path,
    url: String,
    expiry: Duration,
) -> livepeer_gateway::Config {
    let mut c = keys_config(&[sim.url()], dir, Some(url));
    c.keys.prices = Arc::new(CustomerPrices::parse(Some(PRICES), None).unwrap());
    c.keys.lease_expiry = expiry;
    c
}

/// An LLM request of 40 tokens, 50 ms apart, streamed or not, through `gw` with `secret`.
fn llm(gw: &Gateway, secret: &str, stream: bool) -> reqwest::RequestBuilder {
    let words = vec!["word"; 40].join(" ");
    let body = json!({"model": LLM, "stream": stream, "max_tokens": 100,
        "messages": [{"role": "user", "content": words}]});
    reqwest::Client::new()
        .post(format!("http://{}/llm", gw.http_addr))
        .bearer_auth(secret)
        .json(&body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_sharing_postgresql_admit_a_key_s_rate_limit_once_between_them() {
    let Some(pg) = postgres().await else { return };
    let sim = sim("shared-rate").await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let expiry = Duration::from_secs(30);
    let a = start(shared_config(&sim, dir_a.path(), pg.url(), expiry)).await;
    let b = start(shared_config(&sim, dir_b.path(), pg.url(), expiry)).await;
    let (_, secret) = create(&a, json!({"name": "ten", "requests_per_minute": 10})).await;
    // The bound is per minute window (unix minutes): start well inside one, so that the 40
    // requests below fall in the same window.
    while livepeer_gateway::keys::now() % 60 > 40 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let window = livepeer_gateway::keys::now() / 60;
    let (mut ok, mut limited) = (0, 0);
    for i in 0..40 {
        let gw = if i % 2 == 0 { &a } else { &b };
        let resp = t2i_as(gw, Some(&secret), SD).await;
        match resp.status() {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                let retry: u32 = resp.headers()["retry-after"].to_str().unwrap().parse().unwrap();
                assert!((1..=60).contains(&retry), "{retry}");
                let body: Value = resp.json().await.unwrap();
                assert_eq!(body["error"]["type"], "rate_limit_exceeded", "{body}");
                limited += 1;
            }
            other => panic!("{other}"),
        }
    }
    assert_eq!(livepeer_gateway::keys::now() / 60, window, "the test left its minute window");
    // Each instance alone would admit 10 (its own limiter); together they admit 10.
    assert_eq!((ok, limited), (10, 30));
    a.shutdown().await;
    b.shutdown().await;
    drop(pg);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_streams_is_shared_by_two_gateways_sharing_postgresql() {
    let Some(pg) = postgres().await else { return };
    let sim = sim("shared-streams").await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let expiry = Duration::from_secs(30);
    let a = start(shared_config(&sim, dir_a.path(), pg.url(), expiry)).await;
    let b = start(shared_config(&sim, dir_b.path(), pg.url(), expiry)).await;
    let (_, secret) = create(&a, json!({"name": "one", "max_streams": 1})).await;
    // A stream runs on a (its headers in, its tokens still coming)...
    let first = llm(&a, &secret, true).send().await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    // ...so b refuses a second one, as a does.
    for gw in [&b, &a] {
        let resp = llm(gw, &secret, true).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["type"], "stream_limit_exceeded", "{body}");
    }
    // Once it has ended, b may start one.
    let text = first.text().await.unwrap();
    assert!(text.contains(r#""finish_reason":"stop""#), "{text}");
    eventually(Duration::from_secs(10), "the stream's place is released", || async {
        llm(&b, &secret, true).send().await.unwrap().status() == StatusCode::OK
    })
    .await;
    a.shutdown().await;
    b.shutdown().await;
    drop(pg);
}

/// Starts the gateway binary with keys on at `database_url` (or SQLite under `dir`), priced,
/// with a lease expiry of `expiry`; its public and admin addresses. Its log is read (and
/// dropped) by a thread, so that it never blocks on a pipe.
fn spawn(
    dir: &str,
    database_url: Option<&str>,
    orch: &str,
    expiry: &str,
) -> (Child, String, String) {
    let mut command = Command::new(BIN);
    command
        .args(["--http-addr", "127.0.0.1:0", "--cli-addr", "127.0.0.1:0", "--log-format", "json"])
        .args(["--auth", "keys", "--data-dir", dir, "--admin-token", TOKEN])
        .args(["--orch-addr", orch, "--customer-prices", PRICES])
        .args(["--rtmp-addr", "127.0.0.1:0", "--key-lease-expiry", expiry])
        .env_remove("LP_ETH_KEY")
        .stderr(Stdio::piped());
    if let Some(url) = database_url {
        command.args(["--database-url", url]);
    }
    let mut child = command.spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines().map_while(Result::ok);
    let (public, admin) = listening(&mut lines);
    std::thread::spawn(move || lines.for_each(drop));
    (child, public, admin)
}

/// A key's budget as `GET /keys/{id}/usage` on `admin_addr` reports it.
async fn budget(admin_addr: &str, id: &str) -> Value {
    let url = format!("http://{admin_addr}/keys/{id}/usage?from=0");
    let resp = reqwest::Client::new().get(url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let usage: Value = resp.json().await.unwrap();
    assert_eq!(usage["budget"]["budget_usd"], "1.000000000", "{usage}");
    usage
}

/// Serves `n` images through the binary at `public` with `secret`, then waits until their
/// rows are in the ledger (read through `admin_addr`): the key then holds a lease.
async fn serve(public: &str, admin_addr: &str, id: &str, secret: &str, n: i64) {
    let http = reqwest::Client::new();
    for _ in 0..n {
        let resp = http
            .post(format!("http://{public}/text-to-image"))
            .bearer_auth(secret)
            .json(&json!({"prompt": "x", "model_id": SD, "width": 64, "height": 64}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let usage = budget(admin_addr, id).await;
        if usage["charged_nusd"] == n * COST_NUSD {
            // More than the requests in flight (none): the instance's lease.
            let reserved = &usage["budget"]["reserved_usd"];
            assert_ne!(reserved, "0.000000000", "a lease is held: {usage}");
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "rows never written: {usage}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_gateway_s_lease_and_streams_are_given_back_by_another_after_its_expiry() {
    let Some(pg) = postgres().await else { return };
    let sim = sim("reaper").await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let url = pg.url();
    let (mut killed, public, admin_a) =
        spawn(dir_a.path().to_str().unwrap(), Some(&url), sim.url(), "1s");
    let expiry = Duration::from_secs(1);
    let b = start(shared_config(&sim, dir_b.path(), url.clone(), expiry)).await;
    let body = json!({"name": "crashy", "budget_micro_usd": 1_000_000, "max_streams": 1});
    let (id, secret) = create(&b, body).await;
    serve(&public, &admin_a, &id, &secret, 3).await;
    // The killed gateway also holds the key's one stream.
    let words = vec!["word"; 400].join(" ");
    let stream = reqwest::Client::new()
        .post(format!("http://{public}/llm"))
        .bearer_auth(&secret)
        .json(&json!({"model": LLM, "stream": true, "max_tokens": 1000,
            "messages": [{"role": "user", "content": words}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    assert_eq!(
        llm(&b, &secret, true).send().await.unwrap().status(),
        StatusCode::TOO_MANY_REQUESTS
    );

    let status = Command::new("kill").args(["-KILL", &killed.id().to_string()]).status().unwrap();
    assert!(status.success());
    tokio::task::spawn_blocking(move || killed.wait().unwrap()).await.unwrap();
    drop(stream);
    // b reaps it after its expiry: the budget's reservations and the stream are free again.
    eventually(Duration::from_secs(20), "the killed gateway's lease is given back", || async {
        let usage = budget(&b.admin_addr.to_string(), &id).await;
        usage["budget"]["reserved_usd"] == "0.000000000"
    })
    .await;
    let usage = budget(&b.admin_addr.to_string(), &id).await;
    assert_eq!(usage["budget"]["remaining_nusd"], 1_000_000_000 - 3 * COST_NUSD, "{usage}");
    eventually(Duration::from_secs(20), "the killed gateway's stream is freed", || async {
        llm(&b, &secret, true).send().await.unwrap().status() == StatusCode::OK
    })
    .await;
    b.shutdown().await;
    drop(pg);
}

/// A gateway stopped with SIGTERM gives its lease back as it stops: read at once (no expiry
/// has passed: the lease expiry is the default 30 s) through `reader`'s admin API.
async fn sigterm_gives_back(dir: &str, database_url: Option<&str>, sim: &Sim) -> (String, String) {
    let (mut gw, public, admin_addr) = spawn(dir, database_url, sim.url(), "30s");
    let resp = reqwest::Client::new()
        .post(format!("http://{admin_addr}/keys"))
        .bearer_auth(TOKEN)
        .json(&json!({"name": "stops", "budget_micro_usd": 1_000_000}))
        .send()
        .await
        .unwrap();
    let created: Value = resp.json().await.unwrap();
    let id = created["key"]["id"].as_str().unwrap().to_owned();
    let secret = created["secret"].as_str().unwrap().to_owned();
    serve(&public, &admin_addr, &id, &secret, 5).await;
    let status = Command::new("kill").args(["-TERM", &gw.id().to_string()]).status().unwrap();
    assert!(status.success());
    let code = tokio::task::spawn_blocking(move || gw.wait().unwrap().code()).await.unwrap();
    assert_eq!(code, Some(0));
    (id, secret)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_stopped_with_sigterm_gives_its_lease_back_on_sqlite_and_postgresql() {
    let sim = sim("give-back").await;
    // SQLite: the same data directory, read by a gateway started after.
    let dir = tempfile::tempdir().unwrap();
    let dir_str = dir.path().to_str().unwrap().to_owned();
    let (id, _) = sigterm_gives_back(&dir_str, None, &sim).await;
    let config = |url: Option<String>| {
        let mut c = keys_config(&[sim.url()], dir.path(), url);
        c.keys.prices = Arc::new(CustomerPrices::parse(Some(PRICES), None).unwrap());
        c
    };
    let gw = start(config(None)).await;
    let usage = budget(&gw.admin_addr.to_string(), &id).await;
    assert_eq!(usage["budget"]["reserved_usd"], "0.000000000", "{usage}");
    assert_eq!(usage["budget"]["remaining_nusd"], 1_000_000_000 - 5 * COST_NUSD, "{usage}");
    gw.shutdown().await;

    // PostgreSQL: read by a gateway that runs all along.
    let Some(pg) = postgres().await else { return };
    let other = tempfile::tempdir().unwrap();
    let reader = start(config(Some(pg.url()))).await;
    let (id, _) = sigterm_gives_back(other.path().to_str().unwrap(), Some(&pg.url()), &sim).await;
    let usage = budget(&reader.admin_addr.to_string(), &id).await;
    assert_eq!(usage["budget"]["reserved_usd"], "0.000000000", "{usage}");
    assert_eq!(usage["budget"]["remaining_nusd"], 1_000_000_000 - 5 * COST_NUSD, "{usage}");
    reader.shutdown().await;
    drop(pg);
}
