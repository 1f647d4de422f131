//! Orchestrators that misuse the gateway through their result URLs and sizes (issue 11, items
//! 8 and 9): URLs that point anywhere but at the orchestrator itself, scriptable media types,
//! results too large or too many. Real gateway, real simulators, real sockets.

use std::time::Duration;

use livepeer_gateway::Gateway;
use livepeer_gateway::config::Config;
use livepeer_sim::{AiMode, Sim, SimConfig, SimModel};
use serde_json::{Value, json};

use crate::support::*;

/// The text the client sees for any unusable result, whatever made it unusable.
const UNUSABLE: &str = "orchestrator returned an unusable result";

/// A text-to-image and text-to-speech orchestrator at `price` wei per unit.
async fn sim(name: &str, price: i64) -> Sim {
    Sim::start(SimConfig {
        name: name.into(),
        models: vec![
            SimModel::new("text-to-image", SD).price(price, 1).capacity(64),
            SimModel::new("text-to-speech", "parler-tts/parler-tts-large-v1")
                .price(price, 1)
                .capacity(64),
        ],
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

fn quick(sims: &[&Sim]) -> Config {
    let urls: Vec<&str> = sims.iter().map(|s| s.url()).collect();
    let mut c = config(&urls);
    c.ai.attempt_timeout = Duration::from_secs(5);
    c.ai.request_timeout = Duration::from_secs(20);
    c
}

async fn t2i(gw: &Gateway, body: Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("http://{}/text-to-image", gw.http_addr))
        .json(&body)
        .send()
        .await
        .unwrap()
}

fn one_image() -> Value {
    json!({"prompt": "x", "model_id": SD, "width": 64, "height": 64})
}

/// Asserts a generic 502 that says nothing about what was fetched, and returns its text.
async fn assert_generic_502(resp: reqwest::Response, leaks: &[&str]) {
    assert_eq!(resp.status(), 502);
    let text = resp.text().await.unwrap();
    assert!(text.contains(UNUSABLE), "{text}");
    assert!(text.contains("orchestrator_failed"), "{text}");
    for leak in leaks {
        assert!(!text.contains(leak), "the error names {leak:?}: {text}");
    }
}

/// [`quick`], with an ejection that outlasts the test: its state is read after the job and the
/// image fetch, which on a loaded machine took longer than the default first cooldown.
fn lasting(sims: &[&Sim]) -> Config {
    let mut c = quick(sims);
    c.eject.base = Duration::from_secs(600);
    c.eject.max = Duration::from_secs(600);
    c
}

/// Result URLs to the gateway's admin port, to a metadata address, to another local port, and
/// `data:`/served HTML: the cheap orchestrator that answers them is ejected and the other one
/// serves the request; alone, it gets the client a generic 502 that leaks nothing.
#[tokio::test]
async fn result_urls_outside_the_orchestrator_are_refused_and_it_is_penalised() {
    let bad = sim("bad", 1).await;
    let good = sim("good", 1000).await;
    let other_port = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let other = other_port.local_addr().unwrap();
    for forged in [
        "http://{admin}/status".to_owned(),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        format!("http://{other}/x.png"),
        format!("http://{}/stream/x/y.png", good.url().trim_start_matches("http://")),
        "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==".to_owned(),
        "data:image/svg+xml;base64,PHN2Zy8+".to_owned(),
        "{sim}/blob/100?type=text/html".to_owned(),
        "{sim}/blob/100?type=image/svg%2Bxml".to_owned(),
        "file:///etc/passwd".to_owned(),
        "{sim}/blob/100?redirect=http://{admin}/status".to_owned(),
    ] {
        let gw = start(lasting(&[&bad, &good])).await;
        let url = forged.replace("{admin}", &gw.admin_addr.to_string());
        bad.set_ai_mode(AiMode::ResultUrls(vec![url.clone()]));
        let resp = t2i(&gw, one_image()).await;
        assert_eq!(resp.status(), 200, "{url}");
        assert_eq!(resp.headers()["x-orchestrator-url"], good.url(), "{url}");
        let body: Value = resp.json().await.unwrap();
        let served = body["images"][0]["url"].as_str().unwrap();
        let got = reqwest::get(served).await.unwrap();
        assert_eq!(got.headers()["content-type"], "image/png", "{url}");
        assert_eq!(orch_state(&gw, bad.url()).await["state"], "ejected", "{url}");
        assert_eq!(orch_state(&gw, good.url()).await["state"], "healthy", "{url}");
        gw.shutdown().await;

        let gw = start(lasting(&[&bad])).await;
        let url = forged.replace("{admin}", &gw.admin_addr.to_string());
        bad.set_ai_mode(AiMode::ResultUrls(vec![url.clone()]));
        let port = gw.admin_addr.port().to_string();
        let leaks = ["169.254", "/status", &port, "refused", "html", "passwd", "connect"];
        assert_generic_502(t2i(&gw, one_image()).await, &leaks).await;
        assert_eq!(orch_state(&gw, bad.url()).await["state"], "ejected", "{url}");
        gw.shutdown().await;
    }
}

/// Object-store hosts the operator allows are fetched from, relative URLs resolve against
/// the orchestrator, and loopback is fine when the orchestrator itself is on loopback.
#[tokio::test]
async fn allowed_hosts_and_relative_urls_are_fetched() {
    let orch = sim("orch", 1).await;
    let store = sim("store", 1).await;
    let store_host = store.url().trim_start_matches("http://").to_owned();
    let mut c = quick(&[&orch]);
    c.ai.result_allowed_hosts = vec![format!("localhost:{}", store.addr().port())];
    let gw = start(c).await;
    let store_url = format!("http://localhost:{}/blob/300", store.addr().port());
    for url in ["/blob/100", "{sim}/blob/200", &store_url] {
        orch.set_ai_mode(AiMode::ResultUrls(vec![url.to_owned()]));
        let resp = t2i(&gw, one_image()).await;
        assert_eq!(resp.status(), 200, "{url}");
        let body: Value = resp.json().await.unwrap();
        let got = reqwest::get(body["images"][0]["url"].as_str().unwrap()).await.unwrap();
        assert_eq!(got.bytes().await.unwrap().len(), got_len(url), "{url}");
    }
    // The same store without the allowance is refused.
    let gw2 = start(quick(&[&orch])).await;
    orch.set_ai_mode(AiMode::ResultUrls(vec![format!("http://{store_host}/blob/10")]));
    assert_generic_502(t2i(&gw2, one_image()).await, &[&store_host]).await;
    gw.shutdown().await;
    gw2.shutdown().await;
}

/// The size `/blob/<n>` in `url` serves.
fn got_len(url: &str) -> usize {
    url.rsplit('/').next().unwrap().parse().unwrap()
}

/// Served results say what they are, are never sniffed, and never go out as HTML: a type
/// that is neither media nor scriptable is served as `application/octet-stream`.
#[tokio::test]
async fn served_results_carry_nosniff_and_never_a_scriptable_type() {
    let orch = sim("orch", 1).await;
    let gw = start(quick(&[&orch])).await;
    let resp = t2i(&gw, one_image()).await;
    let body: Value = resp.json().await.unwrap();
    let got = reqwest::get(body["images"][0]["url"].as_str().unwrap()).await.unwrap();
    assert_eq!(got.headers()["content-type"], "image/png");
    assert_eq!(got.headers()["x-content-type-options"], "nosniff");
    orch.set_ai_mode(AiMode::ResultUrls(vec!["{sim}/blob/10?type=text/plain".into()]));
    let resp = t2i(&gw, one_image()).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    let got = reqwest::get(body["images"][0]["url"].as_str().unwrap()).await.unwrap();
    assert_eq!(got.headers()["content-type"], "application/octet-stream");
    assert_eq!(got.headers()["x-content-type-options"], "nosniff");
    assert!(got.headers()["content-disposition"].to_str().unwrap().starts_with("attachment"));
    gw.shutdown().await;
}

/// Result URLs are built from the configured public URL, else the listener's own address;
/// the client's `Host` header never gets into them.
#[tokio::test]
async fn a_client_host_header_never_appears_in_result_urls() {
    let orch = sim("orch", 1).await;
    for public in [None, Some("https://gw.example.com")] {
        let mut c = quick(&[&orch]);
        c.ai.public_url = public.map(str::to_owned);
        let gw = start(c).await;
        let resp = reqwest::Client::new()
            .post(format!("http://{}/text-to-image", gw.http_addr))
            .header("host", "evil.example:666")
            .json(&one_image())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.unwrap();
        let url = body["images"][0]["url"].as_str().unwrap();
        let base = public.map_or(format!("http://{}", gw.http_addr), str::to_owned);
        assert!(url.starts_with(&format!("{base}/results/")), "{url}");
        assert!(!url.contains("evil"), "{url}");
        gw.shutdown().await;
    }
}

/// More outputs than asked for is an unusable answer.
#[tokio::test]
async fn more_outputs_than_asked_are_refused() {
    let orch = sim("orch", 1).await;
    let gw = start(quick(&[&orch])).await;
    let two = vec!["{sim}/blob/10".to_owned(); 2];
    orch.set_ai_mode(AiMode::ResultUrls(two.clone()));
    assert_generic_502(t2i(&gw, one_image()).await, &[]).await;
    assert_eq!(orch_state(&gw, orch.url()).await["state"], "ejected");
    gw.shutdown().await;
    // Two asked, two given: fine.
    let gw = start(quick(&[&orch])).await;
    let mut two_asked = one_image();
    two_asked["num_images_per_prompt"] = json!(2);
    let resp = t2i(&gw, two_asked).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["images"].as_array().unwrap().len(), 2);
    // Text-to-speech gives one file.
    gw.shutdown().await;
}

/// A result over the per-result cap is refused, whether its `Content-Length` says so up
/// front or it is sent chunked; so is a job whose results together pass the per-job cap, and
/// a JSON answer (data: URLs live in it) over the answer cap.
#[tokio::test]
async fn oversized_results_and_answers_are_refused() {
    let orch = sim("orch", 1).await;
    let mut c = quick(&[&orch]);
    c.ai.result_max_bytes = 1 << 20;
    c.ai.job_result_max_bytes = 3 << 20;
    c.ai.answer_max_bytes = 256 << 10;
    let gw = start(c).await;
    let data = |n: usize| {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(vec![0u8; n]);
        format!("data:image/png;base64,{b64}")
    };
    let cases: Vec<(Vec<String>, u32)> = vec![
        (vec!["{sim}/blob/2000000".into()], 1),
        (vec!["{sim}/blob/2000000?chunked=1".into()], 1),
        (vec!["{sim}/blob/900000".into(); 4], 4),
        (vec!["{sim}/blob/900000?chunked=1".into(); 4], 4),
        (vec![data(300 << 10)], 1),
    ];
    for (urls, asked) in cases {
        let what = format!("{:.60}", urls[0]);
        orch.set_ai_mode(AiMode::ResultUrls(urls));
        let mut body = one_image();
        body["num_images_per_prompt"] = json!(asked);
        assert_generic_502(t2i(&gw, body).await, &["2000000", "bytes"]).await;
        assert_eq!(orch_state(&gw, orch.url()).await["state"], "ejected", "{what}");
        // Wait out the ejection (300 ms base in tests): the failure was this pipeline's, so
        // the next request for it is the half-open probe (no GetOrchestrator probe re-admits
        // a job key).
        eventually(Duration::from_secs(10), "cooldown over", || async {
            orch_state(&gw, orch.url()).await["state"] != "ejected"
        })
        .await;
    }
    // Under every cap: fine.
    orch.set_ai_mode(AiMode::ResultUrls(vec!["{sim}/blob/900000?chunked=1".into(); 3]));
    let mut body = one_image();
    body["num_images_per_prompt"] = json!(3);
    assert_eq!(t2i(&gw, body.clone()).await.status(), 200);
    gw.shutdown().await;

    // Results handed back inline are bounded by the same per-request cap.
    let mut c = quick(&[&orch]);
    c.ai.data_urls = true;
    c.ai.job_result_max_bytes = 3 << 20;
    let gw = start(c).await;
    let resp = t2i(&gw, body.clone()).await;
    assert_eq!(resp.status(), 200);
    let answer: Value = resp.json().await.unwrap();
    assert!(answer["images"][2]["url"].as_str().unwrap().starts_with("data:image/png;base64,"));
    orch.set_ai_mode(AiMode::ResultUrls(vec!["{sim}/blob/900000?chunked=1".into(); 4]));
    body["num_images_per_prompt"] = json!(4);
    assert_generic_502(t2i(&gw, body).await, &[]).await;
    gw.shutdown().await;
}

/// Eight concurrent 1 GiB results announced by `Content-Length`, then eight sent chunked:
/// each is refused and the process's peak resident set grows by less than 200 MiB (the
/// per-result cap is 16 MiB; the simulator generates its blobs as it sends them). The gateway
/// and the simulator run in this process, and nextest runs each test in a process of its
/// own, so the peak is this test's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_huge_results_stay_within_memory() {
    let before = proc_status("VmRSS:");
    for chunked in ["", "?chunked=1"] {
        // Every request reaches the simulator before any answers, so the downloads overlap.
        let orch = Sim::start(SimConfig {
            models: vec![SimModel::new("text-to-image", SD).price(1, 1).capacity(64)],
            ai_latency: Duration::from_millis(1500),
            ..SimConfig::default()
        })
        .await
        .unwrap();
        orch.set_ai_mode(AiMode::ResultUrls(vec![format!("{{sim}}/blob/{}{chunked}", 1u64 << 30)]));
        let mut c = quick(&[&orch]);
        c.ai.result_max_bytes = 16 << 20;
        c.ai.max_attempts = 1;
        let gw = start(c).await;
        let requests = (0..8).map(|_| {
            let addr = gw.http_addr;
            tokio::spawn(async move {
                let url = format!("http://{addr}/text-to-image");
                let resp = reqwest::Client::new().post(url).json(&one_image()).send().await;
                resp.unwrap().status()
            })
        });
        let statuses = futures_util::future::join_all(requests).await;
        for status in statuses {
            assert_eq!(status.unwrap(), 502, "{chunked}");
        }
        assert_eq!(orch.ai_requests(), 8);
        gw.shutdown().await;
    }
    let grown = proc_status("VmHWM:").saturating_sub(before);
    println!("peak RSS grew by {} MiB", grown >> 20);
    assert!(grown < 200 << 20, "peak RSS grew by {} MiB", grown >> 20);
}

