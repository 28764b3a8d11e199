/**
 * Subnet leasing: which per-host subnet this host holds. A host first looks for a lease under
 * its own underlay address (a restart keeps its subnet), then for the subnet it held last
 * (cached in stateDir), then takes the first free subnet, starting at a point derived from its
 * address so hosts joining together rarely race for the same one. The store's create-if-absent
 * settles any race.
 */
import { sha256Bytes } from '../hash.ts';
import { mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { CniError, ErrorCode } from '../cni/errors.ts';
import { bitsOf, contains, formatCIDR, network, parseCIDR, parseIP, type IPNet } from '../ipnet.ts';
import { parseLease } from './lease-parse.ts';
import type { Settings } from './config.ts';
import type { Lease, Store } from './store-contract.ts';

export interface HostIdentity {
  publicIP: string;
  vtepMAC: string;
  hostname?: string;
}

/** A locally administered unicast MAC derived from the underlay address and VNI: stable across restarts. */
export function vtepMacFor(publicIP: string, vni: number): string {
  const h = Buffer.from(sha256Bytes(`cni-ts-overlay|${vni}|${publicIP}`));
  h[0] = (h[0] & 0xfe) | 0x02;
  return [...h.subarray(0, 6)].map((b) => b.toString(16).padStart(2, '0')).join(':');
}

export function subnetCount(network: IPNet, subnetLen: number): number {
  return 2 ** (subnetLen - network.prefix);
}

/** The i-th host subnet of the cluster network. */
export function nthSubnet(network: IPNet, subnetLen: number, i: number): string {
  const step = 1n << BigInt(bitsOf(network.family) - subnetLen);
  return formatCIDR({ family: network.family, value: network.value + step * BigInt(i), prefix: subnetLen });
}

/** Whether `subnet` is one of the cluster's host subnets. */
export function isHostSubnet(s: Settings, subnet: string): boolean {
  const n = parseCIDR(subnet);
  return !!n && n.prefix === s.subnetLen && contains(s.network, n) && network(n).value === n.value && formatCIDR(n) === subnet;
}

function startIndex(publicIP: string, count: number): number {
  const h = Buffer.from(sha256Bytes(publicIP));
  return h.readUInt32BE(0) % count;
}

const cacheFile = (s: Settings): string => path.join(s.stateDir, 'lease.json');

export function cachedLease(s: Settings): Lease | undefined {
  let v: unknown;
  try {
    v = JSON.parse(readFileSync(cacheFile(s), 'utf8'));
  } catch {
    return undefined;
  }
  const subnet = (v as { subnet?: unknown } | null)?.subnet;
  if (typeof subnet !== 'string') return undefined;
  const p = parseLease({ subnet, value: v }, { network: s.network, subnetLen: s.subnetLen });
  return p.ok ? p.lease : undefined;
}

/**
 * Addresses host-local still holds for pods of this host inside `subnet` (its store is
 * stateDir/ipam/<network name>/<address>, the reference's layout): pods that a renumbering
 * would cut off.
 */
export function podsOn(s: Settings, subnet: string): string[] {
  const n = parseCIDR(subnet);
  if (!n) return [];
  let names: string[];
  try {
    names = readdirSync(path.join(s.stateDir, 'ipam', s.name));
  } catch {
    return [];
  }
  return names.filter((f) => {
    const ip = parseIP(f);
    return !!ip && contains(n, ip) && ip.value !== n.value && ip.value !== n.value + 1n;
  });
}

export function saveLease(s: Settings, l: Lease): void {
  mkdirSync(s.stateDir, { recursive: true });
  const f = cacheFile(s);
  const prev = cachedLease(s);
  if (prev && JSON.stringify(prev) === JSON.stringify(l)) return;
  writeFileSync(`${f}.tmp`, JSON.stringify(l));
  renameSync(`${f}.tmp`, f);
}

/**
 * Renew this host's lease or take a new one. `leases` is a fresh, validated list
 * (`listLeases`). `beforeRenumber(subnet)` runs before any store write that would give this
 * host a subnet other than the one it held last (the cached lease); it throws to refuse.
 */
export async function acquireLease(
  store: Store,
  s: Settings,
  me: HostIdentity,
  leases: Lease[],
  beforeRenumber?: (from: string, to: string) => void,
): Promise<Lease> {
  const want = (subnet: string): Lease => ({
    subnet,
    publicIP: me.publicIP,
    vtepMAC: me.vtepMAC,
    ...(me.hostname ? { hostname: me.hostname } : {}),
  });
  const cached = cachedLease(s);
  const guard = (subnet: string): void => {
    if (cached && cached.subnet !== subnet) beforeRenumber?.(cached.subnet, subnet);
  };
  const mine = leases.find((l) => l.publicIP === me.publicIP && isHostSubnet(s, l.subnet));
  if (mine) guard(mine.subnet);
  if (mine && (await store.renew(want(mine.subnet), s.leaseTTL))) return want(mine.subnet);
  const taken = new Set(leases.filter((l) => l !== mine).map((l) => l.subnet));
  if (cached && !taken.has(cached.subnet) && (await store.create(want(cached.subnet), s.leaseTTL))) return want(cached.subnet);
  const count = subnetCount(s.network, s.subnetLen);
  const start = startIndex(me.publicIP, count);
  for (let k = 0; k < count; k++) {
    const subnet = nthSubnet(s.network, s.subnetLen, (start + k) % count);
    if (taken.has(subnet)) continue;
    guard(subnet);
    if (await store.create(want(subnet), s.leaseTTL)) return want(subnet);
    taken.add(subnet);
  }
  throw new CniError(
    ErrorCode.PoolExhausted,
    `no free /${s.subnetLen} left in ${formatCIDR(s.network)}`,
    `${count} host subnets, all leased`,
  );
}
