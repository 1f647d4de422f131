//! The input video's codec, read from the segment itself, and the decoder capabilities it
//! asks of orchestrators, as go-livepeer's gateway derives them.
//!
//! go-livepeer probes each pushed segment with lpms `GetCodecInfoBytes` (ffmpeg's demuxer and
//! decoder) and maps ffmpeg's decoder name through `FfmpegNameToVideoCodec`
//! (server/mediaserver.go `HandlePush`): `h264`, `hevc`, `vp8`, `vp9`; any other name is a 422
//! `Unknown input stream codec=<name>`, and a segment without video keeps the default codec,
//! H.264. core/capabilities.go `JobCapabilities` then asks for the codec's decoder (H.264 0,
//! HEVC 15, VP8 17, VP9 18) and, for H.264, for the pixel format's decoder (21–25 for 4:4:4
//! and 4:2:2 at 8 bits and every layout at 10 bits), refusing a pixel format it has no
//! capability for (12 bits).
//!
//! Here the same is read without a child process: the MPEG-TS PMT's stream type (as ffmpeg's
//! `mpegts` demuxer maps it) or the MP4 sample entry names the codec, and H.264's sequence
//! parameter set gives the chroma format and bit depth, which is all of the pixel format the
//! capabilities look at. The scan stops at the first video track's parameter set.

use crate::ingest::cutter::{pat_pmt_pid, split_packet};

use super::profiles::Format;

/// Decoder capability ids (PROTOCOL.md §3.1, go-livepeer core/capabilities.go).
mod cap {
    pub(super) const H264: u32 = 0;
    pub(super) const HEVC_DECODE: u32 = 15;
    pub(super) const VP8_DECODE: u32 = 17;
    pub(super) const VP9_DECODE: u32 = 18;
    pub(super) const H264_444_8: u32 = 21;
    pub(super) const H264_422_8: u32 = 22;
    pub(super) const H264_444_10: u32 = 23;
    pub(super) const H264_422_10: u32 = 24;
    pub(super) const H264_420_10: u32 = 25;
}

/// How much of the video elementary stream is searched for H.264's parameter set: encoders put
/// it at the head of the first keyframe, within the first few hundred bytes.
const ES_SCAN: usize = 64 << 10;

/// What an orchestrator must decode to transcode a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub enum InputVideo {
    /// H.264 at 4:2:0 8 bits, or a pixel format lpms does not classify (9 or 14 bits), or a
    /// segment without video (go-livepeer's default codec).
    #[default]
    H264,
    /// H.264 4:4:4 8-bit.
    H264Yuv444,
    /// H.264 4:2:2 8-bit.
    H264Yuv422,
    /// H.264 4:4:4 10-bit.
    H264Yuv444P10,
    /// H.264 4:2:2 10-bit.
    H264Yuv422P10,
    /// H.264 4:2:0 10-bit.
    H264Yuv420P10,
    /// HEVC.
    Hevc,
    /// VP8.
    Vp8,
    /// VP9.
    Vp9,
}

impl InputVideo {
    /// The capability ids the input asks for (go-livepeer's `JobCapabilities` input part).
    pub fn capabilities(self) -> &'static [u32] {
        match self {
            Self::H264 => &[cap::H264],
            Self::H264Yuv444 => &[cap::H264, cap::H264_444_8],
            Self::H264Yuv422 => &[cap::H264, cap::H264_422_8],
            Self::H264Yuv444P10 => &[cap::H264, cap::H264_444_10],
            Self::H264Yuv422P10 => &[cap::H264, cap::H264_422_10],
            Self::H264Yuv420P10 => &[cap::H264, cap::H264_420_10],
            Self::Hevc => &[cap::HEVC_DECODE],
            Self::Vp8 => &[cap::VP8_DECODE],
            Self::Vp9 => &[cap::VP9_DECODE],
        }
    }
}

