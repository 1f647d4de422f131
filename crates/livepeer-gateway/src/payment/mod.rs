//! Paying orchestrators, behind one type: [`Payments`]. Job paths (batch AI, live, and every
//! later job type) call [`Payments::prepare`] before a call, [`Payments::settle`] after it and
//! [`Payments::reset`] when the orchestrator refused the payment; they never ask how the
//! gateway pays. Behind it, one of three ways, chosen once at start:
//! - with the gateway's own key (`local`, [`LocalPayer`]: tickets signed here, balances kept here);
//! - through a remote signer (`remote`: a keyless gateway asks the signer for each payment);
//! - off-chain: the empty payment, and unsigned segment credentials.
//!
//! Beside them: [`chain`], the TicketBroker reader that feeds the local sender's funds checks,
//! and [`signer`], the server side of remote signing for other gateways. Imports go one way:
//! this facade uses the payers, the payers use `terms` and [`chain`], and [`signer`] uses
//! none of them.

mod byoc;
pub mod chain;
mod local;
mod remote;
pub mod signer;
pub mod spend;
mod terms;

use std::sync::Arc;

use livepeer_pm::{OFFCHAIN_PAYMENT_HEADER, Ratio};
use url::Url;

pub use byoc::{ByocOutcome, ByocPayment, ByocPrepared};
pub use chain::SenderInfo;
pub use local::LocalPayer;
pub use remote::{SignerError, fetch_identity};
pub use terms::{Cost, PayError, PaymentLimits, PriceBounds, Settlement};

use local::Staged;
use remote::RemotePayer;

use crate::orchestrator::SharedRequirements;
use crate::orchestrator::caps::Capabilities;
use crate::orchestrator::creds::segment_header;
use crate::orchestrator::info::OrchInfo;
use crate::orchestrator::{JobKey, OrchClient};

/// What a payment is booked on; it decides where the segment credentials come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Booking<'a> {
    /// One batch AI request, booked on the job's AI manifest id. Unless a remote signer made
    /// them, the caller builds the segment credentials itself (it caches them per auth token).
    Job,
    /// A call of the live stream with this manifest id: the segment credentials come with the
    /// payment, signed when the gateway's own key pays.
    Stream(&'a str),
}

/// What one payment spent, when the gateway's own key made tickets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spend {
    /// Tickets in the payment.
    pub tickets: u32,
    /// Expected value sent, wei (exact).
    pub ev_sent: Ratio,
    /// The fee of the call, wei (exact).
    pub fee: Ratio,
}

/// A payment prepared for one call; hand it back to [`Payments::settle`] afterwards.
#[derive(Debug)]
pub struct Prepared {
    info: Arc<OrchInfo>,
    payment: String,
    segment: Option<String>,
    staged: Option<Staged>,
}

impl Prepared {
    /// The orchestrator info to call with: the job-priced one whose auth token the payment
    /// goes with, or the discovered one when nothing was paid.
    pub fn info(&self) -> &Arc<OrchInfo> {
        &self.info
    }

    /// The `Livepeer-Payment` value (empty off-chain).
    pub fn payment(&self) -> &str {
        &self.payment
    }

    /// The `Livepeer-Segment` value, when the payment fixes it (a remote signer's, or any for
    /// [`Booking::Stream`]); `None` for a [`Booking::Job`] the caller credentials itself.
    pub fn segment(&self) -> Option<&str> {
        self.segment.as_deref()
    }

    /// What the gateway's own key spent on it; `None` when it made no tickets.
    pub fn spend(&self) -> Option<Spend> {
        self.staged.as_ref().map(|s| Spend { tickets: s.tickets, ev_sent: s.ev_sent, fee: s.fee })
    }

    /// Takes the payment out, leaving one that staged nothing in its place: for a holder that
    /// must settle it where it cannot move it (a `Drop`).
    pub fn take(&mut self) -> Self {
        let (info, payment) = (self.info.clone(), String::new());
        std::mem::replace(self, Self { info, payment, segment: None, staged: None })
    }

