//! Subscribing over HTTP: one GET per segment, the next one opened as soon as a segment starts.

use std::time::Duration;

use bytes::Bytes;
use tokio::task::JoinHandle;

use super::{ClientConfig, channel_url, header_i64, status_error, transport};
use crate::{HEADER_CLOSED, HEADER_LATEST, HEADER_SEQ, ReadSegment, Subscribe, TrickleError};

/// Subscribes to a channel at a URL.
///
/// As go-livepeer's subscriber: `GET {url}/{seq}` from `start`; once a segment's headers
/// arrive the GET for the following one is opened in the background. A 470 (fell out of the
/// window) jumps to the server's live edge; 404 or `Lp-Trickle-Closed` is the end of the
/// stream; connection errors and 5xx are retried.
#[derive(Debug)]
pub struct HttpSubscriber {
    client: reqwest::Client,
    url: String,
    config: ClientConfig,
    next: i64,
    /// The GET opened in advance, and the seq it asks for.
    pending: Option<(i64, JoinHandle<Result<reqwest::Response, TrickleError>>)>,
    ended: bool,
}

impl HttpSubscriber {
    /// A subscriber to the channel at `url`, starting at `start` (a sequence number, or
    /// [`crate::SEQ_NEXT`] / [`crate::SEQ_CURRENT`]).
    pub fn new(
        client: reqwest::Client,
        url: &str,
        start: i64,
        config: ClientConfig,
    ) -> Result<Self, TrickleError> {
        Ok(Self {
            client,
            url: channel_url(url)?,
            config,
            next: start,
            pending: None,
            ended: false,
        })
    }

    /// The channel URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The sequence number (or special position) the next [`Subscribe::segment`] asks for.
    pub fn next_seq(&self) -> i64 {
        self.next
    }

    fn open(&self, seq: i64) -> JoinHandle<Result<reqwest::Response, TrickleError>> {
        tokio::spawn(fetch(
            self.client.clone(),
            format!("{}/{}", self.url, seq),
            self.config.first_byte_timeout,
        ))
    }

    /// The response for `seq`: the preconnected one if it asks for `seq`, else a new GET.
    async fn response(&mut self, seq: i64) -> Result<reqwest::Response, TrickleError> {
        let task = match self.pending.take() {
            Some((pending_seq, task)) if pending_seq == seq => task,
            Some((_, task)) => {
                task.abort();
                self.open(seq)
            }
            None => self.open(seq),
        };
        task.await
            .unwrap_or_else(|_| Err(TrickleError::Transport("trickle GET task failed".into())))
    }
}

impl Drop for HttpSubscriber {
    fn drop(&mut self) {
        if let Some((_, task)) = self.pending.take() {
            task.abort();
        }
    }
}

/// GETs `url`, re-issuing the request whenever it produced no headers for `first_byte_timeout`
/// (a preconnect to a quiet channel must not sit on one connection forever).
async fn fetch(
    client: reqwest::Client,
    url: String,
    first_byte_timeout: Duration,
) -> Result<reqwest::Response, TrickleError> {
    loop {
        match tokio::time::timeout(first_byte_timeout, client.get(&url).send()).await {
            Ok(Ok(response)) => return Ok(response),
            Ok(Err(error)) => return Err(transport(&error)),
            Err(_) => tracing::trace!(%url, "trickle GET produced no headers in time; re-issuing"),
        }
    }
}

impl Subscribe for HttpSubscriber {
    type Reader = HttpSegmentReader;

    async fn segment(&mut self) -> Result<Option<HttpSegmentReader>, TrickleError> {
        let mut failures = 0u32;
        let mut early = 0u32;
        let mut jumps = 0u32;
        loop {
            if self.ended {
                return Ok(None);
            }
            let seq = self.next;
            let failure = match self.response(seq).await {
                Err(error) => error,
                Ok(response) => {
                    let status = response.status();
                    if status == reqwest::StatusCode::NOT_FOUND
                        || response.headers().contains_key(HEADER_CLOSED)
                    {
                        self.ended = true;
                        return Ok(None);
                    }
                    if status.as_u16() == crate::STATUS_MISSED {
                        let latest = header_i64(&response, HEADER_LATEST);
                        jumps += 1;
                        if jumps > self.config.max_retries {
                            // Something keeps moving the edge; do not spin.
                            tokio::time::sleep(self.config.retry_pause).await;
                        }
                        match latest {
                            // Ahead of the publisher: it may be about to get there, so wait a
                            // little before going back (pytrickle's rule), but not forever, as
                            // a restarted publisher starts again from a low seq.
                            Some(latest)
                                if seq >= 0 && latest < seq && early < self.config.max_retries =>
                            {
                                early += 1;
                                tokio::time::sleep(self.config.retry_pause).await;
                            }
                            Some(latest) => self.next = latest,
                            None => self.next = crate::SEQ_NEXT,
                        }
                        continue;
                    }
                    if status.is_success() {
                        let segment_seq = header_i64(&response, HEADER_SEQ)
                            .or((seq >= 0).then_some(seq))
                            .and_then(|s| u64::try_from(s).ok());
                        match segment_seq {
                            Some(segment_seq) => {
                                let next = i64::try_from(segment_seq.saturating_add(1))
                                    .unwrap_or(i64::MAX);
                                self.next = next;
                                self.pending = Some((next, self.open(next)));
                                return Ok(Some(HttpSegmentReader {
                                    seq: segment_seq,
                                    response,
                                    read: 0,
                                    limit: self.config.max_segment_bytes,
                                    chunk_timeout: self.config.chunk_timeout,
                                    done: false,
                                }));
                            }
                            None => TrickleError::Status {
                                status: status.as_u16(),
                                body: format!("response without {HEADER_SEQ}"),
                            },
                        }
                    } else {
                        status_error(response).await
                    }
                }
            };
            if !failure.retry_safe() {
                return Err(failure);
            }
            failures += 1;
            if failures > self.config.max_retries {
                return Err(failure);
            }
            tracing::debug!(url = %self.url, seq, error = %failure, "trickle GET failed; retrying");
            tokio::time::sleep(self.config.retry_pause).await;
        }
    }
}

/// The reader of one segment received over HTTP.
#[derive(Debug)]
pub struct HttpSegmentReader {
    seq: u64,
    response: reqwest::Response,
    read: usize,
    limit: usize,
    chunk_timeout: Duration,
    done: bool,
}

impl HttpSegmentReader {
    /// The segment's mime type, as the server sent it.
    pub fn content_type(&self) -> Option<&str> {
        self.response.headers().get(reqwest::header::CONTENT_TYPE)?.to_str().ok()
    }
}

impl ReadSegment for HttpSegmentReader {
    fn seq(&self) -> u64 {
        self.seq
    }

    async fn chunk(&mut self) -> Result<Option<Bytes>, TrickleError> {
        if self.done {
            return Ok(None);
        }
        let chunk = match tokio::time::timeout(self.chunk_timeout, self.response.chunk()).await {
            Err(_) => return Err(TrickleError::Timeout("trickle segment chunk")),
            Ok(Err(error)) => return Err(transport(&error)),
            Ok(Ok(chunk)) => chunk,
        };
        let Some(chunk) = chunk else {
            self.done = true;
            return Ok(None);
        };
        self.read += chunk.len();
        if self.read > self.limit {
            self.done = true;
            return Err(TrickleError::TooLarge { limit: self.limit });
        }
        Ok(Some(chunk))
    }
}