/// Why a segment's video cannot be transcoded by any orchestrator: the client's input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// A video codec go-livepeer does not map (its 422 text, with ffmpeg's decoder name).
    #[error("Unknown input stream codec={0}")]
    Unknown(&'static str),
    /// H.264 in a pixel format no capability covers (go-livepeer's `JobCapabilities` text:
    /// lpms's chroma subsampling 0/1/2 for 4:2:0/4:2:2/4:4:4, bits above 8).
    #[error("capability: unsupported pixel format chroma={chroma} colorBits={bits}")]
    PixelFormat {
        /// lpms `ChromaSubsampling`.
        chroma: u8,
        /// lpms `ColorDepthBits`: the bit depth less 8.
        bits: u8,
    },
}

/// The video a segment in `format` holds, as go-livepeer's gateway classifies it.
pub(super) fn probe(data: &[u8], format: Format) -> Result<InputVideo, CodecError> {
    match format {
        Format::MpegTs => probe_ts(data),
        Format::Mp4 => probe_mp4(data),
    }
}

/// A video codec as a container names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Video {
    H264,
    Hevc,
    Vp8,
    Vp9,
    /// One go-livepeer has no capability for, by ffmpeg's decoder name.
    Other(&'static str),
}

impl Video {
    /// The input of a video whose H.264 parameter set (if any) is `sps`.
    fn input(self, sps: Option<&[u8]>) -> Result<InputVideo, CodecError> {
        match self {
            Self::H264 => sps.and_then(sps_format).map_or(Ok(InputVideo::H264), h264_input),
            Self::Hevc => Ok(InputVideo::Hevc),
            Self::Vp8 => Ok(InputVideo::Vp8),
            Self::Vp9 => Ok(InputVideo::Vp9),
            Self::Other(name) => Err(CodecError::Unknown(name)),
        }
    }
}

/// The video of an MPEG-TS stream type (ffmpeg `mpegts.c` `ISO_types`), or of a stream
/// registration descriptor's format identifier (`REGD_types`) for the types it does not know.
fn ts_video(stream_type: u8, registration: Option<&[u8]>) -> Option<Video> {
    Some(match stream_type {
        0x1b | 0x20 => Video::H264,
        0x24 => Video::Hevc,
        0x01 | 0x02 => Video::Other("mpeg2video"),
        0x10 => Video::Other("mpeg4"),
        0x21 => Video::Other("jpeg2000"),
        0x42 => Video::Other("cavs"),
        0xd1 => Video::Other("dirac"),
        0xd2 => Video::Other("avs2"),
        0xd4 => Video::Other("avs3"),
        0xea => Video::Other("vc1"),
        _ => match registration? {
            b"HEVC" => Video::Hevc,
            b"VC-1" => Video::Other("vc1"),
            b"drac" => Video::Other("dirac"),
            b"AV01" => Video::Other("av1"),
            _ => return None,
        },
    })
}

/// The first video stream a PMT section lists, with its PID: `None` when the section cannot
/// be read, `Some(None)` when it lists no video.
fn pmt_video(payload: &[u8]) -> Option<Option<(u16, Video)>> {
    let pointer = usize::from(*payload.first()?);
    let s = payload.get(1 + pointer..)?;
    if *s.first()? != 0x02 || s.len() < 12 {
        return None;
    }
    let section_len = usize::from(u16::from_be_bytes([s[1] & 0x0f, s[2]]));
    // The entries end before the CRC; a section longer than its packet is read as far as it
    // goes (a PMT of a few streams fits one packet).
    let end = (3 + section_len).saturating_sub(4).min(s.len());
    let mut at = 12 + usize::from(u16::from_be_bytes([s[10] & 0x0f, s[11]]));
    while at + 5 <= end {
        let stream_type = s[at];
        let pid = u16::from_be_bytes([s[at + 1] & 0x1f, s[at + 2]]);
        let info_len = usize::from(u16::from_be_bytes([s[at + 3] & 0x0f, s[at + 4]]));
        let info = s.get(at + 5..(at + 5 + info_len).min(end)).unwrap_or_default();
        if let Some(video) = ts_video(stream_type, registration(info)) {
            return Some(Some((pid, video)));
        }
        at += 5 + info_len;
    }
    Some(None)
}

/// The format identifier of a registration descriptor (tag 5) among `descriptors`.
fn registration(mut descriptors: &[u8]) -> Option<&[u8]> {
    while let [tag, len, rest @ ..] = descriptors {
        let body = rest.get(..usize::from(*len))?;
        if *tag == 0x05 {
            return body.get(..4);
        }
        descriptors = &rest[usize::from(*len)..];
    }
    None
}

