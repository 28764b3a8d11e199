/**
 * DNS benchmark (not part of `make test`; root; needs dnsperf and dnsmasq):
 *   node --experimental-strip-types bench/dns.ts
 * In one throwaway netns (loopback only): our server (agent/dns/standalone.ts) and dnsmasq
 * serve the same cluster names (N ClusterIP services; dnsmasq through an addn-hosts file) and
 * forward `*.fwd.test` to a third, "origin" dnsmasq; both cache. dnsperf measures, for cluster
 * names and for forwarded names once cached: the highest throughput (closed loop, -q
 * outstanding queries) and latency percentiles at a fixed offered rate (`-Q`, per-query
 * latencies from `-v`), and each server's CPU time per query (all its threads, from
 * /proc/PID/task/TID/schedstat) over a fixed number of queries: a figure that holds still on a
 * loaded machine where qps does not. Sides alternate, DNS_BENCH_ROUNDS times; the table shows
 * the median round. Our server runs on the runtime the agent ships with (the pinned Bun of
 * scripts/build.mjs) unless DNS_BENCH_RUNTIME=node. Knobs: DNS_BENCH_SECONDS (8),
 * DNS_BENCH_NAMES (1000), DNS_BENCH_RATE (5000 qps for the latency runs), DNS_BENCH_ROUNDS (3),
 * DNS_BENCH_CPU_QUERIES (100000 per CPU figure), DNS_BENCH_PREFIX (netns prefix, "hdb"). The
 * report is printed and written to bench/dns-report.md.
 *
 * Every latency run also records, for the server measured, its CPU per query at that rate, how
 * long its threads waited for a CPU (run queue, /proc/PID/task/TID/schedstat) and its page
 * faults: the p99 of a 2-vCPU machine is mostly that wait (docs/benchmarks.md, issue 15).
 * Measurement knobs, applied to every server alike (they change the measurement, not a server):
 * - DNS_BENCH_WIRE=1: tcpdump on the netns' loopback during the latency runs; the report adds
 *   the latency seen on the wire (query on lo → reply on lo), i.e. without dnsperf's own wait
 *   for a CPU, which on a busy machine is a large part of what it reports.
 * - DNS_BENCH_RT=1: the latency runs at SCHED_FIFO priority 10 (dnsperf and the server
 *   measured; back to SCHED_OTHER after), so other jobs of a shared machine do not preempt them.
 * - DNS_BENCH_PIN=C:S: dnsperf on CPUs C, the servers on CPUs S (taskset, every thread; e.g. 0:1)
 *   for all runs, so load generator and server do not compete for a CPU. On a quiet host only:
 *   under other load it makes the tail worse.
 * - DNS_BENCH_BEFORE=DIR: a third side, "cni-ts before", running DIR/agent/dns/standalone.ts
 *   (e.g. `git archive` of another commit, node_modules linked), alternating with the others.
 * - DNS_BENCH_TRACE=1 (implies DNS_BENCH_WIRE): our server runs with bench/dns-trace.ts preloaded,
 *   which timestamps each datagram's callback and send; each round of ours then splits the
 *   time on the wire into arrival → callback (waiting for the event loop or a CPU),
 *   callback → send (handler and batching) and send → wire.
 * - DNS_BENCH_ONLY=cluster|forwarded: one name kind only.
 * Our server (and "before") runs with the allocator and engine settings (MIMALLOC_..., BUN_JSC_...) of its tree's
 * conf/systemd/cni-ts-agent.service (bench/agent-env.ts), as the agent does.
 */
