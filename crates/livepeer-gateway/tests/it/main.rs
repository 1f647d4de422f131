//! Full-stack tests: a real gateway and real simulated orchestrators over real sockets.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs, unreachable_pub)]

mod ai;
mod binary;
mod bodies;
mod discovery;
mod health;
mod listen;
mod live;
mod oneshot;
mod payments;
mod props;
mod signer;
mod soak;
mod streams;
mod support;
mod wire;
