//! One stream's segments and its HLS playlists, in bounded memory.
//!
//! Segments are transcoded concurrently and finish out of order; they are published in
//! sequence order, each once no earlier segment is still in flight, so that a media playlist
//! only ever grows at its end and its media sequence numbers stay contiguous. A segment whose
//! sequence number is not above the last published one (a late duplicate) is answered to its
//! client but not published. A segment no orchestrator could transcode is published with the
//! source in every rendition's place (marked by `#EXT-X-DISCONTINUITY`), so no playlist has a
//! gap.
//!
//! Bounds: at most `max_entries` published segments and `max_bytes` of their bytes (the oldest
//! go first). Finished segments waiting behind an earlier one still in flight are held to the
//! same limits: [`Window::admit`] refuses a new segment while they are reached, so at most the
//! limits plus the stream's segments in flight wait.
//!
//! [`Window::admit`] also refuses, before anything is paid for it, a segment the window would
//! never publish: one that jumps more than [`MAX_SEQ_JUMP`] past the stream's newest (which
//! would hold every later normal number back as late), and, when the client does not take the
//! renditions in its answer, a late one.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;

use bytes::Bytes;

use super::error::TranscodeError;
use super::profiles::{Format, Profile, SOURCE};

/// How far past the stream's newest sequence number a segment may jump. Ingest numbers its
/// segments one after another (RTMP, go-livepeer's clients), and a client that drops some
/// skips a few; a jump of 10,000 is over five hours of 2 s segments. Beyond it the segment is
/// taken for a mistake or an attack: once published, every normal number after it would be
/// late, transcoded and paid for but never published (go-livepeer does not bound it).
pub(super) const MAX_SEQ_JUMP: u64 = 10_000;

/// Segments listed in a media playlist (go-livepeer's live window).
pub const PLAYLIST_WINDOW: usize = 6;

/// The bandwidth the master playlist gives the source (go-livepeer's 4000k).
const SOURCE_BANDWIDTH: u32 = 4_000_000;

/// One segment as published.
#[derive(Debug, Clone)]
pub(super) struct Published {
    /// Its sequence number.
    pub(super) seq: u64,
    /// Its duration, milliseconds.
    pub(super) duration_ms: u32,
    /// The source bytes.
    pub(super) source: Bytes,
    /// Each profile's rendition, in profile order; `None` where the source stands in.
    pub(super) outputs: Vec<Option<Bytes>>,
}

impl Published {
    fn bytes(&self) -> usize {
        self.source.len() + self.outputs.iter().flatten().map(Bytes::len).sum::<usize>()
    }
}

/// A stream's window of segments.
#[derive(Debug)]
pub(super) struct Window {
    profiles: Vec<Profile>,
    format: Format,
    /// `(width, height)` of the source, when the client said (`Content-Resolution`).
    source_resolution: Option<(u32, u32)>,
    entries: VecDeque<Published>,
    /// The media sequence number of `entries[0]`.
    first_msn: u64,
    bytes: usize,
    max_entries: usize,
    max_bytes: usize,
    last_seq: Option<u64>,
    /// Sequence numbers in flight, with how many pushes of each.
    in_flight: BTreeMap<u64, u32>,
    /// Finished, waiting for an earlier segment still in flight.
    pending: BTreeMap<u64, Published>,
    /// The bytes of `pending`.
    pending_bytes: usize,
    /// Late segments not published.
    dropped: u64,
}

impl Window {
    /// An empty window for renditions of `profiles` in `format`.
    pub(super) fn new(
        profiles: Vec<Profile>,
        format: Format,
        max_entries: usize,
        max_bytes: usize,
    ) -> Self {
        Self {
            profiles,
            format,
            source_resolution: None,
            entries: VecDeque::new(),
            first_msn: 0,
            bytes: 0,
            max_entries: max_entries.max(PLAYLIST_WINDOW),
            max_bytes,
            last_seq: None,
            in_flight: BTreeMap::new(),
            pending: BTreeMap::new(),
            pending_bytes: 0,
            dropped: 0,
        }
    }

    /// Records the source's resolution for the master playlist.
    pub(super) fn set_source_resolution(&mut self, resolution: Option<(u32, u32)>) {
        if resolution.is_some() {
            self.source_resolution = resolution;
        }
    }