import { execa, type ResultPromise } from 'execa';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { mdTable, sh, sleep, uid } from './lib.ts';
import { buildZone, type ZoneObjects } from '../shared/dns/records.ts';
import { DURATION_BUCKETS } from '../agent/dns/metrics.ts';
import { agentRuntimeEnv } from './agent-env.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const SECONDS = Number(process.env.DNS_BENCH_SECONDS ?? 8);
const NAMES = Number(process.env.DNS_BENCH_NAMES ?? 1000);
const RATE = Number(process.env.DNS_BENCH_RATE ?? 5000);
const ROUNDS = Number(process.env.DNS_BENCH_ROUNDS ?? 3);
const CPU_QUERIES = Number(process.env.DNS_BENCH_CPU_QUERIES ?? 100000);
const RUNTIME = process.env.DNS_BENCH_RUNTIME ?? 'bun';
const TRACE = process.env.DNS_BENCH_TRACE === '1';
const WIRE = process.env.DNS_BENCH_WIRE === '1' || TRACE;
const RT = process.env.DNS_BENCH_RT === '1';
const PIN = process.env.DNS_BENCH_PIN?.split(':');
const BEFORE = process.env.DNS_BENCH_BEFORE;
const ONLY = process.env.DNS_BENCH_ONLY;
/** the Bun the agent's executable is compiled with (scripts/build.mjs) */
const BUN = path.join(ROOT, 'node_modules', '@oven', 'bun-linux-x64-baseline', 'bin', 'bun');
const OURS = 5300;
const DNSMASQ = 5301;
const OURS_BEFORE = 5302;
const ORIGIN = 5399;

interface Perf {
  qps: number;
  sent: number;
  completed: number;
  lost: number;
  avgMs: number;
  p50?: number;
  p99?: number;
  /** server CPU µs per answered query (fixed-count run) */
  cpuUs?: number;
  /** during the latency run: server CPU µs per query, ms per second its threads waited for a CPU, page faults per 1000 queries */
  latCpuUs?: number;
  waitMsPerS?: number;
  faultsPerK?: number;
  /** latency on the wire (DNS_BENCH_WIRE) */
  wireP50?: number;
  wireP99?: number;
  /** where the time on the wire went, in our server (DNS_BENCH_TRACE) */
  split?: string;
}

/** CPU time, run-queue wait (ns) and minor page faults of every thread of a process so far, by thread. */
function threadStats(pid: number): Map<string, { cpu: number; wait: number; faults: number }> {
  const r = new Map<string, { cpu: number; wait: number; faults: number }>();
  for (const t of readdirSync(`/proc/${pid}/task`)) {
    try {
      const [cpu, wait] = readFileSync(`/proc/${pid}/task/${t}/schedstat`, 'utf8').split(' ');
      // fields after "(comm)": state ppid pgrp session tty tpgid flags minflt
      const st = readFileSync(`/proc/${pid}/task/${t}/stat`, 'utf8');
      r.set(t, { cpu: Number(cpu), wait: Number(wait), faults: Number(st.slice(st.lastIndexOf(')') + 2).split(' ')[7]) });
    } catch {
      // thread gone
    }
  }
  return r;
}

/** What the threads alive at the end did since `before` (a thread started since counts whole). */
function threadDelta(
  before: Map<string, { cpu: number; wait: number; faults: number }>,
  after: Map<string, { cpu: number; wait: number; faults: number }>,
): { cpu: number; wait: number; faults: number } {
  const d = { cpu: 0, wait: 0, faults: 0 };
  for (const [t, a] of after) {
    const b = before.get(t) ?? { cpu: 0, wait: 0, faults: 0 };
    d.cpu += a.cpu - b.cpu;
    d.wait += a.wait - b.wait;
    d.faults += a.faults - b.faults;
  }
  return d;
}

/**
 * Queries and their replies seen by a tcpdump capture of loopback (nanosecond timestamps,
 * Ethernet framing, IPv4/UDP) for a server on `port`: each reply matched to its query by client
 * port and DNS ID; times in ms since the epoch; `key` is port * 65536 + ID.
 */
