//! Exact rationals for money: expected value, fees, prices and credit balances.
//!
//! go-livepeer keeps every amount in a `big.Rat`, and the orchestrator compares the gateway's
//! credit against its own with exact arithmetic (PAYMENTS.md §5). A float, or a divisor of 2^256
//! instead of 2^256 − 1, changes comparisons such as "is the fee exactly three tickets", so this
//! module never rounds until a caller asks for [`Ratio::floor`] or [`Ratio::ceil`].
//!
//! [`Ratio`] is non-negative and stored as `num/den` in lowest terms in 512 bits each, which
//! holds any `faceValue × winProb` exactly. Intermediate products are computed in 1024 bits, so
//! comparisons never overflow; a sum or product whose *reduced* result does not fit in 512 bits
//! is reported as [`ArithmeticError::Overflow`] instead of being truncated. [`SignedRatio`] adds
//! a sign for credit balances, which go negative when an answer costs more than was prepaid.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use alloy_primitives::ruint::Uint;
use alloy_primitives::{U256, U512};

/// Twice the width of [`U512`], so that the product of any two stored values fits.
type Wide = Uint<1024, 16>;

/// `2^256 − 1`: the win probability that always wins, and the divisor of every EV.
pub const MAX_WIN_PROB: U256 = U256::MAX;

/// Why an exact operation has no exact result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ArithmeticError {
    /// A denominator or divisor was zero.
    #[error("division by zero")]
    DivisionByZero,
    /// The reduced result needs more than 512 bits of numerator or denominator.
    #[error("result does not fit in 512 bits")]
    Overflow,
    /// A non-negative result was asked for, but the exact result is negative.
    #[error("result would be negative")]
    Negative,
    /// Text is not of the form `n`, `n/d` (or `-n/d` for a signed value) in decimal.
    #[error("invalid rational: {0}")]
    Parse(&'static str),
}

/// An exact non-negative rational `num/den`, always in lowest terms with `den > 0`.
///
/// Because the form is canonical, derived equality and hashing are value equality.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ratio {
    num: U512,
    den: U512,
}

/// The expected value of one ticket: `faceValue × winProb / (2^256 − 1)`, exactly.
///
/// This is go-livepeer's `ticketEV` (pm/ticket.go). The divisor is 2^256 − 1, not 2^256:
/// `winProb = 2^256 − 1` means "always wins" and must give EV = faceValue.
pub fn ticket_ev(face_value: &U256, win_prob: &U256) -> Ratio {
    // (2^256 − 1)^2 < 2^512, so the product always fits.
    let num: U512 = face_value.widening_mul(*win_prob);
    let den = U512::from(MAX_WIN_PROB);
    reduce(num, den)
}

/// `num/den` reduced by their gcd; `den` must be non-zero.
fn reduce(num: U512, den: U512) -> Ratio {
    if num.is_zero() {
        return Ratio::ZERO;
    }
    let g = num.gcd(den);
    Ratio { num: num / g, den: den / g }
}

/// Reduces a 1024-bit fraction and narrows it back to 512 bits.
fn reduce_wide(num: Wide, den: Wide) -> Result<Ratio, ArithmeticError> {
    if den.is_zero() {
        return Err(ArithmeticError::DivisionByZero);
    }
    if num.is_zero() {
        return Ok(Ratio::ZERO);
    }
    let g = num.gcd(den);
    let num =
        U512::checked_from_limbs_slice((num / g).as_limbs()).ok_or(ArithmeticError::Overflow)?;
    let den =
        U512::checked_from_limbs_slice((den / g).as_limbs()).ok_or(ArithmeticError::Overflow)?;
    Ok(Ratio { num, den })
}

fn mul_wide(a: U512, b: U512) -> Wide {
    a.widening_mul(b)
}

// === impl Ratio ===

impl Ratio {
    /// Zero (`0/1`).
    pub const ZERO: Self = Self { num: U512::ZERO, den: U512::ONE };
    /// One (`1/1`).
    pub const ONE: Self = Self { num: U512::ONE, den: U512::ONE };

