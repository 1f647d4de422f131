//! Header names and fixed header values of Livepeer's HTTP protocol, declared once so that the
//! gateway, the simulator and the tools cannot drift apart on a spelling. Names are written as
//! go-livepeer writes them; HTTP compares names case-insensitively, so the same constant serves
//! both to send and to look a header up.
//!
//! Trickle's `Lp-Trickle-*` headers live with the trickle protocol, in `livepeer-trickle`.

/// Carries the base64 protobuf `Payment` (tickets and expected price) on every paid call.
pub const PAYMENT: &str = "Livepeer-Payment";

/// The [`PAYMENT`] value of a gateway without an ETH account: present but empty, which the
/// orchestrator decodes as an empty `Payment`.
pub const OFFCHAIN_PAYMENT: &str = "";

/// Carries the base64 protobuf `SegData` (manifest, capabilities, auth token) on every paid
/// call.
pub const SEGMENT: &str = "Livepeer-Segment";

/// The `Authorization` value of calls to AI endpoints (go-livepeer's `protoVerAIWorker`). It is
/// semantic: without it orchestrators answer image results inline as `data:` URLs, for old
/// gateways; with it they answer download URLs.
pub const AI_WORKER_PROTOCOL: &str = "Livepeer-AI-Worker-1.0";

/// On a remote signer's HTTP 480 ("refresh the session"), the orchestrator whose info the
/// caller must fetch again before it asks for another payment.
pub const ORCHESTRATOR_URL: &str = "Livepeer-Orchestrator-URL";

/// On a gateway's answer to its client: the orchestrator that served the request.
pub const SERVED_BY_ORCHESTRATOR: &str = "X-Orchestrator-Url";

/// On every request a gateway sends to an orchestrator (this gateway's own header, not
/// go-livepeer's; orchestrators ignore it). A gateway refuses a request that carries it: an
/// orchestrator whose service URI names a gateway would otherwise have that gateway call a
/// gateway, itself included, each call selecting that orchestrator again.
pub const GATEWAY_HOP: &str = "Livepeer-Gateway-Hop";

#[cfg(test)]
mod tests {
    use super::*;

    /// Each name must be a valid HTTP token: the constants are handed to header maps that
    /// reject anything else at run time.
    #[test]
    fn names_are_http_tokens() {
        for name in [PAYMENT, SEGMENT, ORCHESTRATOR_URL, SERVED_BY_ORCHESTRATOR, GATEWAY_HOP] {
            assert!(!name.is_empty());
            assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'), "{name}");
        }
    }
}
