//! Who wins: the commit-reveal lottery between orchestrator and gateway (go-livepeer
//! pm/validator.go `IsWinningTicket`, pm/recipient.go `rand` and `winProb`; PAYMENTS.md §3.6).
//!
//! The gateway never learns `recipientRand`, so only the orchestrator side (or a simulator of
//! it) can decide a winner. The functions here let such a simulator check tickets exactly as a
//! real orchestrator would, including the HMAC that binds `recipientRand` to every advertised
//! parameter: if the gateway echoes any of them differently, the orchestrator's recomputed
//! hash no longer matches and the whole payment is rejected.

use alloy_primitives::{Address, B256, U256, keccak256};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::ev::{MAX_WIN_PROB, Ratio};
use crate::ticket::ExpirationParams;

/// `keccak256(uint256(recipientRand))`: the commitment the orchestrator advertises.
pub fn recipient_rand_hash(recipient_rand: &U256) -> B256 {
    keccak256(recipient_rand.to_be_bytes::<32>())
}

/// `uint256(keccak256(sig ‖ uint256(recipientRand)))`, with `sig` exactly as sent.
pub fn win_value(sig: &[u8], recipient_rand: &U256) -> U256 {
    let mut buf = Vec::with_capacity(sig.len() + 32);
    buf.extend_from_slice(sig);
    buf.extend_from_slice(&recipient_rand.to_be_bytes::<32>());
    U256::from_be_bytes(keccak256(&buf).0)
}

/// Whether a ticket with signature `sig` wins: `win_value < winProb`, strictly.
///
/// `winProb = 0` never wins; `winProb = 2^256 − 1` wins unless the hash is all ones.
pub fn is_winning(sig: &[u8], recipient_rand: &U256, win_prob: &U256) -> bool {
    win_value(sig, recipient_rand) < *win_prob
}

/// Everything the orchestrator's `recipientRand` HMAC covers, as it reads them back from a
/// payment: seed, faceValue, winProb and expirationBlock from `Payment.ticket_params`, the
/// sender from `Payment.sender`, the price from `Payment.expected_price` (normalised) and the
/// auxData from `Payment.expiration_params`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecipientRandInputs {
    /// `TicketParams.seed`.
    pub seed: U256,
    /// The gateway address the params were issued for.
    pub sender: Address,
    /// `TicketParams.face_value`.
    pub face_value: U256,
    /// `TicketParams.win_prob`.
    pub win_prob: U256,
    /// `TicketParams.expiration_block`.
    pub expiration_block: U256,
    /// The price per unit in lowest terms, as `big.Rat` holds it.
    pub price: Ratio,
    /// The expiration params whose auxData ends the message.
    pub expiration: ExpirationParams,
}

impl RecipientRandInputs {
    /// The HMAC message: `minbytes(seed) ‖ sender ‖ minbytes(faceValue) ‖ minbytes(winProb) ‖
    /// minbytes(expirationBlock) ‖ minbytes(price.num) ‖ minbytes(price.den) ‖ auxData`, where
    /// `minbytes` is Go's `big.Int.Bytes()` (no leading zeros; zero is empty).
    ///
    /// The fields are not length-prefixed, so different values can collide; that is
    /// go-livepeer's format and is reproduced, not fixed.
    pub fn hmac_message(&self) -> Vec<u8> {
        let mut msg = Vec::with_capacity(32 * 6 + 20 + 64);
        msg.extend_from_slice(&self.seed.to_be_bytes_trimmed_vec());
        msg.extend_from_slice(self.sender.as_slice());
        msg.extend_from_slice(&self.face_value.to_be_bytes_trimmed_vec());
        msg.extend_from_slice(&self.win_prob.to_be_bytes_trimmed_vec());
        msg.extend_from_slice(&self.expiration_block.to_be_bytes_trimmed_vec());
        msg.extend_from_slice(&self.price.numer().to_be_bytes_trimmed_vec());
        msg.extend_from_slice(&self.price.denom().to_be_bytes_trimmed_vec());
        if let Some(aux) = self.expiration.aux_words() {
            msg.extend_from_slice(&aux);
        }
        msg
    }

    /// `uint256(HMAC-SHA256(secret, hmac_message()))`: the orchestrator's `recipientRand`.
    pub fn recipient_rand(&self, secret: &[u8]) -> U256 {
        // HMAC accepts keys of any length, so construction cannot fail; the fallback only
        // exists to keep this function total without a panic path.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
            return U256::ZERO;
        };
        mac.update(&self.hmac_message());
        let out: [u8; 32] = mac.finalize().into_bytes().into();
        U256::from_be_bytes(out)
    }
}

/// The win probability an orchestrator with a target EV of `ticket_ev` wei advertises for
/// `face_value` (go-livepeer pm/recipient.go `winProb`): `ticket_ev × ceil((2^256 − 1) /
/// face_value)`, 0 for a zero face value and `2^256 − 1` when the face value equals the EV.
///
/// `None` when the product exceeds 256 bits, which only happens when `ticket_ev > face_value`,
/// a combination the orchestrator never produces.
pub fn orchestrator_win_prob(face_value: &U256, ticket_ev: &U256) -> Option<U256> {
    if face_value.is_zero() {
        return Some(U256::ZERO);
    }
    if face_value == ticket_ev {
        return Some(MAX_WIN_PROB);
    }
    ticket_ev.checked_mul(MAX_WIN_PROB.div_ceil(*face_value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn win_rule_is_strict() {
        let sig = [0xabu8; 65];
        let rand = U256::from(42u64);
        let v = win_value(&sig, &rand);
        assert!(!is_winning(&sig, &rand, &v));
        assert!(is_winning(&sig, &rand, &(v + U256::from(1u64))));
        assert!(!is_winning(&sig, &rand, &U256::ZERO));
    }

    #[test]
    fn hmac_depends_on_every_field() {
        let base = RecipientRandInputs {
            seed: U256::from(1u64),
            sender: Address::repeat_byte(1),
            face_value: U256::from(100u64),
            win_prob: U256::from(5u64),
            expiration_block: U256::from(41u64),
            price: Ratio::from_u64(1200),
            expiration: ExpirationParams::new(3, B256::repeat_byte(2)),
        };
        let r = base.recipient_rand(&[3u8; 32]);
        let changed = [
            RecipientRandInputs { seed: U256::from(2u64), ..base },
            RecipientRandInputs { sender: Address::repeat_byte(9), ..base },
            RecipientRandInputs { face_value: U256::from(101u64), ..base },
            RecipientRandInputs { win_prob: U256::from(6u64), ..base },
            RecipientRandInputs { expiration_block: U256::from(42u64), ..base },
            RecipientRandInputs { price: Ratio::from_u64(12), ..base },
            RecipientRandInputs { expiration: ExpirationParams::default(), ..base },
        ];
        for c in changed {
            assert_ne!(c.recipient_rand(&[3u8; 32]), r, "{c:?}");
        }
        assert_ne!(base.recipient_rand(&[4u8; 32]), r);
    }

    #[test]
    fn orchestrator_win_prob_edges() {
        let ev = U256::from(5u64);
        assert_eq!(orchestrator_win_prob(&U256::ZERO, &ev), Some(U256::ZERO));
        assert_eq!(orchestrator_win_prob(&ev, &ev), Some(MAX_WIN_PROB));
        assert_eq!(orchestrator_win_prob(&U256::from(1u64), &ev), None);
    }
}
