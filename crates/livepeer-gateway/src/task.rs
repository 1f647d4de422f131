//! Background tasks: every one is tracked and cancellable, so shutdown can wait for them.
//!
//! Shutdown has two steps: every task is cancelled (listeners stop accepting and let their
//! in-flight requests finish) and gets the drain time to end; then the `drained` token fires,
//! so running streams end with a final event, which they get a short time to write.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long streams get to write their final event once the drain time is over: enough for a
/// reading client, while a client that does not read cannot hold shutdown any longer.
const FINAL_WRITE: Duration = Duration::from_secs(2);

/// Waits for `tick`'s next tick unless `halt` fires first: `false` once it has fired, even
/// when a tick is ready too, so that a periodic task (a stream's payments) starts nothing
/// after it is halted, and is never halted in the middle of what a tick starts.
pub(crate) async fn tick_unless_halted(
    tick: &mut tokio::time::Interval,
    halt: &CancellationToken,
) -> bool {
    tokio::select! {
        biased;
        () = halt.cancelled() => return false,
        _ = tick.tick() => {}
    }
    !halt.is_cancelled()
}

/// The gateway's task set.
#[derive(Debug, Clone, Default)]
pub struct Tasks {
    tracker: TaskTracker,
    cancel: CancellationToken,
    drained: CancellationToken,
    /// Tasks that outlive every other and every request ([`Tasks::spawn_last`]), and the token
    /// that ends them ([`Tasks::end_last`]).
    last: TaskTracker,
    end: CancellationToken,
    /// The runtime the set was made on. Tasks run there whichever thread spawns them: a live
    /// stream started by a request on one of the public port's single-threaded runtimes
    /// (`http::cores`) is background work, spread over the shared runtime's workers rather
    /// than added to its serving thread.
    runtime: Option<tokio::runtime::Handle>,
}

impl Tasks {
    /// A new, empty task set, whose tasks run on the current runtime (if any, else on the
    /// runtime of whoever spawns them).
    pub fn new() -> Self {
        Self { runtime: tokio::runtime::Handle::try_current().ok(), ..Self::default() }
    }

    /// Spawns `task`, handing it the shared cancellation token. `name` goes into logs.
    pub fn spawn<F, Fut>(&self, name: &'static str, task: F)
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.spawn_in(&self.tracker, logged(name, task(self.cancel.clone())));
    }

    /// Spawns `task` to run until [`Tasks::end_last`], after the others and after the
    /// requests: the usage ledger's writer, which must still be there for the rows of requests
    /// and streams that the end of the drain cut.
    pub fn spawn_last<F, Fut>(&self, name: &'static str, task: F)
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.spawn_in(&self.last, logged(name, task(self.end.clone())));
    }

    /// Spawns `fut` tracked by `tracker`, on the set's runtime when it has one.
    fn spawn_in(&self, tracker: &TaskTracker, fut: impl Future<Output = ()> + Send + 'static) {
        match &self.runtime {
            Some(runtime) => drop(tracker.spawn_on(fut, runtime)),
            None => drop(tracker.spawn(fut)),
        }
    }

    /// Ends the tasks of [`Tasks::spawn_last`] and waits for them, at most `within`. Returns
    /// whether they ended.
    pub async fn end_last(&self, within: Duration) -> bool {
        self.end.cancel();
        self.last.close();
        let ended = tokio::time::timeout(within, self.last.wait()).await.is_ok();
        if !ended {
            tracing::warn!(?within, "the last tasks (the usage ledger) did not end in time");
        }
        ended
    }

    /// The token every task watches.
    pub fn token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// The token that fires when shutdown's drain time is over, for work that would otherwise
    /// run on (streams) to end cleanly.
    pub fn drained(&self) -> CancellationToken {
        self.drained.clone()
    }

    /// Cancels every task and waits for them to end: `drain` for all of them, then
    /// [`Tasks::drained`] fires and they get a short time more. Whatever is still running after
    /// that is left behind (and ends with the runtime). Returns whether every task ended.
    pub async fn shutdown(&self, drain: Duration) -> bool {
        self.cancel.cancel();
        self.tracker.close();
        if tokio::time::timeout(drain, self.tracker.wait()).await.is_ok() {
            return true;
        }
        tracing::info!(?drain, "drain time over: ending running streams");
        self.drained.cancel();
        let ended = tokio::time::timeout(FINAL_WRITE, self.tracker.wait()).await.is_ok();
        if !ended {
            tracing::warn!("some requests were still running after the drain time; cut");
        }
        ended
    }
}

/// `fut`, whose end is logged, and whose panic too: the handle of a spawned task is dropped,
/// so a panic would otherwise end a background loop (a sweeper, a refresh) without a trace.
fn logged<Fut: Future<Output = ()> + Send + 'static>(
    name: &'static str,
    fut: Fut,
) -> impl Future<Output = ()> + Send + 'static {
    use futures_util::FutureExt as _;
    async move {
        match std::panic::AssertUnwindSafe(fut).catch_unwind().await {
            Ok(()) => tracing::debug!(task = name, "task finished"),
            Err(panic) => {
                let why = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                tracing::error!(task = name, panic = %why, "background task panicked");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A halted periodic task starts nothing more, even with a tick ready (a tick and the halt
    /// ready together were picked between at random).
    #[tokio::test(start_paused = true)]
    async fn nothing_ticks_once_halted() {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let halt = CancellationToken::new();
        assert!(tick_unless_halted(&mut tick, &halt).await, "the first tick");
        tokio::time::advance(Duration::from_secs(5)).await;
        halt.cancel();
        for _ in 0..50 {
            assert!(!tick_unless_halted(&mut tick, &halt).await, "ticks ready, but halted");
        }
    }

    /// A background task's panic is logged with the task's name, and the task counts as
    /// ended: shutdown does not wait for it.
    #[tokio::test(start_paused = true)]
    async fn a_panicking_task_is_logged_and_ended() {
        let out = crate::log_format::Captured::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt().with_writer(move || writer.clone()).finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let tasks = Tasks::new();
        tasks.spawn("sweeper", |_| async { panic!("a slot out of range") });
        assert!(tasks.shutdown(Duration::from_secs(1)).await);
        let text = out.text();
        assert!(text.contains("background task panicked"), "{text}");
        assert!(text.contains("sweeper") && text.contains("a slot out of range"), "{text}");
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_waits_the_drain_time_then_fires_drained() {
        let tasks = Tasks::new();
        let drained = tasks.drained();
        let started = tokio::time::Instant::now();
        // A task that ignores cancellation and ends only when the drain is over.
        let seen = drained.clone();
        tasks.spawn("stream", move |_| async move { seen.cancelled().await });
        assert!(tasks.shutdown(Duration::from_secs(3)).await);
        assert!(drained.is_cancelled());
        let took = started.elapsed();
        assert!(took >= Duration::from_secs(3) && took < Duration::from_secs(4), "{took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn tasks_that_end_on_cancel_need_no_drain() {
        let tasks = Tasks::new();
        tasks.spawn("loop", |cancel| async move { cancel.cancelled().await });
        assert!(tasks.shutdown(Duration::from_secs(3)).await);
        assert!(!tasks.drained().is_cancelled());
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_that_never_ends_is_left_behind_after_the_final_write_time() {
        let tasks = Tasks::new();
        tasks.spawn("stuck", |_| std::future::pending());
        let started = tokio::time::Instant::now();
        assert!(!tasks.shutdown(Duration::from_secs(1)).await);
        let took = started.elapsed();
        assert!(took >= Duration::from_secs(1) + FINAL_WRITE, "{took:?}");
    }
}
