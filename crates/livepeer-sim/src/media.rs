//! Deterministic stand-ins for what AI runners produce (PNG images, WAV speech, MP4 video,
//! transcripts, masks, captions) and the in-memory store that serves result files under
//! `/stream/<request>/<file>`.
//!
//! Every output derives from a hash of the request's inputs, so one request always yields the
//! same bytes (MP4 aside, whose bytes depend on the installed ffmpeg) and tests can compare
//! them; nothing is random except the file names, as in go-livepeer.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use livepeer_pm::keccak256;
use tokio::time::Instant;

/// Generated images and videos fit in `MAX_SIDE` × `MAX_SIDE` pixels, aspect ratio kept. A real
/// runner's 1024×576 output would only make tests and benchmarks slower and bigger without
/// exercising anything more on the gateway side.
pub(crate) const MAX_SIDE: u32 = 64;

/// Sample rate of the generated speech. Low, because the audio only has to be a valid WAV.
pub(crate) const SAMPLE_RATE: u32 = 16_000;

/// Result files are kept this long, like go-livepeer's `aiWorkerResultsTimeout`.
const KEEP_FOR: Duration = Duration::from_secs(10 * 60);
/// At most this many result files are kept; the oldest go first.
const MAX_FILES: usize = 1024;
/// At most this many bytes of result files are kept; the oldest go first.
const MAX_BYTES: usize = 256 << 20;
/// An ffmpeg run that takes longer than this is killed.
const FFMPEG_TIMEOUT: Duration = Duration::from_secs(30);

/// Keccak-256 of the parts, each prefixed by its length so that different splits of the same
/// bytes give different keys.
pub(crate) fn digest(parts: &[&[u8]]) -> [u8; 32] {
    let mut all = Vec::new();
    for part in parts {
        all.extend_from_slice(&(part.len() as u64).to_be_bytes());
        all.extend_from_slice(part);
    }
    keccak256(all).0
}

/// `width` × `height` scaled down to fit [`MAX_SIDE`], keeping the aspect ratio; never 0.
pub(crate) fn fit(width: u32, height: u32) -> (u32, u32) {
    let (w, h) = (width.max(1), height.max(1));
    let longest = w.max(h);
    if longest <= MAX_SIDE {
        return (w, h);
    }
    let scale = |v: u32| ((u64::from(v) * u64::from(MAX_SIDE) / u64::from(longest)) as u32).max(1);
    (scale(w), scale(h))
}

/// An RGB PNG of a gradient whose two colours come from `key`: left to right from one colour
/// to the other, darkening towards the bottom.
pub(crate) fn png(width: u32, height: u32, key: &[u8; 32]) -> Result<Vec<u8>, png::EncodingError> {
    let from = [key[0], key[1], key[2]];
    let to = [key[3], key[4], key[5]];
    let (w, h) = (width.max(1), height.max(1));
    let mut pixels = Vec::with_capacity(w as usize * h as usize * 3);
    for y in 0..h {
        let shade = 255 - y * 128 / h;
        for x in 0..w {
            let t = if w == 1 { 0 } else { x * 255 / (w - 1) };
            for c in 0..3 {
                let mixed = (u32::from(from[c]) * (255 - t) + u32::from(to[c]) * t) / 255;
                pixels.push((mixed * shade / 255) as u8);
            }
        }
    }
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, w, h);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::Fast);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(&pixels)?;
    writer.finish()?;
    Ok(out)
}

