//! A segment's way through orchestrators (GATEWAY.md §5.2, §5.7): the stream's kept
//! orchestrator first while its latency score (transcode time / max(1.5 s, segment time)) is at
//! most 1, else the pool's choice; on a retryable failure another orchestrator, up to
//! `--max-attempts` in all. Breakers and penalties are the transcoding job key's only
//! ([`Lease::failed_job`]); an input error no orchestrator can cure penalises nobody and stops.

use std::time::Duration;

use tokio::time::Instant;

use super::attempt::{AttemptError, Attempter, Done, Job};
use super::streams::Stream;
use crate::job::JobKey;
use crate::metrics::Metrics;
use crate::orchestrator::{Lease, Pool};

/// How a segment ended without renditions.
#[derive(Debug, Clone)]
pub(super) enum Failed {
    /// No orchestrator could be selected at all.
    NoSessions,
    /// The gateway's own shortage ended the segment: no other orchestrator is tried.
    Gateway(String),
    /// Every attempt failed (`final_`: go-livepeer's non-retryable or max attempts).
    Error {
        /// The last error.
        message: String,
        /// Whether it is final.
        final_: bool,
    },
}

/// Shared parts the retry loop needs.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ctx<'a> {
    /// The orchestrators.
    pub(super) pool: &'a Pool,
    /// One attempt's clients.
    pub(super) attempter: &'a Attempter,
    /// Metrics.
    pub(super) metrics: &'a Metrics,
    /// Attempts at most.
    pub(super) max_attempts: u32,
    /// When the segment reached the gateway: its overall latency (go-livepeer's, from the
    /// segment's emergence) counts from here, waits and failed attempts included.
    pub(super) emerged: Instant,
}

/// The latency score's floor on segment time (go-livepeer's 1.5 s).
const SCORE_FLOOR: Duration = Duration::from_millis(1500);

/// Transcodes `job` for `stream`, retrying on other orchestrators.
pub(super) async fn transcode(ctx: Ctx<'_>, stream: &Stream, job: &Job) -> Result<Done, Failed> {
    let key = JobKey::transcode();
    // Only orchestrators offering what this segment needs are picked (go-livepeer selects
    // by the stream's job capabilities); one lacking a capability it does not need is.
    let needs = job.capabilities();
    let mut tried: Vec<String> = Vec::new();
    let mut last: Option<AttemptError> = None;
    let mut paid = super::attempt::Cost::default();
    for attempt in 0..ctx.max_attempts.max(1) {
        let Some(lease) = pick(ctx.pool, stream, needs, &tried) else {
            break;
        };
        if attempt > 0 {
            stream.count(|c| c.retries += 1);
            ctx.metrics.transcode_retried(attempt + 1);
        }
        let url = lease.url().clone();
        tried.push(url.to_string());
        let Some(info) = lease.info().cloned() else { continue };
        let started = Instant::now();
        stream.used(url.as_str());
        let (result, cost) = ctx.attempter.run(&url, &info, job).await;
        stream.spend(&cost);
        ctx.metrics.paid(url.as_str(), &key, cost.tickets, &cost.ev_sent, &cost.fee);
        paid.add(&cost);
        match result {
            Ok(mut done) => {
                done.paid = paid;
                let took = started.elapsed();
                let per = Duration::from_millis(u64::from(job.duration_ms)).max(SCORE_FLOOR);
                let score = (took.as_millis() * 1000 / per.as_millis().max(1)) as u64;
                lease.succeeded();
                stream.refused_again(url.as_str(), false);
                if stream.keep(url.as_str(), score) {
                    ctx.metrics.orchestrator_swap();
                }
                ctx.metrics.segment_transcoded(&info.transcoder, ctx.emerged.elapsed());
                return Ok(done);
            }
            Err(e) => {
                ctx.metrics.transcode_failed(e.code());
                // Orchestrator text may be in it, and `%` logs it as it is: one line only.
                let message = crate::orchestrator::text::one_line(&e.to_string());
                tracing::info!(orchestrator = %url, seq = job.seq, manifest = %job.manifest, error = %message, "segment attempt failed");
                stream.count(|c| {
                    c.failed_attempts += 1;
                    c.last_error = Some(message.clone());
                });
                let again = stream.refused_again(url.as_str(), e.spared_refusal());
                end_lease(lease, &e, again);
                forget_sticky(stream, url.as_str());
                if e.is_gateways() {
                    return Err(Failed::Gateway(message));
                }
                if !e.retryable() {
                    return Err(Failed::Error { message, final_: true });
                }
                last = Some(e);
            }
        }
    }
    match last {
        None => {
            // go-livepeer's code when a segment finds no session at all.
            ctx.metrics.transcode_failed("NoOrchestrators");
            Err(Failed::NoSessions)
        }
        Some(e) if tried.len() as u32 >= ctx.max_attempts => {
            ctx.metrics.transcode_failed("MaxAttempts");
            Err(Failed::Error { message: format!("hit max transcode attempts: {e}"), final_: true })
        }
        // Every orchestrator that could be had failed before the attempts ran out: go-livepeer
        // then finds no session for the next attempt and answers 503 "No sessions available"
        // (server/broadcast.go `processSegment`; only `maxTranscodeAttempts` is its 422). The
        // attempts' errors are in the log lines above.
        Some(_) => {
            ctx.metrics.transcode_failed("NoOrchestrators");
            Err(Failed::NoSessions)
        }
    }
}

/// Ends the lease of an attempt that failed with `e`: penalised as `e` says, or when it is a
/// refusal that spares the orchestrator but came `again`.
fn end_lease(lease: Lease, e: &AttemptError, again: bool) {
    if e.penalise() || again {
        lease.failed_job(e.to_string());
    } else {
        lease.client_error();
    }
}

/// A failed orchestrator is kept no longer (it stays named, so that moving to another counts
/// as a swap).
fn forget_sticky(stream: &Stream, url: &str) {
    if let Ok(mut s) = stream.sticky.lock()
        && let Some(kept) = s.as_mut().filter(|k| k.url == url)
    {
        kept.score_milli = u64::MAX;
    }
}

/// The stream's kept orchestrator while it keeps up (and this segment has not tried it, and it
/// offers what the segment `needs`), else the pool's choice among those not tried.
fn pick(pool: &Pool, stream: &Stream, needs: u64, tried: &[String]) -> Option<Lease> {
    let tried_refs: Vec<&str> = tried.iter().map(String::as_str).collect();
    if let Some(kept) = stream.sticky().filter(|k| k.score_milli <= 1000)
        && !tried.contains(&kept.url)
    {
        let snapshot = pool.snapshot();
        let others: Vec<&str> =
            snapshot.slots.iter().map(|s| s.url.as_str()).filter(|u| *u != kept.url).collect();
        if let Ok(lease) = pool.select_transcode(&others, needs) {
            return Some(lease);
        }
    }
    pool.select_transcode(&tried_refs, needs).ok()
}
