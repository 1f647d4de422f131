//! Checks our own `proto/lp_rpc.proto` against `testdata/protobuf.json`: messages encoded
//! by the official Python gateway SDK (`lp_rpc_pb2`, deterministic serialization).
//!
//! Three layers of evidence:
//! 1. Reflection: the `.proto` is compiled again at test time with `protox`, every vector is
//!    decoded as a `DynamicMessage` and its proto3 JSON mapping (original proto field names) must
//!    equal the vector's `fields`. This pins field numbers, names and types; a field the SDK
//!    sends but our `.proto` lacks (or declares with another wire type) shows up as an unknown
//!    field and is reported by number.
//! 2. Generated code: every vector is decoded with the prost struct of its message, re-encoded
//!    and decoded again. The re-encoding must decode to the same value and to the same JSON; it
//!    must be byte-identical to the SDK's encoding unless the message holds a map with two or more
//!    entries (map order is unspecified on the wire). That condition is computed from the decoded
//!    message, not listed by hand.
//! 3. Typed spot checks through the generated structs, with expected values read from the JSON.

// clippy's allow-*-in-tests settings cover `#[test]` functions only, not this file's helpers;
// failing loudly on malformed vectors is the point of a test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers: a malformed vector or mismatch must fail the test"
)]

use std::fmt::Debug;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use livepeer_proto::{Message, net};
use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions, Value as ReflectValue};
use serde_json::Value;

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/protobuf.json");

/// One entry of the vector file's `cases`.
struct Case {
    name: String,
    message: String,
    bytes: Vec<u8>,
    fields: Value,
}

fn load_cases() -> Vec<Case> {
    let text = std::fs::read_to_string(VECTORS)
        .unwrap_or_else(|e| panic!("cannot read vector file {VECTORS}: {e}"));
    let doc: Value = serde_json::from_str(&text).expect("vector file is not valid JSON");
    let cases = doc["cases"].as_array().expect("vector file has no `cases` array");
    assert!(!cases.is_empty(), "vector file has zero cases");
    cases
        .iter()
        .map(|c| {
            let name = c["name"].as_str().expect("case without `name`").to_owned();
            let message = c["message"]
                .as_str()
                .unwrap_or_else(|| panic!("case {name}: no `message`"))
                .to_owned();
            let bytes = hex::decode(c["hex"].as_str().unwrap_or_else(|| panic!("{name}: no hex")))
                .unwrap_or_else(|e| panic!("case {name}: bad hex: {e}"));
            if let Some(b64) = c["base64"].as_str() {
                let from_b64 =
                    BASE64.decode(b64).unwrap_or_else(|e| panic!("case {name}: bad base64: {e}"));
                assert_eq!(from_b64, bytes, "case {name}: `hex` and `base64` disagree");
            }
            let fields = c["fields"].clone();
            assert!(fields.is_object(), "case {name}: `fields` is not an object");
            Case { name, message, bytes, fields }
        })
        .collect()
}

fn case(name: &str) -> Case {
    load_cases()
        .into_iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("vector file has no case named {name}"))
}

fn pool() -> DescriptorPool {
    let fds = protox::compile(["lp_rpc.proto"], [livepeer_proto::PROTO_DIR])
        .unwrap_or_else(|e| panic!("protox cannot compile lp_rpc.proto: {e}"));
    DescriptorPool::from_file_descriptor_set(fds).expect("descriptor pool from lp_rpc.proto")
}

fn decode_dynamic(pool: &DescriptorPool, case: &Case, bytes: &[u8]) -> DynamicMessage {
    let desc = pool.get_message_by_name(&case.message).unwrap_or_else(|| {
        panic!("case {}: message {} is not declared in lp_rpc.proto", case.name, case.message)
    });
    DynamicMessage::decode(desc, bytes)
        .unwrap_or_else(|e| panic!("case {}: {} does not decode: {e}", case.name, case.message))
}

