//! Paying orchestrators for a live stream: the payment headers of the start call and of each
//! interval's `/payment` (local key, remote signer or off-chain), settling them, and the
//! payment loop that runs beside a session's relays (PROTOCOL.md §8.5, PAYMENTS.md §8). Kept in
//! one module so the payment interface can be swapped here without touching the relays.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio::time::Instant;
use url::Url;

use super::context::Inner;
use super::session::Session;
use super::stream::Stream;
use livepeer_proto::headers;

use crate::orchestrator::JobKey;
use crate::orchestrator::info::OrchInfo;
use crate::payment::{Booking, PayError, Prepared, Settlement};

/// Units of one second of live video (PAYMENTS.md §8).
pub(crate) const UNITS_PER_SECOND: u64 = livepeer_pm::LIVE_VIDEO_UNITS_PER_SECOND;
/// The start call prepays a minute (go-livepeer `initPixelsToPay`).
pub(crate) const START_UNITS: u64 = livepeer_pm::LIVE_VIDEO_INITIAL_UNITS;

/// The payment headers of one call, and what to settle afterwards.
pub(crate) struct Paid {
    pub(crate) payment: String,
    pub(crate) segment: String,
    pub(crate) info: Arc<OrchInfo>,
    pub(crate) prepared: Prepared,
}

/// `Livepeer-Payment` and `Livepeer-Segment` for `units` at the orchestrator, booked on
/// `manifest`: local key, remote signer, or the off-chain empty payment.
pub(crate) async fn pay(
    inner: &Inner,
    url: &Url,
    info: &Arc<OrchInfo>,
    key: &JobKey,
    units: u64,
    manifest: &str,
) -> Result<Paid, PayError> {
    let prepared = inner.payments.prepare(url, info, key, units, Booking::Stream(manifest)).await?;
    Ok(Paid {
        payment: prepared.payment().to_owned(),
        // A stream's payment always carries its segment credentials.
        segment: prepared.segment().unwrap_or_default().to_owned(),
        info: prepared.info().clone(),
        prepared,
    })
}

/// Books what became of a payment, and records the tickets it sent on the stream.
pub(crate) fn settle(
    inner: &Inner,
    stream: &Stream,
    orch: &str,
    prepared: Prepared,
    outcome: Settlement,
) {
    settle_taken(inner, stream, orch, prepared, (outcome, outcome == Settlement::Paid));
}

/// [`settle`], where `taken` says whether the orchestrator took the payment. An interval
/// payment it refused is booked as paid all the same (see [`settlement`]): its tickets count
/// as sent (metrics, the stream's totals) and the payment as failed, and its fee is not what
/// the orchestrator took, so a customer priced as a multiple of that is not charged it.
fn settle_taken(
    inner: &Inner,
    stream: &Stream,
    orch: &str,
    prepared: Prepared,
    (outcome, taken): (Settlement, bool),
) {
    if let Some(spend) = prepared.spend() {
        if outcome == Settlement::Paid {
            inner.metrics.paid(orch, &stream.key, spend.tickets, &spend.ev_sent, &spend.fee);
        }
        if outcome == Settlement::Refused {
            // Its tickets went nowhere: a failed payment, but none sent.
            stream.record_payment(false, 0, &Default::default(), &Default::default());
        } else {
            stream.record_payment(taken, spend.tickets, &spend.ev_sent, &spend.fee);
        }
    }
    inner.payments.settle(prepared, outcome);
}

/// Pays the serving orchestrator for the time used, every interval while input flows (§8.5).
/// Nothing is paid off-chain or at price 0, as go-livepeer does.
/// Ends between payments once `halt` fires, never in the middle of one.
pub(crate) fn payments(
    inner: Arc<Inner>,
    stream: Arc<Stream>,
    session: &Session,
    halt: tokio_util::sync::CancellationToken,
) -> impl Future<Output = ()> + Send + 'static {
    let unpaid = session.info.ticket_params.is_none()
        || session.lease.price().is_zero()
        || inner.payments.is_off_chain();
    let url = session.lease.url().clone();
    let orch = session.orchestrator.clone();
    let info = session.info.clone();
    let manifest = session.manifest_id.clone();
    let interval = inner.config.payment_interval;
    let payments = inner.payments.clone();
    let key = session.key.clone();
    async move {
        // The stream's payment session is forgotten when this task ends, not when the session
        // does: a payment already on its way at the session's end would otherwise book a
        // fresh session (a remote signer's state, a credit) after the forget, which nothing
        // would ever forget.
        let _forget = ForgetOnEnd { payments, url: url.clone(), key, manifest: manifest.clone() };
        if unpaid {
            return;
        }
        // The start call prepaid the first minute from here.
        let mut billed = Instant::now();
        let mut seen = stream.counters.in_segments.load(Relaxed);
        let mut tick = tokio::time::interval(interval);
        tick.reset();
        let _payer = stream.payments_out.payer();
        loop {
            if !crate::task::tick_unless_halted(&mut tick, &halt).await {
                return;
            }
            let segments = stream.counters.in_segments.load(Relaxed);
            if segments == seen {
                continue;
            }
            seen = segments;
            let elapsed = billed.elapsed();
            let units = (u128::from(UNITS_PER_SECOND) * elapsed.as_micros() / 1_000_000) as u64;
            // Advance by the billed time only: truncated fractions are billed next time.
            billed += Duration::from_micros(units * 1_000_000 / UNITS_PER_SECOND);
            pay_once(&inner, &stream, &url, &orch, &info, &manifest, units).await;
        }
    }
}

