//! Builders shared by the tests.

use std::future::Future;
use std::time::Duration;

use livepeer_gateway::Gateway;
use livepeer_gateway::config::{Config, Discovery, Flags, Ingest, Listen, OrchSource, Selection};
use livepeer_sim::{Sim, SimConfig, SimModel};
use serde_json::Value;

pub const SD: &str = "stabilityai/sd-turbo";
pub const SDXL: &str = "ByteDance/SDXL-Lightning";
/// The LLM every test simulator that serves one offers.
pub const LLM: &str = "meta-llama/Meta-Llama-3.1-8B-Instruct";

/// A config on ephemeral ports with quick timers, pointing at `urls`.
pub fn config(urls: &[&str]) -> Config {
    let flags = Flags {
        listen: Listen {
            http_addr: Some("127.0.0.1:0".into()),
            cli_addr: Some("127.0.0.1:0".into()),
            ..Listen::default()
        },
        discovery: Discovery {
            orch_addr: Some(urls.join(",")),
            discovery_timeout: Some("700ms".into()),
            orch_connect_timeout: Some("500ms".into()),
            orch_refresh_interval: Some("30s".into()),
            ..Discovery::default()
        },
        selection: Selection {
            eject_base: Some("300ms".into()),
            eject_max: Some("2s".into()),
            probe_interval: Some("50ms".into()),
            ..Selection::default()
        },
        // Tests run side by side: RTMP on an ephemeral port too, never 1935.
        ingest: Ingest { rtmp_addr: Some("127.0.0.1:0".into()), ..Ingest::default() },
        ..Flags::default()
    };
    Config::load(flags).unwrap()
}

pub fn with_source(mut c: Config, source: OrchSource) -> Config {
    c.orchestrators = source;
    c
}

/// A simulated orchestrator with two text-to-image models: `SD` (capacity 4) at the price
/// set, and `SDXL` at twice that price, warm unless `cold_sdxl` is called; cleartext unless `tls`.
pub struct TextSim {
    name: String,
    tls: bool,
    sd_price: i64,
    sdxl_warm: bool,
}

impl TextSim {
    pub fn new(name: &str) -> Self {
        Self { name: name.into(), tls: false, sd_price: 5, sdxl_warm: true }
    }

    pub fn tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// Wei per pixel of `SD`.
    pub fn price(mut self, wei: i64) -> Self {
        self.sd_price = wei;
        self
    }

    pub fn cold_sdxl(mut self) -> Self {
        self.sdxl_warm = false;
        self
    }

    pub async fn start(self) -> Sim {
        Sim::start(SimConfig {
            name: self.name,
            tls: self.tls,
            models: vec![
                SimModel::new("text-to-image", SD).price(self.sd_price, 1).capacity(4),
                SimModel::new("text-to-image", SDXL)
                    .price(self.sd_price * 2, 1)
                    .warm(self.sdxl_warm),
            ],
            ..SimConfig::default()
        })
        .await
        .unwrap()
    }
}

pub async fn start(config: Config) -> Gateway {
    Gateway::start(config).await.unwrap()
}

/// A 64×64 text-to-image job of `SD` to `gw`: its status and JSON body (`null` if none).
pub async fn small_t2i(gw: &Gateway) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("http://{}/text-to-image", gw.http_addr))
        .json(&serde_json::json!({"prompt": "x", "model_id": SD, "width": 64, "height": 64}))
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null))
}

/// `body` POSTed as JSON to `path` on `gw`'s public API.
pub async fn post_json(gw: &Gateway, path: &str, body: &Value) -> reqwest::Response {
    let url = format!("http://{}{path}", gw.http_addr);
    reqwest::Client::new().post(url).json(body).send().await.unwrap()
}

pub async fn admin_get(gw: &Gateway, path: &str) -> (u16, Value) {
    let resp = reqwest::get(format!("http://{}{path}", gw.admin_addr)).await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.json::<Value>().await.unwrap_or(Value::Null);
    (status, body)
}

pub async fn admin_text(gw: &Gateway, path: &str) -> String {
    reqwest::get(format!("http://{}{path}", gw.admin_addr)).await.unwrap().text().await.unwrap()
}

