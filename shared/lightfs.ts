/**
 * The synchronous `node:fs` calls of a plugin's hot path (stdin, the reply, the IPAM store, lock
 * files, the delegate lookup, netns checks, trace and call records) straight on libc through
 * `bun:ffi`. Under Bun, loading the `node:fs` builtin costs every plugin process ~2.5 ms of CPU
 * and ~1.7 MiB of RSS on top of bun:ffi, which netlink, flock(2) and libnftables load anyway
 * (docs/benchmarks.md, issue 12 session 4), so scripts/build.mjs resolves `node:fs` to this
 * module in the plugins' bundles of the Bun executable.
 *
 * Same results as node:fs: the same values, Stats fields and errors (`code`, `errno`,
 * `syscall`, `path`, message "ENOENT: no such file or directory, open '/x'"). A call this module
 * does not do (another function, an option or argument shape not handled below, not under Bun,
 * CNI_TS_LIGHTFS=0) goes to the real node:fs, loaded on first such use. test/lightfs.test.ts
 * runs every function under Bun against node:fs.
 */
import type * as NodeFs from 'node:fs';

type Fs = typeof NodeFs;
let realFs: Fs | undefined;
const real = (): Fs => (realFs ??= process.getBuiltinModule('node:fs'));

type Ptr = number;
interface Libc {
  open(path: Uint8Array, flags: number, mode: number): number;
  close(fd: number): number;
  read(fd: number, buf: Uint8Array, n: number): number | bigint;
  write(fd: number, buf: Uint8Array, n: number): number | bigint;
  fsync(fd: number): number;
  unlink(path: Uint8Array): number;
  rmdir(path: Uint8Array): number;
  mkdir(path: Uint8Array, mode: number): number;
  rename(a: Uint8Array, b: Uint8Array): number;
  link(a: Uint8Array, b: Uint8Array): number;
  access(path: Uint8Array, mode: number): number;
  statx(dirfd: number, path: Uint8Array, flags: number, mask: number, buf: Uint8Array): number;
  statfs(path: Uint8Array, buf: Uint8Array): number;
  realpath(path: Uint8Array, out: Uint8Array): Ptr | null;
  opendir(path: Uint8Array): Ptr | null;
  readdir(dir: Ptr): Ptr | null;
  closedir(dir: Ptr): number;
  errno(): number;
  direntName(ent: Ptr): string;
}

interface BunFfi {
  dlopen(lib: string, defs: Record<string, { args: number[]; returns: number }>): { symbols: Record<string, (...a: unknown[]) => unknown> };
  FFIType: Record<'i32' | 'u32' | 'i64' | 'ptr' | 'void', number>;
  read: { i32(ptr: Ptr, offset: number): number };
  CString: new (ptr: Ptr, byteOffset?: number) => { toString(): string };
}

let lib: Libc | null | undefined;

function libc(): Libc | null {
  if (lib !== undefined) return lib;
  lib = null;
  const v = process.env.CNI_TS_LIGHTFS;
  if (typeof (globalThis as { Bun?: unknown }).Bun === 'undefined' || v === '0' || v === 'off' || v === 'false') return lib;
  try {
    const { dlopen, FFIType: T, read, CString } = process.getBuiltinModule('bun:ffi' as 'node:fs') as unknown as BunFfi;
    const { symbols: s } = dlopen('libc.so.6', {
      open: { args: [T.ptr, T.i32, T.u32], returns: T.i32 },
      close: { args: [T.i32], returns: T.i32 },
      read: { args: [T.i32, T.ptr, T.i64], returns: T.i64 },
      write: { args: [T.i32, T.ptr, T.i64], returns: T.i64 },
      fsync: { args: [T.i32], returns: T.i32 },
      unlink: { args: [T.ptr], returns: T.i32 },
      rmdir: { args: [T.ptr], returns: T.i32 },
      mkdir: { args: [T.ptr, T.u32], returns: T.i32 },
      rename: { args: [T.ptr, T.ptr], returns: T.i32 },
      link: { args: [T.ptr, T.ptr], returns: T.i32 },
      access: { args: [T.ptr, T.i32], returns: T.i32 },
      statx: { args: [T.i32, T.ptr, T.i32, T.u32, T.ptr], returns: T.i32 },
      statfs: { args: [T.ptr, T.ptr], returns: T.i32 },
      realpath: { args: [T.ptr, T.ptr], returns: T.ptr },
      opendir: { args: [T.ptr], returns: T.ptr },
      readdir64: { args: [T.ptr], returns: T.ptr },
      closedir: { args: [T.ptr], returns: T.i32 },
      __errno_location: { args: [], returns: T.ptr },
    });
    const errnoPtr = s.__errno_location as () => Ptr;
    lib = {
      ...(s as unknown as Omit<Libc, 'errno' | 'readdir' | 'direntName'>),
      readdir: s.readdir64 as Libc['readdir'],
      errno: () => read.i32(errnoPtr(), 0),
      // struct dirent64: d_ino u64, d_off i64, d_reclen u16, d_type u8, then d_name
      direntName: (ent) => new CString(ent, 19).toString(),
    };
  } catch {
    lib = null;
  }
  return lib;
}

