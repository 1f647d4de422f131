//! A hostile HTTP/2 orchestrator, written frame by frame over real sockets: what it can make
//! the gateway's HTTP/2 client (h2c and TLS by ALPN) and its gRPC client hold, and for how long.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use livepeer_gateway::Gateway;
use livepeer_gateway::config::Config;
use livepeer_gateway::orchestrator::http::OrchHttpVersion;
use livepeer_sim::{Sim, SimConfig, SimModel};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::h2_front::{FrontLog, h2_front};
use crate::support::*;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const CONTINUATION: u8 = 9;
const END_STREAM: u8 = 1;
const END_HEADERS: u8 = 4;
const ACK: u8 = 1;

/// One frame as read.
#[derive(Debug)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

/// The byte stream a hostile server speaks over: TCP, or TLS over it.
pub trait Wire: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}

impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Wire for T {}

/// A server's side of one HTTP/2 connection, frame by frame.
pub struct Conn {
    tcp: Box<dyn Wire>,
}

impl Conn {
    /// Reads the client's preface.
    async fn accept(mut tcp: Box<dyn Wire>) -> Option<Self> {
        let mut preface = [0u8; 24];
        tcp.read_exact(&mut preface).await.ok()?;
        (preface == PREFACE).then_some(Self { tcp })
    }

    pub async fn read(&mut self) -> Option<Frame> {
        let mut head = [0u8; 9];
        self.tcp.read_exact(&mut head).await.ok()?;
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let mut payload = vec![0u8; len];
        self.tcp.read_exact(&mut payload).await.ok()?;
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        Some(Frame { kind: head[3], flags: head[4], stream, payload })
    }

    pub async fn write(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) -> bool {
        let len = (payload.len() as u32).to_be_bytes();
        let mut frame = Vec::with_capacity(9 + payload.len());
        frame.extend_from_slice(&len[1..]);
        frame.extend_from_slice(&[kind, flags]);
        frame.extend_from_slice(&stream.to_be_bytes());
        frame.extend_from_slice(payload);
        self.tcp.write_all(&frame).await.is_ok()
    }

    /// Sends SETTINGS with `(id, value)` pairs.
    pub async fn settings(&mut self, pairs: &[(u16, u32)]) -> bool {
        let mut payload = Vec::new();
        for (id, value) in pairs {
            payload.extend_from_slice(&id.to_be_bytes());
            payload.extend_from_slice(&value.to_be_bytes());
        }
        self.write(SETTINGS, 0, 0, &payload).await
    }

    /// Reads until a request has ended (its END_STREAM), acking the client's SETTINGS when
    /// `ack`: the request's stream id and body.
    pub async fn request(&mut self, ack: bool) -> Option<(u32, Vec<u8>)> {
        let mut body = Vec::new();
        loop {
            let f = self.read().await?;
            match f.kind {
                SETTINGS if f.flags & ACK == 0 && ack => {
                    self.write(SETTINGS, ACK, 0, &[]).await;
                }
                DATA => body.extend_from_slice(&f.payload),
                _ => {}
            }
            if matches!(f.kind, HEADERS | DATA) && f.flags & END_STREAM != 0 {
                return Some((f.stream, body));
            }
        }
    }

    /// A JSON answer's head with `pad` bytes (at least) of extra header fields, each
    /// CONTINUATION frame made as it is sent (the test's own memory stays small).
    pub async fn head(&mut self, stream: u32, pad: usize) -> bool {
        let mut first = vec![0x88];
        literal(&mut first, b"content-type", b"application/json");
        let frames = pad.div_ceil(4 * 4010);
        let flags = if frames == 0 { END_HEADERS } else { 0 };
        if !self.write(HEADERS, flags, stream, &first).await {
            return false;
        }
        let value = vec![b'a'; 4000];
        for frame in 0..frames {
            let mut block = Vec::with_capacity(16_100);
            for n in 0..4 {
                literal(&mut block, format!("x-pad-{frame}-{n}").as_bytes(), &value);
            }
            let flags = if frame + 1 == frames { END_HEADERS } else { 0 };
            if !self.write(CONTINUATION, flags, stream, &block).await {
                return false;
            }
        }
        true
    }
}

