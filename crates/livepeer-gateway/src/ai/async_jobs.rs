//! Async image-to-video jobs (go-livepeer's `Prefer: respond-async`): the jobs a client was
//! answered 202 for, and what became of each, until it expires.
//!
//! go-livepeer (server/ai_mediaserver.go `ImageToVideo`, `ImageToVideoResult`) saves a
//! `request.json`, then a `result.json`, under the request id in its object store; with the
//! default in-memory store neither is ever removed. Here every dimension is bounded:
//! - entries: at most `max_jobs` running or kept at once. A full registry refuses new jobs
//!   (503 `async_jobs_full`) rather than drop a result its client has not fetched yet;
//! - bytes: a finished job's answer (JSON naming its media's URLs, or holding the media as
//!   `data:` URLs) is kept in the gateway's [`ResultStore`], under its byte cap, beside the
//!   files it names; a failure keeps only its error, a few hundred bytes. The job's upload
//!   stays counted in the body memory budget (`--max-body-memory`) while the job runs;
//! - time: a finished job is kept for the result store's TTL (`--ai-result-ttl`), so that an
//!   answer never outlives the files it names; then its id is unknown again.
//!
//! Anyone may poll, so ids are 128 random bits: only whoever was given one can read its
//! result. A job is never left running in the registry: the [`Ticket`] its task holds records
//! an error if it is dropped unfinished (the task panicked, or was cut at shutdown).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use rand::Rng;
use tokio::time::Instant;

use super::results::ResultStore;
use crate::error::{Error, Kind};

/// The registry of async jobs.
#[derive(Debug)]
pub struct AsyncJobs {
    max_jobs: usize,
    ttl: Duration,
    store: Arc<ResultStore>,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    jobs: HashMap<u128, Slot>,
    /// Finished jobs in the order they finished, which is also expiry order (one TTL for
    /// all), with their expiry.
    finished: VecDeque<(u128, Instant)>,
}

#[derive(Debug)]
enum Slot {
    Running,
    /// The answer, under this result store key.
    Answered(String),
    /// Why there is no answer.
    Failed(Error),
}

/// What a poll finds of an id.
#[derive(Debug)]
pub enum Poll {
    /// No such job: never made, or expired.
    Unknown,
    /// Still running.
    Processing,
    /// Finished: the answer's JSON body, or why there is none.
    Complete(Result<Bytes, Error>),
}

