//! The official Python SDK (PyPI `livepeer-gateway` 1.0.0, `livepeer_gateway.byoc`) submits a
//! paid BYOC job to the simulator with this gateway as its remote signer: the SDK has the job
//! signed (`/sign-byoc-job`), reads the orchestrator's info over gRPC, has the payment made
//! (`/generate-live-payment`, type `lv2v`) and posts the job with both.
//!
//! Needs the venv made by `scripts/sdk-venv` (or `LIVEPEER_SDK_PYTHON`). Without it the test is
//! skipped with a note, unless `LIVEPEER_REQUIRE_PYTRICKLE=1` (set by `scripts/test` for every
//! Python interop venv). The SDK dials gRPC on port 8935 of the orchestrator's host whatever
//! its URL says, so the simulator binds 127.0.0.1:8935: `.config/nextest.toml` runs this file's
//! tests one at a time (test group `fixed-port-8935`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use livepeer_gateway::Gateway;
use livepeer_pm::{Address, LocalSigner, U512};
use livepeer_sim::{ByocKind, Sim, SimByoc, SimConfig};
use serde_json::{Value, json};

use crate::support::*;

const KEY: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
const API_KEY: &str = "sdk-byoc-api-key-0123456789";
const CAPABILITY: &str = "text-reversal";
/// Where the SDK looks for the orchestrator's gRPC, whatever the orchestrator URL's port.
const SDK_GRPC_PORT: u16 = 8935;
/// Each ticket's EV, wei (face value 1e12 wei, win probability 0.8%; the exact EV a ticket
/// carries is a fraction of a wei above it, the win probability being rounded up to 256 bits).
const TICKET_EV: u64 = 8_000_000_000;

/// The SDK venv's python (made by `scripts/sdk-venv`), if there is one.
pub fn sdk_python() -> Option<PathBuf> {
    if let Some(python) = std::env::var_os("LIVEPEER_SDK_PYTHON") {
        return Some(python.into());
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let venv = std::env::var_os("LIVEPEER_SDK_VENV")
        .map_or_else(|| root.join("target/livepeer-sdk-venv"), |v| root.join(v));
    let python = venv.join("bin/python");
    python.exists().then_some(python)
}

/// A paid, on-chain simulator on 127.0.0.1:8935 (TLS, as go-livepeer and the SDK's gRPC
/// client want) with one BYOC capability that reverses text.
async fn paid_sim() -> Sim {
    Sim::start(SimConfig {
        name: "byoc-sdk".into(),
        bind: ([127, 0, 0, 1], SDK_GRPC_PORT).into(),
        tls: true,
        eth_address: Some(Address::from([0x0b; 20])),
        // The signer pays `lv2v` at the OrchestratorInfo's price_info, which is this base price
        // when GetOrchestrator names no capability (as the SDK's call does not).
        base_price: (1, 1),
        face_value: 1_000_000_000_000,
        ticket_ev: u128::from(TICKET_EV),
        byoc: vec![SimByoc::new(CAPABILITY, ByocKind::Reverse).price(1_000, 1).capacity(2)],
        ..SimConfig::default()
    })
    .await
    .unwrap_or_else(|e| panic!("the simulator could not bind 127.0.0.1:{SDK_GRPC_PORT}: {e}"))
}

async fn signer_gateway() -> Gateway {
    let mut c = config(&[]);
    c.signer = Some(Arc::new(LocalSigner::from_hex(KEY).unwrap()));
    c.serve_signer = Some(API_KEY.to_owned().into());
    start(c).await
}

/// Runs `tests/it/py/sdk_byoc.py` against `orch` and the signer at `signer_url` with `api_key`:
/// whether it succeeded, its stdout and its stderr.
async fn run_sdk(
    python: &Path,
    orch: &str,
    signer_url: &str,
    api_key: &str,
    text: &str,
) -> (bool, String, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/py/sdk_byoc.py");
    let out = tokio::time::timeout(
        Duration::from_secs(90),
        tokio::process::Command::new(python)
            .arg(script)
            .args([orch, signer_url, api_key, CAPABILITY, text])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the SDK finished within 90 s")
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.success(), stdout, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_pays_a_byoc_job_through_our_signer() {
    let Some(python) = sdk_python() else {
        assert!(
            std::env::var("LIVEPEER_REQUIRE_PYTRICKLE").as_deref() != Ok("1"),
            "LIVEPEER_REQUIRE_PYTRICKLE=1 but no Python SDK venv; run scripts/sdk-venv"
        );
        eprintln!("skipping: no Python SDK venv (run scripts/sdk-venv)");
        return;
    };
    let sim = paid_sim().await;
    let orch = format!("https://127.0.0.1:{SDK_GRPC_PORT}");
    let gw = signer_gateway().await;
    let signer_url = format!("http://{}", gw.http_addr);
    let key = LocalSigner::from_hex(KEY).unwrap();

    // With a wrong API key the signer refuses both calls: the SDK gets no signature and no
    // payment, and the orchestrator runs nothing.
    let (ok, stdout, stderr) = run_sdk(&python, &orch, &signer_url, "wrong-key", "nope").await;
    assert!(!ok, "the SDK must fail when the signer refuses it: {stdout}");
    assert!(stderr.contains("HTTP 401"), "{stderr}");
    assert!(sim.byoc_stats().jobs.is_empty(), "no job ran");

    let text = "hello, BYOC from Python";
    let (ok, stdout, stderr) = run_sdk(&python, &orch, &signer_url, API_KEY, text).await;
    assert!(ok, "the SDK failed:\n{stdout}\n{stderr}");

    let answer: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!("not one JSON line ({e}):\n{stdout}\n{stderr}");
    });
    let reversed: String = text.chars().rev().collect();
    assert_eq!(answer["status"], 200, "{answer}");
    assert_eq!(answer["data"], json!({ "text": reversed }), "{answer}");

    // The orchestrator ran it once, paid by the signer's key with one ticket (the signer's
    // first `lv2v` payment covers 60 s of 720p30 at 1 wei a pixel, 1.66e9 wei, less than one
    // ticket's EV), and took the job's fee from that credit.
    let byoc = sim.byoc_stats();
    assert_eq!(byoc.jobs.get(CAPABILITY), Some(&1), "{byoc:?}");
    let payments = sim.payments();
    assert!(payments.rejections.is_empty(), "{:?}", payments.rejections);
    assert_eq!(payments.tickets_credited, 1, "{payments:?}");
    let ev = payments.ev_received.get(&key.address()).expect("credit from the signer's address");
    assert_eq!(ev.floor(), U512::from(TICKET_EV), "one ticket's EV");
    assert_eq!(&byoc.ev_credited, ev, "{byoc:?}");
    assert!(!byoc.fees.is_zero(), "{byoc:?}");
    let left = ev.checked_sub(&byoc.fees).unwrap().floor();
    assert_eq!(answer["balance"], left.to_string(), "Livepeer-Balance = credit − fee");
    gw.shutdown().await;
}