/// An HPACK literal field without indexing, new name.
fn literal(block: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    block.push(0);
    int7(block, name.len());
    block.extend_from_slice(name);
    int7(block, value.len());
    block.extend_from_slice(value);
}

/// An HPACK integer with a 7-bit prefix (no Huffman).
fn int7(block: &mut Vec<u8>, mut n: usize) {
    if n < 127 {
        block.push(n as u8);
        return;
    }
    block.push(127);
    n -= 127;
    while n >= 128 {
        block.push((n % 128 + 128) as u8);
        n /= 128;
    }
    block.push(n as u8);
}

/// A server whose every connection runs `serve`; its `http://` URL.
pub async fn hostile<F, Fut>(serve: F) -> String
where
    F: Fn(Conn) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let serve = Arc::new(serve);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let serve = serve.clone();
            tokio::spawn(async move {
                if let Some(conn) = Conn::accept(Box::new(tcp)).await {
                    serve(conn).await;
                }
            });
        }
    });
    url
}

/// As [`hostile`], over TLS (a self-signed certificate, ALPN `h2` only): its `https://` URL.
pub async fn hostile_tls<F, Fut>(serve: F) -> String
where
    F: Fn(Conn) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let cert = rustls::pki_types::CertificateDer::from(certified.cert.der().to_vec());
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let serve = Arc::new(serve);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (serve, acceptor) = (serve.clone(), acceptor.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                if let Some(conn) = Conn::accept(Box::new(tls)).await {
                    serve(conn).await;
                }
            });
        }
    });
    url
}

impl Conn {
    /// Sends a header block (`:status 200` first, then `fields`) in frames of 16 KB.
    pub async fn fields(&mut self, stream: u32, fields: &[(&str, &[u8])], end: bool) -> bool {
        let mut block = vec![0x88];
        for (name, value) in fields {
            literal(&mut block, name.as_bytes(), value);
        }
        self.block(stream, &block, end).await
    }

    pub async fn block(&mut self, stream: u32, block: &[u8], end: bool) -> bool {
        let chunks: Vec<&[u8]> = block.chunks(16_000).collect();
        let last = chunks.len() - 1;
        for (i, chunk) in chunks.into_iter().enumerate() {
            let kind = if i == 0 { HEADERS } else { CONTINUATION };
            let mut flags = if i == last { END_HEADERS } else { 0 };
            if i == 0 && end {
                flags |= END_STREAM;
            }
            if !self.write(kind, flags, stream, chunk).await {
                return false;
            }
        }
        true
    }
}

/// `c` with cooldowns longer than any test: an ejection seen is not a probe's result.
fn long_cooldowns(mut c: Config) -> Config {
    c.eject.base = Duration::from_secs(600);
    c.eject.max = Duration::from_secs(600);
    c
}