    /// `num/den` in lowest terms; fails when `den` is zero.
    pub fn new(num: U512, den: U512) -> Result<Self, ArithmeticError> {
        if den.is_zero() {
            return Err(ArithmeticError::DivisionByZero);
        }
        Ok(reduce(num, den))
    }

    /// Builds a constant from parts the caller guarantees are already coprime with `den > 0`.
    pub(crate) const fn from_reduced_parts(num: U512, den: U512) -> Self {
        Self { num, den }
    }

    /// The integer `n` as a ratio.
    pub fn from_u64(n: u64) -> Self {
        Self { num: U512::from(n), den: U512::ONE }
    }

    /// The 256-bit integer `n` as a ratio.
    pub fn from_u256(n: U256) -> Self {
        Self { num: U512::from(n), den: U512::ONE }
    }

    /// The 512-bit integer `n` as a ratio.
    pub fn from_u512(n: U512) -> Self {
        Self { num: n, den: U512::ONE }
    }

    /// The numerator in lowest terms.
    pub fn numer(&self) -> U512 {
        self.num
    }

    /// The denominator in lowest terms (never zero).
    pub fn denom(&self) -> U512 {
        self.den
    }

    /// Whether the value is zero.
    pub fn is_zero(&self) -> bool {
        self.num.is_zero()
    }

    /// Whether the value is a whole number.
    pub fn is_integer(&self) -> bool {
        self.den == U512::ONE
    }

    /// The largest integer not above the value.
    pub fn floor(&self) -> U512 {
        self.num / self.den
    }

    /// The smallest integer not below the value.
    pub fn ceil(&self) -> U512 {
        // `den` is non-zero by construction, so `div_ceil` cannot divide by zero.
        self.num.div_ceil(self.den)
    }

    /// `self + rhs`, exact.
    pub fn checked_add(&self, rhs: &Self) -> Result<Self, ArithmeticError> {
        if self.den == rhs.den {
            // The common case for balances: sums of EVs of the same ticket parameters.
            let num: Wide = Wide::from(self.num) + Wide::from(rhs.num);
            return reduce_wide(num, Wide::from(self.den));
        }
        let num = mul_wide(self.num, rhs.den)
            .checked_add(mul_wide(rhs.num, self.den))
            .ok_or(ArithmeticError::Overflow)?;
        reduce_wide(num, mul_wide(self.den, rhs.den))
    }

    /// `self − rhs`, or [`ArithmeticError::Negative`] when `rhs > self`.
    pub fn checked_sub(&self, rhs: &Self) -> Result<Self, ArithmeticError> {
        let left = mul_wide(self.num, rhs.den);
        let right = mul_wide(rhs.num, self.den);
        let num = left.checked_sub(right).ok_or(ArithmeticError::Negative)?;
        reduce_wide(num, mul_wide(self.den, rhs.den))
    }

    /// `max(self − rhs, 0)`.
    pub fn saturating_sub(&self, rhs: &Self) -> Result<Self, ArithmeticError> {
        match self.checked_sub(rhs) {
            Err(ArithmeticError::Negative) => Ok(Self::ZERO),
            other => other,
        }
    }

    /// `self × rhs`, exact.
    pub fn checked_mul(&self, rhs: &Self) -> Result<Self, ArithmeticError> {
        reduce_wide(mul_wide(self.num, rhs.num), mul_wide(self.den, rhs.den))
    }

    /// `self × n` for an integer `n`.
    pub fn checked_mul_u64(&self, n: u64) -> Result<Self, ArithmeticError> {
        self.checked_mul(&Self::from_u64(n))
    }

    /// `self ÷ rhs`, exact; fails when `rhs` is zero.
    pub fn checked_div(&self, rhs: &Self) -> Result<Self, ArithmeticError> {
        if rhs.is_zero() {
            return Err(ArithmeticError::DivisionByZero);
        }
        reduce_wide(mul_wide(self.num, rhs.den), mul_wide(self.den, rhs.num))
    }

