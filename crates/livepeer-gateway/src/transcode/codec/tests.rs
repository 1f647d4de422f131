use super::*;

const PMT_PID: u16 = 0x1000;
const VIDEO_PID: u16 = 0x100;

fn packet(pid: u16, start: bool, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x47, (pid >> 8) as u8 | if start { 0x40 } else { 0 }, pid as u8, 0x10];
    p.extend_from_slice(payload);
    p.resize(188, 0xff);
    p
}

fn pat() -> Vec<u8> {
    let mut s = vec![0, 0x00, 0xb0, 0x0d, 0, 1, 0xc1, 0, 0];
    s.extend_from_slice(&[0, 1, 0xe0 | (PMT_PID >> 8) as u8, PMT_PID as u8]);
    s.extend_from_slice(&[0; 4]);
    packet(0, true, &s)
}

/// A PMT listing `streams`: (stream type, PID, descriptors).
fn pmt(streams: &[(u8, u16, &[u8])]) -> Vec<u8> {
    let mut entries = Vec::new();
    for (kind, pid, info) in streams {
        entries.extend_from_slice(&[*kind, 0xe0 | (pid >> 8) as u8, *pid as u8]);
        entries.extend_from_slice(&[0xf0, info.len() as u8]);
        entries.extend_from_slice(info);
    }
    let len = 9 + entries.len() + 4;
    let mut s = vec![0, 0x02, 0xb0, len as u8, 0, 1, 0xc1, 0, 0, 0xe1, 0, 0xf0, 0];
    s.extend_from_slice(&entries);
    s.extend_from_slice(&[0; 4]);
    packet(PMT_PID, true, &s)
}

/// A video PES starting with an access unit delimiter and the SPS `sps`, split over packets
/// so that the SPS straddles two of them.
fn video(sps: &[u8]) -> Vec<u8> {
    let mut es = vec![0, 0, 0, 1, 0x09, 0xf0];
    es.extend_from_slice(&[0; 158]);
    es.extend_from_slice(&[0, 0, 0, 1]);
    es.extend_from_slice(sps);
    es.extend_from_slice(&[0, 0, 0, 1, 0x68, 0xce, 0x38, 0x80]);
    let mut pes = vec![0, 0, 1, 0xe0, 0, 0, 0x80, 0x80, 5, 0x21, 0, 1, 0, 1];
    pes.extend_from_slice(&es);
    let mut out = packet(VIDEO_PID, true, &pes[..184]);
    out.extend(packet(VIDEO_PID, false, &pes[184..]));
    out
}

fn ts(streams: &[(u8, u16, &[u8])], sps: &[u8]) -> Vec<u8> {
    let mut out = pat();
    out.extend(pmt(streams));
    out.extend(video(sps));
    out
}

/// SPS NAL units: High 4:2:0 8-bit, High 4:2:2 10-bit, High 4:4:4 8-bit, High 4:2:0 12-bit,
/// and Main (no chroma fields).
const SPS_HIGH: &[u8] = &[0x67, 100, 0, 0x1e, 0b1010_1000, 0x80];
const SPS_422_10: &[u8] = &[0x67, 122, 0, 0x1e, 0b1011_0111, 0x80];
const SPS_444_8: &[u8] = &[0x67, 244, 0, 0x1e, 0b1001_0001, 0x80];
const SPS_420_12: &[u8] = &[0x67, 100, 0, 0x1e, 0b1010_0010, 0b1000_0000];
const SPS_MAIN: &[u8] = &[0x67, 77, 0, 0x1e, 0xe8, 0x80];

