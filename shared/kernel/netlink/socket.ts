/**
 * The FFI transport: libc's socket/bind/setsockopt/sendto/recv, setns, open/write, flock,
 * through `bun:ffi`. Only under Bun (`typeof Bun !== 'undefined'`); `libc()` is undefined
 * elsewhere and callers take the process path.
 *
 * Threading: Bun runs JavaScript, and every bun:ffi call, on one thread, and setns(2) moves
 * only the calling thread. A socket belongs to the network namespace of the thread that
 * created it, for life. So a socket for another netns is made by: open the target's nsfs
 * file and our own (/proc/thread-self/ns/net), setns(target), socket(), setns(back) — all
 * synchronous on the JS thread, no await in between, so no other JavaScript (and no other
 * thread's work) ever runs while this thread is in the foreign namespace. After that the
 * socket works from any thread, and the thread is back where it was (tested: test/nl-netlink.test.ts).
 * The same bracket writes /proc/sys files of another netns (procfs resolves net sysctls for
 * the opener's namespace at open time).
 */
import { trace, tracing } from '../../trace.ts';
import { CniError, ErrorCode } from '../../cni/errors.ts';
import * as C from './constants.ts';
import { describeError, encodeMessage, parseError, parseMessages, type NlMsg, type NlRequest } from './codec.ts';
import { codeOfErrno, errnoName, errnoText } from './errno.ts';

const SOCK_RAW = 3;
const SOCK_CLOEXEC = 0o2000000;
const O_RDONLY = 0;
const O_WRONLY = 1;
const O_CLOEXEC = 0o2000000;
const CLONE_NEWNET = 0x40000000;
export const LOCK_EX = 2;
export const LOCK_NB = 4;
export const LOCK_UN = 8;

interface Libc {
  socket(domain: number, type: number, proto: number): number;
  bind(fd: number, addr: Uint8Array, len: number): number;
  setsockopt(fd: number, level: number, name: number, val: Uint8Array, len: number): number;
  sendto(fd: number, buf: Uint8Array, len: number, flags: number, addr: Uint8Array, alen: number): number | bigint;
  recv(fd: number, buf: Uint8Array, len: number, flags: number): number | bigint;
  close(fd: number): number;
  open(path: Uint8Array, flags: number, mode: number): number;
  write(fd: number, buf: Uint8Array, len: number): number | bigint;
  read(fd: number, buf: Uint8Array, len: number): number | bigint;
  setns(fd: number, nstype: number): number;
  flock(fd: number, op: number): number;
  errno(): number;
}

let lib: Libc | null | undefined;

/** The part of bun:ffi used here (no @types/bun in this repo: tooling runs on Node). */
interface BunFfi {
  dlopen(lib: string, defs: Record<string, { args: number[]; returns: number }>): { symbols: Record<string, (...a: unknown[]) => unknown> };
  FFIType: Record<'i32' | 'u32' | 'i64' | 'u64' | 'ptr', number>;
  read: { i32(ptr: never, offset: number): number };
}

/** True when in-process netlink is in use: under Bun, unless CNI_TS_NETLINK=0. */
export function netlinkEnabled(): boolean {
  if (typeof (globalThis as { Bun?: unknown }).Bun === 'undefined') return false;
  const v = process.env.CNI_TS_NETLINK;
  if (v === '0' || v === 'off' || v === 'false') return false;
  return libc() !== undefined;
}

