//! What a push request says, read from its parts as go-livepeer reads them (GATEWAY.md §6.2):
//! the file name (`{seq}.ts|.mp4`), `Content-Duration`, `Content-Resolution`, the
//! `Livepeer-Transcode-Configuration` JSON (the auth webhook's shape: `presets`, `profiles`,
//! `timeoutMultiplier`), and a first look at the body so that what is not MPEG-TS or MP4
//! never reaches an orchestrator.

use serde_json::Value;

use super::error::TranscodeError;
use super::profiles::{Format, Profile, ProfileError, check_all, parse_json_profiles, preset};

/// The header of per-stream settings.
pub const CONFIGURATION_HEADER: &str = "Livepeer-Transcode-Configuration";

/// The longest segment accepted, milliseconds (go-livepeer: 5 minutes).
pub const MAX_DURATION_MS: u32 = 300_000;

/// The duration of a segment that does not say (go-livepeer's 2000 ms).
pub const DEFAULT_DURATION_MS: u32 = 2000;

/// Largest `timeoutMultiplier` honoured: it stretches how long a segment may hold a slot.
const MAX_TIMEOUT_MULTIPLIER: u64 = 10;

/// Longest manifest id.
const MAX_MANIFEST: usize = 128;

/// Per-stream settings from `Livepeer-Transcode-Configuration`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamSettings {
    /// Presets then JSON profiles, when the header gave either (possibly none: source only).
    pub profiles: Option<Vec<Profile>>,
    /// Stretches the attempt deadlines when above 1.
    pub timeout_multiplier: u32,
}

/// Parses the header's JSON.
pub fn parse_settings(text: &str) -> Result<StreamSettings, TranscodeError> {
    let bad = |field: &str, message: String| {
        TranscodeError::BadConfig(ProfileError { field: field.into(), message })
    };
    let value: Value = serde_json::from_str(text).map_err(|e| bad("(json)", e.to_string()))?;
    let obj = value.as_object().ok_or_else(|| bad("(json)", "must be an object".into()))?;
    let mut profiles: Option<Vec<Profile>> = None;
    match obj.get("presets") {
        None | Some(Value::Null) => {}
        Some(Value::Array(names)) => {
            let mut list = Vec::new();
            for (i, name) in names.iter().enumerate() {
                let field = format!("presets[{i}]");
                let name = name.as_str().ok_or_else(|| bad(&field, "must be a string".into()))?;
                list.push(
                    preset(name).ok_or_else(|| bad(&field, format!("unknown preset {name:?}")))?,
                );
            }
            profiles = Some(list);
        }
        Some(_) => return Err(bad("presets", "must be an array of preset names".into())),
    }
    match obj.get("profiles") {
        None | Some(Value::Null) => {}
        Some(v) => {
            let parsed = parse_json_profiles(v, "profiles").map_err(TranscodeError::BadConfig)?;
            profiles.get_or_insert_with(Vec::new).extend(parsed);
        }
    }
    if let Some(p) = &profiles {
        check_all(p, "profiles").map_err(TranscodeError::BadConfig)?;
    }
    let timeout_multiplier = match obj.get("timeoutMultiplier") {
        None | Some(Value::Null) => 1,
        Some(v) => match v.as_u64() {
            Some(n) if n <= MAX_TIMEOUT_MULTIPLIER => n.max(1) as u32,
            _ => {
                let m = format!("must be an integer from 0 to {MAX_TIMEOUT_MULTIPLIER}");
                return Err(bad("timeoutMultiplier", m));
            }
        },
    };
    Ok(StreamSettings { profiles, timeout_multiplier })
}

/// The manifest id of a push path, checked: printable, no path characters.
pub fn manifest_id(raw: &str, url: &str) -> Result<String, TranscodeError> {
    let ok = !raw.is_empty()
        && raw.len() <= MAX_MANIFEST
        && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
        && !raw.starts_with('.');
    if ok { Ok(raw.to_owned()) } else { Err(TranscodeError::BadUrl(url.to_owned())) }
}

/// The largest sequence number taken. `SegData.seq` is an `int64`, and go-livepeer's
/// orchestrator checks the segment's signature over the absolute value of what it reads
/// there: a larger number would be signed as one value and checked as another, and the
/// orchestrator would refuse it (403 `ErrSegSig`) and be penalised for the gateway's mistake.
pub const MAX_SEQ: u64 = i64::MAX as u64;

