//! Ejection and probing of orchestrators that hang, refuse connections or answer garbage.

use std::time::Duration;

use livepeer_gateway::orchestrator::{JobKey, TlsTrust};
use livepeer_sim::Mode;

use crate::support::*;

async fn refresh_and_check_ejected(gw: &livepeer_gateway::Gateway, url: &str, error_part: &str) {
    gw.state.pool.refresh().await;
    let o = orch_state(gw, url).await;
    assert_eq!(o["state"], "ejected", "{o}");
    let last = o["last_error"]["message"].as_str().unwrap_or_default().to_owned();
    assert!(last.contains(error_part), "last error {last:?} should mention {error_part:?}");
    // An ejected orchestrator is never selected.
    let sd = JobKey::ai("text-to-image", SD).unwrap();
    for _ in 0..30 {
        let lease = gw.state.pool.select(&sd, &[]).unwrap();
        assert_ne!(lease.url().as_str().trim_end_matches('/'), url);
        lease.client_error();
    }
}

async fn wait_healthy(gw: &livepeer_gateway::Gateway, url: &str) {
    eventually(Duration::from_secs(10), "probed back in", || async {
        orch_state(gw, url).await["state"] == "healthy"
    })
    .await;
}

#[tokio::test]
async fn hanging_refusing_and_garbage_orchestrators_are_ejected_then_probed_back() {
    let good = TextSim::new("good").price(5).start().await;
    let flaky = TextSim::new("flaky").price(5).tls().start().await;
    let gw = start(config(&[good.url(), flaky.url()])).await;
    assert_eq!(orch_state(&gw, flaky.url()).await["state"], "healthy");

    // 1. Hangs: the call deadline (700 ms) ejects it.
    flaky.set_mode(Mode::Hang);
    refresh_and_check_ejected(&gw, flaky.url(), "timed out").await;
    flaky.set_mode(Mode::Normal);
    wait_healthy(&gw, flaky.url()).await;

    // 2. Refuses connections.
    flaky.stop();
    refresh_and_check_ejected(&gw, flaky.url(), "unreachable").await;
    // Probes keep failing while it is down, and the cooldown grows.
    eventually(Duration::from_secs(5), "a failed probe", || async {
        orch_state(&gw, flaky.url()).await["consecutive_failures"].as_u64().unwrap_or(0) >= 2
    })
    .await;
    flaky.restart().await.unwrap();
    wait_healthy(&gw, flaky.url()).await;

    // 3. Garbage.
    flaky.set_mode(Mode::Garbage);
    refresh_and_check_ejected(&gw, flaky.url(), "malformed").await;
    flaky.set_mode(Mode::Normal);
    wait_healthy(&gw, flaky.url()).await;

    // 4. An orchestrator error such as OrchestratorCapped.
    flaky.set_mode(Mode::Fail("Invalid orchestrator request: OrchestratorCapped".into()));
    refresh_and_check_ejected(&gw, flaky.url(), "OrchestratorCapped").await;
    flaky.set_mode(Mode::Normal);
    wait_healthy(&gw, flaky.url()).await;

    let metrics = metrics_text(&gw).await;
    for code in ["DeadlineExceeded", "unreachable", "malformed", "OrchestratorCapped"] {
        assert!(metrics.contains(&format!("error_code=\"{code}\"")), "{code} missing in {metrics}");
    }
    assert!(metrics.contains("livepeer_gateway_orchestrator_ejections_total"));
    assert_eq!(
        orch_state(&gw, good.url()).await["state"],
        "healthy",
        "the good one was never touched"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn request_outcomes_drive_the_breaker_and_user_errors_do_not() {
    let a = TextSim::new("a").price(5).start().await;
    let mut c = config(&[a.url()]);
    // Keep the pool's own probe out of the way, so that a request gets the half-open probe.
    c.probe_interval = Duration::from_secs(3600);
    let gw = start(c).await;
    let sd = JobKey::ai("text-to-image", SD).unwrap();
    // The user's own bad input: no penalty, however often.
    for _ in 0..10 {
        gw.state.pool.select(&sd, &[]).unwrap().client_error();
    }
    assert_eq!(orch_state(&gw, a.url()).await["state"], "healthy");
    // An orchestrator failure ejects it; selection then has nothing.
    gw.state.pool.select(&sd, &[]).unwrap().failed("HTTP 500".into());
    assert!(gw.state.pool.select(&sd, &[]).is_err());
    // After the cooldown exactly one request gets the probe; its success closes the breaker.
    eventually(Duration::from_secs(5), "probe due", || async {
        orch_state(&gw, a.url()).await["state"] == "probe_due"
    })
    .await;
    let probe = gw.state.pool.select(&sd, &[]).unwrap();
    assert!(probe.is_probe());
    assert!(gw.state.pool.select(&sd, &[]).is_err(), "only one probe at a time");
    assert_eq!(orch_state(&gw, a.url()).await["in_flight"], 1);
    probe.succeeded();
    assert_eq!(orch_state(&gw, a.url()).await["in_flight"], 0);
    assert!(gw.state.pool.select(&sd, &[]).is_ok());
    gw.shutdown().await;
}

#[tokio::test]
async fn pinned_certificates_refuse_a_changed_certificate() {
    let a = TextSim::new("a").price(5).tls().start().await;
    let mut c = config(&[a.url()]);
    c.orch_tls = TlsTrust::PinFirst;
    let gw = start(c).await;
    assert_eq!(orch_state(&gw, a.url()).await["state"], "healthy");
    a.restart().await.unwrap();
    gw.state.pool.refresh().await;
    assert_eq!(orch_state(&gw, a.url()).await["state"], "healthy", "same certificate is fine");
    a.restart_with_new_certificate().await.unwrap();
    gw.state.pool.refresh().await;
    let o = orch_state(&gw, a.url()).await;
    assert_eq!(o["state"], "ejected", "{o}");
    gw.shutdown().await;

    // The default (as go-livepeer) accepts the new certificate.
    let gw = start(config(&[a.url()])).await;
    assert_eq!(orch_state(&gw, a.url()).await["state"], "healthy");
    gw.shutdown().await;
}
