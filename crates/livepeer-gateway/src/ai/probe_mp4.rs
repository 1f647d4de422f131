//! Checks of the lengths inside MP4 boxes, before symphonia reads them: every box must fit
//! its parent, and the lengths symphonia allocates before reading (sample tables' counts and
//! sizes, a fragment's sample sizes, decoder descriptors) must fit the box or the upload.

/// MP4 boxes whose contents are boxes, as far as the demuxer reads them.
const MP4_CONTAINERS: [&[u8; 4]; 12] = [
    b"moov", b"trak", b"mdia", b"minf", b"stbl", b"dinf", b"edts", b"udta", b"mvex", b"moof",
    b"traf", b"mfra",
];
/// Audio sample entries whose child boxes the demuxer reads.
const MP4_AUDIO_ENTRIES: [&[u8; 4]; 4] = [b"mp4a", b"Opus", b"fLaC", b"alac"];
/// Sample tables whose reader reserves room for the entries their count states before
/// reading any, and the bytes of one entry.
const MP4_TABLES: [(&[u8; 4], usize); 4] =
    [(b"stts", 8), (b"stsc", 12), (b"stco", 4), (b"co64", 8)];
/// How deep MP4 boxes may nest.
const MP4_MAX_DEPTH: usize = 12;

/// `Some` if every box in `boxes` fits in its parent, recursively, and no sample claims more
/// than `total` bytes. `items`: the children are `ilst` items, whose contents are boxes.
pub(super) fn mp4_boxes(mut boxes: &[u8], total: usize, depth: usize, items: bool) -> Option<()> {
    if depth > MP4_MAX_DEPTH {
        return None;
    }
    while boxes.len() >= 8 {
        let small = u32::from_be_bytes(boxes.get(..4)?.try_into().ok()?);
        let kind: &[u8; 4] = boxes.get(4..8)?.try_into().ok()?;
        let (header, size) = match small {
            0 => (8, boxes.len()),
            1 => {
                (16, usize::try_from(u64::from_be_bytes(boxes.get(8..16)?.try_into().ok()?)).ok()?)
            }
            n => (8, usize::try_from(n).ok()?),
        };
        let body = boxes.get(header..size)?;
        let inner = |at: usize, items| {
            mp4_boxes(body.get(at..).unwrap_or_default(), total, depth + 1, items)
        };
        if items || MP4_CONTAINERS.contains(&kind) {
            inner(0, false)?;
        } else if kind == b"meta" {
            inner(4, false)?;
        } else if kind == b"ilst" {
            inner(0, true)?;
        } else if kind == b"stsd" {
            inner(8, false)?;
        } else if MP4_AUDIO_ENTRIES.contains(&kind) {
            // Sound sample entry: 28 bytes, plus 16 (version 1) or 36 (version 2).
            let version = body.get(8..10).map_or(0, |v| u16::from_be_bytes([v[0], v[1]]));
            inner(28 + [0, 16, 36].get(usize::from(version)).copied().unwrap_or(0), false)?;
        } else if kind == b"stsz" {
            stsz_fits(body, total)?;
        } else if kind == b"trun" || kind == b"tfhd" || kind == b"trex" {
            fragment_sizes_fit(kind, body, total)?;
        } else if kind == b"esds" {
            let descriptors = body.get(4..).unwrap_or_default();
            esds_descriptors(descriptors, (0, descriptors.len()), 0)?;
        } else if let Some(entry) = MP4_TABLES.iter().find(|(k, _)| *k == kind).map(|t| t.1) {
            table_fits(body, entry)?;
        }
        boxes = boxes.get(size..)?;
    }
    Some(())
}

/// `Some` if a sample table's entries (after its version, flags and count) fit in its body.
/// symphonia reserves room for the count it states before reading them: 4 G entries of 12
/// bytes stated in a box of 16 bytes would ask for 48 GiB.
fn table_fits(body: &[u8], entry: usize) -> Option<()> {
    let count = u32::from_be_bytes(body.get(4..8)?.try_into().ok()?);
    let room = body.len().checked_sub(8)? / entry;
    (usize::try_from(count).ok()? <= room).then_some(())
}

