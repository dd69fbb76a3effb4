// Prints, as one JSON object keyed by schema id, the OpenAPI schemas of the Gateway API kinds
// that @kubernetes-models/gateway-api generated from the Gateway API CRDs, with every schema
// they reference (ObjectMeta ...). Usage: node gateway-schemas.cjs NODE_MODULES_DIR Kind...
// The package registers each schema with @kubernetes-models/validate the first time a model
// is validated; this script records those registrations instead of validating in Node, so that
// the Python test validates with jsonschema, strictly (unknown fields rejected).
"use strict";
const path = require("path");
const [modules, ...kinds] = process.argv.slice(2);
const load = (name) => require(path.join(modules, name));
const validate = load("@kubernetes-models/validate");
const schemas = {};
validate.register = (id, schema) => {
  schemas[id] = schema;
};
const v1 = load("@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1");
const roots = {};
for (const kind of kinds) {
  const Model = v1[kind];
  if (!Model) {
    console.error(`no Gateway API v1 kind ${kind} in ${modules}`);
    process.exit(2);
  }
  const before = new Set(Object.keys(schemas));
  try {
    new Model({ metadata: { name: "probe" }, spec: {} }).validate();
  } catch (e) {
    // the probe object is incomplete on purpose; only the registrations matter
  }
  const added = Object.keys(schemas).filter((id) => !before.has(id));
  roots[kind] = added.find((id) => id.endsWith(`.v1.${kind}`));
  if (!roots[kind]) {
    console.error(`${kind}: no schema was registered (package layout changed?)`);
    process.exit(2);
  }
}
process.stdout.write(JSON.stringify({ roots, schemas }));
