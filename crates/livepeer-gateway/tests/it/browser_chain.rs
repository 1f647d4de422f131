//! The operator dashboard's deposit view in a browser, on a real local chain: headless
//! Chromium (`cdp.rs`) loads the dashboard of a gateway whose deposit and reserve are funded on
//! ganache (`ganache.rs`), and the test checks the view's named elements (`#pay-deposit`,
//! `#pay-reserve`, `#pay-unlocking`, `#pay-hours`, `#pay-warning`) against the chain and the
//! gateway's own `/status`: the amounts, the reserve's hours before and after spending, the
//! low-reserve warning shown under `--reserve-warning-hours` and gone once the reserve is
//! topped up, and the unlock state before an unlock, during it, and once payments stop. It
//! saves screenshots as `target/browser/dashboard-deposit-warning.png` (the low reserve) and
//! `dashboard-deposit.png` (unlocking).

use std::sync::Arc;
use std::time::Duration;

use alloy::sol_types::SolCall;
use livepeer_gateway::Gateway;
use livepeer_gateway::config::{ChainConfig, Network};
use livepeer_pm::{LocalSigner, U256};
use livepeer_sim::{Sim, SimConfig, SimModel};
use serde_json::Value;

use crate::cdp::{Browser, Page};
use crate::ganache::{self, GATEWAY_KEY, Node, Protocol, compile, orch_address};
use crate::support::{SD, config, small_t2i};

const TOKEN: &str = "deposit-view-test-admin-token-01";

/// The warning threshold: the small starting reserve lasts far less at one request's spend.
const WARN_HOURS: u64 = 1_000_000;

/// The starting reserve, 0.001 ETH.
const RESERVE: u64 = 1_000_000_000_000_000;

/// How long the page may take to show a change (it polls every second; funds are read every
/// 100 ms).
const SHOWN_WITHIN: Duration = Duration::from_secs(15);

