/** Run the built executables exactly as a runtime does: environment + config on stdin. */
import { execa } from 'execa';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const BIN = path.join(ROOT, 'dist', 'bin');
export const REF_BIN = '/usr/lib/cni';

export interface PluginRun {
  exitCode: number;
  stdout: string;
  stderr: string;
  /** stdout parsed as JSON, when it is JSON */
  json: Record<string, unknown> | undefined;
}

export interface RunArgs {
  command: string;
  containerId?: string;
  netns?: string;
  ifname?: string;
  args?: string;
  path?: string;
  /** the config object, or raw text for stdin */
  config?: unknown;
  env?: Record<string, string | undefined>;
  /** directory holding the executable (default dist/bin) */
  binDir?: string;
  /** run it inside this network namespace (a "host" of a multi-host test) via nsenter */
  hostNetns?: string;
  /** run the executable under this command line (e.g. `['strace', '-o', file]`) */
  wrap?: string[];
}

/** The outcome of a plugin or tool process, stdout parsed as JSON when it is JSON. */
export function toPluginRun(r: { exitCode?: number; stdout?: unknown; stderr?: unknown }): PluginRun {
  let json: Record<string, unknown> | undefined;
  try {
    json = JSON.parse(String(r.stdout)) as Record<string, unknown>;
  } catch {
    json = undefined;
  }
  return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr), json };
}

export async function runPlugin(name: string, a: RunArgs): Promise<PluginRun> {
  const env: Record<string, string> = { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin' };
  const set = (k: string, v: string | undefined): void => {
    if (v !== undefined) env[k] = v;
  };
  set('CNI_COMMAND', a.command);
  set('CNI_CONTAINERID', a.containerId);
  set('CNI_NETNS', a.netns);
  set('CNI_IFNAME', a.ifname);
  set('CNI_ARGS', a.args);
  set('CNI_PATH', a.path ?? BIN);
  set('CNI_TS_NETLINK', process.env.CNI_TS_NETLINK); // vitest.fallback.config.ts: the ip/nsenter/flock path
  for (const [k, v] of Object.entries(a.env ?? {})) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  const input = a.config === undefined ? '' : typeof a.config === 'string' ? a.config : JSON.stringify(a.config);
  const exe = path.join(a.binDir ?? BIN, name);
  const line = [...(a.hostNetns ? ['nsenter', `--net=${a.hostNetns}`, '--'] : []), ...(a.wrap ?? []), exe];
  const [cmd, argv] = [line[0], line.slice(1)];
  return toPluginRun(await execa(cmd, argv, { input, env, extendEnv: false, reject: false }));
}

/** A short unique prefix for test resources (interface names are at most 15 characters). */
export function uid(prefix = 't'): string {
  return `${prefix}${randomBytes(3).toString('hex')}`;
}

/**
 * A random port for a test server on loopback or in a test netns, below the kernel's ephemeral
 * range (32768–60999 here), so no client socket of another test holds it; `port + 1` is free
 * to use too (etcd's peer port).
 */
export function testPort(): number {
  return 20000 + 2 * Math.floor(Math.random() * 6000);
}

/** Signal every process whose command line names `needle` (e.g. a test's private directory:
 * its dockerd, containerd and shims), by PID; returns the PIDs found. */
export function killProcessesNaming(needle: string, sig: NodeJS.Signals): number[] {
  const pids: number[] = [];
  for (const p of readdirSync('/proc').filter((x) => /^\d+$/.test(x))) {
    let cmd: string;
    try {
      cmd = readFileSync(`/proc/${p}/cmdline`, 'utf8');
    } catch {
      continue;
    }
    if (Number(p) !== process.pid && cmd.includes(needle)) {
      pids.push(Number(p));
      try {
        process.kill(Number(p), sig);
      } catch {
        /* gone */
      }
    }
  }
  return pids;
}
