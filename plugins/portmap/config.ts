/**
 * portmap configuration: settings with their defaults, the container addresses taken from
 * prevResult, and the per-family plan of mappings. Pure functions, no kernel access.
 */
import { networkHash, ownerComment, ownerName, type FirewallOwner } from '../../shared/firewall/owner.ts';
import { invalidConfig, unsupportedField } from '../../shared/cni/errors.ts';
import type { NetConfBase, Result } from '../../shared/cni/types.ts';
import { type Family, formatCIDR, network, parseCIDR, parseIP, formatIP } from '../../shared/ipnet.ts';

export type Protocol = 'tcp' | 'udp' | 'sctp';
export type Backend = 'nftables' | 'iptables';

/** One entry of `runtimeConfig.portMappings` (CONVENTIONS.md, capability `portMappings`). */
export interface PortMappingEntry {
  hostPort: number;
  containerPort: number;
  protocol?: string;
  hostIP?: string;
}

export interface PortmapConf extends NetConfBase {
  backend?: Backend;
  snat?: boolean;
  masqAll?: boolean;
  markMasqBit?: number;
  externalSetMarkChain?: string;
  conditionsV4?: string[];
  conditionsV6?: string[];
  nftTable?: string;
  iptablesChainPrefix?: string;
  runtimeConfig?: { portMappings?: PortMappingEntry[]; [k: string]: unknown };
}

export const DEFAULT_NFT_TABLE = 'cni_portmap';
export const DEFAULT_IPTABLES_PREFIX = 'CNITS';
export const DEFAULT_MARK_BIT = 13;

export interface Settings {
  backend: Backend;
  snat: boolean;
  masqAll: boolean;
  /** The mark value (1 << markMasqBit) that asks for masquerade in postrouting. */
  mark: number;
  externalSetMarkChain?: string;
  conditions: Record<Family, string[]>;
  nftTable: string;
  iptablesPrefix: string;
}

/** A mapping normalised: lower-case protocol, canonical host address (undefined = any). */
export interface Mapping {
  hostPort: number;
  containerPort: number;
  protocol: Protocol;
  hostIP?: string;
  hostFamily?: Family;
}

export interface ContainerAddr {
  family: Family;
  /** The container's address, "10.88.0.5" */
  ip: string;
  /** Its subnet, "10.88.0.0/16": hairpin traffic from here is masqueraded. */
  subnet: string;
}

/** What one family of one attachment gets: the container address and the mappings for it. */
export interface FamilyPlan {
  container: ContainerAddr;
  mappings: Mapping[];
  conditions: string[];
}

const iptablesStyle = (c: string): boolean => c.trimStart().startsWith('-');

export function settingsOf(c: PortmapConf): Settings {
  const conds = [...(c.conditionsV4 ?? []), ...(c.conditionsV6 ?? [])];
  const backend: Backend = c.backend ?? (conds.some(iptablesStyle) ? 'iptables' : 'nftables');
  return {
    backend,
    snat: c.snat ?? true,
    masqAll: c.masqAll ?? false,
    mark: 2 ** (c.markMasqBit ?? DEFAULT_MARK_BIT),
    externalSetMarkChain: c.externalSetMarkChain,
    conditions: { 4: c.conditionsV4 ?? [], 6: c.conditionsV6 ?? [] },
    nftTable: c.nftTable ?? DEFAULT_NFT_TABLE,
    iptablesPrefix: c.iptablesChainPrefix ?? DEFAULT_IPTABLES_PREFIX,
  };
}

