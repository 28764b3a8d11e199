/**
 * host-local configuration as pure functions: the `ipam` section (legacy `subnet` and
 * `ranges`), the runtime's `ipRanges`, and the requested addresses (`args.cni.ips`,
 * `runtimeConfig.ips`, CNI_ARGS `IP`), turned into range sets and checked. Every problem is
 * a code 7 naming the field (code 4 for CNI_ARGS).
 */
import path from 'node:path';
import { CniError, ErrorCode, invalidConfig } from '../../shared/cni/errors.ts';
import type { NetConfBase, Route } from '../../shared/cni/types.ts';
import { atLeast } from '../../shared/cni/version.ts';
import { contains, formatCIDR, formatIP, network, parseCIDR, parseIP, type IP } from '../../shared/ipnet.ts';
import {
  defaults,
  describeRangeSet,
  isNetworkOrBroadcast,
  maxPrefix,
  rangeFor,
  rangesOverlap,
  rangeSetsOverlap,
  type Range,
  type RangeSet,
} from './range.ts';

export const DEFAULT_DATA_DIR = '/var/lib/cni/networks';

export interface RangeConf {
  subnet?: string;
  rangeStart?: string;
  rangeEnd?: string;
  gateway?: string;
}

export interface HostLocalIpam extends RangeConf {
  type: string;
  ranges?: RangeConf[][];
  routes?: Route[];
  dataDir?: string;
  resolvConf?: string;
  [k: string]: unknown;
}

export interface HostLocalConf extends NetConfBase {
  ipam: HostLocalIpam;
  runtimeConfig?: { ips?: string[]; ipRanges?: RangeConf[][]; [k: string]: unknown };
  args?: { cni?: { ips?: string[]; [k: string]: unknown }; [k: string]: unknown };
}

function ipField(s: string | undefined, field: string): IP | undefined {
  if (s === undefined || s === '') return undefined;
  const ip = parseIP(s);
  if (!ip) throw invalidConfig(field, `"${s}" is not an IP address`);
  return ip;
}

/** One range, with defaults filled in and checked like the reference's Range.Canonicalize. */
export function parseRange(rc: RangeConf, field: string): Range {
  if (typeof rc.subnet !== 'string' || !rc.subnet) throw invalidConfig(`${field}.subnet`, 'is required');
  const cidr = parseCIDR(rc.subnet);
  if (!cidr) throw invalidConfig(`${field}.subnet`, `"${rc.subnet}" is not a CIDR`);
  const subnet = network(cidr);
  const f = subnet.family;
  // As the reference's Range.Canonicalize: a subnet is written as its network address, is not
  // the whole address space, and an IPv4 network is not spelt as IPv4-mapped IPv6.
  if (subnet.value !== cidr.value)
    throw invalidConfig(
      `${field}.subnet`,
      `${rc.subnet} has host bits set (the network address of a /${cidr.prefix} is ${formatIP(subnet)})`,
    );
  if (cidr.prefix === 0) throw invalidConfig(`${field}.subnet`, `${rc.subnet} is the whole address space`);
  if (f === 6 && subnet.value >> 32n === 0xffffn)
    throw invalidConfig(`${field}.subnet`, `${rc.subnet} is an IPv4-mapped IPv6 subnet; write the IPv4 subnet`);
  if (subnet.prefix > maxPrefix(f))
    throw invalidConfig(`${field}.subnet`, `${formatCIDR(subnet)} is too small to allocate from (at most /${maxPrefix(f)})`);
  const d = defaults(subnet);
  const inSubnet = (ip: IP | undefined, name: string): IP | undefined => {
    if (!ip) return undefined;
    if (ip.family !== f) throw invalidConfig(`${field}.${name}`, `${formatIP(ip)} is not the same family as subnet ${formatCIDR(subnet)}`);
    if (!contains(subnet, ip)) throw invalidConfig(`${field}.${name}`, `${formatIP(ip)} is not in subnet ${formatCIDR(subnet)}`);
    return ip;
  };
  const gateway = inSubnet(ipField(rc.gateway, `${field}.gateway`), 'gateway') ?? d.gateway;
  const start = inSubnet(ipField(rc.rangeStart, `${field}.rangeStart`), 'rangeStart')?.value ?? d.start;
  const end = inSubnet(ipField(rc.rangeEnd, `${field}.rangeEnd`), 'rangeEnd')?.value ?? d.end;
  if (end < start)
    throw invalidConfig(
      `${field}.rangeEnd`,
      `${rc.rangeEnd ?? formatIP({ family: f, value: end })} is before rangeStart ${formatIP({ family: f, value: start })}`,
    );
  return { subnet, start, end, gateway, field };
}