/// The PES payload of a packet payload: the PES header skipped at a unit start.
fn pes_data(payload: &[u8], start: bool) -> &[u8] {
    if !start {
        return payload;
    }
    match payload {
        [0, 0, 1, _, _, _, _, _, len, ..] => payload.get(9 + usize::from(*len)..).unwrap_or(&[]),
        _ => &[],
    }
}

fn probe_ts(data: &[u8]) -> Result<InputVideo, CodecError> {
    let mut pmt_pid: Option<u16> = None;
    let mut video: Option<(u16, Video)> = None;
    let mut es: Vec<u8> = Vec::new();
    for p in data.chunks_exact(188) {
        let Ok(p) = <&[u8; 188]>::try_from(p) else { break };
        if p[0] != 0x47 {
            break;
        }
        let start = p[1] & 0x40 != 0;
        let pid = u16::from_be_bytes([p[1] & 0x1f, p[2]]);
        let payload = split_packet(p).1;
        match video {
            Some((vpid, _)) if pid == vpid => {
                let before = es.len();
                es.extend_from_slice(pes_data(payload, start));
                // Searched each time the buffer doubles past 256 bytes: a few searches in all.
                let doubled = es.len() >= 256 && es.len().ilog2() > before.max(1).ilog2();
                if es.len() >= ES_SCAN || doubled && find_sps(&es).is_some_and(|s| s.len() >= 8) {
                    break;
                }
            }
            Some(_) => {}
            None if pid == 0 && start => pmt_pid = pat_pmt_pid(payload).or(pmt_pid),
            None if start && Some(pid) == pmt_pid => match pmt_video(payload) {
                // The program has no video: go-livepeer's default codec.
                Some(None) => return Ok(InputVideo::H264),
                Some(Some((vpid, Video::H264))) => video = Some((vpid, Video::H264)),
                Some(Some((_, other))) => return other.input(None),
                None => {}
            },
            None => {}
        }
    }
    match video {
        Some((_, v)) => v.input(find_sps(&es)),
        // No program table or no video: go-livepeer's default codec.
        None => Ok(InputVideo::H264),
    }
}

/// The first H.264 sequence parameter set NAL unit in an Annex B stream, from its header
/// byte to the next start code (or the end).
fn find_sps(es: &[u8]) -> Option<&[u8]> {
    let mut at = 0;
    while let Some(i) = es.get(at..)?.windows(3).position(|w| w == [0, 0, 1]) {
        let nal = at + i + 3;
        if es.get(nal).is_some_and(|h| h & 0x1f == 7) {
            let rest = &es[nal..];
            let end = rest.windows(3).position(|w| w == [0, 0, 1] || w == [0, 0, 0]);
            return Some(&rest[..end.unwrap_or(rest.len())]);
        }
        at = nal;
    }
    None
}

/// (chroma_format_idc, bit depth of luma) of an SPS NAL unit (header byte included).
fn sps_format(nal: &[u8]) -> Option<(u32, u32)> {
    // Emulation prevention bytes (00 00 03) removed over the few bytes read.
    let mut rbsp = Vec::with_capacity(32);
    let mut zeros = 0;
    for &b in nal.iter().skip(1).take(64) {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        rbsp.push(b);
    }
    let profile = *rbsp.first()?;
    let mut bits = Bits { data: rbsp.get(3..)?, at: 0 };
    bits.ue()?; // seq_parameter_set_id
    // The profiles whose SPS carries the chroma format and bit depth; others are 4:2:0 8-bit.
    if ![100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135].contains(&profile) {
        return Some((1, 8));
    }
    let chroma = bits.ue()?;
    if chroma == 3 {
        bits.bit()?; // separate_colour_plane_flag
    }
    Some((chroma, bits.ue()?.checked_add(8)?))
}