fn to_json(msg: &DynamicMessage) -> Value {
    let options = SerializeOptions::new().use_proto_field_name(true);
    msg.serialize_with_options(serde_json::value::Serializer, &options)
        .expect("DynamicMessage to JSON")
}

/// What a walk over a decoded message found.
#[derive(Default)]
struct Findings {
    /// `path#number` of every field our `.proto` does not declare.
    unknown: Vec<String>,
    /// Path of every map field holding two or more entries.
    multi_entry_maps: Vec<String>,
}

fn walk(msg: &DynamicMessage, path: &str, out: &mut Findings) {
    for unknown in msg.unknown_fields() {
        out.unknown.push(format!("{path}#{}", unknown.number()));
    }
    for (field, value) in msg.fields() {
        walk_value(value, &format!("{path}.{}", field.name()), out);
    }
}

fn walk_value(value: &ReflectValue, path: &str, out: &mut Findings) {
    match value {
        ReflectValue::Message(m) => walk(m, path, out),
        ReflectValue::List(items) => {
            for (i, item) in items.iter().enumerate() {
                walk_value(item, &format!("{path}[{i}]"), out);
            }
        }
        ReflectValue::Map(entries) => {
            if entries.len() >= 2 {
                out.multi_entry_maps.push(path.to_owned());
            }
            for (key, item) in entries {
                walk_value(item, &format!("{path}[{key:?}]"), out);
            }
        }
        _ => {}
    }
}

/// Decodes with the generated type, re-encodes, decodes again and checks both decodes agree.
/// Returns the re-encoding.
fn round_trip<M: Message + Default + PartialEq + Debug>(case: &Case) -> Vec<u8> {
    let first = M::decode(case.bytes.as_slice())
        .unwrap_or_else(|e| panic!("case {}: generated {} fails: {e}", case.name, case.message));
    let encoded = first.encode_to_vec();
    let second = M::decode(encoded.as_slice())
        .unwrap_or_else(|e| panic!("case {}: re-encoding does not decode: {e}", case.name));
    assert_eq!(first, second, "case {}: round trip changed the message", case.name);
    encoded
}

/// Maps a vector's fully qualified message name to its generated struct.
fn generated_round_trip(case: &Case) -> Vec<u8> {
    match case.message.as_str() {
        "net.OrchestratorRequest" => round_trip::<net::OrchestratorRequest>(case),
        "net.OrchestratorInfo" => round_trip::<net::OrchestratorInfo>(case),
        "net.Payment" => round_trip::<net::Payment>(case),
        "net.SegData" => round_trip::<net::SegData>(case),
        "net.TranscodeResult" => round_trip::<net::TranscodeResult>(case),
        "net.PaymentResult" => round_trip::<net::PaymentResult>(case),
        "net.TicketParams" => round_trip::<net::TicketParams>(case),
        "net.PriceInfo" => round_trip::<net::PriceInfo>(case),
        "net.Capabilities" => round_trip::<net::Capabilities>(case),
        "net.AuthToken" => round_trip::<net::AuthToken>(case),
        "net.PingPong" => round_trip::<net::PingPong>(case),
        "net.EndTranscodingSessionRequest" => round_trip::<net::EndTranscodingSessionRequest>(case),
        other => panic!("case {}: no generated type mapped for message {other}", case.name),
    }
}

#[test]
fn reflection_json_matches_vector_fields() {
    let pool = pool();
    let cases = load_cases();
    assert!(!cases.is_empty());
    for case in &cases {
        let msg = decode_dynamic(&pool, case, &case.bytes);
        let mut findings = Findings::default();
        walk(&msg, &case.message, &mut findings);
        assert!(
            findings.unknown.is_empty(),
            "case {}: fields not declared in lp_rpc.proto (or with a different wire type): {:?}",
            case.name,
            findings.unknown
        );
        let json = to_json(&msg);
        assert_eq!(
            json,
            case.fields,
            "case {}: JSON of our decode differs from the vector\nours:     {}\nexpected: {}",
            case.name,
            serde_json::to_string_pretty(&json).unwrap_or_default(),
            serde_json::to_string_pretty(&case.fields).unwrap_or_default(),
        );
    }
}