/** Semantic checks beyond the schema; throws code 7 naming the field. */
export function validatePortmapConf(c: PortmapConf): void {
  if (c.markMasqBit !== undefined && c.externalSetMarkChain !== undefined) {
    throw invalidConfig('externalSetMarkChain', 'cannot be combined with markMasqBit');
  }
  const s = settingsOf(c);
  for (const key of ['conditionsV4', 'conditionsV6'] as const) {
    (c[key] ?? []).forEach((cond, i) => {
      // Conditions become part of an nft script or an iptables-restore line: one line, no
      // statement separators or comments that could smuggle in other commands.
      if (/[\r\n;#\0]/.test(cond)) throw invalidConfig(`${key}[${i}]`, 'must be a single match expression without newlines, ";" or "#"');
      if (s.backend === 'nftables' && iptablesStyle(cond)) {
        throw invalidConfig(
          `${key}[${i}]`,
          'is an iptables match, but backend is "nftables" (use nft expressions such as "ip saddr != 10.0.0.0/8")',
        );
      }
      if (s.backend === 'iptables' && /"/.test(cond)) throw invalidConfig(`${key}[${i}]`, 'must not contain double quotes');
    });
  }
  if (s.backend === 'nftables' && c.externalSetMarkChain !== undefined) {
    throw unsupportedField('externalSetMarkChain', c.externalSetMarkChain, 'is only supported by the iptables backend');
  }
  mappingsOf(c);
}

/** The mappings of `runtimeConfig.portMappings`, normalised, identical duplicates merged. */
export function mappingsOf(c: PortmapConf): Mapping[] {
  const out: Mapping[] = [];
  const seen = new Map<string, Mapping>();
  (c.runtimeConfig?.portMappings ?? []).forEach((e, i) => {
    const protocol = (e.protocol || 'tcp').toLowerCase() as Protocol;
    const ip = e.hostIP ? parseIP(e.hostIP) : null;
    if (e.hostIP && !ip) throw invalidConfig(`runtimeConfig.portMappings[${i}].hostIP`, `"${e.hostIP}" is not an IP address`);
    const m: Mapping = { hostPort: e.hostPort, containerPort: e.containerPort, protocol };
    // 0.0.0.0 and :: mean "any address of that family".
    if (ip) {
      m.hostFamily = ip.family;
      if (ip.value !== 0n) m.hostIP = formatIP(ip);
    }
    const key = `${m.hostFamily ?? '*'}/${m.hostIP ?? '*'}/${protocol}/${m.hostPort}`;
    const prev = seen.get(key);
    if (prev) {
      if (prev.containerPort !== m.containerPort) {
        throw invalidConfig(
          `runtimeConfig.portMappings[${i}]`,
          `host port ${protocol}/${m.hostPort}${m.hostIP ? ` on ${m.hostIP}` : ''} is mapped twice to different container ports`,
        );
      }
      return;
    }
    seen.set(key, m);
    out.push(m);
  });
  return out;
}

/**
 * The container's first IPv4 and first IPv6 address from prevResult, skipping addresses of
 * interfaces that are not this attachment's sandbox interface (as the reference does).
 */
export function containerAddrs(prev: Result, ifname: string): Partial<Record<Family, ContainerAddr>> {
  const out: Partial<Record<Family, ContainerAddr>> = {};
  for (const ip of prev.ips ?? []) {
    if (ip.interface !== undefined && prev.interfaces && ip.interface >= 0 && ip.interface < prev.interfaces.length) {
      const intf = prev.interfaces[ip.interface];
      if (intf.name !== ifname || !intf.sandbox) continue;
    }
    const n = parseCIDR(ip.address);
    if (!n || out[n.family]) continue;
    out[n.family] = { family: n.family, ip: formatIP(n), subnet: formatCIDR(network(n)) };
  }
  return out;
}

/** Per family: which mappings apply (a hostIP of the other family is skipped). */
export function planOf(s: Settings, mappings: Mapping[], addrs: Partial<Record<Family, ContainerAddr>>): FamilyPlan[] {
  const plans: FamilyPlan[] = [];
  for (const family of [4, 6] as const) {
    const container = addrs[family];
    if (!container) continue;
    const ms = mappings.filter((m) => m.hostFamily === undefined || m.hostFamily === family);
    if (ms.length) plans.push({ container, mappings: ms, conditions: s.conditions[family] });
  }
  return plans;
}

/** The owner of an attachment's rules (shared/firewall/owner.ts: one vocabulary for every owner). */
export const attachmentOwner = (netName: string, containerId: string, ifname: string): FirewallOwner => ({
  network: netName,
  containerId,
  ifname,
});

/** A short stable tag for a network (its `name`, the firewall's network hash): GC only touches its own network's rules. */
export const networkTag = (netName: string): string => networkHash(netName);

/**
 * A stable tag for one attachment: the firewall owner's tag as a name (`<net8>-<att16>`,
 * shared/firewall/owner.ts `ownerName`, the same hashes as the `cni:<net8>:<att16>` comment tag).
 * nft chains are named `pm-<tag>`.
 */
export function attachmentTag(netName: string, containerId: string, ifname: string): string {
  return ownerName(attachmentOwner(netName, containerId, ifname));
}

/** The rules' comment: the owner tag, then container ID and ifname (`ownerComment`, at most 120 bytes). */
export function attachmentComment(netName: string, containerId: string, ifname: string): string {
  return ownerComment(attachmentOwner(netName, containerId, ifname));
}

export const describeMapping = (m: Mapping): string =>
  `${m.protocol}/${m.hostIP ? (m.hostIP.includes(':') ? `[${m.hostIP}]` : m.hostIP) + ':' : ''}${m.hostPort}`;
