//! Checks of the lengths inside audio metadata (Vorbis comments and pictures, in FLAC and
//! Ogg) and inside Matroska blocks, before symphonia reads them. Its metadata readers allocate a buffer of each stated
//! length before reading it: a comment or a picture may state up to 4 GiB in a few bytes,
//! and an allocation that cannot be had (a small machine, `ulimit -v`, strict overcommit)
//! aborts the whole process, which no `catch_unwind` prevents. Its other readers are bounded
//! by the 16 MiB of a FLAC block or the packet they read from.

use base64::Engine as _;

/// Ogg packets looked at per logical stream: the comment header is the second (Vorbis, Opus),
/// FLAC's metadata blocks follow its first; a few more cover a FLAC picture block.
const OGG_HEAD_PACKETS: usize = 8;
/// Ogg pages looked at: the headers of any real stream come within its first pages.
const OGG_HEAD_PAGES: usize = 256;

/// `Some` if every Vorbis comment and picture of a FLAC or Ogg upload fits where it is, and
/// every frame size of a Matroska/WebM block within its block. Other data is not looked at.
pub(super) fn metadata_fits(data: &[u8]) -> Option<()> {
    if let Some(blocks) = data.strip_prefix(b"fLaC") {
        return flac_blocks(blocks);
    }
    if data.starts_with(b"OggS") {
        return ogg_packets(data);
    }
    if data.starts_with(&[0x1A, 0x45, 0xDF, 0xA3]) {
        return mkv_blocks_fit(data);
    }
    Some(())
}

/// FLAC metadata blocks: a byte (last flag, type), a 24-bit length, the body.
fn flac_blocks(mut blocks: &[u8]) -> Option<()> {
    while let [head, l0, l1, l2, rest @ ..] = blocks {
        let len = usize::from(*l0) << 16 | usize::from(*l1) << 8 | usize::from(*l2);
        // A block cut short is read as far as it goes; the reader then fails.
        let body = &rest[..len.min(rest.len())];
        flac_block(head & 0x7f, body)?;
        if head & 0x80 != 0 || len > rest.len() {
            return Some(());
        }
        blocks = &rest[len..];
    }
    Some(())
}

/// One FLAC metadata block of `kind`.
fn flac_block(kind: u8, body: &[u8]) -> Option<()> {
    match kind {
        4 => comments_fit(body),
        6 => picture_fits(body),
        _ => Some(()),
    }
}

/// A Vorbis comment block without framing (little-endian lengths): vendor, count, comments.
/// Pictures carried as `METADATA_BLOCK_PICTURE` (base64) are checked too.
fn comments_fit(body: &[u8]) -> Option<()> {
    let mut at = 0usize;
    let word = |at: &mut usize| -> Option<usize> {
        let w = body.get(*at..*at + 4)?;
        *at += 4;
        usize::try_from(u32::from_le_bytes(w.try_into().ok()?)).ok()
    };
    let Some(vendor) = word(&mut at) else { return Some(()) };
    at = at.checked_add(vendor)?;
    if at > body.len() {
        return None;
    }
    let Some(count) = word(&mut at) else { return Some(()) };
    for _ in 0..count {
        let Some(len) = word(&mut at) else { return Some(()) };
        let comment = body.get(at..at.checked_add(len)?)?;
        at += len;
        let picture = b"METADATA_BLOCK_PICTURE=";
        if comment.len() > picture.len() && comment[..picture.len()].eq_ignore_ascii_case(picture) {
            // symphonia decodes it and reads it as a FLAC picture block.
            let engine = base64::engine::general_purpose::STANDARD;
            if let Ok(block) = engine.decode(&comment[picture.len()..]) {
                picture_fits(&block)?;
            }
        }
    }
    Some(())
}

