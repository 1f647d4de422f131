//! A paid BYOC job whose HTTP/2 stream the orchestrator refused (`REFUSED_STREAM`: nothing
//! of it processed, RFC 9113 §8.7), over real sockets. The orchestrator is an h2c front
//! ([`h2_front`]) to a simulator: the gateway sends a BYOC job where its job token came from
//! (whatever the token's `service_addr` names), so the front carries everything, passing
//! gRPC and job token requests through, refusing the job streams it is told to and
//! forwarding the others to the simulator (which checks and books their payments).

use std::sync::Arc;
use std::time::Duration;

use livepeer_gateway::Gateway;
use livepeer_gateway::orchestrator::http::OrchHttpVersion;
use livepeer_pm::{LocalSigner, SignedRatio};
use livepeer_sim::{ByocKind, Sim, SimByoc, SimConfig};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::byoc_stream::job_header;
use crate::byoc_unanswered::{base, held};
use crate::h2_front::{FrontLog, h2_front};
use crate::support::*;

const KEY: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
const REVERSAL: &str = "text-reversal";
/// Wei per second: a first job pays the minute the orchestrator wants held (8 tickets).
const PRICE: i64 = 1_000_000_000;

fn sim_config(n: u8, price: i64, service_uri: Option<String>) -> SimConfig {
    let mut addr = [0u8; 20];
    addr[19] = n;
    SimConfig {
        name: format!("byoc-refused-{n}"),
        eth_address: Some(livepeer_pm::Address::from(addr)),
        byoc: vec![SimByoc::new(REVERSAL, ByocKind::Reverse).price(price, 1).capacity(8)],
        service_uri,
        ..SimConfig::default()
    }
}

/// An orchestrator charging `price` wei per second: an on-chain simulator, and the
/// [`h2_front`] to it (the address the gateway is given, and the simulator announces).
struct Fronted {
    sim: Sim,
    url: String,
    log: Arc<FrontLog>,
}

async fn fronted(n: u8, price: i64) -> Fronted {
    // The front forwards to the simulator and the simulator announces the front: the
    // simulator's port is picked first.
    let free = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim_addr = free.local_addr().unwrap();
    drop(free);
    let (front, log) = h2_front(format!("http://{sim_addr}")).await;
    let config = SimConfig { bind: sim_addr, ..sim_config(n, price, Some(front.clone())) };
    Fronted { sim: Sim::start(config).await.unwrap(), url: front, log }
}

/// A gateway paying the orchestrators at `urls` with [`KEY`] over h2c, `attempts` of them
/// per job, holding its job tokens for an hour.
async fn gateway(urls: &[&str], attempts: u32) -> Gateway {
    let mut c = config(urls);
    c.signer = Some(Arc::new(LocalSigner::from_hex(KEY).unwrap()));
    c.ai.orch_http = OrchHttpVersion::H2c;
    c.byoc.max_attempts = attempts;
    c.byoc.token_refresh = Duration::from_secs(3600);
    // Price alone decides: the cheaper orchestrator is tried first.
    c.weights.latency = 0.0;
    // Cooldowns longer than any test: an ejection seen is not a probe's result.
    c.eject.base = Duration::from_secs(600);
    c.eject.max = Duration::from_secs(600);
    let gw = start(c).await;
    for url in urls {
        eventually(Duration::from_secs(10), "the job token", || async {
            view(&gw, url).await.is_some()
        })
        .await;
    }
    gw
}

/// What `gw` counts on holding at the orchestrator at `url` (its balance view, exact), once
/// `gw` holds a job token of it; `None` before.
pub(crate) async fn view(gw: &Gateway, url: &str) -> Option<SignedRatio> {
    let (_, body) = admin_get(gw, "/byoc/capabilities").await;
    let caps = body["capabilities"].as_array().cloned().unwrap_or_default();
    let cap = caps.into_iter().find(|c| c["capability"] == REVERSAL)?;
    let orchs = cap["orchestrators"].as_array().cloned().unwrap_or_default();
    let orch = orchs.into_iter().find(|o| o["url"] == base(url))?;
    if orch["token"].is_null() {
        return None;
    }
    Some(orch["balance_view_wei"].as_str().map_or(SignedRatio::ZERO, |b| b.parse().unwrap()))
}

