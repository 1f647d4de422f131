//! The renditions of a transcoded segment: the profiles a `SegData` asks for, parsed as
//! go-livepeer parses them (server/segment_rpc.go `makeFfmpegVideoProfiles`), and each one made
//! either for real by an ffmpeg child process (libx264 at the profile's size, frame rate and
//! bitrate, audio copied) or, in fast mode, without encoding.
//!
//! `pixels` is what LPMS reports and go-livepeer bills: width × height × frames encoded.

use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use livepeer_proto::net::{self, video_profile};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// An ffmpeg run that takes longer than this is killed and the segment fails.
const FFMPEG_TIMEOUT: Duration = Duration::from_secs(60);
/// At most this much of ffmpeg's stderr is kept (progress lines and errors).
const MAX_STDERR: usize = 64 << 10;
/// The frame rate fast mode counts for a profile that keeps the source's (fps 0): it does not
/// probe the input, and 30 is the frame rate of go-livepeer's presets.
pub(crate) const FAST_PASSTHROUGH_FPS: u64 = 30;

/// One output the gateway asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Profile {
    /// Its name, which is also the directory of its files (`<name>/<seq>.<ext>`).
    pub(crate) name: String,
    pub(crate) width: u32,
    pub(crate) height: u32,
    /// Bits per second; 0 leaves the encoder's default.
    pub(crate) bitrate: u32,
    /// Frame rate as numerator / denominator; numerator 0 keeps the source's.
    pub(crate) fps: (u32, u32),
    /// MP4 output (else MPEG-TS).
    pub(crate) mp4: bool,
    /// x264 `-profile:v`, when one is asked.
    pub(crate) h264_profile: Option<&'static str>,
    /// Keyframe interval in milliseconds; 0 or less leaves the encoder's.
    pub(crate) gop_ms: i32,
    /// Whether it asks for H.264, the only codec encoded here; another one fails the
    /// segment (in `TranscodeResult.error`) as on an orchestrator without that encoder.
    pub(crate) h264: bool,
}

impl Profile {
    /// The file extension of its renditions, with the dot (go-livepeer
    /// `common.ProfileFormatExtension`).
    pub(crate) fn ext(&self) -> &'static str {
        if self.mp4 { ".mp4" } else { ".ts" }
    }

    /// The content type its renditions are served with.
    pub(crate) fn content_type(&self) -> &'static str {
        if self.mp4 { "video/mp4" } else { "video/mp2t" }
    }
}

/// The profiles of a segment: `fullProfiles3`, else `2`, else the first list. Unknown formats
/// and encoder profiles are refused with go-livepeer's errors (403). An empty name gets
/// go-livepeer's generated `net_<w>x<h>_<bitrate>`.
pub(crate) fn profiles(seg: &net::SegData) -> Result<Vec<Profile>, &'static str> {
    let list = [&seg.full_profiles3, &seg.full_profiles2, &seg.full_profiles]
        .into_iter()
        .find(|l| !l.is_empty());
    list.map(|l| l.iter().map(profile).collect()).unwrap_or_else(|| Ok(Vec::new()))
}

fn profile(p: &net::VideoProfile) -> Result<Profile, &'static str> {
    let mp4 = match video_profile::Format::try_from(p.format) {
        Ok(video_profile::Format::Mpegts) => false,
        Ok(video_profile::Format::Mp4) => true,
        Err(_) => return Err("unrecognized profile output format"),
    };
    let h264_profile = match video_profile::Profile::try_from(p.profile) {
        Ok(video_profile::Profile::EncoderDefault) => None,
        Ok(video_profile::Profile::H264Baseline) => Some("baseline"),
        Ok(video_profile::Profile::H264Main) => Some("main"),
        // x264 has no "constrained high"; high is the closest it encodes.
        Ok(video_profile::Profile::H264High | video_profile::Profile::H264ConstrainedHigh) => {
            Some("high")
        }
        Err(_) => return Err("unrecognized encoder profile"),
    };
    // Only H.264 is encoded here; the other codecs are known but fail as an orchestrator
    // without their encoder would (a gateway asks for them only if the capability bits say so,
    // and the simulator does not advertise them).
    let h264 = match video_profile::VideoCodec::try_from(p.encoder) {
        Ok(codec) => codec == video_profile::VideoCodec::H264,
        Err(_) => return Err("unrecognized video codec"),
    };
    let name = match p.name.is_empty() {
        false => p.name.clone(),
        true => format!("net_{}x{}_{}", p.width, p.height, p.bitrate),
    };
    Ok(Profile {
        name,
        width: u32::try_from(p.width).unwrap_or(0),
        height: u32::try_from(p.height).unwrap_or(0),
        bitrate: u32::try_from(p.bitrate).unwrap_or(0),
        fps: (p.fps, p.fps_den.max(1)),
        mp4,
        h264_profile,
        gop_ms: p.gop,
        h264,
    })
}

