//! Transcoding profiles: go-livepeer's built-in presets (lpms `ffmpeg/videoprofile.go`) and its
//! JSON rendition format (`doc/transcodingoptions.md`, GATEWAY.md §7), validated into
//! [`Profile`]s with errors that name the offending field; the wire form sent in
//! `SegData.fullProfiles3`; and the fee estimate's view of them (PROTOCOL.md §6.5).

use livepeer_pm::OutputProfile;
use livepeer_proto::net;
use serde_json::Value;

/// Most renditions a stream may ask for: each one is a request to an orchestrator, a fetch
/// and a slot in every segment the gateway keeps.
pub const MAX_PROFILES: usize = 16;

/// Largest width or height accepted (8K).
const MAX_DIMENSION: u64 = 7680;

/// Longest rendition name; names appear in URLs, playlists and file names.
const MAX_NAME: usize = 64;

/// The name the source rendition has in playlists; no profile may take it.
pub const SOURCE: &str = "source";

/// go-livepeer's presets: name, width, height, bitrate (kbit/s), frame rate. `P144p25fps16x9`
/// is missing, as it is from go-livepeer's lookup table.
const PRESETS: [(&str, u32, u32, u32, u32); 13] = [
    ("P720p60fps16x9", 1280, 720, 6000, 60),
    ("P720p30fps16x9", 1280, 720, 4000, 30),
    ("P720p25fps16x9", 1280, 720, 3500, 25),
    ("P720p30fps4x3", 960, 720, 3500, 30),
    ("P576p30fps16x9", 1024, 576, 1500, 30),
    ("P576p25fps16x9", 1024, 576, 1500, 25),
    ("P360p30fps16x9", 640, 360, 1200, 30),
    ("P360p25fps16x9", 640, 360, 1000, 25),
    ("P360p30fps4x3", 480, 360, 1000, 30),
    ("P240p30fps16x9", 426, 240, 600, 30),
    ("P240p25fps16x9", 426, 240, 600, 25),
    ("P240p30fps4x3", 320, 240, 600, 30),
    ("P144p30fps16x9", 256, 144, 400, 30),
];

/// The node default of `--transcoding-options`, as go-livepeer's.
pub const DEFAULT_OPTIONS: &str = "P240p30fps16x9,P360p30fps16x9";

/// The H.264 profile asked of the encoder (wire enum `VideoProfile.Profile`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum H264Profile {
    /// The encoder's default.
    Default = 0,
    /// Baseline.
    Baseline = 1,
    /// Main.
    Main = 2,
    /// High.
    High = 3,
    /// Constrained High.
    ConstrainedHigh = 4,
}

/// The output codec (wire enum `VideoProfile.VideoCodec`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Encoder {
    /// H.264, the default.
    H264 = 0,
    /// HEVC.
    Hevc = 1,
    /// VP8.
    Vp8 = 2,
    /// VP9.
    Vp9 = 3,
}

/// The output container (wire enum `VideoProfile.Format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Format {
    /// MPEG-TS (`.ts`).
    MpegTs = 0,
    /// MP4 (`.mp4`).
    Mp4 = 1,
}

impl Format {
    /// The file extension, with its dot.
    pub fn ext(self) -> &'static str {
        match self {
            Self::MpegTs => ".ts",
            Self::Mp4 => ".mp4",
        }
    }

    /// The media type (go-livepeer's `ProfileFormatMimeType`).
    pub fn mime(self) -> &'static str {
        match self {
            Self::MpegTs => "video/mp2t",
            Self::Mp4 => "video/mp4",
        }
    }

    /// The format of a push URL's extension (`.ts`, `.mp4`), or `None` (go-livepeer's
    /// `ProfileExtensionFormat`).
    pub fn from_ext(ext: &str) -> Option<Self> {
        match ext {
            ".ts" => Some(Self::MpegTs),
            ".mp4" => Some(Self::Mp4),
            _ => None,
        }
    }
}

