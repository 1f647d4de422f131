// SPDX-License-Identifier: MIT
// Test doubles of the Livepeer protocol contracts the gateway reads and calls, with the same
// function names, arguments and return types as Livepeer's (go-livepeer eth/contracts/*.go),
// plus test-only setters. Written for these tests; no Livepeer code is copied.
pragma solidity 0.8.26;

contract Controller {
    mapping(bytes32 => address) private contracts;

    // Livepeer's signature; no owner check in this double.
    function setContractInfo(bytes32 _id, address _contractAddress, bytes20) external {
        contracts[_id] = _contractAddress;
    }

    function getContract(bytes32 _id) external view returns (address) {
        return contracts[_id];
    }
}

contract RoundsManager {
    uint256 public lastInitializedRound;
    uint256 public roundLength = 5760;

    function currentRound() external view returns (uint256) {
        return lastInitializedRound;
    }

    function currentRoundInitialized() external pure returns (bool) {
        return true;
    }

    // Test-only: moves the protocol to `_round` (initialized).
    function setRound(uint256 _round) external {
        lastInitializedRound = _round;
    }
}

contract BondingManager {
    struct Transcoder {
        uint256 stake;
        uint256 activationRound;
        uint256 deactivationRound;
        address next;
        bool registered;
    }

    mapping(address => Transcoder) private transcoders;
    address private first;
    address private last;
    uint256 private size;
    RoundsManager private rounds;

    constructor(RoundsManager _rounds) {
        rounds = _rounds;
    }

    // Test-only: appends orchestrators to the pool (a linked list, as Livepeer's sorted list).
    function register(
        address[] calldata _addrs,
        uint256[] calldata _stakes,
        uint256[] calldata _activation,
        uint256[] calldata _deactivation
    ) external {
        for (uint256 i = 0; i < _addrs.length; i++) {
            Transcoder storage t = transcoders[_addrs[i]];
            require(!t.registered, "already registered");
            t.registered = true;
            t.stake = _stakes[i];
            t.activationRound = _activation[i];
            t.deactivationRound = _deactivation[i];
            if (first == address(0)) {
                first = _addrs[i];
            } else {
                transcoders[last].next = _addrs[i];
            }
            last = _addrs[i];
            size++;
        }
    }

    function getFirstTranscoderInPool() external view returns (address) {
        return first;
    }

    function getNextTranscoderInPool(address _transcoder) external view returns (address) {
        return transcoders[_transcoder].next;
    }

    function getTranscoderPoolSize() external view returns (uint256) {
        return size;
    }

    function isActiveTranscoder(address _transcoder) public view returns (bool) {
        Transcoder storage t = transcoders[_transcoder];
        uint256 round = rounds.currentRound();
        return t.activationRound <= round && round < t.deactivationRound;
    }

    function transcoderTotalStake(address _transcoder) external view returns (uint256) {
        return transcoders[_transcoder].stake;
    }

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
        )
    {
        Transcoder storage t = transcoders[_transcoder];
        activationRound = t.activationRound;
        deactivationRound = t.deactivationRound;
        rewardCut = 250000;
        feeShare = 500000;
        return (
            lastRewardRound,
            rewardCut,
            feeShare,
            lastActiveStakeUpdateRound,
            activationRound,
            deactivationRound,
            activeCumulativeRewards,
            cumulativeRewards,
            cumulativeFees,
            lastFeeRound
        );
    }

    function getTranscoderEarningsPoolForRound(address _transcoder, uint256)
        external
        view
        returns (
            uint256 totalStake,
            uint256 transcoderRewardCut,
            uint256 transcoderFeeShare,
            uint256 cumulativeRewardFactor,
            uint256 cumulativeFeeFactor
        )
    {
        totalStake = transcoders[_transcoder].stake;
        return (totalStake, transcoderRewardCut, transcoderFeeShare, cumulativeRewardFactor, cumulativeFeeFactor);
    }
}

contract ServiceRegistry {
    mapping(address => string) private uris;

    function setServiceURI(string calldata _serviceURI) external {
        uris[msg.sender] = _serviceURI;
    }

    // Test-only: sets other addresses' URIs.
    function setServiceURIs(address[] calldata _addrs, string[] calldata _uris) external {
        for (uint256 i = 0; i < _addrs.length; i++) {
            uris[_addrs[i]] = _uris[i];
        }
    }

    function getServiceURI(address _addr) external view returns (string memory) {
        return uris[_addr];
    }
}

contract TicketBroker {
    struct Sender {
        uint256 deposit;
        uint256 withdrawRound;
    }

    struct ReserveInfo {
        uint256 fundsRemaining;
        uint256 claimedInCurrentRound;
    }

    mapping(address => Sender) private senders;
    mapping(address => uint256) private reserves;
    RoundsManager private rounds;
    uint256 public unlockPeriod;

    constructor(RoundsManager _rounds, uint256 _unlockPeriod) {
        rounds = _rounds;
        unlockPeriod = _unlockPeriod;
    }

    function fundDepositAndReserve(uint256 _depositAmount, uint256 _reserveAmount) external payable {
        require(msg.value == _depositAmount + _reserveAmount, "msg.value does not equal sum of deposit amount and reserve amount");
        // Funding cancels an unlock in progress, as Livepeer's does.
        senders[msg.sender].withdrawRound = 0;
        senders[msg.sender].deposit += _depositAmount;
        reserves[msg.sender] += _reserveAmount;
    }

    function unlock() external {
        Sender storage s = senders[msg.sender];
        require(s.deposit > 0 || reserves[msg.sender] > 0, "sender deposit and reserve are zero");
        require(s.withdrawRound == 0, "unlock already initiated");
        s.withdrawRound = rounds.currentRound() + unlockPeriod;
    }

    function cancelUnlock() external {
        Sender storage s = senders[msg.sender];
        require(s.withdrawRound > 0, "no unlock request in progress");
        s.withdrawRound = 0;
    }

    function withdraw() external {
        Sender storage s = senders[msg.sender];
        uint256 deposit = s.deposit;
        uint256 reserve = reserves[msg.sender];
        require(deposit > 0 || reserve > 0, "sender deposit and reserve are zero");
        require(s.withdrawRound > 0, "no unlock request in progress");
        require(s.withdrawRound <= rounds.currentRound(), "account is locked");
        s.deposit = 0;
        s.withdrawRound = 0;
        reserves[msg.sender] = 0;
        payable(msg.sender).transfer(deposit + reserve);
    }

    function getSenderInfo(address _sender)
        external
        view
        returns (Sender memory sender, ReserveInfo memory reserve)
    {
        sender = senders[_sender];
        reserve = ReserveInfo(reserves[_sender], 0);
    }
}
