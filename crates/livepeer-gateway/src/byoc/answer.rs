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
///
/// The deadline is the job's; time spent waiting on the client (from handing it a chunk to
/// its asking for the next) moves the deadline on, by at most the job's own window, so that a
/// slow reader is not taken for an orchestrator that outlasted the job. Time waiting on the
/// orchestrator never does. When the deadline passes with that allowance spent, the client
/// has waited a whole window: the answer is cut and nobody penalised.
pub(super) struct Relay {
    body: OrchBody,
    deadline: Pin<Box<Sleep>>,
    /// When the last chunk was handed to the client, while it has not asked for the next.
    handed_at: Option<Instant>,
    /// Time the deadline was moved on for the client, and the most it may be.
    extended: std::time::Duration,
    max_extension: std::time::Duration,
    /// What to settle at the end; `None` when the caller settled already (a 4xx relayed).
    settle: Option<Settle>,
    done: bool,
    /// For server-sent events: where the `[DONE]` event ends (see [`DoneScan`]).
    scan: Option<DoneScan>,
}

impl Relay {
    pub(super) fn new(body: OrchBody, deadline: Instant, settle: Option<Settle>) -> Self {
        // A plain answer's whole window (from when the job was sent), not what is left of it:
        // an answer that starts late in its window is read at the client's pace all the same.
        let from = settle.as_ref().map_or_else(Instant::now, |s| s.sent);
        let max_extension = deadline.saturating_duration_since(from);
        let deadline = Box::pin(tokio::time::sleep_until(deadline));
        Self {
            body,
            deadline,
            handed_at: None,
            extended: std::time::Duration::ZERO,
            max_extension,
            settle,
            done: false,
            scan: None,
        }
    }

    /// Moves the deadline on by the time the client took to ask for more, within the
    /// allowance.
    fn discount_client_wait(&mut self) {
        let Some(at) = self.handed_at.take() else { return };
        let wait = at.elapsed().min(self.max_extension.saturating_sub(self.extended));
        if !wait.is_zero() {
            self.extended += wait;
            let later = self.deadline.deadline() + wait;
            self.deadline.as_mut().reset(later);
        }
    }

    /// A relay of server-sent events, which ends with the event holding `[DONE]`.
    pub(super) fn events(body: OrchBody, deadline: Instant, settle: Option<Settle>) -> Self {
        let mut relay = Self::new(body, deadline, settle);
        relay.scan = Some(DoneScan::default());
        // An event stream's window starts with its answer (its deadline is counted from there).
        relay.max_extension = deadline.saturating_duration_since(Instant::now());
        relay
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

    /// Ends the relay at the deadline: the orchestrator's failure, unless the client used up
    /// its allowance for slow reading.
    fn time_out(&mut self) -> std::io::Error {
        if self.extended < self.max_extension {
            self.finish(Some("the answer outlasted the job's timeout".into()));
            return std::io::Error::other("BYOC answer timed out");
        }
        self.done = true;
        if let Some(s) = self.settle.take() {
            s.charge().client_error();
        }
        std::io::Error::other("BYOC answer cut: the client read it too slowly")
    }
}

/// Finds the end of an event stream: the line holding `[DONE]` and the empty line after it.
///
/// go-livepeer's orchestrator does not end an event answer when its worker does: after the
/// worker's `[DONE]` (and the balance line it puts before it) it writes empty lines until
/// `timeout_seconds` is over, debiting 5 s of the price every 5 s meanwhile
/// (byoc/job_orchestrator.go `processJob`, streaming branch). Its gateway stops reading at the
/// first line containing `[DONE]` and closes the call, which ends the orchestrator's loop
/// (byoc/job_gateway.go `submitJob`). Relaying to the end would hold the client, and the
/// orchestrator's meter, until the timeout.
#[derive(Debug, Default)]
struct DoneScan {
    /// Bytes of `[DONE]` matched so far on the current line.
    matched: usize,
    state: ScanState,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ScanState {
    /// No `[DONE]` yet.
    #[default]
    Looking,
    /// In the line holding `[DONE]`.
    DoneLine,
    /// Past that line; `cr` when a `\r` of the empty line that ends the event was seen.
    After { cr: bool },
}

impl DoneScan {
    const MARK: &'static [u8] = b"[DONE]";

