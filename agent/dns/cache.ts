/**
 * Cache of upstream answers: raw messages as the upstream sent them, keyed by
 * (name lower-cased, type, class, DNSSEC OK). Bounded (least recently used out first; a hit
 * renews its place at most once a second); an entry
 * lives for the smallest TTL of its records (positive) or min(SOA TTL, SOA minimum) (negative,
 * RFC 2308), capped; served with every TTL lowered by the entry's age.
 */
import { copyOf, questionEnd, ttlOffsets } from './wire.ts';

/** One cached answer; `live` turns false when it leaves the cache (expired, replaced, evicted). */
export interface CacheEntry {
  readonly msg: Buffer;
  readonly ttlAt: number[];
  /** offset just past the question (12 + its length), as the library decodes it */
  readonly qe: number;
  readonly storedMs: number;
  readonly expiresMs: number;
  live: boolean;
  /** last move to the young end of the LRU order */
  bumpedMs: number;
  /** the entry's reply buffer for `renderShared`, and the age (s) its TTLs were lowered by */
  out?: Buffer;
  outAge: number;
}

export class AnswerCache {
  private readonly map = new Map<string, CacheEntry>();
  evictions = 0;

  private readonly maxEntries: number;
  private readonly maxTtl: number;
  readonly now: () => number;

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
    const qe = questionEnd(msg);
    if (!ttlAt || qe < 0) return;
    const now = this.now();
    const old = this.map.get(key);
    if (old) old.live = false;
    this.map.delete(key);
    this.map.set(key, { msg: Buffer.from(msg), ttlAt, qe, storedMs: now, expiresMs: now + t * 1000, live: true, bumpedMs: now, outAge: 0 });
    while (this.map.size > this.maxEntries) {
      const oldest = this.map.keys().next().value as string;
      this.map.get(oldest)!.live = false;
      this.map.delete(oldest);
      this.evictions++;
    }
  }

  /**
   * The live entry for `key`, or undefined (absent or expired). A hit moves it to the young end
   * of the LRU order, at most once a second (a move is a delete and an insert).
   */
  entry(key: string, now = this.now()): CacheEntry | undefined {
    const e = this.map.get(key);
    if (!e) return undefined;
    if (now >= e.expiresMs) {
      e.live = false;
      this.map.delete(key);
      return undefined;
    }
    this.touch(key, e, now);
    return e;
  }

  /** Keep a hit entry young (for callers that hold `e` and checked `live` and expiry). */
  touch(key: string, e: CacheEntry, now: number): void {
    if (now - e.bumpedMs < 1000) return;
    e.bumpedMs = now;
    this.map.delete(key);
    this.map.set(key, e);
  }

  /** A copy of the cached message with TTLs lowered by its age, or undefined (absent or expired). */
  get(key: string): Buffer | undefined {
    const now = this.now();
    const e = this.entry(key, now);
    return e && AnswerCache.render(e, now);
  }

  /** A copy of `e`'s message with every TTL lowered by the entry's age (whole seconds). */
  static render(e: CacheEntry, now: number): Buffer {
    const out = copyOf(e.msg);
    const age = Math.floor((now - e.storedMs) / 1000);
    if (age > 0) for (const at of e.ttlAt) out.writeUInt32BE(Math.max(0, e.msg.readUInt32BE(at) - age), at);
    return out;
  }

  /**
   * The entry's own reply buffer, its TTLs lowered by the entry's age (rewritten only when the
   * age in whole seconds changed): for a caller that writes the ID and question into it and
   * hands it on before anything else renders this entry (the UDP fast path; the socket copies
   * what it cannot send at once). `render` makes a copy instead.
   */
  static renderShared(e: CacheEntry, now: number): Buffer {
    const age = Math.max(0, Math.floor((now - e.storedMs) / 1000));
    let out = e.out;
    if (!out) {
      out = e.out = copyOf(e.msg);
      e.outAge = 0;
    }
    if (age !== e.outAge) {
      for (const at of e.ttlAt) out.writeUInt32BE(Math.max(0, e.msg.readUInt32BE(at) - age), at);
      e.outAge = age;
    }
    return out;
  }

  clear(): void {
    for (const e of this.map.values()) e.live = false;
    this.map.clear();
  }
}
