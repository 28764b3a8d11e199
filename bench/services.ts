/**
 * Services benchmark (figures printed, not asserted), in throwaway network namespaces (prefix
 * BENCH_SVC_PREFIX, default hvb), removed in `finally`:
 *   1. scale: BENCH_SVC_SERVICES services (default 1000) × BENCH_SVC_BACKENDS backends (default
 *      10), the whole table applied, then BENCH_SVC_CHANGES (default 20) rounds of one backend
 *      change of one service — removed, added back, turned unhealthy, healthy again — each as
 *      the services reconciler does it: compile the store (pure), render the difference from
 *      the table last applied, one nft transaction. Per kind of change: the transaction's
 *      statements and bytes, the time from the reconciler's decision (the difference rendered)
 *      to the transaction committed, and that time's CPU (user + system of this process: with
 *      libnftables the nft work runs in-process), median and p95. Under Bun the transactions go
 *      through libnftables, as the agent's do; under Node this section re-runs itself under the
 *      project's Bun when there is one (else it uses the nft process and says so).
 *   2. data path: a client netns, a "node" netns holding the services table and forwarding, a
 *      server netns; BENCH_SVC_CONNS sequential TCP connections (connect → first line → close)
 *      to the server directly and through a VIP (DNAT by the table): connections/s and latency.
 *
 * BENCH_SVC_ONLY=scale|datapath runs one section. BENCH_SVC_COMPILE=<path of a compile.ts>
 * measures another version of the compiler (a before/after on the same machine and load).
 *
 *   node --experimental-strip-types bench/services.ts
 *   BENCH_SVC_ONLY=scale node_modules/@oven/bun-linux-x64-baseline/bin/bun bench/services.ts
 */
import { execa } from 'execa';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { BackendHealth, Endpoint, Service } from '../shared/objects/types.ts';
import * as compiler from '../shared/services/compile.ts';
import { mdTable, ms, netnsBatch, nsPath, sh, stats, uid } from './lib.ts';

const N_SVC = Number(process.env.BENCH_SVC_SERVICES ?? 1000);
const N_BE = Number(process.env.BENCH_SVC_BACKENDS ?? 10);
const CHANGES = Math.max(1, Number(process.env.BENCH_SVC_CHANGES ?? 20));
const CONNS = Number(process.env.BENCH_SVC_CONNS ?? 1000);
const ONLY = process.env.BENCH_SVC_ONLY ?? '';
const PREFIX = process.env.BENCH_SVC_PREFIX ?? 'hvb';
const TABLE = `${PREFIX}_services`;
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const NODE = process.execPath;
const BUN = path.join(ROOT, 'node_modules', '@oven', 'bun-linux-x64-baseline', 'bin', 'bun');
const underBun = typeof (globalThis as { Bun?: unknown }).Bun !== 'undefined';
// the agent's nft path (libnftables through bun:ffi); Node's strip-only mode cannot load it, and needs no libnftables
const nftApply = underBun ? (await import('../shared/kernel/nft.ts')).nftApply : undefined;
const C: typeof compiler = process.env.BENCH_SVC_COMPILE
  ? ((await import(pathToFileURL(path.resolve(process.env.BENCH_SVC_COMPILE)).href)) as typeof compiler)
  : compiler;
const { compileServices, renderFragments, renderServicesNft, renderServicesUpdate } = C;

const HEALTH = '{"type":"tcp","intervalSeconds":2}';
const beIP = (i: number): string => `10.${100 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`;

function cluster(nSvc: number, nBe: number): { services: Service[]; endpoints: Endpoint[] } {
  const services: Service[] = [];
  const endpoints: Endpoint[] = [];
  for (let s = 0; s < nSvc; s++) {
    services.push({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: `svc-${s}`, namespace: 'bench', annotations: { 'health.cni-ts.dev/check': HEALTH } },
      spec: {
        clusterIP: `10.96.${s >> 8}.${(s & 255) + 0}`,
        selector: { app: `a${s}` },
        ports: [{ name: 'http', port: 80, targetPort: 8080 }],
      },
    });
    for (let b = 0; b < nBe; b++) {
      const i = s * nBe + b;
      endpoints.push({
        apiVersion: 'cni-ts.dev/v1',
        kind: 'Endpoint',
        metadata: { name: `ep-${i}`, namespace: 'bench', labels: { app: `a${s}` } },
        spec: { node: 'n', network: 'n', containerId: `c${i}`, ifname: 'eth0', ips: [`${beIP(i)}/8`] },
      });
    }
  }
  return { services, endpoints };
}

