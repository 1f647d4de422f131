//! On a real local chain (ganache) with the protocol's test doubles: on-chain discovery (the
//! pool walked, stored, served from the database at a restart, refreshed), the unlock check at
//! the round boundary, the chain id check, and the preset Controller of `--network`.

use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use alloy::sol_types::SolCall;
use livepeer_gateway::config::{ChainConfig, Config, Network};
use livepeer_pm::{Address, LocalSigner, U256};
use serde_json::{Value, json};
use tokio::sync::Notify;
use url::Url;

use super::ganache::{self, GATEWAY_KEY, Node, Protocol, compile, free_port, orch_address};
use super::support::{TextSim, admin_get, config, eventually, orch_state};

/// The Controller of `--network arbitrum-one-mainnet` (GATEWAY.md §2.3).
const ARBITRUM_CONTROLLER: &str = "0xD8E8328501E9645d16Cf49539efC04f734606ee4";

/// A gateway config on `node`'s chain: the gateway's key (ganache account 1), data under
/// `data_dir`, funds read every 100 ms, the pool walked every `walk_every`.
fn chain_config(
    urls: &[&str],
    rpc: &Url,
    controller: Address,
    data_dir: &Path,
    walk_every: Duration,
) -> Config {
    let mut c = config(urls);
    c.signer = Some(Arc::new(LocalSigner::from_hex(GATEWAY_KEY).unwrap()));
    c.keys.data_dir = data_dir.to_path_buf();
    c.chain = Some(ChainConfig {
        url: rpc.clone(),
        controller,
        refresh: Duration::from_millis(100),
        network: Network::Custom("devchain".into()),
        ai_service_registry: None,
        pool_refresh: walk_every,
        reserve_warning_hours: 24,
    });
    c
}

async fn chain_status(gw: &livepeer_gateway::Gateway) -> Value {
    admin_get(gw, "/status").await.1["chain"].clone()
}

/// A made-up orchestrator nobody listens for: a port just closed.
fn dead_uri(n: u64) -> String {
    format!("http://127.0.0.1:{}/o{n}", free_port())
}

