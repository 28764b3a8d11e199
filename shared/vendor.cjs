// Heavy third-party packages that only a few commands use (etcd3 + gRPC for `overlay`, execa
// for `cnitool`) are bundled separately and embedded in the executable as SEA assets, so the
// common plugins do not parse them at every start. scripts/build.mjs resolves those imports to
// loadVendor(name), which evaluates the asset on first use.
'use strict';
const vm = require('node:vm');

const loaded = new Map();

function loadVendor(name) {
  if (loaded.has(name)) return loaded.get(name);
  const sea = require('node:sea');
  if (!sea.isSea()) throw new Error(`vendor bundle "${name}" is only available inside the built executable`);
  const code = sea.getAsset(`vendor/${name}.cjs`, 'utf8');
  const fn = vm.compileFunction(code, ['exports', 'require', 'module', '__filename', '__dirname'], { filename: `vendor/${name}.cjs` });
  const mod = { exports: {} };
  fn(mod.exports, require, mod, `vendor/${name}.cjs`, 'vendor');
  loaded.set(name, mod.exports);
  return mod.exports;
}

module.exports = { loadVendor };
