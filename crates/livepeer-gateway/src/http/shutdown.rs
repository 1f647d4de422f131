//! Requests still unanswered when the drain time is over get an answer, not a reset.
//!
//! At shutdown every request gets `--shutdown-drain-timeout`; then the serving threads end and
//! take what still runs with them. A streamed answer already under way writes its final
//! event on [`crate::task::Tasks::drained`]; a request whose answer has not begun (a batch AI
//! job waiting on a slow orchestrator, a BYOC job, a pushed segment, a stream's start) would
//! see its connection cut. This layer answers those 503 `gateway_overloaded` with
//! `Retry-After`, which tells the client to try again, elsewhere or after the restart.
//!
//! Why a layer of its own rather than `axum::middleware::from_fn` racing each request against
//! the drained token: that cost some 2,500 instructions a request (callgrind, bench's LLM
//! request: a boxed future, a clone of the inner service, the token's lock on every poll).
//! Here a request answered at its first poll costs a reference count; one that waits registers
//! with its lane's [`Signal`], which the other serving threads never touch, and reads its flag.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};

use axum::extract::Request;
use axum::response::{IntoResponse as _, Response};
use tokio::sync::Notify;
use tokio::sync::futures::OwnedNotified;

use crate::error::{Error, Kind};
use crate::lane::Lanes;
use crate::task::Tasks;

/// One lane's word that the drain is over: its flag, and the waiters to wake.
#[derive(Debug, Default)]
struct Signal {
    over: AtomicBool,
    notify: Arc<Notify>,
}

/// `router` whose requests, if not yet answered when `tasks`' drained token fires, are
/// answered 503 and their work dropped (as when a client hangs up). Applied inside the CORS
/// layer, so that a page can read it. `lanes` is how many serving lanes there are
/// ([`crate::lane`]): each has a [`Signal`] of its own.
pub(crate) fn answer_at_drain_end(
    router: axum::Router,
    tasks: &Tasks,
    lanes: usize,
) -> axum::Router {
    let signals = Lanes::filled(lanes, || Arc::new(Signal::default()));
    let (all, drained) = (signals.clone(), tasks.drained());
    // Among the last tasks: an ordinary one would hold the drain until the drain's end.
    tasks.spawn_last("drain-answers", move |end| async move {
        tokio::select! {
            () = drained.cancelled() => {
                for signal in all.iter() {
                    signal.over.store(true, Ordering::Release);
                    signal.notify.notify_waiters();
                }
            }
            () = end.cancelled() => {}
        }
    });
    router.layer(DrainLayer { signals })
}

/// The layer of [`answer_at_drain_end`].
#[derive(Clone)]
struct DrainLayer {
    signals: Lanes<Arc<Signal>>,
}

impl<S> tower::Layer<S> for DrainLayer {
    type Service = DrainService<S>;

    fn layer(&self, inner: S) -> DrainService<S> {
        DrainService { inner, signals: self.signals.clone() }
    }
}

/// The service of [`DrainLayer`].
#[derive(Clone)]
struct DrainService<S> {
    inner: S,
    signals: Lanes<Arc<Signal>>,
}

impl<S> tower::Service<Request> for DrainService<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = DrainFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let signal = self.signals.get().clone();
        DrainFuture { inner: self.inner.call(req), signal, notified: None, waker: None }
    }
}

pin_project_lite::pin_project! {
    /// A request's answer, or the drain's 503.
    struct DrainFuture<F> {
        #[pin]
        inner: F,
        signal: Arc<Signal>,
        // Made at the first poll that finds the answer not ready.
        #[pin]
        notified: Option<OwnedNotified>,
        // The waker `notified` was last polled with: polled again only for another one, as
        // each poll of it takes its lane's lock.
        waker: Option<Waker>,
    }
}

impl<F: Future<Output = Result<Response, Infallible>>> Future for DrainFuture<F> {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Poll::Ready(answer) = this.inner.poll(cx) {
            return Poll::Ready(answer);
        }
        if this.notified.is_none() {
            this.notified.set(Some(this.signal.notify.clone().notified_owned()));
        }
        // Polled, so that `notify_waiters` wakes this task; then the flag, which the drain
        // sets before it notifies.
        let mut woken = false;
        if this.waker.as_ref().is_none_or(|w| !w.will_wake(cx.waker())) {
            woken = this.notified.as_pin_mut().is_some_and(|n| n.poll(cx).is_ready());
            *this.waker = Some(cx.waker().clone());
        }
        if woken || this.signal.over.load(Ordering::Acquire) {
            let refusal = Error::new(Kind::GatewayOverloaded, "the gateway is shutting down");
            return Poll::Ready(Ok(refusal.into_response()));
        }
        Poll::Pending
    }
}