const FOREVER: u64 = u64::MAX;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovers_the_active_orchestrators_of_a_hundred() {
    let Some(bins) = compile() else { return };
    let Some(node) = Node::start(1337).await else { return };
    let p = Protocol::deploy(&node, &bins, 10, 2).await;
    let sims = [
        TextSim::new("a").start().await,
        TextSim::new("b").start().await,
        TextSim::new("gone").start().await,
    ];
    // 100 orchestrators: two live simulators; a third simulator whose deactivation round has
    // come (10 is not < 10); three more not active before round 11; the rest unreachable.
    let mut orchs = Vec::new();
    for i in 0..100u64 {
        let uri = match i {
            0..=2 => sims[i as usize].url().to_owned(),
            _ => dead_uri(i),
        };
        let (activation, deactivation) = match i {
            2 => (1, 10),
            3..=5 => (11, FOREVER),
            _ => (1, FOREVER),
        };
        orchs.push((orch_address(i), uri, 1_000 + i, activation, deactivation));
    }
    p.register(&node, &orchs).await;

    let dir = tempfile::tempdir().unwrap();
    let gw = livepeer_gateway::Gateway::start(chain_config(
        &[],
        &node.url,
        p.controller,
        dir.path(),
        Duration::from_millis(500),
    ))
    .await
    .unwrap();
    eventually(Duration::from_secs(30), "the first walk", || async {
        chain_status(&gw).await["discovery"]["source"] == "chain"
    })
    .await;
    let status = chain_status(&gw).await;
    let walk = &status["discovery"]["last_walk"];
    eprintln!("walk: {walk}");
    assert_eq!(walk["pool_size"], 100, "{walk}");
    assert_eq!(walk["active"], 96, "{walk}");
    assert_eq!(walk["round"], "10");
    // A gross bound only, against a walk gone call by call: the figure (about 2 s on an idle
    // machine) is README's; under a loaded test run one walk took 5.3 s.
    let took = walk["duration_ms"].as_u64().unwrap();
    assert!(took < 20_000, "the walk of 100 took {took} ms");
    let listed = status["discovery"]["orchestrators"].as_array().unwrap();
    assert_eq!(listed.len(), 100);
    let first = &listed[0];
    assert_eq!(first["address"], json!(orch_address(0)));
    assert_eq!(first["stake"], "1000");
    assert_eq!(first["activation_round"], "1");
    assert_eq!(first["deactivation_round"], U256::from(FOREVER).to_string());
    assert_eq!(listed[2]["active"], false);
    assert_eq!(listed[3]["active"], false);
    assert_eq!(status["rounds"]["last_initialized"], "10");

    for sim in &sims[..2] {
        eventually(Duration::from_secs(10), "the simulators in the pool", || async {
            orch_state(&gw, sim.url().trim_end_matches('/')).await != Value::Null
        })
        .await;
    }
    assert_eq!(orch_state(&gw, sims[2].url().trim_end_matches('/')).await, Value::Null, "inactive");

    // A new registration is picked up by the next walk. The registration may land while a
    // walk is under way, which then misses it, so two walks and a probe must fit: under a
    // loaded test run a walk alone took 5.3 s, and 10 s once ran out in CI.
    let late = TextSim::new("late").start().await;
    p.register(&node, &[(orch_address(100), late.url().to_owned(), 5, 1, FOREVER)]).await;
    eventually(Duration::from_secs(30), "the new orchestrator in the pool", || async {
        orch_state(&gw, late.url().trim_end_matches('/')).await != Value::Null
    })
    .await;
    let status = chain_status(&gw).await;
    assert_eq!(status["discovery"]["last_walk"]["pool_size"], 101);
    gw.shutdown().await;
}

/// A JSON-RPC proxy to `target` that holds every request walking the pool
/// (`getFirstTranscoderInPool`) until `release` is notified.
async fn holding_proxy(target: Url, released: Arc<AtomicBool>, release: Arc<Notify>) -> Url {
    proxy(target, released, release, false).await
}

