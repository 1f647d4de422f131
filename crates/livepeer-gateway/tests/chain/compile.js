// Regenerates TestController.bin and TestTicketBroker.bin (creation bytecode, hex) from Mocks.sol.
// Usage, from the workspace root:
//   npm install --prefix target/ganache solc@0.8.26
//   NODE_PATH=target/ganache/node_modules node crates/livepeer-gateway/tests/chain/compile.js
const fs = require("fs");
const path = require("path");
const solc = require("solc");

const source = fs.readFileSync(path.join(__dirname, "Mocks.sol"), "utf8");
const input = {
  language: "Solidity",
  sources: { "Mocks.sol": { content: source } },
  settings: {
    // Paris avoids PUSH0, so the bytecode runs on any ganache 7 hardfork.
    evmVersion: "paris",
    optimizer: { enabled: true, runs: 200 },
    outputSelection: { "*": { "*": ["evm.bytecode.object", "evm.methodIdentifiers"] } },
  },
};
const output = JSON.parse(solc.compile(JSON.stringify(input)));
const errors = (output.errors || []).filter((e) => e.severity === "error");
if (errors.length > 0) {
  for (const e of errors) console.error(e.formattedMessage);
  process.exit(1);
}
for (const name of ["TestController", "TestTicketBroker"]) {
  const contract = output.contracts["Mocks.sol"][name];
  console.log(name, solc.version(), JSON.stringify(contract.evm.methodIdentifiers));
  fs.writeFileSync(path.join(__dirname, `${name}.bin`), contract.evm.bytecode.object + "\n");
}
