//! `--network`: off-chain, one of go-livepeer's known networks (whose Controller address and
//! chain id are known), or a custom network with its own `--eth-controller`.

use livepeer_pm::Address;

use super::{ConfigError, bad};

/// The AI subnet's own ServiceRegistry on Arbitrum One, which go-livepeer's
/// `-aiServiceRegistry` uses for service URIs instead of the Controller's.
pub const AI_SERVICE_REGISTRY: &str = "0x04C0b249740175999E5BF5c9ac1dA92431EF34C5";

/// The networks go-livepeer still configures (`cmd/livepeer/starter/starter.go`): name,
/// Controller address, and the chain id its RPC endpoint must report.
const PRESETS: &[(&str, &str, u64)] = &[
    ("arbitrum-one-mainnet", "0xD8E8328501E9645d16Cf49539efC04f734606ee4", 42161),
    ("mainnet", "0xf96d54e490317c557a967abfa5d6e33006be69b3", 1),
];

/// Which chain the gateway pays and discovers on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Network {
    /// No chain: no discovery on chain, no chain id check (go-livepeer's default).
    #[default]
    Offchain,
    /// A known network: its Controller (unless `--eth-controller` overrides it) and chain id.
    Preset {
        /// The network's name.
        name: &'static str,
        /// Its Controller address.
        controller: Address,
        /// The chain id its endpoint must report.
        chain_id: u64,
    },
    /// Any other name, with `--eth-controller` (a development chain); no chain id check.
    Custom(String),
}

impl Network {
    /// Parses `--network`; an unknown name is a custom network, which needs `--eth-controller`.
    pub(super) fn parse(name: Option<&str>, has_controller: bool) -> Result<Self, ConfigError> {
        let name = name.map(str::trim).filter(|n| !n.is_empty()).unwrap_or("offchain");
        if name == "offchain" {
            return Ok(Self::Offchain);
        }
        if let Some((name, controller, chain_id)) = PRESETS.iter().find(|(n, _, _)| *n == name) {
            let controller = controller
                .parse()
                .map_err(|e| bad("--network", format!("preset controller: {e}")))?;
            return Ok(Self::Preset { name, controller, chain_id: *chain_id });
        }
        if !has_controller {
            let known: Vec<&str> = PRESETS.iter().map(|(n, _, _)| *n).collect();
            let message = format!(
                "{name:?}: expected offchain, {}, or a custom network name with --eth-controller",
                known.join(", ")
            );
            return Err(bad("--network", message));
        }
        Ok(Self::Custom(name.to_owned()))
    }

    /// The network's name as given.
    #[must_use]
    pub fn name(&self) -> &str {
        match self {
            Self::Offchain => "offchain",
            Self::Preset { name, .. } => name,
            Self::Custom(name) => name,
        }
    }

    /// Whether the gateway runs on a chain (pays, discovers there).
    #[must_use]
    pub fn is_onchain(&self) -> bool {
        !matches!(self, Self::Offchain)
    }

    /// The chain id the endpoint must report, for a known network.
    #[must_use]
    pub fn chain_id(&self) -> Option<u64> {
        match self {
            Self::Preset { chain_id, .. } => Some(*chain_id),
            _ => None,
        }
    }

    /// The preset Controller address, for a known network.
    #[must_use]
    pub fn controller(&self) -> Option<Address> {
        match self {
            Self::Preset { controller, .. } => Some(*controller),
            _ => None,
        }
    }
}

/// `--ai-service-registry`: `true` for the AI subnet's registry, `false`/unset for none, or
/// an address (a registry deployed elsewhere, e.g. on a test chain).
pub(super) fn ai_service_registry(value: Option<&str>) -> Result<Option<Address>, ConfigError> {
    match value.map(str::trim) {
        None | Some("" | "false") => Ok(None),
        Some("true") => AI_SERVICE_REGISTRY
            .parse::<Address>()
            .map(Some)
            .map_err(|e| bad("--ai-service-registry", e.to_string())),
        Some(other) => other.parse::<Address>().map(Some).map_err(|e| {
            bad(
                "--ai-service-registry",
                format!("{other:?}: expected true, false or an address: {e}"),
            )
        }),
    }
}