const unhealthy = (s: number, b: number): BackendHealth => ({
  apiVersion: 'cni-ts.dev/v1',
  kind: 'BackendHealth',
  metadata: { name: compiler.healthName(`svc-${s}`, beIP(s * N_BE + b), 8080), namespace: 'bench' },
  spec: { service: `svc-${s}`, address: beIP(s * N_BE + b), port: 8080, node: 'n', healthy: false, checkedAt: new Date(0).toISOString() },
});

/** one nft transaction as the agent applies it: wall ms and this process's CPU ms (user + system) */
async function nft(netns: string, script: string): Promise<{ wall: number; cpu: number }> {
  const c = process.cpuUsage();
  const t = performance.now();
  if (nftApply) await nftApply(script, nsPath(netns));
  else await sh('nft', ['-f', '-'], { input: script, netns: nsPath(netns) });
  const u = process.cpuUsage(c);
  return { wall: performance.now() - t, cpu: (u.user + u.system) / 1000 };
}

async function scale(): Promise<string> {
  if (!underBun && existsSync(BUN) && !process.env.BENCH_SVC_NO_BUN) {
    // the agent runs under Bun (libnftables in-process): measure that path
    const r = await execa(BUN, [fileURLToPath(import.meta.url)], { env: { BENCH_SVC_ONLY: 'scale' }, reject: false });
    return r.exitCode === 0 ? String(r.stdout) : `(scale under Bun failed: ${String(r.stderr).trim()})`;
  }
  const ns = uid(`${PREFIX}-`);
  await netnsBatch('add', [ns]);
  try {
    const opts = { serviceCIDR: ['10.96.0.0/12'] };
    const base = cluster(N_SVC, N_BE);
    const objs = (drop?: [number, number], health: BackendHealth[] = []) => ({
      services: base.services,
      endpoints: drop ? base.endpoints.filter((e) => e.metadata.name !== `ep-${drop[0] * N_BE + drop[1]}`) : base.endpoints,
      endpointSlices: [],
      health,
    });
    let t = performance.now();
    const table = compileServices(objs(), 'n', opts);
    const compileMs = performance.now() - t;
    t = performance.now();
    let applied = renderFragments(table, TABLE);
    const script = renderServicesNft(applied, TABLE);
    const renderMs = performance.now() - t;
    const whole = await nft(ns, script);
    const kinds = ['one backend removed', 'one backend added back', 'one backend turns unhealthy', 'one backend healthy again'] as const;
    const rec = new Map<string, { wall: number[]; cpu: number[]; pure: number[]; diff: number[]; stmts: number[]; bytes: number[] }>(
      kinds.map((k) => [k, { wall: [], cpu: [], pure: [], diff: [], stmts: [], bytes: [] }]),
    );
    const sample = new Map<string, string>();
    for (let i = 0; i < CHANGES; i++) {
      const s = (i * 97) % N_SVC;
      const b = (i * 3) % N_BE;
      const states: Array<[(typeof kinds)[number], ReturnType<typeof objs>]> = [
        [kinds[0], objs([s, b])],
        [kinds[1], objs()],
        [kinds[2], objs(undefined, [unhealthy(s, b)])],
        [kinds[3], objs()],
      ];
      for (const [kind, o] of states) {
        // the pass: compile the store and render the difference from the table applied (pure),
        // then the decision is made: one transaction, committed
        const t0 = performance.now();
        const next = compileServices(o, 'n', opts);
        const t1 = performance.now();
        const frags = renderFragments(next, TABLE, undefined, applied);
        const diff = renderServicesUpdate(applied, frags);
        const t2 = performance.now();
        const r = diff ? await nft(ns, diff) : { wall: 0, cpu: 0 };
        const x = rec.get(kind)!;
        x.pure.push(t1 - t0);
        x.diff.push(t2 - t1);
        x.wall.push(r.wall);
        x.cpu.push(r.cpu);
        x.stmts.push(diff.split('\n').length - 1);
        x.bytes.push(diff.length);
        if (!sample.has(kind)) sample.set(kind, diff);
        applied = frags;
      }
    }
    const rows: Array<Array<string | number>> = [
      ['compile (pure, `compileServices`)', '–', '–', ms(compileMs), '–', '–', '–'],
      ['render the whole table', script.split('\n').length - 1, script.length, ms(renderMs), '–', '–', '–'],
      [
        'apply the whole table (agent start / drift)',
        script.split('\n').length - 1,
        script.length,
        ms(whole.wall),
        '–',
        ms(whole.cpu),
        '–',
      ],
    ];
    const all = { wall: [] as number[], cpu: [] as number[], pure: [] as number[], diff: [] as number[] };
    for (const [kind, x] of rec) {
      const [w, c, st, by] = [stats(x.wall), stats(x.cpu), stats(x.stmts), stats(x.bytes)];
      rows.push([
        `${kind} (${x.wall.length}×): decision → committed`,
        st.median,
        by.median,
        ms(w.median),
        ms(w.p95),
        ms(c.median),
        ms(c.p95),
      ]);
      all.wall.push(...x.wall);
      all.cpu.push(...x.cpu);
      all.pure.push(...x.pure);
      all.diff.push(...x.diff);
    }
    const [w, c, p, d] = [stats(all.wall), stats(all.cpu), stats(all.pure), stats(all.diff)];
    rows.push([
      `**every change (${all.wall.length}×): decision → committed**`,
      '',
      '',
      `**${ms(w.median)}**`,
      `**${ms(w.p95)}**`,
      ms(c.median),
      ms(c.p95),
    ]);
    rows.push([`every change, before it (pure): compile the store`, '', '', ms(p.median), ms(p.p95), '', '']);
    rows.push([`every change, before it (pure): render the table, the difference`, '', '', ms(d.median), ms(d.p95), '', '']);
    const load = (await sh('cat', ['/proc/loadavg'])).stdout.split(' ').slice(0, 3).join(' ');
    return [
      `### Services: ${N_SVC} services × ${N_BE} backends (one nft table; ${underBun ? 'libnftables in-process, as the agent' : 'the nft process'}; load average ${load})${process.env.BENCH_SVC_COMPILE ? ` — compiler ${process.env.BENCH_SVC_COMPILE}` : ''}\n`,
      mdTable(['step', 'statements', 'bytes', 'median ms', 'p95 ms', 'CPU median ms', 'CPU p95 ms'], rows),
      `\nOne backend removed (the transaction):\n\n\`\`\`\n${(sample.get(kinds[0]) ?? '').trim()}\n\`\`\`\n`,
    ].join('\n');
  } finally {
    await netnsBatch('del', [ns]);
  }
}

