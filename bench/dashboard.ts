/**
 * The dashboard's costs at 500 endpoints (issue 16): the history ring's memory (counted and as
 * V8 heap), the time to record one sample, the size and time of `GET /api/v1/history` answers
 * (full 15 minutes at 5 s, and the incremental one the page polls with ?since), and the page's
 * bytes on the wire. Prints figures; asserts nothing.
 *   node --experimental-strip-types --expose-gc bench/dashboard.ts
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { History } from '../agent/dashboard/history.ts';
import { fakeSnapshot } from '../test/helpers/fake-metrics.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const N = Number(process.env.BENCH_ENDPOINTS ?? 500);
const gc = (globalThis as { gc?: () => void }).gc;
const heap = (): number => {
  gc?.();
  return process.memoryUsage().heapUsed + process.memoryUsage().arrayBuffers;
};
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const mb = (b: number): string => `${(b / 1e6).toFixed(2)} MB`;
const kb = (b: number): string => `${(b / 1024).toFixed(1)} KiB`;

// snapshots made first, so their garbage is not counted as the history's
const snaps = Array.from({ length: 200 }, (_, t) => fakeSnapshot(N, t));
const before = heap();
const h = new History();
const addMs: number[] = [];
for (const s of snaps) {
  const t0 = performance.now();
  h.add(s);
  addMs.push(performance.now() - t0);
}
const after = heap();
console.log(`history at ${N} endpoints, 5 s samples, 15 minutes (${h.report().t.length} samples):`);
console.log(
  `  value arrays ${mb(h.bytes())}; heap growth with labels ${mb(after - before)}${gc ? '' : ' (run with --expose-gc for a steadier figure)'}`,
);
console.log(`  add one sample: median ${median(addMs.slice(50)).toFixed(2)} ms`);

const times = (fn: () => string, n = 9): { ms: number; bytes: number; gz: number } => {
  const ms: number[] = [];
  let text = '';
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    text = fn();
    ms.push(performance.now() - t0);
  }
  return { ms: median(ms), bytes: Buffer.byteLength(text), gz: gzipSync(text).length };
};
const full = times(() => JSON.stringify(h.report()));
const last = h.report().t.at(-2)! * 1000;
const inc = times(() => JSON.stringify(h.report({ sinceMs: last })), 51);
const ns = times(() => JSON.stringify(h.report({ namespace: 'ns1' })));
// what the route does: 25 endpoints serialized between two yields of the event loop
const batches: number[] = [];
{
  const { endpoints } = h.stream();
  let t0 = performance.now();
  let n = 0;
  for (const e of endpoints) {
    JSON.stringify(e);
    if (++n % 25 === 0) {
      batches.push(performance.now() - t0);
      t0 = performance.now();
    }
  }
}
console.log(`  GET /api/v1/history (all, 181 samples): ${full.ms.toFixed(1)} ms, ${mb(full.bytes)} (${mb(full.gz)} gzipped)`);
console.log(
  `    streamed in batches of 25 endpoints: the event loop is held ${median(batches).toFixed(1)} ms per batch (median), ${Math.max(...batches).toFixed(1)} ms at most`,
);
console.log(`  GET /api/v1/history?namespace= (${N / 5} endpoints): ${ns.ms.toFixed(1)} ms, ${mb(ns.bytes)}`);
console.log(`  GET /api/v1/history?since= (one new sample, what the page polls): ${inc.ms.toFixed(2)} ms, ${kb(inc.bytes)}`);

const assets = [
  ['index.html', 'agent/dashboard/assets/index.html'],
  ['dashboard.js', 'agent/dashboard/assets/dashboard.js'],
  ['dashboard.css', 'agent/dashboard/assets/dashboard.css'],
  ['uPlot.min.js', 'node_modules/uplot/dist/uPlot.iife.min.js'],
  ['uPlot.min.css', 'node_modules/uplot/dist/uPlot.min.css'],
] as const;
let raw = 0;
let gz = 0;
for (const [name, file] of assets) {
  const b = readFileSync(path.join(ROOT, file));
  raw += b.length;
  gz += gzipSync(b).length;
  console.log(`  ${name}: ${kb(b.length)} (${kb(gzipSync(b).length)} gzipped)`);
}
console.log(`page total: ${kb(raw)}, ${kb(gz)} on the wire (gzip)`);
