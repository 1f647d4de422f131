//! What the gateway puts on the wire, checked against the SDK-encoded vectors and a simulator.

use std::time::Duration;

use livepeer_gateway::orchestrator::caps::Capabilities;
use livepeer_gateway::orchestrator::{OrchClient, Timeouts, TlsTrust};
use livepeer_proto::{Message, net};
use livepeer_sim::{Sim, SimConfig, SimModel};

fn vector(name: &str) -> Vec<u8> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/protobuf.json");
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let case = doc["cases"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap();
    hex::decode(case["hex"].as_str().unwrap()).unwrap()
}

#[test]
fn capabilities_convert_byte_exactly() {
    // The SDK's text-to-image request: through our types and back, byte for byte.
    let bytes = vector("orchestrator_request_t2i");
    let req = net::OrchestratorRequest::decode(bytes.as_slice()).unwrap();
    let ours = Capabilities::from(req.capabilities.as_ref().unwrap());
    assert!(ours.has(27) && ours.has(14) && !ours.has(28));
    assert_eq!(ours.min_version, "0.9.0");
    assert_eq!(ours.per_capability[&27]["stabilityai/sd-turbo"].runner_version, "0.14.0");
    let again = net::OrchestratorRequest { capabilities: Some((&ours).into()), ..req };
    assert_eq!(again.encode_to_vec(), bytes);

    // The orchestrator's answer: warm and cold models and capacities survive the conversion.
    let info = net::OrchestratorInfo::decode(vector("orchestrator_info_full").as_slice()).unwrap();
    let caps = Capabilities::from(info.capabilities.as_ref().unwrap());
    let back = net::Capabilities::from(&caps);
    assert_eq!(&back, info.capabilities.as_ref().unwrap());
    let parsed =
        livepeer_gateway::orchestrator::info::OrchInfo::from_wire(info.clone(), Duration::ZERO)
            .unwrap();
    let byoc = info.capabilities_prices.iter().find(|p| p.capability == 37).unwrap();
    assert!(
        parsed
            .capability_prices
            .iter()
            .any(|p| p.capability == 37 && p.constraint == byoc.constraint)
    );
    assert_eq!(
        parsed.ticket_params.unwrap().recipient.to_vec(),
        info.ticket_params.unwrap().recipient
    );
}

#[tokio::test]
async fn a_job_request_carries_its_capabilities_and_gets_the_job_price() {
    let sim = Sim::start(SimConfig {
        tls: true,
        base_price: (1000, 1),
        models: vec![
            SimModel::new("text-to-image", "sd").price(7, 3),
            SimModel::new("llm", "llama").price(1, 1),
        ],
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let client = OrchClient::new(
        Timeouts { connect: Duration::from_secs(1), call: Duration::from_secs(2) },
        TlsTrust::AcceptAny,
        None,
    );
    let job = Capabilities::ai_job(27, "sd", "0.14.0", "0.9.0");
    let info =
        client.get_orchestrator(&sim.url().parse().unwrap(), Some(&job), true).await.unwrap();
    let sent = sim.last_request().unwrap();
    assert!(sent.ignore_capacity_check);
    assert_eq!(Capabilities::from(sent.capabilities.as_ref().unwrap()), job);
    // With capabilities, the price is the job's, not the base price, and no price list comes.
    assert_eq!(info.price.to_string(), "7/3");
    assert!(info.capability_prices.is_empty());
    assert_eq!(info.transcoder, sim.url());

    // Without: the base price and every model's price.
    let all = client.get_orchestrator(&sim.url().parse().unwrap(), None, false).await.unwrap();
    assert_eq!(all.price.to_string(), "1000/1");
    assert_eq!(all.price_for(33, "llama").to_string(), "1/1");
    assert_eq!(all.price_for(33, "unknown").to_string(), "1000/1");
}
