//! What an on-chain go-livepeer orchestrator does with money: it issues ticket params bound to
//! one gateway and one price (pm/recipient.go `TicketParams`), checks every ticket it is paid
//! with (core/orchestrator.go `ProcessPayment`, pm/recipient.go `ReceiveTicket`,
//! pm/validator.go `ValidateTicket`), keeps a credit balance per (sender, manifest id) and
//! refuses work when that balance is below one ticket's EV (PAYMENTS.md §3.6, §4, §5.4–5.5;
//! PROTOCOL.md §4.3, §4.6, §4.7).
//!
//! Everything is reachable from any route through [`Payments`], so `/payment`, live and BYOC
//! routes can reuse it: [`Payments::check_segment`], then [`Payments::admit`] before the work
//! and [`Payments::debit`] after it. An off-chain simulator (no ETH address) issues no params,
//! skips every check and keeps no balances, as go-livepeer does without a ticket recipient.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

use http::StatusCode;
use livepeer_pm::{
    Address, ExpirationParams, MAX_SENDER_NONCES, PaymentError, Ratio, RecipientRandInputs,
    SignedRatio, Ticket, TicketParams, U256, flatten_segment, is_winning, keccak256,
    orchestrator_win_prob, price_per_unit, recipient_rand_hash, recover_eth_signer, unit_fee,
};
use livepeer_proto::net;

/// Blocks for which issued params stay valid (go-livepeer `paramsExpirationBlock`).
pub const PARAMS_EXPIRATION_BLOCKS: u64 = 40;
/// The simulated L1 block a simulator starts at. Any value works; a non-zero one keeps
/// expiration blocks from looking like "unset" to a gateway.
const FIRST_BLOCK: u64 = 1_000;
/// The round the simulated chain is in, for the expiration params (auxData) of every ticket.
const CREATION_ROUND: i64 = 1;

/// Why a payment (or the request carrying it) was refused, for [`PaymentStats::rejections`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PaymentRejection {
    /// `Livepeer-Payment` is missing or not base64 protobuf (402).
    Undecodable,
    /// `Livepeer-Segment` is not signed by `Payment.sender` (403 `ErrSegSig`).
    SegmentSignature,
    /// Ticket params without a sender (400 `Could not find Sender for payment`).
    MissingSender,
    /// `expected_price` missing or with `pixelsPerUnit` 0 (400 `invalid expected price sent
    /// with payment`).
    InvalidExpectedPrice,
    /// The tickets name another recipient (400 `invalid ticket recipient`).
    InvalidRecipient,
    /// The sender is the zero address (400 `invalid ticket sender`).
    InvalidSender,
    /// The echoed params, sender or price are not what the params were issued for (400
    /// `invalid recipientRand for ticket recipientRandHash`).
    InvalidRecipientRand,
    /// A ticket signature is not the sender's (400 `invalid ticket signature`).
    InvalidSignature,
    /// A nonce was already used with these params (400 `invalid ticket senderNonce: already
    /// seen`).
    NonceSeen,
    /// More than 600 nonces with these params (400 `invalid ticket senderNonce: too many
    /// values`).
    TooManyNonces,
    /// The params' expiration block has been reached (400 `TicketParams expired`).
    Expired,
    /// The balance is below one ticket's EV (400 `Insufficient balance`).
    InsufficientBalance,
    /// Exact arithmetic overflowed 512 bits (500; not reachable with real values).
    Arithmetic,
}