/** A range set: at least one range, one family, no overlaps. */
export function parseRangeSet(list: RangeConf[], field: string): RangeSet {
  if (!Array.isArray(list) || list.length === 0) throw invalidConfig(field, 'a range set needs at least one range');
  const set = list.map((rc, j) => parseRange(rc, `${field}[${j}]`));
  for (let j = 1; j < set.length; j++) {
    if (set[j].subnet.family !== set[0].subnet.family)
      throw invalidConfig(`${field}[${j}].subnet`, 'mixes address families within one range set');
  }
  for (let a = 0; a < set.length; a++) {
    for (let b = a + 1; b < set.length; b++) {
      if (rangesOverlap(set[a], set[b])) throw invalidConfig(`${field}[${b}]`, `overlaps ${set[a].field}`);
    }
  }
  return set;
}

/**
 * All range sets in allocation order: runtimeConfig.ipRanges, then the legacy single range,
 * then `ranges` (the reference's order). Range sets must not overlap each other.
 */
export function parseRangeSets(conf: HostLocalConf, version: string): RangeSet[] {
  const ipam = conf.ipam;
  const sets: RangeSet[] = [];
  (conf.runtimeConfig?.ipRanges ?? []).forEach((s, i) => sets.push(parseRangeSet(s, `runtimeConfig.ipRanges[${i}]`)));
  if (ipam.subnet) {
    sets.push([parseRange(ipam, 'ipam')]);
  } else {
    for (const k of ['rangeStart', 'rangeEnd', 'gateway'] as const) {
      if (ipam[k]) throw invalidConfig(`ipam.${k}`, 'needs ipam.subnet (or put it in an ipam.ranges entry)');
    }
  }
  (ipam.ranges ?? []).forEach((s, i) => sets.push(parseRangeSet(s, `ipam.ranges[${i}]`)));
  if (sets.length === 0) throw invalidConfig('ipam.ranges', 'no IP ranges specified (set ipam.subnet or ipam.ranges)');
  for (let a = 0; a < sets.length; a++) {
    for (let b = a + 1; b < sets.length; b++) {
      if (rangeSetsOverlap(sets[a], sets[b]))
        throw invalidConfig(sets[b][0].field.replace(/\[\d+\]$/, ''), `range set overlaps ${sets[a][0].field.replace(/\[\d+\]$/, '')}`);
    }
  }
  if (!atLeast(version, '0.3.0')) {
    for (const fam of [4, 6]) {
      if (sets.filter((s) => s[0].subnet.family === fam).length > 1) {
        throw invalidConfig('cniVersion', `${version} results carry one address per family; ${sets.length} range sets need 0.3.0 or later`);
      }
    }
  }
  return sets;
}

/** The store directory of a network: `<dataDir>/<name>`, refusing anything that escapes dataDir. */
export function storeDir(conf: HostLocalConf): string {
  const dataDir = conf.ipam.dataDir || DEFAULT_DATA_DIR;
  if (dataDir.includes('\0') || !path.isAbsolute(dataDir)) throw invalidConfig('ipam.dataDir', 'must be an absolute path');
  if (dataDir.split('/').includes('..')) throw invalidConfig('ipam.dataDir', 'must not contain ".." segments');
  const name = conf.name;
  if (typeof name !== 'string' || !/^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/.test(name) || name === '.' || name === '..') {
    throw invalidConfig('name', 'the network name must be alphanumerics, "_", "." or "-" (it names the store directory)');
  }
  const root = path.resolve(dataDir);
  const dir = path.resolve(root, name);
  if (path.dirname(dir) !== root) throw invalidConfig('name', `resolves outside ipam.dataDir ${root}`);
  return dir;
}

