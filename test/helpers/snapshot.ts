/**
 * Snapshots of the state a plugin could change, to prove a verb changed nothing: links,
 * addresses, routes (all tables, both families), neighbours and the whole nft ruleset of each
 * network namespace given, every file (and its content) under the directories given, and
 * any extra state a test reads (store keys). Compare two snapshots with `expect(after).toEqual(before)`
 * or `diffSnapshots` for a readable list of what differs.
 */
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import path from 'node:path';
import { inNs, type TestNetns } from './netns.ts';

export interface Snapshot {
  [key: string]: unknown;
}

export interface SnapshotSpec {
  /** namespaces to read; each under its name */
  netns?: TestNetns[];
  /** directories whose files (recursively: type, mode, content hash) are recorded */
  dirs?: string[];
  /** more state: each key → a reader (e.g. the store's lease keys) */
  extra?: Record<string, () => Promise<unknown> | unknown>;
}

/** Fields that change with time or traffic, not with configuration. */
const VOLATILE = new Set([
  'valid_life_time',
  'preferred_life_time',
  'stats',
  'stats64',
  'used',
  'confirmed',
  'updated',
  'probes',
  'expires',
  'gc_timer',
  'hello_timer',
  'tcn_timer',
  'topology_change_timer',
  'forward_delay_timer',
  'hold_timer',
  'message_age_timer',
]);

function scrub(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(scrub);
  if (v && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) if (!VOLATILE.has(k)) out[k] = scrub(x);
    return out;
  }
  return v;
}

async function json(ns: TestNetns, cmd: string, args: string[]): Promise<unknown> {
  const r = await inNs(ns, cmd, args, true);
  if (r.exitCode !== 0) return { error: r.stderr.trim() };
  try {
    return scrub(JSON.parse(r.stdout.trim() || '[]'));
  } catch {
    return r.stdout;
  }
}

/** Neighbour entries the kernel makes on its own (no traffic is sent, but be safe): only permanent ones count. */
const permanentOnly = (v: unknown): unknown =>
  Array.isArray(v) ? v.filter((n: { state?: string[] }) => n.state?.includes('PERMANENT')) : v;

export async function netnsState(ns: TestNetns): Promise<Snapshot> {
  const [links, addrs, routes4, routes6, neigh, fdb, ruleset, rules4] = await Promise.all([
    json(ns, 'ip', ['-json', '-details', 'link', 'show']),
    json(ns, 'ip', ['-json', 'addr', 'show']),
    json(ns, 'ip', ['-json', '-4', 'route', 'show', 'table', 'all']),
    json(ns, 'ip', ['-json', '-6', 'route', 'show', 'table', 'all']),
    json(ns, 'ip', ['-json', 'neigh', 'show']),
    json(ns, 'bridge', ['-json', 'fdb', 'show']),
    inNs(ns, 'nft', ['list', 'ruleset'], true).then((r) => r.stdout),
    json(ns, 'ip', ['-json', 'rule', 'show']),
  ]);
  return { links, addrs, routes4, routes6, neigh: permanentOnly(neigh), fdb, ruleset, rules4 };
}

/** Every path under `dir` with its type, mode and content hash (absent dir: null). */
export function dirState(dir: string): Record<string, string> | null {
  if (!existsSync(dir)) return null;
  const out: Record<string, string> = {};
  const walk = (d: string): void => {
    for (const name of readdirSync(d).sort()) {
      const p = path.join(d, name);
      const st = lstatSync(p);
      const rel = path.relative(dir, p);
      if (st.isDirectory()) {
        out[rel] = `dir ${(st.mode & 0o7777).toString(8)}`;
        walk(p);
      } else if (st.isSymbolicLink()) out[rel] = `link -> ${readlinkSync(p)}`;
      else out[rel] = `file ${(st.mode & 0o7777).toString(8)} ${createHash('sha256').update(readFileSync(p)).digest('hex').slice(0, 16)}`;
    }
  };
  walk(dir);
  return out;
}

/**
 * Wait (bounded) until no address of the namespaces is still in IPv6 duplicate address
 * detection: its end changes addresses and local routes by itself, not by any plugin.
 */
export async function settle(spaces: TestNetns[], attempts = 50): Promise<void> {
  for (let i = 0; i < attempts; i++) {
    const busy = await Promise.all(
      spaces.map(async (ns) => (await inNs(ns, 'ip', ['-6', 'addr', 'show', 'tentative'], true)).stdout.trim() !== ''),
    );
    if (!busy.some(Boolean)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
}

export async function snapshot(spec: SnapshotSpec): Promise<Snapshot> {
  const out: Snapshot = {};
  for (const ns of spec.netns ?? []) out[`netns ${ns.name}`] = await netnsState(ns);
  for (const d of spec.dirs ?? []) out[`dir ${d}`] = dirState(d);
  for (const [k, read] of Object.entries(spec.extra ?? {})) out[k] = await read();
  return out;
}

/** Readable differences between two snapshots (empty: equal). */
export function diffSnapshots(a: Snapshot, b: Snapshot): string[] {
  const out: string[] = [];
  const walk = (x: unknown, y: unknown, where: string): void => {
    if (JSON.stringify(x) === JSON.stringify(y)) return;
    if (Array.isArray(x) && Array.isArray(y)) {
      const sx = x.map((v) => JSON.stringify(v));
      const sy = y.map((v) => JSON.stringify(v));
      if (x.length === y.length) {
        x.forEach((v, i) => walk(v, y[i], `${where}[${i}]`));
        return;
      }
      for (const v of sx.filter((v) => !sy.includes(v))) out.push(`${where}: gone: ${v.slice(0, 600)}`);
      for (const v of sy.filter((v) => !sx.includes(v))) out.push(`${where}: new: ${v.slice(0, 600)}`);
      return;
    }
    if (x && y && typeof x === 'object' && typeof y === 'object') {
      const keys = new Set([...Object.keys(x), ...Object.keys(y)]);
      for (const k of keys) walk((x as Record<string, unknown>)[k], (y as Record<string, unknown>)[k], `${where}/${k}`);
      return;
    }
    const s = (v: unknown): string => (typeof v === 'string' ? v : (JSON.stringify(v) ?? 'undefined')).slice(0, 600);
    out.push(`${where}: ${s(x)} -> ${s(y)}`);
  };
  walk(a, b, '');
  return out;
}
