//! An on-chain simulator checks payments as a go-livepeer orchestrator does, over real
//! sockets: params bound to the gateway and the price, every ticket's signature, recipientRand,
//! nonce and expiry, balances credited with exact EV and debited with the job's fee, and the
//! balance check before work.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    reason = "tests fail by panicking"
)]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use livepeer_pm::{
    Address, ExpirationParams, LocalSigner, MAX_WIN_PROB, Ratio, SenderSession, SignedRatio,
    TicketParams, U256, build_payment, empty_segment_hash, flatten_segment, orchestrator_win_prob,
    payment_header_value,
};
use livepeer_proto::Message as _;
use livepeer_proto::net::{self, capabilities, orchestrator_client::OrchestratorClient};
use livepeer_sim::{PARAMS_EXPIRATION_BLOCKS, PaymentRejection, Sim, SimConfig, SimModel};
use serde_json::{Value, json};

const SD: &str = "stabilityai/sd-turbo";
/// The balance key of a text-to-image job with [`SD`]: `"<capability>_<model>"`.
const MANIFEST: &str = "27_stabilityai/sd-turbo";
const AUTH: &str = "Livepeer-AI-Worker-1.0";
/// Face value and ticket EV of most tests: one ticket in 100 wins.
const FACE: u128 = 100_000_000;
const EV: u128 = 1_000_000;

fn orchestrator() -> Address {
    "0x73AEd7b5dEb30222fa896f399d46cC99c7BEe57F".parse().unwrap()
}

fn key(byte: u8) -> LocalSigner {
    LocalSigner::from_bytes(&[byte; 32]).unwrap()
}