    /// Whether fresh ticket params may cure a payment refusal, so that one more try on the
    /// same orchestrator is worth it: the gateway's own key paid.
    pub fn renewable(&self) -> bool {
        self.staged.is_some()
    }
}

/// How the gateway pays. An enum rather than a trait object: the three ways are fixed and
/// chosen once at start, `prepare` stays a plain async fn (no boxed futures or async-trait
/// in the hot path), and `settle` hands a staged payment back to the local payer that made it
/// without downcasting.
#[derive(Debug, Clone)]
enum Way {
    OffChain,
    Local(LocalPayer),
    Remote(RemotePayer),
}

/// The gateway's payments, whichever way it pays; cheap to clone.
#[derive(Debug, Clone)]
pub struct Payments {
    way: Way,
    /// BYOC accounts per (orchestrator, capability), kept whether the gateway's own key or a
    /// remote signer makes the tickets.
    byoc: byoc::ByocBooks,
    /// The operator's price caps, which bound the price every payment is made at; the
    /// pool's own cell, so a cap changed at runtime bounds payments at once.
    caps: SharedRequirements,
}

impl Payments {
    /// Off-chain: nothing is paid.
    pub fn off_chain() -> Self {
        Self { way: Way::OffChain, byoc: byoc::ByocBooks::default(), caps: Default::default() }
    }

    /// These payments with the price caps of `requirements` (by default none): a job's
    /// payment is refused when its orchestrator's price for the job is above its cap. Give the
    /// pool's cell ([`Pool::requirements`](crate::orchestrator::Pool::requirements)) for caps
    /// that follow runtime changes.
    pub fn with_price_caps(mut self, requirements: impl Into<SharedRequirements>) -> Self {
        self.caps = requirements.into();
        self
    }

    /// The prices a payment for `key` may be made at on the orchestrator selected as
    /// `discovered`.
    fn bounds(&self, discovered: &OrchInfo, key: &JobKey) -> PriceBounds {
        let selected = discovered.price_for(key.capability, &key.model);
        PriceBounds { cap: self.caps.load().max_price(key), selected }
    }

    /// Payments with the gateway's own key, or else through the remote signer at
    /// `remote_signer` (its base URL, ending in `/`, and the headers of every call), or else
    /// off-chain. `client` fetches job-priced orchestrator info for the signer's payments.
    pub fn new(
        local: Option<LocalPayer>,
        remote_signer: Option<(&Url, reqwest::header::HeaderMap)>,
        client: &OrchClient,
    ) -> Result<Self, String> {
        let remote = match remote_signer {
            Some((url, headers)) => Some(RemotePayer::new(url, headers, client.clone())?),
            None => None,
        };
        let way = match (local, remote) {
            (Some(local), _) => Way::Local(local),
            (None, Some(remote)) => Way::Remote(remote),
            (None, None) => Way::OffChain,
        };
        Ok(Self { way, byoc: byoc::ByocBooks::default(), caps: Default::default() })
    }

    /// The same payments, holding a remote signer's to the operator's EV `limits` too.
    pub fn with_limits(mut self, limits: PaymentLimits) -> Self {
        if let Way::Remote(remote) = self.way {
            self.way = Way::Remote(remote.with_limits(limits));
        }
        self
    }

    /// The same payments, refusing a remote signer's tickets unless signed by `sender` (its
    /// identity, fetched at start).
    pub fn with_signer_identity(mut self, sender: livepeer_pm::Address) -> Self {
        if let Way::Remote(remote) = self.way {
            self.way = Way::Remote(remote.with_sender(sender));
        }
        self
    }

    /// The local-key sender, when the gateway pays with its own key.
    pub fn local(&self) -> Option<&LocalPayer> {
        match &self.way {
            Way::Local(local) => Some(local),
            _ => None,
        }
    }

    /// Whether the gateway pays nobody (no key, no remote signer).
    pub fn is_off_chain(&self) -> bool {
        matches!(self.way, Way::OffChain)
    }

