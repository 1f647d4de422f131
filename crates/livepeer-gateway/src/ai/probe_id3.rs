//! Where symphonia's probe finds an upload's format, and the ID3v2 tags it reads on the way.
//!
//! The probe searches the upload from its first byte (up to 1 MiB at a time) for the marker of
//! a format or of an ID3v2 tag. A tag is read, and the search goes on after it; a format's
//! reader takes the upload from its marker on. So any bytes, and any number of tags, may come
//! before the format: the format's own lengths must be checked from where its reader starts,
//! not from the upload's first byte.
//!
//! symphonia's ID3v2 reader allocates each frame's stated size before reading it, whatever the
//! tag holds: up to 16 MiB in ID3v2.2, 4 GiB in ID3v2.3 and 256 MiB in ID3v2.4, stated in a few
//! bytes. An allocation that cannot be had aborts the process. So a tag must lie within the
//! upload, and each frame within what is left of its tag.

use std::collections::HashSet;
use std::sync::LazyLock;

use symphonia::core::probe::QueryDescriptor as _;

/// How far the probe searches for a marker from where it starts (symphonia's
/// `PROBE_SEARCH_LIMIT`).
const SEARCH_LIMIT: usize = 1 << 20;
/// ID3v2's marker.
const ID3: &[u8] = b"ID3";
/// Frames looked at in one tag (in an unsynchronised tag, per way of reading them): a real tag
/// has tens. More is refused as the upload's damage.
const MAX_FRAMES: usize = 4096;

/// The markers of the formats the probe knows (those of the readers the gateway's symphonia
/// features register), and a table of their first bytes to search by.
static MARKERS: LazyLock<(Vec<&'static [u8]>, [bool; 256])> = LazyLock::new(|| {
    use symphonia::default::formats::{
        AdtsReader, FlacReader, IsoMp4Reader, MkvReader, MpaReader, OggReader, WavReader,
    };
    let descriptors = [
        AdtsReader::query(),
        FlacReader::query(),
        IsoMp4Reader::query(),
        MkvReader::query(),
        MpaReader::query(),
        OggReader::query(),
        WavReader::query(),
    ];
    let markers: Vec<&'static [u8]> =
        descriptors.into_iter().flatten().flat_map(|d| d.markers.iter().copied()).collect();
    let mut first = [false; 256];
    for marker in markers.iter().copied().chain([ID3]) {
        if let Some(b) = marker.first() {
            first[usize::from(*b)] = true;
        }
    }
    (markers, first)
});

/// A tag (or a frame of it) states more than the upload holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Oversized;

/// Where the reader of the upload's format starts, past any bytes and ID3v2 tags before it
/// (an MP4's reader starts at the `ftyp` box, 4 bytes before its marker, its type). `Ok(None)`:
/// the probe finds no format (it fails before any format reader reads). `Err`: a tag on the
/// way states a length the upload does not hold.
pub(super) fn format_start(data: &[u8]) -> Result<Option<usize>, Oversized> {
    let mut from = 0;
    loop {
        let Some(at) = next_marker(data, from) else { return Ok(None) };
        if !data[at..].starts_with(ID3) {
            let back = if data[at..].starts_with(b"ftyp") { 4 } else { 0 };
            return Ok(Some(at.saturating_sub(back)));
        }
        match tag(&data[at..])? {
            Some(len) => from = at + len,
            // symphonia fails on the tag: nothing more is read.
            None => return Ok(None),
        }
    }
}

/// The first offset from `from` (within the probe's search limit) where a marker starts.
fn next_marker(data: &[u8], from: usize) -> Option<usize> {
    let (markers, first) = &*MARKERS;
    let end = data.len().min(from.saturating_add(SEARCH_LIMIT));
    (from..end).find(|&at| {
        let rest = &data[at..];
        first[usize::from(rest[0])]
            && (rest.starts_with(ID3) || markers.iter().any(|m| rest.starts_with(m)))
    })
}

/// The ID3v2 tag `data` starts with: its length when symphonia reads it through, `None` when
/// symphonia fails on it before reading any frame past what the upload holds.
fn tag(data: &[u8]) -> Result<Option<usize>, Oversized> {
    let Some(head) = data.get(..10) else { return Ok(None) };
    let (major, minor, flags) = (head[3], head[4], head[5]);
    if major == 0xFF || minor == 0xFF || !(2..=4).contains(&major) {
        return Ok(None);
    }
    if major == 2 && flags & 0x40 != 0 {
        // Compressed ID3v2.2: unsupported.
        return Ok(None);
    }
    let size = head[6..10].iter().fold(0usize, |s, b| s << 7 | usize::from(b & 0x7F));
    // Past the upload's end the reader fails anyway; within it, no frame can be longer.
    let raw = data.get(10..10 + size).ok_or(Oversized)?;
    // Tag-wide unsynchronisation (ID3v2.4 has it per frame): symphonia reads the tag through
    // a stream that drops each 0x00 after a 0xFF.
    let body = Body { raw, unsync: flags & 0x80 != 0 && major < 4 };
    let mut at = At::default();
    if major >= 3 && flags & 0x40 != 0 && extended_header(&body, &mut at, major).is_none() {
        return Ok(None);
    }
    frames_fit(&body, at, major)?;
    Ok(Some(10 + size))
}

