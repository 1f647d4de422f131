//! The supervised ffmpeg child that remuxes a published FLV stream into MPEG-TS without
//! re-encoding (`-c copy`), and the cutter that turns its output into segments.
//!
//! Why ffmpeg: it remuxes every codec RTMP encoders send (H.264 and HEVC, AAC and MP3) into
//! MPEG-TS correctly (PES framing, AVCC to Annex B, ADTS, PCR), and no maintained Rust crate
//! does that whole job. It runs as one child per stream, killed with the stream; its input is
//! the FLV the RTMP session feeds it, and its output is read by [`super::cutter::Cutter`].

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::cutter::{Cut, CutError, CutLimits, Cutter};
use super::flv::{self, TagKind};

/// Segments handed over before the stream's consumer must take one: the remux waits (and
/// with it the publisher's connection) rather than holding more.
const QUEUED_SEGMENTS: usize = 2;
/// The tail of ffmpeg's error output kept for the log.
const STDERR_TAIL: usize = 2048;
/// How long ffmpeg has to finish once its input ended: it is killed after, so that one that
/// wedges does not keep its process and the stream's task until shutdown.
const FINISH_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Why a stream's segmenting ended early.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    /// ffmpeg could not be started.
    #[error("cannot run ffmpeg: {0}")]
    Spawn(std::io::Error),
    /// The remuxed stream could not be cut.
    #[error(transparent)]
    Cut(#[from] CutError),
    /// ffmpeg held more of the stream than a segment may hold without giving any of it out.
    #[error("the remux held over {0} bytes of the stream without output")]
    Held(u64),
    /// ffmpeg failed.
    #[error("ffmpeg failed ({status}): {stderr}")]
    Ffmpeg {
        /// Its exit status.
        status: String,
        /// The end of what it printed.
        stderr: String,
    },
}

/// The writing end: FLV tags in.
#[derive(Debug)]
pub struct SegmenterInput {
    stdin: ChildStdin,
    buf: Vec<u8>,
    /// Bytes written to ffmpeg.
    written: u64,
    /// Bytes ffmpeg wrote out, counted by the pump.
    out: Arc<AtomicU64>,
    /// The most ffmpeg may hold: a segment's byte cap.
    most: u64,
    /// Cancelled to kill ffmpeg and end the stream.
    abort: CancellationToken,
    /// Cancelled when this input is dropped: ffmpeg may then be quiet [`FINISH_GRACE`] at most.
    closed: CancellationToken,
}

impl Drop for SegmenterInput {
    fn drop(&mut self) {
        self.closed.cancel();
    }
}

impl SegmenterInput {
    /// Sends one media message to the remux; waits while ffmpeg is behind.
    pub async fn write(
        &mut self,
        kind: TagKind,
        timestamp_ms: u32,
        body: &[u8],
    ) -> std::io::Result<()> {
        self.buf.clear();
        if flv::write_tag(&mut self.buf, kind, timestamp_ms, body).is_none() {
            // A message FLV cannot frame; no encoder sends one, so it is dropped.
            tracing::debug!(bytes = body.len(), "RTMP message too large for FLV, dropped");
            return Ok(());
        }
        // ffmpeg interleaves audio and video by timestamp: given one audio frame and then
        // video whose timestamps stand still, it held all of it (700 MB for 500 MB sent)
        // waiting for more audio. Its backlog may not exceed what one segment may hold.
        let behind = self.written.saturating_sub(self.out.load(Ordering::Acquire));
        if behind > self.most {
            self.abort.cancel();
            return Err(std::io::Error::other(SegmentError::Held(self.most)));
        }
        self.stdin.write_all(&self.buf).await?;
        self.written += self.buf.len() as u64;
        Ok(())
    }
}

