//! Cutting a continuous MPEG-TS byte stream into segments that each start on a video
//! keyframe, about `segment length` apart, as go-livepeer's segmenter does for RTMP ingest.
//!
//! ffmpeg remuxes the published stream into one MPEG-TS stream (see `segmenter`); this reads
//! it packet by packet. A keyframe is a video PES start (stream id 0xE0–0xEF) whose packet
//! carries the random-access indicator, which ffmpeg's muxer sets on key packets. Each segment
//! begins with the latest PAT and PMT, so that it decodes on its own. Durations come from the
//! keyframes' presentation timestamps, not from the wall clock, so a stream published faster
//! than real time is cut the same way. A keyframe whose timestamp jumped past the longest
//! segment either way is a discontinuity: the segment before it is timed by its own frames,
//! so no segment lasts more than that longest segment and one frame.
//!
//! Written here rather than taken from a crate: the cut needs only the TS header, the
//! adaptation flags, the PAT and a PES timestamp, a few dozen lines, where ffmpeg's own segment
//! muxer would not report a finished segment until the stream ends (its list is buffered when
//! written to a pipe).

use std::time::Duration;

use bytes::Bytes;

/// A TS packet's size.
const PACKET: usize = 188;
/// The PTS clock.
const HZ: u64 = 90_000;
/// PTS values wrap at 2^33.
const PTS_MASK: u64 = (1 << 33) - 1;

/// One cut segment.
#[derive(Debug, Clone)]
pub struct Cut {
    /// The segment's number in its stream, from 0.
    pub seq: u64,
    /// The MPEG-TS bytes, starting with a PAT, a PMT and a keyframe.
    pub data: Bytes,
    /// Its media duration.
    pub duration: Duration,
}

/// Why the stream cannot be cut.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CutError {
    /// No keyframe came within the longest segment allowed.
    #[error(
        "no keyframe within {0:?} of media: ensure the keyframe interval is less than \
         {0:?}"
    )]
    NoKeyframe(Duration),
    /// A segment grew past the byte cap before the next keyframe.
    #[error("a segment exceeded {0} bytes before the next keyframe")]
    TooLarge(usize),
    /// The bytes are not MPEG-TS.
    #[error("the stream lost MPEG-TS sync")]
    Sync,
}

/// The cutter's limits.
#[derive(Debug, Clone, Copy)]
pub struct CutLimits {
    /// The target segment length: a segment ends at the first keyframe after it.
    pub length: Duration,
    /// The longest media time without a keyframe.
    pub max_duration: Duration,
    /// The most bytes of one segment.
    pub max_bytes: usize,
}

/// Cuts one stream. Feed it chunks in order; it carries partial packets over.
#[derive(Debug)]
pub struct Cutter {
    limits: CutLimits,
    carry: Vec<u8>,
    pat: Option<[u8; PACKET]>,
    pmt_pid: Option<u16>,
    pmt: Option<[u8; PACKET]>,
    current: Vec<u8>,
    start_pts: Option<u64>,
    /// The furthest frame from the start of the current segment, in ticks.
    span: u64,
    last_pts: Option<u64>,
    last_step: u64,
    seq: u64,
}

impl Cutter {
    /// A cutter with `limits`.
    pub fn new(limits: CutLimits) -> Self {
        Self {
            limits,
            carry: Vec::new(),
            pat: None,
            pmt_pid: None,
            pmt: None,
            current: Vec::new(),
            start_pts: None,
            span: 0,
            last_pts: None,
            last_step: 0,
            seq: 0,
        }
    }

