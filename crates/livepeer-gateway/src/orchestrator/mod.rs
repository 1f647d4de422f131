//! Orchestrators: the gRPC client (`client`, `info`, `creds`) and the HTTP client of their
//! job routes (`http`), discovery, capability matching (`caps`) and prices, the pool with its
//! snapshots, health and selection, and the verdict on a failed answer. Below the job paths and
//! payment; it uses only the leaves (`error`, `job`, `metrics`, `task`).

pub mod byoc;
pub mod caps;
pub mod channel;
pub mod client;
pub mod creds;
pub mod discovery;
pub mod dispatched;
pub mod h1;
mod h1pool;
pub mod health;
pub mod http;
pub mod info;
pub mod pool;
pub mod price;
pub(crate) mod reach;
pub mod requirements;
pub mod selection;
pub mod snapshot;
pub mod text;
pub mod verdict;

pub use client::{ClientError, Identity, OrchClient, Timeouts, TlsTrust};
pub use discovery::{Discovery, normalize_orch_addr};
pub use pool::{Lease, Pool, PoolConfig, SelectError};
pub use requirements::SharedRequirements;
pub use snapshot::{JobKey, Requirements};