    /// Prepares the payment of one call of `key` on the orchestrator at `url` (as
    /// `discovered`) for `units`, booked on `booking`. An orchestrator without ticket params
    /// is off-chain whichever way the gateway pays: it gets the empty payment, the discovered
    /// info and, for a stream, unsigned segment credentials.
    pub async fn prepare(
        &self,
        url: &Url,
        discovered: &Arc<OrchInfo>,
        key: &JobKey,
        units: u64,
        booking: Booking<'_>,
    ) -> Result<Prepared, PayError> {
        match &self.way {
            Way::Local(local) => {
                let stream = match booking {
                    Booking::Job => None,
                    Booking::Stream(manifest) => Some(manifest),
                };
                let terms = (Cost::Units(units), self.bounds(discovered, key));
                if let Some(staged) = local.prepare(url, discovered, key, terms, stream).await? {
                    let segment = stream_segment(booking, key, &staged.info, Some(local));
                    return Ok(Prepared {
                        info: staged.info.clone(),
                        payment: staged.header.clone(),
                        segment,
                        staged: Some(staged),
                    });
                }
            }
            Way::Remote(remote) => {
                let manifest = match booking {
                    Booking::Job => job_manifest(key),
                    Booking::Stream(manifest) => manifest.to_owned(),
                };
                let bounds = self.bounds(discovered, key);
                let paid = remote.prepare(url, discovered, key, (units, bounds), &manifest).await?;
                if let Some(paid) = paid {
                    return Ok(Prepared {
                        info: paid.info,
                        payment: paid.payment,
                        segment: Some(paid.segment),
                        staged: None,
                    });
                }
            }
            Way::OffChain => {}
        }
        Ok(Prepared {
            info: discovered.clone(),
            payment: OFFCHAIN_PAYMENT_HEADER.to_owned(),
            segment: stream_segment(booking, key, discovered, None),
            staged: None,
        })
    }

    /// Prepares the payment of one segment's transcoding at the orchestrator at `url` (as
    /// `discovered`), sized by go-livepeer's fee estimate (`estimated_pixels` × 1.02 × price,
    /// PROTOCOL.md §6.5) and booked on the payment session of `key` (a stream's:
    /// [`JobKey::transcode_stream`]), whose auth token the orchestrator keys the balance by.
    /// The caller builds the segment credentials (they carry the segment). Through a remote
    /// signer an orchestrator with ticket params is refused: go-livepeer's signer has no
    /// route that pays a segment.
    pub async fn prepare_transcode(
        &self,
        url: &Url,
        discovered: &Arc<OrchInfo>,
        key: &JobKey,
        estimated_pixels: u64,
    ) -> Result<Prepared, PayError> {
        match &self.way {
            Way::Local(local) => {
                let terms = (Cost::EstimatedPixels(estimated_pixels), self.bounds(discovered, key));
                if let Some(staged) = local.prepare(url, discovered, key, terms, None).await? {
                    return Ok(Prepared {
                        info: staged.info.clone(),
                        payment: staged.header.clone(),
                        segment: None,
                        staged: Some(staged),
                    });
                }
            }
            Way::Remote(_) if discovered.ticket_params.is_some() => {
                return Err(PayError::Refused(
                    "paying transcoding through a remote signer is not supported".into(),
                ));
            }
            _ => {}
        }
        Ok(Prepared {
            info: discovered.clone(),
            payment: OFFCHAIN_PAYMENT_HEADER.to_owned(),
            segment: None,
            staged: None,
        })
    }

    /// Settles a transcoding payment whose segment came back: the orchestrator charged
    /// `debit` (Σ pixels × price), and the credit left over stays (go-livepeer's
    /// `balance += credit − debit`).
    pub fn settle_debit(&self, prepared: Prepared, debit: Ratio) {
        if let (Way::Local(local), Some(staged)) = (&self.way, prepared.staged) {
            local.settle_debit(staged, debit);
        }
    }