/** libc through bun:ffi, loaded on first use; undefined when not under Bun or it cannot load. */
export function libc(): Libc | undefined {
  if (lib !== undefined) return lib ?? undefined;
  lib = null;
  if (typeof (globalThis as { Bun?: unknown }).Bun === 'undefined') return undefined;
  try {
    const t0 = tracing() ? performance.now() : 0;
    // not a static import: the bundles are shared with the Node build, which has no bun:ffi
    const ffi = (process as unknown as { getBuiltinModule(n: string): BunFfi }).getBuiltinModule('bun:ffi');
    const { dlopen, FFIType: T, read } = ffi;
    const { symbols: s } = dlopen('libc.so.6', {
      socket: { args: [T.i32, T.i32, T.i32], returns: T.i32 },
      bind: { args: [T.i32, T.ptr, T.u32], returns: T.i32 },
      setsockopt: { args: [T.i32, T.i32, T.i32, T.ptr, T.u32], returns: T.i32 },
      sendto: { args: [T.i32, T.ptr, T.u64, T.i32, T.ptr, T.u32], returns: T.i64 },
      recv: { args: [T.i32, T.ptr, T.u64, T.i32], returns: T.i64 },
      close: { args: [T.i32], returns: T.i32 },
      open: { args: [T.ptr, T.i32, T.u32], returns: T.i32 },
      write: { args: [T.i32, T.ptr, T.u64], returns: T.i64 },
      read: { args: [T.i32, T.ptr, T.u64], returns: T.i64 },
      setns: { args: [T.i32, T.i32], returns: T.i32 },
      flock: { args: [T.i32, T.i32], returns: T.i32 },
      __errno_location: { args: [], returns: T.ptr },
    });
    const errnoPtr = s.__errno_location as () => number;
    lib = {
      socket: s.socket as Libc['socket'],
      bind: s.bind as Libc['bind'],
      setsockopt: s.setsockopt as Libc['setsockopt'],
      sendto: s.sendto as Libc['sendto'],
      recv: s.recv as Libc['recv'],
      close: s.close as Libc['close'],
      open: s.open as Libc['open'],
      write: s.write as Libc['write'],
      read: s.read as Libc['read'],
      setns: s.setns as Libc['setns'],
      flock: s.flock as Libc['flock'],
      errno: () => read.i32(errnoPtr() as never, 0),
    };
    if (t0) trace(`bun:ffi libc loaded in ${(performance.now() - t0).toFixed(1)} ms`);
  } catch (e) {
    trace(`bun:ffi unavailable (${String(e)}): the ip/nsenter/flock processes are used`);
    lib = null;
  }
  return lib ?? undefined;
}

const must = (): Libc => {
  const l = libc();
  if (!l) throw new CniError(ErrorCode.Internal, 'in-process netlink used without bun:ffi');
  return l;
};

const enc = new TextEncoder();
const cstr = (s: string): Uint8Array => {
  const b = enc.encode(s);
  const out = new Uint8Array(b.length + 1);
  out.set(b);
  return out;
};

/** A libc call failed: errno, its name and text, and the CNI code. */
export class SysError extends CniError {
  readonly errno: number;
  constructor(what: string, errno: number, code = codeOfErrno(errno)) {
    super(code, `${what}: ${errnoText(errno)}`, `${errnoName(errno)} (errno ${errno})`);
    this.errno = errno;
  }
}

/** Open a file read-only, close-on-exec; returns the fd (SysError on failure). */
export function openFd(path: string, flags = O_RDONLY): number {
  const l = must();
  const fd = l.open(cstr(path), flags | O_CLOEXEC, 0o644);
  if (fd < 0) throw new SysError(`open ${path}`, l.errno(), ErrorCode.InvalidEnvironment);
  return fd;
}

export function closeFd(fd: number): void {
  must().close(fd);
}

/**
 * Run `body` with this thread inside the netns at `path`, synchronously, and come back.
 * `body` must be FFI calls only (socket(), open()), with everything it needs prepared before:
 * JavaScriptCore starts some threads lazily from the JS thread (its JIT worker, seen in
 * test/nl-netlink.test.ts when a bracket ran ordinary JavaScript), and a thread created while
 * we are inside inherits that netns for good. So no allocation, no loop, no call into
 * JavaScript between the two setns(2). Failing to come back is fatal: the rest of the
 * process would act on the wrong namespace.
 */
export function inNetnsSync<T>(path: string, body: () => T): T {
  const l = must();
  const target = openFd(path);
  let self = -1;
  try {
    self = openFd('/proc/thread-self/ns/net');
    if (l.setns(target, CLONE_NEWNET) !== 0) throw new SysError(`setns ${path}`, l.errno(), ErrorCode.InvalidEnvironment);
    let out: T;
    let failed = false;
    try {
      out = body();
    } catch (e) {
      failed = true;
      out = e as T;
    }
    if (l.setns(self, CLONE_NEWNET) !== 0) {
      const errno = l.errno();
      process.stderr.write(`cni-ts: cannot return to the original network namespace after ${path}: ${errnoText(errno)}\n`);
      process.exit(1);
    }
    if (failed) throw out as unknown as Error;
    return out;
  } finally {
    l.close(target);
    if (self >= 0) l.close(self);
  }
}

