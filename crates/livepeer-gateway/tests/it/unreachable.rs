//! An orchestrator whose service address stops taking connections, over real sockets: the
//! orchestrator announces a TCP forwarder in front of its own port as its service address,
//! and the test closes the forwarder after a first paid job. A dial that is refused sends
//! nothing, so the orchestrator is penalised (its address failed) but the payment made for
//! the attempt reached nobody: the credit the gateway counts on there is what it was, not
//! booked as spent, which would have the next job pay it again, and its tickets are not
//! counted as sent. (And the other side of that count: a job whose client leaves mid-call
//! has its tickets counted, since they went out; one whose client leaves while its dial
//! still waits has not, since none did.)

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use livepeer_gateway::Gateway;
use livepeer_pm::{LocalSigner, SignedRatio};
use livepeer_sim::{ByocKind, Sim, SimByoc, SimConfig, SimModel};
use serde_json::{Value, json};
use tokio::net::{TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::byoc_refused::view;
use crate::byoc_remote::reverse_job;
use crate::byoc_unanswered::{REVERSAL, failed_job, failed_job_of};
use crate::support::*;

const KEY: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";

/// A TCP forwarder to the address it is pointed at, until [`Forwarder::close`].
struct Forwarder {
    addr: SocketAddr,
    to: Arc<OnceLock<SocketAddr>>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    /// A second socket on the port, bound and never listening: once the listener is gone,
    /// dials to the port are refused, and no socket bound to any port (`:0`) is given it.
    held: TcpSocket,
}

/// A socket on 127.0.0.1 port `port` (`0`: any) in a `SO_REUSEPORT` group.
fn group_socket(port: u16) -> TcpSocket {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_reuseaddr(true).unwrap();
    socket.set_reuseport(true).unwrap();
    socket.bind(SocketAddr::from(([127, 0, 0, 1], port))).unwrap();
    socket
}

impl Forwarder {
    /// Listens on a port of its own at once; connections are carried once it is pointed
    /// somewhere ([`Forwarder::point_at`]), and closed before.
    async fn start() -> Self {
        let socket = group_socket(0);
        let addr = socket.local_addr().unwrap();
        let held = group_socket(addr.port());
        let listener = socket.listen(64).unwrap();
        let to = Arc::new(OnceLock::new());
        let cancel = CancellationToken::new();
        let (stop, target) = (cancel.clone(), to.clone());
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let (mut inbound, _) = tokio::select! {
                    () = stop.cancelled() => break,
                    accepted = listener.accept() => match accepted {
                        Ok(conn) => conn,
                        Err(_) => break,
                    },
                };
                let Some(&to) = target.get() else { continue };
                let stop = stop.clone();
                conns.spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(to).await else { return };
                    tokio::select! {
                        () = stop.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    }
                });
            }
            drop(listener);
            while conns.join_next().await.is_some() {}
        });
        Self { addr, to, cancel, task, held }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn point_at(&self, url: &str) {
        let url = url::Url::parse(url).unwrap();
        let to = SocketAddr::new(url.host_str().unwrap().parse().unwrap(), url.port().unwrap());
        self.to.set(to).unwrap();
    }

    /// Closes the listening socket and every connection it carried, and returns once the
    /// gateway has closed its side of them too (its idle connections are swept every second):
    /// from then on a dial to the forwarder's address is refused, and no kept connection
    /// remains that a request could be written into. The port stays held (not listening) by
    /// what this returns, which the test keeps to its end.
    async fn close(self) -> TcpSocket {
        self.cancel.cancel();
        self.task.await.unwrap();
        eventually(Duration::from_secs(10), "the gateway's connections closed", || async {
            connected_to(self.addr.port()) == 0
        })
        .await;
        self.held
    }
}

/// An on-chain simulator behind a forwarder. With `service`, the simulator announces the
/// forwarder as its service address (where AI jobs go); otherwise the gateway is to be given
/// the forwarder as the orchestrator's address (where BYOC jobs go: go-livepeer's gateway
/// sends them where their job token came from).
async fn forwarded(config: SimConfig, service: bool) -> (Sim, Forwarder) {
    let forwarder = Forwarder::start().await;
    let mut eth = [0u8; 20];
    eth[19] = 7;
    let config = SimConfig {
        service_uri: service.then(|| forwarder.url()),
        eth_address: Some(livepeer_pm::Address::from(eth)),
        ..config
    };
    let sim = Sim::start(config).await.unwrap();
    forwarder.point_at(sim.url());
    (sim, forwarder)
}