/// A simulator offering LLM `models` whose service URI is `service`.
async fn sim_for(service: &str, models: &[&str]) -> Sim {
    Sim::start(SimConfig {
        name: "h2-hostile".into(),
        models: models.iter().map(|m| SimModel::new("llm", m).capacity(64)).collect(),
        service_uri: Some(service.to_owned()),
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

/// A gateway speaking h2c to `sims`' services, trying one orchestrator per request.
async fn gateway(sims: &[&Sim], attempt: Duration) -> Gateway {
    let urls: Vec<&str> = sims.iter().map(|s| s.url()).collect();
    let mut c = long_cooldowns(config(&urls));
    c.ai.orch_http = OrchHttpVersion::H2c;
    c.ai.attempt_timeout = attempt;
    c.ai.max_attempts = 1;
    start(c).await
}

/// Sends the LLM request `body` to `gw`: its answer, within 30 s.
async fn post_llm(gw: &Gateway, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("http://{}/llm", gw.http_addr))
        .json(body)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("an answer within the attempt deadline")
}

/// An LLM request for `model`: its status and body.
async fn llm(gw: &Gateway, model: &str) -> (u16, Value) {
    let body = json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
    let resp = post_llm(gw, &body).await;
    (resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null))
}

/// Whether the request `body` asked for `model`.
fn asks(body: &[u8], model: &str) -> bool {
    String::from_utf8_lossy(body).contains(&format!("\"{model}\""))
}

/// An orchestrator that reset a job's HTTP/2 stream (before its answer, or in the middle of a
/// 2xx answer) was ejected from every job as if its address did not work, over a connection
/// that went on working: go-livepeer's server resets the stream of a handler that failed.
/// Now the reset is that job's failure: its other models are still served.
#[tokio::test]
async fn a_reset_stream_penalises_the_orchestrator_for_that_job_alone() {
    let url = hostile(|mut c| async move {
        c.settings(&[]).await;
        while let Some((s, body)) = c.request(true).await {
            if asks(&body, "reset-before") {
                c.write(RST_STREAM, 0, s, &2u32.to_be_bytes()).await;
            } else if asks(&body, "reset-during") {
                c.head(s, 0).await;
                c.write(DATA, 0, s, b"{\"choi").await;
                c.write(RST_STREAM, 0, s, &2u32.to_be_bytes()).await;
            } else {
                c.head(s, 0).await;
                c.write(DATA, END_STREAM, s, b"{\"choices\":[]}").await;
            }
        }
    })
    .await;
    let sim = sim_for(&url, &["reset-before", "reset-during", "answers"]).await;
    let gw = gateway(&[&sim], Duration::from_secs(10)).await;

    for model in ["reset-before", "reset-during"] {
        let (status, body) = llm(&gw, model).await;
        assert_eq!(status, 502, "{model}: {body}");
        assert_eq!(body["error"]["type"], "orchestrator_failed", "{model}: {body}");
        let job = job_state(&gw, sim.url(), &format!("llm/{model}")).await;
        assert_eq!(job["state"], "ejected", "{model}: {job}");
    }
    let orch = orch_state(&gw, sim.url()).await;
    assert_eq!(orch["consecutive_failures"], 0, "not penalised as a whole: {orch}");
    let (status, body) = llm(&gw, "answers").await;
    assert_eq!(status, 200, "its other jobs are still served: {body}");
}

/// Header lists: hyper's default bound (16 KiB) refused an answer head HTTP/1.1 takes; the
/// bound is now 64 KiB, set explicitly, and a longer list, withheld SETTINGS
/// acknowledgement or not, fails the call without the gateway holding it.
#[tokio::test]
async fn an_answers_header_list_is_bounded_at_64_kib() {
    let serve = |ack: bool| {
        move |mut c: Conn| async move {
            c.settings(&[]).await;
            while let Some((s, body)) = c.request(ack).await {
                let pad = if asks(&body, "fat-head") { 40 << 10 } else { 15 << 20 };
                c.head(s, pad).await;
                c.write(DATA, END_STREAM, s, b"{\"choices\":[]}").await;
            }
        }
    };
    for ack in [true, false] {
        let url = hostile(serve(ack)).await;
        let sim = sim_for(&url, &["fat-head", "huge-head"]).await;
        let gw = gateway(&[&sim], Duration::from_secs(10)).await;
        let (status, body) = llm(&gw, "fat-head").await;
        assert_eq!(status, 200, "40 KiB of headers (ack {ack}): {body}");
        let before = proc_status("VmRSS");
        let (status, body) = llm(&gw, "huge-head").await;
        assert_eq!(status, 502, "15 MiB of headers (ack {ack}): {body}");
        let grown = proc_status("VmRSS").saturating_sub(before);
        assert!(grown < 8 << 20, "{grown} bytes more resident (ack {ack})");
        gw.shutdown().await;
    }
}

/// Every wait an HTTP/2 orchestrator can impose ends at the attempt deadline, as over
/// HTTP/1.1, and is the failure of the job that waited: an answer trickled a byte at a time,
/// a stream never answered, no stream slot ever given (`SETTINGS_MAX_CONCURRENT_STREAMS` 0),
/// no window for the request's body.
#[tokio::test]
async fn waits_an_http2_orchestrator_imposes_end_at_the_attempt_deadline() {
    let per_model = hostile(|mut c| async move {
        c.settings(&[]).await;
        while let Some((s, body)) = c.request(true).await {
            if asks(&body, "trickle") {
                c.head(s, 0).await;
                while c.write(DATA, 0, s, b" ").await {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                return;
            }
        }
    })
    .await;
    let no_slot = hostile(|mut c| async move {
        c.settings(&[(3, 0)]).await;
        while c.read().await.is_some() {}
    })
    .await;
    let no_window = hostile(|mut c| async move {
        c.settings(&[(4, 0)]).await;
        while c.read().await.is_some() {}
    })
    .await;
    let a = sim_for(&per_model, &["trickle", "silent"]).await;
    let b = sim_for(&no_slot, &["no-slot"]).await;
    let c = sim_for(&no_window, &["no-window"]).await;
    let gw = gateway(&[&a, &b, &c], Duration::from_secs(1)).await;
    for (sim, model) in [(&a, "trickle"), (&a, "silent"), (&b, "no-slot"), (&c, "no-window")] {
        let (status, body) = llm(&gw, model).await;
        assert_eq!(status, 504, "{model}: {body}");
        let job = job_state(&gw, sim.url(), &format!("llm/{model}")).await;
        assert_eq!(job["state"], "ejected", "{model}: {job}");
        let orch = orch_state(&gw, sim.url()).await;
        assert_eq!(orch["consecutive_failures"], 0, "{model}: {orch}");
    }
}

/// A GetOrchestrator answer's `grpc-message` was kept whole (15 kB in the pool's record and
/// logs); tonic's refusal of a message over its 4 MiB limit counted as the orchestrator's
/// refusal rather than a malformed answer. Now 300 characters are kept, and the oversized
/// answer is malformed.
#[tokio::test]
async fn a_get_orchestrator_error_is_cut_and_an_oversized_answer_is_malformed() {
    let long = hostile(|mut c| async move {
        c.settings(&[]).await;
        let msg = vec![b'x'; 15_000];
        while let Some((s, _)) = c.request(true).await {
            let grpc = [GRPC, ("grpc-status", b"2".as_slice()), ("grpc-message", &msg)];
            c.fields(s, &grpc, true).await;
        }
    })
    .await;
    let oversized = hostile(|mut c| async move {
        c.settings(&[]).await;
        while let Some((s, _)) = c.request(true).await {
            c.fields(s, &[GRPC], false).await;
            let mut m = vec![0];
            m.extend_from_slice(&(100u32 << 20).to_be_bytes());
            c.write(DATA, 0, s, &m).await;
            while c.write(DATA, 0, s, &[0u8; 16_000]).await {}
        }
    })
    .await;
    let gw = start(config(&[&long, &oversized])).await;
    let last = |url: String| {
        let gw = &gw;
        async move { orch_state(gw, &url).await["last_error"]["message"].as_str().map(str::to_owned) }
    };
    eventually(Duration::from_secs(10), "both refused", || async {
        last(long.clone()).await.is_some() && last(oversized.clone()).await.is_some()
    })
    .await;
    let refused = last(long.clone()).await.unwrap();
    assert!(refused.starts_with("refused: xxx") && refused.len() < 320, "{}", refused.len());
    let malformed = last(oversized.clone()).await.unwrap();
    assert!(malformed.starts_with("malformed answer"), "{malformed}");
}

const GRPC: (&str, &[u8]) = ("content-type", b"application/grpc");

const KEY: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";

/// An on-chain simulator offering the LLM `LLM` at a quarter of its ticket EV (8e9 wei) per
/// 256-token request, or `dearer` times that; its service URI is an [`h2_front`] to it, or
/// itself.
async fn paid_llm(n: u8, dearer: i64, fronted: bool) -> (Sim, Option<Arc<FrontLog>>) {
    let mut addr = [0u8; 20];
    addr[19] = n;
    let model = SimModel::new("llm", LLM).price(7_812_500 * dearer, 1).capacity(64);
    let config = |service_uri| SimConfig {
        name: format!("h2-paid-{n}"),
        eth_address: Some(livepeer_pm::Address::from(addr)),
        models: vec![model.clone()],
        service_uri,
        ..SimConfig::default()
    };
    if !fronted {
        return (Sim::start(config(None)).await.unwrap(), None);
    }
    // The front forwards to the simulator and the simulator announces the front: the
    // simulator's port is picked first.
    let free = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim_addr = free.local_addr().unwrap();
    drop(free);
    let (front, log) = h2_front(format!("http://{sim_addr}")).await;
    let sim = Sim::start(SimConfig { bind: sim_addr, ..config(Some(front)) }).await.unwrap();
    (sim, Some(log))
}

/// A gateway paying with [`KEY`], speaking h2c to orchestrators, `attempts` per request.
async fn paying_gateway(sims: &[&Sim], attempts: u32) -> Gateway {
    let urls: Vec<&str> = sims.iter().map(|s| s.url()).collect();
    let mut c = long_cooldowns(config(&urls));
    c.signer = Some(Arc::new(livepeer_pm::LocalSigner::from_hex(KEY).unwrap()));
    c.ai.orch_http = OrchHttpVersion::H2c;
    c.ai.attempt_timeout = Duration::from_secs(10);
    c.ai.max_attempts = attempts;
    // Price alone decides: the cheaper orchestrator is tried first.
    c.weights.latency = 0.0;
    start(c).await
}

/// A paid LLM request: its status, body and the orchestrator URL that answered it.
async fn paid(gw: &Gateway) -> (u16, Value, Option<String>) {
    let body = json!({"model": LLM, "max_tokens": 256,
        "messages": [{"role": "user", "content": "hi"}]});
    let resp = post_llm(gw, &body).await;
    let status = resp.status().as_u16();
    let orch = resp.headers().get("x-orchestrator-url").map(|v| v.to_str().unwrap().to_owned());
    (status, resp.json().await.unwrap_or(Value::Null), orch)
}

/// The credit the gateway books on `sim` is the balance `sim` keeps for it, and `sim` refused
/// no payment and processed `payments` of them.
async fn books_agree(gw: &Gateway, sim: &Sim, payments: u64, when: &str) {
    let sender = livepeer_pm::LocalSigner::from_hex(KEY).unwrap().address();
    let stats = sim.payments();
    assert!(stats.rejections.is_empty(), "{when}: refused: {:?}", stats.rejections);
    assert_eq!(stats.payments, payments, "{when}: payments the orchestrator processed");
    let held: Vec<_> =
        stats.balances.iter().filter(|((s, _), _)| *s == sender).map(|(_, b)| *b).collect();
    assert_eq!(held.len(), 1, "{when}: {held:?}");
    let (_, status) = admin_get(gw, "/status").await;
    let sessions = status["payments"]["sessions"].as_array().unwrap();
    let session = sessions
        .iter()
        .find(|s| s["orchestrator"].as_str().unwrap().trim_end_matches('/') == sim.url())
        .unwrap_or_else(|| panic!("{when}: no session: {status}"));
    assert_eq!(session["credit_wei"].as_str().unwrap(), held[0].to_string(), "{when}");
}

/// Not penalised, neither as a whole nor for the job.
async fn unpenalised(gw: &Gateway, sim: &Sim) {
    let orch = orch_state(gw, sim.url()).await;
    assert_eq!(orch["consecutive_failures"], 0, "{orch}");
    let job = job_state(gw, sim.url(), &format!("llm/{LLM}")).await;
    assert_ne!(job["state"], "ejected", "{job}");
    assert_eq!(job["consecutive_failures"], 0, "{job}");
}

/// An HTTP/2 orchestrator that refuses a request's stream (`REFUSED_STREAM`) did no
/// processing of it (RFC 9113 §8.7): the request failed there (502) and the orchestrator was
/// penalised. Now the very same request, payment bytes and all, goes again on a new stream;
/// the orchestrator processes the one payment it received, and the books agree.
#[tokio::test]
async fn a_refused_stream_is_sent_again_with_the_same_payment() {
    let (orch, log) = paid_llm(1, 1, true).await;
    let log = log.unwrap();
    let gw = paying_gateway(&[&orch], 1).await;
    log.refuse(1);
    let (status, body, _) = paid(&gw).await;
    assert_eq!(status, 200, "{body}");
    let streams = log.streams();
    assert_eq!(streams.len(), 2, "refused once, then accepted");
    assert!(streams[0].1 && !streams[1].1);
    assert!(!streams[0].0.is_empty(), "the first request pays with tickets");
    assert_eq!(streams[0].0, streams[1].0, "the same payment bytes, sent again");
    books_agree(&gw, &orch, 1, "after the resend").await;
    unpenalised(&gw, &orch).await;
    // Later requests pay exactly enough: nothing was booked twice.
    for i in 0..3 {
        let (status, body, _) = paid(&gw).await;
        assert_eq!(status, 200, "{i}: {body}");
        books_agree(&gw, &orch, 2 + i, &format!("request {i} after")).await;
    }
    gw.shutdown().await;
}

/// An orchestrator refusing every stream (load it will not take): after two resends the job
/// goes to the next orchestrator, or is the client's 503 when there is none; the refusing
/// one is not penalised, and the credit its payment relied on is returned, not spent.
#[tokio::test]
async fn a_stream_refused_each_time_moves_on_unpenalised_and_unpaid() {
    // Cheaper, so selected first.
    let (refuser, log) = paid_llm(2, 1, true).await;
    let log = log.unwrap();
    let (other, _) = paid_llm(3, 8, false).await;
    let gw = paying_gateway(&[&refuser, &other], 2).await;
    // One delivered request first, so that the refuser holds credit the next one relies on.
    let (status, body, by) = paid(&gw).await;
    assert_eq!(status, 200, "{body}");
    assert_ne!(by.as_deref(), Some(other.url()), "the cheaper one delivered");
    assert_eq!(log.streams().len(), 1);
    books_agree(&gw, &refuser, 1, "first").await;
    log.refuse(u32::MAX);
    let (status, body, by) = paid(&gw).await;
    assert_eq!((status, by.as_deref()), (200, Some(other.url())), "{body}");
    let streams = log.streams();
    assert_eq!(streams.len(), 4, "one delivered, then refused three times");
    assert!(streams[1..].iter().all(|(p, refused)| *refused && *p == streams[1].0));
    // The first resend at once, the second after a pause (a lower bound: never flaky).
    let (gaps, pause) = (log.gaps(), livepeer_gateway::orchestrator::http::RESEND_BACKOFF);
    assert!(gaps[2] >= pause, "the second resend waited: {gaps:?}");
    books_agree(&gw, &refuser, 1, "refused").await;
    unpenalised(&gw, &refuser).await;
    gw.shutdown().await;

    // With no other orchestrator, the client is told to come back (503), not blamed.
    let gw = paying_gateway(&[&refuser], 2).await;
    let (status, body, _) = paid(&gw).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["type"], "orchestrators_busy", "{body}");
    unpenalised(&gw, &refuser).await;
    gw.shutdown().await;
}

/// The live start's client kept hyper's 16 KiB bound on HTTP/2 header lists, where the other
/// orchestrator clients take 64 KiB: a TLS orchestrator speaking HTTP/2 (by ALPN) whose start
/// answer had a 40 KiB head failed the start. Now it takes 64 KiB too, and a 15 MiB head,
/// SETTINGS acknowledged or not, fails that orchestrator's start without the gateway holding
/// it.
#[tokio::test]
async fn a_live_starts_header_list_is_bounded_at_64_kib() {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    for ack in [true, false] {
        let pad = Arc::new(AtomicUsize::new(40 << 10));
        let padding = pad.clone();
        let url = hostile_tls(move |mut c| {
            let pad = padding.clone();
            async move {
                c.settings(&[]).await;
                while let Some((s, _)) = c.request(ack).await {
                    // Channels nobody serves: the start is answered, the stream then fails.
                    let answer = json!({"publish_url": "/ai/trickle/x", "subscribe_url":
                        "/ai/trickle/x-out", "control_url": "/ai/trickle/x-control",
                        "events_url": "/ai/trickle/x-events", "manifest_id": "m"});
                    c.head(s, pad.load(SeqCst)).await;
                    c.write(DATA, END_STREAM, s, answer.to_string().as_bytes()).await;
                }
            }
        })
        .await;
        let sim = Sim::start(SimConfig {
            name: "h2-live".into(),
            models: vec![SimModel::new("live-video-to-video", "noop").capacity(8)],
            service_uri: Some(url),
            ..SimConfig::default()
        })
        .await
        .unwrap();
        let gw = start(long_cooldowns(config(&[sim.url()]))).await;
        let start_live = |name: &'static str| {
            let addr = gw.http_addr;
            async move {
                let resp = reqwest::Client::new()
                    .post(format!("http://{addr}/live/video-to-video/{name}/start"))
                    .json(&json!({"pipeline": "noop"}))
                    .timeout(Duration::from_secs(30))
                    .send()
                    .await
                    .unwrap();
                (resp.status().as_u16(), resp.json::<Value>().await.unwrap_or(Value::Null))
            }
        };
        let (status, body) = start_live("fat-head").await;
        assert_eq!(status, 200, "40 KiB of headers (ack {ack}): {body}");
        pad.store(15 << 20, SeqCst);
        let before = proc_status("VmRSS");
        let (status, body) = start_live("huge-head").await;
        assert!(status >= 500, "15 MiB of headers (ack {ack}): {status} {body}");
        let grown = proc_status("VmRSS").saturating_sub(before);
        assert!(grown < 8 << 20, "{grown} bytes more resident (ack {ack})");
        gw.shutdown().await;
    }
}