const enc = new TextEncoder();
function cstr(s: string): Uint8Array {
  const b = enc.encode(s);
  const out = new Uint8Array(b.length + 1);
  out.set(b);
  return out;
}

// libuv's texts (what node:fs puts in its messages) for the errors a plugin meets; others: errno's name
const UV_TEXT: Record<number, [string, string]> = {
  1: ['EPERM', 'operation not permitted'],
  2: ['ENOENT', 'no such file or directory'],
  4: ['EINTR', 'interrupted system call'],
  5: ['EIO', 'i/o error'],
  6: ['ENXIO', 'no such device or address'],
  9: ['EBADF', 'bad file descriptor'],
  11: ['EAGAIN', 'resource temporarily unavailable'],
  12: ['ENOMEM', 'not enough memory'],
  13: ['EACCES', 'permission denied'],
  16: ['EBUSY', 'resource busy or locked'],
  17: ['EEXIST', 'file already exists'],
  18: ['EXDEV', 'cross-device link not permitted'],
  20: ['ENOTDIR', 'not a directory'],
  21: ['EISDIR', 'illegal operation on a directory'],
  22: ['EINVAL', 'invalid argument'],
  23: ['ENFILE', 'file table overflow'],
  24: ['EMFILE', 'too many open files'],
  27: ['EFBIG', 'file too large'],
  28: ['ENOSPC', 'no space left on device'],
  30: ['EROFS', 'read-only file system'],
  31: ['EMLINK', 'too many links'],
  32: ['EPIPE', 'broken pipe'],
  36: ['ENAMETOOLONG', 'name too long'],
  39: ['ENOTEMPTY', 'directory not empty'],
  40: ['ELOOP', 'too many symbolic links encountered'],
  95: ['ENOTSUP', 'operation not supported on socket'],
  122: ['EDQUOT', 'disk quota exceeded'],
};

export interface FsError extends Error {
  errno: number;
  code: string;
  syscall: string;
  path?: string;
  dest?: string;
}

/** node:fs's error for a failed syscall. */
function fail(errno: number, syscall: string, path?: string, dest?: string): FsError {
  const [code, text] = UV_TEXT[errno] ?? [`E${errno}`, `error ${errno}`];
  let msg = `${code}: ${text}, ${syscall}`;
  if (path !== undefined) msg += ` '${path}'`;
  if (dest !== undefined) msg += ` -> '${dest}'`;
  const e = new Error(msg) as FsError;
  e.errno = -errno;
  e.code = code;
  e.syscall = syscall;
  if (path !== undefined) e.path = path;
  if (dest !== undefined) e.dest = dest;
  return e;
}

const isStr = (v: unknown): v is string => typeof v === 'string';
const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v);
const isBytes = (v: unknown): v is Uint8Array => v instanceof Uint8Array;
const plainPath = (p: unknown): p is string => isStr(p) && p.length > 0 && !p.includes('\0');

const O_RDONLY = 0;
const O_WRONLY = 1;
const O_RDWR = 2;
const O_CREAT = 0o100;
const O_EXCL = 0o200;
const O_NOCTTY = 0o400;
const O_TRUNC = 0o1000;
const O_APPEND = 0o2000;
const O_NONBLOCK = 0o4000;
const O_DSYNC = 0o10000;
const O_DIRECTORY = 0o200000;
const O_NOFOLLOW = 0o400000;
const O_CLOEXEC = 0o2000000;
const O_SYNC = 0o4010000;

