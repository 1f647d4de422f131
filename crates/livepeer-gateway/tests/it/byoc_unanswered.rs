//! A paid BYOC job whose orchestrator leaves it unanswered, over real sockets: go-livepeer's
//! orchestrator closes the connection on a payment it cannot take (a nil balance dereferenced
//! in `confirmPayment`), and so does the simulator. Here the gateway's job token of one
//! simulator has gone stale (its ticket params expired), so that simulator refuses the
//! tickets and answers nothing.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use livepeer_gateway::Gateway;
use livepeer_pm::{LocalSigner, Ratio, SignedRatio};
use livepeer_sim::{ByocFault, ByocKind, PaymentRejection, Sim, SimByoc, SimConfig};
use serde_json::{Value, json};

use crate::byoc_remote::{keyless, paid_by_the_signer_only, priced_sim, reverse_job};
use crate::support::*;

const KEY: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
pub(crate) const REVERSAL: &str = "text-reversal";
const ECHO: &str = "echo";

/// An on-chain simulator charging 1e9 wei per second for both capabilities.
async fn priced(name: &str, byte: u8) -> Sim {
    let mut addr = [0u8; 20];
    addr[19] = byte;
    let byoc = vec![
        SimByoc::new(REVERSAL, ByocKind::Reverse).price(1_000_000_000, 1).capacity(8),
        SimByoc::new(ECHO, ByocKind::Echo).price(1_000_000_000, 1).capacity(8),
    ];
    let eth_address = Some(livepeer_pm::Address::from(addr));
    let config = SimConfig { name: name.into(), eth_address, byoc, ..SimConfig::default() };
    Sim::start(config).await.unwrap()
}

/// A gateway paying `a` and `b` with its own key, whose job tokens of both are held (fetched
/// at start, not again for an hour) when `a`'s ticket params expire.
async fn stale_at_a(a: &Sim, b: &Sim) -> Gateway {
    let mut c = config(&[a.url(), b.url()]);
    c.signer = Some(Arc::new(LocalSigner::from_hex(KEY).unwrap()));
    c.byoc.token_refresh = Duration::from_secs(3600);
    let gw = start(c).await;
    eventually(Duration::from_secs(10), "both job tokens", || async {
        a.byoc_stats().tokens >= 2 && b.byoc_stats().tokens >= 2
    })
    .await;
    a.advance_blocks(100);
    gw
}

fn job_header(capability: &str) -> String {
    let job = json!({"request": "{}", "parameters": "{}", "capability": capability, "timeout_seconds": 10});
    STANDARD.encode(job.to_string())
}

pub(crate) fn base(url: &str) -> String {
    url.trim_end_matches('/').to_owned()
}

