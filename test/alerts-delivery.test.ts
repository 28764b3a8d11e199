/**
 * Alert delivery against real receivers on loopback, with the alert engine and the agent's API
 * servers in-process and samples injected:
 * - a real Alertmanager (Debian prometheus-alertmanager, private --storage.path, no gossip)
 *   receives our firing alert over API v2 (its /api/v2/alerts lists it with our labels and
 *   annotations), routes it to its own webhook receiver, and drops it once we send it resolved;
 * - a webhook receiver that refuses connections and one that accepts and never answers stall
 *   neither the evaluation nor the agent's socket and HTTP API; the refusing one, once it
 *   listens, gets the retried notification.
 * Ports from testPort() (prefix al), files under a private temp dir.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import type net from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { askAgent } from '../shared/agentapi.ts';
import { parseAgentConfig } from '../shared/agentconfig.ts';
import { Logger } from '../shared/cni/log.ts';
import type { Sample } from '../shared/monitoring.ts';
import { startHttp, startSocket, type ApiHandlers } from '../agent/api.ts';
import { AlertEngine } from '../agent/alerts/index.ts';
import type { WebhookMessage } from '../agent/alerts/notify.ts';
import { testPort } from './helpers/run.ts';

const AM_BIN = '/usr/bin/prometheus-alertmanager';
const noAm = spawnSync(AM_BIN, ['--version']).status === 0 ? '' : 'prometheus-alertmanager not installed (scripts/setup-deps.sh test)';
if (noAm) console.log(`skipping the Alertmanager test: ${noAm}`);

// on the host's loopback, which every test file (and every engineer's run) shares: random ports
// below the ephemeral range (testPort(): `port + 1` is free too), three distinct pairs
const pairs = new Set<number>();
while (pairs.size < 3) pairs.add(testPort());
const [amPair, hookPair, apiPair] = [...pairs] as [number, number, number];
const AM_PORT = amPair;
const AM_HOOK_PORT = amPair + 1;
const HOOK_DOWN_PORT = hookPair;
const HOOK_HANG_PORT = hookPair + 1;
const API_PORT = apiPair;

const log = new Logger('al-test', { CNI_LOG_LEVEL: process.env.AL_LOG_LEVEL ?? 'error' });
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const dir = mkdtempSync(path.join(os.tmpdir(), 'al-delivery-'));
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  // every cleanup runs even when one throws (a server left listening would fail the next test
  // on its port, hiding this one's error); the first error is reported after all of them
  const errors: unknown[] = [];
  for (const c of cleanups.splice(0).reverse())
    await Promise.resolve()
      .then(c)
      .catch((e: unknown) => errors.push(e));
  if (errors.length) throw errors[0];
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function until<T>(f: () => Promise<T> | T, ok: (v: T) => boolean, withinMs = 15_000): Promise<T> {
  const deadline = Date.now() + withinMs;
  for (;;) {
    const v = await f();
    if (ok(v) || Date.now() > deadline) return v;
    await sleep(100);
  }
}

/** An HTTP server on 127.0.0.1:port recording JSON bodies; `hang`: accept and never answer. */
async function receiver(port: number, hang = false): Promise<{ bodies: unknown[]; open: () => number; server: http.Server }> {
  const bodies: unknown[] = [];
  let open = 0;
  const pending = new Set<http.ServerResponse>();
  const server = http.createServer((req, res) => {
    let text = '';
    req.on('data', (d: Buffer) => (text += d.toString()));
    req.on('end', () => {
      bodies.push(JSON.parse(text));
      if (hang) {
        open++;
        pending.add(res);
        res.on('close', () => {
          open--;
          pending.delete(res);
        });
        return;
      }
      res.writeHead(200).end();
    });
  });
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  cleanups.push(
    () =>
      new Promise<void>((r) => {
        for (const p of pending) p.destroy();
        server.closeAllConnections();
        server.close(() => r());
      }),
  );
  return { bodies, open: () => open, server };
}

const labels = (pod: string): Record<string, string> => ({ namespace: 'al', pod, network: 'alnet', interface: 'eth0', node: 'al-node' });

