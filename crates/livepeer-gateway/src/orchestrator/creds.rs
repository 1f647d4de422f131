//! `Livepeer-Segment` and `Livepeer-Payment` for calls that carry no video segment (AI batch,
//! live, payments): PROTOCOL.md §4.4–4.5.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use livepeer_pm::{LocalSigner, empty_segment_hash, flatten_segment};
use livepeer_proto::{Message, net};

use super::caps::Capabilities;
use super::info::AuthToken;

/// The `Livepeer-Segment` header value: base64 of a SegData for an empty segment with
/// `manifest_id`, the job's capabilities and the orchestrator's auth token, signed when the
/// gateway has a key (an off-chain orchestrator accepts it unsigned).
pub fn segment_header(
    manifest_id: &str,
    caps: &Capabilities,
    token: Option<&AuthToken>,
    signer: Option<&LocalSigner>,
) -> String {
    let hash = empty_segment_hash();
    let sig = signer
        .and_then(|s| s.eth_sign(&flatten_segment(manifest_id, 0, &hash, &[])).ok())
        .map(|s| s.0.to_vec())
        .unwrap_or_default();
    let seg = net::SegData {
        manifest_id: manifest_id.as_bytes().to_vec(),
        seq: 0,
        hash: hash.to_vec(),
        // go-livepeer always sends this literal to break very old orchestrators.
        profiles: b"invalid".to_vec(),
        sig,
        capabilities: Some(caps.into()),
        auth_token: token.map(|t| net::AuthToken {
            token: t.token.clone(),
            session_id: t.session_id.clone(),
            expiration: t.expiration,
        }),
        ..net::SegData::default()
    };
    STANDARD.encode(seg.encode_to_vec())
}

/// The `Livepeer-Payment` header of an off-chain gateway: empty, as go-livepeer sends it.
pub const OFFCHAIN_PAYMENT: &str = livepeer_proto::headers::OFFCHAIN_PAYMENT;

/// The AI manifest id: `"<capability>_<model>"` (PROTOCOL.md §4.7).
pub fn ai_manifest_id(capability: u32, model: &str) -> String {
    format!("{capability}_{model}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_header_round_trips_and_verifies() {
        let signer = LocalSigner::from_bytes(&[3; 32]).unwrap();
        let caps = Capabilities::ai_job(27, "m", "", "");
        let token = AuthToken { token: vec![1, 2], session_id: "abcd0123".into(), expiration: 9 };
        let header = segment_header("27_m", &caps, Some(&token), Some(&signer));
        let seg = net::SegData::decode(STANDARD.decode(header).unwrap().as_slice()).unwrap();
        assert_eq!(seg.manifest_id, b"27_m");
        assert_eq!(seg.auth_token.unwrap().session_id, "abcd0123");
        assert_eq!(Capabilities::from(&seg.capabilities.unwrap()), caps);
        let flat = flatten_segment("27_m", 0, &empty_segment_hash(), &[]);
        assert_eq!(livepeer_pm::recover_eth_signer(&flat, &seg.sig).unwrap(), signer.address());
        let unsigned = segment_header("27_m", &caps, None, None);
        let seg = net::SegData::decode(STANDARD.decode(unsigned).unwrap().as_slice()).unwrap();
        assert!(seg.sig.is_empty() && seg.auth_token.is_none());
    }
}
