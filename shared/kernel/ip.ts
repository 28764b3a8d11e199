/**
 * iproute2 through its machine-readable faces: `ip -json` for reading, `ip -batch -` for
 * writing many changes in one process.
 */
import { batchable, batchScript } from './batch.ts';
import { run, type RunResult } from './exec.ts';

export interface LinkInfo {
  ifindex: number;
  ifname: string;
  flags: string[];
  mtu: number;
  operstate?: string;
  address?: string;
  link?: string;
  link_index?: number;
  master?: string;
  link_netnsid?: number;
  linkinfo?: { info_kind?: string; info_slave_kind?: string; info_data?: Record<string, unknown>; info_slave_data?: Record<string, unknown> };
  addr_info?: AddrInfo[];
  [k: string]: unknown;
}

export interface AddrInfo {
  family: 'inet' | 'inet6';
  local: string;
  prefixlen: number;
  scope?: string;
  dynamic?: boolean;
  tentative?: boolean;
  dadfailed?: boolean;
  [k: string]: unknown;
}

export interface RouteInfo {
  dst: string;
  gateway?: string;
  dev?: string;
  protocol?: string;
  scope?: string;
  metric?: number;
  table?: string;
  mtu?: number;
  flags?: string[];
  [k: string]: unknown;
}

export async function ipJson<T>(args: string[], netns?: string): Promise<T> {
  const r = await run('ip', ['-json', ...args], { netns });
  const text = r.stdout.trim();
  return (text ? JSON.parse(text) : []) as T;
}

/** Details of one link, or undefined when it does not exist. */
export async function getLink(name: string, netns?: string): Promise<LinkInfo | undefined> {
  const r = await run('ip', ['-json', '-details', 'addr', 'show', 'dev', name], { netns, allowFail: true });
  if (r.exitCode !== 0) return undefined;
  const list = JSON.parse(r.stdout || '[]') as LinkInfo[];
  return list[0];
}

export async function listLinks(netns?: string): Promise<LinkInfo[]> {
  return ipJson<LinkInfo[]>(['-details', 'addr', 'show'], netns);
}

/**
 * Run several `ip` commands (each an argv without the leading "ip") in one process. Every
 * argument must be one plain word (`batchToken`: code 100 otherwise, before anything runs).
 */
export async function ipBatch(cmds: string[][], netns?: string): Promise<void> {
  if (!cmds.length) return;
  await run('ip', ['-batch', '-'], { input: batchScript(cmds, 'ip -batch'), netns });
}

/** Several `bridge` commands (argv without "bridge": `fdb ...`, `vlan ...`) in one process, checked like `ipBatch`. */
export async function bridgeBatch(cmds: string[][], netns?: string): Promise<void> {
  if (!cmds.length) return;
  await run('bridge', ['-batch', '-'], { input: batchScript(cmds, 'bridge -batch'), netns });
}

export async function routes(family: 4 | 6, netns?: string, extra: string[] = []): Promise<RouteInfo[]> {
  return ipJson<RouteInfo[]>([`-${family}`, 'route', 'show', ...extra], netns);
}

/**
 * `ip -json ARGS` read that tolerates failure (a link or namespace gone): the parsed list, or
 * undefined when `ip` failed.
 */
export async function ipJsonMaybe<T>(args: string[], netns?: string): Promise<T | undefined> {
  const r = await run('ip', ['-json', ...args], { netns, allowFail: true });
  if (r.exitCode !== 0) return undefined;
  return JSON.parse(r.stdout.trim() || '[]') as T;
}

/** `bridge -json ARGS`, like `ipJsonMaybe`. */
export async function bridgeJsonMaybe<T>(args: string[], netns?: string): Promise<T | undefined> {
  const r = await run('bridge', ['-json', ...args], { netns, allowFail: true });
  if (r.exitCode !== 0) return undefined;
  return JSON.parse(r.stdout.trim() || '[]') as T;
}

/**
 * `ip -json -batch -`: several commands in one process whose JSON output (of the `show`
 * commands among them) is returned as text (one JSON document per line).
 */
export async function ipBatchJson(cmds: string[][], netns?: string): Promise<string> {
  return (await run('ip', ['-json', '-batch', '-'], { netns, input: batchScript(cmds, 'ip -batch') })).stdout;
}

/**
 * Run `ip` commands in order, stopping at the first failure: in one `ip -batch` process when
 * every argument is a plain word (`batchable`), else one process each with argv (an odd alias
 * or path: argv carries any byte, the batch parser would split or cut it).
 */
export async function ipSequence(cmds: string[][], netns?: string): Promise<void> {
  if (!cmds.length) return;
  if (batchable(cmds)) {
    await ipBatch(cmds, netns);
    return;
  }
  for (const c of cmds) await run('ip', c, { netns });
}

/** One `ip` command with argv (any byte in a value); throws on failure, or returns the outcome with allowFail. */
export async function ipCommand(args: string[], opts: { netns?: string; allowFail?: boolean } = {}): Promise<RunResult> {
  return run('ip', args, opts);
}

/** The routes `ip route get ADDRESS` picks; undefined when there is none or `ip` fails. */
export async function routeGet(address: string): Promise<RouteInfo[] | undefined> {
  const r = await run('ip', ['-json', 'route', 'get', address], { allowFail: true });
  if (r.exitCode !== 0) return undefined;
  try {
    return JSON.parse(r.stdout || '[]') as RouteInfo[];
  } catch {
    return undefined;
  }
}
