//! Every case of every section of `testdata/tickets.json`, byte for byte.
//!
//! The vectors were computed independently in Python and re-checked against go-livepeer's own
//! ticket and signature code (PAYMENTS.md §11), so a pass here means the Rust sender produces
//! what a go-livepeer orchestrator accepts and what the TicketBroker redeems.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers may panic on malformed vectors"
)]

use std::time::Duration;

use livepeer_pm::{
    Address, B256, Balance, Error, ExpirationParams, LIVE_VIDEO_INITIAL_SECONDS,
    LIVE_VIDEO_UNITS_PER_SECOND, LocalSigner, OFFCHAIN_PAYMENT_HEADER, OutputProfile,
    PIXEL_ESTIMATE_MULTIPLIER, Ratio, RecipientRandInputs, SenderSession, SignedRatio, Ticket,
    TicketParams, U256, U512, UpdateStatus, build_payment, decode_payment_header, encode_payment,
    estimated_out_pixels, is_winning, keccak256, min_credit, orchestrator_win_prob,
    payment_header_value, recipient_rand_hash, recover_eth_signer, recover_message_signer,
    ticket_ev, tickets_in_payment, transcode_fee_estimate, unit_fee, win_value,
};
use livepeer_proto::net;
use serde_json::Value;

// === helpers ===

fn vectors() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/tickets.json");
    let text = std::fs::read_to_string(path).expect("testdata/tickets.json at the workspace root");
    serde_json::from_str(&text).unwrap()
}

/// The non-empty array `v[key]`.
fn section<'a>(v: &'a Value, key: &str) -> &'a Vec<Value> {
    let cases = v[key].as_array().unwrap_or_else(|| panic!("section {key} missing"));
    assert!(!cases.is_empty(), "section {key} is empty");
    cases
}

/// A name for a case in failure messages: its `id`, else `section[i]` plus its description.
fn case_id(sec: &str, i: usize, c: &Value) -> String {
    match (c["id"].as_str(), c["description"].as_str(), c["job"].as_str()) {
        (Some(id), _, _) => id.to_owned(),
        (None, Some(d), _) | (None, None, Some(d)) => format!("{sec}[{i}] ({d})"),
        _ => format!("{sec}[{i}]"),
    }
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("expected a string, got {v}"))
}

fn unhex(v: &Value) -> Vec<u8> {
    hex::decode(s(v).trim_start_matches("0x")).unwrap()
}

fn hexs(bytes: &[u8]) -> String {
    format!("0x{}", hex::encode(bytes))
}

fn u256(v: &Value) -> U256 {
    s(v).parse().unwrap()
}

fn b256(v: &Value) -> B256 {
    s(v).parse().unwrap()
}

fn i64v(v: &Value) -> i64 {
    s(v).parse().unwrap()
}

/// An EIP-55 address; a wrong checksum in the vectors would be a vector bug worth hearing of.
fn addr(v: &Value) -> Address {
    Address::parse_checksummed(s(v), None).unwrap()
}

fn ratio(v: &Value) -> Ratio {
    Ratio::new(s(&v["num"]).parse().unwrap(), s(&v["den"]).parse().unwrap()).unwrap()
}

/// `{num, den}` with a possibly negative numerator.
fn signed(v: &Value) -> SignedRatio {
    let num = s(&v["num"]);
    let (neg, mag) = num.strip_prefix('-').map_or((false, num), |m| (true, m));
    SignedRatio::new(neg, Ratio::new(mag.parse().unwrap(), s(&v["den"]).parse().unwrap()).unwrap())
}

/// Asserts that `r` is exactly `{num, den}` as written (so the vector is in lowest terms too).
fn assert_ratio(r: &Ratio, v: &Value, what: &str, id: &str) {
    assert_eq!(r.numer().to_string(), s(&v["num"]), "{id}: {what} numerator");
    assert_eq!(r.denom().to_string(), s(&v["den"]), "{id}: {what} denominator");
}

