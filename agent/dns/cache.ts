/**
 * Cache of upstream answers: raw messages as the upstream sent them, keyed by
 * (name lower-cased, type, class, DNSSEC OK). Bounded (least recently used out first); an entry
 * lives for the smallest TTL of its records (positive) or min(SOA TTL, SOA minimum) (negative,
 * RFC 2308), capped; served with every TTL lowered by the entry's age.
 */
import { ttlOffsets } from './wire.ts';

interface Entry {
  msg: Buffer;
  ttlAt: number[];
  storedMs: number;
  expiresMs: number;
}

export class AnswerCache {
  private readonly map = new Map<string, Entry>();
  evictions = 0;

  private readonly maxEntries: number;
  private readonly maxTtl: number;
  private readonly now: () => number;

  constructor(maxEntries: number, maxTtl: number, now: () => number = () => Date.now()) {
    this.maxEntries = maxEntries;
    this.maxTtl = maxTtl;
    this.now = now;
  }

  get size(): number {
    return this.map.size;
  }

  static key(name: string, type: string, klass: string, dnssecOk: boolean): string {
    return `${name.toLowerCase()}|${type}|${klass}|${dnssecOk ? 1 : 0}`;
  }

  /**
   * Store `msg` for `ttl` seconds (already computed by the caller from the records);
   * nothing is stored for ttl <= 0 or a message whose records do not decode.
   */
  put(key: string, msg: Buffer, ttl: number): void {
    if (this.maxEntries <= 0) return;
    const t = Math.min(ttl, this.maxTtl);
    if (!(t > 0)) return;
    const ttlAt = ttlOffsets(msg);
    if (!ttlAt) return;
    const now = this.now();
    this.map.delete(key);
    this.map.set(key, { msg: Buffer.from(msg), ttlAt, storedMs: now, expiresMs: now + t * 1000 });
    while (this.map.size > this.maxEntries) {
      const oldest = this.map.keys().next().value as string;
      this.map.delete(oldest);
      this.evictions++;
    }
  }

  /** A copy of the cached message with TTLs lowered by its age, or undefined (absent or expired). */
  get(key: string): Buffer | undefined {
    const e = this.map.get(key);
    if (!e) return undefined;
    const now = this.now();
    if (now >= e.expiresMs) {
      this.map.delete(key);
      return undefined;
    }
    this.map.delete(key);
    this.map.set(key, e);
    const age = Math.floor((now - e.storedMs) / 1000);
    const out = Buffer.from(e.msg);
    if (age > 0) for (const at of e.ttlAt) out.writeUInt32BE(Math.max(0, e.msg.readUInt32BE(at) - age), at);
    return out;
  }

  clear(): void {
    this.map.clear();
  }
}
