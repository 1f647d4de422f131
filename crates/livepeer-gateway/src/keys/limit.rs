//! Requests per minute per key, in this instance's memory: a generic cell rate algorithm
//! (one instant per key, no timers), which lets a key spend its whole minute at once and then
//! one request every `60 s / limit`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

const MINUTE: Duration = Duration::from_secs(60);
/// Keys tracked before the ones that are back to a full minute are forgotten.
const PRUNE_AT: usize = 10_000;

/// Each limited key's theoretical arrival time: when its bucket would be empty again.
#[derive(Debug, Default)]
pub(super) struct Limiter {
    tat: Mutex<HashMap<String, Instant>>,
}

impl Limiter {
    /// Counts a request of key `id` at `now` against `rpm` (at least 1): `Err` with the whole
    /// seconds to wait (at least 1) when it is over.
    pub(super) fn admit(&self, id: &str, rpm: u32, now: Instant) -> Result<(), u32> {
        let interval = MINUTE / rpm.max(1);
        let tolerance = MINUTE - interval;
        let mut tat = self.tat.lock().unwrap_or_else(|p| p.into_inner());
        let current = tat.get(id).copied().unwrap_or(now).max(now);
        let ahead = current - now;
        if ahead > tolerance {
            let wait = ahead - tolerance;
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            return Err(u32::try_from(secs.max(1)).unwrap_or(u32::MAX));
        }
        if tat.len() >= PRUNE_AT && !tat.contains_key(id) {
            tat.retain(|_, t| *t > now);
        }
        tat.insert(id.to_owned(), current + interval);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minute_of_requests_then_one_per_interval() {
        let limiter = Limiter::default();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.admit("k", 3, t0), Ok(()));
        }
        assert_eq!(limiter.admit("k", 3, t0), Err(20));
        assert_eq!(limiter.admit("other", 3, t0), Ok(()));
        assert_eq!(limiter.admit("k", 3, t0 + Duration::from_millis(19_500)), Err(1));
        assert_eq!(limiter.admit("k", 3, t0 + Duration::from_secs(20)), Ok(()));
        assert_eq!(limiter.admit("k", 3, t0 + Duration::from_secs(20)), Err(20));
    }
}
