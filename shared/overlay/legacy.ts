/**
 * Leases written by the previous overlay version, read (never written) so an upgraded host
 * keeps seeing the subnets that hosts of the old layout hold:
 *
 * - the JSON lease file, `{"leases": {"<subnet>": {publicIP, vtepMAC, hostname?, expires}}}`
 *   (`expires` in ms), at the `store.path` of a conflist that named a file;
 * - etcd keys `<prefix>/subnets/<10.244.3.0-24>` (default prefix `/cni-ts/overlay`), each
 *   the lease as JSON, bound to an etcd lease with the TTL (etcd drops them when not renewed).
 *
 * A record from here counts until it expires, unless the cluster store already has an object
 * for its subnet or a live lease of its host (store.ts merges them): each upgraded host carries
 * its own lease over on its first renewal. Records are untrusted and go through lease-parse.ts
 * like everything else; a malformed lease file is refused with code 5 naming the file, as the
 * previous version did, and is never rewritten.
 */
import { existsSync, readFileSync } from 'node:fs';
import { CniError, ErrorCode } from '../cni/errors.ts';
import { MAX_LEASE_TTL_SECONDS } from './config.ts';
import { printable } from './lease-parse.ts';
import { subnetFromKey, type RawLease } from './store-contract.ts';

/** Leases never live longer than the schema's largest `leaseTTL` (plus a minute of clock skew). */
export const MAX_TTL_MS = MAX_LEASE_TTL_SECONDS * 1000 + 60_000;

/** Why an `expires` (ms since the epoch) is unusable, or '' when it is a sane timestamp. Such a lease counts as expired. */
export function badExpiryMs(x: unknown, now: number): string {
  if (typeof x !== 'number' || !Number.isSafeInteger(x) || x <= 0) return `expires ${printable(x, 40)} is not a timestamp in ms`;
  if (x > now + MAX_TTL_MS) return `expires ${x} is further away than the longest lease TTL`;
  return '';
}

/** A legacy record: the raw lease (for the parser) and whether it still holds its subnet. */
export interface LegacyRecord {
  raw: RawLease;
  /** unexpired (a record with an unusable expiry is not) */
  live: boolean;
}

export interface LegacySource {
  /** where, for messages */
  readonly where: string;
  records(): Promise<LegacyRecord[]>;
}

/** The previous version's JSON lease file (read-only). Absent file: no records. */
export class LegacyFile implements LegacySource {
  constructor(readonly where: string) {}

  private malformed(why: string): CniError {
    return new CniError(
      ErrorCode.IOFailure,
      `overlay store ${this.where} is malformed: ${why}`,
      'the file must hold {"leases": {"<subnet>": {...}, ...}}',
    );
  }

  /** The file's entries, checked for shape: a malformed file is refused (code 5), never half-read. */
  private entries(): Record<string, Record<string, unknown>> {
    if (!existsSync(this.where)) return {};
    let data: unknown;
    try {
      data = JSON.parse(readFileSync(this.where, 'utf8'));
    } catch (e) {
      throw new CniError(ErrorCode.IOFailure, `overlay store ${this.where} is not readable JSON`, (e as Error).message);
    }
    if (!data || typeof data !== 'object' || Array.isArray(data)) throw this.malformed('the top level is not an object');
    const leases = (data as { leases?: unknown }).leases;
    if (leases === undefined) return {};
    if (!leases || typeof leases !== 'object' || Array.isArray(leases)) throw this.malformed('"leases" is not an object');
    for (const [k, v] of Object.entries(leases)) {
      if (!v || typeof v !== 'object' || Array.isArray(v)) throw this.malformed(`the entry ${printable(k, 60)} is not an object`);
    }
    return leases as Record<string, Record<string, unknown>>;
  }

  async records(): Promise<LegacyRecord[]> {
    const now = Date.now();
    const out: LegacyRecord[] = [];
    for (const [subnet, e] of Object.entries(this.entries())) {
      const bad = badExpiryMs(e.expires, now);
      if (bad) out.push({ raw: { subnet, value: e, invalid: bad }, live: false });
      else if ((e.expires as number) > now) out.push({ raw: { subnet, value: e }, live: true });
    }
    return out;
  }
}

/** What LegacyEtcd needs of the etcd backend (shared/store/etcd.ts `rawRange`). */
export interface RawRange {
  rawRange(prefix: string): Promise<Array<{ key: string; value: string }>>;
}

/** The previous version's etcd keys `<prefix>/subnets/*` (read-only; etcd expires them itself). */
export class LegacyEtcd implements LegacySource {
  readonly where: string;
  constructor(
    private readonly etcd: RawRange,
    private readonly dir: string,
  ) {
    this.where = `etcd ${dir}`;
  }

  async records(): Promise<LegacyRecord[]> {
    const kvs = await this.etcd.rawRange(this.dir);
    return kvs.map(({ key, value }) => ({ raw: { subnet: subnetFromKey(key.slice(key.lastIndexOf('/') + 1)), value }, live: true }));
  }
}
