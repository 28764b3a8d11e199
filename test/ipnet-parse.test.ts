/**
 * shared/ipnet.ts parses and prints addresses itself (the ip-address library cost every plugin
 * process ~7 ms at start); it must accept, reject and print exactly what the library did
 * (`Address4/6.isValid` + `.bigInt()`, `fromBigInt(...).correctForm()`). Compared here on
 * generated addresses in every spelling and on malformed mutations of them.
 */
import { Address4, Address6 } from 'ip-address';
import { describe, expect, it } from 'vitest';
import { formatIP, parseIP, type IP } from '../shared/ipnet.ts';

/** What shared/ipnet.ts returned when it parsed through the library. */
function libParse(s: string): IP | null {
  if (typeof s !== 'string' || s.includes('/') || s.includes('%')) return null;
  if (Address4.isValid(s) && /^\d+\.\d+\.\d+\.\d+$/.test(s)) return { family: 4, value: new Address4(s).bigInt() };
  if (s.includes(':') && Address6.isValid(s)) return { family: 6, value: new Address6(s).bigInt() };
  return null;
}
const libFormat = (ip: IP): string =>
  ip.family === 4 ? Address4.fromBigInt(ip.value).correctForm() : Address6.fromBigInt(ip.value).correctForm();

// a small deterministic PRNG (mulberry32), so a failure reproduces
function rng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const rand = rng(12);
const int = (n: number): number => Math.floor(rand() * n);

function randomV6(): bigint {
  let v = 0n;
  for (let i = 0; i < 8; i++) {
    // mostly zero groups, so every shape of zero run (and ties) comes up
    const g = rand() < 0.55 ? 0 : rand() < 0.3 ? int(16) : int(0x10000);
    v = (v << 16n) | BigInt(g);
  }
  return v;
}
const randomV4 = (): bigint => BigInt(rand() < 0.2 ? [0, 1, 255, 256, 0xffffffff, 0x7f000001][int(6)] : int(2 ** 32));

/** Other spellings of the same IPv6 address: expanded, padded, upper case, a dotted-quad tail. */
function spellings6(v: bigint): string[] {
  const groups = Array.from({ length: 8 }, (_, i) => Number((v >> BigInt((7 - i) * 16)) & 0xffffn));
  const lib = Address6.fromBigInt(v);
  const out = [lib.correctForm(), lib.canonicalForm(), groups.map((g) => g.toString(16)).join(':'), lib.correctForm().toUpperCase()];
  const tail = `${groups[6] >> 8}.${groups[6] & 255}.${groups[7] >> 8}.${groups[7] & 255}`;
  out.push(
    `${groups
      .slice(0, 6)
      .map((g) => g.toString(16))
      .join(':')}:${tail}`,
  );
  const head = lib.correctForm().split(':');
  if (head.length > 2) out.push(`${head.slice(0, -2).join(':')}:${tail}`);
  return out;
}

const ALPHABET = '0123456789abcdefABCDEF:.::/%g -x';
function mutate(s: string): string {
  const i = int(s.length + 1);
  const c = ALPHABET[int(ALPHABET.length)];
  switch (int(4)) {
    case 0:
      return s.slice(0, i) + c + s.slice(i);
    case 1:
      return s.slice(0, i) + s.slice(i + 1);
    case 2:
      return s.slice(0, i) + c + s.slice(i + 1);
    default:
      return s + s.slice(0, int(s.length));
  }
}

const EDGE = [
  '',
  ':',
  '::',
  ':::',
  '::1',
  '1::',
  '::1:',
  ':1::',
  '1::2::3',
  '1:2:3:4:5:6:7:8',
  '1:2:3:4:5:6:7:8:9',
  '1:2:3:4:5:6:7::',
  '::2:3:4:5:6:7:8',
  '1::2:3:4:5:6:7:8',
  '1:2:3:4:5:6:7:',
  '12345::',
  '0000:0000::',
  '00000::',
  '::ffff:1.2.3.4',
  '::1.2.3.4',
  '1.2.3.4::',
  '::ffff:01.2.3.4',
  '::ffff:1.2.3.256',
  '1:2:3:4:5:6:1.2.3.4',
  '1:2:3:4:5:6:7:1.2.3.4',
  '1:2:3:4:5:6::1.2.3.4',
  '::1.2.3',
  '0.0.0.0',
  '255.255.255.255',
  '256.1.1.1',
  '01.2.3.4',
  '1.2.3.04',
  '1.2.3',
  '1.2.3.4.5',
  '1..2.3',
  ' 1.2.3.4',
  '1.2.3.4 ',
  '1.2.3.4\n',
  '::1\n',
  'fe80::1%eth0',
  '10.0.0.0/8',
  '١.٢.٣.٤',
  'FFFF::',
  'ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255',
  '0:0:0:0:0:0:0:0',
  '1:0:0:2:0:0:3:4',
  '1:0:0:2:0:0:0:4',
];

describe('shared/ipnet.ts parses and prints exactly as the ip-address library did', () => {
  it('agrees on edge cases', () => {
    for (const s of EDGE) expect(parseIP(s), JSON.stringify(s)).toEqual(libParse(s));
  });

  it('agrees on 10000 generated addresses in every spelling, and on their output', () => {
    for (let n = 0; n < 5000; n++) {
      const v4: IP = { family: 4, value: randomV4() };
      if (v4.value < 2n ** 32n) {
        const text = libFormat(v4);
        expect(formatIP(v4)).toBe(text);
        expect(parseIP(text)).toEqual(v4);
      }
      const v6: IP = { family: 6, value: randomV6() };
      expect(formatIP(v6)).toBe(libFormat(v6));
      for (const s of spellings6(v6.value)) expect(parseIP(s), s).toEqual(libParse(s));
    }
  });

  it('agrees on 30000 malformed mutations (accepted or rejected alike)', () => {
    let accepted = 0;
    for (let n = 0; n < 30000; n++) {
      const base = n % 2 ? libFormat({ family: 4, value: randomV4() % 2n ** 32n }) : spellings6(randomV6())[int(4)];
      let s = mutate(base);
      if (rand() < 0.5) s = mutate(s);
      const ours = parseIP(s);
      expect(ours, JSON.stringify(s)).toEqual(libParse(s));
      if (ours) accepted++;
    }
    // the mutations reach both sides of the line
    expect(accepted).toBeGreaterThan(1000);
    expect(accepted).toBeLessThan(29000);
  });

  it("rejects out-of-range values with the library's words", () => {
    expect(() => formatIP({ family: 4, value: 2n ** 32n })).toThrow('IPv4 BigInt must be in the range 0 to 2**32 - 1');
    expect(() => formatIP({ family: 6, value: -1n })).toThrow('IPv6 BigInt must be in the range 0 to 2**128 - 1');
  });
});