    /// Whether segment `seq` may be taken now, asked before anything is paid for it: `Err`
    /// when it jumps more than [`MAX_SEQ_JUMP`] past the newest (400), when it is late and
    /// `answered` is false (409: it would be transcoded, paid and dropped with nothing to show;
    /// a client that takes the renditions in its answer gets them, as a retry), or when the
    /// finished segments waiting behind an earlier one fill the window's limits (503).
    pub(super) fn admit(&self, seq: u64, answered: bool) -> Result<(), TranscodeError> {
        let newest = [
            self.last_seq,
            self.in_flight.keys().next_back().copied(),
            self.pending.keys().next_back().copied(),
        ];
        if let Some(newest) = newest.into_iter().flatten().max()
            && seq > newest.saturating_add(MAX_SEQ_JUMP)
        {
            return Err(TranscodeError::BadSeq(format!(
                "sequence number {seq} jumps more than {MAX_SEQ_JUMP} past the stream's newest \
                 ({newest}): later segments would never be published"
            )));
        }
        let late = self.last_seq.is_some_and(|last| seq <= last)
            || self.pending.contains_key(&seq)
            || self.in_flight.contains_key(&seq);
        if late && !answered {
            return Err(TranscodeError::LateSegment(format!(
                "segment {seq} is published or being transcoded already (last published: {}); \
                 it would be paid for and not published",
                self.last_seq.map_or_else(|| "none".to_owned(), |s| s.to_string())
            )));
        }
        if self.pending.len() >= self.max_entries || self.pending_bytes >= self.max_bytes {
            let first = self.in_flight.keys().next().copied().unwrap_or_default();
            return Err(TranscodeError::Backlog(format!(
                "{} finished segments ({} bytes) wait for segment {first}, still being \
                 transcoded; retry once it is published",
                self.pending.len(),
                self.pending_bytes
            )));
        }
        Ok(())
    }

    /// Segment `seq` is being transcoded.
    pub(super) fn begin(&mut self, seq: u64) {
        *self.in_flight.entry(seq).or_default() += 1;
    }

    /// Segment `seq` is done: publish it, and whatever waited for it.
    pub(super) fn finish(&mut self, segment: Published) {
        self.end(segment.seq);
        if self.last_seq.is_some_and(|last| segment.seq <= last)
            || self.pending.contains_key(&segment.seq)
        {
            self.dropped += 1;
        } else {
            self.pending_bytes += segment.bytes();
            self.pending.insert(segment.seq, segment);
        }
        self.flush();
    }

    /// Segment `seq` is done but is not to be published (its charge was refused): what
    /// waited for it goes on.
    pub(super) fn abandon(&mut self, seq: u64) {
        self.end(seq);
        self.flush();
    }

    fn end(&mut self, seq: u64) {
        if let Some(n) = self.in_flight.get_mut(&seq) {
            *n -= 1;
            if *n == 0 {
                self.in_flight.remove(&seq);
            }
        }
    }

    /// Publishes pending segments that no earlier segment in flight holds back.
    fn flush(&mut self) {
        let first_in_flight = self.in_flight.keys().next().copied();
        while let Some(entry) = self.pending.first_entry() {
            if first_in_flight.is_some_and(|f| f < *entry.key()) {
                break;
            }
            let segment = entry.remove();
            self.pending_bytes -= segment.bytes();
            self.last_seq = Some(segment.seq);
            self.bytes += segment.bytes();
            self.entries.push_back(segment);
        }
        while self.entries.len() > self.max_entries
            || (self.bytes > self.max_bytes && self.entries.len() > 1)
        {
            if let Some(old) = self.entries.pop_front() {
                self.bytes -= old.bytes();
                self.first_msn += 1;
            }
        }
    }

    /// Segments published and still held, bytes they hold, and late segments dropped.
    pub(super) fn stats(&self) -> (usize, usize, u64) {
        (self.entries.len(), self.bytes, self.dropped)
    }

    /// Finished segments waiting for an earlier one, and their bytes.
    pub(super) fn waiting(&self) -> (usize, usize) {
        (self.pending.len(), self.pending_bytes)
    }

    /// The last published sequence number.
    pub(super) fn last_seq(&self) -> Option<u64> {
        self.last_seq
    }

    /// The index of rendition `name` (`None` for the source), or `Err` when unknown.
    fn rendition(&self, name: &str) -> Result<Option<usize>, ()> {
        if name == SOURCE {
            return Ok(None);
        }
        self.profiles.iter().position(|p| p.name == name).map(Some).ok_or(())
    }

    /// The master playlist of the stream `manifest`: a variant per rendition, then the
    /// source. `None` until a segment is published.
    pub(super) fn master(&self, manifest: &str) -> Option<String> {
        if self.entries.is_empty() {
            return None;
        }
        let mut out = String::from("#EXTM3U\n#EXT-X-VERSION:3\n");
        for p in &self.profiles {
            let _ = writeln!(
                out,
                "#EXT-X-STREAM-INF:PROGRAM-ID=0,BANDWIDTH={},RESOLUTION={}x{}\n{manifest}/{}.m3u8",
                p.bitrate, p.width, p.height, p.name
            );
        }
        let resolution =
            self.source_resolution.map(|(w, h)| format!(",RESOLUTION={w}x{h}")).unwrap_or_default();
        let _ = writeln!(
            out,
            "#EXT-X-STREAM-INF:PROGRAM-ID=0,BANDWIDTH={SOURCE_BANDWIDTH}{resolution}\n{manifest}/{SOURCE}.m3u8"
        );
        Some(out)
    }

