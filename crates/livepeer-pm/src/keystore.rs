//! Ethereum V3 keystore files (Web3 Secret Storage), as go-ethereum writes them and go-livepeer
//! unlocks them for `-ethKeystorePath` + `-ethPassword` (GATEWAY.md §3.3).
//!
//! A key file holds a secp256k1 key encrypted with AES-128-CTR under a key derived from a
//! password by scrypt or PBKDF2-HMAC-SHA256. [`load_keystore`] derives that key, checks the MAC
//! `keccak256(derived[16..32] ‖ ciphertext)` in constant time, decrypts, and returns a
//! [`LocalSigner`]. This module does no I/O: the gateway reads the key file and the password
//! file and passes their contents in, using [`normalize_password`] for a password file.
//!
//! The KDF parameters come from the file, so a hostile or corrupt file could ask for gigabytes
//! of memory or hours of CPU. They are bounded by [`MAX_SCRYPT_N`], [`MAX_SCRYPT_R`],
//! [`MAX_SCRYPT_P`] and [`MAX_PBKDF2_ITERATIONS`] before any work is done.

use aes::Aes128;
use alloy_primitives::{Address, Keccak256};
use ctr::Ctr128BE;
use ctr::cipher::{KeyIvInit, StreamCipher};
use pbkdf2::sha2::Sha256;
use secrecy::zeroize::Zeroizing;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::signer::{self, LocalSigner};

/// Largest scrypt `n` accepted: 2^20 (go-ethereum's standard is 2^18, its light setting 2^12).
pub const MAX_SCRYPT_N: u64 = 1 << 20;
/// Largest scrypt `r` accepted (go-ethereum always writes 8).
pub const MAX_SCRYPT_R: u64 = 16;
/// Largest scrypt `p` accepted (go-ethereum writes 1, or 6 for its light setting).
pub const MAX_SCRYPT_P: u64 = 16;
/// Largest PBKDF2 iteration count `c` accepted (the spec's example uses 262,144).
pub const MAX_PBKDF2_ITERATIONS: u64 = 10_000_000;

/// The only derived-key length accepted: 16 bytes of AES key, then 16 bytes of MAC key.
const DKLEN: u64 = 32;
const KEY_LEN: usize = 32;
const IV_LEN: usize = 16;
const MAC_LEN: usize = 32;

/// Why a keystore could not be unlocked.
///
/// No variant carries the password, the derived key or the private key; the `String`s are the
/// file's own cipher, KDF or PRF names, so both `Display` and `Debug` are safe to log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeystoreError {
    /// The text is not JSON, or lacks a field a V3 key file must have.
    #[error("not a V3 keystore file: {0}")]
    Json(#[from] serde_json::Error),
    /// `version` is not the number 3 (V1 and V2 files, and V4 (EIP-2335) files, are not read).
    #[error("unsupported keystore version {0} (only version 3 is supported)")]
    UnsupportedVersion(String),
    /// `crypto.cipher` is not `aes-128-ctr`.
    #[error("unsupported keystore cipher {0:?} (only aes-128-ctr is supported)")]
    UnsupportedCipher(String),
    /// `crypto.kdf` is neither `scrypt` nor `pbkdf2`.
    #[error("unsupported keystore kdf {0:?} (only scrypt and pbkdf2 are supported)")]
    UnsupportedKdf(String),
    /// `crypto.kdfparams.prf` of a PBKDF2 file is not `hmac-sha256`.
    #[error("unsupported pbkdf2 prf {0:?} (only hmac-sha256 is supported)")]
    UnsupportedPrf(String),
    /// A KDF parameter is invalid or larger than this loader is willing to spend on it.
    #[error("refusing keystore kdf parameter {name} = {value}: must be {allowed}")]
    KdfParamOutOfRange {
        /// The parameter's name in `kdfparams`.
        name: &'static str,
        /// The value the file asked for.
        value: u64,
        /// What is accepted.
        allowed: &'static str,
    },
    /// A hex field does not decode.
    #[error("keystore field {0} is not valid hex")]
    InvalidHex(&'static str),
    /// A field decodes to the wrong number of bytes.
    #[error("keystore field {field} is {actual} bytes long, expected {expected}")]
    InvalidLength {
        /// The field's name.
        field: &'static str,
        /// What is accepted.
        expected: &'static str,
        /// What the file holds.
        actual: usize,
    },
    /// The MAC does not match: the password is wrong, or the file was altered.
    #[error("keystore MAC mismatch: wrong password or corrupted key file")]
    MacMismatch,
    /// The file's `address` field is not the address of the key it decrypts to.
    #[error(
        "keystore address field {expected} does not match the decrypted key's address {derived}"
    )]
    AddressMismatch {
        /// The address the file claims.
        expected: Address,
        /// The address of the decrypted key.
        derived: Address,
    },
    /// The decrypted bytes are not a valid secp256k1 private key (zero, or not below the order).
    #[error("keystore decrypts to an invalid private key")]
    InvalidKey(#[source] signer::Error),
}

