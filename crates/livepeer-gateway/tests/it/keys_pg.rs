//! Customer keys on a real PostgreSQL server, started in a temporary directory (Debian's
//! `postgresql` package: `/usr/lib/postgresql/<version>/bin`). As root, the server runs as
//! `nobody` (initdb refuses root). Without the package the test says so and passes.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use sha2::Digest as _;

use crate::keys::{admin, create, disable_and_delete, keys_config, lifecycle, t2i_as};
use crate::support::*;

/// A PostgreSQL server of its own, stopped on drop.
pub struct Postgres {
    child: Child,
    data: PathBuf,
    port: u16,
    bin: PathBuf,
    root: bool,
    _dir: tempfile::TempDir,
}

/// The newest installed PostgreSQL's `bin` directory.
pub fn pg_bin() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin)| bin.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// `program` with `args`, as `nobody` when we are root.
fn as_server_user(program: &Path, root: bool) -> Command {
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "nobody", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

impl Postgres {
    pub fn start(bin: &Path) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::metadata("/proc/self").unwrap().uid() == 0;
        if root {
            std::os::unix::fs::chown(dir.path(), Some(65534), Some(65534)).unwrap();
        }
        let data = dir.path().join("data");
        let out = as_server_user(&bin.join("initdb"), root)
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .output()
            .unwrap();
        assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Self::server(bin, dir.path(), &data, port, root);
        Self { child, data, port, bin: bin.to_owned(), root, _dir: dir }
    }

    /// Runs the server on `data` and waits until it takes connections.
    fn server(bin: &Path, dir: &Path, data: &Path, port: u16, root: bool) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("postgres.log"))
            .unwrap();
        let child = as_server_user(&bin.join("postgres"), root)
            .arg("-D")
            .arg(data)
            .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .arg("-k")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let ready = Command::new(bin.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q"])
                .status()
                .unwrap();
            if ready.success() {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "PostgreSQL did not start in 30 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        child
    }

    /// Stops the server (a fast shutdown) and waits for it to exit.
    pub fn stop(&mut self) {
        let pid = std::fs::read_to_string(self.data.join("postmaster.pid")).unwrap_or_default();
        if let Some(pid) = pid.lines().next().filter(|p| !p.is_empty()) {
            let _ = Command::new("kill").args(["-INT", pid]).status();
        }
        let _ = self.child.wait();
    }

    /// Starts the stopped server again, on the same data and port.
    pub fn restart(&mut self) {
        let dir = self.data.parent().unwrap().to_owned();
        self.child = Self::server(&self.bin, &dir, &self.data, self.port, self.root);
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // The postmaster's own pid (the child may be `runuser`): a fast shutdown.
        let pid = std::fs::read_to_string(self.data.join("postmaster.pid")).unwrap_or_default();
        if let Some(pid) = pid.lines().next().filter(|p| !p.is_empty()) {
            let _ = Command::new("kill").args(["-INT", pid]).status();
        }
        let _ = self.child.wait();
    }
}

/// A PostgreSQL server started for a test; `None` (the test then passes, saying so) when the
/// server binaries are missing and `LIVEPEER_REQUIRE_POSTGRES` is not `1`.
pub async fn postgres() -> Option<Postgres> {
    let Some(bin) = pg_bin() else {
        // `scripts/test` installs the server and requires it; run by hand, the test may skip.
        assert!(
            std::env::var("LIVEPEER_REQUIRE_POSTGRES").as_deref() != Ok("1"),
            "no PostgreSQL server (/usr/lib/postgresql/*/bin/initdb) and LIVEPEER_REQUIRE_POSTGRES=1"
        );
        eprintln!(
            "SKIPPED: no PostgreSQL server (/usr/lib/postgresql/*/bin/initdb); \
             install Debian's `postgresql` package to run this test"
        );
        return None;
    };
    Some(tokio::task::spawn_blocking(move || Postgres::start(&bin)).await.unwrap())
}