const S_IFMT = 0o170000;
const S_IFSOCK = 0o140000;
const S_IFLNK = 0o120000;
const S_IFREG = 0o100000;
const S_IFBLK = 0o60000;
const S_IFDIR = 0o40000;
const S_IFCHR = 0o20000;
const S_IFIFO = 0o10000;

/** node:fs's `constants` on Linux (the ones a caller may use). */
export const constants = {
  UV_FS_SYMLINK_DIR: 1,
  UV_FS_SYMLINK_JUNCTION: 2,
  O_RDONLY,
  O_WRONLY,
  O_RDWR,
  UV_DIRENT_UNKNOWN: 0,
  UV_DIRENT_FILE: 1,
  UV_DIRENT_DIR: 2,
  UV_DIRENT_LINK: 3,
  UV_DIRENT_FIFO: 4,
  UV_DIRENT_SOCKET: 5,
  UV_DIRENT_CHAR: 6,
  UV_DIRENT_BLOCK: 7,
  S_IFMT,
  S_IFREG,
  S_IFDIR,
  S_IFCHR,
  S_IFBLK,
  S_IFIFO,
  S_IFLNK,
  S_IFSOCK,
  O_CREAT,
  O_EXCL,
  UV_FS_O_FILEMAP: 0,
  O_NOCTTY,
  O_TRUNC,
  O_APPEND,
  O_DIRECTORY,
  O_NOATIME: 0o1000000,
  O_NOFOLLOW,
  O_SYNC,
  O_DSYNC,
  O_DIRECT: 0o40000,
  O_NONBLOCK,
  S_IRWXU: 0o700,
  S_IRUSR: 0o400,
  S_IWUSR: 0o200,
  S_IXUSR: 0o100,
  S_IRWXG: 0o70,
  S_IRGRP: 0o40,
  S_IWGRP: 0o20,
  S_IXGRP: 0o10,
  S_IRWXO: 0o7,
  S_IROTH: 0o4,
  S_IWOTH: 0o2,
  S_IXOTH: 0o1,
  F_OK: 0,
  R_OK: 4,
  W_OK: 2,
  X_OK: 1,
  UV_FS_COPYFILE_EXCL: 1,
  COPYFILE_EXCL: 1,
  UV_FS_COPYFILE_FICLONE: 2,
  COPYFILE_FICLONE: 2,
  UV_FS_COPYFILE_FICLONE_FORCE: 4,
  COPYFILE_FICLONE_FORCE: 4,
} as const;

const FLAGS: Record<string, number> = {
  r: O_RDONLY,
  rs: O_RDONLY | O_SYNC,
  sr: O_RDONLY | O_SYNC,
  'r+': O_RDWR,
  'rs+': O_RDWR | O_SYNC,
  'sr+': O_RDWR | O_SYNC,
  w: O_TRUNC | O_CREAT | O_WRONLY,
  wx: O_TRUNC | O_CREAT | O_WRONLY | O_EXCL,
  xw: O_TRUNC | O_CREAT | O_WRONLY | O_EXCL,
  'w+': O_TRUNC | O_CREAT | O_RDWR,
  'wx+': O_TRUNC | O_CREAT | O_RDWR | O_EXCL,
  'xw+': O_TRUNC | O_CREAT | O_RDWR | O_EXCL,
  a: O_APPEND | O_CREAT | O_WRONLY,
  ax: O_APPEND | O_CREAT | O_WRONLY | O_EXCL,
  xa: O_APPEND | O_CREAT | O_WRONLY | O_EXCL,
  as: O_APPEND | O_CREAT | O_WRONLY | O_SYNC,
  sa: O_APPEND | O_CREAT | O_WRONLY | O_SYNC,
  'a+': O_APPEND | O_CREAT | O_RDWR,
  'ax+': O_APPEND | O_CREAT | O_RDWR | O_EXCL,
  'xa+': O_APPEND | O_CREAT | O_RDWR | O_EXCL,
  'as+': O_APPEND | O_CREAT | O_RDWR | O_SYNC,
  'sa+': O_APPEND | O_CREAT | O_RDWR | O_SYNC,
};

