//! The gateway's own store of AI result files (images, videos, audio), so that clients never
//! need to reach an orchestrator: results are fetched once from the orchestrator and served by
//! the gateway under `/results/{id}/{file}`. In memory, capped in total bytes, each file expiring
//! after a TTL; the oldest files go first when the cap is reached.
//!
//! The same cap bounds the bytes being downloaded: a fetch reserves its bytes here before it
//! reads them ([`ResultStore::reserve`], grown as a body without a length arrives), so
//! concurrent downloads and stored files together never hold more than the cap. Stored files
//! make room for reservations (oldest first); reservations never make room for each other, and
//! one that does not fit is refused at once rather than waiting.
//!
//! Each stored file also counts [`ENTRY_OVERHEAD`] bytes for its key, type and index entries,
//! so that a flood of tiny results is bounded in memory too, not only in payload bytes.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rand::Rng;
use tokio::time::Instant;

/// A stored file.
#[derive(Debug, Clone)]
pub struct Stored {
    /// MIME type to serve it with.
    pub content_type: Arc<str>,
    /// The bytes.
    pub bytes: Bytes,
}

/// A file larger than the whole store.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("result of {size} bytes exceeds the result store's capacity of {max} bytes")]
pub struct TooLarge {
    /// Its size.
    pub size: usize,
    /// The store's cap.
    pub max: usize,
}

/// The bytes in flight are already the store's whole capacity.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("downloads in progress hold the result store's whole capacity of {max} bytes")]
pub struct Full {
    /// The store's cap.
    pub max: usize,
}

/// Bytes of the store's capacity held for a download until it is stored or dropped.
#[derive(Debug)]
pub struct Reservation<'a> {
    store: &'a ResultStore,
    bytes: usize,
}

impl Reservation<'_> {
    /// Holds `more` bytes in addition, making room by evicting stored files if needed.
    pub fn grow(&mut self, more: usize) -> Result<(), Full> {
        self.store.hold(more)?;
        self.bytes += more;
        Ok(())
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if let Ok(mut inner) = self.store.inner.lock() {
            inner.reserved -= self.bytes;
        }
    }
}

/// Bytes counted per stored file beyond its payload: its key twice (index and expiry order),
/// its type, and the map entry, rounded up. Without it a million 1-byte results would count
/// as 1 MB while holding hundreds of MB.
pub const ENTRY_OVERHEAD: usize = 256;

/// In-memory, size-capped, expiring result store.
#[derive(Debug)]
pub struct ResultStore {
    max_bytes: usize,
    entry_overhead: usize,
    ttl: Duration,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Each file by its id, with its name and the bytes it counts for (payload and overhead).
    items: HashMap<u128, Entry, BuildHasherDefault<IdHasher>>,
    /// Ids in insertion order, which is also expiry order (one TTL for all), with their
    /// expiry: checking the oldest file then reads the front of this queue, not an entry
    /// somewhere in a map of a hundred thousand (a cache miss on every store and serve).
    order: VecDeque<(u128, Instant)>,
    bytes: usize,
    /// Bytes held by [`Reservation`]s.
    reserved: usize,
}

#[derive(Debug)]
struct Entry {
    /// The key's part after the id: `<random>.<ext>`.
    file: Box<str>,
    stored: Stored,
    held: usize,
    /// When it expires (also in `order`; here for [`ResultStore::expiry`]).
    expires: Instant,
}

/// Hashes a file id by taking its low 64 bits. Ids are drawn at random, so hashing them again
/// (SipHash, the default) would only cost time: the store's map is on every result's path,
/// stored and served.
#[derive(Debug, Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u128` is used; this keeps any other input well-defined.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u128(&mut self, id: u128) {
        self.0 = id as u64;
    }
}

/// A result id as [`ResultStore::put`] spells it in keys: 32 lower-case hex digits.
fn parse_id(id: &str) -> Option<u128> {
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    u128::from_str_radix(id, 16).ok()
}

impl ResultStore {
    /// A store holding at most `max_bytes`, each file for `ttl`.
    pub fn new(max_bytes: usize, ttl: Duration) -> Self {
        Self { max_bytes, entry_overhead: ENTRY_OVERHEAD, ttl, inner: Mutex::default() }
    }

