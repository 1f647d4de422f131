//! V3 keystore files decrypt to the right key, and bad passwords, altered files and hostile
//! KDF parameters are refused without leaking the password or the key.
//!
//! Fixtures (`tests/fixtures/`), each also decrypted by eth-account 0.14.0 as a cross-check:
//! - `spec-pbkdf2.json`: the PBKDF2-SHA-256 example of the Web3 Secret Storage Definition
//!   (ethereum.org), password `testpassword`, secret `7a28b5ba…14fe9d`.
//! - `spec-scrypt.json`: the definition's scrypt example as first published on the go-ethereum
//!   wiki (n = 2^18, r = 1, p = 8), which go-ethereum keeps as `wikipage_test_vector_scrypt` in
//!   `accounts/keystore/testdata/v3_test_vector.json`. The example now on ethereum.org
//!   (r = 8, p = 1, salt `25710c2c…`) is not used: its kdfparams do not produce its own derived
//!   key, so eth-account also rejects it with "MAC mismatch".
//! - `light-scrypt-hardhat-1.json`: generated once with Python, eth-account 0.14.0,
//!   `Account.encrypt(key, password, kdf="scrypt", iterations=4096)` with
//!   `eth_keyfile.keyfile.SCRYPT_P` set to 6 (eth-keyfile hard-codes r = 8, p = 1), i.e.
//!   go-ethereum's light parameters n = 4096, r = 8, p = 6; key `hardhat_account_1` of
//!   `testdata/tickets.json`, a non-ASCII password, a checksummed `address` field.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests panic on failure"
)]

use aes::Aes128;
use ctr::Ctr128BE;
use ctr::cipher::{KeyIvInit, StreamCipher};
use livepeer_pm::keystore::{MAX_PBKDF2_ITERATIONS, MAX_SCRYPT_N};
use livepeer_pm::{KeystoreError, LocalSigner, keccak256, load_keystore, normalize_password};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

const SPEC_PBKDF2: &str = include_str!("fixtures/spec-pbkdf2.json");
const SPEC_SCRYPT: &str = include_str!("fixtures/spec-scrypt.json");
const HARDHAT_1: &str = include_str!("fixtures/light-scrypt-hardhat-1.json");

const SPEC_PASSWORD: &str = "testpassword";
const SPEC_SECRET: &str = "7a28b5ba57c53603b0b07b56bba752f7784bf506fa95edc395f5cf6c7514fe9d";
// The definition lists this address for its secret.
const SPEC_ADDRESS: &str = "0x008AeEda4D805471dF9b2A5B0f38A0C3bCBA786b";
const HARDHAT_1_PASSWORD: &str = "livepeer gateway keystore \u{2713}";
const HARDHAT_1_SECRET: &str = "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";

fn pw(text: &str) -> SecretString {
    SecretString::from(text)
}

fn address_of(json: &str, password: &str) -> String {
    load_keystore(json, &pw(password)).unwrap().address().to_checksum(None)
}

/// Edits one field of a fixture; `path` is a JSON pointer.
fn edit(json: &str, path: &str, value: Value) -> String {
    let mut doc: Value = serde_json::from_str(json).unwrap();
    *doc.pointer_mut(path).unwrap_or_else(|| panic!("no {path}")) = value;
    doc.to_string()
}

/// Writes a V3 file with go-ethereum's very light scrypt (n = 2, r = 8, p = 1) for keys no
/// fixture holds, such as the zero key.
fn encrypt(secret: &[u8; 32], password: &str) -> String {
    encrypt_bytes(secret, password)
}

