//! Whether a request to an orchestrator was handed to a connection: what tells a payment that
//! may have left the gateway from one that surely did not (`ai::spent`). Its own module so
//! that both HTTP clients (`http`, `h1pool`) mark it without importing each other.

use std::sync::Arc;

/// Put in a request's extensions, marked once the request is handed to a connection to be
/// written: until then nothing of it, and none of the tickets it carries, has left the
/// gateway (a request dropped while its connection was still being made sent nothing).
#[derive(Debug, Clone, Default)]
pub struct Dispatched(Arc<std::sync::atomic::AtomicBool>);

impl Dispatched {
    /// The request is about to be written (or may already be, on hyper's connections).
    pub fn mark(&self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether [`mark`](Self::mark) was called.
    pub fn happened(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Marks `extensions`' [`Dispatched`], if any.
pub(super) fn mark(extensions: &http::Extensions) {
    if let Some(d) = extensions.get::<Dispatched>() {
        d.mark();
    }
}
