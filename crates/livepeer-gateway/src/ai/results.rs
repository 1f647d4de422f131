//! The gateway's own store of AI result files (images, videos, audio), so that clients never
//! need to reach an orchestrator: results are fetched once from the orchestrator and served by
//! the gateway under `/results/{id}/{file}`. In memory, capped in total bytes, each file expiring
//! after a TTL; the oldest files go first when the cap is reached.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use rand::Rng;
use tokio::time::Instant;

/// A stored file.
#[derive(Debug, Clone)]
pub struct Stored {
    /// MIME type to serve it with.
    pub content_type: String,
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

/// In-memory, size-capped, expiring result store.
#[derive(Debug)]
pub struct ResultStore {
    max_bytes: usize,
    ttl: Duration,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    items: HashMap<String, (Stored, Instant)>,
    /// Keys in insertion order, which is also expiry order (one TTL for all).
    order: VecDeque<String>,
    bytes: usize,
}

impl ResultStore {
    /// A store holding at most `max_bytes`, each file for `ttl`.
    pub fn new(max_bytes: usize, ttl: Duration) -> Self {
        Self { max_bytes, ttl, inner: Mutex::default() }
    }

    /// Stores `bytes` and returns its key, `<random id>/<name>.<ext>`.
    pub fn put(&self, content_type: &str, ext: &str, bytes: Bytes) -> Result<String, TooLarge> {
        if bytes.len() > self.max_bytes {
            return Err(TooLarge { size: bytes.len(), max: self.max_bytes });
        }
        let id: u128 = rand::rng().random();
        let key = format!("{id:032x}/{}.{ext}", &format!("{:08x}", rand::rng().random::<u32>()));
        let now = Instant::now();
        let Ok(mut inner) = self.inner.lock() else { return Ok(key) };
        inner.expire(now);
        while inner.bytes + bytes.len() > self.max_bytes {
            if !inner.evict_oldest() {
                break;
            }
        }
        inner.bytes += bytes.len();
        let stored = Stored { content_type: content_type.to_owned(), bytes };
        inner.items.insert(key.clone(), (stored, now + self.ttl));
        inner.order.push_back(key.clone());
        Ok(key)
    }

    /// The file under `key`, unless expired or evicted.
    pub fn get(&self, key: &str) -> Option<Stored> {
        let mut inner = self.inner.lock().ok()?;
        inner.expire(Instant::now());
        inner.items.get(key).map(|(s, _)| s.clone())
    }

    /// Bytes currently held.
    pub fn bytes(&self) -> usize {
        self.inner.lock().map(|i| i.bytes).unwrap_or(0)
    }
}

impl Inner {
    fn expire(&mut self, now: Instant) {
        while let Some(key) = self.order.front() {
            match self.items.get(key) {
                Some((_, expires)) if *expires > now => break,
                _ => {
                    self.evict_oldest();
                }
            }
        }
    }

    fn evict_oldest(&mut self) -> bool {
        let Some(key) = self.order.pop_front() else { return false };
        if let Some((stored, _)) = self.items.remove(&key) {
            self.bytes -= stored.bytes.len();
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn caps_size_and_expires() {
        let store = ResultStore::new(10, Duration::from_secs(60));
        let a = store.put("image/png", "png", Bytes::from_static(b"aaaa")).unwrap();
        let b = store.put("image/png", "png", Bytes::from_static(b"bbbb")).unwrap();
        assert!(a.ends_with(".png") && a != b);
        assert_eq!(store.get(&a).unwrap().bytes, "aaaa");
        // A third file pushes the oldest out.
        let c = store.put("audio/wav", "wav", Bytes::from_static(b"cccc")).unwrap();
        assert!(store.get(&a).is_none());
        assert_eq!(store.get(&c).unwrap().content_type, "audio/wav");
        assert_eq!(store.bytes(), 8);
        assert!(store.put("x", "bin", Bytes::from(vec![0; 11])).is_err());
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(store.get(&b).is_none() && store.get(&c).is_none());
        assert_eq!(store.bytes(), 0);
    }
}
