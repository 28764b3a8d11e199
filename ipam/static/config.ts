/**
 * static IPAM, the pure part: config + runtime overrides -> IPAM result. No I/O.
 *
 * Address sources, as the reference plugin orders them:
 *   ipam.addresses            the config's list
 *   CNI_ARGS IP=a,b           appended to the config's list (deprecated CNI_ARGS field)
 *   args.cni.ips              replaces everything above (conventions: `args` beats CNI_ARGS)
 *   runtimeConfig.ips         replaces everything above (capability `ips`)
 * then CNI_ARGS GATEWAY=g,h sets the gateway of every address whose subnet holds it.
 * Beyond the reference: a runtime address written without a prefix length, or lying in the
 * subnet of a configured address, takes that entry's prefix length and gateway.
 */
import { CniError, ErrorCode, invalidConfig } from '../../shared/cni/errors.ts';
import type { DNS, IPConfig, NetConfBase, Result, Route } from '../../shared/cni/types.ts';
import { atLeast } from '../../shared/cni/version.ts';
import {
  canonicalIP,
  contains,
  formatCIDR,
  formatIP,
  ipEqual,
  network,
  parseCIDR,
  parseIP,
  type IP,
  type IPNet,
} from '../../shared/ipnet.ts';

export interface StaticAddress {
  address: string;
  gateway?: string;
}

export interface StaticIpam {
  type: string;
  addresses?: StaticAddress[];
  routes?: Route[];
  dns?: DNS;
  [k: string]: unknown;
}

export interface StaticNetConf extends NetConfBase {
  ipam: StaticIpam;
  runtimeConfig?: { ips?: string[]; mac?: string; [k: string]: unknown };
  args?: { cni?: { ips?: string[]; mac?: string; [k: string]: unknown }; [k: string]: unknown };
}

/** One address with where it came from, for error messages. */
interface Planned {
  net: IPNet;
  gateway?: IP;
  field: string;
}

const MAC_RE = /^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/;

const badArgs = (key: string, why: string): CniError =>
  new CniError(ErrorCode.InvalidEnvironment, `invalid CNI_ARGS: ${key}: ${why}`, `CNI_ARGS field "${key}"`);

/** Split a CNI_ARGS list value ("a, b,c") into its non-empty items. */
const splitList = (v: string): string[] =>
  v
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);

/** The configured addresses, parsed; checks that each gateway is of its address's family. */
function configured(ipam: StaticIpam): Planned[] {
  return (ipam.addresses ?? []).map((a, i) => {
    const field = `ipam.addresses[${i}]`;
    const net = parseCIDR(a.address);
    if (!net) throw invalidConfig(`${field}.address`, `"${a.address}" is not a CIDR (address/prefix)`);
    const p: Planned = { net, field };
    if (a.gateway !== undefined) {
      const gw = parseIP(a.gateway);
      if (!gw) throw invalidConfig(`${field}.gateway`, `"${a.gateway}" is not an IP address`);
      if (gw.family !== net.family)
        throw invalidConfig(`${field}.gateway`, `${a.gateway} is not an IPv${net.family} address like ${a.address}`);
      p.gateway = gw;
    }
    return p;
  });
}

/** The configured entry whose subnet holds `ip` (for prefix and gateway inheritance). */
const subnetOf = (base: Planned[], ip: IP): Planned | undefined => base.find((b) => contains(network(b.net), ip));

/**
 * A runtime-given address: "ip/prefix", or a bare "ip" inside a configured subnet. It inherits
 * the gateway of the configured entry with the same subnet. Returns an error text or the entry.
 */
