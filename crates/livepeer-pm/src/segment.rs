//! The bytes a gateway signs for `Livepeer-Segment` (go-livepeer core/streamdata.go `Flatten`,
//! PROTOCOL.md §4.5).

use alloy_primitives::{B256, keccak256};

/// `keccak256("")`: the hash of the empty segment that AI, payment and live calls send.
pub fn empty_segment_hash() -> B256 {
    keccak256([])
}

/// `utf8(manifest_id) ‖ leftpad32(seq) ‖ hash ‖ ascii_hex(concat of keccak256(name)[0..4])`.
///
/// `seq` is a non-negative sequence number; profile names must be non-empty, as the
/// orchestrator substitutes generated names for empty ones and the signature would not match.
pub fn flatten_segment(
    manifest_id: &str,
    seq: u64,
    hash: &B256,
    profile_names: &[&str],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(manifest_id.len() + 64 + profile_names.len() * 8);
    out.extend_from_slice(manifest_id.as_bytes());
    let mut seq_word = [0u8; 32];
    seq_word[24..].copy_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&seq_word);
    out.extend_from_slice(hash.as_slice());
    let mut prefixes = Vec::with_capacity(profile_names.len() * 4);
    for name in profile_names {
        prefixes.extend_from_slice(&keccak256(name.as_bytes())[..4]);
    }
    out.extend_from_slice(hex::encode(prefixes).as_bytes());
    out
}
