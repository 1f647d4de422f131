//! The usage ledger: one row per request made with a customer key (key, pipeline, model,
//! status, latency, request id), written in batches off the request path.
//!
//! The request path only `try_send`s its row into a bounded channel; one writer task waits for
//! a row, lets more gather for [`GATHER`], then writes all it has in transactions of up to
//! [`TX_ROWS`] (statements of up to [`BATCH`] rows), so under load a transaction carries
//! hundreds of rows and when idle a row is written within [`GATHER`]. A failed write is
//! retried each second, the rows kept (bounded by [`MAX_PENDING`]). The writer ends, after
//! writing what it holds, when every sender is gone (the gateway's routers, after the last
//! request) or when shutdown's drain time is over.
//!
//! Each row carries money: the job's units, the orchestrator that served it, what the gateway
//! paid (tickets, their expected value and the fee, exact wei) and what the customer is
//! charged (nano-USD). The transaction that writes a batch also settles the keys' spend
//! (`key_spend`): each row's charge is added to its key's period and its reservation released,
//! so the spend and the ledger never disagree. While the database is down, rows wait (at most
//! [`MAX_PENDING`] in the writer and as many in the channel); when both are full the key check
//! refuses paid traffic with 503 rather than serve what it could not record. Each batch's
//! transaction also records the batch's id, so that a batch whose commit succeeded but whose
//! answer was lost is not written, nor charged, again by its retry.

use std::time::Duration;

use serde::Serialize;
use sqlx::{AnyPool, Row};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Rows written by one statement, at most (14 parameters each, under both databases' limits).
const BATCH: usize = 256;
/// Rows written by one transaction, at most: what gathers in [`GATHER`] at several thousand
/// requests a second, in statements of [`BATCH`].
const TX_ROWS: usize = 16 * BATCH;
/// Columns of a row.
const COLUMNS: usize = 14;
/// Rows waiting in the channel and the writer together, at most.
pub(super) const MAX_PENDING: usize = 16_384;
/// How long the writer lets rows gather after the first one arrives before it writes them.
/// Each write is one transaction: a commit (on PostgreSQL an fsync of its WAL) and the batch's
/// settlement statements. Writing whatever had queued during the previous write made a
/// handful of rows per transaction under load, hundreds of commits a second; gathering makes
/// them a few hundred rows each, a few dozen a second. A row then reaches the database at
/// most this much later, which is also all a crash can lose beyond what it lost before (the
/// rows were only in memory either way); a shutdown still writes everything at once.
const GATHER: Duration = Duration::from_millis(50);

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
    /// The job's units (the pipeline's gateway units).
    pub units: u64,
    /// The orchestrator that served it.
    pub orchestrator: String,
    /// Tickets sent for it, every attempt together.
    pub tickets: u64,
    /// Their expected value, wei (exact; `num/den` when not whole).
    pub paid_ev_wei: String,
    /// The orchestrators' fees, wei (exact).
    pub paid_fee_wei: String,
    /// What the customer is charged, nano-USD.
    pub charged_nusd: i64,
    /// What of its reservation against the key's budget is released now, as it is charged
    /// (nano-USD): the part of the reservation the charge used; the rest went back to the
    /// instance's lease when the row was made.
    pub reserved_nusd: i64,
    /// The instance whose hold the reservation was taken from (see `instance`).
    pub holder: Option<std::sync::Arc<str>>,
    /// The budget period the charge belongs to (unix seconds; 0: the key's lifetime).
    pub period_start: i64,
    /// `ok`, `refused` (401, 402, 403, 429), `client_error` or `failed`.
    pub outcome: &'static str,
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
    /// Units served.
    pub units: u64,
    /// What the customer was charged, nano-USD.
    pub charged_nusd: i64,
}

