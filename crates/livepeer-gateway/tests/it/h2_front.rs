//! An HTTP/2 (h2c) front to a simulator, over the h2 crate's server, that refuses the job
//! streams it is told to with `REFUSED_STREAM` (RFC 9113 §8.7: nothing of them processed)
//! and forwards everything else: a stand-in for an orchestrator that sheds load.

use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};

/// What an [`h2_front`] saw of the job streams (a POST other than gRPC): each one's
/// `Livepeer-Payment` bytes, and whether it was refused.
#[derive(Default)]
pub(crate) struct FrontLog {
    streams: std::sync::Mutex<Vec<(Vec<u8>, bool)>>,
    /// Each job stream's `Livepeer` header (a BYOC job's signed request), in order.
    jobs: std::sync::Mutex<Vec<Vec<u8>>>,
    /// Job streams still to refuse (`u32::MAX`: every one).
    refuse: std::sync::atomic::AtomicU32,
    /// When each job stream came, in order.
    times: std::sync::Mutex<Vec<tokio::time::Instant>>,
}

impl FrontLog {
    pub(crate) fn refuse(&self, n: u32) {
        self.refuse.store(n, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether the next stream is refused (and one refusal fewer is left).
    fn take_refusal(&self) -> bool {
        use std::sync::atomic::Ordering::SeqCst;
        let left = |n: u32| match n {
            0 => None,
            u32::MAX => Some(n),
            n => Some(n - 1),
        };
        self.refuse.fetch_update(SeqCst, SeqCst, left).is_ok()
    }

    pub(crate) fn streams(&self) -> Vec<(Vec<u8>, bool)> {
        self.streams.lock().unwrap().clone()
    }

    pub(crate) fn jobs(&self) -> Vec<Vec<u8>> {
        self.jobs.lock().unwrap().clone()
    }

    /// The time between each job stream and the one before it.
    pub(crate) fn gaps(&self) -> Vec<std::time::Duration> {
        let times = self.times.lock().unwrap();
        times.windows(2).map(|w| w[1] - w[0]).collect()
    }
}

/// An HTTP/2 (h2c) front to `sim`: a job stream it is told to refuse is reset with
/// `REFUSED_STREAM` on its head, unread; any other is forwarded whole to the simulator (which
/// checks and books its payment) and its answer relayed. gRPC and GET streams (an
/// orchestrator's info, a BYOC job token) are passed through over HTTP/2, trailers and all.
pub(crate) async fn h2_front(sim: String) -> (String, Arc<FrontLog>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let log = Arc::new(FrontLog::default());
    let seen = log.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (log, sim) = (seen.clone(), sim.clone());
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::handshake(tcp).await else { return };
                while let Some(Ok((req, respond))) = conn.accept().await {
                    let grpc = req
                        .headers()
                        .get(http::header::CONTENT_TYPE)
                        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
                    if grpc || req.method() != http::Method::POST {
                        tokio::spawn(pass_through(sim.clone(), req, respond));
                    } else {
                        tokio::spawn(front_stream(log.clone(), sim.clone(), req, respond));
                    }
                }
            });
        }
    });
    (url, log)
}

async fn front_stream(
    log: Arc<FrontLog>,
    sim: String,
    req: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<bytes::Bytes>,
) {
    let payment = req.headers().get("livepeer-payment").map(|v| v.as_bytes().to_vec());
    let job = req.headers().get("livepeer").map(|v| v.as_bytes().to_vec());
    log.times.lock().unwrap().push(tokio::time::Instant::now());
    log.jobs.lock().unwrap().push(job.unwrap_or_default());
    let refused = log.take_refusal();
    log.streams.lock().unwrap().push((payment.unwrap_or_default(), refused));
    if refused {
        respond.send_reset(h2::Reason::REFUSED_STREAM);
        return;
    }
    let (head, mut body) = req.into_parts();
    let mut data = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
        data.extend_from_slice(&chunk);
    }
    let mut forward = reqwest::Client::new().post(format!("{sim}{}", head.uri.path()));
    for (name, value) in &head.headers {
        if name != http::header::HOST && name != http::header::CONTENT_LENGTH {
            forward = forward.header(name, value);
        }
    }
    let answer = forward.body(data).send().await.unwrap();
    let mut relayed = http::Response::builder().status(answer.status());
    if let Some(ct) = answer.headers().get(http::header::CONTENT_TYPE) {
        relayed = relayed.header(http::header::CONTENT_TYPE, ct);
    }
    let bytes = answer.bytes().await.unwrap();
    let mut send = respond.send_response(relayed.body(()).unwrap(), false).unwrap();
    send.send_data(bytes, true).unwrap();
}

/// Reads a request or answer body whole, giving its window back as it goes.
async fn read_all(body: &mut h2::RecvStream) -> Option<bytes::Bytes> {
    let mut data = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.ok()?;
        let _ = body.flow_control().release_capacity(chunk.len());
        data.extend_from_slice(&chunk);
    }
    Some(data.into())
}

/// Forwards one stream to `sim` over HTTP/2 (prior knowledge), on a connection of its own,
/// and relays the answer: its head, body and trailers (gRPC's status is in them).
async fn pass_through(
    sim: String,
    req: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<bytes::Bytes>,
) {
    let (head, mut body) = req.into_parts();
    let relayed = async {
        let data = read_all(&mut body).await?;
        let tcp = TcpStream::connect(sim.trim_start_matches("http://")).await.ok()?;
        let (client, conn) = h2::client::handshake(tcp).await.ok()?;
        tokio::spawn(conn);
        let mut client = client.ready().await.ok()?;
        let path = head.uri.path_and_query().map_or("/", |p| p.as_str());
        let mut forward = http::Request::builder().method(head.method).uri(format!("{sim}{path}"));
        for (name, value) in &head.headers {
            forward = forward.header(name, value);
        }
        let (answer, mut send) =
            client.send_request(forward.body(()).ok()?, data.is_empty()).ok()?;
        if !data.is_empty() {
            send.send_data(data, true).ok()?;
        }
        let (head, mut body) = answer.await.ok()?.into_parts();
        let data = read_all(&mut body).await?;
        let trailers = body.trailers().await.ok()?;
        let mut sending =
            respond.send_response(http::Response::from_parts(head, ()), false).ok()?;
        sending.send_data(data, trailers.is_none()).ok()?;
        if let Some(trailers) = trailers {
            sending.send_trailers(trailers).ok()?;
        }
        Some(())
    };
    if relayed.await.is_none() {
        respond.send_reset(h2::Reason::INTERNAL_ERROR);
    }
}
