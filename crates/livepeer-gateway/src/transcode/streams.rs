//! The transcoding streams the gateway holds: at most `--max-sessions` of them, each with its
//! profiles, its window of segments, its in-flight limit, the orchestrator it keeps while that
//! one performs, and its counters; a stream idle for `--transcode-idle-timeout` with nothing in
//! flight is closed (go-livepeer closes a push stream after 60 s without pushes).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use livepeer_pm::Ratio;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::attempt::Cost;
use super::ended::Ended;
use super::error::{KeyRefusal, TranscodeError};
use super::profiles::{Format, Profile};
use super::store::Window;

/// The orchestrator a stream keeps while it performs.
#[derive(Debug, Clone)]
pub(super) struct Sticky {
    /// Its discovery URL.
    pub(super) url: String,
    /// Its last latency score × 1000 (transcode time / segment time; ≤ 1000 keeps up).
    pub(super) score_milli: u64,
}

/// What a stream counts, for its status.
#[derive(Debug, Default)]
pub(super) struct Counters {
    /// Segments pushed.
    pub(super) segments_in: u64,
    /// Their bytes.
    pub(super) bytes_in: u64,
    /// Their media duration, milliseconds.
    pub(super) media_ms_in: u64,
    /// Segments transcoded into every rendition.
    pub(super) transcoded: u64,
    /// Segments published as source only (no orchestrator could transcode them).
    pub(super) source_only: u64,
    /// Attempts after a segment's first.
    pub(super) retries: u64,
    /// Failed attempts.
    pub(super) failed_attempts: u64,
    /// Renditions made, per profile.
    pub(super) outputs: Vec<u64>,
    /// Tickets sent.
    pub(super) tickets: u64,
    /// Their expected value, wei.
    pub(super) ev_sent: Ratio,
    /// Fees charged (Σ pixels × price), wei.
    pub(super) fees: Ratio,
    /// Orchestrator changes.
    pub(super) swaps: u64,
    /// The last failure.
    pub(super) last_error: Option<String>,
}

/// One stream.
#[derive(Debug)]
pub(super) struct Stream {
    /// Its manifest id.
    pub(super) manifest: String,
    /// Its renditions.
    pub(super) profiles: Arc<Vec<Profile>>,
    /// Its container.
    pub(super) format: Format,
    /// Published segments and playlists.
    pub(super) window: Mutex<Window>,
    /// Segments in flight at most (`--segment-concurrency`).
    pub(super) slots: Arc<Semaphore>,
    /// The orchestrator it keeps.
    pub(super) sticky: Mutex<Option<Sticky>>,
    /// Its counters.
    pub(super) counters: Mutex<Counters>,
    /// Orchestrators it paid (each holds a payment session of the stream's), at most
    /// [`MAX_USED`] of them.
    used: Mutex<Vec<String>>,
    /// Orchestrators whose last answer to the stream was a refusal that spares them (busy,
    /// or payment terms that moved on), at most [`MAX_USED`] of them.
    spared: Mutex<Vec<String>>,
    last_used: Mutex<Instant>,
    busy: AtomicUsize,
    /// The customer key that made the stream by pushing, when keys are on: others may not
    /// push into it.
    owner: Option<String>,
    /// When the owner's push that made the stream began (unix ms, the key store's clock): an
    /// operator's stop of the key's streams at or after it ends the stream.
    pub(super) started_ms: Option<i64>,
    /// Its place among the owner's `max_streams`, held while the stream lives.
    _permit: Option<crate::keys::meter::StreamPermit>,
    /// Made by an RTMP publisher, whose segments alone it takes: no push joins it.
    pub(super) rtmp: bool,
    /// Set when the stream's customer key refused to pay for a segment: the stream takes no
    /// more (as an RTMP stream ends then).
    refusal: Mutex<Option<KeyRefusal>>,
    created_ms: u64,
}