function wirePairs(file: string, port: number): { key: number; tin: number; tout: number }[] {
  const b = readFileSync(file);
  if (b.length < 24) return [];
  const le = b.readUInt32LE(0) === 0xa1b23c4d || b.readUInt32LE(0) === 0xa1b2c3d4;
  const u32 = (o: number): number => (le ? b.readUInt32LE(o) : b.readUInt32BE(o));
  const nano = u32(0) === 0xa1b23c4d;
  const sent = new Map<number, number>();
  const out: { key: number; tin: number; tout: number }[] = [];
  for (let o = 24; o + 16 <= b.length;) {
    const t = u32(o) * 1000 + u32(o + 4) / (nano ? 1e6 : 1e3);
    const len = u32(o + 8);
    const f = o + 16;
    o = f + len;
    if (o > b.length || len < 14 + 20 + 8 + 2 || b.readUInt16BE(f + 12) !== 0x0800) continue;
    const ip = f + 14;
    if (b[ip + 9] !== 17) continue;
    const udp = ip + (b[ip] & 0xf) * 4;
    if (udp + 10 > o) continue;
    const sp = b.readUInt16BE(udp);
    const dp = b.readUInt16BE(udp + 2);
    const id = b.readUInt16BE(udp + 8);
    if (dp === port) sent.set(sp * 65536 + id, t);
    else if (sp === port) {
      const key = dp * 65536 + id;
      const tin = sent.get(key);
      if (tin !== undefined) {
        out.push({ key, tin, tout: t });
        sent.delete(key);
      }
    }
  }
  return out;
}

/**
 * Arrival → callback, callback → send and send → wire percentiles (ms) of the queries both
 * captured and traced by bench/dns-trace.ts (its dump: n callbacks, n sends, [t, port, id]...).
 */
function splitLatency(pairs: { key: number; tin: number; tout: number }[], dump: Buffer): string {
  const f = new Float64Array(dump.buffer, dump.byteOffset, Math.floor(dump.length / 8));
  const [nr, nt] = [f[0], f[1]];
  const cb = new Map<number, number>();
  const snd = new Map<number, number>();
  for (let i = 0; i < nr; i++) cb.set(f[2 + i * 3 + 1] * 65536 + f[2 + i * 3 + 2], f[2 + i * 3]);
  for (let i = 0; i < nt; i++) snd.set(f[2 + (nr + i) * 3 + 1] * 65536 + f[2 + (nr + i) * 3 + 2], f[2 + (nr + i) * 3]);
  const a: number[] = [];
  const c: number[] = [];
  const w: number[] = [];
  for (const p of pairs) {
    const t1 = cb.get(p.key);
    const t2 = snd.get(p.key);
    if (t1 === undefined || t2 === undefined) continue;
    a.push(t1 - p.tin);
    c.push(t2 - t1);
    w.push(p.tout - t2);
  }
  if (!a.length) return '';
  const pp = (xs: number[]): string => {
    xs.sort((x, y) => x - y);
    return `p50 ${percentile(xs, 50).toFixed(3)} p99 ${percentile(xs, 99).toFixed(3)}`;
  };
  return `arrival → callback ${pp(a)}, callback → send ${pp(c)}, send → wire ${pp(w)} ms (${a.length} queries)`;
}

