/**
 * The policy path end to end (figures printed, not asserted), in a throwaway netns (prefix hpb)
 * with a file store holding BENCH_POLICY_ENDPOINTS endpoints (default 1000, all on this node)
 * and BENCH_POLICY_POLICIES NetworkPolicies (default 200) plus ANPs and a BANP:
 *   - store write → enforcement: `cnictl apply -f` of one new policy, until the agent's log says
 *     the table holding it is applied (its timestamp, same clock) — p50/p95 over BENCH_ITER;
 *   - ADD latency of the `endpoint` plugin (the whole process, what it adds to a chain) with an
 *     empty store and with the full one, and its DEL;
 *   - the agent's memory (VmRSS, VmHWM) at the end.
 *
 *   - the apply → enforce part alone: BENCH_POLICY_ONLY=apply (no ADD latency, no iperf3), over
 *     BENCH_POLICY_CHANGES policy changes (default 30): store write (an in-process put) →
 *     applied, and the agent's CPU time per change (every thread's on-CPU time from
 *     /proc/PID/task/* /schedstat, ns; the honest figure on a loaded machine) with the agent's
 *     own breakdown (read, compile, diff, nft, state) from its log.
 *
 *   node --experimental-strip-types bench/policy-agent.ts   (as root; knobs: BENCH_ITER, BENCH_POLICY_*,
 *   BENCH_PREFIX (resource prefix, default hpb), BENCH_POLICY_RESYNC (agent resync seconds, default 10))
 */
import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { openStore } from '../shared/store/index.ts';
import type { CniObject } from '../shared/objects/types.ts';
import { scaleObjects } from '../test/policy-unit-model.ts';
import { askAgent } from '../shared/agentapi.ts';
import { mdTable, ms, netnsBatch, nsPath, sh, sleep, stats, uid } from './lib.ts';

const N_EP = Number(process.env.BENCH_POLICY_ENDPOINTS ?? 1000);
const N_POL = Number(process.env.BENCH_POLICY_POLICIES ?? 200);
const ITER = Number(process.env.BENCH_ITER ?? 20);
const ROOT = path.resolve(import.meta.dirname, '..');
const BIN = path.join(ROOT, 'dist', 'bin');
const ONLY = process.env.BENCH_POLICY_ONLY ?? '';
const CHANGES = Number(process.env.BENCH_POLICY_CHANGES ?? 30);
const RESYNC = process.env.BENCH_POLICY_RESYNC ?? '10';
const id = uid(process.env.BENCH_PREFIX ?? 'hpb');
const ns = `${id}-h`;
const dir = `/run/cnits-${id}`;
const table = `${id}_policy`;

interface Setup {
  config: string;
  storeDir: string;
}

function setup(name: string): Setup {
  const storeDir = path.join(dir, name, 'store');
  mkdirSync(storeDir, { recursive: true });
  const config = path.join(dir, name, 'agent.json');
  writeFileSync(
    config,
    JSON.stringify({
      store: { type: 'file', path: storeDir },
      node: 'n1',
      socket: path.join(dir, name, 'agent.sock'),
      policy: { table: `${table}_${name}`.slice(0, 60), lockFile: path.join(dir, name, 'lock') },
    }),
  );
  return { config, storeDir };
}

async function populate(s: Setup, objs: CniObject[]): Promise<void> {
  const store = await openStore({ type: 'file', path: s.storeDir });
  for (const o of objs) await store.put(o);
  await store.close();
}