/// Orchestrators remembered per stream; older ones are forgotten (their sessions expire).
const MAX_USED: usize = 64;

/// Counts a request on a stream while it lives: an idle stream is one with none.
#[derive(Debug)]
pub(super) struct Busy(Arc<Stream>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
        self.0.touch();
    }
}

impl Stream {
    pub(super) fn touch(&self) {
        if let Ok(mut t) = self.last_used.lock() {
            *t = Instant::now();
        }
    }

    /// Marks a request in progress on the stream until the guard drops.
    pub(super) fn busy(self: &Arc<Self>) -> Busy {
        self.busy.fetch_add(1, Ordering::AcqRel);
        self.touch();
        Busy(self.clone())
    }

    /// Whether the stream was made by pushes of the key `key_id`.
    pub(super) fn pushed_by(&self, key_id: &str) -> bool {
        !self.rtmp && self.owner.as_deref() == Some(key_id)
    }

    /// `Err` 403 unless the stream was made by the key `key` (by no key, both `None`) and
    /// by pushes. A push into an RTMP stream was taken without the webhook (which is asked
    /// on a stream's first push only), and its sequence numbers moved the publisher's
    /// segments out of the stream's window.
    pub(super) fn check_owner(&self, key: Option<&str>) -> Result<(), TranscodeError> {
        if !self.rtmp && self.owner.as_deref() == key {
            Ok(())
        } else {
            Err(TranscodeError::NotOwner(self.manifest.clone()))
        }
    }

    /// The key refused to pay for a segment: no more are taken.
    pub(super) fn refuse(&self, refusal: KeyRefusal) {
        if let Ok(mut r) = self.refusal.lock() {
            r.get_or_insert(refusal);
        }
    }

    /// `Err` once the key refused to pay for a segment.
    pub(super) fn refused(&self) -> Result<(), TranscodeError> {
        match self.refusal.lock().ok().and_then(|r| r.clone()) {
            Some(r) => Err(TranscodeError::KeyRefused(r)),
            None => Ok(()),
        }
    }

    /// Notes that the stream was sent to the orchestrator at `url`.
    pub(super) fn used(&self, url: &str) {
        if let Ok(mut used) = self.used.lock()
            && !used.iter().any(|u| u == url)
        {
            if used.len() >= MAX_USED {
                used.remove(0);
            }
            used.push(url.to_owned());
        }
    }

    /// Notes how the orchestrator at `url` answered: with a refusal that spares it
    /// (`spared`) or otherwise. `true` when it refused so twice in a row: busy or stale terms
    /// are cured by the next segment or by fresh terms, and an orchestrator refusing again
    /// after them, paid each time, is no longer spared.
    pub(super) fn refused_again(&self, url: &str, spared: bool) -> bool {
        let Ok(mut list) = self.spared.lock() else { return false };
        let before = list.iter().position(|u| u == url);
        match (spared, before) {
            (true, Some(_)) => true,
            (true, None) => {
                if list.len() >= MAX_USED {
                    list.remove(0);
                }
                list.push(url.to_owned());
                false
            }
            (false, Some(at)) => {
                list.remove(at);
                false
            }
            (false, None) => false,
        }
    }

    /// The orchestrators the stream was sent to.
    pub(super) fn orchestrators(&self) -> Vec<String> {
        self.used.lock().map(|u| u.clone()).unwrap_or_default()
    }

    /// Runs `f` on the counters.
    pub(super) fn count(&self, f: impl FnOnce(&mut Counters)) {
        if let Ok(mut c) = self.counters.lock() {
            f(&mut c);
        }
    }

    /// Adds what an attempt cost.
    pub(super) fn spend(&self, cost: &Cost) {
        self.count(|c| {
            c.tickets += u64::from(cost.tickets);
            c.ev_sent = c.ev_sent.checked_add(&cost.ev_sent).unwrap_or(c.ev_sent);
            c.fees = c.fees.checked_add(&cost.fee).unwrap_or(c.fees);
        });
    }

