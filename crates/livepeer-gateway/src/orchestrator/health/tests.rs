use super::*;

fn key(cap: u32, model: &str) -> JobKey {
    JobKey { capability: cap, model: model.into() }
}

#[test]
fn cooldown_grows_then_probe_closes_the_breaker() {
    let s = Breaker::default();
    let p = EjectPolicy { base: Duration::from_secs(1), max: Duration::from_secs(5) };
    assert_eq!(s.state(0), HealthState::Healthy);
    s.record_failure(1000, &p, "boom".into());
    assert_eq!(s.state(1999), HealthState::Ejected);
    assert_eq!(s.state(2000), HealthState::ProbeDue);
    assert!(s.try_begin_probe(2000));
    assert!(!s.try_begin_probe(2000), "only one probe at a time");
    assert_eq!(s.state(2000), HealthState::Ejected);
    s.record_failure(2000, &p, "again".into());
    assert_eq!(s.cooldown_left_ms(2000), 2000, "second failure doubles the cooldown");
    for _ in 0..10 {
        s.record_failure(10_000, &p, "x".into());
    }
    assert_eq!(s.cooldown_left_ms(10_000), 5000, "capped at max");
    assert!(s.try_begin_probe(15_000));
    s.record_success();
    assert_eq!(s.state(15_000), HealthState::Healthy);
    assert_eq!(s.failures(), 0);
    assert_eq!(s.last_error().unwrap().message, "x");
}

#[test]
fn a_kept_error_is_cut_short_and_on_one_line() {
    let o = OrchStats::default();
    let p = EjectPolicy::default();
    // 64 KiB of an orchestrator's error body, passed on whole by a caller.
    let body = format!("runner failed\nlevel=INFO fake=line\r\n{}", "é".repeat(64 << 10));
    o.breaker.record_failure(1, &p, body.clone());
    let kept = o.breaker.last_error().unwrap().message;
    assert_eq!(kept.chars().count(), super::super::text::MAX_CHARS);
    assert!(kept.starts_with("runner failed level=INFO fake=line  é"), "{kept:?}");
    o.note_job_error(2, body);
    let kept = o.last_error().unwrap().message;
    assert_eq!(kept.chars().count(), super::super::text::MAX_CHARS);
    assert!(!kept.contains(['\n', '\r']));
}

#[test]
fn ewma_and_in_flight() {
    let s = Load::default();
    s.observe_latency(Duration::from_millis(8));
    assert_eq!(s.latency_us(), 8000);
    s.observe_latency(Duration::from_millis(16));
    assert_eq!(s.latency_us(), 11_000);
    s.begin_request();
    s.end_request();
    s.end_request();
    assert_eq!(s.in_flight(), 0);
}

#[test]
fn a_place_is_taken_only_while_there_is_room() {
    let s = Load::default();
    assert!(s.try_begin_request(2) && s.try_begin_request(2));
    assert!(!s.try_begin_request(2), "full");
    s.end_request();
    assert!(s.try_begin_request(2), "a place freed is taken again");
    assert!((0..100).all(|_| s.try_begin_request(0)), "0: no limit");
    // Many threads at once take exactly the places there are.
    let s = Load::default();
    let taken = std::sync::atomic::AtomicU32::new(0);
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| {
                for _ in 0..1_000 {
                    if s.try_begin_request(5) {
                        taken.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            });
        }
    });
    assert_eq!((taken.into_inner(), s.in_flight()), (5, 5));
}

#[test]
fn a_job_key_failure_is_that_keys_alone_but_shows_in_the_summary() {
    let o = OrchStats::default();
    let p = EjectPolicy::default();
    let (t2i, llm) = (o.job(&key(27, "sd")), o.job(&key(33, "llama")));
    assert!(Arc::ptr_eq(&t2i, &o.job(&key(27, "sd"))), "one entry per key");
    t2i.breaker.record_failure(10, &p, "HTTP 500".into());
    assert_eq!(t2i.breaker.state(11), HealthState::Ejected);
    assert_eq!(llm.breaker.state(11), HealthState::Healthy);
    assert_eq!(o.breaker.state(11), HealthState::Healthy, "the orchestrator itself is fine");
    assert_eq!(o.state(11), HealthState::Ejected, "operators see it ejected for something");
    let report = o.jobs(11);
    assert_eq!(report.len(), 2);
    assert_eq!(report[0].job, "text-to-image/sd");
    assert_eq!(report[0].state, HealthState::Ejected);
    assert_eq!(report[1].state, HealthState::Healthy);
    t2i.breaker.record_success();
    assert_eq!(o.state(11), HealthState::Healthy);
}

#[test]
fn the_job_table_is_bounded_and_follows_the_offer() {
    let o = OrchStats::default();
    let many: Vec<Arc<JobStats>> =
        (0..MAX_JOBS + 50).map(|i| o.job(&key(27, &format!("m{i}")))).collect();
    assert_eq!(o.jobs(0).len(), MAX_JOBS + 1, "the bound, plus one shared entry");
    assert!(Arc::ptr_eq(&many[MAX_JOBS], &many[MAX_JOBS + 49]), "the rest share one");
    assert_eq!(many[MAX_JOBS].label, "other");
    // No longer offered: forgotten, unless something is still in flight.
    many[3].load.begin_request();
    o.retain_jobs(|k| k.model == "m1");
    let left: Vec<String> = o.jobs(0).into_iter().map(|r| r.job).collect();
    assert_eq!(left, ["text-to-image/m1", "text-to-image/m3", "other"]);
}
