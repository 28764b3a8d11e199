/**
 * Result conversion between spec versions. Plugins work on the canonical 1.1.0 shape; the
 * engine parses any version's prevResult into it and renders results in the config's version.
 */
import { CniError, ErrorCode } from './errors.ts';
import type { DNS, IPConfig, Interface, Result, Route } from './types.ts';
import { atLeast } from './version.ts';

const isV6 = (cidrOrIp: string): boolean => cidrOrIp.includes(':');

interface LegacyIP {
  ip: string;
  gateway?: string;
  routes?: Route[];
}

function cleanDns(dns: unknown): DNS | undefined {
  if (!dns || typeof dns !== 'object') return undefined;
  const d = dns as DNS;
  const out: DNS = {};
  if (d.nameservers?.length) out.nameservers = [...d.nameservers];
  if (d.domain) out.domain = d.domain;
  if (d.search?.length) out.search = [...d.search];
  if (d.options?.length) out.options = [...d.options];
  return Object.keys(out).length ? out : undefined;
}

function need(cond: unknown, what: string): void {
  if (!cond) throw new CniError(ErrorCode.DecodeFailure, 'failed to decode prevResult', what);
}

/** Parse a result of any supported version into the canonical shape. */
export function parseResult(raw: unknown, version: string): Result {
  need(raw && typeof raw === 'object' && !Array.isArray(raw), 'prevResult must be an object');
  const r = raw as Record<string, unknown>;
  const v = typeof r.cniVersion === 'string' ? r.cniVersion : version;
  if (!atLeast(v, '0.3.0')) {
    const ips: IPConfig[] = [];
    const routes: Route[] = [];
    for (const key of ['ip4', 'ip6'] as const) {
      const l = r[key] as LegacyIP | undefined;
      if (!l) continue;
      need(typeof l.ip === 'string', `${key}.ip must be a CIDR string`);
      ips.push(l.gateway ? { address: l.ip, gateway: l.gateway } : { address: l.ip });
      for (const rt of l.routes ?? []) routes.push(pickRoute(rt));
    }
    const res: Result = { ips, routes };
    const dns = cleanDns(r.dns);
    if (dns) res.dns = dns;
    return res;
  }
  const res: Result = {};
  if (r.interfaces !== undefined) {
    need(Array.isArray(r.interfaces), 'interfaces must be a list');
    res.interfaces = (r.interfaces as Interface[]).map(pickInterface);
  }
  if (r.ips !== undefined) {
    need(Array.isArray(r.ips), 'ips must be a list');
    res.ips = (r.ips as Array<IPConfig & { version?: string }>).map((ip) => {
      need(ip && typeof ip.address === 'string', 'ips[].address must be a CIDR string');
      const out: IPConfig = { address: ip.address };
      if (ip.gateway) out.gateway = ip.gateway;
      if (typeof ip.interface === 'number') out.interface = ip.interface;
      return out;
    });
  }
  if (r.routes !== undefined) {
    need(Array.isArray(r.routes), 'routes must be a list');
    res.routes = (r.routes as Route[]).map(pickRoute);
  }
  const dns = cleanDns(r.dns);
  if (dns) res.dns = dns;
  return res;
}

function pickInterface(i: Interface): Interface {
  need(i && typeof i.name === 'string', 'interfaces[].name must be a string');
  const out: Interface = { name: i.name };
  if (i.mac) out.mac = i.mac;
  if (typeof i.mtu === 'number' && i.mtu > 0) out.mtu = i.mtu;
  if (i.sandbox) out.sandbox = i.sandbox;
  if (i.socketPath) out.socketPath = i.socketPath;
  if (i.pciID) out.pciID = i.pciID;
  return out;
}

function pickRoute(r: Route): Route {
  need(r && typeof r.dst === 'string', 'routes[].dst must be a CIDR string');
  const out: Route = { dst: r.dst };
  if (r.gw) out.gw = r.gw;
  for (const k of ['mtu', 'advmss', 'priority', 'table', 'scope'] as const) {
    if (typeof r[k] === 'number') out[k] = r[k];
  }
  return out;
}

/** Render a canonical result in the wire format of `version`. */
export function renderResult(res: Result, version: string): Record<string, unknown> {
  if (!atLeast(version, '0.3.0')) {
    const out: Record<string, unknown> = { cniVersion: version };
    for (const fam of ['ip4', 'ip6'] as const) {
      const want6 = fam === 'ip6';
      const ip = (res.ips ?? []).find((i) => isV6(i.address) === want6);
      if (!ip) continue;
      const l: LegacyIP = { ip: ip.address };
      if (ip.gateway) l.gateway = ip.gateway;
      const routes = (res.routes ?? []).filter((r) => isV6(r.dst) === want6).map((r) => (r.gw ? { dst: r.dst, gw: r.gw } : { dst: r.dst }));
      if (routes.length) l.routes = routes;
      out[fam] = l;
    }
    out.dns = res.dns ?? {};
    return out;
  }
  const full = atLeast(version, '1.1.0');
  const withVersion = !atLeast(version, '1.0.0');
  const out: Record<string, unknown> = { cniVersion: version };
  if (res.interfaces?.length) {
    out.interfaces = res.interfaces.map((i) => {
      const o: Interface = { name: i.name };
      if (i.mac) o.mac = i.mac;
      if (full && i.mtu) o.mtu = i.mtu;
      if (i.sandbox) o.sandbox = i.sandbox; // empty (host side) is omitted, as the reference does
      if (full && i.socketPath) o.socketPath = i.socketPath;
      if (full && i.pciID) o.pciID = i.pciID;
      return o;
    });
  }
  if (res.ips?.length) {
    out.ips = res.ips.map((ip) => {
      const o: Record<string, unknown> = {};
      if (withVersion) o.version = isV6(ip.address) ? '6' : '4';
      if (typeof ip.interface === 'number') o.interface = ip.interface;
      o.address = ip.address;
      if (ip.gateway) o.gateway = ip.gateway;
      return o;
    });
  }
  if (res.routes?.length) {
    out.routes = res.routes.map((r) => (full ? pickRoute(r) : r.gw ? { dst: r.dst, gw: r.gw } : { dst: r.dst }));
  }
  out.dns = res.dns ?? {};
  return out;
}

/** Deep copy of a canonical result, so plugins can amend prevResult without aliasing. */
export function cloneResult(res: Result | undefined): Result {
  return res ? (JSON.parse(JSON.stringify(res)) as Result) : {};
}
