//! What an orchestrator must offer to be used at all: a blocklist, minimum versions and price
//! caps (global and per pipeline and model).

use std::collections::HashMap;

use livepeer_pm::Address;
use serde::Deserialize;

use super::section::{section, string_or_list};
use super::values::json_or_file;
use super::{ConfigError, bad};
use crate::orchestrator::price::Price;
use crate::orchestrator::{Requirements, caps};

section! {
    /// Orchestrator requirement settings.
    pub struct Prices {
        /// Comma-separated orchestrator Ethereum addresses never to use.
        #[arg(long, env = "LP_ORCHBLOCKLIST")]
        #[serde(default, deserialize_with = "string_or_list")]
        pub orch_blocklist: Option<String>,
        /// Minimum orchestrator node version (semver; prerelease ignored).
        #[arg(long, env = "LP_ORCHMINLIVEPEERVERSION")]
        pub orch_min_livepeer_version: Option<String>,
        /// Max price per unit, in wei; 0 accepts any price [default: 0].
        #[arg(long, env = "LP_MAXPRICEPERUNIT")]
        pub max_price_per_unit: Option<i64>,
        /// Units per price, the denominator of --max-price-per-unit [default: 1].
        #[arg(long, env = "LP_PIXELSPERUNIT")]
        pub pixels_per_unit: Option<i64>,
        /// JSON (or a path to it): `{"capabilities_prices": [{"pipeline", "model_id", "price_per_unit", "pixels_per_unit"}]}`.
        #[arg(long, env = "LP_MAXPRICEPERCAPABILITY")]
        pub max_price_per_capability: Option<String>,
        /// JSON (or a path to it): `[{"pipeline", "model_id", "minVersion"}]`, minimum ai-runner versions.
        #[arg(long, env = "LP_AIMINRUNNERVERSION")]
        pub ai_min_runner_version: Option<String>,
    }
}

impl Prices {
    pub(super) fn validate(self) -> Result<Requirements, ConfigError> {
        let blocklist = blocklist(&self.orch_blocklist.unwrap_or_default())?;
        let pixels = self.pixels_per_unit.unwrap_or(1);
        if pixels <= 0 {
            return Err(bad("--pixels-per-unit", "must be at least 1"));
        }
        let max = self.max_price_per_unit.unwrap_or(0);
        let max_price =
            Price::new(max, pixels).map_err(|e| bad("--max-price-per-unit", e.to_string()))?;
        let max_price_per_model = match self.max_price_per_capability {
            Some(text) => parse_max_prices(&text, pixels)?,
            None => HashMap::new(),
        };
        let min_runner = match self.ai_min_runner_version {
            Some(text) => parse_min_runner(&text)?,
            None => HashMap::new(),
        };
        Ok(Requirements {
            min_version: self.orch_min_livepeer_version.unwrap_or_default(),
            min_runner,
            max_price: (!max_price.is_zero()).then_some(max_price),
            max_price_per_model,
            blocklist,
        })
    }
}

/// `--orch-blocklist`: addresses with or without `0x`.
fn blocklist(list: &str) -> Result<Vec<Address>, ConfigError> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            let hex = if s.starts_with("0x") || s.starts_with("0X") { &s[2..] } else { s };
            format!("0x{hex}")
                .parse::<Address>()
                .map_err(|e| bad("--orch-blocklist", format!("{s:?}: {e}")))
        })
        .collect()
}

#[derive(Debug, Deserialize)]
struct CapPrice {
    pipeline: String,
    #[serde(default = "default_model")]
    model_id: String,
    price_per_unit: serde_json::Value,
    #[serde(default)]
    pixels_per_unit: Option<i64>,
    #[serde(default)]
    currency: Option<String>,
}

fn default_model() -> String {
    "default".into()
}

fn parse_max_prices(
    text: &str,
    default_pixels: i64,
) -> Result<HashMap<(u32, String), Price>, ConfigError> {
    const S: &str = "--max-price-per-capability";
    #[derive(Deserialize)]
    struct Doc {
        capabilities_prices: Vec<CapPrice>,
    }
    let doc: Doc = serde_json::from_value(json_or_file(S, text)?)
        .map_err(|e| bad(S, format!("expected {{\"capabilities_prices\": [...]}}: {e}")))?;
    let mut out = HashMap::new();
    for (i, p) in doc.capabilities_prices.into_iter().enumerate() {
        let cap = caps::pipeline_capability(&p.pipeline)
            .ok_or_else(|| bad(S, format!("entry {i}: unknown pipeline {:?}", p.pipeline)))?;
        match p.currency.as_deref().map(str::to_ascii_uppercase).as_deref() {
            None | Some("") | Some("WEI") => {}
            Some(other) => {
                return Err(bad(
                    S,
                    format!(
                        "entry {i}: currency {other:?} needs a price feed, which is not supported yet; give wei"
                    ),
                ));
            }
        }
        let per_unit = match &p.price_per_unit {
            serde_json::Value::Number(n) => n.as_i64(),
            serde_json::Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
        .ok_or_else(|| {
            bad(S, format!("entry {i}: price_per_unit must be a whole number of wei"))
        })?;
        let pixels = p.pixels_per_unit.filter(|p| *p > 0).unwrap_or(default_pixels);
        let price = Price::new(per_unit, pixels).map_err(|e| bad(S, format!("entry {i}: {e}")))?;
        if !price.is_zero() {
            out.insert((cap, p.model_id), price);
        }
    }
    Ok(out)
}

fn parse_min_runner(text: &str) -> Result<HashMap<(u32, String), String>, ConfigError> {
    const S: &str = "--ai-min-runner-version";
    #[derive(Deserialize)]
    struct Entry {
        pipeline: String,
        model_id: String,
        #[serde(rename = "minVersion")]
        min_version: String,
    }
    let list: Vec<Entry> = serde_json::from_value(json_or_file(S, text)?).map_err(|e| {
        bad(S, format!("expected [{{\"pipeline\", \"model_id\", \"minVersion\"}}]: {e}"))
    })?;
    let mut out = HashMap::new();
    for (i, e) in list.into_iter().enumerate() {
        let cap = caps::pipeline_capability(&e.pipeline)
            .ok_or_else(|| bad(S, format!("entry {i}: unknown pipeline {:?}", e.pipeline)))?;
        out.insert((cap, e.model_id), e.min_version);
    }
    Ok(out)
}
