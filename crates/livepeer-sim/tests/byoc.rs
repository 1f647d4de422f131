//! BYOC on the simulator, over real sockets, as a go-livepeer gateway drives an orchestrator:
//! job tokens, signed job requests, payments under the capability name, the simulated workers
//! (Reverse, Echo, Lines), the fault modes, capacity, and the GetOrchestrator price entries.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    reason = "tests fail by panicking"
)]

#[path = "byoc_support/mod.rs"]
mod support;

use futures_util::StreamExt as _;
use livepeer_pm::{Ratio, SignedRatio};
use livepeer_proto::net::{self, orchestrator_client::OrchestratorClient};
use livepeer_sim::{ByocFault, ByocKind, PaymentRejection, Sim, SimByoc, SimConfig};
use serde_json::{Value, json};
use support::{Client, EV, key, onchain, orchestrator};

const PRICE: i64 = 10;

fn caps() -> Vec<SimByoc> {
    vec![
        SimByoc::new("text-reversal", ByocKind::Reverse).price(PRICE, 1),
        SimByoc::new("free-reversal", ByocKind::Reverse),
        SimByoc::new("echo", ByocKind::Echo),
        SimByoc::new("lines", ByocKind::Lines).capacity(1),
        SimByoc::new("paid-lines", ByocKind::Lines).price(PRICE, 1),
    ]
}

#[tokio::test]
async fn token_answers_signed_senders_only() {
    let sim = onchain(caps()).await;
    let gw = Client::new(&sim, key(7));
    let (status, token) = gw.token("text-reversal").await;
    assert_eq!(status, 200, "{token}");
    let token: Value = serde_json::from_str(&token).unwrap();
    let addr = gw.address().to_checksum(None);
    assert_eq!(token["sender_address"]["addr"], addr);
    assert_eq!(token["price"], json!({"pricePerUnit": PRICE, "pixelsPerUnit": 1}));
    assert_eq!(token["service_addr"], sim.service_url());
    assert_eq!(token["available_capacity"], 4);
    assert_eq!(token["LastNonce"], 0);
    assert!(token.get("balance").is_none(), "a zero balance is left out, as Go's omitempty does");
    let params = &token["ticket_params"];
    assert_eq!(params["recipient"], support::b64(orchestrator().as_slice()));
    assert!(params["expiration_params"]["creation_round"].is_i64());
    assert!(params["face_value"].is_string() && params["recipient_rand_hash"].is_string());

    // Signed by another key: refused with go-livepeer's text (and its trailing space).
    let forged = gw.sender_header_signed_by(&key(8));
    let (status, body) = gw.token_with(Some(&forged), Some("text-reversal")).await;
    assert_eq!((status, body.as_str()), (400, "Invalid eth address header \n"));
    let (status, body) = gw.token_with(None, Some("text-reversal")).await;
    assert_eq!(status, 400);
    assert!(body.starts_with("Must have eth address and signature"), "{body}");
    let good = gw.sender_header();
    let (status, body) = gw.token_with(Some(&good), None).await;
    assert_eq!(status, 400);
    assert!(body.starts_with("Job capabilities not provided"), "{body}");
    let (status, body) = gw.token_with(Some("not base64!"), Some("echo")).await;
    assert_eq!((status, body.as_str()), (400, "Invalid eth address header \n"));

    // An unknown capability has no capacity, which is how a gateway skips it.
    let (status, token) = gw.token("nope").await;
    assert_eq!(status, 200);
    let token: Value = serde_json::from_str(&token).unwrap();
    assert!(token.get("available_capacity").is_none());
    assert_eq!(sim.byoc_stats().tokens, 2);
}

