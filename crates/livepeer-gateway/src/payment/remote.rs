//! The client side of a remote signer (`--remote-signer-url`), for a gateway without a key:
//! - its identity, fetched once at start ([`fetch_identity`]);
//! - payments: for each (orchestrator, job, manifest id) the gateway keeps the job-priced
//!   OrchestratorInfo and the signer's opaque state, and asks
//!   `POST {signer}/generate-live-payment` for every attempt's `Livepeer-Payment` and
//!   `Livepeer-Segment` (PROTOCOL.md §11.2, with `inPixels` = the request's units);
//! - BYOC: jobs signed at `POST {signer}/sign-byoc-job`, and their tickets made at
//!   `/generate-live-payment` from the job token's price and params, the signer's state kept
//!   per (orchestrator, capability) ([`RemotePayer::byoc_tickets`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use livepeer_pm::{
    Address, B256, MAX_SENDER_NONCES, Ratio, Signature, SignedRatio, TicketParams,
    recover_eth_signer,
};
use livepeer_proto::{Message, net};
use serde_json::{Value, json};
use url::Url;

use super::terms::{Cost, PayError, PaymentLimits, PriceBounds};
use crate::error::error_chain;
use crate::orchestrator::byoc::JobToken;
use crate::orchestrator::caps::Capabilities;
use crate::orchestrator::creds::ai_manifest_id;
use crate::orchestrator::info::OrchInfo;
use crate::orchestrator::price::Price;
use crate::orchestrator::{Identity, JobKey, OrchClient};
use crate::outbound;
use check::check_payment;

mod check;

/// How many times a 480 ("refresh the session") is followed before giving up, as go-livepeer.
const MAX_REFRESHES: usize = 3;

/// Most tickets go-livepeer's signer makes in one payment (PAYMENTS.md §7.3 step 8).
const SIGNER_MAX_TICKETS: u32 = 100;

/// Largest signer answer read: a payment of [`SIGNER_MAX_TICKETS`] tickets and its state
/// take a few kilobytes.
const MAX_ANSWER: usize = 1 << 20;

#[derive(Debug)]
struct Session {
    info: Arc<OrchInfo>,
    bytes: Vec<u8>,
    state: Option<Value>,
    /// A BYOC session's price (the job token's), at which its state was started.
    price: Option<(i64, i64)>,
    /// A BYOC session's nonces: the params they were made for, and how many the signer made.
    nonces: Option<(B256, u32)>,
    /// The price the signer's state was started at, which it bills every payment at (its
    /// `InitialPricePerUnit`): what a payment's tickets are checked against.
    initial: Option<Price>,
}

impl Session {
    /// A BYOC session asked to pay at `quoted`, with params of `hash`: a state started at
    /// another price bills at that one (its initial price), so it starts afresh; its nonces
    /// start again with it, so params already paid with are done.
    fn reprice(&mut self, quoted: (i64, i64), hash: B256) {
        if self.price == Some(quoted) {
            return;
        }
        self.state = None;
        self.price = Some(quoted);
        if self.nonces.is_some_and(|(h, _)| h == hash) {
            self.nonces = Some((hash, MAX_SENDER_NONCES));
        }
    }
}

/// A `/generate-live-payment` answer.
enum Generated {
    Paid {
        payment: String,
        segment: String,
        state: Value,
    },
    /// 480: fetch fresh OrchestratorInfo and ask again with the same state.
    Refresh,
    /// 482: the state's credit covers the payment.
    Covered,
    /// Another status, with the start of its body.
    Refused(u16, String),
}

impl Generated {
    /// The refusal of a status the caller has no use for.
    fn refusal(status: u16, text: &str) -> PayError {
        PayError::Refused(format!("remote signer answered {status}: {text}"))
    }
}

/// (orchestrator URL, job, manifest id).
type SessionKey = (String, JobKey, String);

/// A session; its async lock keeps the signer's state echoed in order across awaits.
type SharedSession = Arc<tokio::sync::Mutex<Session>>;

