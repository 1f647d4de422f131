//! The audio probe under a ceiling on address space: no length field of a damaged upload may
//! make a demuxer ask for memory out of proportion to the upload. Such a request is not a
//! panic the probe can catch; where the memory cannot be had (a small machine, `ulimit -v`,
//! strict overcommit) the allocator aborts the whole gateway.

use livepeer_gateway::ai::probe::audio_duration;
use rand::{Rng as _, SeedableRng as _};

use crate::support::*;

const FIXTURES: [&str; 8] = [
    "tone-2.5s.wav",
    "tone-3.5s.mp3",
    "tone-4.5s.flac",
    "tone-5.5s.ogg",
    "tone-2.5s.m4a",
    "tone-1.5s.aac",
    "tone-3.5s.webm",
    "tone-4.5s-live.webm",
];

/// Damaged uploads: runs of one byte (0xFF runs make huge lengths) written anywhere, and the
/// file cut short.
fn damaged(rng: &mut rand::rngs::StdRng, file: &[u8]) -> Vec<u8> {
    let mut data = file.to_vec();
    let len = data.len();
    for _ in 0..rng.random_range(1..6) {
        let start = rng.random_range(0..len);
        let run = rng.random_range(1..9usize);
        data[start..(start + run).min(len)].fill(rng.random());
    }
    data.truncate(rng.random_range(len / 20..=len) + 1);
    data
}

#[test]
fn damaged_audio_never_asks_for_memory_out_of_proportion() {
    if !run_alone("probe_memory::damaged_audio_never_asks_for_memory_out_of_proportion") {
        return;
    }
    use rustix::process::{Resource, Rlimit, setrlimit};
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/audio");
    let files: Vec<Vec<u8>> =
        FIXTURES.iter().map(|name| std::fs::read(root.join(name)).unwrap()).collect();
    // What the process has mapped now, and 768 MiB more: far more than any of these uploads
    // (under 100 kB) needs, far less than the gigabytes a 32-bit length can claim.
    let ceiling = proc_status("VmSize:") + (768 << 20);
    setrlimit(Resource::As, Rlimit { current: Some(ceiling), maximum: None }).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    for case in 0..40_000 {
        let which = case % files.len();
        let data = damaged(&mut rng, &files[which]);
        // An abort here fails the test: its process dies.
        let _ = audio_duration(data.into());
    }
    // Unsynchronised ID3v2.3 and ID3v2.2 tags, damaged, in front of MP3 audio: the walk
    // follows symphonia's one way through their frames.
    let mut rng = rand::rngs::StdRng::seed_from_u64(12);
    let tagged = [unsynchronised_tag(3, &files[1]), unsynchronised_tag(2, &files[1])];
    for (_, file) in &tagged {
        assert!(audio_duration(file.clone().into()).is_ok(), "undamaged, it is measured");
    }
    for case in 0..10_000 {
        let (tag_len, file) = &tagged[case % 2];
        let data = damaged_within(&mut rng, file, *tag_len);
        let _ = audio_duration(data.into());
    }
    // Lengths of 4 GiB where the damage above seldom puts them: each is refused.
    for (name, crafted) in crafted(&files) {
        assert!(audio_duration(crafted.into()).is_err(), "{name} was measured");
    }
}

/// The first offset of `needle` in `data`.
fn find(data: &[u8], needle: &[u8]) -> usize {
    data.windows(needle.len()).position(|w| w == needle).expect("in the fixture")
}

/// The CRC Ogg pages carry (polynomial 0x04C11DB7, no reflection, zero start).
fn ogg_crc(page: &[u8]) -> u32 {
    let mut crc = 0u32;
    for &byte in page {
        crc ^= u32::from(byte) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 { crc << 1 ^ 0x04C1_1DB7 } else { crc << 1 };
        }
    }
    crc
}

