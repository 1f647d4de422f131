//! Property tests for the exact rationals: ordering against an independent oracle, arithmetic
//! identities on values as wide as real EVs, and the ticket-count ceiling.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "property tests panic on failure"
)]

use std::cmp::Ordering;

use livepeer_pm::{MAX_WIN_PROB, Ratio, SignedRatio, U256, U512, ticket_ev, tickets_needed};
use proptest::prelude::*;

/// A small ratio plus its parts, so that `u128` cross-multiplication is an exact oracle.
fn small() -> impl Strategy<Value = (u64, u64, Ratio)> {
    (any::<u64>(), 1..=u64::MAX)
        .prop_map(|(n, d)| (n, d, Ratio::new(U512::from(n), U512::from(d)).unwrap()))
}

/// Any stored ratio up to 2^320 / 2^256: for properties that cannot overflow (ordering, floor,
/// text), including denominators no real balance would have.
fn wide() -> impl Strategy<Value = Ratio> {
    let num = prop::array::uniform5(any::<u64>())
        .prop_map(|l| U512::from_limbs([l[0], l[1], l[2], l[3], l[4], 0, 0, 0]));
    let den = prop::array::uniform4(any::<u64>())
        .prop_map(|l| U512::from_limbs([l[0], l[1], l[2], l[3], 0, 0, 0, 0]) | U512::ONE);
    (num, den).prop_map(|(n, d)| Ratio::new(n, d).unwrap())
}

/// A ratio shaped like real credit: up to 2^96 wei (far beyond all ETH in existence) plus a
/// fraction, over the denominators money here actually has: divisors of 2^256 − 1 (every EV),
/// `2^51 × price denominator` (a transcoding estimate, 1.02 being `x / 2^51`), or a price
/// denominator alone. Orchestrators normalise `pixelsPerUnit` to a divisor of 1000; allowing
/// anything up to 2^32 is generous. Sums of three of these must never overflow 512 bits
/// (beyond that, operations report `Overflow` rather than wrap).
fn balance_like() -> impl Strategy<Value = Ratio> {
    // Small prime factors of 2^256 − 1; EV denominators are 2^256 − 1 divided by some of them.
    const FACTORS: [u64; 6] = [3, 5, 17, 257, 641, 65537];
    let ev_den = prop::sample::subsequence(FACTORS.to_vec(), 0..=FACTORS.len())
        .prop_map(|fs| fs.iter().fold(U512::from(MAX_WIN_PROB), |d, f| d / U512::from(*f)));
    let fee_den = (1..=u64::from(u32::MAX)).prop_map(|d| U512::from(d) << 51);
    let price_den = (1..=u64::from(u32::MAX)).prop_map(U512::from);
    let den = prop_oneof![ev_den, fee_den, price_den];
    let whole = any::<u128>().prop_map(|w| U512::from(w >> 32));
    let frac = prop::array::uniform4(any::<u64>())
        .prop_map(|l| U512::from_limbs([l[0], l[1], l[2], l[3], 0, 0, 0, 0]));
    (whole, frac, den).prop_map(|(w, f, d)| Ratio::new(w * d + f % d, d).unwrap())
}

fn u256() -> impl Strategy<Value = U256> {
    prop::array::uniform4(any::<u64>()).prop_map(U256::from_limbs)
}

