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
 * held elsewhere is waited for in-process: no process at all. A caller with nothing else to do
 * meanwhile (a plugin's critical section: `block`) sleeps in poll(2) on an inotify watch of the
 * lock file and tries LOCK_NB again whenever someone closes the file (a holder's release is a
 * close: ours, the Go reference's, flock(1)'s), so it is woken the moment the lock may be free;
 * others try again with a short timer backoff. The kernel's lock is the same either way, so the
 * reference plugins' flock on the same file excludes us and we exclude them.
 */
import { closeSync, mkdirSync, openSync, rmdirSync } from 'node:fs';
import path from 'node:path';
import { CniError, ErrorCode } from './cni/errors.ts';
import { trace } from './trace.ts';
import { childProcess } from './spawn.ts';
import { flockFd, LOCK_EX, LOCK_NB, netlinkEnabled } from './kernel/netlink/socket.ts';
import { closeWatch, type CloseWatch } from './kernel/netlink/closewait.ts';

export interface FlockRequest {
  granted: Promise<void>;
  release(): Promise<void>;
}

const CONFLICT = 75;
const EAGAIN = 11;
/** Longest pause between two tries of a held lock (in-process wait). */
const POLL_MAX_MS = 8;
/**
 * A blocking wait (`block`) sleeps in poll(2) for at most this long before it tries again
 * without having seen a close (a holder that unlocks and keeps the file open)...
 */
const WAKE_CAP_MS = 25;
/** ...and lets the event loop turn at least this often. */
const BLOCK_SLICE_MS = 100;

export interface FlockOptions {
  /**
   * The caller has nothing else to do until it holds the lock (a plugin process): wait in
   * poll(2), woken by every close of the lock file, instead of timer polls that may sleep
   * while the lock is free. The event loop still turns every BLOCK_SLICE_MS. In-process
   * (Bun) path only; the flock(1) path always blocks in the kernel.
   */
  block?: boolean;
}

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
export function requestFlock(file: string, timeoutSeconds = 60, opts: FlockOptions = {}): FlockRequest {
  let fd: number | undefined;
  let poll: ReturnType<typeof setTimeout> | undefined;
  let watch: CloseWatch | undefined;
  // How the lock was taken, traced at release with the hold time: nothing is written while the
  // lock is held (a critical section others wait on stays as short as it can be).
  let how = '';
  let grantedAt = 0;
  const close = (): void => {
    if (poll !== undefined) clearTimeout(poll);
    poll = undefined;
    watch?.close();
    watch = undefined;
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
    // Under Bun: flock(2) on our descriptor, no process. Held by someone else: with `block`,
    // sleep in poll(2) until the lock file is closed by anyone, then try LOCK_NB again (flock(2)
    // blocking has no timeout and cannot be woken); else try again after 1, 2, 4 ... ms, at most
    // POLL_MAX_MS apart. Both until the timeout. A `flock` process per wait cost a fork and an exec.
    if (netlinkEnabled()) {
      const take = (): number => flockFd(fd as number, LOCK_EX | LOCK_NB);
      const errno = take();
      if (errno === 0) {
        how = `flock ${file}: taken in-process`;
        grantedAt = performance.now();
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
      // The watch is made before the next try: a release after that try wakes the poll(2).
      // CNI_TS_FLOCK_POLL=1: the timer polls even where `block` is asked (benchmarks compare the two)
      watch = opts.block && process.env.CNI_TS_FLOCK_POLL !== '1' ? closeWatch(file) : undefined;
      if (watch) {
        const w = watch;
        const turn = (): void => {
          poll = undefined;
          const sliceEnd = Math.min(deadline, performance.now() + BLOCK_SLICE_MS);
          for (;;) {
            if (fd === undefined) return; // released before it was granted
            const e = take();
            tries++;
            if (e === 0) {
              w.close();
              watch = undefined;
              how = `flock ${file}: taken in-process after ${tries} tries (woken by closes)`;
              grantedAt = performance.now();
              resolve();
              return;
            }
            if (e !== EAGAIN) return fail(ErrorCode.IOFailure, `flock(2): errno ${e}`);
            const now = performance.now();
            if (now >= deadline) return fail(ErrorCode.TryAgainLater, `timed out after ${timeoutSeconds}s`);
            if (now >= sliceEnd) {
              poll = setTimeout(turn, 0);
              return;
            }
            w.wait(Math.min(sliceEnd - now, WAKE_CAP_MS));
          }
        };
        // one turn of the event loop first: work the caller started beside the lock runs now
        poll = setTimeout(turn, 0);
        return;
      }
      const again = (): void => {
        poll = undefined;
        if (fd === undefined) return; // released before it was granted
        const e = take();
        tries++;
        if (e === 0) {
          how = `flock ${file}: taken in-process after ${tries} tries`;
          grantedAt = performance.now();
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
      if (code === 0) {
        how = `flock ${file}: granted`;
        grantedAt = performance.now();
        resolve();
      } else if (code === CONFLICT) fail(ErrorCode.TryAgainLater, `timed out after ${timeoutSeconds}s`);
      else fail(ErrorCode.IOFailure, stderr.trim() || `flock exited with ${String(code)}`);
    });
  });
  granted.catch(() => undefined); // the caller awaits it; never an unhandled rejection
  return {
    granted,
    /** Drop the lock (close our descriptor); also right when it was never granted. */
    release() {
      close();
      // the grant's wall-clock time too: bench/run.ts lines up the holders of one lock file
      if (how)
        trace(
          `${how}; released after ${(performance.now() - grantedAt).toFixed(2)} ms (granted at ${(performance.timeOrigin + grantedAt).toFixed(2)})`,
        );
      how = '';
      return Promise.resolve();
    },
  };
}

export async function withFlock<T>(file: string, body: () => Promise<T>, timeoutSeconds = 60, opts: FlockOptions = {}): Promise<T> {
  const req = requestFlock(file, timeoutSeconds, opts);
  try {
    await req.granted;
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