/// The sequence number and format of a push's file name (`12.ts`). A name that is not a
/// number counts as 0, as go-livepeer reads it; a number above [`MAX_SEQ`] is refused.
pub fn file_name(name: &str) -> Result<(u64, Format), TranscodeError> {
    let (stem, ext) = match name.rfind('.') {
        Some(dot) => (&name[..dot], &name[dot..]),
        None => (name, ""),
    };
    let format =
        Format::from_ext(ext).ok_or_else(|| TranscodeError::BadExtension(ext.to_owned()))?;
    let seq = stem.parse().unwrap_or(0);
    if seq > MAX_SEQ {
        return Err(TranscodeError::BadSeq(format!(
            "sequence number {seq} is above the largest a segment can carry ({MAX_SEQ})"
        )));
    }
    Ok((seq, format))
}

/// `Content-Duration` in milliseconds: 2000 when missing or not a number (go-livepeer), an
/// error when out of range.
pub fn duration_ms(header: Option<&str>) -> Result<u32, TranscodeError> {
    let Some(n) = header.and_then(|h| h.trim().parse::<i64>().ok()) else {
        return Ok(DEFAULT_DURATION_MS);
    };
    if !(0..=i64::from(MAX_DURATION_MS)).contains(&n) {
        return Err(TranscodeError::BadHeader {
            header: "Content-Duration",
            message: format!("must be from 0 to {MAX_DURATION_MS} milliseconds"),
        });
    }
    Ok(if n == 0 { DEFAULT_DURATION_MS } else { n as u32 })
}

/// `Content-Resolution` (`WxH`), when it parses; informational only.
pub fn resolution(header: Option<&str>) -> Option<(u32, u32)> {
    let (w, h) = header?.trim().split_once('x')?;
    let (w, h) = (w.parse().ok()?, h.parse().ok()?);
    (w > 0 && h > 0 && w <= 16384 && h <= 16384).then_some((w, h))
}

/// Whether `body` looks like `format`: MPEG-TS packets start with the sync byte 0x47 every
/// 188 bytes; MP4 starts with a box such as `ftyp`.
pub fn looks_like(body: &[u8], format: Format) -> bool {
    match format {
        Format::MpegTs => {
            body.len() >= 188 && body.iter().step_by(188).take(16).all(|b| *b == 0x47)
        }
        Format::Mp4 => body.get(4..8).is_some_and(|t| {
            [b"ftyp", b"styp", b"moov", b"moof", b"free", b"mdat"].iter().any(|k| t == *k)
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_and_name_the_field() {
        let s = parse_settings(r#"{"presets":["P144p30fps16x9"],"profiles":[{"name":"a","width":2,"height":2,"bitrate":1}],"timeoutMultiplier":3}"#).unwrap();
        let names: Vec<_> = s.profiles.unwrap().into_iter().map(|p| p.name).collect();
        assert_eq!(names, ["P144p30fps16x9", "a"]);
        assert_eq!(s.timeout_multiplier, 3);
        assert_eq!(
            parse_settings("{}").unwrap(),
            StreamSettings { profiles: None, timeout_multiplier: 1 }
        );
        let field = |t: &str| parse_settings(t).unwrap_err().field().unwrap();
        assert_eq!(field("nope"), "Livepeer-Transcode-Configuration.(json)");
        assert_eq!(field(r#"{"presets":["x"]}"#), "Livepeer-Transcode-Configuration.presets[0]");
        assert_eq!(
            field(r#"{"profiles":[{"width":1}]}"#),
            "Livepeer-Transcode-Configuration.profiles[0].height"
        );
        assert_eq!(
            field(r#"{"timeoutMultiplier":-1}"#),
            "Livepeer-Transcode-Configuration.timeoutMultiplier"
        );
    }

    #[test]
    fn names_durations_and_bodies() {
        assert_eq!(file_name("12.ts").unwrap(), (12, Format::MpegTs));
        assert_eq!(file_name("x.mp4").unwrap(), (0, Format::Mp4));
        assert_eq!(file_name("9223372036854775807.ts").unwrap().0, MAX_SEQ);
        assert_eq!(file_name("9223372036854775808.ts").unwrap_err().field().unwrap(), "seq");
        assert_eq!(file_name("1.m3u8").unwrap_err(), TranscodeError::BadExtension(".m3u8".into()));
        assert_eq!(duration_ms(None).unwrap(), 2000);
        assert_eq!(duration_ms(Some("abc")).unwrap(), 2000);
        assert_eq!(duration_ms(Some("1500")).unwrap(), 1500);
        assert!(duration_ms(Some("300001")).is_err());
        assert_eq!(resolution(Some("1280x720")), Some((1280, 720)));
        assert!(manifest_id("a/b", "u").is_err() && manifest_id("ok-1", "u").is_ok());
        let mut ts = vec![0u8; 376];
        ts[0] = 0x47;
        assert!(!looks_like(&ts, Format::MpegTs));
        ts[188] = 0x47;
        assert!(looks_like(&ts, Format::MpegTs));
        assert!(looks_like(b"\0\0\0\x18ftypisom", Format::Mp4));
    }
}
