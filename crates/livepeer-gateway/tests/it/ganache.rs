//! A real local chain for the on-chain tests: ganache (pinned, installed with npm into
//! `target/ganache`), and the protocol's test doubles of `tests/chain/Livepeer.sol`, compiled
//! here with a pinned solc-js (installed with npm into `target/solc`) and deployed by the tests.
//! Without npm the tests skip with a note, unless `LIVEPEER_REQUIRE_GANACHE=1` (scripts/test).

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use alloy::sol_types::SolCall;
use livepeer_gateway::payment::chain::ChainClient;
use livepeer_pm::{Address, B256, U256, keccak256};
use serde_json::{Value, json};
use url::Url;

const GANACHE_PACKAGE: &str = "ganache@7.9.2";
const SOLC_PACKAGE: &str = "solc@0.8.26";
/// Lots of ETH per ganache account (1000 ETH, ganache's default, is plenty).
pub const ACCOUNTS: usize = 4;

alloy::sol! {
    function setContractInfo(bytes32 _id, address _contractAddress, bytes20 _gitCommitHash);
    function setRound(uint256 _round);
    function register(address[] _addrs, uint256[] _stakes, uint256[] _activation, uint256[] _deactivation);
    function setServiceURIs(address[] _addrs, string[] _uris);
    function fundDepositAndReserve(uint256 _depositAmount, uint256 _reserveAmount);
    function unlock();
    function getFirstTranscoderInPool();
}

/// The private key of ganache's deterministic account `1` (`--wallet.deterministic`), which
/// the gateway signs with: it has ETH to fund a deposit.
pub const GATEWAY_KEY: &str = "6cbed15c793ce57650b9877cf6fa156fbef513c4e6134f022a85b1ffdd59b2a1";

fn target_dir() -> PathBuf {
    // CARGO_TARGET_TMPDIR is <target>/tmp.
    Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap().to_path_buf()
}

/// Installs `package` with npm into `target/<dir>` unless `check` is already there; `None`
/// (the test skips) without npm, unless required.
fn npm_install(dir: &str, package: &str, check: &str) -> Option<PathBuf> {
    let prefix = target_dir().join(dir);
    if prefix.join(check).is_file() {
        return Some(prefix);
    }
    let required = std::env::var("LIVEPEER_REQUIRE_GANACHE").is_ok_and(|v| v == "1");
    let npm_ok = Command::new("npm")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !npm_ok {
        assert!(!required, "LIVEPEER_REQUIRE_GANACHE=1 but npm is missing");
        eprintln!("note: npm not found; skipping the on-chain test");
        return None;
    }
    // Test processes run in parallel: each installs into its own folder, then renames it in.
    let staging = prefix.with_extension(format!("staging-{}", std::process::id()));
    let status = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--prefix"])
        .arg(&staging)
        .arg(package)
        .status()
        .expect("run npm install");
    assert!(status.success(), "npm install {package} failed");
    if std::fs::rename(&staging, &prefix).is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    assert!(prefix.join(check).is_file(), "{check} missing after npm install");
    Some(prefix)
}