/// A place in a tag's body: the raw offset, and the last byte read (unsynchronisation drops a
/// 0x00 that follows a 0xFF).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
struct At {
    pos: usize,
    last: u8,
}

/// A tag's body, read as symphonia reads it.
struct Body<'a> {
    raw: &'a [u8],
    unsync: bool,
}

impl Body<'_> {
    /// One byte, as symphonia's unsynchronising stream gives it.
    fn byte(&self, at: &mut At) -> Option<u8> {
        let mut b = *self.raw.get(at.pos)?;
        at.pos += 1;
        if self.unsync && at.last == 0xFF && b == 0 {
            b = *self.raw.get(at.pos)?;
            at.pos += 1;
        }
        at.last = b;
        Some(b)
    }

    /// A big-endian number of `n` bytes, each keeping its low `bits`.
    fn number(&self, at: &mut At, n: usize, bits: u32) -> Option<u64> {
        let mask = (1u64 << bits) - 1;
        (0..n).try_fold(0u64, |v, _| Some(v << bits | u64::from(self.byte(at)?) & mask))
    }

    /// Reads `n` bytes (a frame symphonia parses).
    fn read(&self, at: &mut At, n: usize) -> Option<()> {
        if !self.unsync {
            at.pos = at.pos.checked_add(n).filter(|end| *end <= self.raw.len())?;
            return Some(());
        }
        (0..n).try_for_each(|_| self.byte(at).map(drop))
    }

    /// The raw bytes left after `at`.
    fn left(&self, at: At) -> usize {
        self.raw.len().saturating_sub(at.pos)
    }
}

/// Reads the extended header as symphonia does (it does not skip it by its stated size);
/// `None` where symphonia refuses it.
fn extended_header(body: &Body<'_>, at: &mut At, major: u8) -> Option<()> {
    if major == 3 {
        let size = body.number(at, 4, 8)?;
        let flags = body.number(at, 2, 8)?;
        body.number(at, 4, 8)?;
        if size != 6 && size != 10 {
            return None;
        }
        if size == 10 && flags & 0x8000 != 0 {
            body.number(at, 4, 8)?;
        }
        return Some(());
    }
    body.number(at, 4, 8)?;
    if body.byte(at)? != 1 {
        return None;
    }
    let flags = body.byte(at)?;
    // Each flag's data: its length byte (as symphonia wants it), then the data.
    for (flag, len, data) in [(0x40, 1, 0), (0x20, 5, 5), (0x10, 1, 1)] {
        if flags & flag != 0 {
            if body.byte(at)? != len {
                return None;
            }
            body.number(at, data, 8)?;
        }
    }
    Some(())
}