/// A FLAC picture block (big-endian): type, media type, description, four numbers, data.
fn picture_fits(body: &[u8]) -> Option<()> {
    let word = |at: usize| -> Option<usize> {
        let w = body.get(at..at + 4)?;
        usize::try_from(u32::from_be_bytes(w.try_into().ok()?)).ok()
    };
    let mut at = 4usize;
    for skip_after in [0usize, 16] {
        let Some(len) = word(at) else { return Some(()) };
        at = at.checked_add(4)?.checked_add(len)?;
        if at > body.len() {
            return None;
        }
        at += skip_after;
    }
    // The picture data's length.
    match word(at) {
        Some(len) if at + 4 + len > body.len() => None,
        _ => Some(()),
    }
}

/// The first packets of each logical stream of an Ogg upload: comment headers and FLAC
/// metadata blocks must fit the packet carrying them.
fn ogg_packets(mut data: &[u8]) -> Option<()> {
    // Per serial number: the packet being gathered and how many were seen.
    let mut streams: Vec<(u32, Vec<u8>, usize)> = Vec::new();
    for _ in 0..OGG_HEAD_PAGES {
        let Some(head) = data.get(..27) else { return Some(()) };
        if &head[..4] != b"OggS" {
            return Some(());
        }
        let serial = u32::from_le_bytes(head[14..18].try_into().ok()?);
        let lacing = data.get(27..27 + usize::from(head[26]))?;
        let mut body = &data[27 + lacing.len()..];
        let at = match streams.iter().position(|s| s.0 == serial) {
            Some(at) => at,
            None => {
                streams.push((serial, Vec::new(), 0));
                streams.len() - 1
            }
        };
        let stream = &mut streams[at];
        for &len in lacing {
            let part = body.get(..usize::from(len)).unwrap_or(body);
            body = &body[part.len()..];
            if stream.2 < OGG_HEAD_PACKETS {
                stream.1.extend_from_slice(part);
            }
            if len < 255 {
                if stream.2 < OGG_HEAD_PACKETS {
                    ogg_packet(&stream.1, stream.2)?;
                }
                stream.1.clear();
                stream.2 += 1;
            }
        }
        data = body;
    }
    Some(())
}

/// The `index`th packet of a logical stream.
fn ogg_packet(packet: &[u8], index: usize) -> Option<()> {
    if let Some(body) = packet.strip_prefix(b"\x03vorbis") {
        return comments_fit(body);
    }
    if let Some(body) = packet.strip_prefix(b"OpusTags") {
        return comments_fit(body);
    }
    // FLAC in Ogg: after the `\x7fFLAC` packet, one metadata block per packet.
    if index > 0
        && !packet.starts_with(b"\x7fFLAC")
        && let [head, _, _, _, body @ ..] = packet
    {
        return flac_block(head & 0x7f, body);
    }
    Some(())
}

/// Matroska masters (symphonia's element table, `Type::Master`): the demuxer reads their
/// children as the elements that follow, so the walk below enters them too.
const MKV_MASTERS: [u32; 31] = [
    0x1A45_DFA3,
    0x1853_8067,
    0x114D_9B74,
    0x4DBB,
    0x1549_A966,
    0x1F43_B675,
    0xA0,
    0x75A1,
    0xA6,
    0x1654_AE6B,
    0xAE,
    0xE0,
    0xE1,
    0x6D80,
    0x6240,
    0x5035,
    0x47E7,
    0x55B0,
    0x55D0,
    0x1C53_BB6B,
    0xBB,
    0xB7,
    0x1043_A770,
    0x45B9,
    0xB6,
    0x80,
    0x1254_C367,
    0x7373,
    0x63C0,
    0x67C8,
    0x1941_A469,
];
/// `SimpleBlock` and `Block`: what symphonia splits into frames by their lacing.
const MKV_BLOCKS: [u32; 2] = [0xA3, 0xA1];