/// A gateway paying the orchestrator at `url` with [`KEY`], holding its BYOC job tokens for
/// an hour.
async fn paying_gateway(url: &str) -> Gateway {
    let mut c = config(&[url]);
    c.signer = Some(Arc::new(LocalSigner::from_hex(KEY).unwrap()));
    c.byoc.token_refresh = Duration::from_secs(3600);
    start(c).await
}

/// A simulator charging 1e9 wei per second for `REVERSAL`, behind a forwarder given to the
/// gateway as the orchestrator's address, and a paying gateway holding its job token:
/// the simulator, the forwarder, its URL and the gateway.
async fn byoc_behind_forwarder() -> (Sim, Forwarder, String, Gateway) {
    let byoc = vec![SimByoc::new(REVERSAL, ByocKind::Reverse).price(1_000_000_000, 1)];
    let (sim, forwarder) = forwarded(SimConfig { byoc, ..SimConfig::default() }, false).await;
    let url = forwarder.url();
    let gw = paying_gateway(&url).await;
    eventually(Duration::from_secs(10), "the job token", || async {
        view(&gw, &url).await.is_some()
    })
    .await;
    (sim, forwarder, url, gw)
}

/// The credit `gw`'s one payment session counts on at its orchestrator, in wei.
async fn ai_credit(gw: &Gateway) -> String {
    let (_, status) = admin_get(gw, "/status").await;
    let sessions = status["payments"]["sessions"].as_array().cloned().unwrap_or_default();
    assert_eq!(sessions.len(), 1, "{status}");
    sessions[0]["credit_wei"].as_str().unwrap().to_owned()
}

/// A failed job's answer says its dial was refused (not that no token could be had, say).
fn refused_there(failed: &Value) {
    let message = failed["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("refused"), "{failed}");
}

/// `livepeer_tickets_sent`, summed over its series.
async fn tickets_sent(gw: &Gateway) -> u64 {
    let url = format!("http://{}/metrics", gw.admin_addr);
    let metrics = reqwest::get(url).await.unwrap().text().await.unwrap();
    let series = metrics.lines().filter(|l| l.starts_with("livepeer_tickets_sent{"));
    series.map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap()).sum()
}

