/** Small helpers for the benchmark harness: processes, namespaces, statistics, markdown. */
import { execa } from 'execa';
import { randomBytes } from 'node:crypto';

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
export const uid = (p: string): string => `${p}${randomBytes(3).toString('hex')}`;

export async function sh(
  cmd: string,
  args: string[],
  opts: { input?: string; allowFail?: boolean; netns?: string } = {},
): Promise<{ stdout: string; stderr: string; exitCode: number }> {
  const [c, a] = opts.netns ? ['nsenter', [`--net=${opts.netns}`, '--', cmd, ...args]] : [cmd, args];
  const r = await execa(c, a, { input: opts.input, reject: false });
  const out = { stdout: String(r.stdout ?? ''), stderr: String(r.stderr ?? ''), exitCode: r.exitCode ?? -1 };
  if (out.exitCode !== 0 && !opts.allowFail) throw new Error(`${cmd} ${args.join(' ')} failed: ${out.stderr.trim() || out.exitCode}`);
  return out;
}

/** Create (or delete) many named netns in one `ip -batch` process. */
export async function netnsBatch(op: 'add' | 'del', names: string[]): Promise<void> {
  if (!names.length) return;
  await sh('ip', ['-force', '-batch', '-'], { input: names.map((n) => `netns ${op} ${n}`).join('\n') + '\n', allowFail: op === 'del' });
}

export const nsPath = (name: string): string => `/run/netns/${name}`;

export async function listNetns(prefix: string): Promise<string[]> {
  const r = await sh('ip', ['-json', 'netns', 'list'], { allowFail: true });
  const list = (r.stdout.trim() ? JSON.parse(r.stdout) : []) as Array<{ name: string }>;
  return list.map((n) => n.name).filter((n) => n.startsWith(prefix));
}

export interface Stats {
  n: number;
  median: number;
  p95: number;
  min: number;
  max: number;
}

/** Nearest-rank percentiles. */
export function stats(xs: number[]): Stats {
  const s = [...xs].sort((a, b) => a - b);
  const at = (p: number): number => s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
  return { n: s.length, median: at(50), p95: at(95), min: s[0], max: s[s.length - 1] };
}

export const ms = (x: number | undefined): string => (x === undefined || Number.isNaN(x) ? '–' : x >= 100 ? x.toFixed(0) : x.toFixed(1));

export async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const t = performance.now();
  const v = await fn();
  return [v, performance.now() - t];
}

export function mdTable(header: string[], rows: Array<Array<string | number>>): string {
  return [`| ${header.join(' | ')} |`, `|${header.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

export const mib = (bytes: number): string => `${(bytes / 1048576).toFixed(1)} MiB`;
