//! A live stream whose client stopped, or whose start failed, leaves nothing in the gateway:
//! no stream running in its table, no lease, a zero `livepeer_gateway_live_streams` gauge,
//! even when its orchestrator is hung or killed at that moment (the soak's "live streams the
//! gateway still holds", RELIABILITY.md). What an orchestrator the gateway could not reach
//! keeps is the orchestrator's to time out, as go-livepeer's do.

use std::sync::Arc;
use std::time::Duration;

use livepeer_gateway::Gateway;
use livepeer_gateway::config::Config;
use livepeer_sim::{AiMode, LiveMode, Mode, Sim, SimConfig, SimModel};
use serde_json::{Value, json};

use crate::support::*;

const OWNER: &str = "Bearer live-leak-client";

async fn live_sim(name: &str) -> Sim {
    Sim::start(SimConfig {
        name: name.into(),
        models: vec![SimModel::new("live-video-to-video", "noop").capacity(8)],
        live_event_interval: Duration::from_millis(200),
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

fn live_config(sims: &[&Sim]) -> Config {
    let urls: Vec<&str> = sims.iter().map(|s| s.url()).collect();
    let mut c = config(&urls);
    c.live.events_timeout = Duration::from_secs(5);
    c.live.status_linger = Duration::from_secs(60);
    c
}

async fn call(gw: &Gateway, name: &str, action: &str) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("http://{}/live/video-to-video/{name}/{action}", gw.http_addr))
        .header(reqwest::header::AUTHORIZATION, OWNER)
        .json(&json!({"pipeline": "noop"}))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// `GET` of a stream's `action` route, with its owner's credentials.
async fn call_get(gw: &Gateway, name: &str, action: &str) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .get(format!("http://{}/live/video-to-video/{name}/{action}", gw.http_addr))
        .header(reqwest::header::AUTHORIZATION, OWNER)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// What the gateway holds of live streams: streams listed as starting, running or swapping,
/// the streams gauge, and leases in flight.
async fn holds(gw: &Gateway) -> (usize, i64, u64) {
    let (_, streams) = admin_get(gw, "/live/streams").await;
    let running = streams["streams"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| matches!(s["state"].as_str(), Some("starting" | "running" | "swapping")))
        .count();
    let gauge = metrics_text(gw)
        .await
        .lines()
        .filter(|l| l.starts_with("livepeer_gateway_live_streams"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as i64;
    let (_, orchs) = admin_get(gw, "/orchestrators").await;
    let leases = orchs["orchestrators"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o["in_flight"].as_u64())
        .sum();
    (running, gauge, leases)
}

async fn holds_nothing(gw: &Gateway, what: &str) {
    eventually(Duration::from_secs(10), what, || async { holds(gw).await == (0, 0, 0) }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stop_while_the_orchestrator_is_hung_releases_everything() {
    let sim = live_sim("leak-hung").await;
    let gw = start(live_config(&[&sim])).await;
    let (status, body) = call(&gw, "hung", "start").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(holds(&gw).await, (1, 1, 1), "a running stream holds one lease");
    // The simulator names the gateway request of each stream it runs (the soak's leftovers).
    let running = sim.live().running;
    assert_eq!(running.len(), 1);
    assert_eq!(running[0].gateway_request_id, body["request_id"].as_str().unwrap());
    // Everything the soak's hang fault stops answering.
    sim.set_mode(Mode::Hang);
    sim.set_ai_mode(AiMode::Hang);
    sim.set_live_mode(LiveMode::StallOutput);
    let (status, body) = call(&gw, "hung", "stop").await;
    assert_eq!(status, 200, "{body}");
    holds_nothing(&gw, "the gateway to let go of the stopped stream").await;
    // Its trickle routes still answer, so the teardown reached it too.
    eventually(Duration::from_secs(10), "the orchestrator's stream to end", || async {
        sim.live().active == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_start_racing_a_kill_leaves_nothing_in_the_gateway() {
    let (a, b) = (live_sim("leak-kill-a").await, live_sim("leak-kill-b").await);
    let gw = start(live_config(&[&a, &b])).await;
    for i in 0..6 {
        let name = format!("race{i}");
        // The kill lands before, during or after the start call, whichever orchestrator it
        // went to; whatever the start's answer, the gateway must hold only what it answered.
        let (started, ()) = tokio::join!(call(&gw, &name, "start"), async {
            tokio::time::sleep(Duration::from_millis(2 * i)).await;
            a.stop();
        });
        if started.0 == 200 {
            let (status, body) = call(&gw, &name, "stop").await;
            assert_eq!(status, 200, "{body}");
        }
        holds_nothing(&gw, "the gateway to hold nothing after a start that raced a kill").await;
        a.restart().await.unwrap();
    }
    // Nothing on the orchestrators either, once the gateway's teardowns arrived (a stream a
    // killed orchestrator held died with it).
    eventually(Duration::from_secs(10), "the orchestrators' streams to end", || async {
        a.live().active + b.live().active == 0
    })
    .await;
}

/// The soak's "live streams left on orchestrators": an orchestrator that started a stream but
/// whose answer the gateway never read keeps it (the gateway never learned its channels), and
/// the gateway, which moved on to another orchestrator, holds only the stream it answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_start_whose_answer_is_lost_leaves_the_stream_on_the_orchestrator_only() {
    let (lost, good) = (live_sim("leak-lost-answer").await, live_sim("leak-good").await);
    lost.set_live_mode(LiveMode::StartUnanswered);
    let mut c = live_config(&[&lost, &good]);
    c.live.start_timeout = Duration::from_millis(500);
    let gw = start(c).await;
    let mut requests = Vec::new();
    // Selection may try either first; the lost answer is met once the first start that goes
    // to it times out and the stream fails over.
    for i in 0..20 {
        let name = format!("lost{i}");
        let (status, body) = call(&gw, &name, "start").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["orchestrator"].as_str().unwrap().trim_end_matches('/'), good.url());
        requests.push(body["request_id"].as_str().unwrap().to_owned());
        assert_eq!(call(&gw, &name, "stop").await.0, 200);
        if lost.live().active > 0 {
            break;
        }
    }
    holds_nothing(&gw, "the gateway to hold nothing once its client stopped").await;
    eventually(Duration::from_secs(10), "the serving orchestrator's stream to end", || async {
        good.live().active == 0
    })
    .await;
    let left = lost.live().running;
    assert_eq!(left.len(), 1, "the unanswered start's stream stays on its orchestrator");
    assert!(requests.contains(&left[0].gateway_request_id), "{left:?} {requests:?}");
}

/// A start whose client left while the orchestrator had not answered kept its payment's
/// booking (the credit of the start's prepaid minute, on the start's fresh request id) for
/// the life of the process, one more per such start. Now it is let go as a failed start's is.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_start_its_client_left_keeps_no_payment_booked() {
    const KEY: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
    let mut eth = [0u8; 20];
    eth[19] = 41;
    let sim = Sim::start(SimConfig {
        name: "leak-left-start".into(),
        eth_address: Some(livepeer_pm::Address::from(eth)),
        models: vec![SimModel::new("live-video-to-video", "noop").price(1, 1).capacity(8)],
        ..SimConfig::default()
    })
    .await
    .unwrap();
    sim.set_live_mode(LiveMode::StartUnanswered);
    let mut c = live_config(&[&sim]);
    c.signer = Some(Arc::new(livepeer_pm::LocalSigner::from_hex(KEY).unwrap()));
    c.live.start_timeout = Duration::from_secs(120);
    let gw = start(c).await;
    for i in 0..3u64 {
        let url = format!("http://{}/live/video-to-video/left{i}/start", gw.http_addr);
        let client = reqwest::Client::new();
        let start = client.post(url).header(reqwest::header::AUTHORIZATION, OWNER).json(&json!({}));
        // The client leaves (its request dropped, its connection closed) once the
        // orchestrator has the start, and so its payment.
        tokio::select! {
            answered = start.send() => panic!("the start was answered: {answered:?}"),
            () = eventually(Duration::from_secs(10), "the start call", || async {
                sim.live().starts > i
            }) => {}
        }
    }
    let credits = || async {
        let (_, status) = admin_get(&gw, "/status").await;
        status["payments"]["stream_credits"].as_array().map_or(usize::MAX, Vec::len)
    };
    eventually(Duration::from_secs(10), "no booking left by the abandoned starts", || async {
        credits().await == 0
    })
    .await;
    holds_nothing(&gw, "nothing held by the abandoned starts").await;
}

/// A stream stopped while its interval payment was still fetching fresh ticket params (the
/// old ones had expired) left a credit booked for good: the session's end forgot the stream's
/// booking first, and the payment, once its params came, booked a fresh one that nothing
/// forgot. The booking is now forgotten when the payment loop itself ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_payment_still_fetching_params_at_the_stop_keeps_no_credit_booked() {
    use livepeer_trickle::{ClientConfig, HttpPublisher, Publish as _, WriteSegment as _};
    const KEY: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
    let mut eth = [0u8; 20];
    eth[19] = 42;
    let sim = Sim::start(SimConfig {
        name: "leak-paying-stop".into(),
        eth_address: Some(livepeer_pm::Address::from(eth)),
        models: vec![SimModel::new("live-video-to-video", "noop").price(1, 1).capacity(8)],
        live_event_interval: Duration::from_millis(200),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let mut c = live_config(&[&sim]);
    c.signer = Some(Arc::new(livepeer_pm::LocalSigner::from_hex(KEY).unwrap()));
    c.live.payment_interval = Duration::from_millis(200);
    // Long enough for the slow params below to be waited for rather than given up on.
    c.discovery_timeout = Duration::from_secs(20);
    let gw = start(c).await;
    let payer = gw.state.payer.clone().unwrap();
    // The simulator's chain starts at block 1000; its params expire at 1040.
    payer.set_block(1_000);
    let (status, body) = call(&gw, "paying", "start").await;
    assert_eq!(status, 200, "{body}");
    let config = ClientConfig::default();
    let url = body["publish_url"].as_str().unwrap();
    let mut publisher =
        HttpPublisher::new(config.client().unwrap(), url, "video/MP2T", config).unwrap();
    // Payments are made only while input flows: MPEG-TS null packets are input enough.
    let mut null = vec![0u8; 188 * 8];
    for packet in null.chunks_mut(188) {
        packet[..4].copy_from_slice(&[0x47, 0x1f, 0xff, 0x10]);
    }
    let null = bytes::Bytes::from(null);
    let feeding = tokio::spawn(async move {
        loop {
            let Ok(mut writer) = publisher.segment().await else { return };
            if writer.write(null.clone()).await.is_err() || writer.finish().await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    eventually(Duration::from_secs(30), "an interval payment", || async {
        sim.live().payments >= 1
    })
    .await;
    // The params expire on the gateway's chain, and the orchestrator's fresh ones come slowly:
    // the next interval payment waits for them.
    let asked = sim.calls();
    sim.advance_blocks(100);
    sim.set_latency(Duration::from_secs(6));
    payer.set_block(1_050);
    eventually(Duration::from_secs(10), "a payment asking for fresh params", || async {
        sim.calls() > asked
    })
    .await;
    let made = || async {
        let (_, status) = call_get(&gw, "paying", "status").await;
        let count = |what: &str| status["payments"][what].as_u64().unwrap_or(0);
        count("sent") + count("failed")
    };
    let before = made().await;
    let (status, body) = call(&gw, "paying", "stop").await;
    assert_eq!(status, 200, "{body}");
    feeding.abort();
    holds_nothing(&gw, "the stopped stream let go").await;
    // The payment then gets its params, is sent (to a stream that has ended there) and
    // settled.
    eventually(Duration::from_secs(15), "the slow payment to be made", || async {
        made().await > before
    })
    .await;
    let credits = || async {
        let (_, status) = admin_get(&gw, "/status").await;
        status["payments"]["stream_credits"].as_array().map_or(usize::MAX, Vec::len)
    };
    eventually(Duration::from_secs(10), "no credit booked for the stopped stream", || async {
        credits().await == 0
    })
    .await;
}
