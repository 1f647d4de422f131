//! The state the admin API's handlers share: the pool, the metrics and what `/status` shows.
//! Built once by [`Gateway::start`](crate::Gateway::start); the job paths keep their own
//! states (`ai::AiState`, `live::LiveState`).

use std::sync::Arc;

use crate::metrics::Metrics;
use crate::orchestrator::{Pool, SharedRequirements};
use crate::payment::LocalPayer;

/// The admin handlers' state, also kept by the running [`Gateway`](crate::Gateway); cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The orchestrator pool.
    pub pool: Pool,
    /// Metric families.
    pub metrics: Metrics,
    /// What orchestrators must satisfy: the pool's cell, whose price caps the admin API may
    /// change at runtime.
    pub requirements: SharedRequirements,
    /// Configuration summary for `/status` (no secrets).
    pub summary: Arc<serde_json::Value>,
    /// The ticket sender, when the gateway has a key.
    pub payer: Option<LocalPayer>,
    /// The chain connection's state (network, contracts, rounds, on-chain discovery).
    pub chain: Option<Arc<crate::onchain::ChainStatus>>,
}