/// Encrypts any plaintext (keystores written by old tools may hold fewer than 32 bytes).
fn encrypt_bytes(secret: &[u8], password: &str) -> String {
    let salt = [0x5a_u8; 32];
    let iv = [0xa5_u8; 16];
    let mut derived = [0u8; 32];
    let params = scrypt::Params::new(1, 8, 1).unwrap();
    scrypt::scrypt(password.as_bytes(), &salt, &params, &mut derived).unwrap();
    let mut ciphertext = secret.to_vec();
    let aes_key: [u8; 16] = derived[..16].try_into().unwrap();
    Ctr128BE::<Aes128>::new(&aes_key.into(), &iv.into()).apply_keystream(&mut ciphertext);
    let mac = keccak256([&derived[16..], &ciphertext[..]].concat());
    serde_json::json!({
        "crypto": {
            "cipher": "aes-128-ctr",
            "cipherparams": { "iv": hex::encode(iv) },
            "ciphertext": hex::encode(ciphertext),
            "kdf": "scrypt",
            "kdfparams": { "dklen": 32, "n": 2, "r": 8, "p": 1, "salt": hex::encode(salt) },
            "mac": hex::encode(mac),
        },
        "id": "00000000-0000-4000-8000-000000000000",
        "version": 3,
    })
    .to_string()
}

fn tickets_keys() -> Vec<(String, String)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/tickets.json");
    let text = std::fs::read_to_string(path).expect("testdata/tickets.json at the workspace root");
    let doc: Value = serde_json::from_str(&text).unwrap();
    doc["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            let key = k["private_key"].as_str().unwrap().trim_start_matches("0x").to_owned();
            (key, k["address"].as_str().unwrap().to_owned())
        })
        .collect()
}

// === fixtures decrypt ===

#[test]
fn spec_pbkdf2_example_decrypts() {
    let signer = load_keystore(SPEC_PBKDF2, &pw(SPEC_PASSWORD)).unwrap();
    assert_eq!(signer.address().to_checksum(None), SPEC_ADDRESS);
    // Same key, not merely the same address: RFC 6979 signatures are deterministic.
    let direct = LocalSigner::from_hex(SPEC_SECRET).unwrap();
    assert_eq!(signer.eth_sign(b"keystore").unwrap(), direct.eth_sign(b"keystore").unwrap());
}

#[test]
fn spec_scrypt_example_decrypts() {
    // n = 2^18 with r = 1 is beyond RFC 7914's (mistaken) n < 2^(16 r); go-ethereum accepts it.
    assert_eq!(address_of(SPEC_SCRYPT, SPEC_PASSWORD), SPEC_ADDRESS);
}

#[test]
fn short_plaintext_is_a_big_endian_key() {
    // A key whose first byte is zero, stored as its 31 remaining bytes (as some tools do).
    let key = "00fa7b3db73dc7dfdf8c5fbdb796d741e4488628c41fc4febd9160a866ba0f35";
    let expected = LocalSigner::from_hex(key).unwrap();
    let bytes = hex::decode(key).unwrap();
    let address = address_of(&encrypt_bytes(&bytes[1..], "foo"), "foo");
    assert_eq!(address, expected.address().to_checksum(None));
}

#[test]
fn light_scrypt_file_decrypts_to_tickets_json_key() {
    let (key, address) = tickets_keys()
        .into_iter()
        .find(|(key, _)| key == HARDHAT_1_SECRET)
        .expect("hardhat_account_1 in tickets.json");
    assert_eq!(key, HARDHAT_1_SECRET);
    assert_eq!(address_of(HARDHAT_1, HARDHAT_1_PASSWORD), address);
    assert_eq!(address, "0x70997970C51812dc3A010C7d01b50e0d17dc79C8");
}

#[test]
fn every_tickets_json_key_round_trips() {
    for (key, address) in tickets_keys() {
        let mut secret = [0u8; 32];
        hex::decode_to_slice(&key, &mut secret).unwrap();
        assert_eq!(address_of(&encrypt(&secret, "pw"), "pw"), address, "{key}");
    }
}

#[test]
fn password_file_contents_are_trimmed_before_use() {
    let password = normalize_password(&format!("{HARDHAT_1_PASSWORD}\r\n"));
    let signer = load_keystore(HARDHAT_1, &password).unwrap();
    assert_eq!(signer.address().to_checksum(None), "0x70997970C51812dc3A010C7d01b50e0d17dc79C8");
}

// === refusals ===

#[test]
fn wrong_password_is_a_mac_mismatch() {
    for (json, password) in [
        (HARDHAT_1, "livepeer gateway keystore"),
        (HARDHAT_1, &format!("{HARDHAT_1_PASSWORD}\n")),
        (SPEC_PBKDF2, "testpassword "),
    ] {
        let err = load_keystore(json, &pw(password)).unwrap_err();
        assert!(matches!(err, KeystoreError::MacMismatch), "{password:?}: {err}");
    }
}