/// `a`'s state at `capability`, and its state as a whole: penalised for that capability only.
async fn blamed_for(gw: &Gateway, a: &Sim, capability: &str) {
    let job = job_state(gw, &base(a.url()), &format!("byoc/{capability}")).await;
    assert!(job["consecutive_failures"].as_u64().unwrap() >= 1, "{job}");
    let orch = orch_state(gw, &base(a.url())).await;
    assert_eq!(orch["consecutive_failures"], 0, "not penalised as a whole: {orch}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_paid_job_goes_to_the_next_orchestrator_and_blames_the_first_for_it_alone() {
    let (a, b) = (priced("a", 1).await, priced("b", 2).await);
    let gw = stale_at_a(&a, &b).await;
    let http = reqwest::Client::new();
    // Jobs go to either until one went to `a`: every client gets `b`'s answer.
    for _ in 0..30 {
        let resp = http
            .post(format!("http://{}/process/request/reverse", gw.http_addr))
            .header("Livepeer", job_header(REVERSAL))
            .json(&json!({"text": "hello"}))
            .send()
            .await
            .unwrap();
        let served =
            resp.headers().get("x-orchestrator-url").map(|v| v.to_str().unwrap().to_owned());
        let (status, text) = (resp.status(), resp.text().await.unwrap());
        assert_eq!(status, 200, "{text}");
        assert_eq!(text, r#"{"text":"olleh"}"#);
        assert_eq!(served.as_deref(), Some(base(b.service_url()).as_str()));
        if a.byoc_stats().requests > 0 {
            break;
        }
    }
    assert_eq!(a.byoc_stats().requests, 1, "`a` was tried once, then left alone");
    assert!(a.payments().rejected(PaymentRejection::Expired) >= 1, "{:?}", a.payments());
    // Nothing ran there, nothing was charged or credited there.
    let stats = a.byoc_stats();
    assert_eq!(
        (stats.jobs.get(REVERSAL), stats.fees, stats.ev_credited),
        (None, Ratio::ZERO, Ratio::ZERO)
    );
    blamed_for(&gw, &a, REVERSAL).await;
    // Its other capability is used meanwhile (its token there is fresh after a refresh).
    let echo = job_state(&gw, &base(a.url()), &format!("byoc/{ECHO}")).await;
    assert!(echo.is_null() || echo["consecutive_failures"] == 0, "{echo}");
}

/// A body longer than the gateway holds for failover (1 MiB) goes to the next orchestrator
/// only while none of it past the held bytes went out; go-livepeer's orchestrator closes the
/// connection after the headers, before it reads the body, so usually none did. Either way
/// the client gets a clean answer: the whole body echoed by `b`, or a 503 saying why it could
/// not be sent again, never an error of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_body_left_unanswered_is_sent_again_or_failed_cleanly() {
    let (a, b) = (priced("a", 1).await, priced("b", 2).await);
    let gw = stale_at_a(&a, &b).await;
    let http = reqwest::Client::new();
    let body: Vec<u8> = (0..(3u32 << 20)).map(|i| (i % 251) as u8).collect();
    for _ in 0..30 {
        let resp = http
            .post(format!("http://{}/process/request/echo", gw.http_addr))
            .header("Livepeer", job_header(ECHO))
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let bytes = resp.bytes().await.unwrap();
        if status == 200 {
            assert!(bytes == body, "the whole body, echoed");
        } else {
            assert_eq!(status, 503, "{}", String::from_utf8_lossy(&bytes));
            let e: Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(e["error"]["type"], "orchestrators_unavailable", "{e}");
            let message = e["error"]["message"].as_str().unwrap();
            assert!(message.contains("cannot be sent again"), "{message}");
        }
        if a.byoc_stats().requests > 0 {
            eprintln!("the job `a` was tried for: {status}");
            break;
        }
    }
    assert_eq!(a.byoc_stats().requests, 1);
    assert_eq!(a.byoc_stats().jobs.get(ECHO), None);
    blamed_for(&gw, &a, ECHO).await;
}

/// What `gw` counts on holding at `sim` for `capability` (its balance view, exact), once
/// `gw` holds a job token of `sim`'s; `None` before.
pub(crate) async fn view(gw: &Gateway, sim: &Sim, capability: &str) -> Option<SignedRatio> {
    let (_, body) = admin_get(gw, "/byoc/capabilities").await;
    let caps = body["capabilities"].as_array().cloned().unwrap_or_default();
    let cap = caps.into_iter().find(|c| c["capability"] == capability)?;
    let orchs = cap["orchestrators"].as_array().cloned().unwrap_or_default();
    let orch = orchs.into_iter().find(|o| o["url"] == base(sim.url()))?;
    if orch["token"].is_null() {
        return None;
    }
    Some(orch["balance_view_wei"].as_str().map_or(SignedRatio::ZERO, |b| b.parse().unwrap()))
}

/// What `sim` holds for its senders at `capability`: EV credited less fees debited.
pub(crate) fn held(sim: &Sim, capability: &str) -> SignedRatio {
    let balances = sim.payments().balances;
    let mut held = SignedRatio::ZERO;
    for ((_, manifest), b) in balances {
        if manifest == capability {
            held = held.checked_add(&b).unwrap();
        }
    }
    held
}

/// A gateway paying `sim` with its own key and one paying it through a remote signer (with
/// the signer gateway), both holding their job tokens for an hour.
pub(crate) async fn both_ways(keyed_sim: &Sim, remote_sim: &Sim) -> (Gateway, Gateway, Gateway) {
    let hour = Duration::from_secs(3600);
    let mut c = config(&[keyed_sim.url()]);
    c.signer = Some(Arc::new(LocalSigner::from_hex(KEY).unwrap()));
    c.byoc.token_refresh = hour;
    let keyed = start(c).await;
    let (signer, keyless) = keyless(remote_sim, |c| c.byoc.token_refresh = hour).await;
    (keyed, keyless, signer)
}

/// `gw` holds a job token of `sim`'s for `REVERSAL` (its refresh round is over).
pub(crate) async fn token_held(gw: &Gateway, sim: &Sim) {
    eventually(Duration::from_secs(10), "the job token", || async {
        view(gw, sim, REVERSAL).await.is_some()
    })
    .await;
}

/// `sim`'s cooldown for `REVERSAL` at `gw`, from a failed attempt, is over.
pub(crate) async fn cooled_down(gw: &Gateway, sim: &Sim) {
    eventually(Duration::from_secs(10), "the cooldown's end", || async {
        job_state(gw, &base(sim.url()), &format!("byoc/{REVERSAL}")).await["cooldown_left_ms"] == 0
    })
    .await;
}

/// `gw`'s view of its `REVERSAL` credit at `sim` after a paid call: some, and no more than
/// `sim` holds (the seconds it charged, rounded up where the gateway timed them).
pub(crate) async fn credit_within_held(gw: &Gateway, sim: &Sim) {
    let (booked, held) = (view(gw, sim, REVERSAL).await.unwrap(), held(sim, REVERSAL));
    let who = sim.url();
    assert!(booked > SignedRatio::ZERO && booked <= held, "{who}: {booked} vs {held}");
}

/// A job of 10 s to `gw`, whose only orchestrator fails it: a JSON 503 saying so, returned.
pub(crate) async fn failed_job(gw: &Gateway) -> Value {
    failed_job_of(gw, 10).await
}

/// A job of `timeout` seconds to `gw`, whose only orchestrator fails it: a JSON 503 saying
/// so, returned.
pub(crate) async fn failed_job_of(gw: &Gateway, timeout: u64) -> Value {
    let resp = reqwest::Client::new()
        .post(format!("http://{}/process/request/reverse", gw.http_addr))
        .header("Livepeer", crate::byoc_stream::job_header(REVERSAL, timeout, "{}"))
        .json(&json!({"text": "hello"}))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["type"], "orchestrators_unavailable", "{body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tickets_sent_with_an_unanswered_job_are_not_counted_on_whoever_signs() {
    // 1e9 wei per second against tickets of 8e9: a 10 s job, nothing held, pays the minute
    // the orchestrator wants held: 8 tickets (64e9). The orchestrator drops the connection
    // before it takes them. Counted on (as they were), that credit had the next job pay its
    // 10 s only (2 tickets), and the orchestrator, holding 16e9 of the 60e9 it wants, refuse
    // it: `Insufficient balance`. Of unknown outcome, they are booked as spent: the view
    // holds nothing, and the next job pays the minute again.
    let price = 1_000_000_000;
    let (keyed_sim, remote_sim) = (priced_sim(price).await, priced_sim(price).await);
    let (keyed, keyless, _signer) = both_ways(&keyed_sim, &remote_sim).await;
    for (sim, gw) in [(&keyed_sim, &keyed), (&remote_sim, &keyless)] {
        let who = sim.url();
        token_held(gw, sim).await;
        sim.set_byoc_fault(ByocFault::Close);
        failed_job(gw).await;
        assert_eq!(sim.byoc_stats().requests, 1, "{who}");
        assert_eq!(sim.payments().tickets_credited, 0, "{who}: nothing taken");
        let booked = view(gw, sim, REVERSAL).await.unwrap();
        assert_eq!(booked, SignedRatio::ZERO, "{who}: the tickets are booked as spent");
        sim.set_byoc_fault(ByocFault::None);
        cooled_down(gw, sim).await;
        reverse_job(gw, 10).await;
        paid_by_the_signer_only(sim);
        assert_eq!(sim.payments().tickets_credited, 8, "{who}: the minute, paid again");
        credit_within_held(gw, sim).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_worker_is_booked_as_charged_whoever_signs() {
    // go-livepeer's orchestrator charges the worker's time when it fails (500): 64e9 paid,
    // 1e9 or more charged. The view, which stayed at 64e9, must not exceed what it holds.
    let price = 1_000_000_000;
    let (keyed_sim, remote_sim) = (priced_sim(price).await, priced_sim(price).await);
    let (keyed, keyless, _signer) = both_ways(&keyed_sim, &remote_sim).await;
    for (sim, gw) in [(&keyed_sim, &keyed), (&remote_sim, &keyless)] {
        let who = sim.url();
        sim.set_byoc_fault(ByocFault::Status500);
        failed_job(gw).await;
        assert_eq!(sim.payments().tickets_credited, 8, "{who}");
        assert!(sim.byoc_stats().fees > Ratio::ZERO, "{who}: charged");
        credit_within_held(gw, sim).await;
    }
}