/// Downloads reserve their bytes in the result store before reading them: with a 40 MiB
/// store, eight concurrent 15 MiB results (each under the per-result cap) never hold more
/// than the store's cap. Those that find it full are refused as the gateway's own fault (503,
/// `result_store_full`, the orchestrator unpenalised), the others are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_downloads_reserve_the_store_before_reading() {
    let before = proc_status("VmRSS:");
    let orch = Sim::start(SimConfig {
        models: vec![SimModel::new("text-to-image", SD).price(1, 1).capacity(64)],
        ai_latency: Duration::from_millis(1500),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    orch.set_ai_mode(AiMode::ResultUrls(vec![format!("{{sim}}/blob/{}?chunked=1", 15 << 20)]));
    let mut c = quick(&[&orch]);
    c.ai.result_max_bytes = 16 << 20;
    c.ai.result_store_bytes = 40 << 20;
    c.ai.max_attempts = 1;
    let gw = start(c).await;
    let requests = (0..8).map(|_| {
        let addr = gw.http_addr;
        tokio::spawn(async move {
            let url = format!("http://{addr}/text-to-image");
            let resp = reqwest::Client::new().post(url).json(&one_image()).send().await.unwrap();
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap();
            (status, body)
        })
    });
    let answers = futures_util::future::join_all(requests).await;
    let mut served = 0;
    for answer in answers {
        let (status, body) = answer.unwrap();
        match status {
            200 => served += 1,
            503 => assert_eq!(body["error"]["type"], "result_store_full", "{body}"),
            other => panic!("{other}: {body}"),
        }
    }
    assert!(served >= 1);
    assert_eq!(orch_state(&gw, orch.url()).await["state"], "healthy");
    let grown = proc_status("VmHWM:").saturating_sub(before);
    println!("{served} of 8 served; peak RSS grew by {} MiB", grown >> 20);
    assert!(grown < 150 << 20, "peak RSS grew by {} MiB", grown >> 20);
    gw.shutdown().await;
}

/// `--ai-inline-images`: text-to-image calls go without `Authorization`, so the orchestrator
/// answers its images inline and nothing is downloaded, and the client gets the same files at
/// the gateway's own URLs as it would by download. Text-to-speech keeps the download.
#[tokio::test]
async fn inline_images_are_asked_for_and_served_as_downloaded_ones() {
    let orch = sim("orch", 1).await;
    let job = json!({"prompt": "x", "model_id": SD, "width": 64, "height": 64, "seed": 7,
        "num_images_per_prompt": 2});
    let mut files = Vec::new();
    for inline in [false, true] {
        let mut c = quick(&[&orch]);
        c.ai.inline_images = inline;
        let gw = start(c).await;
        let downloads = orch.ai_downloads();
        let resp = t2i(&gw, job.clone()).await;
        assert_eq!(resp.status(), 200, "inline {inline}");
        let seen = orch.last_ai_request().unwrap();
        let asked_links = seen.authorization.as_deref() == Some("Livepeer-AI-Worker-1.0");
        assert_eq!(asked_links, !inline);
        assert_eq!(orch.ai_downloads() - downloads, if inline { 0 } else { 2 });
        let body: Value = resp.json().await.unwrap();
        let mut got = Vec::new();
        for image in body["images"].as_array().unwrap() {
            let url = image["url"].as_str().unwrap();
            assert!(url.starts_with(&format!("http://{}/results/", gw.http_addr)), "{url}");
            let resp = reqwest::get(url).await.unwrap();
            assert_eq!(resp.headers()["content-type"], "image/png");
            got.push(resp.bytes().await.unwrap());
        }
        files.push(got);

        let downloads = orch.ai_downloads();
        let speech = reqwest::Client::new()
            .post(format!("http://{}/text-to-speech", gw.http_addr))
            .json(&json!({"text": "hi", "model_id": "parler-tts/parler-tts-large-v1"}))
            .send()
            .await
            .unwrap();
        assert_eq!(speech.status(), 200);
        let seen = orch.last_ai_request().unwrap();
        assert_eq!(seen.authorization.as_deref(), Some("Livepeer-AI-Worker-1.0"));
        assert_eq!(orch.ai_downloads() - downloads, 1, "speech is downloaded");
        gw.shutdown().await;
    }
    assert_eq!(files[0].len(), 2);
    assert_eq!(files[0], files[1], "the same images either way");
}
