/**
 * The dashboard's pure parts: the history ring buffer (agent/dashboard/history.ts), the
 * services report and the routes over a real HTTP server on loopback (agent/dashboard/routes.ts),
 * and `cnictl top`'s table (tools/cnictl/top.ts). No kernel.
 */
import http from 'node:http';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHttp, type ApiHandlers } from '../agent/api.ts';
import { History, SERIES, type HistoryReport } from '../agent/dashboard/history.ts';
import { ASSETS, dashboardRoutes, servicesReport } from '../agent/dashboard/routes.ts';
import { dropCounters, policyDrops } from '../agent/dashboard/policy-drops.ts';
import { parseNftCounters as parseCounterList } from '../shared/kernel/stats.ts';

const parseNftCounters = (json: string): Map<string, { packets: number; bytes: number }> =>
  new Map(parseCounterList(json).map((c) => [c.name, { packets: c.packets, bytes: c.bytes }]));
import { Logger } from '../shared/cni/log.ts';
import type { ServicePortEntry } from '../shared/services/compile.ts';
import { count, duration, human, percent, topTable } from '../tools/cnictl/top.ts';
import { fakeEndpoint, fakeSnapshot } from './helpers/fake-metrics.ts';

describe('history ring buffer', () => {
  it('keeps every series of every endpoint aligned to the sample times', () => {
    const h = new History();
    for (let t = 1; t <= 3; t++) h.add(fakeSnapshot(2, t));
    const r = h.report();
    expect(r.node).toBe('node-a');
    expect(r.intervalSeconds).toBe(5);
    expect(r.t).toEqual([1, 2, 3].map((t) => Date.parse('2026-12-06T07:00:00Z') / 1000 + 5 * t));
    expect(r.endpoints.map((e) => e.key)).toEqual(['ns0/pod-0/net/eth0', 'ns1/pod-1/net/eth0']);
    const e1 = r.endpoints[1]!;
    expect(Object.keys(e1.series)).toEqual([...SERIES]);
    for (const s of SERIES) expect(e1.series[s]).toHaveLength(3);
    expect(e1.series.rxBytes).toEqual([2100, 2200, 2300]);
    expect(e1.series.txBytes).toEqual([1050, 1100, 1150]);
    expect(e1.series.connections).toEqual([1, 1, 1]);
    expect(e1.series.utilization[2]).toBeCloseTo((2300 * 8) / 1e7, 6);
    expect(r.endpoints[0]!.series.utilization).toEqual([null, null, null]); // no limit
    expect(e1.series.latencySeconds[0]).toBeCloseTo(0.00201, 6);
    // drops/s from the counters' difference: 3 per 5 s; the first sample has no difference yet
    expect(e1.series.drops).toEqual([0, 0.6, 0.6]);
    expect(e1.series.errors).toEqual([0, 0, 0]);
    expect(e1.ips).toEqual(['10.1.0.1']);
    expect(e1.limitBitsPerSecond).toBe(10_000_000);
  });

  it('is bounded: 15 minutes at the sampling interval, the oldest samples overwritten', () => {
    const h = new History();
    for (let t = 0; t < 400; t++) h.add(fakeSnapshot(3, t));
    const r = h.report();
    expect(History.capacityFor(900, 5, 1800)).toBe(181);
    expect(r.t).toHaveLength(181);
    expect(r.t.at(-1)! - r.t[0]!).toBe(900);
    expect(r.endpoints[0]!.series.rxBytes.at(-1)).toBe(1000 + 100 * 399);
    expect(r.endpoints[0]!.series.rxBytes[0]).toBe(1000 + 100 * 219);
    expect(h.bytes()).toBe(181 * 8 + 3 * 181 * SERIES.length * 4);
    // a fast sampler is capped at maxPoints
    expect(History.capacityFor(900, 0.1, 1800)).toBe(1800);
  });

  it('at 500 endpoints every 5 s: 3.6 MB of values', () => {
    const h = new History();
    for (let t = 0; t < 200; t++) h.add(fakeSnapshot(500, t));
    expect(h.size).toBe(500);
    expect(h.bytes()).toBe(181 * 8 + 500 * 181 * 10 * 4);
    expect(h.bytes()).toBeLessThan(3.7e6);
  });

  it('an endpoint that appears later has nulls before; one that leaves has nulls after, then is dropped', () => {
    const h = new History({ windowSeconds: 20 });
    h.add(fakeSnapshot(1, 1));
    h.add(fakeSnapshot(2, 2));
    h.add(fakeSnapshot(1, 3));
    let r = h.report();
    const late = r.endpoints.find((e) => e.pod === 'pod-1')!;
    expect(late.series.rxBytes).toEqual([null, 2200, null]);
    for (let t = 4; t <= 8; t++) h.add(fakeSnapshot(1, t));
    r = h.report();
    expect(r.t).toHaveLength(5); // 20 s window at 5 s: the window and one more
    expect(r.endpoints.map((e) => e.pod)).toEqual(['pod-0']);
    expect(h.size).toBe(1);
  });

  it('since and namespace select what the page asks for; older or repeated samples are ignored', () => {
    const h = new History();
    for (let t = 1; t <= 5; t++) h.add(fakeSnapshot(6, t));
    h.add(fakeSnapshot(6, 3)); // out of order: ignored
    const all = h.report();
    expect(all.t).toHaveLength(5);
    const newer = h.report({ sinceMs: all.t[2]! * 1000 });
    expect(newer.t).toEqual(all.t.slice(3));
    expect(newer.endpoints[0]!.series.rxBytes).toHaveLength(2);
    const ns1 = h.report({ namespace: 'ns1' });
    expect(ns1.endpoints.map((e) => e.pod)).toEqual(['pod-1']);
    expect(h.report({ namespace: 'nope' }).endpoints).toEqual([]);
  });

  it('a changed sampling interval keeps the newest samples that fit', () => {
    const h = new History({ windowSeconds: 60 });
    for (let t = 0; t < 20; t++) h.add(fakeSnapshot(1, t, { intervalSeconds: 5 }));
    expect(h.report().t).toHaveLength(13);
    const last = h.report().t.at(-1)!;
    h.add({ ...fakeSnapshot(1, 0), at: new Date((last + 30) * 1000).toISOString(), intervalSeconds: 30 });
    const r = h.report();
    expect(r.intervalSeconds).toBe(30);
    expect(r.t.at(-1)).toBe(last + 30);
    expect(r.t.every((t) => t >= last + 30 - 60)).toBe(true);
    expect(r.t.length).toBeLessThanOrEqual(3);
  });

  it('streamed: a slot overwritten while the endpoints are read comes out null, not another time', () => {
    const h = new History({ windowSeconds: 10 }); // 3 slots
    for (let t = 1; t <= 3; t++) h.add(fakeSnapshot(2, t));
    const { head, endpoints } = h.stream();
    const it = endpoints[Symbol.iterator]();
    const first = it.next().value!;
    h.add(fakeSnapshot(2, 4)); // overwrites the slot of t=1
    const second = it.next().value!;
    expect(head.t).toHaveLength(3);
    expect(first.series.rxBytes).toEqual([1100, 1200, 1300]);
    expect(second.series.rxBytes).toEqual([null, 2200, 2300]);
  });

  it('a counter that went backwards (interface re-created) gives no negative rate', () => {
    const h = new History();
    h.add(fakeSnapshot(1, 10));
    h.add({ ...fakeSnapshot(1, 11), endpoints: [fakeEndpoint(0, 1)] });
    expect(h.report().endpoints[0]!.series.drops).toEqual([0, 0]);
  });
});