#[test]
fn generated_types_round_trip() {
    let pool = pool();
    let cases = load_cases();
    assert!(!cases.is_empty());
    let mut byte_equal = Vec::new();
    let mut reordered = Vec::new();
    for case in &cases {
        let encoded = generated_round_trip(case);

        // Whatever the byte order, prost's encoding must mean the same as the SDK's.
        let reencoded_json = to_json(&decode_dynamic(&pool, case, &encoded));
        assert_eq!(
            reencoded_json, case.fields,
            "case {}: prost re-encoding decodes to different JSON",
            case.name
        );

        // Byte equality holds exactly when no map has two or more entries: map entry order is
        // unspecified, and prost (HashMap) and the SDK order them differently.
        let mut findings = Findings::default();
        walk(&decode_dynamic(&pool, case, &case.bytes), &case.message, &mut findings);
        if findings.multi_entry_maps.is_empty() {
            assert_eq!(
                hex::encode(&encoded),
                hex::encode(&case.bytes),
                "case {}: prost re-encoding is not byte-identical to the SDK's",
                case.name
            );
            byte_equal.push(case.name.as_str());
        } else {
            reordered.push((case.name.as_str(), findings.multi_entry_maps));
        }
    }
    // Both branches must be exercised, otherwise the condition above is not being tested.
    assert!(!byte_equal.is_empty(), "no case qualified for byte equality");
    println!("byte-identical re-encoding: {byte_equal:?}");
    println!("semantic equality only (multi-entry maps): {reordered:?}");
}

// ---- typed spot checks -------------------------------------------------------------------

fn b64(v: &Value) -> Vec<u8> {
    BASE64.decode(v.as_str().unwrap_or_else(|| panic!("not a base64 string: {v}"))).expect("b64")
}

