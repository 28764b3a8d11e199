/**
 * The on-disk store, compatible with the reference host-local: one file per reserved address,
 * `<dataDir>/<network>/<ip>`, holding `<containerID>\r\n<ifname>`, and
 * `last_reserved_ip.<range set index>` holding the last address handed out (no newline).
 *
 * Writes never leave a half state: a reservation is a fully written temporary file that is
 * hard-linked to its address name (link fails if the name exists: the atomic O_EXCL of a
 * finished file), and last_reserved_ip is replaced by rename. The lock is flock(2) on
 * `<store>/lock`, the same lock the reference takes, so the two can share a store; the
 * exclusive link alone already keeps two allocators from ever taking one address.
 */
import { randomHex } from '../../shared/hash.ts';
import {
  accessSync,
  closeSync,
  constants,
  existsSync,
  fsyncSync,
  linkSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  realpathSync,
  renameSync,
  statSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import path from 'node:path';
import { CniError, ErrorCode } from '../../shared/cni/errors.ts';
import { formatIP, parseIP, type IP } from '../../shared/ipnet.ts';
import { requestFlock, type FlockRequest, withFlock } from '../../shared/flock.ts';

export const LAST_RESERVED_PREFIX = 'last_reserved_ip.';
export const LOCK_NAME = 'lock';
const TMP_PREFIX = '.cnits-tmp.';
const LINE_BREAK = '\r\n';

export interface Owner {
  containerId: string;
  /** Undefined in files of old reference versions, which stored the container ID only. */
  ifname?: string;
}

export interface Reservation {
  ip: IP;
  /** The file name (the address as written by whoever reserved it). */
  name: string;
  /** Undefined when the file is empty or unreadable (e.g. a writer died mid-way). */
  owner?: Owner;
}

/** Parse a reservation file's content (`id\r\nifname`, or an old `id`). */
export function parseOwner(text: string): Owner | undefined {
  const lines = text
    .trim()
    .split(/\r?\n/)
    .map((l) => l.trim());
  if (!lines[0]) return undefined;
  return lines.length > 1 && lines[1] ? { containerId: lines[0], ifname: lines[1] } : { containerId: lines[0] };
}

export const formatOwner = (containerId: string, ifname: string): string => `${containerId.trim()}${LINE_BREAK}${ifname}`;

/** Does the reservation belong to this attachment? `legacy` also matches ID-only files. */
export function ownedBy(r: Reservation, containerId: string, ifname: string, legacy = false): boolean {
  if (!r.owner || r.owner.containerId !== containerId) return false;
  return r.owner.ifname === ifname || (legacy && r.owner.ifname === undefined);
}

const errno = (e: unknown): string | undefined => (e as NodeJS.ErrnoException).code;

export class Store {
  private constructor(readonly dir: string) {}

  /**
   * Open `<dataDir>/<network>` (already checked lexically by config.storeDir). With `create`,
   * make it; without, return undefined when it does not exist (DEL and GC create nothing).
   * Refuses a directory that resolves outside dataDir (a planted symlink).
   */
  static open(dir: string, create: boolean): Store | undefined {
    const root = path.dirname(dir);
    if (create) {
      try {
        makeDir(dir);
      } catch (e) {
        throw new CniError(ErrorCode.IOFailure, `cannot create the address store ${dir}: ${errno(e) ?? 'error'}`, (e as Error).message);
      }
    } else if (!existsSync(dir)) {
      return undefined;
    }
    let real: string;
    let realRoot: string;
    try {
      real = realpathSync(dir);
      realRoot = realpathSync(root);
    } catch (e) {
      throw new CniError(ErrorCode.IOFailure, `cannot resolve the address store ${dir}`, (e as Error).message);
    }
    if (path.dirname(real) !== realRoot || !lstatSync(dir).isDirectory()) {
      throw new CniError(
        ErrorCode.InvalidConfig,
        `invalid network config: name: the address store ${dir} resolves outside ipam.dataDir`,
        'field "name"',
      );
    }
    return new Store(dir);
  }

  /**
   * Run `body` holding the store lock: flock(2) on `<store>/lock`, the very lock the reference
   * plugin takes, so both implementations exclude each other on a shared store.
   */
  locked<T>(body: () => Promise<T> | T): Promise<T> {
    return withFlock(path.join(this.dir, LOCK_NAME), async () => body());
  }

  /** Ask for the store lock early (the helper starts while other work goes on). */
  requestLock(): FlockRequest {
    return requestFlock(path.join(this.dir, LOCK_NAME));
  }

  /** Every reservation file (names that parse as an address). */
  list(): Reservation[] {
    const out: Reservation[] = [];
    for (const name of readdirSync(this.dir)) {
      const ip = parseIP(name);
      if (!ip) continue;
      let owner: Owner | undefined;
      try {
        owner = parseOwner(readFileSync(path.join(this.dir, name), 'utf8'));
      } catch (e) {
        if (errno(e) === 'ENOENT' || errno(e) === 'EISDIR') continue;
        owner = undefined;
      }
      out.push({ ip, name, owner });
    }
    return out;
  }

  /** The owner written in an address's file, if it is reserved and readable. */
  ownerOf(ip: IP): Owner | undefined {
    try {
      return parseOwner(readFileSync(path.join(this.dir, formatIP(ip)), 'utf8'));
    } catch {
      return undefined;
    }
  }

  /**
   * A reserver for one attachment: it keeps a fully written, synced temporary file with the
   * owner, and reserves an address by hard-linking that file to the address name (which fails
   * if the name exists). After a successful link the temporary name is dropped, so every
   * reservation file is its own inode. Prepare it before taking the lock; `close()` after.
   */
  reserver(containerId: string, ifname: string, count: number): Reserver {
    return new Reserver(this.dir, formatOwner(containerId, ifname), count);
  }

  /** Remove a reservation file (by its name as listed); absent is fine. */
  release(name: string): void {
    if (!parseIP(name)) return;
    try {
      unlinkSync(path.join(this.dir, name));
    } catch (e) {
      if (errno(e) !== 'ENOENT') throw new CniError(ErrorCode.IOFailure, `cannot release ${name} in ${this.dir}`, (e as Error).message);
    }
  }

  discard(file: string): void {
    discard(file);
  }

  lastReserved(setIndex: number): IP | undefined {
    try {
      return parseIP(readFileSync(path.join(this.dir, `${LAST_RESERVED_PREFIX}${setIndex}`), 'utf8').trim()) ?? undefined;
    } catch {
      return undefined;
    }
  }

  setLastReserved(setIndex: number, ip: IP): void {
    const file = path.join(this.dir, `${LAST_RESERVED_PREFIX}${setIndex}`);
    const tmp = tmpName(this.dir);
    try {
      writeDurably(tmp, formatIP(ip));
      renameSync(tmp, file);
    } catch (e) {
      this.discard(tmp);
      throw new CniError(ErrorCode.IOFailure, `cannot write ${file}`, (e as Error).message);
    }
  }

  /**
   * Remove temporaries of writers that were killed (ADD calls this, so they never pile up for
   * runtimes that send no GC): those older than `ageMs`, and those whose writer (the pid in
   * the name) is gone and that are older than `deadMs` (a writer in another pid namespace
   * looks gone; it holds its temporary only while it waits for the lock). Never fails.
   */
  cleanTemporaries(ageMs: number, deadMs: number, now = Date.now()): string[] {
    const removed: string[] = [];
    try {
      for (const n of readdirSync(this.dir)) {
        if (!n.startsWith(TMP_PREFIX)) continue;
        const p = path.join(this.dir, n);
        let age: number;
        try {
          age = now - statSync(p).mtimeMs;
        } catch {
          continue;
        }
        const pid = Number(n.slice(TMP_PREFIX.length).split('.')[0]);
        if (age > ageMs || (age > deadMs && Number.isSafeInteger(pid) && pid > 0 && pid !== process.pid && !processAlive(pid))) {
          discard(p);
          removed.push(n);
        }
      }
    } catch {
      /* best effort */
    }
    return removed;
  }

  /** Leftover temporary files of writers that died, older than `ageMs`. */
  staleTemporaries(ageMs: number, now = Date.now()): string[] {
    return readdirSync(this.dir)
      .filter((n) => n.startsWith(TMP_PREFIX))
      .map((n) => path.join(this.dir, n))
      .filter((p) => {
        try {
          return now - statSync(p).mtimeMs > ageMs;
        } catch {
          return false;
        }
      });
  }

  ageMs(name: string, now = Date.now()): number {
    try {
      return now - statSync(path.join(this.dir, name)).mtimeMs;
    } catch {
      return 0;
    }
  }

  /** STATUS: can we create and remove a file in the store? */
  probe(): void {
    const tmp = tmpName(this.dir, 'probe.');
    writeDurably(tmp, '');
    unlinkSync(tmp);
  }
}

/**
 * Could `dir` be made? Its nearest existing ancestor must be a directory we may write to
 * (access(2) also reports EROFS for a read-only file system). Creates nothing.
 */
export function probeCreatable(dir: string): void {
  let p = dir;
  while (!existsSync(p) && path.dirname(p) !== p) p = path.dirname(p);
  if (!statSync(p).isDirectory()) throw new Error(`${p} is not a directory`);
  accessSync(p, constants.W_OK | constants.X_OK);
}

/**
 * mkdir -p. Node's recursive mkdir reports ENOENT whatever made a step fail (a read-only file
 * system, a permission): on failure the missing directories are made one by one, which throws
 * the real error (EROFS, EACCES, ENOTDIR...).
 */
function makeDir(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o755 });
  } catch (e) {
    const missing: string[] = [];
    for (let p = dir; !existsSync(p) && path.dirname(p) !== p; p = path.dirname(p)) missing.unshift(p);
    for (const m of missing) mkdirSync(m, { mode: 0o755 });
    throw e;
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return errno(e) === 'EPERM';
  }
}

