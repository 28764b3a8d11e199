/**
 * Digests and random bytes without node:crypto: loading node:crypto (OpenSSL bindings and its
 * JS layer) costs ~7 ms of every plugin start, and the plugins only need a stable SHA-2 of a
 * short string (interface and rule names) and a few random bytes (MACs, temp file names).
 * SHA-2 comes from @noble/hashes (audited, pure JS); randomness from the kernel's getrandom
 * pool through /dev/urandom.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { sha256, sha512 } from '@noble/hashes/sha2.js';
import { bytesToHex, utf8ToBytes } from '@noble/hashes/utils.js';

export const sha256Hex = (s: string): string => bytesToHex(sha256(utf8ToBytes(s)));
export const sha256Bytes = (s: string): Uint8Array => sha256(utf8ToBytes(s));
export const sha512Hex = (s: string): string => bytesToHex(sha512(utf8ToBytes(s)));

/** `n` bytes from the kernel's CSPRNG. */
export function randomBytes(n: number): Buffer {
  const buf = Buffer.alloc(n);
  const fd = openSync('/dev/urandom', 'r');
  try {
    let got = 0;
    while (got < n) got += readSync(fd, buf, got, n - got, null);
  } finally {
    closeSync(fd);
  }
  return buf;
}

export const randomHex = (n: number): string => randomBytes(n).toString('hex');
