/** The services compiler (pure): backends, VIP allocation, algorithms, slot table, rendering, updates. */
import { describe, expect, it } from 'vitest';
import type { Endpoint, EndpointSlice, Service } from '../shared/objects/types.ts';
import {
  allocateClusterIP,
  compileServices,
  parseHealthCheck,
  renderFragments,
  renderServicesNft,
  renderServicesUpdate,
  slotTable,
  SLOTS,
  type BackendHealth,
  type ServiceObjects,
} from '../shared/services/compile.ts';
import { orphanHealth } from '../agent/health/checker.ts';

const ep = (name: string, ip: string, labels: Record<string, string> = {}, node = 'n1'): Endpoint => ({
  apiVersion: 'cni-ts.dev/v1',
  kind: 'Endpoint',
  metadata: { name, namespace: 'default', labels: { app: 'web', ...labels } },
  spec: {
    node,
    network: 'n',
    containerId: name,
    ifname: 'eth0',
    ips: [`${ip}/24`],
    ports: [{ name: 'http', containerPort: 8080, protocol: 'TCP' }],
  },
});
const svc = (name: string, spec: Partial<Service['spec']> = {}, annotations: Record<string, string> = {}): Service => ({
  apiVersion: 'v1',
  kind: 'Service',
  metadata: { name, namespace: 'default', annotations },
  spec: { selector: { app: 'web' }, ports: [{ name: 'web', port: 80, targetPort: 'http' }], ...spec },
});
const objs = (o: Partial<ServiceObjects>): ServiceObjects => ({ services: [], endpointSlices: [], endpoints: [], health: [], ...o });
const CIDR = { serviceCIDR: ['10.96.0.0/16'] };
const three = [ep('a', '10.1.0.2'), ep('b', '10.1.0.3'), ep('c', '10.1.0.4')];

describe('compileServices', () => {
  it('selects backends by labels in the namespace and resolves a named targetPort', () => {
    const other = { ...ep('x', '10.1.0.9'), metadata: { name: 'x', namespace: 'other', labels: { app: 'web' } } };
    const t = compileServices(
      objs({ services: [svc('web', { clusterIP: '10.96.0.10' })], endpoints: [...three, other, ep('d', '10.1.0.5', { app: 'db' })] }),
      'n1',
      CIDR,
    );
    expect(t.entries).toHaveLength(1);
    const e = t.entries[0]!;
    expect(e.vip).toBe('10.96.0.10');
    expect(e.active.map((b) => b.key)).toEqual(['10.1.0.2:8080', '10.1.0.3:8080', '10.1.0.4:8080']);
    expect(t.allocations).toEqual([]);
  });

  it('allocates a VIP deterministically in serviceCIDR, stable and distinct', () => {
    const a = compileServices(objs({ services: [svc('one'), svc('two')] }), 'n1', CIDR);
    const b = compileServices(objs({ services: [svc('two'), svc('one')] }), 'n1', CIDR);
    expect(a.allocations).toEqual(b.allocations);
    expect(a.allocations).toHaveLength(2);
    expect(a.allocations[0]!.clusterIP).not.toBe(a.allocations[1]!.clusterIP);
    for (const x of a.allocations) expect(x.clusterIP.startsWith('10.96.')).toBe(true);
    const ip = allocateClusterIP('default', 'one', ['10.96.0.0/16'], new Set());
    expect(allocateClusterIP('default', 'one', ['10.96.0.0/16'], new Set([ip!]))).not.toBe(ip);
  });

  it('headless services get nothing; no backend renders a reject in no_endpoints', () => {
    const t = compileServices(
      objs({ services: [svc('h', { clusterIP: 'None' }), svc('e', { clusterIP: '10.96.0.11', selector: { app: 'none' } })] }),
      'n1',
      CIDR,
    );
    expect(t.entries.map((e) => e.name)).toEqual(['e']);
    const nft = renderServicesNft(t, 'hvt');
    expect(nft).toContain('add element inet hvt no_endpoints { 10.96.0.11 . tcp . 80 : goto rej_');
    expect(nft).toContain('reject with tcp reset');
  });

  it('a selector-less Service takes its backends from EndpointSlices (ready only)', () => {
    const sl: EndpointSlice = {
      apiVersion: 'cni-ts.dev/v1',
      kind: 'EndpointSlice',
      metadata: { name: 'ext-1', namespace: 'default', labels: { 'kubernetes.io/service-name': 'ext' } },
      endpoints: [{ addresses: ['192.0.2.1'] }, { addresses: ['192.0.2.2'], conditions: { ready: false } }],
      ports: [{ name: 'web', port: 9000 }],
    };
    const t = compileServices(
      objs({ services: [svc('ext', { selector: undefined, clusterIP: '10.96.0.12' })], endpointSlices: [sl] }),
      'n1',
      CIDR,
    );
    expect(t.entries[0]!.active.map((b) => b.key)).toEqual(['192.0.2.1:9000']);
  });

  it('unhealthy backends (BackendHealth) and weight 0 are out of the rotation', () => {
    const h: BackendHealth = {
      apiVersion: 'cni-ts.dev/v1',
      kind: 'BackendHealth',
      metadata: { name: 'web-10-1-0-3-8080', namespace: 'default' },
      spec: { service: 'web', address: '10.1.0.3', port: 8080, node: 'n1', healthy: false, checkedAt: '' },
    };
    const s = svc(
      'web',
      { clusterIP: '10.96.0.10' },
      { 'health.cni-ts.dev/check': '{"type":"tcp"}', 'lb.cni-ts.dev/algorithm': 'weighted-round-robin' },
    );
    const t = compileServices(
      objs({
        services: [s],
        endpoints: [
          ep('a', '10.1.0.2', { 'lb.cni-ts.dev/weight': '0' }),
          ep('b', '10.1.0.3'),
          ep('c', '10.1.0.4', { 'lb.cni-ts.dev/weight': '3' }),
        ],
        health: [h],
      }),
      'n1',
      CIDR,
    );
    expect(t.entries[0]!.active.map((b) => b.key)).toEqual(['10.1.0.4:8080']);
    expect(t.entries[0]!.backends).toHaveLength(3);
  });

  it('an unknown algorithm leaves the service out with a problem', () => {
    const t = compileServices(objs({ services: [svc('web', {}, { 'lb.cni-ts.dev/algorithm': 'random' })], endpoints: three }), 'n1', CIDR);
    expect(t.entries).toEqual([]);
    expect(t.problems[0]).toMatch(/unknown algorithm "random"/);
  });
});

