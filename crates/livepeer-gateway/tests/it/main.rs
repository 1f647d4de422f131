//! Full-stack tests: a real gateway and real simulated orchestrators over real sockets.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs, unreachable_pub)]

mod ai;
mod audio_probe;
mod bench;
mod binary;
mod bodies;
mod byoc;
mod byoc_stream;
mod discovery;
mod fuzz;
mod health;
mod keys;
mod keys_cli;
mod keys_live;
mod keys_pg;
mod listen;
mod live;
mod live_leak;
mod live_owner;
mod nonces;
mod oneshot;
mod payments;
mod per_model;
mod props;
mod py_byoc;
mod results;
mod rtmp_ingest;
mod settle;
mod sign_byoc;
mod signer;
mod soak;
mod stalled_trickle;
mod streams;
mod support;
mod transcode;
mod wire;
