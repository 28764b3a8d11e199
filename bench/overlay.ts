/**
 * Overlay benchmark (figures printed, not asserted): two "hosts" (network namespaces on an
 * underlay bridge in a fabric namespace running etcd), pods attached by the built overlay
 * plugin run inside the host namespaces. Measures ADD latency (first ADD on a host: lease +
 * VTEP; later ADDs) and iperf3 TCP throughput pod-to-pod across hosts (VXLAN) against two pods
 * on one host (bridge only). Everything carries a unique prefix and is removed in `finally`.
 *
 *   node --experimental-strip-types bench/overlay.ts        (knobs: BENCH_ITER, BENCH_IPERF_SECONDS)
 */
import { execa, type ResultPromise } from 'execa';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { netnsBatch, nsPath, sh, sleep, uid } from './lib.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const BIN = path.join(ROOT, 'dist', 'bin');
const ITER = Number(process.env.BENCH_ITER ?? 20);
const IPERF_SECONDS = Number(process.env.BENCH_IPERF_SECONDS ?? 3);
const BASE = '192.168.232';

const tag = uid('ovb');
const fab = `${tag}-fab`;
const hosts = [`${tag}-h1`, `${tag}-h2`];
const podNames: string[] = [];
const dir = mkdtempSync(path.join(tmpdir(), 'cnits-ovlbench-'));
let etcd: ResultPromise | undefined;

const conf = (h: number): Record<string, unknown> => ({
  cniVersion: '1.1.0',
  name: 'ovlbench',
  type: 'overlay',
  network: '10.232.0.0/16',
  stateDir: path.join(dir, `h${h}`),
  nftTable: 'cnits_ovlbench',
  store: { type: 'etcd', endpoints: [`http://${BASE}.254:2379`], prefix: `/cnits-bench/${tag}` },
});