describe('rendering', () => {
  const render = (annotations: Record<string, string>, endpoints = three, spec: Partial<Service['spec']> = {}): string =>
    renderServicesNft(
      compileServices(objs({ services: [svc('web', { clusterIP: '10.96.0.10', ...spec }, annotations)], endpoints }), 'n1', CIDR),
      'hvt',
    );

  it('round robin: numgen inc over a named map of slots, dnat to the mapped backend; no backend chains', () => {
    const n = render({});
    expect(n).toMatch(/add map inet hvt rr_\S+ \{ typeof numgen inc mod 2 : ip daddr . tcp dport; \}/);
    expect(n).toMatch(/add element inet hvt rr_\S+ \{ 0 : 10.1.0.2 . 8080, 1 : 10.1.0.3 . 8080, 2 : 10.1.0.4 . 8080 \}/);
    expect(n).toMatch(/svc_\S+ meta l4proto tcp dnat ip to numgen inc mod 3 map @rr_/);
    expect(n).not.toMatch(/be_/);
  });
  it('weighted: numgen over the sum of weights, in ranges', () => {
    const n = render({ 'lb.cni-ts.dev/algorithm': 'weighted-round-robin' }, [
      ep('a', '10.1.0.2', { 'lb.cni-ts.dev/weight': '3' }),
      ep('b', '10.1.0.3'),
    ]);
    expect(n).toMatch(/add map inet hvt wrr_\S+ \{ typeof numgen inc mod 2 : ip daddr . tcp dport; flags interval; \}/);
    expect(n).toMatch(/add element inet hvt wrr_\S+ \{ 0-2 : 10.1.0.2 . 8080, 3 : 10.1.0.3 . 8080 \}/);
    expect(n).toMatch(/dnat ip to numgen inc mod 4 map @wrr_/);
  });
  it('ip-hash: jhash of the source over a slot table', () => {
    const n = render({ 'lb.cni-ts.dev/algorithm': 'ip-hash' });
    expect(n).toMatch(/dnat ip to jhash ip saddr mod 256 seed 0x5eed map @ih_/);
    expect(n).toMatch(/add element inet hvt ih_\S+ \{ 0(-\d+)? : 10.1.0.\d . 8080, /);
  });
  it('least-connections: a one-element map the agent updates', () => {
    const n = render({ 'lb.cni-ts.dev/algorithm': 'least-connections' });
    expect(n).toMatch(/add map inet hvt lc_\S+ \{ typeof meta l4proto : ip daddr . tcp dport; \}/);
    expect(n).toMatch(/add element inet hvt lc_\S+ \{ tcp : 10.1.0.2 . 8080 \}/);
    expect(n).toMatch(/meta l4proto tcp dnat ip to meta l4proto map @lc_/);
  });
  it('ClientIP affinity: one timed set per backend, checked first, updated on dnat', () => {
    const n = render({}, three, { sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 60 } } });
    expect(n).toMatch(/flags dynamic,timeout; timeout 60s;/);
    expect(n).toMatch(/ip saddr @aff_\S+ goto be_/);
    expect(n).toMatch(/update @aff_\S+ \{ ip saddr \}/);
    expect(n).toMatch(/numgen inc mod 3 vmap @rrv_/);
    expect(n).toContain('dnat ip to 10.1.0.2:8080');
  });
  it('hairpin: a connection translated to its own source is masqueraded (one set of backend address pairs)', () => {
    const n = render({});
    expect(n).toContain('add element inet hvt hairpin { 10.1.0.2 . 10.1.0.2, 10.1.0.3 . 10.1.0.3, 10.1.0.4 . 10.1.0.4 }');
    expect(n).toContain('ct status dnat ip saddr . ip daddr @hairpin masquerade');
  });
});

