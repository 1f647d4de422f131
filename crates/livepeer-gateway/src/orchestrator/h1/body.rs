//! An answer's body, read from its connection as it is polled, and the rules that say where
//! it ends (RFC 9112 §6.3, as Go's `net/http` applies them).

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, Version};
use hyper::body::{Frame, SizeHint};

use super::Conn;

/// The longest chunk-size line (with its extensions) taken; Go's limit for the same line.
const MAX_CHUNK_LINE: usize = 4096;

/// The most bytes of trailer fields after the last chunk (they are read and dropped).
const MAX_TRAILERS: usize = 64 * 1024;

/// Where an answer's body ends.
#[derive(Debug)]
pub(crate) enum Framing {
    /// After this many more bytes.
    Length(u64),
    /// After the last of its chunks.
    Chunked(Chunks),
    /// At the end of the connection, which then cannot be kept.
    Close,
}

/// How `status`'s body, of an answer of `version` with `headers`, is framed, and whether its
/// connection may carry another exchange after it. As Go's client reads it: no body for
/// `HEAD`, `1xx`, 204 and 304; an HTTP/1.1 `Transfer-Encoding` must be one field saying just
/// `chunked` (any other coding is refused, as Go and nginx refuse it: a coding the gateway
/// cannot undo would be passed on as if it were the content), and it overrides
/// `Content-Length`; HTTP/1.0 answers' `Transfer-Encoding` is ignored; `Content-Length`
/// values must agree; without either, the body runs to the connection's end.
pub(super) fn framing(
    status: u16,
    version: Version,
    headers: &HeaderMap,
    head_request: bool,
) -> Result<(Framing, bool), String> {
    let keep_alive = super::keeps_alive(version, headers);
    if head_request || status == 204 || status == 304 || (100..200).contains(&status) {
        return Ok((Framing::Length(0), keep_alive));
    }
    if version != Version::HTTP_10 && headers.contains_key(TRANSFER_ENCODING) {
        let mut codings = headers.get_all(TRANSFER_ENCODING).iter();
        return match (codings.next(), codings.next()) {
            (Some(coding), None) if coding.as_bytes().eq_ignore_ascii_case(b"chunked") => {
                // A length beside it may have been added to smuggle a second answer (RFC 9112
                // §6.3 calls such a message a likely attack): the connection is not kept.
                let keep = keep_alive && !headers.contains_key(CONTENT_LENGTH);
                Ok((Framing::Chunked(Chunks::default()), keep))
            }
            _ => Err(format!(
                "unsupported Transfer-Encoding {:?} (only a single `chunked` is taken)",
                headers.get_all(TRANSFER_ENCODING).iter().collect::<Vec<_>>()
            )),
        };
    }
    let mut length: Option<u64> = None;
    for value in headers.get_all(CONTENT_LENGTH) {
        for part in value.as_bytes().split(|&b| b == b',') {
            let n = digits(part.trim_ascii())
                .ok_or_else(|| format!("invalid Content-Length {value:?}"))?;
            if length.is_some_and(|l| l != n) {
                return Err("Content-Length values disagree".into());
            }
            length = Some(n);
        }
    }
    Ok(match length {
        Some(n) => (Framing::Length(n), keep_alive),
        None => (Framing::Close, false),
    })
}

/// A decimal number of at most 19 digits (every such number fits in a `u64`).
fn digits(text: &[u8]) -> Option<u64> {
    if text.is_empty() || text.len() > 19 || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(text.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0')))
}

/// Where a chunked body's reading is.
#[derive(Debug, Default)]
pub(crate) struct Chunks {
    state: ChunkState,
    /// Trailer bytes read so far.
    trailers: usize,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Before a chunk-size line.
    #[default]
    Size,
    /// Inside a chunk, with this many bytes of it to come.
    Data(u64),
    /// After a chunk's data, before its CRLF.
    DataEnd,
    /// After the last chunk: trailer fields until a blank line.
    Trailers,
    /// Read to its end.
    Done,
}

/// What a chunked body's next step gave.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Some of a chunk's data.
    Data(Bytes),
    /// More bytes must be read first.
    More,
    /// The body is complete.
    End,
}

