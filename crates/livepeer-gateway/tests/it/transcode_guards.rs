//! Pushes that must be refused before any orchestrator is paid: sequence numbers a segment's
//! signed header cannot carry or a stream could never publish, and a stream whose finished
//! segments wait behind a stuck one; and segments kept for playback, which must not hold the
//! gateway's request-body budget.

use std::sync::Arc;

use livepeer_pm::LocalSigner;
use serde_json::Value;

use crate::support::*;
use crate::transcode::{gateway_config, push};
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
