/**
 * `cni-ts dhcp daemon [-socketpath PATH]` (default /run/cni/dhcp.sock, the reference's path;
 * `--socket PATH` too; `-hostprefix P` as the reference's): leases for the `dhcp` IPAM plugin,
 * on the reference's protocol, Go net/rpc over HTTP CONNECT with gob (rpc.ts), so the Go
 * `dhcp` plugin can use this daemon and ours the Go daemon. Methods, as the reference's:
 * `DHCP.Allocate(skel.CmdArgs) → types100.Result` (an existing lease for the same client id
 * is answered again, as the reference since 1.2) and `DHCP.Release(skel.CmdArgs) → struct{}`.
 * The client id is the reference's: `<ContainerID>/<network name>/<IfName>` (254 bytes at
 * most). Each lease is a `dhcp client` child process inside the container's netns (nsenter),
 * which renews it and releases it when the daemon stops it.
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { spawnInNetns } from '../../shared/kernel/netns.ts';
import type { GobValue } from './gob.ts';
import { planArgs, prepareOptions, type Lease, type OptionPlan, type ProvideOption, type RequestOption } from './packet.ts';
import { leaseResult, toGoResult } from './result.ts';
import { CmdArgsT, EmptyT, ResultT, rpcConnectionHandler, type CmdArgs } from './rpc.ts';

export const DEFAULT_SOCKET = '/run/cni/dhcp.sock';

interface Held {
  child: ChildProcess;
  lease: Lease;
}

interface NetConf {
  name?: string;
  ipam?: { priority?: number; provide?: ProvideOption[]; request?: RequestOption[] };
}

/** The reference's generateClientID. */
export function clientIdOf(containerId: string, netName: string, ifName: string): string {
  return `${containerId}/${netName}/${ifName}`.slice(0, 254);
}

/** A Go duration ("10s", "1m30s", "500ms", "2h") in ms; undefined if it is not one. */
export function goDurationMs(d: string): number | undefined {
  const unit: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1000, m: 60000, h: 3600000 };
  if (d === '0') return 0;
  const parts = [...d.matchAll(/(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/g)];
  if (!parts.length || parts.map((p) => p[0]).join('') !== d) return undefined;
  return parts.reduce((n, p) => n + Number(p[1]) * unit[p[2]], 0);
}

export interface DaemonFlags {
  socketPath: string;
  hostPrefix: string;
  pidfile?: string;
  /** how long a first lease may take */
  timeoutMs: number;
}

/**
 * The reference's daemon flags, Go `flag` style (`-name value`, `-name=value`, `--name`):
 * -socketpath, -hostprefix, -pidfile; -resendtimeout (how long a first lease may take: ours
 * defaults to 10 s, not the reference's 208 s, so an ADD does not hang); -timeout, -resendmax
 * and -broadcast are accepted (ours resends every 2 s and always sets the broadcast flag).
 * Ours also: --socket PATH, --timeout-ms N.
 */
export function parseDaemonFlags(argv: string[]): DaemonFlags {
  const f: DaemonFlags = { socketPath: DEFAULT_SOCKET, hostPrefix: '', timeoutMs: 10000 };
  const bools = new Set(['broadcast']);
  const takes = new Set(['socketpath', 'socket', 'hostprefix', 'pidfile', 'timeout', 'resendmax', 'resendtimeout', 'timeout-ms']);
  for (let i = 0; i < argv.length; i++) {
    const m = /^--?([a-z-]+)(?:=(.*))?$/.exec(argv[i]);
    if (!m || (!bools.has(m[1]) && !takes.has(m[1]))) throw new Error(`flag provided but not defined: ${argv[i]}`);
    const name = m[1];
    if (bools.has(name)) continue;
    const v = m[2] ?? argv[++i];
    if (v === undefined) throw new Error(`flag needs an argument: -${name}`);
    const dur = (): number => {
      const ms = goDurationMs(v);
      if (ms === undefined) throw new Error(`invalid value "${v}" for flag -${name}: parse error`);
      return ms;
    };
    if (name === 'socketpath' || name === 'socket') f.socketPath = v;
    else if (name === 'hostprefix') f.hostPrefix = v;
    else if (name === 'pidfile') f.pidfile = v;
    else if (name === 'resendtimeout') f.timeoutMs = dur();
    else if (name === 'timeout-ms') f.timeoutMs = Number(v);
    else dur(); // -timeout, -resendmax: checked, not used
  }
  if (f.pidfile && !path.isAbsolute(f.pidfile)) throw new Error(`Error writing pidfile "${f.pidfile}": path not absolute`);
  return f;
}

