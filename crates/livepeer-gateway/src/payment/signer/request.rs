//! Step 1 of `/generate-live-payment`: decode the request and the orchestrator's info it
//! carries (price, ticket params, address, auth token), refusing what cannot be paid.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use livepeer_pm::{Address, TicketParams};
use livepeer_proto::{Message, net};
use serde::{Deserialize, Serialize};

use super::refusal::Refusal;
use crate::orchestrator::caps::Capabilities;
use crate::orchestrator::info::AuthToken;

/// The body of `POST /generate-live-payment` (go-livepeer's `RemotePaymentRequest`).
#[derive(Debug, Deserialize)]
pub struct PaymentRequest {
    pub(super) orchestrator: String,
    #[serde(default)]
    pub(super) state: Option<SignedState>,
    #[serde(rename = "ManifestID", default)]
    pub(super) manifest_id: Option<String>,
    #[serde(default)]
    pub(super) app: String,
    #[serde(rename = "inPixels", default)]
    pub(super) in_pixels: i64,
    #[serde(rename = "type", default)]
    pub(super) job_type: String,
    #[serde(rename = "maxPrice", default)]
    pub(super) max_price: Option<MaxPrice>,
    #[serde(default)]
    pub(super) capabilities: Option<String>,
}

impl PaymentRequest {
    /// Parses a request body; anything but the request's JSON is malformed (400, as
    /// go-livepeer answers a body it cannot decode).
    pub fn parse(body: &[u8]) -> Result<Self, Refusal> {
        serde_json::from_slice(body)
            .map_err(|e| Refusal::Malformed(format!("invalid payment request: {e}")))
    }

    /// The manifest id the client names, if any (an empty one counts as none).
    pub(super) fn manifest(&self) -> Option<&str> {
        self.manifest_id.as_deref().filter(|m| !m.is_empty())
    }
}

/// The client's price ceiling.
#[derive(Debug, Deserialize)]
pub(super) struct MaxPrice {
    /// Wei per unit; whole numbers only (money is exact here).
    pub(super) price: serde_json::Number,
}

/// The state blob as the client echoes it: the state's JSON and the signer's signature of
/// it, both base64.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct SignedState {
    #[serde(rename = "State")]
    pub(super) state: String,
    #[serde(rename = "Sig")]
    pub(super) sig: String,
}

/// What the orchestrator offers, as decoded from the request.
#[derive(Debug, Clone)]
pub(super) struct Offer {
    /// Its price, both parts positive.
    pub(super) price: net::PriceInfo,
    pub(super) params: TicketParams,
    /// Its address, checksummed.
    pub(super) address: String,
    pub(super) token: AuthToken,
    /// Its transcoder URL, where a client refreshes the info.
    pub(super) transcoder: String,
}

/// Decodes the base64 OrchestratorInfo of `req`.
pub(super) fn decode(req: &PaymentRequest) -> Result<Offer, Refusal> {
    let bad = Refusal::malformed;
    let raw =
        STANDARD.decode(req.orchestrator.trim()).map_err(|_| bad("orchestrator is not base64"))?;
    let info = net::OrchestratorInfo::decode(raw.as_slice())
        .map_err(|_| bad("orchestrator is not an OrchestratorInfo"))?;
    let price = info
        .price_info
        .clone()
        .filter(|p| p.price_per_unit > 0 && p.pixels_per_unit > 0)
        .ok_or_else(|| bad("missing or zero price_info"))?;
    let params = info.ticket_params.as_ref().ok_or_else(|| bad("missing ticket_params"))?;
    let params = TicketParams::from_proto(params)
        .map_err(|e| Refusal::Malformed(format!("ticket_params: {e}")))?;
    if info.address.len() != 20 {
        return Err(bad("missing orchestrator address"));
    }
    let address = Address::from_slice(&info.address).to_checksum(None);
    let token = info.auth_token.as_ref().ok_or_else(|| bad("missing auth_token"))?;
    let token = AuthToken {
        token: token.token.clone(),
        session_id: token.session_id.clone(),
        expiration: token.expiration,
    };
    Ok(Offer { price, params, address, token, transcoder: info.transcoder })
}