/// `Some` if every block of a Matroska/WebM upload states frame sizes within the block.
/// symphonia computes EBML-laced frame sizes by adding signed deltas with no check and
/// allocates each before reading it: a block a few bytes long could ask for terabytes (seen:
/// 3.3 TB), which aborts the process. The walk is strict so that it sees the blocks the
/// demuxer sees: every element header must be well-formed and every child must end within
/// its parent; anything else is refused as corrupt.
fn mkv_blocks_fit(data: &[u8]) -> Option<()> {
    // Ends of the masters entered whose size is known.
    let mut open: Vec<usize> = Vec::new();
    let mut at = 0usize;
    while at < data.len() {
        while open.last().is_some_and(|end| *end <= at) {
            open.pop();
        }
        let Some((id, id_len)) = mkv_id(&data[at..]) else {
            // A header cut off by the end of the upload is the demuxer's end too.
            return (data.len() - at < 12).then_some(());
        };
        let Some((size, size_len)) = data.get(at + id_len..).and_then(vint) else {
            return (data.len() - at < 12).then_some(());
        };
        let body = at + id_len + size_len;
        let end = size.and_then(|s| body.checked_add(usize::try_from(s).ok()?));
        if let (Some(end), Some(parent)) = (end, open.last())
            && end > *parent
        {
            return None;
        }
        if MKV_MASTERS.contains(&id) {
            open.extend(end);
            at = body;
            continue;
        }
        // A leaf of unknown size has no end the demuxer could find either.
        let end = end?;
        if MKV_BLOCKS.contains(&id) {
            lacing_fits(&data[body.min(data.len())..end.min(data.len())])?;
        }
        at = end;
    }
    Some(())
}

/// An element id (1 to 4 bytes, its marker kept, as symphonia reads it) and its length.
fn mkv_id(data: &[u8]) -> Option<(u32, usize)> {
    let first = *data.first()?;
    let len = first.leading_zeros() as usize + 1;
    if len > 4 {
        return None;
    }
    let bytes = data.get(..len)?;
    Some((bytes.iter().fold(0u32, |id, b| id << 8 | u32::from(*b)), len))
}

/// An EBML variable-size integer (`None` value: the unknown size, `0xFF`) and its length.
fn vint(data: &[u8]) -> Option<(Option<u64>, usize)> {
    let first = *data.first()?;
    if first == 0xFF {
        return Some((None, 1));
    }
    let len = first.leading_zeros() as usize + 1;
    if len > 8 {
        return None;
    }
    let bytes = data.get(..len)?;
    let marker_cleared = u64::from(first) & (0xFF >> len);
    let value = bytes[1..].iter().fold(marker_cleared, |v, b| v << 8 | u64::from(*b));
    Some((Some(value), len))
}

/// A block's EBML lacing: the first size and each size after it (the last one's plus a
/// signed delta) must lie within the block. Other lacings cannot state more than the block.
fn lacing_fits(block: &[u8]) -> Option<()> {
    // The track number, then a 2-byte timestamp and the flags.
    let Some((_, track_len)) = vint(block) else { return Some(()) };
    let Some(&flags) = block.get(track_len + 2) else { return Some(()) };
    if (flags >> 1) & 0b11 != 0b11 {
        return Some(());
    }
    let Some(&frames) = block.get(track_len + 3) else { return Some(()) };
    let mut at = track_len + 4;
    let most = i128::try_from(block.len()).ok()?;
    let mut last: Option<i128> = None;
    for _ in 0..frames {
        let Some((value, len)) = block.get(at..).and_then(vint) else { return Some(()) };
        at += len;
        // The unknown-size marker reads as u64::MAX in the demuxer.
        let value = i128::from(value.unwrap_or(u64::MAX));
        let size = match last {
            None => value,
            // A signed vint: the value less half its range.
            Some(last) => last + value - ((1i128 << (len * 7 - 1)) - 1),
        };
        if !(0..=most).contains(&size) {
            return None;
        }
        last = Some(size);
    }
    Some(())
}
