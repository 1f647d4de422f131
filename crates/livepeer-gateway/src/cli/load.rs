//! The load `bench` sends: a minimal HTTP/1.1 keep-alive client.
//!
//! Why not reqwest, which the rest of the tool uses: on the 2-core machine the load generator
//! shares the CPU with the simulator and with the proxy it measures, so whatever the client
//! spends is taken from the proxy that needs more CPU. reqwest spent about 37 µs of CPU per
//! text-to-image job (a URL parse, a pool lookup, the body serialised and the answer parsed
//! into a JSON tree every time), more than nginx itself spends; the proxies were being
//! compared partly on how well they shared the machine with an expensive client. Like wrk,
//! this client renders each path's request once, keeps one connection per origin for each
//! simulated user, and reads only what it must from the answer (its status, and for
//! text-to-image the first image's URL). It is a load generator, not a general client:
//! it speaks HTTP/1.1 over plain TCP, to the loopback servers `bench` starts.

use std::net::SocketAddr;

use anyhow::Context;
use bytes::{Buf, BytesMut};
use serde::Deserialize;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::bench::Target;

/// A head larger than this is refused: the servers measured send a few hundred bytes.
const MAX_HEAD: usize = 64 * 1024;

/// A body larger than this is refused: the answers measured are a few KiB.
const MAX_BODY: usize = 64 << 20;

/// One path's request, rendered once.
pub(super) struct Plan {
    /// `host:port` of the request.
    authority: String,
    /// The request line, headers and body, ready to write.
    request: Vec<u8>,
    /// Result URLs starting with `.0` are fetched from `.1` instead (as `Target::rewrite`).
    rewrite: Option<(String, String)>,
}

impl Plan {
    /// Renders `t`'s POST of `body`.
    pub(super) fn new(t: &Target, body: &Value) -> anyhow::Result<Self> {
        let (authority, path) = split_url(&t.url).with_context(|| format!("url {}", t.url))?;
        let body = serde_json::to_vec(body)?;
        let mut head = format!(
            "POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (k, v) in &t.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let mut request = head.into_bytes();
        request.extend_from_slice(&body);
        Ok(Self { authority: authority.to_owned(), request, rewrite: t.rewrite.clone() })
    }
}

/// `http://host:port/path` → (`host:port`, `/path`).
fn split_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("http://")?;
    match rest.find('/') {
        Some(i) => Some((&rest[..i], &rest[i..])),
        None => Some((rest, "/")),
    }
}

/// One simulated user: its connections, one per origin, reused from job to job.
#[derive(Default)]
pub(super) struct User {
    conns: Vec<(String, Conn)>,
}

/// The first image of a text-to-image answer; other answers have none.
#[derive(Deserialize)]
struct Images<'a> {
    #[serde(borrow, default)]
    images: Vec<Image<'a>>,
}

#[derive(Deserialize)]
struct Image<'a> {
    #[serde(borrow)]
    url: std::borrow::Cow<'a, str>,
}

impl User {
    /// One job: the request, and the download of the image it names, if any (as a client
    /// must). Any failure drops the connection it happened on.
    pub(super) async fn job(&mut self, plan: &Plan) -> anyhow::Result<()> {
        let answer = self.exchange(&plan.authority, &plan.request).await?;
        // Only answers that name images are parsed (text-to-image); others are just read.
        if names_images(&answer) {
            let parsed: Images<'_> = serde_json::from_slice(&answer).context("answer")?;
            if let Some(img) = parsed.images.first() {
                let url = match &plan.rewrite {
                    Some((from, to)) if img.url.starts_with(from.as_str()) => {
                        img.url.replacen(from.as_str(), to, 1)
                    }
                    _ => img.url.clone().into_owned(),
                };
                let (authority, path) = split_url(&url).with_context(|| format!("url {url}"))?;
                let get = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\n\r\n");
                self.exchange(authority, get.as_bytes()).await?;
            }
        }
        Ok(())
    }

    /// Sends `request` to `authority` on this user's connection there (opened when missing)
    /// and returns the body of a 2xx answer.
    async fn exchange(&mut self, authority: &str, request: &[u8]) -> anyhow::Result<BytesMut> {
        let i = match self.conns.iter().position(|(a, _)| a == authority) {
            Some(i) => i,
            None => {
                let addr: SocketAddr = tokio::net::lookup_host(authority)
                    .await?
                    .next()
                    .with_context(|| format!("no address for {authority}"))?;
                self.conns.push((authority.to_owned(), Conn::open(addr).await?));
                self.conns.len() - 1
            }
        };
        let result = self.conns[i].1.exchange(request).await;
        match result {
            Ok((status, body, keep)) => {
                if !keep {
                    self.conns.swap_remove(i);
                }
                anyhow::ensure!((200..300).contains(&status), "{authority}: status {status}");
                Ok(body)
            }
            Err(e) => {
                self.conns.swap_remove(i);
                Err(e)
            }
        }
    }
}

