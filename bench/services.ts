/**
 * Services benchmark (figures printed, not asserted), in throwaway network namespaces (prefix
 * hvb), removed in `finally`:
 *   1. scale: compile + render of BENCH_SVC_SERVICES services (default 1000) × BENCH_SVC_BACKENDS
 *      backends (default 10), the whole table applied (`nft -f`), then one backend of one service
 *      changed (removed / added back) BENCH_ITER times: the update's statements, bytes and time;
 *   2. data path: a client netns, a "node" netns holding the services table and forwarding, a
 *      server netns; BENCH_SVC_CONNS sequential TCP connections (connect → first line → close)
 *      to the server directly and through a VIP (DNAT by the table): connections/s and latency.
 *
 *   node --experimental-strip-types bench/services.ts
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { Endpoint, Service } from '../shared/objects/types.ts';
import { compileServices, renderFragments, renderServicesNft, renderServicesUpdate } from '../shared/services/compile.ts';
import { mdTable, ms, netnsBatch, nsPath, sh, stats, uid } from './lib.ts';

const N_SVC = Number(process.env.BENCH_SVC_SERVICES ?? 1000);
const N_BE = Number(process.env.BENCH_SVC_BACKENDS ?? 10);
const ITER = Number(process.env.BENCH_ITER ?? 10);
const CONNS = Number(process.env.BENCH_SVC_CONNS ?? 1000);
const TABLE = 'hvb_services';
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const NODE = process.execPath;

function cluster(nSvc: number, nBe: number, drop?: number): { services: Service[]; endpoints: Endpoint[] } {
  const services: Service[] = [];
  const endpoints: Endpoint[] = [];
  for (let s = 0; s < nSvc; s++) {
    services.push({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: `svc-${s}`, namespace: 'bench' },
      spec: {
        clusterIP: `10.96.${s >> 8}.${(s & 255) + 0}`,
        selector: { app: `a${s}` },
        ports: [{ name: 'http', port: 80, targetPort: 8080 }],
      },
    });
    for (let b = 0; b < nBe; b++) {
      if (s === 0 && b === drop) continue;
      const i = s * nBe + b;
      endpoints.push({
        apiVersion: 'cni-ts.dev/v1',
        kind: 'Endpoint',
        metadata: { name: `ep-${i}`, namespace: 'bench', labels: { app: `a${s}` } },
        spec: {
          node: 'n',
          network: 'n',
          containerId: `c${i}`,
          ifname: 'eth0',
          ips: [`10.${100 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}/8`],
        },
      });
    }
  }
  return { services, endpoints };
}

async function nft(netns: string, script: string): Promise<number> {
  const t = performance.now();
  await sh('nft', ['-f', '-'], { input: script, netns: nsPath(netns) });
  return performance.now() - t;
}

async function scale(): Promise<string> {
  const ns = uid('hvb-');
  await netnsBatch('add', [ns]);
  try {
    const opts = { serviceCIDR: ['10.96.0.0/12'] };
    const objs = (drop?: number) => ({ ...cluster(N_SVC, N_BE, drop), endpointSlices: [], health: [] });
    let t = performance.now();
    const table = compileServices(objs(), 'n', opts);
    const compileMs = performance.now() - t;
    t = performance.now();
    const full = renderFragments(table, TABLE);
    const script = renderServicesNft(full, TABLE);
    const renderMs = performance.now() - t;
    const applyMs = await nft(ns, script);
    const without = renderFragments(compileServices(objs(3), 'n', opts), TABLE);
    const down = renderServicesUpdate(full, without);
    const up = renderServicesUpdate(without, full);
    const changeCompile: number[] = [];
    const changeApply: number[] = [];
    for (let i = 0; i < ITER; i++) {
      const t0 = performance.now();
      const next = renderFragments(compileServices(objs(i % 2 === 0 ? 3 : undefined), 'n', opts), TABLE);
      renderServicesUpdate(i % 2 === 0 ? full : without, next);
      changeCompile.push(performance.now() - t0);
      changeApply.push(await nft(ns, i % 2 === 0 ? down : up));
    }
    const a = stats(changeApply);
    const c = stats(changeCompile);
    return [
      `### Services: ${N_SVC} services × ${N_BE} backends (one nft table)\n`,
      mdTable(
        ['step', 'statements', 'bytes', 'median ms', 'p95 ms'],
        [
          ['compile (pure)', '–', '–', ms(compileMs), '–'],
          ['render whole table', script.split('\n').length - 1, script.length, ms(renderMs), '–'],
          ['apply whole table (`nft -f`)', script.split('\n').length - 1, script.length, ms(applyMs), '–'],
          [`one backend leaves / returns: compile + diff (${ITER}×)`, '–', '–', ms(c.median), ms(c.p95)],
          [`one backend leaves: apply (${Math.ceil(ITER / 2)}×)`, down.split('\n').length - 1, down.length, ms(a.median), ms(a.p95)],
          [`one backend returns: apply`, up.split('\n').length - 1, up.length, '', ''],
        ],
      ),
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
  const [c, r, s] = [uid('hvb-c'), uid('hvb-r'), uid('hvb-s')];
  await netnsBatch('add', [c, r, s]);
  const pods: Pod[] = [];
  try {
    const ipn = (ns: string, args: string[]): Promise<unknown> => sh('ip', args, { netns: nsPath(ns) });
    const va = uid('hvbv');
    const vb = uid('hvbw');
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

console.log(await scale());
console.log(await datapath());
process.exit(0);