    /// Holds `bytes` of the capacity for a download (see the module docs).
    pub fn reserve(&self, bytes: usize) -> Result<Reservation<'_>, Full> {
        self.hold(bytes)?;
        Ok(Reservation { store: self, bytes })
    }

    /// Holds the bytes of a whole entry of `payload` bytes (its overhead included) for
    /// [`put`](Self::put), as [`reserve`](Self::reserve) does, except that the files under
    /// the keys `beside` are never evicted to make room: an async job's answer is stored
    /// after the files it names, and must not push them out. `Err` when it does not fit
    /// beside them (nothing is evicted then).
    pub fn reserve_beside(&self, payload: usize, beside: &[&str]) -> Result<Reservation<'_>, Full> {
        let bytes = payload.saturating_add(self.entry_overhead);
        let id = |key: &&str| parse_id(key.split_once('/').map_or(*key, |(id, _)| id));
        let spared: Vec<u128> = beside.iter().filter_map(id).collect();
        self.hold_sparing(bytes, &spared)?;
        Ok(Reservation { store: self, bytes })
    }

    /// Adds `bytes` to the reserved total, evicting stored files to make room.
    fn hold(&self, bytes: usize) -> Result<(), Full> {
        self.hold_sparing(bytes, &[])
    }

    /// [`hold`](Self::hold), never evicting the files `spared`: `Err` (evicting nothing)
    /// when the bytes do not fit beside them.
    fn hold_sparing(&self, bytes: usize, spared: &[u128]) -> Result<(), Full> {
        let full = Full { max: self.max_bytes };
        let mut inner = self.inner.lock().map_err(|_| full)?;
        inner.expire(Instant::now());
        let kept: usize = spared.iter().filter_map(|id| inner.items.get(id)).map(|e| e.held).sum();
        if inner.reserved + kept + bytes > self.max_bytes {
            return Err(full);
        }
        inner.make_room(self.max_bytes - bytes, spared);
        inner.reserved += bytes;
        Ok(())
    }

    /// Stores `bytes`, downloaded under `reservation`, and returns its key,
    /// `<random id>/<name>.<ext>`.
    pub fn put(
        &self,
        mut reservation: Reservation<'_>,
        content_type: &str,
        ext: &str,
        bytes: Bytes,
    ) -> Result<String, TooLarge> {
        let too_large = TooLarge { size: bytes.len(), max: self.max_bytes };
        let held = bytes.len().saturating_add(self.entry_overhead);
        if held > self.max_bytes {
            return Err(too_large);
        }
        if let Some(more) = held.checked_sub(reservation.bytes) {
            reservation.grow(more).map_err(|_| too_large)?;
        }
        let (id, name): (u128, u32) = (rand::rng().random(), rand::rng().random());
        let mut file = String::with_capacity(9 + ext.len());
        super::push_hex(&mut file, &name.to_be_bytes());
        file.push('.');
        file.push_str(ext);
        let mut key = String::with_capacity(33 + file.len());
        super::push_hex(&mut key, &id.to_be_bytes());
        key.push('/');
        key.push_str(&file);
        let file: Box<str> = file.into();
        let now = Instant::now();
        let Ok(mut inner) = self.inner.lock() else { return Ok(key) };
        inner.expire(now);
        // The reservation's bytes become the file's: the total held does not change.
        inner.reserved -= std::mem::take(&mut reservation.bytes);
        inner.bytes += held;
        let stored = Stored { content_type: content_type.into(), bytes };
        let expires = now + self.ttl;
        let entry = Entry { file, stored, held, expires };
        // A 128-bit random id is never drawn twice; should it be, the older file is replaced
        // and its bytes are given back.
        if let Some(old) = inner.items.insert(id, entry) {
            inner.bytes -= old.held;
        }
        inner.order.push_back((id, expires));
        Ok(key)
    }

    /// When the file under `key` expires, while it is kept.
    pub fn expiry(&self, key: &str) -> Option<Instant> {
        let (id, file) = key.split_once('/')?;
        let id = parse_id(id)?;
        let mut inner = self.inner.lock().ok()?;
        inner.expire(Instant::now());
        inner.items.get(&id).filter(|e| *e.file == *file).map(|e| e.expires)
    }

    /// Forgets the file under `key` now, giving its bytes back (its place in the expiry
    /// order is dropped when it comes up).
    pub fn remove(&self, key: &str) {
        let Some((Some(id), file)) = key.split_once('/').map(|(id, f)| (parse_id(id), f)) else {
            return;
        };
        let Ok(mut inner) = self.inner.lock() else { return };
        if inner.items.get(&id).is_some_and(|e| *e.file == *file)
            && let Some(entry) = inner.items.remove(&id)
        {
            inner.bytes -= entry.held;
        }
    }

    /// The file under `key`, unless expired or evicted.
    pub fn get(&self, key: &str) -> Option<Stored> {
        let (id, file) = key.split_once('/')?;
        self.file(id, file)
    }

    /// The file `file` of result `id` (the two parts of a key), while it is kept.
    pub fn file(&self, id: &str, file: &str) -> Option<Stored> {
        let id = parse_id(id)?;
        let mut inner = self.inner.lock().ok()?;
        inner.expire(Instant::now());
        inner.items.get(&id).filter(|e| *e.file == *file).map(|e| e.stored.clone())
    }

    /// Bytes currently stored, each file's overhead included.
    pub fn bytes(&self) -> usize {
        self.inner.lock().map(|i| i.bytes).unwrap_or(0)
    }

    /// Bytes currently reserved by downloads.
    pub fn reserved(&self) -> usize {
        self.inner.lock().map(|i| i.reserved).unwrap_or(0)
    }
}

