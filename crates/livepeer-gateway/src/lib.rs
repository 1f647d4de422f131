//! A Livepeer Gateway: takes jobs from applications and routes them to Livepeer orchestrators.
//!
//! [`Gateway::start`] binds the listeners of a validated [`Config`], discovers orchestrators
//! and keeps the pool current in the background; [`Gateway::shutdown`] stops it gracefully.
//!
//! # Layout
//!
//! Imports go one way, down this list; `tests/layout.rs` checks that no two modules import
//! each other, directly or in a ring, and that axum and HTTP statuses stay in [`http`].
//! - this crate root composes the rest: it builds the pool, the payers and the states from a
//!   [`Config`] and hands them to the routers;
//! - [`http`], on top: every route, the listener, and the one mapping from typed errors to
//!   statuses and bodies;
//! - [`config`]: flags, `LP_*` variables and the file, validated into the typed settings of
//!   the modules below; [`state`]: what the admin routes share;
//! - the job paths: [`ai`] (batch AI), [`live`] (live video), [`byoc`] and [`transcode`]
//!   (video transcoding), which select, pay and call;
//! - [`keys`]: customer keys (`--auth keys`), their database (SQLite or PostgreSQL) and
//!   limits;
//! - [`payment`] (one interface over a local key, a remote signer or off-chain, and the
//!   signer server), then [`orchestrator`] (client, discovery, pool, selection, verdict);
//! - leaves: [`error`] (the error model), [`metrics`], [`job`] (kinds of job), [`task`], [`lane`] and
//!   [`log_sink`].
//!
//! The binary's tools (`demo`, `bench`, `bench-live`, `live-client`) live under `src/cli/`,
//! beside `main.rs`, and are not part of this library.
#![cfg_attr(not(test), warn(unused_crate_dependencies))]

pub(crate) mod address_counts;
pub mod ai;
#[cfg(test)]
mod alone;
pub(crate) mod body_memory;
pub mod bounded_json;
pub mod byoc;
pub mod config;
pub mod database;
pub mod error;
mod fd_limit;
pub mod http;
pub mod ingest;
pub mod job;
pub mod keys;
pub mod lane;
pub mod live;
pub mod log_format;
pub mod log_sink;
pub mod metrics;
pub mod onchain;
pub mod orchestrator;
pub(crate) mod outbound;
pub mod payment;
pub mod recent;
pub mod state;
pub mod task;
pub mod transcode;

// Used by the binary only.
use anyhow as _;
use httparse as _;
#[cfg(feature = "cli")]
use livepeer_sim as _;
use mimalloc as _;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use serde_json::json;
use tokio::net::TcpListener;

use config::OrchSource;
pub use config::{Config, ConfigError};
use metrics::Metrics;
use orchestrator::{Discovery, Identity, OrchClient, Pool, PoolConfig, Timeouts};
pub use state::AppState;
use task::Tasks;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The socket error.
        source: std::io::Error,
    },
    /// A part of the gateway could not be set up from its configuration.
    #[error("{part}: {message}")]
    Setup {
        /// Which part.
        part: Part,
        /// What went wrong.
        message: String,
    },
    /// `--eth-url` serves another chain than `--network` names: a configuration mistake (the
    /// binary exits 64, as for any bad setting).
    #[error("{0}")]
    WrongChain(String),
}

/// The parts of the gateway whose setup can fail at start, named in [`StartError::Setup`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The listeners, once bound.
    Listener,
    /// The gateway's identity (its key, or the remote signer's).
    Identity,
    /// The orchestrator source (webhook, or the remote signer's discovery).
    Discovery,
    /// The payers (local key or remote signer).
    Payments,
    /// The chain connection that reads the sender's funds (`--eth-url`).
    Chain,
    /// The HTTP client of AI calls.
    AiClient,
    /// The live-video state (its HTTP clients).
    Live,
    /// The remote-signer routes this gateway serves.
    Signer,
    /// The BYOC job state (its HTTP client, its signing key).
    Byoc,
    /// The transcoding state (its HTTP clients).
    Transcode,
    /// The customer key database (`--auth keys`).
    Keys,
    /// The catalogue's publisher (`--marketplace-webhook-url`).
    Marketplace,
}