/// What the simulator received and charged, for tests: a snapshot from [`crate::Sim::payments`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PaymentStats {
    /// The simulated L1 block now; params expire when it reaches their expiration block.
    pub block: u64,
    /// Payments processed by an on-chain simulator, with or without tickets.
    pub payments: u64,
    /// Tickets checked (every ticket up to the first fatal error of its payment).
    pub tickets_received: u64,
    /// Tickets whose EV was credited.
    pub tickets_credited: u64,
    /// Winning tickets. Like go-livepeer, a winner still counts (and would be redeemed) when a
    /// nonce or expiry error keeps it from being credited.
    pub winning_tickets: u64,
    /// EV credited, per sender.
    pub ev_received: BTreeMap<Address, Ratio>,
    /// Fees debited, all senders together.
    pub fees_debited: Ratio,
    /// Credit per (sender, manifest id): EV credited minus fees debited; negative when a job
    /// cost more than was prepaid.
    pub balances: BTreeMap<(Address, String), SignedRatio>,
    /// The price of the first payment per (sender, manifest id): go-livepeer's "fixed price",
    /// which it quotes to that sender for that manifest from then on (0 when the first payment
    /// carried no tickets).
    pub fixed_prices: BTreeMap<(Address, String), Ratio>,
    /// Nonces recorded (distinct per set of params).
    pub nonces_seen: u64,
    /// Refused requests, by reason.
    pub rejections: BTreeMap<PaymentRejection, u64>,
}

// === impl PaymentStats ===

impl PaymentStats {
    /// The balance of `sender` for `manifest_id`, if it has one.
    pub fn balance(&self, sender: Address, manifest_id: &str) -> Option<SignedRatio> {
        self.balances.get(&(sender, manifest_id.to_owned())).copied()
    }

    /// How many requests were refused for `reason`.
    pub fn rejected(&self, reason: PaymentRejection) -> u64 {
        self.rejections.get(&reason).copied().unwrap_or(0)
    }
}

/// A refused payment: the reason, and the status and message go-livepeer answers with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refused {
    pub(crate) reason: PaymentRejection,
    pub(crate) status: StatusCode,
    pub(crate) message: String,
}

impl Refused {
    fn new(reason: PaymentRejection, status: StatusCode, message: impl Into<String>) -> Self {
        Self { reason, status, message: message.into() }
    }

    fn bad_request(reason: PaymentRejection, message: impl Into<String>) -> Self {
        Self::new(reason, StatusCode::BAD_REQUEST, message)
    }

    fn arithmetic() -> Self {
        let status = StatusCode::INTERNAL_SERVER_ERROR;
        Self::new(PaymentRejection::Arithmetic, status, "balance arithmetic overflow")
    }

    fn recipient_rand() -> Self {
        Self::bad_request(
            PaymentRejection::InvalidRecipientRand,
            "invalid recipientRand for ticket recipientRandHash",
        )
    }
}

/// An admitted payment: whose balance a job's fee is debited from, at which price.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Charge {
    sender: Address,
    manifest_id: String,
    /// `Payment.expected_price` as a rational; `None` off-chain or when the payment has no
    /// usable price (go-livepeer would divide by zero there; nothing is debited instead).
    price: Option<Ratio>,
}

impl Charge {
    /// A charge at a price the orchestrator sets itself rather than one taken from a payment:
    /// BYOC debits the job price of (sender, capability), whatever the tickets said.
    pub(crate) fn new(sender: Address, manifest_id: &str, price: Option<Ratio>) -> Self {
        Self { sender, manifest_id: manifest_id.to_owned(), price }
    }

    /// `units × price`, the fee a debit of `units` takes (zero without a price).
    pub(crate) fn fee(&self, units: u64) -> Result<Ratio, Refused> {
        match &self.price {
            Some(price) => unit_fee(units, price).map_err(|_| Refused::arithmetic()),
            None => Ok(Ratio::ZERO),
        }
    }
}

/// The nonces seen with one set of params (go-livepeer keys them by `recipientRand`, which
/// matches `recipientRandHash` one to one once the hash has been checked).
#[derive(Debug)]
struct Nonces {
    expiration_block: U256,
    seen: HashSet<u32>,
}

#[derive(Debug, Default)]
struct Ledger {
    stats: PaymentStats,
    nonces: HashMap<livepeer_pm::B256, Nonces>,
    /// EV credited by the payment being processed (reset at its start), so a route can tell
    /// what one payment brought in.
    credited_now: Ratio,
}

