//! Step 3 of `/generate-live-payment`, the money: how many units the request pays for, the
//! price ceilings, and the balance staged for the tickets. Exact integers and rationals only.

use livepeer_pm::{
    Balance, BalanceUpdate, LIVE_VIDEO_INITIAL_UNITS, LIVE_VIDEO_UNITS_PER_SECOND,
    MAX_TICKETS_PER_PAYMENT, PER_SECOND_INITIAL_UNITS, Ratio, SignedRatio, min_credit, unit_fee,
};

use super::refusal::Refusal;
use super::request::{MaxPrice, Offer, PaymentRequest};
use super::state::PaymentState;
use crate::orchestrator::price::Price;

/// An auth token with this many seconds left or fewer must be refreshed before paying.
const REFRESH_MARGIN_SECS: i64 = 180;

/// What one payment charges: the fee, and the balance staged for it.
#[derive(Debug)]
pub(super) struct Bill {
    /// units × the session's initial price, wei (exact).
    pub(super) fee: Ratio,
    /// The state's balance with the payment staged.
    pub(super) balance: Balance,
    /// The staged update: how many tickets to send.
    pub(super) update: BalanceUpdate,
}

/// Bills the request against `st` at unix milliseconds `now`: refresh check, units, price
/// ceilings, fee, and the tickets needed beyond the credit the state holds.
pub(super) fn bill(
    st: &PaymentState,
    offer: &Offer,
    req: &PaymentRequest,
    now: u64,
) -> Result<Bill, Refusal> {
    // Saturating: the expiry is the orchestrator's number, and i64::MIN must not wrap to "valid".
    if offer.token.expiration.saturating_sub((now / 1000) as i64) <= REFRESH_MARGIN_SECS {
        return Err(Refusal::RefreshSession { orchestrator: offer.transcoder.clone() });
    }
    let units = units(&req.job_type, req.in_pixels, st.LastUpdate, now)?;
    check_price(st, offer, req.max_price.as_ref())?;
    stage(st, offer, units)
}

/// The billable units: for live video the time since the last payment (or the prepaid first
/// minute), for per-second jobs the seconds, `fixed` one, and otherwise the client's count.
fn units(job_type: &str, in_pixels: i64, last_update: u64, now: u64) -> Result<u64, Refusal> {
    let first = last_update == 0;
    let elapsed_ms = now.saturating_sub(last_update);
    let units = match job_type {
        "lv2v" if first => LIVE_VIDEO_INITIAL_UNITS,
        "lv2v" => LIVE_VIDEO_UNITS_PER_SECOND * elapsed_ms / 1000,
        "live" if first => PER_SECOND_INITIAL_UNITS,
        "live" => elapsed_ms.div_ceil(1000),
        "fixed" => 1,
        "" => u64::try_from(in_pixels).unwrap_or(0),
        _ => return Err(Refusal::malformed("invalid job type")),
    };
    if units == 0 {
        return Err(Refusal::malformed("missing billable unit or job type"));
    }
    Ok(units)
}

/// 481 when the price rose above the session's initial price or above the client's ceiling.
fn check_price(st: &PaymentState, offer: &Offer, max: Option<&MaxPrice>) -> Result<(), Refusal> {
    let (per_unit, pixels) = (offer.price.price_per_unit, offer.price.pixels_per_unit);
    // Cross-multiplied: current/pixels > initial/initial_pixels, without division.
    let current = i128::from(per_unit) * i128::from(st.InitialPixelsPerUnit);
    let initial = i128::from(st.InitialPricePerUnit) * i128::from(pixels);
    if current > initial {
        return Err(Refusal::PriceExceeded("price above the session's initial price".into()));
    }
    if let Some(max) = max {
        let max: i128 = max
            .price
            .to_string()
            .parse()
            .map_err(|_| Refusal::malformed("maxPrice.price must be whole wei"))?;
        if i128::from(per_unit) > max * i128::from(pixels) {
            return Err(Refusal::PriceExceeded(format!(
                "price {per_unit}/{pixels} above maxPrice {max}"
            )));
        }
    }
    Ok(())
}