/**
 * Set sysctls (`net.ipv6.conf.eth0.accept_dad` or `net/ipv6/conf/eth0/accept_dad`) inside the
 * netns at `netns`: the /proc/sys files are opened inside (procfs binds a net sysctl to the
 * opener's namespace at open time), written and closed after coming back.
 */
export function writeSysctlInNetns(values: Array<[string, string]>, netns: string): void {
  const l = must();
  const paths = values.map(([key]) => cstr(`/proc/sys/${key.includes('/') ? key : key.replace(/\./g, '/')}`));
  const fds = new Int32Array(paths.length).fill(-1);
  const errnos = new Int32Array(paths.length);
  const flags = O_WRONLY | O_CLOEXEC;
  // one open per key; at most a few keys, so spelled without a loop of JavaScript work
  inNetnsSync(netns, () => {
    for (let i = 0; i < paths.length; i++) if ((fds[i] = l.open(paths[i], flags, 0)) < 0) errnos[i] = l.errno();
  });
  try {
    values.forEach(([key, value], i) => {
      if (fds[i] < 0) throw new SysError(`sysctl ${key} in ${netns}`, errnos[i]);
      const b = enc.encode(value);
      if (Number(l.write(fds[i], b, b.length)) < 0) throw new SysError(`sysctl -w ${key}=${value} in ${netns}`, l.errno());
    });
  } finally {
    for (const fd of fds) if (fd >= 0) l.close(fd);
  }
}

/**
 * Read sysctls inside the netns at `netns` (keys as in writeSysctlInNetns): the files are
 * opened inside the setns bracket, read and closed after coming back. Values without the
 * trailing newline, in the order of `keys`; a key that cannot be opened or read throws
 * SysError naming it.
 */
export function readSysctlInNetns(keys: string[], netns: string): string[] {
  const l = must();
  const paths = keys.map((key) => cstr(`/proc/sys/${key.includes('/') ? key : key.replace(/\./g, '/')}`));
  const fds = new Int32Array(paths.length).fill(-1);
  const errnos = new Int32Array(paths.length);
  const flags = O_RDONLY | O_CLOEXEC;
  inNetnsSync(netns, () => {
    for (let i = 0; i < paths.length; i++) if ((fds[i] = l.open(paths[i], flags, 0)) < 0) errnos[i] = l.errno();
  });
  const buf = new Uint8Array(4096);
  const dec = new TextDecoder();
  try {
    return keys.map((key, i) => {
      if (fds[i] < 0) throw new SysError(`sysctl ${key} in ${netns}`, errnos[i]);
      let text = '';
      for (;;) {
        const n = Number(l.read(fds[i], buf, buf.length));
        if (n < 0) throw new SysError(`sysctl ${key} in ${netns}`, l.errno());
        if (n === 0) break;
        text += dec.decode(buf.subarray(0, n));
      }
      return text.replace(/\n$/, '');
    });
  } finally {
    for (const fd of fds) if (fd >= 0) l.close(fd);
  }
}

/** flock(2) on our own descriptor. Returns 0 or the errno (EWOULDBLOCK=11 with LOCK_NB). */
export function flockFd(fd: number, op: number): number {
  const l = must();
  return l.flock(fd, op) === 0 ? 0 : l.errno();
}

/** The error of a netlink request: the kernel's errno text and extended ack, the request named. */
export class NetlinkError extends CniError {
  readonly errno: number;
  constructor(what: string, errno: number, ext?: string) {
    const text = describeError({ errno, message: ext, requestType: 0, requestSeq: 0 });
    super(codeOfErrno(errno), `${what} failed: ${text}`, text);
    this.errno = errno;
  }
}

/** The kernel's netlink address (sockaddr_nl, pid 0): where every request is sent. */
export const KERNEL = (() => {
  const b = new Uint8Array(12);
  new DataView(b.buffer).setUint16(0, C.AF_NETLINK, true);
  return b;
})();

