//! Customer prices: what the operator charges its customers, per pipeline and model, in USD or
//! wei per the pipeline's natural unit (an image megapixel, a second of audio, a million LLM
//! tokens, a minute of live video, a second of BYOC compute), or as a multiple of what the
//! orchestrator charges the gateway.
//!
//! Everything is exact: prices are [`Ratio`]s parsed from decimal text, wei become USD through
//! the configured `--usd-per-eth` rate (also exact), and a request's charge is rounded once,
//! up, to whole nano-USD, the unit of the ledger and of budgets (1 USD = 10⁹ nano-USD, so an
//! `i64` holds 9.2 billion USD). USD is shown as a decimal with 9 places only at the edges.
//!
//! [`CustomerPrices::quote`] is the public view (the catalogue shows it); the key path uses
//! [`CustomerPrices::charge`].

use std::collections::HashMap;
use std::sync::Arc;

use livepeer_pm::{Ratio, U512};
use serde::{Deserialize, Serialize};

use super::chainlink::Feed;

/// Nano-USD per USD.
pub const NANO_PER_USD: u64 = 1_000_000_000;
/// Wei per ETH.
const WEI_PER_ETH: u64 = 1_000_000_000_000_000_000;

/// A pipeline's natural unit: its name, and how many of the gateway's pricing units (those
/// orchestrators are paid in, or the seconds of a stream) make one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct NaturalUnit {
    /// Its name, e.g. `megapixel`.
    pub name: &'static str,
    /// Gateway units in one natural unit.
    pub gateway_units: u64,
}

const MEGAPIXEL: NaturalUnit = NaturalUnit { name: "megapixel", gateway_units: 1_000_000 };

/// The natural unit of `pipeline`, if it is one the gateway serves. The gateway units are
/// PROTOCOL.md §7.3's for batch AI (pixels, audio milliseconds, 1000 per character, tokens),
/// and seconds for live video and BYOC, milliseconds of video for transcoding.
pub fn natural_unit(pipeline: &str) -> Option<NaturalUnit> {
    let unit = |name, gateway_units| NaturalUnit { name, gateway_units };
    Some(match pipeline {
        "text-to-image" | "image-to-image" | "image-to-video" | "upscale"
        | "segment-anything-2" | "image-to-text" => MEGAPIXEL,
        "audio-to-text" => unit("audio_second", 1000),
        "text-to-speech" => unit("thousand_characters", 1_000_000),
        "llm" => unit("million_tokens", 1_000_000),
        "live-video-to-video" => unit("minute", 60),
        "byoc" => unit("second", 1),
        "transcode" => unit("video_minute", 60_000),
        _ => return None,
    })
}

/// How one pipeline (or model) is priced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rate {
    /// USD per natural unit.
    Usd(Ratio),
    /// Wei per natural unit.
    Wei(Ratio),
    /// This multiple of the orchestrator's fee for the same job.
    OrchestratorMultiple(Ratio),
}

/// What a customer pays for one natural unit of a pipeline and model, as shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Quote {
    /// The natural unit.
    pub unit: NaturalUnit,
    /// USD per unit, 9 decimals (rounded for display only); none when the price is a multiple
    /// of the orchestrator's and no network price was given.
    pub usd_per_unit: Option<String>,
    /// The exact USD per unit (`num/den` when not whole).
    pub usd_per_unit_exact: Option<String>,
    /// The exact wei per unit (`num/den` when not whole); none when it needs an ETH/USD rate
    /// or a network price that is not known.
    pub wei_per_unit: Option<String>,
    /// The multiple of the orchestrator's price, when priced so.
    pub orchestrator_multiple: Option<String>,
}

/// Why a price table is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PriceError(pub String);

/// One entry of the price table file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    pipeline: String,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    usd: Option<String>,
    #[serde(default)]
    wei: Option<String>,
    #[serde(default)]
    orchestrator_multiple: Option<String>,
}

/// The price table file: `{"price": [{"pipeline", "model"?, "usd" | "wei" |
/// "orchestrator_multiple"}]}` (JSON, or TOML with `[[price]]` tables).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    #[serde(default)]
    price: Vec<Entry>,
}

/// The operator's customer prices: rates by pipeline and model (a pipeline's own rate covers
/// its models without one), and the ETH/USD rate that turns wei into USD.
#[derive(Debug, Clone, Default)]
pub struct CustomerPrices {
    rates: HashMap<(String, Option<String>), Rate>,
    usd_per_eth: Option<Ratio>,
    feed: Option<Arc<Feed>>,
}

impl CustomerPrices {
    /// Parses a price table (JSON or TOML text) and the USD value of one ETH (decimal text),
    /// checking every entry: a known pipeline, exactly one of `usd`, `wei` and
    /// `orchestrator_multiple`, no duplicates, and a USD rate when anything is priced in wei.
    pub fn parse(table: Option<&str>, usd_per_eth: Option<&str>) -> Result<Self, PriceError> {
        Self::parse_with_feed(table, usd_per_eth, None)
    }

