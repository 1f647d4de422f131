//! From orchestrator ticket parameters to the `Livepeer-Payment` header: decoding what the
//! orchestrator advertised, numbering and signing tickets, and encoding `net.Payment`
//! (go-livepeer server/segment_rpc.go `genPayment`, pm/sender.go; PAYMENTS.md §2.4, §3.5).
//!
//! The orchestrator re-derives `recipientRand` from the values echoed in the payment, so every
//! advertised value is re-encoded exactly as Go would (`big.Int.Bytes()`, no leading zeros)
//! and the price is copied verbatim. The reverse direction ([`tickets_in_payment`]) is here
//! too, for simulators that check payments the way an orchestrator does.

use alloy_primitives::{Address, B256, U256};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use livepeer_proto::Message as _;
use livepeer_proto::net;

use crate::ev::{ArithmeticError, Ratio, ticket_ev};
use crate::signer::{self, LocalSigner, Signature};
use crate::ticket::{ExpirationParams, Ticket};

/// The HTTP header that carries the base64 payment.
pub const PAYMENT_HEADER: &str = livepeer_proto::headers::PAYMENT;

/// The `Livepeer-Payment` value of a gateway without an ETH account: present but empty, which
/// the orchestrator decodes as an empty `Payment`.
pub const OFFCHAIN_PAYMENT_HEADER: &str = livepeer_proto::headers::OFFCHAIN_PAYMENT;

/// How many distinct nonces an orchestrator accepts for one `recipientRandHash`
/// (`maxSenderNonces`); a gateway should have fresh params before reaching it.
pub const MAX_SENDER_NONCES: u32 = 600;

/// The most tickets one payment may carry: go-livepeer's orchestrators refuse a larger batch,
/// so a signer refuses to make one.
pub const MAX_TICKETS_PER_PAYMENT: u32 = 100;

