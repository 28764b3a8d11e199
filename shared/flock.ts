/**
 * An flock(2) lock on a file, for state shared with Go CNI plugins that flock the same file
 * (the reference host-local locks `<store>/lock`) and for our own short critical sections.
 *
 * Node has no flock, so the `flock` utility takes it on our behalf: we open the lock file and
 * hand that descriptor to `flock --exclusive 3` as its fd 3. flock(2) locks belong to the open
 * file description, which the child shares with us; when the child exits after the kernel
 * granted the lock, the lock stays held through our descriptor. Closing the descriptor
 * releases it, synchronously and without another process, and if this process dies the
 * kernel closes it and the lock goes with it: nothing to clean up, no stale-lock guessing.
 * Our other children never see the descriptor (Node opens files close-on-exec).
 *
 * Under Bun (docs/netlink.md) flock(2) is called on our descriptor through bun:ffi, and a lock
 * held elsewhere is waited for in-process by trying again with a short backoff: no process at
 * all. The kernel's lock is the same either way, so the reference plugins' flock on the same
 * file excludes us and we exclude them.
 */
import { closeSync, mkdirSync, openSync, rmdirSync } from 'node:fs';
import path from 'node:path';
import { CniError, ErrorCode } from './cni/errors.ts';
import { trace } from './trace.ts';
import { childProcess } from './spawn.ts';
import { flockFd, LOCK_EX, LOCK_NB, netlinkEnabled } from './kernel/netlink/socket.ts';

export interface FlockRequest {
  granted: Promise<void>;
  release(): Promise<void>;
}

const CONFLICT = 75;
const EAGAIN = 11;
/** Longest pause between two tries of a held lock (in-process wait). */
const POLL_MAX_MS = 8;

/**
 * Open (creating) the lock file. Releases before 0.2 locked with proper-lockfile, an empty
 * directory at the same path while held: one left by a crash is removed.
 */
function openLockFile(file: string): number {
  try {
    return openSync(file, 'a', 0o644);
  } catch (e) {
    // a file that refuses writers (a netns handle: nsfs) is locked through a read-only
    // descriptor, as Go's filemutex does (sbr locks the netns file); flock(2) needs no write access
    if (['EPERM', 'EACCES', 'EROFS'].includes((e as NodeJS.ErrnoException).code ?? '')) return openSync(file, 'r');
    if ((e as NodeJS.ErrnoException).code !== 'EISDIR') throw e;
    rmdirSync(file);
    return openSync(file, 'a', 0o644);
  }
}

/** Is flock(2) called in-process (Bun, netlink on)? Then a free lock is taken at once, without a process. */
export const inProcessFlock = (): boolean => netlinkEnabled();

/** Start taking the lock; `granted` settles once the kernel gave it to us (or it failed). */
export function requestFlock(file: string, timeoutSeconds = 60): FlockRequest {
  let fd: number | undefined;
  let poll: ReturnType<typeof setTimeout> | undefined;
  const close = (): void => {
    if (poll !== undefined) clearTimeout(poll);
    poll = undefined;
    if (fd === undefined) return;
    try {
      closeSync(fd);
    } catch {
      /* already closed */
    }
    fd = undefined;
  };
  const granted = new Promise<void>((resolve, reject) => {
    const fail = (code: number, why: string): void => {
      close();
      reject(new CniError(code, `could not lock ${file}`, why));
    };
    try {
      fd = openLockFile(file);
    } catch (e) {
      fail(ErrorCode.IOFailure, (e as Error).message);
      return;
    }
    // Under Bun: flock(2) on our descriptor, no process. Held by someone else: try again
    // (LOCK_NB) after 1, 2, 4 ... ms, at most POLL_MAX_MS apart, until the timeout. A blocking
    // flock(2) would stop the event loop; a `flock` process per wait cost a fork and an exec.
    if (netlinkEnabled()) {
      const take = (): number => flockFd(fd as number, LOCK_EX | LOCK_NB);
      const errno = take();
      if (errno === 0) {
        trace(`flock ${file}: taken in-process`);
        resolve();
        return;
      }
      if (errno !== EAGAIN) {
        fail(ErrorCode.IOFailure, `flock(2): errno ${errno}`);
        return;
      }
      trace(`flock ${file}: held elsewhere, waiting in-process`);
      const deadline = performance.now() + timeoutSeconds * 1000;
      let delay = 1;
      let tries = 1;
      const again = (): void => {
        poll = undefined;
        if (fd === undefined) return; // released before it was granted
        const e = take();
        tries++;
        if (e === 0) {
          trace(`flock ${file}: taken in-process after ${tries} tries`);
          resolve();
        } else if (e !== EAGAIN) fail(ErrorCode.IOFailure, `flock(2): errno ${e}`);
        else if (performance.now() >= deadline) fail(ErrorCode.TryAgainLater, `timed out after ${timeoutSeconds}s`);
        else {
          // a random part, so waiters that started together do not keep trying together
          poll = setTimeout(again, delay * (0.5 + Math.random()));
          delay = Math.min(delay * 2, POLL_MAX_MS);
        }
      };
      poll = setTimeout(again, delay);
      return;
    }
    trace(`flock ${file}: asking`);
    const child = childProcess().spawn(
      'flock',
      ['--exclusive', '--timeout', String(timeoutSeconds), '--conflict-exit-code', String(CONFLICT), '3'],
      {
        stdio: ['ignore', 'ignore', 'pipe', fd],
        env: { LC_ALL: 'C', PATH: process.env.PATH || '/usr/sbin:/usr/bin:/sbin:/bin' },
      },
    );
    trace(`flock ${file}: spawned`);
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', (e) => fail(ErrorCode.IOFailure, `flock: ${e.message}`));
    child.on('close', (code) => {
      if (code === 0) resolve();
      else if (code === CONFLICT) fail(ErrorCode.TryAgainLater, `timed out after ${timeoutSeconds}s`);
      else fail(ErrorCode.IOFailure, stderr.trim() || `flock exited with ${String(code)}`);
    });
  });
  granted.catch(() => undefined); // the caller awaits it; never an unhandled rejection
  return {
    granted,
    /** Drop the lock (close our descriptor); also right when it was never granted. */
    release() {
      close();
      return Promise.resolve();
    },
  };
}

export async function withFlock<T>(file: string, body: () => Promise<T>, timeoutSeconds = 60): Promise<T> {
  const req = requestFlock(file, timeoutSeconds);
  try {
    await req.granted;
    trace(`flock ${file} granted`);
    return await body();
  } finally {
    await req.release();
  }
}

/**
 * A lock around shared on-disk state or a one-time kernel change (bridge creation, a
 * host-device record, an overlay lease, an iptables section): `withFlock` on `<dir>/<name>`,
 * creating `dir` first. The small lock file stays, as the reference host-local's `lock` does.
 */
export async function withLock<T>(dir: string, body: () => Promise<T>, name = 'lock', timeoutSeconds = 60): Promise<T> {
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  return withFlock(path.join(dir, name), body, timeoutSeconds);
}