#[tokio::test]
async fn keys_on_postgresql_are_shared_by_two_gateways() {
    let Some(pg) = postgres().await else { return };
    let sim = TextSim::new("pg").start().await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = start(keys_config(&[sim.url()], dir_a.path(), Some(pg.url()))).await;
    // The second instance finds the schema migrated and leaves it.
    let b = start(keys_config(&[sim.url()], dir_b.path(), Some(pg.url()))).await;
    assert!(!dir_a.path().join("gateway.sqlite").exists(), "PostgreSQL, not SQLite");

    let (id, secret) = lifecycle(&a).await;
    // Made on one instance, the key is seen and accepted by the other.
    let (status, shown) = admin(&b, "GET", &format!("/keys/{id}"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown["key"]["name"], "alice2");
    assert_eq!(t2i_as(&b, Some(&secret), SD).await.status(), StatusCode::OK);
    let (_, other) = create(&b, json!({"name": "b", "allowed": ["llm"]})).await;
    assert_eq!(t2i_as(&a, Some(&other), SD).await.status(), StatusCode::FORBIDDEN);
    assert_eq!(t2i_as(&a, Some("lpk_nope"), SD).await.status(), StatusCode::UNAUTHORIZED);
    // The usage ledger on PostgreSQL: b's row, written by the time b has stopped, read on a.
    b.shutdown().await;
    let (status, usage) = admin(&a, "GET", &format!("/keys/{id}/usage"), None).await;
    assert_eq!(status, StatusCode::OK, "{usage}");
    assert_eq!(usage["requests"], 1, "{usage}");
    assert_eq!(usage["by_model"][0]["model"], SD, "{usage}");
    disable_and_delete(&a, &id).await;
    a.shutdown().await;
    drop(pg);
}

/// Each connection bounds how long the server makes it wait: a statement, a lock, an idle
/// transaction (a row lock held by a stalled instance held every other's reservations).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_sessions_bound_their_waits() {
    let Some(pg) = postgres().await else { return };
    let db = livepeer_gateway::database::connect(&pg.url(), 2).await.unwrap();
    for (name, value) in livepeer_gateway::database::PG_SESSION {
        let row = sqlx::query(&format!("SHOW {name}")).fetch_one(&db).await.unwrap();
        let shown: String = sqlx::Row::try_get(&row, 0).unwrap();
        assert_eq!(shown, value, "{name}");
    }
    // A lock another session holds is given up on with an error, not waited for.
    sqlx::query("CREATE TABLE held (id BIGINT PRIMARY KEY)").execute(&db).await.unwrap();
    sqlx::query("INSERT INTO held (id) VALUES (1)").execute(&db).await.unwrap();
    let mut holder = db.begin().await.unwrap();
    sqlx::query("UPDATE held SET id = 1 WHERE id = 1").execute(&mut *holder).await.unwrap();
    let waited = sqlx::query("UPDATE held SET id = 1 WHERE id = 1").execute(&db).await;
    let e = waited.unwrap_err().to_string();
    assert!(e.contains("lock timeout"), "{e}");
    holder.rollback().await.unwrap();
    drop(pg);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_served_while_postgresql_is_down_are_recorded_once_it_is_back() {
    let Some(mut pg) = postgres().await else { return };
    let sim = TextSim::new("pg-down").start().await;
    let dir = tempfile::tempdir().unwrap();
    let gw = start(keys_config(&[sim.url()], dir.path(), Some(pg.url()))).await;
    let (id, secret) = create(&gw, json!({"name": "steady"})).await;
    // Verified once, the key is cached: it keeps working while the database is away.
    assert_eq!(t2i_as(&gw, Some(&secret), SD).await.status(), StatusCode::OK);
    let mut pg = tokio::task::spawn_blocking(move || {
        pg.stop();
        pg
    })
    .await
    .unwrap();
    for _ in 0..10 {
        assert_eq!(t2i_as(&gw, Some(&secret), SD).await.status(), StatusCode::OK);
    }
    // A key it has not seen cannot be checked: the gateway's fault, 503.
    let resp = t2i_as(&gw, Some("lpk_never_seen"), SD).await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let pg = tokio::task::spawn_blocking(move || {
        pg.restart();
        pg
    })
    .await
    .unwrap();
    // The buffered rows reach the database once it is back.
    eventually(Duration::from_secs(20), "the buffered rows are written", || async {
        let (status, usage) = admin(&gw, "GET", &format!("/keys/{id}/usage"), None).await;
        status == StatusCode::OK && usage["requests"] == 11
    })
    .await;
    gw.shutdown().await;
    drop(pg);
}

/// The byte strings a [`Freezer`] freezes at, still armed: each silences the first
/// connection that sends it.
type Trigger = Arc<Mutex<Vec<Vec<u8>>>>;

/// A TCP relay to `upstream` that can be frozen: while frozen it forwards nothing either way
/// and closes nothing, as a database behind a partitioned network or a hung server is to its
/// clients (no error, no answer).
struct Freezer {
    addr: std::net::SocketAddr,
    frozen: tokio::sync::watch::Sender<bool>,
    /// Bytes at which the connection that sends them goes silent for good.
    armed: Trigger,
    task: tokio::task::JoinHandle<()>,
}

impl Freezer {
    async fn start(upstream: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (frozen, _) = tokio::sync::watch::channel(false);
        let armed = Arc::new(Mutex::new(Vec::new()));
        let (gate, trigger) = (frozen.clone(), armed.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                else {
                    continue;
                };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                // Both ways go silent together, as behind a hung server or a broken network.
                let stuck = Arc::new(std::sync::atomic::AtomicBool::new(false));
                let up = Some(trigger.clone());
                tokio::spawn(relay(cr, sw, gate.subscribe(), (stuck.clone(), up)));
                tokio::spawn(relay(sr, cw, gate.subscribe(), (stuck, None)));
            }
        });
        Self { addr, frozen, armed, task }
    }

    fn freeze(&self, on: bool) {
        self.frozen.send_replace(on);
    }

    /// Silences for good the connection of the first message sent toward the server that
    /// carries `bytes`, from that message on; the other connections go on.
    fn freeze_at(&self, bytes: &[u8]) {
        self.freeze_at_each(&[bytes]);
    }

    /// [`freeze_at`](Self::freeze_at) for each of `each`: as many connections go silent.
    fn freeze_at_each(&self, each: &[&[u8]]) {
        *self.armed.lock().unwrap() = each.iter().map(|b| b.to_vec()).collect();
    }

    /// Whether all the bytes [`freeze_at`](Self::freeze_at) waits for have been seen.
    fn triggered(&self) -> bool {
        self.armed.lock().unwrap().is_empty()
    }
}

