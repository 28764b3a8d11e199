/**
 * The one place the suite starts kernel tools. argv arrays only, never a shell string;
 * `netns` runs the tool inside a network namespace given by path (nsenter --net=PATH).
 */
import { spawnCollect } from '../spawn.ts';
import { CniError, ErrorCode } from '../cni/errors.ts';
import { trace, tracing } from '../trace.ts';

export interface RunOptions {
  /** Text for the tool's stdin (ip -batch -, nft -f -). */
  input?: string;
  /** Network namespace path; the tool runs inside it. */
  netns?: string;
  /** Return the outcome instead of throwing on a non-zero exit. */
  allowFail?: boolean;
  /** Error code to throw with (default KernelOperation). */
  code?: number;
  /** Kill the tool (SIGTERM) after this long; with allowFail its output so far is returned (probes). */
  timeoutMs?: number;
}

export interface RunResult {
  exitCode: number;
  stdout: string;
  stderr: string;
  /** why the tool did not finish on its own (killed by a signal, e.g. after timeoutMs) */
  error?: string;
}

/** Count of spawned processes, for benchmarks and tests that guard the spawn budget. */
export let spawnCount = 0;

export async function run(cmd: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  const [file, argv] = opts.netns ? ['nsenter', [`--net=${opts.netns}`, '--', cmd, ...args]] : [cmd, args];
  spawnCount++;
  const t0 = tracing() ? performance.now() : 0;
  const r = await spawnCollect(file, argv, {
    input: opts.input,
    env: { LC_ALL: 'C', PATH: process.env.PATH || '/usr/sbin:/usr/bin:/sbin:/bin' },
    timeoutMs: opts.timeoutMs,
  });
  if (t0) trace(`${file} ${argv.slice(0, 8).join(' ')} -> ${r.exitCode} in ${(performance.now() - t0).toFixed(1)} ms`);
  const out: RunResult = {
    exitCode: r.exitCode ?? 1,
    stdout: r.stdout.replace(/\n$/, ''),
    stderr: r.stderr.replace(/\n$/, ''),
    ...(r.error ? { error: r.error } : {}),
  };
  if (r.exitCode === null && !opts.allowFail) {
    throw new CniError(opts.code ?? ErrorCode.KernelOperation, `${cmd} could not be started`, r.error ?? '');
  }
  if (out.exitCode !== 0 && !opts.allowFail) {
    const where = opts.netns ? ` (in ${opts.netns})` : '';
    throw new CniError(
      opts.code ?? ErrorCode.KernelOperation,
      `${cmd} ${args.slice(0, 6).join(' ')}${where} failed: ${out.stderr.trim() || `exit ${out.exitCode}`}`,
      out.stderr.trim(),
    );
  }
  return out;
}
