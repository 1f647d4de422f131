//! Checks signing against `testdata/tickets.json`, produced by go-livepeer 176aa415's code.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test helpers may panic")]

use livepeer_pm::{LocalSigner, recover_eth_signer};
use serde_json::Value;

fn vectors() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/tickets.json");
    let text = std::fs::read_to_string(path).expect("testdata/tickets.json at the workspace root");
    serde_json::from_str(&text).unwrap()
}

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s.trim_start_matches("0x")).unwrap()
}

#[test]
fn key_addresses_match() {
    let v = vectors();
    let keys = v["keys"].as_array().unwrap();
    assert!(!keys.is_empty());
    for k in keys {
        let signer = LocalSigner::from_hex(k["private_key"].as_str().unwrap()).unwrap();
        assert_eq!(signer.address().to_checksum(None), k["address"].as_str().unwrap());
    }
}

#[test]
fn orchestrator_request_signatures_are_byte_identical() {
    let v = vectors();
    let cases = v["orchestrator_request_sig_cases"].as_array().unwrap();
    assert!(!cases.is_empty());
    for c in cases {
        let signer = LocalSigner::from_hex(c["private_key"].as_str().unwrap()).unwrap();
        let text = signer.address().to_checksum(None);
        assert_eq!(text, c["signed_string"].as_str().unwrap());
        assert_eq!(
            livepeer_pm::keccak256(text.as_bytes()).as_slice(),
            unhex(c["keccak_of_string"].as_str().unwrap())
        );
        let sig = signer.eth_sign(text.as_bytes()).unwrap();
        assert_eq!(sig.0.to_vec(), unhex(c["expected_sig"].as_str().unwrap()), "{text}");
        assert_eq!(recover_eth_signer(text.as_bytes(), &sig.0).unwrap(), signer.address());
    }
}

#[test]
fn segment_credential_signatures_are_byte_identical() {
    let v = vectors();
    let cases = v["segment_creds_sig_cases"].as_array().unwrap();
    assert!(!cases.is_empty());
    for c in cases {
        let signer = LocalSigner::from_hex(c["private_key"].as_str().unwrap()).unwrap();
        let flat = unhex(c["flatten"].as_str().unwrap());
        let hash = livepeer_pm::B256::from_slice(&unhex(c["segment_data_hash"].as_str().unwrap()));
        let profiles_hex = c["profiles_hex"].as_str().unwrap();
        if profiles_hex.is_empty() {
            let ours = livepeer_pm::flatten_segment(
                c["manifest_id"].as_str().unwrap(),
                c["seq"].as_u64().unwrap(),
                &hash,
                &[],
            );
            assert_eq!(ours, flat, "flatten of {}", c["manifest_id"]);
        }
        let sig = signer.eth_sign(&flat).unwrap();
        assert_eq!(sig.0.to_vec(), unhex(c["expected_sig"].as_str().unwrap()));
    }
}
