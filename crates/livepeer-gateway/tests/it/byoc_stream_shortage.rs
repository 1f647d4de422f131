//! A running BYOC stream whose orchestrator's channels the gateway cannot reach for want of its
//! own descriptors (`stream_relay`'s `Outcome::Shortage`): the stream is stopped there and
//! moved to another orchestrator within the swap budget, with the client's channels
//! unchanged, and no orchestrator is penalised for it, as one that failed would be
//! (`Outcome::Fault`). A shortage that lasts meets every replacement too, and ends the stream
//! once no orchestrator is left, still blaming none.
//!
//! Each start waits at its orchestrator's gate (`Sim::byoc_stream_start_gate`) until the test
//! has taken, or given back, the descriptors: the relays of a session dial its orchestrator's
//! channels as it begins, while the calls to the orchestrators (job tokens, start, stop) go
//! over the connections the gateway keeps to them.

use std::sync::Arc;
use std::time::Duration;

use livepeer_gateway::Gateway;
use livepeer_pm::LocalSigner;
use livepeer_sim::{ByocGate, ByocKind, Sim, SimByoc, SimConfig};
use livepeer_trickle::{HttpPublisher, HttpSubscriber};
use serde_json::{Value, json};

use crate::byoc_stream::{job_header, next_segment, publish, segment, trickle};
use crate::support::*;

const CAP: &str = "live-echo";
const KEY: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
const OWNER: &str = "Bearer byoc-stream-shortage";
const ALL: &str =
    r#"{"enable_video_ingress":true,"enable_video_egress":true,"enable_data_output":true}"#;

async fn sim(name: &str) -> Sim {
    let caps = vec![SimByoc::new(CAP, ByocKind::Echo).capacity(4)];
    Sim::start(SimConfig { name: name.into(), byoc: caps, ..SimConfig::default() }).await.unwrap()
}

/// Runs `test` alone (see `run_alone`: it takes the process's descriptors) on a runtime of
/// its own.
fn alone<F: Future<Output = ()>>(name: &str, test: impl FnOnce() -> F) {
    if run_alone(&format!("byoc_stream_shortage::{name}")) {
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build();
        runtime.unwrap().block_on(test());
    }
}

/// A start's answer (status, headers, body), with the connection it came over.
type Answered = ((http::StatusCode, http::HeaderMap, Value), HeldConnection);

/// Two orchestrators, a gateway on both, and a stream started there.
struct Setup {
    sims: [Sim; 2],
    gates: [ByocGate; 2],
    gw: Gateway,
    /// The orchestrator the start went to first.
    first: usize,
    /// The start in flight, waiting at the first orchestrator's gate. Its connection is kept
    /// open once answered: closed, it would free a descriptor or two while the test holds
    /// them all, and a relay's next dial could take one and connect, to a simulator (in this
    /// process) with none left to accept it: that relay would wait, not fail.
    start: tokio::task::JoinHandle<Answered>,
}

impl Setup {
    async fn new() -> Self {
        let sims = [sim("a").await, sim("b").await];
        let mut c = config(&[sims[0].url(), sims[1].url()]);
        c.signer = Some(Arc::new(LocalSigner::from_hex(KEY).unwrap()));
        // Once fetched, job tokens are fetched again only for calls.
        c.byoc.token_refresh = Duration::from_secs(3600);
        let gw = start(c).await;
        // Both job tokens fetched: each over a connection the gateway keeps, which the calls
        // made while no descriptor is left (tokens, stop, start) go over.
        eventually(Duration::from_secs(10), "both job tokens", || async {
            let (_, body) = admin_get(&gw, "/byoc/capabilities").await;
            let orchs = body["capabilities"][0]["orchestrators"].as_array().cloned();
            orchs.is_some_and(|o| o.iter().filter(|o| !o["token"].is_null()).count() == 2)
        })
        .await;
        let gates = [sims[0].byoc_stream_start_gate(), sims[1].byoc_stream_start_gate()];
        let body = json!({"stream_name": "short", "stream_id": "1", "params": {}});
        let mut conn = HeldConnection::open(gw.http_addr).await;
        let start = tokio::spawn(async move {
            let header = job_header(CAP, 60, ALL);
            let headers = [
                ("Livepeer", header.as_str()),
                ("Authorization", OWNER),
                ("content-type", "application/json"),
            ];
            let answer = conn.send("POST", "/process/stream/start", &headers, body.to_string());
            (answer.await, conn)
        });
        // The start waits at the orchestrator chosen first, over connections made already.
        let mut first = None;
        eventually(Duration::from_secs(10), "the start at an orchestrator", || {
            first = sims.iter().position(|s| s.byoc_stats().stream_start_calls == 1);
            std::future::ready(first.is_some())
        })
        .await;
        Self { first: first.unwrap(), sims, gates, gw, start }
    }

