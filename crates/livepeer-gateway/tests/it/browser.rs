//! Browser tests: headless Chromium, driven over the DevTools protocol (`cdp.rs`), loads the
//! operator dashboard (admin port) and the public catalogue page against a running gateway in
//! front of simulated orchestrators, checks named elements against the gateway's own JSON, and
//! saves screenshots under `target/browser/` (copied into `docs/` for the README). The
//! dashboard test kills a simulator and waits for the page to show its ejection.

use std::time::Duration;

use livepeer_gateway::Gateway;
use livepeer_gateway::config::Config;
use livepeer_sim::{AiMode, Sim, SimConfig, SimModel};
use serde_json::Value;

use crate::cdp::Browser;
use crate::support::*;

const TOKEN: &str = "dashboard-test-admin-token-0123";

/// A gateway config that notices a dead orchestrator by itself within a second (refresh every
/// second) and keeps it ejected long enough to be seen (10 s), with an admin token.
fn watchful_config(urls: &[&str]) -> Config {
    let mut config = config(urls);
    config.refresh_interval = Duration::from_secs(1);
    config.eject.base = Duration::from_secs(10);
    config.eject.max = Duration::from_secs(20);
    config.keys.admin_token = Some(TOKEN.to_owned().into());
    config
}

async fn sim(name: &str, models: Vec<SimModel>, latency_ms: u64) -> Sim {
    let ai_latency = Duration::from_millis(latency_ms);
    Sim::start(SimConfig { name: name.into(), models, ai_latency, ..SimConfig::default() })
        .await
        .unwrap()
}

async fn text_to_image(gw: &Gateway, model: &str) -> u16 {
    let body = serde_json::json!({ "prompt": "a lighthouse", "model_id": model });
    let url = format!("http://{}/text-to-image", gw.http_addr);
    reqwest::Client::new().post(url).json(&body).send().await.unwrap().status().as_u16()
}

