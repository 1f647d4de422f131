//! The HTTP edge: axum handlers, and the mapping from typed domain errors to statuses and
//! bodies. Nothing below this module should know axum or `StatusCode`. It holds the signer's
//! routes for now; the other routes move here later.

pub(crate) mod signer;