/// As [`holding_proxy`], but answering those requests `502 Bad Gateway` until released, when
/// `fail` is set.
async fn proxy(target: Url, released: Arc<AtomicBool>, release: Arc<Notify>, fail: bool) -> Url {
    let selector = hex::encode(ganache::getFirstTranscoderInPoolCall::SELECTOR);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
    let http = reqwest::Client::new();
    let app = axum::Router::new().fallback(move |body: String| {
        let (http, target, selector) = (http.clone(), target.clone(), selector.clone());
        let (released, release) = (released.clone(), release.clone());
        async move {
            if fail && body.contains(&selector) && !released.load(Ordering::SeqCst) {
                let text = "<html>bad gateway</html>".to_owned();
                return Ok::<_, Infallible>((
                    axum::http::StatusCode::BAD_GATEWAY,
                    [("content-type", "text/html")],
                    text,
                ));
            }
            while body.contains(&selector) && !released.load(Ordering::SeqCst) {
                let notified = release.notified();
                if released.load(Ordering::SeqCst) {
                    break;
                }
                notified.await;
            }
            let resp = http
                .post(target)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            let text = resp.text().await.unwrap();
            Ok::<_, Infallible>((
                axum::http::StatusCode::OK,
                [("content-type", "application/json")],
                text,
            ))
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_serves_the_stored_pool_before_the_walk_ends() {
    serves_the_stored_pool_before_the_walk(None).await;
}

/// Two gateways sharing one PostgreSQL database: the second, with a data directory of its own,
/// serves the pool the first stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_gateway_serves_the_pool_stored_in_postgresql() {
    let Some(bin) = super::keys_pg::pg_bin() else {
        let required = std::env::var("LIVEPEER_REQUIRE_POSTGRES").is_ok_and(|v| v == "1");
        assert!(!required, "LIVEPEER_REQUIRE_POSTGRES=1 but PostgreSQL is not installed");
        eprintln!("note: PostgreSQL not installed; skipping");
        return;
    };
    let pg = super::keys_pg::Postgres::start(&bin);
    serves_the_stored_pool_before_the_walk(Some(pg.url())).await;
}

/// A first gateway walks and stores the pool (in `database_url`, else SQLite under its data
/// directory); a second one, whose walk is held, serves the stored pool at once.
async fn serves_the_stored_pool_before_the_walk(database_url: Option<String>) {
    let Some(bins) = compile() else { return };
    let Some(node) = Node::start(1337).await else { return };
    let p = Protocol::deploy(&node, &bins, 10, 2).await;
    let sim = TextSim::new("stored").start().await;
    let orchs = [
        (orch_address(0), sim.url().to_owned(), 10, 1, FOREVER),
        (orch_address(1), dead_uri(1), 20, 1, FOREVER),
        (orch_address(2), format!("http://{}", "x".repeat(3000)), 30, 1, FOREVER),
    ];
    p.register(&node, &orchs).await;
    let (dir, second_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // SQLite: the same file; PostgreSQL: another data directory, the same database.
    let second_dir = if database_url.is_some() { second_dir.path() } else { dir.path() };
    let walk_every = Duration::from_secs(3600);
    let with_db = |mut c: Config| {
        c.keys.database_url = database_url.clone().map(Into::into);
        c
    };

    let first = livepeer_gateway::Gateway::start(with_db(chain_config(
        &[],
        &node.url,
        p.controller,
        dir.path(),
        walk_every,
    )))
    .await
    .unwrap();
    eventually(Duration::from_secs(30), "the first walk", || async {
        chain_status(&first).await["discovery"]["source"] == "chain"
    })
    .await;
    let listed = chain_status(&first).await["discovery"]["orchestrators"].clone();
    assert_eq!(listed[2]["service_uri"], "", "a 3000-byte URI is not kept: {listed}");
    first.shutdown().await;

    // The second start reads the chain through a proxy that holds the walk.
    let released = Arc::new(AtomicBool::new(false));
    let release = Arc::new(Notify::new());
    let proxy = holding_proxy(node.url.clone(), released.clone(), release.clone()).await;
    let second = livepeer_gateway::Gateway::start(with_db(chain_config(
        &[],
        &proxy,
        p.controller,
        second_dir,
        walk_every,
    )))
    .await
    .unwrap();
    let status = chain_status(&second).await;
    assert_eq!(status["discovery"]["source"], "database", "{status}");
    assert_eq!(status["discovery"]["orchestrators"].as_array().unwrap().len(), 3);
    assert_eq!(status["discovery"]["active"], 2, "two usable URIs");
    eventually(Duration::from_secs(10), "the stored simulator in the pool", || async {
        orch_state(&second, sim.url().trim_end_matches('/')).await != Value::Null
    })
    .await;
    let status = chain_status(&second).await;
    assert_eq!(status["discovery"]["source"], "database", "the walk is still held");

    released.store(true, Ordering::SeqCst);
    release.notify_waiters();
    eventually(Duration::from_secs(30), "the walk after release", || async {
        chain_status(&second).await["discovery"]["source"] == "chain"
    })
    .await;
    second.shutdown().await;
}

/// A paid text-to-image request through `gw`: its status and error body.
async fn paid_request(gw: &livepeer_gateway::Gateway) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("http://{}/text-to-image", gw.http_addr))
        .json(&json!({"prompt": "x", "model_id": super::support::SD, "width": 64, "height": 64}))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// go-livepeer refuses to pay when `withdrawRound <= lastInitializedRound + 1`: an unlock that
/// completes two rounds ahead still pays; one round ahead does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unlock_stops_payments_one_round_before_it_completes() {
    let Some(bins) = compile() else { return };
    let Some(node) = Node::start(1337).await else { return };
    let p = Protocol::deploy(&node, &bins, 10, 2).await;
    let key = LocalSigner::from_hex(GATEWAY_KEY).unwrap();
    let gateway_account = node.accounts[1];
    assert_eq!(key.address(), gateway_account, "the gateway signs as ganache account 1");
    let eth = U256::from(10u64).pow(U256::from(18));
    let fund = ganache::fundDepositAndReserveCall { _depositAmount: eth, _reserveAmount: eth };
    node.send(gateway_account, Some(p.broker), &fund.abi_encode(), eth * U256::from(2)).await;
    node.send(gateway_account, Some(p.broker), &ganache::unlockCall {}.abi_encode(), U256::ZERO)
        .await;

    let sim = livepeer_sim::Sim::start(livepeer_sim::SimConfig {
        eth_address: Some(orch_address(7)),
        models: vec![
            livepeer_sim::SimModel::new("text-to-image", super::support::SD).price(1_000, 1),
        ],
        ..livepeer_sim::SimConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config =
        chain_config(&[sim.url()], &node.url, p.controller, dir.path(), Duration::from_secs(3600));
    // The reserve of 1 ETH lasts for ages at this spend: warn below 10^15 hours to see it.
    config.chain.as_mut().unwrap().reserve_warning_hours = 1_000_000_000_000_000;
    let gw = livepeer_gateway::Gateway::start(config).await.unwrap();
    let reserve = admin_get(&gw, "/status").await.1["payments"]["reserve"].clone();
    assert_eq!(reserve["spend_per_hour_wei"], "0", "{reserve}");
    assert_eq!(reserve["warning"], Value::Null, "nothing spent: no warning");
    let funds = admin_get(&gw, "/status").await.1["payments"]["funds"].clone();
    assert_eq!(funds["withdraw_round"], "12", "{funds}");
    assert_eq!(funds["unlocking"], true);
    assert_eq!(funds["unlocks_soon"], false, "round 10: 12 > 10 + 1");
    // go-livepeer's gauges of the same funds, in gwei, by the sender's checksummed address.
    let metrics = super::support::metrics_text(&gw).await;
    let sender = gateway_account.to_checksum(None);
    for name in ["gateway_deposit", "gateway_reserve", "broadcaster_deposit"] {
        let series = format!("livepeer_{name}{{sender=\"{sender}\"}} 1000000000");
        assert!(metrics.lines().any(|l| l.starts_with(&series)), "no {series} in {metrics}");
    }
    let (status, body) = paid_request(&gw).await;
    assert_eq!(status, 200, "{body}");
    let reserve = admin_get(&gw, "/status").await.1["payments"]["reserve"].clone();
    assert_ne!(reserve["spend_per_hour_wei"], "0", "{reserve}");
    assert!(reserve["reserve_hours"].is_string(), "{reserve}");
    assert!(reserve["warning"].as_str().unwrap().contains("deposit"), "{reserve}");

    p.set_round(&node, 11).await;
    eventually(Duration::from_secs(10), "round 11 read", || async {
        admin_get(&gw, "/status").await.1["payments"]["funds"]["unlocks_soon"] == true
    })
    .await;
    let (status, body) = paid_request(&gw).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["type"], "payment_refused", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("unlock soon"), "{body}");
    gw.shutdown().await;
}

/// Kills the binary when dropped.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn gateway_binary(args: &[&str], data_dir: &Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_livepeer-gateway"));
    cmd.args(args)
        .args(["--http-addr", "127.0.0.1:0", "--rtmp-addr", "off"])
        .arg("--data-dir")
        .arg(data_dir)
        .env("LP_ETH_KEY", GATEWAY_KEY)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_of_another_chain_exits_64() {
    let Some(node) = Node::start(1337).await else { return };
    let dir = tempfile::tempdir().unwrap();
    let args = ["--network", "arbitrum-one-mainnet", "--eth-url", node.url.as_str()];
    let mut cmd = gateway_binary(&args, dir.path());
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("chain id 1337"), "{stderr}");
    assert!(stderr.contains("arbitrum-one-mainnet is chain id 42161"), "{stderr}");
}

/// `--network arbitrum-one-mainnet` with no `--eth-controller` reads the protocol through the
/// preset Controller address: the test chain (chain id 42161) has a Controller's code placed
/// at that address (`evm_setAccountCode`), naming the contracts deployed by the test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_preset_controller_resolves_the_contracts() {
    let Some(bins) = compile() else { return };
    let Some(node) = Node::start(42161).await else { return };
    let p = Protocol::deploy(&node, &bins, 10, 2).await;
    let code = node.client.request("eth_getCode", json!([p.controller, "latest"])).await.unwrap();
    let preset: Address = ARBITRUM_CONTROLLER.parse().unwrap();
    node.client.request("evm_setAccountCode", json!([preset, code])).await.unwrap();
    p.register_in(&node, preset).await;
    let sim = TextSim::new("arb").start().await;
    p.register(&node, &[(orch_address(0), sim.url().to_owned(), 1, 1, FOREVER)]).await;

    let dir = tempfile::tempdir().unwrap();
    let admin = format!("127.0.0.1:{}", free_port());
    let args =
        ["--network", "arbitrum-one-mainnet", "--eth-url", node.url.as_str(), "--cli-addr", &admin];
    let _gw = Running(gateway_binary(&args, dir.path()).spawn().unwrap());
    let http = reqwest::Client::new();
    let status_url = format!("http://{admin}/status");
    eventually(Duration::from_secs(30), "the preset network walked", || async {
        let Ok(resp) = http.get(&status_url).send().await else { return false };
        let status: Value = resp.json().await.unwrap_or(Value::Null);
        status["chain"]["discovery"]["source"] == "chain"
    })
    .await;
    let status: Value = http.get(&status_url).send().await.unwrap().json().await.unwrap();
    let chain = &status["chain"];
    assert_eq!(chain["network"], "arbitrum-one-mainnet");
    assert_eq!(chain["chain_id"], 42161);
    assert_eq!(chain["controller"], ARBITRUM_CONTROLLER);
    assert_eq!(chain["contracts"]["bonding_manager"], p.bonding.to_checksum(None));
    assert_eq!(chain["contracts"]["ticket_broker"], p.broker.to_checksum(None));
    assert_eq!(chain["discovery"]["active"], 1, "{chain}");
    assert_eq!(status["config"]["network"], "arbitrum-one-mainnet");
}

/// Runs a deposit subcommand of the binary against `node`: its exit code and stdout.
async fn deposit_cli(node: &Node, p: &Protocol, args: &[&str]) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let controller = p.controller.to_checksum(None);
    let mut cmd = gateway_binary(
        &["--network", "devchain", "--eth-controller", &controller, "--eth-url", node.url.as_str()],
        dir.path(),
    );
    cmd.args(args).stdout(std::process::Stdio::piped()).stdin(std::process::Stdio::null());
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), format!("{stdout}{stderr}"))
}