impl Inner {
    fn expire(&mut self, now: Instant) {
        while self.order.front().is_some_and(|(_, expires)| *expires <= now) {
            self.evict_oldest();
        }
    }

    /// Evicts the oldest files, but not those `spared`, until at most `room` bytes are
    /// stored and reserved together (or only spared files are left).
    fn make_room(&mut self, room: usize, spared: &[u128]) {
        if spared.is_empty() {
            while self.bytes + self.reserved > room && self.evict_oldest() {}
            return;
        }
        let mut passed = Vec::new();
        while self.bytes + self.reserved > room {
            let Some((id, at)) = self.order.pop_front() else { break };
            if spared.contains(&id) {
                passed.push((id, at));
            } else if let Some(entry) = self.items.remove(&id) {
                self.bytes -= entry.held;
            }
        }
        // Back at the front, in their order: `order` stays in expiry order.
        for spared in passed.into_iter().rev() {
            self.order.push_front(spared);
        }
    }

    fn evict_oldest(&mut self) -> bool {
        let Some((id, _)) = self.order.pop_front() else { return false };
        if let Some(entry) = self.items.remove(&id) {
            self.bytes -= entry.held;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store counting payload bytes only, so that the tests below count in small numbers.
    fn payload_only(max_bytes: usize) -> ResultStore {
        ResultStore { entry_overhead: 0, ..ResultStore::new(max_bytes, Duration::from_secs(60)) }
    }

    #[tokio::test(start_paused = true)]
    async fn caps_size_and_expires() {
        let store = payload_only(10);
        let put = |t: &str, ext: &str, b: &'static [u8]| {
            store.put(store.reserve(b.len()).unwrap(), t, ext, Bytes::from_static(b))
        };
        let a = put("image/png", "png", b"aaaa").unwrap();
        let b = put("image/png", "png", b"bbbb").unwrap();
        assert!(a.ends_with(".png") && a != b);
        assert_eq!(store.get(&a).unwrap().bytes, "aaaa");
        // A third file pushes the oldest out.
        let c = put("audio/wav", "wav", b"cccc").unwrap();
        assert!(store.get(&a).is_none());
        assert_eq!(&*store.get(&c).unwrap().content_type, "audio/wav");
        assert_eq!(store.bytes(), 8);
        assert_eq!(store.reserved(), 0);
        let none = store.reserve(0).unwrap();
        assert!(store.put(none, "x", "bin", Bytes::from(vec![0; 11])).is_err());
        assert_eq!(store.reserved(), 0);
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(store.get(&b).is_none() && store.get(&c).is_none());
        assert_eq!(store.bytes(), 0);
    }

    /// A file is found only under the exact key it was stored as: its id (lower-case hex)
    /// and its file name together.
    #[tokio::test(start_paused = true)]
    async fn only_the_exact_key_finds_a_file() {
        let store = payload_only(100);
        let key =
            store.put(store.reserve(1).unwrap(), "image/png", "png", Bytes::from_static(b"x"));
        let key = key.unwrap();
        let (id, file) = key.split_once('/').unwrap();
        assert!(store.get(&key).is_some());
        for other in [
            format!("{}/{file}", id.to_uppercase()),
            format!("{id}/00000000.png"),
            format!("{id}/{file}x"),
            format!("{}/{file}", &id[1..]),
            id.to_owned(),
            format!("../{file}"),
        ] {
            assert!(store.get(&other).is_none(), "{other}");
        }
    }

    /// Downloads reserve before they read: stored files make room for them, other downloads
    /// do not, and what a dropped download held is given back.
    #[tokio::test(start_paused = true)]
    async fn downloads_reserve_the_capacity_before_they_read() {
        let store = payload_only(10);
        let old = store.put(store.reserve(6).unwrap(), "a", "bin", Bytes::from(vec![1; 6]));
        let mut first = store.reserve(4).unwrap();
        assert!(store.get(old.as_ref().unwrap()).is_some(), "6 stored + 4 reserved fit");
        first.grow(3).unwrap();
        assert!(store.get(old.as_ref().unwrap()).is_none(), "evicted to make room");
        assert_eq!((store.bytes(), store.reserved()), (0, 7));
        assert!(store.reserve(4).is_err(), "other downloads are not evicted");
        let second = store.reserve(3).unwrap();
        assert!(first.grow(1).is_err());
        drop(second);
        first.grow(1).unwrap();
        let key = store.put(first, "b", "bin", Bytes::from(vec![2; 8])).unwrap();
        assert_eq!((store.bytes(), store.reserved()), (8, 0));
        assert_eq!(store.get(&key).unwrap().bytes.len(), 8);
    }

    /// Tiny results count their overhead: 1-byte files fill a 10,000-byte store after
    /// 10,000 / 257 of them, not 10,000.
    #[tokio::test(start_paused = true)]
    async fn tiny_results_count_their_overhead() {
        let store = ResultStore::new(10_000, Duration::from_secs(60));
        let keys: Vec<String> = (0..100)
            .map(|_| store.put(store.reserve(1).unwrap(), "a", "bin", Bytes::from_static(b"x")))
            .collect::<Result<_, _>>()
            .unwrap();
        let kept = keys.iter().filter(|k| store.get(k).is_some()).count();
        assert_eq!(kept, 10_000 / (1 + ENTRY_OVERHEAD));
        assert!(store.bytes() <= 10_000);
        assert_eq!(store.reserved(), 0);
        let whole = store.reserve(0).unwrap();
        assert!(store.put(whole, "a", "bin", Bytes::from(vec![0; 10_000])).is_err(), "overhead");
    }

    /// A reservation beside some files makes room by evicting others only, oldest first, and
    /// is refused when it does not fit beside them; the spared keep their place in line.
    #[tokio::test(start_paused = true)]
    async fn a_reservation_beside_files_never_evicts_them() {
        let store = payload_only(10);
        let put = |n: usize| {
            store.put(store.reserve(n).unwrap(), "a", "bin", Bytes::from(vec![0; n])).unwrap()
        };
        let (a, b) = (put(4), put(4));
        let expires = Instant::now() + Duration::from_secs(60);
        assert_eq!(store.expiry(&a), Some(expires));
        tokio::time::advance(Duration::from_secs(1)).await;
        let c = put(4);
        assert!(store.get(&a).is_none(), "the oldest made room");
        let beside = store.reserve_beside(2, &[&b, &c]).unwrap();
        assert_eq!(store.reserved(), 2);
        let d = store.put(beside, "a", "json", Bytes::from_static(b"{}")).unwrap();
        assert!(store.reserve_beside(3, &[&b, &c]).is_err(), "only d could go, too small");
        assert!([&b, &c, &d].iter().all(|k| store.get(k).is_some()), "nothing evicted");
        assert_eq!(store.reserved(), 0);
        // b, spared, is still the oldest: a plain reservation takes it first.
        let _plain = store.reserve(2).unwrap();
        assert!(store.get(&b).is_none() && store.get(&c).is_some());
        assert_eq!(store.expiry(&c), Some(expires + Duration::from_secs(1)));
        store.remove(&c);
        assert!(store.get(&c).is_none() && store.expiry(&c).is_none());
        assert_eq!(store.bytes(), 2);
    }
}
