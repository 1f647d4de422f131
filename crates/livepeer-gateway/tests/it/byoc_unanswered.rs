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
use livepeer_pm::{LocalSigner, Ratio};
use livepeer_sim::{ByocKind, PaymentRejection, Sim, SimByoc, SimConfig};
use serde_json::{Value, json};

use crate::support::*;

const KEY: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
const REVERSAL: &str = "text-reversal";
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

fn base(url: &str) -> String {
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
