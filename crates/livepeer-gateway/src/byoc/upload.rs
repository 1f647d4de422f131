//! A BYOC job's request body, streamed to the orchestrator and never held whole.
//!
//! A streamed body can be sent once. To fail over all the same, the first `replay` bytes
//! (1 MiB by default) are read before the first attempt: a body that ends within them is
//! held whole and sent again to every orchestrator tried. A longer one is sent as those bytes
//! followed by the rest as it arrives from the client; the rest can be handed to one
//! attempt only, so another orchestrator is tried only while no byte beyond the held ones was
//! taken (say, the first orchestrator refused the connection). Holding more would let every
//! client make the gateway hold its whole upload; holding nothing would give up failover for
//! every small JSON job, which are most jobs.
//!
//! Every byte is counted against the body limit as it passes, so a client that sends more
//! than it may is cut off at the limit, not after. The bytes held count against the process's
//! budget for bodies in memory (`http::body_memory`), until the last copy of them is dropped.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt as _};

use crate::error::{Error, Kind};

/// The client's body as it arrives.
pub type ClientBody = BoxStream<'static, Result<Bytes, std::io::Error>>;

/// The body of a job, ready for attempts.
pub struct Upload {
    /// The bytes held (the whole body when `complete`).
    head: Bytes,
    complete: bool,
    /// The rest of the client's body, until an attempt takes it.
    rest: Arc<Mutex<Option<ClientBody>>>,
    /// Some attempt took the rest: the body cannot be sent again.
    taken: Arc<AtomicBool>,
    /// The client sent more than `limit` bytes.
    too_large: Arc<AtomicBool>,
    /// The client's body broke off while an attempt sent it.
    broken: Arc<AtomicBool>,
    limit: u64,
}

impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upload")
            .field("head", &self.head.len())
            .field("complete", &self.complete)
            .finish_non_exhaustive()
    }
}

impl Upload {
    /// Reads up to `replay` bytes of `body` (bounded by the caller's deadline), refusing a
    /// body over `limit`.
    pub async fn start(mut body: ClientBody, replay: usize, limit: u64) -> Result<Self, Error> {
        let mut head = BytesMut::new();
        let held = crate::body_memory::Held::default();
        let complete = loop {
            if head.len() >= replay {
                break false;
            }
            match body.next().await {
                None => break true,
                Some(Ok(chunk)) => {
                    if (head.len() + chunk.len()) as u64 > limit {
                        return Err(too_large(limit));
                    }
                    if !held.grow(chunk.len()) {
                        return Err(crate::body_memory::over_budget());
                    }
                    head.extend_from_slice(&chunk);
                }
                Some(Err(e)) => {
                    let message = format!("reading the request body: {e}");
                    return Err(Error::new(Kind::BodyUnreadable, message).field("body"));
                }
            }
        };
        let rest = (!complete).then_some(body);
        Ok(Self {
            head: crate::body_memory::owning(head.freeze(), held),
            complete,
            rest: Arc::new(Mutex::new(rest)),
            taken: Arc::default(),
            too_large: Arc::default(),
            broken: Arc::default(),
            limit,
        })
    }

    /// Whether another attempt may still send the whole body.
    pub fn replayable(&self) -> bool {
        self.complete || !self.taken.load(Ordering::Acquire)
    }

    /// Whether the client sent more than the limit (the attempt failed because of it).
    pub fn too_large(&self) -> bool {
        self.too_large.load(Ordering::Acquire)
    }

    /// Whether the client's body broke off (the attempt failed because of it, not the
    /// orchestrator).
    pub fn broken(&self) -> bool {
        self.broken.load(Ordering::Acquire)
    }

    /// The error of a body over the limit.
    pub fn too_large_error(&self) -> Error {
        too_large(self.limit)
    }

    /// The body of one attempt, or `None` when it can no longer be sent whole.
    pub fn body(&self) -> Option<AttemptBody> {
        if !self.replayable() {
            return None;
        }
        Some(AttemptBody {
            head: (!self.head.is_empty()).then(|| self.head.clone()),
            rest: (!self.complete).then(|| self.rest.clone()),
            stream: None,
            sent: self.head.len() as u64,
            taken: self.taken.clone(),
            too_large: self.too_large.clone(),
            broken: self.broken.clone(),
            limit: self.limit,
        })
    }
}

