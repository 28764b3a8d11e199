// Precompile every config schema in conf/schemas with ajv's standalone code generator, so the
// executable validates without compiling schemas at run time. Keys: `$id`, else the file stem
// (conf/schemas/<plugin>.schema.json -> "<plugin>"). `only`: just those keys (a plugin bundle
// needs its own schema and netconf).
import { Ajv, _ } from 'ajv';
import standaloneCode from 'ajv/dist/standalone/index.js';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

export function generateValidators(root, outFile, only) {
  const schemaDir = path.join(root, 'conf', 'schemas');
  const formatsPath = path.join(root, 'shared', 'cni', 'formats.ts');
  // Must match AJV_OPTIONS in shared/cni/ajv-runtime.ts.
  const ajv = new Ajv({
    allErrors: false,
    strict: false,
    useDefaults: false,
    allowUnionTypes: true,
    verbose: true,
    code: { source: true, formats: _`require(${formatsPath})` },
  });
  const names = ['ip', 'ipv4', 'ipv6', 'cidr', 'mac', 'ifname'];
  for (const n of names) ajv.addFormat(n, () => true);
  const refs = {};
  for (const f of readdirSync(schemaDir)
    .filter((f) => f.endsWith('.schema.json'))
    .sort()) {
    const schema = JSON.parse(readFileSync(path.join(schemaDir, f), 'utf8'));
    const key = schema.$id ?? f.replace(/\.schema\.json$/, '');
    if (only && !only.includes(key)) continue;
    ajv.addSchema(schema, schema.$id ? undefined : key);
    refs[key] = key;
  }
  writeFileSync(outFile, standaloneCode(ajv, refs));
  return Object.keys(refs);
}
