/**
 * An flock(2) lock on a file, for state shared with Go CNI plugins that flock the same file
 * (the reference host-local locks `<store>/lock`). Node has no flock, so a helper holds it:
 * `flock --exclusive --no-fork FILE cat` waits in the kernel (no polling) until the lock is
 * granted and then echoes what we send, which tells us we hold it. Ending its stdin releases
 * the lock; if this process dies, the pipe closes, cat exits and the kernel releases it.
 * One small process per lock; nothing to clean up, no stale-lock guessing.
 */
import { execa } from 'execa';
import { CniError, ErrorCode } from './cni/errors.ts';

export async function withFlock<T>(file: string, body: () => Promise<T>, timeoutSeconds = 60): Promise<T> {
  const holder = execa('flock', ['--exclusive', '--no-fork', '--timeout', String(timeoutSeconds), '--conflict-exit-code', '75', file, 'cat'], {
    stdin: 'pipe',
    stdout: 'pipe',
    stderr: 'pipe',
    reject: false,
    buffer: false,
    env: { LC_ALL: 'C', PATH: process.env.PATH || '/usr/sbin:/usr/bin:/sbin:/bin' },
    extendEnv: false,
  });
  let stderr = '';
  holder.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const granted = new Promise<void>((resolve, reject) => {
    holder.stdout?.once('data', () => resolve());
    // Settles only if flock ends before granting (a no-op once granted).
    void holder.then((r) => {
      const code = r.exitCode;
      const why = code === 75 ? `timed out after ${timeoutSeconds}s` : stderr.trim() || r.shortMessage || `flock exited with ${String(code)}`;
      reject(new CniError(code === 75 ? ErrorCode.TryAgainLater : ErrorCode.IOFailure, `could not lock ${file}`, why));
    });
  });
  holder.stdin?.write('locked\n');
  try {
    await granted;
  } catch (e) {
    holder.kill();
    await holder.catch(() => undefined);
    throw e;
  }
  try {
    return await body();
  } finally {
    holder.stdin?.end();
    await holder.catch(() => undefined);
  }
}
