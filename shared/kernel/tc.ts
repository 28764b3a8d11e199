/**
 * tc (iproute2 traffic control): `tc -batch -` for several changes in one process, `tc -json`
 * for reading. Every argument goes through `batchScript` (one plain word each).
 */
import { batchScript } from './batch.ts';
import { run, type RunResult } from './exec.ts';

/** Several `tc` commands (argv without "tc") in one process; throws (code 100) on the first failure. */
export async function tcBatch(cmds: string[][], opts: { netns?: string; allowFail?: boolean } = {}): Promise<RunResult | undefined> {
  if (!cmds.length) return undefined;
  return run('tc', ['-batch', '-'], { input: batchScript(cmds, 'tc -batch'), netns: opts.netns, allowFail: opts.allowFail });
}

/** `tc -json <args>` parsed; [] when the device does not exist. */
export async function tcJson<T>(args: string[], netns?: string): Promise<T[]> {
  const r = await run('tc', ['-json', ...args], { netns, allowFail: true });
  if (r.exitCode !== 0 || !r.stdout.trim()) return [];
  return JSON.parse(r.stdout) as T[];
}

export interface QdiscInfo {
  kind: string;
  handle: string;
  root?: boolean;
  parent?: string;
  options?: Record<string, unknown>;
}
