use super::*;
use sqlx::Row;

/// Two instances (two `Leases`, as two gateways) on one SQLite database with one key.
/// The first's rows expire after `expiry`.
async fn two_instances(
    dir: &std::path::Path,
    expiry: Duration,
) -> (Arc<Leases>, Arc<Leases>, AnyPool) {
    let url = crate::database::url(None, dir).unwrap();
    let db = super::super::db::open(&url).await.unwrap();
    super::super::db::migrate(&db).await.unwrap();
    let a = Instance::register(&db, expiry).await.unwrap();
    let expiry = Duration::from_secs(30);
    let b = Instance::register(&db, expiry).await.unwrap();
    (Arc::new(Leases::new(db.clone(), a)), Arc::new(Leases::new(db.clone(), b)), db)
}

async fn reserved(db: &AnyPool) -> (i64, i64) {
    super::super::db::spend(db, "k", 0).await.unwrap().unwrap()
}

#[tokio::test]
async fn a_lease_takes_a_quarter_of_what_is_free_at_most_and_two_instances_use_the_whole_budget() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, db) = two_instances(dir.path(), Duration::from_secs(30)).await;
    // A budget of 200, jobs of 10: the first lease wants 8 jobs, gets a quarter of 200.
    assert!(matches!(a.reserve("k", 0, 10, 200).await.unwrap(), Reserved::Held(_)));
    assert_eq!(reserved(&db).await, (0, 50));
    // Served from the lease; below half its target, it is topped up in the background, by a
    // quarter of what is free again (150 / 4).
    assert!(matches!(a.reserve("k", 0, 10, 200).await.unwrap(), Reserved::Held(_)));
    assert!([50, 87].contains(&reserved(&db).await.1));

    // Both spend the budget, turn by turn, until neither can: exactly 20 jobs fit, as the
    // end of the budget goes request by request and each refusal gives its lease back.
    let mut served = 2;
    loop {
        let mut refused = 0;
        for leases in [&a, &b] {
            match leases.reserve("k", 0, 10, 200).await.unwrap() {
                Reserved::Held(_) => served += 1,
                Reserved::Exceeded(used) => {
                    assert!(used <= 200, "{used}");
                    refused += 1;
                }
            }
        }
        if refused == 2 {
            break;
        }
        assert!(served <= 20, "over the budget: {served}");
        // Top-ups run in the background; let them.
        tokio::task::yield_now().await;
    }
    assert_eq!(served, 20);
    assert_eq!(reserved(&db).await, (0, 200));
    // What each instance holds is recorded, and adds up to what is reserved.
    let held: Vec<i64> = sqlx::query("SELECT amount FROM key_holds WHERE kind = 'budget'")
        .fetch_all(&db)
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get(0).unwrap())
        .collect();
    assert_eq!(held.iter().sum::<i64>(), 200, "{held:?}");
}

#[tokio::test]
async fn a_reaped_instance_gives_back_what_it_held_and_its_next_reservation_starts_afresh() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, db) = two_instances(dir.path(), Duration::from_millis(200)).await;
    assert!(matches!(a.reserve("k", 0, 10, 1000).await.unwrap(), Reserved::Held(_)));
    let of_a = reserved(&db).await.1;
    assert!(matches!(b.reserve("k", 0, 10, 1000).await.unwrap(), Reserved::Held(_)));
    let both = reserved(&db).await.1;
    // a renews nothing (no heartbeat runs here): past its expiry, a sweep by anyone releases
    // its lease, as after a crash.
    tokio::time::sleep(Duration::from_millis(250)).await;
    instance::sweep(&db).await.unwrap();
    assert_eq!(reserved(&db).await.1, both - of_a);
    // a was alive after all: its lease, not renewed for half its expiry, is not used; its next
    // reservation finds its row gone and starts over under a new id, with a new lease.
    let old = a.instance.id();
    assert!(matches!(a.reserve("k", 0, 10, 1000).await.unwrap(), Reserved::Held(_)));
    assert_ne!(a.instance.id(), old);
    assert!(reserved(&db).await.1 > both - of_a);
    // A slower request that found the old id reaped forgets only the old id's leases: the one
    // under the new id is held in the database and stays served from memory. (The first
    // reservation under the new id reserved just its charge; the next one leases.)
    assert!(matches!(a.reserve("k", 0, 10, 1000).await.unwrap(), Reserved::Held(_)));
    let leased = a.pools().get("k").map_or(0, |p| p.available);
    assert!(leased > 0);
    a.forget(&old);
    assert_eq!(a.pools().get("k").map_or(0, |p| p.available), leased);
    // What the instances hold adds up to what is reserved.
    let held: i64 =
        sqlx::query("SELECT COALESCE(SUM(amount), 0) FROM key_holds WHERE kind = 'budget'")
            .fetch_one(&db)
            .await
            .unwrap()
            .try_get(0)
            .unwrap();
    assert_eq!(held, reserved(&db).await.1);
}

