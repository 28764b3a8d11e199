/**
 * A map keyed by a query as it arrived: a small context number (which view and transport it
 * came on) and every byte of the message after its ID, without turning those bytes into a
 * string. The per-query key string the fast paths used to build cost an allocation (and a
 * flattening and hashing of the rope) on every datagram; here a lookup hashes the bytes in
 * place and compares them with the stored key, so it allocates nothing. Entries that share a
 * hash are chained, and a hit is always verified byte for byte: a collision costs a compare,
 * never a wrong answer.
 */

/** 32-bit FNV-1a over `buf[from, buf.length)`, seeded with the context (as an int32). */
export function hashQuery(ctx: number, buf: Uint8Array, from: number): number {
  let h = 0x811c9dc5 ^ ctx;
  for (let i = from; i < buf.length; i++) h = Math.imul(h ^ buf[i], 0x01000193);
  // a small integer (int32) keys the Map fastest
  return h | 0;
}

interface Slot<V> {
  ctx: number;
  /** the message's bytes from `from` on */
  key: Uint8Array;
  value: V;
  next: Slot<V> | undefined;
}

export class QueryTable<V> {
  private readonly slots = new Map<number, Slot<V>>();
  private n = 0;
  private readonly max: number;
  private readonly from: number;
  private readonly hash: (ctx: number, buf: Uint8Array, from: number) => number;

  /**
   * `max`: entries kept; adding one more clears the table first (as the string maps it
   * replaces did). `from`: where the key starts in a message (2: after the DNS ID). `hash`
   * is replaceable for tests (a constant one makes every key collide).
   */
  constructor(max: number, from = 2, hash?: (ctx: number, buf: Uint8Array, from: number) => number) {
    this.max = max;
    this.from = from;
    this.hash = hash ?? hashQuery;
  }

  get size(): number {
    return this.n;
  }

  get(ctx: number, msg: Uint8Array): V | undefined {
    for (let s = this.slots.get(this.hash(ctx, msg, this.from)); s; s = s.next) {
      if (s.ctx === ctx && same(s.key, msg, this.from)) return s.value;
    }
    return undefined;
  }

  /** Map (ctx, msg's bytes from `from`) to `value`; the bytes are copied. */
  set(ctx: number, msg: Uint8Array, value: V): void {
    const h = this.hash(ctx, msg, this.from);
    const head = this.slots.get(h);
    for (let s = head; s; s = s.next) {
      if (s.ctx === ctx && same(s.key, msg, this.from)) {
        s.value = value;
        return;
      }
    }
    if (this.n >= this.max) {
      this.clear();
      return this.set(ctx, msg, value);
    }
    // a copy (Buffer's slice would share the datagram's memory)
    this.slots.set(h, { ctx, key: new Uint8Array(msg.subarray(this.from)), value, next: head });
    this.n++;
  }

  clear(): void {
    this.slots.clear();
    this.n = 0;
  }
}

function same(key: Uint8Array, msg: Uint8Array, from: number): boolean {
  const n = key.length;
  if (msg.length - from !== n) return false;
  for (let i = 0; i < n; i++) if (key[i] !== msg[from + i]) return false;
  return true;
}