    /// [`CustomerPrices::parse`], with the ETH/USD rate read from a Chainlink `feed` when no
    /// fixed rate is given.
    pub fn parse_with_feed(
        table: Option<&str>,
        usd_per_eth: Option<&str>,
        feed: Option<Arc<Feed>>,
    ) -> Result<Self, PriceError> {
        let usd_per_eth = usd_per_eth
            .map(|t| parse_amount(t).map_err(|e| PriceError(format!("--usd-per-eth: {e}"))))
            .transpose()?;
        if usd_per_eth.is_some_and(|r| r.is_zero()) {
            return Err(PriceError("--usd-per-eth: must be above 0".into()));
        }
        let table: Table = match table.map(str::trim) {
            None | Some("") => Table { price: Vec::new() },
            Some(text) if text.starts_with('{') => serde_json::from_str(text)
                .map_err(|e| PriceError(format!("not a valid price table (JSON): {e}")))?,
            Some(text) => toml::from_str(text)
                .map_err(|e| PriceError(format!("not a valid price table (TOML): {e}")))?,
        };
        let mut rates = HashMap::new();
        for (i, e) in table.price.into_iter().enumerate() {
            let at = |m: String| PriceError(format!("price[{i}] ({}): {m}", e.pipeline));
            if natural_unit(&e.pipeline).is_none() {
                return Err(at("unknown pipeline".into()));
            }
            let rate = match (&e.usd, &e.wei, &e.orchestrator_multiple) {
                (Some(t), None, None) => Rate::Usd(parse_amount(t).map_err(at)?),
                (None, Some(t), None) => Rate::Wei(parse_amount(t).map_err(at)?),
                (None, None, Some(t)) => Rate::OrchestratorMultiple(parse_amount(t).map_err(at)?),
                _ => return Err(at("give exactly one of usd, wei, orchestrator_multiple".into())),
            };
            if !matches!(rate, Rate::Usd(_)) && usd_per_eth.is_none() && feed.is_none() {
                let message = "priced in wei: --usd-per-eth (or --usd-per-eth-feed) is required";
                return Err(at(message.into()));
            }
            let model = e.model.clone().filter(|m| !m.is_empty() && m != "default");
            if rates.insert((e.pipeline.clone(), model), rate).is_some() {
                return Err(at("listed twice".into()));
            }
        }
        Ok(Self { rates, usd_per_eth, feed })
    }

    /// The Chainlink feed the ETH/USD rate is read from, if one is configured.
    pub fn feed(&self) -> Option<&Arc<Feed>> {
        self.feed.as_ref()
    }

    /// Whether no price is set (every job is free to customers).
    pub fn is_empty(&self) -> bool {
        self.rates.is_empty()
    }

    /// The USD value of one ETH: the configured rate, else the feed's last answer while it is
    /// within its maximum age.
    pub fn usd_per_eth(&self) -> Option<Ratio> {
        self.usd_per_eth.or_else(|| self.feed.as_ref()?.rate(super::now()))
    }

    /// The rate of `pipeline` and `model`: the model's own, else the pipeline's.
    pub fn rate(&self, pipeline: &str, model: &str) -> Option<&Rate> {
        let key = |m: Option<&str>| (pipeline.to_owned(), m.map(str::to_owned));
        self.rates.get(&key(Some(model))).or_else(|| self.rates.get(&key(None)))
    }

    /// What a customer pays per natural unit of `pipeline` and `model`, for display (the
    /// catalogue). `network_price`: the orchestrator's price in wei per gateway unit, which a
    /// multiple needs. `None` when the pipeline has no customer price.
    pub fn quote(
        &self,
        pipeline: &str,
        model: &str,
        network_price: Option<Ratio>,
    ) -> Option<Quote> {
        let unit = natural_unit(pipeline)?;
        let rate = self.rate(pipeline, model)?;
        let per_unit_fee = network_price
            .and_then(|p| p.checked_mul_u64(unit.gateway_units).ok())
            .unwrap_or(Ratio::ZERO);
        let usd = match rate {
            Rate::OrchestratorMultiple(_) if network_price.is_none() => None,
            _ => {
                let usd_per_eth = self.usd_per_eth().unwrap_or(Ratio::ZERO);
                usd_of(rate, &Ratio::ONE, &per_unit_fee, &usd_per_eth).ok()
            }
        };
        let wei = match rate {
            Rate::Wei(w) => Some(*w),
            Rate::OrchestratorMultiple(m) => {
                network_price.and_then(|_| per_unit_fee.checked_mul(m).ok())
            }
            Rate::Usd(u) => self.usd_per_eth().and_then(|rate| {
                u.checked_mul(&Ratio::from_u64(WEI_PER_ETH)).and_then(|w| w.checked_div(&rate)).ok()
            }),
        };
        Some(Quote {
            unit,
            usd_per_unit: usd.map(|u| u.to_decimal_string(9)),
            usd_per_unit_exact: usd.map(|u| u.to_string()),
            wei_per_unit: wei.map(|w| w.to_string()),
            orchestrator_multiple: match rate {
                Rate::OrchestratorMultiple(m) => Some(m.to_string()),
                _ => None,
            },
        })
    }

