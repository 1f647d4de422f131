//! Reading request bodies within a size limit and a deadline: 413 beyond the limit (at once,
//! before any body byte is read, when the declared `Content-Length` is already over it), 408
//! when the client stops sending, 400 when the body breaks off or a multipart body is
//! malformed. Every route that reads a body reads it here, so the limit a route is given is
//! the only one: axum's default body limit, which only its multipart extractor applies here, is
//! disabled around that extractor.
//! What they read is also counted against the process's budget for bodies in memory
//! ([`crate::body_memory`]): past it, 503.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::multipart::MultipartError;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Request};
use axum::http::{StatusCode, header};
use bytes::Bytes;
use futures_util::StreamExt as _;
use http_body_util::BodyExt as _;
use tower::{Layer as _, ServiceExt as _};

use crate::body_memory::{self, Held};

use crate::ai::validate::{FormPart, Input};
use crate::error::{Error, Kind};

/// Reads the body as JSON bytes or multipart parts, within `limit` bytes and `timeout`.
pub(crate) async fn read_input(
    req: Request,
    limit: usize,
    timeout: Duration,
) -> Result<Input, Error> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if content_type.starts_with("multipart/form-data") {
        // Boxed: multipart parsing's future is large, and JSON requests should not carry it.
        // A client that stops sending must not hold the request: the body has a deadline too.
        match tokio::time::timeout(timeout, Box::pin(read_multipart(req, limit))).await {
            Ok(read) => read,
            Err(_) => Err(body_timeout(timeout)),
        }
    } else {
        // Anything that is not multipart is read as JSON; for a multipart pipeline, validation
        // then reports the wrong body kind.
        read_body(req, limit, timeout).await.map(Input::Json)
    }
}

/// Refuses a body whose declared length is over `limit` before reading any of it, so that a
/// client announcing a gigabyte is answered at once instead of after the body deadline.
/// (hyper has already refused a `Content-Length` that is not a number.)
fn admit(req: &Request, limit: usize) -> Result<(), Error> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match declared {
        Some(n) if n > limit as u64 => Err(Error::too_large(limit)),
        _ => Ok(()),
    }
}

/// Reads a whole body within `limit` bytes and `timeout`.
pub(crate) async fn read_body(
    req: Request,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, Error> {
    admit(&req, limit)?;
    match tokio::time::timeout(timeout, collect(req.into_body(), limit)).await {
        Ok(read) => read,
        Err(_) => Err(body_timeout(timeout)),
    }
}

/// Gathers `body` within `limit` bytes, each taken from the body budget as it arrives; the
/// bytes returned hold their share until dropped.
async fn collect(mut body: Body, limit: usize) -> Result<Bytes, Error> {
    let held = Held::default();
    // The frames as they came (each counted), joined at the end into one buffer of the exact
    // size: nothing is set aside for what a client only announces.
    let mut frames: Vec<Bytes> = Vec::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            let message = format!("request body could not be read: {}", e.into_inner());
            Error::new(Kind::BodyUnreadable, message).field("body")
        })?;
        let Ok(data) = frame.into_data() else { continue };
        total = total.saturating_add(data.len());
        if total > limit {
            return Err(Error::too_large(limit));
        }
        if !held.grow(data.len()) {
            return Err(body_memory::over_budget());
        }
        if !data.is_empty() {
            frames.push(data);
        }
    }
    // Most bodies arrive in one frame: kept as it is rather than copied.
    let bytes = match frames.len() {
        0 => Bytes::new(),
        1 => frames.swap_remove(0),
        _ => {
            let mut joined = Vec::with_capacity(total);
            for frame in &frames {
                joined.extend_from_slice(frame);
            }
            Bytes::from(joined)
        }
    };
    Ok(body_memory::owning(bytes, held))
}

fn body_timeout(timeout: Duration) -> Error {
    let message = format!("request body not received within {timeout:?}");
    Error::new(Kind::BodyTimeout, message).field("body")
}

/// Most parts a form may hold: Go's `mime/multipart` limit (`multipartmaxparts`), which
/// go-livepeer's orchestrators parse forms with. Each part costs far more held than its bytes
/// (its name, types and owner): 5.8 million empty parts fit in 50 MiB and took 550 MB and 15 s
/// to gather, while the body budget counted the 50 MiB.
const MAX_FORM_PARTS: usize = 1000;

