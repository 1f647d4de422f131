//! BYOC streams (`/ai/stream/*`): added in the next change.

use std::sync::Arc;

use axum::Router;

use crate::Shared;

/// The stream routes (none yet).
pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
}

/// Streams running now.
pub(crate) fn active(_: &Shared) -> usize {
    0
}

/// Stops every stream.
pub(crate) fn kill_all(_: &Shared) {}
