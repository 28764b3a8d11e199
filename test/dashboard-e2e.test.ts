/**
 * The dashboard and `cnictl top` against a real agent: pods x/a, x/b and x/c attached through
 * our built bridge + host-local + endpoint inside a test host netns
 * (test/helpers/policy-matrix.ts), a Service x/web with x/b as its backend, the built agent
 * there with its own file store, metrics sampled every second and one extra alert rule with a
 * low threshold and "for": "0s".
 *
 * The page is loaded in Debian's chromium (driven by playwright-core, never a downloaded
 * browser), started inside the test's host netns by a wrapper script: it reaches the agent on
 * 127.0.0.1 there and nothing else (offline by construction; every request it makes is checked
 * to be the agent's). Traffic (ping x/a → x/b, 1400-byte packets every 50 ms; 400 kbit/s of UDP
 * x/c → x/b with iperf3; pings x/a → x/c, which a NetworkPolicy isolating x/c drops) starts
 * after the page is open: the charts fill and the rule's alert appears without a reload.
 * A screenshot is kept as test-artifacts/dashboard.png.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { askAgent } from '../shared/agentapi.ts';
import type { EndpointFigures, MetricsSnapshot } from '../shared/monitoring.ts';
import type { NetworkPolicy, Service } from '../shared/objects/types.ts';
import { Cleanup } from './helpers/netns.ts';
import { PolicyMatrix } from './helpers/policy-matrix.ts';
import { ROOT } from './helpers/run.ts';
import { listening } from './helpers/wait.ts';

const PORT = 19500;
const CHROMIUM = '/usr/bin/chromium';
const ARTIFACTS = path.join(ROOT, 'test-artifacts');
const RULE = 'DbTrafficBurst';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

describe('dashboard and cnictl top on a real agent', () => {
  const cleanup = new Cleanup();
  let m: PolicyMatrix;
  let socket: string;
  let ctx: BrowserContext;
  let page: Page;
  const requests: string[] = [];
  const pageErrors: string[] = [];
  const traffic: ChildProcess[] = [];
  /** a process inside a pod's netns, killed in afterAll */
  const inPod = (pod: 'x/a' | 'x/b' | 'x/c', argv: string[]): ChildProcess => {
    const p = spawn('nsenter', [`--net=${m.pods.get(pod)!.netns.path}`, '--', ...argv], { stdio: 'ignore' });
    traffic.push(p);
    return p;
  };

  const metrics = async (): Promise<MetricsSnapshot> => {
    const r = await askAgent(socket, { type: 'metrics' });
    if (!r.ok || r.type !== 'metrics') throw new Error(`metrics: ${JSON.stringify(r)}`);
    return r.metrics;
  };
  const until = async <T>(what: string, get: () => Promise<T>, ok: (v: T) => boolean, withinMs = 30_000): Promise<T> => {
    const deadline = Date.now() + withinMs;
    for (;;) {
      const v = await get().catch(() => undefined);
      if (v !== undefined && ok(v)) return v;
      if (Date.now() > deadline)
        throw new Error(`${what}: still ${JSON.stringify(v)?.slice(0, 2000)}\n${m.startAgent().log().slice(-3000)}`);
      await new Promise((r) => setTimeout(r, 250));
    }
  };

  beforeAll(async () => {
    m = await PolicyMatrix.create(cleanup, {
      prefix: 'db',
      resyncSeconds: 1,
      agentConfig: (tb) => ({
        listen: `127.0.0.1:${PORT}`,
        services: { table: `${tb.id}_svc` },
        metrics: { intervalSeconds: 1, latency: { mode: 'icmp', timeoutMs: 500 } },
        alerts: {
          evaluationInterval: '1s',
          rules: [
            {
              name: RULE,
              metric: 'cni_ts_endpoint_receive_bytes_per_second',
              op: '>',
              threshold: 5000,
              for: '0s',
              severity: 'warning',
              description: '{{namespace}}/{{pod}} receives {{value}} B/s',
            },
          ],
        },
      }),
    });
    socket = (JSON.parse(readFileSync(m.agentConfig, 'utf8')) as { socket: string }).socket;
    for (const k of ['x/a', 'x/b', 'x/c'] as const) {
      const r = await m.addPod(k);
      if (r.exitCode !== 0) throw new Error(`endpoint ADD ${k}: ${r.stdout} ${r.stderr}`);
    }
    await m.label('x/b', { pod: 'b', app: 'web' });
    const svc: Service = {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'web', namespace: 'x' },
      spec: { selector: { app: 'web' }, ports: [{ name: 'http', port: 80, targetPort: 80 }] },
    };
    await m.apply(svc);
    // x/c takes no connections: its ingress is isolated (the default deny counts what x/a sends it)
    const deny: NetworkPolicy = {
      apiVersion: 'networking.k8s.io/v1',
      kind: 'NetworkPolicy',
      metadata: { name: 'c-closed', namespace: 'x' },
      spec: { podSelector: { matchLabels: { pod: 'c' } }, policyTypes: ['Ingress'] },
    };
    await m.apply(deny);
    m.startAgent();
    await until('three endpoints sampled', metrics, (s) => s.endpoints.length === 3);

    // chromium inside the host netns, a fresh profile, never a download
    const wrapper = path.join(m.tb.dir, 'chromium.sh');
    writeFileSync(wrapper, `#!/bin/sh\nexec nsenter --net=${m.tb.host.path} -- ${CHROMIUM} "$@"\n`);
    chmodSync(wrapper, 0o755);
    const profile = path.join(m.tb.dir, 'chromium-profile');
    mkdirSync(profile, { recursive: true });
    ctx = await chromium.launchPersistentContext(profile, {
      executablePath: wrapper,
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: { width: 1400, height: 1000 },
    });
    cleanup.add(() => ctx.close());
    page = ctx.pages()[0] ?? (await ctx.newPage());
    page.on('request', (r) => requests.push(r.url()));
    page.on('pageerror', (e) => pageErrors.push(e.message));
  }, 240_000);

  afterAll(async () => {
    for (const p of traffic) if (p.exitCode === null) p.kill('SIGKILL');
    await cleanup.run();
  }, 60_000);

  it('the page shows every endpoint with charts, the services and their backends, and no alert yet', async () => {
    await page.goto(`http://127.0.0.1:${PORT}/`);
    await page.waitForSelector('section.ep[data-key^="x/a/"] .traffic canvas');
    await page.waitForSelector('section.ep[data-key^="x/b/"] .traffic canvas');
    await page.waitForSelector('#services tr[data-service="x/web"]');
    const svcRow = await page.textContent('#services tr[data-service="x/web"]');
    expect(svcRow).toContain(':80/tcp');
    expect(svcRow).toContain(m.pods.get('x/b')!.ip);
    // alerts are evaluated by this agent: the panel lists them (none of ours yet)
    await page.waitForFunction(
      () => (window as unknown as { cniDashboard: { alertsAvailable?: boolean } }).cniDashboard.alertsAvailable === true,
    );
    expect(await page.locator(`#alerts tr[data-alert="${RULE}"]`).count()).toBe(0);
  }, 60_000);

  it('traffic fills the charts and a new alert appears without a reload', async () => {
    const navigations: string[] = [];
    page.on('framenavigated', (f) => navigations.push(f.url()));
    const b = m.pods.get('x/b')!.ip;
    inPod('x/a', ['ping', '-q', '-i', '0.05', '-s', '1400', b]);
    // and one way: x/c sends 400 kbit/s of UDP to an iperf3 server in x/b (bounded: 5 minutes)
    inPod('x/b', ['iperf3', '-s', '-p', String(PORT + 1)]);
    // the client fails at once if the server is not listening yet (no x/c traffic at all then)
    await listening(m.pods.get('x/b')!.netns, PORT + 1);
    inPod('x/c', ['iperf3', '-c', b, '-p', String(PORT + 1), '-u', '-b', '400K', '-l', '1200', '-t', '300']);
    // and x/a knocks on x/c, which its policy drops
    inPod('x/a', ['ping', '-q', '-i', '0.2', m.pods.get('x/c')!.ip]);
    // the rule's alert, from the page's own polling
    await page.waitForSelector(`#alerts tr[data-alert="${RULE}"][data-state="firing"]`, { timeout: 45_000 });
    // the x/b chart holds points with the traffic (history polled incrementally, no reload)
    const key = (await page.getAttribute('section.ep[data-key^="x/b/"]', 'data-key'))!;
    await page.waitForFunction(
      (k) => {
        const c = (
          window as unknown as { cniDashboard: { charts: Map<string, { traffic: { data: number[][] } | null }> } }
        ).cniDashboard.charts.get(k);
        return !!c?.traffic && c.traffic.data[0]!.length >= 3 && c.traffic.data[1]!.some((v) => v > 5000);
      },
      key,
      { timeout: 30_000 },
    );
    expect(navigations).toEqual([]);
    // the canvas is drawn: pixels in the rx series' colour (#2f6fd6) on the x/b traffic chart
    const drawn = await page.evaluate((k) => {
      const canvas = document.querySelector(`section.ep[data-key="${k}"] .traffic canvas`) as HTMLCanvasElement;
      const d = canvas.getContext('2d')!.getImageData(0, 0, canvas.width, canvas.height).data;
      let rx = 0;
      let any = 0;
      for (let i = 0; i < d.length; i += 4) {
        if (d[i + 3]! > 0) any++;
        if (Math.abs(d[i]! - 47) < 40 && Math.abs(d[i + 1]! - 111) < 40 && Math.abs(d[i + 2]! - 214) < 40 && d[i + 3]! > 128) rx++;
      }
      return { rx, any, w: canvas.width, h: canvas.height };
    }, key);
    expect(drawn.any).toBeGreaterThan(1000);
    expect(drawn.rx).toBeGreaterThan(20);
    // the card's figures and the alert's row
    const figs = await page.textContent(`section.ep[data-key="${key}"] .figs`);
    expect(figs).toMatch(/rx\s*[0-9.]+ KB\/s/);
    const row = await page.textContent(`#alerts tr[data-alert="${RULE}"]`);
    expect(row).toContain('x/');
    // the policy drops panel: x/c's default deny counts the pings
    await page.waitForFunction(
      () => {
        const r = document.querySelector('#drops tr[data-counter] td.num');
        return !!r && Number(r.textContent) > 0;
      },
      undefined,
      { timeout: 30_000 },
    );
    expect(await page.textContent('#drops tbody tr:first-child')).toContain('default deny');
    // offline: every request went to the agent
    expect(requests.length).toBeGreaterThan(5);
    expect(requests.filter((u) => !u.startsWith(`http://127.0.0.1:${PORT}/`))).toEqual([]);
    expect(pageErrors).toEqual([]);
  }, 120_000);

  it('keeps a screenshot (test-artifacts/dashboard.png) once the charts hold 40 samples', async () => {
    await page.waitForFunction(
      () =>
        [
          ...(
            window as unknown as { cniDashboard: { charts: Map<string, { traffic: { data: number[][] } | null }> } }
          ).cniDashboard.charts.values(),
        ].every((c) => c.traffic && c.traffic.data[0]!.length >= 40),
      undefined,
      {
        timeout: 60_000,
      },
    );
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard.png'), fullPage: true });
    expect(pageErrors).toEqual([]);
  }, 90_000);

  it('copes with an agent without alerts (GET /api/v1/alerts answers 404: route stub)', async () => {
    const p2 = await ctx.newPage();
    await p2.route('**/api/v1/alerts', (r) => r.fulfill({ status: 404, contentType: 'application/json', body: '{"error":"no route"}' }));
    await p2.goto(`http://127.0.0.1:${PORT}/`);
    await p2.waitForSelector('#alerts:has-text("not evaluated by this agent")');
    await p2.waitForSelector('section.ep[data-key^="x/c/"] .traffic canvas');
    await p2.close();
  }, 60_000);

  it('cnictl top: the same live figures as a table, -n, -o json, --watch', async () => {
    const t = await m.cnictl(['top']);
    expect(t.exitCode).toBe(0);
    mkdirSync(ARTIFACTS, { recursive: true });
    writeFileSync(path.join(ARTIFACTS, 'cnictl-top.txt'), t.stdout);
    const lines = t.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(new RegExp(`^node ${m.node}, sample at .* \\(every 1s\\): 3 endpoints`));
    expect(lines[1]).toMatch(
      /^NAMESPACE\s+POD\s+NETWORK\s+IF\s+RX\/S\s+TX\/S\s+RX-PPS\s+TX-PPS\s+ERRORS\s+DROPS\s+ERR%\s+CONNS\s+UTIL\s+LATENCY$/,
    );
    const rows = lines.slice(2).map((l) => l.split(/\s+/));
    expect(rows.map((r) => `${r[0]}/${r[1]}`).sort()).toEqual(['x/a', 'x/b', 'x/c']);
    // busiest first: x/b receives the ping and the UDP stream; x/c only sends
    expect(rows[0]!.slice(0, 2)).toEqual(['x', 'b']);
    const row = (pod: string): string[] => rows.find((r) => r[1] === pod)!;
    for (const p of ['a', 'b']) expect(row(p)[4]).toMatch(/KB$/);
    expect(row('c')[5]).toMatch(/KB$/);
    const json = await m.cnictl(['top', '-n', 'x', '-o', 'json']);
    expect(json.exitCode).toBe(0);
    const snap = JSON.parse(json.stdout) as MetricsSnapshot;
    expect(snap.endpoints.map((e) => e.pod).sort()).toEqual(['a', 'b', 'c']);
    const rate = (pod: string): EndpointFigures['rates'] => snap.endpoints.find((e) => e.pod === pod)!.rates;
    expect(rate('a').rxBytes).toBeGreaterThan(5000);
    expect(rate('b').rxBytes).toBeGreaterThan(rate('a').rxBytes);
    expect(rate('c').txBytes).toBeGreaterThan(20_000);
    expect(rate('c').rxBytes).toBeLessThan(rate('c').txBytes / 5);
    const none = await m.cnictl(['top', '-n', 'nope']);
    expect(none.stdout).toContain('no endpoints in namespace nope');
    // --watch -o json: one line per new sample until interrupted
    const w = spawn(
      'nsenter',
      [
        `--net=${m.tb.host.path}`,
        '--',
        path.join(ROOT, 'dist', 'bin', 'cnictl'),
        '--config',
        m.agentConfig,
        'top',
        '--watch',
        '-o',
        'json',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    w.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((r) => w.once('exit', (c) => r(c)));
    try {
      await until(
        'three samples from --watch',
        async () => out.split('\n').filter(Boolean).length,
        (n) => n >= 3,
        20_000,
      );
    } finally {
      w.kill('SIGINT');
    }
    expect(await exited).toBe(0);
    const ats = out
      .split('\n')
      .filter(Boolean)
      .map((l) => (JSON.parse(l) as MetricsSnapshot).at);
    expect(new Set(ats).size).toBe(ats.length); // each a new sample
    const bad = await m.cnictl(['top', '-o', 'yaml']);
    expect(bad.exitCode).toBe(2);
  }, 90_000);

  it('the history API: 1 s samples of every endpoint, ?since returns only newer ones', async () => {
    const get = async (
      q: string,
    ): Promise<{ t: number[]; endpoints: Array<{ key: string; series: Record<string, Array<number | null>> }> }> => {
      // from the page: the browser is the one client inside the test's host netns
      return (await page.evaluate(async (u) => (await fetch(u)).json(), `/api/v1/history${q}`)) as never;
    };
    const all = await get('');
    expect(all.t.length).toBeGreaterThan(5);
    expect(all.endpoints.map((e) => e.key.split('/').slice(0, 2).join('/')).sort()).toEqual(['x/a', 'x/b', 'x/c']);
    for (const e of all.endpoints) expect(e.series.rxBytes).toHaveLength(all.t.length);
    const newer = await get(`?since=${all.t.at(-2)}`);
    expect(newer.t[0]).toBeGreaterThan(all.t.at(-2)!);
  }, 30_000);
});