interface Pod {
  ask(req: Record<string, unknown>): Promise<Record<string, unknown>>;
  kill(): void;
}

async function pod(netns: string, cfg: Record<string, unknown>): Promise<Pod> {
  const proc = spawn(
    'nsenter',
    [
      `--net=${nsPath(netns)}`,
      '--',
      NODE,
      '--experimental-strip-types',
      '--no-warnings',
      path.join(ROOT, 'test', 'helpers', 'svc-pod.ts'),
      JSON.stringify(cfg),
    ],
    { stdio: ['pipe', 'pipe', 'inherit'] },
  );
  const waiting = new Map<number, (r: Record<string, unknown>) => void>();
  const rl = readline.createInterface({ input: proc.stdout });
  await new Promise<void>((resolve) =>
    rl.on('line', (line) => {
      const m = JSON.parse(line) as Record<string, unknown>;
      if (m.ready) resolve();
      else if (typeof m.id === 'number') waiting.get(m.id)?.(m);
    }),
  );
  let id = 1;
  return {
    ask: (req) =>
      new Promise((resolve) => {
        const i = id++;
        waiting.set(i, resolve);
        proc.stdin.write(`${JSON.stringify({ id: i, ...req })}\n`);
      }),
    kill: () => proc.kill('SIGKILL'),
  };
}

