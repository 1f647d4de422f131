//! The gateway's one SQL database, reached through sqlx's `Any` driver: SQLite in
//! `gateway.sqlite` under `--data-dir` by default, PostgreSQL with `--database-url` (shared by
//! several instances). The parts that keep data there (customer keys, the on-chain pool) each
//! own their tables and their migrations ledger; this module holds what they share: the URL,
//! the connection settings and the migration runner.
//!
//! Migrations: our own small runner rather than sqlx's migrator, which needs its `migrate`
//! feature and, to embed the files, its macros. A list of statements per version, each version
//! applied once in a transaction and recorded in the part's ledger table, is all this needs
//! and is the same on both databases.

use std::path::Path;

use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Row};

/// A part's schema versions, in order; a released version is never edited, only followed.
pub type Migrations = &'static [(i64, &'static [&'static str])];

/// The database URL: `database_url` when given, else `gateway.sqlite` under `data_dir`
/// (created if missing).
pub fn url(database_url: Option<&str>, data_dir: &Path) -> Result<String, String> {
    if let Some(url) = database_url {
        return Ok(url.to_owned());
    }
    std::fs::create_dir_all(data_dir)
        .map_err(|e| format!("cannot create --data-dir {}: {e}", data_dir.display()))?;
    let path = data_dir.join("gateway.sqlite").display().to_string();
    // sqlx percent-decodes the file name: its `%`, `?`, `#` and spaces are encoded.
    let path = path.replace('%', "%25").replace('?', "%3F").replace('#', "%23").replace(' ', "%20");
    Ok(format!("sqlite://{path}?mode=rwc"))
}

/// How long the gateway waits for the database's answer to one call, in the request's name:
/// past the server's own statement bound (15 s, [`PG_SESSION`]), so that only a server
/// that has gone silent (a hung process, a network that drops everything) meets it. Neither
/// sqlx nor the server bounds that wait, and a request waiting on it was held for good.
pub const ANSWER_WITHIN: std::time::Duration = std::time::Duration::from_secs(20);

/// `call`'s answer, or a time-out error when it has not come within [`ANSWER_WITHIN`]. The
/// call is dropped then: whether a write it carried was committed is unknown, which the
/// caller must allow for. Its connection goes back to the pool checked within
/// [`RELEASE_CHECK_WITHIN`] (see [`connect`]).
pub async fn answered<T>(
    call: impl Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, sqlx::Error> {
    let mut call = std::pin::pin!(call);
    match tokio::time::timeout(ANSWER_WITHIN, &mut call).await {
        Ok(answer) => answer,
        Err(_) => {
            // Before the call (and the connection it holds) is dropped: the release that
            // the drop starts must find the suspicion set.
            suspect_releases();
            Err(timed_out(format!(
                "the database did not answer within {} s",
                ANSWER_WITHIN.as_secs()
            )))
        }
    }
}

fn timed_out(message: String) -> sqlx::Error {
    sqlx::Error::Io(std::io::Error::new(std::io::ErrorKind::TimedOut, message))
}

/// How long a connection given back to a pool may take to answer a ping while releases are
/// suspect, before it is closed instead of kept.
pub const RELEASE_CHECK_WITHIN: std::time::Duration = std::time::Duration::from_secs(5);

/// How long after a call went unanswered releases stay suspect.
const SUSPECT_FOR: std::time::Duration = std::time::Duration::from_secs(60);

/// Until when connections given back to a pool are checked within [`RELEASE_CHECK_WITHIN`].
static SUSPECT_UNTIL: std::sync::Mutex<Option<tokio::time::Instant>> = std::sync::Mutex::new(None);

fn suspect_releases() {
    let until = tokio::time::Instant::now() + SUSPECT_FOR;
    *SUSPECT_UNTIL.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(until);
}

fn releases_suspect() -> bool {
    let until = *SUSPECT_UNTIL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    until.is_some_and(|until| tokio::time::Instant::now() < until)
}

/// The check of a connection given back to a pool, before sqlx's own. sqlx pings every
/// connection given back (`sqlx-core` 0.8, `Floating::return_to_pool`) with no bound: the
/// connection of a call [`answered`] gave up on, whose server has gone silent, then held
/// its place in the pool until the server answered, and a few such calls took every place.
/// While a call has lately gone unanswered, a connection given back must answer a ping
/// within [`RELEASE_CHECK_WITHIN`] or is closed, which frees its place. Otherwise nothing
/// is added: a healthy database is not pinged twice per release.
async fn check_release(conn: &mut sqlx::AnyConnection) -> Result<bool, sqlx::Error> {
    use sqlx::Connection as _;
    if !releases_suspect() {
        return Ok(true);
    }
    match tokio::time::timeout(RELEASE_CHECK_WITHIN, conn.ping()).await {
        Ok(pinged) => pinged.map(|()| true),
        Err(_) => Err(timed_out(format!(
            "a connection given back did not answer a ping within {} s; closed",
            RELEASE_CHECK_WITHIN.as_secs()
        ))),
    }
}

/// Whether `e` says a call got no answer in time (from [`answered`], or the driver's own
/// time-out): whether the call's writes were committed is unknown.
pub fn unanswered(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut)
}

/// PostgreSQL session settings: no statement runs, waits for a lock, or holds a transaction
/// open idle beyond these (the gateway's statements take milliseconds; migrations a second).
pub const PG_SESSION: [(&str, &str); 3] = [
    ("statement_timeout", "15s"),
    ("lock_timeout", "5s"),
    ("idle_in_transaction_session_timeout", "30s"),
];

/// Connects to `url` (`sqlite://…` or `postgres://…`) with at most `max_connections`.
pub async fn connect(url: &str, max_connections: u32) -> Result<AnyPool, sqlx::Error> {
    sqlx::any::install_default_drivers();
    AnyPoolOptions::new()
        .after_connect(|conn, _| {
            Box::pin(async move {
                // SQLite: a write-ahead log, synced at checkpoints rather than at every commit
                // (a commit survives the gateway's crash, not the machine's power loss), so
                // that a budget's reservation is not an fsync on every request and readers do
                // not wait for the ledger's writer.
                if conn.backend_name().eq_ignore_ascii_case("sqlite") {
                    sqlx::query("PRAGMA journal_mode = WAL").execute(&mut *conn).await?;
                    sqlx::query("PRAGMA synchronous = NORMAL").execute(&mut *conn).await?;
                }
                // PostgreSQL: the server bounds what it makes a session wait for. Without it,
                // a row lock held by another instance's stalled transaction held this one's
                // budget reservations (and the requests waiting behind them) for as long as
                // that transaction lived. SQLite's busy timeout (5 s) bounds its own locks.
                if conn.backend_name().eq_ignore_ascii_case("postgresql") {
                    for (name, value) in PG_SESSION {
                        let set = format!("SET {name} = '{value}'");
                        sqlx::query(&set).execute(&mut *conn).await?;
                    }
                }
                Ok(())
            })
        })
        .after_release(|conn, _| Box::pin(check_release(conn)))
        .max_connections(max_connections)
        .acquire_timeout(std::time::Duration::from_secs(5))
        .connect(url)
        .await
}

/// Applies the `migrations` that the ledger table `ledger` (a constant of the calling part)
/// has not recorded. Two instances starting together on one PostgreSQL database may both try
/// a version: the loser's transaction fails on the version's primary key (or on the table it
/// creates) and it checks again.
pub async fn migrate(
    db: &AnyPool,
    ledger: &'static str,
    migrations: Migrations,
) -> Result<(), sqlx::Error> {
    let create = format!(
        "CREATE TABLE IF NOT EXISTS {ledger} (
            version BIGINT PRIMARY KEY,
            applied_at BIGINT NOT NULL
        )"
    );
    sqlx::query(&create).execute(db).await?;
    for attempt in 0..3 {
        match apply(db, ledger, migrations).await {
            Ok(()) => return Ok(()),
            Err(e) if attempt < 2 => tracing::info!(error = %e, "migration raced; checking again"),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

async fn apply(db: &AnyPool, ledger: &str, migrations: Migrations) -> Result<(), sqlx::Error> {
    let applied: Vec<i64> = sqlx::query(&format!("SELECT version FROM {ledger}"))
        .fetch_all(db)
        .await?
        .iter()
        .map(|r| r.try_get::<i64, _>(0))
        .collect::<Result<_, _>>()?;
    let record = format!("INSERT INTO {ledger} (version, applied_at) VALUES ($1, $2)");
    for (version, statements) in migrations.iter().filter(|(v, _)| !applied.contains(v)) {
        let mut tx = db.begin().await?;
        for statement in *statements {
            sqlx::query(statement).execute(&mut *tx).await?;
        }
        sqlx::query(&record).bind(*version).bind(now()).execute(&mut *tx).await?;
        tx.commit().await?;
        tracing::info!(ledger, version, "database migrated");
    }
    Ok(())
}

/// Unix seconds now.
pub fn now() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    since.map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