    /// The orchestrator kept, if any.
    pub(super) fn sticky(&self) -> Option<Sticky> {
        self.sticky.lock().ok().and_then(|s| s.clone())
    }

    /// Keeps `url` (whose last score was `score_milli`); counts a swap when it changed.
    pub(super) fn keep(&self, url: &str, score_milli: u64) -> bool {
        let Ok(mut s) = self.sticky.lock() else { return false };
        let swapped = s.as_ref().is_some_and(|old| old.url != url);
        *s = Some(Sticky { url: url.to_owned(), score_milli });
        drop(s);
        if swapped {
            self.count(|c| c.swaps += 1);
        }
        swapped
    }

    /// The stream's status for the admin API.
    pub(super) fn status(&self) -> Value {
        let (held, bytes, late) = self.window.lock().map(|w| w.stats()).unwrap_or_default();
        let last_seq = self.window.lock().ok().and_then(|w| w.last_seq());
        let (waiting, waiting_bytes) = self.window.lock().map(|w| w.waiting()).unwrap_or_default();
        let c = self.counters.lock();
        let Ok(c) = c else { return json!({ "manifest_id": self.manifest }) };
        let renditions: Vec<Value> = self
            .profiles
            .iter()
            .zip(c.outputs.iter().chain(std::iter::repeat(&0)))
            .map(|(p, n)| json!({ "name": p.name, "resolution": format!("{}x{}", p.width, p.height), "bitrate": p.bitrate, "segments_out": n }))
            .collect();
        json!({
            "manifest_id": self.manifest,
            "format": self.format.ext(),
            "created_ms": self.created_ms,
            "in_flight": self.busy.load(Ordering::Acquire),
            "segments_in": c.segments_in,
            // The ingest rate: the source's bitrate over the media it has sent.
            "ingest": {
                "bytes": c.bytes_in,
                "media_seconds": c.media_ms_in / 1000,
                "bitrate_bps": (c.bytes_in * 8 * 1000).checked_div(c.media_ms_in).unwrap_or(0),
            },
            "segments_transcoded": c.transcoded,
            "segments_source_only": c.source_only,
            "segments_late": late,
            "last_seq": last_seq,
            "retries": c.retries,
            "failed_attempts": c.failed_attempts,
            "orchestrator": self.sticky().map(|s| s.url),
            "orchestrator_swaps": c.swaps,
            "renditions": renditions,
            "window": { "segments": held, "bytes": bytes },
            // Finished segments held back by an earlier one still in flight.
            "waiting": { "segments": waiting, "bytes": waiting_bytes },
            "spend": {
                "tickets": c.tickets,
                "ev_sent_wei": c.ev_sent.to_decimal_string(0),
                "fees_wei": c.fees.to_decimal_string(0),
            },
            "last_error": c.last_error,
        })
    }
}

/// The customer key making a stream by pushing, and its place among the key's streams.
#[derive(Debug)]
pub(super) struct StreamOwner {
    /// The key's id.
    pub(super) key_id: String,
    /// The key's stream permit (`max_streams`), when the key has a limit.
    pub(super) permit: Option<crate::keys::meter::StreamPermit>,
    /// When the key's push making the stream began (unix ms).
    pub(super) since_ms: i64,
}

/// What a new stream is made of.
#[derive(Debug)]
pub(super) struct NewStream {
    /// The key making it, when keys are on and it is pushed.
    pub(super) owner: Option<StreamOwner>,
    /// Whether an RTMP publisher makes it.
    pub(super) rtmp: bool,
    /// Its renditions.
    pub(super) profiles: Vec<Profile>,
    /// Its container.
    pub(super) format: Format,
    /// Segments in flight at most.
    pub(super) concurrency: usize,
    /// Published segments kept at most.
    pub(super) window_segments: usize,
    /// Bytes of published segments kept at most.
    pub(super) window_bytes: usize,
}