export interface Requested {
  ip: IP;
  /** Where it was asked for: "args.cni.ips[0]", "runtimeConfig.ips[1]", "CNI_ARGS IP". */
  source: string;
}

function parseRequested(s: unknown, source: string, fromEnv: boolean): IP {
  const fail = (why: string): CniError =>
    fromEnv ? new CniError(ErrorCode.InvalidEnvironment, `invalid CNI_ARGS: IP: ${why}`, 'CNI_ARGS IP') : invalidConfig(source, why);
  if (typeof s !== 'string') throw fail('must be a string "<ip>[/<prefix>]"');
  const ip = s.includes('/') ? parseCIDR(s) : parseIP(s);
  if (!ip) throw fail(`"${s}" is not an IP address`);
  return { family: ip.family, value: ip.value };
}

/**
 * Requested addresses from `args.cni.ips` and `runtimeConfig.ips` (capability `ips`), and
 * CNI_ARGS `IP=` (one address, or a comma list), which the conventions say to ignore when
 * `args.cni.ips` is present. Duplicates collapse.
 */
export function requestedIPs(conf: HostLocalConf, cniArgs: Map<string, string>): Requested[] {
  const out: Requested[] = [];
  const seen = new Set<string>();
  const push = (ip: IP, source: string): void => {
    const k = `${ip.family}:${ip.value}`;
    if (seen.has(k)) return;
    seen.add(k);
    out.push({ ip, source });
  };
  const fromArgs = conf.args?.cni?.ips;
  if (fromArgs !== undefined && !Array.isArray(fromArgs)) throw invalidConfig('args.cni.ips', 'must be a list of "<ip>[/<prefix>]"');
  const fromRuntime = conf.runtimeConfig?.ips;
  if (fromRuntime !== undefined && !Array.isArray(fromRuntime))
    throw invalidConfig('runtimeConfig.ips', 'must be a list of "<ip>[/<prefix>]"');
  (fromArgs ?? []).forEach((s, i) => push(parseRequested(s, `args.cni.ips[${i}]`, false), `args.cni.ips[${i}]`));
  (fromRuntime ?? []).forEach((s, i) => push(parseRequested(s, `runtimeConfig.ips[${i}]`, false), `runtimeConfig.ips[${i}]`));
  const envIP = cniArgs.get('IP');
  if (envIP && !fromArgs?.length) {
    for (const s of envIP.split(',').filter(Boolean)) push(parseRequested(s, 'CNI_ARGS IP', true), 'CNI_ARGS IP');
  }
  return out;
}

/**
 * Assign each requested address to the range set that holds it. An address outside every
 * set, a network/broadcast address, or two addresses for one set are errors; asking for a
 * set's gateway is a conflict (code 102).
 */
export function assignRequested(sets: RangeSet[], requested: Requested[]): Map<number, Requested> {
  const out = new Map<number, Requested>();
  for (const r of requested) {
    const idx = sets.findIndex((s) => rangeFor(s, r.ip) !== undefined);
    const fail = (why: string): CniError =>
      r.source === 'CNI_ARGS IP'
        ? new CniError(ErrorCode.InvalidEnvironment, `invalid CNI_ARGS: IP: ${why}`, 'CNI_ARGS IP')
        : invalidConfig(r.source, why);
    const text = formatIP(r.ip);
    if (idx < 0) throw fail(`requested address ${text} is not in any range (${sets.map(describeRangeSet).join('; ')})`);
    const range = rangeFor(sets[idx], r.ip) as Range;
    if (isNetworkOrBroadcast(range, r.ip))
      throw fail(`requested address ${text} is the network or broadcast address of ${formatCIDR(range.subnet)}`);
    if (range.gateway.value === r.ip.value) {
      throw new CniError(ErrorCode.Conflict, `requested address ${text} is the gateway of ${formatCIDR(range.subnet)}`, r.source);
    }
    const prev = out.get(idx);
    if (prev) throw fail(`requested addresses ${formatIP(prev.ip)} and ${text} are in the same range set; one address per range set`);
    out.set(idx, r);
  }
  return out;
}