impl Drop for Freezer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies `from` to `to`, holding each chunk while the relay is frozen. Toward the server
/// (`up`), the armed bytes make the connection `stuck`: silent for good both ways.
async fn relay(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut frozen: tokio::sync::watch::Receiver<bool>,
    (stuck, up): (Arc<std::sync::atomic::AtomicBool>, Option<Trigger>),
) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut buf = vec![0u8; 16 << 10];
    loop {
        let Ok(n) = from.read(&mut buf).await else { return };
        if let Some(armed) = &up {
            let hit = {
                let mut armed = armed.lock().unwrap();
                let found = armed.iter().position(|b| buf[..n].windows(b.len()).any(|w| w == b));
                found.map(|at| armed.remove(at)).is_some()
            };
            if hit {
                stuck.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
        if stuck.load(std::sync::atomic::Ordering::SeqCst) {
            // Open and silent: no error, no answer, ever (the server's own end of it, after
            // its idle-transaction limit, included).
            std::future::pending::<()>().await;
        }
        if n == 0 || frozen.wait_for(|f| !*f).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// `request`'s answer, which must come within a minute: far more than any of the gateway's
/// own deadlines, far less than the silence the test keeps up.
async fn answered(request: impl Future<Output = reqwest::Response>) -> reqwest::Response {
    tokio::time::timeout(Duration::from_secs(60), request)
        .await
        .expect("a request that needs the silent database is answered")
}

/// A gateway with keys on `pg` reached through a [`Freezer`], in front of a text-to-image
/// simulator named `name`: the relay, the simulator, the data directory and the gateway.
async fn behind_freezer(
    pg: &Postgres,
    name: &str,
) -> (Freezer, livepeer_sim::Sim, tempfile::TempDir, livepeer_gateway::Gateway) {
    let freezer = Freezer::start(pg.port).await;
    let url = format!("postgres://postgres@{}/postgres", freezer.addr);
    let sim = TextSim::new(name).start().await;
    let dir = tempfile::tempdir().unwrap();
    let gw = start(keys_config(&[sim.url()], dir.path(), Some(url))).await;
    (freezer, sim, dir, gw)
}

/// Asserts that `resp` is the gateway's 503 for a key database that did not answer.
async fn key_store_unavailable(resp: reqwest::Response) {
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "key_store_unavailable", "{body}");
}

/// A database that stops answering (no error, no answer) bounds what waits on it: a key
/// the gateway has not seen gets 503 rather than a request held for as long as the silence
/// lasts; a key it has cached goes on working; once the database answers again, so does
/// the gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_database_holds_no_request_for_good() {
    let Some(pg) = postgres().await else { return };
    let (freezer, _sim, _dir, gw) = behind_freezer(&pg, "pg-silent").await;
    let (_, secret) = create(&gw, json!({"name": "cached"})).await;
    assert_eq!(t2i_as(&gw, Some(&secret), SD).await.status(), StatusCode::OK);
    // Silent before a connection is taken from the pool: its check finds it out.
    freezer.freeze(true);
    key_store_unavailable(answered(t2i_as(&gw, Some("lpk_never_seen_0123456789abcdef"), SD)).await)
        .await;
    // A key the gateway has cached does not need the database.
    assert_eq!(t2i_as(&gw, Some(&secret), SD).await.status(), StatusCode::OK);
    freezer.freeze(false);
    eventually(Duration::from_secs(30), "the database heard again", || async {
        t2i_as(&gw, Some("lpk_never_seen_0123456789abcdef"), SD).await.status()
            == StatusCode::UNAUTHORIZED
    })
    .await;
    // Silent once the statement looking the key up is out (its parameter is the secret's
    // SHA-256): nothing but the gateway's own deadline ends the wait.
    let secret = "lpk_never_seen_fedcba9876543210";
    freezer.freeze_at(hex::encode(sha2::Sha256::digest(secret)).as_bytes());
    let unseen = answered(t2i_as(&gw, Some(secret), SD)).await;
    assert!(freezer.triggered(), "the lookup went through the relay");
    key_store_unavailable(unseen).await;
    // The other connections answer.
    eventually(Duration::from_secs(30), "the database heard again", || async {
        t2i_as(&gw, Some("lpk_never_seen_0123456789abcdef"), SD).await.status()
            == StatusCode::UNAUTHORIZED
    })
    .await;
    gw.shutdown().await;
    drop(pg);
}

/// A usage-ledger write on a connection that goes silent once its rows are out is given up
/// on and written again on another connection, once: the writer is not held for good, and
/// the rows are neither lost nor written twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ledger_write_the_database_never_answers_is_written_again_once() {
    let Some(pg) = postgres().await else { return };
    let (freezer, _sim, _dir, gw) = behind_freezer(&pg, "pg-ledger-silent").await;
    let (id, secret) = create(&gw, json!({"name": "ledgered"})).await;
    let requests = || async {
        let (status, usage) = admin(&gw, "GET", &format!("/keys/{id}/usage"), None).await;
        (status == StatusCode::OK).then(|| usage["requests"].as_u64().unwrap_or(0))
    };
    assert_eq!(t2i_as(&gw, Some(&secret), SD).await.status(), StatusCode::OK);
    eventually(Duration::from_secs(10), "the first row written", || async {
        requests().await == Some(1)
    })
    .await;
    // The next statement naming the key (a key without a budget or a rate limit: only its
    // ledger rows do) silences its connection.
    freezer.freeze_at(id.as_bytes());
    assert_eq!(t2i_as(&gw, Some(&secret), SD).await.status(), StatusCode::OK);
    eventually(Duration::from_secs(10), "the second row's write silenced", || async {
        freezer.triggered()
    })
    .await;
    eventually(Duration::from_secs(90), "the second row written again", || async {
        requests().await == Some(2)
    })
    .await;
    gw.shutdown().await;
    drop(pg);
}

