//! The gateway's credit with each orchestrator, as a plain state machine (go-livepeer
//! core/accounting.go and server/segment_rpc.go `newBalanceUpdate`/`completeBalanceUpdate`;
//! PAYMENTS.md §5.4).
//!
//! Before a request the gateway *stages* an update: it takes the whole current credit out of
//! the balance (so a concurrent request cannot spend it twice) and computes how many tickets
//! top it up to `max(fee, EV)`. After the request it *completes* the update according to how
//! far the request got. The orchestrator keeps the mirror image of this balance, so the
//! arithmetic must be exact: both sides compare rationals, never floats.

use std::collections::HashMap;

use alloy_primitives::Address;

use crate::ev::{ArithmeticError, Ratio, SignedRatio};

/// Why an update could not be staged or applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BalanceError {
    /// The ticket count does not fit in 32 bits, the width of the nonce space.
    #[error("more tickets needed than fit in a u32")]
    TooManyTickets,
    /// Exact arithmetic failed.
    #[error(transparent)]
    Arithmetic(#[from] ArithmeticError),
}

/// How far the request that carried an update got, which decides what is credited back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UpdateStatus {
    /// The request was never sent: the reserved credit is returned untouched.
    Staged,
    /// The request (and its tickets) went out but no usable answer came back: both the
    /// reserved credit and the new tickets count as spent.
    CreditSpent,
    /// An answer came back: `existing + new − debit` is credited, possibly negative.
    ReceivedChange,
}

/// One staged payment: what was reserved, what the tickets add and what the answer costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BalanceUpdate {
    /// The credit taken out of the balance when staging (negative when in debt).
    pub existing_credit: SignedRatio,
    /// `num_tickets × EV`.
    pub new_credit: Ratio,
    /// Tickets to put in the payment.
    pub num_tickets: u32,
    /// What the answer cost; set by the caller before completing with `ReceivedChange`.
    pub debit: Ratio,
    /// How far the request got; starts as [`UpdateStatus::Staged`].
    pub status: UpdateStatus,
}

impl BalanceUpdate {
    /// An update that reserves nothing and sends no tickets (no price, no sender, or no
    /// balance: go-livepeer stages nothing then).
    pub fn empty() -> Self {
        Self {
            existing_credit: SignedRatio::ZERO,
            new_credit: Ratio::ZERO,
            num_tickets: 0,
            debit: Ratio::ZERO,
            status: UpdateStatus::Staged,
        }
    }

    /// What completing this update credits to the balance.
    pub fn settlement(&self) -> Result<SignedRatio, ArithmeticError> {
        match self.status {
            UpdateStatus::Staged => Ok(self.existing_credit),
            UpdateStatus::CreditSpent => Ok(SignedRatio::ZERO),
            UpdateStatus::ReceivedChange => self
                .existing_credit
                .checked_add(&self.new_credit.into())?
                .checked_sub(&self.debit.into()),
        }
    }
}

/// The credit the orchestrator must hold before a request: the fee, raised to one ticket's EV
/// because the orchestrator insists on at least that much balance.
pub fn min_credit(fee: &Ratio, ev: &Ratio) -> Ratio {
    if ev > fee { *ev } else { *fee }
}

/// `ceil((min_credit − existing) / ev)` tickets, or 0 when `existing ≥ min_credit` (or when the
/// EV is zero, i.e. a free orchestrator, where no number of tickets would add credit).
pub fn tickets_needed(
    min_credit: &Ratio,
    existing: &SignedRatio,
    ev: &Ratio,
) -> Result<u32, BalanceError> {
    let min: SignedRatio = (*min_credit).into();
    if *existing >= min || ev.is_zero() {
        return Ok(0);
    }
    let gap = min.checked_sub(existing)?.magnitude();
    let n = gap.checked_div(ev)?.ceil();
    u32::try_from(&n).map_err(|_| BalanceError::TooManyTickets)
}

/// One `(orchestrator, manifest)` credit balance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Balance {
    amount: SignedRatio,
}

// === impl Balance ===

impl Balance {
    /// A balance holding `amount`.
    pub fn new(amount: SignedRatio) -> Self {
        Self { amount }
    }

    /// The current credit.
    pub fn amount(&self) -> SignedRatio {
        self.amount
    }

    /// Adds `amount` (negative to debit).
    pub fn credit(&mut self, amount: &SignedRatio) -> Result<(), ArithmeticError> {
        self.amount = self.amount.checked_add(amount)?;
        Ok(())
    }

    /// Takes the whole credit out, leaving zero, and returns it.
    pub fn reserve(&mut self) -> SignedRatio {
        std::mem::take(&mut self.amount)
    }

    /// Reserves the credit and computes the tickets that top it up to `min_credit` (go-livepeer
    /// `Balance.StageUpdate`). On error the balance is left unchanged.
    pub fn stage_update(
        &mut self,
        min_credit: &Ratio,
        ev: &Ratio,
    ) -> Result<BalanceUpdate, BalanceError> {
        let num_tickets = tickets_needed(min_credit, &self.amount, ev)?;
        let new_credit = ev.checked_mul_u64(u64::from(num_tickets))?;
        let existing_credit = self.reserve();
        Ok(BalanceUpdate { existing_credit, new_credit, num_tickets, ..BalanceUpdate::empty() })
    }