#[tokio::test]
async fn an_idle_lease_is_given_back_and_a_job_s_unused_reservation_returns_to_the_lease() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _, db) = two_instances(dir.path(), Duration::from_secs(30)).await;
    let Reserved::Held(holder) = a.reserve("k", 0, 10, 1000).await.unwrap() else { panic!() };
    assert_eq!(reserved(&db).await.1, 80);
    // The job failed: its 10 go back to the lease, not to the database.
    a.credit("k", &holder, 0, 10);
    assert_eq!(a.pools().get("k").unwrap().available, 80);
    // Used recently: kept.
    a.give_back_idle().await;
    assert_eq!(reserved(&db).await.1, 80);
    // Unused for IDLE: given back, and what the instance holds is nothing again.
    a.pools().get_mut("k").unwrap().last_use = Instant::now() - IDLE;
    a.give_back_idle().await;
    assert_eq!(reserved(&db).await.1, 0);
    let held: i64 = sqlx::query("SELECT amount FROM key_holds WHERE kind = 'budget'")
        .fetch_one(&db)
        .await
        .unwrap()
        .try_get(0)
        .unwrap();
    assert_eq!(held, 0);
    assert!(a.pools().is_empty(), "an empty, idle lease is forgotten");
    // The heartbeat's prune deletes the empty hold; a new lease inserts it again.
    instance::prune(&db, &a.instance.id()).await.unwrap();
    let rows = || sqlx::query("SELECT COUNT(*) FROM key_holds").fetch_one(&db);
    assert_eq!(rows().await.unwrap().try_get::<i64, _>(0).unwrap(), 0);
    assert!(matches!(a.reserve("k", 0, 10, 1000).await.unwrap(), Reserved::Held(_)));
    assert_eq!(reserved(&db).await.1, 80);
    assert_eq!(rows().await.unwrap().try_get::<i64, _>(0).unwrap(), 1);
}

/// A key whose traffic ramps up before its rate is known: top-ups following each other within
/// `RAMP` double the lease, so a burst of 2,000 jobs asks the database a dozen times or so,
/// where leases of 8 jobs each took 400 trips (and, under load, made requests queue at the
/// key's gate: a third of each bench round).
#[tokio::test]
async fn a_lease_doubles_while_top_ups_follow_each_other_closely() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _, db) = two_instances(dir.path(), Duration::from_secs(30)).await;
    let budget = 1_000_000_000;
    let mut asked = 0;
    let mut last = 0;
    for _ in 0..2000 {
        assert!(matches!(a.reserve("k", 0, 10, budget).await.unwrap(), Reserved::Held(_)));
        // Top-ups run in the background; let them.
        tokio::task::yield_now().await;
        let now = reserved(&db).await.1;
        if now > last + 10 {
            asked += 1;
        }
        last = now;
    }
    let lease = a.pools().get("k").map_or(0, |p| p.available);
    assert!(asked <= 20, "{asked} leases and top-ups for 2,000 jobs");
    assert!(lease > 8 * 10 * 4, "the lease grew: {lease}");
    assert!(reserved(&db).await.1 <= budget / 4 + 2000 * 10);
}

/// A budget lowered since the lease was granted: the lease goes back to the database and the
/// next reservation leases again under the new budget, rather than spending a lease that the
/// new budget might not cover.
#[tokio::test]
async fn a_lowered_budget_gives_the_lease_back() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _, db) = two_instances(dir.path(), Duration::from_secs(30)).await;
    assert!(matches!(a.reserve("k", 0, 10, 1000).await.unwrap(), Reserved::Held(_)));
    assert_eq!(reserved(&db).await.1, 80);
    // The same budget: served from the lease, nothing new asked of the database.
    assert!(matches!(a.reserve("k", 0, 10, 1000).await.unwrap(), Reserved::Held(_)));
    assert_eq!(a.pools().get("k").unwrap().available, 60);
    // Lowered to 100: the 60 left of the lease go back; the request leases afresh, a quarter
    // of what is free of the new budget (100 − the 20 reserved by the two jobs).
    assert!(matches!(a.reserve("k", 0, 10, 100).await.unwrap(), Reserved::Held(_)));
    // In the same transaction as the new lease: nothing is left to give back later.
    assert_eq!(reserved(&db).await.1, 40);
    assert_eq!(a.pools().get("k").unwrap().available, 10);
}

