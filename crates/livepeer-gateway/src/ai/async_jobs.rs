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
//! - time: a finished job is kept until the first of its answer and the files it names
//!   expires (the result store's TTL, `--ai-result-ttl`, from when each was stored), so that
//!   an answer never outlives the files it names; then its id is unknown again. A job that
//!   failed before any orchestrator was tried (none could be selected, or the customer's
//!   budget refused it) cost nothing and is kept only [`UNTRIED_KEEP`]: requests that fail at
//!   once cannot hold the registry full for a whole TTL.
//!
//! The store evicts its oldest files first when full, and a job's files are older than its
//! answer: the job records the files its answer names, its answer is stored without evicting
//! them, and a poll checks they are all still there. A poll never answers `complete` with
//! URLs that are gone: a job missing any of them is told as evicted (`result_store_full`).
//!
//! Anyone may poll, so ids are 128 random bits: only whoever was given one can read its
//! result. A job is never left running in the registry: the [`Ticket`] its task holds records
//! an error if it is dropped unfinished (the task panicked, or was cut at shutdown).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use rand::Rng;
use tokio::time::Instant;

use super::call::ResultUrls;
use super::results::ResultStore;
use crate::error::{Error, Kind};

/// How long a job that failed before any orchestrator was tried is kept (at most the TTL):
/// long enough for a client polling every few seconds to read its error.
pub const UNTRIED_KEEP: Duration = Duration::from_secs(30);

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
    /// Finished jobs by expiry: jobs are kept for different times (see the module docs).
    finished: BTreeSet<(Instant, u128)>,
}