    /// The key that signs segment credentials, when the gateway's own key pays.
    pub fn signing_key(&self) -> Option<&livepeer_pm::LocalSigner> {
        self.local().map(LocalPayer::key)
    }

    /// Settles a prepared payment after its call; only the local key keeps balances.
    pub fn settle(&self, prepared: Prepared, outcome: Settlement) {
        if let (Way::Local(local), Some(staged)) = (&self.way, prepared.staged) {
            local.settle(staged, outcome);
        }
    }

    /// Forgets the payment session of `key` on `url` after the orchestrator refused a payment,
    /// so that the next one starts from fresh ticket params.
    pub fn reset(&self, url: &Url, key: &JobKey) {
        match &self.way {
            Way::Local(local) => local.reset(url, key),
            Way::Remote(remote) => remote.reset(url, key),
            Way::OffChain => {}
        }
    }

    /// Forgets what is booked on the live stream's `manifest` at `url` (the stream ended or
    /// left the orchestrator): the remote signer's session, or the credit the gateway's own key
    /// holds there. The local key's ticket params and nonces are per job and stay.
    pub fn forget(&self, url: &Url, key: &JobKey, manifest: &str) {
        match &self.way {
            Way::Local(local) => local.forget(url, manifest),
            Way::Remote(remote) => remote.forget(url, key, manifest),
            Way::OffChain => {}
        }
    }

    /// Books the gateway's own credit left from a live stream's start call, booked on `start`
    /// at `url`, on the manifest id the orchestrator answered (`stream`), which credited the
    /// start's tickets and is debited for the stream's time; `None` (the start failed) drops
    /// it, since that balance is abandoned. go-livepeer likewise starts each stream on a fresh
    /// balance and pays the stream's intervals from what is left of it. Only the local key
    /// keeps balances; a remote signer's sessions stay as they are.
    pub fn rebook(&self, url: &Url, start: &str, stream: Option<&str>) {
        if let Way::Local(local) = &self.way {
            local.rebook(url, start, stream);
        }
    }
}

/// The fields of a BYOC job a remote signer signs.
#[derive(Debug, Clone, Copy)]
pub struct ByocJobFields<'a> {
    /// Job id.
    pub id: &'a str,
    /// Capability name.
    pub capability: &'a str,
    /// The `request` string.
    pub request: &'a str,
    /// The `parameters` string.
    pub parameters: &'a str,
    /// Seconds the worker may take.
    pub timeout_seconds: u64,
}

/// BYOC jobs (PROTOCOL.md §10.7).
impl Payments {
    /// Has the remote signer sign a BYOC job: `(sender, sig)`. Refused when the gateway
    /// does not pay through a remote signer.
    pub async fn byoc_sign_remote(
        &self,
        job: &ByocJobFields<'_>,
    ) -> Result<(String, String), PayError> {
        match &self.way {
            Way::Remote(remote) => remote.sign_byoc_job(job).await,
            _ => Err(PayError::Refused("no remote signer to sign the job".into())),
        }
    }

    /// Pays (or not) for one BYOC job of `capability` at `orch` (the orchestrator's discovery
    /// URL) per `token` (fetched at the instant given), covering `timeout_seconds`, by the
    /// same rule whichever way the gateway pays (see the `byoc` module). An off-chain gateway or
    /// orchestrator (no ticket params, price 0) pays nothing. Through a remote signer, the
    /// signer makes the tickets (see `Payments::byoc_remote`).
    pub async fn byoc_prepare(
        &self,
        orch: &str,
        capability: &str,
        token: (&crate::orchestrator::byoc::JobToken, tokio::time::Instant),
        timeout_seconds: u64,
    ) -> Result<ByocPrepared, PayError> {
        let none = || Ok(ByocPrepared::Ready(Box::new(ByocPayment::none(orch, capability))));
        match &self.way {
            Way::Local(local) => self.byoc.prepare(local, orch, capability, token, timeout_seconds),
            Way::OffChain => none(),
            Way::Remote(_) if token.0.price.is_zero() || token.0.ticket_params.is_none() => none(),
            Way::Remote(remote) => {
                self.byoc_remote(remote, (orch, capability), token, timeout_seconds).await
            }
        }
    }

