/**
 * String formats used by the config schemas. Shared by the runtime validator (tests,
 * development) and the validators precompiled at build time (scripts/gen-validators.mjs).
 */
import { parseCIDR, parseIP } from '../ipnet.ts';

const IFNAME_BAD = /[/:\s\0]/;

export const ip = (s: string): boolean => parseIP(s) !== null;
export const ipv4 = (s: string): boolean => parseIP(s)?.family === 4;
export const ipv6 = (s: string): boolean => parseIP(s)?.family === 6;
export const cidr = (s: string): boolean => parseCIDR(s) !== null;
export const mac = (s: string): boolean => /^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/.test(s);
/** Linux interface names: IFNAMSIZ 16 bytes with the NUL; no '/', ':', white space or NUL; not . or .. */
export const ifname = (s: string): boolean =>
  typeof s === 'string' && s.length > 0 && Buffer.byteLength(s) <= 15 && s !== '.' && s !== '..' && !IFNAME_BAD.test(s);

export const FORMATS = { ip, ipv4, ipv6, cidr, mac, ifname } as const;