/// A simulator charging 1e6 wei per pixel of text-to-image, whose service URI is a forwarder,
/// and a paying gateway pointed at it: the simulator, the forwarder and the gateway.
async fn paid_t2i_behind_forwarder() -> (Sim, Forwarder, Gateway) {
    let model = SimModel::new("text-to-image", SD).price(1_000_000, 1).capacity(8);
    let config = SimConfig { models: vec![model], ..SimConfig::default() };
    let (sim, forwarder) = forwarded(config, true).await;
    let gw = paying_gateway(sim.url()).await;
    (sim, forwarder, gw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ai_job_refused_at_connect_keeps_its_credit_and_penalises_the_address() {
    // 1e6 wei per pixel: a 64×64 image costs 4.096e9, and a ticket is worth about 8e9, so
    // the first job leaves about 3.9e9 of credit and the second sends a ticket again. That
    // ticket never leaves: the dial is refused. Booked as spent (as a connection broken
    // after sending is), the credit would fall to nothing.
    let (sim, forwarder, gw) = paid_t2i_behind_forwarder().await;
    let (status, body) = small_t2i(&gw).await;
    assert_eq!(status, 200, "{body}");
    let before = ai_credit(&gw).await;
    assert!(before != "0" && !before.starts_with('-'), "{before}");
    let tickets = tickets_sent(&gw).await;
    assert!(tickets > 0, "the first job sent tickets");
    let _held = forwarder.close().await;
    let (status, body) = small_t2i(&gw).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"]["type"], "orchestrator_failed", "{body}");
    // Read first: its cooldown is short, and a probe of the orchestrator's own address
    // (which still answers) ends it.
    let orch = orch_state(&gw, sim.url()).await;
    assert_eq!(orch["state"], "ejected", "{orch}");
    assert_eq!(ai_credit(&gw).await, before, "the refused dial's ticket reached nobody");
    assert_eq!(tickets_sent(&gw).await, tickets, "nor is it counted as sent");
    assert_eq!(sim.payments().payments, 1, "only the first job's payment arrived");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ai_jobs_tickets_are_counted_when_its_client_leaves_mid_call() {
    // As for BYOC below: the orchestrator holds a paid AI job and the client hangs up. The
    // attempt's tickets went out with the call; counted only when the call ended, a dropped
    // job's were counted nowhere (nor on a customer's tab).
    let (sim, _forwarder, gw) = paid_t2i_behind_forwarder().await;
    sim.set_ai_mode(livepeer_sim::AiMode::Hang);
    let job = tokio::spawn(small_t2i_owned(gw.http_addr));
    counted_once_its_client_left(&gw, job, || sim.ai_requests() == 1).await;
    sim.set_ai_mode(livepeer_sim::AiMode::Normal);
    let (status, body) = small_t2i(&gw).await;
    assert_eq!(status, 200, "{body}");
    gw.shutdown().await;
}

/// Once `job` has reached the orchestrator (`arrived`), its tickets are not counted yet; its
/// client then leaves (the task is aborted), and they are counted.
async fn counted_once_its_client_left<T>(
    gw: &Gateway,
    job: tokio::task::JoinHandle<T>,
    arrived: impl Fn() -> bool,
) {
    eventually(Duration::from_secs(10), "the job at the orchestrator", || {
        let at = arrived();
        async move { at }
    })
    .await;
    assert_eq!(tickets_sent(gw).await, 0, "not counted while the call is out");
    job.abort();
    eventually(Duration::from_secs(10), "the tickets counted as sent", || async {
        tickets_sent(gw).await > 0
    })
    .await;
}

/// [`small_t2i`] on a gateway known by its address, for a task of its own.
async fn small_t2i_owned(addr: SocketAddr) -> reqwest::Result<reqwest::Response> {
    reqwest::Client::new()
        .post(format!("http://{addr}/text-to-image"))
        .json(&json!({"prompt": "x", "model_id": SD, "width": 64, "height": 64}))
        .send()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_byoc_job_refused_at_connect_keeps_its_credit() {
    // 1e9 wei per second against tickets of 8e9: a first job of 180 s pays its timeout (23
    // tickets, 184e9) and is charged its second. The view then holds over two minutes of the
    // price, so a second job of 10 s sends no ticket. Its dial is refused: of unknown outcome,
    // its 10 s would have been debited from the view.
    let (_sim, forwarder, url, gw) = byoc_behind_forwarder().await;
    reverse_job(&gw, 180).await;
    let before = view(&gw, &url).await.unwrap();
    let two_minutes = SignedRatio::from(livepeer_pm::Ratio::from_u64(120_000_000_000));
    assert!(before > two_minutes, "{before}");
    let _held = forwarder.close().await;
    let failed = failed_job(&gw).await;
    refused_there(&failed);
    assert_eq!(view(&gw, &url).await.unwrap(), before, "nothing was sent");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_byoc_jobs_tickets_refused_at_connect_are_not_counted_as_sent() {
    // A first job of 10 s pays the minute the orchestrator wants held (8 tickets of 8e9).
    // A job of 600 s then needs tickets again (600e9 against about 54e9 held); its dial is
    // refused, so they reached nobody: neither the credit nor the tickets sent move.
    let (_sim, forwarder, url, gw) = byoc_behind_forwarder().await;
    reverse_job(&gw, 10).await;
    let (before, tickets) = (view(&gw, &url).await.unwrap(), tickets_sent(&gw).await);
    assert!(tickets > 0, "the first job sent tickets");
    let _held = forwarder.close().await;
    refused_there(&failed_job_of(&gw, 600).await);
    assert_eq!(view(&gw, &url).await.unwrap(), before, "nothing was sent");
    assert_eq!(tickets_sent(&gw).await, tickets, "nor counted as sent");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_byoc_jobs_tickets_are_counted_when_its_client_leaves_mid_call() {
    // The orchestrator holds a paid job unanswered and the client hangs up: the job is
    // dropped with its handler, mid-call. Its tickets went out with the call, so they count
    // as sent (counted after the call, they were counted nowhere).
    use livepeer_sim::ByocFault;
    let (sim, _forwarder, _url, gw) = byoc_behind_forwarder().await;
    sim.set_byoc_fault(ByocFault::Hang);
    let job = reqwest::Client::new()
        .post(format!("http://{}/process/request/reverse", gw.http_addr))
        .header("Livepeer", crate::byoc_stream::job_header(REVERSAL, 10, "{}"))
        .json(&json!({"text": "hello"}))
        .send();
    let job = tokio::spawn(job);
    counted_once_its_client_left(&gw, job, || sim.byoc_stats().requests == 1).await;
    // The dropped job's payment was settled with it: the next job is paid and served.
    sim.set_byoc_fault(ByocFault::None);
    reverse_job(&gw, 10).await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segment_refused_at_connect_keeps_its_credit_and_counts_no_tickets() {
    // Each segment's fee estimate (about 7.3e6 wei) is paid with tickets of 1e6 EV. The
    // second segment's dial is refused: its tickets reached nobody, so neither the credit
    // nor the stream's count of EV sent moves.
    let forwarder = Forwarder::start().await;
    let config = SimConfig {
        service_uri: Some(forwarder.url()),
        ..crate::transcode_paid::onchain_config(0x44)
    };
    let signer = LocalSigner::from_bytes(&[0x44; 32]).unwrap();
    let sim = Sim::start(config.with_signer(signer)).await.unwrap();
    forwarder.point_at(sim.url());
    let mut c = crate::transcode::gateway_config(&[&sim]);
    c.signer = Some(Arc::new(LocalSigner::from_hex(KEY).unwrap()));
    let gw = start(c).await;
    let resp = crate::transcode::push(&gw, "refused", 0, None).await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let spend = |status: &Value| status["spend"]["ev_sent_wei"].clone();
    let (_, status) = admin_get(&gw, "/transcode/streams/refused").await;
    let (sent, credit) = (spend(&status), ai_credit(&gw).await);
    assert_ne!(sent, "0", "{status}");
    let _held = forwarder.close().await;
    let resp = crate::transcode::push(&gw, "refused", 1, None).await;
    // go-livepeer's status for a segment no orchestrator took before the attempts ran out.
    assert_eq!(resp.status(), 503);
    let failed: Value = resp.json().await.unwrap();
    assert_eq!(failed["error"]["type"], "no_orchestrator", "{failed}");
    let (_, status) = admin_get(&gw, "/transcode/streams/refused").await;
    assert_eq!(spend(&status), sent, "the refused segment's tickets are not counted: {status}");
    assert_eq!(ai_credit(&gw).await, credit, "and their credit is what it was");
    assert_eq!(sim.payments().payments, 1, "only the first segment's payment arrived");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ai_jobs_payment_is_given_back_when_its_client_leaves_while_its_dial_waits() {
    // A first job leaves about 3.9e9 wei of credit (see above). The forwarder then goes, and
    // its port becomes a listener whose one-place accept queue is taken: the kernel drops
    // further connection requests, so the second job's dial waits. Its payment (a ticket, its
    // credit staged) is made before the dial; its client leaves meanwhile. Nothing was
    // written: before, its ticket was counted as sent (and charged to a customer's key) and
    // the credit it staged was lost.
    let model = SimModel::new("text-to-image", SD).price(1_000_000, 1).capacity(8);
    let (sim, forwarder) =
        forwarded(SimConfig { models: vec![model], ..SimConfig::default() }, true).await;
    let mut c = config(&[sim.url()]);
    c.signer = Some(Arc::new(LocalSigner::from_hex(KEY).unwrap()));
    // The dial waits for as long as the test needs.
    c.connect_timeout = Duration::from_secs(120);
    let gw = start(c).await;
    let (status, body) = small_t2i(&gw).await;
    assert_eq!(status, 200, "{body}");
    let (credit, tickets) = (ai_credit(&gw).await, tickets_sent(&gw).await);
    assert_ne!(credit, "0", "the first job left credit");
    let addr = forwarder.addr;
    let _listener = forwarder.close().await.listen(0).unwrap();
    let _queued = TcpStream::connect(addr).await.unwrap();
    let job = tokio::spawn(small_t2i_owned(gw.http_addr));
    eventually(Duration::from_secs(10), "the second job's ticket made", || async {
        let (_, status) = admin_get(&gw, "/status").await;
        let sessions = status["payments"]["sessions"].as_array().cloned().unwrap_or_default();
        sessions.iter().any(|s| s["nonces_used"].as_u64().unwrap_or(0) > tickets)
    })
    .await;
    job.abort();
    eventually(Duration::from_secs(10), "the request let go of its orchestrator", || async {
        let (_, orchs) = admin_get(&gw, "/orchestrators").await;
        let leases: u64 = orchs["orchestrators"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|o| o["in_flight"].as_u64())
            .sum();
        leases == 0
    })
    .await;
    assert_eq!(tickets_sent(&gw).await, tickets, "nothing was written");
    assert_eq!(ai_credit(&gw).await, credit, "the staged credit is back");
    gw.shutdown().await;
}