/// One rendition to make from each segment.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Profile {
    /// Its name, in playlists and storage paths.
    pub name: String,
    /// Target width.
    pub width: u32,
    /// Target height.
    pub height: u32,
    /// Bits per second.
    pub bitrate: u32,
    /// Frame rate numerator; 0 passes the source's through.
    pub fps: u32,
    /// Frame rate denominator; 0 means 1.
    pub fps_den: u32,
    /// H.264 profile.
    pub profile: H264Profile,
    /// GOP in milliseconds; 0 the encoder's default, -1 intra-only (go-livepeer's wire value).
    pub gop_ms: i32,
    /// Output codec.
    pub encoder: Encoder,
    /// Bits per colour channel; 0 (unset) by default, as go-livepeer sends it.
    pub color_depth: i32,
    /// 0 = 4:2:0, 1 = 4:2:2, 2 = 4:4:4.
    pub chroma_format: i32,
    /// Encoder quality (`quality`, wire field 28); 0 leaves the encoder's default.
    pub quality: u32,
}

/// A profile setting that is wrong: which field (`profiles[1].width`, `presets[0]`,
/// `--transcoding-options`) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ProfileError {
    /// The offending field.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

fn bad(field: impl Into<String>, message: impl Into<String>) -> ProfileError {
    ProfileError { field: field.into(), message: message.into() }
}

/// The preset called `name`.
pub fn preset(name: &str) -> Option<Profile> {
    let (name, width, height, kbps, fps) = *PRESETS.iter().find(|p| p.0 == name)?;
    Some(Profile {
        name: name.to_owned(),
        width,
        height,
        bitrate: kbps * 1000,
        fps,
        // lpms's presets set no denominator, colour depth or chroma format: go-livepeer sends
        // zeros, and a denominator would both require FractionalFramerates and move the
        // profiles to `fullProfiles3` (core/streamdata.go `NetSegData`).
        fps_den: 0,
        profile: H264Profile::Default,
        gop_ms: 0,
        encoder: Encoder::H264,
        color_depth: 0,
        chroma_format: 0,
        quality: 0,
    })
}

/// Every preset's name (go-livepeer's `/getAvailableTranscodingOptions`).
pub fn preset_names() -> impl Iterator<Item = &'static str> {
    PRESETS.iter().map(|p| p.0)
}

/// Preset names, comma-separated, as `--transcoding-options` lists them. Unlike go-livepeer,
/// which drops unknown names silently, an unknown name is an error naming it.
pub fn parse_preset_list(list: &str, field: &str) -> Result<Vec<Profile>, ProfileError> {
    let mut out = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        out.push(preset(name).ok_or_else(|| bad(field, format!("unknown preset {name:?}")))?);
    }
    check_all(&out, field)?;
    Ok(out)
}

