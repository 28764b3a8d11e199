// Entry of the single-executable application: run the bundle made for the name this process
// was invoked as (bundle/bridge.cjs for /opt/cni/bin/bridge, ...), else the whole one
// (bundle/all.cjs: `cni-ts <name>`, cnitool), each embedded as an asset with its eager V8 code
// cache (see shared/vendor.cjs and scripts/build.mjs).
'use strict';
const trace = process.env.CNI_TS_TRACE ? (what) => process.stderr.write(`[trace ${process.pid} +${performance.now().toFixed(1)} ms] ${what}\n`) : () => {};
trace('runtime started');
const sea = require('node:sea');
const path = require('node:path');
const { runAsset } = require('../shared/vendor.cjs');

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
runAsset(`bundle/${group}.cjs`, `bundle/${group}.cache`, require);