/// Every frame symphonia may read from `start` on lies within what is left of the tag. A frame
/// symphonia parses is read, one it does not is skipped by its raw size: in an unsynchronised
/// tag the two end in different places, so both ways are followed.
fn frames_fit(body: &Body<'_>, start: At, major: u8) -> Result<(), Oversized> {
    let (id_len, min_frame) = if major == 2 { (3, 6) } else { (4, 10) };
    let mut todo = vec![start];
    let mut seen = HashSet::new();
    while let Some(mut at) = todo.pop() {
        if !seen.insert(at) {
            continue;
        }
        if seen.len() > MAX_FRAMES {
            return Err(Oversized);
        }
        let id: Option<Vec<u8>> = (0..id_len).map(|_| body.byte(&mut at)).collect();
        // Not a frame id: padding, the end of the frames.
        let Some(id) =
            id.filter(|id| id.iter().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()))
        else {
            continue;
        };
        let size = match major {
            2 => body.number(&mut at, 3, 8),
            3 => body.number(&mut at, 4, 8),
            _ => body.number(&mut at, 4, 7),
        };
        let Some(size) = size.and_then(|s| usize::try_from(s).ok()) else { continue };
        if major > 2 {
            let Some(flags) = body.number(&mut at, 2, 8) else { continue };
            // Unused flags set: symphonia refuses the tag there.
            if flags & if major == 3 { 0x1F1F } else { 0x8FB0 } != 0 {
                continue;
            }
        }
        if size > body.left(at) {
            tracing::debug!(frame = %String::from_utf8_lossy(&id), size, "ID3v2 frame longer than its tag");
            return Err(Oversized);
        }
        let mut read = at;
        let parsed = body.read(&mut read, size).map(|()| read);
        let skipped = body.unsync.then_some(At { pos: at.pos + size, ..at });
        // After the first frame, symphonia reads another while a frame header's worth is left.
        todo.extend([parsed, skipped].into_iter().flatten().filter(|a| body.left(*a) >= min_frame));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ID3v2 tag of `major` version with `flags`, holding `frames` (and no padding).
    fn tag_of(major: u8, flags: u8, frames: &[u8]) -> Vec<u8> {
        let mut out = vec![b'I', b'D', b'3', major, 0, flags];
        let n = frames.len();
        out.extend([(n >> 21) as u8 & 0x7F, (n >> 14) as u8 & 0x7F, (n >> 7) as u8 & 0x7F]);
        out.push(n as u8 & 0x7F);
        out.extend(frames);
        out
    }

    /// An ID3v2.3/2.4 frame `id` stating `size` (already encoded), holding `body`.
    fn frame(id: &[u8; 4], size: [u8; 4], body: &[u8]) -> Vec<u8> {
        let mut out = id.to_vec();
        out.extend(size);
        out.extend([0, 0]);
        out.extend(body);
        out
    }

    /// An MPEG-1 layer III frame header, as the probe finds one.
    const MP3: [u8; 4] = [0xFF, 0xFB, 0x90, 0x64];

    #[test]
    fn the_format_is_found_past_tags_and_junk() {
        let text = frame(b"TSSE", [0, 0, 0, 4], b"\x03Lav");
        let mut upload = tag_of(4, 0, &text);
        let tag_len = upload.len();
        upload.extend(MP3);
        upload.extend([0; 32]);
        assert_eq!(format_start(&upload), Ok(Some(tag_len)));
        let mut junk = b"junk".to_vec();
        junk.extend(b"fLaC");
        assert_eq!(format_start(&junk), Ok(Some(4)));
        let mut mp4 = vec![0, 0, 0, 0x1C];
        mp4.extend(b"ftypM4A ");
        assert_eq!(format_start(&mp4), Ok(Some(0)));
        assert_eq!(format_start(b"nothing to see"), Ok(None));
    }

    #[test]
    fn a_frame_longer_than_its_tag_is_refused_in_every_version() {
        // ID3v2.4: 256 MiB (syncsafe); ID3v2.3: 4 GiB; ID3v2.2: 16 MiB, in a few bytes.
        let v4 = tag_of(4, 0, &frame(b"TIT2", [0x7F; 4], b"\x03a"));
        let v3 = tag_of(3, 0, &frame(b"TIT2", [0xFF; 4], b"\x03a"));
        let mut v2_frame = b"TT2\xFF\xFF\xFF".to_vec();
        v2_frame.extend(b"\x00a");
        let v2 = tag_of(2, 0, &v2_frame);
        for tag in [v4, v3, v2] {
            let mut upload = tag.clone();
            upload.extend(MP3);
            assert_eq!(format_start(&upload), Err(Oversized), "{:?}", &tag[..4]);
        }
        // A frame that fits, exactly.
        let fits = tag_of(3, 0, &frame(b"TIT2", [0, 0, 0, 2], b"\x03a"));
        assert_eq!(format_start(&fits), Ok(None), "no format after it, but nothing oversized");
        // A tag longer than the upload.
        let mut long = tag_of(4, 0, &frame(b"TIT2", [0, 0, 0, 2], b"\x03a"));
        long[9] += 1;
        assert_eq!(format_start(&long), Err(Oversized));
    }

    #[test]
    fn a_second_tag_and_an_unsynchronised_one_are_walked_too() {
        let small = tag_of(4, 0, &frame(b"TIT2", [0, 0, 0, 2], b"\x03a"));
        let mut upload = small.clone();
        upload.extend(tag_of(3, 0, &frame(b"TIT2", [0xFF; 4], b"\x03a")));
        upload.extend(MP3);
        assert_eq!(format_start(&upload), Err(Oversized));
        // Unsynchronised ID3v2.3: a frame of 4 bytes whose raw body holds 5 (FF 00 is one FF)
        // is read through; the oversized frame after it is found either way it is read.
        let mut frames = frame(b"PRIV", [0, 0, 0, 4], b"\xFF\x00ab\x00");
        frames.extend(frame(b"TXXX", [0x7F; 4], b"\x03a"));
        let unsync = tag_of(3, 0x80, &frames);
        assert_eq!(format_start(&unsync), Err(Oversized));
        let mut fine = frame(b"PRIV", [0, 0, 0, 4], b"\xFF\x00ab\x00");
        fine.extend(frame(b"TXXX", [0, 0, 0, 2], b"\x03a"));
        let mut upload = tag_of(3, 0x80, &fine);
        let len = upload.len();
        upload.extend(MP3);
        assert_eq!(format_start(&upload), Ok(Some(len)));
    }

    #[test]
    fn the_fixtures_are_found_where_they_start() {
        for (name, start) in [
            ("tone-3.5s.mp3", 45),
            ("tone-2.5s.wav", 0),
            ("tone-4.5s.flac", 0),
            ("tone-5.5s.ogg", 0),
            ("tone-2.5s.m4a", 0),
            ("tone-1.5s.aac", 0),
            ("tone-3.5s.webm", 0),
        ] {
            let data = crate::ai::probe::samples::fixture(name);
            assert_eq!(format_start(&data), Ok(Some(start)), "{name}");
        }
    }
}