impl Ledger {
    fn refuse(&mut self, refused: Refused) -> Refused {
        *self.stats.rejections.entry(refused.reason).or_insert(0) += 1;
        refused
    }

    fn credit(&mut self, sender: Address, manifest_id: &str, ev: &Ratio) -> Result<(), Refused> {
        let key = (sender, manifest_id.to_owned());
        let balance = self.stats.balances.get(&key).copied().unwrap_or_default();
        let balance =
            balance.checked_add(&SignedRatio::from(*ev)).map_err(|_| Refused::arithmetic())?;
        let total = self.stats.ev_received.get(&sender).copied().unwrap_or_default();
        let total = total.checked_add(ev).map_err(|_| Refused::arithmetic())?;
        let now = self.credited_now.checked_add(ev).map_err(|_| Refused::arithmetic())?;
        self.stats.balances.insert(key, balance);
        self.stats.ev_received.insert(sender, total);
        self.stats.tickets_credited += 1;
        self.credited_now = now;
        Ok(())
    }
}

/// Ticket issuing and checking of one simulator.
#[derive(Debug)]
pub(crate) struct Payments {
    /// The ETH address tickets must name; `None` is an off-chain orchestrator.
    recipient: Option<Address>,
    /// Key of the `recipientRand` HMAC, random per simulator as go-livepeer's is per process:
    /// params issued before a restart of the process would not verify afterwards.
    secret: [u8; 32],
    face_value: U256,
    ticket_ev: U256,
    expiration: ExpirationParams,
    ledger: Mutex<Ledger>,
}

// === impl Payments ===

impl Payments {
    pub(crate) fn new(recipient: Option<Address>, face_value: u128, ticket_ev: u128) -> Self {
        let ledger = Ledger {
            stats: PaymentStats { block: FIRST_BLOCK, ..PaymentStats::default() },
            ..Ledger::default()
        };
        Self {
            recipient,
            secret: rand::random(),
            face_value: U256::from(face_value),
            ticket_ev: U256::from(ticket_ev),
            expiration: ExpirationParams::new(CREATION_ROUND, keccak256(b"round 1")),
            ledger: Mutex::new(ledger),
        }
    }

    /// The ledger, even after a panic elsewhere poisoned it: its data stays consistent because
    /// every update is computed before anything is written.
    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn stats(&self) -> PaymentStats {
        self.ledger().stats.clone()
    }

    /// Whether it checks payments (an on-chain orchestrator, with a ticket recipient).
    pub(crate) fn on_chain(&self) -> bool {
        self.recipient.is_some()
    }

    /// The credit of (sender, `manifest_id`), zero when it has none (go-livepeer's `Balance`
    /// returning nil, which every caller reads as zero).
    pub(crate) fn balance(&self, sender: Address, manifest_id: &str) -> SignedRatio {
        self.ledger()
            .stats
            .balances
            .get(&(sender, manifest_id.to_owned()))
            .copied()
            .unwrap_or_default()
    }

    /// [`Payments::receive`], also saying how much EV this payment credited (zero when it was
    /// refused before any ticket was credited).
    pub(crate) fn receive_counted(
        &self,
        payment: &net::Payment,
        manifest_id: &str,
    ) -> (Result<Charge, Refused>, Ratio) {
        self.process_payment_counted(payment, manifest_id, false)
    }

    /// Moves the simulated chain on; nonces of params that expired are forgotten, as
    /// go-livepeer's cleanup loop does on every new L1 block.
    pub(crate) fn advance_blocks(&self, n: u64) {
        let mut ledger = self.ledger();
        let block = ledger.stats.block.saturating_add(n);
        ledger.stats.block = block;
        ledger.nonces.retain(|_, n| n.expiration_block > U256::from(block));
    }

    /// Counts a refusal made outside this module (an undecodable header).
    pub(crate) fn record_rejection(&self, reason: PaymentRejection) {
        *self.ledger().stats.rejections.entry(reason).or_insert(0) += 1;
    }