impl AsyncJobs {
    /// A registry of at most `max_jobs` jobs, finished ones kept `ttl`, answers kept in
    /// `store` (whose TTL should be `ttl`: see the module docs).
    pub fn new(max_jobs: usize, ttl: Duration, store: Arc<ResultStore>) -> Self {
        Self { max_jobs, ttl, store, inner: Mutex::default() }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every change under the lock leaves the registry consistent: a panic elsewhere while
        // it was held cannot have broken it.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `Err` (503 `async_jobs_full`) when no job could be admitted now: checked before a
    /// request's body is read, so that a full registry does not take the upload first.
    pub fn has_room(&self) -> Result<(), Error> {
        let mut inner = self.lock();
        inner.expire(Instant::now());
        match inner.jobs.len() < self.max_jobs {
            true => Ok(()),
            false => Err(self.full(&inner)),
        }
    }

    /// Admits a job, running until its [`Ticket`] is finished; `Err` (503 `async_jobs_full`,
    /// with `Retry-After` when a kept result expires) when the registry is full.
    pub fn admit(self: &Arc<Self>) -> Result<Ticket, Error> {
        let mut inner = self.lock();
        inner.expire(Instant::now());
        if inner.jobs.len() >= self.max_jobs {
            return Err(self.full(&inner));
        }
        let id = loop {
            let id: u128 = rand::rng().random();
            if !inner.jobs.contains_key(&id) {
                break id;
            }
        };
        inner.jobs.insert(id, Slot::Running);
        Ok(Ticket { jobs: self.clone(), id, finished: false })
    }

    /// What became of job `id` (as [`Ticket::id`] spells it; anything else is unknown).
    pub fn poll(&self, id: &str) -> Poll {
        let Some(id) = parse_id(id) else { return Poll::Unknown };
        let key = {
            let mut inner = self.lock();
            inner.expire(Instant::now());
            match inner.jobs.get(&id) {
                None => return Poll::Unknown,
                Some(Slot::Running) => return Poll::Processing,
                Some(Slot::Failed(e)) => return Poll::Complete(Err(e.clone())),
                Some(Slot::Answered(key)) => key.clone(),
            }
        };
        // The registry's entry expires before the stored answer does (see `finish`): a
        // missing answer was evicted, to make room for newer results.
        match self.store.get(&key) {
            Some(stored) => Poll::Complete(Ok(stored.bytes)),
            None => Poll::Complete(Err(Error::new(
                Kind::ResultStoreFull,
                "the job's result was evicted from the gateway's result store (full) before \
                 it was fetched",
            ))),
        }
    }

    /// Jobs running or kept now.
    pub fn len(&self) -> usize {
        let mut inner = self.lock();
        inner.expire(Instant::now());
        inner.jobs.len()
    }

    /// Whether no job is running or kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// 503 `async_jobs_full`, retried when the oldest kept result expires (or, with every
    /// job still running, no sooner than a TTL from now).
    fn full(&self, inner: &Inner) -> Error {
        let now = Instant::now();
        let wait =
            inner.finished.front().map_or(self.ttl, |(_, at)| at.saturating_duration_since(now));
        let secs =
            u32::try_from(wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).unwrap_or(u32::MAX);
        let message = format!(
            "the gateway holds as many async jobs as it may ({}, --ai-async-max-jobs): \
             running, or finished and kept for --ai-result-ttl",
            self.max_jobs
        );
        Error::new(Kind::AsyncJobsFull, message).retry_after(secs.max(1))
    }

    /// Keeps `answer` in the result store: its key, or why it could not be kept.
    fn keep(&self, answer: Bytes) -> Result<String, Error> {
        let full = |why: String| Error::new(Kind::ResultStoreFull, why);
        let reservation = self.store.reserve(answer.len()).map_err(|e| full(e.to_string()))?;
        self.store
            .put(reservation, "application/json", "json", answer)
            .map_err(|e| full(e.to_string()))
    }

    /// Records job `id` as finished with `slot`, kept from `since` for the TTL.
    fn settle(&self, id: u128, slot: Slot, since: Instant) {
        let mut inner = self.lock();
        if let Some(entry) = inner.jobs.get_mut(&id) {
            *entry = slot;
            inner.finished.push_back((id, since + self.ttl));
        }
    }
}

impl Inner {
    /// Forgets finished jobs whose time is over.
    fn expire(&mut self, now: Instant) {
        while let Some(&(id, at)) = self.finished.front() {
            if at > now {
                break;
            }
            self.finished.pop_front();
            self.jobs.remove(&id);
        }
    }
}

/// A job's id as [`Ticket::id`] spells it: 32 lower-case hex digits.
fn parse_id(id: &str) -> Option<u128> {
    let lower_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
    if id.len() != 32 || !id.bytes().all(lower_hex) {
        return None;
    }
    u128::from_str_radix(id, 16).ok()
}

/// A running job's place in the registry, held by the task running it.
#[derive(Debug)]
pub struct Ticket {
    jobs: Arc<AsyncJobs>,
    id: u128,
    finished: bool,
}

impl Ticket {
    /// The job's id, the client's to poll with: 32 lower-case hex digits.
    pub fn id(&self) -> String {
        let mut id = String::with_capacity(32);
        super::push_hex(&mut id, &self.id.to_be_bytes());
        id
    }

