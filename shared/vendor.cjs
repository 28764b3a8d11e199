// Heavy third-party packages that only a few commands use (etcd3 + gRPC for `overlay`, execa
// for `cnitool`) are bundled separately and embedded in the executable as SEA assets, with a
// V8 code cache made at build time, so the common plugins never parse them and the commands
// that do need them skip most of the compile. scripts/build.mjs resolves those imports to
// loadVendor(name), which evaluates the asset on first use.
'use strict';
const vm = require('node:vm');

const VENDOR_WRAPPER_HEAD = '(function (exports, require, module, __filename, __dirname) {';
const VENDOR_WRAPPER_TAIL = '\n})';
const loaded = new Map();

function loadVendor(name) {
  if (loaded.has(name)) return loaded.get(name);
  const sea = require('node:sea');
  if (!sea.isSea()) throw new Error(`vendor bundle "${name}" is only available inside the built executable`);
  const filename = `vendor/${name}.cjs`;
  let cachedData;
  try {
    cachedData = process.env.CNI_TS_NO_VENDOR_CACHE ? undefined : Buffer.from(sea.getAsset(`vendor/${name}.cache`));
  } catch {
    cachedData = undefined;
  }
  const script = new vm.Script(VENDOR_WRAPPER_HEAD + sea.getAsset(filename, 'utf8') + VENDOR_WRAPPER_TAIL, { filename, cachedData });
  if (process.env.CNI_TS_DEBUG_VENDOR) process.stderr.write(`vendor ${name}: code cache ${cachedData ? (script.cachedDataRejected ? 'rejected' : 'used') : 'absent'}\n`);
  const mod = { exports: {} };
  script.runInThisContext()(mod.exports, require, mod, filename, 'vendor');
  loaded.set(name, mod.exports);
  return mod.exports;
}

module.exports = { loadVendor, VENDOR_WRAPPER_HEAD, VENDOR_WRAPPER_TAIL };