impl std::fmt::Display for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Part::Listener => "listener",
            Part::Identity => "identity",
            Part::Discovery => "discovery",
            Part::Payments => "payments",
            Part::Chain => "chain",
            Part::AiClient => "AI client",
            Part::Live => "live video",
            Part::Signer => "remote-signer routes",
            Part::Byoc => "BYOC jobs",
            Part::Transcode => "transcoding",
            Part::Keys => "customer keys",
            Part::Marketplace => "marketplace publishing",
        })
    }
}

/// Turns an error of `part`'s setup into a [`StartError`].
fn setup<E: std::fmt::Display>(part: Part) -> impl FnOnce(E) -> StartError {
    move |e| StartError::Setup { part, message: e.to_string() }
}

/// A running gateway.
#[derive(Debug)]
pub struct Gateway {
    /// Where the public API listens.
    pub http_addr: SocketAddr,
    /// Where the admin API listens.
    pub admin_addr: SocketAddr,
    /// Where RTMP ingest listens, unless `--rtmp-addr off`.
    pub rtmp_addr: Option<SocketAddr>,
    /// Shared state (pool, metrics).
    pub state: AppState,
    /// Video transcoding: where ingest hands its segments ([`transcode::TranscodeState::submit`]).
    pub transcode: transcode::TranscodeState,
    public: Router,
    admin: Router,
    tasks: Tasks,
    /// How long in-flight requests get at shutdown.
    drain: std::time::Duration,
    /// The public port's serving threads (`--http-threads`), which end after shutdown.
    cores: http::cores::Cores,
}

impl Gateway {
    /// Binds both listeners, runs the first discovery round and starts serving.
    pub async fn start(config: Config) -> Result<Self, StartError> {
        // Boxed: setting up makes a large future (alloy's, the pool's), and callers await
        // `start` inside futures of their own.
        Box::pin(Self::set_up(config)).await
    }