/// Deposit, reserve, unlock, cancel and withdraw through the subcommands, each checked by
/// reading the contract.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deposit_subcommands_round_trip() {
    let Some(bins) = compile() else { return };
    let Some(node) = Node::start(1337).await else { return };
    let p = Protocol::deploy(&node, &bins, 10, 2).await;
    let me = node.accounts[1];
    let info = || async { node.client.sender_info_at(p.broker, me).await.unwrap() };
    let eth = U256::from(10u64).pow(U256::from(18));

    let (code, out) = deposit_cli(
        &node,
        &p,
        &["deposit", "--deposit", "1ETH", "--reserve", "0.5ETH", "--dry-run"],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("TicketBroker.fundDepositAndReserve(uint256,uint256)"), "{out}");
    assert!(out.contains("value:                    1.5 ETH (1500000000000000000 wei)"), "{out}");
    assert!(out.contains("dry run: nothing sent"), "{out}");
    assert_eq!(info().await.deposit, U256::ZERO, "a dry run sends nothing");

    // Without --yes it asks; stdin is empty, so nothing is sent.
    let (code, out) =
        deposit_cli(&node, &p, &["deposit", "--deposit", "1ETH", "--reserve", "0.5ETH"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("cancelled: nothing sent"), "{out}");
    assert_eq!(info().await.deposit, U256::ZERO);

    let (code, out) =
        deposit_cli(&node, &p, &["deposit", "--deposit", "1ETH", "--reserve", "0.5ETH", "--yes"])
            .await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("deposit:     1 ETH (was 0 ETH)"), "{out}");
    assert!(out.contains("reserve:     0.5 ETH (was 0 ETH)"), "{out}");
    let funds = info().await;
    assert_eq!((funds.deposit, funds.reserve), (eth, eth / U256::from(2)));

    // Withdrawing while locked fails before anything is signed, with the contract's reason.
    let (code, out) = deposit_cli(&node, &p, &["withdraw", "--yes"]).await;
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("no unlock request in progress"), "{out}");

    let (code, out) = deposit_cli(&node, &p, &["unlock", "--yes"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("withdrawable from round 12"), "{out}");
    assert_eq!(info().await.withdraw_round, U256::from(12));
    let (code, out) = deposit_cli(&node, &p, &["cancel-unlock", "--yes"]).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(info().await.withdraw_round, U256::ZERO);

    let (code, out) = deposit_cli(&node, &p, &["unlock", "--yes"]).await;
    assert_eq!(code, 0, "{out}");
    p.set_round(&node, 12).await;
    let client = &node.client;
    let balance = |a: Address| async move {
        let v = client.request("eth_getBalance", json!([a, "latest"])).await.unwrap();
        U256::from_str_radix(v.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
    };
    let before = balance(me).await;
    let (code, out) = deposit_cli(&node, &p, &["withdraw", "--yes"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("deposit:     0 ETH (was 1 ETH)"), "{out}");
    assert_eq!(info().await, livepeer_gateway::payment::SenderInfo::default());
    let gained = balance(me).await - before;
    assert!(gained > eth && gained < eth + eth / U256::from(2), "1.5 ETH back less gas: {gained}");
}

/// A walk that fails (the node answers 502) is reported in `/status` and tried again soon;
/// the pool comes once the node answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_walk_is_reported_and_tried_again() {
    let Some(bins) = compile() else { return };
    let Some(node) = Node::start(1337).await else { return };
    let p = Protocol::deploy(&node, &bins, 10, 2).await;
    let sim = TextSim::new("later").start().await;
    p.register(&node, &[(orch_address(0), sim.url().to_owned(), 1, 1, FOREVER)]).await;
    let released = Arc::new(AtomicBool::new(false));
    let release = Arc::new(Notify::new());
    let rpc = proxy(node.url.clone(), released.clone(), release.clone(), true).await;
    let dir = tempfile::tempdir().unwrap();
    let config = chain_config(&[], &rpc, p.controller, dir.path(), Duration::from_millis(200));
    let gw = livepeer_gateway::Gateway::start(config).await.unwrap();
    eventually(Duration::from_secs(10), "the failure reported", || async {
        chain_status(&gw).await["discovery"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("502"))
    })
    .await;
    assert_eq!(chain_status(&gw).await["discovery"]["source"], "database", "nothing walked yet");
    released.store(true, Ordering::SeqCst);
    eventually(Duration::from_secs(10), "a later walk", || async {
        orch_state(&gw, sim.url().trim_end_matches('/')).await != Value::Null
    })
    .await;
    assert_eq!(chain_status(&gw).await["discovery"]["last_error"], Value::Null);
    gw.shutdown().await;
}