    /// Reads `chunk`; returns the segments it completed.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<Cut>, CutError> {
        let mut out = Vec::new();
        let mut rest = chunk;
        if !self.carry.is_empty() {
            let need = PACKET - self.carry.len();
            let take = need.min(rest.len());
            self.carry.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.carry.len() < PACKET {
                return Ok(out);
            }
            let packet: [u8; PACKET] =
                std::mem::take(&mut self.carry).try_into().map_err(|_| CutError::Sync)?;
            self.packet(&packet, &mut out)?;
        }
        let mut packets = rest.chunks_exact(PACKET);
        for p in &mut packets {
            let packet: &[u8; PACKET] = p.try_into().map_err(|_| CutError::Sync)?;
            self.packet(packet, &mut out)?;
        }
        self.carry.extend_from_slice(packets.remainder());
        Ok(out)
    }

    /// Ends the stream: the segment in progress, if it holds a keyframe.
    pub fn finish(&mut self) -> Option<Cut> {
        self.start_pts?;
        let ticks = self.span + self.last_step;
        self.take(ticks)
    }

    fn packet(&mut self, p: &[u8; PACKET], out: &mut Vec<Cut>) -> Result<(), CutError> {
        if p[0] != 0x47 {
            return Err(CutError::Sync);
        }
        let pusi = p[1] & 0x40 != 0;
        let pid = (u16::from(p[1] & 0x1f) << 8) | u16::from(p[2]);
        let (random_access, payload) = split_packet(p);
        if pid == 0 && pusi {
            self.pat = Some(*p);
            self.pmt_pid = pat_pmt_pid(payload).or(self.pmt_pid);
            return Ok(());
        }
        if Some(pid) == self.pmt_pid && pusi {
            self.pmt = Some(*p);
            return Ok(());
        }
        let video_pts = if pusi { video_pes_pts(payload) } else { None };
        if let Some(pts) = video_pts {
            self.video_frame(pts, random_access, out)?;
        }
        if self.start_pts.is_some() {
            if self.current.len() + PACKET > self.limits.max_bytes {
                return Err(CutError::TooLarge(self.limits.max_bytes));
            }
            self.current.extend_from_slice(p);
        }
        Ok(())
    }

    /// A video frame starts at `pts`: cut before it when it is a keyframe far enough on.
    fn video_frame(
        &mut self,
        pts: u64,
        keyframe: bool,
        out: &mut Vec<Cut>,
    ) -> Result<(), CutError> {
        if let Some(last) = self.last_pts {
            let step = pts_delta(last, pts);
            // Frames may come out of presentation order (B-frames); keep a forward step.
            if step > 0 && step < HZ {
                self.last_step = step;
            }
        }
        self.last_pts = Some(pts);
        let Some(start) = self.start_pts else {
            if keyframe {
                self.begin(pts);
            }
            return Ok(());
        };
        let elapsed = pts_delta(start, pts);
        // Half the clock's range ahead at most; beyond, the clock went back.
        let forward = elapsed < PTS_MASK / 2;
        let in_reach = forward && elapsed <= ticks(self.limits.max_duration);
        if keyframe && !in_reach {
            // A discontinuity (an encoder restarted, a source switched, the clock went back):
            // the segment ends with its last frame, timed by the frames before the jump.
            // Timed by the jump instead, one segment of a few seconds lasted hours, which its
            // fee estimate, its deadlines, its playlist entry and a key's charge all trusted.
            let ticks = self.span + self.last_step;
            if let Some(cut) = self.take(ticks) {
                out.push(cut);
            }
            self.begin(pts);
            return Ok(());
        }
        if forward {
            self.span = self.span.max(elapsed);
        }
        if keyframe && elapsed >= ticks(self.limits.length) {
            if let Some(cut) = self.take(elapsed) {
                out.push(cut);
            }
            self.begin(pts);
        } else if forward && !in_reach {
            return Err(CutError::NoKeyframe(self.limits.max_duration));
        }
        Ok(())
    }

    fn begin(&mut self, pts: u64) {
        self.start_pts = Some(pts);
        self.span = 0;
        self.current.clear();
        for table in [self.pat, self.pmt].into_iter().flatten() {
            self.current.extend_from_slice(&table);
        }
    }

    fn take(&mut self, ticks: u64) -> Option<Cut> {
        self.start_pts.take()?;
        let data = Bytes::from(std::mem::take(&mut self.current));
        let seq = self.seq;
        self.seq += 1;
        Some(Cut { seq, data, duration: Duration::from_micros(ticks * 1_000_000 / HZ) })
    }
}

/// The longest gap between consecutive frames that counts as video (1 s of the 90 kHz clock).
const MAX_FRAME_GAP: u32 = 90_000;