/// Decrypts a V3 keystore file's JSON text with `password` into a [`LocalSigner`].
///
/// Accepts what go-ethereum's `keystore.DecryptKey` accepts for version 3, within the KDF bounds
/// above: `aes-128-ctr`, `scrypt` or `pbkdf2` with `hmac-sha256`, a 32-byte derived key, hex
/// with or without `0x`, `Crypto` as well as `crypto` (older wallets wrote it capitalised). A
/// plaintext shorter than 32 bytes is read as a big-endian number, as go-ethereum does (some
/// writers dropped a key's leading zero bytes). If the file has an `address` field, it must be
/// the decrypted key's address.
///
/// The password is used as its UTF-8 bytes, untouched; see [`normalize_password`] for a password
/// read from a file. Deriving the key is deliberately slow (about a second for go-ethereum's
/// standard scrypt parameters in an optimised build), so async callers should run this on a
/// blocking thread.
pub fn load_keystore(json: &str, password: &SecretString) -> Result<LocalSigner, KeystoreError> {
    // The version is checked before the layout, so a V1 or V4 file gets a clear error.
    let value: serde_json::Value = serde_json::from_str(json)?;
    match value.get("version") {
        Some(version) if version.as_u64() == Some(3) => {}
        Some(version) => return Err(KeystoreError::UnsupportedVersion(version.to_string())),
        None => return Err(KeystoreError::UnsupportedVersion("(missing)".to_owned())),
    }
    let file: KeyFile = serde_json::from_value(value)?;
    // Parse and check everything cheap first, so a malformed or hostile file costs no KDF work.
    let expected_address = file.address.as_deref().map(parse_address).transpose()?;
    let crypto = file.crypto;
    if crypto.cipher != "aes-128-ctr" {
        return Err(KeystoreError::UnsupportedCipher(crypto.cipher));
    }
    let kdf = Kdf::parse(&crypto.kdf, crypto.kdfparams)?;
    let iv: [u8; IV_LEN] = decode_array("cipherparams.iv", &crypto.cipherparams.iv, "16 bytes")?;
    let mac: [u8; MAC_LEN] = decode_array("mac", &crypto.mac, "32 bytes")?;
    let ciphertext = decode_hex("ciphertext", &crypto.ciphertext)?;
    if ciphertext.is_empty() || ciphertext.len() > KEY_LEN {
        return Err(KeystoreError::InvalidLength {
            field: "ciphertext",
            expected: "1 to 32 bytes",
            actual: ciphertext.len(),
        });
    }

    let derived = kdf.derive(password.expose_secret().as_bytes())?;
    let [aes_key, mac_key] = &*derived;
    let mut hasher = Keccak256::new();
    hasher.update(mac_key);
    hasher.update(&ciphertext);
    // Constant time, so a caller timing many attempts learns nothing about how close a guess was.
    if !bool::from(hasher.finalize().as_slice().ct_eq(&mac)) {
        return Err(KeystoreError::MacMismatch);
    }

    // Decrypt in place, right-aligned, so a short plaintext comes out left-padded with zeros.
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    let start = KEY_LEN - ciphertext.len();
    key[start..].copy_from_slice(&ciphertext);
    // go-ethereum's CTR (Go's crypto/cipher) counts over the whole 128-bit IV, big-endian.
    let mut cipher = Ctr128BE::<Aes128>::new(aes_key.into(), (&iv).into());
    cipher.apply_keystream(&mut key[start..]);

    let signer = LocalSigner::from_bytes(&key).map_err(KeystoreError::InvalidKey)?;
    if let Some(expected) = expected_address
        && expected != signer.address()
    {
        return Err(KeystoreError::AddressMismatch { expected, derived: signer.address() });
    }
    Ok(signer)
}