/// A JSON integer, given either as a number or (64-bit mapping) as a string.
fn int(v: &Value) -> i64 {
    match v {
        Value::Number(n) => n.as_i64().expect("integer"),
        Value::String(s) => s.parse().expect("integer string"),
        other => panic!("not an integer: {other}"),
    }
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

fn check_price(ours: &net::PriceInfo, json: &Value) {
    assert_eq!(ours.price_per_unit, json.get("pricePerUnit").map_or(0, int));
    assert_eq!(ours.pixels_per_unit, json.get("pixelsPerUnit").map_or(0, int));
    assert_eq!(i64::from(ours.capability), json.get("capability").map_or(0, int));
    assert_eq!(ours.constraint, json.get("constraint").map_or("", text));
}

fn check_capabilities(ours: &net::Capabilities, json: &Value) {
    let bitstring: Vec<u64> = json["bitstring"]
        .as_array()
        .expect("bitstring")
        .iter()
        .map(|v| text(v).parse().expect("u64 string"))
        .collect();
    assert_eq!(ours.bitstring, bitstring);
    let capacities = json["capacities"].as_object().expect("capacities");
    assert_eq!(ours.capacities.len(), capacities.len());
    for (cap, n) in capacities {
        let cap: u32 = cap.parse().expect("map key is a capability number");
        assert_eq!(ours.capacities.get(&cap).map(|&c| i64::from(c)), Some(int(n)), "cap {cap}");
    }
    let constraints = ours.constraints.as_ref().expect("constraints");
    let json_constraints = &json["constraints"];
    assert_eq!(constraints.min_version, json_constraints.get("minVersion").map_or("", text));
    let per_cap = json_constraints["PerCapability"].as_object().expect("PerCapability");
    assert_eq!(constraints.per_capability.len(), per_cap.len());
    for (cap, json_cc) in per_cap {
        let cc = &constraints.per_capability[&cap.parse::<u32>().expect("capability key")];
        let models = json_cc["models"].as_object().expect("models");
        assert_eq!(cc.models.len(), models.len());
        for (model, jm) in models {
            let m = cc.models.get(model).unwrap_or_else(|| panic!("model {model} missing"));
            assert_eq!(m.warm, jm.get("warm").is_some_and(|w| w == true), "{model} warm");
            assert_eq!(i64::from(m.capacity), jm.get("capacity").map_or(0, int));
            assert_eq!(i64::from(m.capacity_in_use), jm.get("capacityInUse").map_or(0, int));
            assert_eq!(m.runner_version, jm.get("runnerVersion").map_or("", text));
        }
    }
}

#[test]
fn orchestrator_info_full_typed() {
    let case = case("orchestrator_info_full");
    let json = &case.fields;
    let info = net::OrchestratorInfo::decode(case.bytes.as_slice()).expect("decode");

    assert_eq!(info.transcoder, text(&json["transcoder"]));
    assert_eq!(info.address, b64(&json["address"]));

    let tp = info.ticket_params.as_ref().expect("ticket_params");
    let jtp = &json["ticket_params"];
    assert_eq!(tp.recipient.len(), 20, "recipient is an Ethereum address");
    assert_eq!(tp.recipient, b64(&jtp["recipient"]));
    assert_eq!(tp.face_value, b64(&jtp["face_value"]));
    assert_eq!(tp.win_prob, b64(&jtp["win_prob"]));
    assert_eq!(tp.recipient_rand_hash, b64(&jtp["recipient_rand_hash"]));
    assert_eq!(tp.seed, b64(&jtp["seed"]));
    assert_eq!(tp.expiration_block, b64(&jtp["expiration_block"]));
    let ep = tp.expiration_params.as_ref().expect("expiration_params");
    assert_eq!(ep.creation_round, int(&jtp["expiration_params"]["creation_round"]));
    assert_eq!(
        ep.creation_round_block_hash,
        b64(&jtp["expiration_params"]["creation_round_block_hash"])
    );

    check_price(info.price_info.as_ref().expect("price_info"), &json["price_info"]);
    check_capabilities(info.capabilities.as_ref().expect("capabilities"), &json["capabilities"]);

    let token = info.auth_token.as_ref().expect("auth_token");
    assert_eq!(token.token, b64(&json["auth_token"]["token"]));
    assert_eq!(token.session_id, text(&json["auth_token"]["session_id"]));
    assert_eq!(token.expiration, int(&json["auth_token"]["expiration"]));

    let jhw = json["hardware"].as_array().expect("hardware");
    assert_eq!(info.hardware.len(), jhw.len());
    for (hw, jh) in info.hardware.iter().zip(jhw) {
        assert_eq!(hw.pipeline, text(&jh["pipeline"]));
        assert_eq!(hw.model_id, text(&jh["model_id"]));
        for (key, jg) in jh["gpu_info"].as_object().expect("gpu_info") {
            let gpu = &hw.gpu_info[key];
            assert_eq!(gpu.name, text(&jg["name"]));
            assert_eq!(i64::from(gpu.major), int(&jg["major"]));
            assert_eq!(gpu.memory_total, int(&jg["memory_total"]));
            assert_eq!(gpu.memory_free, int(&jg["memory_free"]));
        }
    }

    // Prices per capability, in order; BYOC (capability 37) must be among them.
    let jprices = json["capabilities_prices"].as_array().expect("capabilities_prices");
    assert_eq!(info.capabilities_prices.len(), jprices.len());
    for (p, jp) in info.capabilities_prices.iter().zip(jprices) {
        check_price(p, jp);
    }
    let byoc = info.capabilities_prices.iter().find(|p| p.capability == 37).expect("price for 37");
    let jbyoc = jprices.iter().find(|p| int(&p["capability"]) == 37).expect("JSON price for 37");
    check_price(byoc, jbyoc);
}

#[test]
fn orchestrator_request_typed() {
    let case = case("orchestrator_request_t2i");
    let json = &case.fields;
    let req = net::OrchestratorRequest::decode(case.bytes.as_slice()).expect("decode");
    assert_eq!(req.address, b64(&json["address"]));
    assert_eq!(req.sig, b64(&json["sig"]));
    assert_eq!(req.ignore_capacity_check, json["ignoreCapacityCheck"] == true);
    check_capabilities(req.capabilities.as_ref().expect("capabilities"), &json["capabilities"]);
}

#[test]
fn payment_typed() {
    let case = case("payment_two_tickets");
    let json = &case.fields;
    let payment = net::Payment::decode(case.bytes.as_slice()).expect("decode");
    assert_eq!(payment.sender, b64(&json["sender"]));
    let tp = payment.ticket_params.as_ref().expect("ticket_params");
    assert_eq!(tp.recipient, b64(&json["ticket_params"]["recipient"]));
    assert!(tp.expiration_params.is_none(), "vector has expiration params only in Payment");
    assert!(json["ticket_params"].get("expiration_params").is_none());
    let ep = payment.expiration_params.as_ref().expect("expiration_params");
    assert_eq!(ep.creation_round, int(&json["expiration_params"]["creation_round"]));
    let jtsp = json["ticket_sender_params"].as_array().expect("ticket_sender_params");
    assert_eq!(payment.ticket_sender_params.len(), jtsp.len());
    for (t, jt) in payment.ticket_sender_params.iter().zip(jtsp) {
        assert_eq!(i64::from(t.sender_nonce), int(&jt["sender_nonce"]));
        assert_eq!(t.sig, b64(&jt["sig"]));
    }
    check_price(payment.expected_price.as_ref().expect("expected_price"), &json["expected_price"]);
}

#[test]
fn segdata_transcode_typed() {
    let case = case("segdata_transcode");
    let json = &case.fields;
    let seg = net::SegData::decode(case.bytes.as_slice()).expect("decode");
    assert_eq!(seg.manifest_id, b64(&json["manifestId"]));
    assert_eq!(seg.seq, int(&json["seq"]));
    assert_eq!(i64::from(seg.duration), int(&json["duration"]));
    let jprofiles = json["fullProfiles3"].as_array().expect("fullProfiles3");
    assert_eq!(seg.full_profiles3.len(), jprofiles.len());
    for (p, jp) in seg.full_profiles3.iter().zip(jprofiles) {
        assert_eq!(p.name, text(&jp["name"]));
        assert_eq!(i64::from(p.width), int(&jp["width"]));
        assert_eq!(i64::from(p.height), int(&jp["height"]));
        assert_eq!(i64::from(p.bitrate), int(&jp["bitrate"]));
        assert_eq!(i64::from(p.fps), int(&jp["fps"]));
        assert_eq!(i64::from(p.fps_den), int(&jp["fpsDen"]));
    }
}

#[test]
fn transcode_results_typed() {
    let ok = case("transcode_result_ok");
    let res = net::TranscodeResult::decode(ok.bytes.as_slice()).expect("decode");
    assert_eq!(res.seq, int(&ok.fields["seq"]));
    let Some(net::transcode_result::Result::Data(data)) = &res.result else {
        panic!("transcode_result_ok: expected the `data` arm, got {:?}", res.result);
    };
    let jsegs = ok.fields["data"]["segments"].as_array().expect("segments");
    assert_eq!(data.segments.len(), jsegs.len());
    for (s, js) in data.segments.iter().zip(jsegs) {
        assert_eq!(s.url, text(&js["url"]));
        assert_eq!(s.pixels, int(&js["pixels"]));
    }
    assert_eq!(data.sig, b64(&ok.fields["data"]["sig"]));
    let info = res.info.as_ref().expect("info");
    assert_eq!(info.transcoder, text(&ok.fields["info"]["transcoder"]));

    let err = case("transcode_result_error");
    let res = net::TranscodeResult::decode(err.bytes.as_slice()).expect("decode");
    assert_eq!(res.seq, int(&err.fields["seq"]));
    assert_eq!(
        res.result,
        Some(net::transcode_result::Result::Error(text(&err.fields["error"]).to_owned()))
    );
    assert!(res.info.is_none());
}
