//! The HTTP transport of the JSON-RPC client, with a cap on each answer's size.
//!
//! alloy's own reqwest transport reads every answer whole: an Ethereum endpoint that is
//! broken, hostile or sitting behind a hostile network path could answer an `eth_call` with
//! gigabytes within the request deadline, and on-chain discovery makes such calls every walk.
//! This one reads at most [`MAX_ANSWER`] bytes of an answer and fails the call beyond that.

use std::task::{Context, Poll};

use alloy::rpc::json_rpc::{RequestPacket, ResponsePacket};
use alloy::transports::{TransportError, TransportErrorKind, TransportFut};
use url::Url;

use crate::outbound;

/// Largest JSON-RPC answer read. The largest the gateway asks for is a batch of the pool's
/// service URIs: at most 1,000 (`onchain::walk::MAX_POOL`), each as long as one transaction's
/// calldata can make it (tens of kilobytes), hex-encoded; the protocol's pool holds 100.
pub(super) const MAX_ANSWER: usize = 64 << 20;

/// Longest part of an HTTP error's body kept in its error.
const ERROR_BODY_CHARS: usize = 300;

/// A JSON-RPC transport over HTTP POST whose answers are read with a cap.
#[derive(Debug, Clone)]
pub(super) struct CappedHttp {
    pub(super) client: reqwest::Client,
    pub(super) url: Url,
}

impl CappedHttp {
    async fn send(self, req: RequestPacket) -> Result<ResponsePacket, TransportError> {
        let resp = self
            .client
            .post(self.url)
            .json(&req)
            .headers(req.headers())
            .send()
            .await
            .map_err(TransportErrorKind::custom)?;
        let status = resp.status();
        if !status.is_success() {
            // A node's error status may still carry a JSON-RPC error object, which says more
            // than the status does.
            let body = outbound::read_prefix(resp, 16 * 1024).await;
            return serde_json::from_str(&body).map_err(|_| {
                let start = body.chars().take(ERROR_BODY_CHARS).collect();
                TransportErrorKind::http_error(status.as_u16(), start)
            });
        }
        let body = outbound::read_capped(resp, MAX_ANSWER)
            .await
            .map_err(|e| TransportErrorKind::custom_str(&e.to_string()))?;
        serde_json::from_slice(&body).map_err(|e| {
            // The error keeps the start of the answer only: the rest may be megabytes.
            let start = String::from_utf8_lossy(&body[..body.len().min(ERROR_BODY_CHARS)]);
            TransportError::deser_err(e, start)
        })
    }
}

impl tower::Service<RequestPacket> for CappedHttp {
    type Response = ResponsePacket;
    type Error = TransportError;
    type Future = TransportFut<'static>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: RequestPacket) -> Self::Future {
        Box::pin(self.clone().send(req))
    }
}
