//! Publisher and subscriber for any trickle server, over HTTP.

mod publisher;
mod subscriber;

use std::time::Duration;

pub use publisher::{HttpPublisher, HttpSegmentWriter};
pub use subscriber::{HttpSegmentReader, HttpSubscriber};

use crate::TrickleError;

/// Timeouts and retry policy of the HTTP clients.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Connection set-up limit.
    pub connect_timeout: Duration,
    /// A subscribe GET that has produced no headers for this long is re-issued
    /// (go-livepeer: 20 s).
    pub first_byte_timeout: Duration,
    /// Longest gap between two chunks of one segment before the read fails.
    pub chunk_timeout: Duration,
    /// Consecutive failures tolerated before an operation gives up.
    pub max_retries: u32,
    /// Pause between retries.
    pub retry_pause: Duration,
    /// Accept any TLS certificate (orchestrators use self-signed ones).
    pub accept_invalid_certs: bool,
    /// Largest segment a subscriber reads, in bytes.
    pub max_segment_bytes: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(2),
            first_byte_timeout: Duration::from_secs(20),
            chunk_timeout: Duration::from_secs(10),
            max_retries: 5,
            retry_pause: Duration::from_millis(250),
            accept_invalid_certs: true,
            max_segment_bytes: 16 << 20,
        }
    }
}

impl ClientConfig {
    /// An HTTP client with these settings, to share between publishers and subscribers.
    ///
    /// It speaks HTTP/1.1 to plain `http` servers and negotiates HTTP/2 over TLS where the
    /// server offers it. It has no overall request timeout: a segment stays open as long as its
    /// publisher streams it; the per-chunk and first-byte limits bound the waits instead.
    pub fn client(&self) -> Result<reqwest::Client, TrickleError> {
        reqwest::Client::builder()
            .connect_timeout(self.connect_timeout)
            .danger_accept_invalid_certs(self.accept_invalid_certs)
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(30))
            // A channel URL is where its server said; a redirect could point anywhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|error| TrickleError::Invalid(format!("HTTP client: {}", chain(&error))))
    }
}

