//! How fast the gateway spends: the expected value of the tickets it sends, per minute over the
//! last hour, so that operators see how long the reserve lasts at the current spend. Exact
//! rationals throughout.

use std::collections::VecDeque;
use std::sync::Mutex;

use livepeer_pm::{Ratio, U256};
use tokio::time::Instant;

/// Minutes of history the rate is taken over.
const WINDOW_MINUTES: u64 = 60;

/// Ticket EV sent, in one-minute buckets over the last hour (bounded: 60 buckets).
#[derive(Debug)]
pub struct SpendMeter {
    start: Instant,
    buckets: Mutex<VecDeque<(u64, Ratio)>>,
}

impl Default for SpendMeter {
    fn default() -> Self {
        Self { start: Instant::now(), buckets: Mutex::default() }
    }
}

impl SpendMeter {
    fn minute(&self) -> u64 {
        self.start.elapsed().as_secs() / 60
    }

    /// Counts `ev` wei of tickets sent now.
    pub fn record(&self, ev: &Ratio) {
        let now = self.minute();
        let Ok(mut buckets) = self.buckets.lock() else { return };
        match buckets.back_mut() {
            Some((minute, sum)) if *minute == now => {
                if let Ok(total) = sum.checked_add(ev) {
                    *sum = total;
                }
            }
            _ => buckets.push_back((now, *ev)),
        }
        while buckets.front().is_some_and(|(m, _)| m + WINDOW_MINUTES <= now) {
            buckets.pop_front();
        }
    }

    /// Wei per hour over the last hour (or since start, if shorter; at least one minute).
    pub fn per_hour(&self) -> Ratio {
        let now = self.minute();
        let Ok(buckets) = self.buckets.lock() else { return Ratio::default() };
        let mut total = Ratio::default();
        for (_, sum) in buckets.iter().filter(|(m, _)| m + WINDOW_MINUTES > now) {
            total = total.checked_add(sum).unwrap_or(total);
        }
        let minutes = (now + 1).min(WINDOW_MINUTES);
        let per_minute = total.checked_div(&Ratio::from_u64(minutes)).unwrap_or_default();
        per_minute.checked_mul_u64(60).unwrap_or_default()
    }
}

/// What the admin API shows of the reserve: the spend rate, the hours the reserve lasts at it,
/// and whether that is fewer than `warn_hours`.
pub fn reserve_report(reserve: U256, per_hour: &Ratio, warn_hours: u64) -> serde_json::Value {
    let hours = (!per_hour.is_zero())
        .then(|| Ratio::from_u256(reserve).checked_div(per_hour).ok())
        .flatten();
    let short = hours.as_ref().is_some_and(|h| *h < Ratio::from_u64(warn_hours));
    serde_json::json!({
        "spend_per_hour_wei": per_hour.to_decimal_string(0),
        "reserve_hours": hours.map(|h| h.to_decimal_string(1)),
        "warning_hours": warn_hours,
        "warning": short.then(|| format!(
            "the reserve lasts less than {warn_hours} h at the current spend; add to it with `livepeer-gateway deposit`"
        )),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn rate_and_warning_are_exact() {
        let meter = SpendMeter::default();
        assert!(meter.per_hour().is_zero());
        meter.record(&Ratio::from_u64(100));
        meter.record(&Ratio::from_u64(20));
        // Within the first minute: 120 per minute.
        assert_eq!(meter.per_hour(), Ratio::from_u64(7200));
        tokio::time::advance(std::time::Duration::from_secs(59 * 60)).await;
        assert_eq!(meter.per_hour(), Ratio::from_u64(120), "120 over 60 minutes");
        tokio::time::advance(std::time::Duration::from_secs(60)).await;
        assert!(meter.per_hour().is_zero(), "an hour later it has left the window");

        let r = reserve_report(U256::from(240), &Ratio::from_u64(120), 3);
        assert_eq!(r["reserve_hours"], "2.0");
        assert!(r["warning"].as_str().unwrap().contains("less than 3 h"));
        let r = reserve_report(U256::from(360), &Ratio::from_u64(120), 3);
        assert_eq!(r["warning"], serde_json::Value::Null, "exactly 3 h is enough");
        let r = reserve_report(U256::from(1), &Ratio::default(), 3);
        assert_eq!(r["reserve_hours"], serde_json::Value::Null, "no spend: lasts for ever");
    }
}