/// The media duration of an MPEG-TS segment, measured from its video frames' presentation
/// timestamps: from the earliest to the latest, plus one frame's duration (the smallest step
/// between them), on the wrapping 33-bit clock. What a customer's segment is charged on, so
/// that a client cannot understate it in `Content-Duration`. `None` when the bytes are not
/// whole TS packets or hold no video frame with a timestamp.
pub fn media_duration(data: &[u8]) -> Option<Duration> {
    if !data.len().is_multiple_of(PACKET) {
        return None;
    }
    let mut first: Option<u64> = None;
    // Offsets from the first frame, signed: B-frames may present before the frame sent first.
    let mut offsets: Vec<i64> = Vec::new();
    for p in data.chunks_exact(PACKET) {
        let packet: &[u8; PACKET] = p.try_into().ok()?;
        if packet[0] != 0x47 {
            return None;
        }
        if packet[1] & 0x40 == 0 {
            continue;
        }
        let Some(pts) = video_pes_pts(split_packet(packet).1) else { continue };
        let start = *first.get_or_insert(pts);
        let forward = pts_delta(start, pts);
        // Half the clock's range either way: a frame before the first one wrapped round.
        let offset = if forward <= PTS_MASK / 2 {
            i64::try_from(forward).ok()?
        } else {
            -i64::try_from(pts_delta(pts, start)).ok()?
        };
        offsets.push(offset);
    }
    if offsets.is_empty() {
        return None;
    }
    offsets.sort_unstable();
    offsets.dedup();
    let frame = offsets.windows(2).map(|w| w[1] - w[0]).min().unwrap_or(0);
    // A gap of more than a second between frames presented one after the other is a
    // discontinuity (a splice, an encoder restart), not video: it counts one frame, so a
    // timestamp jump cannot make a 2 s segment charged as hours.
    let span: i64 = offsets
        .windows(2)
        .map(|w| w[1] - w[0])
        .map(|gap| if gap > i64::from(MAX_FRAME_GAP) { frame } else { gap })
        .sum();
    let ticks = u64::try_from(span + frame).ok()?;
    Some(Duration::from_micros(ticks.saturating_mul(1_000_000) / HZ))
}

/// Ticks of the 90 kHz clock in `d`.
fn ticks(d: Duration) -> u64 {
    u64::try_from(d.as_micros() * u128::from(HZ) / 1_000_000).unwrap_or(u64::MAX)
}

/// `to − from` on the wrapping 33-bit PTS clock.
fn pts_delta(from: u64, to: u64) -> u64 {
    to.wrapping_sub(from) & PTS_MASK
}

/// The random-access indicator and the payload of a packet.
pub(crate) fn split_packet(p: &[u8; PACKET]) -> (bool, &[u8]) {
    let control = (p[3] >> 4) & 0x3;
    let mut start = 4;
    let mut random_access = false;
    if control & 0x2 != 0 {
        let len = usize::from(p[4]);
        if len > 0 {
            random_access = p[5] & 0x40 != 0;
        }
        start = (5 + len).min(PACKET);
    }
    if control & 0x1 == 0 {
        return (random_access, &[]);
    }
    (random_access, &p[start..])
}

/// The PMT's PID from a PAT section's first program (ffmpeg writes one program).
pub(crate) fn pat_pmt_pid(payload: &[u8]) -> Option<u16> {
    let pointer = usize::from(*payload.first()?);
    let section = payload.get(1 + pointer..)?;
    if *section.first()? != 0x00 {
        return None;
    }
    // table header (8 bytes), then 4-byte entries of program number and PID.
    let mut entries = section.get(8..)?.chunks_exact(4);
    entries.find_map(|e| {
        let program = u16::from_be_bytes([e[0], e[1]]);
        (program != 0).then(|| (u16::from(e[2] & 0x1f) << 8) | u16::from(e[3]))
    })
}

/// The PTS of a video PES header at the start of `payload`.
fn video_pes_pts(payload: &[u8]) -> Option<u64> {
    let h = payload.get(..14)?;
    if h[..3] != [0, 0, 1] || !(0xE0..=0xEF).contains(&h[3]) || h[7] & 0x80 == 0 {
        return None;
    }
    let b = |i: usize| u64::from(h[i]);
    Some(((b(9) >> 1) & 0x7) << 30 | b(10) << 22 | (b(11) >> 1) << 15 | b(12) << 7 | b(13) >> 1)
}

#[cfg(test)]
mod tests;
