//! The orchestrator side of BYOC jobs (PROTOCOL.md §10): the `JobToken` an orchestrator hands
//! out at `GET /process/token`, decoded from its Go JSON into typed values, and the call that
//! fetches it.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use livepeer_pm::TicketParams;
use livepeer_proto::net;
use serde::Deserialize;

use super::http::{HttpError, OrchHttp, read_body};
use super::price::Price;
use super::text::cut;

/// The header naming the gateway to `/process/token`: base64 JSON `{addr, sig}`.
pub const ETH_ADDRESS_HEADER: &str = "Livepeer-Eth-Address";
/// The header naming the capability a token is asked for.
pub const CAPABILITY_HEADER: &str = "Livepeer-Capability";
/// The largest token answer read: a token is a few hundred bytes.
const MAX_TOKEN_BYTES: usize = 64 * 1024;

/// What an orchestrator offers one sender for one BYOC capability, as of when it was asked.
#[derive(Debug, Clone)]
pub struct JobToken {
    /// Where the job goes (no trailing `/`): from [`fetch_token`], the orchestrator's own
    /// address, the one its token came from, whatever the token's `service_addr` names.
    pub service_addr: String,
    /// Its price, wei per second (0 off-chain).
    pub price: Price,
    /// The price as the orchestrator sent it, echoed verbatim in the payment.
    pub price_info: net::PriceInfo,
    /// Ticket params priced for this sender and capability; `None` off-chain.
    pub ticket_params: Option<TicketParams>,
    /// The orchestrator's balance for (sender, capability), whole wei (it truncates).
    pub balance: i64,
    /// Capacity minus load; 0 when the capability is unknown or full.
    pub available_capacity: i64,
}

/// Why a token answer could not be used.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TokenError {
    /// The call failed.
    #[error("{0}")]
    Http(#[from] HttpError),
    /// The orchestrator refused (status and the start of its body).
    #[error("token refused: {status} {message}")]
    Status {
        /// HTTP status.
        status: u16,
        /// Its body, cut to 200 characters.
        message: String,
    },
    /// The answer was not a token.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// No answer in time.
    #[error("no token within {0:?}")]
    Timeout(Duration),
}

/// Go's JSON of `net.TicketParams` (protobuf struct tags: snake_case, bytes as base64,
/// omitted when empty).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WireTicketParams {
    recipient: Option<String>,
    face_value: Option<String>,
    win_prob: Option<String>,
    recipient_rand_hash: Option<String>,
    seed: Option<String>,
    expiration_block: Option<String>,
    expiration_params: Option<WireExpiration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WireExpiration {
    creation_round: i64,
    creation_round_block_hash: Option<String>,
}

/// Go's JSON of `net.PriceInfo` (camelCase tags).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WirePrice {
    #[serde(rename = "pricePerUnit")]
    price_per_unit: i64,
    #[serde(rename = "pixelsPerUnit")]
    pixels_per_unit: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WireToken {
    ticket_params: Option<WireTicketParams>,
    balance: i64,
    price: Option<WirePrice>,
    service_addr: String,
    available_capacity: i64,
}

// === impl JobToken ===

impl JobToken {
    /// Decodes a `/process/token` answer.
    pub fn from_json(body: &[u8]) -> Result<Self, TokenError> {
        let bad = |m: String| TokenError::Malformed(m);
        let wire: WireToken = serde_json::from_slice(body).map_err(|e| bad(e.to_string()))?;
        let service_addr = wire.service_addr.trim().trim_end_matches('/').to_owned();
        if !(service_addr.starts_with("http://") || service_addr.starts_with("https://")) {
            return Err(bad(format!(
                "service_addr {:?} is not an http(s) URL",
                cut(&service_addr)
            )));
        }
        let p = wire.price.unwrap_or_default();
        // An off-chain orchestrator answers 0/1; a missing denominator is read as 1.
        let pixels = if p.pixels_per_unit == 0 { 1 } else { p.pixels_per_unit };
        let price = Price::new(p.price_per_unit, pixels).map_err(|e| bad(e.to_string()))?;
        let price_info = net::PriceInfo {
            price_per_unit: p.price_per_unit,
            pixels_per_unit: p.pixels_per_unit,
            capability: 0,
            constraint: String::new(),
        };
        let ticket_params = wire.ticket_params.map(|t| t.decode()).transpose()?;
        Ok(Self {
            service_addr,
            price,
            price_info,
            ticket_params,
            balance: wire.balance,
            available_capacity: wire.available_capacity,
        })
    }
}

impl WireTicketParams {
    fn decode(self) -> Result<TicketParams, TokenError> {
        let bytes = |field: &str, v: Option<String>| {
            v.map(|s| STANDARD.decode(s.as_bytes()))
                .transpose()
                .map(Option::unwrap_or_default)
                .map_err(|e| TokenError::Malformed(format!("ticket_params.{field}: {e}")))
        };
        let expiration_params = match self.expiration_params {
            Some(e) => Some(net::TicketExpirationParams {
                creation_round: e.creation_round,
                creation_round_block_hash: bytes(
                    "expiration_params.creation_round_block_hash",
                    e.creation_round_block_hash,
                )?,
            }),
            None => None,
        };
        let proto = net::TicketParams {
            recipient: bytes("recipient", self.recipient)?,
            face_value: bytes("face_value", self.face_value)?,
            win_prob: bytes("win_prob", self.win_prob)?,
            recipient_rand_hash: bytes("recipient_rand_hash", self.recipient_rand_hash)?,
            seed: bytes("seed", self.seed)?,
            expiration_block: bytes("expiration_block", self.expiration_block)?,
            expiration_params,
        };
        TicketParams::from_proto(&proto)
            .map_err(|e| TokenError::Malformed(format!("ticket_params: {e}")))
    }
}