/// Whether the answer names images (a cheap scan before parsing any JSON).
fn names_images(body: &[u8]) -> bool {
    body.windows(9).any(|w| w == b"\"images\"")
}

/// One keep-alive connection and what has been read from it but not used yet.
struct Conn {
    stream: TcpStream,
    buf: BytesMut,
}

/// How an answer's body is delimited.
enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

impl Conn {
    async fn open(addr: SocketAddr) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self { stream, buf: BytesMut::with_capacity(16 * 1024) })
    }

    /// Writes `request` and reads one answer: status, body, and whether the connection may
    /// be reused.
    async fn exchange(&mut self, request: &[u8]) -> anyhow::Result<(u16, BytesMut, bool)> {
        self.stream.write_all(request).await?;
        let (status, framing, keep, head_len) = loop {
            if let Some(parsed) = parse_head(&self.buf)? {
                break parsed;
            }
            anyhow::ensure!(self.buf.len() < MAX_HEAD, "answer head over {MAX_HEAD} bytes");
            self.fill().await?;
        };
        self.buf.advance(head_len);
        let body = match framing {
            Framing::Length(n) => self.take(n).await?,
            Framing::Chunked => self.chunked().await?,
            Framing::UntilClose => {
                while self.stream.read_buf(&mut self.buf).await? > 0 {
                    anyhow::ensure!(
                        self.buf.len() <= MAX_BODY,
                        "answer body over {MAX_BODY} bytes"
                    );
                }
                self.buf.split()
            }
        };
        Ok((status, body, keep && !matches!(framing, Framing::UntilClose)))
    }

    /// Reads more; the peer closing here is an error (an answer was still expected).
    async fn fill(&mut self) -> anyhow::Result<()> {
        let n = self.stream.read_buf(&mut self.buf).await?;
        anyhow::ensure!(n > 0, "connection closed mid-answer");
        Ok(())
    }

    async fn take(&mut self, n: usize) -> anyhow::Result<BytesMut> {
        while self.buf.len() < n {
            self.fill().await?;
        }
        Ok(self.buf.split_to(n))
    }

    async fn chunked(&mut self) -> anyhow::Result<BytesMut> {
        let mut body = BytesMut::new();
        loop {
            let (start, size) = loop {
                match httparse::parse_chunk_size(&self.buf) {
                    Ok(httparse::Status::Complete(done)) => break done,
                    Ok(httparse::Status::Partial) => self.fill().await?,
                    Err(_) => anyhow::bail!("bad chunk size"),
                }
            };
            let size = usize::try_from(size)?;
            anyhow::ensure!(body.len() + size <= MAX_BODY, "answer body over {MAX_BODY} bytes");
            self.buf.advance(start);
            // The chunk and its CRLF (the last, empty chunk: no trailers are expected).
            body.extend_from_slice(&self.take(size + 2).await?[..size]);
            if size == 0 {
                return Ok(body);
            }
        }
    }
}

/// The answer's head, when complete: status, framing, keep-alive, head length.
fn parse_head(buf: &[u8]) -> anyhow::Result<Option<(u16, Framing, bool, usize)>> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(buf).context("answer head")? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return Ok(None),
    };
    let status = resp.code.context("no status")?;
    let (mut framing, mut keep) = (Framing::UntilClose, true);
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let length: usize = std::str::from_utf8(h.value)?.trim().parse()?;
            anyhow::ensure!(length <= MAX_BODY, "answer body of {length} bytes");
            framing = Framing::Length(length);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding")
            && h.value.eq_ignore_ascii_case(b"chunked")
        {
            framing = Framing::Chunked;
        } else if h.name.eq_ignore_ascii_case("connection") {
            keep = !h.value.eq_ignore_ascii_case(b"close");
        }
    }
    // Answers that cannot have a body.
    if status == 204 || status == 304 {
        framing = Framing::Length(0);
    }
    Ok(Some((status, framing, keep, head_len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_are_framed_by_length_chunks_or_close() {
        let (s, f, keep, n) =
            parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\nrest").unwrap().unwrap();
        assert_eq!((s, keep, n), (200, true, 39));
        assert!(matches!(f, Framing::Length(12)));
        let (_, f, keep, _) = parse_head(
            b"HTTP/1.1 503 x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert!(matches!(f, Framing::Chunked) && !keep);
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Le").unwrap().is_none());
        assert!(parse_head(b"NOT HTTP\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n").is_err());
    }

    #[test]
    fn urls_split_into_authority_and_path() {
        assert_eq!(split_url("http://127.0.0.1:9/a/b?c"), Some(("127.0.0.1:9", "/a/b?c")));
        assert_eq!(split_url("http://h:1"), Some(("h:1", "/")));
        assert_eq!(split_url("https://h/x"), None);
    }
}