    async fn set_up(config: Config) -> Result<Self, StartError> {
        // What the whole process shares: its descriptors and the memory bodies may take.
        fd_limit::raise();
        body_memory::set_budget(config.max_body_memory);
        let http = bind_public(&config).await?;
        let admin = bind(config.cli_addr).await?;
        let rtmp = bind_rtmp(&config).await?;
        let http_addr = http.local_addr().map_err(setup(Part::Listener))?;
        let admin_addr = admin.local_addr().map_err(setup(Part::Listener))?;

        let tasks = Tasks::new();
        let metrics = Metrics::new();
        let keys = key_store(&config, &tasks, metrics.recent()).await?;
        let identity = identity(&config).await?;
        let timeouts = Timeouts { connect: config.connect_timeout, call: config.discovery_timeout };
        let client = OrchClient::new(timeouts, config.orch_tls, identity.clone());
        // Boxed: alloy's futures are large, and `start` is awaited inside other futures.
        let chain = Box::pin(connect_chain(&config)).await?;
        let pool = start_pool(&config, &client, &metrics, &tasks, chain.as_ref()).await?;
        let (payer, payments) = payments(&config, &client, &tasks, chain.as_ref(), &pool).await?;
        name_node(&metrics, payer.as_ref(), &client);
        let state = AppState {
            requirements: pool.requirements(),
            pool,
            metrics,
            summary: Arc::new(summary(&config)),
            payer,
            chain: chain.map(|c| c.status),
        };
        let ai_state = ai_state(&config, http_addr, &state, payments.clone(), &tasks)?;
        let payments_for_byoc = payments.clone();
        let transcode = transcode::TranscodeState::new(
            config.transcode.clone(),
            state.pool.clone(),
            payments.clone(),
            state.metrics.clone(),
            client.clone(),
            config.ingest.auth.clone(),
            &tasks,
        )
        .map_err(setup(Part::Transcode))?;
        let live_state = live::LiveState::new(
            config.live.clone(),
            state.pool.clone(),
            state.metrics.clone(),
            payments,
            &tasks,
        )
        .map_err(setup(Part::Live))?;
        let (byoc_state, byoc_streams) =
            byoc_services(&config, &state, payments_for_byoc, identity, &tasks)?;
        let rtmp_sink = transcode::RtmpSink::new(transcode.clone(), keys.clone());
        let admin_routes = http::admin_router(
            state.clone(),
            live_state.clone(),
            byoc_state.clone(),
            byoc_streams.clone(),
            transcode.clone(),
        );
        // The keys' routes, the admin token's layer, the dashboard's page outside it and,
        // without a token, the loopback guard over them all.
        let admin_routes = http::admin_api(admin_routes, keys.clone(), &config.keys, admin_addr);
        let limits = conn_limits(&config);
        let port = |name| port(name, &limits, &state.metrics);
        serve(&tasks, "admin-api", admin, admin_routes.clone(), limits, port("admin-api"));
        let signer = signer_state(&config, &state)?;
        let services = http::Services {
            ai: ai_state,
            live: live_state,
            byoc: byoc_state,
            byoc_streams,
            transcode: transcode.clone(),
            prices: config.keys.prices.clone(),
        };
        // CORS outermost: a customer key's refusals carry it too.
        let public = http::keys::enforce(http::public_router(services, signer), keys);
        let public = http::answer_at_drain_end(public, &tasks, config.http_threads + 1);
        let public = http::cors::outermost(public, config.live.allow_cors);
        let cores = http
            .serve("public-api", public.clone(), limits, port("public-api"), &tasks)
            .map_err(setup(Part::Listener))?;
        marketplace(&config, &state, &tasks)?;
        let rtmp_addr = match rtmp {
            Some(listener) => Some(serve_rtmp(&config, &tasks, listener, rtmp_sink)?),
            None => None,
        };
        tracing::info!(%http_addr, %admin_addr, ?rtmp_addr, "gateway listening");
        Ok(Self {
            http_addr,
            admin_addr,
            rtmp_addr,
            state,
            transcode,
            public,
            admin: admin_routes,
            tasks,
            drain: config.ai.shutdown_drain_timeout,
            cores,
        })
    }

    /// The public API's routes, to call in-process (`tower::ServiceExt::oneshot`).
    pub fn public_router(&self) -> Router {
        self.public.clone()
    }

    /// The admin API's routes, to call in-process.
    pub fn admin_router(&self) -> Router {
        self.admin.clone()
    }

    /// Stops accepting and lets in-flight requests finish within the drain time
    /// (`--shutdown-drain-timeout`); running streams then end with a final error event. Bounded:
    /// returns soon after the drain time even if some request is still running.
    pub async fn shutdown(self) {
        // The routers go first: the usage ledger's writer ends when the last handle on the
        // key store (held by the routes) is gone, after the last request's row.
        let Self { tasks, drain, public, admin, cores, .. } = self;
        drop((public, admin));
        tasks.shutdown(drain).await;
        // Only now: what requests left running on the serving threads has ended or been cut.
        cores.stop(SERVING_THREADS_END).await;
        // Last, the usage ledger: every request is gone, and the row of each is queued.
        tasks.end_last(LEDGER_END).await;
    }
}

/// How long shutdown waits for the serving threads to end once the drain is over.
const SERVING_THREADS_END: std::time::Duration = std::time::Duration::from_secs(2);

/// How long shutdown gives the usage ledger's last write (retried) and the return of this
/// instance's leases, after everything else.
const LEDGER_END: std::time::Duration = std::time::Duration::from_secs(10);

/// Starts publishing the catalogue when `--marketplace-webhook-url` is set.
fn marketplace(config: &Config, state: &AppState, tasks: &Tasks) -> Result<(), StartError> {
    let Some(market) = config.marketplace.clone() else { return Ok(()) };
    let sources = (state.pool.clone(), state.metrics.recent().clone());
    let prices = config.keys.prices.clone();
    http::publish_catalogue(market, sources, prices, config.signer.clone(), tasks)
        .map_err(setup(Part::Marketplace))
}