/// A reversal job of 10 s: its status, body and the service address that answered it.
async fn job(gw: &Gateway) -> (u16, Value, Option<String>) {
    let resp = reqwest::Client::new()
        .post(format!("http://{}/process/request/reverse", gw.http_addr))
        .header("Livepeer", job_header(REVERSAL, 10, "{}"))
        .json(&json!({"text": "hello"}))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let by = resp.headers().get("x-orchestrator-url").map(|v| v.to_str().unwrap().to_owned());
    (status, resp.json().await.unwrap_or(Value::Null), by)
}

/// The simulator refused no payment and processed `payments`; the gateway's balance view of
/// it is what it holds, less at most the second the gateway may have rounded up.
async fn books_agree(gw: &Gateway, orch: &Fronted, payments: u64, when: &str) {
    let sim = &orch.sim;
    let stats = sim.payments();
    assert!(stats.rejections.is_empty(), "{when}: refused: {:?}", stats.rejections);
    assert_eq!(stats.payments, payments, "{when}: payments the orchestrator processed");
    let (booked, held) = (view(gw, &orch.url).await.unwrap(), held(sim, REVERSAL));
    let second = SignedRatio::from(livepeer_pm::Ratio::from_u64(PRICE as u64));
    let gap = held.checked_sub(&booked).unwrap();
    assert!(gap >= SignedRatio::ZERO && gap <= second, "{when}: booked {booked}, held {held}");
}

/// Not penalised, neither as a whole nor for the capability.
async fn unpenalised(gw: &Gateway, url: &str) {
    let orch = orch_state(gw, url).await;
    assert_eq!(orch["state"], "healthy", "{orch}");
    assert_eq!(orch["consecutive_failures"], 0, "{orch}");
    let job = job_state(gw, url, &format!("byoc/{REVERSAL}")).await;
    assert_eq!(job["state"], "healthy", "{job}");
    assert_eq!(job["consecutive_failures"], 0, "{job}");
}

/// The job's stream is refused once: the very same request, `Livepeer` and
/// `Livepeer-Payment` bytes and all, goes again on a new stream and is answered; the
/// orchestrator processed the one payment it received, and the books agree. (Without the
/// resend the refusal is the job's end: a 503.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_byoc_stream_is_sent_again_with_the_same_payment() {
    let orch = fronted(1, PRICE).await;
    let log = &orch.log;
    let gw = gateway(&[&orch.url], 1).await;
    log.refuse(1);
    let (status, body, by) = job(&gw).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"text": "olleh"}));
    assert_eq!(by.as_deref(), Some(orch.url.as_str()));
    let (streams, jobs) = (log.streams(), log.jobs());
    assert_eq!(streams.len(), 2, "refused once, then accepted");
    assert!(streams[0].1 && !streams[1].1, "{streams:?}");
    assert!(!streams[0].0.is_empty(), "the first job pays with tickets");
    assert_eq!(streams[0].0, streams[1].0, "the same payment bytes, sent again");
    assert!(!jobs[0].is_empty() && jobs[0] == jobs[1], "the same signed job, sent again");
    assert_eq!(orch.sim.byoc_stats().requests, 1, "only the accepted stream reached it");
    assert_eq!(orch.sim.byoc_stats().jobs.get(REVERSAL), Some(&1));
    books_agree(&gw, &orch, 1, "after the resend").await;
    unpenalised(&gw, &orch.url).await;
    // The next job pays on that view: nothing was counted twice, nothing refused.
    let (status, body, _) = job(&gw).await;
    assert_eq!(status, 200, "{body}");
    books_agree(&gw, &orch, 2, "the job after").await;
    gw.shutdown().await;
}