    /// How much of `chunk` to relay before the stream ends, or `None` to relay it all and go on.
    /// The event ends with the empty line after the `[DONE]` line; any other line there is not
    /// relayed.
    fn feed(&mut self, chunk: &[u8]) -> Option<usize> {
        for (i, &b) in chunk.iter().enumerate() {
            match self.state {
                ScanState::Looking => {
                    self.matched = match b {
                        _ if b == Self::MARK[self.matched] => self.matched + 1,
                        b'[' => 1,
                        _ => 0,
                    };
                    if self.matched == Self::MARK.len() {
                        self.state = ScanState::DoneLine;
                    }
                }
                ScanState::DoneLine if b == b'\n' => self.state = ScanState::After { cr: false },
                ScanState::DoneLine => {}
                ScanState::After { cr: false } if b == b'\r' => {
                    self.state = ScanState::After { cr: true };
                }
                ScanState::After { .. } if b == b'\n' => return Some(i + 1),
                ScanState::After { .. } => return Some(i),
            }
        }
        None
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
        self.discount_client_wait();
        if self.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(self.time_out())));
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
                    Ok(mut data) => {
                        let end = self.scan.as_mut().and_then(|s| s.feed(&data));
                        if let Some(end) = end {
                            // The `[DONE]` event is complete: the answer ends here, and the
                            // orchestrator's call is closed when the relay is dropped.
                            data.truncate(end);
                            self.finish(None);
                            if data.is_empty() {
                                return Poll::Ready(None);
                            }
                        }
                        self.handed_at = Some(Instant::now());
                        Poll::Ready(Some(Ok(data)))
                    }
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

    /// Where each stream of chunks ends: after the empty line that follows `[DONE]`, however
    /// the bytes are split; never without `[DONE]`.
    #[test]
    fn events_end_after_the_done_event() {
        let end = |chunks: &[&str]| {
            let mut scan = DoneScan::default();
            let mut out = String::new();
            for c in chunks {
                match scan.feed(c.as_bytes()) {
                    Some(n) => return Some(out + &c[..n]),
                    None => out.push_str(c),
                }
            }
            None
        };
        let go = "data: {\"n\":0}\n\ndata: {\"balance\": 1.000}\n\n\ndata: [DONE]\n\n\n\n\n";
        let want = "data: {\"n\":0}\n\ndata: {\"balance\": 1.000}\n\n\ndata: [DONE]\n\n";
        assert_eq!(end(&[go]).as_deref(), Some(want));
        let split: Vec<String> = go.chars().map(String::from).collect();
        let split: Vec<&str> = split.iter().map(String::as_str).collect();
        assert_eq!(end(&split).as_deref(), Some(want));
        assert_eq!(end(&["data: [DO", "NE]\r\n\r\nmore"]).as_deref(), Some("data: [DONE]\r\n\r\n"));
        assert_eq!(end(&["data: [DONE]\n", "event: x\n"]).as_deref(), Some("data: [DONE]\n"));
        assert_eq!(end(&["data: [[DONE]\n\n"]).as_deref(), Some("data: [[DONE]\n\n"));
        assert_eq!(end(&["data: [DONE", "\n"]), None, "the event is not over yet");
        assert_eq!(end(&["data: {\"n\":1}\n\n", "data: [DON"]), None);
    }

    #[test]
    fn seconds_round_up() {
        use std::time::Duration;
        assert_eq!(ceil_seconds(Duration::ZERO), 0);
        assert_eq!(ceil_seconds(Duration::from_millis(1)), 1);
        assert_eq!(ceil_seconds(Duration::from_secs(2)), 2);
        assert_eq!(ceil_seconds(Duration::from_millis(2001)), 3);
    }
}
