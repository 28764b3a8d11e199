/**
 * The services table on the real kernel (nft in a netns of this test): every algorithm, with
 * and without ClientIP affinity, IPv4 and IPv6, TCP and UDP, written whole; then a sequence of
 * changes (a backend leaves, returns, turns unhealthy, a weight, the algorithm, the affinity
 * timeout, the last backend leaving) each applied as the difference from the previous table.
 * After each step the kernel's table must equal the same state written whole, and a backend
 * change of a service without affinity must be element updates of its choice map (plus the
 * numgen rule when the slot count changes), never a backend chain.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nftApply, nftRun } from '../shared/kernel/nft.ts';
import type { BackendHealth, Endpoint, Service } from '../shared/objects/types.ts';
import {
  compileServices,
  renderFragments,
  renderServicesNft,
  renderServicesUpdate,
  stableSlots,
  type RenderedTable,
  type ServiceObjects,
} from '../shared/services/compile.ts';
import { Cleanup, makeNetns, type TestNetns } from './helpers/netns.ts';

const T = 'svr_services';
const CIDR = { serviceCIDR: ['10.96.0.0/16'] };
const ALGOS = ['round-robin', 'weighted-round-robin', 'ip-hash', 'least-connections'] as const;

const ep = (name: string, i: number, labels: Record<string, string> = {}): Endpoint => ({
  apiVersion: 'cni-ts.dev/v1',
  kind: 'Endpoint',
  metadata: { name, namespace: 'default', labels: { app: 'web', ...labels } },
  spec: { node: 'n1', network: 'n', containerId: name, ifname: 'eth0', ips: [`10.1.0.${i}/24`, `fd00:1::${i}/64`] },
});

function services(algoOverride?: string, timeout = 60): Service[] {
  const out: Service[] = [];
  ALGOS.forEach((algo, i) => {
    for (const aff of [false, true]) {
      const n = i * 2 + (aff ? 1 : 0);
      out.push({
        apiVersion: 'v1',
        kind: 'Service',
        metadata: {
          name: `s${n}`,
          namespace: 'default',
          annotations: {
            'lb.cni-ts.dev/algorithm': n === 0 && algoOverride ? algoOverride : algo,
            'health.cni-ts.dev/check': '{"type":"tcp"}',
          },
        },
        spec: {
          clusterIP: `10.96.0.${10 + n}`,
          clusterIPs: [`10.96.0.${10 + n}`, `fd00:96::${10 + n}`],
          selector: { app: 'web' },
          ports: [
            { name: 'http', port: 80, targetPort: 8080 },
            { name: 'dns', port: 53, protocol: 'UDP', targetPort: 5353 },
          ],
          ...(aff ? { sessionAffinity: 'ClientIP' as const, sessionAffinityConfig: { clientIP: { timeoutSeconds: timeout } } } : {}),
        },
      });
    }
  });
  return out;
}

const unhealthy = (svc: string, i: number): BackendHealth => ({
  apiVersion: 'cni-ts.dev/v1',
  kind: 'BackendHealth',
  metadata: { name: `${svc}-10-1-0-${i}-8080`, namespace: 'default' },
  spec: { service: svc, address: `10.1.0.${i}`, port: 8080, node: 'n1', healthy: false, checkedAt: new Date(0).toISOString() },
});

const objs = (o: Partial<ServiceObjects>): ServiceObjects => ({
  services: services(),
  endpointSlices: [],
  endpoints: [],
  health: [],
  ...o,
});
const four = [ep('a', 2), ep('b', 3, { 'lb.cni-ts.dev/weight': '3' }), ep('c', 4), ep('d', 5)];

/** The table as the kernel lists it, normalized: chains → rules, sets/maps → sorted elements. */
async function listing(ns: TestNetns): Promise<Record<string, unknown>> {
  const r = await nftRun(['-j', 'list', 'table', 'inet', T], { netns: ns.path });
  const objects = (JSON.parse(r.stdout) as { nftables: Array<Record<string, Record<string, unknown>>> }).nftables;
  const out: Record<string, unknown> = {};
  for (const o of objects) {
    if (o.rule) {
      const k = `rules ${String(o.rule.chain)}`;
      const expr = JSON.stringify(o.rule.expr);
      out[k] = [...((out[k] as string[] | undefined) ?? []), expr];
    } else if (o.chain) out[`chain ${String(o.chain.name)}`] ??= [];
    else if (o.set || o.map) {
      const s = (o.set ?? o.map)!;
      out[`set ${String(s.name)}`] = ((s.elem as unknown[] | undefined) ?? []).map((e) => JSON.stringify(e)).sort();
    }
  }
  return out;
}

