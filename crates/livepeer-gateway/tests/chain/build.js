// Compiles the Solidity file named on the command line with solc-js and prints, as JSON,
// each contract's creation bytecode: {"Name": "hex", ...}. Run by the tests (tests/it/ganache.rs)
// with NODE_PATH pointing at the pinned solc they install into target/solc.
const fs = require("fs");
const path = require("path");
const solc = require("solc");

const file = process.argv[2];
const input = {
  language: "Solidity",
  sources: { [path.basename(file)]: { content: fs.readFileSync(file, "utf8") } },
  settings: {
    // Paris avoids PUSH0, so the bytecode runs on any ganache 7 hardfork.
    evmVersion: "paris",
    optimizer: { enabled: true, runs: 200 },
    outputSelection: { "*": { "*": ["evm.bytecode.object"] } },
  },
};
const output = JSON.parse(solc.compile(JSON.stringify(input)));
const errors = (output.errors || []).filter((e) => e.severity === "error");
if (errors.length > 0) {
  for (const e of errors) console.error(e.formattedMessage);
  process.exit(1);
}
const out = {};
for (const [name, contract] of Object.entries(output.contracts[path.basename(file)])) {
  out[name] = contract.evm.bytecode.object;
}
process.stdout.write(JSON.stringify(out));