/// Writes rows from `rx` until it closes or `drained` fires, then what is left.
pub(super) async fn run(db: AnyPool, mut rx: mpsc::Receiver<UsageRow>, drained: CancellationToken) {
    let mut pending = Pending::default();
    loop {
        if pending.rows == 0 {
            tokio::select! {
                row = rx.recv() => match row {
                    Some(row) => pending.push(row),
                    None => break,
                },
                () = drained.cancelled() => break,
            }
            // Let rows gather before writing (see GATHER); a shutdown writes at once.
            tokio::select! {
                () = tokio::time::sleep(GATHER) => {}
                () = drained.cancelled() => break,
            }
        }
        while pending.rows < MAX_PENDING {
            match rx.try_recv() {
                Ok(row) => pending.push(row),
                Err(_) => break,
            }
        }
        if let Err(e) = write(&db, &mut pending).await {
            tracing::warn!(error = %e, rows = pending.rows, "usage ledger write failed; retrying");
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                () = drained.cancelled() => break,
            }
        }
    }
    while let Ok(row) = rx.try_recv() {
        pending.push(row);
    }
    // The last write is tried a few times: a database that blinks at shutdown must not cost
    // the rows of the requests that ended with it (a retried batch is not written twice).
    for attempt in 1..=FINAL_TRIES {
        match write(&db, &mut pending).await {
            Ok(()) => return,
            Err(e) if attempt == FINAL_TRIES => {
                tracing::error!(error = %e, rows = pending.rows, "usage ledger rows lost at shutdown");
            }
            Err(e) => {
                tracing::warn!(error = %e, rows = pending.rows, "usage ledger's last write failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// How many times the last write at shutdown is tried.
const FINAL_TRIES: u32 = 4;

/// Rows waiting to be written, in batches of at most [`TX_ROWS`], each written by one
/// transaction. A batch keeps its id and its rows once a write of it was tried: a commit can
/// succeed with its acknowledgement lost (the connection cut as it answered), and the retry
/// must then be known for the same batch, so that it is not written, and charged, twice.
#[derive(Debug, Default)]
struct Pending {
    batches: std::collections::VecDeque<Batch>,
    /// Rows in them, together.
    rows: usize,
    /// Batch writes tried so far (each [`PRUNE_EVERY`]th also prunes old batch ids).
    tried: u64,
}

#[derive(Debug)]
struct Batch {
    /// Recorded in `ledger_batches` by the transaction that writes the batch.
    id: String,
    rows: Vec<UsageRow>,
    /// Whether a write was tried (it takes no more rows).
    tried: bool,
}

impl Pending {
    fn push(&mut self, row: UsageRow) {
        match self.batches.back_mut() {
            Some(last) if !last.tried && last.rows.len() < TX_ROWS => last.rows.push(row),
            _ => {
                let id = hex::encode(rand::random::<[u8; 16]>());
                self.batches.push_back(Batch { id, rows: vec![row], tried: false });
            }
        }
        self.rows += 1;
    }
}

/// How long a written batch's id is kept (milliseconds): a retry comes within seconds, or
/// within the database's outage, of the write it repeats.
const BATCH_IDS_KEPT_MS: i64 = 24 * 3600 * 1000;
/// One transaction in this many also forgets batch ids older than [`BATCH_IDS_KEPT_MS`].
const PRUNE_EVERY: u64 = 256;

/// Writes the pending batches in order, each in one transaction with the settlement of its
/// charges and reservations, removing each once committed.
async fn write(db: &AnyPool, pending: &mut Pending) -> Result<(), sqlx::Error> {
    while let Some(batch) = pending.batches.front_mut() {
        batch.tried = true;
        let prune = pending.tried.is_multiple_of(PRUNE_EVERY);
        pending.tried += 1;
        // Bounded: a connection whose server went silent gave no error, and the writer, its
        // queue full behind it, then had every keyed request refused until restart. A batch
        // given up on is tried again; its id keeps it from being written twice.
        let written = tokio::time::timeout(BATCH_WAIT, write_batch(db, batch, prune)).await;
        written.map_err(|_| sqlx::Error::PoolTimedOut)??;
        pending.rows -= batch.rows.len();
        pending.batches.pop_front();
    }
    Ok(())
}

/// How long one batch's write may take (the server bounds each statement at 15 s).
const BATCH_WAIT: Duration = Duration::from_secs(30);

/// Writes `batch` in one transaction, unless its id shows it written already.
async fn write_batch(db: &AnyPool, batch: &Batch, prune: bool) -> Result<(), sqlx::Error> {
    let now = super::now_ms();
    let mut tx = db.begin().await?;
    let sql = "INSERT INTO ledger_batches (batch_id, at_ms) VALUES ($1, $2) \
        ON CONFLICT (batch_id) DO NOTHING";
    let marked = sqlx::query(sql).bind(batch.id.clone()).bind(now).execute(&mut *tx).await?;
    if marked.rows_affected() == 1 {
        insert(&mut tx, &batch.rows).await?;
        settle(&mut tx, &batch.rows).await?;
    } else {
        tracing::info!(
            rows = batch.rows.len(),
            "usage ledger batch already written (its commit's answer was lost)"
        );
    }
    if prune {
        sqlx::query("DELETE FROM ledger_batches WHERE at_ms < $1")
            .bind(now - BATCH_IDS_KEPT_MS)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await
}

/// Bytes of a text field (a model, a request id) kept in the ledger, at most.
const MAX_TEXT: usize = 256;

/// `text` as the ledger keeps it: without control characters (PostgreSQL refuses a NUL in
/// TEXT, which would fail the whole batch and, retried, stall the ledger for every key) and
/// cut to [`MAX_TEXT`] bytes on a character boundary. The model comes from the client.
pub(super) fn clean(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_TEXT));
    for c in text.chars().filter(|c| !c.is_control()) {
        if out.len() + c.len_utf8() > MAX_TEXT {
            break;
        }
        out.push(c);
    }
    out
}

/// Rows per insert statement. A batch is cut into statements of these lengths, longest first,
/// so each connection prepares these few statements once and reuses them: sqlx caches
/// prepared statements by their text, and a statement of whatever length a batch had would be
/// prepared afresh nearly every time, which under load was most of the writer's CPU.
const STATEMENT_ROWS: [usize; 5] = [BATCH, 64, 16, 4, 1];

/// The insert statement of `STATEMENT_ROWS[i]` rows, made once, with `$n` parameters or, for
/// SQLite (`anonymous`), `?` ones. sqlx's SQLite driver looks up each parameter's name to
/// place it, and SQLite finds a name by walking the list of all of them: with `$n` a statement
/// of 256 rows (3,584 parameters) took millions of steps to bind, a tenth of the keys
/// bench's CPU. Anonymous parameters have no name and bind in order.
fn insert_sql(i: usize, anonymous: bool) -> &'static str {
    static SQL: std::sync::OnceLock<[Vec<String>; 2]> = std::sync::OnceLock::new();
    let statements = |anonymous: bool| -> Vec<String> {
        let parameter = |n: usize| if anonymous { "?".to_owned() } else { format!("${n}") };
        STATEMENT_ROWS
            .iter()
            .map(|&n| {
                let values: Vec<String> = (0..n)
                    .map(|i| {
                        let p: Vec<String> =
                            (1..=COLUMNS).map(|c| parameter(i * COLUMNS + c)).collect();
                        format!("({})", p.join(", "))
                    })
                    .collect();
                format!(
                    "INSERT INTO usage_events (at_ms, key_id, request_id, pipeline, model, \
                     status, latency_us, units, orchestrator, tickets, paid_ev_wei, \
                     paid_fee_wei, charged_nusd, outcome) VALUES {}",
                    values.join(", ")
                )
            })
            .collect()
    };
    let all = SQL.get_or_init(|| [statements(false), statements(true)]);
    &all[usize::from(anonymous)][i]
}

/// Inserts `rows` in statements of [`STATEMENT_ROWS`] lengths.
async fn insert(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    mut rows: &[UsageRow],
) -> Result<(), sqlx::Error> {
    let anonymous = tx.backend_name().eq_ignore_ascii_case("sqlite");
    while !rows.is_empty() {
        let i = STATEMENT_ROWS
            .iter()
            .position(|&n| n <= rows.len())
            .unwrap_or(STATEMENT_ROWS.len() - 1);
        let n = STATEMENT_ROWS[i].min(rows.len());
        insert_rows(tx, insert_sql(i, anonymous), &rows[..n]).await?;
        rows = &rows[n..];
    }
    Ok(())
}

/// Inserts `rows` with `sql`, a statement of exactly their number.
async fn insert_rows(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    sql: &'static str,
    rows: &[UsageRow],
) -> Result<(), sqlx::Error> {
    let big = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    let mut query = sqlx::query(sql);
    for r in rows {
        query = query
            .bind(r.at_ms)
            .bind(r.key_id.clone())
            .bind(clean(&r.request_id))
            .bind(r.pipeline)
            .bind(clean(&r.model))
            .bind(i64::from(r.status))
            .bind(big(r.latency_us))
            .bind(big(r.units))
            .bind(clean(&r.orchestrator))
            .bind(big(r.tickets))
            .bind(r.paid_ev_wei.clone())
            .bind(r.paid_fee_wei.clone())
            .bind(r.charged_nusd)
            .bind(r.outcome);
    }
    query.execute(&mut **tx).await?;
    Ok(())
}

/// Adds the rows' charges to their keys' periods and releases the part of their
/// reservations charged, from the key's reserved total and from the instance's hold: one
/// statement each per key, period and instance. Each instance's row is locked first (see
/// `instance` for the lock order); an instance found gone was reaped, which already released
/// all it held, so only the charge is added then.
async fn settle(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    rows: &[UsageRow],
) -> Result<(), sqlx::Error> {
    type Group<'a> = (&'a str, i64, Option<&'a str>);
    let mut sums: std::collections::BTreeMap<Group<'_>, (i64, i64)> = Default::default();
    for r in rows.iter().filter(|r| r.charged_nusd > 0 || r.reserved_nusd > 0) {
        let holder = r.holder.as_deref().filter(|_| r.reserved_nusd > 0);
        let sum = sums.entry((r.key_id.as_str(), r.period_start, holder)).or_default();
        sum.0 = sum.0.saturating_add(r.charged_nusd);
        sum.1 = sum.1.saturating_add(r.reserved_nusd);
    }
    let mut live = std::collections::BTreeMap::new();
    for holder in sums.keys().filter_map(|g| g.2) {
        if !live.contains_key(holder) {
            live.insert(holder, super::instance::touch(tx, holder).await?);
        }
    }
    for ((key_id, period_start, holder), (charged, mut released)) in sums {
        let held = holder.filter(|h| live.get(h) == Some(&true));
        if held.is_none() {
            released = 0;
        }
        sqlx::query(
            "INSERT INTO key_spend (key_id, period_start, spent_nusd, reserved_nusd) \
             VALUES ($1, $2, $3, 0) ON CONFLICT (key_id, period_start) DO UPDATE SET \
             spent_nusd = key_spend.spent_nusd + $3, \
             reserved_nusd = key_spend.reserved_nusd - $4",
        )
        .bind(key_id.to_owned())
        .bind(period_start)
        .bind(charged)
        .bind(released)
        .execute(&mut **tx)
        .await?;
        if let Some(holder) = held {
            let at = (key_id, period_start);
            super::instance::hold(tx, holder, super::instance::HoldKind::Budget, at, -released)
                .await?;
        }
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
    // Sums cast to BIGINT: PostgreSQL's SUM of BIGINT is NUMERIC, which the Any driver cannot
    // read.
    let sql = "SELECT pipeline, model, COUNT(*) AS requests, \
        COUNT(CASE WHEN status >= 400 THEN 1 END) AS errors, \
        CAST(COALESCE(SUM(units), 0) AS BIGINT) AS units, \
        CAST(COALESCE(SUM(charged_nusd), 0) AS BIGINT) AS charged FROM usage_events \
        WHERE key_id = $1 AND at_ms >= $2 AND at_ms < $3 \
        GROUP BY pipeline, model ORDER BY pipeline, model";
    let query = sqlx::query(sql).bind(key_id.to_owned()).bind(from_ms).bind(to_ms);
    let rows = crate::database::answered(query.fetch_all(db)).await?;
    rows.iter()
        .map(|r| {
            let count = |c: &str| r.try_get::<i64, _>(c).map(|v| u64::try_from(v).unwrap_or(0));
            Ok(UsageLine {
                pipeline: r.try_get("pipeline")?,
                model: r.try_get("model")?,
                requests: count("requests")?,
                errors: count("errors")?,
                units: count("units")?,
                charged_nusd: r.try_get("charged")?,
            })
        })
        .collect()
}

/// One row of the ledger as exported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LedgerRow {
    /// Unix milliseconds.
    pub at_ms: i64,
    /// The key.
    pub key_id: String,
    /// The request id.
    pub request_id: String,
    /// The pipeline.
    pub pipeline: String,
    /// The model.
    pub model: String,
    /// The HTTP status.
    pub status: i64,
    /// `ok`, `refused`, `client_error` or `failed`.
    pub outcome: String,
    /// Microseconds until the answer's headers.
    pub latency_us: i64,
    /// Units.
    pub units: i64,
    /// The orchestrator that served it.
    pub orchestrator: String,
    /// Tickets sent.
    pub tickets: i64,
    /// Their expected value, wei (exact).
    pub paid_ev_wei: String,
    /// The orchestrators' fees, wei (exact).
    pub paid_fee_wei: String,
    /// The customer's charge, nano-USD.
    pub charged_nusd: i64,
}

/// The ledger's rows of `key_id` (every key's when `None`) from `from_ms` to `to_ms`, oldest
/// first, at most `limit`.
pub(super) async fn rows(
    db: &AnyPool,
    key_id: Option<&str>,
    from_ms: i64,
    to_ms: i64,
    limit: u32,
) -> Result<Vec<LedgerRow>, sqlx::Error> {
    let sql = "SELECT at_ms, key_id, request_id, pipeline, model, status, outcome, latency_us, \
        units, orchestrator, tickets, paid_ev_wei, paid_fee_wei, charged_nusd FROM usage_events \
        WHERE ($1 = '' OR key_id = $1) AND at_ms >= $2 AND at_ms < $3 \
        ORDER BY at_ms, key_id, request_id LIMIT $4";
    let query = sqlx::query(sql)
        .bind(key_id.unwrap_or_default().to_owned())
        .bind(from_ms)
        .bind(to_ms)
        .bind(i64::from(limit));
    let found = crate::database::answered(query.fetch_all(db)).await?;
    found
        .iter()
        .map(|r| {
            Ok(LedgerRow {
                at_ms: r.try_get("at_ms")?,
                key_id: r.try_get("key_id")?,
                request_id: r.try_get("request_id")?,
                pipeline: r.try_get("pipeline")?,
                model: r.try_get("model")?,
                status: r.try_get("status")?,
                outcome: r.try_get("outcome")?,
                latency_us: r.try_get("latency_us")?,
                units: r.try_get("units")?,
                orchestrator: r.try_get("orchestrator")?,
                tickets: r.try_get("tickets")?,
                paid_ev_wei: r.try_get("paid_ev_wei")?,
                paid_fee_wei: r.try_get("paid_fee_wei")?,
                charged_nusd: r.try_get("charged_nusd")?,
            })
        })
        .collect()
}

/// The CSV header of [`LedgerRow`]s.
pub const CSV_HEADER: &str = "at_ms,key_id,request_id,pipeline,model,status,outcome,latency_us,\
    units,orchestrator,tickets,paid_ev_wei,paid_fee_wei,charged_usd\n";

impl LedgerRow {
    /// The row as one CSV line (RFC 4180: text fields quoted when they hold a comma, a quote
    /// or a line break; quotes doubled), the charge in USD with 9 decimals.
    pub fn csv_line(&self) -> String {
        let q = |s: &str| {
            // A leading `=`, `+`, `-` or `@` is a formula to spreadsheets, and so is one after
            // a leading tab or carriage return, which some strip (OWASP's list): quoted with a
            // `'`.
            let s = match s.chars().next() {
                Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{s}"),
                _ => s.to_owned(),
            };
            if s.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", s.replace('"', "\"\""))
            } else {
                s
            }
        };
        format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
            self.at_ms,
            q(&self.key_id),
            q(&self.request_id),
            q(&self.pipeline),
            q(&self.model),
            self.status,
            q(&self.outcome),
            self.latency_us,
            self.units,
            q(&self.orchestrator),
            self.tickets,
            q(&self.paid_ev_wei),
            q(&self.paid_fee_wei),
            super::price::usd_text(self.charged_nusd),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(key_id: &str, charged_nusd: i64) -> UsageRow {
        UsageRow {
            at_ms: 1,
            key_id: key_id.to_owned(),
            request_id: "r".into(),
            pipeline: "llm",
            model: "m".into(),
            status: 200,
            latency_us: 1,
            units: 1,
            orchestrator: "o".into(),
            tickets: 0,
            paid_ev_wei: "0".into(),
            paid_fee_wei: "0".into(),
            charged_nusd,
            reserved_nusd: 0,
            holder: None,
            period_start: 0,
            outcome: "ok",
        }
    }

    /// A commit whose answer was lost leaves the batch pending, and it is written again: the
    /// second write of the same batch changes nothing.
    #[tokio::test]
    async fn a_batch_written_again_is_neither_recorded_nor_charged_twice() {
        let dir = tempfile::tempdir().unwrap();
        let url = crate::database::url(None, dir.path()).unwrap();
        let db = super::super::db::open(&url).await.unwrap();
        super::super::db::migrate(&db).await.unwrap();
        let mut pending = Pending::default();
        pending.push(row("k", 1_000));
        pending.push(row("k", 2_000));
        let batch = pending.batches.pop_front().unwrap();
        pending.rows = 0;
        assert_eq!(batch.rows.len(), 2);
        write_batch(&db, &batch, false).await.unwrap();
        write_batch(&db, &batch, true).await.unwrap();
        let spend = super::super::db::spend(&db, "k", 0).await.unwrap();
        assert_eq!(spend, Some((3_000, 0)));
        assert_eq!(rows(&db, Some("k"), 0, i64::MAX, 10).await.unwrap().len(), 2);
        // Another batch of the same rows is other requests: written.
        pending.push(row("k", 1_000));
        write(&db, &mut pending).await.unwrap();
        assert_eq!(pending.rows, 0);
        assert_eq!(super::super::db::spend(&db, "k", 0).await.unwrap(), Some((4_000, 0)));
    }

    fn ledger_row(model: &str, orchestrator: &str) -> LedgerRow {
        LedgerRow {
            at_ms: 1,
            key_id: "k".into(),
            request_id: "r".into(),
            pipeline: "llm".into(),
            model: model.into(),
            status: 200,
            outcome: "ok".into(),
            latency_us: 1,
            units: 1,
            orchestrator: orchestrator.into(),
            tickets: 0,
            paid_ev_wei: "0".into(),
            paid_fee_wei: "0".into(),
            charged_nusd: 0,
        }
    }

    /// Text a spreadsheet would run as a formula is quoted with a `'`, including after a
    /// leading tab or carriage return; RFC 4180 quoting still applies.
    #[test]
    fn csv_fields_that_start_a_formula_are_defused() {
        let rows = [
            ("=HYPERLINK(\"x\")", "\"'=HYPERLINK(\"\"x\"\")\""),
            ("+1", "'+1"),
            ("-1", "'-1"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\t=1+1", "'\t=1+1"),
            ("\r=1+1", "\"'\r=1+1\""),
            ("plain, text", "\"plain, text\""),
            ("m", "m"),
        ];
        for (model, want) in rows {
            let line = ledger_row(model, "o").csv_line();
            let field = line.split_once(",llm,").unwrap().1;
            let field = field.strip_suffix(",200,ok,1,1,o,0,0,0,0.000000000\n").unwrap();
            assert_eq!(field, want, "{line:?}");
        }
    }

    #[test]
    fn a_batch_tried_takes_no_more_rows() {
        let mut pending = Pending::default();
        pending.push(row("k", 1));
        pending.batches[0].tried = true;
        pending.push(row("k", 1));
        assert_eq!((pending.batches.len(), pending.rows), (2, 2));
        for _ in 0..TX_ROWS {
            pending.push(row("k", 1));
        }
        assert_eq!(pending.batches.len(), 3, "a batch holds at most TX_ROWS");
    }
}
