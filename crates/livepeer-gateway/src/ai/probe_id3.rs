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
//! upload, and each frame within what is left of its tag. The frames are walked the one way
//! symphonia goes through them (its ids tell which it reads and which it skips, which in an
//! unsynchronised tag end in different places), so only what symphonia would read is refused.

use std::sync::LazyLock;

use symphonia::core::probe::QueryDescriptor as _;

/// How far the probe searches for a marker from where it starts (symphonia's
/// `PROBE_SEARCH_LIMIT`).
const SEARCH_LIMIT: usize = 1 << 20;
/// ID3v2's marker.
const ID3: &[u8] = b"ID3";

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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
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

/// Every frame symphonia reads from `start` on lies within what is left of the tag. symphonia's
/// way through the frames is fixed by their bytes: a frame whose id it parses is read through
/// its reader (in an unsynchronised tag, `size` bytes once each 0xFF 0x00 is one 0xFF), any
/// other is skipped by `size` raw bytes, and the reading stops at padding, at an error, or when
/// less than a frame header is left. Each frame header takes at least its header's length of
/// raw bytes, so the walk is linear in the tag's size.
fn frames_fit(body: &Body<'_>, mut at: At, major: u8) -> Result<(), Oversized> {
    let min_frame = if major == 2 { 6 } else { 10 };
    // symphonia reads the first frame whatever is left, then another while a header fits.
    while next_frame(body, &mut at, major)?.is_some() && body.left(at) >= min_frame {}
    Ok(())
}

/// Reads the frame at `at` as symphonia does and moves `at` past it. `Ok(None)`: symphonia
/// reads no further frame (padding, the tag's end, or an error that fails the tag).
fn next_frame(body: &Body<'_>, at: &mut At, major: u8) -> Result<Option<()>, Oversized> {
    let id_len = if major == 2 { 3 } else { 4 };
    let id: Option<Vec<u8>> = (0..id_len).map(|_| body.byte(at)).collect();
    // Not a frame id: padding, the end of the frames.
    let Some(id) = id.filter(|id| id.iter().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()))
    else {
        return Ok(None);
    };
    let size = match major {
        2 => body.number(at, 3, 8),
        3 => body.number(at, 4, 8),
        _ => body.number(at, 4, 7),
    };
    let Some(size) = size.and_then(|s| usize::try_from(s).ok()) else { return Ok(None) };
    let flags = if major > 2 { body.number(at, 2, 8) } else { Some(0) };
    let Some(flags) = flags else { return Ok(None) };
    // Unused flags set: symphonia refuses the tag there.
    if flags & if major == 3 { 0x1F1F } else { 0x8FB0 } != 0 {
        return Ok(None);
    }
    // A frame symphonia reads is allocated first; one it skips past the tag fails the tag
    // without allocating, refused all the same.
    if size > body.left(*at) {
        tracing::debug!(frame = %String::from_utf8_lossy(&id), size, "ID3v2 frame longer than its tag");
        return Err(Oversized);
    }
    if !parses(&id) {
        // `ignore_bytes`: raw bytes, past the unsynchronising stream, which still holds the
        // byte read before them.
        at.pos += size;
        return Ok(Some(()));
    }
    // Compressed or encrypted: skipped, then the tag is refused.
    if flags & if major == 3 { 0x0080 } else { 0x000C } != 0 {
        return Ok(None);
    }
    // The group byte and the data length indicator are read from the frame's `size`; a frame
    // of no bytes is not read.
    Ok(body.read(at, size))
}

/// Whether symphonia (0.5.5) reads the frame `id` through its reader rather than skipping it:
/// the ids of its frame parsers, and in ID3v2.2 those its table maps to one of them.
fn parses(id: &[u8]) -> bool {
    match id {
        [a, b, c, d] => PARSED.contains(&[*a, *b, *c, *d]),
        [a, b, c] => PARSED_V22.contains(&[*a, *b, *c]),
        _ => false,
    }
}