#[test]
fn the_pmt_names_the_codec_as_ffmpeg_maps_it() {
    let h264 = [(0x1b, VIDEO_PID, &[][..]), (0x0f, 0x101, &[][..])];
    assert_eq!(probe(&ts(&h264, SPS_HIGH), Format::MpegTs), Ok(InputVideo::H264));
    let hevc = [(0x0f, 0x101, &[][..]), (0x24, VIDEO_PID, &[][..])];
    assert_eq!(probe(&ts(&hevc, SPS_HIGH), Format::MpegTs), Ok(InputVideo::Hevc));
    // A private stream registered as HEVC is HEVC; registered as AV1 it is a codec go-livepeer
    // cannot map.
    let regd = |id: &'static [u8]| [(0x06u8, VIDEO_PID, id)];
    let hevc = regd(&[0x05, 4, b'H', b'E', b'V', b'C']);
    assert_eq!(probe(&ts(&hevc, &[]), Format::MpegTs), Ok(InputVideo::Hevc));
    let av1 = regd(&[0x0a, 1, 0, 0x05, 4, b'A', b'V', b'0', b'1']);
    assert_eq!(probe(&ts(&av1, &[]), Format::MpegTs), Err(CodecError::Unknown("av1")));
    let mpeg2 = [(0x02, VIDEO_PID, &[][..])];
    let err = probe(&ts(&mpeg2, &[]), Format::MpegTs).unwrap_err();
    assert_eq!(err.to_string(), "Unknown input stream codec=mpeg2video");
    // No video (audio only), or no program table at all: go-livepeer's default, H.264.
    let audio = [(0x0f, 0x101, &[][..])];
    assert_eq!(probe(&ts(&audio, &[]), Format::MpegTs), Ok(InputVideo::H264));
    assert_eq!(probe(&video(SPS_422_10), Format::MpegTs), Ok(InputVideo::H264));
    assert_eq!(probe(&[], Format::MpegTs), Ok(InputVideo::H264));
}

#[test]
fn h264s_pixel_format_asks_for_its_decoder() {
    let h264 = [(0x1b, VIDEO_PID, &[][..])];
    let input = |sps: &[u8]| probe(&ts(&h264, sps), Format::MpegTs);
    assert_eq!(input(SPS_422_10), Ok(InputVideo::H264Yuv422P10));
    assert_eq!(InputVideo::H264Yuv422P10.capabilities(), [0, 24]);
    assert_eq!(input(SPS_444_8), Ok(InputVideo::H264Yuv444));
    assert_eq!(input(SPS_MAIN), Ok(InputVideo::H264));
    // 12 bits: lpms places it, and go-livepeer has no capability for it.
    let err = input(SPS_420_12).unwrap_err();
    assert_eq!(err.to_string(), "capability: unsupported pixel format chroma=0 colorBits=4");
    // An emulation prevention byte inside the fields read.
    assert_eq!(sps_format(&[0x67, 122, 0, 0, 3, 0b1011_0111]), Some((2, 10)));
    assert_eq!(h264_input((0, 9)), Ok(InputVideo::H264), "lpms does not place 9 bits");
}

#[test]
fn mp4_sample_entries_name_the_codec() {
    fn mp4_box(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut b = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        b.extend_from_slice(kind);
        b.extend_from_slice(body);
        b
    }
    let file = |entry: &[u8; 4], extra: &[u8]| {
        let mut sample = vec![0u8; 78];
        sample.extend_from_slice(extra);
        let mut stsd = vec![0, 0, 0, 0, 0, 0, 0, 1];
        stsd.extend(mp4_box(entry, &sample));
        let stbl = mp4_box(b"stbl", &mp4_box(b"stsd", &stsd));
        let mut hdlr = vec![0u8; 8];
        hdlr.extend_from_slice(b"vide");
        hdlr.extend_from_slice(&[0; 12]);
        let mut mdia = mp4_box(b"hdlr", &hdlr);
        mdia.extend(mp4_box(b"minf", &stbl));
        let mut out = mp4_box(b"ftyp", b"isom\0\0\0\0");
        out.extend(mp4_box(b"moov", &mp4_box(b"trak", &mp4_box(b"mdia", &mdia))));
        out
    };
    let mut avcc = vec![1, 122, 0, 0x1e, 0xff, 0xe1, 0, SPS_422_10.len() as u8];
    avcc.extend_from_slice(SPS_422_10);
    let avc1 = file(b"avc1", &mp4_box(b"avcC", &avcc));
    assert_eq!(probe(&avc1, Format::Mp4), Ok(InputVideo::H264Yuv422P10));
    assert_eq!(probe(&file(b"hvc1", &[]), Format::Mp4), Ok(InputVideo::Hevc));
    assert_eq!(probe(&file(b"vp09", &[]), Format::Mp4), Ok(InputVideo::Vp9));
    assert_eq!(InputVideo::Vp9.capabilities(), [18]);
    assert_eq!(probe(&file(b"av01", &[]), Format::Mp4), Err(CodecError::Unknown("av1")));
    assert_eq!(probe(b"\0\0\0\x08free", Format::Mp4), Ok(InputVideo::H264));
}
