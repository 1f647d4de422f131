//! The RTMP listener (`--rtmp-addr`, default 127.0.0.1:1935): one session per connection,
//! spoken by the scuffle-rtmp crate; each published stream is remuxed and cut by the
//! segmenter and handed to the [`IngestSink`] segment by segment.
//!
//! Bounds: at most `max_connections` connections at once (the rest are closed on accept),
//! of which at most `max_pending_per_address` from one address may be yet to publish;
//! the crate closes a connection that sends nothing for 2 to 2.5 s, so a silent publisher is
//! closed; a connection not publishing is closed `publish_deadline` after it opened or its
//! stream ended, and a publishing one when its media gives no segment for `stall`, so a
//! client trickling a byte at a time cannot keep a connection; one stream per connection;
//! segments are capped in bytes and in media time without a keyframe.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use scuffle_rtmp::ServerSession;
use scuffle_rtmp::session::server::{ServerSessionError, SessionData, SessionHandler};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use super::cutter::CutLimits;
use super::flv::TagKind;
use super::segmenter::{self, SegmenterInput};
use super::{IngestSink, OpenRequest, Segment, parse_names};
use crate::address_counts::{AddressCounts, AddressSlot};

/// The gateway's publish deadline ([`RtmpConfig::publish_deadline`]): a handshake, a connect
/// and a publish are a few round trips.
pub const PUBLISH_DEADLINE: Duration = Duration::from_secs(10);
/// The gateway's stall deadline ([`RtmpConfig::stall`]): a segment is at most 8 s of media,
/// and the first one waits for ffmpeg to start and read the stream's codecs.
pub const STALL: Duration = Duration::from_secs(30);

/// The gateway's cap on one address's connections yet to publish
/// ([`RtmpConfig::max_pending_per_address`]). A publisher needs one connection per stream,
/// and each publishes within a few round trips of opening, so even a relay restarting many
/// streams at once seldom has more than a few unpublished at the same moment; a client
/// holding connections open without publishing, within the publish deadline, takes at most
/// these of the listener's spare places and leaves the rest to other addresses.
pub const MAX_PENDING_PER_ADDRESS: usize = 8;

/// How often, at most, refused connections are logged.
const REFUSAL_WARNING_EVERY: Duration = Duration::from_secs(60);

/// Most bytes a connection may send while it publishes nothing. A client's handshake and
/// commands before its publish (or after its stream) are a few kilobytes; the crate buffers
/// up to four unfinished messages of 10 MiB each, so without this 17 connections that never
/// published held 680 MiB.
const MAX_UNPUBLISHED_BYTES: usize = 1 << 20;

/// RTMP ingest settings.
#[derive(Debug, Clone)]
pub struct RtmpConfig {
    /// Most connections at once, publishing or not.
    pub max_connections: usize,
    /// Most connections from one IP address that have not published yet (counted from the
    /// accept to the publish, or to the close). Beyond it that address's new connections
    /// are closed on accept.
    pub max_pending_per_address: usize,
    /// How streams are cut.
    pub limits: CutLimits,
    /// How long a connection may stay open without publishing: from its accept to its
    /// publish, and after its stream ended. The crate's deadlines are per read, so without
    /// this a byte every second held a connection (and its place under `max_connections`)
    /// for as long as the client liked.
    pub publish_deadline: Duration,
    /// How long a publishing connection may go without its media giving a segment (time
    /// spent handing segments over to the sink is not counted): a publisher sending no
    /// video, no keyframes or the same timestamp over and over is closed after it.
    pub stall: Duration,
}

