/**
 * The metrics sampler's cost (figures printed, not asserted), in a throwaway netns (prefix mxb):
 * BENCH_METRICS_ENDPOINTS (default 500) real veth pairs in that netns, each host side registered
 * as an Endpoint object of this node in a private file store (the peer side stays in the same
 * netns and carries the endpoint's address, so the ICMP probes are real but local), one in ten
 * with a TBF root qdisc (what the bandwidth plugin installs). The built `cni-ts agent` runs
 * there three times, BENCH_METRICS_SECONDS (default 60) each: with `metrics.enabled` false (the
 * baseline: policy, services) and with metrics every 5 s. Measured:
 *   - agent CPU (utime + stime of the agent and of the tools it spawned and waited for, from
 *     /proc/PID/stat) over the run, as % of one core: metrics off, metrics with latency probes
 *     off, metrics with the default ICMP probe budget;
 *   - agent RSS (VmRSS, VmHWM) at the end of each run;
 *   - the sampler's own last sample duration (cni_ts_metrics_sample_duration_seconds);
 *   - `GET /metrics` time at 500 endpoints (curl inside the netns, BENCH_ITER scrapes per run),
 *     wall and the agent's CPU per scrape (wall suffers from the machine's load; CPU less).
 *
 *   node --experimental-strip-types --no-warnings bench/metrics.ts   (as root)
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { openStore } from '../shared/store/index.ts';
import type { Endpoint } from '../shared/objects/types.ts';
import { mdTable, ms, netnsBatch, nsPath, sh, sleep, stats, uid } from './lib.ts';

const N = Number(process.env.BENCH_METRICS_ENDPOINTS ?? 500);
const SECONDS = Number(process.env.BENCH_METRICS_SECONDS ?? 60);
const ITER = Number(process.env.BENCH_ITER ?? 30);
const ROOT = path.resolve(import.meta.dirname, '..');
const BIN = path.join(ROOT, 'dist', 'bin');
const id = uid('mxb');
const ns = `${id}-h`;
const dir = `/run/cnits-${id}`;
const PORT = 19440;
const TICKS = 100; // USER_HZ

const addr = (i: number): string => `10.${200 + Math.floor(i / 62500)}.${Math.floor(i / 250) % 250}.${(i % 250) + 1}`;

function endpoint(i: number): Endpoint {
  return {
    apiVersion: 'cni-ts.dev/v1',
    kind: 'Endpoint',
    metadata: { namespace: `ns${i % 10}`, name: `pod${i}`, labels: { app: `a${i % 20}` } },
    spec: { node: 'n1', network: 'benchnet', containerId: `${id}-${i}`, ifname: 'eth0', ips: [`${addr(i)}/32`], hostInterface: `mxh${i}` },
  };
}

function cpuTicks(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
  // fields 14..17 (utime stime cutime cstime) are rest[11..14]
  return Number(rest[11]) + Number(rest[12]) + Number(rest[13]) + Number(rest[14]);
}

function memKiB(pid: number): { rss: number; hwm: number } {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const v = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(s)?.[1] ?? 0);
  return { rss: v('VmRSS'), hwm: v('VmHWM') };
}

async function scrape(): Promise<{ seconds: number; bytes: number; text: string }> {
  const r = await sh('nsenter', [
    `--net=${nsPath(ns)}`,
    '--',
    'curl',
    '-sS',
    '-o',
    `${dir}/scrape.txt`,
    '-w',
    '%{time_total} %{size_download}',
    `http://127.0.0.1:${PORT}/metrics`,
  ]);
  const [t, b] = r.stdout.trim().split(' ');
  return { seconds: Number(t), bytes: Number(b), text: readFileSync(`${dir}/scrape.txt`, 'utf8') };
}

async function runAgent(
  name: string,
  metrics: Record<string, unknown>,
): Promise<{
  cpu: number;
  rss: number;
  hwm: number;
  sample?: number;
  scrapes?: number[];
  scrapeCpuMs?: number;
  size?: number;
  endpoints?: number;
}> {
  const config = path.join(dir, `${name}.json`);
  writeFileSync(
    config,
    JSON.stringify({
      store: { type: 'file', path: path.join(dir, 'store') },
      node: 'n1',
      listen: `127.0.0.1:${PORT}`,
      socket: path.join(dir, `${name}.sock`),
      dns: { enabled: false },
      policy: { table: `${id}_policy`, lockFile: path.join(dir, 'policy.lock') },
      services: { table: `${id}_services`, healthChecks: false },
      metrics,
    }),
  );
  const agent: ChildProcess = spawn('nsenter', [`--net=${nsPath(ns)}`, '--', path.join(BIN, 'cni-ts'), 'agent', '--config', config], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', CNI_LOG_LEVEL: 'warn' },
  });
  let err = '';
  agent.stderr!.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
  const exited = new Promise<void>((r) => agent.once('exit', () => r()));
  try {
    await sleep(8000); // start-up: the first policy pass over N endpoints, the first samples
    const pid = agent.pid!;
    const t0 = cpuTicks(pid);
    const w0 = performance.now();
    await sleep(SECONDS * 1000);
    const cpu = (cpuTicks(pid) - t0) / TICKS / ((performance.now() - w0) / 1000);
    const mem = memKiB(pid);
    const out: Awaited<ReturnType<typeof runAgent>> = { cpu, rss: mem.rss, hwm: mem.hwm };
    if (metrics.enabled !== false) {
      const scrapes: number[] = [];
      let last = { seconds: 0, bytes: 0, text: '' };
      let ticks = 0;
      for (let i = 0; i < ITER; i++) {
        const c0 = cpuTicks(pid);
        last = await scrape();
        ticks += cpuTicks(pid) - c0;
        scrapes.push(last.seconds * 1000);
      }
      // the agent's CPU while each scrape ran (a sample or probe overlapping one counts too: an upper bound)
      out.scrapeCpuMs = (ticks / TICKS / ITER) * 1000;
      out.scrapes = scrapes;
      out.size = last.bytes;
      out.sample = Number(/^cni_ts_metrics_sample_duration_seconds (\S+)/m.exec(last.text)?.[1] ?? NaN);
      out.endpoints = Number(/^cni_ts_metrics_endpoints (\S+)/m.exec(last.text)?.[1] ?? NaN);
    }
    if (agent.exitCode !== null) throw new Error(`agent exited: ${err}`);
    return out;
  } finally {
    agent.kill('SIGTERM');
    const t = setTimeout(() => agent.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(t);
  }
}

async function main(): Promise<void> {
  mkdirSync(path.join(dir, 'store'), { recursive: true });
  await netnsBatch('add', [ns]);
  try {
    const cmds = ['link set lo up'];
    for (let i = 0; i < N; i++) {
      cmds.push(
        `link add mxh${i} type veth peer name mxp${i}`,
        `link set mxh${i} up`,
        `link set mxp${i} up`,
        `addr add ${addr(i)}/32 dev mxp${i}`,
      );
    }
    await sh('ip', ['-n', ns, '-batch', '-'], { input: `${cmds.join('\n')}\n` });
    const tc: string[] = [];
    for (let i = 0; i < N; i += 10) tc.push(`qdisc add dev mxh${i} root tbf rate 100mbit burst 100000 latency 25ms`);
    await sh('tc', ['-n', ns, '-batch', '-'], { input: `${tc.join('\n')}\n` });
    const store = await openStore({ type: 'file', path: path.join(dir, 'store') });
    for (let i = 0; i < N; i++) await store.put(endpoint(i));
    await store.close();

    const base = await runAgent('base', { enabled: false });
    const quiet = await runAgent('nolat', { intervalSeconds: 5, latency: { mode: 'off' } });
    const on = await runAgent('on', { intervalSeconds: 5 });
    const s = stats([...(quiet.scrapes ?? []), ...(on.scrapes ?? [])]);
    const pct = (x: number): string => `${(x * 100).toFixed(2)} %`;
    const body = [
      `${N} endpoints (real veth pairs, one in ten with a TBF), sampled every 5 s, ${SECONDS} s per run, on this 2-core machine shared with other work (load average at the end: ${(await sh('cat', ['/proc/loadavg'])).stdout.split(' ')[0]}).`,
      '',
      mdTable(
        ['run', 'agent CPU (incl. spawned ip/tc/conntrack/ping)', 'VmRSS', 'VmHWM'],
        [
          [
            'metrics off (policy + services only)',
            pct(base.cpu),
            `${(base.rss / 1024).toFixed(1)} MiB`,
            `${(base.hwm / 1024).toFixed(1)} MiB`,
          ],
          [
            'metrics every 5 s, latency probes off',
            pct(quiet.cpu),
            `${(quiet.rss / 1024).toFixed(1)} MiB`,
            `${(quiet.hwm / 1024).toFixed(1)} MiB`,
          ],
          [
            'metrics every 5 s, ICMP probes (default budget)',
            pct(on.cpu),
            `${(on.rss / 1024).toFixed(1)} MiB`,
            `${(on.hwm / 1024).toFixed(1)} MiB`,
          ],
          [
            'the sampler without / with probes (difference to off)',
            `${pct(quiet.cpu - base.cpu)} / ${pct(on.cpu - base.cpu)}`,
            `${((on.rss - base.rss) / 1024).toFixed(1)} MiB`,
            '',
          ],
        ],
      ),
      '',
      mdTable(
        ['measure', 'value'],
        [
          ['endpoints in the last sample', String(on.endpoints)],
          ['last sample duration, wall (store + ip + tc + conntrack reads + figures)', `${ms((quiet.sample ?? NaN) * 1000)} ms`],
          [`GET /metrics p50 / p95 / max (${2 * ITER} scrapes)`, `${ms(s.median)} / ${ms(s.p95)} / ${ms(s.max)} ms`],
          [
            'agent CPU per GET /metrics (utime + stime while each scrape ran; upper bound)',
            `${ms(((quiet.scrapeCpuMs ?? NaN) + (on.scrapeCpuMs ?? NaN)) / 2)} ms`,
          ],
          ['/metrics size', `${((on.size ?? 0) / 1024).toFixed(0)} KiB`],
        ],
      ),
    ].join('\n');
    process.stdout.write(`\n## Metrics sampler (bench/metrics.ts)\n\n${body}\n`);
  } finally {
    await netnsBatch('del', [ns]).catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