    /// The ticket params a GetOrchestrator answer carries for `sender` at `price`
    /// (go-livepeer `TicketParams`): a random seed, params valid for 40 blocks, face value and
    /// win probability 0 when the price is 0, and `recipientRandHash` committing to an HMAC of
    /// all of it. `None` off-chain. The error is go-livepeer's, for a gRPC status.
    pub(crate) fn ticket_params(
        &self,
        sender: Address,
        price: &net::PriceInfo,
    ) -> Result<Option<net::TicketParams>, String> {
        let Some(recipient) = self.recipient else { return Ok(None) };
        let price = price_per_unit(price).map_err(|e| e.to_string())?;
        let (face_value, win_prob) = if price.is_zero() {
            (U256::ZERO, U256::ZERO)
        } else {
            if self.face_value < self.ticket_ev {
                return Err("insufficient sender reserve".to_owned());
            }
            let win_prob = orchestrator_win_prob(&self.face_value, &self.ticket_ev)
                .ok_or_else(|| "insufficient sender reserve".to_owned())?;
            (self.face_value, win_prob)
        };
        let block = self.ledger().stats.block;
        let inputs = RecipientRandInputs {
            seed: U256::from_be_bytes(rand::random::<[u8; 32]>()),
            sender,
            face_value,
            win_prob,
            expiration_block: U256::from(block + PARAMS_EXPIRATION_BLOCKS),
            price,
            expiration: self.expiration,
        };
        let params = TicketParams {
            recipient,
            face_value,
            win_prob,
            recipient_rand_hash: recipient_rand_hash(&inputs.recipient_rand(&self.secret)),
            seed: inputs.seed,
            expiration_block: inputs.expiration_block,
            expiration_params: Some(self.expiration),
        };
        Ok(Some(net::TicketParams {
            expiration_params: Some(self.expiration.to_proto()),
            ..params.to_payment_proto()
        }))
    }

    /// go-livepeer's `verifySegCreds` signature step: an on-chain orchestrator checks
    /// `SegData.sig` as `eth_sign(flatten)` by `Payment.sender`. A payment without a sender
    /// (an off-chain gateway) is checked against the zero address, which no signature matches,
    /// so an on-chain orchestrator refuses off-chain gateways here (PROTOCOL.md §1.4, §4.6).
    pub(crate) fn check_segment(&self, sender: Address, seg: &net::SegData) -> Result<(), Refused> {
        if self.recipient.is_none() {
            return Ok(());
        }
        let names = profile_names(seg);
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let hash = bytes_to_hash(&seg.hash);
        let flat = flatten_segment(
            &String::from_utf8_lossy(&seg.manifest_id),
            seg.seq.unsigned_abs(),
            &hash,
            &names,
        );
        match recover_eth_signer(&flat, &seg.sig) {
            Ok(signer) if signer == sender && !sender.is_zero() => Ok(()),
            _ => Err(self.ledger().refuse(Refused::new(
                PaymentRejection::SegmentSignature,
                StatusCode::FORBIDDEN,
                "ErrSegSig",
            ))),
        }
    }

    /// `ProcessPayment` and then the balance check, as an AI route runs them before the work:
    /// tickets are checked and credited to (sender, `manifest_id`), and with a price above 0
    /// the balance must reach one ticket's EV. The [`Charge`] says what to debit afterwards.
    pub(crate) fn admit(
        &self,
        payment: &net::Payment,
        manifest_id: &str,
    ) -> Result<Charge, Refused> {
        self.process_payment(payment, manifest_id, true)
    }

    /// `ProcessPayment` alone, as the `/payment` route runs it: tickets are checked and
    /// credited to (sender, `manifest_id`); no balance is required (PROTOCOL.md §8.5).
    pub(crate) fn receive(
        &self,
        payment: &net::Payment,
        manifest_id: &str,
    ) -> Result<Charge, Refused> {
        self.process_payment(payment, manifest_id, false)
    }