/// Turns the contents of a password file into the password, as go-livepeer reads
/// `-ethPassword` when it names a file: surrounding whitespace is removed.
///
/// go-livepeer's `common.ReadFromFile` applies Go's `strings.TrimSpace` (Unicode white space at
/// both ends, the same set as [`str::trim`]), so `"secret\n"`, `"secret\r\n"` and `"  secret \n"`
/// all give `secret`. Two more rules of go-livepeer's stay with the caller, which does the I/O:
/// a value that is not a readable file is itself the password, untrimmed; and a file that is
/// empty after trimming makes go-livepeer fall back to using the path string as the password.
pub fn normalize_password(text: &str) -> SecretString {
    // `From<&str>` copies into an exactly-sized buffer that the secret zeroizes on drop.
    SecretString::from(text.trim())
}

// === impl Kdf ===

/// A key derivation function with parameters already checked against the bounds.
enum Kdf {
    Scrypt { log_n: u8, r: u32, p: u32, salt: Vec<u8> },
    Pbkdf2 { c: u32, salt: Vec<u8> },
}

impl Kdf {
    fn parse(name: &str, params: serde_json::Value) -> Result<Self, KeystoreError> {
        match name {
            "scrypt" => {
                let params: ScryptParams = serde_json::from_value(params)?;
                check_dklen(params.dklen)?;
                let n = params.n;
                if !(2..=MAX_SCRYPT_N).contains(&n) || !n.is_power_of_two() {
                    return Err(out_of_range("n", n, "a power of two from 2 to 2^20"));
                }
                let r = bounded("r", params.r, MAX_SCRYPT_R, "from 1 to 16")?;
                let p = bounded("p", params.p, MAX_SCRYPT_P, "from 1 to 16")?;
                // n is a power of two no larger than 2^20, so its log fits a u8.
                let log_n = u8::try_from(n.trailing_zeros())
                    .map_err(|_| out_of_range("n", n, "a power of two from 2 to 2^20"))?;
                let salt = decode_hex("kdfparams.salt", &params.salt)?;
                Ok(Kdf::Scrypt { log_n, r, p, salt })
            }
            "pbkdf2" => {
                let params: Pbkdf2Params = serde_json::from_value(params)?;
                if params.prf != "hmac-sha256" {
                    return Err(KeystoreError::UnsupportedPrf(params.prf));
                }
                check_dklen(params.dklen)?;
                let c = bounded("c", params.c, MAX_PBKDF2_ITERATIONS, "from 1 to 10000000")?;
                let salt = decode_hex("kdfparams.salt", &params.salt)?;
                Ok(Kdf::Pbkdf2 { c, salt })
            }
            other => Err(KeystoreError::UnsupportedKdf(other.to_owned())),
        }
    }

    /// The derived key as its two halves: the AES-128 key, then the MAC key.
    fn derive(&self, password: &[u8]) -> Result<Zeroizing<[[u8; 16]; 2]>, KeystoreError> {
        let mut out = Zeroizing::new([[0u8; 16]; 2]);
        match self {
            Kdf::Scrypt { log_n, r, p, salt } => {
                // scrypt 0.12, like Go's x/crypto/scrypt, does not apply RFC 7914's erroneous
                // `n < 2^(16 r)` limit, which would refuse the spec's own n = 2^18, r = 1 example.
                let params = scrypt::Params::new(*log_n, *r, *p).map_err(|_| {
                    out_of_range("r", u64::from(*r), "small enough for n and p (scrypt limits)")
                })?;
                scrypt::scrypt(password, salt, &params, out.as_flattened_mut())
                    .map_err(|_| out_of_range("dklen", DKLEN, "accepted by scrypt"))?;
            }
            Kdf::Pbkdf2 { c, salt } => {
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, *c, out.as_flattened_mut());
            }
        }
        Ok(out)
    }
}

// === JSON shape ===

// Only what decryption needs (`version` was checked already); `id` and any other field are
// ignored.
#[derive(Deserialize)]
struct KeyFile {
    #[serde(default)]
    address: Option<String>,
    // go-ethereum matches JSON keys case-insensitively, so it reads MyEtherWallet's `Crypto`.
    #[serde(alias = "Crypto")]
    crypto: CryptoJson,
}

#[derive(Deserialize)]
struct CryptoJson {
    cipher: String,
    ciphertext: String,
    cipherparams: CipherParams,
    kdf: String,
    // Its shape depends on `kdf`, so it is read in a second step.
    kdfparams: serde_json::Value,
    mac: String,
}

#[derive(Deserialize)]
struct CipherParams {
    iv: String,
}

#[derive(Deserialize)]
struct ScryptParams {
    dklen: u64,
    n: u64,
    r: u64,
    p: u64,
    salt: String,
}

