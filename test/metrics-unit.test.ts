/**
 * Pure parts of the metrics sampler: kernel output parsers, counter folding (resets), figures,
 * the `metrics` config section, the Prometheus export of a snapshot.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { parseCallLines, recordCall, type PluginCallRecord } from '../shared/cni/calls.ts';
import { PluginCalls } from '../agent/metrics/plugin-calls.ts';
import { allocatedByNetwork, poolSizeOf, poolSizes } from '../agent/metrics/ipam.ts';
import { parseLinkStats, parseNftCounters, parseQdiscStats } from '../shared/kernel/stats.ts';
import { registerDnsFamilies, registerServiceFamilies } from '../agent/metrics/services-dns.ts';
import { policyLabels } from '../agent/metrics/policy.ts';
import { newMetrics as newDnsMetrics, observeDuration } from '../agent/dns/metrics.ts';
import { parsePing, parseSsRtts } from '../shared/kernel/probe.ts';
import { advance, containerCounters, figuresOf, limitsOf, zeroCounters } from '../agent/metrics/figures.ts';
import { metricsSettings, parseBandwidth } from '../agent/metrics/config.ts';
import { createRegistry, registerEndpointFamilies } from '../agent/metrics/registry.ts';
import { countConnections } from '../agent/metrics/sampler.ts';
import type { Endpoint } from '../shared/objects/types.ts';
import type { MetricsSnapshot } from '../shared/monitoring.ts';
import { parseConntrackLine, type CtEntry } from '../shared/kernel/conntrack.ts';

const LINKS = JSON.stringify([
  {
    ifindex: 1,
    ifname: 'lo',
    stats64: { rx: { bytes: 5, packets: 1, errors: 0, dropped: 0 }, tx: { bytes: 5, packets: 1, errors: 0, dropped: 0 } },
  },
  {
    ifindex: 7,
    ifname: 'veth1',
    stats64: { rx: { bytes: 1000, packets: 10, errors: 1, dropped: 2 }, tx: { bytes: 5000, packets: 50, errors: 3, dropped: 4 } },
  },
]);
const QDISCS = JSON.stringify([
  {
    kind: 'tbf',
    handle: '1:',
    dev: 'veth1',
    root: true,
    options: { rate: 2500000, burst: 20000, lat: 25000 },
    bytes: 1,
    packets: 1,
    drops: 6,
    overlimits: 0,
    requeues: 0,
    backlog: 0,
    qlen: 0,
  },
  { kind: 'ingress', handle: 'ffff:', dev: 'veth1', parent: 'ffff:fff1', options: {}, bytes: 0, packets: 0, drops: 1, overlimits: 0 },
  { kind: 'tbf', handle: '1:', dev: 'bwpabc', root: true, options: { rate: 125000 }, drops: 9 },
  { kind: 'noqueue', handle: '0:', dev: 'lo', root: true, options: {} },
]);

const ep = (name: string, extra: Partial<Endpoint['spec']> = {}): Endpoint => ({
  apiVersion: 'cni-ts.dev/v1',
  kind: 'Endpoint',
  metadata: { namespace: 'x', name },
  spec: { node: 'n1', network: 'net1', containerId: `c-${name}`, ifname: 'eth0', ips: ['10.1.0.5/24'], hostInterface: 'veth1', ...extra },
});

describe('kernel readers (parsers)', () => {
  it('ip -s -json link', () => {
    const m = parseLinkStats(LINKS);
    expect(m.get('veth1')).toEqual({
      ifindex: 7,
      rxBytes: 1000,
      txBytes: 5000,
      rxPackets: 10,
      txPackets: 50,
      rxErrors: 1,
      txErrors: 3,
      rxDropped: 2,
      txDropped: 4,
    });
    expect(parseLinkStats('').size).toBe(0);
  });
  it('tc -s -json qdisc: root, ingress drops, TBF rate', () => {
    const q = parseQdiscStats(QDISCS);
    expect(q.get('veth1')?.root).toMatchObject({ kind: 'tbf', rate: 2500000, drops: 6 });
    expect(q.get('veth1')?.drops).toBe(7);
    expect(limitsOf(q.get('veth1'), q.get('bwpabc'))).toEqual({ rx: 20e6, tx: 1e6 });
    expect(limitsOf(q.get('lo'), undefined)).toEqual({});
  });
  it('ping and ss output', () => {
    expect(parsePing('64 bytes from 10.0.0.1: icmp_seq=1 ttl=64 time=0.061 ms')).toBeCloseTo(0.000061);
    expect(parsePing('1 packets transmitted, 0 received')).toBeUndefined();
    expect(parseSsRtts('ESTAB 0 0 a:1 b:2\n\t cubic rto:204 rtt:0.178/0.019 ato:40\nESTAB\n\t rtt:10.5/2 x')).toEqual([0.000178, 0.0105]);
  });
});

describe('counters and figures', () => {
  const links = parseLinkStats(LINKS);
  const q = parseQdiscStats(QDISCS);
  it('container view: host rx is container tx; qdisc drops by direction', () => {
    const c = containerCounters(links.get('veth1')!, q.get('veth1'), q.get('bwpabc'));
    expect(c).toEqual({
      rxBytes: 5000,
      txBytes: 1000,
      rxPackets: 50,
      txPackets: 10,
      rxErrors: 3,
      txErrors: 1,
      rxDropped: 4 + 6,
      txDropped: 2 + 1 + 9,
    });
  });
  it('a recreated veth (new ifindex) or a counter going down keeps the exported counter monotonic', () => {
    const a = advance(undefined, 7, { ...zeroCounters(), rxBytes: 1000 }, 0);
    expect(a.counters.rxBytes).toBe(1000);
    const b = advance(a, 7, { ...zeroCounters(), rxBytes: 1500 }, 1000);
    expect(b.counters.rxBytes).toBe(1500);
    const c = advance(b, 9, { ...zeroCounters(), rxBytes: 100 }, 2000); // recreated
    expect(c.counters.rxBytes).toBe(1600);
    const d = advance(c, 9, { ...zeroCounters(), rxBytes: 50 }, 3000); // went down again
    expect(d.counters.rxBytes).toBe(1650);
  });
  it('rates, utilization over the TBF limit (else the capacity), error ratio', () => {
    const prev = advance(undefined, 7, zeroCounters(), 0);
    const next = advance(
      prev,
      7,
      { ...zeroCounters(), rxBytes: 2_500_000, txBytes: 1000, rxPackets: 90, txPackets: 5, rxDropped: 5 },
      2000,
    );
    const f = figuresOf({ ep: ep('a'), node: 'n1', prev, next, limits: { rx: 10e6 }, capacity: 1e9, connections: 2, connectionsTotal: 3 });
    expect(f.rates.rxBytes).toBe(1_250_000);
    expect(f.utilization).toBeCloseTo(1.0); // 10 Mbit/s over a 10 Mbit/s TBF
    expect(f.limitBitsPerSecond).toBe(10e6);
    expect(f.errorRatio).toBeCloseTo(5 / 100);
    expect(f).toMatchObject({
      namespace: 'x',
      pod: 'a',
      network: 'net1',
      interface: 'eth0',
      node: 'n1',
      ips: ['10.1.0.5'],
      connections: 2,
      connectionsTotal: 3,
    });
    const g = figuresOf({ ep: ep('a'), node: 'n1', prev, next, limits: {}, capacity: 1e9, connections: 0, connectionsTotal: 0 });
    expect(g.utilization).toBeCloseTo(0.01);
    const none = figuresOf({ ep: ep('a'), node: 'n1', prev: undefined, next: prev, limits: {}, connections: 0, connectionsTotal: 0 });
    expect(none.utilization).toBeUndefined();
    expect(none.errorRatio).toBe(0);
  });
  it('open connections per endpoint from one conntrack listing', () => {
    const ct = [
      'tcp      6 431999 ESTABLISHED src=10.1.0.5 dst=10.1.0.6 sport=40000 dport=80 src=10.1.0.6 dst=10.1.0.5 sport=80 dport=40000 [ASSURED] mark=0 use=1',
      'udp      17 29 src=10.9.9.9 dst=10.96.0.10 sport=5353 dport=53 src=10.1.0.6 dst=10.9.9.9 sport=53 dport=5353 mark=0 use=1',
      'tcp      6 10 TIME_WAIT src=192.0.2.1 dst=192.0.2.2 sport=1 dport=2 src=192.0.2.2 dst=192.0.2.1 sport=2 dport=1 mark=0 use=1',
    ].map(parseConntrackLine) as CtEntry[];
    const m = countConnections(
      ct,
      new Map([
        ['10.1.0.5', ['x/a']],
        ['10.1.0.6', ['x/b']],
      ]),
    );
    expect(Object.fromEntries(m)).toEqual({ 'x/a': 1, 'x/b': 2 });
  });
});

describe('metrics config section', () => {
  const cfg = (metrics: Record<string, unknown>) => ({ metrics, source: '/etc/cni-ts/agent.json' });
  it('defaults', () => {
    expect(metricsSettings(cfg({}))).toMatchObject({
      enabled: true,
      intervalSeconds: 5,
      capacity: {},
      defaultCapacity: 10e9,
      latency: { mode: 'icmp' },
    });
  });
  it('bandwidth strings', () => {
    expect(parseBandwidth('1Gbit')).toBe(1e9);
    expect(parseBandwidth('100mbit')).toBe(1e8);
    expect(parseBandwidth('1mbps')).toBe(8e6);
    expect(parseBandwidth(5000)).toBe(5000);
    expect(parseBandwidth('fast')).toBeUndefined();
    expect(metricsSettings(cfg({ capacity: { net1: '1Gbit' }, defaultCapacity: null })).capacity).toEqual({ net1: 1e9 });
    expect(metricsSettings(cfg({ defaultCapacity: null })).defaultCapacity).toBeUndefined();
  });
  it('clear errors, code 7, naming the field', () => {
    const bad: Array<[Record<string, unknown>, RegExp]> = [
      [{ intervalSeconds: 0 }, /metrics\.intervalSeconds: must be a number of seconds/],
      [{ capacity: { net1: 'lots' } }, /metrics\.capacity\.net1: "lots" is not a bandwidth/],
      [{ capacity: [] }, /metrics\.capacity: must be an object/],
      [{ latency: { mode: 'udp' } }, /metrics\.latency\.mode: must be "icmp", "tcp", "both" or "off"/],
      [{ latency: { timeoutMs: 5 } }, /metrics\.latency\.timeoutMs: must be an integer from 100/],
      [{ interval: 5 }, /metrics\.interval: unknown key/],
    ];
    for (const [m, re] of bad) {
      let err: unknown;
      try {
        metricsSettings(cfg(m));
      } catch (e) {
        err = e;
      }
      expect(err, JSON.stringify(m)).toMatchObject({ code: 7, name: 'AgentConfigError' });
      expect((err as Error).message).toMatch(re);
    }
  });
});

describe('Prometheus export', () => {
  it('one series per endpoint with the five labels; absent values make no series', async () => {
    const reg = createRegistry();
    const prev = advance(undefined, 7, zeroCounters(), 0);
    const next = advance(prev, 7, { ...zeroCounters(), rxBytes: 1234, txBytes: 99 }, 1000);
    const snap: MetricsSnapshot = {
      node: 'n1',
      at: new Date().toISOString(),
      intervalSeconds: 5,
      endpoints: [
        figuresOf({ ep: ep('a'), node: 'n1', prev, next, limits: {}, connections: 1, connectionsTotal: 4, latencySeconds: 0.002 }),
      ],
    };
    registerEndpointFamilies(reg, () => snap);
    const text = await reg.metrics();
    expect(text).toContain('# TYPE cni_ts_endpoint_receive_bytes_total counter');
    expect(text).toContain('cni_ts_endpoint_receive_bytes_total{namespace="x",pod="a",network="net1",interface="eth0",node="n1"} 1234');
    expect(text).toContain('cni_ts_endpoint_transmit_bytes_total{namespace="x",pod="a",network="net1",interface="eth0",node="n1"} 99');
    expect(text).toContain('cni_ts_endpoint_latency_seconds{namespace="x",pod="a",network="net1",interface="eth0",node="n1"} 0.002');
    expect(text).toContain('cni_ts_endpoint_connections_total{namespace="x",pod="a",network="net1",interface="eth0",node="n1"} 4');
    expect(text).not.toMatch(/^cni_ts_endpoint_bandwidth_utilization_ratio\{/m); // no limit, no capacity
  });
});

describe('plugin call records (shared/cni/calls.ts) and their export', () => {
  const dir = `/tmp/mx-calls-${process.pid}`;
  const file = `${dir}/calls.log`;
  const env = { CNI_TS_PLUGIN_CALLS: file };
  const rec = (plugin: string, verb: string, ok = true, seconds = 0.02): PluginCallRecord => ({
    t: Date.now(),
    plugin,
    verb,
    result: ok ? 'ok' : 'error',
    ...(ok ? {} : { code: 7 }),
    seconds,
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('appends only to an existing file (the agent creates it), never throws, rotates at the bound', () => {
    rmSync(dir, { recursive: true, force: true });
    recordCall(rec('bridge', 'ADD'), env); // no directory: nothing, no throw
    mkdirSync(dir, { recursive: true });
    recordCall(rec('bridge', 'ADD'), env); // no file: nothing
    expect(existsSync(file)).toBe(false);
    writeFileSync(file, '');
    recordCall(rec('bridge', 'ADD'), env);
    recordCall(rec('bridge', 'DEL', false), env);
    expect(parseCallLines(readFileSync(file, 'utf8')).map((r) => `${r.verb}:${r.result}`)).toEqual(['ADD:ok', 'DEL:error']);
    recordCall(rec('bridge', 'CHECK'), env, 10); // past 10 bytes: rotated first
    expect(parseCallLines(readFileSync(`${file}.1`, 'utf8'))).toHaveLength(2);
    expect(parseCallLines(readFileSync(file, 'utf8'))).toHaveLength(1);
    recordCall(rec('bridge', 'ADD'), { CNI_TS_PLUGIN_CALLS: 'off' });
    expect(parseCallLines('garbage\n{"plugin":"x"}\n')).toEqual([]);
  });

  it('the agent reads appended records across a rotation into counters and a histogram', async () => {
    rmSync(dir, { recursive: true, force: true });
    const pc = new PluginCalls(file);
    pc.start(); // creates the file
    expect(existsSync(file)).toBe(true);
    recordCall(rec('bridge', 'ADD', true, 0.03), env);
    recordCall(rec('bridge', 'ADD', false, 0.2), env);
    pc.poll();
    recordCall(rec('endpoint', 'DEL', true, 0.004), env, 10); // rotates
    recordCall(rec('endpoint', 'DEL', true, 0.004), env);
    const reg = createRegistry();
    pc.register(reg);
    const text = await reg.metrics();
    expect(text).toContain('cni_ts_plugin_calls_total{plugin="bridge",verb="ADD",result="ok"} 1');
    expect(text).toContain('cni_ts_plugin_calls_total{plugin="bridge",verb="ADD",result="error"} 1');
    expect(text).toContain('cni_ts_plugin_calls_total{plugin="endpoint",verb="DEL",result="ok"} 2');
    expect(text).toContain('# TYPE cni_ts_plugin_call_duration_seconds histogram');
    expect(text).toContain('cni_ts_plugin_call_duration_seconds_bucket{plugin="bridge",verb="ADD",le="0.05"} 1');
    expect(text).toContain('cni_ts_plugin_call_duration_seconds_bucket{plugin="bridge",verb="ADD",le="+Inf"} 2');
    expect(text).toContain('cni_ts_plugin_call_duration_seconds_count{plugin="endpoint",verb="DEL"} 2');
    // a restarted agent reads what the files hold
    const again = new PluginCalls(file);
    again.start();
    expect([...again.calls.values()].reduce((a, b) => a + b, 0)).toBe(4);
  });
});

describe('IPAM pool usage', () => {
  const dir = `/tmp/mx-ipam-${process.pid}`;
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  it('allocations from host-local files, pool size from the endpoints subnets', () => {
    mkdirSync(`${dir}/net1`, { recursive: true });
    for (const f of ['10.1.0.2', '10.1.0.3', 'last_reserved_ip.0', 'lock']) writeFileSync(`${dir}/net1/${f}`, '');
    expect(Object.fromEntries(allocatedByNetwork(dir))).toEqual({ net1: 2 });
    expect(poolSizeOf('10.1.0.5/24')).toBe(253);
    expect(poolSizeOf('fd00::5/120')).toBe(255);
    const snap = { node: 'n', at: '', intervalSeconds: 5, endpoints: [{ network: 'net1' }] } as unknown as MetricsSnapshot;
    expect(Object.fromEntries(poolSizes(snap, () => ['10.1.0.2/24', '10.1.0.3/24']))).toEqual({ net1: 253 });
  });
});

describe('services, DNS and policy families', () => {
  it('service backends up/down and their open connections', async () => {
    const reg = createRegistry();
    const entry = {
      key: 'x/web:http/tcp',
      namespace: 'x',
      name: 'web',
      portName: 'http',
      port: 80,
      protocol: 'tcp',
      backends: [
        { key: '10.1.0.5:8080', healthy: true },
        { key: '10.1.0.6:8080', healthy: false },
      ],
    };
    registerServiceFamilies(reg, () => ({ entries: [entry as never], connections: { 'x/web:http/tcp|10.1.0.5:8080': 3 } }));
    const text = await reg.metrics();
    expect(text).toContain('cni_ts_service_backend_up{namespace="x",service="web",port="http/tcp",backend="10.1.0.5:8080"} 1');
    expect(text).toContain('cni_ts_service_backend_up{namespace="x",service="web",port="http/tcp",backend="10.1.0.6:8080"} 0');
    expect(text).toContain('cni_ts_service_backend_connections{namespace="x",service="web",port="http/tcp",backend="10.1.0.5:8080"} 3');
  });
  it('DNS counters and a cumulative duration histogram', async () => {
    const reg = createRegistry();
    const m = newDnsMetrics();
    m.queries.udp = 5;
    m.responses.NXDOMAIN = 2;
    observeDuration(m, 0.0002);
    observeDuration(m, 0.003);
    registerDnsFamilies(reg, () => m);
    const text = await reg.metrics();
    expect(text).toContain('cni_ts_dns_queries_total{transport="udp"} 5');
    expect(text).toContain('cni_ts_dns_responses_total{rcode="NXDOMAIN"} 2');
    expect(text).toContain('cni_ts_dns_request_duration_seconds_bucket{le="0.00025"} 1');
    expect(text).toContain('cni_ts_dns_request_duration_seconds_bucket{le="0.005"} 2');
    expect(text).toContain('cni_ts_dns_request_duration_seconds_count 2');
  });
  it('policy counter names back to policy and rule; nft -j counters parsed', () => {
    expect(policyLabels('np_x_allow-web_in_0')).toEqual({
      kind: 'NetworkPolicy',
      namespace: 'x',
      policy: 'allow-web',
      direction: 'ingress',
      rule: '0',
      verdict: 'allow',
      counter: 'np_x_allow-web_in_0',
    });
    expect(policyLabels('default_deny_eg')).toMatchObject({ kind: 'default', direction: 'egress', verdict: 'deny' });
    expect(policyLabels('anp_deny-y_in_2')).toMatchObject({ kind: 'AdminNetworkPolicy', policy: 'deny-y', rule: '2', verdict: 'rule' });
    const json = JSON.stringify({
      nftables: [
        { metainfo: { version: '1.0.6' } },
        { counter: { family: 'inet', name: 'np_x_a_in_0', table: 't', handle: 3, packets: 7, bytes: 420 } },
      ],
    });
    expect(parseNftCounters(json)).toEqual([{ name: 'np_x_a_in_0', packets: 7, bytes: 420 }]);
  });
});