/// An orchestrator refusing every stream: after two resends the job goes to the next
/// orchestrator, or is the client's 503 (`orchestrators_busy`) when there is none; the
/// refusing one is not penalised, and the tickets it was sent count for nothing (the balance
/// view is unchanged).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_byoc_stream_refused_each_time_moves_on_unpenalised_and_unpaid() {
    let refuser = fronted(2, PRICE).await;
    let log = &refuser.log;
    // Dearer, so tried second.
    let other = Sim::start(sim_config(3, PRICE * 8, None)).await.unwrap();
    let gw = gateway(&[&refuser.url, other.url()], 2).await;
    // Jobs until one was delivered through the front, so that the refuser holds credit.
    for _ in 0..30 {
        let (status, body, _) = job(&gw).await;
        assert_eq!(status, 200, "{body}");
        if !log.streams().is_empty() {
            break;
        }
    }
    assert_eq!(log.streams().len(), 1, "delivered there once");
    books_agree(&gw, &refuser, 1, "delivered").await;
    let before = view(&gw, &refuser.url).await.unwrap();
    log.refuse(u32::MAX);
    // Jobs until one went to the refuser: `other` answers every one.
    for _ in 0..30 {
        let (status, body, by) = job(&gw).await;
        assert_eq!((status, by.as_deref()), (200, Some(base(other.url()).as_str())));
        assert_eq!(body, json!({"text": "olleh"}));
        if log.streams().len() > 1 {
            break;
        }
    }
    let (streams, jobs) = (log.streams(), log.jobs());
    assert_eq!(streams.len(), 4, "one delivered, then refused three times");
    assert!(streams[1..].iter().all(|(p, refused)| *refused && *p == streams[1].0));
    assert!(!streams[1].0.is_empty(), "the refused job paid with tickets");
    let (gaps, pause) = (log.gaps(), livepeer_gateway::orchestrator::http::RESEND_BACKOFF);
    assert!(gaps[2] >= pause, "the second resend waited: {gaps:?}");
    assert!(jobs[1..].iter().all(|j| *j == jobs[1]), "the same signed job each time");
    assert_eq!(refuser.sim.byoc_stats().requests, 1, "no refused stream reached it");
    books_agree(&gw, &refuser, 1, "refused").await;
    assert_eq!(view(&gw, &refuser.url).await.unwrap(), before, "booked as refused");
    unpenalised(&gw, &refuser.url).await;
    gw.shutdown().await;

    // With no other orchestrator, the client is told to come back (503), not blamed.
    // (A new gateway's view starts at the token's balance, what the simulator holds.)
    let gw = gateway(&[&refuser.url], 2).await;
    let (status, body, _) = job(&gw).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["type"], "orchestrators_busy", "{body}");
    let streams = log.streams();
    assert_eq!(streams.len(), 7, "refused three times more");
    assert!(streams[4..].iter().all(|(p, refused)| *refused && *p == streams[4].0));
    assert!(!streams[4].0.is_empty(), "the refused job paid with tickets");
    // Booked as refused: counted, they would make the view exceed what it holds.
    books_agree(&gw, &refuser, 1, "refused, alone").await;
    unpenalised(&gw, &refuser.url).await;
    gw.shutdown().await;
}

/// A BYOC stream start refused each time it is sent is the orchestrator shedding load, not
/// failing: the start moves on to the next orchestrator, and the refuser is not penalised
/// (before, it was marked failed for the capability, as a broken orchestrator is).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_start_refused_each_time_moves_on_unpenalised() {
    let refuser = fronted(2, PRICE).await;
    // Dearer, so tried second.
    let other = Sim::start(sim_config(3, PRICE * 8, None)).await.unwrap();
    let gw = gateway(&[&refuser.url, other.url()], 2).await;
    refuser.log.refuse(u32::MAX);
    let resp = reqwest::Client::new()
        .post(format!("http://{}/process/stream/start", gw.http_addr))
        .header("Livepeer", job_header(REVERSAL, 30, "{}"))
        .json(&json!({"stream_name": "shed", "stream_id": "1", "params": {}}))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 200, "{body}");
    assert_eq!(other.byoc_stats().stream_starts, 1, "started on the other orchestrator");
    let streams = refuser.log.streams();
    assert_eq!(streams.len(), 3, "sent three times to the refuser");
    assert!(streams.iter().all(|(_, refused)| *refused), "and refused each time");
    assert_eq!(refuser.sim.byoc_stats().stream_start_calls, 0, "none reached it");
    unpenalised(&gw, &refuser.url).await;
    gw.shutdown().await;
}