/** The open(2) flags of a node:fs flag argument, or undefined when it is not one handled here. */
function flagsOf(f: unknown, dflt: string): number | undefined {
  if (f === undefined || f === null) return FLAGS[dflt];
  if (isStr(f)) return FLAGS[f];
  return isInt(f) ? f : undefined;
}

const modeOf = (m: unknown, dflt: number): number | undefined =>
  m === undefined || m === null ? dflt : isInt(m) && m >= 0 ? m : undefined;

function sysOpen(l: Libc, path: string, flags: number, mode: number): number {
  const fd = l.open(cstr(path), flags | O_CLOEXEC, mode);
  if (fd < 0) throw fail(l.errno(), 'open', path);
  return fd;
}

export const openSync: Fs['openSync'] = (path, flags?, mode?) => {
  const l = libc();
  const f = flagsOf(flags, 'r');
  const m = modeOf(mode, 0o666);
  if (!l || !plainPath(path) || f === undefined || m === undefined)
    return (real().openSync as (...a: unknown[]) => number)(path, flags, mode);
  return sysOpen(l, path, f, m);
};

export const closeSync: Fs['closeSync'] = (fd) => {
  const l = libc();
  if (!l || !isInt(fd) || fd < 0) return real().closeSync(fd);
  if (l.close(fd) < 0) throw fail(l.errno(), 'close');
};

export const fsyncSync: Fs['fsyncSync'] = (fd) => {
  const l = libc();
  if (!l || !isInt(fd) || fd < 0) return real().fsyncSync(fd);
  if (l.fsync(fd) < 0) throw fail(l.errno(), 'fsync');
};

/** A part of `buf` as the view FFI passes (offset, length checked as node:fs does, else undefined). */
function span(buf: Uint8Array, offset: unknown, length: unknown): Uint8Array | undefined {
  const off = offset === undefined || offset === null ? 0 : offset;
  if (!isInt(off) || off < 0 || off > buf.length) return undefined;
  const len = length === undefined || length === null ? buf.length - off : length;
  if (!isInt(len) || len < 0 || off + len > buf.length) return undefined;
  return buf.subarray(off, off + len);
}

const noPosition = (p: unknown): boolean => p === undefined || p === null || p === -1;

export const readSync = ((fd: number, buffer: NodeJS.ArrayBufferView, offset?: unknown, length?: unknown, position?: unknown): number => {
  const l = libc();
  const part = l && isInt(fd) && fd >= 0 && isBytes(buffer) && noPosition(position) ? span(buffer, offset, length) : undefined;
  if (!l || !part) return (real().readSync as (...a: unknown[]) => number)(fd, buffer, offset, length, position);
  if (part.length === 0) return 0;
  const n = Number(l.read(fd, part, part.length));
  if (n < 0) throw fail(l.errno(), 'read');
  return n;
}) as Fs['readSync'];

function writeAll(l: Libc, fd: number, b: Uint8Array): number {
  const n = Number(l.write(fd, b, b.length));
  if (n < 0) throw fail(l.errno(), 'write');
  return n;
}

export const writeSync = ((fd: number, data: unknown, a?: unknown, b?: unknown, position?: unknown): number => {
  const l = libc();
  if (l && isInt(fd) && fd >= 0) {
    // writeSync(fd, string[, position[, encoding]]): utf8 only, no position
    if (isStr(data) && noPosition(a) && (b === undefined || b === 'utf8' || b === 'utf-8'))
      return data ? writeAll(l, fd, enc.encode(data)) : 0;
    if (isBytes(data) && noPosition(position)) {
      const part = span(data, a, b);
      if (part) return part.length ? writeAll(l, fd, part) : 0;
    }
  }
  return (real().writeSync as (...a: unknown[]) => number)(fd, data, a, b, position);
}) as Fs['writeSync'];