    /// A BYOC payment through the remote signer. The books decide as for the local key what
    /// is due (the timeout's worth, or what is short of the minute when more) and reserve
    /// the most tickets the signer may make for it; the signer is asked for whole seconds at
    /// the token's price (it bills `inPixels` seconds, PROTOCOL.md §10.7), the fewest that
    /// cover what is due beyond the credit its state holds, and never more than its 100
    /// tickets (PAYMENTS.md §7.3) cover; the payment is sent only with no more tickets than
    /// the signer's own staging makes for those seconds, of the token's params.
    async fn byoc_remote(
        &self,
        remote: &RemotePayer,
        (orch, capability): (&str, &str),
        token: (&crate::orchestrator::byoc::JobToken, tokio::time::Instant),
        timeout_seconds: u64,
    ) -> Result<ByocPrepared, PayError> {
        let job_token = token.0;
        let params = job_token.ticket_params.ok_or(PayError::NoTicketParams)?;
        let price = job_token.price.to_ratio().map_err(|e| PayError::Internal(e.to_string()))?;
        let ev = params.ev();
        let tickets = |due: &Ratio| remote::most_byoc_tickets(due, &price, &ev);
        let plan = self.byoc.reserve((orch, capability), token, (timeout_seconds, &ev), tickets)?;
        let mut payment = match plan {
            byoc::Plan::Done(prepared) => return Ok(prepared),
            byoc::Plan::Pay(payment) => *payment,
        };
        let made = match Url::parse(orch) {
            Ok(url) => {
                let (due, most) = (payment.due(), payment.tickets);
                remote.byoc_tickets((&url, capability), job_token, due, most).await
            }
            Err(e) => Err(PayError::Internal(format!("orchestrator URL {orch}: {e}"))),
        };
        match made {
            Ok(Some((header, tickets))) => self.byoc.made(&mut payment, Some(header), tickets, &ev),
            Ok(None) => self.byoc.made(&mut payment, None, 0, &ev),
            Err(e) => {
                self.byoc.settle(payment, ByocOutcome::Refused);
                return Err(e);
            }
        }
        Ok(ByocPrepared::Ready(Box::new(payment)))
    }

    /// The orchestrator answered the job `payment` went with: its credit is confirmed.
    pub fn byoc_confirm(&self, payment: &mut ByocPayment) {
        self.byoc.confirm(payment);
    }

    /// Settles a BYOC payment after its attempt.
    pub fn byoc_settle(&self, payment: ByocPayment, outcome: ByocOutcome) {
        self.byoc.settle(payment, outcome);
    }

    /// Forgets BYOC accounts of (orchestrator, capability) pairs `keep` refuses.
    pub fn byoc_retain(&self, keep: impl Fn(&str, &str) -> bool) {
        if let Way::Remote(remote) = &self.way {
            remote.retain_byoc(&keep);
        }
        self.byoc.retain(keep);
    }

    /// The BYOC balance views: (orchestrator, capability, wei).
    pub fn byoc_balances(&self) -> Vec<(String, String, String)> {
        self.byoc.report()
    }
}

/// The AI manifest id a batch job's payments are booked on.
fn job_manifest(key: &JobKey) -> String {
    crate::orchestrator::creds::ai_manifest_id(key.capability, &key.model)
}

/// The segment credentials of a stream's call with `info`'s auth token, signed by `local`'s
/// key when it paid; `None` for a batch job, whose caller builds them.
fn stream_segment(
    booking: Booking<'_>,
    key: &JobKey,
    info: &OrchInfo,
    local: Option<&LocalPayer>,
) -> Option<String> {
    let Booking::Stream(manifest) = booking else { return None };
    let caps = Capabilities::ai_job(key.capability, &key.model, "", "");
    Some(segment_header(manifest, &caps, info.auth_token.as_ref(), local.map(LocalPayer::key)))
}

