//! go-livepeer's CLI routes on the admin port, as `livepeer_cli` and go-livepeer dashboards
//! call them: `/status` with `NodeStatus`'s Go field names beside ours, the broadcast config
//! read and written (form-encoded POSTs, plain-text errors), the price caps those writes set
//! obeyed by selection at once, and the writes kept from web pages by the admin guard.

use std::net::SocketAddr;

use livepeer_gateway::Gateway;
use livepeer_sim::{Sim, SimConfig, SimModel};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::support::*;

/// An answer as `livepeer_cli` sees it: status, `Content-Type`, body text.
type Answer = (u16, String, String);

/// A form, the status it gets and a text its answer holds.
type FormCase<'a> = (&'a [(&'a str, &'a str)], u16, &'a str);

async fn answer(resp: reqwest::Response) -> Answer {
    let status = resp.status().as_u16();
    let kind = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, kind, resp.text().await.unwrap())
}

pub async fn cli_get(gw: &Gateway, path: &str) -> Answer {
    answer(reqwest::get(format!("http://{}{path}", gw.admin_addr)).await.unwrap()).await
}

/// A POST as `livepeer_cli`'s `httpPostWithParams` sends it: the form in the body,
/// `application/x-www-form-urlencoded`.
pub async fn cli_post(gw: &Gateway, path: &str, form: &[(&str, &str)]) -> Answer {
    let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
    let resp = reqwest::Client::new()
        .post(format!("http://{}{path}", gw.admin_addr))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    answer(resp).await
}

/// `/getBroadcastConfig`'s JSON.
async fn broadcast_config(gw: &Gateway) -> Value {
    let (status, kind, body) = cli_get(gw, "/getBroadcastConfig").await;
    assert_eq!((status, kind.as_str()), (200, "application/json"), "{body}");
    serde_json::from_str(&body).unwrap()
}

/// The error type of a dry-run selection of `pipeline`/`model`, `None` when one is selected.
async fn refusal(gw: &Gateway, pipeline: &str, model: &str) -> Option<String> {
    let (status, body) = admin_get(gw, &format!("/select?pipeline={pipeline}&model={model}")).await;
    (status != 200).then(|| body["error"]["type"].as_str().unwrap_or("?").to_owned())
}

