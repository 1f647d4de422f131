//! The probabilistic micropayment ticket: its hash preimage, hash, expected value and signature
//! (go-livepeer pm/ticket.go, PAYMENTS.md §3).
//!
//! The preimage is Solidity `abi.encodePacked` of `(recipient, sender, faceValue, winProb,
//! senderNonce, recipientRandHash, auxData)`, the same bytes the TicketBroker contract hashes
//! when a winning ticket is redeemed, so a single wrong byte makes every ticket worthless.

use alloy_primitives::{Address, B256, U256, eip191_hash_message, keccak256};

use crate::ev::{Ratio, ticket_ev};
use crate::signer::{self, LocalSigner, Signature};

/// Length of the preimage with auxData: 20 + 20 + 32 + 32 + 32 + 32 + 64.
const FULL_PREIMAGE_LEN: usize = 232;
/// Length of the preimage when auxData is empty.
const SHORT_PREIMAGE_LEN: usize = FULL_PREIMAGE_LEN - 64;

/// The round a ticket was created in and that round's L1 block hash: the ticket's auxData.
///
/// The TicketBroker uses them to expire old tickets. The gateway copies the values into every
/// ticket and into `Payment.expiration_params` (PAYMENTS.md §3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ExpirationParams {
    /// `creationRound`.
    pub creation_round: i64,
    /// `creationRoundBlockHash`.
    pub creation_round_block_hash: B256,
}

impl ExpirationParams {
    /// Both values from their parts.
    pub fn new(creation_round: i64, creation_round_block_hash: B256) -> Self {
        Self { creation_round, creation_round_block_hash }
    }

    /// Whether there is no auxData at all: round 0 **and** an all-zero hash.
    ///
    /// Either one alone being zero still yields 64 bytes (go-livepeer `TestAuxData`).
    pub fn is_empty(&self) -> bool {
        self.creation_round == 0 && self.creation_round_block_hash.is_zero()
    }

    /// `uint256(creationRound) ‖ creationRoundBlockHash`, or `None` when [`Self::is_empty`].
    pub fn aux_words(&self) -> Option<[u8; 64]> {
        if self.is_empty() {
            return None;
        }
        let mut out = [0u8; 64];
        // Go writes `big.NewInt(round).Bytes()`, the magnitude, so a negative round (never seen
        // on chain) encodes as its absolute value; mirror that rather than two's complement.
        out[24..32].copy_from_slice(&self.creation_round.unsigned_abs().to_be_bytes());
        out[32..].copy_from_slice(self.creation_round_block_hash.as_slice());
        Some(out)
    }

    /// The auxData bytes: empty, or the 64 bytes of [`Self::aux_words`].
    pub fn aux_data(&self) -> Vec<u8> {
        self.aux_words().map(|w| w.to_vec()).unwrap_or_default()
    }
}

/// One ticket, as the gateway signs it and the orchestrator validates it.
///
/// `ParamsExpirationBlock` and the price travel alongside in the payment but are not hashed,
/// so they are not part of this type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ticket {
    /// The orchestrator's ETH address (`TicketParams.recipient`).
    pub recipient: Address,
    /// The gateway's ETH address; it must be the address of the signing key.
    pub sender: Address,
    /// Amount paid if the ticket wins, in wei.
    pub face_value: U256,
    /// Win probability as the numerator of a fraction over 2^256 − 1.
    pub win_prob: U256,
    /// The per-session counter; the first ticket of a session carries 1.
    pub sender_nonce: u32,
    /// The orchestrator's commitment `keccak256(uint256(recipientRand))`.
    pub recipient_rand_hash: B256,
    /// See [`ExpirationParams::creation_round`].
    pub creation_round: i64,
    /// See [`ExpirationParams::creation_round_block_hash`].
    pub creation_round_block_hash: B256,
}

// === impl Ticket ===

impl Ticket {
    /// The ticket's expiration params.
    pub fn expiration_params(&self) -> ExpirationParams {
        ExpirationParams::new(self.creation_round, self.creation_round_block_hash)
    }

    /// The auxData: empty when round 0 and hash zero, else `uint256(round) ‖ hash`.
    pub fn aux_data(&self) -> Vec<u8> {
        self.expiration_params().aux_data()
    }

