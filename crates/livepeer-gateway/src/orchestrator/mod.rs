//! Orchestrators: the gRPC client, discovery, capability matching, the pool and selection,
//! and the verdict on a failed answer.

pub mod caps;
pub mod client;
pub mod creds;
pub mod discovery;
pub mod health;
pub mod http;
pub mod info;
pub mod pool;
pub mod price;
pub mod selection;
pub mod snapshot;
pub mod verdict;

pub use client::{ClientError, Identity, OrchClient, Timeouts, TlsTrust};
pub use discovery::{Discovery, normalize_orch_addr};
pub use pool::{Lease, Pool, PoolConfig, SelectError};
pub use snapshot::{JobKey, Requirements};