#[tokio::test]
async fn a_paid_reverse_job_is_credited_charged_and_reports_the_balance() {
    let sim = onchain(caps()).await;
    let mut gw = Client::new(&sim, key(7));
    let payment = gw.payment_from_token("text-reversal", 1).await;
    let job = gw.job("text-reversal", r#"{"run":1}"#, "", 30);
    let resp = gw
        .post(
            "/process/request/reverse",
            &job,
            Some(&payment),
            "application/json",
            r#"{"text":"héllo"}"#.as_bytes().to_vec(),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let balance = support::header(&resp, "Livepeer-Balance").unwrap();
    let metadata: Value =
        serde_json::from_str(&support::header(&resp, "X-Metadata").unwrap()).unwrap();
    assert_eq!(metadata["chars"], 5);
    assert_eq!(support::header(&resp, "Content-Type").unwrap(), "application/json");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body, json!({"text": "olléh"}));

    let stats = sim.byoc_stats();
    assert_eq!(stats.jobs.get("text-reversal"), Some(&1));
    assert_eq!(stats.last_path.as_deref(), Some("reverse"));
    let record = stats.last_job.clone().unwrap();
    assert_eq!((record.sender, record.request.as_str()), (gw.address(), r#"{"run":1}"#));
    assert_eq!((record.timeout_seconds, record.paid), (30, true));
    assert_eq!(record.content_type.as_deref(), Some("application/json"));
    assert_eq!(stats.fees, Ratio::from_u64(PRICE as u64), "one second of compute");
    assert!(stats.ev_credited >= Ratio::from_u64(EV as u64), "one ticket's EV");
    assert!(stats.ev_credited >= stats.fees, "EV received covers the fees");
    let left = sim.payments().balance(gw.address(), "text-reversal").unwrap();
    let expected =
        SignedRatio::from(stats.ev_credited).checked_sub(&SignedRatio::from(stats.fees)).unwrap();
    assert_eq!(left, expected);
    assert_eq!(balance, expected.magnitude().to_decimal_string(0));
    assert!(stats.load.is_empty(), "capacity released: {:?}", stats.load);

    // The next token reports that balance (its integer part).
    let (_, token) = gw.token("text-reversal").await;
    let token: Value = serde_json::from_str(&token).unwrap();
    assert_eq!(
        token["balance"].as_u64().unwrap().to_string(),
        expected.magnitude().floor().to_string()
    );
}

#[tokio::test]
async fn a_free_job_needs_no_payment_and_a_paid_one_needs_a_minute_of_balance() {
    let sim = onchain(caps()).await;
    let mut gw = Client::new(&sim, key(7));
    let job = gw.job("free-reversal", "{}", "", 30);
    let resp = gw
        .post("/process/request/", &job, None, "application/json", br#"{"text":"ab"}"#.to_vec())
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(support::header(&resp, "Livepeer-Balance").as_deref(), Some("0"));
    assert_eq!(resp.text().await.unwrap(), r#"{"text":"ba"}"#);

    let job = gw.job("text-reversal", "{}", "", 30);
    let resp = gw
        .post("/process/request/r", &job, None, "application/json", br#"{"text":"ab"}"#.to_vec())
        .await;
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.text().await.unwrap(), "Insufficient balance for request\n");

    // A payment that is not base64 protobuf, or whose tickets are refused, is counted and the
    // request left unanswered (`a_payment_it_cannot_take_is_left_unanswered`).
    let sent = gw
        .http
        .post(format!("{}/process/request/r", gw.base))
        .header("Livepeer", &job)
        .header("Livepeer-Payment", "%%%")
        .body("{}")
        .send()
        .await;
    assert!(sent.is_err(), "answered: {sent:?}");
    assert_eq!(sim.payments().rejected(PaymentRejection::Undecodable), 1);
    let stats = sim.byoc_stats();
    assert_eq!(stats.fees, Ratio::ZERO);
    assert_eq!(stats.ev_credited, Ratio::ZERO);
    assert_eq!(stats.jobs.get("text-reversal"), None);
    let _ = &mut gw;
}

/// A raw HTTP/1.1 `POST /process/request/r` of `job` paid with `payment`: all the simulator
/// wrote back before it closed the connection.
async fn raw_job(sim: &Sim, job: &str, payment: &str) -> Vec<u8> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut tcp = tokio::net::TcpStream::connect(sim.addr()).await.unwrap();
    let head = format!(
        "POST /process/request/r HTTP/1.1\r\nHost: sim\r\nConnection: close\r\n\
         Livepeer: {job}\r\nLivepeer-Payment: {payment}\r\nContent-Type: application/json\r\n\
         Content-Length: 13\r\n\r\n{{\"text\":\"ab\"}}"
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let read =
        tokio::time::timeout(std::time::Duration::from_secs(10), tcp.read_to_end(&mut answer));
    read.await.expect("the connection is closed").unwrap();
    answer
}

/// go-livepeer's `confirmPayment` compares the nil balance `processPayment` returns for a
/// payment it cannot decode or whose tickets it refuses: a nil dereference, which net/http
/// recovers by closing the connection (HTTP/1.1) or resetting the stream (HTTP/2) without an
/// answer. The capacity the job took stays counted after an undecodable payment (nothing
/// frees it) and is given back after refused tickets (`processPayment` frees it).
#[tokio::test]
async fn a_payment_it_cannot_take_is_left_unanswered() {
    let sim = onchain(caps()).await;
    let gw = Client::new(&sim, key(7));
    let job = gw.job("text-reversal", "{}", "", 30);
    assert!(raw_job(&sim, &job, "%%%").await.is_empty(), "nothing is written back");
    assert_eq!(sim.byoc_stats().load.get("text-reversal"), Some(&1), "left counted");
    let forged = gw.forged_payment("text-reversal").await;
    assert!(raw_job(&sim, &job, &forged).await.is_empty());
    assert_eq!(sim.payments().rejected(PaymentRejection::InvalidSignature), 1);
    assert_eq!(sim.byoc_stats().load.get("text-reversal"), Some(&1), "given back");
    // A free capability does not look at the payment at all (price 0: `confirmPayment` skips).
    let free = gw.job("free-reversal", "{}", "", 30);
    let answer = String::from_utf8(raw_job(&sim, &free, "%%%").await).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // Over HTTP/2 the stream is reset and the connection serves on.
    let h2 = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    let post = |job: &str, payment: &str| {
        h2.post(format!("{}/process/request/r", gw.base))
            .header("Livepeer", job)
            .header("Livepeer-Payment", payment)
            .body(r#"{"text":"ab"}"#)
            .send()
    };
    let reset = post(&job, "%%%").await.unwrap_err();
    assert!(format!("{reset:?}").contains("INTERNAL_ERROR"), "{reset:?}");
    let resp = post(&free, "").await.unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.text().await.unwrap(), r#"{"text":"ba"}"#);
    assert_eq!(sim.payments().rejected(PaymentRejection::Undecodable), 2);
    assert_eq!(sim.byoc_stats().jobs.get("text-reversal"), None);
}

#[tokio::test]
async fn job_requests_are_verified_as_go_livepeer_does() {
    let sim = onchain(caps()).await;
    let gw = Client::new(&sim, key(7));
    let send = |job: String| {
        let gw = &gw;
        async move {
            let body = br#"{"text":"a"}"#.to_vec();
            let resp = gw.post("/process/request/x", &job, None, "application/json", body).await;
            (resp.status().as_u16(), resp.text().await.unwrap())
        }
    };
    let creds = (400, "Could not verify job creds\n".to_owned());
    // Signed by a key other than the sender's.
    let mut forged: Value = gw.job_value("free-reversal", "{}", "", 30);
    forged["sig"] = json!(gw.sig_by(&key(9), "{}"));
    assert_eq!(send(support::b64(forged.to_string().as_bytes())).await, creds);
    // The signature covers request ‖ parameters.
    let mut tampered = gw.job_value("free-reversal", "{}", "", 30);
    tampered["parameters"] = json!("{\"x\":1}");
    assert_eq!(send(support::b64(tampered.to_string().as_bytes())).await, creds);
    assert_eq!(send("%%%".to_owned()).await, creds);
    assert_eq!(send(String::new()).await, creds);
    let no_timeout = gw.job("free-reversal", "{}", "", 0);
    assert_eq!(
        send(no_timeout).await,
        (400, "no timeout_seconds set with request, timeout_seconds is required\n".to_owned())
    );
    let (status, body) = send(gw.job("free-reversal", "not json", "", 30)).await;
    assert_eq!(status, 400);
    assert!(body.starts_with("Unable to unmarshal job request details err="), "{body}");
    assert_eq!(
        send(gw.job("unknown", "{}", "", 30)).await,
        (503, "No capacity available for capability\n".to_owned())
    );
    // A signature without `0x` (130 hex digits) is read as it is.
    let mut bare = gw.job_value("free-reversal", "{}", "", 30);
    let sig = bare["sig"].as_str().unwrap().trim_start_matches("0x").to_owned();
    bare["sig"] = json!(sig);
    assert_eq!(send(support::b64(bare.to_string().as_bytes())).await.0, 200);
    assert!(sim.byoc_stats().load.is_empty());
}

#[tokio::test]
async fn echo_streams_twenty_megabytes_back_byte_for_byte() {
    const TOTAL: usize = 20 << 20;
    const CHUNK: usize = 256 << 10;
    let sim = onchain(caps()).await;
    let gw = Client::new(&sim, key(7));
    let job = gw.job("echo", "{}", "", 60);
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
    let body = reqwest::Body::wrap_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|c| (Ok::<_, std::io::Error>(c), rx))
    }));
    let chunk =
        |i: usize| -> Vec<u8> { (0..CHUNK).map(|j| ((i * 31 + j * 7) % 251) as u8).collect() };
    tx.send(chunk(0)).await.unwrap();
    let resp = gw
        .http
        .post(format!("{}/process/request/echo", sim.url()))
        .header("Livepeer", &job)
        .header("Content-Type", "application/x-test-blob")
        .body(body)
        .send()
        .await
        .unwrap();
    // The answer has started while most of the upload has not been sent: it is streamed.
    assert_eq!(resp.status(), 200);
    assert_eq!(support::header(&resp, "Content-Type").unwrap(), "application/x-test-blob");
    assert!(support::header(&resp, "Livepeer-Balance").is_some());
    let mut stream = resp.bytes_stream();
    let mut got = Vec::new();
    while got.len() < CHUNK {
        got.extend_from_slice(&stream.next().await.unwrap().unwrap());
    }
    assert_eq!(&got[..CHUNK], chunk(0).as_slice());
    let sender = tokio::spawn(async move {
        for i in 1..TOTAL / CHUNK {
            tx.send(chunk(i)).await.unwrap();
        }
    });
    let mut received = got.len();
    let mut expected_pos = CHUNK;
    let mut pending = got.split_off(CHUNK);
    while let Some(next) = stream.next().await {
        let next = next.unwrap();
        received += next.len();
        pending.extend_from_slice(&next);
        while pending.len() >= CHUNK {
            let rest = pending.split_off(CHUNK);
            assert_eq!(pending, chunk(expected_pos / CHUNK), "chunk at {expected_pos}");
            expected_pos += CHUNK;
            pending = rest;
        }
    }
    sender.await.unwrap();
    assert_eq!(received, TOTAL);
    assert!(pending.is_empty());
    let stats = sim.byoc_stats();
    assert_eq!(stats.bytes_received, TOTAL as u64);
    assert!(stats.load.is_empty());
}

#[tokio::test]
async fn lines_stream_event_by_event_and_end_with_the_balance() {
    let sim = onchain(caps()).await;
    let gw = Client::new(&sim, key(7));
    let gate = sim.byoc_sse_gate();
    let job = gw.job("lines", "{}", "", 2);
    let resp = gw
        .post("/process/request/lines", &job, None, "application/json", br#"{"lines":4}"#.to_vec())
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(support::header(&resp, "Content-Type").unwrap(), "text/event-stream");
    assert_eq!(support::header(&resp, "Livepeer-Payment-Balance").as_deref(), Some("0"));
    let mut stream = resp.bytes_stream();
    let mut text = String::new();
    while !text.contains("\n\n") {
        text.push_str(std::str::from_utf8(&stream.next().await.unwrap().unwrap()).unwrap());
    }
    // The first event reached us while the worker waits at the gate: nothing more was written.
    assert_eq!(text, "data: {\"n\":0}\n\n");
    assert_eq!(sim.byoc_stats().load.get("lines"), Some(&1));
    gate.release();
    while let Some(chunk) = stream.next().await {
        text.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
    }
    let expected = "data: {\"n\":0}\n\ndata: {\"n\":1}\n\ndata: {\"n\":2}\n\ndata: {\"n\":3}\n\n\
                    data: {\"balance\": 0.000}\n\n\ndata: [DONE]\n\n";
    assert_eq!(until_done(&text), expected);
    assert!(sim.byoc_stats().load.is_empty());

    // Too many lines is the worker's 400, passed through.
    let resp = gw
        .post(
            "/process/request/lines",
            &job,
            None,
            "application/json",
            br#"{"lines":100000}"#.to_vec(),
        )
        .await;
    assert_eq!(resp.status(), 400);
}

#[tokio::test]
async fn a_paid_sse_job_reports_the_balance_it_started_with() {
    let sim = onchain(caps()).await;
    let mut gw = Client::new(&sim, key(7));
    let payment = gw.payment_from_token("paid-lines", 1).await;
    let job = gw.job("paid-lines", "{}", "", 2);
    let resp =
        gw.post("/process/request/", &job, Some(&payment), "application/json", Vec::new()).await;
    assert_eq!(resp.status(), 200);
    let before = support::header(&resp, "Livepeer-Payment-Balance").unwrap();
    let text = resp.text().await.unwrap();
    let credited = sim.byoc_stats().ev_credited;
    assert_eq!(before, credited.to_decimal_string(0));
    assert!(
        text.contains(&format!("data: {{\"balance\": {}}}", credited.to_decimal_string(3))),
        "{text}"
    );
    assert!(until_done(&text).ends_with("data: [DONE]\n\n"));
}

/// An SSE answer up to its `[DONE]` event, checking that only empty lines follow it: go-livepeer
/// keeps the answer open after its worker's `[DONE]`, writing `\n` until `timeout_seconds` is
/// over (byoc/job_orchestrator.go `processJob`).
fn until_done(text: &str) -> &str {
    let end = text.find("data: [DONE]\n\n").expect("a [DONE] event") + "data: [DONE]\n\n".len();
    assert!(text[end..].bytes().all(|b| b == b'\n'), "only empty lines after [DONE]: {text:?}");
    &text[..end]
}

/// After its worker's `[DONE]`, an SSE answer stays open, writing empty lines, until the job's
/// `timeout_seconds` is over, as go-livepeer's proxy loop does.
#[tokio::test]
async fn an_sse_answer_stays_open_until_its_timeout_after_done() {
    let sim = onchain(caps()).await;
    let gw = Client::new(&sim, key(7));
    let job = gw.job("lines", "{}", "", 2);
    let started = tokio::time::Instant::now();
    let resp = gw.post("/process/request/", &job, None, "application/json", Vec::new()).await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(started.elapsed() >= std::time::Duration::from_millis(1900), "{:?}", started.elapsed());
    let done = until_done(&text).len();
    assert!(text.len() > done + 2, "empty lines followed [DONE]: {text:?}");
}

#[tokio::test]
async fn byoc_faults_fail_as_configured() {
    let sim = onchain(caps()).await;
    let mut gw = Client::new(&sim, key(7));
    let job = gw.job("free-reversal", "{}", "", 30);
    let body = br#"{"text":"x"}"#.to_vec();

    sim.set_byoc_fault(ByocFault::NoCapacity);
    let resp = gw.post("/process/request/", &job, None, "application/json", body.clone()).await;
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.text().await.unwrap(), "No capacity available for capability\n");

    sim.set_byoc_fault(ByocFault::Status500);
    let payment = gw.payment_from_token("text-reversal", 1).await;
    let paid = gw.job("text-reversal", "{}", "", 30);
    let resp =
        gw.post("/process/request/", &paid, Some(&payment), "application/json", body.clone()).await;
    assert_eq!(resp.status(), 500);
    assert!(support::header(&resp, "Livepeer-Balance").is_some());
    assert_eq!(resp.text().await.unwrap(), "{\n  \"error\": \"simulated worker failure\"\n}\n");
    assert_eq!(
        sim.byoc_stats().fees,
        Ratio::from_u64(PRICE as u64),
        "the worker's time is charged"
    );

    sim.set_byoc_fault(ByocFault::Close);
    let err = gw
        .http
        .post(format!("{}/process/request/", sim.url()))
        .header("Livepeer", &job)
        .body(body.clone())
        .send()
        .await
        .unwrap_err();
    assert!(!err.is_status() && !err.is_timeout(), "{err:?}");

    sim.set_byoc_fault(ByocFault::Hang);
    let before = sim.byoc_stats().requests;
    let hung = gw
        .http
        .post(format!("{}/process/request/", sim.url()))
        .header("Livepeer", &job)
        .body(body.clone())
        .send();
    let hung = tokio::spawn(hung);
    while sim.byoc_stats().requests == before {
        tokio::task::yield_now().await;
    }
    assert!(!hung.is_finished(), "a hanging orchestrator does not answer");
    hung.abort();

    sim.set_byoc_fault(ByocFault::None);
    let resp = gw.post("/process/request/", &job, None, "application/json", body).await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn capacity_is_counted_by_running_jobs_and_not_enforced() {
    let sim = onchain(caps()).await;
    let gw = Client::new(&sim, key(7));
    let gate = sim.byoc_sse_gate();
    let job = gw.job("lines", "{}", "", 2);
    let first = gw
        .post("/process/request/", &job, None, "application/json", br#"{"lines":2}"#.to_vec())
        .await;
    assert_eq!(first.status(), 200);
    let (_, token) = gw.token("lines").await;
    let token: Value = serde_json::from_str(&token).unwrap();
    assert!(token.get("available_capacity").is_none(), "capacity 1, in use: {token}");
    // Over capacity, a job is taken all the same (go-livepeer only counts the load).
    let second = gw
        .post("/process/request/", &job, None, "application/json", br#"{"lines":0}"#.to_vec())
        .await;
    assert_eq!(second.status(), 200);
    assert_eq!(sim.byoc_stats().load.get("lines"), Some(&2));
    gate.release();
    let text = first.text().await.unwrap();
    until_done(&text);
    // The slot is given back when the proxy task ends, just after the last bytes.
    while !sim.byoc_stats().load.is_empty() {
        tokio::task::yield_now().await;
    }
    let (_, token) = gw.token("lines").await;
    let token: Value = serde_json::from_str(&token).unwrap();
    assert_eq!(token["available_capacity"], 1);
}

#[tokio::test]
async fn get_orchestrator_lists_byoc_prices_under_capability_37() {
    let mut caps = caps();
    caps.push(SimByoc::new("fractional", ByocKind::Echo).price(3, 2));
    let sim = onchain(caps).await;
    let signer = key(7);
    let address = signer.address();
    let sig = signer.eth_sign(address.to_checksum(None).as_bytes()).unwrap();
    let req = net::OrchestratorRequest {
        address: address.to_vec(),
        sig: sig.0.to_vec(),
        capabilities: None,
        ignore_capacity_check: false,
    };
    let mut client = OrchestratorClient::connect(sim.url().to_owned()).await.unwrap();
    let info = client.get_orchestrator(req).await.unwrap().into_inner();
    let byoc: Vec<_> = info.capabilities_prices.iter().filter(|p| p.capability == 37).collect();
    assert_eq!(byoc.len(), 6);
    let reversal = byoc.iter().find(|p| p.constraint == "text-reversal").unwrap();
    assert_eq!((reversal.price_per_unit, reversal.pixels_per_unit), (PRICE, 1));
    let fractional = byoc.iter().find(|p| p.constraint == "fractional").unwrap();
    assert_eq!(
        (fractional.price_per_unit, fractional.pixels_per_unit),
        (1, 1),
        "integer part, as Go"
    );
}

#[tokio::test]
async fn an_off_chain_orchestrator_neither_checks_signatures_nor_charges() {
    let sim = Sim::start(SimConfig { byoc: caps(), ..SimConfig::default() }).await.unwrap();
    let gw = Client::new(&sim, key(7));
    let forged = gw.sender_header_signed_by(&key(8));
    let (status, token) = gw.token_with(Some(&forged), Some("text-reversal")).await;
    assert_eq!(status, 200);
    let token: Value = serde_json::from_str(&token).unwrap();
    assert_eq!(token["price"], json!({"pixelsPerUnit": 1}));
    assert!(token.get("ticket_params").is_none());
    let mut job = gw.job_value("text-reversal", "{}", "", 30);
    job["sig"] = json!(gw.sig_by(&key(9), "{}"));
    let job = support::b64(job.to_string().as_bytes());
    let resp = gw
        .post("/process/request/", &job, None, "application/json", br#"{"text":"ab"}"#.to_vec())
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(sim.byoc_stats().fees, Ratio::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_job_past_its_timeout_is_cut_and_gives_its_capacity_back() {
    let sim = onchain(caps()).await;
    let gw = Client::new(&sim, key(7));
    // An upload that stops half way: the echo is cut at `timeout_seconds`.
    let job = gw.job("echo", "{}", "", 2);
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(1);
    tx.send(vec![7u8; 1000]).await.unwrap();
    let body = reqwest::Body::wrap_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|c| (Ok::<_, std::io::Error>(c), rx))
    }));
    let resp = gw
        .http
        .post(format!("{}/process/request/", sim.url()))
        .header("Livepeer", &job)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!(first.len(), 1000);
    assert!(stream.next().await.unwrap().is_err(), "cut, not ended cleanly");
    while !sim.byoc_stats().load.is_empty() {
        tokio::task::yield_now().await;
    }
    drop(tx);

    // An SSE job whose worker never gets past the gate ends at its timeout, without [DONE].
    let _gate = sim.byoc_sse_gate();
    let job = gw.job("lines", "{}", "", 2);
    let resp = gw.post("/process/request/", &job, None, "application/json", Vec::new()).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "data: {\"n\":0}\n\n");
    while !sim.byoc_stats().load.is_empty() {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn an_sse_job_is_billed_every_five_seconds_and_ended_when_the_balance_runs_out() {
    let sim = onchain(caps()).await;
    let mut gw = Client::new(&sim, key(7));
    let _gate = sim.byoc_sse_gate();
    let payment = gw.payment_from_token("paid-lines", 1).await;
    let job = gw.job("paid-lines", "{}", "", 3600);
    let resp =
        gw.post("/process/request/", &job, Some(&payment), "application/json", Vec::new()).await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert_eq!(
        text,
        "data: {\"n\":0}\n\nevent: insufficient balance\ndata: {\"balance\": 0}\n\ndata: [DONE]\n\n"
    );
    let stats = sim.byoc_stats();
    // Debited 5 × price at a time until the balance went below zero.
    let five_seconds = Ratio::from_u64(5 * PRICE as u64);
    assert!(stats.fees > stats.ev_credited, "ran out: {stats:?}");
    assert!(stats.fees.checked_sub(&five_seconds).unwrap() <= stats.ev_credited);
    assert!(sim.payments().balance(gw.address(), "paid-lines").unwrap().is_negative());
}
