//! Background tasks: every one is tracked and cancellable, so shutdown can wait for them.

use std::future::Future;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The gateway's task set.
#[derive(Debug, Clone, Default)]
pub struct Tasks {
    tracker: TaskTracker,
    cancel: CancellationToken,
}

impl Tasks {
    /// A new, empty task set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Spawns `task`, handing it the shared cancellation token. `name` goes into logs.
    pub fn spawn<F, Fut>(&self, name: &'static str, task: F)
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let fut = task(self.cancel.clone());
        self.tracker.spawn(async move {
            fut.await;
            tracing::debug!(task = name, "task finished");
        });
    }

    /// The token every task watches.
    pub fn token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Cancels every task and waits for them all to end.
    pub async fn shutdown(&self) {
        self.cancel.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}
