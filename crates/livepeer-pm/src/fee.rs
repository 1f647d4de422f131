//! What a request is expected to cost: prices as exact rationals, the transcoding estimate and
//! per-unit AI fees (go-livepeer server/segment_rpc.go `estimateFee`, server/ai_process.go
//! `estimateAIFee`, common/util.go `RatPriceInfo`; PAYMENTS.md §5.5 and §8).

use std::time::Duration;

use alloy_primitives::U512;
use livepeer_proto::net::PriceInfo;

use crate::ev::{ArithmeticError, Ratio};

/// go-livepeer's `pixelEstimateMultiplier = 1.02` as `big.Rat.SetFloat64` holds it: the exact
/// binary value of the float, `2296835809958953 / 2^51`, not 51/50.
pub const PIXEL_ESTIMATE_MULTIPLIER: Ratio = Ratio::from_reduced_parts(
    U512::from_limbs([2_296_835_809_958_953, 0, 0, 0, 0, 0, 0, 0]),
    U512::from_limbs([2_251_799_813_685_248, 0, 0, 0, 0, 0, 0, 0]),
);

/// The frame rate assumed for a pass-through profile (framerate 0), whose real rate the
/// gateway does not know before transcoding.
pub const PASSTHROUGH_FPS: u64 = 60;

/// Units per second of live video-to-video: 1280×720 pixels × 30 frames (27 648 000), the
/// rate go-livepeer bills a live stream at whatever its real resolution (PAYMENTS.md §8).
pub const LIVE_VIDEO_UNITS_PER_SECOND: u64 = 1280 * 720 * 30;

/// Seconds of live video-to-video the gateway prepays when a stream starts (go-livepeer's
/// `initPixelsToPay`).
pub const LIVE_VIDEO_INITIAL_SECONDS: u64 = 60;

/// Units of the start call's prepayment: [`LIVE_VIDEO_INITIAL_SECONDS`] at
/// [`LIVE_VIDEO_UNITS_PER_SECOND`].
pub const LIVE_VIDEO_INITIAL_UNITS: u64 = LIVE_VIDEO_INITIAL_SECONDS * LIVE_VIDEO_UNITS_PER_SECOND;

/// Units a remote signer bills for the first payment of a per-second (`live`) job: one unit
/// per second, ten seconds ahead.
pub const PER_SECOND_INITIAL_UNITS: u64 = 10;

/// Why a price or fee could not be computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FeeError {
    /// `pixelsPerUnit` is zero (go-livepeer: "pixels per unit is 0").
    #[error("pixelsPerUnit is zero")]
    ZeroPixelsPerUnit,
    /// A negative price or unit count; money in this crate is never negative.
    #[error("negative price")]
    NegativePrice,
    /// The pixel count does not fit in 64 bits, where go-livepeer's int64 would wrap.
    #[error("pixel count overflows 64 bits")]
    PixelOverflow,
    /// Exact arithmetic failed.
    #[error(transparent)]
    Arithmetic(#[from] ArithmeticError),
}

/// The price per unit `pricePerUnit / pixelsPerUnit` in lowest terms, as Go's `RatPriceInfo`
/// gives it. This normalised form is what the orchestrator's `recipientRand` HMAC covers.
pub fn price_per_unit(price: &PriceInfo) -> Result<Ratio, FeeError> {
    if price.pixels_per_unit == 0 {
        return Err(FeeError::ZeroPixelsPerUnit);
    }
    // big.NewRat(-a, -b) is a/b; only a genuinely negative quotient is refused.
    let negative = (price.price_per_unit < 0) != (price.pixels_per_unit < 0);
    if negative && price.price_per_unit != 0 {
        return Err(FeeError::NegativePrice);
    }
    Ok(Ratio::new(
        U512::from(price.price_per_unit.unsigned_abs()),
        U512::from(price.pixels_per_unit.unsigned_abs()),
    )?)
}

/// One output rendition as the transcoding estimate sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputProfile {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Frame rate numerator; 0 means pass-through and counts as [`PASSTHROUGH_FPS`].
    pub framerate: u32,
    /// Frame rate denominator; 0 counts as 1.
    pub framerate_den: u32,
}