    /// [`Payments::admit`] and [`Payments::receive`]: the same steps under one lock, with the
    /// balance check only when `require_balance`.
    fn process_payment(
        &self,
        payment: &net::Payment,
        manifest_id: &str,
        require_balance: bool,
    ) -> Result<Charge, Refused> {
        self.process_payment_counted(payment, manifest_id, require_balance).0
    }

    /// [`Payments::process_payment`] and the EV it credited, read under the same lock.
    fn process_payment_counted(
        &self,
        payment: &net::Payment,
        manifest_id: &str,
        require_balance: bool,
    ) -> (Result<Charge, Refused>, Ratio) {
        let mut ledger = self.ledger();
        ledger.credited_now = Ratio::ZERO;
        let result = self.process_locked(&mut ledger, payment, manifest_id, require_balance);
        (result, ledger.credited_now)
    }

    fn process_locked(
        &self,
        ledger: &mut Ledger,
        payment: &net::Payment,
        manifest_id: &str,
        require_balance: bool,
    ) -> Result<Charge, Refused> {
        let sender = bytes_to_address(&payment.sender);
        let Some(recipient) = self.recipient else {
            return Ok(Charge { sender, manifest_id: manifest_id.to_owned(), price: None });
        };
        ledger.stats.payments += 1;
        if let Err(refused) = self.process(ledger, recipient, sender, payment, manifest_id) {
            return Err(ledger.refuse(refused));
        }
        let price = payment.expected_price.as_ref();
        if require_balance && price.is_some_and(|p| p.price_per_unit > 0) {
            let balance = ledger.stats.balances.get(&(sender, manifest_id.to_owned()));
            let ev = SignedRatio::from(Ratio::from_u256(self.ticket_ev));
            if balance.is_none_or(|b| *b < ev) {
                let refused = Refused::bad_request(
                    PaymentRejection::InsufficientBalance,
                    "Insufficient balance",
                );
                return Err(ledger.refuse(refused));
            }
        }
        let price = price.and_then(|p| price_per_unit(p).ok());
        Ok(Charge { sender, manifest_id: manifest_id.to_owned(), price })
    }

    /// The live payment processor's step (go-livepeer `LV2VPaymentProcessor` on the
    /// orchestrator): `units × price` must be covered by the stream's balance, and is then
    /// debited. A refusal means the stream must stop.
    pub(crate) fn debit_covered(&self, charge: &Charge, units: u64) -> Result<(), Refused> {
        let Some(price) = &charge.price else { return Ok(()) };
        let fee = unit_fee(units, price).map_err(|_| Refused::arithmetic())?;
        {
            let mut ledger = self.ledger();
            let key = (charge.sender, charge.manifest_id.clone());
            let balance = ledger.stats.balances.get(&key).copied().unwrap_or_default();
            if balance < SignedRatio::from(fee) {
                let refused = Refused::bad_request(
                    PaymentRejection::InsufficientBalance,
                    format!("insufficient balance, mid={}", charge.manifest_id),
                );
                return Err(ledger.refuse(refused));
            }
        }
        self.debit(charge, units)
    }

    /// Debits `units × price` of an admitted payment, as go-livepeer's `DebitFees` does once
    /// the job has succeeded. Off-chain, nothing is kept.
    pub(crate) fn debit(&self, charge: &Charge, units: u64) -> Result<(), Refused> {
        let Some(price) = &charge.price else { return Ok(()) };
        let fee = unit_fee(units, price).map_err(|_| Refused::arithmetic())?;
        let mut ledger = self.ledger();
        let key = (charge.sender, charge.manifest_id.clone());
        let balance = ledger.stats.balances.get(&key).copied().unwrap_or_default();
        let balance =
            balance.checked_sub(&SignedRatio::from(fee)).map_err(|_| Refused::arithmetic())?;
        let total =
            ledger.stats.fees_debited.checked_add(&fee).map_err(|_| Refused::arithmetic())?;
        ledger.stats.balances.insert(key, balance);
        ledger.stats.fees_debited = total;
        Ok(())
    }

