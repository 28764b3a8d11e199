/**
 * Policy compiler + nftables benchmark (figures printed, not asserted): a synthetic cluster of
 * BENCH_POLICY_ENDPOINTS endpoints (default 1000, all on this node) and BENCH_POLICY_POLICIES
 * NetworkPolicies (default 200) plus a few ANPs and a BANP. Measures, per change (one policy or
 * one endpoint added), the pure compile and `nft -f` of
 *   - the incremental transaction (renderUpdate: new chains/sets, element diffs),
 *   - the element-only update of an endpoint joining existing groups (renderSetUpdates),
 *   - the whole table replaced atomically (renderNft, what a periodic resync applies),
 * inside a throwaway network namespace (prefix hqb), removed in `finally`.
 *
 *   node --experimental-strip-types bench/policy.ts      (knobs: BENCH_ITER, BENCH_POLICY_*)
 */
import { compileNode, PolicyIndex, renderDelete, renderNft, renderSetUpdates, renderUpdate } from '../shared/policy/index.ts';
import { np, scaleObjects } from '../test/policy-unit-model.ts';
import type { Endpoint } from '../shared/objects/types.ts';
import { mdTable, ms, netnsBatch, nsPath, sh, stats, uid } from './lib.ts';

const N_EP = Number(process.env.BENCH_POLICY_ENDPOINTS ?? 1000);
const N_POL = Number(process.env.BENCH_POLICY_POLICIES ?? 200);
const ITER = Number(process.env.BENCH_ITER ?? 20);
const TABLE = 'hqb_policy';
const ns = uid('hqb-');

async function nft(script: string): Promise<number> {
  const t = performance.now();
  await sh('nft', ['-f', '-'], { input: script, netns: nsPath(ns) });
  return performance.now() - t;
}

async function main(): Promise<void> {
  await netnsBatch('add', [ns]);
  try {
    const base = scaleObjects(N_EP, N_POL);
    let t = performance.now();
    const idx = new PolicyIndex(base);
    const rs0 = compileNode(idx, 'n1');
    const compileMs = performance.now() - t;
    t = performance.now();
    const script0 = renderNft(rs0, TABLE);
    const renderMs = performance.now() - t;
    const cold = await nft(script0);
    console.log(`${N_EP} endpoints, ${N_POL} policies: ${rs0.stats.groups} group chains, ${rs0.stats.rules} rules, ${rs0.stats.sets} sets/maps, ${rs0.stats.elements} elements, ${rs0.counters.length} counters; script ${(script0.length / 1024).toFixed(0)} KiB`);
    console.log(`first compile ${ms(compileMs)} ms, render ${ms(renderMs)} ms, first nft -f ${ms(cold)} ms`);

    const full: number[] = [];
    const compile: number[] = [];
    const incr: number[] = [];
    const incrTotal: number[] = [];
    const elem: number[] = [];
    const elemTotal: number[] = [];
    let prev = rs0;
    let current = base;
    for (let i = 0; i < ITER; i++) {
      // a policy change: one more NetworkPolicy (new rules and sets)
      const o = { ...current, policies: [...current.policies, np(`ns-${i % 20}`, `bench-${i}`, { podSelector: { matchLabels: { app: `app-${i % 10}` } }, ingress: [{ from: [{ podSelector: { matchLabels: { tier: `tier-${i % 3}` } } }], ports: [{ port: 9000 + i }] }] })] };
      const t0 = performance.now();
      const rs = compileNode(o, 'n1');
      const c = performance.now() - t0;
      compile.push(c);
      const script = renderUpdate(prev, rs, TABLE);
      const c1 = performance.now() - t0;
      const a = await nft(script);
      incr.push(a);
      incrTotal.push(c1 + a);
      // the same table loaded whole (what a resync does)
      full.push(await nft(renderNft(rs, TABLE)));
      prev = rs;
      // an endpoint change: one more pod in an existing group (elements only)
      const ep: Endpoint = { ...base.endpoints[i], metadata: { ...base.endpoints[i].metadata, name: `extra-${i}` }, spec: { ...base.endpoints[i].spec, containerId: `x${i}`, ips: [`10.200.0.${i + 1}/16`, `fd64::ff:${(i + 1).toString(16)}/64`] } };
      current = { ...o, endpoints: [...o.endpoints, ep] };
      const t2 = performance.now();
      const after = compileNode(current, 'n1');
      const up = renderSetUpdates(prev, after, TABLE);
      const c2 = performance.now() - t2;
      if (up === null) throw new Error('an endpoint joining existing groups should be an element-only update');
      const a2 = await nft(up);
      elem.push(a2);
      elemTotal.push(c2 + a2);
      prev = after;
    }
    const row = (what: string, xs: number[]): (string | number)[] => {
      const s = stats(xs);
      return [what, s.n, ms(s.median), ms(s.p95), ms(s.max)];
    };
    console.log(
      mdTable(
        ['step', 'n', 'p50 ms', 'p95 ms', 'max ms'],
        [
          row('compile (pure, whole node)', compile),
          row('policy added: nft -f incremental (renderUpdate)', incr),
          row('policy added: compile + diff + nft -f incremental', incrTotal),
          row('same table: nft -f whole-table replace (resync)', full),
          row('endpoint added: nft -f element update', elem),
          row('endpoint added: compile + diff + nft -f', elemTotal),
        ],
      ),
    );
    await nft(renderDelete(TABLE));
  } finally {
    await netnsBatch('del', [ns]);
  }
}

await main();