/// The local payer (with a key) and the one payment interface over it or the remote signer
/// (whose tickets must carry the identity `client` presents), within the price caps in force
/// in `pool`; with a chain, the sender's funds are watched on `tasks`.
/// Names the node in every metric series as go-livepeer does: by the account that pays (the
/// local key's, else the identity a remote signer signs as), when there is one.
fn name_node(metrics: &Metrics, payer: Option<&payment::LocalPayer>, client: &OrchClient) {
    if let Some(sender) = payer.map(|p| p.sender()).or(client.identity_address()) {
        metrics.set_account(&sender.to_checksum(None));
    }
}

async fn payments(
    config: &Config,
    client: &OrchClient,
    tasks: &Tasks,
    chain: Option<&onchain::Chain>,
    pool: &Pool,
) -> Result<(Option<payment::LocalPayer>, payment::Payments), StartError> {
    let payer = config.signer.clone().map(|signer| {
        // Job-priced ticket params come from their own GetOrchestrator calls.
        payment::LocalPayer::new(signer, client.clone(), config.payment)
    });
    let remote = config.remote_signer.as_ref().map(|r| (&r.url, r.headers.clone()));
    let mut payments = payment::Payments::new(payer.clone(), remote, client)
        .map_err(setup(Part::Payments))?
        .with_price_caps(pool.requirements())
        .with_limits(config.payment);
    // A remote signer's tickets must be signed by the identity it gave (which `client`
    // presents to orchestrators).
    if let Some(address) = client.identity_address() {
        payments = payments.with_signer_identity(address);
    }
    if let (Some(chain), Some(cc), Some(payer)) = (chain, &config.chain, payments.local()) {
        payer.set_reserve_warning_hours(cc.reserve_warning_hours);
        chain.watch_funds(tasks, cc.refresh, payer.clone()).await.map_err(setup(Part::Chain))?;
    } else if payments.local().is_some() {
        // Off-chain with a key (a local test chain, simulators): allowed, but the sender's
        // funds and the block are unknown, so only the EV limits bound a ticket.
        tracing::warn!(
            "paying with a key but no --eth-url: ticket face values are not checked against \
             the deposit and tickets are not checked for expiry; only --max-ticket-ev and \
             --max-total-ev bound what a ticket is worth"
        );
    }
    Ok((payer, payments))
}

/// BYOC jobs (with their token refresh running on `tasks`) and BYOC streams.
fn byoc_services(
    config: &Config,
    state: &AppState,
    payments: payment::Payments,
    identity: Option<Identity>,
    tasks: &Tasks,
) -> Result<(byoc::ByocState, byoc::stream::ByocStreams), StartError> {
    let byoc_state = byoc_state(config, state, payments, identity)?;
    tasks.spawn("byoc-tokens", {
        let byoc = byoc_state.clone();
        move |cancel| byoc.run_tokens(cancel)
    });
    let streams =
        byoc::stream::ByocStreams::new(byoc_state.clone(), config.live.public_url.clone(), tasks)
            .map_err(setup(Part::Byoc))?;
    Ok((byoc_state, streams))
}

/// The RTMP listener, when RTMP ingest is on.
async fn bind_rtmp(config: &Config) -> Result<Option<TcpListener>, StartError> {
    match config.ingest.rtmp_addr {
        Some(addr) => Ok(Some(bind(addr).await?)),
        None => Ok(None),
    }
}

/// The bounds of every connection to the public and admin listeners.
fn conn_limits(config: &Config) -> http::server::ConnLimits {
    http::server::ConnLimits {
        header_timeout: config.header_timeout,
        idle_timeout: config.idle_timeout,
        max_connections: config.max_connections,
        max_per_address: config.max_connections_per_address,
        write_timeout: config.write_timeout,
    }
}

/// What the listeners of the port `name` share (its connection slots and per-address counts),
/// its refusals counted in `metrics`.
fn port(
    name: &'static str,
    limits: &http::server::ConnLimits,
    metrics: &metrics::Metrics,
) -> http::server::Port {
    http::server::Port::new(name, limits, metrics.connections_refused_counter(name))
}

