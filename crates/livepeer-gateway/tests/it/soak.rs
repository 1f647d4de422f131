//! The soak (`livepeer-gateway soak`): a short run against real simulators that are killed,
//! hung and made to answer garbage, asserting no request lost, none paid twice and the
//! gateway's memory and descriptors under their ceilings; and the gateway bugs it found, each
//! pinned by its own test.

use std::time::Duration;

use livepeer_sim::{AiFault, Sim, SimConfig, SimModel};
use serde_json::json;

use crate::support::*;

/// A short soak, as `RELIABILITY.md` describes. The deadlines are the tool's own (a request
/// counts as lost only after a minute); on a loaded machine the run gets fewer requests done,
/// not a different verdict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_soak_loses_nothing_and_pays_nothing_twice() {
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_livepeer-gateway"))
        .args(["soak", "--duration", "8s", "--orchestrators", "3", "--seed", "5"])
        .args(["--concurrency", "6", "--live", "1", "--huge-body-mb", "8"])
        .args(["--rss-ceiling-mb", "400", "--fd-ceiling", "512"])
        .env_remove("LP_ETH_KEY")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(300), run)
        .await
        .expect("the soak ends: its run time plus the requests' deadlines")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary = stdout.lines().find(|l| l.starts_with("soak: ")).unwrap_or_else(|| {
        panic!("no summary line: {stdout}\n{}", String::from_utf8_lossy(&out.stderr))
    });
    let field = |name: &str| -> String {
        summary
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name} in {summary}"))
            .to_owned()
    };
    assert_eq!(field("lost"), "0", "{stdout}");
    assert_eq!(field("double_paid"), "0", "{stdout}");
    assert_eq!(field("gateway_alive"), "true", "{stdout}");
    assert!(field("answered").parse::<u64>().unwrap() > 0, "{stdout}");
    assert!(field("peak_rss_mb").parse::<u64>().unwrap() <= 400, "{stdout}");
    assert!(field("peak_fds").parse::<u64>().unwrap() <= 512, "{stdout}");
    assert_eq!(field("result"), "pass", "{stdout}");
    assert!(out.status.success(), "{stdout}");
}

/// Found by the soak: an orchestrator whose event stream ends without its final event (junk
/// events, then a clean close) was relayed as a complete answer: the client could not tell it
/// from one, and the orchestrator was counted a success. The stream must end with an error
/// event, and the orchestrator must be penalised.
#[tokio::test]
async fn a_stream_that_ends_without_its_final_event_ends_with_an_error_event() {
    let sim = Sim::start(SimConfig {
        name: "junk-stream".into(),
        models: vec![SimModel::new("llm", LLM).price(1, 1).capacity(8)],
        ..SimConfig::default()
    })
    .await
    .unwrap();
    sim.set_ai_fault(AiFault::Garbage);
    let gw = start(config(&[sim.url()])).await;
    let body = json!({"model": LLM, "stream": true, "max_tokens": 4,
                      "messages": [{"role": "user", "content": "one two three"}]});
    let resp = reqwest::Client::new()
        .post(format!("http://{}/llm", gw.http_addr))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = tokio::time::timeout(Duration::from_secs(30), resp.text()).await.unwrap().unwrap();
    assert!(
        text.trim_end().ends_with("}") && text.contains("event: error\ndata: {\"error\""),
        "the stream must end with an error event: {text:?}"
    );
    eventually(Duration::from_secs(10), "the orchestrator is penalised", || async {
        orch_state(&gw, sim.url()).await["state"] != "healthy"
    })
    .await;
    gw.shutdown().await;
}

/// A streamed event larger than 64 KiB (go-livepeer's gateway reads LLM streams with a
/// scanner that holds no longer a line) ends the stream as the orchestrator's failure, for the
/// LLM job only: the client gets a final error event at once, not megabytes of one event.
/// Before, the event was passed on in 1 MiB pieces however long it was (14 GB in 25 s from an
/// endless one) and the orchestrator counted as healthy.
#[tokio::test]
async fn a_streamed_event_over_64_kib_ends_the_stream_as_the_orchestrators_failure() {
    let sim = Sim::start(SimConfig {
        name: "huge-event".into(),
        models: vec![
            SimModel::new("llm", LLM).price(1, 1).capacity(8),
            SimModel::new("text-to-image", "stabilityai/sd-turbo").capacity(8),
        ],
        huge_body_bytes: 8 << 20,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    sim.set_ai_fault(AiFault::HugeBody);
    let mut c = config(&[sim.url()]);
    // Longer than the test: the ejection seen is the failure's, not undone by a probe.
    c.eject.base = Duration::from_secs(600);
    c.eject.max = Duration::from_secs(600);
    let gw = start(c).await;
    let body = json!({"model": LLM, "stream": true, "max_tokens": 4,
                      "messages": [{"role": "user", "content": "one two three"}]});
    let resp = reqwest::Client::new()
        .post(format!("http://{}/llm", gw.http_addr))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = tokio::time::timeout(Duration::from_secs(30), resp.text()).await.unwrap().unwrap();
    assert!(text.len() < 4096, "{} bytes relayed: {:?}…", text.len(), &text[..200.min(text.len())]);
    assert!(text.starts_with("event: error\n"), "{text}");
    assert!(text.contains("over 65536 bytes"), "{text}");
    let llm = job_state(&gw, sim.url(), &format!("llm/{LLM}")).await;
    assert_eq!(llm["state"], "ejected", "{llm}");
    let t2i = job_state(&gw, sim.url(), "text-to-image/stabilityai/sd-turbo").await;
    assert_ne!(t2i["state"], "ejected", "{t2i}");
    gw.shutdown().await;
}

/// A go-livepeer orchestrator answers a non-streaming LLM request its runner refused (a 422,
/// a 503) with a 200 of `null` (`Worker.handleNonStreamingResponse`). That was relayed to the
/// client as its answer, and the orchestrator counted a success. It is now the orchestrator's
/// failure: the request goes to another one, and with none left the client gets an error,
/// never a `null`.
#[tokio::test]
async fn an_orchestrator_s_null_answer_is_its_failure_not_the_client_s_answer() {
    let sim = |name: &str| SimConfig {
        name: name.into(),
        models: vec![SimModel::new("llm", LLM).capacity(8)],
        ..SimConfig::default()
    };
    let null = Sim::start(sim("null-answer")).await.unwrap();
    null.set_ai_fault(AiFault::Null);
    let good = Sim::start(sim("good-answer")).await.unwrap();
    let chat = json!({"model": LLM, "max_tokens": 4,
                      "messages": [{"role": "user", "content": "one two three"}]});
    // Alone, it leaves the client an error.
    let gw = start(config(&[null.url()])).await;
    let resp = post_json(&gw, "/llm", &chat).await;
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(status.is_server_error(), "{status} {body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    assert!(null.ai_requests() > 0, "the orchestrator was asked");
    gw.shutdown().await;
    // Beside a good one, every request gets an answer, those the null-answering one was
    // tried for included (selection may prefer the good one for a while: up to 40 requests).
    let gw = start(config(&[null.url(), good.url()])).await;
    let asked = null.ai_requests();
    for sent in 1..=40 {
        let resp = post_json(&gw, "/llm", &chat).await;
        assert_eq!(resp.status(), 200);
        let body: serde_json::Value = resp.json().await.unwrap();
        assert!(body["choices"][0]["message"]["content"].is_string(), "{body}");
        if sent >= 8 && null.ai_requests() > asked {
            break;
        }
    }
    assert!(null.ai_requests() > asked, "the null-answering orchestrator was tried");
    gw.shutdown().await;
}