    /// The value in decimal with exactly `places` digits after the point, the last digit
    /// rounded to nearest with halves away from zero (Go's `big.Rat.FloatString`).
    ///
    /// For display only: money decisions use the exact value.
    pub fn to_decimal_string(&self, places: usize) -> String {
        let (mut int_part, rem) = self.num.div_rem(self.den);
        // Long division one digit at a time: `rem < den`, so `rem × 10` always fits in 1024 bits
        // and no power of ten has to be materialised.
        let den = Wide::from(self.den);
        let mut rem_wide = Wide::from(rem);
        let ten = Wide::from(10u64);
        let mut digits = Vec::with_capacity(places);
        for _ in 0..places {
            let (digit, next) = (rem_wide * ten).div_rem(den);
            digits.push(digit.as_limbs()[0] as u8);
            rem_wide = next;
        }
        // Round half away from zero on the part that was not printed.
        if rem_wide * Wide::from(2u64) >= den {
            let mut carry = true;
            for d in digits.iter_mut().rev() {
                if *d == 9 {
                    *d = 0;
                } else {
                    *d += 1;
                    carry = false;
                    break;
                }
            }
            if carry {
                int_part += U512::ONE;
            }
        }
        let mut out = int_part.to_string();
        if places > 0 {
            out.push('.');
            out.extend(digits.iter().map(|d| char::from(b'0' + d)));
        }
        out
    }
}

impl Default for Ratio {
    fn default() -> Self {
        Self::ZERO
    }
}

impl Ord for Ratio {
    fn cmp(&self, other: &Self) -> Ordering {
        if self.den == other.den {
            return self.num.cmp(&other.num);
        }
        // Cross-multiplication in 1024 bits is exact for any two stored values.
        mul_wide(self.num, other.den).cmp(&mul_wide(other.num, self.den))
    }
}

impl PartialOrd for Ratio {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// `n` for integers, `n/d` otherwise: the format of Go's `big.Rat.RatString`, which the remote
/// signer's state blob uses for balances.
impl fmt::Display for Ratio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_integer() {
            write!(f, "{}", self.num)
        } else {
            write!(f, "{}/{}", self.num, self.den)
        }
    }
}

impl fmt::Debug for Ratio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ratio({}/{})", self.num, self.den)
    }
}

/// Parses `n` or `n/d` (decimal, no sign, no spaces), reducing to lowest terms.
impl FromStr for Ratio {
    type Err = ArithmeticError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parse = |part: &str| {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ArithmeticError::Parse("expected decimal digits"));
            }
            U512::from_str_radix(part, 10).map_err(|_| ArithmeticError::Parse("out of range"))
        };
        match s.split_once('/') {
            Some((n, d)) => Self::new(parse(n)?, parse(d)?),
            None => Ok(Self::from_u512(parse(s)?)),
        }
    }
}

impl From<u64> for Ratio {
    fn from(n: u64) -> Self {
        Self::from_u64(n)
    }
}

/// A rational with a sign: a credit balance that can fall below zero.
///
/// Zero is never negative, so derived equality is value equality.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SignedRatio {
    negative: bool,
    magnitude: Ratio,
}

// === impl SignedRatio ===

impl SignedRatio {
    /// Zero.
    pub const ZERO: Self = Self { negative: false, magnitude: Ratio::ZERO };

    /// `−magnitude` when `negative`, else `magnitude`.
    pub fn new(negative: bool, magnitude: Ratio) -> Self {
        Self { negative: negative && !magnitude.is_zero(), magnitude }
    }

    /// Whether the value is below zero.
    pub fn is_negative(&self) -> bool {
        self.negative
    }

    /// The absolute value.
    pub fn magnitude(&self) -> Ratio {
        self.magnitude
    }

    /// The value as a non-negative [`Ratio`], or `None` when it is negative.
    pub fn to_ratio(&self) -> Option<Ratio> {
        (!self.negative).then_some(self.magnitude)
    }

    /// `−self`.
    pub fn neg(&self) -> Self {
        Self::new(!self.negative, self.magnitude)
    }

    /// `self + rhs`, exact.
    pub fn checked_add(&self, rhs: &Self) -> Result<Self, ArithmeticError> {
        if self.negative == rhs.negative {
            return Ok(Self::new(self.negative, self.magnitude.checked_add(&rhs.magnitude)?));
        }
        // Opposite signs: the result takes the sign of the larger magnitude.
        if self.magnitude >= rhs.magnitude {
            Ok(Self::new(self.negative, self.magnitude.checked_sub(&rhs.magnitude)?))
        } else {
            Ok(Self::new(rhs.negative, rhs.magnitude.checked_sub(&self.magnitude)?))
        }
    }