/// `/metrics` without the `node_id` and `node_type` labels every series carries, so that tests
/// can look for a series by its own labels. Checks they are there, last, on every sample.
pub async fn metrics_text(gw: &Gateway) -> String {
    without_node_labels(&admin_text(gw, "/metrics").await)
}

/// `text` (a `/metrics` body) with each sample's `node_id` and `node_type` taken out; panics
/// on a sample without them, but the process series (none, as go-livepeer's).
pub fn without_node_labels(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        if !line.starts_with('#') && !line.is_empty() && !line.starts_with("process_") {
            // `livepeer_versions` has no `node_id`, as go-livepeer's.
            let start = line.find("node_id=\"").or_else(|| line.find("node_type=\""));
            let start = start.unwrap_or_else(|| panic!("no node_id: {line}"));
            let tail = "node_type=\"bctr\"}";
            let end = line.find(tail).unwrap_or_else(|| panic!("no node_type: {line}"));
            let (before, after) = (&line[..start - 1], &line[end + tail.len()..]);
            out.push_str(before);
            // An empty label set goes with them; otherwise the set closes after its own.
            if !before.ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
                out.push('}');
            }
            out.push_str(after);
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

/// Waits until `check` holds, polling; fails the test after `limit`.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// What `/orchestrators` shows of job `job` (`pipeline/model`) of the orchestrator at `url`
/// (`null` when it shows nothing of it).
pub async fn job_state(gw: &Gateway, url: &str, job: &str) -> Value {
    let o = orch_state(gw, url).await;
    let jobs = o["jobs"].as_array().cloned().unwrap_or_default();
    jobs.into_iter().find(|j| j["job"] == job).unwrap_or(Value::Null)
}

/// The state of the orchestrator at `url` as `/orchestrators` reports it.
pub async fn orch_state(gw: &Gateway, url: &str) -> Value {
    let (_, body) = admin_get(gw, "/orchestrators").await;
    body["orchestrators"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["url"].as_str().unwrap().trim_end_matches('/') == url)
        .cloned()
        .unwrap_or(Value::Null)
}

/// Reads a gateway binary's JSON log `lines` (`--log-format json`) up to its "gateway
/// listening" record: its public and admin addresses.
pub fn listening(lines: &mut impl Iterator<Item = String>) -> (String, String) {
    loop {
        let line = lines.next().expect("gateway exited before listening");
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
        if v["fields"]["message"] == "gateway listening" {
            let addr = |k: &str| v["fields"][k].as_str().unwrap().to_owned();
            return (addr("http_addr"), addr("admin_addr"));
        }
    }
}

/// Every descriptor the process may still open, held until dropped: while it lives, making a
/// socket fails with `EMFILE`. The soft limit is lowered to a little above the highest open
/// descriptor, so that filling it takes a few files, and restored on drop.
pub struct NoDescriptors {
    files: Vec<std::fs::File>,
    limit: rustix::process::Rlimit,
}

impl NoDescriptors {
    pub fn take() -> Self {
        use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
        let limit = getrlimit(Resource::Nofile);
        let highest = std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
            .max()
            .unwrap_or(0);
        let low = Rlimit { current: Some(highest + 16), maximum: limit.maximum };
        setrlimit(Resource::Nofile, low).unwrap();
        let mut files = Vec::new();
        loop {
            match std::fs::File::open("/dev/null") {
                Ok(f) => files.push(f),
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::MFILE.raw_os_error()) => {
                    break;
                }
                Err(e) => panic!("opening /dev/null: {e}"),
            }
        }
        Self { files, limit }
    }
}

impl Drop for NoDescriptors {
    fn drop(&mut self) {
        self.files.clear();
        let _ = rustix::process::setrlimit(rustix::process::Resource::Nofile, self.limit);
    }
}

/// One HTTP/1.1 connection to the gateway, dialled when made and kept, for the requests a test
/// sends while [`NoDescriptors`] holds the rest. A pooled client will not do: it puts a finished
/// connection back in its pool from a task of its own, so the next request can find the pool
/// empty and dial a new socket, which then fails with `EMFILE` (a CI run did).
pub struct HeldConnection {
    /// The `Host` header sent: the gateway's address.
    host: String,
    sender: hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>,
}

