/**
 * Policy compiler + nftables benchmark (figures printed, not asserted): a synthetic cluster of
 * BENCH_POLICY_ENDPOINTS endpoints (default 1000, all on this node) and BENCH_POLICY_POLICIES
 * NetworkPolicies (default 200) plus a few ANPs and a BANP. Measures, per change (one policy or
 * one endpoint added), the pure compile and `nft -f` of
 *   - the incremental transaction (renderUpdate: new chains/sets, element diffs),
 *   - the element-only update of an endpoint joining existing groups (renderSetUpdates),
 *   - the whole table replaced atomically (renderNft), and redefined in place (renderResync),
 * inside a throwaway network namespace (prefix hqb), removed in `finally`.
 *
 *   node --experimental-strip-types bench/policy.ts      (knobs: BENCH_ITER, BENCH_POLICY_*)
 */
import { compileNode, PolicyIndex, renderDelete, renderNft, renderResync, renderSetUpdates, renderUpdate } from '../shared/policy/index.ts';
import { np, scaleObjects } from '../test/policy-unit-model.ts';
import type { Endpoint } from '../shared/objects/types.ts';
import { mdTable, ms, netnsBatch, nsPath, sh, stats, uid } from './lib.ts';

const N_EP = Number(process.env.BENCH_POLICY_ENDPOINTS ?? 1000);
const N_POL = Number(process.env.BENCH_POLICY_POLICIES ?? 200);
const ITER = Number(process.env.BENCH_ITER ?? 20);
const TABLE = 'hqb_policy';
const ns = uid('hqb-');

/** CPU time (user + system) of the nft processes, per step: less skewed by a busy machine than wall time. */
const cpu = new Map<number[], number[]>();

async function nft(script: string, cpuInto?: number[]): Promise<number> {
  const t = performance.now();
  const r = await sh('/usr/bin/time', ['-f', '%U %S', 'nft', '-f', '-'], { input: script, netns: nsPath(ns) });
  const [u, sys] = r.stderr.trim().split('\n').pop()?.split(' ').map(Number) ?? [NaN, NaN];
  cpuInto?.push((u + sys) * 1000);
  return performance.now() - t;
}

function cpuOf(xs: number[]): number[] {
  let c = cpu.get(xs);
  if (!c) cpu.set(xs, (c = []));
  return c;
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
    console.log(
      `${N_EP} endpoints, ${N_POL} policies: ${rs0.stats.groups} group chains, ${rs0.stats.rules} rules, ${rs0.stats.sets} sets/maps, ${rs0.stats.elements} elements, ${rs0.counters.length} counters; script ${(script0.length / 1024).toFixed(0)} KiB`,
    );
    console.log(`first compile ${ms(compileMs)} ms, render ${ms(renderMs)} ms, first nft -f ${ms(cold)} ms`);

    const full: number[] = [];
    const resync: number[] = [];
    const compile: number[] = [];
    const incr: number[] = [];
    const incrTotal: number[] = [];
    const elem: number[] = [];
    const elemTotal: number[] = [];
    let prev = rs0;
    let current = base;
    for (let i = 0; i < ITER; i++) {
      // a policy change: one more NetworkPolicy (new rules and sets)
      const o = {
        ...current,
        policies: [
          ...current.policies,
          np(`ns-${i % 20}`, `bench-${i}`, {
            podSelector: { matchLabels: { app: `app-${i % 10}` } },
            ingress: [{ from: [{ podSelector: { matchLabels: { tier: `tier-${i % 3}` } } }], ports: [{ port: 9000 + i }] }],
          }),
        ],
      };
      const t0 = performance.now();
      const c0 = process.cpuUsage();
      const rs = compileNode(o, 'n1');
      const c = performance.now() - t0;
      const cu = process.cpuUsage(c0);
      compile.push(c);
      cpuOf(compile).push((cu.user + cu.system) / 1000);
      const script = renderUpdate(prev, rs, TABLE);
      const c1 = performance.now() - t0;
      const a = await nft(script, cpuOf(incr));
      incr.push(a);
      incrTotal.push(c1 + a);
      // the same table loaded whole: replaced (counters reset), and redefined in place (kept)
      full.push(await nft(renderNft(rs, TABLE), cpuOf(full)));
      resync.push(await nft(renderResync(rs, TABLE), cpuOf(resync)));
      prev = rs;
      // an endpoint change: one more pod in an existing group (elements only)
      const ep: Endpoint = {
        ...base.endpoints[i],
        metadata: { ...base.endpoints[i].metadata, name: `extra-${i}` },
        spec: { ...base.endpoints[i].spec, containerId: `x${i}`, ips: [`10.200.0.${i + 1}/16`, `fd64::ff:${(i + 1).toString(16)}/64`] },
      };
      current = { ...o, endpoints: [...o.endpoints, ep] };
      const t2 = performance.now();
      const after = compileNode(current, 'n1');
      const up = renderSetUpdates(prev, after, TABLE);
      const c2 = performance.now() - t2;
      if (up === null) throw new Error('an endpoint joining existing groups should be an element-only update');
      const a2 = await nft(up, cpuOf(elem));
      elem.push(a2);
      elemTotal.push(c2 + a2);
      prev = after;
    }
    const row = (what: string, xs: number[]): (string | number)[] => {
      const s = stats(xs);
      const c = cpu.get(xs);
      return [what, s.n, ms(s.median), ms(s.p95), ms(s.max), c?.length ? ms(stats(c).median) : '–'];
    };
    const load = (await sh('cat', ['/proc/loadavg'])).stdout.split(' ').slice(0, 3).join(' ');
    console.log(`load average during the run: ${load} (${(await sh('nproc', [])).stdout.trim()} CPUs)`);
    console.log(
      mdTable(
        ['step', 'n', 'p50 ms', 'p95 ms', 'max ms', 'CPU p50 ms'],
        [
          row('compile (pure, whole node)', compile),
          row('policy added: nft -f incremental (renderUpdate)', incr),
          row('policy added: compile + diff + nft -f incremental', incrTotal),
          row('same table: nft -f whole-table replace (renderNft)', full),
          row('same table: nft -f redefined in place (renderResync)', resync),
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