/// Uploads whose metadata states lengths of 4 GiB: a FLAC comment, a FLAC picture (as a
/// block and as a comment), an Ogg Vorbis comment with its page's CRC made right.
fn crafted(files: &[Vec<u8>]) -> Vec<(&'static str, Vec<u8>)> {
    let mut out = Vec::new();
    let flac = &files[2];
    // The comment block: its body starts with the vendor's length; the first comment's length
    // follows the vendor and the count.
    let block = 4 + 34 + 4; // "fLaC", STREAMINFO, then the next block's header
    assert_eq!(flac[block] & 0x7f, 4, "the fixture's second block is its comments");
    let vendor = u32::from_le_bytes(flac[block + 4..block + 8].try_into().unwrap()) as usize;
    let mut comment = flac.clone();
    let first = block + 4 + 4 + vendor + 4;
    comment[first..first + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    out.push(("a FLAC comment of 4 GiB", comment));
    // A picture block in place of the comments: media type of 4 GiB.
    let mut picture = flac.clone();
    picture[block] = (picture[block] & 0x80) | 6;
    picture[block + 8..block + 12].copy_from_slice(&u32::MAX.to_be_bytes());
    out.push(("a FLAC picture of 4 GiB", picture));
    // The same picture as a comment, base64.
    use base64::Engine as _;
    let mut pic = vec![0, 0, 0, 3];
    pic.extend(u32::MAX.to_be_bytes());
    let text = format!(
        "METADATA_BLOCK_PICTURE={}",
        base64::engine::general_purpose::STANDARD.encode(&pic)
    );
    let mut body = 0u32.to_le_bytes().to_vec();
    body.extend(1u32.to_le_bytes());
    body.extend((text.len() as u32).to_le_bytes());
    body.extend(text.as_bytes());
    let mut inline = flac[..block].to_vec();
    inline.push(flac[block] & 0x80 | 4);
    inline.extend(&(body.len() as u32).to_be_bytes()[1..]);
    inline.extend(&body);
    let next = block
        + 4
        + (u32::from_be_bytes([0, flac[block + 1], flac[block + 2], flac[block + 3]]) as usize);
    inline.extend(&flac[next..]);
    out.push(("a FLAC picture comment of 4 GiB", inline));
    // Ogg Vorbis: the comment header's first comment, then the page's CRC again.
    let mut ogg = files[3].clone();
    let header = find(&ogg, b"\x03vorbis");
    let vendor = u32::from_le_bytes(ogg[header + 7..header + 11].try_into().unwrap()) as usize;
    let first = header + 7 + 4 + vendor + 4;
    ogg[first..first + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    let page = ogg[..header].windows(4).rposition(|w| w == b"OggS").unwrap();
    let segments = usize::from(ogg[page + 26]);
    let len = 27
        + segments
        + ogg[page + 27..page + 27 + segments].iter().map(|&l| usize::from(l)).sum::<usize>();
    ogg[page + 22..page + 26].fill(0);
    let crc = ogg_crc(&ogg[page..page + len]);
    ogg[page + 22..page + 26].copy_from_slice(&crc.to_le_bytes());
    out.push(("an Ogg Vorbis comment of 4 GiB", ogg));
    // WebM as a browser records it (no duration: its packets are read): its first SimpleBlock
    // (`A3`, a one- or two-byte size, track 1) made EBML-laced, its first frame stating 12 GiB.
    let mut webm = files[7].clone();
    let block = (0..webm.len() - 20)
        .find_map(|i| {
            let short = webm[i + 1] & 0x80 != 0 && webm[i + 2] == 0x81;
            let long = webm[i + 1] & 0xC0 == 0x40 && webm[i + 3] == 0x81;
            (webm[i] == 0xA3 && (short || long)).then_some(if short { i + 2 } else { i + 3 })
        })
        .expect("a SimpleBlock in the fixture");
    webm[block + 3] = 0x86;
    webm[block + 4] = 1;
    webm[block + 5..block + 13].copy_from_slice(&[0x01, 0, 0, 0x03, 0, 0, 0, 0]);
    out.push(("a WebM block laced with a frame of 12 GiB", webm));
    out.extend(crafted_behind_tags(files));
    out.push(("an ID3v2.3 frame skipped into a TXXX header of 1.4 GiB", skipped_into(&files[1])));
    out
}

/// The writer's unsynchronisation: a 0x00 after each 0xFF before a 0x00 or a byte of 0xE0 or
/// more, or at the end.
fn unsynchronise(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, &b) in data.iter().enumerate() {
        out.push(b);
        if b == 0xFF && data.get(i + 1).is_none_or(|&n| n == 0 || n >= 0xE0) {
            out.push(0);
        }
    }
    out
}

/// An ID3v2 tag of `major` version and `flags` around `body`.
fn id3_tag(major: u8, flags: u8, body: &[u8]) -> Vec<u8> {
    let n = body.len();
    let mut out = vec![b'I', b'D', b'3', major, 0, flags];
    out.extend([21, 14, 7, 0].map(|shift| (n >> shift) as u8 & 0x7F));
    out.extend(body);
    out
}

/// An ID3v2.3 frame (or ID3v2.2, for a 3-byte id) holding `body`, its size before
/// unsynchronisation.
fn id3_frame(id: &[u8], body: &[u8]) -> Vec<u8> {
    let size = (body.len() as u32).to_be_bytes();
    let mut out = id.to_vec();
    out.extend(if id.len() == 4 { &size[..] } else { &size[1..] });
    out.extend(if id.len() == 4 { &[0, 0][..] } else { &[] });
    out.extend(body);
    out
}

/// The MP3 fixture's audio behind an unsynchronised tag of `major` version whose frames hold
/// 0xFF runs (symphonia reads some of them through and skips others by their raw size), and
/// the tag's length.
fn unsynchronised_tag(major: u8, mp3: &[u8]) -> (usize, Vec<u8>) {
    let ids: [&[u8]; 4] = if major == 3 {
        [b"PRIV", b"TIT2", b"TXXX", b"GEOB"]
    } else {
        [b"MCI", b"TT2", b"TXX", b"GEO"]
    };
    let mut frames = id3_frame(ids[0], b"gateway\0\xFF\xFFX\xFF\x00\xFF\xE0");
    frames.extend(id3_frame(ids[1], b"\x00Tone\xFF"));
    frames.extend(id3_frame(ids[2], b"\x00key\x00value\xFF\xFF"));
    // Skipped by its 7 raw bytes (10 written), into its own data.
    frames.extend(id3_frame(ids[3], b"\x00a\xFF\xFF\xFF\x00b"));
    frames.extend([0; 16]);
    let tag = id3_tag(major, 0x80, &unsynchronise(&frames));
    (tag.len(), [&tag[..], mp3_audio(mp3)].concat())
}

/// The MP3 fixture's audio, past its own tag.
fn mp3_audio(mp3: &[u8]) -> &[u8] {
    &mp3[10 + mp3[6..10].iter().fold(0usize, |s, b| s << 7 | usize::from(*b))..]
}

/// Damage as [`damaged`] does, each run starting in the first `within` bytes.
fn damaged_within(rng: &mut rand::rngs::StdRng, file: &[u8], within: usize) -> Vec<u8> {
    let mut data = file.to_vec();
    for _ in 0..rng.random_range(1..6) {
        let start = rng.random_range(0..within);
        let run = rng.random_range(1..9usize);
        data[start..start + run].fill(rng.random());
    }
    data.truncate(rng.random_range(within / 2..=data.len()));
    data
}

/// An unsynchronised ID3v2.3 tag whose `GEOB` frame (which symphonia skips by its 3 raw
/// bytes, not the 4 its 3 bytes take written) ends in `T`, followed by a frame `XXXY` of 32
/// bytes: skipped so, the frame's `T` and the next id make `TXXX`, stating 0x59000000 bytes,
/// which symphonia would allocate.
fn skipped_into(mp3: &[u8]) -> Vec<u8> {
    let mut frames = id3_frame(b"GEOB", b"\xFF\xFFT");
    frames.extend(id3_frame(b"XXXY", &[0x20; 32]));
    [&id3_tag(3, 0x80, &unsynchronise(&frames))[..], mp3_audio(mp3)].concat()
}

/// Uploads whose lengths are read after (or inside) an ID3v2 tag, or in an MP4 sample table:
/// the MP3's tag (ID3v2.4, one `TSSE` frame whose size is at bytes 14..18) made ID3v2.3 with
/// the frame stating 4 GiB, and stating 256 MiB as it is (under this test's ceiling: the unit
/// tests of `probe_id3` show it refused before symphonia reads it); the crafted FLAC comment
/// behind that tag and behind a byte of junk, where symphonia's probe finds it too; an M4A
/// whose `stts` states 4 G entries (32 GiB reserved before any is read).
fn crafted_behind_tags(files: &[Vec<u8>]) -> Vec<(&'static str, Vec<u8>)> {
    let mut out = Vec::new();
    let mp3 = &files[1];
    assert_eq!(&mp3[..4], b"ID3\x04", "the fixture starts with an ID3v2.4 tag");
    assert_eq!(&mp3[10..14], b"TSSE");
    let mut v3 = mp3.clone();
    v3[3] = 3;
    v3[14..18].copy_from_slice(&u32::MAX.to_be_bytes());
    out.push(("an MP3 ID3v2.3 frame of 4 GiB", v3));
    let mut v4 = mp3.clone();
    v4[14..18].fill(0x7F);
    out.push(("an MP3 ID3v2.4 frame of 256 MiB", v4));
    let comment = crafted_flac_comment(&files[2]);
    let tag_len = 10 + mp3[6..10].iter().fold(0usize, |s, b| s << 7 | usize::from(*b));
    let mut tagged = mp3[..tag_len].to_vec();
    tagged.extend(&comment);
    out.push(("a FLAC comment of 4 GiB behind an ID3v2 tag", tagged));
    let mut junk = vec![0u8];
    junk.extend(&comment);
    out.push(("a FLAC comment of 4 GiB behind a byte of junk", junk));
    let mut m4a = files[4].clone();
    let stts = find(&m4a, b"stts");
    m4a[stts + 8..stts + 12].copy_from_slice(&u32::MAX.to_be_bytes());
    out.push(("an M4A stts of 4 G entries", m4a));
    out
}

/// The FLAC fixture with its first comment stating 4 GiB.
fn crafted_flac_comment(flac: &[u8]) -> Vec<u8> {
    let block = 4 + 34 + 4;
    let vendor = u32::from_le_bytes(flac[block + 4..block + 8].try_into().unwrap()) as usize;
    let mut comment = flac.to_vec();
    let first = block + 4 + 4 + vendor + 4;
    comment[first..first + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    comment
}