describe('services table on the kernel: differences equal the table written whole', () => {
  const cleanup = new Cleanup();
  let a: TestNetns;
  let b: TestNetns;
  beforeAll(async () => {
    a = await makeNetns(cleanup, 'svr');
    b = await makeNetns(cleanup, 'svr');
  });
  afterAll(async () => {
    await cleanup.run();
  });

  it('every algorithm, with and without affinity, v4 and v6, through a sequence of changes', async () => {
    const steps: Array<[string, ServiceObjects]> = [
      ['four backends', objs({ endpoints: four })],
      ['one leaves', objs({ endpoints: [four[0]!, four[1]!, four[3]!] })],
      ['it returns', objs({ endpoints: four })],
      ['one turns unhealthy everywhere', objs({ endpoints: four, health: services().map((s) => unhealthy(s.metadata.name, 3)) })],
      ['healthy again, a new one joins', objs({ endpoints: [...four, ep('e', 6)] })],
      [
        'a weight changes',
        objs({ endpoints: [four[0]!, { ...four[1]!, metadata: { ...four[1]!.metadata, labels: { app: 'web' } } }, four[2]!] }),
      ],
      ['s0 becomes ip-hash, affinity timeout changes', objs({ services: services('ip-hash', 120), endpoints: four })],
      ['one backend left', objs({ endpoints: [four[2]!] })],
      ['none left', objs({ endpoints: [] })],
      ['back to four', objs({ endpoints: four })],
    ];
    let prev: RenderedTable | undefined;
    for (const [what, o] of steps) {
      const next = renderFragments(compileServices(o, 'n1', CIDR), T, undefined, prev);
      const script = prev ? renderServicesUpdate(prev, next) : renderServicesNft(next, T);
      await nftApply(script, a.path).catch((e: Error) => {
        throw new Error(`${what}: ${e.message}\n${script}`);
      });
      await nftApply(renderServicesNft(next, T), b.path);
      expect(await listing(a), what).toEqual(await listing(b));
      if (what === 'one leaves' || what === 'it returns') {
        // the round-robin service without affinity: its map elements and the one numgen rule
        const lines = script.split('\n').filter((l) => l.includes('s0_tcp80'));
        expect(
          lines.some((l) => /chain inet \S+ be_/.test(l)),
          what,
        ).toBe(false);
        expect(lines.filter((l) => / element inet \S+ rr_/.test(l)).length, what).toBeGreaterThan(0);
        const rules = lines.filter((l) => l.startsWith('add rule'));
        expect(rules, what).toHaveLength(2); // the IPv4 and the IPv6 entry
        for (const r of rules) expect(r, what).toMatch(/ svc_\S+ meta l4proto tcp dnat ip6? to numgen inc mod \d map @rr_\S+$/);
      }
      prev = next;
    }
  });
});

describe('round-robin slots', () => {
  it('a leaving backend’s slot takes the last one; a new one is appended', () => {
    expect(stableSlots(['a', 'b', 'c', 'd'], ['a', 'c', 'd'])).toEqual(['a', 'd', 'c']);
    expect(stableSlots(['a', 'd', 'c'], ['a', 'b', 'c', 'd'])).toEqual(['a', 'd', 'c', 'b']);
    expect(stableSlots(['a', 'b', 'c', 'd'], ['b'])).toEqual(['b']);
    expect(stableSlots(undefined, ['x', 'y'])).toEqual(['x', 'y']);
    expect(stableSlots(['a', 'b', 'c', 'd'], [])).toEqual([]);
  });
});