/** CPU time (ns) of every thread of a process so far. */
function cpuNs(pid: number): number {
  let ns = 0;
  for (const t of readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(readFileSync(`/proc/${pid}/task/${t}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      // thread gone
    }
  }
  return ns;
}

const median = (xs: number[]): number => {
  const s = xs.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  return s.length ? s[(s.length - 1) >> 1] : NaN;
};

const percentile = (sorted: number[], p: number): number => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];

function parsePerf(out: string): Perf {
  const num = (re: RegExp): number => Number(out.match(re)?.[1] ?? NaN);
  const r: Perf = {
    qps: num(/Queries per second:\s+([\d.]+)/),
    sent: num(/Queries sent:\s+(\d+)/),
    completed: num(/Queries completed:\s+(\d+)/),
    lost: num(/Queries lost:\s+(\d+)/),
    avgMs: num(/Average Latency \(s\):\s+([\d.]+)/) * 1000,
  };
  // -v: one line per answer, latency in seconds last ("> NOERROR name A 0.000123")
  const lat = [...out.matchAll(/^> \S+ .* ([\d.]+)$/gm)].map((m) => Number(m[1]) * 1000).sort((a, b) => a - b);
  if (lat.length) {
    r.p50 = percentile(lat, 50);
    r.p99 = percentile(lat, 99);
  }
  return r;
}

/** CPU time of one full zone build: 5000 services, a 5000-endpoint headless one, 10000 container endpoints. */
function zoneBuildCost(): string {
  const o = { services: [], endpointSlices: [], endpoints: [] } as unknown as Required<ZoneObjects>;
  for (let i = 0; i < 5000; i++) {
    o.services.push({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: `s${i}`, namespace: `ns${i % 50}` },
      spec: { clusterIP: `10.96.${i >> 8}.${i & 255}`, ports: [{ name: 'http', port: 80 }] },
    });
  }
  o.services.push({
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: 'big', namespace: 'default' },
    spec: { clusterIP: 'None', ports: [{ name: 'p', port: 1 }] },
  });
  o.endpointSlices.push({
    apiVersion: 'cni-ts.dev/v1',
    kind: 'EndpointSlice',
    metadata: { name: 'big', namespace: 'default', labels: { 'kubernetes.io/service-name': 'big' } },
    endpoints: Array.from({ length: 5000 }, (_, i) => ({ addresses: [`10.200.${i >> 8}.${i & 255}`] })),
    ports: [{ name: 'p', port: 1 }],
  });
  for (let i = 0; i < 10000; i++) {
    o.endpoints.push({
      apiVersion: 'cni-ts.dev/v1',
      kind: 'Endpoint',
      metadata: { name: `c${i}`, namespace: 'default' },
      spec: {
        node: 'n',
        network: `n${i % 5}`,
        containerId: `${i}`,
        ifname: 'eth0',
        ips: [`10.1.${i >> 8}.${i & 255}/16`],
        aliases: [`a${i}`],
      },
    });
  }
  const cpu: number[] = [];
  let names = 0;
  for (let k = 0; k < 5; k++) {
    const c = process.cpuUsage();
    names = buildZone(o).stats.names;
    const u = process.cpuUsage(c);
    cpu.push((u.user + u.system) / 1000);
  }
  cpu.sort((a, b) => a - b);
  return `Zone rebuild (${names} names: 5000 services, a 5000-endpoint headless service, 10000 container endpoints): median ${cpu[2].toFixed(0)} ms CPU of 5 builds (min ${cpu[0].toFixed(0)}).`;
}

async function main(): Promise<void> {
  const build = zoneBuildCost();
  process.stdout.write(`${build}\n`);
  if (RUNTIME === 'bun' && !existsSync(BUN)) throw new Error(`${BUN} missing: run make (npm install) first, or DNS_BENCH_RUNTIME=node`);
  const runtimeVersion = (await sh(RUNTIME === 'bun' ? BUN : process.execPath, ['--version'])).stdout.trim();
  const id = uid(process.env.DNS_BENCH_PREFIX ?? 'hdb');
  const ns = `${id}-n`;
  const dir = `/tmp/${id}`;
  const procs: ResultPromise[] = [];
  mkdirSync(dir, { recursive: true });
  await sh('ip', ['netns', 'add', ns]);
  const inNsEnv = (env: Record<string, string>, cmd: string, args: string[]): ResultPromise =>
    execa('ip', ['netns', 'exec', ns, cmd, ...args], { reject: false, buffer: { stdout: true, stderr: true }, env });
  const inNs = (cmd: string, args: string[]): ResultPromise => inNsEnv({}, cmd, args);
  try {
    await sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    // records: N services; the same names for dnsmasq in a hosts file
    const objects: unknown[] = [{ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'default' } }];
    const hosts: string[] = [];
    const clusterQ: string[] = [];
    const fwdQ: string[] = [];
    for (let i = 0; i < NAMES; i++) {
      const ip = `10.96.${Math.floor(i / 250)}.${(i % 250) + 1}`;
      objects.push({ apiVersion: 'v1', kind: 'Service', metadata: { name: `svc-${i}`, namespace: 'default' }, spec: { clusterIP: ip } });
      hosts.push(`${ip} svc-${i}.default.svc.cluster.local`);
      clusterQ.push(`svc-${i}.default.svc.cluster.local A`);
      fwdQ.push(`host-${i}.fwd.test A`);
    }
    writeFileSync(path.join(dir, 'objects.json'), JSON.stringify(objects));
    writeFileSync(path.join(dir, 'hosts'), `${hosts.join('\n')}\n`);
    writeFileSync(path.join(dir, 'cluster.txt'), `${clusterQ.join('\n')}\n`);
    writeFileSync(path.join(dir, 'fwd.txt'), `${fwdQ.join('\n')}\n`);
    writeFileSync(
      path.join(dir, 'agent.json'),
      JSON.stringify({
        dns: {
          upstreams: [`127.0.0.1:${ORIGIN}`],
          listen: [`127.0.0.1:${OURS}`],
          listenOnGateways: false,
          rateLimit: false,
          cacheSize: 20000,
        },
      }),
    );

    if (BEFORE) {
      const cfg = JSON.parse(readFileSync(path.join(dir, 'agent.json'), 'utf8')) as { dns: { listen: string[] } };
      cfg.dns.listen = [`127.0.0.1:${OURS_BEFORE}`];
      writeFileSync(path.join(dir, 'agent-before.json'), JSON.stringify(cfg));
    }

    const dnsmasqArgs = (port: number, extra: string[]): string[] => [
      '--no-daemon',
      '--conf-file=/dev/null',
      '--no-hosts',
      '--listen-address=127.0.0.1',
      '--bind-interfaces',
      `--port=${port}`,
      '--cache-size=10000',
      ...extra,
    ];
    procs.push(inNs('dnsmasq', dnsmasqArgs(ORIGIN, ['--no-resolv', '--address=/fwd.test/192.0.2.1', '--local-ttl=3600'])));
    const theirs = inNs(
      'dnsmasq',
      dnsmasqArgs(DNSMASQ, ['--no-resolv', `--server=127.0.0.1#${ORIGIN}`, `--addn-hosts=${path.join(dir, 'hosts')}`, '--local-ttl=300']),
    );
    procs.push(theirs);
    const traceFile = path.join(dir, 'trace.bin');
    process.env.DNS_TRACE_FILE = traceFile;
    // our server with the allocator settings of its tree's agent unit (bench/agent-env.ts)
    const startOurs = (root: string, config: string, trace = false): ResultPromise =>
      inNsEnv(agentRuntimeEnv(root), RUNTIME === 'bun' ? BUN : process.execPath, [
        ...(RUNTIME === 'bun' ? [] : ['--experimental-strip-types', '--no-warnings']),
        ...(trace ? ['--preload', path.join(ROOT, 'bench', 'dns-trace.ts')] : []),
        path.join(root, 'agent/dns/standalone.ts'),
        '--objects',
        path.join(dir, 'objects.json'),
        '--config',
        path.join(dir, config),
      ]);
    const tracing = TRACE && RUNTIME === 'bun';
    const ours = startOurs(ROOT, 'agent.json', tracing);
    procs.push(ours);
    const before = BEFORE ? startOurs(path.resolve(BEFORE), 'agent-before.json') : undefined;
    if (before) procs.push(before);
    let oursOut = '';
    ours.stdout!.on('data', (d: Buffer) => (oursOut += d.toString()));
    /** our server's duration histogram (SIGUSR1 prints the counters) */
    const histogram = async (): Promise<number[]> => {
      const before = oursOut.length;
      ours.kill('SIGUSR1');
      for (let i = 0; i < 100; i++) {
        const line = oursOut
          .slice(before)
          .split('\n')
          .find((l) => l.startsWith('{'));
        if (line) return (JSON.parse(line) as { duration: { buckets: number[] } }).duration.buckets;
        await sleep(20);
      }
      return [];
    };
    await sleep(1500);
    for (const port of [OURS, DNSMASQ, ...(before ? [OURS_BEFORE] : [])]) {
      const r = await sh(
        'ip',
        ['netns', 'exec', ns, 'dig', '@127.0.0.1', '-p', String(port), '+short', 'svc-1.default.svc.cluster.local'],
        { allowFail: true },
      );
      if (!r.stdout.trim()) throw new Error(`server on port ${port} does not answer`);
    }

    // `ip netns exec` execs the server: its pid is the server's
    const sides: [string, number, number][] = [
      ['cni-ts', OURS, ours.pid!],
      ['dnsmasq', DNSMASQ, theirs.pid!],
      ...(before ? [['cni-ts before', OURS_BEFORE, before.pid!] as [string, number, number]] : []),
    ];
    if (PIN) for (const [, , pid] of sides) await sh('taskset', ['-a', '-p', '-c', PIN[1], String(pid)]);
    const perf = async (port: number, file: string, extra: string[], prefix: string[] = []): Promise<Perf> => {
      const r = await sh(
        'ip',
        [
          'netns',
          'exec',
          ns,
          ...(PIN ? ['taskset', '-c', PIN[0]] : []),
          ...prefix,
          'dnsperf',
          '-s',
          '127.0.0.1',
          '-p',
          String(port),
          '-d',
          path.join(dir, file),
          '-t',
          '2',
          ...extra,
        ],
        { allowFail: true },
      );
      return parsePerf(r.stdout);
    };
    /** our traced server's timestamps since the last call (DNS_BENCH_TRACE) */
    const traceDump = async (): Promise<Buffer> => {
      rmSync(traceFile, { force: true });
      ours.kill('SIGUSR2');
      for (let i = 0; i < 250 && !existsSync(traceFile); i++) await sleep(20);
      return existsSync(traceFile) ? readFileSync(traceFile) : Buffer.alloc(0);
    };
    /** the fixed-rate run, with the server's scheduling figures and (DNS_BENCH_WIRE) a capture */
    const latencyRun = async (port: number, pid: number, file: string): Promise<Perf> => {
      const traced = tracing && port === OURS;
      if (traced) await traceDump();
      let cap: ResultPromise | undefined;
      const pcap = path.join(dir, `lat-${port}.pcap`);
      if (WIRE) {
        cap = inNs('tcpdump', [
          '-i',
          'lo',
          '-n',
          '-s',
          '128',
          '--time-stamp-precision=nano',
          '-B',
          '16384',
          '-w',
          pcap,
          'udp',
          'port',
          String(port),
        ]);
        let err = '';
        cap.stderr!.on('data', (d: Buffer) => (err += d.toString()));
        for (let i = 0; i < 100 && !err.includes('listening'); i++) await sleep(20);
      }
      if (RT) await sh('chrt', ['-a', '-f', '-p', '10', String(pid)]);
      const s0 = threadStats(pid);
      const t0 = performance.now();
      let r: Perf;
      try {
        r = await perf(port, file, ['-l', String(Math.max(3, SECONDS / 2)), '-Q', String(RATE), '-v'], RT ? ['chrt', '-f', '10'] : []);
      } finally {
        if (RT) await sh('chrt', ['-a', '-o', '-p', '0', String(pid)], { allowFail: true });
      }
      const d = threadDelta(s0, threadStats(pid));
      const secs = (performance.now() - t0) / 1000;
      const n = Math.max(1, r.completed);
      r.latCpuUs = d.cpu / 1000 / n;
      r.waitMsPerS = d.wait / 1e6 / secs;
      r.faultsPerK = (d.faults * 1000) / n;
      if (cap) {
        await sleep(200);
        cap.kill('SIGINT');
        await cap;
        const pairs = wirePairs(pcap, port);
        const w = pairs.map((p) => p.tout - p.tin).sort((x, y) => x - y);
        if (w.length) {
          r.wireP50 = percentile(w, 50);
          r.wireP99 = percentile(w, 99);
        }
        if (traced) r.split = splitLatency(pairs, await traceDump());
        rmSync(pcap, { force: true });
      }
      return r;
    };
    // warm the caches with every forwarded name
    for (const [, port] of sides) await perf(port, 'fwd.txt', ['-n', '1', '-Q', '2000']);
    const rows: Array<Array<string | number>> = [];
    const serverSide: string[] = [];
    const perRound: string[] = [];
    const results: Record<string, Perf> = {};
    const kinds = (
      [
        ['cluster names', 'cluster.txt'],
        ['forwarded, cached', 'fwd.txt'],
      ] as const
    ).filter(([k]) => !ONLY || k.startsWith(ONLY));
    for (const [kind, file] of kinds) {
      const runs: Record<string, Perf[]> = {};
      for (let round = 0; round < ROUNDS; round++) {
        for (const [name, port, pid] of sides) {
          // CPU per query over a fixed count: the input file CPU_QUERIES / NAMES times, closed loop
          const c0 = cpuNs(pid);
          const fixed = await perf(port, file, ['-n', String(Math.ceil(CPU_QUERIES / NAMES)), '-c', '4', '-q', '200']);
          const cpuUs = (cpuNs(pid) - c0) / 1000 / Math.max(1, fixed.completed);
          const tput = await perf(port, file, ['-l', String(SECONDS), '-c', '4', '-q', '200']);
          const h0 = name === 'cni-ts' ? await histogram() : [];
          const lat = await latencyRun(port, pid, file);
          if (name === 'cni-ts' && round === ROUNDS - 1) {
            // receive-to-send inside our server during the last latency run, by bucket
            const h1 = await histogram();
            const d = h1.map((v, i) => v - (h0[i] ?? 0));
            const total = d.reduce((a, b) => a + b, 0);
            const bounds = [...DURATION_BUCKETS.map((b) => `${b * 1000} ms`), 'more'];
            let acc = 0;
            const p99 = bounds[d.findIndex((v) => (acc += v) >= 0.99 * total)];
            serverSide.push(`${kind}: ${total} answers, ${((100 * d[0]) / Math.max(1, total)).toFixed(2)} % within 0.1 ms, p99 ≤ ${p99}`);
          }
          const { p50, p99, latCpuUs, waitMsPerS, faultsPerK, wireP50, wireP99, split } = lat;
          const r: Perf = { ...tput, p50, p99, cpuUs, latCpuUs, waitMsPerS, faultsPerK, wireP50, wireP99 };
          (runs[name] ??= []).push(r);
          const load = readFileSync('/proc/loadavg', 'utf8').split(' ')[0];
          const wire = wireP99 === undefined ? '' : `, on the wire p50 ${wireP50?.toFixed(3)} p99 ${wireP99.toFixed(3)} ms`;
          const line =
            `${kind} ${name} round ${round + 1}: ${Math.round(tput.qps)} qps, ${cpuUs.toFixed(2)} µs CPU/query; ` +
            `at ${RATE} qps p50 ${p50?.toFixed(3)} ms, p99 ${p99?.toFixed(3)} ms${wire} (lost ${lat.lost}/${lat.sent}), ` +
            `server ${latCpuUs?.toFixed(1)} µs CPU/query, waited for a CPU ${waitMsPerS?.toFixed(0)} ms/s, ${faultsPerK?.toFixed(0)} page faults/1000 queries; load ${load}` +
            (split ? `; in the server: ${split}` : '');
          perRound.push(line);
          process.stdout.write(`${line}\n`);
        }
      }
      for (const [name] of sides) {
        const rs = runs[name];
        const m: Perf = {
          qps: median(rs.map((r) => r.qps)),
          sent: rs.reduce((a, r) => a + r.sent, 0),
          completed: rs.reduce((a, r) => a + r.completed, 0),
          lost: rs.reduce((a, r) => a + r.lost, 0),
          avgMs: median(rs.map((r) => r.avgMs)),
          p50: median(rs.map((r) => r.p50 ?? NaN)),
          p99: median(rs.map((r) => r.p99 ?? NaN)),
          cpuUs: median(rs.map((r) => r.cpuUs ?? NaN)),
          latCpuUs: median(rs.map((r) => r.latCpuUs ?? NaN)),
          waitMsPerS: median(rs.map((r) => r.waitMsPerS ?? NaN)),
          wireP99: median(rs.map((r) => r.wireP99 ?? NaN)),
        };
        const range = (k: 'p99' | 'wireP99'): string => {
          const xs = rs.map((r) => r[k] ?? NaN).filter((x) => !Number.isNaN(x));
          const med = m[k];
          if (med === undefined || Number.isNaN(med)) return '–';
          return xs.length > 1 ? `${med.toFixed(3)} (${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)})` : med.toFixed(3);
        };
        results[`${kind}/${name}`] = m;
        rows.push([
          kind,
          name,
          Math.round(m.qps),
          `${m.lost}/${m.sent}`,
          m.avgMs.toFixed(2),
          (m.cpuUs ?? NaN).toFixed(2),
          m.p50 === undefined || Number.isNaN(m.p50) ? '–' : m.p50.toFixed(3),
          range('p99'),
          ...(WIRE ? [range('wireP99')] : []),
          (m.latCpuUs ?? NaN).toFixed(1),
          (m.waitMsPerS ?? NaN).toFixed(0),
        ]);
      }
      const ratio = (x: 'qps' | 'cpuUs'): string =>
        ((results[`${kind}/cni-ts`][x] ?? NaN) / (results[`${kind}/dnsmasq`][x] ?? NaN)).toFixed(2);
      process.stdout.write(`${kind}: cni-ts / dnsmasq qps ${ratio('qps')}×, CPU per query ${ratio('cpuUs')}×\n`);
    }
    const cpus = (await sh('nproc', [])).stdout.trim();
    const load = (await sh('cat', ['/proc/loadavg'])).stdout.trim();
    const report = [
      `DNS: ${NAMES} ClusterIP services; our server on ${RUNTIME} ${runtimeVersion}; dnsperf 2.10, one netns, loopback; ${cpus} CPUs, load average at the end: ${load}.`,
      `Medians of ${ROUNDS} alternating rounds (lost/sent summed; p99: median (lowest–highest round)). Throughput: closed loop, 4 clients, 200 outstanding, ${SECONDS} s. CPU: the server's threads over ${CPU_QUERIES} queries, closed loop. Latency: offered ${RATE} qps for ${Math.max(3, SECONDS / 2)} s, per-answer latency from \`dnsperf -v\`${WIRE ? '; "wire": query → reply on loopback (tcpdump), without dnsperf\'s own scheduling' : ''}; "CPU wait": how long the server's threads waited in the run queue, per second of the run.`,
      `Measurement settings (the same for every server): ${[RT ? 'latency runs at SCHED_FIFO 10 (DNS_BENCH_RT)' : '', PIN ? `dnsperf on CPUs ${PIN[0]}, servers on CPUs ${PIN[1]} (DNS_BENCH_PIN)` : ''].filter(Boolean).join('; ') || 'none (default scheduling, no CPU placement)'}.`,
      '',
      build,
      '',
      mdTable(
        [
          'names',
          'server',
          'max qps',
          'lost/sent',
          'avg ms at max',
          'CPU µs/query',
          `p50 ms @${RATE}qps`,
          `p99 ms @${RATE}qps`,
          ...(WIRE ? [`wire p99 ms`] : []),
          `CPU µs/query @${RATE}qps`,
          'CPU wait ms/s',
        ],
        rows,
      ),
      '',
      'Rounds:',
      '',
      ...perRound.map((l) => `- ${l}`),
      '',
      `Inside our server (receive to send, its own histogram) during the latency runs: ${serverSide.join('; ')}.`,
      '',
    ].join('\n');
    process.stdout.write(`\n${report}\n`);
    writeFileSync(path.join(ROOT, 'bench', 'dns-report.md'), report);
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
