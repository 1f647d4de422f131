//! BYOC ("bring your own container") batch jobs, `POST /process/request/{path}`
//! (PROTOCOL.md §10, GATEWAY.md §6.7): the client's unsigned job request is checked and
//! signed, an orchestrator offering the capability is selected as for any job (power of two
//! choices over latency, load and price, breakers per (orchestrator, capability)), paid from
//! its job token, and sent the client's body as it streams in; its answer streams back.
//!
//! Files: `request` (the `Livepeer` header), `upload` (the streamed body and what may be
//! retried), `tokens` (job tokens kept fresh in the background), `job` (attempts and
//! failover) and `answer` (the answer's body, relayed and accounted).
//! Streams (`/process/stream/…`, PROTOCOL.md §10.6): `stream` (the table, ownership, the
//! client's requests), `stream_orch` (calls to orchestrators) and `stream_relay` (supervisor,
//! relays, payments, swaps).

mod answer;
pub mod job;
pub mod request;
mod sent;
pub mod stream;
mod stream_orch;
mod stream_relay;
pub mod stream_state;
pub mod tokens;
pub mod upload;

use std::sync::Arc;
use std::time::Duration;

use livepeer_pm::LocalSigner;

pub use job::{Answer, Reply};
pub use request::JobRequest;
pub use upload::{ClientBody, Upload};

use crate::error::{Error, Kind};
use crate::job::JobKey;
use crate::metrics::Metrics;
use crate::orchestrator::byoc::JobToken;
use crate::orchestrator::http::OrchHttp;
use crate::orchestrator::{Identity, Pool};
use crate::payment::Payments;
use tokens::Tokens;

/// BYOC settings, validated by `config`.
#[derive(Debug, Clone)]
pub struct ByocConfig {
    /// Largest request body, bytes (`--byoc-max-body-bytes`).
    pub max_body_bytes: u64,
    /// Most orchestrators tried per job (`--byoc-max-attempts`).
    pub max_attempts: u32,
    /// Largest `timeout_seconds` accepted (`--byoc-max-timeout-seconds`).
    pub max_timeout_seconds: u64,
    /// Bytes of a body held so that another orchestrator can be tried (see `upload`).
    pub replay_bytes: usize,
    /// How often job tokens are fetched again (`--byoc-token-refresh-interval`).
    pub token_refresh: Duration,
    /// Deadline of one token call (`--byoc-token-timeout`).
    pub token_timeout: Duration,
    /// Token calls in flight at once in a refresh round.
    pub token_concurrency: usize,
    /// How often a stream's orchestrator is paid (`--byoc-payment-interval`).
    pub payment_interval: Duration,
    /// Most streams at once (`--byoc-max-streams`).
    pub max_streams: usize,
}

/// Who signs job requests.
#[derive(Debug, Clone)]
pub enum JobSigner {
    /// This key: the gateway's own, or (off-chain, with no key) one made at start, since
    /// orchestrators verify every job's signature whether they charge or not.
    Key(Arc<LocalSigner>),
    /// A remote signer, named to orchestrators by its identity. It signs each job at
    /// `/sign-byoc-job` (the Python SDK's route; go-livepeer's signer has none), and makes the
    /// tickets of priced ones at `/generate-live-payment` (see [`Payments::byoc_prepare`]).
    Remote(Identity),
}

/// What the BYOC route shares; cheap to clone.
#[derive(Debug, Clone)]
pub struct ByocState {
    /// The orchestrator pool.
    pub pool: Pool,
    /// The client of job calls (streamed bodies) and token calls.
    pub http: OrchHttp,
    /// Job tokens.
    pub tokens: Tokens,
    /// Payments.
    pub payments: Payments,
    /// Metrics.
    pub metrics: Metrics,
    /// Settings.
    pub config: Arc<ByocConfig>,
    /// Who signs jobs.
    pub signer: JobSigner,
    /// Signatures the local key already made.
    pub sigs: Arc<request::SigCache>,
}

impl ByocState {
    /// The state over `pool`, signing with `signer`, fetching tokens with `http`.
    pub fn new(
        config: ByocConfig,
        pool: Pool,
        http: OrchHttp,
        payments: Payments,
        metrics: Metrics,
        signer: JobSigner,
    ) -> Result<Self, String> {
        let sender = match &signer {
            JobSigner::Key(key) => {
                let addr = key.address().to_checksum(None);
                let sig = key.eth_sign(addr.as_bytes()).map_err(|e| e.to_string())?;
                request::sender_header(&addr, &sig.0)
            }
            JobSigner::Remote(id) => {
                request::sender_header(&id.address.to_checksum(None), &id.sig.0)
            }
        };
        let settings = tokens::TokenSettings {
            refresh: config.token_refresh,
            timeout: config.token_timeout,
            concurrency: config.token_concurrency,
        };
        let tokens = Tokens::new(http.clone(), sender, settings);
        let config = Arc::new(config);
        let sigs = Arc::default();
        Ok(Self { pool, http, tokens, payments, metrics, config, signer, sigs })
    }

    /// Keeps job tokens fresh until `cancel`, and drops the payment accounts of pairs no
    /// longer on offer.
    pub async fn run_tokens(self, cancel: tokio_util::sync::CancellationToken) {
        let payments = self.payments.clone();
        let after = move |offered: &std::collections::HashSet<(String, String)>| {
            payments.byoc_retain(|o, c| offered.contains(&(o.to_owned(), c.to_owned())));
        };
        self.tokens.clone().run(self.pool.clone(), after, cancel).await;
    }

    /// Why `token`'s price may not be paid for `capability`: over `--byoc-max-price`. The
    /// selection checked the price GetOrchestrator advertised, but the token's price is the one
    /// tickets are made for, and it may differ (a price set in USD moves, the advertised one is
    /// truncated to whole wei, and an orchestrator may quote one and charge another).
    pub fn over_cap(&self, capability: &str, token: &JobToken) -> Option<String> {
        let max = self.pool.max_price(&JobKey::byoc(capability))?;
        (token.price > max).then(|| {
            format!(
                "job token price {}/{} wei per second is over the cap of {}/{}",
                token.price.per_unit,
                token.price.pixels_per_unit,
                max.per_unit,
                max.pixels_per_unit
            )
        })
    }

    /// Refuses a job that cannot go anywhere, before its body is read: a gateway that cannot
    /// sign it, or a capability no orchestrator offers.
    ///
    /// An unknown capability is a 503 (`no_orchestrator`, naming the field), not a 404 or 400:
    /// capabilities are registered by workers at run time and come and go, so the same request
    /// may succeed a moment later; the client did nothing wrong by naming one.
    pub fn check(&self, job: &JobRequest) -> Result<(), Error> {
        let key = JobKey::byoc(&job.capability);
        let snap = self.pool.snapshot();
        let Some(tiers) = snap.index.get(&key) else {
            let message = format!("no orchestrator offers capability {:?}", job.capability);
            return Err(Error::new(Kind::NoOrchestrator, message).field("capability"));
        };
        let all = tiers.warm.iter().chain(&tiers.cold).chain(&tiers.over_price);
        let urls = all.map(|e| tokens::orch_key(&snap.slots[e.orch as usize].url));
        if !urls.into_iter().any(|u| job.allows(&u)) {
            let message = format!(
                "no orchestrator offering capability {:?} passes parameters.orchestrators (include/exclude)",
                job.capability
            );
            return Err(Error::new(Kind::NoOrchestrator, message).field("parameters.orchestrators"));
        }
        Ok(())
    }
}