/** One endpoint plugin process inside the bench netns (what it adds to a chain); wall time in ms. */
async function endpointRun(s: Setup, command: 'ADD' | 'DEL', i: number): Promise<number> {
  const env = {
    ...process.env,
    CNI_COMMAND: command,
    CNI_CONTAINERID: `bench${i}`,
    CNI_NETNS: nsPath(ns),
    CNI_IFNAME: 'eth0',
    CNI_ARGS: `K8S_POD_NAMESPACE=ns-${i % 20};K8S_POD_NAME=bench-${i}`,
    CNI_PATH: BIN,
  };
  const ip = `10.250.${(i >> 8) & 255}.${i & 255}`;
  const conf = JSON.stringify({
    cniVersion: '1.1.0',
    name: 'hq',
    type: 'endpoint',
    agentConfig: s.config,
    args: { cni: { labels: [{ key: 'app', value: `app-${i % 10}` }] } },
    prevResult: {
      cniVersion: '1.1.0',
      interfaces: [{ name: 'br0' }, { name: `veth${i}` }, { name: 'eth0', sandbox: nsPath(ns) }],
      ips: [{ interface: 2, address: `${ip}/16` }],
    },
  });
  const t = performance.now();
  const code = await new Promise<number | null>((resolve) => {
    const p = spawn('nsenter', [`--net=${nsPath(ns)}`, '--', path.join(BIN, 'endpoint')], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.on('exit', (c) => {
      if (c !== 0) console.error(`endpoint ${command} ${i}: ${out}`);
      resolve(c);
    });
    p.stdin.end(conf);
  });
  const dt = performance.now() - t;
  if (code !== 0) throw new Error(`endpoint ${command} failed`);
  return dt;
}

/** Run a plugin process (env + stdin) inside the bench host netns; its parsed stdout. */
async function plugin(
  name: string,
  command: string,
  containerId: string,
  netns: string,
  conf: unknown,
  args = '',
): Promise<Record<string, unknown>> {
  const env = {
    ...process.env,
    CNI_COMMAND: command,
    CNI_CONTAINERID: containerId,
    CNI_NETNS: netns,
    CNI_IFNAME: 'eth0',
    CNI_ARGS: args,
    CNI_PATH: BIN,
  };
  const out = await new Promise<string>((resolve, reject) => {
    const p = spawn('nsenter', [`--net=${nsPath(ns)}`, '--', path.join(BIN, name)], { env, stdio: ['pipe', 'pipe', 'inherit'] });
    let o = '';
    p.stdout.on('data', (d: Buffer) => (o += d.toString()));
    p.on('exit', (c) => (c === 0 ? resolve(o) : reject(new Error(`${name} ${command}: ${o}`))));
    p.stdin.end(JSON.stringify(conf));
  });
  return out ? (JSON.parse(out) as Record<string, unknown>) : {};
}

/** iperf3 between two pods on one bridge, both selected by policy, then with the table deleted. */
async function iperf(s: Setup): Promise<string> {
  const pods = [`${id}-p1`, `${id}-p2`];
  await netnsBatch('add', pods);
  try {
    const store = await openStore({ type: 'file', path: s.storeDir });
    await store.put({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'bench', labels: { team: 'bench' } } });
    await store.put({
      apiVersion: 'networking.k8s.io/v1',
      kind: 'NetworkPolicy',
      metadata: { name: 'iperf', namespace: 'bench' },
      spec: {
        podSelector: { matchLabels: { app: 'iperf' } },
        policyTypes: ['Ingress', 'Egress'],
        ingress: [{ from: [{ podSelector: { matchLabels: { app: 'iperf' } } }], ports: [{ port: 5201 }] }],
        egress: [{ to: [{ podSelector: { matchLabels: { app: 'iperf' } } }] }],
      },
    });
    await store.close();
    const ips: string[] = [];
    for (const p of pods) {
      const br = await plugin('bridge', 'ADD', p, nsPath(p), {
        cniVersion: '1.1.0',
        name: 'hq',
        type: 'bridge',
        bridge: `${id}br`.slice(0, 15),
        isGateway: true,
        ipam: { type: 'host-local', subnet: '10.251.0.0/24', dataDir: path.join(dir, 'ipam') },
      });
      await plugin(
        'endpoint',
        'ADD',
        p,
        nsPath(p),
        {
          cniVersion: '1.1.0',
          name: 'hq',
          type: 'endpoint',
          agentConfig: s.config,
          args: { cni: { labels: { app: 'iperf' } } },
          prevResult: br,
        },
        `K8S_POD_NAMESPACE=bench;K8S_POD_NAME=${p}`,
      );
      ips.push(String((br.ips as Array<{ address: string }>)[0]!.address).split('/')[0]);
    }
    const server = spawn('nsenter', [`--net=${nsPath(pods[1]!)}`, '--', 'iperf3', '-s'], { stdio: 'ignore' });
    await sleep(500);
    const run = async (): Promise<number> => {
      const r = await sh('nsenter', [`--net=${nsPath(pods[0]!)}`, '--', 'iperf3', '-c', ips[1]!, '-t', '5', '-J']);
      return (JSON.parse(r.stdout) as { end: { sum_received: { bits_per_second: number } } }).end.sum_received.bits_per_second / 1e9;
    };
    const rows: Array<[string, number]> = [];
    try {
      rows.push(['through the policy table (both pods selected)', await run()]);
      await sh('nsenter', [`--net=${nsPath(ns)}`, '--', 'nft', 'delete', 'table', 'inet', `${table}_big`.slice(0, 60)]);
      rows.push(['no policy table', await run()]);
    } finally {
      server.kill('SIGTERM');
    }
    return `iperf3 single stream, 5 s, pod to pod on one bridge (Gbit/s):\n\n${mdTable(
      ['path', 'Gbit/s'],
      rows.map(([k, v]) => [k, v.toFixed(1)]),
    )}\n\nratio with policy / without: ${(rows[0]![1] / rows[1]![1]).toFixed(2)}`;
  } finally {
    await netnsBatch('del', pods);
  }
}