/// An on-chain simulator serving [`SD`] text-to-image at `price` wei per pixel.
async fn onchain(face_value: u128, ticket_ev: u128, price: (i64, i64)) -> Sim {
    Sim::start(SimConfig {
        eth_address: Some(orchestrator()),
        face_value,
        ticket_ev,
        models: vec![SimModel::new("text-to-image", SD).price(price.0, price.1).capacity(4)],
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

/// The capabilities a gateway asks with for one text-to-image model.
fn t2i_caps() -> net::Capabilities {
    let model =
        capabilities::capability_constraints::ModelConstraint { warm: true, ..Default::default() };
    let per = capabilities::CapabilityConstraints { models: [(SD.to_owned(), model)].into() };
    net::Capabilities {
        capacities: [(27, 1)].into(),
        constraints: Some(capabilities::Constraints {
            min_version: String::new(),
            per_capability: [(27, per)].into(),
        }),
        ..Default::default()
    }
}

/// GetOrchestrator as a gateway with `signer` calls it: `sig = eth_sign(EIP-55 address)`.
async fn info(sim: &Sim, signer: &LocalSigner) -> net::OrchestratorInfo {
    let address = signer.address();
    let sig = signer.eth_sign(address.to_checksum(None).as_bytes()).unwrap();
    let req = net::OrchestratorRequest {
        address: address.to_vec(),
        sig: sig.0.to_vec(),
        capabilities: Some(t2i_caps()),
        ignore_capacity_check: false,
    };
    let mut client = OrchestratorClient::connect(sim.url().to_owned()).await.unwrap();
    client.get_orchestrator(req).await.unwrap().into_inner()
}

/// A gateway with a key and one OrchestratorInfo, paying and signing as go-livepeer does.
struct Gateway {
    signer: LocalSigner,
    info: net::OrchestratorInfo,
    session: SenderSession,
    http: reqwest::Client,
    base: String,
}

impl Gateway {
    async fn new(sim: &Sim, signer: LocalSigner) -> Self {
        let info = info(sim, &signer).await;
        let params = TicketParams::from_proto(info.ticket_params.as_ref().unwrap()).unwrap();
        let session = SenderSession::new(params, params.expiration_or(ExpirationParams::default()));
        Self { signer, info, session, http: reqwest::Client::new(), base: sim.url().to_owned() }
    }

    fn address(&self) -> Address {
        self.signer.address()
    }

    fn params(&self) -> TicketParams {
        *self.session.params()
    }

    fn price(&self) -> net::PriceInfo {
        self.info.price_info.clone().unwrap()
    }

    /// A payment of `n` new tickets (none: just sender and price).
    fn pay(&mut self, n: u32) -> net::Payment {
        let batch = (n > 0).then(|| self.session.create_batch(&self.signer, n).unwrap());
        build_payment(self.address(), &self.price(), batch.as_ref()).unwrap()
    }

    /// `Livepeer-Segment` for the AI call, signed by `by`.
    fn segment(&self, by: Option<&LocalSigner>) -> String {
        let hash = empty_segment_hash();
        let sig = by.map(|s| s.eth_sign(&flatten_segment(MANIFEST, 0, &hash, &[])).unwrap());
        let seg = net::SegData {
            manifest_id: MANIFEST.as_bytes().to_vec(),
            hash: hash.to_vec(),
            profiles: b"invalid".to_vec(),
            sig: sig.map(|s| s.0.to_vec()).unwrap_or_default(),
            auth_token: self.info.auth_token.clone(),
            ..Default::default()
        };
        STANDARD.encode(seg.encode_to_vec())
    }

    /// A text-to-image request of `side`×`side` pixels with this payment header value.
    async fn send_raw(&self, payment: &str, segment: &str, side: u32) -> (u16, String) {
        let body =
            json!({ "prompt": "a lighthouse", "model_id": SD, "width": side, "height": side });
        self.post_json("/text-to-image", payment, segment, &body).await
    }

    /// Any JSON AI request with these header values.
    async fn post_json(
        &self,
        path: &str,
        payment: &str,
        segment: &str,
        body: &Value,
    ) -> (u16, String) {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .header("Livepeer-Payment", payment)
            .header("Livepeer-Segment", segment)
            .header("Authorization", AUTH)
            .json(body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap().trim_end().to_owned())
    }

    /// A 64×64 request (4096 pixels) with `payment` and a correctly signed segment.
    async fn send(&self, payment: &net::Payment) -> (u16, String) {
        self.send_sized(payment, 64).await
    }

    /// Pays `n` new tickets with a 64×64 request.
    async fn pay_and_send(&mut self, n: u32) -> (u16, String) {
        let payment = self.pay(n);
        self.send(&payment).await
    }

    async fn send_sized(&self, payment: &net::Payment, side: u32) -> (u16, String) {
        let segment = self.segment(Some(&self.signer));
        self.send_raw(&payment_header_value(payment), &segment, side).await
    }
}

fn ratio(text: &str) -> Ratio {
    text.parse().unwrap()
}

fn signed(r: Ratio) -> SignedRatio {
    SignedRatio::from(r)
}

#[tokio::test]
async fn params_are_issued_for_the_gateway_and_the_quoted_price() {
    let sim = onchain(FACE, EV, (3, 2)).await;
    let gw = Gateway::new(&sim, key(7)).await;
    let wire = gw.info.ticket_params.clone().unwrap();
    let params = gw.params();
    assert_eq!(gw.price().price_per_unit, 3);
    assert_eq!(gw.price().pixels_per_unit, 2);
    assert_eq!(params.recipient, orchestrator());
    assert_eq!(params.face_value, U256::from(FACE));
    let win_prob = orchestrator_win_prob(&U256::from(FACE), &U256::from(EV)).unwrap();
    assert_eq!(params.win_prob, win_prob);
    assert!(params.ev() >= Ratio::from_u64(EV as u64), "the rounding of winProb favours O");
    // Minimal big-endian bytes, as Go's big.Int.Bytes() writes them.
    assert_eq!(wire.face_value, U256::from(FACE).to_be_bytes_trimmed_vec());
    assert_eq!(wire.recipient_rand_hash.len(), 32);
    let block = sim.payments().block;
    assert_eq!(params.expiration_block, U256::from(block + PARAMS_EXPIRATION_BLOCKS));
    let exp = params.expiration_params.unwrap();
    assert!(exp.creation_round != 0 && !exp.creation_round_block_hash.is_zero());
    // Every answer has its own seed and so its own commitment.
    let again = Gateway::new(&sim, key(7)).await.params();
    assert_ne!(again.seed, params.seed);
    assert_ne!(again.recipient_rand_hash, params.recipient_rand_hash);
}

#[tokio::test]
async fn a_correct_payment_is_credited_and_the_fee_debited_exactly() {
    let sim = onchain(FACE, EV, (3, 2)).await;
    let mut gw = Gateway::new(&sim, key(7)).await;
    let ev = gw.params().ev();
    let payment = gw.pay(2);
    let (status, body) = gw.send(&payment).await;
    assert_eq!(status, 200, "{body}");
    assert!(serde_json::from_str::<Value>(&body).unwrap()["images"].is_array());

    // 64 × 64 × 1 pixels at 3/2 wei.
    let fee = ratio("6144");
    let stats = sim.payments();
    assert_eq!(stats.payments, 1);
    assert_eq!((stats.tickets_received, stats.tickets_credited), (2, 2));
    assert_eq!(stats.ev_received[&gw.address()], ev.checked_mul_u64(2).unwrap());
    assert_eq!(stats.fees_debited, fee);
    let expected = signed(ev.checked_mul_u64(2).unwrap()).checked_sub(&signed(fee)).unwrap();
    assert_eq!(stats.balance(gw.address(), MANIFEST), Some(expected));
    assert_eq!(stats.nonces_seen, 2);
    assert!(stats.rejections.is_empty(), "{:?}", stats.rejections);
    let key = (gw.address(), MANIFEST.to_owned());
    assert_eq!(stats.fixed_prices[&key], ratio("3/2"), "the first payment fixes the price");

    // The credit left covers the next job: no new tickets, same price.
    let (status, body) = gw.pay_and_send(0).await;
    assert_eq!(status, 200, "{body}");
    let stats = sim.payments();
    assert_eq!(stats.tickets_received, 2);
    assert_eq!(stats.fees_debited, ratio("12288"));
    let expected = expected.checked_sub(&signed(fee)).unwrap();
    assert_eq!(stats.balance(gw.address(), MANIFEST), Some(expected));
}

#[tokio::test]
async fn a_reused_nonce_is_refused_and_not_credited() {
    let sim = onchain(FACE, EV, (3, 2)).await;
    let mut gw = Gateway::new(&sim, key(7)).await;
    let payment = gw.pay(1);
    assert_eq!(gw.send(&payment).await.0, 200);
    let before = sim.payments();

    let (status, body) = gw.send(&payment).await;
    assert_eq!(status, 400);
    let sender = gw.address().to_checksum(None);
    assert_eq!(body, format!("invalid ticket senderNonce: already seen sender={sender} nonce=1"));
    let after = sim.payments();
    assert_eq!(after.balance(gw.address(), MANIFEST), before.balance(gw.address(), MANIFEST));
    assert_eq!(after.tickets_credited, 1);
    assert_eq!(after.nonces_seen, 1);
    assert_eq!(after.rejected(PaymentRejection::NonceSeen), 1);
}

#[tokio::test]
async fn tampered_params_a_wrong_price_or_another_sender_break_recipient_rand() {
    const MESSAGE: &str = "invalid recipientRand for ticket recipientRandHash";
    let sim = onchain(FACE, EV, (3, 2)).await;
    let gw = Gateway::new(&sim, key(7)).await;
    let exp = *gw.session.expiration();
    let signed_payment = |params: TicketParams, price: &net::PriceInfo, signer: &LocalSigner| {
        let batch = SenderSession::new(params, exp).create_batch(signer, 1).unwrap();
        build_payment(signer.address(), price, Some(&batch)).unwrap()
    };

    // A higher face value, or a later expiration block, than the orchestrator issued.
    let p = gw.params();
    let face = TicketParams { face_value: p.face_value + U256::from(1u64), ..p };
    let (status, body) = gw.send(&signed_payment(face, &gw.price(), &gw.signer)).await;
    assert_eq!((status, body.as_str()), (400, MESSAGE));
    let later = TicketParams { expiration_block: p.expiration_block + U256::from(100u64), ..p };
    let (status, body) = gw.send(&signed_payment(later, &gw.price(), &gw.signer)).await;
    assert_eq!((status, body.as_str()), (400, MESSAGE));

    // The expected price must be the quoted one, as a rational: 3/1 is not 3/2.
    let wrong = net::PriceInfo { price_per_unit: 3, pixels_per_unit: 1, ..gw.price() };
    let (status, body) = gw.send(&signed_payment(p, &wrong, &gw.signer)).await;
    assert_eq!((status, body.as_str()), (400, MESSAGE));

    // Params are bound to the address that asked for them.
    let thief = Gateway { signer: key(8), ..Gateway::new(&sim, key(7)).await };
    let stolen = signed_payment(thief.params(), &thief.price(), &thief.signer);
    let (status, body) = thief.send(&stolen).await;
    assert_eq!((status, body.as_str()), (400, MESSAGE));

    // 6/4 is 3/2: Go normalises the price before the HMAC, so this one is fine.
    let rescaled = net::PriceInfo { price_per_unit: 6, pixels_per_unit: 4, ..gw.price() };
    let (status, body) = gw.send(&signed_payment(p, &rescaled, &gw.signer)).await;
    assert_eq!(status, 200, "{body}");

    let stats = sim.payments();
    assert_eq!(stats.rejected(PaymentRejection::InvalidRecipientRand), 4);
    assert_eq!(stats.tickets_credited, 1);
    assert_eq!(stats.ev_received.len(), 1);
}

#[tokio::test]
async fn signatures_from_another_key_are_refused() {
    let sim = onchain(FACE, EV, (3, 2)).await;
    let mut gw = Gateway::new(&sim, key(7)).await;
    let other = key(9);

    // Tickets signed by another key, sent as the gateway's.
    let mut payment = gw.pay(2);
    let tickets = livepeer_pm::tickets_in_payment(&payment).unwrap();
    for (sp, (ticket, _)) in payment.ticket_sender_params.iter_mut().zip(&tickets) {
        sp.sig = ticket.sign(&other).unwrap().0.to_vec();
    }
    let (status, body) = gw.send(&payment).await;
    assert_eq!((status, body.as_str()), (400, "invalid ticket signature"));

    // A segment signed by another key, or unsigned as an off-chain gateway sends it.
    let good = payment_header_value(&gw.pay(1));
    let (status, body) = gw.send_raw(&good, &gw.segment(Some(&other)), 64).await;
    assert_eq!((status, body.as_str()), (403, "ErrSegSig"));
    let (status, body) = gw.send_raw("", &gw.segment(None), 64).await;
    assert_eq!((status, body.as_str()), (403, "ErrSegSig"));

    let stats = sim.payments();
    assert_eq!(stats.rejected(PaymentRejection::InvalidSignature), 1);
    assert_eq!(stats.rejected(PaymentRejection::SegmentSignature), 2);
    assert_eq!(stats.tickets_received, 2);
    assert_eq!((stats.tickets_credited, stats.winning_tickets, stats.nonces_seen), (0, 0, 0));
    assert_eq!(stats.balance(gw.address(), MANIFEST), None);
}

#[tokio::test]
async fn expired_params_are_refused_until_new_ones_are_fetched() {
    let sim = onchain(FACE, EV, (3, 2)).await;
    let mut gw = Gateway::new(&sim, key(7)).await;
    sim.advance_blocks(PARAMS_EXPIRATION_BLOCKS - 1);
    assert_eq!(gw.pay_and_send(1).await.0, 200, "valid until the expiration block");

    sim.advance_blocks(1);
    let (status, body) = gw.pay_and_send(1).await;
    assert_eq!((status, body.as_str()), (400, "TicketParams expired"));
    let stats = sim.payments();
    assert_eq!(stats.rejected(PaymentRejection::Expired), 1);
    assert_eq!((stats.tickets_received, stats.tickets_credited), (2, 1));

    let mut fresh = Gateway::new(&sim, key(7)).await;
    let block = sim.payments().block;
    assert_eq!(fresh.params().expiration_block, U256::from(block + PARAMS_EXPIRATION_BLOCKS));
    let (status, body) = fresh.pay_and_send(1).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(sim.payments().tickets_credited, 2);
}

#[tokio::test]
async fn an_underpaid_balance_is_refused() {
    let sim = onchain(FACE, EV, (3, 2)).await;
    let mut gw = Gateway::new(&sim, key(7)).await;
    let ev = gw.params().ev();

    // One ticket is enough to start (the check is balance ≥ EV before the job), but the job
    // costs 1024 × 1024 × 3/2 = 1,572,864 wei, more than the ticket was worth.
    let payment = gw.pay(1);
    let (status, body) = gw.send_sized(&payment, 1024).await;
    assert_eq!(status, 200, "{body}");
    let fee = ratio("1572864");
    let expected = signed(ev).checked_sub(&signed(fee)).unwrap();
    assert!(expected.is_negative());
    assert_eq!(sim.payments().balance(gw.address(), MANIFEST), Some(expected));

    // Without new tickets the next job is refused, and nothing is debited.
    let payment = gw.pay(0);
    let (status, body) = gw.send_sized(&payment, 1024).await;
    assert_eq!((status, body.as_str()), (400, "Insufficient balance"));
    assert_eq!(sim.payments().balance(gw.address(), MANIFEST), Some(expected));
    assert_eq!(sim.payments().fees_debited, fee);

    // A sender with no balance at all is refused too.
    let mut newcomer = Gateway::new(&sim, key(8)).await;
    let (status, body) = newcomer.pay_and_send(0).await;
    assert_eq!((status, body.as_str()), (400, "Insufficient balance"));

    // Two more tickets bring the balance back above one EV.
    let payment = gw.pay(2);
    let (status, body) = gw.send_sized(&payment, 1024).await;
    assert_eq!(status, 200, "{body}");
    let three = signed(ev.checked_mul_u64(3).unwrap());
    let expected = three.checked_sub(&signed(fee.checked_mul_u64(2).unwrap())).unwrap();
    let stats = sim.payments();
    assert_eq!(stats.balance(gw.address(), MANIFEST), Some(expected));
    assert_eq!(stats.rejected(PaymentRejection::InsufficientBalance), 2);
    assert_eq!(stats.balance(newcomer.address(), MANIFEST), None);
}

#[tokio::test]
async fn the_orchestrator_bills_its_own_units() {
    let sim = Sim::start(SimConfig {
        eth_address: Some(orchestrator()),
        face_value: FACE,
        ticket_ev: EV,
        models: vec![
            SimModel::new("text-to-image", SD).price(1, 1),
            SimModel::new("llm", "llm-model").price(1, 1),
            SimModel::new("text-to-speech", "tts-model").price(1, 1),
        ],
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let mut gw = Gateway::new(&sim, key(7)).await;
    let ev = signed(gw.params().ev());
    let segment = gw.segment(Some(&gw.signer));
    let cases = [
        // No size: O bills 512 × 512 although the runner makes 1024 × 576.
        ("/text-to-image", json!({ "prompt": "p", "model_id": SD }), MANIFEST, 262_144u64),
        (
            "/llm",
            json!({ "model": "llm-model", "max_tokens": 100,
                    "messages": [{ "role": "user", "content": "hi" }] }),
            "33_llm-model",
            100,
        ),
        // 1000 per character (5 here, in 6 bytes).
        (
            "/text-to-speech",
            json!({ "model_id": "tts-model", "text": "héllo" }),
            "36_tts-model",
            5000,
        ),
    ];
    for (path, body, manifest, units) in cases {
        let payment = payment_header_value(&gw.pay(1));
        let (status, text) = gw.post_json(path, &payment, &segment, &body).await;
        assert_eq!(status, 200, "{path}: {text}");
        let fee = signed(Ratio::from_u64(units));
        let balance = sim.payments().balance(gw.address(), manifest);
        assert_eq!(balance, Some(ev.checked_sub(&fee).unwrap()), "{path}");
    }
    assert_eq!(sim.payments().fees_debited, Ratio::from_u64(262_144 + 100 + 5000));
}

#[tokio::test]
async fn winning_tickets_are_counted() {
    // Face value = EV: winProb is 2^256 − 1, so every ticket wins and is worth its face value.
    let sim = onchain(EV, EV, (3, 2)).await;
    let mut gw = Gateway::new(&sim, key(7)).await;
    assert_eq!(gw.params().win_prob, MAX_WIN_PROB);
    let (status, body) = gw.pay_and_send(3).await;
    assert_eq!(status, 200, "{body}");
    let stats = sim.payments();
    assert_eq!((stats.winning_tickets, stats.tickets_credited), (3, 3));
    assert_eq!(stats.ev_received[&gw.address()], Ratio::from_u64(3 * EV as u64));
}

#[tokio::test]
async fn price_zero_needs_no_tickets_and_off_chain_checks_nothing() {
    let free = onchain(FACE, EV, (0, 1)).await;
    let mut gw = Gateway::new(&free, key(7)).await;
    let wire = gw.info.ticket_params.clone().unwrap();
    assert!(wire.face_value.is_empty() && wire.win_prob.is_empty(), "no payment expected");
    assert_eq!(gw.params().ev(), Ratio::ZERO);
    // Sender and price only: the "no ticket params" path, then no balance check at price 0.
    let (status, body) = gw.pay_and_send(0).await;
    assert_eq!(status, 200, "{body}");
    let stats = free.payments();
    assert_eq!((stats.payments, stats.tickets_received), (1, 0));
    assert_eq!(stats.fees_debited, Ratio::ZERO);
    assert!(stats.rejections.is_empty());
    assert_eq!(stats.fixed_prices[&(gw.address(), MANIFEST.to_owned())], Ratio::ZERO);

    // A header that is not base64 protobuf is a 402, on or off chain.
    let (status, body) = gw.send_raw("%%%", &gw.segment(Some(&gw.signer)), 64).await;
    assert_eq!(status, 402);
    assert!(body.starts_with("base64 decode error"), "{body}");
    assert_eq!(free.payments().rejected(PaymentRejection::Undecodable), 1);

    let offchain = Sim::start(SimConfig {
        models: vec![SimModel::new("text-to-image", SD).price(3, 2)],
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let info = info(&offchain, &key(7)).await;
    assert!(info.ticket_params.is_none());
    let client = Gateway {
        info,
        session: gw.session.clone(),
        signer: key(7),
        http: reqwest::Client::new(),
        base: offchain.url().to_owned(),
    };
    let (status, body) = client.send_raw("", &client.segment(None), 64).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(offchain.payments().payments, 0);
    assert!(offchain.payments().balances.is_empty());
}