/// The ID3v2.3 and ID3v2.4 frames symphonia parses (its `FRAME_PARSERS`), checked against
/// symphonia's own reading by a test.
const PARSED: [[u8; 4]; 79] = [
    *b"APIC", *b"COMM", *b"GRP1", *b"IPLS", *b"MCDI", *b"MVIN", *b"MVNM", *b"PCNT", *b"POPM",
    *b"PRIV", *b"TALB", *b"TBPM", *b"TCAT", *b"TCOM", *b"TCON", *b"TCOP", *b"TDAT", *b"TDEN",
    *b"TDES", *b"TDLY", *b"TDOR", *b"TDRC", *b"TDRL", *b"TDTG", *b"TENC", *b"TEXT", *b"TFLT",
    *b"TGID", *b"TIME", *b"TIPL", *b"TIT1", *b"TIT2", *b"TIT3", *b"TKEY", *b"TKWD", *b"TLAN",
    *b"TLEN", *b"TMCL", *b"TMED", *b"TMOO", *b"TOAL", *b"TOFN", *b"TOLY", *b"TOPE", *b"TORY",
    *b"TOWN", *b"TPE1", *b"TPE2", *b"TPE3", *b"TPE4", *b"TPOS", *b"TPRO", *b"TPUB", *b"TRCK",
    *b"TRDA", *b"TRSN", *b"TRSO", *b"TSIZ", *b"TSO2", *b"TSOA", *b"TSOC", *b"TSOP", *b"TSOT",
    *b"TSRC", *b"TSSE", *b"TSST", *b"TXXX", *b"TYER", *b"USLT", *b"WCOM", *b"WCOP", *b"WFED",
    *b"WOAF", *b"WOAR", *b"WOAS", *b"WORS", *b"WPAY", *b"WPUB", *b"WXXX",
];