/** On-CPU time of every thread of `pid` so far, ms (schedstat: ns, not the 10 ms ticks of /proc/PID/stat). */
function cpuMs(pid: number): number {
  let ns = 0;
  for (const t of readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(readFileSync(`/proc/${pid}/task/${t}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      /* thread gone */
    }
  }
  return ns / 1e6;
}

const APPLIED = /^(\S+) info agent: policy \([^\n]*(?:replaced|updated) table[^\n]*$/m;

/** Store write (in-process put, as cnictl's) → the agent's log says applied; CPU per change; the agent's own breakdown. */
async function applyOnly(s: Setup, agentPid: number, logOf: () => string): Promise<string> {
  const fromWrite: number[] = [];
  const toCommit: number[] = [];
  const toEvent: number[] = [];
  const cpu: number[] = [];
  const steps = new Map<string, number[]>();
  const store = await openStore({ type: 'file', path: s.storeDir });
  try {
    for (let i = 0; i < CHANGES; i++) {
      const c0 = cpuMs(agentPid);
      const mark = logOf().length;
      const name = `only-${i}`;
      await store.put({
        apiVersion: 'networking.k8s.io/v1',
        kind: 'NetworkPolicy',
        metadata: { name, namespace: `ns-${i % 20}` },
        spec: {
          podSelector: { matchLabels: { app: `app-${i % 10}` } },
          ingress: [{ from: [{ podSelector: { matchLabels: { tier: `tier-${i % 3}` } } }], ports: [{ port: 9100 + i }] }],
        },
      });
      const tw = Date.now();
      let line: RegExpExecArray | null = null;
      const deadline = Date.now() + 20_000;
      while (!(line = APPLIED.exec(logOf().slice(mark)))) {
        if (Date.now() > deadline) throw new Error('no apply after a write');
        await sleep(1);
      }
      fromWrite.push(Date.parse(line[1]!) - tw);
      // the table is enforced when the nft transaction commits: before the state file write the log line waits for
      const stateWall = Number(/\bstate ([\d.]+)/.exec(line[0])?.[1] ?? 0);
      toCommit.push(Date.parse(line[1]!) - stateWall - tw);
      const ev = new RegExp(`^(\\S+) info agent: policy: put NetworkPolicy ns-${i % 20}/${name} `, 'm').exec(logOf().slice(mark));
      if (ev) toEvent.push(Date.parse(ev[1]!) - tw);
      for (const m of /\(([a-z_]+ [\d.]+(?:, [a-z_]+ [\d.]+)*)\) \[/.exec(line[0])?.[1]?.split(', ') ?? []) {
        const [k, v] = m.split(' ');
        steps.set(k!, [...(steps.get(k!) ?? []), Number(v)]);
      }
      await sleep(300); // every reconciler settles (the services and DNS watches read the store too)
      cpu.push(cpuMs(agentPid) - c0);
    }
  } finally {
    await store.close();
  }
  const row = (label: string, xs: number[]): string[] => {
    const st = stats(xs);
    return [label, ms(st.median), ms(st.p95), ms(st.max)];
  };
  const load = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  return `\n### Apply → enforce alone (${CHANGES} policy changes; load average ${load})\n\n${mdTable(
    ['measure', 'p50 ms', 'p95 ms', 'max ms'],
    [
      row('store write committed → table applied (agent log)', fromWrite),
      row('store write committed → nft transaction committed (log time − state write)', toCommit),
      row('store write committed → watch event logged', toEvent),
      row("agent CPU time per change (all threads, incl. the other reconcilers' store reads)", cpu),
      ...[...steps.entries()].map(([k, v]) => row(`agent pass: ${k.replace(/_cpu$/, '')} (${k.endsWith('_cpu') ? 'CPU' : 'wall'})`, v)),
    ],
  )}`;
}

async function main(): Promise<void> {
  await netnsBatch('add', [ns]);
  await sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
  let agent: ReturnType<typeof spawn> | undefined;
  try {
    // ---- ADD latency, empty store
    const empty = setup('empty');
    const addEmpty: number[] = [];
    const delEmpty: number[] = [];
    if (ONLY !== 'apply') {
      for (let i = 0; i < ITER; i++) addEmpty.push(await endpointRun(empty, 'ADD', i));
      for (let i = 0; i < ITER; i++) delEmpty.push(await endpointRun(empty, 'DEL', i));
    }

    // ---- the scale store
    const big = setup('big');
    const o = scaleObjects(N_EP, N_POL);
    let t = performance.now();
    // BENCH_POLICY_STORE_CACHE=FILE: the populated store document, kept for reruns (one put each takes minutes on a loaded host)
    const cache = process.env.BENCH_POLICY_STORE_CACHE;
    if (cache && existsSync(cache)) copyFileSync(cache, path.join(big.storeDir, 'objects.json'));
    else {
      await populate(big, [...o.namespaces, ...o.endpoints, ...o.policies, ...o.anps, ...(o.banp ? [o.banp] : [])]);
      if (cache) copyFileSync(path.join(big.storeDir, 'objects.json'), cache);
    }
    console.log(
      `store populated: ${o.endpoints.length} endpoints, ${o.policies.length} policies, ${o.anps.length} ANP, BANP, ${o.namespaces.length} namespaces in ${ms(performance.now() - t)} ms (one put each)`,
    );

    // ---- agent
    let log = '';
    agent = spawn(
      'nsenter',
      [`--net=${nsPath(ns)}`, '--', path.join(BIN, 'cni-ts'), 'agent', '--config', big.config, '--no-http', '--resync', RESYNC],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, CNI_LOG_LEVEL: 'info' }, // CNI_TS_POLICY_INCREMENTAL=0 passes through: the agent without its session (before/after)
      },
    );
    agent.stdout!.on('data', (d: Buffer) => (log += d.toString()));
    agent.stderr!.on('data', (d: Buffer) => (log += d.toString()));
    t = performance.now();
    while (!/policy \([^\n]*(replaced|updated) table/.test(log)) {
      if (performance.now() - t > 60_000) throw new Error(`agent did not apply: ${log}`);
      await sleep(20);
    }
    console.log(
      `agent: first table in ${ms(performance.now() - t)} ms from start: ${/policy \([^\n]*((replaced|updated) table[^\n]*)/.exec(log)?.[1]}`,
    );

    if (ONLY === 'apply') {
      await sleep(1000);
      console.log(await applyOnly(big, agent.pid!, () => log));
      return;
    }
    // ---- ADD latency, full store (the agent is running: it reacts to each, as in production)
    const addBig: number[] = [];
    const delBig: number[] = [];
    for (let i = 0; i < ITER; i++) addBig.push(await endpointRun(big, 'ADD', 1000 + i));
    for (let i = 0; i < ITER; i++) delBig.push(await endpointRun(big, 'DEL', 1000 + i));
    await sleep(1500);

    // ---- store write (cnictl apply) -> enforcement
    const fromWrite: number[] = [];
    const cnictlMs: number[] = [];
    const manifest = path.join(dir, 'np.json');
    for (let i = 0; i < Math.max(ITER, CHANGES); i++) {
      writeFileSync(
        manifest,
        JSON.stringify({
          apiVersion: 'networking.k8s.io/v1',
          kind: 'NetworkPolicy',
          metadata: { name: `bench-${i}`, namespace: `ns-${i % 20}` },
          spec: {
            podSelector: { matchLabels: { app: `app-${i % 10}` } },
            ingress: [{ from: [{ podSelector: { matchLabels: { tier: `tier-${i % 3}` } } }], ports: [{ port: 9000 + i }] }],
          },
        }),
      );
      const mark = log.length;
      const t0 = Date.now();
      const c0 = performance.now();
      await sh(path.join(BIN, 'cnictl'), ['--config', big.config, 'apply', '-f', manifest]);
      cnictlMs.push(performance.now() - c0);
      let line: RegExpExecArray | null = null;
      const deadline = Date.now() + 20_000;
      while (!(line = APPLIED.exec(log.slice(mark)))) {
        if (Date.now() > deadline) throw new Error('no apply after a write');
        await sleep(2);
      }
      fromWrite.push(Date.parse(line[1]!) - t0);
      await sleep(300); // let the resulting pass settle before the next write
    }
    const status = readFileSync(`/proc/${agent.pid}/status`, 'utf8');
    const api = await askAgent(path.join(dir, 'big', 'agent.sock'), { type: 'status' });
    const heap = api.ok && api.type === 'status' ? api.status.memory.heapUsed : NaN;
    const kb = (k: string): number => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(status)?.[1] ?? 0) / 1024;
    const sW = stats(fromWrite);
    const sC = stats(cnictlMs);
    const lat = (xs: number[]): string[] => {
      const s = stats(xs);
      return [ms(s.median), ms(s.p95), ms(s.max)];
    };
    console.log(
      `\n## Policy agent (${N_EP} endpoints, ${N_POL} NetworkPolicies + ${o.anps.length} ANP + BANP, file store; ${ITER} iterations)\n`,
    );
    console.log(
      mdTable(
        ['measure', 'p50 ms', 'p95 ms', 'max ms'],
        [
          ['`cnictl apply` start → table applied (agent log)', ms(sW.median), ms(sW.p95), ms(sW.max)],
          ['`cnictl apply` process alone', ms(sC.median), ms(sC.p95), ms(sC.max)],
          ['endpoint ADD, empty store', ...lat(addEmpty)],
          ['endpoint DEL, empty store', ...lat(delEmpty)],
          [`endpoint ADD, ${N_EP} endpoints / ${N_POL} policies`, ...lat(addBig)],
          [`endpoint DEL, ${N_EP} endpoints / ${N_POL} policies`, ...lat(delBig)],
        ],
      ),
    );
    console.log(await applyOnly(big, agent.pid!, () => log));
    console.log(
      `\nagent memory: VmRSS ${kb('VmRSS').toFixed(0)} MiB, VmHWM (peak) ${kb('VmHWM').toFixed(0)} MiB, V8 heap in use ${heap} MiB`,
    );
    // ---- throughput through the policy (two policed pods on one bridge) vs no policy table
    if (!process.env.BENCH_POLICY_NO_IPERF) {
      agent.kill('SIGTERM');
      await new Promise((r) => agent!.once('exit', r));
      console.log(`\n${await iperf(big)}`);
    }
    console.log(`last apply: ${/(?:replaced|updated) table[^\n]*/.exec(log.slice(-3000))?.[0] ?? ''}`);
  } finally {
    if (agent && agent.exitCode === null && agent.signalCode === null) {
      agent.kill('SIGTERM');
      await new Promise((r) => agent!.once('exit', r));
    }
    await netnsBatch('del', [ns]);
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
