//! BYOC paid through a remote signer, over real sockets: a keyless gateway
//! (`--remote-signer-url`) has a second gateway, holding the on-chain key, sign its jobs
//! (`/sign-byoc-job`) and make their tickets (`/generate-live-payment`), and sends both to an
//! on-chain, priced simulator that verifies every ticket.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use livepeer_gateway::Gateway;
use livepeer_pm::{LocalSigner, Ratio};
use livepeer_sim::{ByocKind, Sim, SimByoc, SimConfig};
use serde_json::{Value, json};

use crate::byoc_stream::job_header as header;
use crate::support::*;

const KEY: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
const API_KEY: &str = "byoc-remote-api-key-0123456789";
const REVERSAL: &str = "text-reversal";
const ECHO: &str = "live-echo";
/// The simulator's ticket EV, wei (its default face value and win probability).
const TICKET_EV: u64 = 8_000_000_000;

/// An on-chain simulator charging `price` wei per second for both capabilities.
pub(crate) async fn priced_sim(price: i64) -> Sim {
    let mut addr = [0u8; 20];
    addr[19] = 9;
    let byoc = vec![
        SimByoc::new(REVERSAL, ByocKind::Reverse).price(price, 1).capacity(64),
        SimByoc::new(ECHO, ByocKind::Echo).price(price, 1).capacity(4),
    ];
    let eth_address = Some(livepeer_pm::Address::from(addr));
    Sim::start(SimConfig { name: "paid".into(), eth_address, byoc, ..SimConfig::default() })
        .await
        .unwrap()
}

/// The signer (the key, serving the signer routes) and the keyless gateway using it, both
/// pointed at `sim`; streams are paid every `interval`.
async fn gateways(sim: &Sim, interval: Duration) -> (Gateway, Gateway) {
    keyless(sim, |c| c.byoc.payment_interval = interval).await
}

/// The signer (the key, serving the signer routes) and the keyless gateway using it, both
/// pointed at `sim`, the second's configuration changed by `tweak`.
pub(crate) async fn keyless(
    sim: &Sim,
    tweak: impl FnOnce(&mut livepeer_gateway::config::Config),
) -> (Gateway, Gateway) {
    let mut c = config(&[sim.url()]);
    c.signer = Some(Arc::new(LocalSigner::from_hex(KEY).unwrap()));
    c.serve_signer = Some(API_KEY.to_owned().into());
    let signer = start(c).await;
    let mut c = config(&[sim.url()]);
    let url = format!("http://{}/", signer.http_addr);
    let headers = format!("Authorization:Bearer {API_KEY}");
    c.remote_signer = Some(livepeer_gateway::config::RemoteSigner::parse(&url, &headers).unwrap());
    tweak(&mut c);
    (signer, start(c).await)
}