function runtimeAddress(text: string, base: Planned[], field: string): Planned | string {
  const cidr = parseCIDR(text);
  if (cidr) {
    const same = base.find((b) => b.net.family === cidr.family && b.net.prefix === cidr.prefix && contains(network(b.net), cidr));
    return same?.gateway ? { net: cidr, gateway: same.gateway, field } : { net: cidr, field };
  }
  const ip = parseIP(text);
  if (!ip) return `"${text}" is not an IP address or CIDR`;
  const holder = subnetOf(base, ip);
  if (!holder) return `"${text}" has no prefix length and no ipam.addresses entry has a subnet holding it`;
  const net: IPNet = { ...ip, prefix: holder.net.prefix };
  return holder.gateway ? { net, gateway: holder.gateway, field } : { net, field };
}

function fromList(list: string[], base: Planned[], field: string): Planned[] {
  return list.map((text, i) => {
    const p = runtimeAddress(text, base, `${field}[${i}]`);
    if (typeof p === 'string') throw invalidConfig(`${field}[${i}]`, p);
    return p;
  });
}

/** The addresses to hand out, after every override; throws code 7 (config) or 4 (CNI_ARGS). */
export function resolveAddresses(conf: StaticNetConf, cniArgs: ReadonlyMap<string, string>, version: string): IPConfig[] {
  const base = configured(conf.ipam);
  let plan = [...base];

  const ipArg = cniArgs.get('IP');
  if (ipArg) {
    for (const item of splitList(ipArg)) {
      const p = runtimeAddress(item, base, 'CNI_ARGS IP');
      if (typeof p === 'string') throw badArgs('IP', p);
      plan.push(p);
    }
  }
  const argIps = conf.args?.cni?.ips;
  if (argIps?.length) plan = fromList(argIps, base, 'args.cni.ips');
  const rtIps = conf.runtimeConfig?.ips;
  if (rtIps?.length) plan = fromList(rtIps, base, 'runtimeConfig.ips');

  const gwArg = cniArgs.get('GATEWAY');
  if (gwArg) {
    for (const item of splitList(gwArg)) {
      const gw = parseIP(item);
      if (!gw) throw badArgs('GATEWAY', `"${item}" is not an IP address`);
      const holders = plan.filter((p) => contains(network(p.net), gw));
      if (!holders.length)
        throw badArgs(
          'GATEWAY',
          `${item} is in none of the subnets of the addresses (${plan.map((p) => formatCIDR(p.net)).join(', ') || 'none'})`,
        );
      for (const h of holders) h.gateway = gw;
    }
  }

  if (!plan.length) {
    throw invalidConfig(
      'ipam.addresses',
      'no addresses: give ipam.addresses, or addresses through runtimeConfig.ips, args.cni.ips or CNI_ARGS IP',
    );
  }
  for (let i = 0; i < plan.length; i++) {
    for (let j = 0; j < i; j++) {
      if (ipEqual(plan[i].net, plan[j].net))
        throw invalidConfig(plan[i].field, `address ${formatIP(plan[i].net)} is given twice (also ${plan[j].field})`);
    }
  }
  if (!atLeast(version, '0.3.0')) {
    for (const fam of [4, 6] as const) {
      const same = plan.filter((p) => p.net.family === fam);
      if (same.length > 1) {
        throw invalidConfig(
          same[1].field,
          `cniVersion ${version} results carry one address per family, ${same.length} IPv${fam} addresses given (use cniVersion 0.3.0 or later)`,
        );
      }
    }
  }
  return plan.map((p) => (p.gateway ? { address: formatCIDR(p.net), gateway: formatIP(p.gateway) } : { address: formatCIDR(p.net) }));
}

/** Routes in canonical spelling; a route's gw must be of its dst's family. */
export function resolveRoutes(ipam: StaticIpam): Route[] {
  return (ipam.routes ?? []).map((r, i) => {
    const dst = parseCIDR(r.dst);
    if (!dst) throw invalidConfig(`ipam.routes[${i}].dst`, `"${r.dst}" is not a CIDR`);
    const out: Route = { ...r, dst: formatCIDR(dst) };
    if (r.gw !== undefined) {
      const gw = parseIP(r.gw);
      if (!gw) throw invalidConfig(`ipam.routes[${i}].gw`, `"${r.gw}" is not an IP address`);
      if (gw.family !== dst.family) throw invalidConfig(`ipam.routes[${i}].gw`, `${r.gw} is not an IPv${dst.family} address like ${r.dst}`);
      out.gw = formatIP(gw);
    }
    return out;
  });
}

