#![allow(clippy::unwrap_used, reason = "tests")]

use super::*;
use serde_json::json;

#[test]
fn selectors_match_go_livepeer() {
    assert_eq!(selector(GET_CONTRACT_SIGNATURE), [0xe1, 0x6c, 0x7d, 0x98]);
    assert_eq!(selector(GET_SENDER_INFO_SIGNATURE), [0xe1, 0xa5, 0x89, 0xda]);
    assert_eq!(abi::TicketBroker::getSenderInfoCall::SELECTOR, [0xe1, 0xa5, 0x89, 0xda]);
}

#[test]
fn decodes_sender_info_words() {
    let mut data = vec![0u8; 128];
    data[31] = 7;
    data[63] = 1;
    data[64] = 0x80; // reserve = 2^255
    data[127] = 3;
    let info = decode_sender_info(&data).unwrap();
    assert_eq!(info.deposit, U256::from(7));
    assert!(info.is_unlocking());
    assert_eq!(info.reserve, U256::from(1) << 255);
    assert_eq!(info.claimed_in_current_round, U256::from(3));
    assert_eq!(info.max_face_value(2), Some(U256::from(3)));
    assert_eq!(info.max_face_value(0), None);
    assert!(matches!(decode_sender_info(&data[..96]), Err(ChainError::Malformed { .. })));
}

#[test]
fn unlock_soon_is_go_livepeers_comparison() {
    let info = |withdraw: u64| SenderInfo {
        withdraw_round: U256::from(withdraw),
        ..SenderInfo::default()
    };
    let round = U256::from(10);
    assert!(!info(0).unlocks_soon(round), "not unlocking");
    assert!(info(5).unlocks_soon(round), "already withdrawable");
    assert!(info(10).unlocks_soon(round));
    assert!(info(11).unlocks_soon(round), "withdrawRound == lastInitializedRound + 1");
    assert!(!info(12).unlocks_soon(round), "two rounds away: still usable");
    assert!(info(1).unlocks_soon(U256::MAX), "no overflow");
}

#[test]
fn rejects_bad_quantities() {
    assert_eq!(parse_quantity("m", &json!("0x1b4")).unwrap(), 0x1b4);
    for bad in [json!("1b4"), json!("0x"), json!(12), json!("0x1ffffffffffffffff")] {
        assert!(parse_quantity("m", &bad).is_err(), "{bad}");
    }
}

#[test]
fn decode_tells_no_contract_from_bad_data() {
    let to = Address::repeat_byte(1);
    assert!(matches!(
        decode::<abi::Controller::getContractCall>(to, &[]),
        Err(ChainError::NoContract { address }) if address == to
    ));
    let mut word = [0u8; 32];
    word[0] = 1;
    assert!(matches!(
        decode::<abi::Controller::getContractCall>(to, &word),
        Err(ChainError::Malformed { method: "getContract", .. })
    ));
}

#[test]
fn amounts_need_a_unit_and_stay_exact() {
    use super::tx::{format_eth, parse_amount};
    let eth = U256::from(10u64).pow(U256::from(18));
    assert_eq!(parse_amount("1ETH").unwrap(), eth);
    assert_eq!(parse_amount("0.5 eth").unwrap(), eth / U256::from(2));
    assert_eq!(parse_amount("0.000000000000000001ETH").unwrap(), U256::from(1));
    assert_eq!(parse_amount("2gwei").unwrap(), U256::from(2_000_000_000u64));
    assert_eq!(parse_amount("1.5gwei").unwrap(), U256::from(1_500_000_000u64));
    assert_eq!(parse_amount("123wei").unwrap(), U256::from(123));
    for bad in ["1", "1.2wei", "0.0000000000000000001ETH", "eth", "-1ETH", "1e18wei", ".5ETH"] {
        assert!(parse_amount(bad).is_err(), "{bad}");
    }
    assert_eq!(format_eth(eth * U256::from(3) / U256::from(2)), "1.5 ETH");
    assert_eq!(format_eth(U256::from(1)), "0.000000000000000001 ETH");
    assert_eq!(format_eth(U256::ZERO), "0 ETH");
}
