/**
 * The one parser of lease records read from a store (etcd, the file store) or from the local
 * lease cache. Store content is written by other hosts and is not trusted: every field that
 * ends up in a kernel command (publicIP in `fdb ... dst`, vtepMAC in `neigh ... lladdr`, the
 * subnet in `route replace`) is checked here, and a record that fails any check is skipped
 * (and logged once per content) instead of failing the caller. Pure, no I/O.
 */
import { bitsOf, contains, formatCIDR, formatIP, network, parseCIDR, parseIP, type Family, type IP, type IPNet } from '../ipnet.ts';
import type { Logger } from '../cni/log.ts';
import type { Lease, RawLease } from './store-contract.ts';

export type { RawLease } from './store-contract.ts';

/** What the record must fit: the cluster network, the host subnet length, the underlay's family. Absent parts are not checked. */
export interface LeaseContext {
  network?: IPNet;
  subnetLen?: number;
  family?: Family;
}

export type Parsed = { ok: true; lease: Lease } | { ok: false; why: string };

const MAX_VALUE = 4096;
const MAC = /^[0-9a-f]{2}(?::[0-9a-f]{2}){5}$/;
/** RFC 1123 host names (labels of letters, digits, hyphens; underscores tolerated), at most 253 characters. */
const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*$/;

const inNet = (cidr: string, ip: IP): boolean => contains(parseCIDR(cidr)!, ip);

/** Why `ip` cannot be a host's underlay (unicast) address, or '' when it can. */
export function notUnicast(ip: IP): string {
  if (ip.family === 4) {
    if (ip.value === 0n) return 'the unspecified address';
    if (ip.value === 0xffffffffn) return 'the broadcast address';
    if (inNet('0.0.0.0/8', ip)) return 'in 0.0.0.0/8 ("this network")';
    if (inNet('127.0.0.0/8', ip)) return 'a loopback address';
    if (inNet('169.254.0.0/16', ip)) return 'a link-local address';
    if (inNet('224.0.0.0/4', ip)) return 'a multicast address';
    if (inNet('240.0.0.0/4', ip)) return 'a reserved (class E) address';
    return '';
  }
  if (ip.value === 0n) return 'the unspecified address';
  if (ip.value === 1n) return 'a loopback address';
  if (inNet('ff00::/8', ip)) return 'a multicast address';
  if (inNet('fe80::/10', ip)) return 'a link-local address';
  if (inNet('::ffff:0:0/96', ip)) return 'an IPv4-mapped address';
  return '';
}

/** Check a publicIP value: canonical text, unicast, of the expected family. */
export function checkPublicIP(v: unknown, family?: Family): string {
  if (typeof v !== 'string') return 'publicIP is not a string';
  if (v.length > 45) return 'publicIP is too long';
  const ip = parseIP(v);
  if (!ip) return `publicIP ${JSON.stringify(v)} is not an IP address`;
  if (formatIP(ip) !== v) return `publicIP ${JSON.stringify(v)} is not in canonical form (${formatIP(ip)})`;
  const bad = notUnicast(ip);
  if (bad) return `publicIP ${v} is ${bad}`;
  if (family && ip.family !== family) return `publicIP ${v} is not an IPv${family} address like this host's underlay`;
  return '';
}

/** Check a VTEP MAC: six colon-separated hex octets, unicast, not all zero. */
export function checkMac(v: unknown): string {
  if (typeof v !== 'string') return 'vtepMAC is not a string';
  if (v.length > 17 || !MAC.test(v.toLowerCase()))
    return `vtepMAC ${JSON.stringify(v.slice(0, 40))} is not a MAC address (xx:xx:xx:xx:xx:xx)`;
  const first = parseInt(v.slice(0, 2), 16);
  if (first & 1) return `vtepMAC ${v} is a multicast MAC`;
  if (/^(?:00:){5}00$/.test(v)) return `vtepMAC ${v} is all zero`;
  return '';
}