impl Chunks {
    /// Takes what it can off the front of `buf`: data, or framing to consume until data or
    /// the end comes or `buf` runs out.
    pub(crate) fn step(&mut self, buf: &mut BytesMut) -> Result<Step, String> {
        loop {
            match self.state {
                ChunkState::Size => {
                    let Some(line) = take_line(buf, MAX_CHUNK_LINE)? else { return Ok(Step::More) };
                    let size = chunk_size(&line)?;
                    self.state =
                        if size == 0 { ChunkState::Trailers } else { ChunkState::Data(size) };
                }
                ChunkState::Data(left) => {
                    if buf.is_empty() {
                        return Ok(Step::More);
                    }
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                    let rest = left - n as u64;
                    self.state =
                        if rest == 0 { ChunkState::DataEnd } else { ChunkState::Data(rest) };
                    return Ok(Step::Data(buf.split_to(n).freeze()));
                }
                ChunkState::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(Step::More);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(
                            "malformed chunked encoding: chunk data not followed by CRLF".into()
                        );
                    }
                    let _ = buf.split_to(2);
                    self.state = ChunkState::Size;
                }
                ChunkState::Trailers => {
                    let too_large = || format!("trailers larger than {MAX_TRAILERS} bytes");
                    let max = MAX_TRAILERS.saturating_sub(self.trailers);
                    let line = take_line(buf, max).map_err(|_| too_large())?;
                    let Some(line) = line else { return Ok(Step::More) };
                    self.trailers += line.len() + 2;
                    if self.trailers > MAX_TRAILERS {
                        return Err(too_large());
                    }
                    if line.is_empty() {
                        self.state = ChunkState::Done;
                    }
                }
                ChunkState::Done => return Ok(Step::End),
            }
        }
    }
}

/// The line at the front of `buf` (to a LF, a CR before it dropped), taken off it; `None`
/// until its end has arrived; an error if it runs past `max` bytes.
fn take_line(buf: &mut BytesMut, max: usize) -> Result<Option<BytesMut>, String> {
    let window = &buf[..buf.len().min(max + 1)];
    let Some(end) = window.iter().position(|&b| b == b'\n') else {
        return if buf.len() > max {
            Err(format!("line longer than {max} bytes"))
        } else {
            Ok(None)
        };
    };
    let mut line = buf.split_to(end + 1);
    line.truncate(end);
    if line.last() == Some(&b'\r') {
        line.truncate(end - 1);
    }
    Ok(Some(line))
}

/// A chunk-size line's size: hexadecimal digits (at most 16), then optional blanks and
/// extensions after `;`, which are ignored, as Go ignores them.
fn chunk_size(line: &[u8]) -> Result<u64, String> {
    let size = line.split(|&b| b == b';').next().unwrap_or_default().trim_ascii_end();
    if size.is_empty() || size.len() > 16 {
        return Err(format!("invalid chunk size line {:?}", String::from_utf8_lossy(line)));
    }
    let mut n = 0u64;
    for &b in size {
        let d = (b as char)
            .to_digit(16)
            .ok_or_else(|| format!("invalid chunk size {:?}", String::from_utf8_lossy(size)))?;
        n = (n << 4) | u64::from(d);
    }
    Ok(n)
}

/// What is done with the connection once its answer's body has been read to the end.
pub type Home = Box<dyn FnOnce(Conn) + Send + Sync>;

/// An answer's body. Its connection goes home (to its pool) the moment the body's last byte
/// is handed out, if it can carry another exchange; a body dropped before its end closes it.
pub struct Body {
    /// The connection, until the body ends.
    conn: Option<Conn>,
    framing: Framing,
    /// The answer allows the connection to be kept.
    keep_alive: bool,
    home: Option<Home>,
    /// Read to its end.
    done: bool,
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Body").field("framing", &self.framing).field("done", &self.done).finish()
    }
}

/// Why a body could not be read to its end.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BodyError(String);