#[derive(Debug)]
enum Slot {
    Running,
    /// The answer, under the result store key `answer`, naming the result store files
    /// `files`.
    Answered {
        answer: String,
        files: Vec<String>,
    },
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

/// A job's answer: its JSON body, and the result store files it names.
#[derive(Debug, Clone)]
pub struct Answer {
    body: Bytes,
    files: Vec<String>,
}

impl Answer {
    /// The answer `body` of a job whose media URLs were made as `urls` says: with the
    /// gateway's own URLs, the store keys of the files its `images[].url` name.
    pub fn new(body: Bytes, urls: &ResultUrls) -> Self {
        let files = match urls {
            ResultUrls::Gateway(base) => named_files(&body, base),
            // The media are in the answer itself.
            ResultUrls::Data => Vec::new(),
        };
        Self { body, files }
    }
}

/// The result store keys of the files an image-to-video answer names: its `images[].url`
/// under `{base}/results/`. Only the gateway wrote those URLs (`call::rewrite_media`).
fn named_files(body: &[u8], base: &str) -> Vec<String> {
    #[derive(serde::Deserialize)]
    struct Media {
        #[serde(default)]
        images: Vec<Image>,
    }
    #[derive(serde::Deserialize)]
    struct Image {
        #[serde(default)]
        url: Option<String>,
    }
    let Ok(media) = serde_json::from_slice::<Media>(body) else { return Vec::new() };
    let prefix = [base, "/results/"].concat();
    let key = |url: &String| url.strip_prefix(prefix.as_str()).map(str::to_owned);
    media.images.iter().filter_map(|image| image.url.as_ref().and_then(key)).collect()
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
        let mut inner = self.lock();
        inner.expire(Instant::now());
        let (answer, files) = match inner.jobs.get(&id) {
            None => return Poll::Unknown,
            Some(Slot::Running) => return Poll::Processing,
            Some(Slot::Failed(e)) => return Poll::Complete(Err(e.clone())),
            Some(Slot::Answered { answer, files }) => (answer, files),
        };
        // The entry expires with the first of its answer and files (see `keep`): one of them
        // missing while the entry lives was evicted, to make room for newer results.
        let body = self.store.get(answer).map(|stored| stored.bytes);
        match body.filter(|_| files.iter().all(|f| self.store.expiry(f).is_some())) {
            Some(body) => Poll::Complete(Ok(body)),
            None => Poll::Complete(Err(evicted("before it was fetched"))),
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

    /// 503 `async_jobs_full`, retried when the first kept result expires (or, with every
    /// job still running, no sooner than a TTL from now).
    fn full(&self, inner: &Inner) -> Error {
        let now = Instant::now();
        let first = inner.finished.first();
        let wait = first.map_or(self.ttl, |(at, _)| at.saturating_duration_since(now));
        let secs =
            u32::try_from(wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).unwrap_or(u32::MAX);
        let message = format!(
            "the gateway holds as many async jobs as it may ({}, --ai-async-max-jobs): \
             running, or finished and kept for --ai-result-ttl",
            self.max_jobs
        );
        Error::new(Kind::AsyncJobsFull, message).retry_after(secs.max(1))
    }

    /// Keeps `answer` in the result store beside the files it names, which storing it does
    /// not evict: the job's slot, and when it expires (with the first of the answer and its
    /// files); or why it could not be kept.
    fn keep(&self, answer: Answer) -> Result<(Slot, Instant), Error> {
        let Answer { body, files } = answer;
        let full = |why: String| Error::new(Kind::ResultStoreFull, why);
        let beside: Vec<&str> = files.iter().map(String::as_str).collect();
        let reservation = self.store.reserve_beside(body.len(), &beside).map_err(|e| {
            full(format!("{e}: the job's answer does not fit beside the files it names"))
        })?;
        let key = self
            .store
            .put(reservation, "application/json", "json", body)
            .map_err(|e| full(e.to_string()))?;
        let mut until = self.store.expiry(&key);
        for file in &files {
            // Stored while the job ran: other results may have pushed it out since.
            until = until.zip(self.store.expiry(file)).map(|(a, b)| a.min(b));
        }
        match until {
            Some(until) => Ok((Slot::Answered { answer: key, files }, until)),
            None => {
                self.store.remove(&key);
                Err(evicted("before the job finished"))
            }
        }
    }

    /// Records job `id` as finished with `slot`, kept until `until`.
    fn settle(&self, id: u128, slot: Slot, until: Instant) {
        let mut inner = self.lock();
        if let Some(entry) = inner.jobs.get_mut(&id) {
            *entry = slot;
            inner.finished.insert((until, id));
        }
    }
}

/// 503 `result_store_full`: the job's answer or one of its files was evicted `when`.
fn evicted(when: &str) -> Error {
    let message = format!(
        "the job's result was evicted from the gateway's result store (full, or expired; \
         see --ai-result-store-bytes, --ai-result-ttl) {when}"
    );
    Error::new(Kind::ResultStoreFull, message)
}

impl Inner {
    /// Forgets finished jobs whose time is over.
    fn expire(&mut self, now: Instant) {
        while let Some(&(at, id)) = self.finished.first() {
            if at > now {
                break;
            }
            self.finished.pop_first();
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

    /// Records the job's outcome: its answer, or its error. `Err` when the job failed, or
    /// its answer could not be kept (503 `result_store_full`): what its clients will be told.
    pub fn finish(mut self, outcome: Result<Answer, Error>) -> Result<(), Error> {
        self.finished = true;
        let jobs = self.jobs.clone();
        let (slot, until, result) = match outcome.and_then(|answer| jobs.keep(answer)) {
            Ok((slot, until)) => (slot, until, Ok(())),
            Err(e) => (Slot::Failed(e.clone()), Instant::now() + jobs.ttl, Err(e)),
        };
        jobs.settle(self.id, slot, until);
        result
    }

    /// Records that the job failed with `error` before any orchestrator was tried: kept only
    /// [`UNTRIED_KEEP`] (see the module docs). Answers `error`, what its clients will be told.
    pub fn refused(mut self, error: Error) -> Error {
        self.finished = true;
        let until = Instant::now() + self.jobs.ttl.min(UNTRIED_KEEP);
        self.jobs.settle(self.id, Slot::Failed(error.clone()), until);
        error
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.finished {
            let message = "the job ended before it finished: the gateway shut down or failed";
            let slot = Slot::Failed(Error::new(Kind::Internal, message));
            self.jobs.settle(self.id, slot, Instant::now() + self.jobs.ttl);
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

    fn answer(body: &'static str) -> Result<Answer, Error> {
        Ok(Answer { body: Bytes::from_static(body.as_bytes()), files: Vec::new() })
    }

    fn bytes(n: usize) -> Result<Answer, Error> {
        Ok(Answer { body: Bytes::from(vec![b' '; n]), files: Vec::new() })
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
        let refused = big.finish(bytes(cap)).unwrap_err();
        assert_eq!(refused.kind(), Kind::ResultStoreFull);
        assert!(matches!(jobs.poll(&big_id), Poll::Complete(Err(_))));
        let ids: Vec<String> = (0..3)
            .map(|_| {
                let t = jobs.admit().unwrap();
                let id = t.id();
                t.finish(bytes(100)).unwrap();
                id
            })
            .collect();
        match jobs.poll(&ids[0]) {
            Poll::Complete(Err(e)) => assert_eq!(e.kind(), Kind::ResultStoreFull),
            other => panic!("the oldest answer was evicted: {other:?}"),
        }
        assert!(matches!(jobs.poll(&ids[2]), Poll::Complete(Ok(_))));
    }

    /// Stores `n` bytes as a job's media file would be, in `jobs`' result store: its key.
    fn media(jobs: &AsyncJobs, n: usize) -> String {
        let reservation = jobs.store.reserve(n).unwrap();
        jobs.store.put(reservation, "video/mp4", "mp4", Bytes::from(vec![0; n])).unwrap()
    }

    /// The answer naming `files` as the job path writes it.
    fn naming(files: &[&str]) -> Result<Answer, Error> {
        let base = "http://gw:1";
        let images: Vec<_> = files
            .iter()
            .map(|f| serde_json::json!({"url": format!("{base}/results/{f}")}))
            .collect();
        let body = Bytes::from(serde_json::json!({ "images": images }).to_string());
        Ok(Answer::new(body, &ResultUrls::Gateway(base.to_owned())))
    }

    #[test]
    fn an_answer_names_the_files_under_the_gateways_own_urls() {
        let gateway = ResultUrls::Gateway("http://gw:1".into());
        let body = br#"{"images":[{"url":"http://gw:1/results/ab/c.mp4"},{"url":"data:x"},{}]}"#;
        assert_eq!(Answer::new(Bytes::from_static(body), &gateway).files, ["ab/c.mp4"]);
        assert!(Answer::new(Bytes::from_static(body), &ResultUrls::Data).files.is_empty());
        assert!(Answer::new(Bytes::from_static(b"{"), &gateway).files.is_empty());
    }

    /// The store evicts oldest first, and a job's video is older than its answer: once
    /// newer results push the video out, the job is told as evicted, never as complete with
    /// a URL that is gone.
    #[tokio::test(start_paused = true)]
    async fn a_job_whose_file_was_evicted_is_not_complete() {
        // Room for the video and its answer, not for a second video beside them.
        let cap = 1000 + 2 * crate::ai::results::ENTRY_OVERHEAD + 600;
        let jobs = registry(4, cap);
        let ticket = jobs.admit().unwrap();
        let id = ticket.id();
        let video = media(&jobs, 1000);
        ticket.finish(naming(&[&video])).unwrap();
        assert!(matches!(jobs.poll(&id), Poll::Complete(Ok(_))));
        // A newer result takes the oldest file's room: the video's, not the answer's.
        media(&jobs, 1000);
        assert!(jobs.store.get(&video).is_none());
        match jobs.poll(&id) {
            Poll::Complete(Err(e)) => assert_eq!(e.kind(), Kind::ResultStoreFull),
            other => panic!("{other:?}"),
        }
    }

    /// Storing the answer does not evict the job's own video to make room: the job fails
    /// (`result_store_full`, which its customer is not charged for) instead.
    #[tokio::test(start_paused = true)]
    async fn keeping_the_answer_never_evicts_the_jobs_own_files() {
        let cap = 1000 + crate::ai::results::ENTRY_OVERHEAD + 200;
        let jobs = registry(4, cap);
        let ticket = jobs.admit().unwrap();
        let id = ticket.id();
        let video = media(&jobs, 1000);
        let refused = ticket.finish(naming(&[&video])).unwrap_err();
        assert_eq!(refused.kind(), Kind::ResultStoreFull);
        assert!(jobs.store.get(&video).is_some(), "the video was kept");
        assert!(matches!(jobs.poll(&id), Poll::Complete(Err(_))));
        // Other files make room for it, a newer one (another job's) too: oldest first, the
        // video would have gone.
        let overhead = crate::ai::results::ENTRY_OVERHEAD;
        let jobs = registry(4, 1000 + 300 + 2 * overhead + 100);
        let ticket = jobs.admit().unwrap();
        let id = ticket.id();
        let video = media(&jobs, 1000);
        let newer = media(&jobs, 300);
        ticket.finish(naming(&[&video])).unwrap();
        assert!(jobs.store.get(&newer).is_none());
        assert!(matches!(jobs.poll(&id), Poll::Complete(Ok(_))));
    }

    /// A job's entry expires with the first of its files, stored while it ran: never after.
    #[tokio::test(start_paused = true)]
    async fn a_job_expires_with_its_first_file() {
        let jobs = registry(4, 1 << 20);
        let ticket = jobs.admit().unwrap();
        let id = ticket.id();
        let video = media(&jobs, 100);
        tokio::time::advance(Duration::from_secs(5)).await;
        ticket.finish(naming(&[&video])).unwrap();
        tokio::time::advance(TTL - Duration::from_secs(5) - Duration::from_millis(1)).await;
        assert!(matches!(jobs.poll(&id), Poll::Complete(Ok(_))));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(jobs.store.get(&video).is_none());
        assert!(matches!(jobs.poll(&id), Poll::Unknown));
        assert!(jobs.is_empty(), "its place is free");
    }

    /// A job that failed before any orchestrator was tried is kept briefly, not a TTL.
    #[tokio::test(start_paused = true)]
    async fn a_job_refused_before_any_orchestrator_is_kept_briefly() {
        let jobs = registry(1, 1 << 20);
        let ticket = jobs.admit().unwrap();
        let id = ticket.id();
        let error = ticket.refused(Error::new(Kind::NoOrchestrator, "none"));
        assert_eq!(error.kind(), Kind::NoOrchestrator);
        assert!(matches!(jobs.poll(&id), Poll::Complete(Err(_))));
        let full = jobs.admit().unwrap_err();
        assert_eq!(full.retry_after_secs(), Some(UNTRIED_KEEP.as_secs() as u32));
        tokio::time::advance(UNTRIED_KEEP).await;
        assert!(matches!(jobs.poll(&id), Poll::Unknown));
        assert!(jobs.admit().is_ok());
    }
}