/// `GET {orch}/process/token` for `capability`, naming the gateway with `sender` (the
/// `Livepeer-Eth-Address` value), within `timeout`.
pub async fn fetch_token(
    http: &OrchHttp,
    orch: &str,
    sender: &str,
    capability: &str,
    timeout: Duration,
) -> Result<JobToken, TokenError> {
    let call = async {
        let url = format!("{}/process/token", orch.trim_end_matches('/'));
        let uri: http::Uri = url.parse().map_err(|_| HttpError::BadUrl(url.clone()))?;
        let req = http::Request::get(uri)
            .header(ETH_ADDRESS_HEADER, sender)
            .header(CAPABILITY_HEADER, capability)
            .body(Default::default())
            .map_err(|e| HttpError::BadUrl(format!("{url}: {e}")))?;
        let resp = http.send(req).await?;
        let status = resp.status().as_u16();
        let body = read_body(resp.into_body(), MAX_TOKEN_BYTES).await?;
        if status != 200 {
            let message = cut(&String::from_utf8_lossy(&body));
            return Err(TokenError::Status { status, message });
        }
        let mut token = JobToken::from_json(&body)?;
        // Jobs go where the token came from, whatever address the token names. go-livepeer
        // sends them to the token's `service_addr`, the orchestrator's own service URI; taken
        // as given, it let an orchestrator point the gateway at any address (its admin port,
        // a metadata service) and read the answer back through a job.
        if token.service_addr != orch.trim_end_matches('/') {
            tracing::debug!(orchestrator = orch, named = %cut(&token.service_addr), "job token names another address; jobs go to the orchestrator's own");
        }
        orch.trim_end_matches('/').clone_into(&mut token.service_addr);
        Ok(token)
    };
    tokio::time::timeout(timeout, call).await.unwrap_or(Err(TokenError::Timeout(timeout)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_go_token_decodes() {
        let json = serde_json::json!({
            "sender_address": {"addr": "0xabc", "sig": "0x01"},
            "ticket_params": {
                "recipient": STANDARD.encode([7u8; 20]),
                "face_value": STANDARD.encode([0x03, 0xe8]),
                "win_prob": STANDARD.encode([0xff; 32]),
                "recipient_rand_hash": STANDARD.encode([9u8; 32]),
                "seed": STANDARD.encode([1u8]),
                "expiration_block": STANDARD.encode([100u8]),
                "expiration_params": {"creation_round": 5, "creation_round_block_hash": STANDARD.encode([2u8; 32])}
            },
            "balance": 42,
            "price": {"pricePerUnit": 3, "pixelsPerUnit": 2},
            "service_addr": "https://o.example:8935/",
            "available_capacity": 1,
            "LastNonce": 0
        });
        let t = JobToken::from_json(json.to_string().as_bytes()).unwrap();
        assert_eq!(t.service_addr, "https://o.example:8935");
        assert_eq!(t.price, Price::new(3, 2).unwrap());
        assert_eq!((t.balance, t.available_capacity), (42, 1));
        let p = t.ticket_params.unwrap();
        assert_eq!(p.face_value, livepeer_pm::U256::from(1000u64));
        assert_eq!(p.expiration_params.unwrap().creation_round, 5);
    }

    /// A token naming another address (here the gateway's own admin port) sends jobs to
    /// the orchestrator it came from, not there.
    #[tokio::test]
    async fn jobs_go_where_the_token_came_from_not_where_it_points() {
        let token = r#"{"price":{"pricePerUnit":0,"pixelsPerUnit":1},"service_addr":"http://127.0.0.1:5935/keys?x=","available_capacity":1}"#;
        let app = axum::Router::new()
            .route("/process/token", axum::routing::get(move || async move { token }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let orch = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let http = OrchHttp::new(Duration::from_secs(2), Default::default()).unwrap();
        let t = fetch_token(&http, &format!("{orch}/"), "0x00", "c", Duration::from_secs(2))
            .await
            .unwrap();
        assert_eq!(t.service_addr, orch);
    }

    #[test]
    fn an_off_chain_token_has_no_params_and_price_zero() {
        let json = r#"{"price":{"pricePerUnit":0,"pixelsPerUnit":1},"service_addr":"http://o:1","available_capacity":2}"#;
        let t = JobToken::from_json(json.as_bytes()).unwrap();
        assert!(t.price.is_zero() && t.ticket_params.is_none());
        assert!(JobToken::from_json(br#"{"service_addr":"ftp://x"}"#).is_err());
        assert!(JobToken::from_json(b"[]").is_err());
        let bad = r#"{"service_addr":"http://o:1","ticket_params":{"recipient":"!!"}}"#;
        assert!(JobToken::from_json(bad.as_bytes()).is_err());
    }
}
