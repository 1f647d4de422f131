//! Livepeer probabilistic micropayments, free of I/O.
//!
//! - [`LocalSigner`]: Ethereum signatures (`eth_sign`, EIP-191) for orchestrator
//!   requests, segment credentials and tickets (PROTOCOL.md §1.4).
//! - [`Ticket`]: hash preimage, hash, expected value and signature of a PM ticket.
//! - [`Ratio`]/[`SignedRatio`]: exact rationals for EV, prices, fees and credit.
//! - [`is_winning`], [`RecipientRandInputs`]: the lottery, as an orchestrator evaluates it.
//! - [`Balance`]/[`Balances`]: the gateway's credit with each orchestrator.
//! - [`transcode_fee_estimate`], [`unit_fee`]: what a request is expected to cost.
//! - [`SenderSession`], [`build_payment`]: numbered, signed tickets in a `Livepeer-Payment`.
//!
//! Every value is checked byte for byte against `testdata/tickets.json`, which
//! go-livepeer's own code reproduces (PAYMENTS.md §11).
#![cfg_attr(not(test), warn(unused_crate_dependencies))]

mod balance;
mod ev;
mod fee;
pub mod keystore;
mod payment;
mod segment;
mod signer;
mod ticket;
mod win;

pub use alloy_primitives::{Address, B256, U256, U512, keccak256};
pub use balance::{
    Balance, BalanceError, BalanceUpdate, Balances, UpdateStatus, min_credit, tickets_needed,
};
pub use ev::{ArithmeticError, MAX_WIN_PROB, Ratio, SignedRatio, ticket_ev};
pub use fee::{
    FeeError, LIVE_VIDEO_INITIAL_SECONDS, LIVE_VIDEO_INITIAL_UNITS, LIVE_VIDEO_UNITS_PER_SECOND,
    OutputProfile, PASSTHROUGH_FPS, PER_SECOND_INITIAL_UNITS, PIXEL_ESTIMATE_MULTIPLIER,
    estimated_out_pixels, price_per_unit, transcode_fee_estimate, unit_fee,
};
pub use keystore::{KeystoreError, load_keystore, normalize_password};
pub use payment::{
    MAX_SENDER_NONCES, MAX_TICKETS_PER_PAYMENT, OFFCHAIN_PAYMENT_HEADER, PAYMENT_HEADER,
    PaymentError, SenderSession, TicketBatch, TicketParams, TicketSenderParams, build_payment,
    decode_payment_header, encode_payment, payment_header_value, tickets_in_payment,
};
pub use segment::{empty_segment_hash, flatten_segment};
pub use signer::{
    Error, LocalSigner, Signature, eth_sign_hash, recover_eth_signer, recover_message_signer,
};
pub use ticket::{ExpirationParams, Ticket};
pub use win::{
    RecipientRandInputs, is_winning, orchestrator_win_prob, recipient_rand_hash, win_value,
};
