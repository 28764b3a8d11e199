/**
 * IP and CIDR arithmetic on bigint values, parsed and printed by the ip-address library.
 * Pure functions; every plugin's address logic goes through here.
 */
import { Address4, Address6 } from 'ip-address';

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

export function parseIP(s: string): IP | null {
  if (typeof s !== 'string' || s.includes('/') || s.includes('%')) return null;
  if (Address4.isValid(s) && /^\d+\.\d+\.\d+\.\d+$/.test(s)) return { family: 4, value: new Address4(s).bigInt() };
  if (s.includes(':') && Address6.isValid(s)) return { family: 6, value: new Address6(s).bigInt() };
  return null;
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

export function formatIP(ip: IP): string {
  return ip.family === 4 ? Address4.fromBigInt(ip.value).correctForm() : Address6.fromBigInt(ip.value).correctForm();
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
