use super::*;

fn failure(id: &str, at_ms: i64) -> Failure {
    Failure {
        id: id.into(),
        at_ms,
        kind: "ai",
        pipeline: "text-to-image".into(),
        model: "m".into(),
        outcome: "failed".into(),
        latency_ms: 5,
        attempts: vec![
            Attempt {
                orchestrator: "https://a".into(),
                latency_ms: 1,
                error: Some("x".repeat(5000))
            };
            20
        ],
        error: None,
    }
}

#[test]
fn failures_are_bounded_newest_first_and_cut() {
    let r = Recent::default();
    for i in 0..(MAX_FAILURES + 7) {
        r.failed(failure(&format!("r{i}"), 1_000 + i as i64));
    }
    let kept = r.failures();
    assert_eq!(kept.len(), MAX_FAILURES);
    assert_eq!(kept[0].id, format!("r{}", MAX_FAILURES + 6));
    assert_eq!(kept[0].attempts.len(), MAX_ATTEMPTS);
    let error = kept[0].attempts[0].error.as_deref().unwrap();
    assert!(error.len() <= MAX_TEXT + '…'.len_utf8(), "{}", error.len());
}

#[test]
fn buckets_count_requests_latency_and_exact_spend() {
    let r = Recent::default();
    for l in 1..=100 {
        r.succeeded("llm/m", l, 20_000);
    }
    r.failed(failure("f", 25_000));
    r.paid(2, &"1/3".parse().unwrap(), &Ratio::from_u64(7), 21_000);
    r.paid(1, &"2/3".parse().unwrap(), &Ratio::from_u64(5), 29_999);
    r.succeeded("llm/m", 9, 30_000);
    let s = r.series();
    assert_eq!(s.len(), 2);
    assert_eq!((s[0].start_ms, s[0].requests, s[0].failures), (20_000, 101, 1));
    assert_eq!((s[0].p50_ms, s[0].p95_ms), (Some(50), Some(95)));
    assert_eq!((s[0].tickets, s[0].ev_wei.as_str(), s[0].fee_wei.as_str()), (3, "1", "12"));
    assert_eq!(s[1].start_ms, 30_000);
}

#[test]
fn buckets_and_samples_are_bounded() {
    let r = Recent::default();
    for i in 0..(MAX_BUCKETS as i64 + 20) {
        for _ in 0..(SAMPLES_PER_BUCKET + 3) {
            r.succeeded("j", 1, i * BUCKET_MS);
        }
    }
    let s = r.series();
    assert_eq!(s.len(), MAX_BUCKETS);
    assert_eq!(s[0].start_ms, 20 * BUCKET_MS);
    assert_eq!(s[0].requests, SAMPLES_PER_BUCKET as u64 + 3);
    assert_eq!(r.lock().jobs["j"].len(), SAMPLES_PER_JOB);
    for j in 0..(MAX_JOBS + 5) {
        r.succeeded(&format!("job{j}"), 1, 1);
    }
    assert!(r.lock().jobs.len() <= MAX_JOBS);
}

#[test]
fn latency_looks_only_at_the_window() {
    let r = Recent::default();
    r.succeeded("llm/m", 1_000, 0);
    for l in [10, 20, 30, 40] {
        r.succeeded("llm/m", l, LATENCY_WINDOW_MS + 5);
    }
    let now = LATENCY_WINDOW_MS + 10;
    assert_eq!(r.latency("llm/m", now), Some(Latency { samples: 4, p50_ms: 20, p95_ms: 40 }));
    assert_eq!(r.latency("other", now), None);
    assert_eq!(r.latency("llm/m", now + LATENCY_WINDOW_MS), None);
}

/// A job id longer than [`MAX_TEXT`] is kept cut, and found again by its whole id: its
/// latency shows, and its requests do not evict other jobs' samples.
#[test]
fn a_long_job_id_finds_its_own_samples() {
    let r = Recent::default();
    let long = format!("llm/{}", "m".repeat(2 * MAX_TEXT));
    for j in 0..(MAX_JOBS - 1) {
        r.succeeded(&format!("job{j}"), 1, 1);
    }
    for l in [10, 20, 30] {
        r.succeeded(&long, l, 2);
    }
    let latency = r.latency(&long, 3);
    assert_eq!(latency, Some(Latency { samples: 3, p50_ms: 20, p95_ms: 30 }));
    let inner = r.lock();
    assert_eq!(inner.jobs.len(), MAX_JOBS, "no job was evicted");
    assert!(inner.jobs.contains_key("job0"));
    assert!(inner.jobs.keys().all(|k| k.len() <= MAX_TEXT + '…'.len_utf8()));
}