/// Accepts RTMP connections on `listener` until `cancel`.
pub async fn serve<S: IngestSink>(
    listener: TcpListener,
    config: RtmpConfig,
    sink: Arc<S>,
    cancel: CancellationToken,
) {
    if !segmenter::ffmpeg_available().await {
        tracing::error!("RTMP ingest needs ffmpeg on the PATH; every publish will be refused");
    }
    let slots = Arc::new(Semaphore::new(config.max_connections));
    // Connections yet to publish, by the address they came from.
    let pending = Arc::new(AddressCounts::default());
    // A flood of refused connections must not flood the log: one warning a minute.
    let mut warned: Option<Instant> = None;
    let mut refused = |peer: SocketAddr, why: &str| {
        if warned.is_none_or(|at| at.elapsed() >= REFUSAL_WARNING_EVERY) {
            warned = Some(Instant::now());
            tracing::warn!(%peer, "RTMP connections refused: {why} (logged once a minute)");
        }
    };
    loop {
        let (socket, peer) = tokio::select! {
            () = cancel.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors or similar: back off rather than spin.
                    tracing::warn!(error = %e, "RTMP accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Some(waiting) = pending.take(peer.ip(), config.max_pending_per_address) else {
            refused(peer, "too many from one address yet to publish");
            continue;
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            refused(peer, "too many connections");
            continue;
        };
        let _ = socket.set_nodelay(true);
        let host = listener.local_addr().map_or_else(|_| "localhost".into(), |a| a.to_string());
        let handler = Publisher::new(sink.clone(), &config, host, peer, waiting);
        let cancel = cancel.clone();
        let publish_deadline = config.publish_deadline;
        tokio::spawn(async move {
            let kill = handler.kill.clone();
            let publishing = handler.publishing.subscribe();
            let socket = Metered { socket, publishing: publishing.clone(), unpublished: 0 };
            let session = ServerSession::new(socket, handler);
            tokio::select! {
                () = cancel.cancelled() => {}
                () = kill.cancelled() => {}
                () = not_publishing_for(publishing.clone(), publish_deadline) => {
                    tracing::info!(%peer, "RTMP connection closed: it did not publish in time");
                }
                ended = session.run() => {
                    if let Err(e) = ended.map_err(|e| e.to_string()) {
                        tracing::debug!(%peer, error = %e, "RTMP session ended");
                    }
                }
            }
            drop(slot);
        });
    }
}

/// Returns once the connection has gone `deadline` without publishing: from its start, or
/// from the end of its stream.
async fn not_publishing_for(mut publishing: watch::Receiver<bool>, deadline: Duration) {
    loop {
        if *publishing.borrow_and_update() {
            if publishing.changed().await.is_err() {
                return std::future::pending().await;
            }
            continue;
        }
        tokio::select! {
            () = tokio::time::sleep(deadline) => return,
            changed = publishing.changed() => {
                if changed.is_err() {
                    return std::future::pending().await;
                }
            }
        }
    }
}

/// A connection's socket, counting what it reads while no stream is published: past
/// [`MAX_UNPUBLISHED_BYTES`] its reads fail, which ends the session.
struct Metered {
    socket: TcpStream,
    publishing: watch::Receiver<bool>,
    unpublished: usize,
}

impl AsyncRead for Metered {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.socket).poll_read(cx, buf);
        if !*this.publishing.borrow() {
            this.unpublished += buf.filled().len() - before;
            if this.unpublished > MAX_UNPUBLISHED_BYTES {
                let why = format!("over {MAX_UNPUBLISHED_BYTES} bytes sent without publishing");
                return Poll::Ready(Err(std::io::Error::other(why)));
            }
        }
        polled
    }
}

impl AsyncWrite for Metered {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.socket).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.socket).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.socket).poll_shutdown(cx)
    }
}

/// One connection's handler: it publishes at most one stream.
struct Publisher<S: IngestSink> {
    sink: Arc<S>,
    limits: CutLimits,
    stall: Duration,
    host: String,
    peer: SocketAddr,
    /// Cancelled to close the connection (a refused or failed stream).
    kill: CancellationToken,
    /// Whether a stream is being published, for the connection's publish deadline.
    publishing: watch::Sender<bool>,
    /// Whether the connection asked to publish: a second stream is refused, even after the
    /// first one ended.
    published: bool,
    /// The connection's place among its address's connections yet to publish, given back at
    /// its first publish, before the client is told the publish started (given back by the
    /// connection's task once woken, a client that connected again at once could still find
    /// it taken). A connection whose stream ended is not counted again: it has the publish
    /// deadline to leave, and may not publish a second stream.
    waiting: Option<AddressSlot>,
    input: Option<SegmenterInput>,
}

