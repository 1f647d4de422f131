//! Charging a customer key's transcoded segments (`--auth keys`), pushed or from RTMP ingest:
//! per minute of source video, or a multiple of what the orchestrator was paid for them.
//!
//! A segment's video is measured from its MPEG-TS timestamps ([`media_duration`]): a client's
//! `Content-Duration` is only a claim, and one that understates it does not lower the charge
//! (the larger of the two is charged). An MP4 push is not measured and is charged on its
//! `Content-Duration`. The charge is reserved before any orchestrator is paid; a multiple of
//! the orchestrator's price is reserved once the segment is transcoded and its fee known, so
//! a key can overspend by at most one segment's multiple.

use livepeer_pm::Ratio;

use crate::error::Error;
use crate::ingest::cutter::media_duration;
use crate::keys::Tab;

use super::{Format, Transcoded};

/// What a pushed segment's customer key owes for it: settled once the segment is transcoded
/// and before it is published, so that a segment whose charge is refused is not published.
#[derive(Debug, Clone)]
pub struct SegmentCharge {
    /// The push's tab.
    pub tab: std::sync::Arc<Tab>,
    /// The video charged, milliseconds ([`charged_ms`]).
    pub ms: u64,
}

/// The milliseconds of video a segment is charged for: the larger of what its timestamps
/// measure and what the client declared.
pub fn charged_ms(data: &[u8], format: Format, declared_ms: u32) -> u64 {
    let measured = match format {
        Format::MpegTs => media_duration(data).map_or(0, |d| d.as_millis() as u64),
        Format::Mp4 => 0,
    };
    measured.max(u64::from(declared_ms))
}

/// Reserves `ms` of video against the key's budget, before any orchestrator is paid; a price
/// that is a multiple of the orchestrator's needs something of the budget left (402 when it
/// is spent), as what it costs is known only once the orchestrator is paid.
pub async fn reserve(tab: &Tab, ms: u64) -> Result<(), Error> {
    tab.reserve_before_fee("", ms).await
}

/// The segment was transcoded: what its orchestrators were paid is recorded, and a price that
/// is a multiple of theirs is reserved on it (the difference only; 402 when the budget cannot
/// pay it, and the segment is then not charged).
pub async fn settle(tab: &Tab, ms: u64, done: &Transcoded) -> Result<(), Error> {
    settle_paid(tab, ms, &done.paid).await
}

/// [`settle`] on what the segment's orchestrators were paid: tickets, their EV and the fee.
pub async fn settle_paid(tab: &Tab, ms: u64, paid: &(u32, Ratio, Ratio)) -> Result<(), Error> {
    let (tickets, ev, fee) = paid;
    tab.paid(*tickets, ev, fee);
    tab.reserve("", ms, Some(fee)).await?;
    // Published whether its pusher waits for the answer or not: owed either way.
    tab.delivered("");
    Ok(())
}