/// `Some` if no descriptor of an `esds` box's `data` (after its version and flags), read
/// from `at` to `end` where symphonia reads them at `depth`, states more bytes than `data`
/// holds: symphonia allocates a DecoderSpecificInfo's stated length (28 bits: 256 MiB) before
/// reading it.
fn esds_descriptors(data: &[u8], (mut at, end): (usize, usize), depth: u8) -> Option<()> {
    while end.saturating_sub(at) > 2 {
        let tag = *data.get(at)?;
        at += 1;
        let mut len = 0usize;
        for _ in 0..4 {
            let b = *data.get(at)?;
            at += 1;
            len = len << 7 | usize::from(b & 0x7F);
            if b & 0x80 == 0 {
                break;
            }
        }
        if len > data.len() {
            return None;
        }
        match (tag, depth) {
            // ES_Descriptor: its id and flags, the optional fields they announce, then its
            // children, in the `len - 3` bytes after those.
            (3, 0) => {
                let flags = *data.get(at + 2)?;
                at += 3;
                at += if flags & 0x80 != 0 { 2 } else { 0 };
                at += if flags & 0x40 != 0 { 1 + usize::from(*data.get(at)?) } else { 0 };
                at += if flags & 0x20 != 0 { 2 } else { 0 };
                let inner = at.checked_add(len.checked_sub(3)?)?;
                esds_descriptors(data, (at, inner), 1)?;
                at = inner;
            }
            // DecoderConfigDescriptor: 13 bytes, then its children.
            (4, 1) => {
                at += 13;
                let inner = at.checked_add(len.checked_sub(13)?)?;
                esds_descriptors(data, (at, inner), 2)?;
                at = inner;
            }
            // SLConfigDescriptor: symphonia reads its first byte only.
            (6, 1) => at += 1,
            // DecoderSpecificInfo (read), or any other (skipped).
            _ => at = at.checked_add(len)?,
        }
    }
    Some(())
}

/// `Some` if no sample size a fragment states exceeds `total`: each sample's in a `trun`, the
/// default in a `tfhd` or `trex`. A fragmented MP4's packets are read at the sizes these
/// state, each allocated before it is read.
fn fragment_sizes_fit(kind: &[u8; 4], body: &[u8], total: usize) -> Option<()> {
    let word = |at: usize| {
        body.get(at..at + 4).map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]) as usize)
    };
    let flags = word(0).unwrap_or(0) & 0x00FF_FFFF;
    let present = |bit: usize| usize::from(flags & bit != 0) * 4;
    let fits = |at: usize| word(at).is_none_or(|size| size <= total);
    match kind {
        // Track id, then: base data offset (8), sample description index, default duration,
        // default size.
        b"tfhd" if flags & 0x10 != 0 => {
            fits(8 + present(0x1) * 2 + present(0x2) + present(0x8)).then_some(())
        }
        // Track id, default description index, default duration, default size.
        b"trex" => fits(16).then_some(()),
        b"trun" => {
            // Count, data offset, first sample's flags; then per sample: duration, size,
            // flags, composition offset, as the flags say.
            let count = word(4)?;
            let mut at = 8 + present(0x1) + present(0x4);
            let per = present(0x100) + present(0x200) + present(0x400) + present(0x800);
            for _ in 0..count {
                if flags & 0x200 != 0 && !fits(at + present(0x100)) {
                    return None;
                }
                if per == 0 || at + per > body.len() {
                    break;
                }
                at += per;
            }
            Some(())
        }
        _ => Some(()),
    }
}