impl<S: IngestSink> Publisher<S> {
    fn new(
        sink: Arc<S>,
        config: &RtmpConfig,
        host: String,
        peer: SocketAddr,
        waiting: AddressSlot,
    ) -> Self {
        let (limits, stall) = (config.limits, config.stall);
        let kill = CancellationToken::new();
        let publishing = watch::Sender::new(false);
        let waiting = Some(waiting);
        Self {
            sink,
            limits,
            stall,
            host,
            peer,
            kill,
            publishing,
            published: false,
            waiting,
            input: None,
        }
    }

    /// Admits the stream and starts its remux and its pump of segments to the sink.
    async fn start(&mut self, app: &str, name: &str) -> Result<(), String> {
        if std::mem::replace(&mut self.published, true) {
            return Err("one stream per connection".into());
        }
        // The webhook and the customer key are asked under their own deadlines.
        self.publishing.send_replace(true);
        self.waiting = None;
        let path = format!("{app}/{name}");
        // The name's key part may be a customer's API key: it is never written to the log.
        let (manifest_id, key) = parse_names(&path)
            .ok_or_else(|| "the stream name is not a usable manifest id and key".to_owned())?;
        let url = format!("rtmp://{}/{path}", self.host);
        let stream = self.sink.open(OpenRequest { url, manifest_id, key }).await?;
        let (input, mut segments) = match segmenter::spawn(self.limits).await {
            Ok(s) => s,
            Err(e) => {
                self.sink.close(stream, Some(e.to_string())).await;
                return Err(e.to_string());
            }
        };
        self.input = Some(input);
        let sink = self.sink.clone();
        let kill = self.kill.clone();
        let stall = self.stall;
        tokio::spawn(async move {
            let mut error = None;
            loop {
                // Only the wait for the media's next segment is timed, not the sink's.
                let Ok(next) = tokio::time::timeout(stall, segments.recv()).await else {
                    error = Some(format!("no segment for {stall:?}: no video keyframes came"));
                    kill.cancel();
                    break;
                };
                let Some(next) = next else { break };
                match next {
                    Ok(cut) => {
                        let seg = Segment { seq: cut.seq, data: cut.data, duration: cut.duration };
                        if let Err(why) = sink.segment(&stream, seg).await {
                            error = Some(why);
                            kill.cancel();
                            break;
                        }
                    }
                    Err(e) => {
                        error = Some(e.to_string());
                        kill.cancel();
                        break;
                    }
                }
            }
            sink.close(stream, error).await;
        });
        Ok(())
    }

    async fn media(&mut self, kind: TagKind, timestamp: u32, data: &[u8]) {
        let Some(input) = self.input.as_mut() else { return };
        if let Err(e) = input.write(kind, timestamp, data).await {
            tracing::warn!(peer = %self.peer, error = %e, "RTMP stream's remux ended");
            self.input = None;
            self.kill.cancel();
        }
    }
}

impl<S: IngestSink> SessionHandler for Publisher<S> {
    async fn on_publish(
        &mut self,
        _stream_id: u32,
        app_name: &str,
        stream_name: &str,
    ) -> Result<(), ServerSessionError> {
        if let Err(why) = self.start(app_name, stream_name).await {
            // Not the app name: clients split the URL's path between app and stream name
            // in their own ways (ffmpeg makes `m/KEY` the app of `rtmp://host/m/KEY/x`), so
            // it may hold the stream key.
            tracing::info!(peer = %self.peer, reason = %why, "RTMP publish refused");
            self.kill.cancel();
        }
        Ok(())
    }

    async fn on_unpublish(&mut self, _stream_id: u32) -> Result<(), ServerSessionError> {
        // Closing ffmpeg's input ends the stream after its last segment.
        self.input = None;
        self.publishing.send_replace(false);
        Ok(())
    }

    async fn on_data(
        &mut self,
        _stream_id: u32,
        data: SessionData,
    ) -> Result<(), ServerSessionError> {
        match data {
            SessionData::Video { timestamp, data } => {
                self.media(TagKind::Video, timestamp, &data).await
            }
            SessionData::Audio { timestamp, data } => {
                self.media(TagKind::Audio, timestamp, &data).await
            }
            // Metadata (onMetaData) is not needed: ffmpeg reads the codecs from the sequence
            // headers.
            SessionData::Amf0 { .. } => {}
        }
        Ok(())
    }
}