describe('cnictl top table', () => {
  it('formats rates, counts, ratios and durations', () => {
    expect(human(0)).toBe('0B');
    expect(human(999)).toBe('999B');
    expect(human(1500)).toBe('1.5KB');
    expect(human(123_456_789)).toBe('123MB');
    expect(human(undefined)).toBe('-');
    expect(count(7)).toBe('7');
    expect(count(2.5)).toBe('2.5');
    expect(count(12_345)).toBe('12.3k');
    expect(percent(0.0123)).toBe('1.23%');
    expect(percent(0.5)).toBe('50.0%');
    expect(percent(undefined)).toBe('-');
    expect(duration(0.0004)).toBe('400µs');
    expect(duration(0.0021)).toBe('2.10ms');
    expect(duration(0.15)).toBe('150.0ms');
    expect(duration(2)).toBe('2.00s');
    expect(duration(undefined)).toBe('-');
  });

  it('one row per endpoint, busiest first; -n drops the NAMESPACE column', () => {
    const m = fakeSnapshot(3, 2);
    m.endpoints[0]!.latencySeconds = undefined;
    m.endpoints[2]!.counters.rxErrors = 4;
    const lines = topTable(m).trimEnd().split('\n');
    expect(lines[0]).toBe(`node node-a, sample at ${m.at} (every 5s): 3 endpoints, rx 6.6KB/s, tx 3.3KB/s`);
    expect(lines[1]!.split(/\s{3,}/)).toEqual([
      'NAMESPACE',
      'POD',
      'NETWORK',
      'IF',
      'RX/S',
      'TX/S',
      'RX-PPS',
      'TX-PPS',
      'ERRORS',
      'DROPS',
      'ERR%',
      'CONNS',
      'UTIL',
      'LATENCY',
    ]);
    expect(lines.slice(2).map((l) => l.split(/\s+/)[1])).toEqual(['pod-2', 'pod-1', 'pod-0']);
    expect(lines[2]!.split(/\s+/)).toEqual([
      'ns2',
      'pod-2',
      'net',
      'eth0',
      '3.2KB',
      '1.6KB',
      '10',
      '8',
      '4',
      '6',
      '1.00%',
      '2',
      '-',
      '2.02ms',
    ]);
    expect(lines[3]!.split(/\s+/)).toEqual([
      'ns1',
      'pod-1',
      'net',
      'eth0',
      '2.2KB',
      '1.1KB',
      '10',
      '8',
      '0',
      '6',
      '1.00%',
      '1',
      '0.18%',
      '2.01ms',
    ]);
    expect(lines[4]!.split(/\s+/).at(-1)).toBe('-');
    const one = topTable(m, 'ns1').trimEnd().split('\n');
    expect(one).toHaveLength(3);
    expect(one[1]!.startsWith('POD')).toBe(true);
    expect(one[2]!.split(/\s+/)[0]).toBe('pod-1');
    expect(topTable(m, 'none')).toContain('no endpoints in namespace none');
  });
});