/// Why ticket parameters or a payment could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    /// A field has the wrong length or a value wider than 256 bits.
    #[error("invalid {0}")]
    InvalidField(&'static str),
    /// The payment's sender is not the address that signed the batch.
    #[error("batch was signed by a different sender")]
    SenderMismatch,
    /// The 32-bit nonce space of this session is used up.
    #[error("sender nonce would overflow")]
    NonceExhausted,
    /// Signing failed.
    #[error(transparent)]
    Signer(#[from] signer::Error),
    /// Exact arithmetic failed.
    #[error(transparent)]
    Arithmetic(#[from] ArithmeticError),
    /// The header is not standard padded base64.
    #[error("payment header is not base64: {0}")]
    Base64(#[from] base64::DecodeError),
    /// The bytes are not a `net.Payment`.
    #[error("payment is not a valid protobuf: {0}")]
    Protobuf(#[from] prost::DecodeError),
}

/// Minimal big-endian bytes (Go's `big.Int.Bytes()`): zero is empty.
fn minbytes(v: &U256) -> Vec<u8> {
    v.to_be_bytes_trimmed_vec()
}

/// Go's `new(big.Int).SetBytes(b)`, refusing values that do not fit in 256 bits.
fn uint_from_bytes(bytes: &[u8], field: &'static str) -> Result<U256, PaymentError> {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    U256::try_from_be_slice(&bytes[start..]).ok_or(PaymentError::InvalidField(field))
}

fn address_from_bytes(bytes: &[u8], field: &'static str) -> Result<Address, PaymentError> {
    <[u8; 20]>::try_from(bytes).map(Address::from).map_err(|_| PaymentError::InvalidField(field))
}

/// A 32-byte hash; an empty field is the zero hash, as proto3 omits zero-length bytes.
fn hash_from_bytes(bytes: &[u8], field: &'static str) -> Result<B256, PaymentError> {
    if bytes.is_empty() {
        return Ok(B256::ZERO);
    }
    <[u8; 32]>::try_from(bytes).map(B256::from).map_err(|_| PaymentError::InvalidField(field))
}

// === impl ExpirationParams (wire) ===

impl ExpirationParams {
    /// Decodes `net.TicketExpirationParams`.
    pub fn from_proto(p: &net::TicketExpirationParams) -> Result<Self, PaymentError> {
        let hash = hash_from_bytes(&p.creation_round_block_hash, "creation_round_block_hash")?;
        Ok(Self::new(p.creation_round, hash))
    }

    /// Encodes `net.TicketExpirationParams`; the hash is always sent as 32 bytes.
    pub fn to_proto(&self) -> net::TicketExpirationParams {
        net::TicketExpirationParams {
            creation_round: self.creation_round,
            creation_round_block_hash: self.creation_round_block_hash.to_vec(),
        }
    }
}

/// The ticket parameters an orchestrator advertised (`OrchestratorInfo.ticket_params`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TicketParams {
    /// The orchestrator's ETH address.
    pub recipient: Address,
    /// Face value in wei.
    pub face_value: U256,
    /// Win probability over 2^256 − 1.
    pub win_prob: U256,
    /// The orchestrator's commitment; also the sender session id.
    pub recipient_rand_hash: B256,
    /// Echoed so that the orchestrator can re-derive `recipientRand`.
    pub seed: U256,
    /// L1 block after which the params are no longer accepted.
    pub expiration_block: U256,
    /// The orchestrator's own expiration params (field 7), if it sent any.
    pub expiration_params: Option<ExpirationParams>,
}

// === impl TicketParams ===

impl TicketParams {
    /// Decodes `net.TicketParams`: the recipient must be 20 bytes, the hash 32, integers at
    /// most 256 bits.
    pub fn from_proto(p: &net::TicketParams) -> Result<Self, PaymentError> {
        let rand_hash = <[u8; 32]>::try_from(p.recipient_rand_hash.as_slice())
            .map_err(|_| PaymentError::InvalidField("recipient_rand_hash"))?;
        Ok(Self {
            recipient: address_from_bytes(&p.recipient, "recipient")?,
            face_value: uint_from_bytes(&p.face_value, "face_value")?,
            win_prob: uint_from_bytes(&p.win_prob, "win_prob")?,
            recipient_rand_hash: B256::from(rand_hash),
            seed: uint_from_bytes(&p.seed, "seed")?,
            expiration_block: uint_from_bytes(&p.expiration_block, "expiration_block")?,
            expiration_params: p
                .expiration_params
                .as_ref()
                .map(ExpirationParams::from_proto)
                .transpose()?,
        })
    }

    /// The echo sent in `Payment.ticket_params`: fields 1–6 in minimal bytes and field 7 left
    /// unset, since the expiration params travel in `Payment.expiration_params`.
    pub fn to_payment_proto(&self) -> net::TicketParams {
        net::TicketParams {
            recipient: self.recipient.to_vec(),
            face_value: minbytes(&self.face_value),
            win_prob: minbytes(&self.win_prob),
            recipient_rand_hash: self.recipient_rand_hash.to_vec(),
            seed: minbytes(&self.seed),
            expiration_block: minbytes(&self.expiration_block),
            expiration_params: None,
        }
    }

    /// Expected value of one ticket.
    pub fn ev(&self) -> Ratio {
        ticket_ev(&self.face_value, &self.win_prob)
    }

    /// The expiration params to put in tickets (go-livepeer `CreateTicketBatch`): the
    /// orchestrator's, unless they are missing or have round 0 or a zero hash, in which case
    /// the gateway's own view of the last initialised round (`fallback`) is used.
    pub fn expiration_or(&self, fallback: ExpirationParams) -> ExpirationParams {
        match self.expiration_params {
            Some(p) if p.creation_round != 0 && !p.creation_round_block_hash.is_zero() => p,
            _ => fallback,
        }
    }

    /// The ticket these params, a sender, a nonce and expiration params make.
    pub fn ticket(&self, sender: Address, nonce: u32, expiration: &ExpirationParams) -> Ticket {
        Ticket {
            recipient: self.recipient,
            sender,
            face_value: self.face_value,
            win_prob: self.win_prob,
            sender_nonce: nonce,
            recipient_rand_hash: self.recipient_rand_hash,
            creation_round: expiration.creation_round,
            creation_round_block_hash: expiration.creation_round_block_hash,
        }
    }
}

/// One ticket's sender part in a payment: its nonce and signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TicketSenderParams {
    /// The ticket's nonce.
    pub sender_nonce: u32,
    /// The 65-byte signature over the ticket.
    pub sig: Signature,
}

/// Tickets signed together for one payment: shared params plus one nonce/signature each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketBatch {
    /// The advertised params the tickets copy.
    pub params: TicketParams,
    /// The signing gateway's address.
    pub sender: Address,
    /// The expiration params hashed into every ticket.
    pub expiration: ExpirationParams,
    /// One entry per ticket, in nonce order.
    pub sender_params: Vec<TicketSenderParams>,
}

impl TicketBatch {
    /// The full tickets of the batch.
    pub fn tickets(&self) -> impl Iterator<Item = Ticket> + '_ {
        self.sender_params
            .iter()
            .map(|sp| self.params.ticket(self.sender, sp.sender_nonce, &self.expiration))
    }

    /// `len × EV`: the credit the batch is worth.
    pub fn total_ev(&self) -> Result<Ratio, ArithmeticError> {
        self.params.ev().checked_mul_u64(self.sender_params.len() as u64)
    }
}