/// The error of a body over `limit` bytes.
pub fn too_large(limit: u64) -> Error {
    Error::new(
        Kind::BodyTooLarge,
        format!("request body exceeds {limit} bytes (--byoc-max-body-bytes)"),
    )
    .field("body")
}

/// One attempt's body: the held bytes, then the rest of the client's body.
pub struct AttemptBody {
    head: Option<Bytes>,
    rest: Option<Arc<Mutex<Option<ClientBody>>>>,
    stream: Option<ClientBody>,
    sent: u64,
    taken: Arc<AtomicBool>,
    too_large: Arc<AtomicBool>,
    broken: Arc<AtomicBool>,
    limit: u64,
}

impl std::fmt::Debug for AttemptBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttemptBody").field("sent", &self.sent).finish_non_exhaustive()
    }
}

impl Stream for AttemptBody {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(head) = self.head.take() {
            return Poll::Ready(Some(Ok(head)));
        }
        if self.stream.is_none() {
            // The rest is taken on the first poll past the held bytes: from then on no other
            // attempt can send the body.
            let Some(slot) = self.rest.take() else { return Poll::Ready(None) };
            let rest = slot.lock().ok().and_then(|mut r| r.take());
            self.taken.store(true, Ordering::Release);
            match rest {
                Some(rest) => self.stream = Some(rest),
                None => {
                    let e = std::io::Error::other("the request body was already sent");
                    return Poll::Ready(Some(Err(e)));
                }
            }
        }
        let Some(stream) = self.stream.as_mut() else { return Poll::Ready(None) };
        match stream.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                self.sent += chunk.len() as u64;
                if self.sent > self.limit {
                    self.too_large.store(true, Ordering::Release);
                    self.stream = None;
                    let e = std::io::Error::other("request body over the limit");
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => {
                self.broken.store(true, Ordering::Release);
                Poll::Ready(Some(Err(e)))
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(chunks: &[&'static [u8]]) -> ClientBody {
        let items: Vec<Result<Bytes, std::io::Error>> =
            chunks.iter().map(|c| Ok(Bytes::from_static(c))).collect();
        futures_util::stream::iter(items).boxed()
    }

    async fn collect(b: AttemptBody) -> Result<Vec<u8>, std::io::Error> {
        let mut out = Vec::new();
        let mut b = b;
        while let Some(chunk) = b.next().await {
            out.extend_from_slice(&chunk?);
        }
        Ok(out)
    }

    #[tokio::test]
    async fn a_small_body_is_sent_again_to_every_attempt() {
        let up = Upload::start(body(&[b"ab", b"cd"]), 16, 100).await.unwrap();
        assert_eq!(collect(up.body().unwrap()).await.unwrap(), b"abcd");
        assert_eq!(collect(up.body().unwrap()).await.unwrap(), b"abcd");
        assert!(up.replayable());
    }

    #[tokio::test]
    async fn a_long_body_goes_once_unless_its_rest_was_never_taken() {
        let up = Upload::start(body(&[b"ab", b"cd", b"ef"]), 2, 100).await.unwrap();
        let unsent = up.body().unwrap();
        drop(unsent);
        assert!(up.replayable(), "nothing past the held bytes was taken");
        assert_eq!(collect(up.body().unwrap()).await.unwrap(), b"abcdef");
        assert!(!up.replayable() && up.body().is_none());
    }

    #[tokio::test]
    async fn the_limit_cuts_a_body_off_as_it_streams() {
        assert_eq!(
            Upload::start(body(&[b"abcdef"]), 16, 4).await.unwrap_err().kind(),
            Kind::BodyTooLarge
        );
        let up = Upload::start(body(&[b"ab", b"cd", b"ef"]), 2, 5).await.unwrap();
        assert!(collect(up.body().unwrap()).await.is_err());
        assert!(up.too_large());
    }
}