fn ticket_from(inputs: &Value) -> Ticket {
    Ticket {
        recipient: addr(&inputs["recipient"]),
        sender: addr(&inputs["sender"]),
        face_value: u256(&inputs["face_value"]),
        win_prob: u256(&inputs["win_prob"]),
        sender_nonce: s(&inputs["sender_nonce"]).parse().unwrap(),
        recipient_rand_hash: b256(&inputs["recipient_rand_hash"]),
        creation_round: i64v(&inputs["creation_round"]),
        creation_round_block_hash: b256(&inputs["creation_round_block_hash"]),
    }
}

fn signer_for(v: &Value, address: Address) -> LocalSigner {
    let key = section(v, "keys").iter().find(|k| addr(&k["address"]) == address).unwrap();
    LocalSigner::from_hex(s(&key["private_key"])).unwrap()
}

/// A JSON number like `2.002` as an exact duration, without going through a float.
fn duration_from_decimal(v: &Value) -> Duration {
    let text = v.to_string();
    let (whole, frac) = text.split_once('.').unwrap_or((&text, ""));
    assert!(frac.len() <= 9, "{text}: more precision than nanoseconds");
    let nanos: u32 = format!("{frac:0<9}").parse().unwrap();
    Duration::new(whole.parse().unwrap(), nanos)
}

// === sections ===

#[test]
fn keys_derive_their_addresses() {
    let v = vectors();
    for (i, k) in section(&v, "keys").iter().enumerate() {
        let id = case_id("keys", i, k);
        let signer = LocalSigner::from_hex(s(&k["private_key"])).unwrap();
        assert_eq!(signer.address(), addr(&k["address"]), "{id}");
    }
}

#[test]
fn ticket_cases_hash_sign_win_and_ev() {
    let v = vectors();
    for (i, c) in section(&v, "ticket_cases").iter().enumerate() {
        let id = case_id("ticket_cases", i, c);
        let e = &c["expected"];
        let t = ticket_from(&c["inputs"]);
        assert_eq!(hexs(&t.aux_data()), s(&e["aux_data"]), "{id}: auxData");
        assert_eq!(hexs(&t.flatten()), s(&e["preimage"]), "{id}: preimage");
        assert_eq!(t.flatten().len() as u64, e["preimage_len"].as_u64().unwrap(), "{id}: length");
        assert_eq!(t.hash(), b256(&e["ticket_hash"]), "{id}: ticket hash");
        assert_eq!(t.signing_digest(), b256(&e["eth_signed_message_hash"]), "{id}: digest");

        let signer = LocalSigner::from_hex(s(&c["private_key"])).unwrap();
        assert_eq!(signer.address(), t.sender, "{id}: key does not own the sender address");
        let sig = t.sign(&signer).unwrap();
        assert_eq!(hexs(&sig.0), s(&e["signature"]), "{id}: signature");
        assert_eq!(hexs(&sig.0[..32]), s(&e["sig_r"]), "{id}: r");
        assert_eq!(hexs(&sig.0[32..64]), s(&e["sig_s"]), "{id}: s");
        assert_eq!(u64::from(sig.0[64]), e["sig_v"].as_u64().unwrap(), "{id}: v");
        assert_eq!(sig, signer.eth_sign(&t.flatten()).unwrap(), "{id}: eth_sign(preimage)");
        assert_eq!(t.recover_signer(&sig.0).unwrap(), t.sender, "{id}: recovery");

        let rand = u256(&c["recipient_rand"]);
        assert_eq!(recipient_rand_hash(&rand), b256(&e["recipient_rand_hash"]), "{id}: rand hash");
        assert_eq!(recipient_rand_hash(&rand), t.recipient_rand_hash, "{id}: commitment");
        let wv = win_value(&sig.0, &rand);
        assert_eq!(wv, u256(&e["win_value"]), "{id}: win value");
        assert_eq!(wv, u256(&e["win_value_hex"]), "{id}: win value hex");
        let wins = is_winning(&sig.0, &rand, &t.win_prob);
        assert_eq!(wins, e["is_winning"].as_bool().unwrap(), "{id}: winning");

        let ev = t.ev();
        assert_ratio(&ev, &e["ev"], "EV", &id);
        assert_eq!(ev.floor().to_string(), s(&e["ev_floor"]), "{id}: EV floor");
        // The ÷2^256 variant must come out different whenever EV ≠ 0: that is the whole point
        // of insisting on 2^256 − 1.
        let wrong = Ratio::new(t.face_value.widening_mul(t.win_prob), U512::from(1u8) << 256);
        assert_ratio(&wrong.unwrap(), &e["ev_if_divided_by_2pow256"], "÷2^256 EV", &id);
        assert!(ev.is_zero() || wrong.unwrap() != ev, "{id}: divisors indistinguishable");
    }
}