describe('dashboard routes', () => {
  const entry: ServicePortEntry = {
    key: 'x/web:80/tcp',
    namespace: 'x',
    name: 'web',
    portName: 'http',
    vip: '10.96.0.10',
    family: 4,
    port: 80,
    protocol: 'tcp',
    algorithm: 'least-connections',
    backends: [
      { key: '10.1.0.5:8080', address: '10.1.0.5', port: 8080, weight: 1, source: 'x/a', healthy: true },
      { key: '10.1.0.6:8080', address: '10.1.0.6', port: 8080, weight: 1, source: 'x/b', healthy: false, reason: 'connection refused' },
    ],
    active: [],
    id: 's0',
  };
  entry.active = [entry.backends[0]!];

  it('services report: healthy count, each backend active or not, its open connections', () => {
    const r = servicesReport({ entries: [entry], connections: { 'x/web:80/tcp|10.1.0.5:8080': 3 } });
    expect(r.services).toEqual([
      {
        namespace: 'x',
        name: 'web',
        portName: 'http',
        vip: '10.96.0.10',
        port: 80,
        protocol: 'tcp',
        algorithm: 'least-connections',
        healthy: 1,
        backends: [
          { address: '10.1.0.5', port: 8080, weight: 1, node: undefined, healthy: true, active: true, reason: undefined, connections: 3 },
          {
            address: '10.1.0.6',
            port: 8080,
            weight: 1,
            node: undefined,
            healthy: false,
            active: false,
            reason: 'connection refused',
            connections: undefined,
          },
        ],
      },
    ]);
  });

  it('the embedded assets are the page, its script and uPlot', () => {
    expect(ASSETS['/']!.text).toContain('<script src="/assets/uPlot.min.js">');
    expect(ASSETS['/assets/uPlot.min.js']!.text.length).toBeGreaterThan(40_000);
    expect(ASSETS['/assets/uPlot.min.js']!.text).toContain('uPlot');
    expect(ASSETS['/assets/dashboard.js']!.text).toContain('/api/v1/history');
    expect(ASSETS['/assets/uPlot.min.css']!.text).toContain('.uplot');
    expect(ASSETS['/assets/dashboard.css']!.text).toContain('.grid');
  });

  describe('over HTTP (loopback)', () => {
    let server: http.Server;
    let base: string;
    const history = new History();
    beforeAll(async () => {
      for (let t = 1; t <= 4; t++) history.add(fakeSnapshot(2, t));
      const h: ApiHandlers = {
        status: () => ({ node: 'n', pid: 1, startedAt: '', store: 'file', memory: { rss: 0, heapUsed: 0 }, reconcilers: [] }),
        resync: async () => [],
        routes: dashboardRoutes({ history, services: () => ({ entries: [entry], connections: {} }) }),
      };
      server = await startHttp('127.0.0.1:0', h, new Logger('test', { CNI_LOG_LEVEL: 'error' }));
      base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
    });
    afterAll(() => new Promise<void>((r) => server.close(() => r())));

    const get = (
      p: string,
      headers: Record<string, string> = {},
    ): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> =>
      new Promise((resolve, reject) => {
        http
          .get(`${base}${p}`, { headers }, (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
          })
          .on('error', reject);
      });

    it('GET / is the page; assets gzipped when asked', async () => {
      const page = await get('/');
      expect(page.status).toBe(200);
      expect(page.headers['content-type']).toBe('text/html; charset=utf-8');
      expect(page.body.toString()).toContain('/assets/dashboard.js');
      const js = await get('/assets/uPlot.min.js', { 'accept-encoding': 'gzip, deflate' });
      expect(js.headers['content-encoding']).toBe('gzip');
      expect(gunzipSync(js.body).toString()).toBe(ASSETS['/assets/uPlot.min.js']!.text);
      expect(js.body.length).toBeLessThan(ASSETS['/assets/uPlot.min.js']!.text.length / 2);
    });

    it('GET /api/v1/history, ?since, ?namespace; a bad since is 400', async () => {
      const all = JSON.parse((await get('/api/v1/history')).body.toString()) as HistoryReport;
      expect(all.t).toHaveLength(4);
      expect(all.endpoints).toHaveLength(2);
      const since = JSON.parse((await get(`/api/v1/history?since=${all.t[1]}&namespace=ns1`)).body.toString()) as HistoryReport;
      expect(since.t).toEqual(all.t.slice(2));
      expect(since.endpoints.map((e) => e.pod)).toEqual(['pod-1']);
      expect((await get('/api/v1/history?since=soon')).status).toBe(400);
    });

    it('GET /api/v1/history streams many endpoints in batches into one JSON document', async () => {
      const big = new History();
      for (let t = 1; t <= 3; t++) big.add(fakeSnapshot(60, t));
      const routes = dashboardRoutes({ history: big });
      const s2 = await startHttp(
        '127.0.0.1:0',
        {
          status: () => ({ node: 'n', pid: 1, startedAt: '', store: 'file', memory: { rss: 0, heapUsed: 0 }, reconcilers: [] }),
          resync: async () => [],
          routes,
        },
        new Logger('test', { CNI_LOG_LEVEL: 'error' }),
      );
      try {
        const port = (s2.address() as { port: number }).port;
        const body = await new Promise<string>((resolve, reject) => {
          http
            .get(`http://127.0.0.1:${port}/api/v1/history`, (res) => {
              let b = '';
              res.setEncoding('utf8');
              res.on('data', (c: string) => (b += c));
              res.on('end', () => resolve(b));
            })
            .on('error', reject);
        });
        expect(JSON.parse(body)).toEqual(JSON.parse(JSON.stringify(big.report())));
        expect((JSON.parse(body) as HistoryReport).endpoints).toHaveLength(60);
      } finally {
        await new Promise<void>((r) => s2.close(() => r()));
      }
    });

    it('GET /api/v1/services', async () => {
      const r = JSON.parse((await get('/api/v1/services')).body.toString()) as { services: Array<{ healthy: number }> };
      expect(r.services).toHaveLength(1);
      expect(r.services[0]!.healthy).toBe(1);
    });
  });
});

