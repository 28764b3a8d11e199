// JavaScript embedded in the executable as SEA assets, each with a V8 code cache made at
// build time (scripts/code-cache.cjs):
// - `bundle/<name>.cjs`, the plugins' bundles, run by the executable's entry (scripts/sea-main.cjs).
//   Its cache holds every function compiled eagerly, so a plugin call compiles nothing: V8
//   compiles lazily by default and a cache of the unexecuted script would hold only the top
//   level, leaving ~15 ms of compiling for every call (docs/benchmarks.md).
// - `vendor/<name>.cjs`, heavy third-party packages only a few commands use (etcd3 + gRPC for
//   `overlay`, execa for `cnitool`), bundled apart so the common plugins never parse them;
//   scripts/build.mjs resolves those imports to loadVendor(name), evaluated on first use.
// A cache V8 rejects (another V8 version or flags) only costs the compile it would have saved.
// Under Bun (the default build, scripts/bun-main.cjs) the same bundles are entry points of the
// compiled executable with JavaScriptCore bytecode instead of SEA assets with V8 caches.
'use strict';
// node:vm is required where it is used (the Node SEA path): the Bun entry requires this file
// for makeTrace at every start, and loading node:vm costs ~1.5 ms and ~3 MiB there.

const VENDOR_WRAPPER_HEAD = '(function (exports, require, module, __filename, __dirname) {';
const VENDOR_WRAPPER_TAIL = '\n})';
const loaded = new Map();

/** The CNI_TS_TRACE timeline for this file and the Node entry (shared/trace.ts for the bundles; the Bun entry hands its marks to it). */
function makeTrace() {
  const to = process.env.CNI_TS_TRACE || '';
  if (!to) return undefined;
  return (what) => {
    let rss = '';
    if (process.env.CNI_TS_TRACE_RSS === '1') {
      // as shared/trace.ts: resident and file-backed memory now, from /proc/self/statm (pages)
      try {
        const [, resident, shared] = require('node:fs').readFileSync('/proc/self/statm', 'latin1').split(' ').map(Number);
        rss = ` [rss ${((resident * 4096) / 1048576).toFixed(1)} MiB, file ${((shared * 4096) / 1048576).toFixed(1)}]`;
      } catch {
        /* tracing must never fail a call */
      }
    }
    const line = `[trace ${process.pid} +${performance.now().toFixed(1)} ms] ${what}${rss}\n`;
    try {
      // fs, not process.stderr: building the stderr stream loads net and stream (~5 ms)
      if (to.startsWith('/')) require('node:fs').appendFileSync(to, line);
      else require('node:fs').writeSync(2, line);
    } catch {
      /* tracing must never fail a call */
    }
  };
}

/** Compile and run one embedded CommonJS asset; returns its exports. */
function runAsset(filename, cacheName, requireFn, trace) {
  const sea = require('node:sea');
  if (!sea.isSea()) throw new Error(`${filename} is only available inside the built executable`);
  let cachedData;
  try {
    cachedData = process.env.CNI_TS_NO_CODE_CACHE ? undefined : Buffer.from(sea.getAsset(cacheName));
  } catch {
    cachedData = undefined;
  }
  const vm = require('node:vm');
  const script = new vm.Script(VENDOR_WRAPPER_HEAD + sea.getAsset(filename, 'utf8') + VENDOR_WRAPPER_TAIL, { filename, cachedData });
  if (trace) trace(`${filename}: code cache ${cachedData ? (script.cachedDataRejected ? 'rejected' : 'used') : 'absent'}`);
  const mod = { exports: {} };
  script.runInThisContext()(mod.exports, requireFn, mod, filename, '.');
  return mod.exports;
}

/**
 * A vendor bundle, evaluated on first use. Under Bun (RUNTIME=bun) it is an extra entry point of
 * the compiled executable, with its own bytecode, next to the entry under /$bunfs/root.
 */
function loadVendor(name) {
  if (!loaded.has(name)) {
    if (process.versions.bun) {
      const trace = makeTrace();
      const dir = process.argv[1].slice(0, process.argv[1].lastIndexOf('/'));
      loaded.set(name, require(`${dir}/vendor-${name}.cjs`));
      if (trace) trace(`vendor-${name}.cjs loaded (bytecode)`);
    } else {
      loaded.set(name, runAsset(`vendor/${name}.cjs`, `vendor/${name}.cache`, require, makeTrace()));
    }
  }
  return loaded.get(name);
}

module.exports = { runAsset, loadVendor, makeTrace, VENDOR_WRAPPER_HEAD, VENDOR_WRAPPER_TAIL };