/// A request whose client went away while it asked the database at the key's gate had taken
/// the lease's rest out of memory to give back with its ask: still reserved in the database
/// and in the instance's hold, in no lease, so nothing gave it back while the instance ran.
/// The ask now finishes in a task of its own, which books the answer.
#[tokio::test]
async fn a_request_dropped_at_the_database_leaves_nothing_reserved() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _, db) = two_instances(dir.path(), Duration::from_secs(30)).await;
    assert!(matches!(a.reserve("k", 0, 10, 1_000_000).await.unwrap(), Reserved::Held(_)));
    assert_eq!(reserved(&db).await, (0, 80));
    assert_eq!(a.pools().get("k").unwrap().available, 70);
    // A job dearer than the lease goes to the database, giving the 70 back with its ask; its
    // client goes away while it waits there: polled once (the ask's task is spawned), then
    // dropped. (A zero timeout is not one poll: its timer may not have fired on the first,
    // and the ask finishes in between.)
    let cut = futures_util::FutureExt::now_or_never(a.reserve("k", 0, 100, 1_000_000));
    assert!(cut.is_none(), "the reservation finished before it could be cut");
    // The ask's task books the grant into the lease, the dropped request's part included;
    // it holds the key's gate until then.
    let gate = a.pools()["k"].gate.clone();
    drop(gate.lock().await);
    let (_, held) = reserved(&db).await;
    assert_eq!(a.pools()["k"].available, held - 10, "all but the first job's 10 is leased");
    // Idle, the lease goes back: only the first job's 10 stays reserved (its tab settles it).
    a.pools().get_mut("k").unwrap().last_use = Instant::now() - IDLE;
    a.give_back_idle().await;
    assert_eq!(reserved(&db).await, (0, 10));
}

/// A grant sent to its request and dropped unread (the request went between the send and its
/// read) goes back to the lease; one the request takes does not.
#[tokio::test]
async fn a_grant_its_request_never_reads_goes_back_to_the_lease() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _, _db) = two_instances(dir.path(), Duration::from_secs(30)).await;
    assert!(matches!(a.reserve("k", 0, 10, 1_000_000).await.unwrap(), Reserved::Held(_)));
    let holder = a.pools()["k"].holder.clone();
    let available = a.pools()["k"].available;
    let delivery = |part| Delivery {
        answer: Some(Ok(Grant::Granted(50))),
        refund: Some((a.clone(), "k".to_owned(), holder.clone(), 0, part)),
    };
    assert!(matches!(delivery(25).take(), Ok(Grant::Granted(50))));
    assert_eq!(a.pools()["k"].available, available, "taken: nothing goes back");
    drop(delivery(25));
    assert_eq!(a.pools()["k"].available, available + 25, "unread: the request's part is back");
    // A refusal holds nothing to give back.
    drop(Delivery {
        answer: Some(Ok(Grant::Exceeded(7))),
        refund: Some((a.clone(), "k".to_owned(), holder.clone(), 0, 25)),
    });
    assert_eq!(a.pools()["k"].available, available + 25);
}

/// Concurrent requests of one key wait at its gate; one served there from the lease could
/// mark a top-up as under way and drop it, after which the lease was never topped up nor
/// given back when idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_served_at_the_gate_leave_no_top_up_marked_for_good() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _, db) = two_instances(dir.path(), Duration::from_secs(30)).await;
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let a = a.clone();
            tokio::spawn(async move { a.reserve("k", 0, 10, 1_000_000_000).await })
        })
        .collect();
    for t in tasks {
        assert!(matches!(t.await.unwrap().unwrap(), Reserved::Held(_)));
    }
    // Any top-up started ends, clearing its mark.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while a.pools()["k"].refilling {
        assert!(tokio::time::Instant::now() < deadline, "a top-up stays marked");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Idle, the lease goes back: only the six jobs' 60 stay reserved.
    a.pools().get_mut("k").unwrap().last_use = Instant::now() - IDLE;
    a.give_back_idle().await;
    assert_eq!(reserved(&db).await, (0, 60));
}