/// The job's capabilities as the request carries them (base64 protobuf); none when absent.
pub(super) fn capabilities(req: &PaymentRequest) -> Result<Capabilities, Refusal> {
    let Some(b64) = &req.capabilities else { return Ok(Capabilities::default()) };
    let raw = STANDARD.decode(b64).map_err(|_| Refusal::malformed("capabilities is not base64"))?;
    let caps = net::Capabilities::decode(raw.as_slice())
        .map_err(|_| Refusal::malformed("capabilities is not a Capabilities"))?;
    Ok(Capabilities::from(&caps))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// An OrchestratorInfo priced `price`/`pixels`, its token expiring at `expiration` (unix s).
    pub(crate) fn info(price: i64, pixels: i64, expiration: i64) -> net::OrchestratorInfo {
        net::OrchestratorInfo {
            transcoder: "https://o.example:8935".into(),
            price_info: Some(net::PriceInfo {
                price_per_unit: price,
                pixels_per_unit: pixels,
                ..Default::default()
            }),
            ticket_params: Some(net::TicketParams {
                recipient: vec![7; 20],
                face_value: vec![0x03, 0xe8], // 1000 wei
                win_prob: vec![0xff; 32],     // always wins: EV = 1000 wei exactly
                recipient_rand_hash: vec![1; 32],
                seed: vec![2; 32],
                expiration_block: vec![0x10, 0x00],
                ..Default::default()
            }),
            address: vec![7; 20],
            auth_token: Some(net::AuthToken { token: vec![1], session_id: "s".into(), expiration }),
            ..Default::default()
        }
    }

    /// A request for `info` with the given JSON fields added.
    pub(crate) fn request(
        info: &net::OrchestratorInfo,
        extra: serde_json::Value,
    ) -> PaymentRequest {
        let mut body = serde_json::json!({ "orchestrator": STANDARD.encode(info.encode_to_vec()) });
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        serde_json::from_value(body).unwrap()
    }

    #[test]
    fn decodes_an_offer() {
        let offer = decode(&request(&info(3, 2, 99), serde_json::json!({}))).unwrap();
        assert_eq!((offer.price.price_per_unit, offer.price.pixels_per_unit), (3, 2));
        assert_eq!(offer.address, Address::from([7u8; 20]).to_checksum(None));
        assert_eq!(offer.token.expiration, 99);
        assert_eq!(offer.transcoder, "https://o.example:8935");
    }

    #[test]
    fn the_python_sdk_byoc_body_is_a_first_lv2v_payment() {
        // livepeer_gateway.byoc `_create_byoc_payment`: no state, no ManifestID, and a
        // `capability` key that go-livepeer's RemotePaymentRequest has no field for (ignored).
        let orchestrator = STANDARD.encode(info(3, 2, 9).encode_to_vec());
        let body = serde_json::json!({
            "orchestrator": orchestrator, "type": "lv2v", "capability": "text-reversal",
        });
        let req = PaymentRequest::parse(body.to_string().as_bytes()).unwrap();
        assert_eq!(
            (req.job_type.as_str(), req.manifest(), req.state.is_none()),
            ("lv2v", None, true)
        );
        assert_eq!(decode(&req).unwrap().price.price_per_unit, 3);
    }

    #[test]
    fn refuses_what_cannot_be_paid() {
        let refused = |info: &net::OrchestratorInfo| {
            decode(&request(info, serde_json::json!({}))).unwrap_err().to_string()
        };
        let not_b64 = request(&info(1, 1, 9), serde_json::json!({"orchestrator": "%%"}));
        assert_eq!(decode(&not_b64).unwrap_err(), Refusal::malformed("orchestrator is not base64"));
        assert_eq!(refused(&info(0, 1, 9)), "missing or zero price_info");
        let mut no_params = info(1, 1, 9);
        no_params.ticket_params = None;
        assert_eq!(refused(&no_params), "missing ticket_params");
        let mut no_address = info(1, 1, 9);
        no_address.address = vec![1; 19];
        assert_eq!(refused(&no_address), "missing orchestrator address");
        let mut no_token = info(1, 1, 9);
        no_token.auth_token = None;
        assert_eq!(refused(&no_token), "missing auth_token");
        let bad_caps = request(&info(1, 1, 9), serde_json::json!({"capabilities": "%%"}));
        assert_eq!(capabilities(&bad_caps).unwrap_err().to_string(), "capabilities is not base64");
    }
}
