//! Pushes that must be refused before any orchestrator is paid: sequence numbers a segment's
//! signed header cannot carry or a stream could never publish, and a stream whose finished
//! segments wait behind a stuck one; and segments kept for playback, which must not hold the
//! gateway's request-body budget.

use std::sync::Arc;

use std::time::Duration;

use livepeer_pm::LocalSigner;
use livepeer_sim::TranscodeFault;
use serde_json::Value;

use crate::support::*;
use crate::transcode::{PROFILES, gateway_config, get_text, listed, push, segment, sim};
use crate::transcode_paid::{KEY, onchain};

/// The JSON error of a refused push.
async fn error_of(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    (status, resp.json::<Value>().await.unwrap_or(Value::Null)["error"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sequence_number_above_i64_max_is_refused_and_no_orchestrator_is_blamed() {
    let sim = onchain(0x44).await;
    let mut c = gateway_config(&[&sim]);
    c.signer = Some(Arc::new(LocalSigner::from_hex(KEY).unwrap()));
    let gw = start(c).await;
    let (status, error) = error_of(push(&gw, "big", 1 << 63, None).await).await;
    assert_eq!((status, &error["field"]), (400, &Value::from("seq")), "{error}");
    assert_eq!(error["type"], "invalid_request", "{error}");
    assert_eq!(sim.transcode_stats().requests, 0, "nothing reached the orchestrator");
    // The largest number a segment can carry is signed and checked as one and the same.
    let resp = push(&gw, "big", i64::MAX as u64, None).await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    assert!(sim.payments().rejections.is_empty(), "{:?}", sim.payments().rejections);
    let state = orch_state(&gw, sim.url()).await;
    assert_eq!(state["state"], "healthy", "{state}");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segment_the_stream_would_never_publish_is_refused_before_it_is_paid() {
    let sim = sim("fast", true).await;
    let gw = start(gateway_config(&[&sim])).await;
    assert_eq!(push(&gw, "jump", 0, None).await.status(), 200);
    // A jump far ahead would leave every later normal number late, and never published.
    for far in [10_001, i64::MAX as u64] {
        let (status, error) = error_of(push(&gw, "jump", far, None).await).await;
        assert_eq!((status, &error["field"]), (400, &Value::from("seq")), "{far}: {error}");
    }
    for seq in 1..3 {
        assert_eq!(push(&gw, "jump", seq, None).await.status(), 200);
    }
    assert_eq!(sim.transcode_stats().requests, 3, "the refused ones reached no orchestrator");
    let (_, media) = get_text(&gw, "/stream/jump/low.m3u8").await;
    assert_eq!(listed(&media).1, vec![0, 1, 2], "{media}");
    // Published already, and the client takes no renditions: nothing to pay for.
    let (status, error) = error_of(push(&gw, "jump", 1, None).await).await;
    assert_eq!((status, &error["type"]), (409, &Value::from("segment_late")), "{error}");
    assert_eq!(error["field"], "seq", "{error}");
    assert_eq!(sim.transcode_stats().requests, 3);
    // A client taking the renditions in its answer is served again: a retry.
    let resp = push(&gw, "jump", 1, Some("multipart/mixed")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(sim.transcode_stats().requests, 4);
    // A jump within the bound is taken, and published.
    assert_eq!(push(&gw, "jump", 2 + 10_000, None).await.status(), 200);
    let (_, media) = get_text(&gw, "/stream/jump/low.m3u8").await;
    assert_eq!(listed(&media).1, vec![0, 1, 2, 10_002], "{media}");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_segments_waiting_behind_a_stuck_one_are_bounded_before_payment() {
    let sim = sim("fast", true).await;
    let gw = start(gateway_config(&[&sim])).await;
    // Segment 0 gets its `200 OK` and then nothing, with the longest deadline a client can ask.
    sim.set_transcode_fault(TranscodeFault::HangAfterOk);
    let config = PROFILES.replacen('{', r#"{"timeoutMultiplier":10,"#, 1);
    let url = format!("http://{}/live/stuck/0.ts", gw.http_addr);
    let stuck = tokio::spawn(
        reqwest::Client::new()
            .post(url)
            .header("Livepeer-Transcode-Configuration", config)
            .header("Content-Duration", "300000")
            .body(segment().to_vec())
            .send(),
    );
    eventually(Duration::from_secs(10), "segment 0 is stuck at the orchestrator", || async {
        sim.transcode_stats().accepted == 1
    })
    .await;
    sim.set_transcode_fault(TranscodeFault::None);
    // The stream's window (10 segments) fills with segments waiting for 0 ...
    for seq in 1..=10 {
        let resp = push(&gw, "stuck", seq, None).await;
        assert_eq!(resp.status(), 200, "{seq}: {}", resp.text().await.unwrap());
    }
    let (_, status) = admin_get(&gw, "/transcode/streams/stuck").await;
    assert_eq!(status["waiting"]["segments"], 10, "{status}");
    assert_eq!(status["window"]["segments"], 0, "{status}");
    // ... and the next push is refused, retryable, before any orchestrator is paid.
    let (status, error) = error_of(push(&gw, "stuck", 11, None).await).await;
    assert_eq!((status, &error["type"]), (503, &Value::from("stream_backlog")), "{error}");
    assert!(error["message"].as_str().unwrap().contains("wait for segment 0"), "{error}");
    assert_eq!(sim.transcode_stats().requests, 11);
    stuck.abort();
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_kept_for_playback_do_not_hold_the_request_body_budget() {
    let sim = sim("fast", true).await;
    let gw = start(gateway_config(&[&sim])).await;
    for seq in 0..3 {
        assert_eq!(push(&gw, "kept", seq, None).await.status(), 200);
    }
    let (_, media) = get_text(&gw, "/stream/kept/source.m3u8").await;
    assert_eq!(listed(&media).1, vec![0, 1, 2], "the segments are kept: {media}");
    eventually(Duration::from_secs(5), "the pushed bodies' budget is given back", || async {
        admin_get(&gw, "/status").await.1["request_body_bytes"] == 0
    })
    .await;
    let source = get_text(&gw, "/stream/kept/source/2.ts").await;
    assert_eq!(source.0, 200);
    gw.shutdown().await;
}

/// A gateway with customer keys paying `onchain` simulators, transcoding priced at 100 times
/// what the orchestrator is paid at 2000 USD an ETH: a segment of `PROFILES` (7,188,480 wei
/// in fast mode) costs 1438 nano-USD.
async fn keyed_multiple(
    sim: &livepeer_sim::Sim,
    dir: &std::path::Path,
) -> livepeer_gateway::Gateway {
    use livepeer_gateway::keys::price::CustomerPrices;
    let mut c = crate::keys::keys_config(&[sim.url()], dir, None);
    c.signer = Some(Arc::new(LocalSigner::from_hex(KEY).unwrap()));
    let table = r#"{"price": [{"pipeline": "transcode", "orchestrator_multiple": "100"}]}"#;
    c.keys.prices = Arc::new(CustomerPrices::parse(Some(table), Some("2000")).unwrap());
    start(c).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_budget_stops_pushes_priced_as_a_multiple_before_the_orchestrator_is_paid() {
    use crate::keys_charge::push_segment;
    let sim = onchain(0x45).await;
    let dir = tempfile::tempdir().unwrap();
    let gw = keyed_multiple(&sim, dir.path()).await;
    // Nothing left of the budget: refused before any orchestrator is paid.
    let (_, spent) =
        crate::keys::create(&gw, serde_json::json!({"name": "spent", "budget_micro_usd": 0})).await;
    let resp = push_segment(&gw, &spent, "spent", 0, "2000").send().await.unwrap();
    let (status, error) = error_of(resp).await;
    assert_eq!((status, &error["type"]), (402, &Value::from("budget_exceeded")), "{error}");
    assert_eq!(sim.transcode_stats().requests, 0);
    // 2000 nano-USD pays one segment; the second's charge is refused once it is transcoded:
    // it is not published, and the stream takes no more.
    let body = serde_json::json!({"name": "two", "budget_micro_usd": 2});
    let (_, secret) = crate::keys::create(&gw, body).await;
    let resp = push_segment(&gw, &secret, "cam", 0, "2000").send().await.unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    for seq in 1..3 {
        let resp = push_segment(&gw, &secret, "cam", seq, "2000").send().await.unwrap();
        let (status, error) = error_of(resp).await;
        assert_eq!((status, &error["type"]), (402, &Value::from("budget_exceeded")), "{error}");
    }
    assert_eq!(sim.transcode_stats().requests, 2, "the stream stopped at the refused charge");
    let (_, media) = get_text(&gw, "/stream/cam/low.m3u8").await;
    assert_eq!(listed(&media).1, vec![0], "the unpaid segment is not published: {media}");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_stream_counts_among_its_keys_streams_and_takes_pushes_of_that_key_only() {
    use crate::keys_charge::{push_segment, transcode_keys_config};
    let sim = sim("keys-owner", true).await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = transcode_keys_config(sim.url(), dir.path());
    // Long enough that the stream outlives the pushes below on a loaded machine: reaped
    // between them (it was 300 ms), the other key's push made a stream of its own (200, not
    // 403).
    c.transcode.idle_timeout = Duration::from_secs(3);
    let gw = start(c).await;
    let body = serde_json::json!({"name": "one", "budget_micro_usd": 1_000_000, "max_streams": 1});
    let (_, one) = crate::keys::create(&gw, body).await;
    let (_, other) = crate::keys::create(&gw, serde_json::json!({"name": "other"})).await;
    let resp = push_segment(&gw, &one, "mine", 0, "2000").send().await.unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let resp = push_segment(&gw, &one, "second", 0, "2000").send().await.unwrap();
    let (status, error) = error_of(resp).await;
    assert_eq!((status, &error["type"]), (429, &Value::from("stream_limit_exceeded")), "{error}");
    let resp = push_segment(&gw, &other, "mine", 1, "2000").send().await.unwrap();
    let (status, error) = error_of(resp).await;
    assert_eq!((status, &error["type"]), (403, &Value::from("stream_forbidden")), "{error}");
    assert_eq!(error["field"], "manifestID", "{error}");
    assert_eq!(sim.transcode_stats().requests, 1, "neither refused push was transcoded");
    // The owner's own pushes go on; once its stream is closed, its place is free again.
    let resp = push_segment(&gw, &one, "mine", 1, "2000").send().await.unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    eventually(Duration::from_secs(10), "the idle stream frees its key's place", || async {
        let resp = push_segment(&gw, &one, "second", 0, "2000").send().await.unwrap();
        resp.status() == 200
    })
    .await;
    gw.shutdown().await;
}

/// An orchestrator whose refusals spare it (busy, or payment terms that moved on) is spared
/// once per stream; refusing the stream's next segment the same way, paid again for it, it is
/// penalised for transcoding. Before, it was spared for every segment: chosen again each
/// time, and paid each time it processed the tickets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orchestrator_refusing_a_streams_segments_twice_in_a_row_is_no_longer_spared() {
    for (fault, key) in [(TranscodeFault::Busy, 0x45), (TranscodeFault::Unavailable, 0x46)] {
        let sim = onchain(key).await;
        let mut c = gateway_config(&[&sim]);
        c.signer = Some(Arc::new(LocalSigner::from_hex(KEY).unwrap()));
        let gw = start(c).await;
        assert_eq!(push(&gw, "twice", 0, None).await.status(), 200);
        let paid_before = sim.payments().tickets_received;
        sim.set_transcode_fault(fault);
        let transcoding = || async { orch_state(&gw, sim.url()).await["state"].clone() };
        assert_ne!(push(&gw, "twice", 1, None).await.status(), 200, "{fault:?}");
        assert_eq!(transcoding().await, "healthy", "{fault:?}: spared once");
        assert_ne!(push(&gw, "twice", 2, None).await.status(), 200, "{fault:?}");
        assert_eq!(transcoding().await, "ejected", "{fault:?}: not twice in a row");
        // Nothing was refused; the 503s reached no payment (the tickets of segment 0 only).
        let payments = sim.payments();
        assert!(payments.rejections.is_empty(), "{:?}", payments.rejections);
        if fault == TranscodeFault::Unavailable {
            assert_eq!(payments.tickets_received, paid_before, "{fault:?}");
        }
        gw.shutdown().await;
    }
}
