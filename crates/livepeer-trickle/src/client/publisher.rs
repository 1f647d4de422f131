//! Publishing over HTTP: one streaming POST per segment, the next one opened in advance.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::CONTENT_TYPE;
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{ClientConfig, channel_url, header_i64, status_error, transport};
use crate::{HEADER_CLOSED, HEADER_RESET, HEADER_SEQ, Publish, TrickleError, WriteSegment};

/// Chunks queued for a segment's request body before [`WriteSegment::write`] waits: a slow
/// server slows the publisher down instead of growing a buffer.
const BODY_QUEUE: usize = 16;

/// Longest `GET {url}/next` body read: a sequence number's digits, with room for spaces.
const NEXT_BODY_LIMIT: usize = 32;

/// Publishes into a channel at a URL (`{base}/{channel}`).
///
/// Like go-livepeer's publisher it keeps its own sequence counter (starting at the server's
/// `GET {url}/next`, or 0) and opens the POST for the following segment as soon as a segment
/// is handed out, so a new segment starts without connection set-up latency. The first segment
/// carries `Lp-Trickle-Reset`, which releases subscribers left waiting by an earlier publisher.
#[derive(Debug)]
pub struct HttpPublisher {
    client: reqwest::Client,
    url: String,
    mime: String,
    config: ClientConfig,
    /// The sequence of the next segment handed out; `None` until resolved.
    next: Option<u64>,
    /// Whether the next POST opened is the first (and so carries the reset header).
    first: bool,
    /// The POST opened in advance for `next`.
    pending: Option<PendingPost>,
    closed: bool,
}

/// A POST whose body waits on a queue.
#[derive(Debug)]
struct PendingPost {
    seq: u64,
    tx: mpsc::Sender<Bytes>,
    abort: CancellationToken,
    task: JoinHandle<Result<u64, TrickleError>>,
}

/// What a POST needs besides its body.
#[derive(Debug, Clone)]
struct PostTarget {
    client: reqwest::Client,
    url: String,
    mime: String,
    seq: u64,
    reset: bool,
    retry_pause: Duration,
}

impl PendingPost {
    fn open(target: PostTarget) -> Self {
        let (tx, rx) = mpsc::channel(BODY_QUEUE);
        let abort = CancellationToken::new();
        let source = BodySource {
            rx: Arc::new(Mutex::new(rx)),
            consumed: Arc::new(AtomicBool::new(false)),
            abort: abort.clone(),
        };
        let seq = target.seq;
        let task = tokio::spawn(run_post(target, source));
        Self { seq, tx, abort, task }
    }
}

/// The request body: chunks from the queue. Shared, so that a POST that failed before taking
/// any chunk can be sent again with the same queue.
#[derive(Debug, Clone)]
struct BodySource {
    rx: Arc<Mutex<mpsc::Receiver<Bytes>>>,
    consumed: Arc<AtomicBool>,
    abort: CancellationToken,
}

impl BodySource {
    fn body(&self) -> reqwest::Body {
        let source = self.clone();
        let stream = futures_util::stream::unfold(Some(source), |source| async move {
            let source = source?;
            let item = tokio::select! {
                biased;
                () = source.abort.cancelled() => {
                    // An error, not an end: the server must see a broken body, not a complete
                    // (truncated) segment.
                    return Some((Err(io::Error::other("trickle segment abandoned")), None));
                }
                item = async { source.rx.lock().await.recv().await } => item,
            };
            let chunk = item?;
            source.consumed.store(true, Ordering::Release);
            Some((Ok::<_, io::Error>(chunk), Some(source)))
        });
        reqwest::Body::wrap_stream(stream)
    }
}

/// Sends one segment, retrying once if the request failed before any byte of it was taken.
async fn run_post(target: PostTarget, source: BodySource) -> Result<u64, TrickleError> {
    let url = format!("{}/{}", target.url, target.seq);
    let mut retried = false;
    loop {
        let mut request =
            target.client.post(&url).header(CONTENT_TYPE, &target.mime).body(source.body());
        if target.reset {
            request = request.header(HEADER_RESET, "1");
        }
        match request.send().await {
            Ok(response) => return post_outcome(response, target.seq).await,
            Err(error) => {
                let untouched = !source.consumed.load(Ordering::Acquire);
                if retried || !untouched || source.abort.is_cancelled() {
                    return Err(transport(&error));
                }
                tracing::debug!(%url, error = %super::chain(&error), "trickle POST failed before its body; retrying");
                retried = true;
                tokio::time::sleep(target.retry_pause).await;
            }
        }
    }
}

