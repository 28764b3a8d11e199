/**
 * Run the built `cnitool` as an operator or e2e test does, inside a "host" network namespace
 * the test owns, so bridges, iptables/nft rules and sysctls the plugins make live and die
 * with the test. `makeTestbed` gives each test its own conf dir, cache dir, IPAM dataDir,
 * host netns, bridge name and subnet, all removed by `cleanup.run()`.
 */
import { execa } from 'execa';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Cleanup, makeNetns, type TestNetns } from './netns.ts';
import { BIN, toPluginRun, uid } from './run.ts';

export interface CnitoolRun {
  exitCode: number;
  stdout: string;
  stderr: string;
  /** stdout parsed as JSON, when it is JSON */
  json: Record<string, unknown> | undefined;
}

export interface CnitoolEnv {
  confDir: string;
  cacheDir: string;
  /** CNI_PATH (default dist/bin) */
  cniPath?: string;
  /** run cnitool (and so every plugin) inside this netns */
  hostNetns?: string;
  env?: Record<string, string | undefined>;
  /** directory holding cnitool (default dist/bin) */
  binDir?: string;
}

export async function runCnitool(args: string[], e: CnitoolEnv): Promise<CnitoolRun> {
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
    NETCONFPATH: e.confDir,
    CNI_CACHE_DIR: e.cacheDir,
    CNI_PATH: e.cniPath ?? BIN,
  };
  if (process.env.CNI_TS_NETLINK !== undefined) env.CNI_TS_NETLINK = process.env.CNI_TS_NETLINK; // vitest.fallback.config.ts
  for (const [k, v] of Object.entries(e.env ?? {})) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  const exe = path.join(e.binDir ?? BIN, 'cnitool');
  const [cmd, argv] = e.hostNetns ? ['nsenter', [`--net=${e.hostNetns}`, '--', exe, ...args]] : [exe, args];
  return toPluginRun(await execa(cmd, argv, { env, extendEnv: false, reject: false }));
}

export interface Testbed {
  /** unique prefix of everything this testbed makes */
  id: string;
  dir: string;
  confDir: string;
  cacheDir: string;
  dataDir: string;
  /** the netns standing in for the host: bridges and firewall rules are made here */
  host: TestNetns;
  bridge: string;
  /** a /24 such as 10.123.45.0/24 */
  subnet: string;
  gateway: string;
  cniPath: string;
  /** write a config file into confDir */
  writeConf(file: string, conf: unknown): string;
  /** a new container netns (removed by cleanup) */
  container(): Promise<TestNetns>;
  cnitool(args: string[], env?: Record<string, string | undefined>): Promise<CnitoolRun>;
}

export async function makeTestbed(cleanup: Cleanup, opts: { cniPath?: string; prefix?: string } = {}): Promise<Testbed> {
  const id = uid(opts.prefix ?? 'ct');
  const dir = path.join('/run', `cnits-${id}`);
  mkdirSync(path.join(dir, 'net.d'), { recursive: true });
  cleanup.add(async () => rmSync(dir, { recursive: true, force: true }));
  const host = await makeNetns(cleanup, `cnits-${id}-h`);
  await execa('nsenter', [`--net=${host.path}`, '--', 'ip', 'link', 'set', 'lo', 'up']);
  // never 10.96.x: the service CIDR the agent tests use (10.96.0.0/16) would overlap the pods'
  // subnet, and a pod would keep a route to a peer through it (seen: diag's "deleted route" case)
  const r = 1 + Math.floor(Math.random() * 250);
  const b = r === 96 ? 97 : r;
  const c = 1 + Math.floor(Math.random() * 250);
  const tb: Testbed = {
    id,
    dir,
    confDir: path.join(dir, 'net.d'),
    cacheDir: path.join(dir, 'cache'),
    dataDir: path.join(dir, 'ipam'),
    host,
    bridge: `br${id}`.slice(0, 15),
    subnet: `10.${b}.${c}.0/24`,
    gateway: `10.${b}.${c}.1`,
    cniPath: opts.cniPath ?? BIN,
    writeConf(file, conf) {
      const p = path.join(tb.confDir, file);
      writeFileSync(p, typeof conf === 'string' ? conf : JSON.stringify(conf, null, 2));
      return p;
    },
    container: () => makeNetns(cleanup, `cnits-${id}-c`),
    cnitool: (args, env) =>
      runCnitool(args, { confDir: tb.confDir, cacheDir: tb.cacheDir, cniPath: tb.cniPath, hostNetns: host.path, env }),
  };
  return tb;
}

/** A bridge + host-local network for `tb` (the peers' config keys), as a plugin list. */
export function bridgePlugin(tb: Testbed, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    type: 'bridge',
    bridge: tb.bridge,
    isGateway: true,
    ipam: { type: 'host-local', subnet: tb.subnet, dataDir: tb.dataDir },
    ...extra,
  };
}

/**
 * '' when our built `names` are real plugins; otherwise why not (not registered in
 * names.ts yet, or still a placeholder), for `it.skipIf`.
 */
export async function oursMissing(names: string[], binDir = BIN): Promise<string> {
  const missing: string[] = [];
  for (const n of names) {
    const r = await execa(path.join(binDir, n), ['--help'], { reject: false, env: { PATH: process.env.PATH ?? '' }, extendEnv: false });
    const text = `${String(r.stdout)}${String(r.stderr)}`;
    if (r.exitCode !== 0 || /placeholder|invoke it as one of/i.test(text)) missing.push(n);
  }
  return missing.length ? `our ${missing.join(', ')} not implemented yet (placeholder or not registered in ${binDir})` : '';
}