/** Checks that depend on the config alone (run for every verb). */
export function validateStatic(conf: StaticNetConf): void {
  configured(conf.ipam);
  resolveRoutes(conf.ipam);
}

/** The four spec fields of `ipam.dns`, empty ones left out. */
function pickDns(d: DNS | undefined): DNS | undefined {
  if (!d) return undefined;
  const out: DNS = {};
  if (d.nameservers?.length) out.nameservers = d.nameservers.map((n) => canonicalIP(n) ?? n);
  if (d.domain) out.domain = d.domain;
  if (d.search?.length) out.search = [...d.search];
  if (d.options?.length) out.options = [...d.options];
  return Object.keys(out).length ? out : undefined;
}

/** The IPAM result of ADD: addresses, routes, DNS; no interfaces and no ips[].interface. */
export function staticResult(conf: StaticNetConf, cniArgs: ReadonlyMap<string, string>, version: string): Result {
  const res: Result = { ips: resolveAddresses(conf, cniArgs, version) };
  const routes = resolveRoutes(conf.ipam);
  if (routes.length) res.routes = routes;
  const dns = pickDns(conf.ipam.dns);
  if (dns) res.dns = dns;
  return res;
}

/**
 * The MAC the runtime asked for (runtimeConfig.mac, else args.cni.mac, else CNI_ARGS MAC), with
 * its source. An IPAM result has no place for it (IPAM returns no `interfaces`): like the
 * reference, static leaves applying it to the interface plugin, which reads the same fields.
 */
export function requestedMac(conf: StaticNetConf, cniArgs: ReadonlyMap<string, string>): { mac: string; source: string } | undefined {
  if (conf.runtimeConfig?.mac) return { mac: conf.runtimeConfig.mac, source: 'runtimeConfig.mac' };
  if (conf.args?.cni?.mac) return { mac: conf.args.cni.mac, source: 'args.cni.mac' };
  const arg = cniArgs.get('MAC');
  if (arg) {
    if (!MAC_RE.test(arg)) throw badArgs('MAC', `"${arg}" is not a MAC address (xx:xx:xx:xx:xx:xx)`);
    return { mac: arg, source: 'CNI_ARGS MAC' };
  }
  return undefined;
}

/**
 * CHECK against prevResult: every address static hands out must be there with the same prefix
 * and gateway. Returns what differs, or an empty list.
 */
export function checkAgainst(expected: IPConfig[], prev: Result): string[] {
  const problems: string[] = [];
  for (const want of expected) {
    const wantNet = parseCIDR(want.address) as IPNet;
    const got = (prev.ips ?? []).find((ip) => {
      const n = parseCIDR(ip.address);
      return n !== null && ipEqual(n, wantNet);
    });
    if (!got) {
      problems.push(`address ${want.address} is missing from prevResult`);
      continue;
    }
    const gotNet = parseCIDR(got.address) as IPNet;
    if (gotNet.prefix !== wantNet.prefix)
      problems.push(`address ${formatIP(wantNet)} has prefix /${gotNet.prefix} in prevResult, /${wantNet.prefix} configured`);
    const gotGw = got.gateway ? parseIP(got.gateway) : null;
    const wantGw = want.gateway ? parseIP(want.gateway) : null;
    if (wantGw && !(gotGw && ipEqual(gotGw, wantGw))) {
      problems.push(`address ${want.address} has gateway ${got.gateway ?? '(none)'} in prevResult, ${want.gateway} configured`);
    }
  }
  return problems;
}