/// Creation bytecode (hex) of each contract of `tests/chain/Livepeer.sol`.
pub fn compile() -> Option<HashMap<String, String>> {
    let prefix = npm_install("solc", SOLC_PACKAGE, "node_modules/solc/package.json")?;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/chain");
    let out = Command::new("node")
        .arg(dir.join("build.js"))
        .arg(dir.join("Livepeer.sol"))
        .env("NODE_PATH", prefix.join("node_modules"))
        .output()
        .expect("run node");
    assert!(out.status.success(), "solc: {}", String::from_utf8_lossy(&out.stderr));
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A running ganache, killed when dropped.
pub struct Node {
    child: Child,
    pub url: Url,
    pub client: ChainClient,
    /// Its unlocked accounts (0 deploys; 1 is the gateway's, [`GATEWAY_KEY`]).
    pub accounts: Vec<Address>,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Node {
    /// Starts ganache with `chain_id`; `None` when npm is missing (and not required).
    pub async fn start(chain_id: u64) -> Option<Self> {
        let prefix =
            npm_install("ganache", GANACHE_PACKAGE, "node_modules/ganache/dist/node/cli.js")?;
        let port = free_port();
        let child = Command::new("node")
            .arg(prefix.join("node_modules/ganache/dist/node/cli.js"))
            .args(["--server.host", "127.0.0.1", "--server.port", &port.to_string()])
            .args(["--wallet.deterministic", "--wallet.totalAccounts", &ACCOUNTS.to_string()])
            .args(["--chain.chainId", &chain_id.to_string(), "--logging.quiet"])
            .args(["--miner.blockGasLimit", "30000000"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn ganache");
        let url = Url::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        let client = ChainClient::with_timeout(url.clone(), Duration::from_secs(5)).unwrap();
        let mut node = Self { child, url, client, accounts: Vec::new() };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while node.client.chain_id().await.is_err() {
            if let Some(status) = node.child.try_wait().unwrap() {
                panic!("ganache exited with {status}");
            }
            assert!(tokio::time::Instant::now() < deadline, "ganache never answered");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let accounts = node.client.request("eth_accounts", json!([])).await.unwrap();
        node.accounts = serde_json::from_value(accounts).unwrap();
        Some(node)
    }

    /// Sends a transaction from `from` and waits for its successful receipt.
    pub async fn send(
        &self,
        from: Address,
        to: Option<Address>,
        data: &[u8],
        value: U256,
    ) -> Value {
        let mut tx = json!({
            "from": from,
            "data": format!("0x{}", hex::encode(data)),
            "gas": "0x1c9c380",
            "value": format!("{value:#x}"),
        });
        if let Some(to) = to {
            tx["to"] = json!(to);
        }
        let hash = self.client.request("eth_sendTransaction", json!([tx])).await.unwrap();
        // ganache mines at once; the receipt is there.
        let receipt =
            self.client.request("eth_getTransactionReceipt", json!([hash])).await.unwrap();
        assert_eq!(receipt["status"], "0x1", "transaction reverted: {receipt}");
        receipt
    }

    /// Calls `call` on `to` from account 0.
    pub async fn transact<C: SolCall>(&self, to: Address, call: C) {
        self.send(self.accounts[0], Some(to), &call.abi_encode(), U256::ZERO).await;
    }

    /// Deploys creation code `bin` with ABI-encoded constructor `args`.
    pub async fn deploy(&self, bin: &str, args: &[u8]) -> Address {
        let code = [hex::decode(bin.trim()).unwrap(), args.to_vec()].concat();
        let receipt = self.send(self.accounts[0], None, &code, U256::ZERO).await;
        receipt["contractAddress"].as_str().unwrap().parse().unwrap()
    }
}

/// The deployed test protocol.
pub struct Protocol {
    pub controller: Address,
    pub rounds: Address,
    pub bonding: Address,
    pub registry: Address,
    pub broker: Address,
}

fn word(a: Address) -> B256 {
    a.into_word()
}

impl Protocol {
    /// Deploys every contract (the TicketBroker's unlock period is `unlock_period` rounds),
    /// registers them in a new Controller, and starts at `round`.
    pub async fn deploy(
        node: &Node,
        bins: &HashMap<String, String>,
        round: u64,
        unlock_period: u64,
    ) -> Self {
        let rounds = node.deploy(&bins["RoundsManager"], &[]).await;
        let bonding = node.deploy(&bins["BondingManager"], word(rounds).as_slice()).await;
        let registry = node.deploy(&bins["ServiceRegistry"], &[]).await;
        let args =
            [word(rounds).as_slice(), &U256::from(unlock_period).to_be_bytes::<32>()].concat();
        let broker = node.deploy(&bins["TicketBroker"], &args).await;
        let controller = node.deploy(&bins["Controller"], &[]).await;
        let p = Self { controller, rounds, bonding, registry, broker };
        p.register_in(node, controller).await;
        p.set_round(node, round).await;
        p
    }

    /// Registers the contracts in the Controller at `controller`.
    pub async fn register_in(&self, node: &Node, controller: Address) {
        for (name, address) in [
            ("RoundsManager", self.rounds),
            ("BondingManager", self.bonding),
            ("ServiceRegistry", self.registry),
            ("TicketBroker", self.broker),
        ] {
            let call = setContractInfoCall {
                _id: keccak256(name.as_bytes()),
                _contractAddress: address,
                _gitCommitHash: Default::default(),
            };
            node.transact(controller, call).await;
        }
    }

    pub async fn set_round(&self, node: &Node, round: u64) {
        node.transact(self.rounds, setRoundCall { _round: U256::from(round) }).await;
    }

    /// Registers orchestrators: (address, service URI, stake, activation, deactivation), in
    /// chunks that fit a block.
    pub async fn register(&self, node: &Node, orchs: &[(Address, String, u64, u64, u64)]) {
        for chunk in orchs.chunks(25) {
            let call = registerCall {
                _addrs: chunk.iter().map(|o| o.0).collect(),
                _stakes: chunk.iter().map(|o| U256::from(o.2)).collect(),
                _activation: chunk.iter().map(|o| U256::from(o.3)).collect(),
                _deactivation: chunk.iter().map(|o| U256::from(o.4)).collect(),
            };
            node.transact(self.bonding, call).await;
            let call = setServiceURIsCall {
                _addrs: chunk.iter().map(|o| o.0).collect(),
                _uris: chunk.iter().map(|o| o.1.clone()).collect(),
            };
            node.transact(self.registry, call).await;
        }
    }
}

/// The `n`th made-up orchestrator address.
pub fn orch_address(n: u64) -> Address {
    Address::from_word(U256::from(0x0e00_0000u64 + n).into())
}
