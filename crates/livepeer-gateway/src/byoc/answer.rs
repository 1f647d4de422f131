//! The body of an orchestrator's answer to a BYOC job, relayed to the client chunk by chunk
//! as it arrives (each server-sent event line is passed on, and flushed, as soon as the
//! orchestrator sends it), within the job's deadline. When it ends, however it ends (the
//! client gone included), the lease is given back and the payment settled for the time the
//! orchestrator worked.

use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::orchestrator::http::OrchBody;
use bytes::Bytes;
use futures_util::Stream;
use hyper::body::Body as _;
use tokio::time::{Instant, Sleep};

use livepeer_pm::Ratio;

use crate::job::JobKey;
use crate::metrics::Metrics;
use crate::orchestrator::Lease;
use crate::payment::{ByocOutcome, ByocPayment, Payments};

/// What is settled when the answer ends.
pub(super) struct Settle {
    pub(super) lease: Lease,
    pub(super) payment: ByocPayment,
    pub(super) payments: Payments,
    /// When the job was sent.
    pub(super) sent: Instant,
    /// The seconds charged, when known at the answer's head (a plain answer: the worker is
    /// done); `None` for events, charged until their end.
    pub(super) charged: Option<u64>,
    /// Where the fee is counted: metrics, the job key, the orchestrator and the request id.
    pub(super) metrics: Metrics,
    pub(super) key: JobKey,
    pub(super) orch: String,
    pub(super) request_id: String,
    /// The customer key's tab, settled on the seconds charged.
    pub(super) tab: Option<std::sync::Arc<crate::keys::Tab>>,
}

impl Settle {
    /// Settles the payment for the seconds worked, and counts the fee.
    fn charge(self) -> Lease {
        let seconds = self.charged.unwrap_or_else(|| ceil_seconds(self.sent.elapsed()));
        let fee = self.payment.fee(seconds);
        self.metrics.paid(&self.orch, &self.key, 0, &Ratio::ZERO, &fee);
        if let Some(tab) = &self.tab {
            // The customer owes the seconds worked (a multiple: of their fee), not the timeout.
            tab.paid(0, &Ratio::ZERO, &fee);
            tab.settle_units(seconds);
        }
        tracing::debug!(request_id = %self.request_id, seconds, fee_wei = %fee, "byoc job charged");
        self.payments.byoc_settle(self.payment, ByocOutcome::Charged(seconds));
        self.lease
    }
}

/// The relayed body.
pub(super) struct Relay {
    body: OrchBody,
    deadline: Pin<Box<Sleep>>,
    /// What to settle at the end; `None` when the caller settled already (a 4xx relayed).
    settle: Option<Settle>,
    done: bool,
}

impl Relay {
    pub(super) fn new(body: OrchBody, deadline: Instant, settle: Option<Settle>) -> Self {
        let deadline = Box::pin(tokio::time::sleep_until(deadline));
        Self { body, deadline, settle, done: false }
    }

    /// Ends the relay: the lease succeeded or failed, and the payment is settled.
    fn finish(&mut self, error: Option<String>) {
        self.done = true;
        let Some(s) = self.settle.take() else { return };
        let lease = s.charge();
        match error {
            None => lease.succeeded(),
            Some(e) => lease.failed_job(e),
        }
    }
}

/// Whole seconds, rounded up, as the orchestrator charges them.
pub(super) fn ceil_seconds(d: std::time::Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

impl Stream for Relay {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            self.finish(Some("the answer outlasted the job's timeout".into()));
            return Poll::Ready(Some(Err(std::io::Error::other("BYOC answer timed out"))));
        }
        loop {
            return match Pin::new(&mut self.body).poll_frame(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(None) => {
                    self.finish(None);
                    Poll::Ready(None)
                }
                Poll::Ready(Some(Err(e))) => {
                    self.finish(Some(format!("answer broke off: {e}")));
                    Poll::Ready(Some(Err(std::io::Error::other(e))))
                }
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => Poll::Ready(Some(Ok(data))),
                    // Trailers: nothing to relay.
                    Err(_) => continue,
                },
            };
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // The client went away mid-answer: the orchestrator is not at fault, and charged for
        // its time all the same.
        if let Some(s) = self.settle.take() {
            drop(s.charge());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_round_up() {
        use std::time::Duration;
        assert_eq!(ceil_seconds(Duration::ZERO), 0);
        assert_eq!(ceil_seconds(Duration::from_millis(1)), 1);
        assert_eq!(ceil_seconds(Duration::from_secs(2)), 2);
        assert_eq!(ceil_seconds(Duration::from_millis(2001)), 3);
    }
}
