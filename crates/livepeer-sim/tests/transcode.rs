//! The simulator transcodes as a go-livepeer orchestrator does (`POST /segment`), over real
//! sockets: header, payment, balance and hash checks with go-livepeer's statuses and texts,
//! a protobuf `TranscodeResult` with rendition URLs, pixels and the orchestrator's signature,
//! renditions made by ffmpeg at the asked size (or, in fast mode, without encoding), pixels
//! debited, and its failure modes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    reason = "tests fail by panicking"
)]

mod transcode_support;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use livepeer_pm::{Ratio, SignedRatio, flatten_segment, keccak256, recover_eth_signer};
use livepeer_proto::Message as _;
use livepeer_proto::net::{self, orchestrator_client::OrchestratorClient, transcode_result};
use livepeer_sim::{PaymentRejection, Sim, SimConfig, TranscodeFault};
use transcode_support::{
    Gateway, SEGMENT_START, config, decode, key, onchain, orchestrator_key, probe, profile,
    segment_caps, start_time, test_segment,
};

fn data(result: &net::TranscodeResult) -> &net::TranscodeData {
    match &result.result {
        Some(transcode_result::Result::Data(d)) => d,
        other => panic!("expected data, got {other:?}"),
    }
}

fn error(result: &net::TranscodeResult) -> &str {
    match &result.result {
        Some(transcode_result::Result::Error(e)) => e,
        other => panic!("expected an error, got {other:?}"),
    }
}

async fn fetch(gw: &Gateway, url: &str) -> Vec<u8> {
    let resp = gw.http.get(url).send().await.unwrap();
    assert_eq!(resp.status(), 200, "{url}");
    resp.bytes().await.unwrap().to_vec()
}

/// The signature go-livepeer's verifier checks: `eth_sign(concat keccak256(rendition))`.
fn check_sig(sig: &[u8], renditions: &[Vec<u8>]) {
    let hashes: Vec<u8> = renditions.iter().flat_map(|r| keccak256(r).to_vec()).collect();
    assert_eq!(recover_eth_signer(&hashes, sig).unwrap(), orchestrator_key().address());
}

#[tokio::test]
async fn fast_mode_answers_renditions_signs_them_and_debits_their_pixels() {
    let sim = onchain(true, (1, 1000)).await;
    let mut gw = Gateway::new(&sim, key(7)).await;
    let segment = test_segment();
    let profiles = [profile("P240p30fps4x3", 320, 240, 30), profile("P144p", 192, 144, 15)];
    let (status, body) = gw.transcode(4, segment, &profiles, 2).await;
    assert_eq!(status, 200);
    let result = decode(&body);
    assert_eq!(result.seq, 4);
    let info = result.info.as_ref().expect("a fresh OrchestratorInfo");
    assert_eq!(info.auth_token, gw.info.auth_token, "the request's auth token is echoed");
    assert!(info.ticket_params.is_some());
    let data = data(&result);
    assert_eq!(data.segments.len(), 2);
    let session = gw.session_id();
    assert_eq!(
        data.segments[0].url,
        format!("{}/stream/{session}/P240p30fps4x3/4.ts", sim.service_url())
    );
    // 2 s at the profile's rate.
    assert_eq!(data.segments[0].pixels, 320 * 240 * 60);
    assert_eq!(data.segments[1].pixels, 192 * 144 * 30);
    let mut renditions = Vec::new();
    for s in &data.segments {
        let bytes = fetch(&gw, &s.url).await;
        // A scaled-down copy: the first 300 kbit/s × 2 s of the input, in whole packets.
        let len = segment.len().min(75_000 / 188 * 188);
        assert_eq!(bytes, segment[..len], "fast mode returns a prefix of the input");
        renditions.push(bytes);
    }
    check_sig(&data.sig, &renditions);

    let pixels = 320 * 240 * 60 + 192 * 144 * 30;
    let fee: Ratio = format!("{pixels}/1000").parse().unwrap();
    let stats = sim.payments();
    assert_eq!(stats.fees_debited, fee);
    let ev = gw.session.as_ref().unwrap().params().ev();
    let expected =
        SignedRatio::from(ev.checked_mul_u64(2).unwrap()).checked_sub(&SignedRatio::from(fee));
    assert_eq!(stats.balance(gw.address(), &session), Some(expected.unwrap()));
    let t = sim.transcode_stats();
    assert_eq!((t.requests, t.accepted, t.transcoded, t.renditions), (1, 1, 1, 2));
    assert_eq!(t.pixels, pixels as u64);
    assert_eq!(t.last_segment.unwrap().full_profiles3, profiles.to_vec());
}

