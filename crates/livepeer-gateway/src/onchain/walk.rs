//! One walk of the BondingManager's transcoder pool (go-livepeer `eth/client.go`
//! `TranscoderPool`), made fast: go-livepeer makes five calls per orchestrator one after the
//! other (about 113 s for ~100, GATEWAY.md §9 item 9). Here only the linked list itself is
//! followed one call at a time (`getFirstTranscoderInPool`, then `getNextTranscoderInPool`);
//! every orchestrator's details (`getTranscoder`, the service URI, the stake of the round) are
//! then read in JSON-RPC batches, the three kinds at once. Calls read the latest block (a
//! pinned historical block costs some nodes, ganache among them, far more per call); a
//! registration that lands mid-walk shows on the next walk.

use alloy::eips::BlockId;
use futures_util::future::try_join3;
use livepeer_pm::{Address, U256};
use serde::Serialize;

use crate::payment::chain::abi::{BondingManager, ServiceRegistry};
use crate::payment::chain::{ChainClient, ChainError, Contracts, Rounds};

/// Most orchestrators followed in the list: the protocol's pool holds 100; this bounds a
/// malformed (cyclic) list.
pub const MAX_POOL: usize = 1000;

/// Longest service URI kept: anyone can register a long one on chain; a longer one is kept
/// empty (unusable) rather than stored and shown.
pub const MAX_SERVICE_URI: usize = 2048;

/// An orchestrator of the pool, as read in one walk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainOrch {
    /// Its Ethereum address (checksummed in JSON).
    pub address: Address,
    /// Its registered service URI; empty when none is set.
    pub service_uri: String,
    /// Total stake of its earnings pool for the round (LPT base units).
    #[serde(serialize_with = "decimal")]
    pub stake: U256,
    /// First round it is active in.
    #[serde(serialize_with = "decimal")]
    pub activation_round: U256,
    /// First round it is no longer active in.
    #[serde(serialize_with = "decimal")]
    pub deactivation_round: U256,
    /// Whether it is active in the walk's round.
    pub active: bool,
}

/// U256 as a decimal string: exact, and readable by any JSON client.
fn decimal<S: serde::Serializer>(v: &U256, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&v.to_string())
}

/// go-livepeer's activity rule (`common/db.go` `getURLs`, BondingManager `isActiveTranscoder`):
/// `activationRound <= round < deactivationRound`.
#[must_use]
pub fn is_active(activation: U256, deactivation: U256, round: U256) -> bool {
    activation <= round && round < deactivation
}

/// What one walk found.
#[derive(Debug, Clone)]
pub struct Walk {
    /// The latest block when the walk started.
    pub block: u64,
    /// The rounds at that block.
    pub rounds: Rounds,
    /// Every orchestrator of the pool, in list order.
    pub orchestrators: Vec<ChainOrch>,
}

/// Walks the pool at the latest block.
///
/// # Errors
/// Any failed call: a partial walk is not a picture of the pool.
pub async fn walk(client: &ChainClient, contracts: &Contracts) -> Result<Walk, ChainError> {
    let block = client.block_number().await?;
    let at = BlockId::latest();
    let rounds = client.rounds_at(contracts.rounds_manager, at).await?;
    let round = rounds.last_initialized;
    let addresses = list(client, contracts.bonding_manager, at).await?;
    let bm = contracts.bonding_manager;
    let transcoders: Vec<_> = addresses
        .iter()
        .map(|&a| (bm, BondingManager::getTranscoderCall { _transcoder: a }))
        .collect();
    let uris: Vec<_> = addresses
        .iter()
        .map(|&a| (contracts.service_registry, ServiceRegistry::getServiceURICall { _addr: a }))
        .collect();
    let pools: Vec<_> = addresses
        .iter()
        .map(|&a| {
            let call = BondingManager::getTranscoderEarningsPoolForRoundCall {
                _transcoder: a,
                _round: round,
            };
            (bm, call)
        })
        .collect();
    let (transcoders, uris, pools) = try_join3(
        client.view_batch(&transcoders, at),
        client.view_batch(&uris, at),
        client.view_batch(&pools, at),
    )
    .await?;
    let mut orchestrators = Vec::with_capacity(addresses.len());
    for (((address, t), uri), pool) in addresses.into_iter().zip(transcoders).zip(uris).zip(pools) {
        let t = t?;
        let mut service_uri = uri?;
        if service_uri.len() > MAX_SERVICE_URI {
            tracing::debug!(%address, bytes = service_uri.len(), "service URI too long; ignored");
            service_uri.clear();
        }
        orchestrators.push(ChainOrch {
            address,
            service_uri,
            stake: pool?.totalStake,
            activation_round: t.activationRound,
            deactivation_round: t.deactivationRound,
            active: is_active(t.activationRound, t.deactivationRound, round),
        });
    }
    Ok(Walk { block, rounds, orchestrators })
}

/// Follows the linked list from its head until the zero address.
async fn list(
    client: &ChainClient,
    bonding_manager: Address,
    at: BlockId,
) -> Result<Vec<Address>, ChainError> {
    let mut addresses = Vec::new();
    let mut next =
        client.view(bonding_manager, &BondingManager::getFirstTranscoderInPoolCall {}, at).await?;
    while !next.is_zero() {
        if addresses.len() >= MAX_POOL || addresses.contains(&next) {
            return Err(ChainError::Malformed {
                method: "getNextTranscoderInPool",
                detail: format!("the pool list loops or exceeds {MAX_POOL} entries"),
            });
        }
        addresses.push(next);
        let call = BondingManager::getNextTranscoderInPoolCall { _transcoder: next };
        next = client.view(bonding_manager, &call, at).await?;
    }
    Ok(addresses)
}