/** statx(2) results as node:fs's Stats (number fields, the is*() methods, the Date getters). */
class Stats {
  dev = 0;
  mode = 0;
  nlink = 0;
  uid = 0;
  gid = 0;
  rdev = 0;
  blksize = 0;
  ino = 0;
  size = 0;
  blocks = 0;
  atimeMs = 0;
  mtimeMs = 0;
  ctimeMs = 0;
  birthtimeMs = 0;
  isFile(): boolean {
    return (this.mode & S_IFMT) === S_IFREG;
  }
  isDirectory(): boolean {
    return (this.mode & S_IFMT) === S_IFDIR;
  }
  isCharacterDevice(): boolean {
    return (this.mode & S_IFMT) === S_IFCHR;
  }
  isBlockDevice(): boolean {
    return (this.mode & S_IFMT) === S_IFBLK;
  }
  isSymbolicLink(): boolean {
    return (this.mode & S_IFMT) === S_IFLNK;
  }
  isFIFO(): boolean {
    return (this.mode & S_IFMT) === S_IFIFO;
  }
  isSocket(): boolean {
    return (this.mode & S_IFMT) === S_IFSOCK;
  }
  get atime(): Date {
    return new Date(this.atimeMs);
  }
  get mtime(): Date {
    return new Date(this.mtimeMs);
  }
  get ctime(): Date {
    return new Date(this.ctimeMs);
  }
  get birthtime(): Date {
    return new Date(this.birthtimeMs);
  }
}

/** glibc's makedev(): the st_dev / st_rdev number stat(2) gives. */
const makedev = (major: number, minor: number): number =>
  Number(
    ((BigInt(major) & 0xfffff000n) << 32n) |
      ((BigInt(major) & 0xfffn) << 8n) |
      ((BigInt(minor) & 0xffffff00n) << 12n) |
      (BigInt(minor) & 0xffn),
  );

const AT_FDCWD = -100;
const AT_SYMLINK_NOFOLLOW = 0x100;
const AT_EMPTY_PATH = 0x1000;
const STATX_ALL = 0xfff;
const EMPTY = new Uint8Array(1);

function statx(l: Libc, dirfd: number, path: Uint8Array, flags: number, syscall: string, shown?: string): Stats | undefined {
  const buf = new Uint8Array(256);
  if (l.statx(dirfd, path, flags, STATX_ALL, buf) < 0) {
    const errno = l.errno();
    throw fail(errno, syscall, shown);
  }
  const v = new DataView(buf.buffer);
  const u64 = (o: number): number => Number(v.getBigUint64(o, true));
  const ms = (o: number): number => Number(v.getBigInt64(o, true)) * 1000 + v.getUint32(o + 8, true) / 1e6;
  const s = new Stats();
  s.blksize = v.getUint32(4, true);
  s.nlink = v.getUint32(16, true);
  s.uid = v.getUint32(20, true);
  s.gid = v.getUint32(24, true);
  s.mode = v.getUint16(28, true);
  s.ino = u64(32);
  s.size = u64(40);
  s.blocks = u64(48);
  s.atimeMs = ms(64);
  s.birthtimeMs = ms(80);
  s.ctimeMs = ms(96);
  s.mtimeMs = ms(112);
  s.rdev = makedev(v.getUint32(128, true), v.getUint32(132, true));
  s.dev = makedev(v.getUint32(136, true), v.getUint32(140, true));
  return s;
}

type StatOpts = { bigint?: boolean; throwIfNoEntry?: boolean } | undefined;
const plainStatOpts = (o: unknown): o is StatOpts =>
  o === undefined || (typeof o === 'object' && o !== null && !(o as { bigint?: unknown }).bigint);

function statPath(follow: boolean, path: unknown, opts: unknown): Stats | undefined {
  const l = libc();
  if (!l || !plainPath(path) || !plainStatOpts(opts)) return undefined;
  try {
    return statx(l, AT_FDCWD, cstr(path), follow ? 0 : AT_SYMLINK_NOFOLLOW, follow ? 'stat' : 'lstat', path);
  } catch (e) {
    if ((e as FsError).code === 'ENOENT' && (opts as StatOpts)?.throwIfNoEntry === false) return undefined;
    throw e;
  }
}

export const statSync = ((path: string, opts?: StatOpts) => {
  if (libc() && plainPath(path) && plainStatOpts(opts)) return statPath(true, path, opts);
  return real().statSync(path, opts as never);
}) as Fs['statSync'];

