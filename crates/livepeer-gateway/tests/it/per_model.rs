//! Issue 11, item 10: an orchestrator is penalised only for what it did, and only for the
//! pipeline and model where it failed; capacity is compared per model.

use std::time::Duration;

use livepeer_gateway::Gateway;
use livepeer_gateway::orchestrator::JobKey;
use livepeer_gateway::orchestrator::health::EjectPolicy;
use livepeer_sim::{AiMode, Mode, Sim, SimConfig, SimModel};
use serde_json::json;

use crate::support::*;

/// A simulator serving `models` as (pipeline, model, capacity), all at `price` wei per unit.
async fn sim(name: &str, price: i64, models: &[(&str, &str, u32)]) -> Sim {
    Sim::start(SimConfig {
        name: name.into(),
        models: models
            .iter()
            .map(|(p, m, c)| SimModel::new(p, m).price(price, 1).capacity(*c))
            .collect(),
        token_delay: Duration::from_millis(100),
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

/// A gateway whose ejections outlast the test, so that what is ejected stays ejected.
async fn gateway(sims: &[&Sim]) -> Gateway {
    let urls: Vec<&str> = sims.iter().map(|s| s.url()).collect();
    let mut c = config(&urls);
    c.eject = EjectPolicy { base: Duration::from_secs(600), max: Duration::from_secs(600) };
    c.ai.attempt_timeout = Duration::from_secs(5);
    c.ai.request_timeout = Duration::from_secs(10);
    start(c).await
}

async fn t2i(gw: &Gateway) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("http://{}/text-to-image", gw.http_addr))
        .json(&json!({"prompt": "x", "model_id": SD, "width": 64, "height": 64}))
        .send()
        .await
        .unwrap()
}

/// An LLM request for `tokens` tokens (the simulator echoes the prompt's words, 100 ms each).
async fn llm(gw: &Gateway, stream: bool, tokens: usize) -> reqwest::Response {
    let words = vec!["word"; tokens].join(" ");
    reqwest::Client::new()
        .post(format!("http://{}/llm", gw.http_addr))
        .json(&json!({"model": LLM, "stream": stream, "max_tokens": tokens,
            "messages": [{"role": "user", "content": words}]}))
        .send()
        .await
        .unwrap()
}

fn served_by(resp: &reqwest::Response) -> String {
    resp.headers()["x-orchestrator-url"].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_5xx_on_one_pipeline_leaves_the_orchestrator_selectable_for_the_others() {
    // `a` is far cheaper, so text-to-image always tries it first; only `a` serves the LLM.
    let a = sim("a", 1, &[("text-to-image", SD, 8), ("llm", LLM, 8)]).await;
    let b = sim("b", 1000, &[("text-to-image", SD, 8)]).await;
    let gw = gateway(&[&a, &b]).await;

    a.set_ai_mode(AiMode::Status(500, "text-to-image runner crashed".into()));
    let resp = t2i(&gw).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(served_by(&resp), b.url(), "failed over to b");
    assert_eq!(a.ai_requests(), 1, "a was tried first and failed");
    a.set_ai_mode(AiMode::Normal);

    // The LLM request goes to `a`: its 5xx was text-to-image's alone.
    let resp = llm(&gw, false, 3).await;
    assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
    assert_eq!(served_by(&resp), a.url());
    assert_eq!(a.last_ai_request().unwrap().path, "/llm");
    assert_eq!(a.ai_requests(), 2);

    // Text-to-image stays away from `a` while that job's cooldown runs.
    for _ in 0..5 {
        let resp = t2i(&gw).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(served_by(&resp), b.url());
    }
    assert_eq!(a.ai_requests(), 2);
    let t2i_job = format!("text-to-image/{SD}");
    assert_eq!(job_state(&gw, a.url(), &t2i_job).await["state"], "ejected");
    assert_eq!(job_state(&gw, a.url(), &format!("llm/{LLM}")).await["state"], "healthy");
    let o = orch_state(&gw, a.url()).await;
    assert_eq!(o["state"], "ejected", "operators see it ejected for something: {o}");
    assert_eq!(o["consecutive_failures"], 0, "its own breaker is closed: {o}");
    let (_, status) = admin_get(&gw, "/status").await;
    assert_eq!(status["pool"]["jobs_ejected"], 1, "{status}");
    gw.shutdown().await;
}

#[tokio::test]
async fn an_orchestrators_64_kib_error_is_kept_cut_and_on_one_line() {
    let a = sim("a", 1, &[("text-to-image", SD, 8)]).await;
    let b = sim("b", 1000, &[("text-to-image", SD, 8)]).await;
    let gw = gateway(&[&a, &b]).await;
    // Lines of its own making, then up to the 64 KiB the gateway reads of an error: kept, it
    // would be served every second on `/orchestrators`.
    let lines = "runner crashed\nlevel=INFO msg=forged\r\n";
    let body = format!("{lines}{}", "x".repeat((64 << 10) - lines.len() - 1));
    a.set_ai_mode(AiMode::Status(500, body));
    let resp = t2i(&gw).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(served_by(&resp), b.url(), "failed over to b");
    let job = job_state(&gw, a.url(), &format!("text-to-image/{SD}")).await;
    let orch = orch_state(&gw, a.url()).await;
    for kept in [&job["last_error"]["message"], &orch["last_error"]["message"]] {
        let kept = kept.as_str().unwrap();
        assert!(kept.chars().count() <= 300, "{} characters kept", kept.chars().count());
        assert!(kept.contains("runner crashed level=INFO msg=forged"), "{kept}");
        assert!(!kept.contains(['\n', '\r']), "{kept:?}");
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn many_llm_streams_do_not_fill_text_to_image_capacity() {
    // Text-to-image takes 2 at once; the LLM takes 64. `b` is far dearer, so every stream
    // goes to `a`.
    let a = sim("a", 1, &[("text-to-image", SD, 2), ("llm", LLM, 64)]).await;
    let b = sim("b", 1000, &[("llm", LLM, 64)]).await;
    let gw = gateway(&[&a, &b]).await;

    // Ten LLM streams in flight, each at least at its first token (~60 s each to finish).
    let mut streams = Vec::new();
    for _ in 0..10 {
        let mut resp = llm(&gw, true, 600).await;
        assert_eq!(resp.status(), 200);
        assert!(resp.chunk().await.unwrap().is_some());
        streams.push(resp);
    }
    let llm_job = format!("llm/{LLM}");
    assert_eq!(job_state(&gw, a.url(), &llm_job).await["in_flight"], 10);
    assert_eq!(orch_state(&gw, a.url()).await["in_flight"], 10, "far above text-to-image's 2");
    assert_eq!(b.ai_requests(), 0);

    // Text-to-image's own capacity is free: served, by a.
    let resp = t2i(&gw).await;
    assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
    assert_eq!(served_by(&resp), a.url());
    drop(streams);
    eventually(Duration::from_secs(10), "streams released", || async {
        orch_state(&gw, a.url()).await["in_flight"] == 0
    })
    .await;
    gw.shutdown().await;
}

#[tokio::test]
async fn a_connection_refused_orchestrator_is_ejected_for_everything() {
    let a = sim("a", 1, &[("text-to-image", SD, 8), ("llm", LLM, 8)]).await;
    let b = sim("b", 1000, &[("text-to-image", SD, 8), ("llm", LLM, 8)]).await;
    let gw = gateway(&[&a, &b]).await;
    a.stop();

    let resp = t2i(&gw).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(served_by(&resp), b.url(), "a refused the connection; b served");
    let o = orch_state(&gw, a.url()).await;
    assert_eq!(o["state"], "ejected", "{o}");
    assert_eq!(o["consecutive_failures"], 1, "its own breaker opened: {o}");

    // Every pipeline now avoids it, though it failed on text-to-image only.
    let resp = llm(&gw, false, 3).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(served_by(&resp), b.url());
    let key = JobKey::ai("llm", LLM).unwrap();
    for _ in 0..20 {
        let lease = gw.state.pool.select(&key, &[]).unwrap();
        assert_ne!(lease.url().as_str().trim_end_matches('/'), a.url());
        lease.client_error();
    }
    gw.shutdown().await;
}

/// An on-chain simulator serving `models` at `price` wei per unit.
async fn paid_sim(name: &str, eth: u8, price: i64, models: &[(&str, &str)]) -> Sim {
    let mut address = [0u8; 20];
    address[19] = eth;
    Sim::start(SimConfig {
        name: name.into(),
        eth_address: Some(livepeer_pm::Address::from(address)),
        models: models
            .iter()
            .map(|(p, m)| SimModel::new(p, m).price(price, 1).capacity(8))
            .collect(),
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

/// A payment's own GetOrchestrator call (the job-priced ticket params, which name the job's
/// capability and model) that the orchestrator refused counted as a transport failure: the
/// orchestrator was ejected for every pipeline. Now it is that job's failure alone.
#[tokio::test]
async fn a_refused_job_priced_get_orchestrator_is_that_jobs_failure_only() {
    const KEY: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
    let a = paid_sim("a", 51, 1, &[("text-to-image", SD), ("llm", LLM)]).await;
    let b = paid_sim("b", 52, 1000, &[("text-to-image", SD)]).await;
    let mut c = config(&[a.url(), b.url()]);
    c.eject = EjectPolicy { base: Duration::from_secs(600), max: Duration::from_secs(600) };
    c.signer = Some(std::sync::Arc::new(livepeer_pm::LocalSigner::from_hex(KEY).unwrap()));
    let gw = start(c).await;

    // Only the job's own call meets this: the pool already has both orchestrators.
    a.set_mode(Mode::Fail("Invalid orchestrator request: capability not offered".into()));
    let resp = t2i(&gw).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(served_by(&resp), b.url(), "failed over to b");
    assert_eq!(a.ai_requests(), 0, "a was never called for the job");
    a.set_mode(Mode::Normal);

    assert_eq!(job_state(&gw, a.url(), &format!("text-to-image/{SD}")).await["state"], "ejected");
    assert_eq!(job_state(&gw, a.url(), &format!("llm/{LLM}")).await["state"], "healthy");
    assert_eq!(orch_state(&gw, a.url()).await["consecutive_failures"], 0);
    let resp = llm(&gw, false, 3).await;
    assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
    assert_eq!(served_by(&resp), a.url());
    gw.shutdown().await;
}