async fn pay_once(
    inner: &Inner,
    stream: &Stream,
    url: &Url,
    orch: &str,
    info: &Arc<OrchInfo>,
    manifest: &str,
    units: u64,
) {
    let paid = match pay(inner, url, info, &stream.key, units, manifest).await {
        Ok(paid) => paid,
        Err(PayError::NotNeeded) => {
            tracing::debug!(stream = stream.spec.name, "live payment not needed this cycle");
            return;
        }
        Err(e) => {
            tracing::warn!(stream = stream.spec.name, orchestrator = orch, error = %e, "live payment not made");
            stream.record_payment(false, 0, &Default::default(), &Default::default());
            return;
        }
    };
    let sent = inner
        .http
        .post(format!("{}/payment", paid.info.transcoder))
        .header(headers::PAYMENT, &paid.payment)
        .header(headers::SEGMENT, &paid.segment)
        .timeout(Duration::from_secs(10))
        .send()
        .await;
    let outcome = settlement(&sent);
    // Booked received or not, only a 200 is a payment the orchestrator took.
    let ok = matches!(&sent, Ok(resp) if resp.status().as_u16() == 200);
    if !ok {
        let error = match sent {
            Ok(resp) => format!("status {}", resp.status()),
            Err(e) => crate::error::error_chain(&e),
        };
        // The orchestrator enforces payment; a lost one shows as its balance running out.
        tracing::warn!(
            stream = stream.spec.name,
            orchestrator = orch,
            error,
            "live payment failed"
        );
    }
    if paid.prepared.spend().is_none() {
        stream.record_payment(ok, 0, &Default::default(), &Default::default());
    }
    settle_taken(inner, stream, orch, paid.prepared, (outcome, ok));
}

/// What became of an interval payment, from what its `/payment` call gave. Anything sent is
/// booked as received, the interval's fee debited, whatever the orchestrator answered, as
/// go-livepeer books it (PAYMENTS.md §5.6): booked as spent, the credit went back to zero
/// and every interval paid a whole ticket again, so an orchestrator that answered each
/// `/payment` with an error while it served the stream took many times its fee.
fn settlement(sent: &Result<reqwest::Response, reqwest::Error>) -> Settlement {
    match sent {
        // A dial that failed sent nothing: booked as received, its tickets would be owed
        // to nobody and never paid again.
        Err(e) if e.is_connect() => Settlement::Refused,
        _ => Settlement::Paid,
    }
}

/// Forgets the payment session (remote signer) or credit (local key) that the start call of
/// an orchestrator session that ended was booked on. Its stream's own is forgotten by its
/// payment loop as that ends ([`payments`]).
pub(crate) fn forget_start(inner: &Inner, session: &Session) {
    inner.payments.forget(session.lease.url(), &session.key, &session.start_manifest);
}

/// Forgets a stream's payment session at one orchestrator when dropped: when its payment loop
/// has ended, its last payment settled, or the loop was dropped.
struct ForgetOnEnd {
    payments: crate::payment::Payments,
    url: Url,
    key: JobKey,
    manifest: String,
}

impl Drop for ForgetOnEnd {
    fn drop(&mut self) {
        self.payments.forget(&self.url, &self.key, &self.manifest);
    }
}

/// Renews the payment session of a start call on `url` that the orchestrator refused for its
/// payment: the local key fetches fresh ticket params, the remote signer starts the session
/// booked on `manifest` anew.
pub(crate) fn renew(inner: &Inner, url: &Url, key: &JobKey, manifest: &str) {
    inner.payments.reset(url, key);
    inner.payments.forget(url, key, manifest);
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpListener;

    async fn post(client: &reqwest::Client, addr: std::net::SocketAddr) -> Settlement {
        settlement(&client.post(format!("http://{addr}/payment")).body("x").send().await)
    }

    /// Answers each connection's request with `answer`, or closes it unanswered when `None`.
    async fn server(answer: Option<&'static str>) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = conn.read(&mut buf).await;
                if let Some(answer) = answer {
                    let _ = conn.write_all(answer.as_bytes()).await;
                }
            }
        });
        addr
    }

    #[tokio::test]
    async fn a_refused_dial_returns_the_credit_and_anything_sent_is_booked_received() {
        let client = reqwest::Client::new();
        // Nobody listens: the dial is refused and nothing was sent. The port stays bound (never
        // listening) while it is dialled, so that nothing else can take it meanwhile.
        let held = tokio::net::TcpSocket::new_v4().unwrap();
        held.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        assert_eq!(post(&client, held.local_addr().unwrap()).await, Settlement::Refused);
        // Sent, and the connection closed unanswered, or refused: the tickets may have been
        // taken, and their credit is kept (the fee debited) as go-livepeer keeps it.
        assert_eq!(post(&client, server(None).await).await, Settlement::Paid);
        let refused = "HTTP/1.1 402 Payment Required\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(post(&client, server(Some(refused)).await).await, Settlement::Paid);
        let ok = "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(post(&client, server(Some(ok)).await).await, Settlement::Paid);
    }
}
