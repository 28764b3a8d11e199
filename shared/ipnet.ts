/**
 * IP and CIDR arithmetic on bigint values. Pure functions; every plugin's address logic goes
 * through here.
 *
 * Parsing and printing accept and produce exactly what the ip-address library (10.x) does
 * (`Address4/6.isValid`, `.bigInt()`, `fromBigInt(...).correctForm()`: dotted quads without
 * leading zeros, RFC 4291 text with an optional dotted-quad tail, RFC 5952 output), written
 * out here because loading that library cost every plugin process ~7 ms of CPU and ~4.6 MiB
 * at start (issue 12, docs/benchmarks.md). test/ipnet-parse.test.ts compares the two on
 * generated and malformed input.
 */

export type Family = 4 | 6;

export interface IP {
  family: Family;
  value: bigint;
}

/** A prefix with the address as written: 10.1.2.3/24 keeps .3 (use `network()` for .0). */
export interface IPNet extends IP {
  prefix: number;
}

export const bitsOf = (f: Family): number => (f === 4 ? 32 : 128);

const OCTET = '(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])';
const V4 = new RegExp(`^${OCTET}\\.${OCTET}\\.${OCTET}\\.${OCTET}$`);
const HEXTET = /^[0-9a-fA-F]{1,4}$/;

/** A dotted quad (no leading zeros, each octet ≤ 255) as a number, else null. */
function parse4(s: string): number | null {
  const m = V4.exec(s);
  return m ? Number(m[1]) * 16777216 + Number(m[2]) * 65536 + Number(m[3]) * 256 + Number(m[4]) : null;
}

/** Colon-separated 1–4-digit hex groups ('' for none), else null. */
function hextets(s: string): number[] | null {
  if (s === '') return [];
  const out: number[] = [];
  for (const g of s.split(':')) {
    if (!HEXTET.test(g)) return null;
    out.push(parseInt(g, 16));
  }
  return out;
}

/** IPv6 text (at most one `::`, an optional dotted-quad last group) as a bigint, else null. */
function parse6(s: string): bigint | null {
  if (s.length > 45) return null;
  let text = s;
  if (s.includes('.')) {
    const colon = s.lastIndexOf(':');
    const v4 = parse4(s.slice(colon + 1));
    if (v4 === null) return null;
    text = `${s.slice(0, colon + 1)}${(v4 >>> 16).toString(16)}:${(v4 & 0xffff).toString(16)}`;
  }
  const halves = text.split('::');
  if (halves.length > 2) return null;
  const first = hextets(halves[0]);
  const last = halves.length === 2 ? hextets(halves[1]) : [];
  if (!first || !last) return null;
  const given = first.length + last.length;
  if (halves.length === 1 ? given !== 8 : given > 7) return null;
  const groups = [...first, ...new Array<number>(8 - given).fill(0), ...last];
  let v = 0n;
  for (const g of groups) v = (v << 16n) | BigInt(g);
  return v;
}

export function parseIP(s: string): IP | null {
  if (typeof s !== 'string' || s.includes('/') || s.includes('%')) return null;
  const v4 = parse4(s);
  if (v4 !== null) return { family: 4, value: BigInt(v4) };
  if (!s.includes(':')) return null;
  const v6 = parse6(s);
  return v6 === null ? null : { family: 6, value: v6 };
}

export function parseCIDR(s: string): IPNet | null {
  if (typeof s !== 'string') return null;
  const slash = s.indexOf('/');
  if (slash < 0) return null;
  const ip = parseIP(s.slice(0, slash));
  const p = s.slice(slash + 1);
  if (!ip || !/^\d{1,3}$/.test(p)) return null;
  const prefix = Number(p);
  if (prefix > bitsOf(ip.family)) return null;
  return { ...ip, prefix };
}

export function mustCIDR(s: string, field: string): IPNet {
  const n = parseCIDR(s);
  if (!n) throw new TypeError(`${field}: "${s}" is not a CIDR`);
  return n;
}

const hostMask = (n: { family: Family; prefix: number }): bigint => (1n << BigInt(bitsOf(n.family) - n.prefix)) - 1n;

export const networkAddr = (n: IPNet): bigint => n.value & ~hostMask(n);
export const lastAddr = (n: IPNet): bigint => networkAddr(n) | hostMask(n);
export const size = (n: IPNet): bigint => hostMask(n) + 1n;

export function network(n: IPNet): IPNet {
  return { family: n.family, value: networkAddr(n), prefix: n.prefix };
}

export function contains(n: IPNet, ip: IP): boolean {
  return n.family === ip.family && (ip.value & ~hostMask(n)) === networkAddr(n);
}

export function overlaps(a: IPNet, b: IPNet): boolean {
  if (a.family !== b.family) return false;
  const shorter = a.prefix <= b.prefix ? a : b;
  const other = shorter === a ? b : a;
  return contains(shorter, other);
}

/** RFC 5952 from the eight 16-bit groups: lowercase, no leading zeros, the longest run (≥ 2, the first of equals) of zero groups as `::`. */
export function formatV6Groups(g: readonly number[]): string {
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (a: readonly number[]): string => a.map((x) => x.toString(16)).join(':');
  return best < 0 ? hex(g) : `${hex(g.slice(0, best))}::${hex(g.slice(best + bestLen))}`;
}

function format6(value: bigint): string {
  const g: number[] = [];
  for (let i = 7; i >= 0; i--) g.push(Number((value >> BigInt(i * 16)) & 0xffffn));
  return formatV6Groups(g);
}

export function formatIP(ip: IP): string {
  // the library's words for a value out of range
  if (ip.value < 0n || ip.value >> BigInt(bitsOf(ip.family)) !== 0n)
    throw new Error(`IPv${ip.family} BigInt must be in the range 0 to 2**${bitsOf(ip.family)} - 1`);
  if (ip.family === 6) return format6(ip.value);
  const v = Number(ip.value);
  return `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
}

export const formatCIDR = (n: IPNet): string => `${formatIP(n)}/${n.prefix}`;

export const ipEqual = (a: IP, b: IP): boolean => a.family === b.family && a.value === b.value;

/** Canonical text of an address, so "10.0.0.01"-style and v6 spellings compare equal. */
export function canonicalIP(s: string): string | null {
  const ip = parseIP(s);
  return ip ? formatIP(ip) : null;
}

export function canonicalCIDR(s: string): string | null {
  const n = parseCIDR(s);
  return n ? formatCIDR(n) : null;
}

export const familyOf = (s: string): Family => (s.includes(':') ? 6 : 4);

/** The first usable address of a prefix: .1 of a /24, ::1 of a /64 (the reference's default gateway). */
export function firstHost(n: IPNet): IP {
  const v = networkAddr(n) + (n.prefix >= bitsOf(n.family) - 1 ? 0n : 1n);
  return { family: n.family, value: v };
}

/** Mask in dotted form for IPv4 ("255.255.255.0"), used by legacy tools. */
export function maskString(n: IPNet): string {
  const m = ((1n << BigInt(bitsOf(n.family))) - 1n) & ~hostMask(n);
  return formatIP({ family: n.family, value: m });
}