#[test]
fn altered_file_is_a_mac_mismatch() {
    let original: Value = serde_json::from_str(HARDHAT_1).unwrap();
    let ciphertext = original["crypto"]["ciphertext"].as_str().unwrap();
    let mut flipped = ciphertext.to_owned();
    flipped.replace_range(..1, if ciphertext.starts_with('0') { "1" } else { "0" });
    let mac = original["crypto"]["mac"].as_str().unwrap();
    let mut other_mac = mac.to_owned();
    other_mac.replace_range(63.., if mac.ends_with('0') { "1" } else { "0" });
    for (path, value) in [
        ("/crypto/ciphertext", flipped),
        ("/crypto/mac", other_mac),
        ("/crypto/kdfparams/salt", "00".repeat(16)),
    ] {
        let err = load_keystore(&edit(HARDHAT_1, path, value.into()), &pw(HARDHAT_1_PASSWORD))
            .unwrap_err();
        assert!(matches!(err, KeystoreError::MacMismatch), "{path}: {err}");
    }
    // A truncated ciphertext is still a valid length, and still caught by the MAC.
    let short = &ciphertext[..62];
    let err = load_keystore(
        &edit(HARDHAT_1, "/crypto/ciphertext", short.into()),
        &pw(HARDHAT_1_PASSWORD),
    )
    .unwrap_err();
    assert!(matches!(err, KeystoreError::MacMismatch), "{err}");
}

#[test]
fn address_field_must_match_the_key() {
    let json = edit(HARDHAT_1, "/address", "f39fd6e51aad88f6f4ce6ab8827279cfffb92266".into());
    let err = load_keystore(&json, &pw(HARDHAT_1_PASSWORD)).unwrap_err();
    let KeystoreError::AddressMismatch { expected, derived } = err else { panic!("{err}") };
    assert_eq!(expected.to_checksum(None), "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266");
    assert_eq!(derived.to_checksum(None), "0x70997970C51812dc3A010C7d01b50e0d17dc79C8");
    // An address of the wrong length is refused before any KDF work.
    let json = edit(HARDHAT_1, "/address", "70997970".into());
    assert!(matches!(
        load_keystore(&json, &pw(HARDHAT_1_PASSWORD)),
        Err(KeystoreError::InvalidLength { field: "address", .. })
    ));
}

#[test]
fn hostile_kdf_parameters_are_refused_before_any_work() {
    // Several of these would need tens or hundreds of GiB, or hours, if they were attempted.
    let scrypt_cases: [(&str, u64, &str); 10] = [
        ("/crypto/kdfparams/n", MAX_SCRYPT_N * 2, "n"),
        ("/crypto/kdfparams/n", 1 << 40, "n"),
        ("/crypto/kdfparams/n", 4095, "n"),
        ("/crypto/kdfparams/n", 1, "n"),
        ("/crypto/kdfparams/n", 0, "n"),
        ("/crypto/kdfparams/r", 17, "r"),
        ("/crypto/kdfparams/r", 0, "r"),
        ("/crypto/kdfparams/p", 17, "p"),
        ("/crypto/kdfparams/p", u64::MAX, "p"),
        ("/crypto/kdfparams/dklen", 64, "dklen"),
    ];
    for (path, value, param) in scrypt_cases {
        let err = err_of(HARDHAT_1, path, value);
        assert!(err.to_string().starts_with("refusing keystore kdf parameter"), "{err}");
        let KeystoreError::KdfParamOutOfRange { name, value: shown, .. } = err else {
            panic!("{path} = {value}: {err}")
        };
        assert_eq!((name, shown), (param, value));
    }
    for (value, param) in [(MAX_PBKDF2_ITERATIONS + 1, "c"), (0, "c"), (31, "dklen")] {
        let path = format!("/crypto/kdfparams/{param}");
        let err = err_of(SPEC_PBKDF2, &path, value);
        assert!(
            matches!(err, KeystoreError::KdfParamOutOfRange { name, .. } if name == param),
            "{err}"
        );
    }
    // Negative or fractional numbers are not parameters at all.
    let json = edit(HARDHAT_1, "/crypto/kdfparams/n", serde_json::json!(-4096));
    assert!(matches!(load_keystore(&json, &pw("")), Err(KeystoreError::Json(_))));
    let json = edit(SPEC_PBKDF2, "/crypto/kdfparams/c", serde_json::json!(262144.5));
    assert!(matches!(load_keystore(&json, &pw("")), Err(KeystoreError::Json(_))));
}