/// How long a payment waits for its session's turn. Payments of a session go one at a time,
/// each up to a few signer calls (10 s each); without a bound, a queue behind a slow signer
/// waited for each one before it, far past any request's deadline, each holding a place at
/// the orchestrator meanwhile.
const TURN_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// The session's turn, or a refusal (no one is blamed: the signer is slow) after [`TURN_WAIT`].
async fn turn<'a, S>(
    session: &'a tokio::sync::Mutex<S>,
    url: &Url,
) -> Result<tokio::sync::MutexGuard<'a, S>, PayError> {
    tokio::time::timeout(TURN_WAIT, session.lock()).await.map_err(|_| {
        PayError::Refused(format!(
            "payments to {} queued over {} s behind the remote signer",
            crate::outbound::shown(url),
            TURN_WAIT.as_secs()
        ))
    })
}

/// What the signer produced for one attempt.
#[derive(Debug)]
pub(super) struct RemotePayment {
    /// `Livepeer-Payment`.
    pub(super) payment: String,
    /// `Livepeer-Segment`, signed by the signer.
    pub(super) segment: String,
    /// The info whose auth token the payment goes with.
    pub(super) info: Arc<OrchInfo>,
}

/// A client of a remote signer's payment endpoint; cheap to clone.
#[derive(Debug, Clone)]
pub(super) struct RemotePayer {
    http: reqwest::Client,
    endpoint: Url,
    /// `POST {signer}/sign-byoc-job`.
    sign_job: Url,
    client: OrchClient,
    /// The signer's identity, once fetched: the sender its tickets must carry.
    sender: Option<Address>,
    /// Sessions by (orchestrator, job, manifest id): the signer's state tracks one balance, and the
    /// orchestrator books each manifest id (each live stream) on its own.
    sessions: Arc<Mutex<HashMap<SessionKey, SharedSession>>>,
    /// The gateway's own EV limits, which the signer's payments are held to as well.
    limits: PaymentLimits,
}