/// The ID3v2.2 frames symphonia parses: those of its `LEGACY_FRAME_MAP` whose ID3v2.3 frame
/// it parses.
const PARSED_V22: [[u8; 3]; 55] = [
    *b"CNT", *b"COM", *b"IPL", *b"MCI", *b"PIC", *b"POP", *b"TAL", *b"TBP", *b"TCM", *b"TCO",
    *b"TCR", *b"TDA", *b"TDY", *b"TEN", *b"TFT", *b"TIM", *b"TKE", *b"TLA", *b"TLE", *b"TMT",
    *b"TOA", *b"TOF", *b"TOL", *b"TOR", *b"TOT", *b"TP1", *b"TP2", *b"TP3", *b"TP4", *b"TPA",
    *b"TPB", *b"TRC", *b"TRD", *b"TRK", *b"TS2", *b"TSA", *b"TSC", *b"TSI", *b"TSP", *b"TSS",
    *b"TST", *b"TT1", *b"TT2", *b"TT3", *b"TXT", *b"TXX", *b"TYE", *b"ULT", *b"WAF", *b"WAR",
    *b"WAS", *b"WCM", *b"WCP", *b"WPB", *b"WXX",
];

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

    /// The writer's unsynchronisation of a tag's body: a 0x00 after each 0xFF that comes
    /// before a 0x00 or a byte of 0xE0 or more, or ends the body; after every 0xFF if `all`.
    fn unsynchronise(data: &[u8], all: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(2 * data.len());
        for (i, &b) in data.iter().enumerate() {
            out.push(b);
            let next = data.get(i + 1).copied();
            if b == 0xFF && (all || next.is_none_or(|n| n == 0 || n >= 0xE0)) {
                out.push(0);
            }
        }
        out
    }

    /// A frame `id` (3 bytes: ID3v2.2, 4: ID3v2.3) holding `body`, its size the body's length
    /// before unsynchronisation, with `flags` in ID3v2.3.
    fn framed(id: &[u8], flags: u16, body: &[u8]) -> Vec<u8> {
        let mut out = id.to_vec();
        let size = (body.len() as u32).to_be_bytes();
        out.extend(if id.len() == 4 { &size[..] } else { &size[1..] });
        if id.len() == 4 {
            out.extend(flags.to_be_bytes());
        }
        out.extend(body);
        out
    }

    /// The MP3 fixture without its own tag: 3.5 s of audio.
    fn mp3_audio() -> Vec<u8> {
        crate::ai::probe::samples::fixture("tone-3.5s.mp3")[45..].to_vec()
    }

    /// `tag`, then the MP3's audio.
    fn with_audio(tag: &[u8]) -> Vec<u8> {
        [tag, &mp3_audio()].concat()
    }

    /// What symphonia's own probe makes of `upload`, with no check of the gateway's before it.
    fn symphonia_probe(
        upload: &[u8],
    ) -> symphonia::core::errors::Result<symphonia::core::probe::ProbeResult> {
        use symphonia::core::io::MediaSourceStream;
        let source = Box::new(std::io::Cursor::new(upload.to_vec()));
        let source = MediaSourceStream::new(source, Default::default());
        let hint = symphonia::core::probe::Hint::new();
        symphonia::default::get_probe().format(
            &hint,
            source,
            &Default::default(),
            &Default::default(),
        )
    }

    /// The gateway's measure of `upload`, which must be the MP3's 3.5 s.
    fn assert_measured(upload: &[u8]) {
        let secs = crate::ai::probe::audio_duration(upload.to_vec().into());
        assert!(secs.as_ref().is_ok_and(|s| (s - 3.5).abs() < 0.2), "{secs:?}");
    }

    /// An unsynchronised ID3v2.3 tag as a writer makes it: a private frame whose binary data
    /// holds 0xFF 0xFF (written 0xFF 0x00 0xFF), then the title. symphonia reads the private
    /// frame through (12 raw bytes for its 11), then the title; skipping the frame by its 11
    /// raw bytes would read a header `XTIT` stating 0x32000000 bytes, which the walk, following
    /// both ways, refused.
    #[test]
    fn an_unsynchronised_tag_symphonia_reads_is_measured() {
        let mut frames = framed(b"PRIV", 0, b"gateway\0\xFF\xFFX");
        // 32 bytes: in the header read by a skip, the size's last byte is the flags' first,
        // whose unused bits must be clear.
        let title = "A 440 Hz tone, 3.5 seconds long";
        frames.extend(framed(b"TIT2", 0, &[b"\x00", title.as_bytes()].concat()));
        assert_eq!(frames.len(), 21 + 42);
        let body = unsynchronise(&frames, false);
        assert_eq!(body.len(), frames.len() + 1, "one 0x00 written in");
        let tag = tag_of(3, 0x80, &body);
        let upload = with_audio(&tag);
        let mut probed = symphonia_probe(&upload).expect("symphonia reads the upload");
        let metadata = probed.metadata.get().expect("the tag's metadata");
        let tags = metadata.current().expect("one revision").tags();
        let read = tags.iter().find(|t| t.key == "TIT2").map(|t| t.value.to_string());
        assert_eq!(read.as_deref(), Some(title), "{tags:?}");
        assert!(tags.iter().any(|t| t.key == "PRIV:gateway"), "{tags:?}");
        assert_eq!(format_start(&upload), Ok(Some(tag.len())));
        assert_measured(&upload);
    }

    /// The same bytes after a frame's header: a frame symphonia parses is read through them
    /// (3 raw bytes for its 2), one it does not parse skipped by 2 raw bytes, landing on a
    /// `TXXX` header stating 1 MiB. symphonia reads the `PRIV` upload and fails on the `GEOB`
    /// one; the walk accepts the first (it refused both) and refuses the second.
    #[test]
    fn a_frame_is_read_or_skipped_by_its_id_as_symphonia_does() {
        for (id, read) in [(b"PRIV", true), (b"GEOB", false)] {
            let mut body = framed(id, 0, b"\xFF\x00");
            // A header stating 1 MiB; read through, the frame's second byte is its `T`, and
            // what follows is no frame id.
            body.extend(b"TXXX\x00\x10\x00\x00\x00\x00");
            let tag = tag_of(3, 0x80, &body);
            let upload = with_audio(&tag);
            let name = String::from_utf8_lossy(id);
            assert_eq!(symphonia_probe(&upload).is_ok(), read, "{name}");
            if read {
                assert_eq!(format_start(&upload), Ok(Some(tag.len())), "{name}");
                assert_measured(&upload);
            } else {
                assert_eq!(format_start(&upload), Err(Oversized), "{name}");
            }
        }
    }

    /// Which frames symphonia parses, asked of symphonia itself for every frame id of the
    /// standards (and a few of none): after a frame of 2 bytes written 0xFF 0x00 0x00, one
    /// symphonia reads ends a byte later than one it skips; there a frame states more than the
    /// tag holds (an unknown one: symphonia fails without allocating it), where a skipped one
    /// ends at padding. The walk must accept exactly the uploads symphonia reads.
    #[test]
    fn the_frames_symphonia_parses_are_the_ones_the_walk_reads() {
        let skipped_v3 = [
            "AENC", "ASPI", "COMR", "ENCR", "EQU2", "EQUA", "ETCO", "GEOB", "GRID", "LINK", "MLLT",
            "OWNE", "PCST", "POSS", "RBUF", "RVA2", "RVAD", "RVRB", "SEEK", "SIGN", "SYLT", "SYTC",
            "UFID", "USER", "TIT4", "XXXX", "ZZZ9",
        ];
        let skipped_v2 = [
            "BUF", "CRA", "CRM", "EQU", "ETC", "GEO", "LNK", "MLL", "PCS", "REV", "RVA", "SLT",
            "STC", "UFI", "TT4", "XXX",
        ];
        let v3 = PARSED.iter().map(|id| id.to_vec()).chain(skipped_v3.map(|id| id.into()));
        let v2 = PARSED_V22.iter().map(|id| id.to_vec()).chain(skipped_v2.map(|id| id.into()));
        let mut read = 0;
        for id in v3.chain(v2) {
            let major: u8 = if id.len() == 4 { 3 } else { 2 };
            let mut body = framed(&id, 0, &[0xFF, 0x00]);
            // A byte of the frame if read through, padding where a skip ends.
            body.push(0x00);
            // An unknown frame stating 0x7F7F7F(7F) bytes.
            body.extend(&b"ZZZZ"[..id.len()]);
            body.extend(vec![0x7F; id.len()]);
            body.extend(vec![0; usize::from(major == 3) * 2]);
            let upload = with_audio(&tag_of(major, 0x80, &body));
            let name = String::from_utf8_lossy(&id);
            let symphonia = symphonia_probe(&upload).is_ok();
            assert_eq!(symphonia, !parses(&id), "{name}: symphonia read it: {symphonia}");
            assert_eq!(format_start(&upload).is_ok(), symphonia, "{name}");
            read += usize::from(!symphonia);
        }
        assert_eq!(read, PARSED.len() + PARSED_V22.len());
    }

    /// symphonia reads every frame of a tag, however many: 6,000 titles are walked through.
    #[test]
    fn a_tag_of_many_frames_is_walked_through() {
        let frames: Vec<u8> = (0..6000).flat_map(|_| framed(b"TIT2", 0, b"\x00a")).collect();
        let tag = tag_of(3, 0x80, &frames);
        let upload = with_audio(&tag);
        assert!(symphonia_probe(&upload).is_ok());
        assert_eq!(format_start(&upload), Ok(Some(tag.len())));
        assert_measured(&upload);
    }

    /// Frames of each kind the property test writes: a text frame (its encoding byte first),
    /// a comment, frames of any bytes, one symphonia skips, one nobody knows; ID3v2.3's id and
    /// ID3v2.2's.
    const KINDS: [(&[u8; 4], &[u8; 3], &[u8]); 7] = [
        (b"TIT2", b"TT2", b"\x00"),
        (b"TXXX", b"TXX", b"\x00"),
        (b"COMM", b"COM", b"\x00eng"),
        (b"PRIV", b"MCI", b""),
        (b"MCDI", b"MCI", b""),
        (b"GEOB", b"GEO", b""),
        (b"QQQQ", b"QQQ", b""),
    ];

    /// The bytes of the frames' data: 0xFF before each kind of byte unsynchronisation cares
    /// about, and of the frame id characters only ones no id symphonia parses is made of, so
    /// that symphonia, skipping into a frame's data, reads no header it would allocate.
    const DATA: [u8; 12] = [0x00, 0x01, 0x20, 0x7F, 0x80, 0xE0, 0xFE, 0xFF, 0xFF, b'1', b'Q', b'Z'];

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            rng_seed: proptest::test_runner::RngSeed::Fixed(20260310),
            ..proptest::prelude::ProptestConfig::with_cases(2000)
        })]

        /// Unsynchronised ID3v2.2 and ID3v2.3 tags made of valid frames, in front of an MP3:
        /// whenever symphonia's probe reads the upload, the walk accepts it and the gateway
        /// measures the audio.
        #[test]
        fn an_unsynchronised_tag_symphonia_reads_is_accepted(
            major in 2u8..=3,
            frames in proptest::collection::vec(
                (
                    0..KINDS.len(),
                    proptest::prelude::any::<bool>(),
                    proptest::collection::vec(proptest::sample::select(DATA.to_vec()), 1..24),
                ),
                1..8,
            ),
            padding in 0..16usize,
            all in proptest::prelude::any::<bool>(),
        ) {
            let mut plain = Vec::new();
            for (kind, grouped, data) in frames {
                let (v3, v2, head) = KINDS[kind];
                // A group byte first (ID3v2.3), read before the frame's data.
                let grouped = grouped && major == 3;
                let group = if grouped { &data[..1] } else { &[] };
                let body = [group, head, &data].concat();
                let id: &[u8] = if major == 3 { v3 } else { v2 };
                plain.extend(framed(id, if grouped { 0x0020 } else { 0 }, &body));
            }
            plain.resize(plain.len() + padding, 0);
            let tag = tag_of(major, 0x80, &unsynchronise(&plain, all));
            let upload = with_audio(&tag);
            if symphonia_probe(&upload).is_ok() {
                proptest::prop_assert_eq!(format_start(&upload), Ok(Some(tag.len())));
                assert_measured(&upload);
            }
        }
    }
}
