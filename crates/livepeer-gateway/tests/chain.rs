//! `payment::chain::ChainClient` against a real local Ethereum node (ganache 7).
//!
//! ganache is installed and started by the on-chain tests' module `it/ganache.rs`, shared here
//! (into `target/ganache` with npm on first run; without `npm` the tests print a note and pass,
//! unless `LIVEPEER_REQUIRE_GANACHE=1` is set, in which case they fail). These tests deploy the
//! two test doubles of `tests/chain/Mocks.sol`, precompiled to `tests/chain/*.bin` by
//! `tests/chain/compile.js`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: failing loudly is the point"
)]

use std::time::Duration;

use livepeer_gateway::payment::chain::{ChainClient, ChainError, SenderInfo};
use livepeer_pm::{Address, U256};
use serde_json::json;
use tokio::time::Instant;
use url::Url;

#[path = "it/ganache.rs"]
#[allow(
    dead_code,
    unreachable_pub,
    reason = "the on-chain tests' module: these tests use its node only"
)]
mod ganache;

/// Pinned so that CI and developers run the same node.
const CONTROLLER_BIN: &str = include_str!("chain/TestController.bin");
const BROKER_BIN: &str = include_str!("chain/TestTicketBroker.bin");

/// Deploys creation bytecode from `from` and returns the new contract's address.
async fn deploy(client: &ChainClient, from: &str, code: &str) -> Address {
    let tx = json!([{"from": from, "data": code, "gas": "0x200000"}]);
    let hash = client.request("eth_sendTransaction", tx).await.unwrap();
    // ganache mines instantly by default; poll briefly anyway.
    for _ in 0..50 {
        let receipt = client.request("eth_getTransactionReceipt", json!([hash])).await.unwrap();
        if let Some(receipt) = receipt.as_object() {
            assert_eq!(receipt["status"], "0x1", "deployment reverted: {receipt:?}");
            return receipt["contractAddress"].as_str().unwrap().parse().unwrap();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no receipt for {hash}");
}

fn creation_code(bin: &str, constructor_args: &[u8]) -> String {
    format!("0x{}{}", bin.trim(), hex::encode(constructor_args))
}

fn sender(n: u64) -> Address {
    Address::from_word(U256::from(n).into())
}

#[tokio::test]
async fn reads_sender_info_from_ganache() {
    let started = Instant::now();
    let Some(node) = ganache::Node::start(1337).await else { return };
    let client = &node.client;
    eprintln!("ganache up in {:?}", started.elapsed());

    let accounts = client.request("eth_accounts", json!([])).await.unwrap();
    let from = accounts[0].as_str().unwrap().to_owned();

    let broker = deploy(client, &from, &creation_code(BROKER_BIN, &[])).await;
    let broker_word = broker.into_word();
    let controller =
        deploy(client, &from, &creation_code(CONTROLLER_BIN, broker_word.as_slice())).await;
    assert!(client.block_number().await.unwrap() >= 2);

    assert_eq!(client.ticket_broker(controller).await.unwrap(), broker);

    // Locked sender 0xA11CE, with values above 2^64 and 2^128.
    let alice = client.sender_info(controller, sender(0xA11CE)).await.unwrap();
    let alice_deposit = U256::from(10).pow(U256::from(24)) + U256::from(7);
    assert_eq!(
        alice,
        SenderInfo {
            deposit: alice_deposit,
            withdraw_round: U256::ZERO,
            reserve: (U256::from(1) << 128) + U256::from(1),
            claimed_in_current_round: U256::from(123_456_789),
        }
    );
    assert!(!alice.is_unlocking());
    assert_eq!(alice.max_face_value(1), Some(alice_deposit));
    assert_eq!(alice.max_face_value(3), Some(U256::from(333_333_333_333_333_333_333_335u128)));
    assert_eq!(alice.max_face_value(0), None);

    // Unlocking sender 0xB0B with a 2^200 + 1 deposit.
    let bob = client.sender_info(controller, sender(0xB0B)).await.unwrap();
    assert_eq!(
        bob,
        SenderInfo {
            deposit: (U256::from(1) << 200) + U256::from(1),
            withdraw_round: U256::from(4242),
            reserve: U256::from(5),
            claimed_in_current_round: U256::ZERO,
        }
    );
    assert!(bob.is_unlocking());
    assert_eq!(bob.max_face_value(2), Some(U256::from(1) << 199));

    // Unknown sender: all zeros, as the real TicketBroker answers.
    let nobody = client.sender_info(controller, sender(0xC0FFEE)).await.unwrap();
    assert_eq!(nobody, SenderInfo::default());

    // A controller address without code (here an externally owned account).
    let eoa: Address = from.parse().unwrap();
    match client.sender_info(eoa, sender(0xA11CE)).await {
        Err(ChainError::NoContract { address }) => assert_eq!(address, eoa),
        other => panic!("expected NoContract, got {other:?}"),
    }
    // Pointing at the TicketBroker as if it were the Controller: getContract reverts.
    match client.sender_info(broker, sender(0xA11CE)).await {
        Err(ChainError::Rpc { .. }) => {}
        other => panic!("expected a revert, got {other:?}"),
    }
    // A name the Controller does not know.
    match client.contract_address(controller, "Minter").await {
        Err(ChainError::NotRegistered { name, .. }) => assert_eq!(name, "Minter"),
        other => panic!("expected NotRegistered, got {other:?}"),
    }
    // An unknown JSON-RPC method.
    match client.request("eth_noSuchMethod", json!([])).await {
        Err(ChainError::Rpc { .. }) => {}
        other => panic!("expected an RPC error, got {other:?}"),
    }
    eprintln!("chain test done in {:?}", started.elapsed());
}

#[tokio::test]
async fn unreachable_node_is_reported() {
    let port = ganache::free_port();
    let url = Url::parse(&format!("http://127.0.0.1:{port}")).unwrap();
    let client = ChainClient::with_timeout(url, Duration::from_secs(2)).unwrap();
    match client.block_number().await {
        Err(ChainError::Unreachable { .. }) => {}
        other => panic!("expected Unreachable, got {other:?}"),
    }
    match client.sender_info(Address::ZERO, Address::ZERO).await {
        Err(ChainError::Unreachable { .. }) => {}
        other => panic!("expected Unreachable, got {other:?}"),
    }
}

/// Serves each connection one fixed HTTP response.
async fn canned_server(status: &'static str, body: &'static str) -> Url {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf).await;
            let response = format!(
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
        }
    });
    url
}