describe('slot table (ip-hash)', () => {
  it('only the leaving backend’s slots move; the others keep theirs', () => {
    const bs = ['10.1.0.2:80', '10.1.0.3:80', '10.1.0.4:80', '10.1.0.5:80'];
    const before = slotTable(bs).map((i) => bs[i]);
    const left = bs.filter((b) => b !== '10.1.0.4:80');
    const after = slotTable(left).map((i) => left[i]);
    let moved = 0;
    for (let s = 0; s < SLOTS; s++) {
      if (before[s] !== '10.1.0.4:80') expect(after[s]).toBe(before[s]);
      else moved++;
    }
    expect(moved).toBeGreaterThan(SLOTS / 8);
    expect(moved).toBeLessThan(SLOTS / 2.5);
  });
  it('is balanced (each of 4 backends within 64 ± 24 slots)', () => {
    const counts = [0, 0, 0, 0];
    for (const i of slotTable(['a', 'b', 'c', 'd'])) counts[i]!++;
    for (const c of counts) expect(Math.abs(c - 64)).toBeLessThan(24);
  });
});

describe('updates', () => {
  it('a backend leaving one service touches that service only', () => {
    const services = [svc('web', { clusterIP: '10.96.0.10' }), svc('api', { clusterIP: '10.96.0.11', selector: { app: 'api' } })];
    const api = [ep('p', '10.1.0.7', { app: 'api' }), ep('q', '10.1.0.8', { app: 'api' })];
    const a = renderFragments(compileServices(objs({ services, endpoints: [...three, ...api] }), 'n1', CIDR), 'hvt');
    const b = renderFragments(
      compileServices(objs({ services, endpoints: [three[0]!, three[2]!, ...api] }), 'n1', CIDR),
      'hvt',
      undefined,
      a,
    );
    const u = renderServicesUpdate(a, b);
    expect(u).not.toContain('api');
    // the leaving backend's slot takes the last slot's backend: two element changes and the numgen rule
    expect(u.split('\n').filter(Boolean)).toEqual([
      expect.stringMatching(/^delete element inet hvt rr_default_web\S+ \{ 1, 2 \}$/),
      expect.stringMatching(/^add element inet hvt rr_default_web\S+ \{ 1 : 10.1.0.4 . 8080 \}$/),
      expect.stringMatching(/^flush chain inet hvt svc_default_web/),
      expect.stringMatching(/^add rule inet hvt svc_default_web\S+ meta l4proto tcp dnat ip to numgen inc mod 2 map @rr_/),
      'delete element inet hvt hairpin { 10.1.0.3 . 10.1.0.3 }',
    ]);
    expect(renderServicesUpdate(b, b)).toBe('');
  });
  it('the last backend leaving moves the element from service_ips to no_endpoints', () => {
    const services = [svc('web', { clusterIP: '10.96.0.10' })];
    const a = renderFragments(compileServices(objs({ services, endpoints: [three[0]!] }), 'n1', CIDR), 'hvt');
    const b = renderFragments(compileServices(objs({ services, endpoints: [] }), 'n1', CIDR), 'hvt');
    const u = renderServicesUpdate(a, b);
    expect(u).toContain('delete element inet hvt service_ips { 10.96.0.10 . tcp . 80 }');
    expect(u).toMatch(/add element inet hvt no_endpoints \{ 10.96.0.10 . tcp . 80 : goto rej_/);
  });
});

describe('health check annotation', () => {
  it('defaults and errors', () => {
    expect(parseHealthCheck('{"type":"http","port":8080,"path":"/healthz"}')).toEqual({
      type: 'http',
      port: 8080,
      path: '/healthz',
      intervalSeconds: 2,
      timeoutSeconds: 1,
      unhealthyThreshold: 3,
      healthyThreshold: 2,
    });
    expect(parseHealthCheck('{"type":"icmp"}')).toMatch(/type must be/);
    expect(parseHealthCheck('{')).toMatch(/not valid JSON/);
    expect(parseHealthCheck('{"type":"tcp","unhealthyThreshold":0}')).toMatch(/unhealthyThreshold/);
  });
});

describe('IPv6 and dual stack', () => {
  const ep6 = (name: string, v4: string, v6: string): Endpoint => ({
    ...ep(name, v4),
    spec: { ...ep(name, v4).spec, ips: [`${v4}/24`, `${v6}/64`] },
  });
  it('a dual-stack Service gets one entry per family, each with its family’s backends', () => {
    const s = svc(
      'web',
      { clusterIP: '10.96.0.10', clusterIPs: ['10.96.0.10', 'fd00:96::10'], sessionAffinity: 'ClientIP' },
      { 'lb.cni-ts.dev/algorithm': 'ip-hash' },
    );
    const t = compileServices(
      objs({ services: [s], endpoints: [ep6('a', '10.1.0.2', 'fd00:1::2'), ep6('b', '10.1.0.3', 'fd00:1::3')] }),
      'n1',
      CIDR,
    );
    expect(t.entries.map((e) => [e.vip, e.family, e.active.map((b) => b.address)])).toEqual([
      ['10.96.0.10', 4, ['10.1.0.2', '10.1.0.3']],
      ['fd00:96::10', 6, ['fd00:1::2', 'fd00:1::3']],
    ]);
    const nft = renderServicesNft(t, 'hvt');
    expect(nft).toContain('add element inet hvt service_ips6 { fd00:96::10 . tcp . 80 : goto svc_');
    expect(nft).toContain('dnat ip6 to [fd00:1::2]:8080');
    expect(nft).toContain('jhash ip6 saddr mod 256');
    expect(nft).toMatch(/type ipv6_addr; flags dynamic,timeout;/);
    expect(nft).toContain('add element inet hvt hairpin6 { [fd00:1::2] . [fd00:1::2], [fd00:1::3] . [fd00:1::3] }');
    expect(nft).toMatch(/jhash ip6 saddr mod 256 seed 0x5eed vmap @ihv_/);
  });
  it('allocates from an IPv6 serviceCIDR', () => {
    const v = allocateClusterIP('default', 'web', ['fd00:96::/112'], new Set());
    expect(v).toMatch(/^fd00:96::[0-9a-f]{1,4}$/);
  });
});

describe('orphaned health objects (a vanished node, a deleted backend or service)', () => {
  const checked = svc('web', { clusterIP: '10.96.0.10' }, { 'health.cni-ts.dev/check': '{"type":"tcp"}' });
  const health = (name: string, node: string, checkedAt: string): BackendHealth => ({
    apiVersion: 'cni-ts.dev/v1',
    kind: 'BackendHealth',
    metadata: { name, namespace: 'default' },
    spec: { service: 'web', address: '10.1.0.9', port: 8080, node, healthy: true, checkedAt },
  });
  it('deletes health of backends no service port has, once older than the grace period, whatever node wrote it', () => {
    const t = compileServices(objs({ services: [checked], endpoints: [ep('a', '10.1.0.2', {}, 'n2')] }), 'n1', CIDR);
    const now = Date.parse('2026-12-06T07:00:00Z');
    const known = new Map([
      ['default/web-10-1-0-2-8080', health('web-10-1-0-2-8080', 'n2', '2026-12-06T06:00:00Z')],
      ['default/web-10-1-0-9-8080', health('web-10-1-0-9-8080', 'gone-node', '2026-12-06T06:58:00Z')],
      ['default/web-10-1-0-8-8080', health('web-10-1-0-8-8080', 'gone-node', '2026-12-06T06:59:30Z')],
      ['default/old-10-1-0-7-80', health('old-10-1-0-7-80', 'n1', 'not a date')],
    ]);
    expect(orphanHealth(t.entries, known, now, 60_000).sort()).toEqual(['default/old-10-1-0-7-80', 'default/web-10-1-0-9-8080']);
  });
});