/// fee = units × initial price; stages max(fee, EV) against the state's balance.
fn stage(st: &PaymentState, offer: &Offer, units: u64) -> Result<Bill, Refusal> {
    let invalid = || Refusal::malformed("invalid state");
    let initial_price = Price::new(st.InitialPricePerUnit, st.InitialPixelsPerUnit)
        .map_err(|_| invalid())?
        .to_ratio()
        .map_err(|e| Refusal::internal(&e))?;
    let fee = unit_fee(units, &initial_price).map_err(|e| Refusal::internal(&e))?;
    let held: Ratio = st.Balance.parse().map_err(|_| invalid())?;
    let mut balance = Balance::new(SignedRatio::from(held));
    let ev = offer.params.ev();
    let update =
        balance.stage_update(&min_credit(&fee, &ev), &ev).map_err(|e| Refusal::internal(&e))?;
    if update.num_tickets == 0 {
        return Err(Refusal::Covered);
    }
    if update.num_tickets > MAX_TICKETS_PER_PAYMENT {
        return Err(Refusal::malformed("too many tickets"));
    }
    Ok(Bill { fee, balance, update })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::request::decode;
    use super::super::request::tests::{info, request};
    use super::*;

    /// 2027-01-01 in unix milliseconds; the test tokens expire relative to it.
    const NOW: u64 = 1_798_761_600_000;
    const NOW_S: i64 = (NOW / 1000) as i64;

    fn state(price: i64, pixels: i64, balance: &str, last_update: u64) -> PaymentState {
        PaymentState {
            StateID: "s".into(),
            PMSessionID: String::new(),
            LastUpdate: last_update,
            OrchestratorAddress: String::new(),
            App: String::new(),
            SenderNonce: 0,
            Balance: balance.into(),
            InitialPricePerUnit: price,
            InitialPixelsPerUnit: pixels,
            Type: String::new(),
            SequenceNumber: 1,
            ManifestID: "m".into(),
        }
    }

    fn bill_of(
        st: &PaymentState,
        price: (i64, i64),
        fields: serde_json::Value,
    ) -> Result<Bill, Refusal> {
        let req = request(&info(price.0, price.1, NOW_S + 1800), fields);
        bill(st, &decode(&req).unwrap(), &req, NOW)
    }

    /// Found by `benches/fuzz`: this subtraction overflowed (a panic in debug builds, and in
    /// release a wrap that took the token for a valid one).
    #[test]
    fn an_expiry_at_the_bottom_of_the_range_asks_for_a_refresh() {
        let st = state(1, 1, "0", 0);
        let req = request(&info(1, 1, i64::MIN), json!({"type": "lv2v"}));
        let refused = bill(&st, &decode(&req).unwrap(), &req, NOW).unwrap_err();
        assert!(matches!(refused, Refusal::RefreshSession { .. }), "{refused:?}");
    }

    #[test]
    fn units_per_job_type() {
        let live = LIVE_VIDEO_UNITS_PER_SECOND;
        assert_eq!(live, 27_648_000);
        assert_eq!(units("lv2v", 0, 0, NOW), Ok(60 * 27_648_000));
        assert_eq!(units("lv2v", 0, NOW - 2_500, NOW), Ok(69_120_000), "2.5 s");
        assert_eq!(units("live", 0, 0, NOW), Ok(10));
        assert_eq!(units("live", 0, NOW - 2_001, NOW), Ok(3), "started seconds count");
        assert_eq!(units("fixed", 0, 0, NOW), Ok(1));
        assert_eq!(units("", 4096, 0, NOW), Ok(4096));
        let none = Err(Refusal::malformed("missing billable unit or job type"));
        assert_eq!(units("", -5, 0, NOW), none);
        assert_eq!(units("lv2v", 0, NOW, NOW), none, "no time since the last payment");
        assert_eq!(units("batch", 1, 0, NOW), Err(Refusal::malformed("invalid job type")));
    }

    #[test]
    fn fee_and_tickets_are_exact() {
        // 4096 units at 3 wei / 2 units = 6144 wei; EV 1000 wei: 7 tickets, 856 wei credit.
        let b = bill_of(&state(3, 2, "0", 0), (3, 2), json!({"inPixels": 4096})).unwrap();
        assert_eq!(b.fee, Ratio::from_u256(livepeer_pm::U256::from(6144u64)));
        assert_eq!(b.update.num_tickets, 7);
        // Credit held from before lowers the tickets: 6144 − 5200 = 944 → 1 ticket.
        let b = bill_of(&state(3, 2, "5200", 0), (3, 2), json!({"inPixels": 4096})).unwrap();
        assert_eq!(b.update.num_tickets, 1);
        // The fee is at the session's initial price even when the orchestrator's is lower now.
        let b = bill_of(&state(3, 2, "0", 0), (1, 1), json!({"inPixels": 4096})).unwrap();
        assert_eq!(b.fee, Ratio::from_u256(livepeer_pm::U256::from(6144u64)));
    }

    #[test]
    fn refusals_are_typed() {
        let st = state(3, 2, "0", 0);
        // 480: the token expires within 3 minutes.
        let req = request(&info(3, 2, NOW_S + 180), json!({"inPixels": 1}));
        let e = bill(&st, &decode(&req).unwrap(), &req, NOW).unwrap_err();
        assert_eq!(e, Refusal::RefreshSession { orchestrator: "https://o.example:8935".into() });
        // 481: above the initial price (2/1 > 3/2), or above the client's ceiling.
        let e = bill_of(&st, (2, 1), json!({"inPixels": 1})).unwrap_err();
        assert_eq!(e, Refusal::PriceExceeded("price above the session's initial price".into()));
        let e = bill_of(&st, (3, 2), json!({"inPixels": 1, "maxPrice": {"price": 1}})).unwrap_err();
        assert_eq!(e, Refusal::PriceExceeded("price 3/2 above maxPrice 1".into()));
        let e = bill_of(&st, (3, 2), json!({"inPixels": 1, "maxPrice": {"price": 1.5}}));
        assert_eq!(e.unwrap_err(), Refusal::malformed("maxPrice.price must be whole wei"));
        // 482: 1000 wei of credit covers a 1.5-wei fee (max(fee, EV) = 1000).
        let e = bill_of(&state(3, 2, "1000", 0), (3, 2), json!({"inPixels": 1})).unwrap_err();
        assert_eq!(e, Refusal::Covered);
        // 400: more than 100 tickets (101 × 1000 wei).
        let e = bill_of(&state(1, 1, "0", 0), (1, 1), json!({"inPixels": 100_001})).unwrap_err();
        assert_eq!(e, Refusal::malformed("too many tickets"));
        let e = bill_of(&state(3, 2, "x", 0), (3, 2), json!({"inPixels": 1})).unwrap_err();
        assert_eq!(e, Refusal::malformed("invalid state"));
    }
}