/** The engine plus the agent's socket and HTTP API around it, samples from `samples()`. */
async function engineWithApi(alerts: Record<string, unknown>, samples: () => Sample[]): Promise<{ eng: AlertEngine; socket: string }> {
  const socket = path.join(dir, `agent-${Math.random().toString(36).slice(2, 8)}.sock`);
  const cfg = parseAgentConfig({
    store: { type: 'file', path: path.join(dir, 'store') },
    node: 'al-node',
    listen: `127.0.0.1:${API_PORT}`,
    socket,
    alerts,
  });
  const eng = new AlertEngine(cfg, log, samples);
  const h: ApiHandlers = {
    status: () => ({ node: 'al-node', pid: process.pid, startedAt: '', store: '', memory: { rss: 0, heapUsed: 0 }, reconcilers: [] }),
    resync: () => Promise.resolve([]),
    alerts: () => eng.alerts(),
    routes: eng.routes(),
  };
  const servers: Array<http.Server | net.Server> = [await startHttp(cfg.listen, h, log), await startSocket(socket, h, log)];
  eng.start();
  cleanups.push(async () => {
    await eng.stop();
    await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
  });
  return { eng, socket };
}

async function getJson(url: string): Promise<unknown> {
  const r = await fetch(url, { signal: AbortSignal.timeout(3000) });
  return r.json();
}

describe('a real Alertmanager', () => {
  it.skipIf(!!noAm)(
    'receives our firing alert over API v2, routes it, and drops it once resolved',
    async () => {
      const amHook = await receiver(AM_HOOK_PORT);
      const amDir = path.join(dir, 'am');
      const amConfig = path.join(dir, 'alertmanager.yml');
      writeFileSync(
        amConfig,
        [
          'route:',
          '  receiver: al-hook',
          '  group_by: [alertname, namespace, pod]',
          '  group_wait: 1s',
          '  group_interval: 1s',
          '  repeat_interval: 1h',
          'receivers:',
          '  - name: al-hook',
          '    webhook_configs:',
          `      - url: http://127.0.0.1:${AM_HOOK_PORT}/from-alertmanager`,
          '        send_resolved: true',
          '',
        ].join('\n'),
      );
      let amLog = '';
      const am: ChildProcess = spawn(
        AM_BIN,
        [
          `--config.file=${amConfig}`,
          `--storage.path=${amDir}`,
          `--web.listen-address=127.0.0.1:${AM_PORT}`,
          '--cluster.listen-address=',
          '--log.level=warn',
        ],
        { stdio: ['ignore', 'ignore', 'pipe'] },
      );
      am.stderr!.on('data', (d: Buffer) => (amLog += d.toString()));
      cleanups.push(async () => {
        if (am.exitCode === null) {
          am.kill('SIGTERM');
          await new Promise((r) => am.once('exit', r));
        }
      });
      const ready = await until(
        () =>
          fetch(`http://127.0.0.1:${AM_PORT}/-/ready`).then(
            (r) => r.status,
            () => 0,
          ),
        (s) => s === 200,
        60_000, // a real server's start on a loaded machine: generous, it returns once ready
      );
      expect(ready, `alertmanager did not become ready: ${amLog}`).toBe(200);

      let value = 0.42;
      const { eng } = await engineWithApi(
        {
          evaluationInterval: '200ms',
          resendDelay: '1s',
          alertmanagers: [`http://127.0.0.1:${AM_PORT}`],
          rules: [{ name: 'HighErrorRate', for: '0s' }],
        },
        () => (value > 0 ? [{ metric: 'cni_ts_endpoint_error_ratio', labels: labels('a'), value }] : []),
      );
      type AmAlert = {
        labels: Record<string, string>;
        annotations: Record<string, string>;
        status: { state: string };
        generatorURL: string;
        startsAt: string;
      };
      const listed = await until(
        () => getJson(`http://127.0.0.1:${AM_PORT}/api/v2/alerts`) as Promise<AmAlert[]>,
        (l) => l.some((a) => a.labels.pod === 'a'),
      );
      const ours = listed.find((a) => a.labels.pod === 'a');
      expect(ours, `Alertmanager lists ${JSON.stringify(listed)}; receivers ${JSON.stringify(eng.receivers())}`).toBeDefined();
      expect(ours!.labels).toEqual({ alertname: 'HighErrorRate', severity: 'critical', ...labels('a') });
      expect(ours!.annotations).toMatchObject({
        value: '42%',
        description: 'Endpoint al/a on network alnet: 42% of its packets are errors or drops (threshold 5%).',
      });
      expect(ours!.status.state).toBe('active');
      expect(ours!.generatorURL).toBe(`http://127.0.0.1:${API_PORT}/api/v1/alerts?alertname=HighErrorRate`);
      expect(Date.parse(ours!.startsAt)).toBe(Date.parse(eng.alerts()[0]!.firedAt!));

      // Alertmanager routes it to its receiver
      const routed = await until(
        () => amHook.bodies as WebhookMessage[],
        (b) => b.some((m) => m.status === 'firing'),
      );
      expect(routed.find((m) => m.status === 'firing')!.alerts[0]!.labels).toMatchObject({ alertname: 'HighErrorRate', pod: 'a' });

      // resolved: we send endsAt = resolvedAt; Alertmanager stops listing it and notifies resolved
      value = 0;
      const after = await until(
        () => getJson(`http://127.0.0.1:${AM_PORT}/api/v2/alerts`) as Promise<AmAlert[]>,
        (l) => !l.some((a) => a.labels.pod === 'a'),
      );
      expect(after.filter((a) => a.labels.pod === 'a')).toEqual([]);
      expect(eng.alerts().map((a) => a.state)).toEqual(['resolved']);
      const resolved = await until(
        () => amHook.bodies as WebhookMessage[],
        (b) => b.some((m) => m.status === 'resolved'),
      );
      expect(resolved.some((m) => m.status === 'resolved')).toBe(true);
      expect(eng.receivers()[0]).toMatchObject({ kind: 'alertmanager', url: `http://127.0.0.1:${AM_PORT}`, failed: 0 });
    },
    120_000,
  );
});