export const lstatSync = ((path: string, opts?: StatOpts) => {
  if (libc() && plainPath(path) && plainStatOpts(opts)) return statPath(false, path, opts);
  return real().lstatSync(path, opts as never);
}) as Fs['lstatSync'];

export const fstatSync = ((fd: number, opts?: StatOpts) => {
  const l = libc();
  if (!l || !isInt(fd) || fd < 0 || !plainStatOpts(opts)) return real().fstatSync(fd, opts as never);
  return statx(l, fd, EMPTY, AT_EMPTY_PATH, 'fstat');
}) as Fs['fstatSync'];

export const statfsSync = ((path: string, opts?: { bigint?: boolean }) => {
  const l = libc();
  if (!l || !plainPath(path) || (opts !== undefined && opts.bigint)) return real().statfsSync(path, opts as never);
  const buf = new Uint8Array(120);
  if (l.statfs(cstr(path), buf) < 0) throw fail(l.errno(), 'statfs', path);
  const v = new DataView(buf.buffer);
  const n = (o: number): number => Number(v.getBigInt64(o, true));
  // struct statfs (x86_64): f_type, f_bsize, f_blocks, f_bfree, f_bavail, f_files, f_ffree (longs)
  return { type: n(0), bsize: n(8), blocks: n(16), bfree: n(24), bavail: n(32), files: n(40), ffree: n(48) };
}) as Fs['statfsSync'];

/** Text or bytes of an encoding option node:fs takes (utf8/latin1 handled here), or false when not handled. */
function encodingOf(o: unknown): 'utf8' | 'latin1' | null | false {
  const e = typeof o === 'object' && o !== null ? (o as { encoding?: unknown }).encoding : o;
  if (typeof o === 'object' && o !== null && Object.keys(o).some((k) => k !== 'encoding' && k !== 'flag')) return false;
  if (typeof o === 'object' && o !== null && (o as { flag?: unknown }).flag !== undefined && (o as { flag?: unknown }).flag !== 'r')
    return false;
  if (e === undefined || e === null) return null;
  if (e === 'utf8' || e === 'utf-8') return 'utf8';
  if (e === 'latin1' || e === 'binary') return 'latin1';
  return false;
}

export const readFileSync = ((path: unknown, opts?: unknown) => {
  const l = libc();
  const encoding = encodingOf(opts);
  if (!l || !plainPath(path) || encoding === false) return (real().readFileSync as (...a: unknown[]) => unknown)(path, opts);
  const fd = sysOpen(l, path, O_RDONLY, 0o666);
  const chunks: Uint8Array[] = [];
  let total = 0;
  try {
    for (let size = 8192; ; size = Math.min(size * 2, 1 << 20)) {
      const b = new Uint8Array(size);
      const n = Number(l.read(fd, b, size));
      if (n < 0) {
        const errno = l.errno();
        if (errno === 4) continue; // EINTR
        throw fail(errno, 'read');
      }
      if (n === 0) break;
      chunks.push(n === size ? b : b.subarray(0, n));
      total += n;
    }
  } finally {
    l.close(fd);
  }
  const out = chunks.length === 1 ? Buffer.from(chunks[0].buffer, 0, total) : Buffer.concat(chunks, total);
  return encoding ? out.toString(encoding) : out;
}) as Fs['readFileSync'];

function bytesOf(data: unknown, encoding: unknown): Uint8Array | undefined {
  if (isBytes(data)) return data;
  if (isStr(data) && (encoding === undefined || encoding === null || encoding === 'utf8' || encoding === 'utf-8')) return enc.encode(data);
  return undefined;
}

/** writeFileSync / appendFileSync: data and options this module handles, as bytes, open flags, mode. */
function writeArgs(data: unknown, opts: unknown, dflt: string): [Uint8Array, number, number] | undefined {
  let encoding: unknown;
  let flag: unknown;
  let mode: unknown;
  if (isStr(opts) || opts === undefined || opts === null) encoding = opts;
  else if (typeof opts === 'object') {
    if (Object.keys(opts).some((k) => k !== 'encoding' && k !== 'flag' && k !== 'mode')) return undefined;
    ({ encoding, flag, mode } = opts as { encoding?: unknown; flag?: unknown; mode?: unknown });
  } else return undefined;
  const bytes = bytesOf(data, encoding);
  const flags = flagsOf(flag, dflt);
  const m = modeOf(mode, 0o666);
  return bytes && flags !== undefined && m !== undefined ? [bytes, flags, m] : undefined;
}