async fn admin_json(gw: &Gateway, path: &str) -> Value {
    let url = format!("http://{}{path}", gw.admin_addr);
    let resp = reqwest::Client::new().get(url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(resp.status(), 200, "{path}");
    resp.json().await.unwrap()
}

/// The selector of `sim`'s row in the dashboard's pool table.
fn row(sim: &Sim) -> String {
    format!("#pool-table tr[data-orch^=\"{}\"]", sim.url())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_pool_failures_and_an_ejection() {
    let Some(browser) = Browser::launch().await else { return };
    let fast = sim(
        "fast",
        vec![SimModel::new("text-to-image", SD).price(5, 1), SimModel::new("llm", LLM)],
        5,
    )
    .await;
    let slow = sim("slow", vec![SimModel::new("text-to-image", SD).price(9, 1)], 40).await;
    let broken = sim("broken", vec![SimModel::new("text-to-image", SDXL)], 0).await;
    broken.set_ai_mode(AiMode::Status(500, "the model exploded".into()));
    let gw = start(watchful_config(&[fast.url(), slow.url(), broken.url()])).await;
    for _ in 0..6 {
        assert_eq!(text_to_image(&gw, SD).await, 200);
    }
    assert_ne!(text_to_image(&gw, SDXL).await, 200, "the broken orchestrator fails");

    // Without the token the page loads but shows no figure: it asks for the token.
    let base = format!("http://{}/", gw.admin_addr);
    let page = browser.open(&base, 1400, 1000).await;
    page.wait_for(
        "!document.getElementById('token-form').hidden",
        Duration::from_secs(10),
        "the token form",
    )
    .await;
    assert_eq!(page.text("#count-orchestrators").await.as_deref(), Some("…"));

    // With the token (in the fragment, which is never sent to the server) it fills in.
    page.navigate(&format!("{base}#token={TOKEN}")).await;
    page.wait_for(
        "document.querySelectorAll('#pool-table tr[data-orch]').length === 3 \
         && document.querySelectorAll('#failures-table tr[data-request]').length >= 1",
        Duration::from_secs(10),
        "the pool and the failed request",
    )
    .await;
    assert!(page.eval("document.getElementById('token-form').hidden").await == true);
    assert_eq!(page.text("#count-orchestrators").await.as_deref(), Some("3"));
    // The figures are the admin API's (the broken orchestrator may be ejected by now: its
    // 500 counts against it).
    let status = admin_json(&gw, "/status").await;
    let healthy = status["pool"]["healthy"].to_string();
    assert_eq!(page.text("#count-healthy").await, Some(healthy), "{status}");
    let orchs = admin_json(&gw, "/orchestrators").await;
    for o in orchs["orchestrators"].as_array().unwrap() {
        let sel = format!("#pool-table tr[data-orch=\"{}\"]", o["url"].as_str().unwrap());
        let state = page.text(&format!("{sel} td.state")).await;
        assert_eq!(state.as_deref(), o["state"].as_str(), "{o}");
        let price = page.text(&format!("{sel} td.price")).await;
        let mut distinct: Vec<&str> = Vec::new();
        for m in o["models"].as_array().unwrap() {
            let p = m["price"].as_str().unwrap();
            if !distinct.contains(&p) {
                distinct.push(p);
            }
        }
        assert_eq!(price, Some(distinct.join(", ")), "{o}");
    }
    let fast_price = page.text(&format!("{} td.price", row(&fast))).await.unwrap();
    assert!(fast_price.contains("5/1"), "the model's price: {fast_price}");
    let fast_models = page.text(&format!("{} td.models", row(&fast))).await.unwrap();
    assert!(fast_models.starts_with("2 / 0"), "{fast_models}");
    assert!(fast_models.contains(LLM), "{fast_models}");
    // The failed request, with its attempt and the orchestrator's reason.
    let failure = page.text("#failures-table tr[data-request]").await.unwrap();
    assert!(failure.contains(SDXL) && failure.contains("the model exploded"), "{failure}");
    let recorded = admin_json(&gw, "/requests/failed").await;
    let id = recorded["failures"][0]["id"].as_str().unwrap();
    assert!(failure.contains(id), "{failure} names {id}");
    // The charts have points: request latency from /history, orchestrator latency sampled.
    page.wait_for(
        "Number(document.getElementById('latency-chart').dataset.points) >= 1 \
         && Number(document.getElementById('orch-latency-chart').dataset.points) >= 3 \
         && Number(document.getElementById('requests-chart').dataset.points) >= 1",
        Duration::from_secs(10),
        "the charts",
    )
    .await;
    assert_eq!(
        page.text("#pay-mode").await.as_deref(),
        Some("off-chain: the gateway has no key and pays nobody")
    );
    let keys = page.text("#keys-state").await.unwrap();
    assert!(keys.contains("keys are off"), "{keys}");
    let shot = page.screenshot("dashboard").await;
    eprintln!("screenshot: {}", shot.display());

    // The slow orchestrator dies: the dashboard shows it ejected, with the reason, within a
    // few seconds (the gateway refreshes every second and the page polls every second).
    slow.stop();
    let killed = tokio::time::Instant::now();
    let state = format!("document.querySelector('{} td.state').textContent", row(&slow));
    page.wait_for(
        &format!("['ejected', 'unreachable', 'probe_due'].includes({state})"),
        Duration::from_secs(5),
        "the dashboard shows the ejection",
    )
    .await;
    eprintln!("ejection shown {:?} after the kill", killed.elapsed());
    let reasons = page.text(&format!("{} td.ejections", row(&slow))).await.unwrap();
    assert!(reasons.starts_with("all jobs: "), "the reason is shown: {reasons}");
    page.screenshot("dashboard-ejected").await;
    gw.shutdown().await;
}

/// Runs a page's example `code` (a curl command against `base`) with sh; its JSON answer.
async fn run_example(base: &str, code: String) -> Value {
    assert!(code.starts_with(&format!("curl -s {base}/")), "{code}");
    let out = tokio::process::Command::new("sh").arg("-c").arg(&code).output().await.unwrap();
    serde_json::from_slice::<Value>(&out.stdout)
        .unwrap_or_else(|e| panic!("example {code:?} answered {out:?}: {e}"))
}

/// A model name written to break out of HTML and of a shell command.
const HOSTILE: &str = "evil/<img src=x onerror=alert(1)>'; touch /tmp/pwned; '\"&amp;";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_page_lists_the_catalogue_without_javascript() {
    let Some(browser) = Browser::launch().await else { return };
    let a = sim(
        "pub-a",
        vec![
            SimModel::new("text-to-image", SD).price(5, 1).capacity(4),
            SimModel::new("llm", LLM).price(3, 1),
            SimModel::new("text-to-image", HOSTILE).price(1, 1),
        ],
        3,
    )
    .await;
    let b = sim("pub-b", vec![SimModel::new("text-to-image", SD).price(7, 2).warm(false)], 3).await;
    let gw = start(config(&[a.url(), b.url()])).await;
    for _ in 0..4 {
        assert_eq!(text_to_image(&gw, SD).await, 200);
    }
    let catalog: Value = reqwest::get(format!("http://{}/v1/catalog", gw.http_addr))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entries = catalog["data"].as_array().unwrap();
    assert!(
        entries.iter().any(|e| e["model"] == HOSTILE),
        "the hostile model is offered: {catalog}"
    );

    let base = format!("http://{}", gw.http_addr);
    let page = browser.open_with(&format!("{base}/"), 1300, 1000, false).await;
    assert_eq!(page.eval("document.scripts.length").await, 0, "no script on the page");
    let rows = page.eval("document.querySelectorAll('#catalog-table tr[data-id]').length").await;
    assert_eq!(rows, entries.len(), "a row per catalogue entry");
    for e in entries {
        let id = serde_json::to_string(e["id"].as_str().unwrap()).unwrap();
        let row = format!(
            "[...document.querySelectorAll('#catalog-table tr[data-id]')].find(r => r.dataset.id === {id})"
        );
        let price = page.eval(&format!("{row}.querySelector('td.price').textContent")).await;
        let min = e["network_price"]["min_wei_per_unit"].as_str().unwrap();
        assert!(price.as_str().unwrap().contains(min), "{price} shows {min}");
        let avail = page.eval(&format!("{row}.querySelector('td.availability').textContent")).await;
        assert!(
            avail.as_str().unwrap().starts_with(e["availability"].as_str().unwrap()),
            "{avail}"
        );
    }
    // Exact prices: 7/2 below 5/1; the measured latency of the model just used.
    let sd = format!("#catalog-table tr[data-id=\"text-to-image/{SD}\"]");
    let price = page.text(&format!("{sd} td.price")).await.unwrap();
    assert!(price.starts_with("7/2 – 5/1 wei per output pixel"), "{price}");
    let latency = page.text(&format!("{sd} td.latency")).await.unwrap();
    assert!(latency.contains("ms") && latency.contains("(4 requests)"), "{latency}");
    // The hostile name is text, not markup, and its example stays one command.
    assert_eq!(page.eval("document.querySelectorAll('img').length").await, 0);
    let names =
        page.eval("[...document.querySelectorAll('td.name code')].map(c => c.textContent)").await;
    assert!(names.as_array().unwrap().iter().any(|n| n == HOSTILE), "{names}");

    // The examples run as they are shown, through sh. The text-to-image one is the hostile
    // model's (it sorts first): it reaches the orchestrator as one intact model id.
    let code = page.text("#example-text-to-image pre code").await.unwrap();
    assert!(code.contains("evil/<img"), "{code}");
    let answer = run_example(&base, code).await;
    assert!(answer.get("images").is_some(), "{answer}");
    let sent = a.last_ai_request().unwrap().json.unwrap();
    assert_eq!(sent["model_id"], HOSTILE, "{sent}");
    let answer = run_example(&base, page.text("#example-llm pre code").await.unwrap()).await;
    assert!(answer.get("choices").is_some(), "{answer}");
    let shot = page.screenshot("public").await;
    eprintln!("screenshot: {}", shot.display());
    gw.shutdown().await;
}
