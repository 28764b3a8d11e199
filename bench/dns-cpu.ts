/**
 * DNS server CPU and page faults per query at fixed offered rates (not part of `make bench`;
 * root; needs dnsperf, dnsmasq and perf):
 *   node --experimental-strip-types --no-warnings bench/dns-cpu.ts
 * In one throwaway netns (loopback only): our server (agent/dns/standalone.ts, on the Bun the
 * agent ships with) serving DNS_CPU_NAMES ClusterIP services and forwarding `*.fwd.test` to an
 * "origin" dnsmasq (warmed, so forwarded names are answered from our cache). For each offered
 * rate (DNS_CPU_RATES, default "1000,5000,max"; max = closed loop, 4 clients, 200 outstanding)
 * and each name kind, dnsperf runs DNS_CPU_SECONDS (4) while `perf stat -e task-clock,page-faults
 * -p PID` watches the server: the table gives task-clock µs and page faults per answered query
 * (the median of DNS_CPU_ROUNDS rounds, 3). On a machine others load, CPU per query holds still
 * where latency does not.
 * DNS_CPU_BEFORE=DIR adds a side "before" running DIR/agent/dns/standalone.ts (a `git archive`
 * of another commit with node_modules linked), alternating with ours run by run, so both see
 * the same load. Each side runs with the allocator/engine settings of its tree's agent unit
 * (bench/agent-env.ts); DNS_CPU_ENV_AFTER / DNS_CPU_ENV_BEFORE="K=V ..." replace them (e.g.
 * DNS_CPU_ENV_AFTER= for none, to measure a setting alone). DNS_CPU_PREFIX names the netns
 * ("dtc"). The report is printed only.
 */
import { execa, type ResultPromise } from 'execa';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { mdTable, sh, sleep, uid } from './lib.ts';
import { agentRuntimeEnv, parseEnvKnob } from './agent-env.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const SECONDS = Number(process.env.DNS_CPU_SECONDS ?? 4);
const NAMES = Number(process.env.DNS_CPU_NAMES ?? 1000);
const ROUNDS = Number(process.env.DNS_CPU_ROUNDS ?? 3);
const RATES = (process.env.DNS_CPU_RATES ?? '1000,5000,max').split(',');
const KINDS = (process.env.DNS_CPU_KINDS ?? 'cluster,forwarded').split(',');
const BEFORE = process.env.DNS_CPU_BEFORE;
const BUN = path.join(ROOT, 'node_modules', '@oven', 'bun-linux-x64-baseline', 'bin', 'bun');
const ORIGIN = 5499;

