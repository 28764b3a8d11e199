/**
 * Multi-host test topology for the overlay plugin (not a test file itself): a "fabric" netns
 * holding the underlay bridge (it also plays the world outside the cluster and runs etcd), and
 * one netns per host with its own underlay address. The plugin runs inside a host namespace
 * exactly as a runtime would run it there: `nsenter --net=<host> dist/bin/overlay`, env + stdin.
 */
import { execa, type ResultPromise } from 'execa';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Cleanup, inNs, makeNetns, sh, type TestNetns } from './helpers/netns.ts';
import { BIN, runPlugin, uid, type PluginRun } from './helpers/run.ts';

export interface Host {
  name: string;
  ns: TestNetns;
  ip: string;
  stateDir: string;
}

export interface Fabric {
  ns: TestNetns;
  /** first three octets of the underlay /24 */
  base: string;
  gateway: string;
  dir: string;
}

export async function makeFabric(cleanup: Cleanup, base = '192.168.231', nsPrefix = 'ovlfab'): Promise<Fabric> {
  const ns = await makeNetns(cleanup, nsPrefix);
  const dir = mkdtempSync(path.join(tmpdir(), 'cnits-ovl-'));
  cleanup.add(async () => rmSync(dir, { recursive: true, force: true }));
  await inNs(ns, 'ip', ['link', 'add', 'ubr0', 'type', 'bridge']);
  await inNs(ns, 'ip', ['addr', 'add', `${base}.254/24`, 'dev', 'ubr0']);
  await inNs(ns, 'ip', ['link', 'set', 'ubr0', 'up']);
  await inNs(ns, 'ip', ['link', 'set', 'lo', 'up']);
  return { ns, base, gateway: `${base}.254`, dir };
}

export async function makeHost(cleanup: Cleanup, fab: Fabric, n: number, nsPrefix = 'ovlh'): Promise<Host> {
  const ns = await makeNetns(cleanup, nsPrefix);
  const ip = `${fab.base}.${n}`;
  const port = `u${n}${uid('')}`.slice(0, 15);
  await inNs(fab.ns, 'ip', ['link', 'add', port, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns.path]);
  await inNs(fab.ns, 'ip', ['link', 'set', port, 'master', 'ubr0', 'up']);
  await sh('ip', ['-n', ns.name, '-batch', '-'], {
    input: [`addr add ${ip}/24 dev eth0`, 'link set eth0 up', 'link set lo up', `route add default via ${fab.gateway}`].join('\n') + '\n',
  });
  return { name: `h${n}`, ns, ip, stateDir: path.join(fab.dir, `h${n}`) };
}

/** Run the overlay plugin inside a host namespace, as a runtime on that host would. */
export async function runOnHost(
  host: Host,
  a: { command: string; containerId?: string; netns?: string; ifname?: string; config: unknown; env?: Record<string, string> },
): Promise<PluginRun> {
  return runPlugin('overlay', { ...a, hostNetns: host.ns.path });
}