    /// Records the job's outcome: its answer's JSON body, or its error. `Err` when the job
    /// failed, or its answer could not be kept (503 `result_store_full`): what its clients
    /// will be told.
    pub fn finish(mut self, outcome: Result<Bytes, Error>) -> Result<(), Error> {
        self.finished = true;
        // Taken before the answer is stored, so that the entry expires no later than the
        // stored answer: an answer missing while its entry lives was then evicted.
        let since = Instant::now();
        let kept = outcome.and_then(|answer| self.jobs.keep(answer));
        let (slot, result) = match kept {
            Ok(key) => (Slot::Answered(key), Ok(())),
            Err(e) => (Slot::Failed(e.clone()), Err(e)),
        };
        self.jobs.settle(self.id, slot, since);
        result
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.finished {
            let message = "the job ended before it finished: the gateway shut down or failed";
            let slot = Slot::Failed(Error::new(Kind::Internal, message));
            self.jobs.settle(self.id, slot, Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(60);

    fn registry(max_jobs: usize, store_bytes: usize) -> Arc<AsyncJobs> {
        let store = Arc::new(ResultStore::new(store_bytes, TTL));
        Arc::new(AsyncJobs::new(max_jobs, TTL, store))
    }

    fn answer(body: &'static str) -> Result<Bytes, Error> {
        Ok(Bytes::from_static(body.as_bytes()))
    }

    #[tokio::test(start_paused = true)]
    async fn a_job_is_processing_then_complete_then_unknown_after_the_ttl() {
        let jobs = registry(4, 1 << 20);
        let ticket = jobs.admit().unwrap();
        let id = ticket.id();
        assert_eq!(id.len(), 32);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()), "{id}");
        assert!(matches!(jobs.poll(&id), Poll::Processing));
        ticket.finish(answer(r#"{"images":[]}"#)).unwrap();
        match jobs.poll(&id) {
            Poll::Complete(Ok(body)) => assert_eq!(body, r#"{"images":[]}"#),
            other => panic!("{other:?}"),
        }
        // Polled again, it is still there: a client may ask twice.
        assert!(matches!(jobs.poll(&id), Poll::Complete(Ok(_))));
        tokio::time::advance(TTL - Duration::from_millis(1)).await;
        assert!(matches!(jobs.poll(&id), Poll::Complete(Ok(_))));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(matches!(jobs.poll(&id), Poll::Unknown));
        assert!(jobs.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn ids_are_random_and_only_their_exact_spelling_finds_them() {
        let jobs = registry(4, 1 << 20);
        let (a, b) = (jobs.admit().unwrap(), jobs.admit().unwrap());
        let (a_id, b_id) = (a.id(), b.id());
        assert_ne!(a_id, b_id);
        // Not one after the other: 128 random bits each.
        let (x, y) = (parse_id(&a_id).unwrap(), parse_id(&b_id).unwrap());
        assert!(x.abs_diff(y) > 1 << 64, "{a_id} {b_id}");
        for other in [a_id.to_uppercase(), a_id[1..].to_owned(), format!("{a_id}0"), String::new()]
        {
            assert!(matches!(jobs.poll(&other), Poll::Unknown), "{other}");
        }
        assert!(matches!(jobs.poll(&a_id), Poll::Processing));
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_registry_refuses_until_a_kept_result_expires() {
        let jobs = registry(2, 1 << 20);
        let first = jobs.admit().unwrap();
        let _running = jobs.admit().unwrap();
        let refused = jobs.admit().unwrap_err();
        assert_eq!(refused.kind(), Kind::AsyncJobsFull);
        assert_eq!(refused.retry_after_secs(), Some(60), "every job running: a TTL at least");
        assert!(jobs.has_room().is_err());
        first.finish(answer("{}")).unwrap();
        tokio::time::advance(Duration::from_secs(45)).await;
        // Finished but kept: still counted, until 15 s from now.
        assert_eq!(jobs.admit().unwrap_err().retry_after_secs(), Some(15));
        tokio::time::advance(Duration::from_secs(15)).await;
        assert!(jobs.has_room().is_ok());
        let _third = jobs.admit().unwrap();
        assert_eq!(jobs.len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn failures_are_kept_as_their_error() {
        let jobs = registry(4, 1 << 20);
        let ticket = jobs.admit().unwrap();
        let id = ticket.id();
        let failed = ticket.finish(Err(Error::new(Kind::OrchestratorFailed, "boom")));
        assert_eq!(failed.unwrap_err().kind(), Kind::OrchestratorFailed);
        match jobs.poll(&id) {
            Poll::Complete(Err(e)) => assert_eq!(e.message(), "boom"),
            other => panic!("{other:?}"),
        }
    }

    /// A task that ends without finishing its job (a panic, or shutdown cutting it) leaves
    /// an error, not a job running for ever.
    #[tokio::test(start_paused = true)]
    async fn a_ticket_dropped_unfinished_records_an_error() {
        let jobs = registry(1, 1 << 20);
        let ticket = jobs.admit().unwrap();
        let id = ticket.id();
        drop(ticket);
        match jobs.poll(&id) {
            Poll::Complete(Err(e)) => assert_eq!(e.kind(), Kind::Internal),
            other => panic!("{other:?}"),
        }
        tokio::time::advance(TTL).await;
        assert!(matches!(jobs.poll(&id), Poll::Unknown));
        assert!(jobs.admit().is_ok(), "its place is free again");
    }

    /// Answers count in the result store's bytes: one too large for it is a failure the
    /// client is told of, and one evicted for newer results is reported as such.
    #[tokio::test(start_paused = true)]
    async fn answers_live_in_the_result_store_under_its_cap() {
        let cap = 2 * (100 + crate::ai::results::ENTRY_OVERHEAD);
        let jobs = registry(8, cap);
        let big = jobs.admit().unwrap();
        let big_id = big.id();
        let refused = big.finish(Ok(Bytes::from(vec![b' '; cap]))).unwrap_err();
        assert_eq!(refused.kind(), Kind::ResultStoreFull);
        assert!(matches!(jobs.poll(&big_id), Poll::Complete(Err(_))));
        let ids: Vec<String> = (0..3)
            .map(|_| {
                let t = jobs.admit().unwrap();
                let id = t.id();
                t.finish(Ok(Bytes::from(vec![b' '; 100]))).unwrap();
                id
            })
            .collect();
        match jobs.poll(&ids[0]) {
            Poll::Complete(Err(e)) => assert_eq!(e.kind(), Kind::ResultStoreFull),
            other => panic!("the oldest answer was evicted: {other:?}"),
        }
        assert!(matches!(jobs.poll(&ids[2]), Poll::Complete(Ok(_))));
    }
}
