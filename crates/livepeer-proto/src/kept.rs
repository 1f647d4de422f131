//! `GetOrchestrator` as a gateway calls it: the answer decoded without the fields a gateway
//! never uses.
//!
//! Why a message of our own: an orchestrator's answer is decoded whole, and prost builds every
//! repeated entry it holds. Empty `hardware` entries take two bytes of the answer each and some
//! fifty bytes decoded, so a 4 MiB answer of them took 200 MiB and 0.4 s, on every call the
//! orchestrator could provoke. Decoded as [`KeptOrchestratorInfo`], fields 7 (`hardware`), 32
//! (`storage`) and 34 (`nodes`) are skipped as unknown fields are, without being built.

use crate::net;

/// `net.OrchestratorInfo` with only the fields a gateway reads: 1–6 and 33.
#[derive(Clone, PartialEq, prost::Message)]
pub struct KeptOrchestratorInfo {
    /// Service URI.
    #[prost(string, tag = "1")]
    pub transcoder: String,
    /// Ticket parameters.
    #[prost(message, optional, tag = "2")]
    pub ticket_params: Option<net::TicketParams>,
    /// Transcoding price.
    #[prost(message, optional, tag = "3")]
    pub price_info: Option<net::PriceInfo>,
    /// ETH address.
    #[prost(bytes = "vec", tag = "4")]
    pub address: Vec<u8>,
    /// Capabilities.
    #[prost(message, optional, tag = "5")]
    pub capabilities: Option<net::Capabilities>,
    /// Auth token.
    #[prost(message, optional, tag = "6")]
    pub auth_token: Option<net::AuthToken>,
    /// Per-capability prices.
    #[prost(message, repeated, tag = "33")]
    pub capabilities_prices: Vec<net::PriceInfo>,
}

impl From<KeptOrchestratorInfo> for net::OrchestratorInfo {
    fn from(k: KeptOrchestratorInfo) -> Self {
        Self {
            transcoder: k.transcoder,
            ticket_params: k.ticket_params,
            price_info: k.price_info,
            address: k.address,
            capabilities: k.capabilities,
            auth_token: k.auth_token,
            capabilities_prices: k.capabilities_prices,
            ..Self::default()
        }
    }
}

/// Calls `GetOrchestrator` over `channel`, decoding an answer of at most `max_bytes` as
/// [`KeptOrchestratorInfo`].
pub async fn get_orchestrator(
    channel: tonic::transport::Channel,
    request: tonic::Request<net::OrchestratorRequest>,
    max_bytes: usize,
) -> Result<tonic::Response<KeptOrchestratorInfo>, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel).max_decoding_message_size(max_bytes);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unknown(format!("Service was not ready: {e}")))?;
    let codec =
        tonic_prost::ProstCodec::<net::OrchestratorRequest, KeptOrchestratorInfo>::default();
    let path =
        tonic::codegen::http::uri::PathAndQuery::from_static("/net.Orchestrator/GetOrchestrator");
    grpc.unary(request, path, codec).await
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;

    #[test]
    fn the_kept_fields_decode_as_the_whole_message_has_them_and_the_rest_is_skipped() {
        let whole = net::OrchestratorInfo {
            transcoder: "https://o.example:8935".into(),
            address: vec![7; 20],
            auth_token: Some(net::AuthToken {
                token: vec![1; 32],
                session_id: "s".into(),
                expiration: 9,
            }),
            price_info: Some(net::PriceInfo {
                price_per_unit: 3,
                pixels_per_unit: 1,
                ..Default::default()
            }),
            hardware: vec![net::HardwareInformation::default(); 1000],
            nodes: vec!["n".into(); 1000],
            ..Default::default()
        };
        let bytes = whole.encode_to_vec();
        let kept = KeptOrchestratorInfo::decode(bytes.as_slice()).unwrap();
        let back = net::OrchestratorInfo::from(kept);
        assert_eq!(back, net::OrchestratorInfo { hardware: vec![], nodes: vec![], ..whole });
    }
}