    fn serving(&self) -> &Sim {
        &self.sims[self.first]
    }

    fn other(&self) -> &Sim {
        &self.sims[1 - self.first]
    }

    /// Lets the first start through with no descriptor left: its answer is read over the
    /// client's connection, made already. Its relays then fail for want of descriptors, the
    /// stream is stopped there, and started on the other orchestrator, whose start waits at
    /// its gate. Answers the start's body, the descriptors, still held, and the start's
    /// connection, to be dropped after them.
    async fn short_of_descriptors(&mut self) -> (Value, NoDescriptors, HeldConnection) {
        let held = NoDescriptors::take();
        self.gates[self.first].release();
        let ((status, _, started), conn) = (&mut self.start).await.unwrap();
        assert_eq!(status, 200, "the start was answered: the stream ran there: {started}");
        let serving = self.serving();
        eventually(Duration::from_secs(10), "the stream stopped at its first orchestrator", || {
            std::future::ready(serving.byoc_stats().stream_stops == 1)
        })
        .await;
        let other = self.other();
        eventually(Duration::from_secs(10), "the start at the other orchestrator", || {
            std::future::ready(other.byoc_stats().stream_start_calls == 1)
        })
        .await;
        (started, held, conn)
    }

    /// Asserts that `sim`'s BYOC job shows no failure, and the orchestrator no error.
    async fn not_penalised(&self, sim: &Sim) {
        let url = sim.url().trim_end_matches('/');
        let job = job_state(&self.gw, url, &format!("byoc/{CAP}")).await;
        assert_eq!(job["consecutive_failures"], 0, "{job}");
        assert!(job["last_error"].is_null(), "{job}");
        assert_eq!(job["state"], "healthy", "{job}");
        let orch = orch_state(&self.gw, url).await;
        assert_eq!(orch["state"], "healthy", "{orch}");
        assert!(orch["last_error"].is_null(), "{orch}");
    }
}

/// `url`'s document, read with the stream owner's credentials: its status and JSON body.
async fn owner_get(url: &str) -> (u16, Value) {
    let resp = reqwest::Client::new().get(url).header("Authorization", OWNER).send().await;
    let resp = resp.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null))
}

/// The stream starts on one orchestrator, whose channels the gateway then cannot dial: no
/// descriptor is left. Its relays fail with the gateway's own shortage; the stream is stopped
/// there and started on the other. Once descriptors are back, the replacement's channels are
/// reached, and the client's first segment, which never reached the first orchestrator, comes
/// back through the second over the same channels. The first orchestrator shows no failure.
#[test]
fn a_stream_the_gateway_cannot_relay_for_want_of_descriptors_moves_on_blaming_nobody() {
    let name = "a_stream_the_gateway_cannot_relay_for_want_of_descriptors_moves_on_blaming_nobody";
    alone(name, relay_shortage);
}