export interface Etcd {
  endpoint: string;
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** etcd inside `ns` (or on 127.0.0.1 when ns is undefined) with its own data dir. */
export function makeEtcd(cleanup: Cleanup, dir: string, ns: TestNetns | undefined, ip: string, clientPort: number, peerPort: number): Etcd {
  const data = path.join(dir, `etcd-${uid('')}`);
  let proc: ResultPromise | undefined;
  const endpoint = `http://${ip}:${clientPort}`;
  const args = [
    '--name',
    'ovltest',
    '--data-dir',
    data,
    '--listen-client-urls',
    endpoint,
    '--advertise-client-urls',
    endpoint,
    '--listen-peer-urls',
    `http://127.0.0.1:${peerPort}`,
    '--initial-advertise-peer-urls',
    `http://127.0.0.1:${peerPort}`,
    '--initial-cluster',
    `ovltest=http://127.0.0.1:${peerPort}`,
    '--heartbeat-interval',
    '50',
    '--election-timeout',
    '500',
    '--log-level',
    'info',
    '--logger',
    'zap',
  ];
  const etcd: Etcd = {
    endpoint,
    async start() {
      const [cmd, argv] = ns ? ['nsenter', [`--net=${ns.path}`, '--', '/usr/bin/etcd', ...args]] : ['/usr/bin/etcd', args];
      const p = execa(cmd, argv, { reject: false, stdin: 'ignore', all: true, buffer: false });
      proc = p;
      await new Promise<void>((resolve, reject) => {
        let out = '';
        // a real server start on a loaded CI machine: generous (it resolves the moment etcd says it serves)
        const t = setTimeout(() => reject(new Error(`etcd did not come up: ${out.slice(-2000)}`)), 60_000);
        p.all?.on('data', (d: Buffer) => {
          out += d.toString();
          if (/ready to serve client requests|serving client traffic|serving insecure client requests/.test(out)) {
            clearTimeout(t);
            resolve();
          }
        });
        void p.then(() => {
          clearTimeout(t);
          reject(new Error(`etcd exited: ${out.slice(-2000)}`));
        });
      });
      p.all?.resume();
    },
    async stop() {
      const p = proc;
      proc = undefined;
      if (!p?.pid) return;
      p.kill('SIGTERM');
      await p;
    },
  };
  cleanup.add(async () => {
    await etcd.stop();
    rmSync(data, { recursive: true, force: true });
  });
  return etcd;
}

export interface AgentProc {
  stop(): Promise<void>;
  log(): string;
}

/** `overlay agent --config FILE` inside a host namespace; stopped with SIGTERM. */
export function startAgent(cleanup: Cleanup, host: Host, config: unknown): AgentProc {
  const file = path.join(host.stateDir + '.agent.conflist');
  writeFileSync(file, JSON.stringify(config));
  let out = '';
  const p = execa('nsenter', [`--net=${host.ns.path}`, '--', path.join(BIN, 'overlay'), 'agent', '--config', file], {
    reject: false,
    stdin: 'ignore',
    all: true,
    buffer: false,
    env: { CNI_LOG_LEVEL: 'info' },
  });
  p.all?.on('data', (d: Buffer) => {
    out = (out + d.toString()).slice(-20_000);
  });
  let stopped = false;
  const agent: AgentProc = {
    async stop() {
      if (stopped) return;
      stopped = true;
      p.kill('SIGTERM');
      const t = setTimeout(() => p.kill('SIGKILL'), 5000);
      await p;
      clearTimeout(t);
    },
    log: () => out,
  };
  cleanup.add(() => agent.stop());
  return agent;
}

/** Poll `probe` until it returns true; bounded by attempts, never by a wall-clock assertion. */
export async function eventually(probe: () => Promise<boolean>, attempts = 60, pauseMs = 500): Promise<boolean> {
  for (let i = 0; i < attempts; i++) {
    if (await probe()) return true;
    await new Promise((r) => setTimeout(r, pauseMs));
  }
  return false;
}

/** One echo answered out of up to three sent (a loaded test machine may drop one). */
export async function ping(from: TestNetns, to: string, extra: string[] = []): Promise<boolean> {
  const r = await inNs(from, 'ping', ['-c', '3', '-i', '0.2', '-w', '4', '-W', '2', ...extra, to], true);
  return /\b[1-9]\d* received/.test(r.stdout);
}

/**
 * Attach one pod on `host` as a runtime there would: a fresh netns (lo up), the overlay plugin
 * ADD with `overlayConf`, then the endpoint plugin ADD (identity from `key` = "ns/pod", the
 * host's agent config, `labels`) on the overlay's result. Both must succeed (else it throws
 * with their output). Returns the pod's netns, container ID and IPv4 address.
 */
export async function attachOverlayPod(
  cleanup: Cleanup,
  host: Host,
  o: { nsPrefix: string; containerId: string; key: string; network: string; overlayConf: unknown; agentConfig: string; labels: unknown },
): Promise<{ ns: TestNetns; containerId: string; ip: string; result: Record<string, unknown> | undefined }> {
  const ns = await makeNetns(cleanup, o.nsPrefix);
  await inNs(ns, 'ip', ['link', 'set', 'lo', 'up']);
  const on = { containerId: o.containerId, netns: ns.path, ifname: 'eth0', hostNetns: host.ns.path };
  const ov = await runPlugin('overlay', { command: 'ADD', ...on, config: o.overlayConf });
  if (ov.exitCode !== 0) throw new Error(`overlay ADD ${o.key}: ${ov.stdout} ${ov.stderr}`);
  const [pns, pname] = o.key.split('/');
  const ep = await runPlugin('endpoint', {
    command: 'ADD',
    ...on,
    args: `K8S_POD_NAMESPACE=${pns};K8S_POD_NAME=${pname}`,
    config: {
      cniVersion: '1.1.0',
      name: o.network,
      type: 'endpoint',
      agentConfig: o.agentConfig,
      args: { cni: { labels: o.labels } },
      prevResult: ov.json,
    },
  });
  if (ep.exitCode !== 0) throw new Error(`endpoint ADD ${o.key}: ${ep.stdout} ${ep.stderr}`);
  const ip = String((ov.json?.ips as Array<{ address: string }>)[0]!.address).split('/')[0]!;
  return { ns, containerId: o.containerId, ip, result: ov.json };
}
