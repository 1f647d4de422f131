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
