//! Prices as exact rationals: wei per unit = `per_unit / pixels` (PROTOCOL.md §1.3, §3.6).
//!
//! Comparisons cross-multiply in `i128`, which cannot overflow for `i64` inputs, so a price
//! filter never rounds in the orchestrator's favour.

use std::cmp::Ordering;

use livepeer_proto::net;

/// A price in wei per pixel (or per the pipeline's unit): `per_unit / pixels_per_unit`.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Price {
    /// Numerator, wei. Never negative.
    pub per_unit: i64,
    /// Denominator. Always at least 1.
    pub pixels_per_unit: i64,
}

/// A price that cannot be used: negative, or a zero or negative denominator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid price {per_unit}/{pixels_per_unit}: need a non-negative numerator and a positive denominator"
)]
pub struct InvalidPrice {
    /// The numerator given.
    pub per_unit: i64,
    /// The denominator given.
    pub pixels_per_unit: i64,
}

// === impl Price ===

impl Price {
    /// The zero price.
    pub const ZERO: Self = Self { per_unit: 0, pixels_per_unit: 1 };

    /// Checks and builds a price.
    pub fn new(per_unit: i64, pixels_per_unit: i64) -> Result<Self, InvalidPrice> {
        if per_unit < 0 || pixels_per_unit <= 0 {
            return Err(InvalidPrice { per_unit, pixels_per_unit });
        }
        Ok(Self { per_unit, pixels_per_unit })
    }

    /// Whether this is zero (go-livepeer's "accept any price" for a maximum).
    pub fn is_zero(&self) -> bool {
        self.per_unit == 0
    }

    /// The exact rational, for money arithmetic.
    pub fn to_ratio(&self) -> Result<livepeer_pm::Ratio, livepeer_pm::ArithmeticError> {
        // Both parts are non-negative and the denominator at least 1, by construction.
        livepeer_pm::Ratio::new(
            livepeer_pm::U512::from(self.per_unit.unsigned_abs()),
            livepeer_pm::U512::from(self.pixels_per_unit.unsigned_abs()),
        )
    }

    /// Whether this is more than twice `initial` (go-livepeer's mid-session price guard).
    pub fn more_than_double(&self, initial: &Price) -> bool {
        let left = i128::from(self.per_unit) * i128::from(initial.pixels_per_unit);
        let right = 2 * i128::from(initial.per_unit) * i128::from(self.pixels_per_unit);
        left > right
    }

    /// `self / other` as a float, for ranking only (never for money). `other` zero gives 1.
    pub fn ratio_to(&self, other: &Self) -> f64 {
        if other.per_unit == 0 {
            return if self.per_unit == 0 { 1.0 } else { 1.0 + self.as_f64() };
        }
        (i128::from(self.per_unit) * i128::from(other.pixels_per_unit)) as f64
            / (i128::from(other.per_unit) * i128::from(self.pixels_per_unit)) as f64
    }

    fn as_f64(&self) -> f64 {
        self.per_unit as f64 / self.pixels_per_unit as f64
    }
}

impl PartialEq for Price {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Price {}

impl PartialOrd for Price {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Price {
    fn cmp(&self, other: &Self) -> Ordering {
        let left = i128::from(self.per_unit) * i128::from(other.pixels_per_unit);
        let right = i128::from(other.per_unit) * i128::from(self.pixels_per_unit);
        left.cmp(&right)
    }
}

impl std::fmt::Display for Price {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.per_unit, self.pixels_per_unit)
    }
}

impl TryFrom<&net::PriceInfo> for Price {
    type Error = InvalidPrice;
    fn try_from(p: &net::PriceInfo) -> Result<Self, InvalidPrice> {
        Self::new(p.price_per_unit, p.pixels_per_unit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn compares_exactly() {
        let a = Price::new(1, 3).unwrap();
        let b = Price::new(333_333_333_333, 1_000_000_000_000).unwrap();
        assert!(a > b, "1/3 is above 0.333333333333");
        assert_eq!(Price::new(2, 4).unwrap(), Price::new(1, 2).unwrap());
        assert!(Price::new(i64::MAX, 1).unwrap() > Price::new(i64::MAX, 2).unwrap());
        assert!(Price::new(-1, 1).is_err());
        assert!(Price::new(1, 0).is_err());
        assert_eq!(Price::new(6, 3).unwrap().ratio_to(&Price::new(1, 1).unwrap()), 2.0);
    }

    proptest! {
        #[test]
        fn ordering_matches_cross_multiplication(a in 0i64..i64::MAX, b in 1i64..i64::MAX,
                                                 c in 0i64..i64::MAX, d in 1i64..i64::MAX) {
            let (x, y) = (Price::new(a, b).unwrap(), Price::new(c, d).unwrap());
            prop_assert_eq!(x.cmp(&y), (a as i128 * d as i128).cmp(&(c as i128 * b as i128)));
            prop_assert_eq!(x.cmp(&y), y.cmp(&x).reverse());
        }
    }
}
