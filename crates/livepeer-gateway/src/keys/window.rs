//! Requests per minute shared by the instances of one database: each minute window (aligned
//! on unix minutes) has a counter per key in `key_rate`, and an instance takes tokens from it
//! in chunks of 1/[`CHUNKS`] of the limit (at least 1) by one conditional `UPDATE` (used +
//! chunk ≤ limit), then admits requests from its chunk in memory. A database round trip is
//! thus made once per chunk, not per request.
//!
//! The bound: in each minute window, all instances together admit at most the key's limit
//! (tokens are granted atomically and never more than the limit); tokens an instance took and
//! did not use by the window's end are lost, so the instances may admit up to
//! (chunk − 1) per instance fewer than the limit in a window. Each instance also keeps its
//! own per-key GCRA ([`super::limit`]), which spreads its requests within the minute; across
//! a window's boundary two windows' limits can meet, so any 60 s span sees at most twice the
//! limit from all instances together (and at most the limit plus one per 60 s / limit from
//! one instance, by its GCRA).
//!
//! When the database fails, the instance's own GCRA alone decides (with a warning): a
//! database outage does not stop traffic that the rest of the gateway could serve.

use std::collections::HashMap;
use std::sync::Mutex;

use sqlx::{AnyPool, Row};

/// A window's tokens are taken in this many chunks of the limit, at most.
const CHUNKS: u32 = 16;
/// Seconds in a window.
const WINDOW: i64 = 60;
/// Keys tracked before those of past windows are forgotten.
const PRUNE_AT: usize = 10_000;

/// This instance's tokens of the current window, per key id.
#[derive(Debug, Default)]
pub(super) struct Windows(Mutex<HashMap<String, Tokens>>);

#[derive(Debug)]
struct Tokens {
    window: i64,
    left: u32,
    /// The database had no more tokens for this window.
    spent: bool,
}

impl Windows {
    /// Takes one of key `id`'s tokens of the window holding `now` (unix seconds), limited to
    /// `rpm`: `Err` with the seconds until the next window when every instance together has
    /// used the window's limit.
    pub(super) async fn admit(
        &self,
        db: &AnyPool,
        id: &str,
        rpm: u32,
        now: i64,
    ) -> Result<(), u32> {
        let window = now - now.rem_euclid(WINDOW);
        let wait = u32::try_from(window + WINDOW - now).unwrap_or(1).max(1);
        {
            let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(t) = map.get_mut(id).filter(|t| t.window == window) {
                if t.left > 0 {
                    t.left -= 1;
                    return Ok(());
                }
                if t.spent {
                    return Err(wait);
                }
            }
        }
        let chunk = (rpm / CHUNKS).max(1);
        let taken = take(db, id, window, i64::from(rpm), i64::from(chunk));
        let granted = match crate::database::answered(taken).await {
            Ok(granted) => granted,
            Err(e) => {
                tracing::warn!(error = %e, "shared rate limit unavailable; this instance's own applies");
                return Ok(());
            }
        };
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= PRUNE_AT && !map.contains_key(id) {
            map.retain(|_, t| t.window == window);
        }
        let t = map.entry(id.to_owned()).or_insert(Tokens { window, left: 0, spent: false });
        if t.window != window {
            *t = Tokens { window, left: 0, spent: false };
        }
        match u32::try_from(granted) {
            Ok(1..) => {
                t.left = t.left.saturating_add(u32::try_from(granted - 1).unwrap_or(0));
                Ok(())
            }
            _ => {
                t.spent = true;
                Err(wait)
            }
        }
    }
}

/// Takes up to `chunk` tokens of key `id`'s `window` (whose limit is `limit`): how many.
async fn take(
    db: &AnyPool,
    id: &str,
    window: i64,
    limit: i64,
    chunk: i64,
) -> Result<i64, sqlx::Error> {
    let mut grant = chunk;
    for _ in 0..4 {
        let done = sqlx::query(
            "UPDATE key_rate SET used = used + $3 \
             WHERE key_id = $1 AND window_start = $2 AND used + $3 <= $4",
        )
        .bind(id.to_owned())
        .bind(window)
        .bind(grant)
        .bind(limit)
        .execute(db)
        .await?;
        if done.rows_affected() == 1 {
            return Ok(grant);
        }
        let used = sqlx::query("SELECT used FROM key_rate WHERE key_id = $1 AND window_start = $2")
            .bind(id.to_owned())
            .bind(window)
            .fetch_optional(db)
            .await?;
        match used {
            Some(row) => {
                grant = chunk.min(limit - row.try_get::<i64, _>(0)?);
                if grant <= 0 {
                    return Ok(0);
                }
            }
            None => {
                sqlx::query(
                    "INSERT INTO key_rate (key_id, window_start, used) VALUES ($1, $2, 0) \
                     ON CONFLICT (key_id, window_start) DO NOTHING",
                )
                .bind(id.to_owned())
                .bind(window)
                .execute(db)
                .await?;
            }
        }
    }
    Ok(0)
}