    /// What a job of `units` gateway units costs the customer, in nano-USD rounded up; 0 when
    /// the pipeline has no customer price. `orchestrator_fee_wei`: what the orchestrator
    /// charges for the same job, which a multiple needs (none: 0). `Err` when the price is in
    /// wei and no current ETH/USD rate is known (the feed is unreadable or too old).
    pub fn charge(
        &self,
        pipeline: &str,
        model: &str,
        units: u64,
        orchestrator_fee_wei: Option<&Ratio>,
    ) -> Result<u64, PriceError> {
        let job = (pipeline, model, units, orchestrator_fee_wei);
        self.charge_at(job, None).map(|(nano, _)| nano)
    }

    /// [`charge`](Self::charge) of `(pipeline, model, units, orchestrator_fee_wei)` at
    /// `usd_per_eth` when given, else at the current ETH/USD rate; answers the charge and the
    /// rate it was priced at (none when no rate was needed). A job is settled at the rate it
    /// was reserved at: priced again at the settlement's own rate, a feed gone stale in
    /// between would leave it charged its whole reserved bound rather than what it used.
    pub fn charge_at(
        &self,
        (pipeline, model, units, orchestrator_fee_wei): (&str, &str, u64, Option<&Ratio>),
        usd_per_eth: Option<Ratio>,
    ) -> Result<(u64, Option<Ratio>), PriceError> {
        let (Some(unit), Some(rate)) = (natural_unit(pipeline), self.rate(pipeline, model)) else {
            return Ok((0, None));
        };
        // Read once: read again while pricing, a rate that aged out in between priced the
        // job at 0 USD an ETH.
        let usd_per_eth = match rate {
            Rate::Usd(_) => None,
            _ => Some(usd_per_eth.or_else(|| self.usd_per_eth()).ok_or_else(|| {
                PriceError("no current ETH/USD rate (the price feed is unavailable)".into())
            })?),
        };
        let count = Ratio::new(U512::from(units), U512::from(unit.gateway_units));
        let fee = orchestrator_fee_wei.copied().unwrap_or(Ratio::ZERO);
        let nano = count
            .ok()
            .and_then(|count| usd_of(rate, &count, &fee, &usd_per_eth.unwrap_or(Ratio::ZERO)).ok())
            .map_or(u64::MAX, |usd| to_nano_up(&usd));
        Ok((nano, usd_per_eth))
    }
}

/// The USD of `count` natural units at `rate`, where the orchestrator's fee is `fee_wei` and
/// an ETH is worth `usd_per_eth`.
fn usd_of(
    rate: &Rate,
    count: &Ratio,
    fee_wei: &Ratio,
    usd_per_eth: &Ratio,
) -> Result<Ratio, livepeer_pm::ArithmeticError> {
    let eth = Ratio::from_u64(WEI_PER_ETH);
    let usd_per_wei = |wei: Ratio| wei.checked_mul(usd_per_eth)?.checked_div(&eth);
    match rate {
        Rate::Usd(usd) => usd.checked_mul(count),
        Rate::Wei(wei) => usd_per_wei(wei.checked_mul(count)?),
        Rate::OrchestratorMultiple(m) => usd_per_wei(fee_wei.checked_mul(m)?),
    }
}

/// `usd` in nano-USD, rounded up (saturating at `i64::MAX`, what the database holds).
pub fn to_nano_up(usd: &Ratio) -> u64 {
    usd.checked_mul_u64(NANO_PER_USD)
        .map(|n| n.ceil())
        .ok()
        .and_then(|n| u64::try_from(n).ok())
        .map_or(i64::MAX as u64, |n| n.min(i64::MAX as u64))
}

/// Nano-USD shown as USD with 9 decimals.
pub fn usd_text(nano: i64) -> String {
    let sign = if nano < 0 { "-" } else { "" };
    let n = nano.unsigned_abs();
    format!("{sign}{}.{:09}", n / NANO_PER_USD, n % NANO_PER_USD)
}

/// A non-negative amount as decimal text (`0.0025`, `12`) or a fraction (`1/3`), exactly.
pub fn parse_amount(text: &str) -> Result<Ratio, String> {
    let t = text.trim();
    if t.contains('/') {
        return t.parse::<Ratio>().map_err(|e| format!("{t:?}: {e}"));
    }
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    let digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !digits(int) || !digits(frac) || frac.len() > 36 {
        return Err(format!("{t:?}: expected a decimal number such as 0.0025"));
    }
    let num: U512 = format!("{int}{frac}").parse().map_err(|_| format!("{t:?}: too large"))?;
    let den = U512::from(10u64).pow(U512::from(frac.len()));
    Ratio::new(num, den).map_err(|e| format!("{t:?}: {e}"))
}

#[cfg(test)]
mod tests;