    /// `self − rhs`, exact.
    pub fn checked_sub(&self, rhs: &Self) -> Result<Self, ArithmeticError> {
        self.checked_add(&rhs.neg())
    }
}

impl From<Ratio> for SignedRatio {
    fn from(magnitude: Ratio) -> Self {
        Self { negative: false, magnitude }
    }
}

impl Ord for SignedRatio {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self.negative, other.negative) {
            (false, false) => self.magnitude.cmp(&other.magnitude),
            (true, true) => other.magnitude.cmp(&self.magnitude),
            (true, false) => Ordering::Less,
            (false, true) => Ordering::Greater,
        }
    }
}

impl PartialOrd for SignedRatio {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Go's `big.Rat.RatString`: `-n/d`, `n/d`, or `n` for integers.
impl fmt::Display for SignedRatio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.negative {
            f.write_str("-")?;
        }
        fmt::Display::fmt(&self.magnitude, f)
    }
}

impl fmt::Debug for SignedRatio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SignedRatio({self})")
    }
}

/// Parses `n`, `n/d`, `-n` or `-n/d`.
impl FromStr for SignedRatio {
    type Err = ArithmeticError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.strip_prefix('-') {
            Some(rest) => Ok(Self::new(true, rest.parse()?)),
            None => Ok(Self::from(s.parse::<Ratio>()?)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ev_divides_by_max_win_prob_not_two_to_the_256() {
        assert_eq!(ticket_ev(&U256::from(1000u64), &MAX_WIN_PROB), Ratio::from_u64(1000));
        assert_eq!(ticket_ev(&U256::from(1000u64), &U256::ZERO), Ratio::ZERO);
        assert_eq!(ticket_ev(&U256::ZERO, &U256::from(999u64)), Ratio::ZERO);
        let half = ticket_ev(&U256::from(1000u64), &(MAX_WIN_PROB / U256::from(2u64)));
        assert_eq!(half.floor(), U512::from(499u64));
        assert_eq!(half.to_decimal_string(0), "500");
    }

    #[test]
    fn decimal_rounding_matches_go_float_string() {
        let r = |s: &str| s.parse::<Ratio>().unwrap();
        assert_eq!(r("1/3").to_decimal_string(3), "0.333");
        assert_eq!(r("2/3").to_decimal_string(3), "0.667");
        assert_eq!(r("1/2").to_decimal_string(0), "1");
        assert_eq!(r("999/1000").to_decimal_string(2), "1.00");
        assert_eq!(r("7").to_decimal_string(2), "7.00");
    }

    #[test]
    fn parse_and_display_round_trip() {
        for text in ["0", "5", "3/4", "12345678901234567890123/7"] {
            assert_eq!(text.parse::<Ratio>().unwrap().to_string(), text);
        }
        assert_eq!("6/8".parse::<Ratio>().unwrap().to_string(), "3/4");
        assert_eq!("-6/8".parse::<SignedRatio>().unwrap().to_string(), "-3/4");
        assert_eq!("-0".parse::<SignedRatio>().unwrap(), SignedRatio::ZERO);
        assert!("1/0".parse::<Ratio>().is_err());
        assert!("".parse::<Ratio>().is_err());
        assert!("+1".parse::<Ratio>().is_err());
        assert!("1.5".parse::<Ratio>().is_err());
    }

    #[test]
    fn overflow_is_reported_not_truncated() {
        let huge = Ratio::from_u512(U512::MAX);
        assert_eq!(huge.checked_add(&Ratio::ONE), Err(ArithmeticError::Overflow));
        assert_eq!(huge.checked_mul_u64(2), Err(ArithmeticError::Overflow));
        assert_eq!(Ratio::ONE.checked_div(&Ratio::ZERO), Err(ArithmeticError::DivisionByZero));
        assert_eq!(Ratio::ONE.checked_sub(&huge), Err(ArithmeticError::Negative));
        assert_eq!(Ratio::ONE.saturating_sub(&huge), Ok(Ratio::ZERO));
    }
}
