/**
 * The DNS part of the agent config (/etc/cni-ts/agent.json): `clusterDomain`, `node`,
 * `serviceCIDR` at the top level, and the `dns` section. Validation is by hand here (the
 * agent's schema, in the agent branch, can take over the same keys).
 */
import { readFileSync } from 'node:fs';
import net from 'node:net';
import type { DnsTtls } from '../../shared/dns/records.ts';
import { parseHostPort, resolvConfNameservers, type Upstream } from './upstream.ts';

export interface DnsSection {
  /** false: no DNS server (default true) */
  enabled?: boolean;
  /** ["IP" | "IP:port" | "[v6]:port"]; default: the nameservers of `resolvConf` */
  upstreams?: string[];
  /** default /etc/resolv.conf */
  resolvConf?: string;
  /** extra addresses to serve on, besides every network gateway with endpoints on this node */
  listen?: string[];
  /** false: do not listen on network gateways (default true) */
  listenOnGateways?: boolean;
  /** port for gateway addresses and `listen` entries without one (53) */
  port?: number;
  ttl?: Partial<DnsTtls>;
  /** network -> DNS domain of its container names; default `networkDomain` */
  networkDomains?: Record<string, string>;
  /** "dns.podman" */
  networkDomain?: string;
  cacheSize?: number;
  maxCacheTtl?: number;
  upstreamTimeoutMs?: number;
  rateLimit?: { qps: number; burst?: number } | false;
}

export interface DnsAgentConfig {
  node?: string;
  clusterDomain?: string;
  serviceCIDR?: string[];
  dns?: DnsSection;
}

/** Upstreams from the config, else from resolv.conf, without our own listen addresses (no loops). */
export function resolveUpstreams(cfg: DnsAgentConfig, ownAddresses: string[] = []): Upstream[] {
  const d = cfg.dns ?? {};
  let ups: Upstream[];
  if (d.upstreams) {
    ups = d.upstreams.map((s) => {
      const u = parseHostPort(s);
      if (!u) throw new Error(`dns.upstreams: "${s}" is not IP or IP:port`);
      return u;
    });
  } else {
    let text = '';
    try {
      text = readFileSync(d.resolvConf ?? '/etc/resolv.conf', 'utf8');
    } catch {}
    ups = resolvConfNameservers(text);
  }
  const own = new Set(ownAddresses);
  return ups.filter((u) => !(own.has(u.host) && u.port === (d.port ?? 53)));
}

/** Checks of the keys' shapes; throws with the key named. */
export function validateDnsConfig(cfg: DnsAgentConfig): void {
  const d = cfg.dns ?? {};
  if (
    cfg.clusterDomain !== undefined &&
    (typeof cfg.clusterDomain !== 'string' || !/^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$/i.test(cfg.clusterDomain))
  ) {
    throw new Error(`clusterDomain: "${String(cfg.clusterDomain)}" is not a domain name`);
  }
  for (const l of d.listen ?? []) if (!parseHostPort(l, d.port ?? 53)) throw new Error(`dns.listen: "${l}" is not IP or IP:port`);
  if (d.port !== undefined && !(Number.isInteger(d.port) && d.port >= 0 && d.port <= 65535)) throw new Error('dns.port: not a port');
  for (const [k, v] of Object.entries(d.ttl ?? {})) {
    if (!(Number.isInteger(v) && v >= 0 && v <= 2147483647)) throw new Error(`dns.ttl.${k}: not a TTL in seconds`);
  }
  for (const u of d.upstreams ?? []) if (!parseHostPort(u)) throw new Error(`dns.upstreams: "${u}" is not IP or IP:port`);
  if (d.listen?.some((l) => !net.isIP(parseHostPort(l, 53)?.host ?? ''))) throw new Error('dns.listen: not an address');
}