/// A simulator transcoding at 5 wei a pixel, with `SD` at 5 and `SDXL` at 10.
async fn priced_sim() -> Sim {
    Sim::start(SimConfig {
        name: "priced".into(),
        base_price: (5, 1),
        models: vec![
            SimModel::new("text-to-image", SD).price(5, 1),
            SimModel::new("text-to-image", SDXL).price(10, 1),
        ],
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

/// Go's `runtime.GOARCH` for this machine.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

#[tokio::test]
async fn status_serves_go_livepeers_node_status_beside_ours() {
    let sim = TextSim::new("a").start().await;
    let gw = start(config(&[sim.url()])).await;
    let (status, kind, body) = cli_get(&gw, "/status").await;
    assert_eq!((status, kind.as_str()), (200, "application/json"), "{body}");
    let s: Value = serde_json::from_str(&body).unwrap();

    // Ours, for our dashboard, all there.
    assert_eq!(s["pool"]["orchestrators"], 1, "{s}");
    assert!(s["config"].is_object() && s["uptime_ms"].is_u64(), "{s}");
    assert_eq!(s["version"], env!("CARGO_PKG_VERSION"));

    // go-livepeer's `NodeStatus`, Go's names and encodings.
    assert_eq!(s["OrchestratorPool"], json!([sim.url()]), "no `/` added: {s}");
    let info = &s["OrchestratorPoolInfos"][0];
    let host = sim.url().strip_prefix("http://").unwrap();
    assert_eq!(info["Url"]["Scheme"], "http", "a url.URL struct: {info}");
    assert_eq!(info["Url"]["Host"], host);
    assert_eq!((&info["Url"]["Path"], &info["Url"]["User"]), (&json!(""), &Value::Null));
    assert_eq!(info["Score"], 1.0, "a static list is trusted, as go-livepeer scores it");
    assert!(info["Latency"].as_u64().is_some_and(|ns| ns > 0), "nanoseconds: {info}");
    assert_eq!(s["Version"], env!("CARGO_PKG_VERSION"), "the same text as `version`");
    assert_eq!(s["GolangRuntimeVersion"], "");
    assert_eq!(s["GOArch"], go_arch());
    assert_eq!(s["GOOS"], if cfg!(target_os = "macos") { "darwin" } else { std::env::consts::OS });
    for (field, empty) in [
        ("Manifests", json!({})),
        ("InternalManifests", json!({})),
        ("StreamInfo", json!({})),
        ("RegisteredTranscoders", json!([])),
        ("BroadcasterPrices", json!({})),
        ("RegisteredTranscodersNumber", json!(0)),
        ("LocalTranscoding", json!(false)),
    ] {
        assert_eq!(s[field], empty, "{field}");
    }

    // The trivial routes `livepeer_cli` asks at start, and the streams' ids (none yet).
    for (path, text) in [
        ("/IsOrchestrator", "false"),
        ("/IsRedeemer", "false"),
        ("/EthChainID", "0"),
        ("/localStreams", "[]"),
        ("/getLogLevel", "info"),
        ("/manifestID", ""),
        ("/streamID", "/"),
    ] {
        let (status, _, body) = cli_get(&gw, path).await;
        assert_eq!((status, body.as_str()), (200, text), "{path}");
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn off_chain_the_account_routes_answer_missing_eth_client() {
    let gw = start(config(&[])).await;
    for path in [
        "/ethAddr",
        "/senderInfo",
        "/currentRound",
        "/contractAddresses",
        "/ethBalance",
        "/tokenBalance",
    ] {
        let (status, kind, body) = cli_get(&gw, path).await;
        assert_eq!(status, 500, "{path}");
        assert_eq!(
            (kind.as_str(), body.as_str()),
            ("text/plain; charset=utf-8", "missing ETH client\n")
        );
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn set_broadcast_config_moves_the_price_cap_selection_obeys() {
    let sim = priced_sim().await;
    let gw = start(config(&[sim.url()])).await;
    let defaults = "P240p30fps16x9,P360p30fps16x9";
    let config = broadcast_config(&gw).await;
    assert_eq!(config, json!({"MaxPrice": null, "TranscodingOptions": defaults}));
    assert_eq!(refusal(&gw, "transcode", "").await, None);
    assert_eq!(refusal(&gw, "text-to-image", SD).await, None);

    // What `livepeer_cli`'s "Set broadcast config" sends, keeping the running presets.
    let form = [
        ("pixelsPerUnit", "1"),
        ("currency", "Wei"),
        ("maxPricePerUnit", "4"),
        ("transcodingOptions", defaults),
    ];
    let (status, _, body) = cli_post(&gw, "/setBroadcastConfig", &form).await;
    assert_eq!((status, body.as_str()), (200, ""));
    assert_eq!(broadcast_config(&gw).await["MaxPrice"], "4", "an integer Rat has no /1");
    assert_eq!(refusal(&gw, "transcode", "").await.as_deref(), Some("over_max_price"));
    assert_eq!(refusal(&gw, "text-to-image", SD).await.as_deref(), Some("over_max_price"));
    let (status, body) = small_t2i(&gw).await;
    assert_eq!((status, &body["error"]["type"]), (503, &json!("over_max_price")), "{body}");

    // A fraction, in lowest terms: 5 is within 11/2.
    let form = [("maxPricePerUnit", "22"), ("pixelsPerUnit", "4")];
    assert_eq!(cli_post(&gw, "/setBroadcastConfig", &form).await.0, 200);
    assert_eq!(broadcast_config(&gw).await["MaxPrice"], "11/2");
    assert_eq!(refusal(&gw, "transcode", "").await, None);
    let (status, body) = small_t2i(&gw).await;
    assert_eq!(status, 200, "{body}");
    let (_, s) = admin_get(&gw, "/status").await;
    assert_eq!(s["config"]["max_price_per_unit"], "11/2", "/status shows the cap in force");

    // `livepeer_cli` sends the presets in the order its operator typed them: the running ones
    // in another order are no change (and the order streams get stays).
    let form = [
        ("maxPricePerUnit", "3"),
        ("pixelsPerUnit", "1"),
        ("transcodingOptions", "P360p30fps16x9,P240p30fps16x9"),
    ];
    let (status, _, body) = cli_post(&gw, "/setBroadcastConfig", &form).await;
    assert_eq!((status, body.as_str()), (200, ""));
    let config = broadcast_config(&gw).await;
    assert_eq!(config, json!({"MaxPrice": "3", "TranscodingOptions": defaults}));

    // 0 accepts any price again.
    let form = [("maxPricePerUnit", "0"), ("pixelsPerUnit", "1"), ("currency", "Wei")];
    assert_eq!(cli_post(&gw, "/setBroadcastConfig", &form).await.0, 200);
    assert_eq!(broadcast_config(&gw).await["MaxPrice"], Value::Null);
    gw.shutdown().await;
}

#[tokio::test]
async fn bad_broadcast_configs_get_go_livepeers_400s_and_change_nothing() {
    let gw = start(config(&[])).await;
    let cases: &[FormCase<'_>] = &[
        (&[], 400, "missing form params (maxPricePerUnit AND pixelsPerUnit) or transcodingOptions"),
        (&[("maxPricePerUnit", "1")], 400, "missing form params"),
        (
            &[("maxPricePerUnit", "abc"), ("pixelsPerUnit", "1")],
            400,
            "Error parsing pricePerUnit value: abc",
        ),
        (
            &[("maxPricePerUnit", "1"), ("pixelsPerUnit", "x")],
            400,
            "Error parsing pixelsPerUnit value: x",
        ),
        (
            &[("maxPricePerUnit", "1"), ("pixelsPerUnit", "0")],
            400,
            "pixels per unit must be greater than 0, provided 0",
        ),
        (&[("maxPricePerUnit", "-1"), ("pixelsPerUnit", "1")], 400, "must not be negative"),
        (
            &[("maxPricePerUnit", "1"), ("pixelsPerUnit", "1"), ("currency", "USD")],
            400,
            "error converting price",
        ),
        (&[("transcodingOptions", "P999p,nope")], 400, "invalid transcoding options: P999p,nope"),
        // go-livepeer reads 010/1 as 8 (octal): never a cap above the one it would set.
        (
            &[("maxPricePerUnit", "010/1"), ("pixelsPerUnit", "1")],
            400,
            "Error parsing pricePerUnit value: 010/1: go-livepeer reads",
        ),
        (
            &[("maxPricePerUnit", "1"), ("pixelsPerUnit", "1/0x10")],
            400,
            "Error parsing pixelsPerUnit value: 1/0x10: go-livepeer reads",
        ),
        // The running presets twice are not the running presets.
        (
            &[("transcodingOptions", "P240p30fps16x9,P360p30fps16x9,P240p30fps16x9")],
            501,
            "cannot change",
        ),
        // Valid, but the streams' defaults cannot change yet: refused whole, price included.
        (
            &[
                ("maxPricePerUnit", "1"),
                ("pixelsPerUnit", "1"),
                ("transcodingOptions", "P720p30fps16x9"),
            ],
            501,
            "cannot change",
        ),
    ];
    for (form, status, text) in cases {
        let (got, kind, body) = cli_post(&gw, "/setBroadcastConfig", form).await;
        assert_eq!(got, *status, "{form:?}: {body}");
        assert_eq!(kind, "text/plain; charset=utf-8", "{form:?}");
        assert!(body.starts_with(text) || body.contains(text), "{form:?}: {body}");
        assert!(body.ends_with('\n'), "http.Error's newline: {body:?}");
    }
    assert_eq!(broadcast_config(&gw).await["MaxPrice"], Value::Null, "nothing was set");
    let (status, kind, body) = cli_get(&gw, "/getAvailableTranscodingOptions").await;
    assert_eq!((status, kind.as_str()), (200, "application/json"));
    let presets: Vec<String> = serde_json::from_str(&body).unwrap();
    assert!(presets.contains(&"P720p30fps16x9".to_owned()) && presets.len() == 13, "{presets:?}");
    gw.shutdown().await;
}

#[tokio::test]
async fn set_max_price_for_capability_caps_one_model_or_a_whole_pipeline() {
    let sim = priced_sim().await;
    let gw = start(config(&[sim.url()])).await;
    let set = |model: &'static str, price: &'static str| {
        let gw = &gw;
        async move {
            let form = [
                ("maxPricePerUnit", price),
                ("pixelsPerUnit", "1"),
                ("currency", "Wei"),
                ("pipeline", "text-to-image"),
                ("modelID", model),
            ];
            cli_post(gw, "/setMaxPriceForCapability", &form).await
        }
    };
    assert_eq!(set(SD, "4").await.0, 200);
    assert_eq!(refusal(&gw, "text-to-image", SD).await.as_deref(), Some("over_max_price"));
    assert_eq!(refusal(&gw, "text-to-image", SDXL).await, None, "another model is not capped");
    assert_eq!(refusal(&gw, "transcode", "").await, None, "nor transcoding");
    assert_eq!(set("default", "9").await.0, 200);
    assert_eq!(refusal(&gw, "text-to-image", SDXL).await.as_deref(), Some("over_max_price"));
    assert_eq!(set(SD, "6").await.0, 200);
    assert_eq!(refusal(&gw, "text-to-image", SD).await, None, "the model's own cap wins");
    assert_eq!(broadcast_config(&gw).await["MaxPrice"], Value::Null, "the global cap is apart");

    let full = [
        ("maxPricePerUnit", "1"),
        ("pixelsPerUnit", "1"),
        ("currency", "Wei"),
        ("pipeline", "text-to-image"),
        ("modelID", "default"),
    ];
    let without = |name: &str| full.iter().filter(|(k, _)| *k != name).copied().collect::<Vec<_>>();
    let with = |name: &str, value: &'static str| {
        full.iter().map(|&(k, v)| if k == name { (k, value) } else { (k, v) }).collect::<Vec<_>>()
    };
    let cases = [
        (without("currency"), "missing form param: currency\n"),
        (without("modelID"), "missing form param: modelID\n"),
        (with("pipeline", "nope"), "pipeline not supported\n"),
        (with("maxPricePerUnit", "0"), "pricePerPixel needs to be > 0: 0.000\n"),
        (with("pixelsPerUnit", "-2"), "pixels per unit must be greater than 0, provided -2\n"),
    ];
    for (form, text) in cases {
        let (status, _, body) = cli_post(&gw, "/setMaxPriceForCapability", &form).await;
        assert_eq!((status, body.as_str()), (400, text), "{form:?}");
    }
    assert_eq!(refusal(&gw, "text-to-image", SDXL).await.as_deref(), Some("over_max_price"));
    gw.shutdown().await;
}

/// One HTTP/1.1 request written as is (`extra` header lines end in CRLF): status and body.
async fn raw(addr: SocketAddr, head: &str, extra: &str, body: &str) -> (u16, String) {
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{head} HTTP/1.1\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).await.unwrap();
    let status = answer.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, answer.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default())
}

#[tokio::test]
async fn the_writes_refuse_web_pages_without_a_token_and_anyone_without_one_when_set() {
    let gw = start(config(&[])).await;
    let admin = gw.admin_addr;
    let form = "Content-Type: application/x-www-form-urlencoded\r\n";
    let body = "maxPricePerUnit=7&pixelsPerUnit=1";
    let local = format!("Host: {admin}\r\n");
    for (what, head, extra, status) in [
        (
            "a rebound page",
            "POST /setBroadcastConfig",
            format!("Host: attacker.example:5935\r\n{form}"),
            403,
        ),
        (
            "a cross-site form",
            "POST /setBroadcastConfig",
            format!("{local}Origin: https://attacker.example\r\n{form}"),
            403,
        ),
        (
            "a page without Origin",
            "POST /setBroadcastConfig",
            format!("{local}Sec-Fetch-Site: cross-site\r\n{form}"),
            403,
        ),
        (
            "another local port's page",
            "POST /setBroadcastConfig",
            format!("{local}Sec-Fetch-Site: same-site\r\n{form}"),
            403,
        ),
        (
            "an image's GET",
            "GET /setBroadcastConfig?maxPricePerUnit=7&pixelsPerUnit=1",
            local.clone(),
            405,
        ),
        (
            "a GET per capability",
            "GET /setMaxPriceForCapability?maxPricePerUnit=7",
            local.clone(),
            405,
        ),
    ] {
        let (got, answer) = raw(admin, head, &extra, body).await;
        assert_eq!(got, status, "{what}: {answer}");
    }
    assert_eq!(broadcast_config(&gw).await["MaxPrice"], Value::Null, "no page changed it");
    // The dashboard's own page (same origin), and a local tool, may.
    let own = format!("{local}Origin: http://{admin}\r\nSec-Fetch-Site: same-origin\r\n{form}");
    assert_eq!(raw(admin, "POST /setBroadcastConfig", &own, body).await.0, 200);
    assert_eq!(broadcast_config(&gw).await["MaxPrice"], "7");
    gw.shutdown().await;

    let mut c = config(&[]);
    c.keys.admin_token = Some(crate::keys::TOKEN.to_owned().into());
    let gw = start(c).await;
    let answer =
        cli_post(&gw, "/setBroadcastConfig", &[("maxPricePerUnit", "7"), ("pixelsPerUnit", "1")])
            .await;
    assert_eq!(answer.0, 401, "{answer:?}");
    assert_eq!(cli_get(&gw, "/getBroadcastConfig").await.0, 401);
    assert_eq!(cli_get(&gw, "/status").await.0, 401);
    let resp = reqwest::Client::new()
        .post(format!("http://{}/setBroadcastConfig", gw.admin_addr))
        .bearer_auth(crate::keys::TOKEN)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    gw.shutdown().await;
}

#[tokio::test]
async fn transcoding_streams_are_go_manifests_in_status() {
    let sim = crate::transcode::sim("t", true).await;
    let gw = start(crate::transcode::gateway_config(&[&sim])).await;
    let resp = crate::transcode::push(&gw, "m1", 0, None).await;
    assert_eq!(resp.status(), 200);
    let (_, s) = admin_get(&gw, "/status").await;
    let variants = s["Manifests"]["m1"]["Variants"].as_array().cloned().unwrap_or_default();
    let uris: Vec<&str> = variants.iter().map(|v| v["URI"].as_str().unwrap()).collect();
    assert_eq!(uris, ["m1/low.m3u8", "m1/mid.m3u8", "m1/source.m3u8"], "{s}");
    assert_eq!(
        (&variants[0]["Bandwidth"], &variants[0]["Resolution"]),
        (&json!(200_000), &json!("256x144"))
    );
    let info = &s["StreamInfo"]["m1"];
    let pushed = crate::transcode::segment().len() as u64;
    assert_eq!(
        (info["SourceBytes"].as_u64(), info["TranscodedBytes"].as_u64()),
        (Some(pushed), Some(0))
    );
    assert_eq!(cli_get(&gw, "/manifestID").await.2, "m1");
    assert_eq!(cli_get(&gw, "/streamID").await.2, "m1/source");
    gw.shutdown().await;
}

/// A gateway paying with its own key, whose cap starts below the orchestrator's price: a cap
/// raised through the CLI route is both selected and paid at (the payments read the same cell).
#[tokio::test]
async fn a_cap_raised_at_runtime_is_paid_at_too() {
    let sim = Sim::start(SimConfig {
        name: "paid".into(),
        eth_address: Some(livepeer_pm::Address::from([7u8; 20])),
        models: vec![SimModel::new("text-to-image", SD).price(5, 1).capacity(8)],
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let mut c = config(&[sim.url()]);
    let key = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
    c.signer = Some(std::sync::Arc::new(livepeer_pm::LocalSigner::from_hex(key).unwrap()));
    c.requirements.max_price =
        Some(livepeer_gateway::orchestrator::price::Price::new(4, 1).unwrap());
    let gw = start(c).await;
    assert_eq!(broadcast_config(&gw).await["MaxPrice"], "4", "the flag's cap");
    let (status, body) = small_t2i(&gw).await;
    assert_eq!((status, &body["error"]["type"]), (503, &json!("over_max_price")), "{body}");

    let form = [("maxPricePerUnit", "6"), ("pixelsPerUnit", "1"), ("currency", "Wei")];
    assert_eq!(cli_post(&gw, "/setBroadcastConfig", &form).await.0, 200);
    let (status, body) = small_t2i(&gw).await;
    assert_eq!(status, 200, "selected and paid within the new cap: {body}");
    let payments = sim.payments();
    assert!(payments.rejections.is_empty(), "{:?}", payments.rejections);
    assert!(!payments.ev_received.is_empty(), "the orchestrator was paid");
    gw.shutdown().await;
}

/// go-livepeer's CLI routes the gateway does not serve, some of which `livepeer_cli` decodes
/// without looking at the status.
const NOT_SERVED: &[&str] = &[
    "/delegatorInfo",
    "/unbond",
    "/unbondingLocks",
    "/registeredOrchestrators",
    "/orchestratorInfo",
    "/protocolParameters",
    "/currentBlock",
    "/getAISessionPoolsInfo",
    "/getNetworkCapabilities",
    "/maxGasPrice",
    "/fundDeposit",
    "/unlock",
    "/setLogLevel",
    "/debug",
    "/debug/pprof/",
    "/debug/pprof/heap",
];

/// `livepeer_cli` decodes `/delegatorInfo` into a `Delegator` whatever the status: a JSON
/// object (our own 404's) decodes into one with nil amounts, which it then dereferences and
/// crashes on. Go's own 404 is plain text, which fails to decode, and it carries on.
#[tokio::test]
async fn routes_not_served_answer_gos_plain_404_which_no_json_decoder_takes() {
    let gw = start(config(&[])).await;
    let client = reqwest::Client::new();
    for path in NOT_SERVED {
        for method in [reqwest::Method::GET, reqwest::Method::POST] {
            let url = format!("http://{}{path}", gw.admin_addr);
            let resp = client.request(method.clone(), url).send().await.unwrap();
            let header = |name: &str| {
                resp.headers().get(name).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
            };
            let (kind, nosniff) = (header("content-type"), header("x-content-type-options"));
            let status = resp.status().as_u16();
            let body = resp.text().await.unwrap();
            assert_eq!((status, body.as_str()), (404, "404 page not found\n"), "{method} {path}");
            assert_eq!(
                (kind.as_str(), nosniff.as_str()),
                ("text/plain; charset=utf-8", "nosniff"),
                "{path}"
            );
            assert!(serde_json::from_str::<Value>(&body).is_err(), "{path}: decodes: {body}");
        }
    }
    // Off-chain, `/ticketBrokerParams` answers go-livepeer's off-chain 500, no JSON either.
    let (status, _, body) = cli_get(&gw, "/ticketBrokerParams").await;
    assert_eq!((status, body.as_str()), (500, "missing ETH client\n"));
    assert!(serde_json::from_str::<Value>(&body).is_err());
    // A path go-livepeer does not have either keeps our JSON 404.
    let (status, body) = admin_get(&gw, "/noSuchRoute").await;
    assert_eq!((status, &body["error"]["type"]), (404, &json!("not_found")), "{body}");
    gw.shutdown().await;
}

/// A web page can make the browser send a GET without `Origin` (an image), which the loopback
/// guard lets through; the browser marks it with `Sec-Fetch-Site`, and every CLI route, reads
/// (which may call the chain endpoint) included, refuses it, token or not.
#[tokio::test]
async fn every_cli_route_refuses_a_page_of_another_origin() {
    let gw = start(config(&[])).await;
    let admin = gw.admin_addr;
    let local = format!("Host: {admin}\r\n");
    for path in ["/ethBalance", "/tokenBalance", "/status", "/getBroadcastConfig", "/delegatorInfo"]
    {
        for site in ["cross-site", "same-site"] {
            let head = format!("{local}Sec-Fetch-Site: {site}\r\n");
            let (status, body) = raw(admin, &format!("GET {path}"), &head, "").await;
            assert_eq!(status, 403, "{path} from a {site} page: {body}");
            assert!(body.starts_with("refused: a web page of another origin"), "{body}");
        }
    }
    // The dashboard's own page, an address typed in, and tools (no header) pass.
    let passes = [("same-origin", 500), ("none", 500)];
    for (site, status) in passes {
        let head = format!("{local}Sec-Fetch-Site: {site}\r\n");
        let (got, body) = raw(admin, "GET /ethBalance", &head, "").await;
        assert_eq!((got, body.as_str()), (status, "missing ETH client\n"), "{site}");
    }
    let (got, body) = raw(admin, "GET /ethBalance", &local, "").await;
    assert_eq!((got, body.as_str()), (500, "missing ETH client\n"), "no header");
    let same = format!("{local}Sec-Fetch-Site: same-origin\r\n");
    assert_eq!(raw(admin, "GET /status", &same, "").await.0, 200);
    gw.shutdown().await;

    let mut c = config(&[]);
    c.keys.admin_token = Some(crate::keys::TOKEN.to_owned().into());
    let gw = start(c).await;
    let token =
        format!("Host: {}\r\nAuthorization: Bearer {}\r\n", gw.admin_addr, crate::keys::TOKEN);
    let cross = format!("{token}Sec-Fetch-Site: cross-site\r\n");
    assert_eq!(raw(gw.admin_addr, "GET /ethBalance", &cross, "").await.0, 403, "token or not");
    assert_eq!(raw(gw.admin_addr, "GET /ethBalance", &token, "").await.0, 500);
    gw.shutdown().await;
}

/// A write keeps at most 64 parameters, query and body together: a request head may be 1 MiB.
#[tokio::test]
async fn a_write_with_too_many_params_is_refused() {
    let gw = start(config(&[])).await;
    let admin = gw.admin_addr;
    let head = format!("Host: {admin}\r\nContent-Type: application/x-www-form-urlencoded\r\n");
    let junk = |n: usize| (0..n).map(|i| format!("x{i}=1&")).collect::<String>();
    let price = "maxPricePerUnit=7&pixelsPerUnit=1";
    let (status, body) =
        raw(admin, "POST /setBroadcastConfig", &head, &format!("{}{price}", junk(63))).await;
    assert_eq!((status, body.as_str()), (400, "too many form params: at most 64\n"));
    let query = format!("POST /setBroadcastConfig?{}", junk(40).trim_end_matches('&'));
    let (status, body) = raw(admin, &query, &head, &format!("{}{price}", junk(23))).await;
    assert_eq!(status, 400, "query and body together: {body}");
    assert_eq!(broadcast_config(&gw).await["MaxPrice"], Value::Null);
    let (status, body) =
        raw(admin, "POST /setBroadcastConfig", &head, &format!("{}{price}", junk(62))).await;
    assert_eq!((status, body.as_str()), (200, ""), "64 in all");
    assert_eq!(broadcast_config(&gw).await["MaxPrice"], "7");
    gw.shutdown().await;
}

/// At most 1,024 per-model caps; setting one already there is always allowed.
#[tokio::test]
async fn per_capability_caps_are_bounded() {
    let gw = start(config(&[])).await;
    // One client for the thousand requests: making one costs tens of milliseconds.
    let client = reqwest::Client::new();
    let set = |model: String, price: &'static str| {
        let (gw, client) = (&gw, &client);
        async move {
            let form = [
                ("maxPricePerUnit", price),
                ("pixelsPerUnit", "1"),
                ("currency", "Wei"),
                ("pipeline", "text-to-image"),
                ("modelID", model.as_str()),
            ];
            let body =
                url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
            let resp = client
                .post(format!("http://{}/setMaxPriceForCapability", gw.admin_addr))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        }
    };
    for i in 0..1024 {
        assert_eq!(set(format!("m{i}"), "5").await.0, 200, "{i}");
    }
    let (status, body) = set("one-more".into(), "5").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.starts_with("too many price caps per capability: at most 1024"), "{body}");
    assert_eq!(set("m3".into(), "6").await.0, 200, "a cap already there may change");
    let (_, s) = admin_get(&gw, "/status").await;
    assert_eq!(s["config"]["max_price_per_model"], 1024, "{s}");
    gw.shutdown().await;
}