#[tokio::test]
async fn a_body_that_does_not_match_the_hash_is_forbidden() {
    let sim = onchain(true, (1, 1000)).await;
    let mut gw = Gateway::new(&sim, key(7)).await;
    let segment = test_segment();
    let profiles = [profile("p", 160, 120, 30)];
    let payment = gw.pay(1);
    let header = gw.segment(0, segment, &profiles);
    let mut other = segment.to_vec();
    other[100] ^= 1;
    let resp = gw.post(&payment, &header, other).await;
    assert_eq!(resp.status(), 403);
    assert_eq!(resp.text().await.unwrap(), "Forbidden\n");
    assert_eq!(sim.transcode_stats().accepted, 0);
    assert_eq!(sim.payments().fees_debited, Ratio::ZERO);
}

#[tokio::test]
async fn without_credit_the_segment_is_refused_for_insufficient_balance() {
    let sim = onchain(true, (1, 1000)).await;
    let mut gw = Gateway::new(&sim, key(7)).await;
    let (status, body) = gw.transcode(0, test_segment(), &[profile("p", 160, 120, 30)], 0).await;
    assert_eq!(
        (status, String::from_utf8(body).unwrap().as_str()),
        (400, "Insufficient balance\n")
    );
    assert_eq!(sim.payments().rejected(PaymentRejection::InsufficientBalance), 1);
    // Paying makes the same segment go through.
    let (status, _) = gw.transcode(0, test_segment(), &[profile("p", 160, 120, 30)], 1).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn header_checks_answer_as_go_livepeer() {
    let sim = onchain(true, (1, 1000)).await;
    let mut gw = Gateway::new(&sim, key(7)).await;
    let segment = test_segment();
    let profiles = [profile("p", 160, 120, 30)];
    let payment = gw.pay(1);
    let header = gw.segment(0, segment, &profiles);

    let resp = gw.post("%%%", &header, segment.to_vec()).await;
    assert_eq!(resp.status(), 402);
    let resp = gw.post(&payment, "%%%", segment.to_vec()).await;
    assert_eq!(
        (resp.status().as_u16(), resp.text().await.unwrap()),
        (403, "ErrorSegEncoding\n".into())
    );
    // Signed by someone else than the payment's sender.
    let stranger = Gateway { signer: key(9), ..Gateway::new(&sim, key(7)).await };
    let forged = stranger.segment(0, segment, &profiles);
    let resp = gw.post(&payment, &forged, segment.to_vec()).await;
    assert_eq!((resp.status().as_u16(), resp.text().await.unwrap()), (403, "ErrSegSig\n".into()));
    let mp5 = [net::VideoProfile { format: 5, ..profiles[0].clone() }];
    let resp = gw.post(&payment, &gw.segment(0, segment, &mp5), segment.to_vec()).await;
    assert_eq!(
        (resp.status().as_u16(), resp.text().await.unwrap()),
        (403, "unrecognized profile output format\n".into())
    );
    // go-livepeer reads the profiles before it checks the signature (server/rpc.go
    // `coreSegMetadata`, then `verifySegCreds`): a forged header with a bad profile is refused
    // for the profile.
    let forged_mp5 = stranger.segment(0, segment, &mp5);
    let resp = gw.post(&payment, &forged_mp5, segment.to_vec()).await;
    assert_eq!(
        (resp.status().as_u16(), resp.text().await.unwrap()),
        (403, "unrecognized profile output format\n".into())
    );
    // No `Livepeer-Payment`: Go reads it as empty, an empty payment with no sender, whose
    // signature an on-chain orchestrator cannot find (not a 402).
    let resp = gw
        .http
        .post(format!("{}/segment", gw.info.transcoder))
        .header("Livepeer-Segment", &header)
        .body(segment.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!((resp.status().as_u16(), resp.text().await.unwrap()), (403, "ErrSegSig\n".into()));
    // Still accepted with the right headers: no ticket of the payment was spent above.
    let resp = gw.post(&payment, &header, segment.to_vec()).await;
    assert_eq!(resp.status(), 200);
}

/// `Livepeer-Segment` for `data` with `profiles` on the wire, signed over `names`.
fn signed_over(
    gw: &Gateway,
    data: &[u8],
    profiles: &[net::VideoProfile],
    names: &[&str],
) -> String {
    let hash = keccak256(data);
    let flat = flatten_segment("manifest-1", 1, &hash, names);
    let seg = net::SegData {
        manifest_id: b"manifest-1".to_vec(),
        seq: 1,
        hash: hash.to_vec(),
        sig: gw.signer.eth_sign(&flat).unwrap().0.to_vec(),
        duration: 2000,
        capabilities: Some(segment_caps()),
        auth_token: gw.info.auth_token.clone(),
        full_profiles: profiles.to_vec(),
        ..Default::default()
    };
    STANDARD.encode(seg.encode_to_vec())
}

/// go-livepeer names a profile sent without a name `net_<w>x<h>_<bitrate>` before it checks the
/// signature (server/segment_rpc.go `makeFfmpegVideoProfiles`): a signature over the empty
/// name is refused, one over the generated name accepted.
#[tokio::test]
async fn a_nameless_profile_is_signed_under_its_generated_name() {
    let sim = onchain(true, (1, 1000)).await;
    let mut gw = Gateway::new(&sim, key(7)).await;
    let segment = test_segment();
    let nameless = [net::VideoProfile { fps_den: 0, ..profile("", 160, 120, 30) }];
    let payment = gw.pay(1);
    let empty = signed_over(&gw, segment, &nameless, &[""]);
    let resp = gw.post(&payment, &empty, segment.to_vec()).await;
    assert_eq!((resp.status().as_u16(), resp.text().await.unwrap()), (403, "ErrSegSig\n".into()));
    let generated = signed_over(&gw, segment, &nameless, &["net_160x120_300000"]);
    let resp = gw.post(&payment, &generated, segment.to_vec()).await;
    assert_eq!(resp.status(), 200);
    let result = decode(&resp.bytes().await.unwrap());
    let url = &data(&result).segments[0].url;
    assert!(url.contains("/net_160x120_300000/1.ts"), "{url}");
}

/// The body's hash is compared as Go reads `SegData.hash` (`BytesToHash`: its last 32 bytes),
/// and the signature is over that hash.
#[tokio::test]
async fn a_long_hash_is_read_by_its_last_32_bytes() {
    let sim = onchain(true, (1, 1000)).await;
    let mut gw = Gateway::new(&sim, key(7)).await;
    let segment = test_segment();
    let profiles = [profile("p", 160, 120, 30)];
    let payment = gw.pay(1);
    let mut seg = net::SegData::decode(
        STANDARD.decode(signed_over(&gw, segment, &profiles, &["p"])).unwrap().as_slice(),
    )
    .unwrap();
    seg.hash.insert(0, 0xaa);
    let header = STANDARD.encode(seg.encode_to_vec());
    let resp = gw.post(&payment, &header, segment.to_vec()).await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn new_sessions_beyond_the_cap_are_refused_as_capped() {
    let sim = Sim::start(SimConfig { transcode_max_sessions: 1, ..config(true, (1, 1000)) })
        .await
        .unwrap();
    let profiles = [profile("p", 160, 120, 30)];
    let mut first = Gateway::new(&sim, key(7)).await;
    assert_eq!(first.transcode(0, test_segment(), &profiles, 1).await.0, 200);
    let mut second = Gateway::new(&sim, key(8)).await;
    let (status, body) = second.transcode(0, test_segment(), &profiles, 1).await;
    assert_eq!((status, String::from_utf8(body).unwrap().as_str()), (403, "OrchestratorCapped\n"));
    // The session already held goes on.
    assert_eq!(first.transcode(1, test_segment(), &profiles, 1).await.0, 200);
    assert_eq!(sim.transcode_stats().sessions, 1);

    // Ending it (with its own token only) frees its place.
    let mut client = OrchestratorClient::connect(sim.url().to_owned()).await.unwrap();
    let mut forged = first.info.auth_token.clone().unwrap();
    forged.token[0] ^= 1;
    let req = net::EndTranscodingSessionRequest { auth_token: Some(forged) };
    let refused = client.end_transcoding_session(req).await.unwrap_err();
    assert_eq!(refused.message(), "Invalid auth token");
    let req = net::EndTranscodingSessionRequest { auth_token: first.info.auth_token.clone() };
    client.end_transcoding_session(req).await.unwrap();
    assert_eq!(sim.transcode_stats().sessions, 0);
    assert_eq!(second.transcode(1, test_segment(), &profiles, 1).await.0, 200);
}

#[tokio::test]
async fn a_body_above_the_cap_is_a_server_error() {
    // Bodies larger than the usual 2 MB request limit are read.
    let sim = onchain(true, (1, 1000)).await;
    let mut gw = Gateway::new(&sim, key(7)).await;
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let (status, body) = gw.transcode(0, &big, &[profile("p", 160, 120, 30)], 1).await;
    assert_eq!(status, 200);
    let result = decode(&body);
    // The whole body was read: the fast rendition is its first 300 kbit/s × 2 s.
    let rendition = fetch(&gw, &data(&result).segments[0].url).await;
    assert_eq!(rendition.len(), 75_000 / 188 * 188);
    assert!(big.starts_with(&rendition));

    let sim =
        Sim::start(SimConfig { max_segment_bytes: 1000, ..config(true, (1, 1000)) }).await.unwrap();
    let mut gw = Gateway::new(&sim, key(7)).await;
    let (status, body) = gw.transcode(0, test_segment(), &[profile("p", 160, 120, 30)], 1).await;
    assert_eq!(
        (status, String::from_utf8(body).unwrap().as_str()),
        (500, "Internal Server Error\n")
    );
}

#[tokio::test]
async fn faults_fail_as_a_broken_orchestrator_does() {
    let sim = onchain(true, (1, 1000)).await;
    let mut gw = Gateway::new(&sim, key(7)).await;
    let profiles = [profile("p", 160, 120, 30)];
    for (fault, text) in
        [(TranscodeFault::Busy, "OrchestratorBusy"), (TranscodeFault::Capped, "OrchestratorCapped")]
    {
        sim.set_transcode_fault(fault);
        let (status, body) = gw.transcode(0, test_segment(), &profiles, 1).await;
        assert_eq!(status, 200);
        assert_eq!(error(&decode(&body)), text);
    }
    assert_eq!(sim.payments().fees_debited, Ratio::ZERO, "failed work is not charged");

    sim.set_transcode_fault(TranscodeFault::InternalError);
    let (status, _) = gw.transcode(0, test_segment(), &profiles, 1).await;
    assert_eq!(status, 500);

    sim.set_transcode_fault(TranscodeFault::Garbage);
    let (status, body) = gw.transcode(0, test_segment(), &profiles, 1).await;
    assert_eq!(status, 200);
    assert!(<net::TranscodeResult as livepeer_proto::Message>::decode(body.as_slice()).is_err());

    sim.set_transcode_fault(TranscodeFault::CloseMidBody);
    let payment = gw.pay(1);
    let header = gw.segment(0, test_segment(), &profiles);
    let resp = gw.post(&payment, &header, test_segment().to_vec()).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.bytes().await.is_err(), "the body was cut");

    sim.set_transcode_fault(TranscodeFault::HangAfterOk);
    let payment = gw.pay(1);
    let header = gw.segment(0, test_segment(), &profiles);
    let resp = gw.post(&payment, &header, test_segment().to_vec()).await;
    assert_eq!(resp.status(), 200, "the upload is acknowledged");
    let body = tokio::time::timeout(std::time::Duration::from_millis(300), resp.bytes()).await;
    assert!(body.is_err(), "the result never comes");

    sim.set_transcode_fault(TranscodeFault::Hang);
    let payment = gw.pay(1);
    let sent = gw
        .http
        .post(format!("{}/segment", gw.info.transcoder))
        .header("Livepeer-Payment", payment)
        .header("Livepeer-Segment", header)
        .body(test_segment().to_vec())
        .timeout(std::time::Duration::from_millis(300))
        .send()
        .await;
    assert!(sent.unwrap_err().is_timeout());

    sim.set_transcode_fault(TranscodeFault::None);
    assert_eq!(gw.transcode(1, test_segment(), &profiles, 1).await.0, 200);
}

#[tokio::test]
async fn an_off_chain_orchestrator_transcodes_without_payment_or_signature() {
    let sim = Sim::start(SimConfig { transcode_fast: true, ..SimConfig::default() }).await.unwrap();
    let gw = Gateway::new(&sim, key(7)).await;
    assert!(gw.info.ticket_params.is_none());
    let profiles = [profile("p", 160, 120, 30)];
    let resp =
        gw.post("", &gw.segment(0, test_segment(), &profiles), test_segment().to_vec()).await;
    assert_eq!(resp.status(), 200);
    let result = decode(&resp.bytes().await.unwrap());
    let data = data(&result);
    assert!(data.sig.is_empty());
    let rendition = fetch(&gw, &data.segments[0].url).await;
    assert!(test_segment().starts_with(&rendition) && !rendition.is_empty());
}

#[tokio::test]
async fn renditions_are_encoded_at_the_asked_size_and_billed_by_frames_encoded() {
    let sim = onchain(false, (1, 1000)).await;
    let mut gw = Gateway::new(&sim, key(7)).await;
    let profiles = [
        profile("P144p15", 192, 144, 15),
        net::VideoProfile { format: 1, ..profile("P96mp4", 128, 96, 0) },
    ];
    let (status, body) = gw.transcode(7, test_segment(), &profiles, 3).await;
    assert_eq!(status, 200);
    let result = decode(&body);
    let data = data(&result);
    assert!(data.segments[1].url.ends_with("/P96mp4/7.mp4"), "{}", data.segments[1].url);
    let mut renditions = Vec::new();
    for (s, (w, h)) in data.segments.iter().zip([(192, 144), (128, 96)]) {
        let bytes = fetch(&gw, &s.url).await;
        let (width, height, frames) = probe(&bytes);
        assert_eq!((width, height), (w, h));
        assert_eq!(s.pixels, i64::from(w * h) * frames as i64, "pixels = w × h × frames");
        renditions.push(bytes);
    }
    let (_, _, frames) = probe(&renditions[0]);
    assert!((29..=31).contains(&frames), "2 s at 15 fps, got {frames}");
    let start = start_time(&renditions[0]);
    assert!((start - SEGMENT_START).abs() < 0.1, "the source's timestamps are kept: {start}");
    let (_, _, frames) = probe(&renditions[1]);
    assert!((59..=61).contains(&frames), "the source's 30 fps kept, got {frames}");
    check_sig(&data.sig, &renditions);
    let pixels: i64 = data.segments.iter().map(|s| s.pixels).sum();
    assert_eq!(sim.payments().fees_debited, format!("{pixels}/1000").parse().unwrap());
}

#[tokio::test]
async fn an_undecodable_segment_fails_in_the_result_and_is_not_charged() {
    let sim = onchain(false, (1, 1000)).await;
    let mut gw = Gateway::new(&sim, key(7)).await;
    let junk = vec![0x47u8; 188 * 10];
    let (status, body) = gw.transcode(0, &junk, &[profile("p", 160, 120, 30)], 1).await;
    assert_eq!(status, 200);
    assert!(!error(&decode(&body)).is_empty());
    assert_eq!(sim.payments().fees_debited, Ratio::ZERO);
    assert_eq!(sim.transcode_stats().failed, 1);
}

#[tokio::test]
async fn tiny_outputs_and_codecs_it_cannot_encode_fail_in_the_result() {
    let sim = onchain(true, (1, 1000)).await;
    let mut gw = Gateway::new(&sim, key(7)).await;
    let (status, body) = gw.transcode(0, b"0123456789", &[profile("p", 160, 120, 30)], 1).await;
    assert_eq!(status, 200);
    assert_eq!(error(&decode(&body)), "ZeroSegments");
    let vp9 = net::VideoProfile { encoder: 3, ..profile("v", 160, 120, 30) };
    let (status, body) = gw.transcode(1, test_segment(), &[vp9], 1).await;
    assert_eq!(status, 200);
    assert_eq!(error(&decode(&body)), "unsupported video codec for profile v");
    assert_eq!(sim.payments().fees_debited, Ratio::ZERO);
    assert_eq!(sim.transcode_stats().failed, 2);
}

#[tokio::test]
async fn the_upload_is_acknowledged_before_a_slow_transcode_ends() {
    let slow = SimConfig {
        transcode_latency: std::time::Duration::from_secs(3600),
        ..config(true, (1, 1000))
    };
    let sim = Sim::start(slow).await.unwrap();
    let mut gw = Gateway::new(&sim, key(7)).await;
    let payment = gw.pay(1);
    let profiles = [profile("p", 160, 120, 30)];
    let header = gw.segment(0, test_segment(), &profiles);
    let resp = gw.post(&payment, &header, test_segment().to_vec()).await;
    assert_eq!(resp.status(), 200);
    let stats = sim.transcode_stats();
    assert_eq!((stats.accepted, stats.transcoded), (1, 0), "still transcoding");
    assert_eq!(sim.payments().fees_debited, Ratio::ZERO, "nothing charged yet");
}

#[tokio::test]
async fn get_orchestrator_advertises_transcoding_at_the_base_price() {
    let sim = onchain(true, (3, 7)).await;
    let gw = Gateway::new(&sim, key(7)).await;
    assert_eq!(gw.info.transcoder, sim.service_url());
    let price = gw.info.price_info.clone().unwrap();
    assert_eq!((price.price_per_unit, price.pixels_per_unit), (3, 7));
    assert_eq!(gw.info.address, orchestrator_key().address().to_vec());
    let caps = gw.info.capabilities.clone().unwrap();
    // go-livepeer's default (transcoding) capabilities: H.264, MPEG-TS, MP4, fractional fps,
    // storage, H.264 profiles, GOP, auth token, MPEG-7, segment slicing.
    for id in [0u32, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 26] {
        assert!(caps.bitstring[0] & (1 << id) != 0, "capability {id}");
    }
    let token = gw.info.auth_token.clone().unwrap();
    assert_eq!(token.session_id.len(), 8);
    // The ticket params are for this price: a payment at it is accepted (the other tests).
    assert!(gw.info.ticket_params.is_some());
}

/// `Livepeer-Segment` `header` asking for the capabilities `ids` instead (they are not signed).
fn asking_for(header: &str, ids: &[u32]) -> String {
    let mut seg = net::SegData::decode(STANDARD.decode(header).unwrap().as_slice()).unwrap();
    let word = ids.iter().fold(0u64, |w, id| w | 1 << id);
    seg.capabilities = Some(net::Capabilities { bitstring: vec![word], ..Default::default() });
    STANDARD.encode(seg.encode_to_vec())
}

/// go-livepeer's orchestrator checks the segment's capabilities against its own
/// (server/segment_rpc.go `verifySegCreds`, `CompatibleWith`): one lacking the HEVC decoder
/// refuses an HEVC segment with 403 `incompatible capabilities`, one that advertises it takes
/// it, and one lacking a capability the segment does not ask for (MP4) takes it too.
#[tokio::test]
async fn a_segment_asking_for_a_capability_it_lacks_is_refused() {
    let hevc_input = [1, 12, 15, 26];
    for (extra, missing, want) in
        [(vec![], vec![], 403), (vec![15], vec![], 200), (vec![15], vec![2, 14], 200)]
    {
        let sim = Sim::start(SimConfig {
            extra_capabilities: extra.clone(),
            missing_capabilities: missing.clone(),
            ..config(true, (1, 1000))
        })
        .await
        .unwrap();
        let mut gw = Gateway::new(&sim, key(7)).await;
        let segment = test_segment();
        let payment = gw.pay(1);
        let header =
            asking_for(&gw.segment(0, segment, &[profile("p", 160, 120, 30)]), &hevc_input);
        let resp = gw.post(&payment, &header, segment.to_vec()).await;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        assert_eq!(status, want, "extra {extra:?}, missing {missing:?}: {text}");
        if want == 403 {
            assert_eq!(text, "incompatible capabilities\n");
        }
    }
}
