// Entry of the single-executable application: run the bundle made for the name this process
// was invoked as (bundle/bridge.cjs for /opt/cni/bin/bridge, ...), else the whole one
// (bundle/all.cjs: `cni-ts <name>`, cnitool), each embedded as an asset with its eager V8 code
// cache (see shared/vendor.cjs and scripts/build.mjs).
'use strict';
const { runAsset, makeTrace } = require('../shared/vendor.cjs');
const sea = require('node:sea');
const path = require('node:path');

const trace = makeTrace();
if (trace) trace('runtime started');

function bundleFor(name) {
  if (!/^[a-z0-9-]+$/.test(name)) return 'all';
  try {
    sea.getRawAsset(`bundle/${name}.cjs`);
    return name;
  } catch {
    return 'all';
  }
}

const group = bundleFor(path.basename(process.argv0 || process.execPath));
runAsset(`bundle/${group}.cjs`, `bundle/${group}.cache`, require, trace);