/// `Σ w·h·ceil(fps)·ceil(duration in seconds)` over the renditions.
///
/// go-livepeer takes both ceilings in float64. For 32-bit frame rates the float quotient never
/// lands on the wrong side of an integer, so the exact integer ceiling here agrees; the
/// duration is exact to the nanosecond rather than a float.
pub fn estimated_out_pixels(
    profiles: &[OutputProfile],
    segment_duration: Duration,
) -> Result<u64, FeeError> {
    let seconds = segment_duration.as_secs() + u64::from(segment_duration.subsec_nanos() > 0);
    let mut total: u64 = 0;
    for p in profiles {
        let fps = match (p.framerate, p.framerate_den) {
            (0, _) => PASSTHROUGH_FPS,
            (n, 0) => u64::from(n),
            (n, d) => u64::from(n).div_ceil(u64::from(d)),
        };
        let pixels = u64::from(p.width)
            .checked_mul(u64::from(p.height))
            .and_then(|v| v.checked_mul(fps))
            .and_then(|v| v.checked_mul(seconds))
            .ok_or(FeeError::PixelOverflow)?;
        total = total.checked_add(pixels).ok_or(FeeError::PixelOverflow)?;
    }
    // go-livepeer accumulates in int64; a count that fits u64 but not i64 would wrap there.
    if total > i64::MAX as u64 {
        return Err(FeeError::PixelOverflow);
    }
    Ok(total)
}

/// The transcoding fee the gateway prepays for a segment:
/// `estimated_out_pixels × PIXEL_ESTIMATE_MULTIPLIER × price`.
pub fn transcode_fee_estimate(
    profiles: &[OutputProfile],
    segment_duration: Duration,
    price: &Ratio,
) -> Result<Ratio, FeeError> {
    let pixels = estimated_out_pixels(profiles, segment_duration)?;
    Ok(Ratio::from_u64(pixels).checked_mul(&PIXEL_ESTIMATE_MULTIPLIER)?.checked_mul(price)?)
}

/// `units × price`: the AI and live fee, and every settled debit (pixels actually transcoded ×
/// price). No multiplier.
pub fn unit_fee(units: u64, price: &Ratio) -> Result<Ratio, FeeError> {
    Ok(price.checked_mul_u64(units)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiplier_is_the_float64_value_of_1_02() {
        assert_eq!(PIXEL_ESTIMATE_MULTIPLIER.to_string(), "2296835809958953/2251799813685248");
        // Canonical form: the constant must equal the value `new` would build.
        let built =
            Ratio::new(PIXEL_ESTIMATE_MULTIPLIER.numer(), PIXEL_ESTIMATE_MULTIPLIER.denom());
        assert_eq!(built, Ok(PIXEL_ESTIMATE_MULTIPLIER));
        assert!(PIXEL_ESTIMATE_MULTIPLIER > "51/50".parse().unwrap());
    }

    #[test]
    fn price_conversion_normalises_and_refuses_nonsense() {
        let p = |n, d| {
            price_per_unit(&PriceInfo {
                price_per_unit: n,
                pixels_per_unit: d,
                ..Default::default()
            })
        };
        assert_eq!(p(2, 2), Ok(Ratio::ONE));
        assert_eq!(p(-6, -4).map(|r| r.to_string()), Ok("3/2".to_owned()));
        assert_eq!(p(0, 7), Ok(Ratio::ZERO));
        assert_eq!(p(0, -7), Ok(Ratio::ZERO));
        assert_eq!(p(1, 0), Err(FeeError::ZeroPixelsPerUnit));
        assert_eq!(p(-1, 1), Err(FeeError::NegativePrice));
    }

    #[test]
    fn durations_round_up_to_whole_seconds() {
        let p = [OutputProfile { width: 2, height: 1, framerate: 30, framerate_den: 0 }];
        assert_eq!(estimated_out_pixels(&p, Duration::from_secs(2)), Ok(120));
        assert_eq!(estimated_out_pixels(&p, Duration::from_nanos(2_000_000_001)), Ok(180));
        assert_eq!(estimated_out_pixels(&p, Duration::ZERO), Ok(0));
        let big =
            [OutputProfile { width: u32::MAX, height: u32::MAX, framerate: 60, framerate_den: 1 }];
        assert_eq!(
            estimated_out_pixels(&big, Duration::from_secs(1)),
            Err(FeeError::PixelOverflow)
        );
    }
}