interface Run {
  qps: number;
  cpuUs: number;
  faults: number;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[(xs.length - 1) >> 1];

async function main(): Promise<void> {
  const id = uid(process.env.DNS_CPU_PREFIX ?? 'dtc');
  const ns = `${id}-n`;
  const dir = `/tmp/${id}`;
  const procs: ResultPromise[] = [];
  mkdirSync(dir, { recursive: true });
  await sh('ip', ['netns', 'add', ns]);
  const inNs = (cmd: string, args: string[], env: Record<string, string> = {}): ResultPromise =>
    execa('ip', ['netns', 'exec', ns, cmd, ...args], { reject: false, buffer: { stdout: true, stderr: true }, env });
  try {
    await sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    const objects: unknown[] = [{ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'default' } }];
    const clusterQ: string[] = [];
    const fwdQ: string[] = [];
    for (let i = 0; i < NAMES; i++) {
      const ip = `10.96.${Math.floor(i / 250)}.${(i % 250) + 1}`;
      objects.push({ apiVersion: 'v1', kind: 'Service', metadata: { name: `svc-${i}`, namespace: 'default' }, spec: { clusterIP: ip } });
      clusterQ.push(`svc-${i}.default.svc.cluster.local A`);
      fwdQ.push(`host-${i}.fwd.test A`);
    }
    writeFileSync(path.join(dir, 'objects.json'), JSON.stringify(objects));
    writeFileSync(path.join(dir, 'cluster.txt'), `${clusterQ.join('\n')}\n`);
    writeFileSync(path.join(dir, 'forwarded.txt'), `${fwdQ.join('\n')}\n`);
    const config = (port: number): string => {
      const f = path.join(dir, `agent-${port}.json`);
      writeFileSync(
        f,
        JSON.stringify({
          dns: {
            upstreams: [`127.0.0.1:${ORIGIN}`],
            listen: [`127.0.0.1:${port}`],
            listenOnGateways: false,
            rateLimit: false,
            cacheSize: 20000,
          },
        }),
      );
      return f;
    };
    procs.push(
      inNs('dnsmasq', [
        '--no-daemon',
        '--conf-file=/dev/null',
        '--no-hosts',
        '--listen-address=127.0.0.1',
        '--bind-interfaces',
        `--port=${ORIGIN}`,
        '--no-resolv',
        '--address=/fwd.test/192.0.2.1',
        '--local-ttl=3600',
      ]),
    );
    const start = (root: string, port: number, env: Record<string, string>): ResultPromise => {
      process.stdout.write(`${root}: ${JSON.stringify(env)}\n`);
      return inNs(
        BUN,
        [path.join(root, 'agent/dns/standalone.ts'), '--objects', path.join(dir, 'objects.json'), '--config', config(port)],
        {
          ...(process.env as Record<string, string>),
          ...env,
        },
      );
    };
    const sides: [string, number, ResultPromise][] = [
      ['after', 5400, start(ROOT, 5400, parseEnvKnob(process.env.DNS_CPU_ENV_AFTER) ?? agentRuntimeEnv(ROOT))],
    ];
    if (BEFORE) {
      const root = path.resolve(BEFORE);
      sides.push(['before', 5401, start(root, 5401, parseEnvKnob(process.env.DNS_CPU_ENV_BEFORE) ?? agentRuntimeEnv(root))]);
    }
    for (const [, , p] of sides) procs.push(p);
    await sleep(1500);
    const dnsperf = (port: number, file: string, extra: string[]): Promise<{ stdout: string }> =>
      sh('ip', ['netns', 'exec', ns, 'dnsperf', '-s', '127.0.0.1', '-p', String(port), '-d', path.join(dir, file), '-t', '2', ...extra], {
        allowFail: true,
      });
    for (const [, port] of sides) {
      const r = await sh(
        'ip',
        ['netns', 'exec', ns, 'dig', '@127.0.0.1', '-p', String(port), '+short', 'svc-1.default.svc.cluster.local'],
        {
          allowFail: true,
        },
      );
      if (!r.stdout.trim()) throw new Error(`server on port ${port} does not answer`);
      await dnsperf(port, 'forwarded.txt', ['-n', '1', '-Q', '2000']);
    }
    const results = new Map<string, Run[]>();
    for (const kind of KINDS) {
      for (const rate of RATES) {
        for (let round = 0; round < ROUNDS; round++) {
          for (const [name, port, p] of round % 2 ? [...sides].reverse() : sides) {
            const stat = execa('perf', ['stat', '-x,', '-e', 'task-clock,page-faults', '-p', String(p.pid)], { reject: false });
            await sleep(100);
            const load = rate === 'max' ? ['-c', '4', '-q', '200'] : ['-Q', rate];
            const out = (await dnsperf(port, `${kind}.txt`, ['-l', String(SECONDS), ...load])).stdout;
            stat.kill('SIGINT');
            const st = String((await stat).stderr);
            const field = (ev: string): number =>
              Number(
                st
                  .split('\n')
                  .find((l) => l.includes(ev))
                  ?.split(',')[0] ?? NaN,
              );
            const done = Number(out.match(/Queries completed:\s+(\d+)/)?.[1] ?? NaN);
            const r: Run = {
              qps: Number(out.match(/Queries per second:\s+([\d.]+)/)?.[1] ?? NaN),
              cpuUs: (field('task-clock') * 1000) / done,
              faults: (field('page-faults') * 1000) / done,
            };
            const k = `${kind}|${rate}|${name}`;
            results.set(k, [...(results.get(k) ?? []), r]);
            const load1 = (await sh('cat', ['/proc/loadavg'])).stdout.split(' ')[0];
            process.stdout.write(
              `${kind} @${rate} ${name} round ${round + 1}: ${r.qps.toFixed(0)} qps, ${r.cpuUs.toFixed(1)} µs CPU/query, ${r.faults.toFixed(1)} faults/1000 (load ${load1})\n`,
            );
          }
        }
      }
    }
    const rows: (string | number)[][] = [];
    for (const [k, rs] of results) {
      const [kind, rate, name] = k.split('|');
      rows.push([
        kind,
        rate,
        name,
        median(rs.map((r) => r.qps)).toFixed(0),
        `${median(rs.map((r) => r.cpuUs)).toFixed(1)} (${Math.min(...rs.map((r) => r.cpuUs)).toFixed(1)}–${Math.max(...rs.map((r) => r.cpuUs)).toFixed(1)})`,
        median(rs.map((r) => r.faults)).toFixed(1),
      ]);
    }
    const load = (await sh('cat', ['/proc/loadavg'])).stdout.trim();
    process.stdout.write(
      `\nMedian of ${ROUNDS} rounds of ${SECONDS} s; load average at the end: ${load}\n\n${mdTable(
        ['names', 'offered qps', 'server', 'answered qps', 'task-clock µs/query (range)', 'page faults/1000 queries'],
        rows,
      )}\n`,
    );
  } finally {
    for (const p of procs) p.kill('SIGTERM');
    await Promise.allSettled(procs);
    await sh('ip', ['netns', 'del', ns], { allowFail: true });
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e: Error) => {
  process.stderr.write(`${e.stack ?? e.message}\n`);
  process.exit(1);
});