/// Only the signer's key paid, and the simulator refused nothing.
pub(crate) fn paid_by_the_signer_only(sim: &Sim) {
    let payments = sim.payments();
    assert!(payments.rejections.is_empty(), "{:?}", payments.rejections);
    let signer = LocalSigner::from_hex(KEY).unwrap().address();
    let senders: Vec<_> = payments.ev_received.keys().copied().collect();
    assert_eq!(senders, vec![signer], "every ticket is the signer's");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_hundred_jobs_paid_through_the_signer_are_covered_within_one_ticket() {
    // 33,333,333 wei per second; each job is paid for its timeout (120 s: 4e9 wei, half a
    // ticket's EV of 8e9) while the gateway's view holds under two minutes of the price: one
    // ticket every 240 jobs or so. The signer's state bills each payment the whole 4e9 and
    // keeps the rest of the ticket as credit; the gateway asks for the seconds that cover the
    // 4e9 beyond that credit, so that each payment still sends one ticket (asked for 120 s
    // only, the third would have been covered by the credit: a 482).
    let price = 33_333_333;
    let a = priced_sim(price).await;
    let (_signer, gw) = gateways(&a, Duration::from_secs(50)).await;
    let http = reqwest::Client::new();
    let header = header(REVERSAL, 120, "{}");
    let url = format!("http://{}/process/request/reverse", gw.http_addr);
    let jobs = futures_util::stream::iter(0..600)
        .map(|_| {
            let (http, url, header) = (&http, &url, &header);
            async move {
                let resp = http
                    .post(url)
                    .header("Livepeer", header)
                    .json(&json!({"text": "hello"}))
                    .send()
                    .await
                    .unwrap();
                (resp.status(), resp.text().await.unwrap())
            }
        })
        .buffer_unordered(16);
    let results: Vec<_> = jobs.collect().await;
    for (status, text) in &results {
        assert_eq!(*status, 200, "{text}");
        assert!(text.contains("olleh"), "{text}");
    }
    let stats = a.byoc_stats();
    assert_eq!(stats.jobs.get(REVERSAL), Some(&600));
    paid_by_the_signer_only(&a);
    assert!(a.payments().tickets_credited > 0, "paid with tickets");
    assert!(stats.fees > Ratio::ZERO, "the jobs were charged");
    assert!(stats.ev_credited >= stats.fees, "EV {} covers fees {}", stats.ev_credited, stats.fees);
    let excess = stats.ev_credited.checked_sub(&stats.fees).unwrap();
    let bound =
        Ratio::from_u64(TICKET_EV).checked_add(&Ratio::from_u64(price as u64 * 120)).unwrap();
    assert!(excess < bound, "excess {excess} ≥ one ticket EV plus one job's fee");
    assert!(a.payments().tickets_credited >= 3, "the third payment went too");
    eprintln!(
        "600 jobs: {} tickets credited, EV {} wei, fees {} wei, excess {} wei",
        a.payments().tickets_credited,
        stats.ev_credited.floor(),
        stats.fees.floor(),
        excess.floor()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_is_started_and_paid_through_the_signer() {
    // 1e9 wei per second against tickets of 8e9: the start pays its 60 s (8 tickets), under
    // the two minutes below which the gateway pays, so the first interval pays 70 s more (9
    // tickets), continuing the signer's state of (orchestrator, capability); then two minutes
    // are held, and nothing more is due before the orchestrator's 23-second debit.
    let a = priced_sim(1_000_000_000).await;
    let (_signer, gw) = gateways(&a, Duration::from_millis(300)).await;
    let owner = "Bearer byoc-remote-stream";
    let flags = r#"{"enable_video_ingress":true,"enable_video_egress":true}"#;
    let resp = reqwest::Client::new()
        .post(format!("http://{}/process/stream/start", gw.http_addr))
        .header("Livepeer", header(ECHO, 60, flags))
        .header("Authorization", owner)
        .json(&json!({"stream_name": "paid", "stream_id": "1", "params": "{}"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let started: Value = resp.json().await.unwrap();
    assert_eq!(a.byoc_stats().stream_starts, 1);
    eventually(Duration::from_secs(10), "a stream payment", || async {
        a.byoc_stats().stream_payments >= 1
    })
    .await;
    paid_by_the_signer_only(&a);
    let status: Value = reqwest::Client::new()
        .get(started["status_url"].as_str().unwrap())
        .header("Authorization", owner)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["payments"]["sent"], 1, "{status}");
    assert_eq!(status["payments"]["tickets"], 9, "{status}");
    assert_eq!(a.payments().tickets_credited, 8 + 9, "the start's and the interval's");
    let stats = a.byoc_stats();
    assert!(stats.ev_credited >= stats.fees, "EV {} covers fees {}", stats.ev_credited, stats.fees);
}

/// A job of `timeout` seconds to `gw`, answered 200 with the text reversed.
pub(crate) async fn reverse_job(gw: &Gateway, timeout: u64) {
    let resp = reqwest::Client::new()
        .post(format!("http://{}/process/request/reverse", gw.http_addr))
        .header("Livepeer", header(REVERSAL, timeout, "{}"))
        .json(&json!({"text": "hello"}))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("olleh"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_first_job_pays_the_minute_the_orchestrator_wants_held_whoever_signs() {
    // 1e9 wei per second against tickets of 8e9. A 5 s job is worth 5e9 (one ticket), but
    // the orchestrator takes a job only holding a minute of the price after its payment
    // (60e9): what is short of it is due, 8 tickets (64e9); the signer is asked for 60 s.
    // The second job finds 64e9 less the first's seconds, under two minutes, and pays its
    // timeout: one ticket. The local key and the remote signer pay the same.
    let price = 1_000_000_000;
    let local = priced_sim(price).await;
    let mut c = config(&[local.url()]);
    c.signer = Some(Arc::new(LocalSigner::from_hex(KEY).unwrap()));
    let keyed = start(c).await;
    let remote = priced_sim(price).await;
    let (_signer, keyless) = gateways(&remote, Duration::from_secs(50)).await;
    for (sim, gw) in [(&local, &keyed), (&remote, &keyless)] {
        reverse_job(gw, 5).await;
        paid_by_the_signer_only(sim);
        assert_eq!(sim.payments().tickets_credited, 8, "{}", sim.url());
        let first = sim.byoc_stats().ev_credited;
        reverse_job(gw, 5).await;
        paid_by_the_signer_only(sim);
        assert_eq!(sim.payments().tickets_credited, 9, "{}", sim.url());
        let stats = sim.byoc_stats();
        assert_eq!(stats.jobs.get(REVERSAL), Some(&2));
        // The simulator's EV is 8e9 within its win probability's rounding: one ticket is what
        // the second job sent, and the first sent exactly eight, the fewest holding a minute.
        let one = stats.ev_credited.checked_sub(&first).unwrap();
        assert_eq!(first, one.checked_mul_u64(8).unwrap(), "{}", sim.url());
        let minute = Ratio::from_u64(60 * price as u64);
        assert!(first >= minute && one.checked_mul_u64(7).unwrap() < minute, "{first}");
    }
}

/// The signer at `real`, except that `/generate-live-payment` always answers 480 (refresh the
/// session), as go-livepeer's signer answers a payment of expired ticket params; `asked`
/// counts those calls.
async fn refreshing_signer(
    real: std::net::SocketAddr,
    asked: Arc<std::sync::atomic::AtomicU64>,
) -> std::net::SocketAddr {
    let hook: SignerHook = Arc::new(move |path: &str, body: Vec<u8>| {
        if path != "/generate-live-payment" {
            return Ok(body);
        }
        asked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Err((axum::http::StatusCode::from_u16(480).unwrap(), b"{}"))
    });
    signer_proxy(real, hook).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signer_asking_for_a_refresh_again_gets_a_fresh_job_token_next_time() {
    // Fresh OrchestratorInfo renews its auth token, not the job token's ticket params that a
    // BYOC payment is made of: when the signer asks for a refresh again, those expired. The
    // orchestrator is left unpaid (unpenalised) and its token forgotten, so the next job
    // fetches one, as the local key does with params it sees expired.
    let a = priced_sim(1_000_000_000).await;
    let (signer, _) = gateways(&a, Duration::from_secs(50)).await;
    let asked = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let proxy = refreshing_signer(signer.http_addr, asked.clone()).await;
    let mut c = config(&[a.url()]);
    let url = format!("http://{proxy}/");
    let headers = format!("Authorization:Bearer {API_KEY}");
    c.remote_signer = Some(livepeer_gateway::config::RemoteSigner::parse(&url, &headers).unwrap());
    c.byoc.token_refresh = Duration::from_secs(3600);
    let gw = start(c).await;
    eventually(Duration::from_secs(10), "the job tokens", || async { a.byoc_stats().tokens >= 2 })
        .await;
    let http = reqwest::Client::new();
    for round in 1..=2u64 {
        let tokens = a.byoc_stats().tokens;
        let resp = http
            .post(format!("http://{}/process/request/reverse", gw.http_addr))
            .header("Livepeer", header(REVERSAL, 5, "{}"))
            .json(&json!({"text": "hello"}))
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let body: Value = resp.json().await.unwrap();
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"]["type"], "payment_refused", "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("a fresh token is needed"), "{message}");
        // Asked once, and once more after fresh OrchestratorInfo.
        assert_eq!(asked.load(std::sync::atomic::Ordering::Relaxed), 2 * round);
        // The first job went on the token held; the second fetched a fresh one. (At least:
        // the signer gateway's own token fetches may land at any time.)
        let fetched = a.byoc_stats().tokens - tokens;
        assert!(fetched >= round - 1, "round {round}: {fetched} tokens fetched");
    }
    let url = a.url().trim_end_matches('/').to_owned();
    let state = job_state(&gw, &url, "byoc/text-reversal").await;
    assert_eq!(state["consecutive_failures"], 0, "not the orchestrator's doing: {state}");
}
