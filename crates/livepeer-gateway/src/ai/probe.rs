//! Media probes for request validation: image dimensions read from the file header, and audio
//! duration measured by `ffprobe`.
//!
//! Orchestrators price the image pipelines by input pixels and audio-to-text by whole seconds of
//! audio (PROTOCOL.md §7.3), so the gateway measures the same things before it pays.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

/// The image formats an orchestrator can decode: go-livepeer registers only these decoders, and
/// answers 400 to anything else after the gateway has already paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    /// PNG.
    Png,
    /// JPEG.
    Jpeg,
    /// GIF (87a or 89a).
    Gif,
}

/// What the header of an uploaded image says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageInfo {
    /// The container format.
    pub format: ImageFormat,
    /// Width in pixels, never 0.
    pub width: u32,
    /// Height in pixels, never 0.
    pub height: u32,
}

impl ImageInfo {
    /// `width × height`; cannot overflow a `u64`.
    pub fn pixels(&self) -> u64 {
        u64::from(self.width) * u64::from(self.height)
    }
}

/// Why an upload is not a usable image.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    /// Zero bytes.
    #[error("the uploaded file is empty")]
    Empty,
    /// A recognised image format that orchestrators cannot decode.
    #[error("{0} images are not supported: upload a PNG, JPEG or GIF image")]
    Unsupported(String),
    /// Not an image at all.
    #[error("the file is not a PNG, JPEG or GIF image")]
    NotAnImage,
    /// The header is truncated or malformed.
    #[error("cannot read the image dimensions: {0}")]
    Corrupt(String),
    /// A zero width or height.
    #[error("the image has a zero width or height")]
    ZeroSize,
}

/// Reads the format and dimensions of a PNG, JPEG or GIF from its header. It does not decode
/// pixel data, so a file with a valid header and a corrupt body passes.
pub fn image_info(bytes: &[u8]) -> Result<ImageInfo, ImageError> {
    if bytes.is_empty() {
        return Err(ImageError::Empty);
    }
    // Matched by magic bytes here rather than by `imagesize::image_type`, whose heuristics for
    // other formats would otherwise decide what counts as "not an image".
    let format = if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        ImageFormat::Png
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        ImageFormat::Jpeg
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        ImageFormat::Gif
    } else {
        return Err(match imagesize::image_type(bytes) {
            Ok(kind) => ImageError::Unsupported(format!("{kind:?}")),
            Err(_) => ImageError::NotAnImage,
        });
    };
    let size = imagesize::blob_size(bytes).map_err(|e| ImageError::Corrupt(e.to_string()))?;
    let dim =
        |v: usize| u32::try_from(v).map_err(|_| ImageError::Corrupt("dimension too large".into()));
    let (width, height) = (dim(size.width)?, dim(size.height)?);
    if width == 0 || height == 0 {
        return Err(ImageError::ZeroSize);
    }
    Ok(ImageInfo { format, width, height })
}

/// Why the duration of an upload could not be measured.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// `ffprobe` could not be started (not installed, not executable, ...).
    #[error("cannot run {path}: {source}")]
    Spawn {
        /// The program that was run.
        path: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// `ffprobe` did not finish in time; it has been killed.
    #[error("ffprobe did not finish within {0:?}")]
    Timeout(Duration),
    /// `ffprobe` exited with an error, typically because the input is not media it can read.
    #[error("ffprobe failed ({status}): {stderr}")]
    Failed {
        /// Exit status.
        status: String,
        /// The start of its standard error.
        stderr: String,
    },
    /// `ffprobe` read the input but found no audio with a duration.
    #[error("no audio duration found")]
    NoDuration,
}

/// How much of ffprobe's standard error is kept for the error message.
const STDERR_KEEP: usize = 512;