    /// go-livepeer's `ProcessPayment` for an active orchestrator at `recipient`.
    ///
    /// Fatal errors (recipient, sender, recipientRand) end it at once; later tickets are not
    /// looked at. A non-fatal one (signature, nonce, expiry) stops the crediting of that and
    /// every later ticket, while their nonces are still recorded and winners still counted,
    /// and the payment fails with the last such error (`receiveErr` in Go).
    fn process(
        &self,
        ledger: &mut Ledger,
        recipient: Address,
        sender: Address,
        payment: &net::Payment,
        manifest_id: &str,
    ) -> Result<(), Refused> {
        let key = (sender, manifest_id.to_owned());
        if payment.sender.is_empty() && payment.ticket_params.is_some() {
            return Err(Refused::bad_request(
                PaymentRejection::MissingSender,
                "Could not find Sender for payment: no sender in payment with ticket params",
            ));
        }
        let Some(wire) = &payment.ticket_params else {
            // No tickets at all: the price-0 path, which fixes the session price at 0.
            ledger.stats.fixed_prices.entry(key).or_insert(Ratio::ZERO);
            return Ok(());
        };
        let price = expected_price(payment)?;
        ledger.stats.fixed_prices.entry(key).or_insert(price);
        // go-livepeer reads these leniently (`BytesToAddress`, `SetBytes`); a value no real
        // orchestrator issues then fails the recipient or recipientRand check, so the same
        // errors are given here for whatever does not parse.
        let params = TicketParams::from_proto(wire).map_err(|e| match e {
            PaymentError::InvalidField("recipient") => invalid_recipient(),
            _ => Refused::recipient_rand(),
        })?;
        let expiration = payment
            .expiration_params
            .as_ref()
            .map(ExpirationParams::from_proto)
            .transpose()
            .map_err(|_| Refused::recipient_rand())?
            .unwrap_or_default();
        let rand = RecipientRandInputs {
            seed: params.seed,
            sender,
            face_value: params.face_value,
            win_prob: params.win_prob,
            expiration_block: params.expiration_block,
            price,
            expiration,
        }
        .recipient_rand(&self.secret);
        let block = U256::from(ledger.stats.block);
        let mut receive_err: Option<Refused> = None;
        for tsp in &payment.ticket_sender_params {
            ledger.stats.tickets_received += 1;
            let ticket = params.ticket(sender, tsp.sender_nonce, &expiration);
            check_ticket(&ticket, recipient, &rand)?;
            let err = receive_error(ledger, &params, &ticket, &tsp.sig, &rand, block);
            if err.is_some() {
                receive_err = err;
            }
            if receive_err.is_none() {
                ledger.credit(sender, manifest_id, &ticket.ev())?;
            }
        }
        receive_err.map_or(Ok(()), Err)
    }
}

/// The payment's `expected_price`, which fixes the session price; tickets priced otherwise fail
/// the recipientRand check.
fn expected_price(payment: &net::Payment) -> Result<Ratio, Refused> {
    match &payment.expected_price {
        None => Err("expected price is nil".to_owned()),
        Some(p) => price_per_unit(p).map_err(|e| match e {
            livepeer_pm::FeeError::ZeroPixelsPerUnit => "pixels per unit is 0".to_owned(),
            other => other.to_string(),
        }),
    }
    .map_err(|e| {
        Refused::bad_request(
            PaymentRejection::InvalidExpectedPrice,
            format!("invalid expected price sent with payment err={e:?}"),
        )
    })
}

/// `ValidateTicket`'s fatal checks, in its order: the recipient, the sender, recipientRand.
fn check_ticket(ticket: &Ticket, recipient: Address, rand: &U256) -> Result<(), Refused> {
    if ticket.recipient != recipient {
        return Err(invalid_recipient());
    }
    if ticket.sender.is_zero() {
        return Err(Refused::bad_request(PaymentRejection::InvalidSender, "invalid ticket sender"));
    }
    if recipient_rand_hash(rand) != ticket.recipient_rand_hash {
        return Err(Refused::recipient_rand());
    }
    Ok(())
}