async function datapath(): Promise<string> {
  const [c, r, s] = [uid(`${PREFIX}-c`), uid(`${PREFIX}-r`), uid(`${PREFIX}-s`)];
  await netnsBatch('add', [c, r, s]);
  const pods: Pod[] = [];
  try {
    const ipn = (ns: string, args: string[]): Promise<unknown> => sh('ip', args, { netns: nsPath(ns) });
    const va = uid(`${PREFIX}v`);
    const vb = uid(`${PREFIX}w`);
    await ipn(r, ['link', 'add', `${va}a`, 'type', 'veth', 'peer', 'name', `${va}b`, 'netns', nsPath(c)]);
    await ipn(r, ['link', 'add', `${vb}a`, 'type', 'veth', 'peer', 'name', `${vb}b`, 'netns', nsPath(s)]);
    await ipn(r, ['addr', 'add', '10.201.1.1/24', 'dev', `${va}a`]);
    await ipn(r, ['addr', 'add', '10.201.2.1/24', 'dev', `${vb}a`]);
    await ipn(c, ['addr', 'add', '10.201.1.2/24', 'dev', `${va}b`]);
    await ipn(s, ['addr', 'add', '10.201.2.2/24', 'dev', `${vb}b`]);
    for (const [ns, dev] of [
      [r, `${va}a`],
      [r, `${vb}a`],
      [c, `${va}b`],
      [s, `${vb}b`],
      [c, 'lo'],
      [r, 'lo'],
      [s, 'lo'],
    ] as const)
      await ipn(ns, ['link', 'set', dev, 'up']);
    await ipn(c, ['route', 'add', 'default', 'via', '10.201.1.1']);
    await ipn(s, ['route', 'add', 'default', 'via', '10.201.2.1']);
    await sh('sysctl', ['-q', '-w', 'net.ipv4.ip_forward=1'], { netns: nsPath(r) });
    const svc: Service = {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'web', namespace: 'bench' },
      spec: { clusterIP: '10.96.0.1', selector: { app: 'web' }, ports: [{ port: 80, targetPort: 8080 }] },
    };
    const ep: Endpoint = {
      apiVersion: 'cni-ts.dev/v1',
      kind: 'Endpoint',
      metadata: { name: 's', namespace: 'bench', labels: { app: 'web' } },
      spec: { node: 'n', network: 'n', containerId: 's', ifname: 'eth0', ips: ['10.201.2.2/24'] },
    };
    await nft(
      r,
      renderServicesNft(
        compileServices({ services: [svc], endpoints: [ep], endpointSlices: [], health: [] }, 'n', { serviceCIDR: ['10.96.0.0/16'] }),
        TABLE,
      ),
    );
    pods.push(await pod(s, { name: 'server', tcp: [8080] }));
    const client = await pod(c, { name: 'client' });
    pods.push(client);
    await client.ask({ op: 'bench', ip: '10.201.2.2', port: 8080, n: 50, expect: 'server' }); // warm up
    const rows: Array<Array<string | number>> = [];
    const res: Record<string, number> = {};
    for (const [what, ip, port] of [
      ['direct', '10.201.2.2', 8080],
      ['through the VIP', '10.96.0.1', 80],
      ['direct (again)', '10.201.2.2', 8080],
      ['through the VIP (again)', '10.96.0.1', 80],
    ] as const) {
      const t = performance.now();
      const out = (await client.ask({ op: 'bench', ip, port, n: CONNS, expect: 'server' })) as { ms: number[]; failed: number };
      const secs = (performance.now() - t) / 1000;
      const st = stats(out.ms);
      res[what] = out.ms.length / secs;
      rows.push([what, out.ms.length, out.failed, Math.round(out.ms.length / secs), ms(st.median), ms(st.p95)]);
    }
    const ratio = (res['through the VIP']! + res['through the VIP (again)']!) / (res.direct! + res['direct (again)']!);
    return [
      `### Services data path: ${CONNS} sequential TCP connections, client → node (forwarding, services table) → server\n`,
      mdTable(['path', 'ok', 'failed', 'connections/s', 'median ms', 'p95 ms'], rows),
      `\nVIP / direct connections/s: ${ratio.toFixed(2)}×\n`,
    ].join('\n');
  } finally {
    for (const p of pods) p.kill();
    await netnsBatch('del', [c, r, s]);
  }
}

if (ONLY !== 'datapath') console.log(await scale());
if (ONLY !== 'scale') console.log(await datapath());
process.exit(0);