    /// The media playlist of rendition `name`: the last [`PLAYLIST_WINDOW`] segments.
    pub(super) fn media(&self, name: &str) -> Option<String> {
        let index = self.rendition(name).ok()?;
        if self.entries.is_empty() {
            return None;
        }
        let skip = self.entries.len().saturating_sub(PLAYLIST_WINDOW);
        let shown = self.entries.iter().skip(skip);
        let longest = shown.clone().map(|e| e.duration_ms).max().unwrap_or(0);
        let mut out = format!(
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-MEDIA-SEQUENCE:{}\n#EXT-X-TARGETDURATION:{}\n",
            self.first_msn + skip as u64,
            u64::from(longest).div_ceil(1000).max(1)
        );
        let mut substituted = false;
        for (i, e) in shown.enumerate() {
            let stand_in = index.is_some_and(|i| e.outputs.get(i).is_none_or(Option::is_none));
            if i > 0 && stand_in != substituted {
                out.push_str("#EXT-X-DISCONTINUITY\n");
            }
            substituted = stand_in;
            let ms = e.duration_ms;
            let _ = writeln!(
                out,
                "#EXTINF:{}.{:03},\n{name}/{}{}",
                ms / 1000,
                ms % 1000,
                e.seq,
                self.format.ext()
            );
        }
        Some(out)
    }

    /// Segment `seq` of rendition `name`, while held: its bytes and media type.
    pub(super) fn segment(&self, name: &str, seq: u64) -> Option<(Bytes, &'static str)> {
        let index = self.rendition(name).ok()?;
        let entry = self.entries.iter().find(|e| e.seq == seq)?;
        let bytes = match index {
            None => entry.source.clone(),
            Some(i) => entry.outputs.get(i)?.clone().unwrap_or_else(|| entry.source.clone()),
        };
        Some((bytes, self.format.mime()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window() -> Window {
        let profiles = vec![super::super::profiles::preset("P240p30fps16x9").unwrap()];
        Window::new(profiles, Format::MpegTs, 8, 1 << 20)
    }

    fn seg(seq: u64, ok: bool) -> Published {
        let out = ok.then(|| Bytes::from(vec![1u8; 10]));
        Published { seq, duration_ms: 2000, source: Bytes::from(vec![0u8; 10]), outputs: vec![out] }
    }

    #[test]
    fn out_of_order_segments_publish_in_order_with_contiguous_numbers() {
        let mut w = window();
        assert!(w.master("m").is_none());
        for s in 0..3 {
            w.begin(s);
        }
        w.finish(seg(2, true));
        w.finish(seg(1, true));
        assert_eq!(w.stats().0, 0, "0 still in flight holds 1 and 2 back");
        w.finish(seg(0, false));
        assert_eq!(w.stats().0, 3);
        let media = w.media("P240p30fps16x9").unwrap();
        assert!(media.contains("#EXT-X-MEDIA-SEQUENCE:0\n"));
        assert!(media.contains("#EXTINF:2.000,\nP240p30fps16x9/0.ts\n#EXT-X-DISCONTINUITY\n"));
        assert_eq!(w.segment("P240p30fps16x9", 0).unwrap().0[0], 0, "the source stands in");
        assert_eq!(w.segment("P240p30fps16x9", 1).unwrap().0[0], 1);
        w.begin(1);
        w.finish(seg(1, true));
        assert_eq!(w.stats().2, 1, "a late duplicate is not published");
        for s in 3..20 {
            w.begin(s);
            w.finish(seg(s, true));
        }
        let media = w.media("source").unwrap();
        assert!(media.contains("#EXT-X-MEDIA-SEQUENCE:14\n"), "{media}");
        assert_eq!(media.matches("#EXTINF").count(), PLAYLIST_WINDOW);
        assert_eq!(w.stats().0, 8);
        assert!(w.segment("source", 11).is_none(), "dropped from the window");
        assert!(w.media("nope").is_none());
        let master = w.master("m").unwrap();
        assert!(master.contains("BANDWIDTH=600000,RESOLUTION=426x240\nm/P240p30fps16x9.m3u8"));
        assert!(master.contains("BANDWIDTH=4000000\nm/source.m3u8"));
    }

    #[test]
    fn segments_that_would_never_be_published_are_refused_before_they_are_taken() {
        let mut w = window();
        assert!(w.admit(u64::MAX / 2, false).is_ok(), "a stream may start anywhere");
        w.begin(0);
        w.finish(seg(0, true));
        assert_eq!(w.admit(MAX_SEQ_JUMP + 1, false).unwrap_err().field().unwrap(), "seq");
        assert!(w.admit(MAX_SEQ_JUMP, false).is_ok());
        assert!(matches!(w.admit(0, false), Err(TranscodeError::LateSegment(_))));
        assert!(w.admit(0, true).is_ok(), "a client taking the renditions is served");
        // Segment 1 is stuck: what finishes after it waits, up to the window's limits.
        w.begin(1);
        for s in 2..10 {
            assert!(w.admit(s, false).is_ok());
            w.begin(s);
            w.finish(seg(s, true));
        }
        assert_eq!(w.waiting(), (8, 160));
        assert!(matches!(w.admit(10, false), Err(TranscodeError::Backlog(_))));
        w.finish(seg(1, true));
        assert_eq!((w.waiting(), w.last_seq()), ((0, 0), Some(9)));
        assert!(w.admit(10, false).is_ok());
    }
}
