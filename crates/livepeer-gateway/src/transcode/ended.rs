//! Names of pushed streams that their customer key ended (`keys::follow`): the operator
//! stopped the key's streams (`POST /keys/{id}/streams/stop`), or the key no longer lets them
//! run. Such a stream is closed at once, as one that ends otherwise; but a pusher has no
//! connection to lose and learns of the end only from its next push, which would otherwise
//! make a new stream of the same name. So the name is kept here, and the key's later pushes of
//! it are refused with why, until the pusher has left it alone for as long as makes a stream
//! idle (`--transcode-idle-timeout`): from then on the name makes a new stream, as a stream
//! closed for idleness does. Other keys' pushes of the name are not refused here.
//!
//! Bounded like the streams themselves: at most as many names as `--max-sessions`, the least
//! recently refused forgotten first when more are ended.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use super::error::KeyRefusal;

/// A name ended by its key.
#[derive(Debug)]
struct Entry {
    /// The key that pushed the stream.
    key_id: String,
    /// Why the stream ended, as its pushes are refused.
    refusal: KeyRefusal,
    /// When the stream ended, or a push of its name was last refused.
    last: Instant,
}

/// The names ended by their key, by name.
#[derive(Debug)]
pub(super) struct Ended {
    names: HashMap<String, Entry>,
    /// Names kept at most.
    max: usize,
    /// How long a name is kept after its last refusal.
    linger: Duration,
}

impl Ended {
    /// No names yet; at most `max` (at least one) kept, each for `linger` after its last use.
    pub(super) fn new(max: usize, linger: Duration) -> Self {
        Self { names: HashMap::new(), max: max.max(1), linger }
    }

    /// Why the key `key_id`'s push of `manifest` is refused, when a stream of that name the
    /// key pushed was ended by it; the refusal keeps the name for another `linger` (a pusher
    /// still pushing is still told).
    pub(super) fn refusal(&mut self, manifest: &str, key_id: &str) -> Option<KeyRefusal> {
        let linger = self.linger;
        let entry = self.names.get_mut(manifest)?;
        if entry.last.elapsed() >= linger {
            self.names.remove(manifest);
            return None;
        }
        if entry.key_id != key_id {
            return None;
        }
        entry.last = Instant::now();
        Some(entry.refusal.clone())
    }

    /// Remembers that the key `key_id` ended its stream `manifest` for `refusal`.
    pub(super) fn insert(&mut self, manifest: &str, key_id: &str, refusal: KeyRefusal) {
        if !self.names.contains_key(manifest) && self.names.len() >= self.max {
            self.prune();
            if self.names.len() >= self.max {
                let oldest = self.names.iter().min_by_key(|(_, e)| e.last).map(|(k, _)| k.clone());
                if let Some(oldest) = oldest {
                    self.names.remove(&oldest);
                }
            }
        }
        let entry = Entry { key_id: key_id.to_owned(), refusal, last: Instant::now() };
        self.names.insert(manifest.to_owned(), entry);
    }

    /// Forgets the names left alone for `linger`.
    pub(super) fn prune(&mut self) {
        let linger = self.linger;
        self.names.retain(|_, e| e.last.elapsed() < linger);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Error, Kind};

    fn stopped() -> KeyRefusal {
        KeyRefusal(Error::new(Kind::StreamStopped, "stopped"))
    }

    #[tokio::test(start_paused = true)]
    async fn a_name_is_refused_to_its_key_until_left_alone_and_kept_within_bounds() {
        let linger = Duration::from_secs(60);
        let mut ended = Ended::new(2, linger);
        ended.insert("cam", "key_a", stopped());
        // Its key is refused, with why; another key is not.
        assert_eq!(ended.refusal("cam", "key_a"), Some(stopped()));
        assert_eq!(ended.refusal("cam", "key_b"), None);
        // Each refusal keeps the name for another `linger`.
        tokio::time::advance(Duration::from_secs(50)).await;
        assert!(ended.refusal("cam", "key_a").is_some());
        tokio::time::advance(Duration::from_secs(50)).await;
        assert!(ended.refusal("cam", "key_a").is_some());
        // Left alone that long, the name is free again.
        tokio::time::advance(linger).await;
        assert_eq!(ended.refusal("cam", "key_a"), None);
        assert!(ended.names.is_empty());

        // Beyond `max` names, the least recently refused goes first.
        ended.insert("a", "key_a", stopped());
        tokio::time::advance(Duration::from_secs(1)).await;
        ended.insert("b", "key_a", stopped());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(ended.refusal("a", "key_a").is_some());
        ended.insert("c", "key_a", stopped());
        assert_eq!(ended.names.len(), 2);
        assert!(ended.refusal("b", "key_a").is_none());
        assert!(ended.refusal("a", "key_a").is_some() && ended.refusal("c", "key_a").is_some());
    }
}