/// A JSON array of renditions (`field` names it in errors, e.g. `profiles`).
pub fn parse_json_profiles(value: &Value, field: &str) -> Result<Vec<Profile>, ProfileError> {
    let items = value.as_array().ok_or_else(|| bad(field, "must be an array of renditions"))?;
    let out = items
        .iter()
        .enumerate()
        .map(|(i, item)| parse_one(item, &format!("{field}[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    check_all(&out, field)?;
    Ok(out)
}

/// Count, names unique and not the source's.
pub fn check_all(profiles: &[Profile], field: &str) -> Result<(), ProfileError> {
    if profiles.len() > MAX_PROFILES {
        return Err(bad(field, format!("at most {MAX_PROFILES} renditions")));
    }
    for (i, p) in profiles.iter().enumerate() {
        if p.name == SOURCE {
            return Err(bad(format!("{field}[{i}].name"), "\"source\" names the source"));
        }
        if profiles[..i].iter().any(|q| q.name == p.name) {
            return Err(bad(format!("{field}[{i}].name"), format!("duplicate name {:?}", p.name)));
        }
    }
    Ok(())
}

fn parse_one(item: &Value, at: &str) -> Result<Profile, ProfileError> {
    let obj = item.as_object().ok_or_else(|| bad(at, "must be an object"))?;
    let field = |k: &str| format!("{at}.{k}");
    let uint = |k: &str, max: u64, required: bool| -> Result<u64, ProfileError> {
        match obj.get(k) {
            None | Some(Value::Null) if !required => Ok(0),
            None | Some(Value::Null) => Err(bad(field(k), "required")),
            Some(v) => match v.as_u64() {
                Some(n) if n <= max => Ok(n),
                _ => Err(bad(field(k), format!("must be an integer from 0 to {max}"))),
            },
        }
    };
    let width = uint("width", MAX_DIMENSION, true)? as u32;
    let height = uint("height", MAX_DIMENSION, true)? as u32;
    if width == 0 || height == 0 {
        return Err(bad(field(if width == 0 { "width" } else { "height" }), "must be above 0"));
    }
    let bitrate = uint("bitrate", u64::from(i32::MAX as u32), true)? as u32;
    let fps = uint("fps", 1000, false)? as u32;
    let fps_den = uint("fpsDen", 1000, false)? as u32;
    // Sent as given, 0 when absent, as lpms `ParseProfilesFromJsonProfileArray` keeps it.
    let color_depth = uint("colorDepth", 16, false)? as i32;
    let chroma_format = uint("chromaFormat", 2, false)? as i32;
    // lpms's `JsonProfile.Quality`, which go-livepeer sends on (`FFmpegProfiletoNetProfile`).
    let quality = uint("quality", u64::from(u32::MAX), false)? as u32;
    let text = |k: &str| -> Result<&str, ProfileError> {
        match obj.get(k) {
            None | Some(Value::Null) => Ok(""),
            Some(Value::String(s)) => Ok(s),
            Some(_) => Err(bad(field(k), "must be a string")),
        }
    };
    let name = match text("name")? {
        "" => format!("custom_{width}x{height}_{bitrate}"),
        n => valid_name(n).map_err(|m| bad(field("name"), m))?.to_owned(),
    };
    Ok(Profile {
        name,
        width,
        height,
        bitrate,
        fps,
        fps_den,
        profile: h264_profile(text("profile")?).map_err(|m| bad(field("profile"), m))?,
        gop_ms: gop(text("gop")?).map_err(|m| bad(field("gop"), m))?,
        encoder: encoder(text("encoder")?).map_err(|m| bad(field("encoder"), m))?,
        color_depth,
        chroma_format,
        quality,
    })
}

/// A name safe in URLs, playlists and file names.
fn valid_name(name: &str) -> Result<&str, String> {
    let ok = name.len() <= MAX_NAME
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
        && !name.starts_with('.');
    if ok {
        Ok(name)
    } else {
        Err(format!("at most {MAX_NAME} of A-Z a-z 0-9 _ - . and not starting with a dot"))
    }
}

/// lpms `EncoderProfileNameToValue`, case-insensitive.
fn h264_profile(s: &str) -> Result<H264Profile, String> {
    Ok(match s.to_ascii_lowercase().as_str() {
        "" | "none" => H264Profile::Default,
        "h264baseline" => H264Profile::Baseline,
        "h264main" => H264Profile::Main,
        "h264high" => H264Profile::High,
        "h264constrainedhigh" => H264Profile::ConstrainedHigh,
        _ => {
            return Err(format!(
                "unknown profile {s:?}: one of H264Baseline, H264Main, H264High, H264ConstrainedHigh, None"
            ));
        }
    })
}

/// lpms `ParseGOP`-alike: `intra`, or seconds above 0; the wire carries milliseconds, or -1.
fn gop(s: &str) -> Result<i32, String> {
    if s.is_empty() {
        return Ok(0);
    }
    if s == "intra" {
        return Ok(-1);
    }
    let ms = parse_millis(s).ok_or_else(|| format!("{s:?} is neither \"intra\" nor seconds"))?;
    // lpms takes 0 for the encoder's default (`ParseProfilesFromJsonProfileArray`: "gopFloat is
    // allowed to be 0"), which is what the wire's 0 means.
    if ms > 3_600_000 {
        return Err("must be at most 3600 seconds".into());
    }
    Ok(ms as i32)
}

/// Decimal seconds (`2`, `0.5`) as whole milliseconds, without floats.
fn parse_millis(s: &str) -> Option<u64> {
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if whole.is_empty() && frac.is_empty() || frac.len() > 3 {
        return None;
    }
    let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !digits(frac) {
        return None;
    }
    let w: u64 = if whole.is_empty() { 0 } else { whole.parse().ok()? };
    let f: u64 = format!("{frac:0<3}").parse().ok()?;
    w.checked_mul(1000)?.checked_add(f)
}

/// The encoder names of go-livepeer's JSON format, exact.
fn encoder(s: &str) -> Result<Encoder, String> {
    Ok(match s {
        "" | "H.264" => Encoder::H264,
        "HEVC" => Encoder::Hevc,
        "VP8" => Encoder::Vp8,
        "VP9" => Encoder::Vp9,
        _ => return Err(format!("unknown encoder {s:?}: one of H.264, HEVC, VP8, VP9")),
    })
}

impl Profile {
    /// The wire form, in `format`.
    pub fn to_wire(&self, format: Format) -> net::VideoProfile {
        net::VideoProfile {
            name: self.name.clone(),
            width: self.width as i32,
            height: self.height as i32,
            bitrate: self.bitrate as i32,
            fps: self.fps,
            format: format as i32,
            fps_den: self.fps_den,
            profile: self.profile as i32,
            gop: self.gop_ms,
            encoder: self.encoder as i32,
            color_depth: self.color_depth,
            chroma_format: self.chroma_format,
            quality: self.quality,
        }
    }

    /// The fee estimate's view of it.
    pub fn output(&self) -> OutputProfile {
        OutputProfile {
            width: self.width,
            height: self.height,
            framerate: self.fps,
            framerate_den: self.fps_den,
        }
    }
}

/// Capability ids (PROTOCOL.md §3.1) that go-livepeer's job requirement names.
mod cap {
    pub(super) const H264: u32 = 0;
    pub(super) const MPEGTS: u32 = 1;
    pub(super) const MP4: u32 = 2;
    pub(super) const FRACTIONAL_FRAMERATES: u32 = 3;
    pub(super) const PROFILE_H264_BASELINE: u32 = 7;
    pub(super) const GOP: u32 = 11;
    pub(super) const AUTH_TOKEN: u32 = 12;
    pub(super) const HEVC_ENCODE: u32 = 16;
    pub(super) const VP8_ENCODE: u32 = 19;
    pub(super) const VP9_ENCODE: u32 = 20;
    pub(super) const SEGMENT_SLICING: u32 = 26;
}

/// The capabilities a segment of `profiles` in `format` requires, as a bitmask of ids 0–63
/// (all of them lie there), as go-livepeer's core/capabilities.go `JobCapabilities` builds
/// them: AuthToken; SegmentSlicing when `slicing` (HTTP push, which always passes segment
/// parameters); the `input` decoder's (`codec::InputVideo::capabilities`); and per profile its
/// container, encoder, H.264 profile, fractional frame rate and GOP. Nothing else: the
/// orchestrator refuses a segment asking for a capability it lacks (403 `incompatible
/// capabilities`), and selection passes over an orchestrator lacking one of these only.
pub fn job_capabilities(profiles: &[Profile], format: Format, slicing: bool, input: &[u32]) -> u64 {
    let mut caps: u64 = 0;
    let mut set = |id: u32| caps |= 1u64.checked_shl(id).unwrap_or(0);
    set(cap::AUTH_TOKEN);
    if slicing {
        set(cap::SEGMENT_SLICING);
    }
    input.iter().for_each(|id| set(*id));
    for p in profiles {
        set(match format {
            Format::MpegTs => cap::MPEGTS,
            Format::Mp4 => cap::MP4,
        });
        set(match p.encoder {
            Encoder::H264 => cap::H264,
            Encoder::Hevc => cap::HEVC_ENCODE,
            Encoder::Vp8 => cap::VP8_ENCODE,
            Encoder::Vp9 => cap::VP9_ENCODE,
        });
        if p.fps_den > 0 {
            set(cap::FRACTIONAL_FRAMERATES);
        }
        if p.profile != H264Profile::Default {
            // Baseline, Main, High, Constrained High are 7 to 10, in the wire enum's order.
            set(cap::PROFILE_H264_BASELINE + p.profile as u32 - 1);
        }
        if p.gop_ms != 0 {
            set(cap::GOP);
        }
    }
    caps
}

/// Which `SegData` list carries the profiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProfileList {
    /// `fullProfiles` (33).
    Full,
    /// `fullProfiles2` (34).
    Full2,
    /// `fullProfiles3` (35).
    Full3,
}

/// The list go-livepeer puts `profiles` in (core/streamdata.go `NetSegData`): the first when
/// every rendition is MPEG-TS with a whole frame rate, the encoder's default profile and GOP;
/// the second when only the container differs; the third otherwise. An orchestrator reads the
/// newest list that is not empty, so the choice matters only to old ones, which the older
/// lists keep serving.
pub fn profile_list(profiles: &[Profile], format: Format) -> ProfileList {
    let plain = profiles
        .iter()
        .all(|p| p.fps_den == 0 && p.profile == H264Profile::Default && p.gop_ms == 0);
    match (plain, format) {
        (true, Format::MpegTs) => ProfileList::Full,
        (true, Format::Mp4) => ProfileList::Full2,
        (false, _) => ProfileList::Full3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn presets_are_go_livepeers() {
        let p = preset("P240p30fps16x9").unwrap();
        assert_eq!((p.width, p.height, p.bitrate, p.fps), (426, 240, 600_000, 30));
        assert!(preset("P144p25fps16x9").is_none(), "missing from go-livepeer's lookup");
        let list = parse_preset_list(DEFAULT_OPTIONS, "--transcoding-options").unwrap();
        assert_eq!(list.len(), 2);
        let err = parse_preset_list("P240p30fps16x9,P999p", "--transcoding-options").unwrap_err();
        assert_eq!(err.field, "--transcoding-options");
        assert!(err.message.contains("P999p"));
    }

    #[test]
    fn json_profiles_parse_with_defaults_and_name_their_field() {
        let v = json!([{"width": 320, "height": 180, "bitrate": 250000, "gop": "2.5",
            "profile": "h264high", "fpsDen": 1}, {"name": "x", "width": 2, "height": 2,
            "bitrate": 1, "gop": "intra", "encoder": "HEVC"}]);
        let p = parse_json_profiles(&v, "profiles").unwrap();
        assert_eq!(p[0].name, "custom_320x180_250000");
        assert_eq!((p[0].gop_ms, p[0].profile, p[0].color_depth), (2500, H264Profile::High, 0));
        assert_eq!((p[1].gop_ms, p[1].encoder), (-1, Encoder::Hevc));
        let err = |v: Value| parse_json_profiles(&v, "profiles").unwrap_err().field;
        assert_eq!(err(json!({})), "profiles");
        assert_eq!(err(json!([{"height": 1, "bitrate": 1}])), "profiles[0].width");
        assert_eq!(err(json!([{"width": -1, "height": 1, "bitrate": 1}])), "profiles[0].width");
        assert_eq!(err(json!([{"width": 1, "height": 1}])), "profiles[0].bitrate");
        assert_eq!(
            err(json!([{"width": 1, "height": 1, "bitrate": 1, "profile": "x"}])),
            "profiles[0].profile"
        );
        assert_eq!(
            err(json!([{"width": 1, "height": 1, "bitrate": 1, "gop": "3601"}])),
            "profiles[0].gop"
        );
        // As lpms reads them: a GOP of 0 is the encoder's default, `quality` is kept.
        let v = json!([{"width": 1, "height": 1, "bitrate": 1, "gop": "0", "quality": 27}]);
        let p = parse_json_profiles(&v, "profiles").unwrap();
        assert_eq!((p[0].gop_ms, p[0].quality), (0, 27));
        assert_eq!(p[0].to_wire(Format::MpegTs).quality, 27);
        assert_eq!(
            err(json!([{"width": 1, "height": 1, "bitrate": 1, "encoder": "h264"}])),
            "profiles[0].encoder"
        );
        assert_eq!(
            err(json!([{"name": "a/b", "width": 1, "height": 1, "bitrate": 1}])),
            "profiles[0].name"
        );
        let dup = json!([{"name": "a", "width": 1, "height": 1, "bitrate": 1},
            {"name": "a", "width": 1, "height": 1, "bitrate": 1}]);
        assert_eq!(err(dup), "profiles[1].name");
    }

    #[test]
    fn millis_parse_exactly() {
        assert_eq!(parse_millis("2"), Some(2000));
        assert_eq!(parse_millis("0.25"), Some(250));
        assert_eq!(parse_millis(".5"), Some(500));
        assert_eq!(parse_millis("1.2345"), None);
        assert_eq!(parse_millis("-1"), None);
        assert_eq!(parse_millis("."), None);
    }
}
