//! Wire types of Livepeer's `lp_rpc` protocol (protobuf package `net`).
//!
//! The `.proto` is our own, written from the field table in `testdata/lp_rpc_fields.tsv`;
//! `tests/vectors.rs` checks it against messages encoded by the official SDK. These are raw
//! prost structs: the gateway wraps them at its client boundary so that selection and payment
//! logic never depend on generated code. [`headers`] holds the protocol's HTTP header names and
//! fixed values.

/// Generated messages and gRPC stubs of package `net`.
#[allow(clippy::all, missing_docs, unreachable_pub, missing_debug_implementations)]
pub mod net {
    tonic::include_proto!("net");
}

pub mod headers;
pub mod kept;

/// Path of our `.proto` source, for tests that compile it again with a descriptor pool.
pub const PROTO_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../proto");

pub use prost::Message;