/// A 16-bit mono PCM WAV "reading" `text`: 60 ms per character (at least 250 ms, at most
/// 10 s), one tone per character whose pitch depends on it, silence for whitespace.
pub(crate) fn speech_wav(text: &str) -> Vec<u8> {
    let chars: Vec<char> = text.chars().collect();
    let millis = (chars.len() as u64 * 60).clamp(250, 10_000);
    let samples = u64::from(SAMPLE_RATE) * millis / 1000;
    let mut data = Vec::with_capacity(samples as usize * 2);
    for i in 0..samples {
        let at = if chars.is_empty() {
            None
        } else {
            chars.get((i * chars.len() as u64 / samples) as usize)
        };
        let value = match at {
            Some(c) if !c.is_whitespace() => {
                let freq = 180.0 + f64::from(u32::from(*c) % 40) * 15.0;
                let phase = 2.0 * std::f64::consts::PI * freq * i as f64 / f64::from(SAMPLE_RATE);
                (phase.sin() * 8000.0) as i16
            }
            _ => 0,
        };
        data.extend_from_slice(&value.to_le_bytes());
    }
    wav_file(&data)
}

/// The 44-byte canonical RIFF/WAVE header for 16-bit mono PCM at [`SAMPLE_RATE`], then `pcm`.
fn wav_file(pcm: &[u8]) -> Vec<u8> {
    let data_len = pcm.len() as u32;
    let mut out = Vec::with_capacity(44 + pcm.len());
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVE");
    out.extend_from_slice(b"fmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&SAMPLE_RATE.to_le_bytes());
    out.extend_from_slice(&(SAMPLE_RATE * 2).to_le_bytes()); // byte rate
    out.extend_from_slice(&2u16.to_le_bytes()); // block align
    out.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    out.extend_from_slice(pcm);
    out
}

/// Why a video could not be made.
#[derive(Debug, thiserror::Error)]
pub(crate) enum VideoError {
    /// No `ffmpeg` on `PATH`.
    #[error("ffmpeg is not installed: the simulator needs ffmpeg on PATH for image-to-video")]
    Missing,
    /// ffmpeg ran and failed.
    #[error("ffmpeg failed: {0}")]
    Failed(String),
    /// ffmpeg did not finish in time.
    #[error("ffmpeg timed out")]
    Timeout,
    /// Starting ffmpeg or reading its output failed.
    #[error("ffmpeg: {0}")]
    Io(#[from] std::io::Error),
}

/// A file removed when dropped, so an abandoned request (client gone, future dropped) leaves
/// nothing behind.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A one-second MP4 (H.264, or MPEG-4 part 2 when ffmpeg has no libx264) of ffmpeg's test
/// pattern at `fps`, its hue turned by an angle taken from `key`, sized to fit [`MAX_SIDE`].
pub(crate) async fn mp4(
    width: u32,
    height: u32,
    fps: u32,
    key: &[u8; 32],
) -> Result<Vec<u8>, VideoError> {
    let (w, h) = fit(width, height);
    // yuv420p needs even dimensions.
    let even = |v: u32| (v & !1).max(2);
    let (w, h) = (even(w), even(h));
    let hue = u32::from(key[0]) * 360 / 256;
    let name = format!("livepeer-sim-{}-{:016x}.mp4", std::process::id(), rand::random::<u64>());
    let file = TempFile(std::env::temp_dir().join(name));
    let source = format!("testsrc=size={w}x{h}:rate={fps}:duration=1");
    let filter = format!("hue=h={hue}");
    let codecs: [&[&str]; 2] = [&["-c:v", "libx264", "-preset", "ultrafast"], &["-c:v", "mpeg4"]];
    let mut failure = String::new();
    for codec in codecs {
        let mut command = tokio::process::Command::new("ffmpeg");
        command
            .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-f", "lavfi", "-i"])
            .arg(&source)
            .args(["-vf", &filter, "-pix_fmt", "yuv420p"])
            .args(codec)
            .args(["-f", "mp4"])
            .arg(&file.0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let child = match command.spawn() {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(VideoError::Missing),
            Err(e) => return Err(e.into()),
        };
        let output = tokio::time::timeout(FFMPEG_TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| VideoError::Timeout)??;
        if output.status.success() {
            return Ok(tokio::fs::read(&file.0).await?);
        }
        let text = String::from_utf8_lossy(&output.stderr);
        failure = text.trim().chars().take(500).collect();
    }
    Err(VideoError::Failed(failure))
}

/// Words the fake transcripts are made of.
const VOCABULARY: [&str; 16] = [
    "livepeer",
    "orchestrator",
    "gateway",
    "ticket",
    "segment",
    "stream",
    "video",
    "model",
    "worker",
    "payment",
    "token",
    "round",
    "broadcast",
    "render",
    "frame",
    "signal",
];

/// One timed piece of a transcript.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Chunk {
    pub(crate) start: f64,
    pub(crate) end: f64,
    pub(crate) text: String,
}

/// A transcript of `seconds` of audio: one chunk of four words per five seconds (at most 200),
/// the words picked by hashing the audio bytes.
pub(crate) fn transcript(audio: &[u8], seconds: u64) -> (String, Vec<Chunk>) {
    let audio_key = digest(&[audio]);
    let count = seconds.div_ceil(5).clamp(1, 200);
    let mut chunks = Vec::with_capacity(count as usize);
    for i in 0..count {
        let key = digest(&[&audio_key, &i.to_be_bytes()]);
        let words: Vec<&str> =
            key[..4].iter().map(|b| VOCABULARY[usize::from(*b) % VOCABULARY.len()]).collect();
        let start = (i * 5) as f64;
        let end = ((i + 1) * 5).min(seconds.max(1)) as f64;
        chunks.push(Chunk { start, end, text: format!(" {}.", words.join(" ")) });
    }
    let text = chunks.iter().map(|c| c.text.as_str()).collect::<String>();
    (text, chunks)
}

/// Segment-anything-2's three answers, each a JSON array written as a string.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Masks {
    pub(crate) masks: String,
    pub(crate) scores: String,
    pub(crate) logits: String,
}

/// `count` masks of a small grid (the image fitted to [`MAX_SIDE`], divided by 8): centred
/// ellipses growing with the mask index, logits positive inside, scores falling with size.
pub(crate) fn masks(width: u32, height: u32, count: usize, key: &[u8; 32]) -> Masks {
    let (w, h) = fit(width, height);
    let (gw, gh) = ((w / 8).max(1) as usize, (h / 8).max(1) as usize);
    let mut masks = Vec::with_capacity(count);
    let mut logits = Vec::with_capacity(count);
    let mut scores = Vec::with_capacity(count);
    for k in 0..count {
        let radius = 0.25 + 0.15 * k as f64;
        let mut mask = Vec::with_capacity(gh);
        let mut logit = Vec::with_capacity(gh);
        for y in 0..gh {
            let mut mask_row = Vec::with_capacity(gw);
            let mut logit_row = Vec::with_capacity(gw);
            for x in 0..gw {
                let dx = (x as f64 + 0.5) / gw as f64 - 0.5;
                let dy = (y as f64 + 0.5) / gh as f64 - 0.5;
                let distance = (dx * dx + dy * dy).sqrt() / radius;
                let value = ((1.0 - distance) * 400.0).round() / 100.0;
                logit_row.push(value);
                mask_row.push(u8::from(value > 0.0));
            }
            mask.push(mask_row);
            logit.push(logit_row);
        }
        masks.push(mask);
        logits.push(logit);
        let jitter = f64::from(key[k % 32]) / 255.0 * 0.05;
        scores.push(((0.95 - 0.1 * k as f64 - jitter) * 1000.0).round() / 1000.0);
    }
    let text = |v: serde_json::Value| v.to_string();
    Masks {
        masks: text(serde_json::json!(masks)),
        scores: text(serde_json::json!(scores)),
        logits: text(serde_json::json!(logits)),
    }
}

/// A caption of an image: what the prompt asked about, then what it is.
pub(crate) fn caption(prompt: &str, width: u32, height: u32, format: &str) -> String {
    let what = format!("a {width}x{height} {format} image");
    match prompt.trim() {
        "" => what,
        asked => format!("{asked}: {what}"),
    }
}

/// Result files, kept in memory for [`KEEP_FOR`], bounded by [`MAX_FILES`] and [`MAX_BYTES`].
#[derive(Default)]
pub(crate) struct Store {
    inner: Mutex<StoreInner>,
}

#[derive(Default)]
struct StoreInner {
    files: HashMap<String, (Bytes, &'static str)>,
    order: VecDeque<(String, Instant)>,
    bytes: usize,
}

impl StoreInner {
    fn evict(&mut self, now: Instant) {
        while let Some((key, at)) = self.order.front() {
            let full = self.files.len() > MAX_FILES || self.bytes > MAX_BYTES;
            if !full && now.duration_since(*at) < KEEP_FOR {
                break;
            }
            if let Some((data, _)) = self.files.remove(key) {
                self.bytes -= data.len();
            }
            self.order.pop_front();
        }
    }
}

impl Store {
    /// Keeps `data` under `key` (`<request>/<file>`), evicting the oldest files over the bounds.
    pub(crate) fn put(&self, key: String, data: Bytes, content_type: &'static str) {
        let Ok(mut inner) = self.inner.lock() else { return };
        let now = Instant::now();
        inner.bytes += data.len();
        if let Some((old, _)) = inner.files.insert(key.clone(), (data, content_type)) {
            inner.bytes -= old.len();
        }
        inner.order.push_back((key, now));
        inner.evict(now);
    }

    /// The file under `key` and its content type, if still kept.
    pub(crate) fn get(&self, key: &str) -> Option<(Bytes, &'static str)> {
        let mut inner = self.inner.lock().ok()?;
        inner.evict(Instant::now());
        inner.files.get(key).cloned()
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (files, bytes) = self.inner.lock().map(|i| (i.files.len(), i.bytes)).unwrap_or((0, 0));
        f.debug_struct("Store").field("files", &files).field("bytes", &bytes).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_keeps_aspect_and_bounds() {
        assert_eq!(fit(1024, 576), (64, 36));
        assert_eq!(fit(512, 512), (64, 64));
        assert_eq!(fit(32, 16), (32, 16));
        assert_eq!(fit(0, 0), (1, 1));
        assert_eq!(fit(10_000, 1), (64, 1));
    }

    #[test]
    fn png_decodes_to_its_size() {
        let bytes = png(40, 20, &digest(&[b"x"])).unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let reader = decoder.read_info().unwrap();
        assert_eq!((reader.info().width, reader.info().height), (40, 20));
    }

    #[test]
    fn wav_header_matches_data() {
        let wav = speech_wav("hello world");
        assert_eq!(&wav[..4], b"RIFF");
        assert_eq!(&wav[8..16], b"WAVEfmt ");
        let data_len = u32::from_le_bytes([wav[40], wav[41], wav[42], wav[43]]) as usize;
        assert_eq!(data_len + 44, wav.len());
        // 11 characters × 60 ms at 16 kHz, 2 bytes a sample.
        assert_eq!(data_len, 660 * 16 * 2);
    }

    #[test]
    fn store_evicts_oldest_beyond_bound() {
        let store = Store::default();
        for i in 0..MAX_FILES + 2 {
            store.put(format!("r/{i}"), Bytes::from_static(b"x"), "image/png");
        }
        assert!(store.get("r/0").is_none());
        assert!(store.get("r/1").is_none());
        assert!(store.get(&format!("r/{}", MAX_FILES + 1)).is_some());
    }

    #[test]
    fn masks_are_json_arrays() {
        let m = masks(64, 32, 3, &[7; 32]);
        let parsed: Vec<Vec<Vec<u8>>> = serde_json::from_str(&m.masks).unwrap();
        assert_eq!((parsed.len(), parsed[0].len(), parsed[0][0].len()), (3, 4, 8));
        let scores: Vec<f64> = serde_json::from_str(&m.scores).unwrap();
        assert!(scores[0] > scores[1] && scores[1] > scores[2]);
    }
}