#[test]
fn go_livepeer_ticket_hash_literals() {
    let v = vectors();
    let sec = &v["from_go_livepeer_tests"];
    for (i, c) in section(sec, "ticket_hash").iter().enumerate() {
        let id = case_id("ticket_hash", i, c);
        let t = ticket_from(&c["inputs"]);
        assert_eq!(hexs(&t.flatten()), s(&c["preimage"]), "{id}: preimage");
        assert_eq!(t.hash(), b256(&c["expected_ticket_hash"]), "{id}: hash");
    }
}

#[test]
fn go_livepeer_aux_data_and_aux_data_cases() {
    let v = vectors();
    let go = section(&v["from_go_livepeer_tests"], "aux_data").iter().map(|c| ("go aux_data", c));
    let ours = section(&v, "aux_data_cases").iter().map(|c| ("aux_data_cases", c));
    for (i, (sec, c)) in go.chain(ours).enumerate() {
        let id = case_id(sec, i, c);
        let p = ExpirationParams::new(
            i64v(&c["creation_round"]),
            b256(&c["creation_round_block_hash"]),
        );
        assert_eq!(hexs(&p.aux_data()), s(&c["expected_aux_data"]), "{id}");
        assert_eq!(p.is_empty(), p.aux_data().is_empty(), "{id}");
    }
}

#[test]
fn go_livepeer_ev_literals() {
    let v = vectors();
    for (i, c) in section(&v["from_go_livepeer_tests"], "ev").iter().enumerate() {
        let id = case_id("go ev", i, c);
        let ev = ticket_ev(&u256(&c["face_value"]), &u256(&c["win_prob"]));
        assert_ratio(&ev, &c["ev_exact"], "EV", &id);
        assert_eq!(ev.to_decimal_string(0), s(&c["expected_ev_FloatString0"]), "{id}");
    }
}

#[test]
fn go_livepeer_recipient_win_prob() {
    let v = vectors();
    for (i, c) in section(&v["from_go_livepeer_tests"], "recipient_win_prob").iter().enumerate() {
        let id = case_id("recipient_win_prob", i, c);
        let fv = u256(&c["face_value"]);
        let wp = orchestrator_win_prob(&fv, &u256(&c["recipient_ev"])).unwrap();
        assert_eq!(wp, u256(&c["expected_win_prob"]), "{id}");
        assert_ratio(&ticket_ev(&fv, &wp), &c["ev_of_result"], "EV of result", &id);
    }
}

#[test]
fn go_livepeer_ecrecover() {
    let v = vectors();
    for (i, c) in section(&v["from_go_livepeer_tests"], "ecrecover").iter().enumerate() {
        let id = case_id("ecrecover", i, c);
        let msg = unhex(&c["msg"]);
        let sig = unhex(&c["sig"]);
        let digest = livepeer_pm::B256::from(alloy_eip191(&msg));
        assert_eq!(digest, b256(&c["text_hash_of_msg"]), "{id}: TextHash");
        let got = recover_message_signer(&msg, &sig).unwrap();
        assert_eq!(got, addr(&c["expected_recovered"]), "{id}: recovered");
        assert_eq!(got, addr(&c["address"]), "{id}: address");
        // go-livepeer rejects a high-S signature outright, even though it would recover.
        // k256 would refuse it too, but with a different error; the explicit check must fire.
        let high_s = recover_message_signer(&msg, &unhex(&c["high_s_sig"]));
        assert!(s(&c["high_s_expected"]).contains("s value too high"), "{id}");
        let high_s_refused =
            matches!(high_s, Err(Error::InvalidSignature(m)) if m.contains("upper half"));
        assert!(high_s_refused, "{id}: high-S not refused by the s check: {high_s:?}");
        assert!(recover_message_signer(&msg, &sig[..64]).is_err(), "{id}: 64-byte sig accepted");
    }
}