#[derive(Deserialize)]
struct Pbkdf2Params {
    c: u64,
    dklen: u64,
    prf: String,
    salt: String,
}

// === helpers ===

fn out_of_range(name: &'static str, value: u64, allowed: &'static str) -> KeystoreError {
    KeystoreError::KdfParamOutOfRange { name, value, allowed }
}

fn bounded(
    name: &'static str,
    value: u64,
    max: u64,
    allowed: &'static str,
) -> Result<u32, KeystoreError> {
    if value == 0 || value > max {
        return Err(out_of_range(name, value, allowed));
    }
    u32::try_from(value).map_err(|_| out_of_range(name, value, allowed))
}

fn check_dklen(dklen: u64) -> Result<(), KeystoreError> {
    if dklen != DKLEN {
        return Err(out_of_range("dklen", dklen, "32"));
    }
    Ok(())
}

fn decode_hex(field: &'static str, text: &str) -> Result<Vec<u8>, KeystoreError> {
    let text = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")).unwrap_or(text);
    hex::decode(text).map_err(|_| KeystoreError::InvalidHex(field))
}

fn decode_array<const N: usize>(
    field: &'static str,
    text: &str,
    expected: &'static str,
) -> Result<[u8; N], KeystoreError> {
    let bytes = decode_hex(field, text)?;
    let actual = bytes.len();
    bytes.try_into().map_err(|_| KeystoreError::InvalidLength { field, expected, actual })
}

fn parse_address(text: &str) -> Result<Address, KeystoreError> {
    decode_array::<20>("address", text, "20 bytes").map(Address::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    // go-ethereum's testdata/very-light-scrypt.json (n = 2), written by its own EncryptKey.
    const LIGHT: &str = r#"{"address":"45dea0fb0bba44f4fcf290bba71fd57d7117cbb8","crypto":{"cipher":"aes-128-ctr","ciphertext":"b87781948a1befd247bff51ef4063f716cf6c2d3481163e9a8f42e1f9bb74145","cipherparams":{"iv":"dc4926b48a105133d2f16b96833abf1e"},"kdf":"scrypt","kdfparams":{"dklen":32,"n":2,"p":1,"r":8,"salt":"004244bbdc51cadda545b1cfa43cff9ed2ae88e08c61f1479dbb45410722f8f0"},"mac":"39990c1684557447940d4c69e06b1b82b2aceacb43f284df65c956daf3046b85"},"id":"ce541d8d-c79b-40f8-9f8c-20f59616faba","version":3}"#;

    fn empty() -> SecretString {
        SecretString::from("")
    }

    #[test]
    fn capitalised_crypto_and_0x_hex_are_read() {
        let json = LIGHT
            .replace("\"crypto\"", "\"Crypto\"")
            .replace("\"45dea0", "\"0x45dea0")
            .replace("\"dc4926", "\"0xdc4926");
        let signer = load_keystore(&json, &empty()).unwrap();
        assert_eq!(signer.address().to_string(), "0x45DeA0FB0bBA44f4fcF290bbA71Fd57d7117Cbb8");
    }

    #[test]
    fn cheap_checks_come_before_the_kdf() {
        // n = 2^30 would need 128 GiB; it must be refused by the bound, not attempted.
        let huge = LIGHT.replace("\"n\":2,", "\"n\":1073741824,");
        let err = load_keystore(&huge, &empty()).unwrap_err();
        assert!(matches!(err, KeystoreError::KdfParamOutOfRange { name: "n", .. }), "{err}");
        let bad_iv = LIGHT.replace("dc4926b48a105133d2f16b96833abf1e", "dc4926");
        let err = load_keystore(&bad_iv, &empty()).unwrap_err();
        assert!(matches!(err, KeystoreError::InvalidLength { field: "cipherparams.iv", .. }));
        let v2 = LIGHT.replace("\"version\":3", "\"version\":\"3\"");
        assert!(matches!(load_keystore(&v2, &empty()), Err(KeystoreError::UnsupportedVersion(_))));
    }

    #[test]
    fn normalize_password_trims_like_go_livepeer() {
        for text in ["secret", "secret\n", "secret\r\n", "  secret \t\n\n", "\u{a0}secret\u{2003}"]
        {
            assert_eq!(normalize_password(text).expose_secret(), "secret", "{text:?}");
        }
        assert_eq!(normalize_password("two words\n").expose_secret(), "two words");
        assert_eq!(normalize_password("\n").expose_secret(), "");
    }
}