/**
 * A bound netlink socket of `protocol` in the caller's netns, or in the one at `netns` (setns
 * bracket): SOCK_CLOEXEC, extended acks asked for (best effort: the kernel's reason text), plus
 * the boolean socket options in `options` (SOL_NETLINK). `what` names it in errors.
 */
export function openNetlinkFd(protocol: number, netns: string | undefined, what: string, options: number[] = []): number {
  const l = must();
  const type = SOCK_RAW | SOCK_CLOEXEC;
  const fd = netns ? inNetnsSync(netns, () => l.socket(C.AF_NETLINK, type, protocol)) : l.socket(C.AF_NETLINK, type, protocol);
  if (fd < 0) throw new SysError(`${what} socket${netns ? ` in ${netns}` : ''}`, l.errno());
  const one = Uint8Array.of(1, 0, 0, 0);
  for (const opt of [C.NETLINK_EXT_ACK, ...options]) l.setsockopt(fd, C.SOL_NETLINK, opt, one, 4);
  const sa = new Uint8Array(12);
  new DataView(sa.buffer).setUint16(0, C.AF_NETLINK, true);
  if (l.bind(fd, sa, 12) !== 0) {
    const errno = l.errno();
    l.close(fd);
    throw new SysError(`${what} bind`, errno);
  }
  return fd;
}

/** One NETLINK_ROUTE socket, in the netns it was opened for. Requests are synchronous. */
export class RtnlSocket {
  /** Sees every datagram received (test/fixtures/netlink/capture.ts records kernel replies with it). */
  static tap: ((datagram: Uint8Array, what: string) => void) | undefined;
  private seq = Math.floor(Math.random() * 0x7fffffff);
  private readonly buf = new Uint8Array(1 << 16);
  private closed = false;
  private constructor(
    readonly fd: number,
    readonly netns: string | undefined,
  ) {}

  /** A socket in the caller's netns, or in the one at `netns` (setns bracket, see the file comment). */
  static open(netns?: string): RtnlSocket {
    return new RtnlSocket(openNetlinkFd(C.NETLINK_ROUTE, netns, 'netlink'), netns);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    must().close(this.fd);
  }

  /**
   * Send one request and collect the answer: every message with its sequence number until
   * the ACK (NLMSG_ERROR with error 0) or NLMSG_DONE. A refusal throws NetlinkError naming `what`.
   */
  request(r: NlRequest, what: string): NlMsg[] {
    const l = must();
    if (this.closed) throw new CniError(ErrorCode.Internal, 'netlink socket used after close');
    const seq = (this.seq = (this.seq + 1) >>> 0);
    const msg = encodeMessage({ ...r, seq });
    const t0 = tracing() ? performance.now() : 0;
    const sent = Number(l.sendto(this.fd, msg, msg.length, 0, KERNEL, 12));
    if (sent < 0) throw new SysError(`netlink send (${what})`, l.errno());
    const out: NlMsg[] = [];
    const dump = (r.flags & C.NLM_F_DUMP) === C.NLM_F_DUMP;
    for (;;) {
      const n = Number(l.recv(this.fd, this.buf, this.buf.length, 0));
      if (n < 0) {
        const errno = l.errno();
        if (errno === 4) continue; // EINTR
        throw new SysError(`netlink receive (${what})`, errno);
      }
      let finished = false;
      RtnlSocket.tap?.(this.buf.slice(0, n), what);
      for (const m of parseMessages(this.buf.subarray(0, n))) {
        if (m.seq !== seq) continue; // a late answer to an earlier request
        if (m.type === C.NLMSG_ERROR) {
          const e = parseError(m);
          if (e.errno !== 0) throw new NetlinkError(what, e.errno, e.message);
          finished = true;
        } else if (m.type === C.NLMSG_DONE) {
          finished = true;
        } else {
          // copy: the receive buffer is reused
          out.push({ ...m, payload: m.payload.slice() });
          if (!dump && !(m.flags & C.NLM_F_MULTI) && !(r.flags & C.NLM_F_ACK)) finished = true;
        }
      }
      if (finished) break;
    }
    if (t0)
      trace(
        `netlink ${what}${this.netns ? ` (in ${this.netns})` : ''}: ${out.length} messages in ${(performance.now() - t0).toFixed(2)} ms`,
      );
    return out;
  }
}