#[cfg(test)]
mod bounds_tests;

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use livepeer_pm::LocalSigner;
    use livepeer_proto::{Message, net};

    use super::*;
    use crate::orchestrator::info::AuthToken;
    use crate::orchestrator::price::Price;
    use crate::orchestrator::{Timeouts, TlsTrust};

    fn client() -> OrchClient {
        let second = Duration::from_secs(1);
        OrchClient::new(Timeouts { connect: second, call: second }, TlsTrust::AcceptAny, None)
    }

    /// An orchestrator without ticket params: off-chain whatever the gateway holds.
    fn off_chain_orch() -> Arc<OrchInfo> {
        Arc::new(OrchInfo {
            transcoder: "https://o.example:8935".into(),
            address: None,
            price: Price::ZERO,
            capability_prices: Vec::new(),
            capabilities: None,
            ticket_params: None,
            auth_token: Some(AuthToken { token: vec![1], session_id: "s".into(), expiration: 9 }),
            rtt: Duration::ZERO,
        })
    }

    fn segment(prepared: &Prepared) -> net::SegData {
        let raw = STANDARD.decode(prepared.segment().unwrap()).unwrap();
        net::SegData::decode(raw.as_slice()).unwrap()
    }

    async fn prepare(payments: &Payments, booking: Booking<'_>) -> Prepared {
        let url: Url = "https://o.example:8935".parse().unwrap();
        let key = JobKey::ai("text-to-image", "m").unwrap();
        payments.prepare(&url, &off_chain_orch(), &key, 100, booking).await.unwrap()
    }

    #[tokio::test]
    async fn off_chain_pays_the_empty_payment() {
        let payments = Payments::off_chain();
        assert!(payments.is_off_chain() && payments.local().is_none());
        let job = prepare(&payments, Booking::Job).await;
        assert_eq!(job.payment(), "");
        assert!(job.segment().is_none(), "a batch job's caller credentials itself");
        assert!(job.spend().is_none() && !job.renewable());
        assert_eq!(job.info().transcoder, "https://o.example:8935");
        let stream = prepare(&payments, Booking::Stream("stream-1")).await;
        let seg = segment(&stream);
        assert_eq!(seg.manifest_id, b"stream-1");
        assert!(seg.sig.is_empty(), "unsigned off-chain");
        assert_eq!(seg.auth_token.unwrap().session_id, "s");
        payments.settle(stream, Settlement::Paid);
    }

    #[tokio::test]
    async fn the_local_key_pays_nothing_to_an_off_chain_orchestrator() {
        let key = Arc::new(LocalSigner::from_bytes(&[5; 32]).unwrap());
        let local =
            LocalPayer::new(key, client(), crate::config::Payment::default().limits().unwrap());
        let remote: Url = "http://signer.example/".parse().unwrap();
        let headers = reqwest::header::HeaderMap::new();
        let payments = Payments::new(Some(local), Some((&remote, headers)), &client()).unwrap();
        assert!(payments.local().is_some(), "the local key wins over a remote signer");
        assert!(!payments.is_off_chain());
        let stream = prepare(&payments, Booking::Stream("m")).await;
        assert_eq!(stream.payment(), "");
        assert!(segment(&stream).sig.is_empty(), "no tickets, so unsigned as off-chain");
        assert!(stream.spend().is_none() && !stream.renewable());
    }

    #[test]
    fn a_remote_signer_alone_pays_through_it() {
        let remote: Url = "http://signer.example/".parse().unwrap();
        let headers = reqwest::header::HeaderMap::new();
        let payments = Payments::new(None, Some((&remote, headers)), &client()).unwrap();
        assert!(payments.local().is_none() && !payments.is_off_chain());
        assert!(Payments::new(None, None, &client()).unwrap().is_off_chain());
    }
}
