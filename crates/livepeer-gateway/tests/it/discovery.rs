//! Discovery, matching and selection through a running gateway.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::get;
use livepeer_gateway::config::OrchSource;
use livepeer_gateway::orchestrator::{JobKey, SelectError};
use livepeer_sim::{Sim, SimConfig, SimModel};

use crate::support::*;

#[tokio::test]
async fn discovers_matches_and_selects_over_tls_and_h2c() {
    // Same price everywhere; SDXL is warm on b only.
    let a = TextSim::new("a").price(10).tls().cold_sdxl().start().await;
    let b = TextSim::new("b").price(10).start().await;
    let c = TextSim::new("c").price(10).cold_sdxl().start().await;
    let gw = start(config(&[a.url(), b.url(), c.url()])).await;

    let (status, body) = admin_get(&gw, "/status").await;
    assert_eq!(status, 200);
    assert_eq!(body["pool"]["orchestrators"], 3);
    assert_eq!(body["pool"]["healthy"], 3, "{body}");
    assert_eq!(body["pool"]["last_refresh"]["ok"], 3);

    // Every simulator was asked, and each answer's models and prices are known.
    for s in [&a, &b, &c] {
        assert!(s.calls() >= 1);
        assert!(s.last_request().unwrap().capabilities.is_none(), "all-prices mode");
    }
    let o = orch_state(&gw, a.url()).await;
    assert_eq!(o["state"], "healthy");
    let models = o["models"].as_array().unwrap();
    let sdxl = models.iter().find(|m| m["model"] == SDXL).unwrap();
    assert_eq!(sdxl["warm"], false);
    assert_eq!(sdxl["price"], "20/1");

    // sd-turbo: all three warm, so every one of them gets picked sometimes.
    let sd = JobKey::ai("text-to-image", SD).unwrap();
    let mut seen = HashMap::new();
    for _ in 0..300 {
        let lease = gw.state.pool.select(&sd, &[]).unwrap();
        *seen.entry(lease.url().to_string()).or_insert(0) += 1;
        lease.succeeded();
    }
    assert_eq!(seen.len(), 3, "load spreads over equals: {seen:?}");

    // SDXL is warm only on b: warm is preferred while b is usable.
    let sdxl_key = JobKey::ai("text-to-image", SDXL).unwrap();
    for _ in 0..20 {
        let lease = gw.state.pool.select(&sdxl_key, &[]).unwrap();
        assert_eq!(lease.url().as_str().trim_end_matches('/'), b.url());
        lease.client_error();
    }
    // Excluding b (as a retry would) falls back to the cold ones.
    let b_url = format!("{}/", b.url());
    let lease = gw.state.pool.select(&sdxl_key, &[&b_url]).unwrap();
    assert_ne!(lease.url().as_str(), b_url);
    drop(lease);

    // Nobody offers llm.
    let llm = JobKey::ai("llm", "x").unwrap();
    assert!(matches!(gw.state.pool.select(&llm, &[]), Err(SelectError::NotOffered(_))));

    // The admin dry run answers JSON errors with a reason and Retry-After.
    let resp = reqwest::get(format!("http://{}/select?pipeline=llm&model=x", gw.admin_addr))
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().get("retry-after").is_some());
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "no_orchestrator");
    let (status, body) = admin_get(&gw, "/select?pipeline=text-to-imagez&model=x").await;
    assert_eq!(status, 422);
    assert_eq!(body["error"]["field"], "pipeline");

    // Metrics carry go-livepeer's names where one exists.
    let metrics = metrics_text(&gw).await;
    assert!(metrics.contains("livepeer_gateway_selections_total{"), "{metrics}");
    assert!(metrics.contains("livepeer_gateway_orchestrators{state=\"healthy\"} 3"));
    assert!(metrics.contains("livepeer_gateway_ai_orchestrators_available{pipeline=\"text-to-image\",model_name=\"stabilityai/sd-turbo\"} 3"));
    // go-livepeer's series of that name: the orchestrators in the pool.
    assert!(metrics.contains("\nlivepeer_ai_orchestrators_available_total 3\n"), "{metrics}");
    // Served as go-livepeer's: Prometheus text 0.0.4 even to a scraper that prefers OpenMetrics.
    let resp = reqwest::Client::new()
        .get(format!("http://{}/metrics", gw.admin_addr))
        .header("accept", "application/openmetrics-text;version=1.0.0,text/plain;q=0.5")
        .send()
        .await
        .unwrap();
    let kind = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert_eq!(kind, "text/plain; version=0.0.4; charset=utf-8");
    gw.shutdown().await;
}

