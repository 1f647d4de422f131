//! The BYOC workload of `livepeer-gateway bench`: one small JSON job to the simulator's
//! `text-reversal` capability (a [`ByocKind::Reverse`] worker), sent three ways.
//!
//! - Direct: `POST /process/request/reverse` to the simulator with what the gateway sends an
//!   off-chain orchestrator that charges nothing: the job request signed (`sender`, `sig`; the
//!   gateway signs with a key of its own even off-chain) and no `Livepeer-Payment`, since a
//!   free capability is not paid. The header is signed once, as a client calling the
//!   orchestrator itself could; the gateway signs every job afresh, which it adds.
//! - nginx: the same request through `proxy_pass`.
//! - Gateway: `POST /process/request/reverse` with the client's unsigned `Livepeer` header.
//!
//! Before measuring, [`check_same_job`] sends one job each way and compares what the
//! simulator recorded of them, so that the direct baseline cannot drift from what the gateway
//! sends.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use livepeer_gateway::byoc::request::{JOB_HEADER, JobRequest};
use livepeer_pm::LocalSigner;
use livepeer_sim::{ByocJobRecord, ByocKind, Sim, SimByoc};
use serde_json::{Value, json};

use super::bench::{Target, Workload, request};
use super::nginx::Nginx;

/// The capability's name, as a worker would register it.
const CAPABILITY: &str = "text-reversal";
/// The worker path after `/process/request/`.
const WORKER_PATH: &str = "reverse";
/// The `timeout_seconds` of each job: ample for a worker that answers at once.
const TIMEOUT_SECONDS: u64 = 30;

/// The simulator's BYOC capability: free, and with capacity for any concurrency the bench
/// uses, so that neither path is refused for capacity.
pub(super) fn capability() -> SimByoc {
    SimByoc::new(CAPABILITY, ByocKind::Reverse).capacity(100_000)
}

/// The body of each job: a small JSON document the worker reverses.
fn body() -> Value {
    json!({"text": "benchmark this please"})
}

/// The client's `Livepeer` header: base64 JSON of the unsigned job request (no `id`, as most
/// clients send it; the gateway names the job with its request id).
fn client_header() -> String {
    let job = json!({
        "request": "{}",
        "parameters": "{}",
        "capability": CAPABILITY,
        "timeout_seconds": TIMEOUT_SECONDS,
    });
    STANDARD.encode(job.to_string())
}

/// The header the gateway would send the simulator for the client's: the same job, checked
/// by the gateway's own parser, with an id shaped like the gateway's request ids, signed by a
/// throwaway key.
fn signed_header() -> anyhow::Result<String> {
    let client = client_header();
    let id = format!("{:016x}", rand::random::<u64>());
    let job = JobRequest::parse(Some(client.as_bytes()), &id, TIMEOUT_SECONDS)
        .map_err(|e| anyhow::anyhow!("the bench's job header: {}", e.message()))?;
    let key = LocalSigner::from_bytes(&rand::random::<[u8; 32]>())?;
    job.signed_header(&key).map_err(|e| anyhow::anyhow!("signing the bench's job: {e}"))
}

/// The BYOC workload against `sim`, through `nginx` when there is one and the gateway at `gw`.
pub(super) fn workload(
    http: &reqwest::Client,
    sim: &Sim,
    gw: std::net::SocketAddr,
    nginx: Option<&Nginx>,
) -> anyhow::Result<Workload> {
    let path = format!("process/request/{WORKER_PATH}");
    let direct = Target {
        http: http.clone(),
        url: format!("{}/{path}", sim.url()),
        headers: vec![(JOB_HEADER, signed_header()?)],
        rewrite: None,
    };
    let proxied = nginx.map(|n| Target { url: format!("{}/{path}", n.url()), ..direct.clone() });
    let gateway = Target {
        http: http.clone(),
        url: format!("http://{gw}/{path}"),
        headers: vec![(JOB_HEADER, client_header())],
        rewrite: None,
    };
    Ok(Workload {
        short: "byoc",
        name: "byoc (json)",
        body: body(),
        direct,
        nginx: proxied,
        gateway,
    })
}

/// Sends one job through the gateway and one directly, and fails unless the simulator saw the
/// same job (capability, request, parameters, timeout, worker path, content type, and no
/// payment) both times; the id and the signing key differ by design.
pub(super) async fn check_same_job(w: &Workload, sim: &Sim) -> anyhow::Result<()> {
    let seen = async |t: &Target| -> anyhow::Result<ByocJobRecord> {
        request(t, &w.body).await?;
        let job = sim.byoc_stats().last_job;
        let mut job = job.ok_or_else(|| anyhow::anyhow!("the simulator recorded no job"))?;
        job.id.clear();
        job.sender = Default::default();
        Ok(job)
    };
    let via_gateway = seen(&w.gateway).await?;
    let direct = seen(&w.direct).await?;
    anyhow::ensure!(
        via_gateway == direct && !direct.paid,
        "the direct BYOC job differs from the gateway's: {direct:?} vs {via_gateway:?}"
    );
    Ok(())
}