    /// Stages a payment for a request with an estimated `fee` (go-livepeer `newBalanceUpdate`):
    /// `None` means "no price", which stages nothing and reserves nothing.
    pub fn stage_payment(
        &mut self,
        fee: Option<&Ratio>,
        ev: &Ratio,
    ) -> Result<BalanceUpdate, BalanceError> {
        match fee {
            Some(fee) => self.stage_update(&min_credit(fee, ev), ev),
            None => Ok(BalanceUpdate::empty()),
        }
    }

    /// Applies a finished update (go-livepeer `completeBalanceUpdate`).
    pub fn complete_update(&mut self, update: &BalanceUpdate) -> Result<(), ArithmeticError> {
        let change = update.settlement()?;
        self.credit(&change)
    }
}

/// The balances of one gateway, keyed by orchestrator (ticket recipient) address and manifest
/// id, forgotten after a period without updates (go-livepeer `AddressBalances`).
///
/// `T` is the caller's timestamp (e.g. `tokio::time::Instant`): passing time in keeps this free
/// of clocks and lets paused-time tests drive expiry.
#[derive(Debug, Clone)]
pub struct Balances<T> {
    entries: HashMap<(Address, String), (Balance, T)>,
}

impl<T> Default for Balances<T> {
    fn default() -> Self {
        Self { entries: HashMap::new() }
    }
}

// === impl Balances ===

impl<T: Copy + Ord> Balances<T> {
    /// No balances.
    pub fn new() -> Self {
        Self::default()
    }

    /// The current credit for `(orchestrator, manifest)`, or `None` if there is no entry.
    pub fn get(&self, orchestrator: Address, manifest: &str) -> Option<SignedRatio> {
        self.entries.get(&(orchestrator, manifest.to_owned())).map(|(b, _)| b.amount())
    }

    fn entry(&mut self, orchestrator: Address, manifest: &str, now: T) -> &mut Balance {
        let slot = self
            .entries
            .entry((orchestrator, manifest.to_owned()))
            .or_insert_with(|| (Balance::default(), now));
        slot.1 = now;
        &mut slot.0
    }

    /// Adds `amount` (negative to debit) to `(orchestrator, manifest)`.
    pub fn credit(
        &mut self,
        orchestrator: Address,
        manifest: &str,
        amount: &SignedRatio,
        now: T,
    ) -> Result<(), ArithmeticError> {
        self.entry(orchestrator, manifest, now).credit(amount)
    }

    /// [`Balance::stage_payment`] on `(orchestrator, manifest)`.
    pub fn stage_payment(
        &mut self,
        orchestrator: Address,
        manifest: &str,
        fee: Option<&Ratio>,
        ev: &Ratio,
        now: T,
    ) -> Result<BalanceUpdate, BalanceError> {
        self.entry(orchestrator, manifest, now).stage_payment(fee, ev)
    }

    /// [`Balance::complete_update`] on `(orchestrator, manifest)`.
    pub fn complete_update(
        &mut self,
        orchestrator: Address,
        manifest: &str,
        update: &BalanceUpdate,
        now: T,
    ) -> Result<(), ArithmeticError> {
        self.entry(orchestrator, manifest, now).complete_update(update)
    }

    /// Sets `(orchestrator, manifest)` back to zero, e.g. for a new live stream.
    pub fn clear(&mut self, orchestrator: Address, manifest: &str) {
        self.entries.remove(&(orchestrator, manifest.to_owned()));
    }

    /// Forgets entries last updated before `cutoff`, i.e. `now − ttl` (go-livepeer keeps
    /// balances for 10 minutes without updates).
    pub fn remove_idle(&mut self, cutoff: T) {
        self.entries.retain(|_, (_, last)| *last >= cutoff);
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_reserves_and_completion_restores() {
        let ev = Ratio::from_u64(10);
        let mut b = Balance::new(Ratio::from_u64(15).into());
        let mut u = b.stage_payment(Some(&Ratio::from_u64(30)), &ev).unwrap();
        assert_eq!(u.num_tickets, 2);
        assert_eq!(b.amount(), SignedRatio::ZERO);
        u.status = UpdateStatus::ReceivedChange;
        u.debit = Ratio::from_u64(40);
        b.complete_update(&u).unwrap();
        assert_eq!(b.amount().to_string(), "-5");
    }

    #[test]
    fn free_orchestrator_needs_no_tickets() {
        let mut b = Balance::default();
        let u = b.stage_payment(Some(&Ratio::from_u64(7)), &Ratio::ZERO).unwrap();
        assert_eq!(u.num_tickets, 0);
        let u = b.stage_payment(None, &Ratio::from_u64(7)).unwrap();
        assert_eq!(u, BalanceUpdate::empty());
    }

    #[test]
    fn too_many_tickets_leaves_balance_alone() {
        let tiny: Ratio = "1/1000000000000".parse().unwrap();
        let mut b = Balance::new(Ratio::ONE.into());
        let err = b.stage_payment(Some(&Ratio::from_u64(1_000_000)), &tiny).unwrap_err();
        assert_eq!(err, BalanceError::TooManyTickets);
        assert_eq!(b.amount(), Ratio::ONE.into());
    }

    #[test]
    fn map_expires_idle_entries() {
        let mut m = Balances::<u64>::new();
        let o = Address::repeat_byte(1);
        m.credit(o, "a", &Ratio::ONE.into(), 0).unwrap();
        m.credit(o, "b", &Ratio::ONE.into(), 500).unwrap();
        m.remove_idle(601 - 600);
        assert_eq!(m.get(o, "a"), None);
        assert_eq!(m.get(o, "b"), Some(Ratio::ONE.into()));
        assert_eq!(m.len(), 1);
    }
}