function writeFileWith(l: Libc, path: string, [bytes, flags, mode]: [Uint8Array, number, number]): void {
  const fd = sysOpen(l, path, flags, mode);
  try {
    let off = 0;
    while (off < bytes.length) off += writeAll(l, fd, bytes.subarray(off));
  } finally {
    l.close(fd);
  }
}

export const writeFileSync = ((path: unknown, data: unknown, opts?: unknown) => {
  const l = libc();
  const args = writeArgs(data, opts, 'w');
  if (!l || !plainPath(path) || !args) return (real().writeFileSync as (...a: unknown[]) => void)(path, data, opts);
  writeFileWith(l, path, args);
}) as Fs['writeFileSync'];

export const appendFileSync = ((path: unknown, data: unknown, opts?: unknown) => {
  const l = libc();
  const args = writeArgs(data, opts, 'a');
  if (!l || !plainPath(path) || !args) return (real().appendFileSync as (...a: unknown[]) => void)(path, data, opts);
  writeFileWith(l, path, args);
}) as Fs['appendFileSync'];

export const existsSync: Fs['existsSync'] = (path) => {
  const l = libc();
  if (!l || !isStr(path)) return real().existsSync(path);
  if (!plainPath(path)) return false;
  return l.access(cstr(path), 0) === 0;
};

export const accessSync: Fs['accessSync'] = (path, mode?) => {
  const l = libc();
  const m = mode === undefined ? 0 : mode;
  if (!l || !plainPath(path) || !isInt(m) || m < 0 || m > 7) return real().accessSync(path, mode);
  if (l.access(cstr(path), m) < 0) throw fail(l.errno(), 'access', path);
};

const EEXIST = 17;
const ENOENT = 2;

/** mkdir -p as node:fs does it: the first directory made, or undefined when it existed. */
function mkdirp(l: Libc, path: string, mode: number): string | undefined {
  if (l.mkdir(cstr(path), mode) === 0) return path;
  const errno = l.errno();
  if (errno === EEXIST) {
    const st = statx(l, AT_FDCWD, cstr(path), 0, 'stat', path);
    if (st?.isDirectory()) return undefined;
    throw fail(EEXIST, 'mkdir', path);
  }
  if (errno !== ENOENT) throw fail(errno, 'mkdir', path);
  const slash = path.replace(/\/+$/, '').lastIndexOf('/');
  const parent = slash > 0 ? path.slice(0, slash) : '';
  if (!parent) throw fail(errno, 'mkdir', path);
  const first = mkdirp(l, parent, mode);
  if (l.mkdir(cstr(path), mode) < 0) {
    const again = l.errno();
    if (again !== EEXIST || !statx(l, AT_FDCWD, cstr(path), 0, 'stat', path)?.isDirectory()) throw fail(again, 'mkdir', path);
    return first;
  }
  return first ?? path;
}

export const mkdirSync = ((path: unknown, opts?: unknown) => {
  const l = libc();
  let recursive = false;
  let mode: number | undefined = 0o777;
  if (isInt(opts)) mode = opts;
  else if (typeof opts === 'object' && opts !== null && Object.keys(opts).every((k) => k === 'recursive' || k === 'mode')) {
    recursive = (opts as { recursive?: unknown }).recursive === true;
    mode = modeOf((opts as { mode?: unknown }).mode, 0o777);
  } else if (opts !== undefined) mode = undefined;
  // a relative path with recursive: node:fs resolves it first; leave that to it
  if (!l || !plainPath(path) || mode === undefined || (recursive && !path.startsWith('/')))
    return (real().mkdirSync as (...a: unknown[]) => unknown)(path, opts);
  if (recursive) return mkdirp(l, path, mode);
  if (l.mkdir(cstr(path), mode) < 0) throw fail(l.errno(), 'mkdir', path);
  return undefined;
}) as Fs['mkdirSync'];