/** Check a host subnet: canonical network address, and (with a context) of `subnetLen` inside the cluster network. */
export function checkSubnet(v: unknown, ctx: LeaseContext): string {
  if (typeof v !== 'string') return 'subnet is not a string';
  if (v.length > 49) return 'subnet is too long';
  const n = parseCIDR(v);
  if (!n) return `subnet ${JSON.stringify(v)} is not a CIDR`;
  if (formatCIDR(network(n)) !== v) return `subnet ${JSON.stringify(v)} is not a network address in canonical form`;
  if (ctx.network) {
    if (n.family !== ctx.network.family || !contains(ctx.network, n) || n.prefix < ctx.network.prefix)
      return `subnet ${v} is outside the cluster network ${formatCIDR(ctx.network)}`;
  }
  if (ctx.subnetLen !== undefined && n.prefix !== ctx.subnetLen) return `subnet ${v} is not a /${ctx.subnetLen}`;
  if (n.prefix > bitsOf(n.family) - 2) return `subnet ${v} has no room for a gateway and a pod`;
  return '';
}

/** Parse and validate one stored lease record. */
export function parseLease(raw: RawLease, ctx: LeaseContext = {}): Parsed {
  const fail = (why: string): Parsed => ({ ok: false, why });
  if (raw.invalid) return fail(raw.invalid);
  let v = raw.value;
  if (typeof v === 'string') {
    if (v.length > MAX_VALUE) return fail(`record longer than ${MAX_VALUE} characters`);
    try {
      v = JSON.parse(v) as unknown;
    } catch {
      return fail('record is not JSON');
    }
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) return fail('record is not a JSON object');
  const o = v as Record<string, unknown>;
  if (o.subnet !== undefined && o.subnet !== raw.subnet)
    return fail(`record names subnet ${JSON.stringify(o.subnet)} under the key of ${JSON.stringify(raw.subnet)}`);
  const why = checkSubnet(raw.subnet, ctx) || checkPublicIP(o.publicIP, ctx.family) || checkMac(o.vtepMAC);
  if (why) return fail(why);
  if (o.hostname !== undefined && (typeof o.hostname !== 'string' || !HOSTNAME.test(o.hostname)))
    return fail('hostname is not a host name');
  const lease: Lease = { subnet: raw.subnet, publicIP: o.publicIP as string, vtepMAC: (o.vtepMAC as string).toLowerCase() };
  if (typeof o.hostname === 'string') lease.hostname = o.hostname;
  return { ok: true, lease };
}

const reported = new Set<string>();

/** Short, escaped, single-line form of untrusted text for a log line. */
export const printable = (x: unknown, max = 200): string => {
  let s: string;
  try {
    s = typeof x === 'string' ? x : (JSON.stringify(x) ?? String(x));
  } catch {
    s = String(x);
  }
  const j = JSON.stringify(s.length > max ? `${s.slice(0, max)}…` : s);
  return j;
};

/** The valid leases of `raws`; each invalid one is logged (warn) once per content for the life of the process. */
export function validLeases(raws: RawLease[], ctx: LeaseContext, log?: Logger): Lease[] {
  const out: Lease[] = [];
  for (const r of raws) {
    const p = parseLease(r, ctx);
    if (p.ok) {
      out.push(p.lease);
      continue;
    }
    let key: string;
    try {
      key = `${r.subnet}\0${typeof r.value === 'string' ? r.value : JSON.stringify(r.value)}\0${r.invalid ?? ''}`;
    } catch {
      key = `${r.subnet}\0?`;
    }
    if (reported.has(key)) continue;
    reported.add(key);
    if (reported.size > 10_000) reported.clear();
    log?.warn(`ignoring invalid lease for ${printable(r.subnet, 60)}: ${printable(p.why)}; record ${printable(r.value)}`);
  }
  return out;
}