async fn post_outcome(response: reqwest::Response, seq: u64) -> Result<u64, TrickleError> {
    let status = response.status();
    if status == reqwest::StatusCode::NOT_FOUND {
        return Err(TrickleError::NotFound);
    }
    if response.headers().contains_key(HEADER_CLOSED) {
        return Err(TrickleError::Closed);
    }
    if status.is_client_error() || status.is_server_error() {
        return Err(status_error(response).await);
    }
    let seq = header_i64(&response, HEADER_SEQ).and_then(|s| u64::try_from(s).ok()).unwrap_or(seq);
    Ok(seq)
}

impl HttpPublisher {
    /// A publisher into the channel at `url`, with segments of type `mime`.
    pub fn new(
        client: reqwest::Client,
        url: &str,
        mime: &str,
        config: ClientConfig,
    ) -> Result<Self, TrickleError> {
        Ok(Self {
            client,
            url: channel_url(url)?,
            mime: mime.to_owned(),
            config,
            next: None,
            first: true,
            pending: None,
            closed: false,
        })
    }

    /// The channel URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The sequence number the next segment gets, once known.
    pub fn next_seq(&self) -> Option<u64> {
        self.next
    }

    /// The server's next write sequence (`GET {url}/next`), or 0 if it cannot say.
    ///
    /// The server is the orchestrator's (or whoever it named): its answer is read within one
    /// deadline and only as far as a number can be long, so that an endless or dripping body
    /// holds neither memory nor the stream's start.
    async fn start_seq(&self) -> u64 {
        let request = self.client.get(format!("{}/next", self.url)).send();
        let wait = self.config.connect_timeout + self.config.first_byte_timeout;
        let deadline = tokio::time::Instant::now() + wait;
        let Ok(Ok(mut response)) = tokio::time::timeout_at(deadline, request).await else {
            return 0;
        };
        if !response.status().is_success() {
            return 0;
        }
        let latest = header_i64(&response, crate::HEADER_LATEST);
        let mut body = Vec::new();
        let read = async {
            // A body cut short is no number: "12" of "123" would start at a stale sequence.
            loop {
                match response.chunk().await {
                    Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                    Ok(None) => return true,
                    Err(_) => return false,
                }
                if body.len() > NEXT_BODY_LIMIT {
                    return false;
                }
            }
        };
        let whole = matches!(tokio::time::timeout_at(deadline, read).await, Ok(true));
        let body =
            whole.then(|| std::str::from_utf8(&body).ok()?.trim().parse::<i64>().ok()).flatten();
        body.or(latest).and_then(|seq| u64::try_from(seq).ok()).unwrap_or(0)
    }

    fn open(&mut self, seq: u64) -> PendingPost {
        let reset = std::mem::take(&mut self.first);
        PendingPost::open(PostTarget {
            client: self.client.clone(),
            url: self.url.clone(),
            mime: self.mime.clone(),
            seq,
            reset,
            retry_pause: self.config.retry_pause,
        })
    }
}

impl Drop for HttpPublisher {
    fn drop(&mut self) {
        if let Some(pending) = self.pending.take() {
            pending.abort.cancel();
        }
    }
}

impl Publish for HttpPublisher {
    type Writer = HttpSegmentWriter;

    async fn segment(&mut self) -> Result<HttpSegmentWriter, TrickleError> {
        if self.closed {
            return Err(TrickleError::Closed);
        }
        let seq = match self.next {
            Some(seq) => seq,
            None => self.start_seq().await,
        };
        let mut post = match self.pending.take() {
            Some(post) if post.seq == seq => post,
            Some(post) => {
                post.abort.cancel();
                self.open(seq)
            }
            None => self.open(seq),
        };
        if post.task.is_finished() {
            // The preconnected POST ended before any data: the server went away, refused the
            // channel, or closed that segment. End-of-stream answers are final; anything else
            // gets a fresh POST (this is how a publisher rides out a server restart).
            match (&mut post.task).await {
                Err(_) | Ok(Ok(_)) => post = self.open(seq),
                Ok(Err(error)) if error.is_end() => {
                    if matches!(error, TrickleError::Closed) {
                        self.closed = true;
                    }
                    return Err(error);
                }
                Ok(Err(error)) => {
                    tracing::debug!(url = %self.url, seq, %error, "trickle preconnect failed; reconnecting");
                    post = self.open(seq);
                }
            }
        }
        let next = seq.saturating_add(1);
        self.next = Some(next);
        self.pending = Some(self.open(next));
        Ok(HttpSegmentWriter {
            seq,
            tx: Some(post.tx),
            task: Some(post.task),
            abort: post.abort,
            failed: None,
            chunk_timeout: self.config.chunk_timeout,
            cleanup: Some((self.client.clone(), format!("{}/{}", self.url, seq))),
        })
    }

