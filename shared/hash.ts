/**
 * Digests and random bytes for the plugins (interface and rule names, MACs, temp file names).
 * - SHA-2: under Bun, `Bun.CryptoHasher` (native, a global: nothing to load); elsewhere (Node:
 *   the tooling, the Node SEA build) node:crypto's createHash, loaded on first use. Loading
 *   node:crypto under Bun costs ~350 page faults, and a pure-JS SHA-2 (@noble/hashes, used
 *   until issue 12 session 5) ~50 faults and ~2 ms of CPU of every bridge call for its module
 *   evaluation and first run (docs/benchmarks.md, "Session 5").
 * - Randomness: the Web Crypto global's getRandomValues (the kernel's getrandom pool), in
 *   both runtimes without loading a module.
 */
type Alg = 'sha256' | 'sha512';
interface BunHasher {
  update(data: string): BunHasher;
  digest(): Uint8Array;
}
type BunHasherClass = new (alg: Alg) => BunHasher;
interface NodeCrypto {
  createHash(alg: Alg): { update(data: string, enc: 'utf8'): { digest(): Uint8Array } };
}

const BunCryptoHasher = (globalThis as { Bun?: { CryptoHasher?: BunHasherClass } }).Bun?.CryptoHasher;
let nodeCrypto: NodeCrypto | undefined;

function digest(alg: Alg, s: string): Uint8Array {
  if (BunCryptoHasher) return new Uint8Array(new BunCryptoHasher(alg).update(s).digest());
  nodeCrypto ??= process.getBuiltinModule('node:crypto') as unknown as NodeCrypto;
  return new Uint8Array(nodeCrypto.createHash(alg).update(s, 'utf8').digest());
}

const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');

export const sha256Hex = (s: string): string => hex(digest('sha256', s));
export const sha256Bytes = (s: string): Uint8Array => digest('sha256', s);
export const sha512Hex = (s: string): string => hex(digest('sha512', s));

/** `n` bytes from the kernel's CSPRNG. */
export function randomBytes(n: number): Buffer {
  const buf = Buffer.alloc(n);
  // getRandomValues fills at most 65536 bytes per call
  for (let off = 0; off < n; off += 65536) crypto.getRandomValues(buf.subarray(off, Math.min(n, off + 65536)));
  return buf;
}

export const randomHex = (n: number): string => randomBytes(n).toString('hex');
