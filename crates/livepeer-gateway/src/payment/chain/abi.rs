//! The Livepeer contract functions the gateway calls, as `sol!` bindings. Names, argument and
//! return types are those of go-livepeer's generated bindings (`eth/contracts/*.go`), so the
//! selectors and encodings are the protocol's.

// The macro generates items without doc comments of their own.
#![allow(missing_docs)]

alloy::sol! {
    /// The protocol's registry of contract addresses (`Controller.sol`).
    interface Controller {
        function getContract(bytes32 _id) external view returns (address);
    }

    /// Probabilistic micropayments: deposits, reserves, unlocks (`TicketBroker.sol`).
    interface TicketBroker {
        struct Sender {
            uint256 deposit;
            uint256 withdrawRound;
        }
        struct ReserveInfo {
            uint256 fundsRemaining;
            uint256 claimedInCurrentRound;
        }
        function getSenderInfo(address _sender)
            external
            view
            returns (Sender memory sender, ReserveInfo memory reserve);
        function fundDepositAndReserve(uint256 _depositAmount, uint256 _reserveAmount)
            external
            payable;
        function unlock() external;
        function cancelUnlock() external;
        function withdraw() external;
        function unlockPeriod() external view returns (uint256);
    }

    /// Rounds (`RoundsManager.sol`).
    interface RoundsManager {
        function currentRound() external view returns (uint256);
        function lastInitializedRound() external view returns (uint256);
        function roundLength() external view returns (uint256);
    }

    /// Bonding and the transcoder pool, a sorted linked list (`BondingManager.sol`).
    interface BondingManager {
        function getFirstTranscoderInPool() external view returns (address);
        function getNextTranscoderInPool(address _transcoder) external view returns (address);
        function getTranscoderPoolSize() external view returns (uint256);
        function isActiveTranscoder(address _transcoder) external view returns (bool);
        function transcoderTotalStake(address _transcoder) external view returns (uint256);
        function getTranscoder(address _transcoder)
            external
            view
            returns (
                uint256 lastRewardRound,
                uint256 rewardCut,
                uint256 feeShare,
                uint256 lastActiveStakeUpdateRound,
                uint256 activationRound,
                uint256 deactivationRound,
                uint256 activeCumulativeRewards,
                uint256 cumulativeRewards,
                uint256 cumulativeFees,
                uint256 lastFeeRound
            );
        function getTranscoderEarningsPoolForRound(address _transcoder, uint256 _round)
            external
            view
            returns (
                uint256 totalStake,
                uint256 transcoderRewardCut,
                uint256 transcoderFeeShare,
                uint256 cumulativeRewardFactor,
                uint256 cumulativeFeeFactor
            );
    }

    /// Orchestrators' service URIs (`ServiceRegistry.sol`; the AI subnet runs its own).
    interface ServiceRegistry {
        function getServiceURI(address _addr) external view returns (string);
    }
}