/// Starts RTMP ingest on `listener` into transcoding; its address.
fn serve_rtmp(
    config: &Config,
    tasks: &Tasks,
    listener: TcpListener,
    sink: transcode::RtmpSink,
) -> Result<SocketAddr, StartError> {
    let addr = listener.local_addr().map_err(setup(Part::Listener))?;
    let rtmp = ingest::RtmpConfig {
        // Publishers beyond the stream cap are refused after their handshake; a few more
        // connections than streams leave room for those handshakes.
        max_connections: config.transcode.max_sessions + 16,
        max_pending_per_address: ingest::rtmp::MAX_PENDING_PER_ADDRESS,
        limits: config.ingest.cut,
        publish_deadline: ingest::rtmp::PUBLISH_DEADLINE,
        stall: ingest::rtmp::STALL,
    };
    let sink = Arc::new(sink);
    tasks.spawn("rtmp-ingest", move |cancel| ingest::serve(listener, rtmp, sink, cancel));
    Ok(addr)
}

/// The customer key store, opened (and migrated) when keys are on (`--auth keys`).
/// Its usage ledger's writer runs as a task, which ends after the last request's row; what
/// customers are charged goes to `recent` too, for the dashboard's revenue.
async fn key_store(
    config: &Config,
    tasks: &Tasks,
    recent: &recent::Recent,
) -> Result<Option<Arc<keys::KeyStore>>, StartError> {
    if config.keys.auth == keys::AuthMode::None {
        return Ok(None);
    }
    let (store, writer) = keys::KeyStore::open(&config.keys).await.map_err(setup(Part::Keys))?;
    store.report_to(recent.clone());
    tasks.spawn_last("usage-ledger", move |end| writer.run(end));
    Ok(Some(Arc::new(store)))
}

/// The identity the gateway shows orchestrators: its own key's, or the remote signer's
/// (fetched, and its signature checked, at start).
async fn identity(config: &Config) -> Result<Option<Identity>, StartError> {
    if let Some(signer) = &config.signer {
        let text = signer.address().to_checksum(None);
        let sig = signer.eth_sign(text.as_bytes()).map_err(setup(Part::Identity))?;
        tracing::info!(address = %text, "gateway identity");
        return Ok(Some(Identity { address: signer.address(), sig }));
    }
    let Some(config::RemoteSigner { url, headers }) = &config.remote_signer else {
        return Ok(None);
    };
    let id = payment::fetch_identity(url, headers.clone()).await.map_err(setup(Part::Identity))?;
    tracing::info!(address = %id.address.to_checksum(None), signer = %outbound::shown(url), "gateway identity from the remote signer");
    Ok(Some(id))
}

/// Where orchestrators come from: the static list, the webhook, or (with no orchestrators
/// configured) the remote signer's `/discover-orchestrators`.
fn discovery(
    config: &Config,
    chain: Option<&onchain::discovery::ChainDiscovery>,
) -> Result<Discovery, StartError> {
    let timeout = std::time::Duration::from_secs(3);
    let refresh = config.webhook_refresh_interval;
    if let Some(chain) = chain {
        return Ok(Discovery::Shared(chain.list.clone()));
    }
    match (&config.orchestrators, &config.remote_signer) {
        (OrchSource::Static(urls), Some(config::RemoteSigner { url, headers }))
            if urls.is_empty() =>
        {
            let endpoint = url.join("discover-orchestrators").map_err(setup(Part::Discovery))?;
            Discovery::webhook_with_headers(endpoint, refresh, timeout, headers.clone())
                .map_err(setup(Part::Discovery))
        }
        (OrchSource::Static(urls), _) => {
            if urls.is_empty() {
                tracing::warn!(
                    "no orchestrators configured (--orch-addr or --orch-webhook-url); jobs will get 503"
                );
            }
            Ok(Discovery::Static(urls.clone()))
        }
        (OrchSource::Webhook(url), _) => {
            Discovery::webhook(url.clone(), refresh, timeout).map_err(setup(Part::Discovery))
        }
    }
}

