//! Ethereum signatures as every part of the Livepeer protocol uses them.
//!
//! `eth_sign(m)` = secp256k1 over `keccak256("\x19Ethereum Signed Message:\n32" ‖ keccak256(m))`,
//! 65 bytes `r ‖ s ‖ v` with low `s` and `v ∈ {27, 28}` (go-livepeer eth/accountmanager.go `Sign`,
//! crypto/verify.go). The private key never leaves [`LocalSigner`], and its `Debug` shows only the
//! address.

use alloy_primitives::{Address, B256, eip191_hash_message, keccak256};
use k256::ecdsa::{RecoveryId, SigningKey, VerifyingKey};

/// Why a key could not be loaded or a signature could not be made or checked.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The private key bytes are not a valid secp256k1 scalar. The key itself is never printed.
    #[error("invalid private key: {0}")]
    InvalidKey(&'static str),
    /// A signature is not 65 bytes, has a high `s`, or has `v` outside {27, 28}.
    #[error("invalid signature: {0}")]
    InvalidSignature(&'static str),
    /// The underlying ECDSA operation failed.
    #[error("ecdsa: {0}")]
    Ecdsa(#[from] k256::ecdsa::Error),
}

/// A 65-byte Ethereum signature `r ‖ s ‖ v`, `v` being 27 or 28.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(pub [u8; 65]);

impl std::fmt::Debug for Signature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signature(0x{})", hex::encode(self.0))
    }
}

impl AsRef<[u8]> for Signature {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// The digest that `eth_sign(message)` signs: EIP-191 over the 32-byte keccak of `message`.
///
/// Does not sign; [`LocalSigner::eth_sign`] does.
pub fn eth_sign_hash(message: &[u8]) -> B256 {
    eip191_hash_message(keccak256(message))
}

/// A secp256k1 key held in memory.
pub struct LocalSigner {
    // SigningKey zeroizes itself on drop; this struct's Debug prints only the address.
    key: SigningKey,
    address: Address,
}

impl std::fmt::Debug for LocalSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalSigner").field("address", &self.address).finish_non_exhaustive()
    }
}

impl LocalSigner {
    /// Builds a signer from a raw 32-byte private key.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, Error> {
        let key = SigningKey::from_bytes(bytes.into())
            .map_err(|_| Error::InvalidKey("not a valid secp256k1 scalar"))?;
        let address = address_of(key.verifying_key());
        Ok(Self { key, address })
    }

    /// Builds a signer from a hex private key, with or without `0x`, surrounding space ignored.
    pub fn from_hex(text: &str) -> Result<Self, Error> {
        let text = text.trim();
        let text = text.strip_prefix("0x").unwrap_or(text);
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes)
            .map_err(|_| Error::InvalidKey("expected 64 hex digits"))?;
        Self::from_bytes(&bytes)
    }

    /// The Ethereum address of this key.
    pub fn address(&self) -> Address {
        self.address
    }

    /// Signs a 32-byte prehash as is (no hashing, no prefix), returning `r ‖ s ‖ v` with `v ∈ {27,28}`.
    pub fn sign_prehash(&self, digest: &B256) -> Result<Signature, Error> {
        // k256 normalises `s` to the lower half and adjusts the recovery id to match, which is
        // what go-ethereum's verifier (and the TicketBroker contract) insist on.
        let (sig, recid) = self.key.sign_prehash_recoverable(digest.as_slice())?;
        let mut out = [0u8; 65];
        out[..64].copy_from_slice(&sig.to_bytes());
        out[64] = 27 + recid.to_byte();
        Ok(Signature(out))
    }

    /// `eth_sign(message)`: keccak256 the message, then sign its EIP-191 hash.
    pub fn eth_sign(&self, message: &[u8]) -> Result<Signature, Error> {
        self.sign_prehash(&eth_sign_hash(message))
    }

    /// Signs the EIP-191 hash of `message` as is, without hashing it first: go-ethereum's
    /// `accounts.TextHash(message)`, which go-livepeer signs for a ticket hash.
    pub fn sign_message(&self, message: &[u8]) -> Result<Signature, Error> {
        self.sign_prehash(&eip191_hash_message(message))
    }
}

/// Recovers the address that produced `sig` over `eth_sign(message)`, with go-livepeer's checks:
/// 65 bytes, low `s`, `v ∈ {27, 28}`.
pub fn recover_eth_signer(message: &[u8], sig: &[u8]) -> Result<Address, Error> {
    recover_message_signer(keccak256(message).as_slice(), sig)
}

/// Recovers the address that produced `sig` over the EIP-191 hash of `message` taken as is
/// (go-livepeer crypto/verify.go `VerifySig(addr, msg, sig)`), with the same checks as
/// [`recover_eth_signer`]. For a ticket, `message` is the 32-byte ticket hash.
pub fn recover_message_signer(message: &[u8], sig: &[u8]) -> Result<Address, Error> {
    let sig: &[u8; 65] =
        sig.try_into().map_err(|_| Error::InvalidSignature("signature must be 65 bytes"))?;
    let v = sig[64];
    if v != 27 && v != 28 {
        return Err(Error::InvalidSignature("v must be 27 or 28"));
    }
    let ecdsa = k256::ecdsa::Signature::from_slice(&sig[..64])?;
    if ecdsa.normalize_s().is_some() {
        return Err(Error::InvalidSignature("s is in the upper half of the curve order"));
    }
    let recid = RecoveryId::from_byte(v - 27).ok_or(Error::InvalidSignature("bad recovery id"))?;
    let digest = eip191_hash_message(message);
    let key = VerifyingKey::recover_from_prehash(digest.as_slice(), &ecdsa, recid)?;
    Ok(address_of(&key))
}

fn address_of(key: &VerifyingKey) -> Address {
    let point = key.to_encoded_point(false);
    // Uncompressed SEC1 is 0x04 ‖ X ‖ Y; the address is the last 20 bytes of keccak(X ‖ Y).
    let hash = keccak256(&point.as_bytes()[1..]);
    Address::from_slice(&hash[12..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_key() {
        let key = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";
        let signer = LocalSigner::from_hex(key).unwrap();
        let shown = format!("{signer:?}");
        assert!(!shown.contains(key) && !shown.contains(&key[..16]), "{shown}");
        assert!(shown.contains("address"));
    }

    #[test]
    fn rejects_bad_keys_and_signatures() {
        assert!(LocalSigner::from_hex("0x1234").is_err());
        assert!(LocalSigner::from_bytes(&[0u8; 32]).is_err());
        assert!(recover_eth_signer(b"m", &[0u8; 64]).is_err());
        let signer = LocalSigner::from_bytes(&[7u8; 32]).unwrap();
        let mut sig = signer.eth_sign(b"hello").unwrap().0;
        assert_eq!(recover_eth_signer(b"hello", &sig).unwrap(), signer.address());
        sig[64] = 29;
        assert!(recover_eth_signer(b"hello", &sig).is_err());
    }
}