describe('webhooks that are down', () => {
  it('stall neither evaluation nor the API; a receiver that comes back gets the retried notification', async () => {
    const hang = await receiver(HOOK_HANG_PORT, true);
    let value = 0.3;
    const { eng, socket } = await engineWithApi(
      {
        evaluationInterval: '100ms',
        rules: [{ name: 'HighLatency', for: '0s' }],
        webhooks: [`http://127.0.0.1:${HOOK_DOWN_PORT}/hook`, { url: `http://127.0.0.1:${HOOK_HANG_PORT}/hook`, timeout: '3s' }],
        webhookRetry: { initial: '200ms', max: '400ms', maxAttempts: 1000 },
      },
      () => [{ metric: 'cni_ts_endpoint_latency_seconds', labels: labels('b'), value }],
    );
    // the hanging receiver holds our first request open...
    await until(
      () => hang.open(),
      (n) => n === 1,
    );
    expect(hang.open()).toBe(1);
    const evalsThen = eng.evaluations;
    // ...while evaluation goes on, and the socket and HTTP API answer
    await until(
      () => eng.evaluations,
      (n) => n >= evalsThen + 5,
    );
    expect(hang.open()).toBe(1);
    expect(eng.evaluations).toBeGreaterThanOrEqual(evalsThen + 5);
    const viaSocket = await askAgent(socket, { type: 'alerts' }, 3000);
    expect(viaSocket).toMatchObject({ ok: true, type: 'alerts', alerts: [{ name: 'HighLatency', state: 'firing', value: 0.3 }] });
    const viaHttp = (await getJson(`http://127.0.0.1:${API_PORT}/api/v1/alerts?state=firing`)) as {
      alerts: { name: string }[];
      receivers: { url: string; failed: number }[];
    };
    expect(viaHttp.alerts.map((a) => a.name)).toEqual(['HighLatency']);
    // the refusing receiver has failed at least twice by now (retrying with backoff)
    const down = await until(
      () => eng.receivers()[0]!,
      (r) => r.failed >= 2,
    );
    expect(down).toMatchObject({ kind: 'webhook', url: `http://127.0.0.1:${HOOK_DOWN_PORT}/hook`, sent: 0, lastError: 'ECONNREFUSED' });
    // a change while it is down queues behind the first message
    value = 0.01;
    await until(
      () => eng.alerts()[0]!.state,
      (s) => s === 'resolved',
    );
    // it comes back: the retried firing message arrives, then the resolved one, in order
    const back = await receiver(HOOK_DOWN_PORT);
    const got = await until(
      () => back.bodies as WebhookMessage[],
      (b) => b.length >= 2,
    );
    expect(got.map((m) => [m.status, m.alerts.map((a) => `${a.labels.alertname} ${a.labels.pod} ${a.status}`)])).toEqual([
      ['firing', ['HighLatency b firing']],
      ['resolved', ['HighLatency b resolved']],
    ]);
    expect(got[0]).toMatchObject({ version: '4', receiver: 'cni-ts', source: 'cni-ts agent on al-node' });
    // the receiver records the body before its answer reaches us: wait for the count, don't race it
    const counted = await until(
      () => eng.receivers()[0]!,
      (r) => r.sent >= 2 && r.queued === 0,
    );
    expect(counted).toMatchObject({ sent: 2, queued: 0, dropped: 0 });
  }, 60_000);
});