/// One finished rendition.
#[derive(Debug, Clone)]
pub(crate) struct Rendition {
    pub(crate) data: Bytes,
    /// width × height × frames.
    pub(crate) pixels: u64,
}

/// Fast mode: a scaled-down copy of the input (its first whole TS packets, as many bytes as
/// the profile's bitrate gives `duration_ms`, so that a load test's renditions weigh what real
/// ones would; all of it when the profile sets no bitrate), billed as if `duration_ms` of
/// video had been encoded at the profile's size and frame rate ([`FAST_PASSTHROUGH_FPS`] when
/// it keeps the source's).
pub(crate) fn fast(input: &Bytes, p: &Profile, duration_ms: i64) -> Rendition {
    let (num, den) = match p.fps.0 {
        0 => (FAST_PASSTHROUGH_FPS, 1),
        n => (u64::from(n), u64::from(p.fps.1.max(1))),
    };
    let ms = u64::try_from(duration_ms).unwrap_or(0);
    // Rounded to the nearest frame: 2000 ms at 30000/1001 fps is 60 frames.
    let frames = (ms * num + 500 * den) / (1000 * den);
    let pixels = u64::from(p.width) * u64::from(p.height) * frames;
    let data = match u64::from(p.bitrate) * ms / 8000 {
        0 => input.clone(),
        budget => {
            let packets = usize::try_from(budget / 188).unwrap_or(usize::MAX).max(1);
            input.slice(..input.len().min(packets * 188))
        }
    };
    Rendition { data, pixels }
}

