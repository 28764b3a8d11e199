/**
 * ptp: from the IPAM result to what goes into the container, onto the host veth and into the
 * result, as the Go reference does. Pure functions, no kernel access.
 *
 * The reference's layout (veth cannot be IFF_POINTTOPOINT): the container address keeps its
 * IPAM prefix but without the prefix route; `<gw>/32 dev eth0 scope link src <ip>` makes the
 * gateway (the host veth's address) reachable, `<subnet> via <gw> src <ip>` sends even the
 * neighbours through the host, then IPAM's routes (default via the gateway). The host veth
 * holds `<gw>/32` (`/128`) and a host route `<ip>/32 dev <veth> scope host`.
 */
import { CniError, ErrorCode } from '../../shared/cni/errors.ts';
import type { IPConfig, Result, Route } from '../../shared/cni/types.ts';
import { familyOf, formatCIDR, mustCIDR, network, type Family } from '../../shared/ipnet.ts';
import type { AddrSpec, RouteSpec } from '../../shared/kernel/link.ts';

/** Index of the container interface in the result: [host veth, container]. */
export const CONTAINER_INDEX = 1;
/** RT_SCOPE_LINK and RT_SCOPE_HOST, as `ip route ... scope` numbers. */
export const SCOPE_LINK = 253;
export const SCOPE_HOST = 254;

export interface PtpPlan {
  ips: IPConfig[];
  routes: Route[];
  /** container addresses, added with `noprefixroute` (the reference deletes the prefix route) */
  containerAddrs: AddrSpec[];
  containerRoutes: RouteSpec[];
  /** gateway addresses for the host veth (`/32`, `/128`) */
  hostAddrs: AddrSpec[];
  /** host routes to the container addresses through the host veth (dev filled in by the caller) */
  hostRoutes: RouteSpec[];
  families: Family[];
}

const hostBits = (fam: Family): number => (fam === 4 ? 32 : 128);
const bare = (cidr: string): string => cidr.slice(0, cidr.indexOf('/'));

export function planPtp(ipam: Result): PtpPlan {
  const src = ipam.ips ?? [];
  if (!src.length) throw new CniError(ErrorCode.InvalidConfig, 'IPAM plugin returned missing IP config', 'ptp needs at least one address');
  const ips: IPConfig[] = src.map((ip) => {
    if (!ip.gateway)
      throw new CniError(
        ErrorCode.InvalidConfig,
        `IPAM returned ${ip.address} without a gateway`,
        'ptp puts the gateway on the host veth: configure one in ipam',
      );
    return { address: ip.address, gateway: ip.gateway, interface: CONTAINER_INDEX };
  });
  const families = [...new Set(ips.map((i) => familyOf(i.address)))];
  const containerAddrs: AddrSpec[] = ips.map((i) => ({ cidr: i.address, nodad: true, noprefixroute: true }));
  const containerRoutes: RouteSpec[] = [];
  const hostAddrs: AddrSpec[] = [];
  const hostRoutes: RouteSpec[] = [];
  const seenGw = new Set<string>();
  for (const i of ips) {
    const fam = familyOf(i.address);
    const gw = i.gateway!;
    const subnet = formatCIDR(network(mustCIDR(i.address, 'address')));
    containerRoutes.push({ dst: `${gw}/${hostBits(fam)}`, scope: SCOPE_LINK, src: bare(i.address) });
    containerRoutes.push({ dst: subnet, gw, src: bare(i.address) });
    const gwCidr = `${gw}/${hostBits(fam)}`;
    if (!seenGw.has(gwCidr)) hostAddrs.push({ cidr: gwCidr, nodad: true });
    seenGw.add(gwCidr);
    hostRoutes.push({ dst: `${bare(i.address)}/${hostBits(fam)}`, scope: SCOPE_HOST });
  }
  const routes: Route[] = (ipam.routes ?? []).map((r) => ({ ...r }));
  const familyGw = (fam: Family): string | undefined => ips.find((i) => familyOf(i.address) === fam)?.gateway;
  for (const r of routes) {
    containerRoutes.push({
      dst: r.dst,
      gw: r.gw ?? familyGw(familyOf(r.dst)),
      mtu: r.mtu,
      advmss: r.advmss,
      metric: r.priority,
      table: r.table,
      scope: r.scope,
    });
  }
  return { ips, routes, containerAddrs, containerRoutes, hostAddrs, hostRoutes, families };
}
