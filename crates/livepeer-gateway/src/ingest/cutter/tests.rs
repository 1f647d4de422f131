//! The cutter on hand-made packets: where it cuts, what each segment starts with, how long
//! each one is, and its limits.

use super::*;

const PMT_PID: u16 = 0x1000;
const VIDEO_PID: u16 = 0x100;

fn packet(pid: u16, pusi: bool, random_access: bool, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x47, (pid >> 8) as u8 | if pusi { 0x40 } else { 0 }, pid as u8];
    // Adaptation field (with the flag byte) then payload; stuffing fills the rest.
    let room = PACKET - 4 - 2;
    assert!(payload.len() <= room);
    p.push(0x30);
    let af_len = 1 + (room - payload.len());
    p.push(af_len as u8);
    p.push(if random_access { 0x40 } else { 0 });
    p.resize(p.len() + af_len - 1, 0xff);
    p.extend_from_slice(payload);
    assert_eq!(p.len(), PACKET);
    p
}

fn pat() -> Vec<u8> {
    let mut s = vec![0, 0x00, 0xb0, 13, 0, 1, 0xc1, 0, 0];
    s.extend_from_slice(&[0, 1, 0xe0 | (PMT_PID >> 8) as u8, PMT_PID as u8]);
    s.extend_from_slice(&[0, 0, 0, 0]);
    packet(0, true, false, &s)
}

fn pmt() -> Vec<u8> {
    packet(PMT_PID, true, false, &[0, 0x02, 0xb0, 0x12])
}

fn frame(pts: u64, key: bool) -> Vec<u8> {
    let mut h = vec![0, 0, 1, 0xe0, 0, 0, 0x80, 0x80, 5];
    h.push(0x21 | (((pts >> 30) & 7) as u8) << 1);
    h.push((pts >> 22) as u8);
    h.push(((pts >> 14) as u8) | 1);
    h.push((pts >> 7) as u8);
    h.push(((pts << 1) as u8) | 1);
    packet(VIDEO_PID, true, key, &h)
}

fn limits() -> CutLimits {
    CutLimits {
        length: Duration::from_secs(2),
        max_duration: Duration::from_secs(8),
        max_bytes: 1 << 20,
    }
}

/// 30 fps frames from `first` for `seconds`, a keyframe every `gop` frames.
fn stream(first: u64, seconds: u64, gop: u64) -> Vec<u8> {
    let mut out = pat();
    out.extend(pmt());
    for i in 0..seconds * 30 {
        out.extend(frame((first + i * 3000) & PTS_MASK, i % gop == 0));
    }
    out
}

#[test]
fn cuts_at_the_first_keyframe_after_the_length_and_times_by_pts() {
    let mut c = Cutter::new(limits());
    let mut cuts = c.feed(&stream(0, 7, 30)).unwrap();
    cuts.extend(c.finish());
    let secs: Vec<u128> = cuts.iter().map(|c| c.duration.as_millis()).collect();
    assert_eq!(secs, [2000, 2000, 2000, 1000]);
    assert_eq!(cuts.iter().map(|c| c.seq).collect::<Vec<_>>(), [0, 1, 2, 3]);
    for cut in &cuts {
        // PAT, PMT, then a keyframe.
        assert_eq!(&cut.data[..PACKET], &pat()[..]);
        assert_eq!(&cut.data[PACKET..2 * PACKET], &pmt()[..]);
        let (key, _) = split_packet(cut.data[2 * PACKET..3 * PACKET].try_into().unwrap());
        assert!(key);
    }
}

#[test]
fn a_long_gop_makes_longer_segments_and_chunk_boundaries_do_not_matter() {
    let bytes = stream(1000, 9, 90);
    let mut whole = Cutter::new(limits());
    let a: Vec<_> = whole.feed(&bytes).unwrap().into_iter().chain(whole.finish()).collect();
    let mut pieces = Cutter::new(limits());
    let mut b = Vec::new();
    for chunk in bytes.chunks(1000) {
        b.extend(pieces.feed(chunk).unwrap());
    }
    b.extend(pieces.finish());
    assert_eq!(a.iter().map(|c| c.duration.as_millis()).collect::<Vec<_>>(), [3000, 3000, 3000]);
    assert_eq!(
        a.iter().map(|c| c.data.clone()).collect::<Vec<_>>(),
        b.iter().map(|c| c.data.clone()).collect::<Vec<_>>()
    );
}