impl RemotePayer {
    /// A payer for the signer at `base` (ending in `/`), sending `headers` with every call.
    pub(super) fn new(
        base: &Url,
        headers: reqwest::header::HeaderMap,
        client: OrchClient,
    ) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .default_headers(headers)
            .redirect(outbound::same_host_redirects())
            .build()
            .map_err(|e| e.to_string())?;
        let endpoint = base.join("generate-live-payment").map_err(|e| e.to_string())?;
        let sign_job = base.join("sign-byoc-job").map_err(|e| e.to_string())?;
        let sessions = Arc::default();
        let limits = PaymentLimits::default();
        Ok(Self { http, endpoint, sign_job, client, sender: None, sessions, limits })
    }

    /// The same payer, holding the signer's payments to `limits` (the operator's).
    pub(super) fn with_limits(mut self, limits: PaymentLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The same payer, checking that tickets are signed by `sender` (the signer's identity).
    pub(super) fn with_sender(mut self, sender: Address) -> Self {
        self.sender = Some(sender);
        self
    }

    /// The payment for one attempt of `key` on `url` for `units`, booked on `manifest`; `None`
    /// for an off-chain orchestrator (no ticket params), which gets the empty header.
    pub(super) async fn prepare(
        &self,
        url: &Url,
        discovered: &OrchInfo,
        key: &JobKey,
        (units, bounds): (u64, PriceBounds),
        manifest: &str,
    ) -> Result<Option<RemotePayment>, PayError> {
        if discovered.ticket_params.is_none() {
            return Ok(None);
        }
        let caps = Capabilities::ai_job(key.capability, &key.model, "", "");
        let session = self.session(url, key, manifest, Some(&caps)).await?;
        // One payment at a time per session: the signer's state must be echoed in order.
        let mut s = turn(&session, url).await?;
        for _ in 0..=MAX_REFRESHES {
            // The signer checks only the ceilings it is sent or configured with: the
            // gateway's own caps are checked here, on the info the signer is asked to pay.
            bounds.check(s.info.price)?;
            let billed_at = s.initial.unwrap_or(s.info.price);
            let body = json!({
                "orchestrator": STANDARD.encode(&s.bytes),
                "inPixels": units,
                "ManifestID": manifest,
                "capabilities": STANDARD.encode(net::Capabilities::from(&caps).encode_to_vec()),
                "state": s.state,
            });
            match self.generate(&body).await? {
                Generated::Paid { payment, segment, state } => {
                    // What the signer made is checked before an orchestrator sees it: at most
                    // the tickets the fee takes at the price the state bills at, of the
                    // params asked for. A payment that is not is not sent, and its session
                    // (state and params, whose nonces the signer went on with) is dropped.
                    let checked = match &s.info.ticket_params {
                        Some(params) => match most_tickets(units, billed_at, params) {
                            Ok(most) => {
                                let limits = &self.limits;
                                check_payment(&payment, params, most, self.sender, limits).await
                            }
                            Err(e) => Err(e),
                        },
                        None => Err(PayError::Refused("no ticket params to pay".into())),
                    };
                    if let Err(e) = checked {
                        drop(s);
                        self.forget(url, key, manifest);
                        return Err(e);
                    }
                    let out = RemotePayment { payment, segment, info: s.info.clone() };
                    s.state = Some(state);
                    s.initial = Some(billed_at);
                    return Ok(Some(out));
                }
                Generated::Refresh => {
                    // Fresh OrchestratorInfo, same state.
                    let (info, bytes) =
                        self.client.get_orchestrator_with_bytes(url, Some(&caps), true).await?;
                    s.info = Arc::new(info);
                    s.bytes = bytes;
                }
                // Live payers skip the cycle (PROTOCOL.md §11.2, as the Python SDK does).
                Generated::Covered => return Err(PayError::NotNeeded),
                Generated::Refused(status, text) => {
                    return Err(Generated::refusal(status, &text));
                }
            }
        }
        Err(PayError::Refused("remote signer kept asking for a session refresh".into()))
    }

    /// One `POST {signer}/generate-live-payment` with `body`, its answer sorted.
    async fn generate(&self, body: &Value) -> Result<Generated, PayError> {
        let resp = self.http.post(self.endpoint.clone()).json(body).send().await.map_err(|e| {
            PayError::Refused(format!("remote signer: {}", error_chain(&e.without_url())))
        })?;
        match resp.status().as_u16() {
            200 => {
                let mut answer: Value = outbound::read_json(resp, MAX_ANSWER)
                    .await
                    .map_err(|e| PayError::Refused(format!("remote signer answer: {e}")))?;
                let (Some(payment), Some(segment)) =
                    (answer["payment"].as_str(), answer["segCreds"].as_str())
                else {
                    return Err(PayError::Refused("remote signer answer lacks payment".into()));
                };
                let (payment, segment) = (payment.to_owned(), segment.to_owned());
                Ok(Generated::Paid { payment, segment, state: answer["state"].take() })
            }
            480 => Ok(Generated::Refresh),
            482 => Ok(Generated::Covered),
            status => Ok(Generated::Refused(status, outbound::read_prefix(resp, 200).await)),
        }
    }

    /// The tickets of a BYOC payment (PROTOCOL.md §10.7) made by the signer: `due` wei at
    /// `token`'s price to the orchestrator at `url`, for `capability`, in at most
    /// `max_tickets` tickets of `token`'s params. The signer is asked as the Python SDK asks
    /// it (GetOrchestrator's info, `/generate-live-payment`), but with the token's price and
    /// params in that info, since the orchestrator checks the tickets against the job price
    /// they were issued for, and with `inPixels` = whole seconds at that price: the fewest
    /// whose fee, less the credit the signer's state holds, covers `due` (see
    /// [`byoc_seconds`]). The signer's state is kept per (orchestrator, capability), as a live
    /// stream's is per stream: its nonces go on within one set of params. A payment is sent
    /// only with no more tickets than the signer's staging makes for those seconds (see
    /// [`signer_tickets`]). `None`: the state's credit covers it (482).
    pub(super) async fn byoc_tickets(
        &self,
        (url, capability): (&Url, &str),
        token: &JobToken,
        due: &Ratio,
        max_tickets: u32,
    ) -> Result<Option<(String, u32)>, PayError> {
        let params = token.ticket_params.ok_or(PayError::NoTicketParams)?;
        let key = JobKey::byoc(capability);
        let session = self.session(url, &key, capability, None).await?;
        let mut s = turn(&session, url).await?;
        let hash = params.recipient_rand_hash;
        s.reprice((token.price_info.price_per_unit, token.price_info.pixels_per_unit), hash);
        let used = s.nonces.filter(|(h, _)| *h == hash).map_or(0, |(_, n)| n);
        if used.saturating_add(max_tickets) > MAX_SENDER_NONCES {
            // The orchestrator takes 600 nonces per set of params (PROTOCOL.md §4.3).
            return Err(PayError::Refused(format!(
                "the token's ticket params of {url} have no nonces left; a fresh token is needed"
            )));
        }
        let internal = |e: &dyn std::fmt::Display| PayError::Internal(e.to_string());
        let price = token.price.to_ratio().map_err(|e| internal(&e))?;
        let ev = params.ev();
        // The credit the signer's state holds is billed before any new ticket. An honest
        // signer leaves it under two EVs; more is not believed.
        let two = ev.checked_mul_u64(2).map_err(|e| internal(&e))?;
        let mut credit = state_credit(s.state.as_ref()).min(two);
        let mut units = byoc_seconds(due, &credit, &price, &ev)?;
        let (mut widened, mut refreshed) = (false, false);
        for _ in 0..=MAX_REFRESHES + 1 {
            let body = json!({
                "orchestrator": STANDARD.encode(byoc_info(&s.bytes, token, &params)?),
                "inPixels": units,
                "ManifestID": capability,
                "state": s.state,
            });
            match self.generate(&body).await? {
                Generated::Paid { payment, state, .. } => {
                    let most = signer_tickets(units, &credit, &price, &ev).min(max_tickets);
                    let limits = &self.limits;
                    let checked = check_payment(&payment, &params, most, self.sender, limits).await;
                    // A payment that is not what was asked for is not sent, and its state is
                    // not trusted.
                    s.state = checked.is_ok().then_some(state);
                    s.nonces =
                        Some((hash, checked.as_ref().map_or(MAX_SENDER_NONCES, |t| used + t)));
                    return checked.map(|tickets| Some((payment, tickets)));
                }
                // Fresh OrchestratorInfo renews its auth token, not the job token's params
                // the tickets are made of: asked again, the params are what expired.
                Generated::Refresh if refreshed => {
                    return Err(PayError::Refused(format!(
                        "the remote signer asks for a refresh again: the token's ticket params of {url} expired; a fresh token is needed"
                    )));
                }
                Generated::Refresh => {
                    refreshed = true;
                    let (info, bytes) =
                        self.client.get_orchestrator_with_bytes(url, None, true).await?;
                    s.info = Arc::new(info);
                    s.bytes = bytes;
                }
                Generated::Covered if widened => return Ok(None),
                Generated::Covered => {
                    // The state holds credit left from earlier payments: each one billed its
                    // whole `inPixels` seconds, the orchestrator only the seconds worked. Each
                    // paid call leaves it under one EV, or under two EVs less the fee when the
                    // fee was below one EV: under `2·EV − price` either way. So a fee just
                    // under two EVs (whole seconds) exceeds it by at most one EV: exactly one
                    // ticket, which spends that much of it. (Asked with the credit its state
                    // shows, the signer answers 482 only when that could not be read; it
                    // then holds at least one EV.)
                    widened = true;
                    credit = credit.max(ev);
                    units = two_tickets_of_seconds(token, &params)?;
                }
                Generated::Refused(status, text) => {
                    // The signer refused the request (a state it no longer takes, say): the
                    // next payment starts afresh. A failed call keeps the state, whose
                    // nonces the orchestrator has not seen.
                    if (400..500).contains(&status) {
                        s.state = None;
                        // A new state starts these params' nonces again, which the
                        // orchestrator has seen: they are not used again.
                        s.nonces = Some((hash, MAX_SENDER_NONCES));
                    }
                    return Err(Generated::refusal(status, &text));
                }
            }
        }
        Err(PayError::Refused("remote signer kept asking for a session refresh".into()))
    }

    /// Forgets the BYOC sessions of (orchestrator, capability) pairs `keep` refuses.
    pub(super) fn retain_byoc(&self, keep: impl Fn(&str, &str) -> bool) {
        if let Ok(mut map) = self.sessions.lock() {
            map.retain(|(url, key, _), _| {
                !key.is_byoc() || keep(url.trim_end_matches('/'), &key.model)
            });
        }
    }

    /// Has the signer sign a BYOC job (`POST {signer}/sign-byoc-job`, the Python SDK's route;
    /// go-livepeer's signer has none): `(sender, sig)` for the job request, the signature
    /// checked to be the sender's over `request ‖ parameters`, as the orchestrator checks it.
    pub(super) async fn sign_byoc_job(
        &self,
        job: &super::ByocJobFields<'_>,
    ) -> Result<(String, String), PayError> {
        let body = json!({
            "id": job.id,
            "capability": job.capability,
            "request": job.request,
            "parameters": job.parameters,
            "timeout_seconds": job.timeout_seconds,
        });
        let refused = |m: String| PayError::Refused(format!("remote signer, BYOC job: {m}"));
        let resp = self
            .http
            .post(self.sign_job.clone())
            .json(&body)
            .send()
            .await
            .map_err(|e| refused(error_chain(&e.without_url())))?;
        match resp.status().as_u16() {
            200 => {}
            404 => return Err(refused("the signer has no /sign-byoc-job route".into())),
            status => {
                let text = outbound::read_prefix(resp, 200).await;
                return Err(refused(format!("answered {status}: {text}")));
            }
        }
        #[derive(serde::Deserialize)]
        struct Answer {
            sender: String,
            signature: String,
        }
        let answer: Answer = outbound::read_json(resp, MAX_ANSWER).await.map_err(refused)?;
        let sender: Address = answer.sender.parse().map_err(|e| refused(format!("sender: {e}")))?;
        let sig = hex::decode(answer.signature.trim_start_matches("0x"))
            .map_err(|e| refused(format!("signature: {e}")))?;
        let message = [job.request.as_bytes(), job.parameters.as_bytes()].concat();
        match recover_eth_signer(&message, &sig) {
            Ok(who) if who == sender => {
                Ok((sender.to_checksum(None), format!("0x{}", hex::encode(&sig))))
            }
            _ => {
                Err(refused("the signature is not the sender's over request and parameters".into()))
            }
        }
    }

    /// Forgets the session (after the orchestrator refused a payment).
    pub(super) fn reset(&self, url: &Url, key: &JobKey) {
        self.forget(url, key, &ai_manifest_id(key.capability, &key.model));
    }

    /// Forgets the session of one manifest id (a live stream that ended).
    pub(super) fn forget(&self, url: &Url, key: &JobKey, manifest: &str) {
        if let Ok(mut map) = self.sessions.lock() {
            map.remove(&(url.to_string(), key.clone(), manifest.to_owned()));
        }
    }

    async fn session(
        &self,
        url: &Url,
        key: &JobKey,
        manifest: &str,
        caps: Option<&Capabilities>,
    ) -> Result<SharedSession, PayError> {
        let map_key = (url.to_string(), key.clone(), manifest.to_owned());
        if let Some(found) = self.sessions.lock().ok().and_then(|m| m.get(&map_key).cloned()) {
            return Ok(found);
        }
        let (info, bytes) = self.client.get_orchestrator_with_bytes(url, caps, true).await?;
        let info = Arc::new(info);
        let session =
            Session { info, bytes, state: None, price: None, nonces: None, initial: None };
        let session = Arc::new(tokio::sync::Mutex::new(session));
        let mut map =
            self.sessions.lock().map_err(|_| PayError::Internal("sessions lock".into()))?;
        Ok(map.entry(map_key).or_insert(session).clone())
    }
}

/// The OrchestratorInfo a BYOC payment is asked for with: GetOrchestrator's (`bytes`: its
/// address, auth token and transcoder), carrying the job token's price and ticket params
/// (field 7 included), which the tickets must be made for.
fn byoc_info(bytes: &[u8], token: &JobToken, params: &TicketParams) -> Result<Vec<u8>, PayError> {
    let mut info = net::OrchestratorInfo::decode(bytes)
        .map_err(|e| PayError::Internal(format!("stored OrchestratorInfo: {e}")))?;
    info.price_info = Some(token.price_info.clone());
    let mut wire = params.to_payment_proto();
    wire.expiration_params = params.expiration_params.map(|p| p.to_proto());
    info.ticket_params = Some(wire);
    Ok(info.encode_to_vec())
}

/// The most seconds at `token`'s price that cost no more than two tickets of `params` (at
/// least one).
fn two_tickets_of_seconds(token: &JobToken, params: &TicketParams) -> Result<u64, PayError> {
    let internal = |e: &dyn std::fmt::Display| PayError::Internal(e.to_string());
    let price = token.price.to_ratio().map_err(|e| internal(&e))?;
    let two = params.ev().checked_mul_u64(2).map_err(|e| internal(&e))?;
    let seconds = two.checked_div(&price).map_err(|e| internal(&e))?.floor();
    // `inPixels` is an int64 on the wire.
    u64::try_from(seconds).ok().map(|s| s.max(1)).filter(|s| i64::try_from(*s).is_ok()).ok_or_else(
        || PayError::Refused("two tickets cost more seconds than a payment holds".into()),
    )
}

/// The credit a signer's state holds (its `Balance`, PAYMENTS.md §7.4), which it bills before
/// making any ticket; zero when there is no state or it cannot be read.
fn state_credit(state: Option<&Value>) -> Ratio {
    let credit = state
        .and_then(|s| s["State"].as_str())
        .and_then(|b| STANDARD.decode(b).ok())
        .and_then(|json| serde_json::from_slice::<Value>(&json).ok())
        .and_then(|st| st["Balance"].as_str().and_then(|b| b.parse::<Ratio>().ok()));
    credit.unwrap_or(Ratio::ZERO)
}

/// The whole seconds a signer holding `credit` is asked to bill at `price` (tickets of EV
/// `ev`) so that it sends at least `due`: it makes tickets for the fee beyond its credit, so
/// `ceil((due + credit) / price)`; but no more than 100 tickets cover beyond the credit (the
/// most it makes at once; a longer timeout is paid in part), and at least one second.
fn byoc_seconds(due: &Ratio, credit: &Ratio, price: &Ratio, ev: &Ratio) -> Result<u64, PayError> {
    let internal = |e: &dyn std::fmt::Display| PayError::Internal(e.to_string());
    let wanted = due.checked_add(credit).and_then(|w| w.checked_div(price));
    let wanted = wanted.map_err(|e| internal(&e))?.ceil();
    let most = ev
        .checked_mul_u64(u64::from(SIGNER_MAX_TICKETS))
        .and_then(|m| m.checked_add(credit))
        .and_then(|m| m.checked_div(price))
        .map_err(|e| internal(&e))?
        .floor();
    let seconds = u64::try_from(wanted.min(most)).unwrap_or(u64::MAX).max(1);
    // `inPixels` is an int64 on the wire.
    i64::try_from(seconds)
        .map(|_| seconds)
        .map_err(|_| PayError::Refused("a BYOC payment takes more seconds than an int64".into()))
}

/// The tickets a signer makes for `seconds` at `price` holding `credit` (PAYMENTS.md §7.3
/// step 8): those of the fee, at least one EV, beyond the credit; none when it covers that
/// (`u32::MAX` for a count past arithmetic).
fn signer_tickets(seconds: u64, credit: &Ratio, price: &Ratio, ev: &Ratio) -> u32 {
    let Ok(fee) = price.checked_mul_u64(seconds) else { return u32::MAX };
    let mut balance = livepeer_pm::Balance::new(SignedRatio::from(*credit));
    let staged = balance.stage_update(&livepeer_pm::min_credit(&fee, ev), ev);
    staged.map_or(u32::MAX, |update| update.num_tickets)
}

/// The most tickets a signer makes for `due` at `price`, asked for [`byoc_seconds`]: their fee
/// less its credit falls short of `due` plus one second's price, so at most
/// `ceil((due + price) / ev)`, at least one, at most the 100 it makes at once.
pub(super) fn most_byoc_tickets(due: &Ratio, price: &Ratio, ev: &Ratio) -> u32 {
    let most = due.checked_add(price).and_then(|d| d.checked_div(ev)).map(|r| r.ceil());
    let most = most.ok().map_or(SIGNER_MAX_TICKETS, |n| u32::try_from(n).unwrap_or(u32::MAX));
    most.clamp(1, SIGNER_MAX_TICKETS)
}

/// The most tickets of `params` a payment of `units` at `price` takes: those that cover the
/// fee, or the one ticket that covers a fee under one EV, and never more than the signer
/// makes at once. The signer's state holds no debt (each payment covers its whole fee), so
/// its credit only lowers the count.
fn most_tickets(units: u64, price: Price, params: &TicketParams) -> Result<u32, PayError> {
    let internal = |e: &dyn std::fmt::Display| PayError::Internal(e.to_string());
    let fee = Cost::Units(units).fee(&price.to_ratio().map_err(|e| internal(&e))?);
    let fee = fee.map_err(|e| internal(&e))?;
    let tickets = fee.checked_div(&params.ev()).map_err(|e| internal(&e))?.ceil();
    let tickets = u32::try_from(tickets).unwrap_or(u32::MAX);
    Ok(tickets.clamp(1, SIGNER_MAX_TICKETS))
}

/// Why a signer could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SignerError {
    /// The signer could not be reached or answered an error.
    #[error("remote signer {url}: {message}")]
    Unreachable {
        /// Signer URL.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The answer was not an address and a valid signature of it.
    #[error("remote signer answered an invalid identity: {0}")]
    Invalid(String),
}

/// Fetches the gateway's identity from a remote signer and checks that the signature really
/// is the address's (so a misconfigured signer fails at start, not at every orchestrator).
pub async fn fetch_identity(
    url: &Url,
    headers: reqwest::header::HeaderMap,
) -> Result<Identity, SignerError> {
    let unreachable =
        |message: String| SignerError::Unreachable { url: outbound::shown(url), message };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .default_headers(headers)
        .redirect(outbound::same_host_redirects())
        .build()
        .map_err(|e| unreachable(e.to_string()))?;
    let endpoint = url.join("sign-orchestrator-info").map_err(|e| unreachable(e.to_string()))?;
    let resp = http
        .post(endpoint)
        .json(&json!({}))
        .send()
        .await
        .map_err(|e| unreachable(error_chain(&e.without_url())))?;
    if !resp.status().is_success() {
        return Err(unreachable(format!("status {}", resp.status())));
    }
    #[derive(serde::Deserialize)]
    struct Answer {
        address: String,
        signature: String,
    }
    let answer: Answer =
        outbound::read_json(resp, MAX_ANSWER).await.map_err(SignerError::Invalid)?;
    let address: Address =
        answer.address.parse().map_err(|e| SignerError::Invalid(format!("address: {e}")))?;
    let bytes = hex::decode(answer.signature.trim_start_matches("0x"))
        .map_err(|e| SignerError::Invalid(format!("signature: {e}")))?;
    let sig: [u8; 65] =
        bytes.try_into().map_err(|_| SignerError::Invalid("signature is not 65 bytes".into()))?;
    let text = address.to_checksum(None);
    match recover_eth_signer(text.as_bytes(), &sig) {
        Ok(who) if who == address => Ok(Identity { address, sig: Signature(sig) }),
        _ => Err(SignerError::Invalid("the signature is not the address's".into())),
    }
}

#[cfg(test)]
mod tests {
    use livepeer_pm::{B256, U256};

    use super::*;

    /// Ticket params whose random hash is `hash` repeated, paying 1000 wei a ticket.
    pub(super) fn params(hash: u8) -> TicketParams {
        TicketParams {
            recipient: Address::from([7u8; 20]),
            face_value: U256::from(1000u64),
            win_prob: U256::MAX,
            recipient_rand_hash: B256::from([hash; 32]),
            seed: U256::from(1u64),
            expiration_block: U256::from(99u64),
            expiration_params: None,
        }
    }

    /// A payment queued behind a session's slow payments gives up after its wait, refused
    /// (nobody blamed), rather than wait for each one before it.
    #[tokio::test(start_paused = true)]
    async fn a_payment_waits_for_its_session_s_turn_within_a_bound() {
        let session = tokio::sync::Mutex::new(());
        let url: Url = "https://o.example:8935/".parse().unwrap();
        let held = session.lock().await;
        let waited = turn(&session, &url).await.unwrap_err();
        assert!(matches!(&waited, PayError::Refused(m) if m.contains("30 s")), "{waited:?}");
        drop(held);
        assert!(turn(&session, &url).await.is_ok());
    }

    #[test]
    fn a_payment_takes_the_tickets_of_its_fee_and_at_least_one() {
        // EV = 1000 × (2^256 − 1) / (2^256 − 1) = 1000 wei.
        let p = params(1);
        let price = |n| Price::new(n, 1).unwrap();
        assert_eq!(most_tickets(1, price(10), &p).unwrap(), 1, "a fee under one EV");
        assert_eq!(most_tickets(100, price(10), &p).unwrap(), 1, "exactly one EV");
        assert_eq!(most_tickets(101, price(10), &p).unwrap(), 2);
        assert_eq!(most_tickets(0, price(10), &p).unwrap(), 1);
        assert_eq!(most_tickets(u64::MAX, price(1000), &p).unwrap(), SIGNER_MAX_TICKETS);
    }

    #[test]
    fn a_byoc_payment_asks_for_the_seconds_that_cover_what_is_due_beyond_the_signers_credit() {
        let (ev, price, zero) = (Ratio::from_u64(1000), Ratio::from_u64(45), Ratio::ZERO);
        let wei = Ratio::from_u64;
        // Nothing held: a minute short (2,700 wei) is asked as 60 s, three tickets.
        assert_eq!(byoc_seconds(&wei(2700), &zero, &price, &ev).unwrap(), 60);
        assert_eq!(signer_tickets(60, &zero, &price, &ev), 3);
        // The state holding 800: asked as 60 s, its tickets would send 2,000 (short of the
        // 2,700 due); asked as ceil(3,500 / 45) = 78 s, they send 3,000.
        assert_eq!(signer_tickets(60, &wei(800), &price, &ev), 2);
        assert_eq!(byoc_seconds(&wei(2700), &wei(800), &price, &ev).unwrap(), 78);
        assert_eq!(signer_tickets(78, &wei(800), &price, &ev), 3);
        // A part second is paid whole: 2,000 due is 45 s (2,025 wei).
        assert_eq!(byoc_seconds(&wei(2000), &zero, &price, &ev).unwrap(), 45);
        // At most what 100 tickets cover beyond the credit, at least one second.
        let most = byoc_seconds(&wei(1_000_000), &zero, &price, &ev).unwrap();
        assert_eq!((most, signer_tickets(most, &zero, &price, &ev)), (2222, 100));
        let dear = Ratio::from_u64(1_000_000);
        assert_eq!(byoc_seconds(&wei(5), &zero, &dear, &ev).unwrap(), 1);
        // The credit covering the fee and one EV: no tickets (the signer's 482).
        assert_eq!(signer_tickets(10, &wei(1000), &price, &ev), 0);
        // The reservation bounds every such count: what is due plus one second's price.
        for (due, credit) in [(2700, 0), (2700, 800), (2000, 0), (2000, 999), (1, 0), (450, 300)] {
            let seconds = byoc_seconds(&wei(due), &wei(credit), &price, &ev).unwrap();
            let made = signer_tickets(seconds, &wei(credit), &price, &ev);
            let sent = ev.checked_mul_u64(u64::from(made)).unwrap();
            assert!(sent >= wei(due), "{due} due, {credit} held: {made} tickets");
            assert!(made <= most_byoc_tickets(&wei(due), &price, &ev), "{due}, {credit}");
        }
        assert_eq!(most_byoc_tickets(&wei(2700), &price, &ev), 3);
        assert_eq!(most_byoc_tickets(&wei(1), &price, &ev), 1);
        assert_eq!(most_byoc_tickets(&wei(10_000_000), &price, &ev), SIGNER_MAX_TICKETS);
    }

    #[test]
    fn the_signers_credit_is_read_from_its_state() {
        let state = |json: &str| json!({"State": STANDARD.encode(json), "Sig": "AA=="});
        let read = |json: &str| state_credit(Some(&state(json)));
        assert_eq!(read(r#"{"Balance":"856"}"#), Ratio::from_u64(856));
        assert_eq!(
            read(r#"{"Balance":"1713/2"}"#),
            Ratio::new(livepeer_pm::U512::from(1713u64), livepeer_pm::U512::from(2u64)).unwrap()
        );
        assert_eq!(read(r#"{"Balance":"-5"}"#), Ratio::ZERO, "no debt is believed");
        assert_eq!(read("not json"), Ratio::ZERO);
        assert_eq!(state_credit(None), Ratio::ZERO);
    }

    #[test]
    fn the_info_carries_the_token_price_and_params() {
        let base = net::OrchestratorInfo {
            address: vec![7; 20],
            price_info: Some(net::PriceInfo {
                price_per_unit: 1,
                pixels_per_unit: 1,
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut p = params(1);
        p.expiration_params = Some(livepeer_pm::ExpirationParams::new(5, B256::from([4u8; 32])));
        let token = JobToken {
            service_addr: "http://o:1".into(),
            price: crate::orchestrator::price::Price::new(9, 2).unwrap(),
            price_info: net::PriceInfo {
                price_per_unit: 9,
                pixels_per_unit: 2,
                ..Default::default()
            },
            ticket_params: Some(p),
            balance: 0,
            available_capacity: 1,
        };
        let bytes = byoc_info(&base.encode_to_vec(), &token, &p).unwrap();
        let info = net::OrchestratorInfo::decode(bytes.as_slice()).unwrap();
        assert_eq!(info.address, vec![7; 20], "GetOrchestrator's address stays");
        assert_eq!(info.price_info.unwrap().price_per_unit, 9);
        let tp = TicketParams::from_proto(&info.ticket_params.unwrap()).unwrap();
        assert_eq!(tp, p, "the token's params, field 7 included");
    }
}
