//! FLV framing of RTMP media messages, so that ffmpeg's FLV demuxer can read a published
//! stream from a pipe.
//!
//! RTMP carries audio and video messages whose bodies are exactly FLV tag bodies; what FLV
//! adds is a 9-byte file header and an 11-byte header plus a 4-byte trailer around each
//! tag. That is all this module writes: a few lines, not worth a crate (no maintained Rust
//! crate writes FLV without also owning the transport).

/// The kind of an FLV tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagKind {
    /// An audio message (FLV tag type 8).
    Audio,
    /// A video message (FLV tag type 9).
    Video,
}

impl TagKind {
    fn code(self) -> u8 {
        match self {
            TagKind::Audio => 8,
            TagKind::Video => 9,
        }
    }
}

/// Largest tag body FLV can frame: the size field has 24 bits.
pub const MAX_TAG_BODY: usize = (1 << 24) - 1;

/// The FLV file header announcing audio and video, followed by the zero "previous tag size"
/// that precedes the first tag.
pub fn file_header() -> [u8; 13] {
    // "FLV", version 1, flags audio (4) | video (1), header length 9, then PreviousTagSize0.
    [b'F', b'L', b'V', 1, 0x05, 0, 0, 0, 9, 0, 0, 0, 0]
}

/// Appends one tag (header, body and trailing size) to `out`. `None` when the body is too
/// large for FLV's 24-bit size field; the caller drops such a message.
pub fn write_tag(out: &mut Vec<u8>, kind: TagKind, timestamp_ms: u32, body: &[u8]) -> Option<()> {
    if body.len() > MAX_TAG_BODY {
        return None;
    }
    let size = body.len() as u32;
    out.reserve(11 + body.len() + 4);
    out.push(kind.code());
    out.extend_from_slice(&size.to_be_bytes()[1..]);
    // The timestamp's low 24 bits, then its high 8 bits (TimestampExtended).
    let ts = timestamp_ms.to_be_bytes();
    out.extend_from_slice(&[ts[1], ts[2], ts[3], ts[0]]);
    out.extend_from_slice(&[0, 0, 0]); // stream id, always 0
    out.extend_from_slice(body);
    out.extend_from_slice(&(11 + size).to_be_bytes());
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_is_framed_with_its_sizes_and_extended_timestamp() {
        let mut out = Vec::new();
        write_tag(&mut out, TagKind::Video, 0x0102_0304, &[0xAA, 0xBB]).unwrap();
        assert_eq!(out, [9, 0, 0, 2, 0x02, 0x03, 0x04, 0x01, 0, 0, 0, 0xAA, 0xBB, 0, 0, 0, 13]);
    }

    #[test]
    fn a_body_over_24_bits_is_refused() {
        let mut out = Vec::new();
        let body = vec![0u8; MAX_TAG_BODY + 1];
        assert!(write_tag(&mut out, TagKind::Audio, 0, &body).is_none());
        assert!(out.is_empty());
    }
}
