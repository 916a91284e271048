// Checks Kubernetes manifests against the API's JSON schemas, offline: the
// schemas ship inside the kubernetes-models package pinned by
// package-lock.json. Every document of every file given must be a known
// apiVersion/kind, valid, and free of fields the schema does not know.
// Usage: node check-manifests.mjs [--expect-invalid] FILE.yaml...
// With --expect-invalid every document must be refused instead (a check of
// the checker).
import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { parseAllDocuments } from "yaml";

const require = createRequire(import.meta.url);
const root = dirname(dirname(require.resolve("kubernetes-models/package.json")));

// The models' compiled schemas accept fields they do not name, so a typo
// would pass. Their type declarations list each object's fields, and the
// type of each: that is what the walk below checks names against.
const declared = new Map();
function fieldsOf(dts) {
  if (declared.has(dts)) return declared.get(dts);
  const fields = new Map();
  declared.set(dts, fields);
  const text = readFileSync(dts, "utf8");
  const imports = new Map();
  for (const m of text.matchAll(/^import \{ (\w+) \} from "([^"]+)";$/gm)) {
    let file = m[2].startsWith(".") ? join(dirname(dts), m[2]) : join(root, m[2]);
    file = file.replace(/\.js$/, "") + ".d.ts";
    imports.set(m[1], file);
  }
  const body = text.match(/^export interface I\w+[^{]*\{\n([\s\S]*?)^\}/m);
  if (!body) return null; // a scalar (Quantity, IntOrString...)
  for (const m of body[1].matchAll(/^ {4}"([^"]+)"\??: (.*)$/gm)) {
    const ref = m[2].startsWith("{") ? null : m[2].match(/\b(IIoK8s\w+)/);
    fields.set(m[1], ref && imports.has(ref[1]) ? imports.get(ref[1]) : null);
  }
  return fields;
}

function unknownFields(dts, value, path, out) {
  if (value === null || typeof value !== "object") return;
  if (Array.isArray(value)) {
    value.forEach((v, i) => unknownFields(dts, v, `${path}[${i}]`, out));
    return;
  }
  const fields = existsSync(dts) ? fieldsOf(dts) : null;
  if (fields === null) return;
  for (const [key, v] of Object.entries(value)) {
    if (!fields.has(key)) out.push(`${path}.${key}`);
    else if (fields.get(key) !== null) unknownFields(fields.get(key), v, `${path}.${key}`, out);
  }
}

let args = process.argv.slice(2);
const expectInvalid = args[0] === "--expect-invalid";
if (expectInvalid) args = args.slice(1);
let failed = 0;
let checked = 0;
for (const file of args) {
  const docs = parseAllDocuments(readFileSync(file, "utf8"));
  for (const [i, d] of docs.entries()) {
    const where = `${file} document ${i + 1}`;
    checked++;
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
    const unknown = [];
    unknownFields(join(root, mod + ".d.ts"), obj, "", unknown);
    if (unknown.length) {
      console.error(`${where}: ${obj.kind}: fields the schema does not know: ${unknown.join(", ")}`);
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
if (checked === 0) {
  console.error("no documents to check");
  process.exit(2);
}
if (expectInvalid) {
  console.log(`${failed} of ${checked} documents refused, as they must be`);
  process.exit(failed === checked ? 0 : 1);
}
process.exit(failed ? 1 : 0);