async function cni(h: number, command: string, pod: string, id: string): Promise<{ ms: number; ip: string }> {
  const t0 = performance.now();
  const r = await execa('nsenter', [`--net=${nsPath(hosts[h - 1])}`, '--', path.join(BIN, 'overlay')], {
    input: JSON.stringify(conf(h)),
    env: {
      PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
      CNI_COMMAND: command,
      CNI_CONTAINERID: id,
      CNI_NETNS: nsPath(pod),
      CNI_IFNAME: 'eth0',
      CNI_PATH: BIN,
      ...(process.env.CNI_TS_TRACE ? { CNI_TS_TRACE: process.env.CNI_TS_TRACE } : {}),
    },
    extendEnv: false,
    reject: false,
  });
  const ms = performance.now() - t0;
  if (r.exitCode !== 0) throw new Error(`${command} failed: ${String(r.stdout)} ${String(r.stderr).slice(-500)}`);
  const ip =
    command === 'ADD' ? String((JSON.parse(String(r.stdout)) as { ips: Array<{ address: string }> }).ips[0].address).split('/')[0] : '';
  return { ms, ip };
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function iperf(from: string, to: string, toIp: string): Promise<number> {
  const server = execa('nsenter', [`--net=${nsPath(to)}`, '--', 'iperf3', '-s', '-1'], { reject: false });
  await sleep(300);
  const r = await sh('nsenter', [`--net=${nsPath(from)}`, '--', 'iperf3', '-c', toIp, '-t', String(IPERF_SECONDS), '-J']);
  await server;
  const j = JSON.parse(r.stdout) as { end: { sum_received: { bits_per_second: number } } };
  return j.end.sum_received.bits_per_second / 1e9;
}

async function main(): Promise<void> {
  await netnsBatch('add', [fab, ...hosts]);
  const inFab = (args: string[]): Promise<unknown> => sh('ip', ['-n', fab, ...args]);
  await inFab(['link', 'add', 'ubr0', 'type', 'bridge']);
  await inFab(['addr', 'add', `${BASE}.254/24`, 'dev', 'ubr0']);
  await inFab(['link', 'set', 'ubr0', 'up']);
  await inFab(['link', 'set', 'lo', 'up']);
  for (const [i, h] of hosts.entries()) {
    await inFab(['link', 'add', `u${i}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', nsPath(h)]);
    await inFab(['link', 'set', `u${i}`, 'master', 'ubr0', 'up']);
    await sh('ip', ['-n', h, '-batch', '-'], {
      input: `addr add ${BASE}.${i + 1}/24 dev eth0\nlink set eth0 up\nlink set lo up\nroute add default via ${BASE}.254\n`,
    });
  }
  const e = execa(
    'nsenter',
    [
      `--net=${nsPath(fab)}`,
      '--',
      '/usr/bin/etcd',
      '--data-dir',
      path.join(dir, 'etcd'),
      '--listen-client-urls',
      `http://${BASE}.254:2379`,
      '--advertise-client-urls',
      `http://${BASE}.254:2379`,
      '--listen-peer-urls',
      'http://127.0.0.1:2380',
      '--initial-advertise-peer-urls',
      'http://127.0.0.1:2380',
      '--initial-cluster',
      'default=http://127.0.0.1:2380',
      '--logger',
      'zap',
    ],
    { reject: false, stdin: 'ignore', all: true, buffer: false },
  );
  etcd = e;
  await new Promise<void>((resolve, reject) => {
    let out = '';
    const t = setTimeout(() => reject(new Error(`etcd did not come up: ${out.slice(-1000)}`)), 60_000);
    e.all?.on('data', (d: Buffer) => {
      out = (out + d.toString()).slice(-20_000);
      if (/ready to serve client requests|serving client traffic|serving insecure client requests/.test(out)) {
        clearTimeout(t);
        resolve();
      }
    });
    void e.then(() => reject(new Error(`etcd exited: ${out.slice(-1000)}`)));
  });
  const lat: Record<string, number[]> = { first: [], later: [], del: [] };
  const pods: Array<{ ns: string; ip: string; h: number; id: string }> = [];
  for (let k = 0; k < ITER; k++) {
    for (const h of [1, 2]) {
      const ns = `${tag}-p${h}-${k}`;
      await netnsBatch('add', [ns]);
      podNames.push(ns);
      const id = `${tag}c${h}x${k}`;
      const r = await cni(h, 'ADD', ns, id);
      (k === 0 ? lat.first : lat.later).push(r.ms);
      pods.push({ ns, ip: r.ip, h, id });
    }
  }
  const a = pods.find((p) => p.h === 1)!;
  const b = pods.find((p) => p.h === 2)!;
  const c = pods.filter((p) => p.h === 1)[1] ?? a;
  const cross = await iperf(a.ns, b.ns, b.ip);
  const local = await iperf(a.ns, c.ns, c.ip);
  for (const p of pods.slice(2)) lat.del.push((await cni(p.h, 'DEL', p.ns, p.id)).ms);
  const f = (x: number): string => x.toFixed(1);
  process.stdout.write(
    [
      '',
      '## overlay (VXLAN across host namespaces, etcd store)',
      '',
      '| figure | value |',
      '| --- | --- |',
      `| first ADD on a host (lease + VTEP + bridge + pod), ms | ${lat.first.map(f).join(', ')} |`,
      `| later ADD, median of ${lat.later.length}, ms | ${f(median(lat.later))} |`,
      `| DEL, median of ${lat.del.length}, ms | ${f(median(lat.del))} |`,
      `| iperf3 TCP pod-to-pod across hosts (VXLAN, MTU 1450), Gbit/s | ${cross.toFixed(2)} |`,
      `| iperf3 TCP pod-to-pod on one host (bridge), Gbit/s | ${local.toFixed(2)} |`,
      '',
    ].join('\n'),
  );
}

try {
  await main();
} finally {
  etcd?.kill('SIGTERM');
  await etcd?.catch(() => undefined);
  await netnsBatch('del', [...podNames, ...hosts, fab]);
  rmSync(dir, { recursive: true, force: true });
}