impl Body {
    /// The address the answer came from, while the body holds its connection (it does from
    /// the answer's head until its end).
    pub fn peer(&self) -> Option<std::net::IpAddr> {
        self.conn.as_ref().and_then(Conn::peer)
    }

    pub(super) fn new(conn: Conn, framing: Framing, keep_alive: bool) -> Self {
        let mut body = Self { conn: Some(conn), framing, keep_alive, home: None, done: false };
        if matches!(body.framing, Framing::Length(0)) {
            body.end();
        }
        body
    }

    /// Sends the connection to `home` once the body has been read to its end (at once if it
    /// already has been).
    pub fn go_home(&mut self, home: Home) {
        match self.done {
            true => {
                if let Some(conn) = self.conn.take() {
                    home(conn);
                }
            }
            false => self.home = Some(home),
        }
    }

    /// The connection, once the body has been read to its end and the connection can carry
    /// another exchange (and was not sent home).
    pub fn into_conn(mut self) -> Option<Conn> {
        if !self.done {
            return None;
        }
        self.conn.take()
    }

    /// The body has ended: its connection is kept if the answer allows it and nothing beyond
    /// the body arrived, else closed.
    fn end(&mut self) {
        self.done = true;
        let reusable = self.keep_alive && self.conn.as_ref().is_some_and(|c| c.0.buf.is_empty());
        if let Some(conn) = self.conn.as_mut().filter(|_| reusable) {
            conn.rest();
        }
        match (reusable, self.home.take()) {
            (false, _) => self.conn = None,
            (true, Some(home)) => {
                if let Some(conn) = self.conn.take() {
                    home(conn);
                }
            }
            (true, None) => {}
        }
    }

    fn fail(&mut self, why: String) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        self.done = true;
        self.conn = None;
        Poll::Ready(Some(Err(BodyError(why))))
    }

    /// The next piece of the body from what the connection has read, or `None` when more
    /// must be read first; `Err` for bytes that break the framing.
    fn take(&mut self) -> Option<Result<Option<Bytes>, String>> {
        let conn = self.conn.as_mut()?;
        let empty = conn.0.buf.is_empty();
        match &mut self.framing {
            Framing::Length(_) if empty => None,
            Framing::Length(left) => {
                let n = usize::try_from(*left).unwrap_or(usize::MAX).min(conn.0.buf.len());
                *left -= n as u64;
                Some(Ok(Some(conn.0.buf.split_to(n).freeze())))
            }
            Framing::Chunked(chunks) => match chunks.step(&mut conn.0.buf) {
                Ok(Step::Data(data)) => Some(Ok(Some(data))),
                Ok(Step::More) => None,
                Ok(Step::End) => Some(Ok(None)),
                Err(e) => Some(Err(e)),
            },
            Framing::Close if empty => None,
            Framing::Close => Some(Ok(Some(conn.0.buf.split().freeze()))),
        }
    }

    fn finished(&self) -> bool {
        match &self.framing {
            Framing::Length(left) => *left == 0,
            Framing::Chunked(chunks) => chunks.state == ChunkState::Done,
            Framing::Close => false,
        }
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            match this.take() {
                Some(Ok(Some(data))) => {
                    if this.finished() {
                        this.end();
                    }
                    if data.is_empty() {
                        continue;
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Some(Ok(None)) => {
                    this.end();
                    return Poll::Ready(None);
                }
                Some(Err(why)) => return this.fail(why),
                None => {}
            }
            let Some(conn) = this.conn.as_mut() else { return Poll::Ready(None) };
            match ready!(conn.poll_read_more(cx)) {
                Ok(0) if matches!(this.framing, Framing::Close) => {
                    this.end();
                    return Poll::Ready(None);
                }
                Ok(0) => return this.fail("connection closed before the answer's end".into()),
                Ok(_) => {}
                Err(e) => return this.fail(format!("reading the answer: {e}")),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        match &self.framing {
            Framing::Length(left) => SizeHint::with_exact(*left),
            _ => SizeHint::default(),
        }
    }
}