/// The non-fatal error of one ticket that passed [`check_ticket`], if any: its signature, else
/// its nonce (recorded either way), else its expiry. A winning ticket with a good signature is
/// counted even if it fails later.
fn receive_error(
    ledger: &mut Ledger,
    params: &TicketParams,
    ticket: &Ticket,
    sig: &[u8],
    rand: &U256,
    block: U256,
) -> Option<Refused> {
    if !ticket.verify_signature(sig) {
        return Some(Refused::bad_request(
            PaymentRejection::InvalidSignature,
            "invalid ticket signature",
        ));
    }
    if is_winning(sig, rand, &ticket.win_prob) {
        ledger.stats.winning_tickets += 1;
    }
    record_nonce(ledger, params, ticket.sender, ticket.sender_nonce).err().or_else(|| {
        (params.expiration_block <= block)
            .then(|| Refused::bad_request(PaymentRejection::Expired, "TicketParams expired"))
    })
}

fn invalid_recipient() -> Refused {
    Refused::bad_request(PaymentRejection::InvalidRecipient, "invalid ticket recipient")
}

/// go-livepeer's `updateSenderNonce`: a nonce may be used once per set of params, and at most
/// [`MAX_SENDER_NONCES`] nonces per set.
fn record_nonce(
    ledger: &mut Ledger,
    params: &TicketParams,
    sender: Address,
    nonce: u32,
) -> Result<(), Refused> {
    let entry = ledger.nonces.entry(params.recipient_rand_hash).or_insert_with(|| Nonces {
        expiration_block: params.expiration_block,
        seen: HashSet::new(),
    });
    let who = sender.to_checksum(None);
    if entry.seen.contains(&nonce) {
        return Err(Refused::bad_request(
            PaymentRejection::NonceSeen,
            format!("invalid ticket senderNonce: already seen sender={who} nonce={nonce}"),
        ));
    }
    if entry.seen.len() >= MAX_SENDER_NONCES as usize {
        return Err(Refused::bad_request(
            PaymentRejection::TooManyNonces,
            format!("invalid ticket senderNonce: too many values sender={who} nonce={nonce}"),
        ));
    }
    entry.seen.insert(nonce);
    ledger.stats.nonces_seen += 1;
    Ok(())
}

/// Go's `common.BytesToAddress`: the last 20 bytes, left-padded with zeros; empty is the zero
/// address, which is what an off-chain gateway's empty payment yields.
pub(crate) fn bytes_to_address(bytes: &[u8]) -> Address {
    let mut out = [0u8; 20];
    let take = bytes.len().min(20);
    out[20 - take..].copy_from_slice(&bytes[bytes.len() - take..]);
    Address::from(out)
}

/// Go's `common.BytesToHash`, for a segment hash of the wrong length.
pub(crate) fn bytes_to_hash(bytes: &[u8]) -> livepeer_pm::B256 {
    if bytes.is_empty() {
        // An empty hash field is all zeros in Go too, but gateways always send the hash of
        // the empty segment; keep the zero value so a mismatch shows as a bad signature.
        return livepeer_pm::B256::ZERO;
    }
    let mut out = [0u8; 32];
    let take = bytes.len().min(32);
    out[32 - take..].copy_from_slice(&bytes[bytes.len() - take..]);
    livepeer_pm::B256::from(out)
}