impl HeldConnection {
    pub async fn open(addr: std::net::SocketAddr) -> Self {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let io = hyper_util::rt::TokioIo::new(tcp);
        let (sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(conn);
        let mut held = Self { host: addr.to_string(), sender };
        // A request answered proves the gateway has accepted the connection: its accept
        // takes a descriptor too, which must happen before they are gone.
        let (status, _, _) = held.send("GET", "/healthz", &[], "").await;
        assert_eq!(status, 200);
        held
    }

    /// Sends `method path` with `headers` and `body`, and reads the whole answer: its status,
    /// headers and body as JSON (`Null` if it is not JSON).
    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<bytes::Bytes>,
    ) -> (http::StatusCode, http::HeaderMap, Value) {
        use http_body_util::BodyExt as _;
        let mut req = http::Request::builder().method(method).uri(path).header("host", &self.host);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let req = req.body(http_body_util::Full::new(body.into())).unwrap();
        self.sender.ready().await.unwrap();
        let resp = self.sender.send_request(req).await.unwrap();
        let (head, body) = resp.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        (head.status, head.headers, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }
}

/// A line of this process's `/proc/self/status` in bytes: `VmRSS` (resident now) or `VmHWM`
/// (its peak).
pub fn proc_status(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

/// Whether the test `name` (its path in this binary) is to run here: under nextest, or in the
/// child process this runs it in. `cargo test` (the fallback of `scripts/test`) runs tests as
/// threads of one process, where a test that changes what the process shares (its descriptor
/// limit) would fail its neighbours; there it runs itself alone in a child, and `false` tells
/// the caller it is done.
pub fn run_alone(name: &str) -> bool {
    const CHILD: &str = "LIVEPEER_TEST_ALONE";
    if std::env::var_os("NEXTEST").is_some() || std::env::var(CHILD).as_deref() == Ok(name) {
        return true;
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let out = std::process::Command::new(exe)
        .args([name, "--exact", "--test-threads=1", "--nocapture"])
        .env(CHILD, name)
        .output()
        .expect("running the test alone");
    let (stdout, stderr) =
        (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{name} failed alone:\n{stdout}\n{stderr}");
    assert!(stdout.contains("1 passed"), "{name} did not run alone:\n{stdout}\n{stderr}");
    false
}

/// What a [`signer_proxy`] does with one call: the body to forward, or its own answer.
pub type SignerHook = std::sync::Arc<
    dyn Fn(&str, Vec<u8>) -> Result<Vec<u8>, (axum::http::StatusCode, &'static [u8])> + Send + Sync,
>;

/// A remote signer in front of the real one at `real`: every call goes through `hook` (given
/// its path and body), then, unless the hook answered it, on to `real` with its
/// `Authorization`; the real signer's answer comes back as it is.
pub async fn signer_proxy(real: std::net::SocketAddr, hook: SignerHook) -> std::net::SocketAddr {
    let http = reqwest::Client::new();
    let app = axum::Router::new().fallback(
        move |uri: axum::http::Uri, headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let (http, hook) = (http.clone(), hook.clone());
            async move {
                let body = match hook(uri.path(), body.to_vec()) {
                    Ok(body) => body,
                    Err((status, answer)) => {
                        return (status, axum::body::Bytes::from_static(answer));
                    }
                };
                let resp = http
                    .post(format!("http://{real}{}", uri.path()))
                    .header("authorization", headers["authorization"].clone())
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                let status = axum::http::StatusCode::from_u16(resp.status().as_u16()).unwrap();
                (status, resp.bytes().await.unwrap())
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// TCP connections to local `port` (in this network namespace: the test's own, as nothing
/// else dials that port) still open on the dialling side: established, or closed by the peer
/// but not yet by the dialler (`CLOSE_WAIT`), each holding a descriptor.
pub fn connected_to(port: u16) -> usize {
    let mut open = 0;
    for table in ["/proc/self/net/tcp", "/proc/self/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(remote), Some(state)) = (fields.get(2), fields.get(3)) else { continue };
            let remote_port =
                remote.rsplit(':').next().and_then(|p| u16::from_str_radix(p, 16).ok());
            if remote_port == Some(port) && matches!(*state, "01" | "08") {
                open += 1;
            }
        }
    }
    open
}