export const rmdirSync: Fs['rmdirSync'] = (path, opts?) => {
  const l = libc();
  if (!l || !plainPath(path) || opts !== undefined) return real().rmdirSync(path, opts);
  if (l.rmdir(cstr(path)) < 0) throw fail(l.errno(), 'rmdir', path);
};

export const unlinkSync: Fs['unlinkSync'] = (path) => {
  const l = libc();
  if (!l || !plainPath(path)) return real().unlinkSync(path);
  if (l.unlink(cstr(path)) < 0) throw fail(l.errno(), 'unlink', path);
};

export const renameSync: Fs['renameSync'] = (from, to) => {
  const l = libc();
  if (!l || !plainPath(from) || !plainPath(to)) return real().renameSync(from, to);
  if (l.rename(cstr(from), cstr(to)) < 0) throw fail(l.errno(), 'rename', from, to);
};

export const linkSync: Fs['linkSync'] = (existing, newPath) => {
  const l = libc();
  if (!l || !plainPath(existing) || !plainPath(newPath)) return real().linkSync(existing, newPath);
  if (l.link(cstr(existing), cstr(newPath)) < 0) throw fail(l.errno(), 'link', existing, newPath);
};

const dec = new TextDecoder();

export const realpathSync = ((path: unknown, opts?: unknown) => {
  const l = libc();
  if (!l || !plainPath(path) || !(opts === undefined || opts === 'utf8' || opts === 'utf-8'))
    return (real().realpathSync as (...a: unknown[]) => unknown)(path, opts);
  const out = new Uint8Array(4097);
  // node:fs (Node's and Bun's) reports a failed realpath as the lstat of the path
  if (!l.realpath(cstr(path), out)) throw fail(l.errno(), 'lstat', path);
  return dec.decode(out.subarray(0, out.indexOf(0)));
}) as Fs['realpathSync'];

export const readdirSync = ((path: unknown, opts?: unknown) => {
  const l = libc();
  const plainOpts =
    opts === undefined ||
    opts === 'utf8' ||
    opts === 'utf-8' ||
    (typeof opts === 'object' &&
      opts !== null &&
      Object.entries(opts).every(([k, v]) => (k === 'encoding' && (v === 'utf8' || v === 'utf-8')) || (k !== 'encoding' && !v)));
  if (!l || !plainPath(path) || !plainOpts) return (real().readdirSync as (...a: unknown[]) => unknown)(path, opts);
  const dir = l.opendir(cstr(path));
  if (!dir) throw fail(l.errno(), 'scandir', path);
  const names: string[] = [];
  try {
    for (let ent = l.readdir(dir); ent; ent = l.readdir(dir)) {
      const name = l.direntName(ent);
      if (name !== '.' && name !== '..') names.push(name);
    }
  } finally {
    l.closedir(dir);
  }
  return names;
}) as Fs['readdirSync'];

// The rest of node:fs, as the real module's (loaded on first use).
export const readlinkSync: Fs['readlinkSync'] = ((...a: unknown[]) => (real().readlinkSync as (...a: unknown[]) => unknown)(...a)) as never;
export const rmSync: Fs['rmSync'] = (...a) => real().rmSync(...a);
export const symlinkSync: Fs['symlinkSync'] = (...a) => real().symlinkSync(...a);
export const chmodSync: Fs['chmodSync'] = (...a) => real().chmodSync(...a);
export const copyFileSync: Fs['copyFileSync'] = (...a) => real().copyFileSync(...a);
export const truncateSync: Fs['truncateSync'] = (...a) => real().truncateSync(...a);
export const ftruncateSync: Fs['ftruncateSync'] = (...a) => real().ftruncateSync(...a);
export const mkdtempSync: Fs['mkdtempSync'] = ((...a: unknown[]) => (real().mkdtempSync as (...a: unknown[]) => unknown)(...a)) as never;
export const utimesSync: Fs['utimesSync'] = (...a) => real().utimesSync(...a);
export const watch: Fs['watch'] = ((...a: unknown[]) => (real().watch as (...a: unknown[]) => unknown)(...a)) as never;
export const createReadStream: Fs['createReadStream'] = (...a) => real().createReadStream(...a);
export const createWriteStream: Fs['createWriteStream'] = (...a) => real().createWriteStream(...a);