/// go-ethereum's `accounts.TextHash`, written out so that the test does not trust the crate.
fn alloy_eip191(msg: &[u8]) -> [u8; 32] {
    let mut buf = format!("\x19Ethereum Signed Message:\n{}", msg.len()).into_bytes();
    buf.extend_from_slice(msg);
    keccak256(&buf).0
}

/// One 32-byte ABI word of `data` at byte offset `at`.
fn word(data: &[u8], at: usize) -> &[u8] {
    &data[at..at + 32]
}

fn word_usize(data: &[u8], at: usize) -> usize {
    usize::try_from(U256::from_be_slice(word(data, at))).unwrap()
}

#[test]
fn go_livepeer_mainnet_redeemed_tickets() {
    let v = vectors();
    for (i, c) in
        section(&v["from_go_livepeer_tests"], "mainnet_redeemed_tickets").iter().enumerate()
    {
        let id = case_id("mainnet", i, c);
        let t = ticket_from(&c["inputs"]);
        let e = &c["expected"];

        // redeemWinningTicket((address,address,uint256,uint256,uint256,bytes32,bytes),bytes,uint256)
        let calldata = unhex(&c["calldata"]);
        assert_eq!(&calldata[..4], [0xec, 0x8b, 0x3c, 0xb6], "{id}: selector");
        let args = &calldata[4..];
        let tuple = word_usize(args, 0);
        let sig_at = word_usize(args, 32);
        assert_eq!(U256::from_be_slice(word(args, 64)), u256(&c["recipient_rand"]), "{id}: rand");
        let field = |k: usize| word(args, tuple + 32 * k);
        assert_eq!(&field(0)[12..], t.recipient.as_slice(), "{id}: recipient");
        assert_eq!(&field(1)[12..], t.sender.as_slice(), "{id}: sender");
        assert_eq!(U256::from_be_slice(field(2)), t.face_value, "{id}: faceValue");
        assert_eq!(U256::from_be_slice(field(3)), t.win_prob, "{id}: winProb");
        assert_eq!(U256::from_be_slice(field(4)), U256::from(t.sender_nonce), "{id}: nonce");
        assert_eq!(field(5), t.recipient_rand_hash.as_slice(), "{id}: recipientRandHash");
        let aux_at = tuple + word_usize(args, tuple + 32 * 6);
        let aux = &args[aux_at + 32..aux_at + 32 + word_usize(args, aux_at)];
        assert_eq!(aux, t.aux_data(), "{id}: auxData from calldata");
        assert_eq!(hexs(aux), s(&c["aux_data"]), "{id}: auxData");
        let sig = &args[sig_at + 32..sig_at + 32 + word_usize(args, sig_at)];
        assert_eq!(sig, unhex(&c["sig"]), "{id}: sig");

        assert_eq!(t.hash(), b256(&e["ticket_hash"]), "{id}: hash");
        assert_eq!(t.signing_digest(), b256(&e["eth_signed_message_hash"]), "{id}: digest");
        let signer = t.recover_signer(sig).unwrap();
        assert_eq!(signer, addr(&e["recovered_signer"]), "{id}: recovered signer");
        assert!(t.verify_signature(sig), "{id}: signature of the sender");
        let rand = u256(&c["recipient_rand"]);
        assert_eq!(recipient_rand_hash(&rand), b256(&e["recipient_rand_hash"]), "{id}");
        assert_eq!(win_value(sig, &rand), u256(&e["win_value"]), "{id}: win value");
        assert_eq!(win_value(sig, &rand), u256(&e["win_value_hex"]), "{id}: win value hex");
        let wins = is_winning(sig, &rand, &t.win_prob);
        assert_eq!(wins, e["is_winning"].as_bool().unwrap(), "{id}: winning");
        assert_ratio(&t.ev(), &e["ev"], "EV", &id);
    }
}

