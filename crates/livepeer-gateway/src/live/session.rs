//! What an orchestrator serving a live stream is: its lease, its info (for payments), its id
//! of the stream and its four channel URLs. Plain data, so that billing, the relays and the
//! supervisor can all read it; attaching and tearing one down is in `attach`.

use std::sync::Arc;

use crate::orchestrator::info::OrchInfo;
use crate::orchestrator::{JobKey, Lease};

/// An orchestrator serving the stream.
#[derive(Debug)]
pub(crate) struct Session {
    /// Its discovery URL.
    pub(crate) orchestrator: String,
    pub(crate) lease: Lease,
    /// The info its payments are made with.
    pub(crate) info: Arc<OrchInfo>,
    /// Its id of the stream.
    pub(crate) manifest_id: String,
    pub(crate) publish_url: String,
    pub(crate) subscribe_url: String,
    pub(crate) control_url: String,
    pub(crate) events_url: String,
    /// The params version the start call carried.
    pub(crate) params_version: u64,
    /// The job, for forgetting its payment sessions.
    pub(crate) key: JobKey,
    /// What the start call's payment was booked on.
    pub(crate) start_manifest: String,
}