/// Starts the remux of one stream: the input to feed, and the segments (or the error that
/// ended them) in order. Closing or dropping the input ends the stream: its last segment
/// follows, then the channel closes.
pub async fn spawn(
    limits: CutLimits,
) -> Result<(SegmenterInput, mpsc::Receiver<Result<Cut, SegmentError>>), SegmentError> {
    let mut child = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "error"])
        // The FLV header announces audio and video before either is seen; a stream without
        // audio would otherwise be probed for ffmpeg's default 5 s before any output.
        .args(["-analyzeduration", "1000000", "-f", "flv", "-i", "pipe:0"])
        .args(["-map", "0:v?", "-map", "0:a?", "-c", "copy", "-f", "mpegts", "pipe:1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(SegmentError::Spawn)?;
    let mut stdin = child.stdin.take().ok_or_else(|| no_pipe("stdin"))?;
    stdin.write_all(&flv::file_header()).await.map_err(SegmentError::Spawn)?;
    let (tx, rx) = mpsc::channel(QUEUED_SEGMENTS);
    let (out, abort) = (Arc::new(AtomicU64::new(0)), CancellationToken::new());
    let closed = CancellationToken::new();
    let most = limits.max_bytes as u64;
    let ends = Ends { out: out.clone(), abort: abort.clone(), closed: closed.clone() };
    tokio::spawn(pump(child, limits, tx, ends));
    let written = 0;
    Ok((SegmenterInput { stdin, buf: Vec::new(), written, out, most, abort, closed }, rx))
}

fn no_pipe(which: &str) -> SegmentError {
    SegmentError::Spawn(std::io::Error::other(format!("ffmpeg's {which} is not piped")))
}

/// What the pump shares with the input: the output counted, the abort, the input's end.
struct Ends {
    out: Arc<AtomicU64>,
    abort: CancellationToken,
    closed: CancellationToken,
}

/// Reads ffmpeg's output into the cutter until it ends (or `abort`, or it gives nothing for
/// [`FINISH_GRACE`] once the input closed), counting it in `out`, then reports how it ended.
async fn pump(
    mut child: Child,
    limits: CutLimits,
    tx: mpsc::Sender<Result<Cut, SegmentError>>,
    Ends { out, abort, closed }: Ends,
) {
    // Quiet for the grace once its input ended (timed afresh at each read, so that time spent
    // handing segments to a slow consumer does not count against it).
    let quiet = || async {
        closed.cancelled().await;
        tokio::time::sleep(FINISH_GRACE).await;
    };
    let (Some(mut stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        let _ = tx.send(Err(no_pipe("output"))).await;
        return;
    };
    let tail = tokio::spawn(stderr_tail(stderr));
    let mut cutter = Cutter::new(limits);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let read = tokio::select! {
            () = abort.cancelled() => {
                // Dropping the child kills ffmpeg, with what it held.
                let _ = tx.send(Err(SegmentError::Held(limits.max_bytes as u64))).await;
                return;
            }
            () = quiet() => {
                // Dropping the child kills ffmpeg (and closes its stderr for the tail).
                let status = format!("no end {} s after its input ended", FINISH_GRACE.as_secs());
                let _ = tx.send(Err(SegmentError::Ffmpeg { status, stderr: String::new() })).await;
                return;
            }
            read = stdout.read(&mut buf) => read,
        };
        let n = match read {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        out.fetch_add(n as u64, Ordering::AcqRel);
        match cutter.feed(&buf[..n]) {
            Ok(cuts) => {
                for cut in cuts {
                    if tx.send(Ok(cut)).await.is_err() {
                        return; // the stream is gone; dropping the child kills ffmpeg
                    }
                }
            }
            Err(e) => {
                let _ = tx.send(Err(e.into())).await;
                return;
            }
        }
    }
    if let Some(cut) = cutter.finish() {
        let _ = tx.send(Ok(cut)).await;
    }
    // Its output ended, so it is exiting; one that does not is killed.
    let status = match tokio::time::timeout(FINISH_GRACE, child.wait()).await {
        Ok(status) => status,
        Err(_) => {
            let _ = child.kill().await;
            child.wait().await
        }
    };
    let stderr = tail.await.unwrap_or_default();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => {
            let _ = tx.send(Err(SegmentError::Ffmpeg { status: s.to_string(), stderr })).await;
        }
        Err(e) => {
            let _ = tx.send(Err(SegmentError::Ffmpeg { status: e.to_string(), stderr })).await;
        }
    }
}

/// The last [`STDERR_TAIL`] bytes ffmpeg printed.
async fn stderr_tail(mut stderr: tokio::process::ChildStderr) -> String {
    let mut tail: Vec<u8> = Vec::new();
    let mut buf = [0u8; 1024];
    while let Ok(n) = stderr.read(&mut buf).await {
        if n == 0 {
            break;
        }
        tail.extend_from_slice(&buf[..n]);
        if tail.len() > STDERR_TAIL {
            tail.drain(..tail.len() - STDERR_TAIL);
        }
    }
    String::from_utf8_lossy(&tail).trim().to_owned()
}

/// Whether ffmpeg can be run: checked once when RTMP ingest starts, so that an operator
/// learns at start rather than at the first publish.
/// Within 10 s: RTMP ingest accepts nothing until it is known, and an ffmpeg that hangs
/// (killed when given up on) counts as not there.
pub async fn ffmpeg_available() -> bool {
    let status = Command::new("ffmpeg")
        .arg("-version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .status();
    let ran = tokio::time::timeout(std::time::Duration::from_secs(10), status).await;
    ran.is_ok_and(|r| r.is_ok_and(|s| s.success()))
}