fn err_of(json: &str, path: &str, value: u64) -> KeystoreError {
    load_keystore(&edit(json, path, value.into()), &pw("irrelevant")).unwrap_err()
}

#[test]
fn unsupported_formats_are_named() {
    let cases: [(&str, &str, Value); 5] = [
        (SPEC_PBKDF2, "/crypto/kdfparams/prf", "hmac-sha512".into()),
        (HARDHAT_1, "/crypto/kdf", "argon2id".into()),
        (HARDHAT_1, "/crypto/cipher", "aes-128-cbc".into()),
        (HARDHAT_1, "/version", 4.into()),
        (HARDHAT_1, "/version", "3".into()),
    ];
    for (json, path, value) in cases {
        let err = load_keystore(&edit(json, path, value.clone()), &pw("x")).unwrap_err();
        let ok = match &err {
            KeystoreError::UnsupportedPrf(prf) => prf == "hmac-sha512",
            KeystoreError::UnsupportedKdf(kdf) => kdf == "argon2id",
            KeystoreError::UnsupportedCipher(cipher) => cipher == "aes-128-cbc",
            KeystoreError::UnsupportedVersion(shown) => {
                serde_json::from_str::<Value>(shown).ok().as_ref() == Some(&value)
            }
            _ => false,
        };
        assert!(ok, "{path} = {value}: {err}");
    }
    assert!(matches!(load_keystore("not json", &pw("x")), Err(KeystoreError::Json(_))));
    assert!(matches!(load_keystore("{}", &pw("x")), Err(KeystoreError::UnsupportedVersion(_))));
    let no_crypto = r#"{"version":3,"id":"x"}"#;
    assert!(matches!(load_keystore(no_crypto, &pw("x")), Err(KeystoreError::Json(_))));
}

#[test]
fn zero_key_is_refused() {
    let err = load_keystore(&encrypt(&[0u8; 32], "pw"), &pw("pw")).unwrap_err();
    assert!(matches!(err, KeystoreError::InvalidKey(_)), "{err}");
}

// === nothing secret is shown ===

#[test]
fn errors_and_signers_never_show_secrets() {
    let password = HARDHAT_1_PASSWORD;
    let forbidden =
        [password, "livepeer gateway", HARDHAT_1_SECRET, &HARDHAT_1_SECRET[..16], SPEC_SECRET];
    let mut shown = Vec::new();
    let signer = load_keystore(HARDHAT_1, &pw(password)).unwrap();
    shown.push(format!("{signer:?}"));
    let errors = [
        load_keystore(HARDHAT_1, &pw("livepeer gateway keystore")).unwrap_err(),
        load_keystore(&edit(HARDHAT_1, "/address", "00".repeat(20).into()), &pw(password))
            .unwrap_err(),
        load_keystore(&edit(HARDHAT_1, "/crypto/kdfparams/n", 3.into()), &pw(password))
            .unwrap_err(),
        load_keystore(&HARDHAT_1[..HARDHAT_1.len() / 2], &pw(password)).unwrap_err(),
        load_keystore(&encrypt(&[0u8; 32], password), &pw(password)).unwrap_err(),
    ];
    for err in &errors {
        shown.push(format!("{err}"));
        shown.push(format!("{err:?}"));
        let mut source = std::error::Error::source(err);
        while let Some(inner) = source {
            shown.push(format!("{inner} {inner:?}"));
            source = inner.source();
        }
    }
    let secret = normalize_password(&format!("{password}\n"));
    assert_eq!(secret.expose_secret(), password);
    shown.push(format!("{secret:?}"));
    for text in &shown {
        for needle in forbidden {
            assert!(!text.to_lowercase().contains(&needle.to_lowercase()), "{needle:?} in {text}");
        }
    }
}
