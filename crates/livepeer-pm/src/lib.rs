//! Livepeer probabilistic micropayments, free of I/O.
//!
//! For now this crate holds the signing primitive that the gateway needs to identify itself to
//! orchestrators (`eth_sign`, PROTOCOL.md §1.4). Tickets, expected value and the sender's
//! bookkeeping arrive with the payments issue.
#![cfg_attr(not(test), warn(unused_crate_dependencies))]

mod segment;
mod signer;

pub use alloy_primitives::{Address, B256, U256, keccak256};
pub use segment::{empty_segment_hash, flatten_segment};
pub use signer::{Error, LocalSigner, Signature, eth_sign_hash, recover_eth_signer};
