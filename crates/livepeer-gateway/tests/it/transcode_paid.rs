//! Paid transcoding over two on-chain simulators: the gateway pays each segment with tickets
//! sized by go-livepeer's fee estimate, each simulator checks them, debits Σ pixels × price and
//! signs its renditions; each one's received EV covers its fees, with an excess under one
//! ticket's EV plus one segment's fee, and the stream's spend is what the simulators booked.

use std::sync::Arc;

use livepeer_pm::{LocalSigner, Ratio};
use livepeer_sim::{Sim, SimConfig, TranscodeFault};

use crate::support::*;
use crate::transcode::{gateway_config, push};

pub(crate) const KEY: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
const FACE: u128 = 100_000_000;
const EV: u128 = 1_000_000;
/// The estimate of one segment of `transcode::PROFILES` (256×144 and 384×216, 30 fps, 2 s) at
/// 1 wei per pixel: 7,188,480 pixels × 1.02.
const SEGMENT_FEE: u64 = 7_332_250;

/// An on-chain simulator's settings, before its signing key: tickets of `EV`, 1 wei a pixel.
pub(crate) fn onchain_config(key: u8) -> SimConfig {
    SimConfig {
        name: format!("onchain-{key}"),
        face_value: FACE,
        ticket_ev: EV,
        base_price: (1, 1),
        transcode_fast: true,
        ..SimConfig::default()
    }
}

pub(crate) async fn onchain(key: u8) -> Sim {
    let config = onchain_config(key);
    Sim::start(config.with_signer(LocalSigner::from_bytes(&[key; 32]).unwrap())).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paid_segments_over_two_onchain_orchestrators_are_covered_within_one_ticket() {
    let sims = [onchain(0x42).await, onchain(0x43).await];
    let mut c = gateway_config(&[&sims[0], &sims[1]]);
    c.signer = Some(Arc::new(LocalSigner::from_hex(KEY).unwrap()));
    let gw = start(c).await;
    let signer = LocalSigner::from_hex(KEY).unwrap();
    for seq in 0..5 {
        let resp = push(&gw, "paid", seq, None).await;
        assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    }
    // The serving orchestrator turns busy: the stream moves to the other, which is paid too.
    let (_, status) = admin_get(&gw, "/transcode/streams/paid").await;
    let first = status["orchestrator"].as_str().unwrap().trim_end_matches('/').to_owned();
    let bad = usize::from(sims[1].url().trim_end_matches('/') == first);
    sims[bad].set_transcode_fault(TranscodeFault::Busy);
    for seq in 5..10 {
        let resp = push(&gw, "paid", seq, None).await;
        assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    }
    let mut ev_total = Ratio::default();
    let mut fees_total = Ratio::default();
    for sim in &sims {
        let stats = sim.payments();
        assert!(stats.rejections.is_empty(), "no payment refused: {:?}", stats.rejections);
        let ev = stats.ev_received.get(&signer.address()).cloned().unwrap_or_default();
        assert!(stats.fees_debited > Ratio::default(), "{} did paid work", sim.url());
        assert!(
            ev >= stats.fees_debited,
            "{}: EV {ev} covers fees {}",
            sim.url(),
            stats.fees_debited
        );
        let excess = ev.checked_sub(&stats.fees_debited).unwrap();
        let bound = Ratio::from_u64(EV as u64 + SEGMENT_FEE);
        assert!(
            excess < bound,
            "{}: excess {} ≥ one ticket EV plus one fee",
            sim.url(),
            excess.floor()
        );
        ev_total = ev_total.checked_add(&ev).unwrap();
        fees_total = fees_total.checked_add(&stats.fees_debited).unwrap();
    }
    let (_, status) = admin_get(&gw, "/transcode/streams/paid").await;
    assert_eq!(status["segments_transcoded"], 10, "{status}");
    assert_eq!(status["spend"]["fees_wei"], fees_total.to_decimal_string(0), "{status}");
    assert_eq!(status["spend"]["ev_sent_wei"], ev_total.to_decimal_string(0), "{status}");
    // Each stream pays on a payment session of its own with each orchestrator (go-livepeer's
    // per-stream sessions): the orchestrators count it as one session each.
    let (_, gw_status) = admin_get(&gw, "/status").await;
    let sessions = gw_status["payments"]["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2, "{gw_status}");
    assert!(sessions.iter().all(|s| s["job"] == "transcode/paid"), "{gw_status}");
    let metrics = metrics_text(&gw).await;
    assert!(metrics.contains("pipeline=\"transcode\""), "{metrics}");
    // The stream ends: its sessions go with it.
    assert!(gw.transcode.end_stream("paid"));
    let (_, gw_status) = admin_get(&gw, "/status").await;
    assert_eq!(gw_status["payments"]["sessions"], serde_json::json!([]), "{gw_status}");
    gw.shutdown().await;
}