/// The gateway's ticket session with one set of orchestrator params (go-livepeer pm/sender.go
/// `StartSession`/`CreateTicketBatch`): nonces start at 0 and each ticket takes the next one,
/// so the first ticket carries 1. New params from the orchestrator mean a new session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderSession {
    params: TicketParams,
    expiration: ExpirationParams,
    last_nonce: u32,
}

// === impl SenderSession ===

impl SenderSession {
    /// A fresh session; `expiration` is what the tickets will carry (see
    /// [`TicketParams::expiration_or`]).
    pub fn new(params: TicketParams, expiration: ExpirationParams) -> Self {
        Self { params, expiration, last_nonce: 0 }
    }

    /// A session that continues after `last_nonce` (a remote signer resuming from its state).
    pub fn resume(params: TicketParams, expiration: ExpirationParams, last_nonce: u32) -> Self {
        Self { params, expiration, last_nonce }
    }

    /// The session id: the lower-case `0x` hex of `recipientRandHash`.
    pub fn id(&self) -> String {
        format!("{:#x}", self.params.recipient_rand_hash)
    }

    /// The params of this session.
    pub fn params(&self) -> &TicketParams {
        &self.params
    }

    /// The expiration params hashed into this session's tickets.
    pub fn expiration(&self) -> &ExpirationParams {
        &self.expiration
    }

    /// The nonce of the last ticket created (0 before the first).
    pub fn last_nonce(&self) -> u32 {
        self.last_nonce
    }

    /// Signs `n` tickets with the next `n` nonces. The nonces are used up only if every
    /// signature succeeds.
    pub fn create_batch(
        &mut self,
        signer: &LocalSigner,
        n: u32,
    ) -> Result<TicketBatch, PaymentError> {
        let last = self.last_nonce.checked_add(n).ok_or(PaymentError::NonceExhausted)?;
        let sender = signer.address();
        let mut sender_params = Vec::with_capacity(n as usize);
        for nonce in self.last_nonce + 1..=last {
            let sig = self.params.ticket(sender, nonce, &self.expiration).sign(signer)?;
            sender_params.push(TicketSenderParams { sender_nonce: nonce, sig });
        }
        self.last_nonce = last;
        Ok(TicketBatch { params: self.params, sender, expiration: self.expiration, sender_params })
    }
}

/// Builds `net.Payment` (go-livepeer `genPayment`): `sender` and a verbatim copy of the
/// orchestrator's `price_info` always; with a non-empty batch also `ticket_params` (fields
/// 1–6), `expiration_params` and one `ticket_sender_params` per ticket.
pub fn build_payment(
    sender: Address,
    expected_price: &net::PriceInfo,
    batch: Option<&TicketBatch>,
) -> Result<net::Payment, PaymentError> {
    let mut payment = net::Payment {
        sender: sender.to_vec(),
        expected_price: Some(expected_price.clone()),
        ..Default::default()
    };
    let Some(batch) = batch.filter(|b| !b.sender_params.is_empty()) else {
        return Ok(payment);
    };
    if batch.sender != sender {
        return Err(PaymentError::SenderMismatch);
    }
    payment.ticket_params = Some(batch.params.to_payment_proto());
    payment.expiration_params = Some(batch.expiration.to_proto());
    payment.ticket_sender_params = batch
        .sender_params
        .iter()
        .map(|sp| net::TicketSenderParams { sender_nonce: sp.sender_nonce, sig: sp.sig.0.to_vec() })
        .collect();
    Ok(payment)
}

/// The protobuf bytes of a payment (fields in number order, defaults omitted, as Go writes).
pub fn encode_payment(payment: &net::Payment) -> Vec<u8> {
    payment.encode_to_vec()
}

/// The `Livepeer-Payment` header value: standard padded base64 of the protobuf.
pub fn payment_header_value(payment: &net::Payment) -> String {
    STANDARD.encode(encode_payment(payment))
}

/// Parses a `Livepeer-Payment` value as the orchestrator does; the empty value is an empty
/// `Payment`.
pub fn decode_payment_header(value: &str) -> Result<net::Payment, PaymentError> {
    let bytes = STANDARD.decode(value)?;
    Ok(net::Payment::decode(bytes.as_slice())?)
}

