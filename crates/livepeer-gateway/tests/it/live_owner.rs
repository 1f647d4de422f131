//! Live streams are owned (issue 11, items 3 and 6): one of many concurrent starts of a name
//! wins and only it reaches (and pays) an orchestrator; only the client that started a stream
//! may read, update, stop or replace it (a restart by its owner stops the old stream, as
//! go-livepeer does); names that are path steps are refused; and start/stop
//! cycles keep a bounded number of stopped streams.

use std::sync::Arc;
use std::time::Duration;

use livepeer_gateway::Gateway;
use livepeer_gateway::config::Config;
use livepeer_pm::LocalSigner;
use livepeer_sim::{Sim, SimConfig, SimModel};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

const KEY: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";

/// A simulated orchestrator offering live `noop` for 32 streams; on-chain and priced when
/// `eth` is set, so that every start call carries a payment it counts.
async fn live_sim(name: &str, eth: Option<u8>) -> Sim {
    Sim::start(SimConfig {
        name: name.into(),
        eth_address: eth.map(|n| {
            let mut a = [0u8; 20];
            a[19] = n;
            livepeer_pm::Address::from(a)
        }),
        models: vec![
            SimModel::new("live-video-to-video", "noop")
                .price(i64::from(eth.is_some()), 1)
                .capacity(32),
        ],
        live_event_interval: Duration::from_millis(200),
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

fn live_config(sim: &Sim) -> Config {
    let mut c = config(&[sim.url()]);
    c.live.events_timeout = Duration::from_secs(5);
    c.live.status_linger = Duration::from_secs(60);
    c
}

fn url(gw: &Gateway, path: &str) -> String {
    format!("http://{}/live/video-to-video/{path}", gw.http_addr)
}

/// Status and JSON body of a response.
async fn read(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_starts_of_one_name_run_and_pay_for_one_stream() {
    let sim = live_sim("own-race", Some(31)).await;
    let mut c = live_config(&sim);
    c.signer = Some(Arc::new(LocalSigner::from_hex(KEY).unwrap()));
    // Only the start call pays within this test.
    c.live.payment_interval = Duration::from_secs(600);
    let gw = start(c).await;
    let http = reqwest::Client::new();
    let starts = (0..20).map(|_| {
        let req = http.post(url(&gw, "dup/start")).json(&json!({})).send();
        async move { read(req.await.unwrap()).await }
    });
    let answers = futures_util::future::join_all(starts).await;
    let won: Vec<&Value> = answers.iter().filter(|(s, _)| *s == 200).map(|(_, v)| v).collect();
    assert_eq!(won.len(), 1, "{answers:?}");
    for (status, body) in answers.iter().filter(|(s, _)| *s != 200) {
        assert_eq!(*status, 409, "{body}");
        assert_eq!(body["error"]["type"], "stream_exists", "{body}");
        assert_eq!(body["error"]["field"], "stream", "{body}");
        assert!(body["error"]["message"].as_str().unwrap().contains("\"dup\""), "{body}");
    }
    assert_eq!(sim.live().starts, 1, "only the winner reached the orchestrator");
    assert_eq!(sim.payments().payments, 1, "only the winner paid");
    let (_, streams) = admin_get(&gw, "/live/streams").await;
    assert_eq!(streams["count"], 1, "{streams}");
    let orch = orch_state(&gw, sim.url()).await;
    assert_eq!(orch["in_flight"], 1, "{orch}");

    // The winner stops it with its secret: the orchestrator's lease and stream are released and
    // the client channels are gone.
    let secret = won[0]["stream_secret"].as_str().unwrap();
    let stop = http.post(url(&gw, "dup/stop")).header("livepeer-stream-secret", secret);
    let (status, body) = read(stop.send().await.unwrap()).await;
    assert_eq!((status, &body["state"]), (200, &json!("stopped")), "{body}");
    eventually(Duration::from_secs(5), "the orchestrator to end its stream", || async {
        sim.live().active == 0
    })
    .await;
    assert_eq!(orch_state(&gw, sim.url()).await["in_flight"], 0);
    let publish = won[0]["publish_url"].as_str().unwrap();
    let resp = http.post(format!("{publish}/0")).body("x").send().await.unwrap();
    assert_eq!(resp.status(), 404, "the stopped stream's channel still takes segments");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_the_client_that_started_a_stream_controls_it() {
    let sim = live_sim("own-auth", None).await;
    let gw = start(live_config(&sim)).await;
    let http = reqwest::Client::new();
    let body = json!({"params": {"prompt": "alice-private"}});
    let resp =
        http.post(url(&gw, "cam/start")).bearer_auth("alice").json(&body).send().await.unwrap();
    let header = resp.headers().get("livepeer-stream-secret").cloned();
    let (status, started) = read(resp).await;
    assert_eq!(status, 200, "{started}");
    let secret = started["stream_secret"].as_str().unwrap().to_owned();
    assert_eq!(secret.len(), 64, "{started}");
    assert_eq!(header.unwrap(), secret.as_str());

    // Without credentials: 401; with someone else's: 403. Nothing of the stream leaks.
    for (auth, code, kind) in
        [(None, 401, "unauthorized"), (Some("mallory"), 403, "not_stream_owner")]
    {
        let with = |req: reqwest::RequestBuilder| match auth {
            Some(token) => req.bearer_auth(token),
            None => req,
        };
        let requests = [
            with(http.get(url(&gw, "cam/status"))),
            with(http.post(url(&gw, "cam/update")).json(&json!({"prompt": "taken"}))),
            with(http.post(url(&gw, "cam/stop"))),
            with(http.delete(url(&gw, "cam/stop"))),
        ];
        for req in requests {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap();
            assert_eq!(status, code, "{auth:?}: {text}");
            let v: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v["error"]["type"], kind, "{v}");
            assert!(!text.contains("alice-private"), "params leaked: {text}");
        }
        // Nor can it be taken over by a new start.
        let (status, v) =
            read(with(http.post(url(&gw, "cam/start"))).json(&json!({})).send().await.unwrap())
                .await;
        assert_eq!(status, 409, "{v}");
    }
    assert_eq!(sim.live().starts, 1, "a refused start reached the orchestrator");

    // The owner: the same Authorization, the secret in its header, or the secret as a bearer.
    let own = [
        http.get(url(&gw, "cam/status")).bearer_auth("alice"),
        http.get(url(&gw, "cam/status")).header("livepeer-stream-secret", &secret),
        http.get(url(&gw, "cam/status")).bearer_auth(&secret),
    ];
    for req in own {
        let (status, s) = read(req.send().await.unwrap()).await;
        assert_eq!(status, 200, "{s}");
        assert_eq!(s["request_id"], started["request_id"], "the stream was replaced: {s}");
        assert_eq!(s["params"]["prompt"], "alice-private", "{s}");
    }
    let update = http.post(url(&gw, "cam/update")).bearer_auth("alice");
    let (status, v) = read(update.json(&json!({"prompt": "next"})).send().await.unwrap()).await;
    assert_eq!((status, &v["params_version"]), (200, &json!(2)), "{v}");
    eventually(Duration::from_secs(5), "the update to reach the runner", || async {
        sim.live().control.contains(&json!({"prompt": "next"}))
    })
    .await;
    let stop = http.post(url(&gw, "cam/stop")).header("livepeer-stream-secret", &secret);
    let (status, v) = read(stop.send().await.unwrap()).await;
    assert_eq!((status, &v["state"]), (200, &json!("stopped")), "{v}");
    // Stopped, the name is free for anyone.
    let (status, v) =
        read(http.post(url(&gw, "cam/start")).json(&json!({})).send().await.unwrap()).await;
    assert_eq!(status, 200, "{v}");
    assert_ne!(v["stream_secret"].as_str().unwrap(), secret);
}

/// One raw HTTP/1.1 request, so that the path reaches the gateway as written (HTTP client
/// libraries resolve `..` segments away); answers the status.
async fn raw_post(gw: &Gateway, path: &str) -> (u16, String) {
    let mut conn = tokio::net::TcpStream::connect(gw.http_addr).await.unwrap();
    let request = format!(
        "POST {path} HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{{}}"
    );
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).await.unwrap();
    let status = answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, answer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn names_that_are_path_steps_or_unsafe_are_refused_before_any_orchestrator() {
    let sim = live_sim("own-names", None).await;
    let gw = start(live_config(&sim)).await;
    let long = "a".repeat(129);
    let names = ["..", ".", "%2E%2E", "a%2Fb", "a%20b", "caf%C3%A9", "x-events", long.as_str()];
    for name in names {
        let (status, answer) = raw_post(&gw, &format!("/live/video-to-video/{name}/start")).await;
        assert!((400..500).contains(&status), "{name}: {answer}");
        assert!(!answer.contains("publish_url"), "{name}: {answer}");
        if status == 422 {
            assert!(answer.contains(r#""field":"stream""#), "{name}: {answer}");
        }
    }
    assert_eq!(raw_post(&gw, "/live/video-to-video/../start").await.0, 422);
    assert_eq!(sim.live().starts, 0, "a refused name reached the orchestrator");
    // Dots inside a name are fine.
    let (status, answer) = raw_post(&gw, "/live/video-to-video/cam.v1..b/start").await;
    assert_eq!(status, 200, "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn start_stop_cycles_keep_at_most_the_cap_of_stopped_streams() {
    const CAP: usize = 3;
    let sim = live_sim("own-cycles", None).await;
    let mut c = live_config(&sim);
    c.live.max_stopped_streams = CAP;
    let gw = start(c).await;
    let http = reqwest::Client::new();
    for i in 0..12 {
        let name = format!("cycle{i}");
        let resp = http.post(url(&gw, &format!("{name}/start"))).json(&json!({}));
        let (status, started) = read(resp.send().await.unwrap()).await;
        assert_eq!(status, 200, "{started}");
        let secret = started["stream_secret"].as_str().unwrap();
        let stop =
            http.post(url(&gw, &format!("{name}/stop"))).header("livepeer-stream-secret", secret);
        assert_eq!(stop.send().await.unwrap().status(), 200);
        let (_, streams) = admin_get(&gw, "/live/streams").await;
        assert!(streams["count"].as_u64().unwrap() <= CAP as u64, "{streams}");
    }
    let (_, streams) = admin_get(&gw, "/live/streams").await;
    let names: Vec<&str> = streams["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stream"].as_str().unwrap())
        .collect();
    let mut names = names.clone();
    names.sort_unstable();
    assert_eq!(names, ["cycle10", "cycle11", "cycle9"], "the newest stopped streams stay");
}

/// A remote signer front that passes the gateway's identity through from `signer` and never
/// answers a payment: a start then waits on its payment for as long as the client does.
async fn stalling_signer(signer: &Gateway, api_key: &'static str) -> String {
    let identity = format!("http://{}/sign-orchestrator-info", signer.http_addr);
    let front = axum::Router::new()
        .route(
            "/sign-orchestrator-info",
            axum::routing::post(move || {
                let identity = identity.clone();
                async move {
                    let resp = reqwest::Client::new().post(identity).bearer_auth(api_key);
                    resp.json(&json!({})).send().await.unwrap().text().await.unwrap()
                }
            }),
        )
        .route("/generate-live-payment", axum::routing::post(std::future::pending::<String>));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, front).await.unwrap() });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_that_goes_away_mid_start_releases_the_name() {
    const API_KEY: &str = "test-api-key-0123456789";
    let sim = live_sim("own-gone", Some(41)).await;
    let mut c = live_config(&sim);
    c.signer = Some(Arc::new(LocalSigner::from_hex(KEY).unwrap()));
    c.serve_signer = Some(API_KEY.to_owned().into());
    let signer = start(c).await;
    let front = stalling_signer(&signer, API_KEY).await;
    let mut c = live_config(&sim);
    let header = format!("Authorization:Bearer {API_KEY}");
    c.remote_signer = Some(livepeer_gateway::config::RemoteSigner::parse(&front, &header).unwrap());
    let gw = start(c).await;
    let http = reqwest::Client::new();
    let gone = http
        .post(url(&gw, "gone/start"))
        .json(&json!({}))
        .timeout(Duration::from_millis(500))
        .send()
        .await;
    assert!(gone.unwrap_err().is_timeout());
    // The start is abandoned at once (the signer would have kept it 10 s): the stream failed,
    // its name is free and no orchestrator was started.
    eventually(Duration::from_secs(5), "the abandoned start to be released", || async {
        let (_, streams) = admin_get(&gw, "/live/streams").await;
        let s = &streams["streams"][0];
        s["state"] == "failed" && s["stop_reason"].as_str().unwrap_or("").contains("went away")
    })
    .await;
    assert_eq!(sim.live().starts, 0);
    let again = http
        .post(url(&gw, "gone/start"))
        .json(&json!({}))
        .timeout(Duration::from_millis(500))
        .send()
        .await;
    assert!(again.unwrap_err().is_timeout(), "the name is still taken");
}

/// A `/start` of stream `name` with `auth` (a bearer token) and `secret` (its header).
async fn start_as(
    http: &reqwest::Client,
    gw: &Gateway,
    name: &str,
    auth: Option<&str>,
    secret: Option<&str>,
) -> (u16, Value) {
    let mut req = http.post(url(gw, &format!("{name}/start"))).json(&json!({}));
    if let Some(token) = auth {
        req = req.bearer_auth(token);
    }
    if let Some(secret) = secret {
        req = req.header("livepeer-stream-secret", secret);
    }
    read(req.send().await.unwrap()).await
}

/// The streams `/live/streams` shows as not ended (starting, running or swapping).
async fn live_streams(gw: &Gateway) -> Vec<Value> {
    let (_, streams) = admin_get(gw, "/live/streams").await;
    let all = streams["streams"].as_array().cloned().unwrap_or_default();
    all.into_iter().filter(|s| s["state"] != "stopped" && s["state"] != "failed").collect()
}

/// go-livepeer "stomps" a running stream when its name is started again; a client that
/// reconnects and starts again with its own credentials gets a fresh stream, and the old one
/// releases its orchestrator and its channels.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_owner_restarts_its_running_stream_and_the_old_one_is_released() {
    let sim = live_sim("own-restart", None).await;
    let gw = start(live_config(&sim)).await;
    let http = reqwest::Client::new();
    let (status, first) = start_as(&http, &gw, "cam", Some("alice"), None).await;
    assert_eq!(status, 200, "{first}");

    let (status, second) = start_as(&http, &gw, "cam", Some("alice"), None).await;
    assert_eq!(status, 200, "the owner's restart was refused: {second}");
    assert_ne!(second["stream_secret"], first["stream_secret"]);
    assert_ne!(second["request_id"], first["request_id"]);
    assert_eq!(sim.live().starts, 2, "the restart did not reach the orchestrator");
    let old_publish = first["publish_url"].as_str().unwrap();
    let resp = http.post(format!("{old_publish}/0")).body("x").send().await.unwrap();
    assert_eq!(resp.status(), 404, "the replaced stream's channel still takes segments");
    eventually(Duration::from_secs(5), "the replaced stream to release its lease", || async {
        sim.live().active == 1 && orch_state(&gw, sim.url()).await["in_flight"] == 1
    })
    .await;
    let running = live_streams(&gw).await;
    assert_eq!(running.len(), 1, "{running:?}");
    assert_eq!(running[0]["request_id"], second["request_id"], "{running:?}");
    // The old secret controls nothing any more; the owner's header controls the new stream.
    let old_secret = first["stream_secret"].as_str().unwrap();
    let old = http.get(url(&gw, "cam/status")).header("livepeer-stream-secret", old_secret);
    assert_eq!(old.send().await.unwrap().status(), 403);

    // Restarting with the stream secret (and no Authorization) works too.
    let secret = second["stream_secret"].as_str().unwrap();
    let (status, third) = start_as(&http, &gw, "cam", None, Some(secret)).await;
    assert_eq!(status, 200, "{third}");
    assert_eq!(sim.live().starts, 3);

    // Anyone else, with or without credentials, is refused as before.
    for auth in [Some("mallory"), None] {
        let (status, v) = start_as(&http, &gw, "cam", auth, None).await;
        assert_eq!((status, &v["error"]["type"]), (409, &json!("stream_exists")), "{v}");
    }
    assert_eq!(sim.live().starts, 3, "a refused start reached the orchestrator");
    eventually(Duration::from_secs(5), "one stream on the orchestrator", || async {
        sim.live().active == 1 && orch_state(&gw, sim.url()).await["in_flight"] == 1
    })
    .await;
}

/// A stream started without `Authorization` can be replaced only with its secret: a bearer
/// token, which it never saw, proves nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_anonymous_stream_is_restarted_only_with_its_secret() {
    let sim = live_sim("own-anon", None).await;
    let gw = start(live_config(&sim)).await;
    let http = reqwest::Client::new();
    let (status, first) = start_as(&http, &gw, "anon", None, None).await;
    assert_eq!(status, 200, "{first}");
    let (status, v) = start_as(&http, &gw, "anon", Some("alice"), None).await;
    assert_eq!(status, 409, "{v}");
    let secret = first["stream_secret"].as_str().unwrap();
    let (status, v) = start_as(&http, &gw, "anon", Some(secret), None).await;
    assert_eq!(status, 200, "the secret as a bearer token: {v}");
    assert_eq!(sim.live().starts, 2);
}

/// Ten concurrent restarts by the owner: while one replacement is starting the others are
/// refused (409), so exactly one stream runs afterwards and holds one lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_restarts_by_the_owner_leave_exactly_one_stream() {
    let sim = live_sim("own-restarts", None).await;
    let gw = start(live_config(&sim)).await;
    let http = reqwest::Client::new();
    let (status, first) = start_as(&http, &gw, "cam", Some("alice"), None).await;
    assert_eq!(status, 200, "{first}");
    let restarts = (0..10).map(|_| start_as(&http, &gw, "cam", Some("alice"), None));
    let answers = futures_util::future::join_all(restarts).await;
    let won: Vec<&Value> = answers.iter().filter(|(s, _)| *s == 200).map(|(_, v)| v).collect();
    assert!(!won.is_empty(), "{answers:?}");
    for (status, body) in answers.iter().filter(|(s, _)| *s != 200) {
        assert_eq!((*status, &body["error"]["type"]), (409, &json!("stream_exists")), "{body}");
    }
    assert_eq!(
        sim.live().starts,
        1 + won.len() as u64,
        "a refused restart reached the orchestrator"
    );
    eventually(Duration::from_secs(10), "one stream holding one lease", || async {
        sim.live().active == 1 && orch_state(&gw, sim.url()).await["in_flight"] == 1
    })
    .await;
    let running = live_streams(&gw).await;
    assert_eq!(running.len(), 1, "{running:?}");
    assert!(won.iter().any(|w| w["request_id"] == running[0]["request_id"]), "{running:?}");
    let (status, s) =
        read(http.get(url(&gw, "cam/status")).bearer_auth("alice").send().await.unwrap()).await;
    assert_eq!((status, &s["state"]), (200, &json!("running")), "{s}");
}