/** CmdArgs decoded from gob: fields by name, StdinData bytes. */
function cmdArgs(v: Record<string, GobValue>): CmdArgs & { conf: NetConf } {
  const s = (k: string): string => (typeof v[k] === 'string' ? (v[k] as string) : '');
  const stdin = Buffer.isBuffer(v.StdinData) ? v.StdinData : Buffer.alloc(0);
  let conf: NetConf;
  try {
    conf = JSON.parse(stdin.toString('utf8')) as NetConf;
  } catch (e) {
    throw new Error(`error parsing netconf: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
  return {
    ContainerID: s('ContainerID'),
    Netns: s('Netns'),
    IfName: s('IfName'),
    Args: s('Args'),
    Path: s('Path'),
    StdinData: stdin,
    conf,
  };
}

export async function dhcpDaemonMain(argv: string[]): Promise<number> {
  let flags: DaemonFlags;
  try {
    flags = parseDaemonFlags(argv);
  } catch (e) {
    process.stderr.write(`dhcp daemon: ${e instanceof Error ? e.message : String(e)}\n`);
    return 2;
  }
  const { socketPath, hostPrefix, pidfile } = flags;
  const timeoutMs = String(flags.timeoutMs);
  const held = new Map<string, Held>();
  const log = (s: string): void => void process.stderr.write(`dhcp daemon: ${s}\n`);

  function startClient(id: string, netns: string, ifname: string, plan: OptionPlan): Promise<Held> {
    return new Promise((resolve, reject) => {
      const child = spawnInNetns(netns, [
        process.execPath,
        'dhcp',
        'client',
        '--ifname',
        ifname,
        '--client-id',
        id,
        '--timeout-ms',
        timeoutMs,
        ...planArgs(plan),
      ]);
      let out = '';
      let err = '';
      child.stderr!.on('data', (d: Buffer) => {
        err += d.toString();
        for (const l of d.toString().split('\n').filter(Boolean)) log(`[${id}] ${l}`);
      });
      child.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        const nl = out.indexOf('\n');
        if (nl >= 0) {
          try {
            resolve({ child, lease: JSON.parse(out.slice(0, nl)) as Lease });
          } catch (e) {
            reject(e as Error);
          }
        }
      });
      child.on('exit', (code) => {
        if (held.get(id)?.child === child) held.delete(id);
        reject(new Error(err.trim() || `dhcp client exited with ${String(code)}`));
      });
    });
  }

  async function stop(id: string): Promise<void> {
    const h = held.get(id);
    if (!h) return;
    held.delete(id);
    await new Promise<void>((res) => {
      const t = setTimeout(() => {
        h.child.kill('SIGKILL');
        res();
      }, 5000);
      h.child.once('exit', () => {
        clearTimeout(t);
        res();
      });
      h.child.kill('SIGTERM');
    });
  }

  /** Concurrent Allocates for one client id share one acquisition. */
  const acquiring = new Map<string, Promise<Held>>();

  async function allocate(v: Record<string, GobValue>): Promise<unknown> {
    const a = cmdArgs(v);
    const plan = prepareOptions(a.Args ?? '', a.conf.ipam?.provide, a.conf.ipam?.request);
    const id = clientIdOf(a.ContainerID ?? '', a.conf.name ?? '', a.IfName ?? '');
    let h = held.get(id);
    if (!h) {
      if (!a.Netns) throw new Error('netns is required');
      let p = acquiring.get(id);
      if (!p) {
        log(`[${id}] acquiring lease`);
        p = startClient(id, hostPrefix + a.Netns, a.IfName || 'eth0', plan);
        acquiring.set(id, p);
        p.then(
          () => acquiring.delete(id),
          () => acquiring.delete(id),
        );
      }
      h = await p;
      held.set(id, h);
      log(`[${id}] leased ${h.lease.address}/${h.lease.prefix} from ${h.lease.server}`);
    }
    return toGoResult(leaseResult(h.lease, Number(a.conf.ipam?.priority ?? 0)));
  }

  async function release(v: Record<string, GobValue>): Promise<unknown> {
    const a = cmdArgs(v);
    const id = clientIdOf(a.ContainerID ?? '', a.conf.name ?? '', a.IfName ?? '');
    if (held.has(id)) log(`[${id}] releasing lease`);
    await stop(id);
    return {};
  }

  if (pidfile) writeFileSync(pidfile, String(process.pid));
  const sockFile = hostPrefix + socketPath;
  // systemd socket activation, as the reference (go-systemd activation.Listeners): one socket on fd 3
  const activated = process.env.LISTEN_PID === String(process.pid) ? Number(process.env.LISTEN_FDS ?? 0) : 0;
  if (activated > 1) {
    log(`Error getting listener: Too many (${activated}) FDs passed through socket activation`);
    return 1;
  }
  if (!activated) {
    mkdirSync(path.dirname(sockFile), { recursive: true, mode: 0o700 });
    rmSync(sockFile, { force: true });
  }
  const server = net.createServer(
    rpcConnectionHandler(
      {
        'DHCP.Allocate': { args: CmdArgsT, reply: ResultT, call: allocate },
        'DHCP.Release': { args: CmdArgsT, reply: EmptyT, call: release },
      },
      log,
    ),
  );
  await new Promise<void>((res) => (activated ? server.listen({ fd: 3 }, res) : server.listen(sockFile, res)));
  log(activated ? 'listening on the socket systemd passed (fd 3)' : `listening on ${sockFile}`);
  return new Promise<number>((resolve) => {
    const quit = (): void => {
      server.close();
      void Promise.all([...held.keys()].map(stop)).then(() => {
        if (!activated) rmSync(sockFile, { force: true });
        if (pidfile) rmSync(pidfile, { force: true });
        resolve(0);
      });
    };
    process.once('SIGTERM', quit);
    process.once('SIGINT', quit);
  });
}