async fn status(gw: &Gateway) -> Value {
    let url = format!("http://{}/status", gw.admin_addr);
    let resp = reqwest::Client::new().get(url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

/// What the deposit view should show of `status`'s unlock state.
fn unlocking_text(status: &Value) -> Option<String> {
    let f = &status["payments"]["funds"];
    if f.is_null() {
        return None;
    }
    Some(if f["unlocking"] == true {
        let soon = if f["unlocks_soon"] == true { " (payments stopped)" } else { "" };
        format!("yes, withdraw round {}{soon}", f["withdraw_round"].as_str().unwrap())
    } else {
        "no".to_owned()
    })
}

/// What the deposit view should show of `status`'s reserve outlook.
fn hours_text(status: &Value) -> Option<String> {
    let r = &status["payments"]["reserve"];
    if r.is_null() {
        return None;
    }
    Some(match r["reserve_hours"].as_str() {
        None => "for ever (no spend in the last hour)".to_owned(),
        Some(h) => format!("{h} h at {} wei an hour", r["spend_per_hour_wei"].as_str().unwrap()),
    })
}

fn funds_text(key: &'static str) -> impl Fn(&Value) -> Option<String> {
    move |s| s["payments"]["funds"][key].as_str().map(str::to_owned)
}

fn warning_text(status: &Value) -> Option<String> {
    status["payments"]["reserve"]["warning"].as_str().map(str::to_owned)
}

/// Polls until the text of `selector` (`None`: no such element) is what `expect` makes of a
/// fresh `/status`, and that is `want` when given; the `/status` it agreed with. The page polls
/// the same JSON every second, so the two agree within a poll or two.
async fn agrees(
    page: &Page<'_>,
    gw: &Gateway,
    selector: &str,
    expect: impl Fn(&Value) -> Option<String>,
    want: Option<&str>,
) -> Value {
    let deadline = tokio::time::Instant::now() + SHOWN_WITHIN;
    loop {
        let status = status(gw).await;
        let expected = expect(&status);
        let shown = page.text(selector).await;
        let wanted = want.is_none_or(|w| expected.as_deref() == Some(w));
        if shown == expected && wanted {
            return status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{selector}: the page shows {shown:?}, /status makes it {expected:?} (want {want:?})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The deposit view and the element absent: `#pay-warning` with no warning in `/status`.
async fn no_warning(page: &Page<'_>, gw: &Gateway) {
    let deadline = tokio::time::Instant::now() + SHOWN_WITHIN;
    loop {
        let shown = page.text("#pay-warning").await;
        let warned = warning_text(&status(gw).await);
        if shown.is_none() && warned.is_none() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "a warning: the page shows {shown:?}, /status has {warned:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_deposit_reserve_unlock_and_warning_on_chain() {
    let Some(browser) = Browser::launch().await else { return };
    let Some(bins) = compile() else { return };
    let Some(node) = Node::start(1337).await else { return };
    let p = Protocol::deploy(&node, &bins, 10, 2).await;
    let me = node.accounts[1];
    let key = LocalSigner::from_hex(GATEWAY_KEY).unwrap();
    assert_eq!(key.address(), me, "the gateway signs as ganache account 1");
    let eth = U256::from(10u64).pow(U256::from(18));
    let reserve = U256::from(RESERVE);
    let fund = ganache::fundDepositAndReserveCall { _depositAmount: eth, _reserveAmount: reserve };
    node.send(me, Some(p.broker), &fund.abi_encode(), eth + reserve).await;

    let sim = Sim::start(SimConfig {
        eth_address: Some(orch_address(7)),
        models: vec![SimModel::new("text-to-image", SD).price(1_000, 1)],
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(&[sim.url()]);
    c.signer = Some(Arc::new(key));
    c.keys.data_dir = dir.path().to_path_buf();
    c.keys.admin_token = Some(TOKEN.to_owned().into());
    c.chain = Some(ChainConfig {
        url: node.url.clone(),
        controller: p.controller,
        refresh: Duration::from_millis(100),
        network: Network::Custom("devchain".into()),
        ai_service_registry: None,
        pool_refresh: Duration::from_secs(3600),
        reserve_warning_hours: WARN_HOURS,
    });
    let gw = Gateway::start(c).await.unwrap();

    let base = format!("http://{}/", gw.admin_addr);
    let page = browser.open(&format!("{base}#token={TOKEN}"), 1400, 1000).await;
    page.wait_for(
        "document.getElementById('pay-deposit') !== null",
        SHOWN_WITHIN,
        "the deposit view",
    )
    .await;

    // Funded, not unlocking, nothing spent: the reserve lasts for ever and nobody is warned.
    let on_chain = node.client.sender_info_at(p.broker, me).await.unwrap();
    let s = agrees(&page, &gw, "#pay-deposit", funds_text("deposit_wei"), None).await;
    assert_eq!(s["payments"]["funds"]["deposit_wei"], on_chain.deposit.to_string(), "{s}");
    assert_eq!(page.text("#pay-deposit").await.as_deref(), Some("1000000000000000000"));
    let s = agrees(&page, &gw, "#pay-reserve", funds_text("reserve_wei"), None).await;
    assert_eq!(s["payments"]["funds"]["reserve_wei"], on_chain.reserve.to_string(), "{s}");
    assert_eq!(page.text("#pay-reserve").await, Some(RESERVE.to_string()));
    let sender = page.text("#pay-sender").await.unwrap();
    assert_eq!(sender, me.to_checksum(None));
    agrees(&page, &gw, "#pay-unlocking", unlocking_text, Some("no")).await;
    let hours = Some("for ever (no spend in the last hour)");
    agrees(&page, &gw, "#pay-hours", hours_text, hours).await;
    no_warning(&page, &gw).await;

    // One paid request: at its spend the small reserve lasts fewer than WARN_HOURS hours.
    let (code, body) = small_t2i(&gw).await;
    assert_eq!(code, 200, "{body}");
    let s = agrees(&page, &gw, "#pay-warning", warning_text, None).await;
    let warning = page.text("#pay-warning").await.unwrap();
    assert!(warning.contains(&format!("less than {WARN_HOURS} h")), "{warning}");
    assert!(warning.contains("livepeer-gateway deposit"), "{warning}");
    let spend = s["payments"]["reserve"]["spend_per_hour_wei"].as_str().unwrap();
    let spend: U256 = spend.parse().unwrap();
    assert!(!spend.is_zero(), "{s}");
    let s = agrees(&page, &gw, "#pay-hours", hours_text, None).await;
    let shown = page.text("#pay-hours").await.unwrap();
    let h: f64 = s["payments"]["reserve"]["reserve_hours"].as_str().unwrap().parse().unwrap();
    assert!(h < WARN_HOURS as f64, "{shown}");
    assert!(shown.ends_with(" wei an hour"), "{shown}");
    eprintln!("low reserve: {shown}; {warning}");

    // Its payment session: the ticket EV (exact, a fraction with a 77-digit denominator) shown
    // as whole wei, the sim's 8 gwei, with the exact figures in the cell's title; nothing is
    // wider than the window.
    let session = "#sessions-table td.session";
    page.wait_for(&format!("document.querySelector('{session}')"), SHOWN_WITHIN, "the session")
        .await;
    let text = page.text(session).await.unwrap();
    assert!(text.contains("ticket EV ≈8000000000 wei, nonces 1, credit "), "{text}");
    let s = status(&gw).await;
    let json = &s["payments"]["sessions"][0];
    let (ev, credit) =
        (json["ticket_ev_wei"].as_str().unwrap(), json["credit_wei"].as_str().unwrap());
    assert!(ev.contains('/'), "an exact fraction: {ev}");
    let title = page.eval(&format!("document.querySelector('{session}').title")).await;
    assert_eq!(title, format!("ticket EV {ev} wei, credit {credit} wei"), "{json}");
    let wide = "document.documentElement.scrollWidth - window.innerWidth";
    assert_eq!(page.eval(wide).await, 0, "the page is wider than the window");
    page.screenshot("dashboard-deposit-warning").await;

    // Topped up ten times over what WARN_HOURS take at that spend (which only falls from now
    // on: no more requests): the warning goes.
    let extra = spend * U256::from(WARN_HOURS) * U256::from(10u64);
    assert!(extra < eth * U256::from(500u64), "the test account can pay {extra}");
    let top_up =
        ganache::fundDepositAndReserveCall { _depositAmount: U256::ZERO, _reserveAmount: extra };
    node.send(me, Some(p.broker), &top_up.abi_encode(), extra).await;
    let topped = (reserve + extra).to_string();
    agrees(&page, &gw, "#pay-reserve", funds_text("reserve_wei"), Some(&topped)).await;
    no_warning(&page, &gw).await;
    let s = agrees(&page, &gw, "#pay-hours", hours_text, None).await;
    let h: f64 = s["payments"]["reserve"]["reserve_hours"].as_str().unwrap().parse().unwrap();
    assert!(h >= WARN_HOURS as f64, "{s}");
    assert_eq!(page.text("#pay-deposit").await.as_deref(), Some("1000000000000000000"));

    // An unlock started on chain at round 10 completes at round 12: shown as unlocking, still
    // paying; at round 11 payments stop (withdrawRound <= lastInitializedRound + 1).
    node.send(me, Some(p.broker), &ganache::unlockCall {}.abi_encode(), U256::ZERO).await;
    agrees(&page, &gw, "#pay-unlocking", unlocking_text, Some("yes, withdraw round 12")).await;
    p.set_round(&node, 11).await;
    let stopped = Some("yes, withdraw round 12 (payments stopped)");
    agrees(&page, &gw, "#pay-unlocking", unlocking_text, stopped).await;
    let shot = page.screenshot("dashboard-deposit").await;
    eprintln!("screenshot: {}", shot.display());
    gw.shutdown().await;
}