/// The profile names the orchestrator checks the signature over: `fullProfiles3`, else `2`,
/// else the first list, with an empty name replaced by the generated `net_<w>x<h>_<bitrate>`
/// before the check, as go-livepeer does (server/segment_rpc.go `makeFfmpegVideoProfiles`,
/// then `SegTranscodingMetadata.Flatten`). A gateway that signed the empty name is refused.
fn profile_names(seg: &net::SegData) -> Vec<String> {
    let list = [&seg.full_profiles3, &seg.full_profiles2, &seg.full_profiles]
        .into_iter()
        .find(|l| !l.is_empty());
    let name = |p: &net::VideoProfile| match p.name.is_empty() {
        true => format!("net_{}x{}_{}", p.width, p.height, p.bitrate),
        false => p.name.clone(),
    };
    list.map(|l| l.iter().map(name).collect()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_byte_conversions() {
        assert_eq!(bytes_to_address(&[]), Address::ZERO);
        let mut long = vec![9u8; 4];
        long.extend_from_slice(&[1u8; 20]);
        assert_eq!(bytes_to_address(&long), Address::repeat_byte(1));
        assert_eq!(bytes_to_address(&[5]).as_slice()[19], 5);
        assert_eq!(bytes_to_hash(&[7]).as_slice()[31], 7);
    }

    #[test]
    fn off_chain_issues_nothing_and_charges_nothing() {
        let p = Payments::new(None, 100, 1);
        let price = net::PriceInfo { price_per_unit: 1, pixels_per_unit: 1, ..Default::default() };
        assert_eq!(p.ticket_params(Address::ZERO, &price), Ok(None));
        let charge = p.admit(&net::Payment::default(), "27_m").unwrap();
        p.debit(&charge, 1000).unwrap();
        assert_eq!(p.stats().fees_debited, Ratio::ZERO);
        assert!(p.stats().balances.is_empty());
    }

    #[test]
    fn nonces_are_single_use_capped_and_forgotten_when_params_expire() {
        let p = Payments::new(Some(Address::repeat_byte(1)), 100, 1);
        let sender: Address = "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23".parse().unwrap();
        let params = TicketParams {
            recipient: Address::repeat_byte(1),
            face_value: U256::from(100u64),
            win_prob: U256::from(1u64),
            recipient_rand_hash: livepeer_pm::B256::repeat_byte(3),
            seed: U256::from(7u64),
            expiration_block: U256::from(FIRST_BLOCK + 2),
            expiration_params: None,
        };
        let mut ledger = p.ledger();
        for nonce in 1..=MAX_SENDER_NONCES {
            record_nonce(&mut ledger, &params, sender, nonce).unwrap();
        }
        let seen = record_nonce(&mut ledger, &params, sender, 1).unwrap_err();
        assert_eq!(seen.reason, PaymentRejection::NonceSeen);
        let full = record_nonce(&mut ledger, &params, sender, 601).unwrap_err();
        assert_eq!(full.reason, PaymentRejection::TooManyNonces);
        assert_eq!(
            full.message,
            "invalid ticket senderNonce: too many values \
             sender=0x2c7536E3605D9C16a7a3D7b1898e529396a65c23 nonce=601"
        );
        assert_eq!(ledger.stats.nonces_seen, 600);
        drop(ledger);
        p.advance_blocks(1);
        assert_eq!(p.ledger().nonces.len(), 1, "not expired yet");
        p.advance_blocks(1);
        assert!(p.ledger().nonces.is_empty(), "forgotten at the expiration block");
    }

    #[test]
    fn zero_price_gives_zero_face_value_and_an_ev_above_face_is_refused() {
        let p = Payments::new(Some(Address::repeat_byte(1)), 100, 5);
        let free = net::PriceInfo { price_per_unit: 0, pixels_per_unit: 1, ..Default::default() };
        let params = p.ticket_params(Address::repeat_byte(2), &free).unwrap().unwrap();
        assert!(params.face_value.is_empty() && params.win_prob.is_empty());
        let paid = net::PriceInfo { price_per_unit: 1, ..free };
        let params = p.ticket_params(Address::repeat_byte(2), &paid).unwrap().unwrap();
        assert_eq!(params.face_value, vec![100]);
        let greedy = Payments::new(Some(Address::repeat_byte(1)), 4, 5);
        assert_eq!(
            greedy.ticket_params(Address::ZERO, &paid),
            Err("insufficient sender reserve".to_owned())
        );
    }
}
