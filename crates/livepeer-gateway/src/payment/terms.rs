//! The vocabulary every way of paying shares: the sender's limits, why a payment could not be
//! made, and what became of one. A leaf module, so that the payers beside it and the facade
//! above them import it without importing each other.

use livepeer_pm::U256;

use crate::orchestrator::ClientError;
use crate::orchestrator::price::Price;
use crate::orchestrator::verdict::Failure;

/// Sender limits (go-livepeer's flags and defaults, PAYMENTS.md §5.3).
#[derive(Debug, Clone, Copy)]
pub struct PaymentLimits {
    /// The largest face value accepted is deposit / this (`-depositMultiplier`, at least 1).
    pub deposit_multiplier: u64,
    /// Refuse orchestrators whose ticket EV exceeds this (`-maxTicketEV`, 3000 gwei).
    pub max_ticket_ev: U256,
    /// Refuse payments whose total EV exceeds this (`-maxTotalEV`, 20000 gwei).
    pub max_total_ev: U256,
}

impl PaymentLimits {
    /// go-livepeer's `-maxTicketEV` default: 3000 gwei.
    pub const DEFAULT_MAX_TICKET_EV: u128 = 3_000_000_000_000;
    /// go-livepeer's `-maxTotalEV` default: 20000 gwei.
    pub const DEFAULT_MAX_TOTAL_EV: u128 = 20_000_000_000_000;
}

impl Default for PaymentLimits {
    fn default() -> Self {
        Self {
            deposit_multiplier: 1,
            max_ticket_ev: U256::from(Self::DEFAULT_MAX_TICKET_EV),
            max_total_ev: U256::from(Self::DEFAULT_MAX_TOTAL_EV),
        }
    }
}

/// The prices one job may be paid at: the operator's cap for it, and twice the price its
/// orchestrator was selected at. The price paid is the one the orchestrator quotes when asked
/// with the job's capabilities, a second answer that selection never saw: an orchestrator
/// could advertise one price and charge another (go-livepeer's orchestrators also floor the
/// prices they advertise to whole wei, where the job's is exact). go-livepeer bounds it by
/// twice the session's initial price (`validatePrice`); the cap is applied to it here too.
#[derive(Debug, Clone, Copy)]
pub struct PriceBounds {
    /// `--max-price-per-unit` / `--max-price-per-capability` for the job, if any.
    pub cap: Option<Price>,
    /// The orchestrator's price for the job in the answer it was selected on.
    pub selected: Price,
}

impl PriceBounds {
    /// Refuses `price` above either bound, with go-livepeer's text for the second.
    pub fn check(&self, price: Price) -> Result<(), PayError> {
        if let Some(cap) = self.cap
            && price > cap
        {
            return Err(PayError::Refused(format!(
                "orchestrator price {price} above the max price {cap}"
            )));
        }
        if price.more_than_double(&self.selected) {
            return Err(PayError::Refused(format!(
                "Orchestrator price has more than doubled, Orchestrator price: {price}, Orchestrator initial price: {}",
                self.selected
            )));
        }
        Ok(())
    }
}

/// Why a payment could not be made. Each is the orchestrator's terms, not the user's fault.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PayError {
    /// Fetching job-priced ticket params failed.
    #[error("fetching ticket params: {0}")]
    Discovery(#[from] ClientError),
    /// The orchestrator's answer carried no ticket params or auth token.
    #[error("orchestrator offers no ticket params for this job")]
    NoTicketParams,
    /// A sender check refused the orchestrator's terms (PAYMENTS.md §5.3).
    #[error("refusing to pay: {0}")]
    Refused(String),
    /// Exact arithmetic or signing failed.
    #[error("payment: {0}")]
    Internal(String),
    /// The remote signer holds enough credit for this payment already (its 482): nothing is
    /// to be sent this time.
    #[error("the balance already covers this payment")]
    NotNeeded,
}

/// What one call is paid for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cost {
    /// Units (pixels, seconds) at the orchestrator's price: AI, live, BYOC.
    Units(u64),
    /// A transcoded segment's estimated output pixels, which go-livepeer pays for with its
    /// 1.02 margin (PROTOCOL.md §6.5).
    EstimatedPixels(u64),
}

impl Cost {
    /// The fee at `per_unit` wei, exact.
    pub fn fee(
        self,
        per_unit: &livepeer_pm::Ratio,
    ) -> Result<livepeer_pm::Ratio, livepeer_pm::FeeError> {
        match self {
            Self::Units(units) => livepeer_pm::unit_fee(units, per_unit),
            Self::EstimatedPixels(pixels) => Ok(livepeer_pm::Ratio::from_u64(pixels)
                .checked_mul(&livepeer_pm::PIXEL_ESTIMATE_MULTIPLIER)?
                .checked_mul(per_unit)?),
        }
    }
}

/// What became of a prepared payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    /// The job was done: the fee is debited.
    Paid,
    /// The orchestrator processed the payment but did not charge (e.g. it rejected the input).
    NotCharged,
    /// Sent, outcome unknown or failed after processing: the credit counts as spent.
    CreditSpent,
    /// The orchestrator refused before processing tickets (busy): credit returns, new tickets
    /// are lost to nobody (their nonces were never seen).
    Refused,
}

impl Settlement {
    /// What became of the payment of a call that failed with `failure`: a busy orchestrator
    /// refuses before it processes tickets, one that rejects the user's input processed them
    /// without charging, one whose result the gateway could not keep did the job and charged
    /// its fee, and any other failure may have spent the credit.
    pub fn after(failure: Failure) -> Self {
        match failure {
            Failure::Busy | Failure::GatewayExhausted => Self::Refused,
            Failure::ResultNotKept => Self::Paid,
            Failure::ClientInput => Self::NotCharged,
            _ => Self::CreditSpent,
        }
    }
}