#[test]
fn winning_cases() {
    let v = vectors();
    for (i, c) in section(&v, "winning_cases").iter().enumerate() {
        let id = case_id("winning_cases", i, c);
        let rand = u256(&c["recipient_rand"]);
        assert_eq!(hexs(&rand.to_be_bytes::<32>()), s(&c["recipient_rand_padded"]), "{id}");
        let sig = unhex(&c["sig"]);
        assert_eq!(win_value(&sig, &rand), u256(&c["win_value"]), "{id}: win value");
        let wins = is_winning(&sig, &rand, &u256(&c["win_prob"]));
        assert_eq!(wins, c["expected_is_winning"].as_bool().unwrap(), "{id}: winning");
    }
}

#[test]
fn ev_cases() {
    let v = vectors();
    for (i, c) in section(&v, "ev_cases").iter().enumerate() {
        let id = case_id("ev_cases", i, c);
        let (fv, wp) = (u256(&c["face_value"]), u256(&c["win_prob"]));
        let ev = ticket_ev(&fv, &wp);
        assert_ratio(&ev, &c["ev_go"], "EV", &id);
        assert_eq!(ev.floor().to_string(), s(&c["ev_go_floor"]), "{id}: floor");
        assert_eq!(ev.to_decimal_string(10), s(&c["ev_go_decimal_10"]), "{id}: FloatString(10)");
        let wrong = Ratio::new(fv.widening_mul(wp), U512::from(1u8) << 256).unwrap();
        assert_ratio(&wrong, &c["ev_2pow256"], "÷2^256 EV", &id);
    }
}

#[test]
fn recipient_rand_cases() {
    let v = vectors();
    for (i, c) in section(&v, "recipient_rand_cases").iter().enumerate() {
        let id = case_id("recipient_rand_cases", i, c);
        let seed = u256(&c["seed"]);
        assert_eq!(hexs(&seed.to_be_bytes_trimmed_vec()), s(&c["seed_hex"]), "{id}: seed bytes");
        let inputs = RecipientRandInputs {
            seed,
            sender: addr(&c["sender"]),
            face_value: u256(&c["face_value"]),
            win_prob: u256(&c["win_prob"]),
            expiration_block: u256(&c["expiration_block"]),
            price: Ratio::new(
                s(&c["price_num"]).parse().unwrap(),
                s(&c["price_den"]).parse().unwrap(),
            )
            .unwrap(),
            expiration: ExpirationParams::new(
                i64v(&c["creation_round"]),
                b256(&c["creation_round_block_hash"]),
            ),
        };
        assert_eq!(hexs(&inputs.hmac_message()), s(&c["hmac_message"]), "{id}: HMAC message");
        let rand = inputs.recipient_rand(&unhex(&c["secret"]));
        assert_eq!(rand, u256(&c["expected_recipient_rand"]), "{id}: recipientRand");
        let hash = recipient_rand_hash(&rand);
        assert_eq!(hash, b256(&c["expected_recipient_rand_hash"]), "{id}: hash");
    }
}

#[test]
fn balance_cases() {
    let v = vectors();
    for (i, c) in section(&v, "balance_cases").iter().enumerate() {
        let id = case_id("balance_cases", i, c);
        let ev = ratio(&c["ticket_ev"]);
        let fee = ratio(&c["fee_min_credit"]);
        assert_ratio(&min_credit(&fee, &ev), &c["safe_min_credit"], "minCredit", &id);

        let mut balance = Balance::new(signed(&c["existing_credit"]));
        let mut update = balance.stage_payment(Some(&fee), &ev).unwrap();
        let tickets = u64::from(update.num_tickets);
        assert_eq!(tickets, c["expected_num_tickets"].as_u64().unwrap(), "{id}: tickets");
        assert_ratio(&update.new_credit, &c["expected_new_credit"], "new credit", &id);
        assert_eq!(update.existing_credit, signed(&c["existing_credit"]), "{id}: reserved");
        assert_eq!(balance.amount(), SignedRatio::ZERO, "{id}: reserve must zero the balance");

        update.status = match s(&c["status_at_completion"]) {
            "Staged" => UpdateStatus::Staged,
            "CreditSpent" => UpdateStatus::CreditSpent,
            "ReceivedChange" => UpdateStatus::ReceivedChange,
            other => panic!("{id}: unknown status {other}"),
        };
        update.debit = ratio(&c["debit"]);
        balance.complete_update(&update).unwrap();
        assert_eq!(balance.amount(), signed(&c["expected_balance_after"]), "{id}: balance after");
    }
}