/// A refusal that comes with the connection's GOAWAY (a server shutting down: no stream
/// processed, none to be opened there): the request goes again on a new connection. Without
/// resending past the GOAWAY too, a resend that met the going connection before hyper's pool
/// had dropped it failed there (502, in about half the runs).
#[tokio::test]
async fn a_stream_refused_as_its_connection_goes_away_is_sent_on_a_new_one() {
    const GOAWAY: u8 = 7;
    let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = connections.clone();
    let url = hostile(move |mut c| {
        let first = seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0;
        async move {
            c.settings(&[]).await;
            while let Some((s, _)) = c.request(true).await {
                if first {
                    c.write(RST_STREAM, 0, s, &7u32.to_be_bytes()).await;
                    c.write(GOAWAY, 0, 0, &[0u8; 8]).await;
                    while c.read().await.is_some() {}
                    return;
                }
                c.head(s, 0).await;
                c.write(DATA, END_STREAM, s, b"{\"choices\":[]}").await;
            }
        }
    })
    .await;
    let sim = sim_for(&url, &["goes-away"]).await;
    let gw = gateway(&[&sim], Duration::from_secs(10)).await;
    let (status, body) = llm(&gw, "goes-away").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 2);
    let orch = orch_state(&gw, sim.url()).await;
    assert_eq!(orch["consecutive_failures"], 0, "{orch}");
}