    async fn close(&mut self) -> Result<(), TrickleError> {
        self.closed = true;
        let request = self.client.delete(&self.url).send();
        let wait = self.config.connect_timeout + self.config.chunk_timeout;
        let result = match tokio::time::timeout(wait, request).await {
            Err(_) => Err(TrickleError::Timeout("trickle channel DELETE")),
            Ok(Err(error)) => Err(transport(&error)),
            // 400 `Invalid stream` / 404: already gone, which is what closing wants.
            Ok(Ok(response))
                if response.status().is_success()
                    || response.status() == reqwest::StatusCode::BAD_REQUEST
                    || response.status() == reqwest::StatusCode::NOT_FOUND =>
            {
                Ok(())
            }
            Ok(Ok(response)) => Err(status_error(response).await),
        };
        // The preconnected POST ended with the channel; make sure it does not linger.
        if let Some(pending) = self.pending.take() {
            pending.abort.cancel();
        }
        result
    }
}

/// The writer of one segment posted over HTTP.
#[derive(Debug)]
pub struct HttpSegmentWriter {
    seq: u64,
    tx: Option<mpsc::Sender<Bytes>>,
    /// `None` once its outcome was taken.
    task: Option<JoinHandle<Result<u64, TrickleError>>>,
    abort: CancellationToken,
    failed: Option<TrickleError>,
    chunk_timeout: Duration,
    /// Client and segment URL for the best-effort `DELETE` of an abandoned segment.
    cleanup: Option<(reqwest::Client, String)>,
}

impl HttpSegmentWriter {
    /// The segment's sequence number (the publisher's counter).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The outcome of a request that ended while the segment was still being written.
    async fn early_end(&mut self) -> TrickleError {
        let outcome = match self.task.take() {
            Some(task) => task.await.unwrap_or_else(|_| Err(task_failed())),
            None => Err(task_failed()),
        };
        match outcome {
            Err(error) => error,
            Ok(_) => early_end_error(),
        }
    }

    fn fail(&mut self, error: TrickleError) -> TrickleError {
        self.failed = Some(error.clone());
        self.tx = None;
        self.abort.cancel();
        error
    }
}

fn early_end_error() -> TrickleError {
    TrickleError::Transport("server ended the segment before it was finished".into())
}

fn task_failed() -> TrickleError {
    TrickleError::Transport("trickle POST task failed".into())
}

impl WriteSegment for HttpSegmentWriter {
    async fn write(&mut self, chunk: Bytes) -> Result<(), TrickleError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        if chunk.is_empty() {
            return Ok(());
        }
        let (Some(tx), Some(task)) = (&self.tx, &mut self.task) else {
            return Err(TrickleError::Invalid("trickle segment already ended".into()));
        };
        let sent = tokio::select! {
            biased;
            // The request ended under us (404, closed, connection lost): report it now rather
            // than queueing into a body nobody reads.
            outcome = task => Err(outcome),
            sent = tokio::time::timeout(self.chunk_timeout, tx.send(chunk)) => Ok(sent),
        };
        match sent {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(_))) => {
                let error = self.early_end().await;
                Err(self.fail(error))
            }
            Ok(Err(_)) => Err(self.fail(TrickleError::Timeout("trickle segment write"))),
            Err(outcome) => {
                self.task = None;
                let error = match outcome {
                    Ok(Err(error)) => error,
                    Ok(Ok(_)) => early_end_error(),
                    Err(_) => task_failed(),
                };
                Err(self.fail(error))
            }
        }
    }

    async fn finish(mut self) -> Result<u64, TrickleError> {
        self.cleanup = None;
        if let Some(error) = self.failed.take() {
            return Err(error);
        }
        // Dropping the sender ends the request body.
        self.tx = None;
        let Some(task) = self.task.take() else {
            return Err(task_failed());
        };
        // The server answers as soon as the body ends; queued chunks may still be on their way.
        let wait = self.chunk_timeout.saturating_mul(2);
        match tokio::time::timeout(wait, task).await {
            Ok(outcome) => outcome.unwrap_or_else(|_| Err(task_failed())),
            Err(_) => {
                self.abort.cancel();
                Err(TrickleError::Timeout("trickle segment finish"))
            }
        }
    }
}

impl Drop for HttpSegmentWriter {
    fn drop(&mut self) {
        let Some((client, url)) = self.cleanup.take() else {
            return;
        };
        // Abandoned: break the body so the server closes the segment, and ask it to close the
        // segment too, for servers that keep a segment open after a broken body.
        self.abort.cancel();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ =
                    tokio::time::timeout(Duration::from_secs(5), client.delete(url).send()).await;
            });
        }
    }
}
