/**
 * `cni-ts dhcp daemon [-socketpath PATH]` (default /run/cni/dhcp.sock, the reference's path;
 * `--socket PATH` too): leases for the `dhcp` IPAM plugin. One JSON request per connection,
 * one JSON answer: `{"op":"allocate"|"release"|"check", "id", "netns", "ifname"}`. Each lease
 * is a `dhcp client` child process inside the container's netns (nsenter), which renews it
 * and releases it when the daemon stops it. Not the reference's Go net/rpc (gob) protocol:
 * the Go `dhcp` plugin cannot talk to this daemon, nor ours to the Go daemon.
 */
import { mkdirSync, rmSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { spawnInNetns } from '../../shared/kernel/netns.ts';
import type { Lease } from './packet.ts';

export const DEFAULT_SOCKET = '/run/cni/dhcp.sock';

export interface DaemonRequest {
  op: 'allocate' | 'release' | 'check';
  id: string;
  netns?: string;
  ifname?: string;
}
export interface DaemonAnswer {
  ok: boolean;
  lease?: Lease;
  error?: string;
}

interface Held {
  child: ChildProcess;
  lease: Lease;
}

function argOf(argv: string[], ...names: string[]): string | undefined {
  for (const n of names) {
    const i = argv.indexOf(n);
    if (i >= 0) return argv[i + 1];
  }
  return undefined;
}

export async function dhcpDaemonMain(argv: string[]): Promise<number> {
  const socketPath = argOf(argv, '-socketpath', '--socketpath', '--socket') ?? DEFAULT_SOCKET;
  const timeoutMs = argOf(argv, '--timeout-ms') ?? '10000';
  const held = new Map<string, Held>();
  const log = (s: string): void => void process.stderr.write(`dhcp daemon: ${s}\n`);

  function startClient(req: DaemonRequest): Promise<Held> {
    return new Promise((resolve, reject) => {
      const child = spawnInNetns(String(req.netns), [
        process.execPath,
        'dhcp',
        'client',
        '--ifname',
        req.ifname ?? 'eth0',
        '--client-id',
        req.id,
        '--timeout-ms',
        timeoutMs,
      ]);
      let out = '';
      let err = '';
      child.stderr!.on('data', (d: Buffer) => {
        err += d.toString();
        for (const l of d.toString().split('\n').filter(Boolean)) log(`[${req.id}] ${l}`);
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
        if (held.get(req.id)?.child === child) held.delete(req.id);
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

  async function handle(req: DaemonRequest): Promise<DaemonAnswer> {
    if (req.op === 'allocate') {
      if (!req.netns) return { ok: false, error: 'netns is required' };
      await stop(req.id); // a repeated ADD: a fresh lease
      const h = await startClient(req);
      held.set(req.id, h);
      log(`[${req.id}] leased ${h.lease.address}/${h.lease.prefix} from ${h.lease.server}`);
      return { ok: true, lease: h.lease };
    }
    if (req.op === 'release') {
      await stop(req.id);
      return { ok: true };
    }
    const h = held.get(req.id);
    return h ? { ok: true, lease: h.lease } : { ok: false, error: `no lease for ${req.id}` };
  }

  mkdirSync(path.dirname(socketPath), { recursive: true });
  rmSync(socketPath, { force: true });
  const server = net.createServer((c) => {
    let buf = '';
    c.on('data', (d) => {
      buf += d.toString();
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      let req: DaemonRequest;
      try {
        req = JSON.parse(buf.slice(0, nl)) as DaemonRequest;
      } catch {
        c.end(`${JSON.stringify({ ok: false, error: 'bad request' })}\n`);
        return;
      }
      handle(req).then(
        (a) => c.end(`${JSON.stringify(a)}\n`),
        (e: unknown) => c.end(`${JSON.stringify({ ok: false, error: e instanceof Error ? e.message : String(e) })}\n`),
      );
    });
    c.on('error', () => undefined);
  });
  await new Promise<void>((res) => server.listen(socketPath, res));
  log(`listening on ${socketPath}`);
  return new Promise<number>((resolve) => {
    const quit = (): void => {
      server.close();
      void Promise.all([...held.keys()].map(stop)).then(() => {
        rmSync(socketPath, { force: true });
        resolve(0);
      });
    };
    process.once('SIGTERM', quit);
    process.once('SIGINT', quit);
  });
}

/** One request to the daemon at `socketPath`. */
export function askDaemon(socketPath: string, req: DaemonRequest, timeoutMs = 60000): Promise<DaemonAnswer> {
  return new Promise((resolve, reject) => {
    const c = net.createConnection(socketPath);
    let buf = '';
    const t = setTimeout(() => {
      c.destroy();
      reject(new Error(`no answer from the dhcp daemon at ${socketPath}`));
    }, timeoutMs);
    c.on('connect', () => c.write(`${JSON.stringify(req)}\n`));
    c.on('data', (d) => (buf += d.toString()));
    c.on('end', () => {
      clearTimeout(t);
      try {
        resolve(JSON.parse(buf) as DaemonAnswer);
      } catch {
        reject(new Error(`bad answer from the dhcp daemon: ${buf.slice(0, 200)}`));
      }
    });
    c.on('error', (e) => {
      clearTimeout(t);
      reject(e);
    });
  });
}