#[tokio::test]
async fn price_caps_versions_and_blocklist_filter_candidates() {
    let cheap = TextSim::new("cheap").price(5).start().await;
    let pricey = TextSim::new("pricey").price(50).start().await;
    let old = Sim::start(SimConfig {
        name: "old".into(),
        version: "0.8.0".into(),
        models: vec![SimModel::new("text-to-image", SD).price(1, 1)],
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let blocked_addr: livepeer_pm::Address =
        "0x00000000000000000000000000000000000000b1".parse().unwrap();
    let blocked = Sim::start(SimConfig {
        name: "blocked".into(),
        eth_address: Some(blocked_addr),
        models: vec![SimModel::new("text-to-image", SD).price(1, 1)],
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let mut c = config(&[cheap.url(), pricey.url(), old.url(), blocked.url()]);
    c.requirements.max_price =
        Some(livepeer_gateway::orchestrator::price::Price::new(20, 1).unwrap());
    c.requirements.min_version = "0.9.0".into();
    c.requirements.blocklist = vec![blocked_addr];
    let gw = start(c).await;

    let sd = JobKey::ai("text-to-image", SD).unwrap();
    for _ in 0..50 {
        let lease = gw.state.pool.select(&sd, &[]).unwrap();
        assert_eq!(
            lease.url().as_str().trim_end_matches('/'),
            cheap.url(),
            "only cheap passes every filter"
        );
        lease.succeeded();
    }
    // SDXL costs 10 on cheap (fine) and 100 on pricey (over the cap).
    let sdxl = JobKey::ai("text-to-image", SDXL).unwrap();
    let cheap_url = format!("{}/", cheap.url());
    match gw.state.pool.select(&sdxl, &[&cheap_url]) {
        Err(SelectError::Unavailable { candidates: 1, .. }) => {}
        other => panic!("expected only cheap within the cap, got {other:?}"),
    }
    let o = orch_state(&gw, old.url()).await;
    let why = o["models"][0]["compatible"].as_str().unwrap();
    assert!(why.contains("below the minimum 0.9.0"), "{why}");
    assert_eq!(orch_state(&gw, blocked.url()).await["blocked"], true);
    gw.shutdown().await;

    // With every offer over the cap, the error says so and names the cheapest.
    let mut c = config(&[pricey.url()]);
    c.requirements.max_price =
        Some(livepeer_gateway::orchestrator::price::Price::new(20, 1).unwrap());
    let gw = start(c).await;
    match gw.state.pool.select(&sd, &[]) {
        Err(SelectError::OverPrice { cheapest, .. }) => assert_eq!(cheapest.to_string(), "50/1"),
        other => panic!("{other:?}"),
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn runner_version_minimum_excludes_old_runners() {
    let a = TextSim::new("a").price(5).start().await; // runner 0.14.1
    let mut c = config(&[a.url()]);
    c.requirements.min_runner.insert((27, SD.to_owned()), "0.15.0".into());
    let gw = start(c).await;
    let sd = JobKey::ai("text-to-image", SD).unwrap();
    assert!(matches!(gw.state.pool.select(&sd, &[]), Err(SelectError::NotOffered(_))));
    let sdxl = JobKey::ai("text-to-image", SDXL).unwrap();
    assert!(gw.state.pool.select(&sdxl, &[]).is_ok(), "other models are unaffected");
    gw.shutdown().await;
}

#[tokio::test]
async fn signs_requests_when_a_key_is_configured() {
    let key = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";
    let onchain: livepeer_pm::Address =
        "0x73AEd7b5dEb30222fa896f399d46cC99c7BEe57F".parse().unwrap();
    let s = Sim::start(SimConfig {
        eth_address: Some(onchain),
        models: vec![SimModel::new("text-to-image", SD)],
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let mut c = config(&[s.url()]);
    c.signer = Some(std::sync::Arc::new(livepeer_pm::LocalSigner::from_hex(key).unwrap()));
    let gw = start(c).await;
    let req = s.last_request().unwrap();
    let signer = livepeer_pm::LocalSigner::from_hex(key).unwrap();
    assert_eq!(req.address, signer.address().to_vec());
    // The simulator checked the signature as an on-chain orchestrator does, and answered.
    let o = orch_state(&gw, s.url()).await;
    assert_eq!(o["state"], "healthy", "{o}");
    assert_eq!(o["ticket_params"], true);
    assert_eq!(o["address"], onchain.to_checksum(None));
    gw.shutdown().await;

    // A wrong signature is refused with go-livepeer's message.
    let bad = livepeer_gateway::orchestrator::Identity {
        address: signer.address(),
        sig: livepeer_pm::LocalSigner::from_bytes(&[9; 32]).unwrap().eth_sign(b"other").unwrap(),
    };
    let client = livepeer_gateway::orchestrator::OrchClient::new(
        livepeer_gateway::orchestrator::Timeouts {
            connect: Duration::from_secs(1),
            call: Duration::from_secs(1),
        },
        Default::default(),
        Some(bad),
    );
    let err = client.get_orchestrator(&s.url().parse().unwrap(), None, false).await.unwrap_err();
    assert!(err.to_string().contains("orchestrator req sig check failed"), "{err}");
}

/// A webhook the test serves: its answer can be changed, or made to fail.
#[derive(Clone, Default)]
struct Hook {
    body: Arc<Mutex<(u16, String)>>,
    hits: Arc<Mutex<u32>>,
}

async fn serve_hook(hook: Hook) -> String {
    let app = axum::Router::new().route(
        "/orchs",
        get(move || {
            let hook = hook.clone();
            async move {
                *hook.hits.lock().unwrap() += 1;
                let (status, body) = hook.body.lock().unwrap().clone();
                (axum::http::StatusCode::from_u16(status).unwrap(), body)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/orchs")
}

#[tokio::test]
async fn webhook_discovery_refreshes_and_keeps_the_last_good_list() {
    let a = TextSim::new("a").price(5).start().await;
    let b = TextSim::new("b").price(5).tls().start().await;
    let hook = Hook::default();
    *hook.body.lock().unwrap() =
        (200, format!(r#"[{{"address":"{}","score":1}}, {{"address":""}}]"#, a.url()));
    // A credential in its query, as some services want: `/status` must not show it.
    let url = format!("{}?token=hook-secret-123", serve_hook(hook.clone()).await);
    let mut c = with_source(config(&[]), OrchSource::Webhook(url.parse().unwrap()));
    c.webhook_refresh_interval = Duration::from_millis(1);
    let gw = start(c).await;
    let (_, status) = admin_get(&gw, "/status").await;
    assert_eq!(status["pool"]["orchestrators"], 1, "{status}");
    let origin = url.split("/orchs").next().unwrap();
    assert_eq!(status["config"]["orchestrators"]["webhook"], format!("{origin}/…"), "{status}");
    assert!(!status.to_string().contains("hook-secret-123"), "{status}");

    // The webhook now lists both: an on-demand refresh picks b up.
    *hook.body.lock().unwrap() =
        (200, format!(r#"[{{"address":"{}"}},{{"address":"{}"}}]"#, a.url(), b.url()));
    gw.state.pool.refresh().await;
    assert_eq!(gw.state.pool.snapshot().slots.len(), 2);

    // A failing, then a malformed webhook: the last good list stays.
    for bad in [(500, "oops".to_owned()), (200, "{not json".to_owned())] {
        *hook.body.lock().unwrap() = bad;
        let before = *hook.hits.lock().unwrap();
        gw.state.pool.refresh().await;
        assert!(*hook.hits.lock().unwrap() > before, "the webhook was asked again");
        assert_eq!(gw.state.pool.snapshot().slots.len(), 2);
    }
    gw.shutdown().await;
}