/// Measures the duration in seconds of the audio in `audio`, piping it to `ffprobe` on stdin.
///
/// Over a pipe the container's duration field is often absent (WAV and MP3 report `N/A`), so
/// ffprobe also lists the audio packets and the duration falls back to the end of the last
/// packet. The output is read line by line, never buffered whole. On timeout the process is
/// killed. Does not limit how many probes run at once: callers do that.
pub async fn audio_duration(
    ffprobe: &Path,
    audio: Bytes,
    timeout: Duration,
) -> Result<f64, ProbeError> {
    let spawn_error = |source| ProbeError::Spawn { path: ffprobe.display().to_string(), source };
    let run = async {
        let mut child = Command::new(ffprobe)
            .args(["-v", "error", "-select_streams", "a:0"])
            .args(["-show_entries", "packet=pts_time,duration_time:format=duration"])
            .args(["-of", "compact=nk=1", "pipe:0"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(spawn_error)?;
        let (stdin, stdout, stderr) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take());
        let feed = async move {
            if let Some(mut stdin) = stdin {
                // ffprobe may stop reading once it has an answer or gives up; the broken pipe
                // that follows is expected, and its verdict comes from its output and status.
                let _ = stdin.write_all(&audio).await;
            }
        };
        let ((), parsed, stderr, status) =
            tokio::join!(feed, parse_output(stdout), read_capped(stderr), child.wait());
        Ok::<_, ProbeError>((parsed, stderr, status.map_err(spawn_error)?))
    };
    let (parsed, stderr, status) =
        tokio::time::timeout(timeout, run).await.map_err(|_| ProbeError::Timeout(timeout))??;
    if !status.success() {
        return Err(ProbeError::Failed { status: status.to_string(), stderr });
    }
    parsed.ok_or(ProbeError::NoDuration)
}

/// Reads ffprobe's `compact=nk=1` output: `packet|<pts>|<duration>[|side_data...]` lines, then
/// `format|<duration>`. Prefers the container's duration, as go-livepeer's probe (avformat on a
/// seekable buffer) does; otherwise last packet end minus first packet start.
async fn parse_output(stdout: Option<impl AsyncRead + Unpin>) -> Option<f64> {
    let mut lines = BufReader::new(stdout?).lines();
    let (mut first, mut end, mut format) = (None::<f64>, None::<f64>, None);
    let num =
        |s: Option<&str>| s.and_then(|s| s.trim().parse::<f64>().ok()).filter(|v| v.is_finite());
    while let Ok(Some(line)) = lines.next_line().await {
        let mut cols = line.split('|');
        match cols.next() {
            Some("packet") => {
                let Some(pts) = num(cols.next()) else { continue };
                let stop = pts + num(cols.next()).unwrap_or(0.0);
                first = Some(first.map_or(pts, |f| f.min(pts)));
                end = Some(end.map_or(stop, |e| e.max(stop)));
            }
            Some("format") => format = num(cols.next()),
            _ => {}
        }
    }
    // Encoder priming gives AAC a negative first timestamp; it is not audio the client sent.
    let from_packets = end.map(|e| e - first.unwrap_or(0.0).max(0.0));
    format.or(from_packets).filter(|d| *d >= 0.0)
}

/// Reads a stream to the end, keeping only its first [`STDERR_KEEP`] bytes. Reading on is what
/// stops a chatty ffprobe from blocking on a full pipe.
async fn read_capped(stream: Option<impl AsyncRead + Unpin>) -> String {
    let (mut kept, mut buf) = (Vec::new(), [0u8; 1024]);
    if let Some(mut stream) = stream {
        while let Ok(n @ 1..) = stream.read(&mut buf).await {
            let room = STDERR_KEEP.saturating_sub(kept.len());
            kept.extend_from_slice(buf.get(..n.min(room)).unwrap_or_default());
        }
    }
    String::from_utf8_lossy(&kept).trim().to_owned()
}

/// Hand-made media headers for tests. Each carries just enough for the probes to read.
#[cfg(test)]
pub(crate) mod samples {
    /// A PNG signature and IHDR chunk (the CRC is not checked by the probe).
    pub(crate) fn png(width: u32, height: u32) -> Vec<u8> {
        let mut b = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        b.extend_from_slice(&width.to_be_bytes());
        b.extend_from_slice(&height.to_be_bytes());
        b.extend_from_slice(&[8, 2, 0, 0, 0, 0, 0, 0, 0]);
        b
    }

    /// SOI, a JFIF APP0 segment, then a baseline SOF0 segment with the dimensions.
    pub(crate) fn jpeg(width: u16, height: u16) -> Vec<u8> {
        let mut b = vec![0xFF, 0xD8, 0xFF, 0xE0, 0, 16];
        b.extend_from_slice(b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0");
        b.extend_from_slice(&[0xFF, 0xC0, 0, 17, 8]);
        b.extend_from_slice(&height.to_be_bytes());
        b.extend_from_slice(&width.to_be_bytes());
        b.extend_from_slice(&[3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1]);
        b
    }

    /// A GIF89a logical screen descriptor.
    pub(crate) fn gif(width: u16, height: u16) -> Vec<u8> {
        let mut b = b"GIF89a".to_vec();
        b.extend_from_slice(&width.to_le_bytes());
        b.extend_from_slice(&height.to_le_bytes());
        b.extend_from_slice(&[0, 0, 0, 0x3B]);
        b
    }

    /// A mono 16-bit PCM WAV of `samples` zero samples at `rate` Hz.
    pub(crate) fn wav(rate: u32, samples: u32) -> Vec<u8> {
        let data_len = samples * 2;
        let mut b = b"RIFF".to_vec();
        b.extend_from_slice(&(36 + data_len).to_le_bytes());
        b.extend_from_slice(b"WAVEfmt \x10\0\0\0\x01\0\x01\0");
        b.extend_from_slice(&rate.to_le_bytes());
        b.extend_from_slice(&(rate * 2).to_le_bytes()); // byte rate
        b.extend_from_slice(&[2, 0, 16, 0]); // block align, bits per sample
        b.extend_from_slice(b"data");
        b.extend_from_slice(&data_len.to_le_bytes());
        b.resize(b.len() + data_len as usize, 0);
        b
    }

    /// Whether `ffprobe` runs on this machine; tests that need it print a note and pass if not.
    pub(crate) fn have_ffprobe() -> bool {
        let ok = std::process::Command::new("ffprobe")
            .arg("-version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            println!("note: ffprobe not found; skipping a test that needs it");
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::samples::*;
    use super::*;

    #[test]
    fn reads_png_jpeg_gif_headers() {
        let png = image_info(&png(640, 480)).unwrap();
        assert_eq!((png.format, png.width, png.height), (ImageFormat::Png, 640, 480));
        let jpeg = image_info(&jpeg(1920, 1080)).unwrap();
        assert_eq!((jpeg.format, jpeg.width, jpeg.height), (ImageFormat::Jpeg, 1920, 1080));
        let gif = image_info(&gif(3, 5)).unwrap();
        assert_eq!((gif.format, gif.pixels()), (ImageFormat::Gif, 15));
    }

    #[test]
    fn rejects_other_formats_and_garbage() {
        let bmp = [b"BM".as_slice(), &[0; 60]].concat();
        assert!(matches!(image_info(&bmp), Err(ImageError::Unsupported(_))));
        assert_eq!(image_info(b"hello, world"), Err(ImageError::NotAnImage));
        assert_eq!(image_info(b""), Err(ImageError::Empty));
        assert_eq!(image_info(&png(0, 10)), Err(ImageError::ZeroSize));
        assert!(matches!(image_info(&png(1, 1)[..18]), Err(ImageError::Corrupt(_))));
    }

    #[tokio::test]
    async fn measures_wav_over_a_pipe() {
        if !have_ffprobe() {
            return;
        }
        let secs =
            audio_duration(Path::new("ffprobe"), wav(8000, 12_000).into(), Duration::from_secs(10))
                .await
                .unwrap();
        assert!((secs - 1.5).abs() < 1e-3, "{secs}");
        let err = audio_duration(
            Path::new("ffprobe"),
            Bytes::from_static(b"not audio"),
            Duration::from_secs(10),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, ProbeError::Failed { .. } | ProbeError::NoDuration), "{err}");
    }

    #[tokio::test]
    async fn missing_program_and_timeout() {
        let missing = Path::new("/nonexistent/ffprobe");
        let err = audio_duration(missing, wav(8000, 8000).into(), Duration::from_secs(1)).await;
        assert!(matches!(err, Err(ProbeError::Spawn { .. })));
        if have_ffprobe() {
            // A zero timeout elapses before a real ffprobe can possibly answer.
            let err =
                audio_duration(Path::new("ffprobe"), wav(8000, 8000).into(), Duration::ZERO).await;
            assert!(matches!(err, Err(ProbeError::Timeout(_))));
        }
    }
}
