// Validates GitHub Actions workflow files against SchemaStore's github-workflow JSON schema, as
// compiled into @action-validator/core (WebAssembly: no network, no binary download).
// Usage: node validate-workflow.cjs NODE_MODULES_DIR FILE...
// Prints one JSON object, {FILE: [errors]}; exits 0 either way (the Python test judges).
"use strict";
const fs = require("fs");
const path = require("path");
const [modules, ...files] = process.argv.slice(2);
const { validateWorkflow } = require(path.join(modules, "@action-validator/core"));
const out = {};
for (const file of files) {
  out[file] = validateWorkflow(fs.readFileSync(file, "utf8")).errors;
}
console.log(JSON.stringify(out));