#[test]
fn fee_cases() {
    let v = vectors();
    for (i, c) in section(&v, "fee_cases").iter().enumerate() {
        let id = case_id("fee_cases", i, c);
        let kind = s(&c["kind"]);
        let fee = if kind.starts_with("transcode_estimate") {
            let price = ratio(&c["price_per_pixel"]);
            assert_ratio(
                &PIXEL_ESTIMATE_MULTIPLIER,
                &c["pixel_estimate_multiplier_exact"],
                "1.02",
                &id,
            );
            let profiles: Vec<OutputProfile> = c["profiles"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| OutputProfile {
                    width: p["width"].as_u64().unwrap().try_into().unwrap(),
                    height: p["height"].as_u64().unwrap().try_into().unwrap(),
                    framerate: p["fps"].as_u64().unwrap().try_into().unwrap(),
                    framerate_den: p["fps_den"].as_u64().unwrap_or(0).try_into().unwrap(),
                })
                .collect();
            let dur = duration_from_decimal(&c["segment_duration_s"]);
            let pixels = estimated_out_pixels(&profiles, dur).unwrap();
            assert_eq!(pixels, c["expected_out_pixels"].as_u64().unwrap(), "{id}: pixels");
            transcode_fee_estimate(&profiles, dur, &price).unwrap()
        } else if kind.starts_with("ai") {
            let units = c["units"].as_u64().unwrap();
            if s(&c["job"]).contains("live-video-to-video initial") {
                let initial = LIVE_VIDEO_UNITS_PER_SECOND * LIVE_VIDEO_INITIAL_SECONDS;
                assert_eq!(units, initial, "{id}: initial live units");
            } else if s(&c["job"]).contains("live-video-to-video periodic") {
                assert_eq!(units, LIVE_VIDEO_UNITS_PER_SECOND * 5, "{id}: 5 s of live units");
            }
            unit_fee(units, &ratio(&c["price_per_unit"])).unwrap()
        } else {
            panic!("{id}: unknown fee kind {kind}");
        };
        assert_ratio(&fee, &c["expected_fee"], "fee", &id);
        assert_eq!(fee.floor().to_string(), s(&c["expected_fee_floor"]), "{id}: floor");
    }
}

fn price_info(p: &Value) -> net::PriceInfo {
    net::PriceInfo {
        price_per_unit: p["pricePerUnit"].as_i64().unwrap(),
        pixels_per_unit: p["pixelsPerUnit"].as_i64().unwrap(),
        ..Default::default()
    }
}