/// `Some` if no sample size in an `stsz` body exceeds `total`.
fn stsz_fits(body: &[u8], total: usize) -> Option<()> {
    let word = |at: usize| {
        body.get(at..at + 4).map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]) as usize)
    };
    if word(4)? > total {
        return None;
    }
    let mut at = 12;
    while let Some(size) = word(at) {
        if size > total {
            return None;
        }
        at += 4;
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ai::probe::samples::fixture;

    /// The whole upload's boxes fit.
    fn fits(data: &[u8]) -> bool {
        mp4_boxes(data, data.len(), 0, false).is_some()
    }

    /// Lengths symphonia allocates before reading, stated beyond what the box holds: an M4A's
    /// sample tables (4 G entries: up to 48 GiB reserved) and its DecoderSpecificInfo (28
    /// bits: 256 MiB, which a ceiling on address space lets through, so checked here). The
    /// fixture itself passes; each damaged copy is refused before symphonia reads it.
    #[test]
    fn mp4_tables_and_descriptors_must_fit_their_box() {
        let m4a = fixture("tone-2.5s.m4a");
        assert!(fits(&m4a));
        for table in [b"stts", b"stsc", b"stco"] {
            let Some(at) = m4a.windows(4).position(|w| w == table) else { continue };
            let mut damaged = m4a.clone();
            damaged[at + 8..at + 12].copy_from_slice(&u32::MAX.to_be_bytes());
            assert!(!fits(&damaged), "{}", String::from_utf8_lossy(table));
            // One entry more than the box holds.
            let size = u32::from_be_bytes(m4a[at - 4..at].try_into().unwrap()) as usize;
            let entry = MP4_TABLES.iter().find(|(k, _)| *k == table).unwrap().1;
            let mut one_more = m4a.clone();
            let count = ((size - 16) / entry + 1) as u32;
            one_more[at + 8..at + 12].copy_from_slice(&count.to_be_bytes());
            assert!(!fits(&one_more), "{}", String::from_utf8_lossy(table));
        }
        let esds = m4a.windows(4).position(|w| w == b"esds").unwrap();
        let info = esds + m4a[esds..].windows(4).position(|w| w == [5, 0x80, 0x80, 0x80]).unwrap();
        let mut damaged = m4a.clone();
        damaged[info + 1..info + 5].copy_from_slice(&[0xFF, 0xFF, 0xFF, 0x7F]);
        assert!(!fits(&damaged), "a DecoderSpecificInfo of 256 MiB");
        let refused = crate::ai::probe::audio_duration(damaged.into());
        assert!(matches!(refused, Err(crate::ai::probe::ProbeError::Corrupt(_))));
    }

    /// A fragmented MP4's sample sizes (each read into a buffer of its size): in a `trun`, or
    /// the default of a `tfhd` or a `trex`, none may exceed the upload.
    #[test]
    fn fragment_sample_sizes_must_fit_the_upload() {
        let boxed = |kind: &[u8; 4], body: &[u8]| {
            let mut b = ((body.len() + 8) as u32).to_be_bytes().to_vec();
            b.extend(kind);
            b.extend(body);
            b
        };
        let words = |ws: &[u32]| ws.iter().flat_map(|w| w.to_be_bytes()).collect::<Vec<u8>>();
        // trun: sizes and durations present (0x300), two samples.
        let trun = |size: u32| boxed(b"trun", &words(&[0x300, 2, 1024, 100, 1024, size]));
        // tfhd: default size present (0x10), after the track id.
        let tfhd = |size: u32| boxed(b"tfhd", &words(&[0x10, 1, size]));
        let trex = |size: u32| boxed(b"trex", &words(&[0, 1, 1, 1024, size, 0]));
        let fragment = |trun: Vec<u8>, tfhd: Vec<u8>| {
            let mut traf = tfhd;
            traf.extend(trun);
            boxed(b"moof", &boxed(b"traf", &traf))
        };
        // As in an upload of 1 MiB.
        let check = |boxes: Vec<u8>| mp4_boxes(&boxes, 1 << 20, 0, false);
        assert!(check(fragment(trun(100), tfhd(100))).is_some());
        assert!(check(fragment(trun(u32::MAX), tfhd(100))).is_none(), "a sample of 4 GiB");
        assert!(check(fragment(trun(100), tfhd(u32::MAX))).is_none(), "a default of 4 GiB");
        assert!(check(boxed(b"moov", &boxed(b"mvex", &trex(100)))).is_some());
        assert!(check(boxed(b"moov", &boxed(b"mvex", &trex(u32::MAX)))).is_none());
    }
}