/// Encodes `input` (MPEG-TS) to `p` with ffmpeg; the error is ffmpeg's message, which goes to
/// the gateway in `TranscodeResult.error` as LPMS's would.
pub(crate) async fn encode(input: Bytes, p: &Profile) -> Result<Rendition, String> {
    let mut command = tokio::process::Command::new("ffmpeg");
    command.args(["-hide_banner", "-loglevel", "error", "-nostdin", "-nostats"]);
    if !p.mp4 {
        // MPEG-TS renditions keep the source's timestamps, as LPMS's do, so that consecutive
        // segments play on in one HLS rendition (and the muxer adds no delay of its own, below).
        command.arg("-copyts");
    }
    command.args(["-progress", "pipe:2", "-f", "mpegts", "-i", "pipe:0"]);
    command.args(["-map", "0:v:0", "-map", "0:a?", "-sn", "-dn"]);
    command.arg("-vf").arg(format!("scale={}:{}", p.width, p.height));
    if p.fps.0 > 0 {
        command.arg("-r").arg(format!("{}/{}", p.fps.0, p.fps.1));
    }
    command.args(["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]);
    if p.bitrate > 0 {
        command.arg("-b:v").arg(p.bitrate.to_string());
    }
    if let Some(profile) = p.h264_profile {
        command.args(["-profile:v", profile]);
    }
    if p.gop_ms > 0 {
        let seconds = f64::from(p.gop_ms) / 1000.0;
        command.arg("-force_key_frames").arg(format!("expr:gte(t,n_forced*{seconds})"));
    }
    match p.mp4 {
        // A pipe cannot be seeked back to write the index: fragmented MP4 needs no seeking.
        // MPEG-TS audio (ADTS) does not go into MP4 as it is: it is re-encoded to AAC.
        true => command
            .args(["-c:a", "aac", "-movflags", "frag_keyframe+empty_moov"])
            .args(["-f", "mp4", "pipe:1"]),
        false => command
            .args(["-c:a", "copy", "-muxdelay", "0", "-muxpreload", "0"])
            .args(["-f", "mpegts", "pipe:1"]),
    };
    command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    command.kill_on_drop(true);
    tokio::time::timeout(FFMPEG_TIMEOUT, run(command, input, p))
        .await
        .map_err(|_| "ffmpeg timed out".to_owned())?
}

async fn run(
    mut command: tokio::process::Command,
    input: Bytes,
    p: &Profile,
) -> Result<Rendition, String> {
    let mut child = command.spawn().map_err(|e| format!("ffmpeg: {e}"))?;
    let (Some(mut stdin), Some(mut stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err("ffmpeg: no pipes".to_owned());
    };
    // Write, read and drain stderr at once: either pipe filling up would block ffmpeg.
    let writer = async move {
        // ffmpeg may stop reading early on bad input; its exit status tells why.
        let _ = stdin.write_all(&input).await;
        let _ = stdin.shutdown().await;
    };
    let mut out = Vec::new();
    let mut err = Vec::new();
    let mut stderr = stderr.take(MAX_STDERR as u64);
    let ((), read, _) =
        tokio::join!(writer, stdout.read_to_end(&mut out), stderr.read_to_end(&mut err));
    read.map_err(|e| format!("ffmpeg: {e}"))?;
    let status = child.wait().await.map_err(|e| format!("ffmpeg: {e}"))?;
    let text = String::from_utf8_lossy(&err);
    if !status.success() || out.is_empty() {
        let message: String = text
            .lines()
            .filter(|l| !l.contains('='))
            .collect::<Vec<_>>()
            .join("; ")
            .chars()
            .take(500)
            .collect();
        return Err(match message.is_empty() {
            true => format!("ffmpeg exited with {status}"),
            false => message,
        });
    }
    let frames = frames_encoded(&text);
    Ok(Rendition {
        data: Bytes::from(out),
        pixels: u64::from(p.width) * u64::from(p.height) * frames,
    })
}

/// The frame count of ffmpeg's last `-progress` report (`frame=N`).
fn frames_encoded(progress: &str) -> u64 {
    progress
        .lines()
        .filter_map(|l| l.trim().strip_prefix("frame="))
        .filter_map(|n| n.trim().parse().ok())
        .next_back()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vp(name: &str, fps: u32, fps_den: u32) -> net::VideoProfile {
        net::VideoProfile {
            name: name.to_owned(),
            width: 320,
            height: 240,
            bitrate: 400_000,
            fps,
            fps_den,
            ..Default::default()
        }
    }

    #[test]
    fn profiles_come_from_the_newest_list_and_bad_enums_are_refused() {
        let seg = net::SegData {
            full_profiles: vec![vp("old", 30, 0)],
            full_profiles3: vec![vp("new", 30, 0), vp("", 0, 0)],
            ..Default::default()
        };
        let list = profiles(&seg).unwrap();
        assert_eq!(list[0].name, "new");
        assert_eq!(list[0].fps, (30, 1));
        assert_eq!(list[1].name, "net_320x240_400000");
        let bad = net::SegData {
            full_profiles: vec![net::VideoProfile { format: 7, ..vp("x", 0, 0) }],
            ..Default::default()
        };
        assert_eq!(profiles(&bad), Err("unrecognized profile output format"));
        let bad = net::SegData {
            full_profiles: vec![net::VideoProfile { profile: 9, ..vp("x", 0, 0) }],
            ..Default::default()
        };
        assert_eq!(profiles(&bad), Err("unrecognized encoder profile"));
        let bad = net::SegData {
            full_profiles: vec![net::VideoProfile { encoder: 9, ..vp("x", 0, 0) }],
            ..Default::default()
        };
        assert_eq!(profiles(&bad), Err("unrecognized video codec"));
    }

    #[test]
    fn fast_pixels_follow_size_rate_and_duration() {
        let input = Bytes::from_static(b"ts");
        let p = profile(&vp("a", 30000, 1001)).unwrap();
        assert_eq!(fast(&input, &p, 2000).pixels, 320 * 240 * 60);
        let p = profile(&vp("a", 0, 0)).unwrap();
        assert_eq!(fast(&input, &p, 1000).pixels, 320 * 240 * 30);
        assert_eq!(fast(&input, &p, 1000).data, input, "shorter than the bitrate's budget");
        let big = Bytes::from(vec![0x47u8; 188 * 1000]);
        // 400 kbit/s for 1 s: 50,000 bytes, 265 whole packets.
        assert_eq!(fast(&big, &p, 1000).data, big.slice(..265 * 188));
    }

    #[test]
    fn the_last_progress_report_counts() {
        let text = "frame=10\nfps=0.0\nprogress=continue\nframe=48\nprogress=end\n";
        assert_eq!(frames_encoded(text), 48);
        assert_eq!(frames_encoded("nothing"), 0);
    }
}
