/**
 * loopback, the pure part: the ADD result from what `ip -json addr show dev lo` reports,
 * shaped like the reference plugin's: one interface `lo` (MAC 00:00:00:00:00:00, sandbox =
 * CNI_NETNS) and the first loopback address of each family on it (127.0.0.1/8, ::1/128).
 */
import type { AddrInfo, LinkInfo } from '../../shared/kernel/ip.ts';
import type { IPConfig, Result } from '../../shared/cni/types.ts';
import { canonicalIP, contains, parseCIDR, parseIP } from '../../shared/ipnet.ts';

export const LO = 'lo';
const LOOPBACK_V4 = parseCIDR('127.0.0.0/8');
const LOOPBACK_V6 = parseIP('::1');

/** True for 127.0.0.0/8 and ::1: the only addresses the result reports. */
export function isLoopbackAddr(a: AddrInfo): boolean {
  const ip = parseIP(a.local);
  if (!ip || !LOOPBACK_V4 || !LOOPBACK_V6) return false;
  return ip.family === 4 ? contains(LOOPBACK_V4, ip) : ip.value === LOOPBACK_V6.value;
}

export function loopbackResult(link: LinkInfo, netns: string): Result {
  const ips: IPConfig[] = [];
  for (const family of ['inet', 'inet6'] as const) {
    const a = (link.addr_info ?? []).find((x) => x.family === family && isLoopbackAddr(x));
    if (a) ips.push({ interface: 0, address: `${canonicalIP(a.local) ?? a.local}/${a.prefixlen}` });
  }
  const res: Result = { interfaces: [{ name: LO, mac: link.address || '00:00:00:00:00:00', sandbox: netns }] };
  if (ips.length) res.ips = ips;
  return res;
}

/** CHECK: what is wrong with `lo`, or an empty list. `want` are addresses prevResult put on lo. */
export function loopbackProblems(link: LinkInfo | undefined, want: string[]): string[] {
  if (!link) return ['no loopback interface "lo" in the namespace'];
  const problems: string[] = [];
  if (!link.flags.includes('UP')) problems.push('loopback interface is down');
  for (const cidr of want) {
    const n = parseCIDR(cidr);
    const present = (link.addr_info ?? []).some((a) => {
      const ip = parseIP(a.local);
      return n && ip && ip.family === n.family && ip.value === n.value && a.prefixlen === n.prefix;
    });
    if (!present) problems.push(`address ${cidr} is missing from lo`);
  }
  return problems;
}