/// Reads a `multipart/form-data` body's parts within `limit` bytes and [`MAX_FORM_PARTS`]
/// parts in all.
async fn read_multipart(req: Request, limit: usize) -> Result<Input, Error> {
    admit(&req, limit)?;
    let (parts, body) = req.into_parts();
    // What multer reads is taken from the body budget as it arrives; the parts then hold it.
    let held = Arc::new(Held::default());
    let budgeted = {
        let held = held.clone();
        let mut seen = 0usize;
        body.into_data_stream().map(move |data| {
            let data = data?;
            seen = seen.saturating_add(data.len());
            // Past the route's limit the bytes go uncounted to `Limited`, which refuses them:
            // a body over it is 413 whatever the budget holds.
            if seen > limit || held.grow(data.len()) {
                Ok(data)
            } else {
                Err(axum::Error::new("over budget"))
            }
        })
    };
    // `Limited` right under the extractor, where axum finds its error and answers 413.
    let limited = http_body_util::Limited::new(Body::from_stream(budgeted), limit);
    let limited = Request::from_parts(parts, Body::new(limited));
    // The extractor applies axum's default body limit (2 MiB) unless the request went through
    // `DefaultBodyLimit::disable()`: it does here, so `limit` is the only bound in bytes.
    let extract = tower::service_fn(|req: Request| async move {
        Ok::<_, std::convert::Infallible>(Multipart::from_request(req, &()).await)
    });
    let extracted = DefaultBodyLimit::disable().layer(extract).oneshot(limited).await;
    let mut multipart = extracted
        .unwrap_or_else(|never| match never {})
        .map_err(|e| Error::new(Kind::InvalidMultipart, e.body_text()).field("body"))?;
    let mut parts = Vec::new();
    let mut total = 0usize;
    // One mapping for both places multer can fail: too large is 413, the budget 503,
    // anything else 400.
    let failed = |e: MultipartError, field: &str| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Error::too_large(limit)
        } else if held.refused() {
            body_memory::over_budget()
        } else {
            Error::new(Kind::InvalidMultipart, e.body_text()).field(field)
        }
    };
    while let Some(field) = multipart.next_field().await.map_err(|e| failed(e, "body"))? {
        if parts.len() == MAX_FORM_PARTS {
            let message = format!("a form holds at most {MAX_FORM_PARTS} parts");
            return Err(Error::new(Kind::InvalidMultipart, message).field("body"));
        }
        let name = field.name().unwrap_or_default().to_owned();
        let filename = field.file_name().map(str::to_owned);
        let content_type = field.content_type().map(str::to_owned);
        let bytes = field.bytes().await.map_err(|e| failed(e, &name))?;
        total += bytes.len();
        if total > limit {
            return Err(Error::too_large(limit));
        }
        let bytes = body_memory::owning(bytes, held.clone());
        parts.push(FormPart { name, filename, content_type, bytes });
    }
    Ok(Input::Multipart(parts))
}

/// Fuzzing entry (`benches/fuzz`): [`read_input`] over a request with this `Content-Type`,
/// `Content-Length` (when given and a valid header value) and body. `None` when a header value
/// is not one HTTP can carry (hyper would have refused it before any handler).
#[doc(hidden)]
pub async fn read_input_for_fuzz(
    content_type: &str,
    content_length: Option<&str>,
    body: Bytes,
    limit: usize,
) -> Option<Result<Input, Error>> {
    let mut req = Request::new(Body::from(body));
    req.headers_mut().insert(header::CONTENT_TYPE, content_type.parse().ok()?);
    if let Some(length) = content_length {
        req.headers_mut().insert(header::CONTENT_LENGTH, length.parse().ok()?);
    }
    Some(read_input(req, limit, Duration::from_secs(5)).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn declaring(length: Option<&str>) -> Request {
        let mut req = Request::new(Body::empty());
        if let Some(length) = length {
            req.headers_mut().insert(header::CONTENT_LENGTH, length.parse().unwrap());
        }
        req
    }

    // Paused time: were the body awaited, the deadline would pass at once and the test fail.
    #[tokio::test(start_paused = true)]
    async fn a_declared_length_over_the_limit_is_refused_unread() {
        assert!(admit(&declaring(None), 10).is_ok());
        assert!(admit(&declaring(Some("10")), 10).is_ok());
        let over = admit(&declaring(Some("11")), 10).unwrap_err();
        assert_eq!(over.kind(), Kind::BodyTooLarge);
        // The readers refuse before reading: this body would never end.
        let never = futures_util::stream::pending::<Result<Bytes, std::io::Error>>();
        let mut req = Request::new(Body::from_stream(never));
        req.headers_mut().insert(header::CONTENT_LENGTH, "1073741824".parse().unwrap());
        let refused = read_body(req, 10, Duration::from_secs(3600)).await.unwrap_err();
        assert_eq!(refused.kind(), Kind::BodyTooLarge);
    }
}
