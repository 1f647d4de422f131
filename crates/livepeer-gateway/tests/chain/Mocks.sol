// SPDX-License-Identifier: MIT
// Test doubles for the Livepeer Controller and TicketBroker, answering the same ABI as the real
// contracts for the two calls the gateway makes. Compiled by `compile.js` (solc-js) into
// `TestController.bin` and `TestTicketBroker.bin`, which `tests/chain.rs` deploys on ganache.
pragma solidity ^0.8.0;

/// Controller: `getContract(bytes32)` resolves `keccak256("TicketBroker")` to the address given
/// to the constructor, and any other key to the zero address (as the real Controller does).
contract TestController {
    mapping(bytes32 => address) private registry;

    constructor(address ticketBroker) {
        registry[keccak256("TicketBroker")] = ticketBroker;
    }

    function getContract(bytes32 id) external view returns (address) {
        return registry[id];
    }
}

/// TicketBroker: `getSenderInfo(address)` returns fixed values for two known senders and zeros
/// for any other address, with the same return shape as the real MixinTicketBrokerCore.
contract TestTicketBroker {
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
        pure
        returns (Sender memory sender, ReserveInfo memory reserve)
    {
        if (_sender == address(uint160(0xA11CE))) {
            // Locked: withdrawRound == 0. Values above 2^64 and 2^128 check exact decoding.
            sender = Sender(1000000000000000000000007, 0);
            reserve = ReserveInfo(340282366920938463463374607431768211457, 123456789);
        } else if (_sender == address(uint160(0xB0B))) {
            // Unlocking from round 4242; deposit 2^200 + 1.
            sender = Sender(2 ** 200 + 1, 4242);
            reserve = ReserveInfo(5, 0);
        }
    }
}