proptest! {
    #[test]
    fn stored_in_lowest_terms((n, d, r) in small()) {
        prop_assert!(!r.denom().is_zero());
        prop_assert_eq!(r.numer().gcd(r.denom()), if n == 0 { r.denom() } else { U512::ONE });
        // Same value: n · den' == num' · d.
        prop_assert_eq!(U512::from(n) * r.denom(), r.numer() * U512::from(d));
    }

    #[test]
    fn ordering_matches_cross_multiplication((a, b, x) in small(), (c, d, y) in small()) {
        let oracle = (u128::from(a) * u128::from(d)).cmp(&(u128::from(c) * u128::from(b)));
        prop_assert_eq!(x.cmp(&y), oracle);
        prop_assert_eq!(y.cmp(&x), oracle.reverse());
        prop_assert_eq!(x == y, oracle == Ordering::Equal);
    }

    #[test]
    fn ordering_is_transitive(x in wide(), y in wide(), z in wide()) {
        let mut v = [x, y, z];
        v.sort();
        prop_assert!(v[0] <= v[1] && v[1] <= v[2] && v[0] <= v[2]);
    }

    #[test]
    fn add_sub_identities(x in balance_like(), y in balance_like(), z in balance_like()) {
        let xy = x.checked_add(&y).unwrap();
        prop_assert_eq!(xy, y.checked_add(&x).unwrap());
        prop_assert_eq!(xy.checked_sub(&y).unwrap(), x);
        prop_assert!(xy >= x && xy >= y);
        let left = xy.checked_add(&z).unwrap();
        let right = x.checked_add(&y.checked_add(&z).unwrap()).unwrap();
        prop_assert_eq!(left, right);
        match x.checked_sub(&y) {
            Ok(diff) => {
                prop_assert!(x >= y);
                prop_assert_eq!(diff.checked_add(&y).unwrap(), x);
            }
            Err(_) => {
                prop_assert!(x < y);
                prop_assert_eq!(x.saturating_sub(&y).unwrap(), Ratio::ZERO);
            }
        }
    }

    #[test]
    fn mul_div_identities((_, _, x) in small(), (_, _, y) in small(), (_, _, z) in small()) {
        let xy = x.checked_mul(&y).unwrap();
        prop_assert_eq!(xy, y.checked_mul(&x).unwrap());
        if !y.is_zero() {
            prop_assert_eq!(xy.checked_div(&y).unwrap(), x);
        }
        let lhs = x.checked_mul(&y.checked_add(&z).unwrap()).unwrap();
        let rhs = xy.checked_add(&x.checked_mul(&z).unwrap()).unwrap();
        prop_assert_eq!(lhs, rhs);
    }

    #[test]
    fn floor_and_ceil_bracket_the_value(x in wide()) {
        let floor = Ratio::from_u512(x.floor());
        let ceil = Ratio::from_u512(x.ceil());
        prop_assert!(floor <= x && x <= ceil);
        prop_assert!(x.checked_sub(&floor).unwrap() < Ratio::ONE);
        prop_assert!(ceil.checked_sub(&x).unwrap() < Ratio::ONE);
        prop_assert_eq!(floor == ceil, x.is_integer());
    }

    #[test]
    fn text_round_trips(x in wide(), neg in any::<bool>()) {
        prop_assert_eq!(x.to_string().parse::<Ratio>().unwrap(), x);
        let s = SignedRatio::new(neg, x);
        prop_assert_eq!(s.to_string().parse::<SignedRatio>().unwrap(), s);
    }

    #[test]
    fn signed_matches_i128(a in any::<i64>(), b in any::<i64>()) {
        let sr = |v: i64| SignedRatio::new(v < 0, Ratio::from_u64(v.unsigned_abs()));
        let (x, y) = (sr(a), sr(b));
        prop_assert_eq!(x.cmp(&y), a.cmp(&b));
        let sum = i128::from(a) + i128::from(b);
        let got = x.checked_add(&y).unwrap();
        prop_assert_eq!(got.to_string(), sum.to_string());
        prop_assert_eq!(x.checked_sub(&y).unwrap().to_string(), (i128::from(a) - i128::from(b)).to_string());
        prop_assert_eq!(got.checked_sub(&y).unwrap(), x);
    }

    #[test]
    fn ev_is_exact_and_bounded(fv in u256(), wp in u256()) {
        let ev = ticket_ev(&fv, &wp);
        let face = Ratio::from_u256(fv);
        prop_assert!(ev <= face);
        prop_assert_eq!(ev == face, fv.is_zero() || wp == MAX_WIN_PROB);
        // EV × (2^256 − 1) == faceValue × winProb, exactly.
        let back = ev.checked_mul(&Ratio::from_u256(MAX_WIN_PROB)).unwrap();
        prop_assert_eq!(back, Ratio::from_u512(fv.widening_mul(wp)));
    }

    #[test]
    fn ticket_count_is_the_exact_ceiling(
        fv in any::<u128>(),
        wp in u256(),
        min in balance_like(),
        existing in balance_like(),
        debt in any::<bool>(),
    ) {
        let ev = ticket_ev(&U256::from(fv), &wp);
        let existing = SignedRatio::new(debt, existing);
        let n = tickets_needed(&min, &existing, &ev);
        // More than 2^32 tickets is refused; the strategy keeps that rare.
        prop_assume!(n.is_ok());
        let n = n.unwrap();
        let credit_after = |k: u32| {
            existing.checked_add(&ev.checked_mul_u64(u64::from(k)).unwrap().into()).unwrap()
        };
        let min = SignedRatio::from(min);
        if ev.is_zero() {
            prop_assert_eq!(n, 0);
        } else {
            prop_assert!(credit_after(n) >= min);
            if n > 0 {
                prop_assert!(credit_after(n - 1) < min);
            }
        }
    }
}