/// The tickets a payment carries, with their signatures as sent, rebuilt the way the
/// orchestrator does from `ticket_params`, `expiration_params` and `sender`. Empty when the
/// payment has no `ticket_params`.
pub fn tickets_in_payment(payment: &net::Payment) -> Result<Vec<(Ticket, Vec<u8>)>, PaymentError> {
    let Some(params) = payment.ticket_params.as_ref() else {
        return Ok(Vec::new());
    };
    let params = TicketParams::from_proto(params)?;
    let sender = address_from_bytes(&payment.sender, "sender")?;
    let expiration = payment
        .expiration_params
        .as_ref()
        .map(ExpirationParams::from_proto)
        .transpose()?
        .unwrap_or_default();
    Ok(payment
        .ticket_sender_params
        .iter()
        .map(|sp| (params.ticket(sender, sp.sender_nonce, &expiration), sp.sig.clone()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> TicketParams {
        TicketParams {
            recipient: Address::repeat_byte(7),
            face_value: U256::from(1_000_000u64),
            win_prob: U256::MAX >> 4,
            recipient_rand_hash: B256::repeat_byte(9),
            seed: U256::from(0x0102u64),
            expiration_block: U256::from(500u64),
            expiration_params: Some(ExpirationParams::new(3, B256::repeat_byte(4))),
        }
    }

    #[test]
    fn nonces_start_at_one_and_continue() {
        let signer = LocalSigner::from_bytes(&[5u8; 32]).unwrap();
        let mut s = SenderSession::new(params(), ExpirationParams::new(3, B256::repeat_byte(4)));
        let b1 = s.create_batch(&signer, 2).unwrap();
        let b2 = s.create_batch(&signer, 1).unwrap();
        let nonces: Vec<u32> =
            b1.sender_params.iter().chain(&b2.sender_params).map(|p| p.sender_nonce).collect();
        assert_eq!(nonces, [1, 2, 3]);
        assert!(b1.tickets().zip(&b1.sender_params).all(|(t, p)| t.verify_signature(&p.sig.0)));
        let mut full = SenderSession::resume(params(), ExpirationParams::default(), u32::MAX);
        assert!(matches!(full.create_batch(&signer, 1), Err(PaymentError::NonceExhausted)));
        assert_eq!(full.last_nonce(), u32::MAX);
    }

    #[test]
    fn round_trip_through_header() {
        let signer = LocalSigner::from_bytes(&[5u8; 32]).unwrap();
        let mut s = SenderSession::new(params(), ExpirationParams::new(3, B256::repeat_byte(4)));
        let batch = s.create_batch(&signer, 3).unwrap();
        let price = net::PriceInfo { price_per_unit: 12, pixels_per_unit: 1, ..Default::default() };
        let p = build_payment(signer.address(), &price, Some(&batch)).unwrap();
        let back = decode_payment_header(&payment_header_value(&p)).unwrap();
        assert_eq!(back, p);
        let tickets = tickets_in_payment(&back).unwrap();
        assert_eq!(tickets.len(), 3);
        assert!(tickets.iter().all(|(t, sig)| t.verify_signature(sig)));
        assert_eq!(
            TicketParams::from_proto(back.ticket_params.as_ref().unwrap()).unwrap(),
            TicketParams { expiration_params: None, ..params() }
        );
        let other = Address::repeat_byte(1);
        assert!(matches!(
            build_payment(other, &price, Some(&batch)),
            Err(PaymentError::SenderMismatch)
        ));
        assert!(decode_payment_header("").unwrap() == net::Payment::default());
    }

    #[test]
    fn expiration_fallback_rule() {
        let own = ExpirationParams::new(99, B256::repeat_byte(1));
        let mut p = params();
        assert_eq!(p.expiration_or(own), ExpirationParams::new(3, B256::repeat_byte(4)));
        p.expiration_params = Some(ExpirationParams::new(0, B256::repeat_byte(4)));
        assert_eq!(p.expiration_or(own), own);
        p.expiration_params = Some(ExpirationParams::new(3, B256::ZERO));
        assert_eq!(p.expiration_or(own), own);
        p.expiration_params = None;
        assert_eq!(p.expiration_or(own), own);
    }

    #[test]
    fn rejects_malformed_params() {
        let good = params().to_payment_proto();
        let bad_recipient = net::TicketParams { recipient: vec![1; 19], ..good.clone() };
        assert!(TicketParams::from_proto(&bad_recipient).is_err());
        let wide = net::TicketParams { face_value: vec![1; 33], ..good.clone() };
        assert!(TicketParams::from_proto(&wide).is_err());
        let padded = net::TicketParams { face_value: [vec![0; 8], vec![1; 32]].concat(), ..good };
        assert!(TicketParams::from_proto(&padded).is_ok());
    }
}