/** Create `file` (never an existing one) with `text`; `sync` also flushes it to disk. */
function writeDurably(file: string, text: string, sync = false): void {
  const fd = openSync(file, 'wx', 0o644);
  try {
    writeSync(fd, text);
    if (sync) fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

const tmpName = (dir: string, tag = ''): string => path.join(dir, `${TMP_PREFIX}${process.pid}.${tag}${randomHex(6)}`);

function discard(file: string): void {
  try {
    unlinkSync(file);
  } catch {
    /* already gone */
  }
}

export class Reserver {
  /** Written and synced before the lock is taken, so the lock is held only for links. */
  private pool: string[] = [];
  constructor(
    private readonly dir: string,
    private readonly content: string,
    count: number,
  ) {
    try {
      for (let i = 0; i < count; i++) this.pool.push(this.prepare());
    } catch (e) {
      this.close();
      throw e;
    }
  }

  private prepare(): string {
    const tmp = tmpName(this.dir);
    try {
      writeDurably(tmp, this.content, true);
    } catch (e) {
      discard(tmp);
      throw new CniError(
        ErrorCode.IOFailure,
        `cannot write in the address store ${this.dir}: ${errno(e) ?? 'error'}`,
        (e as Error).message,
      );
    }
    return tmp;
  }

  /** Reserve `ip` for the owner; false when the address is already taken. */
  reserve(ip: IP): boolean {
    const tmp = this.pool[0] ?? this.prepare();
    if (this.pool.length === 0) this.pool.push(tmp);
    try {
      linkSync(tmp, path.join(this.dir, formatIP(ip)));
    } catch (e) {
      if (errno(e) === 'EEXIST') return false;
      throw new CniError(ErrorCode.IOFailure, `cannot reserve ${formatIP(ip)} in ${this.dir}`, (e as Error).message);
    }
    this.pool.shift();
    discard(tmp);
    return true;
  }

  close(): void {
    for (const f of this.pool) discard(f);
    this.pool = [];
  }
}