fn pool_config(config: &Config) -> PoolConfig {
    PoolConfig {
        refresh_interval: config.refresh_interval,
        probe_interval: config.probe_interval,
        eject: config.eject,
        weights: config.weights,
        requirements: config.requirements.clone(),
        max_concurrent_calls: config.discovery_concurrency,
    }
}

fn ai_state(
    config: &Config,
    http_addr: SocketAddr,
    state: &AppState,
    payments: payment::Payments,
    tasks: &Tasks,
) -> Result<ai::AiState, StartError> {
    let client = ai::call::AiClient::new(
        config.signer.clone(),
        config.connect_timeout,
        config.ai.fetch_timeout,
        config.ai.orch_http,
        config.http_threads + 1,
    )
    .map_err(setup(Part::AiClient))?;
    let store = ai::results::ResultStore::new(config.ai.result_store_bytes, config.ai.result_ttl);
    let store = Arc::new(store);
    // Async answers live in the result store, for as long as the files they name.
    let jobs = ai::async_jobs::AsyncJobs::new(
        config.ai.async_max_jobs,
        config.ai.result_ttl,
        store.clone(),
    );
    Ok(ai::AiState {
        pool: state.pool.clone(),
        client,
        store,
        limits: Arc::new(ai::validate::Limits::default()),
        config: Arc::new(config.ai.clone().with_listen_addr(http_addr)),
        metrics: state.metrics.clone(),
        payments,
        drained: tasks.drained(),
        jobs: Arc::new(jobs),
        tasks: tasks.clone(),
    })
}

/// The BYOC state. Jobs are signed with the gateway's key; a keyless off-chain gateway makes
/// one at start (orchestrators verify every job's signature, charging or not, and
/// go-livepeer's off-chain gateway signs with the account it always has); with a remote
/// signer, the signer signs them (see [`byoc::JobSigner::Remote`]).
fn byoc_state(
    config: &Config,
    state: &AppState,
    payments: payment::Payments,
    identity: Option<Identity>,
) -> Result<byoc::ByocState, StartError> {
    let signer = match (&config.signer, identity) {
        (Some(key), _) => byoc::JobSigner::Key(key.clone()),
        (None, Some(id)) => byoc::JobSigner::Remote(id),
        (None, None) => {
            let key = livepeer_pm::LocalSigner::from_bytes(&rand::random::<[u8; 32]>())
                .map_err(setup(Part::Byoc))?;
            tracing::info!(address = %key.address().to_checksum(None), "BYOC jobs signed with a key made at start (off-chain)");
            byoc::JobSigner::Key(Arc::new(key))
        }
    };
    let http = orchestrator::http::OrchHttp::new(config.connect_timeout, config.ai.orch_http)
        .map_err(setup(Part::Byoc))?;
    let (pool, metrics) = (state.pool.clone(), state.metrics.clone());
    byoc::ByocState::new(config.byoc.clone(), pool, http, payments, metrics, signer)
        .map_err(setup(Part::Byoc))
}

/// The remote-signer routes' state, when this gateway serves them (`--remote-signer`).
fn signer_state(
    config: &Config,
    state: &AppState,
) -> Result<Option<payment::signer::SignerState>, StartError> {
    let (Some(key), Some(signer)) = (&config.serve_signer, &config.signer) else { return Ok(None) };
    let signer = payment::signer::SignerState::new(signer.clone(), key.clone(), state.pool.clone())
        .map_err(setup(Part::Signer))?
        .with_sender_checks(state.payer.clone(), state.requirements.clone());
    tracing::info!("serving remote-signer routes (API key required)");
    Ok(Some(signer))
}

/// The orchestrator pool over its source; with on-chain discovery, the stored pool first and
/// the chain walked in the background on `tasks`. One client (and one connection per
/// orchestrator) serves discovery and payment sessions.
async fn start_pool(
    config: &Config,
    client: &OrchClient,
    metrics: &Metrics,
    tasks: &Tasks,
    chain: Option<&onchain::Chain>,
) -> Result<Pool, StartError> {
    let chain_pool = Box::pin(chain_discovery(config, chain)).await?;
    let source = discovery(config, chain_pool.as_ref())?;
    let pool =
        Pool::start(pool_config(config), client.clone(), source, metrics.clone(), tasks).await;
    if let (Some(d), Some(c), Some(cc)) = (chain_pool, chain, &config.chain) {
        d.spawn(tasks, c, cc.pool_refresh, pool.clone());
    }
    Ok(pool)
}