#[test]
fn durations_survive_the_pts_wrap() {
    let first = PTS_MASK - 3000 * 40;
    let mut c = Cutter::new(limits());
    let cuts = c.feed(&stream(first, 5, 30)).unwrap();
    assert_eq!(cuts.iter().map(|c| c.duration.as_millis()).collect::<Vec<_>>(), [2000, 2000]);
}

#[test]
fn frames_before_the_first_keyframe_are_dropped() {
    let mut bytes = pat();
    bytes.extend(pmt());
    bytes.extend(frame(0, false));
    bytes.extend(frame(3000, true));
    let mut c = Cutter::new(limits());
    assert!(c.feed(&bytes).unwrap().is_empty());
    let cut = c.finish().unwrap();
    assert_eq!(cut.data.len(), 3 * PACKET);
    assert_eq!(cut.duration.as_millis(), 33);
}

#[test]
fn a_keyframe_after_a_timestamp_jump_either_way_ends_the_segment_timed_by_its_frames() {
    let hour = 90_000 * 3600;
    for jump in [hour * 10, PTS_MASK + 1 - hour] {
        // 1 s before the jump, then 3 s after it; a keyframe every second.
        let mut bytes = stream(0, 1, 30);
        for i in 0..90 {
            bytes.extend(frame((jump + 90_000 + i * 3000) & PTS_MASK, i % 30 == 0));
        }
        let mut c = Cutter::new(limits());
        let cuts: Vec<_> = c.feed(&bytes).unwrap().into_iter().chain(c.finish()).collect();
        let ms: Vec<u128> = cuts.iter().map(|c| c.duration.as_millis()).collect();
        assert_eq!(ms, [1000, 2000, 1000], "jump of {jump} ticks");
    }
}

#[test]
fn no_keyframe_within_the_longest_duration_is_an_error() {
    let mut c = Cutter::new(limits());
    assert_eq!(
        c.feed(&stream(0, 10, 300)).unwrap_err(),
        CutError::NoKeyframe(Duration::from_secs(8))
    );
}

#[test]
fn a_segment_over_the_byte_cap_is_an_error() {
    let mut c = Cutter::new(CutLimits { max_bytes: 50 * PACKET, ..limits() });
    assert_eq!(c.feed(&stream(0, 3, 60)).unwrap_err(), CutError::TooLarge(50 * PACKET));
}

#[test]
fn bytes_that_are_not_ts_lose_sync() {
    let mut c = Cutter::new(limits());
    assert_eq!(c.feed(&[0u8; PACKET]).unwrap_err(), CutError::Sync);
}

#[test]
fn a_segment_lasts_from_its_earliest_frame_to_its_latest_plus_a_frame_across_the_wrap() {
    // 2 s at 30 fps: 60 frames, the last 1/30 s after the 60th starts.
    let measured = |bytes: &[u8]| media_duration(bytes).map(|d| d.as_millis());
    assert_eq!(measured(&stream(1234, 2, 30)), Some(2000));
    assert_eq!(measured(&stream(PTS_MASK - 3000 * 10, 2, 30)), Some(2000));
    // Frames out of presentation order (B-frames): the span is the same.
    let mut bytes = pat();
    for pts in [3000u64, 12_000, 6000, 9000] {
        bytes.extend(frame(pts, pts == 3000));
    }
    assert_eq!(measured(&bytes), Some(133));
    // A frame presented before the first one sent, across the wrap.
    let mut bytes = frame(1000, true);
    bytes.extend(frame((1000 + PTS_MASK + 1 - 3000) & PTS_MASK, false));
    assert_eq!(measured(&bytes), Some(66));
    // A timestamp jump of an hour inside the segment (a splice) counts one frame.
    let mut bytes = pat();
    for pts in [3000u64, 6000, 3000 + 90_000 * 3600, 6000 + 90_000 * 3600] {
        bytes.extend(frame(pts, pts == 3000));
    }
    assert_eq!(measured(&bytes), Some(133));
    // No video timestamp, or not whole packets: not measured.
    assert_eq!(measured(&pat()), None);
    assert_eq!(measured(&stream(0, 1, 30)[..PACKET * 3 - 1]), None);
}
