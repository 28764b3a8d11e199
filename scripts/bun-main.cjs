// Entry of the Bun-compiled executable (scripts/build.mjs, RUNTIME=bun): run the bundle made for
// the name this process was invoked as (bundle-bridge.cjs for /opt/cni/bin/bridge, ...), else
// the whole one (bundle-all.cjs: `cni-ts <name>`, cnitool). Every bundle is a separate entry
// point of `bun build --compile --bytecode`, so each is embedded with its own JavaScriptCore
// bytecode and only the one this call runs is loaded. The embedded files live under the
// executable's virtual root (/$bunfs/root, the directory of process.argv[1]).
'use strict';
// CNI_TS_TRACE marks of this entry are kept in memory and written by the bundle's first trace
// mark (shared/trace.ts): writing them here would load node:fs, which the plugins' bundles
// otherwise never load (shared/lightfs.ts), and the timeline would show its cost everywhere.
const early = process.env.CNI_TS_TRACE ? (globalThis.__cniTsEarlyTrace = []) : undefined;
// CNI_TS_TRACE_RSS=1: the page faults and CPU time so far (getrusage, no file read) with each mark
// (also for the bundle's first mark, scripts/build.mjs)
const usage =
  early && process.env.CNI_TS_TRACE_RSS === '1'
    ? (globalThis.__cniTsUsage = () => {
        const u = process.resourceUsage();
        return ` [faults ${u.minorPageFault}, cpu ${((u.userCPUTime + u.systemCPUTime) / 1000).toFixed(1)} ms]`;
      })
    : () => '';
const trace = early && ((what) => early.push([performance.now(), what + usage()]));
if (trace) trace('runtime started (bun)');
// Filled in by scripts/build.mjs (bun build --define): the group bundles it embedded.
/* global CNI_TS_GROUPS */
const groups = String(CNI_TS_GROUPS).split(',');
const base = (p) => p.slice(p.lastIndexOf('/') + 1);
const invoked = base(process.argv0 || process.execPath);
const group = groups.includes(invoked) ? invoked : 'all';
const file = `${process.argv[1].slice(0, process.argv[1].lastIndexOf('/'))}/bundle-${group}.cjs`;
require(file);
if (trace) trace(`bundle-${group}.cjs loaded (bytecode)`);