    /// Writes the preimage into `buf` and returns its length (232, or 168 without auxData).
    fn write_preimage(&self, buf: &mut [u8; FULL_PREIMAGE_LEN]) -> usize {
        buf[0..20].copy_from_slice(self.recipient.as_slice());
        buf[20..40].copy_from_slice(self.sender.as_slice());
        buf[40..72].copy_from_slice(&self.face_value.to_be_bytes::<32>());
        buf[72..104].copy_from_slice(&self.win_prob.to_be_bytes::<32>());
        buf[104..132].fill(0);
        buf[132..136].copy_from_slice(&self.sender_nonce.to_be_bytes());
        buf[136..168].copy_from_slice(self.recipient_rand_hash.as_slice());
        match self.expiration_params().aux_words() {
            Some(aux) => {
                buf[168..].copy_from_slice(&aux);
                FULL_PREIMAGE_LEN
            }
            None => SHORT_PREIMAGE_LEN,
        }
    }

    /// The hash preimage: `recipient ‖ sender ‖ u256(faceValue) ‖ u256(winProb) ‖
    /// u256(senderNonce) ‖ recipientRandHash ‖ auxData`.
    pub fn flatten(&self) -> Vec<u8> {
        let mut buf = [0u8; FULL_PREIMAGE_LEN];
        let len = self.write_preimage(&mut buf);
        buf[..len].to_vec()
    }

    /// `keccak256(flatten())`, computed without allocating.
    pub fn hash(&self) -> B256 {
        let mut buf = [0u8; FULL_PREIMAGE_LEN];
        let len = self.write_preimage(&mut buf);
        keccak256(&buf[..len])
    }

    /// The digest that is actually signed: EIP-191 over the 32 hash bytes,
    /// `keccak256("\x19Ethereum Signed Message:\n32" ‖ hash)`.
    pub fn signing_digest(&self) -> B256 {
        eip191_hash_message(self.hash())
    }

    /// Expected value `faceValue × winProb / (2^256 − 1)`, exact.
    pub fn ev(&self) -> Ratio {
        ticket_ev(&self.face_value, &self.win_prob)
    }

    /// Signs the ticket: 65 bytes `r ‖ s ‖ v`, low `s`, `v ∈ {27, 28}`, RFC 6979 nonces.
    ///
    /// Equivalent to `signer.eth_sign(&self.flatten())`, because `eth_sign` hashes its message
    /// once before the EIP-191 prefix; this path skips the allocation.
    pub fn sign(&self, signer: &LocalSigner) -> Result<Signature, signer::Error> {
        signer.sign_prehash(&self.signing_digest())
    }

    /// The address that produced `sig` over this ticket, with the orchestrator's checks
    /// (65 bytes, low `s`, `v ∈ {27, 28}`; go-livepeer crypto/verify.go).
    pub fn recover_signer(&self, sig: &[u8]) -> Result<Address, signer::Error> {
        signer::recover_message_signer(self.hash().as_slice(), sig)
    }

    /// Whether `sig` is a valid signature of this ticket by [`Ticket::sender`].
    pub fn verify_signature(&self, sig: &[u8]) -> bool {
        self.recover_signer(sig).is_ok_and(|a| a == self.sender)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Ticket {
        Ticket {
            recipient: Address::repeat_byte(0x11),
            sender: Address::repeat_byte(0x22),
            face_value: U256::from(1000u64),
            win_prob: U256::MAX,
            sender_nonce: 7,
            recipient_rand_hash: B256::repeat_byte(0x33),
            creation_round: 5,
            creation_round_block_hash: B256::repeat_byte(0x44),
        }
    }

    #[test]
    fn layout_and_lengths() {
        let t = sample();
        let flat = t.flatten();
        assert_eq!(flat.len(), 232);
        assert_eq!(flat[135], 7);
        assert_eq!(flat[199], 5);
        assert_eq!(keccak256(&flat), t.hash());
        let short = Ticket { creation_round: 0, creation_round_block_hash: B256::ZERO, ..t };
        assert_eq!(short.flatten().len(), 168);
        assert!(short.aux_data().is_empty());
        let negative = Ticket { creation_round: -5, ..t };
        assert_eq!(negative.aux_data(), t.aux_data());
    }

    #[test]
    fn sign_equals_eth_sign_of_preimage_and_recovers() {
        let signer = LocalSigner::from_bytes(&[9u8; 32]).unwrap();
        let t = Ticket { sender: signer.address(), ..sample() };
        let sig = t.sign(&signer).unwrap();
        assert_eq!(sig, signer.eth_sign(&t.flatten()).unwrap());
        assert!(t.verify_signature(&sig.0));
        let other = Ticket { sender_nonce: 8, ..t };
        assert!(!other.verify_signature(&sig.0));
    }
}