/// `url` without trailing slashes, checked to be an absolute http(s) URL.
fn channel_url(url: &str) -> Result<String, TrickleError> {
    let trimmed = url.trim_end_matches('/');
    let parsed = reqwest::Url::parse(trimmed)
        .map_err(|error| TrickleError::Invalid(format!("trickle URL {url:?}: {error}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(TrickleError::Invalid(format!("trickle URL {url:?} is not http(s)")));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        // Segment URLs are built by appending `/{seq}`, which a query would swallow.
        return Err(TrickleError::Invalid(format!("trickle URL {url:?} has a query or fragment")));
    }
    Ok(trimmed.to_owned())
}

/// An error and its sources, on one line: reqwest's own message alone rarely says what failed.
fn chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

fn transport(error: &reqwest::Error) -> TrickleError {
    if error.is_connect() && local_exhaustion(error) {
        TrickleError::Local(chain(error))
    } else {
        TrickleError::Transport(chain(error))
    }
}

/// Whether `error` or one of its causes is this process running out of what a new connection
/// needs (Linux's numbers: `ENOMEM` 12, `ENFILE` 23, `EMFILE` 24, `ENOBUFS` 105). Written
/// here, not taken from a crate, to keep this crate free of a system-call library for four
/// constants.
fn local_exhaustion(error: &(dyn std::error::Error + 'static)) -> bool {
    const EXHAUSTED: [i32; 4] = [12, 23, 24, 105];
    let mut next = Some(error);
    while let Some(e) = next {
        let io = e.downcast_ref::<std::io::Error>();
        if io.and_then(std::io::Error::raw_os_error).is_some_and(|c| EXHAUSTED.contains(&c)) {
            return true;
        }
        // An `io::Error` made from another error gives that error's source as its own,
        // skipping the error itself: look inside it first.
        next = match io.and_then(std::io::Error::get_ref) {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    false
}

/// An integer response header.
fn header_i64(response: &reqwest::Response, name: &str) -> Option<i64> {
    response.headers().get(name)?.to_str().ok()?.trim().parse().ok()
}

/// Longest error body kept in [`TrickleError::Status`].
const ERROR_BODY_LIMIT: usize = 256;

/// How long the start of an error body is waited for.
const ERROR_BODY_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The error for a failed status, with the start of its body. Only the start is kept, so
/// only the start is read, and not for long: a server's endless or dripping error body must
/// hold neither memory nor the caller (reading it whole took a gateway to 9 GB in 30 s).
async fn status_error(mut response: reqwest::Response) -> TrickleError {
    let status = response.status().as_u16();
    let mut start = Vec::new();
    let read = async {
        while start.len() < ERROR_BODY_LIMIT {
            match response.chunk().await {
                Ok(Some(chunk)) => start.extend_from_slice(&chunk),
                _ => break,
            }
        }
    };
    let _ = tokio::time::timeout(ERROR_BODY_WAIT, read).await;
    start.truncate(ERROR_BODY_LIMIT);
    let mut body = String::from_utf8_lossy(&start).into_owned();
    // A character cut at the limit shows as a replacement character: drop it.
    if start.len() == ERROR_BODY_LIMIT && body.ends_with('\u{fffd}') {
        body.pop();
    }
    TrickleError::Status { status, body: body.trim().to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        assert_eq!(channel_url("http://h:1/ai/trickle/x/").unwrap(), "http://h:1/ai/trickle/x");
        assert!(channel_url("ftp://h/x").is_err());
        assert!(channel_url("not a url").is_err());
        assert!(channel_url("http://h/x?a=b").is_err());
    }

    #[test]
    fn client_builds() {
        ClientConfig::default().client().unwrap();
    }

    /// A server that answers every request with `head`, then `chunk` forever (chunked).
    async fn endless(head: &'static str, chunk: &'static [u8]) -> String {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/x", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = tcp.read(&mut buf).await;
                    tcp.write_all(head.as_bytes()).await?;
                    let framed =
                        [format!("{:x}\r\n", chunk.len()).as_bytes(), chunk, b"\r\n"].concat();
                    loop {
                        tcp.write_all(&framed).await?;
                    }
                    #[allow(unreachable_code)]
                    Ok::<_, std::io::Error>(())
                });
            }
        });
        url
    }

    /// An endless error body: the error keeps its start and the read ends (reading it whole
    /// grew a gateway by gigabytes).
    #[tokio::test]
    async fn an_endless_error_body_is_read_only_at_its_start() {
        let head = "HTTP/1.1 500 Internal Server Error\r\nTransfer-Encoding: chunked\r\n\r\n";
        let url = endless(head, &[b'e'; 4096]).await;
        let client = ClientConfig::default().client().unwrap();
        let response = client.get(&url).send().await.unwrap();
        let error =
            tokio::time::timeout(std::time::Duration::from_secs(30), status_error(response))
                .await
                .expect("the error body was read to its end, which never comes");
        let TrickleError::Status { status, body } = error else { panic!("{error:?}") };
        assert_eq!((status, body.len()), (500, ERROR_BODY_LIMIT));
    }

    /// A redirect is not followed: the answer is the redirect itself.
    #[tokio::test]
    async fn redirects_are_not_followed() {
        let head = "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:9/admin\r\nTransfer-Encoding: chunked\r\n\r\n";
        let url = endless(head, b"x").await;
        let client = ClientConfig::default().client().unwrap();
        let response = client.get(&url).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 302);
    }

    /// An error whose cause is `inner`, as reqwest and hyper wrap the system's.
    #[derive(Debug)]
    struct Wrapped(std::io::Error);

    impl std::fmt::Display for Wrapped {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("client error (Connect)")
        }
    }

    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn only_the_processs_own_shortages_are_local() {
        for (code, local) in [(24, true), (23, true), (105, true), (12, true), (111, false)] {
            let e = Wrapped(std::io::Error::from_raw_os_error(code));
            assert_eq!(local_exhaustion(&e), local, "os error {code}");
        }
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert!(!local_exhaustion(&Wrapped(refused)));
        // Inside an `io::Error` made from it, as connectors wrap it.
        let inner = std::io::Error::other(std::io::Error::from_raw_os_error(24));
        assert!(local_exhaustion(&Wrapped(inner)));
    }
}
