/**
 * From the IPAM result and the settings to what goes on the bridge, into the container and
 * into the result. Pure functions, no kernel access.
 */
import { invalidConfig } from '../../shared/cni/errors.ts';
import type { DNS, IPConfig, Result, Route } from '../../shared/cni/types.ts';
import { canonicalCIDR, canonicalIP, familyOf, firstHost, formatIP, mustCIDR, type Family } from '../../shared/ipnet.ts';
import type { AddrSpec, RouteSpec } from '../../shared/kernel/link.ts';
import type { BridgeSettings } from './config.ts';

/** Index of the container interface in the result: [bridge, host veth, container]. */
export const CONTAINER_INDEX = 2;

export interface AddPlan {
  ips: IPConfig[];
  routes: Route[];
  /** gateway CIDRs for the bridge (isGateway) */
  bridgeGateways: string[];
  containerAddrs: AddrSpec[];
  containerRoutes: RouteSpec[];
  families: Family[];
}

const DEFAULT_DST: Record<Family, string> = { 4: '0.0.0.0/0', 6: '::/0' };

/** The reference's gateway when IPAM gives none: the first address of the subnet. */
export function defaultGateway(cidr: string): string {
  return formatIP(firstHost(mustCIDR(cidr, 'address')));
}

export function planAdd(ipam: Result, s: BridgeSettings): AddPlan {
  const ips: IPConfig[] = (ipam.ips ?? []).map((ip) => {
    const out: IPConfig = { address: ip.address, interface: CONTAINER_INDEX };
    const gw = ip.gateway ?? (s.isGateway ? defaultGateway(ip.address) : undefined);
    if (gw) out.gateway = gw;
    return out;
  });
  const families = [...new Set(ips.map((i) => familyOf(i.address)))];
  const routes: Route[] = (ipam.routes ?? []).map((r) => ({ ...r }));
  if (s.isDefaultGateway) {
    for (const fam of families) {
      const gw = ips.find((i) => familyOf(i.address) === fam && i.gateway)?.gateway;
      if (!gw) continue;
      const existing = routes.find((r) => canonicalCIDR(r.dst) === canonicalCIDR(DEFAULT_DST[fam]) && r.table === undefined);
      if (existing) {
        if (existing.gw && canonicalIP(existing.gw) !== canonicalIP(gw)) {
          throw invalidConfig('isDefaultGateway', `ineffective because IPAM sets the default route via ${existing.gw}`);
        }
        continue;
      }
      routes.push({ dst: DEFAULT_DST[fam], gw });
    }
  }
  const bridgeGateways: string[] = [];
  if (s.isGateway) {
    for (const ip of ips) {
      if (!ip.gateway) continue;
      const gwCidr = `${ip.gateway}/${mustCIDR(ip.address, 'address').prefix}`;
      if (!bridgeGateways.some((g) => canonicalCIDR(g) === canonicalCIDR(gwCidr))) bridgeGateways.push(gwCidr);
    }
  }
  const familyGw = (fam: Family): string | undefined => ips.find((i) => familyOf(i.address) === fam && i.gateway)?.gateway;
  const containerAddrs: AddrSpec[] = ips.map((i) => ({ cidr: i.address, nodad: !s.enableDad }));
  const containerRoutes: RouteSpec[] = routes.map((r) => ({
    dst: r.dst,
    gw: r.gw ?? familyGw(familyOf(r.dst)),
    mtu: r.mtu,
    advmss: r.advmss,
    metric: r.priority,
    table: r.table,
    scope: r.scope,
  }));
  return { ips, routes, bridgeGateways, containerAddrs, containerRoutes, families };
}

/** DNS as the reference: the config's `dns` when it sets anything, else IPAM's. */
export function pickDns(conf: DNS | undefined, ipam: DNS | undefined): DNS | undefined {
  const set = conf && (conf.nameservers?.length || conf.domain || conf.search?.length || conf.options?.length);
  return set ? conf : ipam;
}
