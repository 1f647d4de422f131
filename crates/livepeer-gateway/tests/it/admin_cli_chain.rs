//! go-livepeer's CLI chain and account routes on a real local chain (ganache): answered from
//! what the gateway keeps of the chain, in go-livepeer's encodings, as `livepeer_cli` reads them.

use std::sync::Arc;
use std::time::Duration;

use alloy::sol_types::SolCall;
use livepeer_gateway::config::{ChainConfig, Network};
use livepeer_pm::{LocalSigner, U256};
use serde_json::{Value, json};

use super::admin_cli::cli_get;
use super::ganache::{self, GATEWAY_KEY, Node, Protocol, compile};
use super::support::{config, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_chain_the_account_routes_answer_from_the_chain() {
    let Some(bins) = compile() else { return };
    let Some(node) = Node::start(1337).await else { return };
    let p = Protocol::deploy(&node, &bins, 10, 2).await;
    let account = node.accounts[1];
    let eth = U256::from(10u64).pow(U256::from(18));
    let (deposit, reserve) = (eth, eth * U256::from(2));
    let fund =
        ganache::fundDepositAndReserveCall { _depositAmount: deposit, _reserveAmount: reserve };
    node.send(account, Some(p.broker), &fund.abi_encode(), deposit + reserve).await;

    let dir = tempfile::tempdir().unwrap();
    let mut c = config(&[]);
    c.signer = Some(Arc::new(LocalSigner::from_hex(GATEWAY_KEY).unwrap()));
    c.keys.data_dir = dir.path().to_path_buf();
    c.chain = Some(ChainConfig {
        url: node.url.clone(),
        controller: p.controller,
        refresh: Duration::from_millis(100),
        network: Network::Custom("devchain".into()),
        ai_service_registry: None,
        pool_refresh: Duration::from_secs(3600),
        reserve_warning_hours: 24,
    });
    let gw = livepeer_gateway::Gateway::start(c).await.unwrap();

    let text = |path: &'static str| {
        let gw = &gw;
        async move {
            let (status, _, body) = cli_get(gw, path).await;
            assert_eq!(status, 200, "{path}: {body}");
            body
        }
    };
    assert_eq!(text("/EthChainID").await, "1337");
    assert_eq!(text("/ethAddr").await, account.to_checksum(None));
    assert_eq!(text("/currentRound").await, "10");

    // `pm.SenderInfo`: Go writes a `*big.Int` as a bare number.
    let info = text("/senderInfo").await;
    assert!(info.contains(r#""Deposit":1000000000000000000"#), "{info}");
    let info: Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info["Reserve"]["FundsRemaining"], json!(2_000_000_000_000_000_000u64), "{info}");
    assert_eq!(
        (&info["WithdrawRound"], &info["Reserve"]["ClaimedInCurrentRound"]),
        (&json!(0), &json!(0))
    );

    // go-ethereum writes an `Address` as lowercase hex.
    let addresses: Value = serde_json::from_str(&text("/contractAddresses").await).unwrap();
    let hex = |a: livepeer_pm::Address| json!(format!("0x{}", hex::encode(a.as_slice())));
    assert_eq!(addresses["Controller"], hex(p.controller), "{addresses}");
    assert_eq!(addresses["TicketBroker"], hex(p.broker));
    assert_eq!(addresses["RoundsManager"], hex(p.rounds));
    assert_eq!(addresses["BondingManager"], hex(p.bonding));

    let balance = node.client.request("eth_getBalance", json!([account, "latest"])).await.unwrap();
    let wei = U256::from_str_radix(balance.as_str().unwrap().trim_start_matches("0x"), 16).unwrap();
    assert_eq!(text("/ethBalance").await, wei.to_string());
    // `TicketBroker.unlockPeriod`, which `livepeer_cli`'s unlock wizard adds to the round.
    let (status, kind, body) = cli_get(&gw, "/ticketBrokerParams").await;
    assert_eq!((status, kind.as_str()), (200, "application/json"), "{body}");
    assert_eq!(body, r#"{"UnlockPeriod":2}"#);
    // The test Controller registers no LivepeerToken: the reason, as go-livepeer's 500.
    let (status, _, body) = cli_get(&gw, "/tokenBalance").await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("LivepeerToken"), "{body}");

    p.set_round(&node, 11).await;
    eventually(Duration::from_secs(10), "round 11 read", || async {
        cli_get(&gw, "/currentRound").await.2 == "11"
    })
    .await;
    gw.shutdown().await;
}