/// Every stream, by manifest id.
#[derive(Debug)]
pub(super) struct Streams {
    map: Mutex<HashMap<String, Arc<Stream>>>,
    /// Names of pushed streams their key ended. Locked after `map` when both are.
    ended: Mutex<Ended>,
    max: usize,
    epoch: Instant,
}

impl Streams {
    /// No streams yet; at most `max` at once. A stream its key ended keeps its name from
    /// that key's pushes until they leave it alone for `idle` (see `ended`).
    pub(super) fn new(max: usize, idle: Duration) -> Self {
        let ended = Mutex::new(Ended::new(max, idle));
        Self { map: Mutex::default(), ended, max, epoch: Instant::now() }
    }

    /// Why the key `key_id`'s pushes of `manifest` are refused, when the key ended the stream
    /// of that name that it pushed (see `ended`).
    pub(super) fn ended_refusal(&self, manifest: &str, key_id: &str) -> Option<KeyRefusal> {
        self.ended.lock().ok()?.refusal(manifest, key_id)
    }

    /// Ends `stream`, pushed by the key `key_id`, which no longer lets it run (`refusal`): it
    /// goes from the streams, and its name is refused to the key's later pushes. `false` when
    /// it had gone already (another push ended it, or it was idle), its name then kept all
    /// the same, unless a newer stream of the name is running.
    pub(super) fn end_keyed(
        &self,
        stream: &Arc<Stream>,
        key_id: &str,
        refusal: KeyRefusal,
    ) -> bool {
        let Ok(mut map) = self.map.lock() else { return false };
        // Only this stream: one made of the name since is another stream.
        let now = map.get(&stream.manifest);
        let here = now.is_some_and(|s| Arc::ptr_eq(s, stream));
        // Another stream of the name, made since this one went (idle) while the key was
        // read, started after the stop: its name is not refused.
        let newer = now.is_some() && !here;
        if here {
            map.remove(&stream.manifest);
        }
        if !newer && let Ok(mut ended) = self.ended.lock() {
            ended.insert(&stream.manifest, key_id, refusal);
        }
        here
    }

    /// The stream `manifest`.
    pub(super) fn get(&self, manifest: &str) -> Option<Arc<Stream>> {
        self.map.lock().ok()?.get(manifest).cloned()
    }

    /// The stream `manifest`, made from `new()` when it does not exist (and the limit allows);
    /// the flag says whether it was made.
    pub(super) fn get_or_create(
        &self,
        manifest: &str,
        new: impl FnOnce() -> NewStream,
    ) -> Result<(Arc<Stream>, bool), TranscodeError> {
        let mut map =
            self.map.lock().map_err(|_| TranscodeError::Internal("streams lock".into()))?;
        if let Some(s) = map.get(manifest) {
            return Ok((s.clone(), false));
        }
        let n = new();
        // A name the key ended is not made again by its pushes: checked under the streams'
        // lock, which ending a stream holds, so a push racing the end cannot make it anew.
        if let Some(owner) = &n.owner
            && let Some(refusal) = self.ended_refusal(manifest, &owner.key_id)
        {
            return Err(TranscodeError::KeyRefused(refusal));
        }
        if map.len() >= self.max {
            return Err(TranscodeError::TooManyStreams);
        }
        let window = Window::new(n.profiles.clone(), n.format, n.window_segments, n.window_bytes);
        let stream = Arc::new(Stream {
            manifest: manifest.to_owned(),
            counters: Mutex::new(Counters {
                outputs: vec![0; n.profiles.len()],
                ..Counters::default()
            }),
            profiles: Arc::new(n.profiles),
            format: n.format,
            window: Mutex::new(window),
            slots: Arc::new(Semaphore::new(n.concurrency.max(1))),
            sticky: Mutex::default(),
            used: Mutex::default(),
            spared: Mutex::new(Vec::new()),
            last_used: Mutex::new(Instant::now()),
            busy: AtomicUsize::new(0),
            refusal: Mutex::default(),
            owner: n.owner.as_ref().map(|o| o.key_id.clone()),
            started_ms: n.owner.as_ref().map(|o| o.since_ms),
            _permit: n.owner.and_then(|o| o.permit),
            rtmp: n.rtmp,
            created_ms: self.epoch.elapsed().as_millis() as u64,
        });
        map.insert(manifest.to_owned(), stream.clone());
        Ok((stream, true))
    }

