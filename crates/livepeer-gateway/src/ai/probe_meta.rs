//! Checks of the lengths inside audio metadata (Vorbis comments and pictures, in FLAC and
//! Ogg), before symphonia reads them. Its metadata readers allocate a buffer of each stated
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

/// `Some` if every Vorbis comment and picture of a FLAC or Ogg upload fits where it is.
/// Other data is not looked at.
pub(super) fn metadata_fits(data: &[u8]) -> Option<()> {
    if let Some(blocks) = data.strip_prefix(b"fLaC") {
        return flac_blocks(blocks);
    }
    if data.starts_with(b"OggS") {
        return ogg_packets(data);
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