/// What go-livepeer asks for H.264 of this chroma format and bit depth: ffmpeg's pixel format
/// (4:0:0 decodes as 4:2:0) read through lpms `PixelFormat.Properties`, which places 8, 10,
/// 12 and 16 bits only.
fn h264_input((chroma, depth): (u32, u32)) -> Result<InputVideo, CodecError> {
    let layout: u8 = match chroma {
        0 | 1 => 0,
        2 => 1,
        _ => 2,
    };
    Ok(match (layout, depth) {
        (0, 8) => InputVideo::H264,
        (1, 8) => InputVideo::H264Yuv422,
        (2, 8) => InputVideo::H264Yuv444,
        (0, 10) => InputVideo::H264Yuv420P10,
        (1, 10) => InputVideo::H264Yuv422P10,
        (2, 10) => InputVideo::H264Yuv444P10,
        (chroma, 12 | 16) => {
            return Err(CodecError::PixelFormat { chroma, bits: (depth - 8) as u8 });
        }
        _ => InputVideo::H264,
    })
}

/// A big-endian bit reader with Exp-Golomb codes.
struct Bits<'a> {
    data: &'a [u8],
    at: usize,
}

impl Bits<'_> {
    fn bit(&mut self) -> Option<u32> {
        let byte = self.data.get(self.at / 8)?;
        let b = (byte >> (7 - self.at % 8)) & 1;
        self.at += 1;
        Some(u32::from(b))
    }

    fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        let mut v: u64 = 1;
        for _ in 0..zeros {
            v = (v << 1) | u64::from(self.bit()?);
        }
        u32::try_from(v - 1).ok()
    }
}

/// The boxes of an MP4 byte range: (type, body).
fn boxes(mut data: &[u8]) -> impl Iterator<Item = ([u8; 4], &[u8])> {
    std::iter::from_fn(move || {
        let size = u32::from_be_bytes(data.get(..4)?.try_into().ok()?) as usize;
        let kind: [u8; 4] = data.get(4..8)?.try_into().ok()?;
        let (head, size) = match size {
            0 => (8, data.len()),
            1 => (16, usize::try_from(u64::from_be_bytes(data.get(8..16)?.try_into().ok()?)).ok()?),
            n => (8, n),
        };
        let body = data.get(head..size)?;
        data = &data[size..];
        Some((kind, body))
    })
}

fn child<'a>(data: &'a [u8], kind: &[u8; 4]) -> Option<&'a [u8]> {
    boxes(data).find(|(k, _)| k == kind).map(|(_, b)| b)
}

/// The video of an MP4 file: the first `vide` track's first sample entry (ffmpeg's `mov`
/// demuxer names the codec by it).
fn probe_mp4(data: &[u8]) -> Result<InputVideo, CodecError> {
    let Some(moov) = child(data, b"moov") else { return Ok(InputVideo::H264) };
    for (_, trak) in boxes(moov).filter(|(k, _)| k == b"trak") {
        let Some(mdia) = child(trak, b"mdia") else { continue };
        if child(mdia, b"hdlr").and_then(|h| h.get(8..12)) != Some(b"vide") {
            continue;
        }
        let stsd = child(mdia, b"minf")
            .and_then(|m| child(m, b"stbl"))
            .and_then(|s| child(s, b"stsd"))
            .and_then(|s| s.get(8..));
        let Some((kind, entry)) = stsd.and_then(|s| boxes(s).next()) else { continue };
        let video = match &kind {
            b"avc1" | b"avc3" => Video::H264,
            b"hvc1" | b"hev1" => Video::Hevc,
            b"vp08" => Video::Vp8,
            b"vp09" => Video::Vp9,
            b"av01" => Video::Other("av1"),
            b"mp4v" => Video::Other("mpeg4"),
            _ => continue,
        };
        // A visual sample entry's fields take 78 bytes before its own boxes (`avcC`).
        let sps = entry.get(78..).and_then(|e| child(e, b"avcC")).and_then(avcc_sps);
        return video.input(sps);
    }
    Ok(InputVideo::H264)
}

/// The first SPS of an `avcC` record.
fn avcc_sps(avcc: &[u8]) -> Option<&[u8]> {
    if avcc.get(5)? & 0x1f == 0 {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([*avcc.get(6)?, *avcc.get(7)?]));
    avcc.get(8..8 + len)
}

#[cfg(test)]
mod tests;
