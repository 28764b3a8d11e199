/**
 * JSON-file lease store: one file, changed under a lock and replaced by atomic rename, so
 * readers never see half a file. Expiry is a timestamp in each entry.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { CniError, ErrorCode } from '../../shared/cni/errors.ts';
import { withLock } from '../../shared/flock.ts';
import type { Lease, Store } from './store.ts';

interface Entry extends Lease {
  /** ms since the epoch */
  expires: number;
}
interface FileShape {
  leases: Record<string, Entry>;
}

export class FileStore implements Store {
  private readonly dir: string;
  private readonly lockName: string;
  constructor(private readonly file: string) {
    this.dir = path.dirname(file);
    this.lockName = `${path.basename(file)}.lock`;
  }

  private read(): FileShape {
    if (!existsSync(this.file)) return { leases: {} };
    try {
      const data = JSON.parse(readFileSync(this.file, 'utf8')) as FileShape;
      return data && typeof data.leases === 'object' ? data : { leases: {} };
    } catch (e) {
      throw new CniError(ErrorCode.IOFailure, `overlay store ${this.file} is not readable JSON`, (e as Error).message);
    }
  }

  private write(data: FileShape): void {
    const now = Date.now();
    for (const [k, v] of Object.entries(data.leases)) if (v.expires <= now) delete data.leases[k];
    const tmp = `${this.file}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify(data, null, 1), { mode: 0o644 });
    renameSync(tmp, this.file);
  }

  private async update<T>(body: (data: FileShape) => T): Promise<T> {
    mkdirSync(this.dir, { recursive: true });
    return withLock(this.dir, async () => {
      const data = this.read();
      const out = body(data);
      this.write(data);
      return out;
    }, this.lockName);
  }

  async list(): Promise<Lease[]> {
    const now = Date.now();
    return Object.values(this.read().leases)
      .filter((e) => e.expires > now)
      .map(({ expires: _e, ...l }) => l);
  }

  async create(lease: Lease, ttl: number): Promise<boolean> {
    return this.update((d) => {
      const cur = d.leases[lease.subnet];
      if (cur && cur.expires > Date.now()) return false;
      d.leases[lease.subnet] = { ...lease, expires: Date.now() + ttl * 1000 };
      return true;
    });
  }

  async renew(lease: Lease, ttl: number): Promise<boolean> {
    return this.update((d) => {
      const cur = d.leases[lease.subnet];
      if (!cur || cur.expires <= Date.now() || cur.publicIP !== lease.publicIP) return false;
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
