//! The usage ledger: one row per request made with a customer key (key, pipeline, model,
//! status, latency, request id), written in batches off the request path.
//!
//! The request path only `try_send`s its row into a bounded channel; one writer task takes
//! whatever has queued up (at most [`BATCH`] rows) and inserts it in one statement, so under
//! load rows batch up by themselves and when idle each is written at once. A failed write
//! is retried each second, the rows kept (bounded by [`MAX_PENDING`]). The writer ends, after
//! writing what it holds, when every sender is gone (the gateway's routers, after the last
//! request) or when shutdown's drain time is over.
//!
//! Not yet: units, what the orchestrator was paid and what the customer is charged (issue
//! 14's customer prices), and refusing traffic with 503 when the buffer is full (rows are
//! dropped, with a warning, for now).

use std::time::Duration;

use serde::Serialize;
use sqlx::{AnyPool, Row};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Rows written by one statement, at most (8 parameters each, under both databases' limits).
const BATCH: usize = 256;
/// Rows waiting in the channel and the writer together, at most.
pub(super) const MAX_PENDING: usize = 16_384;

/// One request of a customer key.
#[derive(Debug, Clone)]
pub struct UsageRow {
    /// Unix milliseconds when it arrived.
    pub at_ms: i64,
    /// The key's id.
    pub key_id: String,
    /// The gateway's request id (`X-Request-Id`), when the route gives one.
    pub request_id: String,
    /// The pipeline.
    pub pipeline: &'static str,
    /// The model, when the route knows it.
    pub model: String,
    /// The HTTP status answered.
    pub status: u16,
    /// Microseconds until the answer's headers (a stream runs on after them).
    pub latency_us: u64,
}

/// The usage of one pipeline and model over a range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsageLine {
    /// The pipeline.
    pub pipeline: String,
    /// The model (empty when the route does not know it).
    pub model: String,
    /// Requests.
    pub requests: u64,
    /// Requests answered with a status of 400 or more.
    pub errors: u64,
}

/// Writes rows from `rx` until it closes or `drained` fires, then what is left.
pub(super) async fn run(db: AnyPool, mut rx: mpsc::Receiver<UsageRow>, drained: CancellationToken) {
    let mut pending: Vec<UsageRow> = Vec::new();
    loop {
        if pending.is_empty() {
            tokio::select! {
                row = rx.recv() => match row {
                    Some(row) => pending.push(row),
                    None => break,
                },
                () = drained.cancelled() => break,
            }
        }
        while pending.len() < MAX_PENDING {
            match rx.try_recv() {
                Ok(row) => pending.push(row),
                Err(_) => break,
            }
        }
        if let Err(e) = write(&db, &mut pending).await {
            tracing::warn!(error = %e, rows = pending.len(), "usage ledger write failed; retrying");
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                () = drained.cancelled() => break,
            }
        }
    }
    while let Ok(row) = rx.try_recv() {
        pending.push(row);
    }
    if let Err(e) = write(&db, &mut pending).await {
        tracing::error!(error = %e, rows = pending.len(), "usage ledger rows lost at shutdown");
    }
}

/// Inserts `rows` in statements of [`BATCH`], removing each batch once written.
async fn write(db: &AnyPool, rows: &mut Vec<UsageRow>) -> Result<(), sqlx::Error> {
    while !rows.is_empty() {
        let n = rows.len().min(BATCH);
        let values: Vec<String> = (0..n)
            .map(|i| {
                let p: Vec<String> = (1..=7).map(|c| format!("${}", i * 7 + c)).collect();
                format!("({})", p.join(", "))
            })
            .collect();
        let sql = format!(
            "INSERT INTO usage_events \
             (at_ms, key_id, request_id, pipeline, model, status, latency_us) VALUES {}",
            values.join(", ")
        );
        let mut query = sqlx::query(&sql);
        for r in &rows[..n] {
            query = query
                .bind(r.at_ms)
                .bind(r.key_id.clone())
                .bind(r.request_id.clone())
                .bind(r.pipeline)
                .bind(r.model.clone())
                .bind(i64::from(r.status))
                .bind(i64::try_from(r.latency_us).unwrap_or(i64::MAX));
        }
        query.execute(db).await?;
        rows.drain(..n);
    }
    Ok(())
}

/// Key `key_id`'s requests from `from_ms` (inclusive) to `to_ms` (exclusive), by model.
pub(super) async fn usage(
    db: &AnyPool,
    key_id: &str,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<UsageLine>, sqlx::Error> {
    // COUNT, not SUM: PostgreSQL's SUM of BIGINT is NUMERIC, which the Any driver cannot read.
    let sql = "SELECT pipeline, model, COUNT(*) AS requests, \
        COUNT(CASE WHEN status >= 400 THEN 1 END) AS errors FROM usage_events \
        WHERE key_id = $1 AND at_ms >= $2 AND at_ms < $3 \
        GROUP BY pipeline, model ORDER BY pipeline, model";
    let rows =
        sqlx::query(sql).bind(key_id.to_owned()).bind(from_ms).bind(to_ms).fetch_all(db).await?;
    rows.iter()
        .map(|r| {
            let count = |c: &str| r.try_get::<i64, _>(c).map(|v| u64::try_from(v).unwrap_or(0));
            Ok(UsageLine {
                pipeline: r.try_get("pipeline")?,
                model: r.try_get("model")?,
                requests: count("requests")?,
                errors: count("errors")?,
            })
        })
        .collect()
}
