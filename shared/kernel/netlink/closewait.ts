/**
 * Sleep in the kernel until a file is closed by someone (inotify IN_CLOSE_WRITE |
 * IN_CLOSE_NOWRITE), or a time has passed: poll(2) on an inotify descriptor, through bun:ffi.
 *
 * For shared/flock.ts: a flock(2) lock is released when its holder closes the file (our
 * plugins, the Go reference's store, the flock(1) CLI all do), so a waiter that sleeps here and
 * then tries LOCK_NB again is woken the moment the lock may be free, with no timer polls in
 * between, yet keeps a timeout (flock(2) itself has none). Blocking: the calling thread waits
 * in poll(2). Only under Bun; `closeWatch` returns undefined when it cannot watch (not Bun, no
 * inotify, a file system without it) and the caller polls instead.
 */
import { trace } from '../../trace.ts';

const IN_CLOEXEC = 0o2000000;
const IN_NONBLOCK = 0o4000;
const IN_CLOSE_WRITE = 0x8;
const IN_CLOSE_NOWRITE = 0x10;
const POLLIN = 1;

interface Inotify {
  init(flags: number): number;
  addWatch(fd: number, path: Uint8Array, mask: number): number;
  poll(fds: Uint8Array, n: number, timeoutMs: number): number;
  read(fd: number, buf: Uint8Array, len: number): number | bigint;
  close(fd: number): number;
}

/** The part of bun:ffi used here (no @types/bun in this repo: tooling runs on Node). */
interface BunFfi {
  dlopen(lib: string, defs: Record<string, { args: number[]; returns: number }>): { symbols: Record<string, (...a: unknown[]) => unknown> };
  FFIType: Record<'i32' | 'u32' | 'i64' | 'u64' | 'ptr', number>;
}

let lib: Inotify | null | undefined;

/** libc's inotify and poll through bun:ffi, bound on first use (only by a waiter: a free lock never needs them). */
function inotify(): Inotify | undefined {
  if (lib !== undefined) return lib ?? undefined;
  lib = null;
  if (typeof (globalThis as { Bun?: unknown }).Bun === 'undefined') return undefined;
  try {
    const ffi = (process as unknown as { getBuiltinModule(n: string): BunFfi }).getBuiltinModule('bun:ffi');
    const T = ffi.FFIType;
    const { symbols: s } = ffi.dlopen('libc.so.6', {
      inotify_init1: { args: [T.i32], returns: T.i32 },
      inotify_add_watch: { args: [T.i32, T.ptr, T.u32], returns: T.i32 },
      poll: { args: [T.ptr, T.u64, T.i32], returns: T.i32 },
      read: { args: [T.i32, T.ptr, T.u64], returns: T.i64 },
      close: { args: [T.i32], returns: T.i32 },
    });
    lib = {
      init: s.inotify_init1 as Inotify['init'],
      addWatch: s.inotify_add_watch as Inotify['addWatch'],
      poll: s.poll as Inotify['poll'],
      read: s.read as Inotify['read'],
      close: s.close as Inotify['close'],
    };
  } catch (e) {
    trace(`inotify through bun:ffi unavailable (${String(e)})`);
  }
  return lib ?? undefined;
}

export interface CloseWatch {
  /** Sleep until the file was closed by anyone since the last call (or the watch was made), at most `ms`. */
  wait(ms: number): void;
  close(): void;
}

/** Watch `file` for closes; undefined when that cannot be done here (the caller polls instead). */
export function closeWatch(file: string): CloseWatch | undefined {
  const l = inotify();
  if (!l) return undefined;
  const fd = l.init(IN_CLOEXEC | IN_NONBLOCK);
  if (fd < 0) return undefined;
  if (l.addWatch(fd, new TextEncoder().encode(`${file}\0`), IN_CLOSE_WRITE | IN_CLOSE_NOWRITE) < 0) {
    l.close(fd);
    return undefined;
  }
  // struct pollfd { int fd; short events; short revents; }
  const pfd = new Uint8Array(8);
  const view = new DataView(pfd.buffer);
  view.setInt32(0, fd, true);
  view.setInt16(4, POLLIN, true);
  const events = new Uint8Array(4096);
  let open = true;
  return {
    wait(ms) {
      if (!open) return;
      view.setInt16(6, 0, true);
      if (l.poll(pfd, 1, Math.max(0, Math.ceil(ms))) > 0) while (Number(l.read(fd, events, events.length)) > 0); // drain (non-blocking)
    },
    close() {
      if (open) l.close(fd);
      open = false;
    },
  };
}