/// The chain connection (`--eth-url`), checked: a wrong chain id is a configuration error.
async fn connect_chain(config: &Config) -> Result<Option<onchain::Chain>, StartError> {
    let Some(cc) = &config.chain else { return Ok(None) };
    match onchain::connect(cc).await {
        Ok(chain) => Ok(Some(chain)),
        Err(e @ onchain::ConnectError::WrongChain { .. }) => {
            Err(StartError::WrongChain(e.to_string()))
        }
        Err(e) => Err(setup(Part::Chain)(e)),
    }
}

/// On-chain discovery, when the network is on-chain and no other source is configured
/// (GATEWAY.md §4.1): the stored pool, served at once.
async fn chain_discovery(
    config: &Config,
    chain: Option<&onchain::Chain>,
) -> Result<Option<onchain::discovery::ChainDiscovery>, StartError> {
    let no_other = matches!(&config.orchestrators, OrchSource::Static(urls) if urls.is_empty())
        && config.remote_signer.is_none();
    let (Some(chain), Some(cc)) = (chain, &config.chain) else { return Ok(None) };
    if !no_other || !cc.network.is_onchain() {
        return Ok(None);
    }
    let database_url = config
        .keys
        .database_url
        .as_ref()
        .map(|u| secrecy::ExposeSecret::expose_secret(u).to_owned());
    let url = database::url(database_url.as_deref(), &config.keys.data_dir)
        .map_err(setup(Part::Discovery))?;
    onchain::discovery::ChainDiscovery::open(chain, &url)
        .await
        .map(Some)
        .map_err(setup(Part::Discovery))
}

/// The public port, for `--http-threads` serving threads.
async fn bind_public(config: &Config) -> Result<http::cores::PublicListener, StartError> {
    let addr = config.http_addr;
    let bound = http::cores::PublicListener::bind(addr, config.http_threads).await;
    bound.map_err(|source| StartError::Bind { addr, source })
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr).await.map_err(|source| StartError::Bind { addr, source })
}

fn serve(
    tasks: &Tasks,
    name: &'static str,
    listener: TcpListener,
    router: Router,
    limits: http::server::ConnLimits,
    port: http::server::Port,
) {
    tasks.spawn(name, move |cancel| {
        http::server::serve_with(name, listener, router, limits, port, cancel)
    });
}

fn summary(c: &Config) -> serde_json::Value {
    let source = match &c.orchestrators {
        OrchSource::Static(urls) => {
            json!({ "static": urls.iter().map(|u| u.as_str()).collect::<Vec<_>>() })
        }
        // Its path or query may hold a credential, as an RPC provider's does.
        OrchSource::Webhook(url) => json!({ "webhook": outbound::shown(url) }),
    };
    json!({
        "http_addr": c.http_addr.to_string(),
        "cli_addr": c.cli_addr.to_string(),
        "network": c.chain.as_ref().map_or("offchain", |cc| cc.network.name()),
        "orchestrators": source,
        "discovery_timeout_ms": c.discovery_timeout.as_millis() as u64,
        "refresh_interval_ms": c.refresh_interval.as_millis() as u64,
        "eject_base_ms": c.eject.base.as_millis() as u64,
        "eject_max_ms": c.eject.max.as_millis() as u64,
        "weights": c.weights,
        "max_price_per_unit": c.requirements.max_price.map(|p| p.to_string()),
        "max_price_per_model": c.requirements.max_price_per_model.len(),
        "min_orchestrator_version": c.requirements.min_version,
        "blocklist": c.requirements.blocklist.len(),
        "orch_tls": c.orch_tls,
        "log_level": c.log_level,
        "signing_address": c.signer.as_ref().map(|s| s.address().to_checksum(None)),
    })
}
