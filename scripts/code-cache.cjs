// node code-cache.cjs BUNDLE OUT [eager|executed]
// Writes the V8 code cache of BUNDLE wrapped as shared/vendor.cjs runs it. Run by the same
// Node binary the executable embeds, with default flags (V8 refuses a cache made by another
// version or flag set).
// eager:    every function compiled (--no-lazy while compiling, flags restored before the
//           cache is written, so its flag hash is the default one).
// executed: the module is run once first, so the functions its load ran are in the cache.
'use strict';
const fs = require('node:fs');
const vm = require('node:vm');
const v8 = require('node:v8');
const { createRequire } = require('node:module');
const { VENDOR_WRAPPER_HEAD, VENDOR_WRAPPER_TAIL } = require('../shared/vendor.cjs');

const [bundle, out, mode = 'eager'] = process.argv.slice(2);
const name = process.argv[5] || 'main.cjs';
const source = VENDOR_WRAPPER_HEAD + fs.readFileSync(bundle, 'utf8') + VENDOR_WRAPPER_TAIL;
if (mode === 'eager') v8.setFlagsFromString('--no-lazy');
const script = new vm.Script(source, { filename: name });
if (mode === 'eager') v8.setFlagsFromString('--lazy');
if (mode === 'executed') {
  const mod = { exports: {} };
  script.runInThisContext()(mod.exports, createRequire(bundle), mod, name, '.');
}
fs.writeFileSync(out, script.createCachedData());