describe('round4', () => {
  it('four significant digits below 1000, whole numbers above, null for no value', async () => {
    const { round4 } = await import('../agent/dashboard/history.ts');
    expect(round4(0.012345)).toBe(0.01235);
    expect(round4(Math.fround(0.0123))).toBe(0.0123);
    expect(round4(123.456)).toBe(123.5);
    expect(round4(-0.5)).toBe(-0.5);
    expect(round4(123456.7)).toBe(123457);
    expect(round4(0)).toBe(0);
    expect(round4(NaN)).toBeNull();
    expect(round4(Infinity)).toBeNull();
  });
});

describe('policy drops', () => {
  const rs = {
    counterInfo: {
      anp_deny_in_0: { kind: 'AdminNetworkPolicy' as const, name: 'deny', direction: 'ingress' as const, rule: 0, ruleName: 'block-x' },
      np_x_web_in_0: { kind: 'NetworkPolicy' as const, namespace: 'x', name: 'web', direction: 'ingress' as const, rule: 0 },
    },
    chains: [
      {
        name: 'ingress_g1',
        rules: [
          'ip saddr @s1 counter name anp_deny_in_0 drop',
          'ip saddr @s2 counter name np_x_web_in_0 return',
          'counter name default_deny_in drop',
        ],
      },
      { name: 'egress_g1', rules: ['counter name "default_deny_eg" reject', 'ct state established accept'] },
    ],
  };

  it('the counters whose rules drop or reject, with what they count', () => {
    const d = dropCounters(rs);
    expect([...d.keys()].sort()).toEqual(['anp_deny_in_0', 'default_deny_eg', 'default_deny_in'].sort());
    expect(d.get('anp_deny_in_0')).toEqual(rs.counterInfo.anp_deny_in_0);
  });

  it('nft -j counters and the report, most packets first', () => {
    const values = parseNftCounters(
      JSON.stringify({
        nftables: [
          { metainfo: {} },
          { counter: { family: 'inet', name: 'default_deny_in', table: 't', packets: 7, bytes: 588 } },
          { counter: { name: 'anp_deny_in_0', packets: 2, bytes: 120 } },
        ],
      }),
    );
    expect(values.get('default_deny_in')).toEqual({ packets: 7, bytes: 588 });
    expect(parseNftCounters('')).toEqual(new Map());
    const r = policyDrops('t', new Date(0), dropCounters(rs), values);
    expect(r.table).toBe('t');
    expect(r.drops.map((d) => [d.counter, d.packets, d.isolated])).toEqual([
      ['default_deny_in', 7, true],
      ['anp_deny_in_0', 2, false],
      ['default_deny_eg', 0, true],
    ]);
    expect(r.drops[1]).toMatchObject({
      kind: 'AdminNetworkPolicy',
      name: 'deny',
      direction: 'ingress',
      rule: 0,
      ruleName: 'block-x',
      bytes: 120,
    });
    expect(r.drops[2]!.direction).toBe('egress');
  });
});
