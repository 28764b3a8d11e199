/**
 * JSON-file lease store: one file, changed under a lock and replaced by atomic rename, so
 * readers never see half a file. Expiry is a timestamp in each entry.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { CniError, ErrorCode } from '../cni/errors.ts';
import { withLock } from '../flock.ts';
import { MAX_LEASE_TTL_SECONDS } from './config.ts';
import { printable } from './lease-parse.ts';
import type { Lease, RawLease, Store } from './store-contract.ts';

/** A stored entry: the lease fields (untrusted, checked by lease-parse.ts) and its expiry. */
type Entry = Record<string, unknown> & { expires?: unknown };
interface FileShape {
  leases: Record<string, Entry>;
}

/** Leases never live longer than the schema's largest `leaseTTL`: a later `expires` is invalid. */
const MAX_TTL_MS = MAX_LEASE_TTL_SECONDS * 1000 + 60_000;

/** Why an entry's `expires` is unusable ('' when it is a sane timestamp); such an entry counts as expired. */
export function badExpiry(e: Entry, now: number): string {
  const x = e.expires;
  if (typeof x !== 'number' || !Number.isSafeInteger(x) || x <= 0) return `expires ${printable(x, 40)} is not a timestamp in ms`;
  if (x > now + MAX_TTL_MS) return `expires ${x} is further away than the longest lease TTL`;
  return '';
}
const live = (e: Entry | undefined, now: number): e is Entry => !!e && !badExpiry(e, now) && (e.expires as number) > now;

export class FileStore implements Store {
  private readonly dir: string;
  private readonly lockName: string;
  constructor(private readonly file: string) {
    this.dir = path.dirname(file);
    this.lockName = `${path.basename(file)}.lock`;
  }

  private malformed(why: string): CniError {
    return new CniError(
      ErrorCode.IOFailure,
      `overlay store ${this.file} is malformed: ${why}`,
      'the file must hold {"leases": {"<subnet>": {...}, ...}}',
    );
  }

  /** The file, checked for shape: a malformed store is refused (code 5), never half-read or overwritten. */
  private read(): FileShape {
    if (!existsSync(this.file)) return { leases: {} };
    let data: unknown;
    try {
      data = JSON.parse(readFileSync(this.file, 'utf8'));
    } catch (e) {
      throw new CniError(ErrorCode.IOFailure, `overlay store ${this.file} is not readable JSON`, (e as Error).message);
    }
    if (!data || typeof data !== 'object' || Array.isArray(data)) throw this.malformed('the top level is not an object');
    const leases = (data as { leases?: unknown }).leases;
    if (leases === undefined) return { ...(data as object), leases: {} };
    if (!leases || typeof leases !== 'object' || Array.isArray(leases)) throw this.malformed('"leases" is not an object');
    for (const [k, v] of Object.entries(leases)) {
      if (!v || typeof v !== 'object' || Array.isArray(v)) throw this.malformed(`the entry ${printable(k, 60)} is not an object`);
    }
    return data as FileShape;
  }

  private write(data: FileShape): void {
    const now = Date.now();
    for (const [k, v] of Object.entries(data.leases)) if (!live(v, now)) delete data.leases[k];
    const tmp = `${this.file}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify(data, null, 1), { mode: 0o644 });
    renameSync(tmp, this.file);
  }

  private async update<T>(body: (data: FileShape) => T): Promise<T> {
    mkdirSync(this.dir, { recursive: true });
    return withLock(
      this.dir,
      async () => {
        const data = this.read();
        const out = body(data);
        this.write(data);
        return out;
      },
      this.lockName,
    );
  }

  async list(): Promise<RawLease[]> {
    const now = Date.now();
    const out: RawLease[] = [];
    for (const [subnet, e] of Object.entries(this.read().leases)) {
      const bad = badExpiry(e, now);
      if (bad) out.push({ subnet, value: e, invalid: bad });
      else if ((e.expires as number) > now) out.push({ subnet, value: e });
    }
    return out;
  }

  async create(lease: Lease, ttl: number): Promise<boolean> {
    return this.update((d) => {
      if (live(d.leases[lease.subnet], Date.now())) return false;
      d.leases[lease.subnet] = { ...lease, expires: Date.now() + ttl * 1000 };
      return true;
    });
  }

  async renew(lease: Lease, ttl: number): Promise<boolean> {
    return this.update((d) => {
      const cur = d.leases[lease.subnet];
      if (!live(cur, Date.now()) || cur.publicIP !== lease.publicIP) return false;
      d.leases[lease.subnet] = { ...lease, expires: Date.now() + ttl * 1000 };
      return true;
    });
  }

  async release(subnet: string, publicIP: string): Promise<void> {
    await this.update((d) => {
      if (d.leases[subnet]?.publicIP === publicIP) delete d.leases[subnet];
    });
  }

  async watch(onChange: () => void): Promise<() => void> {
    // Poll the file's identity: rename gives every write a new inode. Expiries are caught by
    // the agent's periodic resync.
    let last = '';
    const stamp = (): string => {
      try {
        const s = statSync(this.file);
        return `${s.ino}:${s.mtimeMs}`;
      } catch {
        return '';
      }
    };
    last = stamp();
    const t = setInterval(() => {
      const now = stamp();
      if (now !== last) {
        last = now;
        onChange();
      }
    }, 500);
    return () => clearInterval(t);
  }

  async close(): Promise<void> {}
}