#[tokio::test]
async fn malformed_answers_are_reported() {
    let cases: [(&str, &str, &str); 4] = [
        ("200 OK", "not json", "malformed"),
        ("200 OK", r#"{"jsonrpc":"2.0","id":1,"result":"0xzz"}"#, "malformed"),
        ("200 OK", r#"{"jsonrpc":"2.0","id":1}"#, "malformed"),
        ("502 Bad Gateway", "<html>bad gateway</html>", "unreachable"),
    ];
    for (status, body, want) in cases {
        let client = ChainClient::new(canned_server(status, body).await).unwrap();
        let got = client.block_number().await;
        let ok = match want {
            "malformed" => matches!(got, Err(ChainError::Malformed { .. })),
            _ => matches!(got, Err(ChainError::Unreachable { .. })),
        };
        assert!(ok, "{status} {body}: expected {want}, got {got:?}");
    }
    // Return data of the wrong length for getSenderInfo.
    let client = ChainClient::new(
        canned_server("200 OK", r#"{"jsonrpc":"2.0","id":1,"result":"0x0001"}"#).await,
    )
    .unwrap();
    match client.sender_info_at(Address::ZERO, Address::ZERO).await {
        Err(ChainError::Malformed { method, .. }) => assert_eq!(method, "getSenderInfo"),
        other => panic!("expected Malformed, got {other:?}"),
    }
}

/// A paying gateway reads its funds from the chain at start and refuses to pay with none:
/// clients get a clear 503 rather than orchestrators getting worthless tickets.
#[tokio::test]
async fn a_gateway_without_a_deposit_refuses_to_pay() {
    let Some(node) = ganache::Node::start(1337).await else { return };
    let (client, url) = (&node.client, node.url.clone());
    let accounts = client.request("eth_accounts", json!([])).await.unwrap();
    let from = accounts[0].as_str().unwrap().to_owned();
    let broker = deploy(client, &from, &creation_code(BROKER_BIN, &[])).await;
    let controller =
        deploy(client, &from, &creation_code(CONTROLLER_BIN, broker.into_word().as_slice())).await;

    let sim = livepeer_sim::Sim::start(livepeer_sim::SimConfig {
        eth_address: Some(sender(0x0F)),
        models: vec![livepeer_sim::SimModel::new("text-to-image", "m").price(1_000_000, 1)],
        ..livepeer_sim::SimConfig::default()
    })
    .await
    .unwrap();
    let flags = livepeer_gateway::config::Flags {
        listen: livepeer_gateway::config::Listen {
            http_addr: Some("127.0.0.1:0".into()),
            cli_addr: Some("127.0.0.1:0".into()),
            ..Default::default()
        },
        discovery: livepeer_gateway::config::Discovery {
            orch_addr: Some(sim.url().to_owned()),
            ..Default::default()
        },
        ingest: livepeer_gateway::config::Ingest {
            rtmp_addr: Some("off".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let mut config = livepeer_gateway::Config::load(flags).unwrap();
    // A key without a deposit: the test broker answers zeros for unknown senders.
    let key = "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
    config.signer = Some(std::sync::Arc::new(livepeer_pm::LocalSigner::from_hex(key).unwrap()));
    config.chain = Some(livepeer_gateway::config::ChainConfig {
        url,
        controller,
        refresh: Duration::from_secs(60),
        network: livepeer_gateway::config::Network::Offchain,
        ai_service_registry: None,
        pool_refresh: Duration::from_secs(600),
        reserve_warning_hours: 24,
    });
    let gw = livepeer_gateway::Gateway::start(config).await.unwrap();
    let resp = reqwest::Client::new()
        .post(format!("http://{}/text-to-image", gw.http_addr))
        .json(&json!({"prompt": "x", "model_id": "m", "width": 64, "height": 64}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "payment_refused", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("no sender reserve"), "{body}");
    assert_eq!(sim.ai_requests(), 0, "nothing was sent unpaid");
    gw.shutdown().await;
}

#[tokio::test]
async fn expiry_is_counted_in_l1_blocks_on_arbitrum() {
    // An Arbitrum node's latest block: L2 number 0x1000000, carrying L1 block 0x1234.
    let arb = canned_server(
        "200 OK",
        r#"{"jsonrpc":"2.0","id":1,"result":{"number":"0x1000000","l1BlockNumber":"0x1234"}}"#,
    )
    .await;
    let client = ChainClient::new(arb).unwrap();
    assert_eq!(client.expiry_block_number().await.unwrap(), 0x1234);
    // Any other chain: the block's own number.
    let l1 =
        canned_server("200 OK", r#"{"jsonrpc":"2.0","id":1,"result":{"number":"0x2a"}}"#).await;
    assert_eq!(ChainClient::new(l1).unwrap().expiry_block_number().await.unwrap(), 42);
    let bad = canned_server("200 OK", r#"{"jsonrpc":"2.0","id":1,"result":{}}"#).await;
    assert!(matches!(
        ChainClient::new(bad).unwrap().expiry_block_number().await,
        Err(ChainError::Malformed { .. })
    ));
}