async fn relay_shortage() {
    let mut setup = Setup::new().await;
    let (s, held, _conn) = setup.short_of_descriptors().await;
    drop(held);
    setup.gates[1 - setup.first].release();
    let (serving, other) = (setup.serving(), setup.other());

    let status_url = s["status_url"].as_str().unwrap();
    eventually(Duration::from_secs(10), "the stream running on the replacement", || async {
        let (_, st) = owner_get(status_url).await;
        st["state"] == "running" && st["swaps"].as_array().is_some_and(|s| s.len() == 1)
    })
    .await;
    let (_, st) = owner_get(status_url).await;
    assert_eq!(st["orchestrator_url"], other.service_url().trim_end_matches('/'), "{st}");
    let swap = &st["swaps"][0];
    let from = swap["from"].as_str().unwrap_or_default();
    assert_eq!(from.trim_end_matches('/'), serving.url(), "{st}");
    let to = swap["to"].as_str().unwrap_or_default();
    assert_eq!(to.trim_end_matches('/'), other.url(), "{st}");
    let reason = swap["reason"].as_str().unwrap_or_default();
    assert!(reason.starts_with("the gateway, on orchestrator "), "{st}");
    assert!(reason.contains("could not open a connection"), "{st}");
    let stats = serving.byoc_stats();
    assert_eq!((stats.stream_starts, stats.streams_active), (1, 0), "stopped there");

    // The client's channels are the start's: its first segment, which never reached the
    // first orchestrator, comes back through the second.
    let (client, config) = trickle();
    let publish_url = s["publish_url"].as_str().unwrap();
    let mut input =
        HttpPublisher::new(client.clone(), publish_url, "video/MP2T", config.clone()).unwrap();
    let subscribe_url = s["subscribe_url"].as_str().unwrap();
    let mut output = HttpSubscriber::new(client, subscribe_url, 0, config).unwrap();
    let seg = segment(5, 12);
    publish(&mut input, &seg).await;
    assert_eq!(next_segment(&mut output).await.unwrap(), seg);
    eventually(Duration::from_secs(10), "the segment counted by the replacement", || {
        std::future::ready(other.byoc_stats().segments_in == 1)
    })
    .await;
    assert_eq!(serving.byoc_stats().segments_in, 0);

    // The orchestrator left is penalised for nothing.
    setup.not_penalised(serving).await;
    setup.gw.shutdown().await;
}

/// The shortage lasts: the replacement's channels cannot be dialled either. The stream is
/// stopped there too and, no orchestrator being left, ends; neither orchestrator is
/// penalised, and the client finds its stream gone and its channels closed.
#[test]
fn a_shortage_that_lasts_ends_the_stream_once_every_orchestrator_was_tried_blaming_none() {
    let name =
        "a_shortage_that_lasts_ends_the_stream_once_every_orchestrator_was_tried_blaming_none";
    alone(name, lasting_shortage);
}

async fn lasting_shortage() {
    let mut setup = Setup::new().await;
    let (s, held, _conn) = setup.short_of_descriptors().await;
    setup.gates[1 - setup.first].release();
    let other = setup.other();
    eventually(Duration::from_secs(10), "the stream stopped at the other orchestrator", || {
        let stats = other.byoc_stats();
        std::future::ready(stats.stream_stops == 1 && stats.streams_active == 0)
    })
    .await;
    drop(held);
    // No orchestrator is left to try: the stream ends.
    let status_url = s["status_url"].as_str().unwrap();
    eventually(Duration::from_secs(10), "the stream over", || async {
        owner_get(status_url).await.0 == 404
    })
    .await;
    let (_, listed) = admin_get(&setup.gw, "/byoc/streams").await;
    assert_eq!(listed["streams"], json!([]), "{listed}");
    let (client, config) = trickle();
    let subscribe_url = s["subscribe_url"].as_str().unwrap();
    let mut output = HttpSubscriber::new(client, subscribe_url, 0, config).unwrap();
    assert!(next_segment(&mut output).await.is_none(), "the output channel closed");
    for sim in &setup.sims {
        let stats = sim.byoc_stats();
        assert_eq!((stats.stream_starts, stats.stream_stops), (1, 1), "{}", sim.url());
        setup.not_penalised(sim).await;
    }
    setup.gw.shutdown().await;
}
