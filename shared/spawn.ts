/**
 * Start a process with an argv array (never a shell), feed it stdin, collect its output.
 * node:child_process directly: in the built executable, loading execa and its first spawn
 * cost ~40 ms of start-up, more than the runtime start itself (see docs/benchmarks.md), and
 * this is all the plugins need from it.
 */
import { trace, tracing } from './trace.ts';

/**
 * node:child_process, loaded on first use (process.getBuiltinModule): it brings net and the
 * stream machinery (~4 ms), which a VERSION call or a start-up snapshot must not load.
 */
export const childProcess = (): typeof import('node:child_process') => process.getBuiltinModule('node:child_process');

export interface SpawnResult {
  /** exit status; null when the process could not start or was killed */
  exitCode: number | null;
  stdout: string;
  stderr: string;
  /** why it failed to start or was killed (ENOENT, timeout, signal) */
  error?: string;
}

export interface SpawnOptions {
  input?: string;
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
}

export function spawnCollect(file: string, args: string[], opts: SpawnOptions = {}): Promise<SpawnResult> {
  return new Promise((resolve) => {
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let error: string | undefined;
    let child;
    try {
      const t0 = tracing() ? performance.now() : 0;
      child = childProcess().spawn(file, args, {
        env: opts.env ?? process.env,
        stdio: ['pipe', 'pipe', 'pipe'],
        timeout: opts.timeoutMs,
        shell: false,
      });
      if (t0) trace(`spawned ${file} (${(performance.now() - t0).toFixed(1)} ms in spawn())`);
    } catch (e) {
      resolve({ exitCode: null, stdout: '', stderr: '', error: (e as Error).message });
      return;
    }
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    child.on('error', (e: NodeJS.ErrnoException) => {
      error = e.code ? `${e.code}: ${e.message}` : e.message;
    });
    child.stdin.on('error', () => undefined); // the child may exit without reading stdin
    child.stdin.end(opts.input ?? '');
    child.on('close', (code, signal) => {
      resolve({
        exitCode: code,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
        error: error ?? (signal ? `killed by ${signal}` : undefined),
      });
    });
  });
}
