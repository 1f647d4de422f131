//! A BYOC client that signs and pays as go-livepeer's gateway does (byoc/job_gateway.go,
//! byoc/payment.go), for the simulator's BYOC tests.
#![allow(dead_code, reason = "each test file uses part of it")]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use livepeer_pm::{
    Address, ExpirationParams, LocalSigner, SenderSession, TicketParams, build_payment,
    payment_header_value,
};
use livepeer_proto::net;
use livepeer_sim::{Sim, SimByoc, SimConfig};
use serde_json::{Value, json};

/// Face value and ticket EV: one ticket in 1000 wins, each worth 1000 wei.
pub(crate) const FACE: u128 = 1_000_000;
pub(crate) const EV: u128 = 1_000;

pub(crate) fn orchestrator() -> Address {
    "0x73AEd7b5dEb30222fa896f399d46cC99c7BEe57F".parse().unwrap()
}

pub(crate) fn key(byte: u8) -> LocalSigner {
    LocalSigner::from_bytes(&[byte; 32]).unwrap()
}

pub(crate) fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// An on-chain simulator with these capabilities.
pub(crate) async fn onchain(byoc: Vec<SimByoc>) -> Sim {
    Sim::start(SimConfig {
        eth_address: Some(orchestrator()),
        face_value: FACE,
        ticket_ev: EV,
        byoc,
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

/// A gateway key and an HTTP client.
pub(crate) struct Client {
    pub(crate) signer: LocalSigner,
    pub(crate) http: reqwest::Client,
    pub(crate) base: String,
}

impl Client {
    pub(crate) fn new(sim: &Sim, signer: LocalSigner) -> Self {
        Self { signer, http: reqwest::Client::new(), base: sim.url().to_owned() }
    }

    pub(crate) fn address(&self) -> Address {
        self.signer.address()
    }

    /// `0x` hex of `eth_sign(text)` by `by`.
    pub(crate) fn sig_by(&self, by: &LocalSigner, text: &str) -> String {
        format!("0x{}", hex(&by.eth_sign(text.as_bytes()).unwrap().0))
    }

    /// `Livepeer-Eth-Address`: base64 JSON `{addr, sig}` with `sig = eth_sign(addr)`.
    pub(crate) fn sender_header(&self) -> String {
        self.sender_header_signed_by(&self.signer)
    }

    pub(crate) fn sender_header_signed_by(&self, by: &LocalSigner) -> String {
        let addr = self.address().to_checksum(None);
        let sig = self.sig_by(by, &addr);
        b64(json!({ "addr": addr, "sig": sig }).to_string().as_bytes())
    }

    pub(crate) async fn token_with(&self, eth: Option<&str>, cap: Option<&str>) -> (u16, String) {
        let mut req = self.http.get(format!("{}/process/token", self.base));
        if let Some(eth) = eth {
            req = req.header("Livepeer-Eth-Address", eth);
        }
        if let Some(cap) = cap {
            req = req.header("Livepeer-Capability", cap);
        }
        let resp = req.send().await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    pub(crate) async fn token(&self, cap: &str) -> (u16, String) {
        self.token_with(Some(&self.sender_header()), Some(cap)).await
    }

    /// The JobRequest JSON, signed: `sig = eth_sign(request ‖ parameters)`.
    pub(crate) fn job_value(
        &self,
        cap: &str,
        request: &str,
        parameters: &str,
        timeout: i64,
    ) -> Value {
        let sig = self.sig_by(&self.signer, &format!("{request}{parameters}"));
        json!({
            "id": "job-1",
            "request": request,
            "parameters": parameters,
            "capability": cap,
            "sender": self.address().to_checksum(None),
            "sig": sig,
            "timeout_seconds": timeout,
        })
    }

    /// The `Livepeer` header value of a signed job.
    pub(crate) fn job(&self, cap: &str, request: &str, parameters: &str, timeout: i64) -> String {
        b64(self.job_value(cap, request, parameters, timeout).to_string().as_bytes())
    }

    /// A fresh token's params and price, as a payment session and the expected price.
    pub(crate) async fn session(&self, cap: &str) -> (SenderSession, net::PriceInfo) {
        let (status, token) = self.token(cap).await;
        assert_eq!(status, 200, "{token}");
        let token: Value = serde_json::from_str(&token).unwrap();
        let tp = &token["ticket_params"];
        let bytes = |v: &Value| v.as_str().map(|s| STANDARD.decode(s).unwrap()).unwrap_or_default();
        let exp = &tp["expiration_params"];
        let wire = net::TicketParams {
            recipient: bytes(&tp["recipient"]),
            face_value: bytes(&tp["face_value"]),
            win_prob: bytes(&tp["win_prob"]),
            recipient_rand_hash: bytes(&tp["recipient_rand_hash"]),
            seed: bytes(&tp["seed"]),
            expiration_block: bytes(&tp["expiration_block"]),
            expiration_params: Some(net::TicketExpirationParams {
                creation_round: exp["creation_round"].as_i64().unwrap_or(0),
                creation_round_block_hash: bytes(&exp["creation_round_block_hash"]),
            }),
        };
        let params = TicketParams::from_proto(&wire).unwrap();
        let session = SenderSession::new(params, params.expiration_or(ExpirationParams::default()));
        let price = net::PriceInfo {
            price_per_unit: token["price"]["pricePerUnit"].as_i64().unwrap_or(0),
            pixels_per_unit: token["price"]["pixelsPerUnit"].as_i64().unwrap_or(0),
            ..Default::default()
        };
        (session, price)
    }

    /// `Livepeer-Payment` with `n` tickets on a fresh token for `cap` (byoc/payment.go).
    pub(crate) async fn payment_from_token(&mut self, cap: &str, n: u32) -> String {
        let (mut session, price) = self.session(cap).await;
        let batch = session.create_batch(&self.signer, n).unwrap();
        payment_header_value(&build_payment(self.address(), &price, Some(&batch)).unwrap())
    }

    /// A one-ticket payment whose ticket signature is spoiled.
    pub(crate) async fn forged_payment(&self, cap: &str) -> String {
        let (mut session, price) = self.session(cap).await;
        let batch = session.create_batch(&self.signer, 1).unwrap();
        let mut payment = build_payment(self.address(), &price, Some(&batch)).unwrap();
        payment.ticket_sender_params[0].sig[10] ^= 0x55;
        payment_header_value(&payment)
    }

    /// `POST {sim}{path}` with a `Livepeer` header, an optional payment, and a body.
    pub(crate) async fn post(
        &self,
        path: &str,
        job: &str,
        payment: Option<&str>,
        content_type: &str,
        body: Vec<u8>,
    ) -> reqwest::Response {
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("Livepeer", job)
            .header("Content-Type", content_type)
            .body(body);
        if let Some(p) = payment {
            req = req.header("Livepeer-Payment", p);
        }
        req.send().await.unwrap()
    }
}
