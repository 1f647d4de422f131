//! Reading the answers of the services the gateway calls that are not orchestrators: the
//! discovery webhook, the auth webhooks, the live heartbeat, the remote signer.
//!
//! Each of these is only as well-behaved as whoever runs it. A request deadline bounds how
//! long an answer may take, not how big it is: in a few seconds a broken or hostile service
//! can stream gigabytes, which `Response::bytes` or `Response::json` would hold whole. Every
//! such answer is read here, with a cap on its size, and a longer one is cut off at the cap
//! (the connection dropped) instead of read to the end.

/// Why an answer's body could not be had.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum AnswerError {
    /// The body is longer than the cap (its `Content-Length` says so, or its bytes did).
    #[error("answer larger than {0} bytes")]
    TooLarge(usize),
    /// The body broke off or timed out.
    #[error("answer broke off: {0}")]
    Broken(String),
}

/// The whole body of `resp`, at most `max` bytes; a longer one is refused unread.
pub(crate) async fn read_capped(
    mut resp: reqwest::Response,
    max: usize,
) -> Result<Vec<u8>, AnswerError> {
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return Err(AnswerError::TooLarge(max));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(broken)? {
        if body.len() + chunk.len() > max {
            return Err(AnswerError::TooLarge(max));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The body of `resp` as JSON of type `T`, at most `max` bytes.
pub(crate) async fn read_json<T: serde::de::DeserializeOwned>(
    resp: reqwest::Response,
    max: usize,
) -> Result<T, String> {
    let body = read_capped(resp, max).await.map_err(|e| e.to_string())?;
    serde_json::from_slice(&body).map_err(|e| format!("not the expected JSON: {e}"))
}

/// The start of the body of `resp` as text, for an error message: at most `chars`
/// characters, the rest left unread. A body that breaks off gives what came before.
pub(crate) async fn read_prefix(mut resp: reqwest::Response, chars: usize) -> String {
    // Four bytes per character at most.
    let max = chars.saturating_mul(4);
    let mut body = Vec::new();
    while body.len() < max {
        match resp.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk[..chunk.len().min(max - body.len())]),
            _ => break,
        }
    }
    // On one line: a service's text goes into log lines and must not start its own.
    // (Not `orchestrator::text`: the orchestrator module imports this one.)
    let text = String::from_utf8_lossy(&body);
    text.trim().chars().take(chars).map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// A transport error, without the URL reqwest puts in its text: a service's URL may carry a
/// token (in its query or user info), which logs and error messages must not show.
fn broken(e: reqwest::Error) -> AnswerError {
    AnswerError::Broken(crate::error::error_chain(&e.without_url()))
}

/// `url` as logs and error messages show it: its scheme, host and port only. A service's URL
/// may carry its credentials in any other part: user info (`http://user:pass@…`), query
/// (`?token=…`), or path (RPC providers' `/v2/<api key>`).
pub(crate) fn shown(url: &url::Url) -> String {
    let origin = url.origin().ascii_serialization();
    if url.path() == "/" && url.query().is_none() {
        format!("{origin}/")
    } else {
        format!("{origin}/…")
    }
}

/// `text` with every copy of `url` in it shown as [`shown`] shows it, for the text of
/// errors that other crates build with the whole URL in it.
pub(crate) fn scrub(text: &str, url: &url::Url) -> String {
    text.replace(url.as_str(), &shown(url))
}

/// How many redirects [`same_host_redirects`] follows, as reqwest's default.
const MAX_REDIRECTS: usize = 10;

/// The redirects these services' clients follow: within the host the operator named only.
/// Why: Go's client, go-livepeer's, follows any redirect, and reqwest's default does too, and
/// both carry every header the operator configured (`--remote-signer-headers`, a webhook's
/// `X-Api-Key`) to the new host; only `Authorization` and cookies are dropped there. A
/// service that moves to `https://` on the same host, or to another path, still works.
pub(crate) fn same_host_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let next = attempt.url();
        // The same host, and never from `https` down to `http`: the headers would go out in
        // clear.
        let same = attempt.previous().first().is_some_and(|first| {
            first.host_str() == next.host_str()
                && (first.scheme() == "http" || next.scheme() == "https")
        });
        if attempt.previous().len() > MAX_REDIRECTS {
            attempt.error("too many redirects")
        } else if same {
            attempt.follow()
        } else {
            attempt.stop()
        }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    /// The requests a server saw: host and path, and the `X-Api-Key` each carried.
    type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

    /// A redirect within the named host is followed with its headers; one to another host
    /// is not followed, so the configured header never reaches it.
    #[tokio::test]
    async fn redirects_stay_on_the_named_host() {
        let seen: Seen = Arc::default();
        let log = seen.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
            let log = log.clone();
            async move {
                let host = req.headers()["host"].to_str().unwrap().to_owned();
                let key = req.headers().get("x-api-key").map(|v| v.to_str().unwrap().to_owned());
                let path = req.uri().path().to_owned();
                log.lock().unwrap().push((format!("{host}{path}"), key));
                let to = match path.as_str() {
                    "/moved" => format!("http://127.0.0.1:{port}/here"),
                    "/away" => format!("http://localhost:{port}/there"),
                    _ => return (http::StatusCode::OK, [("location", String::new())]),
                };
                (http::StatusCode::TEMPORARY_REDIRECT, [("location", to)])
            }
        });
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("x-api-key", "k".parse().unwrap());
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .redirect(super::same_host_redirects())
            .build()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let moved = client.get(format!("{base}/moved")).send().await.unwrap();
        assert_eq!(moved.status(), 200);
        let away = client.get(format!("{base}/away")).send().await.unwrap();
        assert_eq!(away.status(), 307, "not followed");
        let k = Some("k".to_owned());
        let expected = vec![
            (format!("127.0.0.1:{port}/moved"), k.clone()),
            (format!("127.0.0.1:{port}/here"), k.clone()),
            (format!("127.0.0.1:{port}/away"), k),
        ];
        assert_eq!(*seen.lock().unwrap(), expected);
    }
}