#[test]
fn payment_encoding_cases() {
    let v = vectors();
    for (i, c) in section(&v, "payment_encoding_cases").iter().enumerate() {
        let id = case_id("payment_encoding_cases", i, c);
        let inputs = &c["inputs"];
        let (bytes, header) = if inputs.is_null() {
            // Off-chain: no Payment at all, just an empty header value.
            let decoded = decode_payment_header(OFFCHAIN_PAYMENT_HEADER).unwrap();
            assert_eq!(decoded, net::Payment::default(), "{id}: empty header decodes empty");
            (Vec::new(), OFFCHAIN_PAYMENT_HEADER.to_owned())
        } else {
            let sender = addr(&inputs["sender"]);
            let price = price_info(&inputs["expected_price"]);
            let payment = if inputs["ticket_params"].is_null() {
                build_payment(sender, &price, None).unwrap()
            } else {
                let tp = &inputs["ticket_params"];
                let ep = &inputs["expiration_params"];
                let expiration = ExpirationParams::new(
                    i64v(&ep["creation_round"]),
                    b256(&ep["creation_round_block_hash"]),
                );
                let params = TicketParams {
                    recipient: addr(&tp["recipient"]),
                    face_value: u256(&tp["face_value"]),
                    win_prob: u256(&tp["win_prob"]),
                    recipient_rand_hash: b256(&tp["recipient_rand_hash"]),
                    seed: u256(&tp["seed"]),
                    expiration_block: u256(&tp["expiration_block"]),
                    // As the orchestrator advertised them: the echo must still leave field 7 out.
                    expiration_params: Some(expiration),
                };
                let expiration = params.expiration_or(ExpirationParams::default());
                let signer = signer_for(&v, sender);
                let mut session = SenderSession::new(params, expiration);
                let want = inputs["ticket_sender_params"].as_array().unwrap();
                let batch = session.create_batch(&signer, want.len().try_into().unwrap()).unwrap();
                for (got, want) in batch.sender_params.iter().zip(want) {
                    let n = got.sender_nonce;
                    assert_eq!(u64::from(n), want["sender_nonce"].as_u64().unwrap(), "{id}: nonce");
                    assert_eq!(hexs(&got.sig.0), s(&want["sig"]), "{id}: sig of nonce {n}");
                }
                build_payment(sender, &price, Some(&batch)).unwrap()
            };
            // What an orchestrator reads back must be the same tickets, validly signed.
            for (ticket, sig) in tickets_in_payment(&payment).unwrap() {
                assert!(ticket.verify_signature(&sig), "{id}: nonce {}", ticket.sender_nonce);
            }
            (encode_payment(&payment), payment_header_value(&payment))
        };
        assert_eq!(hexs(&bytes), s(&c["expected_protobuf_hex"]), "{id}: protobuf");
        assert_eq!(header, s(&c["expected_header_value_base64"]), "{id}: header");
    }
}

#[test]
fn orchestrator_request_sig_cases() {
    let v = vectors();
    for (i, c) in section(&v, "orchestrator_request_sig_cases").iter().enumerate() {
        let id = case_id("orchestrator_request_sig_cases", i, c);
        let signer = LocalSigner::from_hex(s(&c["private_key"])).unwrap();
        let text = signer.address().to_checksum(None);
        assert_eq!(text, s(&c["signed_string"]), "{id}");
        assert_eq!(hexs(keccak256(text.as_bytes()).as_slice()), s(&c["keccak_of_string"]), "{id}");
        let sig = signer.eth_sign(text.as_bytes()).unwrap();
        assert_eq!(hexs(&sig.0), s(&c["expected_sig"]), "{id}: sig");
        assert_eq!(recover_eth_signer(text.as_bytes(), &sig.0).unwrap(), signer.address(), "{id}");
    }
}

#[test]
fn segment_creds_sig_cases() {
    let v = vectors();
    for (i, c) in section(&v, "segment_creds_sig_cases").iter().enumerate() {
        let id = case_id("segment_creds_sig_cases", i, c);
        let signer = LocalSigner::from_hex(s(&c["private_key"])).unwrap();
        let hash = b256(&c["segment_data_hash"]);
        assert_eq!(hash, livepeer_pm::empty_segment_hash(), "{id}: empty segment");
        assert!(s(&c["profiles_hex"]).is_empty(), "{id}: only profile-less cases are covered");
        let seq = c["seq"].as_u64().unwrap();
        let flat = livepeer_pm::flatten_segment(s(&c["manifest_id"]), seq, &hash, &[]);
        assert_eq!(hexs(&flat), s(&c["flatten"]), "{id}: flatten");
        assert_eq!(hexs(keccak256(&flat).as_slice()), s(&c["keccak_of_flatten"]), "{id}");
        let sig = signer.eth_sign(&flat).unwrap();
        assert_eq!(hexs(&sig.0), s(&c["expected_sig"]), "{id}: sig");
    }
}

#[test]
fn generator_self_checks_all_passed() {
    let v = vectors();
    for (i, c) in section(&v, "self_checks").iter().enumerate() {
        assert_eq!(c["passed"].as_bool(), Some(true), "self_checks[{i}] {}", c["check"]);
    }
}
