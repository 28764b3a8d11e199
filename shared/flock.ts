/**
 * An flock(2) lock on a file, for state shared with Go CNI plugins that flock the same file
 * (the reference host-local locks `<store>/lock`). Node has no flock, so a helper holds it:
 * `flock --exclusive --no-fork FILE cat` waits in the kernel (no polling) until the lock is
 * granted and then echoes what we send, which tells us we hold it. Ending its stdin releases
 * the lock; if this process dies, the pipe closes, cat exits and the kernel releases it.
 * One small process per lock; nothing to clean up, no stale-lock guessing.
 */
import { spawn } from 'node:child_process';
import { CniError, ErrorCode } from './cni/errors.ts';

export interface FlockRequest {
  granted: Promise<void>;
  release(): Promise<void>;
}

/** Start the lock holder; `granted` settles once the kernel gave us the lock (or it failed). */
export function requestFlock(file: string, timeoutSeconds = 60): FlockRequest {
  const holder = spawn('flock', ['--exclusive', '--no-fork', '--timeout', String(timeoutSeconds), '--conflict-exit-code', '75', file, 'cat'], {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { LC_ALL: 'C', PATH: process.env.PATH || '/usr/sbin:/usr/bin:/sbin:/bin' },
  });
  let stderr = '';
  holder.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => {
    holder.on('error', (e) => {
      stderr += e.message;
      resolve(null);
    });
    holder.on('close', (code) => resolve(code));
  });
  const granted = new Promise<void>((resolve, reject) => {
    holder.stdout.once('data', () => resolve());
    // Settles only if flock ends before granting (a no-op once granted).
    void exited.then((code) => {
      const why = code === 75 ? `timed out after ${timeoutSeconds}s` : stderr.trim() || `flock exited with ${String(code)}`;
      reject(new CniError(code === 75 ? ErrorCode.TryAgainLater : ErrorCode.IOFailure, `could not lock ${file}`, why));
    });
  });
  granted.catch(() => undefined); // the caller awaits it; never an unhandled rejection
  holder.stdin.on('error', () => undefined);
  holder.stdin.write('locked\n');
  return {
    granted,
    async release() {
      holder.stdin.end();
      await exited;
    },
  };
}

export async function withFlock<T>(file: string, body: () => Promise<T>, timeoutSeconds = 60): Promise<T> {
  const req = requestFlock(file, timeoutSeconds);
  try {
    await req.granted;
    return await body();
  } finally {
    await req.release();
  }
}
