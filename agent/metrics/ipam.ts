/**
 * IPAM pool usage per network, from host-local's data directory (`<dataDir>/<network>/<ip>`,
 * one file per allocated address; ipam/host-local/store.ts), read at scrape time:
 *   cni_ts_ipam_allocated_addresses{network}  files named like an address
 *   cni_ts_ipam_pool_size{network}            usable addresses of the subnets this node's
 *                                             endpoints of that network are in (from their
 *                                             prefix lengths: network, broadcast and gateway
 *                                             excluded for IPv4), when known
 *   cni_ts_ipam_pool_usage_ratio{network}     allocated / size
 * Data directories: `metrics.ipamDataDirs` (default host-local's /var/lib/cni/networks).
 */
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { isIP } from 'node:net';
import { formatCIDR, network, parseCIDR } from '../../shared/ipnet.ts';
import type { MetricsSnapshot } from '../../shared/monitoring.ts';
import { collector, type CollectedValue, type Registry } from './registry.ts';

/** Allocated addresses per network directory under `dataDir`. */
export function allocatedByNetwork(dataDir: string): Map<string, number> {
  const out = new Map<string, number>();
  let nets: string[];
  try {
    nets = readdirSync(dataDir);
  } catch {
    return out;
  }
  for (const net of nets) {
    try {
      out.set(net, readdirSync(path.join(dataDir, net)).filter((f) => isIP(f) !== 0).length);
    } catch {
      /* not a directory */
    }
  }
  return out;
}

/** Usable addresses of a CIDR ("10.1.0.5/24" → 253: no network, broadcast, gateway). */
export function poolSizeOf(cidr: string): number | undefined {
  const c = parseCIDR(cidr);
  if (!c) return undefined;
  const [addr, len] = cidr.split('/') as [string, string];
  const bits = (addr.includes(':') ? 128 : 32) - Number(len);
  if (bits > 52) return Number.MAX_SAFE_INTEGER;
  const total = 2 ** bits;
  return addr.includes(':') ? Math.max(total - 1, 1) : Math.max(total - 3, 1);
}

/** Pool sizes per network from the endpoints' subnets (distinct subnets summed). */
export function poolSizes(snap: MetricsSnapshot | undefined, cidrsOf: (network: string) => string[]): Map<string, number> {
  const out = new Map<string, number>();
  const nets = new Set(snap?.endpoints.map((e) => e.network) ?? []);
  for (const net of nets) {
    const subnets = new Map<string, number>();
    for (const c of cidrsOf(net)) {
      const p = parseCIDR(c);
      const size = poolSizeOf(c);
      if (p && size !== undefined) subnets.set(formatCIDR(network(p)), size);
    }
    if (subnets.size)
      out.set(
        net,
        [...subnets.values()].reduce((a, b) => a + b, 0),
      );
  }
  return out;
}

export function registerIpamFamilies(registry: Registry, dataDirs: string[], sizes: () => Map<string, number>, maxAgeMs = 5000): void {
  const read = (): Map<string, number> => {
    const all = new Map<string, number>();
    for (const d of dataDirs) for (const [net, n] of allocatedByNetwork(d)) all.set(net, (all.get(net) ?? 0) + n);
    return all;
  };
  let cache: { at: number; alloc: Map<string, number>; sizes: Map<string, number> } | undefined;
  const get = (): NonNullable<typeof cache> => {
    if (!cache || Date.now() - cache.at > maxAgeMs) cache = { at: Date.now(), alloc: read(), sizes: sizes() };
    return cache;
  };
  collector(
    registry,
    'cni_ts_ipam_allocated_addresses',
    'gauge',
    'Addresses host-local has allocated per network (files in its data directory).',
    () => [...get().alloc].map(([network, value]): CollectedValue => ({ labels: { network }, value })),
  );
  collector(
    registry,
    'cni_ts_ipam_pool_size',
    'gauge',
    "Usable addresses of the subnets this node's endpoints of the network are in.",
    () => [...get().sizes].map(([network, value]): CollectedValue => ({ labels: { network }, value })),
  );
  collector(registry, 'cni_ts_ipam_pool_usage_ratio', 'gauge', 'Allocated addresses over the pool size, per network.', () => {
    const g = get();
    const out: CollectedValue[] = [];
    for (const [network, size] of g.sizes)
      if (size > 0 && g.alloc.has(network)) out.push({ labels: { network }, value: g.alloc.get(network)! / size });
    return out;
  });
}