    /// Ends the stream `manifest` (its ingest closed), if it exists.
    pub(super) fn remove(&self, manifest: &str) -> Option<Arc<Stream>> {
        self.map.lock().ok()?.remove(manifest)
    }

    /// Closes pushed streams idle for `idle` with nothing in flight, and returns them. An
    /// RTMP stream ends with its connection (which has deadlines of its own): reaped between
    /// two of its segments, it was made again by the next one with the default renditions,
    /// and its publisher's end then closed whichever stream had the name.
    pub(super) fn close_idle(&self, idle: Duration) -> Vec<Arc<Stream>> {
        let Ok(mut map) = self.map.lock() else { return Vec::new() };
        let idle_ones: Vec<String> = map
            .iter()
            .filter(|(_, s)| {
                !s.rtmp
                    && s.busy.load(Ordering::Acquire) == 0
                    && s.last_used.lock().map(|t| t.elapsed() >= idle).unwrap_or(false)
            })
            .map(|(k, _)| k.clone())
            .collect();
        if let Ok(mut ended) = self.ended.lock() {
            ended.prune();
        }
        idle_ones.iter().filter_map(|k| map.remove(k)).collect()
    }

    /// How many streams there are.
    pub(super) fn len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Every stream's status, by manifest id.
    pub(super) fn status(&self) -> Vec<Value> {
        let streams: Vec<Arc<Stream>> =
            self.map.lock().map(|m| m.values().cloned().collect()).unwrap_or_default();
        let mut out: Vec<Value> = streams.iter().map(|s| s.status()).collect();
        out.sort_by(|a, b| a["manifest_id"].as_str().cmp(&b["manifest_id"].as_str()));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Error, Kind};

    fn new_stream() -> NewStream {
        NewStream {
            owner: None,
            rtmp: false,
            profiles: Vec::new(),
            format: Format::MpegTs,
            concurrency: 1,
            window_segments: 2,
            window_bytes: 1 << 20,
        }
    }

    #[tokio::test]
    async fn a_late_end_leaves_a_newer_stream_of_the_name_alone() {
        let streams = Streams::new(4, Duration::from_secs(60));
        let stopped = || KeyRefusal(Error::new(Kind::StreamStopped, "stopped"));
        let (old, _) = streams.get_or_create("cam", new_stream).unwrap();
        // It went idle while a push held it and read its key; a push made the name anew.
        streams.remove("cam");
        let (newer, made) = streams.get_or_create("cam", new_stream).unwrap();
        assert!(made);
        assert!(!streams.end_keyed(&old, "key_a", stopped()));
        assert!(streams.get("cam").is_some_and(|s| Arc::ptr_eq(&s, &newer)));
        assert_eq!(streams.ended_refusal("cam", "key_a"), None, "the newer stream's name is free");
        // Ended itself, its name is refused to the key.
        assert!(streams.end_keyed(&newer, "key_a", stopped()));
        assert_eq!(streams.ended_refusal("cam", "key_a"), Some(stopped()));
        // Gone already with no newer one: the name is refused all the same.
        let (third, _) = streams.get_or_create("cam2", new_stream).unwrap();
        streams.remove("cam2");
        assert!(!streams.end_keyed(&third, "key_a", stopped()));
        assert!(streams.ended_refusal("cam2", "key_a").is_some());
    }
}