/// Calls given up on while their server is silent free their places in the pool. sqlx pings
/// a connection given back with no bound; each abandoned call's connection then held its
/// place until the server answered, and as many such calls as the pool has places left no
/// connection for anyone. Here both places of a pool of two are taken that way, and a call
/// after them still gets a connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_given_up_on_give_their_places_in_the_pool_back() {
    use livepeer_gateway::database::{answered, connect, unanswered};
    let Some(pg) = postgres().await else { return };
    let freezer = Freezer::start(pg.port).await;
    let url = format!("postgres://postgres@{}/postgres", freezer.addr);
    let db = connect(&url, 2).await.unwrap();
    let stuck: [&[u8]; 2] = [b"stuck-one", b"stuck-two"];
    freezer.freeze_at_each(&stuck);
    let calls = stuck.map(|s| {
        let (db, sql) = (db.clone(), format!("SELECT '{}'", String::from_utf8_lossy(s)));
        async move { answered(sqlx::query(&sql).execute(&db)).await }
    });
    for given_up in futures_util::future::join_all(calls).await {
        let e = given_up.expect_err("a silent server's call is given up on");
        assert!(unanswered(&e), "{e}");
    }
    assert!(freezer.triggered(), "each call silenced its own connection");
    eventually(Duration::from_secs(30), "a call after them answered", || async {
        sqlx::query("SELECT 7").execute(&db).await.is_ok()
    })
    .await;
    drop(pg);
}
